/* snapsvc.c - snapshot timing, storage and thread-pool jobs (see snapsvc.h). */
#include "snapsvc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "session.h"
#include "store.h"
#include "symbols.h"
#include "xalloc.h"

/* Largest live blocks kept with each snapshot (for `traceback --snapshot`). */
#define SNAPSHOT_LARGEST 100

struct snapsvc_job *snapsvc_job_new(struct daemon *d)
{
	struct snapsvc_job *job = xcalloc(1, sizeof(*job));
	job->d = d;
	job->uid = -1;
	job->work.data = job;
	return job;
}

static void job_free(struct snapsvc_job *job)
{
	capture_free(job->capture);
	snapshot_free(job->snap);
	free(job);
}

static void job_fail(struct snapsvc_job *job, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(struct snapsvc_job *job, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job->err, sizeof(job->err), fmt, ap);
	va_end(ap);
	job->rc = rc;
}

static void load(struct snapsvc_job *job)
{
	struct daemon *d = job->d;
	int64_t id = job->snap_id;
	int rc;

	switch (job->source) {
	case SNAPSVC_NONE:
		return;
	case SNAPSVC_CAPTURE:
		job->snap = capture_resolve(job->capture, d->syms);
		return;
	case SNAPSVC_LATEST:
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
	case SNAPSVC_STORED:
		break;
	}
	if (d->store == NULL) {
		job_fail(job, -ENOENT, "no snapshot %" PRId64, id);
		return;
	}
	rc = store_read(d->store, id, &job->snap);
	if (rc == 0 && job->uid >= 0 && (long)job->snap->uid != job->uid) {
		/* Another user's snapshot does not exist for this client. */
		snapshot_free(job->snap);
		job->snap = NULL;
		rc = -ENOENT;
	}
	if (rc == -ENOENT)
		job_fail(job, -ENOENT, "no snapshot %" PRId64, id);
	else if (rc < 0)
		job_fail(job, rc, "snapshot store: %s", store_errmsg(d->store));
}

static void work_run(uv_work_t *w)
{
	struct snapsvc_job *job = w->data;
	struct daemon *d = job->d;

	load(job);
	if (job->rc == 0 && job->store_it && job->snap != NULL) {
		struct timespec t0, t1;
		int64_t id;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (d->store == NULL) {
			job_fail(job, -EIO, "no snapshot store");
		} else if (store_write(d->store, job->snap, &id) < 0) {
			job_fail(job, -EIO, "snapshot store: %s", store_errmsg(d->store));
		} else {
			size_t deleted = 0;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			job->written = true;
			job->write_seconds = (double)(t1.tv_sec - t0.tv_sec) +
			                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
			job->snap->id = id;
			if (store_retain(d->store, d->cfg.retain_snapshots, d->cfg.retain_days,
			                 &deleted) < 0)
				snprintf(job->err, sizeof(job->err), "retention: %s",
				         store_errmsg(d->store));
		}
	}
	if (job->compute != NULL)
		job->compute(job);
	if (job->drop_early) {
		/* Freeing a large snapshot takes milliseconds: not on the loop. */
		snapshot_free(job->snap);
		job->snap = NULL;
		capture_free(job->capture);
		job->capture = NULL;
	}
}

static void work_done(uv_work_t *w, int status)
{
	struct snapsvc_job *job = w->data;
	(void)status;
	job->d->jobs_running--;
	if (job->written)
		metrics_observe_snapshot_write(job->d, job->write_seconds);
	if (job->done != NULL)
		job->done(job);
	job_free(job);
}

void snapsvc_run(struct snapsvc_job *job)
{
	job->d->jobs_running++;
	if (uv_queue_work(job->d->loop, &job->work, work_run, work_done) < 0) {
		/* Only fails for a bad argument; do the work inline as a last
		 * resort rather than losing it. */
		work_run(&job->work);
		work_done(&job->work, 0);
	}
}

/* ---- snapshots without a client: periodic, exit, shutdown ---- */

struct take_arg {
	struct session *s;
};

static void take_done(struct snapsvc_job *job)
{
	struct take_arg *a = job->arg;
	struct session *s = a->s;

	s->snap_pending--;
	if (job->rc < 0)
		log_warn("pid %d: %s snapshot not stored: %s", (int)s->pid,
		         job->snap != NULL ? job->snap->reason : "a", job->err);
	else {
		s->last_snapshot = job->snap->id;
		log_debug("pid %d: %s snapshot %" PRId64 " stored", (int)s->pid, job->snap->reason,
		          job->snap->id);
		if (job->err[0] != '\0')
			log_warn("%s", job->err);
	}
	session_unref(s);
	free(a);
}

void snapsvc_take(struct daemon *d, struct session *s, const char *reason)
{
	if (d->store == NULL || !s->hello)
		return;
	struct snapsvc_job *job = snapsvc_job_new(d);
	struct take_arg *a = xcalloc(1, sizeof(*a));
	a->s = s;
	session_ref(s);
	s->snap_pending++;
	job->source = SNAPSVC_CAPTURE;
	job->capture = capture_take(s, reason, SNAPSHOT_LARGEST);
	job->store_it = true;
	job->arg = a;
	job->done = take_done;
	snapsvc_run(job);
}

static void on_periodic(uv_timer_t *t)
{
	struct daemon *d = t->data;
	for (struct session *s = d->sessions; s != NULL; s = s->next) {
		/* A process whose previous snapshot is still being written
		 * skips this round rather than queueing up behind it. */
		if (s->state == SESSION_LIVE && s->hello && s->snap_pending == 0)
			snapsvc_take(d, s, "periodic");
	}
}

int snapsvc_start(struct daemon *d)
{
	char *path = xasprintf("%s/%s", d->cfg.state_dir, STORE_FILE);
	int rc = store_open(path, &d->store);
	if (rc < 0) {
		log_error("cannot open the snapshot store %s: %s", path,
		          d->store != NULL ? store_errmsg(d->store) : strerror(-rc));
		store_close(d->store);
		d->store = NULL;
		free(path);
		return rc;
	}
	log_info("snapshots in %s (every %gs, keep %u per process, %g days)", path,
	         d->cfg.snapshot_interval, d->cfg.retain_snapshots, d->cfg.retain_days);
	free(path);
	uv_timer_init(d->loop, &d->snap_timer);
	d->snap_timer.data = d;
	if (d->cfg.snapshot_interval > 0) {
		uint64_t ms = (uint64_t)(d->cfg.snapshot_interval * 1000.0);
		if (ms == 0)
			ms = 1;
		uv_timer_start(&d->snap_timer, on_periodic, ms, ms);
	}
	return 0;
}

void snapsvc_stop(struct daemon *d)
{
	if (d->store != NULL && !uv_is_closing((uv_handle_t *)&d->snap_timer))
		uv_close((uv_handle_t *)&d->snap_timer, NULL);
}

void snapsvc_close(struct daemon *d)
{
	store_close(d->store);
	d->store = NULL;
}
