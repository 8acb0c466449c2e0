/*
 * gotpatch.h - rewriting the global offset tables of the loaded objects,
 * so that calls already bound to one function go to another.
 *
 * An agent loaded into a running process (memtracectl attach) is not
 * interposed: every object's calls to malloc were bound, through its GOT,
 * to the allocator's definition before the agent arrived. Rewriting those
 * entries (the JUMP_SLOT relocations of the PLT, and the GLOB_DAT ones of
 * code built with -fno-plt or of a function's address taken) sends the
 * calls to the agent's hooks; restoring them sends them back.
 *
 * Each entry patched is remembered with the value it held, so that
 * gotpatch_restore puts back exactly what was there. A GOT in a RELRO
 * segment is made writable for the write and read-only again after it.
 * x86-64 and AArch64 RELA objects; the vDSO and the objects in the skipped
 * address range are left alone. Not thread-safe against itself: one caller
 * at a time (the agent holds its lock); safe against other threads calling
 * through the entries meanwhile (each entry is one aligned 8-byte store).
 */
#ifndef MEMTRACE_GOTPATCH_H
#define MEMTRACE_GOTPATCH_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

struct gotpatch_hook {
	const char *name;  /* a function's symbol name */
	void *replacement; /* what its entries are made to hold */
};

/* Patches the entries of every hook's symbol in one object (the info of
 * dl_iterate_phdr). Returns how many entries it changed, or -errno (an
 * mprotect failed, or the table of saved entries is full: what was patched
 * before stays patched and remembered). An entry that already holds its
 * replacement is left and not counted. */
int gotpatch_object(const struct dl_phdr_info *info, const struct gotpatch_hook *hooks,
                    size_t nhooks);

/* gotpatch_object for every loaded object whose base address is not in
 * [skip_lo, skip_hi) (the agent's own); the saved entries of objects
 * unloaded since are forgotten first. Returns the entries changed in
 * all, or -errno of the first failure (the others are still patched). */
int gotpatch_all(const struct gotpatch_hook *hooks, size_t nhooks, uintptr_t skip_lo,
                 uintptr_t skip_hi);

/* Puts back every entry patched so far that still holds what was written
 * there, in the objects still loaded, and forgets them all (an unloaded
 * object's entries are never touched). Returns how many it restored. */
int gotpatch_restore(void);

#endif
