/*
 * modmap.h - a traced process's module map: which object is mapped at which
 * addresses, as its agent's MODULE frames said.
 *
 * The map holds non-overlapping address ranges [lo, hi), each with the
 * object's path, load bias and build-id. A new range replaces every range
 * it overlaps (those objects were unloaded); an identical entry is kept as
 * it is. The agent decides how many entries come and in what order, so
 * every operation is O(log n) expected in the entries held, whatever the
 * addresses: the map is a treap ordered by lo, whose priorities come from
 * a key drawn at random for each map, so no order of arrival can make it
 * degenerate. Each overlapped entry is removed once, paid for by its own
 * insertion.
 *
 * Bounded: at most `max` entries and `max_path_bytes` of paths. An entry
 * past either bound is not kept: modmap_add says so (-ENOSPC) and counts
 * it in `dropped`; addresses in it then resolve to no module (they print
 * as bare addresses). The caller logs it, once.
 *
 * Paths are copied; nothing passed in is kept. Loop thread only (one map
 * per session); modmap_array's copies and modmap_share's snapshots may go
 * to other threads. A snapshot is made at most once per change of the map,
 * so captures of a process whose modules do not change copy nothing.
 */
#ifndef MEMTRACE_MODMAP_H
#define MEMTRACE_MODMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Defaults of the bounds (per process). */
#define MODMAP_DEFAULT_MAX        8192
#define MODMAP_DEFAULT_PATH_BYTES ((size_t)2 << 20)

struct modmap_entry {
	uint64_t bias, lo, hi;
	char *path;
	uint8_t build_id[PROTO_MAX_BUILD_ID];
	uint32_t build_id_len;
};

struct modmap_node;

/* The entries at one moment, in address order, in one allocation with
 * their paths: what a capture needs, shared by every capture until the map
 * changes (modmap_share). Immutable; its count is atomic, so any thread
 * may give it back. */
struct modmap_snap {
	_Atomic unsigned refs;
	size_t n, bytes; /* entries; the allocation's size */
	struct modmap_entry v[];
};

struct modmap {
	struct modmap_node *root;
	size_t n;          /* entries held */
	size_t path_bytes; /* their paths, NULs included */
	size_t max, max_path_bytes;
	uint64_t dropped;         /* entries not kept for the bounds */
	bool warned;              /* the caller logged a drop (once per map) */
	uint64_t key;             /* the priorities' */
	uint64_t seq;             /* entries ever inserted: the priorities' input */
	struct modmap_snap *snap; /* the entries as they are, once asked; NULL after a change */
};

/* Caller owns *m. max and max_path_bytes of 0 mean the defaults. */
void modmap_init(struct modmap *m, size_t max, size_t max_path_bytes);
/* Frees every entry; m is empty (and still usable) afterwards. */
void modmap_close(struct modmap *m);

/* Adds e (lo < hi; path of path_len bytes, not NUL-terminated): 1 when it
 * was added, 0 when an identical entry was there already (nothing
 * changes), -ENOSPC when a bound kept it out (what it overlapped is gone
 * all the same: those objects were unloaded). */
int modmap_add(struct modmap *m, uint64_t bias, uint64_t lo, uint64_t hi, const char *path,
               size_t path_len, const uint8_t *build_id, uint32_t build_id_len);
/* The entry whose range holds addr, or NULL. Valid until the next change. */
const struct modmap_entry *modmap_find(const struct modmap *m, uint64_t addr);
/* dst (initialised, empty) gets a copy of every entry of src and src's
 * bounds. */
void modmap_copy(struct modmap *dst, const struct modmap *src);
/* The entries in address order, as a new array of m->n copies whose paths
 * are new strings (free each, then the array; modmap_array_free). */
struct modmap_entry *modmap_array(const struct modmap *m);
void modmap_array_free(struct modmap_entry *v, size_t n);
/* The entries as they are, shared: O(1) but after a change (then O(entries
 * + path bytes), once). Give it back with modmap_snap_unref, on any
 * thread. */
struct modmap_snap *modmap_share(struct modmap *m);
void modmap_snap_unref(struct modmap_snap *s); /* NULL is a no-op */
/* Bytes the map holds (nodes and paths). */
size_t modmap_memory(const struct modmap *m);
/* The entry holding addr in an array sorted by lo (modmap_array's), or
 * NULL. */
const struct modmap_entry *modmap_array_find(const struct modmap_entry *v, size_t n, uint64_t addr);
/* Depth of the tree: for tests that check it stays logarithmic. */
size_t modmap_depth(const struct modmap *m);

#endif
