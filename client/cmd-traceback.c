/* cmd-traceback.c - `memtracectl traceback --pid P`: the largest live blocks. */
#include "client.h"

static int cmd_traceback_exec(struct client *c, int argc, char **argv);

enum {
	OPT_PID = CLIENT_OPT_CMD,
	OPT_LIMIT,
};

const struct cmd_entry cmd_traceback_entry = {
    .name = "traceback",
    .args = "--pid P [--limit N]",
    .summary = "the largest live blocks of a process and where they came from",
    .help = "Print the largest live blocks of a traced process, largest first, each\n"
            "with the full traceback of its allocation, most recent call first.\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n"
            "  --limit N           how many blocks (the daemon's default is 10)\n",
    .exec = cmd_traceback_exec,
};

static int cmd_traceback_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {
	    {"pid", required_argument, NULL, OPT_PID},
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    CLIENT_COMMON_OPTIONS,
	};
	const char *pid_arg = NULL, *limit_arg = NULL;
	cJSON *req;
	int ch, pid = 0, limit = 0;

	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1) {
		switch (ch) {
		case OPT_PID:
			pid_arg = optarg;
			break;
		case OPT_LIMIT:
			limit_arg = optarg;
			break;
		default:
			client_opt_common(c, ch, argv);
			break;
		}
	}
	client_opt_end(c, argc, argv);
	client_opt_pid(c, pid_arg, &pid);
	if (limit_arg != NULL)
		client_opt_count(c, "--limit", limit_arg, &limit);
	if (c->help)
		return client_help(&cmd_traceback_entry);
	if (c->usage_error != NULL)
		return client_usage_error(c);

	/* Only what was asked for: the daemon owns the defaults. */
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "traceback");
	cJSON_AddNumberToObject(req, "pid", pid);
	if (limit_arg != NULL)
		cJSON_AddNumberToObject(req, "limit", limit);
	return client_request(c, req, table_traceback);
}
