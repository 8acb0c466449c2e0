/* cmd-reset-peak.c - `memtracectl reset-peak --pid P`: peak := current. */
#include "client.h"

static int cmd_reset_peak_exec(struct client *c, int argc, char **argv);

enum {
	OPT_PID = CLIENT_OPT_CMD,
};

const struct cmd_entry cmd_reset_peak_entry = {
    .name = "reset-peak",
    .args = "--pid P",
    .summary = "set the peak of a process to its current bytes",
    .help = "Set the peak traced bytes of a process to its current traced bytes, as\n"
            "tracemalloc.reset_peak() does, so that the next peak read is the peak of\n"
            "what the process does from now on. Prints the new peak.\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n",
    .exec = cmd_reset_peak_exec,
};

static int cmd_reset_peak_exec(struct client *c, int argc, char **argv)
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
		return client_help(&cmd_reset_peak_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "reset-peak");
	cJSON_AddNumberToObject(req, "pid", pid);
	return client_request(c, req, table_reset_peak);
}
