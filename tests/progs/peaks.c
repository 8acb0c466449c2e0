/*
 * peaks.c - what was live at the moment of the peak, with known answers.
 *
 * Phase 1 builds up through site_a (40 x 1000 B), site_b (10 x 5000 B) and
 * site_c (one 200,000 B block): that is the peak, and the program writes its
 * book then, to $MEMTRACE_TRUTH.peak. Then it frees site_c's block and
 * site_a's, and allocates less than it freed at site_d (30 x 2000 B) and at
 * site_e (50 blocks of 100 B, each freed at once), so the peak stays where
 * it was; "ready" with the book of now.
 * Phase 2 ("next"): one 500,000 B block at site_f, a new peak (the book is
 * written to $MEMTRACE_TRUTH.peak again), freed; "ready".
 * "exit" frees everything.
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

static void *a[40], *b[10], *d[30];
static int a_rec, b_rec, d_rec;

static void *must(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
	memset(p, 0xab, 1);
	return p;
}

/* The book of this moment, the peak, beside the main one. */
static void write_peak_book(void)
{
	char path[4096];
	const char *base = getenv("MEMTRACE_TRUTH");

	if (base == NULL || snprintf(path, sizeof path, "%s.peak", base) >= (int)sizeof path) {
		errno = EINVAL;
		truth_die("MEMTRACE_TRUTH");
	}
	truth_set_path(path);
	truth_write();
	truth_book_g.path[0] = '\0';
}

static void site_a(void)
{
	for (int i = 0; i < 40; i++) {
		a[i] = must(malloc(1000)); a_rec = TRUTH_ALLOC(1000);
	}
}

static void site_b(void)
{
	for (int i = 0; i < 10; i++) {
		b[i] = must(malloc(5000)); b_rec = TRUTH_ALLOC(5000);
	}
}

static void site_c(void)
{
	void *p; int rec;
	p = must(malloc(200000)); rec = TRUTH_ALLOC(200000);
	write_peak_book();
	free(p);
	truth_adjust(rec, -200000, -1);
}

static void site_d(void)
{
	for (int i = 0; i < 30; i++) {
		d[i] = must(malloc(2000)); d_rec = TRUTH_ALLOC(2000);
	}
}

static void site_e(void)
{
	for (int i = 0; i < 50; i++) {
		void *p; int rec;
		p = must(malloc(100)); rec = TRUTH_ALLOC(100);
		free(p);
		truth_adjust(rec, -100, -1);
	}
}

static void site_f(void)
{
	void *p; int rec;
	p = must(malloc(500000)); rec = TRUTH_ALLOC(500000);
	write_peak_book();
	free(p);
	truth_adjust(rec, -500000, -1);
}

int main(void)
{
	char cmd[64];

	site_a();
	site_b();
	site_c();
	for (int i = 0; i < 40; i++) {
		free(a[i]);
		truth_adjust(a_rec, -1000, -1);
	}
	site_d();
	site_e();
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") == 0) {
		site_f();
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	for (int i = 0; i < 10; i++)
		free(b[i]);
	for (int i = 0; i < 30; i++)
		free(d[i]);
	return 0;
}
