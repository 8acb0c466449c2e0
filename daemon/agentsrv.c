/* agentsrv.c - agent connections (see agentsrv.h). */
#include "agentsrv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include "log.h"
#include "scheduler.h"
#include "session.h"
#include "xalloc.h"

static uint64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot. With
 * the pid it names a process uniquely, unlike the pid alone. */
static uint64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* comm may contain spaces and parens */
	if (p == NULL)
		return 0;
	/* after ") " come fields 3..; start time is field 22 */
	if (sscanf(p + 2,
	           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
	           "%*d %llu",
	           &st) != 1)
		return 0;
	return st;
}

#define DRAIN_PERIOD_MS 50
#define ACCEPT_BATCH    64
#define READ_BATCH      16

static void on_poll_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	session_unref(s);
}

/* Takes s out of the daemon's list. */
static void forget(struct daemon *d, struct session *s)
{
	for (struct session **pp = &d->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			return;
		}
	}
}

/* The connection is over (the process exited or was killed, sent garbage,
 * or the daemon is stopping): what the region still holds is read, the
 * session keeps its statistics, its last state is snapshotted with
 * `reason` (when the process recorded anything at all), and what the
 * statistics do not need is freed. */
static void session_end(struct session *s, const char *why, const char *reason)
{
	struct daemon *d = s->d;

	if (s->state == SESSION_LIVE) {
		if (why == NULL && !s->broken)
			session_drain(s, true);
		if (why == NULL && s->broken)
			why = s->error;
		s->state = SESSION_EXITED;
		s->ended_ms = wall_ms();
		d->nlive--;
		if (why == NULL && s->events == 0 && s->parent_pid != 0) {
			/* A fork child that recorded nothing: it only exec'd (the
			 * new image is a session of its own) or ended at once.
			 * Nothing to keep, nothing to list. */
			log_info("pid %d (%s) ended having recorded nothing since its fork",
			         (int)s->pid, s->exe ? s->exe : "?");
			session_trim(s);
			forget(d, s);
			if (s->poll_open) {
				s->poll_open = false;
				uv_close((uv_handle_t *)&s->poll, on_poll_closed);
			}
			session_unref(s); /* the list's reference */
			return;
		}
		d->nexited++;
		if (why != NULL)
			log_warn("pid %d: closing agent connection: %s", (int)s->pid, why);
		else
			log_info(
			    "pid %d (%s) ended%s: %" PRIu64 " events, %" PRIu64
			    " bytes in %zu blocks still live",
			    (int)s->pid, s->exe ? s->exe : "?",
			    s->bye
			        ? ""
			        : " without running its exit handlers (_exit, a signal, or exec)",
			    s->events, s->heap.current, s->heap.count);
		/* A process that recorded nothing stays listed (with what
		 * stats says of it, "interposed" for one) but has no exit
		 * snapshot: there is nothing in it. */
		if (s->hello && (s->events > 0 || strcmp(reason, "exit") != 0))
			scheduler_take(d->sched, s, reason);
		session_trim(s);
	}
	if (s->poll_open) {
		s->poll_open = false;
		uv_close((uv_handle_t *)&s->poll, on_poll_closed); /* drops the poll's ref */
	}
	agentsrv_evict(d);
}

void agentsrv_evict(struct daemon *d)
{
	if (d->stopping)
		return; /* agentsrv_stop is walking the list */
	while (d->nexited > d->cfg.max_exited) {
		struct session **pp = &d->sessions, **victim = NULL;
		for (; *pp != NULL; pp = &(*pp)->next)
			if ((*pp)->state == SESSION_EXITED)
				victim = pp; /* the list is newest first: keep the last */
		if (victim == NULL)
			return;
		struct session *s = *victim;
		*victim = s->next;
		d->nexited--;
		session_unref(s);
	}
}

/* Reads what the agent sent, with the descriptors that came along. */
static void on_agent_readable(uv_poll_t *h, int status, int events)
{
	struct session *s = h->data;
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(4 * sizeof(int))];
	} ctl;

	(void)events;
	if (status < 0) {
		session_end(s, NULL, "exit");
		return;
	}
	for (int round = 0; round < READ_BATCH && s->poll_open; round++) {
		struct iovec iov = {s->rbuf + s->rlen, s->rcap - s->rlen};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		msg.msg_control = ctl.space;
		msg.msg_controllen = sizeof(ctl.space);
		ssize_t n = recvmsg(s->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		int bad = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (bad || session_pass_fd(s, fd) < 0)
					bad = 1;
			}
		}
		if (bad || (msg.msg_flags & MSG_CTRUNC)) {
			session_end(s, s->error ? s->error : "too many descriptors passed", "exit");
			return;
		}
		if (n < 0) {
			log_warn("pid %d: read error: %s", (int)s->pid, strerror(errno));
			session_end(s, NULL, "exit");
			return;
		}
		if (n == 0) {
			if (s->rlen > 0)
				log_warn(
				    "pid %d: connection closed inside a frame (%zu bytes pending)",
				    (int)s->pid, s->rlen);
			session_end(s, NULL, "exit");
			return;
		}
		if (session_feed(s, s->rbuf + s->rlen, (size_t)n) < 0) {
			session_end(s, s->error, "exit");
			return;
		}
	}
}

static void accept_one(struct daemon *d, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("agent socket: no peer credentials: %s", strerror(errno));
		close(fd);
		return;
	}
	if (d->nlive >= d->cfg.max_sessions) {
		d->sessions_rejected++;
		log_warn("pid %d: refused: %zu traced processes already (--max-sessions)",
		         (int)cred.pid, d->nlive);
		close(fd);
		return;
	}
	struct session *s = session_new(d);
	if (uv_poll_init(d->loop, &s->poll, fd) < 0) {
		close(fd);
		session_unref(s);
		return;
	}
	s->fd = fd;
	s->poll.data = s;
	s->poll_open = true;
	s->pid = cred.pid;
	s->uid = cred.uid;
	s->gid = cred.gid;
	s->start_time = proc_start_time(cred.pid);
	s->started_ms = wall_ms();
	/* The list holds one reference, the open connection another. */
	session_ref(s);
	s->next = d->sessions;
	d->sessions = s;
	d->nlive++;
	log_info("pid %d (uid %d) connected", (int)s->pid, (int)s->uid);
	uv_poll_start(&s->poll, UV_READABLE | UV_DISCONNECT, on_agent_readable);
}

static void on_listen_readable(uv_poll_t *h, int status, int events)
{
	struct daemon *d = h->data;

	(void)events;
	if (status < 0) {
		log_warn("agent socket: %s", uv_strerror(status));
		return;
	}
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(d->agent_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn("agent socket: accept failed: %s", strerror(errno));
			return;
		}
		accept_one(d, fd);
	}
}

/* Reads every live session's region that changed; ends the sessions whose
 * region broke a rule. */
static void on_drain_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;

	for (struct session *s = d->sessions; s != NULL; s = s->next) {
		if (s->state != SESSION_LIVE || !s->hello)
			continue;
		if (drain_pending(&s->drain))
			session_drain(s, false);
		if (s->broken)
			session_end(s, s->error, "exit");
	}
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	chmod(path, 0666);
	return fd;
}

int agentsrv_start(struct daemon *d)
{
	int rc, fd;

	if (d->agent_fd >= 0) {
		/* systemd's socket: already bound, its mode set by the unit. */
		fd = d->agent_fd;
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -errno;
	} else if ((fd = listen_on(d->agent_path)) < 0) {
		return fd;
	}
	if (listen(fd, 128) < 0) {
		rc = -errno;
		if (d->agent_fd < 0)
			close(fd);
		return rc;
	}
	d->agent_listen = fd;
	if ((rc = uv_poll_init(d->loop, &d->agent_srv, fd)) < 0)
		return rc;
	d->agent_srv.data = d;
	uv_poll_start(&d->agent_srv, UV_READABLE, on_listen_readable);
	uv_timer_init(d->loop, &d->agent_timer);
	d->agent_timer.data = d;
	uv_timer_start(&d->agent_timer, on_drain_timer, DRAIN_PERIOD_MS, DRAIN_PERIOD_MS);
	return 0;
}

static void on_srv_closed(uv_handle_t *h)
{
	struct daemon *d = h->data;
	if (h == (uv_handle_t *)&d->agent_srv && d->agent_listen >= 0) {
		close(d->agent_listen);
		d->agent_listen = -1;
	}
}

void agentsrv_stop(struct daemon *d)
{
	if (!uv_is_closing((uv_handle_t *)&d->agent_srv))
		uv_close((uv_handle_t *)&d->agent_srv, on_srv_closed);
	if (!uv_is_closing((uv_handle_t *)&d->agent_timer))
		uv_close((uv_handle_t *)&d->agent_timer, NULL);
	for (struct session *s = d->sessions; s != NULL; s = s->next)
		if (s->poll_open)
			session_end(s, NULL, "shutdown");
}
