/*
 * fuzz_control.c - libFuzzer target for the control requests
 * (daemon/control.c, CONTROL.md): what a local user writes to control.sock,
 * parsed and dispatched by the real control server.
 *
 * Once per process the target sets up a daemon the way memtraced's main()
 * does, minus the agent socket and the signals: its own libuv loop, the
 * shared limits, the symbol cache, the job runner and the snapshot store
 * (scheduler_new, in a fresh directory under /dev/shm or $TMPDIR), and the
 * control server listening in a fresh runtime directory. It holds sessions
 * this file builds, with heaps whose figures it knows: pid 100 live and
 * pid 100 exited earlier (both the fuzzer's own uid, an executable path
 * with a byte that is not UTF-8), pid 200 exited under another uid. None
 * has a region or modules, so a query symbolizes nothing from disk.
 *
 * Each input is what one client writes on one connection before it closes
 * its end. The target connects, writes it, turns the loop until every
 * complete line is answered (or the daemon closes), then closes and turns
 * the loop until the connection is gone. Beyond "no crash, no hang, no
 * leak", in the order of the lines:
 *  - every line gets exactly one answer line, in order, until the first one
 *    that is not a JSON object (with only blanks after it, no NUL): that
 *    one is answered bad_request and then the connection ends;
 *  - every answer is valid UTF-8 and one JSON object; an error has a string
 *    code of CONTROL.md's list and a string message;
 *  - a request whose "cmd" is not a string is bad_request, an unknown
 *    command unknown_command; "status" and "list" never fail, and "list"
 *    shows exactly the sessions the client may see;
 *  - afterwards no connection is left, no answer byte is counted as unread
 *    and the connection limit is back to 0; no heap's blocks or current
 *    bytes changed (queries read, only reset-peak writes, and only the peak).
 *
 * fuzz/standalone.c replays inputs without libFuzzer (see README.md); the
 * unit tests replay the committed corpus that way.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "control.h"
#include "daemon.h"
#include "heap.h"
#include "jobs.h"
#include "log.h"
#include "scheduler.h"
#include "session.h"
#include "store.h"
#include "symbols.h"
#include "xalloc.h"
#include "xalloc_cjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX 65536 /* below a Unix socket's buffer: one write, never blocked */

/* Every code daemon/CONTROL.md lists. */
static const char *const error_codes[] = {
    "bad_request",          "unknown_command",    "no_such_process",
    "no_such_snapshot",     "snapshot_deleted",   "store_error",
    "too_many_connections", "too_many_snapshots", "not_live",
    "no_web_interface",     "too_many_sessions",  "internal",
    "detach_failed",        "not_traced",         "not_yours",
    "no_such_block",
};
static const char *const commands[] = {
    "status",   "list",      "stats",        "reset-peak", "top",   "traceback",
    "snapshot", "snapshots", "snapshot-get", "detach",     "where",
};

/* The one daemon of the process, and what its heaps held at the start. */
struct fixture {
	struct daemon d;
	uv_loop_t loop;
	char dir[256];
	size_t nsessions, visible;
	uint64_t blocks[8], current[8];
};
static struct fixture *F;

/* ---- the daemon ---- */

static void remove_tree(void)
{
	char cmd[300];

	if (F == NULL || F->dir[0] == '\0')
		return;
	/* The store, its journal files, the socket, the two directories. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_control: could not remove %s\n", F->dir);
}

/* A session this file builds: `nblocks` blocks of 16 * (i + 1) bytes on
 * stacks 0..3 (stack 0 is the unknown one). */
static void add_session(pid_t pid, uid_t uid, bool live, size_t nblocks)
{
	static const uint64_t frames[] = {0x401000, 0x402000, 0x403000};
	struct session *s = session_new(&F->d);
	static const char exe[] = "/usr/bin/pr\xffg";
	static const char cmdline[] = "prog\0--flag=\xc3\x28\0last";

	s->pid = pid;
	s->uid = uid;
	s->hello = true;
	s->state = live ? SESSION_LIVE : SESSION_EXITED;
	s->exe = xstrdup(exe);
	s->cmdline = xmalloc(sizeof(cmdline));
	memcpy(s->cmdline, cmdline, sizeof(cmdline));
	s->cmdline_len = sizeof(cmdline);
	s->start_time = 1000 + (uint64_t)pid;
	for (uint32_t id = 1; id <= 3; id++)
		if (heap_define_stack(&s->heap, id, frames, id) < 0)
			abort();
	for (size_t i = 0; i < nblocks; i++) {
		struct proto_event ev = {.seq = i + 1,
		                         .addr = 0x10000 + 0x100 * i,
		                         .size = 16 * (i + 1),
		                         .stack_id = (uint32_t)(i % 4),
		                         .kind = PROTO_EV_ALLOC};
		if (heap_apply(&s->heap, &ev) < 0)
			abort();
	}
	s->next = F->d.sessions;
	F->d.sessions = s;
	F->nsessions++;
	if (getuid() == 0 || uid == getuid())
		F->visible++;
}

static void make_dir(const char *path)
{
	if (mkdir(path, 0700) < 0)
		abort();
}

static void setup(void)
{
	struct daemon *d;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");

	F = xcalloc(1, sizeof(*F));
	d = &F->d;
	xalloc_cjson_hooks();
	log_set_level(LOG_ERR); /* refused requests are logged as warnings */
	snprintf(F->dir, sizeof(F->dir), "%s/fuzz_control.XXXXXX", base ? base : "/tmp");
	if (mkdtemp(F->dir) == NULL)
		abort();
	atexit(remove_tree);
	d->cfg.runtime_dir = xasprintf("%s/run", F->dir);
	d->cfg.state_dir = xasprintf("%s/state", F->dir);
	make_dir(d->cfg.runtime_dir);
	make_dir(d->cfg.state_dir);
	d->cfg.max_sessions = 16;
	d->cfg.max_exited = 16;
	d->cfg.max_blocks = 1000;
	d->cfg.max_stacks = 100;
	d->cfg.retain_snapshots = 2; /* "snapshot" requests write: keep the store small */
	d->cfg.control_timeout_ms = 30000;
	d->agent_fd = d->control_fd = -1;
	d->control_path = xasprintf("%s/control.sock", d->cfg.runtime_dir);
	if (uv_loop_init(&F->loop) < 0)
		abort();
	d->loop = &F->loop;
	d->started_ms = uv_now(d->loop);
	limit_init(&d->control_conns, "control_connections", "control connections",
	           "--max-control-connections", "--max-control-connections-per-uid", 4, 4);
	limit_init(&d->snap_queue, "queued_snapshots", "snapshots waiting to be written",
	           "--max-queued-snapshots", "--max-queued-snapshots-per-uid", 64, 64);
	limit_init(&d->snap_bytes, "queued_snapshot_bytes", "bytes of snapshots waiting",
	           "--max-queued-snapshot-bytes", "a quarter", 1 << 26, 1 << 24);
	d->syms = symbols_new(false);
	d->jobs = jobs_new();
	if (scheduler_new(d, &d->sched) < 0)
		abort();
	if (control_start(d) < 0)
		abort();
	add_session(100, getuid(), false, 3);
	add_session(200, getuid() + 1, false, 5);
	add_session(100, getuid(), true, 7);
	size_t i = 0;
	for (struct session *s = d->sessions; s != NULL; s = s->next, i++) {
		F->blocks[i] = s->heap.blocks;
		F->current[i] = s->heap.current;
	}
}

/* ---- the client's side ---- */

static int client_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0 || strlen(F->d.control_path) >= sizeof(sa.sun_path))
		abort();
	strcpy(sa.sun_path, F->d.control_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	return fd;
}

struct answers {
	char *buf;
	size_t len, cap;
	bool eof;
};

/* Takes what the daemon has written so far. */
static void client_read(int fd, struct answers *a)
{
	for (;;) {
		if (a->cap - a->len < 65536) {
			a->cap = a->cap ? a->cap * 2 : 131072;
			a->buf = xrealloc(a->buf, a->cap);
		}
		ssize_t n = read(fd, a->buf + a->len, a->cap - a->len);
		if (n > 0) {
			a->len += (size_t)n;
			continue;
		}
		if (n == 0)
			a->eof = true;
		else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			a->eof = true; /* ECONNRESET: the daemon closed first */
		return;
	}
}

static size_t count_lines(const struct answers *a)
{
	size_t n = 0;
	for (size_t i = 0; i < a->len; i++)
		n += a->buf[i] == '\n';
	return n;
}

/* ---- what must hold ---- */

static bool utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* The request as the daemon must take it: a JSON object with only blanks
 * after it, and no NUL in the line. NULL when it is not one. */
static cJSON *request_of(const char *line, size_t len)
{
	const char *end = NULL;
	cJSON *req;

	if (memchr(line, '\0', len) != NULL)
		return NULL;
	req = cJSON_ParseWithLengthOpts(line, len, &end, 0);
	while (req != NULL && end < line + len && (*end == ' ' || *end == '\t' || *end == '\r'))
		end++;
	if (req != NULL && (end != line + len || !cJSON_IsObject(req))) {
		cJSON_Delete(req);
		req = NULL;
	}
	return req;
}

/* Checks answer `ans` (one line, no '\n') to request `req` (NULL: the line
 * was not a JSON object). */
static void check_answer(const cJSON *req, const char *ans, size_t len)
{
	if (!utf8_valid((const unsigned char *)ans, len))
		abort();
	cJSON *a = cJSON_ParseWithLength(ans, len);
	if (!cJSON_IsObject(a))
		abort();
	cJSON *err = cJSON_GetObjectItemCaseSensitive(a, "error");
	const char *code = NULL;
	if (err != NULL) {
		cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
		if (!cJSON_IsString(c) ||
		    !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")) ||
		    !in_list(c->valuestring, error_codes,
		             sizeof(error_codes) / sizeof(*error_codes)))
			abort();
		code = c->valuestring;
	}
	if (req == NULL) {
		if (code == NULL || strcmp(code, "bad_request") != 0)
			abort();
		cJSON_Delete(a);
		return;
	}
	cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	if (!cJSON_IsString(cmd)) {
		if (code == NULL || strcmp(code, "bad_request") != 0)
			abort();
	} else if (!in_list(cmd->valuestring, commands, sizeof(commands) / sizeof(*commands))) {
		if (code == NULL || strcmp(code, "unknown_command") != 0)
			abort();
	} else if (strcmp(cmd->valuestring, "status") == 0) {
		if (code != NULL || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a, "version")))
			abort();
	} else if (strcmp(cmd->valuestring, "list") == 0) {
		cJSON *p = cJSON_GetObjectItemCaseSensitive(a, "processes");
		if (code != NULL || !cJSON_IsArray(p) ||
		    (size_t)cJSON_GetArraySize(p) != F->visible)
			abort();
	}
	cJSON_Delete(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct answers a = {0};
	size_t expect = 0, pos = 0;
	bool ends = false; /* a line that is not a request closes the connection */
	cJSON **reqs;

	if (size > INPUT_MAX)
		return 0;
	if (F == NULL)
		setup();

	/* What the daemon must answer: one line per complete line, up to and
	 * including the first that is not a JSON object. */
	reqs = xcalloc(size + 1, sizeof(*reqs));
	while (!ends) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - (data + pos));
		reqs[expect] = request_of((const char *)data + pos, len);
		ends = reqs[expect] == NULL;
		expect++;
		pos += len + 1;
	}

	int fd = client_connect();
	if (size > 0 && send(fd, data, size, MSG_NOSIGNAL) != (ssize_t)size)
		abort();
	while (!a.eof && count_lines(&a) < expect) {
		uv_run(F->d.loop, UV_RUN_ONCE);
		client_read(fd, &a);
	}
	/* Nothing more may come: not before the client's end closes... */
	uv_run(F->d.loop, UV_RUN_NOWAIT);
	client_read(fd, &a);
	if (count_lines(&a) != expect)
		abort();
	/* ...and after a line that is not a request, the daemon closes. */
	if (ends) {
		while (!a.eof) {
			uv_run(F->d.loop, UV_RUN_ONCE);
			client_read(fd, &a);
		}
		if (count_lines(&a) != expect || (a.len > 0 && a.buf[a.len - 1] != '\n'))
			abort();
	}
	close(fd);

	size_t off = 0;
	for (size_t i = 0; i < expect; i++) {
		char *nl = memchr(a.buf + off, '\n', a.len - off);
		check_answer(reqs[i], a.buf + off, (size_t)(nl - (a.buf + off)));
		off = (size_t)(nl - a.buf) + 1;
		cJSON_Delete(reqs[i]);
	}
	free(reqs);
	free(a.buf);

	while (F->d.conns != NULL)
		uv_run(F->d.loop, UV_RUN_ONCE);
	if (F->d.control_unread != 0 || F->d.control_conns.used != 0)
		abort();
	size_t i = 0;
	for (struct session *s = F->d.sessions; s != NULL; s = s->next, i++)
		if (s->heap.blocks != F->blocks[i] || s->heap.current != F->current[i] ||
		    s->heap.peak < s->heap.current)
			abort();
	if (i != F->nsessions)
		abort();
	return 0;
}
