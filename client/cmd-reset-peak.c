/* cmd-reset-peak.c - `memtracectl reset-peak --pid P`: peak := current. */
#include "client.h"

static int cmd_reset_peak_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_reset_peak_entry = {
    .name = "reset-peak",
    .usage = "--pid P",
    .summary = "set the peak of a process to its current bytes",
    .help = "Set the peak traced bytes of a process to its current traced bytes, as\n"
            "tracemalloc.reset_peak() does, so that the next peak read is the peak of\n"
            "what the process does from now on. Prints the new peak.\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID}, {NULL}}},
    .exec = cmd_reset_peak_exec,
};

static int cmd_reset_peak_exec(struct client *c, const struct args *a)
{
	cJSON *req;
	int pid = 0;

	if (client_opt_pid(c, args_get(a, "pid"), &pid) < 0)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "reset-peak");
	cJSON_AddNumberToObject(req, "pid", pid);
	return client_request(c, req, table_reset_peak);
}
