/*
 * session.h - one traced process, from its agent's connection to long after
 * it exited.
 *
 * A session is created when an agent connects; its identity is what the
 * kernel says about the peer (SO_PEERCRED pid and uid, and the start time
 * from /proc/PID/stat), never what the agent claims. It owns the process's
 * heap model, its module map, the connection's read buffer and the drain of
 * the process's shared region (drain.h), which HELLO brings. Events come
 * from the region alone: session_drain reads them (on the daemon's timer,
 * on WAKE, before a query is answered, and once more at the end). When the
 * connection closes the session becomes "exited", keeps its statistics and
 * gives back the region, the read buffer and everything else the statistics
 * do not need; the daemon evicts the oldest exited sessions past a bound.
 *
 * Sessions are reference counted: queries that wait for symbolization on the
 * thread pool hold a reference, so an evicted session is freed only when the
 * last query is done with it. Loop thread only.
 */
#ifndef MEMTRACE_SESSION_H
#define MEMTRACE_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "drain.h"
#include "heap.h"
#include "history.h"
#include "modmap.h"
#include "symbols.h"

struct daemon;

enum session_state { SESSION_LIVE, SESSION_EXITED };

/* Images kept for children that did not claim them yet: a parent may fork
 * many children before the daemon accepts their connections. Past either
 * bound the oldest image goes (its child then starts empty, and says so). */
#define SESSION_MAX_FORKS      1024
#define SESSION_MAX_FORK_BYTES ((size_t)256 << 20)
#define SESSION_FORK_TTL_MS    10000 /* an unclaimed image older than this goes */
#define SESSION_INHERIT_MS     5000  /* how long a fork child waits for its parent's record */
/* The longest one drain of one process holds the loop. */
#define SESSION_SLICE_MS 8

/* The heap of a process as it was at one of its FORK records, kept until the
 * child it forked claims it (HELLO names the record). */
struct session_fork {
	uint64_t seq;
	size_t bytes;   /* heap_memory when taken: charged to the uid */
	uint64_t at_ms; /* CLOCK_MONOTONIC ms when it was taken */
	struct heap heap;
};

struct session {
	struct daemon *d;
	struct session *next; /* daemon's list */
	int refs;
	uint64_t id; /* daemon-unique, never reused */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t start_time; /* clock ticks since boot (/proc/PID/stat field 22) */
	char *exe;           /* /proc/PID/exe: the file the kernel runs */
	char *started_as;    /* the path the agent says it was started as, or NULL */
	char *cmdline;       /* argv joined by NULs */
	size_t cmdline_len;
	enum session_state state;
	bool hello;
	bool bye; /* the process exited cleanly (the region says so) */
	/* memtracectl detach: asked (the daemon sent DETACH), and done (the
	 * agent answered DETACH: the connection's end is not the process's). */
	bool detach_asked, detached;
	bool broken;   /* the region broke a rule: error says which; end the session */
	bool draining; /* its region is being read (no drain from inside one) */
	/* WAKE frames came: the region is read once after the reads (when
	 * wake_later, by agentsrv) or at the end of session_feed. */
	bool wake, wake_later;
	/* Drains of a pending region that read nothing in a row, and when the
	 * timer or a WAKE may read it again (CLOCK_MONOTONIC ms): a region that
	 * always claims news costs little. Queries always read. */
	unsigned idle_drains;
	uint64_t next_drain_ms;
	/* When a WAKE or a fork child last had the region read (drain_now_ns),
	 * and the WAKEs that came too soon after for their own read
	 * (session_read_due). */
	uint64_t wake_read_ns;
	uint64_t wakes_deferred;
	bool pressed; /* its last read found pressure (yield.h) */
	/* The connection closed: the last records are read in slices on the
	 * timer, then the session ends with these. */
	bool ending;
	char *end_why;
	const char *end_reason;
	char *error; /* why the connection was closed, if it was our decision */
	uint32_t nframes;
	uint32_t flags;
	uint64_t sample_bytes;
	uint64_t lost_events;
	/* Of lost_events: allocations (and their bytes), frees (the agent's
	 * counts); gave_up: lossless mode stopped waiting for the daemon. A
	 * session that lost anything is truncated. */
	uint64_t lost_allocs, lost_bytes, lost_frees;
	bool gave_up;
	uint64_t events;
	uint64_t started_ms, ended_ms; /* wall clock, ms since the epoch */
	int snap_pending;              /* snapshots being written */
	int64_t last_snapshot;         /* id of the last one stored, 0 = none */
	struct heap heap;
	struct history history; /* memory over time (history.h) */
	struct modmap modules;  /* bounded by --max-modules */
	struct drain drain;     /* the shared region, from HELLO until the end */
	struct session_fork *forks;
	size_t nforks, forks_cap;
	size_t fork_bytes;      /* heap_memory of the images kept */
	uint64_t forks_refused; /* FORK records past the uid's image bytes */
	/* A fork child waiting for its parent's image: records wait too. */
	bool inheriting;
	pid_t parent_pid;
	uint64_t fork_seq;
	uint64_t inherit_since_ms;
	bool inherited; /* it started with its parent's heap */
	int passed_fd;  /* a descriptor that came before HELLO was parsed */
	int fd;         /* the connection */
	uv_poll_t poll;
	bool poll_open;
	uint8_t *rbuf;
	size_t rlen, rcap;
};

struct session *session_new(struct daemon *d);
void session_ref(struct session *s);
void session_unref(struct session *s); /* frees at zero */

/* Feeds bytes read from the agent. 0, or -EBADMSG with s->error set. A
 * descriptor that came with them (SCM_RIGHTS) is handed over first with
 * session_pass_fd. */
int session_feed(struct session *s, const uint8_t *p, size_t n);
/* Where the next read goes, and how much fits (0: a frame larger than the
 * protocol allows is pending; session_feed has refused it). */
uint8_t *session_rbuf_room(struct session *s, size_t *room);
/* The connection passed descriptor fd: the session owns it from now on. A
 * second one, or one after HELLO, is closed and breaks the session. */
int session_pass_fd(struct session *s, int fd);
/* Reads what the region holds (every record when `final`: the process is
 * gone) into the heap, for at most deadline_ns (CLOCK_MONOTONIC, 0: no
 * bound). True when records are left for the next call. On a broken rule
 * sets s->broken and s->error. A session being read is not read again
 * from inside (a fork child's parent is read first: never a cycle). */
bool session_drain_until(struct session *s, bool final, uint64_t deadline_ns);
/* session_drain_until for a slice of SESSION_SLICE_MS, and within the
 * window session_drain_window opened, if one is open: what a query calls
 * before it answers. */
void session_drain(struct session *s, bool final);
/*
 * Whether a read that the agent's side asks for (a WAKE, or a fork child
 * that waits for this session's heap) may run now; when it may, now is
 * taken as the last such read's time. A read looks at every ring the
 * region has handed out, full or empty, so an agent that claimed 1024 rings
 * and sent a WAKE each millisecond had the daemon look at a million rings a
 * second for two records (the hostile review of 2026-12-07). At most one
 * such read per 20 us of each ring, 1 ms at least: 20 ms for 1024 rings.
 * The drain timer (every 50 ms) reads the rest. An honest agent wakes the
 * daemon when a ring is a quarter full, 32,768 records: more than 3 ms
 * apart at 10 M records a second, and the other three quarters hold what
 * comes meanwhile.
 */
bool session_read_due(struct session *s);
/* Opens the window of loop time (ms) that the drains made before answers
 * may take together in this turn of the loop (a list or a scrape reads
 * every process; a client may pipeline requests): every request, scrape
 * and periodic snapshot opens it, a window already open in the same turn
 * is kept. */
void session_drain_window(struct daemon *d, unsigned ms);
/* Drops the fork images older than SESSION_FORK_TTL_MS (now: CLOCK_MONOTONIC ms). */
void session_forks_expire(struct session *s, uint64_t now);
/* After the end: frees what exited statistics do not need. */
void session_trim(struct session *s);
/* Bytes the daemon holds for this process (its model, module map, buffers,
 * fork images): `model_bytes` in stats. */
size_t session_memory(const struct session *s);
void session_sym_module(const struct modmap_entry *m, struct sym_module *out);
const char *session_state_name(const struct session *s);

#endif
