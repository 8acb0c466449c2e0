/* limit.c - a bounded shared resource (see limit.h). */
#include "limit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

void limit_init(struct limit *l, const char *name, const char *what, const char *option,
                const char *per_option, size_t max, size_t per_owner)
{
	memset(l, 0, sizeof(*l));
	l->name = name;
	l->what = what;
	l->option = option;
	l->per_option = per_option;
	l->max = max;
	l->per_owner = per_owner;
}

void limit_close(struct limit *l)
{
	free(l->owners);
	l->owners = NULL;
	l->nowners = l->owners_cap = 0;
}

static struct limit_owner *find(const struct limit *l, uint64_t owner)
{
	for (size_t i = 0; i < l->nowners; i++)
		if (l->owners[i].id == owner)
			return &l->owners[i];
	return NULL;
}

size_t limit_used_by(const struct limit *l, uint64_t owner)
{
	const struct limit_owner *o = find(l, owner);
	return o != NULL ? o->used : 0;
}

bool limit_burst_hit(struct limit_burst *b, uint64_t now_ms, const char *name, const char *verb)
{
	if (b->count > 0 && now_ms - b->last_ms < LIMIT_BURST_MS) {
		b->count++;
		b->last_ms = now_ms;
		return false;
	}
	if (b->count > 1 && verb != NULL)
		log_info("limit %s: the previous burst %s %" PRIu64 " in all", name, verb,
		         b->count);
	b->count = 1;
	b->last_ms = now_ms;
	return true;
}

static void refuse(struct limit *l, int rc, size_t held, uint64_t now_ms, const char *label)
{
	l->refused++;
	if (!limit_burst_hit(&l->burst, now_ms, l->name, "refused"))
		return;
	if (rc == -EDQUOT)
		log_warn("limit %s reached: %s holds %zu of %zu %s (%s); refusing more (logged "
		         "once per burst)",
		         l->name, label, held, l->per_owner, l->what, l->per_option);
	else
		log_warn("limit %s reached: %zu of %zu %s in use (%s); refusing %s (logged once "
		         "per burst)",
		         l->name, l->used, l->max, l->what, l->option, label);
}

static void charge(struct limit *l, struct limit_owner *o, uint64_t owner, size_t n)
{
	if (o == NULL) {
		if (l->nowners == l->owners_cap) {
			l->owners_cap = l->owners_cap ? l->owners_cap * 2 : 8;
			l->owners = xreallocarray(l->owners, l->owners_cap, sizeof(*l->owners));
		}
		o = &l->owners[l->nowners++];
		o->id = owner;
		o->used = 0;
	}
	o->used += n;
	l->used += n;
}

int limit_check(struct limit *l, uint64_t owner, size_t n)
{
	const struct limit_owner *o = find(l, owner);
	size_t held = o != NULL ? o->used : 0;
	bool alone = l->first_fits && held == 0 && l->used == 0;

	if (!alone && l->per_owner > 0 && (n > l->per_owner || held > l->per_owner - n))
		return -EDQUOT;
	if (!alone && l->max > 0 && (n > l->max || l->used > l->max - n))
		return -ENOSPC;
	return 0;
}

int limit_take(struct limit *l, uint64_t owner, size_t n, uint64_t now_ms, const char *owner_label)
{
	int rc = limit_check(l, owner, n);

	if (rc < 0) {
		refuse(l, rc, limit_used_by(l, owner), now_ms, owner_label);
		return rc;
	}
	charge(l, find(l, owner), owner, n);
	return 0;
}

void limit_force(struct limit *l, uint64_t owner, size_t n)
{
	charge(l, find(l, owner), owner, n);
}

void limit_give(struct limit *l, uint64_t owner, size_t n)
{
	struct limit_owner *o = find(l, owner);
	if (o == NULL)
		return;
	if (n > o->used)
		n = o->used;
	o->used -= n;
	l->used -= n;
	if (o->used == 0)
		*o = l->owners[--l->nowners];
}
