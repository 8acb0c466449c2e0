/*
 * cmd-snapshot.c - `memtracectl snapshot --pid P [-o FILE]`: persist a
 * snapshot now and, with -o, also write it to a file.
 *
 * The file is written here, not by the daemon: memtraced never opens a path a
 * client names (it may run as another user), so the client fetches the stored
 * snapshot's document and writes it itself. That costs a second request, but
 * the file then holds exactly what the store holds under the printed id.
 */
#include "client.h"

#include <string.h>

#include "snapshot.h"

static int cmd_snapshot_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_snapshot_entry = {
    .name = "snapshot",
    .usage = "--pid P [-o FILE]",
    .summary = "persist a snapshot of a process now",
    .help = "Take a snapshot of a traced process now and keep it in the daemon's\n"
            "store, as tracemalloc.take_snapshot() does; print its id and summary.\n"
            "The id is what 'top', 'traceback' and 'stats' take with --snapshot and\n"
            "what 'compare' takes.\n\n"
            "With -o FILE the snapshot is also written to FILE, a self-contained file\n"
            "(symbols included) that --snapshot FILE and 'compare' read on any\n"
            "machine, as tracemalloc's Snapshot.dump() and load(). FILE is replaced\n"
            "atomically; the answer then has \"file\".\n\n"
            "Options:\n"
            "  --pid P             the traced process (required)\n"
            "  -o, --output FILE   also write the snapshot to FILE\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID},
                                                     {"output", 'o', ARGS_FILE},
                                                     {NULL}}},
    .exec = cmd_snapshot_exec,
};

/* Fetches snapshot `id` and writes it to `path`. 0 or the reported exit status. */
static int snapshot_save(struct client *c, const cJSON *id, const char *path)
{
	struct snapshot *s = NULL;
	struct snapref ref = {.kind = SNAPREF_ID};
	int rc;

	/* In range before the conversion, which is undefined past INT64_MAX. */
	if (!cJSON_IsNumber(id) ||
	    !(id->valuedouble >= 1 && id->valuedouble < 9007199254740992.0)) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "bad_response",
		                  "memtraced answered the snapshot without an id");
		goto out;
	}
	ref.id = (int64_t)id->valuedouble;
	ref.arg = "the new snapshot";
	rc = snapref_load(c, &ref, &s);
	if (rc != 0)
		goto out;
	rc = snapshot_write_file(s, path);
	if (rc < 0) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "file_error",
		                  "snapshot %lld is stored, but cannot be written to %s: %s",
		                  (long long)ref.id, path, strerror(-rc));
		goto out;
	}
	rc = 0;
out:
	snapshot_free(s);
	return rc;
}

static int cmd_snapshot_exec(struct client *c, const struct args *a)
{
	const char *output = args_get(a, "output");
	cJSON *req = NULL, *resp = NULL;
	int pid = 0, rc;

	if (client_opt_pid(c, args_get(a, "pid"), &pid) < 0)
		return client_usage_error(c);

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "snapshot");
	cJSON_AddNumberToObject(req, "pid", pid);
	rc = client_call(c, req, &resp);
	if (rc != 0)
		goto out;
	if (output != NULL) {
		rc = snapshot_save(c, cJSON_GetObjectItemCaseSensitive(resp, "id"), output);
		if (rc != 0)
			goto out;
		cJSON_AddStringToObject(resp, "file", output);
	}
	client_output(c, resp, table_snapshot);
	rc = CLIENT_EXIT_OK;
out:
	cJSON_Delete(resp);
	cJSON_Delete(req);
	return rc;
}
