/*
 * webtoken.h - the web interface's secrets: the tokens of the URLs that
 * `memtracectl ui` prints, and the sessions a browser holds once it has
 * used one.
 *
 * A URL token is granted over the control socket (control.c, `ui`) to the
 * asking uid (SO_PEERCRED): 128 random bits, 32 hex digits, valid
 * WEBTOKEN_URL_TTL_S and used once. A browser that opens the URL trades it
 * (webui.c) for a session: another 128 random bits, for the same uid, in
 * an HttpOnly, SameSite=Strict cookie, valid WEBTOKEN_SESSION_TTL_S. So
 * the URL that a browser's command line shows to every local user (ps) is
 * spent by the time anyone could read it, and the secret that stays valid
 * is out of reach of scripts and other sites.
 *
 * At most WEBTOKEN_PER_UID of each kind per uid (a new one replaces the
 * uid's oldest) and WEBTOKENS in all: past that a grant is refused, never
 * taken from another uid. Nothing survives a restart. Comparisons are of
 * every live slot in full, in constant time. Loop thread only.
 */
#ifndef MEMTRACE_WEBTOKEN_H
#define MEMTRACE_WEBTOKEN_H

#include <sys/types.h>

#include "daemon.h"

#define WEBTOKENS              512 /* URL tokens and sessions, in all */
#define WEBTOKEN_PER_UID       4   /* of each kind, of one uid */
#define WEBTOKEN_URL_TTL_S     600
#define WEBTOKEN_SESSION_TTL_S (12 * 3600)
#define WEBTOKEN_CHARS         32 /* hex digits */

enum webtoken_kind { WEBTOKEN_URL, WEBTOKEN_SESSION };

/* A new secret of `kind` for uid, as hex (hex[WEBTOKEN_CHARS + 1]); its
 * end in *expires_at (Unix seconds). 0, -EBUSY when the table is full of
 * live secrets, -EIO when no random bytes came. */
int webtoken_grant(struct daemon *d, uid_t uid, enum webtoken_kind kind, char *hex,
                   double *expires_at);

/* The uid a live secret of `kind` was granted to, or -1 (unknown, expired,
 * malformed). `spend`: it is used up (a URL token). */
long webtoken_check(struct daemon *d, const char *hex, enum webtoken_kind kind, bool spend);

/* Forgets every secret (at stop). */
void webtoken_free(struct daemon *d);

#endif
