/*
 * fuzz_session.c - libFuzzer target for the daemon's decoder of an agent's
 * stream (daemon/session.h: session_feed), which reads agent.sock from
 * processes the daemon does not trust.
 *
 * The input is what an agent wrote: HELLO, MODULE, MODULES_RESET and WAKE
 * frames. The connection passes each session, before any byte, the
 * descriptor of a real shared region (a sealed memfd made as the agent
 * makes it, ../tests/unit/testregion.h) holding a few events and stacks, so
 * that a HELLO is accepted and each WAKE drains the region into the heap
 * (the events themselves are fuzzed by fuzz_region.c). Two sessions take
 * the input, each with a region of the same contents: one in a single
 * call, the other in pieces whose sizes a generator seeded from the input
 * picks (down to single bytes). Beyond "no crash, no out-of-bounds read, no
 * leak", the two must end alike: the same answer (0, or -EBADMSG with a
 * reason set, nothing else), the same counters, the same live blocks; a
 * session stops taking bytes at its first refusal, as the daemon closes
 * the connection there. And the heap each one built must add up: its live
 * blocks, visited one by one, number count, their weights (their sizes and
 * one each, unless the HELLO asked for sampling: sampling.h) sum to current
 * and blocks, and sum per stack to that stack's live bytes and count;
 * current never exceeds peak.
 *
 * The limits on blocks and stacks are set low, as --max-blocks and
 * --max-stacks would. fuzz/standalone.c replays inputs without libFuzzer (see README.md).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "heap.h"
#include "sampling.h"
#include "session.h"
#include "../tests/unit/testregion.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STACKS 4096
#define MAX_BLOCKS 65536

/* Sums of weights, each kept as sampling_add keeps a figure. */
struct tally {
	uint64_t rate;
	uint64_t bytes, count, blocks;
	uint32_t bytes_frac, blocks_frac;
	uint64_t *stack_bytes, *stack_count;
	uint32_t *stack_bytes_frac, *stack_count_frac;
	uint32_t nstacks;
	int bad;
};

static void tally_block(void *arg, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct tally *t = arg;

	if (addr == 0 || stack >= t->nstacks) {
		t->bad = 1;
		return;
	}
	struct sampling_weight w;
	sampling_weight(size, t->rate, &w);
	sampling_add(&t->bytes, &t->bytes_frac, w.bytes);
	sampling_add(&t->blocks, &t->blocks_frac, w.count);
	t->count++;
	sampling_add(&t->stack_bytes[stack], &t->stack_bytes_frac[stack], w.bytes);
	sampling_add(&t->stack_count[stack], &t->stack_count_frac[stack], w.count);
}

/* The heap adds up: blocks to counters, per stack and in total. */
static void check_heap(const struct heap *h)
{
	struct tally t = {0};

	t.rate = h->sample_bytes;
	t.nstacks = h->nstacks;
	t.stack_bytes = calloc(h->nstacks + 1, sizeof(uint64_t));
	t.stack_count = calloc(h->nstacks + 1, sizeof(uint64_t));
	t.stack_bytes_frac = calloc(h->nstacks + 1, sizeof(uint32_t));
	t.stack_count_frac = calloc(h->nstacks + 1, sizeof(uint32_t));
	if (t.stack_bytes == NULL || t.stack_count == NULL || t.stack_bytes_frac == NULL ||
	    t.stack_count_frac == NULL)
		abort();
	heap_foreach(h, tally_block, &t);
	if (t.bad || t.bytes != h->current || t.count != h->count || t.blocks != h->blocks ||
	    h->current > h->peak)
		abort();
	for (uint32_t i = 0; i < h->nstacks; i++)
		if (t.stack_bytes[i] != heap_stack_at(h, i)->live_bytes ||
		    t.stack_count[i] != heap_stack_at(h, i)->live_count)
			abort();
	free(t.stack_bytes);
	free(t.stack_count);
	free(t.stack_bytes_frac);
	free(t.stack_count_frac);
}

static void same_or_abort(const struct session *a, const struct session *b)
{
	const struct heap *x = &a->heap, *y = &b->heap;

	if (a->hello != b->hello || a->bye != b->bye || a->events != b->events ||
	    a->lost_events != b->lost_events || a->modules.n != b->modules.n ||
	    (a->error == NULL) != (b->error == NULL))
		abort();
	if (x->current != y->current || x->peak != y->peak || x->count != y->count ||
	    x->blocks != y->blocks || x->sample_bytes != y->sample_bytes ||
	    x->allocations != y->allocations || x->frees != y->frees ||
	    x->unknown_frees != y->unknown_frees || x->replaced != y->replaced ||
	    x->ndefined != y->ndefined || x->limit_reached != y->limit_reached)
		abort();
	struct modmap_entry *ma = modmap_array(&a->modules), *mb = modmap_array(&b->modules);
	for (size_t i = 0; i < a->modules.n; i++)
		if (ma[i].lo != mb[i].lo || ma[i].hi != mb[i].hi ||
		    strcmp(ma[i].path, mb[i].path) != 0)
			abort();
	modmap_array_free(ma, a->modules.n);
	modmap_array_free(mb, b->modules.n);
}

/* The process's region: two threads' rings with a few allocations and
 * frees (one of them of a block never seen, one at a live address), three
 * stacks in the table, a lost count. */
static void region_fill(struct testregion *r)
{
	static const uint64_t frames[] = {0x401000, 0x402000, 0x403000};
	struct shm_header *h = testregion_header(r);

	for (uint32_t id = 1; id <= 3; id++)
		if (testregion_stack(r, id, frames, id) < 0)
			abort();
	testregion_place(r, 0, 0);
	testregion_place(r, 1, 0);
	__atomic_store_n((uint32_t *)&h->nrings, 2, __ATOMIC_RELEASE);
	for (uint64_t seq = 1; seq <= 40; seq++) {
		uint64_t addr = 0x10000 + (seq * 7 % 13) * 16;
		struct shm_ev e = seq % 3 == 0 ? testregion_record(seq, PROTO_EV_FREE, addr, 0, 0)
		                               : testregion_record(seq, PROTO_EV_ALLOC, addr,
		                                                   seq * 100, (uint32_t)(seq % 4));
		testregion_put(testregion_ring(r, (uint32_t)(seq % 2)), &e);
	}
	__atomic_store_n((uint64_t *)&h->seq, 41, __ATOMIC_RELEASE);
	__atomic_store_n((uint64_t *)&h->lost, 3, __ATOMIC_RELEASE);
}

static struct session *session_for(struct daemon *d, struct testregion *r)
{
	memset(d, 0, sizeof *d);
	d->cfg.max_stacks = MAX_STACKS;
	d->cfg.max_blocks = MAX_BLOCKS;
	struct session *s = session_new(d);
	s->pid = 0; /* no /proc entry: identity from HELLO */
	if (testregion_create(r, 1) < 0)
		abort();
	region_fill(r);
	if (session_pass_fd(s, testregion_fd(r)) < 0)
		abort();
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct daemon da, db;
	struct testregion rega, regb;
	struct session *a = session_for(&da, &rega), *b = session_for(&db, &regb);
	uint64_t rnd = size;
	int ra, rb = 0;

	if (size > PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD)
		size = PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD;
	ra = session_feed(a, data, size);
	for (size_t i = 0; i < size && i < 8; i++)
		rnd = rnd * 131 + data[i];
	for (size_t off = 0; off < size && rb == 0;) {
		rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
		size_t n = (rnd >> 33) % 4 == 0 ? 1 : 1 + (size_t)((rnd >> 40) % 512);
		if (n > size - off)
			n = size - off;
		rb = session_feed(b, data + off, n);
		off += n;
	}
	if ((ra != 0 && ra != -EBADMSG) || ra != rb)
		abort();
	if ((ra == 0) != (a->error == NULL))
		abort();
	same_or_abort(a, b);
	check_heap(&a->heap);
	check_heap(&b->heap);
	session_unref(a);
	session_unref(b);
	drain_scratch_free(&da.drain_scratch);
	drain_scratch_free(&db.drain_scratch);
	limit_close(&da.fork_images);
	limit_close(&db.fork_images);
	testregion_destroy(&rega);
	testregion_destroy(&regb);
	return 0;
}
