/*
 * temps.c - allocation counts and temporary allocations, with known answers.
 *
 * Every site books each allocation (truth.h's churn line: calls, bytes) and
 * each block it frees before its thread allocates again (truth_temporary,
 * heaptrack's temporary allocation):
 *   site_temporary   N_TEMP blocks, each freed at once: all temporary;
 *   site_held        blocks kept: none temporary;
 *   site_first and site_second, in turns: first's block is freed after
 *                    second allocated, so it is not temporary; second's is
 *                    freed next, with nothing allocated since: temporary;
 *   site_realloc_src a block realloc'ed at once (site_realloc_dst): the
 *                    realloc frees it before anything else is allocated;
 *   site_thread      a second thread's blocks, each freed at once while the
 *                    main thread allocates at site_main at the same time:
 *                    temporary per thread, whatever the interleaving.
 * Phase 1 prints "ready"; "next" runs site_temporary N_MORE more times and
 * prints "ready"; "exit" frees everything.
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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "truth.h"

#define N_TEMP  1000
#define N_MORE  700
#define N_HELD  30
#define N_PAIRS 200
#define N_REAL  50
#define N_THR   5000

static void *held[N_HELD], *moved[N_REAL], *mains[N_THR];
static int held_rec, dst_rec, main_rec;
static volatile int go;

static void *must(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
	memset(p, 0xab, 1);
	return p;
}

static void site_temporary(int n)
{
	for (int i = 0; i < n; i++) {
		void *p; int rec;
		p = must(malloc(48)); rec = TRUTH_ALLOC(48);
		free(p);
		truth_adjust(rec, -48, -1);
		truth_temporary(rec, 1);
	}
}

static void site_held(void)
{
	for (int i = 0; i < N_HELD; i++) {
		held[i] = must(malloc(64)); held_rec = TRUTH_ALLOC(64);
	}
}

static void site_first_second(void)
{
	for (int i = 0; i < N_PAIRS; i++) {
		void *p, *q; int a, b;
		p = must(malloc(32)); a = TRUTH_ALLOC(32);
		q = must(malloc(16)); b = TRUTH_ALLOC(16);
		free(p);
		truth_adjust(a, -32, -1);
		free(q);
		truth_adjust(b, -16, -1);
		truth_temporary(b, 1);
	}
}

static void site_realloc(void)
{
	for (int i = 0; i < N_REAL; i++) {
		void *p; int src;
		p = must(malloc(10)); src = TRUTH_ALLOC(10);
		moved[i] = must(realloc(p, 2000)); dst_rec = TRUTH_ALLOC(2000);
		truth_adjust(src, -10, -1);
		truth_temporary(src, 1);
	}
}

static void *site_thread(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		;
	for (int i = 0; i < N_THR; i++) {
		void *p; int rec;
		p = must(malloc(24)); rec = TRUTH_ALLOC(24);
		free(p);
		truth_adjust(rec, -24, -1);
		truth_temporary(rec, 1);
	}
	return NULL;
}

static void site_main(void)
{
	for (int i = 0; i < N_THR; i++) {
		mains[i] = must(malloc(40)); main_rec = TRUTH_ALLOC(40);
	}
}

int main(void)
{
	char cmd[64];
	pthread_t th;

	site_temporary(N_TEMP);
	site_held();
	site_first_second();
	site_realloc();
	if (pthread_create(&th, NULL, site_thread, NULL) != 0)
		truth_die("pthread_create");
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	site_main();
	pthread_join(th, NULL);
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") == 0) {
		site_temporary(N_MORE);
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	for (int i = 0; i < N_HELD; i++)
		free(held[i]);
	for (int i = 0; i < N_REAL; i++)
		free(moved[i]);
	for (int i = 0; i < N_THR; i++)
		free(mains[i]);
	return 0;
}
