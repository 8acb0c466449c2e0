/*
 * closer.c - a program that closes its file descriptors, as daemons do.
 *
 * Usage: closer MODE DATAFILE
 *
 * It allocates at before_close (booked) and says "ready". On "close" it
 * closes every descriptor from 3 up to its RLIMIT_NOFILE (at most 65536),
 * noting which were open - the agent's among them - by MODE:
 *  loop         close() on each number, as daemons have always done;
 *  closefrom    closefrom(3);
 *  close_range  close_range(3, ~0U, 0);
 *  takeover     a close() loop, then the program puts a descriptor of its own
 *               on every number that was open, as a program may when it
 *               reuses them (dup2);
 *  raw          the close_range and dup3 system calls themselves, bypassing
 *               libc, for the same takeover.
 * Then it creates a socket pair and DATAFILE (they get the lowest numbers,
 * the agent's among them when it kept a low one) and writes DATA into the
 * file through its own descriptor; takeover and raw put the pair's first end
 * on every other number that was open. It allocates at after_close, booked
 * when MODE is one under which the program stays traced (loop, closefrom,
 * close_range), writes its book, and prints "closed N 0" (N: how many numbers were open) and,
 * when booked, "ready" again. On "check" it reads what either end of the
 * pair received, checks that each number it reused still refers to what it
 * put there, and prints "checked BYTES INTACT" (0 and 1 when the agent wrote
 * nothing to the program's descriptors and took none away). "exit" exits 0.
 * No stdio (truth.h).
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "truth.h"

#define DATA "closer: the program's own data\n"
#define MAX_FORMER 64

static int former[MAX_FORMER];
static int nformer;

static void check(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
}

static void before_close(void)
{
	for (int i = 0; i < 3; i++) {
		void *p;
		p = malloc(1111); (void)TRUTH_ALLOC(1111);
		check(p);
	}
}

static void after_close(int booked)
{
	for (int i = 0; i < 2; i++) {
		void *p;
		if (booked) {
			p = malloc(2222); (void)TRUTH_ALLOC(2222);
		} else if (i == 0) {
			/* Tracing stops when the agent next looks at its
			 * descriptors, which may be after this: one block, so
			 * that it is reported exactly or not at all. */
			p = malloc(4444); truth_optional(TRUTH_ALLOC(4444));
		} else {
			continue;
		}
		check(p);
	}
}

static int fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > 65536)
		return 65536;
	return (int)rl.rlim_cur;
}

/* Notes the numbers from 3 up that are open. */
static void note_open(void)
{
	int limit = fd_limit();

	for (int fd = 3; fd < limit; fd++)
		if (fcntl(fd, F_GETFD) >= 0 && nformer < MAX_FORMER)
			former[nformer++] = fd;
}

static void close_all(const char *mode)
{
	int limit = fd_limit();

	if (strcmp(mode, "closefrom") == 0) {
		closefrom(3);
	} else if (strcmp(mode, "close_range") == 0) {
		if (close_range(3, ~0U, 0) < 0)
			truth_die("close_range");
	} else if (strcmp(mode, "raw") == 0) {
		if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
			truth_die("close_range system call");
	} else {
		for (int fd = 3; fd < limit; fd++)
			close(fd);
	}
}

static int create_data(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		truth_die(path);
	truth_put(fd, DATA, sizeof(DATA) - 1);
	return fd;
}

static void put_numbers(const char *what, long a, long b)
{
	char line[96];
	int n = snprintf(line, sizeof line, "%s %ld %ld\n", what, a, b);

	truth_put(1, line, (size_t)n);
}

int main(int argc, char **argv)
{
	char cmd[64];
	int data, pair[2] = {-1, -1}, traced, takeover;
	struct stat want[3]; /* data, pair[0], pair[1] */

	if (argc != 3) {
		errno = EINVAL;
		truth_die("usage: closer loop|closefrom|close_range|takeover|raw DATAFILE");
	}
	takeover = strcmp(argv[1], "takeover") == 0 || strcmp(argv[1], "raw") == 0;
	traced = !takeover;
	TRUTH_CALL(before_close());
	truth_ready();
	truth_wait(cmd, sizeof cmd);

	note_open();
	close_all(argv[1]);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0)
		truth_die("socketpair");
	data = create_data(argv[2]);
	if (fstat(data, &want[0]) < 0 || fstat(pair[0], &want[1]) < 0 ||
	    fstat(pair[1], &want[2]) < 0)
		truth_die("fstat");
	for (int i = 0; takeover && i < nformer; i++) {
		int fd = former[i];
		if (fd == data || fd == pair[0] || fd == pair[1])
			continue;
		if (strcmp(argv[1], "raw") == 0 ? syscall(SYS_dup3, pair[0], fd, 0) < 0
		                                : dup2(pair[0], fd) < 0)
			truth_die("dup2");
	}
	TRUTH_CALL(after_close(traced));
	truth_write(); /* the optional block of after_close is in the book */
	put_numbers("closed", nformer, 0);
	if (traced)
		truth_ready();

	truth_wait(cmd, sizeof cmd);
	long got = 0;
	int intact = 1;
	/* Whatever the agent wrote on either end of the pair arrived at the
	 * other. */
	for (int end = 0; end < 2; end++) {
		char buf[4096];
		ssize_t r;
		while ((r = recv(pair[end], buf, sizeof buf, MSG_DONTWAIT)) > 0)
			got += r;
	}
	/* Every number the program reused still holds what it put there. */
	for (int i = 0; takeover && i < nformer; i++) {
		int fd = former[i];
		const struct stat *w = fd == data      ? &want[0]
		                       : fd == pair[1] ? &want[2]
		                                       : &want[1];
		struct stat st;
		if (fstat(fd, &st) < 0 || st.st_dev != w->st_dev || st.st_ino != w->st_ino)
			intact = 0;
	}
	if (fstat(data, &want[0]) < 0 || want[0].st_size != (off_t)(sizeof(DATA) - 1))
		intact = 0;
	put_numbers("checked", got, intact);
	truth_wait(cmd, sizeof cmd);
	return 0;
}
