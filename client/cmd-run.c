/*
 * cmd-run.c - `memtracectl run -- PROG ARGS...`: start a program traced.
 *
 * The agent is put first in PROG's LD_PRELOAD and PROG is started as a child,
 * so the traced process is that child's pid from its first allocation on
 * (exec keeps the pid). memtracectl stays as the parent only to wait: it
 * ignores SIGINT and SIGQUIT meanwhile, as system(3) does, so Ctrl-C reaches
 * the program alone and memtracectl lives to report how it ended.
 */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xalloc.h"

#ifndef PKGLIBDIR
#define PKGLIBDIR "/usr/local/lib/memtrace"
#endif

#define AGENT_NAME "libmemtrace.so"
/* Where libtool leaves the agent in a build tree, from client/memtracectl. */
#define AGENT_BUILD_PATH "/../agent/.libs/" AGENT_NAME

/* Exit status when PROG could not be started, as a shell's "not found". */
#define RUN_EXIT_EXEC 127

static int cmd_run_exec(struct client *c, int argc, char **argv);

enum {
	OPT_AGENT = CLIENT_OPT_CMD,
};

const struct cmd_entry cmd_run_entry = {
    .name = "run",
    .args = "[--agent PATH] -- PROG [ARGS...]",
    .summary = "start a program with the agent preloaded",
    .help = "Start PROG with the memtrace agent preloaded (put first in LD_PRELOAD),\n"
            "so memtraced traces it from its first allocation. memtracectl waits for\n"
            "PROG and exits with its exit status: 128+N when signal N killed it, 127\n"
            "when it could not be started. Ctrl-C and Ctrl-\\ go to PROG.\n\n"
            "With --runtime-dir, or --socket, PROG's agent is pointed at the same\n"
            "daemon through MEMTRACE_RUNTIME_DIR (for --socket: the socket's directory).\n\n"
            "Options:\n"
            "  --agent PATH        the agent library; default: $MEMTRACE_AGENT, else\n"
            "                      ../agent/.libs/" AGENT_NAME " from this program's\n"
            "                      directory when it runs from a build tree, else\n"
            "                      " PKGLIBDIR "/" AGENT_NAME "\n",
    .exec = cmd_run_exec,
};

/*
 * The agent library, as an absolute path so that it still loads after PROG
 * changes directory: --agent, else $MEMTRACE_AGENT, else the build tree's
 * (when this memtracectl runs from one), else the installed one. Returns 0
 * with a new string in *out, or the reported exit status.
 */
static int run_find_agent(struct client *c, const char *opt, char **out)
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
 * same paths.h rules this client did.
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
	if (setenv("LD_PRELOAD", preload, 1) < 0)
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

/*
 * Runs once the traced program has ended, with its pid (the pid of its
 * session in the daemon) and its wait status. This is where `run --top N`
 * will ask memtraced for what the program never freed - its leaks - and print
 * them before memtracectl exits with the program's status. The session
 * outlives the process in the daemon as "exited", so it can still be asked.
 * Returns 0, or an exit status after reporting an error.
 */
static int run_after_exit(struct client *c, pid_t pid, int status)
{
	(void)c;
	(void)pid;
	(void)status;
	return 0;
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

/* Starts argv[0] and waits; returns 0 with its pid and wait status, or an exit status. */
static int run_child(struct client *c, char **argv, pid_t *pid_out, int *status)
{
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
	pid_t pid;
	int rc;

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
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "memtracectl: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(RUN_EXIT_EXEC);
	}
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
	return rc;
}

static int cmd_run_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {
	    {"agent", required_argument, NULL, OPT_AGENT},
	    CLIENT_COMMON_OPTIONS,
	};
	const char *agent_opt = NULL;
	char *agent = NULL;
	pid_t pid;
	int ch, rc, status;

	/* CLIENT_OPTSTRING's '+' stops at PROG (or after "--"): PROG's own
	 * options are PROG's. */
	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1) {
		if (ch == OPT_AGENT) {
			agent_opt = optarg;
			if (agent_opt[0] == '\0')
				client_opt_error(c, "--agent needs a path");
		} else {
			client_opt_common(c, ch, argv);
		}
	}
	if (optind >= argc)
		client_opt_error(c, "run needs a program: memtracectl run -- PROG [ARGS...]");
	if (c->help)
		return client_help(&cmd_run_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	rc = run_find_agent(c, agent_opt, &agent);
	if (rc != 0)
		goto out;
	rc = run_environment(c, agent);
	if (rc != 0)
		goto out;
	rc = run_child(c, argv + optind, &pid, &status);
	if (rc != 0)
		goto out;
	rc = run_after_exit(c, pid, status);
	if (rc != 0)
		goto out;
	rc = run_exit_status(status);
out:
	free(agent);
	return rc;
}
