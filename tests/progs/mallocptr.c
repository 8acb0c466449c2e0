/*
 * mallocptr.c - a position-dependent program (built -no-pie -fno-pic) that
 * takes malloc's address in its code. Its dynamic symbol for malloc is then
 * undefined but has a value, a PLT entry of the program's own, which is what
 * dlsym(RTLD_DEFAULT, "malloc") finds. Calls through it still reach the agent:
 * the agent must not take it for an allocator of the program's own.
 *
 * Allocates MALLOCPTR_BLOCKS blocks through the pointer, books them, prints
 * "ready"; "exit" ends it.
 */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>

#include "truth.h"

#define MALLOCPTR_BLOCKS 3
#define MALLOCPTR_SIZE 777

static void *(*volatile alloc_fn)(size_t);
static void *held[MALLOCPTR_BLOCKS];

static void through_pointer(void)
{
	for (int i = 0; i < MALLOCPTR_BLOCKS; i++) {
		held[i] = alloc_fn(MALLOCPTR_SIZE); TRUTH_ALLOC(MALLOCPTR_SIZE);
	}
}

int main(void)
{
	char cmd[64];

	alloc_fn = malloc;
	through_pointer();
	truth_ready();
	truth_wait(cmd, sizeof(cmd));
	return 0;
}
