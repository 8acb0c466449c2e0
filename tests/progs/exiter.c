/*
 * exiter.c - a program that allocates known blocks and ends at once, without
 * libc's exit, in one of four ways.
 *
 * Usage: exiter MODE, where MODE is how it ends right after its last
 * allocation:
 *     _exit        _exit(0): no atexit handlers, no destructors
 *     exit_group   syscall(SYS_exit_group, 0), as Go's os.Exit does
 *     sigkill      raise(SIGKILL)
 *     external     prints "ready" and waits forever: the test SIGKILLs it
 *
 * None of these lets the agent run anything at the end, so every event still
 * buffered in the process when it ends must reach the daemon some other way.
 * The program makes about 2,800 events at five sites, fewer than a ring holds,
 * so that they are still buffered at the end rather than sent because a ring
 * filled: small_blocks and medium_blocks (malloc and calloc of several sizes,
 * some freed again right away, so freed addresses are handed out again),
 * thread_blocks in a second thread that has ended before the end (some of
 * its blocks freed by that thread, some by the main thread after the join),
 * and last_blocks, which allocates, frees and allocates once more as the very
 * last thing before the end.
 *
 * The book must be complete before the process ends, and the last
 * allocation must be the last thing the program does. So the book describes
 * the last blocks before they exist: last_blocks(BOOK) books what
 * last_blocks(MAKE) will do, call for call on the same lines, main writes
 * the book, and then last_blocks(MAKE) does it. Both calls are on one line
 * of main, so the booked chain of calls is the real one.
 *
 * No stdio (its buffers are malloc'ed): read(2)/write(2) through truth.h.
 * Whatever else memtrace sees in this process belongs to libc or the loader.
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
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "truth.h"

#define SMALL_N  1200 /* small_blocks: malloc(16..64), every third freed */
#define MEDIUM_N 300  /* medium_blocks: calloc, 512..1024 bytes, every other freed */
#define THREAD_N 400  /* thread_blocks: 48 bytes, half freed there, a quarter by main */
#define THREAD_SIZE 48
#define LAST_N 9      /* last_blocks: LAST_SIZE bytes, every third freed, then FINAL_SIZE */
#define LAST_SIZE 200
#define FINAL_SIZE 4000

enum mode { M_EXIT, M_EXIT_GROUP, M_SIGKILL, M_EXTERNAL };
enum pass { MAKE = 0, BOOK = 1 };

static void *small[SMALL_N];
static void *medium[MEDIUM_N];
static void *thread_held[THREAD_N];
static int thread_rec;
static void *last[LAST_N];
static void *volatile final_block;

static size_t small_size(int i)
{
	return 16 + (size_t)(i % 7) * 8;
}

static size_t medium_size(int i)
{
	return 512 + (size_t)(i % 5) * 128;
}

static void small_blocks(void)
{
	int rec = -1;

	for (int i = 0; i < SMALL_N; i++) {
		small[i] = malloc(small_size(i)); rec = TRUTH_ALLOC(small_size(i));
		if (small[i] == NULL)
			truth_die("malloc");
		memset(small[i], 0x5a, small_size(i));
		/* Freed at once, so the next allocations of this size reuse the
		 * address: the daemon must see the free before them. */
		if (i % 3 == 0) {
			free(small[i]); truth_adjust(rec, -(long long)small_size(i), -1);
		}
	}
}

static void medium_blocks(void)
{
	int rec = -1;

	for (int i = 0; i < MEDIUM_N; i++) {
		medium[i] = calloc(1, medium_size(i)); rec = TRUTH_ALLOC(medium_size(i));
		if (medium[i] == NULL)
			truth_die("calloc");
	}
	for (int i = 0; i < MEDIUM_N; i += 2) {
		free(medium[i]); truth_adjust(rec, -(long long)medium_size(i), -1);
	}
}

static void thread_blocks(void)
{
	for (int i = 0; i < THREAD_N; i++) {
		thread_held[i] = malloc(THREAD_SIZE); thread_rec = TRUTH_ALLOC(THREAD_SIZE);
		if (thread_held[i] == NULL)
			truth_die("malloc");
	}
	for (int i = 0; i < THREAD_N; i += 2) {
		free(thread_held[i]); truth_adjust(thread_rec, -THREAD_SIZE, -1);
	}
}

static void *worker(void *arg)
{
	(void)arg;
	TRUTH_CALL(thread_blocks());
	return NULL;
}

/* Every other block the worker kept, freed by this thread: these frees come
 * after the worker's allocations in another thread's events. */
static void free_thread_blocks(void)
{
	for (int i = 1; i < THREAD_N; i += 4) {
		free(thread_held[i]); truth_adjust(thread_rec, -THREAD_SIZE, -1);
	}
}

/*
 * pass == BOOK books what pass == MAKE does: each call and its booking are on
 * the same line, so the booked site is the call's. The last event of MAKE is
 * the malloc of the final block.
 */
static void last_blocks(enum pass pass)
{
	static int rec = -1;

	for (int i = 0; i < LAST_N; i++) {
		if (pass == BOOK) rec = TRUTH_ALLOC(LAST_SIZE); else last[i] = malloc(LAST_SIZE);
	}
	for (int i = 0; i < LAST_N; i += 3) {
		if (pass == BOOK) truth_adjust(rec, -LAST_SIZE, -1); else free(last[i]);
	}
	if (pass == BOOK) (void)TRUTH_ALLOC(FINAL_SIZE); else final_block = malloc(FINAL_SIZE);
}

static void finish(enum mode m)
{
	switch (m) {
	case M_EXIT:
		_exit(0);
	case M_EXIT_GROUP:
		syscall(SYS_exit_group, 0);
		break;
	case M_SIGKILL:
		raise(SIGKILL);
		break;
	case M_EXTERNAL:
		truth_put(1, "ready\n", 6);
		for (;;)
			pause();
	}
	errno = EINVAL;
	truth_die("still alive after the end");
}

static enum mode parse_mode(int argc, char **argv)
{
	static const char *const names[] = {"_exit", "exit_group", "sigkill", "external"};
	static const char usage[] = "usage: exiter _exit|exit_group|sigkill|external\n";

	for (int i = 0; argc == 2 && i < 4; i++)
		if (strcmp(argv[1], names[i]) == 0)
			return (enum mode)i;
	truth_put(2, usage, sizeof(usage) - 1);
	_exit(2);
}

int main(int argc, char **argv)
{
	enum mode m = parse_mode(argc, argv);
	pthread_t th;

	if (pthread_create(&th, NULL, worker, NULL) != 0)
		truth_die("pthread_create");
	TRUTH_CALL(small_blocks());
	TRUTH_CALL(medium_blocks());
	if (pthread_join(th, NULL) != 0)
		truth_die("pthread_join");
	TRUTH_CALL(free_thread_blocks());
	/* Book the last blocks, write the book, make them: one line. */
	TRUTH_CALL(last_blocks(BOOK)); truth_write(); last_blocks(MAKE);
	finish(m);
	return 1;
}
