/* heap.c - the live heap model (see heap.h). */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "hash.h"
#include "sampling.h"
#include "xalloc.h"

#define SIZE_BITS          40
#define SIZE_BIG           HEAP_SIZE_BIG
#define DEFAULT_MAX_BLOCKS ((size_t)64 << 20)
#define DEFAULT_MAX_STACKS ((size_t)1 << 20)
#define MIN_CAP            1024
#define MIN_BIG_CAP        16

/* A key nobody else knows: from the kernel, else (very early boot) from
 * what differs between runs and heaps. */
static uint64_t random_key(const void *salt)
{
	uint64_t k = 0;
	if (getrandom(&k, sizeof(k), GRND_NONBLOCK) == (ssize_t)sizeof(k))
		return k;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return hash_mix((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uintptr_t)salt);
}

/* Every address bit reaches every bit of the result (splitmix64's
 * finalizer), and the key decides where: without it an agent could not
 * tell which addresses share a slot. */
static inline size_t home(const struct heap *h, uint64_t addr, size_t cap)
{
	return (size_t)hash_mix(addr ^ h->key) & (cap - 1);
}

size_t heap_home(const struct heap *h, uint64_t addr, size_t cap)
{
	return home(h, addr, cap);
}

void heap_init_keyed(struct heap *h, size_t max_blocks, size_t max_stacks, uint64_t key)
{
	memset(h, 0, sizeof(*h));
	h->key = key;
	h->max_blocks = max_blocks ? max_blocks : DEFAULT_MAX_BLOCKS;
	h->max_stacks = max_stacks ? max_stacks : DEFAULT_MAX_STACKS;
	if (h->max_stacks > HEAP_MAX_STACK_ID)
		h->max_stacks = HEAP_MAX_STACK_ID;
	h->cap = MIN_CAP;
	h->slots = xcalloc(h->cap, sizeof(*h->slots));
	/* id 0: the unknown stack */
	h->nstacks = 1;
	h->stacks = xcalloc(1, sizeof(*h->stacks));
	h->stacks[0].defined = 1;
}

void heap_init(struct heap *h, size_t max_blocks, size_t max_stacks)
{
	heap_init_keyed(h, max_blocks, max_stacks, random_key(h));
}

void heap_close(struct heap *h)
{
	if (h->stacks != NULL)
		for (uint32_t i = 0; i < h->nstacks; i++)
			free(h->stacks[i].frames);
	free(h->stacks);
	free(h->slots);
	free(h->big);
	memset(h, 0, sizeof(*h));
}

void heap_clone(struct heap *dst, const struct heap *src)
{
	*dst = *src;
	dst->slots = xmemdup(src->slots, src->cap * sizeof(*src->slots));
	dst->big = src->bigcap > 0 ? xmemdup(src->big, src->bigcap * sizeof(*src->big)) : NULL;
	dst->stacks = xmemdup(src->stacks, src->nstacks * sizeof(*src->stacks));
	for (uint32_t i = 0; i < src->nstacks; i++)
		if (src->stacks[i].frames != NULL)
			dst->stacks[i].frames = xmemdup(src->stacks[i].frames,
			                                src->stacks[i].nframes * sizeof(uint64_t));
}

/* ---- one open-addressing table (the blocks, or the big sizes) ---- */

/* The slot holding addr, or SIZE_MAX. */
static size_t tab_find(struct heap *h, const struct heap_block *slots, size_t cap, uint64_t addr)
{
	if (cap == 0)
		return SIZE_MAX;
	size_t i = home(h, addr, cap);
	for (;;) {
		h->probes++;
		if (slots[i].addr == 0)
			return SIZE_MAX;
		if (slots[i].addr == addr)
			return i;
		i = (i + 1) & (cap - 1);
	}
}

/* The free slot that ends addr's probe chain. */
static size_t tab_free_slot(struct heap *h, const struct heap_block *slots, size_t cap,
                            uint64_t addr)
{
	size_t i = home(h, addr, cap);
	for (;;) {
		h->probes++;
		if (slots[i].addr == 0)
			return i;
		i = (i + 1) & (cap - 1);
	}
}

/* A table of cap slots holding what old held. */
static struct heap_block *tab_rehash(struct heap *h, struct heap_block *old, size_t oldcap,
                                     size_t cap)
{
	struct heap_block *slots = xcalloc(cap, sizeof(*slots));
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].addr != 0)
			slots[tab_free_slot(h, slots, cap, old[i].addr)] = old[i];
	free(old);
	return slots;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void tab_remove(struct heap *h, struct heap_block *slots, size_t cap, size_t i)
{
	size_t mask = cap - 1, j = i;
	for (;;) {
		j = (j + 1) & mask;
		h->probes++;
		if (slots[j].addr == 0)
			break;
		size_t k = home(h, slots[j].addr, cap);
		/* Move j into the hole at i if its home k is not in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			slots[i] = slots[j];
			i = j;
		}
	}
	slots[i].addr = 0;
	slots[i].meta = 0;
}

/* The smallest power of two at least 16 that holds n at 3/4 load. */
static size_t cap_for(size_t n, size_t min)
{
	size_t cap = min;
	while (n * 4 > cap * 3)
		cap *= 2;
	return cap;
}

static void grow(struct heap *h)
{
	h->slots = tab_rehash(h, h->slots, h->cap, h->cap * 2);
	h->cap *= 2;
}

void heap_trim(struct heap *h)
{
	size_t cap = cap_for(h->count, 16);
	if (cap < h->cap) {
		h->slots = tab_rehash(h, h->slots, h->cap, cap);
		h->cap = cap;
	}
	if (h->nbig == 0) {
		free(h->big);
		h->big = NULL;
		h->bigcap = 0;
	} else if ((cap = cap_for(h->nbig, MIN_BIG_CAP)) < h->bigcap) {
		h->big = tab_rehash(h, h->big, h->bigcap, cap);
		h->bigcap = cap;
	}
	/* Only stacks that hold live blocks are ever read again. */
	uint32_t keep = 1;
	for (uint32_t i = 1; i < h->nstacks; i++) {
		struct heap_stack *s = &h->stacks[i];
		if (s->live_count != 0 || s->live_count_frac != 0) {
			keep = i + 1;
			continue;
		}
		free(s->frames);
		s->frames = NULL;
		s->nframes = 0;
	}
	if (keep < h->nstacks) {
		h->stacks = xreallocarray(h->stacks, keep, sizeof(*h->stacks));
		h->nstacks = keep;
	}
}

static size_t find(const struct heap *h, uint64_t addr)
{
	/* Lookups count their probes too; the count is not part of the model. */
	return tab_find((struct heap *)h, h->slots, h->cap, addr);
}

static void remove_at(struct heap *h, size_t i)
{
	tab_remove(h, h->slots, h->cap, i);
	h->count--;
}

/* Keeps the exact size of a block of SIZE_BIG bytes or more. */
static void big_put(struct heap *h, uint64_t addr, uint64_t size)
{
	if ((h->nbig + 1) * 4 > h->bigcap * 3) {
		size_t cap = h->bigcap ? h->bigcap * 2 : MIN_BIG_CAP;
		h->big = tab_rehash(h, h->big, h->bigcap, cap);
		h->bigcap = cap;
	}
	size_t i = tab_free_slot(h, h->big, h->bigcap, addr);
	h->big[i].addr = addr;
	h->big[i].meta = size;
	h->nbig++;
}

static uint64_t big_take(struct heap *h, uint64_t addr)
{
	size_t i = tab_find(h, h->big, h->bigcap, addr);
	if (i == SIZE_MAX)
		return SIZE_BIG;
	uint64_t s = h->big[i].meta;
	tab_remove(h, h->big, h->bigcap, i);
	h->nbig--;
	return s;
}

static uint64_t big_size(const struct heap *h, uint64_t addr)
{
	size_t i = tab_find((struct heap *)h, h->big, h->bigcap, addr);
	return i == SIZE_MAX ? SIZE_BIG : h->big[i].meta;
}

static uint64_t block_size(const struct heap *h, const struct heap_block *b)
{
	uint64_t s = b->meta & SIZE_BIG;
	return s == SIZE_BIG ? big_size(h, b->addr) : s;
}

void heap_set_sampling(struct heap *h, uint64_t rate)
{
	h->sample_bytes = rate;
}

/* Removes the live block at slot i from every statistic: its weight is
 * computed from the size it was inserted with, so exactly what
 * apply_alloc added is subtracted. Its weight is left in *w. */
static void release(struct heap *h, size_t i, struct sampling_weight *w)
{
	const struct heap_block *b = &h->slots[i];
	uint64_t size = b->meta & SIZE_BIG;
	uint32_t stack = (uint32_t)(b->meta >> SIZE_BITS);

	if (size == SIZE_BIG)
		size = big_take(h, b->addr);
	sampling_weight(size, h->sample_bytes, w);
	struct heap_stack *s = &h->stacks[stack];
	sampling_sub(&s->live_bytes, &s->live_bytes_frac, w->bytes);
	sampling_sub(&s->live_count, &s->live_count_frac, w->count);
	sampling_sub(&h->current, &h->current_frac, w->bytes);
	sampling_sub(&h->blocks, &h->blocks_frac, w->count);
	remove_at(h, i);
}

int heap_define_stack(struct heap *h, uint32_t id, const uint64_t *frames, uint32_t n)
{
	if (id == 0 || n == 0 || n > PROTO_MAX_FRAMES)
		return -EBADMSG;
	if (id < h->nstacks && h->stacks[id].defined)
		return -EBADMSG;
	if (id > h->max_stacks || h->ndefined >= h->max_stacks) {
		h->limit_reached |= HEAP_LIMIT_STACKS;
		return 0;
	}
	if (id >= h->nstacks) {
		uint32_t ncap = h->nstacks;
		while (ncap <= id)
			ncap = ncap < 1024 ? 1024 : ncap * 2;
		h->stacks = xreallocarray(h->stacks, ncap, sizeof(*h->stacks));
		memset(h->stacks + h->nstacks, 0, (ncap - h->nstacks) * sizeof(*h->stacks));
		h->nstacks = ncap;
	}
	struct heap_stack *s = &h->stacks[id];
	s->frames = xmalloc(n * sizeof(*frames));
	memcpy(s->frames, frames, n * sizeof(*frames));
	s->nframes = n;
	s->defined = 1;
	h->ndefined++;
	return 0;
}

static int apply_alloc(struct heap *h, const struct proto_event *ev)
{
	uint32_t stack = ev->stack_id;

	if (stack != 0) {
		if (stack >= h->nstacks || !h->stacks[stack].defined) {
			/* Past max_stacks the agent's id was dropped on purpose. */
			if (!(h->limit_reached & HEAP_LIMIT_STACKS))
				return -EBADMSG;
			stack = 0;
		}
	}
	struct sampling_weight w, old;
	sampling_weight(ev->size, h->sample_bytes, &w);
	struct heap_stack *s = &h->stacks[stack];
	sampling_add(&s->total_allocs, &s->total_allocs_frac, w.count);
	sampling_add(&s->total_bytes, &s->total_bytes_frac, w.bytes);
	sampling_add(&h->allocations, &h->allocations_frac, w.count);

	size_t i = find(h, ev->addr);
	if (i != SIZE_MAX) {
		/* A free we never saw (e.g. a block allocated before tracing
		 * began was freed untraced): the old block is gone. */
		h->replaced++;
		release(h, i, &old);
	}
	if (h->count >= h->max_blocks) {
		h->limit_reached |= HEAP_LIMIT_BLOCKS;
		return 0;
	}
	if ((h->count + 1) * 4 > h->cap * 3)
		grow(h);
	i = tab_free_slot(h, h->slots, h->cap, ev->addr);
	uint64_t size = ev->size;
	if (size >= SIZE_BIG) {
		big_put(h, ev->addr, size);
		size = SIZE_BIG;
	}
	h->slots[i].addr = ev->addr;
	h->slots[i].meta = (uint64_t)stack << SIZE_BITS | size;
	h->count++;
	sampling_add(&s->live_bytes, &s->live_bytes_frac, w.bytes);
	sampling_add(&s->live_count, &s->live_count_frac, w.count);
	sampling_add(&h->current, &h->current_frac, w.bytes);
	sampling_add(&h->blocks, &h->blocks_frac, w.count);
	if (h->current > h->peak)
		h->peak = h->current;
	return 0;
}

int heap_apply(struct heap *h, const struct proto_event *ev)
{
	if (ev->seq <= h->last_seq)
		return -EBADMSG;
	h->last_seq = ev->seq;
	if (ev->kind == PROTO_EV_ALLOC)
		return apply_alloc(h, ev);
	if (ev->kind != PROTO_EV_FREE)
		return -EBADMSG;
	size_t i = find(h, ev->addr);
	if (i == SIZE_MAX) {
		h->unknown_frees++;
		return 0;
	}
	struct sampling_weight w;
	release(h, i, &w);
	sampling_add(&h->frees, &h->frees_frac, w.count);
	return 0;
}

void heap_reset_peak(struct heap *h)
{
	h->peak = h->current;
}

int heap_lookup(const struct heap *h, uint64_t addr, uint64_t *size, uint32_t *stack)
{
	size_t i = find(h, addr);
	if (i == SIZE_MAX)
		return -ENOENT;
	*size = block_size(h, &h->slots[i]);
	*stack = (uint32_t)(h->slots[i].meta >> SIZE_BITS);
	return 0;
}

void heap_foreach(const struct heap *h, heap_visit_fn fn, void *arg)
{
	for (size_t i = 0; i < h->cap; i++) {
		const struct heap_block *b = &h->slots[i];
		if (b->addr != 0)
			fn(arg, b->addr, block_size(h, b), (uint32_t)(b->meta >> SIZE_BITS));
	}
}

size_t heap_memory(const struct heap *h)
{
	size_t n = h->cap * sizeof(*h->slots) + h->nstacks * sizeof(*h->stacks) +
	           h->bigcap * sizeof(*h->big);
	for (uint32_t i = 0; i < h->nstacks; i++)
		n += h->stacks[i].nframes * sizeof(uint64_t);
	return n;
}
