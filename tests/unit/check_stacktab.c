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
 *    stacks still have distinct ids, and every id resolves to its frames;
 *  - the entries are in the shared region where the daemon reads them
 *    (proto/shm.h): read from the memfd with pread, as memtraced does, an
 *    id's state is READY, its offset is aligned and inside the arena, and
 *    the entry there holds the frames; drain_run defines the stack from
 *    them when a record names it;
 *  - stacktab_move (a fork child) copies the table into a fresh region:
 *    the ids, states and frames are there, known stacks keep their ids, a
 *    new stack gets the next id and lands in the new region only, the old
 *    one is left as it was; an id whose writer did not finish (its state
 *    not READY) becomes DEAD, in the copy and with stacktab_fixup_after_fork,
 *    and stacktab_get says so (-1).
 *
 * The table is process-wide and never freed, and so is the region it lives
 * in (testregion.h, made once per process, and again by the move test), so
 * every test uses stacks no other test uses (a per-test salt in the frames)
 * and counts ids from what stacktab_count() said when it began. The
 * full-table test fills the table; Check runs each test in its own process,
 * which is what makes the others independent of it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drain.h"
#include "expect.h"
#include "heap.h"
#include "splitmix.h"
#include "stacktab.h"
#include "suites.h"
#include "testregion.h"

/* ---- the region the table lives in ---- */

static struct testregion region;
static bool region_made;

/* Maps the process's region once and points the table at it. */
static void table_init(void)
{
	if (!region_made) {
		ck_assert_int_eq(testregion_create(&region, 1), 0);
		region_made = true;
	}
	ck_assert_int_eq(stacktab_init(region.base), 0);
}

/* What the daemon reads of id in the region behind fd. */
struct seen {
	uint8_t state;
	uint64_t off;
	struct shm_stack hdr;
	uint64_t frames[PROTO_MAX_FRAMES];
};

static void read_entry(int fd, uint32_t id, struct seen *e)
{
	memset(e, 0, sizeof(*e));
	ck_assert_int_eq(pread(fd, &e->state, 1, (off_t)(SHM_OFF_STATES + id)), 1);
	ck_assert_int_eq(pread(fd, &e->off, 8, (off_t)(SHM_OFF_OFFSETS + 8 * (uint64_t)id)), 8);
	if (e->state != SHM_STACK_READY)
		return;
	EXPECT(e->off != 0 && e->off % 8 == 0 && e->off < SHM_ARENA - sizeof(e->hdr),
	       "id %u: entry offset %ju", id, (uintmax_t)e->off);
	ck_assert_int_eq(pread(fd, &e->hdr, sizeof(e->hdr), (off_t)(SHM_OFF_ARENA + e->off)),
	                 (ssize_t)sizeof(e->hdr));
	EXPECT(e->hdr.nframes >= 1 && e->hdr.nframes <= PROTO_MAX_FRAMES &&
	           e->off + sizeof(e->hdr) + 8 * (uint64_t)e->hdr.nframes <= SHM_ARENA,
	       "id %u: %u frames at %ju", id, e->hdr.nframes, (uintmax_t)e->off);
	size_t n = 8 * (size_t)e->hdr.nframes;
	ck_assert_int_eq(pread(fd, e->frames, n, (off_t)(SHM_OFF_ARENA + e->off + sizeof(e->hdr))),
	                 (ssize_t)n);
}

static void assert_in_region(int fd, uint32_t id, const uint64_t *want, uint32_t n)
{
	struct seen e;

	read_entry(fd, id, &e);
	EXPECT(e.state == SHM_STACK_READY, "id %u: state %u in the region", id, e.state);
	EXPECT(e.hdr.nframes == n, "id %u: %u frames in the region, interned with %u", id,
	       e.hdr.nframes, n);
	EXPECT(memcmp(e.frames, want, n * sizeof(*want)) == 0, "id %u: other frames in the region",
	       id);
}

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
	assert_in_region(region.fd, id, want, n);
}

/* ---- single thread ---- */

START_TEST(test_stacktab_init_and_empty_stack)
{
	uint64_t f = 0x1234;

	table_init();
	ck_assert_int_eq(stacktab_init(region.base), 0); /* again: nothing changes */
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

	table_init();
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

	table_init();
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

	table_init();
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

	table_init();
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

/* ---- the shared region ---- */

/* What the agent wrote is what the daemon reads: a record naming an id
 * makes drain_run define the stack with the frames interned. */
START_TEST(test_stacktab_daemon_reads_the_entries)
{
	const uint64_t salt = UINT64_C(0xF600000000000000);
	uint64_t f[PROTO_MAX_FRAMES];
	uint32_t ids[4];
	const uint32_t lens[4] = {1, 2, 17, PROTO_MAX_FRAMES};
	struct drain dr;
	struct heap h;
	const char *why = NULL;

	table_init();
	for (uint32_t k = 0; k < 4; k++) {
		for (uint32_t j = 0; j < lens[k]; j++)
			f[j] = salt | (uint64_t)k << 32 | j;
		ids[k] = stacktab_intern(f, lens[k]);
		ck_assert_uint_ne(ids[k], 0);
		assert_frames(ids[k], f, lens[k]);
	}
	ck_assert_int_eq(drain_open(&dr, testregion_fd(&region), &why), 0);
	heap_init(&h, 0, 0);
	struct shm_ring *r = testregion_ring(&region, 0);
	testregion_place(&region, 0, 0);
	__atomic_store_n((uint32_t *)&testregion_header(&region)->nrings, 1, __ATOMIC_RELEASE);
	for (uint32_t k = 0; k < 4; k++) {
		struct shm_ev e =
		    testregion_record(k + 1, PROTO_EV_ALLOC, 0x10000 + 16 * k, 8, ids[k]);
		testregion_put(r, &e);
	}
	__atomic_store_n((uint64_t *)&testregion_header(&region)->seq, 5, __ATOMIC_RELEASE);
	long n = drain_run(&dr, &h, false, &why);
	ck_assert_msg(n == 4, "drain_run = %ld (%s)", n, why ? why : "");
	for (uint32_t k = 0; k < 4; k++) {
		for (uint32_t j = 0; j < lens[k]; j++)
			f[j] = salt | (uint64_t)k << 32 | j;
		ck_assert_uint_lt(ids[k], h.nstacks);
		ck_assert(heap_stack_at(&h, ids[k])->defined);
		ck_assert_uint_eq(heap_stack_at(&h, ids[k])->nframes, lens[k]);
		ck_assert_mem_eq(heap_stack_at(&h, ids[k])->frames, f, lens[k] * sizeof(uint64_t));
	}
	heap_close(&h);
	drain_close(&dr);
}
END_TEST

/* A fork child's table: the same ids in a region of its own. */
START_TEST(test_stacktab_move_to_a_new_region)
{
	const uint64_t salt = UINT64_C(0xF700000000000000);
	enum { N = 300 };
	uint64_t f[3];
	struct testregion child;

	table_init();
	uint32_t base = stacktab_count();
	for (uint32_t i = 0; i < N; i++) {
		f[0] = salt | i;
		f[1] = salt | (i * 3u);
		f[2] = salt;
		ck_assert_uint_eq(stacktab_intern(f, 1 + i % 3), base + 1 + i);
	}
	/* An id whose writer had not finished when the process forked. */
	uint8_t *st = testregion_stack_state(&region, base + 7);
	*st = SHM_STACK_PENDING;

	ck_assert_int_eq(testregion_create(&child, 1), 0);
	stacktab_move(child.base);
	const struct testregion parent = region;
	region = child; /* the table lives there now; the parent's stays mapped */

	ck_assert_uint_eq(stacktab_count(), base + N);
	for (uint32_t i = 0; i < N; i++) {
		f[0] = salt | i;
		f[1] = salt | (i * 3u);
		f[2] = salt;
		if (i == 6) {
			const uint64_t *got;
			uint32_t gn;
			struct seen e;
			ck_assert_int_eq(stacktab_get(base + 7, &got, &gn), -1);
			read_entry(child.fd, base + 7, &e);
			ck_assert_uint_eq(e.state, SHM_STACK_DEAD);
			continue;
		}
		assert_frames(base + 1 + i, f, 1 + i % 3);
		ck_assert_uint_eq(stacktab_intern(f, 1 + i % 3), base + 1 + i);
	}
	/* A new stack: the next id, in the child's region only. */
	f[0] = salt | 0xffffff;
	uint32_t id = stacktab_intern(f, 1);
	ck_assert_uint_eq(id, base + N + 1);
	assert_frames(id, f, 1);
	struct seen e;
	read_entry(parent.fd, id, &e);
	ck_assert_uint_eq(e.state, SHM_STACK_PENDING);
	ck_assert_uint_eq(e.off, 0);
	/* The parent's region still holds its table as it was. */
	f[0] = salt | 5;
	f[1] = salt | 15;
	f[2] = salt;
	assert_in_region(parent.fd, base + 6, f, 3);
}
END_TEST

START_TEST(test_stacktab_fixup_after_fork)
{
	const uint64_t salt = UINT64_C(0xF800000000000000);
	uint64_t f = salt;
	const uint64_t *got;
	uint32_t gn;

	table_init();
	uint32_t a = stacktab_intern(&f, 1);
	f = salt | 1;
	uint32_t b = stacktab_intern(&f, 1);
	ck_assert_uint_eq(b, a + 1);
	*testregion_stack_state(&region, b) = SHM_STACK_PENDING; /* still being written */
	ck_assert_int_eq(stacktab_get(b, &got, &gn), 0);
	stacktab_fixup_after_fork();
	ck_assert_int_eq(stacktab_get(b, &got, &gn), -1);
	ck_assert_uint_eq(*testregion_stack_state(&region, b), SHM_STACK_DEAD);
	ck_assert_int_eq(stacktab_get(a, &got, &gn), 1);
	ck_assert_uint_eq(got[0], salt);
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

	tc = tcase_create("region");
	tcase_add_test(tc, test_stacktab_daemon_reads_the_entries);
	tcase_add_test(tc, test_stacktab_move_to_a_new_region);
	tcase_add_test(tc, test_stacktab_fixup_after_fork);
	suite_add_tcase(s, tc);
	return s;
}
