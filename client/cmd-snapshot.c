/*
 * cmd-snapshot.c - `memtracectl snapshot --pid P [-o FILE]`: persist a
 * snapshot now and, with -o, also write it to a file.
 *
 * The file is written here, not by the daemon: memtraced never opens a path a
 * client names (it may run as another user), so the client fetches the stored
 * snapshot's document and writes it itself. That costs a second request, but
 * the file then holds exactly what the store holds under the printed id.
 * When the store refuses the snapshot (a bound of --max-store-bytes*, or
 * no store), the file is written all the same from the live process (as
 * `compare live:PID` reads it), and the answer says "stored": false and why.
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
            "  -o, --output FILE   also write the snapshot to FILE (even when the store\n"
            "                      refuses it: then \"stored\" is false, with why)\n",
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

/* The store refused the snapshot (err, its answer): the live process's
 * snapshot is written to `path` all the same, and the answer says it was
 * not stored, and why. */
static int snapshot_save_live(struct client *c, int pid, const char *path, const cJSON *err)
{
	struct snapshot *s = NULL;
	struct snapref ref = {.kind = SNAPREF_LIVE, .pid = pid, .arg = "the process"};
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(err, "error");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	int rc = snapref_load(c, &ref, &s);

	if (rc != 0)
		return rc;
	rc = snapshot_write_file(s, path);
	if (rc < 0) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "file_error",
		                  "the snapshot (not stored: %s) cannot be written to %s: %s",
		                  cJSON_IsString(msg) ? msg->valuestring : "store_error", path,
		                  strerror(-rc));
		snapshot_free(s);
		return rc;
	}
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "pid", pid);
	cJSON_AddNullToObject(r, "id");
	cJSON_AddFalseToObject(r, "stored");
	cJSON_AddStringToObject(r, "store_error",
	                        cJSON_IsString(msg) ? msg->valuestring : "store_error");
	cJSON_AddStringToObject(r, "file", path);
	client_output(c, r, table_snapshot);
	cJSON_Delete(r);
	snapshot_free(s);
	return CLIENT_EXIT_OK;
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
	if (output != NULL) {
		/* A snapshot the store refuses (a bound, or no store) still
		 * goes to FILE, which needs no store: from the live process. */
		rc = client_call_raw(c, req, &resp);
		if (rc != 0)
			goto out;
		const char *code = client_error_code(resp);
		if (code != NULL && strcmp(code, "store_error") == 0) {
			rc = snapshot_save_live(c, pid, output, resp);
			goto out;
		}
		if (code != NULL) {
			rc = client_report_error(c, resp);
			goto out;
		}
	} else if ((rc = client_call(c, req, &resp)) != 0) {
		goto out;
	}
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
