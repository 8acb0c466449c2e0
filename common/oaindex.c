/* oaindex.c - growing the open-addressing index (see oaindex.h). */
#include "oaindex.h"

#include <stdlib.h>

#include "xalloc.h"

/* The smallest table: small enough to cost nothing, large enough that the
 * typical small index never rehashes. */
#define MIN_CAP 64

/* Puts val at the end of hash's probe chain; the table has a free slot. */
static void place(struct oaindex_slot *slot, size_t mask, uint64_t hash, uintptr_t val)
{
	size_t i = (size_t)hash & mask;

	while (slot[i].val != OAINDEX_NONE)
		i = (i + 1) & mask;
	slot[i].hash = hash;
	slot[i].val = val;
}

/* Moves every value into a new table of cap slots. */
static void rehash(struct oaindex *x, size_t cap)
{
	struct oaindex_slot *slot = xreallocarray(NULL, cap, sizeof(*slot));

	for (size_t i = 0; i < cap; i++)
		slot[i].val = OAINDEX_NONE;
	if (x->slot != NULL) {
		for (size_t i = 0; i <= x->mask; i++)
			if (x->slot[i].val != OAINDEX_NONE)
				place(slot, cap - 1, x->slot[i].hash, x->slot[i].val);
		free(x->slot);
	}
	x->slot = slot;
	x->mask = cap - 1;
}

void oaindex_reserve(struct oaindex *x, size_t n)
{
	size_t cap = x->slot != NULL ? x->mask + 1 : 0;
	size_t want = cap != 0 ? cap : MIN_CAP;

	while (want / 2 < n)
		want *= 2;
	if (want != cap)
		rehash(x, want);
}

void oaindex_close(struct oaindex *x)
{
	free(x->slot);
	x->slot = NULL;
	x->mask = 0;
	x->len = 0;
}

void oaindex_insert(struct oaindex *x, uint64_t hash, uintptr_t val)
{
	oaindex_reserve(x, x->len + 1);
	place(x->slot, x->mask, hash, val);
	x->len++;
}

uintptr_t oaindex_next(const struct oaindex *x, size_t *pos)
{
	if (x->slot == NULL)
		return OAINDEX_NONE;
	while (*pos <= x->mask) {
		uintptr_t v = x->slot[(*pos)++].val;
		if (v != OAINDEX_NONE)
			return v;
	}
	return OAINDEX_NONE;
}
