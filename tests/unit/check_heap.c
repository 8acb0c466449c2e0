/*
 * check_heap.c - the daemon's live heap model against a reference model.
 *
 * Every test drives a struct heap and, beside it, a deliberately naive model
 * kept by the test: a fixed pool of addresses, each with a live flag, a size
 * and a stack, and per-stack counters updated by plain arithmetic from what
 * the test did. The model has no hash table and shares no code with heap.c,
 * so a block that heap.c's open addressing loses, duplicates or moves onto
 * the wrong probe chain shows up as a disagreement: after the steps that
 * matter every counter is compared, every pool address is looked up, and
 * heap_foreach must visit exactly the live set.
 *
 * A few tests reach into struct heap (slots, cap) on purpose. The header
 * publishes that layout, and only through it can a test put blocks on chosen
 * home slots, such as a probe chain that wraps past the end of the table,
 * where backward-shift deletion is easiest to get wrong. The home of an
 * address depends on a key drawn at random for each heap, so every heap
 * here is made with one fixed key (heap_init_keyed) and addresses that share
 * a home are found by search: placing an address alone in an empty table and
 * seeing where it lands (homes), or asking heap_home, never by copying
 * heap.c's hash function. test_hostile_addresses and test_hostile_big_sizes
 * pin what the key is for: addresses that an unkeyed hash would pile onto
 * one probe chain, and a multitude of blocks of 1 TiB or more, cost a
 * bounded number of probes per event (the heap counts them).
 *
 * A process sampled by the agent (heap_set_sampling) is checked against a
 * model of its own, test_sampled: there the figures are sums of weights
 * (sampling.h), which the model computes from the formula in long double,
 * so they agree to the rounding; blocks keep their true sizes, and once
 * every block is freed every estimate is exactly zero again. Without
 * sampling the estimates are the exact counts: blocks equals count and no
 * fraction is ever set, which check_counters asserts in every other test.
 *
 * Copies of a heap (heap_clone for fork images, heap_view_take for a
 * capture's largest blocks) share the block table's chunks until a write:
 * test_copies_frozen pins that each copy stays exactly the heap of its
 * moment (against models copied then) while the heap and the copies go on,
 * a view also read and closed on another thread. The stacks' chunks are
 * shared the same way: test_copies_stacks pins that a copy shares them
 * (the same memory until a write) and each copy keeps its own stacks.
 *
 * Check logs every passing ck_assert, which at the millions of comparisons
 * made here would be most of the run time, so the comparisons go through the
 * EXPECT macros below instead. The whole suite then runs in about two seconds
 * under the sanitizers; the table case still allows 30 s so a slow or
 * instrumented machine does not trip Check's 4 s default.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "heap.h"
#include "splitmix.h"
#include "suites.h"

#define BIG      (UINT64_C(1) << 40)          /* the first size the packed slot cannot hold */
#define TEST_KEY UINT64_C(0x243f6a8885a308d3) /* the hash key of every rig */

/* The next address after *cursor (16 apart) whose home in a table of cap
 * slots is the home of `like`, under TEST_KEY. */
static uint64_t sharing_home(uint64_t *cursor, uint64_t like, size_t cap)
{
	struct heap k = {.key = TEST_KEY};
	size_t want = heap_home(&k, like, cap);
	for (long tries = 0; tries < 1L << 24; tries++) {
		*cursor += 16;
		if (heap_home(&k, *cursor, cap) == want)
			return *cursor;
	}
	ck_abort_msg("no address shares the home of 0x%" PRIx64, like);
	return 0;
}

/* ---- workload helpers ---- */

static void shuffle(struct rng *r, size_t *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = rng_below(r, i);
		size_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* ---- the reference model ---- */

#define MODEL_IDS 256 /* stack ids a model follows: 0 .. MODEL_IDS-1 */

struct mstack {
	int defined;
	uint64_t live_bytes, live_count, total_allocs, total_bytes, temporary;
	uint64_t peak_bytes, peak_count; /* live_* at the moment of the peak */
};

struct mblock {
	int live;
	uint64_t size;
	uint32_t stack;
};

struct model {
	size_t n;
	uint64_t *addr; /* the pool: sorted, distinct */
	struct mblock *b;
	size_t *live;     /* indexes of the live blocks, in no order */
	size_t *live_pos; /* where b[i] sits in live[] */
	size_t nlive;
	struct mstack st[MODEL_IDS];
	size_t ndefined;
	size_t max_blocks, max_stacks;
	int limit;
	uint64_t current, peak, allocations, frees, unknown_frees, replaced;
	uint64_t last_seq;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void model_init(struct model *m, const uint64_t *pool, size_t n, size_t max_blocks,
                       size_t max_stacks)
{
	memset(m, 0, sizeof(*m));
	size_t cap = n ? n : 1;

	m->n = n;
	m->addr = malloc(cap * sizeof(*m->addr));
	m->b = calloc(cap, sizeof(*m->b));
	m->live = malloc(cap * sizeof(*m->live));
	m->live_pos = malloc(cap * sizeof(*m->live_pos));
	EXPECT_TRUE(m->addr != NULL && m->b != NULL && m->live != NULL && m->live_pos != NULL);
	if (n > 0)
		memcpy(m->addr, pool, n * sizeof(*pool));
	qsort(m->addr, n, sizeof(*m->addr), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		EXPECT(m->addr[i] != 0, "address 0 in a pool");
		EXPECT(i == 0 || m->addr[i] != m->addr[i - 1], "0x%" PRIx64 " twice in a pool",
		       m->addr[i]);
	}
	/* The limits as heap.h states them. */
	m->max_blocks = max_blocks ? max_blocks : (size_t)64 << 20;
	m->max_stacks = max_stacks ? max_stacks : (size_t)1 << 20;
	if (m->max_stacks > HEAP_MAX_STACK_ID)
		m->max_stacks = HEAP_MAX_STACK_ID;
	m->st[0].defined = 1;
}

static void model_close(struct model *m)
{
	free(m->addr);
	free(m->b);
	free(m->live);
	free(m->live_pos);
}

/* The pool index of addr, or SIZE_MAX when it is not in the pool. */
static size_t model_index(const struct model *m, uint64_t addr)
{
	const uint64_t *p = bsearch(&addr, m->addr, m->n, sizeof(*m->addr), cmp_u64);
	return p != NULL ? (size_t)(p - m->addr) : SIZE_MAX;
}

static void model_release(struct model *m, size_t i)
{
	struct mblock *b = &m->b[i];
	struct mstack *s = &m->st[b->stack];

	s->live_bytes -= b->size;
	s->live_count--;
	m->current -= b->size;
	b->live = 0;
	size_t pos = m->live_pos[i], last = m->live[--m->nlive];
	m->live[pos] = last;
	m->live_pos[last] = pos;
}

/* Now is the peak: every stack's figures are its figures at the peak. */
static void model_at_peak(struct model *m)
{
	m->peak = m->current;
	for (size_t id = 0; id < MODEL_IDS; id++) {
		m->st[id].peak_bytes = m->st[id].live_bytes;
		m->st[id].peak_count = m->st[id].live_count;
	}
}

static void model_insert(struct model *m, size_t i, uint64_t size, uint32_t stack)
{
	struct mstack *s = &m->st[stack];

	m->b[i].live = 1;
	m->b[i].size = size;
	m->b[i].stack = stack;
	m->live_pos[i] = m->nlive;
	m->live[m->nlive++] = i;
	s->live_bytes += size;
	s->live_count++;
	m->current += size;
	if (m->current > m->peak)
		model_at_peak(m);
}

/* What heap_apply must return for an allocation, with the model updated. */
static int model_alloc(struct model *m, uint64_t seq, uint64_t addr, uint64_t size, uint32_t stack)
{
	if (seq <= m->last_seq)
		return -EBADMSG;
	if (stack >= MODEL_IDS || !m->st[stack].defined) {
		/* Once stacks were dropped for the limit, an unknown id is one
		 * of them; before that it is a broken agent. */
		if (!(m->limit & HEAP_LIMIT_STACKS))
			return -EBADMSG;
		stack = 0;
	}
	m->last_seq = seq;
	m->allocations++;
	m->st[stack].total_allocs++;
	m->st[stack].total_bytes += size;

	size_t i = model_index(m, addr);
	EXPECT(i != SIZE_MAX, "test bug: 0x%" PRIx64 " not in the pool", addr);
	if (m->b[i].live) {
		m->replaced++;
		model_release(m, i);
	}
	if (m->nlive >= m->max_blocks) {
		m->limit |= HEAP_LIMIT_BLOCKS;
		return 0;
	}
	model_insert(m, i, size, stack);
	return 0;
}

static int model_free(struct model *m, uint64_t seq, uint64_t addr, bool temporary)
{
	if (seq <= m->last_seq)
		return -EBADMSG;
	m->last_seq = seq;
	size_t i = model_index(m, addr);
	if (i == SIZE_MAX || !m->b[i].live) {
		m->unknown_frees++;
		return 0;
	}
	m->frees++;
	if (temporary)
		m->st[m->b[i].stack].temporary++;
	model_release(m, i);
	return 0;
}

/* ---- the rig: a heap and its model, driven together ---- */

struct rig {
	struct heap h;
	struct model m;
};

static void rig_init(struct rig *r, const uint64_t *pool, size_t n, size_t max_blocks,
                     size_t max_stacks)
{
	heap_init_keyed(&r->h, max_blocks, max_stacks, TEST_KEY);
	model_init(&r->m, pool, n, max_blocks, max_stacks);
}

static void rig_close(struct rig *r)
{
	heap_close(&r->h);
	model_close(&r->m);
}

static uint64_t frame_of(uint32_t id, uint32_t i)
{
	return UINT64_C(0x400000) + (uint64_t)id * 0x10000 + (uint64_t)i * 4 + 1;
}

/* Defines stack id with n frames in both; returns heap_define_stack's result
 * after checking it against the rule in heap.h and that the frames were
 * copied, not kept. */
static int rig_define(struct rig *r, uint32_t id, uint32_t n)
{
	struct model *m = &r->m;
	uint64_t frames[PROTO_MAX_FRAMES + 1];
	int want, defines = 0;

	for (uint32_t i = 0; i < n && i < PROTO_MAX_FRAMES + 1; i++)
		frames[i] = frame_of(id, i);
	if (id == 0 || n == 0 || n > PROTO_MAX_FRAMES) {
		want = -EBADMSG;
	} else if (id < MODEL_IDS && m->st[id].defined) {
		want = -EBADMSG;
	} else if (id > m->max_stacks || m->ndefined >= m->max_stacks) {
		m->limit |= HEAP_LIMIT_STACKS;
		want = 0;
	} else {
		EXPECT(id < MODEL_IDS, "test bug: stack id %u beyond the model", id);
		m->st[id].defined = 1;
		m->ndefined++;
		defines = 1;
		want = 0;
	}
	int rc = heap_define_stack(&r->h, id, frames, n);
	EXPECT(rc == want, "define_stack(%u, %u frames) = %d, want %d", id, n, rc, want);
	memset(frames, 0xee, sizeof(frames));
	if (defines) {
		const struct heap_stack *s = heap_stack_at(&r->h, id);
		EXPECT_EQ(s->nframes, n);
		for (uint32_t i = 0; i < n; i++)
			EXPECT_EQ(s->frames[i], frame_of(id, i));
	}
	return rc;
}

static int rig_alloc_at(struct rig *r, uint64_t seq, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct proto_event ev = {
	    .seq = seq,
	    .addr = addr,
	    .size = size,
	    .stack_id = stack,
	    .kind = PROTO_EV_ALLOC,
	};
	uint64_t last = r->m.last_seq;
	int want = model_alloc(&r->m, seq, addr, size, stack);
	int rc = heap_apply(&r->h, &ev);
	EXPECT(rc == want,
	       "alloc seq %" PRIu64 " 0x%" PRIx64 " size %" PRIu64 " stack %u = %d, want %d", seq,
	       addr, size, stack, rc, want);
	if (rc != 0 && seq > last) {
		/* Refused for its stack id. Whether the refused event still
		 * used up its seq, heap.h does not say, and both are sound:
		 * the agent never reuses a seq. Follow the heap. */
		EXPECT_TRUE(r->h.last_seq == last || r->h.last_seq == seq);
		r->m.last_seq = r->h.last_seq;
	}
	return rc;
}

/* The free's temporary flag (which the agent sets when the block was its
 * thread's last allocation) is drawn from seq: a third of the frees carry
 * it, and the block's stack counts them. */
static int rig_free_at(struct rig *r, uint64_t seq, uint64_t addr)
{
	bool temporary = seq % 3 == 0;
	struct proto_event ev = {
	    .seq = seq, .addr = addr, .kind = PROTO_EV_FREE, .temporary = temporary};
	int want = model_free(&r->m, seq, addr, temporary);
	int rc = heap_apply(&r->h, &ev);
	EXPECT(rc == want, "free seq %" PRIu64 " 0x%" PRIx64 " = %d, want %d", seq, addr, rc, want);
	return rc;
}

static int rig_alloc(struct rig *r, uint64_t addr, uint64_t size, uint32_t stack)
{
	return rig_alloc_at(r, r->m.last_seq + 1, addr, size, stack);
}

static int rig_free(struct rig *r, uint64_t addr)
{
	return rig_free_at(r, r->m.last_seq + 1, addr);
}

static void rig_reset_peak(struct rig *r)
{
	heap_reset_peak(&r->h);
	model_at_peak(&r->m);
}

/* ---- comparing the heap with the model ---- */

static void check_counters(const struct rig *r)
{
	const struct heap *h = &r->h;
	const struct model *m = &r->m;

	EXPECT_EQ(h->count, m->nlive);
	EXPECT_EQ(h->blocks, m->nlive);
	EXPECT_EQ(h->current_frac | h->blocks_frac | h->allocations_frac | h->frees_frac, 0);
	EXPECT_EQ(h->current, m->current);
	EXPECT_EQ(h->peak, m->peak);
	EXPECT_EQ(h->allocations, m->allocations);
	EXPECT_EQ(h->frees, m->frees);
	EXPECT_EQ(h->unknown_frees, m->unknown_frees);
	EXPECT_EQ(h->replaced, m->replaced);
	EXPECT_INT_EQ(h->limit_reached, m->limit);
	EXPECT_EQ(h->last_seq, m->last_seq);
	EXPECT_EQ(h->ndefined, m->ndefined);
}

static void check_stack(const struct rig *r, uint32_t id)
{
	const struct heap *h = &r->h;
	const struct mstack *ms = &r->m.st[id];

	if (!ms->defined) {
		if (id < h->nstacks) {
			const struct heap_stack *s = heap_stack_at(h, id);
			EXPECT(!s->defined, "stack %u defined, the model says not", id);
			EXPECT_EQ(s->nframes, 0);
			EXPECT_EQ(s->live_bytes, 0);
			EXPECT_EQ(s->live_count, 0);
			EXPECT_EQ(s->total_allocs, 0);
			EXPECT_EQ(s->total_bytes, 0);
			EXPECT_EQ(s->temporary, 0);
		}
		return;
	}
	EXPECT(id < h->nstacks && heap_stack_at(h, id)->defined, "stack %u not defined", id);
	const struct heap_stack *s = heap_stack_at(h, id);
	EXPECT(s->live_bytes == ms->live_bytes, "stack %u live_bytes %" PRIu64 ", want %" PRIu64,
	       id, s->live_bytes, ms->live_bytes);
	EXPECT(s->live_count == ms->live_count, "stack %u live_count %" PRIu64 ", want %" PRIu64,
	       id, s->live_count, ms->live_count);
	EXPECT(s->total_allocs == ms->total_allocs,
	       "stack %u total_allocs %" PRIu64 ", want %" PRIu64, id, s->total_allocs,
	       ms->total_allocs);
	EXPECT(s->total_bytes == ms->total_bytes, "stack %u total_bytes %" PRIu64 ", want %" PRIu64,
	       id, s->total_bytes, ms->total_bytes);
	EXPECT(s->temporary == ms->temporary, "stack %u temporary %" PRIu64 ", want %" PRIu64, id,
	       s->temporary, ms->temporary);
	uint64_t pb, pc;
	heap_stack_at_peak(s, h->peak_serial, &pb, &pc);
	EXPECT(pb == ms->peak_bytes && pc == ms->peak_count,
	       "stack %u at the peak: %" PRIu64 " bytes in %" PRIu64 " blocks, want %" PRIu64
	       " in %" PRIu64,
	       id, pb, pc, ms->peak_bytes, ms->peak_count);
	EXPECT_EQ(s->live_bytes_frac | s->live_count_frac | s->total_allocs_frac |
	              s->total_bytes_frac | s->temporary_frac,
	          0);
}

static void check_stacks(const struct rig *r)
{
	for (uint32_t id = 0; id < MODEL_IDS; id++)
		check_stack(r, id);
	for (uint32_t id = MODEL_IDS; id < r->h.nstacks; id++)
		EXPECT(!heap_stack_at(&r->h, id)->defined &&
		           heap_stack_at(&r->h, id)->total_allocs == 0,
		       "stack %u beyond the model is in use", id);
}

static void check_block(const struct rig *r, size_t i)
{
	const struct mblock *b = &r->m.b[i];
	uint64_t addr = r->m.addr[i], size = 0xdead;
	uint32_t stack = 0xbeef;
	int rc = heap_lookup(&r->h, addr, &size, &stack);

	if (!b->live) {
		EXPECT(rc == -ENOENT, "0x%" PRIx64 " found (%d), the model says free", addr, rc);
		return;
	}
	EXPECT(rc == 0, "live 0x%" PRIx64 " not found: %d", addr, rc);
	EXPECT(size == b->size, "0x%" PRIx64 " size %" PRIu64 ", want %" PRIu64, addr, size,
	       b->size);
	EXPECT(stack == b->stack, "0x%" PRIx64 " stack %u, want %u", addr, stack, b->stack);
}

struct visit {
	const struct model *m;
	unsigned char *seen;
	size_t count;
	uint64_t bytes;
};

static void visit_block(void *arg, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct visit *v = arg;
	size_t i = model_index(v->m, addr);

	EXPECT(i != SIZE_MAX, "foreach visited 0x%" PRIx64 ", never allocated", addr);
	EXPECT(v->m->b[i].live, "foreach visited 0x%" PRIx64 ", which is free", addr);
	EXPECT(!v->seen[i], "foreach visited 0x%" PRIx64 " twice", addr);
	EXPECT_EQ(size, v->m->b[i].size);
	EXPECT_EQ(stack, v->m->b[i].stack);
	v->seen[i] = 1;
	v->count++;
	v->bytes += size;
}

static void check_foreach(const struct rig *r)
{
	struct visit v = {.m = &r->m, .seen = calloc(r->m.n ? r->m.n : 1, 1)};

	EXPECT_TRUE(v.seen != NULL);
	heap_foreach(&r->h, visit_block, &v);
	EXPECT_EQ(v.count, r->m.nlive);
	EXPECT_EQ(v.bytes, r->m.current);
	free(v.seen);
}

static void check_blocks(const struct rig *r)
{
	check_counters(r);
	for (size_t i = 0; i < r->m.n; i++)
		check_block(r, i);
}

static void check_full(const struct rig *r)
{
	check_blocks(r);
	check_stacks(r);
	check_foreach(r);
}

/* A stack id no test defines, so an allocation on it must be refused. */
#define UNDEFINED_ID 200u

/* ---- home slots, seen from outside ---- */

struct homes {
	struct heap h;
	uint64_t seq;
};

static void homes_init(struct homes *f)
{
	heap_init_keyed(&f->h, 0, 0, TEST_KEY);
	f->seq = 0;
}

/* The slot addr lands on alone in an empty table of the initial capacity. */
static size_t home_of(struct homes *f, uint64_t addr)
{
	struct proto_event ev = {.seq = ++f->seq, .addr = addr, .size = 1, .kind = PROTO_EV_ALLOC};
	size_t home = SIZE_MAX;

	EXPECT_INT_EQ(heap_apply(&f->h, &ev), 0);
	for (size_t i = 0; i < f->h.tab.cap; i++)
		if (heap_table_slot(&f->h.tab, i)->addr == addr)
			home = i;
	EXPECT_TRUE(home != SIZE_MAX);
	ev.seq = ++f->seq;
	ev.kind = PROTO_EV_FREE;
	EXPECT_INT_EQ(heap_apply(&f->h, &ev), 0);
	EXPECT_EQ(f->h.count, 0);
	return home;
}

/* The next 16-aligned address after *cursor whose home is `home`. */
static uint64_t find_home(struct homes *f, uint64_t *cursor, size_t home)
{
	for (int tries = 0; tries < 1 << 20; tries++) {
		*cursor += 16;
		if (home_of(f, *cursor) == home)
			return *cursor;
	}
	ck_abort_msg("no address found for home slot %zu", home);
	return 0;
}

/* ---- tests ---- */

START_TEST(test_init_empty)
{
	struct heap h;
	uint64_t size;
	uint32_t stack;

	heap_init(&h, 0, 0);
	EXPECT_EQ(h.max_blocks, (size_t)64 << 20);
	EXPECT_EQ(h.max_stacks, (size_t)1 << 20);
	EXPECT_EQ(h.count, 0);
	EXPECT_EQ(h.current, 0);
	EXPECT_EQ(h.peak, 0);
	EXPECT_INT_EQ(h.limit_reached, HEAP_LIMIT_NONE);
	EXPECT_GE(h.nstacks, 1);
	EXPECT_TRUE(heap_stack_at(&h, 0)->defined);
	EXPECT_EQ(heap_stack_at(&h, 0)->nframes, 0);
	EXPECT_EQ(h.ndefined, 0);
	EXPECT_TRUE(h.tab.cap > 0 && (h.tab.cap & (h.tab.cap - 1)) == 0);
	EXPECT_INT_EQ(heap_lookup(&h, 0x1000, &size, &stack), -ENOENT);
	EXPECT_INT_EQ(heap_lookup(&h, 0, &size, &stack), -ENOENT);
	EXPECT_GT(heap_memory(&h), 0);

	struct model m;
	model_init(&m, NULL, 0, 0, 0);
	struct visit v = {.m = &m, .seen = calloc(1, 1)};
	heap_foreach(&h, visit_block, &v);
	EXPECT_EQ(v.count, 0);
	free(v.seen);
	model_close(&m);
	heap_close(&h);

	/* Explicit limits are kept; a stack limit above what 24 bits of the
	 * slot can name is cut to the largest id. */
	heap_init(&h, 7, 9);
	EXPECT_EQ(h.max_blocks, 7);
	EXPECT_EQ(h.max_stacks, 9);
	heap_close(&h);
	heap_init(&h, 0, SIZE_MAX);
	EXPECT_EQ(h.max_stacks, HEAP_MAX_STACK_ID);
	heap_close(&h);
}
END_TEST

START_TEST(test_define_stack)
{
	struct rig r;
	uint64_t pool[] = {0x1000};

	rig_init(&r, pool, 1, 0, 0);
	EXPECT_INT_EQ(rig_define(&r, 1, 3), 0);
	EXPECT_INT_EQ(rig_define(&r, 2, 1), 0);
	EXPECT_INT_EQ(rig_define(&r, 3, PROTO_MAX_FRAMES), 0);
	EXPECT_INT_EQ(rig_define(&r, 4, PROTO_MAX_FRAMES + 1), -EBADMSG);
	EXPECT_INT_EQ(rig_define(&r, 5, 0), -EBADMSG);
	EXPECT_INT_EQ(rig_define(&r, 0, 2), -EBADMSG); /* 0 is the unknown stack */
	/* Ids need not come in order or densely. */
	EXPECT_INT_EQ(rig_define(&r, 150, 7), 0);
	EXPECT_INT_EQ(rig_define(&r, 40, 2), 0);
	EXPECT_EQ(r.h.ndefined, 5);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->nframes, 0);
	check_full(&r);

	/* Redefinition is refused and leaves the first definition alone. */
	uint64_t other[2] = {0x111, 0x222};
	EXPECT_INT_EQ(heap_define_stack(&r.h, 1, other, 2), -EBADMSG);
	EXPECT_INT_EQ(heap_define_stack(&r.h, 150, other, 1), -EBADMSG);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->nframes, 3);
	for (uint32_t i = 0; i < 3; i++)
		EXPECT_EQ(heap_stack_at(&r.h, 1)->frames[i], frame_of(1, i));
	EXPECT_EQ(heap_stack_at(&r.h, 150)->nframes, 7);
	EXPECT_EQ(heap_stack_at(&r.h, 150)->frames[6], frame_of(150, 6));
	EXPECT_EQ(r.h.ndefined, 5);
	/* ... also after the id is in use. */
	EXPECT_INT_EQ(rig_alloc(&r, 0x1000, 64, 1), 0);
	EXPECT_INT_EQ(rig_define(&r, 1, 5), -EBADMSG);
	check_full(&r);
	rig_close(&r);

	/* A sparse id far past the first chunk of the table. */
	struct heap h;
	uint64_t f[1] = {0x4242};
	heap_init(&h, 0, 0);
	EXPECT_INT_EQ(heap_define_stack(&h, 5000, f, 1), 0);
	EXPECT_GT(h.nstacks, 5000);
	EXPECT_TRUE(heap_stack_at(&h, 5000)->defined);
	EXPECT_TRUE(!heap_stack_at(&h, 4999)->defined);
	EXPECT_TRUE(!heap_stack_at(&h, 1)->defined);
	EXPECT_EQ(heap_stack_at(&h, 5000)->frames[0], 0x4242);
	heap_close(&h);
}
END_TEST

START_TEST(test_bookkeeping)
{
	const uint64_t A = 0x10000, B = 0x10040, C = 0x20000, D = 0x30010;
	uint64_t pool[] = {A, B, C, D};
	struct rig r;
	rig_init(&r, pool, 4, 0, 0);
	rig_define(&r, 1, 4);
	rig_define(&r, 2, 2);

	EXPECT_INT_EQ(rig_alloc(&r, A, 100, 1), 0);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc(&r, B, 200, 1), 0);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc(&r, C, 50, 2), 0);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc(&r, D, 7, 0), 0);
	check_full(&r);

	/* The same numbers, written out by hand. */
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_bytes, 300);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_count, 2);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_allocs, 2);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_bytes, 300);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_bytes, 50);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_count, 1);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->live_bytes, 7);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->total_allocs, 1);
	EXPECT_EQ(r.h.current, 357);
	EXPECT_EQ(r.h.peak, 357);
	EXPECT_EQ(r.h.count, 4);
	EXPECT_EQ(r.h.allocations, 4);

	EXPECT_INT_EQ(rig_free(&r, B), 0);
	check_full(&r);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_bytes, 100);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_count, 1);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_allocs, 2); /* totals never go down */
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_bytes, 300);
	EXPECT_EQ(r.h.current, 157);
	EXPECT_EQ(r.h.peak, 357);
	EXPECT_EQ(r.h.frees, 1);

	/* The address comes back on another stack. */
	EXPECT_INT_EQ(rig_alloc(&r, B, 1000, 2), 0);
	check_full(&r);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_bytes, 1050);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_count, 2);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->total_allocs, 2);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->total_bytes, 1050);
	EXPECT_EQ(r.h.current, 1157);
	EXPECT_EQ(r.h.peak, 1157);
	EXPECT_EQ(r.h.replaced, 0);

	/* A zero-byte block is still a block. */
	EXPECT_INT_EQ(rig_free(&r, D), 0);
	EXPECT_INT_EQ(rig_alloc(&r, D, 0, 1), 0);
	check_full(&r);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_count, 2);
	EXPECT_EQ(r.h.count, 4);

	const uint64_t order[] = {C, A, D, B};
	for (size_t i = 0; i < 4; i++) {
		EXPECT_INT_EQ(rig_free(&r, order[i]), 0);
		check_full(&r);
	}
	for (uint32_t id = 0; id < 3; id++) {
		EXPECT_EQ(heap_stack_at(&r.h, id)->live_bytes, 0);
		EXPECT_EQ(heap_stack_at(&r.h, id)->live_count, 0);
	}
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_allocs, 3);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_bytes, 300);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->total_bytes, 1050);
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(r.h.count, 0);
	EXPECT_EQ(r.h.frees, 6);
	EXPECT_EQ(r.h.allocations, 6);
	EXPECT_EQ(r.h.unknown_frees, 0);
	rig_close(&r);
}
END_TEST

/* A free flagged temporary counts at its block's stack, through the table
 * and as a paired temporary (heap_apply_temp_*); an unflagged one does not,
 * and nothing else changes with the flag. */
START_TEST(test_temporary_flag)
{
	struct heap h;
	uint64_t frames[1] = {0x401000};
	uint32_t st;

	heap_init(&h, 0, 0);
	EXPECT_INT_EQ(heap_define_stack(&h, 1, frames, 1), 0);
	EXPECT_INT_EQ(heap_define_stack(&h, 2, frames, 1), 0);
	struct proto_event a = {
	    .seq = 1, .addr = 0x1000, .size = 10, .stack_id = 1, .kind = PROTO_EV_ALLOC};
	struct proto_event f = {.seq = 2, .addr = 0x1000, .kind = PROTO_EV_FREE, .temporary = 1};
	EXPECT_INT_EQ(heap_apply(&h, &a), 0);
	EXPECT_INT_EQ(heap_apply(&h, &f), 0);
	a.seq = 3, a.stack_id = 2;
	f.seq = 4, f.temporary = 0;
	EXPECT_INT_EQ(heap_apply(&h, &a), 0);
	EXPECT_INT_EQ(heap_apply(&h, &f), 0);
	a.seq = 5, a.stack_id = 1;
	EXPECT_INT_EQ(heap_apply_temp_alloc(&h, &a, false, &st), 1);
	EXPECT_INT_EQ(heap_apply_temp_free(&h, 6, 10, st, true, true), 0);
	a.seq = 7, a.stack_id = 2;
	EXPECT_INT_EQ(heap_apply_temp_alloc(&h, &a, false, &st), 1);
	EXPECT_INT_EQ(heap_apply_temp_free(&h, 8, 10, st, true, false), 0);
	EXPECT_EQ(heap_stack_at(&h, 1)->temporary, 2);
	EXPECT_EQ(heap_stack_at(&h, 2)->temporary, 0);
	EXPECT_EQ(heap_stack_at(&h, 1)->total_allocs, 2);
	EXPECT_EQ(heap_stack_at(&h, 2)->total_allocs, 2);
	EXPECT_EQ(h.frees, 4);
	EXPECT_EQ(h.current, 0);
	heap_close(&h);
}
END_TEST

START_TEST(test_peak)
{
	const uint64_t A = 0x1000, B = 0x2000, C = 0x3000;
	uint64_t pool[] = {A, B, C};
	struct rig r;

	rig_init(&r, pool, 3, 0, 0);
	rig_define(&r, 1, 1);
	rig_alloc(&r, A, 100, 1);
	EXPECT_EQ(r.h.peak, 100);
	rig_alloc(&r, B, 50, 0);
	EXPECT_EQ(r.h.peak, 150);
	rig_free(&r, A);
	EXPECT_EQ(r.h.current, 50);
	EXPECT_EQ(r.h.peak, 150);
	rig_reset_peak(&r);
	EXPECT_EQ(r.h.peak, 50);
	rig_alloc(&r, C, 30, 1);
	EXPECT_EQ(r.h.peak, 80);
	rig_free(&r, B);
	EXPECT_EQ(r.h.peak, 80);
	rig_reset_peak(&r);
	EXPECT_EQ(r.h.peak, 30);
	check_full(&r);

	/* Replacing a block releases the old one first: the peak never holds
	 * both. */
	rig_alloc(&r, C, 500, 1);
	EXPECT_EQ(r.h.current, 500);
	EXPECT_EQ(r.h.peak, 500);
	rig_alloc(&r, C, 40, 1);
	EXPECT_EQ(r.h.current, 40);
	EXPECT_EQ(r.h.peak, 500);
	/* Refused and unknown events leave the peak alone. */
	rig_free(&r, A);
	rig_alloc(&r, A, 1000, UNDEFINED_ID);
	EXPECT_EQ(r.h.peak, 500);
	rig_free(&r, C);
	EXPECT_EQ(r.h.current, 0);
	rig_reset_peak(&r);
	EXPECT_EQ(r.h.peak, 0);
	check_full(&r);
	rig_close(&r);
}
END_TEST

START_TEST(test_seq_order)
{
	const uint64_t A = 0x1000, B = 0x2000;
	uint64_t pool[] = {A, B};
	struct rig r;
	struct proto_event ev;

	rig_init(&r, pool, 2, 0, 0);
	rig_define(&r, 1, 1);
	/* The agent's first seq is 1: nothing is "not greater" than 0. */
	EXPECT_INT_EQ(rig_alloc_at(&r, 0, A, 8, 1), -EBADMSG);
	EXPECT_EQ(r.h.allocations, 0);
	check_full(&r);

	EXPECT_INT_EQ(rig_alloc_at(&r, 5, A, 8, 1), 0);
	check_full(&r);
	/* Equal and lower seqs, alloc and free, change nothing at all. */
	EXPECT_INT_EQ(rig_alloc_at(&r, 5, B, 16, 1), -EBADMSG);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc_at(&r, 4, B, 16, 1), -EBADMSG);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc_at(&r, 5, A, 99, 0), -EBADMSG); /* would replace A */
	check_full(&r);
	EXPECT_INT_EQ(rig_free_at(&r, 5, A), -EBADMSG);
	check_full(&r);
	EXPECT_INT_EQ(rig_free_at(&r, 1, A), -EBADMSG);
	check_full(&r);
	EXPECT_INT_EQ(rig_free_at(&r, 3, B), -EBADMSG); /* would be an unknown free */
	check_full(&r);
	EXPECT_EQ(r.h.last_seq, 5);
	EXPECT_EQ(r.h.count, 1);
	EXPECT_EQ(r.h.unknown_frees, 0);

	/* Gaps are fine (drop mode loses events). */
	EXPECT_INT_EQ(rig_alloc_at(&r, 6, B, 16, 1), 0);
	EXPECT_INT_EQ(rig_free_at(&r, 1000, A), 0);
	EXPECT_INT_EQ(rig_free_at(&r, 999, B), -EBADMSG);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc_at(&r, PROTO_SEQ_MAX, A, 1, 0), 0);
	check_full(&r);
	EXPECT_INT_EQ(rig_free_at(&r, PROTO_SEQ_MAX, B), -EBADMSG);
	EXPECT_INT_EQ(rig_free_at(&r, PROTO_SEQ_MAX - 1, A), -EBADMSG);
	check_full(&r);
	EXPECT_EQ(r.h.last_seq, PROTO_SEQ_MAX);
	rig_close(&r);

	/* A kind that is neither alloc nor free is refused too. */
	rig_init(&r, pool, 2, 0, 0);
	rig_alloc(&r, A, 8, 0);
	for (uint8_t kind = 0; kind < 8; kind++) {
		if (kind == PROTO_EV_ALLOC || kind == PROTO_EV_FREE)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.seq = r.h.last_seq + 1;
		ev.addr = A;
		ev.size = 8;
		ev.kind = kind;
		EXPECT_INT_EQ(heap_apply(&r.h, &ev), -EBADMSG);
		r.m.last_seq = r.h.last_seq; /* like the stack case: either is sound */
		check_full(&r);
	}
	rig_close(&r);
}
END_TEST

START_TEST(test_undefined_stack)
{
	const uint64_t A = 0x1000, B = 0x2000;
	uint64_t pool[] = {A, B};
	struct rig r;
	uint64_t size;
	uint32_t stack;

	rig_init(&r, pool, 2, 0, 0);
	rig_define(&r, 1, 2);
	rig_define(&r, 2, 2);
	const uint32_t bad[] = {
	    3, UNDEFINED_ID, 5000, HEAP_MAX_STACK_ID, HEAP_MAX_STACK_ID + 1, UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		EXPECT_INT_EQ(rig_alloc(&r, B, 32, bad[i]), -EBADMSG);
		check_full(&r);
	}
	EXPECT_INT_EQ(heap_lookup(&r.h, B, &size, &stack), -ENOENT);
	EXPECT_EQ(r.h.allocations, 0);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->total_allocs, 0);

	/* A refused allocation at a live address does not release the block. */
	EXPECT_INT_EQ(rig_alloc(&r, A, 64, 2), 0);
	EXPECT_INT_EQ(rig_alloc(&r, A, 128, 3), -EBADMSG);
	check_full(&r);
	EXPECT_INT_EQ(heap_lookup(&r.h, A, &size, &stack), 0);
	EXPECT_EQ(size, 64);
	EXPECT_EQ(stack, 2);
	EXPECT_EQ(r.h.replaced, 0);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_bytes, 64);

	/* Later events with good ids go on as usual. */
	EXPECT_INT_EQ(rig_alloc(&r, B, 32, 1), 0);
	EXPECT_INT_EQ(rig_free(&r, A), 0);
	check_full(&r);
	rig_close(&r);
}
END_TEST

START_TEST(test_max_stacks)
{
	const uint64_t A = 0x1000, B = 0x2000, C = 0x3000, D = 0x4000, E = 0x5000;
	uint64_t pool[] = {A, B, C, D, E};
	struct rig r;
	uint64_t size;
	uint32_t stack;

	rig_init(&r, pool, 5, 0, 3);
	EXPECT_INT_EQ(rig_define(&r, 1, 1), 0);
	EXPECT_INT_EQ(rig_define(&r, 2, 1), 0);
	EXPECT_INT_EQ(rig_define(&r, 3, 1), 0);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_NONE);
	EXPECT_INT_EQ(rig_define(&r, 4, 1), 0);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_STACKS);
	EXPECT_INT_EQ(rig_define(&r, 7, 3), 0);
	EXPECT_EQ(r.h.ndefined, 3);
	EXPECT_TRUE(heap_stack_at(&r.h, 4)->nframes == 0 && !heap_stack_at(&r.h, 4)->defined);
	/* A redefinition is still a broken agent, limit or not. */
	EXPECT_INT_EQ(rig_define(&r, 2, 1), -EBADMSG);
	check_full(&r);

	/* Dropped ids, and (indistinguishably) ids never defined at all, count
	 * under the unknown stack; kept ids count as usual. */
	EXPECT_INT_EQ(rig_alloc(&r, A, 10, 4), 0);
	EXPECT_INT_EQ(rig_alloc(&r, B, 20, 7), 0);
	EXPECT_INT_EQ(rig_alloc(&r, C, 40, 9), 0);
	EXPECT_INT_EQ(rig_alloc(&r, D, 80, 2), 0);
	EXPECT_INT_EQ(rig_alloc(&r, E, 160, HEAP_MAX_STACK_ID + 1), 0);
	check_full(&r);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->live_bytes, 230);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->live_count, 4);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->total_allocs, 4);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_bytes, 80);
	EXPECT_INT_EQ(heap_lookup(&r.h, A, &size, &stack), 0);
	EXPECT_EQ(stack, 0);
	EXPECT_EQ(size, 10);
	EXPECT_INT_EQ(heap_lookup(&r.h, D, &size, &stack), 0);
	EXPECT_EQ(stack, 2);
	EXPECT_INT_EQ(rig_free(&r, B), 0);
	EXPECT_INT_EQ(rig_free(&r, A), 0);
	check_full(&r);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->live_bytes, 200);
	rig_close(&r);

	/* An id above the limit is dropped even while there is room, and the
	 * room is still there for ids within it. */
	rig_init(&r, pool, 5, 0, 5);
	EXPECT_INT_EQ(rig_define(&r, 9, 1), 0);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_STACKS);
	EXPECT_INT_EQ(rig_define(&r, 5, 1), 0);
	EXPECT_INT_EQ(rig_define(&r, 1, 1), 0);
	EXPECT_EQ(r.h.ndefined, 2);
	EXPECT_INT_EQ(rig_alloc(&r, A, 1, 9), 0);
	EXPECT_INT_EQ(rig_alloc(&r, B, 2, 5), 0);
	check_full(&r);
	rig_close(&r);

	/* The largest id a slot can name is the hard limit. */
	rig_init(&r, pool, 5, 0, SIZE_MAX);
	EXPECT_INT_EQ(rig_define(&r, HEAP_MAX_STACK_ID + 1, 1), 0);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_STACKS);
	EXPECT_INT_EQ(rig_alloc(&r, A, 5, HEAP_MAX_STACK_ID + 1), 0);
	check_full(&r);
	rig_close(&r);
}
END_TEST

START_TEST(test_max_blocks)
{
	uint64_t pool[20];
	struct rig r;

	for (size_t i = 0; i < 20; i++)
		pool[i] = 0x100000 + 0x40 * i;
	rig_init(&r, pool, 20, 10, 0);
	rig_define(&r, 1, 1);
	rig_define(&r, 2, 1);
	for (size_t i = 0; i < 10; i++) {
		EXPECT_INT_EQ(rig_alloc(&r, pool[i], 100 + i, 1 + (uint32_t)(i & 1)), 0);
		check_full(&r);
	}
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_NONE);
	EXPECT_EQ(r.h.count, 10);

	/* The eleventh block is counted as an allocation but not kept. */
	EXPECT_INT_EQ(rig_alloc(&r, pool[10], 1000, 1), 0);
	check_full(&r);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_BLOCKS);
	EXPECT_EQ(r.h.count, 10);
	EXPECT_EQ(r.h.allocations, 11);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_allocs, 6);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_count, 5);
	EXPECT_EQ(r.h.current, 1045);
	/* So its free is an unknown one. */
	EXPECT_INT_EQ(rig_free(&r, pool[10]), 0);
	EXPECT_EQ(r.h.unknown_frees, 1);
	check_full(&r);

	/* At the limit, a block replacing a live one is still kept. */
	EXPECT_INT_EQ(rig_alloc(&r, pool[3], 7, 1), 0);
	check_full(&r);
	EXPECT_EQ(r.h.replaced, 1);
	EXPECT_EQ(r.h.count, 10);

	/* A free makes room again; the limit bit stays, it is a record. */
	EXPECT_INT_EQ(rig_free(&r, pool[0]), 0);
	EXPECT_INT_EQ(rig_alloc(&r, pool[11], 5, 2), 0);
	check_full(&r);
	EXPECT_EQ(r.h.count, 10);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_BLOCKS);
	for (size_t i = 12; i < 20; i++)
		EXPECT_INT_EQ(rig_alloc(&r, pool[i], BIG + i, 2), 0); /* big ones too */
	check_full(&r);
	EXPECT_EQ(r.h.nbig, 0);
	rig_close(&r);
}
END_TEST

START_TEST(test_unknown_frees)
{
	const uint64_t A = 0x7f0000001000;
	uint64_t pool[] = {A, A + 1, A + 8, A + 16};
	struct rig r;

	rig_init(&r, pool, 4, 0, 0);
	EXPECT_INT_EQ(rig_free(&r, 0x5000), 0); /* never seen at all */
	EXPECT_EQ(r.h.unknown_frees, 1);
	EXPECT_EQ(r.h.frees, 0);
	rig_alloc(&r, A, 24, 0);
	/* Neighbours of A are not A. */
	EXPECT_INT_EQ(rig_free(&r, A + 1), 0);
	EXPECT_INT_EQ(rig_free(&r, A + 8), 0);
	EXPECT_EQ(r.h.unknown_frees, 3);
	check_full(&r);
	EXPECT_INT_EQ(rig_free(&r, A), 0);
	EXPECT_INT_EQ(rig_free(&r, A), 0); /* double free */
	check_full(&r);
	EXPECT_EQ(r.h.unknown_frees, 4);
	EXPECT_EQ(r.h.frees, 1);
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(heap_stack_at(&r.h, 0)->live_count, 0);
	rig_close(&r);
}
END_TEST

START_TEST(test_replaced)
{
	uint64_t cursor = 0x1000;
	const uint64_t A = 0x1000, B = sharing_home(&cursor, A, 1024),
	               C = sharing_home(&cursor, A, 1024);
	uint64_t pool[] = {A, B, C};
	struct rig r;
	uint64_t size;
	uint32_t stack;

	rig_init(&r, pool, 3, 0, 0);
	rig_define(&r, 1, 1);
	rig_define(&r, 2, 1);
	rig_alloc(&r, A, 100, 1);
	rig_alloc(&r, B, 10, 1); /* same home slot as A and C */
	rig_alloc(&r, C, 1, 2);
	EXPECT_INT_EQ(rig_alloc(&r, A, 300, 2), 0);
	check_full(&r);
	EXPECT_EQ(r.h.replaced, 1);
	EXPECT_EQ(r.h.frees, 0);
	EXPECT_EQ(r.h.allocations, 4);
	EXPECT_EQ(r.h.count, 3);
	EXPECT_EQ(r.h.current, 311);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_bytes, 10);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_count, 1);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_allocs, 2);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->total_bytes, 110);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_bytes, 301);
	EXPECT_EQ(heap_stack_at(&r.h, 2)->live_count, 2);
	EXPECT_INT_EQ(heap_lookup(&r.h, A, &size, &stack), 0);
	EXPECT_EQ(size, 300);
	EXPECT_EQ(stack, 2);

	/* Same stack, same size: still a replacement, nothing doubled. */
	EXPECT_INT_EQ(rig_alloc(&r, B, 10, 1), 0);
	check_full(&r);
	EXPECT_EQ(r.h.replaced, 2);
	EXPECT_EQ(heap_stack_at(&r.h, 1)->live_count, 1);
	EXPECT_EQ(r.h.count, 3);

	/* Small to big and back. */
	EXPECT_INT_EQ(rig_alloc(&r, C, 5 * BIG, 1), 0);
	check_full(&r);
	EXPECT_INT_EQ(rig_alloc(&r, C, 3, 0), 0);
	check_full(&r);
	EXPECT_EQ(r.h.nbig, 0);
	EXPECT_EQ(r.h.replaced, 4);

	EXPECT_INT_EQ(rig_free(&r, A), 0);
	EXPECT_INT_EQ(rig_free(&r, B), 0);
	EXPECT_INT_EQ(rig_free(&r, C), 0);
	check_full(&r);
	EXPECT_EQ(r.h.current, 0);
	rig_close(&r);
}
END_TEST

START_TEST(test_big_sizes)
{
	/* Sixteen addresses sharing one home slot, so big blocks get moved by
	 * backward shifts, and a few that do not. */
	uint64_t cursor = 0x7f1234560000;
	const uint64_t sizes[] = {
	    BIG - 2,           BIG - 1, BIG, BIG + 1, 3 * BIG + 12345, UINT64_C(1) << 50,
	    UINT64_C(1) << 60, 0,       1,   4096,    BIG << 2,        BIG * 1000 + 7,
	};
	const size_t nsizes = sizeof(sizes) / sizeof(sizes[0]);
	uint64_t pool[20];
	struct rig r;
	uint64_t size;
	uint32_t stack;

	pool[0] = cursor;
	for (size_t k = 1; k < 16; k++)
		pool[k] = sharing_home(&cursor, pool[0], 1024);
	for (size_t k = 16; k < 20; k++)
		pool[k] = 0x5000 + 0x100 * k;
	rig_init(&r, pool, 20, 0, 0);
	EXPECT_EQ(r.h.tab.cap, 1024);
	for (uint32_t id = 1; id <= 4; id++)
		rig_define(&r, id, id);

	for (size_t k = 0; k < 20; k++) {
		EXPECT_INT_EQ(rig_alloc(&r, pool[k], sizes[k % nsizes], (uint32_t)(k % 5)), 0);
		check_full(&r);
	}
	EXPECT_INT_EQ(heap_lookup(&r.h, pool[6], &size, &stack), 0);
	EXPECT_EQ(size, UINT64_C(1) << 60);
	EXPECT_INT_EQ(heap_lookup(&r.h, pool[2], &size, &stack), 0);
	EXPECT_EQ(size, BIG);
	EXPECT_INT_EQ(heap_lookup(&r.h, pool[0], &size, &stack), 0);
	EXPECT_EQ(size, BIG - 2);

	/* Free from the middle of the cluster and of the side list. */
	const size_t order[] = {5, 2, 17, 10, 3, 0, 11, 6, 19, 1, 4};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		EXPECT_INT_EQ(rig_free(&r, pool[order[i]]), 0);
		check_full(&r);
	}
	/* Back again with other big sizes, some on the same addresses. */
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i += 2) {
		EXPECT_INT_EQ(rig_alloc(&r, pool[order[i]], (UINT64_C(1) << 62) >> i, 3), 0);
		check_full(&r);
	}
	EXPECT_INT_EQ(heap_lookup(&r.h, pool[5], &size, &stack), 0);
	EXPECT_EQ(size, UINT64_C(1) << 62);
	EXPECT_EQ(stack, 3);
	for (size_t k = 0; k < 20; k++) {
		rig_free(&r, pool[(k * 7) % 20]);
		check_full(&r);
	}
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(r.h.count, 0);
	EXPECT_EQ(r.h.nbig, 0);
	for (uint32_t id = 0; id <= 4; id++)
		EXPECT_EQ(heap_stack_at(&r.h, id)->live_bytes, 0);
	EXPECT_EQ(heap_stack_at(&r.h, 3)->total_bytes, r.m.st[3].total_bytes);

	/* The largest size there is, alone so nothing wraps. */
	EXPECT_INT_EQ(rig_alloc(&r, pool[9], UINT64_MAX, 4), 0);
	EXPECT_INT_EQ(heap_lookup(&r.h, pool[9], &size, &stack), 0);
	EXPECT_EQ(size, UINT64_MAX);
	EXPECT_EQ(r.h.current, UINT64_MAX);
	EXPECT_EQ(heap_stack_at(&r.h, 4)->live_bytes, UINT64_MAX);
	check_full(&r);
	EXPECT_INT_EQ(rig_free(&r, pool[9]), 0);
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(r.h.nbig, 0);
	check_full(&r);
	rig_close(&r);
}
END_TEST

/* Lexicographic next permutation; 0 after the last one. */
static int next_perm(size_t *a, size_t n)
{
	size_t i = n - 1;
	while (i > 0 && a[i - 1] >= a[i])
		i--;
	if (i == 0)
		return 0;
	size_t j = n - 1;
	while (a[j] <= a[i - 1])
		j--;
	size_t t = a[i - 1];
	a[i - 1] = a[j];
	a[j] = t;
	for (size_t l = i, h = n - 1; l < h; l++, h--) {
		t = a[l];
		a[l] = a[h];
		a[h] = t;
	}
	return 1;
}

/* Probes per event allowed by the hostile tests: linear probing at the
 * table's 3/4 load takes a few on average, growth adds a few more per
 * block; a probe chain an agent could grow at will takes thousands. */
#define PROBES_PER_EVENT 32

/* Every block of n allocated, looked up and freed, with the probes counted;
 * the model checks every answer. */
static void hostile_round(uint64_t *pool, size_t n, uint64_t (*size_of)(size_t i))
{
	struct rig r;
	struct rng g = {0x5eed};
	size_t *order = malloc(n * sizeof(*order));
	uint64_t size, events = 0, want = 0;
	uint32_t stack;

	EXPECT_TRUE(order != NULL);
	rig_init(&r, pool, n, 0, 0);
	rig_define(&r, 1, 3);
	for (size_t i = 0; i < n; i++) {
		EXPECT_INT_EQ(rig_alloc(&r, pool[i], size_of(i), 1), 0);
		want += size_of(i);
		events++;
	}
	EXPECT_EQ(r.h.count, n);
	EXPECT_EQ(r.h.current, want);
	check_full(&r);
	/* The model sorted its pool: look every block up in that order. */
	for (size_t i = 0; i < n; i++) {
		EXPECT_INT_EQ(heap_lookup(&r.h, r.m.addr[i], &size, &stack), 0);
		EXPECT_EQ(size, r.m.b[i].size);
		events++;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	shuffle(&g, order, n);
	for (size_t i = 0; i < n; i++) {
		EXPECT_INT_EQ(rig_free(&r, pool[order[i]]), 0);
		events++;
	}
	check_full(&r);
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(r.h.nbig, 0);
	EXPECT(r.h.probes <= PROBES_PER_EVENT * events,
	       "%" PRIu64 " probes for %" PRIu64 " events (%.1f each)", r.h.probes, events,
	       (double)r.h.probes / (double)events);
	rig_close(&r);
	free(order);
}

static uint64_t size_small(size_t i)
{
	return 16 + (i % 7) * 8;
}

static uint64_t size_huge(size_t i)
{
	return BIG + (uint64_t)i * 4096; /* every one 1 TiB or more, all distinct */
}

START_TEST(test_hostile_addresses)
{
	/* Address patterns a hash that the agent could predict would pile up:
	 * multiples of 2^4 to 2^46 (a multiplicative hash that drops low bits
	 * sends all multiples of a high power of two to one slot), addresses
	 * differing only in their low four bits, and only from bit 40 up.
	 * 2^17 blocks of each, each looked up and freed. */
	const size_t n = (size_t)1 << 17;
	uint64_t *pool = malloc(n * sizeof(*pool));
	EXPECT_TRUE(pool != NULL);
	const unsigned shifts[] = {4, 16, 28, 40, 46};
	for (size_t k = 0; k < sizeof(shifts) / sizeof(shifts[0]); k++) {
		unsigned shift = shifts[k];
		for (size_t i = 0; i < n; i++)
			pool[i] = (uint64_t)(i + 1) << shift;
		hostile_round(pool, n, size_small);
	}
	for (size_t i = 0; i < n; i++)
		pool[i] = UINT64_C(0x7f0000000000) + (i / 16) * 0x1000 + (i % 16);
	hostile_round(pool, n, size_small);
	for (size_t i = 0; i < n; i++)
		pool[i] = UINT64_C(0x5000) + ((uint64_t)(i + 1) << 40);
	hostile_round(pool, n, size_small);
	free(pool);
}
END_TEST

START_TEST(test_hostile_big_sizes)
{
	/* 300,000 blocks of 1 TiB or more (an agent can claim any size): each
	 * keeps its exact size, and costs the probes any block costs. */
	const size_t n = 300000;
	uint64_t *pool = malloc(n * sizeof(*pool));
	EXPECT_TRUE(pool != NULL);
	for (size_t i = 0; i < n; i++)
		pool[i] = UINT64_C(0x10000000) + 16 * (uint64_t)i;
	hostile_round(pool, n, size_huge);
	free(pool);
}
END_TEST

START_TEST(test_keys_differ)
{
	/* Each heap draws its own key: what one process learns about where
	 * its addresses land says nothing about another's table. */
	struct heap a, b;
	heap_init(&a, 0, 0);
	heap_init(&b, 0, 0);
	EXPECT_TRUE(a.key != b.key);
	heap_close(&a);
	heap_close(&b);
}
END_TEST

START_TEST(test_wrap_all_orders)
{
	/* Seven blocks whose homes are the last two slots and the first two,
	 * so their probe chain wraps past the end of the table. Every
	 * insertion order is tried, each with a different deletion order;
	 * every lookup is checked after every step. */
	struct homes f;
	struct rig r;
	uint64_t cursor = 0x10000000;
	uint64_t set[7];
	size_t ins[7], del[7];

	homes_init(&f);
	size_t cap = f.h.tab.cap;
	uint64_t a1 = find_home(&f, &cursor, cap - 1);
	uint64_t a1b = find_home(&f, &cursor, cap - 1);
	uint64_t a2 = find_home(&f, &cursor, cap - 1);
	uint64_t a3 = find_home(&f, &cursor, cap - 2);
	uint64_t a4 = find_home(&f, &cursor, 0);
	uint64_t a4b = find_home(&f, &cursor, 0);
	uint64_t a5 = find_home(&f, &cursor, 1);
	heap_close(&f.h);
	set[0] = a3;
	set[1] = a1;
	set[2] = a1b;
	set[3] = a2;
	set[4] = a4;
	set[5] = a4b;
	set[6] = a5;

	rig_init(&r, set, 7, 0, 0);
	EXPECT_EQ(r.h.tab.cap, cap);
	for (size_t i = 0; i < 7; i++)
		ins[i] = i;
	size_t perms = 0;
	do {
		for (size_t i = 0; i < 7; i++)
			del[i] = ins[(i * 3 + perms) % 7];
		for (size_t i = 0; i < 7; i++) {
			EXPECT_INT_EQ(rig_alloc(&r, set[ins[i]], 1 + ins[i], 0), 0);
			check_blocks(&r);
		}
		/* Four blocks want the last two slots: the chain wraps. */
		EXPECT_TRUE(heap_table_slot(&r.h.tab, cap - 1)->addr != 0 &&
		            heap_table_slot(&r.h.tab, 0)->addr != 0);
		if (perms % 97 == 0)
			check_foreach(&r);
		for (size_t i = 0; i < 7; i++) {
			EXPECT_INT_EQ(rig_free(&r, set[del[i]]), 0);
			check_blocks(&r);
		}
		perms++;
	} while (next_perm(ins, 7));
	EXPECT_EQ(perms, 5040);
	EXPECT_EQ(r.h.tab.cap, cap);
	EXPECT_EQ(r.h.unknown_frees, 0);
	for (size_t i = 0; i < cap; i++)
		EXPECT_EQ(heap_table_slot(&r.h.tab, i)->addr, 0);
	check_full(&r);
	rig_close(&r);
}
END_TEST

START_TEST(test_clusters_random)
{
	/* Overlapping clusters at both ends and in the middle of the table,
	 * under random interleaved allocs and frees, with everything compared
	 * after every step. */
	struct homes f;
	struct rig r;
	struct rng g = {42};
	uint64_t cursor = 0x20000000;
	uint64_t pool[64];
	size_t n = 0;

	homes_init(&f);
	size_t cap = f.h.tab.cap;
	const size_t want[] = {cap - 3, cap - 1, cap - 1, 0, 2, 500, 500, 501, 503};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		/* Up to seven on each home. */
		for (uint64_t k = 0; k < 7 && n < 64; k++)
			pool[n++] = find_home(&f, &cursor, want[i]);
	}
	heap_close(&f.h);

	rig_init(&r, pool, n, 0, 0);
	rig_define(&r, 1, 1);
	for (int step = 0; step < 20000; step++) {
		size_t i = rng_below(&g, n);
		if (rng_below(&g, 2))
			rig_alloc(&r, pool[i], rng_below(&g, 1000), (uint32_t)rng_below(&g, 2));
		else
			rig_free(&r, pool[i]);
		check_blocks(&r);
		if (step % 64 == 0)
			check_full(&r);
	}
	EXPECT_EQ(r.h.tab.cap, cap); /* never more than 63 blocks */
	check_full(&r);
	rig_close(&r);
}
END_TEST

START_TEST(test_growth)
{
	/* Enough blocks for the table to double many times; half of them
	 * dense, half scattered by a bijection so they are distinct. */
	const size_t n = (size_t)1 << 18;
	uint64_t *pool = malloc(n * sizeof(*pool));
	size_t *order = malloc(n * sizeof(*order));
	struct rng g = {7};
	struct rig r;

	EXPECT_TRUE(pool != NULL && order != NULL);
	for (size_t i = 0; i < n / 2; i++)
		pool[i] = UINT64_C(0x560000000000) + 16 * (uint64_t)i;
	for (size_t i = 0; i < n / 2; i++)
		pool[n / 2 + i] = UINT64_C(0x7f0000000000) +
		                  16 * (((uint64_t)i * UINT64_C(0x9E3779B1)) & ((1u << 30) - 1));
	rig_init(&r, pool, n, 0, 0);
	rig_define(&r, 1, 16);
	rig_define(&r, 2, 16);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	shuffle(&g, order, n);

	size_t cap0 = r.h.tab.cap, doublings = 0;
	for (size_t i = 0; i < n; i++) {
		size_t cap = r.h.tab.cap;
		uint64_t a = r.m.addr[order[i]];
		EXPECT_INT_EQ(rig_alloc(&r, a, 1 + (a >> 4) % 5000, (uint32_t)(i % 3)), 0);
		EXPECT_EQ(r.h.count, i + 1);
		if (r.h.tab.cap == cap && i % 4096 != 0)
			continue;
		if (r.h.tab.cap != cap) {
			/* Twice up to a chunk, then half again (in whole
			 * chunks): just after it grew, the table is at least
			 * half full (less a chunk's rounding), so its slots cost
			 * at most 32 bytes a block, not 43 as after a doubling. */
			if (cap < HEAP_CHUNK) {
				EXPECT_EQ(r.h.tab.cap, 2 * cap);
			} else {
				EXPECT_GE(r.h.tab.cap, cap + cap / 2);
				EXPECT_LE(r.h.tab.cap, cap + cap / 2 + HEAP_CHUNK - 1);
				EXPECT_EQ(r.h.tab.cap % HEAP_CHUNK, 0);
				EXPECT_LE(r.h.tab.cap, 2 * r.h.count + HEAP_CHUNK);
			}
			doublings++;
			/* Just after a growth, every block made it across. */
			for (size_t j = 0; j <= i; j += 1 + j / 64)
				check_block(&r, order[j]);
		}
		/* heap_memory walks the stacks, so it is sampled; the array
		 * being moved from counts while it lives. */
		EXPECT_GE(heap_memory(&r.h), r.h.tab.cap * sizeof(struct heap_block));
	}
	EXPECT_GE(doublings, 8);
	EXPECT_GE(r.h.tab.cap, cap0 << 8);
	EXPECT_GE(r.h.tab.cap * 3, r.h.count * 4); /* load factor at most 3/4 */
	/* 16 bytes a slot and a geometric table: well under 48 bytes a block. */
	EXPECT_GE(heap_memory(&r.h), n * sizeof(struct heap_block));
	EXPECT_LE(heap_memory(&r.h), 48 * n + ((size_t)1 << 20));
	check_full(&r);

	shuffle(&g, order, n);
	for (size_t i = 0; i < n; i++) {
		EXPECT_INT_EQ(rig_free(&r, r.m.addr[order[i]]), 0);
		if (i == n / 2)
			check_full(&r);
	}
	check_full(&r);
	EXPECT_EQ(r.h.count, 0);
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(r.h.peak, r.m.peak);
	rig_close(&r);
	free(pool);
	free(order);
}
END_TEST

/*
 * No event pays for the table's growth: with 600,000 blocks the table
 * doubles past 2^20 slots, yet past 2^16 slots no single allocation
 * examines more than a few hundred slots (a whole rehash would examine
 * hundreds of thousands), while blocks looked up, freed and allocated in
 * the middle of a move stay exact; after the process ends the shrink goes
 * step by step (heap_step) and every block is still found.
 */
START_TEST(test_growth_in_steps)
{
	const size_t n = 600000;
	uint64_t *pool = malloc(n * sizeof(*pool));
	struct rig r;
	uint64_t worst = 0;
	size_t moves_seen = 0;

	EXPECT_TRUE(pool != NULL);
	for (size_t i = 0; i < n; i++)
		pool[i] = UINT64_C(0x7f0000000000) + 32 * (uint64_t)i;
	rig_init(&r, pool, n, 0, 0);
	rig_define(&r, 1, 8);
	for (size_t i = 0; i < n; i++) {
		uint64_t p0 = r.h.probes;
		size_t cap = r.h.tab.cap;
		EXPECT_INT_EQ(rig_alloc(&r, r.m.addr[i], 48, 1), 0);
		/* A table of 2^16 slots or fewer still changes size at once
		 * (under a millisecond); past that, in steps. */
		if (cap > ((size_t)1 << 16) && r.h.probes - p0 > worst)
			worst = r.h.probes - p0;
		if (r.h.tab.old != NULL) {
			moves_seen++;
			/* Mid-move: an early block (likely still in the old
			 * array) is freed and allocated again, exactly. */
			if (i % 997 == 0 && i > 10) {
				size_t k = i / 3;
				EXPECT_INT_EQ(rig_free(&r, r.m.addr[k]), 0);
				EXPECT_INT_EQ(rig_alloc(&r, r.m.addr[k], 48, 1), 0);
				check_block(&r, k);
			}
		}
	}
	EXPECT_TRUE(moves_seen > 0);
	EXPECT_LE(worst, 400);
	check_full(&r);
	/* Most blocks go; the exited process's table shrinks in steps. */
	for (size_t i = 0; i < n - 1000; i++)
		EXPECT_INT_EQ(rig_free(&r, r.m.addr[i]), 0);
	size_t big = r.h.tab.cap;
	heap_trim(&r.h);
	EXPECT_TRUE(r.h.tab.old != NULL);
	EXPECT_TRUE(r.h.tab.cap < big);
	check_full(&r);
	size_t steps = 0;
	while (!heap_step(&r.h, 4096))
		steps++;
	EXPECT_TRUE(steps > 10);
	EXPECT_TRUE(r.h.tab.old == NULL);
	check_full(&r);
	rig_close(&r);
	free(pool);
}
END_TEST

START_TEST(test_memory)
{
	uint64_t pool[4096];
	struct rig r;

	for (size_t i = 0; i < 4096; i++)
		pool[i] = 0x100000 + 32 * i;
	rig_init(&r, pool, 4096, 0, 0);
	size_t m0 = heap_memory(&r.h);
	EXPECT_GT(m0, 0);
	EXPECT_GE(m0, r.h.tab.cap * sizeof(struct heap_block));

	/* Stacks cost their frames. */
	rig_define(&r, 1, 100);
	size_t m1 = heap_memory(&r.h);
	EXPECT_GE(m1, m0 + 100 * sizeof(uint64_t));
	rig_define(&r, 2, 50);
	size_t m2 = heap_memory(&r.h);
	EXPECT_GE(m2, m1 + 50 * sizeof(uint64_t));

	/* Blocks cost at least their slot, and more blocks never cost less. */
	size_t prev = m2;
	for (size_t i = 0; i < 4096; i++) {
		rig_alloc(&r, pool[i], 8, 1);
		size_t now = heap_memory(&r.h);
		EXPECT_GE(now, prev);
		EXPECT_GE(now, (i + 1) * sizeof(struct heap_block));
		prev = now;
	}
	EXPECT_GT(prev, m2);
	/* A big block's exact size costs something too. */
	rig_alloc(&r, pool[0], 9 * BIG, 1);
	EXPECT_GT(heap_memory(&r.h), prev);
	check_full(&r);
	rig_close(&r);
}
END_TEST

/* The stress pool: 1024 plain addresses, 128 groups of 16 close together,
 * and 64 groups of 16 that share a home slot in the first table. */
#define STRESS_POOL 4096

static void stress_pool(uint64_t *pool)
{
	size_t n = 0;

	for (uint64_t i = 0; i < 1024; i++)
		pool[n++] = UINT64_C(0x555555500000) + 48 * i;
	for (uint64_t g = 0; g < 128; g++)
		for (uint64_t k = 0; k < 16; k++)
			pool[n++] = UINT64_C(0x7f0000000000) + 0x1230 * g + k;
	uint64_t cursor = UINT64_C(0x10000000);
	for (uint64_t g = 0; g < 64; g++) {
		uint64_t first = cursor += 16;
		pool[n++] = first;
		for (uint64_t k = 1; k < 16; k++)
			pool[n++] = sharing_home(&cursor, first, 1024);
	}
	EXPECT_EQ(n, STRESS_POOL);
}

static uint64_t stress_size(struct rng *g)
{
	size_t r = rng_below(g, 1024);
	if (r < 2)
		return BIG + (rng_next(g) & ((UINT64_C(1) << 46) - 1));
	if (r < 4)
		return BIG - 1 - rng_below(g, 2);
	if (r < 20)
		return 0;
	return 1 + rng_below(g, 8192);
}

/* One random step; returns the pool index it touched. */
static size_t stress_step(struct rig *r, struct rng *g, unsigned alloc_pct)
{
	struct model *m = &r->m;
	size_t roll = rng_below(g, 1000), i;

	if (roll < 2) {
		rig_reset_peak(r);
		return rng_below(g, m->n);
	}
	if (roll < 6) {
		/* A replayed or reordered event: refused, nothing changes. */
		uint64_t seq = m->last_seq - (m->last_seq > 2 ? rng_below(g, 3) : 0);
		i = rng_below(g, m->n);
		if (roll & 1)
			EXPECT_INT_EQ(rig_alloc_at(r, seq, m->addr[i], 8, 1), -EBADMSG);
		else
			EXPECT_INT_EQ(rig_free_at(r, seq, m->addr[i]), -EBADMSG);
		return i;
	}
	uint64_t seq = m->last_seq + 1 + (rng_below(g, 16) == 0 ? rng_below(g, 1000) : 0);
	if (rng_below(g, 100) < alloc_pct) {
		i = rng_below(g, m->n);
		rig_alloc_at(r, seq, m->addr[i], stress_size(g), (uint32_t)rng_below(g, 65));
	} else {
		/* Mostly live blocks, so deletions dominate; some unknown frees. */
		if (m->nlive > 0 && rng_below(g, 8) != 0)
			i = m->live[rng_below(g, m->nlive)];
		else
			i = rng_below(g, m->n);
		rig_free_at(r, seq, m->addr[i]);
	}
	return i;
}

static void stress_check_step(const struct rig *r, struct rng *g, size_t i)
{
	check_counters(r);
	check_block(r, i);
	if (r->m.b[i].live)
		check_stack(r, r->m.b[i].stack);
	for (int k = 0; k < 4 && r->m.nlive > 0; k++)
		check_block(r, r->m.live[rng_below(g, r->m.nlive)]);
}

START_TEST(test_stress)
{
	uint64_t *pool = malloc(STRESS_POOL * sizeof(*pool));
	struct rng g = {0x5eed};
	struct rig r;

	EXPECT_TRUE(pool != NULL);
	stress_pool(pool);
	rig_init(&r, pool, STRESS_POOL, 0, 0);
	for (uint32_t id = 1; id <= 64; id++)
		rig_define(&r, id, 1 + id % 8);

	/* Phases that fill the pool and drain it again, so clusters form and
	 * fall apart many times over. The first fills settle near two thirds
	 * of the pool, which keeps the table just below its growth point and
	 * its load high; the later ones fill it further, past a doubling. */
	size_t max_live = 0, min_live_after_fill = SIZE_MAX, max_load = 0;
	for (int op = 0; op < 1000000; op++) {
		unsigned fill = op < 600000 ? 75 : 90;
		unsigned pct = (op / 50000) % 2 == 0 ? fill : 25;
		size_t i = stress_step(&r, &g, pct);
		stress_check_step(&r, &g, i);
		if (r.m.nlive > max_live)
			max_live = r.m.nlive;
		if (op > 50000 && r.m.nlive < min_live_after_fill)
			min_live_after_fill = r.m.nlive;
		if (r.h.count * 100 / r.h.tab.cap > max_load)
			max_load = r.h.count * 100 / r.h.tab.cap;
		if (op % 4096 == 4095)
			check_full(&r);
	}
	/* The run did what it was meant to: a table more than 60% full, a
	 * nearly full pool, and a nearly empty one. */
	EXPECT_GE(max_load, 60);
	EXPECT_GE(max_live, STRESS_POOL * 3 / 4);
	EXPECT_LE(min_live_after_fill, STRESS_POOL / 8);
	EXPECT_GT(r.m.replaced, 10000);
	EXPECT_GT(r.m.unknown_frees, 10000);
	check_full(&r);

	/* Drain in random order, then nothing may be left anywhere. */
	while (r.m.nlive > 0) {
		size_t i = r.m.live[rng_below(&g, r.m.nlive)];
		EXPECT_INT_EQ(rig_free(&r, r.m.addr[i]), 0);
		stress_check_step(&r, &g, i);
	}
	check_full(&r);
	EXPECT_EQ(r.h.count, 0);
	EXPECT_EQ(r.h.current, 0);
	EXPECT_EQ(r.h.nbig, 0);
	for (size_t i = 0; i < r.h.tab.cap; i++)
		EXPECT_EQ(heap_table_slot(&r.h.tab, i)->addr, 0);
	rig_close(&r);
	free(pool);
}
END_TEST

START_TEST(test_stress_small)
{
	/* A smaller pool, with everything compared after every step. */
	uint64_t pool[192];
	struct rng g = {0xfeed};
	struct rig r;
	size_t n = 0;

	for (uint64_t i = 0; i < 64; i++)
		pool[n++] = UINT64_C(0x555555600000) + 16 * i;
	for (uint64_t grp = 0; grp < 4; grp++)
		for (uint64_t k = 0; k < 16; k++)
			pool[n++] = UINT64_C(0x7f0000100000) + 0x40 * grp + k;
	uint64_t cursor = UINT64_C(0x300000);
	for (uint64_t grp = 0; grp < 4; grp++) {
		uint64_t first = cursor += 16;
		pool[n++] = first;
		for (uint64_t k = 1; k < 16; k++)
			pool[n++] = sharing_home(&cursor, first, 1024);
	}
	rig_init(&r, pool, n, 0, 0);
	for (uint32_t id = 1; id <= 64; id++)
		rig_define(&r, id, 1);
	for (int op = 0; op < 20000; op++) {
		stress_step(&r, &g, (op / 2000) % 2 == 0 ? 65 : 30);
		check_full(&r);
	}
	rig_close(&r);
}
END_TEST

START_TEST(test_stress_limits)
{
	/* The stress mix again, under both limits at once. */
	uint64_t *pool = malloc(STRESS_POOL * sizeof(*pool));
	struct rng g = {0x11111};
	struct rig r;

	EXPECT_TRUE(pool != NULL);
	stress_pool(pool);
	rig_init(&r, pool, STRESS_POOL, 1000, 40);
	for (uint32_t id = 1; id <= 64; id++)
		rig_define(&r, id, 2);
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_STACKS);
	for (int op = 0; op < 100000; op++) {
		size_t i = stress_step(&r, &g, (op / 8192) % 2 == 0 ? 70 : 30);
		stress_check_step(&r, &g, i);
		EXPECT_LE(r.h.count, 1000);
		if (op % 4096 == 4095)
			check_full(&r);
	}
	EXPECT_INT_EQ(r.h.limit_reached, HEAP_LIMIT_STACKS | HEAP_LIMIT_BLOCKS);
	check_full(&r);
	rig_close(&r);
	free(pool);
}
END_TEST

/* ---- a sampled process ---- */

#define SRATE    4096
#define SSTACKS  8
#define SPOOL    2048
#define SREPLACE 64 /* an allocation at a live address, one in this many */

struct sblock {
	int live;
	uint64_t size;
	uint32_t stack;
};

/* The estimates as sums of the formula's weights, and what was done. */
struct smodel {
	struct sblock b[SPOOL];
	long double bytes[SSTACKS + 1], count[SSTACKS + 1];
	long double total_allocs[SSTACKS + 1], total_bytes[SSTACKS + 1];
	long double current, blocks, allocations, frees, peak;
	size_t nlive;
};

static void sweight(uint64_t size, long double *wb, long double *wc)
{
	if (size == 0 || size >= 40 * (uint64_t)SRATE) {
		*wb = (long double)size;
		*wc = 1;
		return;
	}
	long double p = -expm1l(-(long double)size / SRATE);
	*wb = (long double)size / p;
	*wc = 1 / p;
}

static void smodel_release(struct smodel *m, size_t i, long double *wc)
{
	struct sblock *b = &m->b[i];
	long double wb;

	sweight(b->size, &wb, wc);
	m->bytes[b->stack] -= wb;
	m->count[b->stack] -= *wc;
	m->current -= wb;
	m->blocks -= *wc;
	b->live = 0;
	m->nlive--;
}

static uint64_t saddr(size_t i)
{
	return UINT64_C(0x7f0000000000) + (uint64_t)i * 48;
}

/* A figure agrees with its exact value to the rounding, plus what doubles
 * and the 2^-32 truncation add (far below it) and what the model's own sum
 * loses: long double keeps 64 bits, so a sum of 10^15 (the blocks of 1 TiB
 * add up to that) is off by up to 10^-4 an addition. */
static void sclose(const char *what, unsigned id, uint64_t got, long double want)
{
	EXPECT(fabsl((long double)got - want) <= 0.5L + 1e-3L + fabsl(want) * 1e-15L,
	       "%s (stack %u) is %" PRIu64 ", the weights add up to %.4Lf", what, id, got, want);
}

static void scheck(const struct heap *h, const struct smodel *m)
{
	EXPECT_EQ(h->count, m->nlive);
	sclose("current", 0, h->current, m->current);
	sclose("blocks", 0, h->blocks, m->blocks);
	sclose("allocations", 0, h->allocations, m->allocations);
	sclose("frees", 0, h->frees, m->frees);
	EXPECT(fabsl((long double)h->peak - m->peak) <= 1, "peak %" PRIu64 ", want %.4Lf", h->peak,
	       m->peak);
	EXPECT_GE(h->peak, h->current);
	for (uint32_t id = 0; id <= SSTACKS; id++) {
		const struct heap_stack *s = heap_stack_at(h, id);
		sclose("live_bytes", id, s->live_bytes, m->bytes[id]);
		sclose("live_count", id, s->live_count, m->count[id]);
		sclose("total_allocs", id, s->total_allocs, m->total_allocs[id]);
		sclose("total_bytes", id, s->total_bytes, m->total_bytes[id]);
	}
	for (size_t i = 0; i < SPOOL; i++) {
		uint64_t size;
		uint32_t stack;
		int rc = heap_lookup(h, saddr(i), &size, &stack);
		EXPECT_INT_EQ(rc, m->b[i].live ? 0 : -ENOENT);
		if (rc == 0) {
			EXPECT_EQ(size, m->b[i].size); /* the true size, not its weight */
			EXPECT_EQ(stack, m->b[i].stack);
		}
	}
}

START_TEST(test_sampled)
{
	/* Sizes around the rate and far from it, one in the side list. */
	static const uint64_t sizes[] = {1,          100,    1024,      SRATE / 4, SRATE - 1,
	                                 SRATE,      5000,   4 * SRATE, 16384 + 3, 39 * SRATE,
	                                 40 * SRATE, 300000, BIG + 5};
	static struct smodel m;
	struct heap h;
	struct rng g = {0x5a5a};
	uint64_t seq = 0, frames[2] = {0x401000, 0x402000};

	memset(&m, 0, sizeof m);
	heap_init(&h, 0, 0);
	heap_set_sampling(&h, SRATE);
	EXPECT_EQ(h.sample_bytes, SRATE);
	for (uint32_t id = 1; id <= SSTACKS; id++)
		EXPECT_INT_EQ(heap_define_stack(&h, id, frames, 2), 0);
	for (int op = 0; op < 200000; op++) {
		size_t i = rng_below(&g, SPOOL);
		struct proto_event ev = {.seq = ++seq, .addr = saddr(i)};
		long double wb, wc;

		if (m.b[i].live && rng_below(&g, SREPLACE) != 0) {
			ev.kind = PROTO_EV_FREE;
			EXPECT_INT_EQ(heap_apply(&h, &ev), 0);
			smodel_release(&m, i, &wc);
			m.frees += wc;
		} else {
			ev.kind = PROTO_EV_ALLOC;
			ev.size = sizes[rng_below(&g, sizeof sizes / sizeof sizes[0])];
			ev.stack_id = (uint32_t)rng_below(&g, SSTACKS + 1);
			EXPECT_INT_EQ(heap_apply(&h, &ev), 0);
			if (m.b[i].live)
				smodel_release(&m, i, &wc); /* replaced, no free */
			sweight(ev.size, &wb, &wc);
			m.b[i] = (struct sblock){1, ev.size, ev.stack_id};
			m.nlive++;
			m.bytes[ev.stack_id] += wb;
			m.count[ev.stack_id] += wc;
			m.total_allocs[ev.stack_id] += wc;
			m.total_bytes[ev.stack_id] += wb;
			m.current += wb;
			m.blocks += wc;
			m.allocations += wc;
			/* The heap's peak is the highest rounded current. */
			if (roundl(m.current) > m.peak)
				m.peak = roundl(m.current);
		}
		if (op % 5000 == 0)
			scheck(&h, &m);
	}
	scheck(&h, &m);
	EXPECT_GT(m.nlive, SPOOL / 4);

	/* Every free subtracts exactly what its allocation added. */
	for (size_t i = 0; i < SPOOL; i++) {
		if (!m.b[i].live)
			continue;
		struct proto_event ev = {.seq = ++seq, .addr = saddr(i), .kind = PROTO_EV_FREE};
		EXPECT_INT_EQ(heap_apply(&h, &ev), 0);
		m.b[i].live = 0;
	}
	EXPECT_EQ(h.count, 0);
	EXPECT_EQ(h.current, 0);
	EXPECT_EQ(h.current_frac, 0);
	EXPECT_EQ(h.blocks, 0);
	EXPECT_EQ(h.blocks_frac, 0);
	for (uint32_t id = 0; id <= SSTACKS; id++) {
		const struct heap_stack *s = heap_stack_at(&h, id);
		EXPECT_EQ(s->live_bytes | s->live_count | s->live_bytes_frac | s->live_count_frac,
		          0);
	}
	heap_close(&h);
}
END_TEST

/* ---- copies: fork images (heap_clone) and frozen views (heap_view_take) ---- */

static void model_copy(struct model *dst, const struct model *src)
{
	size_t cap = src->n ? src->n : 1;

	*dst = *src;
	dst->addr = malloc(cap * sizeof(*dst->addr));
	dst->b = malloc(cap * sizeof(*dst->b));
	dst->live = malloc(cap * sizeof(*dst->live));
	dst->live_pos = malloc(cap * sizeof(*dst->live_pos));
	EXPECT_TRUE(dst->addr != NULL && dst->b != NULL && dst->live != NULL &&
	            dst->live_pos != NULL);
	memcpy(dst->addr, src->addr, cap * sizeof(*dst->addr));
	memcpy(dst->b, src->b, cap * sizeof(*dst->b));
	memcpy(dst->live, src->live, cap * sizeof(*dst->live));
	memcpy(dst->live_pos, src->live_pos, cap * sizeof(*dst->live_pos));
}

/* A view with the model of the moment it was taken. */
struct frozen {
	struct heap_view v;
	struct model m;
};

/* Order-free digest of a set of blocks, to compare what a thread saw. */
struct digest {
	size_t count;
	uint64_t bytes, mix;
};

static void digest_add(void *arg, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct digest *d = arg;
	uint64_t x = addr * UINT64_C(0x9e3779b97f4a7c15) ^ size * UINT64_C(0xc2b2ae3d27d4eb4f) ^
	             (uint64_t)stack << 40;
	d->count++;
	d->bytes += size;
	d->mix += x ^ (x >> 29);
}

static struct digest model_digest(const struct model *m)
{
	struct digest d = {0};
	for (size_t k = 0; k < m->nlive; k++) {
		const struct mblock *b = &m->b[m->live[k]];
		digest_add(&d, m->addr[m->live[k]], b->size, b->stack);
	}
	return d;
}

static void check_view(const struct frozen *f)
{
	struct visit v = {.m = &f->m, .seen = calloc(f->m.n ? f->m.n : 1, 1)};

	EXPECT_TRUE(v.seen != NULL);
	heap_view_foreach(&f->v, visit_block, &v);
	EXPECT_EQ(v.count, f->m.nlive);
	EXPECT_EQ(v.bytes, f->m.current);
	free(v.seen);
}

struct reader {
	struct frozen *f;
	struct digest got;
};

/* A worker's part: read the view, then give it back. */
static void *read_and_close(void *arg)
{
	struct reader *r = arg;
	heap_view_foreach(&r->f->v, digest_add, &r->got);
	heap_view_close(&r->f->v);
	return NULL;
}

#define COPIES_POOL  150000
#define COPIES_KEEP  3
#define COPIES_STEPS 900000

/*
 * A fork image and a capture's view are the heap as it was at one moment,
 * however the heap changes afterwards, and the heap is unchanged by them:
 * with up to three clones and three views open at once (sharing the
 * table's chunks with the heap and with each other), the heap, each clone
 * (itself driven on by events of its own) and each view are compared with
 * models copied at the moment of the copy. The pool is large enough for a
 * table of many chunks that grows in steps while copies are open, and
 * views are also read and closed on another thread while the heap writes.
 */
START_TEST(test_copies_frozen)
{
	uint64_t *pool = malloc(COPIES_POOL * sizeof(*pool));
	struct rng g = {0xc0b1e5};
	struct rig r, *clones[COPIES_KEEP] = {0};
	struct frozen *views[COPIES_KEEP] = {0};
	size_t nclones = 0, nviews = 0, threads = 0, grew_open = 0;

	EXPECT_TRUE(pool != NULL);
	for (size_t i = 0; i < COPIES_POOL; i++)
		pool[i] = UINT64_C(0x7f0000000000) + 32 * (uint64_t)i;
	rig_init(&r, pool, COPIES_POOL, 0, 0);
	for (uint32_t id = 1; id <= 64; id++)
		rig_define(&r, id, 1 + id % 8);
	for (int op = 0; op < COPIES_STEPS; op++) {
		unsigned pct = (op / 100000) % 2 == 0 ? 80 : 30;
		size_t cap = r.h.tab.cap;
		stress_step(&r, &g, pct);
		if (r.h.tab.cap != cap && (nclones > 0 || nviews > 0))
			grew_open++;
		/* Each open clone goes on by events of its own. */
		for (size_t c = 0; c < nclones; c++)
			stress_step(clones[c], &g, pct);
		if (op % 30011 == 30010) {
			/* A fork: the oldest clone is checked and goes. */
			if (nclones == COPIES_KEEP) {
				check_full(clones[0]);
				rig_close(clones[0]);
				free(clones[0]);
				memmove(clones, clones + 1, --nclones * sizeof(*clones));
			}
			struct rig *c = malloc(sizeof(*c));
			EXPECT_TRUE(c != NULL);
			heap_clone(&c->h, &r.h);
			model_copy(&c->m, &r.m);
			check_full(c);
			clones[nclones++] = c;
		}
		if (op % 20011 == 20010) {
			/* A capture: the oldest view is read (here, or on a
			 * thread while the heap goes on) and goes. */
			if (nviews == COPIES_KEEP) {
				struct frozen *f = views[0];
				if (threads % 2 == 0) {
					check_view(f);
					heap_view_close(&f->v);
				} else {
					struct reader rd = {.f = f};
					pthread_t th;
					EXPECT_INT_EQ(
					    pthread_create(&th, NULL, read_and_close, &rd), 0);
					for (int k = 0; k < 20000; k++)
						stress_step(&r, &g, pct);
					EXPECT_INT_EQ(pthread_join(th, NULL), 0);
					struct digest want = model_digest(&f->m);
					EXPECT_EQ(rd.got.count, want.count);
					EXPECT_EQ(rd.got.bytes, want.bytes);
					EXPECT_EQ(rd.got.mix, want.mix);
				}
				threads++;
				model_close(&f->m);
				free(f);
				memmove(views, views + 1, --nviews * sizeof(*views));
			}
			struct frozen *f = malloc(sizeof(*f));
			EXPECT_TRUE(f != NULL);
			heap_view_take(&r.h, &f->v, true);
			model_copy(&f->m, &r.m);
			views[nviews++] = f;
		}
		if (op % 65536 == 65535) {
			check_full(&r);
			for (size_t k = 0; k < nviews; k++)
				check_view(views[k]);
		}
	}
	/* The run did what it was meant to: copies open while the table
	 * grew, and views read on both sides. */
	EXPECT_GT(grew_open, 0);
	EXPECT_GE(threads, 10);
	EXPECT_GT(r.h.tab.cap, 16 * HEAP_CHUNK);
	check_full(&r);
	for (size_t k = 0; k < nviews; k++) {
		check_view(views[k]);
		heap_view_close(&views[k]->v);
		model_close(&views[k]->m);
		free(views[k]);
	}
	for (size_t c = 0; c < nclones; c++) {
		check_full(clones[c]);
		rig_close(clones[c]);
		free(clones[c]);
	}
	/* The heap alone again, after every copy went. */
	check_full(&r);
	rig_close(&r);
	free(pool);
}
END_TEST

/* ---- copies of the stacks: shared chunks, each copy its own stacks ---- */

#define SC_IDS 12000 /* stack ids followed: chunks 0 .. 11 */

/* What one heap's stacks must read: per id, defined, the frames' seed and
 * length, and the statistics (no sampling: exact counts). */
struct sc_model {
	uint8_t defined[SC_IDS];
	uint32_t seed[SC_IDS], nframes[SC_IDS];
	uint64_t live_bytes[SC_IDS], live_count[SC_IDS], total_allocs[SC_IDS], total_bytes[SC_IDS];
	uint64_t seq;
};

static uint64_t sc_frame(uint32_t seed, uint32_t i)
{
	return 0x400000 + (uint64_t)seed * 4096 + i;
}

static void sc_define(struct heap *h, struct sc_model *m, uint32_t id, uint32_t seed)
{
	uint64_t f[PROTO_MAX_FRAMES];
	uint32_t n = 1 + (id + seed) % 32;
	for (uint32_t i = 0; i < n; i++)
		f[i] = sc_frame(seed, i);
	EXPECT_INT_EQ(heap_define_stack(h, id, f, n), 0);
	m->defined[id] = 1;
	m->seed[id] = seed;
	m->nframes[id] = n;
}

/* Block `addr` of `size` on stack id; addresses are unique per call site. */
static void sc_alloc(struct heap *h, struct sc_model *m, uint64_t addr, uint64_t size, uint32_t id)
{
	struct proto_event ev = {
	    .seq = ++m->seq, .addr = addr, .size = size, .stack_id = id, .kind = PROTO_EV_ALLOC};
	EXPECT_INT_EQ(heap_apply(h, &ev), 0);
	m->live_bytes[id] += size;
	m->live_count[id]++;
	m->total_allocs[id]++;
	m->total_bytes[id] += size;
}

static void sc_free(struct heap *h, struct sc_model *m, uint64_t addr, uint64_t size, uint32_t id)
{
	struct proto_event ev = {.seq = ++m->seq, .addr = addr, .kind = PROTO_EV_FREE};
	EXPECT_INT_EQ(heap_apply(h, &ev), 0);
	m->live_bytes[id] -= size;
	m->live_count[id]--;
}

static void sc_check(const struct heap *h, const struct sc_model *m)
{
	for (uint32_t id = 1; id < SC_IDS; id++) {
		const struct heap_stack *s = heap_stack_at(h, id);
		EXPECT(s->defined == m->defined[id], "stack %u defined %u", id, s->defined);
		EXPECT_EQ(s->live_bytes, m->live_bytes[id]);
		EXPECT_EQ(s->live_count, m->live_count[id]);
		EXPECT_EQ(s->total_allocs, m->total_allocs[id]);
		EXPECT_EQ(s->total_bytes, m->total_bytes[id]);
		if (!m->defined[id])
			continue;
		EXPECT_EQ(s->nframes, m->nframes[id]);
		for (uint32_t i = 0; i < s->nframes; i++)
			EXPECT_EQ(s->frames[i], sc_frame(m->seed[id], i));
	}
}

/* Block k of stack id in the parent's first allocations. */
static uint64_t sc_addr(uint32_t id, uint32_t k)
{
	return 0x10000000 + ((uint64_t)id * 4 + k) * 64;
}

/*
 * A fork image shares the stacks' chunks (the same statistics in memory,
 * no copy) until one side writes a chunk, and every copy keeps exactly the
 * stacks of its moment whatever the other does: events on the stacks,
 * new stacks that grow the array (to ids in chunks the copy never had),
 * stacks defined again at the same ids in the child with other frames, a
 * trim, and either side closed first (the frames are the chunks' to give
 * back: the sanitizers' build sees a use after free or a leak).
 */
START_TEST(test_copies_stacks)
{
	static struct sc_model mp, mc;
	for (int order = 0; order < 2; order++) {
		struct heap p, c;
		memset(&mp, 0, sizeof(mp));
		heap_init_keyed(&p, 0, 0, TEST_KEY);
		for (uint32_t id = 1; id <= 5000; id++) {
			sc_define(&p, &mp, id, id);
			sc_alloc(&p, &mp, sc_addr(id, 0), 16 + id, id);
			if (id % 3 == 0)
				sc_alloc(&p, &mp, sc_addr(id, 1), 7, id);
		}
		EXPECT_EQ(p.nstacks, 8192);
		sc_check(&p, &mp);

		heap_clone(&c, &p);
		mc = mp;
		sc_check(&c, &mc);
		EXPECT_EQ(heap_memory(&c), heap_memory(&p));
		/* Shared, not copied: each stack is the parent's own. */
		for (uint32_t id = 0; id < 8192; id += 97)
			EXPECT_TRUE(heap_stack_at(&c, id) == heap_stack_at(&p, id));

		/* The parent writes chunks 0 and 2, and grows past 8192. */
		sc_alloc(&p, &mp, 0x90000000, 100, 1);
		sc_free(&p, &mp, sc_addr(3000, 0), 16 + 3000, 3000);
		for (uint32_t id = 5001; id <= 9000; id++)
			sc_define(&p, &mp, id, id);
		sc_alloc(&p, &mp, 0x90001000, 5, 8999);
		EXPECT_EQ(p.nstacks, 16384);
		/* The child writes chunk 1 and defines its own 5001.. */
		sc_alloc(&c, &mc, 0xa0000000, 33, 2000);
		sc_free(&c, &mc, sc_addr(1500, 0), 16 + 1500, 1500);
		for (uint32_t id = 5001; id <= 5100; id++) {
			sc_define(&c, &mc, id, id + 100000);
			sc_alloc(&c, &mc, 0xa0100000 + id * 64, 3, id);
		}
		sc_check(&p, &mp);
		sc_check(&c, &mc);
		EXPECT_TRUE(heap_stack_at(&c, 1) != heap_stack_at(&p, 1));
		EXPECT_TRUE(heap_stack_at(&c, 1100) != heap_stack_at(&p, 1100));
		/* Chunk 3 (ids 3072 .. 4095): nobody wrote it, still one. */
		EXPECT_TRUE(heap_stack_at(&c, 3500) == heap_stack_at(&p, 3500));

		/* A second image, of the parent as it is now, then a trim of
		 * the child: the frames of its stacks with nothing live go,
		 * not the parent's nor the image's. */
		struct heap img;
		static struct sc_model mi;
		heap_clone(&img, &p);
		mi = mp;
		heap_trim(&c);
		while (!heap_step(&c, 4096))
			;
		for (uint32_t id = 1; id < SC_IDS; id++)
			if (mc.live_count[id] == 0)
				EXPECT_TRUE(heap_stack_at(&c, id)->frames == NULL);
		sc_check(&p, &mp);
		sc_check(&img, &mi);
		sc_alloc(&p, &mp, 0x90002000, 9, 4000);
		sc_check(&img, &mi);

		if (order == 0) {
			heap_close(&p);
			sc_check(&img, &mi);
			heap_close(&img);
		} else {
			heap_close(&img);
			heap_close(&c);
			sc_check(&p, &mp);
			heap_close(&p);
			continue;
		}
		/* The child's live stacks, whose frames the parent defined,
		 * outlive it. */
		for (uint32_t id = 1; id < SC_IDS; id++) {
			if (mc.live_count[id] == 0)
				continue;
			const struct heap_stack *s = heap_stack_at(&c, id);
			EXPECT_EQ(s->nframes, mc.nframes[id]);
			for (uint32_t i = 0; i < s->nframes; i++)
				EXPECT_EQ(s->frames[i], sc_frame(mc.seed[id], i));
			EXPECT_EQ(s->live_bytes, mc.live_bytes[id]);
		}
		heap_close(&c);
	}
}
END_TEST

/* ---- grants of a bound shared with other heaps (heap_charge_to) ---- */

/* The owner's books: what it granted, against its own bound. */
struct owner {
	long blocks, stacks, max_blocks, max_stacks;
	int refusals;
};

static int owner_charge(void *arg, enum heap_charged what, long n, bool force)
{
	struct owner *o = arg;
	long *held = what == HEAP_CHARGED_BLOCKS ? &o->blocks : &o->stacks;
	long max = what == HEAP_CHARGED_BLOCKS ? o->max_blocks : o->max_stacks;
	if (n > 0 && !force && *held + n > max) {
		o->refusals++;
		return -EDQUOT;
	}
	*held += n;
	ck_assert_int_ge(*held, 0);
	return 0;
}

static int put_block(struct heap *h, uint64_t *seq, uint64_t addr, uint32_t stack)
{
	struct proto_event ev = {
	    .seq = ++*seq, .addr = addr, .size = 8, .stack_id = stack, .kind = PROTO_EV_ALLOC};
	return heap_apply(h, &ev);
}

static int drop_block(struct heap *h, uint64_t *seq, uint64_t addr)
{
	struct proto_event ev = {.seq = ++*seq, .addr = addr, .kind = PROTO_EV_FREE};
	return heap_apply(h, &ev);
}

/* Two heaps share one owner's bound of 3 grants of blocks and 2 of
 * stacks: together they never hold more, what is refused is said in
 * limit_reached and not tracked, frees and closes give grants back, a
 * clone is charged to nobody until heap_charge_to charges it what it
 * holds (past the bound if it must). */
START_TEST(test_charge_grants)
{
	struct owner o = {.max_blocks = 3 * (long)HEAP_GRANT_BLOCKS,
	                  .max_stacks = 2 * (long)HEAP_GRANT_STACKS};
	struct heap a, b, c;
	uint64_t sa = 0, sb = 0;
	const size_t g = HEAP_GRANT_BLOCKS;

	heap_init(&a, 0, 0);
	heap_init(&b, 0, 0);
	heap_charge_to(&a, owner_charge, &o);
	heap_charge_to(&b, owner_charge, &o);
	ck_assert_int_eq(o.blocks, 0);
	/* a takes two grants' worth and one block; b the rest */
	for (uint64_t i = 0; i < 2 * g + 1; i++)
		ck_assert_int_eq(put_block(&a, &sa, 0x10000 + i * 16, 0), 0);
	ck_assert_int_eq(o.blocks, 3 * (long)g);
	ck_assert_int_eq(a.limit_reached, 0);
	ck_assert_int_eq(put_block(&b, &sb, 0x10000, 0), 0);
	ck_assert_uint_eq(b.count, 0);
	ck_assert_int_eq(b.limit_reached, HEAP_LIMIT_BLOCKS);
	ck_assert_int_eq(o.refusals, 1);
	/* a fills its last grant, then is refused too */
	for (uint64_t i = 2 * g + 1; i < 3 * g + 5; i++)
		ck_assert_int_eq(put_block(&a, &sa, 0x10000 + i * 16, 0), 0);
	ck_assert_uint_eq(a.count, 3 * g);
	ck_assert_int_eq(a.limit_reached, HEAP_LIMIT_BLOCKS);
	ck_assert_int_eq(o.blocks, 3 * (long)g);
	/* a frees down to g - 1 blocks: it keeps a spare grant, gives the rest */
	for (uint64_t i = g - 1; i < 3 * g; i++)
		ck_assert_int_eq(drop_block(&a, &sa, 0x10000 + i * 16), 0);
	ck_assert_uint_eq(a.count, g - 1);
	ck_assert_int_le(o.blocks, 2 * (long)g);
	ck_assert_int_ge(o.blocks, (long)g);
	/* now b gets a grant */
	ck_assert_int_eq(put_block(&b, &sb, 0x20000, 0), 0);
	ck_assert_uint_eq(b.count, 1);

	/* stacks: 2 grants in all */
	uint64_t frame = 0x400000;
	uint32_t id;
	for (id = 1; id <= 2 * HEAP_GRANT_STACKS + 10; id++)
		ck_assert_int_eq(heap_define_stack(&a, id, &frame, 1), 0);
	ck_assert_uint_eq(a.ndefined, 2 * HEAP_GRANT_STACKS);
	ck_assert_int_eq(o.stacks, 2 * (long)HEAP_GRANT_STACKS);
	ck_assert(a.limit_reached & HEAP_LIMIT_STACKS);
	ck_assert_int_eq(heap_define_stack(&b, 1, &frame, 1), 0);
	ck_assert_uint_eq(b.ndefined, 0);

	/* a clone is nobody's until charged, then charged what it holds */
	long before = o.blocks;
	heap_clone(&c, &a);
	ck_assert_int_eq(o.blocks, before);
	heap_charge_to(&c, owner_charge, &o);
	ck_assert_int_eq(o.blocks, before + (long)g);            /* g - 1 blocks: a grant */
	ck_assert_int_eq(o.stacks, 4 * (long)HEAP_GRANT_STACKS); /* past the bound */
	ck_assert_int_eq(put_block(&c, &sa, 0x90000, 0), 0);     /* within its grant */
	ck_assert_uint_eq(c.count, g);
	ck_assert_int_eq(put_block(&c, &sa, 0x90010, 0), 0); /* a new grant: refused */
	ck_assert_uint_eq(c.count, g);
	heap_close(&c);
	heap_close(&a);
	ck_assert_int_eq(o.stacks, 0);
	heap_close(&b);
	ck_assert_int_eq(o.blocks, 0);
}
END_TEST

/* heap_trim lets go of the frames of 200,000 stacks that never allocated a
 * step at a time (HEAP_TRIM_STEP stacks a heap_step), not in one call;
 * when done, the live stacks are whole and the ids past the last live one
 * are gone. */
START_TEST(test_trim_steps)
{
	struct heap h;
	const uint32_t n = 200000;
	uint64_t seq = 0;

	heap_init(&h, 0, 0);
	for (uint32_t id = 1; id <= n; id++) {
		uint64_t f[2] = {0x400000 + id, 0x500000};
		ck_assert_int_eq(heap_define_stack(&h, id, f, 2), 0);
	}
	/* live blocks on stacks 7 and 150,000 only; stack 9 allocated a block
	 * that is freed: its allocations are statistics still */
	ck_assert_int_eq(put_block(&h, &seq, 0x1000, 7), 0);
	ck_assert_int_eq(put_block(&h, &seq, 0x2000, 150000), 0);
	ck_assert_int_eq(put_block(&h, &seq, 0x3000, 9), 0);
	struct proto_event fr = {.seq = ++seq, .addr = 0x3000, .kind = PROTO_EV_FREE};
	ck_assert_int_eq(heap_apply(&h, &fr), 0);
	size_t before = h.frames_bytes;
	ck_assert_uint_eq(before, (size_t)n * 16);
	heap_trim(&h);
	ck_assert_uint_gt(h.frames_bytes, 48); /* not all at once */
	int steps = 0;
	while (!heap_step(&h, 4096))
		steps++;
	ck_assert_int_ge(steps, 1);
	ck_assert_uint_eq(h.frames_bytes, 48); /* the three that allocated */
	ck_assert_ptr_nonnull(heap_stack_at(&h, 9)->frames);
	ck_assert_uint_eq(heap_stack_at(&h, 9)->total_allocs, 1);
	ck_assert_ptr_nonnull(heap_stack_at(&h, 7)->frames);
	ck_assert_uint_eq(heap_stack_at(&h, 7)->frames[0], 0x400000 + 7);
	ck_assert_uint_eq(heap_stack_at(&h, 150000)->frames[0], 0x400000 + 150000);
	ck_assert_ptr_null(heap_stack_at(&h, 8)->frames);
	ck_assert_uint_le(h.nstacks, 150000 + HEAP_STACK_CHUNK);
	ck_assert(!heap_stack_at(&h, 190000)->defined);
	heap_close(&h);
}
END_TEST

Suite *heap_suite(void)
{
	Suite *s = suite_create("heap");
	TCase *tc;

	tc = tcase_create("model");
	tcase_add_test(tc, test_init_empty);
	tcase_add_test(tc, test_define_stack);
	tcase_add_test(tc, test_bookkeeping);
	tcase_add_test(tc, test_temporary_flag);
	tcase_add_test(tc, test_peak);
	tcase_add_test(tc, test_seq_order);
	tcase_add_test(tc, test_undefined_stack);
	tcase_add_test(tc, test_max_stacks);
	tcase_add_test(tc, test_max_blocks);
	tcase_add_test(tc, test_unknown_frees);
	tcase_add_test(tc, test_replaced);
	tcase_add_test(tc, test_big_sizes);
	tcase_add_test(tc, test_memory);
	suite_add_tcase(s, tc);

	tc = tcase_create("table");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_wrap_all_orders);
	tcase_add_test(tc, test_clusters_random);
	tcase_add_test(tc, test_growth);
	tcase_add_test(tc, test_growth_in_steps);
	tcase_add_test(tc, test_stress);
	tcase_add_test(tc, test_stress_small);
	tcase_add_test(tc, test_stress_limits);
	tcase_add_test(tc, test_sampled);
	tcase_add_test(tc, test_hostile_addresses);
	tcase_add_test(tc, test_hostile_big_sizes);
	tcase_add_test(tc, test_keys_differ);
	tcase_add_test(tc, test_copies_frozen);
	tcase_add_test(tc, test_copies_stacks);
	tcase_add_test(tc, test_charge_grants);
	tcase_add_test(tc, test_trim_steps);
	suite_add_tcase(s, tc);

	return s;
}
