/* sdnotify.c - sd_notify and LISTEN_FDS by hand (see sdnotify.h). */
#include "sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "xalloc.h"

#define LISTEN_FDS_START 3
#define LISTEN_FDS_MAX   64 /* more than memtraced could want */

int sdnotify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	struct timeval tv = {2, 0};
	socklen_t len;
	size_t n;
	int fd, rc = 1;

	if (path == NULL || path[0] == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n < 2 || n > sizeof(sa.sun_path))
		return -EINVAL;
	if (path[0] == '/' && n == sizeof(sa.sun_path))
		return -EINVAL; /* no room for the terminating NUL */
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@') {
		/* Abstract: a leading NUL, and the length says where it ends. */
		sa.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A full queue on the manager's side must not hang the daemon. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int sdnotify_sendf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return sdnotify_send(buf);
}

/* A whole decimal number that fits an int, or -1. */
static int parse_int(const char *s)
{
	char *end;
	long v;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > INT_MAX)
		return -1;
	return (int)v;
}

static int check_socket(int fd)
{
	int type = 0, domain = 0, acc = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain), l3 = sizeof(acc);

	if (fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l3) < 0)
		return -ENOTSOCK;
	if (type != SOCK_STREAM || domain != AF_UNIX || !acc)
		return -ENOTSOCK;
	return 0;
}

static void unset_env(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

int sdnotify_listen_fds(int *agent_fd, int *control_fd)
{
	const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS");
	const char *names_s = getenv("LISTEN_FDNAMES");
	char *names = NULL, *names_v[LISTEN_FDS_MAX];
	bool by_name = false;
	int n, rc;

	*agent_fd = *control_fd = -1;
	if (pid_s == NULL || n_s == NULL) {
		unset_env();
		return 0;
	}
	if (parse_int(pid_s) != (int)getpid()) {
		/* Meant for another process (a parent that did not unset them). */
		unset_env();
		return 0;
	}
	n = parse_int(n_s);
	if (n < 0 || n > LISTEN_FDS_MAX) {
		rc = -EINVAL;
		goto out;
	}
	memset(names_v, 0, sizeof(names_v));
	if (names_s != NULL && n > 0) {
		/* Names are used only when there is one per descriptor. */
		int k = 1;
		for (const char *p = names_s; *p != '\0'; p++)
			k += *p == ':';
		if (k == n) {
			char *p = names = xstrdup(names_s);
			for (int i = 0; i < n; i++) {
				names_v[i] = p;
				p += strcspn(p, ":");
				if (*p == ':')
					*p++ = '\0';
			}
		}
	}
	for (int i = 0; i < n; i++) {
		if ((rc = check_socket(LISTEN_FDS_START + i)) < 0)
			goto out;
		if (names_v[i] != NULL &&
		    (strcmp(names_v[i], "agent") == 0 || strcmp(names_v[i], "control") == 0))
			by_name = true;
	}
	for (int i = 0; i < n; i++) {
		int fd = LISTEN_FDS_START + i;
		int *slot = NULL;
		const char *name = names_v[i] != NULL ? names_v[i] : "";
		if (by_name && strcmp(name, "agent") == 0)
			slot = agent_fd;
		else if (by_name && strcmp(name, "control") == 0)
			slot = control_fd;
		else if (!by_name && i == 0)
			slot = agent_fd;
		else if (!by_name && i == 1)
			slot = control_fd;
		if (slot != NULL && *slot >= 0) {
			rc = -EEXIST;
			goto out;
		}
		if (slot != NULL)
			*slot = fd;
	}
	/* Only now that all is well: keep ours, close what nobody wants. */
	for (int i = 0; i < n; i++) {
		int fd = LISTEN_FDS_START + i;
		if (fd == *agent_fd || fd == *control_fd)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
		else
			close(fd);
	}
	rc = n;
out:
	if (rc < 0)
		*agent_fd = *control_fd = -1;
	free(names);
	unset_env();
	return rc;
}
