/* cmd-status.c - `memtracectl status`: the state of memtraced itself. */
#include "client.h"

static int cmd_status_exec(struct client *c, int argc, char **argv);

const struct cmd_entry cmd_status_entry = {
    .name = "status",
    .args = "",
    .summary = "the daemon's version, uptime, sessions and limits",
    .help = "Print the state of memtraced itself: its version, pid and uptime, its\n"
            "runtime and state directories, how many traced processes are live and\n"
            "exited, the events it has taken in, and its limits on sessions, live\n"
            "blocks and stacks.\n",
    .exec = cmd_status_exec,
};

static int cmd_status_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {CLIENT_COMMON_OPTIONS};
	cJSON *req;
	int ch;

	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1)
		client_opt_common(c, ch, argv);
	client_opt_end(c, argc, argv);
	if (c->help)
		return client_help(&cmd_status_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "status");
	return client_request(c, req, table_status);
}
