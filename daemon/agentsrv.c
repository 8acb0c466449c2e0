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

#include "fdsink.h"
#include "limit.h"
#include "log.h"
#include "procstat.h"
#include "scheduler.h"
#include "session.h"
#include "xalloc.h"

static uint64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

#define DRAIN_PERIOD_MS 50
#define DRAIN_TICK_MS   20 /* loop time one timer callback spends reading regions */
#define ACCEPT_BATCH    64
#define READ_BATCH      16
/* Bytes read from all agent sockets in one loop turn (loopwatch counts the
 * turns): what is left waits in the sockets for the next turn, so 1,000
 * agents sending their module lists at once cannot hold the loop. */
#define FEED_TURN_BYTES     ((size_t)1 << 20)
#define PAUSE_MS            100 /* out of descriptors: accept again after this */
#define IDLE_BACKOFF_MS     50  /* a region that claims news and has none: first wait */
#define IDLE_BACKOFF_MAX_MS 1600
#define HEAP_TICK_SLOTS     (1u << 16) /* block table slots moved a tick (about 1 ms) */

static uint64_t mono_ms(void)
{
	return drain_now_ns() / 1000000u;
}

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

static void close_connection(struct session *s)
{
	if (s->poll_open) {
		s->poll_open = false;
		uv_close((uv_handle_t *)&s->poll, on_poll_closed); /* drops the poll's ref */
	}
}

/* The records are all read (or the session broke): the session keeps its
 * statistics, its last state is snapshotted with `reason` (when the process
 * recorded anything at all), and what the statistics do not need is freed. */
static void session_finish(struct session *s)
{
	struct daemon *d = s->d;
	const char *why = s->end_why, *reason = s->end_reason;

	if (why == NULL && s->broken)
		why = s->error;
	s->ending = false;
	yield_forget(&d->yield, &s->pressed);
	s->state = SESSION_EXITED;
	s->ended_ms = wall_ms();
	/* The figures it ended with: the last of its history. */
	history_sample(&s->history, s->ended_ms, s->heap.current, s->heap.blocks, s->heap.peak);
	d->nlive--;
	limit_give(&d->agent_sessions, s->uid, 1);
	if (why == NULL && s->events == 0 && s->parent_pid != 0) {
		/* A fork child that recorded nothing: it only exec'd (the
		 * new image is a session of its own) or ended at once.
		 * Nothing to keep, nothing to list. */
		log_info("pid %d (%s) ended having recorded nothing since its fork", (int)s->pid,
		         s->exe ? s->exe : "?");
		session_trim(s);
		forget(d, s);
		session_unref(s); /* the list's reference */
		return;
	}
	d->nexited++;
	if (why != NULL)
		log_warn("pid %d: closing agent connection: %s", (int)s->pid, why);
	else if (strcmp(reason, "detach") == 0)
		log_info("pid %d (%s) detached (memtracectl detach): %" PRIu64 " events, %" PRIu64
		         " bytes in %zu blocks live; it runs on untraced",
		         (int)s->pid, s->exe ? s->exe : "?", s->events, s->heap.current,
		         s->heap.count);
	else if (strcmp(reason, "shutdown") == 0)
		log_info("pid %d (%s): memtraced stops while it runs: %" PRIu64 " events, %" PRIu64
		         " bytes in %zu blocks live",
		         (int)s->pid, s->exe ? s->exe : "?", s->events, s->heap.current,
		         s->heap.count);
	else
		log_info("pid %d (%s) ended%s: %" PRIu64 " events, %" PRIu64
		         " bytes in %zu blocks still live",
		         (int)s->pid, s->exe ? s->exe : "?",
		         s->bye ? ""
		                : " without running its exit handlers (_exit, a signal, or exec)",
		         s->events, s->heap.current, s->heap.count);
	/* A process that recorded nothing stays listed (with what stats says
	 * of it, "interposed" for one) but has no exit snapshot: there is
	 * nothing in it. */
	if (s->hello && (s->events > 0 || strcmp(reason, "exit") != 0))
		scheduler_take(d->sched, s, reason);
	session_trim(s);
	agentsrv_evict(d);
}

/* Why a connection that closed without a fault ended: the process is gone,
 * or the agent detached (memtracectl detach) and it runs on untraced. */
static const char *end_reason(const struct session *s)
{
	return s->detached ? "detach" : "exit";
}

/* The connection is over (the process exited or was killed, sent garbage,
 * or the daemon is stopping). What the region still holds is read, in
 * slices of the loop's time (the timer comes back for the rest: a full
 * region takes a second or more), then the session finishes; when the
 * daemon stops, at once. */
static void session_end(struct session *s, const char *why, const char *reason)
{
	close_connection(s);
	if (s->state != SESSION_LIVE || s->ending)
		return;
	s->ending = true;
	s->end_why = why != NULL ? xstrdup(why) : NULL;
	s->end_reason = reason;
	if (why == NULL && !s->broken && s->hello) {
		if (s->d->stopping) {
			session_drain_until(s, true, 0); /* no deadline: to the end */
		} else if (session_drain_until(s, true,
		                               drain_now_ns() + SESSION_SLICE_MS * 1000000u)) {
			uv_timer_start(&s->d->agent_timer, agentsrv_on_timer, 1, DRAIN_PERIOD_MS);
			return;
		}
	}
	session_finish(s);
}

/* Which uid holds the most exited sessions: the one that loses its oldest
 * first, so that one user's flood of short processes does not push every
 * other user's out. */
static uid_t busiest_exited_uid(struct daemon *d)
{
	struct uid_count {
		uid_t uid;
		size_t n;
	} v[64];
	size_t nv = 0, best = 0;
	uid_t who = 0;

	for (struct session *s = d->sessions; s != NULL; s = s->next) {
		if (s->state != SESSION_EXITED)
			continue;
		size_t i = 0;
		while (i < nv && v[i].uid != s->uid)
			i++;
		if (i == nv) {
			if (nv == sizeof(v) / sizeof(v[0]))
				continue; /* more users than that: the first 64 compete */
			v[nv++] = (struct uid_count){s->uid, 0};
		}
		if (++v[i].n > best) {
			best = v[i].n;
			who = v[i].uid;
		}
	}
	return who;
}

/* Where the list holds the oldest ended process of uid (of anybody's with
 * any_uid; only one that holds a model's grants with holding), or NULL. */
static struct session **oldest_exited(struct daemon *d, bool any_uid, uid_t uid, bool holding)
{
	struct session **victim = NULL, **written = NULL;

	for (struct session **pp = &d->sessions; *pp != NULL; pp = &(*pp)->next) {
		const struct session *s = *pp;
		if (s->state == SESSION_EXITED && (any_uid || s->uid == uid) &&
		    (!holding || s->heap.granted_blocks > 0 || s->heap.granted_stacks > 0)) {
			victim = pp; /* the list is newest first: keep the last */
			if (s->snap_pending == 0)
				written = pp;
		}
	}
	/* One whose exit snapshot is stored already first: until it is, a
	 * forgotten process's queries find nothing to answer from. */
	return written != NULL ? written : victim;
}

/* Forgets the ended process at *pp (the list's reference goes). */
static void drop_exited(struct daemon *d, struct session **pp)
{
	struct session *s = *pp;
	*pp = s->next;
	d->nexited--;
	session_unref(s);
}

void agentsrv_evict(struct daemon *d)
{
	if (d->stopping)
		return; /* agentsrv_stop is walking the list */
	while (d->nexited > d->cfg.max_exited) {
		struct session **victim = oldest_exited(d, false, busiest_exited_uid(d), false);
		if (victim == NULL)
			return;
		drop_exited(d, victim);
	}
}

/*
 * The models' shared bounds (--max-blocks-per-uid, --max-blocks-total and
 * the same for stacks): each heap takes its blocks and stacks in grants
 * (heap_charge_to). A process that ended holds its model until it is
 * forgotten; a live one that needs room it cannot have makes the oldest
 * ended process of its user forget its model first (past the total,
 * anybody's oldest), which its exit snapshot keeps: only what no live
 * process can do without is refused. The ended process leaves the list at
 * once (its queries answer "no such process", as after --max-exited).
 */
static bool forget_exited_model(struct daemon *d, bool any_uid, uid_t uid)
{
	if (d->stopping)
		return false; /* agentsrv_stop is walking the list */
	struct session **victim = oldest_exited(d, any_uid, uid, true);
	if (victim == NULL)
		return false;
	struct session *s = *victim;
	d->models_forgotten++;
	if (limit_burst_hit(&d->forget_burst, mono_ms(), "model", "forgot"))
		log_info("pid %d (uid %u, ended) forgotten: its model of %zu blocks and %u stacks "
		         "makes room for a live process of uid %u (%s; logged once per burst)",
		         (int)s->pid, (unsigned)s->uid, s->heap.count, s->heap.ndefined,
		         (unsigned)uid, any_uid ? "the total bound" : "its user's bound");
	heap_close(&s->heap); /* gives its grants back now, whoever holds s */
	drop_exited(d, victim);
	return true;
}

static int model_charge(void *arg, enum heap_charged what, long n, bool force)
{
	struct session *s = arg;
	struct daemon *d = s->d;
	struct limit *l = what == HEAP_CHARGED_BLOCKS ? &d->model_blocks : &d->model_stacks;
	char who[32];
	int rc;

	if (n < 0) {
		limit_give(l, s->uid, (size_t)-n);
		return 0;
	}
	if (force) {
		limit_force(l, s->uid, (size_t)n);
		return 0;
	}
	while ((rc = limit_check(l, s->uid, (size_t)n)) < 0 &&
	       forget_exited_model(d, rc == -ENOSPC, s->uid))
		;
	snprintf(who, sizeof(who), "uid %u", (unsigned)s->uid);
	return limit_take(l, s->uid, (size_t)n, mono_ms(), who);
}

/* A drain from the timer or a WAKE read nothing of a region that claimed
 * news: the next waits, longer each time (a hostile region that always
 * claims news costs a read every 1.6 s). Queries still read at once. */
static void backoff(struct session *s, bool progress, uint64_t now)
{
	if (progress || s->inheriting) {
		s->idle_drains = 0;
		s->next_drain_ms = 0;
		return;
	}
	if (++s->idle_drains < 3)
		return; /* a record in flight lands within a tick or two */
	unsigned shift = s->idle_drains - 3;
	uint64_t wait = shift >= 5 ? IDLE_BACKOFF_MAX_MS : (uint64_t)IDLE_BACKOFF_MS << shift;
	s->next_drain_ms = now + (wait < IDLE_BACKOFF_MAX_MS ? wait : IDLE_BACKOFF_MAX_MS);
}

/* Reads a slice of a live session's region, if it has news and is not
 * backing off; true when records are left. */
static bool drain_slice(struct session *s, uint64_t deadline_ns)
{
	uint64_t now = mono_ms(), before = s->events;

	if (now < s->next_drain_ms || !drain_pending(&s->drain))
		return false;
	uint64_t slice = drain_now_ns() + SESSION_SLICE_MS * 1000000u;
	yield_reading(&s->d->yield);
	bool left = session_drain_until(s, false, slice < deadline_ns ? slice : deadline_ns);
	yield_saw(&s->d->yield, &s->pressed, s->drain.fullest, s->drain.waiting);
	backoff(s, s->events != before, now);
	return left;
}

/* Reads what the agent sent, with the descriptors that came along. */
static void on_agent_readable(uv_poll_t *h, int status, int events)
{
	struct session *s = h->data;
	/* Room for all a message can carry (SCM_MAX_FD), so none is left to
	 * the kernel to drop on our thread. */
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(253 * sizeof(int))];
	} ctl;

	(void)events;
	if (status < 0) {
		session_end(s, NULL, end_reason(s));
		return;
	}
	size_t *left = turn_budget(&s->d->feed_budget, &s->d->loopwatch, FEED_TURN_BYTES);
	for (int round = 0; round < READ_BATCH && s->poll_open && *left > 0; round++) {
		size_t room;
		uint8_t *at = session_rbuf_room(s, &room);
		if (room > *left)
			room = *left;
		struct iovec iov = {at, room};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		msg.msg_control = ctl.space;
		msg.msg_controllen = sizeof(ctl.space);
		ssize_t n = recvmsg(s->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		int bad = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				/* Every descriptor is taken or closed, never left. */
				if (bad)
					fdsink_put(s->d->fdsink, fd);
				else if (session_pass_fd(s, fd) < 0)
					bad = 1;
			}
		}
		if (bad || (msg.msg_flags & MSG_CTRUNC)) {
			session_end(s, s->error ? s->error : "too many descriptors passed", "exit");
			return;
		}
		if (n < 0) {
			log_warn("pid %d: read error: %s", (int)s->pid, strerror(errno));
			session_end(s, NULL, end_reason(s));
			return;
		}
		if (n == 0) {
			if (s->rlen > 0)
				log_warn(
				    "pid %d: connection closed inside a frame (%zu bytes pending)",
				    (int)s->pid, s->rlen);
			session_end(s, NULL, end_reason(s));
			return;
		}
		*left -= (size_t)n;
		if (session_feed(s, at, (size_t)n) < 0) {
			session_end(s, s->error, "exit");
			return;
		}
		/* The agent answered DETACH: its session is over, whatever it
		 * sends or records after. */
		if (s->detached) {
			session_end(s, NULL, "detach");
			return;
		}
	}
	/* The WAKEs of all these reads: one slice of reading, unless one read
	 * the region too short a time ago (session_read_due; the timer reads
	 * it then). */
	if (s->wake && s->poll_open) {
		s->wake = false;
		if (!session_read_due(s)) {
			s->wakes_deferred++;
			return;
		}
		yield_begin(&s->d->yield);
		drain_slice(s, UINT64_MAX);
		yield_end(&s->d->yield);
		if (s->broken)
			session_end(s, s->error, "exit");
	}
}

static void accept_one(struct daemon *d, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char who[32];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("agent socket: no peer credentials: %s", strerror(errno));
		close(fd);
		return;
	}
	snprintf(who, sizeof(who), "uid %u", (unsigned)cred.uid);
	if (limit_take(&d->agent_sessions, cred.uid, 1, uv_now(d->loop), who) < 0) {
		/* The limit logs once per burst; the agent sees the connection
		 * close and says so. */
		d->sessions_rejected++;
		close(fd);
		return;
	}
	struct session *s = session_new(d);
	if (uv_poll_init(d->loop, &s->poll, fd) < 0) {
		limit_give(&d->agent_sessions, cred.uid, 1);
		close(fd);
		session_unref(s);
		return;
	}
	s->fd = fd;
	s->poll.data = s;
	s->poll_open = true;
	s->wake_later = true;
	s->pid = cred.pid;
	s->uid = cred.uid;
	s->gid = cred.gid;
	s->start_time = procstat_start_time(cred.pid); /* with the pid, names it uniquely */
	s->started_ms = wall_ms();
	/* The list holds one reference, the open connection another. */
	session_ref(s);
	s->next = d->sessions;
	d->sessions = s;
	d->nlive++;
	log_info("pid %d (uid %d) connected", (int)s->pid, (int)s->uid);
	uv_poll_start(&s->poll, UV_READABLE | UV_DISCONNECT, on_agent_readable);
}

static void on_listen_readable(uv_poll_t *h, int status, int events);

static void on_pause_over(uv_timer_t *t)
{
	struct daemon *d = t->data;
	if (!d->stopping && !uv_is_closing((uv_handle_t *)&d->agent_srv))
		uv_poll_start(&d->agent_srv, UV_READABLE, on_listen_readable);
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
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* The connection stays queued and the socket readable:
				 * polling on would spin. Wait for descriptors. */
				if (d->accept_paused++ % 100 == 0)
					log_warn("agent socket: accept failed: %s (%zu descriptors "
					         "waiting to be closed): accepting again in %d ms",
					         strerror(errno), fdsink_pending(d->fdsink),
					         PAUSE_MS);
				uv_poll_stop(&d->agent_srv);
				uv_timer_start(&d->agent_pause, on_pause_over, PAUSE_MS, 0);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				log_warn("agent socket: accept failed: %s", strerror(errno));
			}
			return;
		}
		accept_one(d, fd);
	}
}

/* The sessions as the timer takes them: from where the last tick stopped,
 * round the list, each with a reference (a tick may end or evict some). */
static struct session **tick_order(struct daemon *d, size_t *n)
{
	size_t total = 0, from = 0, k = 0;

	for (struct session *s = d->sessions; s != NULL; s = s->next)
		total++;
	struct session **v = xcalloc(total ? total : 1, sizeof(*v)), **out;
	for (struct session *s = d->sessions; s != NULL; s = s->next) {
		if (s->id == d->drain_next_id)
			from = k;
		v[k++] = s;
	}
	out = xcalloc(total ? total : 1, sizeof(*out));
	for (size_t i = 0; i < total; i++) {
		out[i] = v[(from + i) % total];
		session_ref(out[i]);
	}
	free(v);
	*n = total;
	return out;
}

/* Reads the live sessions' regions that changed, each for a slice and all
 * for DRAIN_TICK_MS at most; ends those whose region broke a rule and
 * those whose last records are read; drops expired fork images; moves
 * block tables that change size. When
 * records are left anywhere, it comes back at once (after the loop has
 * served everything else) instead of after DRAIN_PERIOD_MS. */
void agentsrv_on_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;
	uint64_t end = drain_now_ns() + DRAIN_TICK_MS * 1000000u, now = mono_ms();
	size_t n;
	struct session **v = tick_order(d, &n);
	bool more = false;

	yield_begin(&d->yield);
	for (size_t i = 0; i < n; i++) {
		struct session *s = v[i];
		session_forks_expire(s, now);
		if (drain_now_ns() >= end) {
			d->drain_next_id = s->id; /* first in the next tick */
			more = true;
			break;
		}
		/* A block table changing size (an idle process's, an exited
		 * one's shrink) moves on a slice at a time. */
		if ((s->heap.tab.old != NULL || s->heap.big.old != NULL ||
		     s->heap.trim_next != 0) &&
		    !heap_step(&s->heap, HEAP_TICK_SLOTS))
			more = true;
		if (s->state != SESSION_LIVE)
			continue;
		uint64_t slice = drain_now_ns() + SESSION_SLICE_MS * 1000000u;
		if (s->ending) {
			yield_reading(&d->yield);
			bool left =
			    !s->broken && session_drain_until(s, true, slice < end ? slice : end);
			yield_saw(&d->yield, &s->pressed, s->drain.fullest, s->drain.waiting);
			if (left)
				more = true;
			else
				session_finish(s);
			continue;
		}
		if (!s->hello)
			continue;
		if (drain_slice(s, end))
			more = true;
		if (s->broken)
			session_end(s, s->error, "exit");
	}
	yield_end(&d->yield);
	for (size_t i = 0; i < n; i++)
		session_unref(v[i]);
	free(v);
	/* From now, not from the turn's start (libuv's cached time, before
	 * this pass): a timer already due runs before the loop polls, and a
	 * query that came during the pass would wait for the next pass too. */
	if (more) {
		uv_update_time(d->loop);
		uv_timer_start(&d->agent_timer, agentsrv_on_timer, 1, DRAIN_PERIOD_MS);
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
	d->model_charge = model_charge;
	if (d->fdsink == NULL && (rc = fdsink_new(&d->fdsink)) < 0)
		return rc;
	if ((rc = uv_poll_init(d->loop, &d->agent_srv, fd)) < 0)
		return rc;
	d->agent_srv.data = d;
	uv_poll_start(&d->agent_srv, UV_READABLE, on_listen_readable);
	uv_timer_init(d->loop, &d->agent_timer);
	d->agent_timer.data = d;
	uv_timer_start(&d->agent_timer, agentsrv_on_timer, DRAIN_PERIOD_MS, DRAIN_PERIOD_MS);
	uv_timer_init(d->loop, &d->agent_pause);
	d->agent_pause.data = d;
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
	if (!uv_is_closing((uv_handle_t *)&d->agent_pause))
		uv_close((uv_handle_t *)&d->agent_pause, NULL);
	/* d->stopping: the last records are read at once, no slices. */
	for (struct session *s = d->sessions, *next; s != NULL; s = next) {
		next = s->next; /* finishing may take s out of the list */
		session_ref(s);
		if (s->ending) {
			session_drain_until(s, true, 0); /* no deadline: to the end */
			session_finish(s);
		} else if (s->poll_open) {
			session_end(s, NULL, "shutdown");
		}
		session_unref(s);
	}
}
