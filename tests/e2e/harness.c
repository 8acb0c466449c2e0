/*
 * harness.c - processes, client runs, ground truth and comparisons for the
 * end-to-end tests. See harness.h for the design; this file only keeps its
 * promises.
 *
 * It runs in Check's forked test process, which is single-threaded, so fork()
 * followed by ordinary calls before exec is safe here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctlwire.h"
#include "proto.h"
#include "shm.h"

#ifndef TEST_BUILDDIR
#define TEST_BUILDDIR "."
#endif

extern char **environ;

#define MSG_CAP 7000 /* keep failure messages within what Check carries */

/* ---------------------------------------------------------------- misc */

long long h_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static char *vstrf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vstrf(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	return s;
}

char *h_strf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = vstrf(fmt, ap);
	va_end(ap);
	return s;
}

void h_append(char **s, const char *fmt, ...)
{
	va_list ap;
	char *line, *n;
	size_t have = *s != NULL ? strlen(*s) : 0;

	if (have >= MSG_CAP)
		return;
	va_start(ap, fmt);
	line = vstrf(fmt, ap);
	va_end(ap);
	if (have + strlen(line) >= MSG_CAP)
		n = h_strf("%s\n  ... (more differences left out)", *s != NULL ? *s : "");
	else
		n = h_strf("%s%s%s", *s != NULL ? *s : "", have > 0 ? "\n  " : "", line);
	free(*s);
	free(line);
	*s = n;
}

static void buf_add(struct h_buf *b, const char *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
			abort();
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static const char *buf_str(const struct h_buf *b)
{
	return b->data != NULL ? b->data : "";
}

/* --------------------------------------------------------------- paths */

static char base_dir[256];

const char *h_builddir(void)
{
	const char *b = getenv("MEMTRACE_BUILDDIR");
	return b != NULL && b[0] != '\0' ? b : TEST_BUILDDIR;
}

/* buf = dir + rel, computed once. */
static const char *cached(char *buf, size_t cap, const char *dir, const char *rel)
{
	if (buf[0] == '\0')
		snprintf(buf, cap, "%s%s", dir, rel);
	return buf;
}

const char *h_progdir(void)
{
	static char buf[1024];
	const char *p = getenv("MEMTRACE_E2E_PROGDIR");
	if (p != NULL && p[0] != '\0')
		return p;
	return cached(buf, sizeof buf, h_builddir(), "/tests/progs");
}

const char *h_daemon_bin(void)
{
	static char buf[1024];
	return cached(buf, sizeof buf, h_builddir(), "/daemon/memtraced");
}

const char *h_client_bin(void)
{
	static char buf[1024];
	return cached(buf, sizeof buf, h_builddir(), "/client/memtracectl");
}

const char *h_agent_lib(void)
{
	static char buf[1024];
	return cached(buf, sizeof buf, h_builddir(), "/agent/.libs/libmemtrace.so");
}

char *h_prog(const char *name)
{
	return h_strf("%s/%s", h_progdir(), name);
}

int h_base_init(void)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL || tmp[0] != '/')
		tmp = "/tmp";
	snprintf(base_dir, sizeof base_dir, "%s/memtrace-e2e.XXXXXX", tmp);
	if (mkdtemp(base_dir) == NULL)
		return -errno;
	if (chmod(base_dir, 0755) < 0)
		return -errno;
	return 0;
}

const char *h_base_dir(void)
{
	return base_dir;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void h_base_remove(void)
{
	if (base_dir[0] != '\0')
		nftw(base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---------------------------------------------------------- processes */

bool h_env_inherited(const char *entry)
{
	static const char *const dropped[] = {"MEMTRACE_",
	                                      "LD_PRELOAD=", "NOTIFY_SOCKET=", "LISTEN_"};
	for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
		if (strncmp(entry, dropped[i], strlen(dropped[i])) == 0)
			return false;
	return true;
}

/* The environment a started process gets: ours without what
 * h_env_inherited drops, plus `extra` (NULL-terminated). Caller frees the array and
 * the strings it allocated (all entries from index `own` on). */
static char **make_env(const struct h_spawn *s, size_t *own)
{
	size_t n = 0, k = 0, i;
	char **env;

	for (char **e = environ; *e != NULL; e++)
		n++;
	for (i = 0; s->env != NULL && s->env[i] != NULL; i++)
		n++;
	env = calloc(n + 8, sizeof *env);
	if (env == NULL)
		abort();
	for (char **e = environ; *e != NULL; e++)
		if (h_env_inherited(*e))
			env[k++] = *e;
	*own = k;
	if (s->agent)
		env[k++] = h_strf("LD_PRELOAD=%s", h_agent_lib());
	if (s->runtime_dir != NULL)
		env[k++] = h_strf("MEMTRACE_RUNTIME_DIR=%s", s->runtime_dir);
	if (s->truth != NULL)
		env[k++] = h_strf("MEMTRACE_TRUTH=%s", s->truth);
	for (i = 0; s->env != NULL && s->env[i] != NULL; i++)
		env[k++] = h_strf("%s", s->env[i]);
	env[k] = NULL;
	return env;
}

static void free_env(char **env, size_t own)
{
	for (size_t i = own; env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

static void child_fail(const char *what)
{
	char msg[512];
	int n = snprintf(msg, sizeof msg, "harness: %s: %s\n", what, strerror(errno));
	if (n > 0 && write(2, msg, (size_t)n) < 0)
		_exit(126);
	_exit(127);
}

/* Forks and execs argv with fds[0..2] as stdin, stdout, stderr. */
static pid_t spawn(const char *const *argv, char **envp, uid_t uid, const int fds[3])
{
	pid_t parent = getpid();
	pid_t pid = fork();

	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid > 0)
		return pid;

	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			child_fail("dup2");
	closefrom(3);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (uid != H_NOUID) {
		if (setgroups(0, NULL) < 0 || setgid((gid_t)uid) < 0 || setuid(uid) < 0)
			child_fail("setuid");
	}
	/* After setuid, which clears it: die with the test process. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		child_fail("prctl");
	if (getppid() != parent)
		_exit(125);
	execve(argv[0], (char *const *)argv, envp);
	child_fail(argv[0]);
	return -1;
}

void h_proc_start(struct h_proc *p, const struct h_spawn *s)
{
	int in[2], out[2], err[2], fds[3];
	size_t own;
	char **env;
	const char *base;

	memset(p, 0, sizeof *p);
	ck_assert_msg(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
	                  pipe2(err, O_CLOEXEC) == 0,
	              "pipe: %s", strerror(errno));
	fds[0] = in[0];
	fds[1] = out[1];
	fds[2] = err[1];
	env = make_env(s, &own);
	p->pid = spawn(s->argv, env, s->uid, fds);
	free_env(env, own);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->in_fd = in[1];
	p->out_fd = out[0];
	p->err_fd = err[0];
	base = strrchr(s->argv[0], '/');
	snprintf(p->name, sizeof p->name, "%s", base != NULL ? base + 1 : s->argv[0]);
}

/* The program at path (its book named after name), with or without the
 * agent. */
static void path_start(struct h_proc *p, struct h_daemon *d, const char *path, const char *name,
                       const char *const *args, uid_t uid, const char *const *env, bool agent)
{
	const char *argv[16];
	char *truth = h_daemon_file(d, name);
	size_t n = 0;
	struct h_spawn s;

	argv[n++] = path;
	for (size_t i = 0; args != NULL && args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	memset(&s, 0, sizeof s);
	s.argv = argv;
	s.agent = agent;
	s.runtime_dir = agent ? d->runtime : NULL;
	s.truth = truth;
	s.env = env;
	s.uid = uid;
	if (uid != H_NOUID) {
		/* The program writes its book next to it: give it a directory it
		 * owns. */
		char *dir = h_strf("%s.d", truth);
		free(truth);
		ck_assert_msg(mkdir(dir, 0755) == 0 && chown(dir, uid, (gid_t)uid) == 0,
		              "mkdir %s: %s", dir, strerror(errno));
		truth = h_strf("%s/truth", dir);
		free(dir);
		s.truth = truth;
	}
	h_proc_start(p, &s);
	p->truth = truth;
}

static void prog_start(struct h_proc *p, struct h_daemon *d, const char *name,
                       const char *const *args, uid_t uid, const char *const *env, bool agent)
{
	char *path = h_prog(name);

	path_start(p, d, path, name, args, uid, env, agent);
	free(path);
}

void h_prog_start_at(struct h_proc *p, struct h_daemon *d, const char *path,
                     const char *const *args, uid_t uid, const char *const *env)
{
	const char *slash = strrchr(path, '/');

	path_start(p, d, path, slash != NULL ? slash + 1 : path, args, uid, env, true);
}

void h_prog_start(struct h_proc *p, struct h_daemon *d, const char *name, const char *const *args,
                  uid_t uid, const char *const *env)
{
	prog_start(p, d, name, args, uid, env, true);
}

void h_prog_start_untraced(struct h_proc *p, struct h_daemon *d, const char *name,
                           const char *const *args, uid_t uid, const char *const *env)
{
	prog_start(p, d, name, args, uid, env, false);
}

/* Reads what is available on the process's pipes, waiting up to timeout_ms
 * for something. */
static void proc_pump(struct h_proc *p, int timeout_ms)
{
	struct pollfd pfd[2];
	int n = 0;

	if (p->out_fd >= 0)
		pfd[n++] = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
	if (p->err_fd >= 0)
		pfd[n++] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
	if (n == 0) {
		h_sleep_ms(timeout_ms < 10 ? timeout_ms : 10);
		return;
	}
	if (poll(pfd, (nfds_t)n, timeout_ms < 0 ? 0 : timeout_ms) <= 0)
		return;
	for (int i = 0; i < n; i++) {
		char buf[8192];
		ssize_t r;
		if (pfd[i].revents == 0)
			continue;
		r = read(pfd[i].fd, buf, sizeof buf);
		if (r > 0) {
			buf_add(pfd[i].fd == p->out_fd ? &p->out : &p->err, buf, (size_t)r);
		} else if (r == 0 || errno != EINTR) {
			if (pfd[i].fd == p->out_fd)
				p->out_fd = -1;
			else
				p->err_fd = -1;
			close(pfd[i].fd);
		}
	}
}

int h_proc_readline(struct h_proc *p, char *buf, size_t cap, int timeout_ms)
{
	long long deadline = h_now_ms() + timeout_ms;

	for (;;) {
		const char *start = buf_str(&p->out) + p->out_pos;
		const char *nl = strchr(start, '\n');
		if (nl != NULL) {
			size_t len = (size_t)(nl - start);
			snprintf(buf, cap, "%.*s", (int)len, start);
			p->out_pos += len + 1;
			return 1;
		}
		if (p->out_fd < 0)
			return 0;
		long long left = deadline - h_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		proc_pump(p, (int)left);
	}
}

void h_proc_expect_ready(struct h_proc *p)
{
	char line[256];
	int r = h_proc_readline(p, line, sizeof line, H_START_MS);

	if (r == 1 && strcmp(line, "ready") == 0)
		return;
	proc_pump(p, 100);
	ck_abort_msg("%s (pid %ld) did not say \"ready\": %s; stderr: %.3000s", p->name,
	             (long)p->pid,
	             r == 1   ? line
	             : r == 0 ? "(end of output)"
	                      : "(timed out)",
	             buf_str(&p->err));
}

int h_proc_send(struct h_proc *p, const char *line)
{
	char *s = h_strf("%s\n", line);
	size_t n = strlen(s), off = 0;
	int rc = 0;

	while (off < n) {
		ssize_t w = write(p->in_fd, s + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	free(s);
	return rc;
}

void h_proc_close_stdin(struct h_proc *p)
{
	if (p->in_fd >= 0)
		close(p->in_fd);
	p->in_fd = -1;
}

int h_proc_finish(struct h_proc *p, int timeout_ms)
{
	long long deadline = h_now_ms() + timeout_ms;
	long long grace = 0;

	for (;;) {
		if (p->pid > 0) {
			pid_t w = waitpid(p->pid, &p->status, WNOHANG);
			if (w == p->pid) {
				p->pid = 0;
				/* A grandchild may still hold the pipes: wait a little
				 * for their end, not for ever. */
				grace = h_now_ms() + 2000;
			}
		}
		if (p->pid == 0 && (p->out_fd < 0 && p->err_fd < 0))
			break;
		if (p->pid == 0 && h_now_ms() > grace)
			break;
		if (h_now_ms() > deadline) {
			if (p->pid > 0) {
				kill(p->pid, SIGKILL);
				waitpid(p->pid, &p->status, 0);
				p->pid = 0;
				return -1;
			}
			break;
		}
		proc_pump(p, 20);
	}
	return p->status;
}

void h_proc_end(struct h_proc *p, const char *what)
{
	int st;

	h_proc_close_stdin(p);
	st = h_proc_finish(p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "%s: %s ended with %s; stderr: %.2000s", what, p->name, h_status_str(st),
	              p->err.data ? p->err.data : "");
}

void h_proc_cleanup(struct h_proc *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, &p->status, 0);
		p->pid = 0;
	}
	h_proc_close_stdin(p);
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	p->out_fd = p->err_fd = -1;
	free(p->out.data);
	free(p->err.data);
	free(p->truth);
	memset(&p->out, 0, sizeof p->out);
	memset(&p->err, 0, sizeof p->err);
	p->truth = NULL;
}

const char *h_status_str(int status)
{
	static char buf[64];

	if (status == -1)
		snprintf(buf, sizeof buf, "timed out (killed)");
	else if (WIFEXITED(status))
		snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(buf, sizeof buf, "status 0x%x", status);
	return buf;
}

/* -------------------------------------------------------------- daemon */

static int try_connect(const char *path)
{
	int fd = h_connect(path);
	if (fd >= 0)
		close(fd);
	return fd >= 0 ? 0 : fd;
}

void h_daemon_dirs(struct h_daemon *d, mode_t runtime_mode)
{
	memset(d, 0, sizeof *d);
	ck_assert_msg(base_dir[0] != '\0', "harness: base directory not made");
	snprintf(d->dir, sizeof d->dir, "%s/t.XXXXXX", base_dir);
	ck_assert_msg(mkdtemp(d->dir) != NULL, "mkdtemp: %s", strerror(errno));
	/* Others may need to reach the runtime dir (uid test); the dir itself
	 * holds nothing secret. */
	ck_assert_msg(chmod(d->dir, 0755) == 0, "chmod: %s", strerror(errno));
	snprintf(d->runtime, sizeof d->runtime, "%s/run", d->dir);
	snprintf(d->state, sizeof d->state, "%s/state", d->dir);
	snprintf(d->log, sizeof d->log, "%s/memtraced.log", d->dir);
	ck_assert_msg(mkdir(d->runtime, runtime_mode) == 0, "mkdir: %s", strerror(errno));
	ck_assert_msg(chmod(d->runtime, runtime_mode) == 0, "chmod: %s", strerror(errno));
	ck_assert_msg(mkdir(d->state, 0700) == 0, "mkdir: %s", strerror(errno));
}

/* Waits until d's control.sock accepts a connection; asserts with the end of
 * the daemon's log when it does not within H_START_MS or the daemon exits. */
static void daemon_await(struct h_daemon *d)
{
	char sock[700];
	long long deadline;
	int rc = -1;

	snprintf(sock, sizeof sock, "%s/control.sock", d->runtime);
	deadline = h_now_ms() + H_START_MS;
	while (h_now_ms() < deadline) {
		if ((rc = try_connect(sock)) == 0)
			break;
		if (!h_daemon_alive(d))
			break;
		h_sleep_ms(20);
	}
	if (rc != 0) {
		char *log = h_daemon_log_tail(d, 3000);
		bool alive = h_daemon_alive(d);
		ck_abort_msg("memtraced did not accept on %s within %d ms (%s; %s); log:\n%s", sock,
		             H_START_MS, strerror(-rc),
		             alive ? "still running" : h_status_str(d->status), log);
	}
}

void h_daemon_spawn(struct h_daemon *d, const char *const *opts)
{
	const char *argv[32];
	int fds[3], logfd, nullfd;
	size_t n = 0, own;
	char **env;
	struct h_spawn s;

	ck_assert_msg(!h_daemon_alive(d), "memtraced %ld still runs", (long)d->pid);
	argv[n++] = h_daemon_bin();
	argv[n++] = "--runtime-dir";
	argv[n++] = d->runtime;
	argv[n++] = "--state-dir";
	argv[n++] = d->state;
	for (size_t i = 0; opts != NULL && opts[i] != NULL; i++) {
		ck_assert_msg(n < 31, "harness: too many memtraced options");
		argv[n++] = opts[i];
	}
	argv[n] = NULL;

	/* Appended: a restarted daemon's log follows its predecessor's. */
	logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_msg(logfd >= 0 && nullfd >= 0, "open: %s", strerror(errno));
	memset(&s, 0, sizeof s);
	s.argv = argv;
	env = make_env(&s, &own);
	fds[0] = nullfd;
	fds[1] = logfd;
	fds[2] = logfd;
	d->pid = spawn(argv, env, H_NOUID, fds);
	free_env(env, own);
	close(logfd);
	close(nullfd);
	daemon_await(d);
}

void h_daemon_start_opts(struct h_daemon *d, const char *const *opts)
{
	h_daemon_dirs(d, 0700);
	h_daemon_spawn(d, opts);
}

void h_daemon_start(struct h_daemon *d)
{
	h_daemon_start_opts(d, NULL);
}

void h_daemon_stop(struct h_daemon *d)
{
	int st = h_daemon_signal(d, SIGTERM, 30000);
	char *log =
	    st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? NULL : h_daemon_log_tail(d, 2000);
	ck_assert_msg(log == NULL, "memtraced after SIGTERM: %s; log:\n%s",
	              st == -1 ? "did not exit within 30 s" : h_status_str(st), log);
}

bool h_daemon_alive(struct h_daemon *d)
{
	if (d->pid <= 0)
		return false;
	if (waitpid(d->pid, &d->status, WNOHANG) == d->pid) {
		d->pid = 0;
		return false;
	}
	return true;
}

int h_daemon_signal(struct h_daemon *d, int sig, int timeout_ms)
{
	long long deadline = h_now_ms() + timeout_ms;

	if (!h_daemon_alive(d))
		return d->status;
	kill(d->pid, sig);
	while (h_now_ms() < deadline) {
		if (!h_daemon_alive(d))
			return d->status;
		h_sleep_ms(10);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &d->status, 0);
	d->pid = 0;
	return -1;
}

void h_daemon_cleanup(struct h_daemon *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &d->status, 0);
		d->pid = 0;
	}
}

char *h_daemon_log_tail(const struct h_daemon *d, size_t max)
{
	struct h_buf b = {0};
	char buf[8192];
	ssize_t r;
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return h_strf("(no log: %s)", strerror(errno));
	while ((r = read(fd, buf, sizeof buf)) > 0)
		buf_add(&b, buf, (size_t)r);
	close(fd);
	if (b.len <= max) {
		char *s = h_strf("%s", buf_str(&b));
		free(b.data);
		return s;
	}
	char *s = h_strf("...%s", b.data + b.len - max);
	free(b.data);
	return s;
}

char *h_daemon_file(struct h_daemon *d, const char *stem)
{
	return h_strf("%s/%s.%d", d->dir, stem, d->nfiles++);
}

/* -------------------------------------------------------------- client */

void h_ctl_run(const struct h_daemon *d, uid_t uid, struct h_ctl *r, const char *const *args)
{
	const char *argv[40];
	size_t n = 0;
	struct h_spawn s;
	struct h_proc p;

	argv[n++] = h_client_bin();
	argv[n++] = "--runtime-dir";
	argv[n++] = d->runtime;
	for (size_t i = 0; args[i] != NULL && n < 39; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	memset(&s, 0, sizeof s);
	s.argv = argv;
	s.uid = uid;
	h_proc_start(&p, &s);
	h_proc_close_stdin(&p);
	int st = h_proc_finish(&p, 20000);
	memset(r, 0, sizeof *r);
	r->status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	r->out = h_strf("%s", buf_str(&p.out));
	r->err = h_strf("%s", buf_str(&p.err));
	r->json = cJSON_Parse(r->out);
	h_proc_cleanup(&p);
}

void h_ctl_free(struct h_ctl *r)
{
	free(r->out);
	free(r->err);
	cJSON_Delete(r->json);
	memset(r, 0, sizeof *r);
}

const char *h_ctl_error_code(const struct h_ctl *r)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
	return e != NULL ? h_json_str(e, "code") : NULL;
}

char *h_args_str(const char *const *args)
{
	char *s = h_strf("memtracectl");
	for (size_t i = 0; args[i] != NULL; i++) {
		char *n = h_strf("%s %s", s, args[i]);
		free(s);
		s = n;
	}
	return s;
}

void h_ctl_ok(const struct h_daemon *d, uid_t uid, struct h_ctl *r, const char *const *args)
{
	char *cmd = h_args_str(args);
	h_ctl_run(d, uid, r, args);
	ck_assert_msg(r->status == 0 && r->json != NULL,
	              "`%s` failed (exit %d): stdout: %.1500s stderr: %.1500s", cmd, r->status,
	              r->out, r->err);
	free(cmd);
}

void h_ctl_error_saying(const struct h_daemon *d, uid_t uid, const char *const *args,
                        const char *code, const char *text)
{
	struct h_ctl r;
	char *cmd = h_args_str(args);
	const char *got;

	h_ctl_run(d, uid, &r, args);
	got = h_ctl_error_code(&r);
	ck_assert_msg(r.status != 0 && got != NULL && strcmp(got, code) == 0 &&
	                  (text == NULL || strstr(r.out, text) != NULL),
	              "`%s`: expected error %s%s%s, got exit %d: %.1000s %.500s", cmd, code,
	              text != NULL ? " saying " : "", text != NULL ? text : "", r.status, r.out,
	              r.err);
	h_ctl_free(&r);
	free(cmd);
}

static char *check_live_cb(const cJSON *json, void *arg)
{
	const char *st = h_json_str(json, "state");
	(void)arg;
	return st != NULL && strcmp(st, "live") == 0 ? NULL : h_strf("not live yet");
}

void h_await_traced(const struct h_daemon *d, uid_t uid, long pid)
{
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	char *why = h_ctl_poll(d, uid, &r, check_live_cb, NULL, args);
	ck_assert_msg(why == NULL, "stats --pid %ld: %s", pid, why);
	h_ctl_free(&r);
}

void h_ctl_error(const struct h_daemon *d, uid_t uid, const char *const *args, const char *code)
{
	h_ctl_error_saying(d, uid, args, code, NULL);
}

char *h_ctl_poll(const struct h_daemon *d, uid_t uid, struct h_ctl *r, h_check_fn check, void *arg,
                 const char *const *args)
{
	long long deadline = h_now_ms() + H_POLL_MS;
	char *why = NULL;

	for (;;) {
		h_ctl_run(d, uid, r, args);
		free(why);
		if (r->status != 0)
			why = h_strf("memtracectl exited %d; stdout: %.1500s; stderr: %.1500s",
			             r->status, r->out, r->err);
		else if (r->json == NULL)
			why = h_strf("memtracectl printed no JSON: %.2000s", r->out);
		else
			why = check(r->json, arg);
		if (why == NULL || h_now_ms() >= deadline)
			return why;
		h_ctl_free(r);
		h_sleep_ms(100);
	}
}

/* --------------------------------------------------------------- truth */

static void truth_add_file(struct h_truth *t, const char *file)
{
	for (int i = 0; i < t->nfiles; i++)
		if (strcmp(t->files[i], file) == 0)
			return;
	t->files = realloc(t->files, (size_t)(t->nfiles + 1) * sizeof *t->files);
	if (t->files == NULL)
		abort();
	t->files[t->nfiles++] = h_strf("%s", file);
}

/* Splits s at tabs in place; returns the number of fields. */
static int split_tabs(char *s, char **f, int max)
{
	int n = 0;
	while (n < max) {
		f[n++] = s;
		s = strchr(s, '\t');
		if (s == NULL)
			break;
		*s++ = '\0';
	}
	return n;
}

static bool parse_ll(const char *s, long long *out)
{
	char *end;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && end != s && *end == '\0';
}

struct h_truth *h_truth_load(const char *path, char **why)
{
	struct h_buf b = {0};
	struct h_truth *t;
	char buf[8192], *line, *next;
	ssize_t r;
	bool ended = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*why = NULL;
	if (fd < 0) {
		*why = h_strf("open %s: %s", path, strerror(errno));
		return NULL;
	}
	while ((r = read(fd, buf, sizeof buf)) > 0)
		buf_add(&b, buf, (size_t)r);
	close(fd);
	t = calloc(1, sizeof *t);
	if (t == NULL || b.data == NULL)
		abort();
	for (line = b.data; line != NULL && *line != '\0' && *why == NULL; line = next) {
		char *f[3 + 4 + 3 * 64];
		int n;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		n = split_tabs(line, f, (int)(sizeof f / sizeof f[0]));
		if (strcmp(f[0], "truth") == 0) {
			continue;
		} else if (strcmp(f[0], "pid") == 0 && n == 2) {
			t->pid = atol(f[1]);
		} else if (strcmp(f[0], "meta") == 0 && n == 3) {
			long long v;
			if (!parse_ll(f[2], &v)) {
				*why = h_strf("bad meta value %s", f[2]);
				break;
			}
			t->meta = realloc(t->meta, (size_t)(t->nmeta + 1) * sizeof *t->meta);
			if (t->meta == NULL)
				abort();
			t->meta[t->nmeta].name = h_strf("%s", f[1]);
			t->meta[t->nmeta++].value = v;
		} else if (strcmp(f[0], "rec") == 0 && n >= 5) {
			struct h_rec rec;
			long long nf;
			memset(&rec, 0, sizeof rec);
			if (!parse_ll(f[1], &rec.bytes) || !parse_ll(f[2], &rec.count) ||
			    !parse_ll(f[4], &nf) || nf < 1 || n != 5 + 3 * nf) {
				*why = h_strf("bad rec line (%d fields)", n);
				break;
			}
			rec.optional = strcmp(f[3], "opt") == 0;
			rec.nframes = (int)nf;
			rec.f = calloc((size_t)nf, sizeof *rec.f);
			if (rec.f == NULL)
				abort();
			for (int j = 0; j < rec.nframes; j++) {
				rec.f[j].file = h_strf("%s", f[5 + 3 * j]);
				rec.f[j].line = atoi(f[6 + 3 * j]);
				rec.f[j].func = h_strf("%s", f[7 + 3 * j]);
				truth_add_file(t, rec.f[j].file);
			}
			t->recs = realloc(t->recs, (size_t)(t->nrecs + 1) * sizeof *t->recs);
			if (t->recs == NULL)
				abort();
			t->recs[t->nrecs++] = rec;
		} else if (strcmp(f[0], "churn") == 0 && n == 4) {
			struct h_rec *rec = t->nrecs > 0 ? &t->recs[t->nrecs - 1] : NULL;
			if (rec == NULL || !parse_ll(f[1], &rec->allocs) ||
			    !parse_ll(f[2], &rec->allocated) || !parse_ll(f[3], &rec->temporary)) {
				*why = h_strf("bad churn line");
				break;
			}
		} else if (strcmp(f[0], "end") == 0) {
			ended = true;
		} else {
			*why = h_strf("unknown line starting %.40s", f[0]);
		}
	}
	free(b.data);
	if (*why == NULL && !ended)
		*why = h_strf("%s: no \"end\" line (incomplete book)", path);
	if (*why != NULL) {
		h_truth_free(t);
		return NULL;
	}
	return t;
}

struct h_truth *h_truth_must(const char *path)
{
	char *why;
	struct h_truth *t = h_truth_load(path, &why);
	ck_assert_msg(t != NULL, "ground truth %s: %s", path, why);
	return t;
}

void h_truth_free(struct h_truth *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < t->nrecs; i++) {
		for (int j = 0; j < t->recs[i].nframes; j++) {
			free(t->recs[i].f[j].file);
			free(t->recs[i].f[j].func);
		}
		free(t->recs[i].f);
	}
	for (int i = 0; i < t->nmeta; i++)
		free(t->meta[i].name);
	for (int i = 0; i < t->nfiles; i++)
		free(t->files[i]);
	free(t->recs);
	free(t->meta);
	free(t->files);
	free(t);
}

long long h_truth_meta(const struct h_truth *t, const char *name, long long dflt)
{
	for (int i = 0; i < t->nmeta; i++)
		if (strcmp(t->meta[i].name, name) == 0)
			return t->meta[i].value;
	return dflt;
}

long long h_truth_bytes(const struct h_truth *t)
{
	long long s = 0;
	for (int i = 0; i < t->nrecs; i++)
		if (!t->recs[i].optional)
			s += t->recs[i].bytes;
	return s;
}

long long h_truth_count(const struct h_truth *t)
{
	long long s = 0;
	for (int i = 0; i < t->nrecs; i++)
		if (!t->recs[i].optional)
			s += t->recs[i].count;
	return s;
}

struct h_truth *h_truth_filter(const struct h_truth *t, const char *pattern, bool inclusive,
                               bool all_frames)
{
	struct h_truth *c = calloc(1, sizeof *c);

	if (c == NULL)
		abort();
	c->pid = t->pid;
	for (int i = 0; i < t->nrecs; i++) {
		const struct h_rec *r = &t->recs[i];
		bool match = false;
		for (int j = 0; j < (all_frames ? r->nframes : 1) && !match; j++)
			match = fnmatch(pattern, r->f[j].file, 0) == 0;
		if (match != inclusive)
			continue;
		struct h_rec copy = *r;
		copy.f = calloc((size_t)r->nframes, sizeof *copy.f);
		if (copy.f == NULL)
			abort();
		for (int j = 0; j < r->nframes; j++) {
			copy.f[j].file = h_strf("%s", r->f[j].file);
			copy.f[j].line = r->f[j].line;
			copy.f[j].func = h_strf("%s", r->f[j].func);
			truth_add_file(c, r->f[j].file);
		}
		c->recs = realloc(c->recs, (size_t)(c->nrecs + 1) * sizeof *c->recs);
		if (c->recs == NULL)
			abort();
		c->recs[c->nrecs++] = copy;
	}
	return c;
}

/* The last three components of a path: "tests/progs/sites.c". */
static const char *path_tail(const char *path)
{
	const char *p = path + strlen(path);
	int slashes = 0;

	while (p > path) {
		if (p[-1] == '/' && ++slashes == 3)
			break;
		p--;
	}
	while (strncmp(p, "./", 2) == 0)
		p += 2;
	while (strncmp(p, "../", 3) == 0)
		p += 3;
	return p;
}

bool h_file_matches(const char *reported, const char *truth_file)
{
	const char *tail = path_tail(truth_file);
	size_t rl, tl = strlen(tail);

	if (reported == NULL)
		return false;
	rl = strlen(reported);
	if (tl == 0 || rl < tl)
		return false;
	if (strcmp(reported + rl - tl, tail) != 0)
		return false;
	return rl == tl || reported[rl - tl - 1] == '/';
}

static bool is_cxx(const char *file)
{
	const char *dot = strrchr(file, '.');
	return dot != NULL && (strcmp(dot, ".cc") == 0 || strcmp(dot, ".cpp") == 0 ||
	                       strcmp(dot, ".cxx") == 0 || strcmp(dot, ".C") == 0);
}

bool h_func_matches(const char *reported, const char *truth_func, const char *truth_file)
{
	if (reported == NULL)
		return false;
	if (strcmp(reported, truth_func) == 0)
		return true;
	/* C++: __func__ is the bare name; memtrace may print it demangled with
	 * its parameters ("make_widgets()") or mangled ("_ZL12make_widgetsv"). */
	return is_cxx(truth_file) && strstr(reported, truth_func) != NULL;
}

bool h_is_program_file(const struct h_truth *t, const char *reported)
{
	for (int i = 0; reported != NULL && i < t->nfiles; i++)
		if (h_file_matches(reported, t->files[i]))
			return true;
	return false;
}

/* ---------------------------------------------------------------- JSON */

bool h_json_int(const cJSON *obj, const char *name, long long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsNumber(v))
		return false;
	*out = (long long)v->valuedouble;
	return true;
}

const char *h_json_str(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

const cJSON *h_list_find(const cJSON *list, long pid)
{
	const cJSON *procs = cJSON_GetObjectItemCaseSensitive(list, "processes");
	const cJSON *p;
	const cJSON *found = NULL;

	cJSON_ArrayForEach(p, procs)
	{
		long long v;
		if (h_json_int(p, "pid", &v) && v == pid) {
			/* Prefer the live session when a pid has several. */
			const char *st = h_json_str(p, "state");
			if (found == NULL || (st != NULL && strcmp(st, "live") == 0))
				found = p;
		}
	}
	return found;
}

char *h_json_brief(const cJSON *json, size_t max)
{
	char *s = json != NULL ? cJSON_PrintUnformatted(json) : NULL;
	char *r;

	if (s == NULL)
		return h_strf("(null)");
	if (strlen(s) > max)
		r = h_strf("%.*s...", (int)max, s);
	else
		r = h_strf("%s", s);
	cJSON_free(s);
	return r;
}

/* --------------------------------------------------------- comparisons */

const char *const h_key_names[] = {"lineno", "filename", "function", "traceback"};

bool h_rframe_get(const cJSON *f, struct h_rframe *out)
{
	out->file = h_json_str(f, "filename");
	out->func = h_json_str(f, "function");
	return out->file != NULL && h_json_int(f, "lineno", &out->line);
}

static const char *base(const char *path)
{
	const char *s = path != NULL ? strrchr(path, '/') : NULL;
	return s != NULL ? s + 1 : path != NULL ? path : "(null)";
}

/*
 * One key of an expected answer: what the books hold under it, and what the
 * answer reported for it. A `top` answer is checked against one book (side
 * 1); a `compare` answer against an older book (side 0) and a newer one
 * (side 1).
 */
struct exp_entry {
	const struct h_frame *frames; /* the key's frames (one unless traceback) */
	int nframes;
	long long size[2], count[2];
	bool optional; /* only optional records contribute */
	long long got_size, got_count, got_size_diff, got_count_diff;
	int seen;
};

struct exp_set {
	struct exp_entry *v;
	int n;
};

bool h_key_equal(enum h_key k, const struct h_frame *a, int na, const struct h_frame *b, int nb)
{
	switch (k) {
	case H_KEY_LINENO:
		return a->line == b->line && strcmp(a->file, b->file) == 0;
	case H_KEY_FILENAME:
		return strcmp(a->file, b->file) == 0;
	case H_KEY_FUNCTION:
		return strcmp(a->file, b->file) == 0 && strcmp(a->func, b->func) == 0;
	case H_KEY_TRACEBACK:
		if (na != nb)
			return false;
		for (int i = 0; i < na; i++)
			if (a[i].line != b[i].line || strcmp(a[i].file, b[i].file) != 0 ||
			    strcmp(a[i].func, b[i].func) != 0)
				return false;
		return true;
	}
	return false;
}

static char *exp_desc(enum h_key k, const struct exp_entry *e)
{
	char *s = NULL;

	switch (k) {
	case H_KEY_LINENO:
		return h_strf("%s:%d (%s)", base(e->frames[0].file), e->frames[0].line,
		              e->frames[0].func);
	case H_KEY_FILENAME:
		return h_strf("%s", e->frames[0].file);
	case H_KEY_FUNCTION:
		return h_strf("%s in %s", e->frames[0].func, base(e->frames[0].file));
	case H_KEY_TRACEBACK:
		for (int i = 0; i < e->nframes; i++) {
			char *n =
			    h_strf("%s%s%s:%d %s", s != NULL ? s : "", i > 0 ? " <- " : "",
			           base(e->frames[i].file), e->frames[i].line, e->frames[i].func);
			free(s);
			s = n;
		}
		return s;
	}
	return h_strf("?");
}

static void exp_add(struct exp_set *set, enum h_key k, const struct h_rec *r,
                    const struct h_frame *f, int nf, int side)
{
	for (int i = 0; i < set->n; i++) {
		struct exp_entry *e = &set->v[i];
		if (h_key_equal(k, e->frames, e->nframes, f, nf)) {
			e->size[side] += r->bytes;
			e->count[side] += r->count;
			e->optional = e->optional && r->optional;
			return;
		}
	}
	set->v = realloc(set->v, (size_t)(set->n + 1) * sizeof *set->v);
	if (set->v == NULL)
		abort();
	set->v[set->n] = (struct exp_entry){.frames = f, .nframes = nf, .optional = r->optional};
	set->v[set->n].size[side] = r->bytes;
	set->v[set->n].count[side] = r->count;
	set->n++;
}

/* Adds what book t holds under each key to side `side` of set, as
 * tracemalloc groups traces: by the first frame's key, by every frame's
 * with cumulative, by the whole stack for traceback. Optional records count
 * only when with_optional. */
static void exp_add_book(struct exp_set *set, const struct h_truth *t, int side, enum h_key key,
                         bool cumulative, bool with_optional)
{
	for (int i = 0; i < t->nrecs; i++) {
		const struct h_rec *r = &t->recs[i];
		if (r->optional && !with_optional)
			continue;
		if (key == H_KEY_TRACEBACK) {
			exp_add(set, key, r, r->f, r->nframes, side);
			continue;
		}
		for (int j = 0; j < (cumulative ? r->nframes : 1); j++) {
			bool dup = false;
			/* cumulative counts a trace once per distinct key */
			for (int k = 0; k < j && !dup; k++)
				dup = h_key_equal(key, &r->f[k], 1, &r->f[j], 1);
			if (!dup)
				exp_add(set, key, r, &r->f[j], 1, side);
		}
	}
}

static bool rframe_matches(enum h_key k, const struct h_rframe *rf, const struct h_frame *f)
{
	if (!h_file_matches(rf->file, f->file))
		return false;
	switch (k) {
	case H_KEY_LINENO:
		return rf->line == f->line;
	case H_KEY_FILENAME:
		return true;
	case H_KEY_FUNCTION:
		return h_func_matches(rf->func, f->func, f->file);
	case H_KEY_TRACEBACK:
		return rf->line == f->line && h_func_matches(rf->func, f->func, f->file);
	}
	return false;
}

static char *rtrace_desc(const cJSON *tb)
{
	char *s = NULL;
	const cJSON *f;
	int i = 0;

	cJSON_ArrayForEach(f, tb)
	{
		struct h_rframe rf;
		char *n;
		if (!h_rframe_get(f, &rf))
			rf = (struct h_rframe){"(bad frame)", 0, ""};
		n = h_strf("%s%s%s:%lld %s", s != NULL ? s : "", i++ > 0 ? " <- " : "",
		           base(rf.file), rf.line, rf.func != NULL ? rf.func : "?");
		free(s);
		s = n;
		if (i == 6) {
			n = h_strf("%s <- ...", s);
			free(s);
			s = n;
			break;
		}
	}
	return s != NULL ? s : h_strf("(empty traceback)");
}

/* The expected key a reported traceback (ntb frames) is under: the one
 * whose frames all match, the longest such for traceback; NULL if none. */
static struct exp_entry *exp_match(const struct exp_set *set, enum h_key key, const cJSON *tb,
                                   int ntb)
{
	struct exp_entry *best = NULL;

	for (int i = 0; i < set->n; i++) {
		struct exp_entry *x = &set->v[i];
		bool ok = x->nframes <= (key == H_KEY_TRACEBACK ? ntb : 1);
		for (int j = 0; ok && j < x->nframes; j++) {
			struct h_rframe rf;
			ok = h_rframe_get(cJSON_GetArrayItem(tb, j), &rf) &&
			     rframe_matches(key, &rf, &x->frames[j]);
		}
		if (ok && (best == NULL || x->nframes > best->nframes))
			best = x;
	}
	return best;
}

char *h_check_top(const cJSON *json, const struct h_expect *e)
{
	const struct h_truth *files = e->files != NULL ? e->files : e->t;
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(json, "stats");
	const cJSON *st, *cum = cJSON_GetObjectItemCaseSensitive(json, "cumulative");
	struct exp_set exp = {NULL, 0};
	long long prev_size = -1, prev_count = -1, ts, tc, cs;
	const char *key = h_json_str(json, "key");
	char *why = NULL, *others = NULL;
	int idx = 0, nother = 0;

	if (!cJSON_IsArray(stats) || !h_json_int(json, "total_size", &ts) ||
	    !h_json_int(json, "total_count", &tc) || !h_json_int(json, "count_stats", &cs)) {
		char *b = h_json_brief(json, 600);
		why = h_strf("answer lacks stats/total_size/total_count/count_stats: %s", b);
		free(b);
		return why;
	}
	if (key == NULL || strcmp(key, h_key_names[e->key]) != 0)
		h_append(&why, "\"key\" is %s, expected %s", key ? key : "absent",
		         h_key_names[e->key]);
	if (!cJSON_IsBool(cum) || cJSON_IsTrue(cum) != e->cumulative)
		h_append(&why, "\"cumulative\" is not %s", e->cumulative ? "true" : "false");

	exp_add_book(&exp, e->t, 1, e->key, e->cumulative, true);
	cJSON_ArrayForEach(st, stats)
	{
		const cJSON *tb = cJSON_GetObjectItemCaseSensitive(st, "traceback");
		long long size, count;
		struct h_rframe rf0;
		int ntb = cJSON_GetArraySize(tb);

		idx++;
		if (!h_json_int(st, "size", &size) || !h_json_int(st, "count", &count) ||
		    !cJSON_IsArray(tb)) {
			h_append(&why, "stats[%d] lacks size/count/traceback", idx - 1);
			continue;
		}
		if (prev_size >= 0 &&
		    (size > prev_size || (size == prev_size && count > prev_count)))
			h_append(&why,
			         "stats[%d] (size %lld count %lld) is not sorted after "
			         "size %lld count %lld",
			         idx - 1, size, count, prev_size, prev_count);
		prev_size = size;
		prev_count = count;
		if (ntb == 0 || !h_rframe_get(cJSON_GetArrayItem(tb, 0), &rf0)) {
			if (ntb > 0)
				h_append(&why, "stats[%d] has a malformed frame", idx - 1);
			continue;
		}
		if (!h_is_program_file(files, rf0.file)) {
			/* not the program's: libc, loader, libstdc++; kept for the
			 * message, should anything differ */
			if (nother++ < 6) {
				char *d = rtrace_desc(tb);
				h_append(&others, "%s: size %lld count %lld", d, size, count);
				free(d);
			}
			continue;
		}
		if ((e->key == H_KEY_FILENAME || e->key == H_KEY_FUNCTION) && rf0.line != 0)
			h_append(&why, "%s entry %s has lineno %lld, expected 0",
			         h_key_names[e->key], base(rf0.file), rf0.line);

		struct exp_entry *best = exp_match(&exp, e->key, tb, ntb);
		if (best == NULL) {
			char *d = rtrace_desc(tb);
			h_append(&why,
			         "unexpected entry %s: size %lld count %lld (the program's "
			         "book has no such site)",
			         d, size, count);
			free(d);
			continue;
		}
		if (best->seen && e->key != H_KEY_TRACEBACK) {
			char *d = exp_desc(e->key, best);
			h_append(&why, "duplicate entries for %s", d);
			free(d);
		}
		if (e->key == H_KEY_LINENO &&
		    !h_func_matches(rf0.func, best->frames[0].func, best->frames[0].file)) {
			char *d = exp_desc(e->key, best);
			h_append(&why, "%s reported with function \"%s\"", d,
			         rf0.func ? rf0.func : "(none)");
			free(d);
		}
		best->seen++;
		best->got_size += size;
		best->got_count += count;
	}
	for (int i = 0; i < exp.n; i++) {
		struct exp_entry *x = &exp.v[i];
		char *d = exp_desc(e->key, x);
		if (x->seen) {
			if (x->got_size != x->size[1] || x->got_count != x->count[1])
				h_append(&why,
				         "%s: expected size %lld count %lld, reported size %lld "
				         "count %lld",
				         d, x->size[1], x->count[1], x->got_size, x->got_count);
		} else if ((x->size[1] != 0 || x->count[1] != 0) && !x->optional) {
			h_append(&why, "%s: expected size %lld count %lld, not reported", d,
			         x->size[1], x->count[1]);
		}
		free(d);
	}
	if (cs < idx)
		h_append(&why, "count_stats %lld < number of stats %d", cs, idx);
	if (why != NULL && others != NULL)
		h_append(&why, "(entries not in the program's files, not compared: %d)\n    %s",
		         nother, others);
	free(others);
	free(exp.v);
	return why;
}

char *h_check_top_fn(const cJSON *json, void *expect)
{
	return h_check_top(json, expect);
}

static long long abs_ll(long long v)
{
	return v < 0 ? -v : v;
}

char *h_check_compare(const cJSON *json, const struct h_truth *told, const struct h_truth *tnew,
                      enum h_key key, bool cum)
{
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(json, "stats");
	const cJSON *cj = cJSON_GetObjectItemCaseSensitive(json, "cumulative");
	const char *k = h_json_str(json, "key");
	const cJSON *st;
	struct exp_set exp = {NULL, 0};
	char *why = NULL;
	long long prev[4] = {-1, -1, -1, -1}, sum_s = 0, sum_sd = 0, sum_c = 0, sum_cd = 0;
	int idx = -1;

	if (!cJSON_IsArray(stats)) {
		char *b = h_json_brief(json, 600);
		why = h_strf("answer has no \"stats\" array: %s", b);
		free(b);
		return why;
	}
	if (k == NULL || strcmp(k, h_key_names[key]) != 0)
		h_append(&why, "\"key\" is %s, expected %s", k ? k : "absent", h_key_names[key]);
	if (!cJSON_IsBool(cj) || cJSON_IsTrue(cj) != cum)
		h_append(&why, "\"cumulative\" is not %s", cum ? "true" : "false");

	exp_add_book(&exp, told, 0, key, cum, false);
	exp_add_book(&exp, tnew, 1, key, cum, false);
	cJSON_ArrayForEach(st, stats)
	{
		const cJSON *tb = cJSON_GetObjectItemCaseSensitive(st, "traceback");
		long long s, sd, c, cd;
		struct h_rframe rf0;
		int ntb = cJSON_GetArraySize(tb);

		idx++;
		if (!h_json_int(st, "size", &s) || !h_json_int(st, "size_diff", &sd) ||
		    !h_json_int(st, "count", &c) || !h_json_int(st, "count_diff", &cd) ||
		    !cJSON_IsArray(tb)) {
			h_append(&why, "stats[%d] lacks size/size_diff/count/count_diff/traceback",
			         idx);
			continue;
		}
		sum_s += s;
		sum_sd += sd;
		sum_c += c;
		sum_cd += cd;
		/* compare_to: sorted by (abs(size_diff), size, abs(count_diff),
		 * count), largest first */
		{
			long long cur[4] = {abs_ll(sd), s, abs_ll(cd), c};
			int cmp = 0;
			for (int i = 0; i < 4 && cmp == 0 && prev[0] >= 0; i++)
				cmp = cur[i] < prev[i] ? -1 : cur[i] > prev[i] ? 1 : 0;
			if (cmp > 0)
				h_append(
				    &why,
				    "stats[%d] (|size_diff| %lld size %lld |count_diff| %lld count "
				    "%lld) is not in compare_to order after (%lld %lld %lld %lld)",
				    idx, cur[0], cur[1], cur[2], cur[3], prev[0], prev[1], prev[2],
				    prev[3]);
			memcpy(prev, cur, sizeof prev);
		}
		if (key != H_KEY_TRACEBACK && ntb != 1)
			h_append(&why, "stats[%d]: a %s statistic has %d frames, expected 1", idx,
			         h_key_names[key], ntb);
		if (ntb == 0 || !h_rframe_get(cJSON_GetArrayItem(tb, 0), &rf0)) {
			h_append(&why, "stats[%d] has no or a malformed first frame", idx);
			continue;
		}
		if (!h_is_program_file(tnew, rf0.file) && !h_is_program_file(told, rf0.file))
			continue; /* libc, the loader: not the program's, never compared */
		if ((key == H_KEY_FILENAME || key == H_KEY_FUNCTION) && rf0.line != 0)
			h_append(&why, "%s statistic %s has lineno %lld, expected 0",
			         h_key_names[key], base(rf0.file), rf0.line);

		struct exp_entry *best = exp_match(&exp, key, tb, ntb);
		if (best == NULL) {
			char *d = rtrace_desc(tb);
			h_append(&why,
			         "unexpected statistic %s: size %lld (%+lld) count %lld (%+lld); "
			         "the books have no such key",
			         d, s, sd, c, cd);
			free(d);
			continue;
		}
		if (best->seen && key != H_KEY_TRACEBACK) {
			char *d = exp_desc(key, best);
			h_append(&why, "two statistics for %s", d);
			free(d);
		}
		if (key == H_KEY_LINENO &&
		    !h_func_matches(rf0.func, best->frames[0].func, best->frames[0].file)) {
			char *d = exp_desc(key, best);
			h_append(&why, "%s reported with function \"%s\"", d,
			         rf0.func ? rf0.func : "(none)");
			free(d);
		}
		best->seen++;
		best->got_size += s;
		best->got_size_diff += sd;
		best->got_count += c;
		best->got_count_diff += cd;
	}
	for (int i = 0; i < exp.n; i++) {
		struct exp_entry *x = &exp.v[i];
		char *d = exp_desc(key, x);
		long long os = x->size[0], oc = x->count[0], ns = x->size[1], nc = x->count[1];
		bool held = os != 0 || oc != 0 || ns != 0 || nc != 0;
		if (!x->seen && held)
			h_append(&why,
			         "%s: expected size %lld (%+lld) count %lld (%+lld), not reported",
			         d, ns, ns - os, nc, nc - oc);
		else if (x->seen && !held)
			h_append(
			    &why,
			    "%s: held in neither snapshot, yet reported: size %lld (%+lld) count "
			    "%lld (%+lld)",
			    d, x->got_size, x->got_size_diff, x->got_count, x->got_count_diff);
		else if (x->seen && (x->got_size != ns || x->got_size_diff != ns - os ||
		                     x->got_count != nc || x->got_count_diff != nc - oc))
			h_append(&why,
			         "%s: expected size %lld (%+lld) count %lld (%+lld), reported size "
			         "%lld (%+lld) count %lld (%+lld)",
			         d, ns, ns - os, nc, nc - oc, x->got_size, x->got_size_diff,
			         x->got_count, x->got_count_diff);
		free(d);
	}
	if (!cum) {
		/* with --limit 0 (count_stats == the number of statistics) the
		 * totals are the sums of the statistics */
		long long ts, tsd, tc, tcd, cs;
		if (!h_json_int(json, "total_size", &ts) ||
		    !h_json_int(json, "total_size_diff", &tsd) ||
		    !h_json_int(json, "total_count", &tc) ||
		    !h_json_int(json, "total_count_diff", &tcd) ||
		    !h_json_int(json, "count_stats", &cs))
			h_append(&why, "answer lacks total_size/total_size_diff/total_count/"
			               "total_count_diff/count_stats");
		else if (cs == cJSON_GetArraySize(stats) &&
		         (ts != sum_s || tsd != sum_sd || tc != sum_c || tcd != sum_cd))
			h_append(&why,
			         "totals %lld (%+lld) / %lld (%+lld) are not the sums of the "
			         "statistics %lld (%+lld) / %lld (%+lld)",
			         ts, tsd, tc, tcd, sum_s, sum_sd, sum_c, sum_cd);
	}
	free(exp.v);
	return why;
}

int h_top_split(const cJSON *json, const struct h_truth *t, long long *prog_size,
                long long *prog_count, long long *other_size, long long *other_count)
{
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(json, "stats");
	const cJSON *st;

	*prog_size = *prog_count = *other_size = *other_count = 0;
	if (!cJSON_IsArray(stats))
		return -1;
	cJSON_ArrayForEach(st, stats)
	{
		const cJSON *tb = cJSON_GetObjectItemCaseSensitive(st, "traceback");
		long long size, count;
		struct h_rframe rf;
		if (!h_json_int(st, "size", &size) || !h_json_int(st, "count", &count))
			return -1;
		if (cJSON_GetArraySize(tb) > 0 && h_rframe_get(cJSON_GetArrayItem(tb, 0), &rf) &&
		    h_is_program_file(t, rf.file)) {
			*prog_size += size;
			*prog_count += count;
		} else {
			*other_size += size;
			*other_count += count;
		}
	}
	return 0;
}

/* -------------------------------------------------------- raw sockets */

int h_connect(const char *path)
{
	return ctlwire_connect(path);
}

int h_send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int h_send_fds(int sock, const void *buf, size_t len, const int *fds, int n)
{
	size_t space = CMSG_SPACE(sizeof(int) * (size_t)n);
	char *ctl = calloc(1, space);
	struct iovec iov = {(void *)buf, len};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = space};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	ssize_t w;
	int err;

	if (ctl == NULL)
		return -ENOMEM;
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	w = sendmsg(sock, &msg, MSG_NOSIGNAL);
	err = errno;
	free(ctl);
	if (w < 0)
		return -err;
	return h_send_all(sock, (const char *)buf + w, len - (size_t)w);
}

size_t h_hello_frame(void *buf, size_t cap, const char *exe, const char *cmdline,
                     size_t cmdline_len)
{
	struct proto_hello h = {.version = PROTO_VERSION,
	                        .nframes = 32,
	                        .pid = (uint32_t)getpid(),
	                        .exe = exe,
	                        .exe_len = (uint32_t)strlen(exe),
	                        .cmdline = cmdline,
	                        .cmdline_len = (uint32_t)cmdline_len};
	ssize_t n = proto_hello_encode(buf, cap, &h);
	return n > 0 ? (size_t)n : 0;
}

int h_region_empty(void)
{
	int fd = memfd_create("region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	char *map;

	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)SHM_SIZE) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		goto err;
	map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto err;
	((struct shm_header *)map)->magic = SHM_MAGIC;
	((struct shm_header *)map)->version = PROTO_VERSION;
	munmap(map, SHM_SIZE);
	return fd;
err:
	close(fd);
	return -1;
}

int h_wait_closed(int fd, int timeout_ms)
{
	long long deadline = h_now_ms() + timeout_ms;

	for (;;) {
		long long left = deadline - h_now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char buf[4096];
		if (left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
			return 1;
	}
}

int h_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	long long deadline = h_now_ms() + timeout_ms;
	size_t n = 0;

	for (;;) {
		long long left = deadline - h_now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		char c;
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		ssize_t r = recv(fd, &c, 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			buf[n < cap ? n : cap - 1] = '\0';
			return n > 0 ? (int)n : 0;
		}
		if (c == '\n') {
			buf[n < cap ? n : cap - 1] = '\0';
			return (int)n + 1;
		}
		if (n + 1 < cap)
			buf[n++] = c;
	}
}

TCase *h_tcase(Suite *s, const char *name, int timeout_s, void (*setup)(void),
               void (*teardown)(void))
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout_s);
	suite_add_tcase(s, tc);
	return tc;
}

static int require(const char *name, const char *path, int mode)
{
	if (access(path, mode) == 0)
		return 0;
	fprintf(stderr, "%s: %s: %s\n", name, path, strerror(errno));
	return -1;
}

int h_run_suite(const char *name, Suite *s, const char *const *progs)
{
	int failed, missing = 0;
	SRunner *sr;

	/* Our own writes to closed sockets must fail, not kill us; the harness
	 * restores the default for every process it starts. */
	signal(SIGPIPE, SIG_IGN);
	missing |= require(name, h_daemon_bin(), X_OK);
	missing |= require(name, h_client_bin(), X_OK);
	missing |= require(name, h_agent_lib(), R_OK);
	for (size_t i = 0; progs != NULL && progs[i] != NULL; i++) {
		char *p = h_prog(progs[i]);
		missing |= require(name, p, X_OK);
		free(p);
	}
	if (missing) {
		fprintf(stderr, "%s: build the binaries first (make check builds them)\n", name);
		return 99;
	}
	if (h_base_init() < 0) {
		fprintf(stderr, "%s: mkdtemp: %s\n", name, strerror(errno));
		return 99;
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_VERBOSE);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (failed == 0)
		h_base_remove();
	else
		printf("%s: kept %s (daemon logs, books, databases) for the failures above\n", name,
		       h_base_dir());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* -------------------------------------------------------------- users */

/* Runs argv (a system tool), quietly; its exit status, or -1. */
static int run_quiet(const char *const *argv)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* An id free both as a uid and as a gid, from the system range down. */
static long free_id(void)
{
	for (long id = 999; id >= 200; id--)
		if (getpwuid((uid_t)id) == NULL && getgrgid((gid_t)id) == NULL)
			return id;
	return -1;
}

uid_t h_attacker_uid(void)
{
	static uid_t cached = H_NOUID;
	struct passwd *pw;

	if (cached != H_NOUID)
		return cached;
	if (geteuid() != 0)
		return H_NOUID;
	pw = getpwnam(H_ATTACKER_NAME);
	if (pw == NULL) {
		long id = free_id();
		if (id > 0) {
			char num[24];
			snprintf(num, sizeof num, "%ld", id);
			const char *gadd[] = {"/usr/sbin/groupadd", "-g", num, H_ATTACKER_NAME,
			                      NULL};
			const char *uadd[] = {"/usr/sbin/useradd",
			                      "-u",
			                      num,
			                      "-g",
			                      num,
			                      "-M",
			                      "-d",
			                      "/nonexistent",
			                      "-s",
			                      "/usr/sbin/nologin",
			                      H_ATTACKER_NAME,
			                      NULL};
			/* Another test binary may be making it at the same time:
			 * whoever loses finds it made. */
			if (run_quiet(gadd) == 0)
				run_quiet(uadd);
		}
		pw = getpwnam(H_ATTACKER_NAME);
	}
	/* Only an account whose gid is its uid number, as h_proc_start
	 * switches to. */
	cached = pw != NULL && pw->pw_uid != 0 && (gid_t)pw->pw_uid == pw->pw_gid ? pw->pw_uid
	                                                                          : H_NOBODY;
	return cached;
}

int h_become_attacker(void)
{
	uid_t uid = h_attacker_uid();

	if (uid == H_NOUID)
		return -EPERM;
	if (setgroups(0, NULL) < 0 || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
	    setresuid(uid, uid, uid) < 0)
		return -errno;
	return 0;
}

/* ------------------------------------------------------------ pages */

char *h_command_out(const char *cmd, const char *hint)
{
	FILE *f = popen(cmd, "r");
	char buf[8192], *out = h_strf("%s", "");
	size_t n;

	ck_assert_msg(f != NULL, "cannot run %s", cmd);
	while ((n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
		buf[n] = '\0';
		char *more = h_strf("%s%s", out, buf);
		free(out);
		out = more;
	}
	int st = pclose(f);
	ck_assert_msg(st == 0, "%s: exit status %d%s:\n%.2000s", cmd, st, hint, out);
	return out;
}

char *h_chromium(const struct h_daemon *d, const char *url, const char *out, int w, int h,
                 int budget_ms)
{
	static int profiles; /* a fresh profile each time: no cookie kept */
	char budget[48] = "";

	/* The URL goes to the shell in single quotes. */
	ck_assert_msg(strchr(url, '\'') == NULL && strchr(out, '\'') == NULL, "bad URL %s", url);
	if (budget_ms > 0)
		snprintf(budget, sizeof budget, "--virtual-time-budget=%d ", budget_ms);
	char *cmd =
	    h_strf("HOME=%s timeout 120 chromium --headless --no-sandbox --disable-gpu "
	           "--hide-scrollbars --user-data-dir=%s/chromium.%d --window-size=%d,%d %s'%s' "
	           "'%s' 2>/dev/null",
	           d->dir, d->dir, ++profiles, w, h, budget, out, url);
	char *dom = h_command_out(cmd, " (is Debian's chromium installed?)");
	free(cmd);
	return dom;
}

int h_rendered_frames(const char *dom, struct h_fframe *out, int max)
{
	int n = 0;
	for (const char *p = dom; n < max && (p = strstr(p, "class=\"frame")) != NULL; p++) {
		const char *end = strchr(p, '>'), *q;
		if (end == NULL)
			break;
		struct h_fframe *f = &out[n];
		memset(f, 0, sizeof *f);
		if ((q = strstr(p, "data-name=\"")) != NULL && q < end) {
			q += 11;
			size_t k = 0;
			while (q < end && *q != '"' && k + 1 < sizeof f->name)
				f->name[k++] = *q++;
			f->name[k] = '\0';
		}
		if ((q = strstr(p, "data-value=\"")) != NULL && q < end)
			f->value = atof(q + 12);
		if ((q = strstr(p, "data-delta=\"")) != NULL && q < end) {
			f->delta = atof(q + 12);
			f->has_delta = true;
		}
		if ((q = strstr(p, "width: ")) != NULL && q < end)
			f->width = atof(q + 7);
		n++;
	}
	return n;
}

const struct h_fframe *h_frame_named(const struct h_fframe *f, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(f[i].name, name) == 0)
			return &f[i];
	return NULL;
}

void h_assert_widths(const struct h_fframe *f, int n, const char *const *funcs,
                     const long long *bytes, int nf, const char *what)
{
	const struct h_fframe *all = h_frame_named(f, n, "all");
	ck_assert_msg(all != NULL && all->width > 100 && all->value > 0, "%s: no top frame", what);
	for (int i = 0; i < nf; i++) {
		const struct h_fframe *x = h_frame_named(f, n, funcs[i]);
		ck_assert_msg(x != NULL, "%s: %s is not drawn", what, funcs[i]);
		ck_assert_msg(x->value == (double)bytes[i],
		              "%s: %s drawn for %.0f, the book says %lld", what, funcs[i], x->value,
		              bytes[i]);
		double want = all->width * (double)bytes[i] / all->value;
		double off = x->width - want;
		ck_assert_msg(off <= 1.0 && off >= -1.0,
		              "%s: %s is %.2f px wide, %.2f px for its %lld of %.0f bytes", what,
		              funcs[i], x->width, want, bytes[i], all->value);
	}
}
