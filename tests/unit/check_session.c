/*
 * check_session.c - the daemon's side of one traced process
 * (daemon/session.h): the decoder of its agent's stream, the module map,
 * and the heap it builds from the process's shared region.
 *
 * The tests play the agent: they write events into a real region (a sealed
 * memfd, testregion.h: records in two rings, stacks in the table, the lost
 * count and the exiting flag in the header), pass its descriptor to the
 * session as the connection would (session_pass_fd), and build streams with
 * proto/proto.h's encoders (HELLO, MODULE, MODULES_RESET, WAKE). What the
 * session built is compared with a reference model the test keeps from what
 * it wrote: a plain list of blocks (address, size, stack), per-stack
 * counters and totals updated by arithmetic, and a module list kept sorted
 * by hand. The model shares no code with heap.c, drain.c or session.c.
 *
 * Behaviours pinned:
 *  - a stream of HELLO, modules and WAKEs, with events written to the
 *    region before each WAKE, builds exactly the heap the events describe:
 *    every live block with its size and stack, current and peak,
 *    allocations, frees, frees of unknown blocks, allocations at a live
 *    address (the old block is gone), per-stack live and total counts, each
 *    stack defined from the table when first used, a block of 2 TiB kept
 *    exact; the region's lost count and exiting flag are the session's
 *    lost_events and bye; events counts the records applied, for the
 *    session and the daemon;
 *  - the same stream cut into pieces of any size, or written into the
 *    session's own read buffer as the daemon does, builds the same state;
 *    so does a HELLO of the largest size, whole or in two halves;
 *  - the identity comes from the kernel: for a process /proc can show, exe
 *    and cmdline are /proc's, whatever HELLO claims; HELLO's words are used
 *    only when /proc has nothing;
 *  - the module map: sorted by address, an object overlapping older ones
 *    replaces them, an identical one is kept once, an empty range is
 *    ignored; modmap_find finds the module holding an address;
 *  - order by sequence numbers: events are applied in increasing sequence
 *    across the rings (gaps allowed); a live drain stops at a number still
 *    in flight, the final drain (the process is gone) takes everything;
 *    session_trim gives back the region and the read buffer and keeps the
 *    statistics; nothing is drained before HELLO;
 *  - every malformed frame is refused: session_feed (or session_pass_fd)
 *    returns -EBADMSG with s->error set, and nothing the session shows
 *    (heap, counters, modules, identity) changes. The frames: anything
 *    before HELLO, a second HELLO, a truncated HELLO or one of another
 *    version, HELLO without a descriptor or with one that is not a proper
 *    region, a second descriptor, a descriptor after HELLO (closed), a
 *    truncated MODULE, bad headers (reserved field, type 0 or past the
 *    last, length over the limit), MODULES_RESET or WAKE with a payload,
 *    and more bytes at once than the read buffer holds. A region that
 *    breaks a rule on WAKE (a record naming a stack not in the table, a
 *    sequence number not above the last, a record of an unknown kind or at
 *    address 0, a ring claiming more records than it holds) breaks the
 *    session (s->broken), and nothing is drained from it again. Each bad
 *    record is the first new one, with a good one after it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "history.h"
#include "expect.h"
#include "proto.h"
#include "session.h"
#include "splitmix.h"
#include "suites.h"
#include "testregion.h"

#define EXPECT_SAME(a, b) EXPECT_EQ_AT(where, a, b)

/* ---- the stream under construction ---- */

struct wire {
	uint8_t *p;
	size_t n, cap;
};

static uint8_t *wire_room(struct wire *w, size_t n)
{
	if (w->cap - w->n < n) {
		while (w->cap - w->n < n)
			w->cap = w->cap ? w->cap * 2 : 4096;
		w->p = realloc(w->p, w->cap);
		ck_assert_ptr_nonnull(w->p);
	}
	return w->p + w->n;
}

static void wire_add(struct wire *w, ssize_t n)
{
	ck_assert_int_gt(n, 0);
	w->n += (size_t)n;
}

static void wire_free(struct wire *w)
{
	free(w->p);
	memset(w, 0, sizeof *w);
}

/* A frame with any type and payload, the header as proto_hdr_encode makes
 * it. */
static void wire_frame(struct wire *w, uint16_t type, const void *payload, uint32_t len)
{
	uint8_t *p = wire_room(w, PROTO_HDR_SIZE + len);
	proto_hdr_encode(p, type, len);
	if (len > 0)
		memcpy(p + PROTO_HDR_SIZE, payload, len);
	w->n += PROTO_HDR_SIZE + len;
}

/* ---- the reference model ---- */

#define MAX_STACK_ID 64
#define MAX_BLOCKS   4096
#define MAX_MODULES  32

struct m_block {
	uint64_t addr, size;
	uint32_t stack;
};

struct m_stack {
	bool in_table; /* written to the region's table */
	bool defined;  /* used by an event: the heap knows it */
	uint64_t frames[8];
	uint32_t nframes;
	uint64_t live_bytes, live_count, total_allocs, total_bytes;
};

struct m_module {
	uint64_t bias, lo, hi;
	char path[64];
	uint8_t build_id[20];
	uint32_t build_id_len;
};

struct model {
	bool hello, bye;
	uint32_t nframes, flags;
	uint64_t sample_bytes;
	char exe[PROTO_MAX_PATH + 1];
	char cmdline[PROTO_MAX_CMDLINE];
	size_t cmdline_len;
	uint64_t lost, events;
	uint64_t last_seq;
	struct m_block blocks[MAX_BLOCKS];
	size_t nblocks;
	struct m_stack stacks[MAX_STACK_ID + 1];
	uint64_t current, peak, allocations, frees, unknown_frees, replaced;
	struct m_module modules[MAX_MODULES];
	size_t nmodules;
};

static struct m_block *m_find(struct model *m, uint64_t addr)
{
	for (size_t i = 0; i < m->nblocks; i++)
		if (m->blocks[i].addr == addr)
			return &m->blocks[i];
	return NULL;
}

static void m_drop(struct model *m, struct m_block *b)
{
	struct m_stack *st = &m->stacks[b->stack];
	st->live_bytes -= b->size;
	st->live_count--;
	m->current -= b->size;
	*b = m->blocks[--m->nblocks];
}

static void model_init(struct model *m)
{
	memset(m, 0, sizeof *m);
	m->stacks[0].defined = true; /* id 0: the unknown stack */
}

/* ---- the session, the daemon around it, the process's region ---- */

static struct daemon D;
static struct session *S;
static struct testregion R;

static void session_setup(void)
{
	memset(&D, 0, sizeof D);
	S = session_new(&D);
	/* No process behind this session: /proc/0 does not exist, so its
	 * identity falls back to what HELLO says. */
	S->pid = 0;
	ck_assert_int_eq(testregion_create(&R, 1), 0);
	testregion_place(&R, 0, 0);
	testregion_place(&R, 1, 0);
	__atomic_store_n((uint32_t *)&testregion_header(&R)->nrings, 2, __ATOMIC_RELEASE);
}

static void session_teardown(void)
{
	session_unref(S);
	S = NULL;
	testregion_destroy(&R);
	drain_scratch_free(&D.drain_scratch);
	limit_close(&D.fork_images);
}

/* The connection passes the region's descriptor, as HELLO's comes. */
static void pass_region(void)
{
	ck_assert_int_eq(session_pass_fd(S, testregion_fd(&R)), 0);
}

static void assert_closed(int fd)
{
	errno = 0;
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
}

/* ---- building frames, region contents and the model together ---- */

static void send_hello(struct wire *w, struct model *m, const char *exe, const char *cmdline,
                       size_t cmdline_len)
{
	struct proto_hello h = {
	    .version = PROTO_VERSION,
	    .flags = PROTO_HELLO_FP | PROTO_HELLO_DROP,
	    .nframes = 24,
	    .pid = 4242,
	    .sample_bytes = 0,
	    .exe = exe,
	    .exe_len = (uint32_t)strlen(exe),
	    .cmdline = cmdline,
	    .cmdline_len = (uint32_t)cmdline_len,
	};
	size_t cap =
	    PROTO_HDR_SIZE + PROTO_HELLO_FIXED + 12 + h.exe_len + h.cmdline_len + h.started_len;
	wire_add(w, proto_hello_encode(wire_room(w, cap), cap, &h));
	m->hello = true;
	m->nframes = 24;
	m->flags = PROTO_HELLO_FP | PROTO_HELLO_DROP;
	m->sample_bytes = 0;
	snprintf(m->exe, sizeof m->exe, "%s", exe);
	memcpy(m->cmdline, cmdline, cmdline_len);
	m->cmdline_len = cmdline_len;
}

static void send_module(struct wire *w, struct model *m, uint64_t bias, uint64_t lo, uint64_t hi,
                        const char *path, uint8_t id_byte)
{
	uint8_t bid[20];
	memset(bid, id_byte, sizeof bid);
	struct proto_module pm = {
	    .bias = bias,
	    .lo = lo,
	    .hi = hi,
	    .build_id = bid,
	    .build_id_len = id_byte ? sizeof bid : 0,
	    .path = path,
	    .path_len = (uint32_t)strlen(path),
	};
	wire_add(w, proto_module_encode(wire_room(w, 1024), 1024, &pm));

	/* The model: empty ranges are nothing; an identical entry stays; else
	 * whatever the new range overlaps goes, and the new one is put in
	 * address order. */
	if (lo == hi)
		return;
	for (size_t i = 0; i < m->nmodules; i++) {
		struct m_module *e = &m->modules[i];
		if (e->lo == lo && e->hi == hi && e->bias == bias && strcmp(e->path, path) == 0)
			return;
	}
	size_t k = 0;
	for (size_t i = 0; i < m->nmodules; i++) {
		struct m_module *e = &m->modules[i];
		if (e->lo < hi && lo < e->hi)
			continue;
		m->modules[k++] = *e;
	}
	m->nmodules = k;
	ck_assert_uint_lt(m->nmodules, MAX_MODULES);
	size_t at = m->nmodules;
	for (size_t i = 0; i < m->nmodules; i++)
		if (m->modules[i].lo > lo) {
			at = i;
			break;
		}
	memmove(&m->modules[at + 1], &m->modules[at], (m->nmodules - at) * sizeof m->modules[0]);
	struct m_module *e = &m->modules[at];
	memset(e, 0, sizeof *e);
	e->bias = bias;
	e->lo = lo;
	e->hi = hi;
	snprintf(e->path, sizeof e->path, "%s", path);
	e->build_id_len = pm.build_id_len;
	memcpy(e->build_id, bid, pm.build_id_len);
	m->nmodules++;
}

static void send_wake(struct wire *w)
{
	wire_add(w, proto_empty_encode(wire_room(w, 64), 64, PROTO_WAKE));
}

/* The agent writes stack `id` into the region's table. */
static void put_stack(struct model *m, uint32_t id, const uint64_t *frames, uint32_t n)
{
	ck_assert_uint_le(id, MAX_STACK_ID);
	ck_assert_uint_le(n, 8);
	ck_assert_int_eq(testregion_stack(&R, id, frames, n), 0);
	m->stacks[id].in_table = true;
	memcpy(m->stacks[id].frames, frames, n * sizeof *frames);
	m->stacks[id].nframes = n;
}

/* Records go to ring 0 or 1: one per thread, two threads. The header's
 * counter moves past every number written. */
static void put_record(uint32_t ring, const struct shm_ev *e)
{
	struct shm_header *h = testregion_header(&R);
	uint64_t seq = e->seq_kind >> PROTO_EV_KIND_BITS;

	testregion_put(testregion_ring(&R, ring), e);
	if (__atomic_load_n((uint64_t *)&h->seq, __ATOMIC_RELAXED) <= seq)
		__atomic_store_n((uint64_t *)&h->seq, seq + 1, __ATOMIC_RELEASE);
}

static void put_alloc(struct model *m, uint32_t ring, uint64_t seq, uint64_t addr, uint64_t size,
                      uint32_t stack)
{
	struct shm_ev e = testregion_record(seq, PROTO_EV_ALLOC, addr, size, stack);
	put_record(ring, &e);
	ck_assert(stack == 0 || m->stacks[stack].in_table);
	m->stacks[stack].defined = true;
	m->last_seq = seq;
	m->events++;
	m->allocations++;
	m->stacks[stack].total_allocs++;
	m->stacks[stack].total_bytes += size;
	struct m_block *old = m_find(m, addr);
	if (old != NULL) {
		m->replaced++;
		m_drop(m, old);
	}
	ck_assert_uint_lt(m->nblocks, MAX_BLOCKS);
	m->blocks[m->nblocks++] = (struct m_block){addr, size, stack};
	m->stacks[stack].live_bytes += size;
	m->stacks[stack].live_count++;
	m->current += size;
	if (m->current > m->peak)
		m->peak = m->current;
}

static void put_free(struct model *m, uint32_t ring, uint64_t seq, uint64_t addr)
{
	struct shm_ev e = testregion_record(seq, PROTO_EV_FREE, addr, 0, 0);
	put_record(ring, &e);
	m->last_seq = seq;
	m->events++;
	struct m_block *b = m_find(m, addr);
	if (b == NULL) {
		m->unknown_frees++;
		return;
	}
	m->frees++;
	m_drop(m, b);
}

static void put_lost(struct model *m, uint64_t lost)
{
	__atomic_store_n((uint64_t *)&testregion_header(&R)->lost, lost, __ATOMIC_RELEASE);
	m->lost = lost;
}

static void put_exiting(struct model *m)
{
	__atomic_store_n((uint32_t *)&testregion_header(&R)->exiting, 1, __ATOMIC_RELEASE);
	m->bye = true;
}

/* ---- comparing the session with the model ---- */

struct visit {
	const struct model *m;
	size_t seen;
	bool bad;
	uint64_t bad_addr;
};

static void visit_block(void *arg, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct visit *v = arg;
	const struct m_block *b = m_find((struct model *)v->m, addr);
	v->seen++;
	if (b == NULL || b->size != size || b->stack != stack) {
		v->bad = true;
		v->bad_addr = addr;
	}
}

static void assert_session(const struct session *s, const struct model *m, const char *where)
{
	const struct heap *h = &s->heap;

	EXPECT_SAME(s->hello, m->hello);
	EXPECT_SAME(s->bye, m->bye);
	if (m->hello) {
		EXPECT_SAME(s->nframes, m->nframes);
		EXPECT_SAME(s->flags, m->flags);
		EXPECT_SAME(s->sample_bytes, m->sample_bytes);
		EXPECT(s->exe != NULL && strcmp(s->exe, m->exe) == 0,
		       "%s: exe is %.80s, expected %.80s", where, s->exe ? s->exe : "(null)",
		       m->exe);
		EXPECT_SAME(s->cmdline_len, m->cmdline_len);
		EXPECT(s->cmdline != NULL && memcmp(s->cmdline, m->cmdline, m->cmdline_len) == 0,
		       "%s: cmdline differs", where);
	}
	EXPECT_SAME(s->lost_events, m->lost);
	EXPECT_SAME(s->events, m->events);
	EXPECT_SAME(s->d->events_total, m->events);

	EXPECT_SAME(h->current, m->current);
	EXPECT_SAME(h->peak, m->peak);
	EXPECT_SAME(h->allocations, m->allocations);
	EXPECT_SAME(h->frees, m->frees);
	EXPECT_SAME(h->unknown_frees, m->unknown_frees);
	EXPECT_SAME(h->replaced, m->replaced);
	EXPECT_SAME(h->count, m->nblocks);
	EXPECT_SAME(h->last_seq, m->last_seq);
	for (size_t i = 0; i < m->nblocks; i++) {
		uint64_t size;
		uint32_t stack;
		const struct m_block *b = &m->blocks[i];
		EXPECT(heap_lookup(h, b->addr, &size, &stack) == 0, "%s: block %#jx not live",
		       where, (uintmax_t)b->addr);
		EXPECT(size == b->size && stack == b->stack,
		       "%s: block %#jx is %ju bytes at stack %u, expected %ju at %u", where,
		       (uintmax_t)b->addr, (uintmax_t)size, stack, (uintmax_t)b->size, b->stack);
	}
	struct visit v = {.m = m};
	heap_foreach(h, visit_block, &v);
	EXPECT(!v.bad, "%s: heap holds block %#jx the events do not", where, (uintmax_t)v.bad_addr);
	EXPECT_SAME(v.seen, m->nblocks);

	uint32_t ndefined = 0;
	for (uint32_t id = 0; id <= MAX_STACK_ID; id++) {
		const struct m_stack *ms = &m->stacks[id];
		if (!ms->defined) {
			EXPECT(id >= h->nstacks || !heap_stack_at(h, id)->defined,
			       "%s: stack %u defined, never used", where, id);
			continue;
		}
		ndefined += id != 0;
		ck_assert_uint_lt(id, h->nstacks);
		const struct heap_stack *hs = heap_stack_at(h, id);
		EXPECT(hs->defined, "%s: stack %u not defined", where, id);
		EXPECT_SAME(hs->nframes, ms->nframes);
		EXPECT(ms->nframes == 0 ||
		           memcmp(hs->frames, ms->frames, ms->nframes * sizeof(uint64_t)) == 0,
		       "%s: stack %u has other frames", where, id);
		EXPECT_SAME(hs->live_bytes, ms->live_bytes);
		EXPECT_SAME(hs->live_count, ms->live_count);
		EXPECT_SAME(hs->total_allocs, ms->total_allocs);
		EXPECT_SAME(hs->total_bytes, ms->total_bytes);
	}
	EXPECT_SAME(h->ndefined, ndefined);

	EXPECT_SAME(s->modules.n, m->nmodules);
	struct modmap_entry *mods = modmap_array(&s->modules);
	for (size_t i = 0; i < m->nmodules && i < s->modules.n; i++) {
		const struct modmap_entry *e = &mods[i];
		const struct m_module *x = &m->modules[i];
		EXPECT(e->lo == x->lo && e->hi == x->hi && e->bias == x->bias &&
		           strcmp(e->path, x->path) == 0 && e->build_id_len == x->build_id_len &&
		           memcmp(e->build_id, x->build_id, x->build_id_len) == 0,
		       "%s: module %zu is %s [%#jx, %#jx), expected %s [%#jx, %#jx)", where, i,
		       e->path, (uintmax_t)e->lo, (uintmax_t)e->hi, x->path, (uintmax_t)x->lo,
		       (uintmax_t)x->hi);
	}
	modmap_array_free(mods, s->modules.n);
}

static void feed_ok(struct session *s, const struct wire *w, size_t from, const char *where)
{
	int rc = session_feed(s, w->p + from, w->n - from);
	EXPECT(rc == 0, "%s: session_feed = %d (%s)", where, rc, s->error ? s->error : "");
	EXPECT(s->error == NULL, "%s: error set: %s", where, s->error);
	/* A drain stops after its slice of time (a loaded machine may preempt
	 * the test for longer): the daemon's timer reads the rest, as here. */
	for (int i = 0; i < 10000 && s->drain.cut && s->error == NULL; i++)
		session_drain(s, false);
}

/* ---- a workload ---- */

#define POOL 300 /* addresses the workload uses */

static uint64_t pool_addr(size_t i)
{
	return UINT64_C(0x7f0000000000) + (uint64_t)i * 48;
}

/* Called after each frame of a workload, when the model describes every
 * frame built (and every record written) so far. */
typedef void (*frame_done_fn)(const struct wire *w, const struct model *m);

/* The life of a traced process: HELLO, a few modules, then `nbatches`
 * batches of random allocations, frees, frees of blocks never allocated,
 * reallocations at live addresses and allocations of unknown stack, written
 * to the region's two rings, each followed by a WAKE; stacks 1..20 come
 * into the table before their first use. Lost events in the middle, the
 * exiting flag at the end. */
static void build_workload(struct wire *w, struct model *m, int nbatches, uint64_t seed,
                           frame_done_fn done)
{
	struct rng rnd = {seed};
	uint64_t seq = 0;
	uint32_t defined = 0;

#define FRAME_DONE()                                                                               \
	do {                                                                                       \
		if (done != NULL)                                                                  \
			done(w, m);                                                                \
	} while (0)
	send_hello(w, m, "/usr/bin/traced", "traced\0--flag\0", 14);
	FRAME_DONE();
	send_module(w, m, 0x400000, 0x400000, 0x480000, "/usr/bin/traced", 0xab);
	FRAME_DONE();
	send_module(w, m, 0x7f1000000000, 0x7f1000001000, 0x7f1000200000, "/lib/libc.so.6", 0xcd);
	send_module(w, m, 0, 0x7ffff7fc0000, 0x7ffff7ff0000, "", 0);
	FRAME_DONE();
	for (int f = 0; f < nbatches; f++) {
		/* New stacks become usable in this batch. */
		while (defined < 20 && defined < (uint32_t)(f + 1) * 4) {
			uint64_t frames[8];
			uint32_t n = 1 + defined % 8;
			defined++;
			for (uint32_t i = 0; i < n; i++)
				frames[i] = 0x401000 + defined * 0x100 + i * 8;
			put_stack(m, defined, frames, n);
		}
		int nev = 1 + (int)(rng_next(&rnd) % 120);
		for (int e = 0; e < nev; e++) {
			uint64_t r = rng_next(&rnd);
			uint64_t addr = pool_addr(r % POOL);
			uint32_t ring = (uint32_t)(r >> 63);
			seq += 1 + (r >> 60) % 3; /* gaps, as after lost events */
			switch ((r >> 8) % 8) {
			case 0: /* allocation of unknown stack */
				put_alloc(m, ring, seq, addr, 1 + (r >> 20) % 5000, 0);
				break;
			case 1:
			case 2: /* free, known or not */
				put_free(m, ring, seq, addr);
				break;
			default: /* allocation, perhaps at a live address */
				put_alloc(m, ring, seq, addr, 1 + (r >> 20) % 100000,
				          1 + (uint32_t)((r >> 40) % defined));
				break;
			}
		}
		if (f == nbatches / 2) /* one block larger than the packed size */
			put_alloc(m, 0, ++seq, pool_addr(POOL + 1), UINT64_C(2) << 40, 1);
		if (f == nbatches / 3)
			put_lost(m, 17);
		if (f == nbatches - 1) {
			put_lost(m, 40);
			put_exiting(m);
		}
		send_wake(w);
		FRAME_DONE();
	}
#undef FRAME_DONE
}

/* ---- tests: building the heap ---- */

/* Feeds what was built since the last call and compares. */
static size_t fed;

/* What a WAKE's read left for the timer, read now. A WAKE's read stops
 * after SESSION_SLICE_MS (session_drain), which a loaded machine or a
 * sanitizer reaches; the daemon's timer then reads the rest, and so must
 * the tests that compare the whole model after their feeds. */
static void read_rest(void)
{
	for (int i = 0; i < 1000 && session_drain_until(S, false, 0); i++)
		;
}

static void feed_and_compare(const struct wire *w, const struct model *m)
{
	char where[64];

	snprintf(where, sizeof where, "after the frame ending at byte %zu", w->n);
	feed_ok(S, w, fed, where);
	fed = w->n;
	read_rest();
	assert_session(S, m, where);
}

START_TEST(test_session_builds_heap_wake_by_wake)
{
	struct wire w = {0};
	static struct model m;

	model_init(&m);
	fed = 0;
	pass_region();
	build_workload(&w, &m, 40, 1, feed_and_compare);
	ck_assert_uint_eq(fed, w.n);
	wire_free(&w);
}
END_TEST

START_TEST(test_session_builds_heap_in_one_feed)
{
	struct wire w = {0};
	static struct model m;

	model_init(&m);
	pass_region();
	build_workload(&w, &m, 60, 2, NULL);
	feed_ok(S, &w, 0, "one feed");
	read_rest();
	assert_session(S, &m, "one feed");
	EXPECT(m.replaced > 0 && m.unknown_frees > 0 && m.frees > 0 && m.stacks[0].total_allocs > 0,
	       "the workload should reach every case (replaced %ju, unknown frees %ju)",
	       (uintmax_t)m.replaced, (uintmax_t)m.unknown_frees);
	wire_free(&w);
}
END_TEST

/* The same stream in pieces of random sizes, some of one byte. */
START_TEST(test_session_split_feeds)
{
	struct wire w = {0};
	static struct model m;
	struct rng rnd = {99};

	model_init(&m);
	pass_region();
	build_workload(&w, &m, 30, 3, NULL);
	for (size_t off = 0; off < w.n;) {
		uint64_t r = rng_next(&rnd);
		size_t n = r % 4 == 0 ? 1 : 1 + (size_t)((r >> 8) % 700);
		if (n > w.n - off)
			n = w.n - off;
		int rc = session_feed(S, w.p + off, n);
		EXPECT(rc == 0, "piece at %zu: session_feed = %d (%s)", off, rc,
		       S->error ? S->error : "");
		off += n;
	}
	read_rest();
	assert_session(S, &m, "random pieces");
	ck_assert_uint_eq(S->rlen, 0);
	wire_free(&w);
}
END_TEST

/* As the daemon feeds it: bytes read straight into s->rbuf + s->rlen. */
START_TEST(test_session_feed_from_read_buffer)
{
	struct wire w = {0};
	static struct model m;
	struct rng rnd = {5};

	model_init(&m);
	pass_region();
	build_workload(&w, &m, 30, 4, NULL);
	for (size_t off = 0; off < w.n;) {
		size_t n = 1 + (size_t)(rng_next(&rnd) % 3000);
		if (n > w.n - off)
			n = w.n - off;
		size_t room;
		uint8_t *dst = session_rbuf_room(S, &room);
		ck_assert_uint_gt(room, 0);
		if (n > room)
			n = room;
		memcpy(dst, w.p + off, n);
		int rc = session_feed(S, dst, n);
		EXPECT(rc == 0, "read at %zu: session_feed = %d (%s)", off, rc,
		       S->error ? S->error : "");
		off += n;
	}
	read_rest();
	assert_session(S, &m, "through the read buffer");
	wire_free(&w);
}
END_TEST

/* The largest frame the agent sends: a HELLO with the longest exe and
 * command line, whole and cut in two. */
START_TEST(test_session_largest_frame)
{
	struct wire w = {0};
	static struct model m;
	static char exe[PROTO_MAX_PATH + 1], cmdline[PROTO_MAX_CMDLINE];

	model_init(&m);
	memset(exe, 'e', PROTO_MAX_PATH);
	exe[0] = '/';
	for (size_t i = 0; i < sizeof cmdline; i++)
		cmdline[i] = i % 10 == 9 ? '\0' : (char)('a' + i % 26);
	send_hello(&w, &m, exe, cmdline, sizeof cmdline);
	ck_assert_uint_le(w.n - PROTO_HDR_SIZE, PROTO_MAX_PAYLOAD);
	pass_region();
	size_t half = w.n / 2;
	feed_ok(S, &(struct wire){w.p, half, 0}, 0, "first half");
	ck_assert(!S->hello);
	int rc = session_feed(S, w.p + half, w.n - half);
	ck_assert_int_eq(rc, 0);
	assert_session(S, &m, "largest frame");
	wire_free(&w);
}
END_TEST

/* ---- identity ---- */

START_TEST(test_session_identity_from_proc)
{
	struct wire w = {0};
	static struct model m;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	char cmdline[8192];
	FILE *f = fopen("/proc/self/cmdline", "re");

	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	ck_assert_ptr_nonnull(f);
	size_t clen = fread(cmdline, 1, sizeof cmdline, f);
	fclose(f);
	ck_assert_uint_gt(clen, 0);

	model_init(&m);
	S->pid = getpid(); /* the kernel knows this one */
	pass_region();
	send_hello(&w, &m, "/claimed/by/the/agent", "lies\0", 5);
	feed_ok(S, &w, 0, "hello");
	ck_assert_str_eq(S->exe, exe);
	ck_assert_uint_eq(S->cmdline_len, clen);
	ck_assert(memcmp(S->cmdline, cmdline, clen) == 0);
	/* The rest of HELLO is the agent's configuration, taken as said. */
	ck_assert_uint_eq(S->nframes, m.nframes);
	ck_assert_uint_eq(S->flags, m.flags);
	wire_free(&w);
}
END_TEST

START_TEST(test_session_identity_from_hello)
{
	struct wire w = {0};
	static struct model m;

	model_init(&m);
	pass_region();
	/* The NULs after the last argument (what a title rewritten in place
	 * leaves) are no arguments: the daemon keeps the 24 bytes before. */
	send_hello(&w, &m, "/opt/app/bin/server", "server\0-c\0/etc/app.conf\0\0\0\0", 28);
	m.cmdline_len = 24;
	feed_ok(S, &w, 0, "hello");
	assert_session(S, &m, "hello");
	wire_free(&w);
}
END_TEST

/* ---- the module map ---- */

START_TEST(test_session_module_map)
{
	struct wire w = {0};
	static struct model m;

	model_init(&m);
	pass_region();
	send_hello(&w, &m, "/bin/x", "x", 1);
	/* Out of order. */
	send_module(&w, &m, 0, 0x5000, 0x6000, "/lib/e.so", 1);
	send_module(&w, &m, 0, 0x1000, 0x2000, "/lib/a.so", 2);
	send_module(&w, &m, 0, 0x3000, 0x4000, "/lib/c.so", 3);
	feed_ok(S, &w, 0, "three modules");
	assert_session(S, &m, "three modules");
	size_t from = w.n;
	/* Identical: kept once. Empty range: ignored. */
	send_module(&w, &m, 0, 0x3000, 0x4000, "/lib/c.so", 3);
	send_module(&w, &m, 0, 0x8000, 0x8000, "/lib/empty.so", 4);
	feed_ok(S, &w, from, "identical and empty");
	assert_session(S, &m, "identical and empty");
	ck_assert_uint_eq(S->modules.n, 3);
	from = w.n;
	/* A new object over a.so's end and c.so: both were unloaded. */
	send_module(&w, &m, 0x1800, 0x1800, 0x3800, "/lib/new.so", 5);
	feed_ok(S, &w, from, "overlap");
	assert_session(S, &m, "overlap");
	ck_assert_uint_eq(S->modules.n, 2);
	from = w.n;
	/* Same range, another path: replaces. Adjacent ranges do not overlap. */
	send_module(&w, &m, 0x1800, 0x1800, 0x3800, "/lib/other.so", 6);
	send_module(&w, &m, 0, 0x3800, 0x5000, "/lib/between.so", 7);
	send_module(&w, &m, 0, 0x6000, 0x7000, "/lib/after.so", 8);
	feed_ok(S, &w, from, "replace and adjacent");
	assert_session(S, &m, "replace and adjacent");
	ck_assert_uint_eq(S->modules.n, 4);

	/* Lookups: [0x1800,0x3800) other, [0x3800,0x5000) between,
	 * [0x5000,0x6000) e, [0x6000,0x7000) after. */
	const struct {
		uint64_t addr;
		const char *path;
	} look[] = {
	    {0x17ff, NULL},
	    {0x1800, "/lib/other.so"},
	    {0x37ff, "/lib/other.so"},
	    {0x3800, "/lib/between.so"},
	    {0x4fff, "/lib/between.so"},
	    {0x5000, "/lib/e.so"},
	    {0x6000, "/lib/after.so"},
	    {0x6fff, "/lib/after.so"},
	    {0x7000, NULL},
	    {0, NULL},
	    {UINT64_MAX, NULL},
	};
	for (size_t i = 0; i < sizeof look / sizeof look[0]; i++) {
		const struct modmap_entry *e = modmap_find(&S->modules, look[i].addr);
		if (look[i].path == NULL)
			EXPECT(e == NULL, "%#jx is in %s, expected no module",
			       (uintmax_t)look[i].addr, e->path);
		else
			EXPECT(e != NULL && strcmp(e->path, look[i].path) == 0,
			       "%#jx is in %s, expected %s", (uintmax_t)look[i].addr,
			       e ? e->path : "no module", look[i].path);
	}
	wire_free(&w);
}
END_TEST

/* ---- order, the end ---- */

START_TEST(test_session_sequence_order)
{
	struct wire w = {0};
	static struct model m;
	const uint64_t frames[] = {0x401000, 0x402000};

	model_init(&m);
	pass_region();
	send_hello(&w, &m, "/bin/x", "x", 1);
	put_stack(&m, 1, frames, 2);
	/* Increasing with gaps, across the two rings. */
	put_alloc(&m, 0, 1, pool_addr(1), 10, 1);
	put_alloc(&m, 1, 2, pool_addr(2), 20, 1);
	put_free(&m, 1, 9, pool_addr(1));
	put_alloc(&m, 0, 10, pool_addr(3), 30, 1);
	put_alloc(&m, 1, 1000, pool_addr(4), 40, 0);
	send_wake(&w);
	feed_ok(S, &w, 0, "increasing");
	assert_session(S, &m, "increasing");
	wire_free(&w);
}
END_TEST

/* A live drain stops at a number in flight; the final one, after the
 * process is gone, takes every record. Then the session gives back what
 * its statistics do not need. */
START_TEST(test_session_final_drain_and_trim)
{
	struct wire w = {0};
	static struct model m, before;

	model_init(&m);
	pass_region();
	session_drain(S, false); /* before HELLO: nothing to read */
	ck_assert_uint_eq(S->events, 0);
	send_hello(&w, &m, "/bin/x", "x", 1);
	put_alloc(&m, 0, 1, pool_addr(1), 10, 0);
	put_alloc(&m, 0, 2, pool_addr(2), 20, 0);
	before = m;
	/* Thread 1 took 3 and died before writing it; 4 is written. */
	__atomic_store_n((uint64_t *)&testregion_ring(&R, 1)->pending, 3, __ATOMIC_RELEASE);
	put_free(&m, 0, 4, pool_addr(1));
	send_wake(&w);
	feed_ok(S, &w, 0, "wake");
	assert_session(S, &before, "a number in flight");
	session_drain(S, true);
	assert_session(S, &m, "final drain");
	session_trim(S);
	ck_assert_int_eq(S->drain.fd, -1);
	ck_assert_ptr_null(S->rbuf);
	assert_session(S, &m, "trimmed");
	session_drain(S, true); /* nothing left to read: no harm */
	assert_session(S, &m, "trimmed and drained");
	wire_free(&w);
}
END_TEST

/* ---- malformed frames ---- */

/* A stream every malformed case starts from: HELLO, a module, stacks 1 and
 * 2 in the table, some events (last seq 20), lost 5, a WAKE. */
static void good_prefix(struct wire *w, struct model *m)
{
	const uint64_t f1[] = {0x401000}, f2[] = {0x402000, 0x401000};

	send_hello(w, m, "/bin/prefix", "prefix", 6);
	send_module(w, m, 0x400000, 0x400000, 0x500000, "/bin/prefix", 0x11);
	put_stack(m, 1, f1, 1);
	put_stack(m, 2, f2, 2);
	put_alloc(m, 0, 3, pool_addr(1), 100, 1);
	put_alloc(m, 1, 7, pool_addr(2), 200, 2);
	put_free(m, 0, 11, pool_addr(1));
	put_alloc(m, 0, 20, pool_addr(3), 300, 0);
	put_lost(m, 5);
	send_wake(w);
}

enum bad_case {
	BAD_NOT_HELLO_FIRST,
	BAD_WAKE_BEFORE_HELLO,
	BAD_SECOND_HELLO,
	BAD_TRUNCATED_HELLO,
	BAD_HELLO_OLD_VERSION,
	BAD_HELLO_WITHOUT_FD,
	BAD_HELLO_NOT_A_REGION,
	BAD_SECOND_FD,
	BAD_FD_AFTER_HELLO,
	BAD_HDR_RESERVED,
	BAD_HDR_TYPE_ZERO,
	BAD_HDR_TYPE_PAST,
	BAD_HDR_TOO_LONG,
	BAD_TRUNCATED_MODULE,
	BAD_RESET_PAYLOAD,
	BAD_WAKE_PAYLOAD,
	BAD_TOO_MANY_BYTES,
	BAD_EV_STACK_NOT_IN_TABLE,
	BAD_EV_SEQ_EQUAL,
	BAD_EV_SEQ_LOWER,
	BAD_EV_KIND_ZERO,
	BAD_EV_FORK_LOWER,
	BAD_EV_ADDR_ZERO,
	BAD_RING_OVERFULL,
	BAD_NCASES
};

static const char *const bad_names[BAD_NCASES] = {
    "a frame before HELLO",
    "WAKE before HELLO",
    "a second HELLO",
    "a truncated HELLO",
    "a HELLO of the previous version",
    "HELLO without a descriptor",
    "HELLO with a pipe for the region",
    "a second descriptor before HELLO",
    "a descriptor after HELLO",
    "a header with the reserved field set",
    "a header of type 0",
    "a header of a type past the last",
    "a header longer than the limit",
    "a truncated MODULE",
    "MODULES_RESET with a payload",
    "WAKE with a payload",
    "more bytes than the read buffer",
    "a record naming a stack not in the table",
    "a record with the last sequence number",
    "a record with a lower sequence number",
    "a record of kind 0",
    "a FORK record numbered below one applied",
    "a record at address 0",
    "a ring claiming more records than it holds",
};

/* Cases that start without the good prefix. */
static bool without_prefix(enum bad_case c)
{
	return c == BAD_NOT_HELLO_FIRST || c == BAD_WAKE_BEFORE_HELLO || c == BAD_TRUNCATED_HELLO ||
	       c == BAD_HELLO_OLD_VERSION || c == BAD_HELLO_WITHOUT_FD ||
	       c == BAD_HELLO_NOT_A_REGION || c == BAD_SECOND_FD;
}

/* Cases where the region breaks a rule, found on WAKE. */
static bool region_case(enum bad_case c)
{
	return c >= BAD_EV_STACK_NOT_IN_TABLE && c <= BAD_RING_OVERFULL;
}

/* Appends the bad bytes of case c to w (after the prefix, if any), and
 * writes what the region case needs. */
static void append_bad(struct wire *w, enum bad_case c)
{
	struct wire t = {0};
	struct model scratch;
	uint8_t p[64];
	struct shm_ev e;

	model_init(&scratch);
	switch (c) {
	case BAD_NOT_HELLO_FIRST:
		send_module(w, &scratch, 0, 0x900000, 0x901000, "/lib/t.so", 9);
		break;
	case BAD_WAKE_BEFORE_HELLO:
		send_wake(w);
		break;
	case BAD_SECOND_HELLO:
		send_hello(w, &scratch, "/bin/again", "again", 5);
		break;
	case BAD_TRUNCATED_HELLO:
	case BAD_TRUNCATED_MODULE:
		if (c == BAD_TRUNCATED_HELLO)
			send_hello(&t, &scratch, "/bin/t", "t", 1);
		else
			send_module(&t, &scratch, 0, 0x900000, 0x901000, "/lib/t.so", 9);
		/* One byte short, and the header says so. */
		wire_frame(w, proto_get_u16(t.p + 4), t.p + PROTO_HDR_SIZE,
		           (uint32_t)(t.n - PROTO_HDR_SIZE - 1));
		wire_free(&t);
		break;
	case BAD_HELLO_OLD_VERSION:
		send_hello(w, &scratch, "/bin/old", "old", 3);
		proto_put_u32(w->p + PROTO_HDR_SIZE, PROTO_VERSION - 1);
		break;
	case BAD_HELLO_WITHOUT_FD:
	case BAD_HELLO_NOT_A_REGION:
		send_hello(w, &scratch, "/bin/t", "t", 1);
		break;
	case BAD_SECOND_FD:
	case BAD_FD_AFTER_HELLO:
		break;
	case BAD_HDR_RESERVED:
		wire_add(w, proto_empty_encode(wire_room(w, 64), 64, PROTO_WAKE));
		w->p[w->n - PROTO_HDR_SIZE + 6] = 1; /* header byte 6: the reserved field */
		break;
	case BAD_HDR_TYPE_ZERO:
		memset(p, 0, 8);
		wire_frame(w, 0, p, 8);
		break;
	case BAD_HDR_TYPE_PAST:
		memset(p, 0, 8);
		wire_frame(w, PROTO_TYPE_MAX + 1, p, 8);
		break;
	case BAD_HDR_TOO_LONG:
		proto_hdr_encode(wire_room(w, PROTO_HDR_SIZE), PROTO_MODULE, PROTO_MAX_PAYLOAD + 1);
		w->n += PROTO_HDR_SIZE;
		break;
	case BAD_RESET_PAYLOAD:
		p[0] = 0;
		wire_frame(w, PROTO_MODULES_RESET, p, 1);
		break;
	case BAD_WAKE_PAYLOAD:
		p[0] = 0;
		wire_frame(w, PROTO_WAKE, p, 1);
		break;
	case BAD_EV_STACK_NOT_IN_TABLE:
		e = testregion_record(21, PROTO_EV_ALLOC, pool_addr(9), 8, 3);
		break;
	case BAD_EV_SEQ_EQUAL:
		e = testregion_record(20, PROTO_EV_ALLOC, pool_addr(9), 8, 1);
		break;
	case BAD_EV_SEQ_LOWER:
		e = testregion_record(19, PROTO_EV_FREE, pool_addr(2), 0, 0);
		break;
	case BAD_EV_KIND_ZERO:
		e = testregion_record(21, PROTO_EV_ALLOC, pool_addr(9), 8, 1);
		e.seq_kind = (uint64_t)21 << PROTO_EV_KIND_BITS;
		break;
	case BAD_EV_FORK_LOWER:
		e = testregion_record(19, PROTO_EV_FORK, 0, 0, 0);
		break;
	case BAD_EV_ADDR_ZERO:
		e = testregion_record(21, PROTO_EV_ALLOC, 0, 8, 1);
		break;
	case BAD_RING_OVERFULL:
	case BAD_TOO_MANY_BYTES:
	case BAD_NCASES:
		break;
	}
	if (region_case(c)) {
		struct shm_ring *r1 = testregion_ring(&R, 1);
		if (c == BAD_RING_OVERFULL) {
			uint64_t tail = __atomic_load_n((uint64_t *)&r1->tail, __ATOMIC_RELAXED);
			__atomic_store_n((uint64_t *)&r1->head, tail + SHM_RING_CAP + 1,
			                 __ATOMIC_RELEASE);
		} else {
			put_record(1, &e);
		}
		/* A good record after the bad one: not applied either. */
		e = testregion_record(30, PROTO_EV_ALLOC, pool_addr(10), 8, 1);
		put_record(0, &e);
		send_wake(w);
	}
}

START_TEST(test_session_refuses_malformed_frames)
{
	enum bad_case c = (enum bad_case)_i;
	struct wire w = {0};
	static struct model m;
	const char *what = bad_names[c];
	int rc;

	model_init(&m);
	if (c != BAD_HELLO_WITHOUT_FD && c != BAD_HELLO_NOT_A_REGION)
		pass_region();
	if (!without_prefix(c)) {
		good_prefix(&w, &m);
		feed_ok(S, &w, 0, what);
		assert_session(S, &m, what);
	}
	size_t from = w.n;
	if (c == BAD_TOO_MANY_BYTES) {
		/* A whole valid frame would fit; what does not is more bytes in
		 * one call than the buffer has room for. */
		size_t n = PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD - S->rlen + 1;
		uint8_t *junk = calloc(n, 1);
		ck_assert_ptr_nonnull(junk);
		rc = session_feed(S, junk, n);
		free(junk);
	} else if (c == BAD_SECOND_FD || c == BAD_FD_AFTER_HELLO) {
		int fd = testregion_fd(&R);
		rc = session_pass_fd(S, fd);
		assert_closed(fd);
	} else {
		if (c == BAD_HELLO_NOT_A_REGION) {
			int fds[2];
			ck_assert_int_eq(pipe(fds), 0);
			close(fds[1]);
			ck_assert_int_eq(session_pass_fd(S, fds[0]), 0);
		}
		append_bad(&w, c);
		rc = session_feed(S, w.p + from, w.n - from);
	}
	EXPECT(rc == -EBADMSG, "%s: -EBADMSG expected, got %d", what, rc);
	EXPECT(S->error != NULL, "%s: refused without a reason in s->error", what);
	EXPECT(S->broken == region_case(c), "%s: broken is %d", what, S->broken);
	assert_session(S, &m, what);
	if (region_case(c)) {
		/* A broken region is not read again. */
		session_drain(S, false);
		session_drain(S, true);
		assert_session(S, &m, what);
	}
	wire_free(&w);
}
END_TEST

/* The history keeps a sample only when a figure changed, grows as used,
 * and past HISTORY_SAMPLES drops the oldest: the newest hour is whole. */
START_TEST(test_history_ring)
{
	struct history h = {0};

	history_sample(&h, 1000, 10, 1, 10);
	history_sample(&h, 2000, 10, 1, 10); /* unchanged: not kept */
	ck_assert_uint_eq(h.n, 1);
	for (uint64_t i = 1; i <= 2 * HISTORY_SAMPLES; i++)
		history_sample(&h, 1000 + i * 1000, 10 + i, 1 + i, 10 + i);
	ck_assert_uint_eq(h.n, HISTORY_SAMPLES);
	ck_assert_uint_eq(h.cap, HISTORY_SAMPLES);
	for (uint32_t i = 0; i < h.n; i++) {
		const struct history_sample *x = history_at(&h, i);
		uint64_t k = HISTORY_SAMPLES + 1 + i; /* the last HISTORY_SAMPLES of them */
		ck_assert_uint_eq(x->ms, 1000 + k * 1000);
		ck_assert_uint_eq(x->current, 10 + k);
		ck_assert_uint_eq(x->blocks, 1 + k);
	}
	ck_assert_uint_eq(history_memory(&h), HISTORY_SAMPLES * sizeof(struct history_sample));
	history_free(&h);
	ck_assert_uint_eq(h.n, 0);
}
END_TEST

Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc;

	tc = tcase_create("heap");
	tcase_add_checked_fixture(tc, session_setup, session_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_session_builds_heap_wake_by_wake);
	tcase_add_test(tc, test_history_ring);
	tcase_add_test(tc, test_session_builds_heap_in_one_feed);
	tcase_add_test(tc, test_session_split_feeds);
	tcase_add_test(tc, test_session_feed_from_read_buffer);
	tcase_add_test(tc, test_session_largest_frame);
	suite_add_tcase(s, tc);

	tc = tcase_create("identity");
	tcase_add_checked_fixture(tc, session_setup, session_teardown);
	tcase_add_test(tc, test_session_identity_from_proc);
	tcase_add_test(tc, test_session_identity_from_hello);
	suite_add_tcase(s, tc);

	tc = tcase_create("modules");
	tcase_add_checked_fixture(tc, session_setup, session_teardown);
	tcase_add_test(tc, test_session_module_map);
	suite_add_tcase(s, tc);

	tc = tcase_create("order");
	tcase_add_checked_fixture(tc, session_setup, session_teardown);
	tcase_add_test(tc, test_session_sequence_order);
	tcase_add_test(tc, test_session_final_drain_and_trim);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_checked_fixture(tc, session_setup, session_teardown);
	tcase_add_loop_test(tc, test_session_refuses_malformed_frames, 0, BAD_NCASES);
	suite_add_tcase(s, tc);
	return s;
}
