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
 */
#ifndef MEMTRACE_STORE_H
#define MEMTRACE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "snapshot.h"

#define STORE_SCHEMA_VERSION 2
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

/* Writes s (id is ignored) in one transaction; sets *id. */
int store_write(struct store *st, const struct snapshot *s, int64_t *id);
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

/* Counts for status and tests. */
struct store_counts {
	size_t processes, snapshots, stacks, frames;
};
int store_counts(struct store *st, struct store_counts *out);

#endif
