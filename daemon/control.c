/* control.c - the JSON control server (see control.h and CONTROL.md). */
#include "control.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "limit.h"
#include "log.h"
#include "query.h"
#include "session.h"
#include "symbols.h"
#include "capture.h"
#include "jobs.h"
#include "jsonout.h"
#include "snapshot.h"
#include "store.h"
#include "webtoken.h"
#include "flame.h"
#include "xalloc.h"

struct conn {
	struct daemon *d;
	struct conn *next, **prevp; /* d->conns */
	uv_pipe_t pipe;
	uid_t uid;
	pid_t pid;
	char *buf;
	size_t len, cap;
	size_t off;           /* requests before it are answered */
	size_t scanned;       /* buf[off, scanned) holds no '\n' */
	int refs;             /* the handle, plus one per request in flight */
	bool busy;            /* a request is being answered: later lines wait */
	bool closing;         /* no more reads or writes */
	bool counted;         /* charged to d->control_conns */
	bool paused;          /* too many unread answer bytes: not read from */
	bool reading;         /* uv_read_start is in effect */
	bool backlog;         /* complete requests wait for the next turn (d->control_idle) */
	size_t unread;        /* answer bytes queued, not yet taken by the client */
	uint64_t progress_ms; /* uv_now when the client last took some */
	uint64_t partial_ms;  /* uv_now when the pending partial request began */
	/* A request of the web interface (control_call): no pipe; its one
	 * answer goes to answer(answer_arg, text), then it is closing. */
	bool web;
	control_answer_fn answer;
	void *answer_arg;
};

static void conn_process(struct conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

/* ---- connection lifetime and replies ---- */

static void conn_unref(struct conn *c)
{
	if (--c->refs > 0)
		return;
	if (c->prevp != NULL) {
		*c->prevp = c->next;
		if (c->next != NULL)
			c->next->prevp = c->prevp;
	}
	free(c->buf);
	free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (c->counted)
		limit_give(&c->d->control_conns, c->uid, 1);
	c->counted = false;
	conn_unref(c);
}

/* Reads only when a request may be taken: not while one is answered, nor
 * while the client leaves too much of its answers unread. */
static void conn_update_read(struct conn *c)
{
	if (c->web)
		return;
	bool want = !c->closing && !c->busy && !c->paused && !c->backlog;
	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
			c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->web)
		return;
	uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

struct wreq {
	uv_write_t w;
	struct conn *c;
	size_t len;
	char *text;
};

/* Also called, with UV_ECANCELED, for the writes a closing connection
 * drops; the connection lives until its close callback, which comes after. */
static void on_written(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	struct conn *c = wr->c;

	(void)status;
	c->unread -= wr->len;
	c->d->control_unread -= wr->len;
	c->progress_ms = uv_now(c->d->loop);
	free(wr->text);
	free(wr);
	if (c->paused && !c->closing && c->unread <= CONTROL_MAX_UNREAD / 2) {
		c->paused = false;
		conn_process(c);
	}
}

/* Sends one response line; takes ownership of text (from cJSON_Print*, which
 * never returns NULL: cJSON allocates through xmalloc, xalloc_cjson.h). */
static void conn_send_text(struct conn *c, char *text)
{
	if (c->closing) {
		free(text);
		return;
	}
	if (c->web) {
		c->closing = true; /* one answer; nothing else is read */
		c->answer(c->answer_arg, text);
		return;
	}
	size_t n = strlen(text);
	struct wreq *wr = xmalloc(sizeof(*wr));
	wr->c = c;
	wr->len = n + 1;
	wr->text = xrealloc(text, n + 2);
	wr->text[n] = '\n';
	wr->text[n + 1] = '\0';
	uv_buf_t b = uv_buf_init(wr->text, (unsigned)(n + 1));
	if (uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0) {
		free(wr->text);
		free(wr);
		conn_close(c);
		return;
	}
	if (c->unread == 0)
		c->progress_ms = uv_now(c->d->loop);
	c->unread += wr->len;
	c->d->control_unread += wr->len;
	/* A client that sends requests but never reads the answers would make
	 * the daemon buffer them without bound: its next requests wait until
	 * it has read half of what is queued (conn_update_read). */
	if (c->unread > CONTROL_MAX_UNREAD && !c->paused) {
		c->paused = true;
		c->d->control_paused++;
		log_debug("control: pid %d leaves %zu bytes of answers unread; not reading its "
		          "requests until it reads them",
		          (int)c->pid, c->unread);
		conn_update_read(c);
	}
}

/* Sends one response line and frees `resp`. Small answers only: large ones
 * are printed on the thread pool (cjob_compute) so the loop never spends
 * seconds turning megabytes of JSON into text. */
static void conn_send(struct conn *c, cJSON *resp)
{
	char *text = jsonout_print(resp, false);
	cJSON_Delete(resp);
	conn_send_text(c, text);
}

static cJSON *error_json(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static cJSON *error_json(const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON *root = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(root, "error");
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", msg);
	return root;
}

/* ---- request arguments ---- */

static int arg_pid(cJSON *req, pid_t *pid, cJSON **err)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "pid");
	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > INT32_MAX ||
	    v->valuedouble != floor(v->valuedouble)) {
		*err = error_json("bad_request", "\"pid\" must be a positive integer");
		return -EINVAL;
	}
	*pid = (pid_t)v->valuedouble;
	return 0;
}

static int arg_uint(cJSON *req, const char *name, size_t def, size_t *out, cJSON **err)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);
	if (v == NULL) {
		*out = def;
		return 0;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15 ||
	    v->valuedouble != floor(v->valuedouble)) {
		*err = error_json("bad_request", "\"%s\" must be a non-negative integer", name);
		return -EINVAL;
	}
	*out = (size_t)v->valuedouble;
	return 0;
}

static int arg_bool(cJSON *req, const char *name, bool *out, cJSON **err)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);
	if (v == NULL) {
		*out = false;
		return 0;
	}
	if (!cJSON_IsBool(v)) {
		*err = error_json("bad_request", "\"%s\" must be true or false", name);
		return -EINVAL;
	}
	*out = cJSON_IsTrue(v);
	return 0;
}

/* The newest session of pid visible to the client: live first, else the
 * most recent one that exited. */
static struct session *find_session(struct conn *c, pid_t pid)
{
	struct session *exited = NULL;
	for (struct session *s = c->d->sessions; s != NULL; s = s->next) {
		if (s->pid != pid || !s->hello)
			continue;
		if (c->uid != 0 && s->uid != c->uid)
			continue;
		if (s->state == SESSION_LIVE) {
			/* Answers are live: what the region holds now counts. */
			session_drain(s, false);
			return s;
		}
		if (exited == NULL)
			exited = s;
	}
	return exited;
}

/* Whether /proc hides other users' processes from them (hidepid): then
 * the daemon must not tell them apart from processes that do not exist. */
static bool proc_hides_pids(void)
{
	char line[512];
	bool hides = false;
	FILE *f = fopen("/proc/self/mounts", "re");

	if (f == NULL)
		return true;
	while (fgets(line, sizeof line, f) != NULL) {
		char dev[64], dir[256], type[32], opts[256];
		if (sscanf(line, "%63s %255s %31s %255s", dev, dir, type, opts) != 4 ||
		    strcmp(dir, "/proc") != 0 || strcmp(type, "proc") != 0)
			continue;
		const char *h = strstr(opts, "hidepid=");
		hides = h != NULL && strncmp(h + 8, "0", 1) != 0 && strncmp(h + 8, "off", 3) != 0;
	}
	fclose(f);
	return hides;
}

/* Why pid names nothing the client may see, as an error: no process of
 * that pid, another user's (what /proc shows everybody already; not where
 * /proc hides it), or a process that is not traced, with what to do. */
static cJSON *control_unknown_pid(uid_t uid, pid_t pid)
{
	char path[32];
	struct stat st;

	snprintf(path, sizeof path, "/proc/%d", (int)pid);
	if (stat(path, &st) != 0 || (uid != 0 && st.st_uid != uid && proc_hides_pids()))
		return error_json("no_such_process",
		                  "no process %d (memtraced holds nothing of one, nor a stored "
		                  "snapshot)",
		                  (int)pid);
	if (uid != 0 && st.st_uid != uid)
		return error_json("not_yours",
		                  "process %d is uid %u's: you see your own processes only (root: "
		                  "every one)",
		                  (int)pid, (unsigned)st.st_uid);
	return error_json("not_traced",
	                  "process %d is not traced: start it under memtrace ('memtracectl run "
	                  "-- PROGRAM', or LD_PRELOAD=libmemtrace.so), or trace it from now on "
	                  "with 'memtracectl attach %d'",
	                  (int)pid, (int)pid);
}

static struct session *arg_session(struct conn *c, cJSON *req, cJSON **err)
{
	pid_t pid;
	if (arg_pid(req, &pid, err) < 0)
		return NULL;
	struct session *s = find_session(c, pid);
	if (s == NULL)
		*err = control_unknown_pid(c->uid, pid);
	return s;
}

/* ---- synchronous commands ---- */

static cJSON *cmdline_json(const struct session *s)
{
	cJSON *arr = cJSON_CreateArray();
	size_t i = 0;
	while (s->cmdline != NULL && i < s->cmdline_len) {
		size_t l = strnlen(s->cmdline + i, s->cmdline_len - i);
		char *arg = xstrndup(s->cmdline + i, l);
		cJSON_AddItemToArray(arr, cJSON_CreateString(arg));
		free(arg);
		i += l + 1;
	}
	return arr;
}

/* One shared limit as status shows it; `yours` is what uid holds (omitted
 * when owners are not uids). */
static cJSON *limit_json(const struct limit *l, const char *per, bool by_uid, uid_t uid)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "used", (double)l->used);
	cJSON_AddNumberToObject(o, "max", (double)l->max);
	cJSON_AddNumberToObject(o, per, (double)l->per_owner);
	if (by_uid)
		cJSON_AddNumberToObject(o, "yours", (double)limit_used_by(l, uid));
	cJSON_AddNumberToObject(o, "refused", (double)l->refused);
	return o;
}

static cJSON *store_uid_json(const struct store_uid_usage *e)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "uid", (double)e->uid);
	jsonout_add_u64(o, "bytes", e->bytes);
	jsonout_add_u64(o, "snapshots", e->snapshots);
	jsonout_add_u64(o, "evicted_per_uid", e->evicted_own);
	jsonout_add_u64(o, "evicted_total", e->evicted_total);
	jsonout_add_u64(o, "refused", e->refused);
	return o;
}

/* The stored snapshots' charges and bounds (store.h): limits.store_bytes
 * like the other limits (used: all uids, yours: the asker's), and "store"
 * with the figures: for root of all uids, for another uid its own, the
 * sums over all uids in the *_all keys, and the per-uid entries (the
 * asking uid's alone unless it is root). */
static void add_store_status(cJSON *r, cJSON *lim, const struct daemon *d, uid_t uid)
{
	struct store_usage u;
	struct store_uid_usage mine = {.uid = uid};
	uint64_t file_bytes = 0, own = 0;

	if (d->store == NULL) {
		cJSON_AddNullToObject(lim, "store_bytes");
		cJSON_AddNullToObject(r, "store");
		return;
	}
	store_usage(d->store, &u);
	for (size_t i = 0; i < u.nuids; i++)
		if (u.uids[i].uid == uid)
			mine = u.uids[i];
	own = mine.bytes;
	if (uid == 0) {
		mine.bytes = u.bytes;
		mine.snapshots = u.snapshots;
		mine.evicted_own = u.evicted_own;
		mine.evicted_total = u.evicted_total;
		mine.refused = u.refused;
	}
	cJSON *st = cJSON_AddObjectToObject(r, "store");
	jsonout_add_u64(st, "bytes", mine.bytes);
	jsonout_add_u64(st, "snapshots", mine.snapshots);
	jsonout_add_u64(st, "max_bytes", u.max_bytes);
	jsonout_add_u64(st, "max_bytes_per_uid", u.max_bytes_per_uid);
	jsonout_add_u64(st, "evicted_per_uid", mine.evicted_own);
	jsonout_add_u64(st, "evicted_total", mine.evicted_total);
	jsonout_add_u64(st, "refused", mine.refused);
	jsonout_add_u64(st, "bytes_all", u.bytes);
	jsonout_add_u64(st, "snapshots_all", u.snapshots);
	jsonout_add_u64(st, "evicted_per_uid_all", u.evicted_own);
	jsonout_add_u64(st, "evicted_total_all", u.evicted_total);
	jsonout_add_u64(st, "refused_all", u.refused);
	if (store_file_bytes(d->store, &file_bytes) == 0)
		jsonout_add_u64(st, "file_bytes", file_bytes);
	else
		cJSON_AddNullToObject(st, "file_bytes");
	cJSON *arr = cJSON_AddArrayToObject(st, "uids");
	for (size_t i = 0; i < u.nuids; i++)
		if (uid == 0 || u.uids[i].uid == uid)
			cJSON_AddItemToArray(arr, store_uid_json(&u.uids[i]));
	cJSON *o = cJSON_AddObjectToObject(lim, "store_bytes");
	jsonout_add_u64(o, "used", u.bytes);
	jsonout_add_u64(o, "max", u.max_bytes);
	jsonout_add_u64(o, "per_uid", u.max_bytes_per_uid);
	jsonout_add_u64(o, "yours", own);
	jsonout_add_u64(o, "refused", mine.refused);
	jsonout_add_u64(o, "refused_all", u.refused);
	store_usage_free(&u);
}

static cJSON *cmd_status(struct conn *c, cJSON *req, struct session *unused)
{
	struct daemon *d = c->d;
	struct symbols_stats ss;
	cJSON *r = cJSON_CreateObject();

	(void)req;
	(void)unused;
	cJSON_AddStringToObject(r, "version", PACKAGE_VERSION);
	cJSON_AddNumberToObject(r, "pid", (double)getpid());
	cJSON_AddNumberToObject(r, "uptime_seconds",
	                        (double)(uv_now(d->loop) - d->started_ms) / 1000.0);
	cJSON_AddStringToObject(r, "runtime_dir", d->cfg.runtime_dir);
	cJSON_AddStringToObject(r, "state_dir", d->cfg.state_dir);
	cJSON *ses = cJSON_AddObjectToObject(r, "sessions");
	size_t live = 0, exited = 0;
	for (struct session *s = d->sessions; s != NULL; s = s->next) {
		if (c->uid != 0 && s->uid != c->uid)
			continue;
		if (s->state == SESSION_LIVE)
			live++;
		else
			exited++;
	}
	cJSON_AddNumberToObject(ses, "live", (double)live);
	cJSON_AddNumberToObject(ses, "exited", (double)exited);
	cJSON_AddNumberToObject(ses, "rejected", (double)d->sessions_rejected);
	cJSON_AddNumberToObject(r, "events_total", (double)d->events_total);
	cJSON *lim = cJSON_AddObjectToObject(r, "limits");
	cJSON_AddNumberToObject(lim, "max_sessions", (double)d->cfg.max_sessions);
	cJSON_AddNumberToObject(lim, "max_exited", (double)d->cfg.max_exited);
	cJSON_AddNumberToObject(lim, "max_blocks", (double)d->cfg.max_blocks);
	cJSON_AddNumberToObject(lim, "max_stacks", (double)d->cfg.max_stacks);
	cJSON_AddNumberToObject(lim, "max_modules", (double)d->cfg.max_modules);
	cJSON_AddNumberToObject(lim, "modules_dropped", (double)d->modules_dropped);
	cJSON_AddItemToObject(lim, "agent_connections",
	                      limit_json(&d->agent_sessions, "per_uid", true, c->uid));
	cJSON_AddItemToObject(lim, "fork_image_bytes",
	                      limit_json(&d->fork_images, "per_uid", true, c->uid));
	cJSON_AddItemToObject(lim, "tracked_blocks",
	                      limit_json(&d->model_blocks, "per_uid", true, c->uid));
	cJSON_AddItemToObject(lim, "tracked_stacks",
	                      limit_json(&d->model_stacks, "per_uid", true, c->uid));
	cJSON_AddNumberToObject(lim, "models_forgotten", (double)d->models_forgotten);
	cJSON_AddItemToObject(lim, "control_connections",
	                      limit_json(&d->control_conns, "per_uid", true, c->uid));
	cJSON *un = cJSON_AddObjectToObject(lim, "control_unread_bytes");
	cJSON_AddNumberToObject(un, "used", (double)d->control_unread);
	cJSON_AddNumberToObject(un, "per_connection", (double)CONTROL_MAX_UNREAD);
	cJSON_AddNumberToObject(un, "paused", (double)d->control_paused);
	cJSON_AddNumberToObject(un, "stall_seconds", (double)d->cfg.control_timeout_ms / 1000);
	cJSON_AddNumberToObject(un, "stalled", (double)d->control_stalled);
	cJSON_AddItemToObject(lim, "queued_snapshots",
	                      limit_json(&d->snap_queue, "per_uid", true, c->uid));
	cJSON_AddItemToObject(lim, "queued_snapshot_bytes",
	                      limit_json(&d->snap_bytes, "per_uid", true, c->uid));
	const struct limit *hl = d->http_conns;
	if (hl != NULL)
		cJSON_AddItemToObject(lim, "http_connections",
		                      limit_json(hl, "per_origin", false, 0));
	else
		cJSON_AddNullToObject(lim, "http_connections");
	add_store_status(r, lim, d, c->uid);
	cJSON *lp = cJSON_AddObjectToObject(r, "loop");
	cJSON_AddNumberToObject(lp, "stall_max_seconds", loopwatch_max_seconds(&d->loopwatch));
	cJSON_AddNumberToObject(lp, "slow_iterations", (double)d->loopwatch.slow);
	cJSON *dy = cJSON_AddObjectToObject(r, "drain");
	cJSON_AddBoolToObject(dy, "yield", d->yield.on);
	if (d->yield.on)
		cJSON_AddNullToObject(dy, "yield_off_reason");
	else
		cJSON_AddStringToObject(dy, "yield_off_reason", d->yield.why_off);
	cJSON_AddNumberToObject(dy, "passes_idle", (double)d->yield.yielded);
	cJSON_AddNumberToObject(dy, "passes_normal", (double)d->yield.normal);
	cJSON_AddNumberToObject(dy, "escalations", (double)atomic_load(&d->yield.escalations));
	cJSON_AddBoolToObject(dy, "stuck_at_idle", d->yield.stuck);
	symbols_get_stats(d->syms, &ss);
	cJSON *sy = cJSON_AddObjectToObject(r, "symbols");
	cJSON_AddNumberToObject(sy, "objects", (double)ss.objects);
	cJSON_AddNumberToObject(sy, "frames", (double)ss.frames);
	cJSON_AddNumberToObject(sy, "failures", (double)ss.failures);
	cJSON_AddNumberToObject(sy, "bytes", (double)ss.bytes);
	cJSON_AddNumberToObject(sy, "retired", (double)ss.retired);
	/* The bound, as the other limits show theirs. */
	cJSON *sl = cJSON_AddObjectToObject(lim, "symbol_cache_bytes");
	cJSON_AddNumberToObject(sl, "max", (double)ss.max_bytes);
	cJSON_AddNumberToObject(sl, "per_uid", (double)ss.per_uid);
	cJSON_AddNumberToObject(sl, "used", (double)ss.bytes);
	cJSON_AddNumberToObject(sl, "yours", (double)symbols_uid_bytes(d->syms, c->uid));
	cJSON_AddNumberToObject(sl, "refused", (double)ss.uncached);
	/* Who holds it: every uid for root, the asker alone for others. */
	struct symbols_uid su[SYMBOLS_UIDS_SHOWN];
	size_t nsu = symbols_uids(d->syms, su, SYMBOLS_UIDS_SHOWN);
	cJSON *arr = cJSON_AddArrayToObject(sl, "uids");
	for (size_t i = 0; i < nsu; i++) {
		if (c->uid != 0 && su[i].uid != c->uid)
			continue;
		cJSON *u = cJSON_CreateObject();
		cJSON_AddNumberToObject(u, "uid", (double)su[i].uid);
		cJSON_AddNumberToObject(u, "bytes", (double)su[i].bytes);
		cJSON_AddBoolToObject(u, "at_share", su[i].full);
		cJSON_AddItemToArray(arr, u);
	}
	return r;
}

static void add_identity(cJSON *o, const struct session *s)
{
	cJSON_AddNumberToObject(o, "pid", (double)s->pid);
	cJSON_AddStringToObject(o, "exe", s->exe ? s->exe : "");
	/* The program's own word for how it was started (a link's name),
	 * beside the kernel's file: unchecked, a name the process chose. */
	if (s->started_as != NULL)
		cJSON_AddStringToObject(o, "started_as", s->started_as);
	else
		cJSON_AddNullToObject(o, "started_as");
	cJSON_AddItemToObject(o, "cmdline", cmdline_json(s));
	cJSON_AddStringToObject(o, "state", session_state_name(s));
}

static cJSON *cmd_list(struct conn *c, cJSON *req, struct session *unused)
{
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(r, "processes");

	(void)req;
	(void)unused;
	for (struct session *s = c->d->sessions; s != NULL; s = s->next) {
		if (!s->hello || (c->uid != 0 && s->uid != c->uid))
			continue;
		if (s->state == SESSION_LIVE)
			session_drain(s, false);
		cJSON *o = cJSON_CreateObject();
		add_identity(o, s);
		jsonout_add_u64(o, "current", s->heap.current);
		jsonout_add_u64(o, "peak", s->heap.peak);
		jsonout_add_u64(o, "blocks", s->heap.blocks);
		cJSON_AddNumberToObject(o, "uid", (double)s->uid);
		jsonout_add_u64(o, "start_time", s->start_time);
		cJSON_AddItemToObject(o, "sampled", snapshot_sampled_json(s->heap.sample_bytes));
		/* Ended by memtracectl detach: the process may well run on. */
		cJSON_AddBoolToObject(o, "detached", s->detached);
		cJSON_AddItemToArray(arr, o);
	}
	return r;
}

static cJSON *cmd_stats_stored(struct conn *c, cJSON *req);

static cJSON *cmd_stats(struct conn *c, cJSON *req, struct session *unused)
{
	cJSON *err = NULL;
	pid_t pid;

	(void)unused;
	if (cJSON_GetObjectItemCaseSensitive(req, "snapshot") != NULL)
		return cmd_stats_stored(c, req);
	if (arg_pid(req, &pid, &err) < 0)
		return err;
	struct session *s = find_session(c, pid);
	if (s == NULL)
		return cmd_stats_stored(c, req);
	const struct heap *h = &s->heap;
	cJSON *r = cJSON_CreateObject();
	add_identity(r, s);
	jsonout_add_u64(r, "current", h->current);
	jsonout_add_u64(r, "peak", h->peak);
	jsonout_add_u64(r, "blocks", h->blocks);
	jsonout_add_u64(r, "allocations", h->allocations);
	jsonout_add_u64(r, "frees", h->frees);
	jsonout_add_u64(r, "lost_events", s->lost_events);
	/* Truncated: events of the process never reached the model, each of
	 * them counted (what they were, when the agent could tell). */
	cJSON_AddBoolToObject(r, "truncated", s->lost_events != 0 || s->gave_up);
	jsonout_add_u64(r, "lost_allocations", s->lost_allocs);
	jsonout_add_u64(r, "lost_bytes", s->lost_bytes);
	jsonout_add_u64(r, "lost_frees", s->lost_frees);
	cJSON_AddBoolToObject(r, "stopped_waiting", s->gave_up);
	jsonout_add_u64(r, "unknown_frees", h->unknown_frees);
	cJSON_AddNumberToObject(r, "stacks", (double)h->ndefined);
	cJSON_AddNumberToObject(r, "modules", (double)s->modules.n);
	cJSON_AddNumberToObject(r, "modules_dropped", (double)s->modules.dropped);
	cJSON_AddNumberToObject(r, "uid", (double)s->uid);
	jsonout_add_u64(r, "start_time", s->start_time);
	cJSON_AddNumberToObject(r, "started_at", (double)s->started_ms / 1000.0);
	if (s->state == SESSION_EXITED)
		cJSON_AddNumberToObject(r, "ended_at", (double)s->ended_ms / 1000.0);
	else
		cJSON_AddNullToObject(r, "ended_at");
	cJSON_AddNumberToObject(r, "nframes", (double)s->nframes);
	jsonout_add_u64(r, "sample_bytes", s->sample_bytes);
	/* The figures are estimates: say so, with the blocks the estimates
	 * rest on (the live samples), which tells how precise they are. */
	cJSON *sampled = snapshot_sampled_json(h->sample_bytes);
	if (cJSON_IsObject(sampled))
		jsonout_add_u64(sampled, "samples", h->count);
	cJSON_AddItemToObject(r, "sampled", sampled);
	cJSON_AddStringToObject(r, "on_full", s->flags & PROTO_HELLO_DROP ? "drop" : "block");
	cJSON_AddStringToObject(r, "unwind",
	                        s->flags & PROTO_HELLO_FP          ? "fp"
	                        : s->flags & PROTO_HELLO_LIBUNWIND ? "libunwind"
	                                                           : "cfi");
	cJSON_AddBoolToObject(r, "interposed", !(s->flags & PROTO_HELLO_BYPASSED));
	/* Attached (memtracectl attach): started_at is when, and what the
	 * process allocated before is not known. */
	cJSON_AddBoolToObject(r, "attached", (s->flags & PROTO_HELLO_ATTACHED) != 0);
	/* Ended by memtracectl detach: the process ran on, untraced. */
	cJSON_AddBoolToObject(r, "detached", s->detached);
	if (s->flags & PROTO_HELLO_BYPASSED)
		cJSON_AddStringToObject(r, "warning",
		                        "the program's allocator calls bypass the agent (another "
		                        "allocator comes first): its allocations are not traced");
	if (h->limit_reached & HEAP_LIMIT_BLOCKS)
		cJSON_AddStringToObject(r, "limit_reached", "blocks");
	else if (h->limit_reached & HEAP_LIMIT_STACKS)
		cJSON_AddStringToObject(r, "limit_reached", "stacks");
	else
		cJSON_AddNullToObject(r, "limit_reached");
	cJSON_AddNumberToObject(r, "model_bytes", (double)session_memory(s));
	jsonout_add_u64(r, "wakes_deferred", s->wakes_deferred);
	if (s->error != NULL)
		cJSON_AddStringToObject(r, "error", s->error);
	return r;
}

/* The session's history: {"pid", "state", "started_ms", "ended_ms",
 * "samples": [[ms, current, blocks, peak], ...]}, oldest first (history.h).
 * A pid the daemon does not hold (forgotten, or from before a restart; or
 * another user's) has state "unknown" and no samples: its stored
 * snapshots may still tell its history. */
static cJSON *cmd_history(struct conn *c, cJSON *req, struct session *unused)
{
	cJSON *err = NULL;
	pid_t pid;

	(void)unused;
	if (arg_pid(req, &pid, &err) < 0)
		return err;
	struct session *s = find_session(c, pid);
	cJSON *r = cJSON_CreateObject(), *arr;
	cJSON_AddNumberToObject(r, "pid", (double)pid);
	cJSON_AddStringToObject(r, "state",
	                        s == NULL                  ? "unknown"
	                        : s->state == SESSION_LIVE ? "live"
	                                                   : "exited");
	cJSON_AddNumberToObject(r, "resolution_ms", 1000);
	if (s != NULL) {
		cJSON_AddItemToObject(r, "started_ms", jsonout_u64(s->started_ms));
		if (s->state == SESSION_LIVE)
			cJSON_AddNullToObject(r, "ended_ms");
		else
			cJSON_AddItemToObject(r, "ended_ms", jsonout_u64(s->ended_ms));
	}
	arr = cJSON_AddArrayToObject(r, "samples");
	for (uint32_t i = 0; s != NULL && i < s->history.n; i++) {
		const struct history_sample *h = history_at(&s->history, i);
		cJSON *row = cJSON_CreateArray();
		cJSON_AddItemToArray(row, jsonout_u64(h->ms));
		cJSON_AddItemToArray(row, jsonout_u64(h->current));
		cJSON_AddItemToArray(row, jsonout_u64(h->blocks));
		cJSON_AddItemToArray(row, jsonout_u64(h->peak));
		cJSON_AddItemToArray(arr, row);
	}
	return r;
}

static cJSON *cmd_reset_peak(struct conn *c, cJSON *req, struct session *s)
{
	(void)c;
	(void)req;
	/* An ended process's peak is a fact of its life, as its exit snapshot
	 * keeps it: nothing to reset. */
	if (s->state != SESSION_LIVE)
		return error_json("not_live",
		                  "process %d has ended: reset-peak changes a live process's peak "
		                  "only",
		                  (int)s->pid);
	heap_reset_peak(&s->heap);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "pid", (double)s->pid);
	jsonout_add_u64(r, "peak", s->heap.peak);
	return r;
}

/* memtracectl detach: asks the process's agent to stop tracing (a DETACH
 * frame on its connection, which the agent's sender reads within its
 * 50 ms cycle). The agent answers with DETACH and hangs up; the session
 * then ends as at an exit, with a snapshot whose reason is "detach", while
 * the process runs on. The answer does not wait for that: `stats` shows it
 * ("state": "exited", "detached": true). */
static cJSON *cmd_detach(struct conn *c, cJSON *req, struct session *s)
{
	uint8_t frame[PROTO_HDR_SIZE];

	(void)c;
	(void)req;
	if ((s->state != SESSION_LIVE || s->ending) && (s->detached || s->detach_asked))
		return error_json(
		    "not_live",
		    "process %d is detached already: 'memtracectl attach %d' traces it "
		    "again",
		    (int)s->pid, (int)s->pid);
	if (s->state != SESSION_LIVE || s->ending)
		return error_json("not_live",
		                  "process %d has ended (or its connection to memtraced did): "
		                  "nothing to detach",
		                  (int)s->pid);
	if (!s->detach_asked) {
		ssize_t n = proto_empty_encode(frame, sizeof(frame), PROTO_DETACH);
		if (n <= 0 || send(s->fd, frame, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
			return error_json("detach_failed",
			                  "cannot reach the agent of process %d: %s", (int)s->pid,
			                  strerror(errno));
		s->detach_asked = true;
		log_info("pid %d (%s): detach asked by uid %u", (int)s->pid, s->exe ? s->exe : "?",
		         (unsigned)c->uid);
	}
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "pid", (double)s->pid);
	cJSON_AddBoolToObject(r, "detaching", true);
	return r;
}

/* ---- commands that run on the thread pool ---- */

enum job_kind {
	JOB_TOP,
	JOB_TRACEBACK,
	JOB_STATS,
	JOB_GET,
	JOB_TAKE,
	JOB_LIST,
	JOB_FLAME,
	JOB_WHERE
};

/* What a control job carries besides the job. */
struct cjob {
	struct conn *c;
	enum job_kind kind;
	struct query_opts opts;
	struct query_filter *filters;
	char **patterns;
	size_t limit;
	bool from_store;        /* answer names the snapshot it came from */
	cJSON *resp;            /* built on the worker */
	char *text;             /* resp printed, also on the worker */
	size_t charged;         /* bytes of its capture charged to d->snap_bytes for c->uid */
	enum flame_value flame; /* JOB_FLAME: what the graph's widths are */
	uint64_t address;       /* JOB_WHERE: the address asked about */
};

static void cjob_free(struct cjob *q)
{
	if (q->charged > 0)
		limit_give(&q->c->d->snap_bytes, q->c->uid, q->charged);
	if (q->patterns != NULL)
		for (size_t i = 0; i < q->opts.nfilters; i++)
			free(q->patterns[i]);
	free(q->patterns);
	free(q->filters);
	cJSON_Delete(q->resp);
	free(q->text);
	free(q);
}

static void cjob_answer(struct job *job);

/* Worker thread: builds the answer and prints it, reading only the job's
 * snapshot. */
static void cjob_compute(struct job *job)
{
	struct cjob *q = job->arg;
	cjob_answer(job);
	if (q->resp != NULL) {
		q->text = jsonout_print(q->resp, false);
		cJSON_Delete(q->resp);
		q->resp = NULL;
	}
}

static void cjob_answer(struct job *job)
{
	struct cjob *q = job->arg;
	const struct snapshot *snap = job->snap;

	if (job->rc < 0)
		return;
	switch (q->kind) {
	case JOB_TOP:
		if (snapshot_top_json(snap, &q->opts, q->from_store, &q->resp) < 0) {
			job->rc = -EINVAL;
			snprintf(job->err, sizeof(job->err), "invalid statistics options");
		}
		return;
	case JOB_TRACEBACK:
		q->resp = snapshot_traceback_json(snap, q->limit);
		if (!q->from_store)
			cJSON_DeleteItemFromObjectCaseSensitive(q->resp, "snapshot");
		return;
	case JOB_STATS:
		q->resp = snapshot_stats_json(snap);
		return;
	case JOB_WHERE:
		q->resp = snapshot_where_json(snap, q->address);
		if (q->resp == NULL) {
			job->rc = -ESRCH;
			snprintf(
			    job->err, sizeof(job->err),
			    "address 0x%" PRIx64 " is in no live block of process %d%s", q->address,
			    (int)snap->pid,
			    snap->sample_bytes != 0
			        ? " that the sampling recorded (MEMTRACE_SAMPLE: most blocks are "
			          "not)"
			        : " (freed, never allocated through malloc, or allocated before "
			          "an attach)");
		}
		return;
	case JOB_GET:
		q->resp = snapshot_to_json(snap);
		return;
	case JOB_TAKE:
		q->resp = snapshot_summary_json(snap);
		return;
	case JOB_FLAME: {
		/* The page itself is the answer (the web interface's alone). */
		char title[160];
		const char *exe = snap->exe != NULL ? strrchr(snap->exe, '/') : NULL;
		snprintf(title, sizeof title, "memtrace: %s of pid %d (%.100s)",
		         flame_value_name(q->flame), (int)snap->pid,
		         exe != NULL         ? exe + 1
		         : snap->exe != NULL ? snap->exe
		                             : "?");
		size_t n;
		q->text = flame_html(snap, NULL, q->flame, title, &n);
		return;
	}
	case JOB_LIST: {
		cJSON *arr = NULL;
		if (job->d->store == NULL) {
			job->rc = -EIO;
			snprintf(job->err, sizeof(job->err),
			         "the snapshot store is not open: %.200s", job->d->store_error);
			return;
		} else if (store_list(job->d->store, job->pid, job->uid, &arr) < 0) {
			job->rc = -EIO;
			snprintf(job->err, sizeof(job->err), "snapshot store: %s",
			         store_errmsg(job->d->store));
			return;
		}
		q->resp = cJSON_CreateObject();
		cJSON_AddItemToObject(q->resp, "snapshots", arr);
		return;
	}
	}
}

/* Loop thread: answer and go on with the connection's next request. */
static void cjob_done(struct job *job)
{
	struct cjob *q = job->arg;
	struct conn *c = q->c;
	cJSON *resp;

	if (job->rc == -ENOENT && job->deleted)
		resp = error_json("snapshot_deleted", "%s", job->err);
	else if (job->rc == -ENOENT && job->source == JOB_SRC_LATEST)
		resp = control_unknown_pid(c->uid, job->pid);
	else if (job->rc == -ENOENT)
		resp = error_json("no_such_snapshot", "%s", job->err);
	else if (job->rc == -EINVAL)
		resp = error_json("bad_request", "%s", job->err);
	else if (job->rc == -ESRCH)
		resp = error_json("no_such_block", "%s", job->err);
	else if (job->rc < 0)
		resp = error_json("store_error", "%s", job->err);
	else
		resp = NULL;
	if (resp != NULL) {
		conn_send(c, resp);
	} else {
		conn_send_text(c, q->text);
		q->text = NULL;
	}
	cjob_free(q);
	c->busy = false;
	bool closing = c->closing;
	conn_unref(c);
	if (!closing)
		conn_process(c);
}

static struct cjob *cjob_new(struct conn *c, enum job_kind kind)
{
	struct cjob *q = xcalloc(1, sizeof(*q));
	q->c = c;
	q->kind = kind;
	return q;
}

/* A capture that searches the largest blocks holds a view of the process's
 * block table until a worker reads it, and the view keeps what the process
 * rewrites meanwhile (up to the whole table): charged, with the rest of the
 * capture, to the client's uid under --max-queued-snapshot-bytes, as the
 * scheduler's captures are. An error when the bound refuses it. */
static cJSON *charge_capture(struct conn *c, struct cjob *q, struct job *job)
{
	struct daemon *d = c->d;
	size_t bytes = capture_memory(job->capture);
	char who[64];

	snprintf(who, sizeof(who), "uid %u (a query's capture)", (unsigned)c->uid);
	if (limit_take(&d->snap_bytes, c->uid, bytes, uv_now(d->loop), who) < 0) {
		capture_free(job->capture);
		job->capture = NULL;
		return error_json("too_many_snapshots",
		                  "captures of %zu bytes wait for the thread pool already; the "
		                  "bound is --max-queued-snapshot-bytes (a quarter per uid)",
		                  limit_used_by(&d->snap_bytes, c->uid));
	}
	q->charged = bytes;
	return NULL;
}

/* Chooses where the answer comes from: "snapshot": ID, or "pid": a process
 * in memory (captured now), else that pid's newest stored snapshot. */
static cJSON *pick_source(struct conn *c, cJSON *req, struct job *job, struct cjob *q,
                          size_t nlargest)
{
	cJSON *err = NULL;
	cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "snapshot");

	job->uid = c->uid == 0 ? -1 : (long)c->uid;
	if (id != NULL) {
		if (!cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > 9e15 ||
		    id->valuedouble != floor(id->valuedouble))
			return error_json("bad_request", "\"snapshot\" must be a positive integer");
		job->source = JOB_SRC_STORED;
		job->snap_id = (int64_t)id->valuedouble;
		q->from_store = true;
		return NULL;
	}
	pid_t pid;
	if (arg_pid(req, &pid, &err) < 0)
		return err;
	job->pid = pid;
	struct session *s = find_session(c, pid);
	if (s != NULL) {
		job->source = JOB_SRC_CAPTURE;
		/* An ended process's capture is what it held at its end. */
		job->capture =
		    capture_take(s, s->state == SESSION_LIVE ? "live" : "exited", nlargest);
		/* Every capture is charged, also a statistics-only one (top,
		 * flame): a client repeating them must not pile views up. */
		return charge_capture(c, q, job);
	}
	job->source = JOB_SRC_LATEST;
	q->from_store = true;
	return NULL;
}

static void cjob_start(struct conn *c, struct job *job, struct cjob *q)
{
	job->arg = q;
	job->compute = cjob_compute;
	job->done = cjob_done;
	job->drop_early = true; /* cjob_done needs only the printed answer */
	c->busy = true;
	c->refs++;
	job_run(job);
}

/* Error before the job started: free both and return the error. */
static cJSON *cjob_abort(struct job *job, struct cjob *q, cJSON *err)
{
	capture_free(job->capture);
	free(job);
	cjob_free(q);
	return err;
}

static cJSON *parse_filters(cJSON *req, struct cjob *q)
{
	cJSON *arr = cJSON_GetObjectItemCaseSensitive(req, "filters");
	if (arr == NULL)
		return NULL;
	if (!cJSON_IsArray(arr))
		return error_json("bad_request", "\"filters\" must be an array");
	size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
	if (n > 256)
		return error_json("bad_request", "at most 256 filters");
	q->filters = xcalloc(n ? n : 1, sizeof(*q->filters));
	q->patterns = xcalloc(n ? n : 1, sizeof(*q->patterns));
	cJSON *f;
	cJSON_ArrayForEach(f, arr)
	{
		cJSON *pat = cJSON_GetObjectItemCaseSensitive(f, "pattern");
		cJSON *inc = cJSON_GetObjectItemCaseSensitive(f, "inclusive");
		cJSON *all = cJSON_GetObjectItemCaseSensitive(f, "all_frames");
		if (!cJSON_IsObject(f) || !cJSON_IsString(pat) || (inc && !cJSON_IsBool(inc)) ||
		    (all && !cJSON_IsBool(all)))
			return error_json("bad_request",
			                  "filter %zu: want {\"pattern\": str, "
			                  "\"inclusive\": bool, \"all_frames\": bool}",
			                  i);
		q->patterns[i] = xstrdup(pat->valuestring);
		q->filters[i].pattern = q->patterns[i];
		q->filters[i].inclusive = inc ? cJSON_IsTrue(inc) : true;
		q->filters[i].all_frames = all ? cJSON_IsTrue(all) : false;
		q->opts.nfilters = ++i;
	}
	q->opts.filters = q->filters;
	return NULL;
}

/* "at": "now" (default) or "peak". */
static cJSON *parse_at(const cJSON *req, bool *at_peak)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "at");

	*at_peak = false;
	if (v == NULL || (cJSON_IsString(v) && strcmp(v->valuestring, "now") == 0))
		return NULL;
	if (cJSON_IsString(v) && strcmp(v->valuestring, "peak") == 0) {
		*at_peak = true;
		return NULL;
	}
	return error_json("bad_request", "\"at\" must be \"now\" or \"peak\"");
}

/* "sort_by": what the statistics are sorted by (default size). */
static cJSON *parse_sort_by(const cJSON *req, enum query_sort *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "sort_by");

	*out = QUERY_SORT_SIZE;
	if (v == NULL || (cJSON_IsString(v) && query_sort_parse(v->valuestring, out) == 0))
		return NULL;
	return error_json("bad_request", "\"sort_by\" must be one of size, count, allocations, "
	                                 "allocated, temporary");
}

static cJSON *cmd_top(struct conn *c, cJSON *req, struct session *unused)
{
	cJSON *err = NULL;
	struct cjob *q = cjob_new(c, JOB_TOP);
	struct job *job = job_new(c->d);
	cJSON *key = cJSON_GetObjectItemCaseSensitive(req, "key");

	(void)unused;
	q->opts.key = QUERY_KEY_LINENO;
	if (key != NULL &&
	    (!cJSON_IsString(key) || query_key_parse(key->valuestring, &q->opts.key) < 0))
		err = error_json("bad_request",
		                 "\"key\" must be one of lineno, filename, function, traceback");
	if (err == NULL)
		arg_bool(req, "cumulative", &q->opts.cumulative, &err);
	if (err == NULL && q->opts.cumulative && q->opts.key == QUERY_KEY_TRACEBACK)
		err = error_json("bad_request", "cumulative is not possible with key traceback");
	if (err == NULL)
		err = parse_sort_by(req, &q->opts.sort_by);
	if (err == NULL)
		err = parse_at(req, &q->opts.at_peak);
	if (err == NULL)
		arg_bool(req, "raw_frames", &q->opts.raw_frames, &err);
	if (err == NULL)
		arg_uint(req, "limit", 10, &q->opts.limit, &err);
	if (err == NULL)
		err = parse_filters(req, q);
	if (err == NULL)
		err = pick_source(c, req, job, q, 0);
	if (err != NULL)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

static cJSON *cmd_traceback(struct conn *c, cJSON *req, struct session *unused)
{
	cJSON *err = NULL;
	struct cjob *q = cjob_new(c, JOB_TRACEBACK);
	struct job *job = job_new(c->d);

	(void)unused;
	if (arg_uint(req, "limit", 10, &q->limit, &err) == 0 && (q->limit == 0 || q->limit > 10000))
		q->limit = 10000;
	if (err == NULL)
		err = pick_source(c, req, job, q, q->limit);
	if (err != NULL)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

/* memtracectl where: the live block that holds "address" (a string, 0x
 * hexadecimal or decimal, as a debugger prints a pointer) and the
 * traceback of its allocation, tracemalloc's get_object_traceback. Live
 * processes only: an ended one's block table is not kept. */
static cJSON *cmd_where(struct conn *c, cJSON *req, struct session *s)
{
	cJSON *a = cJSON_GetObjectItemCaseSensitive(req, "address");
	char *end = NULL;
	uint64_t addr;

	if (!cJSON_IsString(a) || !isdigit((unsigned char)a->valuestring[0]))
		return error_json("bad_request", "\"address\" must be a string: 0x hexadecimal or "
		                                 "decimal");
	/* Decimal unless 0x: a leading 0 is not octal, as the client says. */
	const char *v = a->valuestring;
	errno = 0;
	addr = strtoull(v, &end, v[0] == '0' && (v[1] == 'x' || v[1] == 'X') ? 16 : 10);
	if (errno != 0 || *end != '\0')
		return error_json("bad_request", "\"address\" is not a number: '%.40s'",
		                  a->valuestring);
	if (s->state != SESSION_LIVE)
		return error_json("not_live",
		                  "process %d has ended: where answers for a live process's blocks",
		                  (int)s->pid);
	struct cjob *q = cjob_new(c, JOB_WHERE);
	struct job *job = job_new(c->d);
	q->address = addr;
	job->uid = c->uid == 0 ? -1 : (long)c->uid;
	job->pid = s->pid;
	job->source = JOB_SRC_CAPTURE;
	job->capture = capture_take_where(s, addr);
	cJSON *err = charge_capture(c, q, job);
	if (err != NULL)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

/* Stats of a stored snapshot (by id, or the newest of a pid no longer in
 * memory); a process in memory is answered directly by cmd_stats. */
static cJSON *cmd_stats_stored(struct conn *c, cJSON *req)
{
	struct cjob *q = cjob_new(c, JOB_STATS);
	struct job *job = job_new(c->d);
	cJSON *err = pick_source(c, req, job, q, 0);
	if (err != NULL)
		return cjob_abort(job, q, err);
	if (job->source == JOB_SRC_CAPTURE) /* raced into memory: not expected */
		return cjob_abort(job, q, error_json("internal", "process appeared meanwhile"));
	cjob_start(c, job, q);
	return NULL;
}

static cJSON *cmd_snapshot_get(struct conn *c, cJSON *req, struct session *unused)
{
	struct cjob *q = cjob_new(c, JOB_GET);
	struct job *job = job_new(c->d);
	cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
	cJSON *err = NULL;

	(void)unused;
	if (id != NULL) {
		/* "id" names a stored snapshot, as "snapshot" does elsewhere. */
		cJSON *alias = cJSON_CreateObject();
		cJSON_AddItemReferenceToObject(alias, "snapshot", id);
		err = pick_source(c, alias, job, q, 100);
		cJSON_Delete(alias);
	} else {
		err = pick_source(c, req, job, q, 100);
	}
	if (err != NULL)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

/* A URL of the web interface with a token for the client's uid (used
 * once, webtoken.h). */
static cJSON *cmd_ui(struct conn *c, cJSON *req, struct session *unused)
{
	char hex[WEBTOKEN_CHARS + 1];
	double expires;
	int rc;

	(void)req;
	(void)unused;
	if (c->d->web_origin[0] == '\0')
		return error_json("no_web_interface",
		                  "the web interface is served on the metrics port, and memtraced "
		                  "runs with --metrics-listen off");
	if ((rc = webtoken_grant(c->d, c->uid, WEBTOKEN_URL, hex, &expires)) < 0)
		return rc == -EBUSY ? error_json("too_many_sessions",
		                                 "the web interface holds %d sessions and URLs of "
		                                 "other users; try again when some expire",
		                                 WEBTOKENS)
		                    : error_json("internal", "no random bytes for a token");
	char *url = xasprintf("%s/ui?token=%s", c->d->web_origin, hex);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "url", url);
	cJSON_AddNumberToObject(r, "uid", (double)c->uid);
	cJSON_AddNumberToObject(r, "expires_at", expires);
	free(url);
	return r;
}

/* The web interface's flame graph of a process now or of a stored
 * snapshot: "value" size (default), peak, allocations or temporary. */
static cJSON *cmd_flame(struct conn *c, cJSON *req, struct session *unused)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "value");
	int value = v == NULL           ? FLAME_SIZE
	            : cJSON_IsString(v) ? flame_value_parse(v->valuestring)
	                                : -1;

	(void)unused;
	if (value < 0)
		return error_json("bad_request",
		                  "\"value\" must be one of size, peak, allocations, temporary");
	struct cjob *q = cjob_new(c, JOB_FLAME);
	struct job *job = job_new(c->d);
	q->flame = (enum flame_value)value;
	cJSON *err = pick_source(c, req, job, q, 0);
	if (err != NULL)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

static cJSON *cmd_snapshot(struct conn *c, cJSON *req, struct session *s)
{
	(void)req;
	/* An ended process's last state is its exit snapshot already: another
	 * would be a copy, stored under a reason that says "now". */
	if (s->state != SESSION_LIVE)
		return error_json("not_live",
		                  "process %d has ended: its exit snapshot has its last state "
		                  "('memtracectl snapshots --pid %d'; 'export --pid %d' writes it "
		                  "to a file)",
		                  (int)s->pid, (int)s->pid, (int)s->pid);
	if (c->d->store == NULL)
		return error_json("store_error", "the snapshot store is not open: %.200s",
		                  c->d->store_error);
	struct cjob *q = cjob_new(c, JOB_TAKE);
	struct job *job = job_new(c->d);
	job->source = JOB_SRC_CAPTURE;
	job->capture = capture_take(s, "manual", 100);
	job->store_it = true;
	job->uid = c->uid == 0 ? -1 : (long)c->uid;
	cJSON *err = charge_capture(c, q, job);
	if (err != NULL)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

static cJSON *cmd_snapshots(struct conn *c, cJSON *req, struct session *unused)
{
	cJSON *err = NULL;
	struct cjob *q = cjob_new(c, JOB_LIST);
	struct job *job = job_new(c->d);

	(void)unused;
	job->source = JOB_SRC_NONE;
	job->uid = c->uid == 0 ? -1 : (long)c->uid;
	if (cJSON_GetObjectItemCaseSensitive(req, "pid") != NULL &&
	    arg_pid(req, &job->pid, &err) < 0)
		return cjob_abort(job, q, err);
	cjob_start(c, job, q);
	return NULL;
}

/* ---- dispatch ---- */

/*
 * A command of CONTROL.md. Every handler takes the connection, the request,
 * and the session "pid" names when its entry asks for one (else NULL), and
 * returns the answer, or NULL when a job on the thread pool will send it.
 */
struct control_cmd {
	const char *name;
	cJSON *(*handler)(struct conn *c, cJSON *req, struct session *s);
	/* "pid" must name a session the client may see, and the handler gets
	 * it: the error for a bad or unknown pid is then the same everywhere. */
	bool session;
	/* Who may send it: the control socket, the web interface (webui.c:
	 * what reads and changes nothing), or both. */
	enum { ON_SOCKET = 1, ON_WEB = 2, ON_BOTH = 3 } on;
};

static const struct control_cmd control_cmds[] = {
    {"status", cmd_status, false, ON_BOTH},
    {"list", cmd_list, false, ON_BOTH},
    {"stats", cmd_stats, false, ON_BOTH},
    {"reset-peak", cmd_reset_peak, true, ON_SOCKET},
    {"detach", cmd_detach, true, ON_SOCKET},
    {"where", cmd_where, true, ON_BOTH},
    {"history", cmd_history, false, ON_BOTH},
    {"top", cmd_top, false, ON_BOTH},
    {"traceback", cmd_traceback, false, ON_BOTH},
    {"snapshot", cmd_snapshot, true, ON_SOCKET},
    {"snapshots", cmd_snapshots, false, ON_BOTH},
    {"snapshot-get", cmd_snapshot_get, false, ON_SOCKET},
    {"ui", cmd_ui, false, ON_SOCKET},
    {"flame", cmd_flame, false, ON_WEB},
};

static const struct control_cmd *control_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++)
		if (strcmp(control_cmds[i].name, name) == 0)
			return &control_cmds[i];
	return NULL;
}

/* Runs one request: finds its command and, when the command asks for one,
 * the session. Returns the answer, or NULL when a job will send it. */
/* Loop time the drains before the answers of one loop turn take together. */
#define QUERY_DRAIN_MS 20

static cJSON *dispatch(struct conn *c, cJSON *req)
{
	cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	const struct control_cmd *e;
	struct session *s = NULL;
	cJSON *err = NULL;

	if (!cJSON_IsString(cmd))
		return error_json("bad_request", "missing \"cmd\"");
	session_drain_window(c->d, QUERY_DRAIN_MS);
	e = control_cmd_find(cmd->valuestring);
	if (e == NULL || !(e->on & (c->web ? ON_WEB : ON_SOCKET)))
		return error_json("unknown_command", "unknown command \"%.64s\"%s",
		                  cmd->valuestring,
		                  e != NULL && c->web ? " (on the web interface)" : "");
	if (e->session && (s = arg_session(c, req, &err)) == NULL)
		return err;
	return e->handler(c, req, s);
}

/* Handles one request line. Returns 0, or -1 when the connection must close. */
static int handle_line(struct conn *c, const char *line, size_t len)
{
	cJSON *resp = NULL;
	const char *end = NULL;
	cJSON *req =
	    memchr(line, '\0', len) != NULL ? NULL : cJSON_ParseWithLengthOpts(line, len, &end, 0);

	/* One JSON object and nothing after it but blanks. */
	while (req != NULL && end < line + len && (*end == ' ' || *end == '\t' || *end == '\r'))
		end++;
	if (req != NULL && end != line + len) {
		cJSON_Delete(req);
		req = NULL;
	}
	if (req == NULL || !cJSON_IsObject(req)) {
		log_warn("control: pid %d sent a request that is not a JSON object; closing",
		         (int)c->pid);
		conn_send(c, error_json("bad_request", "request is not a JSON object"));
		cJSON_Delete(req);
		return -1;
	}
	resp = dispatch(c, req);
	if (resp != NULL)
		conn_send(c, resp);
	cJSON_Delete(req);
	return 0;
}

static void on_control_idle(uv_idle_t *idle)
{
	struct daemon *d = idle->data;
	bool more = false;

	for (struct conn *c = d->conns; c != NULL; c = c->next) {
		if (!c->backlog)
			continue;
		c->backlog = false;
		if (!c->closing)
			conn_process(c);
		more |= c->backlog;
	}
	if (!more)
		uv_idle_stop(idle);
}

/* Answers the complete requests in the buffer, at most CONTROL_BATCH a
 * turn: a client that sends thousands at once waits for the next loop
 * iteration (d->control_idle) rather than holding the loop. */
static void conn_process(struct conn *c)
{
	int done = 0;

	while (!c->busy && !c->closing && !c->paused) {
		if (c->scanned < c->off)
			c->scanned = c->off;
		char *nl = memchr(c->buf + c->scanned, '\n', c->len - c->scanned);
		if (nl == NULL) {
			c->scanned = c->len;
			break;
		}
		size_t l = (size_t)(nl - (c->buf + c->off));
		size_t *left = turn_budget(&c->d->ctl_budget, &c->d->loopwatch, CONTROL_TURN_BYTES);
		if (done == CONTROL_BATCH || (l > *left && *left < CONTROL_TURN_BYTES)) {
			c->backlog = true;
			uv_idle_start(&c->d->control_idle, on_control_idle);
			break;
		}
		*left -= l < *left ? l : *left;
		char *line = xstrndup(c->buf + c->off, l);
		c->off += l + 1;
		c->scanned = c->off;
		c->partial_ms = uv_now(c->d->loop); /* what is left began now */
		done++;
		int rc = handle_line(c, line, l);
		free(line);
		if (rc < 0) {
			conn_close(c);
			return;
		}
	}
	/* Each byte is moved at most once more than it is answered. */
	if (c->off > 0 && c->off >= c->len - c->off) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->scanned -= c->off;
		c->off = 0;
	}
	if (c->len - c->off > CONTROL_MAX_REQUEST && !c->closing) {
		log_warn("control: pid %d sent a request over %u bytes; closing", (int)c->pid,
		         CONTROL_MAX_REQUEST);
		conn_send(c, error_json("bad_request", "request larger than %u bytes",
		                        CONTROL_MAX_REQUEST));
		conn_close(c);
	}
	conn_update_read(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	(void)suggested;
	if (c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->scanned -= c->off;
		c->off = 0;
	}
	if (c->cap - c->len < 65536) {
		c->cap = c->cap ? c->cap * 2 : 65536;
		c->buf = xrealloc(c->buf, c->cap);
	}
	buf->base = c->buf + c->len;
	buf->len = c->cap - c->len;
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = stream->data;
	(void)buf;
	if (n < 0) {
		conn_close(c);
		return;
	}
	if (c->len == c->off && n > 0)
		c->partial_ms = uv_now(c->d->loop);
	c->len += (size_t)n;
	conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct daemon *d = server->data;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (status < 0)
		return;
	struct conn *c = xcalloc(1, sizeof(*c));
	c->d = d;
	c->refs = 1;
	c->next = d->conns;
	if (c->next != NULL)
		c->next->prevp = &c->next;
	c->prevp = &d->conns;
	d->conns = c;
	uv_pipe_init(d->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
		conn_close(c);
		return;
	}
	uv_fileno((uv_handle_t *)&c->pipe, &fd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		conn_close(c);
		return;
	}
	c->uid = cred.uid;
	c->pid = cred.pid;
	char who[64];
	snprintf(who, sizeof(who), "uid %u (pid %d)", (unsigned)c->uid, (int)c->pid);
	int rc = limit_take(&d->control_conns, c->uid, 1, uv_now(d->loop), who);
	if (rc < 0) {
		/* One line, written at once (the socket's buffer is empty), so
		 * the client reads why before it sees the end. */
		cJSON *e =
		    rc == -EDQUOT
		        ? error_json("too_many_connections",
		                     "limit reached: uid %u has %zu control connections open, as "
		                     "many as --max-control-connections-per-uid allows; close one",
		                     (unsigned)c->uid, limit_used_by(&d->control_conns, c->uid))
		        : error_json("too_many_connections",
		                     "limit reached: %zu control connections are open, as many as "
		                     "--max-control-connections allows",
		                     d->control_conns.used);
		char *text = cJSON_PrintUnformatted(e);
		cJSON_Delete(e);
		size_t n = strlen(text);
		text = xrealloc(text, n + 2);
		text[n] = '\n';
		uv_buf_t b = uv_buf_init(text, (unsigned)(n + 1));
		(void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
		free(text);
		conn_close(c);
		return;
	}
	c->counted = true;
	c->progress_ms = c->partial_ms = uv_now(d->loop);
	conn_update_read(c);
}

/* Once a second: clients that stopped reading their answers, or stopped in
 * the middle of a request, are closed after CONTROL_STALL_MS. */
static void on_control_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;
	uint64_t now = uv_now(d->loop);
	struct timespec wall;

	/* Memory over time: every live process's figures, once a second. */
	clock_gettime(CLOCK_REALTIME, &wall);
	uint64_t wall_ms = (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000;
	for (struct session *s = d->sessions; s != NULL; s = s->next)
		if (s->state == SESSION_LIVE && s->hello)
			history_sample(&s->history, wall_ms, s->heap.current, s->heap.blocks,
			               s->heap.peak);
	static const char *const why[] = {NULL, "reads none of its answers",
	                                  "sent part of a request and nothing more"};

	for (struct conn *c = d->conns; c != NULL; c = c->next) {
		int stall = 0;
		if (c->closing)
			continue;
		if (c->unread > 0 && now - c->progress_ms >= d->cfg.control_timeout_ms)
			stall = 1;
		else if (!c->busy && !c->paused && !c->backlog && c->len > c->off &&
		         now - c->partial_ms >= d->cfg.control_timeout_ms)
			stall = 2;
		if (stall == 0)
			continue;
		d->control_stalled++;
		log_warn("control: uid %u (pid %d) %s for %g s (--control-timeout); closing its "
		         "connection",
		         (unsigned)c->uid, (int)c->pid, why[stall],
		         (double)d->cfg.control_timeout_ms / 1000);
		conn_close(c);
	}
}

int control_start(struct daemon *d)
{
	int rc;
	uv_pipe_init(d->loop, &d->control_srv, 0);
	d->control_srv.data = d;
	if (d->control_fd >= 0) {
		if ((rc = uv_pipe_open(&d->control_srv, d->control_fd)) < 0)
			return rc;
	} else {
		if ((rc = uv_pipe_bind(&d->control_srv, d->control_path)) < 0)
			return rc;
		chmod(d->control_path, 0666);
	}
	uv_idle_init(d->loop, &d->control_idle);
	d->control_idle.data = d;
	uv_timer_init(d->loop, &d->control_timer);
	d->control_timer.data = d;
	uv_timer_start(&d->control_timer, on_control_timer, 1000, 1000);
	return uv_listen((uv_stream_t *)&d->control_srv, 64, on_connection);
}

static void on_srv_closed(uv_handle_t *h)
{
	(void)h;
}

void control_stop(struct daemon *d)
{
	if (!uv_is_closing((uv_handle_t *)&d->control_srv))
		uv_close((uv_handle_t *)&d->control_srv, on_srv_closed);
	if (uv_is_active((uv_handle_t *)&d->control_timer) &&
	    !uv_is_closing((uv_handle_t *)&d->control_timer)) {
		uv_close((uv_handle_t *)&d->control_timer, NULL);
		uv_close((uv_handle_t *)&d->control_idle, NULL);
	}
	for (struct conn *c = d->conns; c != NULL; c = c->next)
		conn_close(c);
}

/* ---- the web interface's requests ---- */

struct conn *control_call(struct daemon *d, uid_t uid, const char *line, size_t len,
                          control_answer_fn answer, void *arg)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->d = d;
	c->uid = uid;
	c->web = true;
	c->answer = answer;
	c->answer_arg = arg;
	c->refs = 1;
	(void)handle_line(c, line, len); /* a bad request is answered as such */
	bool answered = c->closing;
	conn_unref(c); /* a job in flight holds its own reference */
	return answered ? NULL : c;
}

void control_call_cancel(struct conn *c)
{
	c->closing = true; /* the job's answer is dropped, and c with it */
}
