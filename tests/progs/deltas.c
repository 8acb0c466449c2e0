/*
 * deltas.c - a traced program whose holdings change in known ways between
 * two phases, for the snapshot tests (e2e_snapshots): `compare` of a snapshot of
 * phase 1 with one of phase 2 must report exactly the differences the book
 * moved, in tracemalloc's compare_to order, for every key.
 *
 * Phase 1 holds blocks at several sites. Phase 2 ("next") changes them so
 * that, by line, the differences exercise every level of compare_to's sort
 * key (abs(size_diff), size, abs(count_diff), count):
 *
 *   site_grow     1 x 1000 -> 3 x 1000   size 3000  +2000  count 3 +2
 *   site_shrink   5 x 1000 -> 3 x 1000   size 3000  -2000  count 3 -2 (ties)
 *   site_many     -        -> 4 x 500    size 2000  +2000  count 4 +4
 *   site_new      -        -> 2 x 1000   size 2000  +2000  count 2 +2
 *   site_gone     2 x 1000 -> -          size    0  -2000  count 0 -2
 *   truth.h       2 x 555  -> 3 x 555    size 1665   +555  count 3 +1
 *   site_regrow   -        -> 1 x 300    (a realloc of site_seed's block)
 *   site_shared   5 x 64   -> 7 x 64     reached from caller_one and
 *                                        caller_two, which move apart
 *   site_seed     1 x 100  -> -          (moved away by the realloc)
 *   site_same     3 x 700  -> 3 x 700    unchanged
 *
 * Phase 2's calls are made from other lines than phase 1's, so `--key
 * traceback` sees new stacks next to old ones; the book (truth.h) keeps
 * them apart, so every key's expectation comes from the book alone.
 *
 * "exit" (or end of input; "exit N" to exit with status N) writes the book
 * and returns from main WITHOUT freeing anything: what the book holds then
 * is what the program leaked, which the exit snapshot and `top --pid P`
 * after the end must show. A program killed with SIGKILL holds what its
 * last book says.
 *
 * No stdio: the only allocations are the booked ones (see truth.h).
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
#include <stdlib.h>
#include <string.h>

#include "truth.h"

#define POOL_MAX 16

/* The blocks a site holds, newest last. */
struct pool {
	void *p[POOL_MAX];
	size_t n[POOL_MAX];
	int rec[POOL_MAX];
	int len;
};

static struct pool grow_p, shrink_p, new_p, many_p, gone_p, same_p, one_p, two_p, hdr_p, seed_p;

static void keep(struct pool *pl, void *p, size_t n, int rec)
{
	if (p == NULL || pl->len == POOL_MAX) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
	memset(p, 0x5a, n); /* touch it, as a real program would */
	pl->p[pl->len] = p;
	pl->n[pl->len] = n;
	pl->rec[pl->len] = rec;
	pl->len++;
}

/* Frees the k newest blocks of a pool. */
static void release(struct pool *pl, int k)
{
	while (k-- > 0 && pl->len > 0) {
		pl->len--;
		free(pl->p[pl->len]);
		truth_adjust(pl->rec[pl->len], -(long long)pl->n[pl->len], -1);
	}
}

static void site_grow(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc(1000); rec = TRUTH_ALLOC(1000);
		keep(&grow_p, p, 1000, rec);
	}
}

static void site_shrink(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc(1000); rec = TRUTH_ALLOC(1000);
		keep(&shrink_p, p, 1000, rec);
	}
}

static void site_new(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc(1000); rec = TRUTH_ALLOC(1000);
		keep(&new_p, p, 1000, rec);
	}
}

static void site_many(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc(500); rec = TRUTH_ALLOC(500);
		keep(&many_p, p, 500, rec);
	}
}

static void site_gone(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = calloc(10, 100); rec = TRUTH_ALLOC(1000);
		keep(&gone_p, p, 1000, rec);
	}
}

static void site_same(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc(700); rec = TRUTH_ALLOC(700);
		keep(&same_p, p, 700, rec);
	}
}

static void site_shared(struct pool *pl, int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc(64); rec = TRUTH_ALLOC(64);
		keep(pl, p, 64, rec);
	}
}

static void caller_one(int k)
{
	TRUTH_CALL(site_shared(&one_p, k));
}

static void caller_two(int k)
{
	TRUTH_CALL(site_shared(&two_p, k));
}

static void site_header(int k)
{
	for (int i = 0; i < k; i++) {
		void *p; int rec;
		TRUTH_CALL(p = truth_h_malloc(555, &rec));
		keep(&hdr_p, p, 555, rec);
	}
}

static void site_seed(void)
{
	void *p; int rec;
	p = malloc(100); rec = TRUTH_ALLOC(100);
	keep(&seed_p, p, 100, rec);
}

/* Moves site_seed's block here with realloc: its 100 bytes leave site_seed,
 * 300 bytes arrive at this line. */
static void site_regrow(void)
{
	void *q; int rec;
	q = realloc(seed_p.p[0], 300); rec = TRUTH_ALLOC(300);
	if (q == NULL) {
		errno = ENOMEM;
		truth_die("realloc failed");
	}
	truth_adjust(seed_p.rec[0], -100, -1);
	seed_p.p[0] = q;
	seed_p.n[0] = 300;
	seed_p.rec[0] = rec;
}

static void phase1(void)
{
	TRUTH_CALL(site_grow(1));
	TRUTH_CALL(site_shrink(5));
	TRUTH_CALL(site_gone(2));
	TRUTH_CALL(site_same(3));
	TRUTH_CALL(caller_one(2));
	TRUTH_CALL(caller_two(3));
	TRUTH_CALL(site_header(2));
	TRUTH_CALL(site_seed());
}

static void phase2(void)
{
	TRUTH_CALL(site_grow(2));
	release(&shrink_p, 2);
	TRUTH_CALL(site_new(2));
	TRUTH_CALL(site_many(4));
	release(&gone_p, 2);
	TRUTH_CALL(caller_one(3));
	release(&two_p, 1);
	TRUTH_CALL(site_header(1));
	TRUTH_CALL(site_regrow());
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
	/* Leave everything held: the leaks the exit snapshot must show. */
	truth_write();
	return strncmp(cmd, "exit ", 5) == 0 ? atoi(cmd + 5) : 0;
}
