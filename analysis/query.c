/*
 * query.c - tracemalloc's statistics() and compare_to() over trace groups.
 * See query.h for the contract.
 *
 * The daemon runs this over ~100k groups of up to MEMTRACE_NFRAMES frames, so
 * the work is linear in the number of frames, with three open-addressing indexes
 * (oaindex.h) doing the grouping:
 *
 *  - ptab maps a frame_info pointer to a "pent" (pointer entry). Frames are
 *    interned by the symbol cache, so the number of distinct pointers is small
 *    next to the number of frames, and everything that costs string work (the
 *    key's content hash, fnmatch for each filter) is done once per pointer
 *    and cached in the pent.
 *  - ktab maps a frame's key content to a key id ("kid"): (filename, lineno)
 *    for key lineno, (filename) for filename, (function, filename) for
 *    function and (filename, lineno, function) for traceback. Two pointers
 *    with equal content get the same kid; grouping is by content, never by
 *    pointer identity, because the same location can reach us through
 *    different frame_info objects (two modules, a stored snapshot).
 *  - ttab (key traceback only) maps a sequence of kids to a statistic.
 *
 * For the frame keys a statistic is simply indexed by kid. Cumulative mode
 * counts a trace once per distinct key (a recursive frame or two frames of
 * one file count once) by stamping each statistic with the serial of the
 * last trace that counted in it. Note that CPython's tracemalloc iterates
 * the raw traceback here and would count such a trace twice; query.h chose
 * "once per trace" so that no statistic can exceed the total.
 *
 * The key decides which fields of the printed frame mean something. Fields
 * the key groups by are printed exactly. Fields that the key determines in
 * practice (the function and address of a file:line, the module of a file)
 * come from a representative: the contributing frame that sorts first by
 * (module, function, address), so the output does not depend on the order of
 * the input. Fields finer than the key are blanked: lineno 0 for keys
 * filename and function (as tracemalloc), function "" for key filename and
 * address "0x0" for both, since one file or function has many of them.
 *
 * Old and new snapshot (compare) share one context, hence one kid space; each
 * statistic keeps a size and count per side.
 */
#include "query.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "jsonout.h"
#include "oaindex.h"
#include "xalloc.h"

#define NONE UINT32_MAX

enum side { SIDE_OLD, SIDE_NEW };

/* What a trace without a traceback is shown as, like tracemalloc's
 * ('<unknown>', 0) frame. It is grouped and filtered like any other frame. */
static const struct frame_info unknown_frame = {
    .filename = "<unknown>",
    .lineno = 0,
    .function = "<unknown>",
    .module = "<unknown>",
};
static const struct frame_info *const unknown_frames[1] = {&unknown_frame};
static const uint64_t unknown_addrs[1] = {0};

static const char *const key_names[] = {
    [QUERY_KEY_LINENO] = "lineno",
    [QUERY_KEY_FILENAME] = "filename",
    [QUERY_KEY_FUNCTION] = "function",
    [QUERY_KEY_TRACEBACK] = "traceback",
};
#define NKEYS (sizeof key_names / sizeof key_names[0])

static bool key_has_lineno(enum query_key k)
{
	return k == QUERY_KEY_LINENO || k == QUERY_KEY_TRACEBACK;
}

static bool key_has_function(enum query_key k)
{
	return k == QUERY_KEY_FUNCTION || k == QUERY_KEY_TRACEBACK;
}

/* The file a key groups a frame by. A frame without line information
 * (its filename is MODULE+0xOFFSET, one per address) is of its module's
 * file for keys filename and function: one function is one statistic
 * however many of its addresses allocate. */
static const char *key_file(enum query_key k, const struct frame_info *f)
{
	size_t n;

	if (key_has_lineno(k) || f->lineno != 0 || f->module == NULL)
		return f->filename;
	n = strlen(f->module);
	if (strncmp(f->filename, f->module, n) == 0 && strncmp(f->filename + n, "+0x", 3) == 0)
		return f->module;
	return f->filename;
}

static uint64_t key_hash(enum query_key k, const struct frame_info *f)
{
	uint64_t h = hash_str(HASH_SEED, key_file(k, f));

	if (key_has_lineno(k))
		h = hash_mix(h ^ f->lineno);
	if (key_has_function(k))
		h = hash_str(h, f->function);
	return hash_mix(h);
}

/* Orders two frames by the fields the key groups by: filename, lineno
 * (numerically), function. 0 means they belong to the same statistic. */
static int key_cmp(enum query_key k, const struct frame_info *a, const struct frame_info *b)
{
	int r;

	if (a == b)
		return 0;
	if ((r = strcmp(key_file(k, a), key_file(k, b))) != 0)
		return r;
	if (key_has_lineno(k) && a->lineno != b->lineno)
		return a->lineno < b->lineno ? -1 : 1;
	if (key_has_function(k))
		return strcmp(a->function, b->function);
	return 0;
}

/* The order that picks a statistic's representative frame. */
static int rep_cmp(const struct frame_info *a, uint64_t aa, const struct frame_info *b, uint64_t ba)
{
	int r;

	if (a != b) {
		if ((r = strcmp(a->module, b->module)) != 0)
			return r;
		if ((r = strcmp(a->function, b->function)) != 0)
			return r;
	}
	return aa < ba ? -1 : aa > ba;
}

/* ---- the query context ---- */

struct pent {
	const struct frame_info *f;
	uint32_t kid; /* NONE until the frame is first counted */
};

/* A statistic's counters (enum query_sort's order), per side. */
enum { V_SIZE, V_COUNT, V_ALLOCATIONS, V_ALLOCATED, V_TEMPORARY, NV };
static const char *const value_names[NV] = {"size", "count", "allocations", "allocated",
                                            "temporary"};

struct qstat {
	uint64_t v[NV][2];
	uint64_t stamp; /* cumulative: serial of the last trace counted here */
	/* frame keys: the representative frame and its address */
	const struct frame_info *rep;
	uint64_t rep_addr;
	/* key traceback: the representative group and the kid sequence */
	const struct trace_group *rep_group;
	size_t kids_off;
	uint32_t nkids;
	uint8_t present; /* bit per side that counted a trace here */
};

struct kseq {
	const uint32_t *kids;
	uint32_t n;
};

struct qctx {
	enum query_key key;
	bool cumulative;
	const struct query_filter *filters;
	size_t nfilters;
	bool need_all; /* every frame matters, not only the most recent */

	struct oaindex ptab, ktab, ttab; /* values: pent, kid, statistic indexes */
	struct pent *pent;
	size_t npent, cap_pent;
	uint8_t *fmatch; /* npent x nfilters: 0 not computed, 1 no match, 2 match */
	size_t cap_fmatch;
	const struct frame_info **kframe; /* kid -> first frame with that content */
	size_t nkid, cap_kid;
	struct qstat *stat;
	size_t nstat, cap_stat;
	uint32_t *arena; /* key traceback: kid sequences of the statistics */
	size_t narena, cap_arena;
	uint32_t *scratch; /* the current trace's pents, then kids */
	size_t cap_scratch;
	uint64_t serial;
	uint64_t total[NV][2];
};

/* Makes room for `need` elements in *p; capacities double. */
static void *grow(void *p, size_t *cap, size_t need, size_t elsize)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	*cap = n;
	return xreallocarray(p, n, elsize);
}

static void ctx_init(struct qctx *c, const struct query_opts *o)
{
	memset(c, 0, sizeof *c);
	c->key = o->key;
	c->cumulative = o->cumulative;
	c->filters = o->filters;
	c->nfilters = o->nfilters;
	c->need_all = o->cumulative || o->key == QUERY_KEY_TRACEBACK;
	for (size_t i = 0; i < o->nfilters; i++)
		if (o->filters[i].all_frames)
			c->need_all = true;
}

static void ctx_close(struct qctx *c)
{
	free(c->scratch);
	free(c->arena);
	free(c->stat);
	free(c->kframe);
	free(c->fmatch);
	free(c->pent);
	oaindex_close(&c->ttab);
	oaindex_close(&c->ktab);
	oaindex_close(&c->ptab);
}

static void group_frames(const struct trace_group *g, const struct frame_info *const **frames,
                         const uint64_t **addrs, uint32_t *n)
{
	if (g->nframes == 0) {
		*frames = unknown_frames;
		*addrs = unknown_addrs;
		*n = 1;
	} else {
		*frames = g->frames;
		*addrs = g->addrs;
		*n = g->nframes;
	}
}

static uint32_t stat_new(struct qctx *c)
{
	c->stat = grow(c->stat, &c->cap_stat, c->nstat + 1, sizeof *c->stat);
	memset(&c->stat[c->nstat], 0, sizeof c->stat[c->nstat]);
	return (uint32_t)c->nstat++;
}

/* The value stored under key in index t of the context, NONE if none. */
static uint32_t lookup(const struct oaindex *t, uint64_t h, oaindex_eq_fn eq, const struct qctx *c,
                       const void *key)
{
	uintptr_t v = oaindex_find(t, h, eq, c, key);

	return v == OAINDEX_NONE ? NONE : (uint32_t)v;
}

static bool pent_eq(const void *ctx, uintptr_t idx, const void *key)
{
	const struct qctx *c = ctx;

	return c->pent[idx].f == key;
}

static uint32_t pent_of(struct qctx *c, const struct frame_info *f)
{
	uint64_t h = hash_mix((uint64_t)(uintptr_t)f);
	uint32_t i = lookup(&c->ptab, h, pent_eq, c, f);

	if (i != NONE)
		return i;
	i = (uint32_t)c->npent++;
	c->pent = grow(c->pent, &c->cap_pent, c->npent, sizeof *c->pent);
	c->pent[i].f = f;
	c->pent[i].kid = NONE;
	if (c->nfilters > 0) {
		c->fmatch = grow(c->fmatch, &c->cap_fmatch, c->npent * c->nfilters, 1);
		memset(c->fmatch + (size_t)i * c->nfilters, 0, c->nfilters);
	}
	oaindex_insert(&c->ptab, h, i);
	return i;
}

static bool kid_eq(const void *ctx, uintptr_t idx, const void *key)
{
	const struct qctx *c = ctx;

	return key_cmp(c->key, c->kframe[idx], key) == 0;
}

static uint32_t kid_of(struct qctx *c, uint32_t pi)
{
	const struct frame_info *f = c->pent[pi].f;
	uint64_t h;
	uint32_t kid;

	if (c->pent[pi].kid != NONE)
		return c->pent[pi].kid;
	h = key_hash(c->key, f);
	kid = lookup(&c->ktab, h, kid_eq, c, f);
	if (kid == NONE) {
		kid = (uint32_t)c->nkid++;
		c->kframe = grow(c->kframe, &c->cap_kid, c->nkid, sizeof *c->kframe);
		c->kframe[kid] = f;
		/* For the frame keys the statistic of a kid is stat[kid]. */
		if (c->key != QUERY_KEY_TRACEBACK)
			stat_new(c);
		oaindex_insert(&c->ktab, h, kid);
	}
	c->pent[pi].kid = kid;
	return kid;
}

static bool seq_eq(const void *ctx, uintptr_t idx, const void *key)
{
	const struct qctx *c = ctx;
	const struct kseq *k = key;
	const struct qstat *st = &c->stat[idx];

	return st->nkids == k->n &&
	       memcmp(c->arena + st->kids_off, k->kids, k->n * sizeof *k->kids) == 0;
}

static uint32_t tb_stat_of(struct qctx *c, const uint32_t *kids, uint32_t n)
{
	struct kseq k = {kids, n};
	uint64_t h = n;
	uint32_t si;

	for (uint32_t i = 0; i < n; i++)
		h = hash_mix(h ^ kids[i]);
	si = lookup(&c->ttab, h, seq_eq, c, &k);
	if (si == NONE) {
		si = stat_new(c);
		c->arena = grow(c->arena, &c->cap_arena, c->narena + n, sizeof *c->arena);
		memcpy(c->arena + c->narena, kids, n * sizeof *kids);
		c->stat[si].kids_off = c->narena;
		c->stat[si].nkids = n;
		c->narena += n;
		oaindex_insert(&c->ttab, h, si);
	}
	return si;
}

/* tracemalloc's Filter._match_frame_impl, cached per pointer. fnmatch
 * without flags, like Python's fnmatch on POSIX: '*' also matches '/' and a
 * leading '.' is not special. A malformed pattern matches nothing. */
static bool filter_frame(struct qctx *c, uint32_t pi, size_t fi)
{
	uint8_t *m = &c->fmatch[(size_t)pi * c->nfilters + fi];

	if (*m == 0)
		*m = fnmatch(c->filters[fi].pattern, c->pent[pi].f->filename, 0) == 0 ? 2 : 1;
	return *m == 2;
}

/* Snapshot._filter_trace: kept when some inclusive filter (if any) matches
 * and no exclusive filter does. A filter looks at the most recent frame, or
 * at every frame with all_frames. */
static bool filter_keep(struct qctx *c, const uint32_t *pis, uint32_t n)
{
	bool have_incl = false, incl_hit = false;

	for (size_t fi = 0; fi < c->nfilters; fi++) {
		const struct query_filter *f = &c->filters[fi];
		uint32_t nf = f->all_frames ? n : 1;
		bool hit = false;

		for (uint32_t i = 0; i < nf && !hit; i++)
			hit = filter_frame(c, pis[i], fi);
		if (f->inclusive) {
			have_incl = true;
			incl_hit = incl_hit || hit;
		} else if (hit) {
			return false;
		}
	}
	return !have_incl || incl_hit;
}

static void values_of(const struct trace_group *g, uint64_t v[NV])
{
	v[V_SIZE] = g->size;
	v[V_COUNT] = g->count;
	v[V_ALLOCATIONS] = g->allocations;
	v[V_ALLOCATED] = g->allocated;
	v[V_TEMPORARY] = g->temporary;
}

static void stat_add(struct qstat *st, const struct trace_group *g, enum side s)
{
	uint64_t v[NV];

	values_of(g, v);
	for (int i = 0; i < NV; i++)
		st->v[i][s] += v[i];
	st->present |= (uint8_t)(1u << s);
}

static void stat_rep_frame(struct qstat *st, const struct frame_info *f, uint64_t addr)
{
	if (st->rep == NULL || rep_cmp(f, addr, st->rep, st->rep_addr) < 0) {
		st->rep = f;
		st->rep_addr = addr;
	}
}

static void stat_rep_group(struct qstat *st, const struct trace_group *g)
{
	const struct frame_info *const *fa, *const *fb;
	const uint64_t *aa, *ab;
	uint32_t n, nb;
	int r = 0;

	if (st->rep_group == NULL) {
		st->rep_group = g;
		return;
	}
	/* Equal kid sequences, so equal lengths. */
	group_frames(g, &fa, &aa, &n);
	group_frames(st->rep_group, &fb, &ab, &nb);
	for (uint32_t i = 0; i < n && r == 0; i++)
		r = rep_cmp(fa[i], aa[i], fb[i], ab[i]);
	if (r < 0)
		st->rep_group = g;
}

/* Counts one trace group on one side. */
static void account(struct qctx *c, const struct trace_group *g, enum side s)
{
	const struct frame_info *const *frames;
	const uint64_t *addrs;
	uint32_t n, np;

	group_frames(g, &frames, &addrs, &n);
	np = c->need_all ? n : 1;
	c->scratch = grow(c->scratch, &c->cap_scratch, np, sizeof *c->scratch);
	for (uint32_t i = 0; i < np; i++)
		c->scratch[i] = pent_of(c, frames[i]);
	if (!filter_keep(c, c->scratch, np))
		return;
	uint64_t v[NV];
	values_of(g, v);
	for (int i = 0; i < NV; i++)
		c->total[i][s] += v[i];

	if (c->key == QUERY_KEY_TRACEBACK) {
		/* kid_of and tb_stat_of may move c->stat: index it only after. */
		for (uint32_t i = 0; i < n; i++)
			c->scratch[i] = kid_of(c, c->scratch[i]);
		uint32_t si = tb_stat_of(c, c->scratch, n);
		struct qstat *st = &c->stat[si];
		stat_add(st, g, s);
		stat_rep_group(st, g);
	} else if (!c->cumulative) {
		uint32_t kid = kid_of(c, c->scratch[0]);
		struct qstat *st = &c->stat[kid];
		stat_add(st, g, s);
		stat_rep_frame(st, frames[0], addrs[0]);
	} else {
		uint64_t serial = ++c->serial;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t kid = kid_of(c, c->scratch[i]);
			struct qstat *st = &c->stat[kid];
			stat_rep_frame(st, frames[i], addrs[i]);
			if (st->stamp == serial)
				continue;
			st->stamp = serial;
			stat_add(st, g, s);
		}
	}
}

/* ---- validation ---- */

static int check_opts(const struct query_opts *o, cJSON **out)
{
	if (o == NULL || out == NULL)
		return -EINVAL;
	if ((unsigned)o->key >= NKEYS)
		return -EINVAL;
	if (o->cumulative && o->key == QUERY_KEY_TRACEBACK)
		return -EINVAL;
	if ((unsigned)o->sort_by >= NV)
		return -EINVAL;
	if (o->nfilters > 0 && o->filters == NULL)
		return -EINVAL;
	for (size_t i = 0; i < o->nfilters; i++)
		if (o->filters[i].pattern == NULL)
			return -EINVAL;
	return 0;
}

/* Checks the groups and adds their frame count to *total. Indices into the
 * context's arrays are 32 bits, which bounds the frames of one query. */
static int check_groups(const struct trace_group *g, size_t n, uint64_t *total)
{
	if (n > 0 && g == NULL)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (g[i].nframes > 0 && (g[i].frames == NULL || g[i].addrs == NULL))
			return -EINVAL;
		for (uint32_t j = 0; j < g[i].nframes; j++) {
			const struct frame_info *f = g[i].frames[j];
			if (f == NULL || f->filename == NULL || f->function == NULL ||
			    f->module == NULL)
				return -EINVAL;
		}
		*total += g[i].nframes ? g[i].nframes : 1;
	}
	return *total >= NONE ? -E2BIG : 0;
}

/* ---- rendering ---- */

struct sortrec {
	uint64_t k[4]; /* compared in order, descending */
	const struct qstat *st;
	const struct qctx *c;
};

static int stat_key_cmp(const struct qctx *c, const struct qstat *a, const struct qstat *b)
{
	const struct frame_info *const *fa, *const *fb;
	const uint64_t *aa, *ab;
	uint32_t na, nb;
	int r;

	if (c->key != QUERY_KEY_TRACEBACK)
		return key_cmp(c->key, a->rep, b->rep);
	group_frames(a->rep_group, &fa, &aa, &na);
	group_frames(b->rep_group, &fb, &ab, &nb);
	for (uint32_t i = 0; i < na && i < nb; i++)
		if ((r = key_cmp(c->key, fa[i], fb[i])) != 0)
			return r;
	return na < nb ? -1 : na > nb;
}

static int sortrec_cmp(const void *pa, const void *pb)
{
	const struct sortrec *a = pa, *b = pb;

	for (int i = 0; i < 4; i++)
		if (a->k[i] != b->k[i])
			return a->k[i] > b->k[i] ? -1 : 1;
	/* Keys are distinct, so this never returns 0: the order is total. */
	return stat_key_cmp(a->c, a->st, b->st);
}

static uint64_t absdiff(uint64_t a, uint64_t b)
{
	return a >= b ? a - b : b - a;
}

/* "symbols" only when a separate debug file named the frame (frame.h). */
static cJSON *frame_obj(const char *filename, uint32_t lineno, const char *function,
                        const char *module, const char *symbols, uint64_t addr)
{
	char buf[sizeof "0x" + 16];
	cJSON *o = cJSON_CreateObject();

	snprintf(buf, sizeof buf, "0x%" PRIx64, addr);
	cJSON_AddStringToObject(o, "filename", filename);
	cJSON_AddNumberToObject(o, "lineno", lineno);
	cJSON_AddStringToObject(o, "function", function);
	cJSON_AddStringToObject(o, "module", module);
	if (symbols != NULL && symbols[0] != '\0')
		cJSON_AddStringToObject(o, "symbols", symbols);
	cJSON_AddStringToObject(o, "address", buf);
	return o;
}

cJSON *query_frame_json(const struct frame_info *f, uint64_t addr)
{
	if (f == NULL)
		f = &unknown_frame;
	return frame_obj(f->filename, f->lineno, f->function, f->module, f->symbols, addr);
}

static cJSON *stat_traceback_json(const struct qctx *c, const struct qstat *st)
{
	const struct frame_info *const *frames;
	const uint64_t *addrs;
	uint32_t n;
	cJSON *arr = cJSON_CreateArray();

	switch (c->key) {
	case QUERY_KEY_TRACEBACK:
		group_frames(st->rep_group, &frames, &addrs, &n);
		for (uint32_t i = 0; i < n; i++)
			cJSON_AddItemToArray(arr, query_frame_json(frames[i], addrs[i]));
		break;
	case QUERY_KEY_LINENO:
		cJSON_AddItemToArray(arr, query_frame_json(st->rep, st->rep_addr));
		break;
	case QUERY_KEY_FILENAME:
		cJSON_AddItemToArray(arr, frame_obj(key_file(c->key, st->rep), 0, "",
		                                    st->rep->module, st->rep->symbols, 0));
		break;
	case QUERY_KEY_FUNCTION:
	default:
		cJSON_AddItemToArray(arr, frame_obj(key_file(c->key, st->rep), 0, st->rep->function,
		                                    st->rep->module, st->rep->symbols, 0));
		break;
	}
	return arr;
}

/* "name": value and, for a compare, "name_diff"; prefix "total_" for the
 * totals. */
static void add_values(cJSON *o, const char *prefix, const uint64_t v[NV][2], bool diff)
{
	char name[32];

	for (int i = 0; i < NV; i++) {
		snprintf(name, sizeof name, "%s%s", prefix, value_names[i]);
		jsonout_add_u64(o, name, v[i][SIDE_NEW]);
		if (diff) {
			snprintf(name, sizeof name, "%s%s_diff", prefix, value_names[i]);
			cJSON_AddItemToObject(o, name,
			                      jsonout_diff(v[i][SIDE_NEW], v[i][SIDE_OLD]));
		}
	}
}

static cJSON *stat_json(const struct qctx *c, const struct qstat *st, bool diff)
{
	cJSON *o = cJSON_CreateObject();

	add_values(o, "", st->v, diff);
	cJSON_AddItemToObject(o, "traceback", stat_traceback_json(c, st));
	return o;
}

/* The sort keys of a statistic, compared in order, descending. By size (the
 * default) they are tracemalloc's: Statistic._sort_key (size, count) and
 * StatisticDiff._sort_key (abs(size_diff), size, abs(count_diff), count).
 * By another counter X: X then size (top), abs(X_diff), X, abs(size_diff),
 * size (compare); by count, count then size. */
static void sort_keys(const struct qstat *st, enum query_sort by, bool diff, uint64_t k[4])
{
	const uint64_t *x = st->v[by], *sz = st->v[by == QUERY_SORT_SIZE ? V_COUNT : V_SIZE];

	if (diff) {
		k[0] = absdiff(x[SIDE_NEW], x[SIDE_OLD]);
		k[1] = x[SIDE_NEW];
		k[2] = absdiff(sz[SIDE_NEW], sz[SIDE_OLD]);
		k[3] = sz[SIDE_NEW];
	} else {
		k[0] = x[SIDE_NEW];
		k[1] = sz[SIDE_NEW];
		k[2] = 0;
		k[3] = 0;
	}
}

/* Whether a statistic is listed. Sorted by size or count, the statistics
 * are tracemalloc's: of live memory, so one whose blocks were all freed (on
 * both sides, for a compare) is not. Sorted by a count of allocations, any
 * statistic that allocated is. */
static bool listed(const struct qstat *st, enum query_sort by)
{
	int upto = by == QUERY_SORT_SIZE || by == QUERY_SORT_COUNT ? V_COUNT : NV - 1;

	if (st->present == 0)
		return false;
	for (int i = 0; i <= upto; i++)
		if (st->v[i][SIDE_NEW] != 0 || st->v[i][SIDE_OLD] != 0)
			return true;
	return false;
}

/* Sorts the statistics and builds the response. diff selects compare_to's
 * fields and order. */
static cJSON *render(const struct qctx *c, size_t limit, enum query_sort by, bool diff)
{
	struct sortrec *v = xreallocarray(NULL, c->nstat ? c->nstat : 1, sizeof *v);
	size_t nv = 0;
	cJSON *root, *arr;

	for (size_t i = 0; i < c->nstat; i++) {
		const struct qstat *st = &c->stat[i];
		if (!listed(st, by))
			continue;
		sort_keys(st, by, diff, v[nv].k);
		v[nv].st = st;
		v[nv].c = c;
		nv++;
	}
	qsort(v, nv, sizeof *v, sortrec_cmp);

	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "key", key_names[c->key]);
	cJSON_AddBoolToObject(root, "cumulative", c->cumulative);
	cJSON_AddStringToObject(root, "sort_by", value_names[by]);
	add_values(root, "total_", c->total, diff);
	cJSON_AddNumberToObject(root, "count_stats", (double)nv);
	arr = cJSON_AddArrayToObject(root, "stats");
	for (size_t i = 0; i < nv && (limit == 0 || i < limit); i++)
		cJSON_AddItemToArray(arr, stat_json(c, v[i].st, diff));
	free(v);
	return root;
}

/* ---- the first frame outside the runtime ---- */

bool query_runtime_frame(const struct frame_info *f)
{
	static const char *const modules[] = {"libc.so",      "libstdc++.so",  "libc++.so",
	                                      "libc++abi.so", "libgcc_s.so",   "libm.so",
	                                      "ld-linux",     "libpthread.so", "libdl.so"};
	const char *base = f->module != NULL ? strrchr(f->module, '/') : NULL;

	base = base != NULL ? base + 1 : f->module;
	for (size_t i = 0; base != NULL && i < sizeof modules / sizeof modules[0]; i++)
		if (strncmp(base, modules[i], strlen(modules[i])) == 0)
			return true;
	return f->filename != NULL && (strstr(f->filename, "/include/c++/") != NULL ||
	                               strstr(f->filename, "/c++/v1/") != NULL);
}

/* query_runtime_frame, asked once per distinct frame: the groups share
 * frame pointers, and a process's many deep stacks of frames with long file
 * names would otherwise cost a string search per frame of every trace. The
 * memo's values are the frame pointers with the answer in their low bit
 * (frames are aligned). */
_Static_assert(_Alignof(struct frame_info) >= 2, "the memo keeps a bit in a frame pointer");

static bool memo_frame_eq(const void *ctx, uintptr_t val, const void *key)
{
	(void)ctx;
	return (val & ~(uintptr_t)1) == (uintptr_t)key;
}

static bool runtime_memo(struct oaindex *memo, const struct frame_info *f)
{
	uint64_t h = hash_mix((uint64_t)(uintptr_t)f);
	uintptr_t v = oaindex_find(memo, h, memo_frame_eq, NULL, f);

	if (v == OAINDEX_NONE) {
		v = (uintptr_t)f | (query_runtime_frame(f) ? 1u : 0u);
		oaindex_insert(memo, h, v);
	}
	return (v & 1u) != 0;
}

/* The groups with their leading runtime frames left out (a copy pointing
 * into g's arrays), or g itself with raw frames. */
static const struct trace_group *site_groups(const struct trace_group *g, size_t n, bool raw,
                                             struct trace_group **copy)
{
	struct oaindex memo = {0};

	*copy = NULL;
	if (raw || n == 0)
		return g;
	*copy = xreallocarray(NULL, n, sizeof **copy);
	for (size_t i = 0; i < n; i++) {
		uint32_t k = 0;
		while (k < g[i].nframes && runtime_memo(&memo, g[i].frames[k]))
			k++;
		(*copy)[i] = g[i];
		if (k < g[i].nframes) {
			(*copy)[i].frames += k;
			(*copy)[i].addrs += k;
			(*copy)[i].nframes -= k;
		}
	}
	oaindex_close(&memo);
	return *copy;
}

/* ---- API ---- */

int query_key_parse(const char *s, enum query_key *out)
{
	if (s == NULL || out == NULL)
		return -EINVAL;
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(s, key_names[i]) == 0) {
			*out = (enum query_key)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *query_key_name(enum query_key k)
{
	return (unsigned)k < NKEYS ? key_names[k] : NULL;
}

int query_sort_parse(const char *s, enum query_sort *out)
{
	if (s == NULL || out == NULL)
		return -EINVAL;
	for (int i = 0; i < NV; i++) {
		if (strcmp(s, value_names[i]) == 0) {
			*out = (enum query_sort)i;
			return 0;
		}
	}
	return -EINVAL;
}

int query_top(const struct trace_group *g, size_t n, const struct query_opts *o, cJSON **out)
{
	struct qctx c;
	uint64_t nframes = 0;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = check_opts(o, out)) < 0 || (r = check_groups(g, n, &nframes)) < 0)
		goto err;
	struct trace_group *copy;
	const struct trace_group *sg = site_groups(g, n, o->raw_frames, &copy);
	ctx_init(&c, o);
	for (size_t i = 0; i < n; i++)
		account(&c, &sg[i], SIDE_NEW);
	*out = render(&c, o->limit, o->sort_by, false);
	free(copy);
	cJSON_AddStringToObject(*out, "at", o->at_peak ? "peak" : "now");
	ctx_close(&c);
err:
	return r;
}

int query_compare(const struct trace_group *old, size_t nold, const struct trace_group *new_,
                  size_t nnew, const struct query_opts *o, cJSON **out)
{
	struct qctx c;
	uint64_t nframes = 0;
	int r;

	if (out != NULL)
		*out = NULL;
	if ((r = check_opts(o, out)) < 0 || (r = check_groups(old, nold, &nframes)) < 0 ||
	    (r = check_groups(new_, nnew, &nframes)) < 0)
		goto err;
	struct trace_group *copy_old, *copy_new;
	const struct trace_group *so = site_groups(old, nold, o->raw_frames, &copy_old);
	const struct trace_group *sn = site_groups(new_, nnew, o->raw_frames, &copy_new);
	ctx_init(&c, o);
	for (size_t i = 0; i < nold; i++)
		account(&c, &so[i], SIDE_OLD);
	for (size_t i = 0; i < nnew; i++)
		account(&c, &sn[i], SIDE_NEW);
	*out = render(&c, o->limit, o->sort_by, true);
	free(copy_old);
	free(copy_new);
	cJSON_AddStringToObject(*out, "at", o->at_peak ? "peak" : "now");
	ctx_close(&c);
err:
	return r;
}
