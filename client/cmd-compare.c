/*
 * cmd-compare.c - `memtracectl compare A B ...`: tracemalloc's
 * B.compare_to(A, key_type, cumulative), what grew from A to B.
 *
 * The comparison is computed here, with analysis/query.c, from the two
 * snapshot documents: A and B may come from two different places (a stored
 * snapshot, a file from another machine, a live capture), and a file is never
 * handed to the daemon. The daemon only serves the documents.
 */
#include "client.h"

#include <stdlib.h>

#include "query.h"
#include "snapshot.h"

static int cmd_compare_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_compare_entry = {
    .name = "compare",
    .usage = "A B " STATARGS_SYNOPSIS,
    .summary = "what changed between two snapshots",
    .help = "Compare snapshot B (the newer) with snapshot A (the older), as\n"
            "tracemalloc's B.compare_to(A, key) does: group both by KEY and print\n"
            "each group's size and count in B with the difference from A, the\n"
            "groups that changed most first (by abs(size_diff), size,\n"
            "abs(count_diff), count).\n\n"
            "A and B are each:\n"
            "  ID                  a stored snapshot (digits only; see 'snapshots')\n"
            "  live:PID            the live heap of process PID now (not stored)\n"
            "  FILE                a snapshot file written by 'snapshot -o' (write ./123\n"
            "                      for a file named 123)\n\n"
            "Options:\n" STATARGS_HELP,
    .args =
        {
            .options = (const struct args_option[]){STATARGS_OPTIONS, {NULL}},
            .lower = 2,
            .upper = 2,
            .interleaved = true,
            .missing = "compare needs two snapshots: memtracectl compare A B",
        },
    .exec = cmd_compare_exec,
};

static int compare_run(struct client *c, const struct snapref *ra, const struct snapref *rb,
                       struct statargs *args)
{
	struct snapshot *a = NULL, *b = NULL;
	struct trace_group *ga, *gb;
	void *sa = NULL, *sb = NULL;
	size_t na = 0, nb = 0;
	struct query_opts o;
	cJSON *resp = NULL;
	int rc;

	rc = snapref_load(c, ra, &a);
	if (rc != 0)
		goto out;
	rc = snapref_load(c, rb, &b);
	if (rc != 0)
		goto out;
	statargs_opts(args, &o);
	ga = snapshot_groups(a, o.at_peak, &sa, &na);
	gb = snapshot_groups(b, o.at_peak, &sb, &nb);
	rc = query_compare(ga, na, gb, nb, &o, &resp);
	free(sa);
	free(sb);
	if (rc < 0) {
		rc =
		    client_error(c, CLIENT_EXIT_USAGE, "bad_request", "invalid statistics options");
		goto out;
	}
	cJSON_AddItemToObject(resp, "old", snapref_summary_json(ra, a));
	cJSON_AddItemToObject(resp, "new", snapref_summary_json(rb, b));
	client_output(c, resp, table_compare);
	rc = CLIENT_EXIT_OK;
out:
	cJSON_Delete(resp);
	snapshot_free(b);
	snapshot_free(a);
	return rc;
}

static int cmd_compare_exec(struct client *c, const struct args *a)
{
	struct snapref ra = {0}, rb = {0};
	struct statargs st;
	int rc;

	snapref_parse(c, "compare", a->operands[0], true, &ra);
	snapref_parse(c, "compare", a->operands[1], true, &rb);
	statargs_init(&st, c, a);
	if (c->usage_error != NULL) {
		rc = client_usage_error(c);
		goto out;
	}
	rc = compare_run(c, &ra, &rb, &st);
out:
	statargs_close(&st);
	return rc;
}
