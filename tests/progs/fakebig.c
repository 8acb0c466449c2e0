/*
 * fakebig.c - an allocator under the agent that grants any size: for
 * preloading after it (LD_PRELOAD=libmemtrace.so:libfakebig.so), so the
 * agent's "real" malloc is this one and the agent records every block it
 * hands out, of whatever size the program asked for.
 *
 * A real malloc refuses 1 TiB; a hostile agent may claim any size, and the
 * tests need the daemon to see blocks that large in quantity (a real agent
 * in a real program, not crafted frames). So a request of FAKEBIG_MIN bytes
 * or more gets an address in a region reserved PROT_NONE, 16 bytes from the
 * previous one, never backed by memory: the program must never touch it.
 * free() of such an address does nothing. Everything else goes to glibc's
 * own functions (__libc_malloc and friends), so the rest of the program
 * (and the agent's dlsym) runs as usual.
 *
 * For the benchmark (bench/stall.sh), two variables change that, read at
 * the first large request: FAKEBIG_MIN (bytes) lowers the size from which
 * requests are granted so; FAKEBIG_SHIFT=K hands out the addresses
 * 1 << K, 2 << K, 3 << K ... instead, nothing reserved (they may not even be
 * canonical: the agent only records them): the pattern that piles up in a
 * hash table whose hash the agent could predict.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define FAKEBIG_MIN  ((size_t)1 << 39)
#define FAKEBIG_SPAN ((size_t)1 << 30) /* addresses reserved: 64 M blocks */

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

static char *base;
static size_t next;
static size_t min_size = FAKEBIG_MIN;
static unsigned shift;   /* 0: addresses in the reserved region */
static uintptr_t nshift; /* addresses handed out with the shift */
static int configured;

/* getenv and strtoul do not allocate. */
static void configure(void)
{
	const char *m = getenv("FAKEBIG_MIN"), *k = getenv("FAKEBIG_SHIFT");
	if (m != NULL)
		min_size = strtoul(m, NULL, 10);
	if (k != NULL)
		shift = (unsigned)strtoul(k, NULL, 10);
	configured = 1;
}

static int fake(const void *p)
{
	if (shift > 0 && p != NULL && ((uintptr_t)p & (((uintptr_t)1 << shift) - 1)) == 0 &&
	    ((uintptr_t)p >> shift) <= nshift)
		return 1;
	return base != NULL && (const char *)p >= base && (const char *)p < base + FAKEBIG_SPAN;
}

__attribute__((visibility("default"))) void *malloc(size_t n)
{
	if (!configured && n >= ((size_t)1 << 12))
		configure();
	if (n < min_size || n < ((size_t)1 << 12))
		return __libc_malloc(n);
	if (shift > 0)
		return (void *)(++nshift << shift);
	if (base == NULL) {
		void *m = mmap(NULL, FAKEBIG_SPAN, PROT_NONE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		base = m;
	}
	if (next + 16 > FAKEBIG_SPAN)
		return NULL;
	next += 16;
	return base + next - 16;
}

__attribute__((visibility("default"))) void free(void *p)
{
	if (!fake(p))
		__libc_free(p);
}
