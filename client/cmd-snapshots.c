/* cmd-snapshots.c - `memtracectl snapshots [--pid P]`: the stored snapshots. */
#include "client.h"

static int cmd_snapshots_exec(struct client *c, int argc, char **argv);

enum {
	OPT_PID = CLIENT_OPT_CMD,
};

const struct cmd_entry cmd_snapshots_entry = {
    .name = "snapshots",
    .args = "[--pid P]",
    .summary = "the stored snapshots, also of processes that have exited",
    .help = "List the snapshots in the daemon's store that you may see, oldest first:\n"
            "periodic ones, those taken with 'snapshot' and the one taken when each\n"
            "process exited, also for processes that are gone. Each has its id (for\n"
            "--snapshot and 'compare'), pid, executable, time, reason, current and\n"
            "peak traced bytes and live blocks.\n\n"
            "Options:\n"
            "  --pid P             only the snapshots of process P\n",
    .exec = cmd_snapshots_exec,
};

static int cmd_snapshots_exec(struct client *c, int argc, char **argv)
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
	if (pid_arg != NULL)
		client_opt_pid(c, pid_arg, &pid);
	if (c->help)
		return client_help(&cmd_snapshots_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "snapshots");
	if (pid_arg != NULL)
		cJSON_AddNumberToObject(req, "pid", pid);
	return client_request(c, req, table_snapshots);
}
