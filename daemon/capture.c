/* capture.c - session -> snapshot, copy on the loop, resolve on the pool (see capture.h). */
#include "capture.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "bheap.h"
#include "daemon.h"
#include "hash.h"
#include "oaindex.h"
#include "useraccess.h"
#include "xalloc.h"

/* Inlined chains longer than this are cut (the outer frames are dropped). */
#define MAX_CHAIN 16

struct cap_stack {
	uint64_t size, count, allocations, allocated, temporary;
	uint64_t peak_size, peak_count; /* at the moment of the peak */
	uint32_t id;                    /* the session's stack id: stacks are in id order */
	uint32_t nframes;
	uint64_t *frames; /* the heap's, shared (a reference held); NULL for stack 0 */
};

struct cap_block {
	uint64_t addr, size;
	uint32_t stack; /* session stack id until the end of capture_take, then index */
};

struct capture {
	pid_t pid;
	uid_t uid;
	gid_t gid; /* with uid: whose rights the module files are opened with */
	uint64_t start_time;
	char *exe;
	char *cmdline;
	size_t cmdline_len;
	char reason[16];
	double taken_at;
	uint64_t current, peak, blocks, allocations, frees, lost_events;
	uint64_t sample_bytes;
	struct modmap_snap *modsnap;     /* the module map, shared (modmap_share) */
	const struct modmap_entry *mods; /* its entries */
	size_t nmods;
	/* The stacks with live blocks, made on the worker from the view. */
	struct cap_stack *stacks;
	size_t nstacks;
	/* The blocks and stacks as they were at the capture (a view shared
	 * copy on write with the heap), read on the worker: the stacks with
	 * live blocks, and the largest blocks. */
	struct heap_view view;
	bool has_view;
	bool view_may_grow; /* the process was live: its writes copy chunks */
	size_t nlargest;    /* how many are asked for */
	/* capture_take_where: instead of the largest blocks, the one block
	 * that holds this address (memtracectl where). */
	bool where;
	uint64_t where_addr;
};

/* ---- the largest blocks: a bounded min-heap on size ---- */

struct largest {
	struct cap_block *v;
	size_t n, max;
};

static bool block_smaller(const void *a, const void *b, void *ctx)
{
	const struct cap_block *x = a, *y = b;

	(void)ctx;
	return x->size < y->size;
}

static void largest_visit(void *arg, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct largest *l = arg;
	struct cap_block b = {addr, size, stack};

	if (l->n < l->max) {
		l->v[l->n] = b;
		bheap_sift_up(l->v, sizeof(*l->v), l->n++, block_smaller, NULL);
		return;
	}
	/* The root is the smallest kept block: b replaces it if larger. */
	if (size <= l->v[0].size)
		return;
	l->v[0] = b;
	bheap_sift_down(l->v, l->n, sizeof(*l->v), 0, block_smaller, NULL);
}

static int by_size_desc(const void *a, const void *b)
{
	const struct cap_block *x = a, *y = b;
	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* The capture index of stack id `id` (a stack with live blocks), by binary
 * search of the stacks, which are in id order; 0 if it is not there. */
static uint32_t stack_index(const struct capture *c, uint32_t id)
{
	size_t lo = 0, hi = c->nstacks;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->stacks[mid].id == id)
			return (uint32_t)mid;
		if (c->stacks[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* A stack the snapshot names: one with live blocks, or one that allocated
 * since tracing began (its allocations and temporaries are statistics too,
 * though all its blocks are freed). */
static bool stack_counts(const struct heap_stack *st)
{
	return st->live_count > 0 || st->total_allocs > 0 || st->peak_count > 0;
}

/* Thread pool: the stacks of the view that allocated, in id order, each
 * with a reference on its frames. */
static void stacks_of_view(struct capture *c)
{
	uint32_t n = heap_view_nstacks(&c->view);

	for (uint32_t id = 0; id < n; id++)
		if (stack_counts(heap_view_stack(&c->view, id)))
			c->nstacks++;
	c->stacks = xcalloc(c->nstacks ? c->nstacks : 1, sizeof(*c->stacks));
	size_t k = 0;
	for (uint32_t id = 0; id < n; id++) {
		const struct heap_stack *st = heap_view_stack(&c->view, id);
		if (!stack_counts(st))
			continue;
		struct cap_stack *cs = &c->stacks[k++];
		cs->id = id;
		cs->size = st->live_bytes;
		cs->count = st->live_count;
		cs->allocations = st->total_allocs;
		cs->allocated = st->total_bytes;
		cs->temporary = st->temporary;
		heap_stack_at_peak(st, heap_view_peak_serial(&c->view), &cs->peak_size,
		                   &cs->peak_count);
		cs->nframes = st->nframes;
		/* The frames never change: shared, not copied. Stack 0
		 * (unknown) has no frames, and no frame array. */
		cs->frames = heap_frames_ref(st->frames);
	}
}

/* The block that holds an address: [addr, addr + size), or a zero-sized
 * block at the address itself. */
struct holder {
	uint64_t addr;
	struct cap_block found;
	bool have;
};

static void holder_visit(void *arg, uint64_t addr, uint64_t size, uint32_t stack)
{
	struct holder *h = arg;
	if (h->addr >= addr && (h->addr - addr < size || (size == 0 && h->addr == addr))) {
		h->found = (struct cap_block){addr, size, stack};
		h->have = true;
	}
}

/* Thread pool: the nlargest largest blocks of the view, largest first, each
 * naming its trace (or the block holding where_addr, when asked). */
static struct cap_block *largest_blocks(struct capture *c, size_t *n)
{
	struct largest l = {xcalloc(c->nlargest ? c->nlargest : 1, sizeof(struct cap_block)), 0,
	                    c->nlargest};

	*n = 0;
	if (c->nlargest == 0)
		return l.v;
	if (c->where) {
		struct holder h = {c->where_addr, {0, 0, 0}, false};
		heap_view_foreach(&c->view, holder_visit, &h);
		if (h.have) {
			l.v[0] = h.found;
			l.v[0].stack = stack_index(c, l.v[0].stack);
			*n = 1;
		}
		return l.v;
	}
	heap_view_foreach(&c->view, largest_visit, &l);
	qsort(l.v, l.n, sizeof(*l.v), by_size_desc);
	for (size_t i = 0; i < l.n; i++)
		l.v[i].stack = stack_index(c, l.v[i].stack);
	*n = l.n;
	return l.v;
}

/* ---- loop thread ---- */

struct capture *capture_take(struct session *s, const char *reason, size_t nlargest)
{
	if (s->state == SESSION_LIVE)
		session_drain(s, false); /* what the region holds now counts */
	struct heap *h = &s->heap;
	struct capture *c = xcalloc(1, sizeof(*c));
	struct timeval tv;

	c->pid = s->pid;
	c->uid = s->uid;
	c->gid = s->gid;
	c->start_time = s->start_time;
	c->exe = xstrdup(s->exe != NULL ? s->exe : "");
	c->cmdline_len = s->cmdline != NULL ? s->cmdline_len : 0;
	c->cmdline = xmalloc(c->cmdline_len + 1);
	if (c->cmdline_len > 0)
		memcpy(c->cmdline, s->cmdline, c->cmdline_len);
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	gettimeofday(&tv, NULL);
	c->taken_at = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	/* A query's capture of a process that ended ("exited") holds what it
	 * held then: that is its time. (Its exit snapshot, taken as it ends,
	 * keeps the clock's microseconds: the store orders by them.) */
	if (strcmp(reason, "exited") == 0 && s->state == SESSION_EXITED && s->ended_ms != 0)
		c->taken_at = (double)s->ended_ms / 1000.0;
	c->current = h->current;
	c->peak = h->peak;
	c->blocks = h->blocks;
	c->allocations = h->allocations;
	c->frees = h->frees;
	c->lost_events = s->lost_events;
	c->sample_bytes = h->sample_bytes;

	/* Shared: copied only once after the modules change. */
	c->modsnap = modmap_share(&s->modules);
	c->mods = c->modsnap->v;
	c->nmods = c->modsnap->n;

	/* The stacks and the search for the largest blocks read every stack
	 * and every block: not here, but on the worker, in a view of the heap
	 * as it is now (O(chunks) to take). */
	heap_view_take(h, &c->view, nlargest > 0);
	c->has_view = true;
	/* A process that ended rewrites nothing: its view holds nothing of
	 * its own. */
	c->view_may_grow = s->state == SESSION_LIVE;
	c->nlargest = nlargest;
	return c;
}

struct capture *capture_take_where(struct session *s, uint64_t addr)
{
	struct capture *c = capture_take(s, "live", 1);
	c->where = true;
	c->where_addr = addr;
	return c;
}

size_t capture_memory(const struct capture *c)
{
	size_t n = sizeof(*c) + strlen(c->exe) + 1 + c->cmdline_len + 1 + c->modsnap->bytes +
	           c->nlargest * sizeof(struct cap_block);
	/* The view shares the heap's chunks, and keeps every one the process
	 * rewrites before a worker reads it, and the frames of every stack
	 * (which the stacks made from it keep too): at most all of them. A
	 * view of a process that ended counts its stacks and frames, as a
	 * list of them would. */
	if (c->has_view)
		n += c->view_may_grow ? heap_view_memory(&c->view)
		                      : heap_view_stacks_memory(&c->view);
	else
		for (size_t i = 0; i < c->nstacks; i++)
			n += sizeof(c->stacks[i]) + c->stacks[i].nframes * sizeof(uint64_t);
	return n;
}

void capture_free(struct capture *c)
{
	if (c == NULL)
		return;
	modmap_snap_unref(c->modsnap);
	for (size_t i = 0; i < c->nstacks; i++)
		heap_frames_unref(c->stacks[i].frames);
	free(c->stacks);
	if (c->has_view)
		heap_view_close(&c->view);
	free(c->exe);
	free(c->cmdline);
	free(c);
}

/* ---- thread pool ---- */

/* operator new and its variants are the allocator, not the caller. */
static int is_allocator_frame(const struct frame_info *f)
{
	const char *fn = f->function;
	return fn != NULL && (strncmp(fn, "operator new", 12) == 0 || strncmp(fn, "_Znw", 4) == 0 ||
	                      strncmp(fn, "_Zna", 4) == 0);
}

/* Per-capture memo: address -> its expanded chain of snapshot frame
 * indexes, so each distinct address is symbolized once. */
struct memo_entry {
	uint64_t addr;
	uint32_t start, len; /* in chain */
};

struct memo {
	struct symbols *syms;
	struct useraccess_user user; /* the process's user, for its module files */
	struct sym_object **bound;   /* per module, bound at its first address */
	struct sym_object *unknown;  /* addresses in no module, bound at the first */
	struct sym_scratch scratch;  /* frames the cache keeps no more for this uid */
	struct oaindex index;        /* hash of addr -> index into entries */
	struct memo_entry *entries;
	size_t nentries;
	uint32_t *chain;
	size_t nchain, chain_cap;
};

static bool memo_eq(const void *ctx, uintptr_t val, const void *key)
{
	const struct memo *m = ctx;
	return m->entries[val].addr == *(const uint64_t *)key;
}

static void chain_push(struct memo *m, uint32_t v)
{
	if (m->nchain == m->chain_cap) {
		m->chain_cap = m->chain_cap ? m->chain_cap * 2 : 1024;
		m->chain = xreallocarray(m->chain, m->chain_cap, sizeof(*m->chain));
	}
	m->chain[m->nchain++] = v;
}

/* Returns the expansion of addr (innermost first) as indexes into snap. */
static const uint32_t *expand(struct memo *m, const struct capture *c, struct symbols *syms,
                              struct snapshot *snap, uint64_t addr, uint32_t *n)
{
	uint64_t hash = hash_mix(addr);
	uintptr_t i = oaindex_find(&m->index, hash, memo_eq, m, &addr);

	if (i == OAINDEX_NONE) {
		const struct modmap_entry *mod = modmap_array_find(c->mods, c->nmods, addr);
		const struct frame_info *f;
		struct memo_entry *e;

		if (mod != NULL) {
			size_t k = (size_t)(mod - c->mods);
			if (m->bound[k] == NULL) {
				struct sym_module sm;
				session_sym_module(mod, &sm);
				sm.user = &m->user;
				m->bound[k] = symbols_bind(syms, &sm);
			}
			f = symbols_resolve_in(syms, m->bound[k], addr - mod->bias, &m->scratch);
		} else {
			if (m->unknown == NULL)
				m->unknown = symbols_bind_unknown(syms);
			f = symbols_resolve_in(syms, m->unknown, addr, &m->scratch);
		}
		i = m->nentries++;
		e = &m->entries[i];
		e->addr = addr;
		e->start = (uint32_t)m->nchain;
		e->len = 0;
		for (; f != NULL && e->len < MAX_CHAIN; f = f->caller, e->len++) {
			struct frame_info plain = *f;
			plain.caller = NULL;
			chain_push(m, snapshot_intern_frame(snap, &plain));
		}
		oaindex_insert(&m->index, hash, i);
	}
	*n = m->entries[i].len;
	return m->chain + m->entries[i].start;
}

static void fill_identity(struct snapshot *snap, const struct capture *c)
{
	size_t nargs = 0;
	for (size_t i = 0; i < c->cmdline_len; i++)
		if (c->cmdline[i] == '\0' || i + 1 == c->cmdline_len)
			nargs++;
	snap->pid = c->pid;
	snap->uid = c->uid;
	snap->start_time = c->start_time;
	snap->exe = xstrdup(c->exe);
	snap->argv = xcalloc(nargs + 1, sizeof(*snap->argv));
	size_t a = 0, i = 0;
	while (i < c->cmdline_len && a < nargs) {
		size_t l = strnlen(c->cmdline + i, c->cmdline_len - i);
		snap->argv[a++] = xstrndup(c->cmdline + i, l);
		i += l + 1;
	}
	snap->taken_at = c->taken_at;
	memcpy(snap->reason, c->reason, sizeof(snap->reason));
	snap->current = c->current;
	snap->peak = c->peak;
	snap->blocks = c->blocks;
	snap->allocations = c->allocations;
	snap->frees = c->frees;
	snap->lost_events = c->lost_events;
	snap->sample_bytes = c->sample_bytes;
}

struct snapshot *capture_resolve(struct capture *c, struct symbols *syms)
{
	struct snapshot *snap = snapshot_new();
	struct memo m;
	size_t distinct_max = 0, nlargest;
	/* First, so that the view holds the heap's old chunks no longer. */
	struct cap_block *largest = NULL;
	if (c->has_view) {
		stacks_of_view(c);
		largest = largest_blocks(c, &nlargest);
		heap_view_close(&c->view);
		c->has_view = false;
	} else {
		largest = xcalloc(1, sizeof(*largest));
		nlargest = 0;
	}

	fill_identity(snap, c);
	for (size_t i = 0; i < c->nstacks; i++)
		distinct_max += c->stacks[i].nframes;
	/* Each distinct address is an entry; there are at most distinct_max. */
	memset(&m, 0, sizeof(m));
	m.syms = syms;
	/* The traced process's user: a module file that user may not read
	 * yields no names (symbols.h). */
	useraccess_user_init(&m.user, c->uid, c->gid);
	symbols_scratch_init(&m.scratch, c->uid);
	m.bound = xcalloc(c->nmods ? c->nmods : 1, sizeof(*m.bound));
	oaindex_reserve(&m.index, distinct_max);
	m.entries = xcalloc(distinct_max ? distinct_max : 1, sizeof(*m.entries));

	snap->ntraces = c->nstacks;
	snap->traces = xcalloc(c->nstacks ? c->nstacks : 1, sizeof(*snap->traces));
	uint32_t buf_idx[PROTO_MAX_FRAMES];
	uint64_t buf_addr[PROTO_MAX_FRAMES];
	for (size_t i = 0; i < c->nstacks; i++) {
		const struct cap_stack *cs = &c->stacks[i];
		struct snapshot_trace *t = &snap->traces[i];
		uint32_t n = 0;
		t->size = cs->size;
		t->count = cs->count;
		t->allocations = cs->allocations;
		t->allocated = cs->allocated;
		t->temporary = cs->temporary;
		t->peak_size = cs->peak_size;
		t->peak_count = cs->peak_count;
		for (uint32_t j = 0; j < cs->nframes && n < PROTO_MAX_FRAMES; j++) {
			uint64_t addr = cs->frames[j];
			uint32_t len;
			const uint32_t *ch = expand(&m, c, syms, snap, addr, &len);
			for (uint32_t k = 0; k < len && n < PROTO_MAX_FRAMES; k++) {
				/* The allocator's frames at the top are not the
				 * caller of malloc; keep at least one frame. */
				if (n == 0 && (j + 1 < cs->nframes || k + 1 < len) &&
				    is_allocator_frame(&snap->frames[ch[k]]))
					continue;
				buf_idx[n] = ch[k];
				buf_addr[n] = addr;
				n++;
			}
		}
		t->nframes = n;
		t->frames = xmalloc((n ? n : 1) * sizeof(*t->frames));
		t->addrs = xmalloc((n ? n : 1) * sizeof(*t->addrs));
		memcpy(t->frames, buf_idx, n * sizeof(*buf_idx));
		memcpy(t->addrs, buf_addr, n * sizeof(*buf_addr));
	}
	snap->nlargest = nlargest;
	snap->largest = xcalloc(nlargest ? nlargest : 1, sizeof(*snap->largest));
	for (size_t i = 0; i < nlargest; i++) {
		snap->largest[i].addr = largest[i].addr;
		snap->largest[i].size = largest[i].size;
		snap->largest[i].trace = largest[i].stack;
	}
	free(largest);
	for (size_t i = 0; i < c->nmods; i++)
		symbols_release(syms, m.bound[i]);
	symbols_release(syms, m.unknown);
	symbols_scratch_close(&m.scratch);
	free(m.bound);
	useraccess_user_close(&m.user);
	oaindex_close(&m.index);
	free(m.entries);
	free(m.chain);
	return snap;
}
