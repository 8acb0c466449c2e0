/* scheduler.c - when snapshots are taken (see scheduler.h). */
#include "scheduler.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "capture.h"
#include "jobs.h"
#include "limit.h"
#include "log.h"
#include "session.h"
#include "sdnotify.h"
#include "store.h"
#include "xalloc.h"

/* Largest live blocks kept with each snapshot (for `traceback --snapshot`). */
#define SNAPSHOT_LARGEST 100

/* Loop time the periodic snapshots' captures take per turn. */
#define PERIODIC_SLICE_MS 8

struct scheduler {
	struct daemon *d;
	uv_timer_t timer; /* --snapshot-interval */
	uv_idle_t step;   /* the next slice of a periodic round */
	uint64_t cursor;  /* the round has taken the sessions with ids from this on */
};

/* What a queued snapshot keeps besides its capture: not the session, which
 * may be evicted (and freed) long before a busy store gets to it. */
struct take_arg {
	uint64_t session_id;
	pid_t pid;
	uid_t uid;
	size_t bytes;    /* charged to d->snap_bytes */
	bool counted;    /* charged to d->snap_queue and d->snap_bytes */
	char reason[16]; /* "periodic", "exit", ...: the capture's */
};

static struct session *session_by_id(struct daemon *d, uint64_t id)
{
	for (struct session *s = d->sessions; s != NULL; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void take_done(struct job *job)
{
	struct take_arg *a = job->arg;
	struct daemon *d = job->d;
	struct session *s = session_by_id(d, a->session_id);

	if (a->counted) {
		limit_give(&d->snap_queue, a->uid, 1);
		limit_give(&d->snap_bytes, a->uid, a->bytes);
	}
	if (s != NULL)
		s->snap_pending--;
	if (job->rc < 0 && job->bound_refused) /* jobs.c logged it, once per burst */
		log_debug("pid %d: %s snapshot not stored: %s", (int)a->pid, a->reason, job->err);
	else if (job->rc < 0)
		log_warn("pid %d: %s snapshot not stored: %s", (int)a->pid, a->reason, job->err);
	else {
		if (s != NULL)
			s->last_snapshot = job->stored.id;
		log_debug("pid %d: %s snapshot %" PRId64 " stored", (int)a->pid, a->reason,
		          job->stored.id);
		if (job->err[0] != '\0')
			log_warn("%s", job->err);
	}
	free(a);
}

void scheduler_take(struct scheduler *sc, struct session *s, const char *reason)
{
	if (sc == NULL || !s->hello)
		return;
	struct daemon *d = sc->d;
	/* The last snapshots at a stop are all taken: nobody can add more. */
	bool bounded = strcmp(reason, "shutdown") != 0;
	uint64_t now = uv_now(d->loop);
	char who[96];
	snprintf(who, sizeof(who), "uid %u (the %s snapshot of pid %d)", (unsigned)s->uid, reason,
	         (int)s->pid);
	if (bounded && limit_take(&d->snap_queue, s->uid, 1, now, who) < 0)
		return;
	struct capture *cap = capture_take(s, reason, SNAPSHOT_LARGEST);
	size_t bytes = capture_memory(cap);
	if (bounded && limit_take(&d->snap_bytes, s->uid, bytes, now, who) < 0) {
		limit_give(&d->snap_queue, s->uid, 1);
		capture_free(cap);
		return;
	}
	struct job *job = job_new(d);
	struct take_arg *a = xcalloc(1, sizeof(*a));
	a->session_id = s->id;
	a->pid = s->pid;
	a->uid = s->uid;
	a->bytes = bytes;
	a->counted = bounded;
	snprintf(a->reason, sizeof(a->reason), "%s", reason);
	s->snap_pending++;
	job->source = JOB_SRC_CAPTURE;
	job->capture = cap;
	job->store_it = true;
	job->arg = a;
	job->done = take_done;
	job->drop_early = true; /* take_done needs only what a and stored.id say */
	job_run(job);
}

static void on_step(uv_idle_t *h);

/* Takes the round's snapshots for a slice of loop time, the rest on the
 * next turn (a capture of a process whose modules changed copies its map).
 * The list is newest first, so ids fall along it: the round goes down from
 * the cursor, and processes that came after it started wait for the next. */
static void periodic_slice(struct scheduler *sc)
{
	uint64_t end = uv_hrtime() + (uint64_t)PERIODIC_SLICE_MS * 1000000u;

	uv_idle_stop(&sc->step);
	session_drain_window(sc->d, 20);
	for (struct session *s = sc->d->sessions; s != NULL; s = s->next) {
		if (s->id >= sc->cursor)
			continue;
		if (uv_hrtime() >= end) {
			uv_idle_start(&sc->step, on_step);
			return;
		}
		sc->cursor = s->id;
		/* A process whose previous snapshot is still being written
		 * skips this round rather than queueing up behind it. */
		if (s->state == SESSION_LIVE && s->hello && s->snap_pending == 0)
			scheduler_take(sc, s, "periodic");
	}
	sc->cursor = 0; /* the round is done */
}

static void on_step(uv_idle_t *h)
{
	periodic_slice(h->data);
}

static void on_periodic(uv_timer_t *t)
{
	struct scheduler *sc = t->data;

	if (sc->cursor != 0)
		return; /* the last round is not done yet */
	sc->cursor = UINT64_MAX;
	periodic_slice(sc);
}

int scheduler_new(struct daemon *d, struct scheduler **out)
{
	struct store *st = NULL;
	char *path = xasprintf("%s/%s", d->cfg.state_dir, STORE_FILE);
	char why[512];
	int rc;

	/* A store of an older schema is migrated in this open, which for a
	 * large one (millions of frames) takes longer than systemd's default
	 * start timeout: give it ten minutes. */
	sdnotify_send("EXTEND_TIMEOUT_USEC=600000000\nSTATUS=opening the snapshot store");
	rc = store_open(path, &st, why, sizeof(why));
	*out = NULL;
	if (rc < 0) {
		log_error("cannot open the snapshot store: %s", why);
		snprintf(d->store_error, sizeof(d->store_error), "%s", why);
		free(path);
		return rc;
	}
	struct store_usage u;
	store_usage(st, &u);
	uint64_t before = u.bytes;
	bool over = (d->cfg.max_store_bytes > 0 && u.bytes > d->cfg.max_store_bytes);
	for (size_t i = 0; i < u.nuids && d->cfg.max_store_bytes_per_uid > 0; i++)
		over = over || u.uids[i].bytes > d->cfg.max_store_bytes_per_uid;
	store_usage_free(&u);
	if (over)
		log_warn(
		    "the snapshot store holds %" PRIu64 " bytes, more than its bounds now "
		    "allow (--max-store-bytes %" PRIu64 ", --max-store-bytes-per-uid %" PRIu64
		    "; lowered since it was filled?): deleting the oldest snapshots of each uid "
		    "past its own bound, then of whoever holds the most, until it is within them",
		    before, d->cfg.max_store_bytes, d->cfg.max_store_bytes_per_uid);
	struct store_written w;
	rc = store_set_bounds(st, d->cfg.max_store_bytes, d->cfg.max_store_bytes_per_uid, &w);
	if (rc < 0) {
		log_error("cannot keep the snapshot store's bounds: %s", store_errmsg(st));
		snprintf(d->store_error, sizeof(d->store_error), "keeping the bounds: %s",
		         store_errmsg(st));
		store_close(st);
		free(path);
		return rc;
	}
	char uids[512];
	if (w.evicted_own > 0) {
		store_evicted_text(&w, true, uids, sizeof(uids));
		log_warn("limit store_bytes reached at start: %zu snapshots deleted for "
		         "--max-store-bytes-per-uid (%" PRIu64 " bytes) (%s, the oldest first)",
		         w.evicted_own, d->cfg.max_store_bytes_per_uid, uids);
	}
	if (w.evicted_total > 0) {
		store_evicted_text(&w, false, uids, sizeof(uids));
		log_warn("limit store_bytes reached at start: %zu snapshots deleted for "
		         "--max-store-bytes (%" PRIu64
		         " bytes) (%s, the oldest of whoever held the "
		         "most first)",
		         w.evicted_total, d->cfg.max_store_bytes, uids);
	}
	store_usage(st, &u);
	log_info("snapshots in %s (every %gs, keep %u per process, %g days; %" PRIu64
	         " bytes stored of at most %" PRIu64 ", %" PRIu64 " per uid)",
	         path, d->cfg.snapshot_interval, d->cfg.retain_snapshots, d->cfg.retain_days,
	         u.bytes, u.max_bytes, u.max_bytes_per_uid);
	store_usage_free(&u);
	free(path);

	struct scheduler *sc = xcalloc(1, sizeof(*sc));
	sc->d = d;
	d->store = st;
	uv_timer_init(d->loop, &sc->timer);
	sc->timer.data = sc;
	uv_idle_init(d->loop, &sc->step);
	sc->step.data = sc;
	if (d->cfg.snapshot_interval > 0) {
		uint64_t ms = (uint64_t)(d->cfg.snapshot_interval * 1000.0);
		if (ms == 0)
			ms = 1;
		uv_timer_start(&sc->timer, on_periodic, ms, ms);
	}
	*out = sc;
	return 0;
}

void scheduler_stop(struct scheduler *sc)
{
	if (sc != NULL && !uv_is_closing((uv_handle_t *)&sc->timer))
		uv_close((uv_handle_t *)&sc->timer, NULL);
	if (sc != NULL && !uv_is_closing((uv_handle_t *)&sc->step))
		uv_close((uv_handle_t *)&sc->step, NULL);
}

void scheduler_free(struct scheduler *sc)
{
	if (sc == NULL)
		return;
	store_close(sc->d->store);
	sc->d->store = NULL;
	free(sc);
}
