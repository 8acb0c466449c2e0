/*
 * check_ctlwire.c - the line framing of control.sock (common/ctlwire.h).
 *
 * Behaviours pinned, each on a real Unix stream socket pair:
 *  - round trips: what ctlwire_send writes, ctlwire_recv gives back as the
 *    same string without its '\n' (empty, short, and lines long enough that
 *    the reader's buffer grows several times), and the bytes on the wire are
 *    exactly the line and one '\n';
 *  - no byte past a '\n' is consumed: two messages sent back to back come
 *    out as two, and after the first is read the second is still waiting in
 *    the socket, whole;
 *  - partial reads: a line trickled in pieces, one byte at a time or split
 *    across its '\n', arrives whole;
 *  - limits: a line of exactly `max` bytes is read, `max` + 1 is -EMSGSIZE
 *    (also for max 0 and for the 1 MiB request limit), with *out NULL;
 *  - malformed input: a NUL inside a line is -EBADMSG, end of stream before
 *    the '\n' (with or without bytes before it) is -ECONNRESET, and a line
 *    given to ctlwire_send with a '\n' in it is -EINVAL with nothing sent;
 *  - a peer that has gone away makes ctlwire_send return -EPIPE, without a
 *    SIGPIPE;
 *  - ctlwire_connect: an empty path is -ENOENT, one longer than sun_path
 *    -ENAMETOOLONG, a missing socket -ENOENT, a listening socket a
 *    close-on-exec descriptor connected to it.
 *
 * Expected strings and sizes are written out in the tests; nothing is
 * computed with the module's help.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlwire.h"
#include "suites.h"

static int sv[2]; /* sv[0] the writer's end, sv[1] the reader's */

static void pair_open(void)
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void pair_close(void)
{
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	sv[0] = sv[1] = -1;
}

/* Bytes waiting to be read on fd. */
static int waiting(int fd)
{
	int n = -1;
	ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

static void raw_send(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A line of n bytes with a pattern that changes every byte. */
static char *pattern_line(size_t n)
{
	char *s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)('a' + (i * 7 + i / 26) % 26);
	s[n] = '\0';
	return s;
}

/* A writer thread, for lines larger than the socket buffer. */
struct writer {
	int fd;
	const char *data;
	size_t len;
	size_t chunk; /* bytes per send, 0 = use ctlwire_send on data */
	int rc;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	if (w->chunk == 0) {
		w->rc = ctlwire_send(w->fd, w->data);
		return NULL;
	}
	for (size_t off = 0; off < w->len; off += w->chunk) {
		size_t n = w->len - off < w->chunk ? w->len - off : w->chunk;
		if (send(w->fd, w->data + off, n, MSG_NOSIGNAL) != (ssize_t)n) {
			w->rc = -errno;
			return NULL;
		}
		if (w->chunk < 4)
			usleep(200); /* let the reader see each piece alone */
	}
	w->rc = 0;
	return NULL;
}

/* ---- round trips ---- */

START_TEST(test_ctlwire_round_trip)
{
	const char *lines[] = {"", "{}", "{\"cmd\":\"list\"}", "x", " spaces and\ttabs "};
	char *got;

	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		size_t len = strlen(lines[i]);
		ck_assert_int_eq(ctlwire_send(sv[0], lines[i]), 0);
		ck_assert_int_eq(waiting(sv[1]), (int)len + 1);
		ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
		ck_assert_str_eq(got, lines[i]);
		ck_assert_int_eq(waiting(sv[1]), 0);
		free(got);
	}
}
END_TEST

/* The bytes on the wire are the line and one '\n', nothing else. */
START_TEST(test_ctlwire_send_wire_bytes)
{
	char buf[64];

	ck_assert_int_eq(ctlwire_send(sv[0], "abc"), 0);
	ck_assert_int_eq(recv(sv[1], buf, sizeof buf, 0), 4);
	ck_assert_mem_eq(buf, "abc\n", 4);
	ck_assert_int_eq(ctlwire_send(sv[0], ""), 0);
	ck_assert_int_eq(recv(sv[1], buf, sizeof buf, 0), 1);
	ck_assert_int_eq(buf[0], '\n');
}
END_TEST

/* Lines of 4095 .. 4097 bytes (around the first buffer) and 300000 bytes
 * (past several doublings, and past the socket buffer: a thread writes). */
START_TEST(test_ctlwire_round_trip_long)
{
	const size_t sizes[] = {4095, 4096, 4097, 8193, 300000};

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char *line = pattern_line(sizes[i]), *got;
		struct writer w = {.fd = sv[0], .data = line, .len = sizes[i]};
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
		ck_assert_int_eq(ctlwire_recv(sv[1], &got, CTLWIRE_MAX_RESPONSE), 0);
		pthread_join(th, NULL);
		ck_assert_int_eq(w.rc, 0);
		ck_assert_uint_eq(strlen(got), sizes[i]);
		ck_assert(memcmp(got, line, sizes[i]) == 0);
		free(got);
		free(line);
	}
}
END_TEST

START_TEST(test_ctlwire_back_to_back)
{
	char *got;

	raw_send(sv[0], "first\nsecond line\n", 18);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
	ck_assert_str_eq(got, "first");
	free(got);
	/* "second line\n" is still in the socket, untouched. */
	ck_assert_int_eq(waiting(sv[1]), 12);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
	ck_assert_str_eq(got, "second line");
	free(got);
	ck_assert_int_eq(waiting(sv[1]), 0);

	/* The same through ctlwire_send, and a third line half sent. */
	ck_assert_int_eq(ctlwire_send(sv[0], "one"), 0);
	ck_assert_int_eq(ctlwire_send(sv[0], "two"), 0);
	raw_send(sv[0], "thr", 3);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
	ck_assert_str_eq(got, "one");
	free(got);
	ck_assert_int_eq(waiting(sv[1]), 7);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
	ck_assert_str_eq(got, "two");
	free(got);
	ck_assert_int_eq(waiting(sv[1]), 3);
	raw_send(sv[0], "ee\n", 3);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
	ck_assert_str_eq(got, "three");
	free(got);
}
END_TEST

/* ---- partial reads ---- */

START_TEST(test_ctlwire_trickled_line)
{
	static const char msg[] = "{\"cmd\":\"top\",\"pid\":1234}\nnext";
	const size_t chunks[] = {1, 2, 5, 24, 25};

	for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		char *got;
		/* the first line and its '\n', not "next" */
		struct writer w = {.fd = sv[0], .data = msg, .len = 25, .chunk = chunks[i]};
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
		ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
		pthread_join(th, NULL);
		ck_assert_int_eq(w.rc, 0);
		ck_assert_str_eq(got, "{\"cmd\":\"top\",\"pid\":1234}");
		free(got);
		ck_assert_int_eq(waiting(sv[1]), 0);
	}
	/* The '\n' arrives with the start of the next line. */
	char *got;
	raw_send(sv[0], "ab", 2);
	struct writer w = {.fd = sv[0], .data = "c\nde", .len = 4, .chunk = 4};
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), 0);
	pthread_join(th, NULL);
	ck_assert_str_eq(got, "abc");
	free(got);
	ck_assert_int_eq(waiting(sv[1]), 2);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_ctlwire_max_length)
{
	char *got = (char *)1;

	raw_send(sv[0], "0123456789\n", 11);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 10), 0);
	ck_assert_str_eq(got, "0123456789");
	free(got);

	raw_send(sv[0], "0123456789A\n", 12);
	got = (char *)1;
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 10), -EMSGSIZE);
	ck_assert_ptr_null(got);
}
END_TEST

START_TEST(test_ctlwire_max_zero)
{
	char *got;

	raw_send(sv[0], "\n", 1);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 0), 0);
	ck_assert_str_eq(got, "");
	free(got);
	raw_send(sv[0], "a\n", 2);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 0), -EMSGSIZE);
	ck_assert_ptr_null(got);
}
END_TEST

/* The request limit of CONTROL.md: 1 MiB is read, one byte more is not. */
START_TEST(test_ctlwire_request_limit)
{
	for (int over = 0; over <= 1; over++) {
		size_t n = CTLWIRE_MAX_REQUEST + (size_t)over;
		char *line = pattern_line(n), *got = (char *)1;
		struct writer w = {.fd = sv[0], .data = line, .len = n};
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
		int rc = ctlwire_recv(sv[1], &got, CTLWIRE_MAX_REQUEST);
		if (over) {
			ck_assert_int_eq(rc, -EMSGSIZE);
			ck_assert_ptr_null(got);
			/* The writer may still be blocked on the rest. */
			shutdown(sv[1], SHUT_RD);
			close(sv[1]);
			sv[1] = -1;
		} else {
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_eq(strlen(got), n);
			ck_assert(memcmp(got, line, n) == 0);
			free(got);
		}
		pthread_join(th, NULL);
		if (!over)
			ck_assert_int_eq(w.rc, 0);
		free(line);
	}
}
END_TEST

/* ---- malformed input ---- */

START_TEST(test_ctlwire_nul_in_line)
{
	char *got = (char *)1;

	raw_send(sv[0], "ab\0cd\n", 6);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), -EBADMSG);
	ck_assert_ptr_null(got);
}
END_TEST

START_TEST(test_ctlwire_eof_before_newline)
{
	char *got = (char *)1;

	raw_send(sv[0], "unterminated", 12);
	shutdown(sv[0], SHUT_WR);
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), -ECONNRESET);
	ck_assert_ptr_null(got);
}
END_TEST

START_TEST(test_ctlwire_eof_without_bytes)
{
	char *got = (char *)1;

	close(sv[0]);
	sv[0] = -1;
	ck_assert_int_eq(ctlwire_recv(sv[1], &got, 100), -ECONNRESET);
	ck_assert_ptr_null(got);
}
END_TEST

START_TEST(test_ctlwire_send_refuses_newline)
{
	ck_assert_int_eq(ctlwire_send(sv[0], "two\nlines"), -EINVAL);
	ck_assert_int_eq(ctlwire_send(sv[0], "\n"), -EINVAL);
	ck_assert_int_eq(ctlwire_send(sv[0], "trailing\n"), -EINVAL);
	ck_assert_int_eq(waiting(sv[1]), 0);
}
END_TEST

/* With SIGPIPE at its default action, a SIGPIPE would end the test. */
START_TEST(test_ctlwire_send_to_closed_peer)
{
	signal(SIGPIPE, SIG_DFL);
	close(sv[1]);
	sv[1] = -1;
	ck_assert_int_eq(ctlwire_send(sv[0], "anyone there?"), -EPIPE);
}
END_TEST

/* ---- connect ---- */

START_TEST(test_ctlwire_connect_bad_paths)
{
	char longpath[200];

	ck_assert_int_eq(ctlwire_connect(""), -ENOENT);
	memset(longpath, 'x', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	ck_assert_int_eq(ctlwire_connect(longpath), -ENAMETOOLONG);
	/* 107 bytes fit sun_path (108 with the NUL); 108 do not. */
	memset(longpath, 'y', 108);
	longpath[0] = '/';
	longpath[108] = '\0';
	ck_assert_int_eq(ctlwire_connect(longpath), -ENAMETOOLONG);
	longpath[107] = '\0';
	ck_assert_int_eq(ctlwire_connect(longpath), -ENOENT);
	ck_assert_int_eq(ctlwire_connect("/nonexistent-dir-for-ctlwire/control.sock"), -ENOENT);
}
END_TEST

START_TEST(test_ctlwire_connect_to_listener)
{
	char dir[] = "/tmp/ctlwire.XXXXXX", path[128];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int lfd, fd, afd;
	char *got;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/control.sock", dir);
	ck_assert_uint_lt(strlen(path), sizeof sa.sun_path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);

	fd = ctlwire_connect(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	afd = accept(lfd, NULL, NULL);
	ck_assert_int_ge(afd, 0);
	ck_assert_int_eq(ctlwire_send(fd, "{\"cmd\":\"status\"}"), 0);
	ck_assert_int_eq(ctlwire_recv(afd, &got, CTLWIRE_MAX_REQUEST), 0);
	ck_assert_str_eq(got, "{\"cmd\":\"status\"}");
	free(got);
	ck_assert_int_eq(ctlwire_send(afd, "{\"ok\":true}"), 0);
	ck_assert_int_eq(ctlwire_recv(fd, &got, CTLWIRE_MAX_RESPONSE), 0);
	ck_assert_str_eq(got, "{\"ok\":true}");
	free(got);
	close(afd);
	close(fd);
	close(lfd);
	unlink(path);
	rmdir(dir);
}
END_TEST

Suite *ctlwire_suite(void)
{
	Suite *s = suite_create("ctlwire");
	TCase *tc;

	tc = tcase_create("framing");
	tcase_add_checked_fixture(tc, pair_open, pair_close);
	tcase_add_test(tc, test_ctlwire_round_trip);
	tcase_add_test(tc, test_ctlwire_send_wire_bytes);
	tcase_add_test(tc, test_ctlwire_round_trip_long);
	tcase_add_test(tc, test_ctlwire_back_to_back);
	tcase_add_test(tc, test_ctlwire_trickled_line);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, pair_open, pair_close);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_ctlwire_max_length);
	tcase_add_test(tc, test_ctlwire_max_zero);
	tcase_add_test(tc, test_ctlwire_request_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_checked_fixture(tc, pair_open, pair_close);
	tcase_add_test(tc, test_ctlwire_nul_in_line);
	tcase_add_test(tc, test_ctlwire_eof_before_newline);
	tcase_add_test(tc, test_ctlwire_eof_without_bytes);
	tcase_add_test(tc, test_ctlwire_send_refuses_newline);
	tcase_add_test(tc, test_ctlwire_send_to_closed_peer);
	suite_add_tcase(s, tc);

	tc = tcase_create("connect");
	tcase_add_test(tc, test_ctlwire_connect_bad_paths);
	tcase_add_test(tc, test_ctlwire_connect_to_listener);
	suite_add_tcase(s, tc);
	return s;
}
