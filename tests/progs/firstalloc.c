/*
 * firstalloc.c - a small allocator of its own, for preloading before the
 * agent (LD_PRELOAD=libfirstalloc.so:libmemtrace.so): the program's malloc
 * calls then go here and never reach the agent's hooks, as with jemalloc or
 * tcmalloc preloaded first or linked into the program.
 *
 * Every function a program may pair with free is defined, so no block of
 * glibc's is ever handed to this free. Blocks come from a bump pointer over
 * 64 MiB mmap'd chunks (large ones get a mapping of their own, returned on
 * free); small blocks are never reused, which is fine for a test. A 32-byte
 * header before each block holds its size and, for a mapping of its own,
 * the mapping. Thread-safe through one spin lock; never calls malloc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK (64u << 20)
#define LARGE (1u << 20)
#define HDR   32u

struct hdr {
	size_t size;    /* bytes asked for */
	void *map;      /* the block's own mapping, or NULL */
	size_t map_len; /* its length */
	size_t pad;
};

static char *cur, *end;
static char lock;

static void take(void)
{
	while (__atomic_test_and_set(&lock, __ATOMIC_ACQUIRE))
		;
}

static void give(void)
{
	__atomic_clear(&lock, __ATOMIC_RELEASE);
}

static void *get_map(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* A block of `size` bytes aligned to `align` (a power of two >= 16). */
static void *fa_alloc(size_t size, size_t align)
{
	size_t need;
	char *base, *p;

	if (size > SIZE_MAX / 2 || align > (1u << 20))
		goto nomem;
	need = size + HDR + align;
	if (need >= LARGE) {
		size_t len = (need + 4095) & ~(size_t)4095;
		base = get_map(len);
		if (base == NULL)
			goto nomem;
		p = (char *)(((uintptr_t)base + HDR + align - 1) & ~(uintptr_t)(align - 1));
		((struct hdr *)(void *)(p - HDR))->map = base;
		((struct hdr *)(void *)(p - HDR))->map_len = len;
	} else {
		take();
		if (cur == NULL || (size_t)(end - cur) < need) {
			cur = get_map(CHUNK);
			if (cur == NULL) {
				give();
				goto nomem;
			}
			end = cur + CHUNK;
		}
		base = cur;
		p = (char *)(((uintptr_t)base + HDR + align - 1) & ~(uintptr_t)(align - 1));
		cur = p + ((size + 15) & ~(size_t)15);
		give();
		((struct hdr *)(void *)(p - HDR))->map = NULL;
	}
	((struct hdr *)(void *)(p - HDR))->size = size;
	return p;
nomem:
	errno = ENOMEM;
	return NULL;
}

__attribute__((visibility("default"))) void *malloc(size_t n)
{
	return fa_alloc(n, 16);
}

__attribute__((visibility("default"))) void free(void *p)
{
	if (p == NULL)
		return;
	struct hdr *h = (struct hdr *)(void *)((char *)p - HDR);
	if (h->map != NULL)
		munmap(h->map, h->map_len);
}

__attribute__((visibility("default"))) void *calloc(size_t n, size_t m)
{
	if (m != 0 && n > SIZE_MAX / m) {
		errno = ENOMEM;
		return NULL;
	}
	/* Fresh mappings are zero, but a chunk's bytes are never reused either. */
	return fa_alloc(n * m, 16);
}

__attribute__((visibility("default"))) size_t malloc_usable_size(void *p)
{
	return p == NULL ? 0 : ((struct hdr *)(void *)((char *)p - HDR))->size;
}

__attribute__((visibility("default"))) void *realloc(void *old, size_t n)
{
	if (old == NULL)
		return malloc(n);
	if (n == 0) {
		free(old);
		return NULL;
	}
	void *p = malloc(n);
	if (p != NULL) {
		size_t had = malloc_usable_size(old);
		memcpy(p, old, had < n ? had : n);
		free(old);
	}
	return p;
}

__attribute__((visibility("default"))) void *reallocarray(void *old, size_t n, size_t m)
{
	if (m != 0 && n > SIZE_MAX / m) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(old, n * m);
}

static int good_align(size_t a)
{
	return a != 0 && (a & (a - 1)) == 0;
}

__attribute__((visibility("default"))) void *memalign(size_t align, size_t n)
{
	if (!good_align(align)) {
		errno = EINVAL;
		return NULL;
	}
	return fa_alloc(n, align < 16 ? 16 : align);
}

__attribute__((visibility("default"))) void *aligned_alloc(size_t align, size_t n)
{
	return memalign(align, n);
}

__attribute__((visibility("default"))) int posix_memalign(void **out, size_t align, size_t n)
{
	if (!good_align(align) || align % sizeof(void *) != 0)
		return EINVAL;
	void *p = fa_alloc(n, align < 16 ? 16 : align);
	if (p == NULL)
		return ENOMEM;
	*out = p;
	return 0;
}

__attribute__((visibility("default"))) void *valloc(size_t n)
{
	return fa_alloc(n, 4096);
}

__attribute__((visibility("default"))) void *pvalloc(size_t n)
{
	return fa_alloc((n + 4095) & ~(size_t)4095, 4096);
}
