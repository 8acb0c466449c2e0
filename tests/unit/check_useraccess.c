/*
 * check_useraccess.c - daemon/useraccess.c: whether another user could read
 * a file, and opening it only then, never blocking.
 *
 * The permission rules are checked against the kernel's own rules written
 * out here case by case (owner, group, other; POSIX ACLs with named users,
 * groups and the mask), from the documentation of acl(5), not from the
 * code. The walk is checked on a real tree made per test in a temporary
 * directory: files of each mode, a directory nobody else may search, links
 * (relative, absolute, chained, looping), a FIFO, a device. The tests run as
 * root in CI and as anybody else elsewhere: the users asked about are
 * described (uid, groups), never switched to, and every file is made by the
 * test, so the expected answers follow from the modes it set.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "suites.h"
#include "useraccess.h"

#define NOBODY   ((uid_t)65534)
#define NOGROUP  ((gid_t)65534)
#define STRANGER ((uid_t)54321)

/* ---- the rules ---- */

static struct stat file_of(uid_t uid, gid_t gid, mode_t mode)
{
	struct stat st;

	memset(&st, 0, sizeof st);
	st.st_uid = uid;
	st.st_gid = gid;
	st.st_mode = S_IFREG | mode;
	return st;
}

START_TEST(test_mode_classes)
{
	struct useraccess_user u;
	gid_t extra = 777;

	useraccess_user_set(&u, 1000, 100, &extra, 1);
	/* The owner's class alone applies to the owner, even when others
	 * would get more. */
	struct stat st = file_of(1000, 5, 0044);
	ck_assert(!useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	st = file_of(1000, 5, 0400);
	ck_assert(useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	/* The group class for the primary and a supplementary group. */
	st = file_of(0, 100, 0040);
	ck_assert(useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	st = file_of(0, 777, 0040);
	ck_assert(useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	st = file_of(0, 777, 0404);
	ck_assert(!useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	/* Others. */
	st = file_of(0, 0, 0004);
	ck_assert(useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	st = file_of(0, 0, 0700);
	ck_assert(!useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	/* Search is the x bit. */
	st = file_of(0, 0, 0004);
	ck_assert(!useraccess_permits(&u, &st, NULL, 0, USERACCESS_SEARCH));
	st = file_of(0, 0, 0001);
	ck_assert(useraccess_permits(&u, &st, NULL, 0, USERACCESS_SEARCH));
	useraccess_user_close(&u);
}
END_TEST

START_TEST(test_root_and_anyone)
{
	struct useraccess_user root, anyone;
	struct stat st = file_of(1000, 1000, 0000);

	useraccess_user_set(&root, 0, 0, NULL, 0);
	useraccess_user_anyone(&anyone);
	ck_assert(useraccess_permits(&root, &st, NULL, 0, USERACCESS_READ));
	/* Anyone is nobody's owner and in no group: only the other class. */
	st = file_of((uid_t)-1, (gid_t)-1, 0770);
	ck_assert(!useraccess_permits(&anyone, &st, NULL, 0, USERACCESS_READ));
	st = file_of(0, 0, 0004);
	ck_assert(useraccess_permits(&anyone, &st, NULL, 0, USERACCESS_READ));
	useraccess_user_close(&root);
	useraccess_user_close(&anyone);
}
END_TEST

/* An access ACL as the xattr carries it: a version, then (tag, perm, id). */
struct acl {
	unsigned char b[4 + 8 * 16];
	size_t len;
};

static void acl_start(struct acl *a)
{
	memset(a, 0, sizeof *a);
	a->b[0] = 2; /* POSIX_ACL_XATTR_VERSION, little-endian */
	a->len = 4;
}

static void acl_add(struct acl *a, uint16_t tag, uint16_t perm, uint32_t id)
{
	unsigned char *p = a->b + a->len;

	p[0] = (unsigned char)tag;
	p[1] = (unsigned char)(tag >> 8);
	p[2] = (unsigned char)perm;
	p[3] = (unsigned char)(perm >> 8);
	for (int i = 0; i < 4; i++)
		p[4 + i] = (unsigned char)(id >> (8 * i));
	a->len += 8;
}

enum { USER_OBJ = 1, USER = 2, GROUP_OBJ = 4, GROUP = 8, MASK = 0x10, OTHER = 0x20 };

START_TEST(test_acl_rules)
{
	struct useraccess_user u;
	struct acl a;
	/* rw-r----- root:root with named entries; the group class bits are
	 * the mask (r--). */
	struct stat st = file_of(0, 0, 0640);

	useraccess_user_set(&u, 1000, 100, NULL, 0);
	/* A named user entry grants what others do not. */
	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, USER, 4, 1000);
	acl_add(&a, GROUP_OBJ, 4, 0);
	acl_add(&a, MASK, 4, 0);
	acl_add(&a, OTHER, 0, 0);
	ck_assert(useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	/* ... but not past the mask. */
	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, USER, 4, 1000);
	acl_add(&a, GROUP_OBJ, 4, 0);
	acl_add(&a, MASK, 0, 0);
	acl_add(&a, OTHER, 0, 0);
	st.st_mode = S_IFREG | 0600;
	/* mode's group class is the mask: 0, so the ACL does not speak and
	 * others (---) decide */
	ck_assert(!useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	st.st_mode = S_IFREG | 0610;
	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, USER, 4, 1000);
	acl_add(&a, GROUP_OBJ, 4, 0);
	acl_add(&a, MASK, 1, 0);
	acl_add(&a, OTHER, 4, 0);
	ck_assert(!useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	/* A named user entry that denies wins over a generous other. */
	st.st_mode = S_IFREG | 0644;
	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, USER, 0, 1000);
	acl_add(&a, GROUP_OBJ, 4, 0);
	acl_add(&a, MASK, 4, 0);
	acl_add(&a, OTHER, 4, 0);
	ck_assert(!useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	/* A matching group that grants nothing: other is not consulted. */
	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, GROUP_OBJ, 0, 0);
	acl_add(&a, GROUP, 0, 100);
	acl_add(&a, MASK, 4, 0);
	acl_add(&a, OTHER, 4, 0);
	ck_assert(!useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	/* One of several matching groups granting is enough. */
	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, GROUP_OBJ, 0, 0);
	acl_add(&a, GROUP, 4, 100);
	acl_add(&a, MASK, 4, 0);
	acl_add(&a, OTHER, 0, 0);
	st = file_of(0, 100, 0640);
	ck_assert(useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	/* A malformed ACL grants nothing. */
	ck_assert(!useraccess_permits(&u, &st, a.b, a.len - 3, USERACCESS_READ));
	a.b[0] = 1;
	ck_assert(!useraccess_permits(&u, &st, a.b, a.len, USERACCESS_READ));
	useraccess_user_close(&u);
}
END_TEST

START_TEST(test_groups_from_account_database)
{
	/* root is in group 0 by its entry; a uid with no entry has its gid
	 * alone. */
	struct useraccess_user u;
	struct stat st = file_of(1, 0, 0040);

	useraccess_user_init(&u, 0, 0);
	ck_assert_uint_eq(u.uid, 0);
	useraccess_user_close(&u);
	useraccess_user_init(&u, 4000123, 4000124);
	ck_assert(!useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	st.st_gid = 4000124;
	ck_assert(useraccess_permits(&u, &st, NULL, 0, USERACCESS_READ));
	useraccess_user_close(&u);
}
END_TEST

/* ---- the walk, on a real tree ---- */

static char top[PATH_MAX];
static struct useraccess_user nobody, stranger_in_group, self;

static char *at(const char *rel)
{
	static char buf[4][PATH_MAX + 64];
	static int k;
	char *b = buf[k++ % 4];

	snprintf(b, PATH_MAX + 64, "%s/%s", top, rel);
	return b;
}

static void make_file(const char *rel, mode_t mode)
{
	int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "x\n", 2), 2);
	close(fd);
	ck_assert_int_eq(chmod(at(rel), mode), 0);
}

static void tree_setup(void)
{
	gid_t g = NOGROUP + 1;

	snprintf(top, sizeof top, "%s/memtrace-useraccess-XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(top));
	ck_assert_int_eq(chmod(top, 0755), 0);
	ck_assert_int_eq(mkdir(at("open"), 0755), 0);
	ck_assert_int_eq(mkdir(at("closed"), 0700), 0);
	ck_assert_int_eq(chmod(at("closed"), 0700), 0);
	make_file("open/public", 0644);
	make_file("open/private", 0600);
	make_file("open/group", 0640);
	make_file("closed/public", 0644);
	ck_assert_int_eq(symlink("public", at("open/rel-link")), 0);
	ck_assert_int_eq(symlink(at("open/private"), at("open/abs-to-private")), 0);
	ck_assert_int_eq(symlink("../closed/public", at("open/into-closed")), 0);
	ck_assert_int_eq(symlink("rel-link", at("open/chain")), 0);
	ck_assert_int_eq(symlink("loop-b", at("open/loop-a")), 0);
	ck_assert_int_eq(symlink("loop-a", at("open/loop-b")), 0);
	ck_assert_int_eq(symlink("../open", at("open/up")), 0);
	ck_assert_int_eq(mkfifo(at("open/fifo"), 0666), 0);
	ck_assert_int_eq(chmod(at("open/fifo"), 0666), 0);
	ck_assert_int_eq(symlink(at("open/fifo"), at("open/to-fifo")), 0);
	useraccess_user_set(&nobody, NOBODY, NOGROUP, NULL, 0);
	/* In the group of open/group (whatever our gid is), not its owner. */
	g = getegid();
	useraccess_user_set(&stranger_in_group, STRANGER, 54321, &g, 1);
	useraccess_user_set(&self, geteuid(), getegid(), NULL, 0);
}

static int rm_tree(void)
{
	char cmd[PATH_MAX + 32];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
	return system(cmd);
}

static void tree_teardown(void)
{
	useraccess_user_close(&nobody);
	useraccess_user_close(&stranger_in_group);
	useraccess_user_close(&self);
	ck_assert_int_eq(rm_tree(), 0);
}

/* useraccess_open's result: a readable regular file, or the error. */
static int try_open(const struct useraccess_user *u, const char *path)
{
	struct stat st;
	int fd = useraccess_open(u, path, &st);
	char c;

	if (fd < 0)
		return fd;
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(pread(fd, &c, 1, 0), 1);
	ck_assert_int_eq(c, 'x');
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	close(fd);
	return 0;
}

START_TEST(test_open_by_mode)
{
	ck_assert_int_eq(try_open(&nobody, at("open/public")), 0);
	ck_assert_int_eq(try_open(&nobody, at("open/private")), -EACCES);
	ck_assert_int_eq(try_open(&nobody, at("open/group")), -EACCES);
	ck_assert_int_eq(try_open(&stranger_in_group, at("open/group")), 0);
	ck_assert_int_eq(try_open(&self, at("open/private")), 0);
	/* The daemon's own rights (no user): whatever it may read. */
	ck_assert_int_eq(try_open(NULL, at("open/private")), 0);
}
END_TEST

START_TEST(test_open_needs_search_on_every_directory)
{
	/* World-readable, in a directory only its owner may search. */
	ck_assert_int_eq(try_open(&nobody, at("closed/public")), -EACCES);
	ck_assert_int_eq(try_open(&self, at("closed/public")), 0);
}
END_TEST

START_TEST(test_open_follows_links_as_the_user)
{
	ck_assert_int_eq(try_open(&nobody, at("open/rel-link")), 0);
	ck_assert_int_eq(try_open(&nobody, at("open/chain")), 0);
	ck_assert_int_eq(try_open(&nobody, at("open/up/up/up/public")), 0);
	ck_assert_int_eq(try_open(&nobody, at("open/./../open/public")), 0);
	/* A link does not lend its target rights. */
	ck_assert_int_eq(try_open(&nobody, at("open/abs-to-private")), -EACCES);
	ck_assert_int_eq(try_open(&nobody, at("open/into-closed")), -EACCES);
	ck_assert_int_eq(try_open(&self, at("open/into-closed")), 0);
	ck_assert_int_eq(try_open(&self, at("open/loop-a")), -ELOOP);
}
END_TEST

START_TEST(test_open_refuses_what_is_not_a_regular_file)
{
	/* A FIFO nobody writes to: refused at once, never waited on. */
	ck_assert_int_eq(try_open(&self, at("open/fifo")), -EINVAL);
	ck_assert_int_eq(try_open(NULL, at("open/to-fifo")), -EINVAL);
	ck_assert_int_eq(try_open(NULL, "/dev/null"), -EINVAL);
	ck_assert_int_eq(try_open(NULL, at("open")), -EISDIR);
	ck_assert_int_eq(try_open(NULL, at("open/public/")), -ENOTDIR);
	ck_assert_int_eq(try_open(NULL, at("open/public/x")), -ENOTDIR);
	ck_assert_int_eq(try_open(NULL, at("open/missing")), -ENOENT);
	/* Relative to the traced process's directory, which we do not know. */
	ck_assert_int_eq(try_open(NULL, "open/public"), -ENOENT);
	ck_assert_int_eq(try_open(NULL, ""), -ENOENT);
	ck_assert_int_eq(try_open(NULL, NULL), -ENOENT);
}
END_TEST

START_TEST(test_open_reads_the_acl)
{
	/* 0640 root-or-us:our-group, then an ACL naming nobody: the kernel
	 * lets nobody read it, and so must we. Skipped where the file system
	 * keeps no ACLs. */
	struct acl a;

	acl_start(&a);
	acl_add(&a, USER_OBJ, 6, 0);
	acl_add(&a, USER, 4, NOBODY);
	acl_add(&a, GROUP_OBJ, 4, 0);
	acl_add(&a, MASK, 4, 0);
	acl_add(&a, OTHER, 0, 0);
	if (setxattr(at("open/group"), "system.posix_acl_access", a.b, a.len, 0) != 0) {
		ck_assert_msg(errno == ENOTSUP || errno == EOPNOTSUPP, "setxattr: %s",
		              strerror(errno));
		return;
	}
	ck_assert_int_eq(try_open(&nobody, at("open/group")), 0);
	/* Another stranger is still kept out. */
	struct useraccess_user other;
	useraccess_user_set(&other, STRANGER + 1, 54322, NULL, 0);
	ck_assert_int_eq(try_open(&other, at("open/group")), -EACCES);
	useraccess_user_close(&other);
}
END_TEST

Suite *useraccess_suite(void)
{
	Suite *s = suite_create("useraccess");
	TCase *tc = tcase_create("rules");

	tcase_add_test(tc, test_mode_classes);
	tcase_add_test(tc, test_root_and_anyone);
	tcase_add_test(tc, test_acl_rules);
	tcase_add_test(tc, test_groups_from_account_database);
	suite_add_tcase(s, tc);
	tc = tcase_create("walk");
	tcase_add_checked_fixture(tc, tree_setup, tree_teardown);
	tcase_add_test(tc, test_open_by_mode);
	tcase_add_test(tc, test_open_needs_search_on_every_directory);
	tcase_add_test(tc, test_open_follows_links_as_the_user);
	tcase_add_test(tc, test_open_refuses_what_is_not_a_regular_file);
	tcase_add_test(tc, test_open_reads_the_acl);
	suite_add_tcase(s, tc);
	return s;
}
