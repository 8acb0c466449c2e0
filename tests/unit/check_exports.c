/*
 * check_exports.c - the agent exports exactly the functions it interposes.
 *
 * libmemtrace.so is loaded into every traced program; any other symbol it
 * exported could capture a program's own function of the same name. The
 * build uses -fvisibility=hidden and marks only the hooks AGENT_EXPORT; this
 * suite reads the built library's dynamic symbol table (nm -D) and compares
 * it with the list below: the functions the README and libmemtrace(7) say
 * the agent interposes: the allocation functions, and the descriptor
 * functions that keep the agent's descriptors from the program's; besides
 * them, the marker that tells a late load and memtrace_attach.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"

/* The allocation functions, dlclose (the unwind rules of unloaded code are
 * forgotten, agent/cfi.h), then the descriptor functions that keep the
 * agent's descriptors from the program's (agent/fdguard.h). */
static const char *const expected[] = {
    "aligned_alloc", "calloc",  "free",         "malloc", "memalign", "posix_memalign",
    "pvalloc",       "realloc", "reallocarray", "valloc", "close",    "close_range",
    "closefrom",     "dup2",    "dup3",         "pipe2",  "dlclose",
};
#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

static const char *builddir(void)
{
	const char *b = getenv("MEMTRACE_BUILDDIR");
	return b != NULL && b[0] != '\0' ? b : TEST_BUILDDIR;
}

START_TEST(test_exports_are_the_hooks)
{
	char cmd[4096], line[512];
	int seen[NEXPECTED] = {0};
	size_t extra = 0, marker = 0, entry = 0;

	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s/agent/.libs/libmemtrace.so'",
	         builddir());
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p) != NULL) {
		char addr[64], type[8], name[256];
		if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
			continue;
		size_t i;
		for (i = 0; i < NEXPECTED; i++)
			if (strcmp(name, expected[i]) == 0)
				break;
		if (i < NEXPECTED) {
			ck_assert_str_eq(type, "T");
			seen[i]++;
		} else if (strcmp(name, "memtrace_agent_preloaded") == 0) {
			/* the marker by which the agent tells it was loaded late */
			ck_assert_str_eq(type, "R");
			marker++;
		} else if (strcmp(name, "memtrace_attach") == 0) {
			/* what memtracectl attach calls in a process the agent is in
			 * already (after a detach) */
			ck_assert_str_eq(type, "T");
			entry++;
		} else {
			fprintf(stderr, "unexpected export: %s", line);
			extra++;
		}
	}
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(extra, 0);
	ck_assert_uint_eq(marker, 1);
	ck_assert_uint_eq(entry, 1);
	for (size_t i = 0; i < NEXPECTED; i++)
		ck_assert_msg(seen[i] == 1, "%s exported %d times", expected[i], seen[i]);
}
END_TEST

Suite *exports_suite(void)
{
	Suite *s = suite_create("exports");
	TCase *tc = tcase_create("agent");
	tcase_add_test(tc, test_exports_are_the_hooks);
	suite_add_tcase(s, tc);
	return s;
}
