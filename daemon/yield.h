/*
 * yield.h - reading the rings without taking the traced program's cores.
 *
 * On a machine the traced program keeps busy (redis-server and the clients
 * that drive it on two cores), each pass of reading preempts one of the
 * program's threads for milliseconds, and the core its peer waits on sits
 * idle meanwhile: the daemon costs the program more wall time than the CPU
 * it takes. A pass that runs under SCHED_IDLE instead is preempted the
 * moment any other thread wants its core, and runs in the gaps the
 * programs leave (bench/redis.sh measures what it buys).
 *
 * The price is that an idle-priority thread may get no CPU at all on a
 * saturated machine, while lossless agents wait for it. So:
 * - a pass yields only while no traced process is under pressure: the last
 *   read of each found every ring below three quarters full (the agent
 *   wakes the daemon at a quarter) and no thread waiting for room. A ring
 *   that fills while a yielding pass waits for a core mostly frees one:
 *   its thread sleeps until the pass reads, and the next pass does not
 *   yield;
 * - a watchdog thread, at the daemon's own priority and asleep unless a
 *   pass yields, puts the loop thread back to SCHED_OTHER when a pass has
 *   yielded for YIELD_PASS_MAX_MS of wall time from its start (a machine
 *   busy with other work); and a pass that took that long, the watchdog
 *   acting or not, stops yields for YIELD_BACKOFF_MS: a starved pass holds
 *   the loop (agents, queries) that long at most, once a second.
 * Only the passes of the drain timer and of agents' WAKEs yield (a process's
 * last records included: nobody waits for them); a query's reads, control
 * requests and scrapes run at the daemon's priority as before.
 *
 * Coming back from SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that
 * allows the daemon's nice value (the systemd unit sets LimitNICE to its
 * Nice=). yield_start asks once, on a thread of its own that it then
 * discards, and leaves yielding off, saying why, when it is not allowed.
 *
 * Loop thread only, but for the watchdog's own fields.
 */
#ifndef MEMTRACE_YIELD_H
#define MEMTRACE_YIELD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Wall time a yielding pass may take before the watchdog ends its yield,
 * and how long no pass yields after that. */
#define YIELD_PASS_MAX_MS 20
#define YIELD_BACKOFF_MS  1000

struct yielder {
	bool on;                /* passes may yield */
	char why_off[320];      /* why not, when not */
	bool stuck;             /* the loop thread could not come back (logged) */
	unsigned npressed;      /* sessions whose last read found pressure */
	uint64_t calm_after_ns; /* CLOCK_MONOTONIC: no yield before (a starved pass) */
	bool in_pass;           /* between yield_begin and yield_end */
	bool reading;           /* the pass has read a region */
	bool yielding;          /* this pass runs under SCHED_IDLE */
	pid_t loop_tid;         /* the thread that makes the passes */
	uint64_t yielded;       /* passes that yielded */
	uint64_t normal;        /* passes that did not */
	/* Shared with the watchdog: `pass` is odd while a yielding pass runs
	 * (a futex), which began at pass_start_ns (CLOCK_MONOTONIC); `asleep`
	 * is set while the watchdog waits for one to begin; `escalated` is the
	 * pass it ended the yield of (0: none yet) and `escalations` how many
	 * it ended. */
	_Atomic uint32_t pass;
	_Atomic uint64_t pass_start_ns;
	_Atomic uint32_t asleep;
	_Atomic uint32_t escalated;
	_Atomic uint64_t escalations;
	_Atomic bool stop;
	bool thread;
	pthread_t watchdog;
	unsigned pass_max_ms; /* YIELD_PASS_MAX_MS; tests set it before start */
};

/* Makes y; with `want`, checks that the process may come back from
 * SCHED_IDLE and starts the watchdog. y->on says whether passes will yield
 * and y->why_off why not. Call it on the loop thread, at its own priority. */
void yield_start(struct yielder *y, bool want);
/* Whether a kernel release ("6.1.0-13-amd64") schedules a thread fairly
 * after it comes back from SCHED_IDLE: Linux 6.6 and later (EEVDF rescales
 * a task's lag when its weight changes; CFS before it left the virtual
 * runtime the thread ran up at idle weight, 341 times its CPU time,
 * charged to it at normal weight). Older kernels: no yielding. */
bool yield_kernel_ok(const char *release);
/* Stops the watchdog (after the last pass). */
void yield_stop(struct yielder *y);
/* Before a pass. */
void yield_begin(struct yielder *y);
/* Before each read in it: the first yields, unless the last pass that read
 * found pressure (a pass that reads nothing changes nothing). Outside a
 * pass (a query's read), nothing. */
void yield_reading(struct yielder *y);
/* What a session's read found: its fullest ring's records and whether a
 * thread waited for room. *pressed is the session's own flag: while any
 * session's is set, no pass yields (so one process's calm pass does not
 * clear the pressure another's showed). */
void yield_saw(struct yielder *y, bool *pressed, uint64_t fullest, bool waiting);
/* A session ends: its pressure no longer counts. */
void yield_forget(struct yielder *y, bool *pressed);
/* After the pass: back to the daemon's priority. */
void yield_end(struct yielder *y);

#endif
