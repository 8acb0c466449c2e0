/* cmd-ui.c - `memtracectl ui`: the URL of the web interface, for this user. */
#include "client.h"

#include <stdlib.h>

#include "xalloc.h"

static int cmd_ui_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_ui_entry = {
    .name = "ui",
    .usage = "[--pid P]",
    .summary = "the URL of the web interface in the browser, with a token for you",
    .help = "Print the URL of memtraced's web interface: the processes you may see\n"
            "(root: everybody's), their memory over time, the top table, a live\n"
            "flame graph and the compare of two stored snapshots. memtraced serves it\n"
            "on its metrics address (--metrics-listen, 127.0.0.1:9481 by default).\n\n"
            "The URL carries a token bound to your uid, good once within 10 minutes:\n"
            "the browser that opens it gets a session (a cookie) for 12 hours or until\n"
            "memtraced stops, and the page shows what you may see with memtracectl and\n"
            "nothing more. Without a valid session the server answers 401 and shows\n"
            "nothing. memtraced keeps 4 unused URLs a user: a fifth retires the\n"
            "oldest.\n\n"
            "Options:\n"
            "  --pid P             open the page on process P\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID}, {NULL}}},
    .exec = cmd_ui_exec,
};

static int cmd_ui_exec(struct client *c, const struct args *a)
{
	cJSON *req, *resp = NULL;
	int pid = 0, rc;

	if (args_get(a, "pid") != NULL)
		client_opt_pid(c, args_get(a, "pid"), &pid);
	if (c->usage_error != NULL)
		return client_usage_error(c);
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "ui");
	rc = client_call(c, req, &resp);
	cJSON_Delete(req);
	if (rc != 0)
		return rc;
	const cJSON *url = cJSON_GetObjectItemCaseSensitive(resp, "url");
	if (pid > 0 && cJSON_IsString(url)) {
		char *with = xasprintf("%s&pid=%d", url->valuestring, pid);
		cJSON_ReplaceItemInObjectCaseSensitive(resp, "url", cJSON_CreateString(with));
		free(with);
	}
	client_output(c, resp, table_ui);
	cJSON_Delete(resp);
	return CLIENT_EXIT_OK;
}
