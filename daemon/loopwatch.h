/*
 * loopwatch.h - how long the loop thread was busy between two waits: the
 * stall that every client of the daemon (agents in lossless mode, queries,
 * scrapes) may have to sit through.
 *
 * A uv_prepare handle runs once per loop iteration, just before the loop
 * waits for I/O. The time between two of them minus what libuv spent
 * waiting in between (uv_metrics_idle_time, which the loop must be
 * configured for: loopwatch_start does it) is the time callbacks held the
 * loop in that iteration. The longest one since the start, and how many
 * were over LOOPWATCH_SLOW_MS, are kept for `status` and /metrics, and a
 * stall over LOOPWATCH_LOG_MS is logged (once per LIMIT_BURST_MS at most).
 *
 * Loop thread only. It watches; it never changes what the loop does.
 */
#ifndef MEMTRACE_LOOPWATCH_H
#define MEMTRACE_LOOPWATCH_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#define LOOPWATCH_SLOW_MS 50   /* an iteration this long counts as slow */
#define LOOPWATCH_LOG_MS  1000 /* and this long is logged */

struct loopwatch {
	uv_loop_t *loop;
	uv_prepare_t prepare;
	bool started;
	uint64_t last_ns, last_idle_ns; /* at the previous iteration */
	uint64_t max_ns;                /* the longest iteration since the start */
	uint64_t slow;                  /* iterations over LOOPWATCH_SLOW_MS */
	uint64_t logged_ms;             /* uv_now of the last stall logged */
	uint64_t turns;                 /* iterations so far: budgets per turn key on it */
};

/* Bytes a kind of work may still take in this loop turn: renewed to
 * per_turn at each turn (loopwatch counts them); a loop not watched has no
 * turns to count, so every call starts a fresh budget. */
struct turn_budget {
	uint64_t turn; /* turns + 1 of the turn `left` is of; 0: never set */
	size_t left;
};
static inline size_t *turn_budget(struct turn_budget *b, const struct loopwatch *w, size_t per_turn)
{
	uint64_t turn = w->turns + 1;
	if (b->turn != turn || !w->started) {
		b->turn = turn;
		b->left = per_turn;
	}
	return &b->left;
}

/* Configures loop for idle-time metrics and starts watching. 0 or a libuv
 * error (then nothing is measured). */
int loopwatch_start(struct loopwatch *w, uv_loop_t *loop);
/* Closes the handle (no-op when not started). */
void loopwatch_stop(struct loopwatch *w);
/* The longest iteration so far, in seconds. */
double loopwatch_max_seconds(const struct loopwatch *w);

#endif
