/*
 * workload.c - a malloc-heavy, multi-threaded workload for measuring what
 * tracing costs a program (bench/run.sh runs it plain, under the agent and
 * under heaptrack, and compares).
 *
 * Each thread plays a small request-serving service, because that is the
 * kind of program memtrace is for and its allocation pattern is what makes
 * an agent expensive: many small blocks of varied sizes, short-lived and
 * allocated from stacks 10 to 20 frames deep. One request, per thread and
 * iteration, does what such a service does:
 *
 *   - builds the request's text in a string buffer that grows by realloc;
 *   - parses it into a request object, a string per method, path, header
 *     name and value, and half the time a small document tree whose child
 *     arrays grow by realloc;
 *   - reads a body buffer (64 B .. 4 KiB, now and then 8 .. 256 KiB);
 *   - looks the path up in a per-thread hash map (a cache of bounded size:
 *     a miss inserts, a full map evicts, a hit sometimes resizes the value);
 *   - writes a response into a growing buffer and "sends" it: a checksum
 *     over all of it, -w passes (the knob for how much of its time the
 *     workload spends outside malloc);
 *   - hands a log record, and now and then the body itself, to the next
 *     thread's queue: blocks freed by another thread than the one that made
 *     them, as a logger or a connection pool does;
 *   - tears all of it down.
 *
 * Every block it allocates is written to, so the workload pays for its memory
 * as a real program does. Everything is drawn from a per-thread generator with
 * a fixed seed, and every block is freed by the end, so the counts it prints
 * are the same on every run (only which thread frees a queued block varies).
 *
 * It counts its own calls: `events` is the number of malloc, calloc, realloc
 * and free calls it made, which is the number of events an allocation tracer
 * must record for it. `allocs` and `releases` split them the way a tracer's
 * live-heap model sees them (a realloc of a block is a release and an alloc).
 * Output is one line of key=value pairs, so a script can read it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
/* Placed after a call in tail position: keeps the compiler from turning the
 * call into a jump, so each layer of the service stays a real stack frame. */
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

#define KEYSPACE      16384 /* distinct paths requested */
#define CACHE_BUCKETS 4096  /* per thread */
#define CACHE_MAX     3072  /* entries per thread before eviction */
#define BIG_ONE_IN    128   /* requests with a large body */

struct counts {
	uint64_t malloc, calloc, realloc, realloc_null, free;
};

/* A log record or a handed-off body: the block itself is the queue link. */
struct qitem {
	struct qitem *next;
	size_t len;
	char data[];
};

struct inbox {
	pthread_mutex_t mu;
	struct qitem *head;
	char pad[64];
};

struct centry {
	struct centry *next;
	uint64_t hash;
	char *key;
	char *val;
	size_t val_len;
};

struct worker {
	int id;
	uint64_t rng;
	uint64_t iters;
	int depth;
	int work;
	struct counts c;
	uint64_t sum; /* checksum of what was "sent", so no work is dead */
	struct centry **buckets;
	size_t ncache;
	struct inbox *mine;
	struct inbox *peer;
	pthread_t th;
};

struct strbuf {
	char *p;
	size_t len, cap;
};

struct header {
	struct header *next;
	char *name;
	char *value;
	size_t name_len, value_len;
};

struct node {
	char *name;
	char *text;
	struct node **kids;
	size_t nkids, cap;
	uint64_t weight;
};

struct request {
	char *method;
	char *path;
	struct header *headers;
	size_t nheaders;
	char *body;
	size_t body_len;
	struct node *doc;
	uint64_t key;
};

/* ---- counted allocation: inline, so they add no frame of their own ---- */

static inline void *w_malloc(struct worker *w, size_t n)
{
	void *p = malloc(n);
	if (p == NULL) {
		fprintf(stderr, "workload: out of memory\n");
		exit(1);
	}
	w->c.malloc++;
	return p;
}

static inline void *w_calloc(struct worker *w, size_t k, size_t n)
{
	void *p = calloc(k, n);
	if (p == NULL) {
		fprintf(stderr, "workload: out of memory\n");
		exit(1);
	}
	w->c.calloc++;
	return p;
}

static inline void *w_realloc(struct worker *w, void *old, size_t n)
{
	void *p = realloc(old, n);
	if (p == NULL) {
		fprintf(stderr, "workload: out of memory\n");
		exit(1);
	}
	w->c.realloc++;
	if (old == NULL)
		w->c.realloc_null++;
	return p;
}

static inline void w_free(struct worker *w, void *p)
{
	if (p == NULL)
		return;
	free(p);
	w->c.free++;
}

/* xorshift64*: fixed seeds make every run allocate the same sizes. */
static inline uint64_t rnd(struct worker *w)
{
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545f4914f6cdd1dull;
}

static inline size_t range(struct worker *w, size_t lo, size_t hi)
{
	return lo + (size_t)(rnd(w) % (hi - lo + 1));
}

/* Object sizes as services see them: log-uniform over 16 B .. 4 KiB. */
static inline size_t obj_size(struct worker *w)
{
	size_t base = (size_t)16 << (rnd(w) % 8);
	return base + (size_t)(rnd(w) % base);
}

static inline uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static void fill(void *p, size_t n, uint64_t seed)
{
	memset(p, (int)(seed & 0xff), n);
	if (n >= 8)
		memcpy(p, &seed, 8);
}

/* ---- strings ---- */

static NOINLINE char *str_ndup(struct worker *w, const char *s, size_t n)
{
	char *p = w_malloc(w, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static NOINLINE void sb_grow(struct worker *w, struct strbuf *sb, size_t need)
{
	size_t cap = sb->cap ? sb->cap : 32;
	while (cap < sb->len + need + 1)
		cap += cap / 2 + 16;
	sb->p = w_realloc(w, sb->p, cap);
	sb->cap = cap;
}

static NOINLINE void sb_append(struct worker *w, struct strbuf *sb, const char *s, size_t n)
{
	if (sb->len + n + 1 > sb->cap)
		sb_grow(w, sb, n);
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
}

static void sb_appends(struct worker *w, struct strbuf *sb, const char *s)
{
	sb_append(w, sb, s, strlen(s));
}

static NOINLINE void sb_appendf_u64(struct worker *w, struct strbuf *sb, const char *prefix,
                                    uint64_t v)
{
	char tmp[64];
	int n = snprintf(tmp, sizeof(tmp), "%s%llu", prefix, (unsigned long long)v);
	sb_append(w, sb, tmp, (size_t)n);
}

/* ---- the request's text ---- */

static const char *const methods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
static const char *const hnames[] = {
    "Host",         "User-Agent", "Accept",          "Content-Type",    "Authorization",
    "X-Request-Id", "Cookie",     "Accept-Encoding", "X-Forwarded-For", "Cache-Control"};

/* Paths are skewed (the minimum of two draws), so the cache has hot keys. */
static uint64_t pick_key(struct worker *w)
{
	uint64_t a = rnd(w) % KEYSPACE, b = rnd(w) % KEYSPACE;
	return a < b ? a : b;
}

/* Header values are slices of this text (no ':' or '\r' in it). */
static const char lorem[] =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8 "
    "gzip, deflate, br; session=3f2a9c0e71d84b6aa1e5c2d7f0b94e13; theme=dark; "
    "lang=en-GB; Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkw";

static NOINLINE void build_headers(struct worker *w, struct strbuf *sb)
{
	size_t nh = range(w, 4, 14);
	for (size_t i = 0; i < nh; i++) {
		size_t vl = range(w, 4, 120);
		size_t off = (size_t)(rnd(w) % (sizeof(lorem) - 1 - vl));
		sb_appends(w, sb, hnames[rnd(w) % (sizeof(hnames) / sizeof(hnames[0]))]);
		sb_append(w, sb, ": ", 2);
		sb_append(w, sb, lorem + off, vl);
		sb_append(w, sb, "\r\n", 2);
	}
}

static NOINLINE char *build_request_text(struct worker *w, uint64_t key, size_t *len)
{
	struct strbuf sb = {0};
	sb_appends(w, &sb, methods[rnd(w) % (sizeof(methods) / sizeof(methods[0]))]);
	sb_appendf_u64(w, &sb, " /api/v1/items/", key);
	sb_append(w, &sb, " HTTP/1.1\r\n", 11);
	build_headers(w, &sb);
	sb_append(w, &sb, "\r\n", 2);
	*len = sb.len;
	return sb.p;
}

/* ---- parsing: headers, then a document tree ---- */

static NOINLINE struct header *header_new(struct worker *w, const char *line, size_t n)
{
	const char *colon = memchr(line, ':', n);
	if (colon == NULL)
		return NULL;
	struct header *h = w_malloc(w, sizeof(*h));
	h->name_len = (size_t)(colon - line);
	h->name = str_ndup(w, line, h->name_len);
	const char *v = colon + 1;
	while (v < line + n && *v == ' ')
		v++;
	h->value_len = (size_t)(line + n - v);
	h->value = str_ndup(w, v, h->value_len);
	h->next = NULL;
	return h;
}

static NOINLINE const char *parse_headers(struct worker *w, struct request *r, const char *p,
                                          const char *end)
{
	struct header **tail = &r->headers;
	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		if (eol == NULL || eol == p)
			return eol ? eol + 2 : end;
		struct header *h = header_new(w, p, (size_t)(eol - p));
		if (h != NULL) {
			*tail = h;
			tail = &h->next;
			r->nheaders++;
		}
		p = eol + 2;
	}
	return p;
}

static NOINLINE void node_add_kid(struct worker *w, struct node *parent, struct node *kid)
{
	if (parent->nkids == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 2;
		parent->kids = w_realloc(w, parent->kids, parent->cap * sizeof(*parent->kids));
	}
	parent->kids[parent->nkids++] = kid;
}

static NOINLINE struct node *parse_node(struct worker *w, int level)
{
	struct node *n = w_calloc(w, 1, sizeof(*n));
	char name[32];
	int nl = snprintf(name, sizeof(name), "field%u", (unsigned)(rnd(w) % 1000));
	n->name = str_ndup(w, name, (size_t)nl);
	n->weight = rnd(w);
	if (level >= 3 || rnd(w) % 3 == 0) {
		size_t tl = range(w, 8, 200);
		n->text = w_malloc(w, tl);
		fill(n->text, tl, n->weight);
		return n;
	}
	size_t fan = range(w, 1, 5);
	for (size_t i = 0; i < fan; i++)
		node_add_kid(w, n, parse_node(w, level + 1));
	KEEP_FRAME();
	return n;
}

static NOINLINE uint64_t node_walk(const struct node *n)
{
	uint64_t s = n->weight ^ (unsigned char)n->name[0];
	for (size_t i = 0; i < n->nkids; i++)
		s += node_walk(n->kids[i]);
	return s;
}

static NOINLINE void node_free(struct worker *w, struct node *n)
{
	for (size_t i = 0; i < n->nkids; i++)
		node_free(w, n->kids[i]);
	w_free(w, n->kids);
	w_free(w, n->text);
	w_free(w, n->name);
	w_free(w, n);
}

static NOINLINE char *read_body(struct worker *w, size_t *len)
{
	size_t n = rnd(w) % BIG_ONE_IN == 0 ? range(w, 8 << 10, 256 << 10) : range(w, 64, 4096);
	char *b = w_malloc(w, n);
	fill(b, n, n);
	*len = n;
	return b;
}

static NOINLINE struct request *parse_request(struct worker *w, const char *text, size_t len,
                                              uint64_t key)
{
	struct request *r = w_calloc(w, 1, sizeof(*r));
	const char *end = text + len;
	const char *sp = memchr(text, ' ', len);
	r->method = str_ndup(w, text, (size_t)(sp - text));
	const char *path = sp + 1;
	const char *sp2 = memchr(path, ' ', (size_t)(end - path));
	r->path = str_ndup(w, path, (size_t)(sp2 - path));
	r->key = key;
	const char *p = memchr(sp2, '\n', (size_t)(end - sp2)) + 1;
	parse_headers(w, r, p, end);
	r->body = read_body(w, &r->body_len);
	if (rnd(w) % 2 == 0)
		r->doc = parse_node(w, 0);
	return r;
}

static NOINLINE void request_free(struct worker *w, struct request *r)
{
	struct header *h = r->headers;
	while (h != NULL) {
		struct header *next = h->next;
		w_free(w, h->name);
		w_free(w, h->value);
		w_free(w, h);
		h = next;
	}
	if (r->doc != NULL)
		node_free(w, r->doc);
	w_free(w, r->body);
	w_free(w, r->method);
	w_free(w, r->path);
	w_free(w, r);
}

/* ---- the cache: a hash map of path -> value ---- */

static NOINLINE void cache_evict(struct worker *w)
{
	size_t b = (size_t)(rnd(w) % CACHE_BUCKETS);
	while (w->buckets[b] == NULL)
		b = (b + 1) % CACHE_BUCKETS;
	struct centry *e = w->buckets[b];
	w->buckets[b] = e->next;
	w_free(w, e->key);
	w_free(w, e->val);
	w_free(w, e);
	w->ncache--;
}

static NOINLINE struct centry *cache_insert(struct worker *w, const char *key, size_t klen,
                                            uint64_t h)
{
	if (w->ncache >= CACHE_MAX)
		cache_evict(w);
	struct centry *e = w_malloc(w, sizeof(*e));
	e->hash = h;
	e->key = str_ndup(w, key, klen);
	e->val_len = obj_size(w);
	e->val = w_malloc(w, e->val_len);
	fill(e->val, e->val_len, h);
	size_t b = (size_t)(h % CACHE_BUCKETS);
	e->next = w->buckets[b];
	w->buckets[b] = e;
	w->ncache++;
	return e;
}

static NOINLINE struct centry *cache_lookup(struct worker *w, const char *key, size_t klen)
{
	uint64_t h = hash_bytes(key, klen);
	for (struct centry *e = w->buckets[h % CACHE_BUCKETS]; e != NULL; e = e->next) {
		if (e->hash == h && strcmp(e->key, key) == 0) {
			if (rnd(w) % 4 == 0) {
				/* The value changed upstream: refresh it in place. */
				size_t n = obj_size(w);
				e->val = w_realloc(w, e->val, n);
				if (n > e->val_len)
					fill(e->val + e->val_len, n - e->val_len, h);
				e->val_len = n;
			}
			return e;
		}
	}
	struct centry *e = cache_insert(w, key, klen, h);
	KEEP_FRAME();
	return e;
}

static void cache_free(struct worker *w)
{
	for (size_t b = 0; b < CACHE_BUCKETS; b++) {
		while (w->buckets[b] != NULL) {
			struct centry *e = w->buckets[b];
			w->buckets[b] = e->next;
			w_free(w, e->key);
			w_free(w, e->val);
			w_free(w, e);
		}
	}
	w_free(w, w->buckets);
}

/* ---- the response ---- */

static NOINLINE char *render_response(struct worker *w, const struct request *r,
                                      const struct centry *e, size_t *len)
{
	struct strbuf sb = {0};
	sb_append(w, &sb, "HTTP/1.1 200 OK\r\n", 17);
	sb_appendf_u64(w, &sb, "Content-Length: ", e->val_len + r->body_len);
	sb_append(w, &sb, "\r\n\r\n", 4);
	/* Chunks of the value and the body, as a templating layer would. */
	size_t want = range(w, 256, 16 << 10), off = 0;
	while (sb.len < want) {
		size_t n = range(w, 32, 1024);
		int from_body = (int)(off++ & 1);
		const char *src = from_body ? r->body : e->val;
		size_t avail = from_body ? r->body_len : e->val_len;
		sb_append(w, &sb, src, n < avail ? n : avail);
	}
	*len = sb.len;
	return sb.p;
}

/* "Sends" the response: a checksum over all of it, word by word, standing
 * for the copy or compression a real service does with its output. */
static NOINLINE uint64_t send_response(const char *p, size_t n)
{
	uint64_t h = n, v;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		memcpy(&v, p + i, 8);
		h = (h ^ v) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
	return h;
}

/* ---- the queue between threads ---- */

static NOINLINE void queue_push(struct inbox *ib, struct qitem *q)
{
	pthread_mutex_lock(&ib->mu);
	q->next = ib->head;
	ib->head = q;
	pthread_mutex_unlock(&ib->mu);
}

static NOINLINE uint64_t queue_drain(struct worker *w, struct inbox *ib)
{
	pthread_mutex_lock(&ib->mu);
	struct qitem *q = ib->head;
	ib->head = NULL;
	pthread_mutex_unlock(&ib->mu);
	uint64_t s = 0;
	while (q != NULL) {
		struct qitem *next = q->next;
		s += q->len + (unsigned char)q->data[0];
		w_free(w, q);
		q = next;
	}
	return s;
}

static NOINLINE void log_request(struct worker *w, const struct request *r, size_t resp_len)
{
	size_t n = range(w, 48, 400);
	struct qitem *q = w_malloc(w, sizeof(*q) + n);
	int k = snprintf(q->data, n, "%s %s 200 %zu", r->method, r->path, resp_len);
	if ((size_t)k < n)
		memset(q->data + k, ' ', n - (size_t)k);
	q->len = n;
	queue_push(w->peer, q);
}

/* Now and then the response body goes to another thread (a writer pool). */
static NOINLINE void hand_off(struct worker *w, char *resp, size_t len)
{
	struct qitem *q = w_malloc(w, sizeof(*q) + len);
	memcpy(q->data, resp, len);
	q->len = len;
	queue_push(w->peer, q);
}

/* ---- one request, through a few layers ---- */

static NOINLINE void handle_request(struct worker *w)
{
	uint64_t key = pick_key(w);
	size_t tlen;
	char *text = build_request_text(w, key, &tlen);
	struct request *r = parse_request(w, text, tlen, key);
	struct centry *e = cache_lookup(w, r->path, strlen(r->path));
	size_t rlen;
	char *resp = render_response(w, r, e, &rlen);
	for (int pass = 0; pass < w->work; pass++)
		w->sum += send_response(resp, rlen);
	if (r->doc != NULL)
		w->sum += node_walk(r->doc);
	log_request(w, r, rlen);
	if (rnd(w) % 8 == 0)
		hand_off(w, resp, rlen < 2048 ? rlen : 2048);
	w_free(w, resp);
	request_free(w, r);
	w_free(w, text);
}

/* Middleware layers (auth, tracing, routing...): each one a frame. */
static NOINLINE void middleware(struct worker *w, int depth)
{
	if (depth <= 0)
		handle_request(w);
	else
		middleware(w, depth - 1);
	KEEP_FRAME();
}

static NOINLINE void serve_one(struct worker *w)
{
	w->sum += queue_drain(w, w->mine);
	middleware(w, w->depth);
	KEEP_FRAME();
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->buckets = w_calloc(w, CACHE_BUCKETS, sizeof(*w->buckets));
	for (uint64_t i = 0; i < w->iters; i++)
		serve_one(w);
	cache_free(w);
	return NULL;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f, "Usage: workload [-t THREADS] [-n ITERATIONS] [-d DEPTH] [-w WORK]\n"
	           "A malloc-heavy request-serving workload for overhead benchmarks.\n"
	           "  -t THREADS     worker threads (default 2)\n"
	           "  -n ITERATIONS  requests per thread (default 40000)\n"
	           "  -d DEPTH       extra middleware frames on every stack (default 4)\n"
	           "  -w WORK        passes over each response when sending it; 0 makes\n"
	           "                 the workload spend more of its time in malloc (default 1)\n"
	           "Prints one line: threads, iterations, depth, work, events (malloc, calloc,\n"
	           "realloc and free calls), allocs, releases, wall_s, checksum.\n");
}

static int parse_num(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	long threads = 2, iters = 40000, depth = 4, work = 1;
	int opt;

	while ((opt = getopt(argc, argv, "t:n:d:w:h")) != -1) {
		switch (opt) {
		case 't':
			if (parse_num(optarg, 1, 256, &threads) < 0)
				goto bad;
			break;
		case 'n':
			if (parse_num(optarg, 0, 1000000000L, &iters) < 0)
				goto bad;
			break;
		case 'd':
			if (parse_num(optarg, 0, 1000, &depth) < 0)
				goto bad;
			break;
		case 'w':
			if (parse_num(optarg, 0, 1000, &work) < 0)
				goto bad;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc)
		goto bad_arg;

	struct worker *ws = calloc((size_t)threads, sizeof(*ws));
	struct inbox *boxes = calloc((size_t)threads, sizeof(*boxes));
	if (ws == NULL || boxes == NULL) {
		fprintf(stderr, "workload: out of memory\n");
		return 1;
	}
	for (long i = 0; i < threads; i++) {
		pthread_mutex_init(&boxes[i].mu, NULL);
		ws[i].id = (int)i;
		ws[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ 0xd1b54a32d192ed03ull;
		ws[i].iters = (uint64_t)iters;
		ws[i].depth = (int)depth;
		ws[i].work = (int)work;
		ws[i].mine = &boxes[i];
		ws[i].peer = &boxes[(i + 1) % threads];
	}

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < threads; i++) {
		int rc = pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
		if (rc != 0) {
			fprintf(stderr, "workload: pthread_create: %s\n", strerror(rc));
			return 1;
		}
	}
	for (long i = 0; i < threads; i++)
		pthread_join(ws[i].th, NULL);
	/* What is still queued is freed here, so every block is freed once. */
	struct counts tot = {0};
	uint64_t sum = 0;
	for (long i = 0; i < threads; i++) {
		sum += queue_drain(&ws[i], &boxes[i]);
		tot.malloc += ws[i].c.malloc;
		tot.calloc += ws[i].c.calloc;
		tot.realloc += ws[i].c.realloc;
		tot.realloc_null += ws[i].c.realloc_null;
		tot.free += ws[i].c.free;
		sum += ws[i].sum;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	uint64_t events = tot.malloc + tot.calloc + tot.realloc + tot.free;
	uint64_t allocs = tot.malloc + tot.calloc + tot.realloc;
	uint64_t releases = tot.free + tot.realloc - tot.realloc_null;
	printf("workload threads=%ld iterations=%ld depth=%ld work=%ld events=%llu allocs=%llu "
	       "releases=%llu mallocs=%llu callocs=%llu reallocs=%llu frees=%llu wall_s=%.6f "
	       "checksum=%016llx\n",
	       threads, iters, depth, work, (unsigned long long)events, (unsigned long long)allocs,
	       (unsigned long long)releases, (unsigned long long)tot.malloc,
	       (unsigned long long)tot.calloc, (unsigned long long)tot.realloc,
	       (unsigned long long)tot.free, wall, (unsigned long long)sum);
	for (long i = 0; i < threads; i++)
		pthread_mutex_destroy(&boxes[i].mu);
	free(boxes);
	free(ws);
	return 0;

bad:
	fprintf(stderr, "workload: bad value '%s' for -%c\n", optarg, opt);
	usage(stderr);
	return 2;
bad_arg:
	fprintf(stderr, "workload: unexpected argument '%s'\n", argv[optind]);
	usage(stderr);
	return 2;
}
