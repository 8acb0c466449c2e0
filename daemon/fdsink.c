/* fdsink.c - closing unwanted descriptors off the loop (see fdsink.h). */
#include "fdsink.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xalloc.h"

struct fdsink {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int *q; /* descriptors to close, a ring of cap */
	size_t head, n, cap;
	bool busy; /* the thread is in a close */
	bool stop;
	uint64_t total; /* loop thread only */
};

static void *closer(void *arg)
{
	struct fdsink *fs = arg;

	pthread_mutex_lock(&fs->lock);
	for (;;) {
		while (fs->n == 0 && !fs->stop)
			pthread_cond_wait(&fs->cond, &fs->lock);
		if (fs->n == 0)
			break;
		int fd = fs->q[fs->head];
		fs->head = (fs->head + 1) % fs->cap;
		fs->n--;
		fs->busy = true;
		pthread_mutex_unlock(&fs->lock);
		close(fd); /* may block: only this thread waits */
		pthread_mutex_lock(&fs->lock);
		fs->busy = false;
	}
	pthread_mutex_unlock(&fs->lock);
	pthread_mutex_destroy(&fs->lock);
	pthread_cond_destroy(&fs->cond);
	free(fs->q);
	free(fs);
	return NULL;
}

int fdsink_new(struct fdsink **out)
{
	struct fdsink *fs = xcalloc(1, sizeof(*fs));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->cond, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	rc = pthread_create(&t, &attr, closer, fs);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_destroy(&fs->lock);
		pthread_cond_destroy(&fs->cond);
		free(fs);
		return -rc;
	}
	*out = fs;
	return 0;
}

void fdsink_free(struct fdsink *fs)
{
	if (fs == NULL)
		return;
	/* The thread frees fs once the queue is empty. */
	pthread_mutex_lock(&fs->lock);
	fs->stop = true;
	pthread_cond_signal(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
}

/* What /proc says fd is: its link's text, read without asking the file's
 * file system anything (fstat or fstatfs of a FUSE file would ask its
 * server, which may never answer). */
static bool fd_link_starts(int fd, const char *prefix)
{
	char path[64], link[64];
	size_t n = strlen(prefix);

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t l = readlink(path, link, sizeof(link));
	return l >= (ssize_t)n && memcmp(link, prefix, n) == 0;
}

bool fd_is_memfd(int fd)
{
	return fd_link_starts(fd, "/memfd:");
}

/* Whether closing fd here cannot block. */
static bool closes_at_once(int fd)
{
	if (fd_link_starts(fd, "socket:[")) {
		/* Only a lingering socket waits in close: no linger, then. */
		struct linger l = {0, 0};
		return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0;
	}
	/* A pipe's or an eventfd's release never waits; a memfd's frees its
	 * pages, gigabytes if its owner filled it: off the loop. */
	return fd_link_starts(fd, "pipe:[") || fd_link_starts(fd, "anon_inode:");
}

static void enqueue(struct fdsink *fs, int fd);

void fdsink_put(struct fdsink *fs, int fd)
{
	if (fd < 0)
		return;
	fs->total++;
	if (closes_at_once(fd))
		close(fd);
	else
		enqueue(fs, fd);
}

void fdsink_put_later(struct fdsink *fs, int fd)
{
	if (fd >= 0)
		enqueue(fs, fd);
}

static void enqueue(struct fdsink *fs, int fd)
{
	pthread_mutex_lock(&fs->lock);
	if (fs->n == fs->cap) {
		size_t cap = fs->cap ? fs->cap * 2 : 64;
		int *q = xreallocarray(NULL, cap, sizeof(*q));
		for (size_t i = 0; i < fs->n; i++)
			q[i] = fs->q[(fs->head + i) % fs->cap];
		free(fs->q);
		fs->q = q;
		fs->head = 0;
		fs->cap = cap;
	}
	fs->q[(fs->head + fs->n) % fs->cap] = fd;
	fs->n++;
	pthread_cond_signal(&fs->cond);
	pthread_mutex_unlock(&fs->lock);
}

uint64_t fdsink_total(const struct fdsink *fs)
{
	return fs->total;
}

size_t fdsink_pending(struct fdsink *fs)
{
	pthread_mutex_lock(&fs->lock);
	size_t n = fs->n + (fs->busy ? 1 : 0);
	pthread_mutex_unlock(&fs->lock);
	return n;
}
