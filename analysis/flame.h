/*
 * flame.h - a snapshot as an interactive flame graph in one HTML page.
 *
 * The page is self-contained: its style, its script and its data are in the
 * file, and it loads nothing (no network, no other file), so it can be
 * mailed, attached to a ticket or opened on a machine without memtrace.
 *
 * The graph is an icicle: the outermost calls at the top, each frame below
 * its caller, as wide as the value of the stacks through it (a frame is a
 * function: the stacks' frames merged by function name under one caller).
 * The frames are those captured (the runtime's included), as in `export`.
 * Click a frame to zoom to it, "Reset" to zoom out; the search box marks the
 * frames whose name contains a text and says what share of the total they
 * hold; the tooltip gives a frame's name, file and line, bytes, count and
 * share. A differential graph (flame_html with `old`) is as wide as the new
 * snapshot, and colours each frame by its growth from the old one: red
 * grew, blue shrank, grey did not change.
 *
 * For the tests and for scripts the rendered page keeps, on every frame's
 * element (class "frame"), data-name (the function), data-value (its
 * value), data-delta (its growth, differential only) and its pixel width.
 */
#ifndef MEMTRACE_FLAME_H
#define MEMTRACE_FLAME_H

#include <stddef.h>

#include "snapshot.h"

enum flame_value {
	FLAME_SIZE,        /* live bytes now (blocks in the tooltip) */
	FLAME_PEAK,        /* live bytes at the peak */
	FLAME_ALLOCATIONS, /* allocations since tracing began (their bytes in the tooltip) */
	FLAME_TEMPORARY,   /* temporary allocations */
};

/* "size", "peak", "allocations", "temporary" -> the value; -1 otherwise. */
int flame_value_parse(const char *s);
/* The value's name, as flame_value_parse reads it. */
const char *flame_value_name(enum flame_value v);

/* The page (NUL-terminated, *len bytes before the NUL; free it), titled
 * `title`. With `old`, a differential graph of s against old. Aborts when
 * memory runs out (xalloc). */
char *flame_html(const struct snapshot *s, const struct snapshot *old, enum flame_value v,
                 const char *title, size_t *len);

#endif
