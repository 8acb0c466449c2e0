/* cmd-status.c - `memtracectl status`: the state of memtraced itself. */
#include "client.h"

static int cmd_status_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_status_entry = {
    .name = "status",
    .usage = "",
    .summary = "the daemon's version, uptime, sessions and limits",
    .help = "Print the state of memtraced itself: its version, pid and uptime, its\n"
            "runtime and state directories, how many traced processes are live and\n"
            "exited, the events it has taken in, its limits (sessions, live blocks,\n"
            "stacks, modules) and the limits users share (agent and control\n"
            "connections, fork images, queued and stored snapshots, the symbol cache,\n"
            "HTTP connections: in use, bounds, yours, refused), the store's and the\n"
            "symbol cache's figures and the loop's longest stall.\n",
    .exec = cmd_status_exec,
};

static int cmd_status_exec(struct client *c, const struct args *a)
{
	cJSON *req = cJSON_CreateObject();

	(void)a;
	cJSON_AddStringToObject(req, "cmd", "status");
	return client_request(c, req, table_status);
}
