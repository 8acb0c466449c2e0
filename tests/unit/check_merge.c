/*
 * check_merge.c - the agent sender's merge of the per-thread rings
 * (agent/merge.c) against a reference model.
 *
 * The tests play the agent's threads in one thread of their own: each
 * simulated thread does what agent.c does around a record (publish the lower
 * bound last_seq + 1 in its ring's `pending`, take the next global sequence
 * number, write the record at the ring's head, clear `pending`), with
 * realloc's two records under one `pending`, and steps of different threads
 * interleave at random. Now and then a sender cycle runs the real merge over
 * the real ring structures. Beside the rings the test keeps a flat list of the
 * records written and not sent yet; a cycle must send exactly those below the
 * watermark min(next seq, every pending), sorted by sequence number (worked
 * out with qsort, without any per-ring logic), must leave each ring's tail
 * just past what it sent, and must never send a sequence number at or above
 * one still in flight. At the end every thread finishes, a last cycle runs
 * and the whole stream must be every number taken, once, in order.
 *
 * Beyond the random interleavings the suite pins the edges the merge guards:
 * positions that wrap around the ring array, a ring exactly full, stale
 * records beyond a ring's head, free rings (skipped, their tail untouched),
 * retired rings (drained), sequence numbers near PROTO_SEQ_MAX, and more rings
 * than the segment arrays first hold, so that they grow.
 *
 * Rings are mapped with MAP_NORESERVE (sysdep_map) as the agent maps them, so
 * only the pages a test writes cost memory.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/merge.h"
#include "agent/sysdep.h"
#include "suites.h"

/* Like ck_assert_*, but they call into Check only when they fail. */
#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg(__VA_ARGS__);                                                 \
	} while (0)
#define EXPECT_EQ(a, b)                                                                            \
	do {                                                                                       \
		uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                                \
		if (a_ != b_)                                                                      \
			ck_abort_msg("'%s == %s' is false: %ju, %ju", #a, #b, a_, b_);             \
	} while (0)

#define MASK (RING_CAP - 1)

/* ---- a small deterministic random generator (splitmix64) ---- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *s, size_t n)
{
	return (size_t)(rng_next(s) % n);
}

/* ---- rings ---- */

static struct ring *ring_new(void)
{
	struct ring *r = sysdep_map(sizeof(*r), 1);

	ck_assert_ptr_nonnull(r);
	atomic_store(&r->pending, UINT64_MAX);
	atomic_store(&r->state, RING_LIVE);
	return r;
}

/* Empties r and places its head and tail at pos; the records stay. */
static void ring_place(struct ring *r, uint64_t pos)
{
	atomic_store(&r->head, pos);
	atomic_store(&r->tail, pos);
	atomic_store(&r->pending, UINT64_MAX);
	atomic_store(&r->wake_sent, 0);
	atomic_store(&r->tail_futex, 0);
	atomic_store(&r->waiters, 0);
	atomic_store(&r->state, RING_LIVE);
}

/* The record the test writes for a sequence number: every field depends on
 * it, so a record sent with another's fields shows. */
static struct ring_ev record_of(uint64_t seq, enum proto_ev_kind kind)
{
	struct ring_ev e = {0};

	e.seq_kind = seq << PROTO_EV_KIND_BITS | (uint64_t)kind;
	e.addr = seq * 16 + 0x10000;
	e.size = kind == PROTO_EV_ALLOC ? seq % 1000 + 1 : 0;
	e.stack = kind == PROTO_EV_ALLOC ? (uint32_t)(seq % 77) + 1 : 0;
	return e;
}

static void ring_put(struct ring *r, uint64_t seq, enum proto_ev_kind kind)
{
	uint64_t h = atomic_load(&r->head);

	r->ev[h & MASK] = record_of(seq, kind);
	atomic_store(&r->head, h + 1);
}

/* ---- the simulated process ---- */

struct rec {
	uint64_t seq;
	enum proto_ev_kind kind;
	size_t thread;
};

struct thread {
	struct ring *r;
	uint64_t last_seq;    /* as agent_tls.last_seq */
	uint64_t pending;     /* the bound it published, UINT64_MAX = none */
	uint64_t inflight[2]; /* taken, not written yet */
	enum proto_ev_kind kinds[2];
	int ninflight;
	bool realloc;    /* a realloc between its two takes */
	uint64_t unsent; /* records in the ring the sender has not sent */
};

struct sim {
	uint64_t rng;
	struct thread *t;
	size_t n;
	struct ring *head;  /* the registry: newest ring first */
	uint64_t next_seq;  /* g_seq */
	uint64_t first_seq; /* g_seq at the start */
	uint64_t last_sent; /* the last sequence number sent, 0 = none */
	uint64_t nsent;
	struct rec *unsent; /* written and not sent, in no order */
	size_t nunsent, cap_unsent;
	struct merge *m; /* the sender's, kept from one simulation to the next */
};

/* rings[i] is thread i's ring, registered in order (so rings[n-1] is the
 * registry head); pos[i] (or 0) is where its head and tail start. */
static void sim_init(struct sim *s, struct merge *m, uint64_t seed, struct ring **rings, size_t n,
                     const uint64_t *pos, uint64_t first_seq)
{
	memset(s, 0, sizeof(*s));
	s->m = m;
	s->rng = seed;
	s->n = n;
	s->t = calloc(n, sizeof(*s->t));
	ck_assert_ptr_nonnull(s->t);
	for (size_t i = 0; i < n; i++) {
		ring_place(rings[i], pos != NULL ? pos[i] : 0);
		rings[i]->next = s->head;
		s->head = rings[i];
		s->t[i].r = rings[i];
		s->t[i].pending = UINT64_MAX;
	}
	s->next_seq = first_seq;
	s->first_seq = first_seq;
}

static void sim_close(struct sim *s)
{
	free(s->t);
	free(s->unsent);
}

static uint64_t room(const struct thread *t)
{
	return RING_CAP - (atomic_load(&t->r->head) - atomic_load(&t->r->tail));
}

/* agent.c's seq_take: publish the lower bound, then take the number. */
static void take(struct sim *s, struct thread *t, enum proto_ev_kind kind)
{
	if (t->ninflight == 0) {
		t->pending = t->last_seq + 1;
		atomic_store(&t->r->pending, t->pending);
	}
	t->last_seq = s->next_seq++;
	t->inflight[t->ninflight] = t->last_seq;
	t->kinds[t->ninflight] = kind;
	t->ninflight++;
}

/* agent.c's put for every record taken, then seq_done. */
static void complete(struct sim *s, size_t i)
{
	struct thread *t = &s->t[i];

	for (int k = 0; k < t->ninflight; k++) {
		ring_put(t->r, t->inflight[k], t->kinds[k]);
		if (s->nunsent == s->cap_unsent) {
			s->cap_unsent = s->cap_unsent ? s->cap_unsent * 2 : 1024;
			s->unsent = realloc(s->unsent, s->cap_unsent * sizeof(*s->unsent));
			ck_assert_ptr_nonnull(s->unsent);
		}
		s->unsent[s->nunsent++] = (struct rec){t->inflight[k], t->kinds[k], i};
		t->unsent++;
	}
	t->ninflight = 0;
	t->realloc = false;
	t->pending = UINT64_MAX;
	atomic_store(&t->r->pending, UINT64_MAX);
}

/* One random step of thread i: malloc, free or either half of a realloc
 * starts or finishes. A thread whose ring has no room waits (does nothing),
 * as reserve() makes it before it takes a number. */
static void step(struct sim *s, size_t i)
{
	struct thread *t = &s->t[i];

	if (t->realloc && t->ninflight == 1) {
		/* realloc_end: the free half is in flight, the alloc half
		 * takes its number without touching pending. */
		if (rng_below(&s->rng, 4) != 0) {
			t->last_seq = s->next_seq++;
			t->inflight[1] = t->last_seq;
			t->kinds[1] = PROTO_EV_ALLOC;
			t->ninflight = 2;
		}
		complete(s, i);
		return;
	}
	if (t->ninflight > 0) {
		complete(s, i);
		return;
	}
	switch (rng_below(&s->rng, 3)) {
	case 0:
		if (room(t) >= 1)
			take(s, t, PROTO_EV_ALLOC);
		break;
	case 1:
		if (room(t) >= 1)
			take(s, t, PROTO_EV_FREE);
		break;
	default:
		if (room(t) >= 2) {
			take(s, t, PROTO_EV_FREE);
			t->realloc = true;
		}
		break;
	}
}

static int rec_by_seq(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The model's watermark: min(next seq, every pending lower bound). */
static uint64_t model_watermark(const struct sim *s)
{
	uint64_t w = s->next_seq;

	for (size_t i = 0; i < s->n; i++)
		if (s->t[i].pending < w)
			w = s->t[i].pending;
	return w;
}

/* One sender cycle, checked against the model. Returns the records sent. */
static size_t cycle(struct sim *s)
{
	uint64_t w = merge_watermark(s->head, s->next_seq);
	size_t nexp = 0, nsent = 0;
	const struct ring_ev *e;

	EXPECT_EQ(w, model_watermark(s));
	for (size_t i = 0; i < s->n; i++)
		for (int k = 0; k < s->t[i].ninflight; k++)
			EXPECT(s->t[i].inflight[k] >= w,
			       "seq %" PRIu64 " in flight below W %" PRIu64, s->t[i].inflight[k],
			       w);

	/* The expected batch: the unsent records below w, sorted, moved to
	 * the front of the list. */
	for (size_t j = 0; j < s->nunsent; j++) {
		if (s->unsent[j].seq < w) {
			struct rec tmp = s->unsent[nexp];
			s->unsent[nexp++] = s->unsent[j];
			s->unsent[j] = tmp;
		}
	}
	if (nexp > 1)
		qsort(s->unsent, nexp, sizeof(*s->unsent), rec_by_seq);

	ck_assert_int_eq(merge_collect(s->m, s->head, w), 0);
	while ((e = merge_next(s->m)) != NULL) {
		EXPECT(nsent < nexp, "record %zu sent, %zu expected (seq %" PRIu64 ")", nsent + 1,
		       nexp, ring_ev_seq(e));
		const struct rec *x = &s->unsent[nsent++];
		struct ring_ev want = record_of(x->seq, x->kind);
		EXPECT(e->seq_kind == want.seq_kind,
		       "record %zu: seq %" PRIu64 " kind %d, expected seq %" PRIu64 " kind %d",
		       nsent, ring_ev_seq(e), (int)ring_ev_kind(e), x->seq, (int)x->kind);
		EXPECT(e->addr == want.addr && e->size == want.size && e->stack == want.stack,
		       "record seq %" PRIu64 ": fields of another record", x->seq);
		EXPECT(s->last_sent == 0 || x->seq > s->last_sent,
		       "seq %" PRIu64 " sent after %" PRIu64, x->seq, s->last_sent);
		s->last_sent = x->seq;
		s->t[x->thread].unsent--;
	}
	EXPECT_EQ(nsent, nexp);
	merge_release(s->m);
	for (size_t i = 0; i < s->n; i++) {
		const struct ring *r = s->t[i].r;
		EXPECT(atomic_load(&r->head) - atomic_load(&r->tail) == s->t[i].unsent,
		       "thread %zu: %" PRIu64 " records left in its ring, %" PRIu64 " unsent", i,
		       atomic_load(&r->head) - atomic_load(&r->tail), s->t[i].unsent);
	}
	if (nexp > 0 && s->nunsent > nexp)
		memmove(s->unsent, s->unsent + nexp, (s->nunsent - nexp) * sizeof(*s->unsent));
	s->nunsent -= nexp;
	s->nsent += nsent;
	return nsent;
}

/* Every thread finishes, the last cycles run: the whole stream must be every
 * number taken, in order (checked record by record in cycle()). */
static void finish(struct sim *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->t[i].ninflight > 0)
			complete(s, i);
	cycle(s);
	EXPECT_EQ(s->nunsent, 0);
	EXPECT_EQ(s->nsent, s->next_seq - s->first_seq);
	EXPECT_EQ(s->last_sent, s->nsent > 0 ? s->next_seq - 1 : 0);
}

/* nsteps random steps of random threads, a cycle on average every `every`. */
static void run(struct sim *s, size_t nsteps, size_t every)
{
	for (size_t k = 0; k < nsteps; k++) {
		if (rng_below(&s->rng, every) == 0)
			cycle(s);
		else
			step(s, rng_below(&s->rng, s->n));
	}
	finish(s);
}

#define NRINGS 12

static struct ring *pool[NRINGS];
static struct merge merge; /* like the sender's: one for all cycles */

static void pool_setup(void)
{
	for (size_t i = 0; i < NRINGS; i++)
		pool[i] = ring_new();
}

static void pool_teardown(void)
{
	for (size_t i = 0; i < NRINGS; i++)
		sysdep_unmap(pool[i], sizeof(*pool[i]));
	merge_free(&merge);
}

/* ---- tests ---- */

START_TEST(test_empty)
{
	struct merge m = {0};
	struct ring *r = pool[0];

	ck_assert_uint_eq(merge_watermark(NULL, 42), 42);
	ck_assert_int_eq(merge_collect(&m, NULL, 42), 0);
	ck_assert_uint_eq(m.nseg, 0);
	ck_assert_ptr_null(merge_next(&m));
	merge_release(&m);

	/* A ring without records below W is not collected. */
	ring_place(r, 0);
	r->next = NULL;
	ring_put(r, 7, PROTO_EV_ALLOC);
	ck_assert_int_eq(merge_collect(&m, r, 7), 0);
	ck_assert_uint_eq(m.nseg, 0);
	ck_assert_ptr_null(merge_next(&m));
	merge_release(&m);
	ck_assert_uint_eq(atomic_load(&r->tail), 0);
	ck_assert_uint_eq(atomic_load(&r->tail_futex), 0);
	merge_free(&m);
	merge_free(&m);
}
END_TEST

START_TEST(test_watermark)
{
	struct ring *a = pool[0], *b = pool[1], *c = pool[2];

	ring_place(a, 0);
	ring_place(b, 0);
	ring_place(c, 0);
	a->next = b;
	b->next = c;
	c->next = NULL;
	/* Nothing in flight: everything taken so far. */
	ck_assert_uint_eq(merge_watermark(a, 100), 100);
	/* The smallest lower bound wins; cleared ones (UINT64_MAX) do not count. */
	atomic_store(&b->pending, 60);
	atomic_store(&c->pending, 40);
	ck_assert_uint_eq(merge_watermark(a, 100), 40);
	ck_assert_uint_eq(merge_watermark(b, 100), 40);
	ck_assert_uint_eq(merge_watermark(a, 30), 30);
	atomic_store(&c->pending, UINT64_MAX);
	ck_assert_uint_eq(merge_watermark(a, 100), 60);
	/* A new thread's bound is 1 (its last_seq is 0): it holds back all. */
	atomic_store(&a->pending, 1);
	ck_assert_uint_eq(merge_watermark(a, 100), 1);
}
END_TEST

/* Records below W are sent in global order; records at or above W stay in
 * their ring for the next cycle, even when an earlier record of the same
 * ring is sent. */
START_TEST(test_cut_at_watermark)
{
	struct ring *a = pool[0], *b = pool[1];
	struct merge m = {0};
	const uint64_t sa[] = {1, 4, 5, 9}, sb[] = {2, 3, 6, 7, 8};
	const uint64_t want1[] = {1, 2, 3, 4, 5}, want2[] = {6, 7, 8, 9};
	const struct ring_ev *e;
	size_t k = 0;

	ring_place(a, 0);
	ring_place(b, 0);
	a->next = b;
	b->next = NULL;
	for (size_t i = 0; i < 4; i++)
		ring_put(a, sa[i], PROTO_EV_ALLOC);
	for (size_t i = 0; i < 5; i++)
		ring_put(b, sb[i], PROTO_EV_FREE);
	ck_assert_int_eq(merge_collect(&m, a, 6), 0);
	ck_assert_uint_eq(m.nseg, 2);
	while ((e = merge_next(&m)) != NULL) {
		ck_assert_uint_lt(k, 5);
		ck_assert_uint_eq(ring_ev_seq(e), want1[k]);
		k++;
	}
	ck_assert_uint_eq(k, 5);
	merge_release(&m);
	ck_assert_uint_eq(atomic_load(&a->tail), 3);
	ck_assert_uint_eq(atomic_load(&b->tail), 2);
	ck_assert_uint_eq(atomic_load(&a->tail_futex), 1);
	ck_assert_uint_eq(atomic_load(&b->tail_futex), 1);

	k = 0;
	ck_assert_int_eq(merge_collect(&m, a, 10), 0);
	while ((e = merge_next(&m)) != NULL) {
		ck_assert_uint_lt(k, 4);
		ck_assert_uint_eq(ring_ev_seq(e), want2[k]);
		k++;
	}
	ck_assert_uint_eq(k, 4);
	merge_release(&m);
	ck_assert_uint_eq(atomic_load(&a->tail), 4);
	ck_assert_uint_eq(atomic_load(&b->tail), 5);
	merge_free(&m);
}
END_TEST

/* Free rings are skipped whatever they hold; retired rings are drained;
 * the space beyond a ring's head is never read, whatever is left there. */
START_TEST(test_ring_states_and_stale_records)
{
	struct ring *live = pool[0], *freed = pool[1], *retired = pool[2];
	struct merge m = {0};
	const struct ring_ev *e;
	uint64_t expect = 1;

	ring_place(live, 0);
	ring_place(freed, 0);
	ring_place(retired, 0);
	live->next = freed;
	freed->next = retired;
	retired->next = NULL;
	/* Stale records beyond every head, with small sequence numbers. */
	for (uint64_t i = 0; i < 64; i++) {
		live->ev[i] = record_of(1000 + i, PROTO_EV_FREE);
		freed->ev[i] = record_of(2000 + i, PROTO_EV_FREE);
		retired->ev[i] = record_of(3000 + i, PROTO_EV_FREE);
	}
	for (uint64_t seq = 1; seq <= 10; seq++)
		ring_put(seq % 2 ? live : retired, seq, PROTO_EV_ALLOC);
	ring_put(freed, 11, PROTO_EV_ALLOC);
	atomic_store(&freed->state, RING_FREE);
	atomic_store(&retired->state, RING_RETIRED);
	ck_assert_int_eq(merge_collect(&m, live, UINT64_MAX), 0);
	ck_assert_uint_eq(m.nseg, 2);
	while ((e = merge_next(&m)) != NULL)
		ck_assert_uint_eq(ring_ev_seq(e), expect++);
	ck_assert_uint_eq(expect, 11);
	merge_release(&m);
	ck_assert_uint_eq(atomic_load(&live->tail), 5);
	ck_assert_uint_eq(atomic_load(&retired->tail), 5);
	ck_assert_uint_eq(atomic_load(&freed->tail), 0);
	ck_assert_uint_eq(atomic_load(&freed->tail_futex), 0);
	merge_free(&m);
}
END_TEST

/* A ring whose records fill it exactly, read across the wrap of the array. */
START_TEST(test_full_ring)
{
	struct ring *full = pool[0], *other = pool[1];
	struct merge m = {0};
	const struct ring_ev *e;
	uint64_t seq = 1, expect = 1;

	ring_place(full, 5 * (uint64_t)RING_CAP - 100);
	ring_place(other, 0);
	full->next = other;
	other->next = NULL;
	for (uint32_t i = 0; i < RING_CAP; i++) {
		if (i % 1000 == 0)
			ring_put(other, seq++, PROTO_EV_FREE);
		ring_put(full, seq++, PROTO_EV_ALLOC);
	}
	ck_assert_uint_eq(atomic_load(&full->head) - atomic_load(&full->tail), RING_CAP);
	ck_assert_int_eq(merge_collect(&m, full, seq), 0);
	while ((e = merge_next(&m)) != NULL) {
		EXPECT_EQ(ring_ev_seq(e), expect);
		expect++;
	}
	ck_assert_uint_eq(expect, seq);
	merge_release(&m);
	ck_assert_uint_eq(atomic_load(&full->tail), atomic_load(&full->head));
	ck_assert_uint_eq(atomic_load(&other->tail), atomic_load(&other->head));
	merge_free(&m);
}
END_TEST

/* Random interleavings of up to NRINGS threads with random cycles. */
START_TEST(test_random_interleavings)
{
	for (uint64_t seed = 1; seed <= 300; seed++) {
		struct sim s;
		uint64_t r = seed;
		size_t n = 1 + rng_below(&r, NRINGS);

		sim_init(&s, &merge, seed, pool, n, NULL, 1);
		run(&s, 50 + rng_below(&r, 3000), 2 + rng_below(&r, 40));
		sim_close(&s);
	}
}
END_TEST

/* The same with ring positions that wrap around the ring array, rings that
 * fill up (their threads wait) and sequence numbers near PROTO_SEQ_MAX, where
 * any narrowing of the sequence number or its shift would show. */
START_TEST(test_random_edges)
{
	for (uint64_t seed = 1; seed <= 60; seed++) {
		struct sim s;
		uint64_t r = seed * 7919, pos[NRINGS];
		size_t n = 1 + rng_below(&r, NRINGS);
		uint64_t first = seed % 2 ? PROTO_SEQ_MAX - 200000 : (UINT64_C(1) << 32) - 1000;

		for (size_t i = 0; i < n; i++)
			pos[i] =
			    (1 + rng_below(&r, 1000)) * (uint64_t)RING_CAP - rng_below(&r, 300);
		sim_init(&s, &merge, seed, pool, n, pos, first);
		/* Rarely a cycle: rings fill and threads wait for room. */
		run(&s, 20000 + rng_below(&r, 40000), seed % 3 ? 50 : 20000);
		EXPECT(s.next_seq <= PROTO_SEQ_MAX, "seq overflow");
		sim_close(&s);
	}
}
END_TEST

/* More rings than the segment arrays first hold (256): they grow, twice,
 * from one cycle to the next. */
START_TEST(test_many_rings)
{
	enum { MANY = 700 };
	struct ring **rings = calloc(MANY, sizeof(*rings));

	ck_assert_ptr_nonnull(rings);
	for (size_t i = 0; i < MANY; i++)
		rings[i] = ring_new();
	for (size_t n = 255; n <= MANY; n += 222) {
		struct sim s;

		sim_init(&s, &merge, n, rings, n, NULL, 1);
		run(&s, 20 * n, 200);
		sim_close(&s);
		ck_assert_uint_ge(merge.cap, n);
	}
	for (size_t i = 0; i < MANY; i++)
		sysdep_unmap(rings[i], sizeof(*rings[i]));
	free(rings);
}
END_TEST

Suite *merge_suite(void)
{
	Suite *s = suite_create("merge");
	TCase *tc = tcase_create("edges");
	tcase_add_checked_fixture(tc, pool_setup, pool_teardown);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_watermark);
	tcase_add_test(tc, test_cut_at_watermark);
	tcase_add_test(tc, test_ring_states_and_stale_records);
	tcase_add_test(tc, test_full_ring);
	suite_add_tcase(s, tc);

	tc = tcase_create("model");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, pool_setup, pool_teardown);
	tcase_add_test(tc, test_random_interleavings);
	tcase_add_test(tc, test_random_edges);
	tcase_add_test(tc, test_many_rings);
	suite_add_tcase(s, tc);
	return s;
}
