/*
 * stacktab.h - the agent's process-wide table of distinct stacks.
 *
 * A captured stack is interned here and replaced by a small id in every event,
 * so a call site that allocates a million times costs one STACK frame on the
 * wire. Lookups and inserts are lock-free: an entry is fully written and
 * marked ready before its id is published in the hash slots, so a thread that
 * finds an id can rely on the entry. Ids are dense (1, 2, 3 ...), which lets
 * the daemon keep them in an array.
 *
 * The entries live in the shared region (proto/shm.h), where memtraced reads
 * a stack's frames when it first meets its id in a record; the hash index
 * is private memory. Nothing comes from the interposed allocator. The table is bounded
 * (STACKTAB_CAP ids); when it is full, stacktab_intern returns 0 and the event is recorded with an
 * unknown stack.
 */
#ifndef MEMTRACE_AGENT_STACKTAB_H
#define MEMTRACE_AGENT_STACKTAB_H

#include <stdint.h>

#include "shm.h"

#define STACKTAB_CAP SHM_STACK_CAP

/* Maps the hash index and points the table at the region at `base`. */
int stacktab_init(char *base);
/* A new session (memtrace_attach after a detach): the table starts empty in
 * the fresh region at `base`, ids from 1 again. No thread may be interning
 * meanwhile (the agent passes every call through while it starts). */
void stacktab_reset(char *base);
/* Fork child: copies the table (what is in use of it) into the region at
 * `base` and uses that from now on; ids still being written by the parent's
 * other threads become dead. */
void stacktab_move(char *base);
/* Returns the id of this stack (>= 1), or 0 when the table is full. */
uint32_t stacktab_intern(const uint64_t *frames, uint32_t nframes);
/* Number of ids handed out so far (ids are 1 .. count). */
uint32_t stacktab_count(void);
/* For the sender: the frames of id once it is ready. Returns 1 and fills
 * *frames and *n when ready, 0 when still being written, -1 when the id is dead
 * (its writer vanished in a fork). */
int stacktab_get(uint32_t id, const uint64_t **frames, uint32_t *n);
/* Fork child: ids whose writer was another thread will never become ready. */
void stacktab_fixup_after_fork(void);

#endif
