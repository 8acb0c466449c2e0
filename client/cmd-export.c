/*
 * cmd-export.c - `memtracectl export (--pid P | --snapshot ID|FILE)
 * [--format pprof|folded] [--value WHAT] [-o FILE]`: a snapshot in the
 * formats of other tools (analysis/export.h).
 *
 * The snapshot comes as compare's do (a live capture, a stored snapshot, a
 * file) and is converted here. pprof is gzipped (zlib), as `go tool pprof`
 * and the profilers that read profile.proto expect; it is binary, so it goes
 * to a terminal only with -o.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "export.h"
#include "snapshot.h"
#include "xalloc.h"

static int cmd_export_exec(struct client *c, const struct args *a);

const struct cmd_entry cmd_export_entry = {
    .name = "export",
    .usage = "(--pid P | --snapshot ID|FILE) [--format pprof|folded] [--value WHAT] [--at peak] "
             "[-o FILE]",
    .summary = "write a snapshot as a pprof profile or as folded stacks",
    .help = "Write the heap of a traced process (a capture now), a stored snapshot or a\n"
            "snapshot file in a format other tools read.\n\n"
            "Options:\n"
            "  --pid P             the traced process (live, or its exit snapshot)\n"
            "  --snapshot ID|FILE  a stored snapshot (an id: digits only) or a snapshot\n"
            "                      file written by 'snapshot -o' instead of --pid\n"
            "  --format FORMAT     pprof (default): a gzipped profile.proto with the\n"
            "                      sample types inuse_space, inuse_objects, alloc_space\n"
            "                      and alloc_objects, for 'go tool pprof'; folded: one\n"
            "                      line per stack, 'outer;...;site VALUE', for\n"
            "                      flamegraph.pl, inferno and speedscope\n"
            "  --value WHAT        folded: size (default: live bytes), count,\n"
            "                      allocations, allocated or temporary\n"
            "  --at peak           live bytes and blocks (size, count; pprof's inuse_*)\n"
            "                      of the moment of the peak instead of now\n"
            "  -o, --output FILE   write to FILE (default: standard output; pprof is\n"
            "                      binary and is not written to a terminal)\n",
    .args = {.options = (const struct args_option[]){{"pid", 0, ARGS_PID},
                                                     {"snapshot", 0, ARGS_SNAPREF},
                                                     {"format", 0, ARGS_STRING},
                                                     {"value", 0, ARGS_SORT},
                                                     {"at", 0, ARGS_STRING},
                                                     {"output", 'o', ARGS_FILE},
                                                     {NULL}}},
    .exec = cmd_export_exec,
};

/* gzip of n bytes at p, in memory. */
static uint8_t *gzip(const uint8_t *p, size_t n, size_t *outlen)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	/* windowBits 15 + 16: a gzip header and trailer around the deflate data. */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return NULL;
	size_t cap = deflateBound(&z, (uLong)n) + 32;
	uint8_t *out = xmalloc(cap);
	z.next_in = (Bytef *)(uintptr_t)p;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	*outlen = cap - z.avail_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(out);
		return NULL;
	}
	return out;
}

static int cmd_export_exec(struct client *c, const struct args *a)
{
	const char *format = args_get(a, "format"), *value = args_get(a, "value");
	const char *out = args_get(a, "output");
	struct snapref ref = {0};
	struct snapshot *s = NULL;
	enum query_sort v = QUERY_SORT_SIZE;
	int pid = 0, rc;
	bool folded = format != NULL && strcmp(format, "folded") == 0;

	snapref_choose(c, args_get(a, "pid"), args_get(a, "snapshot"), &pid, &ref);
	if (format != NULL && !folded && strcmp(format, "pprof") != 0)
		client_opt_error(c, "--format must be pprof or folded, not '%s'", format);
	const char *at = args_get(a, "at");
	if (value != NULL && !folded)
		client_opt_error(c, "--value is for --format folded (pprof holds every value)");
	if (at != NULL && strcmp(at, "peak") != 0 && strcmp(at, "now") != 0)
		client_opt_error(c, "--at must be peak or now, not '%s'", at);
	if (!folded && out == NULL && isatty(STDOUT_FILENO))
		client_opt_error(c, "a pprof profile is binary: give -o FILE, or redirect the "
		                    "output");
	if (c->usage_error != NULL)
		return client_usage_error(c);
	if (value != NULL)
		query_sort_parse(value, &v);
	if (args_get(a, "snapshot") == NULL) {
		ref.kind = SNAPREF_LIVE;
		ref.pid = pid;
		ref.arg = args_get(a, "pid");
	}
	rc = snapref_load(c, &ref, &s);
	if (rc != 0)
		return rc;
	if (at != NULL && strcmp(at, "peak") == 0)
		for (size_t i = 0; i < s->ntraces; i++) {
			s->traces[i].size = s->traces[i].peak_size;
			s->traces[i].count = s->traces[i].peak_count;
		}
	size_t n;
	if (folded) {
		char *text = export_folded(s, v, &n);
		rc = client_write_out(c, out, text, n);
		free(text);
	} else {
		uint8_t *raw = export_pprof(s, &n), *gz;
		size_t gzn;
		gz = gzip(raw, n, &gzn);
		free(raw);
		if (gz == NULL)
			rc = client_error(c, CLIENT_EXIT_ERROR, "internal", "gzip failed");
		else
			rc = client_write_out(c, out, gz, gzn);
		free(gz);
	}
	snapshot_free(s);
	return rc;
}
