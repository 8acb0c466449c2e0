/*
 * check_gotpatch.c - agent/gotpatch.c: rewriting the GOTs of the loaded
 * objects, as `memtracectl attach` needs.
 *
 * The test program's own calls to getppid go through its GOT: patched,
 * they reach a replacement (a call, and the function's address taken after
 * the patch); patched again, nothing changes; restored, they reach libc's
 * getppid again. An object in the skipped range is left alone. The entries
 * of an object unloaded since it was patched are forgotten, never written
 * (its pages are gone: the detach that restored them crashed the program).
 */
#include <check.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gotpatch.h"
#include "suites.h"

static pid_t fake_getppid(void)
{
	return -4242;
}

/* Through a pointer the compiler cannot see into: a call it must make. */
static pid_t (*volatile call_it)(pid_t (*)(void));
static pid_t call(pid_t (*f)(void))
{
	return f();
}

START_TEST(test_patch_restore)
{
	const struct gotpatch_hook hooks[] = {{"getppid", (void *)fake_getppid}};
	pid_t real = getppid();

	call_it = call;
	ck_assert_int_ne(real, -4242);
	int n = gotpatch_all(hooks, 1, 0, 0);
	ck_assert_msg(n >= 1, "patched %d entries", n);
	ck_assert_int_eq(getppid(), -4242);
	pid_t (*volatile taken)(void) = getppid;
	ck_assert_int_eq(call_it(taken), -4242);
	/* Again: every entry holds its replacement already. */
	ck_assert_int_eq(gotpatch_all(hooks, 1, 0, 0), 0);
	ck_assert_int_ge(gotpatch_restore(), n);
	ck_assert_int_eq(getppid(), real);
	ck_assert_int_eq(gotpatch_restore(), 0);
}
END_TEST

START_TEST(test_skip)
{
	const struct gotpatch_hook hooks[] = {{"getppid", (void *)fake_getppid}};
	Dl_info info;
	pid_t real = getppid();

	/* Skip the object this test is in: its calls stay libc's. */
	ck_assert(dladdr((void *)fake_getppid, &info) != 0);
	uintptr_t base = (uintptr_t)info.dli_fbase;
	int n = gotpatch_all(hooks, 1, base, base + 1);
	ck_assert_int_ge(n, 0);
	ck_assert_int_eq(getppid(), real);
	gotpatch_restore();
}
END_TEST

/* The plugin's malloc goes on to the allocator: the test's own GOT is not
 * patched. */
static void *wrap_malloc(size_t n)
{
	return malloc(n);
}

struct find {
	const char *part;
	struct dl_phdr_info info;
	bool found;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct find *f = arg;
	(void)size;
	if (info->dlpi_name != NULL && strstr(info->dlpi_name, f->part) != NULL) {
		f->info = *info;
		f->found = true;
	}
	return 0;
}

START_TEST(test_unloaded_object)
{
	const struct gotpatch_hook hooks[] = {{"malloc", (void *)wrap_malloc}};
	const char *b = getenv("MEMTRACE_BUILDDIR");
	char path[4096];
	struct find f = {"libplugin.so", {0}, false};

	snprintf(path, sizeof path, "%s/tests/progs/.libs/libplugin.so",
	         b != NULL && b[0] != '\0' ? b : TEST_BUILDDIR);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(h != NULL, "dlopen %s: %s", path, dlerror());
	dl_iterate_phdr(find_object, &f);
	ck_assert(f.found);
	ck_assert_int_ge(gotpatch_object(&f.info, hooks, 1), 1);
	ck_assert_int_eq(dlclose(h), 0);
	f.found = false;
	dl_iterate_phdr(find_object, &f);
	ck_assert_msg(!f.found, "the plugin is still loaded");
	ck_assert_int_eq(gotpatch_restore(), 0);
}
END_TEST

Suite *gotpatch_suite(void)
{
	Suite *s = suite_create("gotpatch");
	TCase *tc = tcase_create("gotpatch");
	tcase_add_test(tc, test_patch_restore);
	tcase_add_test(tc, test_skip);
	tcase_add_test(tc, test_unloaded_object);
	suite_add_tcase(s, tc);
	return s;
}
