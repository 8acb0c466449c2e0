/*
 * check_sampleset.c - agent/sampleset.c: the live sampled addresses.
 *
 * Against a model the test keeps (which addresses it added and has not
 * taken): take says true exactly for those, once; the filter never says
 * "surely not" for one of them; the table grows past its first size and
 * deletes without losing a neighbour; four threads adding and taking their
 * own addresses at once lose nothing (run under ASan/UBSan too).
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "sampleset.h"
#include "suites.h"

/* Addresses as malloc's are: 16-byte aligned, some close together. */
static uintptr_t addr_of(uint32_t i)
{
	return (uintptr_t)0x7f0000000000ull + (uintptr_t)(i * 2654435761u % 1000003u) * 16;
}

START_TEST(test_model)
{
	enum { N = 60000 }; /* past the first table and several doublings */
	static bool in[N];

	ck_assert_int_eq(sampleset_init(), 0);
	ck_assert(!sampleset_overflowed());
	size_t base = sampleset_count();
	uint64_t x = 88172645463325252ull;
	size_t live = 0;
	for (int step = 0; step < 400000; step++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint32_t i = (uint32_t)(x % N);
		uintptr_t a = addr_of(i);
		if (!in[i] && (x >> 32) % 3 != 0) {
			sampleset_add(a);
			in[i] = true;
			live++;
		} else {
			ck_assert_msg(!in[i] || sampleset_maybe(a), "the filter lost %#lx",
			              (unsigned long)a);
			ck_assert_int_eq(sampleset_take(a), in[i]);
			if (in[i])
				live--;
			in[i] = false;
			ck_assert(!sampleset_take(a)); /* once */
		}
	}
	ck_assert_uint_eq(sampleset_count(), base + live);
	for (uint32_t i = 0; i < N; i++) {
		ck_assert_int_eq(sampleset_take(addr_of(i)), in[i]);
		in[i] = false;
	}
	ck_assert_uint_eq(sampleset_count(), base);
	/* Emptied: the filter says "surely not" for nearly all (it has no
	 * false positives left but those of other tests' addresses). */
	size_t maybe = 0;
	for (uint32_t i = 0; i < N; i++)
		maybe += sampleset_maybe(addr_of(i));
	ck_assert_uint_le(maybe, N / 100);
}
END_TEST

struct worker {
	uint32_t first;
	int lost;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int round = 0; round < 20; round++) {
		for (uint32_t i = 0; i < 5000; i++)
			sampleset_add(addr_of(w->first + i));
		for (uint32_t i = 0; i < 5000; i++)
			if (!sampleset_take(addr_of(w->first + i)))
				w->lost++;
	}
	return NULL;
}

START_TEST(test_threads)
{
	pthread_t th[4];
	struct worker w[4];

	ck_assert_int_eq(sampleset_init(), 0);
	size_t base = sampleset_count();
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.first = 100000 + (uint32_t)i * 5000};
		ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].lost, 0);
	}
	ck_assert_uint_eq(sampleset_count(), base);
}
END_TEST

Suite *sampleset_suite(void)
{
	Suite *s = suite_create("sampleset");
	TCase *tc = tcase_create("sampleset");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_model);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	return s;
}
