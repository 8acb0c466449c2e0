/*
 * daemonize.c - a program that goes to the background as daemons do: it
 * allocates, forks, and the parent exits at once (before the daemon has even
 * accepted the child's connection, most of the time). The child waits until
 * its parent is gone, frees one inherited block, allocates at child_work and
 * says "ready" itself (it inherited the harness's stdin and stdout), so the
 * book the harness reads is the child's: it holds the parent's blocks it
 * inherited (at parent_work, required, not optional) and its own. "exit"
 * frees everything and ends the child.
 *
 * With argument "double", it goes to the background as classic daemons do:
 * the first child allocates nothing, forks the grandchild and exits at
 * once; the grandchild is the one described above (it inherited the first
 * process's blocks through its parent, which never allocated).
 *
 * With argument "wait", the parent instead waits for the child's end (the
 * control case: the parent's session outlives the child's hello).
 */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "truth.h"

static void *pblk[4];
static int prec[4];
static void *cblk[3];
static char cmd[64];

static void check(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
}

static void parent_work(void)
{
	for (int i = 0; i < 4; i++) {
		pblk[i] = malloc(3000 + (size_t)i); prec[i] = TRUTH_ALLOC(3000 + i);
		check(pblk[i]);
	}
}

static void child_work(void)
{
	for (int i = 0; i < 3; i++) {
		cblk[i] = malloc(700); (void)TRUTH_ALLOC(700);
		check(cblk[i]);
	}
}

static void child_main(pid_t parent)
{
	struct timespec ts = {0, 2000000};

	truth_forked();
	while (getppid() == parent)
		nanosleep(&ts, NULL);
	free(pblk[0]);
	truth_adjust(prec[0], -3000, -1);
	TRUTH_CALL(child_work());
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	for (int i = 1; i < 4; i++)
		free(pblk[i]);
	for (int i = 0; i < 3; i++)
		free(cblk[i]);
	exit(0);
}

int main(int argc, char **argv)
{
	int wait_child = argc > 1 && strcmp(argv[1], "wait") == 0;
	int twice = argc > 1 && strcmp(argv[1], "double") == 0;
	pid_t self = getpid();

	TRUTH_CALL(parent_work());
	pid_t pid = fork();
	if (pid < 0)
		truth_die("fork");
	if (pid == 0) {
		if (wait_child) {
			/* the control case: the parent stays; wait for nothing */
			truth_forked();
			free(pblk[0]);
			truth_adjust(prec[0], -3000, -1);
			TRUTH_CALL(child_work());
			truth_ready();
			truth_wait(cmd, sizeof cmd);
			exit(0);
		}
		if (twice) {
			pid_t mid = getpid(), g = fork();
			if (g < 0)
				truth_die("fork");
			if (g == 0)
				child_main(mid);
			_exit(0); /* the middle process: no allocation, gone at once */
		}
		child_main(self);
	}
	if (wait_child) {
		int st;
		waitpid(pid, &st, 0);
		exit(0);
	}
	_exit(0); /* at once, as a daemon's first process does */
}
