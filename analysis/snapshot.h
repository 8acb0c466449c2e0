/*
 * snapshot.h - tracemalloc's Snapshot: a process's live heap statistics at one
 * moment, symbolized and self-contained.
 *
 * A snapshot holds the process identity, its counters, one trace per distinct
 * stack that allocated since tracing began (live size and count, total
 * allocations and bytes allocated, temporary allocations, traceback as
 * indexes into a table of distinct frames, with each frame's absolute
 * address) and the largest live blocks. It needs nothing else to be read: no binary, no
 * symbol file, no daemon. The daemon builds snapshots from sessions
 * (capture.c), stores them in SQLite (store.c) and sends them to clients as
 * JSON; memtracectl reads the same JSON from files (`snapshot -o FILE`) and
 * computes statistics and comparisons from it with query.c.
 *
 * The JSON document (the snapshot file format, version 4):
 *   {"format": "memtrace-snapshot", "version": 4,
 *    "snapshot": {"id", "pid", "uid", "exe", "cmdline": [str], "start_time",
 *                 "taken_at", "reason", "current", "peak", "blocks",
 *                 "allocations", "frees", "lost_events"},
 *    "frames": [[filename, lineno, function, module(, symbols)], ...],
 *    "traces": [[size, count, allocations, allocated, temporary, peak_size,
 *                peak_count, [frame index...], [address...]], ...],
 *    "largest": [[address, size, trace index], ...]}
 * A trace's size and count are 0 when all its blocks were freed; peak_size
 * and peak_count are what it held at the moment of the process's peak.
 * Version 1 wrote [size, count, allocations, [frame index...],
 * [address...]] and only traces with live blocks, version 2 [size, count,
 * allocations, allocated, temporary, [frame index...], [address...]]; both
 * are still read, what they lack as 0. A frame's fifth element, since
 * version 4, is the separate debug file whose symbols named it (frame.h's
 * `symbols`), present only when one did; versions 1 to 3 have four. A
 * document none of whose frames has one is written as version 3.
 * Frames of a trace are most recent call first; "id" is 0 for a snapshot that
 * was never stored (compare live:PID). "snapshot" may also hold
 * "sample_bytes": the process was sampled every that many bytes on average
 * (MEMTRACE_SAMPLE), so sizes and counts are estimates and the largest
 * blocks are sampled ones. It is optional, written only when not 0 (every
 * allocation traced). Readers ignore keys they do not know; a version they
 * do not know they refuse, with a message that names it.
 *
 * Ownership: a struct snapshot owns all its strings and arrays;
 * snapshot_free releases them. Nothing here touches global state, so any
 * thread may use it. The JSON is built unchecked: every program that links
 * this installs xalloc_cjson_hooks first, so cJSON aborts instead of
 * returning NULL when memory runs out.
 */
#ifndef MEMTRACE_SNAPSHOT_H
#define MEMTRACE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "frame.h"
#include "query.h"

#define SNAPSHOT_FORMAT  "memtrace-snapshot"
#define SNAPSHOT_VERSION 4

struct snapshot_trace {
	uint64_t size;        /* live bytes */
	uint64_t count;       /* live blocks */
	uint64_t allocations; /* total allocations from this stack */
	uint64_t allocated;   /* and their bytes */
	uint64_t temporary;   /* of them, temporary (freed before the thread's next allocation) */
	uint64_t peak_size;   /* live bytes at the moment of the process's peak */
	uint64_t peak_count;  /* live blocks then */
	uint32_t nframes;
	uint32_t *frames; /* indexes into snapshot.frames */
	uint64_t *addrs;  /* absolute address of each frame */
};

struct snapshot_block {
	uint64_t addr;
	uint64_t size;
	uint32_t trace; /* index into snapshot.traces */
};

struct snapshot {
	int64_t id; /* store id, 0 if not stored */
	pid_t pid;
	uid_t uid;
	uint64_t start_time; /* clock ticks since boot, /proc/PID/stat field 22 */
	char *exe;
	char **argv;     /* NULL-terminated */
	double taken_at; /* seconds since the epoch */
	char reason[16]; /* "periodic", "manual", "exit", "detach", "shutdown", "live" */
	uint64_t current, peak, blocks, allocations, frees, lost_events;
	uint64_t sample_bytes;     /* 0 = every allocation; else the figures are estimates */
	struct frame_info *frames; /* distinct; strings owned; caller unused (NULL) */
	size_t nframes;
	struct snapshot_trace *traces;
	size_t ntraces;
	struct snapshot_block *largest; /* by size, descending */
	size_t nlargest;
	void *index; /* private to snapshot.c: snapshot_intern_frame's index */
};

struct snapshot *snapshot_new(void);    /* zeroed */
void snapshot_free(struct snapshot *s); /* NULL is a no-op */

/* Adds a frame (copying its strings) unless an equal one (same filename,
 * lineno, function, module) is there; returns its index. Uses an internal
 * index, so building a snapshot of many frames stays linear. */
uint32_t snapshot_intern_frame(struct snapshot *s, const struct frame_info *f);

/* The JSON document above; never NULL, since cJSON allocates through xmalloc
 * and aborts when memory runs out (xalloc_cjson.h). Integers of 16
 * digits and more are cJSON raw items (exact decimal text; cJSON would print
 * them as doubles with 15 digits), so code that reads numbers from the tree
 * instead of its text must accept cJSON_IsRaw. Strings longer than 64 KiB
 * and command line arguments past the 65536th are clipped, so that
 * snapshot_from_json always takes what this writes. */
cJSON *snapshot_to_json(const struct snapshot *s);
/* Parses and validates a document (every index in range, every field of the
 * right type, integers non-negative and in range, at most 2^24 frames,
 * traces and largest blocks, 256 frames per trace, "largest" sorted, strings
 * of at most 64 KiB, "reason" of at most 15 bytes). Unknown keys are
 * ignored. 0, or -EINVAL with a message in err (errlen bytes) that names
 * the place: "traces[3]: frame index 17 out of range (12 frames)". */
int snapshot_from_json(const cJSON *doc, struct snapshot **out, char *err, size_t errlen);
/* The snapshot file: write (atomically, via PATH.tmpXXXXXX in the same
 * directory, fsync and rename; mode 0644 less the umask) and read (at most
 * 1 GiB, else -EFBIG). 0 or -errno; on -EINVAL err says what is wrong with
 * the file; for other errors it holds strerror's text. */
int snapshot_write_file(const struct snapshot *s, const char *path);
int snapshot_read_file(const char *path, struct snapshot **out, char *err, size_t errlen);

/* Trace groups for query_top/query_compare. The groups point into *s and
 * into *storage (free it with free() after use). */
struct trace_group *snapshot_groups(const struct snapshot *s, bool at_peak, void **storage,
                                    size_t *ngroups);

/* Which snapshot an answer comes from: {"id", "taken_at", "reason"}. */
cJSON *snapshot_ref_json(const struct snapshot *s);
/* The "sampled" member every answer about a snapshot has: null when every
 * allocation was traced, else {"rate": sample_bytes}, saying its figures
 * are estimates. */
cJSON *snapshot_sampled_json(uint64_t sample_bytes);
/* The "top" answer, live or stored alike: {"pid", "snapshot": the ref (only
 * when with_ref), "sampled", then query_top's members}. 0 with a new object in *out, or
 * query_top's -EINVAL for bad options (*out NULL). */
int snapshot_top_json(const struct snapshot *s, const struct query_opts *o, bool with_ref,
                      cJSON **out);
/* The "stats" answer for a snapshot: like the live one, plus "snapshot":
 * {"id", "taken_at", "reason"}; "sampled" has no "samples" (not stored). */
cJSON *snapshot_stats_json(const struct snapshot *s);
/* The "traceback" answer: {"pid", "snapshot", "sampled", "blocks"}, the
 * largest blocks (at most limit, 0 = all). */
cJSON *snapshot_traceback_json(const struct snapshot *s, size_t limit);
/* memtracectl where: {"pid", "address", "block": {"address", "size",
 * "offset", "traceback"}, "sampled"} of the snapshot's one block (a
 * capture_take_where), or NULL when it has none (no live block holds
 * addr). */
cJSON *snapshot_where_json(const struct snapshot *s, uint64_t addr);
/* The "snapshots" list entry: {"id", "pid", "exe", "taken_at", "reason",
 * "current", "peak", "blocks", "sampled"}. */
cJSON *snapshot_summary_json(const struct snapshot *s);

#endif
