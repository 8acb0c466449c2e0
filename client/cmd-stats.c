/*
 * cmd-stats.c - `memtracectl stats (--pid P | --snapshot ID|FILE)`: the
 * counters of one process, live or as a snapshot kept them.
 */
#include "client.h"

#include "snapshot.h"

static int cmd_stats_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_stats_entry = {
    .name = "stats",
    .usage = "(--pid P | --snapshot ID|FILE)",
    .summary = "current and peak bytes, blocks and counters of a process",
    .help = "Print the counters of one traced process: current and peak traced bytes,\n"
            "live blocks, allocations, frees, events lost, distinct stacks, how it is\n"
            "sampled, and whether one of the daemon's limits was reached. From a\n"
            "snapshot, \"state\" is \"snapshot\" and \"snapshot\" says which one.\n\n"
            "Options:\n"
            "  --pid P             the traced process\n"
            "  --snapshot ID|FILE  a stored snapshot (an id: digits only) or a snapshot\n"
            "                      file written by 'snapshot -o' instead of --pid\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID},
                                                     {"snapshot", 0, ARGS_SNAPREF},
                                                     {NULL}}},
    .exec = cmd_stats_exec,
};

static cJSON *stats_answer(const struct snapshot *s, void *arg)
{
	(void)arg;
	return snapshot_stats_json(s);
}

static int cmd_stats_exec(struct client *c, const struct args *a)
{
	const char *snap_arg = args_get(a, "snapshot");
	struct snapref ref = {0};
	cJSON *req;
	int pid = 0;

	snapref_choose(c, args_get(a, "pid"), snap_arg, &pid, &ref);
	if (c->usage_error != NULL)
		return client_usage_error(c);
	if (snap_arg != NULL && ref.kind == SNAPREF_FILE)
		return snapref_answer(c, &ref, stats_answer, NULL, table_stats);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "stats");
	if (snap_arg != NULL)
		cJSON_AddNumberToObject(req, "snapshot", (double)ref.id);
	else
		cJSON_AddNumberToObject(req, "pid", pid);
	return client_request(c, req, table_stats);
}
