/*
 * cmd-detach.c - `memtracectl detach PID`: stop tracing a process and let it
 * run on.
 *
 * The daemon passes the request to the process's agent (CONTROL.md,
 * "detach"), which stops recording at once, puts back the GOT entries an
 * attach rewrote, and ends its session; the daemon reads what is left and
 * stores the session's last state as a snapshot of reason "detach", as it
 * would at an exit. The client waits for both (the session's end, then the
 * snapshot) and prints what the process held when tracing stopped.
 */
#include "client.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int cmd_detach_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_detach_entry = {
    .name = "detach",
    .usage = "PID",
    .summary = "stop tracing a process; it runs on untraced",
    .help = "Stop tracing process PID, which runs on: its allocator calls go straight\n"
            "to the allocator again (an attached process's calls no longer pass through\n"
            "the agent at all; one started under LD_PRELOAD passes each call through\n"
            "at the cost of a branch). The session ends as at an exit: memtraced keeps\n"
            "its statistics and stores a snapshot of reason \"detach\", whose id this\n"
            "prints with the bytes and blocks held at that moment. 'memtracectl attach\n"
            "PID' starts tracing it again later (a new session: what it allocated in\n"
            "between is not known).\n\n"
            "Your own process, or root: any. Needs no ptrace: the request goes\n"
            "through memtraced to the agent.\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID}, {NULL}},
             .lower = 0,
             .upper = 1,
             .interleaved = true,
             .missing = "detach needs a pid: memtracectl detach PID"},
    .exec = cmd_detach_exec,
};

#define WAIT_STEPS 200 /* of 50 ms: 10 s for the session's end, 10 s for the snapshot */

/* The id of pid's newest stored snapshot of reason "detach" taken at or
 * after `since` (seconds), or -1. */
static double detach_snapshot(struct client *c, int pid, double since)
{
	cJSON *req = cJSON_CreateObject(), *resp = NULL;
	double id = -1;

	cJSON_AddStringToObject(req, "cmd", "snapshots");
	cJSON_AddNumberToObject(req, "pid", pid);
	if (client_call_raw(c, req, &resp) == 0 && client_error_code(resp) == NULL) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(resp, "snapshots"), *s;
		cJSON_ArrayForEach(s, arr)
		{
			const cJSON *r = cJSON_GetObjectItemCaseSensitive(s, "reason");
			const cJSON *at = cJSON_GetObjectItemCaseSensitive(s, "taken_at");
			const cJSON *sid = cJSON_GetObjectItemCaseSensitive(s, "id");
			if (cJSON_IsString(r) && strcmp(r->valuestring, "detach") == 0 &&
			    cJSON_IsNumber(at) && at->valuedouble >= since && cJSON_IsNumber(sid))
				id = sid->valuedouble;
		}
	}
	cJSON_Delete(resp);
	cJSON_Delete(req);
	return id;
}

static int cmd_detach_exec(struct client *c, const struct args *a)
{
	cJSON *req, *resp = NULL, *stats = NULL;
	bool live = true;
	int pid = 0, rc, i;

	if (client_pid_arg(c, a, "detach", &pid) < 0)
		return client_usage_error(c);
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "detach");
	cJSON_AddNumberToObject(req, "pid", pid);
	rc = client_call(c, req, &resp);
	cJSON_Delete(req);
	cJSON_Delete(resp);
	if (rc != 0)
		return rc;
	/* The agent reads the request within its 50 ms cycle; the daemon then
	 * reads the rest of the region, which can take a second or more. */
	for (i = 0; i < WAIT_STEPS; i++) {
		cJSON_Delete(stats);
		stats = client_stats_of(c, pid, &live);
		if (stats == NULL || !live)
			break;
		usleep(50 * 1000);
	}
	if (stats == NULL || live) {
		cJSON_Delete(stats);
		return client_error(c, CLIENT_EXIT_ERROR, "detach_failed",
		                    stats == NULL ? "memtraced forgot process %d while it detached"
		                                  : "process %d did not end its session within "
		                                    "10 s (is it stopped?); it will when it runs",
		                    pid);
	}
	const cJSON *det = cJSON_GetObjectItemCaseSensitive(stats, "detached");
	const cJSON *ended = cJSON_GetObjectItemCaseSensitive(stats, "ended_at");
	if (!cJSON_IsTrue(det)) {
		cJSON_Delete(stats);
		return client_error(c, CLIENT_EXIT_ERROR, "not_live",
		                    "process %d ended before it detached: its exit snapshot has "
		                    "its last state",
		                    pid);
	}
	double since = cJSON_IsNumber(ended) ? ended->valuedouble - 1 : 0, id = -1;
	for (i = 0; i < WAIT_STEPS && (id = detach_snapshot(c, pid, since)) < 0; i++)
		usleep(50 * 1000);
	resp = cJSON_CreateObject();
	cJSON_AddNumberToObject(resp, "pid", pid);
	cJSON_AddBoolToObject(resp, "detached", true);
	if (id >= 0)
		cJSON_AddNumberToObject(resp, "snapshot", id);
	else
		cJSON_AddNullToObject(resp, "snapshot");
	static const char *const keep[] = {"current",     "peak",  "blocks",
	                                   "allocations", "frees", "ended_at"};
	for (size_t k = 0; k < sizeof(keep) / sizeof(keep[0]); k++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(stats, keep[k]);
		if (v != NULL)
			cJSON_AddItemToObject(resp, keep[k], cJSON_Duplicate(v, true));
	}
	cJSON_Delete(stats);
	client_output(c, resp, table_detach);
	cJSON_Delete(resp);
	return CLIENT_EXIT_OK;
}
