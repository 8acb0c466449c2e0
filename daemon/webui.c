/* webui.c - the web interface (see webui.h). */
#include "webui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "control.h"
#include "jsonout.h"
#include "webtoken.h"
#include "xalloc.h"

/* The page, from daemon/ui.html (the build makes it a C string). */
static const char ui_page[] =
#include "daemon/ui_html.h"
    ;

/* One request's wait for its control answer. */
struct webreq {
	struct http *h;
	struct conn *call; /* in flight, or NULL */
	char *text;        /* the answer once it came */
	bool flame;        /* the answer is a page, not JSON */
	bool in_call;      /* inside control_call: answered without a resume */
};

/* The session cookie's name: per port, so that two daemons of one host
 * (the cookie jar is per host) do not overwrite each other's. */
static void cookie_name(const struct daemon *d, char *buf, size_t cap)
{
	const char *port = strrchr(d->web_origin, ':');
	snprintf(buf, cap, "memtrace_session_%s", port != NULL ? port + 1 : "0");
}

/* The uid of the request's session cookie, or -1. */
static long session_uid(struct daemon *d, struct http_request *rq)
{
	char name[48];
	cookie_name(d, name, sizeof name);
	return webtoken_check(d, http_cookie(rq, name), WEBTOKEN_SESSION, false);
}

bool webui_path(const char *url)
{
	return strncmp(url, "/ui", 3) == 0 && (url[3] == '\0' || url[3] == '/');
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
	w->text = NULL;
	if (w->flame && text[0] == '<') {
		reply(rq, 200, "text/html; charset=utf-8", text, strlen(text));
		return;
	}
	/* An error answer (one JSON object with "error") is a 4xx for the
	 * browser too, by its code; the body says which. */
	cJSON *j = strncmp(text, "{\"error\":", 9) == 0 ? cJSON_Parse(text) : NULL;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	unsigned status =
	    e == NULL ? 200
	    : cJSON_IsString(code) && (strncmp(code->valuestring, "no_such_", 8) == 0 ||
	                               strcmp(code->valuestring, "not_traced") == 0 ||
	                               strcmp(code->valuestring, "not_yours") == 0 ||
	                               strcmp(code->valuestring, "snapshot_deleted") == 0)
	        ? 404
	        : 400;
	if (w->flame) {
		/* The flame graph's frame shows it to a person: a sentence. */
		char line[600];
		snprintf(line, sizeof line,
		         "No flame graph: %.500s.\nPick a process in the list of the page.\n",
		         cJSON_IsString(msg) ? msg->valuestring : "memtraced could not draw it");
		free(text);
		reply_text(rq, status, line);
	} else {
		reply(rq, status, "application/json", text, strlen(text));
	}
	cJSON_Delete(j);
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

static const char unauthorized[] =
    "401 Unauthorized: open the URL that `memtracectl ui` prints (it works once, within "
    "10 minutes; the browser then holds a session for 12 hours).\n";

/* GET /ui?token=T: spends the URL's token, starts a session for its uid
 * in a cookie and sends the browser to the URL without the token. */
static void trade(struct daemon *d, struct http_request *rq)
{
	long uid = webtoken_check(d, http_arg(rq, "token"), WEBTOKEN_URL, true);
	char hex[WEBTOKEN_CHARS + 1], name[48], cookie[160], where[48];
	double expires;

	if (uid < 0) {
		reply_text(rq, 401, unauthorized);
		return;
	}
	if (webtoken_grant(d, (uid_t)uid, WEBTOKEN_SESSION, hex, &expires) < 0) {
		reply_text(rq, 503, "memtraced holds too many web sessions; try again later\n");
		return;
	}
	cookie_name(d, name, sizeof name);
	snprintf(cookie, sizeof cookie, "%s=%s; Path=/ui; Max-Age=%d; HttpOnly; SameSite=Strict",
	         name, hex, WEBTOKEN_SESSION_TTL_S);
	double pid = id_arg(http_arg(rq, "pid"));
	if (pid > 0 && pid <= 2147483647.0)
		snprintf(where, sizeof where, "/ui?pid=%.0f", pid);
	else
		snprintf(where, sizeof where, "/ui");
	const char *headers[] = {
	    "Location",        where,         "Set-Cookie", cookie, "Cache-Control", "no-store",
	    "Referrer-Policy", "no-referrer", NULL};
	http_reply_headers(rq, 303, headers, xstrdup("See /ui\n"), 8);
}

void webui_request(struct daemon *d, struct http *h, struct http_request *rq, enum http_event ev,
                   bool stopping)
{
	const char *url = http_url(rq), *method = http_method(rq);
	bool page = strcmp(url, "/ui") == 0 || strcmp(url, "/ui/") == 0;
	/* The page's URL with a token: the trade, which needs no session. */
	bool trading = page && http_arg(rq, "token") != NULL;
	long uid;

	switch (ev) {
	case HTTP_HEADERS:
		if (!page && strcmp(url, "/ui/api") != 0 && strcmp(url, "/ui/flame") != 0)
			reply_text(rq, 404, "Not found: the web interface is /ui\n");
		else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			http_reply(rq, 405, "text/plain; charset=utf-8", "GET, HEAD",
			           xstrdup("Method not allowed: use GET\n"), 28);
		else if (!trading && session_uid(d, rq) < 0)
			reply_text(rq, 401, unauthorized);
		return;
	case HTTP_REQUEST:
		if (stopping) {
			reply_text(rq, 503, "memtraced is stopping\n");
			return;
		}
		if (trading) {
			trade(d, rq);
			return;
		}
		/* Checked again: the session may have ended meanwhile. */
		uid = session_uid(d, rq);
		if (uid < 0)
			reply_text(rq, 401, unauthorized);
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
