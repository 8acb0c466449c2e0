/*
 * ctlwire.c - line framing on control.sock. See ctlwire.h for the contract.
 */
#include "ctlwire.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* The first buffer holds any ordinary response; big ones double from there. */
#define RECV_FIRST_CAP 4096

/*
 * connect(2) interrupted by a signal goes on in the background, and calling it
 * again would fail with EALREADY; wait for it to finish and fetch its result.
 */
static int connect_wait(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int err = 0;
	socklen_t errlen = sizeof(err);

	while (poll(&pfd, 1, -1) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
		return -errno;
	return -err;
}

int ctlwire_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	int fd, rc;

	/* An empty sun_path would name the abstract socket "", not a file. */
	if (len == 0)
		return -ENOENT;
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINTR) {
			rc = -errno;
			goto err_close;
		}
		rc = connect_wait(fd);
		if (rc < 0)
			goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return rc;
}

int ctlwire_send(int fd, const char *line)
{
	size_t len = strlen(line);
	struct iovec iov[2] = {
	    {.iov_base = (void *)line, .iov_len = len},
	    {.iov_base = (void *)"\n", .iov_len = 1},
	};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};

	if (memchr(line, '\n', len) != NULL)
		return -EINVAL;

	/* One sendmsg carries line and terminator; a short write resumes where
	 * it stopped, inside either of them. */
	while (msg.msg_iovlen > 0) {
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		size_t done = (size_t)n;
		while (msg.msg_iovlen > 0 && done >= msg.msg_iov->iov_len) {
			done -= msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen > 0) {
			msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + done;
			msg.msg_iov->iov_len -= done;
		}
	}
	return 0;
}

/* Takes `n` bytes that a peek has shown are already waiting. */
static int recv_exact(int fd, char *buf, size_t n)
{
	while (n > 0) {
		ssize_t got = recv(fd, buf, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return -ECONNRESET;
		buf += got;
		n -= (size_t)got;
	}
	return 0;
}

int ctlwire_recv(int fd, char **out, size_t max)
{
	/* Room for `max` bytes and the '\n'; a full buffer without one is too long. */
	size_t lim = max < SIZE_MAX ? max + 1 : SIZE_MAX;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc;

	*out = NULL;
	for (;;) {
		if (len == cap) {
			if (cap == lim) {
				rc = -EMSGSIZE;
				goto err_free;
			}
			size_t ncap = cap == 0 ? RECV_FIRST_CAP : cap * 2;
			if (ncap > lim || ncap < cap)
				ncap = lim;
			char *nbuf = realloc(buf, ncap);
			if (nbuf == NULL) {
				rc = -ENOMEM;
				goto err_free;
			}
			buf = nbuf;
			cap = ncap;
		}

		/* Peek, then consume no further than the '\n': whatever follows
		 * belongs to the next message and stays in the socket. */
		ssize_t n = recv(fd, buf + len, cap - len, MSG_PEEK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto err_free;
		}
		if (n == 0) {
			rc = -ECONNRESET;
			goto err_free;
		}
		char *nl = memchr(buf + len, '\n', (size_t)n);
		size_t take = nl != NULL ? (size_t)(nl - (buf + len)) + 1 : (size_t)n;
		rc = recv_exact(fd, buf + len, take);
		if (rc < 0)
			goto err_free;
		if (memchr(buf + len, '\0', take) != NULL) {
			rc = -EBADMSG;
			goto err_free;
		}
		len += take;
		if (nl != NULL)
			break;
	}
	buf[len - 1] = '\0';
	*out = buf;
	return 0;

err_free:
	free(buf);
	return rc;
}
