/*
 * check_paths.c - the runtime and state directory rules of paths.h.
 *
 * The daemon, the agent and the client each compute these paths on their own,
 * so a rule that drifts silently splits them onto different sockets. The
 * expected strings are written out here from the rules, not computed by the
 * code under test.
 *
 * The rules depend on who runs them: root gets the system directories. CI
 * runs as root and developers usually do not, so every test asks geteuid()
 * (the ground truth) and checks the branch that applies. A fixture clears
 * every variable the rules read before each test and puts them back after,
 * so the tests hold with or without Check's fork mode.
 */
/* config.h defines _GNU_SOURCE (AC_USE_SYSTEM_EXTENSIONS); without it
 * -std=c11 hides setenv, unsetenv and strdup. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "paths.h"
#include "safedir.h"
#include "suites.h"

static const char *const vars[] = {
    "MEMTRACE_RUNTIME_DIR", "MEMTRACE_STATE_DIR", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "HOME",
};
#define N_VARS (sizeof(vars) / sizeof(vars[0]))

static char *saved[N_VARS];

static void env_clear(void)
{
	for (size_t i = 0; i < N_VARS; i++) {
		const char *v = getenv(vars[i]);
		saved[i] = v != NULL ? strdup(v) : NULL;
		unsetenv(vars[i]);
	}
}

static void env_restore(void)
{
	for (size_t i = 0; i < N_VARS; i++) {
		if (saved[i] != NULL)
			setenv(vars[i], saved[i], 1);
		else
			unsetenv(vars[i]);
		free(saved[i]);
		saved[i] = NULL;
	}
}

static void set(const char *name, const char *value)
{
	ck_assert_int_eq(setenv(name, value, 1), 0);
}

static int is_root(void)
{
	return geteuid() == 0;
}

/* The unprivileged fallback, /tmp/memtrace-$UID, followed by suffix. */
static const char *tmp_dir(const char *suffix)
{
	static char s[64];

	snprintf(s, sizeof(s), "/tmp/memtrace-%u%s", (unsigned)geteuid(), suffix);
	return s;
}

static void assert_runtime(const char *want)
{
	char got[512];

	memset(got, 'x', sizeof(got));
	ck_assert_int_eq(paths_runtime_dir(got, sizeof(got)), 0);
	ck_assert_str_eq(got, want);
}

static void assert_state(const char *want)
{
	char got[512];

	memset(got, 'x', sizeof(got));
	ck_assert_int_eq(paths_state_dir(got, sizeof(got)), 0);
	ck_assert_str_eq(got, want);
}

/* ---- runtime dir ---- */

START_TEST(test_runtime_nothing_set)
{
	assert_runtime(is_root() ? "/run/memtrace" : tmp_dir(""));
}
END_TEST

START_TEST(test_runtime_xdg)
{
	set("XDG_RUNTIME_DIR", "/run/user/1000");
	/* Root ignores XDG_RUNTIME_DIR: the system daemon's sockets must not
	 * move because an admin ran it from a login shell. */
	assert_runtime(is_root() ? "/run/memtrace" : "/run/user/1000/memtrace");
}
END_TEST

START_TEST(test_runtime_override)
{
	set("MEMTRACE_RUNTIME_DIR", "/srv/mt");
	assert_runtime("/srv/mt");

	/* It wins over everything else, as root too, so one variable points
	 * daemon, agent and client at the same sockets. */
	set("XDG_RUNTIME_DIR", "/run/user/1000");
	assert_runtime("/srv/mt");
}
END_TEST

START_TEST(test_runtime_relative_ignored)
{
	/* A relative directory would mean a different socket for every cwd, so
	 * relative (and empty) values are ignored as if unset. */
	static const char *const bad[] = {"", "srv/mt", "./mt", "~/mt", " /srv/mt"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set("MEMTRACE_RUNTIME_DIR", bad[i]);
		unsetenv("XDG_RUNTIME_DIR");
		assert_runtime(is_root() ? "/run/memtrace" : tmp_dir(""));

		set("XDG_RUNTIME_DIR", "/run/user/1000");
		assert_runtime(is_root() ? "/run/memtrace" : "/run/user/1000/memtrace");
	}

	unsetenv("MEMTRACE_RUNTIME_DIR");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set("XDG_RUNTIME_DIR", bad[i]);
		assert_runtime(is_root() ? "/run/memtrace" : tmp_dir(""));
	}
}
END_TEST

START_TEST(test_runtime_too_long)
{
	char dir[5000];
	char out[256];

	/* The override exactly fills the buffer with its NUL, then one more. */
	memset(dir, 'a', sizeof(dir));
	dir[0] = '/';
	dir[sizeof(out) - 1] = '\0';
	set("MEMTRACE_RUNTIME_DIR", dir);
	ck_assert_int_eq(paths_runtime_dir(out, sizeof(out)), 0);
	ck_assert_str_eq(out, dir);
	ck_assert_int_eq(paths_runtime_dir(out, sizeof(out) - 1), -ENAMETOOLONG);

	memset(dir, 'a', sizeof(dir));
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	set("MEMTRACE_RUNTIME_DIR", dir);
	ck_assert_int_eq(paths_runtime_dir(out, sizeof(out)), -ENAMETOOLONG);
	ck_assert_int_eq(paths_runtime_dir(out, 0), -ENAMETOOLONG);
	unsetenv("MEMTRACE_RUNTIME_DIR");

	/* The default of whoever we are, with and without room for its NUL. */
	const char *def = is_root() ? "/run/memtrace" : tmp_dir("");
	size_t len = strlen(def);
	ck_assert_int_eq(paths_runtime_dir(out, len + 1), 0);
	ck_assert_str_eq(out, def);
	ck_assert_int_eq(paths_runtime_dir(out, len), -ENAMETOOLONG);

	/* XDG_RUNTIME_DIR plus "/memtrace" (only read when not root). */
	set("XDG_RUNTIME_DIR", "/run/user/1000");
	def = is_root() ? "/run/memtrace" : "/run/user/1000/memtrace";
	len = strlen(def);
	ck_assert_int_eq(paths_runtime_dir(out, len + 1), 0);
	ck_assert_str_eq(out, def);
	ck_assert_int_eq(paths_runtime_dir(out, len), -ENAMETOOLONG);
	set("XDG_RUNTIME_DIR", dir);
	ck_assert_int_eq(paths_runtime_dir(out, sizeof(out)), is_root() ? 0 : -ENAMETOOLONG);
}
END_TEST

/* ---- state dir ---- */

START_TEST(test_state_nothing_set)
{
	/* Without HOME there is no ~ to expand: the code does not look the user
	 * up in passwd (that allocates), it falls back beside the runtime dir. */
	assert_state(is_root() ? "/var/lib/memtrace" : tmp_dir("/state"));
}
END_TEST

START_TEST(test_state_home)
{
	set("HOME", "/home/ann");
	assert_state(is_root() ? "/var/lib/memtrace" : "/home/ann/.local/state/memtrace");
}
END_TEST

START_TEST(test_state_xdg)
{
	set("HOME", "/home/ann");
	set("XDG_STATE_HOME", "/data/state");
	assert_state(is_root() ? "/var/lib/memtrace" : "/data/state/memtrace");
}
END_TEST

START_TEST(test_state_override)
{
	set("MEMTRACE_STATE_DIR", "/srv/mt-state");
	assert_state("/srv/mt-state");
	set("HOME", "/home/ann");
	set("XDG_STATE_HOME", "/data/state");
	assert_state("/srv/mt-state");

	/* The runtime override does not move the state dir, nor the reverse. */
	set("MEMTRACE_RUNTIME_DIR", "/srv/mt");
	assert_state("/srv/mt-state");
	assert_runtime("/srv/mt");
}
END_TEST

START_TEST(test_state_relative_ignored)
{
	static const char *const bad[] = {"", "state", "./state", "~/state"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set("MEMTRACE_STATE_DIR", bad[i]);
		set("XDG_STATE_HOME", bad[i]);
		set("HOME", "/home/ann");
		assert_state(is_root() ? "/var/lib/memtrace" : "/home/ann/.local/state/memtrace");

		set("HOME", bad[i]);
		assert_state(is_root() ? "/var/lib/memtrace" : tmp_dir("/state"));
	}
}
END_TEST

START_TEST(test_state_too_long)
{
	char dir[5000];
	char out[128];

	memset(dir, 'b', sizeof(dir));
	dir[0] = '/';
	dir[sizeof(out) - 1] = '\0';
	set("MEMTRACE_STATE_DIR", dir);
	ck_assert_int_eq(paths_state_dir(out, sizeof(out)), 0);
	ck_assert_str_eq(out, dir);
	ck_assert_int_eq(paths_state_dir(out, sizeof(out) - 1), -ENAMETOOLONG);
	unsetenv("MEMTRACE_STATE_DIR");

	set("HOME", "/home/ann");
	const char *def = is_root() ? "/var/lib/memtrace" : "/home/ann/.local/state/memtrace";
	size_t len = strlen(def);
	ck_assert_int_eq(paths_state_dir(out, len + 1), 0);
	ck_assert_str_eq(out, def);
	ck_assert_int_eq(paths_state_dir(out, len), -ENAMETOOLONG);
	ck_assert_int_eq(paths_state_dir(out, 0), -ENAMETOOLONG);

	/* A HOME that fits alone but not with its suffix. */
	memset(dir, 'b', sizeof(dir));
	dir[0] = '/';
	dir[sizeof(out) - 5] = '\0';
	set("HOME", dir);
	ck_assert_int_eq(paths_state_dir(out, sizeof(out)), is_root() ? 0 : -ENAMETOOLONG);
	set("XDG_STATE_HOME", dir);
	ck_assert_int_eq(paths_state_dir(out, sizeof(out)), is_root() ? 0 : -ENAMETOOLONG);
}
END_TEST

/* ---- join ---- */

START_TEST(test_join)
{
	char out[64];

	ck_assert_int_eq(paths_join(out, sizeof(out), "/run/memtrace", PATHS_AGENT_SOCK), 0);
	ck_assert_str_eq(out, "/run/memtrace/agent.sock");
	ck_assert_int_eq(paths_join(out, sizeof(out), "/tmp/memtrace-1000", PATHS_CONTROL_SOCK), 0);
	ck_assert_str_eq(out, "/tmp/memtrace-1000/control.sock");

	/* "/run/memtrace/agent.sock" is 24 characters: 25 bytes fit, 24 not. */
	ck_assert_int_eq(paths_join(out, 25, "/run/memtrace", PATHS_AGENT_SOCK), 0);
	ck_assert_str_eq(out, "/run/memtrace/agent.sock");
	ck_assert_int_eq(paths_join(out, 24, "/run/memtrace", PATHS_AGENT_SOCK), -ENAMETOOLONG);
	ck_assert_int_eq(paths_join(out, 0, "/run/memtrace", PATHS_AGENT_SOCK), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_join_sun_path)
{
	/* The socket path ends up in sockaddr_un's small sun_path: a runtime
	 * dir that fits a path buffer can still be too long for a socket, and
	 * that must be an error, not a truncated path that binds elsewhere. */
	struct sockaddr_un addr;
	char dir[sizeof(addr.sun_path)];
	size_t room = sizeof(addr.sun_path) - 1 - strlen("/" PATHS_AGENT_SOCK);

	memset(dir, 'c', sizeof(dir));
	dir[0] = '/';
	dir[room] = '\0';
	ck_assert_int_eq(paths_join(addr.sun_path, sizeof(addr.sun_path), dir, PATHS_AGENT_SOCK),
	                 0);
	ck_assert_uint_eq(strlen(addr.sun_path), sizeof(addr.sun_path) - 1);

	dir[room] = 'c';
	dir[room + 1] = '\0';
	ck_assert_int_eq(paths_join(addr.sun_path, sizeof(addr.sun_path), dir, PATHS_AGENT_SOCK),
	                 -ENAMETOOLONG);
}
END_TEST

START_TEST(test_runtime_then_join)
{
	/* What every component does: the runtime dir, then a socket in it. */
	char dir[256];
	char sock[256];

	set("MEMTRACE_RUNTIME_DIR", "/srv/mt");
	ck_assert_int_eq(paths_runtime_dir(dir, sizeof(dir)), 0);
	ck_assert_int_eq(paths_join(sock, sizeof(sock), dir, PATHS_CONTROL_SOCK), 0);
	ck_assert_str_eq(sock, "/srv/mt/control.sock");
}
END_TEST

/* safedir_check makes nothing: a missing directory is -ENOENT and stays
 * missing; one of ours, closed to others, passes; one others may write
 * does not (-EPERM, with the reason). */
START_TEST(test_safedir_check)
{
	char base[] = "/tmp/memtrace-safedir-XXXXXX", path[64], why[256] = "";

	ck_assert_ptr_nonnull(mkdtemp(base));
	ck_assert_int_eq(chmod(base, 0700), 0);
	snprintf(path, sizeof path, "%s/missing", base);
	ck_assert_int_eq(safedir_check(path, why, sizeof why), -ENOENT);
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(safedir_check(path, why, sizeof why), 0);
	ck_assert_int_eq(chmod(path, 0777), 0);
	ck_assert_int_eq(safedir_check(path, why, sizeof why), -EPERM);
	ck_assert_msg(strstr(why, path) != NULL, "the reason names the directory: %s", why);
	rmdir(path);
	rmdir(base);
}
END_TEST

Suite *paths_suite(void)
{
	Suite *s = suite_create("paths");
	TCase *tc;

	tc = tcase_create("runtime");
	tcase_add_checked_fixture(tc, env_clear, env_restore);
	tcase_add_test(tc, test_runtime_nothing_set);
	tcase_add_test(tc, test_runtime_xdg);
	tcase_add_test(tc, test_runtime_override);
	tcase_add_test(tc, test_runtime_relative_ignored);
	tcase_add_test(tc, test_runtime_too_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("state");
	tcase_add_checked_fixture(tc, env_clear, env_restore);
	tcase_add_test(tc, test_state_nothing_set);
	tcase_add_test(tc, test_state_home);
	tcase_add_test(tc, test_state_xdg);
	tcase_add_test(tc, test_state_override);
	tcase_add_test(tc, test_state_relative_ignored);
	tcase_add_test(tc, test_state_too_long);
	suite_add_tcase(s, tc);

	tc = tcase_create("join");
	tcase_add_checked_fixture(tc, env_clear, env_restore);
	tcase_add_test(tc, test_join);
	tcase_add_test(tc, test_join_sun_path);
	tcase_add_test(tc, test_runtime_then_join);
	suite_add_tcase(s, tc);

	tc = tcase_create("safedir");
	tcase_add_test(tc, test_safedir_check);
	suite_add_tcase(s, tc);

	return s;
}
