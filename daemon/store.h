/*
 * store.h - the snapshot store: one SQLite database in the state directory.
 *
 * The store keeps snapshots (struct snapshot, see snapshot.h) of every traced
 * process. Frames and stacks are stored once and shared between snapshots, so
 * periodic snapshots of a steady process cost a row per live stack and little
 * else. The schema is versioned with PRAGMA user_version and migrated forward
 * on open; WAL, synchronous=NORMAL, busy_timeout and foreign_keys are set on
 * every connection (Debian's defaults differ). A snapshot is written in one
 * transaction: after store_write returns 0 it survives a kill -9 of the daemon.
 *
 * Threads: the daemon calls the store only from the libuv thread pool, never
 * from the loop thread (writes take milliseconds to seconds). An internal
 * mutex serializes all calls on one connection. Errors come back as negative
 * errno values (-EIO for SQLite failures, -ENOENT for a missing snapshot);
 * store_errmsg gives SQLite's message of the last failure for the log.
 *
 * Bounds. Every stored snapshot is charged its bytes (store_charge: what
 * its rows and blobs hold, as if it shared nothing with the others; the
 * sum of the charges is therefore at least what the tables hold) to the
 * uid of its process, in a column of its own. The charges per uid are kept
 * in memory, recomputed at open (and whenever another connection changed
 * the file), and updated in the same transaction as each write and
 * deletion. store_write keeps each uid within max_bytes_per_uid and all
 * uids within max_bytes (store_set_bounds, 0 = no bound) by deleting
 * snapshots in that transaction: past its own bound a uid loses its oldest
 * snapshots (by the order they were stored), past the total the uid that
 * holds the most loses its oldest, so a uid never loses a snapshot to the
 * total while another holds more than it. The snapshot being written is
 * never deleted to make room: one charged more than either bound is
 * refused (-EFBIG), and one that could only fit by deleting itself (others
 * hold the rest of the total and each holds less than its uid) is refused
 * (-ENOSPC), with nothing changed. store_usage hands out the figures
 * without waiting for a write: they sit behind a second, short-held mutex.
 */
#ifndef MEMTRACE_STORE_H
#define MEMTRACE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "snapshot.h"

#define STORE_SCHEMA_VERSION 8
#define STORE_FILE           "memtrace.db"

struct store;

/* Opens (creating and migrating) the database at path, a file of mode
 * 0600 (made so if it is not). On failure *out is NULL and err (errlen
 * bytes, may be NULL) says why, naming the file: -EROFS when memtraced may
 * not write it, -EPROTO for a newer schema, -EIO for everything else (not a
 * database, broken, not a regular file). */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *st); /* NULL is a no-op */
const char *store_errmsg(struct store *st);

/* The bytes a snapshot is charged (see the top): STORE_CHARGE_SNAPSHOT, its
 * exe and its arguments as stored (the JSON array text, where a control
 * byte is six bytes); per trace
 * STORE_CHARGE_TRACE plus STORE_CHARGE_FRAME_REF per frame of its stack;
 * per largest block STORE_CHARGE_LARGEST; per distinct frame its traces use
 * STORE_CHARGE_FRAME plus its filename, function and module. */
#define STORE_CHARGE_SNAPSHOT  64
#define STORE_CHARGE_TRACE     32
#define STORE_CHARGE_FRAME_REF 12
#define STORE_CHARGE_LARGEST   32
#define STORE_CHARGE_FRAME     16
uint64_t store_charge(const struct snapshot *s);

/* The most uids whose deleted snapshots one write counts one by one. */
#define STORE_EVICTED_UIDS 16

/* The snapshots a bound deleted for one uid. */
struct store_evicted_uid {
	uid_t uid;
	size_t own;   /* for max_bytes_per_uid */
	size_t total; /* for max_bytes */
};

/* What one write (or store_set_bounds) did. */
struct store_written {
	int64_t id;           /* the new snapshot's id */
	uint64_t bytes;       /* its charge */
	uint64_t uid_bytes;   /* what its uid holds now (also on a refusal) */
	uint64_t total_bytes; /* what all uids hold now */
	size_t evicted_own;   /* snapshots deleted for max_bytes_per_uid, all uids */
	size_t evicted_total; /* snapshots deleted for max_bytes, all uids */
	/* Per uid that lost snapshots, in the order they did; the snapshots of
	 * uids past STORE_EVICTED_UIDS are counted in more_own and
	 * more_total. The sums over evicted[] and more_* are evicted_own and
	 * evicted_total. */
	size_t nevicted;
	struct store_evicted_uid evicted[STORE_EVICTED_UIDS];
	size_t more_own, more_total;
};

/* Sets the bounds store_write keeps, in charged bytes (0 = no bound), and
 * keeps them at once: a store opened with lower bounds than it was filled
 * with loses snapshots now, the same way a write would make them go (past
 * its own bound a uid loses its oldest; past the total the uid holding the
 * most loses its oldest), reported in *w. Call it before the first write;
 * it is not meant to change while writes run. */
int store_set_bounds(struct store *st, uint64_t max_bytes, uint64_t max_bytes_per_uid,
                     struct store_written *w);

/* Why a snapshot was deleted: kept for the newest STORE_DELETED_KEEP
 * deleted ids (across restarts, in the database), so that asking for one
 * can say so. */
enum store_deleted_by {
	STORE_BY_PER_UID = 1,  /* max_bytes_per_uid */
	STORE_BY_TOTAL,        /* max_bytes */
	STORE_BY_RETAIN_COUNT, /* store_retain's keep_per_process */
	STORE_BY_RETAIN_AGE,   /* store_retain's max_age_days */
};
#define STORE_DELETED_KEEP 4096
/* Snapshot id's owner, why and when (Unix time) it was deleted; -ENOENT
 * when it is not known as deleted. */
int store_deleted(struct store *st, int64_t id, uid_t *uid, enum store_deleted_by *why, double *at);
/* The memtraced option behind why: "--max-store-bytes-per-uid". */
const char *store_deleted_by_option(enum store_deleted_by why);

/* "uid 1000: 2, uid 1001: 1": the snapshots w says were deleted for
 * max_bytes_per_uid (own) or max_bytes, per uid, for the log. */
void store_evicted_text(const struct store_written *w, bool own, char *buf, size_t len);

/* The bytes the database takes on disk: the file and its WAL (0 for an
 * in-memory one). Takes no lock: the loop thread may call it. */
int store_file_bytes(struct store *st, uint64_t *bytes);

/* Writes s (id is ignored) in one transaction, then keeps the bounds (see
 * the top); sets *id. -EFBIG or -ENOSPC when a bound refuses s. */
int store_write(struct store *st, const struct snapshot *s, int64_t *id);
/* store_write, saying what it did in *out (filled also on a refusal). */
int store_write_bounded(struct store *st, const struct snapshot *s, struct store_written *out);
/* Reads snapshot id in full. -ENOENT if there is none. */
int store_read(struct store *st, int64_t id, struct snapshot **out);
/* The summaries of stored snapshots, oldest first, as a cJSON array of
 * snapshot_summary_json objects, for one pid (0 = all) and one uid
 * (-1 = all). */
int store_list(struct store *st, pid_t pid, long uid, cJSON **out);
/* The newest snapshot of pid (of uid, -1 = any), preferring one whose reason
 * is "exit" when prefer_exit. -ENOENT if none. */
int store_latest(struct store *st, pid_t pid, long uid, int prefer_exit, int64_t *id);
/* The owner uid of snapshot id, for access checks. -ENOENT if none. */
int store_owner(struct store *st, int64_t id, uid_t *uid);

/* Retention: keep at most keep_per_process snapshots per process (0 = no
 * limit) and none older than max_age_days (0 = no limit); then delete the
 * stacks, frames and processes no snapshot uses any more. Sets *deleted to
 * the number of snapshots removed. */
int store_retain(struct store *st, unsigned keep_per_process, double max_age_days, size_t *deleted);

/* The charged bytes, per uid and in all. */
struct store_uid_usage {
	uid_t uid;
	uint64_t bytes, snapshots;
	uint64_t evicted_own;   /* deleted for max_bytes_per_uid, since open */
	uint64_t evicted_total; /* deleted for max_bytes, since open */
	uint64_t refused;       /* writes refused by a bound, since open */
};

struct store_usage {
	uint64_t bytes, snapshots;
	uint64_t max_bytes, max_bytes_per_uid;
	uint64_t evicted_own, evicted_total, refused; /* sums over the uids */
	size_t nuids;
	struct store_uid_usage *uids; /* by uid; store_usage_free frees it */
};

/* A copy of the figures; never waits for a write or any SQL (the loop
 * thread calls it for status and metrics). */
void store_usage(struct store *st, struct store_usage *out);
void store_usage_free(struct store_usage *u);

/* Counts for status and tests. */
struct store_counts {
	size_t processes, snapshots, stacks, frames;
};
int store_counts(struct store *st, struct store_counts *out);

#endif
