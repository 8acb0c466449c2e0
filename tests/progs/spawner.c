/*
 * spawner.c - descendants started every way a program starts them.
 *
 * Usage: spawner            the traced process
 *        spawner leaf K FD  (internal) a descendant of kind K
 *        spawner reborn     (internal) the traced process after it exec'd
 *
 * The traced process allocates at root_work and starts three descendants,
 * each this program as a "leaf":
 *  - E: fork, then exec of the leaf;
 *  - S: fork, then exec of /bin/sh, which runs the leaf as its child (the
 *    shell's own command line goes on after it, so it forks rather than
 *    execs);
 *  - P: posix_spawn, which runs no fork handlers.
 * A leaf allocates at leaf_work, writes its own book to
 * "$MEMTRACE_TRUTH.<pid>" with meta "preloaded" (its LD_PRELOAD still names
 * libmemtrace) and "mapped" (the agent is loaded in it), tells its kind and
 * pid over a pipe and exits without freeing. The traced process reaps them
 * and says "ready" with meta leaf_exec, leaf_shell, leaf_spawn and shell
 * (the shell's pid). On "exec" it execs itself as "reborn" (same pid): the
 * new image allocates at reborn_work, starts one more leaf (R, posix_spawn),
 * says "ready" with meta leaf_reborn and exits 0 on "exit". No stdio
 * (truth.h).
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* Not clang-formatted: an allocation call and its TRUTH_ALLOC share one source
 * line on purpose. */
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <spawn.h>
#include <sys/wait.h>

#include "truth.h"

struct note {
	int kind;
	int pid;
};

static char maps[256 * 1024];

static void check(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
}

static void root_work(void)
{
	for (int i = 0; i < 2; i++) {
		void *p;
		p = malloc(3001); (void)TRUTH_ALLOC(3001);
		check(p);
	}
}

static void reborn_work(void)
{
	for (int i = 0; i < 3; i++) {
		void *p;
		p = malloc(3003); (void)TRUTH_ALLOC(3003);
		check(p);
	}
}

static void leaf_work(void)
{
	for (int i = 0; i < 4; i++) {
		void *p;
		p = malloc(707); (void)TRUTH_ALLOC(707);
		check(p);
	}
}

static int agent_mapped(void)
{
	size_t n = 0;
	ssize_t r;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		truth_die("/proc/self/maps");
	while (n < sizeof maps - 1 && (r = read(fd, maps + n, sizeof maps - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	maps[n] = '\0';
	return strstr(maps, "libmemtrace") != NULL;
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

static int leaf_main(int kind, int fd)
{
	const char *preload = getenv("LD_PRELOAD");
	struct note n = {kind, (int)getpid()};

	own_truth_path();
	TRUTH_CALL(leaf_work());
	truth_meta("preloaded", preload != NULL && strstr(preload, "libmemtrace") != NULL);
	truth_meta("mapped", agent_mapped());
	truth_write();
	if (write(fd, &n, sizeof n) != (ssize_t)sizeof n)
		truth_die("note");
	return 0;
}

/* A leaf's arguments: its kind and the pipe it reports on. */
static void leaf_args(char kind[2], char fd[16], int wfd, char k)
{
	kind[0] = k;
	kind[1] = '\0';
	snprintf(fd, 16, "%d", wfd);
}

static pid_t start_forked(int wfd, char k)
{
	char kind[2], fd[16];
	pid_t pid;

	leaf_args(kind, fd, wfd, k);
	pid = fork();
	if (pid < 0)
		truth_die("fork");
	if (pid > 0)
		return pid;
	if (k == 'E') {
		char *argv[] = {"spawner", "leaf", kind, fd, NULL};
		execv("/proc/self/exe", argv);
	} else {
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0)
			truth_die("readlink");
		self[n] = '\0';
		char *argv[] = {"sh", "-c", "\"$0\" leaf \"$1\" \"$2\"; exit $?", self, kind, fd,
		                NULL};
		execv("/bin/sh", argv);
	}
	truth_die("execv");
	return -1;
}

static pid_t start_spawned(int wfd, char k)
{
	char kind[2], fd[16];
	char *argv[] = {"spawner", "leaf", kind, fd, NULL};
	pid_t pid;
	int rc;

	leaf_args(kind, fd, wfd, k);
	rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
	if (rc != 0) {
		errno = rc;
		truth_die("posix_spawn");
	}
	return pid;
}

static void reap(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		errno = ECHILD;
		truth_die("child failed");
	}
}

/* Reads `count` notes and books each leaf's pid as meta `names[kind]`. */
static void collect(int rfd, int count)
{
	for (int i = 0; i < count; i++) {
		struct note n;
		if (read(rfd, &n, sizeof n) != (ssize_t)sizeof n)
			truth_die("a leaf did not report");
		truth_meta(n.kind == 'E'   ? "leaf_exec"
		           : n.kind == 'S' ? "leaf_shell"
		           : n.kind == 'P' ? "leaf_spawn"
		                           : "leaf_reborn",
		           n.pid);
	}
}

int main(int argc, char **argv)
{
	char cmd[64];
	int p[2];

	if (argc == 4 && strcmp(argv[1], "leaf") == 0)
		return leaf_main(argv[2][0], atoi(argv[3]));
	/* The write end is passed on by number: not close-on-exec. */
	if (pipe(p) < 0 || fcntl(p[0], F_SETFD, FD_CLOEXEC) < 0)
		truth_die("pipe");

	if (argc == 2 && strcmp(argv[1], "reborn") == 0) {
		TRUTH_CALL(reborn_work());
		reap(start_spawned(p[1], 'R'));
		collect(p[0], 1);
		truth_ready();
		truth_wait(cmd, sizeof cmd);
		return 0;
	}

	TRUTH_CALL(root_work());
	pid_t e = start_forked(p[1], 'E');
	pid_t s = start_forked(p[1], 'S');
	pid_t sp = start_spawned(p[1], 'P');
	reap(e);
	reap(s);
	reap(sp);
	collect(p[0], 3);
	truth_meta("shell", s);
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	if (strcmp(cmd, "exec") != 0)
		return 0;
	char *again[] = {"spawner", "reborn", NULL};
	close(p[0]);
	close(p[1]);
	execv("/proc/self/exe", again);
	truth_die("execv");
	return 1;
}
