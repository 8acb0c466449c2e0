/*
 * pointers.c - blocks at booked sites whose addresses it prints, for
 * `memtracectl where` (tracemalloc's get_object_traceback).
 *
 * Allocates site_small (100 B, malloc), site_big (65536 B, calloc) and
 * site_nested (24 B, from a deeper call chain), books them, frees a fourth
 * block (site_gone, never booked: no live block), then prints one line per
 * block, "block NAME ADDRESS SIZE RECORD" (RECORD: the block's record in
 * the book), and "gone ADDRESS", and "ready". Nothing allocates after the
 * free (no stdio: truth.h's writer), so the freed address stays in no live
 * block. "exit" frees everything.
 */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>

#include "truth.h"

static void *small, *big, *nested, *gone;
static int rec_small, rec_big, rec_nested;

static void site_small(void)
{
	small = malloc(100); rec_small = TRUTH_ALLOC(100);
}

static void site_big(void)
{
	big = calloc(1, 65536); rec_big = TRUTH_ALLOC(65536);
}

static void site_nested(void)
{
	nested = malloc(24); rec_nested = TRUTH_ALLOC(24);
}

static void middle(void)
{
	TRUTH_CALL(site_nested());
}

static void site_gone(void)
{
	gone = malloc(48);
	free(gone);
}

int main(void)
{
	char cmd[64];

	TRUTH_CALL(site_small());
	TRUTH_CALL(site_big());
	TRUTH_CALL(middle());
	site_gone();
	truth_putf(1, "block small %p 100 %d\n", small, rec_small);
	truth_putf(1, "block big %p 65536 %d\n", big, rec_big);
	truth_putf(1, "block nested %p 24 %d\n", nested, rec_nested);
	truth_putf(1, "gone %p\n", gone);
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	free(small);
	free(big);
	free(nested);
	truth_write();
	return 0;
}
