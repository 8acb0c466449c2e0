/*
 * check_capture.c - daemon/capture.c: a session's heap copied on the loop
 * and resolved into a snapshot.
 *
 * The heap is built here from events whose sizes, addresses and stacks the
 * test chooses, so every figure of the snapshot is known before it is
 * taken. Pinned: an allocation on stack 0 (the unknown stack, which has no
 * frames and no frame array) is counted like any other and copied without
 * touching the missing array (under UBSan, a memcpy from NULL aborts).
 * The largest blocks are searched on the worker, after the capture, in a
 * view of the blocks frozen at capture_take: test_largest_frozen changes
 * the heap between the two (frees the largest blocks, allocates larger
 * ones) and checks that the snapshot lists the true largest blocks of the
 * moment of the capture, from a list the test keeps, each with its trace.
 * The stacks too are listed on the worker from the view (a capture costs
 * the loop nothing per stack): test_stacks_frozen changes and trims the
 * stacks, or closes the heap, between the two, and checks that the
 * snapshot's traces are those of the moment of the capture.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "daemon.h"
#include "heap.h"
#include "session.h"
#include "snapshot.h"
#include "suites.h"
#include "symbols.h"

static const struct snapshot_trace *trace_of_size(const struct snapshot *s, uint64_t size)
{
	for (size_t i = 0; i < s->ntraces; i++)
		if (s->traces[i].size == size)
			return &s->traces[i];
	return NULL;
}

START_TEST(test_stack_zero)
{
	static const uint64_t frames[] = {0x401234};
	struct daemon d;
	struct session *s;
	struct proto_event ev;

	memset(&d, 0, sizeof d);
	s = session_new(&d);
	s->state = SESSION_EXITED; /* nothing to read from a region */
	ck_assert_int_eq(heap_define_stack(&s->heap, 1, frames, 1), 0);
	ev = (struct proto_event){
	    .seq = 1, .addr = 0x1000, .size = 40, .stack_id = 0, .kind = PROTO_EV_ALLOC};
	ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	ev = (struct proto_event){
	    .seq = 2, .addr = 0x2000, .size = 8, .stack_id = 1, .kind = PROTO_EV_ALLOC};
	ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	ev = (struct proto_event){
	    .seq = 3, .addr = 0x3000, .size = 100, .stack_id = 0, .kind = PROTO_EV_ALLOC};
	ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);

	struct capture *c = capture_take(s, "live", 10);
	struct symbols *syms = symbols_new(false);
	struct snapshot *snap = capture_resolve(c, syms);

	ck_assert_uint_eq(snap->current, 148);
	ck_assert_uint_eq(snap->blocks, 3);
	ck_assert_uint_eq(snap->ntraces, 2);
	const struct snapshot_trace *unknown = trace_of_size(snap, 140);
	const struct snapshot_trace *known = trace_of_size(snap, 8);
	ck_assert_ptr_nonnull(unknown);
	ck_assert_ptr_nonnull(known);
	ck_assert_uint_eq(unknown->count, 2);
	ck_assert_uint_eq(unknown->nframes, 0);
	ck_assert_uint_eq(known->count, 1);
	ck_assert_uint_eq(known->nframes, 1);
	ck_assert_uint_eq(known->addrs[0], frames[0]);
	/* The largest blocks point at their traces, stack 0's too. */
	ck_assert_uint_eq(snap->nlargest, 3);
	ck_assert_uint_eq(snap->largest[0].size, 100);
	ck_assert_ptr_eq(&snap->traces[snap->largest[0].trace], unknown);
	ck_assert_ptr_eq(&snap->traces[snap->largest[2].trace], known);

	snapshot_free(snap);
	symbols_free(syms);
	capture_free(c);
	session_unref(s);
}
END_TEST

#define FROZEN_BLOCKS 60000
#define FROZEN_TOP    25

struct tblock {
	uint64_t addr, size;
	uint32_t stack;
};

static int tblock_desc(const void *a, const void *b)
{
	const struct tblock *x = a, *y = b;
	return x->size != y->size ? (x->size < y->size ? 1 : -1) : 0;
}

START_TEST(test_largest_frozen)
{
	struct daemon d;
	struct session *s;
	struct tblock *b = calloc(FROZEN_BLOCKS, sizeof(*b));
	uint64_t seq = 0;

	ck_assert_ptr_nonnull(b);
	memset(&d, 0, sizeof d);
	s = session_new(&d);
	s->state = SESSION_EXITED;
	for (uint32_t id = 1; id <= 8; id++) {
		uint64_t frame = 0x400000 + id;
		ck_assert_int_eq(heap_define_stack(&s->heap, id, &frame, 1), 0);
	}
	/* Distinct sizes in a scrambled order (some of 1 TiB and more, which
	 * the heap keeps in its second table), on stacks 0 to 8. */
	for (uint32_t i = 0; i < FROZEN_BLOCKS; i++) {
		uint64_t k = (uint64_t)i * 7919 % FROZEN_BLOCKS;
		b[i] = (struct tblock){0x10000000 + (uint64_t)i * 64,
		                       k % 50 == 0 ? (UINT64_C(1) << 40) + k : 1 + k * 3, i % 9};
		struct proto_event ev = {.seq = ++seq,
		                         .addr = b[i].addr,
		                         .size = b[i].size,
		                         .stack_id = b[i].stack,
		                         .kind = PROTO_EV_ALLOC};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}
	struct capture *c = capture_take(s, "live", FROZEN_TOP);

	/* After the capture: the largest blocks go, larger ones come, and
	 * half of all the others are freed. */
	qsort(b, FROZEN_BLOCKS, sizeof(*b), tblock_desc);
	for (uint32_t i = 0; i < FROZEN_BLOCKS; i++) {
		if (i >= FROZEN_TOP && i % 2 == 0)
			continue;
		struct proto_event ev = {.seq = ++seq, .addr = b[i].addr, .kind = PROTO_EV_FREE};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}
	for (uint32_t i = 0; i < 100; i++) {
		struct proto_event ev = {.seq = ++seq,
		                         .addr = 0x90000000 + (uint64_t)i * 64,
		                         .size = (UINT64_C(1) << 50) + i,
		                         .stack_id = 1,
		                         .kind = PROTO_EV_ALLOC};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}

	struct symbols *syms = symbols_new(false);
	struct snapshot *snap = capture_resolve(c, syms);
	ck_assert_uint_eq(snap->blocks, FROZEN_BLOCKS);
	ck_assert_uint_eq(snap->nlargest, FROZEN_TOP);
	for (size_t i = 0; i < FROZEN_TOP; i++) {
		ck_assert_uint_eq(snap->largest[i].addr, b[i].addr);
		ck_assert_uint_eq(snap->largest[i].size, b[i].size);
		const struct snapshot_trace *t = &snap->traces[snap->largest[i].trace];
		if (b[i].stack == 0) {
			ck_assert_uint_eq(t->nframes, 0);
		} else {
			ck_assert_uint_eq(t->nframes, 1);
			ck_assert_uint_eq(t->addrs[0], 0x400000 + b[i].stack);
		}
	}
	snapshot_free(snap);
	symbols_free(syms);
	capture_free(c);
	session_unref(s);
	free(b);
}
END_TEST

#define FROZEN_STACKS 3000 /* three chunks of the stack array */

/* The traces of the stacks 1..FROZEN_STACKS, stack id holding one block of
 * 8 * id bytes at frame 0x400000 + id. */
static void assert_frozen_stacks(const struct snapshot *snap)
{
	ck_assert_uint_eq(snap->ntraces, FROZEN_STACKS);
	for (uint32_t id = 1; id <= FROZEN_STACKS; id++) {
		const struct snapshot_trace *t = trace_of_size(snap, 8 * (uint64_t)id);
		ck_assert_msg(t != NULL, "no trace of %u bytes", 8 * id);
		ck_assert_uint_eq(t->count, 1);
		ck_assert_uint_eq(t->nframes, 1);
		ck_assert_uint_eq(t->addrs[0], 0x400000 + id);
	}
}

START_TEST(test_stacks_frozen)
{
	struct daemon d;
	struct session *s;
	struct symbols *syms = symbols_new(false);
	uint64_t seq = 0;

	memset(&d, 0, sizeof d);
	s = session_new(&d);
	for (uint32_t id = 1; id <= FROZEN_STACKS; id++) {
		uint64_t frame = 0x400000 + id;
		ck_assert_int_eq(heap_define_stack(&s->heap, id, &frame, 1), 0);
		struct proto_event ev = {.seq = ++seq,
		                         .addr = 0x10000000 + (uint64_t)id * 64,
		                         .size = 8 * (uint64_t)id,
		                         .stack_id = id,
		                         .kind = PROTO_EV_ALLOC};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}
	s->state = SESSION_EXITED;
	struct capture *c[2] = {capture_take(s, "live", 0), capture_take(s, "live", 5)};

	/* After the capture: the even stacks lose their blocks and their
	 * frames (heap_trim), new stacks come with blocks, an odd stack gets
	 * a second block. */
	for (uint32_t id = 2; id <= FROZEN_STACKS; id += 2) {
		struct proto_event ev = {
		    .seq = ++seq, .addr = 0x10000000 + (uint64_t)id * 64, .kind = PROTO_EV_FREE};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}
	for (uint32_t id = FROZEN_STACKS + 1; id <= FROZEN_STACKS + 500; id++) {
		uint64_t frame = 0x500000 + id;
		ck_assert_int_eq(heap_define_stack(&s->heap, id, &frame, 1), 0);
		struct proto_event ev = {.seq = ++seq,
		                         .addr = 0x20000000 + (uint64_t)id * 64,
		                         .size = 3,
		                         .stack_id = id,
		                         .kind = PROTO_EV_ALLOC};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}
	struct proto_event ev = {
	    .seq = ++seq, .addr = 0x30000000, .size = 1, .stack_id = 1, .kind = PROTO_EV_ALLOC};
	ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	heap_trim(&s->heap);
	while (!heap_step(&s->heap, 4096))
		;

	struct snapshot *snap = capture_resolve(c[0], syms);
	assert_frozen_stacks(snap);
	ck_assert_uint_eq(snap->nlargest, 0);
	snapshot_free(snap);

	/* The heap goes before the second is resolved: the view holds what
	 * it needs. */
	session_unref(s);
	snap = capture_resolve(c[1], syms);
	assert_frozen_stacks(snap);
	ck_assert_uint_eq(snap->nlargest, 5);
	for (uint32_t i = 0; i < 5; i++)
		ck_assert_uint_eq(snap->largest[i].size, 8 * (uint64_t)(FROZEN_STACKS - i));
	snapshot_free(snap);
	capture_free(c[0]);
	capture_free(c[1]);
	symbols_free(syms);
}
END_TEST

/* A capture of a live process that searches its largest blocks is charged
 * what its view may come to hold (the block table it shares, which the
 * process may rewrite before a worker reads it): at least a slot per live
 * block; the same capture of a process that ended, or one without the
 * search, is not. (The hostile review's view_pin: such views were charged
 * nothing.) */
START_TEST(test_view_charged)
{
	struct daemon d;
	struct session *s;
	const uint32_t n = 100000;

	memset(&d, 0, sizeof d);
	s = session_new(&d);
	for (uint32_t i = 0; i < n; i++) {
		struct proto_event ev = {.seq = i + 1,
		                         .addr = 0x10000000 + (uint64_t)i * 64,
		                         .size = 32,
		                         .kind = PROTO_EV_ALLOC};
		ck_assert_int_eq(heap_apply(&s->heap, &ev), 0);
	}
	struct capture *plain = capture_take(s, "live", 0);
	struct capture *live = capture_take(s, "live", 10);
	size_t slot = 16; /* an address and a size at the least */
	ck_assert_uint_ge(capture_memory(live), capture_memory(plain) + (size_t)n * slot);
	s->state = SESSION_EXITED;
	struct capture *ended = capture_take(s, "exit", 10);
	ck_assert_uint_lt(capture_memory(ended), capture_memory(plain) + (size_t)n * slot);
	capture_free(plain);
	capture_free(live);
	capture_free(ended);
	session_unref(s);
}
END_TEST

Suite *capture_suite(void)
{
	Suite *s = suite_create("capture");
	TCase *tc = tcase_create("capture");

	tcase_add_test(tc, test_stack_zero);
	tcase_add_test(tc, test_largest_frozen);
	tcase_add_test(tc, test_view_charged);
	tcase_add_test(tc, test_stacks_frozen);
	suite_add_tcase(s, tc);
	return s;
}
