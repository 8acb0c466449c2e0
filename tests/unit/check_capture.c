/*
 * check_capture.c - daemon/capture.c: a session's heap copied on the loop
 * and resolved into a snapshot.
 *
 * The heap is built here from events whose sizes, addresses and stacks the
 * test chooses, so every figure of the snapshot is known before it is
 * taken. Pinned: an allocation on stack 0 (the unknown stack, which has no
 * frames and no frame array) is counted like any other and copied without
 * touching the missing array (under UBSan, a memcpy from NULL aborts).
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

Suite *capture_suite(void)
{
	Suite *s = suite_create("capture");
	TCase *tc = tcase_create("capture");

	tcase_add_test(tc, test_stack_zero);
	suite_add_tcase(s, tc);
	return s;
}
