/*
 * view.h - a symbolized view of a session's heap, the input of every query.
 *
 * Queries run in two steps. On the loop thread, view_job_collect lists the
 * return addresses (with a copy of their module's identity) that the symbol
 * cache does not know yet. If there are any, view_job_run resolves them on
 * the libuv thread pool: it touches only the job and the thread-safe symbol
 * cache, never the session. Back on the loop thread, view_build turns the
 * session's stacks into trace groups for query.c, with the allocator's own
 * frames (operator new and friends) removed from the top of each stack so
 * the most recent frame is the program's line that allocated.
 */
#ifndef MEMTRACE_VIEW_H
#define MEMTRACE_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "query.h"
#include "session.h"
#include "symbols.h"

struct view_job_item {
	struct sym_module mod; /* strings owned by the job */
	uint64_t addr;
	int in_module;
};

struct view_job {
	struct symbols *syms;
	struct view_job_item *items;
	size_t n, cap;
};

/* Stacks to include: every stack with live blocks, or an explicit list. */
void view_job_collect(struct view_job *job, struct session *s, const uint32_t *stack_ids,
                      size_t nids);
void view_job_run(struct view_job *job); /* thread pool */
void view_job_free(struct view_job *job);

struct view {
	struct trace_group *groups;
	size_t ngroups;
	const struct frame_info **frames;
	uint64_t *addrs;
};

/* Builds the trace groups of every stack with live blocks. */
void view_build(struct view *v, struct session *s);
/* The symbolized traceback of one stack id, appended to a cJSON array. */
void view_traceback_json(struct session *s, uint32_t stack, cJSON *arr);
void view_free(struct view *v);

#endif
