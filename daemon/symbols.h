/*
 * symbols.h - symbolization of module-relative addresses with elfutils libdw.
 *
 * The agent never symbolizes: it sends return addresses and a module map
 * (path, load bias, build-id). The daemon turns (module, address) into a
 * frame_info here. Results are cached per (object, offset), so each distinct
 * return address is resolved at most once per object.
 *
 * Who may see what. A module's path comes from an agent, that is from any
 * local user, so its file is only ever opened as that user could open it
 * (useraccess.h: a regular file the user may read, reached through
 * directories the user may search, opened without blocking). An object is a
 * file as it is on disk (device, inode, size, modification time), and a
 * user gets an object's frames only after opening that very file: a user who
 * may not read a file gets "MODULE+0xOFFSET" for it even when another user
 * had it resolved. Debug information found in separate files (a .debug file,
 * a dwz alternate file) is looked for with the same user's rights; an object
 * whose separate files every user may read is shared by all its readers,
 * one that uses a file only some may read stays private to the uid that
 * loaded it. When the file is missing, not readable by that user, not a
 * regular file, or changed (its build-id no longer matches), frames come
 * out as "MODULE+0xOFFSET" rather than wrong lines.
 *
 * Thread-safety: every function may be called from any thread. The tables
 * are behind one mutex that is never held across anything that can block
 * (no file is opened or read under it); each object's libdw state has a
 * mutex of its own, held while that object's files are read. symbols_bind
 * and symbols_resolve may block on file I/O, so the daemon calls them from
 * the libuv thread pool; symbols_lookup only reads the cache. No network
 * access: debuginfod is only consulted when `debuginfod` is true at
 * creation.
 *
 * Memory is bounded (symbols_set_bounds): in all, by retiring the whole
 * cache when it passes the total and starting afresh (what is in use stays
 * until released), and per uid, by resolving the new frames of a uid that
 * holds its share into that caller's scratch instead of the cache.
 *
 * Returned frame_info pointers (and their strings, and the frames their
 * `caller` links reach) are owned by the cache and stay valid until the
 * object they were resolved in is released, or, when they came from a
 * scratch, until that scratch's next resolve or close.
 */
#ifndef MEMTRACE_SYMBOLS_H
#define MEMTRACE_SYMBOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

struct symbols;

struct useraccess_user;

/* Identifies a loaded object. Strings and bytes are only read during the
 * call (copied when cached). */
struct sym_module {
	const char *path; /* absolute path as the agent saw it; may be "" */
	const uint8_t *build_id;
	size_t build_id_len; /* 0 when the object has no build-id note */
	uint64_t bias;       /* load bias in the traced process */
	/* The user whose process loaded it: the file is opened only as that
	 * user could (useraccess.h). NULL: with the daemon's own rights, for
	 * callers that trust the path (tests). Not kept. */
	const struct useraccess_user *user;
};

struct symbols *symbols_new(bool debuginfod);
void symbols_free(struct symbols *s); /* NULL is a no-op */

/* The bounds, in estimated bytes of cache (0: none, the default): max_bytes
 * in all, per_uid for what one uid's processes add. */
void symbols_set_bounds(struct symbols *s, size_t max_bytes, size_t per_uid);

/* A resolver's own place for the frames the cache does not keep for its
 * uid (past its share). Fields are private. */
struct sym_scratch {
	uid_t uid; /* who the frames are charged to */
	struct frame_info *chain;
	char **strs;
	size_t nstrs;
};
void symbols_scratch_init(struct sym_scratch *sc, uid_t uid);
void symbols_scratch_close(struct sym_scratch *sc);

/* A module's file as one user may read it (or, when they may not, its
 * name): what symbols_resolve_in resolves in. Owned by the cache. */
struct sym_object;

/* Opens m's file as m->user could and finds or makes its object. Never
 * NULL. The object is pinned (its file stays open, its frames stay) until
 * symbols_release; a capture binds each module once and resolves all its
 * addresses in it. */
struct sym_object *symbols_bind(struct symbols *s, const struct sym_module *m);
/* The object of addresses that lie in no known module, pinned: its frames
 * are "[unknown]+0xADDR" for the absolute address passed as offset. */
struct sym_object *symbols_bind_unknown(struct symbols *s);
void symbols_release(struct symbols *s, struct sym_object *o);

/* Resolves the ELF virtual address `offset` (the absolute address minus the
 * module's bias, already adjusted to point inside the call instruction) in
 * a bound object. Never NULL. When the address lies in inlined code, the
 * result is the innermost inlined function at the address's line, and its
 * `caller` chain (frame.h) leads through the inlined call sites to the real
 * function; otherwise `caller` is NULL. The chain is built in the same
 * call, so symbols_lookup returns it complete. New frames are charged to
 * sc's uid, and made in sc when that uid holds its share; sc NULL: charged
 * to the daemon, never past a share (tests, tools). */
const struct frame_info *symbols_resolve_in(struct symbols *s, struct sym_object *o,
                                            uint64_t offset, struct sym_scratch *sc);
/* The cached result for the same arguments, or NULL if not resolved yet. */
const struct frame_info *symbols_lookup(struct symbols *s, struct sym_object *o, uint64_t offset);

/* symbols_bind (symbols_bind_unknown when m is NULL), symbols_resolve_in
 * (offset = address - m->bias) and symbols_release in one call, for one
 * address. The frame stays valid while the cache is not retired: for tests
 * and tools without bounds. */
const struct frame_info *symbols_resolve(struct symbols *s, const struct sym_module *m,
                                         uint64_t address);

/* Cache statistics, for status and metrics. */
struct symbols_stats {
	size_t objects;   /* ELF files opened (again after a retirement) */
	size_t frames;    /* distinct (object, offset) in the cache now */
	size_t failures;  /* objects that could not be opened or had no symbols */
	size_t bytes;     /* estimated, every generation still held */
	size_t max_bytes; /* the bounds (0: none) */
	size_t per_uid;
	uint64_t retired;   /* times the cache passed max_bytes and started afresh */
	uint64_t uids_full; /* times a uid reached per_uid (once per generation) */
	uint64_t uncached;  /* frames made in a scratch: their uid was at its share */
};
void symbols_get_stats(struct symbols *s, struct symbols_stats *out);
/* What uid's processes added to the cache now, in estimated bytes. */
size_t symbols_uid_bytes(struct symbols *s, uid_t uid);
/* The uids that added something to the cache now (at most max, the
 * largest first), with their bytes and whether they reached their share. */
struct symbols_uid {
	uid_t uid;
	size_t bytes;
	bool full;
};
#define SYMBOLS_UIDS_SHOWN 64
size_t symbols_uids(struct symbols *s, struct symbols_uid *out, size_t max);

#endif
