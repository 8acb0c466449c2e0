/* safedir.c - making and checking directories nobody else controls (see safedir.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "safedir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAFEDIR_MAX_LINKS 40

static int reason(char *why, size_t cap, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int reason(char *why, size_t cap, int err, const char *fmt, ...)
{
	va_list ap;

	if (cap > 0) {
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return err;
}

static bool trusted_owner(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* A directory on the way (`last`: the one asked for) whose status is st,
 * named `where` in messages. */
static int check_dir(const struct stat *st, const char *where, bool last, char *why, size_t cap)
{
	if (!trusted_owner(st->st_uid))
		return reason(why, cap, -EPERM, "%s is owned by uid %u, neither root nor uid %u",
		              where, (unsigned)st->st_uid, (unsigned)geteuid());
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 && (last || !(st->st_mode & S_ISVTX)))
		return reason(why, cap, -EPERM, "%s is writable by %s (mode %04o)", where,
		              st->st_mode & S_IWOTH ? "others" : "its group",
		              (unsigned)(st->st_mode & 07777));
	return 0;
}

/* `where` + "/" + name, or the parent of `where` for "..". */
static void where_step(char *where, size_t cap, const char *name)
{
	size_t n = strlen(where);

	if (strcmp(name, "..") == 0) {
		char *slash = strrchr(where, '/');
		if (slash != NULL)
			*slash = '\0';
		return;
	}
	snprintf(where + n, cap - n, "/%s", name);
}

int safedir_make(const char *path, mode_t mode, char *why, size_t cap, dev_t *dev, ino_t *ino)
{
	char work[2 * PATH_MAX], name[NAME_MAX + 1], where[2 * PATH_MAX] = "";
	const char *p;
	int dir = -1, fd = -1, links = 0, rc;
	struct stat st;

	if (path == NULL || path[0] != '/')
		return reason(why, cap, -EINVAL, "%s is not an absolute path",
		              path != NULL ? path : "(none)");
	if (strlen(path) >= PATH_MAX)
		return reason(why, cap, -ENAMETOOLONG, "the path is too long");
	snprintf(work, sizeof(work), "%s", path);
	p = work;
	dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0 || fstat(dir, &st) < 0) {
		rc = reason(why, cap, -errno, "/: %s", strerror(errno));
		goto out;
	}
	if ((rc = check_dir(&st, "/", false, why, cap)) < 0)
		goto out;
	for (;;) {
		size_t len;
		bool last;

		while (*p == '/')
			p++;
		if (*p == '\0')
			break; /* dir is the directory asked for, checked already */
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			rc = reason(why, cap, -ENAMETOOLONG, "a name in %s is too long", path);
			goto out;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		p += len;
		while (*p == '/')
			p++;
		last = *p == '\0';
		if (strcmp(name, ".") == 0)
			continue;
		fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && strcmp(name, "..") != 0 && mode != 0) {
			/* Made here with the mode asked for: the umask is not ours
			 * to rely on. Someone faster makes us check theirs. */
			if (mkdirat(dir, name, last ? mode : 0755) < 0) {
				if (errno != EEXIST) {
					rc = reason(why, cap, -errno, "cannot create %s/%s: %s",
					            where, name, strerror(errno));
					goto out;
				}
			} else if (last) {
				int wfd = openat(dir, name,
				                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (wfd < 0 || fchmod(wfd, mode) < 0) {
					rc = reason(why, cap, -errno,
					            "cannot set the mode of %s/%s: %s", where, name,
					            strerror(errno));
					if (wfd >= 0)
						close(wfd);
					goto out;
				}
				close(wfd);
			}
			fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		}
		where_step(where, sizeof(where), name);
		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = reason(why, cap, -errno, "%s: %s", where, strerror(errno));
			goto out;
		}
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX], rest[2 * PATH_MAX];
			ssize_t n;

			/* Its directory is safe by now; so is the link if it is
			 * root's or ours, whoever owns its target. */
			if (!trusted_owner(st.st_uid)) {
				rc = reason(why, cap, -EPERM,
				            "%s is a symbolic link owned by uid %u, neither root "
				            "nor uid %u",
				            where, (unsigned)st.st_uid, (unsigned)geteuid());
				goto out;
			}
			n = readlinkat(fd, "", target, sizeof(target) - 1);
			if (++links > SAFEDIR_MAX_LINKS || n <= 0) {
				rc = reason(why, cap, n <= 0 ? -EINVAL : -ELOOP,
				            "%s: too many or unreadable symbolic links", where);
				goto out;
			}
			target[n] = '\0';
			snprintf(rest, sizeof(rest), "%s/%s", target, p);
			snprintf(work, sizeof(work), "%s", rest);
			p = work;
			close(fd);
			fd = -1;
			/* Messages go on from where the link points. */
			where_step(where, sizeof(where), "..");
			if (target[0] == '/') {
				where[0] = '\0';
				close(dir);
				dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
				if (dir < 0) {
					rc = reason(why, cap, -errno, "/: %s", strerror(errno));
					goto out;
				}
			}
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc = reason(why, cap, -ENOTDIR, "%s is not a directory", where);
			goto out;
		}
		if ((rc = check_dir(&st, where, last, why, cap)) < 0)
			goto out;
		close(dir);
		dir = fd;
		fd = -1;
	}
	/* The directory asked for (after its links): checked as the last one
	 * when reached by name; "/" itself, or a path ending in "..", is
	 * checked here. */
	if (fstat(dir, &st) < 0) {
		rc = reason(why, cap, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if ((rc = check_dir(&st, where[0] != '\0' ? where : "/", true, why, cap)) < 0)
		goto out;
	if (dev != NULL)
		*dev = st.st_dev;
	if (ino != NULL)
		*ino = st.st_ino;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (dir >= 0)
		close(dir);
	return rc;
}

int safedir_check(const char *path, char *why, size_t cap)
{
	/* Mode 0: safedir_make makes nothing. */
	return safedir_make(path, 0, why, cap, NULL, NULL);
}
