/*
 * leaker.c - a program that prints known lines and leaks known blocks.
 *
 * Usage: leaker
 *
 * It prints LINES on stdout, allocates at leak_small and leak_large and
 * never frees (booked), writes its book (MEMTRACE_TRUTH) and exits 0. Under
 * `memtracectl run --top` its stdout must stay exactly LINES, and the report
 * must name exactly its two sites. No stdio (truth.h).
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
#include "truth.h"

#define LINES "leaker: first line of the program's own output\n" \
              "leaker: { not JSON, but the program's }\n" \
              "leaker: last line\n"

static void *volatile keep;

static void leak_small(void)
{
	for (int i = 0; i < 5; i++) {
		keep = malloc(48); (void)TRUTH_ALLOC(48);
	}
}

static void leak_large(void)
{
	for (int i = 0; i < 2; i++) {
		keep = malloc(40000); (void)TRUTH_ALLOC(40000);
	}
}

int main(void)
{
	truth_put(1, LINES, sizeof(LINES) - 1);
	TRUTH_CALL(leak_small());
	TRUTH_CALL(leak_large());
	truth_write();
	return 0;
}
