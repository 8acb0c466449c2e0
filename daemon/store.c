/*
 * store.c - the snapshot store in SQLite (see store.h).
 *
 * Schema version 8 (PRAGMA user_version = 8):
 *
 *   process  (id, pid, uid, start_time, exe, cmdline, first_seen)
 *            one row per process incarnation, found or created by
 *            (pid, start_time, exe, uid); cmdline is a JSON array of strings;
 *            first_seen is the taken_at of its first stored snapshot.
 *   frame    (id, filename, lineno, function, module, symbols), UNIQUE on
 *            all five; symbols is the separate debug file that named the
 *            frame ('' when the module's own file did: every frame of
 *            version 7 and before).
 *   stack    (id, frames BLOB UNIQUE): per frame, most recent call first,
 *            12 bytes: the frame id (u32) and the absolute address (u64),
 *            both little-endian. Addresses differ per process (ASLR), so
 *            stacks are in practice per executable image and load layout;
 *            frames are shared by every process that ran the same code.
 *   snapshot (id, process_id, taken_at, reason, current, peak, blocks,
 *            allocations, frees, lost_events, sample_bytes, uid, bytes);
 *            deleting a process deletes its snapshots. sample_bytes is the
 *            process's MEMTRACE_SAMPLE (0: every allocation traced, and what
 *            version 1's snapshots read as), so answers from a stored
 *            snapshot say whether its figures are estimates. uid is its
 *            process's (copied, so that a uid's oldest snapshot is one
 *            index step away: snapshot_uid) and bytes its charge
 *            (store_charge); version 2's snapshots get bytes at the first
 *            open, read back and charged like a new one.
 *   trace    (snapshot_id, stack_id, size, count, allocations, allocated,
 *            temporary, peak_size, peak_count), one row per stack that
 *            allocated (size and count 0 when none of its blocks is live;
 *            peak_* what it held at the process's peak); deleting a snapshot
 *            deletes its rows. Older versions' rows read what they lack as
 *            0.
 *   largest  (snapshot_id, rank, address, size, stack_id), the largest live
 *            blocks by rank (0 = largest).
 *   deleted  (id, uid, why, at): snapshots a bound or retention deleted, so
 *            that asking for one says so.
 *
 * Migrations: migrations[v] brings a database from version v to v + 1, in
 * one IMMEDIATE transaction that re-reads user_version first, so two
 * daemons opening one file cannot both migrate it. A database whose
 * user_version is newer than STORE_SCHEMA_VERSION was written by a newer
 * memtraced; store_open refuses it with -EPROTO without touching it. A
 * migration that made a table anew (7 -> 8: the frame table) leaves its old
 * pages free, which an incremental vacuum gives back after it.
 *
 * Writing. Frame ids are looked up once per distinct frame of the snapshot
 * (the snapshot's frames are already distinct, so an array indexed like
 * them is the whole cache), then every stack blob is looked up and inserted
 * if new. Everything runs on prepared statements kept in struct store.
 * Two traces of one snapshot that resolve to the same blob (equal frames and
 * addresses: a snapshot read from a file may hold duplicate frames) are
 * merged by an upsert that sums their counters.
 *
 * Counters, sizes and addresses are u64 in C and stored as SQLite's signed
 * 64-bit integers by two's complement, so every value round-trips exactly.
 *
 * Reading returns the traces in stack id order, with frames interned in
 * first-use order: the same content as written, not necessarily the same
 * array positions.
 *
 * store_latest picks the process incarnation with the newest snapshot among
 * those with that pid (0 = any pid), then within it the newest snapshot, an
 * "exit" one first when asked: a pid reused by a later process must not
 * bring back the exit snapshot of an earlier one.
 *
 * Errors beyond store.h's -EIO and -ENOENT: store_open returns -EPROTO for
 * a database of a newer schema; store_write returns -EINVAL for a snapshot
 * that cannot be stored (reason "live" or unknown, a frame or trace index
 * out of range, a non-finite taken_at) and store_retain for a negative or
 * NaN age. cJSON allocates through xmalloc (xalloc_cjson.h) and aborts when
 * memory runs out, so encoding JSON never fails here. store_errmsg holds
 * the reason until the next failing call.
 *
 * Size on disk. A new file is made with auto_vacuum = INCREMENTAL, and
 * every transaction that deleted snapshots (a bound, retention) ends with
 * PRAGMA incremental_vacuum: the pages they freed are moved off the end of
 * the file, which shrinks at the next checkpoint, instead of staying free
 * inside it. A file made before (auto_vacuum NONE) keeps its free pages for
 * reuse and never shrinks; with the daemon stopped, journal_mode = DELETE,
 * auto_vacuum = INCREMENTAL and VACUUM convert it (README "Limits"). The
 * WAL grows to the largest write transaction and is cut back to
 * journal_size_limit after it.
 *
 * The bounds (store.h). The charges per uid live in struct usage, O(uids)
 * to copy: uids are the accounts whose programs were traced, few. A write
 * works on a copy and publishes it when its transaction commits, so a
 * rollback leaves the figures as they were. Another connection's commit
 * shows in PRAGMA data_version, checked at the start of every write
 * transaction; then the figures are recomputed from the bytes column (the
 * daemon has one connection, so that happens only at open). Each eviction
 * is one index lookup (snapshot_uid) and the deletion; the uid holding the
 * most is found by a scan of the uids.
 *
 * Retention deletes snapshots by age and per-process count, then collects
 * garbage. Only the stacks of the deleted snapshots can have become unused,
 * so only they are checked (through the indexes on trace and largest).
 * Frames have no index from frame to stack (that would cost a row per frame
 * of every stack), so for the frames of deleted stacks the remaining stack
 * blobs are scanned in C, stopping as soon as every candidate frame has been
 * seen in use; the scan happens only when some stack was deleted.
 * Processes without snapshots go last. The foreign key from trace and
 * largest to stack (no ON DELETE action) makes SQLite refuse to delete a
 * stack that is still used, so a bug here fails loudly instead of losing data.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hash.h"
#include "oaindex.h"
#include "xalloc.h"

#define FRAME_BYTES     12 /* u32 frame id + u64 address */
#define BUSY_TIMEOUT_MS 5000

/* ---- schema ---- */

static const char *const migrations[] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE process ("
    " id INTEGER PRIMARY KEY,"
    " pid INTEGER NOT NULL,"
    " uid INTEGER NOT NULL,"
    " start_time INTEGER NOT NULL,"
    " exe TEXT NOT NULL,"
    " cmdline TEXT NOT NULL,"
    " first_seen REAL NOT NULL,"
    " UNIQUE (pid, start_time, exe, uid));"
    "CREATE TABLE frame ("
    " id INTEGER PRIMARY KEY,"
    " filename TEXT NOT NULL,"
    " lineno INTEGER NOT NULL,"
    " function TEXT NOT NULL,"
    " module TEXT NOT NULL,"
    " UNIQUE (filename, lineno, function, module));"
    "CREATE TABLE stack ("
    " id INTEGER PRIMARY KEY,"
    " frames BLOB NOT NULL UNIQUE);"
    "CREATE TABLE snapshot ("
    " id INTEGER PRIMARY KEY,"
    " process_id INTEGER NOT NULL REFERENCES process(id) ON DELETE CASCADE,"
    " taken_at REAL NOT NULL,"
    " reason TEXT NOT NULL"
    "  CHECK (reason IN ('periodic', 'manual', 'exit', 'shutdown')),"
    " current INTEGER NOT NULL,"
    " peak INTEGER NOT NULL,"
    " blocks INTEGER NOT NULL,"
    " allocations INTEGER NOT NULL,"
    " frees INTEGER NOT NULL,"
    " lost_events INTEGER NOT NULL);"
    /* per-process retention and store_latest; cascade from process */
    "CREATE INDEX snapshot_process ON snapshot(process_id, taken_at);"
    /* age retention and the list, oldest first */
    "CREATE INDEX snapshot_taken_at ON snapshot(taken_at);"
    "CREATE TABLE trace ("
    " snapshot_id INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,"
    " stack_id INTEGER NOT NULL REFERENCES stack(id),"
    " size INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " allocations INTEGER NOT NULL,"
    " PRIMARY KEY (snapshot_id, stack_id)) WITHOUT ROWID;"
    /* is this stack still used (garbage collection, foreign key checks) */
    "CREATE INDEX trace_stack ON trace(stack_id);"
    "CREATE TABLE largest ("
    " snapshot_id INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,"
    " rank INTEGER NOT NULL,"
    " address INTEGER NOT NULL,"
    " size INTEGER NOT NULL,"
    " stack_id INTEGER NOT NULL REFERENCES stack(id),"
    " PRIMARY KEY (snapshot_id, rank)) WITHOUT ROWID;"
    "CREATE INDEX largest_stack ON largest(stack_id);",
    /* 1 -> 2: the sampling rate of the snapshot's process. */
    "ALTER TABLE snapshot ADD COLUMN sample_bytes INTEGER NOT NULL DEFAULT 0;",
    /* 2 -> 3: the owner and the charge of every snapshot, for the bounds;
     * the charges of the snapshots already stored are computed at open. */
    "ALTER TABLE snapshot ADD COLUMN uid INTEGER;"
    "ALTER TABLE snapshot ADD COLUMN bytes INTEGER;"
    "UPDATE snapshot SET uid = (SELECT uid FROM process WHERE process.id = snapshot.process_id);"
    /* a uid's oldest snapshot, for its bound */
    "CREATE INDEX snapshot_uid ON snapshot(uid, id);",
    /* 3 -> 4: the snapshots a bound or retention deleted, so that asking
     * for one says so (the newest STORE_DELETED_KEEP are kept). */
    "CREATE TABLE deleted ("
    " id INTEGER PRIMARY KEY,"
    " uid INTEGER NOT NULL,"
    " why INTEGER NOT NULL,"
    " at REAL NOT NULL);",
    /* 4 -> 5: bytes allocated and temporary allocations per trace (0 in
     * the snapshots of older versions, which did not count them). */
    "ALTER TABLE trace ADD COLUMN allocated INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE trace ADD COLUMN temporary INTEGER NOT NULL DEFAULT 0;",
    /* 5 -> 6: what each trace held at the moment of the process's peak (0
     * in older snapshots). */
    "ALTER TABLE trace ADD COLUMN peak_size INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE trace ADD COLUMN peak_count INTEGER NOT NULL DEFAULT 0;",
    /* 6 -> 7: the reason "detach" (memtracectl detach). A CHECK that
     * admits one more value changes nothing stored, so the table's
     * definition is edited in place, as SQLite's documentation allows for
     * loosening a constraint (migrate bumps schema_version after it, so
     * every connection reads the new definition). */
    "PRAGMA writable_schema = ON;"
    "UPDATE sqlite_schema SET sql = replace(sql, '''exit'', ''shutdown''',"
    " '''exit'', ''detach'', ''shutdown''') WHERE type = 'table' AND name = 'snapshot';"
    "PRAGMA writable_schema = OFF;",
    /* 7 -> 8: the separate debug file that named a frame ('' when the
     * module's own file did, as for every frame stored before). It is part
     * of what makes a frame distinct, so the table is made anew with it in
     * its UNIQUE constraint, ids kept (stacks name frames by id). */
    "CREATE TABLE frame_v8 ("
    " id INTEGER PRIMARY KEY,"
    " filename TEXT NOT NULL,"
    " lineno INTEGER NOT NULL,"
    " function TEXT NOT NULL,"
    " module TEXT NOT NULL,"
    " symbols TEXT NOT NULL DEFAULT '',"
    " UNIQUE (filename, lineno, function, module, symbols));"
    "INSERT INTO frame_v8(id, filename, lineno, function, module)"
    " SELECT id, filename, lineno, function, module FROM frame;"
    "DROP TABLE frame;"
    "ALTER TABLE frame_v8 RENAME TO frame;",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- statements ---- */

enum stmt_id {
	S_BEGIN_READ,
	S_BEGIN_WRITE,
	S_COMMIT,
	S_ROLLBACK,
	S_PROCESS_FIND,
	S_PROCESS_INSERT,
	S_FRAME_FIND,
	S_FRAME_INSERT,
	S_STACK_FIND,
	S_STACK_INSERT,
	S_SNAPSHOT_INSERT,
	S_TRACE_UPSERT,
	S_LARGEST_INSERT,
	S_READ_SNAPSHOT,
	S_READ_TRACES,
	S_READ_FRAME,
	S_READ_LARGEST,
	S_LIST,
	S_LATEST_PROCESS,
	S_LATEST_SNAPSHOT,
	S_OWNER,
	S_COUNTS,
	S_RETAIN_DOOMED,
	S_SNAPSHOT_STACKS,
	S_SNAPSHOT_DELETE,
	S_STACK_UNUSED,
	S_STACK_DELETE,
	S_STACK_ALL,
	S_FRAME_DELETE,
	S_PROCESS_GC,
	S_OLDEST_OF_UID,
	S_USAGE,
	S_UNCHARGED,
	S_SET_BYTES,
	S_DATA_VERSION,
	S_DELETED_NOTE,
	S_DELETED_PRUNE,
	S_DELETED_FORGET,
	S_DELETED_FIND,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN_READ] = "BEGIN",
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_PROCESS_FIND] = "SELECT id FROM process"
                       " WHERE pid = ?1 AND start_time = ?2 AND exe = ?3 AND uid = ?4",
    [S_PROCESS_INSERT] = "INSERT INTO process(pid, start_time, exe, uid, cmdline, first_seen)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_FRAME_FIND] = "SELECT id FROM frame"
                     " WHERE filename = ?1 AND lineno = ?2 AND function = ?3 AND module = ?4"
                     " AND symbols = ?5",
    [S_FRAME_INSERT] = "INSERT INTO frame(filename, lineno, function, module, symbols)"
                       " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_STACK_FIND] = "SELECT id FROM stack WHERE frames = ?1",
    [S_STACK_INSERT] = "INSERT INTO stack(frames) VALUES (?1)",
    [S_SNAPSHOT_INSERT] = "INSERT INTO snapshot(process_id, taken_at, reason, current, peak,"
                          " blocks, allocations, frees, lost_events, sample_bytes, uid, bytes)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [S_TRACE_UPSERT] = "INSERT INTO trace(snapshot_id, stack_id, size, count, allocations,"
                       " allocated, temporary, peak_size, peak_count)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                       " ON CONFLICT (snapshot_id, stack_id) DO UPDATE SET"
                       " size = size + excluded.size, count = count + excluded.count,"
                       " allocations = allocations + excluded.allocations,"
                       " allocated = allocated + excluded.allocated,"
                       " temporary = temporary + excluded.temporary,"
                       " peak_size = peak_size + excluded.peak_size,"
                       " peak_count = peak_count + excluded.peak_count",
    [S_LARGEST_INSERT] = "INSERT INTO largest(snapshot_id, rank, address, size, stack_id)"
                         " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_READ_SNAPSHOT] = "SELECT p.pid, p.uid, p.start_time, p.exe, p.cmdline, s.taken_at,"
                        " s.reason, s.current, s.peak, s.blocks, s.allocations, s.frees,"
                        " s.lost_events, s.sample_bytes"
                        " FROM snapshot s JOIN process p ON p.id = s.process_id"
                        " WHERE s.id = ?1",
    [S_READ_TRACES] = "SELECT t.stack_id, t.size, t.count, t.allocations, k.frames,"
                      " t.allocated, t.temporary, t.peak_size, t.peak_count"
                      " FROM trace t JOIN stack k ON k.id = t.stack_id"
                      " WHERE t.snapshot_id = ?1 ORDER BY t.stack_id",
    [S_READ_FRAME] = "SELECT filename, lineno, function, module, symbols FROM frame"
                     " WHERE id = ?1",
    [S_READ_LARGEST] = "SELECT address, size, stack_id FROM largest"
                       " WHERE snapshot_id = ?1 ORDER BY rank",
    [S_LIST] = "SELECT s.id, p.pid, p.uid, p.start_time, p.exe, s.taken_at, s.reason,"
               " s.current, s.peak, s.blocks, s.allocations, s.frees, s.lost_events,"
               " s.sample_bytes"
               " FROM snapshot s JOIN process p ON p.id = s.process_id"
               " WHERE (?1 = 0 OR p.pid = ?1) AND (?2 < 0 OR p.uid = ?2)"
               " ORDER BY s.taken_at, s.id",
    [S_LATEST_PROCESS] = "SELECT s.process_id"
                         " FROM snapshot s JOIN process p ON p.id = s.process_id"
                         " WHERE (?1 = 0 OR p.pid = ?1) AND (?2 < 0 OR p.uid = ?2)"
                         " ORDER BY s.taken_at DESC, s.id DESC LIMIT 1",
    [S_LATEST_SNAPSHOT] = "SELECT id FROM snapshot WHERE process_id = ?1"
                          " ORDER BY (?2 AND reason = 'exit') DESC, taken_at DESC, id DESC"
                          " LIMIT 1",
    [S_OWNER] = "SELECT p.uid FROM snapshot s JOIN process p ON p.id = s.process_id"
                " WHERE s.id = ?1",
    [S_COUNTS] = "SELECT (SELECT count(*) FROM process), (SELECT count(*) FROM snapshot),"
                 " (SELECT count(*) FROM stack), (SELECT count(*) FROM frame)",
    /* ?1: snapshots kept per process (0 = no limit); ?2: the oldest
     * taken_at kept (NULL = no limit, and NULL compares false). */
    [S_RETAIN_DOOMED] = "SELECT id, uid, bytes, ?1 > 0 AND n > ?1"
                        " FROM (SELECT id, uid, bytes, taken_at,"
                        " row_number() OVER (PARTITION BY process_id ORDER BY id DESC) AS n"
                        " FROM snapshot)"
                        " WHERE (?1 > 0 AND n > ?1) OR taken_at < ?2",
    [S_SNAPSHOT_STACKS] = "SELECT stack_id FROM trace WHERE snapshot_id = ?1"
                          " UNION SELECT stack_id FROM largest WHERE snapshot_id = ?1",
    [S_SNAPSHOT_DELETE] = "DELETE FROM snapshot WHERE id = ?1",
    [S_STACK_UNUSED] = "SELECT frames FROM stack WHERE id = ?1"
                       " AND NOT EXISTS (SELECT 1 FROM trace WHERE stack_id = ?1)"
                       " AND NOT EXISTS (SELECT 1 FROM largest WHERE stack_id = ?1)",
    [S_STACK_DELETE] = "DELETE FROM stack WHERE id = ?1",
    [S_STACK_ALL] = "SELECT frames FROM stack",
    [S_FRAME_DELETE] = "DELETE FROM frame WHERE id = ?1",
    [S_PROCESS_GC] = "DELETE FROM process WHERE NOT EXISTS"
                     " (SELECT 1 FROM snapshot WHERE process_id = process.id)",
    [S_OLDEST_OF_UID] = "SELECT id, bytes FROM snapshot WHERE uid = ?1 ORDER BY id LIMIT 1",
    [S_USAGE] = "SELECT uid, sum(bytes), count(*) FROM snapshot GROUP BY uid",
    [S_UNCHARGED] = "SELECT id FROM snapshot WHERE bytes IS NULL",
    [S_SET_BYTES] = "UPDATE snapshot SET bytes = ?2 WHERE id = ?1",
    [S_DATA_VERSION] = "PRAGMA data_version",
    [S_DELETED_NOTE] = "INSERT OR REPLACE INTO deleted(id, uid, why, at) VALUES (?1, ?2, ?3, ?4)",
    [S_DELETED_PRUNE] = "DELETE FROM deleted WHERE id <= (SELECT id FROM deleted"
                        " ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    [S_DELETED_FORGET] = "DELETE FROM deleted WHERE id = ?1",
    [S_DELETED_FIND] = "SELECT uid, why, at FROM deleted WHERE id = ?1",
};

/* The charged bytes per uid (store.h); entries are kept once made, for
 * their counters. */
struct usage {
	uint64_t bytes, snapshots;
	struct store_uid_usage *u;
	size_t n, cap;
};

struct store {
	pthread_mutex_t lock;
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT]; /* prepared on first use, kept until close */
	char err[512];
	uint64_t max_bytes, max_per_uid; /* 0 = no bound */
	char *path;                      /* NULL in memory; for store_file_bytes */
	int64_t data_version;            /* when usage was last computed */
	/* Changed under lock and usage_lock, read under either. */
	pthread_mutex_t usage_lock;
	struct usage usage;
};

/* ---- errors ---- */

static int fail(struct store *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why the call fails, for store_errmsg, and returns err. */
static int fail(struct store *st, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	return err;
}

/* The one place SQLite errors become errno values: every SQLite failure is
 * -EIO to the caller, with SQLite's own message kept for the log. */
static int db_error(struct store *st, int rc, const char *what)
{
	const char *msg = st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);

	return fail(st, -EIO, "%s: %s", what, msg);
}

/* ---- small helpers ---- */

static int stmt_get(struct store *st, enum stmt_id id, sqlite3_stmt **out)
{
	*out = NULL; /* set on every way out (GCC cannot see that fail() never returns 0) */
	if (st->stmt[id] == NULL) {
		int rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		                            &st->stmt[id], NULL);
		if (rc != SQLITE_OK) {
			st->stmt[id] = NULL;
			return db_error(st, rc, "prepare");
		}
	}
	*out = st->stmt[id];
	return 0;
}

/* Steps a statement that returns no row, then resets it. */
static int step_done(struct store *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	int ret = rc == SQLITE_DONE ? 0 : db_error(st, rc, what);

	sqlite3_reset(s);
	return ret;
}

/* Steps a query: 1 for a row, 0 when done (the statement is then reset),
 * or an error (reset too). After a row, the caller resets. */
static int step_row(struct store *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		return 0;
	}
	rc = db_error(st, rc, what);
	sqlite3_reset(s);
	return rc;
}

static int run(struct store *st, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = NULL;
	int rc = stmt_get(st, id, &s);

	return rc != 0 ? rc : step_done(st, s, what);
}

static int begin(struct store *st, bool write)
{
	return run(st, write ? S_BEGIN_WRITE : S_BEGIN_READ, "begin");
}

static int commit(struct store *st)
{
	return run(st, S_COMMIT, "commit");
}

/* Rolls back if a transaction is still open (a failed statement may have
 * ended it already). The error that got us here is the one reported. */
static void rollback(struct store *st)
{
	sqlite3_stmt *s;

	if (sqlite3_get_autocommit(st->db))
		return;
	if (stmt_get(st, S_ROLLBACK, &s) == 0) {
		sqlite3_step(s);
		sqlite3_reset(s);
	}
}

/* Ends the transaction: commits on success, else rolls back. */
static int finish(struct store *st, int rc)
{
	if (rc == 0)
		rc = commit(st);
	if (rc != 0)
		rollback(st);
	return rc;
}

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A one-off statement (pragmas), not worth caching. Returns the first
 * column of the first row as text into buf (empty if no row). */
static int query_once(struct store *st, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);

	if (rc != SQLITE_OK)
		return db_error(st, rc, sql);
	buf[0] = '\0';
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);
		snprintf(buf, len, "%s", t != NULL ? (const char *)t : "");
		rc = SQLITE_DONE;
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(st, rc, sql);
	sqlite3_finalize(s);
	return rc;
}

static int exec(struct store *st, const char *sql, const char *what)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_error(st, rc, what);
}

/* ---- an int64 -> uint32 map (ids to array indexes, id sets) ----
 * The entries are kept in insertion order and found through an index of
 * their positions; a zero-initialised map is empty. */

struct idmap_entry {
	int64_t key;
	uint32_t val;
};

struct idmap {
	struct idmap_entry *ent;
	size_t len, cap;
	struct oaindex index; /* values: positions in ent */
};

static bool idmap_eq(const void *ctx, uintptr_t pos, const void *key)
{
	const struct idmap *m = ctx;

	return m->ent[pos].key == *(const int64_t *)key;
}

static void idmap_free(struct idmap *m)
{
	free(m->ent);
	oaindex_close(&m->index);
	memset(m, 0, sizeof(*m));
}

static uint32_t *idmap_find(const struct idmap *m, int64_t key)
{
	uintptr_t pos = oaindex_find(&m->index, hash_mix((uint64_t)key), idmap_eq, m, &key);

	return pos != OAINDEX_NONE ? &m->ent[pos].val : NULL;
}

/* Sets key to val. */
static void idmap_put(struct idmap *m, int64_t key, uint32_t val)
{
	uint64_t h = hash_mix((uint64_t)key);
	uintptr_t pos = oaindex_find(&m->index, h, idmap_eq, m, &key);

	if (pos == OAINDEX_NONE) {
		if (m->len == m->cap) {
			m->cap = m->cap != 0 ? m->cap * 2 : 64;
			m->ent = xreallocarray(m->ent, m->cap, sizeof(*m->ent));
		}
		pos = m->len++;
		m->ent[pos].key = key;
		oaindex_insert(&m->index, h, pos);
	}
	m->ent[pos].val = val;
}

/* ---- the charges per uid ---- */

static void usage_free(struct usage *u)
{
	free(u->u);
	memset(u, 0, sizeof(*u));
}

static void usage_copy(struct usage *dst, const struct usage *src)
{
	*dst = *src;
	dst->cap = src->n;
	dst->u = src->n != 0 ? xreallocarray(NULL, src->n, sizeof(*src->u)) : NULL;
	if (src->n != 0)
		memcpy(dst->u, src->u, src->n * sizeof(*src->u));
}

/* The entry of uid, made (in uid order) when absent. */
static struct store_uid_usage *usage_of(struct usage *u, uid_t uid)
{
	size_t i = 0;

	while (i < u->n && u->u[i].uid < uid)
		i++;
	if (i < u->n && u->u[i].uid == uid)
		return &u->u[i];
	if (u->n == u->cap) {
		u->cap = u->cap != 0 ? u->cap * 2 : 8;
		u->u = xreallocarray(u->u, u->cap, sizeof(*u->u));
	}
	memmove(&u->u[i + 1], &u->u[i], (u->n - i) * sizeof(*u->u));
	u->n++;
	memset(&u->u[i], 0, sizeof(u->u[i]));
	u->u[i].uid = uid;
	return &u->u[i];
}

static void usage_add(struct usage *u, uid_t uid, uint64_t bytes)
{
	struct store_uid_usage *e = usage_of(u, uid);

	e->bytes += bytes;
	e->snapshots++;
	u->bytes += bytes;
	u->snapshots++;
}

/* Takes away a deleted snapshot (never below zero: a charge the file
 * holds wrong must not wrap the figures). */
static struct store_uid_usage *usage_sub(struct usage *u, uid_t uid, uint64_t bytes)
{
	struct store_uid_usage *e = usage_of(u, uid);

	bytes = bytes < e->bytes ? bytes : e->bytes;
	e->bytes -= bytes;
	u->bytes -= bytes < u->bytes ? bytes : u->bytes;
	if (e->snapshots > 0)
		e->snapshots--;
	if (u->snapshots > 0)
		u->snapshots--;
	return e;
}

/* The uid holding the most; `prefer` wins a tie (the writer evicts its own
 * before an equal other's). */
static const struct store_uid_usage *usage_most(const struct usage *u, uid_t prefer)
{
	const struct store_uid_usage *best = NULL;

	for (size_t i = 0; i < u->n; i++) {
		const struct store_uid_usage *e = &u->u[i];
		if (best == NULL || e->bytes > best->bytes ||
		    (e->bytes == best->bytes && e->uid == prefer))
			best = e;
	}
	return best;
}

/* Makes next the figures store_usage hands out; next is emptied. */
static void usage_publish(struct store *st, struct usage *next)
{
	struct usage old;

	pthread_mutex_lock(&st->usage_lock);
	old = st->usage;
	st->usage = *next;
	pthread_mutex_unlock(&st->usage_lock);
	usage_free(&old);
	memset(next, 0, sizeof(*next));
}

/* A refusal, counted at once (nothing was written to roll back). */
static void usage_refused(struct store *st, uid_t uid)
{
	pthread_mutex_lock(&st->usage_lock);
	usage_of(&st->usage, uid)->refused++;
	pthread_mutex_unlock(&st->usage_lock);
}

static int data_version(struct store *st, int64_t *v)
{
	sqlite3_stmt *q = NULL;
	int rc = stmt_get(st, S_DATA_VERSION, &q);

	if (rc != 0)
		return rc;
	rc = step_row(st, q, "data_version");
	if (rc == 0)
		return fail(st, -EIO, "data_version: no row");
	if (rc < 0)
		return rc;
	*v = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	return 0;
}

/* In a transaction: the figures from the bytes column, keeping the
 * counters of the uids already known. */
static int usage_recompute(struct store *st)
{
	struct usage next = {0};
	sqlite3_stmt *q;
	int rc = data_version(st, &st->data_version);

	if (rc == 0)
		rc = stmt_get(st, S_USAGE, &q);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&st->usage_lock);
	usage_copy(&next, &st->usage);
	pthread_mutex_unlock(&st->usage_lock);
	next.bytes = next.snapshots = 0;
	for (size_t i = 0; i < next.n; i++)
		next.u[i].bytes = next.u[i].snapshots = 0;
	while ((rc = step_row(st, q, "usage")) == 1) {
		struct store_uid_usage *e = usage_of(&next, (uid_t)sqlite3_column_int64(q, 0));
		e->bytes = (uint64_t)sqlite3_column_int64(q, 1);
		e->snapshots = (uint64_t)sqlite3_column_int64(q, 2);
		next.bytes += e->bytes;
		next.snapshots += e->snapshots;
	}
	if (rc == 0)
		usage_publish(st, &next);
	usage_free(&next);
	return rc;
}

/* In a write transaction: recomputes the figures if another connection
 * committed since they were computed. */
static int usage_sync(struct store *st)
{
	int64_t v;
	int rc = data_version(st, &v);

	if (rc == 0 && v != st->data_version)
		rc = usage_recompute(st);
	return rc;
}

void store_usage(struct store *st, struct store_usage *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&st->usage_lock);
	out->bytes = st->usage.bytes;
	out->snapshots = st->usage.snapshots;
	out->nuids = st->usage.n;
	if (out->nuids != 0) {
		out->uids = xreallocarray(NULL, out->nuids, sizeof(*out->uids));
		memcpy(out->uids, st->usage.u, out->nuids * sizeof(*out->uids));
	}
	pthread_mutex_unlock(&st->usage_lock);
	out->max_bytes = st->max_bytes;
	out->max_bytes_per_uid = st->max_per_uid;
	for (size_t i = 0; i < out->nuids; i++) {
		out->evicted_own += out->uids[i].evicted_own;
		out->evicted_total += out->uids[i].evicted_total;
		out->refused += out->uids[i].refused;
	}
}

void store_usage_free(struct store_usage *u)
{
	free(u->uids);
	memset(u, 0, sizeof(*u));
}

static int keep_bounds(struct store *st, struct usage *u, uid_t uid, int64_t id,
                       struct store_written *w);

int store_set_bounds(struct store *st, uint64_t max_bytes, uint64_t max_bytes_per_uid,
                     struct store_written *w)
{
	struct usage next = {0};
	int rc;

	memset(w, 0, sizeof(*w));
	pthread_mutex_lock(&st->lock);
	st->max_bytes = max_bytes;
	st->max_per_uid = max_bytes_per_uid;
	rc = begin(st, true);
	if (rc == 0)
		rc = usage_sync(st);
	if (rc == 0) {
		pthread_mutex_lock(&st->usage_lock);
		usage_copy(&next, &st->usage);
		pthread_mutex_unlock(&st->usage_lock);
		rc = keep_bounds(st, &next, 0, 0, w);
	}
	rc = finish(st, rc);
	if (rc == 0)
		usage_publish(st, &next);
	else
		w->evicted_own = w->evicted_total = w->more_own = w->more_total = w->nevicted = 0;
	usage_free(&next);
	pthread_mutex_lock(&st->usage_lock);
	w->total_bytes = st->usage.bytes;
	pthread_mutex_unlock(&st->usage_lock);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_deleted(struct store *st, int64_t id, uid_t *uid, enum store_deleted_by *why, double *at)
{
	sqlite3_stmt *q;
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = stmt_get(st, S_DELETED_FIND, &q);
	if (rc == 0) {
		sqlite3_bind_int64(q, 1, id);
		rc = step_row(st, q, "deleted snapshot");
	}
	if (rc == 1) {
		*uid = (uid_t)sqlite3_column_int64(q, 0);
		*why = (enum store_deleted_by)sqlite3_column_int(q, 1);
		*at = sqlite3_column_double(q, 2);
		sqlite3_reset(q);
		rc = 0;
	} else if (rc == 0) {
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

const char *store_deleted_by_option(enum store_deleted_by why)
{
	switch (why) {
	case STORE_BY_PER_UID:
		return "--max-store-bytes-per-uid";
	case STORE_BY_TOTAL:
		return "--max-store-bytes";
	case STORE_BY_RETAIN_COUNT:
		return "--retain-snapshots";
	case STORE_BY_RETAIN_AGE:
		return "--retain-days";
	}
	return "a bound";
}

void store_evicted_text(const struct store_written *w, bool own, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < w->nevicted && off < len; i++) {
		size_t n = own ? w->evicted[i].own : w->evicted[i].total;
		if (n > 0)
			off +=
			    (size_t)snprintf(buf + off, len - off, "%suid %u: %zu",
			                     off > 0 ? ", " : "", (unsigned)w->evicted[i].uid, n);
	}
	size_t more = own ? w->more_own : w->more_total;
	if (more > 0 && off < len)
		snprintf(buf + off, len - off, "%s%zu of further uids", off > 0 ? ", " : "", more);
}

int store_file_bytes(struct store *st, uint64_t *bytes)
{
	const char *path = st->path; /* set at open: no lock needed */
	struct stat sb;
	char *wal;

	*bytes = 0;
	if (path == NULL)
		return 0; /* in memory */
	if (stat(path, &sb) != 0)
		return -errno;
	*bytes = (uint64_t)sb.st_size;
	wal = xasprintf("%s-wal", path);
	if (stat(wal, &sb) == 0)
		*bytes += (uint64_t)sb.st_size;
	free(wal);
	return 0;
}

static char *cmdline_json(const struct snapshot *s);

uint64_t store_charge(const struct snapshot *s)
{
	uint64_t c = STORE_CHARGE_SNAPSHOT + strlen(str_or_empty(s->exe));
	bool *used = s->nframes != 0 ? xcalloc(s->nframes, sizeof(*used)) : NULL;
	char *cmdline = cmdline_json(s);

	/* the arguments as stored: escaped, a control byte is 6 */
	c += cmdline != NULL ? strlen(cmdline) : 0;
	free(cmdline);
	for (size_t i = 0; i < s->ntraces; i++) {
		const struct snapshot_trace *t = &s->traces[i];
		c += STORE_CHARGE_TRACE + (uint64_t)STORE_CHARGE_FRAME_REF * t->nframes;
		for (uint32_t j = 0; j < t->nframes; j++)
			if (t->frames[j] < s->nframes)
				used[t->frames[j]] = true;
	}
	c += (uint64_t)STORE_CHARGE_LARGEST * s->nlargest;
	for (size_t i = 0; i < s->nframes; i++) {
		const struct frame_info *f = &s->frames[i];
		if (used[i])
			c += STORE_CHARGE_FRAME + strlen(str_or_empty(f->filename)) +
			     strlen(str_or_empty(f->function)) + strlen(str_or_empty(f->module)) +
			     strlen(str_or_empty(f->symbols));
	}
	free(used);
	return c;
}

/* ---- open, configure, migrate ---- */

static int user_version(struct store *st, int64_t *v)
{
	char buf[32];
	int rc = query_once(st, "PRAGMA user_version", buf, sizeof(buf));

	if (rc == 0)
		*v = strtoll(buf, NULL, 10);
	return rc;
}

static int too_new(struct store *st, int64_t v)
{
	return fail(st, -EPROTO, "database schema version %lld is newer than this memtraced's (%d)",
	            (long long)v, STORE_SCHEMA_VERSION);
}

/* Per-connection settings (none of them is stored in the file except the
 * journal mode, and Debian's defaults differ). */
static int configure(struct store *st)
{
	char mode[32];
	int rc;

	rc = exec(st,
	          /* a new file gives its free pages back (see "Size on disk");
	           * an existing one keeps its mode */
	          "PRAGMA auto_vacuum = INCREMENTAL;"
	          "PRAGMA busy_timeout = 5000;"
	          "PRAGMA foreign_keys = ON;"
	          "PRAGMA synchronous = NORMAL;"
	          /* a snapshot of 100k stacks touches ~60 MB of pages; the
	           * default 2 MB cache would spill mid-transaction */
	          "PRAGMA cache_size = -32768;"
	          /* after a big write the WAL is truncated back to this */
	          "PRAGMA journal_size_limit = 33554432;",
	          "pragmas");
	if (rc != 0)
		return rc;
	rc = query_once(st, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (rc != 0)
		return rc;
	/* An in-memory database (tests) reports "memory" and cannot do WAL. */
	if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
		return fail(st, -EIO, "journal_mode=WAL refused (the mode is %s)", mode);
	return 0;
}

/* A migration edited sqlite_schema itself: the schema cookie moves on, so
 * that every connection (this one too) reads the definitions again. */
static int schema_edited(struct store *st)
{
	char buf[32], sql[64];
	int rc = query_once(st, "PRAGMA schema_version", buf, sizeof(buf));

	if (rc == 0) {
		snprintf(sql, sizeof(sql), "PRAGMA schema_version = %lld",
		         strtoll(buf, NULL, 10) + 1);
		rc = exec(st, sql, "migration");
	}
	if (rc == 0)
		rc = query_once(st, "PRAGMA quick_check", buf, sizeof(buf));
	if (rc == 0 && strcmp(buf, "ok") != 0)
		rc = fail(st, -EIO, "migration: the database fails its check: %s", buf);
	return rc;
}

static int migrate(struct store *st)
{
	bool rebuilt = false;

	for (;;) {
		int64_t v;
		char sql[64];
		int rc = begin(st, true);

		if (rc != 0)
			return rc;
		/* Read under the write lock: another connection may just have
		 * migrated. */
		rc = user_version(st, &v);
		if (rc == 0 && v > STORE_SCHEMA_VERSION)
			rc = too_new(st, v);
		if (rc == 0 && v == STORE_SCHEMA_VERSION) {
			rc = finish(st, 0);
			if (rc == 0 && rebuilt)
				rc = exec(st, "PRAGMA incremental_vacuum", "migration");
			return rc;
		}
		if (rc == 0 && v < 0)
			rc =
			    fail(st, -EIO, "database schema version %lld is invalid", (long long)v);
		if (rc == 0)
			rc = exec(st, migrations[v], "migration");
		if (rc == 0 && strstr(migrations[v], "writable_schema") != NULL)
			rc = schema_edited(st);
		if (rc == 0 && strstr(migrations[v], "DROP TABLE") != NULL)
			rebuilt = true;
		if (rc == 0) {
			snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)v + 1);
			rc = exec(st, sql, "migration");
		}
		rc = finish(st, rc);
		if (rc != 0)
			return rc;
	}
}

/* The file is memtraced's alone (0600): it holds every traced process's
 * command line and call stacks. Made so before SQLite opens it, and made
 * so again if an older memtraced left it readable by others; SQLite gives
 * its journal and WAL the database's mode. Something else at the path (a
 * link, a FIFO) is refused, not followed. */
static int prepare_file(struct store *st, const char *path)
{
	struct stat sb;
	int fd =
	    open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
	int rc = 0;

	if (fd < 0) {
		if (errno == EACCES || errno == EROFS || errno == EPERM)
			return fail(st, -EROFS, "%s cannot be written by memtraced (uid %u): %s",
			            path, (unsigned)geteuid(), strerror(errno));
		if (errno == ELOOP)
			return fail(st, -EIO, "%s is a symbolic link", path);
		return fail(st, -EIO, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &sb) < 0)
		rc = fail(st, -EIO, "%s: %s", path, strerror(errno));
	else if (!S_ISREG(sb.st_mode))
		rc = fail(st, -EIO, "%s is not a regular file", path);
	else if ((sb.st_mode & 07777) != 0600 && sb.st_uid == geteuid() && fchmod(fd, 0600) < 0)
		rc = fail(st, -EIO, "cannot make %s private (0600): %s", path, strerror(errno));
	close(fd);
	return rc;
}

/* SQLite's word for a file that is not a database, or a broken one, is the
 * cause; what the operator can do about it goes with it. */
static int open_error(struct store *st, const char *path, int rc)
{
	char cause[sizeof(st->err)];

	snprintf(cause, sizeof(cause), "%s", st->err);
	if (rc == -EPROTO)
		return fail(st, rc, "%s: %s", path, cause);
	return fail(st, rc,
	            "%s: %s (move the file away to start a new store, or point --state-dir "
	            "elsewhere)",
	            path, cause);
}

static int usage_load(struct store *st);

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
	struct store *st = xcalloc(1, sizeof(*st));
	bool memory = strcmp(path, ":memory:") == 0;
	int64_t v;
	int rc;

	*out = NULL;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->usage_lock, NULL);
	if (!memory && (rc = prepare_file(st, path)) < 0)
		goto err;
	if (!memory)
		st->path = xstrdup(path);
	/* Calls are serialized by st->lock, so SQLite's own mutex is not needed. */
	rc = sqlite3_open_v2(
	    path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = open_error(st, path, db_error(st, rc, "open"));
		goto err;
	}
	/* SQLite falls back to reading a file it may not write; every write
	 * would then fail. Say so now, once. */
	if (sqlite3_db_readonly(st->db, "main") == 1) {
		rc = fail(st, -EROFS, "%s is read-only to memtraced (uid %u)", path,
		          (unsigned)geteuid());
		goto err;
	}
	/* Refuse a newer schema before changing anything in the file. */
	rc = sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK) {
		rc = open_error(st, path, db_error(st, rc, "busy_timeout"));
		goto err;
	}
	rc = user_version(st, &v);
	if (rc == 0 && v > STORE_SCHEMA_VERSION)
		rc = too_new(st, v);
	if (rc == 0)
		rc = configure(st);
	if (rc == 0)
		rc = migrate(st);
	if (rc == 0)
		rc = usage_load(st);
	if (rc != 0) {
		rc = open_error(st, path, rc);
		goto err;
	}
	*out = st;
	return 0;
err:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", st->err);
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	/* Every statement is finalized, so this closes (and, as the last
	 * connection, checkpoints and removes the WAL). */
	sqlite3_close(st->db);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->usage_lock);
	usage_free(&st->usage);
	free(st->path);
	free(st);
}

const char *store_errmsg(struct store *st)
{
	return st != NULL ? st->err : "no store";
}

/* ---- writing ---- */

static bool reason_storable(const char *r)
{
	static const char *const ok[] = {"periodic", "manual", "exit", "detach", "shutdown"};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strncmp(r, ok[i], sizeof(((struct snapshot *)0)->reason)) == 0)
			return true;
	}
	return false;
}

/* Everything a write relies on, checked before the transaction starts. */
static int validate(struct store *st, const struct snapshot *s, size_t *maxdepth)
{
	*maxdepth = 0;
	if (!reason_storable(s->reason))
		return fail(st, -EINVAL, "reason \"%.*s\" cannot be stored", (int)sizeof(s->reason),
		            s->reason);
	if (!isfinite(s->taken_at))
		return fail(st, -EINVAL, "taken_at is not a finite number");
	for (size_t i = 0; i < s->ntraces; i++) {
		const struct snapshot_trace *t = &s->traces[i];
		for (uint32_t j = 0; j < t->nframes; j++) {
			if (t->frames[j] >= s->nframes)
				return fail(st, -EINVAL, "trace %zu: frame index %u out of range",
				            i, t->frames[j]);
		}
		if (t->nframes > *maxdepth)
			*maxdepth = t->nframes;
	}
	for (size_t i = 0; i < s->nlargest; i++) {
		if (s->largest[i].trace >= s->ntraces)
			return fail(st, -EINVAL, "largest block %zu: trace index %u out of range",
			            i, s->largest[i].trace);
	}
	return 0;
}

static char *cmdline_json(const struct snapshot *s)
{
	cJSON *arr = cJSON_CreateArray();
	char *text;

	for (size_t i = 0; s->argv != NULL && s->argv[i] != NULL; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(s->argv[i]));
	text = cJSON_PrintUnformatted(arr);
	cJSON_Delete(arr);
	return text;
}

static int process_id(struct store *st, const struct snapshot *s, int64_t *id)
{
	sqlite3_stmt *q;
	char *cmdline;
	int rc = stmt_get(st, S_PROCESS_FIND, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, s->pid);
	sqlite3_bind_int64(q, 2, (sqlite3_int64)s->start_time);
	sqlite3_bind_text(q, 3, str_or_empty(s->exe), -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, s->uid);
	rc = step_row(st, q, "find process");
	if (rc < 0)
		return rc;
	if (rc == 1) {
		*id = sqlite3_column_int64(q, 0);
		sqlite3_reset(q);
		return 0;
	}
	rc = stmt_get(st, S_PROCESS_INSERT, &q);
	if (rc != 0)
		return rc;
	cmdline = cmdline_json(s);
	sqlite3_bind_int64(q, 1, s->pid);
	sqlite3_bind_int64(q, 2, (sqlite3_int64)s->start_time);
	sqlite3_bind_text(q, 3, str_or_empty(s->exe), -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, s->uid);
	sqlite3_bind_text(q, 5, cmdline, -1, SQLITE_STATIC);
	sqlite3_bind_double(q, 6, s->taken_at);
	rc = step_done(st, q, "insert process");
	free(cmdline);
	if (rc == 0)
		*id = sqlite3_last_insert_rowid(st->db);
	return rc;
}

/* Finds or creates a row by looking it up with find (bound by bind) and
 * inserting it with insert (bound the same way) when absent. We hold the
 * write lock, so nobody can insert it in between. */
typedef void (*bind_fn)(sqlite3_stmt *s, const void *arg);

static int find_or_insert(struct store *st, enum stmt_id find, enum stmt_id insert, bind_fn bind,
                          const void *arg, int64_t *id)
{
	sqlite3_stmt *q;
	int rc = stmt_get(st, find, &q);

	if (rc != 0)
		return rc;
	bind(q, arg);
	rc = step_row(st, q, "lookup");
	if (rc < 0)
		return rc;
	if (rc == 1) {
		*id = sqlite3_column_int64(q, 0);
		sqlite3_reset(q);
		return 0;
	}
	rc = stmt_get(st, insert, &q);
	if (rc != 0)
		return rc;
	bind(q, arg);
	rc = step_done(st, q, "insert");
	if (rc == 0)
		*id = sqlite3_last_insert_rowid(st->db);
	return rc;
}

static void bind_frame(sqlite3_stmt *q, const void *arg)
{
	const struct frame_info *f = arg;

	sqlite3_bind_text(q, 1, str_or_empty(f->filename), -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, f->lineno);
	sqlite3_bind_text(q, 3, str_or_empty(f->function), -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, str_or_empty(f->module), -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, str_or_empty(f->symbols), -1, SQLITE_STATIC);
}

struct blob {
	const unsigned char *p;
	size_t len;
};

static void bind_blob(sqlite3_stmt *q, const void *arg)
{
	const struct blob *b = arg;

	/* A NULL pointer would bind SQL NULL; an empty stack is an empty blob. */
	sqlite3_bind_blob(q, 1, b->len != 0 ? (const void *)b->p : "", (int)b->len, SQLITE_STATIC);
}

/* The stack id of trace t; frame ids of the snapshot's frames are cached
 * in fid (0 = not looked up yet). */
static int stack_id(struct store *st, const struct snapshot *s, const struct snapshot_trace *t,
                    int64_t *fid, unsigned char *buf, int64_t *id)
{
	struct blob b = {buf, (size_t)t->nframes * FRAME_BYTES};
	int rc;

	for (uint32_t j = 0; j < t->nframes; j++) {
		uint32_t fi = t->frames[j];
		if (fid[fi] == 0) {
			rc = find_or_insert(st, S_FRAME_FIND, S_FRAME_INSERT, bind_frame,
			                    &s->frames[fi], &fid[fi]);
			if (rc != 0)
				return rc;
			if (fid[fi] <= 0 || fid[fi] > UINT32_MAX)
				return fail(st, -EOVERFLOW, "frame id %lld does not fit a stack",
				            (long long)fid[fi]);
		}
		put_le(buf + (size_t)j * FRAME_BYTES, (uint64_t)fid[fi], 4);
		put_le(buf + (size_t)j * FRAME_BYTES + 4, t->addrs[j], 8);
	}
	return find_or_insert(st, S_STACK_FIND, S_STACK_INSERT, bind_blob, &b, id);
}

static int write_snapshot(struct store *st, const struct snapshot *s, size_t maxdepth,
                          uint64_t charge, int64_t *snap_id)
{
	sqlite3_stmt *q;
	int64_t pid_row = 0, *fid, *sid;
	unsigned char *buf;
	int rc;

	rc = process_id(st, s, &pid_row);
	if (rc != 0)
		return rc;
	rc = stmt_get(st, S_SNAPSHOT_INSERT, &q);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, pid_row);
	sqlite3_bind_double(q, 2, s->taken_at);
	sqlite3_bind_text(q, 3, s->reason, (int)strnlen(s->reason, sizeof(s->reason)),
	                  SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, (sqlite3_int64)s->current);
	sqlite3_bind_int64(q, 5, (sqlite3_int64)s->peak);
	sqlite3_bind_int64(q, 6, (sqlite3_int64)s->blocks);
	sqlite3_bind_int64(q, 7, (sqlite3_int64)s->allocations);
	sqlite3_bind_int64(q, 8, (sqlite3_int64)s->frees);
	sqlite3_bind_int64(q, 9, (sqlite3_int64)s->lost_events);
	sqlite3_bind_int64(q, 10, (sqlite3_int64)s->sample_bytes);
	sqlite3_bind_int64(q, 11, s->uid);
	sqlite3_bind_int64(q, 12, (sqlite3_int64)charge);
	rc = step_done(st, q, "insert snapshot");
	if (rc != 0)
		return rc;
	*snap_id = sqlite3_last_insert_rowid(st->db);
	/* an id SQLite hands out again is no longer a deleted one */
	rc = stmt_get(st, S_DELETED_FORGET, &q);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, *snap_id);
	rc = step_done(st, q, "forget a deleted snapshot");
	if (rc != 0)
		return rc;

	fid = xcalloc(s->nframes, sizeof(*fid));
	sid = xcalloc(s->ntraces, sizeof(*sid));
	buf = xmalloc(maxdepth * FRAME_BYTES);
	rc = stmt_get(st, S_TRACE_UPSERT, &q);
	for (size_t i = 0; rc == 0 && i < s->ntraces; i++) {
		const struct snapshot_trace *t = &s->traces[i];
		rc = stack_id(st, s, t, fid, buf, &sid[i]);
		if (rc != 0)
			break;
		/* stack_id used other statements; q is still ours to bind */
		sqlite3_bind_int64(q, 1, *snap_id);
		sqlite3_bind_int64(q, 2, sid[i]);
		sqlite3_bind_int64(q, 3, (sqlite3_int64)t->size);
		sqlite3_bind_int64(q, 4, (sqlite3_int64)t->count);
		sqlite3_bind_int64(q, 5, (sqlite3_int64)t->allocations);
		sqlite3_bind_int64(q, 6, (sqlite3_int64)t->allocated);
		sqlite3_bind_int64(q, 7, (sqlite3_int64)t->temporary);
		sqlite3_bind_int64(q, 8, (sqlite3_int64)t->peak_size);
		sqlite3_bind_int64(q, 9, (sqlite3_int64)t->peak_count);
		rc = step_done(st, q, "insert trace");
	}
	if (rc == 0)
		rc = stmt_get(st, S_LARGEST_INSERT, &q);
	for (size_t i = 0; rc == 0 && i < s->nlargest; i++) {
		sqlite3_bind_int64(q, 1, *snap_id);
		sqlite3_bind_int64(q, 2, (sqlite3_int64)i);
		sqlite3_bind_int64(q, 3, (sqlite3_int64)s->largest[i].addr);
		sqlite3_bind_int64(q, 4, (sqlite3_int64)s->largest[i].size);
		sqlite3_bind_int64(q, 5, sid[s->largest[i].trace]);
		rc = step_done(st, q, "insert largest block");
	}
	free(buf);
	free(sid);
	free(fid);
	return rc;
}

/* The oldest stored snapshot of uid: its id and charge. */
static int oldest_of(struct store *st, uid_t uid, int64_t *id, uint64_t *bytes)
{
	sqlite3_stmt *q = NULL;
	int rc = stmt_get(st, S_OLDEST_OF_UID, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, uid);
	rc = step_row(st, q, "oldest snapshot");
	if (rc == 0)
		return fail(st, -EIO, "uid %u is charged for snapshots it does not have",
		            (unsigned)uid);
	if (rc < 0)
		return rc;
	*id = sqlite3_column_int64(q, 0);
	*bytes = (uint64_t)sqlite3_column_int64(q, 1);
	sqlite3_reset(q);
	return 0;
}

static int delete_snapshot(struct store *st, int64_t id, struct idmap *stacks);
static int collect_garbage(struct store *st, const struct idmap *stacks);

/* Records that snapshot id of uid was deleted, and why (store.h). */
static int note_deleted(struct store *st, int64_t id, uid_t uid, enum store_deleted_by why)
{
	struct timespec now;
	sqlite3_stmt *q;
	int rc = stmt_get(st, S_DELETED_NOTE, &q);

	if (rc != 0)
		return rc;
	clock_gettime(CLOCK_REALTIME, &now);
	sqlite3_bind_int64(q, 1, id);
	sqlite3_bind_int64(q, 2, uid);
	sqlite3_bind_int(q, 3, (int)why);
	sqlite3_bind_double(q, 4, (double)now.tv_sec + now.tv_nsec / 1e9);
	return step_done(st, q, "note a deleted snapshot");
}

/* Keeps the newest STORE_DELETED_KEEP records of deleted snapshots. */
static int prune_deleted(struct store *st)
{
	sqlite3_stmt *q;
	int rc = stmt_get(st, S_DELETED_PRUNE, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, STORE_DELETED_KEEP);
	return step_done(st, q, "prune deleted snapshots");
}

/* One more snapshot of uid deleted by a bound, in w's per-uid counts. */
static void count_evicted(struct store_written *w, uid_t uid, bool own)
{
	size_t i;

	if (own)
		w->evicted_own++;
	else
		w->evicted_total++;
	for (i = 0; i < w->nevicted; i++)
		if (w->evicted[i].uid == uid)
			break;
	if (i == w->nevicted) {
		if (i == STORE_EVICTED_UIDS) {
			if (own)
				w->more_own++;
			else
				w->more_total++;
			return;
		}
		w->nevicted++;
		w->evicted[i].uid = uid;
		w->evicted[i].own = w->evicted[i].total = 0;
	}
	if (own)
		w->evicted[i].own++;
	else
		w->evicted[i].total++;
}

/* Deletes the oldest snapshot of uid for a bound; -ENOSPC (with msg) when
 * that would be snapshot keep, the one being written (0 = none). */
static int evict_oldest(struct store *st, struct usage *u, uid_t uid, int64_t keep, bool own,
                        struct idmap *stacks, struct store_written *w, const char *msg)
{
	int64_t victim = 0;
	uint64_t bytes = 0;
	int rc = oldest_of(st, uid, &victim, &bytes);

	if (rc == 0 && victim == keep)
		return fail(st, -ENOSPC, "%s", msg);
	if (rc == 0)
		rc = delete_snapshot(st, victim, stacks);
	if (rc == 0)
		rc = note_deleted(st, victim, uid, own ? STORE_BY_PER_UID : STORE_BY_TOTAL);
	if (rc != 0)
		return rc;
	struct store_uid_usage *e = usage_sub(u, uid, bytes);
	if (own)
		e->evicted_own++;
	else
		e->evicted_total++;
	count_evicted(w, uid, own);
	return 0;
}

/* Keeps the bounds (see the top of store.h) in u, the figures, after
 * snapshot id of uid was written; id 0: at open, every uid. -ENOSPC when
 * only deleting the new snapshot itself would do. */
static int keep_bounds(struct store *st, struct usage *u, uid_t uid, int64_t id,
                       struct store_written *w)
{
	struct idmap stacks = {0};
	char msg[160];
	int rc = 0;

	for (size_t i = 0; rc == 0 && st->max_per_uid > 0 && i < u->n; i++) {
		uid_t who = u->u[i].uid;
		if (id != 0 && who != uid)
			continue; /* the others are within theirs already */
		while (rc == 0 && usage_of(u, who)->bytes > st->max_per_uid)
			rc = evict_oldest(st, u, who, id, true, &stacks, w,
			                  "the snapshot alone passes the per-uid bound");
	}
	snprintf(msg, sizeof(msg),
	         "the other uids hold the rest of the total bound (%llu bytes), each less than "
	         "uid %u",
	         (unsigned long long)st->max_bytes, (unsigned)uid);
	while (rc == 0 && st->max_bytes > 0 && u->bytes > st->max_bytes)
		rc = evict_oldest(st, u, usage_most(u, id != 0 ? uid : (uid_t)-1)->uid, id, false,
		                  &stacks, w, msg);
	if (rc == 0 && w->evicted_own + w->evicted_total > 0)
		rc = prune_deleted(st);
	if (rc == 0 && stacks.len > 0)
		rc = collect_garbage(st, &stacks);
	if (rc == 0 && w->evicted_own + w->evicted_total > 0)
		rc = exec(st, "PRAGMA incremental_vacuum", "incremental vacuum");
	idmap_free(&stacks);
	return rc;
}

static void written_figures(struct store *st, uid_t uid, struct store_written *w)
{
	pthread_mutex_lock(&st->usage_lock);
	w->uid_bytes = usage_of(&st->usage, uid)->bytes;
	w->total_bytes = st->usage.bytes;
	pthread_mutex_unlock(&st->usage_lock);
}

int store_write_bounded(struct store *st, const struct snapshot *s, struct store_written *w)
{
	struct usage next = {0};
	size_t maxdepth;
	int rc;

	memset(w, 0, sizeof(*w));
	pthread_mutex_lock(&st->lock);
	rc = validate(st, s, &maxdepth);
	if (rc != 0)
		goto out;
	w->bytes = store_charge(s);
	if (st->max_per_uid > 0 && w->bytes > st->max_per_uid) {
		rc = fail(st, -EFBIG,
		          "the snapshot is charged %llu bytes, more than a uid may hold (%llu, "
		          "--max-store-bytes-per-uid)",
		          (unsigned long long)w->bytes, (unsigned long long)st->max_per_uid);
		goto refused;
	}
	if (st->max_bytes > 0 && w->bytes > st->max_bytes) {
		rc = fail(st, -EFBIG,
		          "the snapshot is charged %llu bytes, more than the store may hold (%llu, "
		          "--max-store-bytes)",
		          (unsigned long long)w->bytes, (unsigned long long)st->max_bytes);
		goto refused;
	}
	rc = begin(st, true);
	if (rc != 0)
		goto out;
	rc = usage_sync(st);
	if (rc == 0) {
		pthread_mutex_lock(&st->usage_lock);
		usage_copy(&next, &st->usage);
		pthread_mutex_unlock(&st->usage_lock);
		rc = write_snapshot(st, s, maxdepth, w->bytes, &w->id);
	}
	if (rc == 0) {
		usage_add(&next, s->uid, w->bytes);
		rc = keep_bounds(st, &next, s->uid, w->id, w);
	}
	rc = finish(st, rc);
	if (rc == 0)
		usage_publish(st, &next);
	usage_free(&next);
	if (rc != -ENOSPC)
		goto out;
	w->evicted_own = w->evicted_total = w->more_own = w->more_total = w->nevicted = 0;
refused:
	w->id = 0;
	usage_refused(st, s->uid);
out:
	if (rc != 0)
		w->id = 0;
	written_figures(st, s->uid, w);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_write(struct store *st, const struct snapshot *s, int64_t *id)
{
	struct store_written w;
	int rc = store_write_bounded(st, s, &w);

	if (rc == 0)
		*id = w.id;
	return rc;
}

/* ---- reading ---- */

static char *column_strdup(sqlite3_stmt *q, int col)
{
	const unsigned char *t = sqlite3_column_text(q, col);

	return xstrdup(t != NULL ? (const char *)t : "");
}

/* cmdline's JSON array back into a NULL-terminated argv. */
static int parse_cmdline(struct store *st, const char *text, char ***out)
{
	cJSON *arr = cJSON_Parse(text);
	char **argv;
	int n, i = 0;
	const cJSON *a;

	if (arr == NULL || !cJSON_IsArray(arr)) {
		cJSON_Delete(arr);
		return fail(st, -EIO, "corrupt database: cmdline is not a JSON array");
	}
	n = cJSON_GetArraySize(arr);
	argv = xcalloc((size_t)n + 1, sizeof(*argv));
	cJSON_ArrayForEach(a, arr)
	{
		if (!cJSON_IsString(a)) {
			for (int k = 0; k < i; k++)
				free(argv[k]);
			free(argv);
			cJSON_Delete(arr);
			return fail(st, -EIO, "corrupt database: cmdline holds a non-string");
		}
		argv[i++] = xstrdup(a->valuestring);
	}
	cJSON_Delete(arr);
	*out = argv;
	return 0;
}

static int read_header(struct store *st, int64_t id, struct snapshot *s)
{
	sqlite3_stmt *q;
	const unsigned char *reason;
	int rc = stmt_get(st, S_READ_SNAPSHOT, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, id);
	rc = step_row(st, q, "read snapshot");
	if (rc == 0)
		return fail(st, -ENOENT, "no snapshot %lld", (long long)id);
	if (rc < 0)
		return rc;
	s->id = id;
	s->pid = (pid_t)sqlite3_column_int64(q, 0);
	s->uid = (uid_t)sqlite3_column_int64(q, 1);
	s->start_time = (uint64_t)sqlite3_column_int64(q, 2);
	s->exe = column_strdup(q, 3);
	s->taken_at = sqlite3_column_double(q, 5);
	reason = sqlite3_column_text(q, 6);
	snprintf(s->reason, sizeof(s->reason), "%s", reason != NULL ? (const char *)reason : "");
	s->current = (uint64_t)sqlite3_column_int64(q, 7);
	s->peak = (uint64_t)sqlite3_column_int64(q, 8);
	s->blocks = (uint64_t)sqlite3_column_int64(q, 9);
	s->allocations = (uint64_t)sqlite3_column_int64(q, 10);
	s->frees = (uint64_t)sqlite3_column_int64(q, 11);
	s->lost_events = (uint64_t)sqlite3_column_int64(q, 12);
	s->sample_bytes = (uint64_t)sqlite3_column_int64(q, 13);
	const unsigned char *cmdline = sqlite3_column_text(q, 4);
	rc = parse_cmdline(st, cmdline != NULL ? (const char *)cmdline : "", &s->argv);
	sqlite3_reset(q);
	return rc;
}

/* The snapshot index of database frame fid, interning it on first use. */
static int read_frame(struct store *st, struct snapshot *s, struct idmap *frames, int64_t fid,
                      uint32_t *idx)
{
	const uint32_t *known = idmap_find(frames, fid);
	struct frame_info f = {0};
	sqlite3_stmt *q;
	int rc;

	if (known != NULL) {
		*idx = *known;
		return 0;
	}
	rc = stmt_get(st, S_READ_FRAME, &q);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, fid);
	rc = step_row(st, q, "read frame");
	if (rc == 0)
		return fail(st, -EIO, "corrupt database: stack names missing frame %lld",
		            (long long)fid);
	if (rc < 0)
		return rc;
	f.filename = (const char *)sqlite3_column_text(q, 0);
	f.lineno = (uint32_t)sqlite3_column_int64(q, 1);
	f.function = (const char *)sqlite3_column_text(q, 2);
	f.module = (const char *)sqlite3_column_text(q, 3);
	f.symbols = (const char *)sqlite3_column_text(q, 4);
	*idx = snapshot_intern_frame(s, &f);
	sqlite3_reset(q);
	idmap_put(frames, fid, *idx);
	return 0;
}

/* Decodes one stack blob into trace t (whose arrays it allocates). */
static int read_stack(struct store *st, struct snapshot *s, struct idmap *frames,
                      const unsigned char *p, size_t len, struct snapshot_trace *t)
{
	int rc;

	if (len % FRAME_BYTES != 0 || len / FRAME_BYTES > UINT32_MAX)
		return fail(st, -EIO, "corrupt database: stack blob of %zu bytes", len);
	t->nframes = (uint32_t)(len / FRAME_BYTES);
	if (t->nframes == 0)
		return 0;
	t->frames = xreallocarray(NULL, t->nframes, sizeof(*t->frames));
	t->addrs = xreallocarray(NULL, t->nframes, sizeof(*t->addrs));
	for (uint32_t j = 0; j < t->nframes; j++, p += FRAME_BYTES) {
		rc = read_frame(st, s, frames, (int64_t)get_le(p, 4), &t->frames[j]);
		if (rc != 0)
			return rc;
		t->addrs[j] = get_le(p + 4, 8);
	}
	return 0;
}

static int read_traces(struct store *st, int64_t id, struct snapshot *s, struct idmap *stacks)
{
	struct idmap frames = {0};
	size_t cap = 0;
	sqlite3_stmt *q;
	int rc = stmt_get(st, S_READ_TRACES, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, id);
	while ((rc = step_row(st, q, "read traces")) == 1) {
		struct snapshot_trace *t;
		if (s->ntraces == cap) {
			cap = cap != 0 ? cap * 2 : 256;
			s->traces = xreallocarray(s->traces, cap, sizeof(*s->traces));
		}
		if (s->ntraces >= UINT32_MAX) {
			rc = fail(st, -EIO, "corrupt database: too many traces");
			break;
		}
		/* counted before it is filled, so snapshot_free sees it on error */
		t = &s->traces[s->ntraces++];
		memset(t, 0, sizeof(*t));
		t->size = (uint64_t)sqlite3_column_int64(q, 1);
		t->count = (uint64_t)sqlite3_column_int64(q, 2);
		t->allocations = (uint64_t)sqlite3_column_int64(q, 3);
		t->allocated = (uint64_t)sqlite3_column_int64(q, 5);
		t->temporary = (uint64_t)sqlite3_column_int64(q, 6);
		t->peak_size = (uint64_t)sqlite3_column_int64(q, 7);
		t->peak_count = (uint64_t)sqlite3_column_int64(q, 8);
		rc = read_stack(st, s, &frames, sqlite3_column_blob(q, 4),
		                (size_t)sqlite3_column_bytes(q, 4), t);
		if (rc != 0)
			break;
		idmap_put(stacks, sqlite3_column_int64(q, 0), (uint32_t)(s->ntraces - 1));
	}
	sqlite3_reset(q);
	idmap_free(&frames);
	return rc;
}

static int read_largest(struct store *st, int64_t id, struct snapshot *s,
                        const struct idmap *stacks)
{
	size_t cap = 0;
	sqlite3_stmt *q;
	int rc = stmt_get(st, S_READ_LARGEST, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, id);
	while ((rc = step_row(st, q, "read largest blocks")) == 1) {
		const uint32_t *trace = idmap_find(stacks, sqlite3_column_int64(q, 2));
		if (trace == NULL) {
			rc = fail(st, -EIO,
			          "corrupt database: a largest block of snapshot %lld"
			          " has a stack without a trace",
			          (long long)id);
			break;
		}
		if (s->nlargest == cap) {
			cap = cap != 0 ? cap * 2 : 16;
			s->largest = xreallocarray(s->largest, cap, sizeof(*s->largest));
		}
		s->largest[s->nlargest].addr = (uint64_t)sqlite3_column_int64(q, 0);
		s->largest[s->nlargest].size = (uint64_t)sqlite3_column_int64(q, 1);
		s->largest[s->nlargest].trace = *trace;
		s->nlargest++;
	}
	sqlite3_reset(q);
	return rc;
}

/* Reads snapshot id into s (fresh) inside the caller's transaction. */
static int read_in_tx(struct store *st, int64_t id, struct snapshot *s)
{
	struct idmap stacks = {0};
	int rc = read_header(st, id, s);

	if (rc == 0)
		rc = read_traces(st, id, s, &stacks);
	if (rc == 0)
		rc = read_largest(st, id, s, &stacks);
	idmap_free(&stacks);
	return rc;
}

int store_read(struct store *st, int64_t id, struct snapshot **out)
{
	struct snapshot *s = snapshot_new();
	int rc;

	pthread_mutex_lock(&st->lock);
	/* One read transaction, so a concurrent retention on another
	 * connection cannot delete half of what we read. */
	rc = begin(st, false);
	if (rc == 0)
		rc = finish(st, read_in_tx(st, id, s));
	pthread_mutex_unlock(&st->lock);
	if (rc != 0) {
		snapshot_free(s);
		s = NULL;
	}
	*out = s;
	return rc;
}

/* ---- lists and lookups ---- */

int store_list(struct store *st, pid_t pid, long uid, cJSON **out)
{
	cJSON *arr = cJSON_CreateArray();
	sqlite3_stmt *q;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&st->lock);
	rc = stmt_get(st, S_LIST, &q);
	if (rc != 0)
		goto out;
	sqlite3_bind_int64(q, 1, pid);
	sqlite3_bind_int64(q, 2, uid);
	while ((rc = step_row(st, q, "list snapshots")) == 1) {
		struct snapshot s = {0};
		const unsigned char *reason = sqlite3_column_text(q, 6);
		const unsigned char *exe = sqlite3_column_text(q, 4);

		s.id = sqlite3_column_int64(q, 0);
		s.pid = (pid_t)sqlite3_column_int64(q, 1);
		s.uid = (uid_t)sqlite3_column_int64(q, 2);
		s.start_time = (uint64_t)sqlite3_column_int64(q, 3);
		/* borrowed for the call: the summary copies what it keeps */
		s.exe = (char *)(exe != NULL ? exe : (const unsigned char *)"");
		s.taken_at = sqlite3_column_double(q, 5);
		snprintf(s.reason, sizeof(s.reason), "%s",
		         reason != NULL ? (const char *)reason : "");
		s.current = (uint64_t)sqlite3_column_int64(q, 7);
		s.peak = (uint64_t)sqlite3_column_int64(q, 8);
		s.blocks = (uint64_t)sqlite3_column_int64(q, 9);
		s.allocations = (uint64_t)sqlite3_column_int64(q, 10);
		s.frees = (uint64_t)sqlite3_column_int64(q, 11);
		s.lost_events = (uint64_t)sqlite3_column_int64(q, 12);
		s.sample_bytes = (uint64_t)sqlite3_column_int64(q, 13);
		cJSON_AddItemToArray(arr, snapshot_summary_json(&s));
	}
out:
	pthread_mutex_unlock(&st->lock);
	if (rc != 0) {
		cJSON_Delete(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

/* See the top of the file: the newest incarnation of pid, then its newest
 * snapshot, an "exit" one first when prefer_exit (not a "detach" one:
 * the process may have been attached again since). */
static int latest(struct store *st, pid_t pid, long uid, int prefer_exit, int64_t *id)
{
	sqlite3_stmt *q;
	int64_t proc;
	int rc = stmt_get(st, S_LATEST_PROCESS, &q);

	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, pid);
	sqlite3_bind_int64(q, 2, uid);
	rc = step_row(st, q, "latest snapshot");
	if (rc == 0)
		return fail(st, -ENOENT, "no snapshot of pid %ld", (long)pid);
	if (rc < 0)
		return rc;
	proc = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	rc = stmt_get(st, S_LATEST_SNAPSHOT, &q);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, proc);
	sqlite3_bind_int(q, 2, prefer_exit != 0);
	rc = step_row(st, q, "latest snapshot");
	if (rc == 0) /* deleted between the two statements: not in a transaction */
		return fail(st, -ENOENT, "no snapshot of pid %ld", (long)pid);
	if (rc < 0)
		return rc;
	*id = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	return 0;
}

int store_latest(struct store *st, pid_t pid, long uid, int prefer_exit, int64_t *id)
{
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = begin(st, false);
	if (rc == 0)
		rc = finish(st, latest(st, pid, uid, prefer_exit, id));
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_owner(struct store *st, int64_t id, uid_t *uid)
{
	sqlite3_stmt *q;
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = stmt_get(st, S_OWNER, &q);
	if (rc != 0)
		goto out;
	sqlite3_bind_int64(q, 1, id);
	rc = step_row(st, q, "snapshot owner");
	if (rc == 0) {
		rc = fail(st, -ENOENT, "no snapshot %lld", (long long)id);
	} else if (rc == 1) {
		*uid = (uid_t)sqlite3_column_int64(q, 0);
		sqlite3_reset(q);
		rc = 0;
	}
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int store_counts(struct store *st, struct store_counts *out)
{
	sqlite3_stmt *q;
	int rc;

	pthread_mutex_lock(&st->lock);
	rc = stmt_get(st, S_COUNTS, &q);
	if (rc != 0)
		goto out;
	rc = step_row(st, q, "counts");
	if (rc == 1) {
		out->processes = (size_t)sqlite3_column_int64(q, 0);
		out->snapshots = (size_t)sqlite3_column_int64(q, 1);
		out->stacks = (size_t)sqlite3_column_int64(q, 2);
		out->frames = (size_t)sqlite3_column_int64(q, 3);
		sqlite3_reset(q);
		rc = 0;
	} else if (rc == 0) {
		rc = fail(st, -EIO, "counts: no row");
	}
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- retention ---- */

/* Adds every id the query yields (column 0) to set. */
static int collect_ids(struct store *st, sqlite3_stmt *q, struct idmap *set, const char *what)
{
	int rc;

	while ((rc = step_row(st, q, what)) == 1)
		idmap_put(set, sqlite3_column_int64(q, 0), 0);
	return rc; /* step_row reset q */
}

/* A snapshot retention deletes. */
struct doomed {
	int64_t id;
	uid_t uid;
	uint64_t bytes;
	enum store_deleted_by why;
};

/* The snapshots retention deletes, as an array. */
static int doomed_snapshots(struct store *st, unsigned keep, double max_age_days,
                            struct doomed **ids, size_t *n)
{
	struct timespec now;
	size_t cap = 0;
	sqlite3_stmt *q;
	int rc = stmt_get(st, S_RETAIN_DOOMED, &q);

	*ids = NULL;
	*n = 0;
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, keep);
	if (max_age_days > 0) {
		clock_gettime(CLOCK_REALTIME, &now);
		sqlite3_bind_double(
		    q, 2, (double)now.tv_sec + now.tv_nsec / 1e9 - max_age_days * 86400.0);
	} else {
		sqlite3_bind_null(q, 2);
	}
	while ((rc = step_row(st, q, "retention")) == 1) {
		if (*n == cap) {
			cap = cap != 0 ? cap * 2 : 64;
			*ids = xreallocarray(*ids, cap, sizeof(**ids));
		}
		(*ids)[*n].id = sqlite3_column_int64(q, 0);
		(*ids)[*n].uid = (uid_t)sqlite3_column_int64(q, 1);
		(*ids)[*n].bytes = (uint64_t)sqlite3_column_int64(q, 2);
		(*ids)[*n].why =
		    sqlite3_column_int(q, 3) ? STORE_BY_RETAIN_COUNT : STORE_BY_RETAIN_AGE;
		(*n)++;
	}
	return rc; /* step_row reset q */
}

/* Deletes the candidate stacks nothing uses any more; the frames they
 * named become candidates in frames (value 0 = not yet seen in use). */
static int gc_stacks(struct store *st, const struct idmap *stacks, struct idmap *frames)
{
	sqlite3_stmt *unused, *del;
	int rc = stmt_get(st, S_STACK_UNUSED, &unused);

	if (rc == 0)
		rc = stmt_get(st, S_STACK_DELETE, &del);
	for (size_t i = 0; rc == 0 && i < stacks->len; i++) {
		int64_t id = stacks->ent[i].key;
		sqlite3_bind_int64(unused, 1, id);
		rc = step_row(st, unused, "garbage stacks");
		if (rc <= 0)
			continue;
		const unsigned char *p = sqlite3_column_blob(unused, 0);
		size_t len = (size_t)sqlite3_column_bytes(unused, 0);
		for (size_t off = 0; off + FRAME_BYTES <= len; off += FRAME_BYTES)
			idmap_put(frames, (int64_t)get_le(p + off, 4), 0);
		sqlite3_reset(unused);
		sqlite3_bind_int64(del, 1, id);
		rc = step_done(st, del, "delete stack");
	}
	return rc;
}

/* Deletes the candidate frames no remaining stack names. The stack blobs
 * are scanned until every candidate has been seen in use. */
static int gc_frames(struct store *st, struct idmap *frames)
{
	size_t pending = frames->len;
	sqlite3_stmt *q;
	int rc;

	if (pending == 0)
		return 0;
	rc = stmt_get(st, S_STACK_ALL, &q);
	if (rc != 0)
		return rc;
	while (pending > 0 && (rc = step_row(st, q, "scan stacks")) == 1) {
		const unsigned char *p = sqlite3_column_blob(q, 0);
		size_t len = (size_t)sqlite3_column_bytes(q, 0);
		for (size_t off = 0; off + FRAME_BYTES <= len; off += FRAME_BYTES) {
			uint32_t *used = idmap_find(frames, (int64_t)get_le(p + off, 4));
			if (used != NULL && *used == 0) {
				*used = 1;
				pending--;
			}
		}
	}
	if (rc < 0)
		return rc;
	sqlite3_reset(q);
	rc = stmt_get(st, S_FRAME_DELETE, &q);
	for (size_t i = 0; rc == 0 && pending > 0 && i < frames->len; i++) {
		if (frames->ent[i].val != 0)
			continue;
		sqlite3_bind_int64(q, 1, frames->ent[i].key);
		rc = step_done(st, q, "delete frame");
	}
	return rc;
}

/* Deletes snapshot id (cascading to its trace and largest rows); its
 * stacks become candidates for collect_garbage. */
static int delete_snapshot(struct store *st, int64_t id, struct idmap *stacks)
{
	sqlite3_stmt *q, *del;
	int rc = stmt_get(st, S_SNAPSHOT_STACKS, &q);

	if (rc == 0)
		rc = stmt_get(st, S_SNAPSHOT_DELETE, &del);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(q, 1, id);
	rc = collect_ids(st, q, stacks, "stacks of a snapshot");
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(del, 1, id);
	return step_done(st, del, "delete snapshot");
}

/* After deletions: the candidate stacks nothing uses, their frames that
 * nothing uses, the processes without snapshots. */
static int collect_garbage(struct store *st, const struct idmap *stacks)
{
	struct idmap frames = {0};
	int rc = gc_stacks(st, stacks, &frames);

	if (rc == 0)
		rc = gc_frames(st, &frames);
	if (rc == 0)
		rc = run(st, S_PROCESS_GC, "delete processes");
	idmap_free(&frames);
	return rc;
}

static int retain(struct store *st, unsigned keep, double max_age_days, struct usage *u,
                  size_t *deleted)
{
	struct idmap stacks = {0};
	struct doomed *doomed;
	size_t n;
	int rc = doomed_snapshots(st, keep, max_age_days, &doomed, &n);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = delete_snapshot(st, doomed[i].id, &stacks);
		if (rc == 0)
			rc = note_deleted(st, doomed[i].id, doomed[i].uid, doomed[i].why);
		if (rc == 0)
			usage_sub(u, doomed[i].uid, doomed[i].bytes);
	}
	if (rc == 0 && n > 0)
		rc = prune_deleted(st);
	if (rc == 0)
		rc = collect_garbage(st, &stacks);
	if (rc == 0 && n > 0)
		rc = exec(st, "PRAGMA incremental_vacuum", "incremental vacuum");
	if (rc == 0)
		*deleted = n;
	idmap_free(&stacks);
	free(doomed);
	return rc;
}

int store_retain(struct store *st, unsigned keep_per_process, double max_age_days, size_t *deleted)
{
	struct usage next = {0};
	int rc;

	*deleted = 0;
	pthread_mutex_lock(&st->lock);
	if (!(max_age_days >= 0)) { /* negative or NaN */
		rc = fail(st, -EINVAL, "max_age_days must be 0 or more");
		goto out;
	}
	rc = begin(st, true);
	if (rc == 0)
		rc = usage_sync(st);
	if (rc == 0) {
		pthread_mutex_lock(&st->usage_lock);
		usage_copy(&next, &st->usage);
		pthread_mutex_unlock(&st->usage_lock);
		rc = retain(st, keep_per_process, max_age_days, &next, deleted);
	}
	rc = finish(st, rc);
	if (rc == 0)
		usage_publish(st, &next);
	else
		*deleted = 0;
	usage_free(&next);
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---- charging what an older schema stored ---- */

static int read_in_tx(struct store *st, int64_t id, struct snapshot *s);

/* In a write transaction at open: the charge of every snapshot stored
 * without one (version 2 had no bytes column), then the figures. */
static int charge_uncharged(struct store *st)
{
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *q;
	int rc = stmt_get(st, S_UNCHARGED, &q);

	if (rc != 0)
		return rc;
	while ((rc = step_row(st, q, "uncharged snapshots")) == 1) {
		if (n == cap) {
			cap = cap != 0 ? cap * 2 : 64;
			ids = xreallocarray(ids, cap, sizeof(*ids));
		}
		ids[n++] = sqlite3_column_int64(q, 0);
	}
	if (rc == 0)
		rc = stmt_get(st, S_SET_BYTES, &q);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct snapshot *s = snapshot_new();
		rc = read_in_tx(st, ids[i], s);
		if (rc == 0) {
			sqlite3_bind_int64(q, 1, ids[i]);
			sqlite3_bind_int64(q, 2, (sqlite3_int64)store_charge(s));
			rc = step_done(st, q, "charge a snapshot");
		}
		snapshot_free(s);
	}
	free(ids);
	if (rc == 0)
		rc = usage_recompute(st);
	return rc;
}

/* At open: the charges, and the figures from them. */
static int usage_load(struct store *st)
{
	int rc = begin(st, true);

	if (rc == 0)
		rc = finish(st, charge_uncharged(st));
	return rc;
}
