/*
 * leaky.c - a small "service" with a cache that grows, a per-request buffer
 * that is freed, and a leak, for the memtrace demo.
 *
 * Every tick (10 ms) it handles a request: parses it into a temporary buffer
 * (freed), stores a 256-byte entry in a cache that is never trimmed (grows),
 * and every tenth request forgets a 1 KiB scratch block (leaks). Run it under
 * memtrace and `memtracectl top` points at cache_put and leak_scratch.
 *
 * Usage: leaky [SECONDS]   (default 5)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
	struct entry *next;
	char payload[256 - sizeof(struct entry *)];
};

static struct entry *cache;
/* Where the last leaked block is remembered; it is overwritten every time, so
 * the earlier ones are lost (and the compiler cannot drop the allocation). */
static void *volatile last_scratch;

static void cache_put(const char *key)
{
	struct entry *e = malloc(sizeof(*e));
	snprintf(e->payload, sizeof(e->payload), "%s", key);
	e->next = cache;
	cache = e;
}

static void leak_scratch(int n)
{
	char *scratch = malloc(1024);
	memset(scratch, n, 1024);
	last_scratch = scratch; /* forgotten: never freed */
}

static void handle_request(int n)
{
	char *buf = malloc(4096);
	snprintf(buf, 4096, "request-%d", n);
	cache_put(buf);
	if (n % 10 == 0)
		leak_scratch(n);
	free(buf);
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 5;
	struct timespec tick = {0, 10 * 1000 * 1000};

	printf("leaky: serving for %d s\n", seconds);
	fflush(stdout);
	for (int n = 0; n < seconds * 100; n++) {
		handle_request(n);
		nanosleep(&tick, NULL);
	}
	printf("leaky: done, %d requests\n", seconds * 100);
	return 0;
}
