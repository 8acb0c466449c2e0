/*
 * sites.c - a traced program with known allocation sites.
 *
 * Every member of the malloc family the agent interposes is called at its own
 * line in its own function, several blocks per site, some of them freed, so
 * the end-to-end test can check `memtracectl top` per line, per function,
 * per file and per traceback against the program's own book (truth.h). A
 * realloc moves a block's ownership to the realloc's line with the new size;
 * calloc(n, m) books n*m; the aligned allocators book the requested size.
 * One site (site_twice) is reached from two different callers, so `--key
 * lineno` sums it while `--key traceback` keeps the two stacks apart; one site
 * lives in truth.h, so there are two source files to group by.
 *
 * The program allocates nothing except at its booked sites: no stdio (its
 * buffers are malloc'ed), only read(2)/write(2) through truth.h. Whatever
 * else memtrace sees in this process belongs to libc or the loader, and the
 * test treats it as such.
 *
 * Phases, driven by the harness over stdin: after phase 1 it prints "ready";
 * "next" runs phase 2 (frees some blocks, reallocs one, allocates at a new
 * site) and prints "ready" again; "exit" frees every block and exits 0.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* Not clang-formatted: an allocation call and its TRUTH_ALLOC share one source
 * line on purpose (the book's line must be the call's line), and
 * clang-format would split them. */
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "truth.h"

struct blk {
	void *p;
	size_t n;
	int rec;
	int live;
};

#define MAX_BLKS 128
static struct blk held[MAX_BLKS];
static int nheld;

static int hold(void *p, size_t n, int rec)
{
	if (p == NULL || nheld == MAX_BLKS) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
	memset(p, 0xab, n); /* touch it, as a real program would */
	held[nheld] = (struct blk){ p, n, rec, 1 };
	return nheld++;
}

static void drop(int i)
{
	free(held[i].p);
	truth_adjust(held[i].rec, -(long long)held[i].n, -1);
	held[i].live = 0;
}

static int first_malloc; /* index of site_malloc's first block */
static int first_seed;   /* site_realloc_seed's small blocks */
static int big_seed;     /* site_realloc_seed's large blocks */
static int first_pm;     /* site_posix_memalign's blocks */

static void site_malloc(void)
{
	first_malloc = nheld;
	for (int i = 0; i < 6; i++) {
		void *p; int rec;
		p = malloc(100 + i); rec = TRUTH_ALLOC(100 + i);
		hold(p, 100 + i, rec);
	}
	drop(first_malloc + 1);
	drop(first_malloc + 4);
}

static void site_calloc(void)
{
	int first = nheld;
	for (int i = 0; i < 5; i++) {
		void *p; int rec;
		p = calloc(7, 13 + i); rec = TRUTH_ALLOC(7 * (13 + i));
		hold(p, 7 * (13 + i), rec);
	}
	drop(first + 2);
}

static void site_realloc_seed(void)
{
	first_seed = nheld;
	for (int i = 0; i < 4; i++) {
		void *p; int rec;
		p = malloc(16); rec = TRUTH_ALLOC(16);
		hold(p, 16, rec);
	}
	big_seed = nheld;
	for (int i = 0; i < 3; i++) {
		void *p; int rec;
		p = malloc(5000); rec = TRUTH_ALLOC(5000);
		hold(p, 5000, rec);
	}
}

/* Moves block i to the calling line's site: `rec` is booked by the caller. */
static void moved(int i, void *q, size_t n, int rec)
{
	if (q == NULL) {
		errno = ENOMEM;
		truth_die("realloc failed");
	}
	truth_adjust(held[i].rec, -(long long)held[i].n, -1);
	held[i].p = q;
	held[i].n = n;
	held[i].rec = rec;
}

static void site_realloc_grow(void)
{
	for (int i = first_seed; i < first_seed + 3; i++) {
		void *q; int rec;
		q = realloc(held[i].p, 1000 + i); rec = TRUTH_ALLOC(1000 + i);
		moved(i, q, 1000 + i, rec);
	}
}

static void site_realloc_shrink(void)
{
	for (int i = big_seed; i < big_seed + 2; i++) {
		void *q; int rec;
		q = realloc(held[i].p, 40); rec = TRUTH_ALLOC(40);
		moved(i, q, 40, rec);
	}
}

static void site_realloc_null(void)
{
	for (int i = 0; i < 2; i++) {
		void *p; int rec;
		p = realloc(NULL, 77); rec = TRUTH_ALLOC(77);
		hold(p, 77, rec);
	}
}

static void site_reallocarray(void)
{
	for (int i = 0; i < 3; i++) {
		void *p; int rec;
		p = reallocarray(NULL, 10, 30 + i); rec = TRUTH_ALLOC(10 * (30 + i));
		hold(p, 10 * (30 + i), rec);
	}
}

static void site_posix_memalign(void)
{
	first_pm = nheld;
	for (int i = 0; i < 3; i++) {
		void *p = NULL; int rec, err;
		err = posix_memalign(&p, 64, 300 + i); rec = TRUTH_ALLOC(300 + i);
		if (err != 0)
			p = NULL;
		hold(p, 300 + i, rec);
	}
}

static void site_aligned_alloc(void)
{
	for (int i = 0; i < 3; i++) {
		void *p; int rec;
		p = aligned_alloc(256, 512 * (i + 1)); rec = TRUTH_ALLOC(512 * (i + 1));
		hold(p, 512 * (i + 1), rec);
	}
}

static void site_memalign(void)
{
	for (int i = 0; i < 2; i++) {
		void *p; int rec;
		p = memalign(32, 200); rec = TRUTH_ALLOC(200);
		hold(p, 200, rec);
	}
}

static void site_valloc(void)
{
	int first = nheld;
	for (int i = 0; i < 3; i++) {
		void *p; int rec;
		p = valloc(123); rec = TRUTH_ALLOC(123);
		hold(p, 123, rec);
	}
	drop(first);
}

static void site_other_file(void)
{
	for (int i = 0; i < 3; i++) {
		void *p; int rec;
		TRUTH_CALL(p = truth_h_malloc(555, &rec));
		hold(p, 555, rec);
	}
}

static void site_twice(size_t n)
{
	void *p; int rec;
	p = malloc(n); rec = TRUTH_ALLOC(n);
	hold(p, n, rec);
}

static void site_caller2(void)
{
	TRUTH_CALL(site_twice(2222));
	TRUTH_CALL(site_twice(2222));
}

static void phase1(void)
{
	TRUTH_CALL(site_malloc());
	TRUTH_CALL(site_calloc());
	TRUTH_CALL(site_realloc_seed());
	TRUTH_CALL(site_realloc_grow());
	TRUTH_CALL(site_realloc_shrink());
	TRUTH_CALL(site_realloc_null());
	TRUTH_CALL(site_reallocarray());
	TRUTH_CALL(site_posix_memalign());
	TRUTH_CALL(site_aligned_alloc());
	TRUTH_CALL(site_memalign());
	TRUTH_CALL(site_valloc());
	TRUTH_CALL(site_other_file());
	TRUTH_CALL(site_twice(3333));
	TRUTH_CALL(site_caller2());
}

static void site_phase2_realloc(void)
{
	int i = first_seed; /* grown to 1000+ in phase 1; grow it again */
	void *q; int rec;
	q = realloc(held[i].p, 70000); rec = TRUTH_ALLOC(70000);
	moved(i, q, 70000, rec);
}

static void site_phase2(void)
{
	for (int i = 0; i < 3; i++) {
		void *p; int rec;
		p = malloc(4096); rec = TRUTH_ALLOC(4096);
		hold(p, 4096, rec);
	}
}

static void phase2(void)
{
	drop(first_malloc);
	for (int i = first_pm; i < first_pm + 3; i++)
		drop(i);
	TRUTH_CALL(site_phase2_realloc());
	TRUTH_CALL(site_phase2());
}

int main(void)
{
	char cmd[64];

	TRUTH_CALL(phase1());
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") == 0) {
		TRUTH_CALL(phase2());
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	for (int i = 0; i < nheld; i++)
		if (held[i].live)
			drop(i);
	truth_write();
	return 0;
}
