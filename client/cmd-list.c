/* cmd-list.c - `memtracectl list`: the traced processes the user may see. */
#include "client.h"

static int cmd_list_exec(struct client *c, int argc, char **argv);

const struct cmd_entry cmd_list_entry = {
    .name = "list",
    .args = "",
    .summary = "the traced processes, live and exited",
    .help = "List the traced processes you may see (yours; every one for root), live\n"
            "or exited, with their current and peak traced bytes, live blocks,\n"
            "executable and command line.\n",
    .exec = cmd_list_exec,
};

static int cmd_list_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {CLIENT_COMMON_OPTIONS};
	cJSON *req;
	int ch;

	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1)
		client_opt_common(c, ch, argv);
	client_opt_end(c, argc, argv);
	if (c->help)
		return client_help(&cmd_list_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "list");
	return client_request(c, req, table_list);
}
