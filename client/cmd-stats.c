/* cmd-stats.c - `memtracectl stats --pid P`: the counters of one process. */
#include "client.h"

static int cmd_stats_exec(struct client *c, int argc, char **argv);

enum {
	OPT_PID = CLIENT_OPT_CMD,
};

const struct cmd_entry cmd_stats_entry = {
    .name = "stats",
    .args = "--pid P",
    .summary = "current and peak bytes, blocks and counters of a process",
    .help = "Print the counters of one traced process: current and peak traced bytes,\n"
            "live blocks, allocations, frees, events lost, distinct stacks, how it is\n"
            "sampled, and whether one of the daemon's limits was reached.\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n",
    .exec = cmd_stats_exec,
};

static int cmd_stats_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {
	    {"pid", required_argument, NULL, OPT_PID},
	    CLIENT_COMMON_OPTIONS,
	};
	const char *pid_arg = NULL;
	cJSON *req;
	int ch, pid = 0;

	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1) {
		if (ch == OPT_PID)
			pid_arg = optarg;
		else
			client_opt_common(c, ch, argv);
	}
	client_opt_end(c, argc, argv);
	client_opt_pid(c, pid_arg, &pid);
	if (c->help)
		return client_help(&cmd_stats_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "stats");
	cJSON_AddNumberToObject(req, "pid", pid);
	return client_request(c, req, table_stats);
}
