/*
 * history.c - a process's memory over time (see history.h).
 */
#include "history.h"

#include <stdlib.h>

#include "xalloc.h"

void history_sample(struct history *h, uint64_t ms, uint64_t current, uint64_t blocks,
                    uint64_t peak)
{
	if (h->n > 0) {
		const struct history_sample *last = history_at(h, h->n - 1);
		if (last->current == current && last->blocks == blocks && last->peak == peak)
			return;
	}
	if (h->n == h->cap && h->cap < HISTORY_SAMPLES) {
		/* Grow, unrolling the ring (it is full, so its oldest is at first). */
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		if (cap > HISTORY_SAMPLES)
			cap = HISTORY_SAMPLES;
		struct history_sample *v = xcalloc(cap, sizeof(*v));
		for (uint32_t i = 0; i < h->n; i++)
			v[i] = *history_at(h, i);
		free(h->v);
		h->v = v;
		h->cap = cap;
		h->first = 0;
	}
	struct history_sample s = {ms, current, blocks, peak};
	if (h->n < h->cap) {
		h->v[(h->first + h->n) % h->cap] = s;
		h->n++;
	} else {
		/* Full at HISTORY_SAMPLES: the oldest goes. */
		h->v[h->first] = s;
		h->first = (h->first + 1) % h->cap;
	}
}

const struct history_sample *history_at(const struct history *h, uint32_t i)
{
	return &h->v[(h->first + i) % h->cap];
}

size_t history_memory(const struct history *h)
{
	return (size_t)h->cap * sizeof(*h->v);
}

void history_free(struct history *h)
{
	free(h->v);
	h->v = NULL;
	h->cap = h->n = h->first = 0;
}
