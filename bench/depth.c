/*
 * depth.c - what a stack's depth costs the agent: allocations made D frames
 * below main, either always from the same stack ("repeat": a loop at the
 * bottom allocates and frees, the walk of every allocation is the last one
 * again) or each from a stack whose outermost frame differs from the last
 * one's ("fresh": the recursion is entered again for every allocation,
 * from one of two call sites in main in turn, so a walk finds nothing to
 * reuse and must go all the way up; the two stacks are known, so this is
 * the cost of the walk, not of new stacks).
 *
 * Usage: depth -d D -n N -m repeat|fresh
 * Prints one line: depth, mode, events (N allocations and N frees), wall_s
 * and cpu_s (the whole process's user and system time, the agent's sender
 * thread included).
 * Built -O2 without frame pointers, as a program in production is; each
 * level is a real frame (noinline, and work after the call so that it is
 * not a tail call).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static volatile uintptr_t sink;

static NOINLINE void bottom_repeat(long n)
{
	for (long i = 0; i < n; i++) {
		char *p = malloc(48);
		if (p == NULL)
			abort();
		p[0] = (char)i;
		sink += (uintptr_t)p[0];
		free(p);
	}
}

static NOINLINE void bottom_one(long i)
{
	char *p = malloc(48);
	if (p == NULL)
		abort();
	p[0] = (char)i;
	sink += (uintptr_t)p[0];
	free(p);
}

static NOINLINE void level(int left, long i, long n, int fresh);

/* Two call sites per level: which one is bit `left` of i. */
static NOINLINE void level(int left, long i, long n, int fresh)
{
	if (left == 0) {
		if (fresh)
			bottom_one(i + fresh);
		else
			bottom_repeat(n);
	} else if ((i >> (left % 62)) & 1) {
		level(left - 1, i, n, fresh);
	} else {
		level(left - 1, i ^ 1, n, fresh);
		i ^= 1;
	}
	sink += (uintptr_t)i; /* not a tail call */
}

int main(int argc, char **argv)
{
	int depth = 10, fresh = 0, c;
	long n = 1000000;
	struct timespec t0, t1;

	while ((c = getopt(argc, argv, "d:n:m:")) != -1) {
		switch (c) {
		case 'd':
			depth = atoi(optarg);
			break;
		case 'n':
			n = atol(optarg);
			break;
		case 'm':
			fresh = strcmp(optarg, "fresh") == 0;
			break;
		default:
			fprintf(stderr, "usage: depth -d D -n N -m repeat|fresh\n");
			return 2;
		}
	}
	if (depth < 3 || n < 1) {
		fprintf(stderr, "depth: -d at least 3, -n at least 1\n");
		return 2;
	}
	/* main, level x (depth - 2), the bottom: depth frames. */
	int levels = depth - 2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (fresh) {
		for (long i = 0; i < n; i++) {
			if (i & 1)
				level(levels, 0, 1, 1);
			else
				level(levels, 0, 1, 2);
		}
	} else {
		level(levels, 0, n, 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("depth=%d mode=%s events=%ld wall_s=%.6f cpu_s=%.6f\n", depth,
	       fresh ? "fresh" : "repeat", 2 * n,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	return 0;
}
