/* session.c - one traced process: frame dispatch and the module map (see session.h). */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "fdsink.h"
#include "limit.h"
#include "log.h"
#include "proto.h"
#include "xalloc.h"

#define RBUF_CAP (PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD)
#define RBUF_MIN 4096

static void forks_free(struct session *s);

/* Gives the region back; its memfd is closed off the loop (its last close
 * frees its pages). */
static void region_close(struct session *s)
{
	int fd = drain_release(&s->drain);
	if (fd >= 0 && s->d->fdsink != NULL)
		fdsink_put_later(s->d->fdsink, fd);
	else if (fd >= 0)
		close(fd);
}

/* Closes a descriptor the agent passed, off the loop if it might block. */
static void drop_fd(struct session *s, int fd)
{
	if (s->d->fdsink != NULL)
		fdsink_put(s->d->fdsink, fd);
	else
		close(fd);
}

/* Milliseconds of CLOCK_MONOTONIC: fork images' and waits' ages. */
static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The session's heap takes its blocks and stacks from its user's share
 * (agentsrv.c), if the daemon bounds them. */
static void charge_model(struct session *s)
{
	if (s->d->model_charge != NULL)
		heap_charge_to(&s->heap, s->d->model_charge, s);
}

struct session *session_new(struct daemon *d)
{
	struct session *s = xcalloc(1, sizeof(*s));
	s->d = d;
	s->refs = 1;
	s->id = ++d->next_session_id;
	s->state = SESSION_LIVE;
	heap_init(&s->heap, d->cfg.max_blocks, d->cfg.max_stacks);
	charge_model(s);
	modmap_init(&s->modules, d->cfg.max_modules, 0);
	s->drain.fd = -1;
	s->passed_fd = -1;
	s->fd = -1;
	return s;
}

void session_ref(struct session *s)
{
	s->refs++;
}

void session_unref(struct session *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	if (s->inheriting)
		s->d->ninheriting--;
	heap_close(&s->heap);
	history_free(&s->history);
	region_close(s);
	forks_free(s);
	if (s->passed_fd >= 0)
		drop_fd(s, s->passed_fd);
	modmap_close(&s->modules);
	free(s->rbuf);
	free(s->exe);
	free(s->started_as);
	free(s->cmdline);
	free(s->error);
	free(s->end_why);
	free(s);
}

const char *session_state_name(const struct session *s)
{
	return s->state == SESSION_LIVE ? "live" : "exited";
}

static int fail(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct session *s, const char *fmt, ...)
{
	va_list ap;
	char msg[256];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s->error == NULL)
		s->error = xstrdup(msg);
	return -EBADMSG;
}

/* Reads a whole small /proc file into a new buffer; NULL on failure. */
static char *read_proc(pid_t pid, const char *name, size_t *len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return NULL;
	char *buf = xmalloc(PROTO_MAX_CMDLINE + 1);
	size_t n = fread(buf, 1, PROTO_MAX_CMDLINE, f);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Drops fork image i, giving its bytes back. */
static void forks_drop(struct session *s, size_t i)
{
	struct session_fork *f = &s->forks[i];

	s->fork_bytes -= f->bytes;
	limit_give(&s->d->fork_images, s->uid, f->bytes);
	heap_close(&f->heap);
	memmove(f, f + 1, (s->nforks - i - 1) * sizeof(*s->forks));
	s->nforks--;
}

void session_forks_expire(struct session *s, uint64_t now)
{
	/* A few a call: freeing hundreds of images at once is a stall. */
	for (int n = 0; n < 8 && s->nforks > 0 && now - s->forks[0].at_ms > SESSION_FORK_TTL_MS;
	     n++)
		forks_drop(s, 0);
}

static void copy_modules(struct session *s, const struct session *parent);

/* The child `c` takes `heap` as its start. */
static void inherit(struct session *c, const struct session *parent)
{
	copy_modules(c, parent);
	c->inheriting = false;
	c->inherited = true;
	c->d->ninheriting--;
}

/* A fork child already waiting for the image of this FORK record, if any:
 * it gets its copy at once, and no image is kept. */
static struct session *waiting_child(struct session *s, uint64_t seq)
{
	if (s->d->ninheriting == 0)
		return NULL;
	for (struct session *c = s->d->sessions; c != NULL; c = c->next)
		if (c->inheriting && c->fork_seq == seq && c->parent_pid == s->pid &&
		    c->uid == s->uid && c != s && c->state == SESSION_LIVE)
			return c;
	return NULL;
}

/* The drain met a FORK record: keep the heap as it is now for the child. */
static void on_fork(void *arg, uint64_t seq)
{
	struct session *s = arg;
	struct session *c = waiting_child(s, seq);
	size_t bytes = heap_memory(&s->heap);
	uint64_t now = now_ms();

	if (c != NULL) {
		heap_close(&c->heap);
		heap_clone(&c->heap, &s->heap);
		charge_model(c);
		inherit(c, s);
		return;
	}
	/* Children claim their image within milliseconds of the fork; one
	 * that never came (it failed to connect, or the fork failed) must not
	 * hold memory for ever, nor may a process that forks without end:
	 * images are bounded per process, per user and in all. */
	session_forks_expire(s, now);
	while (s->nforks > 0 &&
	       (s->nforks == SESSION_MAX_FORKS || s->fork_bytes + bytes > SESSION_MAX_FORK_BYTES))
		forks_drop(s, 0);
	if (bytes > SESSION_MAX_FORK_BYTES)
		return;
	char who[32];
	snprintf(who, sizeof(who), "uid %u", (unsigned)s->uid);
	if (limit_take(&s->d->fork_images, s->uid, bytes, now, who) < 0) {
		s->forks_refused++;
		return; /* its child starts empty, and says so */
	}
	if (s->nforks == s->forks_cap) {
		s->forks_cap = s->forks_cap ? s->forks_cap * 2 : 8;
		s->forks = xreallocarray(s->forks, s->forks_cap, sizeof(*s->forks));
	}
	struct session_fork *f = &s->forks[s->nforks++];
	f->seq = seq;
	f->at_ms = now;
	f->bytes = bytes;
	heap_clone(&f->heap, &s->heap);
	s->fork_bytes += bytes;
}

static void forks_free(struct session *s)
{
	while (s->nforks > 0)
		forks_drop(s, s->nforks - 1);
	free(s->forks);
	s->forks = NULL;
	s->forks_cap = 0;
}

/* Copies the parent's module map: the inherited stacks' addresses are in it. */
static void copy_modules(struct session *s, const struct session *parent)
{
	if (s->modules.n > 0 || parent->modules.n == 0)
		return;
	modmap_copy(&s->modules, &parent->modules);
}

/*
 * A fork child takes the image its parent's session kept at the FORK record
 * its HELLO names. The parent is a session of the same uid (a process can
 * claim no other user's heap) with the pid the child's HELLO names; its
 * region is read first, so that a record not read yet is found. True when
 * the wait is over (taken, or given up).
 */
static bool try_inherit(struct session *s)
{
	bool waiting = false;

	for (struct session *p = s->d->sessions; p != NULL; p = p->next) {
		if (p == s || p->pid != s->parent_pid || p->uid != s->uid || !p->hello)
			continue;
		/* Read the parent first (a record not read yet is found), unless
		 * it is itself waiting or being read: two sessions that name
		 * each other as parents must not drain each other for ever. */
		if (p->state == SESSION_LIVE && !p->inheriting && !p->draining &&
		    session_read_due(p))
			session_drain(p, false);
		/* That read met the FORK record with us waiting: on_fork
		 * gave us the heap already. */
		if (!s->inheriting)
			return true;
		for (size_t i = 0; i < p->nforks; i++) {
			if (p->forks[i].seq != s->fork_seq)
				continue;
			struct session_fork *f = &p->forks[i];
			heap_close(&s->heap);
			s->heap = f->heap;
			charge_model(s);
			p->fork_bytes -= f->bytes;
			limit_give(&s->d->fork_images, p->uid, f->bytes);
			memmove(f, f + 1, (p->nforks - i - 1) * sizeof(*p->forks));
			p->nforks--;
			inherit(s, p);
			return true;
		}
		/* Not read that far yet: the record is on its way. */
		if (p->state == SESSION_LIVE && p->heap.last_seq < s->fork_seq)
			waiting = true;
	}
	if (!waiting || now_ms() - s->inherit_since_ms > SESSION_INHERIT_MS) {
		log_warn("pid %d: its parent's heap at the fork (pid %d) was not found: it starts "
		         "empty, and frees of inherited blocks count as unknown",
		         (int)s->pid, (int)s->parent_pid);
		s->inheriting = false;
		s->d->ninheriting--;
		return true;
	}
	return false;
}

/* A fork child is its parent's image until it execs: it takes the parent's
 * identity as the daemon read it from /proc, which a child that execs at
 * once no longer shows. */
static bool identity_from_parent(struct session *s)
{
	for (struct session *p = s->d->sessions; p != NULL; p = p->next) {
		if (p == s || p->pid != s->parent_pid || p->uid != s->uid || !p->hello ||
		    p->exe == NULL)
			continue;
		s->exe = xstrdup(p->exe);
		s->started_as = p->started_as != NULL ? xstrdup(p->started_as) : NULL;
		s->cmdline = xmemdup(p->cmdline, p->cmdline_len + 1);
		s->cmdline_len = p->cmdline_len;
		return true;
	}
	return false;
}

/* The path the agent says the program was started as: kept as its word
 * (started_as), never taken for the exe. Checking it would mean looking
 * the agent's path up with the daemon's rights: an oracle for files and
 * other users' processes the user may not see, and a lookup a user's FUSE
 * or overlay mount can hold for ever (the hostile review showed both). */
static void take_started(struct session *s, const struct proto_hello *h)
{
	if (h->started_len == 0 || h->started[0] != '/' ||
	    memchr(h->started, '\0', h->started_len) != NULL)
		return;
	s->started_as = xstrndup(h->started, h->started_len);
}

/* A program that rewrote its title (setproctitle) leaves the rest of its
 * old arguments' space as NULs: /proc reads them as empty arguments. */
static void trim_cmdline(struct session *s)
{
	while (s->cmdline_len >= 2 && s->cmdline[s->cmdline_len - 1] == '\0' &&
	       s->cmdline[s->cmdline_len - 2] == '\0')
		s->cmdline_len--;
}

static int on_hello(struct session *s, const uint8_t *p, size_t n)
{
	struct proto_hello h;
	char path[64], exe[PROTO_MAX_PATH + 1];

	if (s->hello)
		return fail(s, "second HELLO");
	if (proto_hello_decode(p, n, &h) < 0)
		return fail(s, "malformed HELLO");
	if (s->passed_fd < 0)
		return fail(s, "HELLO came without the shared memory's descriptor");
	const char *why = NULL;
	int fd = s->passed_fd;
	s->passed_fd = -1;
	if (!fd_is_memfd(fd)) {
		drop_fd(s, fd);
		return fail(s, "the shared memory is not a memfd");
	}
	/* drain_open closes what it refuses: a copy, so that the last close
	 * (which frees the memfd's pages) is the sink's, off the loop. */
	int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0), rc = mine < 0 ? -EMFILE : 0;
	if (mine >= 0)
		rc = drain_open(&s->drain, mine, &why);
	drop_fd(s, fd); /* after drain_open: never the last close on the loop */
	if (mine < 0)
		return fail(s, "no descriptor left for the shared memory");
	if (rc < 0)
		return fail(s, "%s", why);
	s->drain.on_fork = on_fork;
	s->drain.fork_arg = s;
	s->drain.scratch = &s->d->drain_scratch;
	s->hello = true;
	s->nframes = h.nframes;
	s->flags = h.flags;
	s->sample_bytes = h.sample_bytes;
	/* Sizes of a sampled process are true sizes of the blocks that were
	 * sampled; the heap weighs them (sampling.h). No event came before
	 * HELLO, so no block's weight changes. */
	heap_set_sampling(&s->heap, h.sample_bytes);
	if (h.parent_pid != 0 && (pid_t)h.parent_pid == s->pid)
		return fail(s, "HELLO names the process as its own parent");
	if (h.parent_pid != 0) {
		s->parent_pid = (pid_t)h.parent_pid;
		if (identity_from_parent(s))
			goto identified;
	}
	/* Identity comes from the kernel; the agent's words are a fallback
	 * for when /proc is not readable. */
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)s->pid);
	ssize_t l = readlink(path, exe, sizeof(exe) - 1);
	if (l > 0)
		s->exe = xstrndup(exe, (size_t)l);
	else
		s->exe = xstrndup(h.exe, h.exe_len);
	take_started(s, &h);
	size_t len = 0;
	s->cmdline = read_proc(s->pid, "cmdline", &len);
	if (s->cmdline != NULL && len > 0) {
		s->cmdline_len = len;
	} else {
		free(s->cmdline);
		s->cmdline = xstrndup(h.cmdline, h.cmdline_len);
		s->cmdline_len = h.cmdline_len;
	}
	trim_cmdline(s);
identified:
	if (h.parent_pid != 0) {
		s->inheriting = true;
		s->d->ninheriting++;
		s->fork_seq = h.fork_seq;
		s->inherit_since_ms = now_ms();
		try_inherit(s);
	}
	return 0;
}

static int on_module(struct session *s, const uint8_t *p, size_t n)
{
	struct proto_module m;
	if (proto_module_decode(p, n, &m) < 0)
		return fail(s, "malformed MODULE");
	if (m.lo == m.hi)
		return 0;
	/* A real process maps a few thousand objects at most; more is an
	 * agent gone wrong, and each costs the daemon memory (modmap.h). */
	if (modmap_add(&s->modules, m.bias, m.lo, m.hi, m.path, m.path_len, m.build_id,
	               m.build_id_len) == -ENOSPC) {
		s->d->modules_dropped++;
		if (!s->modules.warned) {
			s->modules.warned = true;
			log_warn("pid %d: more than %zu modules or %zu bytes of their paths "
			         "(--max-modules): the objects past it are not kept, their "
			         "frames print as addresses",
			         (int)s->pid, s->modules.max, s->modules.max_path_bytes);
		}
	}
	return 0;
}

static int on_frame(struct session *s, const struct proto_hdr *h, const uint8_t *p)
{
	if (!s->hello && h->type != PROTO_HELLO)
		return fail(s, "first frame is not HELLO");
	switch (h->type) {
	case PROTO_HELLO:
		return on_hello(s, p, h->len);
	case PROTO_MODULE:
		return on_module(s, p, h->len);
	case PROTO_MODULES_RESET:
		return proto_empty_decode(p, h->len) < 0 ? fail(s, "malformed MODULES_RESET") : 0;
	case PROTO_DETACH:
		/* The agent stopped tracing (memtracectl detach); only an answer
		 * to the daemon's own DETACH counts. */
		if (proto_empty_decode(p, h->len) < 0 || !s->detach_asked)
			return fail(s, "DETACH that memtraced did not ask for");
		s->detached = true;
		return 0;
	case PROTO_WAKE:
		if (proto_empty_decode(p, h->len) < 0)
			return fail(s, "malformed WAKE");
		s->wake = true; /* once for all the WAKEs read together */
		return 0;
	default:
		return fail(s, "unknown frame type %u", h->type);
	}
}

uint8_t *session_rbuf_room(struct session *s, size_t *room)
{
	/* The buffer grows with what a frame needs (a HELLO's command line
	 * may take 64 KiB), not with what a connection might send: an idle
	 * connection holds 4 KiB. */
	if (s->rlen == s->rcap && s->rcap < RBUF_CAP) {
		size_t cap = s->rcap ? s->rcap * 2 : RBUF_MIN;
		s->rcap = cap < RBUF_CAP ? cap : RBUF_CAP;
		s->rbuf = xrealloc(s->rbuf, s->rcap);
	}
	*room = s->rcap - s->rlen;
	return s->rbuf + s->rlen;
}

int session_feed(struct session *s, const uint8_t *data, size_t n)
{
	/* Called with data == s->rbuf + s->rlen after a read into the buffer,
	 * or with outside bytes (tests), which are appended first. */
	if (s->rbuf == NULL || data != s->rbuf + s->rlen) {
		if (n > RBUF_CAP - s->rlen)
			return fail(s, "frame larger than the read buffer");
		if (s->rbuf == NULL || s->rlen + n > s->rcap) {
			s->rcap = s->rlen + n > RBUF_MIN ? s->rlen + n : RBUF_MIN;
			s->rbuf = xrealloc(s->rbuf, s->rcap);
		}
		memcpy(s->rbuf + s->rlen, data, n);
	}
	s->rlen += n;

	size_t off = 0;
	int rc = 0;
	while (s->rlen - off >= PROTO_HDR_SIZE) {
		struct proto_hdr h;
		if (proto_hdr_decode(s->rbuf + off, s->rlen - off, &h) < 0) {
			rc = fail(s, "malformed frame header");
			break;
		}
		if (h.len > RBUF_CAP - PROTO_HDR_SIZE) {
			rc = fail(s, "frame larger than the read buffer");
			break;
		}
		if (s->rlen - off - PROTO_HDR_SIZE < h.len)
			break;
		if ((rc = on_frame(s, &h, s->rbuf + off + PROTO_HDR_SIZE)) < 0)
			break;
		off += PROTO_HDR_SIZE + h.len;
	}
	if (off > 0) {
		memmove(s->rbuf, s->rbuf + off, s->rlen - off);
		s->rlen -= off;
		if (s->rcap > RBUF_MIN && s->rlen <= RBUF_MIN / 2) {
			s->rcap = RBUF_MIN; /* the big frame is done */
			s->rbuf = xrealloc(s->rbuf, s->rcap);
		}
	}
	/* The WAKEs read, even before a bad frame: what is applied does not
	 * depend on how the bytes were split into reads. */
	if (s->wake && !s->wake_later) {
		s->wake = false;
		session_drain(s, false);
		if (s->broken)
			rc = -EBADMSG;
	}
	return rc;
}

int session_pass_fd(struct session *s, int fd)
{
	if (s->hello || s->passed_fd >= 0) {
		drop_fd(s, fd);
		return fail(s, "a descriptor came that was not asked for");
	}
	s->passed_fd = fd;
	return 0;
}

void session_drain_window(struct daemon *d, unsigned ms)
{
	/* One window for all that runs in the same turn of the loop: a client
	 * that pipelines requests, or many clients at once, share it. */
	uint64_t turn = uv_now(d->loop);
	if (d->drain_until_ns != 0 && d->drain_window_turn == turn)
		return;
	d->drain_until_ns = drain_now_ns() + (uint64_t)ms * 1000000u;
	d->drain_window_turn = turn;
}

bool session_drain_until(struct session *s, bool final, uint64_t deadline_ns)
{
	const char *why = NULL;

	if (!s->hello || s->broken || s->drain.fd < 0 || s->draining)
		return false;
	/* A fork child's records wait for its parent's heap, or the end. */
	if (s->inheriting && !try_inherit(s) && !final)
		return false;
	if (s->inheriting) { /* the end came first */
		s->inheriting = false;
		s->d->ninheriting--;
	}
	s->draining = true;
	long n = drain_run_until(&s->drain, &s->heap, final, deadline_ns, &why);
	s->draining = false;
	if (n > 0) {
		s->events += (uint64_t)n;
		s->d->events_total += (uint64_t)n;
	}
	s->lost_events = s->drain.lost;
	s->lost_allocs = s->drain.lost_allocs;
	s->lost_bytes = s->drain.lost_bytes;
	s->lost_frees = s->drain.lost_frees;
	s->gave_up = s->drain.gave_up;
	s->bye = s->drain.exiting;
	if (n < 0) {
		s->broken = true;
		fail(s, "%s", why);
		return false;
	}
	return s->drain.cut;
}

bool session_read_due(struct session *s)
{
	uint64_t now_ns = drain_now_ns();
	uint64_t gap = (uint64_t)s->drain.nrings * 20000u;
	if (gap < 1000000u)
		gap = 1000000u;
	if (s->wake_read_ns != 0 && now_ns - s->wake_read_ns < gap)
		return false;
	s->wake_read_ns = now_ns;
	return true;
}

void session_drain(struct session *s, bool final)
{
	uint64_t now = drain_now_ns(), deadline = now + (uint64_t)SESSION_SLICE_MS * 1000000u;
	uint64_t until = s->d->loop != NULL && s->d->drain_window_turn == uv_now(s->d->loop)
	                     ? s->d->drain_until_ns
	                     : 0;

	/* Inside a caller's window (a query over many processes, requests
	 * pipelined), never past it: once it is spent, the answers are of
	 * what was read (the timer reads the rest). A read costs a round's
	 * setup (copying its records) however short its deadline. */
	if (until != 0 && until <= now)
		return;
	if (until != 0 && until < deadline)
		deadline = until;
	session_drain_until(s, final, deadline);
}

void session_trim(struct session *s)
{
	region_close(s);
	/* Fork images stay until their children claim them or they expire: a
	 * parent that forks and exits at once (a daemon going to the
	 * background) ends before its child says hello. */
	heap_trim(&s->heap);
	if (s->passed_fd >= 0)
		drop_fd(s, s->passed_fd);
	s->passed_fd = -1;
	free(s->rbuf);
	s->rbuf = NULL;
	s->rlen = s->rcap = 0;
}

size_t session_memory(const struct session *s)
{
	size_t n = sizeof(*s) + heap_memory(&s->heap) + s->rcap + s->cmdline_len + 1;
	if (s->exe != NULL)
		n += strlen(s->exe) + 1;
	if (s->started_as != NULL)
		n += strlen(s->started_as) + 1;
	if (s->error != NULL)
		n += strlen(s->error) + 1;
	n += modmap_memory(&s->modules);
	for (size_t i = 0; i < s->nforks; i++)
		n += heap_memory(&s->forks[i].heap);
	n += drain_memory(&s->drain);
	n += history_memory(&s->history);
	return n;
}

void session_sym_module(const struct modmap_entry *m, struct sym_module *out)
{
	out->path = m->path;
	out->build_id = m->build_id;
	out->build_id_len = m->build_id_len;
	out->bias = m->bias;
}
