/* cmd-ui.c - `memtracectl ui`: the URL of the web interface, for this user. */
#include "client.h"

static int cmd_ui_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_ui_entry = {
    .name = "ui",
    .usage = "",
    .summary = "the URL of the web interface in the browser, with a token for you",
    .help = "Print the URL of memtraced's web interface: the processes you may see\n"
            "(root: everybody's), their memory over time, the top table, a live\n"
            "flame graph and the compare of two stored snapshots. memtraced serves it\n"
            "on its metrics address (--metrics-listen, 127.0.0.1:9481 by default).\n\n"
            "The URL carries a token bound to your uid: the page shows what you may\n"
            "see with memtracectl and nothing more, for 12 hours or until memtraced\n"
            "stops. Whoever has the URL sees it as you: do not share it. Without a\n"
            "valid token the server answers 401 and shows nothing.\n",
    .exec = cmd_ui_exec,
};

static int cmd_ui_exec(struct client *c, const struct args *a)
{
	cJSON *req = cJSON_CreateObject();

	(void)a;
	cJSON_AddStringToObject(req, "cmd", "ui");
	return client_request(c, req, table_ui);
}
