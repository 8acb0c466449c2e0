/*
 * client.c - what memtracectl's commands share: checking values, help, the
 * control connection, errors and output. See client.h.
 */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctlwire.h"
#include "jsonout.h"
#include "paths.h"
#include "safedir.h"
#include "xalloc.h"

__attribute__((format(printf, 1, 0))) static char *vformat(const char *fmt, va_list ap)
{
	char *s;

	/* Fails only for want of memory, which xstrdup turns into an abort. */
	if (vasprintf(&s, fmt, ap) < 0)
		s = xstrdup(fmt);
	return s;
}

void client_init(struct client *c)
{
	*c = (struct client){.fd = -1};
}

void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->socket_path);
	c->socket_path = NULL;
	free(c->usage_error);
	c->usage_error = NULL;
}

/* ---- checking values ---- */

void client_opt_error(struct client *c, const char *fmt, ...)
{
	va_list ap;

	if (c->usage_error != NULL)
		return;
	va_start(ap, fmt);
	c->usage_error = vformat(fmt, ap);
	va_end(ap);
}

int client_parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int client_opt_pid(struct client *c, const char *arg, int *out)
{
	unsigned long v;
	int rc;

	if (arg == NULL) {
		client_opt_error(c, "--pid is required");
		return -EINVAL;
	}
	rc = client_parse_ulong(arg, INT_MAX, &v);
	if (rc == -ERANGE) {
		client_opt_error(c, "--pid %s is out of range", arg);
		return -EINVAL;
	}
	if (rc < 0 || v == 0) {
		client_opt_error(c, "--pid must be a positive integer, not '%s'", arg);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

int client_opt_count(struct client *c, const char *name, const char *arg, int *out)
{
	unsigned long v;
	int rc;

	rc = client_parse_ulong(arg, INT_MAX, &v);
	if (rc == -ERANGE) {
		client_opt_error(c, "%s %s is out of range", name, arg);
		return -EINVAL;
	}
	if (rc < 0) {
		client_opt_error(c, "%s must be a non-negative integer, not '%s'", name, arg);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

void client_help_options(void)
{
	fputs("Global options (also accepted after the command):\n"
	      "  --socket PATH       control socket of memtraced\n"
	      "  --runtime-dir DIR   use DIR/control.sock (default: $MEMTRACE_RUNTIME_DIR,\n"
	      "                      else $XDG_RUNTIME_DIR/memtrace or /tmp/memtrace-$UID,\n"
	      "                      then /run/memtrace; /run/memtrace for root)\n"
	      "  --table             print for people instead of JSON\n"
	      "  --help              print help and exit\n",
	      stdout);
}

/* Prints a synopsis folded at 79 columns, only at blanks outside brackets and
 * parentheses so that "[--key KEY]" and "(--pid P | --snapshot ID)" stay
 * whole; continuation lines are indented. */
static void help_synopsis(const char *prefix, const char *args)
{
	size_t col = strlen(prefix);
	const char *p = args;

	fputs(prefix, stdout);
	while (*p != '\0') {
		const char *end = p;
		int depth = 0;

		while (*end != '\0' && (*end != ' ' || depth > 0)) {
			depth += *end == '[' || *end == '(';
			depth -= (*end == ']' || *end == ')') && depth > 0;
			end++;
		}
		size_t len = (size_t)(end - p);
		if (col + 1 + len > 79) {
			fputs("\n       ", stdout);
			col = 7;
		}
		printf(" %.*s", (int)len, p);
		col += 1 + len;
		p = *end == ' ' ? end + 1 : end;
	}
	putchar('\n');
}

int client_help(const struct cmd_entry *e)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "usage: memtracectl [GLOBAL OPTIONS] %s", e->name);
	help_synopsis(prefix, e->usage);
	printf("\n%s\n", e->help);
	client_help_options();
	return CLIENT_EXIT_OK;
}

int client_usage_error(struct client *c)
{
	return client_error(c, CLIENT_EXIT_USAGE, "bad_request", "%s",
	                    c->usage_error != NULL ? c->usage_error : "bad command line");
}

/* ---- errors and output ---- */

void client_put_text(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\t') {
			putc(' ', f);
		} else if (ch < 0x20 || ch == 0x7f) {
			putc('?', f);
		} else if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
		           (unsigned char)s[i + 1] <= 0x9f) {
			putc('?', f);
			i++;
		} else {
			putc(ch, f);
		}
	}
}

/* "memtracectl: message" on stderr, for --table. */
static void print_error_line(const char *msg)
{
	fputs("memtracectl: ", stderr);
	client_put_text(stderr, msg, strlen(msg));
	putc('\n', stderr);
}

void client_print_json(const cJSON *j)
{
	/* Exact integers, valid UTF-8 (jsonout.h); it repairs j's strings in
	 * place, which nothing after printing minds. */
	char *s = jsonout_print((cJSON *)j, true);

	fputs(s, stdout);
	putchar('\n');
	cJSON_free(s);
}

static void print_error(struct client *c, const char *code, const char *msg)
{
	cJSON *o, *e;

	if (c->quiet)
		return;
	if (c->table || c->errors_to_stderr) {
		print_error_line(msg);
		return;
	}
	o = cJSON_CreateObject();
	e = cJSON_AddObjectToObject(o, "error");
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", msg);
	client_print_json(o);
	cJSON_Delete(o);
}

int client_error(struct client *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	print_error(c, code, msg);
	free(msg);
	return status;
}

/* ---- the connection ---- */

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/*
 * Which control.sock to use: --socket as given, else control.sock in
 * --runtime-dir, else in the runtime dir of paths.h. An ordinary user whose
 * own runtime dir has no control.sock may be served by the system daemon, so
 * /run/memtrace comes next (paths.h); if it has none either, the user's own
 * path is kept for the error message and *also gets the other.
 */
static int resolve_socket(struct client *c, char **also, char *why, size_t cap)
{
	char dir[PATH_MAX], path[PATH_MAX], sys[PATH_MAX];
	int rc;

	*also = NULL;
	free(c->socket_path); /* connecting again after a hang-up */
	c->socket_path = NULL;
	if (c->socket_opt != NULL) {
		c->socket_path = xstrdup(c->socket_opt);
		return 0;
	}
	if (c->runtime_dir_opt != NULL) {
		rc = paths_join(path, sizeof(path), c->runtime_dir_opt, PATHS_CONTROL_SOCK);
		if (rc < 0)
			return rc;
		c->socket_path = xstrdup(path);
		return 0;
	}
	rc = paths_runtime_dir(dir, sizeof(dir));
	if (rc < 0)
		return rc;
	/* A directory the user did not name (MEMTRACE_RUNTIME_DIR or
	 * --runtime-dir) must be theirs or root's and closed to others:
	 * /tmp/memtrace-$UID, for a user without XDG_RUNTIME_DIR, may have been
	 * made by someone else, with a socket of their choice in it. */
	if (getenv("MEMTRACE_RUNTIME_DIR") == NULL && safedir_check(dir, why, cap) == -EPERM)
		return -EPERM;
	rc = paths_join(path, sizeof(path), dir, PATHS_CONTROL_SOCK);
	if (rc < 0)
		return rc;
	if (geteuid() != 0 && !exists(path)) {
		rc = paths_join(sys, sizeof(sys), PATHS_SYSTEM_RUNTIME_DIR, PATHS_CONTROL_SOCK);
		if (rc < 0)
			return rc;
		if (exists(sys)) {
			c->socket_path = xstrdup(sys);
			return 0;
		}
		*also = xstrdup(sys);
	}
	c->socket_path = xstrdup(path);
	return 0;
}

/* Connects c->fd; on failure reports daemon_unreachable and returns the exit status. */
static void client_disconnect(struct client *c);

/* Whoever listens on the socket gets our requests and writes what we
 * print: it must be root's daemon (the system one) or our own. A socket of
 * anybody else's, in a directory they made where ours should be, is
 * refused before a byte is sent. The credentials are those of the process
 * that listens (for a socket systemd passed, systemd's: root). */
/* Who serves the connection: 0 with its uid, or -errno. */
static int peer_uid(int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	*uid = cred.uid;
	return 0;
}

/* The daemons memtracectl talks to: root's and the user's own. */
static bool trusted(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

static int check_peer(struct client *c)
{
	uid_t uid = 0;
	int rc = peer_uid(c->fd, &uid);

	if (rc < 0) {
		client_disconnect(c);
		return client_error(c, CLIENT_EXIT_ERROR, "daemon_unreachable",
		                    "cannot tell who serves %s: %s", c->socket_path, strerror(-rc));
	}
	if (trusted(uid))
		return 0;
	client_disconnect(c);
	return client_error(c, CLIENT_EXIT_ERROR, "untrusted_daemon",
	                    "%s is served by uid %u, neither root nor you (uid %u): refusing to "
	                    "talk to it; use a runtime directory of your own (--runtime-dir)",
	                    c->socket_path, (unsigned)uid, (unsigned)geteuid());
}

static int client_connect(struct client *c)
{
	char *also = NULL;
	int rc;

	char why[256] = "";
	rc = resolve_socket(c, &also, why, sizeof why);
	if (rc == -EPERM) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "untrusted_daemon",
		                  "refusing the runtime directory: %s (another user may have made "
		                  "it); give --runtime-dir, or set XDG_RUNTIME_DIR",
		                  why);
		goto out;
	}
	if (rc < 0) {
		rc = client_error(c, CLIENT_EXIT_ERROR, "daemon_unreachable",
		                  "cannot name the control socket: %s", strerror(-rc));
		goto out;
	}
	rc = ctlwire_connect(c->socket_path);
	if (rc < 0) {
		/* Only a missing or dead socket suggests the daemon is not running. */
		bool down = rc == -ENOENT || rc == -ECONNREFUSED;
		rc = client_error(c, CLIENT_EXIT_ERROR, "daemon_unreachable",
		                  "cannot connect to memtraced at %s: %s%s%s%s%s", c->socket_path,
		                  strerror(-rc),
		                  also != NULL ? " (nor is there a system daemon at " : "",
		                  also != NULL ? also : "", also != NULL ? ")" : "",
		                  down ? "; is memtraced running?" : "");
		goto out;
	}
	c->fd = rc;
	rc = check_peer(c);
out:
	free(also);
	return rc;
}

int client_connect_quiet(struct client *c)
{
	char *also = NULL;
	uid_t uid = 0;
	int rc;

	if (c->fd >= 0)
		return 0;
	char why[256];
	rc = resolve_socket(c, &also, why, sizeof why);
	free(also);
	if (rc < 0 || (rc = ctlwire_connect(c->socket_path)) < 0)
		return -1;
	c->fd = rc;
	if (peer_uid(c->fd, &uid) < 0 || !trusted(uid)) {
		client_disconnect(c);
		return -1;
	}
	return 0;
}

/* A connection whose framing went wrong cannot carry another request. */
static void client_disconnect(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

void client_hang_up(struct client *c)
{
	client_disconnect(c);
}

static int report_recv_error(struct client *c, int err)
{
	switch (err) {
	case -ECONNRESET:
		return client_error(c, CLIENT_EXIT_ERROR, "daemon_unreachable",
		                    "memtraced at %s closed the connection before it answered",
		                    c->socket_path);
	case -EMSGSIZE:
		return client_error(c, CLIENT_EXIT_ERROR, "bad_response",
		                    "the response of memtraced at %s is over %u bytes",
		                    c->socket_path, CTLWIRE_MAX_RESPONSE);
	case -EBADMSG:
		return client_error(c, CLIENT_EXIT_ERROR, "bad_response",
		                    "the response of memtraced at %s contains a NUL byte",
		                    c->socket_path);
	default:
		return client_error(c, CLIENT_EXIT_ERROR, "daemon_unreachable",
		                    "cannot read from memtraced at %s: %s", c->socket_path,
		                    strerror(-err));
	}
}

/* An error response: printed as the daemon sent it, or its message alone. */
int client_report_error(struct client *c, const cJSON *resp)
{
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp, "error");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");

	if (!c->table && !c->errors_to_stderr) {
		client_print_json(resp);
		return CLIENT_EXIT_ERROR;
	}
	if (cJSON_IsString(msg)) {
		print_error_line(msg->valuestring);
	} else {
		char *s = xasprintf("memtraced reports %s",
		                    cJSON_IsString(code) ? code->valuestring : "an error");
		print_error_line(s);
		free(s);
	}
	return CLIENT_EXIT_ERROR;
}

const char *client_error_code(const cJSON *resp)
{
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp, "error");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");

	if (err == NULL)
		return NULL;
	return cJSON_IsString(code) ? code->valuestring : "";
}

cJSON *client_stats_of(struct client *c, int pid, bool *live)
{
	cJSON *req = cJSON_CreateObject(), *resp = NULL;

	*live = false;
	cJSON_AddStringToObject(req, "cmd", "stats");
	cJSON_AddNumberToObject(req, "pid", pid);
	if (client_call_raw(c, req, &resp) != 0 || client_error_code(resp) != NULL) {
		cJSON_Delete(resp);
		resp = NULL;
	} else {
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(resp, "state");
		*live = cJSON_IsString(state) && strcmp(state->valuestring, "live") == 0;
	}
	cJSON_Delete(req);
	return resp;
}

int client_call_raw(struct client *c, const cJSON *req, cJSON **resp)
{
	char *line = NULL, *text = NULL;
	cJSON *r = NULL;
	int rc;

	*resp = NULL;
	line = cJSON_PrintUnformatted(req);
	if (strlen(line) > CTLWIRE_MAX_REQUEST) {
		rc = client_error(c, CLIENT_EXIT_USAGE, "bad_request",
		                  "the request is over the %u bytes memtraced accepts",
		                  CTLWIRE_MAX_REQUEST);
		goto out;
	}
	if (c->fd < 0) {
		rc = client_connect(c);
		if (rc != 0)
			goto out;
	}
	rc = ctlwire_send(c->fd, line);
	if (rc < 0) {
		/* A daemon that refuses the connection (a limit) says why in
		 * one line and closes: that line may already be here. */
		if (ctlwire_recv(c->fd, &text, CTLWIRE_MAX_RESPONSE) == 0 &&
		    cJSON_IsObject(r = cJSON_ParseWithOpts(text, NULL, 1))) {
			client_disconnect(c);
			goto answered;
		}
		client_disconnect(c);
		rc = client_error(c, CLIENT_EXIT_ERROR, "daemon_unreachable",
		                  "cannot send to memtraced at %s: %s", c->socket_path,
		                  strerror(-rc));
		goto out;
	}
	rc = ctlwire_recv(c->fd, &text, CTLWIRE_MAX_RESPONSE);
	if (rc < 0) {
		client_disconnect(c);
		rc = report_recv_error(c, rc);
		goto out;
	}
	r = jsonout_parse(text);
	if (!cJSON_IsObject(r)) {
		client_disconnect(c);
		rc = client_error(c, CLIENT_EXIT_ERROR, "bad_response",
		                  "memtraced at %s sent a response that is not a JSON object",
		                  c->socket_path);
		goto out;
	}
answered:
	*resp = r;
	r = NULL;
	rc = 0;
out:
	cJSON_Delete(r);
	free(text);
	cJSON_free(line);
	return rc;
}

int client_call(struct client *c, const cJSON *req, cJSON **resp)
{
	cJSON *r = NULL;
	int rc;

	*resp = NULL;
	rc = client_call_raw(c, req, &r);
	if (rc != 0)
		return rc;
	if (client_error_code(r) != NULL) {
		rc = client_report_error(c, r);
		cJSON_Delete(r);
		return rc;
	}
	*resp = r;
	return 0;
}

void client_output(struct client *c, const cJSON *resp, client_render_fn render)
{
	if (c->table)
		render(resp);
	else
		client_print_json(resp);
}

int client_request(struct client *c, cJSON *req, client_render_fn render)
{
	cJSON *resp = NULL;
	int rc;

	rc = client_call(c, req, &resp);
	if (rc != 0)
		goto out;
	client_output(c, resp, render);
	rc = CLIENT_EXIT_OK;
out:
	cJSON_Delete(resp);
	cJSON_Delete(req);
	return rc;
}

/* As snapshot -o: 0600 (a heap's stacks and paths are the user's), and not
 * through a link someone else planted. */
static FILE *open_private(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (fd >= 0 && f == NULL)
		close(fd);
	return f;
}

int client_write_out(struct client *c, const char *path, const void *p, size_t n)
{
	FILE *f = path != NULL ? open_private(path) : stdout;

	if (f == NULL)
		return client_error(c, CLIENT_EXIT_ERROR, "file_error", "cannot write %s: %s", path,
		                    strerror(errno));
	bool ok = fwrite(p, 1, n, f) == n;
	ok = (path != NULL ? fclose(f) == 0 : fflush(f) == 0) && ok;
	if (!ok)
		return client_error(c, CLIENT_EXIT_ERROR, "file_error", "cannot write %s: %s",
		                    path != NULL ? path : "standard output", strerror(errno));
	return CLIENT_EXIT_OK;
}
