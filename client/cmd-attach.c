/*
 * cmd-attach.c - `memtracectl attach PID`: trace a process that is already
 * running, by making it load the agent (inject.h). The agent then points
 * the process's calls of the allocator at its hooks (agent/gotpatch.h).
 *
 * Before anything is touched, what would make the attach fail or harm the
 * process is refused with its own error: no such process, another user's,
 * one a debugger traces, one the agent is in already, what
 * kernel.yama.ptrace_scope forbids, and one without memtracectl's shared
 * libc (statically linked: inject_library's check of the very file, made
 * before it stops anything). The agent is pointed at the daemon this client
 * talks to (MEMTRACE_RUNTIME_DIR, set in the process); then the client
 * waits until the daemon lists the process as attached.
 *
 * A process the agent is in already but that is not traced (detached with
 * `memtracectl detach`, or its daemon went away) is attached again: the
 * same file the process mapped is opened (another copy would be a second
 * agent), which finds it loaded, and its memtrace_attach starts a new
 * session (agent/agent.c).
 */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inject.h"
#include "xalloc.h"

static int cmd_attach_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_attach_entry = {
    .name = "attach",
    .usage = "[--agent PATH] PID",
    .summary = "trace a process that is already running",
    .help = "Load the memtrace agent into the running process PID and trace it from\n"
            "now on: every allocation and free of its threads and of the objects it\n"
            "has loaded or loads later. What it allocated before is not known: its\n"
            "frees of those blocks count as unknown_frees, and 'stats' says\n"
            "\"attached\": true (started_at is when).\n\n"
            "memtracectl stops the process's main thread with ptrace for the time\n"
            "of the load (reported as pause_ms; its other threads run on), makes it\n"
            "call dlopen, and lets it go on where it was. It needs the right to\n"
            "ptrace the process: your own process (root: any), not one a debugger\n"
            "traces, and kernel.yama.ptrace_scope 0 (1: root only; 3: nobody). The\n"
            "process must use the same libc as memtracectl (not statically linked,\n"
            "not another root file system). x86-64 only.\n\n"
            "A process the agent is in already but not traced ('memtracectl detach'\n"
            "stopped it, or its memtraced went away) is attached again through that\n"
            "agent: a new session.\n\n"
            "Options:\n"
            "  --agent PATH        the agent library, as for 'run'\n",
    .args = {.options = (const struct args_option[]){{"agent", 0, ARGS_PATH},
                                                     {"pid", 0, ARGS_PID},
                                                     {NULL}},
             .lower = 0,
             .upper = 1,
             .interleaved = true,
             .missing = "attach needs a pid: memtracectl attach PID"},
    .exec = cmd_attach_exec,
};

/* A line of /proc/PID/status ("TracerPid:"), as a number; -1 when absent. */
static long status_field(int pid, const char *field)
{
	char path[64], line[256];
	long v = -1;
	size_t n = strlen(field);

	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, field, n) == 0) {
			v = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* The path of the first executable mapping in /proc/PID/maps of a file
 * whose base name is `base` (into out, cap bytes), or "" when none. A
 * deleted file's path ends with " (deleted)". */
static void maps_find(int pid, const char *base, char *out, size_t cap)
{
	char path[64], line[4096];

	out[0] = '\0';
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	while (out[0] == '\0' && fgets(line, sizeof line, f) != NULL) {
		char perms[8] = "";
		char *file = strchr(line, '/');
		if (file == NULL || sscanf(line, "%*x-%*x %7s", perms) != 1 || perms[2] != 'x')
			continue;
		file[strcspn(file, "\n")] = '\0';
		const char *name = strrchr(file, '/') + 1;
		size_t n = strlen(base);
		if (strncmp(name, base, n) != 0 ||
		    (name[n] != '\0' && strcmp(name + n, " (deleted)") != 0))
			continue;
		snprintf(out, cap, "%s", file);
	}
	fclose(f);
}

/* Whether the agent mapped in the process (its path as the process sees
 * it, under /proc/PID/root) is the very file memtracectl would load: only
 * that one's memtrace_attach is called. Anything else of that name may be
 * anybody's code. */
static bool same_agent(int pid, const char *mapped, const char *ours)
{
	char path[PATH_MAX + 64];
	struct stat a, b;

	snprintf(path, sizeof path, "/proc/%d/root%s", pid, mapped);
	return stat(path, &a) == 0 && stat(ours, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static int yama_scope(void)
{
	FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
	int v = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%d", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

/* What would make the attach fail or harm the process, said. 0 or the
 * reported exit status; the agent's path in the process, when it has one,
 * in agent_in (PATH_MAX bytes). */
static int refuse(struct client *c, int pid, char *agent_in)
{
	char path[64];
	struct stat st;
	uid_t me = geteuid();
	int scope = yama_scope();

	snprintf(path, sizeof path, "/proc/%d", pid);
	if (stat(path, &st) != 0)
		return client_error(c, CLIENT_EXIT_ERROR, "no_such_process", "no process %d", pid);
	if (me != 0 && st.st_uid != me)
		return client_error(c, CLIENT_EXIT_ERROR, "not_yours",
		                    "process %d belongs to uid %u: only root may attach to another "
		                    "user's process",
		                    pid, (unsigned)st.st_uid);
	long tracer = status_field(pid, "TracerPid:");
	if (tracer > 0)
		return client_error(c, CLIENT_EXIT_ERROR, "traced",
		                    "process %d is traced by process %ld (a debugger?): detach it "
		                    "first",
		                    pid, tracer);
	maps_find(pid, "libmemtrace.so", agent_in, PATH_MAX);
	if (strstr(agent_in, " (deleted)") != NULL)
		return client_error(c, CLIENT_EXIT_ERROR, "not_attachable",
		                    "the memtrace agent in process %d was deleted from the disk "
		                    "since (%s): it cannot be started again",
		                    pid, agent_in);
	if (scope >= 3 || (scope == 2 && me != 0))
		return client_error(c, CLIENT_EXIT_ERROR, "ptrace_denied",
		                    "kernel.yama.ptrace_scope is %d: %s", scope,
		                    scope >= 3 ? "no process may be traced until the next boot"
		                               : "only root may attach; run memtracectl as root");
	return 0;
}

/* Whether the daemon lists pid as a live process (and attached, when
 * `attached`). */
static bool listed_live(struct client *c, int pid, bool attached)
{
	bool live;
	cJSON *st = client_stats_of(c, pid, &live);
	bool ok =
	    live && (!attached || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "attached")));

	cJSON_Delete(st);
	return ok;
}

/* What the agent's memtrace_attach answered, as an error; 0 when it
 * started a session. */
static int restart_refused(struct client *c, int pid, int ret)
{
	if (ret == 0)
		return 0;
	if (ret == 1)
		return client_error(c, CLIENT_EXIT_ERROR, "already_traced",
		                    "the memtrace agent in process %d traces it already, for "
		                    "another memtraced (not the one at %s)",
		                    pid, c->socket_path);
	if (ret == -EBUSY)
		return client_error(c, CLIENT_EXIT_ERROR, "busy",
		                    "process %d is still ending its last session (a detach); try "
		                    "again",
		                    pid);
	if (ret == -EPERM)
		return client_error(c, CLIENT_EXIT_ERROR, "not_attachable",
		                    "the memtrace agent in process %d does not trace it (it is "
		                    "memtraced, or a descendant of a process started with "
		                    "MEMTRACE_FOLLOW_FORK=0)",
		                    pid);
	return client_error(c, CLIENT_EXIT_ERROR, "attach_failed",
	                    "the memtrace agent in process %d could not start tracing (%s): the "
	                    "process's stderr says why",
	                    pid, strerror(-ret));
}

static int cmd_attach_exec(struct client *c, const struct args *a)
{
	char *agent = NULL, why[600], *dir = NULL, agent_in[PATH_MAX];
	cJSON *req, *resp = NULL;
	uint64_t pause_ns = 0;
	int pid = 0, rc, entry_ret = 0;

	if (client_pid_arg(c, a, "attach", &pid) < 0)
		return client_usage_error(c);
	if ((rc = refuse(c, pid, agent_in)) != 0)
		return rc;
	if ((rc = client_find_agent(c, args_get(a, "agent"), &agent)) != 0)
		return rc;
	if (agent_in[0] != '\0' && !same_agent(pid, agent_in, agent)) {
		rc =
		    client_error(c, CLIENT_EXIT_ERROR, "not_attachable",
		                 "process %d has %s loaded, which is not the agent %s: memtracectl "
		                 "starts only its own agent again (--agent names another)",
		                 pid, agent_in, agent);
		free(agent);
		return rc;
	}
	if (agent_in[0] != '\0') {
		free(agent);
		agent = xstrdup(agent_in);
	}
	/* The daemon first: it must be there to take the agent's session, and
	 * its socket's directory is where the agent is sent. */
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "status");
	rc = client_call(c, req, &resp);
	cJSON_Delete(req);
	cJSON_Delete(resp);
	if (rc != 0)
		goto out;
	if (agent_in[0] != '\0' && listed_live(c, pid, false)) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "already_traced",
		                  "process %d is traced already (started under the agent, or "
		                  "attached): see 'memtracectl stats --pid %d'",
		                  pid, pid);
		goto out;
	}
	dir = xstrdup(c->socket_path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	char real[PATH_MAX];
	const struct inject_env env[] = {
	    {"MEMTRACE_RUNTIME_DIR", realpath(dir, real) != NULL ? real : dir}};
	rc = inject_library(pid, agent, env, 1, agent_in[0] != '\0' ? "memtrace_attach" : NULL,
	                    &entry_ret, &pause_ns, why, sizeof why);
	if (rc < 0) {
		const char *code = rc == -ESRCH     ? "no_such_process"
		                   : rc == -EPERM   ? "ptrace_denied"
		                   : rc == -ENOEXEC ? "not_attachable"
		                   : rc == -EBUSY   ? "busy"
		                                    : "attach_failed";
		if (rc == -EPERM && yama_scope() == 1)
			rc = client_error(
			    c, CLIENT_EXIT_ERROR, code,
			    "%s; kernel.yama.ptrace_scope is 1: only a parent process, or "
			    "root, may attach (run memtracectl as root, or sysctl "
			    "kernel.yama.ptrace_scope=0)",
			    why);
		else
			rc = client_error(c, CLIENT_EXIT_ERROR, code, "process %d: %s", pid, why);
		goto out;
	}
	if ((rc = restart_refused(c, pid, entry_ret)) != 0)
		goto out;
	/* The agent connects from its constructor, inside that dlopen (or
	 * from memtrace_attach): the daemon has the session or soon will. */
	bool listed = false;
	for (int i = 0; i < 100 && !(listed = listed_live(c, pid, true)); i++)
		usleep(50 * 1000);
	if (!listed) {
		rc = client_error(
		    c, CLIENT_EXIT_ERROR, "attach_failed",
		    "the agent is loaded in process %d but memtraced does not list it: "
		    "the process's stderr says why",
		    pid);
		goto out;
	}
	resp = cJSON_CreateObject();
	cJSON_AddNumberToObject(resp, "pid", pid);
	cJSON_AddBoolToObject(resp, "attached", true);
	cJSON_AddNumberToObject(resp, "pause_ms", (double)pause_ns / 1e6);
	cJSON_AddStringToObject(resp, "agent", agent);
	client_output(c, resp, table_attach);
	cJSON_Delete(resp);
	rc = CLIENT_EXIT_OK;
out:
	free(dir);
	free(agent);
	return rc;
}
