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
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

static pid_t self_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void futex_wait(_Atomic uint32_t *f, uint32_t val, const struct timespec *ts)
{
	syscall(SYS_futex, (uint32_t *)f, FUTEX_WAIT_PRIVATE, val, ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *f)
{
	syscall(SYS_futex, (uint32_t *)f, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
		         "RLIMIT_NICE %d or more",
		         nice, strerror(-rc), 20 - nice);
	}
	return NULL;
}

/* Ends the yield of a pass that has run for pass_max_ms; again each period
 * while the same pass runs (the loop may have set SCHED_IDLE just after). */
static void *watch(void *arg)
{
	struct yielder *y = arg;
	struct timespec period = {(time_t)(y->pass_max_ms / 1000),
	                          (long)(y->pass_max_ms % 1000) * 1000000L};

	while (!atomic_load(&y->stop)) {
		uint32_t p = atomic_load(&y->pass);
		if ((p & 1) == 0) {
			/* Asleep until a pass yields: it wakes us when it sees
			 * `asleep`, or moved `pass` before we looked again. */
			atomic_store(&y->asleep, 1);
			if (atomic_load(&y->pass) == p && !atomic_load(&y->stop))
				futex_wait(&y->pass, p, NULL);
			atomic_store(&y->asleep, 0);
			continue;
		}
		futex_wait(&y->pass, p, &period);
		if (atomic_load(&y->pass) != p)
			continue;
		/* Still the same pass: the loop thread gets its priority back. */
		if (set_policy(y->loop_tid, SCHED_OTHER) == 0 && atomic_load(&y->escalated) != p) {
			atomic_store(&y->escalated, p);
			atomic_fetch_add(&y->escalations, 1);
		}
	}
	return NULL;
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
	y->saw_pressure = false;
	y->yielding = false;
}

void yield_reading(struct yielder *y)
{
	if (!y->in_pass || y->reading)
		return;
	y->reading = true;
	if (!y->on) {
		y->normal++;
		return;
	}
	if (y->pressure || mono_ms() < y->calm_after_ms) {
		y->normal++;
		return;
	}
	/* Published before the thread may starve: the watchdog times it. */
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

void yield_saw(struct yielder *y, uint64_t fullest, bool waiting)
{
	if (fullest >= SHM_RING_CAP / 4 * 3 || waiting)
		y->saw_pressure = true;
}

void yield_end(struct yielder *y)
{
	y->in_pass = false;
	if (!y->reading)
		return; /* nothing read: nothing learnt */
	if (y->yielding) {
		int rc = set_policy(0, SCHED_OTHER);
		uint32_t p = atomic_fetch_add(&y->pass, 1);
		if (atomic_load(&y->escalated) == p)
			y->calm_after_ms = mono_ms() + YIELD_BACKOFF_MS;
		y->yielding = false;
		if (rc < 0 && atomic_load(&y->escalated) != p) {
			/* Allowed at the start, refused now (RLIMIT_NICE lowered
			 * from outside): the watchdog's try is all that is left;
			 * no pass yields again. */
			log_warn("drain yield: back from SCHED_IDLE refused: %s; yielding is off",
			         strerror(-rc));
			snprintf(y->why_off, sizeof(y->why_off),
			         "back from SCHED_IDLE refused after the start: %s", strerror(-rc));
			y->on = false;
		}
	}
	y->pressure = y->saw_pressure;
}
