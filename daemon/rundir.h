/*
 * rundir.h - the runtime directory after start-up: noticing that it was
 * removed or replaced, and binding the sockets in it again.
 *
 * Clients and agents find memtraced only through the socket files in its
 * runtime directory. A directory removed underneath a running daemon (a
 * tmpfiles clean-up, an `rm -rf` of /tmp/memtrace-$UID, a logout removing
 * $XDG_RUNTIME_DIR) would leave it running and unreachable, silently. So a
 * timer on the loop checks every second that the directory is still the one
 * the daemon verified and that each socket file is still the one it bound.
 * When not, it says so in the log, makes the directory again through
 * safedir.h (refusing, and saying why, when what is there now is not safe),
 * and binds the sockets it bound itself again: the listening descriptors
 * stay the same numbers, so agentsrv and control go on unchanged. Sockets
 * that systemd passed are systemd's to recreate: the log says to restart
 * the socket units.
 *
 * Loop thread only. The timer is unreferenced, so it never keeps the loop
 * alive; it does nothing once the daemon is stopping.
 */
#ifndef MEMTRACE_RUNDIR_H
#define MEMTRACE_RUNDIR_H

#include <sys/types.h>

#include "daemon.h"

struct rundir;

/* After agentsrv_start and control_start: records what is there now and
 * starts watching. mode: the mode the directory is made with again. */
struct rundir *rundir_watch(struct daemon *d, mode_t mode);
/* After the loop ended (its timer was closed with every handle). */
void rundir_free(struct rundir *r); /* NULL is a no-op */

#endif
