/*
 * check_stacktab.c - the agent's table of distinct stacks (agent/stacktab.h).
 *
 * Behaviours pinned:
 *  - interning gives the same id for the same frames and different ids for
 *    different ones, including stacks that differ only in their order, their
 *    length (one a prefix of the other) or one frame, checked against a
 *    reference map the test keeps (a plain array searched linearly, sharing
 *    nothing with the table's hashing);
 *  - ids are dense and handed out in order: from one thread, a new stack
 *    gets stacktab_count() + 1, and stacktab_count() is the number of
 *    distinct stacks interned;
 *  - stacktab_get gives back exactly the frames interned under an id;
 *  - an empty stack is never interned (0), stacktab_init may be called again;
 *  - full table: the first STACKTAB_CAP distinct stacks get ids 1 ..
 *    STACKTAB_CAP; every new stack after that gets 0, however many are
 *    tried, while known stacks keep their ids and frames: ids never wrap
 *    and stacktab_count() never passes STACKTAB_CAP;
 *  - two threads interning the same stacks concurrently (in different
 *    orders, mixed with stacks of their own) agree on every id, distinct
 *    stacks still have distinct ids, and every id resolves to its frames.
 *
 * The table is process-wide and never freed, so every test uses stacks no
 * other test uses (a per-test salt in the frames) and counts ids from what
 * stacktab_count() said when it began. The full-table test fills the table;
 * Check runs each test in its own process, which is what makes the others
 * independent of it.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "splitmix.h"
#include "stacktab.h"
#include "suites.h"

/* ---- reference map ---- */

struct ref_stack {
	uint64_t frames[16];
	uint32_t n;
	uint32_t id;
};

struct ref_map {
	struct ref_stack *v;
	size_t n, cap;
};

static struct ref_stack *ref_find(const struct ref_map *m, const uint64_t *f, uint32_t n)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].n == n && memcmp(m->v[i].frames, f, n * sizeof *f) == 0)
			return &m->v[i];
	return NULL;
}

static void ref_add(struct ref_map *m, const uint64_t *f, uint32_t n, uint32_t id)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->v = realloc(m->v, m->cap * sizeof *m->v);
		ck_assert_ptr_nonnull(m->v);
	}
	memcpy(m->v[m->n].frames, f, n * sizeof *f);
	m->v[m->n].n = n;
	m->v[m->n].id = id;
	m->n++;
}

static void assert_frames(uint32_t id, const uint64_t *want, uint32_t n)
{
	const uint64_t *got;
	uint32_t gn;
	int st = stacktab_get(id, &got, &gn);

	EXPECT(st == 1, "stacktab_get(%u) = %d, expected a ready entry", id, st);
	EXPECT(gn == n, "id %u has %u frames, interned with %u", id, gn, n);
	EXPECT(memcmp(got, want, n * sizeof *want) == 0, "id %u has other frames", id);
}

/* ---- single thread ---- */

START_TEST(test_stacktab_init_and_empty_stack)
{
	uint64_t f = 0x1234;

	ck_assert_int_eq(stacktab_init(), 0);
	ck_assert_int_eq(stacktab_init(), 0); /* again: nothing changes */
	uint32_t before = stacktab_count();
	ck_assert_uint_eq(stacktab_intern(&f, 0), 0);
	ck_assert_uint_eq(stacktab_count(), before);
}
END_TEST

/* Stacks chosen to be near one another: permutations, prefixes, one frame
 * changed; then a random mix with many repeats. */
START_TEST(test_stacktab_same_stack_same_id)
{
	const uint64_t salt = UINT64_C(0xA100000000000000);
	struct ref_map ref = {0};
	struct rng rnd = {42};
	uint64_t pool[40][16];
	uint32_t pool_n[40];
	size_t npool = 0;

	ck_assert_int_eq(stacktab_init(), 0);
	/* a, b, c and what can be made of them */
	const uint64_t a = salt | 0x1000, b = salt | 0x2000, c = salt | 0x3000;
	const uint64_t shapes[][4] = {{a, b, c}, {c, b, a}, {a, c, b}, {a, b},      {a},
	                              {b},       {a, a, a}, {a, a},    {a, b, c, a}};
	const uint32_t shape_n[] = {3, 3, 3, 2, 1, 1, 3, 2, 4};
	for (size_t i = 0; i < sizeof shape_n / sizeof shape_n[0]; i++) {
		memcpy(pool[npool], shapes[i], shape_n[i] * sizeof(uint64_t));
		pool_n[npool++] = shape_n[i];
	}
	/* one frame different at each position */
	for (uint32_t pos = 0; pos < 16; pos++) {
		for (uint32_t j = 0; j < 16; j++)
			pool[npool][j] = salt | (0x10000 + j);
		pool[npool][pos] ^= 0x8;
		pool_n[npool++] = 16;
	}
	for (uint32_t j = 0; j < 16; j++)
		pool[npool][j] = salt | (0x10000 + j);
	pool_n[npool++] = 16;
	/* random ones */
	while (npool < 40) {
		pool_n[npool] = 1 + (uint32_t)(rng_next(&rnd) % 16);
		for (uint32_t j = 0; j < pool_n[npool]; j++)
			pool[npool][j] = salt | (rng_next(&rnd) & 0xffffffffffff);
		npool++;
	}

	uint32_t base = stacktab_count();
	for (int round = 0; round < 2000; round++) {
		size_t k = round < (int)npool ? (size_t)round : (size_t)(rng_next(&rnd) % npool);
		const struct ref_stack *known = ref_find(&ref, pool[k], pool_n[k]);
		uint32_t expect_new = stacktab_count() + 1;
		uint32_t id = stacktab_intern(pool[k], pool_n[k]);
		if (known != NULL) {
			EXPECT(id == known->id, "a known stack got id %u, first got %u", id,
			       known->id);
			EXPECT(stacktab_count() == expect_new - 1, "a known stack took an id");
		} else {
			EXPECT(id == expect_new, "a new stack got id %u, expected the next one, %u",
			       id, expect_new);
			for (size_t i = 0; i < ref.n; i++)
				EXPECT(ref.v[i].id != id, "two different stacks share id %u", id);
			ref_add(&ref, pool[k], pool_n[k], id);
		}
	}
	ck_assert_uint_eq(ref.n, npool);
	ck_assert_uint_eq(stacktab_count(), base + npool);
	for (size_t i = 0; i < ref.n; i++)
		assert_frames(ref.v[i].id, ref.v[i].frames, ref.v[i].n);
	free(ref.v);
}
END_TEST

/* Many distinct stacks in one go (more than any hash-slot neighbourhood):
 * every one new, dense ids, each resolving to its frames. */
START_TEST(test_stacktab_many_distinct_stacks)
{
	enum { N = 50000 };
	const uint64_t salt = UINT64_C(0xB200000000000000);
	uint64_t f[3];

	ck_assert_int_eq(stacktab_init(), 0);
	uint32_t base = stacktab_count();
	for (uint32_t i = 0; i < N; i++) {
		f[0] = salt | i;
		f[1] = salt | (i * 7u);
		f[2] = salt;
		uint32_t id = stacktab_intern(f, 1 + i % 3);
		EXPECT(id == base + 1 + i, "stack %u got id %u, expected %u", i, id, base + 1 + i);
	}
	for (uint32_t i = 0; i < N; i++) {
		f[0] = salt | i;
		f[1] = salt | (i * 7u);
		f[2] = salt;
		EXPECT(stacktab_intern(f, 1 + i % 3) == base + 1 + i, "stack %u changed id", i);
		assert_frames(base + 1 + i, f, 1 + i % 3);
	}
	ck_assert_uint_eq(stacktab_count(), base + N);
}
END_TEST

START_TEST(test_stacktab_full_table)
{
	const uint64_t salt = UINT64_C(0xC300000000000000);
	uint64_t f;

	ck_assert_int_eq(stacktab_init(), 0);
	uint32_t base = stacktab_count();
	ck_assert_uint_lt(base, STACKTAB_CAP);
	/* Fill it: ids base+1 .. STACKTAB_CAP. */
	for (uint32_t i = 0; base + i < STACKTAB_CAP; i++) {
		f = salt | i;
		uint32_t id = stacktab_intern(&f, 1);
		EXPECT(id == base + 1 + i, "stack %u got id %u, expected %u", i, id, base + 1 + i);
	}
	ck_assert_uint_eq(stacktab_count(), STACKTAB_CAP);
	/* Full: new stacks get 0, many times over, and nothing wraps. */
	for (uint32_t i = 0; i < 200000; i++) {
		f = (salt ^ UINT64_C(0x0080000000000000)) | i;
		EXPECT(stacktab_intern(&f, 1) == 0, "new stack %u got an id in a full table", i);
	}
	ck_assert_uint_eq(stacktab_count(), STACKTAB_CAP);
	/* Known stacks keep their ids and frames, first and last included. */
	const uint32_t probes[] = {
	    0, 1, 2, 1000, 65535, STACKTAB_CAP - base - 2, STACKTAB_CAP - base - 1};
	for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
		f = salt | probes[k];
		EXPECT(stacktab_intern(&f, 1) == base + 1 + probes[k],
		       "stack %u lost its id once the table was full", probes[k]);
		assert_frames(base + 1 + probes[k], &f, 1);
	}
	ck_assert_uint_eq(stacktab_count(), STACKTAB_CAP);
}
END_TEST

/* ---- two threads ---- */

#define SHARED  20000 /* stacks both threads intern */
#define PRIVATE 5000  /* stacks only one thread interns */

struct interner {
	int which; /* 0 or 1 */
	uint32_t shared_id[SHARED];
	uint32_t private_id[PRIVATE];
	pthread_barrier_t *go;
};

static void shared_stack(uint32_t i, uint64_t f[2])
{
	f[0] = UINT64_C(0xD400000000000000) | i;
	f[1] = UINT64_C(0xD400000000000000) | (i >> 3);
}

static void private_stack(int which, uint32_t i, uint64_t f[2])
{
	f[0] = UINT64_C(0xE500000000000000) | (uint64_t)which << 40 | i;
	f[1] = 7;
}

static void *interner_main(void *arg)
{
	struct interner *t = arg;
	uint64_t f[2];

	pthread_barrier_wait(t->go);
	for (uint32_t k = 0; k < SHARED; k++) {
		/* Thread 0 goes forwards, thread 1 backwards: they meet in the
		 * middle, where both insert the same stacks at once. */
		uint32_t i = t->which == 0 ? k : SHARED - 1 - k;
		shared_stack(i, f);
		t->shared_id[i] = stacktab_intern(f, 1 + i % 2);
		if (k % 4 == 0 && k / 4 < PRIVATE) {
			private_stack(t->which, k / 4, f);
			t->private_id[k / 4] = stacktab_intern(f, 2);
		}
	}
	return NULL;
}

START_TEST(test_stacktab_two_threads_agree)
{
	static struct interner t[2];
	pthread_t th[2];
	pthread_barrier_t go;
	uint64_t f[2];

	ck_assert_int_eq(stacktab_init(), 0);
	uint32_t base = stacktab_count();
	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++) {
		t[i].which = i;
		t[i].go = &go;
		ck_assert_int_eq(pthread_create(&th[i], NULL, interner_main, &t[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);

	uint32_t count = stacktab_count();
	/* A thread that loses the race for a slot leaves its id unused, so
	 * there may be more ids than stacks, never fewer. */
	ck_assert_uint_ge(count, base + SHARED + 2 * PRIVATE);
	/* Every id in use, once: mark them. */
	uint8_t *used = calloc((size_t)count + 1, 1);
	ck_assert_ptr_nonnull(used);
	for (uint32_t i = 0; i < SHARED; i++) {
		uint32_t id = t[0].shared_id[i];
		EXPECT(id == t[1].shared_id[i], "stack %u: thread 0 got id %u, thread 1 got %u", i,
		       id, t[1].shared_id[i]);
		EXPECT(id > base && id <= count, "stack %u got id %u outside %u..%u", i, id,
		       base + 1, count);
		EXPECT(!used[id], "id %u given to two different stacks", id);
		used[id] = 1;
		shared_stack(i, f);
		assert_frames(id, f, 1 + i % 2);
	}
	for (int w = 0; w < 2; w++) {
		for (uint32_t i = 0; i < PRIVATE; i++) {
			uint32_t id = t[w].private_id[i];
			EXPECT(id > base && id <= count, "private stack got id %u", id);
			EXPECT(!used[id], "id %u given to two different stacks", id);
			used[id] = 1;
			private_stack(w, i, f);
			assert_frames(id, f, 2);
		}
	}
	free(used);
}
END_TEST

Suite *stacktab_suite(void)
{
	Suite *s = suite_create("stacktab");
	TCase *tc;

	tc = tcase_create("intern");
	tcase_add_test(tc, test_stacktab_init_and_empty_stack);
	tcase_add_test(tc, test_stacktab_same_stack_same_id);
	tcase_add_test(tc, test_stacktab_many_distinct_stacks);
	suite_add_tcase(s, tc);

	tc = tcase_create("full");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_stacktab_full_table);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_stacktab_two_threads_agree);
	suite_add_tcase(s, tc);
	return s;
}
