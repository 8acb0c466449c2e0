/*
 * e2e_snapshots.c - end-to-end tests of stored snapshots (SQLite), against
 * the real memtraced, libmemtrace.so and memtracectl.
 *
 * Each test runs in Check's forked child and starts its own daemon on a
 * fresh directory, with the snapshot options it needs (so the daemon is
 * started with h_daemon_start_opts, not by a fixture). The numbers a test
 * expects come only from the books the traced programs wrote
 * (tests/progs/deltas.c, manystacks.c, keepfew.c), and for a traced `make`
 * from strace's count of the processes that ran; what the daemon's own
 * store looks like inside is read with SQLite's C API only where the
 * behaviour is about the database itself (integrity after kill -9, growth,
 * garbage left by retention, snapshots aged on purpose, exit snapshots per
 * process).
 *
 * Behaviours pinned, by test:
 *  compare_keys              snapshot, change, snapshot: `compare` is the
 *                            books' difference for every key, --cumulative,
 *                            --include/--exclude, --limit, live:PID,
 *                            reversed, in compare_to order
 *  periodic_and_exit,        snapshots every 0.5 s, each exact; an exit
 *  exit_on_sigkill (x2),     snapshot on a normal exit and on SIGKILL (also
 *  run_prints_leaks          of 16384 stacks with a write nearly always in
 *                            flight); `top --pid` after the end; `run --top`
 *                            prints the leaks, exits with PROG's status
 *  restart_and_files         SIGTERM and restart: every snapshot (manual,
 *                            exit, shutdown) listed and exact; `top --pid`
 *                            and `stats --pid` of gone processes from their
 *                            newest snapshot; `-o` files read with the
 *                            database deleted and no daemon running
 *  kill9_while_writing       ten kill -9s while snapshots of 16384 stacks
 *  (x2)                      are written: the database opens, integrity and
 *                            foreign keys hold, every snapshot memtracectl
 *                            reported is there and exact; with
 *                            --retain-snapshots 2, nothing half-deleted
 *  retain_count_manual,      --retain-snapshots keeps exactly the newest N
 *  retain_count_periodic,    per process (an exit snapshot is one of them),
 *  retain_steady_db,         survivors stay exact, no unused stack, frame or
 *  retain_days               process is left; under a steady workload every
 *                            table stops growing; --retain-days deletes
 *                            exactly the snapshots aged past it, 0 none
 *  exited_session_memory     16 threads keep 64 of 32,000 blocks and exit:
 *                            the exited session's `top` is the book by line
 *                            and by traceback, and all the daemon holds for
 *                            it (`model_bytes`) is under 64 KiB
 *  make_flood                (needs make and strace) a traced `make -j4` of
 *                            300 rules, half `true` (fork and exec), half
 *                            through /bin/sh: every session listed recorded
 *                            something, each has one exit snapshot and no
 *                            other exit snapshot is stored, make itself is
 *                            listed, and there are no more sessions than
 *                            processes ran (strace -f of the same run)
 *  snapshot_uid_isolation    (root only) uid 65534 neither lists nor reads
 *                            nor takes root's snapshots
 *
 * The store's schema (daemon/store.c: tables snapshot, trace, largest,
 * stack, frame, process; a stack's frames blob of 12-byte entries, frame id
 * first) is used by the garbage checks, to age snapshots for --retain-days
 * and to count exit snapshots per process; integrity, foreign keys and
 * growth are checked whatever the schema; everything else goes through
 * memtracectl.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"

static struct h_daemon D; /* this test's daemon (each test has its own process) */

static void teardown(void)
{
	h_daemon_cleanup(&D);
}

/* ------------------------------------------------------------ client */

/* Polls `top --pid P --limit 0` (key lineno) until it matches the book:
 * the daemon has taken in everything the program did before its book. */
static void wait_live(long pid, const struct h_truth *t, const char *what)
{
	struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
	char pidbuf[24];
	/* --raw-frames: see struct h_expect */
	const char *args[] = {"top", "--pid", pidbuf, "--limit", "0", "--raw-frames", NULL};
	struct h_ctl r;
	char *why;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, args);
	ck_assert_msg(why == NULL, "%s: live `top --pid %ld` never matched the book:\n  %.3000s",
	              what, pid, why);
	h_ctl_free(&r);
}

/*
 * `top SEL... --key K --limit 0 [--cumulative]`, run once (a stored
 * snapshot or an ended process does not change), must match the book
 * exactly. SEL is {"--snapshot", REF} or {"--pid", P}. Leaves the answer in
 * r when r is not NULL.
 */
static void top_exact(struct h_ctl *r, const char *sel, const char *ref, const struct h_truth *t,
                      enum h_key key, bool cum, const char *what)
{
	struct h_expect e = {.t = t, .files = t, .key = key, .cumulative = cum};
	/* --raw-frames: see struct h_expect */
	const char *args[] = {"top",
	                      sel,
	                      ref,
	                      "--key",
	                      h_key_names[key],
	                      "--limit",
	                      "0",
	                      "--raw-frames",
	                      cum ? "--cumulative" : NULL,
	                      NULL};
	struct h_ctl mine;
	char *why, *cmd;

	if (r == NULL)
		r = &mine;
	h_ctl_ok(&D, H_NOUID, r, args);
	why = h_check_top(r->json, &e);
	cmd = h_args_str(args);
	ck_assert_msg(why == NULL, "%s: `%s` differs from the program's book:\n  %.3000s", what,
	              cmd, why);
	free(cmd);
	if (r == &mine)
		h_ctl_free(r);
}

/* The "snapshot" member of an answer given from a stored snapshot. */
static void assert_from_snapshot(const cJSON *json, long long id, const char *reason,
                                 const char *what)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(json, "snapshot");
	long long got = -1;
	const char *why = h_json_str(m, "reason");
	char *b = h_json_brief(json, 600);

	ck_assert_msg(cJSON_IsObject(m) && h_json_int(m, "id", &got) && got == id && why != NULL &&
	                  strcmp(why, reason) == 0,
	              "%s: answer should come from snapshot %lld (%s) and say so in \"snapshot\": "
	              "%s",
	              what, id, reason, b);
	free(b);
}

/* --------------------------------------------------------- snapshots */

struct snap {
	long long id, pid, current, blocks;
	double taken_at;
	char reason[16];
};

struct snaplist {
	struct snap *v;
	int n;
};

static void snaps_parse(const cJSON *json, struct snaplist *l, const char *what)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(json, "snapshots"), *e;
	char *b = h_json_brief(json, 800);

	memset(l, 0, sizeof *l);
	ck_assert_msg(cJSON_IsArray(arr), "%s: `snapshots` answer has no array: %s", what, b);
	l->v = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *l->v);
	ck_assert(l->v != NULL);
	cJSON_ArrayForEach(e, arr)
	{
		struct snap *s = &l->v[l->n++];
		const cJSON *ta = cJSON_GetObjectItemCaseSensitive(e, "taken_at");
		const char *reason = h_json_str(e, "reason");
		ck_assert_msg(h_json_int(e, "id", &s->id) && h_json_int(e, "pid", &s->pid) &&
		                  h_json_int(e, "current", &s->current) &&
		                  h_json_int(e, "blocks", &s->blocks) && cJSON_IsNumber(ta) &&
		                  reason != NULL && h_json_str(e, "exe") != NULL &&
		                  cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "peak")),
		              "%s: a `snapshots` entry lacks id/pid/exe/taken_at/reason/current/"
		              "peak/blocks: %s",
		              what, b);
		s->taken_at = ta->valuedouble;
		snprintf(s->reason, sizeof s->reason, "%s", reason);
		/* oldest first */
		if (l->n > 1) {
			const struct snap *p = &l->v[l->n - 2];
			ck_assert_msg(
			    p->taken_at <= s->taken_at,
			    "%s: `snapshots` is not oldest first: %lld (%.6f) before %lld "
			    "(%.6f)",
			    what, p->id, p->taken_at, s->id, s->taken_at);
		}
	}
	free(b);
}

/* `snapshots [--pid P]` (pid 0: all). */
static void snaps_list(struct snaplist *l, long pid, const char *what)
{
	struct h_ctl r;
	char pidbuf[24];
	const char *all[] = {"snapshots", NULL};
	const char *one[] = {"snapshots", "--pid", pidbuf, NULL};

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	h_ctl_ok(&D, H_NOUID, &r, pid != 0 ? one : all);
	snaps_parse(r.json, l, what);
	if (pid != 0)
		for (int i = 0; i < l->n; i++)
			ck_assert_msg(l->v[i].pid == pid,
			              "%s: `snapshots --pid %ld` lists snapshot %lld of pid %lld",
			              what, pid, l->v[i].id, l->v[i].pid);
	h_ctl_free(&r);
}

static void snaps_free(struct snaplist *l)
{
	free(l->v);
	memset(l, 0, sizeof *l);
}

static const struct snap *snaps_find(const struct snaplist *l, long long id)
{
	for (int i = 0; i < l->n; i++)
		if (l->v[i].id == id)
			return &l->v[i];
	return NULL;
}

static char *snaps_ids(const struct snaplist *l)
{
	char *s = h_strf("[");
	for (int i = 0; i < l->n; i++) {
		char *n = h_strf("%s%s%lld %s pid %lld", s, i ? ", " : "", l->v[i].id,
		                 l->v[i].reason, l->v[i].pid);
		free(s);
		s = n;
	}
	char *n = h_strf("%s]", s);
	free(s);
	return n;
}

/* `snapshot --pid P [-o FILE]`: asserts the answer describes a manual
 * snapshot of P and returns its id. */
static long long snap_take(long pid, const char *file)
{
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"snapshot", "--pid", pidbuf, file ? "-o" : NULL, file, NULL};
	long long id, rpid, cur;
	const char *reason;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	h_ctl_ok(&D, H_NOUID, &r, args);
	reason = h_json_str(r.json, "reason");
	ck_assert_msg(h_json_int(r.json, "id", &id) && id > 0 && h_json_int(r.json, "pid", &rpid) &&
	                  rpid == pid && reason != NULL && strcmp(reason, "manual") == 0 &&
	                  h_json_int(r.json, "current", &cur) &&
	                  cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r.json, "taken_at")),
	              "`snapshot --pid %ld`: answer is not {id, pid, taken_at, reason: manual, "
	              "current...}: %.1000s",
	              pid, r.out);
	if (file != NULL) {
		struct stat st;
		ck_assert_msg(stat(file, &st) == 0 && st.st_size > 0,
		              "`snapshot --pid %ld -o %s` wrote no file: %s", pid, file,
		              strerror(errno));
	}
	h_ctl_free(&r);
	return id;
}

struct reason_arg {
	long pid;
	const char *reason;
	long long id; /* out: the newest such snapshot */
};

static char *check_reason_cb(const cJSON *json, void *arg)
{
	struct reason_arg *a = arg;
	const cJSON *e;

	a->id = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(json, "snapshots"))
	{
		long long id, pid;
		const char *reason = h_json_str(e, "reason");
		if (h_json_int(e, "id", &id) && h_json_int(e, "pid", &pid) && pid == a->pid &&
		    reason != NULL && strcmp(reason, a->reason) == 0 && id > a->id)
			a->id = id;
	}
	if (a->id > 0)
		return NULL;
	char *b = h_json_brief(json, 1500);
	char *why = h_strf("no \"%s\" snapshot of pid %ld in %s", a->reason, a->pid, b);
	free(b);
	return why;
}

/* Polls `snapshots --pid P` until one has `reason`; returns the newest. */
static long long wait_reason(long pid, const char *reason, const char *what)
{
	struct reason_arg a = {pid, reason, 0};
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"snapshots", "--pid", pidbuf, NULL};
	char *why;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	why = h_ctl_poll(&D, H_NOUID, &r, check_reason_cb, &a, args);
	ck_assert_msg(why == NULL, "%s: %s", what, why);
	h_ctl_free(&r);
	return a.id;
}

/* ---------------------------------------------------------- programs */

static struct h_truth *start_prog(struct h_proc *p, const char *name, const char *const *args)
{
	struct h_truth *t;

	h_prog_start(p, &D, name, args, H_NOUID, NULL);
	h_proc_expect_ready(p);
	t = h_truth_must(p->truth);
	ck_assert_int_eq(t->pid, p->pid);
	return t;
}

static struct h_truth *next_phase(struct h_proc *p)
{
	struct h_truth *t;

	ck_assert_int_eq(h_proc_send(p, "next"), 0);
	h_proc_expect_ready(p);
	t = h_truth_must(p->truth);
	return t;
}

/* --------------------------------------------- comparing with the book */

/* `compare A B --key K --limit 0 [--cumulative] EXTRA...` once; asserts it
 * is the books' difference. Leaves the answer in r if r is not NULL. */
static void compare_exact(struct h_ctl *r, const char *a, const char *b, const struct h_truth *told,
                          const struct h_truth *tnew, enum h_key key, bool cum,
                          const char *const *extra, const char *what)
{
	const char *args[24];
	size_t n = 0;
	struct h_ctl mine;
	char *why, *cmd;

	args[n++] = "compare";
	args[n++] = a;
	args[n++] = b;
	args[n++] = "--key";
	args[n++] = h_key_names[key];
	args[n++] = "--limit";
	args[n++] = "0";
	if (cum)
		args[n++] = "--cumulative";
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	if (r == NULL)
		r = &mine;
	h_ctl_ok(&D, H_NOUID, r, args);
	why = h_check_compare(r->json, told, tnew, key, cum);
	cmd = h_args_str(args);
	ck_assert_msg(why == NULL, "%s: `%s` is not the books' difference:\n  %.3500s", what, cmd,
	              why);
	free(cmd);
	if (r == &mine)
		h_ctl_free(r);
}

/* ------------------------------------------------------------ SQLite */

static sqlite3 *db_open(const struct h_daemon *d)
{
	char *path = h_strf("%s/memtrace.db", d->state);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);

	ck_assert_msg(rc == SQLITE_OK, "sqlite3_open_v2(%s): %s", path,
	              db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_busy_timeout(db, 10000);
	free(path);
	return db;
}

/* The first column of every row of sql, as text joined by "; ". */
static char *db_rows(sqlite3 *db, const char *sql, int *nrows)
{
	sqlite3_stmt *q = NULL;
	char *s = h_strf("%s", "");
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);

	*nrows = 0;
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(q, 0);
		char *n = h_strf("%s%s%s", s, *nrows ? "; " : "", t ? (const char *)t : "NULL");
		free(s);
		s = n;
		(*nrows)++;
	}
	ck_assert_msg(rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return s;
}

static long long db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *q = NULL;
	long long v;
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
	rc = sqlite3_step(q);
	ck_assert_msg(rc == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
	v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return v;
}

/* PRAGMA integrity_check is "ok" and foreign_key_check finds nothing. */
static char *db_health(sqlite3 *db)
{
	int n;
	char *why = NULL;
	char *ic = db_rows(db, "PRAGMA integrity_check", &n);

	if (n != 1 || strcmp(ic, "ok") != 0)
		h_append(&why, "PRAGMA integrity_check: %.2000s", ic);
	free(ic);
	char *fk = db_rows(db, "PRAGMA foreign_key_check", &n);
	if (n != 0)
		h_append(&why, "PRAGMA foreign_key_check found %d rows (tables: %.1000s)", n, fk);
	free(fk);
	return why;
}

/* What retention must not leave behind: stacks no trace or largest block
 * uses, frames no stack names (a stack's frames blob holds 12 bytes per
 * frame, the frame id first, u32 little-endian: daemon/store.c), processes
 * without snapshots. */
static char *db_garbage(sqlite3 *db)
{
	char *why = NULL;
	long long n;
	sqlite3_stmt *q = NULL;
	long long maxf = db_int(db, "SELECT coalesce(max(id), 0) FROM frame");
	unsigned char *used = calloc((size_t)maxf + 1, 1);

	ck_assert(used != NULL);
	n = db_int(db, "SELECT count(*) FROM stack WHERE id NOT IN (SELECT stack_id FROM trace)"
	               " AND id NOT IN (SELECT stack_id FROM largest)");
	if (n != 0)
		h_append(&why, "%lld stacks are used by no snapshot", n);
	n = db_int(db, "SELECT count(*) FROM process WHERE id NOT IN"
	               " (SELECT process_id FROM snapshot)");
	if (n != 0)
		h_append(&why, "%lld processes have no snapshot", n);
	ck_assert(sqlite3_prepare_v2(db, "SELECT frames FROM stack", -1, &q, NULL) == SQLITE_OK);
	while (sqlite3_step(q) == SQLITE_ROW) {
		const unsigned char *b = sqlite3_column_blob(q, 0);
		int len = sqlite3_column_bytes(q, 0);
		if (len % 12 != 0)
			h_append(&why, "a stack blob of %d bytes (not 12 per frame)", len);
		for (int i = 0; i + 12 <= len; i += 12) {
			uint32_t id = (uint32_t)b[i] | (uint32_t)b[i + 1] << 8 |
			              (uint32_t)b[i + 2] << 16 | (uint32_t)b[i + 3] << 24;
			if (id <= maxf)
				used[id] = 1;
		}
	}
	sqlite3_finalize(q);
	ck_assert(sqlite3_prepare_v2(db, "SELECT id FROM frame", -1, &q, NULL) == SQLITE_OK);
	n = 0;
	while (sqlite3_step(q) == SQLITE_ROW) {
		long long id = sqlite3_column_int64(q, 0);
		if (id < 0 || id > maxf || !used[id])
			n++;
	}
	sqlite3_finalize(q);
	if (n != 0)
		h_append(&why, "%lld frames are named by no stack", n);
	free(used);
	return why;
}

#define MAX_TABLES 16

struct tabcount {
	char name[64];
	long long rows;
};

/* Row counts of every table of the database (whatever the schema) and its
 * page count. Returns the number of tables. */
static int db_counts(sqlite3 *db, struct tabcount *v, long long *pages)
{
	sqlite3_stmt *q = NULL;
	int n = 0;

	ck_assert(sqlite3_prepare_v2(db,
	                             "SELECT name FROM sqlite_master WHERE type = 'table' AND name "
	                             "NOT LIKE 'sqlite_%' ORDER BY name",
	                             -1, &q, NULL) == SQLITE_OK);
	while (sqlite3_step(q) == SQLITE_ROW && n < MAX_TABLES) {
		snprintf(v[n].name, sizeof v[n].name, "%s",
		         (const char *)sqlite3_column_text(q, 0));
		n++;
	}
	sqlite3_finalize(q);
	for (int i = 0; i < n; i++) {
		char *sql = h_strf("SELECT count(*) FROM \"%s\"", v[i].name);
		v[i].rows = db_int(db, sql);
		free(sql);
	}
	*pages = db_int(db, "PRAGMA page_count") - db_int(db, "PRAGMA freelist_count");
	return n;
}

/* Sound, and nothing left that no snapshot uses. */
static void assert_no_garbage(const char *what)
{
	sqlite3 *db = db_open(&D);
	char *why = db_health(db);

	if (why == NULL)
		why = db_garbage(db);
	ck_assert_msg(why == NULL, "%s: %s", what, why);
	sqlite3_close(db);
}

/* =============================================================== compare */

START_TEST(compare_keys)
{
	const char *opts[] = {"--snapshot-interval", "0", NULL};
	struct h_proc p;
	struct h_truth *t1, *t2;
	char id1[24], id2[24], live[32];
	long long a, b;
	struct h_ctl r;

	h_daemon_start_opts(&D, opts);
	t1 = start_prog(&p, "deltas", NULL);
	wait_live(t1->pid, t1, "deltas phase 1");
	a = snap_take(t1->pid, NULL);
	t2 = next_phase(&p);
	wait_live(t2->pid, t2, "deltas phase 2");
	b = snap_take(t2->pid, NULL);
	ck_assert_msg(b > a, "second snapshot id %lld is not after the first %lld", b, a);
	snprintf(id1, sizeof id1, "%lld", a);
	snprintf(id2, sizeof id2, "%lld", b);
	snprintf(live, sizeof live, "live:%ld", t2->pid);

	/* Each snapshot alone is its book. */
	top_exact(NULL, "--snapshot", id1, t1, H_KEY_LINENO, false, "first snapshot");
	top_exact(NULL, "--snapshot", id2, t2, H_KEY_TRACEBACK, false, "second snapshot");

	/* Every key, and cumulative by line. */
	for (int k = H_KEY_LINENO; k <= H_KEY_TRACEBACK; k++)
		compare_exact(k == H_KEY_LINENO ? &r : NULL, id1, id2, t1, t2, (enum h_key)k, false,
		              NULL, "compare");
	{
		/* The lineno answer says what was compared. */
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(r.json, "old");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(r.json, "new");
		long long oid, nid;
		ck_assert_msg(h_json_int(o, "id", &oid) && oid == a && h_json_int(n, "id", &nid) &&
		                  nid == b,
		              "compare %s %s: \"old\"/\"new\" do not name the snapshots: %.600s",
		              id1, id2, r.out);
		/* The designed order by line: the books' first five keys differ
		 * by 2000 bytes, then by size, then by count (deltas.c). */
		const char *order[] = {NULL, NULL, "site_many", "site_new", "site_gone"};
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(r.json, "stats");
		for (int i = 2; i < 5; i++) {
			const cJSON *f0 =
			    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
			                           cJSON_GetArrayItem(st, i), "traceback"),
			                       0);
			const char *fn = h_json_str(f0, "function");
			ck_assert_msg(fn != NULL && strcmp(fn, order[i]) == 0,
			              "compare by line: stats[%d] is %s, expected %s (ties on "
			              "|size_diff| broken by size, then |count_diff|)",
			              i, fn ? fn : "?", order[i]);
		}
		h_ctl_free(&r);
	}
	compare_exact(NULL, id1, id2, t1, t2, H_KEY_LINENO, true, NULL, "compare cumulative");
	compare_exact(NULL, id1, id2, t1, t2, H_KEY_FUNCTION, true, NULL, "compare cumulative");

	/* The other way round, every difference changes sign. */
	compare_exact(NULL, id2, id1, t2, t1, H_KEY_LINENO, false, NULL, "compare reversed");
	compare_exact(NULL, id2, id1, t2, t1, H_KEY_TRACEBACK, false, NULL, "compare reversed");

	/* A snapshot against itself: nothing changed. */
	compare_exact(NULL, id2, id2, t2, t2, H_KEY_LINENO, false, NULL, "compare with itself");

	/* The live heap as B. */
	compare_exact(NULL, id1, live, t1, t2, H_KEY_LINENO, false, NULL, "compare with live:PID");
	compare_exact(NULL, id1, live, t1, t2, H_KEY_TRACEBACK, false, NULL,
	              "compare with live:PID");

	/* A filter: only truth.h's site (tracemalloc.Filter on the filename). */
	{
		const char *inc[] = {"--include", "*truth.h", NULL};
		struct h_truth *f1 = h_truth_filter(t1, "*truth.h", true, false);
		struct h_truth *f2 = h_truth_filter(t2, "*truth.h", true, false);
		const cJSON *st;
		ck_assert_msg(f1->nrecs > 0 && f2->nrecs > 0, "the book has no truth.h site");
		compare_exact(&r, id1, id2, f1, f2, H_KEY_LINENO, false, inc,
		              "compare --include *truth.h");
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(r.json, "stats"))
		{
			const char *file =
			    h_json_str(cJSON_GetArrayItem(
			                   cJSON_GetObjectItemCaseSensitive(st, "traceback"), 0),
			               "filename");
			ck_assert_msg(file != NULL && fnmatch("*truth.h", file, 0) == 0,
			              "compare --include *truth.h reports %s", file ? file : "?");
		}
		h_ctl_free(&r);
		h_truth_free(f1);
		h_truth_free(f2);
	}

	{
		const char *exc[] = {"--exclude", "*truth.h", NULL};
		struct h_truth *f1 = h_truth_filter(t1, "*truth.h", false, false);
		struct h_truth *f2 = h_truth_filter(t2, "*truth.h", false, false);
		const cJSON *st;
		compare_exact(&r, id1, id2, f1, f2, H_KEY_TRACEBACK, false, exc,
		              "compare --exclude *truth.h");
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(r.json, "stats"))
		{
			const char *file =
			    h_json_str(cJSON_GetArrayItem(
			                   cJSON_GetObjectItemCaseSensitive(st, "traceback"), 0),
			               "filename");
			ck_assert_msg(file == NULL || fnmatch("*truth.h", file, 0) != 0,
			              "compare --exclude *truth.h reports %s", file);
		}
		h_ctl_free(&r);
		h_truth_free(f1);
		h_truth_free(f2);
	}

	/* --limit 3: the first three of the full list, and how many there
	 * were. */
	{
		const char *all[] = {"compare", id1, id2, "--limit", "0", NULL};
		const char *three[] = {"compare", id1, id2, "--limit", "3", NULL};
		struct h_ctl r3;
		long long cs_all, cs3;
		h_ctl_ok(&D, H_NOUID, &r, all);
		h_ctl_ok(&D, H_NOUID, &r3, three);
		const cJSON *sa = cJSON_GetObjectItemCaseSensitive(r.json, "stats");
		const cJSON *s3 = cJSON_GetObjectItemCaseSensitive(r3.json, "stats");
		ck_assert(h_json_int(r.json, "count_stats", &cs_all) &&
		          h_json_int(r3.json, "count_stats", &cs3));
		ck_assert_msg(cJSON_GetArraySize(sa) == cs_all && cs_all > 3 &&
		                  cJSON_GetArraySize(s3) == 3 && cs3 == cs_all,
		              "compare --limit 3: %d stats of %lld; --limit 0: %d of %lld",
		              cJSON_GetArraySize(s3), cs3, cJSON_GetArraySize(sa), cs_all);
		for (int i = 0; i < 3; i++)
			ck_assert_msg(
			    cJSON_Compare(cJSON_GetArrayItem(sa, i), cJSON_GetArrayItem(s3, i), 1),
			    "compare --limit 3: entry %d differs from the full list's", i);
		h_ctl_free(&r);
		h_ctl_free(&r3);
	}

	/* Errors: an id that does not exist. */
	{
		const char *bad[] = {"compare", id1, "999999", NULL};
		h_ctl_error(&D, H_NOUID, bad, "no_such_snapshot");
	}

	h_proc_end(&p, "deltas");
	h_truth_free(t1);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

/* ============================================================ periodic */

START_TEST(periodic_and_exit)
{
	const char *opts[] = {"--snapshot-interval", "0.5", NULL};
	struct h_proc p;
	struct h_truth *t, *tend;
	struct snaplist l0, l1, l2;
	char pidbuf[24], eid[24];
	long long e;
	double gaps[64];
	int nnew = 0, ngaps = 0;
	const struct snap *prev = NULL;

	h_daemon_start_opts(&D, opts);
	t = start_prog(&p, "deltas", NULL);
	wait_live(t->pid, t, "deltas");
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);

	/* About six periodic snapshots in three seconds. */
	snaps_list(&l0, t->pid, "before");
	h_sleep_ms(3000);
	snaps_list(&l1, t->pid, "after 3 s");
	for (int i = 0; i < l1.n; i++) {
		const struct snap *s = &l1.v[i];
		ck_assert_msg(
		    strcmp(s->reason, "periodic") == 0,
		    "snapshot %lld of a live process with no manual snapshot has reason %s", s->id,
		    s->reason);
		if (snaps_find(&l0, s->id) != NULL)
			continue;
		nnew++;
		if (prev != NULL && ngaps < 64)
			gaps[ngaps++] = s->taken_at - prev->taken_at;
		prev = s;
	}
	{
		char *ids = snaps_ids(&l1);
		ck_assert_msg(nnew >= 3 && nnew <= 9,
		              "%d periodic snapshots in 3 s at --snapshot-interval 0.5 (expected "
		              "about 6): %s",
		              nnew, ids);
		/* the median gap between consecutive ones */
		for (int i = 0; i < ngaps; i++)
			for (int j = i + 1; j < ngaps; j++)
				if (gaps[j] < gaps[i]) {
					double x = gaps[i];
					gaps[i] = gaps[j];
					gaps[j] = x;
				}
		ck_assert_msg(
		    ngaps >= 2 && gaps[ngaps / 2] >= 0.3 && gaps[ngaps / 2] <= 0.9,
		    "median gap between periodic snapshots %.3f s, expected about 0.5: %s",
		    ngaps ? gaps[ngaps / 2] : -1.0, ids);
		free(ids);
	}
	/* A periodic snapshot is the book too. */
	{
		char pid_[24];
		snprintf(pid_, sizeof pid_, "%lld", l1.v[l1.n - 1].id);
		top_exact(NULL, "--snapshot", pid_, t, H_KEY_LINENO, false, "a periodic snapshot");
	}

	/* A normal exit: an exit snapshot of what it still held. */
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "deltas");
	tend = h_truth_must(p.truth);
	e = wait_reason(t->pid, "exit", "after a normal exit");
	snprintf(eid, sizeof eid, "%lld", e);
	top_exact(NULL, "--snapshot", eid, tend, H_KEY_LINENO, false, "exit snapshot");
	top_exact(NULL, "--snapshot", eid, tend, H_KEY_TRACEBACK, false, "exit snapshot");
	/* `top --pid P` after the end: its leaks. */
	top_exact(NULL, "--pid", pidbuf, tend, H_KEY_LINENO, false, "top --pid after exit");

	/* Nothing periodic after the end; the exit snapshot is the last. */
	h_sleep_ms(1500);
	snaps_list(&l2, t->pid, "after exit");
	{
		char *ids = snaps_ids(&l2);
		ck_assert_msg(l2.n > 0 && l2.v[l2.n - 1].id == e,
		              "after the exit snapshot %lld more were taken: %s", e, ids);
		for (int i = 0; i < l2.n; i++)
			ck_assert_msg(l2.v[i].id == e || strcmp(l2.v[i].reason, "exit") != 0,
			              "two exit snapshots: %s", ids);
		free(ids);
	}
	/* The list entry's counters are the snapshot's. */
	{
		struct h_ctl r;
		long long ts, tc;
		const struct snap *s = snaps_find(&l2, e);
		top_exact(&r, "--snapshot", eid, tend, H_KEY_LINENO, false, "exit snapshot");
		ck_assert(h_json_int(r.json, "total_size", &ts) &&
		          h_json_int(r.json, "total_count", &tc));
		ck_assert_msg(
		    s->current == ts && s->blocks == tc,
		    "snapshots says current %lld blocks %lld for %lld, its top totals are "
		    "%lld/%lld",
		    s->current, s->blocks, e, ts, tc);
		h_ctl_free(&r);
	}
	snaps_free(&l0);
	snaps_free(&l1);
	snaps_free(&l2);
	h_truth_free(t);
	h_truth_free(tend);
	h_proc_cleanup(&p);
}
END_TEST

START_TEST(exit_on_sigkill)
{
	/* _i == 0: deltas, a snapshot every 0.5 s; _i == 1: 16384 stacks and a
	 * snapshot every 0.1 s, so that one is nearly always being written
	 * when the process dies. */
	const char *opts0[] = {"--snapshot-interval", "0.5", NULL};
	const char *opts1[] = {"--snapshot-interval", "0.1", NULL};
	const char *many[] = {"14", NULL};
	struct h_proc p;
	struct h_truth *t1 = NULL, *t;
	char pidbuf[24], eid[24];
	long long e;
	int st;

	h_daemon_start_opts(&D, _i == 0 ? opts0 : opts1);
	if (_i == 0) {
		t1 = start_prog(&p, "deltas", NULL);
		t = next_phase(&p);
	} else {
		t = start_prog(&p, "manystacks", many);
	}
	/* Everything it did must have reached the daemon: a SIGKILL loses
	 * what the agent has not sent yet. */
	wait_live(t->pid, t, "before SIGKILL");
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
	ck_assert_int_eq(kill(p.pid, SIGKILL), 0);
	st = h_proc_finish(&p, 10000);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: %s", p.name,
	              h_status_str(st));

	e = wait_reason(t->pid, "exit", "after SIGKILL");
	snprintf(eid, sizeof eid, "%lld", e);
	top_exact(NULL, "--snapshot", eid, t, H_KEY_LINENO, false, "exit snapshot after SIGKILL");
	top_exact(NULL, "--snapshot", eid, t, H_KEY_FUNCTION, false, "exit snapshot after SIGKILL");
	top_exact(NULL, "--pid", pidbuf, t, H_KEY_LINENO, false, "top --pid after SIGKILL");
	{
		struct h_ctl r;
		const char *args[] = {"stats", "--snapshot", eid, NULL};
		long long cur, blocks;
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert_msg(h_json_int(r.json, "current", &cur) &&
		                  h_json_int(r.json, "blocks", &blocks) &&
		                  cur >= h_truth_bytes(t) && blocks >= h_truth_count(t),
		              "stats --snapshot %s: %.800s (book: %lld bytes, %lld blocks)", eid,
		              r.out, h_truth_bytes(t), h_truth_count(t));
		assert_from_snapshot(r.json, e, "exit", "stats --snapshot");
		h_ctl_free(&r);
	}
	h_truth_free(t1);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* `run --top N -- PROG`: PROG's leaks after it ends, PROG's exit status. */
START_TEST(run_prints_leaks)
{
	const char *opts[] = {"--snapshot-interval", "0", NULL};
	char *prog = h_prog("deltas");
	char *truth;
	const char *argv[] = {
	    h_client_bin(), "--runtime-dir", "",   "run", "--agent", h_agent_lib(),
	    "--top",        "100",           "--", prog,  NULL};
	struct h_spawn s;
	struct h_proc p;
	struct h_truth *t;
	cJSON *json;
	const char *brace;
	char *why;
	int st;

	h_daemon_start_opts(&D, opts);
	truth = h_daemon_file(&D, "deltas");
	argv[2] = D.runtime;
	memset(&s, 0, sizeof s);
	s.argv = argv;
	s.truth = truth;
	s.uid = H_NOUID;
	h_proc_start(&p, &s);
	h_proc_expect_ready(&p);
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	ck_assert_int_eq(h_proc_send(&p, "exit 7"), 0);
	st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 7,
	              "memtracectl run: %s (the program exited 7); stderr: %.1500s",
	              h_status_str(st), p.err.data ? p.err.data : "");
	t = h_truth_must(truth);
	/* stdout: the program's two "ready" lines alone; the report is on
	 * stderr */
	ck_assert_msg(strcmp(p.out.data != NULL ? p.out.data : "", "ready\nready\n") == 0,
	              "memtracectl run --top: stdout is not the program's alone: %.1500s",
	              p.out.data ? p.out.data : "");
	brace = strchr(p.err.data != NULL ? p.err.data : "", '{');
	json = brace != NULL ? cJSON_Parse(brace) : NULL;
	ck_assert_msg(json != NULL, "memtracectl run --top printed no JSON report: %.1500s",
	              p.err.data ? p.err.data : "");
	{
		struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
		why = h_check_top(json, &e);
		ck_assert_msg(why == NULL, "run --top: the leaks differ from the book:\n  %.3000s",
		              why);
	}
	cJSON_Delete(json);
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(truth);
	free(prog);
}
END_TEST

/* `traceback --snapshot REF --limit 0` of a program holding fewer blocks
 * than a snapshot keeps (100): largest first, and the program's blocks sum
 * to its book. */
static void traceback_all(const char *ref, const struct h_truth *t, const char *what)
{
	struct h_ctl r;
	const char *tb[] = {"traceback", "--snapshot", ref, "--limit", "0", NULL};
	const cJSON *blk;
	long long prev = -1, psize = 0, pcount = 0;

	h_ctl_ok(&D, H_NOUID, &r, tb);
	cJSON_ArrayForEach(blk, cJSON_GetObjectItemCaseSensitive(r.json, "blocks"))
	{
		long long size;
		struct h_rframe rf;
		const cJSON *tbk = cJSON_GetObjectItemCaseSensitive(blk, "traceback");
		ck_assert_msg(h_json_int(blk, "size", &size) &&
		                  h_rframe_get(cJSON_GetArrayItem(tbk, 0), &rf),
		              "%s: malformed block: %.600s", what, r.out);
		ck_assert_msg(prev < 0 || size <= prev, "%s: blocks not largest first", what);
		prev = size;
		if (h_is_program_file(t, rf.file)) {
			psize += size;
			pcount++;
		}
	}
	ck_assert_msg(psize == h_truth_bytes(t) && pcount == h_truth_count(t),
	              "%s %s: the program's blocks sum to %lld bytes in %lld, the book says %lld "
	              "in %lld",
	              what, ref, psize, pcount, h_truth_bytes(t), h_truth_count(t));
	h_ctl_free(&r);
}

/* ============================================================= restart */

START_TEST(restart_and_files)
{
	const char *opts[] = {"--snapshot-interval", "0", NULL};
	struct h_proc pl, px;
	struct h_truth *l1, *l2, *tx;
	char *f1, *f2, ida[24], idb[24], idc[24], ide[24], ids[24], lpid[24], xpid[24];
	long long a, b, c, e, s = 0;
	struct snaplist l;

	h_daemon_start_opts(&D, opts);
	f1 = h_daemon_file(&D, "snapshot-1.json");
	f2 = h_daemon_file(&D, "snapshot-2.json");

	/* L lives on through the daemon's stop: manual snapshots, then its
	 * shutdown snapshot. */
	l1 = start_prog(&pl, "deltas", NULL);
	wait_live(l1->pid, l1, "L phase 1");
	a = snap_take(l1->pid, f1);
	l2 = next_phase(&pl);
	wait_live(l2->pid, l2, "L phase 2");
	b = snap_take(l2->pid, f2);
	c = snap_take(l2->pid, NULL);
	/* X ends before the daemon: its exit snapshot. */
	tx = start_prog(&px, "deltas", NULL);
	wait_live(tx->pid, tx, "X");
	h_proc_end(&px, "X");
	e = wait_reason(tx->pid, "exit", "X's exit");
	snprintf(lpid, sizeof lpid, "%ld", l1->pid);
	snprintf(xpid, sizeof xpid, "%ld", tx->pid);

	h_daemon_stop(&D);
	h_daemon_spawn(&D, opts);

	/* Every snapshot is still listed: three manual, X's exit, and the
	 * shutdown snapshot of L. */
	snaps_list(&l, 0, "after restart");
	{
		char *list = snaps_ids(&l);
		const struct snap *sa = snaps_find(&l, a), *sb = snaps_find(&l, b),
		                  *sc = snaps_find(&l, c), *se = snaps_find(&l, e);
		for (int i = 0; i < l.n; i++)
			if (strcmp(l.v[i].reason, "shutdown") == 0 && l.v[i].pid == l1->pid)
				s = l.v[i].id;
		ck_assert_msg(l.n == 5 && sa && sb && sc && se && s > c,
		              "after a restart `snapshots` should list %lld, %lld, %lld (manual, "
		              "pid %ld), %lld (exit, pid %ld) and a shutdown snapshot of pid %ld: "
		              "%s",
		              a, b, c, l1->pid, e, tx->pid, l1->pid, list);
		ck_assert_msg(
		    strcmp(sa->reason, "manual") == 0 && strcmp(sb->reason, "manual") == 0 &&
		        strcmp(sc->reason, "manual") == 0 && strcmp(se->reason, "exit") == 0 &&
		        sa->pid == l1->pid && sc->pid == l1->pid && se->pid == tx->pid,
		    "after a restart: wrong reasons or pids: %s", list);
		free(list);
	}
	snprintf(ida, sizeof ida, "%lld", a);
	snprintf(idb, sizeof idb, "%lld", b);
	snprintf(idc, sizeof idc, "%lld", c);
	snprintf(ide, sizeof ide, "%lld", e);
	snprintf(ids, sizeof ids, "%lld", s);

	/* ... and readable, exactly. */
	top_exact(NULL, "--snapshot", ida, l1, H_KEY_LINENO, false, "after restart, snapshot A");
	top_exact(NULL, "--snapshot", ida, l1, H_KEY_TRACEBACK, false, "after restart, snapshot A");
	top_exact(NULL, "--snapshot", idb, l2, H_KEY_LINENO, false, "after restart, snapshot B");
	top_exact(NULL, "--snapshot", idc, l2, H_KEY_FILENAME, false, "after restart, snapshot C");
	top_exact(NULL, "--snapshot", ide, tx, H_KEY_LINENO, false, "after restart, exit snapshot");
	top_exact(NULL, "--snapshot", ids, l2, H_KEY_LINENO, false,
	          "after restart, shutdown snapshot");
	top_exact(NULL, "--snapshot", ids, l2, H_KEY_TRACEBACK, false,
	          "after restart, shutdown snapshot");
	compare_exact(NULL, ida, idb, l1, l2, H_KEY_LINENO, false, NULL, "after restart");
	{
		struct h_ctl r;
		const char *st_s[] = {"stats", "--snapshot", ids, NULL};
		h_ctl_ok(&D, H_NOUID, &r, st_s);
		assert_from_snapshot(r.json, s, "shutdown", "stats --snapshot (shutdown)");
		h_ctl_free(&r);
	}
	/* deltas holds 26 blocks, fewer than the largest kept per snapshot
	 * (100): all of them are there */
	traceback_all(idb, l2, "traceback --snapshot ID");
	/* Processes the daemon no longer has in memory answer from their
	 * newest snapshot, and say so. */
	{
		struct h_ctl r;
		top_exact(&r, "--pid", xpid, tx, H_KEY_LINENO, false,
		          "top --pid of X after restart");
		assert_from_snapshot(r.json, e, "exit", "top --pid of X after restart");
		h_ctl_free(&r);
		top_exact(&r, "--pid", lpid, l2, H_KEY_LINENO, false,
		          "top --pid of L after restart");
		assert_from_snapshot(r.json, s, "shutdown", "top --pid of L after restart");
		h_ctl_free(&r);
		const char *st_x[] = {"stats", "--pid", xpid, NULL};
		h_ctl_ok(&D, H_NOUID, &r, st_x);
		const char *state = h_json_str(r.json, "state");
		ck_assert_msg(state != NULL && strcmp(state, "snapshot") == 0,
		              "stats --pid of X after restart: state %s, expected snapshot",
		              state ? state : "absent");
		assert_from_snapshot(r.json, e, "exit", "stats --pid of X after restart");
		h_ctl_free(&r);
	}
	snaps_free(&l);

	/* The files need neither the database nor a daemon. */
	h_daemon_stop(&D);
	{
		const char *sfx[] = {"", "-wal", "-shm"};
		for (int i = 0; i < 3; i++) {
			char *path = h_strf("%s/memtrace.db%s", D.state, sfx[i]);
			ck_assert_msg(unlink(path) == 0 || (i > 0 && errno == ENOENT),
			              "unlink %s: %s", path, strerror(errno));
			free(path);
		}
	}
	top_exact(NULL, "--snapshot", f1, l1, H_KEY_LINENO, false, "file, no daemon");
	top_exact(NULL, "--snapshot", f2, l2, H_KEY_TRACEBACK, false, "file, no daemon");
	for (int k = H_KEY_LINENO; k <= H_KEY_TRACEBACK; k++)
		compare_exact(NULL, f1, f2, l1, l2, (enum h_key)k, false, NULL,
		              "compare of files, no daemon");
	compare_exact(NULL, f1, f2, l1, l2, H_KEY_LINENO, true, NULL,
	              "compare of files, no daemon");
	traceback_all(f2, l2, "traceback --snapshot FILE, no daemon");
	{
		struct h_ctl r;
		const char *st_f[] = {"stats", "--snapshot", f1, NULL};
		const cJSON *m;
		const char *reason;
		long long cur;
		h_ctl_ok(&D, H_NOUID, &r, st_f);
		m = cJSON_GetObjectItemCaseSensitive(r.json, "snapshot");
		reason = h_json_str(m, "reason");
		ck_assert_msg(reason != NULL && strcmp(reason, "manual") == 0 &&
		                  h_json_int(r.json, "current", &cur) && cur >= h_truth_bytes(l1),
		              "stats --snapshot FILE: %.800s", r.out);
		h_ctl_free(&r);
	}

	/* A new, empty database: the files still work, the ids are gone. */
	h_daemon_spawn(&D, opts);
	snaps_list(&l, 0, "new database");
	ck_assert_msg(l.n == 0, "a deleted database still lists %d snapshots", l.n);
	snaps_free(&l);
	{
		const char *top_a[] = {"top", "--snapshot", ida, NULL};
		h_ctl_error(&D, H_NOUID, top_a, "no_such_snapshot");
	}
	compare_exact(NULL, f1, f2, l1, l2, H_KEY_LINENO, false, NULL, "compare of files");

	h_truth_free(l1);
	h_truth_free(l2);
	h_truth_free(tx);
	h_proc_cleanup(&pl);
	h_proc_cleanup(&px);
	free(f1);
	free(f2);
}
END_TEST

/* =============================================================== kill -9 */

#define K9_ITERATIONS 10
#define K9_LEVELS     "14"
#define K9_CLIENTS    4

struct k9_taken {
	long long id;
	int iteration;
};

struct stacks_arg {
	long long blocks;
};

/* The daemon has taken in every block, each from its own stack. */
static char *check_blocks_cb(const cJSON *json, void *arg)
{
	const struct stacks_arg *a = arg;
	long long blocks = -1, stacks = -1;
	if (h_json_int(json, "blocks", &blocks) && blocks >= a->blocks &&
	    h_json_int(json, "stacks", &stacks) && stacks >= a->blocks)
		return NULL;
	return h_strf("stats says %lld blocks and %lld stacks, the program holds %lld blocks "
	              "from as many stacks",
	              blocks, stacks, a->blocks);
}

START_TEST(kill9_while_writing)
{
	/* _i == 0: default retention, nothing is deleted: every snapshot
	 * memtracectl reported must be there. _i == 1: --retain-snapshots 2,
	 * so the kills also land in retention's deletes and garbage
	 * collection: reported snapshots may since have been retired, but
	 * nothing half-deleted may remain. */
	const char *opts0[] = {"--snapshot-interval", "0.1", NULL};
	const char *opts1[] = {"--snapshot-interval", "0.1", "--retain-snapshots", "2", NULL};
	const char *const *opts = _i == 0 ? opts0 : opts1;
	const char *prog_args[] = {K9_LEVELS, NULL};
	struct k9_taken taken[K9_ITERATIONS * K9_CLIENTS];
	struct h_truth *books[K9_ITERATIONS];
	int ntaken = 0, cut_off = 0;

	for (int it = 0; it < K9_ITERATIONS; it++) {
		struct h_proc p, cl[K9_CLIENTS];
		struct h_truth *t;
		struct snaplist l;
		char pidbuf[24];
		int answered = 0, delay = 20 + (it * 137 + _i * 60) % 600;

		if (it == 0)
			h_daemon_start_opts(&D, opts);
		else
			h_daemon_spawn(&D, opts);

		/* Whatever was reported as taken before is still there. */
		snaps_list(&l, 0, "after kill -9");
		for (int i = 0; i < ntaken && _i == 0; i++) {
			char *list = snaps_ids(&l);
			const struct snap *s = snaps_find(&l, taken[i].id);
			ck_assert_msg(
			    s != NULL && strcmp(s->reason, "manual") == 0 &&
			        s->pid == books[taken[i].iteration]->pid,
			    "iteration %d: snapshot %lld (reported as taken in iteration %d) "
			    "is missing after kill -9: %.3000s",
			    it, taken[i].id, taken[i].iteration, list);
			free(list);
		}
		snaps_free(&l);

		t = start_prog(&p, "manystacks", prog_args);
		books[it] = t;
		snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
		{
			struct stacks_arg a = {h_truth_count(t)};
			const char *args[] = {"stats", "--pid", pidbuf, NULL};
			struct h_ctl r;
			char *why = h_ctl_poll(&D, H_NOUID, &r, check_blocks_cb, &a, args);
			ck_assert_msg(why == NULL, "manystacks: %s", why);
			h_ctl_free(&r);
		}
		/* Several snapshots at once, periodic ones besides, and the
		 * daemon killed somewhere in the middle. */
		for (int i = 0; i < K9_CLIENTS; i++) {
			const char *argv[] = {
			    h_client_bin(), "--runtime-dir", D.runtime, "snapshot",
			    "--pid",        pidbuf,          NULL};
			struct h_spawn s;
			memset(&s, 0, sizeof s);
			s.argv = argv;
			s.uid = H_NOUID;
			h_proc_start(&cl[i], &s);
			h_proc_close_stdin(&cl[i]);
		}
		h_sleep_ms(delay);
		/* A loaded machine may answer none in time: the last kill then
		 * waits for one answer, so that a reported snapshot is always
		 * checked (the other commands are still in flight). */
		if (it == K9_ITERATIONS - 1 && ntaken == 0)
			h_proc_finish(&cl[0], 20000);
		ck_assert_int_eq(kill(D.pid, SIGKILL), 0);
		ck_assert_int_ne(h_daemon_signal(&D, SIGKILL, 10000), -1);

		for (int i = 0; i < K9_CLIENTS; i++) {
			int st = h_proc_finish(&cl[i], 20000);
			cJSON *j = cJSON_Parse(cl[i].out.data != NULL ? cl[i].out.data : "");
			long long id;
			if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
				ck_assert_msg(j != NULL && h_json_int(j, "id", &id) && id > 0,
				              "snapshot exited 0 without an id: %.500s",
				              cl[i].out.data ? cl[i].out.data : "");
				taken[ntaken++] = (struct k9_taken){id, it};
				answered++;
			} else {
				cut_off++;
			}
			cJSON_Delete(j);
			h_proc_cleanup(&cl[i]);
		}
		h_proc_cleanup(&p);

		/* The database opens and is sound, with nothing half-deleted. */
		{
			sqlite3 *db = db_open(&D);
			char *why = db_health(db);
			long long n;
			if (why == NULL)
				why = db_garbage(db);
			ck_assert_msg(why == NULL, "iteration %d, after kill -9 at %d ms: %s", it,
			              delay, why);
			n = db_int(db, "SELECT count(*) FROM snapshot");
			sqlite3_close(db);
			printf(
			    "kill9%s iteration %d: killed after %d ms, %d of %d snapshot commands "
			    "answered, %lld snapshots stored\n",
			    _i ? " (retain 2)" : "", it, delay, answered, K9_CLIENTS, n);
			fflush(stdout);
		}
	}

	/* Once more, without periodic snapshots that would retire what is
	 * being read: every snapshot there is (_i == 0: every one reported)
	 * holds exactly its program's book. */
	{
		const char *still0[] = {"--snapshot-interval", "0", NULL};
		const char *still1[] = {"--snapshot-interval", "0", "--retain-snapshots", "2",
		                        NULL};
		h_daemon_spawn(&D, _i == 0 ? still0 : still1);
	}
	if (_i == 0) {
		for (int i = 0; i < ntaken; i++) {
			char id[24];
			snprintf(id, sizeof id, "%lld", taken[i].id);
			top_exact(NULL, "--snapshot", id, books[taken[i].iteration], H_KEY_LINENO,
			          false, "a snapshot reported before kill -9");
		}
	} else {
		/* A kill may come between a snapshot's commit and its retention,
		 * and several snapshots may be in flight: the first write after
		 * the restart retires what the kills left over. */
		const char *tiny[] = {"4", NULL};
		struct h_proc p;
		struct h_truth *tt = start_prog(&p, "manystacks", tiny);
		struct snaplist l;
		wait_live(tt->pid, tt, "a small process");
		snap_take(tt->pid, NULL);
		snaps_list(&l, 0, "at the end");
		for (int i = 0; i < K9_ITERATIONS; i++) {
			int n = 0;
			for (int j = 0; j < l.n; j++)
				n += l.v[j].pid == books[i]->pid;
			ck_assert_msg(n <= 2,
			              "the process of iteration %d keeps %d snapshots at "
			              "--retain-snapshots 2, after a retention",
			              i, n);
		}
		assert_no_garbage("after kill -9s and retention");
		for (int j = 0; j < l.n; j++) {
			char id[24];
			const struct h_truth *t = NULL;
			for (int i = 0; i < K9_ITERATIONS && t == NULL; i++)
				if (books[i]->pid == l.v[j].pid)
					t = books[i];
			if (l.v[j].pid == tt->pid)
				t = tt;
			ck_assert_msg(t != NULL, "snapshot %lld of unknown pid %lld", l.v[j].id,
			              l.v[j].pid);
			snprintf(id, sizeof id, "%lld", l.v[j].id);
			if (strcmp(l.v[j].reason, "manual") == 0 || t == tt) {
				top_exact(NULL, "--snapshot", id, t, H_KEY_LINENO, false,
				          "a snapshot kept through kill -9 and retention");
				continue;
			}
			/* A periodic one may have been taken while the program was
			 * still allocating: some of its blocks, each of its size. */
			{
				const char *args[] = {"top",     "--snapshot", id,
				                      "--limit", "0",          NULL};
				struct h_ctl r;
				long long ps, pc, os, oc;
				long long bs = h_truth_meta(t, "block_size", -1);
				h_ctl_ok(&D, H_NOUID, &r, args);
				ck_assert(h_top_split(r.json, t, &ps, &pc, &os, &oc) == 0);
				ck_assert_msg(
				    pc <= h_truth_count(t) && ps == pc * bs,
				    "%s snapshot %s: the program's part is %lld bytes in %lld "
				    "blocks; it only ever held %lld blocks of %lld bytes",
				    l.v[j].reason, id, ps, pc, h_truth_count(t), bs);
				h_ctl_free(&r);
			}
		}
		snaps_free(&l);
		h_truth_free(tt);
		h_proc_cleanup(&p);
	}
	/* If every command was always answered before the kill, the kills
	 * hit an idle daemon and proved little. */
	ck_assert_msg(cut_off > 0,
	              "all %d snapshot commands were answered before their kill -9: the "
	              "test never killed the daemon while it was busy",
	              K9_ITERATIONS * K9_CLIENTS);
	ck_assert_msg(ntaken > 0, "no snapshot command was ever answered");
	for (int i = 0; i < K9_ITERATIONS; i++)
		h_truth_free(books[i]);
}
END_TEST

/* ============================================================ retention */

/* `snapshots --pid P` lists exactly ids[0..n) in this order. */
static void assert_listed(long pid, const long long *ids, int n, const char *what)
{
	struct snaplist l;
	bool ok;

	snaps_list(&l, pid, what);
	ok = l.n == n;
	for (int i = 0; ok && i < n; i++)
		ok = l.v[i].id == ids[i];
	if (!ok) {
		char *got = snaps_ids(&l), *want = h_strf("%s", "");
		for (int i = 0; i < n; i++) {
			char *x = h_strf("%s %lld", want, ids[i]);
			free(want);
			want = x;
		}
		ck_abort_msg("%s: pid %ld should keep exactly [%s ] (the newest), `snapshots` "
		             "lists %s",
		             what, pid, want, got);
	}
	snaps_free(&l);
}

START_TEST(retain_count_manual)
{
	const char *opts[] = {"--snapshot-interval", "0", "--retain-snapshots", "3", NULL};
	struct h_proc pp, pq;
	struct h_truth *p1, *p2, *q1, *pend;
	long long ps[8], qs[8];
	int np = 0, nq = 0;
	char id[24];

	h_daemon_start_opts(&D, opts);
	p1 = start_prog(&pp, "deltas", NULL);
	q1 = start_prog(&pq, "deltas", NULL);
	wait_live(p1->pid, p1, "P");
	wait_live(q1->pid, q1, "Q");

	/* Alternating, each process keeps its own newest three. */
	for (int i = 0; i < 5; i++) {
		const char *what = h_strf("after %d snapshots of P and %d of Q", np + (i % 2 == 0),
		                          nq + (i % 2 == 1));
		if (i % 2 == 0)
			ps[np++] = snap_take(p1->pid, NULL);
		else
			qs[nq++] = snap_take(q1->pid, NULL);
		assert_listed(p1->pid, np > 3 ? ps + np - 3 : ps, np > 3 ? 3 : np, what);
		assert_listed(q1->pid, nq > 3 ? qs + nq - 3 : qs, nq > 3 ? 3 : nq, what);
	}
	/* P: ps[0..2] taken in phase 1; now phase 2. The oldest goes, the
	 * phase-1 survivors still read exactly as phase 1. */
	p2 = next_phase(&pp);
	wait_live(p2->pid, p2, "P phase 2");
	ps[np++] = snap_take(p2->pid, NULL);
	assert_listed(p1->pid, ps + np - 3, 3, "P's fourth snapshot");
	snprintf(id, sizeof id, "%lld", ps[1]);
	top_exact(NULL, "--snapshot", id, p1, H_KEY_TRACEBACK, false, "surviving phase-1 snapshot");
	snprintf(id, sizeof id, "%lld", ps[3]);
	top_exact(NULL, "--snapshot", id, p2, H_KEY_TRACEBACK, false, "phase-2 snapshot");
	ps[np++] = snap_take(p2->pid, NULL);
	assert_listed(p1->pid, ps + np - 3, 3, "P's fifth snapshot");
	snprintf(id, sizeof id, "%lld", ps[2]);
	top_exact(NULL, "--snapshot", id, p1, H_KEY_LINENO, false, "last phase-1 snapshot");
	assert_no_garbage("after retention by count");

	/* P exits: its exit snapshot counts as one of its three. */
	ck_assert_int_eq(h_proc_send(&pp, "exit"), 0);
	h_proc_end(&pp, "P");
	pend = h_truth_must(pp.truth);
	ps[np] = wait_reason(p1->pid, "exit", "P's exit");
	np++;
	assert_listed(p1->pid, ps + np - 3, 3, "after P's exit");
	snprintf(id, sizeof id, "%lld", ps[np - 3]);
	top_exact(NULL, "--snapshot", id, p2, H_KEY_LINENO, false, "P's oldest survivor");
	snprintf(id, sizeof id, "%lld", ps[np - 1]);
	top_exact(NULL, "--snapshot", id, pend, H_KEY_LINENO, false, "P's exit snapshot");
	/* Q untouched by P's retention. */
	assert_listed(q1->pid, qs, nq, "Q after P's");
	snprintf(id, sizeof id, "%lld", qs[0]);
	top_exact(NULL, "--snapshot", id, q1, H_KEY_TRACEBACK, false, "Q's oldest");
	assert_no_garbage("after P's exit");

	h_truth_free(p1);
	h_truth_free(p2);
	h_truth_free(q1);
	h_truth_free(pend);
	h_proc_cleanup(&pp);
	h_proc_cleanup(&pq);
}
END_TEST

/* Ids seen so far per process. */
struct seen {
	long pid;
	long long ids[512];
	int n;
};

static void seen_add(struct seen *s, long long id)
{
	for (int i = 0; i < s->n; i++)
		if (s->ids[i] == id)
			return;
	if (s->n < 512)
		s->ids[s->n++] = id;
}

struct count_arg {
	long pid;
	int n;
	const char *last_reason; /* or NULL */
};

static char *check_count_cb(const cJSON *json, void *arg)
{
	const struct count_arg *a = arg;
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(json, "snapshots");
	int n = cJSON_GetArraySize(arr);
	const char *last = h_json_str(cJSON_GetArrayItem(arr, n - 1), "reason");

	if (n == a->n && (a->last_reason == NULL || (last && strcmp(last, a->last_reason) == 0)))
		return NULL;
	char *b = h_json_brief(json, 1500);
	char *why = h_strf("pid %ld: expected %d snapshots%s%s, got %s", a->pid, a->n,
	                   a->last_reason ? ", the last one " : "",
	                   a->last_reason ? a->last_reason : "", b);
	free(b);
	return why;
}

/* Polls `snapshots --pid P` until it has n entries (the last with
 * last_reason); returns them in l. */
static void wait_count(struct snaplist *l, long pid, int n, const char *last_reason,
                       const char *what)
{
	struct count_arg a = {pid, n, last_reason};
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"snapshots", "--pid", pidbuf, NULL};
	char *why;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	why = h_ctl_poll(&D, H_NOUID, &r, check_count_cb, &a, args);
	ck_assert_msg(why == NULL, "%s: %s", what, why);
	snaps_parse(r.json, l, what);
	h_ctl_free(&r);
}

/* l (exactly `keep` entries) are the newest of everything seen for the
 * process: no id seen but no longer listed is newer than l's oldest. */
static void assert_newest(const struct snaplist *l, const struct seen *s, int keep,
                          const char *what)
{
	char *list = snaps_ids(l);

	ck_assert_msg(l->n == keep, "%s: pid %ld keeps %d snapshots, expected %d: %s", what, s->pid,
	              l->n, keep, list);
	for (int i = 0; i < s->n; i++)
		ck_assert_msg(
		    snaps_find(l, s->ids[i]) != NULL || s->ids[i] < l->v[0].id,
		    "%s: pid %ld: snapshot %lld was deleted although it is newer than the "
		    "kept %lld: kept %s",
		    what, s->pid, s->ids[i], l->v[0].id, list);
	free(list);
}

START_TEST(retain_count_periodic)
{
	const char *opts[] = {"--snapshot-interval", "0.2", "--retain-snapshots", "3", NULL};
	struct h_proc pp, pq;
	struct h_truth *p1, *q1;
	struct seen sp = {0}, sq = {0};
	struct snaplist l;
	long long deadline;
	char id[24];

	h_daemon_start_opts(&D, opts);
	p1 = start_prog(&pp, "deltas", NULL);
	q1 = start_prog(&pq, "deltas", NULL);
	wait_live(p1->pid, p1, "P");
	wait_live(q1->pid, q1, "Q");
	sp.pid = p1->pid;
	sq.pid = q1->pid;

	/* Watch for 3 s (about 15 periodic snapshots each). */
	deadline = h_now_ms() + 3000;
	while (h_now_ms() < deadline) {
		snaps_list(&l, 0, "watching");
		for (int i = 0; i < l.n; i++) {
			ck_assert_msg(strcmp(l.v[i].reason, "periodic") == 0,
			              "snapshot %lld has reason %s, expected periodic", l.v[i].id,
			              l.v[i].reason);
			if (l.v[i].pid == sp.pid)
				seen_add(&sp, l.v[i].id);
			else if (l.v[i].pid == sq.pid)
				seen_add(&sq, l.v[i].id);
		}
		snaps_free(&l);
		h_sleep_ms(100);
	}
	ck_assert_msg(sp.n >= 6 && sq.n >= 6,
	              "only %d and %d periodic snapshots seen in 3 s at 0.2 s: retention was "
	              "never exercised",
	              sp.n, sq.n);
	wait_count(&l, sp.pid, 3, NULL, "P while live");
	for (int i = 0; i < l.n; i++)
		seen_add(&sp, l.v[i].id);
	assert_newest(&l, &sp, 3, "P while live");
	snaps_free(&l);
	wait_count(&l, sq.pid, 3, NULL, "Q while live");
	for (int i = 0; i < l.n; i++)
		seen_add(&sq, l.v[i].id);
	assert_newest(&l, &sq, 3, "Q while live");
	/* The newest: a new periodic snapshot every 0.2 s retires the oldest,
	 * which a loaded machine may not get to read in time. */
	snprintf(id, sizeof id, "%lld", l.v[l.n - 1].id);
	top_exact(NULL, "--snapshot", id, q1, H_KEY_LINENO, false, "Q's newest periodic survivor");
	snaps_free(&l);

	/* P ends: at most three, the exit snapshot the newest of them. */
	h_proc_end(&pp, "P");
	wait_count(&l, sp.pid, 3, "exit", "P after exit");
	for (int i = 0; i < l.n; i++)
		seen_add(&sp, l.v[i].id);
	assert_newest(&l, &sp, 3, "P after exit");
	ck_assert_msg(strcmp(l.v[0].reason, "periodic") == 0 &&
	                  strcmp(l.v[1].reason, "periodic") == 0,
	              "P after exit keeps %s, %s, %s", l.v[0].reason, l.v[1].reason, l.v[2].reason);
	snprintf(id, sizeof id, "%lld", l.v[0].id);
	top_exact(NULL, "--snapshot", id, p1, H_KEY_TRACEBACK, false, "P's oldest survivor");
	snaps_free(&l);
	/* Q goes on with its three. */
	h_sleep_ms(600);
	wait_count(&l, sq.pid, 3, "periodic", "Q after P's exit");
	snaps_free(&l);

	h_truth_free(p1);
	h_truth_free(q1);
	h_proc_cleanup(&pp);
	h_proc_cleanup(&pq);
}
END_TEST

/* The smallest count of each table over a few reads: a snapshot is
 * committed before its retention is, so for a moment one extra snapshot
 * may be there; that is not growth. */
static int steady_counts(struct tabcount *v, long long *pages)
{
	struct tabcount cur[MAX_TABLES];
	long long pg;
	int n = 0;

	for (int round = 0; round < 6; round++) {
		sqlite3 *db = db_open(&D);
		int m = db_counts(db, cur, &pg);
		sqlite3_close(db);
		if (round == 0) {
			n = m;
			memcpy(v, cur, sizeof cur);
			*pages = pg;
		} else {
			ck_assert_int_eq(m, n);
			for (int i = 0; i < n; i++)
				if (cur[i].rows < v[i].rows)
					v[i].rows = cur[i].rows;
			if (pg < *pages)
				*pages = pg;
		}
		h_sleep_ms(37);
	}
	return n;
}

static long long newest_id(void)
{
	struct snaplist l;
	long long id = 0;

	snaps_list(&l, 0, "newest");
	for (int i = 0; i < l.n; i++)
		if (l.v[i].id > id)
			id = l.v[i].id;
	snaps_free(&l);
	return id;
}

START_TEST(retain_steady_db)
{
	const char *opts[] = {"--snapshot-interval", "0.2", "--retain-snapshots", "3", NULL};
	const char *args[] = {"8", "churn", NULL};
	struct h_proc p;
	struct h_truth *t;
	struct tabcount c1[MAX_TABLES], c2[MAX_TABLES];
	long long pages1, pages2, id1, id2, t0;
	int n1, n2;
	char *why = NULL;

	h_daemon_start_opts(&D, opts);
	t = start_prog(&p, "manystacks", args);
	t0 = h_now_ms();
	h_sleep_ms((int)(t0 + 2000 - h_now_ms()));
	n1 = steady_counts(c1, &pages1);
	id1 = newest_id();
	h_sleep_ms((int)(t0 + 6000 - h_now_ms()));
	n2 = steady_counts(c2, &pages2);
	id2 = newest_id();

	ck_assert_int_eq(n1, n2);
	for (int i = 0; i < n1; i++) {
		/* the ids retention deleted are remembered, the newest 4096
		 * (STORE_DELETED_KEEP): bounded, not steady */
		if (strcmp(c1[i].name, "deleted") == 0) {
			if (c2[i].rows > 4096)
				h_append(&why, "table deleted: %lld rows, more than 4096",
				         c2[i].rows);
			continue;
		}
		if (c1[i].rows != c2[i].rows)
			h_append(&why, "table %s: %lld rows after 2 s, %lld after 6 s", c1[i].name,
			         c1[i].rows, c2[i].rows);
	}
	/* the deleted table's ~20 new rows may take a new leaf (and parent) page */
	if (pages2 > pages1 + 2)
		h_append(&why, "pages in use: %lld after 2 s, %lld after 6 s", pages1, pages2);
	ck_assert_msg(id2 - id1 >= 10,
	              "only %lld snapshots taken between 2 s and 6 s at --snapshot-interval 0.2",
	              id2 - id1);
	ck_assert_msg(why == NULL,
	              "the database grows under a steady workload (interval 0.2 s, keep 3): %s",
	              why);
	{
		char *s = h_strf("%s", "");
		for (int i = 0; i < n2; i++) {
			char *x = h_strf("%s %s=%lld", s, c2[i].name, c2[i].rows);
			free(s);
			s = x;
		}
		printf("retain_steady_db: snapshots %lld..%lld; rows:%s; %lld pages in use\n", id1,
		       id2, s, pages2);
		fflush(stdout);
		free(s);
	}
	assert_no_garbage("steady workload");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* Moves snapshot id back by `days` (the test's own preparation of an old
 * database: snapshot.taken_at is seconds since the epoch). */
static void age_snapshot(long long id, double days)
{
	sqlite3 *db = db_open(&D);
	char *sql = h_strf("UPDATE snapshot SET taken_at = taken_at - %f WHERE id = %lld",
	                   days * 86400.0, id);
	char *err = NULL;

	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK &&
	                  sqlite3_changes(db) == 1,
	              "%s: %s", sql, err ? err : "no such row");
	free(sql);
	sqlite3_close(db);
}

START_TEST(retain_days)
{
	const char *opts0[] = {"--snapshot-interval", "0", NULL};
	const char *opts30[] = {"--snapshot-interval", "0", "--retain-days", "30", NULL};
	struct h_proc pp, pq, pr, ps;
	struct h_truth *p1, *p2, *q1, *r1, *s1;
	long long a[4], b1, pshut = 0, qshut = 0, r, s;
	struct snaplist l;
	char id[24];

	h_daemon_start_opts(&D, opts0);
	p1 = start_prog(&pp, "deltas", NULL);
	wait_live(p1->pid, p1, "P");
	a[0] = snap_take(p1->pid, NULL);
	a[1] = snap_take(p1->pid, NULL);
	p2 = next_phase(&pp);
	wait_live(p2->pid, p2, "P phase 2");
	a[2] = snap_take(p1->pid, NULL);
	a[3] = snap_take(p1->pid, NULL);
	q1 = start_prog(&pq, "deltas", NULL);
	wait_live(q1->pid, q1, "Q");
	b1 = snap_take(q1->pid, NULL);
	h_daemon_stop(&D); /* + shutdown snapshots of P and Q */
	h_proc_cleanup(&pp);
	h_proc_cleanup(&pq);

	/* Age: a[0], a[1] by 40 days and b1 by 45 (past 30); a[2] by 29 days
	 * (not past). */
	age_snapshot(a[0], 40);
	age_snapshot(a[1], 40);
	age_snapshot(a[2], 29);
	age_snapshot(b1, 45);

	/* Retention runs after a write: snapshot a new process. */
	h_daemon_spawn(&D, opts30);
	r1 = start_prog(&pr, "deltas", NULL);
	wait_live(r1->pid, r1, "R");
	r = snap_take(r1->pid, NULL);
	snaps_list(&l, 0, "after --retain-days 30");
	for (int i = 0; i < l.n; i++) {
		if (strcmp(l.v[i].reason, "shutdown") == 0 && l.v[i].pid == p1->pid)
			pshut = l.v[i].id;
		if (strcmp(l.v[i].reason, "shutdown") == 0 && l.v[i].pid == q1->pid)
			qshut = l.v[i].id;
	}
	{
		char *list = snaps_ids(&l);
		ck_assert_msg(
		    l.n == 5 && snaps_find(&l, a[2]) && snaps_find(&l, a[3]) && pshut && qshut &&
		        snaps_find(&l, r) && !snaps_find(&l, a[0]) && !snaps_find(&l, a[1]) &&
		        !snaps_find(&l, b1),
		    "--retain-days 30 with %lld, %lld (40 days old), %lld (45) and %lld "
		    "(29): expected exactly %lld, %lld, the shutdown snapshots of pids %ld "
		    "and %ld, and %lld; `snapshots` lists %s",
		    a[0], a[1], b1, a[2], a[2], a[3], p1->pid, q1->pid, r, list);
		free(list);
	}
	snaps_free(&l);
	snprintf(id, sizeof id, "%lld", a[2]);
	top_exact(NULL, "--snapshot", id, p2, H_KEY_TRACEBACK, false, "29 days old");
	snprintf(id, sizeof id, "%lld", qshut);
	top_exact(NULL, "--snapshot", id, q1, H_KEY_TRACEBACK, false, "Q's shutdown snapshot");
	assert_no_garbage("after --retain-days");

	/* Everything old but what comes next: only the new snapshot and the
	 * stacks, frames and process it uses remain. */
	h_daemon_stop(&D); /* + R's shutdown snapshot */
	h_proc_cleanup(&pr);
	{
		sqlite3 *db = db_open(&D);
		char *err = NULL;
		ck_assert_msg(sqlite3_exec(db, "UPDATE snapshot SET taken_at = taken_at - 8640000",
		                           NULL, NULL, &err) == SQLITE_OK &&
		                  sqlite3_changes(db) == 6,
		              "aging all six snapshots: %s (%d rows)", err ? err : "",
		              sqlite3_changes(db));
		sqlite3_close(db);
	}
	/* --retain-days 0 is no limit: a write deletes none of them. */
	{
		const char *opts_none[] = {"--snapshot-interval", "0", "--retain-days", "0", NULL};
		struct h_proc pn;
		struct h_truth *n1;
		struct snaplist ln;
		h_daemon_spawn(&D, opts_none);
		n1 = start_prog(&pn, "deltas", NULL);
		wait_live(n1->pid, n1, "N");
		snap_take(n1->pid, NULL);
		snaps_list(&ln, 0, "--retain-days 0");
		ck_assert_msg(ln.n == 7,
		              "--retain-days 0 with six 100-day-old snapshots and a new "
		              "one: %d listed, expected 7",
		              ln.n);
		snaps_free(&ln);
		h_daemon_stop(&D); /* + N's shutdown snapshot, both new */
		h_proc_cleanup(&pn);
		h_truth_free(n1);
		sqlite3 *db = db_open(&D);
		ck_assert(sqlite3_exec(db,
		                       "UPDATE snapshot SET taken_at = taken_at - 8640000 WHERE "
		                       "taken_at > strftime('%s', 'now') - 86400",
		                       NULL, NULL, NULL) == SQLITE_OK &&
		          sqlite3_changes(db) == 2);
		sqlite3_close(db);
	}
	h_daemon_spawn(&D, opts30);
	s1 = start_prog(&ps, "deltas", NULL);
	wait_live(s1->pid, s1, "S");
	s = snap_take(s1->pid, NULL);
	{
		long long only[] = {s};
		assert_listed(0, only, 1, "after aging everything by 100 days");
	}
	snprintf(id, sizeof id, "%lld", s);
	top_exact(NULL, "--snapshot", id, s1, H_KEY_TRACEBACK, false, "the one snapshot left");
	assert_no_garbage("after deleting all but one snapshot");
	{
		sqlite3 *db = db_open(&D);
		long long procs = db_int(db, "SELECT count(*) FROM process");
		sqlite3_close(db);
		ck_assert_msg(procs == 1, "%lld processes left for one snapshot", procs);
	}

	h_truth_free(p1);
	h_truth_free(p2);
	h_truth_free(q1);
	h_truth_free(r1);
	h_truth_free(s1);
	h_proc_cleanup(&ps);
}
END_TEST

/* ============================================================ sessions */

/* Where `name` is found on $PATH, as a new string, or NULL. */
static char *path_find(const char *name)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL, *found = NULL;

	if (path == NULL || path[0] == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	copy = h_strf("%s", path);
	for (dir = strtok_r(copy, ":", &save); dir != NULL && found == NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		char *f = h_strf("%s/%s", dir[0] != '\0' ? dir : ".", name);
		if (access(f, X_OK) == 0)
			found = f;
		else
			free(f);
	}
	free(copy);
	return found;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/*
 * The processes an `strace -f -qq -e trace=execve` log saw run: every
 * process of a make of `true` and `echo` rules execs (make is exec'd by
 * strace, each rule's process by make; neither `true` nor sh forks), so
 * they are the distinct ids of the execve calls that succeeded, one each
 * (a thread never execs here; strace names the thread it saw, so counting
 * the ends of processes would count threads that died in exit_group too).
 * The first is make's own: its pid is left in *first.
 */
static long strace_processes(const char *log, long *first)
{
	FILE *f = fopen(log, "r");
	char line[4096];
	long *pids = NULL, n = 0, cap = 0, distinct = 0;

	ck_assert_msg(f != NULL, "strace log %s: %s", log, strerror(errno));
	*first = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		char *rest;
		long pid = strtol(line, &rest, 10);
		size_t len = strlen(rest);
		while (len > 0 && (rest[len - 1] == '\n' || rest[len - 1] == ' '))
			rest[--len] = '\0';
		/* "execve(...) = 0", or "<... execve resumed>) = 0" after an
		 * "<unfinished ...>" line */
		if (pid <= 0 || strstr(rest, "execve") == NULL || len < 3 ||
		    strcmp(rest + len - 3, "= 0") != 0)
			continue;
		if (*first == 0)
			*first = pid;
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			pids = realloc(pids, (size_t)cap * sizeof(*pids));
			ck_assert(pids != NULL);
		}
		pids[n++] = pid;
	}
	fclose(f);
	qsort(pids, (size_t)n, sizeof(*pids), cmp_long);
	for (long i = 0; i < n; i++)
		if (i == 0 || pids[i] != pids[i - 1])
			distinct++;
	free(pids);
	return distinct;
}

/* A Makefile of `rules` phony targets: the even ones run `true`, which
 * GNU make starts itself (a new process that execs it, no shell); the odd
 * ones redirect the output of `echo`, which takes /bin/sh. */
static void flood_makefile(const char *path, int rules)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fputs("all:", f);
	for (int i = 0; i < rules; i++)
		fprintf(f, " t%d", i);
	fputs("\n.PHONY: all", f);
	for (int i = 0; i < rules; i++)
		fprintf(f, " t%d", i);
	fputs("\n", f);
	for (int i = 0; i < rules; i++)
		fprintf(f, "t%d:\n\t%s\n", i, i % 2 == 0 ? "@true" : "@echo $@ > /dev/null");
	ck_assert_msg(fclose(f) == 0, "%s: %s", path, strerror(errno));
}

static char *check_none_live_cb(const cJSON *json, void *arg)
{
	const cJSON *e;
	long live = 0;

	(void)arg;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(json, "processes"))
	{
		const char *st = h_json_str(e, "state");
		if (st == NULL || strcmp(st, "exited") != 0)
			live++;
	}
	if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(json, "processes")) && live == 0)
		return NULL;
	return h_strf("%ld traced processes are not exited yet", live);
}

static char *check_exited_cb(const cJSON *json, void *arg)
{
	const char *st = h_json_str(json, "state");

	(void)arg;
	if (st != NULL && strcmp(st, "exited") == 0)
		return NULL;
	return h_strf("state is %s, not exited", st ? st : "absent");
}

/* `stats --pid P` once, its integer `field`. */
static long long stats_int(long pid, const char *field, const char *what)
{
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};
	long long v;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	h_ctl_ok(&D, H_NOUID, &r, args);
	ck_assert_msg(h_json_int(r.json, field, &v), "%s: `stats --pid %ld` has no %s: %.800s",
	              what, pid, field, r.out);
	h_ctl_free(&r);
	return v;
}

#define FLOOD_RULES 300

/*
 * A make of 300 rules, traced: half start `true` without a shell, half run
 * /bin/sh. A forked child of make that only execs makes no session; the
 * image it execs is its own. Only the processes that recorded something
 * leave an exit snapshot, one each; a process that recorded nothing (`true`
 * allocates nothing) stays listed, with no snapshot. The ground truth for
 * how many processes ran is strace's, of the same run.
 */
START_TEST(make_flood)
{
	const char *opts[] = {"--max-exited", "4096", "--snapshot-interval", "0", NULL};
	const char *list_args[] = {"list", NULL};
	char *make = path_find("make"), *strace = path_find("strace");
	char *dir, *mkfile, *log, *preload, *rundir, *why;
	struct h_proc p;
	struct h_spawn sp;
	struct h_ctl r;
	const cJSON *e;
	long procs, make_pid, sessions = 0, nothing = 0, unmatched = 0, empty_forks = 0;
	long long *silent = NULL; /* pids listed once that recorded nothing */
	size_t nsilent = 0;
	long long exits, empty, dbsize;
	char *first_nothing = NULL, *first_unmatched = NULL;
	bool make_listed = false;
	int st;
	sqlite3 *db;

	ck_assert(make != NULL && strace != NULL);
	h_daemon_start_opts(&D, opts);
	dir = h_daemon_file(&D, "flood");
	ck_assert_msg(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
	mkfile = h_strf("%s/Makefile", dir);
	flood_makefile(mkfile, FLOOD_RULES);
	log = h_strf("%s/strace.log", dir);
	preload = h_strf("LD_PRELOAD=%s", h_agent_lib());
	rundir = h_strf("MEMTRACE_RUNTIME_DIR=%s", D.runtime);
	{
		/* strace itself is not traced: the agent goes to make alone. */
		const char *argv[] = {strace,  "-f",           "-qq",  "-o",          log,
		                      "-e",    "trace=execve", "-e",   "signal=none", "-E",
		                      preload, "-E",           rundir, make,          "-s",
		                      "-j4",   "-f",           mkfile, NULL};
		memset(&sp, 0, sizeof sp);
		sp.argv = argv;
		sp.uid = H_NOUID;
		h_proc_start(&p, &sp);
	}
	h_proc_close_stdin(&p);
	st = h_proc_finish(&p, 120000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "strace -f make -j4 of %d rules: %s; stderr: %.1500s", FLOOD_RULES,
	              h_status_str(st), p.err.data ? p.err.data : "");
	procs = strace_processes(log, &make_pid);
	ck_assert_msg(procs > FLOOD_RULES, "strace saw %ld processes for %d rules", procs,
	              FLOOD_RULES);

	/* Every process is gone: the daemon says so of each session. */
	why = h_ctl_poll(&D, H_NOUID, &r, check_none_live_cb, NULL, list_args);
	ck_assert_msg(why == NULL, "after make: %s", why);

	/* Whether each listed session recorded something. A pid listed
	 * twice (a process whose image before and after an exec both
	 * allocated) leaves its older session to the store's check below. */
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
	{
		long long pid, n = 0;
		const char *exe = h_json_str(e, "exe");
		const cJSON *o;
		ck_assert(h_json_int(e, "pid", &pid) && exe != NULL);
		sessions++;
		if (pid == make_pid && fnmatch("*/make", exe, 0) == 0)
			make_listed = true;
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
		{
			long long q;
			if (h_json_int(o, "pid", &q) && q == pid)
				n++;
		}
		if (n == 1 && stats_int((long)pid, "allocations", "make_flood") +
		                      stats_int((long)pid, "frees", "make_flood") ==
		                  0) {
			nothing++;
			silent = realloc(silent, (nsilent + 1) * sizeof(*silent));
			ck_assert_ptr_nonnull(silent);
			silent[nsilent++] = pid;
			/* make's forked children are make until they exec: one
			 * that recorded nothing must not be listed at all. */
			if (pid != make_pid && fnmatch("*/make", exe, 0) == 0 && empty_forks++ == 0)
				first_nothing = h_strf("pid %lld (%s)", pid, exe);
		}
	}

	/* Stopping the daemon finishes every snapshot it was writing. */
	h_daemon_stop(&D);
	db = db_open(&D);
	exits = db_int(db, "SELECT count(*) FROM snapshot WHERE reason = 'exit'");
	empty = db_int(db, "SELECT count(*) FROM snapshot WHERE reason = 'exit'"
	                   " AND allocations + frees = 0");
	dbsize = db_int(db, "SELECT page_count * page_size FROM pragma_page_count(),"
	                    " pragma_page_size()");
	/* One exit snapshot each of those that recorded something, none of
	 * the others: the store names a process by pid, start time and exe. */
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
	{
		long long pid, start;
		const char *exe = h_json_str(e, "exe");
		ck_assert(h_json_int(e, "pid", &pid) && h_json_int(e, "start_time", &start));
		long long twice = 0, recorded = 1;
		const cJSON *o;
		cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
		{
			long long q;
			if (h_json_int(o, "pid", &q) && q == pid)
				twice++;
		}
		for (size_t k = 0; k < nsilent; k++)
			if (silent[k] == pid)
				recorded = 0;
		char *sql =
		    sqlite3_mprintf("SELECT count(*) FROM snapshot s JOIN process p"
		                    " ON p.id = s.process_id WHERE s.reason = 'exit'"
		                    " AND p.pid = %lld AND p.start_time = %lld AND p.exe = %Q",
		                    pid, start, exe);
		long long n = db_int(db, sql);
		sqlite3_free(sql);
		if (n != (recorded > 0 ? 1 : 0) && (twice == 1 || n > 1) && unmatched++ == 0)
			first_unmatched = h_strf("pid %lld (%s) has %lld", pid, exe, n);
	}
	printf("make_flood: %d rules: %ld processes ran (strace), %ld sessions listed (%ld of "
	       "them recorded nothing), %lld exit snapshots (%lld of processes that recorded "
	       "nothing), database %lld bytes\n",
	       FLOOD_RULES, procs, sessions, nothing, exits, empty, dbsize);
	fflush(stdout);
	ck_assert_msg(make_listed, "make (pid %ld) is not listed: %.1500s", make_pid, r.out);
	ck_assert_msg(empty_forks == 0,
	              "%ld forked children of make that recorded nothing are listed, the first %s",
	              empty_forks, first_nothing);
	ck_assert_msg(sessions <= procs,
	              "%ld sessions listed for the %ld processes that ran (strace): a process "
	              "counted twice",
	              sessions, procs);
	ck_assert_msg(empty == 0, "%lld exit snapshots of processes that recorded nothing", empty);
	ck_assert_msg(exits <= sessions - nothing,
	              "%lld exit snapshots for %ld exited sessions listed that recorded something",
	              exits, sessions - nothing);
	ck_assert_msg(
	    unmatched == 0,
	    "%ld listed sessions have not one exit snapshot each (none when they recorded "
	    "nothing); the first, %s",
	    unmatched, first_unmatched);
	sqlite3_close(db);
	h_ctl_free(&r);
	h_proc_cleanup(&p);
	free(make);
	free(strace);
	free(dir);
	free(mkfile);
	free(log);
	free(first_nothing);
	free(first_unmatched);
	free(silent);
	free(preload);
	free(rundir);
}
END_TEST

/*
 * Sixteen threads allocate 32,000 blocks and keep 64 (tests/progs/keepfew.c).
 * Once it exited, the process's session answers `top` exactly from what it
 * kept, and all the daemon still holds for it (`model_bytes`) is under
 * 64 KiB, however much it held at the peak.
 */
START_TEST(exited_session_memory)
{
	const char *opts[] = {"--snapshot-interval", "0", NULL};
	struct h_proc p;
	struct h_truth *t1, *t2;
	struct h_ctl r;
	char pidbuf[24];
	const char *stats_args[] = {"stats", "--pid", pidbuf, NULL};
	long long peak_bytes, exited_bytes;
	char *why;
	int st;

	h_daemon_start_opts(&D, opts);
	t1 = start_prog(&p, "keepfew", NULL);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t1->pid);
	wait_live(t1->pid, t1, "keepfew at its peak");
	peak_bytes = stats_int(t1->pid, "model_bytes", "keepfew at its peak");
	t2 = next_phase(&p);
	wait_live(t2->pid, t2, "keepfew after its frees");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "keepfew: %s; %.1000s",
	              h_status_str(st), p.err.data ? p.err.data : "");
	why = h_ctl_poll(&D, H_NOUID, &r, check_exited_cb, NULL, stats_args);
	ck_assert_msg(why == NULL, "stats --pid %ld after its exit: %s", t2->pid, why);
	h_ctl_free(&r);

	top_exact(NULL, "--pid", pidbuf, t2, H_KEY_LINENO, false, "exited keepfew");
	top_exact(NULL, "--pid", pidbuf, t2, H_KEY_TRACEBACK, false, "exited keepfew");
	exited_bytes = stats_int(t2->pid, "model_bytes", "exited keepfew");
	printf("exited_session_memory: %lld threads, %lld blocks kept of %lld: model_bytes %lld "
	       "at the peak, %lld after the exit\n",
	       h_truth_meta(t1, "threads", 0), h_truth_count(t2), h_truth_count(t1), peak_bytes,
	       exited_bytes);
	fflush(stdout);
	ck_assert_msg(exited_bytes < 65536,
	              "the daemon holds %lld bytes for an exited process of %lld threads that "
	              "kept %lld blocks (at its peak %lld)",
	              exited_bytes, h_truth_meta(t1, "threads", 0), h_truth_count(t2), peak_bytes);

	h_truth_free(t1);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

/* ====================================================== uid isolation */

/* As `uid`: the client fails with error `code`. */
START_TEST(snapshot_uid_isolation)
{
	const char *opts[] = {"--snapshot-interval", "0", NULL};
	struct h_proc rp, np;
	struct h_truth *rt, *nt;
	struct h_ctl r;
	struct snaplist l;
	long long ra, na;
	char rid[24], nid[24], rpid[24], npid[24];

	h_daemon_start_opts(&D, opts);
	ck_assert_int_eq(chmod(D.runtime, 0755), 0);
	rt = start_prog(&rp, "deltas", NULL);
	h_prog_start(&np, &D, "deltas", NULL, H_NOBODY, NULL);
	h_proc_expect_ready(&np);
	nt = h_truth_must(np.truth);
	wait_live(rt->pid, rt, "root's deltas");
	wait_live(nt->pid, nt, "nobody's deltas");
	snprintf(rpid, sizeof rpid, "%ld", rt->pid);
	snprintf(npid, sizeof npid, "%ld", nt->pid);
	ra = snap_take(rt->pid, NULL);
	snprintf(rid, sizeof rid, "%lld", ra);
	{
		const char *take[] = {"snapshot", "--pid", npid, NULL};
		h_ctl_run(&D, H_NOBODY, &r, take);
		ck_assert_msg(r.status == 0 && h_json_int(r.json, "id", &na),
		              "uid 65534 `snapshot --pid %s` of its own process: exit %d %.800s",
		              npid, r.status, r.out);
		h_ctl_free(&r);
		snprintf(nid, sizeof nid, "%lld", na);
	}
	{
		const char *list[] = {"snapshots", NULL};
		h_ctl_run(&D, H_NOBODY, &r, list);
		ck_assert_msg(r.status == 0 && r.json != NULL, "uid 65534 `snapshots`: %.800s",
		              r.out);
		snaps_parse(r.json, &l, "uid 65534 `snapshots`");
		ck_assert_msg(l.n == 1 && l.v[0].id == na,
		              "uid 65534 `snapshots` should list only its own %lld, not root's "
		              "%lld: %.1500s",
		              na, ra, r.out);
		snaps_free(&l);
		h_ctl_free(&r);
	}
	{
		const char *top_r[] = {"top", "--snapshot", rid, NULL};
		const char *stats_r[] = {"stats", "--snapshot", rid, NULL};
		const char *tb_r[] = {"traceback", "--snapshot", rid, NULL};
		const char *cmp_r[] = {"compare", rid, nid, NULL};
		const char *take_r[] = {"snapshot", "--pid", rpid, NULL};
		const char *list_r[] = {"snapshots", "--pid", rpid, NULL};
		h_ctl_error(&D, H_NOBODY, top_r, "no_such_snapshot");
		h_ctl_error(&D, H_NOBODY, stats_r, "no_such_snapshot");
		h_ctl_error(&D, H_NOBODY, tb_r, "no_such_snapshot");
		h_ctl_error(&D, H_NOBODY, cmp_r, "no_such_snapshot");
		/* root's process: not theirs (or gone by now) */
		h_ctl_run(&D, H_NOBODY, &r, take_r);
		const char *tcode = h_ctl_error_code(&r);
		ck_assert_msg(
		    r.status != 0 && tcode != NULL &&
		        (strcmp(tcode, "not_yours") == 0 || strcmp(tcode, "no_such_process") == 0),
		    "uid 65534 `snapshot --pid` of root's: %.800s", r.out);
		h_ctl_free(&r);
		h_ctl_run(&D, H_NOBODY, &r, list_r);
		if (r.status == 0) {
			snaps_parse(r.json, &l, "uid 65534 `snapshots --pid` of root's");
			ck_assert_msg(l.n == 0, "uid 65534 lists root's snapshots by pid: %.1000s",
			              r.out);
			snaps_free(&l);
		} else {
			const char *code = h_ctl_error_code(&r);
			ck_assert_msg(code != NULL && (strcmp(code, "not_yours") == 0 ||
			                               strcmp(code, "no_such_process") == 0),
			              "uid 65534 `snapshots --pid` of root's: %.800s", r.out);
		}
		h_ctl_free(&r);
	}
	/* nobody reads its own, exactly; root reads both. */
	{
		struct h_expect e = {.t = nt, .files = nt, .key = H_KEY_LINENO};
		const char *top_n[] = {"top", "--snapshot", nid, "--limit", "0", NULL};
		char *why;
		h_ctl_run(&D, H_NOBODY, &r, top_n);
		ck_assert_msg(r.status == 0 && r.json != NULL,
		              "uid 65534 top --snapshot %s: %.800s", nid, r.out);
		why = h_check_top(r.json, &e);
		ck_assert_msg(why == NULL, "uid 65534 top --snapshot %s: %.3000s", nid, why);
		h_ctl_free(&r);
	}
	top_exact(NULL, "--snapshot", nid, nt, H_KEY_LINENO, false, "root reads nobody's");
	top_exact(NULL, "--snapshot", rid, rt, H_KEY_LINENO, false, "root reads its own");
	snaps_list(&l, 0, "root");
	ck_assert_msg(l.n == 2, "root should list both snapshots, lists %d", l.n);
	snaps_free(&l);

	h_truth_free(rt);
	h_truth_free(nt);
	h_proc_cleanup(&rp);
	h_proc_cleanup(&np);
}
END_TEST

/* ------------------------------------------------------------ runner */

static Suite *snapshots_suite(void)
{
	Suite *su = suite_create("e2e_snapshots");
	char *make = path_find("make"), *strace = path_find("strace");
	TCase *tc;

	tc = h_tcase(su, "compare", 120, NULL, teardown);
	tcase_add_test(tc, compare_keys);
	tc = h_tcase(su, "periodic_exit", 120, NULL, teardown);
	tcase_add_test(tc, periodic_and_exit);
	tcase_add_loop_test(tc, exit_on_sigkill, 0, 2);
	tcase_add_test(tc, run_prints_leaks);
	tc = h_tcase(su, "restart", 120, NULL, teardown);
	tcase_add_test(tc, restart_and_files);
	tc = h_tcase(su, "kill9", 600, NULL, teardown);
	tcase_add_loop_test(tc, kill9_while_writing, 0, 2);
	tc = h_tcase(su, "retention", 180, NULL, teardown);
	tcase_add_test(tc, retain_count_manual);
	tcase_add_test(tc, retain_count_periodic);
	tcase_add_test(tc, retain_steady_db);
	tcase_add_test(tc, retain_days);
	tc = h_tcase(su, "sessions", 240, NULL, teardown);
	tcase_add_test(tc, exited_session_memory);
	if (make != NULL && strace != NULL)
		tcase_add_test(tc, make_flood);
	else
		printf(
		    "e2e_snapshots: %s is not on PATH: the make flood test is NOT registered; it "
		    "neither ran nor passed\n",
		    make == NULL ? "make" : "strace");
	free(make);
	free(strace);
	if (geteuid() == 0) {
		tc = h_tcase(su, "uid", 120, NULL, teardown);
		tcase_add_test(tc, snapshot_uid_isolation);
	} else {
		printf(
		    "e2e_snapshots: not root: the snapshot uid isolation test is NOT registered; "
		    "it neither ran nor passed\n");
	}
	return su;
}

int main(void)
{
	static const char *const progs[] = {"deltas", "manystacks", "keepfew", NULL};

	return h_run_suite("e2e_snapshots", snapshots_suite(), progs);
}
