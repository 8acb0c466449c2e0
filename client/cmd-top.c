/*
 * cmd-top.c - `memtracectl top (--pid P | --snapshot ID|FILE) ...`:
 * tracemalloc's Snapshot.statistics() over the live heap of a process, a
 * stored snapshot (answered by the daemon) or a snapshot file (answered here,
 * with the daemon's query.c, in the daemon's shape).
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "snapshot.h"

static int cmd_top_exec(struct client *c, int argc, char **argv);

enum {
	OPT_PID = CLIENT_OPT_CMD,
	OPT_SNAPSHOT,
};

const struct cmd_entry cmd_top_entry = {
    .name = "top",
    .args = "(--pid P | --snapshot ID|FILE) " STATARGS_SYNOPSIS,
    .summary = "where the live memory of a process was allocated",
    .help = "Group the live blocks of a traced process by where they were allocated\n"
            "and print the groups largest first, as tracemalloc's\n"
            "Snapshot.statistics() does. With --pid of a process that has exited, the\n"
            "daemon answers from its exit snapshot: what it leaked.\n\n"
            "Options:\n"
            "  --pid P             the traced process\n"
            "  --snapshot ID|FILE  a stored snapshot (an id: digits only) or a snapshot\n"
            "                      file written by 'snapshot -o' instead of --pid\n" STATARGS_HELP,
    .exec = cmd_top_exec,
};

/* The answer from a snapshot file: the daemon's shape for a stored snapshot,
 * "pid" and "snapshot" first, as in the traceback answer. */
static int top_local(struct client *c, const struct snapref *ref, struct statargs *a)
{
	struct snapshot *s = NULL;
	struct query_opts o;
	cJSON *resp = NULL;
	int rc;

	rc = snapref_load(c, ref, &s);
	if (rc != 0)
		goto out;
	statargs_opts(a, &o);
	if (snapshot_top_json(s, &o, true, &resp) < 0) {
		rc =
		    client_error(c, CLIENT_EXIT_USAGE, "bad_request", "invalid statistics options");
		goto out;
	}
	snapref_mark_file(ref, resp);
	client_output(c, resp, table_top);
	rc = CLIENT_EXIT_OK;
out:
	cJSON_Delete(resp);
	snapshot_free(s);
	return rc;
}

static int cmd_top_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {
	    {"pid", required_argument, NULL, OPT_PID},
	    {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
	    STATARGS_OPTIONS,
	    CLIENT_COMMON_OPTIONS,
	};
	const char *pid_arg = NULL, *snap_arg = NULL;
	struct statargs a;
	struct snapref ref = {0};
	cJSON *req;
	int ch, pid = 0, rc;

	statargs_init(&a, argc);
	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1) {
		if (ch == OPT_PID)
			pid_arg = optarg;
		else if (ch == OPT_SNAPSHOT)
			snap_arg = optarg;
		else if (!statargs_option(c, &a, ch, optarg))
			client_opt_common(c, ch, argv);
	}
	client_opt_end(c, argc, argv);
	snapref_choose(c, pid_arg, snap_arg, &pid, &ref);
	statargs_check(c, &a);
	if (c->help) {
		rc = client_help(&cmd_top_entry);
		goto out;
	}
	if (c->usage_error != NULL) {
		rc = client_usage_error(c);
		goto out;
	}
	if (snap_arg != NULL && ref.kind == SNAPREF_FILE) {
		rc = top_local(c, &ref, &a);
		goto out;
	}

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "top");
	if (snap_arg != NULL)
		cJSON_AddNumberToObject(req, "snapshot", (double)ref.id);
	else
		cJSON_AddNumberToObject(req, "pid", pid);
	statargs_request(&a, req);
	rc = client_request(c, req, table_top);
out:
	statargs_close(&a);
	return rc;
}
