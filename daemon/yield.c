/* yield.c - reading the rings at idle priority while nothing presses (see
 * yield.h). */
#include "yield.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "drain.h"
#include "log.h"
#include "shm.h"

static pid_t self_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void futex_wait(_Atomic uint32_t *f, uint32_t val, uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	syscall(SYS_futex, (uint32_t *)f, FUTEX_WAIT_PRIVATE, val, ns != 0 ? &ts : NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *f)
{
	syscall(SYS_futex, (uint32_t *)f, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int set_policy(pid_t tid, int policy)
{
	struct sched_param sp = {0};
	return sched_setscheduler(tid, policy, &sp) < 0 ? -errno : 0;
}

/* The check, on a thread of its own: it may be left at idle priority. */
static void *probe(void *arg)
{
	struct yielder *y = arg;
	pid_t tid = self_tid();
	int rc;

	if ((rc = set_policy(tid, SCHED_IDLE)) < 0) {
		snprintf(y->why_off, sizeof(y->why_off), "SCHED_IDLE is refused: %s",
		         strerror(-rc));
	} else if ((rc = set_policy(tid, SCHED_OTHER)) < 0) {
		errno = 0;
		int nice = getpriority(PRIO_PROCESS, 0);
		snprintf(y->why_off, sizeof(y->why_off),
		         "no way back from SCHED_IDLE at nice %d (%s): it needs CAP_SYS_NICE or "
		         "RLIMIT_NICE %d or more (ulimit -e %d; systemd LimitNICE=%+d); passes run "
		         "at the daemon's priority, tracing is not affected",
		         nice, strerror(-rc), 20 - nice, 20 - nice, nice);
	}
	return NULL;
}

/* Ends the yield of a pass that has run for pass_max_ms from its start;
 * again each period while the same pass runs (the loop may have set
 * SCHED_IDLE just after). A pass that begins while the watchdog still
 * times an earlier one is timed from its own start all the same: the
 * watchdog wakes at the earlier deadline, which comes first, and looks
 * again. */
static void *watch(void *arg)
{
	struct yielder *y = arg;
	uint64_t max_ns = (uint64_t)y->pass_max_ms * 1000000u;

	while (!atomic_load(&y->stop)) {
		uint32_t p = atomic_load(&y->pass);
		if ((p & 1) == 0) {
			/* Asleep until a pass yields: it wakes us when it sees
			 * `asleep`, or moved `pass` before we looked again. */
			atomic_store(&y->asleep, 1);
			if (atomic_load(&y->pass) == p && !atomic_load(&y->stop))
				futex_wait(&y->pass, p, 0);
			atomic_store(&y->asleep, 0);
			continue;
		}
		/* Stored before `pass` moved to p (or a later pass's). */
		uint64_t deadline = atomic_load(&y->pass_start_ns) + max_ns, now = drain_now_ns();
		if (now < deadline) {
			futex_wait(&y->pass, p, deadline - now);
			continue;
		}
		if (atomic_load(&y->pass) != p)
			continue;
		/* Still the same pass: the loop thread gets its priority back. */
		if (set_policy(y->loop_tid, SCHED_OTHER) == 0 && atomic_load(&y->escalated) != p) {
			atomic_store(&y->escalated, p);
			atomic_fetch_add(&y->escalations, 1);
		}
		futex_wait(&y->pass, p, max_ns);
	}
	return NULL;
}

bool yield_kernel_ok(const char *release)
{
	unsigned major = 0, minor = 0;
	if (sscanf(release, "%u.%u", &major, &minor) != 2)
		return false;
	return major > 6 || (major == 6 && minor >= 6);
}

void yield_start(struct yielder *y, bool want)
{
	unsigned max_ms = y->pass_max_ms != 0 ? y->pass_max_ms : YIELD_PASS_MAX_MS;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	memset(y, 0, sizeof(*y));
	y->pass_max_ms = max_ms;
	y->loop_tid = self_tid();
	if (!want) {
		snprintf(y->why_off, sizeof(y->why_off), "turned off (--no-drain-yield)");
		return;
	}
	struct utsname u;
	if (uname(&u) < 0 || !yield_kernel_ok(u.release)) {
		snprintf(y->why_off, sizeof(y->why_off),
		         "Linux %s is older than 6.6: its scheduler (CFS) keeps the virtual "
		         "runtime a thread ran up at idle priority when it comes back, so the "
		         "daemon would fall behind every busy thread for long after each pass",
		         uname(&u) < 0 ? "?" : u.release);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	/* Both threads start at the loop thread's policy and nice value. */
	pthread_attr_setinheritsched(&attr, PTHREAD_INHERIT_SCHED);
	if ((rc = pthread_create(&t, &attr, probe, y)) != 0) {
		snprintf(y->why_off, sizeof(y->why_off), "no thread to check it on: %s",
		         strerror(rc));
		goto out;
	}
	pthread_join(t, NULL);
	if (y->why_off[0] != '\0')
		goto out;
	if ((rc = pthread_create(&y->watchdog, &attr, watch, y)) != 0) {
		snprintf(y->why_off, sizeof(y->why_off), "no watchdog thread: %s", strerror(rc));
		goto out;
	}
	pthread_setname_np(y->watchdog, "memtraced-yield");
	y->thread = true;
	y->on = true;
out:
	pthread_attr_destroy(&attr);
}

void yield_stop(struct yielder *y)
{
	if (!y->thread)
		return;
	atomic_store(&y->stop, true);
	atomic_fetch_add(&y->pass, 2); /* parity kept; the watchdog looks again */
	futex_wake(&y->pass);
	pthread_join(y->watchdog, NULL);
	y->thread = false;
	y->on = false;
}

void yield_begin(struct yielder *y)
{
	y->in_pass = true;
	y->reading = false;
	y->yielding = false;
}

void yield_reading(struct yielder *y)
{
	if (!y->in_pass || y->reading)
		return;
	y->reading = true;
	if (!y->on || y->npressed > 0 || drain_now_ns() < y->calm_after_ns) {
		y->normal++;
		return;
	}
	/* Published before the thread may starve: the watchdog times it. */
	atomic_store(&y->pass_start_ns, drain_now_ns());
	atomic_fetch_add(&y->pass, 1);
	if (atomic_load(&y->asleep))
		futex_wake(&y->pass);
	if (set_policy(0, SCHED_IDLE) < 0) {
		atomic_fetch_add(&y->pass, 1);
		y->normal++;
		return;
	}
	y->yielding = true;
	y->yielded++;
}

void yield_saw(struct yielder *y, bool *pressed, uint64_t fullest, bool waiting)
{
	bool now = fullest >= SHM_RING_CAP / 4 * 3 || waiting;
	if (now && !*pressed)
		y->npressed++;
	else if (!now && *pressed)
		y->npressed--;
	*pressed = now;
}

void yield_forget(struct yielder *y, bool *pressed)
{
	if (*pressed)
		y->npressed--;
	*pressed = false;
}

/* The way back was refused (an RLIMIT_NICE lowered, or a nice value set
 * below what it allows, after the start): the thread takes the lowest nice
 * value RLIMIT_NICE allows (RLIMIT_NICE 0 allows none), which a thread may
 * always take from a lower one, and tries again. */
static int come_back_harder(void)
{
	struct rlimit rl;
	pid_t tid = self_tid();

	if (getrlimit(RLIMIT_NICE, &rl) == 0 && rl.rlim_cur >= 1 && rl.rlim_cur <= 40) {
		int floor = 20 - (int)rl.rlim_cur;
		errno = 0;
		int nice = getpriority(PRIO_PROCESS, (id_t)tid);
		if (errno == 0 && nice < floor && setpriority(PRIO_PROCESS, (id_t)tid, floor) == 0)
			log_warn("drain yield: the loop thread's nice value %d is below what "
			         "RLIMIT_NICE allows; it runs at %d from now on",
			         nice, floor);
	}
	return set_policy(0, SCHED_OTHER);
}

void yield_end(struct yielder *y)
{
	y->in_pass = false;
	if (!y->yielding)
		return;
	int rc = set_policy(0, SCHED_OTHER);
	if (rc < 0)
		rc = come_back_harder();
	uint32_t p = atomic_fetch_add(&y->pass, 1);
	uint64_t now = drain_now_ns();
	y->yielding = false;
	/* Starved, whether the watchdog saw it or not: no yield for a while. */
	if (atomic_load(&y->escalated) == p ||
	    now - atomic_load(&y->pass_start_ns) >= (uint64_t)y->pass_max_ms * 1000000u)
		y->calm_after_ns = now + (uint64_t)YIELD_BACKOFF_MS * 1000000u;
	if (rc < 0) {
		/* Nothing more to try: it stays at idle priority. */
		log_error("drain yield: the loop thread cannot come back from SCHED_IDLE (%s); "
		          "it runs at idle priority until memtraced restarts",
		          strerror(-rc));
		snprintf(y->why_off, sizeof(y->why_off),
		         "the loop thread could not come back from SCHED_IDLE after the start: %s",
		         strerror(-rc));
		y->on = false;
		y->stuck = true;
	}
}
