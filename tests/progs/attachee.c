/*
 * attachee.c - a program that runs untraced and is attached mid-run, with
 * known answers after the attach.
 *
 * Before: it holds N_BEFORE blocks of 3000 B (site_before), allocated
 * untraced and not in the book, and prints "ready". The test attaches the
 * agent: `memtracectl attach PID`, or, with "attach-self", the program
 * loads $MEMTRACE_TEST_AGENT with dlopen itself, as the injected call
 * does. "next" then allocates at booked sites (site_after: 6 x 1000, one
 * freed again; site_zeroed: calloc 3 x 700; site_moved: a realloc of a
 * block from before to 5000 B, whose old block the daemon never saw),
 * from the main thread and from a second thread (site_thread: 4 x 256),
 * and frees FREED_BEFORE more blocks from before: meta "unknown_frees"
 * is how many frees of blocks the daemon cannot know it makes (those and
 * the realloc's). "ready" with the book; "exit" frees everything.
 *
 * For detach (`memtracectl detach`, then attach again), after "next":
 * "where" prints "malloc=agent" or "malloc=other": whose function the
 * program's GOT entry of malloc holds. "between" (run detached) allocates
 * 2 x 2222 B (site_between) and frees two blocks of site_after, none of
 * which any session may see. "again" (attached again) starts a new book:
 * site_again 3 x 1500 B on the main thread and site_again_thread 2 x 128 B
 * on a second one, and frees the two blocks of site_between (meta
 * "unknown_frees" 2: the new session never saw them allocated).
 *
 * No stdio: the only allocations after the attach are the booked ones
 * (see truth.h).
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "truth.h"

#define N_BEFORE     10
#define FREED_BEFORE 4

static void *before[N_BEFORE];
static void *after[6];
static int after_rec[6];
static void *zeroed[3];
static void *moved;
static void *threaded[4];
static void *between[2];
#ifdef ATTACHEE_NOPIE
/* attachee_nopie (built -no-pie -fno-pic) takes malloc's address in its
 * code: its malloc symbol is then its own PLT entry, which is what
 * dlsym(RTLD_DEFAULT, "malloc") returns, and which jumps through the GOT
 * the agent rewrites. */
void *(*volatile attachee_malloc_ref)(size_t) = malloc;
#endif
static void *again[3];
static void *again_threaded[2];

static void site_before(void)
{
	for (int i = 0; i < N_BEFORE; i++)
		before[i] = malloc(3000);
}

static void site_after(void)
{
	for (int i = 0; i < 6; i++) {
		after[i] = malloc(1000); after_rec[i] = TRUTH_ALLOC(1000);
	}
	free(after[5]);
	truth_adjust(after_rec[5], -1000, -1);
	after[5] = NULL;
}

static void site_zeroed(void)
{
	for (int i = 0; i < 3; i++) {
		zeroed[i] = calloc(7, 100); TRUTH_ALLOC(700);
	}
}

static void site_moved(void)
{
	moved = realloc(before[N_BEFORE - 1], 5000); TRUTH_ALLOC(5000);
	before[N_BEFORE - 1] = NULL;
}

static void site_thread(void)
{
	for (int i = 0; i < 4; i++) {
		threaded[i] = malloc(256); TRUTH_ALLOC(256);
	}
}

static void *thread_main(void *arg)
{
	(void)arg;
	TRUTH_CALL(site_thread());
	return NULL;
}

static void site_between(void)
{
	for (int i = 0; i < 2; i++)
		between[i] = malloc(2222);
}

static void site_again(void)
{
	for (int i = 0; i < 3; i++) {
		again[i] = malloc(1500); TRUTH_ALLOC(1500);
	}
}

static void site_again_thread(void)
{
	for (int i = 0; i < 2; i++) {
		again_threaded[i] = malloc(128); TRUTH_ALLOC(128);
	}
}

static void *again_thread_main(void *arg)
{
	(void)arg;
	TRUTH_CALL(site_again_thread());
	return NULL;
}

/* Whose malloc the GOT holds: the address is loaded from it each time. */
static void where(void)
{
	void *(*volatile fn)(size_t) = malloc;
	Dl_info info;
	int agent = dladdr((void *)fn, &info) != 0 && info.dli_fname != NULL &&
	            strstr(info.dli_fname, "libmemtrace") != NULL;
	truth_put(1, agent ? "malloc=agent\n" : "malloc=other\n", agent ? 13 : 13);
}

static void phase_again(void)
{
	pthread_t t;

	truth_book_g.nrecs = 0;
	truth_book_g.nmeta = 0;
	TRUTH_CALL(site_again());
	if (pthread_create(&t, NULL, again_thread_main, NULL) != 0 || pthread_join(t, NULL) != 0)
		truth_die("pthread");
	for (int i = 0; i < 2; i++) {
		free(between[i]);
		between[i] = NULL;
	}
	truth_meta("unknown_frees", 2);
}

static void phase_after(void)
{
	pthread_t t;
	TRUTH_CALL(site_after());
	TRUTH_CALL(site_zeroed());
	TRUTH_CALL(site_moved());
	/* pthread_create's own allocations are libc's (the thread's stack is
	 * mmap'ed; its TLS comes from the loader): not the book's. */
	if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, NULL) != 0)
		truth_die("pthread");
	for (int i = 0; i < FREED_BEFORE; i++) {
		free(before[i]);
		before[i] = NULL;
	}
	truth_meta("unknown_frees", FREED_BEFORE + 1);
}

int main(void)
{
	char cmd[64];

	site_before();
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	if (strcmp(cmd, "attach-self") == 0) {
		const char *agent = getenv("MEMTRACE_TEST_AGENT");
		if (agent == NULL || dlopen(agent, RTLD_NOW | RTLD_LOCAL) == NULL)
			truth_die("dlopen of the agent");
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	if (strcmp(cmd, "next") == 0) {
		TRUTH_CALL(phase_after());
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	for (;;) {
		if (strcmp(cmd, "where") == 0) {
			where();
		} else if (strcmp(cmd, "between") == 0) {
			TRUTH_CALL(site_between());
			free(after[0]);
			free(after[1]);
			after[0] = after[1] = NULL;
			truth_put(1, "ready\n", 6);
		} else if (strcmp(cmd, "again") == 0) {
			TRUTH_CALL(phase_again());
			truth_ready();
		} else {
			break;
		}
		truth_wait(cmd, sizeof cmd);
	}
	for (int i = 0; i < 3; i++)
		free(again[i]);
	for (int i = 0; i < 2; i++)
		free(again_threaded[i]);
	for (int i = 0; i < N_BEFORE; i++)
		free(before[i]);
	for (int i = 0; i < 6; i++)
		free(after[i]);
	for (int i = 0; i < 3; i++)
		free(zeroed[i]);
	for (int i = 0; i < 4; i++)
		free(threaded[i]);
	free(moved);
	truth_write();
	return 0;
}
