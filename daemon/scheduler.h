/*
 * scheduler.h - when snapshots are taken and how long they are kept.
 *
 * Owns the snapshot store's lifetime and the periodic snapshot timer. The
 * store is opened in the state directory by scheduler_new and closed by
 * scheduler_free; in between it is d->store, which jobs and the control
 * server use too. Snapshots are taken every --snapshot-interval for each
 * live process, when a traced process ends (its socket closes, however it
 * died) and for every live process when the daemon stops; the agent server
 * calls scheduler_take for the last two. Each one is copied on the loop
 * thread (capture_take) and symbolized and written by a job on the libuv
 * thread pool, one transaction per snapshot, so ingest never waits for
 * SQLite; retention (--retain-snapshots, --retain-days) runs after each
 * write, in the same job. A queued snapshot holds its capture, not its
 * session, and is charged to its uid in d->snap_queue and d->snap_bytes:
 * past either bound (per uid or in all) the snapshot is not taken, which
 * the limit counts and logs. Shutdown snapshots are never refused.
 *
 * Loop thread only. The scheduler never answers clients (snapshots on
 * demand are the control server's jobs) and never renders metrics.
 */
#ifndef MEMTRACE_SCHEDULER_H
#define MEMTRACE_SCHEDULER_H

#include "daemon.h"
#include "session.h"

struct scheduler;

/* Opens the store (d->store) and starts the periodic timer. 0 with the
 * scheduler in *out, or -errno (logged) with *out and d->store NULL: the
 * daemon then runs without snapshots. d->jobs must exist. */
int scheduler_new(struct daemon *d, struct scheduler **out);
/* Stops the timer; the store stays open for the snapshots still being
 * written. NULL is a no-op. */
void scheduler_stop(struct scheduler *sc);
/* After the loop has finished every job: closes the store (d->store is
 * NULL again) and frees sc. NULL is a no-op. */
void scheduler_free(struct scheduler *sc);

/* Takes and stores a snapshot of s for `reason` ("exit", "detach", "shutdown")
 * without a client. Does nothing when sc is NULL (no store). */
void scheduler_take(struct scheduler *sc, struct session *s, const char *reason);

#endif
