/*
 * client.h - memtracectl, the command-line client of memtraced.
 *
 * memtracectl is thin on purpose: a command line becomes one request on
 * control.sock (daemon/CONTROL.md), the one response is printed, and the
 * process exits. The meaning of a request is the daemon's; the client only
 * checks its arguments, so a typo gets a precise message and never reaches
 * the daemon. By default the daemon's JSON is printed back unchanged (pretty),
 * for scripts; --table renders it for people (table.c).
 *
 * Each command is one file, client/cmd-NAME.c: a cmd_entry that declares its
 * options and operands, plus a static exec. memtracectl.c holds main, the
 * global options and the command table; args.c the one parser of every
 * command line; client.c what the commands share (checking values, the
 * connection, errors). All state is one struct client that main owns and
 * passes down; getopt's variables are the only globals. cJSON allocates
 * through xmalloc (xalloc_cjson.h), so it never returns NULL for want of
 * memory and nothing here checks that it did.
 *
 * Exit status: 0 on success, CLIENT_EXIT_ERROR when the daemon reports an
 * error or cannot be reached, CLIENT_EXIT_USAGE for a bad command line; `run`
 * exits as its program did. Errors are printed like the daemon's own,
 * {"error": {"code", "message"}} on stdout, or with --table as
 * "memtracectl: message" on stderr. Codes of the client's own: bad_request and
 * unknown_command (usage), daemon_unreachable (no connection, or it was lost
 * before the response), bad_response (not one JSON object, or too big, or a
 * snapshot document that does not parse), agent_not_found and run_failed
 * (`run`), file_error (a snapshot file cannot be opened, read or written)
 * and bad_snapshot (a snapshot file that is not one).
 *
 * Snapshots are the one place where the client computes: a snapshot file
 * (`snapshot -o FILE`) is read here, never by the daemon, and `top`,
 * `traceback`, `stats` and `compare` answer from it with the daemon's own
 * analysis/ (query.c and snapshot.c), so the JSON is the same whichever side
 * computed it.
 * `compare` always computes here, from the two snapshot documents.
 */
#ifndef MEMTRACE_CLIENT_H
#define MEMTRACE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#define CLIENT_EXIT_OK    0
#define CLIENT_EXIT_ERROR 1
#define CLIENT_EXIT_USAGE 2

struct client {
	const char *socket_opt;      /* --socket, as given (points into argv) */
	const char *runtime_dir_opt; /* --runtime-dir, as given (points into argv) */
	bool table;                  /* --table */
	bool help;                   /* --help was met while parsing */
	bool errors_to_stderr;       /* errors as "memtracectl: message" on stderr (run) */
	bool quiet;                  /* errors are not printed at all (run's wait) */
	char *usage_error;           /* first command-line error, reported after parsing */
	char *socket_path;           /* control.sock, resolved at the first request */
	int fd;                      /* the connection, -1 until the first request */
};

/* ---- args.c: options and operands, declared by each command ----
 *
 * A command declares its options in its entry (struct args_spec) and
 * args_parse parses any command line against that declaration, tmux's
 * args_parse style: the options every command takes (--table, --socket,
 * --runtime-dir, --help) set struct client, the command's own are kept in
 * struct args for its exec to read with args_has, args_get and args_count.
 * A value is checked by its kind as soon as it is met; errors are not
 * printed but kept in c->usage_error (the first one), so that a later
 * --table or --help still decides how the error is shown.
 */
enum args_kind {
	ARGS_FLAG,    /* takes no value */
	ARGS_STRING,  /* any value, as given */
	ARGS_PATH,    /* a value that is not empty: "needs a path" */
	ARGS_DIR,     /* the same: "needs a directory" */
	ARGS_FILE,    /* the same: "needs a file name" */
	ARGS_COUNT,   /* a non-negative integer (client_opt_count) */
	ARGS_KEY,     /* a statistics key: lineno, filename, function or traceback */
	ARGS_SORT,    /* what statistics are sorted by: size, count, allocations, ... */
	ARGS_PID,     /* --pid P: exec checks it (client_opt_pid, snapref_choose) */
	ARGS_SNAPREF, /* a snapshot: exec checks it (snapref_choose, snapref_parse) */
};

struct args_option {
	const char *name; /* the long name, without "--"; NULL ends a list */
	char letter;      /* the short name, 0 when none; errors then name it "-o" */
	enum args_kind kind;
};

struct args_spec {
	const struct args_option *options; /* NULL, or ends with {NULL} */
	int lower, upper;                  /* operands: at least, at most (-1: any) */
	/* Options may follow operands (compare A B --limit 3); otherwise the
	 * first operand ends the options (run's PROG keeps its own). */
	bool interleaved;
	const char *missing; /* the error when there are fewer than lower */
};

struct args_value {
	const struct args_option *option;
	const char *arg; /* NULL for a flag; else points into argv */
};

struct args {
	struct args_value *values; /* the command's options, in command-line order */
	size_t nvalues;
	char **operands; /* noperands of them, then NULL; point into argv */
	size_t noperands;
};

/* Parses argv (argv[0] is the command name) against spec into a; errors are
 * noted in c. args_free frees what a owns, whatever the outcome. */
void args_parse(struct client *c, const struct args_spec *spec, int argc, char **argv,
                struct args *a);
void args_free(struct args *a);
/* Whether option `name` was given. */
bool args_has(const struct args *a, const char *name);
/* Its value, the last one when given more than once; NULL when not given. */
const char *args_get(const struct args *a, const char *name);
/* The value of an ARGS_COUNT option, or def when not given. */
int args_count(const struct args *a, const char *name, int def);

struct cmd_entry {
	const char *name;
	const char *usage;   /* synopsis after the name */
	const char *summary; /* one line for `memtracectl --help` */
	const char *help;    /* what the command does and its options, for --help */
	struct args_spec args;
	/* Runs when the command line parsed without an error and without
	 * --help; returns the exit status. What depends on several options
	 * (--pid or --snapshot) it checks itself, and reports with
	 * client_usage_error. */
	int (*exec)(struct client *c, const struct args *a);
};

extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_ui_entry;
extern const struct cmd_entry cmd_attach_entry;
extern const struct cmd_entry cmd_detach_entry;
extern const struct cmd_entry cmd_where_entry;
extern const struct cmd_entry cmd_list_entry;
extern const struct cmd_entry cmd_stats_entry;
extern const struct cmd_entry cmd_reset_peak_entry;
extern const struct cmd_entry cmd_top_entry;
extern const struct cmd_entry cmd_traceback_entry;
extern const struct cmd_entry cmd_run_entry;
extern const struct cmd_entry cmd_snapshot_entry;
extern const struct cmd_entry cmd_snapshots_entry;
extern const struct cmd_entry cmd_compare_entry;
extern const struct cmd_entry cmd_export_entry;
extern const struct cmd_entry cmd_flamegraph_entry;
extern const struct cmd_entry cmd_history_entry;

struct snapshot;
struct query_opts;
struct query_filter;

/* ---- client.c: the context ---- */

void client_init(struct client *c);
/* Closes the connection and frees what the context owns; c itself is the caller's. */
void client_close(struct client *c);

/* ---- client.c: checking values ---- */

/* Keeps the first usage error. */
void client_opt_error(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --pid: required, a positive integer. 0, or -EINVAL after noting the error. */
int client_opt_pid(struct client *c, const char *arg, int *out);
/* The pid of a command that takes one process (attach, detach): its operand
 * PID, or --pid PID as the other commands take it. 0, or -EINVAL with the
 * usage error noted. */
int client_pid_arg(struct client *c, const struct args *a, const char *cmd, int *out);
/* The agent library as `run --agent` finds it (cmd-run.c): --agent, else
 * $MEMTRACE_AGENT, else the build tree's, else the installed one, as an
 * absolute path in *out (new). 0, or the reported exit status. */
int client_find_agent(struct client *c, const char *opt, char **out);
/* A count such as --limit: a non-negative integer. 0 or -EINVAL, noted. */
int client_opt_count(struct client *c, const char *name, const char *arg, int *out);
/* Decimal digits only (no sign, no blanks, nothing after) up to max: 0,
 * -EINVAL when s is not that, -ERANGE over max. Nothing is noted. */
int client_parse_ulong(const char *s, unsigned long max, unsigned long *out);

/* Prints the help of command `e` on stdout; returns CLIENT_EXIT_OK. */
int client_help(const struct cmd_entry *e);
/* Prints the help of the global options, for client_help and memtracectl --help. */
void client_help_options(void);
/* Prints c->usage_error as a bad_request error; returns CLIENT_EXIT_USAGE. */
int client_usage_error(struct client *c);

/* ---- client.c: errors and output ---- */

/* Prints an error with `code` and the formatted message; returns `status`. */
int client_error(struct client *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes n bytes to `path` (created or truncated, 0600, not through a
 * symbolic link), or to standard output when path is NULL. CLIENT_EXIT_OK, or reports the
 * failure and returns its exit status. */
int client_write_out(struct client *c, const char *path, const void *p, size_t n);
/* Prints a JSON value pretty on stdout. */
void client_print_json(const cJSON *j);
/*
 * Prints `n` bytes of text that came from the daemon (or through it, from a
 * traced program) with C0 controls, DEL and the UTF-8 encoded C1 controls
 * (U+0080..U+009F, which some terminals obey) replaced by '?', and tabs by
 * spaces so columns stay columns.
 */
void client_put_text(FILE *f, const char *s, size_t n);

/*
 * Sends `req` (not kept) and reads the response, connecting on first use.
 * Returns 0 with the response object in *resp (the caller deletes it), or
 * reports the failure - including an error response from the daemon, printed
 * as received - and returns the exit status with *resp NULL.
 */
int client_call(struct client *c, const cJSON *req, cJSON **resp);
/* The same, except that an error response of the daemon is not reported but
 * returned like any other in *resp (with 0): for a caller that expects some
 * errors, such as `run` waiting for its program's session. */
int client_call_raw(struct client *c, const cJSON *req, cJSON **resp);
/* Connects if not connected, reporting nothing: 0, or -1 when no trusted
 * memtraced answers at the control socket (for a caller to whom a missing
 * daemon is not an error, such as `run`). */
int client_connect_quiet(struct client *c);
/* Closes the connection, if any: the next request connects again (a
 * command that waits long between requests must not hold one of its
 * user's connections). */
void client_hang_up(struct client *c);
/* The "code" of an error response; NULL when resp is not one. */
const char *client_error_code(const cJSON *resp);
/* The daemon's stats of pid, or NULL when it answers an error (not
 * reported); *live says whether the state is "live". */
cJSON *client_stats_of(struct client *c, int pid, bool *live);
/* Reports an error response as client_call does; returns CLIENT_EXIT_ERROR. */
int client_report_error(struct client *c, const cJSON *resp);

typedef void (*client_render_fn)(const cJSON *resp);

/* Prints a response as JSON or, with --table, through `render`. */
void client_output(struct client *c, const cJSON *resp, client_render_fn render);

/* The whole of most commands: one request (deleted here), its response printed
 * as JSON or, with --table, through `render`. Returns the exit status. */
int client_request(struct client *c, cJSON *req, client_render_fn render);

/* ---- statargs.c: the options of statistics, shared by top and compare ----
 *
 * --key, --sort-by, --cumulative, --include, --exclude, --all-frames and
 * --limit, checked
 * here once, then either sent to the daemon (statargs_request: only what was
 * given, the daemon owns the defaults) or turned into query_opts for query.c
 * (statargs_opts: the daemon's defaults, key lineno and limit 10).
 */
/* clang-format off */
#define STATARGS_OPTIONS                        \
	{"key", 0, ARGS_KEY},                   \
	{"sort-by", 0, ARGS_SORT},              \
	{"at", 0, ARGS_STRING},                 \
	{"raw-frames", 0, ARGS_FLAG},           \
	{"limit", 0, ARGS_COUNT},               \
	{"cumulative", 0, ARGS_FLAG},           \
	{"include", 0, ARGS_STRING},            \
	{"exclude", 0, ARGS_STRING},            \
	{"all-frames", 0, ARGS_FLAG}
/* clang-format on */

/* The synopsis and the --help lines of STATARGS_OPTIONS. */
#define STATARGS_SYNOPSIS                                                                          \
	"[--key KEY] [--sort-by WHAT] [--at peak] [--raw-frames] [--limit N] [--cumulative] "      \
	"[--include PAT]... "                                                                      \
	"[--exclude PAT]... "                                                                      \
	"[--all-frames]"
#define STATARGS_HELP                                                                              \
	"  --key KEY           lineno: file and line of the caller of malloc (default);\n"         \
	"                      filename: its file; function: its function;\n"                      \
	"                      traceback: the whole stack\n"                                       \
	"  --sort-by WHAT      size (default: live bytes), count (live blocks),\n"                 \
	"                      allocations (calls since tracing began), allocated\n"               \
	"                      (their bytes) or temporary (allocations freed before\n"             \
	"                      their thread's next one); by size or count only\n"                  \
	"                      groups with live blocks are listed\n"                               \
	"  --at peak           sizes and counts of what was live at the moment of\n"               \
	"                      the process's peak (see 'stats'), not of now\n"                     \
	"  --raw-frames        the frames as captured; by default a traceback starts\n"            \
	"                      at its first frame outside the C and C++ runtime\n"                 \
	"                      (libc, libstdc++, the loader, standard headers), so\n"              \
	"                      the site of a std::vector's buffer is your line\n"                  \
	"  --limit N           print the first N groups (default 10, 0 = all)\n"                   \
	"  --cumulative        count a block in every frame of its traceback, not\n"               \
	"                      only the most recent one (not with --key traceback)\n"              \
	"  --include PAT       keep only blocks whose file matches the fnmatch(3)\n"               \
	"                      pattern PAT; may be repeated\n"                                     \
	"  --exclude PAT       drop the blocks whose file matches PAT; may be repeated\n"          \
	"  --all-frames        --include and --exclude match any frame of the\n"                   \
	"                      traceback, not only the most recent one\n"

struct statargs_filter {
	const char *pattern; /* points into argv */
	bool inclusive;
};

struct statargs {
	const char *key;     /* NULL when not given */
	const char *sort_by; /* NULL when not given */
	bool at_peak;        /* --at peak */
	bool raw_frames;     /* --raw-frames */
	const char *limit_arg;
	int limit;
	bool cumulative, all_frames;
	struct statargs_filter *filters; /* in command-line order */
	size_t nfilters;
	struct query_filter *qfilters; /* statargs_opts' */
};

/* Takes STATARGS_OPTIONS from args (it points into them until
 * statargs_close) and notes what is wrong with them taken together; each
 * alone args_parse has checked. statargs_close frees what it owns. */
void statargs_init(struct statargs *a, struct client *c, const struct args *args);
void statargs_close(struct statargs *a);
/* Adds "key", "sort_by", "cumulative", "limit" and "filters" to a top
 * request, as given. */
void statargs_request(const struct statargs *a, cJSON *req);
/* Fills o for query.c; o points into a until statargs_close. */
void statargs_opts(struct statargs *a, struct query_opts *o);

/* ---- snapref.c: naming a snapshot, and loading it ----
 *
 * A snapshot is named by its id in the daemon's store (decimal digits only),
 * by `live:PID` (a capture of a live process, not stored; compare only) or by
 * the path of a snapshot file (anything else: write ./123 for a file named
 * 123). Files are read here; ids and live captures come from the daemon as
 * the document of analysis/snapshot.h ("snapshot-get").
 */
enum snapref_kind {
	SNAPREF_ID,
	SNAPREF_LIVE,
	SNAPREF_FILE,
};

struct snapref {
	enum snapref_kind kind;
	const char *arg; /* as given; the path for SNAPREF_FILE (points into argv) */
	int64_t id;      /* SNAPREF_ID */
	int pid;         /* SNAPREF_LIVE */
};

/* Parses `arg` of option or operand `what`; live:PID only when allow_live.
 * 0, or -EINVAL after noting the usage error. */
int snapref_parse(struct client *c, const char *what, const char *arg, bool allow_live,
                  struct snapref *out);
/* For a command that takes --pid P or --snapshot ID|FILE (given as NULL or
 * the argument): notes a usage error unless exactly one was given, and
 * parses it into *pid or *ref. */
void snapref_choose(struct client *c, const char *pid_arg, const char *snap_arg, int *pid,
                    struct snapref *ref);
/* Loads the snapshot. Returns 0 with a new snapshot in *out (snapshot_free
 * it), or reports the failure and returns the exit status. */
int snapref_load(struct client *c, const struct snapref *r, struct snapshot **out);
/* Builds a command's answer from a loaded snapshot; NULL when the options
 * do not apply to it. */
typedef cJSON *(*snapref_answer_fn)(const struct snapshot *s, void *arg);
/* The whole of a command that reads a snapshot file: loads it, builds the
 * answer with `answer` (given `arg`), adds "file" to the answer's "snapshot"
 * member and prints it as client_output does. Returns the exit status. */
int snapref_answer(struct client *c, const struct snapref *r, snapref_answer_fn answer, void *arg,
                   client_render_fn render);
/* snapshot_summary_json plus "file" for a file. */
cJSON *snapref_summary_json(const struct snapref *r, const struct snapshot *s);

/* ---- table.c: --table renderers, one per response shape ----
 * They never fail: a field the daemon left out prints as "?", and text from
 * the daemon has its control characters replaced, so a traced program cannot
 * write escape sequences to the user's terminal. */
void table_status(const cJSON *resp);
void table_list(const cJSON *resp);
void table_stats(const cJSON *resp);
void table_reset_peak(const cJSON *resp);
void table_top(const cJSON *resp);
void table_traceback(const cJSON *resp);
void table_snapshot(const cJSON *resp);
void table_snapshots(const cJSON *resp);
void table_compare(const cJSON *resp);
void table_history(const cJSON *resp);
void table_ui(const cJSON *resp);
void table_attach(const cJSON *resp);
void table_detach(const cJSON *resp);
void table_where(const cJSON *resp);

#endif
