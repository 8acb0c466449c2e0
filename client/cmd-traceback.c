/*
 * cmd-traceback.c - `memtracectl traceback (--pid P | --snapshot ID|FILE)`:
 * the largest live blocks, from the daemon or from a snapshot file.
 */
#include "client.h"

#include "snapshot.h"

static int cmd_traceback_exec(struct client *c, const struct args *a);

/* The daemon's default for "limit" (daemon/CONTROL.md). */
#define TRACEBACK_DEFAULT_LIMIT 10

const struct cmd_entry cmd_traceback_entry = {
    .name = "traceback",
    .usage = "(--pid P | --snapshot ID|FILE) [--limit N]",
    .summary = "the largest live blocks of a process and where they came from",
    .help = "Print the largest live blocks of a traced process, largest first, each\n"
            "with the full traceback of its allocation, most recent call first.\n"
            "A snapshot holds only its largest blocks, so --limit cannot show more\n"
            "of them than it kept.\n\n"
            "Options:\n"
            "  --pid P             the traced process\n"
            "  --snapshot ID|FILE  a stored snapshot (an id: digits only) or a snapshot\n"
            "                      file written by 'snapshot -o' instead of --pid\n"
            "  --limit N           how many blocks (default 10, 0 = all)\n",
    /* --limit is a count that exec checks itself, after --pid and
     * --snapshot, whose errors say more and so come first. */
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID},
                                                     {"limit", 0, ARGS_STRING},
                                                     {"snapshot", 0, ARGS_SNAPREF},
                                                     {NULL}}},
    .exec = cmd_traceback_exec,
};

static cJSON *traceback_answer(const struct snapshot *s, void *arg)
{
	return snapshot_traceback_json(s, *(size_t *)arg);
}

static int cmd_traceback_exec(struct client *c, const struct args *a)
{
	const char *limit_arg = args_get(a, "limit"), *snap_arg = args_get(a, "snapshot");
	struct snapref ref = {0};
	cJSON *req;
	int pid = 0, limit = TRACEBACK_DEFAULT_LIMIT;

	snapref_choose(c, args_get(a, "pid"), snap_arg, &pid, &ref);
	if (limit_arg != NULL)
		client_opt_count(c, "--limit", limit_arg, &limit);
	if (c->usage_error != NULL)
		return client_usage_error(c);
	if (snap_arg != NULL && ref.kind == SNAPREF_FILE) {
		size_t n = (size_t)limit;
		return snapref_answer(c, &ref, traceback_answer, &n, table_traceback);
	}

	/* Only what was asked for: the daemon owns the defaults. */
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "traceback");
	if (snap_arg != NULL)
		cJSON_AddNumberToObject(req, "snapshot", (double)ref.id);
	else
		cJSON_AddNumberToObject(req, "pid", pid);
	if (limit_arg != NULL)
		cJSON_AddNumberToObject(req, "limit", limit);
	return client_request(c, req, table_traceback);
}
