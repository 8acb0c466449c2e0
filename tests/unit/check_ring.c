/*
 * check_ring.c - the agent's per-thread event rings in the shared region
 * (agent/ring.h).
 *
 * Behaviours pinned:
 *  - a ring from ring_acquire is empty (head == tail, ring_used 0), has no
 *    sequence number in flight (pending UINT64_MAX), no WAKE asked, is live
 *    and carries the caller's tid; new rings are the region's slots in
 *    order (ring_at(i), the header's nrings counting them), a new slot
 *    starts at position 0 whatever its memory held; without a region there
 *    is no ring;
 *  - retire marks a ring RETIRED; ring_reclaim gives back (FREE, on the
 *    free list) a retired ring only once it is drained (head == tail and
 *    nothing pending), a live ring only when asked to check threads, when
 *    the ring was idle long enough and its thread is gone; a live thread's
 *    ring, a busy one, or one idle too briefly stays;
 *  - the next acquisitions reuse freed rings before they take new slots,
 *    each once; a reused ring keeps its head and tail where the daemon
 *    left them (its view stays valid), and gets a fresh pending, wake_sent,
 *    tid and state;
 *  - when all SHM_NRINGS slots are taken there is no ring (NULL) until one
 *    is freed; a ring count past SHM_NRINGS in the header reads as
 *    SHM_NRINGS;
 *  - ring_used is head - tail at every distance up to RING_CAP, also when
 *    the 64-bit positions themselves wrap, and a position maps to the slot
 *    position % RING_CAP, so a record written at the last slot is followed
 *    by one at slot 0 (the array wraps, records never straddle);
 *  - after ring_reset_after_fork in a fresh region (the fork child's) no
 *    ring is in use and none is free: the parent's freed rings are not
 *    handed out, the child's rings are its region's slots 0, 1, ...;
 *  - head, tail and pending are on distinct cache lines (the header's
 *    promise: producer and consumer do not share a line);
 *  - one producer and one consumer on two threads, using the protocol the
 *    header describes (the producer fills a slot and then publishes head
 *    with release, waits on the shared tail_futex when the ring is full;
 *    the consumer reads up to head with acquire, publishes tail and wakes),
 *    pass two million records through one ring in order, none lost,
 *    duplicated or torn: every record read equals the one a reference
 *    generator, run again by the reader, says was written at that position;
 *  - threads acquiring and retiring rings while a reclaimer (the sender)
 *    frees them are never handed the same ring at once, and the region never
 *    hands out more slots than were ever out at the same time.
 *
 * Each test maps a fresh region (testregion.h) and points the agent's
 * g_shm and g_region at it, as agent/region.c would; ring_reset_after_fork
 * empties the free list, so the tests do not depend on running in a fresh
 * process. The expected records come from a splitmix64 generator the reader
 * runs itself from the same seed, never from the ring.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "ring.h"
#include "splitmix.h"
#include "suites.h"
#include "sysdep.h"
#include "testregion.h"

static struct testregion R;

static void use_region(struct testregion *r)
{
	g_shm = testregion_header(r);
	g_region = r->base;
	ring_reset_after_fork();
}

static void setup(void)
{
	ck_assert_int_eq(testregion_create(&R, 1), 0);
	use_region(&R);
}

static void teardown(void)
{
	g_shm = NULL;
	g_region = NULL;
	ring_reset_after_fork();
	testregion_destroy(&R);
}

/* ---- helpers ---- */

static void assert_fresh(struct shm_ring *r, pid_t tid)
{
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(atomic_load(&r->head), atomic_load(&r->tail));
	ck_assert_uint_eq(ring_used(r), 0);
	ck_assert_uint_eq(atomic_load(&r->pending), UINT64_MAX);
	ck_assert_uint_eq(atomic_load(&r->wake_sent), 0);
	ck_assert_int_eq(atomic_load(&r->state), RING_LIVE);
	ck_assert_int_eq(r->tid, tid);
}

static uint32_t index_of(const struct shm_ring *r)
{
	for (uint32_t i = 0; i < ring_count(); i++)
		if (ring_at(i) == r)
			return i;
	ck_abort_msg("ring %p is not one of the %u handed out", (const void *)r, ring_count());
	return UINT32_MAX;
}

/* What the sender does with a ring whose thread exited and which the daemon
 * drained. */
static void give_back(struct shm_ring *r)
{
	ring_retire(r);
	atomic_store(&r->tail, atomic_load(&r->head));
	ring_reclaim(sysdep_now_ns(), 0, 0, getpid());
	ck_assert_int_eq(atomic_load(&r->state), RING_FREE);
}

/* Record number i of the reference sequence: seq i, kind 1 or 2, and
 * addr, size and stack drawn from the generator. */
static struct shm_ev reference_ev(uint64_t i, struct rng *g)
{
	struct shm_ev e;
	uint64_t a = rng_next(g), b = rng_next(g);
	e.seq_kind = i << 2 | (1 + (a & 1));
	e.addr = a | 1;
	e.size = b >> 8;
	e.stack = (uint32_t)b;
	e.pad = 0;
	return e;
}

/* ---- acquire, retire, reclaim ---- */

START_TEST(test_ring_acquire_is_empty_and_counted)
{
	ck_assert_uint_eq(ring_count(), 0);
	struct shm_ring *r = ring_acquire(1);
	assert_fresh(r, 1);
	ck_assert_ptr_eq(r, ring_at(0));
	ck_assert_uint_eq(ring_count(), 1);
	ck_assert_uint_eq(atomic_load(&g_shm->nrings), 1);
	ck_assert_ptr_eq(ring_at(0), testregion_ring(&R, 0));

	/* A new slot starts at 0, whatever its memory held. */
	struct shm_ring *next = testregion_ring(&R, 1);
	atomic_store(&next->head, 777);
	atomic_store(&next->tail, 700);
	atomic_store(&next->wake_sent, 1);
	struct shm_ring *r2 = ring_acquire(4242);
	assert_fresh(r2, 4242);
	ck_assert_ptr_eq(r2, next);
	ck_assert_uint_eq(atomic_load(&r2->head), 0);
	ck_assert_uint_eq(ring_count(), 2);

	/* No region, no ring. */
	g_shm = NULL;
	ck_assert_uint_eq(ring_count(), 0);
	ck_assert_ptr_null(ring_acquire(1));
	use_region(&R);
	ck_assert_uint_eq(ring_count(), 2);
}
END_TEST

/* The pages of a freed ring's records go back to the kernel once an eighth
 * of the ring was written since the last time, and not for a ring that
 * recorded little. Pages given back read as zeros (the region is a memfd
 * mapped shared); resident pages are counted with mincore. */
static size_t resident_pages(const struct shm_ring *r)
{
	uintptr_t page = 4096, lo = ((uintptr_t)&r->ev[0] + page - 1) & ~(page - 1);
	uintptr_t hi = (uintptr_t)&r->ev[SHM_RING_CAP] & ~(page - 1);
	size_t n = (hi - lo) / page, res = 0;
	unsigned char *v = malloc(n);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(mincore((void *)lo, hi - lo, v), 0);
	for (size_t i = 0; i < n; i++)
		res += v[i] & 1;
	free(v);
	return res;
}

static void write_records(struct shm_ring *r, uint64_t n)
{
	uint64_t h = atomic_load(&r->head);
	for (uint64_t i = 0; i < n; i++)
		r->ev[(h + i) % SHM_RING_CAP].addr = 0x1000 + i;
	atomic_store(&r->head, h + n);
	atomic_store(&r->tail, h + n); /* the daemon read them */
}

START_TEST(test_ring_pages_given_back)
{
	uint64_t now = sysdep_now_ns();
	struct shm_ring *busy = ring_acquire(7), *quiet = ring_acquire(8);

	write_records(busy, SHM_RING_CAP); /* every page of the ring */
	write_records(quiet, 100);
	size_t before = resident_pages(busy);
	ck_assert_uint_ge(before, (size_t)SHM_RING_CAP * sizeof(struct shm_ev) / 4096 - 2);
	ring_retire(busy);
	ring_retire(quiet);
	ring_reclaim(now, 0, 0, getpid());
	ck_assert_int_eq(atomic_load(&busy->state), RING_FREE);
	ck_assert_int_eq(atomic_load(&quiet->state), RING_FREE);
	/* The busy ring's pages are gone (at most the two pages it shares
	 * with its header and the next ring stay); the quiet ring keeps its
	 * records. */
	ck_assert_uint_le(resident_pages(busy), 2);
	ck_assert_uint_eq(busy->ev[SHM_RING_CAP / 2].addr, 0);
	ck_assert_uint_eq(quiet->ev[99].addr, 0x1000 + 99);
}
END_TEST

START_TEST(test_ring_retire_and_reclaim)
{
	struct shm_ring *r = ring_acquire(7), *live = ring_acquire(8);
	uint64_t now = sysdep_now_ns();

	ck_assert_int_eq(atomic_load(&r->state), RING_LIVE);
	ring_retire(r);
	ck_assert_int_eq(atomic_load(&r->state), RING_RETIRED);
	/* Not drained: records the daemon has not read. */
	atomic_store(&r->head, 5);
	ring_reclaim(now, 0, 0, getpid());
	ck_assert_int_eq(atomic_load(&r->state), RING_RETIRED);
	/* Drained, but a number still pending. */
	atomic_store(&r->tail, 5);
	atomic_store(&r->pending, 4);
	ring_reclaim(now, 0, 0, getpid());
	ck_assert_int_eq(atomic_load(&r->state), RING_RETIRED);
	/* Drained and idle: freed. A live empty ring is not, unless asked to
	 * check threads. */
	atomic_store(&r->pending, UINT64_MAX);
	ring_reclaim(now, 0, 0, getpid());
	ck_assert_int_eq(atomic_load(&r->state), RING_FREE);
	ck_assert_int_eq(atomic_load(&live->state), RING_LIVE);
	/* Reclaiming again changes nothing, and the freed ring comes back once. */
	ring_reclaim(now, 0, 0, getpid());
	ck_assert_ptr_eq(ring_acquire(9), r);
	struct shm_ring *fresh = ring_acquire(10);
	ck_assert_ptr_ne(fresh, r);
	ck_assert_ptr_ne(fresh, live);
	ck_assert_uint_eq(ring_count(), 3);
}
END_TEST

static void *exit_at_once(void *arg)
{
	*(pid_t *)arg = sysdep_gettid();
	return NULL;
}

/* A thread that is gone, as the kernel tells it. */
static pid_t gone_tid(void)
{
	pthread_t th;
	pid_t tid = 0;

	ck_assert_int_eq(pthread_create(&th, NULL, exit_at_once, &tid), 0);
	pthread_join(th, NULL);
	ck_assert_int_ne(tid, 0);
	while (sysdep_thread_alive(getpid(), tid))
		sched_yield();
	return tid;
}

/* A thread that exits without its key destructor (killed by exit of
 * another thread, or pthread_exit from a signal handler) leaves a live
 * ring: the reclaimer checks the thread once the ring was idle long enough. */
START_TEST(test_ring_reclaims_rings_of_dead_threads)
{
	const uint64_t idle = UINT64_C(1000000000);
	pid_t dead = gone_tid();
	struct shm_ring *orphan = ring_acquire(dead);
	struct shm_ring *mine = ring_acquire(sysdep_gettid());
	struct shm_ring *busy = ring_acquire(dead);
	uint64_t now = sysdep_now_ns();

	atomic_store(&busy->head, 3); /* records the daemon has not read */
	/* Not idle long enough yet, or not asked to check: nothing. */
	ring_reclaim(now, 1, UINT64_MAX / 2, getpid());
	ring_reclaim(now + 10 * idle, 0, idle, getpid());
	ck_assert_int_eq(atomic_load(&orphan->state), RING_LIVE);
	/* Idle long enough: the dead thread's empty ring is freed; a live
	 * thread's ring and a ring with records stay. */
	ring_reclaim(now + 10 * idle, 1, idle, getpid());
	ck_assert_int_eq(atomic_load(&orphan->state), RING_FREE);
	ck_assert_int_eq(atomic_load(&mine->state), RING_LIVE);
	ck_assert_int_eq(atomic_load(&busy->state), RING_LIVE);
	ck_assert_ptr_eq(ring_acquire(1), orphan);
	/* Once drained, the busy ring was busy just now: it must be idle for
	 * idle_ns from then on. */
	atomic_store(&busy->tail, 3);
	ring_reclaim(now + 10 * idle + idle / 2, 1, idle, getpid());
	ck_assert_int_eq(atomic_load(&busy->state), RING_LIVE);
	ring_reclaim(now + 12 * idle, 1, idle, getpid());
	ck_assert_int_eq(atomic_load(&busy->state), RING_FREE);
}
END_TEST

/* Freed rings come back before any new slot is taken, at the positions the
 * daemon left them. */
START_TEST(test_ring_freed_rings_are_reused)
{
	enum { N = 5 };
	struct shm_ring *mine[N], *again[N];

	for (size_t i = 0; i < N; i++)
		mine[i] = ring_acquire(1);
	for (size_t i = 0; i < N; i++) {
		/* Leave a position and state behind, as an exited thread
		 * would, drained by the daemon. */
		atomic_store(&mine[i]->head, 1000 + i);
		atomic_store(&mine[i]->tail, 1000 + i);
		atomic_store(&mine[i]->wake_sent, 1);
		give_back(mine[i]);
	}
	ck_assert_uint_eq(ring_count(), N);
	for (size_t i = 0; i < N; i++) {
		again[i] = ring_acquire((pid_t)(100 + i));
		assert_fresh(again[i], (pid_t)(100 + i));
		uint32_t k = index_of(again[i]);
		ck_assert_uint_eq(atomic_load(&again[i]->head), 1000 + k);
		ck_assert_uint_eq(atomic_load(&again[i]->tail), 1000 + k);
	}
	ck_assert_uint_eq(ring_count(), N);
	/* The same set of rings, each once. */
	for (size_t i = 0; i < N; i++) {
		int found = 0;
		for (size_t j = 0; j < N; j++)
			found += again[j] == mine[i];
		ck_assert_int_eq(found, 1);
	}
	/* The free list is empty again: the next one is a new slot. */
	struct shm_ring *fresh = ring_acquire(200);
	ck_assert_ptr_eq(fresh, ring_at(N));
	ck_assert_uint_eq(ring_count(), N + 1);
}
END_TEST

START_TEST(test_ring_all_slots_taken)
{
	for (uint32_t i = 0; i < SHM_NRINGS; i++) {
		struct shm_ring *r = ring_acquire((pid_t)(i + 1));
		ck_assert_ptr_eq(r, ring_at(i));
	}
	ck_assert_uint_eq(ring_count(), SHM_NRINGS);
	ck_assert_ptr_null(ring_acquire(1));
	ck_assert_ptr_null(ring_acquire(1));
	ck_assert_uint_eq(atomic_load(&g_shm->nrings), SHM_NRINGS);
	/* One freed: that one, then nothing again. */
	give_back(ring_at(700));
	ck_assert_ptr_eq(ring_acquire(5), ring_at(700));
	ck_assert_ptr_null(ring_acquire(1));
	/* A count past the slots (another process wrote it) reads as full. */
	atomic_store(&g_shm->nrings, UINT32_MAX);
	ck_assert_uint_eq(ring_count(), SHM_NRINGS);
	ck_assert_ptr_null(ring_acquire(1));
}
END_TEST

/* ---- positions ---- */

START_TEST(test_ring_used_counts_every_distance)
{
	struct shm_ring *r = ring_acquire(1);
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
}
END_TEST

/* Written the way the producer writes (slot, then head with release) from
 * a position just before the end of the array: the records land in the
 * last slots and continue at slot 0, each whole. */
START_TEST(test_ring_slots_wrap_at_capacity)
{
	struct shm_ring *r = ring_acquire(1);
	const uint64_t start = 5 * (uint64_t)RING_CAP - 3;
	struct rng s = {77}, check = {77};

	atomic_store(&r->head, start);
	atomic_store(&r->tail, start);
	for (uint64_t i = 0; i < 8; i++) {
		uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
		r->ev[h % RING_CAP] = reference_ev(i, &s);
		atomic_store_explicit(&r->head, h + 1, memory_order_release);
		ck_assert_uint_eq(ring_used(r), i + 1);
	}
	/* Slots CAP-3, CAP-2, CAP-1, then 0..4; slot 5 untouched. */
	const size_t slot[8] = {RING_CAP - 3, RING_CAP - 2, RING_CAP - 1, 0, 1, 2, 3, 4};
	for (uint64_t i = 0; i < 8; i++) {
		struct shm_ev want = reference_ev(i, &check);
		ck_assert_mem_eq(&r->ev[slot[i]], &want, sizeof want);
	}
	ck_assert_uint_eq(r->ev[5].seq_kind, 0);
	ck_assert_uint_eq(r->ev[RING_CAP - 4].seq_kind, 0);
	/* The reader consumes them in position order. */
	check = (struct rng){77};
	for (uint64_t t = start; t != start + 8; t++) {
		struct shm_ev want = reference_ev(t - start, &check);
		ck_assert_mem_eq(&r->ev[t % RING_CAP], &want, sizeof want);
		atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	}
	ck_assert_uint_eq(ring_used(r), 0);
}
END_TEST

START_TEST(test_ring_layout_separates_producer_and_consumer)
{
	size_t head = offsetof(struct shm_ring, head) / 64;
	size_t tail = offsetof(struct shm_ring, tail) / 64;
	size_t pending = offsetof(struct shm_ring, pending) / 64;

	ck_assert_uint_ne(head, tail);
	ck_assert_uint_ne(head, pending);
	ck_assert_uint_ne(tail, pending);
	/* RING_CAP is a power of two, or positions would not map to slots
	 * consistently when the 64-bit counters wrap. */
	ck_assert_uint_eq(RING_CAP & (RING_CAP - 1), 0);
	ck_assert_uint_eq(sizeof(struct shm_ring) % 64, 0);
}
END_TEST

/* ---- after fork ---- */

START_TEST(test_ring_reset_after_fork)
{
	enum { N = 6 };
	struct shm_ring *r[N];
	struct testregion child;

	for (size_t i = 0; i < N; i++)
		r[i] = ring_acquire((pid_t)(500 + i));
	give_back(r[1]);
	give_back(r[4]); /* the parent's free list holds two rings */
	ring_retire(r[2]);

	/* The child: a fresh region, no ring in use, none free. */
	ck_assert_int_eq(testregion_create(&child, 1), 0);
	g_shm = testregion_header(&child);
	g_region = child.base;
	ring_reset_after_fork();
	ck_assert_uint_eq(ring_count(), 0);
	struct shm_ring *a = ring_acquire(sysdep_gettid());
	struct shm_ring *b = ring_acquire(2);
	assert_fresh(a, sysdep_gettid());
	ck_assert_ptr_eq(a, testregion_ring(&child, 0));
	ck_assert_ptr_eq(b, testregion_ring(&child, 1));
	ck_assert_uint_eq(ring_count(), 2);
	/* The parent's region is as it was. */
	ck_assert_uint_eq(atomic_load(&testregion_header(&R)->nrings), N);
	ck_assert_int_eq(atomic_load(&r[1]->state), RING_FREE);
	ck_assert_int_eq(atomic_load(&r[2]->state), RING_RETIRED);
	ck_assert_int_eq(atomic_load(&r[0]->state), RING_LIVE);
	ck_assert_uint_eq(atomic_load(&testregion_ring(&child, 2)->state), 0);
	use_region(&R);
	testregion_destroy(&child);
}
END_TEST

/* ---- one producer, one consumer ---- */

#define STRESS_RECORDS  2000000u
#define STRESS_SEED     0x5eedu
#define STRESS_MAX_TAKE 1000u /* the consumer drains at most this many at once */

struct stress {
	struct shm_ring *r;
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
	struct shm_ring *r = st->r;
	struct rng s = {STRESS_SEED};

	for (uint64_t i = 0; i < STRESS_RECORDS && !atomic_load(&st->failed); i++) {
		while (RING_CAP - ring_used(r) < 1) {
			atomic_fetch_add(&r->waiters, 1);
			uint32_t tf = atomic_load(&r->tail_futex);
			if (RING_CAP - ring_used(r) < 1)
				sysdep_futex_wait_shared(&r->tail_futex, tf, 20 * 1000 * 1000);
			atomic_fetch_sub(&r->waiters, 1);
			if (atomic_load(&st->failed))
				return NULL;
		}
		uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
		r->ev[h % RING_CAP] = reference_ev(i, &s);
		atomic_store_explicit(&r->head, h + 1, memory_order_release);
	}
	return NULL;
}

/* The consumer side as the sender does it: read up to head, check each
 * record against the reference, give the space back and wake. */
static void *stress_consumer(void *arg)
{
	struct stress *st = arg;
	struct shm_ring *r = st->r;
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
			struct shm_ev want = reference_ev(next, &s);
			if (memcmp(&r->ev[(t + k) % RING_CAP], &want, sizeof want) != 0) {
				stress_fail(st, "a record differs from the reference sequence");
				return NULL;
			}
			next++;
		}
		atomic_store_explicit(&r->tail, t + n, memory_order_release);
		atomic_fetch_add(&r->tail_futex, 1);
		if (atomic_load(&r->waiters))
			sysdep_futex_wake_shared(&r->tail_futex, 64);
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
}
END_TEST

/* ---- concurrent acquire and reclaim ---- */

#define CHURN_THREADS 4
#define CHURN_ROUNDS  8000

struct churn {
	_Atomic int failed;
	_Atomic int running; /* churn threads not done yet */
	pthread_barrier_t go;
};

/* A thread's life, over and over: take a ring, use it, retire it (its key
 * destructor), and wait until the sender has freed it before the next. */
static void *churn_main(void *arg)
{
	struct churn *c = arg;
	pid_t me = sysdep_gettid();

	pthread_barrier_wait(&c->go);
	for (int i = 0; i < CHURN_ROUNDS && !atomic_load(&c->failed); i++) {
		struct shm_ring *r = ring_acquire(me);
		if (r == NULL || __atomic_load_n(&r->tid, __ATOMIC_RELAXED) != (uint32_t)me ||
		    atomic_load(&r->state) != RING_LIVE || ring_used(r) != 0) {
			atomic_store(&c->failed, 1);
			break;
		}
		/* A ring handed to two threads at once would have its tid
		 * overwritten by the other one meanwhile. */
		uint64_t pos = atomic_load(&r->head);
		for (int k = 0; k < 16; k++) {
			atomic_store(&r->head, pos + 1);
			if (__atomic_load_n(&r->tid, __ATOMIC_RELAXED) != (uint32_t)me ||
			    atomic_load(&r->head) != pos + 1) {
				atomic_store(&c->failed, 1);
				break;
			}
			atomic_store(&r->head, pos);
		}
		ring_retire(r);
		/* Wait for the reclaimer; sleep now and then, so that on a
		 * loaded machine the spinners do not starve it. */
		for (unsigned spins = 0;
		     atomic_load(&r->state) == RING_RETIRED && !atomic_load(&c->failed); spins++) {
			if (spins % 64 == 63)
				nanosleep(&(struct timespec){0, 20000}, NULL);
			else
				sched_yield();
		}
	}
	atomic_fetch_sub(&c->running, 1);
	return NULL;
}

/* The sender's part: reclaim, as often as it can. */
static void *reclaimer_main(void *arg)
{
	struct churn *c = arg;

	pthread_barrier_wait(&c->go);
	while (atomic_load(&c->running) > 0)
		ring_reclaim(sysdep_now_ns(), 0, 0, getpid());
	return NULL;
}

START_TEST(test_ring_concurrent_acquire_and_reclaim)
{
	struct churn c;
	pthread_t th[CHURN_THREADS + 1];

	memset(&c, 0, sizeof c);
	atomic_store(&c.running, CHURN_THREADS);
	pthread_barrier_init(&c.go, NULL, CHURN_THREADS + 1);
	for (int i = 0; i < CHURN_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, churn_main, &c), 0);
	ck_assert_int_eq(pthread_create(&th[CHURN_THREADS], NULL, reclaimer_main, &c), 0);
	for (int i = 0; i <= CHURN_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&c.go);
	ck_assert_msg(!atomic_load(&c.failed), "a ring was handed to two threads at once");
	/* A new slot is taken only when the free list is empty, and then
	 * every ring is held by a thread (one each) or between the
	 * reclaimer's FREE and its place on the list (one at most). */
	ck_assert_uint_le(ring_count(), CHURN_THREADS + 1);
	for (uint32_t i = 0; i < ring_count(); i++)
		ck_assert_int_ne(atomic_load(&ring_at(i)->state), RING_RETIRED);
}
END_TEST

Suite *ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc;

	tc = tcase_create("lifecycle");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ring_acquire_is_empty_and_counted);
	tcase_add_test(tc, test_ring_retire_and_reclaim);
	tcase_add_test(tc, test_ring_pages_given_back);
	tcase_add_test(tc, test_ring_reclaims_rings_of_dead_threads);
	tcase_add_test(tc, test_ring_freed_rings_are_reused);
	tcase_add_test(tc, test_ring_all_slots_taken);
	tcase_add_test(tc, test_ring_reset_after_fork);
	suite_add_tcase(s, tc);

	tc = tcase_create("positions");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ring_used_counts_every_distance);
	tcase_add_test(tc, test_ring_slots_wrap_at_capacity);
	tcase_add_test(tc, test_ring_layout_separates_producer_and_consumer);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ring_producer_consumer_stress);
	tcase_add_test(tc, test_ring_concurrent_acquire_and_reclaim);
	suite_add_tcase(s, tc);
	return s;
}
