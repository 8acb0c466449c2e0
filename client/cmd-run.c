/*
 * cmd-run.c - `memtracectl run -- PROG ARGS...`: start a program traced.
 *
 * The agent is put first in PROG's LD_PRELOAD and PROG is started as a child,
 * so the traced process is that child's pid from its first allocation on
 * (exec keeps the pid). memtracectl stays as the parent only to wait: it
 * ignores SIGINT and SIGQUIT meanwhile, as system(3) does, so Ctrl-C reaches
 * the program alone and memtracectl lives to report how it ended.
 *
 * With --top N it then asks memtraced what the program still held when it
 * ended - its leaks, as heaptrack prints after a run. The daemon learns of
 * the end only when the agent's socket closes and it has taken in every event
 * sent before, which can be a little after waitpid returns here, so the
 * client waits for the session to say "exited" first. That report is an
 * extra: it goes to stderr, or to the file of -o, never to stdout, which is
 * the program's (a pipeline reading the program's output must get that
 * alone); whatever goes wrong with it is said on stderr, and memtracectl
 * still exits with the program's status.
 *
 * A statically linked PROG has no dynamic loader, so nothing reads
 * LD_PRELOAD and the agent never enters it: memtracectl reads PROG's program
 * headers first and says so in one line, then runs it all the same.
 */
#include "client.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"
#include "xalloc.h"

#ifndef PKGLIBDIR
#define PKGLIBDIR "/usr/local/lib/memtrace"
#endif

#define AGENT_NAME "libmemtrace.so"
/* Where libtool leaves the agent in a build tree, from client/memtracectl. */
#define AGENT_BUILD_PATH "/../agent/.libs/" AGENT_NAME

/* Exit status when PROG could not be started, as a shell's "not found". */
#define RUN_EXIT_EXEC 127

/* How long --top waits for the daemon to see PROG's end, and how often it
 * asks. A session the daemon has never heard of after RUN_UNKNOWN_WAIT_MS was
 * never traced (a static binary, an agent that could not connect): the
 * agent's first message goes out before main, so it cannot be that late. */
#define RUN_EXIT_WAIT_MS    10000
#define RUN_UNKNOWN_WAIT_MS 2000
#define RUN_POLL_MS         50
/* How long --pid-file waits for the daemon to know PROG (its agent's first
 * message), and how often it asks. */
#define RUN_KNOWN_WAIT_MS 5000
#define RUN_KNOWN_POLL_MS 5

static int cmd_run_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_run_entry = {
    .name = "run",
    .usage = "[--agent PATH] [--pid-file FILE] [--top N [-o FILE]] -- PROG [ARGS...]",
    .summary = "start a program with the agent preloaded",
    .help = "Start PROG with the memtrace agent preloaded (put first in LD_PRELOAD),\n"
            "so memtraced traces it from its first allocation. memtracectl waits for\n"
            "PROG and exits with its exit status: 128+N when signal N killed it, 127\n"
            "when it could not be started. Ctrl-C and Ctrl-\\ go to PROG.\n\n"
            "With --top N, once PROG has ended, print the N sites that allocated most\n"
            "of what it still held at exit - its leaks - as 'top --pid' prints them\n"
            "(JSON, or --table), on stderr or, with -o FILE, into FILE: stdout is\n"
            "PROG's alone. memtracectl waits up to 10 s for memtraced to see the\n"
            "end; a report that cannot be had is explained on stderr, and the exit\n"
            "status is still PROG's.\n\n"
            "With --runtime-dir, or --socket, PROG's agent is pointed at the same\n"
            "daemon through MEMTRACE_RUNTIME_DIR (for --socket: the socket's directory).\n\n"
            "A statically linked PROG cannot load the agent: memtracectl says so in\n"
            "one line and runs it untraced.\n\n"
            "Every process PROG starts is traced too, each one a process of its own\n"
            "in 'list', with its exit snapshot. When PROG is a wrapper script (a\n"
            "pyenv shim, a launcher) that runs the real program with exec, set\n"
            "MEMTRACE_FOLLOW_FORK=0 to trace that program alone.\n\n"
            "Options:\n"
            "  --agent PATH        the agent library; default: $MEMTRACE_AGENT, else\n"
            "                      ../agent/.libs/" AGENT_NAME " from this program's\n"
            "                      directory when it runs from a build tree, else\n"
            "                      " PKGLIBDIR "/" AGENT_NAME "\n"
            "  --top N             after PROG ends, print its N largest leak sites\n"
            "                      (0 = all) on stderr\n"
            "  -o, --output FILE   write that report into FILE instead; FILE is\n"
            "                      created (or emptied) before PROG starts\n"
            "  --pid-file FILE     write PROG's pid (its pid in 'list', for --pid)\n"
            "                      into FILE, a line, once memtraced knows PROG (at\n"
            "                      once with no daemon, at most 5 s after it\n"
            "                      started): a file made beside it is renamed to\n"
            "                      FILE (whatever was there is replaced, never\n"
            "                      opened); it stays after PROG ends\n",
    /* The first operand ends the options: PROG's own options are PROG's. */
    .args =
        {
            .options = (const struct args_option[]){{"agent", 0, ARGS_PATH},
                                                    {"top", 0, ARGS_COUNT},
                                                    {"output", 'o', ARGS_FILE},
                                                    {"pid-file", 0, ARGS_FILE},
                                                    {NULL}},
            .lower = 1,
            .upper = -1,
            .missing = "run needs a program: memtracectl run -- PROG [ARGS...]",
        },
    .exec = cmd_run_exec,
};

/*
 * The agent library, as an absolute path so that it still loads after PROG
 * changes directory: --agent, else $MEMTRACE_AGENT, else the build tree's
 * (when this memtracectl runs from one), else the installed one. Returns 0
 * with a new string in *out, or the reported exit status.
 */
int client_find_agent(struct client *c, const char *opt, char **out)
{
	char self[PATH_MAX], real[PATH_MAX];
	const char *path, *from;
	char *build = NULL;
	ssize_t n;
	int rc;

	*out = NULL;
	if (opt != NULL) {
		path = opt;
		from = "--agent";
	} else if ((path = getenv("MEMTRACE_AGENT")) != NULL && path[0] != '\0') {
		from = "MEMTRACE_AGENT";
	} else {
		path = PKGLIBDIR "/" AGENT_NAME;
		from = "the installed agent";
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n > 0) {
			self[n] = '\0';
			char *slash = strrchr(self, '/');
			if (slash != NULL) {
				*slash = '\0';
				build = xasprintf("%s" AGENT_BUILD_PATH, self);
				if (access(build, R_OK) == 0) {
					path = build;
					from = "the build tree's agent";
				}
			}
		}
	}
	if (realpath(path, real) == NULL || access(real, R_OK) != 0) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "agent_not_found", "cannot use %s %s: %s",
		                  from, path, strerror(errno));
		goto out;
	}
	/* ld.so splits LD_PRELOAD at blanks and colons: such a path cannot be said. */
	if (strpbrk(real, ": \t") != NULL) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "agent_not_found",
		                  "the agent's path %s contains a colon or blank, which "
		                  "LD_PRELOAD cannot express",
		                  real);
		goto out;
	}
	*out = xstrdup(real);
	rc = 0;
out:
	free(build);
	return rc;
}

/* `path` made absolute against the working directory, without resolving it
 * (the directory need not exist yet). */
static char *run_absolute(const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return xstrdup(path);
	return xasprintf("%s/%s", cwd, path);
}

/* The directory part of `path`, "." when there is none. */
static char *run_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	while (slash > path && slash[-1] == '/')
		slash--;
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

/*
 * PROG's environment, set here in the parent: memtracectl execs nothing
 * itself, and a failure is reported before anything has started.
 * LD_PRELOAD keeps what was there, after the agent. MEMTRACE_RUNTIME_DIR is
 * set only when the user named a daemon; otherwise PROG's agent applies the
 * same paths.h rules this client did. MEMTRACE_ROOT goes: it names the
 * process that MEMTRACE_FOLLOW_FORK=0 traces (agent/lineage.h), and that is
 * PROG, even when memtracectl runs under an agent and a traced process itself.
 */
static int run_environment(struct client *c, const char *agent)
{
	const char *old = getenv("LD_PRELOAD");
	char *preload = NULL, *dir = NULL, *sockdir = NULL;
	int rc = 0;

	if (old != NULL && old[0] != '\0')
		preload = xasprintf("%s:%s", agent, old);
	else
		preload = xstrdup(agent);
	if (setenv("LD_PRELOAD", preload, 1) < 0 || unsetenv("MEMTRACE_ROOT") < 0)
		goto err_setenv;

	if (c->runtime_dir_opt != NULL) {
		dir = run_absolute(c->runtime_dir_opt);
	} else if (c->socket_opt != NULL) {
		sockdir = run_dirname(c->socket_opt);
		dir = run_absolute(sockdir);
	}
	if (dir != NULL && setenv("MEMTRACE_RUNTIME_DIR", dir, 1) < 0)
		goto err_setenv;
	goto out;

err_setenv:
	rc = client_error(c, CLIENT_EXIT_ERROR, "run_failed", "cannot set the environment: %s",
	                  strerror(errno));
out:
	free(sockdir);
	free(dir);
	free(preload);
	return rc;
}

static uint64_t run_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void run_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	/* An interrupted sleep only makes the next question come sooner. */
	nanosleep(&ts, NULL);
}

/*
 * Waits until memtraced has seen the session of `pid` end. Returns 0 when it
 * has (or when it still says "live" after RUN_EXIT_WAIT_MS: the report then
 * shows what the daemon has so far, and says so), or CLIENT_EXIT_ERROR after
 * reporting why there is nothing to report.
 */
static int run_wait_exited(struct client *c, pid_t pid)
{
	uint64_t start = run_now_ms();
	cJSON *req = cJSON_CreateObject(), *resp = NULL;
	int rc;

	cJSON_AddStringToObject(req, "cmd", "stats");
	cJSON_AddNumberToObject(req, "pid", (double)pid);
	for (;;) {
		uint64_t waited;
		const char *code, *state;

		cJSON_Delete(resp);
		resp = NULL;
		rc = client_call_raw(c, req, &resp);
		if (rc != 0)
			goto out;
		waited = run_now_ms() - start;
		code = client_error_code(resp);
		if (code == NULL) {
			const cJSON *st = cJSON_GetObjectItemCaseSensitive(resp, "state");
			state = cJSON_IsString(st) ? st->valuestring : "";
			if (strcmp(state, "exited") == 0 || strcmp(state, "snapshot") == 0)
				break;
			if (waited >= RUN_EXIT_WAIT_MS) {
				fprintf(
				    stderr,
				    "memtracectl: memtraced has not seen pid %d end after %d s; "
				    "what it still held may be incomplete\n",
				    (int)pid, RUN_EXIT_WAIT_MS / 1000);
				break;
			}
		} else if ((strcmp(code, "no_such_process") != 0 &&
		            strcmp(code, "not_traced") != 0) ||
		           waited >= RUN_UNKNOWN_WAIT_MS) {
			rc = client_report_error(c, resp);
			goto out;
		}
		run_sleep_ms(RUN_POLL_MS);
	}
	rc = 0;
out:
	cJSON_Delete(resp);
	cJSON_Delete(req);
	return rc;
}

/*
 * Where the report goes: -o FILE, opened before PROG starts so that a name
 * that cannot be written is refused before anything has run, else stderr.
 * Returns 0 with the descriptor in *fd (close it when it is not 2), or the
 * reported exit status.
 */
static int run_open_output(struct client *c, const char *path, int *fd)
{
	struct stat st;

	*fd = STDERR_FILENO;
	if (path == NULL)
		return 0;
	/* A regular file only, never through a symbolic link, and without
	 * waiting on a FIFO someone put there. */
	int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0666);
	if (f < 0)
		return client_error(c, CLIENT_EXIT_ERROR, "file_error", "cannot open %s: %s", path,
		                    strerror(errno));
	if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode) || ftruncate(f, 0) != 0 ||
	    fcntl(f, F_SETFL, 0) != 0) {
		close(f);
		return client_error(c, CLIENT_EXIT_ERROR, "file_error",
		                    "%s is not a regular file that can be written", path);
	}
	*fd = f;
	return 0;
}

/*
 * Runs once the traced program has ended, with its pid (the pid of its
 * session in the daemon): prints the `limit` largest sites of what it never
 * freed, as `top --pid` does, on `out`. The renderers print on stdout, so
 * stdout is pointed at `out` for the time of the report. Its failures are
 * only reported, on stderr.
 */
static void run_report_leaks(struct client *c, pid_t pid, int limit, int out)
{
	cJSON *req;
	int saved;

	c->errors_to_stderr = true;
	if (run_wait_exited(c, pid) != 0)
		return;
	fflush(stdout);
	saved = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	if (saved < 0 || dup2(out, STDOUT_FILENO) < 0) {
		fprintf(stderr, "memtracectl: cannot print the report: %s\n", strerror(errno));
		goto out;
	}
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "top");
	cJSON_AddNumberToObject(req, "pid", (double)pid);
	cJSON_AddNumberToObject(req, "limit", limit);
	client_request(c, req, table_top);
	if (fflush(stdout) != 0)
		fprintf(stderr, "memtracectl: cannot write the report: %s\n", strerror(errno));
	dup2(saved, STDOUT_FILENO);
out:
	if (saved >= 0)
		close(saved);
}

/* ---- statically linked programs ---- */

/* Where execvp will find `name`: itself when it has a slash, else the first
 * executable regular file of that name on PATH. NULL when there is none (exec
 * will then fail and say so). Caller frees. */
static char *run_locate(const char *name)
{
	const char *path = getenv("PATH");
	struct stat st;

	if (strchr(name, '/') != NULL)
		return xstrdup(name);
	if (path == NULL)
		path = "/bin:/usr/bin";
	while (*path != '\0') {
		size_t len = strcspn(path, ":");
		char *cand =
		    len == 0 ? xasprintf("./%s", name) : xasprintf("%.*s/%s", (int)len, path, name);
		if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
			return cand;
		free(cand);
		path += len;
		if (*path == ':')
			path++;
	}
	return NULL;
}

/* Reads exactly n bytes at off. 0 or -1. */
static int run_pread(int fd, void *buf, size_t n, off_t off)
{
	return pread(fd, buf, n, off) == (ssize_t)n ? 0 : -1;
}

/* Whether the dynamic section at (off, size) of the file says "position-
 * independent executable" (DF_1_PIE): a static-pie has one, the loader
 * itself run as a program has none. */
static bool run_dynamic_is_pie(int fd, off_t off, size_t size)
{
	ElfW(Dyn) d;

	for (size_t at = 0; at + sizeof(d) <= size; at += sizeof(d)) {
		if (run_pread(fd, &d, sizeof(d), off + (off_t)at) < 0 || d.d_tag == DT_NULL)
			break;
		if (d.d_tag == DT_FLAGS_1)
			return (d.d_un.d_val & DF_1_PIE) != 0;
	}
	return false;
}

/*
 * Whether the file is an ELF program of this machine's class that no dynamic
 * loader starts: no PT_INTERP, and no dynamic section either (static) or one
 * that marks a static-pie. Anything else - a script, another class, a file
 * that cannot be read - is not known to be static.
 */
static bool run_is_static(const char *file)
{
	ElfW(Ehdr) eh;
	ElfW(Phdr) ph;
	bool interp = false, dynamic = false, pie = false;
	int fd = open(file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (run_pread(fd, &eh, sizeof(eh), 0) < 0 || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
	    (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(ph))
		goto out;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (run_pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) < 0)
			goto out;
		if (ph.p_type == PT_INTERP)
			interp = true;
		if (ph.p_type == PT_DYNAMIC) {
			dynamic = true;
			pie = run_dynamic_is_pie(fd, (off_t)ph.p_offset, ph.p_filesz);
		}
	}
	close(fd);
	return !interp && (!dynamic || pie);
out:
	close(fd);
	return false;
}

/* The shell's convention for how a child ended. */
static int run_exit_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return CLIENT_EXIT_ERROR;
}

/*
 * Whether the child's exec succeeded: the child writes its errno to a
 * close-on-exec pipe when exec fails, so the parent reads either that or,
 * once exec has closed the pipe, nothing. An exit status of 127 cannot tell
 * a program that failed to start from one that exited 127.
 */
static bool run_exec_failed(int fd)
{
	int err;
	ssize_t n;

	do
		n = read(fd, &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(err);
}

/*
 * The environment run_environment built, as an array of its own. PROG is
 * started with it, not with `environ`: an agent in memtracectl itself, under
 * MEMTRACE_FOLLOW_FORK=0, takes itself out of the LD_PRELOAD of a fork
 * child's `environ` (agent/lineage.h), and PROG must get it.
 */
static char **run_envp(void)
{
	size_t n = 0;
	char **envp;

	while (environ[n] != NULL)
		n++;
	envp = xcalloc(n + 1, sizeof(*envp));
	memcpy(envp, environ, n * sizeof(*envp));
	return envp;
}

/*
 * --pid-file: a file of our own, made beside FILE before PROG starts (so
 * that a directory that cannot be written is said before anything runs),
 * and renamed over FILE once it holds the pid. A pid file often lives in
 * a shared directory: nothing already at FILE (another user's file, a
 * FIFO, a link) is opened or written, it is replaced, and a reader sees
 * no FILE or a whole one.
 */
struct pidfile {
	const char *path;
	char *tmp; /* NULL: no --pid-file */
	int fd;
};

static int run_open_pidfile(struct client *c, const char *path, struct pidfile *pf)
{
	const char *what = "cannot write";
	int err;

	pf->path = path;
	pf->tmp = NULL;
	pf->fd = -1;
	if (path == NULL)
		return 0;
	pf->tmp = xmalloc(strlen(path) + sizeof ".XXXXXX");
	strcpy(pf->tmp, path);
	strcat(pf->tmp, ".XXXXXX");
	pf->fd = mkostemp(pf->tmp, O_CLOEXEC);
	if (pf->fd < 0 || fchmod(pf->fd, 0644) != 0)
		goto fail;
	/* A FILE of an earlier run goes now: a script that waits for FILE
	 * must not read the pid of a process that has ended (one it may not
	 * remove, another user's in a sticky directory, stays, and the rename
	 * below then fails and says so). */
	if (unlink(path) != 0 && errno != ENOENT && errno != EPERM && errno != EACCES) {
		what = "cannot remove";
		goto fail;
	}
	return 0;
fail:
	err = errno;
	if (pf->fd >= 0) {
		close(pf->fd);
		unlink(pf->tmp);
	}
	free(pf->tmp);
	pf->tmp = NULL;
	pf->fd = -1;
	return client_error(c, CLIENT_EXIT_ERROR, "file_error", "%s %s: %s", what, path,
	                    strerror(err));
}

/* The pid, one line, then the file takes FILE's name. */
static void run_write_pidfile(struct pidfile *pf, pid_t pid)
{
	char line[24];
	int n = snprintf(line, sizeof line, "%d\n", (int)pid);

	if (pf->fd < 0)
		return;
	if (write(pf->fd, line, (size_t)n) != n || rename(pf->tmp, pf->path) != 0) {
		fprintf(stderr, "memtracectl: cannot write the pid into %s: %s\n", pf->path,
		        strerror(errno));
		unlink(pf->tmp);
	}
	close(pf->fd);
	pf->fd = -1;
}

/* Not written (PROG did not start): the file of our own goes. */
static void run_close_pidfile(struct pidfile *pf)
{
	if (pf->fd >= 0) {
		close(pf->fd);
		unlink(pf->tmp);
	}
	free(pf->tmp);
}

/*
 * Before the pid goes into --pid-file: until memtraced knows the process
 * (the agent's first message, sent before main, has been read), so that a
 * script that asks about the pid as soon as the file is there is answered.
 * Known means a live session of this very process (its start time), not an
 * ended one that had the pid before. Not when no daemon answers (PROG runs
 * untraced), once PROG has ended, nor past RUN_KNOWN_WAIT_MS (an agent
 * that could not connect), however the socket behaves: each exchange is
 * bounded by the time left. Nothing is printed: stdout is PROG's.
 */
static void run_wait_known(struct client *c, pid_t pid)
{
	uint64_t start = run_now_ms(), started = procstat_start_time(pid);
	cJSON *req, *resp = NULL;

	c->quiet = true;
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "stats");
	cJSON_AddNumberToObject(req, "pid", (double)pid);
	for (uint64_t waited = 0; waited < RUN_KNOWN_WAIT_MS; waited = run_now_ms() - start) {
		uint64_t left = RUN_KNOWN_WAIT_MS - waited;
		struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
		siginfo_t si = {0};
		const char *code;

		if (client_connect_quiet(c) != 0 ||
		    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
		    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
		    client_call_raw(c, req, &resp) != 0)
			break;
		code = client_error_code(resp);
		if (code == NULL) {
			const cJSON *st = cJSON_GetObjectItemCaseSensitive(resp, "state");
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(resp, "start_time");
			if (cJSON_IsString(st) && strcmp(st->valuestring, "live") == 0 &&
			    cJSON_IsNumber(t) &&
			    (started == 0 || (uint64_t)t->valuedouble == started))
				break;
		} else if (strcmp(code, "not_traced") != 0 &&
		           strcmp(code, "no_such_process") != 0) {
			break;
		}
		/* Ended (not reaped: the caller waits for it) before it was
		 * ever heard of: it will not be. */
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    si.si_pid == pid)
			break;
		cJSON_Delete(resp);
		resp = NULL;
		run_sleep_ms(RUN_KNOWN_POLL_MS);
	}
	cJSON_Delete(resp);
	cJSON_Delete(req);
	/* PROG may run for days: its user's connections are counted. */
	client_hang_up(c);
	c->quiet = false;
}

/* Starts argv[0] and waits; returns 0 with its pid and wait status, or an
 * exit status. *started says whether exec succeeded; traceable whether the
 * agent can be in it (the pid file then waits for the daemon to know it). */
static int run_child(struct client *c, char **argv, struct pidfile *pf, bool traceable,
                     pid_t *pid_out, int *status, bool *started)
{
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
	int pipefd[2] = {-1, -1};
	char **envp = run_envp();
	pid_t pid;
	int rc;

	*started = false;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		free(envp);
		return client_error(c, CLIENT_EXIT_ERROR, "run_failed", "cannot create a pipe: %s",
		                    strerror(errno));
	}

	sigemptyset(&ign.sa_mask);
	/* Ignored before fork, so that no Ctrl-C can fall between fork and
	 * sigaction and kill memtracectl alone; the child puts back what
	 * memtracectl was given before it execs. */
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGQUIT, &ign, &old_quit);
	/* Nothing buffered may be written twice, by both processes. */
	fflush(stdout);
	fflush(stderr);

	pid = fork();
	if (pid < 0) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "run_failed", "cannot fork: %s",
		                  strerror(errno));
		goto out;
	}
	if (pid == 0) {
		int err;

		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		close(pipefd[0]);
		execvpe(argv[0], argv, envp);
		err = errno;
		fprintf(stderr, "memtracectl: cannot run %s: %s\n", argv[0], strerror(err));
		/* If the parent cannot hear it, it only reports less. */
		ssize_t n = write(pipefd[1], &err, sizeof(err));
		(void)n;
		_exit(RUN_EXIT_EXEC);
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	*started = !run_exec_failed(pipefd[0]);
	if (*started && traceable && pf->fd >= 0)
		run_wait_known(c, pid);
	run_write_pidfile(pf, pid);
	while (waitpid(pid, status, 0) < 0) {
		if (errno != EINTR) {
			rc = client_error(c, CLIENT_EXIT_ERROR, "run_failed",
			                  "cannot wait for %s (pid %d): %s", argv[0], (int)pid,
			                  strerror(errno));
			goto out;
		}
	}
	*pid_out = pid;
	rc = 0;
out:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	close(pipefd[0]);
	free(envp);
	return rc;
}

static int cmd_run_exec(struct client *c, const struct args *a)
{
	char *agent = NULL, *prog = NULL;
	bool started, traceable;
	pid_t pid;
	int rc, status, out = -1;
	struct pidfile pf = {NULL, NULL, -1};

	if (args_has(a, "output") && !args_has(a, "top")) {
		client_opt_error(c, "-o needs --top: it is where the --top report goes");
		return client_usage_error(c);
	}
	rc = client_find_agent(c, args_get(a, "agent"), &agent);
	if (rc != 0)
		goto out;
	rc = run_environment(c, agent);
	if (rc != 0)
		goto out;
	prog = run_locate(a->operands[0]);
	traceable = prog == NULL || !run_is_static(prog);
	if (!traceable)
		fprintf(stderr,
		        "memtracectl: %s is statically linked: the agent cannot be loaded into "
		        "it, so it runs untraced\n",
		        a->operands[0]);
	if (args_has(a, "top") && traceable &&
	    (rc = run_open_output(c, args_get(a, "output"), &out)) != 0)
		goto out;
	if ((rc = run_open_pidfile(c, args_get(a, "pid-file"), &pf)) != 0)
		goto out;
	rc = run_child(c, a->operands, &pf, traceable, &pid, &status, &started);
	if (rc != 0)
		goto out;
	if (args_has(a, "top") && started && traceable)
		run_report_leaks(c, pid, args_count(a, "top", 0), out);
	rc = run_exit_status(status);
out:
	free(prog);
	if (out > STDERR_FILENO)
		close(out);
	run_close_pidfile(&pf);
	free(agent);
	return rc;
}
