/*
 * snapshot.c - tracemalloc's Snapshot: building, the JSON document, the
 * snapshot file, and the views the control server and memtracectl need.
 * See snapshot.h for the contract.
 *
 * Frames are interned by content through an open-addressing index
 * (oaindex.h) that lives behind the header's private `index` pointer. The
 * index remembers which frames array it covers (pointer and length); when it
 * finds the struct changed behind its back (a snapshot read from JSON, or
 * frames set by hand) it rebuilds itself from the array, so interning always
 * stays exact and linear.
 *
 * Snapshot files come from users and may be corrupt or hostile, so
 * snapshot_from_json checks everything it reads: types, integer ranges,
 * lengths of every array and string, every index. The limits below bound what
 * a document can make us allocate beyond the size of the document itself.
 * The writer clips strings and command lines to the same limits (C++ names
 * demangle to any length, command lines can be long), so whatever we write,
 * we can read back.
 *
 * Numbers are JSON numbers, read as doubles: exact up to 2^53, which covers
 * every counter and every user-space address in practice. Larger values (a
 * tagged pointer) are written exactly but read back rounded to a double.
 */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "jsonout.h"
#include "oaindex.h"
#include "xalloc.h"

#define MAX_FRAMES  (1u << 24)  /* distinct frames in a document */
#define MAX_TRACES  (1u << 24)  /* traces (distinct stacks) */
#define MAX_LARGEST (1u << 24)  /* largest blocks */
#define MAX_DEPTH   256         /* frames in one trace (PROTO_MAX_FRAMES) */
#define MAX_STRING  (64u << 10) /* bytes in any string */
#define MAX_ARGS    65536       /* command line arguments */
#define MAX_FILE    (1ul << 30) /* bytes in a snapshot file */
#define TWO64       18446744073709551616.0

/* ---- lifetime ---- */

struct snapshot *snapshot_new(void)
{
	return xcalloc(1, sizeof(struct snapshot));
}

static void index_free(void *p);

void snapshot_free(struct snapshot *s)
{
	if (s == NULL)
		return;
	free(s->exe);
	if (s->argv != NULL) {
		for (char **a = s->argv; *a != NULL; a++)
			free(*a);
		free(s->argv);
	}
	for (size_t i = 0; i < s->nframes; i++) {
		free((char *)s->frames[i].filename);
		free((char *)s->frames[i].function);
		free((char *)s->frames[i].module);
		free((char *)s->frames[i].symbols);
	}
	free(s->frames);
	for (size_t i = 0; i < s->ntraces; i++) {
		free(s->traces[i].frames);
		free(s->traces[i].addrs);
	}
	free(s->traces);
	free(s->largest);
	index_free(s->index);
	free(s);
}

/* ---- the frame intern index ---- */

#define NONE UINT32_MAX

struct findex {
	struct oaindex frames_by_content; /* values: indexes into s->frames */
	/* What the index covers, to notice frames changed behind our back. */
	const struct frame_info *frames;
	size_t nframes;
	size_t cap_frames; /* allocated length of s->frames */
};

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static uint64_t frame_hash(const struct frame_info *f)
{
	uint64_t h = HASH_SEED;

	h = hash_str(h, str_or_empty(f->filename));
	h = hash_str(h, str_or_empty(f->function));
	h = hash_str(h, str_or_empty(f->module));
	h = hash_str(h, str_or_empty(f->symbols));
	return hash_mix(h ^ f->lineno);
}

static bool frame_eq(const struct frame_info *a, const struct frame_info *b)
{
	return a->lineno == b->lineno &&
	       strcmp(str_or_empty(a->filename), str_or_empty(b->filename)) == 0 &&
	       strcmp(str_or_empty(a->function), str_or_empty(b->function)) == 0 &&
	       strcmp(str_or_empty(a->module), str_or_empty(b->module)) == 0 &&
	       strcmp(str_or_empty(a->symbols), str_or_empty(b->symbols)) == 0;
}

static bool frame_idx_eq(const void *ctx, uintptr_t idx, const void *key)
{
	const struct frame_info *frames = ctx;

	return frame_eq(&frames[idx], key);
}

static void index_free(void *p)
{
	struct findex *x = p;

	if (x == NULL)
		return;
	oaindex_close(&x->frames_by_content);
	free(x);
}

/* The index of a frame equal to f (whose hash is hash) in frames, or NONE. */
static uint32_t index_find(const struct findex *x, const struct frame_info *frames,
                           const struct frame_info *f, uint64_t hash)
{
	uintptr_t v = oaindex_find(&x->frames_by_content, hash, frame_idx_eq, frames, f);

	return v == OAINDEX_NONE ? NONE : (uint32_t)v;
}

/* The index of s, (re)built from s->frames if it does not describe them.
 * Duplicate frames already in the array (a file may hold some) are left
 * alone; the first of them is the one found. */
static struct findex *index_get(struct snapshot *s)
{
	struct findex *x = s->index;

	if (x != NULL && x->frames == s->frames && x->nframes == s->nframes)
		return x;
	index_free(x);
	x = xcalloc(1, sizeof *x);
	oaindex_reserve(&x->frames_by_content, s->nframes);
	for (size_t i = 0; i < s->nframes; i++) {
		uint64_t h = frame_hash(&s->frames[i]);
		if (index_find(x, s->frames, &s->frames[i], h) == NONE)
			oaindex_insert(&x->frames_by_content, h, i);
	}
	x->frames = s->frames;
	x->nframes = s->nframes;
	x->cap_frames = s->nframes;
	s->index = x;
	return x;
}

uint32_t snapshot_intern_frame(struct snapshot *s, const struct frame_info *f)
{
	struct findex *x = index_get(s);
	uint64_t h = frame_hash(f);
	uint32_t idx = index_find(x, s->frames, f, h);
	struct frame_info *nf;

	if (idx != NONE)
		return idx;
	/* A uint32_t index cannot name more; documents hold at most
	 * MAX_FRAMES, so reaching this is a bug in the caller. */
	if (s->nframes >= NONE)
		abort();
	if (s->nframes == x->cap_frames) {
		x->cap_frames = x->cap_frames < 64 ? 64 : x->cap_frames * 2;
		s->frames = xreallocarray(s->frames, x->cap_frames, sizeof *s->frames);
	}
	idx = (uint32_t)s->nframes;
	nf = &s->frames[idx];
	memset(nf, 0, sizeof *nf);
	nf->filename = xstrdup(str_or_empty(f->filename));
	nf->lineno = f->lineno;
	nf->function = xstrdup(str_or_empty(f->function));
	nf->module = xstrdup(str_or_empty(f->module));
	nf->symbols = f->symbols != NULL && f->symbols[0] != '\0' ? xstrdup(f->symbols) : NULL;
	s->nframes++;
	oaindex_insert(&x->frames_by_content, h, idx);
	x->frames = s->frames;
	x->nframes = s->nframes;
	return idx;
}

/* ---- writing JSON ----
 * cJSON allocates through xmalloc (xalloc_cjson.h), so nothing here can fail
 * and nothing is checked. */

/* The largest double below 2^64. Values above it would round up to 2^64,
 * which is no uint64 and which the reader refuses, so they are written as
 * this instead (counters never get there; a tagged pointer might). */
#define U64_TOP UINT64_C(0xfffffffffffff800)

/* A uint64 in the document. cJSON prints a double with 15 significant
 * digits whenever that reads back within one ulp, which for integers of 16
 * digits and more is not exact; those are written as raw decimal text
 * instead, so every value below 2^53 survives the file exactly. The reader
 * takes raw numbers too, for documents that never went through text. */
static cJSON *u64_json(uint64_t v)
{
	char buf[24];

	if (v < UINT64_C(1000000000000000))
		return cJSON_CreateNumber((double)v);
	snprintf(buf, sizeof buf, "%" PRIu64, v < U64_TOP ? v : U64_TOP);
	return cJSON_CreateRaw(buf);
}

static void add_u64(cJSON *obj, const char *key, uint64_t v)
{
	cJSON_AddItemToObject(obj, key, u64_json(v));
}

/* A string clipped to MAX_STRING bytes, cut before a UTF-8 continuation byte
 * so that a multibyte character is dropped whole. */
static cJSON *clipped_string(const char *s)
{
	size_t n;
	char *c;
	cJSON *r;

	s = str_or_empty(s);
	n = strnlen(s, MAX_STRING + 1);
	if (n <= MAX_STRING)
		return cJSON_CreateString(s);
	n = MAX_STRING;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	c = xstrndup(s, n);
	r = cJSON_CreateString(c);
	free(c);
	return r;
}

static void add_str(cJSON *obj, const char *key, const char *s)
{
	cJSON_AddItemToObject(obj, key, clipped_string(s));
}

/* s->reason, copied into buf (sizeof s->reason bytes): the array is never
 * read past its end, even when a caller left it unterminated. */
static const char *reason_of(const struct snapshot *s, char *buf)
{
	size_t n = strnlen(s->reason, sizeof s->reason - 1);

	memcpy(buf, s->reason, n);
	buf[n] = '\0';
	return buf;
}

static cJSON *cmdline_json(const struct snapshot *s)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; s->argv != NULL && s->argv[i] != NULL && i < MAX_ARGS; i++)
		cJSON_AddItemToArray(arr, clipped_string(s->argv[i]));
	return arr;
}

static cJSON *header_json(const struct snapshot *s)
{
	char reason[sizeof s->reason];
	cJSON *o = cJSON_CreateObject();

	add_u64(o, "id", (uint64_t)s->id);
	cJSON_AddNumberToObject(o, "pid", (double)s->pid);
	cJSON_AddNumberToObject(o, "uid", (double)s->uid);
	add_str(o, "exe", s->exe);
	cJSON_AddItemToObject(o, "cmdline", cmdline_json(s));
	add_u64(o, "start_time", s->start_time);
	cJSON_AddNumberToObject(o, "taken_at", s->taken_at);
	add_str(o, "reason", reason_of(s, reason));
	add_u64(o, "current", s->current);
	add_u64(o, "peak", s->peak);
	add_u64(o, "blocks", s->blocks);
	add_u64(o, "allocations", s->allocations);
	add_u64(o, "frees", s->frees);
	add_u64(o, "lost_events", s->lost_events);
	/* Optional: a document without it reads as every allocation traced,
	 * the same as the files written before the field existed. */
	if (s->sample_bytes != 0)
		add_u64(o, "sample_bytes", s->sample_bytes);
	return o;
}

static cJSON *frame_tuple(const struct frame_info *f)
{
	cJSON *t = cJSON_CreateArray();

	cJSON_AddItemToArray(t, clipped_string(f->filename));
	cJSON_AddItemToArray(t, cJSON_CreateNumber((double)f->lineno));
	cJSON_AddItemToArray(t, clipped_string(f->function));
	cJSON_AddItemToArray(t, clipped_string(f->module));
	/* Version 4: the separate debug file that named it, when one did. */
	if (f->symbols != NULL && f->symbols[0] != '\0')
		cJSON_AddItemToArray(t, clipped_string(f->symbols));
	return t;
}

static cJSON *trace_tuple(const struct snapshot_trace *t)
{
	cJSON *o = cJSON_CreateArray();
	cJSON *fr = cJSON_CreateArray(), *ad = cJSON_CreateArray();

	cJSON_AddItemToArray(o, u64_json(t->size));
	cJSON_AddItemToArray(o, u64_json(t->count));
	cJSON_AddItemToArray(o, u64_json(t->allocations));
	cJSON_AddItemToArray(o, u64_json(t->allocated));
	cJSON_AddItemToArray(o, u64_json(t->temporary));
	cJSON_AddItemToArray(o, u64_json(t->peak_size));
	cJSON_AddItemToArray(o, u64_json(t->peak_count));
	cJSON_AddItemToArray(o, fr);
	cJSON_AddItemToArray(o, ad);
	for (uint32_t i = 0; i < t->nframes; i++) {
		cJSON_AddItemToArray(fr, cJSON_CreateNumber((double)t->frames[i]));
		cJSON_AddItemToArray(ad, u64_json(t->addrs[i]));
	}
	return o;
}

static cJSON *block_tuple(const struct snapshot_block *b)
{
	cJSON *o = cJSON_CreateArray();

	cJSON_AddItemToArray(o, u64_json(b->addr));
	cJSON_AddItemToArray(o, u64_json(b->size));
	cJSON_AddItemToArray(o, cJSON_CreateNumber((double)b->trace));
	return o;
}

cJSON *snapshot_to_json(const struct snapshot *s)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *frames, *traces, *largest;

	int version = 3;

	/* Version 4 only when a frame has a fifth element to write: a file
	 * without one stays readable by the memtrace before it. */
	for (size_t i = 0; i < s->nframes && version < 4; i++)
		if (s->frames[i].symbols != NULL && s->frames[i].symbols[0] != '\0')
			version = 4;
	cJSON_AddStringToObject(doc, "format", SNAPSHOT_FORMAT);
	cJSON_AddNumberToObject(doc, "version", version);
	cJSON_AddItemToObject(doc, "snapshot", header_json(s));
	frames = cJSON_AddArrayToObject(doc, "frames");
	for (size_t i = 0; i < s->nframes; i++)
		cJSON_AddItemToArray(frames, frame_tuple(&s->frames[i]));
	traces = cJSON_AddArrayToObject(doc, "traces");
	for (size_t i = 0; i < s->ntraces; i++)
		cJSON_AddItemToArray(traces, trace_tuple(&s->traces[i]));
	largest = cJSON_AddArrayToObject(doc, "largest");
	for (size_t i = 0; i < s->nlargest; i++)
		cJSON_AddItemToArray(largest, block_tuple(&s->largest[i]));
	return doc;
}

/* ---- reading JSON ----
 * The readers of single values (rd_uint, rd_string, rd_array, rd_tuple) say
 * what is wrong in r->why and return -EINVAL; their caller, which knows where
 * in the document it is, then reports "where: why" through at(). The where
 * text ("traces[3][4][17]") is formatted only when there is an error, since
 * a large snapshot holds millions of values. */

struct rd {
	char *err;
	size_t errlen;
	char why[128];
	int version; /* of the document being read */
};

__attribute__((format(printf, 2, 3))) static int fail(struct rd *r, const char *fmt, ...)
{
	va_list ap;

	if (r->err != NULL && r->errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

__attribute__((format(printf, 2, 3))) static int why(struct rd *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof r->why, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Reports r->why at the place fmt describes. */
__attribute__((format(printf, 2, 3))) static int at(struct rd *r, const char *fmt, ...)
{
	char where[96];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(where, sizeof where, fmt, ap);
	va_end(ap);
	return fail(r, "%s: %s", where, r->why);
}

static const char *type_name(const cJSON *v)
{
	if (v == NULL)
		return "missing";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsObject(v))
		return "an object";
	if (cJSON_IsRaw(v))
		return "raw text";
	return "invalid";
}

/* A raw number (see u64_json): decimal digits only, as we write them. */
static int rd_raw_uint(struct rd *r, const cJSON *v, uint64_t max, uint64_t *out)
{
	const char *p = v->valuestring;
	uint64_t u = 0;

	if (p == NULL || *p == '\0' || strspn(p, "0123456789") != strlen(p))
		return why(r, "expected an integer, got raw text");
	for (; *p != '\0'; p++) {
		unsigned dg = (unsigned)(*p - '0');
		if (u > (UINT64_MAX - dg) / 10)
			return why(r, "%s is out of range (at most %" PRIu64 ")", v->valuestring,
			           max);
		u = u * 10 + dg;
	}
	if (u > max)
		return why(r, "%" PRIu64 " is out of range (at most %" PRIu64 ")", u, max);
	*out = u;
	return 0;
}

/* An integer in [0, max] (max < 2^64). */
static int rd_uint(struct rd *r, const cJSON *v, uint64_t max, uint64_t *out)
{
	double d;

	if (cJSON_IsRaw(v))
		return rd_raw_uint(r, v, max, out);
	if (!cJSON_IsNumber(v))
		return why(r, "expected an integer, got %s", type_name(v));
	/* Parsed from text: the integer as it was written, past 2^53 too. */
	if (v->valuestring != NULL) {
		uint64_t u;
		if (jsonout_get_u64(v, &u) == 0) {
			if (u > max)
				return why(r, "%" PRIu64 " is out of range (at most %" PRIu64 ")",
				           u, max);
			*out = u;
			return 0;
		}
	}
	d = v->valuedouble;
	/* The range test comes first so that the conversion is defined; a
	 * double in range equals its truncation exactly when it is integral.
	 * NaN fails every comparison. */
	if (!(d >= 0 && d < TWO64))
		return why(r, "%.17g is not a non-negative integer", d);
	if ((double)(uint64_t)d != d)
		return why(r, "%.17g is not an integer", d);
	if ((uint64_t)d > max)
		return why(r, "%" PRIu64 " is out of range (at most %" PRIu64 ")", (uint64_t)d,
		           max);
	*out = (uint64_t)d;
	return 0;
}

static int rd_string(struct rd *r, const cJSON *v, size_t max, const char **out)
{
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return why(r, "expected a string, got %s", type_name(v));
	if (strnlen(v->valuestring, max + 1) > max)
		return why(r, "string longer than %zu bytes", max);
	*out = v->valuestring;
	return 0;
}

/* The length of array v, at most max. */
static int rd_array(struct rd *r, const cJSON *v, size_t max, size_t *n)
{
	size_t len = 0;
	const cJSON *e;

	if (!cJSON_IsArray(v))
		return why(r, "expected an array, got %s", type_name(v));
	cJSON_ArrayForEach(e, v)
	{
		if (++len > max)
			return why(r, "more than %zu elements", max);
	}
	*n = len;
	return 0;
}

/* An array of lo to hi elements (*len of them). */
static int rd_tuple_of(struct rd *r, const cJSON *v, size_t lo, size_t hi, size_t *len)
{
	char want[48];

	if (lo == hi)
		snprintf(want, sizeof want, "%zu", lo);
	else
		snprintf(want, sizeof want, "%zu to %zu", lo, hi);
	if (rd_array(r, v, hi, len) < 0) {
		if (cJSON_IsArray(v))
			return why(r, "expected %s elements, got more", want);
		return -EINVAL;
	}
	if (*len < lo)
		return why(r, "expected %s elements, got %zu", want, *len);
	return 0;
}

/* An array of exactly n elements. */
static int rd_tuple(struct rd *r, const cJSON *v, size_t n)
{
	size_t len;

	return rd_tuple_of(r, v, n, n, &len);
}

static const cJSON *field(const cJSON *obj, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int rd_header(struct rd *r, const cJSON *h, struct snapshot *s)
{
	static const struct {
		const char *name;
		size_t off;
	} counters[] = {
	    {"start_time", offsetof(struct snapshot, start_time)},
	    {"current", offsetof(struct snapshot, current)},
	    {"peak", offsetof(struct snapshot, peak)},
	    {"blocks", offsetof(struct snapshot, blocks)},
	    {"allocations", offsetof(struct snapshot, allocations)},
	    {"frees", offsetof(struct snapshot, frees)},
	    {"lost_events", offsetof(struct snapshot, lost_events)},
	};
	const cJSON *v, *a;
	const char *str;
	uint64_t u;
	size_t n, i;

	if (!cJSON_IsObject(h))
		return fail(r, "snapshot: expected an object, got %s", type_name(h));
	if (rd_uint(r, field(h, "id"), INT64_MAX, &u) < 0)
		return at(r, "snapshot.id");
	s->id = (int64_t)u;
	if (rd_uint(r, field(h, "pid"), INT_MAX, &u) < 0)
		return at(r, "snapshot.pid");
	if (u == 0)
		return fail(r, "snapshot.pid: 0 is not a process id");
	s->pid = (pid_t)u;
	if (rd_uint(r, field(h, "uid"), UINT32_MAX, &u) < 0)
		return at(r, "snapshot.uid");
	s->uid = (uid_t)u;
	if (rd_string(r, field(h, "exe"), MAX_STRING, &str) < 0)
		return at(r, "snapshot.exe");
	s->exe = xstrdup(str);

	a = field(h, "cmdline");
	if (rd_array(r, a, MAX_ARGS, &n) < 0)
		return at(r, "snapshot.cmdline");
	s->argv = xcalloc(n + 1, sizeof *s->argv);
	i = 0;
	cJSON_ArrayForEach(v, a)
	{
		if (rd_string(r, v, MAX_STRING, &str) < 0)
			return at(r, "snapshot.cmdline[%zu]", i);
		s->argv[i++] = xstrdup(str);
	}

	v = field(h, "taken_at");
	if (!cJSON_IsNumber(v))
		return fail(r, "snapshot.taken_at: expected a number, got %s", type_name(v));
	/* Not NaN, not infinite (1e999 parses as infinity), not before 1970,
	 * not after the year 30 million. */
	if (!(v->valuedouble >= 0 && v->valuedouble <= 1e15))
		return fail(r, "snapshot.taken_at: %.17g is not a time", v->valuedouble);
	s->taken_at = v->valuedouble;

	if (rd_string(r, field(h, "reason"), sizeof s->reason - 1, &str) < 0)
		return at(r, "snapshot.reason");
	memcpy(s->reason, str, strlen(str) + 1);

	for (i = 0; i < sizeof counters / sizeof counters[0]; i++) {
		if (rd_uint(r, field(h, counters[i].name), UINT64_MAX, &u) < 0)
			return at(r, "snapshot.%s", counters[i].name);
		memcpy((char *)s + counters[i].off, &u, sizeof u);
	}
	v = field(h, "sample_bytes");
	if (v != NULL && rd_uint(r, v, UINT64_MAX, &s->sample_bytes) < 0)
		return at(r, "snapshot.sample_bytes");
	return 0;
}

static int rd_frames(struct rd *r, const cJSON *a, struct snapshot *s)
{
	static const char *const names[] = {"filename", "lineno", "function", "module", "symbols"};
	const cJSON *t, *v;
	const char *str;
	uint64_t u;
	size_t n, len, i = 0;
	/* Version 4 frames may name the debug file that named them. */
	const size_t most = r->version >= 4 ? 5 : 4;

	if (rd_array(r, a, MAX_FRAMES, &n) < 0)
		return at(r, "frames");
	s->frames = xcalloc(n, sizeof *s->frames);
	cJSON_ArrayForEach(t, a)
	{
		struct frame_info *f = &s->frames[i];
		const char **dst[] = {&f->filename, NULL, &f->function, &f->module, &f->symbols};

		if (rd_tuple_of(r, t, 4, most, &len) < 0)
			return at(r, "frames[%zu]", i);
		/* nframes counts the frames whose strings snapshot_free must
		 * free, so it grows before they are filled. */
		s->nframes = i + 1;
		v = t->child;
		for (int k = 0; k < (int)len; k++, v = v->next) {
			if (k == 1) {
				if (rd_uint(r, v, UINT32_MAX, &u) < 0)
					return at(r, "frames[%zu][1] (lineno)", i);
				f->lineno = (uint32_t)u;
			} else {
				if (rd_string(r, v, MAX_STRING, &str) < 0)
					return at(r, "frames[%zu][%d] (%s)", i, k, names[k]);
				*dst[k] = xstrdup(str);
			}
		}
		i++;
	}
	return 0;
}

static int rd_trace(struct rd *r, const cJSON *t, size_t ti, struct snapshot *s)
{
	static const char *const names[] = {"size",      "count",     "allocations", "allocated",
	                                    "temporary", "peak_size", "peak_count"};
	struct snapshot_trace *tr = &s->traces[ti];
	uint64_t *dst[] = {&tr->size,      &tr->count,     &tr->allocations, &tr->allocated,
	                   &tr->temporary, &tr->peak_size, &tr->peak_count};
	/* Version 1 has neither allocated and temporary nor the peak, version
	 * 2 not the peak: they read as 0. */
	const int nnum = r->version == 1 ? 3 : r->version == 2 ? 5 : 7;
	const cJSON *v, *fr, *ad;
	size_t nf, na, i;
	uint64_t u;

	if (rd_tuple(r, t, (size_t)nnum + 2) < 0)
		return at(r, "traces[%zu]", ti);
	v = t->child;
	for (int k = 0; k < nnum; k++, v = v->next) {
		if (rd_uint(r, v, UINT64_MAX, dst[k]) < 0)
			return at(r, "traces[%zu][%d] (%s)", ti, k, names[k]);
	}
	fr = v;
	ad = v->next;
	if (rd_array(r, fr, MAX_DEPTH, &nf) < 0)
		return at(r, "traces[%zu][%d] (frames)", ti, nnum);
	if (rd_array(r, ad, MAX_DEPTH, &na) < 0)
		return at(r, "traces[%zu][%d] (addresses)", ti, nnum + 1);
	if (nf != na)
		return fail(r, "traces[%zu]: %zu frames but %zu addresses", ti, nf, na);
	tr->frames = xcalloc(nf, sizeof *tr->frames);
	tr->addrs = xcalloc(nf, sizeof *tr->addrs);
	tr->nframes = (uint32_t)nf;
	i = 0;
	cJSON_ArrayForEach(v, fr)
	{
		if (rd_uint(r, v, UINT32_MAX, &u) < 0)
			return at(r, "traces[%zu][%d][%zu]", ti, nnum, i);
		if (u >= s->nframes)
			return fail(
			    r, "traces[%zu]: frame index %" PRIu64 " out of range (%zu frames)", ti,
			    u, s->nframes);
		tr->frames[i++] = (uint32_t)u;
	}
	i = 0;
	cJSON_ArrayForEach(v, ad)
	{
		if (rd_uint(r, v, UINT64_MAX, &tr->addrs[i]) < 0)
			return at(r, "traces[%zu][%d][%zu]", ti, nnum + 1, i);
		i++;
	}
	return 0;
}

static int rd_traces(struct rd *r, const cJSON *a, struct snapshot *s)
{
	const cJSON *t;
	size_t n, i = 0;
	int e;

	if (rd_array(r, a, MAX_TRACES, &n) < 0)
		return at(r, "traces");
	s->traces = xcalloc(n, sizeof *s->traces);
	cJSON_ArrayForEach(t, a)
	{
		s->ntraces = i + 1; /* so that snapshot_free frees what rd_trace got */
		if ((e = rd_trace(r, t, i, s)) < 0)
			return e;
		i++;
	}
	return 0;
}

static int rd_largest(struct rd *r, const cJSON *a, struct snapshot *s)
{
	const cJSON *t, *v;
	uint64_t u;
	size_t n, i = 0;

	if (rd_array(r, a, MAX_LARGEST, &n) < 0)
		return at(r, "largest");
	s->largest = xcalloc(n, sizeof *s->largest);
	s->nlargest = n;
	cJSON_ArrayForEach(t, a)
	{
		struct snapshot_block *b = &s->largest[i];

		if (rd_tuple(r, t, 3) < 0)
			return at(r, "largest[%zu]", i);
		v = t->child;
		if (rd_uint(r, v, UINT64_MAX, &b->addr) < 0)
			return at(r, "largest[%zu][0] (address)", i);
		v = v->next;
		if (rd_uint(r, v, UINT64_MAX, &b->size) < 0)
			return at(r, "largest[%zu][1] (size)", i);
		v = v->next;
		if (rd_uint(r, v, UINT32_MAX, &u) < 0)
			return at(r, "largest[%zu][2] (trace)", i);
		if (u >= s->ntraces)
			return fail(
			    r, "largest[%zu]: trace index %" PRIu64 " out of range (%zu traces)", i,
			    u, s->ntraces);
		b->trace = (uint32_t)u;
		if (i > 0 && b->size > s->largest[i - 1].size)
			return fail(r, "largest[%zu]: not sorted by size, descending", i);
		i++;
	}
	return 0;
}

int snapshot_from_json(const cJSON *doc, struct snapshot **out, char *err, size_t errlen)
{
	struct rd r = {.err = err, .errlen = errlen};
	struct snapshot *s;
	const cJSON *v;
	int e;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return fail(&r, "no place for the result");
	*out = NULL;
	if (!cJSON_IsObject(doc))
		return fail(&r, "not a memtrace snapshot file (not a JSON object)");
	v = field(doc, "format");
	if (!cJSON_IsString(v) || v->valuestring == NULL ||
	    strcmp(v->valuestring, SNAPSHOT_FORMAT) != 0)
		return fail(&r, "not a memtrace snapshot file");
	v = field(doc, "version");
	if (!cJSON_IsNumber(v))
		return fail(&r, "version: expected a number, got %s", type_name(v));
	if (!(v->valuedouble >= 1 && v->valuedouble <= SNAPSHOT_VERSION) ||
	    v->valuedouble != (double)(int)v->valuedouble)
		return fail(&r, "unsupported version %.17g (this memtrace reads versions 1 to %d)",
		            v->valuedouble, SNAPSHOT_VERSION);
	r.version = (int)v->valuedouble;

	s = snapshot_new();
	/* Frames before traces before largest: each checks indexes into the
	 * one before it. */
	if ((e = rd_header(&r, field(doc, "snapshot"), s)) < 0 ||
	    (e = rd_frames(&r, field(doc, "frames"), s)) < 0 ||
	    (e = rd_traces(&r, field(doc, "traces"), s)) < 0 ||
	    (e = rd_largest(&r, field(doc, "largest"), s)) < 0)
		goto err_after_s;
	*out = s;
	return 0;

err_after_s:
	snapshot_free(s);
	return e;
}

/* ---- the snapshot file ---- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Opens a new file "PATH.tmpXXXXXX" beside path with mode 0600: a snapshot
 * holds a process's command line and call stacks, which are its owner's to
 * share (chmod), not the umask's. */
static int open_temp(const char *path, char **tmp)
{
	static const char alnum[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	size_t len = strlen(path);
	char *name = xmalloc(len + sizeof ".tmpXXXXXX");
	int fd = -EEXIST;

	memcpy(name, path, len);
	memcpy(name + len, ".tmp", 4);
	for (int attempt = 0; attempt < 100 && fd == -EEXIST; attempt++) {
		unsigned char rnd[6];
		struct timespec ts;

		if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
			/* No entropy yet (early boot): a clock and the attempt
			 * are unique enough, O_EXCL catches the rest. */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
			             ((uint64_t)getpid() << 20) ^ (uint64_t)attempt;
			for (size_t i = 0; i < sizeof rnd; i++, x >>= 8)
				rnd[i] = (unsigned char)x;
		}
		for (size_t i = 0; i < sizeof rnd; i++)
			name[len + 4 + i] = alnum[rnd[i] % (sizeof alnum - 1)];
		name[len + 4 + sizeof rnd] = '\0';
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			fd = -errno;
	}
	if (fd < 0) {
		free(name);
		return fd;
	}
	*tmp = name;
	return fd;
}

/* Makes the rename durable. Best effort: the new file is in place whatever
 * happens here, and some file systems cannot fsync a directory. */
static void sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash == NULL ? xstrdup(".")
	                          : xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

int snapshot_write_file(const struct snapshot *s, const char *path)
{
	cJSON *doc;
	char *text, *tmp;
	int fd, e;

	if (s == NULL || path == NULL || path[0] == '\0')
		return -EINVAL;
	doc = snapshot_to_json(s);
	text = jsonout_print(doc, false);
	cJSON_Delete(doc);
	if ((fd = open_temp(path, &tmp)) < 0) {
		e = fd;
		goto err_after_text;
	}
	if ((e = write_all(fd, text, strlen(text))) < 0 || (e = write_all(fd, "\n", 1)) < 0)
		goto err_after_fd;
	if (fsync(fd) < 0) {
		e = -errno;
		goto err_after_fd;
	}
	if (close(fd) < 0) {
		fd = -1;
		e = -errno;
		goto err_after_fd;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		e = -errno;
		goto err_after_fd;
	}
	sync_dir(path);
	free(tmp);
	cJSON_free(text);
	return 0;

err_after_fd:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
err_after_text:
	cJSON_free(text);
	return e;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Reads all of fd, at most MAX_FILE bytes, NUL-terminated. */
static int read_all(int fd, char **out, size_t *outlen)
{
	struct stat st;
	size_t cap = 1 << 16, len = 0;
	char *buf;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
		if ((uint64_t)st.st_size > MAX_FILE)
			return -EFBIG;
		cap = (size_t)st.st_size + 1; /* + 1 to see the end without a regrow */
	}
	buf = xmalloc(cap + 1);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap > MAX_FILE) {
				free(buf);
				return -EFBIG;
			}
			cap = cap * 2 > MAX_FILE + 1 ? MAX_FILE + 1 : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno > 0 ? -errno : -EIO;
			free(buf);
			return e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > MAX_FILE) {
		free(buf);
		return -EFBIG;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

int snapshot_read_file(const char *path, struct snapshot **out, char *err, size_t errlen)
{
	const char *end = NULL;
	char msg[128];
	char *buf = NULL;
	size_t len = 0;
	cJSON *doc;
	int fd, e;

	if (out != NULL)
		*out = NULL;
	set_err(err, errlen, "%s", "");
	if (path == NULL || out == NULL)
		return -EINVAL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		e = -errno;
		goto err_errno;
	}
	e = read_all(fd, &buf, &len);
	close(fd);
	if (e == -EFBIG) {
		set_err(err, errlen, "larger than %lu MiB, too large for a snapshot file",
		        MAX_FILE >> 20);
		goto err;
	}
	if (e < 0)
		goto err_errno;
	if (memchr(buf, '\0', len) != NULL) {
		set_err(err, errlen, "not a memtrace snapshot file (binary data)");
		e = -EINVAL;
		goto err_after_buf;
	}
	/* The length includes our NUL, which cJSON then requires after the
	 * value and its trailing white space: no trailing garbage. */
	doc = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1);
	if (doc != NULL)
		jsonout_keep_integers(doc, buf);
	if (doc == NULL) {
		set_err(err, errlen, "not a memtrace snapshot file (invalid JSON at byte %zu)",
		        end != NULL && end >= buf ? (size_t)(end - buf) : (size_t)0);
		e = -EINVAL;
		goto err_after_buf;
	}
	e = snapshot_from_json(doc, out, err, errlen);
	cJSON_Delete(doc);
err_after_buf:
	free(buf);
err:
	return e;

err_errno:
	set_err(err, errlen, "%s", strerror_r(-e, msg, sizeof msg));
	return e;
}

/* ---- views ---- */

struct trace_group *snapshot_groups(const struct snapshot *s, bool at_peak, void **storage,
                                    size_t *ngroups)
{
	size_t total = 0, bytes;
	struct trace_group *g;
	const struct frame_info **p;

	for (size_t i = 0; i < s->ntraces; i++)
		total += s->traces[i].nframes;
	/* One block: the groups, then every group's frame pointers. Both are
	 * pointer-aligned, so the pointers can follow the groups directly. */
	if (s->ntraces > SIZE_MAX / sizeof *g ||
	    total > (SIZE_MAX - s->ntraces * sizeof *g) / sizeof *p)
		abort(); /* cannot be: s itself holds that many elements */
	bytes = s->ntraces * sizeof *g + total * sizeof *p;
	g = xmalloc(bytes);
	p = (const struct frame_info **)(void *)(g + s->ntraces);
	for (size_t i = 0; i < s->ntraces; i++) {
		const struct snapshot_trace *t = &s->traces[i];

		for (uint32_t j = 0; j < t->nframes; j++)
			p[j] = &s->frames[t->frames[j]];
		g[i].frames = p;
		g[i].addrs = t->addrs;
		g[i].nframes = t->nframes;
		g[i].size = t->size;
		g[i].count = t->count;
		g[i].allocations = t->allocations;
		g[i].allocated = t->allocated;
		g[i].temporary = t->temporary;
		if (at_peak) {
			g[i].size = t->peak_size;
			g[i].count = t->peak_count;
		}
		p += t->nframes;
	}
	*storage = g;
	*ngroups = s->ntraces;
	return g;
}

cJSON *snapshot_ref_json(const struct snapshot *s)
{
	char reason[sizeof s->reason];
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "id", (double)s->id);
	cJSON_AddNumberToObject(o, "taken_at", s->taken_at);
	add_str(o, "reason", reason_of(s, reason));
	return o;
}

cJSON *snapshot_sampled_json(uint64_t sample_bytes)
{
	cJSON *o;

	if (sample_bytes == 0)
		return cJSON_CreateNull();
	o = cJSON_CreateObject();
	jsonout_add_u64(o, "rate", sample_bytes);
	return o;
}

int snapshot_top_json(const struct snapshot *s, const struct query_opts *o, bool with_ref,
                      cJSON **out)
{
	void *storage = NULL;
	size_t n = 0;
	struct trace_group *g = snapshot_groups(s, o->at_peak, &storage, &n);
	cJSON *stats = NULL, *resp, *item;
	int rc = query_top(g, n, o, &stats);

	free(storage); /* g lives inside it */
	*out = NULL;
	if (rc < 0)
		return rc;
	resp = cJSON_CreateObject();
	cJSON_AddNumberToObject(resp, "pid", (double)s->pid);
	if (with_ref)
		cJSON_AddItemToObject(resp, "snapshot", snapshot_ref_json(s));
	cJSON_AddItemToObject(resp, "sampled", snapshot_sampled_json(s->sample_bytes));
	while ((item = stats->child) != NULL) {
		cJSON_DetachItemViaPointer(stats, item);
		cJSON_AddItemToObject(resp, item->string, item);
	}
	cJSON_Delete(stats);
	*out = resp;
	return 0;
}

cJSON *snapshot_stats_json(const struct snapshot *s)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "pid", (double)s->pid);
	add_str(o, "exe", s->exe);
	cJSON_AddItemToObject(o, "cmdline", cmdline_json(s));
	cJSON_AddStringToObject(o, "state", "snapshot");
	jsonout_add_u64(o, "current", s->current);
	jsonout_add_u64(o, "peak", s->peak);
	jsonout_add_u64(o, "blocks", s->blocks);
	jsonout_add_u64(o, "allocations", s->allocations);
	jsonout_add_u64(o, "frees", s->frees);
	jsonout_add_u64(o, "lost_events", s->lost_events);
	cJSON_AddBoolToObject(o, "truncated", s->lost_events != 0);
	cJSON_AddNumberToObject(o, "uid", (double)s->uid);
	jsonout_add_u64(o, "start_time", s->start_time);
	cJSON_AddNumberToObject(o, "stacks", (double)s->ntraces);
	cJSON_AddItemToObject(o, "snapshot", snapshot_ref_json(s));
	jsonout_add_u64(o, "sample_bytes", s->sample_bytes);
	cJSON_AddItemToObject(o, "sampled", snapshot_sampled_json(s->sample_bytes));
	/* Not stored with snapshots: present, so scripts find every field of
	 * the live answer, but null. */
	cJSON_AddNullToObject(o, "nframes");
	cJSON_AddNullToObject(o, "limit_reached");
	cJSON_AddNullToObject(o, "lost_allocations");
	cJSON_AddNullToObject(o, "lost_bytes");
	cJSON_AddNullToObject(o, "lost_frees");
	cJSON_AddNullToObject(o, "stopped_waiting");
	return o;
}

static cJSON *block_json(const struct snapshot *s, const struct snapshot_block *b)
{
	char addr[sizeof "0x" + 16];
	cJSON *o = cJSON_CreateObject();
	cJSON *tb;

	snprintf(addr, sizeof addr, "0x%" PRIx64, b->addr);
	cJSON_AddStringToObject(o, "address", addr);
	jsonout_add_u64(o, "size", b->size);
	tb = cJSON_AddArrayToObject(o, "traceback");
	if (b->trace < s->ntraces) {
		const struct snapshot_trace *t = &s->traces[b->trace];

		for (uint32_t i = 0; i < t->nframes; i++)
			cJSON_AddItemToArray(
			    tb, query_frame_json(&s->frames[t->frames[i]], t->addrs[i]));
	}
	return o;
}

cJSON *snapshot_traceback_json(const struct snapshot *s, size_t limit)
{
	size_t n = limit == 0 || limit > s->nlargest ? s->nlargest : limit;
	cJSON *o = cJSON_CreateObject();
	cJSON *arr;

	cJSON_AddNumberToObject(o, "pid", (double)s->pid);
	cJSON_AddItemToObject(o, "snapshot", snapshot_ref_json(s));
	cJSON_AddItemToObject(o, "sampled", snapshot_sampled_json(s->sample_bytes));
	arr = cJSON_AddArrayToObject(o, "blocks");
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, block_json(s, &s->largest[i]));
	return o;
}

cJSON *snapshot_where_json(const struct snapshot *s, uint64_t addr)
{
	char text[sizeof "0x" + 16];

	if (s->nlargest == 0)
		return NULL;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "pid", (double)s->pid);
	snprintf(text, sizeof text, "0x%" PRIx64, addr);
	cJSON_AddStringToObject(o, "address", text);
	cJSON *b = block_json(s, &s->largest[0]);
	jsonout_add_u64(b, "offset", addr - s->largest[0].addr);
	cJSON_AddItemToObject(o, "block", b);
	cJSON_AddItemToObject(o, "sampled", snapshot_sampled_json(s->sample_bytes));
	return o;
}

cJSON *snapshot_summary_json(const struct snapshot *s)
{
	char reason[sizeof s->reason];
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "id", (double)s->id);
	cJSON_AddNumberToObject(o, "pid", (double)s->pid);
	add_str(o, "exe", s->exe);
	cJSON_AddNumberToObject(o, "taken_at", s->taken_at);
	add_str(o, "reason", reason_of(s, reason));
	jsonout_add_u64(o, "current", s->current);
	jsonout_add_u64(o, "peak", s->peak);
	jsonout_add_u64(o, "blocks", s->blocks);
	cJSON_AddItemToObject(o, "sampled", snapshot_sampled_json(s->sample_bytes));
	return o;
}
