/*
 * check_lineage.c - agent/lineage.c: how MEMTRACE_FOLLOW_FORK=0 tells the
 * traced process from its descendants.
 *
 * The LD_PRELOAD editing and the /proc/PID/stat parsing are pure and checked
 * against lists written out here; the identity the traced process puts in
 * its environment is checked against /proc/self/stat read with sscanf, as
 * memtraced reads it, not with the code under test.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lineage.h"
#include "suites.h"

static void strip_case(const char *list, const char *name, const char *want)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", list);
	lineage_strip_preload(buf, name);
	ck_assert_msg(strcmp(buf, want) == 0, "strip %s from \"%s\": \"%s\", expected \"%s\"", name,
	              list, buf, want);
}

START_TEST(test_strip_preload)
{
	strip_case("/usr/lib/memtrace/libmemtrace.so", "libmemtrace.so", "");
	strip_case("libmemtrace.so", "libmemtrace.so", "");
	strip_case("/a/libmemtrace.so:/b/libfoo.so", "libmemtrace.so", "/b/libfoo.so");
	strip_case("/b/libfoo.so /a/libmemtrace.so", "libmemtrace.so", "/b/libfoo.so");
	strip_case("libfoo.so libmemtrace.so:libbar.so", "libmemtrace.so", "libfoo.so:libbar.so");
	/* Blanks and colons in any number, at either end. */
	strip_case(" :libfoo.so::  libmemtrace.so :", "libmemtrace.so", "libfoo.so");
	/* The file name must match whole, not a prefix or suffix of it. */
	strip_case("/x/libmemtrace.so.1:/x/mylibmemtrace.so", "libmemtrace.so",
	           "/x/libmemtrace.so.1:/x/mylibmemtrace.so");
	/* A directory of that name is not the file. */
	strip_case("/libmemtrace.so/libfoo.so", "libmemtrace.so", "/libmemtrace.so/libfoo.so");
	/* Every entry naming it goes. */
	strip_case("/a/libmemtrace.so:/b/libmemtrace.so", "libmemtrace.so", "");
	strip_case("", "libmemtrace.so", "");
}
END_TEST

static int start_of(const char *text, uint64_t *out)
{
	return lineage_parse_start(text, strlen(text), out);
}

START_TEST(test_parse_start)
{
	uint64_t v = 0;

	/* Fields 3 to 22 after the command name; the start time is 4242. */
	ck_assert_int_eq(start_of("123 (prog) S 1 123 123 0 -1 4194560 10 0 0 0 0 0 0 0 20 0 1 0 "
	                          "4242 1000 10 18446744073709551615",
	                          &v),
	                 0);
	ck_assert_uint_eq(v, 4242);
	/* A command name with blanks and parentheses. */
	ck_assert_int_eq(
	    start_of("7 (a) b (c) d) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 5", &v), 0);
	ck_assert_uint_eq(v, 99);
	ck_assert_int_eq(start_of("7 (x) R 1 7 7 0", &v), -EINVAL);
	ck_assert_int_eq(start_of("no parenthesis at all", &v), -EINVAL);
	ck_assert_int_eq(start_of("7 (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x", &v),
	                 -EINVAL);
}
END_TEST

/* This process's start time, read as memtraced reads it. */
static unsigned long long own_start(void)
{
	char buf[1024];
	unsigned long long st = 0;
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(
	    sscanf(p + 2,
	           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
	           "%*d %*d %llu",
	           &st),
	    1);
	return st;
}

START_TEST(test_root_names_itself)
{
	char want[64];

	unsetenv(LINEAGE_ENV);
	ck_assert_int_eq(lineage_is_descendant(), 0);
	snprintf(want, sizeof(want), "%ld:%llu", (long)getpid(), own_start());
	ck_assert_ptr_nonnull(getenv(LINEAGE_ENV));
	ck_assert_str_eq(getenv(LINEAGE_ENV), want);
	/* The same process again (an image it exec'd): still the traced one. */
	ck_assert_int_eq(lineage_is_descendant(), 0);
	ck_assert_str_eq(getenv(LINEAGE_ENV), want);
	/* setenv still works on the environment it left. */
	ck_assert_int_eq(setenv("MEMTRACE_LINEAGE_TEST", "1", 1), 0);
	ck_assert_str_eq(getenv("MEMTRACE_LINEAGE_TEST"), "1");
	ck_assert_str_eq(getenv(LINEAGE_ENV), want);
	unsetenv("MEMTRACE_LINEAGE_TEST");
	unsetenv(LINEAGE_ENV);
}
END_TEST

START_TEST(test_descendant)
{
	char other[64];

	/* Another pid, or this pid with another start time (a recycled pid). */
	snprintf(other, sizeof(other), "%ld:%llu", (long)getppid(), own_start());
	setenv(LINEAGE_ENV, other, 1);
	ck_assert_int_eq(lineage_is_descendant(), 1);
	snprintf(other, sizeof(other), "%ld:%llu", (long)getpid(), own_start() + 1);
	setenv(LINEAGE_ENV, other, 1);
	ck_assert_int_eq(lineage_is_descendant(), 1);
	/* Not an identity: this process is the one started. */
	setenv(LINEAGE_ENV, "garbage", 1);
	ck_assert_int_eq(lineage_is_descendant(), 0);
	snprintf(other, sizeof(other), "%ld:%llu", (long)getpid(), own_start());
	ck_assert_str_eq(getenv(LINEAGE_ENV), other);
	unsetenv(LINEAGE_ENV);
}
END_TEST

Suite *lineage_suite(void)
{
	Suite *s = suite_create("lineage");
	TCase *tc = tcase_create("lineage");
	tcase_add_test(tc, test_strip_preload);
	tcase_add_test(tc, test_parse_start);
	tcase_add_test(tc, test_root_names_itself);
	tcase_add_test(tc, test_descendant);
	suite_add_tcase(s, tc);
	return s;
}
