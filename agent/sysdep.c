/* sysdep.c - system-call wrappers for the agent (see sysdep.h). */
#include "sysdep.h"

#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void futex_wait(_Atomic uint32_t *word, int op, uint32_t expected, uint64_t timeout_ns)
{
	struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
	int saved = errno;
	syscall(SYS_futex, (uint32_t *)word, op, expected, timeout_ns ? &ts : NULL, NULL, 0);
	errno = saved;
}

static void futex_wake(_Atomic uint32_t *word, int op, int nwake)
{
	int saved = errno;
	syscall(SYS_futex, (uint32_t *)word, op, nwake, NULL, NULL, 0);
	errno = saved;
}

void sysdep_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns)
{
	futex_wait(word, FUTEX_WAIT_PRIVATE, expected, timeout_ns);
}

void sysdep_futex_wake(_Atomic uint32_t *word, int nwake)
{
	futex_wake(word, FUTEX_WAKE_PRIVATE, nwake);
}

void sysdep_futex_wait_shared(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns)
{
	futex_wait(word, FUTEX_WAIT, expected, timeout_ns);
}

void sysdep_futex_wake_shared(_Atomic uint32_t *word, int nwake)
{
	futex_wake(word, FUTEX_WAKE, nwake);
}

uint64_t sysdep_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

pid_t sysdep_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

int sysdep_thread_alive(pid_t pid, pid_t tid)
{
	int saved = errno;
	long r = syscall(SYS_tgkill, pid, tid, 0);
	int alive = r == 0 || errno != ESRCH;
	errno = saved;
	return alive;
}

int sysdep_send_fd(int fd, const void *buf, size_t n, int pass)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {(void *)buf, n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	int saved = errno, rc;
	ssize_t w;

	memset(&ctl, 0, sizeof(ctl));
	msg.msg_control = ctl.space;
	msg.msg_controllen = sizeof(ctl.space);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pass, sizeof(int));
	do
		w = sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		rc = -errno;
		errno = saved;
		return rc;
	}
	errno = saved;
	return sysdep_send_all(fd, (const char *)buf + w, n - (size_t)w);
}

int sysdep_send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	int saved = errno, rc = 0;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		p += w;
		n -= (size_t)w;
	}
	errno = saved;
	return rc;
}

void *sysdep_map(size_t n, int noreserve)
{
	int saved = errno;
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0), -1, 0);
	errno = saved;
	return p == MAP_FAILED ? NULL : p;
}

void sysdep_unmap(void *p, size_t n)
{
	int saved = errno;
	munmap(p, n);
	errno = saved;
}

void sysdep_say(const char *a, const char *b, const char *c)
{
	char line[1024];
	size_t n = 0;
	const char *parts[] = {"memtrace: ", a, b, c, "\n"};

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		const char *s = parts[i] ? parts[i] : "";
		size_t l = strlen(s);
		if (l > sizeof(line) - 1 - n)
			l = sizeof(line) - 1 - n;
		memcpy(line + n, s, l);
		n += l;
	}
	int saved = errno;
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
	errno = saved;
}

const char *sysdep_u64_str(char buf[24], uint64_t v)
{
	char *p = buf + 23;

	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return p;
}
