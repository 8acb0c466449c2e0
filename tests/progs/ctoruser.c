/*
 * ctoruser.c - a program linked with libctorlib, whose constructor allocated
 * before the agent's constructor ran (see ctorlib.c).
 *
 * main books the library's blocks at the sites the library reports, then
 * allocates CTORUSER_BLOCKS blocks of its own at one site, books them (meta
 * "ctor_churn": how many blocks the constructor allocated and freed) and
 * prints "ready". "exit" ends it. No stdio: the only allocations are the
 * booked ones and the constructor's churn.
 */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>

#include "ctorlib.h"
#include "truth.h"

#define CTORUSER_BLOCKS 2
#define CTORUSER_SIZE 2548

static void *own[CTORUSER_BLOCKS];

static void own_site(void)
{
	for (int i = 0; i < CTORUSER_BLOCKS; i++) {
		own[i] = malloc(CTORUSER_SIZE); TRUTH_ALLOC(CTORUSER_SIZE);
	}
}

int main(void)
{
	char cmd[64];

	for (int i = 0; i < CTORLIB_BLOCKS; i++) {
		const char *file, *func;
		long bytes;
		int line = ctorlib_site(i, &file, &func, &bytes);
		if (line < 0)
			truth_die("the library's constructor did not allocate");
		/* The library's strings live as long as the program. */
		truth_note(file, line, func, bytes, 1);
	}
	truth_meta("ctor_churn", ctorlib_churned());
	own_site();
	truth_ready();
	truth_wait(cmd, sizeof(cmd));
	return 0;
}
