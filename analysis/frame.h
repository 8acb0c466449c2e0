/*
 * frame.h - a symbolized stack frame, as users see it.
 *
 * Frames are produced by the daemon's symbolizer (and by snapshot.c when it
 * reads a snapshot document) and read by query.c, the control server and the
 * snapshot store. A frame_info describes a code location
 * independent of any process: it is interned by the symbol cache per
 * (object, offset) and lives as long as the cache, so pointers to it may be
 * shared freely between sessions. The absolute address of a frame differs per
 * process (ASLR) and is therefore kept beside it, not in it.
 *
 * Inlining. One return address in optimized code can stand for several
 * logical frames: the statement of an inlined function, the line of the call
 * that was inlined into its caller, and so on out to the real (out-of-line)
 * function that the address belongs to. A frame_info for such an address is
 * the innermost of them, and `caller` links outward through the others, so
 * a traceback reads like addr2line -i. Caller frames are interned by the
 * symbol cache like every other frame_info (two addresses inlined at the same
 * call site share them) and live as long as it does.
 */
#ifndef MEMTRACE_FRAME_H
#define MEMTRACE_FRAME_H

#include <stdint.h>

struct frame_info {
	const char *filename; /* source file, or "MODULE+0xOFFSET" when no line info */
	uint32_t lineno;      /* 0 when unknown */
	const char *function; /* symbol name, or "MODULE+0xOFFSET" when unknown */
	const char *module;   /* path of the loaded object, or "[unknown]" */
	/* The frame this one was inlined into, or NULL. For an address inside
	 * inlined code the first frame names the innermost inlined function with
	 * the source line of the address; each caller names the function the
	 * code was inlined into, with filename/lineno of the inlined call site
	 * (DW_AT_call_file/DW_AT_call_line), and the chain ends at the real
	 * function, whose caller is NULL. Same module throughout. */
	const struct frame_info *caller;
	/* The file whose symbols named this frame (its DWARF, or its symbol
	 * table) when that is not `module`: a separate debug file, found by
	 * build-id or .gnu_debuglink, for a stripped module. NULL when the
	 * module's own file named it, or nothing did. */
	const char *symbols;
};

#endif
