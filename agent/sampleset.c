/* sampleset.c - the live sampled addresses (see sampleset.h). */
#include "sampleset.h"

#include <errno.h>
#include <string.h>

#include "sysdep.h"

#define FIRST_CAP ((size_t)4096)

_Atomic uint64_t *g_sampleset_filter;
/* Live sampled addresses per filter bit: read and written under the lock. */
static uint32_t *slot_count;

static atomic_flag lock = ATOMIC_FLAG_INIT;
static uintptr_t *table; /* 0 = empty; cap a power of two */
static size_t cap, count;
static bool overflow = true; /* until set up */

static void lock_take(void)
{
	while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire))
		__builtin_ia32_pause();
}

static void lock_give(void)
{
	atomic_flag_clear_explicit(&lock, memory_order_release);
}

static size_t home(uintptr_t addr, size_t n)
{
	uint64_t h = (uint64_t)addr;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (size_t)h & (n - 1);
}

static void put(uintptr_t *t, size_t n, uintptr_t addr)
{
	size_t i = home(addr, n);
	while (t[i] != 0)
		i = (i + 1) & (n - 1);
	t[i] = addr;
}

int sampleset_init(void)
{
	_Atomic uint64_t *f;

	if (g_sampleset_filter != NULL)
		return 0;
	f = sysdep_map(SAMPLESET_FILTER / 8, 0);
	slot_count = sysdep_map(SAMPLESET_FILTER * sizeof(*slot_count), 1);
	table = sysdep_map(FIRST_CAP * sizeof(*table), 0);
	if (f == NULL || table == NULL || slot_count == NULL) {
		if (f != NULL)
			sysdep_unmap((void *)f, SAMPLESET_FILTER / 8);
		if (slot_count != NULL)
			sysdep_unmap(slot_count, SAMPLESET_FILTER * sizeof(*slot_count));
		if (table != NULL)
			sysdep_unmap(table, FIRST_CAP * sizeof(*table));
		table = NULL;
		slot_count = NULL;
		return -ENOMEM;
	}
	cap = FIRST_CAP;
	count = 0;
	overflow = false;
	g_sampleset_filter = f;
	return 0;
}

/* Under the lock: room for one more at half load, or overflow. */
static bool room(void)
{
	if ((count + 1) * 2 <= cap)
		return true;
	size_t ncap = cap * 2;
	uintptr_t *nt = sysdep_map(ncap * sizeof(*nt), 0);
	if (nt == NULL) {
		/* From now on every free is sent: the filter goes (it would
		 * miss what is added no more). */
		overflow = true;
		__atomic_store_n(&g_sampleset_filter, NULL, __ATOMIC_RELEASE);
		return false;
	}
	for (size_t i = 0; i < cap; i++)
		if (table[i] != 0)
			put(nt, ncap, table[i]);
	sysdep_unmap(table, cap * sizeof(*table));
	table = nt;
	cap = ncap;
	return true;
}

void sampleset_add(uintptr_t addr)
{
	if (__atomic_load_n(&g_sampleset_filter, __ATOMIC_RELAXED) == NULL || addr == 0)
		return;
	lock_take();
	if (!overflow && room()) {
		size_t b = sampleset_slot(addr);
		put(table, cap, addr);
		count++;
		if (slot_count[b]++ == 0)
			atomic_fetch_or_explicit(&g_sampleset_filter[b / 64],
			                         (uint64_t)1 << (b % 64), memory_order_relaxed);
	}
	lock_give();
}

bool sampleset_take(uintptr_t addr)
{
	bool found = false;

	if (!sampleset_maybe(addr))
		return false;
	if (__atomic_load_n(&g_sampleset_filter, __ATOMIC_RELAXED) == NULL)
		return true;
	lock_take();
	if (overflow) {
		lock_give();
		return true;
	}
	size_t mask = cap - 1, i = home(addr, cap);
	while (table[i] != 0 && table[i] != addr)
		i = (i + 1) & mask;
	if (table[i] == addr) {
		found = true;
		count--;
		size_t b = sampleset_slot(addr);
		if (--slot_count[b] == 0)
			atomic_fetch_and_explicit(&g_sampleset_filter[b / 64],
			                          ~((uint64_t)1 << (b % 64)), memory_order_relaxed);
		/* Backward-shift deletion: every entry after the hole whose home
		 * is not between the hole and it moves into the hole. */
		size_t hole = i;
		for (size_t j = (i + 1) & mask; table[j] != 0; j = (j + 1) & mask) {
			size_t h = home(table[j], cap);
			if (((j - h) & mask) >= ((j - hole) & mask)) {
				table[hole] = table[j];
				hole = j;
			}
		}
		table[hole] = 0;
	}
	lock_give();
	return found;
}

void sampleset_after_fork_child(void)
{
	atomic_flag_clear_explicit(&lock, memory_order_relaxed);
}

size_t sampleset_count(void)
{
	lock_take();
	size_t n = count;
	lock_give();
	return n;
}

bool sampleset_overflowed(void)
{
	return __atomic_load_n(&g_sampleset_filter, __ATOMIC_RELAXED) == NULL || overflow;
}
