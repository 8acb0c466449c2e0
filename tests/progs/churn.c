/*
 * churn.c - a program that makes a known number of allocation events on
 * command, for the tests of what happens when the daemon falls behind
 * (MEMTRACE_ON_FULL=block and drop).
 *
 * Phase 1 holds nothing and prints "ready". Each "churn N" command then does
 * N pairs of malloc(32)/free (2N events, counted by the program itself) and
 * prints "done N". "exit" ends it.
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

#include "truth.h"

static void *volatile sink;

static void churn(long n)
{
	for (long i = 0; i < n; i++) {
		void *p = malloc(32);
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
		} else if (strcmp(cmd, "exit") == 0) {
			return 0;
		}
	}
}
