/*
 * threads.c - blocks allocated in one thread and freed in another while the
 * allocator reuses their addresses.
 *
 * NTHREADS threads form a ring: each allocates blocks at two sites
 * (produce_small, below glibc's tcache limit, and produce_large, above it)
 * and hands them to the next thread through a queue; each thread frees what
 * it receives. A freed small block lands in the freeing thread's tcache and
 * is handed out again to that thread; a freed large block goes back to the
 * producer's arena and is handed out again to the producer. Either way an
 * address is freed by one thread and allocated again by another, and only
 * the global sequence number the agent stamps on each event tells the daemon
 * which came first. The program counts such cross-thread reuses itself
 * (meta "cross_thread_reuse") so the test can insist the case really
 * happened.
 *
 * A known set stays alive: every received block whose serial number is a
 * multiple of KEEP_EVERY is kept (still owned by its producing site), and each
 * thread allocates a few blocks at thread_keep. After the threads join, the
 * program writes its book and prints "ready"; "next" runs phase 2 (below)
 * and says "ready" again; "exit" frees everything.
 * Every allocation and free is booked (truth.h is thread-safe and never
 * allocates); the queues and tables are static arrays.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* Not clang-formatted: an allocation call and its TRUTH_ALLOC share one source
 * line on purpose (the book's line must be the call's line), and
 * clang-format would split them. */
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "truth.h"

#define NTHREADS 4
#define ROUNDS 1500
#define PER_ROUND 8 /* blocks a thread produces per round */
#define KEEP_EVERY 97
#define QCAP 1024
#define MAX_KEPT (NTHREADS * ROUNDS * PER_ROUND / KEEP_EVERY / NTHREADS + 16)

struct blk {
	void *p;
	size_t n;
	int rec;
	unsigned serial;
};

struct queue {
	pthread_mutex_t mu;
	struct blk items[QCAP];
	unsigned head, tail; /* head - tail = items queued */
};

struct worker {
	int id;
	pthread_t th;
	struct queue q; /* blocks sent to this worker */
	unsigned received;
	struct blk kept[MAX_KEPT];
	int nkept;
	struct blk mine[8];
};

static struct worker workers[NTHREADS];

/* Who allocated each address last, to count cross-thread reuse. */
#define OWN_SLOTS (1u << 16)
static struct {
	uintptr_t addr;
	int owner;
} owners[OWN_SLOTS];
static char owners_lock;
static long long cross_reuse;

static void note_owner(void *p, int me)
{
	uintptr_t a = (uintptr_t)p;
	unsigned h = (unsigned)((a >> 4) * 2654435761u) & (OWN_SLOTS - 1);

	while (__atomic_test_and_set(&owners_lock, __ATOMIC_ACQUIRE))
		sched_yield();
	for (unsigned k = 0; k < OWN_SLOTS; k++, h = (h + 1) & (OWN_SLOTS - 1)) {
		if (owners[h].addr == a) {
			if (owners[h].owner != me)
				cross_reuse++;
			owners[h].owner = me;
			break;
		}
		if (owners[h].addr == 0) {
			owners[h].addr = a;
			owners[h].owner = me;
			break;
		}
	}
	__atomic_clear(&owners_lock, __ATOMIC_RELEASE);
}

static void check(void *p)
{
	if (p == NULL) {
		errno = ENOMEM;
		truth_die("allocation failed");
	}
}

static struct blk produce_small(int me, unsigned serial)
{
	struct blk b;
	b.n = 24 + (serial * 7) % 200;
	b.p = malloc(b.n); b.rec = TRUTH_ALLOC(b.n);
	check(b.p);
	memset(b.p, me, b.n);
	b.serial = serial;
	note_owner(b.p, me);
	return b;
}

static struct blk produce_large(int me, unsigned serial)
{
	struct blk b;
	b.n = 1100 + (serial * 13) % 3000;
	b.p = malloc(b.n); b.rec = TRUTH_ALLOC(b.n);
	check(b.p);
	memset(b.p, me, b.n);
	b.serial = serial;
	note_owner(b.p, me);
	return b;
}

static void thread_keep(struct worker *w)
{
	for (int i = 0; i < 8; i++) {
		struct blk *b = &w->mine[i];
		b->n = 64 + (size_t)w->id;
		b->p = malloc(b->n); b->rec = TRUTH_ALLOC(b->n);
		check(b->p);
		note_owner(b->p, w->id);
	}
}

static void consume(struct worker *w, struct blk b)
{
	w->received++;
	if (b.serial % KEEP_EVERY == 0) {
		if (w->nkept == MAX_KEPT) {
			errno = ENOSPC;
			truth_die("kept list full");
		}
		w->kept[w->nkept++] = b;
		return;
	}
	free(b.p);
	truth_adjust(b.rec, -(long long)b.n, -1);
}

/* Frees (or keeps) whatever is queued for w; returns how many it took. */
static int drain(struct worker *w)
{
	struct blk batch[64];
	int n = 0;

	pthread_mutex_lock(&w->q.mu);
	while (w->q.head != w->q.tail && n < 64)
		batch[n++] = w->q.items[w->q.tail++ % QCAP];
	pthread_mutex_unlock(&w->q.mu);
	for (int i = 0; i < n; i++)
		consume(w, batch[i]);
	return n;
}

static void send_to(struct worker *me, struct worker *to, struct blk b)
{
	for (;;) {
		pthread_mutex_lock(&to->q.mu);
		if (to->q.head - to->q.tail < QCAP) {
			to->q.items[to->q.head++ % QCAP] = b;
			pthread_mutex_unlock(&to->q.mu);
			return;
		}
		pthread_mutex_unlock(&to->q.mu);
		if (drain(me) == 0)
			sched_yield();
	}
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;
	struct worker *next = &workers[(w->id + 1) % NTHREADS];
	unsigned serial = (unsigned)w->id * ROUNDS * PER_ROUND;
	struct blk b;

	for (int r = 0; r < ROUNDS; r++) {
		for (int k = 0; k < PER_ROUND; k++, serial++) {
			if (k % 2 == 0)
				TRUTH_CALL(b = produce_small(w->id, serial));
			else
				TRUTH_CALL(b = produce_large(w->id, serial));
			send_to(w, next, b);
		}
		drain(w);
	}
	while (w->received < ROUNDS * PER_ROUND) {
		if (drain(w) == 0) {
			struct timespec ts = { 0, 100000 };
			nanosleep(&ts, NULL);
		}
	}
	TRUTH_CALL(thread_keep(w));
	return NULL;
}

/*
 * Phase 2: short-lived threads. Each frees a block main allocated for it
 * (give_gift), allocates SHORT_BLOCKS blocks at short_alloc and exits; main
 * frees half of those after the join. The blocks outlive the threads that
 * allocated them, and frees reach the daemon from threads that are gone.
 */
#define SHORT_THREADS 64
#define SHORT_BATCH 8
#define SHORT_BLOCKS 16
static struct blk shorts[SHORT_THREADS][SHORT_BLOCKS];
static struct blk gifts[SHORT_THREADS];

static void give_gift(int i)
{
	gifts[i].n = 300 + (size_t)i;
	gifts[i].p = malloc(gifts[i].n); gifts[i].rec = TRUTH_ALLOC(gifts[i].n);
	check(gifts[i].p);
}

static void short_alloc(int i)
{
	for (int k = 0; k < SHORT_BLOCKS; k++) {
		struct blk *b = &shorts[i][k];
		b->n = 40 + (size_t)k;
		b->p = malloc(b->n); b->rec = TRUTH_ALLOC(b->n);
		check(b->p);
	}
}

static void *short_main(void *arg)
{
	int i = (int)(intptr_t)arg;

	free(gifts[i].p);
	truth_adjust(gifts[i].rec, -(long long)gifts[i].n, -1);
	TRUTH_CALL(short_alloc(i));
	return NULL;
}

static void short_lived(void)
{
	for (int base = 0; base < SHORT_THREADS; base += SHORT_BATCH) {
		pthread_t th[SHORT_BATCH];
		for (int j = 0; j < SHORT_BATCH; j++) {
			TRUTH_CALL(give_gift(base + j));
			if (pthread_create(&th[j], NULL, short_main, (void *)(intptr_t)(base + j)) != 0)
				truth_die("pthread_create");
		}
		for (int j = 0; j < SHORT_BATCH; j++)
			pthread_join(th[j], NULL);
		for (int j = 0; j < SHORT_BATCH; j++)
			for (int k = 1; k < SHORT_BLOCKS; k += 2) {
				struct blk *b = &shorts[base + j][k];
				free(b->p);
				truth_adjust(b->rec, -(long long)b->n, -1);
				b->p = NULL;
			}
	}
}

int main(void)
{
	char cmd[64];

	for (int i = 0; i < NTHREADS; i++) {
		workers[i].id = i;
		pthread_mutex_init(&workers[i].q.mu, NULL);
	}
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&workers[i].th, NULL, thread_main, &workers[i]) != 0)
			truth_die("pthread_create");
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(workers[i].th, NULL);
	truth_meta("cross_thread_reuse", cross_reuse);
	truth_meta("threads", NTHREADS);
	truth_ready();
	if (strcmp(truth_wait(cmd, sizeof cmd), "next") == 0) {
		TRUTH_CALL(short_lived());
		truth_ready();
		truth_wait(cmd, sizeof cmd);
	}
	for (int i = 0; i < SHORT_THREADS; i++)
		for (int k = 0; k < SHORT_BLOCKS; k += 2) {
			struct blk *b = &shorts[i][k];
			free(b->p);
			if (b->p != NULL)
				truth_adjust(b->rec, -(long long)b->n, -1);
		}
	for (int i = 0; i < NTHREADS; i++) {
		struct worker *w = &workers[i];
		for (int k = 0; k < w->nkept; k++) {
			free(w->kept[k].p);
			truth_adjust(w->kept[k].rec, -(long long)w->kept[k].n, -1);
		}
		for (int k = 0; k < 8; k++) {
			free(w->mine[k].p);
			truth_adjust(w->mine[k].rec, -(long long)w->mine[k].n, -1);
		}
	}
	truth_write();
	return 0;
}
