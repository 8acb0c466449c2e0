/*
 * unwind.h - stack capture inside an interposed allocation call.
 *
 * Three methods: our own walker of .eh_frame's rules with a per-thread cache
 * of them (cfi.h; default, MEMTRACE_UNWIND=cfi), which hands every stack it
 * does not handle to libunwind's unw_backtrace; libunwind alone
 * (MEMTRACE_UNWIND=libunwind); and a frame-pointer walk (MEMTRACE_UNWIND=fp;
 * cheapest, but only correct through code built with
 * -fno-omit-frame-pointer). With MEMTRACE_UNWIND_CHECK=1 every stack is
 * walked both by our walker and by libunwind, libunwind's is kept, and the
 * counts of walks, differences and hand-overs are printed on stderr at exit
 * (the differential test's instrument).
 *
 * Frames inside the agent itself are dropped, so frame 0 is the caller of
 * malloc. Every frame is a return address minus one, i.e. an address inside
 * the call instruction, which is what symbolization needs. Nothing here
 * allocates through the interposed functions.
 */
#ifndef MEMTRACE_AGENT_UNWIND_H
#define MEMTRACE_AGENT_UNWIND_H

#include <stdint.h>

#include "cfi.h"
#include "globals.h"

/* One stack's capture: where the program's frames start, and how they were
 * walked. */
struct unwind_walk {
	struct cfi_regs start;
	bool have;   /* start was found (not in fp mode) */
	bool walked; /* unwind_capture's frames came from our walker */
};

void unwind_init(void);
/* The stack id of the calling thread's stack when our walker remembers this
 * very walk (cfi.h, the walk memo), else 0. Fills *w for unwind_capture.
 * from: a frame of the agent's on the way out to the program (the hook's
 * __builtin_frame_address(0)). */
uint32_t unwind_known(struct agent_tls *t, struct unwind_walk *w, uint32_t max, const void *from);
/* Fills out[0 .. max) and returns the number of frames. */
uint32_t unwind_capture(struct agent_tls *t, struct unwind_walk *w, uint64_t *out, uint32_t max);
/* The frames unwind_capture returned were interned as id: remember the walk. */
void unwind_learn(struct agent_tls *t, const struct unwind_walk *w, uint32_t id);
/* Called once per new thread (inside the recursion guard): learns the stack
 * bounds for the walks and warms libunwind's cache. */
void unwind_thread_init(struct agent_tls *t);
/* The thread is ending: gives back what its walks kept. */
void unwind_thread_exit(struct agent_tls *t);

#endif
