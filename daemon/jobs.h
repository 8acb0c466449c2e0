/*
 * jobs.h - work that runs on the libuv thread pool, off the loop.
 *
 * Anything that may take file I/O (symbolizing a live heap, reading or
 * writing the SQLite store) is a job. A job is made on the loop thread
 * (job_new), filled by its caller and handed to job_run, which queues it
 * on the thread pool. On a worker the job first resolves its source (a
 * capture to symbolize, a stored snapshot, the newest stored snapshot of a
 * pid, or nothing), writes the resolved snapshot to the store and applies
 * retention when asked to (store_it), then calls the job's compute
 * function. Back on the loop thread it calls the job's done function and
 * frees the job. Workers touch only their job, the thread-safe symbol
 * cache and the store (which has its own mutex), never the loop's state.
 *
 * A write goes through the store's bounds (store.h): the job keeps what
 * the write did, and back on the loop the runner logs the first write of
 * a burst that deleted snapshots for a bound or was refused by one,
 * naming the bound, its option and the uid (limit.h's bursts).
 *
 * The runner (struct jobs, one per daemon, reached as d->jobs) counts the
 * jobs not done yet: a queued job keeps the loop running, so the daemon's
 * shutdown waits for every one, and jobs_free checks that none is left. It
 * also keeps the figures of the snapshot writes, which the Prometheus
 * endpoint reads when it renders, so nothing here calls back into the
 * modules that submit jobs. Its state is loop-thread only. It never decides
 * when snapshots are taken (that is the scheduler's).
 */
#ifndef MEMTRACE_JOBS_H
#define MEMTRACE_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "capture.h"
#include "daemon.h"
#include "snapshot.h"
#include "store.h"

struct job;

/* Runs on a worker with the job's snapshot (NULL when loading failed; then
 * job->rc and job->err say why). */
typedef void (*job_compute_fn)(struct job *job);
/* Runs on the loop thread when the job is done. The runner frees the job
 * (with its capture and snapshot) when it returns: what the caller keeps
 * must be taken out of the job first. */
typedef void (*job_done_fn)(struct job *job);

enum job_source {
	JOB_SRC_CAPTURE, /* resolve job->capture */
	JOB_SRC_STORED,  /* read snapshot job->snap_id */
	JOB_SRC_LATEST,  /* read the newest snapshot of job->pid (exit preferred) */
	JOB_SRC_NONE,    /* no snapshot: compute uses the store directly */
};

struct job {
	uv_work_t work;
	struct daemon *d;
	enum job_source source;
	struct capture *capture;
	int64_t snap_id;
	pid_t pid;
	long uid;           /* the asking client's uid, -1 = root (any) */
	bool store_it;      /* write the resolved snapshot to the store */
	bool written;       /* it was written, in write_seconds */
	bool deleted;       /* -ENOENT: the stored snapshot asked for was deleted (err says why) */
	bool bound_refused; /* a store bound refused it (logged per burst) */
	struct store_written stored; /* what the write did */
	pid_t stored_pid;            /* whose snapshot it was, kept for the log */
	uid_t stored_uid;
	char stored_reason[sizeof(((struct snapshot *)0)->reason)];
	double write_seconds;
	bool drop_early; /* free snapshot and capture on the worker, after compute */
	struct snapshot *snap;
	int rc;        /* 0, or -errno of the failed step */
	char err[256]; /* message for rc */
	void *arg;     /* the caller's */
	void *result;  /* the caller's, filled by compute */
	job_compute_fn compute;
	job_done_fn done;
};

/* Upper bounds, in seconds, of the buckets of the snapshot-write figures. */
#define JOBS_WRITE_BUCKETS 13
extern const double jobs_write_bounds[JOBS_WRITE_BUCKETS];

/* Snapshot writes (one SQLite transaction each) since the daemon started. */
struct jobs_writes {
	uint64_t bucket[JOBS_WRITE_BUCKETS]; /* took <= bounds[i] and > bounds[i-1] */
	uint64_t count;                      /* all of them, also beyond the last bound */
	double sum;                          /* their seconds */
};

struct jobs *jobs_new(void);
/* Makes the thread pool's threads now, with an empty job: they inherit the
 * scheduling policy of the thread that makes them, which must not be the
 * loop thread in a yielding pass (yield.h). */
void jobs_start_pool(struct jobs *j, uv_loop_t *loop);
/* After the loop has finished every job. NULL is a no-op. */
void jobs_free(struct jobs *j);
/* The snapshot-write figures; the pointer stays valid until jobs_free. */
const struct jobs_writes *jobs_writes(const struct jobs *j);

/* A new job of d's runner (zeroed, uid -1); the caller fills source and
 * callbacks. */
struct job *job_new(struct daemon *d);
/* Queues the job; it is freed after its done function returned. */
void job_run(struct job *job);

#endif
