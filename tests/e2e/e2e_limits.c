/*
 * e2e_limits.c - end-to-end tests of what one user can do to everybody else
 * through memtraced: each attack comes from a second, unprivileged user
 * (uid 65534, in a forked child that drops to it, or a traced program run
 * as it) against a real daemon, while root's own traced program (`sites`)
 * must stay exact and root's queries and scrapes must be answered. The
 * expected numbers are the test's own: what the attacker sent or the
 * program booked, and the bounds the test gave the daemon.
 *
 * The suite needs root (to be another user); run as anyone else, every
 * test fails at the start saying so.
 *
 * Behaviours pinned, by test:
 *  huge_blocks          300,000 blocks of 1 TiB each from a real traced
 *                       program (an allocator under the agent grants them,
 *                       tests/progs/fakebig.c): `top` of the attacker is its
 *                       book, exact, before and after it frees them all
 *                       and after it exits; root's program stays exact
 *                       meanwhile (before, a side list made each lookup
 *                       linear: minutes of stall)
 *  module_flood         65,536 MODULE frames from a hostile agent: the
 *                       daemon keeps --max-modules of them (8192 by
 *                       default), `stats` and `status` count the rest as
 *                       dropped, the log says so once; root's program stays
 *                       exact
 *  snapshot_queue       with the store held busy by the test, 12 short
 *                       traced programs of uid 65534 end: no more than
 *                       --max-queued-snapshots-per-uid of their exit
 *                       snapshots wait at any time, the rest are refused,
 *                       counted in `status` and /metrics and logged once;
 *                       root's exit snapshot is stored all the same
 *  control_limits       uid 65534 holds --max-control-connections-per-uid
 *                       connections: its next one gets a JSON error
 *                       (memtracectl says too_many_connections), root's
 *                       memtracectl works; a client that sends thousands
 *                       of requests and reads nothing is paused at the
 *                       unread bound and closed after --control-timeout, as
 *                       is one that sends half a request; `status` counts
 *                       it all
 *  http_origins         80 slowloris connections from 127.0.0.2-11, all of
 *                       uid 65534: 8 are admitted (one origin: the uid),
 *                       72 get a 503 naming the bound; a scrape by root from
 *                       127.0.0.1 is answered with the program's series and
 *                       the limit's figures; uid 65534's own scrape gets 503
 *  agent_sessions       with --max-sessions 32 (a uid a quarter), uid 65534
 *                       opens 32 idle agent connections: exactly 24 are
 *                       closed, root's program is traced exactly meanwhile,
 *                       `status` counts the refusals, the log names the
 *                       bound once (before: root's program went untraced)
 *  mutual_parents       uid 65534's process X and its child Y say hello so
 *                       that each waits for the other's fork image (X's
 *                       second connection names Y as its parent): the
 *                       daemon lives on and root stays exact (before: the
 *                       two drained each other until the stack overflowed)
 *  passed_descriptors   64 hellos carrying 4 descriptors each, 253 pipe ends
 *                       in one message, and a lingering TCP socket with a
 *                       full send queue whose last copy the daemon holds:
 *                       root is answered at once and exactly, and the
 *                       daemon's descriptors return to their count (before:
 *                       the socket's close held the loop 120 s, and 2
 *                       descriptors a hello leaked)
 *  fork_images          2 sessions of 30,000 blocks with 300 unclaimed FORK
 *                       records each, --max-fork-image-bytes 64 MiB: the
 *                       daemon's anonymous memory grows by less than 96 MiB
 *                       (before: 514 MiB), the uid holds at most 16 MiB of
 *                       images; root stays exact
 *  symbol_cache         with --max-symbol-cache-bytes 4 MiB (a uid 1 MiB), a
 *                       hostile agent of uid 65534 holds 256 stacks of 256
 *                       addresses never seen before: its `top --key
 *                       traceback` is every one of its 65,536 frames, exact,
 *                       twice, while the cache holds at most its bound,
 *                       `status` and /metrics count the frames not cached,
 *                       the log names the uid once, and root's program
 *                       stays exact (before: one frame cached per address
 *                       for ever, 2.5 GB of daemon for 8 rounds of 8192)
 *  store_bounds         uid 65534 runs 24 short traced programs one after
 *                       another with --max-store-bytes-per-uid 16 KiB: the
 *                       file keeps the exit snapshots of its newest programs
 *                       only, within the bound, the others are deleted oldest
 *                       first; `status` (as root and as uid 65534) and
 *                       /metrics give the file's own bytes, snapshots and
 *                       deletions per uid (uid 65534 its own, the sums in
 *                       *_all), also after a restart; the log names the
 *                       bound and the uid once, and its counts add up to
 *                       what the file lost; a deleted snapshot's id answers
 *                       snapshot_deleted; root's manual and exit snapshots
 *                       stay, exact; a bound halved at restart ("8K") is
 *                       kept at once, oldest first, logged with the counts
 *                       the file lost (before: nothing bounded the file; then
 *                       the log undercounted, uid 65534 saw all users'
 *                       totals, a lowered bound waited for the next write)
 *  model_bounds         with --max-blocks-per-uid 24576, uid 65534 runs two
 *                       programs of 16,384 live blocks each at once: the
 *                       first is exact, the second says limit_reached
 *                       "blocks", the uid holds at most its bound (status
 *                       tracked_blocks, /metrics), root's program stays
 *                       exact; once both ended, a third program of uid
 *                       65534 is exact: the ended ones were forgotten to
 *                       make room (logged, counted), their exit snapshots
 *                       stay (before: one user's processes could make the
 *                       daemon hold --max-sessions-per-uid times
 *                       --max-blocks)
 *  snapshot_file        with --max-store-bytes-per-uid 2K, `snapshot --pid P
 *                       -o FILE` of a program whose snapshot is larger:
 *                       the store refuses it, the file is written all the
 *                       same and exact, the answer says "stored": false and
 *                       names the option (before: no file at all)
 *  store_escaped        uid 65534 runs programs whose argument is 1500
 *                       control bytes (stored escaped, six bytes each) with
 *                       --max-store-bytes-per-uid 16 KiB: every snapshot is
 *                       charged at least what the file holds of its
 *                       process, and the file holds no more of uid 65534's
 *                       arguments than the bound (before: charged one byte
 *                       for six, the file held five times the bound)
 *  store_options        byte options take K/M/G/KiB/MiB/GiB, a refusal says
 *                       "a number of bytes (0 = no bound)", a per-uid store
 *                       bound above the total is warned of
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "proto.h"
#include "shm.h"

static struct h_daemon D; /* this test's daemon (each test has its own process) */

static void teardown(void)
{
	h_daemon_cleanup(&D);
}

/* A daemon whose runtime directory uid 65534 can reach, as every local user
 * reaches the system's. */
static void start(const char *const *opts)
{
	ck_assert_msg(geteuid() == 0, "e2e_limits attacks as uid 65534: it must run as root");
	h_daemon_dirs(&D, 0755);
	h_daemon_spawn(&D, opts);
}

/* ---------------------------------------------------------- the victim */

/* Root's `sites`, exact before the attack. */
static struct h_truth *victim_start(struct h_proc *p)
{
	h_prog_start(p, &D, "sites", NULL, H_NOUID, NULL);
	h_proc_expect_ready(p);
	return h_truth_must(p->truth);
}

static void victim_top(const struct h_truth *t, const char *what)
{
	struct h_ctl r;
	char pid[24];
	struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
	const char *args[] = {"top", "--pid", pid, "--limit", "0", NULL};

	snprintf(pid, sizeof pid, "%ld", t->pid);
	char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, args);
	ck_assert_msg(why == NULL, "%s: root's program differs from its book:\n  %.2000s", what,
	              why);
	h_ctl_free(&r);
}

/* After the attack: root's program is exact now and in its next phase, and
 * it ends. */
static void victim_end(struct h_proc *p, struct h_truth *t, const char *what)
{
	victim_top(t, what);
	ck_assert_int_eq(h_proc_send(p, "next"), 0);
	h_proc_expect_ready(p);
	struct h_truth *t2 = h_truth_must(p->truth);
	victim_top(t2, what);
	h_truth_free(t2);
	ck_assert_int_eq(h_proc_send(p, "exit"), 0);
	h_proc_end(p, "sites");
	h_truth_free(t);
}

/* ------------------------------------------------------ helpers */

/* A status answer's limits.NAME.FIELD (asked as uid), or -1. */
static long long status_limit(uid_t uid, const char *name, const char *field)
{
	struct h_ctl r;
	const char *args[] = {"status", NULL};
	long long v = -1;

	h_ctl_ok(&D, uid, &r, args);
	const cJSON *lim = cJSON_GetObjectItemCaseSensitive(r.json, "limits");
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(lim, name);
	if (field == NULL)
		h_json_int(lim, name, &v);
	else
		h_json_int(o, field, &v);
	h_ctl_free(&r);
	return v;
}

/* How often `needle` is in the daemon's log. */
static int log_count(const char *needle)
{
	char *log = h_daemon_log_tail(&D, (size_t)16 << 20);
	int n = 0;
	for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
		n++;
	free(log);
	return n;
}

/* Forks a child that becomes uid 65534 and returns fn's result as its exit
 * status; `sync` is a pipe pair the child and the test talk over: the
 * child writes to tochild[1]... see the tests. Returns the child's pid. */
static pid_t as_nobody(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(H_NOBODY, H_NOBODY, H_NOBODY) < 0 ||
		    setresuid(H_NOBODY, H_NOBODY, H_NOBODY) < 0)
			_exit(3);
		_exit(fn(arg));
	}
	return pid;
}

static void wait_nobody(pid_t pid, const char *what)
{
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s (uid 65534): %s", what,
	              h_status_str(st));
}

/* One byte from fd within timeout_ms: 1, 0 on EOF, -1 on timeout. */
static int read_byte(int fd, char *c, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, timeout_ms) <= 0)
		return -1;
	return (int)read(fd, c, 1);
}

/* ---------------------------------------------------------- huge_blocks */

#define HUGE_N 300000

/* hugeblocks as uid 65534, with libfakebig.so under the agent. */
static void huge_start(struct h_proc *p)
{
	char n[24];
	char *path = h_prog("hugeblocks");
	char *fake = h_prog(".libs/libfakebig.so");
	char *dir = h_daemon_file(&D, "hugeblocks.d");
	char *truth = h_strf("%s/truth", dir);
	char *preload = h_strf("LD_PRELOAD=%s:%s", h_agent_lib(), fake);
	const char *env[] = {preload, NULL};
	const char *argv[] = {path, n, NULL};
	struct h_spawn s = {.argv = argv,
	                    .agent = false,
	                    .runtime_dir = D.runtime,
	                    .truth = truth,
	                    .env = env,
	                    .uid = H_NOBODY};

	snprintf(n, sizeof n, "%d", HUGE_N);
	ck_assert_msg(mkdir(dir, 0755) == 0 && chown(dir, H_NOBODY, H_NOBODY) == 0, "mkdir %s: %s",
	              dir, strerror(errno));
	h_proc_start(p, &s);
	p->truth = truth;
	free(path);
	free(fake);
	free(dir);
	free(preload);
}

static void huge_top(struct h_truth *t, const char *what)
{
	struct h_ctl r;
	char pid[24];
	struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
	const char *args[] = {"top", "--pid", pid, "--limit", "0", NULL};

	snprintf(pid, sizeof pid, "%ld", t->pid);
	char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, args);
	ck_assert_msg(why == NULL, "%s: the huge blocks differ from the book:\n  %.2000s", what,
	              why);
	h_ctl_free(&r);
}

START_TEST(huge_blocks)
{
	struct h_proc v, a;

	start(NULL);
	struct h_truth *vt = victim_start(&v);
	huge_start(&a);
	h_proc_expect_ready(&a);
	struct h_truth *t = h_truth_must(a.truth);
	ck_assert_int_eq(h_truth_count(t), HUGE_N);
	ck_assert_int_eq(h_truth_bytes(t), (long long)HUGE_N << 40);
	huge_top(t, "300,000 blocks of 1 TiB live");
	victim_top(vt, "with 300,000 huge blocks live");
	h_truth_free(t);

	/* All freed, newest first. */
	ck_assert_int_eq(h_proc_send(&a, "next"), 0);
	h_proc_expect_ready(&a);
	t = h_truth_must(a.truth);
	ck_assert_int_eq(h_truth_bytes(t), 0);
	huge_top(t, "the huge blocks freed");
	long apid = t->pid;
	h_truth_free(t);
	ck_assert_int_eq(h_proc_send(&a, "exit"), 0);
	ck_assert_int_eq(h_proc_finish(&a, 30000), 0);
	h_proc_cleanup(&a);

	/* Its exit is taken (a snapshot of everything) while root goes on. */
	victim_end(&v, vt, "after the huge blocks");
	char pid[24];
	snprintf(pid, sizeof pid, "%ld", apid);
	const char *stats[] = {"stats", "--pid", pid, NULL};
	struct h_ctl r;
	h_ctl_ok(&D, H_NOUID, &r, stats);
	long long allocs = -1, cur = -1;
	ck_assert(h_json_int(r.json, "allocations", &allocs) &&
	          h_json_int(r.json, "current", &cur));
	ck_assert_msg(allocs >= HUGE_N && cur < ((long long)1 << 40),
	              "the attacker's stats after its exit: %.600s", r.out);
	h_ctl_free(&r);
	ck_assert_msg(status_limit(H_NOUID, "max_blocks", NULL) > 0, "status lacks the limits");
	h_daemon_stop(&D);
}
END_TEST

/* --------------------------------------------------------- module_flood */

#define FLOOD_MODULES 65536

static size_t hello_frame(uint8_t *buf, size_t cap)
{
	static const char cmdline[] = "flood";
	return h_hello_frame(buf, cap, "/bin/flood", cmdline, sizeof cmdline);
}

static int send_with_fd(int sock, const void *buf, size_t n, int fd)
{
	return h_send_fds(sock, buf, n, &fd, 1);
}

struct flood_arg {
	int up[2];   /* child -> test: "s" when sent */
	int down[2]; /* test -> child: anything (or EOF) to end */
};

/* uid 65534: a hostile agent announcing FLOOD_MODULES objects, highest
 * address first, with paths of 120 bytes; holds the connection until told. */
static int flood_modules(void *argp)
{
	struct flood_arg *a = argp;
	uint8_t hello[1024];
	char *sock = h_strf("%s/agent.sock", D.runtime);
	int fd = h_connect(sock), region = h_region_empty();
	size_t cap = (size_t)FLOOD_MODULES * 256, len = 0;
	uint8_t *buf = malloc(cap);
	static const uint8_t bid[20] = {1, 2, 3};
	char c;

	if (fd < 0 || region < 0 || buf == NULL)
		return 10;
	size_t hn = hello_frame(hello, sizeof hello);
	if (hn == 0 || send_with_fd(fd, hello, hn, region) < 0)
		return 11;
	for (int i = FLOOD_MODULES - 1; i >= 0; i--) {
		char path[160];
		int pl = snprintf(path, sizeof path,
		                  "/usr/lib/x86_64-linux-gnu/flood/%0*d/libflood.so", 80, i);
		uint64_t lo = UINT64_C(0x100000000) + (uint64_t)i * 0x10000;
		struct proto_module m = {.bias = lo,
		                         .lo = lo,
		                         .hi = lo + 0x1000,
		                         .build_id = bid,
		                         .build_id_len = sizeof bid,
		                         .path = path,
		                         .path_len = (uint32_t)pl};
		ssize_t n = proto_module_encode(buf + len, cap - len, &m);
		if (n <= 0)
			return 12;
		len += (size_t)n;
	}
	if (h_send_all(fd, buf, len) < 0)
		return 13;
	if (write(a->up[1], "s", 1) != 1)
		return 14;
	(void)read_byte(a->down[0], &c, 60000);
	close(fd);
	free(buf);
	return 0;
}

static char *check_modules(const cJSON *json, void *arg)
{
	long long kept = -1, dropped = -1;
	(void)arg;
	if (!h_json_int(json, "modules", &kept) || !h_json_int(json, "modules_dropped", &dropped))
		return h_strf("stats has no modules/modules_dropped");
	if (kept != 8192 || dropped != FLOOD_MODULES - 8192)
		return h_strf("modules %lld, dropped %lld; want 8192 and %d", kept, dropped,
		              FLOOD_MODULES - 8192);
	return NULL;
}

START_TEST(module_flood)
{
	struct h_proc v;
	struct flood_arg a;
	char c;

	start(NULL);
	struct h_truth *vt = victim_start(&v);
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(flood_modules, &a);
	ck_assert_msg(read_byte(a.up[0], &c, 60000) == 1, "the flood was not sent");

	/* The session is the child's pid (SO_PEERCRED). */
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)child);
	const char *stats[] = {"stats", "--pid", pid, NULL};
	struct h_ctl r;
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_modules, NULL, stats);
	ck_assert_msg(why == NULL, "the flooding agent's stats: %s: %.800s", why, r.out);
	h_ctl_free(&r);
	victim_top(vt, "during the module flood");
	ck_assert_int_eq(status_limit(H_NOUID, "modules_dropped", NULL), FLOOD_MODULES - 8192);
	ck_assert_int_eq(status_limit(H_NOUID, "max_modules", NULL), 8192);
	ck_assert_int_eq(log_count("(--max-modules)"), 1);

	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "module flood");
	victim_end(&v, vt, "after the module flood");
	h_daemon_stop(&D);
}
END_TEST

/* ------------------------------------------------------ snapshot_queue */

#define SHORT_LIVED 12

static char *check_exited(const cJSON *json, void *arg)
{
	long long want = *(long long *)arg, n = -1;
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(json, "sessions");
	if (!h_json_int(s, "exited", &n) || n < want)
		return h_strf("%lld exited sessions, want %lld", n, want);
	return NULL;
}

static char *check_exit_snapshot(const cJSON *json, void *arg)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(json, "snapshots"), *s;
	(void)arg;
	cJSON_ArrayForEach(s, arr)
	{
		const char *reason = h_json_str(s, "reason");
		if (reason != NULL && strcmp(reason, "exit") == 0)
			return NULL;
	}
	return h_strf("no exit snapshot");
}

START_TEST(snapshot_queue)
{
	const char *opts[] = {"--snapshot-interval",
	                      "0",
	                      "--max-queued-snapshots",
	                      "8",
	                      "--max-queued-snapshots-per-uid",
	                      "2",
	                      NULL};
	struct h_proc v, p[SHORT_LIVED];
	sqlite3 *db = NULL;
	struct h_ctl r;

	start(opts);
	struct h_truth *vt = victim_start(&v);
	long vpid = vt->pid;
	/* The store stays busy (a writer holds it) while the programs end,
	 * so their exit snapshots wait in the queue. */
	char *path = h_strf("%s/memtrace.db", D.state);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < SHORT_LIVED; i++)
		h_prog_start(&p[i], &D, "leaker", NULL, H_NOBODY, NULL);
	for (int i = 0; i < SHORT_LIVED; i++) {
		ck_assert_int_eq(h_proc_finish(&p[i], 20000), 0);
		h_proc_cleanup(&p[i]);
	}
	long long want = SHORT_LIVED;
	const char *status[] = {"status", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_exited, &want, status);
	ck_assert_msg(why == NULL, "%s", why);
	h_ctl_free(&r);

	/* Never more than its share waits; the rest were refused, said once. */
	long long yours = status_limit(H_NOBODY, "queued_snapshots", "yours");
	ck_assert_msg(yours >= 0 && yours <= 2, "uid 65534 has %lld snapshots queued", yours);
	long long refused = status_limit(H_NOUID, "queued_snapshots", "refused");
	ck_assert_msg(refused >= 1 && refused <= SHORT_LIVED - 1, "%lld refused", refused);
	ck_assert_int_eq(status_limit(H_NOUID, "queued_snapshots", "per_uid"), 2);
	ck_assert_int_eq(log_count("limit queued_snapshots reached"), 1);

	/* Root's program ends while uid 65534 is at its bound: its exit
	 * snapshot has root's own share. */
	victim_end(&v, vt, "with uid 65534's snapshots refused");
	ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	char pid[24];
	snprintf(pid, sizeof pid, "%ld", vpid);
	const char *snaps[] = {"snapshots", "--pid", pid, NULL};
	why = h_ctl_poll(&D, H_NOUID, &r, check_exit_snapshot, NULL, snaps);
	ck_assert_msg(why == NULL, "root's program: %s: %.800s", why, r.out);
	h_ctl_free(&r);
	free(path);
	h_daemon_stop(&D);
}
END_TEST

/* ------------------------------------------------------ control_limits */

#define CTL_PER_UID 4

struct ctl_arg {
	int up[2], down[2];
	char refusal[512]; /* the child writes what the refused connection read */
};

/* uid 65534: CTL_PER_UID connections, then one too many; one of them sends
 * thousands of requests and reads nothing, another half a request. Reports
 * "r" + the refusal line, then waits. */
static int ctl_attack(void *argp)
{
	struct ctl_arg *a = argp;
	char *sock = h_strf("%s/control.sock", D.runtime);
	int fd[CTL_PER_UID + 1];
	char line[512], c;

	for (int i = 0; i < CTL_PER_UID; i++)
		if ((fd[i] = h_connect(sock)) < 0)
			return 10;
	/* A status answer each, so the daemon has counted them all. */
	for (int i = 0; i < CTL_PER_UID; i++)
		if (h_send_all(fd[i], "{\"cmd\":\"status\"}\n", 17) < 0 ||
		    h_read_line(fd[i], line, sizeof line, 10000) <= 0)
			return 11;
	if ((fd[CTL_PER_UID] = h_connect(sock)) < 0)
		return 12;
	int n = h_read_line(fd[CTL_PER_UID], line, sizeof line, 10000);
	if (n <= 0)
		return 13;
	if (write(a->up[1], line, strlen(line)) < 0 || write(a->up[1], "\n", 1) != 1)
		return 14;
	/* 20,000 requests, none of their answers read. */
	static const char req[] = "{\"cmd\":\"status\"}\n";
	size_t reps = 20000, len = reps * (sizeof req - 1);
	char *many = malloc(len);
	for (size_t i = 0; i < reps; i++)
		memcpy(many + i * (sizeof req - 1), req, sizeof req - 1);
	int fl = fcntl(fd[0], F_GETFL);
	fcntl(fd[0], F_SETFL, fl | O_NONBLOCK);
	size_t off = 0;
	long long until = h_now_ms() + 5000;
	while (off < len && h_now_ms() < until) {
		ssize_t w = send(fd[0], many + off, len - off, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else
			h_sleep_ms(10);
	}
	free(many);
	/* Half a request. */
	if (h_send_all(fd[1], "{\"cmd\":", 7) < 0)
		return 15;
	if (write(a->up[1], "s", 1) != 1)
		return 16;
	(void)read_byte(a->down[0], &c, 60000);
	return 0;
}

static char *check_stalled(const cJSON *json, void *arg)
{
	const cJSON *lim = cJSON_GetObjectItemCaseSensitive(json, "limits");
	const cJSON *un = cJSON_GetObjectItemCaseSensitive(lim, "control_unread_bytes");
	long long paused = -1, stalled = -1, used = -1;
	(void)arg;
	if (!h_json_int(un, "paused", &paused) || !h_json_int(un, "stalled", &stalled) ||
	    !h_json_int(un, "used", &used))
		return h_strf("no limits.control_unread_bytes");
	if (paused < 1 || stalled < 2 || used != 0)
		return h_strf("paused %lld, stalled %lld, unread %lld", paused, stalled, used);
	return NULL;
}

START_TEST(control_limits)
{
	const char *opts[] = {"--max-control-connections",
	                      "32",
	                      "--max-control-connections-per-uid",
	                      "4",
	                      "--control-timeout",
	                      "2",
	                      NULL};
	struct h_proc v;
	struct ctl_arg a;
	struct h_ctl r;
	char line[512];
	size_t n = 0;
	char c;

	start(opts);
	struct h_truth *vt = victim_start(&v);
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(ctl_attack, &a);
	while (n + 1 < sizeof line && read_byte(a.up[0], &c, 30000) == 1 && c != '\n')
		line[n++] = c;
	line[n] = '\0';
	char holds[64];
	snprintf(holds, sizeof holds, "uid 65534 has %d control connections open", CTL_PER_UID);
	ck_assert_msg(strstr(line, "\"too_many_connections\"") != NULL &&
	                  strstr(line, "--max-control-connections-per-uid") != NULL &&
	                  strstr(line, holds) != NULL,
	              "the fifth connection of uid 65534 read: %s", line);
	/* memtracectl as uid 65534 is refused the same way, root's works. */
	h_ctl_error(&D, H_NOBODY, (const char *[]){"status", NULL}, "too_many_connections");
	ck_assert_int_eq(status_limit(H_NOUID, "control_connections", "refused"), 2);
	ck_assert_int_eq(status_limit(H_NOUID, "control_connections", "per_uid"), CTL_PER_UID);
	victim_top(vt, "while uid 65534 holds its control connections");
	ck_assert_int_eq(log_count("limit control_connections reached"), 1);

	/* The reader that never reads, and the half request: paused, then
	 * both closed after --control-timeout. */
	ck_assert_msg(read_byte(a.up[0], &c, 30000) == 1 && c == 's', "the flood was not sent");
	const char *status[] = {"status", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_stalled, NULL, status);
	ck_assert_msg(why == NULL, "%s: %.1500s", why, r.out);
	h_ctl_free(&r);
	/* Two places are free again for uid 65534. */
	h_ctl_ok(&D, H_NOBODY, &r, status);
	h_ctl_free(&r);
	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "control connections");
	victim_end(&v, vt, "after the control attacks");
	h_daemon_stop(&D);
}
END_TEST

/* -------------------------------------------------------- http_origins */

#define SLOW_ADDRS 10
#define SLOW_EACH  8

/* The port memtraced logged for --metrics-listen 127.0.0.1:0. */
static int logged_port(void)
{
	static const char prefix[] = "metrics on http://127.0.0.1:";
	long long deadline = h_now_ms() + H_START_MS;
	while (h_now_ms() < deadline) {
		char *log = h_daemon_log_tail(&D, 1 << 20);
		const char *p = log != NULL ? strstr(log, prefix) : NULL;
		int port = p != NULL ? atoi(p + strlen(prefix)) : 0;
		free(log);
		if (port > 0)
			return port;
		h_sleep_ms(20);
	}
	ck_abort_msg("memtraced logged no metrics port");
	return 0;
}

static int tcp_from(const char *src, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, src, &a.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		goto fail;
	a.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		goto fail;
	return fd;
fail:;
	int e = -errno;
	close(fd);
	return e;
}

/* Everything fd sends until it closes, within timeout_ms (new string). */
static char *read_until_closed(int fd, int timeout_ms)
{
	char *buf = calloc(1, 65536);
	size_t len = 0;
	long long deadline = h_now_ms() + timeout_ms;
	while (len + 1 < 65536 && h_now_ms() < deadline) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t n = recv(fd, buf + len, 65535 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	return buf;
}

static char *http_get(const char *src, int port)
{
	static const char req[] =
	    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	int fd = tcp_from(src, port);
	if (fd < 0)
		return calloc(1, 1);
	(void)h_send_all(fd, req, sizeof req - 1);
	char *r = read_until_closed(fd, 10000);
	close(fd);
	return r;
}

struct http_arg {
	int port;
	int up[2], down[2];
};

/* uid 65534: SLOW_EACH connections from each of 127.0.0.2..11, each sending
 * the start of a request and never its end. Reports how many were refused
 * with a 503 naming the bound (one byte: the count), then what its own
 * scrape got ('5' for a 503), and holds the rest until told. */
static int slowloris(void *argp)
{
	struct http_arg *a = argp;
	int fd[SLOW_ADDRS * SLOW_EACH];
	static const char part[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a";
	char c;

	for (int i = 0; i < SLOW_ADDRS * SLOW_EACH; i++) {
		char src[32];
		snprintf(src, sizeof src, "127.0.0.%d", 2 + i / SLOW_EACH);
		if ((fd[i] = tcp_from(src, a->port)) < 0)
			return 10;
		(void)send(fd[i], part, sizeof part - 1, MSG_NOSIGNAL);
	}
	unsigned char refused = 0;
	for (int i = 0; i < SLOW_ADDRS * SLOW_EACH; i++) {
		struct pollfd pfd = {.fd = fd[i], .events = POLLIN};
		if (poll(&pfd, 1, i < 2 ? 1000 : 100) <= 0)
			continue; /* admitted: nothing to read */
		char *got = read_until_closed(fd[i], 2000);
		if (strncmp(got, "HTTP/1.1 503", 12) == 0 && strstr(got, "uid 65534") != NULL &&
		    strstr(got, "--metrics-max-connections-per-origin") != NULL)
			refused++;
		free(got);
	}
	char *own = http_get("127.0.0.1", a->port);
	char mine = strncmp(own, "HTTP/1.1 503", 12) == 0 ? '5' : '?';
	free(own);
	if (write(a->up[1], &refused, 1) != 1 || write(a->up[1], &mine, 1) != 1)
		return 11;
	(void)read_byte(a->down[0], &c, 60000);
	return 0;
}

/* The value of the sample `series` (a whole line's start) in a scrape, or -1. */
static long long sample(const char *body, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = body; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return atoll(p + n + 1);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

START_TEST(http_origins)
{
	const char *opts[] = {"--metrics-listen", "127.0.0.1:0", NULL};
	struct h_proc v;
	struct http_arg a;
	unsigned char refused = 0;
	char mine = 0;

	start(opts);
	a.port = logged_port();
	struct h_truth *vt = victim_start(&v);
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(slowloris, &a);
	ck_assert_msg(read_byte(a.up[0], (char *)&refused, 30000) == 1 &&
	                  read_byte(a.up[0], &mine, 30000) == 1,
	              "the slowloris did not report");
	ck_assert_msg(refused == SLOW_ADDRS * SLOW_EACH - 8, "%u of %d connections got a 503",
	              refused, SLOW_ADDRS * SLOW_EACH);
	ck_assert_msg(mine == '5', "uid 65534's own scrape was not refused");

	/* Root's scrape, while uid 65534 holds its 8. */
	char *got = http_get("127.0.0.1", a.port);
	char want[64];
	snprintf(want, sizeof want, "memtrace_process_current_bytes{pid=\"%ld\"", vt->pid);
	ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0 && strstr(got, want) != NULL,
	              "root's scrape during the slowloris: %.300s", got);
	const char *body = strstr(got, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	ck_assert_int_eq(sample(body, "memtrace_limit_refused_total{limit=\"http_connections\"}"),
	                 SLOW_ADDRS * SLOW_EACH - 8 + 1);
	/* Its 8 and this scrape (unless the request deadline has cut some
	 * of the 8 by now). */
	long long used = sample(body, "memtrace_limit_used{limit=\"http_connections\"}");
	ck_assert_msg(used >= 1 && used <= 8 + 1, "%lld HTTP connections in use", used);
	ck_assert_int_eq(
	    sample(body, "memtrace_limit_max{limit=\"http_connections\",scope=\"per_origin\"}"), 8);
	ck_assert_msg(sample(body, "memtrace_loop_stall_max_seconds") >= 0, "no stall gauge");
	free(got);
	ck_assert_int_eq(log_count("limit http_connections reached"), 1);
	victim_top(vt, "during the slowloris");

	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "slowloris");
	victim_end(&v, vt, "after the slowloris");
	h_daemon_stop(&D);
}
END_TEST

/* ------------------------------------------------------ hostile agents */

/* A region whose ring 0 holds `nallocs` allocations (16 bytes each, seq 1..)
 * over as many rings as they need, then `nforks` FORK records in the next
 * ring; nothing in flight. -1 on failure. */
static int region_with(uint32_t nallocs, uint32_t nforks)
{
	int fd = h_region_empty();
	if (fd < 0)
		return -1;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	struct shm_header *h = (struct shm_header *)map;
	uint64_t seq = 1;
	uint32_t ring = 0, per = SHM_RING_CAP - 1;
	for (uint32_t i = 0; i < nallocs + nforks; i++) {
		if (i == nallocs || (i < nallocs && i > 0 && i % per == 0))
			ring++;
		struct shm_ring *r = (struct shm_ring *)(map + SHM_OFF_RING(ring));
		uint64_t hd = atomic_load(&r->head);
		bool fork_rec = i >= nallocs;
		r->ev[hd % SHM_RING_CAP] = (struct shm_ev){
		    seq << PROTO_EV_KIND_BITS | (fork_rec ? PROTO_EV_FORK : PROTO_EV_ALLOC),
		    fork_rec ? 0 : UINT64_C(0x10000000) + (uint64_t)i * 32, fork_rec ? 0 : 16, 0,
		    0};
		atomic_store(&r->head, hd + 1);
		seq++;
	}
	for (uint32_t i = 0; i <= ring; i++)
		atomic_store(&((struct shm_ring *)(map + SHM_OFF_RING(i)))->pending, UINT64_MAX);
	atomic_store(&h->nrings, ring + 1);
	atomic_store(&h->seq, seq);
	munmap(map, SHM_SIZE);
	return fd;
}

/* HELLO naming parent_pid (0: none) and fork_seq, with region, on a new
 * connection to agent.sock; the connection, or -1. */
static int agent_hello(int region, uint32_t parent_pid, uint64_t fork_seq)
{
	static const char exe[] = "/bin/hostile";
	static const char cmdline[] = "hostile";
	char *path = h_strf("%s/agent.sock", D.runtime);
	int fd = h_connect(path);
	uint8_t buf[512];
	struct proto_hello h = {.version = PROTO_VERSION,
	                        .nframes = 32,
	                        .pid = (uint32_t)getpid(),
	                        .parent_pid = parent_pid,
	                        .fork_seq = fork_seq,
	                        .exe = exe,
	                        .exe_len = sizeof exe - 1,
	                        .cmdline = cmdline,
	                        .cmdline_len = sizeof cmdline};
	ssize_t n = proto_hello_encode(buf, sizeof buf, &h);

	free(path);
	if (fd < 0 || n <= 0 || send_with_fd(fd, buf, (size_t)n, region) < 0)
		return -1;
	return fd;
}

static int send_wake(int fd)
{
	uint8_t buf[16];
	ssize_t n = proto_empty_encode(buf, sizeof buf, PROTO_WAKE);
	return n > 0 ? h_send_all(fd, buf, (size_t)n) : -1;
}

/* What /proc says of the daemon: its open descriptors; its anonymous
 * resident memory in KiB. */
static int daemon_fds(void)
{
	char *dir = h_strf("/proc/%d/fd", (int)D.pid);
	DIR *d = opendir(dir);
	int n = 0;

	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	free(dir);
	return n;
}

static long daemon_rss_anon_kib(void)
{
	char *path = h_strf("/proc/%d/status", (int)D.pid);
	FILE *f = fopen(path, "re");
	char line[256];
	long kib = -1;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
			break;
	fclose(f);
	free(path);
	return kib;
}

/* ---- agent_sessions: one user's connections leave room for the others */

#define SESS_MAX     32
#define SESS_PER_UID 8

struct hold_arg {
	int up[2], down[2];
	int n; /* connections to open */
};

/* uid 65534: opens n connections to agent.sock and says nothing on them;
 * reports how many the daemon closed within 5 s as one byte, then holds
 * the rest until told. */
static int hold_connections(void *argp)
{
	struct hold_arg *a = argp;
	char *path = h_strf("%s/agent.sock", D.runtime);
	int fds[64], closed = 0;
	char c;

	for (int i = 0; i < a->n; i++)
		if ((fds[i] = h_connect(path)) < 0)
			return 10;
	for (int i = 0; i < a->n; i++)
		if (h_wait_closed(fds[i], i == 0 ? 5000 : 200) == 1)
			closed++;
	c = (char)closed;
	if (write(a->up[1], &c, 1) != 1)
		return 11;
	(void)read_byte(a->down[0], &c, 60000);
	for (int i = 0; i < a->n; i++)
		close(fds[i]);
	free(path);
	return 0;
}

START_TEST(agent_sessions)
{
	const char *opts[] = {"--max-sessions", "32", NULL}; /* a uid a quarter */
	struct hold_arg a = {.n = SESS_MAX};
	struct h_proc v;
	char c;

	start(opts);
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(hold_connections, &a);
	ck_assert_msg(read_byte(a.up[0], &c, 60000) == 1, "the connections were not opened");
	ck_assert_msg(c == SESS_MAX - SESS_PER_UID,
	              "uid 65534 opened %d agent connections with %d allowed a uid: %d were "
	              "closed, want %d",
	              SESS_MAX, SESS_PER_UID, c, SESS_MAX - SESS_PER_UID);
	/* Root's program is traced, exactly, while uid 65534 holds its share. */
	struct h_truth *vt = victim_start(&v);
	victim_top(vt, "while uid 65534 holds its agent connections");
	ck_assert_int_eq(status_limit(H_NOBODY, "agent_connections", "yours"), SESS_PER_UID);
	ck_assert_int_eq(status_limit(H_NOUID, "agent_connections", "refused"),
	                 SESS_MAX - SESS_PER_UID);
	ck_assert_int_eq(log_count("(--max-sessions-per-uid)"), 1);
	/* A traced program of uid 65534 now runs untraced, and says why: once
	 * memtraced has refused it (counted), whenever it ends. */
	static const char *const one_level[] = {"1", NULL};
	struct h_proc p;
	h_prog_start(&p, &D, "manystacks", one_level, H_NOBODY, NULL);
	h_proc_expect_ready(&p);
	long long refused = 0;
	for (int i = 0; i < 200 && refused <= SESS_MAX - SESS_PER_UID; i++) {
		refused = status_limit(H_NOUID, "agent_connections", "refused");
		if (refused <= SESS_MAX - SESS_PER_UID)
			usleep(50000);
	}
	ck_assert_int_eq(refused, SESS_MAX - SESS_PER_UID + 1);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_int_eq(h_proc_finish(&p, 20000), 0);
	ck_assert_msg(p.err.data != NULL && strstr(p.err.data, "limits.agent_connections") != NULL,
	              "uid 65534's program refused a session said: %.800s",
	              p.err.data != NULL ? p.err.data : "");
	h_proc_cleanup(&p);
	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "agent connections");
	victim_end(&v, vt, "after the agent connections");
	h_daemon_stop(&D);
}
END_TEST

/* ---- mutual_parents: fork children that name each other as parents */

struct mutual_arg {
	int up[2], down[2];
};

/* Waits for the test's go-ahead (a byte on down). */
static int go_ahead(struct mutual_arg *a)
{
	char c;
	return read_byte(a->down[0], &c, 30000) == 1 ? 0 : -1;
}

/* uid 65534, process X: connection 1 says hello as a process of its own;
 * its child Y says hello as X's fork child (record 1000, not read yet);
 * connection 2 of X says hello as Y's fork child (record 1000): each waits
 * for the other's image. Then WAKEs on all. Reports 'd' when done. */
static int mutual(void *argp)
{
	struct mutual_arg *a = argp;
	int r1 = h_region_empty(), r2 = h_region_empty(), r3 = h_region_empty();
	int yup[2], ydown[2];
	char c;

	if (r1 < 0 || r2 < 0 || r3 < 0 || pipe(yup) < 0 || pipe(ydown) < 0)
		return 10;
	int c1 = agent_hello(r1, 0, 0);
	if (c1 < 0 || write(a->up[1], "1", 1) != 1 || go_ahead(a) < 0)
		return 11;
	pid_t x = getpid(), y = fork();
	if (y == 0) {
		int c2 = agent_hello(r2, (uint32_t)x, 1000);
		if (c2 < 0 || write(yup[1], "2", 1) != 1)
			_exit(12);
		(void)read_byte(ydown[0], &c, 60000);
		(void)send_wake(c2);
		(void)read_byte(ydown[0], &c, 60000);
		_exit(0);
	}
	if (read_byte(yup[0], &c, 30000) != 1)
		return 13;
	if (write(a->up[1], &(char){(char)(y & 0x7f)}, 1) != 1) /* "Y said hello" */
		return 14;
	if (go_ahead(a) < 0)
		return 15;
	int c3 = agent_hello(r3, (uint32_t)y, 1000);
	if (c3 < 0)
		return 16;
	(void)send_wake(c1);
	(void)send_wake(c3);
	if (write(ydown[1], "w", 1) != 1)
		return 17;
	usleep(300000);
	if (write(a->up[1], "d", 1) != 1)
		return 18;
	(void)go_ahead(a);
	if (write(ydown[1], "e", 1) != 1)
		return 19;
	waitpid(y, NULL, 0);
	close(c1);
	close(c3);
	return 0;
}

/* Accepts a list answer once uid 65534 has `want` sessions in it. */
static char *count_nobody_sessions(const cJSON *json, void *arg)
{
	int want = *(const int *)arg, n = 0;
	const cJSON *ps = cJSON_GetObjectItemCaseSensitive(json, "processes"), *e;
	cJSON_ArrayForEach(e, ps)
	{
		long long uid = -1;
		if (h_json_int(e, "uid", &uid) && uid == H_NOBODY)
			n++;
	}
	return n == want ? NULL : h_strf("uid 65534 has %d sessions, not %d yet", n, want);
}

static void wait_nobody_sessions(int want)
{
	const char *args[] = {"list", NULL};
	struct h_ctl r;
	char *why = h_ctl_poll(&D, H_NOUID, &r, count_nobody_sessions, &want, args);
	ck_assert_msg(why == NULL, "%s: %.600s", why, r.out);
	h_ctl_free(&r);
}

START_TEST(mutual_parents)
{
	struct mutual_arg a;
	struct h_proc v;
	char c;

	start(NULL);
	struct h_truth *vt = victim_start(&v);
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(mutual, &a);
	/* Each hello is read before the next is sent, so each child finds
	 * its named parent live and waits for it. */
	ck_assert_int_eq(read_byte(a.up[0], &c, 30000), 1);
	wait_nobody_sessions(1);
	ck_assert_int_eq(write(a.down[1], "g", 1), 1);
	ck_assert_int_eq(read_byte(a.up[0], &c, 30000), 1);
	wait_nobody_sessions(2);
	ck_assert_int_eq(write(a.down[1], "g", 1), 1);
	ck_assert_int_eq(read_byte(a.up[0], &c, 30000), 1);
	ck_assert_msg(c == 'd', "the attack did not run to its end");
	ck_assert_msg(h_daemon_alive(&D), "memtraced died: %s", h_status_str(D.status));
	victim_top(vt, "after fork children naming each other as parents");
	ck_assert_int_eq(write(a.down[1], "g", 1), 1);
	wait_nobody(child, "mutual parents");
	victim_end(&v, vt, "after the mutual parents");
	h_daemon_stop(&D);
}
END_TEST

/* ---- passed_descriptors: what an agent attaches is closed, never kept,
 * never waited for */

#define DESC_CONNS 64

struct desc_arg {
	int up[2], down[2];
};

/* A TCP connection on loopback whose peer never reads, its send buffer
 * full, lingering 120 s: the last close() of it waits that long. The
 * listener (never accepting) goes to *listener. */
static int lingering_socket(int *listener)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	int small = 4096, l = socket(AF_INET, SOCK_STREAM, 0), fd = socket(AF_INET, SOCK_STREAM, 0);
	struct linger lg = {1, 120};
	char junk[4096];

	memset(junk, 'j', sizeof junk);
	if (l < 0 || fd < 0 || setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) < 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return -1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (send(fd, junk, sizeof junk, MSG_NOSIGNAL) > 0)
		;
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
		return -1;
	*listener = l;
	return fd;
}

/* uid 65534: DESC_CONNS hellos that each carry the region and three pipe
 * ends; a hello followed by a message with 253 pipe ends; a hello followed
 * by a WAKE carrying the lingering socket, whose own copy it then closes.
 * Reports 's' when sent, holds the listener until told. */
static int pass_descriptors(void *argp)
{
	struct desc_arg *a = argp;
	char *path = h_strf("%s/agent.sock", D.runtime);
	uint8_t hello[512], wake[16];
	size_t hn = hello_frame(hello, sizeof hello);
	ssize_t wn = proto_empty_encode(wake, sizeof wake, PROTO_WAKE);
	int p[2], many[253], listener = -1;
	char c;

	if (hn == 0 || wn <= 0 || pipe(p) < 0)
		return 10;
	for (int i = 0; i < DESC_CONNS; i++) {
		int fd = h_connect(path), region = h_region_empty();
		int fds[4] = {region, p[0], p[1], p[0]};
		if (fd < 0 || region < 0 || h_send_fds(fd, hello, hn, fds, 4) < 0)
			return 11;
		(void)h_wait_closed(fd, 5000);
		close(fd);
		close(region);
	}
	for (int i = 0; i < 253; i++)
		many[i] = i % 2 ? p[1] : p[0];
	int fd = h_connect(path), region = h_region_empty();
	if (fd < 0 || region < 0 || send_with_fd(fd, hello, hn, region) < 0 ||
	    h_send_fds(fd, wake, (size_t)wn, many, 253) < 0)
		return 12;
	(void)h_wait_closed(fd, 5000);
	close(fd);
	close(region);
	int tcp = lingering_socket(&listener);
	fd = h_connect(path);
	region = h_region_empty();
	if (tcp < 0 || fd < 0 || region < 0 || send_with_fd(fd, hello, hn, region) < 0 ||
	    h_send_fds(fd, wake, (size_t)wn, &tcp, 1) < 0)
		return 13;
	close(tcp); /* the daemon's copy is the last */
	close(region);
	if (write(a->up[1], "s", 1) != 1)
		return 14;
	(void)read_byte(a->down[0], &c, 120000);
	close(fd);
	close(listener);
	close(p[0]);
	close(p[1]);
	free(path);
	return 0;
}

struct fds_arg {
	int most;
};

static char *fds_back(const cJSON *json, void *arg)
{
	const struct fds_arg *f = arg;
	int n = daemon_fds();
	(void)json;
	return n <= f->most ? NULL
	                    : h_strf("memtraced holds %d descriptors, %d before", n, f->most);
}

START_TEST(passed_descriptors)
{
	struct desc_arg a;
	struct h_proc v;
	char c;

	start(NULL);
	struct h_truth *vt = victim_start(&v);
	victim_top(vt, "before the descriptors");
	struct fds_arg before = {daemon_fds()};
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(pass_descriptors, &a);
	ck_assert_msg(read_byte(a.up[0], &c, 60000) == 1, "the descriptors were not sent");
	/* The lingering socket's close must not hold the loop: root is
	 * answered, and exactly. */
	victim_top(vt, "after a lingering socket was passed");
	/* Every descriptor passed is closed again (one connection is open:
	 * its own socket and its region). */
	before.most += 2;
	const char *args[] = {"status", NULL};
	struct h_ctl r;
	char *why = h_ctl_poll(&D, H_NOUID, &r, fds_back, &before, args);
	ck_assert_msg(why == NULL, "%s (after %d hellos with 4 descriptors, 253 in one message)",
	              why, DESC_CONNS);
	h_ctl_free(&r);
	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "passed descriptors");
	victim_end(&v, vt, "after the descriptors");
	h_daemon_stop(&D);
}
END_TEST

/* ---- fork_images: FORK records cannot make the daemon keep heaps without
 * end */

#define IMG_BLOCKS   30000
#define IMG_FORKS    300
#define IMG_SESSIONS 2

struct img_arg {
	int up[2], down[2];
};

/* uid 65534: IMG_SESSIONS connections whose regions hold IMG_BLOCKS live
 * blocks and then IMG_FORKS FORK records that no child ever claims. */
static int fork_flood(void *argp)
{
	struct img_arg *a = argp;
	int fds[IMG_SESSIONS];
	char c;

	for (int i = 0; i < IMG_SESSIONS; i++) {
		int region = region_with(IMG_BLOCKS, IMG_FORKS);
		if (region < 0 || (fds[i] = agent_hello(region, 0, 0)) < 0 || send_wake(fds[i]) < 0)
			return 10;
		close(region);
	}
	if (write(a->up[1], "s", 1) != 1)
		return 11;
	(void)read_byte(a->down[0], &c, 60000);
	for (int i = 0; i < IMG_SESSIONS; i++)
		close(fds[i]);
	return 0;
}

static char *all_blocks(const cJSON *json, void *arg)
{
	const cJSON *ps = cJSON_GetObjectItemCaseSensitive(json, "processes"), *e;
	int n = 0;
	(void)arg;
	cJSON_ArrayForEach(e, ps)
	{
		long long uid = -1, blocks = -1;
		if (h_json_int(e, "uid", &uid) && uid == H_NOBODY &&
		    h_json_int(e, "blocks", &blocks) && blocks == IMG_BLOCKS)
			n++;
	}
	return n == IMG_SESSIONS
	           ? NULL
	           : h_strf("%d of uid 65534's sessions hold their %d blocks", n, IMG_BLOCKS);
}

/* --------------------------------------------------------- symbol_cache */

#define SC_STACKS 256
#define SC_ADDR0  (UINT64_C(0x5a) << 36) /* in no module the agent names */

/* Frame k of stack id (1-based), as the hostile agent stores it. */
static uint64_t sc_addr(uint32_t id, uint32_t k)
{
	return SC_ADDR0 + ((uint64_t)id * PROTO_MAX_FRAMES + k) * 16;
}

/* A region whose stack table holds SC_STACKS stacks of PROTO_MAX_FRAMES
 * distinct addresses, each with one live 64-byte block. */
static int region_of_stacks(void)
{
	int fd = h_region_empty();
	if (fd < 0)
		return -1;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	struct shm_header *h = (struct shm_header *)map;
	struct shm_ring *r = (struct shm_ring *)(map + SHM_OFF_RING(0));
	uint64_t off = 0, seq = 1;
	for (uint32_t id = 1; id <= SC_STACKS; id++) {
		struct shm_stack *e = (struct shm_stack *)(map + SHM_OFF_ARENA + off);
		uint64_t *fr = (uint64_t *)(e + 1);
		e->hash = id;
		e->nframes = PROTO_MAX_FRAMES;
		for (uint32_t k = 0; k < PROTO_MAX_FRAMES; k++)
			fr[k] = sc_addr(id, k);
		((uint64_t *)(map + SHM_OFF_OFFSETS))[id] = off;
		((uint8_t *)(map + SHM_OFF_STATES))[id] = SHM_STACK_READY;
		off += sizeof(*e) + 8 * PROTO_MAX_FRAMES;
		uint64_t hd = atomic_load(&r->head);
		r->ev[hd % SHM_RING_CAP] =
		    (struct shm_ev){seq++ << PROTO_EV_KIND_BITS | PROTO_EV_ALLOC,
		                    UINT64_C(0x10000000) + (uint64_t)id * 64, 64, id, 0};
		atomic_store(&r->head, hd + 1);
	}
	atomic_store(&r->pending, UINT64_MAX);
	atomic_store(&h->nrings, 1);
	atomic_store(&h->seq, seq);
	munmap(map, SHM_SIZE);
	return fd;
}

/* uid 65534: the hostile agent, connected until told. */
static int frame_flood(void *argp)
{
	struct flood_arg *a = argp;
	int region = region_of_stacks(), fd;
	char c;

	if (region < 0)
		return 10;
	if ((fd = agent_hello(region, 0, 0)) < 0)
		return 11;
	close(region);
	if (write(a->up[1], "s", 1) != 1)
		return 12;
	(void)read_byte(a->down[0], &c, 120000);
	close(fd);
	return 0;
}

/* The attacker's `top --key traceback`: every stack, every frame, as sent. */
static char *check_flood_top(const cJSON *json, void *arg)
{
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(json, "stats"), *st;
	static bool seen[SC_STACKS + 1];
	int n = 0;

	(void)arg;
	memset(seen, 0, sizeof seen);
	if (cJSON_GetArraySize(stats) != SC_STACKS)
		return h_strf("%d stats, want %d", cJSON_GetArraySize(stats), SC_STACKS);
	cJSON_ArrayForEach(st, stats)
	{
		const cJSON *tb = cJSON_GetObjectItemCaseSensitive(st, "traceback");
		long long size = -1, count = -1;
		if (!h_json_int(st, "size", &size) || !h_json_int(st, "count", &count) ||
		    size != 64 || count != 1)
			return h_strf("entry %d: size %lld count %lld, want 64 and 1", n, size,
			              count);
		if (cJSON_GetArraySize(tb) != PROTO_MAX_FRAMES)
			return h_strf("entry %d: %d frames", n, cJSON_GetArraySize(tb));
		const cJSON *f0 = cJSON_GetArrayItem(tb, 0);
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(f0, "function");
		unsigned long long a0;
		if (!cJSON_IsString(fn) || sscanf(fn->valuestring, "[unknown]+0x%llx", &a0) != 1 ||
		    a0 < SC_ADDR0 || (a0 - SC_ADDR0) % (16 * PROTO_MAX_FRAMES) != 0)
			return h_strf("entry %d: first frame %s", n,
			              cJSON_IsString(fn) ? fn->valuestring : "?");
		uint32_t id = (uint32_t)((a0 - SC_ADDR0) / (16 * PROTO_MAX_FRAMES));
		if (id < 1 || id > SC_STACKS || seen[id])
			return h_strf("entry %d: stack %u again or unknown", n, id);
		seen[id] = true;
		for (uint32_t k = 0; k < PROTO_MAX_FRAMES; k++) {
			char want[64];
			const cJSON *f = cJSON_GetArrayItem(tb, (int)k);
			fn = cJSON_GetObjectItemCaseSensitive(f, "function");
			snprintf(want, sizeof want, "[unknown]+0x%" PRIx64, sc_addr(id, k));
			if (!cJSON_IsString(fn) || strcmp(fn->valuestring, want) != 0)
				return h_strf("stack %u frame %u: %s, want %s", id, k,
				              cJSON_IsString(fn) ? fn->valuestring : "?", want);
		}
		n++;
	}
	return NULL;
}

START_TEST(symbol_cache)
{
	static const char *const opts[] = {"--max-symbol-cache-bytes", "4194304",
	                                   "--metrics-listen", "127.0.0.1:0", NULL};
	struct h_proc v;
	struct flood_arg a;
	struct h_ctl r;
	char c, pid[24];

	start(opts);
	int port = logged_port();
	struct h_truth *vt = victim_start(&v);
	victim_top(vt, "before the frame flood");
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(frame_flood, &a);
	ck_assert_msg(read_byte(a.up[0], &c, 60000) == 1, "the hostile agent did not start");
	snprintf(pid, sizeof pid, "%d", (int)child);
	const char *top[] = {"top", "--pid", pid, "--key", "traceback", "--limit", "0", NULL};
	/* Twice: the second capture finds what the first did not cache. */
	for (int round = 0; round < 2; round++) {
		char *why = h_ctl_poll(&D, H_NOUID, &r, check_flood_top, NULL, top);
		ck_assert_msg(why == NULL, "round %d: the attacker's top: %s", round, why);
		h_ctl_free(&r);
	}
	victim_top(vt, "during the frame flood");
	long long used = status_limit(H_NOUID, "symbol_cache_bytes", "used");
	long long refused = status_limit(H_NOUID, "symbol_cache_bytes", "refused");
	ck_assert_int_eq(status_limit(H_NOUID, "symbol_cache_bytes", "max"), 4194304);
	ck_assert_int_eq(status_limit(H_NOUID, "symbol_cache_bytes", "per_uid"), 1048576);
	ck_assert_msg(used > 0 && used <= 4194304, "the cache holds %lld bytes", used);
	/* 65,536 addresses twice; a uid's 1 MiB holds a few thousand. */
	ck_assert_msg(refused > 2 * (SC_STACKS * PROTO_MAX_FRAMES - 20000),
	              "only %lld frames were not cached", refused);
	ck_assert_msg(status_limit(H_NOBODY, "symbol_cache_bytes", "yours") <= 1048576 + 65536,
	              "uid 65534 holds more than its share");
	/* Root sees who holds the cache: uid 65534, at its share. */
	{
		struct h_ctl st;
		const char *args[] = {"status", NULL};
		h_ctl_ok(&D, H_NOUID, &st, args);
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(
		        cJSON_GetObjectItemCaseSensitive(st.json, "limits"), "symbol_cache_bytes"),
		    "uids");
		bool found = false;
		const cJSON *e;
		cJSON_ArrayForEach(e, u)
		{
			long long uid = -1;
			if (h_json_int(e, "uid", &uid) && uid == H_NOBODY)
				found =
				    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "at_share"));
		}
		ck_assert_msg(found, "status does not show uid 65534 at its share: %.600s", st.out);
		h_ctl_free(&st);
	}
	ck_assert_int_eq(log_count("symbol cache: uid 65534 reached its share"), 1);
	/* A scrape resolves the attacker's sites too: its count only grows. */
	char *body = http_get("127.0.0.1", port);
	ck_assert_ptr_nonnull(body);
	ck_assert_int_ge(sample(body, "memtrace_limit_refused_total{limit=\"symbol_cache_bytes\"}"),
	                 refused);
	long long mused = sample(body, "memtrace_limit_used{limit=\"symbol_cache_bytes\"}");
	ck_assert_msg(mused > 0 && mused <= 4194304, "/metrics: the cache holds %lld bytes", mused);
	ck_assert_int_eq(
	    sample(body, "memtrace_limit_max{limit=\"symbol_cache_bytes\",scope=\"per_uid\"}"),
	    1048576);
	free(body);

	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "frame flood");
	victim_end(&v, vt, "after the frame flood");
	h_daemon_stop(&D);
}
END_TEST

START_TEST(fork_images)
{
	const char *opts[] = {"--max-fork-image-bytes", "67108864", NULL};
	struct img_arg a;
	struct h_proc v;
	char c;

	start(opts);
	struct h_truth *vt = victim_start(&v);
	victim_top(vt, "before the FORK records");
	long base = daemon_rss_anon_kib();
	ck_assert_int_eq(pipe(a.up), 0);
	ck_assert_int_eq(pipe(a.down), 0);
	pid_t child = as_nobody(fork_flood, &a);
	ck_assert_msg(read_byte(a.up[0], &c, 60000) == 1, "the regions were not sent");
	const char *args[] = {"list", NULL};
	struct h_ctl r;
	char *why = h_ctl_poll(&D, H_NOUID, &r, all_blocks, NULL, args);
	ck_assert_msg(why == NULL, "%s: %.600s", why, r.out);
	h_ctl_free(&r);
	victim_top(vt, "after the FORK records");
	/* Each image is a copy of a heap of IMG_BLOCKS blocks; kept for every
	 * record they would take hundreds of MiB. A uid may hold a quarter of
	 * 64 MiB of them. */
	long grown = daemon_rss_anon_kib() - base;
	ck_assert_msg(grown < 96 * 1024,
	              "memtraced grew by %ld KiB for %d x %d FORK records of a heap of %d blocks",
	              grown, IMG_SESSIONS, IMG_FORKS, IMG_BLOCKS);
	ck_assert_int_le(status_limit(H_NOBODY, "fork_image_bytes", "yours"), 16 << 20);
	ck_assert_int_eq(write(a.down[1], "x", 1), 1);
	wait_nobody(child, "FORK records");
	victim_end(&v, vt, "after the FORK records");
	h_daemon_stop(&D);
}
END_TEST

/* ------------------------------------------------------------- runner */

/* ------------------------------------------------------- snapshot_file */

START_TEST(snapshot_file)
{
	const char *opts[] = {"--snapshot-interval", "0", "--max-store-bytes-per-uid", "2K", NULL};
	struct h_proc v;
	struct h_ctl r;
	char pid[24];

	start(opts);
	struct h_truth *vt = victim_start(&v);
	victim_top(vt, "before");
	char *file = h_daemon_file(&D, "refused.json");
	snprintf(pid, sizeof pid, "%ld", vt->pid);
	const char *snap[] = {"snapshot", "--pid", pid, "-o", file, NULL};
	h_ctl_ok(&D, H_NOUID, &r, snap);
	const cJSON *stored = cJSON_GetObjectItemCaseSensitive(r.json, "stored");
	const char *why = h_json_str(r.json, "store_error");
	ck_assert_msg(cJSON_IsFalse(stored) && why != NULL &&
	                  strstr(why, "--max-store-bytes-per-uid") != NULL,
	              "snapshot -o past the store's bound answers: %.800s", r.out);
	h_ctl_free(&r);
	struct h_expect e = {.t = vt, .files = vt, .key = H_KEY_LINENO};
	const char *top[] = {"top", "--snapshot", file, "--limit", "0", NULL};
	h_ctl_ok(&D, H_NOUID, &r, top);
	char *diff = h_check_top(r.json, &e);
	ck_assert_msg(diff == NULL, "the file differs from the program's book: %.2000s", diff);
	h_ctl_free(&r);
	free(file);
	victim_end(&v, vt, "after");
	h_daemon_stop(&D);
}
END_TEST

/* -------------------------------------------------------- model_bounds */

#define MODEL_PER_UID 24576
#define MODEL_BLOCKS  16384 /* manystacks 14 */

/* stats --pid of a program of uid 65534 once its MODEL_BLOCKS blocks are
 * read: limit_reached as *arg wants ("blocks", or NULL for none). */
static char *check_model_stats(const cJSON *json, void *arg)
{
	const char *want = arg;
	const cJSON *lr = cJSON_GetObjectItemCaseSensitive(json, "limit_reached");
	long long blocks = -1;
	h_json_int(json, "blocks", &blocks);
	if (want == NULL) {
		if (!cJSON_IsNull(lr) || blocks < MODEL_BLOCKS)
			return h_strf("limit_reached not null or %lld blocks", blocks);
		return NULL;
	}
	if (!cJSON_IsString(lr) || strcmp(lr->valuestring, want) != 0)
		return h_strf("limit_reached is not \"%s\" (%lld blocks)", want, blocks);
	if (blocks >= MODEL_BLOCKS)
		return h_strf("%lld blocks tracked past the bound", blocks);
	return NULL;
}

static struct h_truth *model_prog(struct h_proc *p, const char *want_limit)
{
	static const char *const levels[] = {"14", NULL};
	struct h_ctl r;
	char pid[24];

	h_prog_start(p, &D, "manystacks", levels, H_NOBODY, NULL);
	h_proc_expect_ready(p);
	struct h_truth *t = h_truth_must(p->truth);
	snprintf(pid, sizeof pid, "%ld", t->pid);
	const char *stats[] = {"stats", "--pid", pid, NULL};
	char *why = h_ctl_poll(&D, H_NOBODY, &r, check_model_stats, (void *)want_limit, stats);
	ck_assert_msg(why == NULL, "pid %s: %s: %.800s", pid, why, r.out);
	h_ctl_free(&r);
	if (want_limit == NULL) {
		struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
		const char *top[] = {"top", "--pid", pid, "--limit", "0", NULL};
		why = h_ctl_poll(&D, H_NOBODY, &r, h_check_top_fn, &e, top);
		ck_assert_msg(why == NULL, "pid %s differs from its book: %.2000s", pid, why);
		h_ctl_free(&r);
	}
	return t;
}

/* Every program of uid 65534 has ended. */
static char *check_none_live(const cJSON *json, void *arg)
{
	const cJSON *e;
	(void)arg;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(json, "processes"))
	{
		const char *st = h_json_str(e, "state");
		long long uid = -1;
		if (h_json_int(e, "uid", &uid) && uid == H_NOBODY && st != NULL &&
		    strcmp(st, "live") == 0)
			return h_strf("a process of uid 65534 is live");
	}
	return NULL;
}

START_TEST(model_bounds)
{
	char per_uid[24];
	snprintf(per_uid, sizeof per_uid, "%d", MODEL_PER_UID);
	const char *opts[] = {"--snapshot-interval",
	                      "0",
	                      "--metrics-listen",
	                      "127.0.0.1:0",
	                      "--max-blocks-per-uid",
	                      per_uid,
	                      NULL};
	struct h_proc v, a, b, c;
	struct h_ctl r;
	char apid[24];

	start(opts);
	int port = logged_port();
	struct h_truth *vt = victim_start(&v);
	victim_top(vt, "before uid 65534's programs");

	struct h_truth *ta = model_prog(&a, NULL);
	struct h_truth *tb = model_prog(&b, "blocks");
	long long yours = status_limit(H_NOBODY, "tracked_blocks", "yours");
	ck_assert_msg(yours >= MODEL_BLOCKS && yours <= MODEL_PER_UID,
	              "uid 65534 holds %lld tracked blocks (bound %d)", yours, MODEL_PER_UID);
	ck_assert_int_eq(status_limit(H_NOUID, "tracked_blocks", "per_uid"), MODEL_PER_UID);
	ck_assert_int_gt(status_limit(H_NOUID, "tracked_blocks", "refused"), 0);
	char *m = http_get("127.0.0.1", port);
	ck_assert_int_eq(
	    sample(m, "memtrace_limit_max{limit=\"tracked_blocks\",scope=\"per_uid\"}"),
	    MODEL_PER_UID);
	long long used = sample(m, "memtrace_limit_used{limit=\"tracked_blocks\"}");
	ck_assert_msg(used >= yours, "/metrics: %lld tracked blocks in all", used);
	free(m);
	ck_assert_int_eq(log_count("limit tracked_blocks reached: uid 65534"), 1);
	victim_top(vt, "while uid 65534 is at its bound");

	/* Both end; their models stay (ended processes are listed) until a
	 * live process of theirs needs the room. */
	snprintf(apid, sizeof apid, "%ld", ta->pid);
	ck_assert_int_eq(h_proc_send(&a, "exit"), 0);
	h_proc_end(&a, "manystacks a");
	ck_assert_int_eq(h_proc_send(&b, "exit"), 0);
	h_proc_end(&b, "manystacks b");
	const char *list[] = {"list", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_none_live, NULL, list);
	ck_assert_msg(why == NULL, "%s", why);
	h_ctl_free(&r);
	ck_assert_int_eq(status_limit(H_NOUID, "models_forgotten", NULL), 0);
	/* Their exit snapshots are stored (a forgotten model's queries answer
	 * from it; the daemon forgets one whose snapshot is stored first). */
	const struct h_truth *ended[] = {ta, tb};
	for (int i = 0; i < 2; i++) {
		char epid[24];
		snprintf(epid, sizeof epid, "%ld", ended[i]->pid);
		const char *snaps[] = {"snapshots", "--pid", epid, NULL};
		why = h_ctl_poll(&D, H_NOUID, &r, check_exit_snapshot, NULL, snaps);
		ck_assert_msg(why == NULL, "pid %s: %s: %.800s", epid, why, r.out);
		h_ctl_free(&r);
	}

	struct h_truth *tc = model_prog(&c, NULL);
	ck_assert_int_ge(status_limit(H_NOUID, "models_forgotten", NULL), 1);
	ck_assert_int_ge(log_count("makes room for a live process of uid 65534"), 1);
	yours = status_limit(H_NOBODY, "tracked_blocks", "yours");
	ck_assert_msg(yours <= MODEL_PER_UID, "uid 65534 holds %lld tracked blocks", yours);
	/* The first was forgotten (the oldest): it is listed no more, and its
	 * top answers from its exit snapshot, exact. */
	h_ctl_ok(&D, H_NOUID, &r, list);
	const cJSON *e;
	int listed = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
	{
		long long pid = -1;
		listed += h_json_int(e, "pid", &pid) && pid == ta->pid;
	}
	ck_assert_msg(listed == 0, "pid %s (forgotten) is still listed: %.1500s", apid, r.out);
	h_ctl_free(&r);
	struct h_expect ea = {.t = ta, .files = ta, .key = H_KEY_LINENO};
	const char *topa[] = {"top", "--pid", apid, "--limit", "0", NULL};
	h_ctl_ok(&D, H_NOBODY, &r, topa);
	why = h_check_top(r.json, &ea);
	ck_assert_msg(why == NULL, "pid %s (forgotten), from its exit snapshot: %.2000s", apid,
	              why);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&c, "exit"), 0);
	h_proc_end(&c, "manystacks c");
	victim_end(&v, vt, "after uid 65534's programs");
	h_truth_free(ta);
	h_truth_free(tb);
	h_truth_free(tc);
	h_daemon_stop(&D);
}
END_TEST

/* ------------------------------------------------------- store_bounds */

#define STORE_PER_UID 16384
#define STORE_RUNS    24

/* What the file holds for a uid, read through a connection of the test's
 * own: the owner comes from the process table, the bytes are the charges
 * the file records. */
struct stored {
	long long n, bytes;
	long pids[STORE_RUNS + 8]; /* oldest first */
	int npids;
};

static void stored_of(unsigned uid, struct stored *out)
{
	char *path = h_strf("%s/memtrace.db", D.state);
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;

	memset(out, 0, sizeof(*out));
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(db,
	                       "SELECT p.pid, s.bytes FROM snapshot s JOIN process p"
	                       " ON p.id = s.process_id WHERE p.uid = ?1 ORDER BY s.id",
	                       -1, &q, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(q, 1, uid);
	while (sqlite3_step(q) == SQLITE_ROW) {
		if (out->npids < (int)(sizeof(out->pids) / sizeof(out->pids[0])))
			out->pids[out->npids++] = (long)sqlite3_column_int64(q, 0);
		out->n++;
		out->bytes += sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	free(path);
}

/* status's store.uids entry of uid (asked as `as`), or NULL; *r is kept
 * for the caller to free. */
static const cJSON *status_store_uid(uid_t as, unsigned uid, struct h_ctl *r)
{
	const char *args[] = {"status", NULL};
	const cJSON *e;

	h_ctl_ok(&D, as, r, args);
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->json, "store");
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "uids"))
	{
		long long u = -1;
		if (h_json_int(e, "uid", &u) && u == (long long)uid)
			return e;
	}
	return NULL;
}

/* Every exit snapshot of uid 65534's programs was written or deleted. */
static char *check_store_settled(const cJSON *json, void *arg)
{
	long long want = *(long long *)arg, n = -1, ev = -1, queued = -1;
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(json, "store"), *e;
	const cJSON *lim = cJSON_GetObjectItemCaseSensitive(json, "limits");
	h_json_int(cJSON_GetObjectItemCaseSensitive(lim, "queued_snapshots"), "used", &queued);
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "uids"))
	{
		long long u = -1;
		if (h_json_int(e, "uid", &u) && u == H_NOBODY) {
			h_json_int(e, "snapshots", &n);
			h_json_int(e, "evicted_per_uid", &ev);
		}
	}
	if (n < 0 || ev < 0 || n + ev != want || queued != 0)
		return h_strf("uid 65534: %lld stored + %lld deleted, want %lld; %lld queued", n,
		              ev, want, queued);
	return NULL;
}

/* The figures status gives (as root and as uid 65534) and /metrics are
 * the file's; uid 65534's and root's snapshots deleted for their own
 * bounds since the start are `evicted` and `root_evicted`. */
static void store_figures_are_file(int port, long long evicted, long long root_evicted,
                                   const char *what)
{
	struct stored mine, root;
	struct h_ctl r;
	long long v;
	char line[160];

	stored_of(H_NOBODY, &mine);
	stored_of(0, &root);
	const cJSON *e = status_store_uid(H_NOUID, H_NOBODY, &r);
	ck_assert_msg(e != NULL, "%s: status has no store entry of uid 65534: %.1500s", what,
	              r.out);
	ck_assert_msg(h_json_int(e, "bytes", &v) && v == mine.bytes,
	              "%s: status %lld bytes, file %lld", what, v, mine.bytes);
	ck_assert_msg(h_json_int(e, "snapshots", &v) && v == mine.n,
	              "%s: status %lld snapshots, file %lld", what, v, mine.n);
	ck_assert_msg(h_json_int(e, "evicted_per_uid", &v) && v == evicted,
	              "%s: status %lld deleted, want %lld", what, v, evicted);
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r.json, "store");
	ck_assert_msg(h_json_int(st, "bytes", &v) && v == mine.bytes + root.bytes,
	              "%s: status %lld bytes in all, file %lld", what, v, mine.bytes + root.bytes);
	ck_assert_msg(h_json_int(st, "max_bytes_per_uid", &v) && v == STORE_PER_UID,
	              "%s: max_bytes_per_uid %lld", what, v);
	h_ctl_free(&r);
	e = status_store_uid(H_NOUID, 0, &r);
	ck_assert_msg(e != NULL && h_json_int(e, "bytes", &v) && v == root.bytes &&
	                  h_json_int(e, "evicted_per_uid", &v) && v == root_evicted,
	              "%s: root's entry differs from the file (%lld bytes): %.1500s", what,
	              root.bytes, r.out);
	h_ctl_free(&r);
	/* uid 65534 sees its own figures, not root's, and the sums only
	 * under the *_all keys */
	ck_assert_ptr_null(status_store_uid(H_NOBODY, 0, &r));
	st = cJSON_GetObjectItemCaseSensitive(r.json, "store");
	ck_assert_msg(h_json_int(st, "bytes", &v) && v == mine.bytes,
	              "%s: status as uid 65534 says store.bytes %lld, its own are %lld", what, v,
	              mine.bytes);
	ck_assert_msg(h_json_int(st, "snapshots", &v) && v == mine.n,
	              "%s: status as uid 65534 says store.snapshots %lld, its own are %lld", what,
	              v, mine.n);
	ck_assert_msg(h_json_int(st, "evicted_per_uid", &v) && v == evicted,
	              "%s: status as uid 65534 says evicted_per_uid %lld, want %lld", what, v,
	              evicted);
	ck_assert_msg(h_json_int(st, "bytes_all", &v) && v == mine.bytes + root.bytes,
	              "%s: status as uid 65534 says bytes_all %lld, the file %lld", what, v,
	              mine.bytes + root.bytes);
	ck_assert_msg(h_json_int(st, "file_bytes", &v) && v >= mine.bytes + root.bytes,
	              "%s: file_bytes %lld", what, v);
	h_ctl_free(&r);
	ck_assert_int_eq(status_limit(H_NOBODY, "store_bytes", "yours"), mine.bytes);
	ck_assert_int_eq(status_limit(H_NOUID, "store_bytes", "per_uid"), STORE_PER_UID);

	char *m = http_get("127.0.0.1", port);
	const char *want[4];
	char *w0 = h_strf("\nmemtrace_store_bytes{uid=\"65534\"} %lld\n", mine.bytes);
	char *w1 = h_strf("\nmemtrace_store_snapshots{uid=\"65534\"} %lld\n", mine.n);
	char *w2 = h_strf("\nmemtrace_store_evicted_total{uid=\"65534\",bound=\"per_uid\"} %lld\n",
	                  evicted);
	char *w3 = h_strf("\nmemtrace_limit_max{limit=\"store_bytes\",scope=\"per_uid\"} %d\n",
	                  STORE_PER_UID);
	want[0] = w0, want[1] = w1, want[2] = w2, want[3] = w3;
	for (int i = 0; i < 4; i++) {
		snprintf(line, sizeof line, "%s", want[i] + 1);
		ck_assert_msg(strstr(m, want[i]) != NULL, "%s: /metrics lacks %s", what, line);
	}
	free(w0), free(w1), free(w2), free(w3);
	free(m);
}

/* The port of the n-th "metrics on" line of the log (a restarted daemon
 * appends to it). */
static int nth_logged_port(int n)
{
	static const char prefix[] = "metrics on http://127.0.0.1:";
	long long deadline = h_now_ms() + H_START_MS;
	while (h_now_ms() < deadline) {
		char *log = h_daemon_log_tail(&D, (size_t)16 << 20);
		const char *p = log;
		for (int i = 0; p != NULL && i < n; i++) {
			p = strstr(p, prefix);
			if (p != NULL && i + 1 < n)
				p++;
		}
		int port = p != NULL ? atoi(p + strlen(prefix)) : 0;
		free(log);
		if (port > 0)
			return port;
		h_sleep_ms(20);
	}
	ck_abort_msg("memtraced logged no metrics port (start %d)", n);
	return 0;
}

/* What the log says --max-store-bytes-per-uid deleted while writing: per
 * burst, its closing line's count (the whole burst), else its first line's
 * (a burst of one write). Checks that every line names uid 65534 with the
 * count (and root with its own, when its snapshots passed its bound). */
static long long logged_store_deletions(void)
{
	static const char first[] = "limit store_bytes reached: ";
	static const char close[] = "limit store_bytes: ";
	static const char bound[] = " snapshots deleted for --max-store-bytes-per-uid (";
	static const char bound_all[] = " snapshots deleted in all for --max-store-bytes-per-uid";
	char *log = h_daemon_log_tail(&D, (size_t)16 << 20);
	long long sum = 0, pending = 0;

	for (char *line = log; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		const char *p;
		long long n;
		char uid[64];
		if ((p = strstr(line, first)) != NULL && strstr(line, bound) != NULL &&
		    strstr(line, "at start") == NULL) {
			n = atoll(p + strlen(first));
			sum += pending;
			pending = n;
			snprintf(uid, sizeof uid, "uid 65534: %lld,", n);
			ck_assert_msg(strstr(line, uid) != NULL || n == 0 ||
			                  strstr(line, "(uid 0: ") != NULL,
			              "log line lacks '%s': %s", uid, line);
		} else if ((p = strstr(line, close)) != NULL && strstr(line, bound_all) != NULL) {
			n = atoll(p + strlen(close));
			ck_assert_msg(n >= pending,
			              "a burst's closing line says less than its first: %s", line);
			pending = n;
			/* root's own snapshots may pass its bound too (the paths in
			 * them are long in some build trees) */
			const char *r0 = strstr(line, "uid 0: ");
			long long root = r0 != NULL ? atoll(r0 + 7) : 0;
			if (root > 0)
				snprintf(uid, sizeof uid, "(uid 65534: %lld, uid 0: %lld)",
				         n - root, root);
			else
				snprintf(uid, sizeof uid, "(uid 65534: %lld)", n);
			ck_assert_msg(strstr(line, uid) != NULL, "log line lacks '%s': %s", uid,
			              line);
		}
		line = nl != NULL ? nl + 1 : NULL;
	}
	free(log);
	return sum + pending;
}

/* The bytes the file holds of uid's processes (executable and arguments as
 * stored), and whether every snapshot is charged at least its process's. */
static long long stored_cmdline_bytes(unsigned uid, bool *charged_enough)
{
	char *path = h_strf("%s/memtrace.db", D.state);
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	long long sum = 0;

	*charged_enough = true;
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	ck_assert_int_eq(sqlite3_prepare_v2(
	                     db,
	                     "SELECT length(CAST(p.cmdline AS BLOB)) + length(CAST(p.exe AS BLOB)),"
	                     " (SELECT min(bytes) FROM snapshot s WHERE s.process_id = p.id)"
	                     " FROM process p WHERE p.uid = ?1",
	                     -1, &q, NULL),
	                 SQLITE_OK);
	sqlite3_bind_int64(q, 1, uid);
	while (sqlite3_step(q) == SQLITE_ROW) {
		long long held = sqlite3_column_int64(q, 0);
		sum += held;
		if (sqlite3_column_type(q, 1) != SQLITE_NULL && sqlite3_column_int64(q, 1) < held)
			*charged_enough = false;
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	free(path);
	return sum;
}

START_TEST(store_escaped)
{
	char per_uid[24];
	snprintf(per_uid, sizeof per_uid, "%d", STORE_PER_UID);
	const char *opts[] = {"--snapshot-interval", "0", "--max-store-bytes-per-uid", per_uid,
	                      NULL};
	char ctl[1501];
	const char *args[] = {ctl, NULL};
	struct h_proc p;
	struct h_ctl r;

	memset(ctl, 1, sizeof ctl - 1);
	ctl[sizeof ctl - 1] = '\0';
	start(opts);
	for (int i = 0; i < 6; i++) {
		h_prog_start(&p, &D, "leaker", args, H_NOBODY, NULL);
		ck_assert_int_eq(h_proc_finish(&p, 20000), 0);
		h_proc_cleanup(&p);
	}
	long long runs = 6;
	const char *status[] = {"status", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_store_settled, &runs, status);
	ck_assert_msg(why == NULL, "%s", why);
	h_ctl_free(&r);
	struct stored mine;
	stored_of(H_NOBODY, &mine);
	ck_assert_msg(mine.n >= 1, "uid 65534 has no snapshot stored");
	bool enough;
	long long held = stored_cmdline_bytes(H_NOBODY, &enough);
	ck_assert_msg(held >= 6 * 1500 * mine.n,
	              "the file holds %lld bytes of %lld processes' arguments: not escaped?", held,
	              mine.n);
	ck_assert_msg(enough, "a snapshot is charged less than the file holds of its process");
	ck_assert_msg(held <= STORE_PER_UID,
	              "the file holds %lld bytes of uid 65534's arguments, its bound is %d", held,
	              STORE_PER_UID);
}
END_TEST

START_TEST(store_bounds)
{
	char per_uid[24];
	snprintf(per_uid, sizeof per_uid, "%d", STORE_PER_UID);
	const char *opts[] = {"--snapshot-interval",
	                      "0",
	                      "--metrics-listen",
	                      "127.0.0.1:0",
	                      "--max-store-bytes-per-uid",
	                      per_uid,
	                      NULL};
	struct h_proc v, p;
	long pids[STORE_RUNS];
	struct h_ctl r;
	char vpid[24], id1[24], eid[24];

	start(opts);
	int port = nth_logged_port(1);
	struct h_truth *vt = victim_start(&v);
	snprintf(vpid, sizeof vpid, "%ld", vt->pid);
	/* root's manual snapshot, exact */
	const char *take[] = {"snapshot", "--pid", vpid, NULL};
	long long id = 0;
	h_ctl_ok(&D, H_NOUID, &r, take);
	ck_assert_msg(h_json_int(r.json, "id", &id) && id > 0, "snapshot: %.800s", r.out);
	h_ctl_free(&r);
	snprintf(id1, sizeof id1, "%lld", id);
	struct h_expect ex = {.t = vt, .files = vt, .key = H_KEY_LINENO};
	const char *top1[] = {"top", "--snapshot", id1, "--limit", "0", NULL};
	h_ctl_ok(&D, H_NOUID, &r, top1);
	char *why = h_check_top(r.json, &ex);
	ck_assert_msg(why == NULL, "root's snapshot differs from its book: %.2000s", why);
	h_ctl_free(&r);

	/* The attack: short traced programs of uid 65534, one after another,
	 * each leaving an exit snapshot. */
	for (int i = 0; i < STORE_RUNS; i++) {
		h_prog_start(&p, &D, "leaker", NULL, H_NOBODY, NULL);
		pids[i] = (long)p.pid;
		ck_assert_int_eq(h_proc_finish(&p, 20000), 0);
		h_proc_cleanup(&p);
	}
	long long runs = STORE_RUNS;
	const char *status[] = {"status", NULL};
	why = h_ctl_poll(&D, H_NOUID, &r, check_store_settled, &runs, status);
	ck_assert_msg(why == NULL, "%s", why);
	h_ctl_free(&r);

	/* The file keeps uid 65534's newest exit snapshots within its bound,
	 * and deleted the rest oldest first. */
	struct stored mine;
	stored_of(H_NOBODY, &mine);
	ck_assert_msg(mine.n >= 1 && mine.n < STORE_RUNS && mine.bytes <= STORE_PER_UID,
	              "uid 65534 holds %lld snapshots, %lld bytes (bound %d)", mine.n, mine.bytes,
	              STORE_PER_UID);
	for (int i = 0; i < mine.npids; i++)
		ck_assert_msg(mine.pids[i] == pids[STORE_RUNS - mine.npids + i],
		              "stored snapshot %d of uid 65534 is pid %ld's, want the newest "
		              "programs' (pid %ld)",
		              i, mine.pids[i], pids[STORE_RUNS - mine.npids + i]);
	/* as many as fit: one more of the same size would pass the bound */
	ck_assert_msg(mine.bytes + mine.bytes / mine.n > STORE_PER_UID,
	              "uid 65534 holds %lld bytes in %lld snapshots: more were deleted than the "
	              "bound needs",
	              mine.bytes, mine.n);
	store_figures_are_file(port, STORE_RUNS - mine.n, 0, "after the attack");
	ck_assert_int_eq(log_count("snapshots deleted for --max-store-bytes-per-uid"), 1);
	/* The first program's exit snapshot came right after root's: it is
	 * known as deleted, to its owner, and why. */
	char gone[24];
	snprintf(gone, sizeof gone, "%lld", atoll(id1) + 1);
	const char *top_gone[] = {"top", "--snapshot", gone, NULL};
	h_ctl_error_saying(&D, H_NOBODY, top_gone, "snapshot_deleted",
	                   "to keep --max-store-bytes-per-uid");

	/* Root: its snapshot is there and exact, its program exact live, and
	 * its exit snapshot is stored and exact. */
	h_ctl_ok(&D, H_NOUID, &r, top1);
	why = h_check_top(r.json, &ex);
	ck_assert_msg(why == NULL, "root's snapshot after the attack: %.2000s", why);
	h_ctl_free(&r);
	victim_top(vt, "after uid 65534 passed its store bound");
	struct stored manual;
	stored_of(0, &manual);
	ck_assert_msg(manual.n == 1, "root has %lld snapshots stored, want its manual one",
	              manual.n);
	ck_assert_int_eq(h_proc_send(&v, "exit"), 0);
	h_proc_end(&v, "sites");
	struct h_truth *tend = h_truth_must(v.truth);
	const char *snaps[] = {"snapshots", "--pid", vpid, NULL};
	why = h_ctl_poll(&D, H_NOUID, &r, check_exit_snapshot, NULL, snaps);
	ck_assert_msg(why == NULL, "root's program: %s: %.800s", why, r.out);
	const cJSON *sn;
	cJSON_ArrayForEach(sn, cJSON_GetObjectItemCaseSensitive(r.json, "snapshots"))
	{
		const char *reason = h_json_str(sn, "reason");
		if (reason != NULL && strcmp(reason, "exit") == 0 && h_json_int(sn, "id", &id))
			snprintf(eid, sizeof eid, "%lld", id);
	}
	h_ctl_free(&r);
	struct h_expect ee = {.t = tend, .files = tend, .key = H_KEY_LINENO};
	const char *top2[] = {"top", "--snapshot", eid, "--limit", "0", NULL};
	h_ctl_ok(&D, H_NOUID, &r, top2);
	why = h_check_top(r.json, &ee);
	ck_assert_msg(why == NULL, "root's exit snapshot differs from its book: %.2000s", why);
	h_ctl_free(&r);
	/* Root's two snapshots are kept when they fit in its own bound; when
	 * they do not (the paths in them are longer in some build trees), the
	 * bound deletes root's older one, the manual snapshot, as it does any
	 * uid's. The file is read once the exit snapshot's charge is in it. */
	struct stored root;
	long long until = h_now_ms() + H_POLL_MS;
	do {
		stored_of(0, &root);
	} while (root.bytes == manual.bytes && h_now_ms() < until && (h_sleep_ms(50), true));
	long long exit_bytes = root.bytes - (root.n == 2 ? manual.bytes : 0);
	long long want = manual.bytes + exit_bytes <= STORE_PER_UID ? 2 : 1;
	ck_assert_msg(root.n == want,
	              "root has %lld snapshots stored (%lld bytes), want %lld: its manual one of "
	              "%lld bytes and its exit snapshot of %lld, bound %d",
	              root.n, root.bytes, want, manual.bytes, exit_bytes, STORE_PER_UID);
	store_figures_are_file(port, STORE_RUNS - mine.n, 2 - want, "after root's program ended");

	/* The figures come back from the file after a restart; the log said
	 * what the bound deleted, in all (its last burst closes at the stop). */
	h_daemon_stop(&D);
	ck_assert_int_eq(logged_store_deletions(), STORE_RUNS - mine.n + (2 - want));
	h_daemon_spawn(&D, opts);
	port = nth_logged_port(2);
	store_figures_are_file(port, 0, 0, "after a restart");
	h_daemon_stop(&D);

	/* A lower bound at the next start is kept at once, oldest first, and
	 * the log says so with the counts the file lost. */
	struct stored before[2], after[2];
	stored_of(H_NOBODY, &before[0]);
	stored_of(0, &before[1]);
	char lower[24];
	snprintf(lower, sizeof lower, "%dK", STORE_PER_UID / 2 / 1024);
	const char *opts2[] = {"--snapshot-interval",
	                       "0",
	                       "--metrics-listen",
	                       "127.0.0.1:0",
	                       "--max-store-bytes-per-uid",
	                       lower,
	                       NULL};
	h_daemon_spawn(&D, opts2);
	nth_logged_port(3);
	stored_of(H_NOBODY, &after[0]);
	stored_of(0, &after[1]);
	long long lost = before[0].n - after[0].n, lost_root = before[1].n - after[1].n;
	ck_assert_msg(lost > 0 && after[0].bytes <= STORE_PER_UID / 2,
	              "uid 65534 holds %lld snapshots, %lld bytes after the bound was halved "
	              "(%lld before)",
	              after[0].n, after[0].bytes, before[0].n);
	for (int i = 0; i < after[0].npids; i++)
		ck_assert_int_eq(after[0].pids[i], before[0].pids[lost + i]);
	ck_assert_int_eq(log_count("more than its bounds now allow"), 1);
	char *said = h_strf("limit store_bytes reached at start: %lld snapshots deleted for "
	                    "--max-store-bytes-per-uid (%d bytes)",
	                    lost + lost_root, STORE_PER_UID / 2);
	ck_assert_msg(log_count(said) == 1, "the log lacks: %s", said);
	char *log = h_daemon_log_tail(&D, (size_t)16 << 20);
	char *line = strstr(log, said), *nl = line != NULL ? strchr(line, '\n') : NULL;
	if (nl != NULL)
		*nl = '\0';
	char *who = h_strf("uid 65534: %lld,", lost);
	ck_assert_msg(line != NULL && strstr(line, who) != NULL, "the log's line lacks %s: %s", who,
	              line);
	free(who);
	free(log);
	free(said);
	ck_assert_int_eq(status_limit(H_NOBODY, "store_bytes", "yours"), after[0].bytes);
	const cJSON *me = status_store_uid(H_NOBODY, H_NOBODY, &r);
	long long ev = -1;
	ck_assert_msg(me != NULL && h_json_int(me, "evicted_per_uid", &ev) && ev == lost,
	              "status says uid 65534 lost %lld at start, the file %lld", ev, lost);
	h_ctl_free(&r);
	h_truth_free(vt);
	h_truth_free(tend);
	h_daemon_stop(&D);
}
END_TEST

/* What memtraced says of its byte options, run with dirs it cannot use so
 * that it stops right after reading them: its standard error. */
static char *daemon_args_say(const char *args)
{
	char *cmd = h_strf("%s --runtime-dir /proc/nonexistent/run --state-dir "
	                   "/proc/nonexistent/state --metrics-listen off %s 2>&1",
	                   h_daemon_bin(), args);
	FILE *f = popen(cmd, "r");
	char *out = calloc(1, 65536);
	size_t n = 0, k;
	ck_assert_ptr_nonnull(f);
	while (n < 65535 && (k = fread(out + n, 1, 65535 - n, f)) > 0)
		n += k;
	pclose(f);
	free(cmd);
	return out;
}

/* Byte options take K/M/G/KiB/MiB/GiB, a refusal says what is wanted, and
 * a per-uid store bound above the total is warned of. */
START_TEST(store_options)
{
	char *out = daemon_args_say("--max-store-bytes 1X");
	ck_assert_msg(strstr(out, "--max-store-bytes wants a number of bytes (0 = no bound)") !=
	                  NULL,
	              "memtraced said: %s", out);
	free(out);
	out = daemon_args_say("--max-fork-image-bytes 0");
	ck_assert_msg(strstr(out, "--max-fork-image-bytes wants a number of bytes above 0") != NULL,
	              "memtraced said: %s", out);
	free(out);
	out = daemon_args_say("--max-store-bytes 1G --max-store-bytes-per-uid 2GiB "
	                      "--max-fork-image-bytes 64M --max-symbol-cache-bytes 512K "
	                      "--max-queued-snapshot-bytes 3MiB");
	ck_assert_msg(strstr(out, "wants") == NULL, "memtraced refused suffixes: %s", out);
	ck_assert_msg(strstr(out, "--max-store-bytes-per-uid 2147483648 is more than "
	                          "--max-store-bytes 1073741824") != NULL,
	              "no warning of the clamped per-uid bound: %s", out);
	free(out);
}
END_TEST

static Suite *limits_suite(void)
{
	Suite *s = suite_create("e2e_limits");
	TCase *tc;

	tc = h_tcase(s, "huge_blocks", 120, NULL, teardown);
	tcase_add_test(tc, huge_blocks);
	tc = h_tcase(s, "module_flood", 60, NULL, teardown);
	tcase_add_test(tc, module_flood);
	tc = h_tcase(s, "snapshot_queue", 60, NULL, teardown);
	tcase_add_test(tc, snapshot_queue);
	tc = h_tcase(s, "control_limits", 60, NULL, teardown);
	tcase_add_test(tc, control_limits);
	tc = h_tcase(s, "http_origins", 60, NULL, teardown);
	tcase_add_test(tc, http_origins);
	tc = h_tcase(s, "agent_sessions", 60, NULL, teardown);
	tcase_add_test(tc, agent_sessions);
	tc = h_tcase(s, "mutual_parents", 60, NULL, teardown);
	tcase_add_test(tc, mutual_parents);
	tc = h_tcase(s, "passed_descriptors", 90, NULL, teardown);
	tcase_add_test(tc, passed_descriptors);
	tc = h_tcase(s, "fork_images", 90, NULL, teardown);
	tcase_add_test(tc, fork_images);
	tc = h_tcase(s, "symbol_cache", 90, NULL, teardown);
	tcase_add_test(tc, symbol_cache);
	tc = h_tcase(s, "store_options", 30, NULL, teardown);
	tcase_add_test(tc, store_options);
	tc = h_tcase(s, "snapshot_file", 60, NULL, teardown);
	tcase_add_test(tc, snapshot_file);
	tc = h_tcase(s, "model_bounds", 120, NULL, teardown);
	tcase_add_test(tc, model_bounds);
	tc = h_tcase(s, "store_escaped", 60, NULL, teardown);
	tcase_add_test(tc, store_escaped);
	tc = h_tcase(s, "store_bounds", 180, NULL, teardown);
	tcase_add_test(tc, store_bounds);
	return s;
}

int main(void)
{
	static const char *const progs[] = {"sites", "leaker", "hugeblocks", "manystacks", NULL};
	return h_run_suite("e2e_limits", limits_suite(), progs);
}
