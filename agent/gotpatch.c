/* gotpatch.c - rewriting global offset tables (see gotpatch.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "gotpatch.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT  R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT  R_AARCH64_GLOB_DAT
#else
#error "gotpatch.c knows the relocations of x86-64 and AArch64 only"
#endif

/* Entries patched, with what they held and what was written. */
#define SAVED_MAX 8192
static struct saved {
	void **slot;
	void *was, *now;
	uintptr_t relro_lo, relro_hi; /* the slot's RELRO segment, or 0, 0 */
	/* The object the slot is in (dl_iterate_phdr's dlpi_addr and
	 * dlpi_phdr): an entry of an object unloaded since is forgotten, never
	 * written (its page may be unmapped, or another object's). */
	uintptr_t obj;
	const void *phdr;
	bool seen; /* its object was found loaded in this walk */
} saved[SAVED_MAX];
static size_t nsaved;

/* A dynamic entry's address: the loader rewrites most of them to run-time
 * addresses in place, but not on every architecture or for every tag. */
static uintptr_t dyn_addr(uintptr_t base, ElfW(Addr) v)
{
	return v < base ? base + v : v;
}

/* Stores v in *slot, making a RELRO page writable for the store. */
static int store(void **slot, void *v, uintptr_t relro_lo, uintptr_t relro_hi)
{
	uintptr_t a = (uintptr_t)slot, page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = a & ~(page - 1);
	bool relro = a >= relro_lo && a < relro_hi;

	if (relro && mprotect((void *)lo, page, PROT_READ | PROT_WRITE) != 0)
		return -errno;
	__atomic_store_n(slot, v, __ATOMIC_RELEASE);
	if (relro && mprotect((void *)lo, page, PROT_READ) != 0)
		return -errno;
	return 0;
}

/* Patches the relocations [rel, rel + size) of one object. */
static int patch_relas(const struct dl_phdr_info *info, const ElfW(Rela) * rel, size_t size,
                       const ElfW(Sym) * syms, const char *strs, const struct gotpatch_hook *hooks,
                       size_t nhooks, uintptr_t relro_lo, uintptr_t relro_hi)
{
	uintptr_t base = info->dlpi_addr;
	int changed = 0;

	for (size_t i = 0; i < size / sizeof(*rel); i++) {
		unsigned long type = ELF64_R_TYPE(rel[i].r_info);
		if (type != R_JUMP_SLOT && type != R_GLOB_DAT)
			continue;
		const char *name = strs + syms[ELF64_R_SYM(rel[i].r_info)].st_name;
		for (size_t h = 0; h < nhooks; h++) {
			if (strcmp(name, hooks[h].name) != 0)
				continue;
			void **slot = (void **)(base + rel[i].r_offset);
			void *was = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
			if (was == hooks[h].replacement)
				break;
			if (nsaved == SAVED_MAX)
				return -ENOSPC;
			int rc = store(slot, hooks[h].replacement, relro_lo, relro_hi);
			if (rc < 0)
				return rc;
			saved[nsaved++] =
			    (struct saved){slot,     was,  hooks[h].replacement, relro_lo,
			                   relro_hi, base, info->dlpi_phdr,      true};
			changed++;
			break;
		}
	}
	return changed;
}

int gotpatch_object(const struct dl_phdr_info *info, const struct gotpatch_hook *hooks,
                    size_t nhooks)
{
	uintptr_t base = info->dlpi_addr, relro_lo = 0, relro_hi = 0;
	const ElfW(Dyn) *dyn = NULL;

	if (info->dlpi_name != NULL && strstr(info->dlpi_name, "linux-vdso") != NULL)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(base + ph->p_vaddr);
		else if (ph->p_type == PT_GNU_RELRO) {
			relro_lo = base + ph->p_vaddr;
			relro_hi = relro_lo + ph->p_memsz;
		}
	}
	if (dyn == NULL)
		return 0;
	const ElfW(Sym) *syms = NULL;
	const char *strs = NULL;
	const ElfW(Rela) *jmprel = NULL, *rela = NULL;
	size_t jmpsz = 0, relasz = 0;
	bool plt_rela = true;
	for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
		switch (d->d_tag) {
		case DT_SYMTAB:
			syms = (const ElfW(Sym) *)dyn_addr(base, d->d_un.d_ptr);
			break;
		case DT_STRTAB:
			strs = (const char *)dyn_addr(base, d->d_un.d_ptr);
			break;
		case DT_JMPREL:
			jmprel = (const ElfW(Rela) *)dyn_addr(base, d->d_un.d_ptr);
			break;
		case DT_PLTRELSZ:
			jmpsz = d->d_un.d_val;
			break;
		case DT_RELA:
			rela = (const ElfW(Rela) *)dyn_addr(base, d->d_un.d_ptr);
			break;
		case DT_RELASZ:
			relasz = d->d_un.d_val;
			break;
		case DT_PLTREL:
			plt_rela = d->d_un.d_val == DT_RELA;
			break;
		default:
			break;
		}
	}
	if (syms == NULL || strs == NULL)
		return 0;
	int total = 0, rc;
	if (jmprel != NULL && plt_rela) {
		rc =
		    patch_relas(info, jmprel, jmpsz, syms, strs, hooks, nhooks, relro_lo, relro_hi);
		if (rc < 0)
			return rc;
		total += rc;
	}
	if (rela != NULL) {
		rc = patch_relas(info, rela, relasz, syms, strs, hooks, nhooks, relro_lo, relro_hi);
		if (rc < 0)
			return rc;
		total += rc;
	}
	return total;
}

struct walk {
	const struct gotpatch_hook *hooks;
	size_t nhooks;
	uintptr_t skip_lo, skip_hi;
	int changed, err;
};

/* Marks the saved entries of the object `info` describes as loaded. */
static void mark_seen(const struct dl_phdr_info *info)
{
	for (size_t i = 0; i < nsaved; i++)
		if (saved[i].obj == info->dlpi_addr && saved[i].phdr == info->dlpi_phdr)
			saved[i].seen = true;
}

/* Forgets the entries whose object was not seen loaded. */
static void forget_unseen(void)
{
	size_t kept = 0;
	for (size_t i = 0; i < nsaved; i++)
		if (saved[i].seen)
			saved[kept++] = saved[i];
	nsaved = kept;
}

static int each(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *w = arg;
	(void)size;
	mark_seen(info);
	if (info->dlpi_addr >= w->skip_lo && info->dlpi_addr < w->skip_hi)
		return 0;
	int rc = gotpatch_object(info, w->hooks, w->nhooks);
	if (rc < 0 && w->err == 0)
		w->err = rc;
	else if (rc > 0)
		w->changed += rc;
	return 0;
}

int gotpatch_all(const struct gotpatch_hook *hooks, size_t nhooks, uintptr_t skip_lo,
                 uintptr_t skip_hi)
{
	struct walk w = {hooks, nhooks, skip_lo, skip_hi, 0, 0};
	for (size_t i = 0; i < nsaved; i++)
		saved[i].seen = false;
	/* The entries of objects unloaded since the last walk go first: they
	 * must not fill the table (a program that loads and unloads plugins). */
	dl_iterate_phdr(each, &w);
	forget_unseen();
	return w.err < 0 ? w.err : w.changed;
}

/* dl_iterate_phdr holds the loader's lock during the walk: no object is
 * unloaded while its entries are put back. */
static int each_restore(struct dl_phdr_info *info, size_t size, void *arg)
{
	int *restored = arg;
	(void)size;
	for (size_t i = nsaved; i-- > 0;) {
		struct saved *s = &saved[i];
		if (s->seen || s->obj != info->dlpi_addr || s->phdr != info->dlpi_phdr)
			continue;
		s->seen = true;
		/* An entry rewritten since (the loader, or the program) keeps
		 * what it holds now. */
		if (__atomic_load_n(s->slot, __ATOMIC_ACQUIRE) == s->now &&
		    store(s->slot, s->was, s->relro_lo, s->relro_hi) == 0)
			(*restored)++;
	}
	return 0;
}

int gotpatch_restore(void)
{
	int restored = 0;

	for (size_t i = 0; i < nsaved; i++)
		saved[i].seen = false;
	dl_iterate_phdr(each_restore, &restored);
	nsaved = 0;
	return restored;
}
