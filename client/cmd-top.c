/*
 * cmd-top.c - `memtracectl top (--pid P | --snapshot ID|FILE) ...`:
 * tracemalloc's Snapshot.statistics() over the live heap of a process, a
 * stored snapshot (answered by the daemon) or a snapshot file (answered here,
 * with analysis/query.c, in the daemon's shape).
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "snapshot.h"

static int cmd_top_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_top_entry = {
    .name = "top",
    .usage = "(--pid P | --snapshot ID|FILE) " STATARGS_SYNOPSIS,
    .summary = "where the live memory of a process was allocated",
    .help = "Group the live blocks of a traced process by where they were allocated\n"
            "and print the groups largest first, as tracemalloc's\n"
            "Snapshot.statistics() does. With --pid of a process that has exited, the\n"
            "daemon answers from its exit snapshot: what it leaked.\n\n"
            "Options:\n"
            "  --pid P             the traced process\n"
            "  --snapshot ID|FILE  a stored snapshot (an id: digits only) or a snapshot\n"
            "                      file written by 'snapshot -o' instead of --pid\n" STATARGS_HELP,
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID},
                                                     {"snapshot", 0, ARGS_SNAPREF},
                                                     STATARGS_OPTIONS,
                                                     {NULL}}},
    .exec = cmd_top_exec,
};

/* The daemon's shape for a stored snapshot: "pid" and "snapshot" first, as
 * in the traceback answer. */
static cJSON *top_answer(const struct snapshot *s, void *arg)
{
	struct query_opts o;
	cJSON *resp;

	statargs_opts(arg, &o);
	return snapshot_top_json(s, &o, true, &resp) < 0 ? NULL : resp;
}

static int cmd_top_exec(struct client *c, const struct args *a)
{
	const char *snap_arg = args_get(a, "snapshot");
	struct statargs st;
	struct snapref ref = {0};
	cJSON *req;
	int pid = 0, rc;

	snapref_choose(c, args_get(a, "pid"), snap_arg, &pid, &ref);
	statargs_init(&st, c, a);
	if (c->usage_error != NULL) {
		rc = client_usage_error(c);
		goto out;
	}
	if (snap_arg != NULL && ref.kind == SNAPREF_FILE) {
		rc = snapref_answer(c, &ref, top_answer, &st, table_top);
		goto out;
	}

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "top");
	if (snap_arg != NULL)
		cJSON_AddNumberToObject(req, "snapshot", (double)ref.id);
	else
		cJSON_AddNumberToObject(req, "pid", pid);
	statargs_request(&st, req);
	rc = client_request(c, req, table_top);
out:
	statargs_close(&st);
	return rc;
}
