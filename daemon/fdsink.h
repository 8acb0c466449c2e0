/*
 * fdsink.h - closing the descriptors an agent passed that the daemon did not
 * ask for, without letting their close hold the loop.
 *
 * Any local user can attach descriptors to what it sends agent.sock
 * (SCM_RIGHTS): the kernel installs them in the daemon's table whether or
 * not the daemon wants them, and the daemon must close them. close() can
 * block for as long as the file's owner likes: a FUSE file's flush, a tty
 * draining its output, an NFS file, a TCP socket with SO_LINGER set and
 * data the peer never takes. So fdsink_put closes at once only what cannot
 * block (a pipe, an eventfd; a socket after its linger is switched
 * off), as /proc/self/fd names them (fstat or fstatfs would ask a FUSE
 * file's server, which may never answer), and hands everything else to one closing thread,
 * which may block without anyone waiting for it (a memfd's too: its last
 * close frees its pages, gigabytes if its owner filled it). Descriptors that wait there
 * are counted (`pending`); the daemon's descriptor limit bounds them, and
 * the accept path pauses rather than spins when it is reached (agentsrv.c).
 */
#ifndef MEMTRACE_FDSINK_H
#define MEMTRACE_FDSINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fdsink;

/* 0, or -errno (the thread could not be started). */
int fdsink_new(struct fdsink **out);
/* Stops the thread when it is idle; one blocked in a close is left to end
 * with the process. */
void fdsink_free(struct fdsink *fs);
/* Takes fd. Loop thread. */
void fdsink_put(struct fdsink *fs, int fd);
/* Takes fd and closes it on the thread whatever it is (a region's memfd,
 * whose last close frees its pages). */
void fdsink_put_later(struct fdsink *fs, int fd);
/* Whether /proc/self/fd names fd a memfd (asks no file system). */
bool fd_is_memfd(int fd);
/* Descriptors put so far, and those still waiting to be closed. */
uint64_t fdsink_total(const struct fdsink *fs);
size_t fdsink_pending(struct fdsink *fs);

#endif
