/*
 * daemon.h - memtraced's context: the one struct that holds the daemon's
 * state (there are no other globals). Every libuv handle's data points back
 * here, or to a session or a module's private state that points here. The
 * modules with state of their own (the job runner, the snapshot scheduler,
 * the metrics endpoint) keep it behind one pointer each.
 *
 * Threads: everything in this struct is owned by the loop thread. Work sent
 * to the libuv thread pool (jobs.h) receives copies of what it needs and
 * reads nothing here but what stays fixed while it runs: the configuration,
 * the symbol cache and the store (both thread-safe).
 */
#ifndef MEMTRACE_DAEMON_H
#define MEMTRACE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "drain.h"
#include "limit.h"
#include "loopwatch.h"
#include "yield.h"

struct conn;
struct fdsink;
struct jobs;
struct metrics;
struct webtokens;
struct scheduler;
struct session;
struct store;
struct symbols;

struct daemon_config {
	char *runtime_dir;
	char *state_dir;
	size_t max_sessions;           /* live sessions */
	size_t max_sessions_per_uid;   /* 0: a quarter of max_sessions */
	size_t max_exited;             /* exited sessions kept in memory */
	size_t max_fork_image_bytes;   /* a uid a quarter */
	size_t max_symbol_cache_bytes; /* a uid a quarter; 0 = no bound */
	size_t max_blocks;             /* per session */
	size_t max_stacks;             /* per session */
	/* The blocks and stacks of the models of a uid's processes, and of
	 * everybody's (agentsrv.c); 0 = no bound. */
	size_t max_blocks_per_uid, max_blocks_total;
	size_t max_stacks_per_uid, max_stacks_total;
	size_t max_modules; /* per session, 0 = the default */
	bool debuginfod;
	bool no_drain_yield;              /* every read at the daemon's priority (yield.h) */
	double snapshot_interval;         /* seconds, 0 = no periodic snapshots */
	unsigned retain_snapshots;        /* per process, 0 = no limit */
	double retain_days;               /* 0 = no limit */
	uint64_t max_store_bytes;         /* charged bytes of stored snapshots, 0 = no bound */
	uint64_t max_store_bytes_per_uid; /* ... of one uid's, 0 = no bound */
	char *metrics_listen;             /* "ADDR:PORT", or "off" */
	bool metrics_explicit;    /* given with --metrics-listen: failing to serve is fatal */
	size_t metrics_top_sites; /* site series per process (besides "other") */
	/* Limits shared by users (README "Limits"); 0 = no bound. */
	size_t max_control_conns, max_control_conns_per_uid;
	uint64_t control_timeout_ms; /* a stalled control client is closed after it */
	size_t max_queued_snapshots, max_queued_snapshots_per_uid;
	size_t max_queued_snapshot_bytes; /* per uid: a quarter */
	size_t metrics_max_conns, metrics_max_conns_per_origin;
};

struct daemon {
	uv_loop_t *loop;
	struct daemon_config cfg;
	char *agent_path;
	char *control_path;
	int agent_fd, control_fd; /* listening sockets systemd passed, else -1 */
	uv_poll_t agent_srv;      /* the listening agent socket */
	int agent_listen;         /* its descriptor */
	uv_timer_t agent_timer;   /* reads every live session's region */
	uv_timer_t agent_pause;   /* resumes accepting after running out of descriptors */
	struct fdsink *fdsink;    /* closes descriptors agents passed unasked */
	uint64_t drain_next_id;   /* the session the drain timer goes on with */
	uint64_t accept_paused;   /* times accepting paused for want of descriptors */
	uv_pipe_t control_srv;
	uv_signal_t sig_term;
	uv_signal_t sig_int;
	struct session *sessions; /* newest first; live and exited */
	struct conn *conns;       /* control connections */
	size_t nlive, nexited;
	uint64_t next_session_id;
	uint64_t events_total;
	uint64_t sessions_rejected;
	uint64_t modules_dropped; /* MODULE frames past --max-modules, all sessions */
	uint64_t started_ms;      /* uv_now at start */
	struct symbols *syms;
	/* The snapshot store, shared by the jobs that read and write it and
	 * the control server; opened and closed by the scheduler. NULL when
	 * it could not be opened. */
	struct store *store;
	char store_error[512];       /* why it could not be opened, for answers */
	struct jobs *jobs;           /* the thread-pool job runner */
	struct scheduler *sched;     /* NULL when there is no store */
	struct metrics *metrics;     /* NULL when metrics are off */
	struct webtokens *webtokens; /* the web interface's secrets, NULL before the first */
	/* "http://HOST:PORT" of the HTTP server (metrics.c), the loopback
	 * address for a wildcard; "" when there is none. */
	char web_origin[96];
	/* Control connections per uid; their unread answers (control.c). */
	struct limit control_conns;
	uv_timer_t control_timer; /* stalled connections, once a second */
	uv_idle_t control_idle;   /* clients with requests left for the next turn */
	uint64_t control_paused;  /* times a client's unread answers paused it */
	uint64_t control_stalled; /* connections closed for stalling */
	size_t control_unread;    /* answer bytes queued to all clients */
	/* Snapshots waiting for the thread pool, per uid (scheduler.c). */
	struct limit snap_queue, snap_bytes;
	/* Live agent connections per uid; fork images' bytes per uid; the
	 * blocks and stacks the models of a uid's processes hold. */
	struct limit agent_sessions, fork_images, model_blocks, model_stacks;
	/* What sessions charge their models to (agentsrv.c), NULL in tests
	 * that make sessions without an agent server: no shared bound. */
	heap_charge_fn model_charge;
	uint64_t models_forgotten; /* ended processes forgotten to make room */
	/* Request bytes control.c may still parse, and bytes agentsrv.c may
	 * still read from agent sockets, this loop turn. */
	struct turn_budget ctl_budget, feed_budget;
	struct limit_burst forget_burst;
	size_t ninheriting; /* fork children waiting for their parent's image */
	struct loopwatch loopwatch;
	struct yielder yield; /* the drain passes' priority (yield.h) */
	/* The HTTP connections' limit (metrics.c sets it), NULL without metrics. */
	const struct limit *http_conns;
	/* One scratch for every session's drain (drain.h), and the end of
	 * the loop time a query's drains may take together (0: none). */
	struct drain_scratch drain_scratch;
	uint64_t drain_until_ns;
	uint64_t drain_window_turn; /* uv_now of the turn it was opened in */
	bool stopping;
};

#endif
