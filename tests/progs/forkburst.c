/*
 * forkburst.c - a parent that forks many children at once, each of which
 * frees blocks it inherited.
 *
 * The parent allocates NBLK blocks at parent_blocks and says "ready"; on
 * "fork" it forks NCHILD children in a row, as fast as it can (the test
 * stops the daemon meanwhile, so that it meets all the parent's FORK
 * records before any child's connection). Each child frees every
 * other inherited block, allocates a few of its own at child_blocks, writes
 * its book to "$MEMTRACE_TRUTH.<pid>" (the inherited blocks it still holds
 * stay in it: its session starts with its parent's heap), tells the parent
 * over a pipe and waits until the pipe closes. The parent writes its book
 * (meta "children": how many books beside its own), says "ready", and on
 * "exit" releases and reaps them, frees its blocks and exits 0.
 *
 * Children never read stdin; only the parent talks to the harness. No stdio
 * (see truth.h).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "truth.h"

#define NCHILD 40
#define NBLK   200

static void *blk[NBLK];
static int rec[NBLK];

static void parent_blocks(void)
{
	for (int i = 0; i < NBLK; i++) {
		blk[i] = malloc(100 + (size_t)i); rec[i] = TRUTH_ALLOC(100 + (size_t)i);
		if (blk[i] == NULL)
			truth_die("malloc");
	}
}

static void child_blocks(void)
{
	for (int i = 0; i < 3; i++) {
		void *p = malloc(3000); (void)TRUTH_ALLOC(3000);
		if (p == NULL)
			truth_die("malloc");
	}
}

static void child_main(int ready_fd, int hold_fd)
{
	char path[4096], c = 'r';
	const char *env = getenv("MEMTRACE_TRUTH");

	truth_forked();
	if (env == NULL)
		truth_die("MEMTRACE_TRUTH is not set");
	snprintf(path, sizeof path, "%s.%ld", env, (long)getpid());
	truth_set_path(path);
	for (int i = 0; i < NBLK; i += 2) {
		free(blk[i]);
		truth_adjust(rec[i], -(long long)(100 + i), -1);
	}
	TRUTH_CALL(child_blocks());
	truth_write();
	if (write(ready_fd, &c, 1) != 1)
		truth_die("ready pipe");
	while (read(hold_fd, &c, 1) > 0)
		;
	_exit(0);
}

int main(void)
{
	char cmd[64];
	int ready[NCHILD], hold[NCHILD];
	pid_t pid[NCHILD];

	TRUTH_CALL(parent_blocks());
	truth_write();
	truth_ready();
	truth_wait(cmd, sizeof cmd); /* "fork" */
	for (int k = 0; k < NCHILD; k++) {
		int rp[2], hp[2];
		if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(hp, O_CLOEXEC) < 0)
			truth_die("pipe");
		pid[k] = fork();
		if (pid[k] < 0)
			truth_die("fork");
		if (pid[k] == 0) {
			/* The earlier children's pipe ends are not this one's to
			 * hold: their release is their pipe closing. */
			for (int j = 0; j < k; j++) {
				close(ready[j]);
				close(hold[j]);
			}
			close(rp[0]);
			close(hp[1]);
			child_main(rp[1], hp[0]);
		}
		close(rp[1]);
		close(hp[0]);
		ready[k] = rp[0];
		hold[k] = hp[1];
	}
	for (int k = 0; k < NCHILD; k++) {
		char c;
		if (read(ready[k], &c, 1) != 1)
			truth_die("child did not become ready");
		close(ready[k]);
	}
	truth_meta("children", NCHILD);
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	for (int k = 0; k < NCHILD; k++) {
		int st;
		close(hold[k]);
		if (waitpid(pid[k], &st, 0) != pid[k] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			truth_die("child failed");
	}
	for (int i = 0; i < NBLK; i++) {
		free(blk[i]);
		truth_adjust(rec[i], -(long long)(100 + i), -1);
	}
	truth_write();
	return 0;
}
