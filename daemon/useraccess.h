/*
 * useraccess.h - opening a file only when another user could read it.
 *
 * memtraced often runs with more rights than the processes it traces (root,
 * or a service user with CAP_DAC_READ_SEARCH), and an agent names the files
 * it wants symbolized. So a path from an agent is opened only when it is a
 * regular file that the agent's own user could have read: every directory on
 * the way searchable by that user, the file readable by them, by the mode
 * bits and the POSIX access ACL, as the kernel decides for that user. The
 * daemon keeps its own credentials (switching them per thread would need
 * privileges the service unit does not grant), so the decision is made here,
 * on the very inodes that are opened: the path is walked one component at a
 * time from "/", each directory and link held open (O_PATH, O_NOFOLLOW) while
 * the next is looked up in it, symbolic links followed as the kernel follows
 * them (at most 40), and the file opened for reading from the directory that
 * was checked, then compared with the inode that was checked. A file swapped
 * meanwhile is refused, never read.
 *
 * Opening never blocks on the file: a FIFO, a socket or a device is refused
 * before it is opened for reading, and the final open is O_NONBLOCK, so a
 * FIFO swapped in between opens without waiting and is then refused. (A
 * file system that stops answering, such as a hung FUSE mount, can still
 * hold the calling thread; nothing here holds a lock meanwhile.)
 *
 * A user is a uid, its gid and supplementary groups. Root (uid 0) may read
 * everything the daemon may. "Anyone" owns nothing and is in no group: what
 * it may read, every user may. Thread-safe; no global state. The lookup of
 * a user's groups reads the account database, so it may block: call it on
 * the thread pool.
 */
#ifndef MEMTRACE_USERACCESS_H
#define MEMTRACE_USERACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#define USERACCESS_MAX_LINKS 40

/* Permission bits asked for, as in access(2). */
#define USERACCESS_READ   4
#define USERACCESS_SEARCH 1

struct useraccess_user {
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* supplementary groups, owned */
	size_t ngroups;
	bool anyone; /* owns nothing, in no group: uid and gid are ignored */
};

/* uid and gid as a process runs with them (SO_PEERCRED), with the
 * supplementary groups the account database gives that uid (none when it
 * has no entry). */
void useraccess_user_init(struct useraccess_user *u, uid_t uid, gid_t gid);
/* The same with the groups given (copied). */
void useraccess_user_set(struct useraccess_user *u, uid_t uid, gid_t gid, const gid_t *groups,
                         size_t ngroups);
/* The user who owns nothing and is in no group. */
void useraccess_user_anyone(struct useraccess_user *u);
void useraccess_user_close(struct useraccess_user *u);

/* Whether u may `want` (USERACCESS_* bits) on an inode of status st whose
 * system.posix_acl_access extended attribute is acl (acl_len bytes; NULL or
 * 0 when it has none), by the rules of the kernel's generic_permission. */
bool useraccess_permits(const struct useraccess_user *u, const struct stat *st, const void *acl,
                        size_t acl_len, int want);

/* Opens path read-only, non-blocking and close-on-exec, if it names a
 * regular file that u may read (u NULL: whatever the daemon itself may
 * read, still only a regular file, still never blocking). On success
 * returns the descriptor and fills *st with its status. Errors: -EACCES
 * (u may not), -ENOENT (missing, or a relative path: relative to what the
 * traced process saw, not to us), -EINVAL (not a regular file), -ENOTDIR,
 * -EISDIR, -ELOOP, -ENAMETOOLONG, -ESTALE (the file changed while it was
 * opened), or another -errno of the system calls. */
int useraccess_open(const struct useraccess_user *u, const char *path, struct stat *st);

#endif
