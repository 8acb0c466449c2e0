/* cmd-list.c - `memtracectl list`: the traced processes the user may see. */
#include "client.h"

static int cmd_list_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_list_entry = {
    .name = "list",
    .usage = "",
    .summary = "the traced processes, live and exited",
    .help = "List the traced processes you may see (yours; every one for root), live\n"
            "or exited, with their current and peak traced bytes, live blocks,\n"
            "executable and command line.\n",
    .exec = cmd_list_exec,
};

static int cmd_list_exec(struct client *c, const struct args *a)
{
	cJSON *req = cJSON_CreateObject();

	(void)a;
	cJSON_AddStringToObject(req, "cmd", "list");
	return client_request(c, req, table_list);
}
