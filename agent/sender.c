/*
 * sender.c - the agent's sender thread (see sender.h).
 *
 * One cycle:
 *  1. if objects were loaded or unloaded, send the module list again;
 *  2. W = min(g_seq, every ring's pending): every record with seq < W is
 *     already in a ring (see ring.h);
 *  3. send the definitions of all stacks interned since the last cycle (every
 *     record drained in step 4 was written after its stack was ready);
 *  4. merge each ring's records with seq < W by sequence number (merge.h),
 *     send them as EVENTS frames, then release the ring space and wake
 *     blocked threads;
 *  5. report lost events, reclaim the rings of exited threads.
 * The daemon therefore receives one totally ordered event stream per process.
 */
#include "sender.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include "fdguard.h"
#include "globals.h"
#include "merge.h"
#include "modules.h"
#include "proto.h"
#include "ring.h"
#include "stacktab.h"
#include "sysdep.h"

#define BUF_SIZE    (PROTO_MAX_PAYLOAD + PROTO_HDR_SIZE)
#define CYCLE_NS    (50u * 1000 * 1000)
#define LIVENESS_NS (1000u * 1000 * 1000)

/* Sender state: written by the sender thread (and by start/stop, which run
 * while it does not exist or is being joined). */
static int sock = -1;
static dev_t sock_dev; /* what sock referred to when it connected */
static ino_t sock_ino;
static pthread_t thread;
static int thread_running;
static _Atomic uint32_t wake_word;
static _Atomic int stopping;
static uint8_t *buf; /* frame being built */
static size_t buf_used;
static uint32_t stacks_sent; /* ids 1..stacks_sent are with the daemon */
static uint64_t lost_sent;
static uint64_t last_liveness;
static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;

static struct merge merge; /* this cycle's merge of the rings */

/*
 * Whether sock is still the socket the agent connected. A program that
 * closes every descriptor it has (as daemons do) does not close it through
 * libc (fdguard.h), but it may with a raw system call, and then open files
 * or sockets that get its number: the agent must then never write to that
 * number, nor close it. -EBADF when it is no longer ours. (The check and the
 * write that follows are two system calls: a program that closes the number
 * and opens a socket on it between the two is not caught.)
 */
static int sock_check(void)
{
	struct stat st;
	int saved = errno, rc = 0;

	if (sock < 0 || fstat(sock, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_dev != sock_dev ||
	    st.st_ino != sock_ino)
		rc = -EBADF;
	errno = saved;
	return rc;
}

/* Closes sock if it is still the agent's; forgets its number either way. */
static void sock_release(void)
{
	if (sock >= 0 && sock_check() == 0)
		fdguard_close(sock);
	else if (sock >= 0)
		fdguard_disown(sock);
	sock = -1;
}

static int flush_buf(void)
{
	int rc = 0;
	if (buf_used > 0 && sock >= 0) {
		rc = sock_check();
		if (rc == 0)
			rc = sysdep_send_all(sock, buf, buf_used);
	}
	buf_used = 0;
	return rc;
}

/* Makes room for `n` more bytes in buf. */
static int need(size_t n)
{
	return BUF_SIZE - buf_used >= n ? 0 : flush_buf();
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa;
	int fd, rc;

	if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	int sz = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	return fd;
}

/* Connects to the daemon: sock, sock_dev and sock_ino. The socket is kept
 * high and guarded (fdguard.h). 0 or -errno. */
static int sock_open(void)
{
	struct stat st;
	int fd = connect_to(g_cfg.socket);

	if (fd < 0 && g_cfg.fallback[0] != '\0') {
		int fb = connect_to(g_cfg.fallback);
		if (fb >= 0)
			fd = fb;
	}
	if (fd < 0)
		return fd;
	fd = fdguard_high(fd, 1);
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	fdguard_own(fd);
	sock = fd;
	sock_dev = st.st_dev;
	sock_ino = st.st_ino;
	return 0;
}

static int send_hello(void)
{
	static char exe[PROTO_MAX_PATH];
	static char cmdline[8192];
	struct proto_hello h;

	memset(&h, 0, sizeof(h));
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe));
	h.exe = exe;
	h.exe_len = n > 0 ? (uint32_t)n : 0;
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline)) : -1;
	if (fd >= 0)
		close(fd);
	h.cmdline = cmdline;
	h.cmdline_len = n > 0 ? (uint32_t)n : 0;
	h.version = PROTO_VERSION;
	h.flags = (g_cfg.drop ? PROTO_HELLO_DROP : 0) | (g_cfg.fp ? PROTO_HELLO_FP : 0) |
	          (g_cfg.sample_bytes ? PROTO_HELLO_SAMPLED : 0) |
	          (g_bypassed ? PROTO_HELLO_BYPASSED : 0);
	h.nframes = g_cfg.nframes;
	h.pid = (uint32_t)getpid();
	h.sample_bytes = g_cfg.sample_bytes;
	ssize_t w = proto_hello_encode(buf + buf_used, BUF_SIZE - buf_used, &h);
	if (w < 0)
		return (int)w;
	buf_used += (size_t)w;
	return 0;
}

static int send_modules(void)
{
	int rc = flush_buf();
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&modules_lock);
	buf_used = modules_encode(buf, BUF_SIZE);
	pthread_mutex_unlock(&modules_lock);
	return flush_buf();
}

static int send_stacks(void)
{
	uint32_t count = stacktab_count();

	while (stacks_sent < count) {
		uint32_t id = stacks_sent + 1;
		const uint64_t *frames;
		uint32_t n;
		int st;

		/* A writer is between taking the id and marking it ready; it
		 * never waits for us, so it gets there. Giving up instead would
		 * send an event naming a stack the daemon never saw. */
		while ((st = stacktab_get(id, &frames, &n)) == 0)
			sched_yield();
		if (st == 1) {
			int rc = need(PROTO_HDR_SIZE + 8 + 8 * (size_t)n);
			if (rc < 0)
				return rc;
			ssize_t w =
			    proto_stack_encode(buf + buf_used, BUF_SIZE - buf_used, id, frames, n);
			if (w > 0)
				buf_used += (size_t)w;
		}
		stacks_sent = id;
	}
	return 0;
}

/* Starts an EVENTS frame in buf; returns the offset of its header. */
static size_t events_begin(void)
{
	size_t at = buf_used;
	buf_used += PROTO_HDR_SIZE;
	return at;
}

static void events_end(size_t at)
{
	size_t len = buf_used - at - PROTO_HDR_SIZE;
	if (len == 0)
		buf_used = at;
	else
		proto_hdr_encode(buf + at, PROTO_EVENTS, (uint32_t)len);
}

static int send_events(uint64_t w)
{
	const struct ring_ev *e;

	if (merge_collect(&merge, ring_registry(), w) < 0)
		return -ENOMEM;
	if (merge.nseg == 0)
		return 0;
	int rc = need(PROTO_HDR_SIZE + PROTO_EV_ALLOC_SIZE);
	if (rc < 0)
		return rc;
	size_t frame = events_begin();
	while ((e = merge_next(&merge)) != NULL) {
		if (BUF_SIZE - buf_used < PROTO_EV_ALLOC_SIZE ||
		    buf_used - frame - PROTO_HDR_SIZE + PROTO_EV_ALLOC_SIZE > PROTO_MAX_PAYLOAD) {
			events_end(frame);
			if ((rc = flush_buf()) < 0)
				return rc;
			frame = events_begin();
		}
		uint64_t seq = ring_ev_seq(e);
		ssize_t wr =
		    ring_ev_kind(e) == PROTO_EV_ALLOC
		        ? proto_ev_alloc_encode(buf + buf_used, BUF_SIZE - buf_used, seq, e->addr,
		                                e->size, e->stack)
		        : proto_ev_free_encode(buf + buf_used, BUF_SIZE - buf_used, seq, e->addr);
		if (wr > 0)
			buf_used += (size_t)wr;
	}
	events_end(frame);
	/* The records are copied: give the space back and wake the waiters. */
	merge_release(&merge);
	return 0;
}

static uint64_t watermark(void)
{
	/* g_seq first: see merge_watermark. */
	uint64_t next = atomic_load(&g_seq);

	return merge_watermark(ring_registry(), next);
}

static void reclaim_rings(void)
{
	uint64_t now = sysdep_now_ns();
	int check_alive = now - last_liveness > LIVENESS_NS;

	if (check_alive)
		last_liveness = now;
	for (struct ring *r = ring_registry(); r != NULL; r = r->next) {
		int st = atomic_load(&r->state);
		if (st == RING_FREE)
			continue;
		int empty = atomic_load(&r->head) == atomic_load(&r->tail) &&
		            atomic_load(&r->pending) == UINT64_MAX;
		if (!empty) {
			r->idle_since = now;
			continue;
		}
		if (st == RING_RETIRED) {
			ring_release(r);
		} else if (check_alive && now - r->idle_since > LIVENESS_NS &&
		           !sysdep_thread_alive(g_pid, r->tid)) {
			/* The thread exited after its key destructor ran. */
			ring_release(r);
		}
	}
}

static int cycle(void)
{
	int rc;

	/* Noticed even when there is nothing to send (see sock_check). */
	if ((rc = sock_check()) < 0)
		return rc;

	/* dl_iterate_phdr takes the loader's write lock, which a fork child
	 * does not get reset: hold modules_lock so fork waits for us. */
	pthread_mutex_lock(&modules_lock);
	int changed = modules_changed();
	pthread_mutex_unlock(&modules_lock);
	if (changed && (rc = send_modules()) < 0)
		return rc;
	uint64_t w = watermark();
	if ((rc = send_stacks()) < 0)
		return rc;
	if ((rc = send_events(w)) < 0)
		return rc;
	uint64_t lost = atomic_load(&g_lost);
	if (lost != lost_sent) {
		if ((rc = need(PROTO_HDR_SIZE + 8)) < 0)
			return rc;
		buf_used += (size_t)proto_lost_encode(buf + buf_used, BUF_SIZE - buf_used, lost);
		lost_sent = lost;
	}
	if ((rc = flush_buf()) < 0)
		return rc;
	reclaim_rings();
	return 0;
}

static void wake_all_rings(void)
{
	for (struct ring *r = ring_registry(); r != NULL; r = r->next) {
		atomic_fetch_add(&r->tail_futex, 1);
		sysdep_futex_wake(&r->tail_futex, 1 << 30);
	}
}

/* Says why tracing stopped: the daemon went away, or the program closed the
 * agent's socket (-EBADF from sock_check or send). */
static void say_lost(int rc)
{
	char num[24];

	if (rc != -EBADF)
		sysdep_say("lost the connection to memtraced (", strerror(-rc),
		           "); the program continues untraced");
	else
		sysdep_say("the program closed the agent's connection to memtraced (fd ",
		           sysdep_u64_str(num, (uint64_t)sock),
		           "); it runs untraced from now on, and memtraced took that for its exit");
}

static void lost_connection(int rc)
{
	int expect = AGENT_ACTIVE;
	if (atomic_compare_exchange_strong(&g_state, &expect, AGENT_DISABLED) ||
	    expect == AGENT_SHUTDOWN) {
		say_lost(rc);
		atomic_store(&g_state, AGENT_DISABLED);
	}
	sock_release();
	wake_all_rings();
}

static void *sender_main(void *arg)
{
	sigset_t all;
	(void)arg;

	agent_tls.guard = 1; /* for life: nothing this thread does is traced */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	prctl(PR_SET_NAME, "memtrace-send", 0, 0, 0);
	for (;;) {
		uint32_t wv = atomic_load(&wake_word);
		if (atomic_load(&stopping))
			break;
		sysdep_futex_wait(&wake_word, wv, CYCLE_NS);
		if (atomic_load(&stopping))
			break;
		int rc = cycle();
		if (rc < 0) {
			lost_connection(rc);
			break;
		}
	}
	return NULL;
}

int sender_start(void)
{
	int rc;

	if (buf == NULL && (buf = sysdep_map(BUF_SIZE, 0)) == NULL)
		return -ENOMEM;
	buf_used = 0;
	stacks_sent = 0;
	lost_sent = 0;
	atomic_store(&stopping, 0);
	rc = sock_open();
	if (rc < 0) {
		sysdep_say("cannot reach memtraced at ", g_cfg.socket,
		           rc == -ENOENT || rc == -ECONNREFUSED
		               ? " (is it running?); the program runs untraced"
		               : "; the program runs untraced");
		return rc;
	}
	if ((rc = send_hello()) < 0 || (rc = send_modules()) < 0)
		goto err_close;
	if (pthread_create(&thread, NULL, sender_main, NULL) != 0) {
		rc = -EAGAIN;
		goto err_close;
	}
	thread_running = 1;
	return 0;

err_close:
	sysdep_say("cannot talk to memtraced at ", g_cfg.socket, "; the program runs untraced");
	sock_release();
	return rc;
}

void sender_wake(void)
{
	atomic_fetch_add(&wake_word, 1);
	sysdep_futex_wake(&wake_word, 1);
}

void sender_stop(void)
{
	struct timespec deadline;

	if (!thread_running)
		return;
	atomic_store(&stopping, 1);
	sender_wake();
	/* Never hang the program's exit on a daemon that stopped reading: if
	 * the sender is stuck in send() for 5 s, cut the connection under it. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	if (pthread_timedjoin_np(thread, NULL, &deadline) != 0) {
		if (sock >= 0)
			shutdown(sock, SHUT_RDWR);
		pthread_join(thread, NULL);
	}
	thread_running = 0;
	if (sock >= 0) {
		struct timeval tv = {5, 0};
		setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		/* Threads still inside a hook finish their record; wait briefly. */
		uint64_t until = sysdep_now_ns() + 200u * 1000 * 1000;
		while (watermark() < atomic_load(&g_seq) && sysdep_now_ns() < until)
			sched_yield();
		int rc = cycle();
		if (rc == 0) {
			buf_used = (size_t)proto_empty_encode(buf, BUF_SIZE, PROTO_BYE);
			rc = flush_buf();
		}
		if (rc == -EBADF)
			say_lost(rc);
		sock_release();
	}
	/* Nobody drains the rings any more: threads still waiting for space
	 * must stop waiting. */
	atomic_store(&g_state, AGENT_DISABLED);
	wake_all_rings();
}

void sender_after_fork_child(void)
{
	sock_release(); /* the parent's, unless the program reused the number */
	thread_running = 0;
	buf_used = 0;
	stacks_sent = 0;
	lost_sent = 0;
	atomic_store(&stopping, 0);
	atomic_store(&wake_word, 0);
	pthread_mutex_init(&modules_lock, NULL);
}

void sender_fork_prepare(void)
{
	pthread_mutex_lock(&modules_lock);
}

void sender_fork_parent(void)
{
	pthread_mutex_unlock(&modules_lock);
}
