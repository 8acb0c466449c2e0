/*
 * heap.h - the live heap model of one traced process.
 *
 * The heap holds every live block (address -> size and stack) and, per
 * stack, the live count and bytes and the total allocations, plus current
 * and peak traced bytes. It is fed the agent's events in the agent's
 * sequence order and applies them exactly: a free removes the block, an
 * allocation inserts it. It never symbolizes and never allocates per event
 * but the 64 KiB chunk of the block table that an event is the first to
 * write (the table grows geometrically; a large one moves into its new
 * array a few slots an event, so no event costs more than O(1) and none
 * holds the loop for the whole table).
 *
 * When the process is sampled (heap_set_sampling), a block keeps its true
 * size and every statistic adds the block's weight instead (sampling.h:
 * size / p bytes and 1 / p blocks), so the statistics are estimates of the
 * whole process; a free subtracts the same weight, computed again from the
 * size kept. Each estimated figure is kept rounded, as the field everybody
 * reads, beside its fraction (the *_frac fields, for sampling_add only).
 * Without sampling the weights are the size and one block, and every figure
 * is the exact count it always was.
 *
 * Blocks live in an open-addressing table of 16-byte slots (address; stack id
 * in the top 24 bits and size in the low 40 bits of a second word), so a
 * live block costs 16 / load-factor bytes. The slots are kept in chunks of
 * HEAP_CHUNK that copies of the table share until one side writes (copy on
 * write, chunk by chunk): a fork image (heap_clone) and a capture's view of
 * the blocks (heap_view_take) cost the loop O(slots / HEAP_CHUNK), and the
 * first write to a shared chunk copies 64 KiB, so no event nor copy holds
 * the loop for a time that grows with the blocks. The rare block of 1 TiB
 * or more keeps its exact size in a second table of the same kind, keyed
 * by its address, so it costs what any block costs: every operation is
 * O(1) expected whatever the sizes. Addresses are what an agent says, so a
 * hostile one may choose them: the home slot of an address is a strong mix
 * of the address and a key drawn at random for each heap (heap_init), which
 * the agent never learns, so it cannot build long probe chains on purpose.
 * `probes` counts the slots examined, for tests and benchmarks that check
 * the work stays proportional to the events. Limits on blocks and stacks
 * are enforced here and reported in limit_reached, never silently: the
 * heap's own (max_blocks, max_stacks), and those its owner shares with
 * other heaps (heap_charge_to): the heap takes blocks and stacks from its
 * owner in grants of HEAP_GRANT_BLOCKS and HEAP_GRANT_STACKS, so an event
 * costs a comparison, and gives them back as it shrinks and at its close.
 *
 * The stacks are kept the same way, in chunks of HEAP_STACK_CHUNK stacks
 * (64 KiB of statistics) shared copy on write, read through heap_stack_at:
 * a fork image copies the chunks' pointers, not the stacks, and a chunk
 * holds the one reference on each of its stacks' frames, so a copy takes
 * none per stack. The first write to a shared chunk copies it and takes
 * its frames' references (1024 at most).
 *
 * Single-threaded: only the daemon's loop thread touches a heap. A view
 * (heap_view_take, on the loop) is a frozen copy of the blocks that one
 * other thread at a time may read and close: the references it holds on
 * the shared chunks are atomic, and the heap never writes a shared chunk.
 */
#ifndef MEMTRACE_HEAP_H
#define MEMTRACE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define HEAP_MAX_STACK_ID ((1u << 24) - 1)
/* Sizes from this one up are kept in the second table. */
#define HEAP_SIZE_BIG ((UINT64_C(1) << 40) - 1)

enum heap_limit {
	HEAP_LIMIT_NONE = 0,
	HEAP_LIMIT_BLOCKS = 1, /* new blocks past max_blocks are not tracked */
	HEAP_LIMIT_STACKS = 2, /* stacks past max_stacks count as "unknown" */
};

struct heap_stack {
	uint64_t *frames; /* absolute return addresses - 1, most recent first */
	uint16_t nframes; /* 0 for the "unknown stack" (id 0) and undefined ids */
	uint16_t defined;
	uint32_t temporary_frac;
	uint64_t live_bytes;
	uint64_t live_count;
	uint64_t total_allocs;
	uint64_t total_bytes;
	uint64_t temporary; /* of total_allocs, freed as temporaries (PROTO_FREE_TEMPORARY) */
	/* live_bytes and live_count at the moment of the heap's peak, when
	 * peak_stamp is the heap's peak_serial; else they are live_* (the stack
	 * has not changed since): heap_stack_at_peak reads them. */
	uint64_t peak_bytes, peak_count, peak_stamp;
	uint32_t live_bytes_frac, live_count_frac, total_allocs_frac, total_bytes_frac;
};

/* A stack's live bytes and blocks at the moment of the peak of the heap
 * whose peak_serial is `serial`. */
static inline void heap_stack_at_peak(const struct heap_stack *s, uint64_t serial, uint64_t *bytes,
                                      uint64_t *count)
{
	*bytes = s->peak_stamp == serial ? s->peak_bytes : s->live_bytes;
	*count = s->peak_stamp == serial ? s->peak_count : s->live_count;
}

/* Stacks per chunk of the stack array (a smaller array is one chunk). */
#define HEAP_STACK_CHUNK ((uint32_t)1024)

struct heap_stack_chunk; /* heap.c: a reference count and its stacks */

/* What a heap charges its owner for (heap_charge_to). */
enum heap_charged {
	HEAP_CHARGED_BLOCKS,
	HEAP_CHARGED_STACKS,
};
/* Takes n (> 0) blocks or stacks: 0, or < 0 when refused (unless force:
 * never refused); or gives back -n (n < 0, never refused). */
typedef int (*heap_charge_fn)(void *arg, enum heap_charged what, long n, bool force);
#define HEAP_GRANT_BLOCKS ((size_t)4096)
#define HEAP_GRANT_STACKS ((size_t)256)

struct heap_block {
	uint64_t addr; /* 0 = empty slot */
	uint64_t meta; /* stack << 40 | size (size saturates at HEAP_SIZE_BIG) */
};

/* Slots per chunk of a table's array (a smaller table is one chunk). */
#define HEAP_CHUNK ((size_t)4096)

struct heap_chunk; /* heap.c: a reference count and HEAP_CHUNK slots */

/* One open-addressing table; while it changes size, `old` is the array
 * being emptied into `slots` (heap.c). An array is cap / HEAP_CHUNK
 * pointers to chunks, NULL for a chunk never written. */
struct heap_table {
	/* cap slots: a power of two up to HEAP_CHUNK, then a multiple of it */
	struct heap_chunk **slots;
	size_t cap;
	struct heap_chunk **old; /* NULL but while moving */
	size_t oldcap;
	size_t start, moved; /* old's slots start .. start + moved - 1 (mod oldcap) are moved */
};

struct heap {
	struct heap_table tab; /* the live blocks */
	size_t count;          /* live blocks in the table: with sampling, the samples */
	size_t temps;          /* of them, temporaries not in it (heap_apply_temp_alloc) */
	struct heap_table big; /* blocks of HEAP_SIZE_BIG bytes or more: addr, size */
	size_t nbig;
	uint64_t key;                     /* the hash key of both tables */
	uint64_t probes;                  /* slots examined by lookups, inserts and deletions */
	struct heap_stack_chunk **stacks; /* by the agent's stack id: heap_stack_at */
	uint32_t nstacks;                 /* ids 0 .. nstacks-1 allocated */
	uint32_t ndefined;
	size_t frames_bytes;   /* the frames the stacks hold */
	uint64_t sample_bytes; /* the agent's sampling rate, 0 = every allocation */
	uint64_t current, peak;
	/* Counts the moments current reached a new peak (and reset-peak): each
	 * stack keeps its figures of the last one (heap_stack.peak_*) the
	 * first time it changes after it, which is all a view of the heap at
	 * its peak needs. */
	uint64_t peak_serial;
	uint64_t blocks; /* live blocks: count, or with sampling its estimate */
	uint64_t allocations, frees;
	uint32_t current_frac, blocks_frac, allocations_frac, frees_frac;
	uint64_t unknown_frees; /* frees of blocks never seen allocated */
	uint64_t replaced;      /* allocations at an address still live */
	uint64_t last_seq;
	size_t max_blocks, max_stacks;
	int limit_reached;     /* enum heap_limit bits */
	heap_charge_fn charge; /* NULL: no bound shared with other heaps */
	void *charge_arg;
	size_t granted_blocks, granted_stacks; /* taken from charge */
	uint32_t trim_next, trim_keep;         /* heap_trim's pass over the stacks: 0 = none */
};

/* Stacks heap_trim and each heap_step go over. */
#define HEAP_TRIM_STEP ((size_t)65536)

/* Caller owns *h. max_* of 0 means the defaults (64M blocks, 1M stacks).
 * The hash key is random (getrandom). */
void heap_init(struct heap *h, size_t max_blocks, size_t max_stacks);
/* heap_init with a given hash key: for tests that need two heaps to place
 * an address alike. */
void heap_init_keyed(struct heap *h, size_t max_blocks, size_t max_stacks, uint64_t key);
/* The home slot of addr in a table of cap slots (any number) under h's
 * key: for tests that build probe chains on purpose. */
size_t heap_home(const struct heap *h, uint64_t addr, size_t cap);
/* Gives back what h holds of the grants, then closes it. */
void heap_close(struct heap *h);
/* From now on h takes its blocks and stacks from fn, first what it holds
 * already (forced: counted even past the bounds, which then refuse h's
 * next ones until it is back within). h had no charge. */
void heap_charge_to(struct heap *h, heap_charge_fn fn, void *arg);
/* dst becomes a copy of src (a fork child's heap as its parent's was at
 * the fork): the blocks' and the stacks' chunks are shared copy on write,
 * O(slots / HEAP_CHUNK + stacks / HEAP_STACK_CHUNK); the frames, which
 * never change, are shared by the chunks that hold them. Either may change
 * or close first. The copy is charged to nobody. */
void heap_clone(struct heap *dst, const struct heap *src);
/* The process is gone: gives back what answers about it no longer need (the
 * block table sized for its peak, the frames of stacks that never
 * allocated).
 * Nothing may be applied afterwards. A large table shrinks, and many stacks
 * are let go, step by step (heap_step). */
void heap_trim(struct heap *h);
/* Moves up to `slots` slots of a table that is changing size (every event
 * moves a few; the daemon's timer calls this for idle and exited
 * processes), and goes on with heap_trim's pass over the stacks
 * (HEAP_TRIM_STEP of them). True when nothing is under way any more. */
bool heap_step(struct heap *h, size_t slots);
/* Weighs the blocks of a process sampled every `rate` bytes on average (0 =
 * every allocation is recorded). Before the first event only: a block's
 * weight must not change between its allocation and its free. */
void heap_set_sampling(struct heap *h, uint64_t rate);

/* Defines stack `id` (>= 1). -EBADMSG when the id was already defined (the
 * agent never does that); 0 when past max_stacks (the id then reads as the
 * unknown stack, and limit_reached records it). Frames are copied. */
int heap_define_stack(struct heap *h, uint32_t id, const uint64_t *frames, uint32_t n);
/* Applies one event. -EBADMSG if its seq is not greater than the last one or
 * it names a stack id that was never defined. */
int heap_apply(struct heap *h, const struct proto_event *ev);
/* A temporary: an allocation and its free that the caller knows nothing
 * else touches in between (drain.c pairs them in one ring's records). They
 * change the model exactly as heap_apply of the two would, but the block
 * takes no slot in the table:
 *   heap_apply_temp_alloc: 1 when the block counts (*stack is then the stack
 *     it counts at: 0 when past max_stacks), 0 when a limit left it out,
 *     -EBADMSG as heap_apply; fresh: the caller knows the table holds no
 *     block at the address (the last record naming it was a free), so it
 *     is not looked for;
 *   heap_apply_temp_free: its free, with the size, that stack, whether
 *     it counted and whether the free's record says temporary (a
 *     temporary in heaptrack's sense, counted in the stack's `temporary`:
 *     not the same as a pair applied this way);
 *   heap_temp_keep: the free will not come as a temporary (the reading stops
 *     between the two): the block takes its slot, as heap_apply would have
 *     given it.
 * Between the two, the model must not be read (captures, forks, lookups). */
int heap_apply_temp_alloc(struct heap *h, const struct proto_event *ev, bool fresh,
                          uint32_t *stack);
int heap_apply_temp_free(struct heap *h, uint64_t seq, uint64_t size, uint32_t stack, bool counted,
                         bool temporary);
void heap_temp_keep(struct heap *h, uint64_t addr, uint64_t size, uint32_t stack);
/* A temporary whose free comes before any other allocation (of any ring),
 * with every allocation recorded (sample_bytes 0): the two applied at once,
 * at the allocation. The model ends as heap_apply of the two would leave
 * it: the peak, if the block makes one, is taken with the block live; the
 * live figures do not move. Returns as heap_apply_temp_alloc; the free's
 * record then only takes its place in the sequence (heap_apply_pair_free:
 * counted 0 makes it an unknown free, as heap_apply_temp_free). When the
 * reading stops between the two, heap_pair_unfuse takes the free back and
 * gives the block its slot. */
int heap_apply_pair(struct heap *h, const struct proto_event *ev, bool fresh, bool temporary,
                    uint32_t *stack);
int heap_apply_pair_free(struct heap *h, uint64_t seq, bool counted);
void heap_pair_unfuse(struct heap *h, uint64_t addr, uint64_t size, uint32_t stack, bool temporary);

/* The common case of a temporary's two records, in fewer steps: every
 * allocation recorded, no table being moved, the stack's statistics not
 * shared with a copy (and, for an allocation, the stack defined, no limit
 * near, no block at the address: fresh, or the table holds none). Each
 * changes the model exactly as heap_apply_temp_alloc (with *stack the
 * record's stack) or heap_apply_temp_free of a counted block would and
 * returns 1; or changes nothing and returns 0, and the caller takes the
 * general way. The caller has checked the record: its address is not 0, a
 * FREE's size is 0 or PROTO_FREE_TEMPORARY. */
int heap_temp_alloc_fast(struct heap *h, uint64_t seq, uint64_t addr, uint64_t size, uint32_t stack,
                         bool fresh);
int heap_temp_free_fast(struct heap *h, uint64_t seq, uint64_t size, uint32_t stack,
                        bool temporary);
/* The same for heap_apply_pair (on the same conditions) and
 * heap_apply_pair_free of a pair that counted. */
int heap_pair_fast(struct heap *h, uint64_t seq, uint64_t addr, uint64_t size, uint32_t stack,
                   bool fresh, bool temporary);
int heap_pair_free_fast(struct heap *h, uint64_t seq);

void heap_reset_peak(struct heap *h);

/* Stack `id` (statistics and frames); an id past nstacks or never written
 * reads as an undefined stack with nothing counted. Valid until h changes. */
const struct heap_stack *heap_stack_at(const struct heap *h, uint32_t id);

/* The size and stack of a live block; -ENOENT if not live. */
int heap_lookup(const struct heap *h, uint64_t addr, uint64_t *size, uint32_t *stack);
/* Visits every live block (for "largest blocks" queries). */
typedef void (*heap_visit_fn)(void *arg, uint64_t addr, uint64_t size, uint32_t stack);
void heap_foreach(const struct heap *h, heap_visit_fn fn, void *arg);
/* Asks the cache for the slot where a lookup of addr starts: the drain calls
 * it a few records ahead of the one it applies, so the slot is there when
 * heap_apply needs it. Nothing for a table of HEAP_PREFETCH_MIN_CAP slots
 * or fewer (1 MiB), which the cache holds by itself. */
void heap_prefetch(const struct heap *h, uint64_t addr);
/* The same for stack id's statistics, which an ALLOC updates; worth it
 * past HEAP_PREFETCH_MIN_STACKS stacks (104 bytes each: 400 KiB, about a
 * core's L2), below which they stay in the cache by themselves
 * (bench/ingest -l 20000 -r 90 -s 20000: 40.3 -> 33.0 ns per record; with
 * 1,000 stacks no gain). */
void heap_prefetch_stack(const struct heap *h, uint32_t id);
#define HEAP_PREFETCH_MIN_STACKS ((uint32_t)4096)
#define HEAP_PREFETCH_MIN_CAP    ((size_t)1 << 16)
/* Slot i of t's array `slots` (empty if never written): for tests that
 * look at where blocks landed. */
const struct heap_block *heap_table_slot(const struct heap_table *t, size_t i);

/* The live blocks and the stacks of a heap frozen at one moment, for a
 * capture: taken on the loop in O(slots / HEAP_CHUNK + stacks /
 * HEAP_STACK_CHUNK), then read and closed on any one thread while the heap
 * goes on (its writes copy the chunks the view shares). Holds memory only
 * for what the heap changes meanwhile, and the frames of stacks the heap
 * drops meanwhile. */
struct heap_view {
	struct heap h; /* the tables, stacks and key; no counters */
};
/* blocks: whether the view has the blocks too (else it visits none). */
void heap_view_take(struct heap *h, struct heap_view *v, bool blocks);
/* Visits every block of the view: as heap_foreach at the moment taken. */
void heap_view_foreach(const struct heap_view *v, heap_visit_fn fn, void *arg);
/* The stacks as heap_stack_at at the moment taken: ids below
 * heap_view_nstacks. */
uint32_t heap_view_nstacks(const struct heap_view *v);
const struct heap_stack *heap_view_stack(const struct heap_view *v, uint32_t id);
/* The heap's peak_serial when the view was taken (heap_stack_at_peak). */
uint64_t heap_view_peak_serial(const struct heap_view *v);
void heap_view_close(struct heap_view *v);
/* What the view may come to hold: every chunk it shares, once the heap
 * has rewritten them all, and every frame array of its stacks. */
size_t heap_view_memory(const struct heap_view *v);
/* The part of it that is stacks and frames. */
size_t heap_view_stacks_memory(const struct heap_view *v);

/* A stack's frames (heap_stack.frames, never changed once defined) kept
 * beyond the heap: a reference taken on the loop, given back on any thread;
 * the last one frees them. NULL is a no-op. */
uint64_t *heap_frames_ref(uint64_t *frames);
void heap_frames_unref(uint64_t *frames);

/* Bytes the model itself uses (table, stacks, frames): O(1), every chunk
 * counted, shared or not (a copy may come to hold all of them). */
size_t heap_memory(const struct heap *h);

#endif
