/*
 * oaindex.h - an open-addressing hash index from a hash to a caller's value.
 *
 * The index stores nothing of the keys: a slot holds the key's full 64-bit
 * hash and a value, which is either an index into an array the caller owns or
 * a pointer to an object the caller owns. Equality is the caller's too, through
 * a callback that gets a context pointer, the stored value and the key sought,
 * so one index serves every kind of key (interned strings, frames by content,
 * database ids) without copying any of them. The full hash is compared before
 * the callback is called, so the callback mostly confirms a match.
 *
 * Linear probing over a power-of-two capacity, kept at most half full, so
 * probes stay short and a free slot always ends a search. Values are never
 * deleted; the index grows by doubling, which keeps building an index of n
 * values linear in n.
 *
 * A zero-initialised struct oaindex is a valid empty index; oaindex_close
 * frees it and makes it empty again. Memory comes from xalloc.h, which aborts
 * when it runs out: this is for the daemon, the client and the analysis
 * library, never for the agent. The index takes no lock; a caller that shares
 * one between threads guards it.
 */
#ifndef MEMTRACE_COMMON_OAINDEX_H
#define MEMTRACE_COMMON_OAINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of a free slot: no caller value (index or pointer) can be this. */
#define OAINDEX_NONE UINTPTR_MAX

struct oaindex_slot {
	uint64_t hash;
	uintptr_t val; /* OAINDEX_NONE when free */
};

struct oaindex {
	struct oaindex_slot *slot; /* NULL until the first insert */
	size_t mask;               /* capacity - 1 */
	size_t len;                /* values stored */
};

/* Whether the caller's value `val` has the key `key`. */
typedef bool (*oaindex_eq_fn)(const void *ctx, uintptr_t val, const void *key);

/* Makes room for n values in all, so that inserting up to n does not grow. */
void oaindex_reserve(struct oaindex *x, size_t n);
/* Frees the slots (not the values) and leaves x empty. */
void oaindex_close(struct oaindex *x);
/* Adds val (not OAINDEX_NONE) under hash. The caller has checked that no
 * value with an equal key is present. */
void oaindex_insert(struct oaindex *x, uint64_t hash, uintptr_t val);
/* Iteration in slot order: the first value at or after slot *pos, or
 * OAINDEX_NONE at the end; *pos moves past it. Start with *pos = 0. */
uintptr_t oaindex_next(const struct oaindex *x, size_t *pos);

/* The value stored under hash whose key eq finds equal to key, or
 * OAINDEX_NONE. Inline, so that the caller's eq is inlined into the probe
 * loop of every lookup site. */
static inline uintptr_t oaindex_find(const struct oaindex *x, uint64_t hash, oaindex_eq_fn eq,
                                     const void *ctx, const void *key)
{
	if (x->slot == NULL)
		return OAINDEX_NONE;
	for (size_t i = (size_t)hash & x->mask; x->slot[i].val != OAINDEX_NONE;
	     i = (i + 1) & x->mask) {
		if (x->slot[i].hash == hash && eq(ctx, x->slot[i].val, key))
			return x->slot[i].val;
	}
	return OAINDEX_NONE;
}

#endif
