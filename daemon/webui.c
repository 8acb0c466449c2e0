/* webui.c - the web interface (see webui.h). */
#include "webui.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "control.h"
#include "jsonout.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

/* The page, from daemon/ui.html (the build makes it a C string). */
static const char ui_page[] =
#include "daemon/ui_html.h"
    ;

struct webui_token {
	uint8_t key[WEBUI_TOKEN_CHARS / 2];
	uid_t uid;
	double expires; /* Unix seconds; 0 = free slot */
	double granted;
};

struct webui {
	struct webui_token tok[WEBUI_TOKENS];
};

/* One request's wait for its control answer. */
struct webreq {
	struct http *h;
	struct conn *call; /* in flight, or NULL */
	char *text;        /* the answer once it came */
	bool flame;        /* the answer is a page, not JSON */
	bool in_call;      /* inside control_call: answered without a resume */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int webui_grant(struct daemon *d, uid_t uid, char *url, size_t cap, double *expires_at)
{
	const char *host = metrics_host(d);
	if (host == NULL)
		return -ENOTCONN;
	if (d->webui == NULL)
		d->webui = xcalloc(1, sizeof(*d->webui));
	struct webui *w = d->webui;
	double now = now_s();
	struct webui_token *slot = NULL, *oldest_mine = NULL, *oldest = NULL;
	int mine = 0;

	for (size_t i = 0; i < WEBUI_TOKENS; i++) {
		struct webui_token *t = &w->tok[i];
		if (t->expires <= now) {
			if (slot == NULL)
				slot = t;
			continue;
		}
		if (t->uid == uid) {
			mine++;
			if (oldest_mine == NULL || t->granted < oldest_mine->granted)
				oldest_mine = t;
		}
		if (oldest == NULL || t->granted < oldest->granted)
			oldest = t;
	}
	/* The uid's own oldest goes first; past the total, anybody's oldest. */
	if (mine >= WEBUI_PER_UID)
		slot = oldest_mine;
	else if (slot == NULL)
		slot = oldest;
	uint8_t key[sizeof(slot->key)];
	if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key)
		return -EIO;
	memcpy(slot->key, key, sizeof key);
	slot->uid = uid;
	slot->granted = now;
	slot->expires = now + WEBUI_TTL_S;
	*expires_at = slot->expires;

	char hex[WEBUI_TOKEN_CHARS + 1];
	for (size_t i = 0; i < sizeof key; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	/* A wildcard address is reached on the loopback one. */
	const char *shown = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
	                    : strcmp(host, "[::]") == 0  ? "[::1]"
	                                                 : host;
	snprintf(url, cap, "http://%s:%d/ui?token=%s", shown, metrics_port(d), hex);
	return 0;
}

/* The uid a token was granted to; -1 when it is not one (unknown, expired,
 * malformed). Every live slot is compared in full, whatever matches. */
static long token_uid(struct daemon *d, const char *token)
{
	uint8_t key[WEBUI_TOKEN_CHARS / 2];
	double now = now_s();
	long uid = -1;

	if (d->webui == NULL || token == NULL || strlen(token) != WEBUI_TOKEN_CHARS)
		return -1;
	for (size_t i = 0; i < sizeof key; i++) {
		int hi = hexval(token[2 * i]), lo = hexval(token[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	for (size_t i = 0; i < WEBUI_TOKENS; i++) {
		const struct webui_token *t = &d->webui->tok[i];
		uint8_t diff = 0;
		for (size_t j = 0; j < sizeof key; j++)
			diff |= (uint8_t)(t->key[j] ^ key[j]);
		if (diff == 0 && t->expires > now)
			uid = (long)t->uid;
	}
	return uid;
}

bool webui_path(const char *url)
{
	return strncmp(url, "/ui", 3) == 0 && (url[3] == '\0' || url[3] == '/');
}

void webui_free(struct daemon *d)
{
	free(d->webui);
	d->webui = NULL;
}

/* ---- answers ---- */

static void reply(struct http_request *rq, unsigned status, const char *type, char *body,
                  size_t len)
{
	const char *headers[] = {
	    "Content-Type",
	    type,
	    "Cache-Control",
	    "no-store",
	    "Referrer-Policy",
	    "no-referrer",
	    "X-Content-Type-Options",
	    "nosniff",
	    "X-Frame-Options",
	    "SAMEORIGIN",
	    "Content-Security-Policy",
	    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
	    "img-src data:; connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; "
	    "base-uri 'none'; form-action 'none'",
	    NULL,
	};
	http_reply_headers(rq, status, headers, body, len);
}

static void reply_text(struct http_request *rq, unsigned status, const char *text)
{
	reply(rq, status, "text/plain; charset=utf-8", xstrdup(text), strlen(text));
}

static void reply_answer(struct http_request *rq, struct webreq *w)
{
	char *text = w->text;
	bool page = w->flame && text[0] == '<';
	w->text = NULL;
	/* An error answer (one JSON object with "error") is a 4xx for the
	 * browser too; the body says which. */
	unsigned status = 200;
	if (!page && strncmp(text, "{\"error\":", 9) == 0)
		status = strstr(text, "\"no_such_") != NULL || strstr(text, "\"snapshot_deleted\"")
		             ? 404
		             : 400;
	if (w->flame && !page) {
		/* The flame graph's frame shows it to a person: a sentence. */
		cJSON *j = cJSON_Parse(text);
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(j, "error"), "message");
		char line[600];
		snprintf(line, sizeof line,
		         "No flame graph: %.500s.\nPick a process in the list of the page.\n",
		         cJSON_IsString(m) ? m->valuestring : "memtraced could not draw it");
		cJSON_Delete(j);
		free(text);
		reply_text(rq, status, line);
		return;
	}
	reply(rq, status, page ? "text/html; charset=utf-8" : "application/json", text,
	      strlen(text));
}

static void on_answer(void *arg, char *text)
{
	struct webreq *w = arg;
	w->text = text;
	w->call = NULL; /* control frees it after this returns */
	if (!w->in_call)
		http_resume_all(w->h);
}

static void webreq_release(void *data)
{
	struct webreq *w = data;
	if (w->call != NULL)
		control_call_cancel(w->call);
	free(w->text);
	free(w);
}

/* Runs one control request for the token's uid; answers now or suspends. */
static void ask(struct daemon *d, struct http *h, struct http_request *rq, uid_t uid,
                const char *req, bool flame)
{
	struct webreq *w = xcalloc(1, sizeof(*w));
	w->h = h;
	w->flame = flame;
	http_set_data(rq, w, webreq_release);
	w->in_call = true;
	w->call = control_call(d, uid, req, strlen(req), on_answer, w);
	w->in_call = false;
	if (w->text != NULL)
		reply_answer(rq, w);
	else
		http_suspend(rq);
}

/* A decimal id in 1 .. 2^53 (a pid, a snapshot id), else -1. */
static double id_arg(const char *s)
{
	char *end;
	if (s == NULL || *s < '1' || *s > '9' || strlen(s) > 15)
		return -1;
	double v = strtod(s, &end);
	return *end == '\0' ? v : -1;
}

static void serve(struct daemon *d, struct http *h, struct http_request *rq, uid_t uid)
{
	const char *url = http_url(rq);

	if (strcmp(url, "/ui") == 0 || strcmp(url, "/ui/") == 0) {
		reply(rq, 200, "text/html; charset=utf-8", xstrdup(ui_page), sizeof ui_page - 1);
		return;
	}
	if (strcmp(url, "/ui/api") == 0) {
		const char *q = http_arg(rq, "q");
		if (q == NULL || *q == '\0') {
			reply_text(rq, 400,
			           "Bad request: /ui/api wants q=REQUEST (one JSON object)\n");
			return;
		}
		if (strlen(q) > CONTROL_MAX_REQUEST) {
			reply_text(rq, 413, "Request too large\n");
			return;
		}
		ask(d, h, rq, uid, q, false);
		return;
	}
	/* /ui/flame (webui_request let no other path through) */
	double pid = id_arg(http_arg(rq, "pid")), snap = id_arg(http_arg(rq, "snapshot"));
	const char *value = http_arg(rq, "value");
	if ((pid < 0) == (snap < 0) || pid > 2147483647.0) {
		reply_text(rq, 400, "Bad request: /ui/flame wants pid=PID or snapshot=ID\n");
		return;
	}
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "flame");
	cJSON_AddNumberToObject(req, pid > 0 ? "pid" : "snapshot", pid > 0 ? pid : snap);
	if (value != NULL)
		cJSON_AddStringToObject(req, "value", value);
	char *text = jsonout_print(req, false);
	cJSON_Delete(req);
	ask(d, h, rq, uid, text, true);
	free(text);
}

void webui_request(struct daemon *d, struct http *h, struct http_request *rq, enum http_event ev,
                   bool stopping)
{
	const char *url = http_url(rq), *method = http_method(rq);
	long uid;

	switch (ev) {
	case HTTP_HEADERS:
		if (strcmp(url, "/ui") != 0 && strcmp(url, "/ui/") != 0 &&
		    strcmp(url, "/ui/api") != 0 && strcmp(url, "/ui/flame") != 0)
			reply_text(rq, 404, "Not found: the web interface is /ui\n");
		else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			http_reply(rq, 405, "text/plain; charset=utf-8", "GET, HEAD",
			           xstrdup("Method not allowed: use GET\n"), 28);
		else if (token_uid(d, http_arg(rq, "token")) < 0)
			reply_text(
			    rq, 401,
			    "401 Unauthorized: this page needs the token that `memtracectl ui` "
			    "prints in its URL (valid 12 hours, for the user who ran it).\n");
		return;
	case HTTP_REQUEST:
		if (stopping) {
			reply_text(rq, 503, "memtraced is stopping\n");
			return;
		}
		/* Checked again: the token may have expired meanwhile. */
		uid = token_uid(d, http_arg(rq, "token"));
		if (uid < 0)
			reply_text(rq, 401, "401 Unauthorized\n");
		else
			serve(d, h, rq, (uid_t)uid);
		return;
	case HTTP_RESUMED: {
		struct webreq *w = http_data(rq);
		if (w != NULL && w->text != NULL)
			reply_answer(rq, w);
		else if (stopping || w == NULL)
			reply_text(rq, 503, "memtraced is stopping\n");
		else
			http_suspend(rq); /* another request's answer woke it */
		return;
	}
	}
}
