/*
 * daemon.h - memtraced's context: the one struct that holds the daemon's
 * state (there are no other globals). Every libuv handle's data points back
 * here or to a session that points here.
 *
 * Threads: everything in this struct is owned by the loop thread. Work sent
 * to the libuv thread pool (symbolization) receives copies of what it needs
 * and touches nothing here.
 */
#ifndef MEMTRACE_DAEMON_H
#define MEMTRACE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

struct conn;
struct metrics;
struct session;
struct store;
struct symbols;

struct daemon_config {
	char *runtime_dir;
	char *state_dir;
	size_t max_sessions; /* live sessions */
	size_t max_exited;   /* exited sessions kept in memory */
	size_t max_blocks;   /* per session */
	size_t max_stacks;   /* per session */
	bool debuginfod;
	double snapshot_interval;  /* seconds, 0 = no periodic snapshots */
	unsigned retain_snapshots; /* per process, 0 = no limit */
	double retain_days;        /* 0 = no limit */
	char *metrics_listen;      /* "ADDR:PORT", or "off" */
	bool metrics_explicit;     /* given with --metrics-listen: failing to serve is fatal */
	size_t metrics_top_sites;  /* site series per process (besides "other") */
};

struct daemon {
	uv_loop_t *loop;
	struct daemon_config cfg;
	char *agent_path;
	char *control_path;
	int agent_fd, control_fd; /* listening sockets systemd passed, else -1 */
	uv_pipe_t agent_srv;
	uv_pipe_t control_srv;
	uv_signal_t sig_term;
	uv_signal_t sig_int;
	struct session *sessions; /* newest first; live and exited */
	struct conn *conns;       /* control connections */
	size_t nlive, nexited;
	uint64_t next_session_id;
	uint64_t events_total;
	uint64_t sessions_rejected;
	uint64_t started_ms; /* uv_now at start */
	struct symbols *syms;
	struct store *store;     /* NULL when it could not be opened */
	struct metrics *metrics; /* NULL when metrics are off */
	uv_timer_t snap_timer;
	size_t jobs_running; /* thread-pool jobs not done yet */
	bool stopping;
};

#endif
