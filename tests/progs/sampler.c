/*
 * sampler.c - blocks of known sizes around a sampling rate, for the test of
 * MEMTRACE_SAMPLE's estimates (e2e_live, sampling_unbiased).
 *
 * Usage: sampler RATE NQ N1 N4 NMIX. Each size class has a site of its own:
 *
 *   hold_quarter   NQ blocks of RATE/4 bytes
 *   hold_one       N1 blocks of RATE bytes
 *   hold_four      N4 blocks of 4 RATE bytes
 *   hold_mix       NMIX blocks, block i of MIX[i % 6] sixteenths of RATE:
 *                  RATE/16, RATE/4, RATE/2, RATE, 2 RATE, 4 RATE
 *
 * and three markers of 64 RATE bytes each (a block of 40 rates or more is
 * always sampled and weighs exactly its size): mark_start before "ready",
 * mark_held after the classes are allocated, mark_freed after they are
 * freed. Events reach the daemon in the order the program made them, so
 * once a marker shows, everything before it has been counted.
 *
 * Phase 1 allocates mark_start and says "ready". "hold" allocates the four
 * classes and mark_held, writes the book and says "done"; "free" frees the
 * four classes, allocates mark_freed, writes the book and says "done";
 * "exit" (or the end of input) returns without freeing the markers.
 *
 * No stdio: the only allocations are the booked ones (see truth.h), so
 * between the markers the process's heap moves by exactly what the book
 * moved.
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

#define MAXN 65536

/* The blocks of one class and the record they are booked in. */
struct cls {
	void *p[MAXN];
	size_t n[MAXN];
	long len;
	int rec;
};

static struct cls quarter, one, four, mix;
static void *markers[3];
static long rate;
static const long mix16[6] = {1, 4, 8, 16, 32, 64}; /* sixteenths of the rate */

static void keep(struct cls *c, void *p, size_t n, int rec)
{
	if (p == NULL || c->len == MAXN) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
	c->p[c->len] = p;
	c->n[c->len] = n;
	c->len++;
	c->rec = rec;
}

static void hold_quarter(long k)
{
	for (long i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc((size_t)rate / 4); rec = TRUTH_ALLOC(rate / 4);
		keep(&quarter, p, (size_t)rate / 4, rec);
	}
}

static void hold_one(long k)
{
	for (long i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc((size_t)rate); rec = TRUTH_ALLOC(rate);
		keep(&one, p, (size_t)rate, rec);
	}
}

static void hold_four(long k)
{
	for (long i = 0; i < k; i++) {
		void *p; int rec;
		p = malloc((size_t)rate * 4); rec = TRUTH_ALLOC(rate * 4);
		keep(&four, p, (size_t)rate * 4, rec);
	}
}

static void hold_mix(long k)
{
	for (long i = 0; i < k; i++) {
		size_t n = (size_t)(rate * mix16[i % 6] / 16);
		void *p; int rec;
		p = malloc(n); rec = TRUTH_ALLOC(n);
		keep(&mix, p, n, rec);
	}
}

static void release(struct cls *c)
{
	while (c->len > 0) {
		c->len--;
		free(c->p[c->len]);
		truth_adjust(c->rec, -(long long)c->n[c->len], -1);
	}
}

static void mark_start(void)
{
	markers[0] = malloc((size_t)rate * 64); TRUTH_ALLOC(rate * 64);
}

static void mark_held(void)
{
	markers[1] = malloc((size_t)rate * 64); TRUTH_ALLOC(rate * 64);
}

static void mark_freed(void)
{
	markers[2] = malloc((size_t)rate * 64); TRUTH_ALLOC(rate * 64);
}

static long arg(char **argv, int i)
{
	long v = atol(argv[i]);
	if (v < 0 || v > MAXN) {
		errno = EINVAL;
		truth_die("sampler RATE NQ N1 N4 NMIX: a count out of range");
	}
	return v;
}

int main(int argc, char **argv)
{
	char cmd[64];
	long nq, n1, n4, nmix;

	if (argc != 6 || (rate = atol(argv[1])) < 16) {
		errno = EINVAL;
		truth_die("usage: sampler RATE NQ N1 N4 NMIX");
	}
	nq = arg(argv, 2);
	n1 = arg(argv, 3);
	n4 = arg(argv, 4);
	nmix = arg(argv, 5);
	mark_start();
	truth_ready();
	for (;;) {
		truth_wait(cmd, sizeof cmd);
		if (strcmp(cmd, "hold") == 0) {
			hold_quarter(nq);
			hold_one(n1);
			hold_four(n4);
			hold_mix(nmix);
			mark_held();
		} else if (strcmp(cmd, "free") == 0) {
			release(&quarter);
			release(&one);
			release(&four);
			release(&mix);
			mark_freed();
		} else if (strcmp(cmd, "exit") == 0) {
			return 0;
		} else {
			continue;
		}
		truth_write();
		truth_put(1, "done\n", 5);
	}
}
