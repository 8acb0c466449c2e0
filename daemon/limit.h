/*
 * limit.h - one bounded resource that the daemon's users share: how much of
 * it is in use in all and per owner, the bounds, the refusals, and the log
 * line when a bound is hit.
 *
 * An owner is whoever the resource is charged to: a uid (control
 * connections, queued snapshots) or an HTTP origin. A take that would pass
 * the owner's bound or the total is refused and counted; nothing else
 * changes, so one owner at its bound leaves every other owner's share
 * untouched, as long as the total is larger than one owner's share.
 * `first_fits` makes an owner that holds nothing able to take any amount
 * while the total holds nothing either (a byte budget that one large item
 * alone exceeds still lets that item through, one at a time).
 *
 * The log names the limit, the option that sets it and the owner at the
 * first refusal of a burst (refusals less than LIMIT_BURST_MS apart), and
 * how many the previous burst refused when the next one begins: a hostile
 * client that hammers a bound makes one line per burst, not one per try.
 *
 * Owners holding something are kept in an array scanned linearly: there are
 * at most `max` of them, a small configured number. Loop thread only;
 * status and metrics read the fields.
 */
#ifndef MEMTRACE_LIMIT_H
#define MEMTRACE_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIMIT_BURST_MS 10000

/* Events of one kind, counted in bursts (events less than LIMIT_BURST_MS
 * apart), for a log line per burst; zeroed is ready. */
struct limit_burst {
	uint64_t last_ms; /* the last event */
	uint64_t count;   /* events in the current burst */
};

/* One more event at now_ms. True when it begins a burst: the caller logs
 * it. When a burst of more than one ended, logs first how many it had:
 * "limit <name>: the previous burst <verb> N in all" (not when verb is
 * NULL: the caller says it). */
bool limit_burst_hit(struct limit_burst *b, uint64_t now_ms, const char *name, const char *verb);

struct limit_owner {
	uint64_t id;
	size_t used;
};

struct limit {
	const char *name;       /* in status and metrics: "control_connections" */
	const char *what;       /* in the log: "control connections" */
	const char *option;     /* the option that sets max, named in the log */
	const char *per_option; /* the option that sets per_owner */
	size_t max;             /* in all; 0 = no bound */
	size_t per_owner;       /* per owner; 0 = no bound */
	bool first_fits;
	size_t used;
	uint64_t refused;
	struct limit_owner *owners; /* those holding something */
	size_t nowners, owners_cap;
	struct limit_burst burst; /* refusals */
};

/* The strings must outlive l (literals). */
void limit_init(struct limit *l, const char *name, const char *what, const char *option,
                const char *per_option, size_t max, size_t per_owner);
void limit_close(struct limit *l);

/* Charges n to owner. 0, or -EDQUOT when the owner's bound refuses it and
 * -ENOSPC when the total does (counted, logged once per burst with
 * owner_label, "uid 1000", and now_ms the loop's clock). */
int limit_take(struct limit *l, uint64_t owner, size_t n, uint64_t now_ms, const char *owner_label);
/* Whether limit_take would take n for owner: 0, -EDQUOT or -ENOSPC;
 * nothing is counted nor logged. */
int limit_check(struct limit *l, uint64_t owner, size_t n);
/* Charges n to owner past any bound (what an owner already holds and
 * must be counted: a fork child's inherited heap); its next takes are
 * refused until it is back within. */
void limit_force(struct limit *l, uint64_t owner, size_t n);
/* Gives back n that owner took. */
void limit_give(struct limit *l, uint64_t owner, size_t n);
/* What owner holds now. */
size_t limit_used_by(const struct limit *l, uint64_t owner);

#endif
