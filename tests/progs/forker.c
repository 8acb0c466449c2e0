/*
 * forker.c - fork and exec under the agent.
 *
 * The parent allocates at parent_before, then starts three children:
 *  - F (fork, keeps running): keeps the parent's blocks it inherited in its
 *    book (truth_forked: its session starts with them, at the parent's
 *    sites), frees one of them, allocates at child_work and waits. Its frees
 *    and allocations must never reach the parent's session; its inherited
 *    blocks and its own sites must show under its own pid, exactly.
 *  - E (fork, then exec of this program with "exec-child"): allocates at
 *    pre_exec before exec. The exec'd image is a new process image with the
 *    same pid; it allocates at exec_child_work and waits. Its session must
 *    show exactly exec_child_work, nothing from before the exec.
 *  - Q (fork, exits at once): allocates at quitter_work and exits without
 *    freeing; its exited session keeps what it held, inherited blocks too.
 * Then the parent allocates at parent_after, so parent and children allocate
 * while the others exist, and says "ready" (meta child_fork, child_exec,
 * child_exited carry the children's pids). Each child writes its own book to
 * "$MEMTRACE_TRUTH.<pid>" before it tells the parent over a pipe that it is
 * ready. "exit" releases F and E (their hold pipe closes), reaps them, frees
 * everything and exits 0.
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
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "truth.h"

struct blk {
	void *p;
	size_t n;
	int rec;
};

static struct blk pblk[6]; /* the parent's blocks */

static void check(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
}

static void own_truth_path(void)
{
	char path[4096];
	const char *env = getenv("MEMTRACE_TRUTH");

	if (env == NULL) {
		errno = EINVAL;
		truth_die("MEMTRACE_TRUTH is not set");
	}
	snprintf(path, sizeof path, "%s.%ld", env, (long)getpid());
	truth_set_path(path);
}

/* Tells the parent this child's book is written, then waits for release. */
static void child_ready_and_hold(int ready_fd, int hold_fd)
{
	char c = 'r';

	truth_write();
	if (write(ready_fd, &c, 1) != 1)
		truth_die("ready pipe");
	close(ready_fd);
	while (read(hold_fd, &c, 1) > 0)
		;
}

static void parent_before(void)
{
	for (int i = 0; i < 3; i++) {
		pblk[i].n = 1500 + (size_t)i;
		pblk[i].p = malloc(pblk[i].n); pblk[i].rec = TRUTH_ALLOC(pblk[i].n);
		check(pblk[i].p);
	}
}

static void parent_after(void)
{
	for (int i = 3; i < 6; i++) {
		pblk[i].n = 2500 + (size_t)i;
		pblk[i].p = malloc(pblk[i].n); pblk[i].rec = TRUTH_ALLOC(pblk[i].n);
		check(pblk[i].p);
	}
}

static void *cblk[4];

static void child_work(void)
{
	for (int i = 0; i < 4; i++) {
		cblk[i] = malloc(1234); (void)TRUTH_ALLOC(1234);
		check(cblk[i]);
	}
}

static void child_main(int ready_fd, int hold_fd)
{
	truth_forked();
	own_truth_path();
	/* Free an inherited block: the parent must still see it as live. */
	free(pblk[0].p);
	truth_adjust(pblk[0].rec, -(long long)pblk[0].n, -1);
	TRUTH_CALL(child_work());
	child_ready_and_hold(ready_fd, hold_fd);
	for (int i = 0; i < 4; i++)
		free(cblk[i]);
	exit(0);
}

static void pre_exec(void)
{
	for (int i = 0; i < 2; i++)
		check(malloc(999)); /* leaked on purpose: exec discards it */
}

static void exec_child_work(void)
{
	for (int i = 0; i < 5; i++) {
		cblk[i % 4] = malloc(777); (void)TRUTH_ALLOC(777);
		check(cblk[i % 4]);
	}
}

static void exec_child_main(int ready_fd, int hold_fd)
{
	own_truth_path();
	TRUTH_CALL(exec_child_work());
	child_ready_and_hold(ready_fd, hold_fd);
	exit(0);
}

static void quitter_work(void)
{
	for (int i = 0; i < 2; i++) {
		void *p;
		p = malloc(4321); (void)TRUTH_ALLOC(4321);
		check(p);
	}
}

static pid_t start_child(int kind, int *ready_rd, int *hold_wr)
{
	int rp[2], hp[2];
	pid_t pid;

	/* Close-on-exec, so that a later exec'd child does not keep another
	 * child's hold pipe open; E clears it on the two ends it passes on. */
	if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(hp, O_CLOEXEC) < 0)
		truth_die("pipe");
	pid = fork();
	if (pid < 0)
		truth_die("fork");
	if (pid == 0) {
		close(rp[0]);
		close(hp[1]);
		if (kind == 'F') {
			TRUTH_CALL(child_main(rp[1], hp[0]));
		} else {
			char r[16], h[16];
			char *argv[] = { "forker", "exec-child", r, h, NULL };
			TRUTH_CALL(pre_exec());
			if (fcntl(rp[1], F_SETFD, 0) < 0 || fcntl(hp[0], F_SETFD, 0) < 0)
				truth_die("fcntl");
			snprintf(r, sizeof r, "%d", rp[1]);
			snprintf(h, sizeof h, "%d", hp[0]);
			execv("/proc/self/exe", argv);
			truth_die("execv");
		}
		_exit(97);
	}
	close(rp[1]);
	close(hp[0]);
	*ready_rd = rp[0];
	*hold_wr = hp[1];
	return pid;
}

static void wait_ready(int fd)
{
	char c;
	if (read(fd, &c, 1) != 1)
		truth_die("child did not become ready");
	close(fd);
}

static void reap(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		errno = ECHILD;
		truth_die("child failed");
	}
}

int main(int argc, char **argv)
{
	char cmd[64];
	int f_ready, f_hold, e_ready, e_hold;
	pid_t f, e, q;

	if (argc == 4 && strcmp(argv[1], "exec-child") == 0) {
		TRUTH_CALL(exec_child_main(atoi(argv[2]), atoi(argv[3])));
		return 0;
	}

	TRUTH_CALL(parent_before());
	f = start_child('F', &f_ready, &f_hold);
	e = start_child('E', &e_ready, &e_hold);
	q = fork();
	if (q < 0)
		truth_die("fork");
	if (q == 0) {
		truth_forked();
		own_truth_path();
		TRUTH_CALL(quitter_work());
		truth_write();
		exit(0);
	}
	TRUTH_CALL(parent_after());
	wait_ready(f_ready);
	wait_ready(e_ready);
	reap(q);
	truth_meta("child_fork", f);
	truth_meta("child_exec", e);
	truth_meta("child_exited", q);
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	close(f_hold);
	close(e_hold);
	reap(f);
	reap(e);
	for (int i = 0; i < 6; i++) {
		free(pblk[i].p);
		truth_adjust(pblk[i].rec, -(long long)pblk[i].n, -1);
	}
	truth_write();
	return 0;
}
