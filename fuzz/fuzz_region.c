/*
 * fuzz_region.c - libFuzzer target for the daemon's reading of a traced
 * process's shared region (daemon/drain.h: drain_open, drain_run), memory
 * that another user's process can fill with anything at any time.
 *
 * The input is region contents. Each input gets a fresh region made as the
 * agent makes it (a sealed memfd of SHM_SIZE bytes with the layout's header,
 * ../tests/unit/testregion.h), optionally a plausible baseline (two rings of
 * records, three stacks), and then the input's patches, each a target byte,
 * an index and bytes to write: over the header, over the control fields of
 * rings 0, 1, 2 and the last one, over their records, over the stack
 * table's offsets and states (the first ids and the last), over the arena
 * (its start and its end); or a record appended at a ring's head, or a
 * stack entry, built from a few input bytes, to reach past the first checks
 * quickly. Then drain_open takes a duplicate of the descriptor and
 * drain_run applies the region to a heap, once or twice, live or final.
 *
 * Beyond "no crash, no hang, no read outside, no leak": drain_run answers
 * a count or -EBADMSG with a reason, nothing else; every record it applied
 * moved a ring's tail by one (the tails moved as many records as the heap
 * counts allocations, frees and frees of unknown blocks, and exactly the
 * count returned); no tail moves backwards or past its head; nothing but
 * the consumer's fields (tail, tail_futex, wake_sent) changed in the
 * region; and the heap adds up (live blocks to current and count, per
 * stack and in total; current never above peak).
 *
 * fuzz/standalone.c replays inputs without libFuzzer (see README.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drain.h"
#include "heap.h"
#include "../tests/unit/testregion.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NWATCH 4
static const uint32_t watched[NWATCH] = {0, 1, 2, SHM_NRINGS - 1};

/* ---- reading the input ---- */

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint8_t take8(struct cursor *c)
{
	if (c->n == 0)
		return 0;
	c->n--;
	return *c->p++;
}

static uint16_t take16(struct cursor *c)
{
	uint16_t lo = take8(c);
	return (uint16_t)(lo | take8(c) << 8);
}

/* Copies up to len input bytes to base + off, never at or past end. */
static void patch(struct cursor *c, char *base, uint64_t off, uint64_t end, size_t len)
{
	size_t n = len < c->n ? len : c->n;

	if (off >= end)
		return;
	if (n > end - off)
		n = (size_t)(end - off);
	memcpy(base + off, c->p, n);
	c->p += n;
	c->n -= n;
}

/* ---- building the region ---- */

static uint64_t next_seq = 1;

static void put(struct testregion *r, uint32_t ring, const struct shm_ev *e)
{
	struct shm_header *h = testregion_header(r);
	uint64_t seq = e->seq_kind >> PROTO_EV_KIND_BITS;

	testregion_put(testregion_ring(r, ring), e);
	if (__atomic_load_n((uint64_t *)&h->seq, __ATOMIC_RELAXED) <= seq)
		__atomic_store_n((uint64_t *)&h->seq, seq + 1, __ATOMIC_RELAXED);
}

/* Two threads' rings with allocations and frees, three stacks. */
static void baseline(struct testregion *r)
{
	static const uint64_t frames[] = {0x401000, 0x402000, 0x403000};

	for (uint32_t id = 1; id <= 3; id++)
		testregion_stack(r, id, frames, id);
	testregion_place(r, 0, 0);
	testregion_place(r, 1, 0);
	__atomic_store_n((uint32_t *)&testregion_header(r)->nrings, 2, __ATOMIC_RELAXED);
	for (uint64_t seq = 1; seq <= 20; seq++) {
		uint64_t addr = 0x10000 + (seq * 5 % 7) * 16;
		struct shm_ev e = seq % 3 == 0 ? testregion_record(seq, PROTO_EV_FREE, addr, 0, 0)
		                               : testregion_record(seq, PROTO_EV_ALLOC, addr,
		                                                   seq * 10, (uint32_t)(seq % 4));
		put(r, (uint32_t)(seq % 2), &e);
	}
	next_seq = 21;
}

static void apply_patch(struct testregion *r, struct cursor *c)
{
	uint8_t t = take8(c);
	uint32_t ring = watched[(t >> 3) & 3];
	uint8_t hi = t >> 5;
	uint64_t ring_at = SHM_OFF_RING(ring), ev_at = ring_at + offsetof(struct shm_ring, ev);

	switch (t & 7) {
	case 0: { /* the header */
		uint16_t i = take16(c);
		patch(c, r->base, i % sizeof(struct shm_header), sizeof(struct shm_header),
		      take8(c));
		break;
	}
	case 1: { /* a ring's control fields */
		uint16_t i = take16(c);
		patch(c, r->base, ring_at + i % offsetof(struct shm_ring, ev), ev_at, take8(c));
		break;
	}
	case 2: { /* a ring's records */
		uint64_t slot = ((uint64_t)hi << 16 | take16(c)) % SHM_RING_CAP;
		patch(c, r->base, ev_at + slot * sizeof(struct shm_ev), SHM_OFF_RING(ring + 1),
		      take8(c));
		break;
	}
	case 3:   /* stack offsets */
	case 4: { /* stack states */
		uint16_t i = take16(c);
		uint64_t id = hi & 1 ? SHM_STACK_CAP - i % 64 : i % 64;
		if ((t & 7) == 3)
			patch(c, r->base, SHM_OFF_OFFSETS + 8 * id, SHM_OFF_STATES, take8(c));
		else
			patch(c, r->base, SHM_OFF_STATES + id, SHM_OFF_ARENA, take8(c));
		break;
	}
	case 5: { /* the arena, its start or its end */
		uint16_t i = take16(c);
		uint64_t off = hi & 1 ? SHM_ARENA - 65536 + i : (uint64_t)i * 8;
		patch(c, r->base, SHM_OFF_ARENA + off, SHM_OFF_ARENA + SHM_ARENA, take8(c));
		break;
	}
	case 6: { /* a record at a ring's head */
		uint16_t delta = take16(c);
		uint8_t a = take8(c);
		uint16_t sz = take16(c);
		uint8_t st = take8(c);
		next_seq += delta;
		struct shm_ev e =
		    testregion_record(next_seq & PROTO_SEQ_MAX, (enum proto_ev_kind)(hi & 3),
		                      a == 0xff ? 0 : 0x10000 + (uint64_t)a * 16, sz, st % 8);
		put(r, ring, &e);
		break;
	}
	default: { /* a stack entry */
		uint64_t frames[24];
		uint32_t id = take8(c) % 64, n = take8(c) % 24 + 1;
		for (uint32_t k = 0; k < n; k++)
			frames[k] = 0x400000 + take8(c);
		if (id != 0)
			testregion_stack(r, id, frames, n);
		break;
	}
	}
}

/* ---- checking a drain ---- */

/* What no drain may change: everything of the rings but the consumer's
 * fields, the header, the first stack ids. */
struct frozen {
	struct shm_header hdr;
	uint64_t head[NWATCH], pending[NWATCH], tail[NWATCH];
	uint32_t waiters[NWATCH], state[NWATCH], tid[NWATCH];
	uint64_t offsets[64];
	uint8_t states[64];
};

static void freeze(const struct testregion *r, struct frozen *f)
{
	memset(f, 0, sizeof(*f));
	memcpy(&f->hdr, r->base, sizeof(f->hdr));
	for (int i = 0; i < NWATCH; i++) {
		const struct shm_ring *x = testregion_ring(r, watched[i]);
		f->head[i] = x->head;
		f->pending[i] = x->pending;
		f->tail[i] = x->tail;
		f->waiters[i] = x->waiters;
		f->state[i] = x->state;
		f->tid[i] = x->tid;
	}
	memcpy(f->offsets, r->base + SHM_OFF_OFFSETS, sizeof(f->offsets));
	memcpy(f->states, r->base + SHM_OFF_STATES, sizeof(f->states));
}

struct tally {
	uint64_t bytes, count;
	uint64_t *stack_bytes, *stack_count;
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
	t->bytes += size;
	t->count++;
	t->stack_bytes[stack] += size;
	t->stack_count[stack]++;
}

static void check_heap(const struct heap *h)
{
	struct tally t = {0};

	t.nstacks = h->nstacks;
	t.stack_bytes = calloc(h->nstacks + 1, sizeof(uint64_t));
	t.stack_count = calloc(h->nstacks + 1, sizeof(uint64_t));
	if (t.stack_bytes == NULL || t.stack_count == NULL)
		abort();
	heap_foreach(h, tally_block, &t);
	if (t.bad || t.bytes != h->current || t.count != h->count || t.count != h->blocks ||
	    h->current > h->peak)
		abort();
	for (uint32_t i = 0; i < h->nstacks; i++)
		if (t.stack_bytes[i] != heap_stack_at(h, i)->live_bytes ||
		    t.stack_count[i] != heap_stack_at(h, i)->live_count)
			abort();
	free(t.stack_bytes);
	free(t.stack_count);
}

static void one_drain(struct testregion *r, struct drain *dr, struct heap *h, bool final)
{
	struct frozen before, after;
	const char *why = NULL;
	uint64_t applied0 = h->allocations + h->frees + h->unknown_frees, last0 = h->last_seq;

	freeze(r, &before);
	long n = drain_run(dr, h, final, &why);
	freeze(r, &after);
	if (n < 0 && (n != -EBADMSG || why == NULL || why[0] == '\0'))
		abort();
	uint64_t moved = 0;
	for (int i = 0; i < NWATCH; i++) {
		uint64_t held = before.head[i] - before.tail[i], d = after.tail[i] - before.tail[i];
		if (d != 0 && (held > SHM_RING_CAP || d > held))
			abort();
		moved += d;
		/* Only the consumer's fields are written. */
		after.tail[i] = before.tail[i];
	}
	if (memcmp(&before, &after, sizeof(before)) != 0)
		abort();
	uint64_t applied = h->allocations + h->frees + h->unknown_frees - applied0;
	/* Every record read moved a tail; FORK records move one too but
	 * change no figure of the heap. */
	if (applied > moved || (n >= 0 && (uint64_t)n != moved))
		abort();
	if (h->last_seq < last0 || (applied > 0 && h->last_seq == last0))
		abort();
	check_heap(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = {data, size};
	struct testregion r;
	struct drain dr;
	struct heap h;
	const char *why = NULL;
	uint8_t flags = take8(&c);

	if (testregion_create(&r, 1) < 0)
		abort();
	next_seq = 1;
	if (flags & 1)
		baseline(&r);
	while (c.n > 0)
		apply_patch(&r, &c);
	if (drain_open(&dr, testregion_fd(&r), &why) < 0) {
		/* Only a header that is not the layout's is refused here. */
		const struct shm_header *hd = testregion_header(&r);
		if (why == NULL || (hd->magic == SHM_MAGIC && hd->version == PROTO_VERSION))
			abort();
		testregion_destroy(&r);
		return 0;
	}
	if (flags & 8)
		heap_init(&h, 8, 2); /* the limits on blocks and stacks reached */
	else
		heap_init(&h, 65536, 4096);
	one_drain(&r, &dr, &h, flags & 2);
	(void)drain_pending(&dr);
	if (flags & 4)
		one_drain(&r, &dr, &h, true);
	heap_close(&h);
	drain_close(&dr);
	testregion_destroy(&r);
	return 0;
}
