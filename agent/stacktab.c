/* stacktab.c - lock-free interning of stacks (see stacktab.h). */
#include "stacktab.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "sysdep.h"

#define NSLOTS     (STACKTAB_CAP * 2u) /* load factor <= 0.5 */
#define ARENA_SIZE SHM_ARENA

enum { ST_PENDING = SHM_STACK_PENDING, ST_READY = SHM_STACK_READY, ST_DEAD = SHM_STACK_DEAD };

/* The entry as the region holds it (shm.h): header, then the frames. */
struct entry {
	struct shm_stack h;
	uint64_t frames[];
};

/* The hash index is the process's own; the entries, their offsets and
 * states are in the shared region, where the daemon reads them. */
static _Atomic uint32_t *slots;   /* hash -> id, 0 = empty */
static _Atomic uint64_t *offsets; /* id -> byte offset in arena, 0 = unset */
static _Atomic uint8_t *states;   /* id -> ST_* */
static char *arena;
static _Atomic uint64_t arena_used = 64; /* offset 0 means "unset" */
static _Atomic uint32_t next_id = 1;

static void point_at(char *base)
{
	offsets = (_Atomic uint64_t *)(base + SHM_OFF_OFFSETS);
	states = (_Atomic uint8_t *)(base + SHM_OFF_STATES);
	arena = base + SHM_OFF_ARENA;
}

int stacktab_init(char *base)
{
	if (slots != NULL)
		return 0;
	slots = sysdep_map(NSLOTS * sizeof(*slots), 1);
	if (slots == NULL)
		return -ENOMEM;
	point_at(base);
	return 0;
}

void stacktab_reset(char *base)
{
	/* Private anonymous memory: MADV_DONTNEED leaves it zero (empty). */
	if (slots != NULL)
		madvise((void *)slots, NSLOTS * sizeof(*slots), MADV_DONTNEED);
	atomic_store(&arena_used, 64);
	atomic_store(&next_id, 1);
	point_at(base);
}

void stacktab_move(char *base)
{
	uint32_t n = stacktab_count();
	uint64_t used = atomic_load(&arena_used);
	char *to_arena = base + SHM_OFF_ARENA;

	stacktab_fixup_after_fork();
	memcpy(base + SHM_OFF_OFFSETS, (const void *)offsets, (n + 1) * sizeof(*offsets));
	memcpy(base + SHM_OFF_STATES, (const void *)states, n + 1);
	memcpy(to_arena, arena, used);
	point_at(base);
}

/* Each frame is mixed independently (no multiply chain from one frame to the
 * next), so the multiplies overlap in the pipeline; the position is folded in
 * so that permutations differ. Collisions only cost a compare. */
static uint64_t hash_frames(const uint64_t *f, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	for (uint32_t i = 0; i < n; i++)
		h ^= (f[i] + (uint64_t)i * 0x9e3779b97f4a7c15ull) * 0xff51afd7ed558ccdull;
	h ^= h >> 29;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 32;
	return h | 1;
}

static struct entry *entry_of(uint32_t id)
{
	uint64_t off = atomic_load_explicit(&offsets[id], memory_order_acquire);
	return off ? (struct entry *)(arena + off) : NULL;
}

static int same(const struct entry *e, uint64_t h, const uint64_t *f, uint32_t n)
{
	return e->h.hash == h && e->h.nframes == n && memcmp(e->frames, f, n * sizeof(*f)) == 0;
}

uint32_t stacktab_intern(const uint64_t *frames, uint32_t n)
{
	if (slots == NULL || n == 0)
		return 0;
	uint64_t h = hash_frames(frames, n);
	uint32_t mask = NSLOTS - 1, i = (uint32_t)(h >> 20) & mask;
	uint32_t mine = 0;

	for (uint32_t probes = 0; probes < NSLOTS; probes++, i = (i + 1) & mask) {
		uint32_t id = atomic_load_explicit(&slots[i], memory_order_acquire);
		if (id == 0) {
			if (mine == 0) {
				/* Full: do not even take a number, or next_id would
				 * wrap after enough misses and hand out live ids. */
				if (atomic_load_explicit(&next_id, memory_order_relaxed) >
				    STACKTAB_CAP)
					return 0;
				/* Write our entry completely before racing for the slot. */
				mine = atomic_fetch_add(&next_id, 1);
				if (mine > STACKTAB_CAP)
					return 0;
				size_t sz = sizeof(struct entry) + n * sizeof(uint64_t);
				uint64_t off =
				    atomic_fetch_add(&arena_used, (sz + 15) & ~(size_t)15);
				if (off + sz > ARENA_SIZE) {
					atomic_store(&states[mine], ST_DEAD);
					return 0;
				}
				struct entry *e = (struct entry *)(arena + off);
				e->h.hash = h;
				e->h.nframes = n;
				memcpy(e->frames, frames, n * sizeof(*frames));
				atomic_store_explicit(&offsets[mine], off, memory_order_release);
				atomic_store_explicit(&states[mine], ST_READY,
				                      memory_order_release);
			}
			uint32_t expect = 0;
			if (atomic_compare_exchange_strong(&slots[i], &expect, mine))
				return mine;
			id = expect;
			/* Lost the race: our entry stays an unused (but valid) id. */
		}
		const struct entry *e = entry_of(id);
		if (e != NULL && same(e, h, frames, n))
			return id;
	}
	return 0;
}

uint32_t stacktab_count(void)
{
	uint32_t n = atomic_load(&next_id) - 1;
	return n > STACKTAB_CAP ? STACKTAB_CAP : n;
}

int stacktab_get(uint32_t id, const uint64_t **frames, uint32_t *n)
{
	uint8_t st = atomic_load_explicit(&states[id], memory_order_acquire);
	if (st == ST_DEAD)
		return -1;
	if (st != ST_READY)
		return 0;
	const struct entry *e = entry_of(id);
	*frames = e->frames;
	*n = e->h.nframes;
	return 1;
}

void stacktab_fixup_after_fork(void)
{
	uint32_t n = stacktab_count();
	for (uint32_t id = 1; id <= n; id++)
		if (atomic_load(&states[id]) != ST_READY)
			atomic_store(&states[id], ST_DEAD);
}
