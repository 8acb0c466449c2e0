/*
 * cmd-history.c - `memtracectl history --pid P`: a process's memory over
 * time. The daemon keeps the last hour or more at one-second resolution
 * (daemon/history.h: samples kept when a figure changed); the process's
 * stored snapshots older than that are added, so the history goes back as
 * far as the store does.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

static int cmd_history_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_history_entry = {
    .name = "history",
    .usage = "--pid P",
    .summary = "a process's memory over time",
    .help = "Print how a traced process's current and peak traced bytes and its live\n"
            "blocks changed over time: the daemon's samples (one a second, kept when a\n"
            "figure changed, for at least the last hour) and, before them, its stored\n"
            "snapshots. With --table: a sparkline of each figure.\n\n"
            "Options:\n"
            "  --pid P             the traced process (live, or exited and still known)\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID}, {NULL}}},
    .exec = cmd_history_exec,
};

static int cmd_history_exec(struct client *c, const struct args *a)
{
	cJSON *req, *resp = NULL, *snaps = NULL;
	int pid = 0, rc;

	client_opt_pid(c, args_get(a, "pid"), &pid);
	if (c->usage_error != NULL)
		return client_usage_error(c);
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "history");
	cJSON_AddNumberToObject(req, "pid", pid);
	rc = client_call(c, req, &resp);
	cJSON_Delete(req);
	if (rc != 0)
		return rc;
	/* The stored snapshots from before the first sample. */
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "snapshots");
	cJSON_AddNumberToObject(req, "pid", pid);
	rc = client_call(c, req, &snaps);
	cJSON_Delete(req);
	if (rc != 0) {
		cJSON_Delete(resp);
		return rc;
	}
	const cJSON *samples = cJSON_GetObjectItemCaseSensitive(resp, "samples");
	const cJSON *first = cJSON_GetArrayItem(samples, 0);
	double first_ms = cJSON_IsArray(first) && cJSON_IsNumber(cJSON_GetArrayItem(first, 0))
	                      ? cJSON_GetArrayItem(first, 0)->valuedouble
	                      : -1;
	cJSON *older = cJSON_AddArrayToObject(resp, "snapshots"), *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(snaps, "snapshots"))
	{
		const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "taken_at");
		if (!cJSON_IsNumber(at) || (first_ms >= 0 && at->valuedouble * 1000 >= first_ms))
			continue;
		cJSON *o = cJSON_CreateObject();
		/* exe: a pid that exec'd has its earlier programs' snapshots. */
		static const char *const keep[] = {"id",   "taken_at", "reason", "current",
		                                   "peak", "blocks",   "exe"};
		for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, keep[i]);
			if (v != NULL)
				cJSON_AddItemToObject(o, keep[i], cJSON_Duplicate(v, 1));
		}
		cJSON_AddItemToArray(older, o);
	}
	cJSON_Delete(snaps);
	const cJSON *state = cJSON_GetObjectItemCaseSensitive(resp, "state");
	if (cJSON_IsString(state) && strcmp(state->valuestring, "unknown") == 0 &&
	    cJSON_GetArraySize(older) == 0) {
		/* Nothing of it: the daemon says why (no such process, another
		 * user's, not traced), as for every command that names a pid. */
		cJSON *sreq = cJSON_CreateObject(), *sresp = NULL;
		cJSON_AddStringToObject(sreq, "cmd", "stats");
		cJSON_AddNumberToObject(sreq, "pid", pid);
		rc = client_call(c, sreq, &sresp);
		cJSON_Delete(sreq);
		cJSON_Delete(sresp);
		if (rc != 0) {
			cJSON_Delete(resp);
			return rc;
		}
	}
	client_output(c, resp, table_history);
	cJSON_Delete(resp);
	return CLIENT_EXIT_OK;
}
