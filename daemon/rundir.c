/* rundir.c - watching the runtime directory and binding its sockets again (see rundir.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "safedir.h"
#include "xalloc.h"

#define RUNDIR_CHECK_MS 1000

/* One socket file the daemon bound. */
struct rundir_sock {
	const char *path;
	bool ours; /* bound by us, not passed by systemd */
	bool said; /* its loss is in the log already */
	dev_t dev;
	ino_t ino;
};

struct rundir {
	struct daemon *d;
	uv_timer_t timer;
	mode_t mode;
	dev_t dev;
	ino_t ino;
	bool dir_failed; /* said once already that it cannot be made again */
	struct rundir_sock agent, control;
	uv_connection_cb control_cb; /* control's, to listen again */
};

/* path is still the file (dev, ino) of that type; links are followed for
 * the directory (it may be reached through one), never for a socket. */
static bool same_file(const char *path, dev_t dev, ino_t ino, mode_t type)
{
	struct stat st;
	int rc = type == S_IFDIR ? stat(path, &st) : lstat(path, &st);

	return rc == 0 && (st.st_mode & S_IFMT) == type && st.st_dev == dev && st.st_ino == ino;
}

static void remember(struct rundir_sock *s)
{
	struct stat st;

	if (lstat(s->path, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
}

/* A listening socket bound at path (what is there is ours to replace: the
 * directory is safe), or -errno. */
static int bind_listen(const char *path, int backlog)
{
	struct sockaddr_un sa;
	int fd, rc;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, backlog) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

/* agentsrv watches its listening descriptor with a uv_poll: the new socket
 * takes the same number, and the poll is started again on it. */
static int rebind_agent(struct rundir *r)
{
	struct daemon *d = r->d;
	int fd = bind_listen(r->agent.path, 128);

	if (fd < 0)
		return fd;
	uv_poll_stop(&d->agent_srv);
	if (dup3(fd, d->agent_listen, O_CLOEXEC) < 0) {
		int rc = -errno;
		close(fd);
		uv_poll_start(&d->agent_srv, UV_READABLE, d->agent_srv.poll_cb);
		return rc;
	}
	close(fd);
	uv_poll_start(&d->agent_srv, UV_READABLE, d->agent_srv.poll_cb);
	return 0;
}

/* control listens with a uv_pipe, which cannot take a new descriptor: it is
 * closed and made again on the new socket, with control's own connection
 * callback (kept from the first listen), unless the daemon began to stop
 * meanwhile. */
static void control_closed(uv_handle_t *h)
{
	struct rundir *r = h->data;
	struct daemon *d = r->d;
	int rc;

	d->control_srv.data = d;
	if (d->stopping)
		return;
	uv_pipe_init(d->loop, &d->control_srv, 0);
	d->control_srv.data = d;
	unlink(r->control.path);
	if ((rc = uv_pipe_bind(&d->control_srv, r->control.path)) < 0 ||
	    (rc = chmod(r->control.path, 0666) < 0 ? uv_translate_sys_error(errno) : 0) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&d->control_srv, 64, r->control_cb)) < 0) {
		if (!r->control.said)
			log_error("cannot listen on %s again: %s; memtracectl cannot reach this "
			          "daemon until it is restarted",
			          r->control.path, uv_strerror(rc));
		r->control.said = true;
		return;
	}
	remember(&r->control);
	r->control.said = false;
	log_info("listening on %s again", r->control.path);
}

static void rebind_control(struct rundir *r)
{
	struct daemon *d = r->d;

	if (uv_is_closing((uv_handle_t *)&d->control_srv))
		return;
	d->control_srv.data = r;
	uv_close((uv_handle_t *)&d->control_srv, control_closed);
}

static void check_socket(struct rundir *r, struct rundir_sock *s, bool agent)
{
	int rc;

	if (same_file(s->path, s->dev, s->ino, S_IFSOCK))
		return;
	if (!s->ours) {
		if (!s->said)
			log_error("%s is gone; it is systemd's socket: restart its socket unit and "
			          "memtraced to make it again",
			          s->path);
		s->said = true;
		return;
	}
	if (!agent) {
		rebind_control(r);
		return;
	}
	if ((rc = rebind_agent(r)) < 0) {
		if (!s->said)
			log_error("cannot listen on %s again: %s; new programs cannot be traced "
			          "until memtraced is restarted",
			          s->path, strerror(-rc));
		s->said = true;
		return;
	}
	remember(s);
	s->said = false;
	log_info("listening on %s again", s->path);
}

static void on_check(uv_timer_t *t)
{
	struct rundir *r = t->data;
	struct daemon *d = r->d;
	char why[512];
	int rc;

	if (d->stopping)
		return;
	if (!same_file(d->cfg.runtime_dir, r->dev, r->ino, S_IFDIR)) {
		if (!r->dir_failed)
			log_warn(
			    "runtime directory %s was removed or replaced: making it again and "
			    "binding the sockets in it",
			    d->cfg.runtime_dir);
		rc = safedir_make(d->cfg.runtime_dir, r->mode, why, sizeof(why), &r->dev, &r->ino);
		if (rc < 0) {
			if (!r->dir_failed)
				log_error(
				    "cannot use runtime directory %s again: %s; programs and "
				    "memtracectl cannot reach this daemon until it is restarted",
				    d->cfg.runtime_dir, why);
			r->dir_failed = true;
			r->dev = 0;
			r->ino = 0;
			return;
		}
		r->dir_failed = false;
	}
	check_socket(r, &r->agent, true);
	check_socket(r, &r->control, false);
}

struct rundir *rundir_watch(struct daemon *d, mode_t mode)
{
	struct rundir *r = xcalloc(1, sizeof(*r));
	struct stat st;

	r->d = d;
	r->mode = mode;
	if (stat(d->cfg.runtime_dir, &st) == 0) {
		r->dev = st.st_dev;
		r->ino = st.st_ino;
	}
	r->agent.path = d->agent_path;
	r->agent.ours = d->agent_fd < 0;
	remember(&r->agent);
	r->control.path = d->control_path;
	r->control.ours = d->control_fd < 0;
	remember(&r->control);
	/* control's callback, as uv_listen was given it (a libuv stream field
	 * it keeps for exactly this). */
	r->control_cb = d->control_srv.connection_cb;
	uv_timer_init(d->loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, on_check, RUNDIR_CHECK_MS, RUNDIR_CHECK_MS);
	uv_unref((uv_handle_t *)&r->timer);
	return r;
}

void rundir_free(struct rundir *r)
{
	free(r);
}
