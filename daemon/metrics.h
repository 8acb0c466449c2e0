/*
 * metrics.h - the Prometheus endpoint: GET /metrics, rendered.
 *
 * Owns the series and what it takes to compute them; the HTTP server under
 * it (http.h) is told only how to answer a request. This module routes
 * (/metrics, 404 elsewhere, 405 for methods other than GET and HEAD),
 * negotiates the format (Prometheus text 0.0.4, or OpenMetrics 1.0.0 when
 * the Accept header prefers it) and renders. What it shows is read when it
 * renders: the daemon's counters, the live sessions, and the snapshot-write
 * figures the job runner keeps (jobs_writes); no other module calls in here
 * to report an event.
 *
 * Per-process series are read from the live sessions at the scrape. The
 * top-N allocation sites (by live bytes, per process) need symbols, which
 * may take file I/O, so a scrape takes a capture of every live process on
 * the loop thread (capture_take: copies, no I/O), suspends the HTTP request,
 * and resolves the captures in a job on the libuv thread pool with the same
 * code that answers `memtracectl top --key lineno` (capture_resolve), so
 * both agree. The request is answered when that job is done: per-process
 * values and sites then come from the same capture, and each process's site
 * series plus its site="other" series sum exactly to its current bytes. At
 * most one such job runs at a time (it holds one pool thread, leaving the
 * others to snapshots and queries), and scrapes less than 1 s after the last
 * one are answered from its result. If symbolization takes longer than 5 s
 * (a cold cache on huge binaries), the scrape is answered without site
 * series and memtrace_metrics_site_timeouts_total counts it; the job still
 * warms the symbol cache for the next scrape.
 *
 * Loop thread only, but for the job's compute step, which touches only its
 * captures and the thread-safe symbol cache.
 */
#ifndef MEMTRACE_METRICS_H
#define MEMTRACE_METRICS_H

#include "daemon.h"

/* Not in Prometheus's port registry (its 9100-9999 range is full). */
#define METRICS_DEFAULT_LISTEN    "127.0.0.1:9481"
#define METRICS_DEFAULT_TOP_SITES 10
#define METRICS_MAX_TOP_SITES     1000
/* HTTP connections in all, and from one origin (http.h). */
#define METRICS_DEFAULT_MAX_CONNS            64
#define METRICS_DEFAULT_MAX_CONNS_PER_ORIGIN 8

/* Serves on `where`, an address as http_new takes it ("ADDR:PORT",
 * "[ADDR]:PORT"; port 0 picks a free port), and logs the URL. "off" does
 * nothing and returns 0. Sites per process come from d->cfg.metrics_top_sites.
 * Stores its state in d->metrics; d->jobs must exist. 0, -EINVAL for a
 * malformed address, or -errno from socket/bind/listen or MHD. */
int metrics_start(struct daemon *d, const char *where);
/* Answers waiting scrapes with 503, closes the listener and every HTTP
 * connection. The state is freed once a running symbolization job is done. */
void metrics_stop(struct daemon *d);

#endif
