/*
 * lineage.h - which process MEMTRACE_FOLLOW_FORK=0 traces.
 *
 * With MEMTRACE_FOLLOW_FORK=0 the process that was started traced is traced,
 * with the images it execs itself (they keep its pid), and none of its
 * descendants is: not a forked child, not a program a child execs, not one a
 * shell started by a child runs, not one started with posix_spawn, vfork or
 * system(3), which run no fork handlers. LD_PRELOAD passes the agent on to
 * all of them, so the agent must tell by itself that it is in a descendant.
 *
 * The traced process names itself in its environment, which every descendant
 * inherits: MEMTRACE_ROOT=PID:START, START being its start time in clock
 * ticks since boot (field 22 of /proc/self/stat; 0 when /proc cannot say).
 * Exec keeps both, while a recycled pid gets a new start time, so the pair
 * names the process alone. An agent that starts in a process whose pid and
 * start time differ from MEMTRACE_ROOT's stays off and removes itself from
 * LD_PRELOAD, so that the process's own children do not even load it; a
 * forked child removes it at once, before it execs anything.
 *
 * Called from trace_init, before the agent has a thread, and from the
 * fork child handler. Nothing here allocates through malloc: MEMTRACE_ROOT is
 * a static buffer, the environment array that holds it is mmap'ed, and
 * LD_PRELOAD without the agent is a copy in a static buffer (mmap'ed when it
 * is longer) that takes the old entry's slot. Those buffers and the agent's
 * file name are the module's own static state, written by the constructor or
 * the fork child handler alone.
 */
#ifndef MEMTRACE_AGENT_LINEAGE_H
#define MEMTRACE_AGENT_LINEAGE_H

#include <stddef.h>
#include <stdint.h>

#define LINEAGE_ENV "MEMTRACE_ROOT"

/*
 * From trace_init (the first allocator call or the constructor), under
 * MEMTRACE_FOLLOW_FORK=0. Returns 1 when this process
 * descends from the traced one (LD_PRELOAD has then lost the agent, and the
 * agent must stay off), 0 when it is the traced one (named in the
 * environment now if it was not yet).
 */
int lineage_is_descendant(void);

/* Removes the agent from LD_PRELOAD (the entry is replaced by a copy without
 * it). Async-signal-safe: for a fork child that must not pass the agent on. */
void lineage_drop_preload(void);

/* Removes from the LD_PRELOAD list `list` (entries separated by colons or
 * blanks, as ld.so reads it) every entry whose file name is `name`, in place;
 * the entries kept are joined with colons. */
void lineage_strip_preload(char *list, const char *name);

/* Reads the start time (field 22) from the `n` bytes of a /proc/PID/stat
 * text. 0, or -EINVAL when the text does not have it. */
int lineage_parse_start(const char *stat, size_t n, uint64_t *out);

#endif
