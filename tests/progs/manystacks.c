/*
 * manystacks.c - a traced program holding one block from each of many
 * distinct stacks, for the snapshot store tests (kill -9 and retention):
 * snapshots of it are large enough that a kill -9 of the daemon can land
 * while one is being written.
 *
 * Usage: manystacks LEVELS [churn]
 *
 * Block i (0 <= i < 2^LEVELS) is allocated at the single line in leaf(),
 * reached through LEVELS levels of recursion in which level() calls itself
 * from one of two call sites as bit i of the level says: 2^LEVELS distinct
 * stacks, all with the same most recent frame. The book has one record for that line (the
 * recursion is not booked as a chain: 2^LEVELS chains would not fit), so
 * `--key lineno` and the line's totals are exact, and so is a traceback
 * checked by its first frame.
 *
 * With "churn", a second thread then keeps replacing CHURN_SLOTS blocks at
 * churn_site (allocate the new one, then free the old one, every
 * millisecond): a steady workload whose set of live stacks never changes,
 * while the live heap and the allocation counters move all the time. Those
 * blocks are NOT booked (their number changes by the microsecond), so a
 * test that uses churn must not compare per site.
 *
 * After the blocks are allocated it prints "ready"; "exit" (or end of
 * input) writes the book and returns from main without freeing anything.
 * No stdio: the only allocations are the booked ones and churn's.
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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "truth.h"

#define MAX_LEVELS  17
#define BLOCK_SIZE  24
#define CHURN_SLOTS 4

static void *blocks[1u << MAX_LEVELS];
static int levels;

static void leaf(unsigned i)
{
	void *p;
	p = malloc(BLOCK_SIZE); (void)TRUTH_ALLOC(BLOCK_SIZE);
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("malloc");
	}
	memset(p, 0x11, BLOCK_SIZE);
	blocks[i] = p;
}

/* One frame per level: the two calls are two call sites, so two return
 * addresses (two frames per level would cut the deepest stacks at
 * MEMTRACE_NFRAMES' 32 and merge them). */
static void level(int l, unsigned i)
{
	if (l == levels)
		leaf(i);
	else if ((i >> l) & 1u)
		level(l + 1, i);
	else
		level(l + 1, i);
}

static void *churn_site(size_t n)
{
	void *p;
	p = malloc(n);
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("malloc");
	}
	memset(p, 0x22, n);
	return p;
}

static void *churn(void *arg)
{
	void *slot[CHURN_SLOTS];
	struct timespec ms = {0, 1000000};

	(void)arg;
	for (int k = 0; k < CHURN_SLOTS; k++)
		slot[k] = churn_site(48 + 16 * (size_t)k);
	for (;;) {
		for (int k = 0; k < CHURN_SLOTS; k++) {
			void *fresh = churn_site(48 + 16 * (size_t)k);
			free(slot[k]);
			slot[k] = fresh;
		}
		nanosleep(&ms, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char cmd[64];
	unsigned n;

	levels = argc > 1 ? atoi(argv[1]) : 0;
	if (levels < 1 || levels > MAX_LEVELS) {
		errno = EINVAL;
		truth_die("usage: manystacks LEVELS [churn] (1 <= LEVELS <= 17)");
	}
	n = 1u << levels;
	for (unsigned i = 0; i < n; i++)
		level(0, i);
	truth_meta("stacks", n);
	truth_meta("block_size", BLOCK_SIZE);
	if (argc > 2 && strcmp(argv[2], "churn") == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, churn, NULL) != 0) {
			errno = EAGAIN;
			truth_die("pthread_create");
		}
	}
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	truth_write();
	return 0;
}
