/* http.c - an HTTP server run by the libuv loop (see http.h). */
#include "http.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "limit.h"
#include "log.h"
#include "sockowner.h"
#include "xalloc.h"

#define IDLE_TIMEOUT_S       10          /* MHD closes a connection idle this long */
#define REQUEST_DEADLINE_MS  10000       /* a whole request must be in by then */
#define RESPONSE_DEADLINE_MS 60000       /* and its answer taken by then */
#define MEMORY_LIMIT         (16 * 1024) /* per connection: headers beyond get a 4xx */
#define ACCEPT_BATCH         64

/* Owners of HTTP connections (limit.h): a local uid, all of loopback when
 * the uid cannot be known, a remote IPv4 address, a remote IPv6 /64. */
#define ORIGIN_UID      (UINT64_C(1) << 63)
#define ORIGIN_LOOPBACK (UINT64_C(1) << 62)
#define ORIGIN_IPV4     (UINT64_C(1) << 61)
#define ORIGIN_IPV6     (UINT64_C(1) << 60)

enum rq_state {
	RQ_NEW,       /* headers read, not answered */
	RQ_SUSPENDED, /* until http_resume_all (in h->suspended) */
	RQ_RESUMED,   /* resumed: handed to the handler on the next call */
	RQ_DONE,      /* a response is queued */
};

/* One HTTP request (MHD's per-request con_cls). */
struct http_request {
	struct http *h;
	struct MHD_Connection *conn;
	const char *method, *url;           /* MHD's, valid until the request completes */
	struct http_request *next, **prevp; /* h->suspended while suspended */
	enum rq_state state;
	enum MHD_Result queued; /* MHD_queue_response's answer once RQ_DONE */
	void *data;             /* the handler's (http_set_data) */
	void (*release)(void *data);
};

/* One HTTP connection, for its origin's count and the deadlines. */
struct hconn {
	struct hconn *next, **prevp;
	struct MHD_Connection *conn; /* NULL until MHD has taken it */
	int fd;
	uint64_t origin; /* charged to h->limit */
	uint64_t since;  /* uv_now when it opened or its last response ended */
	uint64_t answer; /* uv_now when its request was complete */
	bool answering;  /* the request is complete, its answer not yet taken */
	bool cut;        /* shut down for missing a deadline */
};

struct http {
	uv_loop_t *loop;
	const char *name; /* for the log */
	http_handler_fn handler;
	void *arg;
	struct MHD_Daemon *mhd;
	int listen_fd;      /* ours: MHD gets each accepted connection */
	uv_poll_t listener; /* listen_fd */
	struct limit limit; /* connections per origin and in all */
	struct sockowner owner;
	uint64_t cut_count;  /* connections cut for missing a deadline */
	uint64_t cut_logged; /* uv_now of the last cut logged */
	int port;
	char host[INET6_ADDRSTRLEN + 2];
	uv_poll_t poll;   /* MHD's epoll fd */
	uv_timer_t timer; /* MHD_get_timeout */
	uv_timer_t sweep; /* the header deadline, once a second */
	int refs;         /* open handles */
	bool in_mhd;      /* inside MHD_run: MHD must not be re-entered */
	struct http_request *suspended;
	struct hconn *conns;
};

static void on_handle_closed(uv_handle_t *h)
{
	struct http *s = h->data;
	if (h == (uv_handle_t *)&s->listener && s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
	}
	if (--s->refs == 0) {
		limit_close(&s->limit);
		free(s);
	}
}

static void on_timer(uv_timer_t *t);

/* Lets MHD do what is pending, then arms the timer for its next deadline. */
static void pump(struct http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (h->mhd == NULL)
		return;
	if (h->in_mhd) {
		/* Called back from inside MHD: run it again from the loop. */
		uv_timer_start(&h->timer, on_timer, 0, 0);
		return;
	}
	h->in_mhd = true;
	MHD_run(h->mhd);
	h->in_mhd = false;
	if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
		uv_timer_start(&h->timer, on_timer, ms > 3600000 ? 3600000 : (uint64_t)ms, 0);
	else
		uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t)
{
	pump(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct http *h = p->data;
	(void)events;
	if (status < 0) {
		log_error("%s: polling the HTTP server failed: %s; it serves no more requests",
		          h->name, uv_strerror(status));
		uv_poll_stop(p);
		return;
	}
	pump(h);
}

/* ---- requests ---- */

const char *http_method(const struct http_request *rq)
{
	return rq->method;
}

const char *http_url(const struct http_request *rq)
{
	return rq->url;
}

const char *http_header(const struct http_request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

/* A value of `kind` without a NUL in it (a "%00" decoded), else NULL. */
static const char *value_of(const struct http_request *rq, enum MHD_ValueKind kind,
                            const char *name)
{
	const char *v = NULL;
	size_t n = 0;

	if (MHD_lookup_connection_value_n(rq->conn, kind, name, strlen(name), &v, &n) != MHD_YES ||
	    v == NULL || strlen(v) != n)
		return NULL;
	return v;
}

const char *http_arg(const struct http_request *rq, const char *name)
{
	return value_of(rq, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_cookie(const struct http_request *rq, const char *name)
{
	return value_of(rq, MHD_COOKIE_KIND, name);
}

void http_set_data(struct http_request *rq, void *data, void (*release)(void *data))
{
	rq->data = data;
	rq->release = release;
}

void *http_data(const struct http_request *rq)
{
	return rq->data;
}

void http_reply_headers(struct http_request *rq, unsigned status, const char *const *headers,
                        char *body, size_t len)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);

	rq->state = RQ_DONE;
	if (resp == NULL) {
		free(body);
		rq->queued = MHD_NO;
		return;
	}
	for (size_t i = 0; headers[i] != NULL && headers[i + 1] != NULL; i += 2)
		MHD_add_response_header(resp, headers[i], headers[i + 1]);
	rq->queued = MHD_queue_response(rq->conn, status, resp);
	MHD_destroy_response(resp);
}

void http_reply(struct http_request *rq, unsigned status, const char *content_type,
                const char *allow, char *body, size_t len)
{
	const char *headers[] = {MHD_HTTP_HEADER_CONTENT_TYPE, content_type,
	                         allow != NULL ? MHD_HTTP_HEADER_ALLOW : NULL, allow, NULL};
	http_reply_headers(rq, status, headers, body, len);
}

void http_suspend(struct http_request *rq)
{
	struct http *h = rq->h;

	rq->state = RQ_SUSPENDED;
	rq->next = h->suspended;
	if (rq->next != NULL)
		rq->next->prevp = &rq->next;
	rq->prevp = &h->suspended;
	h->suspended = rq;
	MHD_suspend_connection(rq->conn);
}

/* Each resumed request goes to the handler when MHD calls it again. */
static void resume_all(struct http *h)
{
	while (h->suspended != NULL) {
		struct http_request *rq = h->suspended;
		h->suspended = rq->next;
		if (rq->next != NULL)
			rq->next->prevp = &h->suspended;
		rq->next = NULL;
		rq->prevp = NULL;
		rq->state = RQ_RESUMED;
		MHD_resume_connection(rq->conn);
	}
}

void http_resume_all(struct http *h)
{
	resume_all(h);
	pump(h);
}

/* What MHD is told after the handler saw an event that needs an answer. */
static enum MHD_Result handled(const struct http_request *rq)
{
	switch (rq->state) {
	case RQ_DONE:
		return rq->queued;
	case RQ_SUSPENDED:
		return MHD_YES;
	case RQ_NEW:
	case RQ_RESUMED:
		break;
	}
	return MHD_NO; /* neither answered nor suspended */
}

static struct hconn *find_conn(struct http *h, struct MHD_Connection *conn)
{
	for (struct hconn *c = h->conns; c != NULL; c = c->next)
		if (c->conn == conn)
			return c;
	return NULL;
}

/* MHD calls this once when the headers are in, then for each piece of a
 * body and once more at its end. A response queued in the first call ends
 * the connection after it is sent (and MHD need not read a body): right
 * for refusals. Other requests are answered from the last call on, which
 * keeps the connection alive for the next request. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct http_request *rq = *con_cls;
	(void)version;
	(void)upload_data;

	if (rq == NULL) {
		rq = xcalloc(1, sizeof(*rq));
		rq->h = h;
		rq->conn = conn;
		rq->method = method;
		rq->url = url;
		*con_cls = rq;
		h->handler(rq, HTTP_HEADERS, h->arg);
		return rq->state == RQ_DONE ? rq->queued : MHD_YES;
	}
	switch (rq->state) {
	case RQ_NEW:
		if (*upload_size != 0) {
			*upload_size = 0; /* a body means nothing here: skip it */
			return MHD_YES;
		}
		struct hconn *c = find_conn(h, conn);
		if (c != NULL) {
			c->answering = true;
			c->answer = uv_now(h->loop);
		}
		h->handler(rq, HTTP_REQUEST, h->arg);
		return handled(rq);
	case RQ_RESUMED:
		if (*upload_size != 0) {
			*upload_size = 0;
			return MHD_YES;
		}
		h->handler(rq, HTTP_RESUMED, h->arg);
		return handled(rq);
	case RQ_SUSPENDED:
	case RQ_DONE:
		*upload_size = 0;
		return MHD_YES;
	}
	return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct http_request *rq = *con_cls;
	struct hconn *c = find_conn(h, conn);
	(void)toe;

	if (c != NULL) {
		c->answering = false;
		c->since = uv_now(h->loop);
	}
	if (rq == NULL)
		return;
	if (rq->state == RQ_SUSPENDED) {
		*rq->prevp = rq->next;
		if (rq->next != NULL)
			rq->next->prevp = rq->prevp;
	}
	if (rq->release != NULL)
		rq->release(rq->data);
	free(rq);
	*con_cls = NULL;
}

static void hconn_unlink(struct hconn *c)
{
	*c->prevp = c->next;
	if (c->next != NULL)
		c->next->prevp = c->prevp;
}

/* MHD took a connection we handed it (on_listen made its hconn), or is
 * done with one. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct http *h = cls;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		int fd = ci != NULL ? ci->connect_fd : -1;
		for (struct hconn *c = h->conns; c != NULL; c = c->next) {
			if (c->conn == NULL && c->fd == fd) {
				c->conn = conn;
				*socket_context = c;
				return;
			}
		}
		return;
	}
	struct hconn *c = *socket_context;
	if (c == NULL)
		return;
	hconn_unlink(c);
	limit_give(&h->limit, c->origin, 1);
	free(c);
	*socket_context = NULL;
}

/* Slowloris: MHD's timeout is for idleness, and a client that sends a byte
 * every few seconds is never idle. A connection whose request (headers and
 * body) is not complete REQUEST_DEADLINE_MS after it opened (or after its
 * previous response), or whose answer is not taken RESPONSE_DEADLINE_MS
 * after its request was complete, is shut down; MHD sees the end of the
 * stream and closes it. shutdown(2), not close(2): the descriptor stays
 * MHD's. */
static void on_sweep(uv_timer_t *t)
{
	struct http *h = t->data;
	uint64_t now = uv_now(h->loop);
	size_t cut = 0;

	for (struct hconn *c = h->conns; c != NULL; c = c->next) {
		if (c->cut || c->fd < 0 || c->conn == NULL)
			continue;
		if (c->answering ? now - c->answer < RESPONSE_DEADLINE_MS
		                 : now - c->since < REQUEST_DEADLINE_MS)
			continue;
		shutdown(c->fd, SHUT_RDWR);
		c->cut = true;
		cut++;
	}
	if (cut == 0)
		return;
	h->cut_count += cut;
	if (h->cut_logged == 0 || now - h->cut_logged >= LIMIT_BURST_MS) {
		h->cut_logged = now;
		log_warn("%s: closed %zu HTTP connection(s) whose request was not in within %d s "
		         "or whose answer was not read within %d s (%" PRIu64 " so far; logged "
		         "once per burst)",
		         h->name, cut, REQUEST_DEADLINE_MS / 1000, RESPONSE_DEADLINE_MS / 1000,
		         h->cut_count);
	}
	pump(h);
}

/* Who a connection is charged to, and how the log names it. */
static uint64_t origin_of(struct http *h, int fd, const struct sockaddr_storage *peer, char *label,
                          size_t size)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	uid_t uid;

	if (peer->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, addr,
		          sizeof(addr));
	else if (peer->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, addr,
		          sizeof(addr));
	if (sockowner_is_loopback((const struct sockaddr *)peer)) {
		/* Any local user may connect from any loopback address: the
		 * origin is the user. */
		if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0 &&
		    sockowner_uid(&h->owner, (const struct sockaddr *)&local,
		                  (const struct sockaddr *)peer, &uid) == 0) {
			snprintf(label, size, "uid %u (from %s)", (unsigned)uid, addr);
			return ORIGIN_UID | uid;
		}
		snprintf(label, size, "loopback (%s; its user is unknown)", addr);
		return ORIGIN_LOOPBACK;
	}
	if (peer->ss_family == AF_INET) {
		snprintf(label, size, "%s", addr);
		return ORIGIN_IPV4 | ntohl(((const struct sockaddr_in *)peer)->sin_addr.s_addr);
	}
	/* IPv6: one host usually holds a whole /64. */
	uint64_t prefix;
	memcpy(&prefix, &((const struct sockaddr_in6 *)peer)->sin6_addr, sizeof(prefix));
	snprintf(label, size, "%s/64", addr);
	return ORIGIN_IPV6 | (prefix & (ORIGIN_IPV6 - 1));
}

/* A connection past a limit: a 503 saying which, then the end. The socket
 * is new, so the short answer fits its buffer; what the client already sent
 * is read first, so closing does not reset the connection before the client
 * reads the answer. */
static void refuse(int fd, int rc, const char *label, const struct limit *l)
{
	char body[256], msg[512], junk[4096];
	int n = snprintf(
	    body, sizeof(body), "memtraced: too many HTTP connections %s%s (%zu, %s)\n",
	    rc == -EDQUOT ? "from " : "in all", rc == -EDQUOT ? label : "",
	    rc == -EDQUOT ? l->per_owner : l->max, rc == -EDQUOT ? l->per_option : l->option);
	int m = snprintf(msg, sizeof(msg),
	                 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
	                 "charset=utf-8\r\nRetry-After: 10\r\nConnection: close\r\n"
	                 "Content-Length: %d\r\n\r\n%s",
	                 n, body);
	if (m > 0)
		(void)send(fd, msg, (size_t)m, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	close(fd);
}

static void on_listen(uv_poll_t *p, int status, int events)
{
	struct http *h = p->data;
	(void)events;

	if (status < 0)
		return;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		char label[128];
		int fd = accept4(h->listen_fd, (struct sockaddr *)&peer, &len,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_debug("%s: accept: %s", h->name, strerror(errno));
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		uint64_t origin = origin_of(h, fd, &peer, label, sizeof(label));
		int rc = limit_take(&h->limit, origin, 1, uv_now(h->loop), label);
		if (rc < 0) {
			refuse(fd, rc, label, &h->limit);
			continue;
		}
		struct hconn *c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->origin = origin;
		c->since = uv_now(h->loop);
		c->next = h->conns;
		if (c->next != NULL)
			c->next->prevp = &c->next;
		c->prevp = &h->conns;
		h->conns = c;
		if (MHD_add_connection(h->mhd, fd, (const struct sockaddr *)&peer, len) !=
		        MHD_YES &&
		    c->conn == NULL) {
			/* MHD closed fd; it never became a connection. */
			hconn_unlink(c);
			limit_give(&h->limit, origin, 1);
			free(c);
		}
	}
	pump(h);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	/* Mostly about clients (bad requests, timeouts): not worth more. */
	log_debug("%s: libmicrohttpd: %s", h->name, line);
}

/* ---- start and stop ---- */

static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon, *port;
	char *end;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(rb - s - 1), s + 1);
		port = rb + 2;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
		port = colon + 1;
	}
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno != 0 || p > 65535)
		return -EINVAL;
	if (s[0] == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)p);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a);
	}
	return 0;
}

/* A listening TCP socket of our own, so errors are ours to report and the
 * port can be 0. */
static int listen_socket(const struct sockaddr_storage *ss, socklen_t len, int *port)
{
	int one = 1, rc;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
	                                          : ((struct sockaddr_in *)&bound)->sin_port);
	return fd;
}

/* The address as a URL writes it: IPv6 in brackets. */
static void format_host(const struct sockaddr_storage *ss, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host,
		          sizeof(host));
		snprintf(out, size, "[%s]", host);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s", host);
	}
}

int http_new(uv_loop_t *loop, const char *where, const char *name, http_handler_fn fn, void *arg,
             size_t max_conns, size_t per_origin, struct http **out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, rc, port = 0;

	*out = NULL;
	if (parse_listen(where, &ss, &len) < 0)
		return -EINVAL;
	if ((fd = listen_socket(&ss, len, &port)) < 0)
		return fd;

	struct http *h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->name = name;
	h->handler = fn;
	h->arg = arg;
	h->port = port;
	h->listen_fd = fd;
	format_host(&ss, h->host, sizeof(h->host));
	limit_init(&h->limit, "http_connections", "HTTP connections", "--metrics-max-connections",
	           "--metrics-max-connections-per-origin", max_conns, per_origin);
	if (sockowner_open(&h->owner) < 0)
		log_warn("%s: cannot ask the kernel who connects from loopback (netlink: %s): "
		         "all of loopback counts as one origin",
		         name, strerror(errno));
	unsigned flags =
	    MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* We accept (on_listen) and hand MHD each connection we admit; its
	 * own limits stay as a backstop. One option and its value per line: */
	/* clang-format off */
	h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
	                          MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, /* first: it logs the rest */
	                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)(max_conns ? max_conns + 1 : 0),
	                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
	                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_LIMIT,
	                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	                          MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
	                          MHD_OPTION_END);
	/* clang-format on */
	if (h->mhd == NULL) {
		rc = errno != 0 ? -errno : -EINVAL;
		goto err_fd;
	}
	if ((rc = uv_poll_init(loop, &h->listener, fd)) < 0)
		goto err_mhd;
	h->listener.data = h;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL || (rc = uv_poll_init(loop, &h->poll, info->epoll_fd)) < 0) {
		rc = info == NULL ? -ENOTSUP : rc;
		MHD_stop_daemon(h->mhd);
		sockowner_close(&h->owner);
		/* The listener's close callback closes fd and frees h. */
		h->refs = 1;
		uv_close((uv_handle_t *)&h->listener, on_handle_closed);
		return rc;
	}
	h->refs = 4; /* the handles */
	h->poll.data = h;
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	uv_timer_init(loop, &h->sweep);
	h->sweep.data = h;
	uv_poll_start(&h->poll, UV_READABLE, on_poll);
	uv_poll_start(&h->listener, UV_READABLE, on_listen);
	uv_timer_start(&h->sweep, on_sweep, 1000, 1000);
	pump(h);
	*out = h;
	return 0;

err_mhd:
	MHD_stop_daemon(h->mhd);
err_fd:
	close(fd);
	sockowner_close(&h->owner);
	limit_close(&h->limit);
	free(h);
	return rc;
}

int http_port(const struct http *h)
{
	return h->port;
}

const char *http_host(const struct http *h)
{
	return h->host;
}

const struct limit *http_limit(const struct http *h)
{
	return &h->limit;
}

uint64_t http_cut(const struct http *h)
{
	return h->cut_count;
}

void http_free(struct http *h)
{
	if (h == NULL)
		return;
	/* MHD must not be stopped with suspended connections: resume them
	 * and let MHD run them once. */
	resume_all(h);
	MHD_run(h->mhd);
	MHD_run(h->mhd);
	/* libuv must forget the epoll fd before MHD closes it. */
	uv_close((uv_handle_t *)&h->poll, on_handle_closed);
	uv_close((uv_handle_t *)&h->listener, on_handle_closed); /* closes listen_fd */
	sockowner_close(&h->owner);
	uv_close((uv_handle_t *)&h->timer, on_handle_closed);
	uv_close((uv_handle_t *)&h->sweep, on_handle_closed);
	MHD_stop_daemon(h->mhd);
	h->mhd = NULL;
}
