/*
 * cfi.h - a stack walker of our own, for x86-64: the unwind rules of
 * .eh_frame, compiled once per return address into a per-thread cache.
 *
 * libunwind's unw_backtrace walks the same tables but pays for its
 * generality on every frame. This walker handles the rules compilers emit
 * for ordinary code: the CFA is RSP or RBP plus an offset, the return
 * address is at CFA-8, RBP is unchanged or saved at CFA+N. A frame is one
 * lookup in a direct-mapped per-thread table keyed by its address and, on a
 * miss, one search of the object's .eh_frame_hdr and one run of the FDE's
 * program up to the address.
 *
 * Whatever it does not handle, it does not guess: an address without an
 * FDE, a CFA defined by an expression (signal trampolines, stack
 * realignment), a register other than RSP or RBP as the CFA's base, RBP or
 * the return address kept in a register or computed, a read outside the
 * thread's stack, a frame that does not move up the stack: cfi_backtrace
 * returns -1 and the caller walks the whole stack with libunwind instead.
 * A walk ends where the return address is undefined (_start, a thread's
 * start), as libunwind's does.
 *
 * The cache knows nothing of unloading: cfi_forget() (after dlclose) makes
 * every thread's table start empty at its next walk. Not async-signal-safe
 * on a miss (dl_iterate_phdr); a hit takes no lock and calls nothing.
 */
#ifndef MEMTRACE_AGENT_CFI_H
#define MEMTRACE_AGENT_CFI_H

#include <stdint.h>

struct cfi_cache;

/* A frame to walk from: the return address into it, and the registers
 * SP and RBP as they were at that call (SP just past the return address). */
struct cfi_regs {
	uintptr_t ip, sp, bp;
};

/* Fills out[0 .. max) with start->ip and the return addresses of its
 * callers, outwards, walking only within [stack_lo, stack_hi). *cache is
 * the thread's table, made on first use (mmap) and kept by the caller.
 * Returns the number of addresses, or -1 when the walk needs libunwind. */
int cfi_backtrace(struct cfi_cache **cache, uintptr_t stack_lo, uintptr_t stack_hi,
                  const struct cfi_regs *start, uintptr_t *out, int max);
/*
 * The walk memo: the whole walks a thread made last, with the stack id each
 * was interned as. A walk is a function of its start (IP, SP, and RBP where
 * a step reads it) and of the stack words it read, so a start equal to a
 * remembered one whose words all still hold the values read is the same
 * walk: its id, without a step or a lookup or a hash. A remembered walk
 * reads one word per frame, two where the caller's saved RBP is used later.
 *
 * cfi_recall returns that id, or 0; cfi_remember(c, id) keeps the thread's
 * last successful cfi_backtrace as id. Both are per thread, like the table.
 */
uint32_t cfi_recall(struct cfi_cache *cache, const struct cfi_regs *start, int max);
void cfi_remember(struct cfi_cache *cache, uint32_t id);
/* MEMTRACE_UNWIND_CHECK found the walk recalled from start wrong: forget it. */
void cfi_unlearn(struct cfi_cache *cache, const struct cfi_regs *start, int max);
/* Gives back a thread's table. */
void cfi_cache_free(struct cfi_cache *cache);
/* Code was unloaded: every table is stale. */
void cfi_forget(void);

#endif
