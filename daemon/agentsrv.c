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

static void on_pipe_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	session_unref(s);
}

/* The connection is over (the process exited or was killed, sent garbage,
 * or the daemon is stopping): the session keeps its statistics and its last
 * state is snapshotted with `reason`. */
static void session_end(struct session *s, const char *why, const char *reason)
{
	struct daemon *d = s->d;

	if (s->state == SESSION_LIVE) {
		s->state = SESSION_EXITED;
		s->ended_ms = wall_ms();
		d->nlive--;
		d->nexited++;
		if (why != NULL)
			log_warn("pid %d: closing agent connection: %s", (int)s->pid, why);
		else
			log_info("pid %d (%s) ended%s: %" PRIu64 " events, %" PRIu64
			         " bytes in %zu blocks still live",
			         (int)s->pid, s->exe ? s->exe : "?",
			         s->bye ? "" : " without saying goodbye", s->events,
			         s->heap.current, s->heap.count);
		scheduler_take(d->sched, s, reason);
	}
	if (s->pipe_open) {
		s->pipe_open = false;
		uv_close((uv_handle_t *)&s->pipe, on_pipe_closed); /* drops the pipe's ref */
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct session *s = h->data;
	(void)suggested;
	buf->base = (char *)s->rbuf + s->rlen;
	buf->len = s->rcap - s->rlen;
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct session *s = stream->data;

	if (n < 0) {
		if (n != UV_EOF)
			log_warn("pid %d: read error: %s", (int)s->pid, uv_strerror((int)n));
		else if (s->rlen > 0)
			log_warn("pid %d: connection closed inside a frame (%zu bytes pending)",
			         (int)s->pid, s->rlen);
		session_end(s, NULL, "exit");
		return;
	}
	if (n == 0)
		return;
	if (session_feed(s, (const uint8_t *)buf->base, (size_t)n) < 0)
		session_end(s, s->error, "exit");
}

static void on_connection(uv_stream_t *server, int status)
{
	struct daemon *d = server->data;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (status < 0) {
		log_warn("agent socket: accept failed: %s", uv_strerror(status));
		return;
	}
	struct session *s = session_new(d);
	uv_pipe_init(d->loop, &s->pipe, 0);
	s->pipe.data = s;
	s->pipe_open = true;
	if (uv_accept(server, (uv_stream_t *)&s->pipe) < 0) {
		s->pipe_open = false;
		uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
		return;
	}
	uv_os_fd_t fd;
	uv_fileno((uv_handle_t *)&s->pipe, &fd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("agent socket: no peer credentials: %s", strerror(errno));
		s->pipe_open = false;
		uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
		return;
	}
	if (d->nlive >= d->cfg.max_sessions) {
		d->sessions_rejected++;
		log_warn("pid %d: refused: %zu traced processes already (--max-sessions)",
		         (int)cred.pid, d->nlive);
		s->pipe_open = false;
		uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
		return;
	}
	s->pid = cred.pid;
	s->uid = cred.uid;
	s->gid = cred.gid;
	s->start_time = proc_start_time(cred.pid);
	s->started_ms = wall_ms();
	/* The list holds one reference, the open pipe another. */
	session_ref(s);
	s->next = d->sessions;
	d->sessions = s;
	d->nlive++;
	log_info("pid %d (uid %d) connected", (int)s->pid, (int)s->uid);
	uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
}

int agentsrv_start(struct daemon *d)
{
	int rc;

	uv_pipe_init(d->loop, &d->agent_srv, 0);
	d->agent_srv.data = d;
	if (d->agent_fd >= 0) {
		/* systemd's socket: already bound, its mode set by the unit. */
		if ((rc = uv_pipe_open(&d->agent_srv, d->agent_fd)) < 0)
			return rc;
	} else {
		if ((rc = uv_pipe_bind(&d->agent_srv, d->agent_path)) < 0)
			return rc;
		chmod(d->agent_path, 0666);
	}
	if ((rc = uv_listen((uv_stream_t *)&d->agent_srv, 128, on_connection)) < 0)
		return rc;
	return 0;
}

static void on_srv_closed(uv_handle_t *h)
{
	(void)h;
}

void agentsrv_stop(struct daemon *d)
{
	if (!uv_is_closing((uv_handle_t *)&d->agent_srv))
		uv_close((uv_handle_t *)&d->agent_srv, on_srv_closed);
	for (struct session *s = d->sessions; s != NULL; s = s->next)
		if (s->pipe_open)
			session_end(s, NULL, "shutdown");
}
