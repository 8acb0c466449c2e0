/*
 * export.c - folded stacks and pprof from a snapshot (see export.h).
 *
 * The pprof encoder writes the few messages of profile.proto that a heap
 * profile needs, by their field numbers, with protobuf's two wire types
 * used there: varints (0) and length-delimited bytes (2). A message is
 * built in a buffer of its own and copied into its parent with its length,
 * so nothing needs sizes in advance. Nothing here reads protobuf.
 */
#include "export.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "oaindex.h"
#include "xalloc.h"

/* ---- a growing byte buffer ---- */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_str(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* ---- folded ---- */

/* A frame's name with ';' and control characters made '_'. */
static void put_name(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		char c = *s;
		if (c == ';' || (unsigned char)c < 0x20 || c == 0x7f)
			c = '_';
		put(b, &c, 1);
	}
}

static uint64_t trace_value(const struct snapshot_trace *t, enum query_sort v)
{
	switch (v) {
	case QUERY_SORT_COUNT:
		return t->count;
	case QUERY_SORT_ALLOCATIONS:
		return t->allocations;
	case QUERY_SORT_ALLOCATED:
		return t->allocated;
	case QUERY_SORT_TEMPORARY:
		return t->temporary;
	case QUERY_SORT_SIZE:
	default:
		return t->size;
	}
}

char *export_folded(const struct snapshot *s, enum query_sort value, size_t *len)
{
	struct buf b = {0};
	char num[32];

	for (size_t i = 0; i < s->ntraces; i++) {
		const struct snapshot_trace *t = &s->traces[i];
		uint64_t v = trace_value(t, value);
		if (v == 0)
			continue;
		if (t->nframes == 0)
			put_str(&b, "[unknown]");
		/* The snapshot's frames are most recent first: outermost first here. */
		for (uint32_t j = t->nframes; j-- > 0;) {
			put_name(&b, s->frames[t->frames[j]].function);
			if (j > 0)
				put(&b, ";", 1);
		}
		snprintf(num, sizeof num, " %llu\n", (unsigned long long)v);
		put_str(&b, num);
	}
	put(&b, "", 1);
	*len = b.n - 1;
	return (char *)b.p;
}

/* ---- protobuf ---- */

enum { WIRE_VARINT = 0, WIRE_BYTES = 2 };

static void put_varint(struct buf *b, uint64_t v)
{
	uint8_t out[10];
	size_t n = 0;

	do {
		out[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	put(b, out, n);
}

static void put_tag(struct buf *b, uint32_t field, int wire)
{
	put_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

/* A varint field; proto3 leaves out zeros. */
static void put_field(struct buf *b, uint32_t field, uint64_t v)
{
	if (v == 0)
		return;
	put_tag(b, field, WIRE_VARINT);
	put_varint(b, v);
}

/* A length-delimited field: a message or a packed array in `m`, emptied. */
static void put_msg(struct buf *b, uint32_t field, struct buf *m)
{
	put_tag(b, field, WIRE_BYTES);
	put_varint(b, m->n);
	put(b, m->p, m->n);
	m->n = 0;
}

/* profile.proto's field numbers. */
enum {
	PROFILE_SAMPLE_TYPE = 1,
	PROFILE_SAMPLE = 2,
	PROFILE_MAPPING = 3,
	PROFILE_LOCATION = 4,
	PROFILE_FUNCTION = 5,
	PROFILE_STRING_TABLE = 6,
	PROFILE_TIME_NANOS = 9,
	PROFILE_DEFAULT_SAMPLE_TYPE = 14,
	VALUE_TYPE_TYPE = 1,
	VALUE_TYPE_UNIT = 2,
	SAMPLE_LOCATION_ID = 1,
	SAMPLE_VALUE = 2,
	MAPPING_ID = 1,
	MAPPING_MEMORY_START = 2,
	MAPPING_MEMORY_LIMIT = 3,
	MAPPING_FILENAME = 5,
	MAPPING_HAS_FUNCTIONS = 7,
	MAPPING_HAS_FILENAMES = 8,
	MAPPING_HAS_LINE_NUMBERS = 9,
	LOCATION_ID = 1,
	LOCATION_MAPPING_ID = 2,
	LOCATION_ADDRESS = 3,
	LOCATION_LINE = 4,
	LINE_FUNCTION_ID = 1,
	LINE_LINE = 2,
	FUNCTION_ID = 1,
	FUNCTION_NAME = 2,
	FUNCTION_SYSTEM_NAME = 3,
	FUNCTION_FILENAME = 4,
};

/* The string table: index 0 is "", as profile.proto requires. */
struct strtab {
	const char **v;
	size_t n, cap;
	struct oaindex idx;
};

static bool str_eq(const void *ctx, uintptr_t val, const void *key)
{
	const struct strtab *t = ctx;
	return strcmp(t->v[val], key) == 0;
}

static uint64_t str_id(struct strtab *t, const char *s)
{
	uint64_t h = hash_str(HASH_SEED, s);
	uintptr_t i = oaindex_find(&t->idx, h, str_eq, t, s);

	if (i != OAINDEX_NONE)
		return i;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->v = xreallocarray(t->v, t->cap, sizeof(*t->v));
	}
	t->v[t->n] = s;
	oaindex_insert(&t->idx, h, t->n);
	return t->n++;
}

/* Functions by (name, file), as string ids. */
struct fkey {
	uint64_t name, file;
};

struct functab {
	struct fkey *v;
	size_t n, cap;
	struct oaindex idx;
};

static bool fn_eq(const void *ctx, uintptr_t val, const void *key)
{
	const struct functab *t = ctx;
	const struct fkey *k = key;
	return t->v[val].name == k->name && t->v[val].file == k->file;
}

/* The function's id (from 1). */
static uint64_t fn_id(struct functab *t, struct fkey k)
{
	uint64_t h = hash_mix(k.name * 31 + k.file);
	uintptr_t i = oaindex_find(&t->idx, h, fn_eq, t, &k);

	if (i != OAINDEX_NONE)
		return i + 1;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->v = xreallocarray(t->v, t->cap, sizeof(*t->v));
	}
	t->v[t->n] = k;
	oaindex_insert(&t->idx, h, t->n);
	return ++t->n;
}

/* The objects the profile's locations are in (profile.proto's mappings),
 * the program's executable first: pprof takes the first for the main
 * binary. Each spans the addresses of its frames the profile uses. */
struct mapping {
	const char *file;
	uint64_t lo, hi;
	bool lines;
};

static size_t mapping_of(struct mapping *m, size_t *n, const char *exe, const char *file)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(m[i].file, file) == 0)
			return i;
	/* the executable's place is 0, kept for it */
	if (exe != NULL && strcmp(file, exe) == 0)
		return 0;
	m[*n] = (struct mapping){file, UINT64_MAX, 0, false};
	return (*n)++;
}

uint8_t *export_pprof(const struct snapshot *s, size_t *len)
{
	static const char *const types[][2] = {{"inuse_space", "bytes"},
	                                       {"inuse_objects", "count"},
	                                       {"alloc_space", "bytes"},
	                                       {"alloc_objects", "count"}};
	struct buf out = {0}, m = {0}, sub = {0}, arr = {0};
	struct strtab st = {0};
	struct functab ft = {0};
	/* Per snapshot frame: its function id and the first address seen. */
	uint64_t *fid = xcalloc(s->nframes ? s->nframes : 1, sizeof(*fid));
	uint64_t *addr = xcalloc(s->nframes ? s->nframes : 1, sizeof(*addr));
	bool *used = xcalloc(s->nframes ? s->nframes : 1, sizeof(*used));

	str_id(&st, "");
	for (size_t i = 0; i < 4; i++) {
		put_field(&m, VALUE_TYPE_TYPE, str_id(&st, types[i][0]));
		put_field(&m, VALUE_TYPE_UNIT, str_id(&st, types[i][1]));
		put_msg(&out, PROFILE_SAMPLE_TYPE, &m);
	}
	for (size_t i = 0; i < s->ntraces; i++) {
		const struct snapshot_trace *t = &s->traces[i];
		uint64_t v[4] = {t->size, t->count, t->allocated, t->allocations};

		for (uint32_t j = 0; j < t->nframes; j++) {
			uint32_t f = t->frames[j];
			put_varint(&arr, (uint64_t)f + 1); /* location ids from 1 */
			if (!used[f]) {
				used[f] = true;
				addr[f] = t->addrs[j];
			}
		}
		if (arr.n > 0)
			put_msg(&m, SAMPLE_LOCATION_ID, &arr);
		for (int k = 0; k < 4; k++)
			put_varint(&arr, v[k]);
		put_msg(&m, SAMPLE_VALUE, &arr);
		put_msg(&out, PROFILE_SAMPLE, &m);
	}
	/* Mapping 0 is the executable's, named even when no frame is in it. */
	struct mapping *maps = xcalloc(s->nframes + 1, sizeof(*maps));
	size_t *mid = xcalloc(s->nframes ? s->nframes : 1, sizeof(*mid));
	size_t nmaps = 1;
	maps[0] = (struct mapping){s->exe != NULL ? s->exe : "[unknown]", UINT64_MAX, 0, false};
	for (size_t f = 0; f < s->nframes; f++) {
		const struct frame_info *fr = &s->frames[f];
		if (!used[f])
			continue;
		size_t i =
		    mapping_of(maps, &nmaps, s->exe, fr->module != NULL ? fr->module : "[unknown]");
		mid[f] = i;
		if (addr[f] < maps[i].lo)
			maps[i].lo = addr[f];
		if (addr[f] + 1 > maps[i].hi)
			maps[i].hi = addr[f] + 1;
		maps[i].lines |= fr->lineno > 0;
	}
	for (size_t i = 0; i < nmaps; i++) {
		put_field(&m, MAPPING_ID, i + 1);
		put_field(&m, MAPPING_MEMORY_START, maps[i].lo != UINT64_MAX ? maps[i].lo : 0);
		put_field(&m, MAPPING_MEMORY_LIMIT, maps[i].hi);
		put_field(&m, MAPPING_FILENAME, str_id(&st, maps[i].file));
		put_field(&m, MAPPING_HAS_FUNCTIONS, 1);
		put_field(&m, MAPPING_HAS_FILENAMES, maps[i].lines);
		put_field(&m, MAPPING_HAS_LINE_NUMBERS, maps[i].lines);
		put_msg(&out, PROFILE_MAPPING, &m);
	}
	for (size_t f = 0; f < s->nframes; f++) {
		const struct frame_info *fr = &s->frames[f];
		if (!used[f])
			continue;
		struct fkey k = {str_id(&st, fr->function), str_id(&st, fr->filename)};
		fid[f] = fn_id(&ft, k);
		put_field(&m, LOCATION_ID, f + 1);
		put_field(&m, LOCATION_MAPPING_ID, mid[f] + 1);
		put_field(&m, LOCATION_ADDRESS, addr[f]);
		put_field(&sub, LINE_FUNCTION_ID, fid[f]);
		put_field(&sub, LINE_LINE, fr->lineno);
		put_msg(&m, LOCATION_LINE, &sub);
		put_msg(&out, PROFILE_LOCATION, &m);
	}
	for (size_t i = 0; i < ft.n; i++) {
		put_field(&m, FUNCTION_ID, i + 1);
		put_field(&m, FUNCTION_NAME, ft.v[i].name);
		put_field(&m, FUNCTION_SYSTEM_NAME, ft.v[i].name);
		put_field(&m, FUNCTION_FILENAME, ft.v[i].file);
		put_msg(&out, PROFILE_FUNCTION, &m);
	}
	for (size_t i = 0; i < st.n; i++) {
		put_tag(&out, PROFILE_STRING_TABLE, WIRE_BYTES);
		put_varint(&out, strlen(st.v[i]));
		put_str(&out, st.v[i]);
	}
	if (s->taken_at > 0 && s->taken_at < 1.8e10) /* past 2^64 ns the cast is undefined */
		put_field(&out, PROFILE_TIME_NANOS, (uint64_t)(s->taken_at * 1e9));
	put_field(&out, PROFILE_DEFAULT_SAMPLE_TYPE, str_id(&st, "inuse_space"));

	free(maps);
	free(mid);
	free(used);
	free(addr);
	free(fid);
	free(ft.v);
	oaindex_close(&ft.idx);
	free(st.v);
	oaindex_close(&st.idx);
	free(m.p);
	free(sub.p);
	free(arr.p);
	*len = out.n;
	return out.p;
}
