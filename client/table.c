/*
 * table.c - the --table renderers: the daemon's responses printed for people.
 *
 * `top` and `compare` print tracemalloc's str(Statistic) and
 * str(StatisticDiff) after each location ("size=..., count=...,
 * average=..."; sorted by a count of allocations, those counts too), and
 * `traceback` its traceback example, each location followed by its source
 * line when the file can be read here. Every size, everywhere, is in
 * tracemalloc's unit rule (fmt_tm_size). The other responses print as
 * aligned columns (list) or "key: value" lines with human sizes.
 *
 * An answer about a sampled process (MEMTRACE_SAMPLE; its "sampled" member
 * is an object) holds estimates, and every rendering says so in words that
 * name the rate: "estimated from samples every N bytes".
 *
 * Everything the daemon sends is printed through client_put_text, which replaces
 * control characters: file and function names come from the traced program's
 * debug information, and it must not be able to drive the user's terminal.
 * Source files are opened only when they are regular files of bounded size,
 * so a name like /dev/stdin or a FIFO cannot make the client hang.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "xalloc.h"

/* A source file bigger than this is not code anyone reads line by line. */
#define SRC_MAX_SIZE (16u << 20)

/* ---- reading the response ---- */

static const cJSON *get(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* A non-negative integer field; false when absent or not one. */
static bool get_u64(const cJSON *o, const char *key, uint64_t *out)
{
	const cJSON *v = get(o, key);

	/* 2^64 is exactly representable; anything from there on does not fit. */
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) ||
	    v->valuedouble >= 18446744073709551616.0)
		return false;
	*out = (uint64_t)v->valuedouble;
	return true;
}

static uint64_t get_u64_or(const cJSON *o, const char *key, uint64_t dflt)
{
	uint64_t v;

	return get_u64(o, key, &v) ? v : dflt;
}

static const char *get_str(const cJSON *o, const char *key, const char *dflt)
{
	const cJSON *v = get(o, key);

	return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* The array `key` of resp, NULL unless an array (cJSON_ArrayForEach would
 * walk an object too). */
static const cJSON *get_array(const cJSON *resp, const char *key)
{
	const cJSON *v = get(resp, key);

	return cJSON_IsArray(v) ? v : NULL;
}

/* The sampling rate of an answer or a list entry that says its figures are
 * estimates ("sampled": {"rate": N}); false when they are exact. */
static bool sample_rate(const cJSON *o, uint64_t *rate)
{
	const cJSON *v = get(o, "sampled");

	return cJSON_IsObject(v) && get_u64(v, "rate", rate) && *rate > 0;
}

/* ---- printing ---- */

static void put_textn(const char *s, size_t n)
{
	client_put_text(stdout, s, n);
}

static void put_text(const char *s)
{
	put_textn(s, strlen(s));
}

static void fmt_tm_size(char *buf, size_t cap, double size, bool sign);

/* Bytes for people, by the one rule every rendering uses: tracemalloc's
 * (fmt_tm_size). */
static void fmt_size(char *buf, size_t cap, uint64_t n)
{
	fmt_tm_size(buf, cap, (double)n, false);
}

/* "estimated from samples every 4096 bytes", the phrase every rendering of
 * a sampled answer uses. */
static void put_estimated(uint64_t rate)
{
	printf("estimated from samples every %" PRIu64 " bytes", rate);
}

/* A line of its own under an answer's first lines, for top and traceback. */
static void print_estimated_line(const cJSON *resp, const char *what)
{
	uint64_t rate;

	if (!sample_rate(resp, &rate))
		return;
	fputs(what, stdout);
	put_estimated(rate);
	putchar('\n');
}

/* Seconds since the epoch as local time, "2025-11-25 19:06:01". */
static void fmt_time(char *buf, size_t cap, double t)
{
	struct tm tm;
	time_t tt;

	if (!(t >= 0 && t < 253402300800.0)) { /* year 10000 */
		snprintf(buf, cap, "?");
		return;
	}
	tt = (time_t)t;
	if (localtime_r(&tt, &tm) == NULL || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, cap, "?");
}

/* ---- source lines, read once per file ---- */

struct srcfile {
	struct srcfile *next;
	char *path;
	char *text;     /* NULL when the file cannot be read */
	size_t *starts; /* offset of each line; starts[nlines] is the end of the text */
	size_t nlines;
};

struct srccache {
	struct srcfile *files;
};

static int src_read(const char *path, char **text, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc;

	/* Paths come from snapshot files anyone may have written: opening a
	 * device can have effects, so only regular files are opened. */
	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto err_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)SRC_MAX_SIZE) {
		rc = -EINVAL;
		goto err_close;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	/* The file may shrink while it is read; what was read is what counts. */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto err_free;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	*text = buf;
	*len = got;
	return 0;

err_free:
	free(buf);
err_close:
	close(fd);
	return rc;
}

static struct srcfile *src_load(const char *path)
{
	struct srcfile *f = xcalloc(1, sizeof(*f));
	size_t len = 0, n = 0;

	f->path = xstrdup(path);
	if (src_read(path, &f->text, &len) < 0)
		return f;
	for (size_t i = 0; i < len; i++)
		n += f->text[i] == '\n';
	/* A last line without '\n' is a line too. */
	if (len > 0 && f->text[len - 1] != '\n')
		n++;
	f->starts = xcalloc(n + 1, sizeof(*f->starts));
	for (size_t i = 0, line = 1; i < len && line < n; i++) {
		if (f->text[i] == '\n')
			f->starts[line++] = i + 1;
	}
	f->starts[n] = len;
	f->nlines = n;
	return f;
}

static void src_free(struct srccache *sc)
{
	struct srcfile *f, *next;

	for (f = sc->files; f != NULL; f = next) {
		next = f->next;
		free(f->path);
		free(f->text);
		free(f->starts);
		free(f);
	}
	sc->files = NULL;
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Line `lineno` (from 1) of `path` with surrounding blanks removed, as
 * linecache.getline(...).strip(); false when there is none. */
static bool src_line(struct srccache *sc, const char *path, uint64_t lineno, const char **s,
                     size_t *n)
{
	struct srcfile *f;

	for (f = sc->files; f != NULL; f = f->next) {
		if (strcmp(f->path, path) == 0)
			break;
	}
	if (f == NULL) {
		f = src_load(path);
		f->next = sc->files;
		sc->files = f;
	}
	if (f->text == NULL || lineno == 0 || lineno > f->nlines)
		return false;
	size_t b = f->starts[lineno - 1], e = f->starts[lineno];
	while (b < e && is_space(f->text[b]))
		b++;
	while (e > b && is_space(f->text[e - 1]))
		e--;
	*s = f->text + b;
	*n = e - b;
	return e > b;
}

static void print_source(struct srccache *sc, const char *path, uint64_t lineno)
{
	const char *s;
	size_t n;

	if (!src_line(sc, path, lineno, &s, &n))
		return;
	fputs("    ", stdout);
	put_textn(s, n);
	putchar('\n');
}

/* ---- frames ---- */

/* A frame without a function name, or without debug information, names
 * itself "MODULE+0xOFFSET" in both fields: say it once. */
static bool has_function(const char *function, const char *filename)
{
	return function[0] != '\0' && strcmp(function, filename) != 0;
}

/* '  File "f", line N, in func' and its source line. */
static void print_frame(struct srccache *sc, const cJSON *frame)
{
	const char *filename = get_str(frame, "filename", "?");
	const char *function = get_str(frame, "function", "");
	uint64_t lineno = get_u64_or(frame, "lineno", 0);

	fputs("  File \"", stdout);
	put_text(filename);
	putchar('"');
	if (lineno > 0)
		printf(", line %" PRIu64, lineno);
	if (has_function(function, filename)) {
		fputs(", in ", stdout);
		put_text(function);
	}
	putchar('\n');
	if (lineno > 0)
		print_source(sc, filename, lineno);
}

static void print_traceback(struct srccache *sc, const cJSON *tb)
{
	const cJSON *frame;

	if (!cJSON_IsArray(tb) || cJSON_GetArraySize(tb) == 0) {
		fputs("  (no traceback)\n", stdout);
		return;
	}
	cJSON_ArrayForEach(frame, tb)
	{
		print_frame(sc, frame);
	}
}

/* ---- top ---- */

static void print_summary(const char *label, const cJSON *sum, const cJSON *resp);

/* What a statistic is for its key, as the "Top N lines" header says it. */
static const char *top_noun(const char *key, size_t n)
{
	if (strcmp(key, "filename") == 0)
		return n == 1 ? "file" : "files";
	if (strcmp(key, "function") == 0)
		return n == 1 ? "function" : "functions";
	if (strcmp(key, "traceback") == 0)
		return n == 1 ? "traceback" : "tracebacks";
	return n == 1 ? "line" : "lines";
}

/* The statistic's name for its key: "file:line", "file", "function (file)". */
static void print_site(const char *key, const cJSON *frame)
{
	const char *filename, *function;

	if (frame == NULL) {
		fputs("<unknown>", stdout);
		return;
	}
	filename = get_str(frame, "filename", "?");
	function = get_str(frame, "function", "");
	/* By function, and for a frame without line information whose function
	 * is known: the name first. */
	if ((strcmp(key, "function") == 0 ||
	     (strcmp(key, "filename") != 0 && get_u64_or(frame, "lineno", 0) == 0)) &&
	    has_function(function, filename)) {
		put_text(function);
		fputs(" (", stdout);
		put_text(filename);
		putchar(')');
		return;
	}
	put_text(filename);
	/* Without line information there is no ":0" to print, as for key filename. */
	if (strcmp(key, "lineno") == 0 && get_u64_or(frame, "lineno", 0) > 0)
		printf(":%" PRIu64, get_u64_or(frame, "lineno", 0));
}

/* Sorted by a count of allocations, the lines say those counts too. */
static bool by_allocations(const cJSON *resp)
{
	const char *by = get_str(resp, "sort_by", "size");
	return strcmp(by, "size") != 0 && strcmp(by, "count") != 0;
}

/* tracemalloc's str(Statistic) after the site: "size=X, count=N,
 * average=Y" (no average without blocks), then, sorted by allocations,
 * "allocations=N, allocated=X, temporary=T". */
static void print_stat(const cJSON *stat, bool allocs)
{
	char a[32];
	uint64_t size = get_u64_or(stat, "size", 0), count = get_u64_or(stat, "count", 0);

	fmt_size(a, sizeof(a), size);
	printf("size=%s, count=%" PRIu64, a, count);
	if (count > 0) {
		fmt_tm_size(a, sizeof(a), (double)size / (double)count, false);
		printf(", average=%s", a);
	}
	if (allocs) {
		fmt_size(a, sizeof(a), get_u64_or(stat, "allocated", 0));
		printf(", allocations=%" PRIu64 ", allocated=%s, temporary=%" PRIu64,
		       get_u64_or(stat, "allocations", 0), a, get_u64_or(stat, "temporary", 0));
	}
}

void table_top(const cJSON *resp)
{
	const char *key = get_str(resp, "key", "lineno");
	/* NULL unless an array: cJSON_ArrayForEach would walk an object too. */
	const cJSON *stats = cJSON_IsArray(get(resp, "stats")) ? get(resp, "stats") : NULL, *stat;
	bool by_traceback = strcmp(key, "traceback") == 0;
	bool cumulative = cJSON_IsTrue(get(resp, "cumulative"));
	bool allocs = by_allocations(resp);
	uint64_t total = get_u64_or(resp, "total_size", 0), shown_size = 0;
	uint64_t total_count = get_u64_or(resp, "total_count", 0), shown_count = 0;
	size_t shown = (size_t)cJSON_GetArraySize(stats);
	uint64_t count_stats = get_u64_or(resp, "count_stats", shown);
	struct srccache sc = {NULL};
	size_t index = 0;
	char peakbuf[32];

	if (cJSON_IsObject(get(resp, "snapshot")))
		print_summary("From", get(resp, "snapshot"), resp);
	print_estimated_line(resp, "Sizes and counts are ");
	if (strcmp(get_str(resp, "at", "now"), "peak") == 0)
		printf("Live at the moment of the peak (%s)\n",
		       (fmt_size(peakbuf, sizeof(peakbuf), total), peakbuf));
	printf("Top %zu %s\n", shown, top_noun(key, shown));
	cJSON_ArrayForEach(stat, stats)
	{
		const cJSON *tb = get(stat, "traceback");
		const cJSON *frame = cJSON_IsArray(tb) ? cJSON_GetArrayItem(tb, 0) : NULL;

		index++;
		shown_size += get_u64_or(stat, "size", 0);
		shown_count += get_u64_or(stat, "count", 0);
		if (by_traceback) {
			/* A stack per statistic, a blank line between them. */
			printf("%s#%zu: ", index > 1 ? "\n" : "", index);
			print_stat(stat, allocs);
			putchar('\n');
			print_traceback(&sc, tb);
			continue;
		}
		printf("#%zu: ", index);
		print_site(key, frame);
		fputs(": ", stdout);
		print_stat(stat, allocs);
		putchar('\n');
		if (strcmp(key, "lineno") == 0 && frame != NULL)
			print_source(&sc, get_str(frame, "filename", ""),
			             get_u64_or(frame, "lineno", 0));
	}
	if (by_traceback && shown > 0)
		putchar('\n');
	char a[32];
	if (count_stats > shown) {
		/* Cumulative statistics overlap, so the rest's size cannot be
		 * derived from the total; only the count is known then. */
		if (!cumulative && total >= shown_size && total_count >= shown_count) {
			fmt_size(a, sizeof(a), total - shown_size);
			printf("%" PRIu64 " other: size=%s, count=%" PRIu64 "\n",
			       count_stats - shown, a, total_count - shown_count);
		} else {
			printf("%" PRIu64 " other\n", count_stats - shown);
		}
	}
	fmt_size(a, sizeof(a), total);
	printf("Total: size=%s, count=%" PRIu64, a, total_count);
	if (allocs) {
		char b[32];
		fmt_size(b, sizeof(b), get_u64_or(resp, "total_allocated", 0));
		printf(", allocations=%" PRIu64 ", allocated=%s, temporary=%" PRIu64,
		       get_u64_or(resp, "total_allocations", 0), b,
		       get_u64_or(resp, "total_temporary", 0));
	}
	putchar('\n');
	src_free(&sc);
}

/* ---- compare ---- */

/* A JSON number as a double, 0 when absent: diffs are signed. */
static double get_num(const cJSON *o, const char *key)
{
	const cJSON *v = get(o, key);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* Element i of an array as a double, 0 when absent. */
static double get_num_at(const cJSON *a, int i)
{
	const cJSON *v = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, i) : NULL;

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/*
 * tracemalloc's _format_size: a size in the largest unit that keeps it under
 * 10240, with one decimal under 100 ("4.5 KiB", "512 B", "1536 KiB"); with
 * `sign`, "+" or "-" always.
 */
static void fmt_tm_size(char *buf, size_t cap, double size, bool sign)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	size_t last = sizeof(units) / sizeof(units[0]) - 1;

	for (size_t u = 0;; u++) {
		double mag = size < 0 ? -size : size;

		if (u > 0 && mag < 100) {
			if (sign)
				snprintf(buf, cap, "%+.1f %s", size, units[u]);
			else
				snprintf(buf, cap, "%.1f %s", size, units[u]);
			return;
		}
		if (mag < 10 * 1024 || u == last) {
			if (sign)
				snprintf(buf, cap, "%+.0f %s", size, units[u]);
			else
				snprintf(buf, cap, "%.0f %s", size, units[u]);
			return;
		}
		size /= 1024;
	}
}

/* "size=X (+Y), count=N (+M)", as tracemalloc's StatisticDiff prints. */
static void print_diff(double size, double size_diff, double count, double count_diff)
{
	char a[32], b[32];

	fmt_tm_size(a, sizeof(a), size, false);
	fmt_tm_size(b, sizeof(b), size_diff, true);
	printf("size=%s (%s), count=%.0f (%+.0f)", a, b, count, count_diff);
}

/*
 * Where a snapshot came from: the "Old:" and "New:" lines of compare (from a
 * snapshot summary) and the first line of an answer from a snapshot (from
 * its "snapshot" member, the pid being the answer's).
 */
static void print_summary(const char *label, const cJSON *sum, const cJSON *resp)
{
	const char *file = get_str(sum, "file", NULL);
	const char *exe = get_str(sum, "exe", NULL);
	uint64_t id = get_u64_or(sum, "id", 0);
	uint64_t pid = get_u64_or(sum, "pid", get_u64_or(resp, "pid", 0));
	char when[64];

	printf("%s ", label);
	if (file != NULL) {
		fputs("file ", stdout);
		put_text(file);
		fputs(", ", stdout);
	}
	if (id > 0)
		printf("snapshot %" PRIu64 " of ", id);
	else if (strcmp(get_str(sum, "reason", ""), "exited") == 0)
		fputs("what was held at its end by ", stdout);
	else
		fputs("live capture of ", stdout);
	printf("pid %" PRIu64, pid);
	if (exe != NULL) {
		fputs(" (", stdout);
		put_text(exe);
		putchar(')');
	}
	fputs(", ", stdout);
	fmt_time(when, sizeof(when), get_num(sum, "taken_at"));
	fputs(when, stdout);
	if (id > 0) {
		fputs(", ", stdout);
		put_text(get_str(sum, "reason", "?"));
	}
	uint64_t rate;
	if (sample_rate(sum, &rate)) {
		fputs(", ", stdout);
		put_estimated(rate);
	}
	putchar('\n');
}

/* ", allocations=N (+M), allocated=X (+Y), temporary=T (+U)": the
 * counters of allocations with their diffs (prefix "total_" for the
 * totals). */
static void print_alloc_diff(const cJSON *o, const char *prefix)
{
	char k[40], a[32], b[32];

	snprintf(k, sizeof k, "%sallocations", prefix);
	double n = get_num(o, k);
	snprintf(k, sizeof k, "%sallocations_diff", prefix);
	printf(", allocations=%.0f (%+.0f)", n, get_num(o, k));
	snprintf(k, sizeof k, "%sallocated", prefix);
	fmt_tm_size(a, sizeof(a), get_num(o, k), false);
	snprintf(k, sizeof k, "%sallocated_diff", prefix);
	fmt_tm_size(b, sizeof(b), get_num(o, k), true);
	printf(", allocated=%s (%s)", a, b);
	snprintf(k, sizeof k, "%stemporary", prefix);
	n = get_num(o, k);
	snprintf(k, sizeof k, "%stemporary_diff", prefix);
	printf(", temporary=%.0f (%+.0f)", n, get_num(o, k));
}

void table_compare(const cJSON *resp)
{
	const char *key = get_str(resp, "key", "lineno");
	bool allocs = by_allocations(resp);
	const cJSON *stats = get_array(resp, "stats"), *stat;
	bool by_traceback = strcmp(key, "traceback") == 0;
	bool cumulative = cJSON_IsTrue(get(resp, "cumulative"));
	size_t shown = (size_t)cJSON_GetArraySize(stats), index = 0;
	uint64_t count_stats = get_u64_or(resp, "count_stats", shown);
	double size_sum = 0, size_diff_sum = 0, count_sum = 0, count_diff_sum = 0;
	struct srccache sc = {NULL};

	if (cJSON_IsObject(get(resp, "old")))
		print_summary("Old:", get(resp, "old"), resp);
	if (cJSON_IsObject(get(resp, "new")))
		print_summary("New:", get(resp, "new"), resp);
	if (strcmp(get_str(resp, "at", "now"), "peak") == 0)
		puts("Live at the moment of each one's peak");
	printf("Top %zu difference%s\n", shown, shown == 1 ? "" : "s");
	cJSON_ArrayForEach(stat, stats)
	{
		double size = get_num(stat, "size"), count = get_num(stat, "count");
		const cJSON *tb = get(stat, "traceback");
		const cJSON *frame = cJSON_IsArray(tb) ? cJSON_GetArrayItem(tb, 0) : NULL;

		index++;
		size_sum += size;
		size_diff_sum += get_num(stat, "size_diff");
		count_sum += count;
		count_diff_sum += get_num(stat, "count_diff");
		printf("#%zu: ", index);
		if (!by_traceback) {
			print_site(key, frame);
			fputs(": ", stdout);
		}
		print_diff(size, get_num(stat, "size_diff"), count, get_num(stat, "count_diff"));
		if (count > 0) {
			char avg[32];
			fmt_tm_size(avg, sizeof(avg), size / count, false);
			printf(", average=%s", avg);
		}
		if (allocs)
			print_alloc_diff(stat, "");
		putchar('\n');
		if (by_traceback)
			print_traceback(&sc, tb);
	}
	if (count_stats > shown) {
		/* Cumulative statistics overlap: only the count of the rest is known. */
		printf("%" PRIu64 " other", count_stats - shown);
		if (!cumulative) {
			fputs(": ", stdout);
			print_diff(get_num(resp, "total_size") - size_sum,
			           get_num(resp, "total_size_diff") - size_diff_sum,
			           get_num(resp, "total_count") - count_sum,
			           get_num(resp, "total_count_diff") - count_diff_sum);
		}
		putchar('\n');
	}
	fputs("Total: ", stdout);
	print_diff(get_num(resp, "total_size"), get_num(resp, "total_size_diff"),
	           get_num(resp, "total_count"), get_num(resp, "total_count_diff"));
	if (allocs)
		print_alloc_diff(resp, "total_");
	putchar('\n');
	src_free(&sc);
}

/* ---- history ---- */

#define SPARK_COLS 60

/* The value of the step function of `samples` (column k of [ms, ...]) at
 * its largest over each of SPARK_COLS equal parts of [from, to], but the
 * last column, which is the value at the end (a process that ended after
 * its maximum must not seem to end at it: the text says the maximum). */
static void spark_columns(const cJSON *samples, int k, double from, double to,
                          double col[SPARK_COLS])
{
	const cJSON *row;
	double carried = 0, width = (to - from) / SPARK_COLS;
	bool any = false;
	int c = 0;

	for (int i = 0; i < SPARK_COLS; i++)
		col[i] = -1;
	cJSON_ArrayForEach(row, samples)
	{
		double ms = get_num_at(row, 0), v = get_num_at(row, k);
		/* Columns before this sample hold what was carried. */
		while (c < SPARK_COLS - 1 && from + (c + 1) * width <= ms) {
			if (any && col[c] < carried)
				col[c] = carried;
			c++;
		}
		if (c < SPARK_COLS && col[c] < v)
			col[c] = v;
		carried = v;
		any = true;
	}
	for (; c < SPARK_COLS; c++)
		if (any && col[c] < carried)
			col[c] = carried;
	if (any)
		col[SPARK_COLS - 1] = carried;
}

static void print_spark(const char *label, const cJSON *samples, int k, double from, double to,
                        bool bytes, const char *last_word)
{
	static const char *const bars[] = {"\u2581", "\u2582", "\u2583", "\u2584",
	                                   "\u2585", "\u2586", "\u2587", "\u2588"};
	double col[SPARK_COLS], lo = -1, hi = 0, now = 0;
	char a[32], b[32], c[32];

	const cJSON *row;
	spark_columns(samples, k, from, to, col);
	/* The figures' own least and greatest, not the columns': every sample
	 * counts, the first and the last too. */
	cJSON_ArrayForEach(row, samples)
	{
		double v = get_num_at(row, k);
		if (lo < 0 || v < lo)
			lo = v;
		if (v > hi)
			hi = v;
	}
	const cJSON *last = cJSON_GetArrayItem(samples, cJSON_GetArraySize(samples) - 1);
	now = last != NULL ? get_num_at(last, k) : 0;
	printf("%-8s ", label);
	for (int i = 0; i < SPARK_COLS; i++) {
		if (col[i] < 0)
			putchar(' ');
		else
			fputs(bars[hi > lo ? (int)((col[i] - lo) * 7 / (hi - lo) + 0.5) : 0],
			      stdout);
	}
	if (bytes) {
		fmt_tm_size(a, sizeof a, now, false);
		fmt_tm_size(b, sizeof b, lo < 0 ? 0 : lo, false);
		fmt_tm_size(c, sizeof c, hi, false);
		printf("  %s %s, min %s, max %s\n", last_word, a, b, c);
	} else {
		printf("  %s %.0f, min %.0f, max %.0f\n", last_word, now, lo < 0 ? 0 : lo, hi);
	}
}

void table_history(const cJSON *resp)
{
	const cJSON *samples = get_array(resp, "samples"), *snaps = get_array(resp, "snapshots");
	int n = cJSON_GetArraySize(samples);
	const char *state = get_str(resp, "state", "");
	bool live = strcmp(state, "live") == 0;
	char from_s[64], to_s[64];

	printf("History of pid %" PRIu64 " (%s)", get_u64_or(resp, "pid", 0),
	       live                           ? "live"
	       : strcmp(state, "exited") == 0 ? "exited"
	                                      : "no longer known to memtraced");
	if (n == 0) {
		puts(": no samples yet");
	} else {
		double from = get_num_at(cJSON_GetArrayItem(samples, 0), 0);
		double to = get_num_at(cJSON_GetArrayItem(samples, n - 1), 0);
		if (live) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			to = (double)ts.tv_sec * 1000 + (double)ts.tv_nsec / 1e6;
		} else if (get_num(resp, "ended_ms") > to) {
			to = get_num(resp, "ended_ms");
		}
		if (to <= from)
			to = from + 1000;
		fmt_time(from_s, sizeof from_s, from / 1000);
		fmt_time(to_s, sizeof to_s, to / 1000);
		printf(", %s to %s (%.0f s), %d samples, one a second when a figure changed\n",
		       from_s, to_s, (to - from) / 1000, n);
		const char *w = live ? "now" : "at the end";
		print_spark("current", samples, 1, from, to, true, w);
		print_spark("peak", samples, 3, from, to, true, w);
		print_spark("blocks", samples, 2, from, to, false, w);
	}
	int ns = cJSON_GetArraySize(snaps);
	if (ns > 0) {
		const cJSON *s;
		printf("Before that: %d stored snapshot%s\n", ns, ns == 1 ? "" : "s");
		cJSON_ArrayForEach(s, snaps)
		{
			char at[64], cur[32], pk[32];
			fmt_time(at, sizeof at, get_num(s, "taken_at"));
			fmt_size(cur, sizeof cur, get_u64_or(s, "current", 0));
			fmt_size(pk, sizeof pk, get_u64_or(s, "peak", 0));
			const char *exe = get_str(s, "exe", NULL), *base;
			printf("  %s  current %s, peak %s, blocks %" PRIu64 " (snapshot %" PRIu64,
			       at, cur, pk, get_u64_or(s, "blocks", 0), get_u64_or(s, "id", 0));
			if (exe != NULL) {
				base = strrchr(exe, '/');
				fputs(", ", stdout);
				put_text(base != NULL ? base + 1 : exe);
			}
			puts(")");
		}
	}
}

/* ---- traceback ---- */

void table_traceback(const cJSON *resp)
{
	const cJSON *blocks = cJSON_IsArray(get(resp, "blocks")) ? get(resp, "blocks") : NULL,
	            *block;
	size_t n = (size_t)cJSON_GetArraySize(blocks);
	struct srccache sc = {NULL};
	size_t index = 0;

	if (cJSON_IsObject(get(resp, "snapshot")))
		print_summary("From", get(resp, "snapshot"), resp);
	/* The sizes are true, but only blocks that were sampled are known. */
	print_estimated_line(resp, "Sampled blocks only: heap figures are ");
	printf("Top %zu block%s\n", n, n == 1 ? "" : "s");
	cJSON_ArrayForEach(block, blocks)
	{
		index++;
		printf("\n#%zu: ", index);
		put_text(get_str(block, "address", "?"));
		char a[32];
		fmt_size(a, sizeof(a), get_u64_or(block, "size", 0));
		printf(": size=%s\n", a);
		print_traceback(&sc, get(block, "traceback"));
	}
	src_free(&sc);
}

/* ---- columns: list and snapshots ---- */

#define MAXCOLS 8

struct column {
	const char *head;
	bool right; /* numbers right-aligned, words left */
};

struct grid_row {
	char num[MAXCOLS][32];     /* the formatted numeric cells */
	const char *text[MAXCOLS]; /* every cell; points into num or the response */
};

static void grid_num(struct grid_row *r, int col, const cJSON *p, const char *key, bool size)
{
	uint64_t v;

	if (!get_u64(p, key, &v))
		snprintf(r->num[col], sizeof(r->num[col]), "?");
	else if (size)
		fmt_size(r->num[col], sizeof(r->num[col]), v);
	else
		snprintf(r->num[col], sizeof(r->num[col]), "%" PRIu64, v);
	r->text[col] = r->num[col];
}

static void grid_time(struct grid_row *r, int col, const cJSON *p, const char *key)
{
	const cJSON *v = get(p, key);

	if (cJSON_IsNumber(v))
		fmt_time(r->num[col], sizeof(r->num[col]), v->valuedouble);
	else
		snprintf(r->num[col], sizeof(r->num[col]), "?");
	r->text[col] = r->num[col];
}

/* Columns as the terminal counts them: one per UTF-8 character (what
 * put_text prints for a C1 control is one '?' too). */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void grid_cell(const char *s, size_t width, bool right, bool last)
{
	size_t len = text_width(s);
	size_t pad = width > len ? width - len : 0;

	if (right)
		printf("%*s", (int)pad, "");
	put_text(s);
	if (!right && !last)
		printf("%*s", (int)pad, "");
}

static void grid_line(const struct column *cols, int ncols, const char *const *cells,
                      const size_t *width)
{
	for (int col = 0; col < ncols; col++) {
		if (col > 0)
			fputs("  ", stdout);
		/* The last column is not padded. */
		grid_cell(cells[col], width[col], cols[col].right, col == ncols - 1);
	}
	putchar('\n');
}

/* Marks the cells of a row whose numbers are estimates with a leading '~'. */
static void grid_mark(struct grid_row *r, const int *cols, int ncols)
{
	for (int i = 0; i < ncols; i++) {
		char *cell = r->num[cols[i]];
		size_t n = strlen(cell);

		if (n + 2 > sizeof(r->num[0]))
			continue;
		memmove(cell + 1, cell, n + 1);
		cell[0] = '~';
	}
}

/* The legend under a list with marked rows: which of them (by `key`, the
 * process or snapshot) are estimated, and from what rate. */
static void grid_legend(const cJSON *entries, const char *key, const char *noun)
{
	const cJSON *p;
	uint64_t rate;

	cJSON_ArrayForEach(p, entries)
	{
		if (!sample_rate(p, &rate))
			continue;
		printf("~ %s %" PRIu64 ": ", noun, get_u64_or(p, key, 0));
		put_estimated(rate);
		putchar('\n');
	}
}

/* A header line and one line per row, each column as wide as its widest cell. */
static void grid_print(const struct column *cols, int ncols, const struct grid_row *rows, size_t n)
{
	const char *heads[MAXCOLS];
	size_t width[MAXCOLS];

	for (int col = 0; col < ncols; col++) {
		heads[col] = cols[col].head;
		width[col] = text_width(cols[col].head);
		for (size_t i = 0; i < n; i++) {
			size_t len = text_width(rows[i].text[col]);
			if (len > width[col])
				width[col] = len;
		}
	}
	grid_line(cols, ncols, heads, width);
	for (size_t i = 0; i < n; i++)
		grid_line(cols, ncols, rows[i].text, width);
}

/* A process's command line as one string (its arguments joined by spaces),
 * or started_as when it has none; the caller frees it. */
static char *command_of(const cJSON *p)
{
	const cJSON *argv = get(p, "cmdline"), *a;
	size_t len = 1;
	char *out;

	cJSON_ArrayForEach(a, argv)
	{
		if (cJSON_IsString(a))
			len += strlen(a->valuestring) + 1;
	}
	if (len == 1)
		return xstrdup(get_str(p, "started_as", "?"));
	out = xmalloc(len);
	out[0] = '\0';
	cJSON_ArrayForEach(a, argv)
	{
		if (!cJSON_IsString(a))
			continue;
		if (out[0] != '\0')
			strcat(out, " ");
		strcat(out, a->valuestring);
	}
	return out;
}

void table_list(const cJSON *resp)
{
	enum {
		COL_PID,
		COL_UID,
		COL_STATE,
		COL_CURRENT,
		COL_PEAK,
		COL_BLOCKS,
		COL_EXE,
		COL_COMMAND,
		NCOLS
	};
	static const struct column cols[NCOLS] = {
	    {"PID", true},  {"UID", true},    {"STATE", false}, {"CURRENT", true},
	    {"PEAK", true}, {"BLOCKS", true}, {"EXE", false},   {"COMMAND", false},
	};
	static const int estimated[] = {COL_CURRENT, COL_PEAK, COL_BLOCKS};
	const cJSON *procs = get_array(resp, "processes"), *p;
	size_t n = (size_t)cJSON_GetArraySize(procs), i = 0;
	struct grid_row *rows = xcalloc(n > 0 ? n : 1, sizeof(*rows));
	char **cmds = xcalloc(n > 0 ? n : 1, sizeof(*cmds));
	uint64_t rate;

	cJSON_ArrayForEach(p, procs)
	{
		struct grid_row *r = &rows[i];

		grid_num(r, COL_PID, p, "pid", false);
		grid_num(r, COL_UID, p, "uid", false);
		r->text[COL_STATE] =
		    cJSON_IsTrue(get(p, "detached")) ? "detached" : get_str(p, "state", "?");
		grid_num(r, COL_CURRENT, p, "current", true);
		grid_num(r, COL_PEAK, p, "peak", true);
		grid_num(r, COL_BLOCKS, p, "blocks", false);
		r->text[COL_EXE] = get_str(p, "exe", "?");
		r->text[COL_COMMAND] = cmds[i] = command_of(p);
		if (sample_rate(p, &rate))
			grid_mark(r, estimated, 3);
		i++;
	}
	grid_print(cols, NCOLS, rows, n);
	grid_legend(procs, "pid", "pid");
	for (i = 0; i < n; i++)
		free(cmds[i]);
	free(cmds);
	free(rows);
}

void table_snapshots(const cJSON *resp)
{
	enum {
		COL_ID,
		COL_PID,
		COL_TAKEN,
		COL_REASON,
		COL_CURRENT,
		COL_PEAK,
		COL_BLOCKS,
		COL_EXE,
		NCOLS
	};
	static const struct column cols[NCOLS] = {
	    {"ID", true},      {"PID", true},  {"TAKEN", false}, {"REASON", false},
	    {"CURRENT", true}, {"PEAK", true}, {"BLOCKS", true}, {"EXE", false},
	};
	static const int estimated[] = {COL_CURRENT, COL_PEAK, COL_BLOCKS};
	const cJSON *snaps = get_array(resp, "snapshots"), *p;
	size_t n = (size_t)cJSON_GetArraySize(snaps), i = 0;
	struct grid_row *rows = xcalloc(n > 0 ? n : 1, sizeof(*rows));
	uint64_t rate;

	cJSON_ArrayForEach(p, snaps)
	{
		struct grid_row *r = &rows[i++];

		grid_num(r, COL_ID, p, "id", false);
		grid_num(r, COL_PID, p, "pid", false);
		grid_time(r, COL_TAKEN, p, "taken_at");
		r->text[COL_REASON] = get_str(p, "reason", "?");
		grid_num(r, COL_CURRENT, p, "current", true);
		grid_num(r, COL_PEAK, p, "peak", true);
		grid_num(r, COL_BLOCKS, p, "blocks", false);
		r->text[COL_EXE] = get_str(p, "exe", "?");
		if (sample_rate(p, &rate))
			grid_mark(r, estimated, 3);
	}
	grid_print(cols, NCOLS, rows, n);
	grid_legend(snaps, "id", "snapshot");
	free(rows);
}

/* ---- key: value ---- */

/* Fields whose numbers are bytes, in any response. */
static const char *const size_keys[] = {"current", "peak", "total_size"};

static bool is_size_key(const char *key)
{
	for (size_t i = 0; i < sizeof(size_keys) / sizeof(size_keys[0]); i++) {
		if (strcmp(size_keys[i], key) == 0)
			return true;
	}
	return false;
}

static void put_size(uint64_t v)
{
	char buf[32];

	fmt_size(buf, sizeof(buf), v);
	fputs(buf, stdout);
	if (v >= 1024)
		printf(" (%" PRIu64 " bytes)", v);
}

static void put_duration(uint64_t s)
{
	if (s >= 86400)
		printf("%" PRIu64 "d ", s / 86400);
	if (s >= 3600)
		printf("%" PRIu64 "h ", s / 3600 % 24);
	if (s >= 60)
		printf("%" PRIu64 "m ", s / 60 % 60);
	printf("%" PRIu64 "s", s % 60);
}

static void put_time(double t)
{
	char buf[64];

	fmt_time(buf, sizeof(buf), t);
	fputs(buf, stdout);
}

/* An argument as a shell would need it: quoted unless plainly safe. */
static void put_arg(const char *s)
{
	bool plain = s[0] != '\0';

	for (const char *p = s; *p != '\0' && plain; p++)
		plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		               "0123456789_-+=/.,:@%^",
		               *p) != NULL;
	if (plain) {
		put_text(s);
		return;
	}
	putchar('\'');
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\'')
			fputs("'\\''", stdout);
		else
			put_textn(p, 1);
	}
	putchar('\'');
}

static void put_value(const cJSON *item)
{
	const char *key = item->string != NULL ? item->string : "";
	uint64_t v;

	if (cJSON_IsNull(item)) {
		fputs(strcmp(key, "limit_reached") == 0 ? "no" : "-", stdout);
	} else if (cJSON_IsBool(item)) {
		fputs(cJSON_IsTrue(item) ? "yes" : "no", stdout);
	} else if (cJSON_IsString(item)) {
		put_text(item->valuestring);
	} else if (cJSON_IsNumber(item)) {
		double d = item->valuedouble;
		if (strcmp(key, "taken_at") == 0 || strcmp(key, "started_at") == 0 ||
		    strcmp(key, "ended_at") == 0) {
			put_time(d);
			return;
		}
		if (!(d >= 0 && d < 18446744073709551616.0) || d != (double)(uint64_t)d) {
			printf("%g", d);
			return;
		}
		v = (uint64_t)d;
		if (strcmp(key, "sample_bytes") == 0 && v == 0)
			fputs("0 (every allocation)", stdout);
		else if (strcmp(key, "sample_bytes") == 0 || is_size_key(key))
			put_size(v);
		else if (strcmp(key, "uptime_seconds") == 0)
			put_duration(v);
		else
			printf("%" PRIu64, v);
	} else if (cJSON_IsArray(item)) {
		const cJSON *e;
		bool first = true, strings = true;

		cJSON_ArrayForEach(e, item)
		{
			strings = strings && cJSON_IsString(e);
		}
		if (cJSON_GetArraySize(item) == 0) {
			putchar('-');
			return;
		}
		if (!strings) {
			char *s = cJSON_PrintUnformatted(item);
			put_text(s != NULL ? s : "?");
			cJSON_free(s);
			return;
		}
		/* cmdline: one line a shell could run again. */
		cJSON_ArrayForEach(e, item)
		{
			if (!first)
				putchar(' ');
			first = false;
			put_arg(e->valuestring);
		}
	}
}

/* "sampled": whether the answer's figures are estimates, in words. */
static void put_sampled(const cJSON *item)
{
	uint64_t samples;

	if (!cJSON_IsObject(item)) {
		fputs("no (every allocation is traced)", stdout);
		return;
	}
	fputs("yes, ", stdout);
	put_estimated(get_u64_or(item, "rate", 0));
	if (get_u64(item, "samples", &samples))
		printf(" (%" PRIu64 " live block%s sampled)", samples, samples == 1 ? "" : "s");
}

/* Every field in the daemon's order, objects as indented groups, so a field
 * added to the daemon shows up here without a change. */
static void print_kv(const cJSON *o, int depth)
{
	const cJSON *item;

	cJSON_ArrayForEach(item, o)
	{
		printf("%*s", depth * 2, "");
		put_text(item->string != NULL ? item->string : "?");
		putchar(':');
		if (item->string != NULL && strcmp(item->string, "sampled") == 0) {
			putchar(' ');
			put_sampled(item);
			putchar('\n');
			continue;
		}
		if (cJSON_IsObject(item)) {
			putchar('\n');
			print_kv(item, depth + 1);
			continue;
		}
		putchar(' ');
		put_value(item);
		putchar('\n');
	}
}

void table_status(const cJSON *resp)
{
	print_kv(resp, 0);
}

void table_stats(const cJSON *resp)
{
	print_kv(resp, 0);
}

void table_reset_peak(const cJSON *resp)
{
	print_kv(resp, 0);
}

void table_snapshot(const cJSON *resp)
{
	print_kv(resp, 0);
}

void table_ui(const cJSON *resp)
{
	char when[32];

	fmt_time(when, sizeof when,
	         get(resp, "expires_at") != NULL ? get_num(resp, "expires_at") : -1);
	const char *url = get_str(resp, "url", "?");
	client_put_text(stdout, url, strlen(url));
	printf("\n(for uid %.0f, open it before %s; it works once)\n", get_num(resp, "uid"), when);
}

void table_attach(const cJSON *resp)
{
	printf("Attached to pid %.0f (its main thread stopped %.1f ms); from now on every "
	       "allocation is traced, what it held before is not known\n",
	       get_num(resp, "pid"), get_num(resp, "pause_ms"));
}

void table_detach(const cJSON *resp)
{
	char cur[32], when[64];
	const cJSON *snap = get(resp, "snapshot");

	fmt_size(cur, sizeof cur, get_u64_or(resp, "current", 0));
	fmt_time(when, sizeof when, get(resp, "ended_at") != NULL ? get_num(resp, "ended_at") : -1);
	printf("Detached from pid %.0f at %s: it runs on untraced; its session ended holding %s "
	       "in %.0f blocks\n",
	       get_num(resp, "pid"), when, cur, get_num(resp, "blocks"));
	if (cJSON_IsNumber(snap))
		printf("(its last state is snapshot %.0f)\n", snap->valuedouble);
	else
		printf("(no snapshot of its last state was stored: see the daemon's log)\n");
}

void table_where(const cJSON *resp)
{
	const cJSON *b = get(resp, "block");
	struct srccache sc = {NULL};
	char size[32];

	fmt_size(size, sizeof size, get_u64_or(b, "size", 0));
	put_text(get_str(resp, "address", "?"));
	printf(" is %" PRIu64 " byte%s into the block at ", get_u64_or(b, "offset", 0),
	       get_u64_or(b, "offset", 0) == 1 ? "" : "s");
	put_text(get_str(b, "address", "?"));
	printf(" (size=%s) of pid %.0f, allocated at:\n", size, get_num(resp, "pid"));
	print_estimated_line(resp, "Sampled blocks only: heap figures are ");
	print_traceback(&sc, get(b, "traceback"));
	src_free(&sc);
}
