/*
 * cmd-top.c - `memtracectl top --pid P ...`: tracemalloc's
 * Snapshot.statistics() over the live heap of a process.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static int cmd_top_exec(struct client *c, int argc, char **argv);

enum {
	OPT_PID = CLIENT_OPT_CMD,
	OPT_KEY,
	OPT_LIMIT,
	OPT_CUMULATIVE,
	OPT_INCLUDE,
	OPT_EXCLUDE,
	OPT_ALL_FRAMES,
};

const struct cmd_entry cmd_top_entry = {
    .name = "top",
    .args = "--pid P [--key KEY] [--limit N] [--cumulative] [--include PAT]... "
            "[--exclude PAT]... [--all-frames]",
    .summary = "where the live memory of a process was allocated",
    .help = "Group the live blocks of a traced process by where they were allocated\n"
            "and print the groups largest first, as tracemalloc's\n"
            "Snapshot.statistics() does.\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n"
            "  --key KEY           lineno: file and line of the caller of malloc (default);\n"
            "                      filename: its file; function: its function;\n"
            "                      traceback: the whole stack\n"
            "  --limit N           print the N largest groups (default 10, 0 = all)\n"
            "  --cumulative        count a block in every frame of its traceback, not\n"
            "                      only the most recent one (not with --key traceback)\n"
            "  --include PAT       keep only blocks whose file matches the fnmatch(3)\n"
            "                      pattern PAT; may be repeated\n"
            "  --exclude PAT       drop the blocks whose file matches PAT; may be repeated\n"
            "  --all-frames        --include and --exclude match any frame of the\n"
            "                      traceback, not only the most recent one\n",
    .exec = cmd_top_exec,
};

static const char *const top_keys[] = {"lineno", "filename", "function", "traceback"};

static bool top_key_valid(const char *key)
{
	for (size_t i = 0; i < sizeof(top_keys) / sizeof(top_keys[0]); i++) {
		if (strcmp(top_keys[i], key) == 0)
			return true;
	}
	return false;
}

/* One --include or --exclude, in command-line order. */
struct top_filter {
	const char *pattern;
	bool inclusive;
};

static cJSON *top_filters_json(const struct top_filter *f, size_t n, bool all_frames)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "pattern", f[i].pattern);
		cJSON_AddBoolToObject(o, "inclusive", f[i].inclusive);
		cJSON_AddBoolToObject(o, "all_frames", all_frames);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

static int cmd_top_exec(struct client *c, int argc, char **argv)
{
	static const struct option options[] = {
	    {"pid", required_argument, NULL, OPT_PID},
	    {"key", required_argument, NULL, OPT_KEY},
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    {"cumulative", no_argument, NULL, OPT_CUMULATIVE},
	    {"include", required_argument, NULL, OPT_INCLUDE},
	    {"exclude", required_argument, NULL, OPT_EXCLUDE},
	    {"all-frames", no_argument, NULL, OPT_ALL_FRAMES},
	    CLIENT_COMMON_OPTIONS,
	};
	const char *pid_arg = NULL, *limit_arg = NULL, *key = NULL;
	bool cumulative = false, all_frames = false;
	/* No more filters than arguments. */
	struct top_filter *filters = xcalloc((size_t)argc, sizeof(*filters));
	size_t nfilters = 0;
	cJSON *req;
	int ch, pid = 0, limit = 0, rc;

	client_opt_begin();
	while ((ch = getopt_long(argc, argv, CLIENT_OPTSTRING, options, NULL)) != -1) {
		switch (ch) {
		case OPT_PID:
			pid_arg = optarg;
			break;
		case OPT_KEY:
			key = optarg;
			if (!top_key_valid(key))
				client_opt_error(c,
				                 "--key must be lineno, filename, function or "
				                 "traceback, not '%s'",
				                 key);
			break;
		case OPT_LIMIT:
			limit_arg = optarg;
			break;
		case OPT_CUMULATIVE:
			cumulative = true;
			break;
		case OPT_INCLUDE:
		case OPT_EXCLUDE:
			filters[nfilters].pattern = optarg;
			filters[nfilters].inclusive = ch == OPT_INCLUDE;
			nfilters++;
			break;
		case OPT_ALL_FRAMES:
			all_frames = true;
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
	/* As in tracemalloc: a traceback is already the whole stack. */
	if (cumulative && key != NULL && strcmp(key, "traceback") == 0)
		client_opt_error(c, "--cumulative cannot be used with --key traceback");
	if (c->help) {
		rc = client_help(&cmd_top_entry);
		goto out;
	}
	if (c->usage_error != NULL) {
		rc = client_usage_error(c);
		goto out;
	}

	/* Only what was asked for: the daemon owns the defaults. */
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "top");
	cJSON_AddNumberToObject(req, "pid", pid);
	if (key != NULL)
		cJSON_AddStringToObject(req, "key", key);
	if (cumulative)
		cJSON_AddTrueToObject(req, "cumulative");
	if (limit_arg != NULL)
		cJSON_AddNumberToObject(req, "limit", limit);
	if (nfilters > 0)
		cJSON_AddItemToObject(req, "filters",
		                      top_filters_json(filters, nfilters, all_frames));
	rc = client_request(c, req, table_top);
out:
	free(filters);
	return rc;
}
