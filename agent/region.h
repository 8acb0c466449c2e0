/*
 * region.h - the agent's side of the shared memory (proto/shm.h).
 *
 * One region per traced process image: a sealed memfd of SHM_SIZE bytes,
 * mapped shared, whose descriptor goes to memtraced with HELLO. It holds the
 * header (the global sequence counter, the lost and nostack counts), the
 * stack table's entries and the per-thread rings; what stays private to the
 * process (the stack table's hash index, the rings' free list) is elsewhere.
 *
 * Created by the first allocator call that reaches the agent (trace_init);
 * a fork child makes a region of its own (region_fork_child), because the
 * parent's mapping is shared: nothing the child records may land in the
 * parent's memory, and the parent's daemon session must not see the child.
 * Nothing here allocates through malloc.
 */
#ifndef MEMTRACE_AGENT_REGION_H
#define MEMTRACE_AGENT_REGION_H

#include "ring.h"
#include "shm.h"

/* g_shm and g_region (ring.h) are the mapping this module makes. */
extern int g_region_fd; /* the memfd, close-on-exec, kept high */

/* Creates and maps a fresh region (header initialised, sequence counter at
 * first_seq). 0 or -errno; on failure nothing changed. */
int region_create(uint64_t first_seq);
/* Fork child: a fresh region continuing the parent's sequence numbers,
 * holding a copy of the stack table (stacktab_move) and no ring but the
 * calling thread's; the parent's region is unmapped and its descriptor
 * closed. 0, or -errno with the agent left without a region (untraced). */
int region_fork_child(void);
/* The session ended (memtracectl detach): the region's pages go back, and
 * its descriptor is closed (the daemon keeps its own until it has read
 * everything). Its addresses are mapped again with private zero pages, so a
 * thread that was recording when the session ended writes there, harmlessly;
 * the one retired before this one is unmapped. g_shm and g_region stay until
 * region_create makes the next. */
void region_retire(void);
/* Fork child that is not traced: unmaps the parent's region, closes its
 * descriptor. */
void region_drop(void);

#endif
