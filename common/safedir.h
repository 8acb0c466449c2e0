/*
 * safedir.h - directories nobody else can swap under us.
 *
 * memtraced binds its sockets in the runtime directory and writes its
 * database in the state directory. If another user could rename, replace or
 * write into either (a /tmp/memtrace-$UID made in advance by someone else,
 * a link to a directory of theirs, a group-writable parent), they could put
 * their own socket where clients and agents connect, or read the database.
 * So a directory is used only when it is safe: every directory on its path,
 * walked from "/" one component at a time, is owned by root or by us and
 * is not writable by group or others (a parent with the sticky bit, such as
 * /tmp, may be: nobody can rename or remove what we own in it), every
 * symbolic link on the way is owned by root or by us (it lives in a
 * directory that is safe by then), and the directory itself, which must not
 * be a link, is owned by root or by us and writable by its owner only.
 * Missing directories are made on the way: the last one with the mode
 * asked for (exactly, whatever the umask), the others 0755.
 *
 * Nothing here allocates or keeps state; errors come back as a negative
 * errno and a sentence naming the directory and what is wrong with it.
 */
#ifndef MEMTRACE_SAFEDIR_H
#define MEMTRACE_SAFEDIR_H

#include <stddef.h>
#include <sys/types.h>

/* Makes path (absolute) if it is missing, then checks it as above. 0, or
 * -errno with a reason in why (cap bytes): -EPERM for a directory that is
 * not safe, -ENOTDIR, -ELOOP, or the error of a failed mkdir. *dev and *ino
 * (may be NULL) receive the directory's identity, to notice later that it
 * was removed or replaced. */
int safedir_make(const char *path, mode_t mode, char *why, size_t cap, dev_t *dev, ino_t *ino);
/* The same check, making nothing: a missing directory is -ENOENT. For a
 * client about to connect to a socket in a directory it did not choose
 * (/tmp/memtrace-$UID, which another user may have made first). */
int safedir_check(const char *path, char *why, size_t cap);

#endif
