/* check_yield.c - drain passes at idle priority (daemon/yield.c): the
 * thread's policy as the kernel reports it, pass by pass; the pressure
 * that keeps a pass at normal priority; the watchdog that ends a starved
 * pass's yield; the check of whether the process may come back from
 * SCHED_IDLE, as root and as an unprivileged user. Each test runs in its
 * own process (check's fork mode), so the policies it sets die with it. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "shm.h"
#include "suites.h"
#include "yield.h"

/* Whether this process may go back from SCHED_IDLE at its nice value:
 * CAP_SYS_NICE (taken as root) or an RLIMIT_NICE that allows its nice. */
static bool kernel_ok(void)
{
	struct utsname u;
	return uname(&u) == 0 && yield_kernel_ok(u.release);
}

static bool may_come_back(void)
{
	struct rlimit rl;
	if (!kernel_ok())
		return false;
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	if (geteuid() == 0)
		return true;
	return getrlimit(RLIMIT_NICE, &rl) == 0 &&
	       (rl.rlim_cur == RLIM_INFINITY || (long)rl.rlim_cur >= 20 - nice);
}

/* yield_start(y, true): whether passes may yield here, asserting that
 * they may exactly when the process may come back from SCHED_IDLE. */
static bool started(struct yielder *y)
{
	yield_start(y, true);
	ck_assert_msg(y->on == may_come_back(), "yield %s: %s", y->on ? "on" : "off", y->why_off);
	return y->on;
}

static int policy(void)
{
	return sched_getscheduler(0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One pass that reads one region (its session's pressure flag *pressed)
 * with `fullest` records in its fullest ring; the policy while it reads is
 * left in *during. */
static void pass_of(struct yielder *y, bool *pressed, uint64_t fullest, bool waiting, int *during)
{
	yield_begin(y);
	yield_reading(y);
	*during = policy();
	yield_saw(y, pressed, fullest, waiting);
	yield_end(y);
}

static bool one_session;

static void pass(struct yielder *y, uint64_t fullest, bool waiting, int *during)
{
	pass_of(y, &one_session, fullest, waiting, during);
}

START_TEST(test_yield_off_when_asked)
{
	struct yielder y = {0};
	int during;

	yield_start(&y, false);
	ck_assert(!y.on);
	ck_assert_msg(strstr(y.why_off, "--no-drain-yield") != NULL, "%s", y.why_off);
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	ck_assert_uint_eq(y.yielded, 0);
	ck_assert_uint_eq(y.normal, 1);
	yield_stop(&y);
}
END_TEST

START_TEST(test_yield_pass_runs_idle)
{
	struct yielder y = {0};
	int during;

	yield_start(&y, true);
	if (!may_come_back()) {
		/* Not allowed here: off, and saying what it needs. */
		ck_assert(!y.on);
		ck_assert_msg(strstr(y.why_off, kernel_ok() ? "RLIMIT_NICE" : "older than 6.6") !=
		                  NULL,
		              "%s", y.why_off);
		return;
	}
	ck_assert_msg(y.on, "%s", y.why_off);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	pass(&y, 10, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	/* A pass that reads nothing changes nothing. */
	yield_begin(&y);
	yield_end(&y);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	/* A read outside a pass (a query's) stays at normal priority. */
	yield_reading(&y);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	ck_assert_uint_eq(y.yielded, 1);
	ck_assert_uint_eq(y.normal, 0);
	/* The nice value comes back with the policy. */
	errno = 0;
	int before = getpriority(PRIO_PROCESS, 0);
	pass(&y, 10, false, &during);
	errno = 0;
	ck_assert_int_eq(getpriority(PRIO_PROCESS, 0), before);
	yield_stop(&y);
	ck_assert_uint_eq(atomic_load(&y.escalations), 0);
}
END_TEST

START_TEST(test_yield_pressure)
{
	struct yielder y = {0};
	int during;

	if (!started(&y))
		return;
	/* A ring three quarters full: this pass yielded, the next does not;
	 * one just below lets the one after yield again. */
	pass(&y, SHM_RING_CAP / 4 * 3, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	pass(&y, SHM_RING_CAP / 4 * 3 - 1, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	/* A thread waiting for room, with the ring nearly empty. */
	pass(&y, 1, true, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	/* Pressure in any one of a pass's regions counts. */
	bool a = false, b = false, c = false;
	yield_begin(&y);
	yield_reading(&y);
	yield_saw(&y, &a, 0, false);
	yield_reading(&y);
	yield_saw(&y, &b, SHM_RING_CAP, false);
	yield_reading(&y);
	yield_saw(&y, &c, 0, false);
	yield_end(&y);
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	/* Another process's calm read does not clear it (a WAKE pass reads
	 * one process): only b's own calm read, or b's end. */
	pass_of(&y, &a, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	pass_of(&y, &b, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	pass_of(&y, &a, 0, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	pass_of(&y, &c, 1, true, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	pass_of(&y, &a, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	yield_forget(&y, &c);
	ck_assert(!c);
	pass_of(&y, &a, 0, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	ck_assert_uint_eq(y.npressed, 0);
	ck_assert_uint_eq(y.yielded, 7);
	ck_assert_uint_eq(y.normal, 6);
	yield_stop(&y);
}
END_TEST

START_TEST(test_yield_watchdog_ends_a_long_pass)
{
	struct yielder y = {.pass_max_ms = 30};
	int during;

	if (!started(&y))
		return;
	ck_assert_uint_eq(y.pass_max_ms, 30);
	/* A pass that takes far longer than 30 ms (asleep here, as a
	 * starved thread would be): the watchdog gives the thread its
	 * priority back while the pass still runs. */
	yield_begin(&y);
	yield_reading(&y);
	ck_assert_int_eq(policy(), SCHED_IDLE);
	sleep_ms(300);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	ck_assert_uint_eq(atomic_load(&y.escalations), 1);
	yield_saw(&y, &one_session, 0, false);
	yield_end(&y);
	ck_assert_int_eq(policy(), SCHED_OTHER);
	/* No pass yields for YIELD_BACKOFF_MS after, whatever it finds. */
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_OTHER);
	sleep_ms(YIELD_BACKOFF_MS + 100);
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	/* A pass within its time is left alone. */
	ck_assert_uint_eq(atomic_load(&y.escalations), 1);
	yield_stop(&y);
}
END_TEST

/* A pass that begins while the watchdog still times the one before gets
 * its own pass_max_ms from its own start, not a period after the
 * watchdog's next look (once up to twice as long). */
START_TEST(test_yield_watchdog_times_each_pass_from_its_start)
{
	struct yielder y = {.pass_max_ms = 200};
	int during;

	if (!started(&y))
		return;
	/* A short yielding pass first: the watchdog starts timing it. */
	pass(&y, 0, false, &during);
	ck_assert_int_eq(during, SCHED_IDLE);
	sleep_ms(20);
	yield_begin(&y);
	yield_reading(&y);
	uint64_t start = now_ms(), back = 0;
	ck_assert_int_eq(policy(), SCHED_IDLE);
	while (now_ms() - start < 1000) {
		sleep_ms(2);
		if (policy() == SCHED_OTHER) {
			back = now_ms() - start;
			break;
		}
	}
	yield_saw(&y, &one_session, 0, false);
	yield_end(&y);
	ck_assert_msg(back >= 195 && back < 300,
	              "the watchdog ended a 200 ms yield after %llu ms (0: never)",
	              (unsigned long long)back);
	ck_assert_uint_eq(atomic_load(&y.escalations), 1);
	yield_stop(&y);
}
END_TEST

/* As an unprivileged user (uid 65534) with RLIMIT_NICE 0, keeping
 * CAP_SYS_NICE or not: whether yield_start turned yielding on, and its
 * reason, through a pipe. (Raising RLIMIT_NICE instead would need
 * CAP_SYS_RESOURCE, which a container may not give even to root; systemd's
 * LimitNICE= is set by a manager that has it.) */
static bool unprivileged_start(bool keep_nice_cap, char *why, size_t n)
{
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		struct yielder y = {0};
		close(fds[0]);
		if (setpriority(PRIO_PROCESS, 0, 0) < 0 || setrlimit(RLIMIT_NICE, &rl) < 0)
			_exit(10);
		if (keep_nice_cap && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
			_exit(11);
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(12);
		if (keep_nice_cap) {
			struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
			struct __user_cap_data_struct d[2] = {{0}};
			d[CAP_SYS_NICE / 32].effective = d[CAP_SYS_NICE / 32].permitted =
			    1u << (CAP_SYS_NICE % 32);
			if (syscall(SYS_capset, &h, d) < 0)
				_exit(13);
		}
		yield_start(&y, true);
		char msg[400];
		int len = snprintf(msg, sizeof(msg), "%d %s", y.on ? 1 : 0, y.why_off);
		if (write(fds[1], msg, (size_t)len) != len)
			_exit(14);
		yield_stop(&y);
		_exit(0);
	}
	close(fds[1]);
	char msg[400] = {0};
	ssize_t r = read(fds[0], msg, sizeof(msg) - 1);
	int st;
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	ck_assert_int_gt(r, 1);
	snprintf(why, n, "%s", msg + 2);
	return msg[0] == '1';
}

START_TEST(test_yield_unprivileged)
{
	char why[400];

	if (geteuid() != 0) {
		/* The same check without the switch of user. */
		struct yielder y = {0};
		yield_start(&y, true);
		ck_assert_int_eq(y.on, may_come_back());
		yield_stop(&y);
		return;
	}
	if (!kernel_ok()) {
		/* The kernel decides before the rights are asked. */
		ck_assert(!unprivileged_start(true, why, sizeof(why)));
		ck_assert_msg(strstr(why, "older than 6.6") != NULL, "%s", why);
		return;
	}
	/* RLIMIT_NICE 0: nice 0 is out of reach once at idle priority. */
	ck_assert(!unprivileged_start(false, why, sizeof(why)));
	ck_assert_msg(strstr(why, "no way back from SCHED_IDLE at nice 0") != NULL &&
	                  strstr(why, "RLIMIT_NICE 20") != NULL,
	              "%s", why);
	/* CAP_SYS_NICE and nothing else: on. */
	ck_assert_msg(unprivileged_start(true, why, sizeof(why)), "%s", why);
}
END_TEST

/* Allowed at the start, refused later (here: CAP_SYS_NICE dropped, and
 * RLIMIT_NICE 0 allows no nice value at all): the daemon says so, turns
 * yielding off and reports the thread as stuck, rather than claiming it
 * runs at its priority. */
START_TEST(test_yield_refused_after_start)
{
	int fds[2];

	if (geteuid() != 0 || !kernel_ok())
		return; /* needs a capability to give up, and a kernel that yields */
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		struct yielder y = {0};
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2] = {{0}};
		close(fds[0]);
		if (setpriority(PRIO_PROCESS, 0, 0) < 0 || setrlimit(RLIMIT_NICE, &rl) < 0 ||
		    prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
		    setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		d[CAP_SYS_NICE / 32].effective = d[CAP_SYS_NICE / 32].permitted =
		    1u << (CAP_SYS_NICE % 32);
		if (syscall(SYS_capset, &h, d) < 0)
			_exit(11);
		yield_start(&y, true);
		if (!y.on)
			_exit(12);
		memset(d, 0, sizeof(d));
		if (syscall(SYS_capset, &h, d) < 0)
			_exit(13);
		bool pressed = false;
		yield_begin(&y);
		yield_reading(&y);
		yield_saw(&y, &pressed, 0, false);
		yield_end(&y);
		char msg[400];
		int len = snprintf(msg, sizeof(msg), "%d %d %d %s", y.on ? 1 : 0, y.stuck ? 1 : 0,
		                   sched_getscheduler(0), y.why_off);
		if (write(fds[1], msg, (size_t)len) != len)
			_exit(14);
		_exit(0);
	}
	close(fds[1]);
	char msg[400] = {0};
	ssize_t r = read(fds[0], msg, sizeof(msg) - 1);
	int st, on = -1, stuck = -1, pol = -1, at = 0;
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	ck_assert_int_gt(r, 1);
	ck_assert_int_eq(sscanf(msg, "%d %d %d %n", &on, &stuck, &pol, &at), 3);
	ck_assert_int_eq(on, 0);
	ck_assert_int_eq(stuck, 1);
	ck_assert_int_eq(pol, SCHED_IDLE);
	ck_assert_msg(strstr(msg + at, "could not come back from SCHED_IDLE") != NULL, "%s", msg);
}
END_TEST

/* Which kernels may yield: the release string's major and minor. */
START_TEST(test_yield_kernel_releases)
{
	ck_assert(!yield_kernel_ok("6.1.0-13-amd64")); /* Debian 12 */
	ck_assert(!yield_kernel_ok("5.15.0-91-generic"));
	ck_assert(!yield_kernel_ok("6.5.13"));
	ck_assert(yield_kernel_ok("6.6.0"));
	ck_assert(yield_kernel_ok("6.12.57+deb13-amd64")); /* Debian 13 */
	ck_assert(yield_kernel_ok("6.18.44-fc-v1272"));
	ck_assert(yield_kernel_ok("7.0.1"));
	ck_assert(!yield_kernel_ok("4.19.0"));
	ck_assert(!yield_kernel_ok(""));
	ck_assert(!yield_kernel_ok("six"));
	ck_assert(!yield_kernel_ok("6"));
}
END_TEST

Suite *yield_suite(void)
{
	Suite *s = suite_create("yield");
	TCase *tc = tcase_create("passes");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_yield_off_when_asked);
	tcase_add_test(tc, test_yield_kernel_releases);
	tcase_add_test(tc, test_yield_pass_runs_idle);
	tcase_add_test(tc, test_yield_pressure);
	tcase_add_test(tc, test_yield_watchdog_ends_a_long_pass);
	tcase_add_test(tc, test_yield_watchdog_times_each_pass_from_its_start);
	tcase_add_test(tc, test_yield_unprivileged);
	tcase_add_test(tc, test_yield_refused_after_start);
	suite_add_tcase(s, tc);
	return s;
}
