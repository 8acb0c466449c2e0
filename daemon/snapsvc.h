/*
 * snapsvc.h - when snapshots are taken, and the jobs that run off the loop.
 *
 * Owns the SQLite store handle, the periodic snapshot timer and retention.
 * Snapshots are taken every --snapshot-interval for each live process, on
 * demand, when a traced process ends (its socket closes, however it died)
 * and for every live process when the daemon stops. Each one is copied on
 * the loop thread (capture_take) and symbolized and written on the libuv
 * thread pool, one transaction per snapshot, so ingest never waits for
 * SQLite. Retention (--retain-snapshots, --retain-days) runs after writes.
 *
 * The same job type serves the control server's queries that need the thread
 * pool (symbolizing a live heap, reading stored snapshots): snapsvc_run
 * resolves a capture or loads a stored snapshot on a worker, calls the job's
 * compute function there, and its done function back on the loop thread.
 */
#ifndef MEMTRACE_SNAPSVC_H
#define MEMTRACE_SNAPSVC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "capture.h"
#include "daemon.h"
#include "snapshot.h"

struct snapsvc_job;

/* Runs on a worker with the job's snapshot (NULL when loading failed; then
 * job->rc and job->err say why). */
typedef void (*snapsvc_compute_fn)(struct snapsvc_job *job);
/* Runs on the loop thread when the job is done; must free job->resp if it
 * keeps it, then the job is freed by snapsvc. */
typedef void (*snapsvc_done_fn)(struct snapsvc_job *job);

enum snapsvc_source {
	SNAPSVC_CAPTURE, /* resolve job->capture */
	SNAPSVC_STORED,  /* read snapshot job->snap_id */
	SNAPSVC_LATEST,  /* read the newest snapshot of job->pid (exit preferred) */
	SNAPSVC_NONE,    /* no snapshot: compute uses the store directly */
};

struct snapsvc_job {
	uv_work_t work;
	struct daemon *d;
	enum snapsvc_source source;
	struct capture *capture;
	int64_t snap_id;
	pid_t pid;
	long uid;      /* the asking client's uid, -1 = root (any) */
	bool store_it; /* write the resolved snapshot to the store */
	bool written;  /* it was written, in write_seconds (for metrics) */
	double write_seconds;
	bool drop_early; /* free snapshot and capture on the worker, after compute */
	struct snapshot *snap;
	int rc;        /* 0, or -errno of the failed step */
	char err[256]; /* message for rc */
	void *arg;     /* the caller's */
	void *result;  /* the caller's, filled by compute */
	snapsvc_compute_fn compute;
	snapsvc_done_fn done;
};

/* Opens the store in the state dir and starts the timers. 0 or -errno. */
int snapsvc_start(struct daemon *d);
/* Stops the timers (the store stays open until snapsvc_close). */
void snapsvc_stop(struct daemon *d);
/* After the loop has finished every job. */
void snapsvc_close(struct daemon *d);

/* A new job (zeroed); the caller fills source and callbacks. */
struct snapsvc_job *snapsvc_job_new(struct daemon *d);
void snapsvc_run(struct snapsvc_job *job);

/* Takes and stores a snapshot of s for `reason` without a client. */
void snapsvc_take(struct daemon *d, struct session *s, const char *reason);

#endif
