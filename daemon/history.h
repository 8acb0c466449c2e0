/*
 * history.h - a process's memory over time: current and peak traced bytes
 * and live blocks, at one-second resolution, for at least the last hour.
 *
 * The daemon samples every live session once a second (control.c's timer)
 * and once more when it ends. A sample is kept only when a figure changed
 * since the last one kept, so the series is a step function: between two
 * samples the figures were those of the earlier one. At most
 * HISTORY_SAMPLES are kept (the oldest go first), which is an hour of a
 * process that changes every second and more of one that does not:
 * HISTORY_SAMPLES * sizeof(struct history_sample) bytes at most a process
 * (112.5 KiB), grown as used. Beyond that window the process's stored
 * snapshots are its history (the control command adds them).
 *
 * Loop thread only; nothing here blocks or fails but by aborting when
 * memory runs out (xalloc).
 */
#ifndef MEMTRACE_HISTORY_H
#define MEMTRACE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define HISTORY_SAMPLES 3600u

struct history_sample {
	uint64_t ms; /* wall clock, ms since the epoch */
	uint64_t current, blocks, peak;
};

struct history {
	struct history_sample *v; /* a ring of cap samples */
	uint32_t cap, n, first;   /* n kept, the oldest at first */
};

/* Records the figures of time `ms` unless they equal the last kept. */
void history_sample(struct history *h, uint64_t ms, uint64_t current, uint64_t blocks,
                    uint64_t peak);
/* Sample i (0 = the oldest kept), i < h->n. */
const struct history_sample *history_at(const struct history *h, uint32_t i);
size_t history_memory(const struct history *h);
void history_free(struct history *h);

#endif
