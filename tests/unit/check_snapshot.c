/*
 * check_snapshot.c - analysis/snapshot.c: interning, the JSON document, the
 * snapshot file, trace groups and the JSON views.
 *
 * The sample snapshot is built here by hand, so every expected value (which
 * frame index a trace names, which frames are shared, what a view prints) is
 * known to the test, not taken from the code under test. The document format
 * is checked against snapshot.h's description directly (tuple positions and
 * key names), not only by reading back what was written, so that a change of
 * format on both sides at once cannot pass.
 *
 * Snapshot files come from users, so most of this suite feeds snapshot_from_json
 * broken documents: the valid sample with one value replaced or removed at a
 * time, each of which must be refused with -EINVAL, no result, no leak (the
 * sanitizer build checks that) and a message that names the place.
 *
 * The limits the tests use are those snapshot.c documents: 64 KiB per string,
 * 65536 command line arguments, 256 frames per trace. The 2^24 bounds on
 * frames, traces and largest blocks are not exercised: a document that big
 * takes gigabytes of cJSON nodes.
 */
#include "snapshot.h"
#include "suites.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

Suite *snapshot_suite(void);

#define N(a)       (sizeof(a) / sizeof((a)[0]))
#define MAX_STRING (64u << 10)
#define MAX_ARGS   65536
#define MAX_DEPTH  256

/* ---- the sample ----
 * Strings of FA2 live in their own buffers: equal content, other pointers,
 * so interning must compare content. */
static char a_c[] = "/src/a.c";
static char fa[] = "fa";
static char app[] = "/bin/app";

static const struct frame_info FA = {
    .filename = "/src/a.c", .lineno = 10, .function = "fa", .module = "/bin/app"};
static const struct frame_info FA2 = {.filename = a_c, .lineno = 10, .function = fa, .module = app};
/* Named by a separate debug file (frame.h's `symbols`). */
#define FB_DEBUG "/usr/lib/debug/.build-id/ab/cdef.debug"
static const struct frame_info FB = {.filename = "/src/b.c",
                                     .lineno = 20,
                                     .function = "fb",
                                     .module = "/lib/libb.so",
                                     .symbols = FB_DEBUG};
static const struct frame_info FM = {
    .filename = "/src/main.c", .lineno = 5, .function = "main", .module = "/bin/app"};

static void *xalloc_or_fail(void *p)
{
	ck_assert_ptr_nonnull(p);
	return p;
}

static char *sdup(const char *s)
{
	return xalloc_or_fail(strdup(s));
}

/* Appends a trace, interning its frames; returns the trace's index. */
static size_t add_trace(struct snapshot *s, uint64_t size, uint64_t count, uint64_t allocs,
                        uint32_t n, const struct frame_info *const *fr, const uint64_t *ad)
{
	struct snapshot_trace *t;

	s->traces = xalloc_or_fail(realloc(s->traces, (s->ntraces + 1) * sizeof *s->traces));
	t = &s->traces[s->ntraces];
	memset(t, 0, sizeof *t);
	t->size = size;
	t->count = count;
	t->allocations = allocs;
	t->allocated = size * 3 + allocs; /* distinct per trace, so a round trip shows them */
	t->temporary = allocs / 2;
	t->peak_size = size * 2 + 1;
	t->peak_count = count + 1;
	t->nframes = n;
	t->frames = xalloc_or_fail(malloc((n ? n : 1) * sizeof *t->frames));
	t->addrs = xalloc_or_fail(malloc((n ? n : 1) * sizeof *t->addrs));
	for (uint32_t i = 0; i < n; i++) {
		t->frames[i] = snapshot_intern_frame(s, fr[i]);
		t->addrs[i] = ad[i];
	}
	return s->ntraces++;
}

static void add_block(struct snapshot *s, uint64_t addr, uint64_t size, uint32_t trace)
{
	s->largest = xalloc_or_fail(realloc(s->largest, (s->nlargest + 1) * sizeof *s->largest));
	s->largest[s->nlargest].addr = addr;
	s->largest[s->nlargest].size = size;
	s->largest[s->nlargest].trace = trace;
	s->nlargest++;
}

/* Trace 0: a.c:10 <- main.c:5; trace 1: b.c:20 <- a.c:10 (other copy) <-
 * main.c:5; trace 2: no traceback. So frames are FA=0, FM=1, FB=2. */
static struct snapshot *sample(void)
{
	static const char *const argv[] = {"/bin/app", "--flag", "x y", ""};
	const struct frame_info *t0[] = {&FA, &FM};
	const uint64_t a0[] = {0x401000, 0x401500};
	const struct frame_info *t1[] = {&FB, &FA2, &FM};
	const uint64_t a1[] = {0x7f0000002000, 0x401004, 0x401500};
	struct snapshot *s = snapshot_new();

	ck_assert_ptr_nonnull(s);
	s->id = 42;
	s->pid = 4242;
	s->uid = 1000;
	s->start_time = 123456789;
	s->exe = sdup("/bin/app");
	s->argv = xalloc_or_fail(calloc(N(argv) + 1, sizeof *s->argv));
	for (size_t i = 0; i < N(argv); i++)
		s->argv[i] = sdup(argv[i]);
	s->taken_at = 1700000000.25;
	strcpy(s->reason, "manual");
	s->current = 1350;
	s->peak = 5000;
	s->blocks = 14;
	s->allocations = 118;
	s->frees = 104;
	s->lost_events = 7;
	ck_assert_uint_eq(add_trace(s, 1000, 10, 15, 2, t0, a0), 0);
	ck_assert_uint_eq(add_trace(s, 300, 3, 3, 3, t1, a1), 1);
	ck_assert_uint_eq(add_trace(s, 50, 1, 100, 0, NULL, NULL), 2);
	add_block(s, 0x7f0000001000, 400, 0);
	add_block(s, 0x7f0000003000, 200, 1);
	add_block(s, 0x7f0000004000, 200, 0);
	add_block(s, 0x7f0000005000, 50, 2);
	return s;
}

/* ---- comparing ----
 * Check records every passing ck_assert, which over the million values of
 * the scale test costs seconds; these call into Check only on failure. */

#define EQ(a, b)                                                                                   \
	do {                                                                                       \
		uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                                \
		if (a_ != b_)                                                                      \
			ck_abort_msg("'%s == %s' is false: %ju, %ju", #a, #b, a_, b_);             \
	} while (0)
#define STR_EQ(a, b)                                                                               \
	do {                                                                                       \
		const char *a_ = (a), *b_ = (b);                                                   \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                               \
			ck_abort_msg("'%s == %s' is false: '%s', '%s'", #a, #b,                    \
			             a_ ? a_ : "(null)", b_ ? b_ : "(null)");                      \
	} while (0)

static void frame_eq(const struct frame_info *a, const struct frame_info *b)
{
	STR_EQ(a->filename, b->filename);
	EQ(a->lineno, b->lineno);
	STR_EQ(a->function, b->function);
	STR_EQ(a->module, b->module);
	/* None is NULL in memory and "" in a document. */
	STR_EQ(a->symbols != NULL ? a->symbols : "", b->symbols != NULL ? b->symbols : "");
}

static void snap_eq(const struct snapshot *a, const struct snapshot *b)
{
	size_t i;

	EQ(a->id, b->id);
	EQ(a->pid, b->pid);
	EQ(a->uid, b->uid);
	EQ(a->start_time, b->start_time);
	STR_EQ(a->exe, b->exe);
	ck_assert_ptr_nonnull(a->argv);
	ck_assert_ptr_nonnull(b->argv);
	for (i = 0; a->argv[i] != NULL; i++) {
		ck_assert_ptr_nonnull(b->argv[i]);
		STR_EQ(a->argv[i], b->argv[i]);
	}
	ck_assert_ptr_null(b->argv[i]);
	ck_assert(a->taken_at == b->taken_at);
	STR_EQ(a->reason, b->reason);
	EQ(a->current, b->current);
	EQ(a->peak, b->peak);
	EQ(a->blocks, b->blocks);
	EQ(a->allocations, b->allocations);
	EQ(a->frees, b->frees);
	EQ(a->lost_events, b->lost_events);
	EQ(a->sample_bytes, b->sample_bytes);
	EQ(a->nframes, b->nframes);
	for (i = 0; i < a->nframes; i++)
		frame_eq(&a->frames[i], &b->frames[i]);
	EQ(a->ntraces, b->ntraces);
	for (i = 0; i < a->ntraces; i++) {
		const struct snapshot_trace *x = &a->traces[i], *y = &b->traces[i];

		EQ(x->size, y->size);
		EQ(x->count, y->count);
		EQ(x->allocations, y->allocations);
		EQ(x->allocated, y->allocated);
		EQ(x->temporary, y->temporary);
		EQ(x->peak_size, y->peak_size);
		EQ(x->peak_count, y->peak_count);
		EQ(x->nframes, y->nframes);
		for (uint32_t j = 0; j < x->nframes; j++) {
			EQ(x->frames[j], y->frames[j]);
			EQ(x->addrs[j], y->addrs[j]);
		}
	}
	EQ(a->nlargest, b->nlargest);
	for (i = 0; i < a->nlargest; i++) {
		EQ(a->largest[i].addr, b->largest[i].addr);
		EQ(a->largest[i].size, b->largest[i].size);
		EQ(a->largest[i].trace, b->largest[i].trace);
	}
}

static struct snapshot *roundtrip(const struct snapshot *s)
{
	char err[256] = "unset";
	cJSON *doc = snapshot_to_json(s);
	char *text;
	struct snapshot *r = NULL;
	int e;

	ck_assert_ptr_nonnull(doc);
	/* Through text, as a file or the control socket carries it. */
	text = cJSON_PrintUnformatted(doc);
	ck_assert_ptr_nonnull(text);
	cJSON_Delete(doc);
	doc = cJSON_Parse(text);
	ck_assert_ptr_nonnull(doc);
	cJSON_free(text);
	e = snapshot_from_json(doc, &r, err, sizeof err);
	ck_assert_msg(e == 0, "from_json: %d %s", e, err);
	ck_assert_ptr_nonnull(r);
	cJSON_Delete(doc);
	return r;
}

/* The same without text in between: the daemon may hand the tree on. */
static struct snapshot *direct(const struct snapshot *s)
{
	char err[256] = "unset";
	cJSON *doc = snapshot_to_json(s);
	struct snapshot *r = NULL;
	int e;

	ck_assert_ptr_nonnull(doc);
	e = snapshot_from_json(doc, &r, err, sizeof err);
	ck_assert_msg(e == 0, "from_json: %d %s", e, err);
	cJSON_Delete(doc);
	return r;
}

static const cJSON *get(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	ck_assert_msg(v != NULL, "missing key %s", k);
	return v;
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = get(o, k);

	ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", k);
	return v->valuedouble;
}

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = get(o, k);

	ck_assert_msg(cJSON_IsString(v), "%s is not a string", k);
	return v->valuestring;
}

static double item_num(const cJSON *a, int i)
{
	const cJSON *v = cJSON_GetArrayItem(a, i);

	ck_assert_msg(cJSON_IsNumber(v), "item %d is not a number", i);
	return v->valuedouble;
}

/* o has exactly these keys (NULL-terminated), in any order. */
static void keys_are(const cJSON *o, const char *const *keys)
{
	const cJSON *c;
	size_t n = 0, have = 0;

	ck_assert(cJSON_IsObject(o));
	for (; keys[n] != NULL; n++)
		get(o, keys[n]);
	cJSON_ArrayForEach(c, o)
	{
		have++;
	}
	ck_assert_msg(have == n, "object has %zu keys, expected %zu", have, n);
}

/* ---- lifetime and interning ---- */

START_TEST(test_new_free)
{
	struct snapshot *s = snapshot_new();

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->id, 0);
	ck_assert_ptr_null(s->exe);
	ck_assert_ptr_null(s->argv);
	ck_assert_ptr_null(s->frames);
	ck_assert_uint_eq(s->nframes, 0);
	ck_assert_uint_eq(s->ntraces, 0);
	ck_assert_uint_eq(s->nlargest, 0);
	ck_assert_ptr_null(s->index);
	snapshot_free(s);
	snapshot_free(NULL);
}
END_TEST

START_TEST(test_intern_by_content)
{
	struct snapshot *s = snapshot_new();
	char file[] = "/src/x.c";
	struct frame_info f = {.filename = file, .lineno = 1, .function = "f", .module = "/m"};
	struct frame_info g;
	uint32_t i0, i1;

	i0 = snapshot_intern_frame(s, &FA);
	ck_assert_uint_eq(i0, 0);
	ck_assert_uint_eq(snapshot_intern_frame(s, &FA2), 0); /* same content */
	ck_assert_uint_eq(s->nframes, 1);
	/* Stored strings are copies. */
	ck_assert_ptr_ne(s->frames[0].filename, FA2.filename);
	ck_assert_ptr_ne(s->frames[0].filename, FA.filename);
	frame_eq(&s->frames[0], &FA);

	/* Each field takes part in equality. */
	g = FA;
	g.lineno = 11;
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 1);
	g = FA;
	g.filename = "/src/a.cc";
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 2);
	g = FA;
	g.function = "fb";
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 3);
	g = FA;
	g.module = "/lib/liba.so";
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 4);
	/* Strings chained without a separator must not collide:
	 * ("/src/a.c", "fa") vs ("/src/a.cf", "a"). */
	g = FA;
	g.filename = "/src/a.cf";
	g.function = "a";
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 5);
	/* Named by a debug file: another frame; "" is none. */
	g = FA;
	g.symbols = "/src/a.debug";
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 6);
	ck_assert_str_eq(s->frames[6].symbols, "/src/a.debug");
	g.symbols = "";
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), 0);
	ck_assert_ptr_null(s->frames[0].symbols);
	ck_assert_uint_eq(s->nframes, 7);

	/* The caller's buffer may change after the call. */
	i1 = snapshot_intern_frame(s, &f);
	ck_assert_uint_eq(i1, 7);
	file[1] = 'X';
	ck_assert_str_eq(s->frames[i1].filename, "/src/x.c");
	ck_assert_uint_eq(snapshot_intern_frame(s, &f), 8);
	file[1] = 's';
	ck_assert_uint_eq(snapshot_intern_frame(s, &f), 7);

	/* NULL strings are stored as "". */
	g = (struct frame_info){.filename = NULL, .lineno = 0, .function = NULL, .module = NULL};
	i1 = snapshot_intern_frame(s, &g);
	ck_assert_str_eq(s->frames[i1].filename, "");
	ck_assert_str_eq(s->frames[i1].function, "");
	ck_assert_str_eq(s->frames[i1].module, "");
	g = (struct frame_info){.filename = "", .lineno = 0, .function = "", .module = ""};
	ck_assert_uint_eq(snapshot_intern_frame(s, &g), i1);
	snapshot_free(s);
}
END_TEST

START_TEST(test_intern_many)
{
	/* Enough frames to grow both the array and the table many times. */
	enum { NF = 50000 };
	struct snapshot *s = snapshot_new();
	char fn[32], fl[32];

	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < NF; i++) {
			struct frame_info f = {
			    .filename = fl, .lineno = i % 7, .function = fn, .module = "/m"};

			snprintf(fl, sizeof fl, "/f%u.c", i / 7);
			snprintf(fn, sizeof fn, "fn%u", i);
			uint32_t idx = snapshot_intern_frame(s, &f);
			if (idx != i)
				ck_abort_msg("round %d frame %u got index %u", round, i, idx);
		}
		ck_assert_uint_eq(s->nframes, NF);
	}
	for (uint32_t i = 0; i < NF; i += 997) {
		snprintf(fl, sizeof fl, "/f%u.c", i / 7);
		snprintf(fn, sizeof fn, "fn%u", i);
		ck_assert_str_eq(s->frames[i].filename, fl);
		ck_assert_str_eq(s->frames[i].function, fn);
		ck_assert_uint_eq(s->frames[i].lineno, i % 7);
	}
	snapshot_free(s);
}
END_TEST

START_TEST(test_sample_shares_frames)
{
	struct snapshot *s = sample();

	/* FA and FA2 are one frame; traces 0 and 1 share FA and FM. */
	ck_assert_uint_eq(s->nframes, 3);
	frame_eq(&s->frames[0], &FA);
	frame_eq(&s->frames[1], &FM);
	frame_eq(&s->frames[2], &FB);
	ck_assert_uint_eq(s->traces[0].frames[0], 0);
	ck_assert_uint_eq(s->traces[0].frames[1], 1);
	ck_assert_uint_eq(s->traces[1].frames[0], 2);
	ck_assert_uint_eq(s->traces[1].frames[1], 0);
	ck_assert_uint_eq(s->traces[1].frames[2], 1);
	snapshot_free(s);
}
END_TEST

START_TEST(test_intern_after_read)
{
	/* A snapshot read from JSON has no index yet; interning must find the
	 * frames it already holds, then keep adding. */
	struct snapshot *s = sample(), *r = roundtrip(s);
	struct frame_info g = FB;

	ck_assert_uint_eq(snapshot_intern_frame(r, &FA2), 0);
	ck_assert_uint_eq(snapshot_intern_frame(r, &FB), 2);
	g.lineno = 99;
	ck_assert_uint_eq(snapshot_intern_frame(r, &g), 3);
	ck_assert_uint_eq(snapshot_intern_frame(r, &g), 3);
	ck_assert_uint_eq(r->nframes, 4);
	frame_eq(&r->frames[3], &g);
	frame_eq(&r->frames[2], &FB);
	snapshot_free(r);
	snapshot_free(s);
}
END_TEST

/* ---- the document ---- */

START_TEST(test_document_shape)
{
	static const char *const top[] = {"format", "version", "snapshot", "frames",
	                                  "traces", "largest", NULL};
	static const char *const hdr[] = {"id",      "pid",         "uid",      "exe",
	                                  "cmdline", "start_time",  "taken_at", "reason",
	                                  "current", "peak",        "blocks",   "allocations",
	                                  "frees",   "lost_events", NULL};
	struct snapshot *s = sample();
	cJSON *doc = snapshot_to_json(s);
	const cJSON *h, *a, *t;

	ck_assert_ptr_nonnull(doc);
	keys_are(doc, top);
	ck_assert_str_eq(str(doc, "format"), "memtrace-snapshot");
	ck_assert(num(doc, "version") == 4); /* FB names its debug file */
	{
		/* Without a debug file's name anywhere: version 3, as before. */
		struct snapshot *plain = sample();
		free((char *)plain->frames[2].symbols);
		plain->frames[2].symbols = NULL;
		cJSON *d3 = snapshot_to_json(plain);
		ck_assert(num(d3, "version") == 3);
		cJSON_Delete(d3);
		snapshot_free(plain);
	}
	h = get(doc, "snapshot");
	keys_are(h, hdr);
	ck_assert(num(h, "id") == 42);
	ck_assert(num(h, "pid") == 4242);
	ck_assert(num(h, "uid") == 1000);
	ck_assert_str_eq(str(h, "exe"), "/bin/app");
	a = get(h, "cmdline");
	ck_assert_int_eq(cJSON_GetArraySize(a), 4);
	ck_assert_str_eq(cJSON_GetArrayItem(a, 2)->valuestring, "x y");
	ck_assert_str_eq(cJSON_GetArrayItem(a, 3)->valuestring, "");
	ck_assert(num(h, "start_time") == 123456789);
	ck_assert(num(h, "taken_at") == 1700000000.25);
	ck_assert_str_eq(str(h, "reason"), "manual");
	ck_assert(num(h, "current") == 1350);
	ck_assert(num(h, "peak") == 5000);
	ck_assert(num(h, "blocks") == 14);
	ck_assert(num(h, "allocations") == 118);
	ck_assert(num(h, "frees") == 104);
	ck_assert(num(h, "lost_events") == 7);

	/* frames: [filename, lineno, function, module(, symbols)] */
	a = get(doc, "frames");
	ck_assert_int_eq(cJSON_GetArraySize(a), 3);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(a, 0)), 4);
	t = cJSON_GetArrayItem(a, 2);
	ck_assert_int_eq(cJSON_GetArraySize(t), 5);
	ck_assert_str_eq(cJSON_GetArrayItem(t, 0)->valuestring, "/src/b.c");
	ck_assert(item_num(t, 1) == 20);
	ck_assert_str_eq(cJSON_GetArrayItem(t, 2)->valuestring, "fb");
	ck_assert_str_eq(cJSON_GetArrayItem(t, 3)->valuestring, "/lib/libb.so");
	ck_assert_str_eq(cJSON_GetArrayItem(t, 4)->valuestring, FB_DEBUG);

	/* traces: [size, count, allocations, allocated, temporary, peak_size,
	 * peak_count, [frame index], [address]] */
	a = get(doc, "traces");
	ck_assert_int_eq(cJSON_GetArraySize(a), 3);
	t = cJSON_GetArrayItem(a, 1);
	ck_assert_int_eq(cJSON_GetArraySize(t), 9);
	ck_assert(item_num(t, 0) == 300);
	ck_assert(item_num(t, 1) == 3);
	ck_assert(item_num(t, 2) == 3);
	ck_assert(item_num(t, 3) == 903);
	ck_assert(item_num(t, 4) == 1);
	ck_assert(item_num(t, 5) == 601);
	ck_assert(item_num(t, 6) == 4);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(t, 7)), 3);
	ck_assert(item_num(cJSON_GetArrayItem(t, 7), 0) == 2);
	ck_assert(item_num(cJSON_GetArrayItem(t, 7), 1) == 0);
	ck_assert(item_num(cJSON_GetArrayItem(t, 7), 2) == 1);
	ck_assert(item_num(cJSON_GetArrayItem(t, 8), 0) == (double)0x7f0000002000);
	ck_assert(item_num(cJSON_GetArrayItem(t, 8), 1) == (double)0x401004);
	t = cJSON_GetArrayItem(a, 2);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(t, 7)), 0);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(t, 8)), 0);

	/* largest: [address, size, trace index] */
	a = get(doc, "largest");
	ck_assert_int_eq(cJSON_GetArraySize(a), 4);
	t = cJSON_GetArrayItem(a, 1);
	ck_assert_int_eq(cJSON_GetArraySize(t), 3);
	ck_assert(item_num(t, 0) == (double)0x7f0000003000);
	ck_assert(item_num(t, 1) == 200);
	ck_assert(item_num(t, 2) == 1);
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_roundtrip)
{
	struct snapshot *s = sample(), *r = roundtrip(s), *r2;
	cJSON *d1, *d2;
	char *t1, *t2;

	snap_eq(s, r);
	snapshot_free(r);
	r = direct(s);
	snap_eq(s, r);
	/* Twice through gives the same text. */
	r2 = roundtrip(r);
	snap_eq(s, r2);
	d1 = snapshot_to_json(s);
	d2 = snapshot_to_json(r2);
	t1 = cJSON_PrintUnformatted(d1);
	t2 = cJSON_PrintUnformatted(d2);
	ck_assert_str_eq(t1, t2);
	cJSON_free(t1);
	cJSON_free(t2);
	cJSON_Delete(d1);
	cJSON_Delete(d2);
	snapshot_free(r2);
	snapshot_free(r);
	snapshot_free(s);
}
END_TEST

START_TEST(test_roundtrip_empty_and_edges)
{
	/* Nothing set: exe NULL and argv NULL come back as "" and []. */
	struct snapshot *s = snapshot_new(), *r;

	s->pid = 1;
	r = roundtrip(s);
	ck_assert_str_eq(r->exe, "");
	ck_assert_ptr_nonnull(r->argv);
	ck_assert_ptr_null(r->argv[0]);
	ck_assert_str_eq(r->reason, "");
	ck_assert_uint_eq(r->nframes + r->ntraces + r->nlargest, 0);
	snapshot_free(r);
	snapshot_free(s);

	/* Extremes of every range, exactly representable. */
	s = sample();
	s->id = INT64_C(1) << 53;
	s->pid = INT_MAX;
	s->uid = UINT32_MAX;
	s->start_time = (UINT64_C(1) << 53) - 1;
	s->current = UINT64_C(1) << 53;
	s->peak = UINT64_C(1) << 62; /* > 2^53, but a power of two: exact */
	s->frees = 0;
	s->taken_at = 0;
	s->frames[0].lineno = UINT32_MAX;
	s->traces[0].addrs[0] = UINT64_C(0xff00000000000000); /* a tagged pointer: exact */
	s->largest[0].addr = (UINT64_C(1) << 53) - 1;
	strcpy(s->reason, "123456789012345"); /* 15 bytes, the most */
	/* 16 digits: cJSON alone would print these with 15 and lose the last. */
	s->blocks = UINT64_C(4503599627370501);
	s->allocations = (UINT64_C(1) << 53) - 1;
	s->traces[1].addrs[0] = UINT64_C(0xfedcba9876543); /* 52-bit VA */
	s->largest[0].size = UINT64_C(2000000000000003);
	s->largest[1].size = s->largest[2].size = UINT64_C(1000000000000001);
	r = roundtrip(s);
	snap_eq(s, r);
	snapshot_free(r);
	r = direct(s);
	snap_eq(s, r);
	snapshot_free(r);

	/* An unterminated reason is written as its first 15 bytes. */
	memset(s->reason, 'x', sizeof s->reason);
	r = roundtrip(s);
	ck_assert_str_eq(r->reason, "xxxxxxxxxxxxxxx");
	snapshot_free(r);
	snapshot_free(s);
}
END_TEST

START_TEST(test_large_values_rounded)
{
	/* A value above 2^53 that a double cannot hold is written rounded
	 * (to the nearest double) and still read back. */
	struct snapshot *s = sample(), *r;
	uint64_t big = (UINT64_C(1) << 60) + 1;

	s->traces[0].addrs[1] = big;
	s->peak = UINT64_MAX;
	r = roundtrip(s);
	ck_assert_uint_eq(r->traces[0].addrs[1], UINT64_C(1) << 60);
	/* UINT64_MAX would round up to 2^64, which is no uint64: it comes
	 * back as the largest double below. */
	ck_assert_uint_eq(r->peak, UINT64_C(0xfffffffffffff800));
	snapshot_free(r);
	snapshot_free(s);
}
END_TEST

START_TEST(test_writer_limits)
{
	/* What the writer writes, the reader reads: strings and command lines
	 * longer than the reader accepts are clipped on the way out. */
	struct snapshot *s = sample(), *r;
	char *big = xalloc_or_fail(malloc(MAX_STRING + 100));
	char **argv = xalloc_or_fail(calloc(MAX_ARGS + 11, sizeof *argv));

	/* 65535 'a' then two-byte characters: the cut at 65536 falls inside
	 * one, so the character goes whole. */
	memset(big, 'a', MAX_STRING - 1);
	for (size_t i = MAX_STRING - 1; i + 2 < MAX_STRING + 99; i += 2) {
		big[i] = (char)0xc3;
		big[i + 1] = (char)0xa9;
	}
	big[MAX_STRING + 99] = '\0';
	free(s->exe);
	s->exe = big;
	free((char *)s->frames[1].function);
	s->frames[1].function = sdup(big);
	for (size_t i = 0; s->argv[i] != NULL; i++)
		free(s->argv[i]);
	free(s->argv);
	for (size_t i = 0; i < MAX_ARGS + 10; i++)
		argv[i] = sdup(i == 0 ? "/bin/app" : "arg");
	s->argv = argv;
	r = roundtrip(s);
	ck_assert_uint_eq(strlen(r->exe), MAX_STRING - 1);
	ck_assert_int_eq(strncmp(r->exe, big, MAX_STRING - 1), 0);
	ck_assert_uint_eq(strlen(r->frames[1].function), MAX_STRING - 1);
	size_t n = 0;
	while (r->argv[n] != NULL)
		n++;
	ck_assert_uint_eq(n, MAX_ARGS);

	/* A string of exactly the limit is kept whole. */
	snapshot_free(r);
	big[MAX_STRING] = '\0';
	memset(big, 'b', MAX_STRING);
	r = roundtrip(s);
	ck_assert_uint_eq(strlen(r->exe), MAX_STRING);
	snapshot_free(r);
	snapshot_free(s);
}
END_TEST

/* ---- malformed documents ---- */

/* Replaces (json != NULL) or removes the value at path ("snapshot/pid",
 * "traces/1/3/0"; an array index equal to the length appends). */
static void mutate(cJSON *doc, const char *path, cJSON *v)
{
	char buf[128], *save = NULL, *tok, *next;
	cJSON *parent = doc;

	ck_assert_uint_lt(strlen(path), sizeof buf);
	strcpy(buf, path);
	tok = strtok_r(buf, "/", &save);
	ck_assert_ptr_nonnull(tok);
	while ((next = strtok_r(NULL, "/", &save)) != NULL) {
		parent = cJSON_IsArray(parent) ? cJSON_GetArrayItem(parent, atoi(tok))
		                               : cJSON_GetObjectItemCaseSensitive(parent, tok);
		ck_assert_msg(parent != NULL, "bad path %s", path);
		tok = next;
	}
	if (cJSON_IsArray(parent)) {
		int i = atoi(tok);
		if (v == NULL)
			cJSON_DeleteItemFromArray(parent, i);
		else if (i == cJSON_GetArraySize(parent))
			ck_assert(cJSON_AddItemToArray(parent, v));
		else
			ck_assert(cJSON_ReplaceItemInArray(parent, i, v));
	} else if (v == NULL) {
		cJSON_DeleteItemFromObjectCaseSensitive(parent, tok);
	} else if (cJSON_GetObjectItemCaseSensitive(parent, tok) != NULL) {
		ck_assert(cJSON_ReplaceItemInObjectCaseSensitive(parent, tok, v));
	} else {
		ck_assert(cJSON_AddItemToObject(parent, tok, v));
	}
}

static void expect_reject(cJSON *doc, const char *what, const char *expect)
{
	char err[256];
	struct snapshot *r = (struct snapshot *)&r; /* not NULL: must be reset */
	int e = snapshot_from_json(doc, &r, err, sizeof err);

	ck_assert_msg(e == -EINVAL, "%s: accepted (%d)", what, e);
	ck_assert_msg(r == NULL, "%s: result not reset", what);
	ck_assert_msg(strstr(err, expect) != NULL, "%s: message '%s' lacks '%s'", what, err,
	              expect);
}

#define DEL NULL
static const struct bad {
	const char *path;
	const char *json; /* DEL removes */
	const char *expect;
} bad_cases[] = {
    {"format", "\"memtrace-snapshot2\"", "not a memtrace snapshot file"},
    {"format", "\"\"", "not a memtrace snapshot file"},
    {"format", "5", "not a memtrace snapshot file"},
    {"format", DEL, "not a memtrace snapshot file"},
    {"version", "5", "unsupported version 5"},
    {"version", "0", "unsupported version 0"},
    {"version", "1.5", "unsupported version 1.5"},
    {"version", "-1", "unsupported version -1"},
    {"version", "\"1\"", "version: expected a number, got a string"},
    {"version", DEL, "version: expected a number, got missing"},
    {"snapshot", DEL, "snapshot: expected an object, got missing"},
    {"snapshot", "[]", "snapshot: expected an object, got an array"},
    {"snapshot", "null", "snapshot: expected an object, got null"},
    {"snapshot/id", "-1", "snapshot.id: -1 is not a non-negative integer"},
    {"snapshot/id", "1.5", "snapshot.id: 1.5 is not an integer"},
    {"snapshot/id", "\"42\"", "snapshot.id: expected an integer, got a string"},
    {"snapshot/id", "1e300", "snapshot.id: 1.0000000000000001e+300 is not a non-negative"},
    {"snapshot/id", "1e999", "snapshot.id: inf is not a non-negative integer"},
    {"snapshot/id", "-1e999", "snapshot.id: -inf is not"},
    {"snapshot/id", "true", "snapshot.id: expected an integer, got a boolean"},
    {"snapshot/id", DEL, "snapshot.id: expected an integer, got missing"},
    {"snapshot/pid", "0", "snapshot.pid: 0 is not a process id"},
    {"snapshot/pid", "-5", "snapshot.pid: -5 is not"},
    {"snapshot/pid", "2147483648", "snapshot.pid: 2147483648 is out of range"},
    {"snapshot/pid", "4242.5", "snapshot.pid: 4242.5 is not an integer"},
    {"snapshot/pid", "null", "snapshot.pid: expected an integer, got null"},
    {"snapshot/uid", "4294967296", "snapshot.uid: 4294967296 is out of range"},
    {"snapshot/uid", "-1", "snapshot.uid"},
    {"snapshot/exe", "5", "snapshot.exe: expected a string, got a number"},
    {"snapshot/exe", "null", "snapshot.exe: expected a string"},
    {"snapshot/exe", DEL, "snapshot.exe: expected a string, got missing"},
    {"snapshot/cmdline", "\"/bin/app --flag\"", "snapshot.cmdline: expected an array"},
    {"snapshot/cmdline", "{}", "snapshot.cmdline: expected an array, got an object"},
    {"snapshot/cmdline", DEL, "snapshot.cmdline: expected an array, got missing"},
    {"snapshot/cmdline/1", "1", "snapshot.cmdline[1]: expected a string, got a number"},
    {"snapshot/cmdline/4", "null", "snapshot.cmdline[4]: expected a string, got null"},
    {"snapshot/start_time", "-1", "snapshot.start_time: -1 is not"},
    {"snapshot/start_time", "0.5", "snapshot.start_time: 0.5 is not an integer"},
    {"snapshot/start_time", "18446744073709551616", "snapshot.start_time"},
    {"snapshot/taken_at", "\"now\"", "snapshot.taken_at: expected a number, got a string"},
    {"snapshot/taken_at", "-1", "snapshot.taken_at: -1 is not a time"},
    {"snapshot/taken_at", "1e999", "snapshot.taken_at: inf is not a time"},
    {"snapshot/taken_at", DEL, "snapshot.taken_at: expected a number, got missing"},
    {"snapshot/reason", "\"1234567890123456\"", "snapshot.reason: string longer than 15"},
    {"snapshot/reason", "7", "snapshot.reason: expected a string"},
    {"snapshot/reason", DEL, "snapshot.reason: expected a string, got missing"},
    {"snapshot/current", "-1", "snapshot.current: -1 is not"},
    {"snapshot/peak", "1.25", "snapshot.peak: 1.25 is not an integer"},
    {"snapshot/blocks", "\"14\"", "snapshot.blocks: expected an integer, got a string"},
    {"snapshot/allocations", DEL, "snapshot.allocations: expected an integer, got missing"},
    {"snapshot/frees", "[]", "snapshot.frees: expected an integer, got an array"},
    {"snapshot/lost_events", "-0.5", "snapshot.lost_events: -0.5 is not"},
    {"snapshot/sample_bytes", "-1", "snapshot.sample_bytes: -1 is not"},
    {"snapshot/sample_bytes", "4096.5", "snapshot.sample_bytes: 4096.5 is not an integer"},
    {"snapshot/sample_bytes", "\"4096\"", "snapshot.sample_bytes: expected an integer, got a"},
    {"snapshot/sample_bytes", "null", "snapshot.sample_bytes: expected an integer, got null"},
    {"frames", DEL, "frames: expected an array, got missing"},
    {"frames", "{}", "frames: expected an array, got an object"},
    {"frames", "\"x\"", "frames: expected an array, got a string"},
    {"frames/1", "{}", "frames[1]: expected an array, got an object"},
    {"frames/1", "[\"/a.c\", 1, \"f\"]", "frames[1]: expected 4 to 5 elements, got 3"},
    {"frames/1", "[\"/a.c\", 1, \"f\", \"m\", 5]",
     "frames[1][4] (symbols): expected a string, got a number"},
    {"frames/1", "[\"/a.c\", 1, \"f\", \"m\", \"/m.debug\", \"x\"]",
     "frames[1]: expected 4 to 5 elements, got more"},
    {"frames/2", "[]", "frames[2]: expected 4 to 5 elements, got 0"},
    {"frames/0/0", "1", "frames[0][0] (filename): expected a string, got a number"},
    {"frames/0/1", "-1", "frames[0][1] (lineno): -1 is not"},
    {"frames/0/1", "4294967296", "frames[0][1] (lineno): 4294967296 is out of range"},
    {"frames/0/1", "\"10\"", "frames[0][1] (lineno): expected an integer, got a string"},
    {"frames/1/2", "null", "frames[1][2] (function): expected a string, got null"},
    {"frames/2/3", "[]", "frames[2][3] (module): expected a string, got an array"},
    {"traces", DEL, "traces: expected an array, got missing"},
    {"traces", "{\"0\": 1}", "traces: expected an array, got an object"},
    {"traces/0", "5", "traces[0]: expected an array, got a number"},
    {"traces/1", "[300, 3, 3, 903, 1, 601, 4, [2, 0, 1]]", "traces[1]: expected 9 elements, got 8"},
    {"traces/1", "[300, 3, 3, 903, 1, 601, 4, [], [], 7]",
     "traces[1]: expected 9 elements, got more"},
    {"traces/1/0", "-300", "traces[1][0] (size): -300 is not"},
    {"traces/1/1", "3.5", "traces[1][1] (count): 3.5 is not an integer"},
    {"traces/1/2", "\"3\"", "traces[1][2] (allocations): expected an integer"},
    {"traces/1/3", "-1", "traces[1][3] (allocated): -1 is not"},
    {"traces/1/4", "null", "traces[1][4] (temporary): expected an integer, got null"},
    {"traces/1/5", "true", "traces[1][5] (peak_size): expected an integer"},
    {"traces/1/6", "-2", "traces[1][6] (peak_count): -2 is not"},
    {"traces/1/7", "{}", "traces[1][7] (frames): expected an array, got an object"},
    {"traces/1/8", "\"0x401000\"", "traces[1][8] (addresses): expected an array"},
    {"traces/1/8/2", DEL, "traces[1]: 3 frames but 2 addresses"},
    {"traces/1/7/3", "0", "traces[1]: 4 frames but 3 addresses"},
    {"traces/1/7/1", "3", "traces[1]: frame index 3 out of range (3 frames)"},
    {"traces/0/7/0", "17", "traces[0]: frame index 17 out of range (3 frames)"},
    {"traces/1/7/1", "-1", "traces[1][7][1]: -1 is not"},
    {"traces/1/7/1", "0.5", "traces[1][7][1]: 0.5 is not an integer"},
    {"traces/1/7/1", "4294967296", "traces[1][7][1]: 4294967296 is out of range"},
    {"traces/1/7/2", "null", "traces[1][7][2]: expected an integer, got null"},
    {"traces/1/8/0", "-4096", "traces[1][8][0]: -4096 is not"},
    {"traces/1/8/2", "1.5", "traces[1][8][2]: 1.5 is not an integer"},
    {"traces/1/8/2", "18446744073709551616", "traces[1][8][2]: 1.8446744073709552e+19 is not"},
    {"largest", DEL, "largest: expected an array, got missing"},
    {"largest", "3", "largest: expected an array, got a number"},
    {"largest/0", "[1, 2]", "largest[0]: expected 3 elements, got 2"},
    {"largest/0", "{}", "largest[0]: expected an array"},
    {"largest/3/0", "-1", "largest[3][0] (address): -1 is not"},
    {"largest/3/1", "\"50\"", "largest[3][1] (size): expected an integer"},
    {"largest/3/2", "3", "largest[3]: trace index 3 out of range (3 traces)"},
    {"largest/3/2", "1.5", "largest[3][2] (trace): 1.5 is not an integer"},
    {"largest/3/2", "-1", "largest[3][2] (trace): -1 is not"},
    {"largest/3/1", "201", "largest[3]: not sorted by size, descending"},
    {"largest/4", "[1, 1000, 0]", "largest[4]: not sorted by size, descending"},
};

START_TEST(test_reject_each)
{
	const struct bad *b = &bad_cases[_i];
	struct snapshot *s = sample();
	cJSON *doc = snapshot_to_json(s);
	cJSON *v = NULL;
	char what[160];

	ck_assert_ptr_nonnull(doc);
	if (b->json != DEL) {
		v = cJSON_Parse(b->json);
		ck_assert_msg(v != NULL, "case %d: bad test json", _i);
	}
	mutate(doc, b->path, v);
	snprintf(what, sizeof what, "case %d (%s = %s)", _i, b->path, b->json ? b->json : "DEL");
	expect_reject(doc, what, b->expect);
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_reject_not_object)
{
	static const char *const docs[] = {"[]", "1", "\"memtrace-snapshot\"", "null", "true"};

	for (size_t i = 0; i < N(docs); i++) {
		cJSON *d = cJSON_Parse(docs[i]);
		ck_assert_ptr_nonnull(d);
		expect_reject(d, docs[i], "not a memtrace snapshot file (not a JSON object)");
		cJSON_Delete(d);
	}
	expect_reject(NULL, "NULL", "not a memtrace snapshot file");
}
END_TEST

/* Values no JSON text can hold, set on the tree directly. */
START_TEST(test_reject_nan)
{
	struct snapshot *s = sample();
	cJSON *doc = snapshot_to_json(s);

	mutate(doc, "snapshot/current", cJSON_CreateNumber(NAN));
	expect_reject(doc, "current NaN", "snapshot.current: nan is not a non-negative integer");
	mutate(doc, "snapshot/current", cJSON_CreateNumber(1));
	mutate(doc, "snapshot/taken_at", cJSON_CreateNumber(NAN));
	expect_reject(doc, "taken_at NaN", "snapshot.taken_at: nan is not a time");
	mutate(doc, "snapshot/taken_at", cJSON_CreateNumber(1));
	mutate(doc, "version", cJSON_CreateNumber(NAN));
	expect_reject(doc, "version NaN", "unsupported version nan");
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_reject_raw)
{
	/* Raw numbers reach the reader only from a tree built in process;
	 * they must still be plain decimal integers in range. */
	static const struct {
		const char *raw;
		const char *expect;
	} cases[] = {
	    {"abc", "snapshot.current: expected an integer, got raw text"},
	    {"", "snapshot.current: expected an integer, got raw text"},
	    {"-1", "snapshot.current: expected an integer, got raw text"},
	    {"1.5", "snapshot.current: expected an integer, got raw text"},
	    {"12 ", "snapshot.current: expected an integer, got raw text"},
	    {"18446744073709551616", "snapshot.current: 18446744073709551616 is out of range"},
	    {"99999999999999999999999", "snapshot.current: 99999999999999999999999 is out of"},
	};
	struct snapshot *s = sample(), *r = NULL;
	cJSON *doc = snapshot_to_json(s);

	for (size_t i = 0; i < N(cases); i++) {
		mutate(doc, "snapshot/current", cJSON_CreateRaw(cases[i].raw));
		expect_reject(doc, cases[i].raw, cases[i].expect);
	}
	mutate(doc, "snapshot/pid", cJSON_CreateRaw("2147483648"));
	expect_reject(doc, "raw pid", "snapshot.pid: 2147483648 is out of range");
	mutate(doc, "snapshot/pid", cJSON_CreateNumber(1));
	mutate(doc, "snapshot/current", cJSON_CreateRaw("18446744073709551615"));
	ck_assert_int_eq(snapshot_from_json(doc, &r, NULL, 0), 0);
	ck_assert_uint_eq(r->current, UINT64_MAX);
	snapshot_free(r);
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_reject_huge)
{
	struct snapshot *s = sample();
	cJSON *doc = snapshot_to_json(s), *a;
	char *big = xalloc_or_fail(malloc(MAX_STRING + 2));

	memset(big, 'x', MAX_STRING + 1);
	big[MAX_STRING + 1] = '\0';
	mutate(doc, "snapshot/exe", cJSON_CreateString(big));
	expect_reject(doc, "huge exe", "snapshot.exe: string longer than 65536 bytes");
	mutate(doc, "snapshot/exe", cJSON_CreateString("/bin/app"));

	mutate(doc, "frames/1/2", cJSON_CreateString(big));
	expect_reject(doc, "huge function", "frames[1][2] (function): string longer than 65536");
	mutate(doc, "frames/1/2", cJSON_CreateString("main"));

	mutate(doc, "snapshot/cmdline/2", cJSON_CreateString(big));
	expect_reject(doc, "huge arg", "snapshot.cmdline[2]: string longer than 65536 bytes");
	big[MAX_STRING] = '\0'; /* exactly the limit: fine */
	mutate(doc, "snapshot/cmdline/2", cJSON_CreateString(big));
	struct snapshot *r = NULL;
	ck_assert_int_eq(snapshot_from_json(doc, &r, NULL, 0), 0);
	ck_assert_uint_eq(strlen(r->argv[2]), MAX_STRING);
	snapshot_free(r);

	/* Too many arguments. */
	a = cJSON_CreateArray();
	for (int i = 0; i < MAX_ARGS + 1; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString("a"));
	mutate(doc, "snapshot/cmdline", a);
	expect_reject(doc, "many args", "snapshot.cmdline: more than 65536 elements");
	cJSON_DeleteItemFromArray(a, 0);
	r = NULL;
	ck_assert_int_eq(snapshot_from_json(doc, &r, NULL, 0), 0);
	snapshot_free(r);

	/* Too deep a trace: 257 frames. */
	a = cJSON_CreateArray();
	for (int i = 0; i < MAX_DEPTH + 1; i++)
		cJSON_AddItemToArray(a, cJSON_CreateNumber(0));
	mutate(doc, "traces/2/7", a);
	expect_reject(doc, "deep trace", "traces[2][7] (frames): more than 256 elements");
	/* 256 is fine when the addresses match. */
	cJSON_DeleteItemFromArray(a, 0);
	mutate(doc, "traces/2/8", cJSON_Duplicate(a, 1));
	r = NULL;
	ck_assert_int_eq(snapshot_from_json(doc, &r, NULL, 0), 0);
	ck_assert_uint_eq(r->traces[2].nframes, MAX_DEPTH);
	snapshot_free(r);
	free(big);
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_read_version_1)
{
	/* Version 1 (before temporaries): traces are [size, count, allocations,
	 * [frame index], [address]]; allocated and temporary read as 0, the
	 * rest as written. A version 1 document with version 2's traces is
	 * refused. */
	struct snapshot *s = sample(), *r = NULL;
	cJSON *doc = snapshot_to_json(s);
	char err[256];
	cJSON *t;

	/* Version 3: frames without a debug file's name. */
	mutate(doc, "version", cJSON_CreateNumber(3));
	expect_reject(doc, "v3 with v4 frames", "frames[2]: expected 4 elements, got more");
	cJSON_DeleteItemFromArray(cJSON_GetArrayItem(get(doc, "frames"), 2), 4);
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, sizeof err), 0);
	ck_assert_ptr_null(r->frames[2].symbols);
	free((char *)s->frames[2].symbols);
	s->frames[2].symbols = NULL;
	snap_eq(s, r);
	snapshot_free(r);
	r = NULL;
	/* Version 2: without the peak. */
	mutate(doc, "version", cJSON_CreateNumber(2));
	expect_reject(doc, "v2 with v3 traces", "traces[0]: expected 7 elements, got more");
	cJSON_ArrayForEach(t, get(doc, "traces"))
	{
		cJSON_DeleteItemFromArray(t, 6);
		cJSON_DeleteItemFromArray(t, 5);
	}
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, sizeof err), 0);
	for (size_t i = 0; i < s->ntraces; i++) {
		ck_assert_uint_eq(r->traces[i].peak_size, 0);
		ck_assert_uint_eq(r->traces[i].peak_count, 0);
		s->traces[i].peak_size = s->traces[i].peak_count = 0;
	}
	snap_eq(s, r);
	snapshot_free(r);
	r = NULL;
	/* Version 1: nor allocated and temporary. */
	mutate(doc, "version", cJSON_CreateNumber(1));
	expect_reject(doc, "v1 with v2 traces", "traces[0]: expected 5 elements, got more");
	cJSON_ArrayForEach(t, get(doc, "traces"))
	{
		cJSON_DeleteItemFromArray(t, 4);
		cJSON_DeleteItemFromArray(t, 3);
	}
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, sizeof err), 0);
	ck_assert_uint_eq(r->ntraces, s->ntraces);
	for (size_t i = 0; i < s->ntraces; i++) {
		ck_assert_uint_eq(r->traces[i].allocated, 0);
		ck_assert_uint_eq(r->traces[i].temporary, 0);
		s->traces[i].allocated = s->traces[i].temporary = 0;
	}
	snap_eq(s, r);
	snapshot_free(r);
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_accept_variants)
{
	/* Unknown keys are ignored (room for additions without a version
	 * bump); version 4.0 is 4; equal sizes in "largest" are sorted. */
	struct snapshot *s = sample(), *r = NULL;
	cJSON *doc = snapshot_to_json(s);
	char err[256];

	mutate(doc, "comment", cJSON_CreateString("hello"));
	mutate(doc, "snapshot/hostname", cJSON_CreateString("box"));
	mutate(doc, "version", cJSON_CreateNumber(4.0));
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, sizeof err), 0);
	snap_eq(s, r);
	snapshot_free(r);

	/* Frames a file holds twice are kept as they are. */
	mutate(doc, "frames/3", cJSON_Duplicate(cJSON_GetArrayItem(get(doc, "frames"), 0), 1));
	r = NULL;
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, sizeof err), 0);
	ck_assert_uint_eq(r->nframes, 4);
	ck_assert_uint_eq(snapshot_intern_frame(r, &FA), 0);
	snapshot_free(r);

	/* No room for a message is fine. */
	mutate(doc, "snapshot/pid", cJSON_CreateNumber(-1));
	r = NULL;
	ck_assert_int_eq(snapshot_from_json(doc, &r, NULL, 0), -EINVAL);
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, 1), -EINVAL);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, 8), -EINVAL);
	ck_assert_str_eq(err, "snapsho");
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

START_TEST(test_corrupt_random)
{
	/* Random damage to the text of a valid document: whatever cJSON still
	 * parses is either refused with a message or read into a snapshot
	 * whose indexes all hold (its views build; the sanitizers watch). */
	struct snapshot *s = sample();
	cJSON *doc = snapshot_to_json(s);
	char *good = cJSON_PrintUnformatted(doc);
	size_t len = strlen(good);
	char *buf = xalloc_or_fail(malloc(len + 1));
	static const char alphabet[] = "0123456789-.e[]{},:\" x";
	uint64_t seed = 12345;
	int parsed = 0, accepted = 0;

	for (int it = 0; it < 20000; it++) {
		memcpy(buf, good, len + 1);
		for (int k = 0, n = 1 + it % 3; k < n; k++) {
			seed = seed * 6364136223846793005u + 1442695040888963407u;
			buf[(seed >> 33) % len] = alphabet[(seed >> 20) % (sizeof alphabet - 1)];
		}
		cJSON *d = cJSON_ParseWithLength(buf, len);
		if (d == NULL)
			continue;
		parsed++;
		char err[256] = "";
		struct snapshot *r = NULL;
		int e = snapshot_from_json(d, &r, err, sizeof err);
		cJSON_Delete(d);
		if (e != 0) {
			if (e != -EINVAL || r != NULL || err[0] == '\0')
				ck_abort_msg("iteration %d: %d '%s'", it, e, err);
			continue;
		}
		accepted++;
		for (size_t i = 0; i < r->ntraces; i++)
			for (uint32_t j = 0; j < r->traces[i].nframes; j++)
				if (r->traces[i].frames[j] >= r->nframes)
					ck_abort_msg("iteration %d: bad index", it);
		for (size_t i = 0; i < r->nlargest; i++)
			if (r->largest[i].trace >= r->ntraces)
				ck_abort_msg("iteration %d: bad trace", it);
		void *storage;
		size_t ng;
		snapshot_groups(r, false, &storage, &ng);
		free(storage);
		cJSON_Delete(snapshot_traceback_json(r, 0));
		snapshot_free(r);
	}
	/* The test means something only if both outcomes happen. */
	ck_assert_int_gt(parsed, accepted);
	ck_assert_int_gt(accepted, 0);
	free(buf);
	cJSON_free(good);
	cJSON_Delete(doc);
	snapshot_free(s);
}
END_TEST

/* ---- files ---- */

struct tmpdir {
	char path[64];
};

static void tmpdir_make(struct tmpdir *d)
{
	const char *base = getenv("TMPDIR");

	snprintf(d->path, sizeof d->path, "%s/snapXXXXXX",
	         base != NULL && strlen(base) < 40 ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(d->path));
}

static char *in_dir(const struct tmpdir *d, const char *name)
{
	char *p = xalloc_or_fail(malloc(strlen(d->path) + strlen(name) + 2));

	sprintf(p, "%s/%s", d->path, name);
	return p;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The names in d, sorted, joined by spaces. */
static void dir_list(const struct tmpdir *d, char *out, size_t outlen)
{
	DIR *dir = opendir(d->path);
	struct dirent *e;
	char names[16][256];
	size_t n = 0;

	ck_assert_ptr_nonnull(dir);
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		ck_assert_uint_lt(n, N(names));
		snprintf(names[n++], sizeof names[0], "%s", e->d_name);
	}
	closedir(dir);
	qsort(names, n, sizeof names[0], name_cmp);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strncat(out, " ", outlen - strlen(out) - 1);
		strncat(out, names[i], outlen - strlen(out) - 1);
	}
}

static void rm_tree(const struct tmpdir *d)
{
	DIR *dir = opendir(d->path);
	struct dirent *e;

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *p = in_dir(d, e->d_name);
		if (unlink(p) < 0)
			rmdir(p);
		free(p);
	}
	closedir(dir);
	rmdir(d->path);
}

static void write_text(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

START_TEST(test_file_roundtrip)
{
	struct tmpdir d;
	struct snapshot *s = sample(), *r = NULL;
	char err[256], list[256];
	char *path;
	struct stat st;
	mode_t old = umask(022);

	tmpdir_make(&d);
	path = in_dir(&d, "snap.json");
	ck_assert_int_eq(snapshot_write_file(s, path), 0);
	ck_assert_int_eq(snapshot_read_file(path, &r, err, sizeof err), 0);
	snap_eq(s, r);
	snapshot_free(r);
	ck_assert_int_eq(stat(path, &st), 0);
	/* A process's command line and stacks: its owner's alone, whatever
	 * the umask lets others read. */
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	dir_list(&d, list, sizeof list);
	ck_assert_str_eq(list, "snap.json"); /* no temporary left behind */

	/* A stricter umask still applies. */
	umask(0277);
	ck_assert_int_eq(snapshot_write_file(s, path), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0400);
	umask(old);

	/* The file is a JSON document with a final newline. */
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, -1, SEEK_END), 0);
	ck_assert_int_eq(fgetc(f), '\n');
	fclose(f);
	free(path);
	rm_tree(&d);
	snapshot_free(s);
}
END_TEST

START_TEST(test_file_replaced_atomically)
{
	/* Writing over an existing snapshot replaces it by rename: a reader
	 * that opened the old file keeps reading all of the old one, the
	 * name points to a new inode, and no temporary is left. */
	struct tmpdir d;
	struct snapshot *a = sample(), *b = sample(), *r = NULL;
	char err[256], list[256];
	char *path, *sub, *old_text;
	struct stat st1, st2;
	int fd;

	tmpdir_make(&d);
	path = in_dir(&d, "snap.json");
	b->id = 43;
	b->current = 999;
	ck_assert_int_eq(snapshot_write_file(a, path), 0);
	ck_assert_int_eq(stat(path, &st1), 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(snapshot_write_file(b, path), 0);
	ck_assert_int_eq(stat(path, &st2), 0);
	ck_assert_uint_ne(st1.st_ino, st2.st_ino);

	old_text = xalloc_or_fail(malloc((size_t)st1.st_size + 1));
	ck_assert_int_eq(read(fd, old_text, (size_t)st1.st_size + 1), st1.st_size);
	old_text[st1.st_size] = '\0';
	close(fd);
	cJSON *doc = cJSON_Parse(old_text);
	ck_assert_ptr_nonnull(doc);
	ck_assert_int_eq(snapshot_from_json(doc, &r, err, sizeof err), 0);
	snap_eq(a, r);
	snapshot_free(r);
	cJSON_Delete(doc);
	free(old_text);

	ck_assert_int_eq(snapshot_read_file(path, &r, err, sizeof err), 0);
	snap_eq(b, r);
	snapshot_free(r);

	/* A failed write leaves neither a temporary nor a changed file. */
	sub = in_dir(&d, "sub");
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_lt(snapshot_write_file(a, sub), 0); /* rename onto a directory */
	dir_list(&d, list, sizeof list);
	ck_assert_str_eq(list, "snap.json sub");
	free(sub);
	sub = in_dir(&d, "missing/snap.json");
	ck_assert_int_eq(snapshot_write_file(a, sub), -ENOENT);
	ck_assert_int_eq(snapshot_write_file(a, ""), -EINVAL);
	free(sub);
	ck_assert_int_eq(snapshot_read_file(path, &r, err, sizeof err), 0);
	snap_eq(b, r);
	snapshot_free(r);

	free(path);
	rm_tree(&d);
	snapshot_free(a);
	snapshot_free(b);
}
END_TEST

START_TEST(test_file_relative_path)
{
	/* A bare file name is written in the current directory. */
	struct tmpdir d;
	struct snapshot *s = sample(), *r = NULL;
	char cwd[4096], err[256], list[256];

	tmpdir_make(&d);
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
	ck_assert_int_eq(chdir(d.path), 0);
	ck_assert_int_eq(snapshot_write_file(s, "rel.json"), 0);
	ck_assert_int_eq(snapshot_read_file("rel.json", &r, err, sizeof err), 0);
	snap_eq(s, r);
	snapshot_free(r);
	ck_assert_int_eq(chdir(cwd), 0);
	dir_list(&d, list, sizeof list);
	ck_assert_str_eq(list, "rel.json");
	rm_tree(&d);
	snapshot_free(s);
}
END_TEST

static int read_text(const struct tmpdir *d, const char *text, size_t len, char *err, size_t errlen)
{
	char *path = in_dir(d, "in.json");
	struct snapshot *r = (struct snapshot *)&r;
	int e;

	write_text(path, text, len);
	e = snapshot_read_file(path, &r, err, errlen);
	if (e == 0)
		snapshot_free(r);
	else
		ck_assert_ptr_null(r);
	free(path);
	return e;
}

START_TEST(test_file_malformed)
{
	struct tmpdir d;
	struct snapshot *s = sample(), *r = NULL;
	cJSON *doc = snapshot_to_json(s);
	char *good = cJSON_PrintUnformatted(doc);
	size_t glen = strlen(good);
	char *buf = xalloc_or_fail(malloc(glen + 64));
	char err[256];
	char *path;

	tmpdir_make(&d);

	/* Sanity: the good text, with white space around, reads. */
	snprintf(buf, glen + 64, "\n  %s \n\t\n", good);
	ck_assert_int_eq(read_text(&d, buf, strlen(buf), err, sizeof err), 0);

	ck_assert_int_eq(read_text(&d, "", 0, err, sizeof err), -EINVAL);
	ck_assert_str_eq(err, "not a memtrace snapshot file (invalid JSON at byte 0)");
	ck_assert_int_eq(read_text(&d, "hello", 5, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a memtrace snapshot file (invalid JSON"));
	ck_assert_int_eq(read_text(&d, "[1,2]", 5, err, sizeof err), -EINVAL);
	ck_assert_str_eq(err, "not a memtrace snapshot file (not a JSON object)");
	ck_assert_int_eq(read_text(&d, "{\"format\":\"other\"}", 18, err, sizeof err), -EINVAL);
	ck_assert_str_eq(err, "not a memtrace snapshot file");

	/* Truncated, as by a full disk. */
	ck_assert_int_eq(read_text(&d, good, glen / 2, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "invalid JSON"));
	/* Trailing garbage, and a second document. */
	snprintf(buf, glen + 64, "%s x", good);
	ck_assert_int_eq(read_text(&d, buf, strlen(buf), err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "invalid JSON"));
	snprintf(buf, glen + 64, "%s%s", good, "{}");
	ck_assert_int_eq(read_text(&d, buf, strlen(buf), err, sizeof err), -EINVAL);
	/* A NUL byte after the document. */
	memcpy(buf, good, glen);
	memcpy(buf + glen, "\0junk", 5);
	ck_assert_int_eq(read_text(&d, buf, glen + 5, err, sizeof err), -EINVAL);
	ck_assert_str_eq(err, "not a memtrace snapshot file (binary data)");

	/* Version 5. */
	mutate(doc, "version", cJSON_CreateNumber(5));
	char *v2 = cJSON_Print(doc);
	ck_assert_int_eq(read_text(&d, v2, strlen(v2), err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "unsupported version 5"));
	cJSON_free(v2);

	/* Nesting far deeper than any snapshot: refused, not a stack overflow. */
	size_t deep = 200000;
	char *nest = xalloc_or_fail(malloc(2 * deep));
	memset(nest, '[', deep);
	memset(nest + deep, ']', deep);
	ck_assert_int_eq(read_text(&d, nest, 2 * deep, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "invalid JSON"));
	free(nest);

	/* Not there, a directory, too large. */
	path = in_dir(&d, "none.json");
	ck_assert_int_eq(snapshot_read_file(path, &r, err, sizeof err), -ENOENT);
	ck_assert_ptr_null(r);
	ck_assert_str_eq(err, "No such file or directory");
	free(path);
	ck_assert_int_eq(snapshot_read_file(d.path, &r, err, sizeof err), -EISDIR);
	path = in_dir(&d, "big.json");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(1 << 30) + 1), 0); /* sparse */
	close(fd);
	ck_assert_int_eq(snapshot_read_file(path, &r, err, sizeof err), -EFBIG);
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	free(path);

	free(buf);
	cJSON_free(good);
	cJSON_Delete(doc);
	rm_tree(&d);
	snapshot_free(s);
}
END_TEST

/* ---- groups ---- */

START_TEST(test_groups)
{
	struct snapshot *s = sample();
	void *storage = NULL;
	size_t n = 99;
	struct trace_group *g = snapshot_groups(s, false, &storage, &n);
	const struct frame_info *want1[] = {&FB, &FA, &FM};

	ck_assert_ptr_nonnull(g);
	ck_assert_ptr_eq(g, storage); /* one allocation: free(storage) frees all */
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(g[0].size, 1000);
	ck_assert_uint_eq(g[0].count, 10);
	ck_assert_uint_eq(g[0].nframes, 2);
	frame_eq(g[0].frames[0], &FA);
	frame_eq(g[0].frames[1], &FM);
	ck_assert_uint_eq(g[0].addrs[0], 0x401000);
	ck_assert_uint_eq(g[0].addrs[1], 0x401500);
	ck_assert_uint_eq(g[1].size, 300);
	ck_assert_uint_eq(g[1].count, 3);
	ck_assert_uint_eq(g[1].nframes, 3);
	for (int i = 0; i < 3; i++)
		frame_eq(g[1].frames[i], want1[i]);
	/* Shared frames are one object; addresses stay per trace. */
	ck_assert_ptr_eq(g[0].frames[0], g[1].frames[1]);
	ck_assert_ptr_eq(g[0].frames[1], g[1].frames[2]);
	ck_assert_ptr_eq(g[0].frames[0], &s->frames[0]);
	ck_assert_uint_eq(g[1].addrs[1], 0x401004);
	ck_assert_uint_eq(g[2].size, 50);
	ck_assert_uint_eq(g[2].count, 1);
	ck_assert_uint_eq(g[2].nframes, 0);

	/* The groups are what query_top expects: a.c:10 is the most recent
	 * frame of trace 0 only (1000 B, 10 blocks); cumulative, it is in
	 * traces 0 and 1 (1300 B, 13 blocks). */
	struct query_opts o = {.key = QUERY_KEY_LINENO, .cumulative = true};
	cJSON *out = NULL;
	ck_assert_int_eq(query_top(g, n, &o, &out), 0);
	ck_assert(num(out, "total_size") == 1350);
	ck_assert(num(out, "total_count") == 14);
	const cJSON *st = cJSON_GetArrayItem(get(out, "stats"), 0);
	ck_assert(num(st, "size") == 1300);
	ck_assert(num(st, "count") == 13);
	cJSON_Delete(out);
	free(storage);
	snapshot_free(s);

	/* An empty snapshot has no groups. */
	s = snapshot_new();
	g = snapshot_groups(s, false, &storage, &n);
	ck_assert_uint_eq(n, 0);
	free(storage);
	snapshot_free(s);
}
END_TEST

/* ---- views ---- */

START_TEST(test_stats_json)
{
	static const char *const keys[] = {
	    "pid",          "exe",           "cmdline",         "state",     "current",
	    "peak",         "blocks",        "allocations",     "frees",     "lost_events",
	    "uid",          "start_time",    "snapshot",        "stacks",    "nframes",
	    "sample_bytes", "limit_reached", "sampled",         "truncated", "lost_allocations",
	    "lost_bytes",   "lost_frees",    "stopped_waiting", NULL};
	static const char *const skeys[] = {"id", "taken_at", "reason", NULL};
	struct snapshot *s = sample();
	cJSON *o = snapshot_stats_json(s);
	const cJSON *c;

	ck_assert_ptr_nonnull(o);
	keys_are(o, keys);
	/* stacks: the traces of the snapshot; what is not stored is null. */
	ck_assert(num(o, "stacks") == (double)s->ntraces);
	ck_assert(cJSON_IsNull(get(o, "nframes")));
	ck_assert(cJSON_IsNull(get(o, "limit_reached")));
	/* Truncated when the snapshot says events were lost; what they were is
	 * not stored. */
	ck_assert(cJSON_IsBool(get(o, "truncated")));
	ck_assert(cJSON_IsTrue(get(o, "truncated")) == (s->lost_events != 0));
	ck_assert(cJSON_IsNull(get(o, "lost_allocations")));
	/* Every allocation was traced: the figures are no estimates. */
	ck_assert(num(o, "sample_bytes") == 0);
	ck_assert(cJSON_IsNull(get(o, "sampled")));
	ck_assert(num(o, "pid") == 4242);
	ck_assert_str_eq(str(o, "exe"), "/bin/app");
	c = get(o, "cmdline");
	ck_assert_int_eq(cJSON_GetArraySize(c), 4);
	ck_assert_str_eq(cJSON_GetArrayItem(c, 1)->valuestring, "--flag");
	ck_assert_str_eq(str(o, "state"), "snapshot");
	ck_assert(num(o, "current") == 1350);
	ck_assert(num(o, "peak") == 5000);
	ck_assert(num(o, "blocks") == 14);
	ck_assert(num(o, "allocations") == 118);
	ck_assert(num(o, "frees") == 104);
	ck_assert(num(o, "lost_events") == 7);
	ck_assert(num(o, "uid") == 1000);
	ck_assert(num(o, "start_time") == 123456789);
	c = get(o, "snapshot");
	keys_are(c, skeys);
	ck_assert(num(c, "id") == 42);
	ck_assert(num(c, "taken_at") == 1700000000.25);
	ck_assert_str_eq(str(c, "reason"), "manual");
	cJSON_Delete(o);
	snapshot_free(s);
}
END_TEST

static void check_block(const cJSON *b, const char *addr, double size,
                        const struct frame_info *const *fr, const char *const *ad, int n)
{
	static const char *const bkeys[] = {"address", "size", "traceback", NULL};
	static const char *const fkeys[] = {"filename", "lineno",  "function",
	                                    "module",   "address", NULL};
	static const char *const fkeys_dbg[] = {"filename", "lineno",  "function", "module",
	                                        "symbols",  "address", NULL};
	const cJSON *tb;

	keys_are(b, bkeys);
	ck_assert_str_eq(str(b, "address"), addr);
	ck_assert(num(b, "size") == size);
	tb = get(b, "traceback");
	ck_assert_int_eq(cJSON_GetArraySize(tb), n);
	for (int i = 0; i < n; i++) {
		const cJSON *f = cJSON_GetArrayItem(tb, i);
		keys_are(f, fr[i]->symbols != NULL ? fkeys_dbg : fkeys);
		if (fr[i]->symbols != NULL)
			ck_assert_str_eq(str(f, "symbols"), fr[i]->symbols);
		ck_assert_str_eq(str(f, "filename"), fr[i]->filename);
		ck_assert(num(f, "lineno") == fr[i]->lineno);
		ck_assert_str_eq(str(f, "function"), fr[i]->function);
		ck_assert_str_eq(str(f, "module"), fr[i]->module);
		ck_assert_str_eq(str(f, "address"), ad[i]);
	}
}

START_TEST(test_traceback_json)
{
	static const char *const keys[] = {"pid", "snapshot", "sampled", "blocks", NULL};
	const struct frame_info *t0[] = {&FA, &FM};
	const char *a0[] = {"0x401000", "0x401500"};
	const struct frame_info *t1[] = {&FB, &FA, &FM};
	const char *a1[] = {"0x7f0000002000", "0x401004", "0x401500"};
	struct snapshot *s = sample();
	cJSON *o = snapshot_traceback_json(s, 0);
	const cJSON *b;

	ck_assert_ptr_nonnull(o);
	keys_are(o, keys);
	ck_assert(num(o, "pid") == 4242);
	ck_assert(num(get(o, "snapshot"), "id") == 42);
	ck_assert_str_eq(str(get(o, "snapshot"), "reason"), "manual");
	ck_assert(cJSON_IsNull(get(o, "sampled")));
	b = get(o, "blocks");
	ck_assert_int_eq(cJSON_GetArraySize(b), 4); /* limit 0: all */
	check_block(cJSON_GetArrayItem(b, 0), "0x7f0000001000", 400, t0, a0, 2);
	check_block(cJSON_GetArrayItem(b, 1), "0x7f0000003000", 200, t1, a1, 3);
	check_block(cJSON_GetArrayItem(b, 2), "0x7f0000004000", 200, t0, a0, 2);
	check_block(cJSON_GetArrayItem(b, 3), "0x7f0000005000", 50, NULL, NULL, 0);
	cJSON_Delete(o);

	o = snapshot_traceback_json(s, 2);
	b = get(o, "blocks");
	ck_assert_int_eq(cJSON_GetArraySize(b), 2);
	check_block(cJSON_GetArrayItem(b, 1), "0x7f0000003000", 200, t1, a1, 3);
	cJSON_Delete(o);
	o = snapshot_traceback_json(s, 100);
	ck_assert_int_eq(cJSON_GetArraySize(get(o, "blocks")), 4);
	cJSON_Delete(o);
	snapshot_free(s);

	s = snapshot_new();
	o = snapshot_traceback_json(s, 10);
	ck_assert_int_eq(cJSON_GetArraySize(get(o, "blocks")), 0);
	cJSON_Delete(o);
	snapshot_free(s);
}
END_TEST

START_TEST(test_summary_json)
{
	static const char *const keys[] = {"id",      "pid",  "exe",    "taken_at", "reason",
	                                   "current", "peak", "blocks", "sampled",  NULL};
	struct snapshot *s = sample();
	cJSON *o = snapshot_summary_json(s);

	ck_assert_ptr_nonnull(o);
	keys_are(o, keys);
	ck_assert(num(o, "id") == 42);
	ck_assert(num(o, "pid") == 4242);
	ck_assert_str_eq(str(o, "exe"), "/bin/app");
	ck_assert(num(o, "taken_at") == 1700000000.25);
	ck_assert_str_eq(str(o, "reason"), "manual");
	ck_assert(num(o, "current") == 1350);
	ck_assert(num(o, "peak") == 5000);
	ck_assert(num(o, "blocks") == 14);
	ck_assert(cJSON_IsNull(get(o, "sampled")));
	cJSON_Delete(o);
	snapshot_free(s);
}
END_TEST

/* "sampled": {"rate": N} exactly. */
static void assert_sampled(const cJSON *o, double rate, const char *what)
{
	static const char *const keys[] = {"rate", NULL};
	const cJSON *v = get(o, "sampled");

	ck_assert_msg(cJSON_IsObject(v), "%s: \"sampled\" is no object", what);
	keys_are(v, keys);
	ck_assert_msg(num(v, "rate") == rate, "%s: rate %g, not %g", what, num(v, "rate"), rate);
}

/* A sampled process's snapshot: the rate goes into the document only then,
 * survives it, and every answer says the figures are estimates. */
START_TEST(test_sampled)
{
	struct snapshot *s = sample(), *r;
	struct query_opts qo = {.key = QUERY_KEY_LINENO};
	cJSON *doc, *o;

	/* Not sampled: the document has no such key (test_document_shape),
	 * and one without it reads as every allocation traced. */
	r = roundtrip(s);
	ck_assert_uint_eq(r->sample_bytes, 0);
	snapshot_free(r);

	s->sample_bytes = 65536;
	doc = snapshot_to_json(s);
	ck_assert(num(get(doc, "snapshot"), "sample_bytes") == 65536);
	cJSON_Delete(doc);
	r = roundtrip(s);
	snap_eq(s, r);
	snapshot_free(r);
	/* 16 digits, written as raw digits like every other counter. */
	s->sample_bytes = (UINT64_C(1) << 53) - 1;
	r = roundtrip(s);
	ck_assert_uint_eq(r->sample_bytes, (UINT64_C(1) << 53) - 1);
	snapshot_free(r);
	s->sample_bytes = 65536;

	o = snapshot_stats_json(s);
	ck_assert(num(o, "sample_bytes") == 65536);
	assert_sampled(o, 65536, "stats");
	cJSON_Delete(o);
	ck_assert_int_eq(snapshot_top_json(s, &qo, true, &o), 0);
	assert_sampled(o, 65536, "top");
	cJSON_Delete(o);
	o = snapshot_traceback_json(s, 0);
	assert_sampled(o, 65536, "traceback");
	cJSON_Delete(o);
	o = snapshot_summary_json(s);
	assert_sampled(o, 65536, "summary");
	cJSON_Delete(o);
	o = snapshot_sampled_json(0);
	ck_assert(cJSON_IsNull(o));
	cJSON_Delete(o);
	snapshot_free(s);
}
END_TEST

/* ---- scale ---- */

START_TEST(test_scale)
{
	/* 10k traces of 32 frames over 5k distinct frames: interning, writing
	 * and reading stay linear (the tcase timeout catches quadratic work). */
	enum { NT = 10000, D = 32, NF = 5000 };
	struct snapshot *s = snapshot_new(), *r;
	const struct frame_info *fr[D];
	struct frame_info *pool = xalloc_or_fail(calloc(NF, sizeof *pool));
	char(*names)[24] = xalloc_or_fail(calloc(NF, sizeof *names));
	uint64_t ad[D];
	uint64_t seed = 1;

	for (int i = 0; i < NF; i++) {
		snprintf(names[i], sizeof names[i], "fn%d", i);
		pool[i] = (struct frame_info){.filename = "/src/f.c",
		                              .lineno = (uint32_t)i,
		                              .function = names[i],
		                              .module = "/m"};
	}
	s->pid = 7;
	s->exe = sdup("/bin/x");
	s->argv = xalloc_or_fail(calloc(1, sizeof *s->argv));
	for (int t = 0; t < NT; t++) {
		for (int j = 0; j < D; j++) {
			seed = seed * 6364136223846793005u + 1442695040888963407u;
			fr[j] = &pool[(seed >> 33) % NF];
			ad[j] = 0x400000 + (seed >> 40);
		}
		add_trace(s, (uint64_t)t * 16, (uint64_t)t, (uint64_t)t + 1, D, fr, ad);
	}
	ck_assert_uint_le(s->nframes, NF);
	r = roundtrip(s);
	snap_eq(s, r);
	snapshot_free(r);
	snapshot_free(s);
	free(names);
	free(pool);
}
END_TEST

Suite *snapshot_suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_new_free);
	tcase_add_test(tc, test_intern_by_content);
	tcase_add_test(tc, test_intern_many);
	tcase_add_test(tc, test_sample_shares_frames);
	tcase_add_test(tc, test_intern_after_read);
	tcase_add_test(tc, test_document_shape);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_roundtrip_empty_and_edges);
	tcase_add_test(tc, test_large_values_rounded);
	tcase_add_test(tc, test_writer_limits);
	tcase_add_loop_test(tc, test_reject_each, 0, (int)N(bad_cases));
	tcase_add_test(tc, test_reject_not_object);
	tcase_add_test(tc, test_reject_nan);
	tcase_add_test(tc, test_reject_raw);
	tcase_add_test(tc, test_reject_huge);
	tcase_add_test(tc, test_corrupt_random);
	tcase_add_test(tc, test_accept_variants);
	tcase_add_test(tc, test_read_version_1);
	tcase_add_test(tc, test_groups);
	tcase_add_test(tc, test_stats_json);
	tcase_add_test(tc, test_traceback_json);
	tcase_add_test(tc, test_summary_json);
	tcase_add_test(tc, test_sampled);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, test_file_roundtrip);
	tcase_add_test(tc, test_file_replaced_atomically);
	tcase_add_test(tc, test_file_relative_path);
	tcase_add_test(tc, test_file_malformed);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_add_test(tc, test_scale);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}
