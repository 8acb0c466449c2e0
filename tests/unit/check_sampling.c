/*
 * check_sampling.c - the weight of a sampled block (daemon/sampling.h).
 *
 * Pins:
 *  - exact cases: no sampling, a zero-byte block, blocks of 40 rates and
 *    more weigh their size and one block, with no fraction;
 *  - the weights are size / p and 1 / p with p = 1 - exp(-size/rate),
 *    compared with the same formula computed here in long double, to the
 *    2^-32 the fixed point keeps; past 2^64 they saturate;
 *  - bytes weigh more and blocks less as a block grows (towards its size
 *    and one block);
 *  - unbiased: sampling blocks by the agent's rule (each byte with
 *    probability 1/rate, drawn here as exponential gaps) and summing the
 *    weights of those sampled estimates the true bytes and blocks within
 *    five standard deviations of the estimator, for blocks of a quarter,
 *    one and four rates and a mix (fixed seeds, so a run is repeatable);
 *  - sampling_add and sampling_sub: the rounded figure is the exact value
 *    rounded half up, and adds undone by subs in any order leave exactly
 *    zero, through carries, borrows and wrap-around.
 */
#include <math.h>
#include <stdint.h>

#include "expect.h"
#include "sampling.h"
#include "splitmix.h"
#include "suites.h"

#define TWO32 4294967296.0L

static long double value(struct sampling_value v)
{
	return (long double)v.whole + (long double)v.frac / TWO32;
}

static void assert_exact(uint64_t size, uint64_t rate)
{
	struct sampling_weight w;

	sampling_weight(size, rate, &w);
	EXPECT(w.bytes.whole == size && w.bytes.frac == 0 && w.count.whole == 1 &&
	           w.count.frac == 0,
	       "size %ju rate %ju: weighs %ju+%u/2^32 bytes, %ju+%u/2^32 blocks, not exactly",
	       (uintmax_t)size, (uintmax_t)rate, (uintmax_t)w.bytes.whole, w.bytes.frac,
	       (uintmax_t)w.count.whole, w.count.frac);
}

START_TEST(test_exact_cases)
{
	static const uint64_t sizes[] = {0, 1, 16, 4096, UINT64_C(1) << 40, UINT64_MAX};

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		assert_exact(sizes[i], 0); /* every allocation traced */
	assert_exact(0, 4096);             /* never sampled; weighs nothing */
	assert_exact(40 * 4096, 4096);     /* certain from 40 rates up */
	assert_exact(40 * 4096 + 1, 4096);
	assert_exact(UINT64_MAX, 4096); /* past what a double holds exactly */
	assert_exact(UINT64_MAX, 1);
	assert_exact((UINT64_C(1) << 53) + 1, 1000);
}
END_TEST

/* Compares a weight with the formula in long double: within 2^-31 (the
 * truncation to 2^-32 and double rounding) relative to the value. */
static void assert_formula(uint64_t size, uint64_t rate)
{
	struct sampling_weight w;
	long double s = (long double)size, p = -expm1l(-s / (long double)rate);
	long double wb = s / p, wc = 1.0L / p;

	sampling_weight(size, rate, &w);
	EXPECT(fabsl(value(w.bytes) - wb) <= wb * 1e-13L + 2.0L / TWO32,
	       "size %ju rate %ju: %.12Lf bytes, want %.12Lf", (uintmax_t)size, (uintmax_t)rate,
	       value(w.bytes), wb);
	EXPECT(fabsl(value(w.count) - wc) <= wc * 1e-13L + 2.0L / TWO32,
	       "size %ju rate %ju: %.12Lf blocks, want %.12Lf", (uintmax_t)size, (uintmax_t)rate,
	       value(w.count), wc);
}

START_TEST(test_formula)
{
	static const uint64_t rates[] = {1, 7, 4096, 65536, 1000003, UINT64_C(1) << 40};
	struct sampling_weight w;

	for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
		uint64_t r = rates[i];
		assert_formula(1, r);
		assert_formula(r / 4 + 1, r);
		assert_formula(r, r);
		assert_formula(r + 1, r);
		assert_formula(4 * r, r);
		assert_formula(39 * r + r / 2, r);
	}
	/* The numbers of the issue: 32 KiB blocks at a 64 KiB rate are
	 * sampled with p = 1 - e^-0.5 and weigh 2.541 blocks each. */
	sampling_weight(32768, 65536, &w);
	EXPECT(fabsl(value(w.count) - 2.5414940825367982L) < 1e-9L, "%.12Lf blocks",
	       value(w.count));
	EXPECT_EQ(w.count.whole, 2);
	EXPECT_EQ(w.bytes.whole, 83279); /* 32768 * 2.5414940825... = 83279.68 */
	/* A byte at a rate of 2^64 - 1 stands for more than 2^64 bytes... */
	sampling_weight(1, UINT64_MAX, &w);
	EXPECT_EQ(w.bytes.whole, UINT64_MAX);
	EXPECT_EQ(w.bytes.frac, 0);
	EXPECT_EQ(w.count.whole, UINT64_MAX);
	/* ...and at 2^62 for about 2^62 blocks and bytes, which still fit. */
	sampling_weight(1, UINT64_C(1) << 62, &w);
	EXPECT(fabsl(value(w.count) - 4611686018427387904.5L) < 2048, "%Lf", value(w.count));
}
END_TEST

START_TEST(test_monotonic)
{
	const uint64_t rate = 4096;
	struct sampling_weight prev, w;

	sampling_weight(1, rate, &prev);
	for (uint64_t s = 2; s <= 41 * rate; s += 1 + s / 64) {
		sampling_weight(s, rate, &w);
		EXPECT(value(w.bytes) >= value(prev.bytes), "bytes fall at size %ju", (uintmax_t)s);
		EXPECT(value(w.count) <= value(prev.count), "blocks rise at size %ju",
		       (uintmax_t)s);
		EXPECT(value(w.bytes) >= (long double)s, "size %ju weighs less than itself",
		       (uintmax_t)s);
		EXPECT(value(w.count) >= 1.0L, "size %ju weighs under a block", (uintmax_t)s);
		prev = w;
	}
}
END_TEST

/* ---- unbiased: the agent's rule, simulated ---- */

/* 1 + an exponential with mean `rate`: the bytes up to and including the
 * next sampled one, as the agent draws them. */
static uint64_t gap(struct rng *g, uint64_t rate)
{
	double u = ((double)(rng_next(g) >> 11) + 1.0) / 9007199254740993.0;
	return (uint64_t)(-log(u) * (double)rate) + 1;
}

struct estimate {
	long double bytes, blocks; /* the sums of the weights of the sampled */
	long double var_b, var_n;  /* the estimators' variances */
	uint64_t true_bytes, true_blocks, samples;
};

/* Allocates n blocks of sizes[i % nsizes] under sampling every `rate`
 * bytes, weighing what is sampled. */
static void simulate(uint64_t seed, uint64_t rate, const uint64_t *sizes, size_t nsizes, size_t n,
                     struct estimate *e)
{
	struct rng g = {seed};
	uint64_t left = gap(&g, rate);

	*e = (struct estimate){0};
	for (size_t i = 0; i < n; i++) {
		uint64_t s = sizes[i % nsizes];
		long double p = -expm1l(-(long double)s / (long double)rate);

		e->true_bytes += s;
		e->true_blocks++;
		e->var_b += (long double)s * (long double)s * (1 - p) / p;
		e->var_n += (1 - p) / p;
		if (left > s) {
			left -= s;
			continue;
		}
		left = gap(&g, rate);
		struct sampling_weight w;
		sampling_weight(s, rate, &w);
		e->bytes += value(w.bytes);
		e->blocks += value(w.count);
		e->samples++;
	}
}

static void assert_unbiased(const char *what, const struct estimate *e)
{
	long double db = e->bytes - (long double)e->true_bytes;
	long double dn = e->blocks - (long double)e->true_blocks;

	EXPECT(fabsl(db) <= 5 * sqrtl(e->var_b),
	       "%s: %.0Lf bytes estimated, %ju true: %.1Lf standard deviations off (%ju samples)",
	       what, e->bytes, (uintmax_t)e->true_bytes, db / sqrtl(e->var_b),
	       (uintmax_t)e->samples);
	EXPECT(fabsl(dn) <= 5 * sqrtl(e->var_n) + 1e-9L,
	       "%s: %.1Lf blocks estimated, %ju true: %.1Lf standard deviations off", what,
	       e->blocks, (uintmax_t)e->true_blocks, dn / sqrtl(e->var_n));
	EXPECT(e->samples >= 1000, "%s: only %ju samples", what, (uintmax_t)e->samples);
	/* With this many samples five standard deviations are within 5 %. */
	EXPECT(fabsl(db) <= 0.05L * (long double)e->true_bytes, "%s: %.2Lf %% off", what,
	       100 * db / (long double)e->true_bytes);
}

START_TEST(test_unbiased)
{
	const uint64_t r = 4096;
	const uint64_t quarter[] = {r / 4}, one[] = {r}, four[] = {4 * r};
	const uint64_t mix[] = {r / 4, 1, r, 3 * r / 2, 4 * r, 100, 60 * r, r / 2 + 3};
	struct estimate e;

	for (uint64_t seed = 1; seed <= 3; seed++) {
		simulate(seed, r, quarter, 1, 60000, &e);
		assert_unbiased("0.25 x rate", &e);
		simulate(seed, r, one, 1, 20000, &e);
		assert_unbiased("1 x rate", &e);
		simulate(seed, r, four, 1, 5000, &e);
		assert_unbiased("4 x rate", &e);
		simulate(seed, r, mix, sizeof mix / sizeof mix[0], 40000, &e);
		assert_unbiased("mix", &e);
	}
}
END_TEST

/* ---- the fixed-point figures ---- */

START_TEST(test_rounding)
{
	uint64_t v = 0;
	uint32_t f = 0;

	sampling_add(&v, &f, (struct sampling_value){2, SAMPLING_HALF - 1});
	EXPECT_EQ(v, 2); /* 2.4999... */
	sampling_add(&v, &f, (struct sampling_value){0, 1});
	EXPECT_EQ(v, 3); /* 2.5 rounds half up */
	sampling_add(&v, &f, (struct sampling_value){0, SAMPLING_HALF});
	EXPECT_EQ(v, 3); /* 3.0, through a carry */
	EXPECT_EQ(f, 0);
	sampling_sub(&v, &f, (struct sampling_value){0, 1});
	EXPECT_EQ(v, 3); /* 2.99999... */
	sampling_sub(&v, &f, (struct sampling_value){0, SAMPLING_HALF});
	EXPECT_EQ(v, 2); /* 2.4999..., through a borrow */
	sampling_sub(&v, &f, (struct sampling_value){2, SAMPLING_HALF - 1});
	EXPECT_EQ(v, 0);
	EXPECT_EQ(f, 0);
	/* Below zero wraps, and comes back. */
	sampling_sub(&v, &f, (struct sampling_value){1, 5});
	sampling_add(&v, &f, (struct sampling_value){1, 5});
	EXPECT_EQ(v, 0);
	EXPECT_EQ(f, 0);
}
END_TEST

START_TEST(test_add_sub_cancel)
{
	enum { N = 4096 };
	static struct sampling_value w[N];
	static size_t order[N];
	struct rng g = {0x5a3b};
	uint64_t v = 0;
	uint32_t f = 0;
	long double exact = 0;

	for (size_t i = 0; i < N; i++) {
		struct sampling_weight sw;
		uint64_t size = 1 + rng_below(&g, 1u << 20);
		sampling_weight(size, 1 + rng_below(&g, 1u << 16), &sw);
		w[i] = rng_next(&g) % 2 ? sw.bytes : sw.count;
		order[i] = i;
		sampling_add(&v, &f, w[i]);
		exact += value(w[i]);
	}
	/* The rounded figure is the exact sum, rounded. */
	EXPECT(fabsl((long double)v - exact) <= 0.5L + 1e-6L, "%ju for %.6Lf", (uintmax_t)v, exact);
	for (size_t i = N; i > 1; i--) {
		size_t j = rng_below(&g, i), t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < N; i++)
		sampling_sub(&v, &f, w[order[i]]);
	EXPECT_EQ(v, 0);
	EXPECT_EQ(f, 0);
}
END_TEST

Suite *sampling_suite(void)
{
	Suite *s = suite_create("sampling");
	TCase *tc = tcase_create("weight");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_exact_cases);
	tcase_add_test(tc, test_formula);
	tcase_add_test(tc, test_monotonic);
	tcase_add_test(tc, test_unbiased);
	tcase_add_test(tc, test_rounding);
	tcase_add_test(tc, test_add_sub_cancel);
	suite_add_tcase(s, tc);
	return s;
}
