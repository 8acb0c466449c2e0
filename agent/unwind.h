/*
 * unwind.h - stack capture inside an interposed allocation call.
 *
 * Two methods: libunwind's unw_backtrace (default; works through code built
 * without frame pointers, uses a per-thread cache so a warm unwind costs a
 * few nanoseconds per frame) and a frame-pointer walk (MEMTRACE_UNWIND=fp;
 * cheaper, but only correct through code built with -fno-omit-frame-pointer).
 *
 * Frames inside the agent itself are dropped, so frame 0 is the caller of
 * malloc. Every frame is a return address minus one, i.e. an address inside
 * the call instruction, which is what symbolization needs. Nothing here
 * allocates through the interposed functions.
 */
#ifndef MEMTRACE_AGENT_UNWIND_H
#define MEMTRACE_AGENT_UNWIND_H

#include <stdint.h>

#include "globals.h"

void unwind_init(void);
/* Fills out[0 .. max) and returns the number of frames. */
uint32_t unwind_capture(struct agent_tls *t, uint64_t *out, uint32_t max);
/* Called once per new thread (inside the recursion guard): learns the stack
 * bounds for the frame-pointer walk and warms libunwind's cache. */
void unwind_thread_init(struct agent_tls *t);

#endif
