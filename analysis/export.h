/*
 * export.h - a snapshot in the formats other tools read.
 *
 * Folded stacks (Brendan Gregg's collapsed format, read by flamegraph.pl,
 * inferno and speedscope): one line per stack, its frames from the outermost
 * call to the allocation site joined by ';', a space, and one of the
 * snapshot's counters for that stack (query_sort names which). A frame is
 * its function name (for a frame without symbols, MODULE+0xOFFSET as the
 * snapshot has it); ';' and control characters in a name become '_', so a
 * name cannot split a frame or a line. Stacks whose value is 0 are left out;
 * a stack without frames reads "[unknown]".
 *
 * pprof (profile.proto, read by `go tool pprof`, jeprof users' tools and
 * most profilers' UIs), uncompressed: the caller gzips it. Sample types
 * inuse_space (bytes), inuse_objects (count), alloc_space (bytes) and
 * alloc_objects (count), in that order, the first the default; one sample
 * per stack with its four values; one location per distinct frame (its
 * address, its function and line), one function per distinct (name, file).
 * time_nanos is the snapshot's taken_at. Without mappings: every location
 * carries its function, so pprof has nothing to symbolize.
 *
 * Both build the whole output in memory (returned with malloc, length in
 * *len); neither fails but by aborting when memory runs out (xalloc).
 */
#ifndef MEMTRACE_EXPORT_H
#define MEMTRACE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "query.h"
#include "snapshot.h"

char *export_folded(const struct snapshot *s, enum query_sort value, size_t *len);
uint8_t *export_pprof(const struct snapshot *s, size_t *len);

#endif
