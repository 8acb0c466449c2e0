/*
 * check_ring.c - the agent's per-thread event rings (agent/ring.h).
 *
 * Behaviours pinned:
 *  - a ring from ring_acquire is empty (head == tail, ring_used 0), has no
 *    sequence number in flight (pending UINT64_MAX), is live, carries the
 *    caller's tid and is in the registry;
 *  - retire and release move it through RETIRED to FREE, and the next
 *    acquisitions reuse released rings (cleared) before they map new ones:
 *    the registry grows only when no ring is free;
 *  - ring_used is head - tail at every distance up to RING_CAP, also when
 *    the 64-bit positions themselves wrap, and a position maps to the slot
 *    position & (RING_CAP - 1), so a record written at the last slot is
 *    followed by one at slot 0 (the array wraps, records never straddle);
 *  - after ring_reset_after_fork every ring but the caller's is free and
 *    empty, the caller's is empty, live and carries the caller's tid;
 *  - head, tail and pending are on distinct cache lines (the header's
 *    promise: producer and consumer do not share a line);
 *  - one producer and one consumer on two threads, using the protocol the
 *    header describes (the producer fills a slot and then publishes head
 *    with release, waits on tail_futex when the ring is full; the consumer
 *    reads up to head with acquire, publishes tail and wakes), pass two
 *    million records through one ring in order, none lost, duplicated or
 *    torn: every record read equals the one a reference generator, run
 *    again by the reader, says was written at that position;
 *  - threads acquiring and releasing rings concurrently are never handed
 *    the same ring at once, and the registry never holds more rings than
 *    were ever held at the same time.
 *
 * The expected records come from a splitmix64 generator the reader runs
 * itself from the same seed, never from the ring. Rings live in a process-
 * wide registry that is never freed, so the tests work relative to what the
 * registry already holds and do not depend on running in a fresh process.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ring.h"
#include "splitmix.h"
#include "suites.h"
#include "sysdep.h"

/* ---- helpers ---- */

static size_t registry_len(void)
{
	size_t n = 0;
	for (struct ring *r = ring_registry(); r != NULL; r = r->next)
		n++;
	return n;
}

static int in_registry(const struct ring *want)
{
	for (struct ring *r = ring_registry(); r != NULL; r = r->next)
		if (r == want)
			return 1;
	return 0;
}

/* Takes rings until one is freshly mapped (it shows up as the new head of
 * the registry): afterwards the free list is empty, whatever earlier tests
 * in this process left there. Returns that fresh ring, still held. The
 * others go back to the caller in *held (up to cap of them). */
static struct ring *drain_free_list(struct ring **held, size_t cap, size_t *nheld)
{
	*nheld = 0;
	for (;;) {
		struct ring *before = ring_registry();
		struct ring *r = ring_acquire(1);
		ck_assert_ptr_nonnull(r);
		if (ring_registry() == r && r != before)
			return r;
		ck_assert_uint_lt(*nheld, cap);
		held[(*nheld)++] = r;
	}
}

static void give_back(struct ring *r)
{
	ring_retire(r);
	ring_release(r);
}

static void assert_fresh(struct ring *r, pid_t tid)
{
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(atomic_load(&r->head), atomic_load(&r->tail));
	ck_assert_uint_eq(ring_used(r), 0);
	ck_assert_uint_eq(atomic_load(&r->pending), UINT64_MAX);
	ck_assert_uint_eq(atomic_load(&r->wake_sent), 0);
	ck_assert_int_eq(atomic_load(&r->state), RING_LIVE);
	ck_assert_int_eq(r->tid, tid);
	ck_assert(in_registry(r));
}

/* Record number i of the reference sequence: seq i, kind 1 or 2, and
 * addr, size and stack drawn from the generator. */
static struct ring_ev reference_ev(uint64_t i, struct rng *g)
{
	struct ring_ev e;
	uint64_t a = rng_next(g), b = rng_next(g);
	e.seq_kind = i << 2 | (1 + (a & 1));
	e.addr = a | 1;
	e.size = b >> 8;
	e.stack = (uint32_t)b;
	e.pad = 0;
	return e;
}

/* ---- acquire, retire, release ---- */

START_TEST(test_ring_acquire_is_empty_and_registered)
{
	size_t n0 = registry_len();
	struct ring *held[64];
	size_t nheld;
	struct ring *r = drain_free_list(held, 64, &nheld);

	assert_fresh(r, 1);
	ck_assert_uint_eq(registry_len(), n0 + 1);
	struct ring *r2 = ring_acquire(4242);
	assert_fresh(r2, 4242);
	ck_assert_ptr_ne(r, r2);
	ck_assert_ptr_eq(ring_registry(), r2);
	ck_assert_uint_eq(registry_len(), n0 + 2);
	give_back(r2);
	give_back(r);
	for (size_t i = 0; i < nheld; i++)
		give_back(held[i]);
}
END_TEST

START_TEST(test_ring_states_retire_release)
{
	struct ring *r = ring_acquire(7);

	ck_assert_int_eq(atomic_load(&r->state), RING_LIVE);
	ring_retire(r);
	ck_assert_int_eq(atomic_load(&r->state), RING_RETIRED);
	ring_release(r);
	ck_assert_int_eq(atomic_load(&r->state), RING_FREE);
	ck_assert(in_registry(r)); /* never unmapped, never unlinked */
}
END_TEST

/* Released rings come back (cleared) before any new one is mapped. */
START_TEST(test_ring_released_rings_are_reused)
{
	enum { N = 5 };
	struct ring *held[64], *mine[N], *again[N];
	size_t nheld;

	mine[0] = drain_free_list(held, 64, &nheld);
	for (size_t i = 1; i < N; i++)
		mine[i] = ring_acquire(1);
	for (size_t i = 0; i < N; i++) {
		/* Leave records and state behind, as an exited thread would. */
		atomic_store(&mine[i]->head, 1000 + i);
		atomic_store(&mine[i]->tail, 10 + i);
		atomic_store(&mine[i]->pending, 99);
		atomic_store(&mine[i]->wake_sent, 1);
		give_back(mine[i]);
	}
	size_t n = registry_len();
	for (size_t i = 0; i < N; i++) {
		again[i] = ring_acquire((pid_t)(100 + i));
		assert_fresh(again[i], (pid_t)(100 + i));
	}
	ck_assert_uint_eq(registry_len(), n);
	/* The same set of rings, each once. */
	for (size_t i = 0; i < N; i++) {
		int found = 0;
		for (size_t j = 0; j < N; j++)
			found += again[j] == mine[i];
		ck_assert_int_eq(found, 1);
	}
	/* The free list is empty again: the next one is new. */
	struct ring *fresh = ring_acquire(200);
	ck_assert_ptr_eq(ring_registry(), fresh);
	ck_assert_uint_eq(registry_len(), n + 1);
	give_back(fresh);
	for (size_t i = 0; i < N; i++)
		give_back(again[i]);
	for (size_t i = 0; i < nheld; i++)
		give_back(held[i]);
}
END_TEST

/* ---- positions ---- */

START_TEST(test_ring_used_counts_every_distance)
{
	struct ring *r = ring_acquire(1);
	/* Positions near 0, near RING_CAP and where the 64-bit counters wrap. */
	const uint64_t bases[] = {0, RING_CAP - 1, 3 * (uint64_t)RING_CAP + 5, UINT64_MAX - 10,
	                          UINT64_MAX - RING_CAP / 2};

	for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
		for (uint64_t d = 0; d <= RING_CAP; d += (d < 4 || d > RING_CAP - 4) ? 1 : 997) {
			atomic_store(&r->tail, bases[b]);
			atomic_store(&r->head, bases[b] + d); /* wraps for the last bases */
			ck_assert_uint_eq(ring_used(r), d);
		}
	}
	atomic_store(&r->tail, 0);
	atomic_store(&r->head, 0);
	give_back(r);
}
END_TEST

/* Written the way the producer writes (slot, then head with release) from
 * a position just before the end of the array: the records land in the
 * last slots and continue at slot 0, each whole. */
START_TEST(test_ring_slots_wrap_at_capacity)
{
	struct ring *r = ring_acquire(1);
	const uint64_t start = 5 * (uint64_t)RING_CAP - 3;
	struct rng s = {77}, check = {77};

	memset(r->ev, 0, sizeof r->ev);
	atomic_store(&r->head, start);
	atomic_store(&r->tail, start);
	for (uint64_t i = 0; i < 8; i++) {
		uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
		r->ev[h & (RING_CAP - 1)] = reference_ev(i, &s);
		atomic_store_explicit(&r->head, h + 1, memory_order_release);
		ck_assert_uint_eq(ring_used(r), i + 1);
	}
	/* Slots CAP-3, CAP-2, CAP-1, then 0..4; slot 5 untouched. */
	const size_t slot[8] = {RING_CAP - 3, RING_CAP - 2, RING_CAP - 1, 0, 1, 2, 3, 4};
	for (uint64_t i = 0; i < 8; i++) {
		struct ring_ev want = reference_ev(i, &check);
		ck_assert_mem_eq(&r->ev[slot[i]], &want, sizeof want);
	}
	ck_assert_uint_eq(r->ev[5].seq_kind, 0);
	ck_assert_uint_eq(r->ev[RING_CAP - 4].seq_kind, 0);
	/* The reader consumes them in position order. */
	check = (struct rng){77};
	for (uint64_t t = start; t != start + 8; t++) {
		struct ring_ev want = reference_ev(t - start, &check);
		ck_assert_mem_eq(&r->ev[t & (RING_CAP - 1)], &want, sizeof want);
		atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	}
	ck_assert_uint_eq(ring_used(r), 0);
	give_back(r);
}
END_TEST

START_TEST(test_ring_layout_separates_producer_and_consumer)
{
	size_t head = offsetof(struct ring, head) / 64;
	size_t tail = offsetof(struct ring, tail) / 64;
	size_t pending = offsetof(struct ring, pending) / 64;

	ck_assert_uint_ne(head, tail);
	ck_assert_uint_ne(head, pending);
	ck_assert_uint_ne(tail, pending);
	/* RING_CAP is a power of two, or position & (RING_CAP - 1) would skip
	 * slots. */
	ck_assert_uint_eq(RING_CAP & (RING_CAP - 1), 0);
}
END_TEST

/* ---- after fork ---- */

START_TEST(test_ring_reset_after_fork)
{
	enum { N = 6 };
	struct ring *held[64], *r[N];
	size_t nheld;
	pid_t me = (pid_t)syscall(SYS_gettid);

	r[0] = drain_free_list(held, 64, &nheld);
	for (size_t i = 0; i < nheld; i++)
		give_back(held[i]); /* free before the "fork": must stay free */
	for (size_t i = 1; i < N; i++)
		r[i] = ring_acquire((pid_t)(500 + i));
	for (size_t i = 0; i < N; i++) {
		atomic_store(&r[i]->head, 300 + i);
		atomic_store(&r[i]->tail, 100);
		atomic_store(&r[i]->pending, 150);
	}
	ring_retire(r[1]); /* an exited thread's ring, not drained yet */
	struct ring *mine = r[2];

	ring_reset_after_fork(mine);
	for (struct ring *x = ring_registry(); x != NULL; x = x->next) {
		ck_assert_uint_eq(ring_used(x), 0);
		ck_assert_uint_eq(atomic_load(&x->pending), UINT64_MAX);
		if (x == mine) {
			ck_assert_int_eq(atomic_load(&x->state), RING_LIVE);
			ck_assert_int_eq(x->tid, me);
			ck_assert_uint_ne(x->idle_since, 0);
		} else {
			ck_assert_int_eq(atomic_load(&x->state), RING_FREE);
		}
	}
	/* Every other ring is on the free list: taking them all maps nothing. */
	size_t n = registry_len();
	for (size_t i = 0; i + 1 < n; i++) {
		struct ring *x = ring_acquire(1);
		ck_assert_ptr_ne(x, mine);
		ck_assert_int_eq(atomic_load(&x->state), RING_LIVE);
	}
	ck_assert_uint_eq(registry_len(), n);
	struct ring *fresh = ring_acquire(1);
	ck_assert_ptr_eq(ring_registry(), fresh);
}
END_TEST

/* ---- one producer, one consumer ---- */

#define STRESS_RECORDS  2000000u
#define STRESS_SEED     0x5eedu
#define STRESS_MAX_TAKE 1000u /* the consumer drains at most this many at once */

struct stress {
	struct ring *r;
	uint64_t base; /* position of record 0 */
	_Atomic int failed;
	char why[160];
	uint64_t max_used;
};

static void stress_fail(struct stress *st, const char *why)
{
	int expect = 0;
	if (atomic_compare_exchange_strong(&st->failed, &expect, 1))
		strncpy(st->why, why, sizeof st->why - 1);
}

/* The producer side as the agent does it: wait while the ring is full,
 * then fill the slot and publish head. */
static void *stress_producer(void *arg)
{
	struct stress *st = arg;
	struct ring *r = st->r;
	struct rng s = {STRESS_SEED};

	for (uint64_t i = 0; i < STRESS_RECORDS && !atomic_load(&st->failed); i++) {
		while (RING_CAP - ring_used(r) < 1) {
			atomic_fetch_add(&r->waiters, 1);
			uint32_t tf = atomic_load(&r->tail_futex);
			if (RING_CAP - ring_used(r) < 1)
				sysdep_futex_wait(&r->tail_futex, tf, 20 * 1000 * 1000);
			atomic_fetch_sub(&r->waiters, 1);
			if (atomic_load(&st->failed))
				return NULL;
		}
		uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
		r->ev[h & (RING_CAP - 1)] = reference_ev(i, &s);
		atomic_store_explicit(&r->head, h + 1, memory_order_release);
	}
	return NULL;
}

/* The consumer side as the sender does it: read up to head, check each
 * record against the reference, give the space back and wake. */
static void *stress_consumer(void *arg)
{
	struct stress *st = arg;
	struct ring *r = st->r;
	struct rng s = {STRESS_SEED};
	uint64_t next = 0, take = 1;

	while (next < STRESS_RECORDS && !atomic_load(&st->failed)) {
		uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
		uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
		if (t != st->base + next) {
			stress_fail(st, "tail moved behind the consumer's back");
			break;
		}
		if (h - t > RING_CAP) {
			stress_fail(st, "head ran more than RING_CAP ahead of tail");
			break;
		}
		if (h - t > st->max_used)
			st->max_used = h - t;
		if (h == t) {
			sched_yield();
			continue;
		}
		/* Varying batch sizes, so that both sides meet at every offset. */
		uint64_t n = h - t > take ? take : h - t;
		take = take % STRESS_MAX_TAKE + 7;
		for (uint64_t k = 0; k < n; k++) {
			struct ring_ev want = reference_ev(next, &s);
			if (memcmp(&r->ev[(t + k) & (RING_CAP - 1)], &want, sizeof want) != 0) {
				stress_fail(st, "a record differs from the reference sequence");
				return NULL;
			}
			next++;
		}
		atomic_store_explicit(&r->tail, t + n, memory_order_release);
		atomic_fetch_add(&r->tail_futex, 1);
		if (atomic_load(&r->waiters))
			sysdep_futex_wake(&r->tail_futex, 64);
	}
	return NULL;
}

START_TEST(test_ring_producer_consumer_stress)
{
	struct stress st;
	pthread_t prod, cons;

	memset(&st, 0, sizeof st);
	st.r = ring_acquire(1);
	ck_assert_ptr_nonnull(st.r);
	/* Start just before the end of the array and near the end of the
	 * 64-bit positions: the run wraps both. */
	st.base = UINT64_MAX - STRESS_RECORDS / 2 - 17;
	atomic_store(&st.r->head, st.base);
	atomic_store(&st.r->tail, st.base);
	ck_assert_int_eq(pthread_create(&cons, NULL, stress_consumer, &st), 0);
	ck_assert_int_eq(pthread_create(&prod, NULL, stress_producer, &st), 0);
	pthread_join(prod, NULL);
	pthread_join(cons, NULL);
	ck_assert_msg(!atomic_load(&st.failed), "%s", st.why);
	ck_assert_uint_eq(atomic_load(&st.r->head), st.base + STRESS_RECORDS);
	ck_assert_uint_eq(atomic_load(&st.r->tail), st.base + STRESS_RECORDS);
	ck_assert_uint_eq(ring_used(st.r), 0);
	ck_assert_uint_le(st.max_used, RING_CAP);
	give_back(st.r);
}
END_TEST

/* ---- concurrent acquire and release ---- */

#define CHURN_THREADS 4
#define CHURN_ROUNDS  20000

struct churn {
	_Atomic int failed;
	pthread_barrier_t go;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	pid_t me = (pid_t)syscall(SYS_gettid);

	pthread_barrier_wait(&c->go);
	for (int i = 0; i < CHURN_ROUNDS && !atomic_load(&c->failed); i++) {
		struct ring *r = ring_acquire(me);
		if (r == NULL || __atomic_load_n(&r->tid, __ATOMIC_RELAXED) != me ||
		    atomic_load(&r->state) != RING_LIVE || ring_used(r) != 0) {
			atomic_store(&c->failed, 1);
			break;
		}
		/* A ring handed to two threads at once would have its tid
		 * overwritten by the other one meanwhile. */
		for (int k = 0; k < 16; k++) {
			atomic_store(&r->head, (uint64_t)me);
			if (__atomic_load_n(&r->tid, __ATOMIC_RELAXED) != me ||
			    atomic_load(&r->head) != (uint64_t)me) {
				atomic_store(&c->failed, 1);
				break;
			}
		}
		atomic_store(&r->head, 0);
		give_back(r);
	}
	return NULL;
}

START_TEST(test_ring_concurrent_acquire_release)
{
	struct churn c;
	pthread_t th[CHURN_THREADS];
	size_t n0 = registry_len();

	memset(&c, 0, sizeof c);
	pthread_barrier_init(&c.go, NULL, CHURN_THREADS);
	for (int i = 0; i < CHURN_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, churn_main, &c), 0);
	for (int i = 0; i < CHURN_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&c.go);
	ck_assert_msg(!atomic_load(&c.failed), "a ring was handed to two threads at once");
	/* At most CHURN_THREADS rings were ever held at once. */
	ck_assert_uint_le(registry_len(), n0 + CHURN_THREADS);
	for (struct ring *r = ring_registry(); r != NULL; r = r->next)
		ck_assert_int_ne(atomic_load(&r->state), RING_RETIRED);
}
END_TEST

Suite *ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc;

	tc = tcase_create("lifecycle");
	tcase_add_test(tc, test_ring_acquire_is_empty_and_registered);
	tcase_add_test(tc, test_ring_states_retire_release);
	tcase_add_test(tc, test_ring_released_rings_are_reused);
	tcase_add_test(tc, test_ring_reset_after_fork);
	suite_add_tcase(s, tc);

	tc = tcase_create("positions");
	tcase_add_test(tc, test_ring_used_counts_every_distance);
	tcase_add_test(tc, test_ring_slots_wrap_at_capacity);
	tcase_add_test(tc, test_ring_layout_separates_producer_and_consumer);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ring_producer_consumer_stress);
	tcase_add_test(tc, test_ring_concurrent_acquire_release);
	suite_add_tcase(s, tc);
	return s;
}
