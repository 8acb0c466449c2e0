/*
 * check_query.c - analysis/query.c against statistics worked out by hand.
 *
 * Every expected number is computed in the test from the trace groups it
 * builds (their sizes and counts are summed here, in the open), never taken
 * from the code under test. A model test then checks random inputs against a
 * naive quadratic reimplementation of query.h, and a scale test checks that
 * 100k groups of 32 frames stay fast (the tcase timeout catches O(n^2)).
 */
#include "query.h"
#include "suites.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAXF 8
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- frames ----
 * Copies of strings in their own arrays, so that equal content never implies
 * equal pointers: grouping must compare content. */
static char a_c_copy[] = "/src/a.c";
static char fa_copy[] = "fa";
static char r_c_copy[] = "/src/r.c";

static const struct frame_info A2 = {"/src/a.c", 2, "fa", "/bin/app", NULL, NULL};
static const struct frame_info A2b = {a_c_copy, 2, fa_copy, "/bin/app", NULL, NULL}; /* = A2 */
static const struct frame_info A2lib = {"/src/a.c", 2, "fa", "/lib/liba.so", NULL, NULL};
static const struct frame_info A5 = {"/src/a.c", 5, "fa", "/bin/app", NULL, NULL};
static const struct frame_info A9 = {"/src/a.c", 9, "ga", "/bin/app", NULL, NULL};
static const struct frame_info A10 = {"/src/a.c", 10, "ga", "/bin/app", NULL, NULL};
static const struct frame_info B1 = {"/src/b.c", 1, "fb", "/lib/libb.so", NULL, NULL};
static const struct frame_info B4 = {"/src/b.c", 4, "main", "/lib/libb.so", NULL, NULL};
static const struct frame_info B7 = {"/src/b.c",     7,    "fa",
                                     "/lib/libb.so", NULL, NULL}; /* fa in b.c */
static const struct frame_info M = {"/src/main.c", 10, "main", "/bin/app", NULL, NULL};
static const struct frame_info R3 = {"/src/r.c", 3, "rec", "/bin/app", NULL, NULL};
static const struct frame_info R3b = {r_c_copy, 3, "rec", "/bin/app", NULL, NULL}; /* = R3 */
static const struct frame_info V5 = {
    "/usr/include/c++/vector", 5, "std::vector<int>::push_back", "/bin/app", NULL, NULL};

/* ---- building input ---- */

struct tg {
	const struct frame_info *fr[MAXF];
	uint64_t ad[MAXF];
	uint32_t n;
	uint64_t size, count;
};

static struct trace_group *mk(const struct tg *t, size_t n)
{
	struct trace_group *g = calloc(n ? n : 1, sizeof *g);

	ck_assert_ptr_nonnull(g);
	for (size_t i = 0; i < n; i++) {
		g[i].frames = t[i].fr;
		g[i].addrs = t[i].ad;
		g[i].nframes = t[i].n;
		g[i].size = t[i].size;
		g[i].count = t[i].count;
		/* Tests of the allocation counters use struct tga. */
		g[i].allocations = t[i].count;
		g[i].allocated = t[i].size;
	}
	return g;
}

static cJSON *run_top(const struct tg *t, size_t n, const struct query_opts *o)
{
	struct trace_group *g = mk(t, n);
	cJSON *out = NULL;
	int r = query_top(n ? g : NULL, n, o, &out);

	free(g);
	ck_assert_int_eq(r, 0);
	ck_assert_ptr_nonnull(out);
	return out;
}

static cJSON *top_k(const struct tg *t, size_t n, enum query_key k, bool cumulative)
{
	struct query_opts o = {.key = k, .cumulative = cumulative};
	return run_top(t, n, &o);
}

static cJSON *run_cmp(const struct tg *old, size_t nold, const struct tg *new_, size_t nnew,
                      const struct query_opts *o)
{
	struct trace_group *go = mk(old, nold), *gn = mk(new_, nnew);
	cJSON *out = NULL;
	int r = query_compare(nold ? go : NULL, nold, nnew ? gn : NULL, nnew, o, &out);

	free(go);
	free(gn);
	ck_assert_int_eq(r, 0);
	ck_assert_ptr_nonnull(out);
	return out;
}

/* ---- reading output ---- */

static const cJSON *item(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	ck_assert_msg(v != NULL, "missing \"%s\"", k);
	return v;
}

static long long num(const cJSON *o, const char *k)
{
	const cJSON *v = item(o, k);
	ck_assert_msg(cJSON_IsNumber(v), "\"%s\" is not a number", k);
	return (long long)v->valuedouble;
}

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = item(o, k);
	ck_assert_msg(cJSON_IsString(v), "\"%s\" is not a string", k);
	return v->valuestring;
}

static int nstats(const cJSON *root)
{
	const cJSON *a = item(root, "stats");
	ck_assert(cJSON_IsArray(a));
	return cJSON_GetArraySize(a);
}

static const cJSON *stat_n(const cJSON *root, int i)
{
	const cJSON *s = cJSON_GetArrayItem(item(root, "stats"), i);
	ck_assert_msg(s != NULL, "no stat %d", i);
	return s;
}

static int ntb(const cJSON *st)
{
	const cJSON *a = item(st, "traceback");
	ck_assert(cJSON_IsArray(a));
	return cJSON_GetArraySize(a);
}

static const cJSON *frame_n(const cJSON *st, int i)
{
	const cJSON *f = cJSON_GetArrayItem(item(st, "traceback"), i);
	ck_assert_msg(f != NULL, "no frame %d", i);
	return f;
}

static void expect_frame(const cJSON *f, const char *file, long long line, const char *func)
{
	ck_assert_str_eq(str(f, "filename"), file);
	ck_assert_int_eq(num(f, "lineno"), line);
	ck_assert_str_eq(str(f, "function"), func);
}

static void expect_full_frame(const cJSON *f, const char *file, long long line, const char *func,
                              const char *module, const char *addr)
{
	expect_frame(f, file, line, func);
	ck_assert_str_eq(str(f, "module"), module);
	ck_assert_str_eq(str(f, "address"), addr);
}

/* Statistic i has this size and count and a one-frame traceback. */
static void expect_stat(const cJSON *root, int i, uint64_t size, uint64_t count, const char *file,
                        long long line, const char *func)
{
	const cJSON *st = stat_n(root, i);

	ck_assert_msg(num(st, "size") == (long long)size, "stat %d: size %lld, expected %" PRIu64,
	              i, num(st, "size"), size);
	ck_assert_msg(num(st, "count") == (long long)count,
	              "stat %d: count %lld, expected %" PRIu64, i, num(st, "count"), count);
	ck_assert_int_eq(ntb(st), 1);
	expect_frame(frame_n(st, 0), file, line, func);
}

static void expect_diff(const cJSON *root, int i, uint64_t size, long long size_diff,
                        uint64_t count, long long count_diff, const char *file, long long line)
{
	const cJSON *st = stat_n(root, i);

	ck_assert_msg(num(st, "size") == (long long)size, "stat %d: size %lld, expected %" PRIu64,
	              i, num(st, "size"), size);
	ck_assert_msg(num(st, "size_diff") == size_diff, "stat %d: size_diff %lld, expected %lld",
	              i, num(st, "size_diff"), size_diff);
	ck_assert_msg(num(st, "count") == (long long)count,
	              "stat %d: count %lld, expected %" PRIu64, i, num(st, "count"), count);
	ck_assert_msg(num(st, "count_diff") == count_diff,
	              "stat %d: count_diff %lld, expected %lld", i, num(st, "count_diff"),
	              count_diff);
	ck_assert_int_eq(ntb(st), 1);
	ck_assert_str_eq(str(frame_n(st, 0), "filename"), file);
	ck_assert_int_eq(num(frame_n(st, 0), "lineno"), line);
}

static void expect_totals(const cJSON *root, uint64_t size, uint64_t count, int count_stats)
{
	ck_assert_int_eq(num(root, "total_size"), (long long)size);
	ck_assert_int_eq(num(root, "total_count"), (long long)count);
	ck_assert_int_eq(num(root, "count_stats"), count_stats);
}

static uint64_t sum_size(const struct tg *t, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += t[i].size;
	return s;
}

static uint64_t sum_count(const struct tg *t, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += t[i].count;
	return s;
}

/* ---- the main data set, after CPython's test_tracemalloc ----
 * T1[4]'s most recent frame is A2b, a different pointer with A2's content. */
static const struct tg T1[] = {
    {{&A2, &B4, &M}, {0x1010, 0x2000, 0x3000}, 3, 30, 3},
    {{&A5, &B4, &M}, {0x1050, 0x2000, 0x3000}, 3, 2, 1},
    {{&B1, &M}, {0x2010, 0x3008}, 2, 66, 1},
    {{NULL}, {0}, 0, 7, 1},
    {{&A2b, &B1, &M}, {0x1000, 0x2014, 0x3010}, 3, 5, 2},
};

START_TEST(test_key_parse_name)
{
	static const char *const names[] = {"lineno", "filename", "function", "traceback"};
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};
	enum query_key k = QUERY_KEY_TRACEBACK;

	for (size_t i = 0; i < N(names); i++) {
		ck_assert_int_eq(query_key_parse(names[i], &k), 0);
		ck_assert_int_eq(k, keys[i]);
		ck_assert_str_eq(query_key_name(keys[i]), names[i]);
	}
	k = QUERY_KEY_FUNCTION;
	ck_assert_int_eq(query_key_parse("LINENO", &k), -EINVAL);
	ck_assert_int_eq(query_key_parse("line", &k), -EINVAL);
	ck_assert_int_eq(query_key_parse("", &k), -EINVAL);
	ck_assert_int_eq(query_key_parse("linenos", &k), -EINVAL);
	ck_assert_int_eq(query_key_parse(NULL, &k), -EINVAL);
	ck_assert_int_eq(query_key_parse("lineno", NULL), -EINVAL);
	ck_assert_int_eq(k, QUERY_KEY_FUNCTION); /* untouched on failure */
	ck_assert_ptr_null(query_key_name((enum query_key)4));
}
END_TEST

START_TEST(test_frame_json)
{
	cJSON *f = query_frame_json(&A2, UINT64_C(0x55d0c2a1b2c4));

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(cJSON_GetArraySize(f), 5);
	expect_full_frame(f, "/src/a.c", 2, "fa", "/bin/app", "0x55d0c2a1b2c4");
	cJSON_Delete(f);

	f = query_frame_json(&B1, 0);
	expect_full_frame(f, "/src/b.c", 1, "fb", "/lib/libb.so", "0x0");
	cJSON_Delete(f);

	f = query_frame_json(&M, UINT64_MAX);
	ck_assert_str_eq(str(f, "address"), "0xffffffffffffffff");
	cJSON_Delete(f);

	f = query_frame_json(NULL, 0);
	expect_full_frame(f, "<unknown>", 0, "<unknown>", "<unknown>", "0x0");
	cJSON_Delete(f);
}
END_TEST

START_TEST(test_shape)
{
	static const char *const top_keys[] = {"at",
	                                       "key",
	                                       "cumulative",
	                                       "sort_by",
	                                       "total_size",
	                                       "total_count",
	                                       "total_allocations",
	                                       "total_allocated",
	                                       "total_temporary",
	                                       "count_stats",
	                                       "stats"};
	static const char *const cmp_keys[] = {"at",
	                                       "key",
	                                       "cumulative",
	                                       "sort_by",
	                                       "total_size",
	                                       "total_size_diff",
	                                       "total_count",
	                                       "total_count_diff",
	                                       "total_allocations",
	                                       "total_allocations_diff",
	                                       "total_allocated",
	                                       "total_allocated_diff",
	                                       "total_temporary",
	                                       "total_temporary_diff",
	                                       "count_stats",
	                                       "stats"};
	struct query_opts o = {.key = QUERY_KEY_LINENO};
	cJSON *r = run_top(T1, N(T1), &o);
	const cJSON *st;

	ck_assert_int_eq(cJSON_GetArraySize(r), (int)N(top_keys));
	for (size_t i = 0; i < N(top_keys); i++)
		item(r, top_keys[i]);
	ck_assert_str_eq(str(r, "key"), "lineno");
	ck_assert(cJSON_IsFalse(item(r, "cumulative")));
	ck_assert_str_eq(str(r, "sort_by"), "size");
	st = stat_n(r, 0);
	ck_assert_int_eq(cJSON_GetArraySize(st), 6);
	item(st, "size");
	item(st, "count");
	item(st, "allocations");
	item(st, "allocated");
	item(st, "temporary");
	ck_assert_int_eq(cJSON_GetArraySize(frame_n(st, 0)), 5);
	cJSON_Delete(r);

	o.cumulative = true;
	o.key = QUERY_KEY_FILENAME;
	r = run_cmp(T1, 2, T1, N(T1), &o);
	ck_assert_int_eq(cJSON_GetArraySize(r), (int)N(cmp_keys));
	for (size_t i = 0; i < N(cmp_keys); i++)
		item(r, cmp_keys[i]);
	ck_assert_str_eq(str(r, "key"), "filename");
	ck_assert(cJSON_IsTrue(item(r, "cumulative")));
	st = stat_n(r, 0);
	ck_assert_int_eq(cJSON_GetArraySize(st), 11);
	item(st, "size_diff");
	item(st, "count_diff");
	item(st, "allocations_diff");
	item(st, "allocated_diff");
	item(st, "temporary_diff");
	cJSON_Delete(r);
}
END_TEST

/* ---- allocation counters and sort_by ---- */

struct tga {
	const struct frame_info *f; /* one frame */
	uint64_t size, count, allocations, allocated, temporary;
};

static struct trace_group *mka(const struct tga *t, size_t n, uint64_t *ad)
{
	struct trace_group *g = calloc(n ? n : 1, sizeof *g);

	ck_assert_ptr_nonnull(g);
	for (size_t i = 0; i < n; i++)
		g[i] = (struct trace_group){&t[i].f,        &ad[i],        1,
		                            t[i].size,      t[i].count,    t[i].allocations,
		                            t[i].allocated, t[i].temporary};
	return g;
}

/* The statistics' first frames' lines, in order, and their counters. */
static void expect_order(const cJSON *r, const int *lines, size_t n)
{
	ck_assert_int_eq(nstats(r), (int)n);
	ck_assert_int_eq(num(r, "count_stats"), (long long)n);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(num(frame_n(stat_n(r, (int)i), 0), "lineno"), lines[i]);
}

/* A2 (a.c:2) holds 100 B; B1 (b.c:1) allocated 16000 B in 1000 calls, 990
 * of them temporary, and freed everything; B4 (b.c:4) holds 5 blocks. */
static const struct tga TA[] = {
    {&A2, 100, 1, 5, 500, 0},
    {&B1, 0, 0, 1000, 16000, 990},
    {&B4, 50, 5, 20, 60, 15},
};

START_TEST(test_sort_by)
{
	static const char *const names[] = {"size", "count", "allocations", "allocated",
	                                    "temporary"};
	static const int want[][3] = {{2, 4}, {4, 2}, {1, 4, 2}, {1, 2, 4}, {1, 4, 2}};
	static const size_t nwant[] = {2, 2, 3, 3, 3};
	uint64_t ad[3] = {0x1010, 0x2010, 0x2040};
	struct trace_group *g = mka(TA, 3, ad);
	enum query_sort by;

	ck_assert_int_eq(query_sort_parse("sizes", &by), -EINVAL);
	ck_assert_int_eq(query_sort_parse(NULL, &by), -EINVAL);
	for (int k = 0; k < 5; k++) {
		struct query_opts o = {.key = QUERY_KEY_LINENO};
		cJSON *r = NULL;

		ck_assert_int_eq(query_sort_parse(names[k], &o.sort_by), 0);
		ck_assert_int_eq(query_top(g, 3, &o, &r), 0);
		ck_assert_str_eq(str(r, "sort_by"), names[k]);
		/* By size or count the freed site is not listed (tracemalloc's
		 * statistics are of live memory); the totals count it. */
		expect_order(r, want[k], nwant[k]);
		ck_assert_int_eq(num(r, "total_size"), 150);
		ck_assert_int_eq(num(r, "total_count"), 6);
		ck_assert_int_eq(num(r, "total_allocations"), 1025);
		ck_assert_int_eq(num(r, "total_allocated"), 16560);
		ck_assert_int_eq(num(r, "total_temporary"), 1005);
		if (k == QUERY_SORT_TEMPORARY) {
			const cJSON *st = stat_n(r, 0);
			ck_assert_int_eq(num(st, "size"), 0);
			ck_assert_int_eq(num(st, "count"), 0);
			ck_assert_int_eq(num(st, "allocations"), 1000);
			ck_assert_int_eq(num(st, "allocated"), 16000);
			ck_assert_int_eq(num(st, "temporary"), 990);
		}
		cJSON_Delete(r);
	}
	/* An unknown sort is refused. */
	struct query_opts bad = {.key = QUERY_KEY_LINENO, .sort_by = (enum query_sort)5};
	cJSON *r = NULL;
	ck_assert_int_eq(query_top(g, 3, &bad, &r), -EINVAL);
	free(g);
}
END_TEST

START_TEST(test_sort_by_compare)
{
	/* Old: only A2, smaller. New: TA. By allocations the diffs order them
	 * B1 (+1000), B4 (+20), A2 (+4); by size B1 is left out (nothing live
	 * on either side). */
	static const struct tga old[] = {{&A2, 40, 1, 1, 40, 0}};
	uint64_t ad[3] = {0x1010, 0x2010, 0x2040};
	struct trace_group *go = mka(old, 1, ad), *gn = mka(TA, 3, ad);
	struct query_opts o = {.key = QUERY_KEY_LINENO, .sort_by = QUERY_SORT_ALLOCATIONS};
	cJSON *r = NULL;

	ck_assert_int_eq(query_compare(go, 1, gn, 3, &o, &r), 0);
	expect_order(r, (const int[]){1, 4, 2}, 3);
	const cJSON *a2 = stat_n(r, 2);
	ck_assert_int_eq(num(a2, "allocations_diff"), 4);
	ck_assert_int_eq(num(a2, "allocated_diff"), 460);
	ck_assert_int_eq(num(a2, "size_diff"), 60);
	ck_assert_int_eq(num(stat_n(r, 0), "temporary_diff"), 990);
	ck_assert_int_eq(num(r, "total_allocations_diff"), 1024);
	cJSON_Delete(r);

	o.sort_by = QUERY_SORT_SIZE;
	ck_assert_int_eq(query_compare(go, 1, gn, 3, &o, &r), 0);
	expect_order(r, (const int[]){2, 4}, 2);
	cJSON_Delete(r);
	free(go);
	free(gn);
}
END_TEST

/* ---- the first frame outside the runtime ---- */

static const struct frame_info LIBC = {"./libio/filedoalloc.c",
                                       101,
                                       "_IO_file_doallocate",
                                       "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                       NULL,
                                       NULL};
static const struct frame_info STDH = {"/usr/include/c++/12/bits/new_allocator.h",
                                       137,
                                       "std::__new_allocator<int>::allocate",
                                       "/bin/app",
                                       NULL,
                                       NULL};
static const struct frame_info STDV = {
    "/usr/include/c++/12/bits/vector.tcc", 72, "std::vector<int>::reserve", "/bin/app", NULL, NULL};
static const struct frame_info LD = {"./elf/dl-object.c",           90,   "_dl_new_object",
                                     "/lib64/ld-linux-x86-64.so.2", NULL, NULL};
static const struct frame_info NODBG1 = {"/bin/app+0x1234", 0, "parse", "/bin/app", NULL, NULL};
static const struct frame_info NODBG2 = {"/bin/app+0x1290", 0, "parse", "/bin/app", NULL, NULL};

START_TEST(test_runtime_frames)
{
	static const struct frame_info *const fr[] = {&LIBC, &STDH, &STDV, &LD, &NODBG1};
	for (size_t i = 0; i < 4; i++)
		ck_assert_msg(query_runtime_frame(fr[i]), "%s", fr[i]->function);
	ck_assert(!query_runtime_frame(&A2));
	ck_assert(!query_runtime_frame(&NODBG1));
	ck_assert(query_runtime_frame(&V5)); /* /usr/include/c++/vector */

	/* The vector's buffer: new_allocator.h <- vector.tcc <- a.c:2 <- main;
	 * stdio's buffer: libc <- main.c:10; the loader's own: all runtime. */
	static const struct tg t[] = {
	    {{&STDH, &STDV, &A2, &M}, {0x10, 0x20, 0x1010, 0x3000}, 4, 400, 1},
	    {{&LIBC, &M}, {0x7000, 0x3008}, 2, 4096, 1},
	    {{&LD, &LD}, {0x9000, 0x9010}, 2, 64, 2},
	};
	struct query_opts o = {.key = QUERY_KEY_LINENO};
	cJSON *r = run_top(t, N(t), &o);
	ck_assert_int_eq(nstats(r), 3);
	expect_stat(r, 0, 4096, 1, "/src/main.c", 10, "main");
	expect_stat(r, 1, 400, 1, "/src/a.c", 2, "fa");
	expect_stat(r, 2, 64, 2, "./elf/dl-object.c", 90, "_dl_new_object");
	cJSON_Delete(r);
	/* By traceback the stacks start there too. */
	o.key = QUERY_KEY_TRACEBACK;
	r = run_top(t, N(t), &o);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(stat_n(r, 1), "traceback")), 2);
	cJSON_Delete(r);
	/* --raw-frames: as captured. */
	o.key = QUERY_KEY_LINENO;
	o.raw_frames = true;
	r = run_top(t, N(t), &o);
	expect_stat(r, 0, 4096, 1, "./libio/filedoalloc.c", 101, "_IO_file_doallocate");
	expect_stat(r, 1, 400, 1, "/usr/include/c++/12/bits/new_allocator.h", 137,
	            "std::__new_allocator<int>::allocate");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_function_without_lines)
{
	/* Two addresses of one function without debug information: one
	 * statistic by function (and by file: the module), two by line. */
	static const struct tg t[] = {
	    {{&NODBG1, &M}, {0x1234, 0x3000}, 2, 100, 1},
	    {{&NODBG2, &M}, {0x1290, 0x3000}, 2, 50, 1},
	};
	cJSON *r = top_k(t, N(t), QUERY_KEY_FUNCTION, false);
	ck_assert_int_eq(nstats(r), 1);
	expect_full_frame(frame_n(stat_n(r, 0), 0), "/bin/app", 0, "parse", "/bin/app", "0x0");
	ck_assert_int_eq(num(stat_n(r, 0), "size"), 150);
	cJSON_Delete(r);
	r = top_k(t, N(t), QUERY_KEY_FILENAME, false);
	ck_assert_int_eq(nstats(r), 1);
	cJSON_Delete(r);
	r = top_k(t, N(t), QUERY_KEY_LINENO, false);
	ck_assert_int_eq(nstats(r), 2);
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_key_lineno)
{
	cJSON *r = top_k(T1, N(T1), QUERY_KEY_LINENO, false);

	/* a.c:2 gathers T1[0] and T1[4] (A2 and its copy A2b). */
	expect_totals(r, sum_size(T1, N(T1)), sum_count(T1, N(T1)), 4);
	ck_assert_int_eq(nstats(r), 4);
	expect_stat(r, 0, T1[2].size, T1[2].count, "/src/b.c", 1, "fb");
	expect_stat(r, 1, T1[0].size + T1[4].size, T1[0].count + T1[4].count, "/src/a.c", 2, "fa");
	expect_stat(r, 2, T1[3].size, T1[3].count, "<unknown>", 0, "<unknown>");
	expect_stat(r, 3, T1[1].size, T1[1].count, "/src/a.c", 5, "fa");
	/* The representative of a.c:2 is the lowest address of the two. */
	expect_full_frame(frame_n(stat_n(r, 1), 0), "/src/a.c", 2, "fa", "/bin/app", "0x1000");
	expect_full_frame(frame_n(stat_n(r, 0), 0), "/src/b.c", 1, "fb", "/lib/libb.so", "0x2010");
	expect_full_frame(frame_n(stat_n(r, 2), 0), "<unknown>", 0, "<unknown>", "<unknown>",
	                  "0x0");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_key_filename)
{
	cJSON *r = top_k(T1, N(T1), QUERY_KEY_FILENAME, false);

	expect_totals(r, sum_size(T1, N(T1)), sum_count(T1, N(T1)), 3);
	ck_assert_int_eq(nstats(r), 3);
	expect_stat(r, 0, T1[2].size, T1[2].count, "/src/b.c", 0, "");
	expect_stat(r, 1, T1[0].size + T1[1].size + T1[4].size,
	            T1[0].count + T1[1].count + T1[4].count, "/src/a.c", 0, "");
	expect_stat(r, 2, T1[3].size, T1[3].count, "<unknown>", 0, "");
	/* A file has many addresses: none is shown; its module is. */
	expect_full_frame(frame_n(stat_n(r, 1), 0), "/src/a.c", 0, "", "/bin/app", "0x0");
	expect_full_frame(frame_n(stat_n(r, 0), 0), "/src/b.c", 0, "", "/lib/libb.so", "0x0");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_key_function)
{
	/* fa in a.c (two lines, two pointers), fa in b.c, ga in a.c. */
	static const struct tg t[] = {
	    {{&A2, &M}, {0x10}, 2, 100, 1}, {{&A5, &M}, {0x20}, 2, 10, 2},
	    {{&A2b, &M}, {0x30}, 2, 1, 1},  {{&B7, &M}, {0x40}, 2, 50, 5},
	    {{&A9}, {0x50}, 1, 50, 4},      {{&A10}, {0x60}, 1, 7, 1},
	};
	cJSON *r = top_k(t, N(t), QUERY_KEY_FUNCTION, false);

	expect_totals(r, sum_size(t, N(t)), sum_count(t, N(t)), 3);
	expect_stat(r, 0, t[0].size + t[1].size + t[2].size, t[0].count + t[1].count + t[2].count,
	            "/src/a.c", 0, "fa");
	expect_stat(r, 1, t[4].size + t[5].size, t[4].count + t[5].count, "/src/a.c", 0, "ga");
	expect_stat(r, 2, t[3].size, t[3].count, "/src/b.c", 0, "fa");
	expect_full_frame(frame_n(stat_n(r, 2), 0), "/src/b.c", 0, "fa", "/lib/libb.so", "0x0");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_key_traceback)
{
	static const struct tg t[] = {
	    {{&A2, &B4, &M}, {0x1004, 0x2000, 0x3000}, 3, 10, 1},
	    /* same content as t[0] through another pointer, lower top address */
	    {{&A2b, &B4, &M}, {0x1000, 0x2008, 0x3000}, 3, 20, 2},
	    /* same top frame, another caller */
	    {{&A2, &B1, &M}, {0x1000, 0x2010, 0x3000}, 3, 25, 1},
	    /* a prefix of t[0] */
	    {{&A2, &B4}, {0x1000, 0x2000}, 2, 40, 1},
	    {{NULL}, {0}, 0, 1, 1},
	    {{NULL}, {0}, 0, 2, 3},
	};
	cJSON *r = top_k(t, N(t), QUERY_KEY_TRACEBACK, false);
	const cJSON *st;

	expect_totals(r, sum_size(t, N(t)), sum_count(t, N(t)), 4);

	st = stat_n(r, 0);
	ck_assert_int_eq(num(st, "size"), (long long)t[3].size);
	ck_assert_int_eq(ntb(st), 2);
	expect_full_frame(frame_n(st, 0), "/src/a.c", 2, "fa", "/bin/app", "0x1000");
	expect_full_frame(frame_n(st, 1), "/src/b.c", 4, "main", "/lib/libb.so", "0x2000");

	st = stat_n(r, 1);
	ck_assert_int_eq(num(st, "size"), (long long)(t[0].size + t[1].size));
	ck_assert_int_eq(num(st, "count"), (long long)(t[0].count + t[1].count));
	ck_assert_int_eq(ntb(st), 3);
	/* One group's frames represent it all (t[1]: lowest first address). */
	expect_full_frame(frame_n(st, 0), "/src/a.c", 2, "fa", "/bin/app", "0x1000");
	expect_full_frame(frame_n(st, 1), "/src/b.c", 4, "main", "/lib/libb.so", "0x2008");
	expect_full_frame(frame_n(st, 2), "/src/main.c", 10, "main", "/bin/app", "0x3000");

	st = stat_n(r, 2);
	ck_assert_int_eq(num(st, "size"), (long long)t[2].size);
	ck_assert_int_eq(ntb(st), 3);
	expect_frame(frame_n(st, 1), "/src/b.c", 1, "fb");

	st = stat_n(r, 3);
	ck_assert_int_eq(num(st, "size"), (long long)(t[4].size + t[5].size));
	ck_assert_int_eq(num(st, "count"), (long long)(t[4].count + t[5].count));
	ck_assert_int_eq(ntb(st), 1);
	expect_full_frame(frame_n(st, 0), "<unknown>", 0, "<unknown>", "<unknown>", "0x0");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_representative)
{
	/* Same file:line in two modules: /bin/app sorts first, then the lower
	 * address; the answer must not depend on the input order. */
	static const struct tg t[] = {
	    {{&A2lib}, {0x100}, 1, 1, 1},
	    {{&A2}, {0x900}, 1, 1, 1},
	    {{&A2b}, {0x800}, 1, 1, 1},
	};
	const struct tg rev[] = {t[2], t[1], t[0]};
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};
	cJSON *r = top_k(t, N(t), QUERY_KEY_LINENO, false);

	ck_assert_int_eq(nstats(r), 1);
	expect_full_frame(frame_n(stat_n(r, 0), 0), "/src/a.c", 2, "fa", "/bin/app", "0x800");
	cJSON_Delete(r);

	for (size_t k = 0; k < N(keys); k++) {
		cJSON *a = top_k(t, N(t), keys[k], false);
		cJSON *b = top_k(rev, N(rev), keys[k], false);
		char *sa = cJSON_PrintUnformatted(a), *sb = cJSON_PrintUnformatted(b);
		ck_assert_str_eq(sa, sb);
		free(sa);
		free(sb);
		cJSON_Delete(a);
		cJSON_Delete(b);
	}
}
END_TEST

START_TEST(test_cumulative_lineno)
{
	cJSON *r = top_k(T1, N(T1), QUERY_KEY_LINENO, true);

	/* Totals are over traces, not over the (overlapping) statistics. */
	expect_totals(r, sum_size(T1, N(T1)), sum_count(T1, N(T1)), 6);
	ck_assert(cJSON_IsTrue(item(r, "cumulative")));
	expect_stat(r, 0, T1[0].size + T1[1].size + T1[2].size + T1[4].size,
	            T1[0].count + T1[1].count + T1[2].count + T1[4].count, "/src/main.c", 10,
	            "main");
	expect_stat(r, 1, T1[2].size + T1[4].size, T1[2].count + T1[4].count, "/src/b.c", 1, "fb");
	expect_stat(r, 2, T1[0].size + T1[4].size, T1[0].count + T1[4].count, "/src/a.c", 2, "fa");
	expect_stat(r, 3, T1[0].size + T1[1].size, T1[0].count + T1[1].count, "/src/b.c", 4,
	            "main");
	expect_stat(r, 4, T1[3].size, T1[3].count, "<unknown>", 0, "<unknown>");
	expect_stat(r, 5, T1[1].size, T1[1].count, "/src/a.c", 5, "fa");
	/* main.c:10 appears at three addresses; the lowest represents it. */
	ck_assert_str_eq(str(frame_n(stat_n(r, 0), 0), "address"), "0x3000");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_cumulative_filename)
{
	cJSON *r = top_k(T1, N(T1), QUERY_KEY_FILENAME, true);
	uint64_t bsize = T1[0].size + T1[1].size + T1[2].size + T1[4].size;
	uint64_t bcount = T1[0].count + T1[1].count + T1[2].count + T1[4].count;

	expect_totals(r, sum_size(T1, N(T1)), sum_count(T1, N(T1)), 4);
	/* b.c and main.c tie on size and count: the filename decides. */
	expect_stat(r, 0, bsize, bcount, "/src/b.c", 0, "");
	expect_stat(r, 1, bsize, bcount, "/src/main.c", 0, "");
	expect_stat(r, 2, T1[0].size + T1[1].size + T1[4].size,
	            T1[0].count + T1[1].count + T1[4].count, "/src/a.c", 0, "");
	expect_stat(r, 3, T1[3].size, T1[3].count, "<unknown>", 0, "");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_cumulative_once_per_trace)
{
	/* Recursion: r.c:3 three times (two pointers); a.c twice in one stack. */
	static const struct tg t[] = {
	    {{&R3, &R3b, &R3, &M}, {1, 2, 3, 4}, 4, 100, 2},
	    {{&A2, &A5, &A9}, {5, 6, 7}, 3, 10, 1},
	    {{&A2, &B7, &A5}, {8, 9, 10}, 3, 1, 1},
	};
	cJSON *r = top_k(t, 1, QUERY_KEY_LINENO, true);

	expect_totals(r, t[0].size, t[0].count, 2);
	expect_stat(r, 0, t[0].size, t[0].count, "/src/main.c", 10, "main");
	expect_stat(r, 1, t[0].size, t[0].count, "/src/r.c", 3, "rec");
	cJSON_Delete(r);

	r = top_k(t, N(t), QUERY_KEY_FILENAME, true);
	expect_totals(r, sum_size(t, N(t)), sum_count(t, N(t)), 4);
	expect_stat(r, 0, t[0].size, t[0].count, "/src/main.c", 0, "");
	expect_stat(r, 1, t[0].size, t[0].count, "/src/r.c", 0, "");
	expect_stat(r, 2, t[1].size + t[2].size, t[1].count + t[2].count, "/src/a.c", 0, "");
	expect_stat(r, 3, t[2].size, t[2].count, "/src/b.c", 0, "");
	cJSON_Delete(r);

	/* function: (fa, a.c) twice in t[1] and t[2]; (ga, a.c); (fa, b.c). */
	r = top_k(t + 1, 2, QUERY_KEY_FUNCTION, true);
	expect_totals(r, t[1].size + t[2].size, t[1].count + t[2].count, 3);
	expect_stat(r, 0, t[1].size + t[2].size, t[1].count + t[2].count, "/src/a.c", 0, "fa");
	expect_stat(r, 1, t[1].size, t[1].count, "/src/a.c", 0, "ga");
	expect_stat(r, 2, t[2].size, t[2].count, "/src/b.c", 0, "fa");
	cJSON_Delete(r);
}
END_TEST

/* ---- filters ---- */

/* Sizes are powers of ten, so total_size names exactly the traces kept. */
static const struct tg TF[] = {
    {{&A2, &M}, {1, 2}, 2, 1, 1}, {{&B1, &A5, &M}, {3, 4, 5}, 3, 10, 1},    {{&M}, {6}, 1, 100, 1},
    {{NULL}, {0}, 0, 1000, 1},    {{&V5, &B4, &M}, {7, 8, 9}, 3, 10000, 1},
};

struct fcase {
	struct query_filter f[3];
	size_t nf;
	uint64_t kept; /* sum of the sizes of the traces kept, by hand */
};

static const struct fcase FCASES[] = {
    /* inclusive, most recent frame only: TF[0] */
    {{{"*/a.c", true, false}}, 1, 1},
    /* inclusive, any frame: TF[0] and TF[1] */
    {{{"*/a.c", true, true}}, 1, 1 + 10},
    /* exclusive, most recent frame: all but TF[0] */
    {{{"*/a.c", false, false}}, 1, 10 + 100 + 1000 + 10000},
    /* exclusive, any frame: all but TF[0] and TF[1] */
    {{{"*/a.c", false, true}}, 1, 100 + 1000 + 10000},
    /* two inclusive filters: either may match */
    {{{"*/a.c", true, false}, {"*/main.c", true, false}}, 2, 1 + 100},
    /* two exclusive filters: neither may match */
    {{{"*/a.c", false, false}, {"*/b.c", false, false}}, 2, 100 + 1000 + 10000},
    /* inclusive any frame, exclusive most recent: TF[1] goes (b.c) */
    {{{"*/a.c", true, true}, {"*/b.c", false, false}}, 2, 1},
    /* inclusive any frame on /src, exclusive most recent main.c */
    {{{"/src/*", true, true}, {"*/main.c", false, false}}, 2, 1 + 10 + 10000},
    /* main.c is in every known stack, so including and excluding it
     * anywhere keeps nothing (the unknown trace is never included) */
    {{{"*/main.c", true, true}, {"*/main.c", false, true}}, 2, 0},
    /* the unknown traceback is "<unknown>" to filters too */
    {{{"<unknown>", true, false}}, 1, 1000},
    {{{"<unknown>", false, false}}, 1, 1 + 10 + 100 + 10000},
    /* fnmatch: '*' crosses '/', brackets, no match at all */
    {{{"*.c", true, false}}, 1, 1 + 10 + 100},
    {{{"*vector", true, false}}, 1, 10000},
    {{{"/src/[ab].c", true, false}}, 1, 1 + 10},
    {{{"/src/[!ab]*", true, false}}, 1, 100},
    {{{"nothing", true, true}}, 1, 0},
    {{{"nothing", false, true}}, 1, 1 + 10 + 100 + 1000 + 10000},
    /* three filters: include a.c or vector anywhere, exclude b.c anywhere */
    {{{"*/a.c", true, true}, {"*vector", true, true}, {"*/b.c", false, true}}, 3, 1},
};

START_TEST(test_filters)
{
	const struct fcase *fc = &FCASES[_i];
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};

	for (size_t k = 0; k < N(keys); k++) {
		for (int cum = 0; cum < 2; cum++) {
			if (cum && keys[k] == QUERY_KEY_TRACEBACK)
				continue;
			/* tracemalloc's filters over the frames as captured */
			struct query_opts o = {.key = keys[k],
			                       .cumulative = cum,
			                       .filters = fc->f,
			                       .nfilters = fc->nf,
			                       .raw_frames = true};
			cJSON *r = run_top(TF, N(TF), &o);
			uint64_t count = 0;
			for (size_t i = 0; i < N(TF); i++)
				if ((fc->kept / TF[i].size) % 10 == 1) /* its digit is set */
					count += TF[i].count;
			ck_assert_msg(num(r, "total_size") == (long long)fc->kept,
			              "case %d key %zu cum %d: total_size %lld, expected %" PRIu64,
			              _i, k, cum, num(r, "total_size"), fc->kept);
			ck_assert_int_eq(num(r, "total_count"), (long long)count);
			if (fc->kept == 0)
				ck_assert_int_eq(nstats(r), 0);
			/* Non-cumulative statistics partition the kept traces. */
			if (!cum) {
				long long s = 0;
				for (int i = 0; i < nstats(r); i++)
					s += num(stat_n(r, i), "size");
				ck_assert_int_eq(s, (long long)fc->kept);
			}
			cJSON_Delete(r);
		}
	}
}
END_TEST

START_TEST(test_filter_stats)
{
	/* Keep stacks through b.c (TF[1], TF[4]); count every frame. */
	struct query_filter f = {"*/b.c", true, true};
	struct query_opts o = {.key = QUERY_KEY_LINENO,
	                       .cumulative = true,
	                       .filters = &f,
	                       .nfilters = 1,
	                       .raw_frames = true};
	cJSON *r = run_top(TF, N(TF), &o);

	expect_totals(r, TF[1].size + TF[4].size, TF[1].count + TF[4].count, 5);
	expect_stat(r, 0, TF[1].size + TF[4].size, 2, "/src/main.c", 10, "main");
	/* two ties, each broken by the filename */
	expect_stat(r, 1, TF[4].size, 1, "/src/b.c", 4, "main");
	expect_stat(r, 2, TF[4].size, 1, "/usr/include/c++/vector", 5,
	            "std::vector<int>::push_back");
	expect_stat(r, 3, TF[1].size, 1, "/src/a.c", 5, "fa");
	expect_stat(r, 4, TF[1].size, 1, "/src/b.c", 1, "fb");
	cJSON_Delete(r);
}
END_TEST

/* ---- order ---- */

START_TEST(test_sort_ties)
{
	static const struct tg t[] = {
	    {{&A10}, {1}, 1, 5, 1}, /* a.c:10 after a.c:9: lines compare as numbers */
	    {{&B1}, {2}, 1, 5, 1},  {{&A9}, {3}, 1, 5, 1}, {{&A2}, {4}, 1, 5, 2},
	    {{&M}, {5}, 1, 6, 1},   {{&A5}, {6}, 1, 1, 9},
	};
	cJSON *r = top_k(t, N(t), QUERY_KEY_LINENO, false);

	expect_stat(r, 0, 6, 1, "/src/main.c", 10, "main"); /* size first */
	expect_stat(r, 1, 5, 2, "/src/a.c", 2, "fa");       /* then count */
	expect_stat(r, 2, 5, 1, "/src/a.c", 9, "ga");       /* then the key */
	expect_stat(r, 3, 5, 1, "/src/a.c", 10, "ga");
	expect_stat(r, 4, 5, 1, "/src/b.c", 1, "fb");
	expect_stat(r, 5, 1, 9, "/src/a.c", 5, "fa");
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_sort_ties_traceback)
{
	/* All tie on size and count: frame by frame, a prefix first. */
	static const struct tg t[] = {
	    {{&A2, &B4, &M}, {0}, 3, 5, 1},  {{&A2, &B4}, {0}, 2, 5, 1},
	    {{&A2, &B1, &M}, {0}, 3, 5, 1},  {{&M}, {0}, 1, 5, 1},
	    {{&A2, &B4, &V5}, {0}, 3, 5, 1},
	};
	static const int order[] = {2, 1, 0, 4, 3};
	cJSON *r = top_k(t, N(t), QUERY_KEY_TRACEBACK, false);

	ck_assert_int_eq(nstats(r), (int)N(t));
	for (size_t i = 0; i < N(order); i++) {
		const struct tg *e = &t[order[i]];
		const cJSON *st = stat_n(r, (int)i);
		ck_assert_int_eq(ntb(st), (int)e->n);
		for (uint32_t j = 0; j < e->n; j++)
			expect_frame(frame_n(st, (int)j), e->fr[j]->filename, e->fr[j]->lineno,
			             e->fr[j]->function);
	}
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_limit)
{
	struct query_opts o = {.key = QUERY_KEY_LINENO, .limit = 2};
	cJSON *r = run_top(T1, N(T1), &o);

	/* count_stats counts before the limit; totals ignore it. */
	expect_totals(r, sum_size(T1, N(T1)), sum_count(T1, N(T1)), 4);
	ck_assert_int_eq(nstats(r), 2);
	expect_stat(r, 0, T1[2].size, T1[2].count, "/src/b.c", 1, "fb");
	expect_stat(r, 1, T1[0].size + T1[4].size, T1[0].count + T1[4].count, "/src/a.c", 2, "fa");
	cJSON_Delete(r);

	o.limit = 1;
	r = run_top(T1, N(T1), &o);
	ck_assert_int_eq(num(r, "count_stats"), 4);
	ck_assert_int_eq(nstats(r), 1);
	cJSON_Delete(r);

	o.limit = 4;
	r = run_top(T1, N(T1), &o);
	ck_assert_int_eq(nstats(r), 4);
	cJSON_Delete(r);

	o.limit = 1000;
	r = run_top(T1, N(T1), &o);
	ck_assert_int_eq(nstats(r), 4);
	cJSON_Delete(r);

	o.limit = 0; /* all */
	r = run_top(T1, N(T1), &o);
	ck_assert_int_eq(nstats(r), 4);
	cJSON_Delete(r);
}
END_TEST

/* ---- compare ---- */

#define CF(l)                                                                                      \
	{                                                                                          \
		"/src/c.c", l, "c", "/bin/app", NULL, NULL                                         \
	}
static const struct frame_info C[] = {CF(0), CF(1), CF(2), CF(3), CF(4),
                                      CF(5), CF(6), CF(7), CF(8)};

/* Keys c.c:1..8; every component of compare_to's sort key decides one pair:
 *  c2 (|d|100, size 100, |cd| 4, count 1) before
 *  c1 (|d|100, size 100, |cd| 3, count 3)   (abs count diff, not count) before
 *  c3 (|d|100, size 50)                      (size) before
 *  c4 (|d|100, size 0: vanished)             (size) before
 *  c6 (|d|10, size 20, |cd| 1, count 3)      (abs size diff) before
 *  c5 (|d|10, size 20, |cd| 1, count 2)      (count) before
 *  c7, c8 (no change, equal)                 (the key) */
static const struct tg OLD[] = {
    {{&C[2]}, {0}, 1, 150, 3}, {{&C[2]}, {0}, 1, 50, 2}, /* c2: 200 / 5 */
    {{&C[3]}, {0}, 1, 150, 2}, {{&C[4]}, {0}, 1, 100, 3}, {{&C[5]}, {0}, 1, 10, 1},
    {{&C[6]}, {0}, 1, 10, 2},  {{&C[8]}, {0}, 1, 5, 1},   {{&C[7]}, {0}, 1, 5, 1},
};
static const struct tg NEW[] = {
    {{&C[1]}, {0}, 1, 100, 3}, {{&C[2]}, {0}, 1, 100, 1}, {{&C[3]}, {0}, 1, 50, 1},
    {{&C[5]}, {0}, 1, 20, 2},  {{&C[6]}, {0}, 1, 15, 1},  {{&C[6]}, {0}, 1, 5, 2}, /* c6: 20 / 3 */
    {{&C[7]}, {0}, 1, 5, 1},   {{&C[8]}, {0}, 1, 5, 1},
};

START_TEST(test_compare_order)
{
	struct query_opts o = {.key = QUERY_KEY_LINENO};
	cJSON *r = run_cmp(OLD, N(OLD), NEW, N(NEW), &o);
	uint64_t ns = sum_size(NEW, N(NEW)), os = sum_size(OLD, N(OLD));
	uint64_t nc = sum_count(NEW, N(NEW)), oc = sum_count(OLD, N(OLD));

	expect_totals(r, ns, nc, 8);
	ck_assert_int_eq(num(r, "total_size_diff"), (long long)ns - (long long)os);
	ck_assert_int_eq(num(r, "total_count_diff"), (long long)nc - (long long)oc);
	ck_assert_int_eq(nstats(r), 8);
	expect_diff(r, 0, 100, 100 - 200, 1, 1 - 5, "/src/c.c", 2);
	expect_diff(r, 1, 100, 100, 3, 3, "/src/c.c", 1); /* new */
	expect_diff(r, 2, 50, 50 - 150, 1, 1 - 2, "/src/c.c", 3);
	expect_diff(r, 3, 0, -100, 0, -3, "/src/c.c", 4); /* vanished */
	expect_diff(r, 4, 20, 20 - 10, 3, 3 - 2, "/src/c.c", 6);
	expect_diff(r, 5, 20, 20 - 10, 2, 2 - 1, "/src/c.c", 5);
	expect_diff(r, 6, 5, 0, 1, 0, "/src/c.c", 7);
	expect_diff(r, 7, 5, 0, 1, 0, "/src/c.c", 8);
	cJSON_Delete(r);

	o.limit = 3;
	r = run_cmp(OLD, N(OLD), NEW, N(NEW), &o);
	ck_assert_int_eq(num(r, "count_stats"), 8);
	ck_assert_int_eq(nstats(r), 3);
	expect_diff(r, 2, 50, 50 - 150, 1, 1 - 2, "/src/c.c", 3);
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_compare_empty_sides)
{
	struct query_opts o = {.key = QUERY_KEY_FILENAME};
	cJSON *r = run_cmp(NULL, 0, NEW, N(NEW), &o);

	/* Nothing before: every diff is the value itself. */
	expect_totals(r, sum_size(NEW, N(NEW)), sum_count(NEW, N(NEW)), 1);
	ck_assert_int_eq(num(r, "total_size_diff"), (long long)sum_size(NEW, N(NEW)));
	expect_diff(r, 0, sum_size(NEW, N(NEW)), (long long)sum_size(NEW, N(NEW)),
	            sum_count(NEW, N(NEW)), (long long)sum_count(NEW, N(NEW)), "/src/c.c", 0);
	cJSON_Delete(r);

	/* Nothing after: everything vanished. */
	r = run_cmp(OLD, N(OLD), NULL, 0, &o);
	expect_totals(r, 0, 0, 1);
	ck_assert_int_eq(num(r, "total_size_diff"), -(long long)sum_size(OLD, N(OLD)));
	ck_assert_int_eq(num(r, "total_count_diff"), -(long long)sum_count(OLD, N(OLD)));
	expect_diff(r, 0, 0, -(long long)sum_size(OLD, N(OLD)), 0,
	            -(long long)sum_count(OLD, N(OLD)), "/src/c.c", 0);
	cJSON_Delete(r);

	r = run_cmp(NULL, 0, NULL, 0, &o);
	expect_totals(r, 0, 0, 0);
	ck_assert_int_eq(num(r, "total_size_diff"), 0);
	ck_assert_int_eq(num(r, "total_count_diff"), 0);
	ck_assert_int_eq(nstats(r), 0);
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_compare_cumulative)
{
	static const struct tg old[] = {{{&A2, &M}, {0}, 2, 10, 1}};
	static const struct tg new_[] = {{{&A2b, &M}, {0}, 2, 15, 1}, {{&B1, &M}, {0}, 2, 5, 1}};
	struct query_opts o = {.key = QUERY_KEY_LINENO, .cumulative = true};
	cJSON *r = run_cmp(old, N(old), new_, N(new_), &o);

	expect_totals(r, 20, 2, 3);
	ck_assert_int_eq(num(r, "total_size_diff"), 20 - 10);
	expect_diff(r, 0, 15 + 5, 15 + 5 - 10, 2, 1, "/src/main.c", 10);
	expect_diff(r, 1, 15, 15 - 10, 1, 0, "/src/a.c", 2); /* |d| 5, size 15 */
	expect_diff(r, 2, 5, 5, 1, 1, "/src/b.c", 1);        /* |d| 5, size 5 */
	cJSON_Delete(r);
}
END_TEST

START_TEST(test_compare_traceback_filtered)
{
	static const struct tg old[] = {
	    {{&A2, &M}, {0}, 2, 10, 1}, {{&B1, &M}, {0}, 2, 20, 1}, {{&A2, &B4}, {0}, 2, 7, 1}};
	static const struct tg new_[] = {
	    {{&A2b, &M}, {0}, 2, 30, 3}, {{&B1, &M}, {0}, 2, 40, 1}, {{&A5, &M}, {0}, 2, 1, 1}};
	struct query_filter f = {"*/a.c", true, false};
	struct query_opts o = {.key = QUERY_KEY_TRACEBACK, .filters = &f, .nfilters = 1};
	cJSON *r = run_cmp(old, N(old), new_, N(new_), &o);
	const cJSON *st;

	/* The filter applies to both snapshots: b.c's traces count nowhere. */
	expect_totals(r, 30 + 1, 3 + 1, 3);
	ck_assert_int_eq(num(r, "total_size_diff"), 30 + 1 - (10 + 7));
	ck_assert_int_eq(num(r, "total_count_diff"), 3 + 1 - (1 + 1));
	st = stat_n(r, 0); /* a.c:2 <- main.c:10, |d| 20 */
	ck_assert_int_eq(num(st, "size"), 30);
	ck_assert_int_eq(num(st, "size_diff"), 20);
	ck_assert_int_eq(num(st, "count_diff"), 2);
	ck_assert_int_eq(ntb(st), 2);
	expect_frame(frame_n(st, 1), "/src/main.c", 10, "main");
	st = stat_n(r, 1); /* a.c:2 <- b.c:4 vanished, |d| 7 */
	ck_assert_int_eq(num(st, "size"), 0);
	ck_assert_int_eq(num(st, "size_diff"), -7);
	ck_assert_int_eq(num(st, "count"), 0);
	ck_assert_int_eq(num(st, "count_diff"), -1);
	expect_frame(frame_n(st, 1), "/src/b.c", 4, "main");
	st = stat_n(r, 2); /* a.c:5 new, |d| 1 */
	ck_assert_int_eq(num(st, "size_diff"), 1);
	expect_frame(frame_n(st, 0), "/src/a.c", 5, "fa");
	cJSON_Delete(r);
}
END_TEST

/* ---- bad input, empty input, unknown tracebacks ---- */

START_TEST(test_einval)
{
	static const struct frame_info nofile = {NULL, 1, "f", "m", NULL, NULL};
	static const struct frame_info nofunc = {"f.c", 1, NULL, "m", NULL, NULL};
	static const struct frame_info nomod = {"f.c", 1, "f", NULL, NULL, NULL};
	const struct frame_info *bad_frames[][2] = {
	    {&A2, NULL}, {&A2, &nofile}, {&A2, &nofunc}, {&A2, &nomod}};
	const struct frame_info *ok_frames[2] = {&A2, &M};
	uint64_t addrs[2] = {0, 0};
	struct trace_group good = {ok_frames, addrs, 2, 1, 1, 1, 1, 0};
	struct trace_group g;
	struct query_filter nopat = {NULL, true, false};
	struct query_opts o = {.key = QUERY_KEY_LINENO};
	cJSON poison;
	cJSON *out = &poison; /* must be cleared on failure */

	ck_assert_int_eq(query_top(&good, 1, NULL, &out), -EINVAL);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(query_top(&good, 1, &o, NULL), -EINVAL);
	ck_assert_int_eq(query_compare(&good, 1, &good, 1, NULL, &out), -EINVAL);
	ck_assert_int_eq(query_compare(&good, 1, &good, 1, &o, NULL), -EINVAL);

	o.key = (enum query_key)4;
	ck_assert_int_eq(query_top(&good, 1, &o, &out), -EINVAL);
	o.key = (enum query_key) - 1;
	ck_assert_int_eq(query_top(&good, 1, &o, &out), -EINVAL);

	o.key = QUERY_KEY_TRACEBACK;
	o.cumulative = true;
	ck_assert_int_eq(query_top(&good, 1, &o, &out), -EINVAL);
	ck_assert_int_eq(query_top(NULL, 0, &o, &out), -EINVAL);
	ck_assert_int_eq(query_compare(&good, 1, &good, 1, &o, &out), -EINVAL);
	ck_assert_ptr_null(out);

	o.key = QUERY_KEY_LINENO;
	o.cumulative = false;
	o.nfilters = 1;
	ck_assert_int_eq(query_top(&good, 1, &o, &out), -EINVAL); /* filters NULL */
	o.filters = &nopat;
	ck_assert_int_eq(query_top(&good, 1, &o, &out), -EINVAL);
	o.filters = NULL;
	o.nfilters = 0;

	ck_assert_int_eq(query_top(NULL, 1, &o, &out), -EINVAL);
	ck_assert_int_eq(query_compare(NULL, 1, &good, 1, &o, &out), -EINVAL);
	ck_assert_int_eq(query_compare(&good, 1, NULL, 1, &o, &out), -EINVAL);

	g = good;
	g.frames = NULL;
	ck_assert_int_eq(query_top(&g, 1, &o, &out), -EINVAL);
	g = good;
	g.addrs = NULL;
	ck_assert_int_eq(query_top(&g, 1, &o, &out), -EINVAL);
	for (size_t i = 0; i < N(bad_frames); i++) {
		g = good;
		g.frames = bad_frames[i];
		ck_assert_int_eq(query_top(&g, 1, &o, &out), -EINVAL);
		ck_assert_int_eq(query_compare(&good, 1, &g, 1, &o, &out), -EINVAL);
		ck_assert_int_eq(query_compare(&g, 1, &good, 1, &o, &out), -EINVAL);
	}
	ck_assert_ptr_null(out);

	/* And the good input is fine. */
	ck_assert_int_eq(query_top(&good, 1, &o, &out), 0);
	cJSON_Delete(out);
}
END_TEST

START_TEST(test_empty)
{
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};

	for (size_t k = 0; k < N(keys); k++) {
		cJSON *r = top_k(NULL, 0, keys[k], keys[k] != QUERY_KEY_TRACEBACK);
		expect_totals(r, 0, 0, 0);
		ck_assert_int_eq(nstats(r), 0);
		ck_assert_str_eq(str(r, "key"), query_key_name(keys[k]));
		cJSON_Delete(r);
	}
}
END_TEST

START_TEST(test_nframes_zero)
{
	static const struct tg t[] = {
	    {{NULL}, {0}, 0, 3, 1}, {{&A2}, {0x10}, 1, 4, 1}, {{NULL}, {0}, 0, 5, 2}};
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};
	/* what each key prints of the unknown frame */
	static const char *const func[] = {"<unknown>", "", "<unknown>", "<unknown>"};

	for (size_t k = 0; k < N(keys); k++) {
		for (int cum = 0; cum < 2; cum++) {
			if (cum && keys[k] == QUERY_KEY_TRACEBACK)
				continue;
			cJSON *r = top_k(t, N(t), keys[k], cum);
			expect_totals(r, sum_size(t, N(t)), sum_count(t, N(t)), 2);
			expect_stat(r, 0, t[0].size + t[2].size, t[0].count + t[2].count,
			            "<unknown>", 0, func[k]);
			ck_assert_str_eq(str(frame_n(stat_n(r, 0), 0), "module"), "<unknown>");
			ck_assert_str_eq(str(frame_n(stat_n(r, 0), 0), "address"), "0x0");
			expect_stat(
			    r, 1, t[1].size, t[1].count, "/src/a.c",
			    keys[k] == QUERY_KEY_LINENO || keys[k] == QUERY_KEY_TRACEBACK ? 2 : 0,
			    keys[k] == QUERY_KEY_FILENAME ? "" : "fa");
			cJSON_Delete(r);
		}
	}
}
END_TEST

/* ---- a model: random inputs against a naive reimplementation ---- */

static const struct frame_info ref_unknown = {"<unknown>", 0, "<unknown>", "<unknown>", NULL, NULL};

struct pool_frame {
	char file[16], func[8], mod[8];
	struct frame_info fi;
};

static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
	/* xorshift64*, seeded per test so runs repeat */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * UINT64_C(2685821657736338717)) % n;
}

struct ref_stat {
	const struct frame_info *f[MAXF]; /* the representative frames */
	uint64_t a[MAXF];                 /* and their addresses */
	uint32_t n;
	uint64_t size[2], count[2];
};

static bool ref_frame_eq(enum query_key k, const struct frame_info *a, const struct frame_info *b)
{
	if (strcmp(a->filename, b->filename) != 0)
		return false;
	if ((k == QUERY_KEY_LINENO || k == QUERY_KEY_TRACEBACK) && a->lineno != b->lineno)
		return false;
	if ((k == QUERY_KEY_FUNCTION || k == QUERY_KEY_TRACEBACK) &&
	    strcmp(a->function, b->function) != 0)
		return false;
	return true;
}

static bool ref_keep(const struct tg *t, const struct query_filter *f, size_t nf)
{
	const struct frame_info *const *fr =
	    t->n ? t->fr : (const struct frame_info *const[]){&ref_unknown};
	uint32_t n = t->n ? t->n : 1;
	bool any_incl = false, incl = false;

	for (size_t i = 0; i < nf; i++) {
		bool hit = false;
		for (uint32_t j = 0; j < (f[i].all_frames ? n : 1); j++)
			hit = hit || fnmatch(f[i].pattern, fr[j]->filename, 0) == 0;
		if (f[i].inclusive) {
			any_incl = true;
			incl = incl || hit;
		} else if (hit) {
			return false;
		}
	}
	return !any_incl || incl;
}

/* The representative order: module, function, address; frame by frame. */
static int ref_rep_cmp(const struct frame_info *const *fa, const uint64_t *aa,
                       const struct frame_info *const *fb, const uint64_t *ab, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		int r = strcmp(fa[j]->module, fb[j]->module);
		if (r == 0)
			r = strcmp(fa[j]->function, fb[j]->function);
		if (r == 0 && aa[j] != ab[j])
			r = aa[j] < ab[j] ? -1 : 1;
		if (r != 0)
			return r;
	}
	return 0;
}

/* Finds (linearly) or makes the statistic of key f[0..n) and lets these
 * frames compete for representative. */
static struct ref_stat *ref_find(struct ref_stat *rs, size_t *nrs, enum query_key k,
                                 const struct frame_info *const *f, const uint64_t *a, uint32_t n)
{
	size_t i;

	for (i = 0; i < *nrs; i++) {
		bool eq = rs[i].n == n;
		for (uint32_t j = 0; eq && j < n; j++)
			eq = ref_frame_eq(k, rs[i].f[j], f[j]);
		if (eq)
			break;
	}
	if (i == *nrs) {
		memset(&rs[i], 0, sizeof rs[i]);
		rs[i].n = n;
		(*nrs)++;
	} else if (ref_rep_cmp(f, a, rs[i].f, rs[i].a, n) >= 0) {
		return &rs[i];
	}
	memcpy(rs[i].f, f, n * sizeof *f);
	memcpy(rs[i].a, a, n * sizeof *a);
	return &rs[i];
}

static void ref_add(struct ref_stat *st, const struct tg *t, int side)
{
	st->size[side] += t->size;
	st->count[side] += t->count;
}

static void ref_group(struct ref_stat *rs, size_t *nrs, const struct tg *t, size_t n,
                      const struct query_opts *o, int side, uint64_t *tsize, uint64_t *tcount)
{
	static const uint64_t zero[1] = {0};

	for (size_t i = 0; i < n; i++) {
		const struct frame_info *const *fr =
		    t[i].n ? t[i].fr : (const struct frame_info *const[]){&ref_unknown};
		const uint64_t *ad = t[i].n ? t[i].ad : zero;
		uint32_t nf = t[i].n ? t[i].n : 1;

		if (!ref_keep(&t[i], o->filters, o->nfilters))
			continue;
		*tsize += t[i].size;
		*tcount += t[i].count;
		if (o->key == QUERY_KEY_TRACEBACK) {
			ref_add(ref_find(rs, nrs, o->key, fr, ad, nf), &t[i], side);
		} else if (!o->cumulative) {
			ref_add(ref_find(rs, nrs, o->key, fr, ad, 1), &t[i], side);
		} else {
			for (uint32_t j = 0; j < nf; j++) {
				bool seen = false;
				struct ref_stat *st = ref_find(rs, nrs, o->key, &fr[j], &ad[j], 1);
				for (uint32_t p = 0; p < j && !seen; p++)
					seen = ref_frame_eq(o->key, fr[p], fr[j]);
				if (!seen)
					ref_add(st, &t[i], side);
			}
		}
	}
}

static enum query_key ref_sort_key;
static bool ref_sort_diff;

static uint64_t ref_abs(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

static int ref_cmp(const void *pa, const void *pb)
{
	const struct ref_stat *a = pa, *b = pb;
	uint64_t ka[4], kb[4];

	if (ref_sort_diff) {
		uint64_t va[4] = {ref_abs(a->size[1], a->size[0]), a->size[1],
		                  ref_abs(a->count[1], a->count[0]), a->count[1]};
		uint64_t vb[4] = {ref_abs(b->size[1], b->size[0]), b->size[1],
		                  ref_abs(b->count[1], b->count[0]), b->count[1]};
		memcpy(ka, va, sizeof ka);
		memcpy(kb, vb, sizeof kb);
	} else {
		uint64_t va[4] = {a->size[1], a->count[1], 0, 0};
		uint64_t vb[4] = {b->size[1], b->count[1], 0, 0};
		memcpy(ka, va, sizeof ka);
		memcpy(kb, vb, sizeof kb);
	}
	for (int i = 0; i < 4; i++)
		if (ka[i] != kb[i])
			return ka[i] > kb[i] ? -1 : 1;
	for (uint32_t j = 0; j < a->n && j < b->n; j++) {
		int r = strcmp(a->f[j]->filename, b->f[j]->filename);
		if (r == 0 &&
		    (ref_sort_key == QUERY_KEY_LINENO || ref_sort_key == QUERY_KEY_TRACEBACK))
			r = (a->f[j]->lineno > b->f[j]->lineno) -
			    (a->f[j]->lineno < b->f[j]->lineno);
		if (r == 0 &&
		    (ref_sort_key == QUERY_KEY_FUNCTION || ref_sort_key == QUERY_KEY_TRACEBACK))
			r = strcmp(a->f[j]->function, b->f[j]->function);
		if (r != 0)
			return r;
	}
	return (a->n > b->n) - (a->n < b->n);
}

static void ref_check(const cJSON *r, const struct tg *old, size_t nold, const struct tg *new_,
                      size_t nnew, const struct query_opts *o, bool diff)
{
	size_t cap = (nold + nnew) * MAXF + 1, nrs = 0;
	struct ref_stat *rs = calloc(cap, sizeof *rs);
	uint64_t ts[2] = {0, 0}, tc[2] = {0, 0};
	size_t shown;

	ck_assert_ptr_nonnull(rs);
	ref_group(rs, &nrs, old, nold, o, 0, &ts[0], &tc[0]);
	ref_group(rs, &nrs, new_, nnew, o, 1, &ts[1], &tc[1]);
	ref_sort_key = o->key;
	ref_sort_diff = diff;
	qsort(rs, nrs, sizeof *rs, ref_cmp);

	expect_totals(r, ts[1], tc[1], (int)nrs);
	if (diff) {
		ck_assert_int_eq(num(r, "total_size_diff"), (long long)ts[1] - (long long)ts[0]);
		ck_assert_int_eq(num(r, "total_count_diff"), (long long)tc[1] - (long long)tc[0]);
	}
	shown = o->limit && o->limit < nrs ? o->limit : nrs;
	ck_assert_int_eq(nstats(r), (int)shown);
	for (size_t i = 0; i < shown; i++) {
		const cJSON *st = stat_n(r, (int)i);
		ck_assert_int_eq(num(st, "size"), (long long)rs[i].size[1]);
		ck_assert_int_eq(num(st, "count"), (long long)rs[i].count[1]);
		if (diff) {
			ck_assert_int_eq(num(st, "size_diff"),
			                 (long long)rs[i].size[1] - (long long)rs[i].size[0]);
			ck_assert_int_eq(num(st, "count_diff"),
			                 (long long)rs[i].count[1] - (long long)rs[i].count[0]);
		}
		ck_assert_int_eq(ntb(st), (int)rs[i].n);
		for (uint32_t j = 0; j < rs[i].n; j++) {
			const struct frame_info *f = rs[i].f[j];
			bool exact = o->key == QUERY_KEY_LINENO || o->key == QUERY_KEY_TRACEBACK;
			char addr[32];
			snprintf(addr, sizeof addr, "0x%" PRIx64, exact ? rs[i].a[j] : 0);
			expect_full_frame(frame_n(st, (int)j), f->filename, exact ? f->lineno : 0,
			                  o->key == QUERY_KEY_FILENAME ? "" : f->function,
			                  f->module, addr);
		}
	}
	free(rs);
}

START_TEST(test_model)
{
	static struct pool_frame pool[3 * 3 * 2 * 2];
	static const char *const files[] = {"/r/x.c", "/r/y.c", "/r/z.h"};
	static const char *const pats[] = {"*x.c", "/r/*", "*.h", "*/y.c", "<unknown>"};
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};
	size_t np = 0;

	/* 18 locations, each twice under different pointers and modules. */
	for (size_t f = 0; f < N(files); f++)
		for (uint32_t l = 1; l <= 3; l++)
			for (int fn = 0; fn < 2; fn++)
				for (int copy = 0; copy < 2; copy++) {
					struct pool_frame *p = &pool[np++];
					snprintf(p->file, sizeof p->file, "%s", files[f]);
					snprintf(p->func, sizeof p->func, "%s", fn ? "g" : "f");
					snprintf(p->mod, sizeof p->mod, "/m%d", copy);
					p->fi = (struct frame_info){p->file, l,    p->func,
					                            p->mod,  NULL, NULL};
				}

	rng_state = UINT64_C(0x9e3779b97f4a7c15);
	for (int iter = 0; iter < 300; iter++) {
		struct tg side[2][24];
		size_t n[2];
		struct query_filter flt[3];
		struct query_opts o = {0};

		for (int s = 0; s < 2; s++) {
			n[s] = (size_t)rnd(24);
			for (size_t i = 0; i < n[s]; i++) {
				struct tg *t = &side[s][i];
				t->n = rnd(6) == 0 ? 0 : 1 + (uint32_t)rnd(MAXF);
				for (uint32_t j = 0; j < t->n; j++) {
					t->fr[j] = &pool[rnd(np)].fi;
					t->ad[j] = rnd(64);
				}
				/* few sizes and counts, so ties happen */
				t->size = 1 + rnd(8);
				t->count = 1 + rnd(3);
			}
		}
		o.key = keys[rnd(N(keys))];
		o.cumulative = o.key != QUERY_KEY_TRACEBACK && rnd(2);
		o.nfilters = (size_t)rnd(4);
		for (size_t i = 0; i < o.nfilters; i++) {
			flt[i].pattern = pats[rnd(N(pats))];
			flt[i].inclusive = rnd(2);
			flt[i].all_frames = rnd(2);
		}
		o.filters = flt;
		o.limit = rnd(3) == 0 ? (size_t)rnd(6) : 0;

		cJSON *r = run_top(side[1], n[1], &o);
		ref_check(r, NULL, 0, side[1], n[1], &o, false);
		cJSON_Delete(r);

		r = run_cmp(side[0], n[0], side[1], n[1], &o);
		ref_check(r, side[0], n[0], side[1], n[1], &o, true);
		cJSON_Delete(r);
	}
}
END_TEST

/* ---- scale ---- */

START_TEST(test_scale)
{
	enum { NGROUPS = 100000, DEPTH = 32, NLOC = 20000 };
	struct frame_info *loc = calloc(NLOC, sizeof *loc);
	char(*names)[24] = calloc(NLOC, sizeof *names);
	const struct frame_info **fr = calloc((size_t)NGROUPS * DEPTH, sizeof *fr);
	uint64_t *ad = calloc((size_t)NGROUPS * DEPTH, sizeof *ad);
	struct trace_group *g = calloc(NGROUPS, sizeof *g);
	uint64_t total = 0;
	cJSON *r = NULL;

	ck_assert(loc && names && fr && ad && g);
	for (int i = 0; i < NLOC; i++) {
		snprintf(names[i], sizeof names[i], "/src/f%d.c", i % 2000);
		loc[i] = (struct frame_info){
		    names[i], (uint32_t)(i / 2000 + 1), "fn", "/bin/app", NULL, NULL};
	}
	rng_state = 42;
	for (int i = 0; i < NGROUPS; i++) {
		for (int j = 0; j < DEPTH; j++) {
			fr[(size_t)i * DEPTH + (size_t)j] = &loc[rnd(NLOC)];
			ad[(size_t)i * DEPTH + (size_t)j] = rnd(UINT64_C(1) << 40);
		}
		g[i] = (struct trace_group){&fr[(size_t)i * DEPTH],
		                            &ad[(size_t)i * DEPTH],
		                            DEPTH,
		                            1 + rnd(4096),
		                            1,
		                            1,
		                            0,
		                            0};
		total += g[i].size;
	}

	struct query_opts o = {.key = QUERY_KEY_LINENO, .cumulative = true, .limit = 10};
	ck_assert_int_eq(query_top(g, NGROUPS, &o, &r), 0);
	ck_assert_int_eq(num(r, "total_size"), (long long)total);
	ck_assert_int_eq(num(r, "count_stats"), NLOC);
	ck_assert_int_eq(nstats(r), 10);
	cJSON_Delete(r);

	o = (struct query_opts){.key = QUERY_KEY_TRACEBACK, .limit = 10};
	ck_assert_int_eq(query_top(g, NGROUPS, &o, &r), 0);
	ck_assert_int_eq(num(r, "count_stats"), NGROUPS);
	cJSON_Delete(r);

	struct query_filter f = {"/src/f1*.c", false, true};
	o = (struct query_opts){
	    .key = QUERY_KEY_FILENAME, .filters = &f, .nfilters = 1, .limit = 10};
	ck_assert_int_eq(query_compare(g, NGROUPS / 2, g + NGROUPS / 2, NGROUPS / 2, &o, &r), 0);
	cJSON_Delete(r);

	free(g);
	free(ad);
	free(fr);
	free(names);
	free(loc);
}
END_TEST

Suite *query_suite(void)
{
	Suite *s = suite_create("query");
	TCase *tc = tcase_create("statistics");

	tcase_add_test(tc, test_key_parse_name);
	tcase_add_test(tc, test_frame_json);
	tcase_add_test(tc, test_shape);
	tcase_add_test(tc, test_key_lineno);
	tcase_add_test(tc, test_sort_by);
	tcase_add_test(tc, test_sort_by_compare);
	tcase_add_test(tc, test_runtime_frames);
	tcase_add_test(tc, test_function_without_lines);
	tcase_add_test(tc, test_key_filename);
	tcase_add_test(tc, test_key_function);
	tcase_add_test(tc, test_key_traceback);
	tcase_add_test(tc, test_representative);
	tcase_add_test(tc, test_cumulative_lineno);
	tcase_add_test(tc, test_cumulative_filename);
	tcase_add_test(tc, test_cumulative_once_per_trace);
	tcase_add_loop_test(tc, test_filters, 0, (int)N(FCASES));
	tcase_add_test(tc, test_filter_stats);
	tcase_add_test(tc, test_sort_ties);
	tcase_add_test(tc, test_sort_ties_traceback);
	tcase_add_test(tc, test_limit);
	tcase_add_test(tc, test_compare_order);
	tcase_add_test(tc, test_compare_empty_sides);
	tcase_add_test(tc, test_compare_cumulative);
	tcase_add_test(tc, test_compare_traceback_filtered);
	tcase_add_test(tc, test_einval);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_nframes_zero);
	tcase_add_test(tc, test_model);
	suite_add_tcase(s, tc);

	/* Quadratic work on 100k groups would take minutes; this takes well
	 * under a second unsanitized. */
	tc = tcase_create("scale");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_scale);
	suite_add_tcase(s, tc);
	return s;
}
