/*
 * cmd-flamegraph.c - `memtracectl flamegraph`: a snapshot, or the change
 * between two, as one self-contained HTML page (analysis/flame.h).
 *
 * The snapshots come as compare's do (a live capture, a stored snapshot, a
 * file); the page is built here.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flame.h"
#include "snapshot.h"
#include "xalloc.h"

static int cmd_flamegraph_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_flamegraph_entry = {
    .name = "flamegraph",
    .usage = "(--pid P | --snapshot ID|FILE | --compare A B) [--value WHAT] [-o FILE]",
    .summary = "an interactive flame graph of a process's heap, as one HTML page",
    .help = "Write a flame graph of where the memory of a traced process is (a capture\n"
            "now; of an exited process, what it held at the end), of a stored snapshot\n"
            "or of a snapshot file, as one HTML page that needs nothing else: open it\n"
            "in a browser. Click a frame to zoom, search to mark functions, hover for\n"
            "bytes, count and share.\n\n"
            "Options:\n"
            "  --pid P             the traced process\n"
            "  --snapshot ID|FILE  a stored snapshot (an id: digits only) or a snapshot\n"
            "                      file written by 'snapshot -o' instead of --pid\n"
            "  --compare A B       a differential graph: B (as wide as B's values), each\n"
            "                      frame red where it grew from A, blue where it shrank;\n"
            "                      A and B as for 'compare' (ID, FILE or live:PID)\n"
            "  --value WHAT        size (default: live bytes), peak (live bytes at the\n"
            "                      moment of the peak), allocations or temporary\n"
            "  -o, --output FILE   write to FILE (default: standard output)\n",
    .args =
        {
            .options = (const struct args_option[]){{"pid", 0, ARGS_PID},
                                                    {"snapshot", 0, ARGS_SNAPREF},
                                                    {"compare", 0, ARGS_FLAG},
                                                    {"value", 0, ARGS_STRING},
                                                    {"output", 'o', ARGS_FILE},
                                                    {NULL}},
            .lower = 0,
            .upper = 2,
            .interleaved = true,
        },
    .exec = cmd_flamegraph_exec,
};

/* "memtrace: PID (EXE), <what>" */
static char *title_of(const struct snapshot *s, const struct snapshot *old, const char *value)
{
	const char *exe = s->exe != NULL ? s->exe : "?";
	if (old != NULL)
		return xasprintf("memtrace: %s of pid %d (%s), change from pid %d", value,
		                 (int)s->pid, exe, (int)old->pid);
	return xasprintf("memtrace: %s of pid %d (%s)", value, (int)s->pid, exe);
}

static int cmd_flamegraph_exec(struct client *c, const struct args *a)
{
	const char *value = args_get(a, "value"), *out = args_get(a, "output");
	bool cmp = args_has(a, "compare");
	struct snapref ref = {0}, rold = {0};
	struct snapshot *s = NULL, *old = NULL;
	int pid = 0, rc, v = value != NULL ? flame_value_parse(value) : FLAME_SIZE;

	if (cmp) {
		if (a->noperands != 2 || args_get(a, "pid") != NULL ||
		    args_get(a, "snapshot") != NULL)
			client_opt_error(
			    c, "--compare takes two snapshots, A and B, and neither --pid "
			       "nor --snapshot");
		else {
			snapref_parse(c, "--compare", a->operands[0], true, &rold);
			snapref_parse(c, "--compare", a->operands[1], true, &ref);
		}
	} else if (a->noperands > 0) {
		client_opt_error(c, "flamegraph takes no operands but with --compare A B");
	} else {
		snapref_choose(c, args_get(a, "pid"), args_get(a, "snapshot"), &pid, &ref);
	}
	if (v < 0)
		client_opt_error(
		    c, "--value must be size, peak, allocations or temporary, not '%s'", value);
	if (c->usage_error != NULL)
		return client_usage_error(c);
	if (!cmp && args_get(a, "snapshot") == NULL) {
		ref.kind = SNAPREF_LIVE;
		ref.pid = pid;
		ref.arg = args_get(a, "pid");
	}
	if (cmp && (rc = snapref_load(c, &rold, &old)) != 0)
		return rc;
	if ((rc = snapref_load(c, &ref, &s)) != 0) {
		snapshot_free(old);
		return rc;
	}
	char *title = title_of(s, old, value != NULL ? value : "size");
	size_t n;
	char *page = flame_html(s, old, (enum flame_value)v, title, &n);
	rc = client_write_out(c, out, page, n);
	free(page);
	free(title);
	snapshot_free(s);
	snapshot_free(old);
	return rc;
}
