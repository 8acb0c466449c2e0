/* drain.c - reading a traced process's shared region (see drain.h). */
#include "drain.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "bheap.h"
#include "fdsink.h"
#include "proto.h"
#include "xalloc.h"

/* Records merged in one round: bounds the scratch memory (8 MiB), which the
 * rings share in equal chunks. A round that leaves records below the
 * watermark behind is followed by another, until the caller's deadline (the
 * loop's callers give each drain a slice of milliseconds: agentsrv.c), or
 * up to DRAIN_ROUNDS per call without one (tests, fuzzing). */
#define DRAIN_BUDGET (1u << 18)
/* Records of a ring copied at once (128 KiB). */
#define DRAIN_CHUNK  (1u << 12)
#define DRAIN_ROUNDS 8

/* One ring in this round: its records below W are copied a chunk at a time
 * into recs[start .. start + chunk) and merged; when a chunk is used up the
 * next one is copied, so the merge never has to stop short of W for want of
 * room, however the sequence numbers are spread over the rings. */
struct drain_seg {
	uint32_t ring;
	uint64_t tail;     /* the ring's tail when read */
	uint64_t avail;    /* records it held then (head - tail) */
	uint64_t copied;   /* of them, copied so far, all below W */
	uint64_t last;     /* seq of the last record copied */
	bool at_w;         /* a record at or above W was met: no more to take */
	size_t start, n;   /* the chunk: recs[start .. start + n) */
	size_t pos;        /* next record of the chunk to merge */
	uint64_t next_seq; /* seq of recs[start + pos] */
};

/* The scratch a drain works in: the daemon's, or its own. */
#define SC(dr) ((dr)->scratch != NULL ? (dr)->scratch : &(dr)->own)

/* A temporary: an ALLOC and the FREE of the same address a few records
 * later in one ring, with no record between that names that address. When
 * the FREE falls in the ALLOC's run of the merge (round_run), nothing of
 * another ring comes between either, so the two are applied as a temporary
 * (heap_apply_temp_*): the same statistics, no slot taken and given back
 * in the block table. A
 * request loop's allocations are mostly such (in redis-server 98 % of the
 * frees are of a block allocated within the 16 records before). pair[] of
 * the ALLOC holds PAIR_ALLOC and the FREE's index, the FREE's PAIR_FREE and
 * the ALLOC's, and PAIR_COUNTED once the ALLOC counted its block. */
#define PAIR_ALLOC   (UINT32_C(1) << 31)
#define PAIR_FREE    (UINT32_C(1) << 30)
#define PAIR_COUNTED (UINT32_C(1) << 29)
/* An ALLOC (of a temporary) whose address was last named by a FREE of this
 * chunk: the block table holds no block there (it never holds two at one
 * address, and a FREE leaves none), so it need not look for one. */
#define PAIR_FRESH (UINT32_C(1) << 28)
/* On an ALLOC: its FREE comes before the ring's next ALLOC, so with every
 * allocation recorded the two apply at once (heap_apply_pair). On that
 * FREE: they did. */
#define PAIR_ADJ   (UINT32_C(1) << 27)
#define PAIR_FUSED PAIR_ADJ
#define PAIR_INDEX (PAIR_ADJ - 1)
/* The last ALLOC of each of this many address buckets is remembered. */
#define PAIR_BUCKETS 256

/* Records merged between two looks at the clock. */
#define DRAIN_CLOCK_EVERY 64
/* How many records of a ring ahead of the one applied the drain asks the
 * cache for the block table's slot (heap_prefetch). */
#define DRAIN_PREFETCH 8

/* The consumer fields of ring i in the shared mapping. */
#define RING_FIELD(dr, i, field)                                                                   \
	((void *)((dr)->map + SHM_OFF_RING(i) + offsetof(struct shm_ring, field)))

/*
 * A ring's control field, read once through the mapping (acquire: the
 * records below a head are in place). The records themselves are copied
 * with pread (copy_out). A load from a control page the agent punched out
 * faults it back in, charged to the daemon: at most SHM_NRINGS pages a
 * region at a time, once a read (docs/DESIGN.md, "Hostile memory"). Two
 * preads a ring made a read of a region of 1024 empty rings cost 2048
 * system calls, which a hostile agent could ask for with a WAKE every
 * millisecond.
 */
static inline uint64_t ring_u64(const struct drain *dr, uint32_t i, size_t field)
{
	return __atomic_load_n((const uint64_t *)(dr->map + SHM_OFF_RING(i) + field),
	                       __ATOMIC_ACQUIRE);
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int drain_open(struct drain *dr, int fd, const char **why)
{
	struct statfs sfs;
	struct stat st;
	struct shm_header h;

	memset(dr, 0, sizeof(*dr));
	dr->fd = -1;
	/* Named a memfd before anything asks its file system (a FUSE file's
	 * fstatfs would wait for its server). */
	if (!fd_is_memfd(fd) || fstatfs(fd, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC) {
		*why = "the shared memory is not a memfd";
		goto fail;
	}
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		*why = "the shared memory is not sealed against shrinking and growing";
		goto fail;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != SHM_SIZE) {
		*why = "the shared memory is not of the layout's size";
		goto fail;
	}
	if (pread_all(fd, &h, sizeof(h), 0) < 0 || h.magic != SHM_MAGIC ||
	    h.version != PROTO_VERSION) {
		*why = "the shared memory does not start with the layout's header";
		goto fail;
	}
	void *p = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		*why = "the shared memory cannot be mapped for writing";
		goto fail;
	}
	dr->fd = fd;
	dr->map = p;
	return 0;
fail:
	close(fd);
	return -EBADMSG;
}

void drain_scratch_free(struct drain_scratch *sc)
{
	free(sc->recs);
	free(sc->pair);
	free(sc->seg);
	free(sc->order);
	memset(sc, 0, sizeof(*sc));
}

size_t drain_scratch_memory(const struct drain_scratch *sc)
{
	return sc->recs_cap * (sizeof(*sc->recs) + sizeof(*sc->pair)) +
	       sc->seg_cap * (sizeof(*sc->seg) + sizeof(*sc->order));
}

int drain_release(struct drain *dr)
{
	int fd = dr->fd;

	if (dr->map != NULL)
		munmap(dr->map, SHM_SIZE);
	drain_scratch_free(&dr->own);
	dr->map = NULL;
	dr->fd = -1;
	return fd;
}

void drain_close(struct drain *dr)
{
	int fd = drain_release(dr);
	if (fd >= 0)
		close(fd);
}

size_t drain_memory(const struct drain *dr)
{
	return drain_scratch_memory(&dr->own);
}

uint64_t drain_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int read_u64(const struct drain *dr, uint64_t off, uint64_t *v)
{
	return pread_all(dr->fd, v, sizeof(*v), off);
}

bool drain_pending(struct drain *dr)
{
	uint64_t seq, lost;

	if (dr->fd < 0)
		return false;
	if (dr->behind)
		return true;
	if (read_u64(dr, offsetof(struct shm_header, seq), &seq) < 0 ||
	    read_u64(dr, offsetof(struct shm_header, lost), &lost) < 0)
		return false;
	return seq != dr->seq || lost != dr->lost;
}

/* Defines stack `id` in h from the region's stack table. */
static int define_stack(struct drain *dr, struct heap *h, uint32_t id, const char **why)
{
	struct {
		struct shm_stack hdr;
		uint64_t frames[PROTO_MAX_FRAMES];
	} e;
	uint8_t state;
	uint64_t off;

	if (id > SHM_STACK_CAP) {
		*why = "a record names a stack id past the table";
		return -EBADMSG;
	}
	if (pread_all(dr->fd, &state, 1, SHM_OFF_STATES + id) < 0 || state != SHM_STACK_READY ||
	    read_u64(dr, SHM_OFF_OFFSETS + 8 * (uint64_t)id, &off) < 0) {
		*why = "a record names a stack that is not in the table";
		return -EBADMSG;
	}
	if (off % 8 != 0 || off >= SHM_ARENA - sizeof(e.hdr)) {
		*why = "a stack's entry lies outside the table";
		return -EBADMSG;
	}
	size_t n = sizeof(e);
	if (n > SHM_ARENA - off)
		n = (size_t)(SHM_ARENA - off);
	if (pread_all(dr->fd, &e, n, SHM_OFF_ARENA + off) < 0 || e.hdr.nframes == 0 ||
	    e.hdr.nframes > PROTO_MAX_FRAMES || sizeof(e.hdr) + 8 * (size_t)e.hdr.nframes > n) {
		*why = "a stack's entry is malformed";
		return -EBADMSG;
	}
	if (heap_define_stack(h, id, e.frames, e.hdr.nframes) < 0) {
		*why = "a stack is defined twice";
		return -EBADMSG;
	}
	return 0;
}

static bool seg_less(const void *a, const void *b, void *ctx)
{
	const struct drain_seg *seg = ctx;
	return seg[*(const uint32_t *)a].next_seq < seg[*(const uint32_t *)b].next_seq;
}

/* Copies n bytes of the region at off into buf, with pread: it reads a
 * hole as zeros without allocating it. Not from the mapping, even when
 * mincore says every page is in memory: the agent can punch a hole between
 * the check and the copy (FALLOC_FL_PUNCH_HOLE), and the copy's fault then
 * allocates the page in the daemon's name (its memory cgroup), as often as
 * the agent wins the race, up to the region's 4 GiB of rings. */
static int copy_out(struct drain *dr, void *buf, size_t n, uint64_t off)
{
	return pread_all(dr->fd, buf, n, off);
}

/* Copies the records [tail, tail + n) of ring i into recs[at ..). */
static int copy_records(struct drain *dr, uint32_t i, uint64_t tail, size_t n, size_t at)
{
	struct drain_scratch *sc = SC(dr);
	uint64_t base = SHM_OFF_RING(i) + offsetof(struct shm_ring, ev);
	size_t first = (size_t)(tail % SHM_RING_CAP);
	size_t k = n < SHM_RING_CAP - first ? n : SHM_RING_CAP - first;

	if (copy_out(dr, sc->recs + at, k * sizeof(struct shm_ev),
	             base + first * sizeof(struct shm_ev)) < 0)
		return -EIO;
	if (k < n && copy_out(dr, sc->recs + at + k, (n - k) * sizeof(struct shm_ev), base) < 0)
		return -EIO;
	return 0;
}

/* Checks the chunk just copied into recs[sg->start ..), n records of ring
 * sg->ring, and finds its temporaries when `pairs` (see PAIR_ALLOC), in one
 * pass: sequence numbers must rise along the ring, and the chunk ends before
 * the first record numbered W or above (sg->at_w). Returns the records
 * kept, or -1 when the numbers do not rise.
 *
 * A FREE pairs with the last ALLOC of its bucket when that is of its
 * address: any record of that address between would have taken the bucket
 * (an ALLOC) or the pair (a FREE). A FORK ends every pair: the child's copy
 * of the heap must hold the block. fresh: the round reads this ring alone,
 * so PAIR_FRESH holds (with other rings, a record of theirs may come between
 * the FREE and the ALLOC). */
static inline __attribute__((always_inline)) long scan_records(struct drain_scratch *sc,
                                                               struct drain_seg *sg, size_t n,
                                                               uint64_t w, bool pairs, bool fresh)
{
	uint32_t last[PAIR_BUCKETS];  /* index + 1 of the bucket's last ALLOC, 0: none */
	uint64_t freed[PAIR_BUCKETS]; /* the address of the bucket's last FREE, 0: none */
	uint32_t last_alloc = 0;      /* index + 1 of the last ALLOC, 0: none */
	const struct shm_ev *recs = sc->recs;
	uint32_t *pair = sc->pair;
	size_t k, start = sg->start, end = start + n;
	/* Below every number: a ring's first record has no predecessor. */
	uint64_t prev = sg->copied > 0 ? sg->last : 0;

	if (pairs) {
		memset(last, 0, sizeof(last));
		memset(freed, 0, sizeof(freed));
	}
	for (k = start; k < end; k++) {
		const struct shm_ev *e = &recs[k];
		uint64_t seq = e->seq_kind >> PROTO_EV_KIND_BITS;
		if (seq <= prev && (k > start || sg->copied > 0))
			return -1;
		if (seq >= w) {
			sg->at_w = true;
			break;
		}
		prev = seq;
		if (!pairs)
			continue;
		unsigned kind = (unsigned)(e->seq_kind & PROTO_EV_KIND_MASK);
		size_t b = (size_t)((e->addr >> 4 ^ e->addr >> 12) % PAIR_BUCKETS);
		if (kind == PROTO_EV_ALLOC) {
			/* A FRESH mark stays on an ALLOC that pairs with no
			 * FREE: only pair[] of paired ALLOCs is read. */
			pair[k] = fresh && freed[b] == e->addr ? PAIR_FRESH : 0;
			freed[b] = freed[b] == e->addr ? 0 : freed[b];
			last[b] = last_alloc = (uint32_t)k + 1;
		} else if (kind == PROTO_EV_FREE) {
			uint32_t a = last[b];
			pair[k] = 0;
			if (a != 0 && recs[a - 1].addr == e->addr) {
				pair[a - 1] |=
				    PAIR_ALLOC | (uint32_t)k | (a == last_alloc ? PAIR_ADJ : 0);
				pair[k] = PAIR_FREE | (a - 1);
				last[b] = 0;
			}
			freed[b] = e->addr;
		} else {
			pair[k] = 0;
			memset(last, 0, sizeof(last));
			memset(freed, 0, sizeof(freed));
			last_alloc = 0;
		}
	}
	sg->last = prev;
	return (long)(k - start);
}

/* Copies the next chunk of a ring's records below w (none, sg->n == 0, when
 * the ring has no more), and finds its temporaries when `pairs` (with
 * PAIR_FRESH marks when the round reads this ring alone). */
static int fill(struct drain *dr, struct drain_seg *sg, uint64_t w, size_t chunk, bool pairs,
                bool alone, const char **why)
{
	struct drain_scratch *sc = SC(dr);
	uint64_t left = sg->avail - sg->copied;
	size_t n = left < chunk ? (size_t)left : chunk, k;

	sg->n = sg->pos = 0;
	if (n == 0 || sg->at_w)
		return 0;
	if (copy_records(dr, sg->ring, sg->tail + sg->copied, n, sg->start) < 0) {
		*why = "the shared memory cannot be read";
		return -EBADMSG;
	}
	/* Each a loop of its own, the test of `pairs` out of it. */
	long kept = pairs ? scan_records(sc, sg, n, w, true, alone)
	                  : scan_records(sc, sg, n, w, false, alone);
	if (kept < 0) {
		*why = "sequence numbers do not rise along a ring";
		return -EBADMSG;
	}
	k = (size_t)kept;
	sg->n = k;
	sg->copied += k;
	if (k > 0)
		sg->next_seq = sc->recs[sg->start].seq_kind >> PROTO_EV_KIND_BITS;
	return 0;
}

/* Scratch for `n` records: it grows with what a read finds, not with what
 * the budget allows, so an idle process costs nothing here. */
static void need_recs(struct drain *dr, size_t n)
{
	struct drain_scratch *sc = SC(dr);
	if (n > sc->recs_peak)
		sc->recs_peak = n;
	if (sc->recs_cap >= n)
		return;
	size_t cap = sc->recs_cap ? sc->recs_cap : 1024;
	while (cap < n)
		cap *= 2;
	if (cap > DRAIN_BUDGET)
		cap = DRAIN_BUDGET;
	sc->recs = xreallocarray(sc->recs, cap, sizeof(*sc->recs));
	sc->pair = xreallocarray(sc->pair, cap, sizeof(*sc->pair));
	sc->recs_cap = cap;
}

static void grow(struct drain *dr, uint32_t nrings)
{
	struct drain_scratch *sc = SC(dr);
	if (sc->seg_cap < nrings) {
		sc->seg_cap = nrings;
		sc->seg = xreallocarray(sc->seg, nrings, sizeof(*sc->seg));
		sc->order = xreallocarray(sc->order, nrings, sizeof(*sc->order));
	}
}

/* Gives ring s->ring the space of the records merged from it back, and
 * wakes the threads that wait for it. */
static void release(struct drain *dr, const struct drain_seg *s)
{
	uint64_t merged = s->copied - s->n + s->pos;

	if (merged == 0)
		return;
	__atomic_store_n((uint64_t *)RING_FIELD(dr, s->ring, tail), s->tail + merged,
	                 __ATOMIC_RELEASE);
	__atomic_store_n((uint32_t *)RING_FIELD(dr, s->ring, wake_sent), 0, __ATOMIC_RELAXED);
	/* The tail before the waiters: a thread that counted itself in after
	 * this load sees the new tail before it sleeps (reserve_full). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n((uint32_t *)RING_FIELD(dr, s->ring, waiters), __ATOMIC_RELAXED) != 0) {
		uint32_t *futex = RING_FIELD(dr, s->ring, tail_futex);
		__atomic_fetch_add(futex, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, futex, FUTEX_WAKE, 1 << 30, NULL, NULL, 0);
	}
}

/* A round that stops between a temporary's ALLOC and its FREE: the block
 * takes its slot (the FREE comes again in the next round, on its own). A
 * temporary ends within its run (apply_record), so the ALLOCs still open
 * are those of sg, the ring of the run the round stopped in, before pos. */
static void keep_temporaries(struct drain *dr, struct heap *h, const struct drain_seg *sg)
{
	struct drain_scratch *sc = SC(dr);
	if (sg == NULL || (h->temps == 0 && dr->fused_open == 0))
		return;
	size_t end = sg->start + sg->pos;
	for (size_t k = end; k-- > sg->start && (h->temps > 0 || dr->fused_open > 0);) {
		uint32_t pr = sc->pair[k];
		if ((pr & PAIR_ALLOC) && (pr & PAIR_INDEX) >= end &&
		    (sc->pair[pr & PAIR_INDEX] & PAIR_COUNTED)) {
			const struct shm_ev *a = &sc->recs[k];
			uint32_t fr = sc->pair[pr & PAIR_INDEX];
			if (fr & PAIR_FUSED) {
				heap_pair_unfuse(h, a->addr, a->size, a->stack,
				                 sc->recs[pr & PAIR_INDEX].size != 0);
				dr->fused_open--;
			} else
				heap_temp_keep(h, a->addr, a->size, a->stack);
			dr->temporaries_kept++;
		}
	}
}

/* Applies record `at` of the scratch (pr: its pair[] entry, 0 when the
 * round pairs nothing; fast: PAIR_ALLOC | PAIR_FREE when pairs may take the
 * short way, else 0) in a run that ends below `bound` (round_run); work
 * counts what it cost. */
static inline int apply_record(struct drain *dr, struct drain_scratch *sc, struct heap *h,
                               size_t at, uint32_t pr, uint32_t fast, uint64_t bound,
                               unsigned *work, const char **why)
{
	struct shm_ev *rec = &sc->recs[at];
	struct proto_event ev;

	/* A temporary's records, the common case first (heap_temp_alloc_fast);
	 * anything it does not take goes the general way below. */
	if (pr & (PAIR_ALLOC | PAIR_FREE) & fast) {
		uint64_t sk = rec->seq_kind, seq = sk >> PROTO_EV_KIND_BITS;
		unsigned kind = (unsigned)(sk & PROTO_EV_KIND_MASK);
		uint32_t *fp = &sc->pair[pr & PAIR_INDEX]; /* the partner's entry */
		const struct shm_ev *o = &sc->recs[pr & PAIR_INDEX];
		if ((pr & PAIR_ALLOC) && kind == PROTO_EV_ALLOC && rec->addr != 0 &&
		    o->seq_kind >> PROTO_EV_KIND_BITS < bound) {
			if (!(pr & PAIR_ADJ)) {
				if (heap_temp_alloc_fast(h, seq, rec->addr, rec->size, rec->stack,
				                         pr & PAIR_FRESH)) {
					*fp |= PAIR_COUNTED;
					dr->temporaries++;
					return 0;
				}
			} else if (o->size <= PROTO_FREE_TEMPORARY &&
			           heap_pair_fast(h, seq, rec->addr, rec->size, rec->stack,
			                          pr & PAIR_FRESH, o->size != 0)) {
				*fp |= PAIR_FUSED | PAIR_COUNTED;
				dr->fused_open++;
				dr->temporaries++;
				return 0;
			}
		} else if ((pr & PAIR_FREE) && (pr & PAIR_COUNTED) && kind == PROTO_EV_FREE &&
		           rec->addr != 0 && rec->size <= PROTO_FREE_TEMPORARY) {
			if (!(pr & PAIR_FUSED)) {
				if (heap_temp_free_fast(h, seq, o->size, o->stack, rec->size != 0))
					return 0;
			} else if (heap_pair_free_fast(h, seq)) {
				dr->fused_open--;
				return 0;
			}
		}
	}
	if (proto_record_decode(rec, &ev) < 0) {
		*why = "a record is malformed";
		return -1;
	}
	if (ev.kind == PROTO_EV_ALLOC && ev.stack_id != 0 &&
	    !heap_stack_at(h, ev.stack_id)->defined && !(h->limit_reached & HEAP_LIMIT_STACKS)) {
		*work += 8;
		if (define_stack(dr, h, ev.stack_id, why) < 0)
			return -1;
	}
	if (ev.kind == PROTO_EV_FORK) {
		if (ev.seq <= h->last_seq)
			goto out_of_order;
		h->last_seq = ev.seq;
		if (dr->on_fork != NULL)
			dr->on_fork(dr->fork_arg, ev.seq);
		*work += DRAIN_CLOCK_EVERY;
	} else if ((pr & PAIR_ALLOC) &&
	           sc->recs[pr & PAIR_INDEX].seq_kind >> PROTO_EV_KIND_BITS >= bound) {
		/* Its FREE comes after a record of another ring may have
		 * named the address: the two go through the table. */
		sc->pair[pr & PAIR_INDEX] = 0;
		if (heap_apply(h, &ev) < 0)
			goto out_of_order;
	} else if (pr & PAIR_ALLOC) {
		uint32_t stack, *fp = &sc->pair[pr & PAIR_INDEX];
		uint64_t fsize = sc->recs[pr & PAIR_INDEX].size; /* the FREE's */
		int counted;
		/* A FREE record that is malformed fails in its turn. */
		if ((pr & PAIR_ADJ) && h->sample_bytes == 0 && fsize <= PROTO_FREE_TEMPORARY) {
			counted = heap_apply_pair(h, &ev, pr & PAIR_FRESH, fsize != 0, &stack);
			*fp |= PAIR_FUSED;
			dr->fused_open += counted > 0;
		} else {
			counted = heap_apply_temp_alloc(h, &ev, pr & PAIR_FRESH, &stack);
		}
		if (counted < 0)
			goto out_of_order;
		rec->stack = stack; /* what its free takes back */
		if (counted)
			*fp |= PAIR_COUNTED;
		dr->temporaries++;
	} else if ((pr & PAIR_FREE) && (pr & PAIR_FUSED)) {
		if (heap_apply_pair_free(h, ev.seq, pr & PAIR_COUNTED) < 0)
			goto out_of_order;
		dr->fused_open -= (pr & PAIR_COUNTED) != 0;
	} else if (pr & PAIR_FREE) {
		const struct shm_ev *a = &sc->recs[pr & PAIR_INDEX];
		if (heap_apply_temp_free(h, ev.seq, a->size, a->stack, pr & PAIR_COUNTED,
		                         ev.temporary) < 0)
			goto out_of_order;
	} else if (heap_apply(h, &ev) < 0) {
		goto out_of_order;
	}
	return 0;
out_of_order:
	*why = "records out of sequence order";
	return -1;
}

/* One round of at most `cap` records (and until deadline_ns, when not 0):
 * returns records applied, and sets *more when records below the watermark
 * were left for another round. */
static long round_run(struct drain *dr, struct heap *h, bool final, uint64_t deadline_ns, long cap,
                      bool *more, const char **why)
{
	struct drain_scratch *sc = SC(dr);
	uint64_t seq, w;
	uint32_t nrings;
	size_t nseg = 0, live = 0, chunk;
	long applied = 0;

	*more = false;
	/* The counter first: a ring handed out after nrings is read takes its
	 * first number after this value (ring.h). */
	if (read_u64(dr, offsetof(struct shm_header, seq), &seq) < 0 ||
	    pread_all(dr->fd, &nrings, sizeof(nrings), offsetof(struct shm_header, nrings)) < 0) {
		*why = "the shared memory cannot be read";
		return -EBADMSG;
	}
	if (nrings > SHM_NRINGS)
		nrings = SHM_NRINGS;
	/* The counter before the rings' pending fields, which are loads from
	 * the mapping (seq_take publishes pending before it takes a number). */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	grow(dr, nrings);
	dr->nrings = nrings;
	dr->seq = seq;
	/* W: every record numbered below it is in a ring by now. */
	w = final ? UINT64_MAX : seq;
	for (uint32_t i = 0; i < nrings && !final; i++) {
		uint64_t pending = ring_u64(dr, i, offsetof(struct shm_ring, pending));
		if (pending < w)
			w = pending;
	}
	/* A number below the counter not in a ring yet: once it lands, the
	 * counter need not move, yet there is something to read. */
	dr->behind = w < seq;
	/* The rings that hold records. */
	for (uint32_t i = 0; i < nrings; i++) {
		uint64_t head = ring_u64(dr, i, offsetof(struct shm_ring, head));
		uint64_t tail = ring_u64(dr, i, offsetof(struct shm_ring, tail));
		uint32_t waiters =
		    __atomic_load_n((uint32_t *)RING_FIELD(dr, i, waiters), __ATOMIC_RELAXED);
		if (head - tail > SHM_RING_CAP) {
			*why = "a ring holds more records than it has room for";
			return -EBADMSG;
		}
		if (head - tail > dr->fullest)
			dr->fullest = head - tail;
		if (waiters != 0)
			dr->waiting = true;
		if (head == tail)
			continue;
		struct drain_seg *sg = &sc->seg[nseg++];
		memset(sg, 0, sizeof(*sg));
		sg->ring = i;
		sg->tail = tail;
		sg->avail = head - tail;
	}
	if (nseg == 0)
		return 0;
	/* Each ring its share of the scratch, its first chunk copied; a chunk
	 * small enough that the copy, the pairing and the merge find it in
	 * the cache. */
	chunk = DRAIN_BUDGET / nseg;
	if (chunk > DRAIN_CHUNK)
		chunk = DRAIN_CHUNK;
	uint64_t most = 0;
	for (size_t k = 0; k < nseg; k++)
		if (sc->seg[k].avail > most)
			most = sc->seg[k].avail;
	if (most < chunk)
		chunk = (size_t)most;
	need_recs(dr, nseg * chunk);
	/* Within a run (below) nothing of another ring comes between a
	 * temporary's two records. */
	bool pairs = !dr->no_pairs, alone = nseg == 1;
	/* The pair bits the short way looks at (none: the tests' no_fast). */
	uint32_t fast = dr->no_fast ? 0 : PAIR_ALLOC | PAIR_FREE;
	struct drain_seg *run = NULL; /* the ring of the run going on */
	for (size_t k = 0; k < nseg; k++) {
		struct drain_seg *sg = &sc->seg[k];
		sg->start = k * chunk;
		if (fill(dr, sg, w, chunk, pairs, alone, why) < 0)
			return -EBADMSG;
		if (sg->n > 0)
			sc->order[live++] = (uint32_t)k;
	}
	bheap_make(sc->order, live, sizeof(*sc->order), seg_less, sc->seg);
	/* The clock is read every DRAIN_CLOCK_EVERY units of work: a record is
	 * one, a stack defined (a read of its frames) 8, a FORK record (a copy
	 * of the heap) a whole period. */
	unsigned work = 0;
	while (live > 0) {
		/* The top ring's records below the runner-up's next one go in
		 * a run, with no sift between them. */
		struct drain_seg *sg = run = &sc->seg[sc->order[0]];
		uint64_t bound = UINT64_MAX;
		for (size_t c = 1; c <= 2 && c < live; c++)
			if (sc->seg[sc->order[c]].next_seq < bound)
				bound = sc->seg[sc->order[c]].next_seq;
		/* The chunk's place in locals: apply_record writes through
		 * pointers, and the compiler would read sg's fields again after
		 * each record. sg->pos is stored back before anything reads it
		 * (fill, keep_temporaries). */
		size_t pos = sg->pos, n = sg->n;
		const struct shm_ev *recs = sc->recs + sg->start;
		const uint32_t *pair = sc->pair + sg->start;
		/* Worth asking the cache for what a record ahead needs (a
		 * table that grows meanwhile is seen at the next run). */
		bool prefetch =
		    h->tab.cap > HEAP_PREFETCH_MIN_CAP || h->nstacks > HEAP_PREFETCH_MIN_STACKS;
		for (;;) {
			if (applied >= cap) {
				sg->pos = pos;
				*more = true;
				goto done;
			}
			if (__builtin_expect(work >= DRAIN_CLOCK_EVERY, 0)) {
				work = 0;
				if (deadline_ns != 0 && drain_now_ns() >= deadline_ns) {
					sg->pos = pos;
					*more = true;
					goto done;
				}
			}
			work++;
			if (prefetch && pos + DRAIN_PREFETCH < n) {
				const struct shm_ev *ahead = &recs[pos + DRAIN_PREFETCH];
				if (h->tab.cap > HEAP_PREFETCH_MIN_CAP)
					heap_prefetch(h, ahead->addr);
				if (h->nstacks > HEAP_PREFETCH_MIN_STACKS &&
				    (ahead->seq_kind & PROTO_EV_KIND_MASK) == PROTO_EV_ALLOC)
					heap_prefetch_stack(h, ahead->stack);
			}
			if (apply_record(dr, sc, h, sg->start + pos, pairs ? pair[pos] : 0, fast,
			                 bound, &work, why) < 0) {
				sg->pos = pos;
				goto out_bad;
			}
			applied++;
			if (++pos == n) {
				sg->pos = pos;
				if (fill(dr, sg, w, chunk, pairs, alone, why) < 0)
					goto out_bad;
				if (sg->n == 0)
					break;
				pos = sg->pos;
				n = sg->n;
			}
			uint64_t next = recs[pos].seq_kind >> PROTO_EV_KIND_BITS;
			if (next >= bound) {
				sg->pos = pos;
				sg->next_seq = next;
				break;
			}
		}
		if (sg->n == 0)
			sc->order[0] = sc->order[--live];
		bheap_sift_down(sc->order, live, sizeof(*sc->order), 0, seg_less, sc->seg);
	}
done:
	keep_temporaries(dr, h, run);
	dr->fused_open = 0;
	for (size_t i = 0; i < nseg; i++)
		release(dr, &sc->seg[i]);
	return applied;
out_bad:
	keep_temporaries(dr, h, run);
	dr->fused_open = 0;
	for (size_t i = 0; i < nseg; i++)
		release(dr, &sc->seg[i]);
	return -EBADMSG;
}

long drain_run(struct drain *dr, struct heap *h, bool final, const char **why)
{
	return drain_run_until(dr, h, final, 0, why);
}

/* Records that final drains take at most, in all. */
#define DRAIN_FINAL_MAX ((uint64_t)SHM_NRINGS * SHM_RING_CAP + DRAIN_BUDGET)

long drain_run_until(struct drain *dr, struct heap *h, bool final, uint64_t deadline_ns,
                     const char **why)
{
	struct drain_scratch *sc = SC(dr);
	long total = 0;
	uint64_t v;

	if (dr->fd < 0)
		return 0;
	dr->behind = false;
	dr->cut = false;
	dr->fullest = 0;
	dr->waiting = false;
	/* Without a deadline a live drain takes DRAIN_ROUNDS rounds at most
	 * (the timer comes back for the rest); with one, rounds until it. */
	for (int r = 0;; r++) {
		bool more;
		long cap = DRAIN_BUDGET;
		if (final) {
			if (dr->final_taken >= DRAIN_FINAL_MAX)
				break; /* written to after the end: the rest is ignored */
			if (DRAIN_FINAL_MAX - dr->final_taken < (uint64_t)cap)
				cap = (long)(DRAIN_FINAL_MAX - dr->final_taken);
		}
		long n = round_run(dr, h, final, deadline_ns, cap, &more, why);
		if (n < 0)
			return n;
		total += n;
		if (final)
			dr->final_taken += (uint64_t)n;
		if (!more || n == 0)
			break;
		if ((deadline_ns == 0 && !final && r == DRAIN_ROUNDS - 1) ||
		    (deadline_ns != 0 && drain_now_ns() >= deadline_ns)) {
			dr->behind = dr->cut = true; /* records left: come back */
			break;
		}
	}
	/* A quiet spell gives the scratch back. */
	if (sc->recs_cap > 4096 && sc->recs_peak < sc->recs_cap / 8) {
		free(sc->recs);
		sc->recs = NULL;
		sc->recs_cap = 0;
	}
	sc->recs_peak = 0;
	if (read_u64(dr, offsetof(struct shm_header, lost), &v) == 0 && v > dr->lost)
		dr->lost = v;
	if (read_u64(dr, offsetof(struct shm_header, nostack), &v) == 0 && v > dr->nostack)
		dr->nostack = v;
	if (read_u64(dr, offsetof(struct shm_header, lost_allocs), &v) == 0 && v > dr->lost_allocs)
		dr->lost_allocs = v;
	if (read_u64(dr, offsetof(struct shm_header, lost_bytes), &v) == 0 && v > dr->lost_bytes)
		dr->lost_bytes = v;
	if (read_u64(dr, offsetof(struct shm_header, lost_frees), &v) == 0 && v > dr->lost_frees)
		dr->lost_frees = v;
	uint32_t gave_up;
	if (pread_all(dr->fd, &gave_up, sizeof(gave_up), offsetof(struct shm_header, gave_up)) ==
	        0 &&
	    gave_up != 0)
		dr->gave_up = true;
	uint32_t exiting;
	if (pread_all(dr->fd, &exiting, sizeof(exiting), offsetof(struct shm_header, exiting)) == 0)
		dr->exiting = exiting != 0;
	return total;
}
