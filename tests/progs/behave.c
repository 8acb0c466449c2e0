/*
 * behave.c - a program whose output and exit status the agent must not change.
 *
 * Usage: behave EXIT_CODE
 *
 * It does what ordinary programs do with memory and prints the results, so
 * any disturbance shows in its output: stdio (whose buffers libc mallocs), a
 * linked list, a growing realloc buffer, a thread that allocates and returns
 * a result, a forked child that allocates and exits with a status the parent
 * prints, one line on stderr, an atexit handler. Then it prints "waiting",
 * flushes and reads one line from stdin: the test uses that pause to kill the
 * daemon under it. After the line it runs a burst of allocations spread over
 * about half a second, so the agent has to flush (and find the daemon gone)
 * several times before the program prints its last lines and exits with
 * EXIT_CODE through exit(3).
 *
 * Everything printed is deterministic: no addresses, pids or times.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct node {
	struct node *next;
	unsigned value;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h;
}

static void at_exit_handler(void)
{
	printf("behave: atexit ran\n");
}

static void *thread_fn(void *arg)
{
	unsigned n = *(unsigned *)arg;
	uint64_t *v = malloc(n * sizeof *v);
	uint64_t h = 0;

	if (v == NULL)
		return NULL;
	for (unsigned i = 0; i < n; i++)
		v[i] = i * 2654435761u;
	for (unsigned i = 0; i < n; i++)
		h = mix(h, v[i]);
	free(v);
	return (void *)(uintptr_t)(h & 0xffffffffu);
}

static unsigned list_sum(unsigned n)
{
	struct node *head = NULL;
	unsigned sum = 0;

	for (unsigned i = 0; i < n; i++) {
		struct node *x = malloc(sizeof *x);
		if (x == NULL)
			exit(90);
		x->value = i * 3 + 1;
		x->next = head;
		head = x;
	}
	while (head != NULL) {
		struct node *x = head;
		sum += x->value;
		head = x->next;
		free(x);
	}
	return sum;
}

static size_t grow_buffer(uint64_t *hash)
{
	char *buf = NULL;
	size_t len = 0;

	for (int i = 0; i < 2000; i++) {
		char piece[32];
		int n = snprintf(piece, sizeof piece, "%d,", i);
		char *nb = realloc(buf, len + (size_t)n + 1);
		if (nb == NULL)
			exit(91);
		buf = nb;
		memcpy(buf + len, piece, (size_t)n + 1);
		len += (size_t)n;
	}
	*hash = 0;
	for (size_t i = 0; i < len; i++)
		*hash = mix(*hash, (unsigned char)buf[i]);
	free(buf);
	return len;
}

static uint64_t burst(void)
{
	uint64_t h = 0;

	for (int round = 0; round < 50; round++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		void *keep[64];
		for (int i = 0; i < 4000; i++) {
			size_t n = 16 + (size_t)((i * 31 + round) % 500);
			void *p = malloc(n);
			if (p == NULL)
				exit(92);
			memset(p, i & 0xff, n);
			h = mix(h, ((unsigned char *)p)[n - 1]);
			if (i < 64)
				keep[i] = p;
			else
				free(p);
		}
		for (int i = 0; i < 64; i++)
			free(keep[i]);
		nanosleep(&ts, NULL);
	}
	return h;
}

int main(int argc, char **argv)
{
	int code = argc > 1 ? atoi(argv[1]) : 0;
	unsigned n = 5000;
	pthread_t th;
	void *tres = NULL;
	uint64_t h;
	char line[64];
	pid_t child;
	int st;

	atexit(at_exit_handler);
	printf("behave: start, will exit %d\n", code);
	printf("behave: list sum %u\n", list_sum(10000));
	printf("behave: buffer length %zu", grow_buffer(&h));
	printf(" hash %016llx\n", (unsigned long long)h);
	if (pthread_create(&th, NULL, thread_fn, &n) != 0 || pthread_join(th, &tres) != 0)
		return 93;
	printf("behave: thread result %08lx\n", (unsigned long)(uintptr_t)tres);
	fprintf(stderr, "behave: this line goes to stderr\n");

	fflush(stdout);
	child = fork();
	if (child < 0)
		return 94;
	if (child == 0) {
		printf("behave: child list sum %u\n", list_sum(300));
		fflush(stdout);
		_exit(7);
	}
	if (waitpid(child, &st, 0) != child)
		return 95;
	printf("behave: child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	printf("waiting\n");
	fflush(stdout);
	if (fgets(line, sizeof line, stdin) == NULL)
		strcpy(line, "(eof)\n");
	printf("behave: got %s", line);
	printf("behave: burst hash %016llx\n", (unsigned long long)burst());
	printf("behave: done\n");
	exit(code);
}
