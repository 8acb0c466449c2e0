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
 * Each command is one file, client/cmd-NAME.c: a cmd_entry plus a static exec.
 * memtracectl.c holds main, the global options and the command table; client.c
 * what the commands share (option parsing, the connection, errors). All state
 * is one struct client that main owns and passes down; getopt's variables are
 * the only globals. cJSON allocates through xmalloc, so it never returns NULL
 * for want of memory.
 *
 * Exit status: 0 on success, CLIENT_EXIT_ERROR when the daemon reports an
 * error or cannot be reached, CLIENT_EXIT_USAGE for a bad command line; `run`
 * exits as its program did. Errors are printed like the daemon's own,
 * {"error": {"code", "message"}} on stdout, or with --table as
 * "memtracectl: message" on stderr. Codes of the client's own: bad_request and
 * unknown_command (usage), daemon_unreachable (no connection, or it was lost
 * before the response), bad_response (not one JSON object, or too big),
 * agent_not_found and run_failed (`run`).
 */
#ifndef MEMTRACE_CLIENT_H
#define MEMTRACE_CLIENT_H

#include <getopt.h>
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
	char *usage_error;           /* first command-line error, reported after parsing */
	char *socket_path;           /* control.sock, resolved at the first request */
	int fd;                      /* the connection, -1 until the first request */
};

struct cmd_entry {
	const char *name;
	const char *args;    /* synopsis after the name */
	const char *summary; /* one line for `memtracectl --help` */
	const char *help;    /* what the command does and its options, for --help */
	/* argv[0] is the command name; returns the exit status. */
	int (*exec)(struct client *c, int argc, char **argv);
};

extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_list_entry;
extern const struct cmd_entry cmd_stats_entry;
extern const struct cmd_entry cmd_reset_peak_entry;
extern const struct cmd_entry cmd_top_entry;
extern const struct cmd_entry cmd_traceback_entry;
extern const struct cmd_entry cmd_run_entry;

/* ---- client.c: the context ---- */

void client_init(struct client *c);
/* Closes the connection and frees what the context owns; c itself is the caller's. */
void client_close(struct client *c);

/* ---- client.c: options ----
 *
 * Every command parses with getopt_long(argc, argv, CLIENT_OPTSTRING, ...) over
 * its own options followed by CLIENT_COMMON_OPTIONS, so --table, --socket,
 * --runtime-dir and --help work after the command too. Options of a command
 * use values from CLIENT_OPT_CMD up. Errors are not printed while parsing but
 * kept in c->usage_error (the first one), so that a later --table or --help
 * still decides how the error is shown.
 */
enum {
	CLIENT_OPT_TABLE = 0x100,
	CLIENT_OPT_SOCKET,
	CLIENT_OPT_RUNTIME_DIR,
	CLIENT_OPT_CMD = 0x200,
};

/* '+': stop at the first operand (run's program); ':': report a missing value. */
#define CLIENT_OPTSTRING "+:h"

/* The options every command takes, and the table's terminator. */
/* clang-format off */
#define CLIENT_COMMON_OPTIONS                                             \
	{"help", no_argument, NULL, 'h'},                                 \
	{"table", no_argument, NULL, CLIENT_OPT_TABLE},                   \
	{"socket", required_argument, NULL, CLIENT_OPT_SOCKET},           \
	{"runtime-dir", required_argument, NULL, CLIENT_OPT_RUNTIME_DIR}, \
	{NULL, 0, NULL, 0}
/* clang-format on */

/* Restarts getopt on a new argv (argv[0] is skipped). */
void client_opt_begin(void);
/* Handles a getopt_long result that is not one of the command's own options. */
void client_opt_common(struct client *c, int ch, char *const *argv);
/* Notes operands left after the options: no command but run takes any. */
void client_opt_end(struct client *c, int argc, char *const *argv);
/* Keeps the first usage error. */
void client_opt_error(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* --pid: required, a positive integer. 0, or -EINVAL after noting the error. */
int client_opt_pid(struct client *c, const char *arg, int *out);
/* A count such as --limit: a non-negative integer. 0 or -EINVAL, noted. */
int client_opt_count(struct client *c, const char *name, const char *arg, int *out);

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

typedef void (*client_render_fn)(const cJSON *resp);

/* The whole of most commands: one request (deleted here), its response printed
 * as JSON or, with --table, through `render`. Returns the exit status. */
int client_request(struct client *c, cJSON *req, client_render_fn render);

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

#endif
