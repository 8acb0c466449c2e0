/* heap.c - the live heap model (see heap.h). */
#include "heap.h"

#include <errno.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
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
/* Tables up to this many slots change size at once (under a millisecond);
 * larger ones move TAB_STEP slots an event (and on the timer). */
#define TAB_AT_ONCE (1u << 16)
#define TAB_STEP    16

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
 * tell which addresses share a slot. The hash scaled to [0, cap) by a
 * multiply (cap need not be a power of two, see next_cap). */
static inline size_t home(const struct heap *h, uint64_t addr, size_t cap)
{
	return (size_t)(((unsigned __int128)hash_mix(addr ^ h->key) * cap) >> 64);
}

/* The slot after i in an array of cap slots, around the end. */
static inline size_t step(size_t i, size_t cap)
{
	return i + 1 == cap ? 0 : i + 1;
}

/* The capacity a table grows to from cap: twice up to a chunk, then half
 * again, in whole chunks. A table grows at 3/4 full, so just after it grew
 * it is half full, not 3/8 as with doubling: 32 bytes of slots per live
 * block at worst instead of 43 (issue 10). */
static size_t next_cap(size_t cap)
{
	if (cap < HEAP_CHUNK)
		return cap * 2;
	size_t n = cap + cap / 2;
	return (n + HEAP_CHUNK - 1) / HEAP_CHUNK * HEAP_CHUNK;
}

size_t heap_home(const struct heap *h, uint64_t addr, size_t cap)
{
	return home(h, addr, cap);
}

struct heap_chunk {
	atomic_uint refs;
	struct heap_block b[];
};

void heap_prefetch(const struct heap *h, uint64_t addr)
{
	/* A table of a MiB or less stays in the cache by itself. */
	if (h->tab.cap <= HEAP_PREFETCH_MIN_CAP)
		return;
	size_t i = home(h, addr, h->tab.cap);
	const struct heap_chunk *c = h->tab.slots[i / HEAP_CHUNK];
	if (c != NULL)
		__builtin_prefetch(&c->b[i % HEAP_CHUNK], 1);
}

static struct heap_chunk **arr_new(size_t cap);
static struct heap_stack *stack_wr(struct heap *h, uint32_t id);

void heap_init_keyed(struct heap *h, size_t max_blocks, size_t max_stacks, uint64_t key)
{
	memset(h, 0, sizeof(*h));
	h->key = key;
	h->max_blocks = max_blocks ? max_blocks : DEFAULT_MAX_BLOCKS;
	h->max_stacks = max_stacks ? max_stacks : DEFAULT_MAX_STACKS;
	if (h->max_stacks > HEAP_MAX_STACK_ID)
		h->max_stacks = HEAP_MAX_STACK_ID;
	h->tab.cap = MIN_CAP;
	h->tab.slots = arr_new(h->tab.cap);
	/* id 0: the unknown stack */
	h->nstacks = 1;
	h->stacks = xcalloc(1, sizeof(*h->stacks));
	stack_wr(h, 0)->defined = 1;
}

void heap_init(struct heap *h, size_t max_blocks, size_t max_stacks)
{
	heap_init_keyed(h, max_blocks, max_stacks, random_key(h));
}

/*
 * ---- arrays of slots in chunks, shared copy-on-write ----
 *
 * A table's array is cut into chunks of HEAP_CHUNK slots (a smaller table
 * is one chunk). A copy of the table (heap_clone, heap_view_take) shares
 * every chunk and counts a reference on it: O(chunks), not O(slots). The
 * first write into a shared chunk copies that chunk alone (64 KiB), so an
 * event still costs O(1) and a copy costs the loop nothing proportional to
 * the blocks. A chunk nobody wrote yet is NULL and reads as empty slots: a
 * new array costs its pointers, not its slots. References are atomic: a
 * view is read and released on a worker while the loop writes its own
 * chunks (never a shared one).
 */

#define CHUNK_MASK (HEAP_CHUNK - 1)

static const struct heap_block empty_slot;

static size_t chunk_len(size_t cap)
{
	return cap < HEAP_CHUNK ? cap : HEAP_CHUNK;
}

static size_t nchunks(size_t cap)
{
	return cap < HEAP_CHUNK ? 1 : cap / HEAP_CHUNK;
}

static inline const struct heap_block *rd(struct heap_chunk *const *a, size_t i)
{
	const struct heap_chunk *c = a[i / HEAP_CHUNK];
	return c != NULL ? &c->b[i & CHUNK_MASK] : &empty_slot;
}

static void chunk_unref(struct heap_chunk *c)
{
	if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		free(c);
}

/* Slot i of an array of cap slots, for writing: its chunk made if none, or
 * copied if shared. */
static inline struct heap_block *wr(struct heap_chunk **a, size_t cap, size_t i)
{
	struct heap_chunk **cp = &a[i / HEAP_CHUNK];
	struct heap_chunk *c = *cp;
	if (c == NULL || atomic_load_explicit(&c->refs, memory_order_acquire) != 1) {
		size_t n = chunk_len(cap) * sizeof(struct heap_block);
		/* calloc: fresh memory from the kernel is not cleared twice. */
		struct heap_chunk *nc =
		    c != NULL ? xmalloc(sizeof(*nc) + n) : xcalloc(1, sizeof(*nc) + n);
		atomic_init(&nc->refs, 1);
		if (c != NULL)
			memcpy(nc->b, c->b, n);
		chunk_unref(c);
		*cp = c = nc;
	}
	return &c->b[i & CHUNK_MASK];
}

static struct heap_chunk **arr_new(size_t cap)
{
	return xcalloc(nchunks(cap), sizeof(struct heap_chunk *));
}

static void arr_free(struct heap_chunk **a, size_t cap)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < nchunks(cap); i++)
		chunk_unref(a[i]);
	free(a);
}

static struct heap_chunk **arr_share(struct heap_chunk *const *a, size_t cap)
{
	if (a == NULL)
		return NULL;
	struct heap_chunk **b = xmemdup(a, nchunks(cap) * sizeof(*a));
	for (size_t i = 0; i < nchunks(cap); i++)
		if (b[i] != NULL)
			atomic_fetch_add_explicit(&b[i]->refs, 1, memory_order_relaxed);
	return b;
}

const struct heap_block *heap_table_slot(const struct heap_table *t, size_t i)
{
	return rd(t->slots, i);
}

static void tab_free(struct heap_table *t)
{
	arr_free(t->slots, t->cap);
	arr_free(t->old, t->oldcap);
}

/*
 * ---- a stack's frames, shared by the copies of a heap ----
 *
 * A stack's return addresses never change once defined, so a copy of the
 * heap (heap_clone) and a capture share them, counting a reference,
 * instead of copying them one allocation a stack. The count is atomic: a
 * capture gives its references back on a worker.
 */

struct heap_frames {
	atomic_uint refs;
	uint32_t pad;
	uint64_t f[];
};

static struct heap_frames *frames_of(uint64_t *f)
{
	return (struct heap_frames *)(void *)((char *)f - offsetof(struct heap_frames, f));
}

static uint64_t *frames_new(const uint64_t *src, uint32_t n)
{
	struct heap_frames *fr = xmalloc(sizeof(*fr) + n * sizeof(*src));
	atomic_init(&fr->refs, 1);
	memcpy(fr->f, src, n * sizeof(*src));
	return fr->f;
}

static void frames_unref(uint64_t *f)
{
	if (f != NULL &&
	    atomic_fetch_sub_explicit(&frames_of(f)->refs, 1, memory_order_acq_rel) == 1)
		free(frames_of(f));
}

uint64_t *heap_frames_ref(uint64_t *frames)
{
	if (frames != NULL)
		atomic_fetch_add_explicit(&frames_of(frames)->refs, 1, memory_order_relaxed);
	return frames;
}

void heap_frames_unref(uint64_t *frames)
{
	frames_unref(frames);
}

/*
 * ---- the stack array in chunks, shared copy-on-write ----
 *
 * As the block table's slots: a copy of the heap shares every chunk of
 * HEAP_STACK_CHUNK stacks and counts a reference on it, and the first write
 * into a shared chunk copies that chunk alone. A chunk holds one reference
 * on the frames of each of its stacks, taken when it is made by copying,
 * given back when it goes: a copy of the heap takes no reference per stack.
 * A chunk never written is NULL and reads as undefined stacks. Only the
 * loop touches the stacks; the counts are atomic as the frames' are.
 */

struct heap_stack_chunk {
	atomic_uint refs;
	uint32_t n; /* stacks in s */
	struct heap_stack s[];
};

#define STACK_MASK (HEAP_STACK_CHUNK - 1)

static const struct heap_stack empty_stack;

static uint32_t schunk_len(uint32_t nstacks)
{
	return nstacks < HEAP_STACK_CHUNK ? nstacks : HEAP_STACK_CHUNK;
}

static uint32_t nschunks(uint32_t nstacks)
{
	return nstacks <= HEAP_STACK_CHUNK ? 1 : (nstacks + STACK_MASK) / HEAP_STACK_CHUNK;
}

static struct heap_stack_chunk *schunk_new(uint32_t n)
{
	struct heap_stack_chunk *c = xcalloc(1, sizeof(*c) + n * sizeof(struct heap_stack));
	atomic_init(&c->refs, 1);
	c->n = n;
	return c;
}

/* A chunk of n stacks holding the first ones of c (NULL: none), with
 * references of its own on their frames. */
static struct heap_stack_chunk *schunk_copy(const struct heap_stack_chunk *c, uint32_t n)
{
	struct heap_stack_chunk *nc = schunk_new(n);
	uint32_t k = c != NULL ? (c->n < n ? c->n : n) : 0;
	if (k > 0)
		memcpy(nc->s, c->s, k * sizeof(*nc->s));
	for (uint32_t i = 0; i < k; i++)
		heap_frames_ref(nc->s[i].frames);
	return nc;
}

static void schunk_unref(struct heap_stack_chunk *c)
{
	if (c == NULL || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < c->n; i++)
		frames_unref(c->s[i].frames);
	free(c);
}

void heap_prefetch_stack(const struct heap *h, uint32_t id)
{
	if (id >= h->nstacks)
		return;
	const struct heap_stack_chunk *c = h->stacks[id / HEAP_STACK_CHUNK];
	if (c != NULL) {
		const char *p = (const char *)&c->s[id & STACK_MASK];
		__builtin_prefetch(p, 1);
		__builtin_prefetch(p + sizeof(struct heap_stack) - 1, 1);
	}
}

const struct heap_stack *heap_stack_at(const struct heap *h, uint32_t id)
{
	if (id >= h->nstacks)
		return &empty_stack;
	const struct heap_stack_chunk *c = h->stacks[id / HEAP_STACK_CHUNK];
	return c != NULL ? &c->s[id & STACK_MASK] : &empty_stack;
}

/* Stack id (< nstacks) for writing: its chunk made if none, or copied if
 * shared. */
static struct heap_stack *stack_wr(struct heap *h, uint32_t id)
{
	struct heap_stack_chunk **cp = &h->stacks[id / HEAP_STACK_CHUNK];
	struct heap_stack_chunk *c = *cp;
	if (c == NULL) {
		*cp = c = schunk_new(schunk_len(h->nstacks));
	} else if (atomic_load_explicit(&c->refs, memory_order_acquire) != 1) {
		struct heap_stack_chunk *nc = schunk_copy(c, c->n);
		schunk_unref(c);
		*cp = c = nc;
	}
	return &c->s[id & STACK_MASK];
}

/* Makes room for ids 0 .. ncap-1 (ncap below HEAP_STACK_CHUNK, or a
 * multiple of it), or drops the ids from ncap on. At most one chunk is
 * copied: the one smaller than HEAP_STACK_CHUNK, or the last one kept. */
static void stacks_resize(struct heap *h, uint32_t ncap)
{
	uint32_t on = nschunks(h->nstacks), nn = nschunks(ncap);

	for (uint32_t i = nn; i < on; i++)
		schunk_unref(h->stacks[i]);
	if ((h->nstacks < HEAP_STACK_CHUNK || ncap < HEAP_STACK_CHUNK) && h->stacks[0] != NULL) {
		struct heap_stack_chunk *c = schunk_copy(h->stacks[0], schunk_len(ncap));
		schunk_unref(h->stacks[0]);
		h->stacks[0] = c;
	}
	h->stacks = xreallocarray(h->stacks, nn, sizeof(*h->stacks));
	if (nn > on)
		memset(h->stacks + on, 0, (nn - on) * sizeof(*h->stacks));
	h->nstacks = ncap;
}

static void stacks_free(struct heap *h)
{
	if (h->stacks == NULL)
		return;
	for (uint32_t i = 0; i < nschunks(h->nstacks); i++)
		schunk_unref(h->stacks[i]);
	free(h->stacks);
}

static struct heap_stack_chunk **stacks_share(const struct heap *h)
{
	struct heap_stack_chunk **a = xmemdup(h->stacks, nschunks(h->nstacks) * sizeof(*a));
	for (uint32_t i = 0; i < nschunks(h->nstacks); i++)
		if (a[i] != NULL)
			atomic_fetch_add_explicit(&a[i]->refs, 1, memory_order_relaxed);
	return a;
}

/* Rounds n up to a whole number of grants of g. */
static size_t grants_for(size_t n, size_t g)
{
	return (n + g - 1) / g * g;
}

void heap_charge_to(struct heap *h, heap_charge_fn fn, void *arg)
{
	h->charge = fn;
	h->charge_arg = arg;
	h->granted_blocks = grants_for(h->count, HEAP_GRANT_BLOCKS);
	h->granted_stacks = grants_for(h->ndefined, HEAP_GRANT_STACKS);
	if (h->granted_blocks > 0)
		fn(arg, HEAP_CHARGED_BLOCKS, (long)h->granted_blocks, true);
	if (h->granted_stacks > 0)
		fn(arg, HEAP_CHARGED_STACKS, (long)h->granted_stacks, true);
}

/* One more grant of what, or false when the owner refuses it. */
static bool grant(struct heap *h, enum heap_charged what)
{
	size_t g = what == HEAP_CHARGED_BLOCKS ? HEAP_GRANT_BLOCKS : HEAP_GRANT_STACKS;
	if (h->charge(h->charge_arg, what, (long)g, false) < 0)
		return false;
	*(what == HEAP_CHARGED_BLOCKS ? &h->granted_blocks : &h->granted_stacks) += g;
	return true;
}

void heap_close(struct heap *h)
{
	if (h->charge != NULL) {
		if (h->granted_blocks > 0)
			h->charge(h->charge_arg, HEAP_CHARGED_BLOCKS, -(long)h->granted_blocks,
			          false);
		if (h->granted_stacks > 0)
			h->charge(h->charge_arg, HEAP_CHARGED_STACKS, -(long)h->granted_stacks,
			          false);
	}
	stacks_free(h);
	tab_free(&h->tab);
	tab_free(&h->big);
	memset(h, 0, sizeof(*h));
}

static void tab_share(struct heap_table *dst, const struct heap_table *src)
{
	*dst = *src;
	dst->slots = arr_share(src->slots, src->cap);
	dst->old = arr_share(src->old, src->oldcap);
}

void heap_clone(struct heap *dst, const struct heap *src)
{
	*dst = *src;
	dst->charge = NULL;
	dst->charge_arg = NULL;
	dst->trim_next = 0; /* a copy is of a process that goes on */
	dst->granted_blocks = dst->granted_stacks = 0;
	tab_share(&dst->tab, &src->tab);
	tab_share(&dst->big, &src->big);
	dst->stacks = stacks_share(src);
}

/*
 * ---- one open-addressing table (the blocks, or the big sizes) ----
 *
 * Linear probing, no tombstones in `slots` (backward-shift deletion). A
 * table that must change size does not move every entry at once (tens of
 * millions of entries would hold the loop for a second): the new array
 * takes every insert, the old one keeps what it had and is emptied in
 * order, TAB_STEP slots at each event and on the daemon's timer, an entry
 * also moving as soon as it is looked up. An entry a lookup moves out of
 * order becomes a tombstone in the old array (address 0, meta 1), so the
 * probe chains of the entries still there stay whole; the slots moved in
 * order keep their stale copies, which nothing reads (old_find, foreach).
 * An address is live in one array only.
 */

#define TOMB 1 /* meta of an old array's slot whose entry is gone */

/* The slot holding addr in an array of cap slots, or SIZE_MAX; *end is
 * then the empty slot that ended the search, where addr would go. */
static size_t arr_search(struct heap *h, struct heap_chunk *const *slots, size_t cap, uint64_t addr,
                         size_t *end)
{
	*end = SIZE_MAX;
	if (cap == 0)
		return SIZE_MAX;
	size_t i = home(h, addr, cap);
	for (;;) {
		h->probes++;
		uint64_t a = rd(slots, i)->addr;
		if (a == 0) {
			*end = i;
			return SIZE_MAX;
		}
		if (a == addr)
			return i;
		i = step(i, cap);
	}
}

/* The slot holding addr in an array of cap slots, or SIZE_MAX. */
static size_t arr_find(struct heap *h, struct heap_chunk *const *slots, size_t cap, uint64_t addr)
{
	size_t end;
	return arr_search(h, slots, cap, addr, &end);
}

/* Whether slot i of the old array is in the part already moved. */
static bool moved_past(const struct heap_table *t, size_t i)
{
	size_t d = i >= t->start ? i - t->start : i + t->oldcap - t->start;
	return d < t->moved;
}

/* The slot of the old array holding addr, or SIZE_MAX. The move runs from
 * `start`, a slot after an empty one, so no probe chain crosses into the
 * moved part from before it (slot start - 1 is the last to move and stays
 * empty: the old array takes no inserts): a chain whose home was moved past
 * goes on where the move is, and tombstones left by lookups are passed
 * over. */
static size_t old_find(struct heap *h, const struct heap_table *t, uint64_t addr)
{
	size_t i = home(h, addr, t->oldcap);

	if (moved_past(t, i))
		i = (t->start + t->moved) % t->oldcap;
	for (size_t n = t->moved; n < t->oldcap; n++) {
		h->probes++;
		const struct heap_block *b = rd(t->old, i);
		if (b->addr == 0) {
			if (b->meta != TOMB)
				return SIZE_MAX;
		} else if (b->addr == addr) {
			return i;
		}
		i = step(i, t->oldcap);
	}
	return SIZE_MAX;
}

/* The free slot that ends addr's probe chain in `slots` (never full). */
static size_t arr_free_slot(struct heap *h, struct heap_chunk *const *slots, size_t cap,
                            uint64_t addr)
{
	size_t i = home(h, addr, cap);
	for (;;) {
		h->probes++;
		if (rd(slots, i)->addr == 0)
			return i;
		i = step(i, cap);
	}
}

/* Moves up to n slots of the old array into the new one; true when the
 * old array is gone. */
static bool tab_step(struct heap *h, struct heap_table *t, size_t n)
{
	if (t->old == NULL)
		return true;
	for (size_t end = t->moved + n < t->oldcap ? t->moved + n : t->oldcap; t->moved < end;
	     t->moved++) {
		/* The slot moved stays as it was: no probe reaches the moved
		 * part (see old_find), and writing it would copy a shared
		 * chunk for nothing. */
		struct heap_block b = *rd(t->old, (t->start + t->moved) % t->oldcap);
		if (b.addr != 0)
			*wr(t->slots, t->cap, arr_free_slot(h, t->slots, t->cap, b.addr)) = b;
	}
	if (t->moved < t->oldcap)
		return false;
	arr_free(t->old, t->oldcap);
	t->old = NULL;
	t->oldcap = t->moved = 0;
	return true;
}

/* Gives t an array of cap slots: at once for a small table, else moved
 * into step by step. */
static void tab_resize(struct heap *h, struct heap_table *t, size_t cap)
{
	tab_step(h, t, SIZE_MAX); /* a move in progress ends first */
	t->old = t->slots;
	t->oldcap = t->cap;
	t->moved = 0;
	/* Start after an empty slot (at most 3/4 are full). */
	t->start = 0;
	while (rd(t->old, t->start == 0 ? t->oldcap - 1 : t->start - 1)->addr != 0)
		t->start++;
	t->slots = arr_new(cap);
	t->cap = cap;
	if (t->oldcap <= TAB_AT_ONCE)
		tab_step(h, t, SIZE_MAX);
}

/* The slot of `slots` holding addr (moved there from the old array if it
 * was still there), or SIZE_MAX. */
static size_t tab_find(struct heap *h, struct heap_table *t, uint64_t addr)
{
	size_t i = arr_find(h, t->slots, t->cap, addr);
	if (i != SIZE_MAX || t->old == NULL)
		return i;
	size_t j = old_find(h, t, addr);
	if (j == SIZE_MAX)
		return SIZE_MAX;
	i = arr_free_slot(h, t->slots, t->cap, addr);
	struct heap_block b = *rd(t->old, j);
	*wr(t->slots, t->cap, i) = b;
	*wr(t->old, t->oldcap, j) = (struct heap_block){0, TOMB};
	return i;
}

/* The entry of addr wherever it is, without moving it; NULL if none. */
static const struct heap_block *tab_peek(const struct heap *h, const struct heap_table *t,
                                         uint64_t addr)
{
	struct heap *hh = (struct heap *)h; /* probes count, the model does not change */
	size_t i = arr_find(hh, t->slots, t->cap, addr);
	if (i != SIZE_MAX)
		return rd(t->slots, i);
	i = t->old != NULL ? old_find(hh, t, addr) : SIZE_MAX;
	return i != SIZE_MAX ? rd(t->old, i) : NULL;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void tab_remove(struct heap *h, struct heap_table *t, size_t i)
{
	size_t j = i;
	for (;;) {
		j = step(j, t->cap);
		h->probes++;
		struct heap_block bj = *rd(t->slots, j); /* a copy: wr may replace its chunk */
		if (bj.addr == 0)
			break;
		size_t k = home(h, bj.addr, t->cap);
		/* Move j into the hole at i if its home k is not in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			*wr(t->slots, t->cap, i) = bj;
			i = j;
		}
	}
	*wr(t->slots, t->cap, i) = (struct heap_block){0, 0};
}

static void tab_foreach(const struct heap *h, const struct heap_table *t, heap_visit_fn fn,
                        void *arg,
                        uint64_t (*size_of)(const struct heap *, const struct heap_block *))
{
	for (int a = 0; a < 2; a++) {
		struct heap_chunk *const *v = a == 0 ? t->slots : t->old;
		size_t cap = a == 0 ? t->cap : (t->old != NULL ? t->oldcap : 0);
		for (size_t c = 0; cap > 0 && c < nchunks(cap); c++) {
			if (v[c] == NULL)
				continue;
			const struct heap_block *b = v[c]->b;
			for (size_t i = 0; i < chunk_len(cap); i++) {
				/* The old array's moved slots keep their copies. */
				if (b[i].addr == 0 || (a == 1 && moved_past(t, c * HEAP_CHUNK + i)))
					continue;
				fn(arg, b[i].addr, size_of(h, &b[i]),
				   (uint32_t)(b[i].meta >> SIZE_BITS));
			}
		}
	}
}

/* The smallest capacity from min on (min, next_cap(min), ...) that holds n
 * at 3/4 load. */
static size_t cap_for(size_t n, size_t min)
{
	size_t cap = min;
	while (n * 4 > cap * 3)
		cap = next_cap(cap);
	return cap;
}

static bool trim_stacks(struct heap *h, size_t budget);

bool heap_step(struct heap *h, size_t slots)
{
	bool a = tab_step(h, &h->tab, slots);
	bool b = tab_step(h, &h->big, slots);
	bool c = trim_stacks(h, HEAP_TRIM_STEP);
	return a && b && c;
}

void heap_trim(struct heap *h)
{
	size_t cap = cap_for(h->count, 16);
	if (cap < h->tab.cap)
		tab_resize(h, &h->tab, cap);
	if (h->nbig == 0 && h->big.old == NULL) {
		tab_free(&h->big);
		memset(&h->big, 0, sizeof(h->big));
	} else if ((cap = cap_for(h->nbig, MIN_BIG_CAP)) < h->big.cap) {
		tab_resize(h, &h->big, cap);
	}
	/* Only stacks that allocated are ever read again (their statistics
	 * count allocations, freed or not): the others' frames go, step by
	 * step (heap_step), a million stacks being tens of milliseconds of
	 * work. */
	if (h->nstacks > 1) {
		h->trim_next = 1;
		h->trim_keep = 1;
		trim_stacks(h, HEAP_TRIM_STEP);
	}
}

/* Frees the frames of up to `budget` stacks that never allocated, from
 * trim_next on; at the end drops the ids past the last one that did. True
 * when the trim is done (or none is under way). */
static bool trim_stacks(struct heap *h, size_t budget)
{
	uint32_t i = h->trim_next;

	if (i == 0)
		return true;
	for (; i < h->nstacks && budget > 0; i++, budget--) {
		if (h->stacks[i / HEAP_STACK_CHUNK] == NULL) {
			i |= STACK_MASK; /* a chunk never written */
			continue;
		}
		const struct heap_stack *s = heap_stack_at(h, i);
		if (s->live_count != 0 || s->live_count_frac != 0 || s->total_allocs != 0 ||
		    s->total_allocs_frac != 0) {
			h->trim_keep = i + 1;
			continue;
		}
		if (s->frames == NULL)
			continue;
		struct heap_stack *w = stack_wr(h, i);
		h->frames_bytes -= w->nframes * sizeof(uint64_t);
		frames_unref(w->frames);
		w->frames = NULL;
		w->nframes = 0;
	}
	if (i < h->nstacks) {
		h->trim_next = i;
		return false;
	}
	h->trim_next = 0;
	uint32_t keep = h->trim_keep;
	if (keep < h->nstacks) {
		/* The ids past keep go: whole chunks, and in the last chunk
		 * kept, the stacks (nothing live, no frames) read as never
		 * defined. */
		uint32_t ncap = keep < HEAP_STACK_CHUNK ? keep : (keep + STACK_MASK) & ~STACK_MASK;
		stacks_resize(h, ncap);
		for (uint32_t j = keep; j < ncap; j++)
			if (heap_stack_at(h, j)->defined)
				*stack_wr(h, j) = empty_stack;
	}
	return true;
}

static size_t find(struct heap *h, uint64_t addr)
{
	return tab_find(h, &h->tab, addr);
}

/* One block fewer, in the table or a temporary (heap_apply_temp). */
static void uncount(struct heap *h)
{
	h->count--;
	/* Two grants spare: one goes back (one spare, so a process that
	 * allocates and frees around a grant's edge does not take and give
	 * at every event). */
	if (h->charge != NULL && h->granted_blocks - h->count > 2 * HEAP_GRANT_BLOCKS) {
		h->granted_blocks -= HEAP_GRANT_BLOCKS;
		h->charge(h->charge_arg, HEAP_CHARGED_BLOCKS, -(long)HEAP_GRANT_BLOCKS, false);
	}
}

static void remove_at(struct heap *h, size_t i)
{
	tab_remove(h, &h->tab, i);
	uncount(h);
}

/* Keeps the exact size of a block of SIZE_BIG bytes or more. */
static void big_put(struct heap *h, uint64_t addr, uint64_t size)
{
	if (h->big.cap == 0) {
		h->big.cap = MIN_BIG_CAP;
		h->big.slots = arr_new(h->big.cap);
	} else if ((h->nbig + 1) * 4 > h->big.cap * 3) {
		tab_resize(h, &h->big, next_cap(h->big.cap));
	}
	size_t i = arr_free_slot(h, h->big.slots, h->big.cap, addr);
	*wr(h->big.slots, h->big.cap, i) = (struct heap_block){addr, size};
	h->nbig++;
}

static uint64_t big_take(struct heap *h, uint64_t addr)
{
	size_t i = tab_find(h, &h->big, addr);
	if (i == SIZE_MAX)
		return SIZE_BIG;
	uint64_t s = rd(h->big.slots, i)->meta;
	tab_remove(h, &h->big, i);
	h->nbig--;
	return s;
}

static uint64_t block_size(const struct heap *h, const struct heap_block *b)
{
	uint64_t s = b->meta & SIZE_BIG;
	if (s != SIZE_BIG)
		return s;
	const struct heap_block *e = tab_peek(h, &h->big, b->addr);
	return e != NULL ? e->meta : SIZE_BIG;
}

void heap_set_sampling(struct heap *h, uint64_t rate)
{
	h->sample_bytes = rate;
}

/* Before a stack's live figures change: the first change after the peak
 * keeps what they were at the peak (heap_stack_at_peak). */
static inline void settle_peak(const struct heap *h, struct heap_stack *s)
{
	if (s->peak_stamp != h->peak_serial) {
		s->peak_bytes = s->live_bytes;
		s->peak_count = s->live_count;
		s->peak_stamp = h->peak_serial;
	}
}

/* With every allocation recorded, weights are whole (a count of 1, the
 * size), which leave each fraction as it is, so the sums are plain
 * (sampling_add of a whole value is an add). The general way (apply_alloc,
 * unweigh) and the short one (heap_temp_alloc_fast and the rest) change the
 * model through these same few steps. */

/* An allocation's totals. */
static inline void tally_whole(struct heap *h, struct heap_stack *s, uint64_t size)
{
	s->total_allocs++;
	s->total_bytes += size;
	h->allocations++;
}

/* A block of `size` bytes at s into the live figures. */
static inline void weigh_whole(struct heap *h, struct heap_stack *s, uint64_t size)
{
	settle_peak(h, s);
	s->live_bytes += size;
	s->live_count++;
	h->current += size;
	h->blocks++;
}

/* A pair applied at once (heap_apply_pair): the peak taken with the block
 * live when it makes one, the free counted, the live figures untouched. */
static inline void pair_whole(struct heap *h, struct heap_stack *s, uint64_t size, bool temporary)
{
	if (h->current + size > h->peak) {
		h->peak = h->current + size;
		h->peak_serial++;
		s->peak_bytes = s->live_bytes + size;
		s->peak_count = s->live_count + 1;
		s->peak_stamp = h->peak_serial;
	}
	s->temporary += temporary;
	h->frees++;
}

/* The live heap past its peak: now is the peak, every stack's figures are it. */
static inline void note_peak(struct heap *h)
{
	if (h->current > h->peak) {
		h->peak = h->current;
		h->peak_serial++;
	}
}

/* A block out of the live figures (unweigh). */
static inline void unweigh_whole(struct heap *h, struct heap_stack *s, uint64_t size,
                                 bool temporary)
{
	s->temporary += temporary;
	settle_peak(h, s);
	s->live_bytes -= size;
	s->live_count--;
	h->current -= size;
	h->blocks--;
}

/* Takes a live block of `size` bytes at `stack` out of the live figures;
 * its weight is left in *w. */
static void unweigh(struct heap *h, uint64_t size, uint32_t stack, bool temporary,
                    struct sampling_weight *w)
{
	sampling_weight(size, h->sample_bytes, w);
	struct heap_stack *s = stack_wr(h, stack);
	if (h->sample_bytes == 0) {
		unweigh_whole(h, s, size, temporary);
		return;
	}
	if (temporary)
		sampling_add(&s->temporary, &s->temporary_frac, w->count);
	settle_peak(h, s);
	sampling_sub(&s->live_bytes, &s->live_bytes_frac, w->bytes);
	sampling_sub(&s->live_count, &s->live_count_frac, w->count);
	sampling_sub(&h->current, &h->current_frac, w->bytes);
	sampling_sub(&h->blocks, &h->blocks_frac, w->count);
}

/* Removes the live block at slot i from every statistic: its weight is
 * computed from the size it was inserted with, so exactly what
 * apply_alloc added is subtracted. Its weight is left in *w. */
static void release(struct heap *h, size_t i, bool temporary, struct sampling_weight *w)
{
	const struct heap_block b = *rd(h->tab.slots, i);
	uint64_t size = b.meta & SIZE_BIG;

	if (size == SIZE_BIG)
		size = big_take(h, b.addr);
	unweigh(h, size, (uint32_t)(b.meta >> SIZE_BITS), temporary, w);
	remove_at(h, i);
}

/* Gives a block counted in h->count its slot (`end`: the empty slot a
 * search for addr ended at, when the table has not changed since; else
 * SIZE_MAX), growing the table first when it is 3/4 full. */
static void insert(struct heap *h, uint64_t addr, uint64_t size, uint32_t stack, size_t end)
{
	if ((h->count - h->temps) * 4 > h->tab.cap * 3) {
		tab_resize(h, &h->tab, next_cap(h->tab.cap));
		end = SIZE_MAX;
	}
	size_t i = end != SIZE_MAX ? end : arr_free_slot(h, h->tab.slots, h->tab.cap, addr);
	if (size >= SIZE_BIG) {
		big_put(h, addr, size);
		size = SIZE_BIG;
	}
	*wr(h->tab.slots, h->tab.cap, i) =
	    (struct heap_block){addr, (uint64_t)stack << SIZE_BITS | size};
}

int heap_define_stack(struct heap *h, uint32_t id, const uint64_t *frames, uint32_t n)
{
	if (id == 0 || n == 0 || n > PROTO_MAX_FRAMES)
		return -EBADMSG;
	if (heap_stack_at(h, id)->defined)
		return -EBADMSG;
	if (id > h->max_stacks || h->ndefined >= h->max_stacks ||
	    (h->charge != NULL && h->ndefined >= h->granted_stacks &&
	     !grant(h, HEAP_CHARGED_STACKS))) {
		h->limit_reached |= HEAP_LIMIT_STACKS;
		return 0;
	}
	if (id >= h->nstacks) {
		uint32_t ncap = h->nstacks;
		while (ncap <= id)
			ncap = ncap < 1024 ? 1024 : ncap * 2;
		stacks_resize(h, ncap);
	}
	struct heap_stack *s = stack_wr(h, id);
	s->frames = frames_new(frames, n);
	s->nframes = n;
	s->defined = 1;
	h->ndefined++;
	h->frames_bytes += n * sizeof(uint64_t);
	return 0;
}

/* An allocation: its statistics, the block it replaces, and (unless temp)
 * its slot. 1 when the block counts (a limit may leave it out: 0), and
 * *stack_out is the stack it was counted at; -EBADMSG. */
static int apply_alloc(struct heap *h, const struct proto_event *ev, bool temp, bool fresh,
                       const bool *pair_temporary, uint32_t *stack_out)
{
	uint32_t stack = ev->stack_id;

	if (stack != 0) {
		if (!heap_stack_at(h, stack)->defined) {
			/* Past max_stacks the agent's id was dropped on purpose. */
			if (!(h->limit_reached & HEAP_LIMIT_STACKS))
				return -EBADMSG;
			stack = 0;
		}
	}
	struct sampling_weight w, old;
	bool whole = h->sample_bytes == 0; /* plain sums: see unweigh */
	sampling_weight(ev->size, h->sample_bytes, &w);
	struct heap_stack *s = stack_wr(h, stack);
	if (whole) {
		tally_whole(h, s, ev->size);
	} else {
		sampling_add(&s->total_allocs, &s->total_allocs_frac, w.count);
		sampling_add(&s->total_bytes, &s->total_bytes_frac, w.bytes);
		sampling_add(&h->allocations, &h->allocations_frac, w.count);
	}

	/* A table not being moved: the search for addr ends at the slot it
	 * goes to, unless the table must grow first. */
	size_t end = SIZE_MAX, i;
	if (fresh)
		i = SIZE_MAX; /* the caller knows no block is there */
	else if (h->tab.old == NULL)
		i = arr_search(h, h->tab.slots, h->tab.cap, ev->addr, &end);
	else
		i = find(h, ev->addr);
	bool replaced = i != SIZE_MAX;
	if (replaced) {
		/* A free we never saw (e.g. a block allocated before tracing
		 * began was freed untraced): the old block is gone. */
		h->replaced++;
		release(h, i, false, &old);
		end = SIZE_MAX; /* the deletion moved the slots after it */
	}
	*stack_out = stack;
	if (h->count >= h->max_blocks || (h->charge != NULL && h->count >= h->granted_blocks &&
	                                  !grant(h, HEAP_CHARGED_BLOCKS))) {
		h->limit_reached |= HEAP_LIMIT_BLOCKS;
		return 0;
	}
	if (pair_temporary != NULL) {
		/* Allocated and freed before anything else allocates: the
		 * live figures end where they were, and the block is live at
		 * the only moment that can be a peak, this one. */
		if (replaced)
			s = stack_wr(h, stack);
		pair_whole(h, s, ev->size, *pair_temporary);
		return 1;
	}
	h->count++;
	if (temp)
		h->temps++;
	else
		insert(h, ev->addr, ev->size, stack, end);
	if (replaced)
		s = stack_wr(h, stack); /* release may have copied its chunk */
	if (whole) {
		weigh_whole(h, s, ev->size);
	} else {
		settle_peak(h, s);
		sampling_add(&s->live_bytes, &s->live_bytes_frac, w.bytes);
		sampling_add(&s->live_count, &s->live_count_frac, w.count);
		sampling_add(&h->current, &h->current_frac, w.bytes);
		sampling_add(&h->blocks, &h->blocks_frac, w.count);
	}
	note_peak(h);
	return 1;
}

/* What every record does first: its place in the sequence, and a step of a
 * table's move. */
static int apply_begin(struct heap *h, uint64_t seq)
{
	if (seq <= h->last_seq)
		return -EBADMSG;
	h->last_seq = seq;
	if (h->tab.old != NULL || h->big.old != NULL)
		heap_step(h, TAB_STEP);
	return 0;
}

int heap_apply_temp_alloc(struct heap *h, const struct proto_event *ev, bool fresh, uint32_t *stack)
{
	if (ev->kind != PROTO_EV_ALLOC || apply_begin(h, ev->seq) < 0)
		return -EBADMSG;
	return apply_alloc(h, ev, true, fresh, NULL, stack);
}

int heap_apply_pair(struct heap *h, const struct proto_event *ev, bool fresh, bool temporary,
                    uint32_t *stack)
{
	if (ev->kind != PROTO_EV_ALLOC || h->sample_bytes != 0 || apply_begin(h, ev->seq) < 0)
		return -EBADMSG;
	return apply_alloc(h, ev, true, fresh, &temporary, stack);
}

int heap_apply_pair_free(struct heap *h, uint64_t seq, bool counted)
{
	if (apply_begin(h, seq) < 0)
		return -EBADMSG;
	if (!counted)
		h->unknown_frees++; /* its allocation was left out */
	return 0;
}

void heap_pair_unfuse(struct heap *h, uint64_t addr, uint64_t size, uint32_t stack, bool temporary)
{
	struct heap_stack *s = stack_wr(h, stack);

	/* Only frees came after the allocation: no peak since. */
	s->temporary -= temporary;
	h->frees--;
	weigh_whole(h, s, size);
	h->count++;
	insert(h, addr, size, stack, SIZE_MAX);
}

int heap_apply_temp_free(struct heap *h, uint64_t seq, uint64_t size, uint32_t stack, bool counted,
                         bool temporary)
{
	if (apply_begin(h, seq) < 0)
		return -EBADMSG;
	if (!counted) {
		/* Its allocation was left out: its free finds no block. */
		h->unknown_frees++;
		return 0;
	}
	struct sampling_weight w;
	unweigh(h, size, stack, temporary, &w);
	sampling_add(&h->frees, &h->frees_frac, w.count);
	h->temps--;
	uncount(h);
	return 0;
}

/* Stack id's statistics for writing when that needs no copy and no new
 * chunk, else NULL (stack_wr). */
static inline struct heap_stack *stack_wr_quick(struct heap *h, uint32_t id)
{
	if (id >= h->nstacks)
		return NULL;
	struct heap_stack_chunk *c = h->stacks[id / HEAP_STACK_CHUNK];
	if (c == NULL || atomic_load_explicit(&c->refs, memory_order_acquire) != 1)
		return NULL;
	return &c->s[id & STACK_MASK];
}

/* What apply_begin would do for seq is to take its place and nothing more:
 * it is in order, and no table is being moved (a step of the move). */
static inline bool fast_in_order(const struct heap *h, uint64_t seq)
{
	return seq > h->last_seq && h->tab.old == NULL && h->big.old == NULL;
}

/* heap_temp_alloc_fast's and heap_pair_fast's conditions: the stack's
 * statistics, or NULL (nothing changed). */
static inline struct heap_stack *fast_alloc_ok(struct heap *h, uint64_t seq, uint64_t addr,
                                               uint32_t stack, bool fresh)
{
	if (!fast_in_order(h, seq) || h->sample_bytes != 0)
		return NULL;
	struct heap_stack *s = stack_wr_quick(h, stack);
	if (s == NULL || !s->defined || h->count >= h->max_blocks ||
	    (h->charge != NULL && h->count >= h->granted_blocks))
		return NULL;
	size_t end;
	uint64_t probes = h->probes;
	if (!fresh && arr_search(h, h->tab.slots, h->tab.cap, addr, &end) != SIZE_MAX) {
		h->probes = probes; /* the general way searches again */
		return NULL;        /* a block to replace */
	}
	return s;
}

int heap_temp_alloc_fast(struct heap *h, uint64_t seq, uint64_t addr, uint64_t size, uint32_t stack,
                         bool fresh)
{
	struct heap_stack *s = fast_alloc_ok(h, seq, addr, stack, fresh);
	if (s == NULL)
		return 0;
	/* apply_begin's and apply_alloc's, for a temporary */
	h->last_seq = seq;
	tally_whole(h, s, size);
	h->count++;
	h->temps++;
	weigh_whole(h, s, size);
	note_peak(h);
	return 1;
}

int heap_pair_fast(struct heap *h, uint64_t seq, uint64_t addr, uint64_t size, uint32_t stack,
                   bool fresh, bool temporary)
{
	struct heap_stack *s = fast_alloc_ok(h, seq, addr, stack, fresh);
	if (s == NULL)
		return 0;
	/* apply_begin's and apply_alloc's, for a pair */
	h->last_seq = seq;
	tally_whole(h, s, size);
	pair_whole(h, s, size, temporary);
	return 1;
}

int heap_pair_free_fast(struct heap *h, uint64_t seq)
{
	if (!fast_in_order(h, seq))
		return 0;
	h->last_seq = seq;
	return 1;
}

int heap_temp_free_fast(struct heap *h, uint64_t seq, uint64_t size, uint32_t stack, bool temporary)
{
	if (!fast_in_order(h, seq) || h->sample_bytes != 0)
		return 0;
	struct heap_stack *s = stack_wr_quick(h, stack);
	if (s == NULL)
		return 0;
	h->last_seq = seq;
	/* heap_apply_temp_free's, with whole weights */
	unweigh_whole(h, s, size, temporary);
	h->frees++;
	h->temps--;
	uncount(h);
	return 1;
}

void heap_temp_keep(struct heap *h, uint64_t addr, uint64_t size, uint32_t stack)
{
	h->temps--;
	insert(h, addr, size, stack, SIZE_MAX);
}

int heap_apply(struct heap *h, const struct proto_event *ev)
{
	if (apply_begin(h, ev->seq) < 0)
		return -EBADMSG;
	if (ev->kind == PROTO_EV_ALLOC) {
		uint32_t stack;
		return apply_alloc(h, ev, false, false, NULL, &stack) < 0 ? -EBADMSG : 0;
	}
	if (ev->kind != PROTO_EV_FREE)
		return -EBADMSG;
	size_t i = find(h, ev->addr);
	if (i == SIZE_MAX) {
		h->unknown_frees++;
		return 0;
	}
	struct sampling_weight w;
	release(h, i, ev->temporary, &w);
	sampling_add(&h->frees, &h->frees_frac, w.count);
	return 0;
}

void heap_reset_peak(struct heap *h)
{
	h->peak = h->current;
	h->peak_serial++;
}

int heap_lookup(const struct heap *h, uint64_t addr, uint64_t *size, uint32_t *stack)
{
	const struct heap_block *b = tab_peek(h, &h->tab, addr);
	if (b == NULL)
		return -ENOENT;
	*size = block_size(h, b);
	*stack = (uint32_t)(b->meta >> SIZE_BITS);
	return 0;
}

void heap_foreach(const struct heap *h, heap_visit_fn fn, void *arg)
{
	tab_foreach(h, &h->tab, fn, arg, block_size);
}

/* Every slot counts, written or not, shared or not: a copy of a table
 * may come to hold all of it. */
static size_t tab_memory(const struct heap_table *t)
{
	size_t n = t->slots != NULL ? nchunks(t->cap) : 0;
	n += t->old != NULL ? nchunks(t->oldcap) : 0;
	return (t->cap + (t->old != NULL ? t->oldcap : 0)) * sizeof(struct heap_block) +
	       n * sizeof(struct heap_chunk *);
}

static size_t stacks_memory(const struct heap *h)
{
	size_t n = 0;
	if (h->stacks != NULL)
		n += h->nstacks * sizeof(struct heap_stack) +
		     nschunks(h->nstacks) * sizeof(*h->stacks);
	return n + h->frames_bytes;
}

size_t heap_memory(const struct heap *h)
{
	return tab_memory(&h->tab) + tab_memory(&h->big) + stacks_memory(h);
}

/* ---- frozen views ---- */

void heap_view_take(struct heap *h, struct heap_view *v, bool blocks)
{
	memset(v, 0, sizeof(*v));
	v->h.key = h->key;
	if (blocks) {
		v->h.count = h->count;
		v->h.nbig = h->nbig;
		tab_share(&v->h.tab, &h->tab);
		tab_share(&v->h.big, &h->big);
	}
	v->h.nstacks = h->nstacks;
	v->h.frames_bytes = h->frames_bytes;
	v->h.peak_serial = h->peak_serial;
	if (h->stacks != NULL)
		v->h.stacks = stacks_share(h);
}

void heap_view_foreach(const struct heap_view *v, heap_visit_fn fn, void *arg)
{
	tab_foreach(&v->h, &v->h.tab, fn, arg, block_size);
}

uint32_t heap_view_nstacks(const struct heap_view *v)
{
	return v->h.nstacks;
}

const struct heap_stack *heap_view_stack(const struct heap_view *v, uint32_t id)
{
	return heap_stack_at(&v->h, id);
}

uint64_t heap_view_peak_serial(const struct heap_view *v)
{
	return v->h.peak_serial;
}

size_t heap_view_memory(const struct heap_view *v)
{
	return heap_memory(&v->h);
}

size_t heap_view_stacks_memory(const struct heap_view *v)
{
	return stacks_memory(&v->h);
}

void heap_view_close(struct heap_view *v)
{
	heap_close(&v->h); /* only the chunks' references */
}
