/*
 * http.h - an HTTP server run by the libuv loop.
 *
 * Owns a listening TCP socket and a libmicrohttpd daemon in external-loop
 * epoll mode: MHD's epoll fd is watched by a uv_poll, MHD_get_timeout
 * drives a uv_timer, and MHD_run is called after each, so every request is
 * handled on the loop thread and no HTTP thread exists. MHD parses HTTP;
 * what a request means is the owner's, told through one handler callback.
 *
 * The listening socket is ours: each connection is accepted here, charged
 * to its origin and handed to MHD (MHD_add_connection). An origin is a
 * local uid for connections from loopback (any local user may connect from
 * any of 127.0.0.0/8, so the address says nothing; the kernel tells the
 * uid, sockowner.h), else the remote IPv4 address or IPv6 /64. Past the
 * per-origin or total bound (struct limit) a connection gets a 503 naming
 * the bound and is closed, so one origin at its bound leaves every other
 * origin's scrapes working. Hostile clients are further bounded by MHD's
 * memory per connection (oversized headers get a 4xx) and idle timeout,
 * plus two deadlines of ours: a request (headers and body) not complete
 * 10 s after its connection opened or its previous response ended, or an
 * answer not read 60 s after the request was complete, is cut off
 * (slowloris, slow readers). None of it can stall the loop: MHD never
 * blocks.
 *
 * A handler that cannot answer at once (it waits for work on the thread
 * pool) suspends the request; http_resume_all hands every suspended request
 * back to it. Loop thread only. This module knows nothing of what it
 * serves: no paths, no formats, no daemon state (metrics.c and webui.c
 * are its handlers' owners).
 */
#ifndef MEMTRACE_HTTP_H
#define MEMTRACE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct http;
struct http_request;

/* Why the handler is called, in the order a request sees them. */
enum http_event {
	/* The request line and headers are in. Answering now (http_reply) is
	 * for refusals: the connection closes after the response and a body
	 * is never read. Without an answer, HTTP_REQUEST follows. */
	HTTP_HEADERS,
	/* The whole request is in (a body is read and dropped). The handler
	 * answers, or suspends with http_suspend. */
	HTTP_REQUEST,
	/* A suspended request was resumed: answer, or suspend again. */
	HTTP_RESUMED,
};

/* A request left without an answer or a suspension at HTTP_REQUEST or
 * HTTP_RESUMED has its connection closed. */
typedef void (*http_handler_fn)(struct http_request *rq, enum http_event ev, void *arg);

/* Listens on `where`, "ADDR:PORT" with a numeric IPv4 address or a
 * bracketed IPv6 one ("[::1]:9481"); port 0 picks a free port. `name`
 * prefixes the server's log lines and must outlive it; arg is passed to fn.
 * max_conns and per_origin bound the connections (0 = no bound).
 * 0 with the server in *out, -EINVAL for a malformed address, or -errno
 * from socket/bind/listen or MHD. */
int http_new(uv_loop_t *loop, const char *where, const char *name, http_handler_fn fn, void *arg,
             size_t max_conns, size_t per_origin, struct http **out);
/* Answers the requests still suspended (they are resumed and handed to the
 * handler once more, which should refuse them), then closes the listener
 * and every connection. The handler is not called after it returns; the
 * memory goes when libuv has closed the handles. NULL is a no-op. */
void http_free(struct http *h);
/* The TCP port listened on (the one chosen for port 0). */
int http_port(const struct http *h);
/* The address listened on, as a URL writes it: "127.0.0.1", "[::1]". */
const char *http_host(const struct http *h);
/* The connections' limit, for status and metrics. */
struct limit;
const struct limit *http_limit(const struct http *h);
/* Connections cut for missing a deadline so far. */
uint64_t http_cut(const struct http *h);
/* Resumes every suspended request and lets the server run them. */
void http_resume_all(struct http *h);

/* The request's method ("GET"), path ("/index.html") and a header by its
 * case-insensitive name (NULL when absent); valid while the handler runs. */
const char *http_method(const struct http_request *rq);
const char *http_url(const struct http_request *rq);
const char *http_header(const struct http_request *rq, const char *name);
/* A query argument of the request's URL, decoded ("?pid=12" -> "12"), or
 * NULL (also when it holds a NUL); valid while the handler runs. */
const char *http_arg(const struct http_request *rq, const char *name);
/* A cookie of the request, or NULL; the same. */
const char *http_cookie(const struct http_request *rq, const char *name);
/* The handler's own pointer for the request, kept across suspensions;
 * release (when not NULL) is called with it when the request ends,
 * answered or not (its connection closed). */
void http_set_data(struct http_request *rq, void *data, void (*release)(void *data));
void *http_data(const struct http_request *rq);
/* Answers rq with `status` and body, len bytes the server takes and frees
 * (free); headers are name, value pairs ended by NULL. */
void http_reply_headers(struct http_request *rq, unsigned status, const char *const *headers,
                        char *body, size_t len);
/* Answers rq with `status` and body, len bytes the server takes and frees
 * (free). allow, when not NULL, is sent as the Allow header. */
void http_reply(struct http_request *rq, unsigned status, const char *content_type,
                const char *allow, char *body, size_t len);
/* Holds the answer back until http_resume_all (HTTP_REQUEST and
 * HTTP_RESUMED only). */
void http_suspend(struct http_request *rq);

#endif
