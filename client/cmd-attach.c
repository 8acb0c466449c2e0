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
            "Options:\n"
            "  --agent PATH        the agent library, as for 'run'\n",
    .args = {.options = (const struct args_option[]){{"agent", 0, ARGS_PATH}, {NULL}},
             .lower = 1,
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

/* Whether /proc/PID/maps names a file whose path contains `part`. */
static bool maps_has(int pid, const char *part)
{
	char path[64], line[4096];
	bool found = false;

	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof line, f) != NULL)
		found = strstr(line, part) != NULL;
	fclose(f);
	return found;
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
 * reported exit status. */
static int refuse(struct client *c, int pid)
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
	if (maps_has(pid, "libmemtrace.so"))
		return client_error(c, CLIENT_EXIT_ERROR, "already_traced",
		                    "process %d has the memtrace agent already (started under it, "
		                    "or attached): see 'memtracectl stats --pid %d'",
		                    pid, pid);
	if (scope >= 3 || (scope == 2 && me != 0))
		return client_error(c, CLIENT_EXIT_ERROR, "ptrace_denied",
		                    "kernel.yama.ptrace_scope is %d: %s", scope,
		                    scope >= 3 ? "no process may be traced until the next boot"
		                               : "only root may attach; run memtracectl as root");
	return 0;
}

/* Whether the daemon lists pid as an attached live process. */
static bool listed_attached(struct client *c, int pid)
{
	cJSON *req = cJSON_CreateObject(), *resp = NULL;
	bool ok = false;

	cJSON_AddStringToObject(req, "cmd", "stats");
	cJSON_AddNumberToObject(req, "pid", pid);
	if (client_call_raw(c, req, &resp) == 0 && client_error_code(resp) == NULL) {
		const cJSON *att = cJSON_GetObjectItemCaseSensitive(resp, "attached");
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(resp, "state");
		ok = cJSON_IsTrue(att) && cJSON_IsString(state) &&
		     strcmp(state->valuestring, "live") == 0;
	}
	cJSON_Delete(resp);
	cJSON_Delete(req);
	return ok;
}

static int cmd_attach_exec(struct client *c, const struct args *a)
{
	char *agent = NULL, why[600], *dir = NULL;
	cJSON *req, *resp = NULL;
	uint64_t pause_ns = 0;
	int pid = 0, rc;

	client_opt_pid(c, a->operands[0], &pid);
	if (c->usage_error != NULL)
		return client_usage_error(c);
	if ((rc = refuse(c, pid)) != 0)
		return rc;
	if ((rc = client_find_agent(c, args_get(a, "agent"), &agent)) != 0)
		return rc;
	/* The daemon first: it must be there to take the agent's session, and
	 * its socket's directory is where the agent is sent. */
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "status");
	rc = client_call(c, req, &resp);
	cJSON_Delete(req);
	cJSON_Delete(resp);
	if (rc != 0)
		goto out;
	dir = xstrdup(c->socket_path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = '\0';
	char real[PATH_MAX];
	const struct inject_env env[] = {
	    {"MEMTRACE_RUNTIME_DIR", realpath(dir, real) != NULL ? real : dir}};
	rc = inject_library(pid, agent, env, 1, &pause_ns, why, sizeof why);
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
	/* The agent connects from its constructor, inside that dlopen: the
	 * daemon has the session or soon will. */
	bool listed = false;
	for (int i = 0; i < 100 && !(listed = listed_attached(c, pid)); i++)
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
