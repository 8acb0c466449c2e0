/*
 * peak.c - a large block allocated and freed shows in peak, not in current.
 *
 * Phase 1: hold a small known set (hold_before), allocate BIG bytes at
 * big_alloc and free it at once, then hold another small set (hold_after).
 * The peak memtrace reports must be at least BIG plus what was held at that
 * moment (meta "held_at_big"), while current holds only the small sets.
 * "ready".
 *
 * Phase 2 ("next"), run after the test has done `reset-peak`: allocate and
 * free SPIKE bytes once at spike_alloc and allocate nothing else, so the new
 * peak is exactly the current at the reset plus SPIKE (meta "spike").
 * "ready"; "exit" frees everything.
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

#define BIG (64ll << 20)
#define SPIKE (1ll << 20)

static void *before[4], *after[3];
static int before_rec, after_rec;

static void hold_before(void)
{
	for (int i = 0; i < 4; i++) {
		before[i] = malloc(1000); before_rec = TRUTH_ALLOC(1000);
	}
}

static void big_alloc(void)
{
	char *p;
	p = malloc(BIG); truth_note(__FILE__, __LINE__, __func__, 0, 0);
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("big malloc");
	}
	p[0] = 1;
	p[BIG - 1] = 1;
	free(p);
}

static void hold_after(void)
{
	for (int i = 0; i < 3; i++) {
		after[i] = malloc(3000); after_rec = TRUTH_ALLOC(3000);
	}
}

static void spike_alloc(void)
{
	char *p;
	p = malloc(SPIKE); truth_note(__FILE__, __LINE__, __func__, 0, 0);
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("spike malloc");
	}
	p[0] = 1;
	free(p);
}

int main(void)
{
	char cmd[64];

	TRUTH_CALL(hold_before());
	truth_meta("held_at_big", 4 * 1000);
	truth_meta("big", BIG);
	TRUTH_CALL(big_alloc());
	TRUTH_CALL(hold_after());
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") == 0) {
		truth_meta("spike", SPIKE);
		TRUTH_CALL(spike_alloc());
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	for (int i = 0; i < 4; i++)
		free(before[i]);
	truth_adjust(before_rec, -4000, -4);
	for (int i = 0; i < 3; i++)
		free(after[i]);
	truth_adjust(after_rec, -9000, -3);
	truth_write();
	return 0;
}
