/* jobs.c - work on the libuv thread pool (see jobs.h). */
#include "jobs.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limit.h"
#include "log.h"
#include "store.h"
#include "symbols.h"
#include "xalloc.h"

/* Frames and traces past which freeing a snapshot gives its memory back
 * to the system (malloc_trim, on the worker). */
#define TRIM_ENTRIES 65536

struct jobs {
	size_t running; /* queued, done not called yet: 0 when the loop has returned */
	uv_work_t warm; /* jobs_start_pool's */
	struct jobs_writes writes;
	uint64_t syms_retired, syms_full; /* what the log has said of them */
	/* Writes a store bound refused, per bound, for the log. */
	struct limit_burst per_uid_refused, total_refused;
	/* Writes that made a store bound delete snapshots, per bound. */
	struct evict_burst {
		struct limit_burst b;
		struct store_written sum; /* what the burst deleted */
	} per_uid_evicted, total_evicted;
};

const double jobs_write_bounds[JOBS_WRITE_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10};

static void evict_burst_close(struct evict_burst *e, bool own);

struct jobs *jobs_new(void)
{
	return xcalloc(1, sizeof(struct jobs));
}

static void warm_nothing(uv_work_t *w)
{
	(void)w;
}

static void warm_done(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
}

void jobs_start_pool(struct jobs *j, uv_loop_t *loop)
{
	uv_queue_work(loop, &j->warm, warm_nothing, warm_done);
}

void jobs_free(struct jobs *j)
{
	if (j == NULL)
		return;
	/* The loop returns only when no work is queued. */
	assert(j->running == 0);
	/* A burst still going is over: say what it deleted. */
	evict_burst_close(&j->per_uid_evicted, true);
	evict_burst_close(&j->total_evicted, false);
	free(j);
}

const struct jobs_writes *jobs_writes(const struct jobs *j)
{
	return &j->writes;
}

/* Loop thread: one snapshot write of `seconds` into the figures. */
static void observe_write(struct jobs_writes *w, double seconds)
{
	if (!(seconds >= 0))
		return;
	for (size_t i = 0; i < JOBS_WRITE_BUCKETS; i++) {
		if (seconds <= jobs_write_bounds[i]) {
			w->bucket[i]++;
			break;
		}
	}
	w->count++;
	w->sum += seconds;
}

struct job *job_new(struct daemon *d)
{
	struct job *job = xcalloc(1, sizeof(*job));
	job->d = d;
	job->uid = -1;
	job->work.data = job;
	return job;
}

static void job_free(struct job *job)
{
	capture_free(job->capture);
	snapshot_free(job->snap);
	free(job);
}

static void job_fail(struct job *job, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(struct job *job, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job->err, sizeof(job->err), fmt, ap);
	va_end(ap);
	job->rc = rc;
}

/* Snapshot id is not stored: when a bound or retention deleted it (and it
 * was the asking uid's), says so in the job's error. */
static bool deleted_by(struct job *job, int64_t id)
{
	enum store_deleted_by why;
	char when[64] = "";
	double at;
	uid_t uid;

	if (store_deleted(job->d->store, id, &uid, &why, &at) != 0)
		return false;
	if (job->uid >= 0 && (long)uid != job->uid)
		return false; /* another user's does not exist for this client */
	time_t t = (time_t)at;
	struct tm tm;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), " at %Y-%m-%dT%H:%M:%SZ", &tm);
	job_fail(job, -ENOENT, "snapshot %" PRId64 " was deleted%s to keep %s", id, when,
	         store_deleted_by_option(why));
	job->deleted = true;
	return true;
}

static void load(struct job *job)
{
	struct daemon *d = job->d;
	int64_t id = job->snap_id;
	int rc;

	switch (job->source) {
	case JOB_SRC_NONE:
		return;
	case JOB_SRC_CAPTURE:
		job->snap = capture_resolve(job->capture, d->syms);
		return;
	case JOB_SRC_LATEST:
		if (d->store == NULL) {
			job_fail(job, -ENOENT, "no traced process with pid %d", (int)job->pid);
			return;
		}
		rc = store_latest(d->store, job->pid, job->uid, 1, &id);
		if (rc == -ENOENT) {
			job_fail(job, -ENOENT, "no traced process with pid %d", (int)job->pid);
			return;
		}
		if (rc < 0) {
			job_fail(job, rc, "snapshot store: %s", store_errmsg(d->store));
			return;
		}
		break;
	case JOB_SRC_STORED:
		break;
	}
	if (d->store == NULL) {
		job_fail(job, -EIO, "the snapshot store is not open: %.200s", d->store_error);
		return;
	}
	rc = store_read(d->store, id, &job->snap);
	if (rc == 0 && job->uid >= 0 && (long)job->snap->uid != job->uid) {
		/* Another user's snapshot does not exist for this client. */
		snapshot_free(job->snap);
		job->snap = NULL;
		rc = -ENOENT;
	}
	if (rc == -ENOENT && job->source == JOB_SRC_STORED && deleted_by(job, id))
		return;
	if (rc == -ENOENT)
		job_fail(job, -ENOENT, "no snapshot %" PRId64, id);
	else if (rc < 0)
		job_fail(job, rc, "snapshot store: %s", store_errmsg(d->store));
}

/* Worker: writes the job's snapshot within the store's bounds, then
 * applies retention. */
static void store_job_snapshot(struct job *job)
{
	struct daemon *d = job->d;
	struct timespec t0, t1;
	size_t deleted = 0;
	int rc;

	if (d->store == NULL) {
		job_fail(job, -EIO, "the snapshot store is not open: %.200s", d->store_error);
		return;
	}
	job->stored_pid = job->snap->pid;
	job->stored_uid = job->snap->uid;
	memcpy(job->stored_reason, job->snap->reason, sizeof(job->stored_reason));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = store_write_bounded(d->store, job->snap, &job->stored);
	if (rc < 0) {
		job->bound_refused = rc == -EFBIG || rc == -ENOSPC;
		job_fail(job, job->bound_refused ? rc : -EIO, "snapshot store: %s",
		         store_errmsg(d->store));
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	job->written = true;
	job->write_seconds =
	    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	job->snap->id = job->stored.id;
	if (store_retain(d->store, d->cfg.retain_snapshots, d->cfg.retain_days, &deleted) < 0)
		snprintf(job->err, sizeof(job->err), "retention: %s", store_errmsg(d->store));
}

static void work_run(uv_work_t *w)
{
	struct job *job = w->data;

	load(job);
	if (job->rc == 0 && job->store_it && job->snap != NULL)
		store_job_snapshot(job);
	if (job->compute != NULL)
		job->compute(job);
	if (job->drop_early) {
		/* Freeing a large snapshot takes milliseconds: not on the loop. */
		bool big =
		    job->snap != NULL && job->snap->nframes + job->snap->ntraces > TRIM_ENTRIES;
		snapshot_free(job->snap);
		job->snap = NULL;
		capture_free(job->capture);
		job->capture = NULL;
		/* What a large snapshot used stays in this thread's malloc
		 * arena otherwise, free but resident (8 snapshots of 2 M frames
		 * each: 1.2 GB of RSS instead of 0.3). */
		if (big)
			malloc_trim(0);
	}
}

/* The symbol cache's bounds, named in the log when a job passed them
 * (symbols.c may not log: it runs on the pool). */
static void log_symbol_bounds(struct daemon *d)
{
	struct jobs *j = d->jobs;
	struct symbols_stats ss;

	symbols_get_stats(d->syms, &ss);
	if (ss.uids_full != j->syms_full) {
		struct symbols_uid su[SYMBOLS_UIDS_SHOWN];
		size_t n = symbols_uids(d->syms, su, SYMBOLS_UIDS_SHOWN), len = 0;
		char who[256] = "";
		for (size_t i = 0; i < n && len + 16 < sizeof(who); i++)
			if (su[i].full)
				len += (size_t)snprintf(who + len, sizeof(who) - len, "%s%u",
				                        len > 0 ? ", " : "", (unsigned)su[i].uid);
		log_warn("symbol cache: uid %s reached its share (%zu bytes, a quarter of "
		         "--max-symbol-cache-bytes): their new frames are resolved without being "
		         "cached, so only their snapshots get slower; nothing is lost",
		         len > 0 ? who : "?", ss.per_uid);
	}
	if (ss.retired != j->syms_retired)
		log_warn("symbol cache passed --max-symbol-cache-bytes (%zu bytes): started afresh "
		         "(%" PRIu64 " time(s) since start)",
		         ss.max_bytes, ss.retired);
	j->syms_full = ss.uids_full;
	j->syms_retired = ss.retired;
}

/* Loop thread: the closing line of a burst that had more writes than its
 * first line told of; the burst is over. */
static void evict_burst_close(struct evict_burst *e, bool own)
{
	char uids[512];

	if (e->b.count > 1) {
		store_evicted_text(&e->sum, own, uids, sizeof(uids));
		log_warn("limit store_bytes: %zu snapshots deleted in all for %s in the burst of "
		         "%" PRIu64 " writes that ended (%s)",
		         own ? e->sum.evicted_own : e->sum.evicted_total,
		         own ? "--max-store-bytes-per-uid" : "--max-store-bytes", e->b.count, uids);
	}
	memset(e, 0, sizeof(*e));
}

/* Loop thread: one more write w that made a bound (--max-store-bytes-per-uid
 * when own) delete snapshots. True when it begins a burst: the caller logs
 * it. When the previous burst had more than that first write, says first
 * what the whole burst deleted. */
static bool evict_burst_hit(struct evict_burst *e, uint64_t now, const struct store_written *w,
                            bool own)
{
	if (now - e->b.last_ms >= LIMIT_BURST_MS)
		evict_burst_close(e, own);
	bool first = limit_burst_hit(&e->b, now, "store_bytes", NULL);
	if (first)
		memset(&e->sum, 0, sizeof(e->sum));
	for (size_t i = 0; i < w->nevicted; i++) {
		size_t k = own ? w->evicted[i].own : w->evicted[i].total;
		size_t j;
		for (j = 0; j < e->sum.nevicted && e->sum.evicted[j].uid != w->evicted[i].uid; j++)
			;
		if (j == e->sum.nevicted) {
			if (j == STORE_EVICTED_UIDS) {
				if (own)
					e->sum.more_own += k;
				else
					e->sum.more_total += k;
				continue;
			}
			e->sum.evicted[j].uid = w->evicted[i].uid;
			e->sum.nevicted++;
		}
		if (own)
			e->sum.evicted[j].own += k;
		else
			e->sum.evicted[j].total += k;
	}
	e->sum.more_own += w->more_own;
	e->sum.more_total += w->more_total;
	if (own)
		e->sum.evicted_own += w->evicted_own;
	else
		e->sum.evicted_total += w->evicted_total;
	return first;
}

/* Loop thread: the log lines of a store bound, once per burst. */
static void log_bounds(struct jobs *j, const struct daemon *d, const struct job *job)
{
	const struct store_written *w = &job->stored;
	uint64_t now = uv_now(d->loop);
	unsigned uid = (unsigned)job->stored_uid;
	int pid = (int)job->stored_pid;
	const char *reason = job->stored_reason;
	char uids[512];

	if (job->bound_refused) {
		bool per_uid =
		    d->cfg.max_store_bytes_per_uid > 0 && w->bytes > d->cfg.max_store_bytes_per_uid;
		bool alone = job->rc == -EFBIG;
		if (!limit_burst_hit(per_uid ? &j->per_uid_refused : &j->total_refused, now,
		                     "store_bytes", "refused snapshot writes:"))
			return;
		if (alone)
			log_warn("limit store_bytes reached: the %s snapshot of pid %d (uid %u) is "
			         "charged %" PRIu64 " bytes, more than %s (%" PRIu64
			         "); not stored "
			         "(logged once per burst)",
			         reason, pid, uid, w->bytes,
			         per_uid ? "--max-store-bytes-per-uid" : "--max-store-bytes",
			         per_uid ? d->cfg.max_store_bytes_per_uid : d->cfg.max_store_bytes);
		else
			log_warn("limit store_bytes reached: the other uids hold the rest of "
			         "--max-store-bytes (%" PRIu64 "), each less than uid %u; the %s "
			         "snapshot of pid %d is not stored (logged once per burst)",
			         d->cfg.max_store_bytes, uid, reason, pid);
		return;
	}
	if (!job->written)
		return;
	if (w->evicted_own > 0 && evict_burst_hit(&j->per_uid_evicted, now, w, true)) {
		store_evicted_text(w, true, uids, sizeof(uids));
		log_warn("limit store_bytes reached: %zu snapshots deleted for "
		         "--max-store-bytes-per-uid (%" PRIu64 " bytes) at the %s snapshot of pid "
		         "%d (%s, the oldest first); uid %u holds %" PRIu64
		         " bytes now (logged once per burst)",
		         w->evicted_own, d->cfg.max_store_bytes_per_uid, reason, pid, uids, uid,
		         w->uid_bytes);
	}
	if (w->evicted_total > 0 && evict_burst_hit(&j->total_evicted, now, w, false)) {
		store_evicted_text(w, false, uids, sizeof(uids));
		log_warn("limit store_bytes reached: %zu snapshots deleted for --max-store-bytes "
		         "(%" PRIu64 " bytes) at the %s snapshot of pid %d, uid %u (%s, the oldest "
		         "of whoever held the most first); the store holds %" PRIu64
		         " bytes now (logged once per burst)",
		         w->evicted_total, d->cfg.max_store_bytes, reason, pid, uid, uids,
		         w->total_bytes);
	}
}

static void work_done(uv_work_t *w, int status)
{
	struct job *job = w->data;
	(void)status;
	log_symbol_bounds(job->d);
	job->d->jobs->running--;
	if (job->written)
		observe_write(&job->d->jobs->writes, job->write_seconds);
	log_bounds(job->d->jobs, job->d, job);
	if (job->done != NULL)
		job->done(job);
	job_free(job);
}

void job_run(struct job *job)
{
	job->d->jobs->running++;
	if (uv_queue_work(job->d->loop, &job->work, work_run, work_done) < 0) {
		/* Only fails for a bad argument; do the work inline as a last
		 * resort rather than losing it. */
		work_run(&job->work);
		work_done(&job->work, 0);
	}
}
