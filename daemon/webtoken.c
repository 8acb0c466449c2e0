/* webtoken.c - the web interface's secrets (see webtoken.h). */
#include "webtoken.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "xalloc.h"

struct webtoken {
	uint8_t key[WEBTOKEN_CHARS / 2];
	uid_t uid;
	enum webtoken_kind kind;
	double granted;
	double expires; /* Unix seconds; a slot at or past it is free */
};

struct webtokens {
	struct webtoken tok[WEBTOKENS];
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

int webtoken_grant(struct daemon *d, uid_t uid, enum webtoken_kind kind, char *hex,
                   double *expires_at)
{
	if (d->webtokens == NULL)
		d->webtokens = xcalloc(1, sizeof(*d->webtokens));
	struct webtokens *w = d->webtokens;
	double now = now_s();
	struct webtoken *slot = NULL, *oldest_mine = NULL;
	int mine = 0;

	for (size_t i = 0; i < WEBTOKENS; i++) {
		struct webtoken *t = &w->tok[i];
		if (t->expires <= now) {
			if (slot == NULL)
				slot = t;
		} else if (t->uid == uid && t->kind == kind) {
			mine++;
			if (oldest_mine == NULL || t->granted < oldest_mine->granted)
				oldest_mine = t;
		}
	}
	/* The uid's own oldest makes room; nobody else's ever does. */
	if (mine >= WEBTOKEN_PER_UID)
		slot = oldest_mine;
	if (slot == NULL)
		return -EBUSY;
	uint8_t key[sizeof(slot->key)];
	if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key)
		return -EIO;
	memcpy(slot->key, key, sizeof key);
	slot->uid = uid;
	slot->kind = kind;
	slot->granted = now;
	slot->expires = now + (kind == WEBTOKEN_URL ? WEBTOKEN_URL_TTL_S : WEBTOKEN_SESSION_TTL_S);
	*expires_at = slot->expires;
	for (size_t i = 0; i < sizeof key; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	return 0;
}

long webtoken_check(struct daemon *d, const char *hex, enum webtoken_kind kind, bool spend)
{
	uint8_t key[WEBTOKEN_CHARS / 2];
	double now = now_s();
	struct webtoken *found = NULL;

	if (d->webtokens == NULL || hex == NULL || strlen(hex) != WEBTOKEN_CHARS)
		return -1;
	for (size_t i = 0; i < sizeof key; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		key[i] = (uint8_t)(hi << 4 | lo);
	}
	for (size_t i = 0; i < WEBTOKENS; i++) {
		struct webtoken *t = &d->webtokens->tok[i];
		uint8_t diff = 0;
		for (size_t j = 0; j < sizeof key; j++)
			diff |= (uint8_t)(t->key[j] ^ key[j]);
		if (diff == 0 && t->expires > now && t->kind == kind)
			found = t;
	}
	if (found == NULL)
		return -1;
	long uid = (long)found->uid;
	if (spend)
		memset(found, 0, sizeof(*found));
	return uid;
}

void webtoken_free(struct daemon *d)
{
	free(d->webtokens);
	d->webtokens = NULL;
}
