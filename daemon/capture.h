/*
 * capture.h - turning a session's live heap into a snapshot without blocking
 * the loop.
 *
 * capture_take runs on the loop thread and only copies: the process identity
 * and counters, the module map, and a view of the live blocks and the
 * stacks as they are (heap_view_take: shared copy on write, no block nor
 * stack is read). Its cost is a word per chunk of blocks or stacks, never a
 * file read, never a pass over the blocks or the stacks. capture_resolve
 * runs on the libuv thread pool: it lists the stacks with live blocks from
 * the view, with a reference on their return addresses (heap_frames_ref:
 * they never change, so they are shared, not copied), finds the largest
 * blocks in the view (and gives the view back), symbolizes the
 * copied addresses through the thread-safe symbol cache, expands inlined
 * frames, drops the allocator's own frames (operator new) from the top of
 * each stack, and builds a struct snapshot. The capture owns copies of everything it needs, so the
 * session may change or go away meanwhile.
 */
#ifndef MEMTRACE_CAPTURE_H
#define MEMTRACE_CAPTURE_H

#include <stddef.h>

#include "session.h"
#include "snapshot.h"
#include "symbols.h"

struct capture;

/* Loop thread. reason: "periodic", "manual", "exit", "detach", "shutdown" or
 * "live".
 * nlargest: how many of the largest live blocks to keep (0 = none). */
struct capture *capture_take(struct session *s, const char *reason, size_t nlargest);
/* capture_take of one block instead of the largest ones: the live block
 * that holds addr, as the snapshot's only "largest" block (none when no
 * block holds it). For memtracectl where, of a live process. */
struct capture *capture_take_where(struct session *s, uint64_t addr);
/* Thread pool. Returns a new snapshot; consumes the view of the blocks
 * (a capture is resolved once). */
struct snapshot *capture_resolve(struct capture *c, struct symbols *syms);
void capture_free(struct capture *c); /* NULL is a no-op */
/* Bytes the capture holds (what a queued snapshot costs until it is
 * written): the view of a live process counts every chunk it shares (the
 * process may rewrite them all before the worker takes the capture up),
 * and every view its stacks and their frames. Any thread (capture_free
 * too). */
size_t capture_memory(const struct capture *c);

#endif
