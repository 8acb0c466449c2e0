/*
 * harness.h - what the end-to-end tests need to drive the real memtrace:
 * a daemon on a temporary runtime directory, traced test programs, the real
 * memtracectl, and the test programs' ground truth (tests/progs/truth.h).
 *
 * Processes. Every process the harness starts gets PR_SET_PDEATHSIG(SIGKILL)
 * and default signal dispositions: Check runs each test in a forked child
 * and _exit()s it on the first failed assertion (or kills it on timeout),
 * skipping teardown, so the daemon and the traced programs must die with it
 * instead of leaking. All directories live under one base directory made by
 * h_base_init(); main removes it at the end unless a test failed.
 *
 * Truth and comparison. The expected numbers come only from the book the
 * traced program wrote about itself. A statistic whose most recent frame is
 * in one of the program's own source files must match the book exactly
 * (bytes and count); one the book does not know is an error. Statistics
 * attributed to other files (libc's stdio buffers, the loader, libstdc++'s
 * start-up pool) are not the program's and are only ever counted as "other".
 * The checks return NULL when all is well, else a malloc'ed description of
 * every difference, so a failing test names the site, the expected and the
 * reported numbers.
 *
 * Polling. The agent flushes at least every 50 ms, so a query made after a
 * program said "ready" converges within a second. h_ctl_poll() runs the
 * client until a check accepts the answer or H_POLL_MS pass, and hands back
 * the last answer and complaint: a wrong answer fails with its diff, never
 * with a hang, and no sleep is ever an assertion.
 *
 * Everything here may call ck_assert on setup failures (a process that
 * cannot be started, a directory that cannot be made); the comparisons never
 * assert themselves, the test does.
 */
#ifndef MEMTRACE_E2E_HARNESS_H
#define MEMTRACE_E2E_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#define H_POLL_MS  6000  /* how long a query may take to converge */
#define H_START_MS 10000 /* daemon start-up, program "ready" */
#define H_NOUID    ((uid_t)-1)
#define H_NOBODY   ((uid_t)65534)

/* ---- paths ---- */

/* The build directory: $MEMTRACE_BUILDDIR, else TEST_BUILDDIR. */
const char *h_builddir(void);
/* Where the test programs are: $MEMTRACE_E2E_PROGDIR, else <build>/tests/progs. */
const char *h_progdir(void);
/* <build>/daemon/memtraced, <build>/client/memtracectl, the agent. */
const char *h_daemon_bin(void);
const char *h_client_bin(void);
const char *h_agent_lib(void);
/* <progdir>/<name>, as a new string the caller frees. */
char *h_prog(const char *name);

/* Creates the base directory (mode 0755, so another uid can reach a runtime
 * dir inside it). Returns 0 or -errno. */
int h_base_init(void);
const char *h_base_dir(void);
/* Removes the base directory and everything in it. */
void h_base_remove(void);

/* The main of an end-to-end test binary: checks that the daemon, client,
 * agent and the named test programs (NULL-terminated, may be NULL) are
 * built, runs suite `s` in a fresh base directory, removes it when every
 * test passed and keeps it (logs, books) otherwise. `name` prefixes the
 * messages. Returns the process exit status (99 when it cannot start). */
struct Suite;
struct TCase;
int h_run_suite(const char *name, struct Suite *s, const char *const *progs);
/* A test case of s with a checked fixture (either function may be NULL)
 * and a timeout in seconds. */
struct TCase *h_tcase(struct Suite *s, const char *name, int timeout_s, void (*setup)(void),
                      void (*teardown)(void));

/* ---- the daemon ---- */

struct h_daemon {
	char dir[512];     /* this test's own directory (mkdtemp) */
	char runtime[600]; /* <dir>/run: agent.sock and control.sock */
	char state[600];   /* <dir>/state */
	char log[600];     /* <dir>/memtraced.log: the daemon's stderr */
	pid_t pid;         /* 0 once reaped */
	int status;        /* wait status once reaped */
	int nfiles;        /* counter for files made in dir */
};

/* Fills d for a fresh directory under the base directory: <dir>/run made
 * with runtime_mode, <dir>/state (0700), the log path. Starts nothing.
 * Asserts on failure. */
void h_daemon_dirs(struct h_daemon *d, mode_t runtime_mode);
/* Starts memtraced on d's directories with the extra options `opts`
 * (NULL-terminated, may be NULL), its output appended to d->log, and waits
 * until control.sock accepts a connection. The previous daemon on d, if any,
 * must have exited: this is also how a test restarts it on the same state.
 * Asserts on failure. */
void h_daemon_spawn(struct h_daemon *d, const char *const *opts);
/* h_daemon_dirs with a private runtime dir, then h_daemon_spawn. */
void h_daemon_start_opts(struct h_daemon *d, const char *const *opts);
/* h_daemon_start_opts without options. */
void h_daemon_start(struct h_daemon *d);
/* SIGTERM: asserts the daemon exits 0 within 30 s (it writes its last
 * snapshots first). */
void h_daemon_stop(struct h_daemon *d);
/* Sends sig and waits up to timeout_ms for the daemon to exit; returns its
 * wait status, or -1 if it did not exit (then it is SIGKILLed). */
int h_daemon_signal(struct h_daemon *d, int sig, int timeout_ms);
/* True while the daemon has not exited (reaps it if it has). */
bool h_daemon_alive(struct h_daemon *d);
/* The last `max` bytes of the daemon's log, as a new string. */
char *h_daemon_log_tail(const struct h_daemon *d, size_t max);
/* Kills the daemon if it still runs. For teardown. */
void h_daemon_cleanup(struct h_daemon *d);
/* A new unique path <dir>/<stem>.<n>. Caller frees. */
char *h_daemon_file(struct h_daemon *d, const char *stem);

/* ---- processes ---- */

struct h_buf {
	char *data;
	size_t len, cap;
};

struct h_proc {
	pid_t pid;             /* 0 once reaped */
	int status;            /* wait status once reaped */
	int in_fd;             /* its stdin, -1 once closed */
	int out_fd;            /* its stdout, -1 at end of file */
	int err_fd;            /* its stderr, -1 at end of file */
	struct h_buf out, err; /* everything it printed so far */
	size_t out_pos;        /* stdout consumed by h_proc_readline */
	char *truth;           /* MEMTRACE_TRUTH given to it, or NULL */
	char name[64];
};

struct h_spawn {
	const char *const *argv; /* argv[0] is the path to execute */
	bool agent;              /* LD_PRELOAD the agent */
	const char *runtime_dir; /* MEMTRACE_RUNTIME_DIR, or NULL for none */
	const char *truth;       /* MEMTRACE_TRUTH, or NULL */
	const char *const *env;  /* more NAME=VALUE entries, or NULL */
	uid_t uid;               /* run as this uid and gid, or H_NOUID */
};

/* Whether an entry of the test's own environment is passed on to the
 * processes the harness starts: not MEMTRACE_*, LD_PRELOAD, nor systemd's
 * NOTIFY_SOCKET and LISTEN_*, which would change how they run. */
bool h_env_inherited(const char *entry);
/* Starts a process with pipes on its stdin, stdout and stderr, in an
 * environment of what h_env_inherited keeps plus s->env. Asserts. */
void h_proc_start(struct h_proc *p, const struct h_spawn *s);
/* Starts test program `name` traced by daemon d (agent preloaded, runtime dir
 * set, MEMTRACE_TRUTH a fresh file in d's directory), optionally as `uid`,
 * with extra env entries. */
void h_prog_start(struct h_proc *p, struct h_daemon *d, const char *name, const char *const *args,
                  uid_t uid, const char *const *env);
/* The same without the agent and without MEMTRACE_RUNTIME_DIR: a program
 * running untraced (memtracectl attach), its book still next to d's. */
void h_prog_start_untraced(struct h_proc *p, struct h_daemon *d, const char *name,
                           const char *const *args, uid_t uid, const char *const *env);
/* h_prog_start of the program at path (a copy, a link, a stripped build):
 * argv[0] is path, its book is named after path's last component. */
void h_prog_start_at(struct h_proc *p, struct h_daemon *d, const char *path,
                     const char *const *args, uid_t uid, const char *const *env);
/* Reads one stdout line (without '\n') into buf. Returns 1, 0 at end of
 * file, -ETIMEDOUT. */
int h_proc_readline(struct h_proc *p, char *buf, size_t cap, int timeout_ms);
/* Waits for the line "ready"; asserts, with the program's stderr, if it
 * does not come. */
void h_proc_expect_ready(struct h_proc *p);
/* Writes a line (a '\n' is added) to its stdin. Returns 0 or -errno. */
int h_proc_send(struct h_proc *p, const char *line);
void h_proc_close_stdin(struct h_proc *p);
/* Reads its output until both pipes end and it exits, up to timeout_ms;
 * returns the wait status, or -1 after killing it on timeout. */
int h_proc_finish(struct h_proc *p, int timeout_ms);
/* Closes its stdin (the test programs take that as "exit") and asserts it
 * exits 0 within 30 s; `what` names it in the message. */
void h_proc_end(struct h_proc *p, const char *what);
/* SIGKILLs and reaps it if still running, frees buffers. */
void h_proc_cleanup(struct h_proc *p);
/* Human-readable wait status, in a static buffer. */
const char *h_status_str(int status);

/* ---- the client ---- */

struct h_ctl {
	int status;  /* exit code, or -1 if it died of a signal or timed out */
	char *out;   /* stdout */
	char *err;   /* stderr */
	cJSON *json; /* stdout parsed, or NULL */
};

/* Runs `memtracectl --runtime-dir <d->runtime> ARGS...` (NULL-terminated),
 * as `uid` (or H_NOUID). Fills r; the caller calls h_ctl_free. */
void h_ctl_run(const struct h_daemon *d, uid_t uid, struct h_ctl *r, const char *const *args);
void h_ctl_free(struct h_ctl *r);
/* "memtracectl ARGS...", for messages (new string). */
char *h_args_str(const char *const *args);
/* h_ctl_run, asserting that the client exited 0 with JSON. */
void h_ctl_ok(const struct h_daemon *d, uid_t uid, struct h_ctl *r, const char *const *args);
/* Polls `stats --pid PID` as uid until the daemon knows the process as
 * live (its agent's HELLO is read on the daemon's loop, asynchronously to
 * the program's "ready"), for H_POLL_MS at most. */
void h_await_traced(const struct h_daemon *d, uid_t uid, long pid);
/* Runs the client once and asserts it failed with error `code`. */
void h_ctl_error(const struct h_daemon *d, uid_t uid, const char *const *args, const char *code);
/* The same, and that the answer says `text` (in its message). */
void h_ctl_error_saying(const struct h_daemon *d, uid_t uid, const char *const *args,
                        const char *code, const char *text);
/* The error code of an {"error": {"code": ...}} answer, or NULL. */
const char *h_ctl_error_code(const struct h_ctl *r);

/* A check returns NULL when the answer is right, else a malloc'ed reason. */
typedef char *(*h_check_fn)(const cJSON *json, void *arg);

/* Runs the client until it exits 0 with JSON that `check` accepts, or
 * H_POLL_MS pass. Leaves the last run in r (caller frees) and returns NULL
 * on success, else the last reason (caller frees). */
char *h_ctl_poll(const struct h_daemon *d, uid_t uid, struct h_ctl *r, h_check_fn check, void *arg,
                 const char *const *args);

/* ---- ground truth ---- */

struct h_frame {
	char *file;
	int line;
	char *func;
};

struct h_rec {
	long long bytes, count;
	long long allocs, allocated, temporary; /* since the start (truth.h's churn line) */
	bool optional;
	int nframes;
	struct h_frame *f; /* f[0] is the site, then its callers */
};

struct h_truth {
	long pid;
	struct h_rec *recs;
	int nrecs;
	struct {
		char *name;
		long long value;
	} * meta;
	int nmeta;
	char **files; /* every distinct file named in any frame */
	int nfiles;
};

/* Parses a book written by truth.h. Returns NULL and a reason in *why. */
struct h_truth *h_truth_load(const char *path, char **why);
void h_truth_free(struct h_truth *t);
/* Loads the book and asserts it parsed. */
struct h_truth *h_truth_must(const char *path);
long long h_truth_meta(const struct h_truth *t, const char *name, long long dflt);
/* Sums of bytes and counts over records (non-optional only). */
long long h_truth_bytes(const struct h_truth *t);
long long h_truth_count(const struct h_truth *t);
/* A copy keeping the records whose site file matches (inclusive) or does
 * not match (!inclusive) the fnmatch pattern; with all_frames any frame of
 * the record may match (tracemalloc.Filter semantics). */
struct h_truth *h_truth_filter(const struct h_truth *t, const char *pattern, bool inclusive,
                               bool all_frames);

/* Does a file name reported by memtrace (absolute, from DWARF) name the
 * same source file as a truth file name (as the compiler saw __FILE__)? */
bool h_file_matches(const char *reported, const char *truth_file);
bool h_func_matches(const char *reported, const char *truth_func, const char *truth_file);
/* Is the reported file one of the program's own source files? */
bool h_is_program_file(const struct h_truth *t, const char *reported);

/* ---- comparing answers with the truth ---- */

/* A frame of an answer, as memtracectl reports it. */
struct h_rframe {
	const char *file;
	long long line;
	const char *func; /* NULL when absent */
};

/* Reads frame f of an answer into out (the strings stay f's); false when
 * it has no filename or lineno. */
bool h_rframe_get(const cJSON *f, struct h_rframe *out);

enum h_key { H_KEY_LINENO, H_KEY_FILENAME, H_KEY_FUNCTION, H_KEY_TRACEBACK };
/* The --key names, indexed by enum h_key. */
extern const char *const h_key_names[];

/* True when two stacks (most recent frame first) group together under key
 * k, as tracemalloc groups them: only the first frame counts except for
 * H_KEY_TRACEBACK. */
bool h_key_equal(enum h_key k, const struct h_frame *a, int na, const struct h_frame *b, int nb);

struct h_expect {
	const struct h_truth *t;     /* what must be reported */
	const struct h_truth *files; /* whose files are "the program's" (NULL: t) */
	enum h_key key;
	bool cumulative;
	/* The query names sites by memtracectl's default rule (the first frame
	 * outside the C and C++ runtime). A book holds the program's own
	 * allocator calls only, not what libc allocates for it (a thread's
	 * TLS at pthread_create, dlopen's, stdio's buffers), which that rule
	 * puts at the program's lines: so unless set, the helpers that query
	 * ask for --raw-frames. */
	bool sites;
};

/* Checks a `top` answer against e (see the header comment). */
char *h_check_top(const cJSON *json, const struct h_expect *e);
/* h_check_top as an h_check_fn for h_ctl_poll; `expect` is a struct h_expect. */
char *h_check_top_fn(const cJSON *json, void *expect);
/* Checks a `compare` answer (new.compare_to(old, key, cumulative)) against
 * the difference of two books, optional records left out: every key the
 * books hold something under (in either) is reported once (traceback: its
 * reported stacks, which go on past main, sum to it) with the new size and
 * count and their differences; nothing else of the programs' files is
 * reported; the whole list, other files included, is in compare_to order;
 * without cumulative, the totals are the sums. */
char *h_check_compare(const cJSON *json, const struct h_truth *told, const struct h_truth *tnew,
                      enum h_key key, bool cumulative);
/* Sums a `top` answer's statistics whose most recent frame is (prog) or is
 * not (other) in a program file of t. Returns 0, or -1 on a malformed answer. */
int h_top_split(const cJSON *json, const struct h_truth *t, long long *prog_size,
                long long *prog_count, long long *other_size, long long *other_count);

/* ---- small JSON helpers ---- */

/* obj[name] as an integer; false if absent or not a number. */
bool h_json_int(const cJSON *obj, const char *name, long long *out);
const char *h_json_str(const cJSON *obj, const char *name);
/* The entry of a `list` answer for pid, or NULL. */
const cJSON *h_list_find(const cJSON *list, long pid);
/* Compact rendering of some JSON for messages (new string, truncated). */
char *h_json_brief(const cJSON *json, size_t max);

/* ---- raw sockets ---- */

/* A connected Unix stream socket to path, or -errno (ctlwire_connect). */
int h_connect(const char *path);
/* Writes everything (MSG_NOSIGNAL). Returns 0 or -errno. */
int h_send_all(int fd, const void *buf, size_t n);
/* Sends buf with the descriptors fds[0..n) attached (SCM_RIGHTS), then
 * what a short write left without them. 0 or -errno. */
int h_send_fds(int sock, const void *buf, size_t len, const int *fds, int n);
/* An agent's shared region as the agent makes it (proto/shm.h): a memfd of
 * SHM_SIZE sealed against resizing, its header written, nothing else.
 * Returns the descriptor or -1. */
int h_region_empty(void);
/* A forged agent's HELLO frame into buf (this process's pid, 32 frames,
 * exe and the NUL-separated cmdline of cmdline_len bytes). Its length, or
 * 0 when it does not fit. */
size_t h_hello_frame(void *buf, size_t cap, const char *exe, const char *cmdline,
                     size_t cmdline_len);
/* Waits until the peer closes (EOF or reset), discarding what it sends.
 * Returns 1 if closed, 0 on timeout. */
int h_wait_closed(int fd, int timeout_ms);
/* Reads one '\n'-terminated line (without it) into buf. Returns a positive
 * number for a line (or a last unterminated one), 0 on EOF, -ETIMEDOUT or
 * -errno. */
int h_read_line(int fd, char *buf, size_t cap, int timeout_ms);

/* ---- a second user ---- */

/* The name of the account h_attacker_uid makes. */
#define H_ATTACKER_NAME "memtrace-attacker"

/* The uid attacks run as: as root, a dedicated unprivileged account,
 * memtrace-attacker, made with useradd on first use (uid and gid equal, no
 * home, no login shell, in no other group) and kept for later runs; when it
 * cannot be made, uid 65534 (nobody). Its gid is the same number. Without
 * root there is no second user: returns H_NOUID. */
uid_t h_attacker_uid(void);
/* Switches the calling process (a forked child) to h_attacker_uid's uid and
 * gid for good, with no supplementary groups. 0 or -errno. */
int h_become_attacker(void);

/* ---- pages, as headless Chromium renders them ---- */

/* Runs cmd with /bin/sh; asserts it exited 0 (hint is added to the
 * message). Returns its standard output (caller frees). */
char *h_command_out(const char *cmd, const char *hint);
/* Debian's headless chromium on url, with `out` its output flag
 * ("--dump-dom", or "--screenshot=PATH"), a window w x h pixels, and
 * budget_ms of virtual time for the page's scripts and fetches (0: none).
 * Its HOME and a new profile (no cookies of an earlier call) are under
 * d->dir. Returns its standard output (the document with --dump-dom). */
char *h_chromium(const struct h_daemon *d, const char *url, const char *out, int w, int h,
                 int budget_ms);

/* A frame of a rendered flame graph: an element of class "frame" with its
 * data-name, data-value, data-delta and pixel width. */
struct h_fframe {
	char name[128];
	double width, value, delta;
	bool has_delta;
};
/* The frames of a rendered flame graph document; returns how many (at
 * most max). */
int h_rendered_frames(const char *dom, struct h_fframe *out, int max);
const struct h_fframe *h_frame_named(const struct h_fframe *f, int n, const char *name);
/* Every function funcs[i] is drawn for bytes[i], as wide against the top
 * frame ("all") as its bytes against the top frame's (within a pixel). */
void h_assert_widths(const struct h_fframe *f, int n, const char *const *funcs,
                     const long long *bytes, int nf, const char *what);

/* ---- misc ---- */

long long h_now_ms(void);
void h_sleep_ms(int ms);
/* printf into a new string. */
char *h_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Appends a formatted line to *s (a malloc'ed string or NULL), capped. */
void h_append(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
