/*
 * truth.h - the ground truth a traced test program keeps about itself.
 *
 * The end-to-end tests (tests/e2e) must compare what memtrace reports with
 * what the program really did, never with memtrace's own output. So every
 * test program books each allocation it makes: the allocation site (file,
 * line, function), the chain of calls that led there, and the bytes and
 * blocks it *still holds* from that site. Before it says "ready" it writes
 * that book to the file named by MEMTRACE_TRUTH, and the harness parses it.
 *
 * How a program books an allocation: the allocation call and TRUTH_ALLOC go
 * on the same source line, so __LINE__ is the line the debug information
 * gives for the call's return address:
 *
 *     p = malloc(100); rec = TRUTH_ALLOC(100);
 *     ...
 *     free(p); truth_adjust(rec, -100, -1);
 *
 * Call chains are booked the same way: TRUTH_CALL(f()) notes the caller's
 * file, line and function on the calling line, for the duration of the call,
 * in a per-thread stack. A record is the site plus that chain, so the harness
 * can check `--key traceback` and `--cumulative` as well as `--key lineno`.
 *
 * The book must not disturb what it describes: nothing here allocates
 * (fixed static tables, snprintf into stack buffers, raw read(2)/write(2)
 * instead of stdio, whose buffers are malloc'ed by libc), and it is safe from
 * several threads (a spin lock around the table). It is header-only and
 * compiles as C (gnu11) and C++ (g++), so it uses __thread and the __atomic
 * builtins rather than C11 <threads.h>/<stdatomic.h>.
 *
 * File format, one item per line, fields separated by tabs:
 *     truth	1
 *     pid	<pid>
 *     meta	<name>	<integer>
 *     rec	<bytes>	<count>	<flags>	<nframes>	<file>	<line>	<func> ...
 *     churn	<allocations>	<allocated>	<temporary>
 *     end
 * Each rec is followed by its churn line: the allocations booked at it since
 * the program began (TRUTH_ALLOC counts one, with its bytes) and how many of
 * them the program freed as temporaries (truth_temporary: before the
 * thread's next allocation).
 * A rec's frames are most recent call first (the site, then its callers),
 * as memtrace prints a traceback. flags is "-" or "opt": an optional record
 * (blocks a forked child inherited from its parent) may be absent from the
 * child's statistics but must be exact when present. The file is written to
 * a temporary name and renamed, so a reader never sees half of it; "end"
 * proves it is complete.
 *
 * Protocol with the harness: truth_ready() writes the book and prints
 * "ready\n" on stdout; truth_wait() then reads one command line from stdin
 * ("next", "exit"; end of file reads as "exit").
 */
#ifndef MEMTRACE_TRUTH_H
#define MEMTRACE_TRUTH_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRUTH_MAX_RECS  128
#define TRUTH_MAX_DEPTH 8
#define TRUTH_MAX_META  16

#define TRUTH_UNUSED   __attribute__((unused))
#define TRUTH_NOINLINE __attribute__((noinline, unused))

struct truth_frame {
	const char *file;
	int line;
	const char *func;
};

struct truth_rec {
	struct truth_frame f[TRUTH_MAX_DEPTH]; /* f[0] is the allocation site */
	int nframes;
	int optional;
	long long bytes;     /* still held */
	long long count;     /* blocks still held */
	long long allocs;    /* allocations booked since the start */
	long long allocated; /* their bytes */
	long long temporary; /* of them, freed before the thread's next allocation */
};

struct truth_book {
	struct truth_rec recs[TRUTH_MAX_RECS];
	int nrecs;
	struct {
		const char *name;
		long long value;
	} meta[TRUTH_MAX_META];
	int nmeta;
	char path[4096]; /* where truth_write() writes; from MEMTRACE_TRUTH */
	char lock;
};

/* The program's one book, shared by all threads (static storage, no malloc). */
static struct truth_book truth_book_g;
/* The calling thread's chain of TRUTH_CALLs, innermost last. */
static __thread struct truth_frame truth_path_g[TRUTH_MAX_DEPTH];
static __thread int truth_depth_g;

static TRUTH_UNUSED void truth_die(const char *what)
{
	char buf[512];
	int n = snprintf(buf, sizeof buf, "truth: %s: %s\n", what, strerror(errno));
	if (n > 0 && write(2, buf, (size_t)n) < 0)
		_exit(98);
	_exit(99);
}

static TRUTH_UNUSED void truth_lock(void)
{
	while (__atomic_test_and_set(&truth_book_g.lock, __ATOMIC_ACQUIRE))
		sched_yield();
}

static TRUTH_UNUSED void truth_unlock(void)
{
	__atomic_clear(&truth_book_g.lock, __ATOMIC_RELEASE);
}

static TRUTH_UNUSED int truth_same_frame(const struct truth_frame *a, const struct truth_frame *b)
{
	return a->line == b->line && strcmp(a->file, b->file) == 0 && strcmp(a->func, b->func) == 0;
}

/*
 * Books `bytes` and `count` at the site (file, line, func) reached through
 * the calling thread's TRUTH_CALL chain, and returns the record's id for
 * truth_adjust(). A site reached through the same chain shares one record.
 */
static TRUTH_UNUSED int truth_note(const char *file, int line, const char *func, long long bytes,
                                   long long count)
{
	struct truth_rec r;
	int i, id = -1;

	memset(&r, 0, sizeof r);
	r.f[0].file = file;
	r.f[0].line = line;
	r.f[0].func = func;
	r.nframes = 1;
	for (i = truth_depth_g - 1; i >= 0 && r.nframes < TRUTH_MAX_DEPTH; i--)
		r.f[r.nframes++] = truth_path_g[i];

	truth_lock();
	for (i = 0; i < truth_book_g.nrecs && id < 0; i++) {
		struct truth_rec *o = &truth_book_g.recs[i];
		int j, same = o->nframes == r.nframes && !o->optional;
		for (j = 0; same && j < r.nframes; j++)
			same = truth_same_frame(&o->f[j], &r.f[j]);
		if (same)
			id = i;
	}
	if (id < 0) {
		if (truth_book_g.nrecs == TRUTH_MAX_RECS) {
			truth_unlock();
			errno = ENOSPC;
			truth_die("too many sites");
		}
		id = truth_book_g.nrecs++;
		truth_book_g.recs[id] = r;
	}
	truth_book_g.recs[id].bytes += bytes;
	truth_book_g.recs[id].count += count;
	if (count > 0) {
		truth_book_g.recs[id].allocs += count;
		truth_book_g.recs[id].allocated += bytes;
	}
	truth_unlock();
	return id;
}

#define TRUTH_ALLOC(bytes) truth_note(__FILE__, __LINE__, __func__, (long long)(bytes), 1)

/* Marks record `id` optional: memtrace may not have seen it (an allocation
 * racing with what stops tracing), but when it reports the site it must be
 * exact. */
static TRUTH_UNUSED void truth_optional(int id)
{
	truth_lock();
	truth_book_g.recs[id].optional = 1;
	truth_unlock();
}

/* Changes what record `id` holds, e.g. truth_adjust(id, -size, -1) on free. */
static TRUTH_UNUSED void truth_adjust(int id, long long bytes, long long count)
{
	truth_lock();
	truth_book_g.recs[id].bytes += bytes;
	truth_book_g.recs[id].count += count;
	truth_unlock();
}

/* Books n of record `id`'s allocations as temporary: each was freed before
 * its thread allocated again. */
static TRUTH_UNUSED void truth_temporary(int id, long long n)
{
	truth_lock();
	truth_book_g.recs[id].temporary += n;
	truth_unlock();
}

static TRUTH_UNUSED void truth_push(const char *file, int line, const char *func)
{
	if (truth_depth_g == TRUTH_MAX_DEPTH) {
		errno = E2BIG;
		truth_die("TRUTH_CALL nested too deep");
	}
	truth_path_g[truth_depth_g].file = file;
	truth_path_g[truth_depth_g].line = line;
	truth_path_g[truth_depth_g].func = func;
	truth_depth_g++;
}

static TRUTH_UNUSED void truth_pop(void)
{
	truth_depth_g--;
}

/* Calls `call` (a statement) noting this line as a frame of its chain. */
#define TRUTH_CALL(call)                                                                           \
	do {                                                                                       \
		truth_push(__FILE__, __LINE__, __func__);                                          \
		call;                                                                              \
		truth_pop();                                                                       \
	} while (0)

static TRUTH_UNUSED void truth_meta(const char *name, long long value)
{
	int i;

	truth_lock();
	for (i = 0; i < truth_book_g.nmeta; i++)
		if (strcmp(truth_book_g.meta[i].name, name) == 0)
			break;
	if (i == TRUTH_MAX_META) {
		truth_unlock();
		errno = ENOSPC;
		truth_die("too many meta entries");
	}
	if (i == truth_book_g.nmeta)
		truth_book_g.nmeta++;
	truth_book_g.meta[i].name = name;
	truth_book_g.meta[i].value = value;
	truth_unlock();
}

/*
 * After fork(), the child calls this: every record so far describes blocks
 * it inherited, which its session holds from its start (memtrace gives a
 * forked child its parent's heap as it was at the fork, at the parent's
 * sites), so they stay as they are; meta entries and the call chain are
 * dropped.
 */
static TRUTH_UNUSED void truth_forked(void)
{
	truth_book_g.nmeta = 0;
	__atomic_clear(&truth_book_g.lock, __ATOMIC_RELEASE);
}

static TRUTH_UNUSED void truth_set_path(const char *path)
{
	if (snprintf(truth_book_g.path, sizeof truth_book_g.path, "%s", path) >=
	    (int)sizeof truth_book_g.path) {
		errno = ENAMETOOLONG;
		truth_die("truth path");
	}
}

static TRUTH_UNUSED void truth_put(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			truth_die("write");
		s += w;
		n -= (size_t)w;
	}
}

static TRUTH_UNUSED void truth_putf(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static TRUTH_UNUSED void truth_putf(int fd, const char *fmt, ...)
{
	char buf[4 * 1024 + 512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof buf) {
		errno = EOVERFLOW;
		truth_die("truth line too long");
	}
	truth_put(fd, buf, (size_t)n);
}

/*
 * An allocation site that lives in this header rather than in the program's
 * .c file, so that a program has sites in two source files and `--key
 * filename` and `--include`/`--exclude` have something to tell apart.
 */
/* The call and its booking share a line on purpose. */
/* clang-format off */
static TRUTH_NOINLINE void *truth_h_malloc(size_t n, int *rec)
{
	void *p = malloc(n); *rec = TRUTH_ALLOC(n);
	return p;
}
/* clang-format on */

/* Writes the book to MEMTRACE_TRUTH (or the path set by truth_set_path). */
static TRUTH_UNUSED void truth_write(void)
{
	char tmp[4096 + 16];
	int fd;

	if (truth_book_g.path[0] == '\0') {
		const char *env = getenv("MEMTRACE_TRUTH");
		if (env == NULL || env[0] == '\0') {
			errno = EINVAL;
			truth_die("MEMTRACE_TRUTH is not set");
		}
		truth_set_path(env);
	}
	snprintf(tmp, sizeof tmp, "%s.tmp", truth_book_g.path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		truth_die(tmp);
	truth_lock();
	truth_putf(fd, "truth\t1\npid\t%ld\n", (long)getpid());
	for (int i = 0; i < truth_book_g.nmeta; i++)
		truth_putf(fd, "meta\t%s\t%lld\n", truth_book_g.meta[i].name,
		           truth_book_g.meta[i].value);
	for (int i = 0; i < truth_book_g.nrecs; i++) {
		const struct truth_rec *r = &truth_book_g.recs[i];
		truth_putf(fd, "rec\t%lld\t%lld\t%s\t%d", r->bytes, r->count,
		           r->optional ? "opt" : "-", r->nframes);
		for (int j = 0; j < r->nframes; j++)
			truth_putf(fd, "\t%s\t%d\t%s", r->f[j].file, r->f[j].line, r->f[j].func);
		truth_putf(fd, "\nchurn\t%lld\t%lld\t%lld\n", r->allocs, r->allocated,
		           r->temporary);
	}
	truth_put(fd, "end\n", 4);
	truth_unlock();
	if (close(fd) < 0)
		truth_die("close");
	if (rename(tmp, truth_book_g.path) < 0)
		truth_die("rename");
}

/* Writes the book, then tells the harness on stdout. */
static TRUTH_UNUSED void truth_ready(void)
{
	truth_write();
	truth_put(1, "ready\n", 6);
}

/*
 * Reads one command line from stdin into buf (without the newline). End of
 * file reads as "exit". Byte by byte: slow, but no stdio buffer is allocated.
 */
static TRUTH_UNUSED const char *truth_wait(char *buf, size_t cap)
{
	size_t n = 0;

	for (;;) {
		char c;
		ssize_t r = read(0, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (n == 0)
				snprintf(buf, cap, "exit");
			else
				buf[n] = '\0';
			return buf;
		}
		if (c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = c;
	}
	buf[n] = '\0';
	return buf;
}

#endif
