/*
 * e2e_live.c - end-to-end tests of live tracing: the real memtraced,
 * libmemtrace.so and memtracectl on programs that are still running.
 *
 * Each test runs in Check's forked child with its own daemon on a fresh
 * directory (checked fixture), starts real test programs from tests/progs
 * under the agent and asks the real client. The numbers a test expects come
 * only from the book the traced program wrote about itself (truth.h); what
 * memtrace reports for files that are not the program's (libc's stdio
 * buffers, the loader, libstdc++'s pool) is never asserted per site, only
 * accounted for as "other" where totals are compared: `stats` current must
 * equal the program's book plus exactly what `top` attributes elsewhere,
 * and between two phases of a program current and blocks must move by
 * exactly what the book moved.
 *
 * Behaviours pinned, by test:
 *  sites_c (libunwind, fp),     allocation sites: per lineno, function,
 *  sites_cxx                    filename, traceback, cumulative,
 *                               include/exclude, --limit, stats, list, a
 *                               second phase, the exited session; C++ new
 *  threads_cross_free           blocks freed by other threads, addresses
 *                               reused; short-lived threads; the exited session
 *  peak_and_reset               peak has the freed 64 MiB, reset-peak resets;
 *                               after the exit reset-peak and snapshot are
 *                               not_live, and compare FILE live:PID labels
 *                               the ended process "exited"
 *  fork_exec (two runs)         children never in the parent; each child its
 *                               own session; with MEMTRACE_FOLLOW_FORK=0 the
 *                               fork children, and what they exec, are
 *                               untraced
 *  behave_*                     same output and status with a daemon, under
 *                               `memtracectl run`, without a daemon, and with
 *                               the daemon SIGKILLed mid-run
 *  dlopen_plugin                sites in a library loaded with dlopen
 *  daemon_behind (two runs)     a stopped daemon: blocking mode waits and
 *                               loses nothing, drop mode goes on and counts
 *                               every event it dropped in lost_events
 *  fork_child_keeps_ring        a fork child that idles and then fills its
 *                               ring still runs to its end
 *  daemonize_inherits (6 runs)  a program whose first process exits right
 *                               after its fork (as daemons go to the
 *                               background): the child starts with the
 *                               parent's heap, exact, frees known; half
 *                               the runs with the daemon asleep meanwhile;
 *                               the last two fork twice, the middle
 *                               process allocating nothing
 *  exit_with_stopped_daemon     in drop mode a program exits while the
 *                               daemon is stopped
 *  exit_modes (4 ways x 20      a process that ends without libc's exit,
 *  runs)                        right after its last allocation (_exit,
 *                               the exit_group system call, raise(SIGKILL),
 *                               SIGKILLed from outside), still delivers
 *                               every event: once its session says
 *                               "exited", the first answer is exact per
 *                               site in bytes and count (frees, blocks
 *                               freed by another thread and a thread that
 *                               has ended included), lost_events and
 *                               unknown_frees are 0, every run
 *  go_cgo_exit (5 runs, when    a Go program whose C code mallocs through
 *  go was found at configure)   cgo and ends with os.Exit (exit_group) is
 *                               traced exactly at its C site
 *  sampling_estimates           MEMTRACE_SAMPLE estimates held bytes
 *  sampling_unbiased            sampled estimates of bytes and blocks are
 *                               unbiased for blocks of 0.25, 1 and 4 rates
 *                               and a mix (within the estimator's bound
 *                               and 5 %); frees subtract exactly what
 *                               their allocations added; answers, tables,
 *                               stored snapshots and files say "estimated"
 *  memo_guard_page              a remembered walk recalled where a page of
 *                               the thread's stack above it became
 *                               PROT_NONE: the memo stops at the first
 *                               word that differs, the program survives
 *                               (malloc's caller with a frame pointer and
 *                               without, so that word falls first and
 *                               second in the check's two-a-turn)
 *  malformed_agent_frames,      bad frames close their connection, bad
 *  malformed_control            requests get JSON errors; the traced program
 *                               stays exact and the daemon stops cleanly
 *  uid_isolation (root only)    uid 65534 sees neither root's sessions nor
 *                               stats of them; root sees everybody
 *  ctor_allocations (libunwind, blocks a linked library's constructor made
 *  fp), ctor_fills_ring (in    before the agent's are traced at their
 *  the constructor, in a        sites and count in peak; more events than a
 *  library it dlopens)          ring holds before then are all delivered
 *  cxx_startup_pool             libstdc++'s emergency pool, allocated in its
 *                               constructor, is traced (of its documented
 *                               size where the build knows it)
 *  listed_before_first_allocation  a process is listed before it allocates
 *  bypassed_by_preload,         an allocator before the agent (preloaded
 *  bypassed_by_linked_allocator, first, linked into the program, jemalloc):
 *  bypassed_by_jemalloc         the program runs unchanged, one stderr line
 *                               says so, stats says interposed: false
 *  not_bypassed_by_plt_entry    a non-PIE program taking malloc's address is
 *                               traced, not reported as bypassed
 *  static_program_via_run       `memtracectl run` says in one line that a
 *                               static program cannot be traced, runs it
 *  follow_fork_descendants      with MEMTRACE_FOLLOW_FORK=0 only the started
 *  (two runs),                  process and its own exec'd image are traced,
 *  follow_fork_under_run        not a child that execs, a shell's child or a
 *                               posix_spawn'ed one, and `run`'s PROG is the
 *                               started one; by default all are traced
 *  run_top_output (three runs), `run --top` leaves stdout to the program and
 *  run_output_needs_top         reports on stderr or into -o FILE
 *  closing_descriptors          a program that closes every descriptor stays
 *  (five runs)                  traced (close, closefrom, close_range); one
 *                               that takes the agent's numbers stops it
 *                               cleanly; the agent never writes to the
 *                               program's descriptors nor takes one away
 *  stripped_debug_file          a stripped copy of progs/sites with its symbols
 *                               in a debug file beside it (.gnu_debuglink):
 *                               `top --key traceback` is its book, and each
 *                               of its frames names the copy as module and
 *                               the debug file as symbols, live, in a stored
 *                               snapshot and in a snapshot file
 *  where_blocks                 `memtracectl where --pid P ADDRESS` for the
 *                               start, an interior and the last byte of
 *                               blocks progs/pointers prints (hex and
 *                               decimal): the block, its size, the offset and
 *                               the traceback of its site, as its book says; a
 *                               freed block's address is no_such_block
 *  attach_self                  a program that loads the agent with dlopen
 *                               (RTLD_LOCAL) is traced exactly from then on,
 *                               on two threads; older blocks' frees are
 *                               unknown_frees; stats says attached
 *  attach_ptrace                the same through `memtracectl attach PID` on an
 *                               untraced program; a second attach is refused;
 *                               its output and exit status are its own
 *  attach_refusals              no process, another user's (as
 *                               memtrace-attacker), one being traced, a static
 *                               one: each its own error, the program untouched
 *  detach_reattach              `memtracectl detach` of an attached program:
 *                               its GOT holds libc's malloc again, the session
 *                               ends with a "detach" snapshot equal to its
 *                               book, nothing after is seen; another user
 *                               cannot detach it, a second detach is
 *                               not_live; attached again, a new session is
 *                               exact on two threads
 *  attach_nopie                 a position-dependent program that takes
 *                               malloc's address (its malloc symbol is its own
 *                               PLT entry, as Debian's python3's is): traced
 *                               exactly after attach, detached cleanly
 *  attach_hostile               root's attach of a process that fights back,
 *                               as memtrace-attacker: one that execs another
 *                               program inside the injected call (had it been
 *                               setuid, restoring registers would have run
 *                               the attacker's code in it) is let go
 *                               untouched; a file named libmemtrace.so that is
 *                               not the agent is never called
 *  detach_preloaded             the same for a program started under the
 *                               agent (LD_PRELOAD): detached, then attached
 *                               again through the agent it has
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "shm.h"
#include "proto.h"

static struct h_daemon D; /* this test's daemon (each test has its own process) */

static void setup(void)
{
	h_daemon_start(&D);
}

/* A daemon other users may reach (its runtime directory 0755, as the
 * system daemon's is): for the tests that try what they may do. */
static void setup_shared(void)
{
	h_daemon_dirs(&D, 0755);
	h_daemon_spawn(&D, NULL);
}

static void teardown(void)
{
	h_daemon_cleanup(&D);
}

/* ------------------------------------------------------------ helpers */

/* Polls `top --pid pid --key K --limit 0 [--cumulative] EXTRA...` until it
 * matches e; asserts with the difference; leaves the answer in r. */
static void assert_top(struct h_ctl *r, uid_t uid, long pid, const struct h_expect *e,
                       const char *const *extra, const char *what)
{
	const char *args[24];
	char pidbuf[24];
	size_t n = 0;
	char *why, *cmd;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	args[n++] = "top";
	args[n++] = "--pid";
	args[n++] = pidbuf;
	args[n++] = "--key";
	args[n++] = h_key_names[e->key];
	args[n++] = "--limit";
	args[n++] = "0";
	if (e->cumulative)
		args[n++] = "--cumulative";
	if (!e->sites)
		args[n++] = "--raw-frames"; /* see struct h_expect */
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	why = h_ctl_poll(&D, uid, r, h_check_top_fn, (void *)e, args);
	cmd = h_args_str(args);
	ck_assert_msg(why == NULL, "%s: `%s` differs from the program's book:\n  %.3000s", what,
	              cmd, why);
	free(cmd);
}

static void top_simple(struct h_ctl *r, long pid, const struct h_truth *t, enum h_key key,
                       bool cumulative, const char *what)
{
	struct h_expect e = {.t = t, .files = t, .key = key, .cumulative = cumulative};
	assert_top(r, H_NOUID, pid, &e, NULL, what);
}

/* The same by the default site rule (no --raw-frames): for a program whose
 * book is all that is allocated at its lines. */
static void top_sites(struct h_ctl *r, long pid, const struct h_truth *t, enum h_key key,
                      bool cumulative, const char *what)
{
	struct h_expect e = {
	    .t = t, .files = t, .key = key, .cumulative = cumulative, .sites = true};
	assert_top(r, H_NOUID, pid, &e, NULL, what);
}

struct stats {
	long long current, peak, blocks;
};

static void get_stats(struct h_ctl *r, long pid, struct stats *s)
{
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	h_ctl_ok(&D, H_NOUID, r, args);
	ck_assert_msg(h_json_int(r->json, "current", &s->current) &&
	                  h_json_int(r->json, "peak", &s->peak) &&
	                  h_json_int(r->json, "blocks", &s->blocks),
	              "stats lacks current/peak/blocks: %.1000s", r->out);
}

struct state_arg {
	const char *state;
};

static char *check_state_cb(const cJSON *json, void *arg)
{
	const struct state_arg *a = arg;
	const char *st = h_json_str(json, "state");
	if (st != NULL && strcmp(st, a->state) == 0)
		return NULL;
	return h_strf("state is %s, expected %s", st ? st : "absent", a->state);
}

/* Polls `stats --pid P` until its state is `state`. */
static void wait_state(long pid, const char *state)
{
	struct state_arg a = {state};
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};
	char *why;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	why = h_ctl_poll(&D, H_NOUID, &r, check_state_cb, &a, args);
	ck_assert_msg(why == NULL, "stats --pid %ld: %s", pid, why);
	h_ctl_free(&r);
}

/*
 * `stats` current and blocks equal the program's book plus what `top` (key
 * lineno, no filter, limit 0) attributes to files that are not the
 * program's; `top`'s totals equal `stats`. Returns the stats.
 */
static void assert_stats_consistent(long pid, const struct h_truth *t, struct stats *s,
                                    const char *what)
{
	struct h_ctl top, st;
	long long ps, pc, os, oc, ts, tc;

	top_simple(&top, pid, t, H_KEY_LINENO, false, what);
	get_stats(&st, pid, s);
	ck_assert_msg(h_top_split(top.json, t, &ps, &pc, &os, &oc) == 0, "malformed top");
	ck_assert(h_json_int(top.json, "total_size", &ts) &&
	          h_json_int(top.json, "total_count", &tc));
	ck_assert_msg(ps == h_truth_bytes(t) && pc == h_truth_count(t),
	              "%s: program sites sum to %lld bytes %lld blocks, book says %lld %lld", what,
	              ps, pc, h_truth_bytes(t), h_truth_count(t));
	ck_assert_msg(ts == ps + os && tc == pc + oc,
	              "%s: top total_size/total_count %lld/%lld != sum of its stats %lld/%lld",
	              what, ts, tc, ps + os, pc + oc);
	ck_assert_msg(s->current == h_truth_bytes(t) + os && s->blocks == h_truth_count(t) + oc,
	              "%s: stats current %lld blocks %lld, expected the book's %lld/%lld plus "
	              "%lld/%lld attributed to other files by top",
	              what, s->current, s->blocks, h_truth_bytes(t), h_truth_count(t), os, oc);
	ck_assert_msg(s->peak >= s->current, "%s: peak %lld < current %lld", what, s->peak,
	              s->current);
	h_ctl_free(&top);
	h_ctl_free(&st);
}

/* The line in `func` that the records' chains pass through (main's call). */
static int truth_line_in(const struct h_truth *t, const char *func)
{
	for (int i = 0; i < t->nrecs; i++)
		for (int j = 0; j < t->recs[i].nframes; j++)
			if (strcmp(t->recs[i].f[j].func, func) == 0)
				return t->recs[i].f[j].line;
	return -1;
}

static const cJSON *find_line_stat(const cJSON *top, const struct h_truth *t, int line,
                                   const char *func)
{
	const cJSON *st;
	cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(top, "stats"))
	{
		const cJSON *f0 =
		    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "traceback"), 0);
		long long ln;
		const char *fn = h_json_str(f0, "function");
		if (h_json_int(f0, "lineno", &ln) && ln == line && fn != NULL &&
		    strcmp(fn, func) == 0 && h_is_program_file(t, h_json_str(f0, "filename")))
			return st;
	}
	return NULL;
}

/* After the program freed everything and exited: its session is "exited",
 * still answers, and holds none of the program's blocks (its last frees were
 * flushed at exit). */
static void assert_exited_clean(const struct h_proc *p, long pid, const char *what)
{
	struct h_truth *t = h_truth_must(p->truth);
	struct h_ctl r;

	ck_assert_int_eq(h_truth_count(t), 0);
	wait_state(pid, "exited");
	top_simple(&r, pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	h_truth_free(t);
}

/* --------------------------------------------------------- 1: sites */

/* "what, suffix" for messages; the string is leaked, as tests are short. */
static const char *label(const char *what, const char *suffix)
{
	return h_strf("%s, %s", what, suffix);
}

START_TEST(sites_c)
{
	/* _i == 0: the default unwinder (libunwind); _i == 1: MEMTRACE_UNWIND=fp
	 * (the test programs keep their frame pointers). */
	const char *fp_env[] = {"MEMTRACE_UNWIND=fp", NULL};
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t1, *t2, *tf;
	struct stats s1, s2;

	const char *what = _i == 1 ? "sites (MEMTRACE_UNWIND=fp)" : "sites";

	h_prog_start(&p, &D, "sites", NULL, H_NOUID, _i == 1 ? fp_env : NULL);
	h_proc_expect_ready(&p);
	t1 = h_truth_must(p.truth);
	long pid = t1->pid;
	ck_assert_int_eq(pid, p.pid);

	/* The four keys, exact per site. */
	for (int k = H_KEY_LINENO; k <= H_KEY_TRACEBACK; k++) {
		top_simple(&r, pid, t1, (enum h_key)k, false, what);
		h_ctl_free(&r);
	}

	/* The traceback of every site ends in main through the booked chain
	 * (checked by prefix above); here: the first frame is the site itself
	 * and main is there. */
	top_simple(&r, pid, t1, H_KEY_TRACEBACK, false, label(what, "traceback"));
	{
		const cJSON *st;
		int with_main = 0;
		cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(r.json, "stats"))
		{
			const cJSON *tb = cJSON_GetObjectItemCaseSensitive(st, "traceback"), *f;
			const char *file0 = h_json_str(cJSON_GetArrayItem(tb, 0), "filename");
			if (!h_is_program_file(t1, file0))
				continue;
			cJSON_ArrayForEach(f, tb)
			{
				const char *fn = h_json_str(f, "function");
				if (fn != NULL && strcmp(fn, "main") == 0) {
					with_main++;
					break;
				}
			}
		}
		ck_assert_msg(with_main >= 16, "only %d program tracebacks reach main", with_main);
	}
	h_ctl_free(&r);

	/* Cumulative: main's line that called phase1 holds everything. */
	top_simple(&r, pid, t1, H_KEY_LINENO, true, label(what, "cumulative"));
	{
		int line = truth_line_in(t1, "main");
		const cJSON *st = find_line_stat(r.json, t1, line, "main");
		long long size, count;
		ck_assert_msg(st != NULL, "cumulative top has no entry for main at line %d", line);
		ck_assert(h_json_int(st, "size", &size) && h_json_int(st, "count", &count));
		ck_assert_msg(size == h_truth_bytes(t1) && count == h_truth_count(t1),
		              "cumulative main:%d size %lld count %lld, book total %lld %lld", line,
		              size, count, h_truth_bytes(t1), h_truth_count(t1));
	}
	h_ctl_free(&r);

	/* Cumulative by function and by file: each trace counts once per
	 * distinct key of its traceback. */
	top_simple(&r, pid, t1, H_KEY_FUNCTION, true, label(what, "cumulative"));
	h_ctl_free(&r);
	top_simple(&r, pid, t1, H_KEY_FILENAME, true, label(what, "cumulative"));
	h_ctl_free(&r);

	/* --limit N keeps the N first of the full, sorted list and says how
	 * many there were. */
	{
		char pidbuf[24];
		const char *all[] = {"top", "--pid", pidbuf, "--limit", "0", NULL};
		const char *three[] = {"top", "--pid", pidbuf, "--limit", "3", NULL};
		struct h_ctl r3;
		long long cs_all, cs3;
		snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
		h_ctl_ok(&D, H_NOUID, &r, all);
		h_ctl_ok(&D, H_NOUID, &r3, three);
		const cJSON *sa = cJSON_GetObjectItemCaseSensitive(r.json, "stats");
		const cJSON *s3 = cJSON_GetObjectItemCaseSensitive(r3.json, "stats");
		ck_assert(h_json_int(r.json, "count_stats", &cs_all) &&
		          h_json_int(r3.json, "count_stats", &cs3));
		ck_assert_msg(cJSON_GetArraySize(sa) == cs_all && cs_all > 3,
		              "--limit 0: %d stats, count_stats %lld", cJSON_GetArraySize(sa),
		              cs_all);
		ck_assert_msg(cJSON_GetArraySize(s3) == 3 && cs3 == cs_all,
		              "--limit 3: %d stats, count_stats %lld (of %lld)",
		              cJSON_GetArraySize(s3), cs3, cs_all);
		for (int i = 0; i < 3; i++)
			ck_assert_msg(
			    cJSON_Compare(cJSON_GetArrayItem(sa, i), cJSON_GetArrayItem(s3, i), 1),
			    "--limit 3 entry %d differs from the full list's", i);
		h_ctl_free(&r);
		h_ctl_free(&r3);
	}

	/* Filters, tracemalloc.Filter semantics. */
	assert_stats_consistent(pid, t1, &s1, label(what, "phase 1"));
	{
		const char *inc[] = {"--include", "*sites.c", NULL};
		const char *exc[] = {"--exclude", "*sites.c", NULL};
		const char *inc_all[] = {"--include", "*sites.c", "--all-frames", NULL};
		const char *exc_all[] = {"--exclude", "*sites.c", "--all-frames", NULL};
		struct h_expect e = {.files = t1, .key = H_KEY_LINENO};
		long long ts, tc;

		tf = h_truth_filter(t1, "*sites.c", true, false);
		ck_assert_msg(tf->nrecs > 0 && tf->nrecs < t1->nrecs, "book has no truth.h site");
		e.t = tf;
		assert_top(&r, H_NOUID, pid, &e, inc, "include *sites.c");
		ck_assert(h_json_int(r.json, "total_size", &ts) &&
		          h_json_int(r.json, "total_count", &tc));
		ck_assert_msg(ts == h_truth_bytes(tf) && tc == h_truth_count(tf),
		              "--include *sites.c totals %lld/%lld, book %lld/%lld", ts, tc,
		              h_truth_bytes(tf), h_truth_count(tf));
		h_ctl_free(&r);
		h_truth_free(tf);

		tf = h_truth_filter(t1, "*sites.c", false, false);
		e.t = tf;
		assert_top(&r, H_NOUID, pid, &e, exc, "exclude *sites.c");
		ck_assert(h_json_int(r.json, "total_size", &ts) &&
		          h_json_int(r.json, "total_count", &tc));
		ck_assert_msg(ts == s1.current - h_truth_bytes(t1) + h_truth_bytes(tf) &&
		                  tc == s1.blocks - h_truth_count(t1) + h_truth_count(tf),
		              "--exclude *sites.c totals %lld/%lld, expected current minus the "
		              "book's sites.c part: %lld/%lld",
		              ts, tc, s1.current - h_truth_bytes(t1) + h_truth_bytes(tf),
		              s1.blocks - h_truth_count(t1) + h_truth_count(tf));
		h_ctl_free(&r);
		h_truth_free(tf);

		/* all_frames: every program block has main (sites.c) in its stack. */
		tf = h_truth_filter(t1, "*sites.c", true, true);
		ck_assert_int_eq(tf->nrecs, t1->nrecs);
		e.t = tf;
		assert_top(&r, H_NOUID, pid, &e, inc_all, "include *sites.c --all-frames");
		h_ctl_free(&r);
		h_truth_free(tf);
		tf = h_truth_filter(t1, "*sites.c", false, true);
		ck_assert_int_eq(tf->nrecs, 0);
		e.t = tf;
		assert_top(&r, H_NOUID, pid, &e, exc_all, "exclude *sites.c --all-frames");
		h_ctl_free(&r);
		h_truth_free(tf);
	}

	/* list names the live process. */
	{
		const char *args[] = {"list", NULL};
		const cJSON *e, *cmdline;
		const char *exe, *state;
		h_ctl_ok(&D, H_NOUID, &r, args);
		e = h_list_find(r.json, pid);
		ck_assert_msg(e != NULL, "list lacks pid %ld: %.1000s", pid, r.out);
		exe = h_json_str(e, "exe");
		state = h_json_str(e, "state");
		cmdline = cJSON_GetObjectItemCaseSensitive(e, "cmdline");
		ck_assert_msg(state != NULL && strcmp(state, "live") == 0, "state %s", state);
		ck_assert_msg(exe != NULL && strlen(exe) >= 6 &&
		                  strcmp(exe + strlen(exe) - 6, "/sites") == 0,
		              "list exe is %s", exe ? exe : "absent");
		ck_assert_msg(cJSON_IsArray(cmdline) && cJSON_GetArraySize(cmdline) == 1,
		              "list cmdline is not [argv0]: %.500s", r.out);
		h_ctl_free(&r);
	}

	/* Phase 2: frees, a second realloc, a new site; the heap moves by
	 * exactly what the book moved. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	t2 = h_truth_must(p.truth);
	top_simple(&r, pid, t2, H_KEY_LINENO, false, label(what, "phase 2"));
	h_ctl_free(&r);
	top_simple(&r, pid, t2, H_KEY_TRACEBACK, false, label(what, "phase 2"));
	h_ctl_free(&r);
	assert_stats_consistent(pid, t2, &s2, label(what, "phase 2"));
	ck_assert_msg(s2.current - s1.current == h_truth_bytes(t2) - h_truth_bytes(t1) &&
	                  s2.blocks - s1.blocks == h_truth_count(t2) - h_truth_count(t1),
	              "phase 2 moved current by %lld and blocks by %lld; the book moved %lld, %lld",
	              s2.current - s1.current, s2.blocks - s1.blocks,
	              h_truth_bytes(t2) - h_truth_bytes(t1), h_truth_count(t2) - h_truth_count(t1));

	/* Exit: everything freed and flushed at exit; the exited session stays
	 * queryable and holds none of the program's blocks. */
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, what);
	assert_exited_clean(&p, pid, label(what, "after exit"));
	h_truth_free(t1);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

/* std::vector, std::string and std::map allocate for the program: by
 * default the site is the program's line that used them, for every key;
 * with --raw-frames it is the standard library's code. */
START_TEST(sites_cxx_std)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t;
	char pidbuf[24];

	h_prog_start(&p, &D, "cxxstd", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	for (int k = H_KEY_LINENO; k <= H_KEY_TRACEBACK; k++) {
		top_sites(&r, t->pid, t, (enum h_key)k, false, "cxxstd");
		h_ctl_free(&r);
	}
	top_sites(&r, t->pid, t, H_KEY_LINENO, true, "cxxstd cumulative");
	h_ctl_free(&r);
	/* --raw-frames: the vector's 400 bytes are a standard header's. */
	{
		const char *args[] = {"top", "--pid", pidbuf, "--raw-frames", "--limit", "0", NULL};
		const cJSON *st;
		bool header = false;
		snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
		h_ctl_ok(&D, H_NOUID, &r, args);
		cJSON_ArrayForEach(st, cJSON_GetObjectItem(r.json, "stats"))
		{
			const cJSON *f0 =
			    cJSON_GetArrayItem(cJSON_GetObjectItem(st, "traceback"), 0);
			const char *file = h_json_str(f0, "filename");
			long long size = 0;
			h_json_int(st, "size", &size);
			ck_assert_msg(file == NULL || !h_is_program_file(t, file) || size != 400,
			              "--raw-frames still names the program for the vector: %s",
			              file);
			if (file != NULL && strstr(file, "/include/c++/") != NULL && size >= 400)
				header = true;
		}
		ck_assert_msg(header, "--raw-frames names no standard header: %.2000s", r.out);
		h_ctl_free(&r);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "cxxstd");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

START_TEST(sites_cxx)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t;
	struct stats s;

	h_prog_start(&p, &D, "cxxsites", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	for (int k = H_KEY_LINENO; k <= H_KEY_TRACEBACK; k++) {
		top_simple(&r, t->pid, t, (enum h_key)k, false, "cxxsites");
		h_ctl_free(&r);
	}
	top_simple(&r, t->pid, t, H_KEY_LINENO, true, "cxxsites cumulative");
	h_ctl_free(&r);
	assert_stats_consistent(t->pid, t, &s, "cxxsites");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "cxxsites");
	assert_exited_clean(&p, t->pid, "cxxsites after exit");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* -------------------------------------------------------- 2: threads */

START_TEST(threads_cross_free)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t, *t2;
	struct stats s;

	h_prog_start(&p, &D, "threads", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	ck_assert_msg(h_truth_meta(t, "cross_thread_reuse", 0) > 0,
	              "the program saw no address reused across threads; the test proved nothing");
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, "threads");
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_FUNCTION, false, "threads");
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_TRACEBACK, false, "threads");
	h_ctl_free(&r);
	assert_stats_consistent(t->pid, t, &s, "threads");

	/* Phase 2: short-lived threads free main's blocks and leave blocks
	 * behind that main frees after they are gone. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	t2 = h_truth_must(p.truth);
	top_simple(&r, t2->pid, t2, H_KEY_LINENO, false, "threads, short-lived");
	h_ctl_free(&r);
	top_simple(&r, t2->pid, t2, H_KEY_TRACEBACK, false, "threads, short-lived");
	h_ctl_free(&r);
	assert_stats_consistent(t2->pid, t2, &s, "threads, short-lived");

	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "threads");
	assert_exited_clean(&p, t->pid, "threads after exit");
	h_truth_free(t);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

/* ----------------------------------------------------------- 3: peak */

struct peak_arg {
	long long peak, current;
};

static char *check_peak_cb(const cJSON *json, void *arg)
{
	const struct peak_arg *a = arg;
	long long peak, cur;
	if (!h_json_int(json, "peak", &peak) || !h_json_int(json, "current", &cur))
		return h_strf("stats lacks peak/current");
	if (peak != a->peak || cur != a->current)
		return h_strf("peak %lld current %lld, expected peak %lld current %lld", peak, cur,
		              a->peak, a->current);
	return NULL;
}

/* ---- allocation counts and temporaries (progs/temps.c) ----
 *
 * Its queries ask for --raw-frames: main's pthread_create makes the loader
 * allocate the thread's TLS, which the default site rule would put at
 * temps.c's line of the call, and the book has no figure for it. */

/* A top or compare answer against the book: every site of the program (by
 * --key lineno) carries exactly the allocations, bytes allocated and
 * temporaries the program booked (for a compare, their growth from `old`),
 * and the statistics come in the order asked for. */
struct churn_arg {
	const struct h_truth *t, *old; /* old: NULL for a top */
	const char *sort_by;
	bool exited; /* the program freed everything at its exit: size and count 0 */
};

static const struct h_rec *churn_old(const struct h_truth *old, const struct h_rec *r)
{
	for (int i = 0; old != NULL && i < old->nrecs; i++)
		if (old->recs[i].f[0].line == r->f[0].line &&
		    strcmp(old->recs[i].f[0].file, r->f[0].file) == 0)
			return &old->recs[i];
	return NULL;
}

static char *check_churn_cb(const cJSON *json, void *arg)
{
	const struct churn_arg *a = arg;
	const cJSON *stats = cJSON_GetObjectItem(json, "stats"), *st;
	const char *diff = a->old != NULL ? "_diff" : "";
	long long prev = -1;
	int found = 0;

	if (h_json_str(json, "sort_by") == NULL || strcmp(h_json_str(json, "sort_by"), a->sort_by))
		return h_strf("sort_by is not %s", a->sort_by);
	cJSON_ArrayForEach(st, stats)
	{
		const cJSON *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "traceback"), 0);
		const char *file = h_json_str(f0, "filename");
		long long line = -1, key = -1, v[5];
		static const char *const names[] = {"size", "count", "allocations", "allocated",
		                                    "temporary"};
		char name[32];

		/* the order: by the counter, descending (for a compare, its
		 * absolute growth) */
		snprintf(name, sizeof name, "%s%s", a->sort_by, diff);
		if (!h_json_int(st, name, &key))
			return h_strf("a statistic lacks %s", name);
		key = key < 0 ? -key : key;
		if (prev >= 0 && key > prev)
			return h_strf("%s %lld after %lld: not sorted", name, key, prev);
		prev = key;
		if (file == NULL || !h_is_program_file(a->t, file) ||
		    !h_json_int(f0, "lineno", &line))
			continue;
		const struct h_rec *r = NULL;
		for (int i = 0; i < a->t->nrecs && r == NULL; i++)
			if (a->t->recs[i].f[0].line == line &&
			    h_file_matches(file, a->t->recs[i].f[0].file))
				r = &a->t->recs[i];
		if (r == NULL)
			return h_strf("%s:%lld is not a site of the program", file, line);
		const struct h_rec *o = churn_old(a->old, r);
		long long want[5] = {a->exited ? 0 : r->bytes, a->exited ? 0 : r->count, r->allocs,
		                     r->allocated, r->temporary};
		if (a->old != NULL)
			for (int k = 0; k < 5; k++)
				want[k] -= o == NULL ? 0
				                     : (long long[]){o->bytes, o->count, o->allocs,
				                                     o->allocated, o->temporary}[k];
		for (int k = 0; k < 5; k++) {
			snprintf(name, sizeof name, "%s%s", names[k], diff);
			if (!h_json_int(st, name, &v[k]))
				return h_strf("%s:%lld lacks %s", file, line, name);
			if (v[k] != want[k])
				return h_strf("%s:%lld (%s): %s %lld, the program booked %lld",
				              file, line, r->f[0].func, name, v[k], want[k]);
		}
		found++;
	}
	/* Every site that allocated is listed when sorting by a count of
	 * allocations; the sites of a compare that did not change are too. */
	int want_found = 0;
	for (int i = 0; i < a->t->nrecs; i++)
		want_found += a->t->recs[i].allocs > 0;
	if (found != want_found)
		return h_strf("%d of the program's %d sites listed", found, want_found);
	return NULL;
}

START_TEST(temporaries)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t, *t2;
	char pidbuf[24];
	char *file = h_strf("%s/temps.json", D.dir);

	h_prog_start(&p, &D, "temps", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);

	/* Live, by each counter of allocations. */
	static const char *const sorts[] = {"allocations", "allocated", "temporary"};
	for (size_t k = 0; k < 3; k++) {
		struct churn_arg a = {t, NULL, sorts[k], false};
		const char *args[] = {"top",    "--raw-frames", "--pid", pidbuf, "--sort-by",
		                      sorts[k], "--limit",      "0",     NULL};
		char *why = h_ctl_poll(&D, H_NOUID, &r, check_churn_cb, &a, args);
		ck_assert_msg(why == NULL, "top --sort-by %s: %s", sorts[k], why);
		h_ctl_free(&r);
	}
	/* By size (the default), a site whose blocks are all freed is not a
	 * statistic of live memory. */
	{
		const char *args[] = {"top", "--pid", pidbuf, "--limit", "0", NULL};
		const cJSON *st;
		h_ctl_ok(&D, H_NOUID, &r, args);
		cJSON_ArrayForEach(st, cJSON_GetObjectItem(r.json, "stats"))
		{
			long long count = -1;
			ck_assert(h_json_int(st, "count", &count));
			ck_assert_msg(count > 0, "a statistic without live blocks by size: %.300s",
			              r.out);
		}
		h_ctl_free(&r);
	}
	/* The table: tracemalloc's str(Statistic) and, sorted by a count of
	 * allocations, those counts, for every site of the book. */
	{
		const char *args[] = {"--table",   "top",       "--raw-frames", "--pid", pidbuf,
		                      "--sort-by", "temporary", "--limit",      "0",     NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 0, "top --table: %s", r.err);
		for (int i = 0; i < t->nrecs; i++) {
			const struct h_rec *rec = &t->recs[i];
			char *site = h_strf("temps.c:%d: ", rec->f[0].line);
			char *want = h_strf("count=%lld%s", rec->count,
			                    rec->count > 0 ? ", average=" : ", allocations=");
			char *want2 = h_strf("allocations=%lld, allocated=", rec->allocs);
			char *want3 = h_strf("temporary=%lld\n", rec->temporary);
			const char *line = r.out != NULL ? strstr(r.out, site) : NULL;
			const char *end = line != NULL ? strchr(line, '\n') : NULL;
			ck_assert_msg(line != NULL && end != NULL, "no line for %s in:\n%.3000s",
			              site, r.out);
			char *l = strndup(line, (size_t)(end - line + 1));
			ck_assert_msg(strstr(l, want) && strstr(l, want2) && strstr(l, want3),
			              "%s: lacks %s, %s or %s", l, want, want2, want3);
			free(l);
			free(site);
			free(want);
			free(want2);
			free(want3);
		}
		h_ctl_free(&r);
	}
	/* Dates print as dates: started_at is today's (or, past midnight,
	 * yesterday's) local date. */
	{
		const char *args[] = {"--table", "stats", "--pid", pidbuf, NULL};
		char today[48], yesterday[48];
		time_t now = time(NULL), before = now - 86400;
		struct tm tm;
		strftime(today, sizeof today, "started_at: %Y-%m-%d ", localtime_r(&now, &tm));
		strftime(yesterday, sizeof yesterday, "started_at: %Y-%m-%d ",
		         localtime_r(&before, &tm));
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 0 && r.out != NULL &&
		                  (strstr(r.out, today) || strstr(r.out, yesterday)),
		              "stats --table: no \"%s\" in:\n%.2000s", today, r.out);
		h_ctl_free(&r);
	}
	/* The same from a snapshot file and from the store. */
	long long id1 = 0;
	{
		const char *args[] = {"snapshot", "--pid", pidbuf, "-o", file, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert(h_json_int(r.json, "id", &id1));
		h_ctl_free(&r);
	}
	char *sid1 = h_strf("%lld", id1);
	const char *srcs[] = {file, sid1};
	for (size_t k = 0; k < 2; k++) {
		struct churn_arg a = {t, NULL, "temporary", false};
		const char *args[] = {"top",       "--raw-frames", "--snapshot", srcs[k],
		                      "--sort-by", "temporary",    "--limit",    "0",
		                      NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		char *why = check_churn_cb(r.json, &a);
		ck_assert_msg(why == NULL, "top --snapshot %s: %s", srcs[k], why);
		h_ctl_free(&r);
	}

	/* More temporaries; compare says how many. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	t2 = h_truth_must(p.truth);
	{
		struct churn_arg a = {t2, NULL, "allocations", false};
		const char *args[] = {"top",         "--raw-frames", "--pid", pidbuf, "--sort-by",
		                      "allocations", "--limit",      "0",     NULL};
		char *why = h_ctl_poll(&D, H_NOUID, &r, check_churn_cb, &a, args);
		ck_assert_msg(why == NULL, "after next: %s", why);
		h_ctl_free(&r);
	}
	{
		char *live = h_strf("live:%s", pidbuf);
		struct churn_arg a = {t2, t, "allocations", false};
		const char *args[] = {"compare",     "--raw-frames", file, live, "--sort-by",
		                      "allocations", "--limit",      "0",  NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		char *why = check_churn_cb(r.json, &a);
		ck_assert_msg(why == NULL, "compare --sort-by allocations: %s", why);
		h_ctl_free(&r);
		/* The table says the same: site_temporary's line, with its diffs. */
		const char *targs[] = {"--table",   "compare",     "--raw-frames", file, live,
		                       "--sort-by", "allocations", "--limit",      "0",  NULL};
		h_ctl_run(&D, H_NOUID, &r, targs);
		ck_assert_msg(r.status == 0, "compare --table: %s", r.err);
		for (int i = 0; i < t2->nrecs; i++) {
			const struct h_rec *n = &t2->recs[i], *o = churn_old(t, n);
			if (o == NULL || n->allocs == o->allocs)
				continue;
			char *site = h_strf("temps.c:%d: ", n->f[0].line);
			char *want =
			    h_strf("allocations=%lld (+%lld)", n->allocs, n->allocs - o->allocs);
			char *want2 = h_strf("temporary=%lld (+%lld)", n->temporary,
			                     n->temporary - o->temporary);
			const char *line = r.out != NULL ? strstr(r.out, site) : NULL;
			const char *end = line != NULL ? strchr(line, '\n') : NULL;
			ck_assert_msg(line != NULL && end != NULL, "no %s in:\n%.3000s", site,
			              r.out);
			char *l = strndup(line, (size_t)(end - line + 1));
			ck_assert_msg(strstr(l, want) && strstr(l, want2), "%s: lacks %s or %s", l,
			              want, want2);
			free(l);
			free(site);
			free(want);
			free(want2);
		}
		h_ctl_free(&r);
		free(live);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "temps");
	/* Exited (everything freed at its end, none of it temporary): the
	 * counts of allocations stay, whatever the daemon trimmed. */
	{
		struct churn_arg a = {t2, NULL, "allocations", true};
		const char *args[] = {"top",         "--raw-frames", "--pid", pidbuf, "--sort-by",
		                      "allocations", "--limit",      "0",     NULL};
		char *why = h_ctl_poll(&D, H_NOUID, &r, check_churn_cb, &a, args);
		ck_assert_msg(why == NULL, "after the exit: %s", why);
		h_ctl_free(&r);
	}
	h_truth_free(t);
	h_truth_free(t2);
	h_proc_cleanup(&p);
	free(sid1);
	free(file);
}
END_TEST

/* ---- exports (progs/temps.c) ---- */

/* The book's sum of one counter over the sites in function `func`:
 * 0 bytes, 1 count, 2 allocations, 3 allocated, 4 temporary. */
static long long truth_func_sum(const struct h_truth *t, const char *func, int what)
{
	long long sum = 0;
	for (int i = 0; i < t->nrecs; i++) {
		const struct h_rec *r = &t->recs[i];
		long long v[5] = {r->bytes, r->count, r->allocs, r->allocated, r->temporary};
		if (strcmp(r->f[0].func, func) == 0)
			sum += v[what];
	}
	return sum;
}

/* The sum of the values of the folded lines whose last frame is func. */
static long long folded_sum(const char *text, const char *func)
{
	long long sum = 0;
	size_t fl = strlen(func);
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *end = strchr(line, '\n'), *sp;
		if (end == NULL)
			end = line + strlen(line);
		for (sp = end; sp > line && sp[-1] != ' '; sp--)
			;
		if (sp > line) {
			const char *leaf = sp - 1;
			while (leaf > line && leaf[-1] != ';')
				leaf--;
			if ((size_t)(sp - 1 - leaf) == fl && strncmp(leaf, func, fl) == 0)
				sum += atoll(sp);
		}
		line = *end != '\0' ? end + 1 : end;
	}
	return sum;
}

/* `go tool pprof -top` of a profile for one sample type: the flat value of
 * function func (-1 when pprof does not list it). */
static long long pprof_flat(const char *top, const char *func)
{
	for (const char *line = top; line != NULL && *line != '\0';) {
		const char *end = strchr(line, '\n');
		char buf[512];
		size_t n = end != NULL ? (size_t)(end - line) : strlen(line);
		long long flat;
		char name[400];
		if (n < sizeof buf) {
			memcpy(buf, line, n);
			buf[n] = '\0';
			/* "   5000B 43.36% 43.36%      5000B 43.36%  site_main" */
			if (sscanf(buf, " %lldB %*s %*s %*s %*s %399[^\n]", &flat, name) == 2 &&
			    strcmp(name, func) == 0)
				return flat;
		}
		line = end != NULL ? end + 1 : NULL;
	}
	return -1;
}

/* The standard output of a shell command, which must exit 0. */
static char *run_pprof(const char *dir, const char *file, const char *sample)
{
	char *cmd = h_strf("HOME=%s GOCACHE=%s/gocache go tool pprof -top -unit=B -nodefraction=0 "
	                   "-nodecount=100000 -sample_index=%s %s 2>&1",
	                   dir, dir, sample, file);
	char *out = h_command_out(cmd, "");
	free(cmd);
	return out;
}

static const char *const temps_funcs[] = {"site_temporary", "site_held",   "site_first_second",
                                          "site_realloc",   "site_thread", "site_main"};

START_TEST(exports)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t;
	char pidbuf[24];
	char *pb = h_strf("%s/temps.pb.gz", D.dir), *file = h_strf("%s/temps-snap.json", D.dir);

	h_prog_start(&p, &D, "temps", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
	/* What the daemon has seen of it first (the last site is site_main). */
	{
		struct churn_arg a = {t, NULL, "allocations", false};
		const char *args[] = {"top",         "--raw-frames", "--pid", pidbuf, "--sort-by",
		                      "allocations", "--limit",      "0",     NULL};
		char *why = h_ctl_poll(&D, H_NOUID, &r, check_churn_cb, &a, args);
		ck_assert_msg(why == NULL, "%s", why);
		h_ctl_free(&r);
	}

	/* Folded stacks, of each value, live: per allocating function the
	 * book's figure. */
	static const char *const values[] = {"size", "count", "allocations", "allocated",
	                                     "temporary"};
	for (int v = 0; v < 5; v++) {
		const char *args[] = {"export", "--pid",   pidbuf,    "--format",
		                      "folded", "--value", values[v], NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 0 && r.out != NULL, "export folded: %s", r.err);
		for (size_t k = 0; k < sizeof temps_funcs / sizeof temps_funcs[0]; k++) {
			long long want = truth_func_sum(t, temps_funcs[k], v);
			long long got = folded_sum(r.out, temps_funcs[k]);
			ck_assert_msg(got == want,
			              "folded %s: %s %lld, the program booked %lld:\n%.2000s",
			              values[v], temps_funcs[k], got, want, r.out);
		}
		h_ctl_free(&r);
	}

	/* pprof, read by go tool pprof: per function the book's figure, and
	 * for every function memtracectl top --key function lists, its size. */
	{
		const char *args[] = {"export", "--pid", pidbuf, "-o", pb, NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 0, "export pprof: %s", r.err);
		h_ctl_free(&r);
		/* The file is the user's alone, and a link planted where it goes
		 * is not followed. */
		struct stat st;
		ck_assert_int_eq(stat(pb, &st), 0);
		ck_assert_msg((st.st_mode & 07777) == 0600, "%s has mode %o", pb,
		              (unsigned)(st.st_mode & 07777));
		char *link = h_strf("%s/planted.pb.gz", D.dir),
		     *target = h_strf("%s/victim", D.dir);
		ck_assert_int_eq(symlink(target, link), 0);
		const char *via[] = {"export", "--pid", pidbuf, "-o", link, NULL};
		h_ctl_run(&D, H_NOUID, &r, via);
		ck_assert_msg(r.status != 0 && r.out != NULL && strstr(r.out, "file_error") != NULL,
		              "export -o through a symlink: exit %d: %s", r.status, r.out);
		ck_assert_msg(access(target, F_OK) != 0, "export -o wrote through a symlink");
		h_ctl_free(&r);
		free(link);
		free(target);
	}
	static const char *const samples[] = {"inuse_space", "inuse_objects", "alloc_objects",
	                                      "alloc_space"};
	static const int truth_of[] = {0, 1, 2, 3};
	char *inuse = NULL;
	for (int k = 0; k < 4; k++) {
		char *top = run_pprof(D.dir, pb, samples[k]);
		for (size_t f = 0; f < sizeof temps_funcs / sizeof temps_funcs[0]; f++) {
			long long want = truth_func_sum(t, temps_funcs[f], truth_of[k]);
			long long got = pprof_flat(top, temps_funcs[f]);
			ck_assert_msg(got == (want > 0 ? want : -1) || (want == 0 && got == 0),
			              "pprof %s: %s %lld, the program booked %lld:\n%.3000s",
			              samples[k], temps_funcs[f], got, want, top);
		}
		if (k == 0)
			inuse = top;
		else
			free(top);
	}
	/* The profile names the program's executable as its main binary, and
	 * the object of every location (pprof -raw's mappings). */
	ck_assert_msg(strstr(inuse, "File: temps\n") != NULL &&
	                  strstr(inuse, "Main binary filename not available") == NULL,
	              "pprof names no main binary:\n%.1000s", inuse);
	{
		char *cmd = h_strf("HOME=%s GOCACHE=%s/gocache go tool pprof -raw %s 2>&1", D.dir,
		                   D.dir, pb);
		char *raw = h_command_out(cmd, "");
		const char *maps = strstr(raw, "\nMappings\n");
		ck_assert_msg(maps != NULL && strstr(maps, "/temps ") != NULL &&
		                  strstr(maps, "libc.so.6") != NULL,
		              "pprof -raw's mappings lack the program or libc:\n%.2000s",
		              maps != NULL ? maps : raw);
		free(raw);
		free(cmd);
	}
	{
		/* pprof is of the frames as captured */
		const char *args[] = {"top",      "--raw-frames", "--pid", pidbuf, "--key",
		                      "function", "--limit",      "0",     NULL};
		const cJSON *st;
		int n = 0;
		h_ctl_ok(&D, H_NOUID, &r, args);
		cJSON_ArrayForEach(st, cJSON_GetObjectItem(r.json, "stats"))
		{
			const cJSON *f0 =
			    cJSON_GetArrayItem(cJSON_GetObjectItem(st, "traceback"), 0);
			const char *fn = h_json_str(f0, "function");
			long long size = -1;
			ck_assert(fn != NULL && h_json_int(st, "size", &size));
			long long got = pprof_flat(inuse, fn);
			ck_assert_msg(got == size,
			              "pprof inuse_space of %s: %lld, memtracectl top: %lld", fn,
			              got, size);
			n++;
		}
		ck_assert_int_gt(n, 2);
		h_ctl_free(&r);
	}
	free(inuse);

	/* From a snapshot file and from the store: the same figures. */
	long long id = 0;
	{
		const char *args[] = {"snapshot", "--pid", pidbuf, "-o", file, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert(h_json_int(r.json, "id", &id));
		h_ctl_free(&r);
	}
	char *sid = h_strf("%lld", id);
	const char *srcs[] = {file, sid};
	for (int k = 0; k < 2; k++) {
		const char *args[] = {"export", "--snapshot", srcs[k],     "--format",
		                      "folded", "--value",    "allocated", NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 0 && r.out != NULL, "export --snapshot %s: %s", srcs[k],
		              r.err);
		for (size_t f = 0; f < sizeof temps_funcs / sizeof temps_funcs[0]; f++)
			ck_assert_int_eq(folded_sum(r.out, temps_funcs[f]),
			                 truth_func_sum(t, temps_funcs[f], 3));
		h_ctl_free(&r);
	}
	/* Bad options are refused with a usage error. */
	{
		const char *args[] = {"export", "--pid", pidbuf, "--format", "svg", NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 2 && strstr(r.out, "pprof or folded") != NULL,
		              "export --format svg: status %d, %s", r.status, r.out);
		h_ctl_free(&r);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "temps");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(sid);
	free(pb);
	free(file);
}
END_TEST

/* ---- what was live at the peak (progs/peaks.c) ---- */

/* top --at peak of `src` ("--pid P" or "--snapshot X") is the book `t`,
 * site by site to the byte, and says "at": "peak". */
static void assert_at_peak(const char *opt, const char *src, const struct h_truth *t,
                           const char *what)
{
	struct h_expect e = {.t = t, .key = H_KEY_LINENO};
	const char *args[] = {"top", opt, src, "--at", "peak", "--limit", "0", NULL};
	struct h_ctl r;
	char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, args);

	ck_assert_msg(why == NULL, "%s: top --at peak: %s", what, why);
	ck_assert_msg(h_json_str(r.json, "at") != NULL && !strcmp(h_json_str(r.json, "at"), "peak"),
	              "%s: the answer does not say at peak", what);
	h_ctl_free(&r);
}

START_TEST(peak_sites)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *tpeak, *tnow, *tpeak2, *tnow2;
	char pidbuf[24];
	char *peakbook, *file = h_strf("%s/peaks.json", D.dir);
	long long peak = -1, total = -1, id = 0;

	h_prog_start(&p, &D, "peaks", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	peakbook = h_strf("%s.peak", p.truth);
	tpeak = h_truth_must(peakbook);
	tnow = h_truth_must(p.truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", tnow->pid);

	/* Now is not the peak; the peak's sites, to the byte, are. */
	{
		struct h_expect e = {.t = tnow, .key = H_KEY_LINENO};
		const char *args[] = {"top", "--pid", pidbuf, "--limit", "0", NULL};
		char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, args);
		ck_assert_msg(why == NULL, "top now: %s", why);
		h_ctl_free(&r);
	}
	assert_at_peak("--pid", pidbuf, tpeak, "live");
	/* Its total is the peak stats reports (the whole heap's, libc's too). */
	{
		const char *args[] = {"top", "--pid", pidbuf, "--at", "peak", "--limit", "1", NULL};
		const char *sargs[] = {"stats", "--pid", pidbuf, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert(h_json_int(r.json, "total_size", &total));
		h_ctl_free(&r);
		h_ctl_ok(&D, H_NOUID, &r, sargs);
		ck_assert(h_json_int(r.json, "peak", &peak));
		h_ctl_free(&r);
		ck_assert_msg(total == peak, "top --at peak totals %lld, stats says peak %lld",
		              total, peak);
	}
	/* From a snapshot file and from the store. */
	{
		const char *args[] = {"snapshot", "--pid", pidbuf, "-o", file, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert(h_json_int(r.json, "id", &id));
		h_ctl_free(&r);
	}
	/* export --at peak: the peak's bytes per site function. */
	{
		const char *args[] = {"export", "--pid", pidbuf, "--format",
		                      "folded", "--at",  "peak", NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 0 && r.out != NULL, "export --at peak: %s", r.err);
		static const char *const fs[] = {"site_a", "site_b", "site_c", "site_d"};
		for (int k = 0; k < 4; k++)
			ck_assert_msg(folded_sum(r.out, fs[k]) == truth_func_sum(tpeak, fs[k], 0),
			              "export --at peak: %s %lld, the peak's book %lld", fs[k],
			              folded_sum(r.out, fs[k]), truth_func_sum(tpeak, fs[k], 0));
		h_ctl_free(&r);
	}
	char *sid = h_strf("%lld", id);
	assert_at_peak("--snapshot", file, tpeak, "snapshot file");
	assert_at_peak("--snapshot", sid, tpeak, "stored snapshot");

	/* A higher peak. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	tpeak2 = h_truth_must(peakbook);
	tnow2 = h_truth_must(p.truth);
	assert_at_peak("--pid", pidbuf, tpeak2, "after a higher peak");
	/* reset-peak: the peak is now. */
	{
		const char *args[] = {"reset-peak", "--pid", pidbuf, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		h_ctl_free(&r);
	}
	assert_at_peak("--pid", pidbuf, tnow2, "after reset-peak");
	/* Exited (everything freed): the peak since the reset is still known. */
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "peaks");
	assert_at_peak("--pid", pidbuf, tnow2, "exited");

	h_truth_free(tpeak);
	h_truth_free(tnow);
	h_truth_free(tpeak2);
	h_truth_free(tnow2);
	h_proc_cleanup(&p);
	free(sid);
	free(peakbook);
	free(file);
}
END_TEST

/* ---- the flame graph page, as headless Chromium renders it ---- */

/* Headless Chromium's document of a page file after its script ran. */
static char *chromium_dom(const char *html)
{
	char *url = h_strf("file://%s", html);
	char *out = h_chromium(&D, url, "--dump-dom", 1200, 800, 0);
	free(url);
	return out;
}

static void run_flamegraph(const char *const *args, const char *html, const char *what)
{
	struct h_ctl r;
	h_ctl_run(&D, H_NOUID, &r, args);
	ck_assert_msg(r.status == 0, "%s: flamegraph: %s", what, r.err);
	h_ctl_free(&r);
	/* Self-contained: nothing the page would fetch. */
	FILE *f = fopen(html, "r");
	char buf[1 << 16];
	size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
	ck_assert_msg(f != NULL && n > 0, "%s: no page", what);
	fclose(f);
	buf[n] = '\0';
	ck_assert_msg(strstr(buf, "http://") == NULL && strstr(buf, "https://") == NULL &&
	                  strstr(buf, " src=") == NULL && strstr(buf, "<link") == NULL,
	              "%s: the page refers to something outside it", what);
}

START_TEST(flamegraph_page)
{
	struct h_proc p;
	struct h_truth *tnow, *tpeak, *tpeak2;
	char pidbuf[24];
	char *html = h_strf("%s/flame.html", D.dir), *file = h_strf("%s/flame-snap.json", D.dir);
	char *live, *peakbook;
	struct h_fframe fr[512];
	int n;

	h_prog_start(&p, &D, "peaks", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	tnow = h_truth_must(p.truth);
	peakbook = h_strf("%s.peak", p.truth);
	tpeak = h_truth_must(peakbook);
	snprintf(pidbuf, sizeof pidbuf, "%ld", tnow->pid);
	live = h_strf("live:%s", pidbuf);
	assert_at_peak("--pid", pidbuf, tpeak, "before the flame graph");

	/* Now: site_b's 50,000 and site_d's 60,000 bytes. */
	static const char *const now_f[] = {"site_b", "site_d"};
	long long now_b[2] = {truth_func_sum(tnow, "site_b", 0), truth_func_sum(tnow, "site_d", 0)};
	{
		const char *args[] = {"flamegraph", "--pid", pidbuf, "-o", html, NULL};
		run_flamegraph(args, html, "now");
		char *dom = chromium_dom(html);
		n = h_rendered_frames(dom, fr, 512);
		h_assert_widths(fr, n, now_f, now_b, 2, "now");
		ck_assert_msg(h_frame_named(fr, n, "site_c") == NULL,
		              "site_c's freed block is drawn");
		free(dom);
	}
	/* At the peak, from a snapshot file: site_a, site_b and site_c. */
	static const char *const peak_f[] = {"site_a", "site_b", "site_c"};
	long long peak_b[3] = {truth_func_sum(tpeak, "site_a", 0),
	                       truth_func_sum(tpeak, "site_b", 0),
	                       truth_func_sum(tpeak, "site_c", 0)};
	{
		struct h_ctl r;
		const char *sargs[] = {"snapshot", "--pid", pidbuf, "-o", file, NULL};
		h_ctl_ok(&D, H_NOUID, &r, sargs);
		h_ctl_free(&r);
		const char *args[] = {"flamegraph", "--snapshot", file, "--value",
		                      "peak",       "-o",         html, NULL};
		run_flamegraph(args, html, "peak");
		char *dom = chromium_dom(html);
		n = h_rendered_frames(dom, fr, 512);
		h_assert_widths(fr, n, peak_f, peak_b, 3, "peak");
		free(dom);
	}
	/* Differential, of the peaks: the second peak against the first. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	tpeak2 = h_truth_must(peakbook);
	assert_at_peak("--pid", pidbuf, tpeak2, "before the differential graph");
	{
		const char *args[] = {"flamegraph", "--compare", file, live, "--value",
		                      "peak",       "-o",        html, NULL};
		run_flamegraph(args, html, "differential");
		char *dom = chromium_dom(html);
		n = h_rendered_frames(dom, fr, 512);
		static const char *const f2[] = {"site_b", "site_d", "site_f"};
		for (int i = 0; i < 3; i++) {
			const struct h_fframe *x = h_frame_named(fr, n, f2[i]);
			long long want =
			    truth_func_sum(tpeak2, f2[i], 0) - truth_func_sum(tpeak, f2[i], 0);
			ck_assert_msg(x != NULL && x->has_delta && x->delta == (double)want,
			              "differential: %s grew %.0f, the books say %lld", f2[i],
			              x != NULL ? x->delta : -1.0, want);
		}
		free(dom);
	}
	/* Bad options: a usage error. */
	{
		struct h_ctl r;
		const char *args[] = {"flamegraph", "--pid", pidbuf, "--value", "bogus", NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_int_eq(r.status, 2);
		h_ctl_free(&r);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "peaks");
	h_truth_free(tnow);
	h_truth_free(tpeak);
	h_truth_free(tpeak2);
	h_proc_cleanup(&p);
	free(live);
	free(peakbook);
	free(html);
	free(file);
}
END_TEST

/* ---- memory over time (progs/deltas.c) ---- */

/* The last sample of `history --pid P`: its current bytes and blocks, and
 * how many samples there are; asserts they are in time order. */
static void last_sample(const char *pid, long long *current, long long *blocks, int *n,
                        const char *what)
{
	const char *args[] = {"history", "--pid", pid, NULL};
	struct h_ctl r;
	const cJSON *row;
	double prev = -1;

	h_ctl_ok(&D, H_NOUID, &r, args);
	const cJSON *samples = cJSON_GetObjectItem(r.json, "samples");
	*n = cJSON_GetArraySize(samples);
	ck_assert_msg(*n > 0, "%s: no samples: %.500s", what, r.out);
	cJSON_ArrayForEach(row, samples)
	{
		ck_assert_int_eq(cJSON_GetArraySize(row), 4);
		double ms = cJSON_GetArrayItem(row, 0)->valuedouble;
		ck_assert_msg(ms > prev, "%s: samples out of time order", what);
		prev = ms;
		*current = (long long)cJSON_GetArrayItem(row, 1)->valuedouble;
		*blocks = (long long)cJSON_GetArrayItem(row, 2)->valuedouble;
	}
	h_ctl_free(&r);
}

START_TEST(history_series)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t1, *t2;
	char pidbuf[24];
	long long c1, b1, c2, b2;
	int n1, n2;

	h_prog_start(&p, &D, "deltas", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t1 = h_truth_must(p.truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t1->pid);
	/* Phase 1 applied (the book matches), then a sampling second later. */
	top_simple(&r, t1->pid, t1, H_KEY_LINENO, false, "deltas phase 1");
	h_ctl_free(&r);
	usleep(1300 * 1000);
	last_sample(pidbuf, &c1, &b1, &n1, "phase 1");

	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	t2 = h_truth_must(p.truth);
	top_simple(&r, t1->pid, t2, H_KEY_LINENO, false, "deltas phase 2");
	h_ctl_free(&r);
	usleep(1300 * 1000);
	last_sample(pidbuf, &c2, &b2, &n2, "phase 2");
	/* The step between the two phases is the book's, byte for byte. */
	ck_assert_msg(n2 > n1, "phase 2 added no sample (%d, then %d)", n1, n2);
	ck_assert_msg(c2 - c1 == h_truth_bytes(t2) - h_truth_bytes(t1),
	              "history steps by %lld bytes, the book by %lld", c2 - c1,
	              h_truth_bytes(t2) - h_truth_bytes(t1));
	ck_assert_msg(b2 - b1 == h_truth_count(t2) - h_truth_count(t1),
	              "history steps by %lld blocks, the book by %lld", b2 - b1,
	              h_truth_count(t2) - h_truth_count(t1));
	/* The table draws it. */
	{
		const char *args[] = {"--table", "history", "--pid", pidbuf, NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(
		    r.status == 0 && r.out != NULL && strstr(r.out, "current  ") != NULL &&
		        strstr(r.out, "\u2581") != NULL && strstr(r.out, "\u2588") != NULL,
		    "history --table: %.2000s", r.out);
		/* Its blocks' least and greatest are those of every sample. */
		const char *jargs[] = {"history", "--pid", pidbuf, NULL};
		struct h_ctl j;
		const cJSON *row;
		long long lo = -1, hi = -1;
		h_ctl_ok(&D, H_NOUID, &j, jargs);
		cJSON_ArrayForEach(row, cJSON_GetObjectItem(j.json, "samples"))
		{
			long long b = (long long)cJSON_GetArrayItem(row, 2)->valuedouble;
			if (lo < 0 || b < lo)
				lo = b;
			if (b > hi)
				hi = b;
		}
		h_ctl_free(&j);
		char *want = h_strf("min %lld, max %lld\n", lo, hi);
		const char *bl = strstr(r.out, "blocks   ");
		ck_assert_msg(bl != NULL && strstr(bl, want) != NULL,
		              "history --table lacks %s in %s", want, r.out);
		free(want);
		h_ctl_free(&r);
	}
	/* A pid memtraced holds nothing of: said so. */
	{
		const char *args[] = {"history", "--pid", "2147483646", NULL};
		h_ctl_run(&D, H_NOUID, &r, args);
		ck_assert_msg(r.status == 1 && r.out != NULL && strstr(r.out, "no_such_process"),
		              "history of an unknown pid: %d %s", r.status, r.out);
		h_ctl_free(&r);
	}
	/* Exited: the history stays, its last sample what the process held at
	 * its end (deltas leaks phase 2's blocks). */
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "deltas");
	wait_state(t1->pid, "exited");
	long long c3, b3;
	int n3;
	last_sample(pidbuf, &c3, &b3, &n3, "exited");
	ck_assert_msg(c3 == c2 && b3 == b2 && n3 >= n2,
	              "exited: last sample %lld bytes in %lld blocks, was %lld in %lld", c3, b3, c2,
	              b2);
	h_truth_free(t1);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

START_TEST(peak_and_reset)
{
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t, *t2;
	struct stats s, s2;
	char pidbuf[24];
	long long big, held, rpeak, rpid;

	h_prog_start(&p, &D, "peak", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	big = h_truth_meta(t, "big", -1);
	held = h_truth_meta(t, "held_at_big", -1);
	ck_assert(big > 0 && held > 0);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);

	assert_stats_consistent(t->pid, t, &s, "peak");
	ck_assert_msg(s.current < big, "current %lld includes the freed %lld-byte block", s.current,
	              big);
	ck_assert_msg(s.peak >= big + held && s.peak <= big + s.current,
	              "peak %lld, expected between the big block plus what was held then "
	              "(%lld) and the big block plus current (%lld)",
	              s.peak, big + held, big + s.current);

	/* reset-peak answers the new peak, which is current. */
	{
		const char *args[] = {"reset-peak", "--pid", pidbuf, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert_msg(h_json_int(r.json, "peak", &rpeak) &&
		                  h_json_int(r.json, "pid", &rpid),
		              "reset-peak answer: %.500s", r.out);
		ck_assert_int_eq(rpid, t->pid);
		ck_assert_msg(rpeak == s.current, "reset-peak says peak %lld, current is %lld",
		              rpeak, s.current);
		h_ctl_free(&r);
	}
	get_stats(&r, t->pid, &s2);
	ck_assert_msg(s2.peak == s2.current && s2.current == s.current,
	              "after reset-peak: peak %lld current %lld (current before %lld)", s2.peak,
	              s2.current, s.current);
	h_ctl_free(&r);

	/* A spike after the reset is the new peak, exactly. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	t2 = h_truth_must(p.truth);
	{
		struct peak_arg a = {s.current + h_truth_meta(t2, "spike", -1), s.current};
		const char *args[] = {"stats", "--pid", pidbuf, NULL};
		char *why = h_ctl_poll(&D, H_NOUID, &r, check_peak_cb, &a, args);
		ck_assert_msg(why == NULL, "after a %lld-byte spike following reset-peak: %s",
		              h_truth_meta(t2, "spike", -1), why);
		h_ctl_free(&r);
	}
	/* A capture of the live process in a file, for the compare below. */
	char *file = h_daemon_file(&D, "peak-live.json");
	{
		const char *args[] = {"snapshot", "--pid", pidbuf, "-o", file, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		h_ctl_free(&r);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "peak");
	/* Ended, its peak is history: reset-peak refuses, the peak stays. */
	wait_state(t->pid, "exited");
	get_stats(&r, t->pid, &s2);
	h_ctl_free(&r);
	{
		const char *args[] = {"reset-peak", "--pid", pidbuf, NULL};
		h_ctl_error(&D, H_NOUID, args, "not_live");
		/* Nor is another snapshot stored: its exit snapshot is the last
		 * state, and the message says where it is. */
		const char *take[] = {"snapshot", "--pid", pidbuf, NULL};
		h_ctl_error_saying(&D, H_NOUID, take, "not_live", "exit snapshot");
	}
	struct stats s3;
	get_stats(&r, t->pid, &s3);
	h_ctl_free(&r);
	ck_assert_msg(s3.peak == s2.peak, "an ended process's peak went from %lld to %lld", s2.peak,
	              s3.peak);
	/* Nor do they, or where, take a stored snapshot: it never changes. */
	{
		static const char *const cmds[] = {"reset-peak", "snapshot", "detach", "where"};
		for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
			const char *args[] = {cmds[i], "--snapshot", "1", "0x1000", NULL};
			if (strcmp(cmds[i], "where") != 0)
				args[3] = NULL;
			h_ctl_error_saying(&D, H_NOUID, args, "bad_request",
			                   "works on a live process");
		}
	}
	/* compare's labels say what was compared: the file (a manual
	 * snapshot of the live process) against live:PID of a process that
	 * has ended, which is what it held at its end ("exited"), not a live
	 * capture. */
	{
		char *live = h_strf("live:%s", pidbuf);
		const char *args[] = {"compare", file, live, NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		const cJSON *o = cJSON_GetObjectItem(r.json, "old"),
		            *n = cJSON_GetObjectItem(r.json, "new");
		const char *ofile = h_json_str(o, "file"), *oreason = h_json_str(o, "reason");
		const char *nreason = h_json_str(n, "reason");
		long long npid = 0;
		ck_assert_msg(ofile != NULL && strcmp(ofile, file) == 0 && oreason != NULL &&
		                  strcmp(oreason, "manual") == 0 && nreason != NULL &&
		                  strcmp(nreason, "exited") == 0 && h_json_int(n, "pid", &npid) &&
		                  npid == t->pid && h_json_str(n, "file") == NULL,
		              "compare FILE live:PID of an ended process: old %.600s, new %.600s",
		              o != NULL ? cJSON_PrintUnformatted(o) : "(none)",
		              n != NULL ? cJSON_PrintUnformatted(n) : "(none)");
		h_ctl_free(&r);
		free(live);
	}
	free(file);
	h_truth_free(t);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

/* One `where` answer checked against the book: the block that starts at
 * start and has size bytes, the offset of addr in it, and the traceback of
 * the record rec (its frames, most recent first). */
static void check_where(const char *pidbuf, const char *arg, uint64_t addr, uint64_t start,
                        uint64_t size, const struct h_rec *rec)
{
	struct h_ctl r;
	const char *args[] = {"where", "--pid", pidbuf, arg, NULL};
	long long got_size = -1, got_off = -1;
	char want[32];

	h_ctl_ok(&D, H_NOUID, &r, args);
	const cJSON *b = cJSON_GetObjectItem(r.json, "block");
	const cJSON *a = cJSON_GetObjectItem(b, "address");
	snprintf(want, sizeof want, "0x%" PRIx64, start);
	ck_assert_msg(cJSON_IsString(a) && strcmp(a->valuestring, want) == 0 &&
	                  h_json_int(b, "size", &got_size) && got_size == (long long)size &&
	                  h_json_int(b, "offset", &got_off) && got_off == (long long)(addr - start),
	              "where %s: want the block %s of %" PRIu64 " B at offset %" PRIu64 ": %.1500s",
	              arg, want, size, addr - start, r.out);
	const cJSON *tb = cJSON_GetObjectItem(b, "traceback");
	ck_assert_msg(cJSON_GetArraySize(tb) >= rec->nframes, "where %s: %d frames, the book %d",
	              arg, cJSON_GetArraySize(tb), rec->nframes);
	for (int i = 0; i < rec->nframes; i++) {
		const cJSON *f = cJSON_GetArrayItem(tb, i);
		const cJSON *file = cJSON_GetObjectItem(f, "filename");
		const cJSON *func = cJSON_GetObjectItem(f, "function");
		long long line = -1;
		ck_assert_msg(cJSON_IsString(file) && cJSON_IsString(func) &&
		                  h_json_int(f, "lineno", &line) &&
		                  h_file_matches(file->valuestring, rec->f[i].file) &&
		                  line == rec->f[i].line &&
		                  h_func_matches(func->valuestring, rec->f[i].func, rec->f[i].file),
		              "where %s: frame %d is not the book's %s:%d %s: %.1500s", arg, i,
		              rec->f[i].file, rec->f[i].line, rec->f[i].func, r.out);
	}
	h_ctl_free(&r);
}

START_TEST(where_blocks)
{
	struct h_proc p;
	char pidbuf[24], line[256], arg[64];
	struct {
		uint64_t addr, size;
		int rec;
	} blocks[3];
	int n = 0;
	uint64_t gone = 0;

	h_prog_start(&p, &D, "pointers", NULL, H_NOUID, NULL);
	for (;;) {
		ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 20000), 1);
		char name[32];
		unsigned long long a, sz;
		int rec;
		if (strcmp(line, "ready") == 0)
			break;
		if (sscanf(line, "block %31s %llx %llu %d", name, &a, &sz, &rec) == 4 && n < 3) {
			blocks[n].addr = a;
			blocks[n].size = sz;
			blocks[n++].rec = rec;
		} else if (sscanf(line, "gone %llx", &a) == 1)
			gone = a;
	}
	ck_assert_int_eq(n, 3);
	struct h_truth *t = h_truth_must(p.truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
	wait_state(t->pid, "live"); /* the daemon has read its HELLO */
	for (int i = 0; i < n; i++) {
		const uint64_t offs[] = {0, blocks[i].size / 2, blocks[i].size - 1};
		ck_assert(blocks[i].rec >= 0 && blocks[i].rec < t->nrecs);
		for (int k = 0; k < 3; k++) {
			uint64_t at = blocks[i].addr + offs[k];
			/* hex as gdb prints a pointer; decimal for the middle byte
			 * (the first block's with a leading 0: decimal still, not
			 * octal) */
			if (k == 1)
				snprintf(arg, sizeof arg, i == 0 ? "0%" PRIu64 : "%" PRIu64, at);
			else
				snprintf(arg, sizeof arg, "0x%" PRIx64, at);
			check_where(pidbuf, arg, at, blocks[i].addr, blocks[i].size,
			            &t->recs[blocks[i].rec]);
		}
	}
	/* A freed block's address is in no live block. */
	snprintf(arg, sizeof arg, "0x%llx", (unsigned long long)gone);
	const char *freed[] = {"where", "--pid", pidbuf, arg, NULL};
	h_ctl_error(&D, H_NOUID, freed, "no_such_block");
	/* Not a pointer (hexadecimal without its 0x, past 2^64, not a
	 * number): a usage error that says what ADDRESS must be; an untraced
	 * process: not_traced. */
	static const char *const bad_addrs[] = {"0xzz", "55aebd8403e0", "0x10000000000000000",
	                                        "18446744073709551616", "0x"};
	for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
		const char *bad[] = {"where", "--pid", pidbuf, bad_addrs[i], NULL};
		h_ctl_error_saying(&D, H_NOUID, bad, "bad_request", "ADDRESS must be");
	}
	char self[24];
	snprintf(self, sizeof self, "%ld", (long)getpid());
	const char *untraced[] = {"where", "--pid", self, "0x1000", NULL};
	h_ctl_error(&D, H_NOUID, untraced, "not_traced");
	/* The table says it as a sentence, with the site's source line. */
	snprintf(arg, sizeof arg, "0x%" PRIx64, blocks[0].addr + 50);
	const char *tab[] = {"where", "--pid", pidbuf, arg, "--table", NULL};
	struct h_ctl r;
	h_ctl_run(&D, H_NOUID, &r, tab);
	ck_assert_msg(r.status == 0 && strstr(r.out, "is 50 bytes into the block at") != NULL &&
	                  strstr(r.out, "small = malloc(100)") != NULL,
	              "where --table: %.1500s", r.out);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "pointers");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* ------------------------------------------------------ 4: fork, exec */

static void assert_no_session(long pid, const char *what)
{
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};
	const char *code;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	h_ctl_run(&D, H_NOUID, &r, args);
	code = h_ctl_error_code(&r);
	/* Gone, or running untraced. */
	ck_assert_msg(r.status != 0 && code != NULL &&
	                  (strcmp(code, "no_such_process") == 0 || strcmp(code, "not_traced") == 0),
	              "%s: pid %ld should have no session, stats says (exit %d) %.800s", what, pid,
	              r.status, r.out);
	h_ctl_free(&r);
}

static struct h_truth *child_truth(const struct h_proc *p, long long pid)
{
	char *path = h_strf("%s.%lld", p->truth, pid);
	struct h_truth *t = h_truth_must(path);
	free(path);
	ck_assert_int_eq(t->pid, pid);
	return t;
}

/* stats of pid say unknown_frees 0: every free was of a block it knew. */
static void assert_no_unknown_frees(long pid, const char *what)
{
	struct h_ctl r;
	struct stats s;
	long long unknown = -1;

	get_stats(&r, pid, &s);
	ck_assert_msg(h_json_int(r.json, "unknown_frees", &unknown) && unknown == 0,
	              "%s: unknown_frees %lld: %.600s", what, unknown, r.out);
	h_ctl_free(&r);
}

/* Every fork child of the test took its parent's heap: the daemon never
 * logged one as not found (it did for a child whose HELLO came
 * before the daemon read the parent's FORK record, though the child had
 * its heap: the count of waiting children went below zero). */
static void assert_every_child_inherited(const char *what)
{
	char *log = h_daemon_log_tail(&D, (size_t)1 << 20);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(strstr(log, "was not found") == NULL,
	              "%s: the daemon says a parent's heap was not found:\n%s", what, log);
	free(log);
}

/*
 * A parent forks 40 children in a row (tests/progs/forkburst.c), once while
 * the daemon is stopped (it meets all 40 FORK records before any child's
 * connection) and once while it runs, and each child
 * must still start with the parent's heap at its fork. Every child's top
 * (lineno and traceback) matches its book, inherited blocks included, and
 * unknown_frees is 0 though each freed half of what it inherited.
 */
START_TEST(fork_burst)
{
	struct h_proc p;
	struct h_ctl r;
	struct stats s;
	char *dir, *base;
	int found = 0;

	h_prog_start(&p, &D, "forkburst", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	/* Run 0: all the forks, and every child's work, while the daemon
	 * sleeps: it then reads 40 FORK records before any child's HELLO.
	 * Run 1: the daemon awake, so most children's HELLO comes before it
	 * read their FORK record, and reading the parent then hands them
	 * their heap. */
	if (_i == 0)
		ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	ck_assert_int_eq(h_proc_send(&p, "fork"), 0);
	h_proc_expect_ready(&p);
	if (_i == 0)
		ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
	struct h_truth *t = h_truth_must(p.truth);
	long long n = h_truth_meta(t, "children", -1);
	ck_assert_int_eq(n, 40);
	dir = h_strf("%s", p.truth);
	base = strrchr(dir, '/');
	ck_assert_ptr_nonnull(base);
	*base++ = '\0';
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t bl = strlen(base);
		if (strncmp(e->d_name, base, bl) != 0 || e->d_name[bl] != '.')
			continue;
		long long pid = atoll(e->d_name + bl + 1);
		struct h_truth *tc = child_truth(&p, pid);
		char *what = h_strf("forked child %lld of 40", pid);
		top_simple(&r, pid, tc, H_KEY_LINENO, false, what);
		h_ctl_free(&r);
		top_simple(&r, pid, tc, H_KEY_TRACEBACK, false, what);
		h_ctl_free(&r);
		assert_stats_consistent(pid, tc, &s, what);
		assert_no_unknown_frees(pid, what);
		h_truth_free(tc);
		free(what);
		found++;
	}
	closedir(d);
	ck_assert_int_eq(found, 40);
	assert_every_child_inherited("forkburst");
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, "forkburst parent");
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "forkburst");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(dir);
}
END_TEST

/*
 * A program that goes to the background as daemons do (tests/progs/
 * daemonize.c): it allocates, forks, and its first process exits at once.
 * The child's session starts with the parent's heap at the fork all the
 * same: its top matches its book, the inherited blocks (required, not
 * optional) included, and its free of one of them is a known free. In odd
 * runs the daemon sleeps until the child is done, so it reads the parent's
 * end before or along with the child's hello, every time.
 */
START_TEST(daemonize_inherits)
{
	struct h_proc p;
	struct h_ctl r;
	bool asleep = _i % 2 == 1;
	const char *twice[] = {"double", NULL};

	if (asleep)
		ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	/* Runs 4 and 5: the classic double fork, whose middle process never
	 * allocates (its child must still get a session of its own). */
	h_prog_start(&p, &D, "daemonize", _i >= 4 ? twice : NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p); /* the child's: the parent is gone by then */
	if (asleep)
		ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
	struct h_truth *t = h_truth_must(p.truth);
	for (int i = 0; i < t->nrecs; i++)
		ck_assert_msg(!t->recs[i].optional, "the book marks inherited blocks optional");
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, "daemonized child");
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_TRACEBACK, false, "daemonized child");
	h_ctl_free(&r);
	assert_no_unknown_frees(t->pid, "daemonized child");
	assert_every_child_inherited("daemonize");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "daemonize");
	wait_state(t->pid, "exited");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

START_TEST(fork_exec)
{
	/* _i == 0: default (forks followed); _i == 1: MEMTRACE_FOLLOW_FORK=0. */
	const char *env_nofollow[] = {"MEMTRACE_FOLLOW_FORK=0", NULL};
	bool follow = _i == 0;
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t, *tf, *te, *tq;
	struct stats s;
	long long f, e, q;
	const char *what = follow ? "fork followed" : "MEMTRACE_FOLLOW_FORK=0";

	h_prog_start(&p, &D, "forker", NULL, H_NOUID, follow ? NULL : env_nofollow);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	f = h_truth_meta(t, "child_fork", -1);
	e = h_truth_meta(t, "child_exec", -1);
	q = h_truth_meta(t, "child_exited", -1);
	ck_assert(f > 0 && e > 0 && q > 0);
	tf = child_truth(&p, f);
	te = child_truth(&p, e);
	tq = child_truth(&p, q);

	/* The parent: exactly its own sites; any child line would be an
	 * "unexpected entry", and F's free of an inherited block must not
	 * have removed it from the parent. */
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_TRACEBACK, false, what);
	h_ctl_free(&r);
	assert_stats_consistent(t->pid, t, &s, what);

	if (follow) {
		/* The exec'd child is a new process image: its own session, only
		 * what it allocated after exec. */
		const char *args[] = {"list", NULL};
		const cJSON *ent;
		const char *exe, *state;

		top_simple(&r, e, te, H_KEY_LINENO, false, "exec'd child");
		h_ctl_free(&r);
		h_ctl_ok(&D, H_NOUID, &r, args);
		ent = h_list_find(r.json, (long)e);
		ck_assert_msg(ent != NULL, "list lacks the exec'd child %lld", e);
		exe = h_json_str(ent, "exe");
		state = h_json_str(ent, "state");
		ck_assert_msg(state != NULL && strcmp(state, "live") == 0, "exec'd child state %s",
		              state ? state : "absent");
		ck_assert_msg(exe != NULL && strstr(exe, "forker") != NULL, "exec'd child exe %s",
		              exe ? exe : "absent");
		h_ctl_free(&r);
	} else {
		/* Not followed, nor is what the child execs (lineage.h). */
		assert_no_session(e, what);
	}

	if (follow) {
		/* F runs on, traced as itself, with the parent's blocks it
		 * inherited (at the parent's sites) less the one it freed; Q has
		 * exited and keeps what it held, inherited blocks too. A free
		 * of an inherited block is a free of a known block. */
		top_simple(&r, f, tf, H_KEY_LINENO, false, "forked child");
		h_ctl_free(&r);
		top_simple(&r, f, tf, H_KEY_TRACEBACK, false, "forked child");
		h_ctl_free(&r);
		assert_stats_consistent(f, tf, &s, "forked child");
		assert_no_unknown_frees(f, "forked child");
		top_simple(&r, q, tq, H_KEY_LINENO, false, "exited forked child");
		h_ctl_free(&r);
		wait_state(q, "exited");
		assert_no_unknown_frees(q, "exited forked child");
	} else {
		assert_no_session(f, what);
		assert_no_session(q, what);
	}

	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "forker");
	/* After the children ended, the parent's last state is still only its
	 * own. */
	wait_state(t->pid, "exited");
	{
		struct h_truth *tend = h_truth_must(p.truth);
		top_simple(&r, t->pid, tend, H_KEY_LINENO, false, "forker after exit");
		h_ctl_free(&r);
		h_truth_free(tend);
	}
	h_truth_free(t);
	h_truth_free(tf);
	h_truth_free(te);
	h_truth_free(tq);
	h_proc_cleanup(&p);
}
END_TEST

/* -------------------------------------------------------- 5: behave */

#define BEHAVE_CODE "42"

struct run_out {
	char *out, *err;
	int status;
	long pid;
};

static void run_out_free(struct run_out *o)
{
	free(o->out);
	free(o->err);
}

/*
 * Runs behave. agent: preload it; runtime: MEMTRACE_RUNTIME_DIR; kill_daemon:
 * once it says "waiting" (and the daemon lists it), SIGKILL the daemon before
 * letting it go on.
 */
static void run_behave(struct run_out *o, bool agent, const char *runtime, bool kill_daemon)
{
	char *path = h_prog("behave");
	const char *argv[] = {path, BEHAVE_CODE, NULL};
	/* agent without runtime: `memtracectl run` starts it on D */
	const char *run_argv[] = {
	    h_client_bin(), "--runtime-dir", D.runtime, "run", "--agent", h_agent_lib(), "--",
	    path,           BEHAVE_CODE,     NULL};
	bool via_run = agent && runtime == NULL;
	struct h_spawn s = {.argv = via_run ? run_argv : argv,
	                    .agent = agent && !via_run,
	                    .runtime_dir = runtime,
	                    .uid = H_NOUID};
	struct h_proc p;
	char line[256];
	int rc;

	h_proc_start(&p, &s);
	o->pid = p.pid;
	do {
		rc = h_proc_readline(&p, line, sizeof line, H_START_MS);
	} while (rc == 1 && strcmp(line, "waiting") != 0);
	ck_assert_msg(rc == 1,
	              "behave never said \"waiting\" (%s); stdout: %.1000s stderr: %.1000s",
	              rc == 0 ? "end of output" : "timed out", p.out.data ? p.out.data : "",
	              p.err.data ? p.err.data : "");
	if (kill_daemon) {
		const char *args[] = {"list", NULL};
		long long deadline = h_now_ms() + H_POLL_MS;
		bool seen = false;
		while (!seen && h_now_ms() < deadline) {
			struct h_ctl r;
			h_ctl_run(&D, H_NOUID, &r, args);
			seen = r.json != NULL && h_list_find(r.json, p.pid) != NULL;
			h_ctl_free(&r);
			if (!seen)
				h_sleep_ms(100);
		}
		ck_assert_msg(seen,
		              "the daemon never listed behave (pid %ld): nothing to kill under it",
		              (long)p.pid);
		ck_assert_msg(h_daemon_signal(&D, SIGKILL, 5000) != -1, "daemon did not die");
	}
	ck_assert_int_eq(h_proc_send(&p, "go"), 0);
	h_proc_close_stdin(&p);
	o->status = h_proc_finish(&p, 60000);
	o->out = h_strf("%s", p.out.data ? p.out.data : "");
	o->err = h_strf("%s", p.err.data ? p.err.data : "");
	h_proc_cleanup(&p);
	free(path);
}

static void baseline(struct run_out *o)
{
	run_behave(o, false, NULL, false);
	ck_assert_msg(o->status != -1 && WIFEXITED(o->status) &&
	                  WEXITSTATUS(o->status) == atoi(BEHAVE_CODE),
	              "behave without the agent: %s", h_status_str(o->status));
	ck_assert_msg(strstr(o->out, "behave: done\n") != NULL, "baseline output: %s", o->out);
}

static void assert_same(const struct run_out *base, const struct run_out *o, const char *what)
{
	ck_assert_msg(o->status == base->status,
	              "%s: behave ended with %s, without the agent with %s", what,
	              h_status_str(o->status), h_status_str(base->status));
	ck_assert_msg(strcmp(o->out, base->out) == 0,
	              "%s: stdout differs.\n--- without the agent:\n%s--- %s:\n%s", what, base->out,
	              what, o->out);
}

/* stderr is the baseline's lines plus at most `max_extra` (and at least
 * `min_extra`) lines, each mentioning memtrace. */
static void assert_stderr(const struct run_out *base, const struct run_out *o, int min_extra,
                          int max_extra, const char *what)
{
	char *copy = h_strf("%s", o->err), *save = NULL, *line;
	int extra = 0;
	char *why = NULL;

	for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *l = h_strf("%s\n", line);
		if (strstr(base->err, l) == NULL) {
			extra++;
			if (strcasestr(line, "memtrace") == NULL)
				h_append(
				    &why,
				    "stderr line not from the program and not about memtrace: %s",
				    line);
		}
		free(l);
	}
	free(copy);
	ck_assert_msg(why == NULL, "%s: %s", what, why);
	ck_assert_msg(
	    extra >= min_extra && extra <= max_extra,
	    "%s: %d extra stderr lines, expected %d to %d.\n--- without the agent:\n%s--- "
	    "%s:\n%s",
	    what, extra, min_extra, max_extra, base->err, what, o->err);
	/* The program's own lines are all there. */
	copy = h_strf("%s", base->err);
	for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		ck_assert_msg(strstr(o->err, line) != NULL, "%s: stderr lost \"%s\"", what, line);
	free(copy);
}

START_TEST(behave_with_daemon)
{
	struct run_out base, o;
	struct h_ctl r;
	const char *args[] = {"list", NULL};

	baseline(&base);
	run_behave(&o, true, D.runtime, false);
	assert_same(&base, &o, "with the agent and a daemon");
	assert_stderr(&base, &o, 0, 0, "with the agent and a daemon");
	/* and it really was traced */
	h_ctl_ok(&D, H_NOUID, &r, args);
	ck_assert_msg(h_list_find(r.json, o.pid) != NULL,
	              "the daemon never saw behave (pid %ld): %.800s", o.pid, r.out);
	h_ctl_free(&r);
	run_out_free(&base);
	run_out_free(&o);
}
END_TEST

START_TEST(behave_via_run)
{
	struct run_out base, o;
	struct h_ctl r;
	const char *args[] = {"list", NULL};
	const cJSON *pr;
	bool seen = false;

	baseline(&base);
	run_behave(&o, true, NULL, false);
	assert_same(&base, &o, "under memtracectl run");
	assert_stderr(&base, &o, 0, 0, "under memtracectl run");
	h_ctl_ok(&D, H_NOUID, &r, args);
	cJSON_ArrayForEach(pr, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
	{
		const char *exe = h_json_str(pr, "exe");
		seen = seen || (exe != NULL && strstr(exe, "/behave") != NULL);
	}
	ck_assert_msg(seen, "memtracectl run: the daemon never saw behave: %.800s", r.out);
	h_ctl_free(&r);
	run_out_free(&base);
	run_out_free(&o);
}
END_TEST

START_TEST(behave_no_daemon)
{
	struct run_out base, o;
	char *empty = h_strf("%s/empty", D.dir);

	ck_assert_int_eq(mkdir(empty, 0700), 0);
	baseline(&base);
	run_behave(&o, true, empty, false);
	assert_same(&base, &o, "with the agent and no daemon");
	assert_stderr(&base, &o, 1, 1, "with the agent and no daemon");
	run_out_free(&base);
	run_out_free(&o);
	free(empty);
}
END_TEST

START_TEST(behave_daemon_killed)
{
	struct run_out base, o;

	baseline(&base);
	run_behave(&o, true, D.runtime, true);
	assert_same(&base, &o, "daemon SIGKILLed while it ran");
	assert_stderr(&base, &o, 0, 1, "daemon SIGKILLed while it ran");
	run_out_free(&base);
	run_out_free(&o);
}
END_TEST

/* ----------------------------------------------------- 6: malformed */

/* Starts sites, waits until the daemon reports it exactly; returns its book. */
static struct h_truth *traced_sites(struct h_proc *p)
{
	struct h_ctl r;
	struct h_truth *t;

	h_prog_start(p, &D, "sites", NULL, H_NOUID, NULL);
	h_proc_expect_ready(p);
	t = h_truth_must(p->truth);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, "sites before the bad input");
	h_ctl_free(&r);
	return t;
}

/* After the bad input: status answers, the program's session is still exact
 * and still ingesting, and the daemon stops cleanly on SIGTERM. */
static void still_serving(struct h_proc *p, struct h_truth *t, const char *what)
{
	struct h_ctl r;
	struct h_truth *t2;
	const char *args[] = {"status", NULL};
	char *log;
	int st;

	ck_assert_msg(h_daemon_alive(&D), "%s: memtraced died: %s", what, h_status_str(D.status));
	h_ctl_ok(&D, H_NOUID, &r, args);
	ck_assert_msg(h_json_str(r.json, "version") != NULL, "%s: status lacks version: %.500s",
	              what, r.out);
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(p, "next"), 0);
	h_proc_expect_ready(p);
	t2 = h_truth_must(p->truth);
	top_simple(&r, t2->pid, t2, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(p, "exit"), 0);
	h_proc_end(p, "sites");
	h_truth_free(t2);
	st = h_daemon_signal(&D, SIGTERM, 10000);
	log = h_daemon_log_tail(&D, 2500);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "%s: memtraced on SIGTERM: %s; log:\n%s", what, h_status_str(st), log);
	free(log);
}

static size_t hello(uint8_t *buf, size_t cap, uint32_t claimed_pid)
{
	static const char exe[] = "/bin/evil";
	static const char cmdline[] = "evil\0--flag";
	struct proto_hello h = {.version = PROTO_VERSION,
	                        .flags = 0,
	                        .nframes = 32,
	                        .pid = claimed_pid,
	                        .sample_bytes = 0,
	                        .exe = exe,
	                        .exe_len = sizeof exe - 1,
	                        .cmdline = cmdline,
	                        .cmdline_len = sizeof cmdline};
	ssize_t n = proto_hello_encode(buf, cap, &h);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

/*
 * The shared region a hostile agent hands the daemon (proto/shm.h): made as
 * the agent makes it, unless `kind` says otherwise, then spoiled by the
 * case's function. The daemon must refuse it at HELLO or, once it reads the
 * spoiled part (on WAKE), close the connection: never crash, hang or read
 * outside it.
 */
enum region_kind { R_GOOD, R_PIPE, R_UNSEALED, R_SHORT, R_FILE };

struct bad_frame {
	const char *name;
	bool with_hello;         /* a HELLO with a region first */
	enum region_kind region; /* what comes with that HELLO */
	void (*spoil)(char *map);
	bool second_fd;  /* another descriptor after HELLO */
	bool half_close; /* shut our side down after sending (truncation) */
	uint8_t bytes[160];
	size_t len;
};

static struct shm_ring *region_ring(char *map, uint32_t i)
{
	return (struct shm_ring *)(map + SHM_OFF_RING(i));
}

/* One ring in use, records nothing is in flight for, header seq past them. */
static struct shm_ring *one_ring(char *map, uint64_t seq)
{
	struct shm_header *h = (struct shm_header *)map;
	struct shm_ring *r = region_ring(map, 0);
	atomic_store(&h->nrings, 1);
	atomic_store(&h->seq, seq);
	atomic_store(&r->pending, UINT64_MAX);
	return r;
}

static void put_rec(struct shm_ring *r, uint64_t seq, unsigned kind, uint64_t addr, uint32_t stack)
{
	uint64_t h = atomic_load(&r->head);
	r->ev[h % SHM_RING_CAP] =
	    (struct shm_ev){seq << PROTO_EV_KIND_BITS | kind, addr, 16, stack, 0};
	atomic_store(&r->head, h + 1);
}

static void spoil_overfull(char *map)
{
	atomic_store(&one_ring(map, 10)->head, UINT64_C(1) << 40);
}

static void spoil_seq_down(char *map)
{
	struct shm_ring *r = one_ring(map, 10);
	put_rec(r, 5, PROTO_EV_ALLOC, 0x1000, 0);
	put_rec(r, 3, PROTO_EV_ALLOC, 0x2000, 0);
}

static void spoil_kind(char *map)
{
	put_rec(one_ring(map, 10), 5, 0, 0x1000, 0);
}

static void spoil_zero_addr(char *map)
{
	put_rec(one_ring(map, 10), 5, PROTO_EV_ALLOC, 0, 0);
}

static void spoil_stack_not_ready(char *map)
{
	put_rec(one_ring(map, 10), 5, PROTO_EV_ALLOC, 0x1000, 5);
}

static void spoil_stack_offset(char *map)
{
	map[SHM_OFF_STATES + 5] = SHM_STACK_READY;
	*(uint64_t *)(map + SHM_OFF_OFFSETS + 8 * 5) = SHM_ARENA - 8;
	put_rec(one_ring(map, 10), 5, PROTO_EV_ALLOC, 0x1000, 5);
}

static void spoil_stack_frames(char *map)
{
	struct shm_stack *e = (struct shm_stack *)(map + SHM_OFF_ARENA + 64);
	map[SHM_OFF_STATES + 5] = SHM_STACK_READY;
	*(uint64_t *)(map + SHM_OFF_OFFSETS + 8 * 5) = 64;
	e->nframes = 300;
	put_rec(one_ring(map, 10), 5, PROTO_EV_ALLOC, 0x1000, 5);
}

static void spoil_stack_id(char *map)
{
	put_rec(one_ring(map, 10), 5, PROTO_EV_ALLOC, 0x1000, SHM_STACK_CAP + 7);
}

static void spoil_magic(char *map)
{
	((struct shm_header *)map)->magic = 0;
}

/* A descriptor for `kind`, spoiled by `spoil`; -1 on failure. */
static int make_region(enum region_kind kind, void (*spoil)(char *))
{
	int fd, p[2];

	switch (kind) {
	case R_PIPE:
		if (pipe(p) < 0)
			return -1;
		close(p[1]);
		return p[0];
	case R_FILE:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	default:
		break;
	}
	fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)(kind == R_SHORT ? SHM_SIZE / 2 : SHM_SIZE)) < 0)
		return -1;
	if (kind != R_UNSEALED && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		return -1;
	if (kind == R_SHORT)
		return fd;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	((struct shm_header *)map)->magic = SHM_MAGIC;
	((struct shm_header *)map)->version = PROTO_VERSION;
	if (spoil != NULL)
		spoil(map);
	munmap(map, SHM_SIZE);
	return fd;
}

/* Sends buf with descriptor fd attached. 0 or -errno. */
static int send_with_fd(int sock, const void *buf, size_t n, int fd)
{
	return h_send_fds(sock, buf, n, &fd, 1);
}

static void hdr(struct bad_frame *b, uint16_t type, uint32_t len, uint16_t reserved)
{
	proto_put_u32(b->bytes + b->len, len);
	proto_put_u16(b->bytes + b->len + 4, type);
	proto_put_u16(b->bytes + b->len + 6, reserved);
	b->len += PROTO_HDR_SIZE;
}

static void put32(struct bad_frame *b, uint32_t v)
{
	proto_put_u32(b->bytes + b->len, v);
	b->len += 4;
}

static void put64(struct bad_frame *b, uint64_t v)
{
	proto_put_u64(b->bytes + b->len, v);
	b->len += 8;
}

/* A case whose region is refused at HELLO, or read on the WAKE that follows. */
static struct bad_frame *region_case(struct bad_frame *b, const char *name, enum region_kind kind,
                                     void (*spoil)(char *))
{
	*b = (struct bad_frame){.name = name, .with_hello = true, .region = kind, .spoil = spoil};
	hdr(b, PROTO_WAKE, 0, 0);
	return b;
}

static int make_bad_frames(struct bad_frame *v)
{
	int n = 0;
	struct bad_frame *b;

	b = &v[n++];
	*b = (struct bad_frame){.name = "garbage text"};
	b->len = (size_t)snprintf((char *)b->bytes, sizeof b->bytes,
	                          "GET / HTTP/1.1\r\nHost: memtrace\r\n\r\n\x01\xff\xfe garbage");

	b = &v[n++];
	*b = (struct bad_frame){.name = "unknown frame type 99"};
	hdr(b, 99, 0, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "frame type 0"};
	hdr(b, 0, 4, 0);
	put32(b, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "non-zero reserved header field"};
	hdr(b, PROTO_WAKE, 0, 0x1234);

	b = &v[n++];
	*b = (struct bad_frame){.name = "huge length 0xffffffff"};
	hdr(b, PROTO_MODULE, 0xffffffffu, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "length one over PROTO_MAX_PAYLOAD"};
	hdr(b, PROTO_MODULE, PROTO_MAX_PAYLOAD + 1, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "WAKE before HELLO"};
	hdr(b, PROTO_WAKE, 0, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "HELLO without the region's descriptor"};
	b->len = hello(b->bytes, sizeof b->bytes, 1);

	b = &v[n++];
	*b = (struct bad_frame){.name = "HELLO of protocol version 999"};
	hdr(b, PROTO_HELLO, 24 + 4 + 4, 0);
	put32(b, 999);
	put32(b, 0);
	put32(b, 32);
	put32(b, 1);
	put64(b, 0);
	put32(b, 0);
	put32(b, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "HELLO whose exe length overruns the frame"};
	hdr(b, PROTO_HELLO, 24 + 4 + 4, 0);
	put32(b, PROTO_VERSION);
	put32(b, 0);
	put32(b, 32);
	put32(b, 1);
	put64(b, 0);
	put32(b, 1000);
	put32(b, 0);

	b = &v[n++];
	*b =
	    (struct bad_frame){.name = "truncated frame, then our side closed", .half_close = true};
	hdr(b, PROTO_MODULE, 100, 0);
	put32(b, 1);
	put32(b, 11);

	region_case(&v[n++], "HELLO with a pipe for the region", R_PIPE, NULL);
	region_case(&v[n++], "HELLO with /dev/null for the region", R_FILE, NULL);
	region_case(&v[n++], "HELLO with a memfd that can still shrink", R_UNSEALED, NULL);
	region_case(&v[n++], "HELLO with a region of half the size", R_SHORT, NULL);
	region_case(&v[n++], "HELLO with a region of another magic", R_GOOD, spoil_magic);
	region_case(&v[n++], "a ring holding 2^40 records", R_GOOD, spoil_overfull);
	region_case(&v[n++], "sequence numbers going down a ring", R_GOOD, spoil_seq_down);
	region_case(&v[n++], "a record of kind 0", R_GOOD, spoil_kind);
	region_case(&v[n++], "an allocation at address 0", R_GOOD, spoil_zero_addr);
	region_case(&v[n++], "a record naming a stack not in the table", R_GOOD,
	            spoil_stack_not_ready);
	region_case(&v[n++], "a stack entry at the arena's end", R_GOOD, spoil_stack_offset);
	region_case(&v[n++], "a stack entry of 300 frames", R_GOOD, spoil_stack_frames);
	region_case(&v[n++], "a stack id past the table", R_GOOD, spoil_stack_id);

	b = &v[n++];
	*b = (struct bad_frame){.name = "HELLO, then a second descriptor", .with_hello = true};
	b->second_fd = true;
	hdr(b, PROTO_WAKE, 0, 0);

	b = &v[n++];
	*b = (struct bad_frame){.name = "HELLO, then WAKE with a payload", .with_hello = true};
	hdr(b, PROTO_WAKE, 4, 0);
	put32(b, 0);
	return n;
}

/* One case, from whoever runs it: 0 when the daemon closed the connection,
 * else a message (static) saying what went wrong. */
static const char *attack_once(const char *sock, const struct bad_frame *f)
{
	uint8_t buf[512];
	int fd = h_connect(sock), rc = 0;

	if (fd < 0)
		return "cannot connect to agent.sock";
	if (f->with_hello) {
		int region = make_region(f->region, f->spoil);
		if (region < 0) {
			close(fd);
			return "cannot make the region";
		}
		rc = send_with_fd(fd, buf, hello(buf, sizeof buf, 1), region);
		close(region);
	}
	if (rc == 0 && f->second_fd) {
		int extra = make_region(R_GOOD, NULL);
		(void)send_with_fd(fd, f->bytes, f->len, extra);
		close(extra);
	} else {
		/* the daemon may close as soon as it has seen enough: ignore EPIPE */
		(void)h_send_all(fd, f->bytes, f->len);
	}
	if (f->half_close)
		shutdown(fd, SHUT_WR);
	int closed = h_wait_closed(fd, 5000) == 1;
	close(fd);
	return closed ? NULL : "the daemon did not close the connection";
}

START_TEST(malformed_agent_frames)
{
	struct h_proc p;
	struct h_truth *t = traced_sites(&p);
	struct bad_frame frames[40];
	int n = make_bad_frames(frames);
	char *sock = h_strf("%s/agent.sock", D.runtime);
	int idle;
	uint8_t buf[512];

	/* A peer that stops mid-frame and stays: it must not stall anyone. */
	idle = h_connect(sock);
	ck_assert_int_ge(idle, 0);
	int region = make_region(R_GOOD, NULL);
	ck_assert_int_ge(region, 0);
	ck_assert_int_eq(
	    send_with_fd(idle, buf, hello(buf, sizeof buf, (uint32_t)getpid()), region), 0);
	close(region);
	ck_assert_int_eq(h_send_all(idle, "\x40\x00\x00", 3), 0);

	/* Every attack comes from another user when we can be one: uid 65534,
	 * which reaches agent.sock as every local user does. */
	bool other_user = geteuid() == 0;
	struct stat rst;
	ck_assert_int_eq(stat(D.runtime, &rst), 0);
	if (other_user)
		ck_assert_int_eq(chmod(D.runtime, 0755), 0);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			if (other_user &&
			    (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
			     setresuid(65534, 65534, 65534) < 0))
				_exit(3);
			const char *why = attack_once(sock, &frames[i]);
			if (why != NULL) {
				fprintf(stderr, "%s\n", why);
				_exit(1);
			}
			_exit(0);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		              "agent.sock as %s: \"%s\": %s (daemon %s)",
		              other_user ? "uid 65534" : "ourselves", frames[i].name,
		              WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "not refused"
		                                                    : h_status_str(st),
		              h_daemon_alive(&D) ? "alive" : h_status_str(D.status));
	}
	if (other_user)
		ck_assert_int_eq(chmod(D.runtime, rst.st_mode & 07777), 0);
	/* A HELLO claiming to be pid 1 is filed under our real pid, if at all. */
	{
		struct h_ctl r;
		const char *args[] = {"list", NULL};
		h_ctl_ok(&D, H_NOUID, &r, args);
		ck_assert_msg(h_list_find(r.json, 1) == NULL,
		              "a HELLO claiming pid 1 made a session for pid 1: %.800s", r.out);
		h_ctl_free(&r);
	}
	still_serving(&p, t, "after malformed agent frames");
	close(idle);
	free(sock);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

struct bad_request {
	const char *line; /* sent as is, '\n' added */
	const char *code; /* expected error code; NULL: error or close, then closed */
};

START_TEST(malformed_control)
{
	struct h_proc p;
	struct h_truth *t = traced_sites(&p);
	char *sock = h_strf("%s/control.sock", D.runtime);
	char *top_bogus = h_strf("{\"cmd\":\"top\",\"pid\":%ld,\"key\":\"bogus\"}", t->pid);
	char *top_neg = h_strf("{\"cmd\":\"top\",\"pid\":%ld,\"limit\":-1}", t->pid);
	char *top_filt = h_strf("{\"cmd\":\"top\",\"pid\":%ld,\"filters\":\"*.c\"}", t->pid);
	char *top_cumtb = h_strf(
	    "{\"cmd\":\"top\",\"pid\":%ld,\"key\":\"traceback\",\"cumulative\":true}", t->pid);
	char *top_filt2 =
	    h_strf("{\"cmd\":\"top\",\"pid\":%ld,\"filters\":[{\"inclusive\":true}]}", t->pid);
	/* closing kind: not JSON, not an object */
	const struct bad_request closing[] = {
	    {"this is not json", NULL}, {"{\"cmd\": \"status\"", NULL},
	    {"[1,2,3]", NULL},          {"42", NULL},
	    {"\"status\"", NULL},       {"{\"cmd\":\"status\"}garbage", NULL},
	};
	/* well-formed requests with bad arguments: error, connection stays */
	const struct bad_request open[] = {
	    {"{\"cmd\":\"nope\"}", "unknown_command"},
	    {"{}", "bad_request"},
	    {"{\"cmd\":42}", "bad_request"},
	    {"{\"cmd\":\"stats\"}", "bad_request"},
	    {"{\"cmd\":\"stats\",\"pid\":\"123\"}", "bad_request"},
	    {"{\"cmd\":\"stats\",\"pid\":1.5}", "bad_request"},
	    {"{\"cmd\":\"stats\",\"pid\":null}", "bad_request"},
	    {"{\"cmd\":\"stats\",\"pid\":999999999}", "no_such_process"},
	    {top_bogus, "bad_request"},
	    {top_neg, "bad_request"},
	    {top_filt, "bad_request"},
	    {top_filt2, "bad_request"},
	    {top_cumtb, "bad_request"},
	};
	char line[65536];

	for (size_t i = 0; i < sizeof closing / sizeof closing[0]; i++) {
		int fd = h_connect(sock), n;
		ck_assert_msg(fd >= 0, "connect control.sock: %s", strerror(-fd));
		char *req = h_strf("%s\n", closing[i].line);
		(void)h_send_all(fd, req, strlen(req));
		free(req);
		n = h_read_line(fd, line, sizeof line, 5000);
		ck_assert_msg(n != -ETIMEDOUT, "control: %s: no answer and not closed",
		              closing[i].line);
		if (n > 0) {
			cJSON *j = cJSON_Parse(line);
			const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
			const char *code = h_json_str(err, "code");
			ck_assert_msg(code != NULL && strcmp(code, "bad_request") == 0 &&
			                  h_json_str(err, "message") != NULL,
			              "control: %s: answer is not a bad_request error: %s",
			              closing[i].line, line);
			cJSON_Delete(j);
			ck_assert_msg(h_wait_closed(fd, 5000) == 1,
			              "control: %s: connection not closed after the error",
			              closing[i].line);
		}
		close(fd);
	}

	/* One connection carries all the bad-argument requests, each followed
	 * by a good one: errors do not end it. */
	{
		int fd = h_connect(sock);
		ck_assert_msg(fd >= 0, "connect control.sock: %s", strerror(-fd));
		for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
			char *req = h_strf("%s\n{\"cmd\":\"status\"}\n", open[i].line);
			cJSON *j;
			const char *code;
			ck_assert_int_eq(h_send_all(fd, req, strlen(req)), 0);
			free(req);
			ck_assert_msg(h_read_line(fd, line, sizeof line, 5000) > 0,
			              "control: %s: no answer", open[i].line);
			j = cJSON_Parse(line);
			code = h_json_str(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
			ck_assert_msg(code != NULL && strcmp(code, open[i].code) == 0,
			              "control: %s: expected error %s, got %s", open[i].line,
			              open[i].code, line);
			cJSON_Delete(j);
			ck_assert_msg(h_read_line(fd, line, sizeof line, 5000) > 0,
			              "control: connection closed after %s", open[i].line);
			j = cJSON_Parse(line);
			ck_assert_msg(h_json_str(j, "version") != NULL,
			              "control: status after %s answered %s", open[i].line, line);
			cJSON_Delete(j);
		}
		close(fd);
	}

	/* Over the 64 KiB request limit, without a newline: an error or a close,
	 * never a daemon buffering forever. */
	{
		size_t big = (3u << 20) / 2;
		char *junk = malloc(big);
		int fd = h_connect(sock), n;
		ck_assert(junk != NULL && fd >= 0);
		memset(junk, 'a', big);
		junk[0] = '"';
		(void)h_send_all(fd, junk, big);
		free(junk);
		n = h_read_line(fd, line, sizeof line, 5000);
		ck_assert_msg(n != -ETIMEDOUT,
		              "control: 1.5 MiB request: no answer and not closed");
		if (n > 0) {
			cJSON *j = cJSON_Parse(line);
			ck_assert_msg(cJSON_GetObjectItemCaseSensitive(j, "error") != NULL,
			              "control: 1.5 MiB request answered %.300s", line);
			cJSON_Delete(j);
			ck_assert_msg(h_wait_closed(fd, 5000) == 1,
			              "control: oversized request: connection not closed");
		}
		close(fd);
	}

	/* The client: errors are JSON on stdout and a non-zero exit. */
	{
		struct h_ctl r;
		const char *nopid[] = {"stats", "--pid", "999999999", NULL};
		const char *bogus[] = {"frobnicate", NULL};
		const char *code;
		h_ctl_run(&D, H_NOUID, &r, nopid);
		code = h_ctl_error_code(&r);
		ck_assert_msg(r.status != 0 && code != NULL && strcmp(code, "no_such_process") == 0,
		              "memtracectl stats --pid 999999999: exit %d, %.500s", r.status,
		              r.out);
		h_ctl_free(&r);
		/* A pid memtraced holds nothing of: none (above), or this test's
		 * own process, which runs untraced: the hint says how to trace it. */
		char self[24];
		snprintf(self, sizeof self, "%ld", (long)getpid());
		const char *untraced[] = {"top", "--pid", self, NULL};
		h_ctl_run(&D, H_NOUID, &r, untraced);
		code = h_ctl_error_code(&r);
		ck_assert_msg(r.status != 0 && code != NULL && strcmp(code, "not_traced") == 0 &&
		                  strstr(r.out, "memtracectl run") != NULL &&
		                  strstr(r.out, "memtracectl attach") != NULL,
		              "memtracectl top --pid (an untraced process): exit %d, %.500s",
		              r.status, r.out);
		h_ctl_free(&r);
		/* (not_yours: uid_isolation, as uid 65534.) */
		h_ctl_run(&D, H_NOUID, &r, bogus);
		ck_assert_msg(r.status != 0, "memtracectl frobnicate exited 0");
		h_ctl_free(&r);
	}

	still_serving(&p, t, "after malformed control requests");
	free(sock);
	free(top_bogus);
	free(top_neg);
	free(top_filt);
	free(top_filt2);
	free(top_cumtb);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* ------------------------------------------------------------ 7: uid */

START_TEST(uid_isolation)
{
	struct h_proc rootp, nobp;
	struct h_truth *rt, *nt;
	struct h_ctl r;
	char rootpid[24], nobpid[24];
	const char *list[] = {"list", NULL};
	const char *stats_root[] = {"stats", "--pid", rootpid, NULL};
	const char *top_root[] = {"top", "--pid", rootpid, NULL};
	const char *reset_root[] = {"reset-peak", "--pid", rootpid, NULL};
	const char *tb_root[] = {"traceback", "--pid", rootpid, NULL};
	const char *stats_nob[] = {"stats", "--pid", nobpid, NULL};

	ck_assert_int_eq(chmod(D.runtime, 0755), 0);
	h_prog_start(&rootp, &D, "sites", NULL, H_NOUID, NULL);
	h_prog_start(&nobp, &D, "sites", NULL, H_NOBODY, NULL);
	h_proc_expect_ready(&rootp);
	h_proc_expect_ready(&nobp);
	rt = h_truth_must(rootp.truth);
	nt = h_truth_must(nobp.truth);
	snprintf(rootpid, sizeof rootpid, "%ld", rt->pid);
	snprintf(nobpid, sizeof nobpid, "%ld", nt->pid);

	/* Both are traced and exact, as root sees them. */
	top_simple(&r, rt->pid, rt, H_KEY_LINENO, false, "root's program, asked by root");
	h_ctl_free(&r);
	top_simple(&r, nt->pid, nt, H_KEY_LINENO, false, "nobody's program, asked by root");
	h_ctl_free(&r);
	h_ctl_ok(&D, H_NOUID, &r, list);
	ck_assert_msg(h_list_find(r.json, rt->pid) != NULL && h_list_find(r.json, nt->pid) != NULL,
	              "root's list lacks a process: %.1000s", r.out);
	h_ctl_free(&r);

	/* nobody sees its own program, exactly... */
	{
		struct h_expect e = {.t = nt, .files = nt, .key = H_KEY_LINENO};
		assert_top(&r, H_NOBODY, nt->pid, &e, NULL, "nobody's program, asked by nobody");
		h_ctl_free(&r);
		h_ctl_ok(&D, H_NOBODY, &r, stats_nob);
		h_ctl_free(&r);
	}
	/* ...and nothing of root's. */
	h_ctl_ok(&D, H_NOBODY, &r, list);
	ck_assert_msg(h_list_find(r.json, rt->pid) == NULL,
	              "uid 65534's list shows root's pid %ld: %.1000s", rt->pid, r.out);
	ck_assert_msg(h_list_find(r.json, nt->pid) != NULL,
	              "uid 65534's list lacks its own pid %ld: %.1000s", nt->pid, r.out);
	{
		const cJSON *pr;
		cJSON_ArrayForEach(pr, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
		{
			long long uid;
			if (h_json_int(pr, "uid", &uid))
				ck_assert_msg(uid == H_NOBODY, "uid 65534's list shows uid %lld",
				              uid);
		}
	}
	h_ctl_free(&r);
	{
		const char *const *cmds[] = {stats_root, top_root, reset_root, tb_root};
		for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
			const char *code;
			h_ctl_run(&D, H_NOBODY, &r, cmds[i]);
			code = h_ctl_error_code(&r);
			ck_assert_msg(r.status != 0 && code != NULL &&
			                  strcmp(code, "not_yours") == 0,
			              "uid 65534 `%s --pid %s` on root's process: exit %d, %.800s",
			              cmds[i][0], rootpid, r.status, r.out);
			h_ctl_free(&r);
		}
	}
	/* root's program is untouched by nobody's reset-peak attempt. */
	top_simple(&r, rt->pid, rt, H_KEY_LINENO, false, "root's program at the end");
	h_ctl_free(&r);

	ck_assert_int_eq(h_proc_send(&rootp, "exit"), 0);
	ck_assert_int_eq(h_proc_send(&nobp, "exit"), 0);
	h_proc_end(&rootp, "root's sites");
	h_proc_end(&nobp, "nobody's sites");
	h_truth_free(rt);
	h_truth_free(nt);
	h_proc_cleanup(&rootp);
	h_proc_cleanup(&nobp);
}
END_TEST

/* ----------------------------------------------------- dlopen, dlclose */

/* A library loaded with dlopen allocates: its blocks are attributed to its
 * own file, line and function, before and after dlclose. */
START_TEST(dlopen_plugin)
{
	struct h_proc p;
	struct h_ctl r;
	char *lib = h_prog(".libs/libplugin.so");
	const char *args[] = {lib, NULL};

	h_prog_start(&p, &D, "dlopener", args, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	top_simple(&r, p.pid, t, H_KEY_LINENO, false, "dlopen: after dlopen");
	h_ctl_free(&r);
	top_simple(&r, p.pid, t, H_KEY_FUNCTION, false, "dlopen: after dlopen");
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	top_simple(&r, p.pid, t, H_KEY_LINENO, false, "dlopen: after dlclose");
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "dlopener did not exit");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(lib);
}
END_TEST

/* ------------------------------------------ the daemon falls behind */

/* The daemon is stopped (SIGSTOP) while the program makes 2N events, then
 * resumed. Lossless mode: the program waits, nothing is lost, the daemon
 * counts every event. Drop mode: the program finishes while the daemon is
 * still stopped, and every event the daemon did not get is in lost_events. */
START_TEST(daemon_behind)
{
	const bool drop = _i == 1;
	const long n = 1000000;
	const char *const env_drop[] = {"MEMTRACE_ON_FULL=drop", NULL};
	struct h_proc p;
	struct h_ctl r;
	char pid[32], cmd[64], line[128];
	long long alloc0 = 0, free0 = 0, unk0 = 0, alloc1, free1, unk1, lost;

	h_prog_start(&p, &D, "churn", NULL, H_NOUID, drop ? env_drop : NULL);
	h_proc_expect_ready(&p);
	snprintf(pid, sizeof pid, "%ld", (long)p.pid);
	const char *const stats[] = {"stats", "--pid", pid, NULL};
	/* What libc allocated before "ready" is counted, not guessed. */
	h_await_traced(&D, H_NOUID, (long)p.pid);
	h_ctl_ok(&D, H_NOUID, &r, stats);
	h_json_int(r.json, "allocations", &alloc0);
	h_json_int(r.json, "frees", &free0);
	h_json_int(r.json, "unknown_frees", &unk0);
	h_ctl_free(&r);

	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	snprintf(cmd, sizeof cmd, "churn %ld", n);
	ck_assert_int_eq(h_proc_send(&p, cmd), 0);
	if (drop) {
		/* Nothing waits for the stopped daemon. */
		int rc = h_proc_readline(&p, line, sizeof line, 60000);
		kill(D.pid, SIGCONT);
		ck_assert_msg(rc == 1 && strncmp(line, "done", 4) == 0,
		              "drop mode: the program did not finish while the daemon was stopped");
	} else {
		/* Give it time to fill its buffers and wait, then resume. */
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
		kill(D.pid, SIGCONT);
		int rc = h_proc_readline(&p, line, sizeof line, 60000);
		ck_assert_msg(rc == 1 && strncmp(line, "done", 4) == 0, "block mode: no \"done\"");
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "churn did not exit");

	/* The exit is seen after every event before it. */
	long long t0 = h_now_ms();
	for (;;) {
		h_ctl_run(&D, H_NOUID, &r, stats);
		const char *st = r.json ? h_json_str(r.json, "state") : NULL;
		if (st != NULL && strcmp(st, "live") != 0)
			break;
		h_ctl_free(&r);
		ck_assert_msg(h_now_ms() - t0 < 30000, "session never ended");
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	ck_assert(h_json_int(r.json, "allocations", &alloc1));
	ck_assert(h_json_int(r.json, "frees", &free1));
	ck_assert(h_json_int(r.json, "unknown_frees", &unk1));
	ck_assert(h_json_int(r.json, "lost_events", &lost));
	h_ctl_free(&r);
	/* Each event the agent recorded is an allocation, a free, or a free
	 * whose allocation was dropped (unknown); or it was lost. The program
	 * made 2n; libc may add a handful at exit. */
	long long seen = (alloc1 - alloc0) + (free1 - free0) + (unk1 - unk0);
	if (drop) {
		ck_assert_msg(lost > 0, "drop mode with a stopped daemon lost nothing");
		ck_assert_msg(seen + lost >= 2 * n && seen + lost <= 2 * n + 64,
		              "drop mode: %lld events seen + %lld lost, the program made %ld", seen,
		              lost, 2 * n);
	} else {
		ck_assert_msg(lost == 0, "block mode lost %lld events", lost);
		ck_assert_msg(seen >= 2 * n && seen <= 2 * n + 64,
		              "block mode: %lld events seen, the program made %ld", seen, 2 * n);
		ck_assert_msg(alloc1 - alloc0 >= n, "block mode: %lld allocations, want %ld",
		              alloc1 - alloc0, n);
	}
	h_proc_cleanup(&p);
}
END_TEST

/* Busy loops on every CPU, at the daemon's priority, until killed (they
 * die with the test process too). */
static int start_hogs(pid_t *pids, int max)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int n = ncpu < 1 ? 1 : ncpu > max ? max : (int)ncpu;
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (volatile unsigned long x = 0;; x++)
				;
		}
	}
	return n;
}

static void stop_hogs(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
}

/* The daemon's `drain` figures in `status`. */
static void drain_status(long long *idle, long long *normal, long long *escalations, bool *yield)
{
	struct h_ctl r;
	const char *const status[] = {"status", NULL};
	h_ctl_ok(&D, H_NOUID, &r, status);
	const cJSON *dr = cJSON_GetObjectItemCaseSensitive(r.json, "drain");
	ck_assert_msg(cJSON_IsObject(dr), "status without drain: %.400s", r.out);
	ck_assert(h_json_int(dr, "passes_idle", idle));
	ck_assert(h_json_int(dr, "passes_normal", normal));
	ck_assert(h_json_int(dr, "escalations", escalations));
	*yield = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(dr, "yield"));
	h_ctl_free(&r);
}

/* Passes of reading that yield the CPU (daemon/yield.h) lose nothing and
 * change no figure: a program's churn and the blocks it keeps, read by a
 * daemon whose passes run at idle priority; with _i == 1, while busy loops
 * at the daemon's own priority take every CPU, so that a yielding pass gets
 * only what an idle thread gets. Whether one then starves long enough for
 * the watchdog to give the daemon its priority back depends on how much a
 * pass has to do in that share (since the temporaries' short way, often
 * not: a pass of a few thousand records fits): the watchdog is
 * check_yield's (a 300 ms pass cut at 20 ms, timed from its own start);
 * here what the cuts were is printed, and what must hold is that nothing
 * is lost and every figure is exact while every CPU is busy. */
START_TEST(drain_yield)
{
	const bool hogs = _i == 1;
	const long n = 1000000, keep = 5000, size = 48;
	struct h_proc p;
	struct h_ctl r;
	char pid[32], cmd[64], line[128];
	long long alloc0, free0, cur0, alloc1, free1, cur1, lost;
	long long idle0, normal0, esc0, idle1, normal1, esc1;
	bool yield;
	pid_t hog[64];
	int nhog = 0;

	drain_status(&idle0, &normal0, &esc0, &yield);
	/* The harness runs the daemon as whoever runs the tests: as root it
	 * may come back from SCHED_IDLE, and yields on Linux 6.6 and later
	 * (yield.h: not before). */
	struct utsname u;
	unsigned major = 0, minor = 0;
	bool yields = geteuid() == 0 && uname(&u) == 0 &&
	              sscanf(u.release, "%u.%u", &major, &minor) == 2 &&
	              (major > 6 || (major == 6 && minor >= 6));
	ck_assert_msg(yield == yields || geteuid() != 0, "a root daemon %s",
	              yield ? "yields on a kernel older than 6.6" : "does not yield");
	h_prog_start(&p, &D, "churn", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	snprintf(pid, sizeof pid, "%ld", (long)p.pid);
	const char *const stats[] = {"stats", "--pid", pid, NULL};
	h_await_traced(&D, H_NOUID, (long)p.pid);
	h_ctl_ok(&D, H_NOUID, &r, stats);
	ck_assert(h_json_int(r.json, "allocations", &alloc0));
	ck_assert(h_json_int(r.json, "frees", &free0));
	ck_assert(h_json_int(r.json, "current", &cur0));
	h_ctl_free(&r);

	if (hogs)
		nhog = start_hogs(hog, 64);
	snprintf(cmd, sizeof cmd, "churn %ld", n);
	ck_assert_int_eq(h_proc_send(&p, cmd), 0);
	int rc = h_proc_readline(&p, line, sizeof line, 120000);
	ck_assert_msg(rc == 1 && strncmp(line, "done", 4) == 0, "no \"done\" after churn");
	snprintf(cmd, sizeof cmd, "hold %ld %ld", keep, size);
	ck_assert_int_eq(h_proc_send(&p, cmd), 0);
	rc = h_proc_readline(&p, line, sizeof line, 120000);
	ck_assert_msg(rc == 1 && strncmp(line, "done", 4) == 0, "no \"done\" after hold");
	/* Everything the program did is read while the hogs still run. */
	long long want_alloc = alloc0 + n + keep + 1;
	for (long long end = h_now_ms() + 60000;;) {
		h_ctl_ok(&D, H_NOUID, &r, stats);
		ck_assert(h_json_int(r.json, "allocations", &alloc1));
		if (alloc1 >= want_alloc || h_now_ms() > end)
			break;
		h_ctl_free(&r);
		h_sleep_ms(50);
	}
	ck_assert(h_json_int(r.json, "frees", &free1));
	ck_assert(h_json_int(r.json, "current", &cur1));
	ck_assert(h_json_int(r.json, "lost_events", &lost));
	h_ctl_free(&r);
	stop_hogs(hog, nhog);
	drain_status(&idle1, &normal1, &esc1, &yield);

	/* The program's book: n pairs of 32 bytes, then `keep` blocks of
	 * `size` bytes held, and the array of their pointers (its first
	 * realloc: an allocation). */
	ck_assert_msg(lost == 0, "lost %lld events", lost);
	ck_assert_int_eq(alloc1 - alloc0, n + keep + 1);
	ck_assert_int_eq(free1 - free0, n);
	ck_assert_int_eq(cur1 - cur0, keep * size + keep * (long long)sizeof(void *));
	if (yields) {
		ck_assert_msg(idle1 > idle0, "no pass yielded (%lld idle, %lld normal)",
		              idle1 - idle0, normal1 - normal0);
		if (hogs)
			fprintf(stderr,
			        "drain_yield: with every CPU busy, %lld passes yielded, %lld did "
			        "not, the watchdog cut %lld\n",
			        idle1 - idle0, normal1 - normal0, esc1 - esc0);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "churn did not exit");
	h_proc_cleanup(&p);
}
END_TEST

/* A forked child that idles past the agent's check for exited threads and
 * then allocates more than a ring holds must still run to its end (the
 * child's ring once kept the parent's thread id and was taken away). */
START_TEST(fork_child_keeps_ring)
{
	struct h_proc p;
	char line[128];

	h_prog_start(&p, &D, "churn", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	ck_assert_int_eq(h_proc_send(&p, "forkchurn 200000"), 0);
	int rc = h_proc_readline(&p, line, sizeof line, 60000);
	ck_assert_msg(rc == 1 && strcmp(line, "done 200000 0") == 0,
	              "the forked child did not finish normally: %s", rc == 1 ? line : "no answer");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "churn did not exit");
	h_proc_cleanup(&p);
}
END_TEST

/* Drop mode, daemon stopped: the program's exit must not wait for it. */
START_TEST(exit_with_stopped_daemon)
{
	const char *const env_drop[] = {"MEMTRACE_ON_FULL=drop", NULL};
	struct h_proc p;
	char line[128];

	h_prog_start(&p, &D, "churn", NULL, H_NOUID, env_drop);
	h_proc_expect_ready(&p);
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	ck_assert_int_eq(h_proc_send(&p, "churn 1000000"), 0);
	int rc = h_proc_readline(&p, line, sizeof line, 60000);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	int st = h_proc_finish(&p, 60000);
	kill(D.pid, SIGCONT);
	ck_assert_msg(rc == 1 && strncmp(line, "done", 4) == 0, "no \"done\" while stopped");
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "the program did not exit while the daemon was stopped: %s",
	              h_status_str(st));
	h_proc_cleanup(&p);
}
END_TEST

/* ------------------------------------ ending without libc's exit */

/* How tests/progs/exiter ends, by _i % EXIT_MODES; EXIT_RUNS runs of each. */
static const char *const exit_mode_names[] = {"_exit", "exit_group", "sigkill", "external"};
#define EXIT_MODES 4
#define EXIT_RUNS  20

/*
 * The program ended without saying goodbye: its session must say "exited",
 * and from then on its statistics are final, so the first `top` after that
 * must already match the book (no polling), `stats` must agree with it, and
 * no event may have been lost or have lost its allocation.
 */
static void assert_exit_exact(long pid, const struct h_truth *t, const char *what)
{
	struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
	char pidbuf[24];
	const char *top_args[] = {"top",     "--pid", pidbuf,         "--key", "lineno",
	                          "--limit", "0",     "--raw-frames", NULL};
	const char *stats_args[] = {"stats", "--pid", pidbuf, NULL};
	long long cur = -1, blocks = -1, allocs = -1, frees = -1, lost = -1, unknown = -1;
	struct h_ctl top, st;
	struct stats s;
	char *why;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	wait_state(pid, "exited");
	h_ctl_ok(&D, H_NOUID, &top, top_args);
	h_ctl_ok(&D, H_NOUID, &st, stats_args);
	h_json_int(st.json, "current", &cur);
	h_json_int(st.json, "blocks", &blocks);
	h_json_int(st.json, "allocations", &allocs);
	h_json_int(st.json, "frees", &frees);
	h_json_int(st.json, "lost_events", &lost);
	h_json_int(st.json, "unknown_frees", &unknown);
	why = h_check_top(top.json, &e);
	ck_assert_msg(why == NULL,
	              "%s: the exited session differs from the program's book (%lld bytes in "
	              "%lld blocks at its sites); stats: current %lld, blocks %lld, "
	              "allocations %lld, frees %lld, lost_events %lld, unknown_frees %lld; "
	              "top:\n  %.3000s",
	              what, h_truth_bytes(t), h_truth_count(t), cur, blocks, allocs, frees, lost,
	              unknown, why);
	ck_assert_msg(lost == 0 && unknown == 0, "%s: lost_events %lld, unknown_frees %lld", what,
	              lost, unknown);
	h_ctl_free(&top);
	h_ctl_free(&st);
	/* stats' current and blocks are the book's plus what top gives to
	 * other files. */
	assert_stats_consistent(pid, t, &s, what);
}

/*
 * tests/progs/exiter allocates about 2,800 events' worth of known blocks in
 * two threads and ends right after its last allocation: by _exit, by the
 * exit_group system call, by raise(SIGKILL), or (external) it says "ready"
 * and the test SIGKILLs it at once. Nothing in the process runs after that,
 * so whatever the agent still held must reach the daemon anyway: the exit
 * statistics hold every block, exactly, in every one of EXIT_RUNS runs of
 * each way. _i runs over mode x run, the modes interleaved.
 */
START_TEST(exit_modes)
{
	const int m = _i % EXIT_MODES;
	const bool killed = m >= 2;
	const char *args[] = {exit_mode_names[m], NULL};
	char *what =
	    h_strf("exiter %s, run %d of %d", exit_mode_names[m], _i / EXIT_MODES + 1, EXIT_RUNS);
	struct h_proc p;
	struct h_truth *t;
	long pid;
	int st;

	h_prog_start(&p, &D, "exiter", args, H_NOUID, NULL);
	pid = (long)p.pid;
	if (strcmp(exit_mode_names[m], "external") == 0) {
		/* "ready" comes after the last allocation: kill it right away. */
		h_proc_expect_ready(&p);
		ck_assert_int_eq(kill(p.pid, SIGKILL), 0);
	}
	st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && (killed ? WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL
	                                  : WIFEXITED(st) && WEXITSTATUS(st) == 0),
	              "%s: %s; stderr: %.1500s", what, h_status_str(st),
	              p.err.data ? p.err.data : "");
	t = h_truth_must(p.truth);
	ck_assert_int_eq(t->pid, pid);
	ck_assert_msg(h_truth_count(t) >= 1000, "%s: the book holds only %lld blocks", what,
	              h_truth_count(t));
	assert_exit_exact(pid, t, what);
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(what);
}
END_TEST

/* tests/progs/gocgo, built when configure found go (Makefile.am). */
#define GOCGO_PROG "gocgoprog"

static bool gocgo_built(void)
{
	char *path = h_prog(GOCGO_PROG);
	bool ok = access(path, X_OK) == 0;
	free(path);
	return ok;
}

/*
 * A Go program whose cgo preamble mallocs at one line, called from Go with
 * known sizes, a quarter freed again, and which ends with os.Exit(0): the
 * Go runtime's raw exit_group, no libc exit. Its C site holds exactly the
 * book's bytes and count at exit; the Go runtime's own mallocs (runtime/cgo)
 * are at sites in other files.
 */
START_TEST(go_cgo_exit)
{
	char *what = h_strf("Go program with cgo, run %d", _i + 1);
	struct h_proc p;
	struct h_truth *t;
	long pid;
	int st;

	h_prog_start(&p, &D, GOCGO_PROG, NULL, H_NOUID, NULL);
	pid = (long)p.pid;
	st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s; stderr: %.1500s",
	              what, h_status_str(st), p.err.data ? p.err.data : "");
	t = h_truth_must(p.truth);
	ck_assert_int_eq(t->pid, pid);
	ck_assert_msg(t->nrecs == 1 && h_truth_count(t) == 300,
	              "%s: the book has %d sites, %lld blocks", what, t->nrecs, h_truth_count(t));
	assert_exit_exact(pid, t, what);
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(what);
}
END_TEST

/* MEMTRACE_SAMPLE: with a sampling rate of 4096 bytes, 20,000 held blocks
 * of 100 bytes (2,000,000 bytes, plus the program's 160,000-byte array of
 * pointers to them, 39 rates, so sampled with a probability of 1 - 10^-17
 * and weighed at its size) are estimated, not counted: each block is
 * sampled with probability p = 1 - exp(-100/4096) and a sampled one stands
 * for 100/p bytes. About 483 samples are expected; the estimate's standard
 * deviation is about 90,000 bytes (4.5 %), and the test accepts 25 %, so an
 * unweighted count (about 49 KB) or an unsampled one cannot pass by luck,
 * and a correct estimate fails about once in 10^7 runs. sampling_unbiased
 * holds the estimator to its statistical bound. */
START_TEST(sampling_estimates)
{
	const char *const env[] = {"MEMTRACE_SAMPLE=4096", NULL};
	struct h_proc p;
	struct h_ctl r;
	char pid[32], line[128];
	long long cur0 = 0, cur1 = 0, blocks1 = 0, samples1 = 0, sample = 0;

	h_prog_start(&p, &D, "churn", NULL, H_NOUID, env);
	h_proc_expect_ready(&p);
	snprintf(pid, sizeof pid, "%ld", (long)p.pid);
	const char *const stats[] = {"stats", "--pid", pid, NULL};
	h_await_traced(&D, H_NOUID, (long)p.pid);
	h_ctl_ok(&D, H_NOUID, &r, stats);
	h_json_int(r.json, "current", &cur0);
	ck_assert(h_json_int(r.json, "sample_bytes", &sample));
	ck_assert_int_eq(sample, 4096);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "hold 20000 100"), 0);
	ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 60000), 1);
	long long t0 = h_now_ms(), want = 2000000 + 20000 * (long long)sizeof(void *);
	for (;;) {
		h_ctl_ok(&D, H_NOUID, &r, stats);
		h_json_int(r.json, "current", &cur1);
		h_json_int(r.json, "blocks", &blocks1);
		h_json_int(cJSON_GetObjectItemCaseSensitive(r.json, "sampled"), "samples",
		           &samples1);
		h_ctl_free(&r);
		if (cur1 - cur0 > want * 3 / 4 || h_now_ms() - t0 > 5000)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	long long est = cur1 - cur0;
	ck_assert_msg(est >= want * 3 / 4 && est <= want * 5 / 4,
	              "sampled estimate of %lld held bytes is %lld (%lld blocks sampled)", want,
	              est, samples1);
	/* "blocks" is the estimate of the blocks; the blocks the daemon
	 * tracks are the samples. */
	ck_assert_msg(samples1 > 0 && samples1 < 20000 / 4, "%lld blocks tracked: not sampled",
	              samples1);
	ck_assert_msg(blocks1 >= 20000 * 3 / 4 && blocks1 <= 20000 * 5 / 4 + 100,
	              "estimated %lld blocks for the 20,000 held", blocks1);
	/* 100,000 malloc/free pairs and 100,000 realloc(NULL)/free pairs of
	 * 32 bytes (about 1,560 of them sampled): the agent sends the frees of
	 * the sampled blocks only, and every one of them. So the daemon sees
	 * no free of a block it does not know (before: about 198,000), and
	 * tracks the held samples again, exactly, once all is read. */
	const char *const churns[] = {"churn 100000", "rchurn 100000"};
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(h_proc_send(&p, churns[i]), 0);
		ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 60000), 1);
	}
	long long samples2 = -1, unknown = -1, frees = -1;
	t0 = h_now_ms();
	do {
		h_ctl_ok(&D, H_NOUID, &r, stats);
		h_json_int(cJSON_GetObjectItemCaseSensitive(r.json, "sampled"), "samples",
		           &samples2);
		h_json_int(r.json, "unknown_frees", &unknown);
		h_json_int(r.json, "frees", &frees);
		h_ctl_free(&r);
		if (samples2 == samples1 && unknown == 0 && frees > 0)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	} while (h_now_ms() - t0 < 5000);
	ck_assert_msg(unknown == 0,
	              "the daemon saw %lld frees of blocks it never saw: unsampled frees were sent",
	              unknown);
	ck_assert_msg(samples2 == samples1,
	              "%lld samples tracked after the churn, %lld before: a sampled free was lost",
	              samples2, samples1);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "churn did not exit");
	h_proc_cleanup(&p);
}
END_TEST

/*
 * MEMTRACE_SAMPLE is unbiased (tests/progs/sampler.c). At a rate R of 4096
 * bytes the program holds, each from a site of its own, 32,000 blocks of
 * R/4, 5,000 of R, 1,200 of 4 R and 6,000 of a mix (R/16 .. 4 R). A block
 * of s bytes is sampled with p = 1 - exp(-s/R) and a sampled one stands for
 * s/p bytes and 1/p blocks, so the estimate of a site's bytes has variance
 * sum(s^2 (1-p)/p) and of its blocks sum((1-p)/p), computed here from the
 * sizes the book (and the program's rule for the mix) says were allocated.
 * Each site's estimates must lie within 4.5 standard deviations of the
 * truth, and, since each class gets well over 1,000 samples (6,300, 3,200,
 * 1,180, 3,150 expected), within 5 % too: the counts above make 4.5
 * standard deviations at most 5 %. The old weighting (max(size, rate))
 * reads 0.25 R blocks 14 % high and R blocks 37 % low; an unweighted count
 * reads them 78 % and 37 % low. The samples themselves are binomial: their
 * number must lie within 4.5 standard deviations of sum(p).
 *
 * Then every answer says the figures are estimates: "sampled" in stats
 * (with the samples), top, traceback, list, and in a stored snapshot's and
 * a snapshot file's answers; the --table renderings print "estimated from
 * samples every 4096 bytes". The largest blocks keep their true sizes.
 * Finally the program frees every class: its sites vanish and stats moves
 * back by exactly what was allocated in between, the markers (always
 * sampled, weighing their size), so every free subtracted what its
 * allocation added. Each poll waits for a marker that the program
 * allocates after the blocks it checks: events arrive in order.
 */
#define S_RATE 4096
#define S_K    4.5 /* standard deviations */

struct sclass {
	const char *func;
	long n;
	long mix16[6]; /* sizes in sixteenths of the rate, cycled */
	int nsizes;
};

static const struct sclass sclasses[] = {
    {"hold_quarter", 32000, {4}, 1},
    {"hold_one", 5000, {16}, 1},
    {"hold_four", 1200, {64}, 1},
    {"hold_mix", 6000, {1, 4, 8, 16, 32, 64}, 6},
};

/* The book's record of the site in `func`, or NULL. */
static const struct h_rec *srec(const struct h_truth *t, const char *func)
{
	for (int i = 0; i < t->nrecs; i++)
		if (strcmp(t->recs[i].f[0].func, func) == 0)
			return &t->recs[i];
	return NULL;
}

/* The statistic of a `top --key lineno` answer at the site of `func`'s
 * record, or NULL. */
static const cJSON *sstat(const cJSON *top, const struct h_truth *t, const char *func)
{
	const struct h_rec *rec = srec(t, func);
	const cJSON *stat;

	if (rec == NULL)
		return NULL;
	cJSON_ArrayForEach(stat, cJSON_GetObjectItemCaseSensitive(top, "stats"))
	{
		const cJSON *tb = cJSON_GetObjectItemCaseSensitive(stat, "traceback");
		struct h_rframe f;
		if (h_rframe_get(cJSON_GetArrayItem(tb, 0), &f) &&
		    h_file_matches(f.file, rec->f[0].file) && f.line == rec->f[0].line)
			return stat;
	}
	return NULL;
}

struct smark {
	const struct h_truth *t;
	const char *func;
};

/* Accepts a top answer once the marker's 64 R block shows, exactly. */
static char *smark_cb(const cJSON *json, void *arg)
{
	const struct smark *m = arg;
	const cJSON *st = sstat(json, m->t, m->func);
	long long size = 0, count = 0;

	if (st != NULL && h_json_int(st, "size", &size) && h_json_int(st, "count", &count) &&
	    size == 64 * S_RATE && count == 1)
		return NULL;
	return h_strf("%s: %lld bytes in %lld blocks, not yet one block of %d", m->func, size,
	              count, 64 * S_RATE);
}

/* Polls `top --pid P --key lineno --limit 0` until `func`'s marker shows. */
static void swait_marker(struct h_ctl *r, const char *pid, const struct h_truth *t,
                         const char *func)
{
	const char *const args[] = {"top", "--pid", pid, "--key", "lineno", "--limit", "0", NULL};
	struct smark m = {t, func};
	char *why = h_ctl_poll(&D, H_NOUID, r, smark_cb, &m, args);

	ck_assert_msg(why == NULL, "marker %s never showed: %s", func, why);
}

/* "sampled": {"rate": S_RATE, ...} in an answer or a list entry. */
static void assert_sampled(const cJSON *o, const char *what)
{
	long long rate = 0;

	ck_assert_msg(h_json_int(cJSON_GetObjectItemCaseSensitive(o, "sampled"), "rate", &rate) &&
	                  rate == S_RATE,
	              "%s does not say it is estimated from samples every %d bytes: %.500s", what,
	              S_RATE, cJSON_PrintUnformatted(o));
}

/* `memtracectl --table ARGS` prints the estimate line. */
static void assert_table_says(const char *const *args, const char *what)
{
	const char *targs[12] = {"--table"};
	struct h_ctl r;
	size_t n = 1;
	char phrase[64];

	for (; args[n - 1] != NULL && n < 11; n++)
		targs[n] = args[n - 1];
	targs[n] = NULL;
	snprintf(phrase, sizeof phrase, "estimated from samples every %d bytes", S_RATE);
	h_ctl_run(&D, H_NOUID, &r, targs);
	ck_assert_msg(r.status == 0 && r.out != NULL && strstr(r.out, phrase) != NULL,
	              "%s --table: no \"%s\" in:\n%.2000s", what, phrase, r.out ? r.out : "");
	h_ctl_free(&r);
}

/* Each class's estimate against the book, within S_K standard deviations
 * (and 5 % for bytes); returns the expected number of samples and its variance. */
static void assert_classes(const cJSON *top, const struct h_truth *t, const char *what,
                           double *samples, double *samples_var)
{
	for (size_t c = 0; c < sizeof sclasses / sizeof sclasses[0]; c++) {
		const struct sclass *k = &sclasses[c];
		const struct h_rec *rec = srec(t, k->func);
		const cJSON *st = sstat(top, t, k->func);
		double bytes = 0, var_b = 0, var_n = 0;
		long long size = -1, count = -1;

		for (long i = 0; i < k->n; i++) {
			double sz = (double)S_RATE * (double)k->mix16[i % k->nsizes] / 16;
			double p = -expm1(-sz / S_RATE);
			bytes += sz;
			var_b += sz * sz * (1 - p) / p;
			var_n += (1 - p) / p;
			*samples += p;
			*samples_var += p * (1 - p);
		}
		ck_assert_msg(rec != NULL && rec->count == k->n && rec->bytes == (long long)bytes,
		              "%s: the book's %s is not %ld blocks of %.0f bytes", what, k->func,
		              k->n, bytes);
		ck_assert_msg(st != NULL && h_json_int(st, "size", &size) &&
		                  h_json_int(st, "count", &count),
		              "%s: no statistic for %s", what, k->func);
		double db = (double)size - bytes, dn = (double)(count - k->n);
		ck_assert_msg(fabs(db) <= S_K * sqrt(var_b) && fabs(db) <= 0.05 * bytes,
		              "%s: %s estimated at %lld bytes, true %.0f: %+.2f %%, %+.1f standard "
		              "deviations",
		              what, k->func, size, bytes, 100 * db / bytes, db / sqrt(var_b));
		/* Counts only within S_K deviations: a count's deviation is not
		 * small against 5 % for a class of small blocks (hold_mix's
		 * 6,000 blocks of 1/16..4 rates have sd 146, so 5 % is 2 sd). */
		ck_assert_msg(
		    fabs(dn) <= S_K * sqrt(var_n) + 0.5,
		    "%s: %s estimated at %lld blocks, true %ld: %+.1f standard deviations", what,
		    k->func, count, k->n, dn / sqrt(var_n));
	}
}

START_TEST(sampling_unbiased)
{
	const char *const env[] = {"MEMTRACE_SAMPLE=4096", NULL};
	const char *const args[] = {"4096", "32000", "5000", "1200", "6000", NULL};
	struct h_proc p;
	struct h_ctl r, top;
	struct h_truth *t;
	char pid[32], line[128], id[32];
	long long cur0, blocks0, samples0, cur, blocks, samples, v;
	double want_samples = 0, samples_var = 0;

	h_prog_start(&p, &D, "sampler", args, H_NOUID, env);
	h_proc_expect_ready(&p);
	snprintf(pid, sizeof pid, "%ld", (long)p.pid);
	const char *const stats[] = {"stats", "--pid", pid, NULL};
	t = h_truth_must(p.truth);
	swait_marker(&top, pid, t, "mark_start");
	h_ctl_free(&top);
	h_truth_free(t);
	h_ctl_ok(&D, H_NOUID, &r, stats);
	ck_assert(h_json_int(r.json, "current", &cur0) && h_json_int(r.json, "blocks", &blocks0));
	ck_assert(h_json_int(r.json, "sample_bytes", &v) && v == S_RATE);
	assert_sampled(r.json, "stats");
	ck_assert(
	    h_json_int(cJSON_GetObjectItemCaseSensitive(r.json, "sampled"), "samples", &samples0));
	h_ctl_free(&r);

	/* The estimates. */
	ck_assert_int_eq(h_proc_send(&p, "hold"), 0);
	ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 60000), 1);
	ck_assert_str_eq(line, "done");
	t = h_truth_must(p.truth);
	swait_marker(&top, pid, t, "mark_held");
	assert_sampled(top.json, "top");
	assert_classes(top.json, t, "live", &want_samples, &samples_var);
	h_ctl_ok(&D, H_NOUID, &r, stats);
	ck_assert(
	    h_json_int(cJSON_GetObjectItemCaseSensitive(r.json, "sampled"), "samples", &samples));
	h_ctl_free(&r);
	/* Less mark_held, which is sampled for certain. */
	double got = (double)(samples - samples0 - 1);
	ck_assert_msg(got >= 1000 && fabs(got - want_samples) <= S_K * sqrt(samples_var),
	              "%.0f blocks sampled, %.0f expected (standard deviation %.0f)", got,
	              want_samples, sqrt(samples_var));

	/* Every answer says so, and the largest blocks are true sizes: the
	 * two markers, then blocks of 4 R (a weighed one would be more). */
	const char *const tb[] = {"traceback", "--pid", pid, "--limit", "6", NULL};
	h_ctl_ok(&D, H_NOUID, &r, tb);
	assert_sampled(r.json, "traceback");
	const cJSON *blk = cJSON_GetObjectItemCaseSensitive(r.json, "blocks");
	ck_assert_int_eq(cJSON_GetArraySize(blk), 6);
	for (int i = 0; i < 6; i++) {
		ck_assert(h_json_int(cJSON_GetArrayItem(blk, i), "size", &v));
		ck_assert_msg(v == (i < 2 ? 64 : 4) * S_RATE, "block %d has %lld bytes", i, v);
	}
	h_ctl_free(&r);
	const char *const list[] = {"list", NULL};
	h_ctl_ok(&D, H_NOUID, &r, list);
	const cJSON *entry = h_list_find(r.json, (long)p.pid);
	ck_assert_msg(entry != NULL, "list lacks pid %s", pid);
	assert_sampled(entry, "list");
	h_ctl_free(&r);
	const char *const topargs[] = {"top", "--pid", pid, NULL};
	assert_table_says(stats, "stats");
	assert_table_says(topargs, "top");
	assert_table_says(tb, "traceback");
	assert_table_says(list, "list");

	/* A stored snapshot and a snapshot file keep the rate. */
	char *file = h_daemon_file(&D, "sampled.json");
	const char *const snap[] = {"snapshot", "--pid", pid, "-o", file, NULL};
	h_ctl_ok(&D, H_NOUID, &r, snap);
	ck_assert(h_json_int(r.json, "id", &v));
	assert_sampled(r.json, "snapshot");
	snprintf(id, sizeof id, "%lld", v);
	h_ctl_free(&r);
	const char *const refs[2] = {id, file};
	for (int i = 0; i < 2; i++) {
		const char *const stop[] = {"top", "--snapshot", refs[i], "--limit", "0", NULL};
		const char *const sstats[] = {"stats", "--snapshot", refs[i], NULL};
		const char *const stb[] = {"traceback", "--snapshot", refs[i], NULL};
		double unused = 0, unused_var = 0;
		h_ctl_ok(&D, H_NOUID, &r, stop);
		assert_sampled(r.json, "top --snapshot");
		/* The same heap as the live answer's, so the same estimates. */
		assert_classes(r.json, t, refs[i], &unused, &unused_var);
		h_ctl_free(&r);
		h_ctl_ok(&D, H_NOUID, &r, sstats);
		assert_sampled(r.json, "stats --snapshot");
		ck_assert(h_json_int(r.json, "sample_bytes", &v) && v == S_RATE);
		h_ctl_free(&r);
		h_ctl_ok(&D, H_NOUID, &r, stb);
		assert_sampled(r.json, "traceback --snapshot");
		h_ctl_free(&r);
		assert_table_says(stop, "top --snapshot");
		assert_table_says(sstats, "stats --snapshot");
	}
	free(file);
	h_ctl_free(&top);
	h_truth_free(t);

	/* Frees take away exactly what the allocations added. */
	ck_assert_int_eq(h_proc_send(&p, "free"), 0);
	ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 60000), 1);
	ck_assert_str_eq(line, "done");
	t = h_truth_must(p.truth);
	swait_marker(&top, pid, t, "mark_freed");
	for (size_t c = 0; c < sizeof sclasses / sizeof sclasses[0]; c++)
		ck_assert_msg(sstat(top.json, t, sclasses[c].func) == NULL,
		              "%s still has a statistic after every block was freed",
		              sclasses[c].func);
	h_ctl_free(&top);
	h_truth_free(t);
	h_ctl_ok(&D, H_NOUID, &r, stats);
	ck_assert(h_json_int(r.json, "current", &cur) && h_json_int(r.json, "blocks", &blocks));
	ck_assert(
	    h_json_int(cJSON_GetObjectItemCaseSensitive(r.json, "sampled"), "samples", &samples));
	h_ctl_free(&r);
	ck_assert_msg(cur == cur0 + 2 * 64 * S_RATE && blocks == blocks0 + 2 &&
	                  samples == samples0 + 2,
	              "after the frees: current %lld, blocks %lld, samples %lld; before the "
	              "blocks: %lld, %lld, %lld, and two markers of %d bytes since",
	              cur, blocks, samples, cur0, blocks0, samples0, 64 * S_RATE);

	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "sampler did not exit");
	h_proc_cleanup(&p);
}
END_TEST

/* ------------------------------------------ before the agent's constructor */

/* A library linked into the program allocates in its constructor, which the
 * loader runs before the agent's: its blocks are traced with their sites,
 * and count in stats (current, peak) as the book says. With _i == 1 the
 * stacks are walked by frame pointers. */
START_TEST(ctor_allocations)
{
	const char *env_fp[] = {"MEMTRACE_UNWIND=fp", NULL};
	const char *what = _i == 0 ? "ctoruser (libunwind)" : "ctoruser (fp)";
	struct h_proc p;
	struct h_ctl r;
	struct stats s;

	h_prog_start(&p, &D, "ctoruser", NULL, H_NOUID, _i == 0 ? NULL : env_fp);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_FUNCTION, false, what);
	h_ctl_free(&r);
	assert_stats_consistent(t->pid, t, &s, what);
	ck_assert_msg(s.peak >= h_truth_bytes(t), "%s: peak %lld, but the book holds %lld", what,
	              s.peak, h_truth_bytes(t));
	get_stats(&r, t->pid, &s);
	ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "interposed")),
	              "%s: stats does not say interposed: true: %.800s", what, r.out);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, what);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* The constructor makes far more events than a ring holds before the agent's
 * constructor ran: the agent starts draining early and loses none. With
 * _i == 1 they are made by the constructor of a library it dlopens, with
 * the loader's lock held while the agent starts its thread. */
START_TEST(ctor_fills_ring)
{
	char *plugin = h_prog(".libs/libplugin.so");
	char *dl = h_strf("CTORLIB_DLOPEN=%s", plugin);
	const char *env_ctor[] = {"CTORLIB_CHURN=100000", NULL};
	const char *env_dlopen[] = {dl, "PLUGIN_CTOR_CHURN=100000", NULL};
	struct h_proc p;
	struct h_ctl r;
	struct stats s;
	long long allocs, frees, lost;

	h_prog_start(&p, &D, "ctoruser", NULL, H_NOUID, _i == 0 ? env_ctor : env_dlopen);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	long long churn = h_truth_meta(t, "ctor_churn", -1);
	ck_assert_int_eq(churn, 100000);
	assert_stats_consistent(t->pid, t, &s, "ctoruser with churn");
	get_stats(&r, t->pid, &s);
	ck_assert(h_json_int(r.json, "allocations", &allocs) &&
	          h_json_int(r.json, "frees", &frees) && h_json_int(r.json, "lost_events", &lost));
	ck_assert_msg(allocs >= churn + t->nrecs && frees >= churn && lost == 0,
	              "ctoruser made %lld allocations and frees in a constructor; stats says "
	              "allocations %lld frees %lld lost_events %lld",
	              churn, allocs, frees, lost);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "ctoruser with churn");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(dl);
	free(plugin);
}
END_TEST

struct pool_arg {
	long long size; /* the pool's documented size, or 0 when unknown */
};

/* A live block whose allocation site is in libstdc++ (its constructor's
 * emergency pool), of the documented size when it is known. */
static char *check_pool_cb(const cJSON *json, void *arg)
{
	const struct pool_arg *a = arg;
	const cJSON *st;
	char *why = NULL;

	cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(json, "stats"))
	{
		const cJSON *f0 =
		    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "traceback"), 0);
		const char *mod = h_json_str(f0, "module");
		long long size, count;
		if (mod == NULL || strstr(mod, "libstdc++") == NULL)
			continue;
		if (!h_json_int(st, "size", &size) || !h_json_int(st, "count", &count))
			return h_strf("malformed statistic");
		if (a->size == 0 || (size == a->size && count == 1))
			return NULL;
		h_append(&why,
		         "libstdc++ holds %lld bytes in %lld blocks at %s, expected one block "
		         "of %lld",
		         size, count, h_json_str(f0, "function"), a->size);
	}
	return why != NULL ? why : h_strf("no live block allocated in libstdc++");
}

/* libstdc++'s constructor allocates its emergency exception pool before the
 * agent's constructor runs: the block is there, allocated in libstdc++. */
START_TEST(cxx_startup_pool)
{
	struct h_proc p;
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"top", "--pid", pidbuf, "--key", "traceback", "--limit", "0", NULL};

	h_prog_start(&p, &D, "cxxstart", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	struct pool_arg a = {h_truth_meta(t, "eh_pool_bytes", 0)};
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_pool_cb, &a, args);
	ck_assert_msg(why == NULL, "cxxstart: %s: %.2000s", why, r.out);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "cxxstart");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

static char *check_idle_cb(const cJSON *json, void *arg)
{
	long long allocs;
	const char *st = h_json_str(json, "state");
	(void)arg;

	if (st == NULL || strcmp(st, "live") != 0 || !h_json_int(json, "allocations", &allocs))
		return h_strf("not live, or no allocations count");
	return allocs == 0 ? NULL : h_strf("%lld allocations, the program made none", allocs);
}

/* A traced process is listed from its start, before it allocates anything. */
START_TEST(listed_before_first_allocation)
{
	char *path = h_prog("idle");
	const char *argv[] = {path, NULL};
	struct h_spawn sp = {.argv = argv, .agent = true, .runtime_dir = D.runtime, .uid = H_NOUID};
	const char *list[] = {"list", NULL};
	char pidbuf[24], line[64];
	const char *stats[] = {"stats", "--pid", pidbuf, NULL};
	struct h_proc p;
	struct h_ctl r;

	h_proc_start(&p, &sp);
	ck_assert_msg(h_proc_readline(&p, line, sizeof line, H_START_MS) == 1 &&
	                  strcmp(line, "waiting") == 0,
	              "idle did not say waiting: %s", p.err.data ? p.err.data : "");
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_idle_cb, NULL, stats);
	ck_assert_msg(why == NULL, "idle (pid %ld): %s: %.800s", (long)p.pid, why, r.out);
	h_ctl_free(&r);
	h_ctl_ok(&D, H_NOUID, &r, list);
	ck_assert_msg(h_list_find(r.json, p.pid) != NULL, "list lacks idle (pid %ld): %.800s",
	              (long)p.pid, r.out);
	h_ctl_free(&r);
	h_proc_end(&p, "idle");
	h_proc_cleanup(&p);
	free(path);
}
END_TEST

/* Runs `prog BEHAVE_CODE` with the extra environment `env` on daemon D, as
 * run_behave does (it waits for "waiting", then lets it go on). */
static void run_behave_env(struct run_out *o, const char *prog, const char *const *env)
{
	char *path = h_prog(prog);
	const char *argv[] = {path, BEHAVE_CODE, NULL};
	struct h_spawn sp = {.argv = argv, .env = env, .uid = H_NOUID};
	struct h_proc p;
	char line[256];
	int rc;

	h_proc_start(&p, &sp);
	o->pid = p.pid;
	do {
		rc = h_proc_readline(&p, line, sizeof line, H_START_MS);
	} while (rc == 1 && strcmp(line, "waiting") != 0);
	ck_assert_msg(rc == 1, "%s never said \"waiting\"; stderr: %.1000s", prog,
	              p.err.data ? p.err.data : "");
	ck_assert_int_eq(h_proc_send(&p, "go"), 0);
	h_proc_close_stdin(&p);
	o->status = h_proc_finish(&p, 60000);
	o->out = h_strf("%s", p.out.data ? p.out.data : "");
	o->err = h_strf("%s", p.err.data ? p.err.data : "");
	h_proc_cleanup(&p);
	free(path);
}

static char *check_bypassed_cb(const cJSON *json, void *arg)
{
	const cJSON *ip = cJSON_GetObjectItemCaseSensitive(json, "interposed");
	(void)arg;

	if (!cJSON_IsBool(ip))
		return h_strf("stats has no boolean \"interposed\"");
	if (!cJSON_IsFalse(ip))
		return h_strf("stats says interposed: true");
	if (h_json_str(json, "warning") == NULL)
		return h_strf("stats has no \"warning\"");
	return NULL;
}

/*
 * behave with an allocator that comes before the agent: `first` preloaded
 * ahead of it, or (first == NULL) `prog` having its own malloc linked in. The
 * program runs as it does untraced, stderr has one line more, from memtrace,
 * saying the hooks are bypassed, and stats says interposed: false.
 */
static void assert_bypassed(const char *prog, const char *first, const char *what)
{
	char *preload = first != NULL ? h_strf("LD_PRELOAD=%s:%s", first, h_agent_lib())
	                              : h_strf("LD_PRELOAD=%s", h_agent_lib());
	char *rt = h_strf("MEMTRACE_RUNTIME_DIR=%s", D.runtime);
	char *plain_pre = first != NULL ? h_strf("LD_PRELOAD=%s", first) : NULL;
	const char *env[] = {preload, rt, NULL};
	const char *plain[] = {plain_pre, NULL};
	struct run_out base, o;
	struct h_ctl r;
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};

	/* The baseline has the other allocator too, without the agent. */
	run_behave_env(&base, prog, plain);
	ck_assert_msg(base.status != -1 && WIFEXITED(base.status) &&
	                  WEXITSTATUS(base.status) == atoi(BEHAVE_CODE),
	              "%s without the agent: %s", what, h_status_str(base.status));
	run_behave_env(&o, prog, env);
	assert_same(&base, &o, what);
	assert_stderr(&base, &o, 1, 1, what);
	ck_assert_msg(strstr(o.err, "bypassed") != NULL, "%s: stderr does not say bypassed: %s",
	              what, o.err);
	snprintf(pidbuf, sizeof pidbuf, "%ld", o.pid);
	char *why = h_ctl_poll(&D, H_NOUID, &r, check_bypassed_cb, NULL, args);
	ck_assert_msg(why == NULL, "%s: %s: %.800s", what, why, r.out);
	h_ctl_free(&r);
	run_out_free(&base);
	run_out_free(&o);
	free(preload);
	free(rt);
	free(plain_pre);
}

START_TEST(bypassed_by_preload)
{
	char *lib = h_prog(".libs/libfirstalloc.so");
	assert_bypassed("behave", lib, "libfirstalloc preloaded first");
	free(lib);
}
END_TEST

START_TEST(bypassed_by_linked_allocator)
{
	assert_bypassed("ownalloc", NULL, "an allocator linked into the program");
}
END_TEST

/* Debian's jemalloc, where it is installed (scripts/deps.sh test). */
static const char *jemalloc_path(void)
{
	static const char *const paths[] = {"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
	                                    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
	                                    "/usr/lib64/libjemalloc.so.2",
	                                    "/usr/lib/libjemalloc.so.2"};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		if (access(paths[i], R_OK) == 0)
			return paths[i];
	return NULL;
}

START_TEST(bypassed_by_jemalloc)
{
	assert_bypassed("behave", jemalloc_path(), "jemalloc preloaded first");
}
END_TEST

/* A position-dependent program that takes malloc's address has a PLT entry
 * where dlsym finds "malloc"; its calls reach the agent all the same, so it
 * is traced and not reported as bypassed. */
START_TEST(not_bypassed_by_plt_entry)
{
	struct h_proc p;
	struct h_ctl r;
	struct stats s;

	h_prog_start(&p, &D, "mallocptr", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, "mallocptr");
	h_ctl_free(&r);
	get_stats(&r, t->pid, &s);
	ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "interposed")),
	              "mallocptr: stats does not say interposed: true: %.800s", r.out);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "mallocptr");
	ck_assert_msg(p.err.data == NULL || strstr(p.err.data, "memtrace") == NULL,
	              "mallocptr: the agent said something: %s", p.err.data);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* `memtracectl run` on a statically linked program: one line says it cannot
 * be traced, and the program runs as it would, with its exit status. */
START_TEST(static_program_via_run)
{
	char *path = h_prog("staticprog");
	const char *argv[] = {h_client_bin(),
	                      "--runtime-dir",
	                      D.runtime,
	                      "run",
	                      "--agent",
	                      h_agent_lib(),
	                      "--top",
	                      "5",
	                      "--",
	                      path,
	                      "7",
	                      NULL};
	struct h_spawn sp = {.argv = argv, .uid = H_NOUID};
	struct h_proc p;

	h_proc_start(&p, &sp);
	h_proc_close_stdin(&p);
	int status = h_proc_finish(&p, 30000);
	const char *out = p.out.data ? p.out.data : "", *err = p.err.data ? p.err.data : "";
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 7,
	              "memtracectl run staticprog 7: %s; stderr: %s", h_status_str(status), err);
	ck_assert_msg(strcmp(out, "staticprog: 7\n") == 0, "stdout: %s", out);
	const char *nl = strchr(err, '\n');
	ck_assert_msg(nl != NULL && nl[1] == '\0' && strstr(err, "statically linked") != NULL &&
	                  strstr(err, "memtracectl") != NULL,
	              "stderr is not one line saying it is statically linked: %s", err);
	h_proc_cleanup(&p);
	free(path);
}
END_TEST

/* -------------------------------------------- 7: descendants, run, fds */

/* Lines of `text` that mention memtrace. */
static int memtrace_lines(const char *text)
{
	int n = 0;

	for (const char *l = text; l != NULL && *l != '\0';) {
		const char *end = strchr(l, '\n');
		size_t len = end != NULL ? (size_t)(end - l) : strlen(l);
		char *line = h_strf("%.*s", (int)len, l);
		n += strcasestr(line, "memtrace") != NULL;
		free(line);
		l = end != NULL ? end + 1 : NULL;
	}
	return n;
}

/* The pids of a `list` answer that are not `pid`, as a string ("" if none);
 * *count gets the number of entries. */
static char *list_others(long pid, int *count)
{
	const char *args[] = {"list", NULL};
	const cJSON *pr;
	struct h_ctl r;
	char *others = h_strf("%s", "");

	*count = 0;
	h_ctl_ok(&D, H_NOUID, &r, args);
	cJSON_ArrayForEach(pr, cJSON_GetObjectItemCaseSensitive(r.json, "processes"))
	{
		long long p = -1;
		h_json_int(pr, "pid", &p);
		(*count)++;
		if (p != pid) {
			char *more = h_strf("%s %lld", others, p);
			free(others);
			others = more;
		}
	}
	h_ctl_free(&r);
	return others;
}

/* A leaf of spawner: its own session with exactly its book when followed,
 * none otherwise; whether its LD_PRELOAD still named the agent and whether
 * the agent was loaded in it. */
static void check_leaf(const struct h_proc *p, const struct h_truth *t, const char *meta,
                       bool follow, int want_mapped, const char *what)
{
	long long pid = h_truth_meta(t, meta, -1);
	struct h_truth *tl;
	struct h_ctl r;
	char *label;

	ck_assert_msg(pid > 0, "%s: no %s in the book", what, meta);
	tl = child_truth(p, pid);
	label = h_strf("%s: %s (pid %lld)", what, meta, pid);
	if (follow) {
		top_simple(&r, pid, tl, H_KEY_LINENO, false, label);
		h_ctl_free(&r);
	} else {
		assert_no_session(pid, label);
	}
	ck_assert_msg(h_truth_meta(tl, "preloaded", -1) == (follow ? 1 : 0),
	              "%s: LD_PRELOAD %s the agent", label, follow ? "lost" : "still names");
	ck_assert_msg(h_truth_meta(tl, "mapped", -1) == want_mapped, "%s: the agent was %sloaded",
	              label, want_mapped ? "not " : "");
	free(label);
	h_truth_free(tl);
}

/*
 * MEMTRACE_FOLLOW_FORK=0 (_i == 1) traces the process that was started and
 * the images it execs itself, and no descendant however it was started: a
 * forked child that execs, a shell that runs a program as its child,
 * posix_spawn; those that were forked do not even load the agent, and none
 * passes it on in LD_PRELOAD. By default (_i == 0) every one of them is
 * traced as its own process.
 */
START_TEST(follow_fork_descendants)
{
	const char *env_nofollow[] = {"MEMTRACE_FOLLOW_FORK=0", NULL};
	bool follow = _i == 0;
	const char *what = follow ? "descendants followed" : "MEMTRACE_FOLLOW_FORK=0";
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t, *t2;
	long long shell;
	char *others;
	int count;

	h_prog_start(&p, &D, "spawner", NULL, H_NOUID, follow ? NULL : env_nofollow);
	h_proc_expect_ready(&p);
	t = h_truth_must(p.truth);
	ck_assert_int_eq(t->pid, p.pid);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);

	check_leaf(&p, t, "leaf_exec", follow, follow, what);
	check_leaf(&p, t, "leaf_shell", follow, follow, what);
	check_leaf(&p, t, "leaf_spawn", follow, 1, what);
	shell = h_truth_meta(t, "shell", -1);
	others = list_others(t->pid, &count);
	if (follow) {
		char *needle = h_strf(" %lld", shell);
		ck_assert_msg(strstr(others, needle) != NULL,
		              "%s: the shell (pid %lld) is not listed: others are%s", what, shell,
		              others);
		free(needle);
	} else {
		assert_no_session(shell, "MEMTRACE_FOLLOW_FORK=0: the shell");
		ck_assert_msg(count == 1 && others[0] == '\0',
		              "%s: `list` has %d entries, other pids:%s", what, count, others);
	}
	free(others);

	/* The image the traced process execs keeps its pid and is traced, as
	 * its own session; what it starts is not, without following. */
	ck_assert_int_eq(h_proc_send(&p, "exec"), 0);
	h_proc_expect_ready(&p);
	t2 = h_truth_must(p.truth);
	ck_assert_int_eq(t2->pid, t->pid);
	top_simple(&r, t->pid, t2, H_KEY_LINENO, false, "the exec'd image of the traced process");
	h_ctl_free(&r);
	check_leaf(&p, t2, "leaf_reborn", follow, 1, "after exec");
	if (!follow) {
		others = list_others(t->pid, &count);
		ck_assert_msg(count == 2 && others[0] == '\0',
		              "%s after exec: `list` has %d entries (the traced process and its "
		              "exec'd image expected), other pids:%s",
		              what, count, others);
		free(others);
	}

	h_proc_end(&p, what);
	ck_assert_msg(memtrace_lines(p.err.data) == 0, "%s: the agent spoke: %.2000s", what,
	              p.err.data);
	h_truth_free(t);
	h_truth_free(t2);
	h_proc_cleanup(&p);
}
END_TEST

/*
 * `memtracectl run` makes its PROG the process MEMTRACE_FOLLOW_FORK=0 traces,
 * even when memtracectl itself runs under the agent (and so was named the
 * traced process first): PROG is traced, its descendants are not.
 */
START_TEST(follow_fork_under_run)
{
	const char *env[] = {"MEMTRACE_FOLLOW_FORK=0", NULL};
	char *prog = h_prog("spawner");
	char *truth = h_daemon_file(&D, "spawner");
	const char *argv[] = {h_client_bin(),
	                      "--runtime-dir",
	                      D.runtime,
	                      "run",
	                      "--agent",
	                      h_agent_lib(),
	                      "--",
	                      prog,
	                      NULL};
	const char *what = "MEMTRACE_FOLLOW_FORK=0 under memtracectl run";
	struct h_spawn s = {.argv = argv,
	                    .agent = true,
	                    .runtime_dir = D.runtime,
	                    .truth = truth,
	                    .env = env,
	                    .uid = H_NOUID};
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t;
	char *others, *needle;
	int count;

	h_proc_start(&p, &s);
	p.truth = truth; /* the leaves' books are next to it; freed with p */
	h_proc_expect_ready(&p);
	t = h_truth_must(truth);
	ck_assert_msg(t->pid != p.pid, "%s: the book is memtracectl's", what);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	check_leaf(&p, t, "leaf_exec", false, 0, what);
	check_leaf(&p, t, "leaf_spawn", false, 1, what);
	/* memtracectl itself was started traced: it and PROG, nothing else. */
	others = list_others(t->pid, &count);
	needle = h_strf(" %ld", (long)p.pid);
	ck_assert_msg(count == 2 && strcmp(others, needle) == 0,
	              "%s: `list` has %d entries, other pids:%s (memtracectl is %ld)", what, count,
	              others, (long)p.pid);
	free(needle);
	free(others);
	h_proc_end(&p, what);
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(prog);
}
END_TEST

/* What leaker prints on stdout (tests/progs/leaker.c). */
#define LEAKER_LINES                                                                               \
	"leaker: first line of the program's own output\n"                                         \
	"leaker: { not JSON, but the program's }\n"                                                \
	"leaker: last line\n"

/*
 * `run --top 0`: the program's stdout is its own, exactly; the report goes to
 * stderr (_i == 0), or to -o FILE as JSON (_i == 1) or as the table (_i == 2),
 * and names exactly the program's leak sites.
 */
START_TEST(run_top_output)
{
	char *prog = h_prog("leaker");
	char *truth = h_daemon_file(&D, "leaker");
	char *file = h_daemon_file(&D, "report");
	const char *argv[16];
	const char *what = _i == 0   ? "run --top"
	                   : _i == 1 ? "run --top -o"
	                             : "run --top -o --table";
	size_t n = 0;
	struct h_spawn s;
	struct h_proc p;
	struct h_truth *t;
	char *report, *why;
	size_t len = 0;
	int st;

	argv[n++] = h_client_bin();
	argv[n++] = "--runtime-dir";
	argv[n++] = D.runtime;
	argv[n++] = "run";
	argv[n++] = "--agent";
	argv[n++] = h_agent_lib();
	argv[n++] = "--top";
	argv[n++] = "0";
	if (_i > 0) {
		argv[n++] = "-o";
		argv[n++] = file;
	}
	if (_i == 2)
		argv[n++] = "--table";
	argv[n++] = "--";
	argv[n++] = prog;
	argv[n] = NULL;
	memset(&s, 0, sizeof s);
	s.argv = argv;
	s.truth = truth;
	s.uid = H_NOUID;
	h_proc_start(&p, &s);
	st = h_proc_finish(&p, 60000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s; stderr: %.1500s",
	              what, h_status_str(st), p.err.data ? p.err.data : "");
	ck_assert_msg(strcmp(p.out.data != NULL ? p.out.data : "", LEAKER_LINES) == 0,
	              "%s: stdout is not the program's alone:\n%.3000s", what,
	              p.out.data ? p.out.data : "");
	t = h_truth_must(truth);
	if (_i == 0) {
		report = h_strf("%s", p.err.data != NULL ? p.err.data : "");
	} else {
		FILE *f = fopen(file, "r");
		ck_assert_msg(f != NULL, "%s: no report file %s", what, file);
		report = NULL;
		ck_assert_int_ne(getdelim(&report, &len, '\0', f), -1);
		fclose(f);
		ck_assert_msg(p.err.data == NULL || p.err.data[0] == '\0',
		              "%s: stderr is not empty: %.1500s", what, p.err.data);
	}
	if (_i < 2) {
		cJSON *json = cJSON_Parse(report);
		struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
		ck_assert_msg(json != NULL, "%s: the report is not one JSON object:\n%.3000s", what,
		              report);
		why = h_check_top(json, &e);
		ck_assert_msg(why == NULL, "%s: the leaks differ from the book:\n  %.3000s", what,
		              why);
		cJSON_Delete(json);
	} else {
		ck_assert_msg(strncmp(report, "Top ", 4) == 0, "%s: not the table:\n%.3000s", what,
		              report);
		for (int i = 0; i < t->nrecs; i++) {
			char *site = h_strf("leaker.c:%d:", t->recs[i].f[0].line);
			ck_assert_msg(strstr(report, site) != NULL,
			              "%s: the table lacks %s:\n%.3000s", what, site, report);
			free(site);
		}
	}
	free(report);
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(file);
	free(truth);
	free(prog);
}
END_TEST

/* `run --pid-file FILE`: FILE holds PROG's pid (the one its book and
 * memtraced know) while it runs, and after; a link or a FIFO planted at the
 * path is replaced, never opened. */
START_TEST(run_pid_file)
{
	char *prog = h_prog("attachee");
	char *truth = h_daemon_file(&D, "attachee");
	char *file = h_daemon_file(&D, "prog.pid");
	const char *argv[] = {h_client_bin(),
	                      "--runtime-dir",
	                      D.runtime,
	                      "run",
	                      "--agent",
	                      h_agent_lib(),
	                      "--pid-file",
	                      file,
	                      "--",
	                      prog,
	                      NULL};
	struct h_spawn sp;
	struct h_proc p;
	char line[64] = "";

	memset(&sp, 0, sizeof sp);
	sp.argv = argv;
	sp.truth = truth;
	sp.uid = H_NOUID;
	h_proc_start(&p, &sp);
	h_proc_expect_ready(&p);
	/* As a script does: until the file is there. */
	struct stat fst;
	for (long long until = h_now_ms() + H_POLL_MS; stat(file, &fst) != 0 && h_now_ms() < until;)
		h_sleep_ms(5);
	FILE *f = fopen(file, "r");
	ck_assert_msg(f != NULL && fgets(line, sizeof line, f) != NULL, "no pid in %s", file);
	fclose(f);
	struct h_truth *t = h_truth_must(truth);
	ck_assert_msg(atol(line) == t->pid && t->pid != p.pid && line[strlen(line) - 1] == '\n',
	              "--pid-file holds '%s', the program is pid %ld (memtracectl %ld)", line,
	              t->pid, (long)p.pid);
	line[strcspn(line, "\n")] = '\0';
	/* The file is there once memtraced knows the program: no wait. */
	const char *stats[] = {"stats", "--pid", line, NULL};
	struct h_ctl r;
	h_ctl_ok(&D, H_NOUID, &r, stats);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "run --pid-file");
	h_truth_free(t);
	h_proc_cleanup(&p);

	/* The file comes once memtraced knows the program, so a script may ask
	 * at once: with the daemon stopped it does not come; once the daemon
	 * runs again, the first question about the pid in the file is
	 * answered (no wait for the session). */
	/* A pid file of an earlier run is there: it goes before the
	 * program starts, so that the wait below never reads it. */
	FILE *stale = fopen(file, "w");
	ck_assert_ptr_nonnull(stale);
	fputs("12345\n", stale);
	fclose(stale);
	char *truth2 = h_daemon_file(&D, "attachee2");
	sp.truth = truth2;
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	h_proc_start(&p, &sp);
	h_sleep_ms(500);
	bool early = stat(file, &fst) == 0;
	ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
	ck_assert_msg(!early, "a pid file was there while memtraced, stopped, could not know "
	                      "the program (the earlier run's, or written too soon)");
	long long until = h_now_ms() + H_POLL_MS;
	while (stat(file, &fst) != 0 && h_now_ms() < until)
		h_sleep_ms(5);
	f = fopen(file, "r");
	ck_assert_msg(f != NULL && fgets(line, sizeof line, f) != NULL, "no pid in %s", file);
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	h_ctl_ok(&D, H_NOUID, &r, stats);
	h_ctl_free(&r);
	/* Nor does run hold a control connection while its program runs: the
	 * one status counts is status's own. */
	{
		const char *status[] = {"status", NULL};
		h_ctl_ok(&D, H_NOUID, &r, status);
		const cJSON *cc = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "limits"),
		                                      "control_connections");
		long long yours = -1;
		ck_assert_msg(
		    h_json_int(cc, "yours", &yours) && yours == 1,
		    "control connections of this uid while run waits for its program: %lld", yours);
		h_ctl_free(&r);
	}
	h_proc_expect_ready(&p);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "run --pid-file, the daemon stopped at the start");
	h_proc_cleanup(&p);
	free(truth2);

	/* A control socket that takes the question and never answers (a
	 * daemon hung, or a socket of root's that only reads, linked where
	 * the user's runtime directory is): the wait ends in its 5 s, the
	 * file is written, and nothing of the wait reaches PROG's stdout. */
	struct h_daemon mute = D;
	char *mdir = h_daemon_file(&D, "mute");
	ck_assert_int_eq(mkdir(mdir, 0700), 0);
	snprintf(mute.runtime, sizeof mute.runtime, "%s", mdir);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/control.sock", mdir);
	ck_assert_msg(ls >= 0 && bind(ls, (struct sockaddr *)&sun, sizeof sun) == 0 &&
	                  listen(ls, 8) == 0,
	              "a listening socket at %s: %s", sun.sun_path, strerror(errno));
	unlink(file);
	const char *echo[] = {"run", "--pid-file", file, "--", "/bin/echo", "PROG-OUTPUT", NULL};
	struct h_ctl er;
	h_ctl_run(&mute, H_NOUID, &er, echo);
	ck_assert_msg(er.status == 0 && strcmp(er.out, "PROG-OUTPUT\n") == 0,
	              "run --pid-file with a mute control socket: exit %d, stdout '%.500s'",
	              er.status, er.out);
	h_ctl_free(&er);
	ck_assert_msg(stat(file, &fst) == 0, "no pid file after the wait on a mute socket");
	close(ls);
	free(mdir);

	/* What another user may have put where the file goes (a shared
	 * directory): a link to a file of theirs, a FIFO. Neither is opened:
	 * the pid file replaces them, the link's target is untouched, and
	 * nothing waits on the FIFO. */
	char *target = h_daemon_file(&D, "target"), *marker = h_daemon_file(&D, "ran");
	FILE *tf = fopen(target, "w");
	ck_assert_ptr_nonnull(tf);
	fputs("precious\n", tf);
	fclose(tf);
	char *touch = h_strf("touch %s", marker);
	const char *args[] = {"run", "--pid-file", file, "--", "/bin/sh", "-c", touch, NULL};
	struct stat st;
	for (int k = 0; k < 2; k++) {
		unlink(file);
		unlink(marker);
		if (k == 0)
			ck_assert_int_eq(symlink(target, file), 0);
		else
			ck_assert_int_eq(mkfifo(file, 0666), 0);
		struct h_ctl rr;
		h_ctl_run(&D, H_NOUID, &rr, args);
		ck_assert_msg(rr.status == 0 && stat(marker, &st) == 0,
		              "run with a %s at the pid file's path: exit %d, %.500s",
		              k == 0 ? "link" : "FIFO", rr.status, rr.out);
		h_ctl_free(&rr);
		ck_assert_msg(lstat(file, &st) == 0 && S_ISREG(st.st_mode) &&
		                  (st.st_mode & 07777) == 0644,
		              "the pid file is not a 0644 regular file of its own");
		tf = fopen(file, "r");
		ck_assert_msg(tf != NULL && fgets(line, sizeof line, tf) != NULL && atol(line) > 0,
		              "no pid in the pid file");
		fclose(tf);
	}
	tf = fopen(target, "r");
	ck_assert_msg(tf != NULL && fgets(line, sizeof line, tf) != NULL &&
	                  strcmp(line, "precious\n") == 0,
	              "the link's target was written");
	fclose(tf);
	/* -o FILE does not wait on a FIFO either: refused at once. */
	char *fifo = h_daemon_file(&D, "report-fifo");
	ck_assert_int_eq(mkfifo(fifo, 0666), 0);
	const char *oargs[] = {"run", "--top", "1", "-o", fifo, "--", "/bin/true", NULL};
	h_ctl_error(&D, H_NOUID, oargs, "file_error");
	free(fifo);
	free(touch);
	free(target);
	free(marker);
	free(file);
	free(truth);
	free(prog);
}
END_TEST

/* A program started through a symbolic link, by a relative path: stats
 * and list name the file the kernel runs (exe) and, beside it, the path it
 * was started as (started_as: the link, made absolute), and its command
 * line as given, without trailing empty strings. */
START_TEST(exe_as_started)
{
	char *dir = h_daemon_file(&D, "bin");
	char *prog = h_prog("attachee");
	char *link = h_strf("%s/linked-prog", dir);
	char *truth = h_daemon_file(&D, "linked");
	char *script = h_strf("cd %s && exec ./linked-prog first ''", dir);
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	char real[PATH_MAX];
	struct h_spawn sp;
	struct h_proc p;
	struct h_ctl r;
	char pidbuf[24];

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(symlink(prog, link), 0);
	ck_assert_ptr_nonnull(realpath(prog, real));
	memset(&sp, 0, sizeof sp);
	sp.argv = argv;
	sp.agent = true;
	sp.runtime_dir = D.runtime;
	sp.truth = truth;
	sp.uid = H_NOUID;
	h_proc_start(&p, &sp);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
	wait_state(t->pid, "live");
	const char *stats[] = {"stats", "--pid", pidbuf, NULL};
	h_ctl_ok(&D, H_NOUID, &r, stats);
	const cJSON *exe = cJSON_GetObjectItem(r.json, "exe");
	const cJSON *as = cJSON_GetObjectItem(r.json, "started_as");
	const cJSON *cmd = cJSON_GetObjectItem(r.json, "cmdline");
	ck_assert_msg(cJSON_IsString(exe) && strcmp(exe->valuestring, real) == 0 &&
	                  cJSON_IsString(as) && strcmp(as->valuestring, link) == 0,
	              "want exe %s, started_as %s: %.1000s", real, link, r.out);
	/* Its arguments as given, but for the empty last one: trailing empty
	 * strings are what a title rewritten in place leaves, and dropped. */
	ck_assert_msg(cJSON_GetArraySize(cmd) == 2 &&
	                  strcmp(cJSON_GetArrayItem(cmd, 0)->valuestring, "./linked-prog") == 0 &&
	                  strcmp(cJSON_GetArrayItem(cmd, 1)->valuestring, "first") == 0,
	              "cmdline: %.1000s", r.out);
	h_ctl_free(&r);
	const char *list[] = {"list", NULL};
	h_ctl_ok(&D, H_NOUID, &r, list);
	const cJSON *mine = h_list_find(r.json, t->pid);
	ck_assert_msg(mine != NULL &&
	                  strcmp(cJSON_GetObjectItem(mine, "exe")->valuestring, real) == 0 &&
	                  strcmp(cJSON_GetObjectItem(mine, "started_as")->valuestring, link) == 0,
	              "list: %.1500s", r.out);
	h_ctl_free(&r);
	/* The table's row: its uid, the kernel's file and the command line. */
	const char *tlist[] = {"list", "--table", NULL};
	h_ctl_run(&D, H_NOUID, &r, tlist);
	ck_assert_msg(r.status == 0 && strstr(r.out, "PID ") != NULL &&
	                  strstr(r.out, " UID ") != NULL && strstr(r.out, "COMMAND\n") != NULL,
	              "list --table header: %.300s", r.out);
	char *row = NULL;
	for (char *l = r.out; l != NULL && *l != '\0';
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (atol(l + strspn(l, " ")) == t->pid && strstr(l, " live ") != NULL &&
		    strstr(l, " live ") < strchr(l, '\n'))
			row = l; /* the image that runs (the shell before its exec has ended) */
	char want_uid[32];
	snprintf(want_uid, sizeof want_uid, " %u ", (unsigned)geteuid());
	ck_assert_msg(row != NULL && strstr(row, want_uid) != NULL && strstr(row, real) != NULL &&
	                  strstr(row, "./linked-prog first\n") != NULL,
	              "list --table row of %ld: %.1500s", t->pid, r.out);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee through a link");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(script);
	free(truth);
	free(link);
	free(prog);
	free(dir);
}
END_TEST

/* The frames of a top answer's statistics whose module is `module`: each
 * must name `symbols` as the file its symbols came from. Returns how many
 * there are, or -1 (with *why) for one that does not. */
static int frames_named_by(const cJSON *json, const char *module, const char *symbols, char **why)
{
	const cJSON *st, *f;
	int n = 0;

	cJSON_ArrayForEach(st, cJSON_GetObjectItem(json, "stats"))
	{
		cJSON_ArrayForEach(f, cJSON_GetObjectItem(st, "traceback"))
		{
			const char *m = h_json_str(f, "module"), *sym = h_json_str(f, "symbols");
			if (m == NULL || strcmp(m, module) != 0) {
				/* Another module's frame names no file of ours. */
				if (sym != NULL && strstr(sym, symbols) != NULL) {
					*why = h_strf("module %s names %s", m ? m : "(none)", sym);
					return -1;
				}
				continue;
			}
			if (sym == NULL || strcmp(sym, symbols) != 0) {
				*why = h_strf("a frame of %s (%s:%s) names symbols %s, want %s", m,
				              h_json_str(f, "filename"), h_json_str(f, "function"),
				              sym ? sym : "(none)", symbols);
				return -1;
			}
			n++;
		}
	}
	return n;
}

/* Runs `top ... --key traceback` and checks it against the book and the
 * stripped module's frames against their debug file. */
static void assert_stripped_top(const char *const *args, const struct h_truth *t,
                                const char *module, const char *symbols, const char *what)
{
	struct h_expect e = {.t = t, .files = t, .key = H_KEY_TRACEBACK};
	struct h_ctl r;
	char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, args);
	ck_assert_msg(why == NULL, "%s: differs from the book:\n  %.2000s", what, why);
	int n = frames_named_by(r.json, module, symbols, &why);
	ck_assert_msg(n > 0, "%s: %s (%.1000s)", what,
	              n < 0 ? why : "no frame of the stripped copy", r.out);
	h_ctl_free(&r);
}

/*
 * A stripped program whose symbols are in a separate file (objcopy
 * --only-keep-debug, linked back with --add-gnu-debuglink, as Debian's
 * -dbgsym packages are made): its frames are the exact lines of its book,
 * and each one names the module that was mapped (the stripped copy) and
 * the file whose symbols named it, live, in a stored snapshot and in a
 * snapshot file.
 */
START_TEST(stripped_debug_file)
{
	char *dir = h_daemon_file(&D, "stripped");
	char *prog = h_prog("sites");
	char *copy = h_strf("%s/sites", dir), *debug = h_strf("%s/sites.debug", dir);
	char *file = h_daemon_file(&D, "stripped-snap.json");
	struct h_proc p;
	struct h_ctl r;
	char pidbuf[24], sid[32];

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	char *cmd = h_strf("objcopy --only-keep-debug '%s' '%s' && "
	                   "objcopy --strip-all --add-gnu-debuglink='%s' '%s' '%s' && "
	                   "! objdump -h '%s' | grep -q -e debug_info -e '[.]symtab'",
	                   prog, debug, debug, prog, copy, copy);
	free(h_command_out(cmd, "objcopy (binutils) makes the stripped copy"));
	free(cmd);

	h_prog_start_at(&p, &D, copy, NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	snprintf(pidbuf, sizeof pidbuf, "%ld", t->pid);
	wait_state(t->pid, "live");
	const char *live[] = {"top",     "--pid", pidbuf,         "--key", "traceback",
	                      "--limit", "0",     "--raw-frames", NULL};
	assert_stripped_top(live, t, copy, debug, "live");

	/* Stored, and written to a file: the same frames, the same names. */
	const char *snap[] = {"snapshot", "--pid", pidbuf, NULL};
	h_ctl_ok(&D, H_NOUID, &r, snap);
	long long id;
	ck_assert_msg(h_json_int(r.json, "id", &id), "snapshot: %.500s", r.out);
	snprintf(sid, sizeof sid, "%lld", id);
	h_ctl_free(&r);
	const char *stored[] = {"top", "--snapshot",   sid, "--key", "traceback", "--limit",
	                        "0",   "--raw-frames", NULL};
	assert_stripped_top(stored, t, copy, debug, "stored snapshot");
	const char *save[] = {"snapshot", "--pid", pidbuf, "-o", file, NULL};
	h_ctl_ok(&D, H_NOUID, &r, save);
	h_ctl_free(&r);
	const char *fromfile[] = {"top",     "--snapshot", file,           "--key", "traceback",
	                          "--limit", "0",          "--raw-frames", NULL};
	assert_stripped_top(fromfile, t, copy, debug, "snapshot file");

	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "stripped sites");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(file);
	free(debug);
	free(copy);
	free(prog);
	free(dir);
}
END_TEST

/* `run -o FILE` without --top is a usage error, and runs nothing. */
START_TEST(run_output_needs_top)
{
	char *file = h_daemon_file(&D, "report");
	const char *args[] = {"run", "-o", file, "--", "/bin/true", NULL};
	struct stat st;

	h_ctl_error(&D, H_NOUID, args, "bad_request");
	ck_assert_msg(stat(file, &st) < 0, "run -o without --top created %s", file);
	free(file);
}
END_TEST

#define CLOSER_DATA "closer: the program's own data\n"

/*
 * A program that closes every descriptor from 3 up, as daemons do
 * (tests/progs/closer.c): with close() in a loop, closefrom or close_range
 * (_i 0 to 2) the agent keeps its own and the program stays traced, exactly;
 * when it puts descriptors of its own on the agent's numbers with dup2
 * (_i == 3), or closes and replaces them with raw system calls (_i == 4, with
 * frame-pointer unwinding: libunwind's pipe is among them), tracing stops
 * with one line on stderr and the daemon keeps what came before. Either way
 * nothing of the agent reaches the program's files and sockets, and none of
 * the program's descriptors is taken away.
 */
START_TEST(closing_descriptors)
{
	static const char *const modes[] = {"loop", "closefrom", "close_range", "takeover", "raw"};
	const char *const env_fp[] = {"MEMTRACE_UNWIND=fp", NULL};
	const char *mode = modes[_i];
	bool traced = _i < 3;
	char *data = h_daemon_file(&D, "closer.data");
	const char *args[] = {mode, data, NULL};
	struct h_proc p;
	struct h_ctl r;
	struct h_truth *t0, *t1;
	char line[128], *label = h_strf("closer %s", mode);
	long nopen = -1, zero = -1, bytes = -1, intact = -1;
	int rc;

	h_prog_start(&p, &D, "closer", args, H_NOUID, _i == 4 ? env_fp : NULL);
	h_proc_expect_ready(&p);
	t0 = h_truth_must(p.truth);
	/* Everything before the close has reached the daemon. */
	top_simple(&r, t0->pid, t0, H_KEY_LINENO, false, label);
	h_ctl_free(&r);

	ck_assert_int_eq(h_proc_send(&p, "close"), 0);
	rc = h_proc_readline(&p, line, sizeof line, H_START_MS);
	ck_assert_msg(rc == 1 && sscanf(line, "closed %ld %ld", &nopen, &zero) == 2 && nopen >= 1,
	              "%s: no \"closed\" line (%s); stderr: %.1500s", label, rc == 1 ? line : "",
	              p.err.data ? p.err.data : "");
	if (traced) {
		h_proc_expect_ready(&p);
		t1 = h_truth_must(p.truth);
		top_simple(&r, t0->pid, t1, H_KEY_LINENO, false, label);
		h_ctl_free(&r);
		h_truth_free(t1);
	} else {
		long long deadline = h_now_ms() + H_POLL_MS;
		while (memtrace_lines(p.err.data) == 0 && h_now_ms() < deadline)
			h_proc_readline(&p, line, sizeof line, 100);
		ck_assert_msg(memtrace_lines(p.err.data) == 1,
		              "%s: the agent did not say it stopped: %.1500s", label,
		              p.err.data ? p.err.data : "");
		/* The daemon took the lost connection for the end; it holds
		 * exactly what came before, nothing after (the one block of
		 * after_close the agent may have sent before it looked at its
		 * descriptors is optional in the book). */
		wait_state(t0->pid, "exited");
		t1 = h_truth_must(p.truth);
		top_simple(&r, t0->pid, t1, H_KEY_LINENO, false, label);
		h_ctl_free(&r);
		h_truth_free(t1);
	}

	ck_assert_int_eq(h_proc_send(&p, "check"), 0);
	rc = h_proc_readline(&p, line, sizeof line, H_START_MS);
	ck_assert_msg(rc == 1 && sscanf(line, "checked %ld %ld", &bytes, &intact) == 2,
	              "%s: no \"checked\" line (%s)", label, rc == 1 ? line : "");
	ck_assert_msg(bytes == 0, "%s: the agent wrote %ld bytes to the program's socket", label,
	              bytes);
	ck_assert_msg(intact == 1,
	              "%s: a descriptor of the program was taken away or its file "
	              "written",
	              label);
	h_proc_end(&p, label);
	ck_assert_msg(memtrace_lines(p.err.data) == (traced ? 0 : 1),
	              "%s: the agent's lines on stderr: %.1500s", label,
	              p.err.data ? p.err.data : "");
	{
		FILE *f = fopen(data, "r");
		char buf[256] = "";
		size_t got;
		ck_assert_msg(f != NULL, "%s: no data file", label);
		got = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[got] = '\0';
		ck_assert_msg(strcmp(buf, CLOSER_DATA) == 0,
		              "%s: the program's file holds something else: %s", label, buf);
	}
	h_truth_free(t0);
	h_proc_cleanup(&p);
	free(label);
	free(data);
}
END_TEST

/* ----------------------------------------------------------- runner */

/* ---------------------------------------------------- unwind_differential */

/* The agent's "unwind check" line in a process's stderr: walks, walks that
 * differ from libunwind's, walks handed to libunwind, stacks the walk memo
 * recalled (each also compared). 0 when found. */
static long long recalled_last;
static int unwind_counts(const char *err, long long *walks, long long *differ, long long *handed)
{
	const char *p = err != NULL ? strstr(err, "memtrace: unwind check: ") : NULL;

	if (p == NULL || sscanf(p,
	                        "memtrace: unwind check: %lld walks, %lld differ from libunwind, "
	                        "%lld handed to it, %lld recalled",
	                        walks, differ, handed, &recalled_last) != 4)
		return -1;
	return 0;
}

/* The first line of file (new string), or NULL. */
static char *first_line(const char *file)
{
	char buf[512];
	FILE *f = fopen(file, "r");
	char *line = NULL;

	if (f != NULL && fgets(buf, sizeof buf, f) != NULL)
		line = h_strf("%s", buf);
	if (f != NULL)
		fclose(f);
	return line;
}

/* Runs argv traced with MEMTRACE_UNWIND_CHECK naming a file (xz closes its
 * stderr before it exits), stdin from `input` (or nothing), and asserts
 * that every stack our walker returned is the one libunwind returned.
 * Returns its stdout (new string). */
static char *run_checked(const char *const *argv, const char *input, long long *walks,
                         long long *handed)
{
	static int runs;
	char *report = h_strf("%s/unwind-check.%d", D.dir, runs++);
	char *var = h_strf("MEMTRACE_UNWIND_CHECK=%s", report);
	const char *env[] = {var, NULL};
	struct h_spawn sp = {
	    .argv = argv, .agent = true, .runtime_dir = D.runtime, .env = env, .uid = H_NOUID};
	struct h_proc p;
	long long differ = -1;

	h_proc_start(&p, &sp);
	if (input != NULL)
		ck_assert_int_eq(write(p.in_fd, input, strlen(input)), (ssize_t)strlen(input));
	h_proc_close_stdin(&p);
	int st = h_proc_finish(&p, 120000);
	ck_assert_msg(st == 0, "%s: %s\n%.2000s", argv[0], h_status_str(st),
	              p.err.data != NULL ? p.err.data : "");
	char *line = first_line(report);
	ck_assert_msg(unwind_counts(line, walks, &differ, handed) == 0,
	              "%s wrote no unwind check to %s: %s", argv[0], report, line ? line : "");
	ck_assert_msg(differ == 0, "%s: %lld of %lld stacks differ from libunwind's", argv[0],
	              differ, *walks);
	char *out = h_strf("%.*s", (int)p.out.len, p.out.data != NULL ? p.out.data : "");
	h_proc_cleanup(&p);
	free(line);
	free(var);
	free(report);
	return out;
}

/* A walk the memo remembered, recalled with the same start where a page of
 * the thread's stack above the start has become unreadable (progs/
 * stackguard.c: a coroutine stack inside the thread's own, its top page
 * made PROT_NONE). The memo compares the stack words from the start up and
 * stops at the first that differs, below that page: the program must run
 * to its end, with the memo's recalls counted (MEMTRACE_UNWIND_CHECK), and
 * again without the check. */
START_TEST(memo_guard_page)
{
	char *prog = h_prog("stackguard");

	/* Each caller of malloc: with a frame pointer, and without one (the
	 * words the memo checks two a turn then fall the other way). */
	for (int v = 0; v < 2; v++) {
		char *report = h_strf("%s/unwind-check.guard%d", D.dir, v);
		char *var = h_strf("MEMTRACE_UNWIND_CHECK=%s", report);
		const char *argv[] = {prog, "28", v == 0 ? "plain" : "shifted", NULL};
		const char *checked[] = {var, NULL};
		long long walks = -1, differ = -1, handed = -1;

		for (int k = 0; k < 2; k++) {
			struct h_spawn sp = {.argv = argv,
			                     .agent = true,
			                     .runtime_dir = D.runtime,
			                     .env = k == 0 ? checked : NULL,
			                     .uid = H_NOUID};
			struct h_proc p;
			h_proc_start(&p, &sp);
			h_proc_close_stdin(&p);
			int st = h_proc_finish(&p, 60000);
			ck_assert_msg(
			    st == 0 && p.out.data != NULL && strstr(p.out.data, "survived"),
			    "stackguard %s%s: %s\n%.2000s", argv[2], k == 0 ? " (checked)" : "",
			    h_status_str(st), p.err.data != NULL ? p.err.data : "");
			h_proc_cleanup(&p);
		}
		/* The memo answered on the coroutine's stack: the case was
		 * reached. */
		char *line = first_line(report);
		ck_assert_msg(unwind_counts(line, &walks, &differ, &handed) == 0,
		              "stackguard %s wrote no unwind check: %s", argv[2], line ? line : "");
		ck_assert_msg(recalled_last >= 4,
		              "stackguard %s: %lld stacks recalled of %lld walks", argv[2],
		              recalled_last, walks);
		free(line);
		free(var);
		free(report);
	}
	free(prog);
}
END_TEST

/* Our walker against libunwind on every allocation of: unwindy (recursions
 * through alloca frames, C++ exceptions with destructors allocating, signal
 * handlers on the thread's and on an alternate stack, dlopen and dlclose,
 * threads), sqlite3 and xz (Debian's, built without frame pointers), the
 * test programs. 0 differences; signal frames are handed to libunwind. */
START_TEST(unwind_differential)
{
	long long walks = 0, handed = 0, allocs = -1, signals = -1;
	char *prog = h_prog("unwindy"), *plugin = h_prog(".libs/libplugin.so");
	const char *uw[] = {prog, plugin, NULL};
	char *out = run_checked(uw, NULL, &walks, &handed);

	ck_assert_msg(sscanf(out, "allocs=%lld signals=%lld", &allocs, &signals) == 2,
	              "unwindy: %s", out);
	/* Its own allocations are walks; so is the rest (libstdc++, dlopen). */
	ck_assert_msg(walks >= allocs && allocs > 20000, "unwindy: %lld walks for %lld allocations",
	              walks, allocs);
	/* A walk out of a signal handler crosses the kernel's frame: ours
	 * does not read it and hands the stack to libunwind. */
	ck_assert_msg(handed >= signals && signals == 800,
	              "unwindy: %lld walks handed to libunwind, %lld allocations in handlers",
	              handed, signals);
	/* The walk memo answered for many of them, each answer compared too. */
	ck_assert_msg(recalled_last > 1000, "unwindy: %lld stacks recalled", recalled_last);
	free(out);

	const char *sq[] = {"/usr/bin/sqlite3", ":memory:", NULL};
	out = run_checked(sq,
	                  "CREATE TABLE t(a, b);"
	                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
	                  "WHERE x < 20000) INSERT INTO t SELECT x, printf('%08d', x) FROM c;"
	                  "CREATE INDEX i ON t(b); SELECT count(*), sum(a) FROM t;",
	                  &walks, &handed);
	ck_assert_msg(strstr(out, "20000|200010000") != NULL, "sqlite3 answered %s", out);
	ck_assert_int_gt(walks, 1000);
	ck_assert_msg(recalled_last > walks / 2, "sqlite3: %lld of %lld stacks recalled",
	              recalled_last, walks);
	free(out);

	char *data = h_strf("%s/xz.in", D.dir);
	FILE *f = fopen(data, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 200000; i++)
		fprintf(f, "line %d of some text to compress %d\n", i, i * 7919 % 1000);
	fclose(f);
	const char *xz[] = {"/usr/bin/xz", "-k", "-f", "-T2", data, NULL};
	free(run_checked(xz, NULL, &walks, &handed));
	ck_assert_int_gt(walks, 10);
	free(data);

	const char *names[] = {"cxxsites", "threads", "sites", NULL};
	for (int i = 0; names[i] != NULL; i++) {
		char *report = h_strf("%s/unwind-check.%s", D.dir, names[i]);
		char *var = h_strf("MEMTRACE_UNWIND_CHECK=%s", report);
		const char *env[] = {var, NULL};
		struct h_proc p;
		long long differ = -1;
		h_prog_start(&p, &D, names[i], NULL, H_NOUID, env);
		h_proc_expect_ready(&p);
		h_proc_end(&p, names[i]);
		char *line = first_line(report);
		ck_assert_msg(unwind_counts(line, &walks, &differ, &handed) == 0 && differ == 0 &&
		                  walks > 0,
		              "%s: %s", names[i], line != NULL ? line : "no unwind check");
		h_proc_cleanup(&p);
		free(line);
		free(var);
		free(report);
	}
	free(prog);
	free(plugin);
}
END_TEST

/* ---- attached to a running process (progs/attachee.c) ---- */

/* Sends the attachee `cmd`, waits for its "ready" and asserts that its
 * sites, by line and by traceback, are its book. Returns the book. */
static struct h_truth *attachee_step(struct h_proc *p, const char *cmd, const char *what)
{
	struct h_ctl r;

	ck_assert_int_eq(h_proc_send(p, cmd), 0);
	h_proc_expect_ready(p);
	struct h_truth *t = h_truth_must(p->truth);
	top_simple(&r, t->pid, t, H_KEY_LINENO, false, what);
	h_ctl_free(&r);
	top_simple(&r, t->pid, t, H_KEY_TRACEBACK, false, what);
	h_ctl_free(&r);
	return t;
}

/* progs/attachee, attached: "next", then its sites by line and by
 * traceback equal its book, unknown_frees the frees of its blocks from
 * before, and stats says attached. Returns the book. */
static struct h_truth *attachee_after(struct h_proc *p, const char *pidbuf, const char *what)
{
	struct h_ctl r;
	const char *args[] = {"stats", "--pid", pidbuf, NULL};
	long long unknown;

	struct h_truth *t = attachee_step(p, "next", what);
	h_ctl_ok(&D, H_NOUID, &r, args);
	ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "attached")),
	              "%s: stats does not say attached: %.1000s", what, r.out);
	ck_assert_msg(h_json_int(r.json, "unknown_frees", &unknown) &&
	                  unknown == h_truth_meta(t, "unknown_frees", -1),
	              "%s: unknown_frees %lld, the program freed %lld blocks from before", what,
	              unknown, h_truth_meta(t, "unknown_frees", -1));
	h_ctl_free(&r);
	return t;
}

/* The program runs untraced, then loads the agent with dlopen, as the call
 * `memtracectl attach` makes it run does: what it allocates from then on,
 * on two threads, is traced exactly; the frees of blocks from before are
 * unknown_frees; stats says it was attached. */
START_TEST(attach_self)
{
	struct h_proc p;
	char *agent = h_strf("MEMTRACE_TEST_AGENT=%s", h_agent_lib());
	char *dir = h_strf("MEMTRACE_RUNTIME_DIR=%s", D.runtime);
	const char *env[] = {agent, dir, NULL};
	char pidbuf[24];

	h_prog_start_untraced(&p, &D, "attachee", NULL, H_NOUID, env);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	{
		const char *args[] = {"stats", "--pid", pidbuf, NULL};
		h_ctl_error(&D, H_NOUID, args, "not_traced");
	}
	ck_assert_int_eq(h_proc_send(&p, "attach-self"), 0);
	h_proc_expect_ready(&p);
	struct h_truth *t = attachee_after(&p, pidbuf, "after the attach");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee");
	h_truth_free(t);
	h_proc_cleanup(&p);
	free(agent);
	free(dir);
}
END_TEST

/* memtracectl attach PID on a program that runs untraced: what it
 * allocates from then on, on two threads, is exact; the frees of blocks
 * from before are unknown_frees; stats says attached; a second attach is
 * refused; the program's output and exit status are its own. */
START_TEST(attach_ptrace)
{
	struct h_proc p;
	struct h_ctl r;
	char pidbuf[24];
	long long pid;

	h_prog_start_untraced(&p, &D, "attachee", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	const char *args[] = {"attach", pidbuf, NULL};
	h_ctl_ok(&D, H_NOUID, &r, args);
	const cJSON *att = cJSON_GetObjectItem(r.json, "attached");
	const cJSON *pz = cJSON_GetObjectItem(r.json, "pause_ms");
	ck_assert_msg(h_json_int(r.json, "pid", &pid) && pid == p.pid && cJSON_IsTrue(att) &&
	                  cJSON_IsNumber(pz) && pz->valuedouble > 0,
	              "attach: %.500s", r.out);
	h_ctl_free(&r);
	h_ctl_error(&D, H_NOUID, args, "already_traced");
	struct h_truth *t = attachee_after(&p, pidbuf, "after memtracectl attach");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee attached");
	/* Its output is its own: its two "ready" lines, nothing else. */
	ck_assert_msg(p.out.data != NULL && strcmp(p.out.data, "ready\nready\n") == 0,
	              "attachee printed %s", p.out.data != NULL ? p.out.data : "(nothing)");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* What attach refuses, with its own error, leaving the process as it was:
 * a pid that is no process, another user's process, one a debugger
 * traces, a statically linked one. */
START_TEST(attach_refusals)
{
	struct h_proc p, st;
	char pidbuf[24], spid[24];

	{
		const char *args[] = {"attach", "2147483646", NULL};
		h_ctl_error(&D, H_NOUID, args, "no_such_process");
	}
	h_prog_start_untraced(&p, &D, "attachee", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	const char *args[] = {"attach", pidbuf, NULL};
	uid_t other = h_attacker_uid();
	if (other != H_NOUID)
		h_ctl_error(&D, other, args, "not_yours");
	/* Traced by another tracer (this test, as a debugger would). */
	ck_assert_int_eq(ptrace(PTRACE_SEIZE, p.pid, 0, 0), 0);
	h_ctl_error(&D, H_NOUID, args, "traced");
	int ws;
	ck_assert_int_eq(ptrace(PTRACE_INTERRUPT, p.pid, 0, 0), 0);
	ck_assert_int_eq(waitpid(p.pid, &ws, __WALL), p.pid);
	ck_assert_int_eq(ptrace(PTRACE_DETACH, p.pid, 0, 0), 0);
	/* Statically linked. */
	static const char *const sargs[] = {"0", "wait", NULL};
	h_prog_start_untraced(&st, &D, "staticprog", sargs, H_NOUID, NULL);
	char line[64];
	ck_assert_int_eq(h_proc_readline(&st, line, sizeof line, 10000), 1);
	snprintf(spid, sizeof spid, "%ld", (long)st.pid);
	const char *stargs[] = {"attach", spid, NULL};
	h_ctl_error(&D, H_NOUID, stargs, "not_attachable");
	h_proc_end(&st, "staticprog");
	h_proc_cleanup(&st);
	/* None of it touched the program: it runs on, untraced, and ends well. */
	{
		const char *sargs2[] = {"stats", "--pid", pidbuf, NULL};
		h_ctl_error(&D, H_NOUID, sargs2, "not_traced");
	}
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee after the refusals");
	h_proc_cleanup(&p);
}
END_TEST

/* The attachee's answer to "where": whose malloc its GOT holds. */
static void expect_where(struct h_proc *p, const char *want, const char *what)
{
	char line[64];

	ck_assert_int_eq(h_proc_send(p, "where"), 0);
	ck_assert_int_eq(h_proc_readline(p, line, sizeof line, 10000), 1);
	ck_assert_msg(strcmp(line, want) == 0, "%s: the program says %s, want %s", what, line,
	              want);
}

/* The descriptors of process pid beyond its stdin, stdout and stderr: none
 * below 512 (the agent keeps its own high, fdguard.h, even when loaded
 * late); `sockets` and `memfds` count the sockets and the memtrace memfds. */
static void agent_fds(long pid, int *sockets, int *memfds, const char *what)
{
	char dir[64], path[600], target[256];
	struct dirent *e;

	*sockets = *memfds = 0;
	snprintf(dir, sizeof dir, "/proc/%ld/fd", pid);
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = '\0';
		ck_assert_msg(fd < 3 || fd >= 512, "%s: descriptor %d (%s) is the agent's, and low",
		              what, fd, target);
		*sockets += strncmp(target, "socket:", 7) == 0;
		*memfds += strstr(target, "memfd:memtrace") != NULL;
	}
	closedir(d);
}

/* `memtracectl detach PID`: it answers detached with the id of the
 * snapshot it stored; `stats` says the session ended by a detach. Returns
 * the snapshot's id. */
static long long detach_ok(const char *pidbuf, const char *what)
{
	struct h_ctl r;
	long long id = 0, pid = 0;
	const char *det[] = {"detach", pidbuf, NULL};
	const char *st[] = {"stats", "--pid", pidbuf, NULL};

	h_ctl_ok(&D, H_NOUID, &r, det);
	ck_assert_msg(h_json_int(r.json, "pid", &pid) && pid == atoll(pidbuf) &&
	                  cJSON_IsTrue(cJSON_GetObjectItem(r.json, "detached")) &&
	                  h_json_int(r.json, "snapshot", &id) && id > 0,
	              "%s: detach answered %.800s", what, r.out);
	h_ctl_free(&r);
	h_ctl_ok(&D, H_NOUID, &r, st);
	const cJSON *state = cJSON_GetObjectItem(r.json, "state");
	ck_assert_msg(cJSON_IsString(state) && strcmp(state->valuestring, "exited") == 0 &&
	                  cJSON_IsTrue(cJSON_GetObjectItem(r.json, "detached")),
	              "%s: stats after the detach: %.800s", what, r.out);
	h_ctl_free(&r);
	/* Asked again (the pid as --pid this time): it is not traced any more. */
	const char *again[] = {"detach", "--pid", pidbuf, NULL};
	h_ctl_error(&D, H_NOUID, again, "not_live");
	/* list says which of its sessions the detach ended. */
	const char *list[] = {"list", NULL};
	h_ctl_ok(&D, H_NOUID, &r, list);
	const cJSON *proc;
	int detached = 0;
	cJSON_ArrayForEach(proc, cJSON_GetObjectItem(r.json, "processes"))
	{
		long long p = 0;
		detached += h_json_int(proc, "pid", &p) && p == atoll(pidbuf) &&
		            cJSON_IsTrue(cJSON_GetObjectItem(proc, "detached"));
	}
	ck_assert_msg(detached >= 1, "%s: list shows no detached session: %.1500s", what, r.out);
	h_ctl_free(&r);
	return id;
}

/* The program, attached again ("again": a new book on two threads), is
 * traced exactly by a new session that says it was attached; the frees of
 * the blocks it allocated while detached are unknown (libc may free one
 * more of its own from before: a thread's reused stack's old TLS vector). */
static void attachee_again(struct h_proc *p, const char *pidbuf, bool where, const char *what)
{
	struct h_ctl r;
	long long unknown = -1;
	const char *att[] = {"attach", pidbuf, NULL};
	const char *st[] = {"stats", "--pid", pidbuf, NULL};

	h_ctl_ok(&D, H_NOUID, &r, att);
	ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "attached")), "%s: %.500s", what,
	              r.out);
	h_ctl_free(&r);
	if (where)
		expect_where(p, "malloc=agent", what);
	struct h_truth *t = attachee_step(p, "again", what);
	h_ctl_ok(&D, H_NOUID, &r, st);
	const cJSON *state = cJSON_GetObjectItem(r.json, "state");
	long long want = h_truth_meta(t, "unknown_frees", -1);
	ck_assert_msg(cJSON_IsString(state) && strcmp(state->valuestring, "live") == 0 &&
	                  cJSON_IsTrue(cJSON_GetObjectItem(r.json, "attached")) &&
	                  !cJSON_IsTrue(cJSON_GetObjectItem(r.json, "detached")) &&
	                  h_json_int(r.json, "unknown_frees", &unknown) && unknown >= want &&
	                  unknown <= want + 1,
	              "%s: stats (want unknown_frees %lld or one more): %.1500s", what, want,
	              r.out);
	h_ctl_free(&r);
	h_truth_free(t);
}

START_TEST(detach_reattach)
{
	struct h_proc p;
	struct h_ctl r;
	char pidbuf[24], sid[24];

	h_prog_start_untraced(&p, &D, "attachee", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	const char *att[] = {"attach", pidbuf, NULL};
	h_ctl_ok(&D, H_NOUID, &r, att);
	h_ctl_free(&r);
	struct h_truth *t = attachee_after(&p, pidbuf, "attached");
	expect_where(&p, "malloc=agent", "attached");
	int sockets, memfds;
	agent_fds(p.pid, &sockets, &memfds, "attached");
	ck_assert_msg(sockets == 1 && memfds == 1, "attached: %d sockets, %d memfds", sockets,
	              memfds);
	/* Another user's detach finds no process of theirs. */
	uid_t other = h_attacker_uid();
	if (other != H_NOUID) {
		const char *det[] = {"detach", pidbuf, NULL};
		h_ctl_error(&D, other, det, "not_yours");
	}
	long long id = detach_ok(pidbuf, "detached");
	/* The program calls libc's malloc again, not the agent's; the agent's
	 * connection and shared memory are gone. */
	expect_where(&p, "malloc=other", "detached");
	agent_fds(p.pid, &sockets, &memfds, "detached");
	ck_assert_msg(sockets == 0 && memfds == 0, "detached: %d sockets, %d memfds left", sockets,
	              memfds);
	/* The detach snapshot is what the program held: its book. */
	snprintf(sid, sizeof sid, "%lld", id);
	struct h_expect e = {.t = t, .files = t, .key = H_KEY_LINENO};
	const char *top[] = {"top", "--snapshot",   sid, "--key", "lineno", "--limit",
	                     "0",   "--raw-frames", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, top);
	ck_assert_msg(why == NULL, "the detach snapshot differs from the book:\n  %.3000s", why);
	h_ctl_free(&r);
	/* What it does detached (allocations, frees of traced blocks) reaches
	 * no session: the ended one still holds the book. */
	ck_assert_int_eq(h_proc_send(&p, "between"), 0);
	h_proc_expect_ready(&p);
	const char *ptop[] = {"top",     "--pid", pidbuf,         "--key", "lineno",
	                      "--limit", "0",     "--raw-frames", NULL};
	why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, ptop);
	ck_assert_msg(why == NULL, "the detached session changed:\n  %.3000s", why);
	h_ctl_free(&r);
	h_truth_free(t);
	attachee_again(&p, pidbuf, true, "attached again");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee detached and attached again");
	h_proc_cleanup(&p);
}
END_TEST

/* dlsym(RTLD_DEFAULT, "malloc") in attachee_nopie is its own PLT entry,
 * which jumps through the GOT the agent rewrites: taken for the real
 * malloc it would send every call back into the hook for ever. */
START_TEST(attach_nopie)
{
	struct h_proc p;
	struct h_ctl r;
	char pidbuf[24];

	h_prog_start_untraced(&p, &D, "attachee_nopie", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	const char *att[] = {"attach", pidbuf, NULL};
	h_ctl_ok(&D, H_NOUID, &r, att);
	h_ctl_free(&r);
	struct h_truth *t = attachee_after(&p, pidbuf, "non-PIE attached");
	/* (Its code holds malloc's address as a constant, the PLT entry:
	 * "where" cannot tell whose function the GOT holds.) */
	detach_ok(pidbuf, "non-PIE detached");
	ck_assert_int_eq(h_proc_send(&p, "between"), 0);
	h_proc_expect_ready(&p);
	attachee_again(&p, pidbuf, false, "non-PIE attached again");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee_nopie");
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

START_TEST(attach_hostile)
{
	uid_t other = h_attacker_uid();
	struct h_proc p;
	struct h_spawn sp;
	char pidbuf[24];

	ck_assert_msg(other != H_NOUID, "no second user (memtrace-attacker) to attack as");
	/* 1. Its dlopen execs a shell that sends itself SIGSEGV (ignored) and
	 * exits 7: registers put back into it would crash it. */
	char *prog = h_prog("execer");
	const char *argv[] = {prog, NULL};
	memset(&sp, 0, sizeof sp);
	sp.argv = argv;
	sp.uid = other;
	h_proc_start(&p, &sp);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	const char *att[] = {"attach", pidbuf, NULL};
	h_ctl_error(&D, H_NOUID, att, "attach_failed");
	int st = h_proc_finish(&p, 20000);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 7,
	              "the program the process exec'd during attach ended with status %#x, "
	              "want exit 7 (untouched): %s",
	              st, p.err.data != NULL ? p.err.data : "");
	h_proc_cleanup(&p);
	free(prog);

	/* 2. A library of another user's named libmemtrace.so, loaded by a
	 * root process: attach must not take it for the agent and call it. */
	char *dir = h_daemon_file(&D, "fakeagent");
	char *plugin = h_prog(".libs/libplugin.so");
	char *cmd = h_strf("mkdir -p %s && cp %s %s/libmemtrace.so && chown -R %ld %s", dir, plugin,
	                   dir, (long)other, dir);
	ck_assert_int_eq(system(cmd), 0);
	char *pre = h_strf("LD_PRELOAD=%s/libmemtrace.so", dir);
	const char *env[] = {pre, NULL};
	h_prog_start_untraced(&p, &D, "attachee", NULL, H_NOUID, env);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	h_ctl_error_saying(&D, H_NOUID, att, "not_attachable", "not the agent");
	/* Untouched: it runs on, untraced. */
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	const char *stats[] = {"stats", "--pid", pidbuf, NULL};
	h_ctl_error(&D, H_NOUID, stats, "not_traced");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "attachee with a fake agent");
	h_proc_cleanup(&p);
	free(cmd);
	free(pre);
	free(plugin);
	free(dir);
}
END_TEST

/* A program started under the agent (LD_PRELOAD) is detached the same way
 * (its calls then pass through the agent's hooks to the allocator), and
 * attached again through the agent it has. */
START_TEST(detach_preloaded)
{
	struct h_proc p;
	char pidbuf[24];

	h_prog_start(&p, &D, "attachee", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	snprintf(pidbuf, sizeof pidbuf, "%ld", (long)p.pid);
	ck_assert_int_eq(h_proc_send(&p, "next"), 0);
	h_proc_expect_ready(&p);
	wait_state(p.pid, "live");
	detach_ok(pidbuf, "preloaded, detached");
	ck_assert_int_eq(h_proc_send(&p, "between"), 0);
	h_proc_expect_ready(&p);
	attachee_again(&p, pidbuf, true, "preloaded, attached again");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "preloaded attachee detached and attached again");
	h_proc_cleanup(&p);
}
END_TEST

static Suite *live_suite(void)
{
	Suite *s = suite_create("e2e_live");
	TCase *tc;

	tc = h_tcase(s, "sites", 120, setup, teardown);
	tcase_add_loop_test(tc, sites_c, 0, 2);
	tcase_add_test(tc, sites_cxx);
	tcase_add_test(tc, sites_cxx_std);
	tc = h_tcase(s, "threads", 180, setup, teardown);
	tcase_add_test(tc, threads_cross_free);
	tc = h_tcase(s, "peak", 120, setup, teardown);
	tcase_add_test(tc, peak_and_reset);
	tcase_add_test(tc, temporaries);
	tcase_add_test(tc, exports);
	tcase_add_test(tc, peak_sites);
	tcase_add_test(tc, flamegraph_page);
	tcase_add_test(tc, history_series);
	tcase_add_test(tc, where_blocks);
	tc = h_tcase(s, "attach", 120, setup_shared, teardown);
	tcase_add_test(tc, attach_self);
	tcase_add_test(tc, attach_ptrace);
	tcase_add_test(tc, attach_refusals);
	tcase_add_test(tc, detach_reattach);
	tcase_add_test(tc, attach_nopie);
	tcase_add_test(tc, attach_hostile);
	tcase_add_test(tc, detach_preloaded);
	tc = h_tcase(s, "fork_exec", 120, setup, teardown);
	tcase_add_loop_test(tc, fork_exec, 0, 2);
	tcase_add_loop_test(tc, fork_burst, 0, 2);
	tcase_add_loop_test(tc, daemonize_inherits, 0, 6);
	tc = h_tcase(s, "behave", 120, setup, teardown);
	tcase_add_test(tc, behave_with_daemon);
	tcase_add_test(tc, behave_via_run);
	tcase_add_test(tc, behave_no_daemon);
	tcase_add_test(tc, behave_daemon_killed);
	tc = h_tcase(s, "dlopen", 120, setup, teardown);
	tcase_add_test(tc, dlopen_plugin);
	tc = h_tcase(s, "behind", 180, setup, teardown);
	tcase_add_loop_test(tc, daemon_behind, 0, 2);
	tcase_add_loop_test(tc, drain_yield, 0, 2);
	tcase_add_test(tc, fork_child_keeps_ring);
	tcase_add_test(tc, exit_with_stopped_daemon);
	tc = h_tcase(s, "exits", 120, setup, teardown);
	tcase_add_loop_test(tc, exit_modes, 0, EXIT_MODES * EXIT_RUNS);
	if (gocgo_built())
		tcase_add_loop_test(tc, go_cgo_exit, 0, 5);
	else
		printf("e2e_live: go was not found at configure time, so tests/progs/" GOCGO_PROG
		       " is not built: the Go cgo test is NOT registered; it neither ran nor "
		       "passed\n");
	tc = h_tcase(s, "sampling", 120, setup, teardown);
	tcase_add_test(tc, sampling_estimates);
	tcase_add_test(tc, sampling_unbiased);
	tc = h_tcase(s, "early", 120, setup, teardown);
	tcase_add_loop_test(tc, ctor_allocations, 0, 2);
	tcase_add_loop_test(tc, ctor_fills_ring, 0, 2);
	tcase_add_test(tc, cxx_startup_pool);
	tcase_add_test(tc, listed_before_first_allocation);
	tc = h_tcase(s, "bypassed", 120, setup, teardown);
	tcase_add_test(tc, bypassed_by_preload);
	tcase_add_test(tc, bypassed_by_linked_allocator);
	if (jemalloc_path() != NULL)
		tcase_add_test(tc, bypassed_by_jemalloc);
	else
		printf("e2e_live: libjemalloc.so.2 is not installed: the jemalloc test is NOT "
		       "registered; it neither ran nor passed\n");
	tcase_add_test(tc, not_bypassed_by_plt_entry);
	tcase_add_test(tc, static_program_via_run);
	tc = h_tcase(s, "descendants", 120, setup, teardown);
	tcase_add_loop_test(tc, follow_fork_descendants, 0, 2);
	tcase_add_test(tc, follow_fork_under_run);
	tc = h_tcase(s, "run", 120, setup, teardown);
	tcase_add_loop_test(tc, run_top_output, 0, 3);
	tcase_add_test(tc, run_output_needs_top);
	tcase_add_test(tc, run_pid_file);
	tcase_add_test(tc, exe_as_started);
	tcase_add_test(tc, stripped_debug_file);
	tc = h_tcase(s, "descriptors", 120, setup, teardown);
	tcase_add_loop_test(tc, closing_descriptors, 0, 5);
	tc = h_tcase(s, "unwind", 300, setup, teardown);
	tcase_add_test(tc, unwind_differential);
	tcase_add_test(tc, memo_guard_page);
	tc = h_tcase(s, "malformed", 120, setup, teardown);
	tcase_add_test(tc, malformed_agent_frames);
	tcase_add_test(tc, malformed_control);
	if (geteuid() == 0) {
		tc = h_tcase(s, "uid", 120, setup, teardown);
		tcase_add_test(tc, uid_isolation);
	} else {
		printf("e2e_live: not root: the uid isolation test is NOT registered; "
		       "it neither ran nor passed\n");
	}
	return s;
}

int main(void)
{
	static const char *const progs[] = {
	    "sites",      "cxxsites",  "threads",  "peak",     "forker",  "behave",
	    "churn",      "dlopener",  "ctoruser", "cxxstart", "idle",    "ownalloc",
	    "staticprog", "spawner",   "leaker",   "closer",   "sampler", "exiter",
	    "forkburst",  "daemonize", "unwindy",  NULL};

	return h_run_suite("e2e_live", live_suite(), progs);
}
