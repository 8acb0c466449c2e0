/*
 * webui.h - the web interface, served on the metrics port under /ui.
 *
 * `memtracectl ui` asks the control socket for a URL whose token is bound
 * to the asking uid and works once (webtoken.h). Opening it trades the
 * token for a session cookie (HttpOnly, SameSite=Strict, Path=/ui) of the
 * same uid and redirects to /ui without the token. Every other request
 * under /ui needs the session; without one the answer is 401 and a line
 * saying how to get one, nothing else. With it:
 *
 *   /ui          the page (daemon/ui.html, built in): the uid's processes,
 *                memory over time, the top table, a live flame graph and
 *                the compare of two snapshots; its script asks the rest;
 *   /ui/api      ?q=REQUEST: one control request (CONTROL.md), run as the
 *                session's uid would run it on the control socket, for the
 *                commands that read and change nothing (control_call);
 *   /ui/flame    ?pid=P or ?snapshot=ID, &value=size|peak|allocations|
 *                temporary: the flame graph page (flame.h) of it.
 *
 * So the page shows what that user may see through the control socket and
 * nothing more. Answers say `Cache-Control: no-store` and `Referrer-Policy:
 * no-referrer`, and the page loads nothing from anywhere else
 * (Content-Security-Policy) and cannot be framed by another site. Loop
 * thread only.
 */
#ifndef MEMTRACE_WEBUI_H
#define MEMTRACE_WEBUI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "daemon.h"
#include "http.h"

/* Whether the request is the web interface's (its path is /ui or under it). */
bool webui_path(const char *url);

/* Serves a request of the web interface (metrics.c hands them over);
 * `stopping`: the server is closing, resumed requests are refused. */
void webui_request(struct daemon *d, struct http *h, struct http_request *rq, enum http_event ev,
                   bool stopping);

#endif
