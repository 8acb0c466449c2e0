/* cmd-snapshots.c - `memtracectl snapshots [--pid P]`: the stored snapshots. */
#include "client.h"

static int cmd_snapshots_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_snapshots_entry = {
    .name = "snapshots",
    .usage = "[--pid P]",
    .summary = "the stored snapshots, also of processes that have exited",
    .help = "List the snapshots in the daemon's store that you may see, oldest first:\n"
            "periodic ones, those taken with 'snapshot', the one taken when each\n"
            "process exited (or 'detach' ended its session), also for processes that\n"
            "are gone. Each has its id (for\n"
            "--snapshot and 'compare'), pid, executable, time, reason, current and\n"
            "peak traced bytes and live blocks.\n\n"
            "Options:\n"
            "  --pid P             only the snapshots of process P\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID}, {NULL}}},
    .exec = cmd_snapshots_exec,
};

static int cmd_snapshots_exec(struct client *c, const struct args *a)
{
	const char *pid_arg = args_get(a, "pid");
	cJSON *req;
	int pid = 0;

	if (pid_arg != NULL && client_opt_pid(c, pid_arg, &pid) < 0)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "snapshots");
	if (pid_arg != NULL)
		cJSON_AddNumberToObject(req, "pid", pid);
	return client_request(c, req, table_snapshots);
}
