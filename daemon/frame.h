/*
 * frame.h - a symbolized stack frame, as users see it.
 *
 * Frames are produced by symbols.c and read by query.c, the control server
 * and (later) the snapshot store. A frame_info describes a code location
 * independent of any process: it is interned by the symbol cache per
 * (object, offset) and lives as long as the cache, so pointers to it may be
 * shared freely between sessions. The absolute address of a frame differs per
 * process (ASLR) and is therefore kept beside it, not in it.
 */
#ifndef MEMTRACE_FRAME_H
#define MEMTRACE_FRAME_H

#include <stdint.h>

struct frame_info {
	const char *filename; /* source file, or "MODULE+0xOFFSET" when no line info */
	uint32_t lineno;      /* 0 when unknown */
	const char *function; /* symbol name, or "MODULE+0xOFFSET" when unknown */
	const char *module;   /* path of the loaded object, or "[unknown]" */
};

#endif
