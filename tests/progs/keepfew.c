/*
 * keepfew.c - sixteen threads allocate thousands of blocks each and keep a
 * known few: what the daemon holds for a process once it has exited.
 *
 * Phase 1: each of NTHREADS threads allocates BLOCKS blocks, one after the
 * other at three sites (alloc_small, alloc_medium, alloc_large), and holds
 * them all, so the process is at its peak: tens of thousands of live
 * blocks in the daemon's model. The program writes its book and says
 * "ready". On "next" every thread frees its blocks except every
 * KEEP_EVERY-th (a known few at each of the three sites), and the program
 * says "ready" again. On "exit" it calls exit(0) without freeing the kept
 * blocks: they are what the exited process's statistics must show, and all
 * the daemon should still hold for it. End of file on stdin reads as
 * "exit".
 *
 * Every allocation and free is booked (truth.h is thread-safe and never
 * allocates); the blocks are kept in static arrays.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* Not clang-formatted: an allocation call and its TRUTH_ALLOC share one source
 * line on purpose. */
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "truth.h"

#define NTHREADS 16
#define BLOCKS 2000
#define KEEP_EVERY 500 /* blocks 0, 500, 1000, 1500 of each thread stay */

struct blk {
	void *p;
	size_t n;
	int rec;
};

static struct blk blocks[NTHREADS][BLOCKS];
static pthread_barrier_t allocated, go_free;

static void check(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
}

static void alloc_small(struct blk *b, int i)
{
	b->n = 16 + (size_t)(i * 7) % 112;
	b->p = malloc(b->n); b->rec = TRUTH_ALLOC(b->n);
	check(b->p);
}

static void alloc_medium(struct blk *b, int i)
{
	b->n = 128 + (size_t)(i * 13) % 896;
	b->p = malloc(b->n); b->rec = TRUTH_ALLOC(b->n);
	check(b->p);
}

static void alloc_large(struct blk *b, int i)
{
	b->n = 1024 + (size_t)(i * 29) % 1024;
	b->p = malloc(b->n); b->rec = TRUTH_ALLOC(b->n);
	check(b->p);
}

static void *thread_main(void *arg)
{
	int t = (int)(intptr_t)arg;

	for (int i = 0; i < BLOCKS; i++) {
		struct blk *b = &blocks[t][i];
		if (i % 3 == 0)
			TRUTH_CALL(alloc_small(b, i));
		else if (i % 3 == 1)
			TRUTH_CALL(alloc_medium(b, i));
		else
			TRUTH_CALL(alloc_large(b, i));
		memset(b->p, t, b->n);
	}
	pthread_barrier_wait(&allocated);
	pthread_barrier_wait(&go_free);
	for (int i = 0; i < BLOCKS; i++) {
		struct blk *b = &blocks[t][i];
		if (i % KEEP_EVERY == 0)
			continue;
		free(b->p);
		truth_adjust(b->rec, -(long long)b->n, -1);
	}
	return NULL;
}

int main(void)
{
	pthread_t th[NTHREADS];
	char cmd[64];

	if (pthread_barrier_init(&allocated, NULL, NTHREADS + 1) != 0 ||
	    pthread_barrier_init(&go_free, NULL, NTHREADS + 1) != 0)
		truth_die("pthread_barrier_init");
	for (int t = 0; t < NTHREADS; t++) {
		errno = pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t);
		if (errno != 0)
			truth_die("pthread_create");
	}
	pthread_barrier_wait(&allocated);
	truth_meta("threads", NTHREADS);
	truth_meta("blocks_per_thread", BLOCKS);
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") != 0)
		exit(0); /* the threads still wait at go_free: exit ends them */
	pthread_barrier_wait(&go_free);
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	exit(0); /* the kept blocks are never freed */
}
