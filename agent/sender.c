/*
 * sender.c - the agent's sender thread (see sender.h).
 *
 * Events never pass through here: they are in the shared region, which the
 * daemon reads itself. The sender keeps the connection that tells the daemon
 * who the process is (HELLO, with the region's descriptor), what is loaded
 * (MODULE) and when a ring is filling up (WAKE), and it gives the rings of
 * threads that exited back to the free list once the daemon drained them.
 * One cycle, every 50 ms or when woken:
 *  1. if objects were loaded or unloaded, send the module list again;
 *  2. if a thread asked (its ring passed a quarter), send WAKE;
 *  3. reclaim drained rings of exited threads.
 */
#include "sender.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include "fdguard.h"
#include "globals.h"
#include "modules.h"
#include "proto.h"
#include "region.h"
#include "ring.h"
#include "sysdep.h"

#define BUF_SIZE    (PROTO_MAX_PAYLOAD + PROTO_HDR_SIZE)
#define CYCLE_NS    (50u * 1000 * 1000)
#define LIVENESS_NS (1000u * 1000 * 1000)

/* Sender state: written by the sender thread (and by start, which runs
 * before it exists). */
static int sock = -1;
static dev_t sock_dev; /* what sock referred to when it connected */
static ino_t sock_ino;
static pthread_t thread;
static _Atomic uint32_t wake_word;
static _Atomic int wake_asked; /* a ring passed a quarter: send WAKE */
static uint8_t *buf;           /* frame being built */
static size_t buf_used;
static uint64_t last_liveness;
static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static int (*detach_fn)(void); /* sender_on_detach */
static _Atomic int detaching;  /* from a DETACH's arrival to the hangup */

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

/* The daemon never writes to the stream; it only closes it: when it refuses
 * the session (a limit), stops, or gives the process up. A hangup is seen
 * here even when the agent has nothing to send. -EPIPE when it closed. */
static int peer_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	int saved = errno, rc = 0;

	if (fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)))
		rc = -EPIPE;
	errno = saved;
	return rc;
}

/* What the daemon sent: DETACH is the only frame it may send (memtracectl
 * detach). 1 when it asked to detach, 0 when nothing (or not all of a
 * header) is there yet, -errno when the stream ended or broke the rule. */
static int read_request(void)
{
	uint8_t hdr[PROTO_HDR_SIZE];
	struct proto_hdr h;
	int saved = errno;
	ssize_t n = recv(sock, hdr, sizeof(hdr), MSG_DONTWAIT | MSG_PEEK);
	int rc = n < 0    ? (errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno)
	         : n == 0 ? -EPIPE
	                  : 0;

	if (n == (ssize_t)sizeof(hdr)) {
		rc = recv(sock, hdr, sizeof(hdr), MSG_DONTWAIT) == (ssize_t)sizeof(hdr) &&
		             proto_hdr_decode(hdr, sizeof(hdr), &h) == 0 &&
		             h.type == PROTO_DETACH && h.len == 0
		         ? 1
		         : -EPROTO;
	}
	errno = saved;
	return rc;
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

/*
 * Whoever listens on agent.sock gets the program's exe, arguments and the
 * region with every event: it must be root's daemon (the system one) or one
 * of the program's own user. A socket served by anybody else (a directory
 * another user made where ours should be) is refused before a byte is sent.
 * The credentials are the listener's when it called listen (for a socket
 * systemd passed, systemd's: root). 0, or -EPERM with the owner in *owner.
 */
static int peer_trusted(int fd, uid_t *owner)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	*owner = cred.uid;
	return cred.uid == 0 || cred.uid == geteuid() ? 0 : -EPERM;
}

/* A connected socket to path, or -errno (-EPERM: another user's, *owner).
 * The connect is bounded by MEMTRACE_BLOCK_TIMEOUT: a daemon that is stopped
 * with its backlog full must not hold the program (this runs in the
 * constructor and in fork children). */
static int connect_to(const char *path, uid_t *owner)
{
	struct sockaddr_un sa;
	struct timeval tv = {(time_t)(g_cfg.block_ns / 1000000000u), 0}, none = {0, 0};
	int fd, rc;

	if (path[0] == '\0' || strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : -errno;
		close(fd);
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
	if ((rc = peer_trusted(fd, owner)) < 0) {
		close(fd);
		return rc;
	}
	int sz = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	return fd;
}

/* Connects to the daemon: sock, sock_dev and sock_ino. The socket is kept
 * high and guarded (fdguard.h). 0 or -errno (-EPERM: the socket is another
 * user's, *owner). */
static int sock_open(uid_t *owner)
{
	struct stat st;
	int fd = connect_to(g_cfg.socket, owner);

	if (fd < 0 && g_cfg.fallback[0] != '\0') {
		uid_t fb_owner;
		int fb = connect_to(g_cfg.fallback, &fb_owner);
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

/* The path the program was started as: AT_EXECFN, absolute. Found once,
 * by the image's first HELLO (a fork child inherits it: the directory may
 * have changed since). Empty when the kernel gave none. */
static const char *started_path(size_t *len)
{
	static char path[PROTO_MAX_PATH];
	static bool found;

	if (!found) {
		const char *fn = (const char *)getauxval(AT_EXECFN);
		found = true;
		path[0] = '\0';
		if (fn != NULL && fn[0] == '/') {
			if (strlen(fn) < sizeof(path))
				strcpy(path, fn);
		} else if (fn != NULL && getcwd(path, sizeof(path)) != NULL) {
			size_t n = strlen(path);
			while (fn[0] == '.' && fn[1] == '/')
				fn += 2;
			if (n + 1 + strlen(fn) < sizeof(path)) {
				path[n] = '/';
				strcpy(path + n + 1, fn);
			} else {
				path[0] = '\0';
			}
		}
	}
	*len = strlen(path);
	return path;
}

static int send_hello(void)
{
	static char exe[PROTO_MAX_PATH];
	static char cmdline[8192];
	struct proto_hello h;
	size_t started_len;

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
	h.started = started_path(&started_len);
	h.started_len = (uint32_t)started_len;
	h.version = PROTO_VERSION;
	h.flags = (g_cfg.drop ? PROTO_HELLO_DROP : 0) | (g_cfg.fp ? PROTO_HELLO_FP : 0) |
	          (g_cfg.sample_bytes ? PROTO_HELLO_SAMPLED : 0) |
	          (g_bypassed ? PROTO_HELLO_BYPASSED : 0) |
	          (g_attached ? PROTO_HELLO_ATTACHED : 0) |
	          (g_cfg.libunwind && !g_cfg.fp ? PROTO_HELLO_LIBUNWIND : 0);
	h.nframes = g_cfg.nframes;
	h.pid = (uint32_t)getpid();
	h.sample_bytes = g_cfg.sample_bytes;
	if (g_parent_pid != 0 && g_fork_seq != 0) {
		h.parent_pid = (uint32_t)g_parent_pid;
		h.fork_seq = g_fork_seq;
	}
	ssize_t w = proto_hello_encode(buf, BUF_SIZE, &h);
	if (w < 0)
		return (int)w;
	/* The region's descriptor travels with HELLO's bytes. */
	return sysdep_send_fd(sock, buf, (size_t)w, g_region_fd);
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

static int cycle(void)
{
	int rc;

	/* The daemon takes the connection's end for the process's: a program
	 * that closed the socket under the agent (raw system calls) must hear
	 * that it is no longer traced, even when nothing is to be sent. */
	if ((rc = sock_check()) < 0 || (rc = read_request()) != 0 || (rc = peer_gone(sock)) < 0)
		return rc;

	/* dl_iterate_phdr takes the loader's write lock, which a fork child
	 * does not get reset: hold modules_lock so fork waits for us. */
	pthread_mutex_lock(&modules_lock);
	int changed = modules_changed();
	pthread_mutex_unlock(&modules_lock);
	if (changed && (rc = send_modules()) < 0)
		return rc;
	if (atomic_exchange(&wake_asked, 0)) {
		buf_used = (size_t)proto_empty_encode(buf, BUF_SIZE, PROTO_WAKE);
		if ((rc = flush_buf()) < 0)
			return rc;
	}
	uint64_t now = sysdep_now_ns();
	int check_alive = now - last_liveness > LIVENESS_NS;
	if (check_alive)
		last_liveness = now;
	ring_reclaim(now, check_alive, LIVENESS_NS, g_pid);
	return 0;
}

static void wake_all_rings(void)
{
	uint32_t n = ring_count();
	for (uint32_t i = 0; i < n; i++) {
		struct shm_ring *r = ring_at(i);
		atomic_fetch_add(&r->tail_futex, 1);
		sysdep_futex_wake_shared(&r->tail_futex, 1 << 30);
	}
}

/* Says why tracing stopped: the daemon went away, or the program closed the
 * agent's socket (-EBADF from sock_check or send). */
/* When the connection was made (a loss soon after is a refusal). */
static uint64_t hello_ns;

static void say_lost(int rc)
{
	char num[24];

	if (rc != -EBADF && sysdep_now_ns() - hello_ns < 2000000000ull)
		sysdep_say("memtraced closed the connection at once (", strerror(-rc),
		           "; it may trace as many of this user's processes as it allows: "
		           "memtracectl status, limits.agent_connections); the program continues "
		           "untraced");
	else if (rc != -EBADF)
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

void sender_exit_check(void)
{
	/* One read of the number: the sender thread may release it meanwhile
	 * (then poll sees a closed number or another's, and says nothing). */
	int fd = sock;
	if (sock_check() == 0 && peer_gone(fd) < 0) {
		int expect = AGENT_ACTIVE;
		if (atomic_compare_exchange_strong(&g_state, &expect, AGENT_DISABLED))
			say_lost(-EPIPE);
	}
}

/* Threads that took a sequence number before the detach and have not
 * written their record yet: given up to 100 ms, so that what they record
 * still reaches the daemon. */
static void wait_recorders(void)
{
	uint64_t deadline = sysdep_now_ns() + 100u * 1000 * 1000;
	for (;;) {
		bool busy = false;
		uint32_t n = ring_count();
		for (uint32_t i = 0; i < n && !busy; i++)
			busy = atomic_load(&ring_at(i)->pending) != UINT64_MAX;
		if (!busy || sysdep_now_ns() > deadline)
			return;
		struct timespec ms = {0, 1000 * 1000};
		nanosleep(&ms, NULL);
	}
}

/* memtraced asked to stop tracing: the agent passes every call through from
 * now on (detach_fn), the threads that were recording finish, the daemon
 * hears DETACH (the connection's end that follows is not the process's) and
 * the connection and the region go. Nothing is said on stderr: the operator
 * asked for it. */
static void detach_session(void)
{
	atomic_store(&detaching, 1);
	if (detach_fn != NULL && detach_fn() == 0) {
		wake_all_rings();
		wait_recorders();
		buf_used = (size_t)proto_empty_encode(buf, BUF_SIZE, PROTO_DETACH);
		flush_buf();
		sock_release();
		region_retire();
	} else {
		sock_release();
	}
	atomic_store(&detaching, 0);
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
		sysdep_futex_wait(&wake_word, wv, CYCLE_NS);
		int rc = cycle();
		if (rc == 1) {
			detach_session();
			break;
		}
		if (rc < 0) {
			lost_connection(rc);
			break;
		}
	}
	/* Nobody joins it: a later session (memtrace_attach) starts another. */
	pthread_detach(pthread_self());
	return NULL;
}

int sender_hello(void)
{
	uid_t owner = 0;
	int rc;

	if (buf == NULL && (buf = sysdep_map(BUF_SIZE, 0)) == NULL)
		return -ENOMEM;
	buf_used = 0;
	atomic_store(&wake_asked, 0);
	last_liveness = 0;
	rc = sock_open(&owner);
	if (rc == -EPERM) {
		char num[24], why[96];
		strcpy(why, " is served by uid ");
		strcat(why, sysdep_u64_str(num, owner));
		strcat(why, ", neither root nor the program's own user: ");
		sysdep_say(g_cfg.socket, why, "not connecting; the program runs untraced");
		return rc;
	}
	if (rc == -ETIMEDOUT) {
		sysdep_say("memtraced at ", g_cfg.socket,
		           " accepts no connection (stopped?) within MEMTRACE_BLOCK_TIMEOUT; the "
		           "program runs untraced");
		return rc;
	}
	if (rc < 0) {
		sysdep_say("cannot reach memtraced at ", g_cfg.socket,
		           rc == -ENOENT || rc == -ECONNREFUSED
		               ? " (is it running?); the program runs untraced"
		               : "; the program runs untraced");
		return rc;
	}
	hello_ns = sysdep_now_ns();
	if ((rc = send_hello()) < 0) {
		sysdep_say("memtraced at ", g_cfg.socket,
		           " closed the connection (it may trace as many of this user's processes "
		           "as it allows: memtracectl status, limits.agent_connections); the "
		           "program runs untraced");
		sock_release();
	}
	return rc;
}

int sender_start(void)
{
	int rc;

	if (sock < 0 && (rc = sender_hello()) < 0)
		return rc;
	if ((rc = send_modules()) < 0)
		goto err_close;
	if (pthread_create(&thread, NULL, sender_main, NULL) != 0) {
		rc = -EAGAIN;
		goto err_close;
	}
	return 0;

err_close:
	if (rc == -EAGAIN)
		sysdep_say("cannot start the thread that talks to memtraced at ", g_cfg.socket,
		           "; the program runs untraced");
	else
		sysdep_say("memtraced at ", g_cfg.socket,
		           " closed the connection (it may trace as many of this user's processes "
		           "as it allows: memtracectl status, limits.agent_connections); the "
		           "program runs untraced");
	sock_release();
	return rc;
}

void sender_on_detach(int (*fn)(void))
{
	detach_fn = fn;
}

int sender_detaching(void)
{
	return atomic_load(&detaching);
}

void sender_wake(void)
{
	/* Asked already and not yet taken: the sender is on its way (a
	 * dropping thread calls this for every event it drops). */
	if (atomic_exchange(&wake_asked, 1))
		return;
	atomic_fetch_add(&wake_word, 1);
	sysdep_futex_wake(&wake_word, 1);
}

void sender_after_fork_child(void)
{
	sock_release(); /* the parent's, unless the program reused the number */
	buf_used = 0;
	atomic_store(&wake_asked, 0);
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
