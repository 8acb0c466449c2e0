/*
 * fuzz_snapshot.c - libFuzzer target for the snapshot file reader
 * (analysis/snapshot.h: snapshot_read_file, snapshot_from_json), which
 * memtracectl runs on files a user names and so on anything at all.
 *
 * The input is the file. It is put in a memfd and read back through
 * snapshot_read_file("/proc/self/fd/N"), the path memtracectl takes. Beyond
 * "no crash, no out-of-bounds read, no leak", a snapshot the reader accepts
 * must survive a round trip: snapshot_to_json of it is accepted again by
 * snapshot_from_json (the header promises it takes whatever the writer
 * writes) and prints the same document; and the queries memtracectl then
 * runs on it (top by each key, cumulative or not where tracemalloc allows
 * it, the statistics and the largest blocks) must not fail. A refusal must come with a message.
 *
 * fuzz/standalone.c replays inputs without libFuzzer (see README.md).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "query.h"
#include "jsonout.h"
#include "snapshot.h"
#include "xalloc_cjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print(const struct snapshot *s)
{
	cJSON *j = snapshot_to_json(s);
	char *text;

	if (j == NULL)
		abort();
	text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (text == NULL)
		abort();
	return text;
}

static void round_trip(const struct snapshot *s)
{
	char err[256];
	struct snapshot *again = NULL;
	char *first = print(s);
	/* As snapshot_read_file parses: integers past 2^53 stay exact. */
	cJSON *doc = jsonout_parse(first);

	if (doc == NULL)
		abort();
	if (snapshot_from_json(doc, &again, err, sizeof err) != 0 || again == NULL)
		abort(); /* the writer wrote something the reader refuses */
	cJSON_Delete(doc);
	char *second = print(again);
	if (strcmp(first, second) != 0)
		abort();
	free(first);
	free(second);
	snapshot_free(again);
}

static void queries(const struct snapshot *s)
{
	static const enum query_key keys[] = {QUERY_KEY_LINENO, QUERY_KEY_FILENAME,
	                                      QUERY_KEY_FUNCTION, QUERY_KEY_TRACEBACK};

	for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		/* tracemalloc has no cumulative traceback statistics */
		for (int cum = 0; cum <= (keys[k] != QUERY_KEY_TRACEBACK); cum++) {
			struct query_opts o = {.key = keys[k], .cumulative = cum, .limit = 10};
			cJSON *out = NULL;
			if (snapshot_top_json(s, &o, true, &out) != 0 || out == NULL)
				abort();
			cJSON_Delete(out);
		}
	}
	cJSON *j = snapshot_stats_json(s);
	cJSON_Delete(j);
	j = snapshot_traceback_json(s, 0);
	cJSON_Delete(j);
	j = snapshot_summary_json(s);
	cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[256];
	struct snapshot *s = NULL;
	int fd;
	static int hooked;

	/* As in the programs that link the analysis library: cJSON allocates
	 * through xmalloc, so its builders never return NULL. */
	if (!hooked) {
		xalloc_cjson_hooks();
		hooked = 1;
	}
	fd = memfd_create("fuzz_snapshot", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	err[0] = 'x';
	int rc = snapshot_read_file(path, &s, err, sizeof err);
	close(fd);
	if (rc == 0) {
		if (s == NULL)
			abort();
		round_trip(s);
		queries(s);
		snapshot_free(s);
	} else {
		if (s != NULL || rc != -EINVAL || err[0] == '\0')
			abort();
	}
	return 0;
}
