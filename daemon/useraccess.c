/* useraccess.c - opening files as another user could (see useraccess.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "useraccess.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "xalloc.h"

/* ---- users ---- */

void useraccess_user_set(struct useraccess_user *u, uid_t uid, gid_t gid, const gid_t *groups,
                         size_t ngroups)
{
	memset(u, 0, sizeof(*u));
	u->uid = uid;
	u->gid = gid;
	u->ngroups = ngroups;
	u->groups = ngroups > 0 ? xmemdup(groups, ngroups * sizeof(*groups)) : NULL;
}

void useraccess_user_init(struct useraccess_user *u, uid_t uid, gid_t gid)
{
	struct passwd pw, *found = NULL;
	size_t cap = 4096;
	char *buf = NULL;
	gid_t *groups = NULL;
	int n = 0, rc;

	do {
		cap *= 2;
		buf = xrealloc(buf, cap);
		rc = getpwuid_r(uid, &pw, buf, cap, &found);
	} while (rc == ERANGE && cap < (1u << 20));
	if (rc == 0 && found != NULL) {
		/* A short array makes getgrouplist say how many there are. */
		n = 32;
		groups = xreallocarray(NULL, (size_t)n, sizeof(*groups));
		if (getgrouplist(pw.pw_name, gid, groups, &n) < 0) {
			groups = xreallocarray(groups, n > 0 ? (size_t)n : 1, sizeof(*groups));
			if (getgrouplist(pw.pw_name, gid, groups, &n) < 0)
				n = 0; /* changed meanwhile: the gid alone */
		}
	}
	useraccess_user_set(u, uid, gid, groups, n > 0 ? (size_t)n : 0);
	free(groups);
	free(buf);
}

void useraccess_user_anyone(struct useraccess_user *u)
{
	useraccess_user_set(u, (uid_t)-1, (gid_t)-1, NULL, 0);
	u->anyone = true;
}

void useraccess_user_close(struct useraccess_user *u)
{
	free(u->groups);
	memset(u, 0, sizeof(*u));
}

/* ---- permissions ---- */

/* The layout of system.posix_acl_access (linux/posix_acl_xattr.h). */
#define ACL_XATTR_VERSION 2
#define ACL_USER_OBJ      0x01
#define ACL_USER          0x02
#define ACL_GROUP_OBJ     0x04
#define ACL_GROUP         0x08
#define ACL_MASK          0x10
#define ACL_OTHER         0x20
#define ACL_HEADER        4
#define ACL_ENTRY         8

struct acl_entry {
	uint16_t tag, perm;
	uint32_t id;
};

static bool is_owner(const struct useraccess_user *u, uid_t uid)
{
	return !u->anyone && u->uid == uid;
}

static bool in_group(const struct useraccess_user *u, gid_t gid)
{
	if (u->anyone)
		return false;
	if (u->gid == gid)
		return true;
	for (size_t i = 0; i < u->ngroups; i++)
		if (u->groups[i] == gid)
			return true;
	return false;
}

/* Entries are little-endian on disk and in the xattr interface. */
static struct acl_entry acl_at(const unsigned char *p)
{
	struct acl_entry e;

	e.tag = (uint16_t)(p[0] | p[1] << 8);
	e.perm = (uint16_t)(p[2] | p[3] << 8);
	e.id = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
	return e;
}

/* posix_acl_permission for someone who is not the owner: a named user's
 * entry, else the group entries that match (any one granting enough), else
 * other; named users and groups are limited by the mask. A malformed ACL
 * grants nothing. */
static bool acl_permits(const struct useraccess_user *u, const struct stat *st,
                        const unsigned char *acl, size_t len, int want)
{
	size_t n;
	bool found = false;
	int mask = 7, granted = -1;
	struct acl_entry e;

	if (len < ACL_HEADER || (len - ACL_HEADER) % ACL_ENTRY != 0 ||
	    (acl[0] | acl[1] << 8 | acl[2] << 16 | (uint32_t)acl[3] << 24) != ACL_XATTR_VERSION)
		return false;
	n = (len - ACL_HEADER) / ACL_ENTRY;
	for (size_t i = 0; i < n; i++) {
		e = acl_at(acl + ACL_HEADER + i * ACL_ENTRY);
		if (e.tag == ACL_MASK)
			mask = e.perm & 7;
	}
	for (size_t i = 0; i < n && granted < 0; i++) {
		e = acl_at(acl + ACL_HEADER + i * ACL_ENTRY);
		switch (e.tag) {
		case ACL_USER_OBJ:
		case ACL_MASK:
			break;
		case ACL_USER:
			if (is_owner(u, (uid_t)e.id))
				return (e.perm & mask & want) == want;
			break;
		case ACL_GROUP_OBJ:
		case ACL_GROUP:
			if (in_group(u, e.tag == ACL_GROUP ? (gid_t)e.id : st->st_gid)) {
				found = true;
				if ((e.perm & want) == want)
					granted = e.perm;
			}
			break;
		case ACL_OTHER:
			return !found && (e.perm & want) == want;
		default:
			return false;
		}
	}
	return granted >= 0 && (granted & mask & want) == want;
}

bool useraccess_permits(const struct useraccess_user *u, const struct stat *st, const void *acl,
                        size_t acl_len, int want)
{
	int bits;

	want &= 7;
	if (!u->anyone && u->uid == 0)
		return true;
	if (is_owner(u, st->st_uid)) {
		bits = (st->st_mode >> 6) & 7;
	} else if (acl != NULL && acl_len > 0 && (st->st_mode & S_IRWXG) != 0) {
		/* As the kernel: the ACL speaks only when the group class has
		 * any bit (which is then the mask). */
		return acl_permits(u, st, acl, acl_len, want);
	} else if (in_group(u, st->st_gid)) {
		bits = (st->st_mode >> 3) & 7;
	} else {
		bits = st->st_mode & 7;
	}
	return (bits & want) == want;
}

/* Whether u may `want` on the inode open as fd, whose status is st. Its
 * ACL is read from fd itself when fd was opened for reading (a directory),
 * else through /proc, which reaches O_PATH descriptors (fgetxattr does
 * not); without /proc, or on a file system without ACLs, the mode bits
 * decide. */
static int may(const struct useraccess_user *u, int fd, bool readable, const struct stat *st,
               int want)
{
	unsigned char acl[ACL_HEADER + 256 * ACL_ENTRY];
	char proc[64];
	ssize_t n;

	if (u == NULL || (!u->anyone && u->uid == 0))
		return 0;
	/* Without a group class there is nothing an ACL could add. */
	if ((st->st_mode & S_IRWXG) == 0) {
		n = 0;
	} else if (readable) {
		n = fgetxattr(fd, "system.posix_acl_access", acl, sizeof(acl));
	} else {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		n = getxattr(proc, "system.posix_acl_access", acl, sizeof(acl));
	}
	if (n < 0) {
		/* An ACL longer than we read: grant nothing rather than guess. */
		if (errno == ERANGE || errno == E2BIG)
			return -EACCES;
		n = 0;
	}
	return useraccess_permits(u, st, n > 0 ? acl : NULL, (size_t)n, want) ? 0 : -EACCES;
}

/* ---- the walk ---- */

/* Replaces *work (ending at rest) by target + "/" + rest. */
static int splice_link(char **work, const char *target, const char **rest)
{
	size_t t = strlen(target), r = strlen(*rest);
	char *n;

	if (t + 1 + r >= (size_t)PATH_MAX * 4)
		return -ENAMETOOLONG;
	n = xmalloc(t + 1 + r + 1);
	memcpy(n, target, t);
	n[t] = '/';
	memcpy(n + t + 1, *rest, r + 1);
	free(*work);
	*work = n;
	*rest = n;
	return 0;
}

int useraccess_open(const struct useraccess_user *u, const char *path, struct stat *out)
{
	char *work = NULL, name[NAME_MAX + 1];
	const char *p;
	int dir = -1, fd = -1, links = 0, rc;
	bool dir_readable = false, fd_readable;
	struct stat st, rst;

	if (path == NULL || path[0] != '/')
		return -ENOENT;
	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	work = xstrdup(path);
	p = work;
	dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dir_readable = true;
	if (dir < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		size_t len;
		bool last, trailing;

		while (*p == '/')
			p++;
		if (*p == '\0') {
			rc = -EISDIR; /* the path names a directory */
			goto out;
		}
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		p += len;
		trailing = *p == '/';
		while (*p == '/')
			p++;
		last = *p == '\0';
		if (strcmp(name, ".") == 0) {
			if (last) {
				rc = -EISDIR;
				goto out;
			}
			continue;
		}
		/* Looking a name up in a directory needs search permission. */
		if (fstat(dir, &st) < 0) {
			rc = -errno;
			goto out;
		}
		if ((rc = may(u, dir, dir_readable, &st, USERACCESS_SEARCH)) < 0)
			goto out;
		/* A directory is opened for reading when we may (its ACL is then
		 * one fgetxattr away); anything else, or a directory we may only
		 * search, as a path: nothing but a lookup happens to it. */
		fd_readable = !last;
		fd = last ? -1 : openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			fd_readable = false;
			fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = -errno;
			goto out;
		}
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);
			if (++links > USERACCESS_MAX_LINKS) {
				rc = -ELOOP;
				goto out;
			}
			if (n <= 0) {
				rc = n < 0 ? -errno : -ENOENT;
				goto out;
			}
			target[n] = '\0';
			close(fd);
			fd = -1;
			/* What is left of the path goes on from the target; a
			 * trailing slash stays (the target must be a directory). */
			if ((rc = splice_link(&work, target, &p)) < 0)
				goto out;
			if (last && !trailing)
				work[strlen(work) - 1] = '\0';
			if (target[0] == '/') {
				close(dir);
				dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				dir_readable = true;
				if (dir < 0) {
					rc = -errno;
					goto out;
				}
			}
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			if (last) {
				rc = -EISDIR;
				goto out;
			}
			close(dir);
			dir = fd;
			dir_readable = fd_readable;
			fd = -1;
			continue;
		}
		if (!last || trailing) {
			rc = -ENOTDIR;
			goto out;
		}
		if (!S_ISREG(st.st_mode)) {
			rc = -EINVAL; /* a FIFO, socket or device: never opened */
			goto out;
		}
		if ((rc = may(u, fd, false, &st, USERACCESS_READ)) < 0)
			goto out;
		close(fd);
		fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &rst) < 0) {
			rc = errno == ELOOP ? -ESTALE : -errno;
			goto out;
		}
		if (rst.st_dev != st.st_dev || rst.st_ino != st.st_ino || !S_ISREG(rst.st_mode)) {
			rc = -ESTALE;
			goto out;
		}
		*out = rst;
		rc = fd;
		fd = -1;
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	if (dir >= 0)
		close(dir);
	free(work);
	return rc;
}
