/* metrics.c - the Prometheus endpoint (see metrics.h). */
#include "metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "capture.h"
#include "control.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "procstat.h"
#include "session.h"
#include "snapshot.h"
#include "store.h"
#include "webui.h"
#include "xalloc.h"

#define MIN_REFRESH_MS    1000 /* scrapes closer than this share a result */
#define ROUND_DEADLINE_MS 5000 /* longest a scrape waits for symbols */
#define CAPTURE_SLICE_MS  8    /* loop time a round's captures take per turn */
/* Label values are bounded (README "Metrics"): a site is at most
 * MAX_FUNCTION + MAX_FILENAME + 20 bytes, an exe MAX_EXE; a cut value
 * ends (a file name: starts) with "...". */
#define MAX_FUNCTION 96  /* bytes of a function name kept in a label */
#define MAX_FILENAME 48  /* bytes of a file name kept (its tail) */
#define MAX_EXE      128 /* bytes of an executable's path kept (its tail) */

/* One allocation site of a process: its label and live bytes. */
struct site {
	char *label;
	uint64_t bytes;
};

struct sitetab {
	struct site *v; /* the top sites, largest first */
	size_t n;
	uint64_t other; /* current bytes minus the top sites */
};

/* One traced process as a scrape reports it. */
struct proc {
	pid_t pid;
	char *labels; /* pid="..",exe=".." rendered and escaped */
	uint64_t current, peak, blocks, allocations, frees, lost_events;
	uint64_t lost_allocs, lost_frees, truncated;
	uint64_t start_time; /* clock ticks after boot, /proc/PID/stat's */
	int limit_reached;
	bool have_sites;
	struct sitetab sites;
};

/* What one scrape round produced; immutable once published. */
struct result {
	struct proc *procs; /* by pid */
	size_t n;
};

/* A scrape round: captures resolved on the thread pool. */
struct round {
	struct metrics *m;
	struct symbols *syms;
	size_t top;
	size_t n;
	struct capture **caps; /* the worker's while it runs */
	struct sitetab *tabs;  /* filled by the worker */
	struct result *res;    /* the loop's; NULL once published */
	bool abandoned;        /* answered without it (deadline or stop) */
	struct session **ss;   /* while capturing: the sessions, each referenced */
	size_t taken;          /* captures taken so far */
};

struct metrics {
	struct daemon *d;
	struct http *http;
	uv_timer_t deadline;     /* ROUND_DEADLINE_MS */
	uv_idle_t step;          /* the next slice of a round's captures */
	int refs;                /* the two timers, a running job, and "started" */
	struct round *capturing; /* the round whose captures are being taken */
	bool stopping;
	size_t top;
	struct round *round; /* the round scrapes wait for, or NULL */
	bool worker_busy;    /* a round (maybe abandoned) is on the pool */
	struct result *last; /* the last published result */
	uint64_t btime;      /* seconds since the epoch at boot, 0 unknown */
	uint64_t last_ms;
	uint64_t site_timeouts;
};

/* ---- a growing string ---- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_grow(struct sbuf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	sb_grow(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	sb_grow(b, 64);
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		sb_grow(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	uint32_t c;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, c = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return len;
}

/* A label value as both formats want it: \\, \" and \n escaped, and any
 * byte that is not valid UTF-8 (paths are bytes) replaced by U+FFFD. */
static void sb_label_value(struct sbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	while (n > 0) {
		size_t l = utf8_len(p, n);
		if (l == 0) {
			sb_puts(b, "\xef\xbf\xbd");
			l = 1;
		} else if (*p == '\\') {
			sb_puts(b, "\\\\");
		} else if (*p == '"') {
			sb_puts(b, "\\\"");
		} else if (*p == '\n') {
			sb_puts(b, "\\n");
		} else {
			sb_put(b, (const char *)p, l);
		}
		p += l;
		n -= l;
	}
}

/* ---- results ---- */

static void sitetab_close(struct sitetab *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].label);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static void result_free(struct result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->procs[i].labels);
		sitetab_close(&r->procs[i].sites);
	}
	free(r->procs);
	free(r);
}

struct ranked {
	struct session *s;
	size_t rank; /* position in d->sessions: newest first */
};

static int by_pid_newest(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->s->pid != y->s->pid)
		return x->s->pid < y->s->pid ? -1 : 1;
	return (x->rank > y->rank) - (x->rank < y->rank);
}

/* The live processes sorted by pid, one per pid: a pid's series must be
 * unique, and should two live sessions share one (a process gone while
 * its socket lives on in a child), the newest is the process. Returns the
 * sessions in *out. */
static size_t live_sessions(struct daemon *d, struct session ***out)
{
	size_t n = 0, k = 0;

	for (struct session *s = d->sessions; s != NULL; s = s->next)
		n++;
	struct ranked *v = xcalloc(n ? n : 1, sizeof(*v));
	n = 0;
	for (struct session *s = d->sessions; s != NULL; s = s->next, n++)
		if (s->state == SESSION_LIVE && s->hello) {
			session_drain(s, false); /* a scrape is live too */
			v[k++] = (struct ranked){s, n};
		}
	qsort(v, k, sizeof(*v), by_pid_newest);
	struct session **ss = xcalloc(k ? k : 1, sizeof(*ss));
	n = 0;
	for (size_t i = 0; i < k; i++)
		if (i == 0 || v[i].s->pid != v[i - 1].s->pid)
			ss[n++] = v[i].s;
	free(v);
	*out = ss;
	return n;
}

static void put_capped(struct sbuf *b, const char *s, size_t max, bool keep_tail);

static struct result *result_new(struct session **ss, size_t n)
{
	struct result *r = xcalloc(1, sizeof(*r));
	struct sbuf b = {0};

	r->n = n;
	r->procs = xcalloc(n ? n : 1, sizeof(*r->procs));
	for (size_t i = 0; i < n; i++) {
		const struct session *s = ss[i];
		struct proc *p = &r->procs[i];
		p->pid = s->pid;
		b.len = 0;
		sb_printf(&b, "pid=\"%d\",exe=\"", (int)s->pid);
		struct sbuf exe = {0};
		put_capped(&exe, s->exe != NULL ? s->exe : "", MAX_EXE, true);
		sb_label_value(&b, exe.p != NULL ? exe.p : "");
		free(exe.p);
		sb_puts(&b, "\"");
		p->labels = xstrdup(b.p);
		p->start_time = s->start_time;
		p->current = s->heap.current;
		p->peak = s->heap.peak;
		p->blocks = s->heap.blocks;
		p->allocations = s->heap.allocations;
		p->frees = s->heap.frees;
		p->lost_events = s->lost_events;
		p->lost_allocs = s->lost_allocs;
		p->lost_frees = s->lost_frees;
		p->truncated = s->lost_events != 0 || s->gave_up;
		p->limit_reached = s->heap.limit_reached;
	}
	free(b.p);
	return r;
}

/* ---- sites (thread pool) ---- */

/* Appends at most max bytes of s, cut at a character boundary; a cut
 * string ends in "...". From the end (keep_tail) for file names, whose
 * last components say most. */
static void put_capped(struct sbuf *b, const char *s, size_t max, bool keep_tail)
{
	size_t n = strlen(s);
	if (n <= max) {
		sb_put(b, s, n);
		return;
	}
	if (keep_tail) {
		const char *p = s + n - max;
		while (*p != '\0' && ((unsigned char)*p & 0xc0) == 0x80)
			p++;
		sb_puts(b, "...");
		sb_puts(b, p);
	} else {
		size_t l = max;
		while (l > 0 && ((unsigned char)s[l] & 0xc0) == 0x80)
			l--;
		sb_put(b, s, l);
		sb_puts(b, "...");
	}
}

/* "function (file:line)"; without a line "function (file)", or just the
 * name when file and function are the same "MODULE+0xOFFSET". */
static char *site_label(const struct frame_info *f)
{
	const char *fn = f->function != NULL ? f->function : "?";
	const char *file = f->filename != NULL ? f->filename : "?";
	struct sbuf b = {0};

	put_capped(&b, fn, MAX_FUNCTION, false);
	if (f->lineno > 0) {
		sb_puts(&b, " (");
		put_capped(&b, file, MAX_FILENAME, true);
		sb_printf(&b, ":%u)", (unsigned)f->lineno);
	} else if (strcmp(fn, file) != 0) {
		sb_puts(&b, " (");
		put_capped(&b, file, MAX_FILENAME, true);
		sb_puts(&b, ")");
	}
	return b.p;
}

static int by_label(const void *a, const void *b)
{
	return strcmp(((const struct site *)a)->label, ((const struct site *)b)->label);
}

static int by_bytes_desc(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return strcmp(x->label, y->label);
}

/* Groups a snapshot's live bytes by the site of each trace, as `top --key
 * lineno` does (the same frame: capture_resolve has expanded inlined calls
 * and dropped the allocator's frames, and the runtime's are passed over
 * here as query.c does), keeps the
 * `top` largest and puts the rest in "other". Groups whose labels come out
 * equal are merged, so labels are unique; a site labelled "other" is
 * counted in "other". */
static void site_table(const struct snapshot *snap, size_t top, struct sitetab *out)
{
	uint64_t *per_frame = xcalloc(snap->nframes + 1, sizeof(*per_frame));
	/* Whether each distinct frame is the runtime's, asked once per frame
	 * (0: not yet, 1: no, 2: yes): a process's many deep stacks of frames
	 * with long file names would otherwise cost every scrape a string
	 * search per frame of every trace. */
	uint8_t *runtime = xcalloc(snap->nframes + 1, 1);
	size_t ngroups = 0, n = 0;
	uint64_t kept = 0;

	for (size_t i = 0; i < snap->ntraces; i++) {
		const struct snapshot_trace *t = &snap->traces[i];
		/* The site as `top` names it by default: the first frame
		 * outside the C and C++ runtime (stdio's buffer at the
		 * program's printf), or the first when all are runtime. */
		uint32_t k = 0;
		for (; k < t->nframes; k++) {
			uint32_t fi = t->frames[k];
			if (runtime[fi] == 0)
				runtime[fi] = query_runtime_frame(&snap->frames[fi]) ? 2 : 1;
			if (runtime[fi] == 1)
				break;
		}
		if (k == t->nframes)
			k = 0;
		per_frame[t->nframes > 0 ? t->frames[k] : snap->nframes] += t->size;
	}
	free(runtime);
	for (size_t i = 0; i <= snap->nframes; i++)
		ngroups += per_frame[i] > 0;
	struct site *v = xcalloc(ngroups ? ngroups : 1, sizeof(*v));
	for (size_t i = 0; i <= snap->nframes; i++) {
		if (per_frame[i] == 0)
			continue;
		/* Escaped now, as the exposition prints it: two names that differ
		 * only in bytes the escaping replaces (invalid UTF-8) are one
		 * label, so they must be one site. */
		char *raw = i < snap->nframes ? site_label(&snap->frames[i]) : xstrdup("<unknown>");
		struct sbuf e = {0};
		sb_label_value(&e, raw);
		free(raw);
		v[n].label = e.p != NULL ? e.p : xstrdup("");
		v[n++].bytes = per_frame[i];
	}
	free(per_frame);
	qsort(v, n, sizeof(*v), by_label);
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w > 0 && strcmp(v[w - 1].label, v[i].label) == 0) {
			v[w - 1].bytes += v[i].bytes;
			free(v[i].label);
		} else if (strcmp(v[i].label, "other") == 0) {
			free(v[i].label);
		} else {
			v[w++] = v[i];
		}
	}
	n = w;
	qsort(v, n, sizeof(*v), by_bytes_desc);
	for (size_t i = top; i < n; i++)
		free(v[i].label);
	if (n > top)
		n = top;
	for (size_t i = 0; i < n; i++)
		kept += v[i].bytes;
	out->v = v;
	out->n = n;
	out->other = snap->current > kept ? snap->current - kept : 0;
}

/* Worker thread: touches only the round's captures and tables and the
 * thread-safe symbol cache. */
static void round_compute(struct job *job)
{
	struct round *r = job->arg;

	for (size_t i = 0; i < r->n; i++) {
		struct snapshot *snap = capture_resolve(r->caps[i], r->syms);
		site_table(snap, r->top, &r->tabs[i]);
		snapshot_free(snap);
		capture_free(r->caps[i]);
		r->caps[i] = NULL;
	}
}

static void round_free(struct round *r)
{
	if (r->ss != NULL) {
		for (size_t i = r->taken; i < r->n; i++)
			session_unref(r->ss[i]);
		free(r->ss);
	}
	for (size_t i = 0; i < r->n; i++) {
		capture_free(r->caps[i]);
		sitetab_close(&r->tabs[i]);
	}
	free(r->caps);
	free(r->tabs);
	result_free(r->res);
	free(r);
}

static void metrics_unref(struct metrics *m)
{
	if (--m->refs > 0)
		return;
	result_free(m->last);
	free(m);
}

static void on_deadline_closed(uv_handle_t *h)
{
	metrics_unref(h->data);
}

static void publish(struct metrics *m, struct result *res)
{
	result_free(m->last);
	m->last = res;
	m->last_ms = uv_now(m->d->loop);
}

/* Every waiting scrape is answered from m->last (or with 503 when
 * stopping) once the HTTP server hands it back. */
static void wake_waiters(struct metrics *m)
{
	if (m->http != NULL)
		http_resume_all(m->http);
}

static void round_done(struct job *job)
{
	struct round *r = job->arg;
	struct metrics *m = r->m;

	m->worker_busy = false;
	if (r->abandoned) {
		round_free(r);
		metrics_unref(m);
		return;
	}
	uv_timer_stop(&m->deadline);
	for (size_t i = 0; i < r->n; i++) {
		r->res->procs[i].sites = r->tabs[i];
		r->res->procs[i].have_sites = true;
		memset(&r->tabs[i], 0, sizeof(r->tabs[i]));
	}
	publish(m, r->res);
	r->res = NULL;
	m->round = NULL;
	round_free(r);
	wake_waiters(m);
	metrics_unref(m);
}

static void on_deadline(uv_timer_t *t)
{
	struct metrics *m = t->data;
	struct round *r = m->round;

	if (r == NULL)
		return;
	m->site_timeouts++;
	log_warn("metrics: allocation sites not symbolized within %d ms; answering the scrape "
	         "without them",
	         ROUND_DEADLINE_MS);
	r->abandoned = true;
	m->round = NULL;
	publish(m, r->res); /* the counters, without sites */
	r->res = NULL;
	wake_waiters(m);
}

static void capture_slice(struct metrics *m);
static void on_step(uv_idle_t *h);

/* Starts a round: captures on the loop (in slices), sites on the pool.
 * When no job is needed or possible the result is published at once and
 * m->round stays NULL. */
static void start_round(struct metrics *m)
{
	struct daemon *d = m->d;
	struct session **ss;
	session_drain_window(d, 20);
	size_t n = live_sessions(d, &ss);
	struct result *res = result_new(ss, n);

	if (m->top == 0) {
		/* Everything is "other": no symbols needed. */
		for (size_t i = 0; i < n; i++) {
			res->procs[i].have_sites = true;
			res->procs[i].sites.other = res->procs[i].current;
		}
	}
	if (n == 0 || m->top == 0 || m->worker_busy || m->capturing != NULL) {
		/* A busy worker is an abandoned round still resolving: answer
		 * without sites rather than queue up behind it. */
		free(ss);
		publish(m, res);
		return;
	}
	struct round *r = xcalloc(1, sizeof(*r));
	r->m = m;
	r->syms = d->syms;
	r->top = m->top;
	r->n = n;
	r->res = res;
	r->caps = xcalloc(n, sizeof(*r->caps));
	r->tabs = xcalloc(n, sizeof(*r->tabs));
	/* The captures are taken CAPTURE_SLICE_MS of loop time at a time (a
	 * process whose modules changed copies its map): each session is
	 * held until its turn. */
	r->ss = ss;
	for (size_t i = 0; i < n; i++)
		session_ref(ss[i]);
	m->round = r;
	m->capturing = r;
	uv_timer_start(&m->deadline, on_deadline, ROUND_DEADLINE_MS, 0);
	capture_slice(m);
}

/* Takes the captures of the capturing round for a slice of loop time; the
 * rest on the next turn; when all are taken, the sites go to the pool. */
static void capture_slice(struct metrics *m)
{
	struct round *r = m->capturing;
	uint64_t end = uv_hrtime() + (uint64_t)CAPTURE_SLICE_MS * 1000000u;

	if (r == NULL)
		return;
	if (r->abandoned) { /* the deadline answered without it, or stop */
		m->capturing = NULL;
		round_free(r);
		return;
	}
	uv_idle_stop(&m->step);
	while (r->taken < r->n) {
		struct session *s = r->ss[r->taken];
		r->caps[r->taken++] = capture_take(s, "metrics", 0);
		session_unref(s);
		if (r->taken < r->n && uv_hrtime() >= end) {
			/* An idle handle, not a timer of 0 ms: libuv runs a timer
			 * restarted from its own callback again in the same turn. */
			uv_idle_start(&m->step, on_step);
			return;
		}
	}
	free(r->ss);
	r->ss = NULL;
	m->capturing = NULL;

	struct job *job = job_new(m->d);
	job->source = JOB_SRC_NONE;
	job->arg = r;
	job->compute = round_compute;
	job->done = round_done;
	m->worker_busy = true;
	m->refs++;
	job_run(job);
}

static void on_step(uv_idle_t *h)
{
	capture_slice(h->data);
}

/* ---- rendering ---- */

enum format { FMT_TEXT, FMT_OM };

struct fmt {
	enum format f;
	const char *content_type;
};

static const struct fmt fmt_text = {FMT_TEXT, "text/plain; version=0.0.4; charset=utf-8"};
static const struct fmt fmt_om = {FMT_OM,
                                  "application/openmetrics-text; version=1.0.0; charset=utf-8"};
static const struct fmt fmt_om001 = {FMT_OM,
                                     "application/openmetrics-text; version=0.0.1; charset=utf-8"};

/* The Accept header's choice: OpenMetrics when it is named explicitly with a
 * quality at least that of the text format (text/plain, text/any or
 * any/any), else the text format, also for headers we cannot read. */
static const struct fmt *negotiate(const char *accept)
{
	double q_om = 0, q_text = 0;
	const struct fmt *om = &fmt_om;
	const char *p = accept;

	if (accept == NULL)
		return &fmt_text;
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		char item[256];
		snprintf(item, sizeof(item), "%.*s", (int)(len < 255 ? len : 255), p);
		p += len + (p[len] == ',');

		double q = 1;
		char version[32] = "";
		char *save = NULL;
		char *type = strtok_r(item, ";", &save);
		if (type == NULL)
			continue;
		type += strspn(type, " \t");
		type[strcspn(type, " \t")] = '\0';
		for (char *param; (param = strtok_r(NULL, ";", &save)) != NULL;) {
			param += strspn(param, " \t");
			if (strncasecmp(param, "q=", 2) == 0)
				q = strtod(param + 2, NULL);
			else if (strncasecmp(param, "version=", 8) == 0)
				snprintf(version, sizeof(version), "%.*s",
				         (int)strcspn(param + 8, " \t"), param + 8);
		}
		if (!(q > 0))
			continue;
		if (strcasecmp(type, "application/openmetrics-text") == 0) {
			bool v1 = version[0] == '\0' || strcmp(version, "1.0.0") == 0;
			bool v0 = strcmp(version, "0.0.1") == 0;
			if ((v1 || v0) && q > q_om) {
				q_om = q;
				om = v1 ? &fmt_om : &fmt_om001;
			}
		} else if ((strcasecmp(type, "text/plain") == 0 &&
		            (version[0] == '\0' || strcmp(version, "0.0.4") == 0)) ||
		           strcasecmp(type, "text/*") == 0 || strcmp(type, "*/*") == 0) {
			if (q > q_text)
				q_text = q;
		}
	}
	return q_om > 0 && q_om >= q_text ? om : &fmt_text;
}

/* A bucket bound as OpenMetrics wants an le label: a float, so 1 is
 * "1.0" (the text format accepts it too). */
static void float_label(char *out, size_t size, double v)
{
	snprintf(out, size, "%g", v);
	if (strpbrk(out, ".e") == NULL && strlen(out) + 2 < size)
		strcat(out, ".0");
}

enum mtype { M_GAUGE, M_COUNTER, M_HISTOGRAM, M_INFO };

/* HELP and TYPE (and UNIT in OpenMetrics) of a family. `name` is the
 * family name: without _total for counters and without _info for info
 * metrics, which the text format names by their sample. Help texts are
 * constants without quotes, backslashes or newlines, so they need no
 * escaping in either format. */
static void family(struct sbuf *b, enum format f, const char *name, enum mtype type,
                   const char *unit, const char *help)
{
	static const char *const types[] = {"gauge", "counter", "histogram", "info"};
	const char *suffix = "";
	const char *t = types[type];

	if (f == FMT_TEXT && type == M_COUNTER)
		suffix = "_total";
	if (f == FMT_TEXT && type == M_INFO) {
		suffix = "_info";
		t = "gauge";
	}
	sb_printf(b, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, t);
	if (f == FMT_OM && unit != NULL)
		sb_printf(b, "# UNIT %s %s\n", name, unit);
}

/* Seconds since the epoch at boot (/proc/stat's btime), 0 unknown. */
static uint64_t boot_time(void)
{
	char line[256];
	unsigned long long v = 0;
	FILE *f = fopen("/proc/stat", "re");

	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "btime %llu", &v) == 1)
			break;
	if (f != NULL)
		fclose(f);
	return v;
}

/* memtraced's own process, under the names Prometheus's client libraries
 * use (process_*): CPU, memory, descriptors, start. */
static void render_self(struct sbuf *b, enum format f, uint64_t btime)
{
	struct procstat ps;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);

	if (procstat_read(0, &ps) == 0 && tick > 0) {
		family(b, f, "process_cpu_seconds", M_COUNTER, "seconds",
		       "User and system CPU time memtraced spent.");
		sb_printf(b, "process_cpu_seconds_total %.2f\n",
		          (double)(ps.utime + ps.stime) / tick);
		family(b, f, "process_resident_memory_bytes", M_GAUGE, "bytes",
		       "memtraced's resident memory.");
		sb_printf(b, "process_resident_memory_bytes %ld\n", ps.rss * page);
		family(b, f, "process_virtual_memory_bytes", M_GAUGE, "bytes",
		       "memtraced's virtual memory.");
		sb_printf(b, "process_virtual_memory_bytes %lu\n", ps.vsize);
		if (btime != 0) {
			family(b, f, "process_start_time_seconds", M_GAUGE, "seconds",
			       "When memtraced started, in seconds since the epoch.");
			sb_printf(b, "process_start_time_seconds %.2f\n",
			          (double)btime + (double)ps.start_time / tick);
		}
	}
	size_t fds = 0;
	DIR *dir = opendir("/proc/self/fd");
	for (struct dirent *e; dir != NULL && (e = readdir(dir)) != NULL;)
		fds += e->d_name[0] != '.';
	if (dir != NULL) {
		closedir(dir);
		family(b, f, "process_open_fds", M_GAUGE, NULL,
		       "Descriptors memtraced has open (this count's own included).");
		sb_printf(b, "process_open_fds %zu\n", fds);
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		family(b, f, "process_max_fds", M_GAUGE, NULL, "memtraced's limit of descriptors.");
		sb_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
}

/* One per-process family: a sample per process from field `off`. */
static void per_process(struct sbuf *b, enum format f, const struct result *r, const char *name,
                        enum mtype type, const char *unit, const char *help, size_t off)
{
	family(b, f, name, type, unit, help);
	for (size_t i = 0; i < r->n; i++) {
		const struct proc *p = &r->procs[i];
		uint64_t v;
		memcpy(&v, (const char *)p + off, sizeof(v));
		sb_printf(b, "%s%s{%s} %" PRIu64 "\n", name, type == M_COUNTER ? "_total" : "",
		          p->labels, v);
	}
}

/* The limits users share, what they hold and what they refused, and how
 * long the loop was busy at most (README "Limits"). */
static void render_limits(struct sbuf *b, enum format f, const struct metrics *m)
{
	const struct daemon *d = m->d;
	const struct limit *ls[] = {
	    &d->agent_sessions, &d->fork_images,
	    &d->control_conns,  &d->snap_queue,
	    &d->snap_bytes,     &d->model_blocks,
	    &d->model_stacks,   m->http != NULL ? http_limit(m->http) : NULL};
	const char *per[] = {"uid", "uid", "uid", "uid", "uid", "uid", "uid", "origin"};
	const size_t nl = sizeof(ls) / sizeof(ls[0]);
	struct symbols_stats ss;
	struct store_usage su = {0};

	/* The store's bound is not a struct limit (the store keeps it, on the
	 * thread pool): its figures join the same families as store_bytes. */
	if (d->store != NULL)
		store_usage(d->store, &su);

	struct symbols_uid su_sym[SYMBOLS_UIDS_SHOWN];
	size_t nsu = symbols_uids(d->syms, su_sym, SYMBOLS_UIDS_SHOWN);

	symbols_get_stats(d->syms, &ss);
	family(b, f, "memtrace_limit_used", M_GAUGE, NULL,
	       "What a shared limit holds now (connections, snapshots, or bytes for "
	       "queued_snapshot_bytes, fork_image_bytes, symbol_cache_bytes and store_bytes).");
	for (size_t i = 0; i < nl; i++)
		if (ls[i] != NULL)
			sb_printf(b, "memtrace_limit_used{limit=\"%s\"} %zu\n", ls[i]->name,
			          ls[i]->used);
	sb_printf(b, "memtrace_limit_used{limit=\"symbol_cache_bytes\"} %zu\n", ss.bytes);
	if (d->store != NULL)
		sb_printf(b, "memtrace_limit_used{limit=\"store_bytes\"} %" PRIu64 "\n", su.bytes);
	family(b, f, "memtrace_limit_max", M_GAUGE, NULL,
	       "The bound of a shared limit, in all (scope total) and per uid or origin (0: "
	       "none).");
	for (size_t i = 0; i < nl; i++) {
		if (ls[i] == NULL)
			continue;
		sb_printf(b, "memtrace_limit_max{limit=\"%s\",scope=\"total\"} %zu\n", ls[i]->name,
		          ls[i]->max);
		sb_printf(b, "memtrace_limit_max{limit=\"%s\",scope=\"per_%s\"} %zu\n", ls[i]->name,
		          per[i], ls[i]->per_owner);
	}
	sb_printf(b, "memtrace_limit_max{limit=\"symbol_cache_bytes\",scope=\"total\"} %zu\n",
	          ss.max_bytes);
	sb_printf(b, "memtrace_limit_max{limit=\"symbol_cache_bytes\",scope=\"per_uid\"} %zu\n",
	          ss.per_uid);
	if (d->store != NULL) {
		sb_printf(b,
		          "memtrace_limit_max{limit=\"store_bytes\",scope=\"total\"} %" PRIu64 "\n",
		          su.max_bytes);
		sb_printf(
		    b, "memtrace_limit_max{limit=\"store_bytes\",scope=\"per_uid\"} %" PRIu64 "\n",
		    su.max_bytes_per_uid);
	}
	family(b, f, "memtrace_limit_refused", M_COUNTER, NULL,
	       "Requests a shared limit refused: connections closed with an error, snapshots "
	       "not taken or not stored (store_bytes), frames resolved without being cached "
	       "because their uid held its share (symbol_cache_bytes: nothing is lost).");
	for (size_t i = 0; i < nl; i++)
		if (ls[i] != NULL)
			sb_printf(b, "memtrace_limit_refused_total{limit=\"%s\"} %" PRIu64 "\n",
			          ls[i]->name, ls[i]->refused);
	/* For the symbol cache, a frame not cached because its uid held its
	 * share (resolved all the same). */
	sb_printf(b, "memtrace_limit_refused_total{limit=\"symbol_cache_bytes\"} %" PRIu64 "\n",
	          ss.uncached);
	if (d->store != NULL)
		sb_printf(b, "memtrace_limit_refused_total{limit=\"store_bytes\"} %" PRIu64 "\n",
		          su.refused);
	family(b, f, "memtrace_symbol_cache_retired", M_COUNTER, NULL,
	       "Times the symbol cache passed --max-symbol-cache-bytes and started afresh.");
	sb_printf(b, "memtrace_symbol_cache_retired_total %" PRIu64 "\n", ss.retired);
	family(b, f, "memtrace_symbol_cache_uid_bytes", M_GAUGE, "bytes",
	       "What a uid's processes added to the symbol cache (estimated), bounded by a "
	       "quarter of --max-symbol-cache-bytes.");
	for (size_t i = 0; i < nsu; i++)
		sb_printf(b, "memtrace_symbol_cache_uid_bytes{uid=\"%u\"} %zu\n",
		          (unsigned)su_sym[i].uid, su_sym[i].bytes);
	if (d->store != NULL) {
		family(b, f, "memtrace_store_bytes", M_GAUGE, "bytes",
		       "Bytes of stored snapshots charged to a uid (their rows and blobs, as if "
		       "shared with nothing), bounded by --max-store-bytes-per-uid and "
		       "--max-store-bytes.");
		for (size_t i = 0; i < su.nuids; i++)
			sb_printf(b, "memtrace_store_bytes{uid=\"%u\"} %" PRIu64 "\n",
			          (unsigned)su.uids[i].uid, su.uids[i].bytes);
		uint64_t fb = 0;
		if (store_file_bytes(d->store, &fb) == 0) {
			family(b, f, "memtrace_store_file_bytes", M_GAUGE, "bytes",
			       "Bytes the store's file and its write-ahead log take on disk (more "
			       "than memtrace_store_bytes: indexes, free pages, the WAL).");
			sb_printf(b, "memtrace_store_file_bytes %" PRIu64 "\n", fb);
		}
		family(b, f, "memtrace_store_snapshots", M_GAUGE, NULL,
		       "Stored snapshots of a uid's processes.");
		for (size_t i = 0; i < su.nuids; i++)
			sb_printf(b, "memtrace_store_snapshots{uid=\"%u\"} %" PRIu64 "\n",
			          (unsigned)su.uids[i].uid, su.uids[i].snapshots);
		family(b, f, "memtrace_store_evicted", M_COUNTER, NULL,
		       "Stored snapshots of a uid deleted to keep a bound: its own (bound "
		       "per_uid) or the store's (bound total, taken from the uid holding the "
		       "most).");
		for (size_t i = 0; i < su.nuids; i++) {
			sb_printf(
			    b,
			    "memtrace_store_evicted_total{uid=\"%u\",bound=\"per_uid\"} %" PRIu64
			    "\n",
			    (unsigned)su.uids[i].uid, su.uids[i].evicted_own);
			sb_printf(
			    b,
			    "memtrace_store_evicted_total{uid=\"%u\",bound=\"total\"} %" PRIu64
			    "\n",
			    (unsigned)su.uids[i].uid, su.uids[i].evicted_total);
		}
	}
	store_usage_free(&su);
	family(b, f, "memtrace_modules_dropped", M_COUNTER, NULL,
	       "Modules not kept because a process passed --max-modules.");
	sb_printf(b, "memtrace_modules_dropped_total %" PRIu64 "\n", d->modules_dropped);
	family(b, f, "memtrace_control_unread_bytes", M_GAUGE, "bytes",
	       "Answer bytes control clients have not read yet.");
	sb_printf(b, "memtrace_control_unread_bytes %zu\n", d->control_unread);
	family(b, f, "memtrace_control_unread_max_bytes", M_GAUGE, "bytes",
	       "Unread answer bytes past which a control client's requests wait.");
	sb_printf(b, "memtrace_control_unread_max_bytes %zu\n", (size_t)CONTROL_MAX_UNREAD);
	family(b, f, "memtrace_control_paused", M_COUNTER, NULL,
	       "Times a control client left so much unread that its requests had to wait.");
	sb_printf(b, "memtrace_control_paused_total %" PRIu64 "\n", d->control_paused);
	family(b, f, "memtrace_control_stalled", M_COUNTER, NULL,
	       "Control connections closed for reading nothing, or sending half a request, "
	       "for --control-timeout seconds.");
	sb_printf(b, "memtrace_control_stalled_total %" PRIu64 "\n", d->control_stalled);
	if (m->http != NULL) {
		family(b, f, "memtrace_http_deadline_cut", M_COUNTER, NULL,
		       "HTTP connections cut because a request was not in within 10 s or its "
		       "answer not read within 60 s.");
		sb_printf(b, "memtrace_http_deadline_cut_total %" PRIu64 "\n", http_cut(m->http));
	}
	family(b, f, "memtrace_loop_stall_max_seconds", M_GAUGE, "seconds",
	       "The longest time the daemon's loop ran callbacks without waiting, since it "
	       "started: how long any client may have waited for it.");
	sb_printf(b, "memtrace_loop_stall_max_seconds %.9f\n",
	          loopwatch_max_seconds(&d->loopwatch));
	family(b, f, "memtrace_loop_slow_iterations", M_COUNTER, NULL,
	       "Loop iterations that ran callbacks for more than 50 ms.");
	sb_printf(b, "memtrace_loop_slow_iterations_total %" PRIu64 "\n", d->loopwatch.slow);
	family(b, f, "memtrace_drain_yield", M_GAUGE, NULL,
	       "1 when passes of reading the rings may run at idle priority (memtraced "
	       "--no-drain-yield; status drain.yield_off_reason says why not), else 0.");
	sb_printf(b, "memtrace_drain_yield %d\n", d->yield.on ? 1 : 0);
	family(b, f, "memtrace_drain_passes", M_COUNTER, NULL,
	       "Passes of reading the rings, by priority: idle (SCHED_IDLE, giving way to "
	       "the traced programs; counted so even when the watchdog ended the yield) or "
	       "normal (the daemon's own nice value: a traced process had a ring 3/4 full or "
	       "a thread waiting for room, the second after a pass that yielded 20 ms, or "
	       "yielding off).");
	sb_printf(b, "memtrace_drain_passes_total{priority=\"idle\"} %" PRIu64 "\n",
	          d->yield.yielded);
	sb_printf(b, "memtrace_drain_passes_total{priority=\"normal\"} %" PRIu64 "\n",
	          d->yield.normal);
	family(b, f, "memtrace_drain_yield_escalations", M_COUNTER, NULL,
	       "Idle-priority passes the watchdog put back to normal priority 20 ms after "
	       "they began (a machine busy with other work); no pass yields for 1 s after.");
	sb_printf(b, "memtrace_drain_yield_escalations_total %" PRIu64 "\n",
	          (uint64_t)atomic_load(&d->yield.escalations));
	family(b, f, "memtrace_models_forgotten", M_COUNTER, NULL,
	       "Ended processes forgotten before their time to make room for the blocks or "
	       "stacks of live ones (--max-blocks-per-uid and the like).");
	sb_printf(b, "memtrace_models_forgotten_total %" PRIu64 "\n", d->models_forgotten);
}

static char *render(struct metrics *m, const struct result *r, enum format f, size_t *len)
{
	struct daemon *d = m->d;
	const struct jobs_writes *w = jobs_writes(d->jobs);
	struct sbuf b = {0};
	uint64_t cum = 0;

	per_process(&b, f, r, "memtrace_process_current_bytes", M_GAUGE, "bytes",
	            "Bytes the traced process holds in live blocks (as requested from malloc).",
	            offsetof(struct proc, current));
	per_process(&b, f, r, "memtrace_process_peak_bytes", M_GAUGE, "bytes",
	            "Highest current bytes of the traced process since it started or its peak "
	            "was reset.",
	            offsetof(struct proc, peak));
	per_process(&b, f, r, "memtrace_process_live_blocks", M_GAUGE, NULL,
	            "Live blocks of the traced process.", offsetof(struct proc, blocks));
	per_process(&b, f, r, "memtrace_process_allocations", M_COUNTER, NULL,
	            "Allocations the traced process made.", offsetof(struct proc, allocations));
	per_process(&b, f, r, "memtrace_process_frees", M_COUNTER, NULL,
	            "Frees of traced blocks by the process.", offsetof(struct proc, frees));
	per_process(&b, f, r, "memtrace_process_lost_events", M_COUNTER, NULL,
	            "Events the agent dropped (MEMTRACE_ON_FULL=drop, or lossless mode after "
	            "MEMTRACE_BLOCK_TIMEOUT); the other values are then lower bounds.",
	            offsetof(struct proc, lost_events));
	per_process(&b, f, r, "memtrace_process_lost_allocations", M_COUNTER, NULL,
	            "Allocations among the lost events: allocations plus this is what the "
	            "process allocated.",
	            offsetof(struct proc, lost_allocs));
	per_process(&b, f, r, "memtrace_process_lost_frees", M_COUNTER, NULL,
	            "Frees among the lost events.", offsetof(struct proc, lost_frees));
	per_process(&b, f, r, "memtrace_process_truncated", M_GAUGE, NULL,
	            "1 when events of the traced process were lost (its session is truncated).",
	            offsetof(struct proc, truncated));

	/* A pid reused by a later process starts new series with the same
	 * labels: this one tells the two apart. */
	uint64_t btime = m->btime;
	long tick = sysconf(_SC_CLK_TCK);
	if (btime != 0 && tick > 0) {
		family(&b, f, "memtrace_process_start_time_seconds", M_GAUGE, "seconds",
		       "When the traced process started, in seconds since the epoch: a pid "
		       "reused by another process shows a new value.");
		for (size_t i = 0; i < r->n; i++)
			sb_printf(&b, "memtrace_process_start_time_seconds{%s} %.2f\n",
			          r->procs[i].labels,
			          (double)btime + (double)r->procs[i].start_time / tick);
	}

	family(&b, f, "memtrace_process_limit_reached", M_GAUGE, NULL,
	       "1 when the daemon stopped tracking new blocks or new stacks (the limit label) "
	       "of the process; its values are then lower bounds.");
	for (size_t i = 0; i < r->n; i++) {
		const struct proc *p = &r->procs[i];
		sb_printf(&b, "memtrace_process_limit_reached{%s,limit=\"blocks\"} %d\n", p->labels,
		          (p->limit_reached & HEAP_LIMIT_BLOCKS) != 0);
		sb_printf(&b, "memtrace_process_limit_reached{%s,limit=\"stacks\"} %d\n", p->labels,
		          (p->limit_reached & HEAP_LIMIT_STACKS) != 0);
	}

	family(&b, f, "memtrace_site_live_bytes", M_GAUGE, "bytes",
	       "Live bytes of the process by allocation site (the first frame outside the C and "
	       "C++ runtime, as memtracectl top names it), for its largest sites; the site named "
	       "other has the rest, so they sum to the current bytes.");
	for (size_t i = 0; i < r->n; i++) {
		const struct proc *p = &r->procs[i];
		if (!p->have_sites)
			continue;
		for (size_t j = 0; j < p->sites.n; j++) {
			sb_printf(&b, "memtrace_site_live_bytes{%s,site=\"", p->labels);
			sb_puts(&b, p->sites.v[j].label); /* escaped by site_table */
			sb_printf(&b, "\"} %" PRIu64 "\n", p->sites.v[j].bytes);
		}
		sb_printf(&b, "memtrace_site_live_bytes{%s,site=\"other\"} %" PRIu64 "\n",
		          p->labels, p->sites.other);
	}

	family(&b, f, "memtrace_events_ingested", M_COUNTER, NULL,
	       "Events (allocations and frees) the daemon took in from agents.");
	sb_printf(&b, "memtrace_events_ingested_total %" PRIu64 "\n", d->events_total);
	family(&b, f, "memtrace_sessions", M_GAUGE, NULL,
	       "Traced processes the daemon keeps: connected (live) or ended (exited).");
	sb_printf(&b, "memtrace_sessions{state=\"live\"} %zu\n", d->nlive);
	sb_printf(&b, "memtrace_sessions{state=\"exited\"} %zu\n", d->nexited);
	family(&b, f, "memtrace_sessions_rejected", M_COUNTER, NULL,
	       "Agent connections refused because --max-sessions processes were traced.");
	sb_printf(&b, "memtrace_sessions_rejected_total %" PRIu64 "\n", d->sessions_rejected);

	render_limits(&b, f, m);

	family(&b, f, "memtrace_snapshot_write_seconds", M_HISTOGRAM, "seconds",
	       "Time to write one snapshot to the SQLite store.");
	for (size_t i = 0; i < JOBS_WRITE_BUCKETS; i++) {
		char le[32];
		cum += w->bucket[i];
		float_label(le, sizeof(le), jobs_write_bounds[i]);
		sb_printf(&b, "memtrace_snapshot_write_seconds_bucket{le=\"%s\"} %" PRIu64 "\n", le,
		          cum);
	}
	sb_printf(&b, "memtrace_snapshot_write_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
	          w->count);
	sb_printf(&b, "memtrace_snapshot_write_seconds_sum %.9g\n", w->sum);
	sb_printf(&b, "memtrace_snapshot_write_seconds_count %" PRIu64 "\n", w->count);

	family(&b, f, "memtrace_metrics_site_timeouts", M_COUNTER, NULL,
	       "Scrapes answered without site series because symbolizing took too long.");
	sb_printf(&b, "memtrace_metrics_site_timeouts_total %" PRIu64 "\n", m->site_timeouts);

	render_self(&b, f, btime);

	family(&b, f, "memtrace_build", M_INFO, NULL, "The memtraced version.");
	sb_puts(&b, "memtrace_build_info{version=\"");
	sb_label_value(&b, PACKAGE_VERSION);
	sb_puts(&b, "\"} 1\n");
	if (f == FMT_OM)
		sb_puts(&b, "# EOF\n");
	*len = b.len;
	return b.p;
}

/* ---- requests ---- */

static void reply_text(struct http_request *rq, unsigned status, const char *text,
                       const char *allow)
{
	http_reply(rq, status, "text/plain; charset=utf-8", allow, xstrdup(text), strlen(text));
}

static void reply_metrics(struct metrics *m, struct http_request *rq)
{
	size_t len;

	if (m->stopping || m->last == NULL) {
		reply_text(rq, 503, "memtraced is stopping\n", NULL);
		return;
	}
	const struct fmt *f = negotiate(http_header(rq, "Accept"));
	char *body = render(m, m->last, f->f, &len);
	http_reply(rq, 200, f->content_type, NULL, body, len);
}

/* A scrape: from the last result if it is fresh, else after a new round. */
static void serve(struct metrics *m, struct http_request *rq)
{
	if (m->stopping) {
		reply_metrics(m, rq);
		return;
	}
	if (m->round != NULL) {
		http_suspend(rq);
		return;
	}
	if (m->last == NULL || uv_now(m->d->loop) - m->last_ms >= MIN_REFRESH_MS)
		start_round(m);
	if (m->round != NULL) {
		http_suspend(rq);
		return;
	}
	reply_metrics(m, rq);
}

/* Refusals are answered as soon as the headers are in (the connection then
 * closes); scrapes when the whole request is in, which keeps the connection
 * alive for the next scrape. A scrape that waited for a round is answered
 * from what the round published. */
static void on_request(struct http_request *rq, enum http_event ev, void *arg)
{
	struct metrics *m = arg;
	const char *method = http_method(rq);

	if (webui_path(http_url(rq))) {
		webui_request(m->d, m->http, rq, ev, m->stopping);
		return;
	}
	switch (ev) {
	case HTTP_HEADERS:
		if (strcmp(http_url(rq), "/metrics") != 0)
			reply_text(rq, 404, "Not found: memtraced serves /metrics and /ui\n", NULL);
		else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			reply_text(rq, 405, "Method not allowed: use GET or HEAD\n", "GET, HEAD");
		return;
	case HTTP_REQUEST:
		serve(m, rq);
		return;
	case HTTP_RESUMED:
		/* Woken by a web interface answer while its round still runs. */
		if (m->round != NULL && !m->stopping)
			http_suspend(rq);
		else
			reply_metrics(m, rq);
		return;
	}
}

/* ---- start and stop ---- */

int metrics_start(struct daemon *d, const char *where)
{
	struct metrics *m;
	int rc;

	if (strcmp(where, "off") == 0)
		return 0;
	m = xcalloc(1, sizeof(*m));
	m->d = d;
	m->btime = boot_time(); /* fixed until the next boot: read once */
	m->top = d->cfg.metrics_top_sites;
	if ((rc = http_new(d->loop, where, "metrics", on_request, m, d->cfg.metrics_max_conns,
	                   d->cfg.metrics_max_conns_per_origin, &m->http)) < 0) {
		free(m);
		return rc;
	}
	m->refs = 3; /* the two timers and "started" */
	uv_timer_init(d->loop, &m->deadline);
	m->deadline.data = m;
	uv_idle_init(d->loop, &m->step);
	m->step.data = m;
	d->metrics = m;
	d->http_conns = http_limit(m->http);
	log_info("metrics on http://%s:%d/metrics", http_host(m->http), http_port(m->http));
	/* Where a browser on this machine reaches it: a wildcard address on the
	 * loopback one. */
	const char *host = http_host(m->http);
	snprintf(d->web_origin, sizeof(d->web_origin), "http://%s:%d",
	         strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
	         : strcmp(host, "[::]") == 0  ? "[::1]"
	                                      : host,
	         http_port(m->http));
	return 0;
}

void metrics_stop(struct daemon *d)
{
	struct metrics *m = d->metrics;

	if (m == NULL)
		return;
	d->metrics = NULL;
	d->http_conns = NULL;
	d->web_origin[0] = '\0';
	m->stopping = true;
	if (m->round != NULL) {
		m->round->abandoned = true; /* freed when its job is done */
		m->round = NULL;
	}
	uv_timer_stop(&m->deadline);
	uv_idle_stop(&m->step);
	if (m->capturing != NULL) {
		round_free(m->capturing);
		m->capturing = NULL;
	}
	/* Waiting scrapes are handed back once more and answered 503. */
	http_free(m->http);
	m->http = NULL;
	uv_close((uv_handle_t *)&m->deadline, on_deadline_closed);
	uv_close((uv_handle_t *)&m->step, on_deadline_closed);
	metrics_unref(m);
}
