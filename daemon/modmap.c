/* modmap.c - a process's module map, a treap of address ranges (see modmap.h). */
#include "modmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "hash.h"
#include "xalloc.h"

struct modmap_node {
	struct modmap_entry e;
	struct modmap_node *left, *right;
	uint64_t prio; /* a max-heap on prio: the root has the largest */
};

void modmap_init(struct modmap *m, size_t max, size_t max_path_bytes)
{
	memset(m, 0, sizeof(*m));
	m->max = max ? max : MODMAP_DEFAULT_MAX;
	m->max_path_bytes = max_path_bytes ? max_path_bytes : MODMAP_DEFAULT_PATH_BYTES;
	if (getrandom(&m->key, sizeof(m->key), GRND_NONBLOCK) != (ssize_t)sizeof(m->key)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		m->key = hash_mix((uint64_t)ts.tv_nsec ^ (uintptr_t)m);
	}
}

static void node_free(struct modmap *m, struct modmap_node *t)
{
	/* Recursion depth is the tree's depth: logarithmic (modmap.h). */
	if (t == NULL)
		return;
	node_free(m, t->left);
	node_free(m, t->right);
	m->n--;
	m->path_bytes -= strlen(t->e.path) + 1;
	free(t->e.path);
	free(t);
}

/* The map changed: the snapshot of it is no longer the map's. */
static void changed(struct modmap *m)
{
	modmap_snap_unref(m->snap);
	m->snap = NULL;
}

void modmap_close(struct modmap *m)
{
	changed(m);
	node_free(m, m->root);
	m->root = NULL;
}

/* Splits t into the entries with lo < key (*l) and the others (*r). */
static void split(struct modmap_node *t, uint64_t key, struct modmap_node **l,
                  struct modmap_node **r)
{
	while (t != NULL) {
		if (t->e.lo < key) {
			*l = t;
			l = &t->right;
			t = t->right;
		} else {
			*r = t;
			r = &t->left;
			t = t->left;
		}
	}
	*l = NULL;
	*r = NULL;
}

/* Joins a and b, every entry of a below every entry of b. */
static struct modmap_node *merge(struct modmap_node *a, struct modmap_node *b)
{
	struct modmap_node *root = NULL, **at = &root;
	while (a != NULL && b != NULL) {
		if (a->prio > b->prio) {
			*at = a;
			at = &a->right;
			a = a->right;
		} else {
			*at = b;
			at = &b->left;
			b = b->left;
		}
	}
	*at = a != NULL ? a : b;
	return root;
}

static const struct modmap_node *last(const struct modmap_node *t)
{
	while (t != NULL && t->right != NULL)
		t = t->right;
	return t;
}

static bool same(const struct modmap_entry *e, uint64_t bias, uint64_t lo, uint64_t hi,
                 const char *path, size_t path_len)
{
	return e->lo == lo && e->hi == hi && e->bias == bias && strlen(e->path) == path_len &&
	       memcmp(e->path, path, path_len) == 0;
}

int modmap_add(struct modmap *m, uint64_t bias, uint64_t lo, uint64_t hi, const char *path,
               size_t path_len, const uint8_t *build_id, uint32_t build_id_len)
{
	struct modmap_node *l, *mid, *r, *over = NULL;

	/* The ranges are disjoint, so at most one starts below lo and reaches
	 * past it (the last of l); the others that overlap start in [lo, hi). */
	split(m->root, lo, &l, &mid);
	split(mid, hi, &mid, &r);
	const struct modmap_node *p = last(l);
	if (p != NULL && p->e.hi > lo) {
		split(l, p->e.lo, &l, &over);
	} else if (mid != NULL && mid->left == NULL && mid->right == NULL &&
	           same(&mid->e, bias, lo, hi, path, path_len)) {
		/* An identical entry starts at lo, and no other entry can
		 * overlap it. */
		m->root = merge(merge(l, mid), r);
		return 0;
	}
	changed(m);
	node_free(m, over);
	node_free(m, mid);
	if (m->n >= m->max || m->path_bytes + path_len + 1 > m->max_path_bytes) {
		m->dropped++;
		m->root = merge(l, r);
		return -ENOSPC;
	}
	struct modmap_node *t = xcalloc(1, sizeof(*t));
	t->e.bias = bias;
	t->e.lo = lo;
	t->e.hi = hi;
	t->e.path = xstrndup(path, path_len);
	if (build_id_len > PROTO_MAX_BUILD_ID)
		build_id_len = PROTO_MAX_BUILD_ID;
	memcpy(t->e.build_id, build_id, build_id_len);
	t->e.build_id_len = build_id_len;
	t->prio = hash_mix(++m->seq ^ m->key);
	m->n++;
	m->path_bytes += path_len + 1;
	m->root = merge(merge(l, t), r);
	return 1;
}

const struct modmap_entry *modmap_find(const struct modmap *m, uint64_t addr)
{
	const struct modmap_node *t = m->root;
	while (t != NULL) {
		if (addr < t->e.lo)
			t = t->left;
		else if (addr >= t->e.hi)
			t = t->right;
		else
			return &t->e;
	}
	return NULL;
}

/* Calls fn on every entry in address order, without recursion. */
static void walk(const struct modmap *m, void (*fn)(void *arg, const struct modmap_entry *e),
                 void *arg)
{
	/* A stack as deep as the tree: grown on demand. */
	const struct modmap_node **stack = NULL;
	size_t n = 0, cap = 0;
	const struct modmap_node *t = m->root;

	while (t != NULL || n > 0) {
		while (t != NULL) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				stack = xreallocarray(stack, cap, sizeof(*stack));
			}
			stack[n++] = t;
			t = t->left;
		}
		t = stack[--n];
		fn(arg, &t->e);
		t = t->right;
	}
	free(stack);
}

static void copy_into(void *arg, const struct modmap_entry *e)
{
	struct modmap *dst = arg;
	modmap_add(dst, e->bias, e->lo, e->hi, e->path, strlen(e->path), e->build_id,
	           e->build_id_len);
}

void modmap_copy(struct modmap *dst, const struct modmap *src)
{
	dst->max = src->max;
	dst->max_path_bytes = src->max_path_bytes;
	walk(src, copy_into, dst);
}

struct fill {
	struct modmap_entry *v;
	size_t n;
};

static void fill_one(void *arg, const struct modmap_entry *e)
{
	struct fill *f = arg;
	f->v[f->n] = *e;
	f->v[f->n].path = xstrdup(e->path);
	f->n++;
}

struct modmap_entry *modmap_array(const struct modmap *m)
{
	struct fill f = {xcalloc(m->n ? m->n : 1, sizeof(*f.v)), 0};
	walk(m, fill_one, &f);
	return f.v;
}

struct snap_fill {
	struct modmap_snap *s;
	char *paths;
};

static void snap_one(void *arg, const struct modmap_entry *e)
{
	struct snap_fill *f = arg;
	struct modmap_entry *d = &f->s->v[f->s->n++];
	size_t len = strlen(e->path) + 1;

	*d = *e;
	d->path = memcpy(f->paths, e->path, len);
	f->paths += len;
}

struct modmap_snap *modmap_share(struct modmap *m)
{
	if (m->snap == NULL) {
		size_t bytes =
		    sizeof(struct modmap_snap) + m->n * sizeof(struct modmap_entry) + m->path_bytes;
		struct snap_fill f = {xmalloc(bytes), NULL};
		atomic_init(&f.s->refs, 1);
		f.s->n = 0;
		f.s->bytes = bytes;
		f.paths = (char *)&f.s->v[m->n];
		walk(m, snap_one, &f);
		m->snap = f.s;
	}
	atomic_fetch_add_explicit(&m->snap->refs, 1, memory_order_relaxed);
	return m->snap;
}

void modmap_snap_unref(struct modmap_snap *s)
{
	if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s);
}

void modmap_array_free(struct modmap_entry *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

size_t modmap_memory(const struct modmap *m)
{
	return m->n * sizeof(struct modmap_node) + m->path_bytes;
}

const struct modmap_entry *modmap_array_find(const struct modmap_entry *v, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (addr < v[mid].lo)
			hi = mid;
		else if (addr >= v[mid].hi)
			lo = mid + 1;
		else
			return &v[mid];
	}
	return NULL;
}

static size_t depth(const struct modmap_node *t)
{
	if (t == NULL)
		return 0;
	size_t l = depth(t->left), r = depth(t->right);
	return 1 + (l > r ? l : r);
}

size_t modmap_depth(const struct modmap *m)
{
	return depth(m->root);
}
