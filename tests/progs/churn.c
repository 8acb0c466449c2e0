/*
 * churn.c - a program that makes a known number of allocation events on
 * command, for the tests of what happens when the daemon falls behind
 * (MEMTRACE_ON_FULL=block and drop).
 *
 * Phase 1 holds nothing and prints "ready". Each "churn N" command then does
 * N pairs of malloc(32)/free (2N events, counted by the program itself) and
 * prints "done N". "rchurn N" does the same with realloc(NULL, 32) for the
 * malloc (a realloc that only allocates: N allocations, N frees). "forkchurn N" forks a child that
 * waits 2 s (longer than the agent's 1 s check for threads that are gone) and then churns N pairs;
 * the parent prints "done N STATUS" with the child's wait status. "hold N SIZE" allocates N blocks
 * of SIZE bytes and keeps them ("done N"). "exit" ends it.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "truth.h"

static void *volatile sink;
static void **held;
static long nheld;

static void hold(long n, long size)
{
	held = realloc(held, (size_t)(nheld + n) * sizeof(*held));
	for (long i = 0; i < n; i++)
		held[nheld++] = malloc((size_t)size);
}

static void churn(long n)
{
	for (long i = 0; i < n; i++) {
		void *p = malloc(32);
		sink = p;
		free(p);
	}
}

static void rchurn(long n)
{
	/* Through a volatile: the compiler turns realloc(NULL, n) into malloc. */
	void *volatile none = NULL;

	for (long i = 0; i < n; i++) {
		void *p = realloc(none, 32);
		sink = p;
		free(p);
	}
}

int main(void)
{
	char cmd[128], line[64];

	truth_ready();
	for (;;) {
		truth_wait(cmd, sizeof(cmd));
		if (strncmp(cmd, "churn ", 6) == 0) {
			long n = atol(cmd + 6);
			churn(n);
			int l = snprintf(line, sizeof(line), "done %ld\n", n);
			truth_put(1, line, (size_t)l);
		} else if (strncmp(cmd, "rchurn ", 7) == 0) {
			long n = atol(cmd + 7);
			rchurn(n);
			int l = snprintf(line, sizeof(line), "done %ld\n", n);
			truth_put(1, line, (size_t)l);
		} else if (strncmp(cmd, "forkchurn ", 10) == 0) {
			long n = atol(cmd + 10);
			int status = -1;
			pid_t c = fork();
			if (c == 0) {
				struct timespec ts = {2, 0};
				nanosleep(&ts, NULL);
				churn(n);
				_exit(0);
			}
			if (c > 0)
				waitpid(c, &status, 0);
			int l = snprintf(line, sizeof(line), "done %ld %d\n", n, status);
			truth_put(1, line, (size_t)l);
		} else if (strncmp(cmd, "hold ", 5) == 0) {
			char *rest;
			long n = strtol(cmd + 5, &rest, 10), size = atol(rest);
			hold(n, size);
			int l = snprintf(line, sizeof(line), "done %ld\n", n);
			truth_put(1, line, (size_t)l);
		} else if (strcmp(cmd, "exit") == 0) {
			return 0;
		}
	}
}
