/*
 * check_store.c - daemon/store.c against a real SQLite database in a fresh
 * temporary directory per test.
 *
 * Snapshots come from a generator whose content is a pure function of its
 * parameters: stack number q has 1 + q % 4 frames, frame r of it is frame
 * number q + r, and its addresses carry the pid. So every expectation (which
 * stacks and frames a set of snapshots uses, what retention must leave) is
 * computed here from the parameters, never read from the store. The
 * database itself is inspected through a separate connection: the schema,
 * integrity_check, foreign_key_check, and orphan rows (the stack blobs are
 * decoded here from their documented format to find the frames in use).
 *
 * The store's own connection is reached through sqlite3_auto_extension,
 * which hands every new connection of this process to a callback: that is
 * how the pragmas of that very connection are queried without a test hook
 * in store.c.
 */
#include "store.h"
#include "suites.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "xalloc.h"

/* ---- fixture: a temporary directory and the database path in it ---- */

static char dir[PATH_MAX];
static char dbpath[PATH_MAX + 32];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/check_store.XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dbpath, sizeof(dbpath), "%s/%s", dir, STORE_FILE);
}

static void teardown(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX + 256];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static struct store *open_store(void)
{
	struct store *st = NULL;
	char why[512];
	int rc = store_open(dbpath, &st, why, sizeof why);

	ck_assert_msg(rc == 0, "store_open: %d: %s", rc, why);
	ck_assert_ptr_nonnull(st);
	return st;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- a separate connection to look at the file ---- */

static sqlite3 *raw_open(void)
{
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;

	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql,
	              sqlite3_errmsg(db));
	return s;
}

static int64_t q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = prep(db, sql);
	int64_t v;

	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void q_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *s = prep(db, sql);

	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	snprintf(buf, len, "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
	              sqlite3_errmsg(db));
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Every invariant of a healthy database: SQLite's own checks, no stack,
 * frame or process that nothing uses, no stack naming a missing frame. */
static void check_clean(void)
{
	sqlite3 *db = raw_open();
	sqlite3_stmt *s;
	char buf[256];
	int64_t *used = NULL, *have = NULL;
	size_t nused = 0, capused = 0, nhave = 0, uniq = 0;

	q_text(db, "PRAGMA integrity_check", buf, sizeof(buf));
	ck_assert_str_eq(buf, "ok");
	s = prep(db, "PRAGMA foreign_key_check");
	ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	ck_assert_int_eq(q_int(db,
	                       "SELECT count(*) FROM stack WHERE id NOT IN"
	                       " (SELECT stack_id FROM trace UNION SELECT stack_id FROM largest)"),
	                 0);
	ck_assert_int_eq(q_int(db, "SELECT count(*) FROM process WHERE id NOT IN"
	                           " (SELECT process_id FROM snapshot)"),
	                 0);

	/* the frame ids the stack blobs name (u32 LE id + u64 LE address each) */
	s = prep(db, "SELECT frames FROM stack");
	while (sqlite3_step(s) == SQLITE_ROW) {
		const unsigned char *p = sqlite3_column_blob(s, 0);
		int len = sqlite3_column_bytes(s, 0);
		if (len % 12 != 0)
			ck_abort_msg("stack blob of %d bytes", len);
		for (int off = 0; off < len; off += 12) {
			if (nused == capused) {
				capused = capused ? capused * 2 : 1024;
				used = xreallocarray(used, capused, sizeof(*used));
			}
			used[nused++] = (int64_t)p[off] | (int64_t)p[off + 1] << 8 |
			                (int64_t)p[off + 2] << 16 | (int64_t)p[off + 3] << 24;
		}
	}
	sqlite3_finalize(s);
	if (nused > 0)
		qsort(used, nused, sizeof(*used), cmp_i64);
	for (size_t i = 0; i < nused; i++) {
		if (uniq == 0 || used[uniq - 1] != used[i])
			used[uniq++] = used[i];
	}
	nhave = (size_t)q_int(db, "SELECT count(*) FROM frame");
	have = xcalloc(nhave + 1, sizeof(*have));
	s = prep(db, "SELECT id FROM frame ORDER BY id");
	for (size_t i = 0; i < nhave; i++) {
		ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
		have[i] = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	ck_assert_uint_eq(uniq, nhave);
	for (size_t i = 0; i < uniq; i++)
		ck_assert_int_eq(used[i], have[i]);
	free(used);
	free(have);
	sqlite3_close(db);
}

/* ---- the generator ---- */

struct gen {
	pid_t pid;
	uid_t uid;
	uint64_t start;
	const char *exe;
	double taken_at;
	const char *reason;
	unsigned first, n; /* stack numbers first .. first + n - 1 */
};

static unsigned depth_of(unsigned q)
{
	return 1 + q % 4;
}

static struct frame_info frame_of(unsigned fnum, char bufs[3][64])
{
	struct frame_info f = {0};

	snprintf(bufs[0], 64, "/src/app/f%u.c", fnum);
	snprintf(bufs[1], 64, "fn_%u", fnum);
	snprintf(bufs[2], 64, "/usr/lib/libm%u.so", fnum % 3);
	f.filename = bufs[0];
	f.lineno = fnum;
	f.function = bufs[1];
	f.module = bufs[2];
	return f;
}

static char **argv_of(const char *const *args)
{
	size_t n = 0;
	char **v;

	while (args[n] != NULL)
		n++;
	v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = xstrdup(args[i]);
	return v;
}

static struct snapshot *gen(const struct gen *g)
{
	static const char *const args[] = {"app", "--flag", "arg with \"quotes\"", "", NULL};
	struct snapshot *s = snapshot_new();
	char bufs[3][64];

	s->pid = g->pid;
	s->uid = g->uid;
	s->start_time = g->start;
	s->exe = xstrdup(g->exe);
	s->argv = argv_of(args);
	s->taken_at = g->taken_at;
	snprintf(s->reason, sizeof(s->reason), "%s", g->reason);
	s->traces = xcalloc(g->n, sizeof(*s->traces));
	s->ntraces = g->n;
	for (unsigned k = 0; k < g->n; k++) {
		struct snapshot_trace *t = &s->traces[k];
		unsigned q = g->first + k;
		t->nframes = depth_of(q);
		t->frames = xcalloc(t->nframes, sizeof(*t->frames));
		t->addrs = xcalloc(t->nframes, sizeof(*t->addrs));
		for (unsigned r = 0; r < t->nframes; r++) {
			struct frame_info f = frame_of(q + r, bufs);
			t->frames[r] = snapshot_intern_frame(s, &f);
			t->addrs[r] = (uint64_t)g->pid << 40 | (uint64_t)q << 8 | r;
		}
		t->size = 16 * (uint64_t)(q + 1);
		t->count = q % 5 + 1;
		t->allocations = t->count + q;
		t->allocated = t->size + 8 * (uint64_t)q;
		t->temporary = q / 2;
		t->peak_size = t->size + 3 * (uint64_t)q;
		t->peak_count = t->count + q % 3;
		s->current += t->size;
		s->blocks += t->count;
		s->allocations += t->allocations;
	}
	s->peak = 2 * s->current;
	s->frees = s->allocations - s->blocks;
	s->lost_events = (uint64_t)g->pid % 3;
	if (g->n > 0) {
		unsigned pick[3] = {g->n - 1, g->n / 2, 0};
		s->largest = xcalloc(3, sizeof(*s->largest));
		s->nlargest = 3;
		for (int i = 0; i < 3; i++) {
			s->largest[i].trace = pick[i];
			s->largest[i].addr = UINT64_C(0x7f0000000000) + pick[i] * 0x1000u;
			s->largest[i].size = s->traces[pick[i]].size / s->traces[pick[i]].count;
		}
	}
	return s;
}

static int64_t write_gen(struct store *st, const struct gen *g)
{
	struct snapshot *s = gen(g);
	int64_t id = 0;
	int rc = store_write(st, s, &id);

	ck_assert_msg(rc == 0, "store_write: %d %s", rc, store_errmsg(st));
	ck_assert_int_gt(id, 0);
	snapshot_free(s);
	return id;
}

/* ---- comparing snapshots by content ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

static uint64_t str_h(uint64_t h, const char *s)
{
	return fnv(h, s != NULL ? s : "", strlen(s != NULL ? s : "") + 1);
}

/* A hash of a trace's traceback by content: frames and addresses. */
static uint64_t trace_hash(const struct snapshot *s, const struct snapshot_trace *t)
{
	uint64_t h = fnv(UINT64_C(0xcbf29ce484222325), &t->nframes, sizeof(t->nframes));

	for (uint32_t j = 0; j < t->nframes; j++) {
		const struct frame_info *f = &s->frames[t->frames[j]];
		h = str_h(h, f->filename);
		h = fnv(h, &f->lineno, sizeof(f->lineno));
		h = str_h(h, f->function);
		h = str_h(h, f->module);
		h = str_h(h, f->symbols);
		h = fnv(h, &t->addrs[j], sizeof(t->addrs[j]));
	}
	return h;
}

struct tkey {
	uint64_t h, size, count, allocations, allocated, temporary, peak_size, peak_count;
};

static int cmp_tkey(const void *a, const void *b)
{
	const struct tkey *x = a, *y = b;

	return x->h < y->h ? -1 : x->h > y->h;
}

/* The traces of s by content, sorted, equal tracebacks merged (summed), as
 * the store merges them. */
static struct tkey *canon(const struct snapshot *s, size_t *n)
{
	struct tkey *k = xcalloc(s->ntraces + 1, sizeof(*k));
	size_t m = 0;

	for (size_t i = 0; i < s->ntraces; i++) {
		k[i].h = trace_hash(s, &s->traces[i]);
		k[i].size = s->traces[i].size;
		k[i].count = s->traces[i].count;
		k[i].allocations = s->traces[i].allocations;
		k[i].allocated = s->traces[i].allocated;
		k[i].temporary = s->traces[i].temporary;
		k[i].peak_size = s->traces[i].peak_size;
		k[i].peak_count = s->traces[i].peak_count;
	}
	qsort(k, s->ntraces, sizeof(*k), cmp_tkey);
	for (size_t i = 0; i < s->ntraces; i++) {
		if (m > 0 && k[m - 1].h == k[i].h) {
			k[m - 1].size += k[i].size;
			k[m - 1].count += k[i].count;
			k[m - 1].allocations += k[i].allocations;
			k[m - 1].allocated += k[i].allocated;
			k[m - 1].temporary += k[i].temporary;
			k[m - 1].peak_size += k[i].peak_size;
			k[m - 1].peak_count += k[i].peak_count;
		} else {
			k[m++] = k[i];
		}
	}
	*n = m;
	return k;
}

static size_t argc_of(char **argv)
{
	size_t n = 0;

	while (argv != NULL && argv[n] != NULL)
		n++;
	return n;
}

/* got (read from the store) holds exactly what want (written) held. */
static void assert_same(const struct snapshot *want, const struct snapshot *got)
{
	struct tkey *a, *b;
	size_t na, nb, distinct = 0;

	ck_assert_int_eq(got->pid, want->pid);
	ck_assert_uint_eq(got->uid, want->uid);
	ck_assert_uint_eq(got->start_time, want->start_time);
	ck_assert_str_eq(got->exe, want->exe != NULL ? want->exe : "");
	ck_assert_ptr_nonnull(got->argv);
	ck_assert_uint_eq(argc_of(got->argv), argc_of(want->argv));
	for (size_t i = 0; i < argc_of(want->argv); i++)
		ck_assert_str_eq(got->argv[i], want->argv[i]);
	ck_assert(got->taken_at == want->taken_at);
	ck_assert_str_eq(got->reason, want->reason);
	ck_assert_uint_eq(got->current, want->current);
	ck_assert_uint_eq(got->peak, want->peak);
	ck_assert_uint_eq(got->blocks, want->blocks);
	ck_assert_uint_eq(got->allocations, want->allocations);
	ck_assert_uint_eq(got->frees, want->frees);
	ck_assert_uint_eq(got->lost_events, want->lost_events);
	ck_assert_uint_eq(got->sample_bytes, want->sample_bytes);

	a = canon(want, &na);
	b = canon(got, &nb);
	ck_assert_uint_eq(got->ntraces, nb); /* no two read traces are equal */
	ck_assert_uint_eq(nb, na);
	/* plain ifs: a Check assertion per element would dominate at 100k */
	for (size_t i = 0; i < na; i++) {
		if (b[i].h != a[i].h || b[i].size != a[i].size || b[i].count != a[i].count ||
		    b[i].allocations != a[i].allocations || b[i].allocated != a[i].allocated ||
		    b[i].temporary != a[i].temporary || b[i].peak_size != a[i].peak_size ||
		    b[i].peak_count != a[i].peak_count)
			ck_abort_msg("trace %zu of %zu differs (by content)", i, na);
	}
	free(a);
	free(b);

	ck_assert_uint_eq(got->nlargest, want->nlargest);
	for (size_t i = 0; i < want->nlargest; i++) {
		ck_assert_uint_eq(got->largest[i].addr, want->largest[i].addr);
		ck_assert_uint_eq(got->largest[i].size, want->largest[i].size);
		ck_assert_uint_lt(got->largest[i].trace, got->ntraces);
		ck_assert_uint_eq(trace_hash(got, &got->traces[got->largest[i].trace]),
		                  trace_hash(want, &want->traces[want->largest[i].trace]));
	}

	/* got's frames are distinct and each is used */
	for (size_t i = 0; i < got->nframes; i++) {
		for (size_t j = 0; j < i && got->nframes < 2000; j++) {
			const struct frame_info *x = &got->frames[i], *y = &got->frames[j];
			ck_assert(!(x->lineno == y->lineno &&
			            strcmp(x->filename, y->filename) == 0 &&
			            strcmp(x->function, y->function) == 0 &&
			            strcmp(x->module, y->module) == 0 &&
			            strcmp(x->symbols != NULL ? x->symbols : "",
			                   y->symbols != NULL ? y->symbols : "") == 0));
		}
	}
	{
		char *seen = xcalloc(got->nframes + 1, 1);
		for (size_t i = 0; i < got->ntraces; i++)
			for (uint32_t j = 0; j < got->traces[i].nframes; j++) {
				if (got->traces[i].frames[j] >= got->nframes)
					ck_abort_msg("trace %zu: frame index out of range", i);
				seen[got->traces[i].frames[j]] = 1;
			}
		for (size_t i = 0; i < got->nframes; i++)
			distinct += seen[i];
		free(seen);
	}
	ck_assert_uint_eq(distinct, got->nframes);
}

static void assert_reads_as(struct store *st, int64_t id, const struct snapshot *want)
{
	struct snapshot *got = NULL;
	int rc = store_read(st, id, &got);

	ck_assert_msg(rc == 0, "store_read %lld: %d %s", (long long)id, rc, store_errmsg(st));
	ck_assert_int_eq(got->id, id);
	assert_same(want, got);
	snapshot_free(got);
}

static void assert_reads_as_gen(struct store *st, int64_t id, const struct gen *g)
{
	struct snapshot *want = gen(g);

	assert_reads_as(st, id, want);
	snapshot_free(want);
}

/* A snapshot written before the migration to version 5: its traces read
 * allocated, temporary and the peak's figures as 0. */
static void assert_reads_as_gen_v4(struct store *st, int64_t id, const struct gen *g)
{
	struct snapshot *want = gen(g);

	for (size_t i = 0; i < want->ntraces; i++)
		want->traces[i].allocated = want->traces[i].temporary = 0,
		want->traces[i].peak_size = want->traces[i].peak_count = 0;
	assert_reads_as(st, id, want);
	snapshot_free(want);
}

static struct store_counts counts(struct store *st)
{
	struct store_counts c;

	ck_assert_int_eq(store_counts(st, &c), 0);
	return c;
}

/* ---- what a set of generated snapshots should leave in the store ---- */

#define MAXQ 4096

struct expect {
	char stack[8][MAXQ]; /* [process slot][q] */
	char frame[MAXQ + 8];
	size_t stacks, frames;
};

static void expect_add(struct expect *e, int slot, const struct gen *g)
{
	for (unsigned q = g->first; q < g->first + g->n; q++) {
		ck_assert_uint_lt(q, MAXQ);
		if (!e->stack[slot][q]) {
			e->stack[slot][q] = 1;
			e->stacks++;
		}
		for (unsigned r = 0; r < depth_of(q); r++) {
			if (!e->frame[q + r]) {
				e->frame[q + r] = 1;
				e->frames++;
			}
		}
	}
}

/* ---- schema and connection ---- */

START_TEST(test_schema)
{
	struct store *st = open_store();
	sqlite3 *db = raw_open();
	char names[256] = "";
	sqlite3_stmt *s;

	ck_assert_int_eq(q_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	ck_assert_int_eq(STORE_SCHEMA_VERSION, 8);
	s = prep(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
	while (sqlite3_step(s) == SQLITE_ROW) {
		strcat(names, (const char *)sqlite3_column_text(s, 0));
		strcat(names, " ");
	}
	sqlite3_finalize(s);
	ck_assert_str_eq(names, "deleted frame largest process snapshot stack trace ");
	/* an empty store */
	struct store_counts c = counts(st);
	ck_assert_uint_eq(c.processes + c.snapshots + c.stacks + c.frames, 0);
	sqlite3_close(db);
	store_close(st);

	/* opening again migrates nothing and keeps the version */
	st = open_store();
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	sqlite3_close(db);
	store_close(st);
	store_close(NULL);
}
END_TEST

/* The connection sqlite3_auto_extension saw opened last. */
static sqlite3 *opened;

static int capture_db(sqlite3 *db, const char **err, const struct sqlite3_api_routines *api)
{
	(void)err;
	(void)api;
	opened = db;
	return SQLITE_OK;
}

static void assert_pragmas(sqlite3 *db)
{
	char mode[16];

	q_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	ck_assert_str_eq(mode, "wal");
	ck_assert_int_eq(q_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
	ck_assert_int_eq(q_int(db, "PRAGMA busy_timeout"), 5000);
	ck_assert_int_eq(q_int(db, "PRAGMA foreign_keys"), 1);
}

START_TEST(test_pragmas)
{
	struct store *a, *b;
	sqlite3 *da, *db;
	struct gen g = {42, 1000, 7, "/bin/app", 1000.0, "manual", 0, 4};
	struct snapshot *s;

	ck_assert_int_eq(sqlite3_auto_extension((void (*)(void))capture_db), SQLITE_OK);
	a = open_store();
	da = opened;
	/* every connection, not only the one that created the file */
	b = open_store();
	db = opened;
	sqlite3_cancel_auto_extension((void (*)(void))capture_db);
	ck_assert_ptr_nonnull(da);
	ck_assert_ptr_nonnull(db);
	ck_assert_ptr_ne(da, db);
	assert_pragmas(da);
	assert_pragmas(db);

	/* still in effect after the store used the connections */
	int64_t id = write_gen(a, &g);
	ck_assert_int_eq(store_read(b, id, &s), 0);
	snapshot_free(s);
	assert_pragmas(da);
	assert_pragmas(db);
	store_close(b);
	store_close(a);
}
END_TEST

struct busy_arg {
	struct store *st;
	int rc;
	double waited;
};

static void *busy_writer(void *p)
{
	struct busy_arg *a = p;
	struct gen g = {43, 1000, 7, "/bin/app", 1000.0, "manual", 0, 4};
	struct snapshot *s = gen(&g);
	int64_t id;
	double t0 = mono();

	a->rc = store_write(a->st, s, &id);
	a->waited = mono() - t0;
	snapshot_free(s);
	return NULL;
}

/* busy_timeout in action: a write waits for another writer instead of
 * failing with SQLITE_BUSY. */
START_TEST(test_busy_waits)
{
	struct store *st = open_store();
	sqlite3 *db = raw_open();
	struct busy_arg a = {st, -1, 0};
	pthread_t th;

	raw_exec(db, "BEGIN IMMEDIATE");
	ck_assert_int_eq(pthread_create(&th, NULL, busy_writer, &a), 0);
	usleep(300 * 1000);
	raw_exec(db, "COMMIT");
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(a.rc == 0, "store_write: %d %s", a.rc, store_errmsg(st));
	ck_assert_msg(a.waited >= 0.25, "waited %.3f s", a.waited);
	ck_assert_uint_eq(counts(st).snapshots, 1);
	sqlite3_close(db);
	store_close(st);
}
END_TEST

START_TEST(test_newer_version)
{
	struct store *st = open_store();
	sqlite3 *db;
	char mode[16];

	store_close(st);
	db = raw_open();
	raw_exec(db, "PRAGMA user_version = 9"); /* STORE_SCHEMA_VERSION + 1 */
	/* a journal mode store_open would change if it touched the file */
	q_text(db, "PRAGMA journal_mode = DELETE", mode, sizeof(mode));
	ck_assert_str_eq(mode, "delete");
	sqlite3_close(db);

	st = (struct store *)&st; /* must be reset */
	ck_assert_int_eq(store_open(dbpath, &st, NULL, 0), -EPROTO);
	ck_assert_ptr_null(st);
	/* left exactly as it was */
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA user_version"), 9);
	q_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	ck_assert_str_eq(mode, "delete");
	sqlite3_close(db);
}
END_TEST

/* A database of schema version 6, whose CHECK admits no "detach" reason,
 * is migrated on open (its definition edited in place): what it held reads
 * as before, the check still refuses a reason it does not know, and a
 * snapshot of reason "detach" (memtracectl detach) is stored and read. */
START_TEST(test_migrate_detach_reason)
{
	struct gen g = {42, 1000, 7, "/bin/app", 1000.0, "exit", 0, 4};
	struct gen d = {42, 1000, 7, "/bin/app", 1001.0, "detach", 4, 3};
	struct store *st = open_store();
	struct snapshot *s = gen(&g), *sd = gen(&d);
	sqlite3 *db;
	int64_t old_id = write_gen(st, &g), id = 0;

	store_close(st);
	db = raw_open();
	raw_exec(db, "PRAGMA writable_schema = ON;"
	             "UPDATE sqlite_schema SET sql = replace(sql, '''exit'', ''detach'', "
	             "''shutdown''', '''exit'', ''shutdown''') WHERE name = 'snapshot';"
	             "PRAGMA writable_schema = OFF;"
	             "PRAGMA user_version = 6");
	sqlite3_close(db);
	/* The version-6 definition refuses the reason, as an older daemon's. */
	db = raw_open();
	ck_assert_int_ne(sqlite3_exec(db,
	                              "INSERT INTO snapshot(process_id, taken_at, reason, current,"
	                              " peak, blocks, allocations, frees, lost_events)"
	                              " SELECT process_id, 1, 'detach', 0, 0, 0, 0, 0, 0"
	                              " FROM snapshot LIMIT 1",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);

	st = open_store();
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	ck_assert_int_eq(sqlite3_exec(db, "UPDATE snapshot SET reason = 'other'", NULL, NULL, NULL),
	                 SQLITE_CONSTRAINT);
	sqlite3_close(db);
	assert_reads_as(st, old_id, s);
	ck_assert_int_eq(store_write(st, sd, &id), 0);
	assert_reads_as(st, id, sd);
	snapshot_free(s);
	snapshot_free(sd);
	store_close(st);
}
END_TEST

/* The frames of g's snapshot with a separate debug file's name on every
 * third one's twin: trace k's first frame is replaced by a copy of itself
 * that names "/usr/lib/debug/<module>.debug" (frame.h's `symbols`), so
 * frames that differ only by it are in one snapshot. */
static struct snapshot *gen_symbols(const struct gen *g)
{
	struct snapshot *s = gen(g);
	char buf[128];

	for (size_t k = 0; k < s->ntraces; k += 3) {
		struct snapshot_trace *t = &s->traces[k];
		if (t->nframes == 0)
			continue;
		struct frame_info f = s->frames[t->frames[0]];
		snprintf(buf, sizeof buf, "/usr/lib/debug%s.debug", f.module);
		f.symbols = buf;
		t->frames[0] = snapshot_intern_frame(s, &f);
	}
	return s;
}

/* Frames keep the debug file that named them (schema 8), as a part of
 * what makes a frame distinct; a version-7 database is migrated on open
 * with its frames and their ids kept. */
START_TEST(test_migrate_frame_symbols)
{
	struct gen g = {42, 1000, 7, "/bin/app", 1000.0, "exit", 0, 9};
	struct gen g2 = {43, 1000, 8, "/bin/app", 1001.0, "exit", 3, 9};
	struct store *st = open_store();
	struct snapshot *s = gen(&g), *sd = gen_symbols(&g2);
	sqlite3 *db;
	int64_t old_id = write_gen(st, &g), id = 0;
	int nframes;

	store_close(st);
	db = raw_open();
	nframes = q_int(db, "SELECT count(*) FROM frame");
	/* Back to version 7's frame table, as an older memtraced made it. */
	raw_exec(db,
	         "CREATE TABLE frame_old ("
	         " id INTEGER PRIMARY KEY,"
	         " filename TEXT NOT NULL,"
	         " lineno INTEGER NOT NULL,"
	         " function TEXT NOT NULL,"
	         " module TEXT NOT NULL,"
	         " UNIQUE (filename, lineno, function, module));"
	         "INSERT INTO frame_old SELECT id, filename, lineno, function, module FROM frame;"
	         "DROP TABLE frame;"
	         "ALTER TABLE frame_old RENAME TO frame;"
	         "PRAGMA user_version = 7");
	sqlite3_close(db);

	st = open_store();
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	ck_assert_int_eq(q_int(db, "SELECT count(*) FROM frame WHERE symbols = ''"), nframes);
	ck_assert_int_eq(q_int(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
	/* The old table's pages went back to the file system. */
	ck_assert_int_eq(q_int(db, "PRAGMA freelist_count"), 0);
	sqlite3_close(db);
	assert_reads_as(st, old_id, s);
	/* New snapshots keep each frame's debug file. */
	ck_assert_int_eq(store_write(st, sd, &id), 0);
	assert_reads_as(st, id, sd);
	db = raw_open();
	ck_assert_int_eq(
	    q_int(db, "SELECT count(*) FROM frame WHERE symbols LIKE '/usr/lib/debug/%'"), 3);
	sqlite3_close(db);
	snapshot_free(s);
	snapshot_free(sd);
	store_close(st);
}
END_TEST

/* A database of schema version 1, whose snapshots have no sample rate,
 * is migrated on open: its snapshots read as every allocation traced, and
 * new ones keep their rate, in reads and in the list. */
START_TEST(test_migrate_sample_bytes)
{
	struct gen g = {42, 1000, 7, "/bin/app", 1000.0, "manual", 0, 4};
	struct store *st = open_store();
	struct snapshot *s = gen(&g);
	sqlite3 *db;
	cJSON *arr;
	int64_t old_id = write_gen(st, &g), id = 0;

	store_close(st);
	/* Back to version 1's schema, as an older memtraced left it. */
	db = raw_open();
	raw_exec(db, "ALTER TABLE trace DROP COLUMN peak_count;"
	             "ALTER TABLE trace DROP COLUMN peak_size;"
	             "ALTER TABLE trace DROP COLUMN temporary;"
	             "ALTER TABLE trace DROP COLUMN allocated;"
	             "DROP TABLE deleted;"
	             "DROP INDEX snapshot_uid;"
	             "ALTER TABLE snapshot DROP COLUMN bytes;"
	             "ALTER TABLE snapshot DROP COLUMN uid;"
	             "ALTER TABLE snapshot DROP COLUMN sample_bytes;"
	             "PRAGMA user_version = 1");
	sqlite3_close(db);

	st = open_store();
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	sqlite3_close(db);
	assert_reads_as_gen_v4(st, old_id, &g);
	s->sample_bytes = 65536;
	ck_assert_int_eq(store_write(st, s, &id), 0);
	assert_reads_as(st, id, s);
	ck_assert_int_eq(store_list(st, 0, -1, &arr), 0);
	ck_assert_int_eq(cJSON_GetArraySize(arr), 2);
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "sampled")));
	const cJSON *sampled = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 1), "sampled");
	ck_assert(cJSON_IsObject(sampled));
	ck_assert(cJSON_GetObjectItem(sampled, "rate")->valuedouble == 65536);
	cJSON_Delete(arr);
	snapshot_free(s);
	store_close(st);
	check_clean();
}
END_TEST

START_TEST(test_open_errors)
{
	struct store *st = NULL;
	char path[PATH_MAX + 64], why[1024];
	struct stat sb;
	FILE *f;

	/* not a database: SQLite's own word for it, with the file's name and
	 * what to do */
	f = fopen(dbpath, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database\n", f);
	fclose(f);
	ck_assert_int_eq(store_open(dbpath, &st, why, sizeof why), -EIO);
	ck_assert_ptr_null(st);
	ck_assert_msg(strstr(why, dbpath) != NULL && strstr(why, "not a database") != NULL, "%s",
	              why);
	unlink(dbpath);
	/* a directory that does not exist */
	snprintf(path, sizeof(path), "%s/missing/%s", dir, STORE_FILE);
	ck_assert_int_eq(store_open(path, &st, why, sizeof why), -EIO);
	ck_assert_ptr_null(st);
	ck_assert_msg(strstr(why, path) != NULL, "%s", why);
	/* something that is not a file: never followed, never opened */
	ck_assert_int_eq(mkfifo(dbpath, 0600), 0);
	ck_assert_int_eq(store_open(dbpath, &st, why, sizeof why), -EIO);
	ck_assert_msg(strstr(why, "not a regular file") != NULL, "%s", why);
	unlink(dbpath);
	ck_assert_int_eq(symlink("/etc/hostname", dbpath), 0);
	ck_assert_int_eq(store_open(dbpath, &st, why, sizeof why), -EIO);
	ck_assert_msg(strstr(why, "symbolic link") != NULL, "%s", why);
	unlink(dbpath);
	/* created private; an older one made private */
	st = open_store();
	store_close(st);
	ck_assert_int_eq(stat(dbpath, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);
	ck_assert_int_eq(chmod(dbpath, 0644), 0);
	st = open_store();
	store_close(st);
	ck_assert_int_eq(stat(dbpath, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);
	check_clean();
}
END_TEST

/* ---- writing and reading ---- */

/* Every field at an edge: counters and addresses past INT64_MAX, an empty
 * traceback, an inlined chain (frames sharing an address), strings with
 * quotes, newlines and UTF-8, a NULL argv, the largest line number. */
static struct snapshot *edge_snapshot(void)
{
	struct snapshot *s = snapshot_new();
	const struct frame_info fr[] = {
	    {"/src/ä.c", UINT32_MAX, "ns::f<\"x\">(int)\n", "/usr/bin/app", NULL, NULL},
	    {"/src/b.c", 0, "", "[unknown]", NULL, NULL},
	    {"app+0x1234", 0, "app+0x1234", "/usr/bin/app", NULL, NULL},
	};
	uint32_t idx[3];

	s->pid = 4242;
	s->uid = 4294967294u;
	s->start_time = UINT64_MAX - 1;
	s->exe = xstrdup("/usr/bin/app with space");
	s->argv = NULL;
	s->taken_at = 1700000000.123456;
	snprintf(s->reason, sizeof(s->reason), "exit");
	s->current = UINT64_MAX;
	s->peak = UINT64_C(1) << 63;
	s->blocks = 3;
	s->allocations = 0;
	s->frees = 1;
	s->lost_events = 99;
	s->sample_bytes = UINT64_MAX; /* stored as -1: two's complement */
	for (int i = 0; i < 3; i++)
		idx[i] = snapshot_intern_frame(s, &fr[i]);
	s->ntraces = 3;
	s->traces = xcalloc(3, sizeof(*s->traces));
	/* inlined: frames 0 and 1 share the address */
	s->traces[0].nframes = 3;
	s->traces[0].frames = xcalloc(3, sizeof(uint32_t));
	s->traces[0].addrs = xcalloc(3, sizeof(uint64_t));
	s->traces[0].frames[0] = idx[0];
	s->traces[0].frames[1] = idx[1];
	s->traces[0].frames[2] = idx[2];
	s->traces[0].addrs[0] = UINT64_C(0xffffffffff600000);
	s->traces[0].addrs[1] = UINT64_C(0xffffffffff600000);
	s->traces[0].addrs[2] = 1;
	s->traces[0].size = UINT64_MAX - 5;
	s->traces[0].count = 1;
	s->traces[0].allocations = UINT64_MAX;
	/* unknown traceback */
	s->traces[1].size = 100;
	s->traces[1].count = 2;
	s->traces[1].allocations = 2;
	/* same frames as trace 0 at other addresses: a distinct stack */
	s->traces[2].nframes = 1;
	s->traces[2].frames = xcalloc(1, sizeof(uint32_t));
	s->traces[2].addrs = xcalloc(1, sizeof(uint64_t));
	s->traces[2].frames[0] = idx[0];
	s->traces[2].addrs[0] = 0x401000;
	s->traces[2].size = 7;
	s->traces[2].count = 1;
	s->traces[2].allocations = 1;
	s->nlargest = 2;
	s->largest = xcalloc(2, sizeof(*s->largest));
	s->largest[0] = (struct snapshot_block){UINT64_MAX - 15, UINT64_MAX - 5, 0};
	s->largest[1] = (struct snapshot_block){0x10, 50, 1};
	return s;
}

START_TEST(test_round_trip)
{
	struct store *st = open_store();
	struct snapshot *s = edge_snapshot();
	int64_t id = 0;
	struct store_counts c;

	ck_assert_int_eq(store_write(st, s, &id), 0);
	ck_assert_int_gt(id, 0);
	assert_reads_as(st, id, s);
	c = counts(st);
	ck_assert_uint_eq(c.processes, 1);
	ck_assert_uint_eq(c.snapshots, 1);
	ck_assert_uint_eq(c.stacks, 3);
	ck_assert_uint_eq(c.frames, 3);
	snapshot_free(s);

	/* a generated one, with argv */
	struct gen g = {100, 1000, 55, "/usr/bin/gen", 1234.5, "periodic", 3, 40};
	id = write_gen(st, &g);
	assert_reads_as_gen(st, id, &g);

	/* a snapshot with no traces */
	struct gen e = {101, 1000, 56, "/usr/bin/empty", 1235.0, "shutdown", 0, 0};
	id = write_gen(st, &e);
	assert_reads_as_gen(st, id, &e);
	store_close(st);
	check_clean();
}
END_TEST

START_TEST(test_read_missing)
{
	struct store *st = open_store();
	struct snapshot *s = (struct snapshot *)&s;
	uid_t uid;

	ck_assert_int_eq(store_read(st, 1, &s), -ENOENT);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(store_owner(st, 1, &uid), -ENOENT);
	ck_assert(strlen(store_errmsg(st)) > 0);
	store_close(st);
}
END_TEST

START_TEST(test_invalid)
{
	struct store *st = open_store();
	struct gen g = {100, 1000, 55, "/usr/bin/gen", 1234.5, "periodic", 3, 10};
	struct snapshot *s = gen(&g);
	int64_t id = -7;
	struct store_counts c;

	snprintf(s->reason, sizeof(s->reason), "live");
	ck_assert_int_eq(store_write(st, s, &id), -EINVAL);
	ck_assert(strstr(store_errmsg(st), "live") != NULL);
	snprintf(s->reason, sizeof(s->reason), "manual");
	s->traces[4].frames[0] = (uint32_t)s->nframes;
	ck_assert_int_eq(store_write(st, s, &id), -EINVAL);
	s->traces[4].frames[0] = 0;
	s->largest[1].trace = (uint32_t)s->ntraces;
	ck_assert_int_eq(store_write(st, s, &id), -EINVAL);
	s->largest[1].trace = 0;
	s->taken_at = NAN;
	ck_assert_int_eq(store_write(st, s, &id), -EINVAL);
	ck_assert_int_eq(id, -7);
	c = counts(st);
	ck_assert_uint_eq(c.processes + c.snapshots + c.stacks + c.frames, 0);
	/* and the store still works */
	s->taken_at = 1.0;
	ck_assert_int_eq(store_write(st, s, &id), 0);
	ck_assert_uint_eq(counts(st).snapshots, 1);
	snapshot_free(s);
	store_close(st);
}
END_TEST

/* Two traces with one traceback (equal frames at different indexes, equal
 * addresses) become one row with the sums. */
START_TEST(test_merge)
{
	struct store *st = open_store();
	struct gen g = {100, 1000, 55, "/usr/bin/gen", 1234.5, "periodic", 0, 3};
	struct snapshot *s = gen(&g), *got;
	struct snapshot_trace *t;
	int64_t id;

	/* a duplicate of frame 0 at a new index, as a hand-made file may hold */
	s->frames = xreallocarray(s->frames, s->nframes + 1, sizeof(*s->frames));
	s->frames[s->nframes].filename = xstrdup(s->frames[0].filename);
	s->frames[s->nframes].lineno = s->frames[0].lineno;
	s->frames[s->nframes].function = xstrdup(s->frames[0].function);
	s->frames[s->nframes].module = xstrdup(s->frames[0].module);
	s->frames[s->nframes].caller = NULL;
	s->frames[s->nframes].symbols = NULL;
	s->nframes++;
	/* trace 3: trace 0 again through the duplicate frame */
	s->traces = xreallocarray(s->traces, 4, sizeof(*s->traces));
	t = &s->traces[3];
	*t = s->traces[0];
	t->frames = xcalloc(t->nframes, sizeof(uint32_t));
	t->addrs = xcalloc(t->nframes, sizeof(uint64_t));
	memcpy(t->frames, s->traces[0].frames, t->nframes * sizeof(uint32_t));
	memcpy(t->addrs, s->traces[0].addrs, t->nframes * sizeof(uint64_t));
	ck_assert_uint_eq(t->frames[0], 0);
	t->frames[0] = (uint32_t)s->nframes - 1;
	t->size = 1000;
	t->count = 10;
	t->allocations = 20;
	t->allocated = 3000;
	t->temporary = 9;
	s->ntraces = 4;
	s->largest[0].trace = 3;

	ck_assert_int_eq(store_write(st, s, &id), 0);
	ck_assert_int_eq(store_read(st, id, &got), 0);
	ck_assert_uint_eq(got->ntraces, 3);
	assert_same(s, got); /* canon() sums equal tracebacks */
	/* and explicitly: the merged trace holds both */
	uint64_t h = trace_hash(s, &s->traces[0]);
	int found = 0;
	for (size_t i = 0; i < got->ntraces; i++) {
		if (trace_hash(got, &got->traces[i]) != h)
			continue;
		found++;
		ck_assert_uint_eq(got->traces[i].size, s->traces[0].size + 1000);
		ck_assert_uint_eq(got->traces[i].count, s->traces[0].count + 10);
		ck_assert_uint_eq(got->traces[i].allocations, s->traces[0].allocations + 20);
		ck_assert_uint_eq(got->traces[i].allocated, s->traces[0].allocated + 3000);
		ck_assert_uint_eq(got->traces[i].temporary, s->traces[0].temporary + 9);
		ck_assert_uint_eq(got->largest[0].trace, i);
	}
	ck_assert_int_eq(found, 1);
	snapshot_free(got);
	snapshot_free(s);
	store_close(st);
	check_clean();
}
END_TEST

START_TEST(test_sharing)
{
	struct store *st = open_store();
	struct gen g = {100, 1000, 55, "/usr/bin/gen", 1000.0, "periodic", 0, 50};
	struct store_counts a, b;
	struct expect *e = xcalloc(1, sizeof(*e));
	int64_t id1, id2;

	id1 = write_gen(st, &g);
	a = counts(st);
	expect_add(e, 0, &g);
	ck_assert_uint_eq(a.processes, 1);
	ck_assert_uint_eq(a.snapshots, 1);
	ck_assert_uint_eq(a.stacks, e->stacks);
	ck_assert_uint_eq(a.frames, e->frames);

	/* the same snapshot again: one more snapshot, nothing else */
	id2 = write_gen(st, &g);
	ck_assert_int_ne(id1, id2);
	b = counts(st);
	ck_assert_uint_eq(b.processes, a.processes);
	ck_assert_uint_eq(b.snapshots, a.snapshots + 1);
	ck_assert_uint_eq(b.stacks, a.stacks);
	ck_assert_uint_eq(b.frames, a.frames);

	/* a later snapshot, half of it new: only the new stacks and frames */
	struct gen g2 = g;
	g2.taken_at = 1060.0;
	g2.first = 25;
	write_gen(st, &g2);
	expect_add(e, 0, &g2);
	b = counts(st);
	ck_assert_uint_eq(b.processes, 1);
	ck_assert_uint_eq(b.snapshots, 3);
	ck_assert_uint_eq(b.stacks, e->stacks);
	ck_assert_uint_eq(b.frames, e->frames);

	/* another process running the same code elsewhere: frames shared,
	 * stacks not (other addresses) */
	struct gen h = g;
	h.pid = 200;
	write_gen(st, &h);
	expect_add(e, 1, &h);
	b = counts(st);
	ck_assert_uint_eq(b.processes, 2);
	ck_assert_uint_eq(b.stacks, e->stacks);
	ck_assert_uint_eq(b.frames, e->frames);

	/* the same pid with another start time is another process */
	struct gen r = g;
	r.start = 56;
	write_gen(st, &r);
	ck_assert_uint_eq(counts(st).processes, 3);
	ck_assert_uint_eq(counts(st).stacks, e->stacks);

	assert_reads_as_gen(st, id1, &g);
	assert_reads_as_gen(st, id2, &g);
	free(e);
	store_close(st);
	check_clean();
}
END_TEST

/* ---- list, latest, owner ---- */

static void assert_summary(const cJSON *o, int64_t id, const struct gen *g)
{
	struct snapshot *s = gen(g);

	ck_assert_int_eq((int64_t)cJSON_GetObjectItem(o, "id")->valuedouble, id);
	ck_assert_int_eq((int)cJSON_GetObjectItem(o, "pid")->valuedouble, g->pid);
	ck_assert_str_eq(cJSON_GetObjectItem(o, "exe")->valuestring, g->exe);
	ck_assert(cJSON_GetObjectItem(o, "taken_at")->valuedouble == g->taken_at);
	ck_assert_str_eq(cJSON_GetObjectItem(o, "reason")->valuestring, g->reason);
	ck_assert(cJSON_GetObjectItem(o, "current")->valuedouble == (double)s->current);
	ck_assert(cJSON_GetObjectItem(o, "peak")->valuedouble == (double)s->peak);
	ck_assert(cJSON_GetObjectItem(o, "blocks")->valuedouble == (double)s->blocks);
	snapshot_free(s);
}

static void assert_list(struct store *st, pid_t pid, long uid, const int64_t *ids,
                        const struct gen *const *gens, size_t n)
{
	cJSON *arr = NULL;

	ck_assert_int_eq(store_list(st, pid, uid, &arr), 0);
	ck_assert(cJSON_IsArray(arr));
	ck_assert_int_eq(cJSON_GetArraySize(arr), (int)n);
	for (size_t i = 0; i < n; i++)
		assert_summary(cJSON_GetArrayItem(arr, (int)i), ids[i], gens[i]);
	cJSON_Delete(arr);
}

START_TEST(test_list_latest_owner)
{
	struct store *st = open_store();
	/* written out of time order on purpose: the list is oldest first */
	struct gen g[] = {
	    {100, 1000, 1, "/bin/a", 300.0, "periodic", 0, 3}, /* 0 */
	    {100, 1000, 1, "/bin/a", 100.0, "periodic", 0, 3}, /* 1 */
	    {200, 2000, 9, "/bin/b", 200.0, "manual", 0, 2},   /* 2 */
	    {100, 1000, 1, "/bin/a", 400.0, "exit", 1, 3},     /* 3 */
	    {100, 1000, 1, "/bin/a", 500.0, "manual", 1, 3},   /* 4: after its exit */
	    {300, 2000, 4, "/bin/c", 450.0, "shutdown", 0, 1}, /* 5 */
	};
	int64_t id[6], got, want[6];
	const struct gen *wg[6];
	uid_t uid;

	for (int i = 0; i < 6; i++)
		id[i] = write_gen(st, &g[i]);

	/* all: by taken_at 100 (1), 200 (2), 300 (0), 400 (3), 450 (5), 500 (4) */
	const int all[] = {1, 2, 0, 3, 5, 4};
	for (int i = 0; i < 6; i++) {
		want[i] = id[all[i]];
		wg[i] = &g[all[i]];
	}
	assert_list(st, 0, -1, want, wg, 6);
	/* pid 100 */
	const int p100[] = {1, 0, 3, 4};
	for (int i = 0; i < 4; i++) {
		want[i] = id[p100[i]];
		wg[i] = &g[p100[i]];
	}
	assert_list(st, 100, -1, want, wg, 4);
	assert_list(st, 100, 1000, want, wg, 4);
	assert_list(st, 100, 2000, want, wg, 0);
	/* uid 2000 */
	const int u2000[] = {2, 5};
	for (int i = 0; i < 2; i++) {
		want[i] = id[u2000[i]];
		wg[i] = &g[u2000[i]];
	}
	assert_list(st, 0, 2000, want, wg, 2);
	assert_list(st, 999, -1, want, wg, 0);

	/* latest */
	ck_assert_int_eq(store_latest(st, 100, -1, 0, &got), 0);
	ck_assert_int_eq(got, id[4]);
	ck_assert_int_eq(store_latest(st, 100, -1, 1, &got), 0);
	ck_assert_int_eq(got, id[3]);
	ck_assert_int_eq(store_latest(st, 100, 1000, 1, &got), 0);
	ck_assert_int_eq(got, id[3]);
	ck_assert_int_eq(store_latest(st, 100, 2000, 1, &got), -ENOENT);
	ck_assert_int_eq(store_latest(st, 200, -1, 1, &got), 0); /* no exit: newest */
	ck_assert_int_eq(got, id[2]);
	ck_assert_int_eq(store_latest(st, 999, -1, 0, &got), -ENOENT);

	/* pid 100 reused by a later process: its newest wins, and the exit
	 * snapshot of the earlier process is not brought back */
	struct gen reuse = {100, 1000, 77, "/bin/z", 600.0, "periodic", 0, 2};
	int64_t rid = write_gen(st, &reuse);
	ck_assert_int_eq(store_latest(st, 100, -1, 1, &got), 0);
	ck_assert_int_eq(got, rid);
	ck_assert_int_eq(store_latest(st, 100, -1, 0, &got), 0);
	ck_assert_int_eq(got, rid);

	/* owner */
	ck_assert_int_eq(store_owner(st, id[2], &uid), 0);
	ck_assert_uint_eq(uid, 2000);
	ck_assert_int_eq(store_owner(st, id[0], &uid), 0);
	ck_assert_uint_eq(uid, 1000);
	ck_assert_int_eq(store_owner(st, rid + 100, &uid), -ENOENT);
	store_close(st);
}
END_TEST

/* ---- retention ---- */

/* The snapshot ids the store lists, in its order. */
static size_t listed(struct store *st, int64_t *ids, size_t max)
{
	cJSON *arr = NULL, *o;
	size_t n = 0;

	ck_assert_int_eq(store_list(st, 0, -1, &arr), 0);
	cJSON_ArrayForEach(o, arr)
	{
		ck_assert_uint_lt(n, max);
		ids[n++] = (int64_t)cJSON_GetObjectItem(o, "id")->valuedouble;
	}
	cJSON_Delete(arr);
	return n;
}

/* After retention: exactly the snapshots in keep[] remain, each reads back
 * as generated, and the counts of stacks, frames and processes are what
 * those snapshots use. */
static void assert_kept(struct store *st, const struct gen *g, const int64_t *ids, const int *slot,
                        const bool *keep, size_t n)
{
	struct expect *e = xcalloc(1, sizeof(*e));
	int64_t got[64], want[64];
	size_t ngot, nwant = 0, nproc = 0;
	struct store_counts c;
	pid_t seen[8];
	int nseen = 0;

	for (size_t i = 0; i < n; i++) {
		if (!keep[i])
			continue;
		want[nwant++] = ids[i];
		expect_add(e, slot[i], &g[i]);
		bool dup = false;
		for (int k = 0; k < nseen; k++)
			dup |= seen[k] == slot[i];
		if (!dup)
			seen[nseen++] = slot[i];
	}
	nproc = (size_t)nseen;
	ngot = listed(st, got, 64);
	qsort(got, ngot, sizeof(*got), cmp_i64);
	qsort(want, nwant, sizeof(*want), cmp_i64);
	ck_assert_uint_eq(ngot, nwant);
	for (size_t i = 0; i < nwant; i++)
		ck_assert_int_eq(got[i], want[i]);
	c = counts(st);
	ck_assert_uint_eq(c.snapshots, nwant);
	ck_assert_uint_eq(c.processes, nproc);
	ck_assert_uint_eq(c.stacks, e->stacks);
	ck_assert_uint_eq(c.frames, e->frames);
	for (size_t i = 0; i < n; i++) {
		struct snapshot *s;
		if (keep[i])
			assert_reads_as_gen(st, ids[i], &g[i]);
		else
			ck_assert_int_eq(store_read(st, ids[i], &s), -ENOENT);
	}
	free(e);
	check_clean();
}

START_TEST(test_retain_count)
{
	struct store *st = open_store();
	const pid_t pids[3] = {100, 200, 300};
	struct gen g[15];
	int64_t id[15];
	int slot[15];
	bool keep[15];
	size_t deleted = 99;
	double t0 = now() - 3600;

	/* three processes, five snapshots each over overlapping stack windows
	 * (snapshot i uses stacks 3i .. 3i+5), written interleaved */
	for (int i = 0; i < 5; i++) {
		for (int p = 0; p < 3; p++) {
			int k = p * 5 + i;
			g[k] = (struct gen){pids[p],         1000,       1,      "/bin/app",
			                    t0 + i * 60 + p, "periodic", 3u * i, 6};
			slot[k] = p;
			id[k] = write_gen(st, &g[k]);
		}
	}
	for (int k = 0; k < 15; k++)
		keep[k] = true;
	assert_kept(st, g, id, slot, keep, 15);

	/* no limits: nothing goes */
	ck_assert_int_eq(store_retain(st, 0, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 0);
	assert_kept(st, g, id, slot, keep, 15);

	/* limit above what there is: nothing goes */
	ck_assert_int_eq(store_retain(st, 5, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 0);

	/* two per process: the newest two of each */
	ck_assert_int_eq(store_retain(st, 2, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 9);
	for (int k = 0; k < 15; k++)
		keep[k] = k % 5 >= 3;
	assert_kept(st, g, id, slot, keep, 15);

	/* one: the newest of each */
	ck_assert_int_eq(store_retain(st, 1, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 3);
	for (int k = 0; k < 15; k++)
		keep[k] = k % 5 == 4;
	assert_kept(st, g, id, slot, keep, 15);

	/* idempotent */
	ck_assert_int_eq(store_retain(st, 1, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 0);
	assert_kept(st, g, id, slot, keep, 15);
	store_close(st);
}
END_TEST

START_TEST(test_retain_age)
{
	struct store *st = open_store();
	const double day = 86400, t = now();
	/* process 0 (pid 100) spans 10 days; process 1 (pid 200) is all old;
	 * process 2 (pid 300) all recent */
	struct gen g[] = {
	    {100, 1000, 1, "/bin/a", t - 10 * day, "periodic", 0, 6},
	    {100, 1000, 1, "/bin/a", t - 6 * day, "periodic", 3, 6},
	    {100, 1000, 1, "/bin/a", t - 4 * day, "periodic", 6, 6},
	    {100, 1000, 1, "/bin/a", t - 2 * day, "periodic", 9, 6},
	    {100, 1000, 1, "/bin/a", t - 1 * day, "manual", 12, 6},
	    {200, 1000, 2, "/bin/b", t - 9 * day, "periodic", 0, 8},
	    {200, 1000, 2, "/bin/b", t - 8 * day, "exit", 2, 8},
	    {300, 2000, 3, "/bin/c", t - 0.5 * day, "periodic", 0, 4},
	    {300, 2000, 3, "/bin/c", t - 0.1 * day, "periodic", 4, 4},
	};
	const size_t n = sizeof(g) / sizeof(g[0]);
	const int slot[] = {0, 0, 0, 0, 0, 1, 1, 2, 2};
	int64_t id[9];
	bool keep[9];
	size_t deleted = 99;

	for (size_t i = 0; i < n; i++) {
		id[i] = write_gen(st, &g[i]);
		keep[i] = true;
	}
	assert_kept(st, g, id, slot, keep, n);

	/* 20 days: nothing is that old */
	ck_assert_int_eq(store_retain(st, 0, 20, &deleted), 0);
	ck_assert_uint_eq(deleted, 0);

	/* 3 days: A's three oldest and all of B (whose process row goes) */
	ck_assert_int_eq(store_retain(st, 0, 3, &deleted), 0);
	ck_assert_uint_eq(deleted, 5);
	for (size_t i = 0; i < n; i++)
		keep[i] = g[i].taken_at >= t - 3 * day;
	assert_kept(st, g, id, slot, keep, n);

	/* both limits: at most one per process and none older than 1.5 days */
	ck_assert_int_eq(store_retain(st, 1, 1.5, &deleted), 0);
	ck_assert_uint_eq(deleted, 2); /* A at -2 d (age), C at -0.5 d (count) */
	for (size_t i = 0; i < n; i++)
		keep[i] = i == 4 || i == 8;
	assert_kept(st, g, id, slot, keep, n);

	ck_assert_int_eq(store_retain(st, 0, -1, &deleted), -EINVAL);
	ck_assert_int_eq(store_retain(st, 0, NAN, &deleted), -EINVAL);

	/* everything old: the store empties completely */
	ck_assert_int_eq(store_retain(st, 0, 1e-9, &deleted), 0);
	ck_assert_uint_eq(deleted, 2);
	for (size_t i = 0; i < n; i++)
		keep[i] = false;
	assert_kept(st, g, id, slot, keep, n);
	store_close(st);
}
END_TEST

/* Retention interleaved with writes that reuse the stacks being deleted:
 * a stack freed and written again gets a new row, frames stay exact. */
START_TEST(test_retain_then_reuse)
{
	struct store *st = open_store();
	struct gen a = {100, 1000, 1, "/bin/a", now() - 100, "periodic", 0, 10};
	struct gen b = {100, 1000, 1, "/bin/a", now() - 50, "periodic", 20, 10};
	struct gen c = {100, 1000, 1, "/bin/a", now() - 10, "periodic", 0, 10};
	struct gen g[3] = {a, b, c};
	int64_t id[3];
	int slot[3] = {0, 0, 0};
	bool keep[3] = {false, true, false};
	size_t deleted;

	id[0] = write_gen(st, &a);
	id[1] = write_gen(st, &b);
	ck_assert_int_eq(store_retain(st, 1, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 1);
	id[2] = 0;
	assert_kept(st, g, id, slot, keep, 2);
	id[2] = write_gen(st, &c);
	keep[2] = true;
	assert_kept(st, g, id, slot, keep, 3);
	ck_assert_int_eq(store_retain(st, 1, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 1);
	keep[1] = false;
	assert_kept(st, g, id, slot, keep, 3);
	store_close(st);
}
END_TEST

/* ---- persistence ---- */

START_TEST(test_reopen)
{
	struct store *st = open_store();
	struct gen g[] = {
	    {100, 1000, 1, "/bin/a", 100.0, "periodic", 0, 30},
	    {100, 1000, 1, "/bin/a", 160.0, "exit", 10, 30},
	    {200, 2000, 2, "/bin/b", 170.0, "manual", 0, 5},
	};
	int64_t id[3], again;
	struct store_counts before, after;

	for (int i = 0; i < 3; i++)
		id[i] = write_gen(st, &g[i]);
	before = counts(st);
	store_close(st);

	st = open_store();
	after = counts(st);
	ck_assert_uint_eq(after.processes, before.processes);
	ck_assert_uint_eq(after.snapshots, before.snapshots);
	ck_assert_uint_eq(after.stacks, before.stacks);
	ck_assert_uint_eq(after.frames, before.frames);
	for (int i = 0; i < 3; i++)
		assert_reads_as_gen(st, id[i], &g[i]);
	ck_assert_int_eq(store_latest(st, 100, -1, 1, &again), 0);
	ck_assert_int_eq(again, id[1]);
	/* writes after the reopen still share the stored stacks */
	again = write_gen(st, &g[1]);
	ck_assert_int_gt(again, id[2]);
	after = counts(st);
	ck_assert_uint_eq(after.snapshots, before.snapshots + 1);
	ck_assert_uint_eq(after.stacks, before.stacks);
	ck_assert_uint_eq(after.frames, before.frames);
	store_close(st);
	check_clean();
}
END_TEST

/* ---- the bounds ---- */

/* The bytes a JSON array of args takes as text, by RFC 8259's escapes (the
 * two-character ones for quote, backslash, \b \f \n \r \t, six for any
 * other byte below 0x20): the store's charge for arguments. */
static uint64_t json_array_len(const char *const *args)
{
	uint64_t n = 2; /* [] */

	for (int i = 0; args[i] != NULL; i++) {
		n += 2 + (i > 0); /* the quotes, the comma */
		for (const unsigned char *c = (const unsigned char *)args[i]; *c != 0; c++)
			n += *c == '"' || *c == '\\' || *c == '\b' || *c == '\f' || *c == '\n' ||
			             *c == '\r' || *c == '\t'
			         ? 2
			     : *c < 0x20 ? 6
			                 : 1;
	}
	return n;
}

/* The charge of gen(g), from store.h's definition and the generator's own
 * parameters (the file names of frame_of, the arguments of gen). */
static uint64_t charge_of(const struct gen *g)
{
	static const char *const args[] = {"app", "--flag", "arg with \"quotes\"", "", NULL};
	uint64_t c = STORE_CHARGE_SNAPSHOT + strlen(g->exe);
	unsigned top = g->first + g->n + 4;
	bool *used = xcalloc(top, sizeof(*used));
	char bufs[3][64];

	c += json_array_len(args);
	for (unsigned k = 0; k < g->n; k++) {
		unsigned q = g->first + k;
		c += STORE_CHARGE_TRACE + STORE_CHARGE_FRAME_REF * depth_of(q);
		for (unsigned r = 0; r < depth_of(q); r++)
			used[q + r] = true;
	}
	if (g->n > 0)
		c += 3 * STORE_CHARGE_LARGEST;
	for (unsigned f = 0; f < top; f++) {
		if (!used[f])
			continue;
		frame_of(f, bufs);
		c += STORE_CHARGE_FRAME + strlen(bufs[0]) + strlen(bufs[1]) + strlen(bufs[2]);
	}
	free(used);
	return c;
}

static struct store_uid_usage uid_usage(struct store *st, uid_t uid)
{
	struct store_usage u;
	struct store_uid_usage r = {.uid = uid};

	store_usage(st, &u);
	for (size_t i = 0; i < u.nuids; i++)
		if (u.uids[i].uid == uid)
			r = u.uids[i];
	store_usage_free(&u);
	return r;
}

/* The figures against the file, read through another connection: per uid
 * and in all, bytes (the column) and snapshots. */
static void assert_usage_is_file(struct store *st)
{
	sqlite3 *db = raw_open();
	struct store_usage u;
	char sql[160];

	store_usage(st, &u);
	ck_assert_uint_eq(u.bytes,
	                  (uint64_t)q_int(db, "SELECT coalesce(sum(bytes), 0) FROM snapshot"));
	ck_assert_uint_eq(u.snapshots, (uint64_t)q_int(db, "SELECT count(*) FROM snapshot"));
	ck_assert_int_eq(q_int(db,
	                       "SELECT count(*) FROM snapshot s JOIN process p ON"
	                       " p.id = s.process_id WHERE s.uid IS NOT p.uid OR bytes IS NULL"),
	                 0);
	for (size_t i = 0; i < u.nuids; i++) {
		snprintf(sql, sizeof sql,
		         "SELECT coalesce(sum(bytes), 0) FROM snapshot WHERE uid = %u",
		         (unsigned)u.uids[i].uid);
		ck_assert_uint_eq(u.uids[i].bytes, (uint64_t)q_int(db, sql));
		snprintf(sql, sizeof sql, "SELECT count(*) FROM snapshot WHERE uid = %u",
		         (unsigned)u.uids[i].uid);
		ck_assert_uint_eq(u.uids[i].snapshots, (uint64_t)q_int(db, sql));
	}
	/* every uid of the file is there (others may stay for their counters) */
	size_t holding = 0;
	for (size_t i = 0; i < u.nuids; i++)
		holding += u.uids[i].snapshots > 0;
	ck_assert_uint_eq(holding, (uint64_t)q_int(db, "SELECT count(DISTINCT uid) FROM snapshot"));
	store_usage_free(&u);
	sqlite3_close(db);
}

/* The ids of uid's stored snapshots, oldest first, into ids (at most cap). */
static size_t stored_ids(uid_t uid, int64_t *ids, size_t cap)
{
	sqlite3 *db = raw_open();
	char sql[128];
	size_t n = 0;

	snprintf(sql, sizeof sql,
	         "SELECT s.id FROM snapshot s JOIN process p ON p.id = s.process_id"
	         " WHERE p.uid = %u ORDER BY s.id",
	         (unsigned)uid);
	sqlite3_stmt *q = prep(db, sql);
	while (sqlite3_step(q) == SQLITE_ROW && n < cap)
		ids[n++] = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

/* The charge is what store.h defines, it is in the file, and the figures
 * add up per uid. */
START_TEST(test_charge)
{
	struct store *st = open_store();
	struct gen g[] = {
	    {10, 1000, 1, "/bin/a", 100.0, "periodic", 0, 30},
	    {11, 1000, 2, "/bin/a", 110.0, "exit", 5, 7},
	    {12, 2000, 3, "/usr/bin/bb", 120.0, "manual", 40, 1},
	    {13, 2000, 4, "/usr/bin/bb", 130.0, "manual", 0, 0},
	};
	uint64_t want[2] = {0, 0};
	sqlite3 *db;
	char sql[96];

	for (int i = 0; i < 4; i++) {
		struct snapshot *s = gen(&g[i]);
		struct store_written w;
		ck_assert_uint_eq(store_charge(s), charge_of(&g[i]));
		ck_assert_int_eq(store_write_bounded(st, s, &w), 0);
		ck_assert_uint_eq(w.bytes, charge_of(&g[i]));
		want[i / 2] += charge_of(&g[i]);
		ck_assert_uint_eq(w.uid_bytes, want[i / 2]);
		ck_assert_uint_eq(w.total_bytes, want[0] + want[1]);
		ck_assert_uint_eq(w.evicted_own + w.evicted_total, 0);
		db = raw_open();
		snprintf(sql, sizeof sql, "SELECT bytes FROM snapshot WHERE id = %lld",
		         (long long)w.id);
		ck_assert_uint_eq((uint64_t)q_int(db, sql), charge_of(&g[i]));
		sqlite3_close(db);
		snapshot_free(s);
	}
	ck_assert_uint_eq(uid_usage(st, 1000).bytes, want[0]);
	ck_assert_uint_eq(uid_usage(st, 1000).snapshots, 2);
	ck_assert_uint_eq(uid_usage(st, 2000).bytes, want[1]);
	ck_assert_uint_eq(uid_usage(st, 2000).snapshots, 2);
	assert_usage_is_file(st);
	/* retention takes back what it deletes */
	size_t deleted;
	ck_assert_int_eq(store_retain(st, 1, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 0); /* one snapshot per process */
	store_close(st);

	/* recomputed at open, from the file */
	st = open_store();
	ck_assert_uint_eq(uid_usage(st, 1000).bytes, want[0]);
	ck_assert_uint_eq(uid_usage(st, 2000).bytes, want[1]);
	assert_usage_is_file(st);
	store_close(st);
	check_clean();
}
END_TEST

/* Arguments are charged as stored: a control byte is escaped to six bytes
 * in the file, and charged six (hostile9 F3: charged one, a uid filled the
 * disk to five times its bound). The charge covers what the file holds of
 * the process. */
START_TEST(test_charge_escaped)
{
	struct store *st = open_store();
	struct gen g = {20, 1000, 1, "/bin/ctl", 100.0, "exit", 0, 0};
	char *ctl = xcalloc(1001, 1);
	const char *args[] = {"ctl", ctl, "tab\there", "\x7f\x1f\"\\", NULL};
	struct snapshot *s = gen(&g);
	struct store_written w;
	sqlite3 *db;
	char sql[160];

	memset(ctl, 1, 1000);
	for (size_t i = 0; s->argv[i] != NULL; i++)
		free(s->argv[i]);
	free(s->argv);
	s->argv = argv_of(args);
	uint64_t want = STORE_CHARGE_SNAPSHOT + strlen(g.exe) + json_array_len(args);
	ck_assert_uint_ge(want, 6000 + STORE_CHARGE_SNAPSHOT);
	ck_assert_uint_eq(store_charge(s), want);
	ck_assert_int_eq(store_write_bounded(st, s, &w), 0);
	ck_assert_uint_eq(w.bytes, want);
	db = raw_open();
	snprintf(sql, sizeof sql,
	         "SELECT length(CAST(p.cmdline AS BLOB)) + length(CAST(p.exe AS BLOB)) FROM"
	         " process p JOIN snapshot s ON s.process_id = p.id WHERE s.id = %lld",
	         (long long)w.id);
	ck_assert_uint_eq((uint64_t)q_int(db, sql), want - STORE_CHARGE_SNAPSHOT);
	sqlite3_close(db);
	/* read back as they were */
	struct snapshot *got = NULL;
	ck_assert_int_eq(store_read(st, w.id, &got), 0);
	for (int i = 0; args[i] != NULL; i++)
		ck_assert_str_eq(got->argv[i], args[i]);
	ck_assert_ptr_null(got->argv[4]);
	snapshot_free(got);
	snapshot_free(s);
	free(ctl);
	store_close(st);
	check_clean();
}
END_TEST

/* Past its own bound a uid loses its oldest snapshots, and only its own:
 * the newest ones stay, another uid's stay. */
START_TEST(test_bound_per_uid)
{
	struct store *st = open_store();
	struct gen g = {10, 1000, 1, "/bin/a", 100.0, "exit", 0, 20};
	struct gen other = {20, 2000, 2, "/bin/b", 100.0, "exit", 3, 20};
	uint64_t c = charge_of(&g);
	int64_t mine[12], theirs[2], got[16];

	/* three and a half of uid 1000's snapshots */
	{
		struct store_written sb_w;
		ck_assert_int_eq(store_set_bounds(st, 0, 3 * c + c / 2, &sb_w), 0);
	}
	theirs[0] = write_gen(st, &other);
	for (int i = 0; i < 12; i++) {
		struct snapshot *s;
		struct store_written w;
		g.pid = 10 + i; /* a short-lived process each */
		g.taken_at = 100.0 + i;
		s = gen(&g);
		ck_assert_int_eq(store_write_bounded(st, s, &w), 0);
		mine[i] = w.id;
		ck_assert_uint_eq(w.evicted_own, i >= 3 ? 1 : 0);
		ck_assert_uint_eq(w.evicted_total, 0);
		ck_assert_uint_eq(w.uid_bytes, (i >= 3 ? 3 : (uint64_t)i + 1) * c);
		snapshot_free(s);
	}
	theirs[1] = write_gen(st, &other);
	/* uid 1000's newest three, uid 2000's two */
	ck_assert_uint_eq(stored_ids(1000, got, 16), 3);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(got[i], mine[9 + i]);
	ck_assert_uint_eq(stored_ids(2000, got, 16), 2);
	ck_assert_int_eq(got[0], theirs[0]);
	ck_assert_int_eq(got[1], theirs[1]);
	struct store_uid_usage u = uid_usage(st, 1000);
	ck_assert_uint_eq(u.bytes, 3 * c);
	ck_assert_uint_eq(u.snapshots, 3);
	ck_assert_uint_eq(u.evicted_own, 9);
	ck_assert_uint_eq(u.evicted_total, 0);
	ck_assert_uint_eq(uid_usage(st, 2000).evicted_own, 0);
	assert_usage_is_file(st);
	/* the deleted ones read as missing, the kept ones as written */
	struct snapshot *s;
	ck_assert_int_eq(store_read(st, mine[0], &s), -ENOENT);
	g.pid = 21;
	g.taken_at = 111.0;
	assert_reads_as_gen(st, mine[11], &g);
	store_close(st);
	check_clean();
}
END_TEST

/* The total bound against a reference model: equal snapshots of three
 * uids; after each write, while the total is past the bound, the uid
 * holding the most (the writer on a tie) loses its oldest. A hostile uid
 * that writes on and on ends with its share, never below another's. */
#define TOT_MAX_IDS 64
struct model_uid {
	int64_t ids[TOT_MAX_IDS];
	size_t head, n;
};

START_TEST(test_bound_total)
{
	struct store *st = open_store();
	const uid_t uids[3] = {1000, 2000, 65534};
	struct model_uid m[3] = {0};
	/* uid 1000 and 2000 write 4 each, then 65534 writes 30 */
	int order[38];
	uint64_t c;
	struct gen g = {0, 0, 1, "/bin/p", 0, "exit", 0, 10};

	c = charge_of(&g);
	{
		struct store_written sb_w;
		ck_assert_int_eq(store_set_bounds(st, 10 * c, 0, &sb_w), 0);
	}
	for (int i = 0; i < 38; i++)
		order[i] = i < 8 ? i % 2 : 2;
	for (int i = 0; i < 38; i++) {
		int k = order[i];
		struct store_written w;
		struct snapshot *s;
		g.pid = 100 + i;
		g.uid = uids[k];
		g.taken_at = 1000.0 + i;
		s = gen(&g);
		ck_assert_int_eq(store_write_bounded(st, s, &w), 0);
		snapshot_free(s);
		m[k].ids[m[k].head + m[k].n++] = w.id;
		size_t total = m[0].n + m[1].n + m[2].n, evicted = 0;
		while (total > 10) {
			int most = k;
			for (int j = 0; j < 3; j++)
				if (m[j].n > m[most].n)
					most = j;
			m[most].head++;
			m[most].n--;
			total--;
			evicted++;
		}
		ck_assert_uint_eq(w.evicted_total, evicted);
		ck_assert_uint_eq(w.total_bytes, total * c);
		for (int j = 0; j < 3; j++) {
			int64_t got[TOT_MAX_IDS];
			size_t n = stored_ids(uids[j], got, TOT_MAX_IDS);
			ck_assert_msg(n == m[j].n, "after write %d: uid %u holds %zu, want %zu", i,
			              (unsigned)uids[j], n, m[j].n);
			for (size_t x = 0; x < n; x++)
				ck_assert_int_eq(got[x], m[j].ids[m[j].head + x]);
			ck_assert_uint_eq(uid_usage(st, uids[j]).bytes, m[j].n * c);
		}
	}
	/* The hostile uid took one of uid 1000's while it held fewer, then
	 * only ever deleted its own: it never holds more than the others. */
	ck_assert_uint_eq(m[0].n, 3);
	ck_assert_uint_eq(m[1].n, 4);
	ck_assert_uint_eq(m[2].n, 3);
	ck_assert_uint_eq(uid_usage(st, 1000).evicted_total, 1);
	ck_assert_uint_eq(uid_usage(st, 2000).evicted_total, 0);
	ck_assert_uint_eq(uid_usage(st, 65534).evicted_total, 30 - 3);
	assert_usage_is_file(st);
	store_close(st);
	check_clean();
}
END_TEST

/* The snapshots a bound deleted for w, per uid (own: the per-uid bound). */
static size_t evicted_of(const struct store_written *w, uid_t uid, bool own)
{
	for (size_t i = 0; i < w->nevicted; i++)
		if (w->evicted[i].uid == uid)
			return own ? w->evicted[i].own : w->evicted[i].total;
	return 0;
}

/* One write that makes the total bound take from two other uids reports
 * both, with the counts the file lost. */
START_TEST(test_bound_report_uids)
{
	struct store *st = open_store();
	struct gen g = {0, 0, 1, "/bin/p", 0, "exit", 0, 10};
	struct gen big = {99, 3000, 1, "/bin/big", 0, "exit", 0, 25};
	uint64_t c = charge_of(&g);
	int64_t got[16];
	struct store_written w;

	ck_assert_uint_gt(charge_of(&big), 2 * c);
	ck_assert_uint_lt(charge_of(&big), 3 * c);
	ck_assert_int_eq(store_set_bounds(st, 7 * c, 0, &w), 0);
	ck_assert_uint_eq(w.evicted_own + w.evicted_total, 0);
	for (int i = 0; i < 6; i++) {
		g.pid = 100 + i;
		g.uid = i % 2 ? 2000 : 1000;
		g.taken_at = 1000.0 + i;
		write_gen(st, &g);
	}
	struct snapshot *s = gen(&big);
	ck_assert_int_eq(store_write_bounded(st, s, &w), 0);
	snapshot_free(s);
	/* ground truth: the file */
	size_t left1000 = stored_ids(1000, got, 16), left2000 = stored_ids(2000, got, 16);
	ck_assert_uint_eq(left1000 + left2000, 4);
	ck_assert_uint_eq(w.evicted_total, 6 - (left1000 + left2000));
	ck_assert_uint_eq(w.nevicted, 2);
	ck_assert_uint_eq(evicted_of(&w, 1000, false), 3 - left1000);
	ck_assert_uint_eq(evicted_of(&w, 2000, false), 3 - left2000);
	ck_assert_uint_eq(evicted_of(&w, 3000, false), 0);
	char text[128];
	store_evicted_text(&w, false, text, sizeof(text));
	ck_assert_str_eq(text, "uid 1000: 1, uid 2000: 1");
	store_close(st);
	check_clean();
}
END_TEST

/* Bounds lowered at open are kept at once, the way writes keep them, and
 * the deleted snapshots are known as such, also after a reopen. */
START_TEST(test_bound_at_open)
{
	struct store *st = open_store();
	struct gen g = {0, 0, 1, "/bin/p", 0, "exit", 0, 10};
	uint64_t c = charge_of(&g);
	int64_t ids[3][8], got[16];
	const uid_t uids[3] = {1000, 2000, 3000};
	const int n[3] = {6, 3, 1};
	struct store_written w;
	enum store_deleted_by why;
	uid_t owner;
	double at;

	for (int k = 0; k < 3; k++)
		for (int i = 0; i < n[k]; i++) {
			g.pid = 100 + 10 * k + i;
			g.uid = uids[k];
			g.taken_at = 1000.0 + 10 * k + i;
			ids[k][i] = write_gen(st, &g);
		}
	store_close(st);

	st = open_store();
	/* uid 1000 down to 4 of its own; then 4 + 3 + 1 > 6: the one holding
	 * the most (1000, 4) loses one, then 1000 and 2000 hold 3 each and
	 * 1000 loses another: 2 + 3 + 1 = 6 */
	ck_assert_int_eq(store_set_bounds(st, 6 * c, 4 * c, &w), 0);
	ck_assert_uint_eq(stored_ids(1000, got, 16), 2);
	ck_assert_int_eq(got[0], ids[0][4]);
	ck_assert_uint_eq(stored_ids(2000, got, 16), 3);
	ck_assert_uint_eq(stored_ids(3000, got, 16), 1);
	ck_assert_uint_eq(w.evicted_own, 2);
	ck_assert_uint_eq(w.evicted_total, 2);
	ck_assert_uint_eq(evicted_of(&w, 1000, true), 2);
	ck_assert_uint_eq(evicted_of(&w, 1000, false), 2);
	ck_assert_uint_eq(evicted_of(&w, 2000, false), 0);
	ck_assert_uint_eq(w.total_bytes, 6 * c);
	ck_assert_uint_eq(uid_usage(st, 1000).evicted_own, 2);
	ck_assert_uint_eq(uid_usage(st, 1000).evicted_total, 2);
	assert_usage_is_file(st);
	ck_assert_int_eq(store_deleted(st, ids[0][0], &owner, &why, &at), 0);
	ck_assert_uint_eq(owner, 1000);
	ck_assert_int_eq(why, STORE_BY_PER_UID);
	ck_assert_int_eq(store_deleted(st, ids[0][3], &owner, &why, &at), 0);
	ck_assert_int_eq(why, STORE_BY_TOTAL);
	ck_assert_int_eq(store_deleted(st, ids[0][4], &owner, &why, &at), -ENOENT);
	ck_assert_int_eq(store_deleted(st, 9999, &owner, &why, &at), -ENOENT);
	store_close(st);

	/* the record survives a restart; retention is recorded too */
	st = open_store();
	ck_assert_int_eq(store_set_bounds(st, 6 * c, 4 * c, &w), 0);
	ck_assert_uint_eq(w.evicted_own + w.evicted_total, 0);
	ck_assert_int_eq(store_deleted(st, ids[0][1], &owner, &why, &at), 0);
	ck_assert_int_eq(why, STORE_BY_PER_UID);
	size_t deleted;
	ck_assert_int_eq(store_retain(st, 0, 1e-9, &deleted), 0);
	ck_assert_uint_eq(deleted, 6);
	ck_assert_int_eq(store_deleted(st, ids[2][0], &owner, &why, &at), 0);
	ck_assert_uint_eq(owner, 3000);
	ck_assert_int_eq(why, STORE_BY_RETAIN_AGE);
	store_close(st);
	check_clean();
}
END_TEST

/* Deletions give the pages back: a new file is made for incremental
 * vacuum, keeps no free pages after a bound or retention deleted, and
 * shrinks. */
START_TEST(test_file_shrinks)
{
	struct store *st = open_store();
	struct gen g = {0, 1000, 1, "/bin/p", 0, "exit", 0, 200};
	struct store_written w;
	sqlite3 *db;
	uint64_t c = charge_of(&g);

	for (int i = 0; i < 20; i++) {
		g.pid = 100 + i;
		g.first = (unsigned)i * 200; /* stacks of its own */
		g.taken_at = 1000.0 + i;
		write_gen(st, &g);
	}
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA auto_vacuum"), 2);
	long long full = q_int(db, "PRAGMA page_count");
	sqlite3_close(db);
	ck_assert_int_eq(store_set_bounds(st, 0, 2 * c, &w), 0);
	ck_assert_uint_ge(w.evicted_own, 17);
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA freelist_count"), 0);
	long long now = q_int(db, "PRAGMA page_count");
	ck_assert_msg(now * 3 < full, "%lld pages after deleting %zu of 20 snapshots, %lld before",
	              now, w.evicted_own, full);
	sqlite3_close(db);
	size_t deleted;
	ck_assert_int_eq(store_retain(st, 0, 1e-9, &deleted), 0);
	ck_assert_uint_eq(deleted, 20 - w.evicted_own);
	db = raw_open();
	ck_assert_int_eq(q_int(db, "PRAGMA freelist_count"), 0);
	sqlite3_close(db);
	uint64_t fb = 0;
	ck_assert_int_eq(store_file_bytes(st, &fb), 0);
	ck_assert_uint_gt(fb, 0);
	store_close(st);
	check_clean();
}
END_TEST

/* What a bound refuses is not written and changes nothing else: a
 * snapshot larger than a bound, and one that could fit the total only by
 * deleting itself. */
START_TEST(test_bound_refused)
{
	struct store *st = open_store();
	struct gen small = {10, 1000, 1, "/bin/a", 100.0, "exit", 0, 5};
	struct gen big = {11, 1000, 2, "/bin/a", 101.0, "exit", 0, 200};
	uint64_t c = charge_of(&small);
	struct store_written w;
	struct snapshot *s;
	int64_t kept[3];

	ck_assert_uint_gt(charge_of(&big), 2 * c);
	{
		struct store_written sb_w;
		ck_assert_int_eq(store_set_bounds(st, 3 * c, 2 * c, &sb_w), 0);
	}
	kept[0] = write_gen(st, &small);
	s = gen(&big);
	ck_assert_int_eq(store_write_bounded(st, s, &w), -EFBIG);
	ck_assert_int_eq(w.id, 0);
	ck_assert_uint_eq(w.bytes, charge_of(&big));
	ck_assert_uint_eq(w.uid_bytes, c);
	ck_assert_ptr_nonnull(strstr(store_errmsg(st), "more than a uid may hold"));
	snapshot_free(s);
	ck_assert_uint_eq(uid_usage(st, 1000).refused, 1);
	ck_assert_uint_eq(uid_usage(st, 1000).snapshots, 1);

	/* uids 1000, 2000, 3000 hold one each, the total: uid 4000's first
	 * snapshot could only replace itself */
	small.uid = 2000;
	small.pid = 20;
	kept[1] = write_gen(st, &small);
	small.uid = 3000;
	small.pid = 30;
	kept[2] = write_gen(st, &small);
	small.uid = 4000;
	small.pid = 40;
	s = gen(&small);
	ck_assert_int_eq(store_write_bounded(st, s, &w), -ENOSPC);
	snapshot_free(s);
	ck_assert_int_eq(w.id, 0);
	ck_assert_uint_eq(w.evicted_total, 0);
	ck_assert_uint_eq(uid_usage(st, 4000).refused, 1);
	ck_assert_uint_eq(uid_usage(st, 4000).bytes, 0);
	for (int i = 0; i < 3; i++) {
		int64_t got[4];
		ck_assert_uint_eq(stored_ids((uid_t)(1000 * (i + 1)), got, 4), 1);
		ck_assert_int_eq(got[0], kept[i]);
		ck_assert_uint_eq(uid_usage(st, (uid_t)(1000 * (i + 1))).evicted_total, 0);
	}
	struct store_usage u;
	store_usage(st, &u);
	ck_assert_uint_eq(u.bytes, 3 * c);
	ck_assert_uint_eq(u.refused, 2);
	ck_assert_uint_eq(u.max_bytes, 3 * c);
	ck_assert_uint_eq(u.max_bytes_per_uid, 2 * c);
	store_usage_free(&u);
	assert_usage_is_file(st);
	store_close(st);
	check_clean();
}
END_TEST

/* A version 2 file is charged at open, as its snapshots would be written
 * now; a write by another connection is seen by the next write. */
START_TEST(test_bound_migrate_and_share)
{
	struct gen g[] = {
	    {10, 1000, 1, "/bin/a", 100.0, "periodic", 0, 30},
	    {20, 2000, 2, "/bin/b", 110.0, "exit", 5, 7},
	};
	struct store *st = open_store(), *other;
	int64_t id[2];
	sqlite3 *db;
	char sql[96];

	for (int i = 0; i < 2; i++)
		id[i] = write_gen(st, &g[i]);
	store_close(st);
	db = raw_open();
	raw_exec(db, "ALTER TABLE trace DROP COLUMN peak_count;"
	             "ALTER TABLE trace DROP COLUMN peak_size;"
	             "ALTER TABLE trace DROP COLUMN temporary;"
	             "ALTER TABLE trace DROP COLUMN allocated;"
	             "DROP TABLE deleted;"
	             "DROP INDEX snapshot_uid;"
	             "ALTER TABLE snapshot DROP COLUMN bytes;"
	             "ALTER TABLE snapshot DROP COLUMN uid;"
	             "PRAGMA user_version = 2");
	sqlite3_close(db);

	st = open_store();
	db = raw_open();
	for (int i = 0; i < 2; i++) {
		snprintf(sql, sizeof sql, "SELECT bytes FROM snapshot WHERE id = %lld",
		         (long long)id[i]);
		ck_assert_uint_eq((uint64_t)q_int(db, sql), charge_of(&g[i]));
	}
	sqlite3_close(db);
	ck_assert_uint_eq(uid_usage(st, 1000).bytes, charge_of(&g[0]));
	ck_assert_uint_eq(uid_usage(st, 2000).bytes, charge_of(&g[1]));
	assert_usage_is_file(st);

	/* another connection writes two of uid 1000's; a bound of two for
	 * uid 1000 on this one deletes its oldest when set, and the next
	 * oldest at the next write */
	other = open_store();
	g[0].pid = 11;
	write_gen(other, &g[0]);
	g[0].pid = 12;
	write_gen(other, &g[0]);
	store_close(other);
	{
		struct store_written sb_w;
		ck_assert_int_eq(store_set_bounds(st, 0, 2 * charge_of(&g[0]), &sb_w), 0);
		struct snapshot *gone = NULL;
		ck_assert_uint_eq(sb_w.evicted_own, 1);
		ck_assert_int_eq(store_read(st, id[0], &gone), -ENOENT);
	}
	g[0].pid = 13;
	struct snapshot *s = gen(&g[0]);
	struct store_written w;
	ck_assert_int_eq(store_write_bounded(st, s, &w), 0);
	snapshot_free(s);
	s = NULL;
	ck_assert_uint_eq(w.evicted_own, 1);
	ck_assert_uint_eq(w.uid_bytes, 2 * charge_of(&g[0]));
	assert_usage_is_file(st);
	store_close(st);
	check_clean();
}
END_TEST

/* ---- threads ---- */

struct writer_arg {
	struct store *st;
	pid_t pid;
	int rc;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;

	for (unsigned i = 0; i < 10 && a->rc == 0; i++) {
		struct gen g = {a->pid, 1000, 1, "/bin/t", 1000.0 + i, "periodic", i, 20};
		struct snapshot *s = gen(&g);
		int64_t id;
		a->rc = store_write(a->st, s, &id);
		snapshot_free(s);
	}
	return NULL;
}

/* Two threads on one store (its mutex) and a third on a second connection
 * to the same file (SQLite's locking and busy_timeout). */
START_TEST(test_threads)
{
	struct store *a = open_store(), *b = open_store();
	struct writer_arg w[3] = {{a, 100, 0}, {a, 200, 0}, {b, 300, 0}};
	pthread_t th[3];
	struct expect *e = xcalloc(1, sizeof(*e));
	struct store_counts c;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, writer, &w[i]), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_msg(w[i].rc == 0, "writer %d: %d", i, w[i].rc);
		for (unsigned k = 0; k < 10; k++) {
			struct gen g = {w[i].pid, 1000, 1, "/bin/t", 1000.0 + k, "periodic", k, 20};
			expect_add(e, i, &g);
		}
	}
	c = counts(b);
	ck_assert_uint_eq(c.processes, 3);
	ck_assert_uint_eq(c.snapshots, 30);
	ck_assert_uint_eq(c.stacks, e->stacks);
	ck_assert_uint_eq(c.frames, e->frames);
	free(e);
	store_close(b);
	store_close(a);
	check_clean();
}
END_TEST

/* ---- scale ---- */

#define BIG_STACKS 100000
#define BIG_POOL   20000

static struct snapshot *big_snapshot(void)
{
	struct snapshot *s = snapshot_new();
	uint32_t *idx = xcalloc(BIG_POOL, sizeof(*idx));
	char file[96], fn[96], mod[96];

	s->pid = 31337;
	s->uid = 1000;
	s->start_time = 123456;
	s->exe = xstrdup("/usr/bin/bigapp");
	s->argv = argv_of((const char *const[]){"bigapp", "--serve", NULL});
	s->taken_at = 1700000000.5;
	snprintf(s->reason, sizeof(s->reason), "periodic");
	for (unsigned i = 0; i < BIG_POOL; i++) {
		struct frame_info f = {file, 10 + i % 997, fn, mod, NULL, NULL};
		snprintf(file, sizeof(file), "/build/src/component%u/source_file_%u.cc", i % 50, i);
		snprintf(fn, sizeof(fn), "ns%u::Class%u::method_number_%u(int, char const*)", i % 7,
		         i % 300, i);
		snprintf(mod, sizeof(mod), "/usr/lib/x86_64-linux-gnu/libcomponent%u.so.1", i % 50);
		idx[i] = snapshot_intern_frame(s, &f);
	}
	s->ntraces = BIG_STACKS;
	s->traces = xcalloc(BIG_STACKS, sizeof(*s->traces));
	for (unsigned q = 0; q < BIG_STACKS; q++) {
		struct snapshot_trace *t = &s->traces[q];
		t->nframes = 16 + q % 17;
		t->frames = xcalloc(t->nframes, sizeof(uint32_t));
		t->addrs = xcalloc(t->nframes, sizeof(uint64_t));
		for (unsigned r = 0; r < t->nframes; r++) {
			unsigned f =
			    (unsigned)(((uint64_t)q * 2654435761u + r * 40503u) % BIG_POOL);
			t->frames[r] = idx[f];
			/* distinct per stack: the first address carries q */
			t->addrs[r] = UINT64_C(0x55d0c0000000) + (uint64_t)f * 16 +
			              (r == 0 ? (uint64_t)q << 20 : 0);
		}
		t->size = 32 + q;
		t->count = 1 + q % 9;
		t->allocations = t->count + q % 101;
		s->current += t->size;
		s->blocks += t->count;
		s->allocations += t->allocations;
	}
	s->peak = s->current;
	s->nlargest = 10;
	s->largest = xcalloc(10, sizeof(*s->largest));
	for (unsigned i = 0; i < 10; i++)
		s->largest[i] = (struct snapshot_block){
		    0x7f0000000000 + i * 64, 32 + BIG_STACKS - 1 - i, BIG_STACKS - 1 - i};
	free(idx);
	return s;
}

START_TEST(test_big)
{
	struct store *st = open_store();
	struct snapshot *s = big_snapshot(), *got;
	int64_t id, id2;
	double t0, t_write, t_again, t_read, t_retain;
	struct store_counts c;
	size_t deleted;
	char *used = xcalloc(s->nframes, 1);
	size_t nused = 0;

	for (size_t i = 0; i < s->ntraces; i++)
		for (uint32_t j = 0; j < s->traces[i].nframes; j++)
			used[s->traces[i].frames[j]] = 1;
	for (size_t i = 0; i < s->nframes; i++)
		nused += used[i];
	free(used);

	t0 = mono();
	ck_assert_msg(store_write(st, s, &id) == 0, "%s", store_errmsg(st));
	t_write = mono() - t0;
	c = counts(st);
	ck_assert_uint_eq(c.snapshots, 1);
	ck_assert_uint_eq(c.stacks, BIG_STACKS);
	ck_assert_uint_eq(c.frames, nused);

	/* steady state: the same stacks again */
	s->taken_at += 60;
	t0 = mono();
	ck_assert_int_eq(store_write(st, s, &id2), 0);
	t_again = mono() - t0;
	c = counts(st);
	ck_assert_uint_eq(c.snapshots, 2);
	ck_assert_uint_eq(c.stacks, BIG_STACKS);
	ck_assert_uint_eq(c.frames, nused);

	t0 = mono();
	ck_assert_int_eq(store_read(st, id2, &got), 0);
	t_read = mono() - t0;
	assert_same(s, got);
	snapshot_free(got);

	t0 = mono();
	ck_assert_int_eq(store_retain(st, 0, 1e-9, &deleted), 0);
	t_retain = mono() - t0;
	ck_assert_uint_eq(deleted, 2);
	c = counts(st);
	ck_assert_uint_eq(c.processes + c.snapshots + c.stacks + c.frames, 0);

	fprintf(stderr,
	        "check_store: %d stacks of 16-32 frames (%zu frames): write %.3f s, "
	        "rewrite %.3f s, read %.3f s, retain all %.3f s\n",
	        BIG_STACKS, nused, t_write, t_again, t_read, t_retain);
	snapshot_free(s);
	store_close(st);
	check_clean();
}
END_TEST

Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	TCase *big = tcase_create("scale");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_schema);
	tcase_add_test(tc, test_pragmas);
	tcase_add_test(tc, test_busy_waits);
	tcase_add_test(tc, test_newer_version);
	tcase_add_test(tc, test_migrate_sample_bytes);
	tcase_add_test(tc, test_migrate_detach_reason);
	tcase_add_test(tc, test_migrate_frame_symbols);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_read_missing);
	tcase_add_test(tc, test_invalid);
	tcase_add_test(tc, test_merge);
	tcase_add_test(tc, test_sharing);
	tcase_add_test(tc, test_list_latest_owner);
	tcase_add_test(tc, test_retain_count);
	tcase_add_test(tc, test_retain_age);
	tcase_add_test(tc, test_retain_then_reuse);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_charge);
	tcase_add_test(tc, test_charge_escaped);
	tcase_add_test(tc, test_bound_per_uid);
	tcase_add_test(tc, test_bound_total);
	tcase_add_test(tc, test_bound_refused);
	tcase_add_test(tc, test_bound_report_uids);
	tcase_add_test(tc, test_bound_at_open);
	tcase_add_test(tc, test_file_shrinks);
	tcase_add_test(tc, test_bound_migrate_and_share);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(big, setup, teardown);
	tcase_set_timeout(big, 600);
	tcase_add_test(big, test_big);
	suite_add_tcase(s, big);
	return s;
}
