/*
 * webui.h - the web interface, served on the metrics port under /ui.
 *
 * `memtracectl ui` asks the control socket for a URL; the daemon grants a
 * token bound to the asking uid (SO_PEERCRED), random, 128 bits, valid 12
 * hours or until the daemon stops, at most WEBUI_PER_UID per uid (a new one
 * replaces the uid's oldest). Every request under /ui carries it
 * (`?token=`); without a valid one the answer is 401 and a line saying how
 * to get one, nothing else. With it:
 *
 *   /ui          the page (daemon/ui.html, built in): the uid's processes,
 *                memory over time, the top table, a live flame graph and
 *                the compare of two snapshots; its script asks the rest;
 *   /ui/api      ?q=REQUEST: one control request (CONTROL.md), run as the
 *                token's uid would run it on the control socket, for the
 *                commands that read and change nothing (control_call);
 *   /ui/flame    ?pid=P or ?snapshot=ID, &value=size|peak|allocations|
 *                temporary: the flame graph page (flame.h) of it.
 *
 * So the page shows what that user may see through the control socket and
 * nothing more. The token is a bearer secret: whoever has the URL sees what
 * its user sees, as long as it is valid; answers say `Cache-Control:
 * no-store` and `Referrer-Policy: no-referrer`, and the page loads nothing
 * from anywhere else (Content-Security-Policy). Loop thread only.
 */
#ifndef MEMTRACE_WEBUI_H
#define MEMTRACE_WEBUI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "daemon.h"
#include "http.h"

#define WEBUI_TOKENS      256 /* tokens held in all */
#define WEBUI_PER_UID     4   /* ... of one uid */
#define WEBUI_TTL_S       (12 * 3600)
#define WEBUI_TOKEN_CHARS 32 /* hex */

/* A new token for uid, and the URL that carries it (on the metrics
 * server's address) in url; *expires_at its end (Unix seconds). 0, or
 * -ENOTCONN when no HTTP server runs, -EIO when no random bytes came. */
int webui_grant(struct daemon *d, uid_t uid, char *url, size_t cap, double *expires_at);

/* Whether the request is the web interface's (its path is /ui or under it). */
bool webui_path(const char *url);

/* Serves a request of the web interface (metrics.c hands them over);
 * `stopping`: the server is closing, resumed requests are refused. */
void webui_request(struct daemon *d, struct http *h, struct http_request *rq, enum http_event ev,
                   bool stopping);

/* Forgets every token (at stop). */
void webui_free(struct daemon *d);

#endif
