/* view.c - symbolized views of a session's heap (see view.h). */
#include "view.h"

#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "xalloc.h"

static void job_add(struct view_job *job, const struct session_module *m, uint64_t addr)
{
	if (job->n == job->cap) {
		job->cap = job->cap ? job->cap * 2 : 256;
		job->items = xreallocarray(job->items, job->cap, sizeof(*job->items));
	}
	struct view_job_item *it = &job->items[job->n++];
	memset(it, 0, sizeof(*it));
	it->addr = addr;
	if (m != NULL) {
		it->in_module = 1;
		it->mod.path = xstrdup(m->path);
		if (m->build_id_len > 0) {
			uint8_t *b = xmalloc(m->build_id_len);
			memcpy(b, m->build_id, m->build_id_len);
			it->mod.build_id = b;
		}
		it->mod.build_id_len = m->build_id_len;
		it->mod.bias = m->bias;
	}
}

static void collect_stack(struct view_job *job, struct session *s, uint32_t id)
{
	struct symbols *syms = s->d->syms;
	const struct heap_stack *st = &s->heap.stacks[id];
	struct sym_module sm;

	for (uint32_t i = 0; i < st->nframes; i++) {
		const struct session_module *m = session_module_at(s, st->frames[i]);
		if (m == NULL)
			continue; /* symbols_unknown needs no file access */
		session_sym_module(m, &sm);
		if (symbols_lookup(syms, &sm, st->frames[i]) == NULL)
			job_add(job, m, st->frames[i]);
	}
}

void view_job_collect(struct view_job *job, struct session *s, const uint32_t *ids, size_t nids)
{
	memset(job, 0, sizeof(*job));
	job->syms = s->d->syms;
	if (ids != NULL) {
		for (size_t i = 0; i < nids; i++)
			if (ids[i] < s->heap.nstacks)
				collect_stack(job, s, ids[i]);
		return;
	}
	for (uint32_t id = 1; id < s->heap.nstacks; id++)
		if (s->heap.stacks[id].live_count > 0)
			collect_stack(job, s, id);
}

void view_job_run(struct view_job *job)
{
	for (size_t i = 0; i < job->n; i++)
		if (job->items[i].in_module)
			symbols_resolve(job->syms, &job->items[i].mod, job->items[i].addr);
}

void view_job_free(struct view_job *job)
{
	for (size_t i = 0; i < job->n; i++) {
		free((char *)job->items[i].mod.path);
		free((uint8_t *)job->items[i].mod.build_id);
	}
	free(job->items);
	memset(job, 0, sizeof(*job));
}

static const struct frame_info *frame_of(struct session *s, uint64_t addr)
{
	struct symbols *syms = s->d->syms;
	const struct session_module *m = session_module_at(s, addr);
	struct sym_module sm;

	if (m == NULL)
		return symbols_unknown(syms, addr);
	session_sym_module(m, &sm);
	const struct frame_info *f = symbols_lookup(syms, &sm, addr);
	/* A stack that arrived while the job ran: resolve it here. */
	return f != NULL ? f : symbols_resolve(syms, &sm, addr);
}

/* operator new and its variants are the allocator, not the caller. */
static int is_allocator_frame(const struct frame_info *f)
{
	const char *fn = f->function;
	return fn != NULL && (strncmp(fn, "operator new", 12) == 0 || strncmp(fn, "_Znw", 4) == 0 ||
	                      strncmp(fn, "_Zna", 4) == 0);
}

/* Resolves a stack's frames into out/addrs, skipping the allocator's. */
static uint32_t resolve_stack(struct session *s, const struct heap_stack *st,
                              const struct frame_info **out, uint64_t *addrs)
{
	uint32_t n = 0, i = 0;
	for (; i < st->nframes; i++) {
		const struct frame_info *f = frame_of(s, st->frames[i]);
		if (n == 0 && i + 1 < st->nframes && is_allocator_frame(f))
			continue;
		out[n] = f;
		addrs[n] = st->frames[i];
		n++;
	}
	return n;
}

void view_build(struct view *v, struct session *s)
{
	size_t ngroups = 0, nframes = 0;
	const struct heap *h = &s->heap;

	memset(v, 0, sizeof(*v));
	for (uint32_t id = 0; id < h->nstacks; id++) {
		if (h->stacks[id].live_count > 0) {
			ngroups++;
			nframes += h->stacks[id].nframes;
		}
	}
	v->groups = xcalloc(ngroups ? ngroups : 1, sizeof(*v->groups));
	v->frames = xcalloc(nframes ? nframes : 1, sizeof(*v->frames));
	v->addrs = xcalloc(nframes ? nframes : 1, sizeof(*v->addrs));
	size_t fo = 0;
	for (uint32_t id = 0; id < h->nstacks; id++) {
		const struct heap_stack *st = &h->stacks[id];
		if (st->live_count == 0)
			continue;
		struct trace_group *g = &v->groups[v->ngroups++];
		g->frames = &v->frames[fo];
		g->addrs = &v->addrs[fo];
		g->nframes = resolve_stack(s, st, &v->frames[fo], &v->addrs[fo]);
		g->size = st->live_bytes;
		g->count = st->live_count;
		fo += g->nframes;
	}
}

void view_traceback_json(struct session *s, uint32_t stack, cJSON *arr)
{
	const struct frame_info *frames[PROTO_MAX_FRAMES];
	uint64_t addrs[PROTO_MAX_FRAMES];

	if (stack >= s->heap.nstacks)
		return;
	uint32_t n = resolve_stack(s, &s->heap.stacks[stack], frames, addrs);
	for (uint32_t i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, query_frame_json(frames[i], addrs[i]));
}

void view_free(struct view *v)
{
	free(v->groups);
	free(v->frames);
	free(v->addrs);
	memset(v, 0, sizeof(*v));
}
