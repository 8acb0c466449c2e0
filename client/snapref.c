/*
 * snapref.c - naming a snapshot on the command line (an id, live:PID or a
 * file) and loading it. See client.h.
 *
 * A stored or live snapshot travels from the daemon as the same document a
 * file holds, so everything after loading is one path: the client never
 * needs to know where a snapshot came from, except to say it ("file").
 */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "snapshot.h"

/* Ids travel as JSON numbers, which cJSON prints with 15 significant digits
 * whenever that looks close enough to it: only up to 15 digits is every
 * integer sent exactly. */
#define SNAPREF_MAX_ID 999999999999999ul

#define LIVE_PREFIX "live:"

int snapref_parse(struct client *c, const char *what, const char *arg, bool allow_live,
                  struct snapref *out)
{
	unsigned long v;
	int rc;

	*out = (struct snapref){.arg = arg};
	if (arg[0] == '\0') {
		client_opt_error(c, "%s needs a snapshot id or file", what);
		return -EINVAL;
	}
	if (strncmp(arg, LIVE_PREFIX, strlen(LIVE_PREFIX)) == 0) {
		const char *p = arg + strlen(LIVE_PREFIX);

		if (!allow_live) {
			client_opt_error(c,
			                 "%s takes a snapshot id or file, not '%s'; for the live "
			                 "heap use --pid (write ./%s for a file of that name)",
			                 what, arg, arg);
			return -EINVAL;
		}
		rc = client_parse_ulong(p, INT_MAX, &v);
		if (rc < 0 || v == 0) {
			client_opt_error(c, "%s '%s': live: needs a positive pid", what, arg);
			return -EINVAL;
		}
		out->kind = SNAPREF_LIVE;
		out->pid = (int)v;
		return 0;
	}
	rc = client_parse_ulong(arg, SNAPREF_MAX_ID, &v);
	if (rc == -EINVAL) {
		/* Anything that is not all digits names a file. */
		out->kind = SNAPREF_FILE;
		return 0;
	}
	if (rc < 0 || v == 0) {
		client_opt_error(c,
		                 "%s %s is not a snapshot id (ids are from 1 to %lu; write ./%s "
		                 "for a file of that name)",
		                 what, arg, SNAPREF_MAX_ID, arg);
		return -EINVAL;
	}
	out->kind = SNAPREF_ID;
	out->id = (int64_t)v;
	return 0;
}

void snapref_choose(struct client *c, const char *pid_arg, const char *snap_arg, int *pid,
                    struct snapref *ref)
{
	if (snap_arg == NULL && pid_arg == NULL)
		client_opt_error(c, "--pid P or --snapshot ID|FILE is required");
	else if (snap_arg == NULL)
		client_opt_pid(c, pid_arg, pid);
	else if (pid_arg != NULL)
		client_opt_error(c, "--pid and --snapshot cannot be used together");
	else
		snapref_parse(c, "--snapshot", snap_arg, false, ref);
}

static int load_file(struct client *c, const struct snapref *r, struct snapshot **out)
{
	char err[256] = "";
	int rc;

	rc = snapshot_read_file(r->arg, out, err, sizeof(err));
	if (rc == 0)
		return 0;
	*out = NULL;
	/* The reader's message says what is wrong ("not a memtrace snapshot
	 * file (invalid JSON at byte 3)", "traces[3]: frame index 17 out of
	 * range"); the file's name says where. */
	if (rc == -EINVAL)
		return client_error(c, CLIENT_EXIT_ERROR, "bad_snapshot", "%s: %s", r->arg,
		                    err[0] != '\0' ? err : "not a memtrace snapshot file");
	return client_error(c, CLIENT_EXIT_ERROR, "file_error", "cannot read %s: %s", r->arg,
	                    strerror(-rc));
}

static int load_remote(struct client *c, const struct snapref *r, struct snapshot **out)
{
	cJSON *req = cJSON_CreateObject(), *resp = NULL;
	char err[256] = "";
	int rc;

	cJSON_AddStringToObject(req, "cmd", "snapshot-get");
	if (r->kind == SNAPREF_ID)
		cJSON_AddNumberToObject(req, "id", (double)r->id);
	else
		cJSON_AddNumberToObject(req, "pid", r->pid);
	rc = client_call(c, req, &resp);
	if (rc != 0)
		goto out;
	rc = snapshot_from_json(resp, out, err, sizeof(err));
	if (rc < 0) {
		*out = NULL;
		rc = client_error(c, CLIENT_EXIT_ERROR, "bad_response",
		                  "memtraced sent a snapshot (%s) that cannot be read: %s", r->arg,
		                  err[0] != '\0' ? err : strerror(-rc));
		goto out;
	}
	rc = 0;
out:
	cJSON_Delete(resp);
	cJSON_Delete(req);
	return rc;
}

int snapref_load(struct client *c, const struct snapref *r, struct snapshot **out)
{
	*out = NULL;
	if (r->kind == SNAPREF_FILE)
		return load_file(c, r, out);
	return load_remote(c, r, out);
}

int snapref_answer(struct client *c, const struct snapref *r, snapref_answer_fn answer, void *arg,
                   client_render_fn render)
{
	struct snapshot *s = NULL;
	cJSON *resp = NULL, *member;
	int rc;

	rc = snapref_load(c, r, &s);
	if (rc != 0)
		goto out;
	resp = answer(s, arg);
	if (resp == NULL) {
		rc =
		    client_error(c, CLIENT_EXIT_USAGE, "bad_request", "invalid statistics options");
		goto out;
	}
	member = cJSON_GetObjectItemCaseSensitive(resp, "snapshot");
	if (r->kind == SNAPREF_FILE && cJSON_IsObject(member))
		cJSON_AddStringToObject(member, "file", r->arg);
	client_output(c, resp, render);
	rc = CLIENT_EXIT_OK;
out:
	cJSON_Delete(resp);
	snapshot_free(s);
	return rc;
}

cJSON *snapref_summary_json(const struct snapref *r, const struct snapshot *s)
{
	cJSON *o = snapshot_summary_json(s);

	if (r->kind == SNAPREF_FILE)
		cJSON_AddStringToObject(o, "file", r->arg);
	return o;
}
