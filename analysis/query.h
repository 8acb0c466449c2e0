/*
 * query.h - tracemalloc's Snapshot.statistics() and compare_to() over a set of
 * traces.
 *
 * The input is a list of trace groups: one per distinct stack, with its live
 * size and count and its symbolized frames, most recent call first. The
 * caller (the daemon, from the live heap or a stored snapshot, and
 * memtracectl, from snapshot files and for every compare) builds
 * that list; this module filters, groups by key, sorts and renders the JSON
 * that memtracectl prints. It owns nothing it is given, keeps no pointer past
 * the call and touches no global state, so it runs on any thread. Like
 * snapshot.h it relies on xalloc_cjson_hooks: no cJSON call here is checked.
 *
 * Semantics follow tracemalloc exactly:
 *  - key lineno groups by the most recent frame's (filename, lineno);
 *    filename by its filename (lineno printed as 0); function by its
 *    (function, filename) (lineno 0); traceback by the whole stack.
 *  - cumulative counts a trace in every distinct frame of its traceback
 *    (each key once per trace); not allowed with key traceback (-EINVAL).
 *  - filters are tracemalloc.Filter: fnmatch on the filename; with
 *    all_frames any frame may match, else the most recent frame; a trace is
 *    kept when it matches at least one inclusive filter (if there is any) and
 *    no exclusive filter.
 *  - statistics are sorted by size, then count, descending; compare by
 *    abs(size_diff), size, abs(count_diff), count, descending; ties are broken
 *    by the key's text so the output is deterministic. sort_by another
 *    counter X sorts by X, then size (compare: abs(X_diff), X,
 *    abs(size_diff), size).
 *  - the totals are the sums over the filtered traces (not over the
 *    cumulative statistics).
 *  - beyond tracemalloc, every statistic carries allocations and allocated
 *    (calls and bytes since tracing began) and temporary (of them, blocks
 *    freed before their thread's next allocation: heaptrack's temporary).
 */
#ifndef MEMTRACE_QUERY_H
#define MEMTRACE_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "frame.h"

struct trace_group {
	const struct frame_info *const *frames; /* nframes entries, most recent first */
	const uint64_t *addrs;                  /* absolute address of each frame */
	uint32_t nframes;                       /* may be 0: traceback unknown */
	uint64_t size;                          /* live bytes */
	uint64_t count;                         /* live blocks */
	uint64_t allocations;                   /* allocations since tracing began */
	uint64_t allocated;                     /* their bytes */
	uint64_t temporary;                     /* of them, freed before the thread's next one */
};

enum query_key {
	QUERY_KEY_LINENO,
	QUERY_KEY_FILENAME,
	QUERY_KEY_FUNCTION,
	QUERY_KEY_TRACEBACK,
};

struct query_filter {
	const char *pattern; /* fnmatch(3) pattern on the frame's filename */
	bool inclusive;
	bool all_frames;
};

/* What the statistics are sorted by (query_top, query_compare). */
enum query_sort {
	QUERY_SORT_SIZE, /* the default: tracemalloc's order */
	QUERY_SORT_COUNT,
	QUERY_SORT_ALLOCATIONS,
	QUERY_SORT_ALLOCATED,
	QUERY_SORT_TEMPORARY,
};

struct query_opts {
	enum query_key key;
	enum query_sort sort_by;
	/* The sizes and counts of the moment of the peak instead of now: for
	 * the callers that build the groups (snapshot_groups); query.c only
	 * says so in its answer ("at"). */
	bool at_peak;
	/* The frames as captured. Without it (the default) a traceback starts
	 * at its first frame outside the C and C++ runtime (query_runtime_frame),
	 * so that the site of a block a std::vector or std::string allocated is
	 * the program's line that used it; a traceback all of the runtime is
	 * kept whole. */
	bool raw_frames;
	bool cumulative;
	const struct query_filter *filters;
	size_t nfilters;
	size_t limit; /* max "stats" entries; 0 = all */
};

/* "lineno" -> QUERY_KEY_LINENO ...; -EINVAL for anything else. */
int query_key_parse(const char *s, enum query_key *out);
const char *query_key_name(enum query_key k);
/* "size" -> QUERY_SORT_SIZE ...; -EINVAL for anything else. */
int query_sort_parse(const char *s, enum query_sort *out);

/* {"key", "cumulative", "sort_by", "total_size", "total_count",
 *  "total_allocations", "total_allocated", "total_temporary", "count_stats",
 *  "stats": [{"size", "count", "allocations", "allocated", "temporary",
 *             "traceback": [frame...]}]}
 * where count_stats is the number of statistics before the limit and a frame
 * is {"filename", "lineno", "function", "module", "address": "0x..."}.
 * Sorted by size or count, statistics without live blocks are left out
 * (tracemalloc's statistics are of live memory); sorted by allocations,
 * allocated or temporary, every statistic that allocated is listed.
 * Returns 0 and a new object in *out, or -EINVAL for bad options. */
int query_top(const struct trace_group *g, size_t n, const struct query_opts *o, cJSON **out);

/* {"key", "cumulative", "sort_by", "total_X" and "total_X_diff" for each
 *  counter X of query_top, "count_stats",
 *  "stats": [{"size", "size_diff", "count", "count_diff", "allocations",
 *             "allocations_diff", "allocated", "allocated_diff", "temporary",
 *             "temporary_diff", "traceback"}]}
 * old = the earlier snapshot, new = the later one (tracemalloc's
 * new.compare_to(old)). */
int query_compare(const struct trace_group *old, size_t nold, const struct trace_group *new_,
                  size_t nnew, const struct query_opts *o, cJSON **out);

/* Whether f is of the C or C++ runtime: code of libc, libstdc++, libc++,
 * libgcc_s, libm or the dynamic loader (by the module's file name), or a
 * standard library header's code inlined or instantiated elsewhere (a file
 * under include/c++/). */
bool query_runtime_frame(const struct frame_info *f);

/* One frame as JSON (also used for the traceback command). */
cJSON *query_frame_json(const struct frame_info *f, uint64_t addr);

#endif
