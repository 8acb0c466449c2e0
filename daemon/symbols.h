/*
 * symbols.h - symbolization of module-relative addresses with elfutils libdw.
 *
 * The agent never symbolizes: it sends return addresses and a module map
 * (path, load bias, build-id). The daemon turns (module, address) into a
 * frame_info here. ELF files are opened once and cached per build-id (or per
 * path when an object has none); results are cached per (object, offset), so
 * each distinct return address is resolved at most once per daemon lifetime.
 * When the object's file is missing or changed (its build-id no longer
 * matches), frames come out as "MODULE+0xOFFSET" rather than wrong lines.
 *
 * Thread-safety: every function may be called from any thread; an internal
 * mutex serializes them. symbols_resolve may block on file I/O, so the daemon
 * calls it from the libuv thread pool; symbols_lookup only reads the cache
 * and is cheap enough for the loop thread. No network access: debuginfod is
 * only consulted when `debuginfod` is true at creation.
 *
 * Returned frame_info pointers (and their strings, and the frames their
 * `caller` links reach) are owned by the cache and stay valid until
 * symbols_free.
 */
#ifndef MEMTRACE_SYMBOLS_H
#define MEMTRACE_SYMBOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct symbols;

/* Identifies a loaded object. Strings and bytes are only read during the
 * call (copied when cached). */
struct sym_module {
	const char *path; /* absolute path as the agent saw it; may be "" */
	const uint8_t *build_id;
	size_t build_id_len; /* 0 when the object has no build-id note */
	uint64_t bias;       /* load bias in the traced process */
};

struct symbols *symbols_new(bool debuginfod);
void symbols_free(struct symbols *s); /* NULL is a no-op */

/* Resolves `address` (absolute, in the traced process, already adjusted to
 * point inside the call instruction) inside module `m`. Never NULL. When the
 * address lies in inlined code, the result is the innermost inlined function
 * at the address's line, and its `caller` chain (frame.h) leads through the
 * inlined call sites to the real function; otherwise `caller` is NULL. The
 * chain is built in the same call, so symbols_lookup returns it complete. */
const struct frame_info *symbols_resolve(struct symbols *s, const struct sym_module *m,
                                         uint64_t address);
/* The cached result for the same arguments, or NULL if not resolved yet. */
const struct frame_info *symbols_lookup(struct symbols *s, const struct sym_module *m,
                                        uint64_t address);
/* A frame for an address that lies in no known module: "[unknown]+0xADDR". */
const struct frame_info *symbols_unknown(struct symbols *s, uint64_t address);

/* Cache statistics, for status and metrics. */
struct symbols_stats {
	size_t objects;  /* ELF files opened */
	size_t frames;   /* distinct (object, offset) resolved */
	size_t failures; /* objects that could not be opened or had no symbols */
};
void symbols_get_stats(struct symbols *s, struct symbols_stats *out);

#endif
