/*
 * check_proto.c - the wire codec: every message round-trips at its limits, the
 * bytes match PROTOCOL.md, and every malformed input is refused.
 *
 * The daemon reads agent.sock from processes it does not trust, so the
 * decoders are tested against hostile input more than against friendly input.
 * Every decoder call on a malformed payload goes through decode_exact(), which
 * hands the decoder a heap copy of exactly the bytes it is allowed to read:
 * under ASan a read one byte too far is then an error instead of a silent read
 * of the test's larger buffer.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "suites.h"

/* Big enough for the largest frame an encoder can produce (a HELLO with the
 * longest exe and cmdline) plus room for sentinels behind it. */
#define BUF_SIZE                                                                                   \
	(PROTO_HDR_SIZE + PROTO_HELLO_FIXED + 4 + PROTO_MAX_PATH + 4 + PROTO_MAX_CMDLINE + 4 +     \
	 PROTO_MAX_PATH + 64)
#define SENTINEL 0xa5

static uint8_t buf[BUF_SIZE];
static uint8_t work[BUF_SIZE];
static char big_path[PROTO_MAX_PATH + 1];
static char big_cmdline[PROTO_MAX_CMDLINE + 1];

typedef int (*decode_fn)(const uint8_t *p, size_t n);

static int dec_hdr(const uint8_t *p, size_t n)
{
	struct proto_hdr h;
	return proto_hdr_decode(p, n, &h);
}

static int dec_hello(const uint8_t *p, size_t n)
{
	struct proto_hello m;
	return proto_hello_decode(p, n, &m);
}

static int dec_module(const uint8_t *p, size_t n)
{
	struct proto_module m;
	return proto_module_decode(p, n, &m);
}

static int decode_exact(decode_fn fn, const uint8_t *p, size_t n)
{
	static uint8_t empty[1];
	/* calloc, not malloc: for n == 0 gcc -O2 would otherwise warn that the
	 * (zero) bytes passed on are uninitialised. */
	uint8_t *copy = calloc(1, n);

	/* A zero-size allocation may legitimately be NULL; a decoder must still
	 * get a valid pointer, since the daemon never hands it NULL either. */
	if (copy == NULL) {
		ck_assert_uint_eq(n, 0);
		return fn(empty, 0);
	}
	memcpy(copy, p, n);
	int rc = fn(copy, n);
	free(copy);
	return rc;
}

/* Every strict prefix of a valid payload is malformed, the whole is valid. */
static void assert_prefixes_rejected(decode_fn fn, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(decode_exact(fn, p, i) == -EBADMSG,
		              "prefix of %zu of %zu bytes accepted", i, n);
	ck_assert_int_eq(decode_exact(fn, p, n), 0);
}

/* Trailing bytes after a complete message are malformed, whatever they hold. */
static void assert_trailing_rejected(decode_fn fn, const uint8_t *p, size_t n)
{
	static const size_t extra[] = {1, 3, 4, 8, 16};

	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		memcpy(work, p, n);
		memset(work + n, 0, extra[i]);
		ck_assert_msg(decode_exact(fn, work, n + extra[i]) == -EBADMSG,
		              "%zu trailing zero bytes accepted", extra[i]);
	}
}

/* Checks a frame's header against what its encoder returned and gives back
 * the payload length; the payload starts at frame + PROTO_HDR_SIZE. */
static size_t frame_check(const uint8_t *frame, ssize_t size, uint16_t type)
{
	struct proto_hdr h;

	ck_assert_int_ge(size, PROTO_HDR_SIZE);
	ck_assert_int_eq(proto_hdr_decode(frame, (size_t)size, &h), 0);
	ck_assert_uint_eq(h.type, type);
	ck_assert_uint_eq(h.len, (size_t)size - PROTO_HDR_SIZE);
	return h.len;
}

/* An encoder must not write past the size it returns. */
static void assert_sentinel_after(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < 16; i++)
		ck_assert_uint_eq(p[n + i], SENTINEL);
}

static void assert_untouched(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(p[i] == SENTINEL, "byte %zu written by a failing encoder", i);
}

static void fill_big_strings(void)
{
	for (size_t i = 0; i < sizeof(big_path); i++)
		big_path[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < sizeof(big_cmdline); i++)
		big_cmdline[i] = i % 7 == 6 ? '\0' : (char)('A' + i % 26);
}

static void setup(void)
{
	memset(buf, SENTINEL, sizeof(buf));
	memset(work, 0, sizeof(work));
	fill_big_strings();
}

/* ---- header ---- */

START_TEST(test_hdr_layout)
{
	static const uint8_t want[] = {0x04, 0x03, 0x02, 0x01, 0x04, 0x00, 0x00, 0x00}; /* WAKE */
	struct proto_hdr h;

	proto_hdr_encode(buf, PROTO_WAKE, 0x01020304u);
	ck_assert_mem_eq(buf, want, sizeof(want));
	assert_sentinel_after(buf, PROTO_HDR_SIZE);
	/* 0x01020304 is over the payload limit: decoding refuses what the
	 * encoder was told to write, because the encoder does not judge. */
	ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_SIZE, &h), -EBADMSG);
}
END_TEST

START_TEST(test_hdr_round_trip)
{
	static const uint32_t lens[] = {0, 1, 8, PROTO_MAX_PAYLOAD - 1, PROTO_MAX_PAYLOAD};
	struct proto_hdr h;

	for (uint16_t type = PROTO_HELLO; type <= PROTO_TYPE_MAX; type++) {
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			proto_hdr_encode(buf, type, lens[i]);
			memset(&h, 0, sizeof(h));
			ck_assert_int_eq(decode_exact(dec_hdr, buf, PROTO_HDR_SIZE), 0);
			ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_SIZE, &h), 0);
			ck_assert_uint_eq(h.type, type);
			ck_assert_uint_eq(h.len, lens[i]);
		}
	}
}
END_TEST

START_TEST(test_hdr_more_bytes_than_header)
{
	/* The daemon hands the decoder its whole read buffer; only the first
	 * eight bytes are the header, the rest is not the header's business. */
	struct proto_hdr h;

	proto_hdr_encode(buf, PROTO_MODULE, 8);
	memset(buf + PROTO_HDR_SIZE, 0xff, 100);
	ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_SIZE + 100, &h), 0);
	ck_assert_uint_eq(h.len, 8);
	ck_assert_uint_eq(h.type, PROTO_MODULE);
}
END_TEST

START_TEST(test_hdr_truncated)
{
	proto_hdr_encode(buf, PROTO_WAKE, 0);
	assert_prefixes_rejected(dec_hdr, buf, PROTO_HDR_SIZE);
}
END_TEST

START_TEST(test_hdr_unknown_type)
{
	static const uint16_t bad[] = {0, PROTO_TYPE_MAX + 1, 0x00ff, 0x0100, 0x8000, 0xffff};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		proto_hdr_encode(buf, bad[i], 0);
		ck_assert_msg(decode_exact(dec_hdr, buf, PROTO_HDR_SIZE) == -EBADMSG,
		              "type %u accepted", (unsigned)bad[i]);
	}
}
END_TEST

START_TEST(test_hdr_reserved_nonzero)
{
	/* Every single bit of the reserved field, so a later version can give
	 * it a meaning and old daemons refuse it rather than misread it. */
	for (int byte = 6; byte < 8; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			proto_hdr_encode(buf, PROTO_HELLO, 30);
			buf[byte] = (uint8_t)(1u << bit);
			ck_assert_msg(decode_exact(dec_hdr, buf, PROTO_HDR_SIZE) == -EBADMSG,
			              "reserved byte %d = 0x%02x accepted", byte, 1u << bit);
		}
	}
}
END_TEST

START_TEST(test_hdr_payload_too_big)
{
	static const uint32_t bad[] = {PROTO_MAX_PAYLOAD + 1, PROTO_MAX_PAYLOAD * 2, 0x7fffffffu,
	                               0x80000000u, UINT32_MAX};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		proto_hdr_encode(buf, PROTO_MODULE, bad[i]);
		ck_assert_msg(decode_exact(dec_hdr, buf, PROTO_HDR_SIZE) == -EBADMSG,
		              "length %u accepted", (unsigned)bad[i]);
	}
}
END_TEST

/* ---- HELLO ---- */

static const struct proto_hello hello_typical = {
    .version = PROTO_VERSION,
    .flags = PROTO_HELLO_DROP | PROTO_HELLO_SAMPLED,
    .nframes = 32,
    .pid = 4242,
    .sample_bytes = 512 * 1024,
    .exe = "/usr/bin/app",
    .exe_len = 12,
    .cmdline = "app\0--port=8080\0",
    .cmdline_len = 16,
    .started = "/usr/local/bin/app-link",
    .started_len = 23,
};

static void assert_hello_eq(const struct proto_hello *a, const struct proto_hello *b)
{
	ck_assert_uint_eq(a->version, b->version);
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->nframes, b->nframes);
	ck_assert_uint_eq(a->pid, b->pid);
	ck_assert_uint_eq(a->sample_bytes, b->sample_bytes);
	ck_assert_uint_eq(a->exe_len, b->exe_len);
	ck_assert_uint_eq(a->cmdline_len, b->cmdline_len);
	if (a->exe_len > 0)
		ck_assert_mem_eq(a->exe, b->exe, a->exe_len);
	if (a->cmdline_len > 0)
		ck_assert_mem_eq(a->cmdline, b->cmdline, a->cmdline_len);
	ck_assert_uint_eq(a->started_len, b->started_len);
	if (a->started_len > 0)
		ck_assert_mem_eq(a->started, b->started, a->started_len);
}

/* Encodes m into buf, decodes it back and compares; returns the frame size. */
static size_t hello_round_trip(const struct proto_hello *m)
{
	struct proto_hello got;
	ssize_t size = proto_hello_encode(buf, sizeof(buf) - 16, m);

	ck_assert_int_eq(size, PROTO_HDR_SIZE + PROTO_HELLO_FIXED + 4 + m->exe_len + 4 +
	                           m->cmdline_len + 4 + m->started_len);
	size_t len = frame_check(buf, size, PROTO_HELLO);
	assert_sentinel_after(buf, (size_t)size);
	ck_assert_int_eq(proto_hello_decode(buf + PROTO_HDR_SIZE, len, &got), 0);
	assert_hello_eq(&got, m);
	/* Strings point into the caller's buffer, nothing is copied. */
	ck_assert_ptr_eq(got.exe, (const char *)buf + PROTO_HDR_SIZE + PROTO_HELLO_FIXED + 4);
	return (size_t)size;
}

START_TEST(test_hello_layout)
{
	static const uint8_t want[] = {
	    0x3a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* header: 58 bytes, HELLO */
	    0x05, 0x00, 0x00, 0x00,                         /* version */
	    0x05, 0x00, 0x00, 0x00,                         /* flags DROP|SAMPLED */
	    0x20, 0x00, 0x00, 0x00,                         /* nframes 32 */
	    0x34, 0x12, 0x00, 0x00,                         /* pid */
	    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* sample_bytes */
	    0x78, 0x56, 0x00, 0x00,                         /* parent_pid */
	    0x00, 0x00, 0x00, 0x00,                         /* reserved */
	    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x00, 0x00, /* fork_seq */
	    0x02, 0x00, 0x00, 0x00, 'a',  'b',              /* exe */
	    0x03, 0x00, 0x00, 0x00, 'a',  0x00, 'b',        /* cmdline */
	    0x01, 0x00, 0x00, 0x00, '/',                    /* started */
	};
	const struct proto_hello m = {
	    .version = 5,
	    .flags = 5,
	    .nframes = 32,
	    .pid = 0x1234,
	    .sample_bytes = 0x0102030405060708u,
	    .parent_pid = 0x5678,
	    .fork_seq = 0x665544332211u,
	    .exe = "ab",
	    .exe_len = 2,
	    .cmdline = "a\0b",
	    .cmdline_len = 3,
	    .started = "/",
	    .started_len = 1,
	};

	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

START_TEST(test_hello_round_trip)
{
	hello_round_trip(&hello_typical);
}
END_TEST

START_TEST(test_hello_boundaries)
{
	struct proto_hello m = hello_typical;

	/* Empty strings, given as NULL: nothing is read from them. */
	m.exe = NULL;
	m.exe_len = 0;
	m.cmdline = NULL;
	m.cmdline_len = 0;
	m.started = NULL;
	m.started_len = 0;
	m.flags = 0;
	m.nframes = 1;
	m.pid = 0;
	m.sample_bytes = 0;
	struct proto_hello got;
	ssize_t size = proto_hello_encode(buf, sizeof(buf), &m);
	ck_assert_int_eq(size, PROTO_HDR_SIZE + PROTO_HELLO_FIXED + 12);
	ck_assert_int_eq(proto_hello_decode(buf + PROTO_HDR_SIZE, PROTO_HELLO_FIXED + 12, &got), 0);
	ck_assert_uint_eq(got.exe_len, 0);
	ck_assert_uint_eq(got.cmdline_len, 0);
	ck_assert_uint_eq(got.nframes, 1);

	/* Every limit at once. */
	m.flags = PROTO_HELLO_FLAGS_ALL;
	m.nframes = PROTO_MAX_FRAMES;
	m.pid = UINT32_MAX;
	m.sample_bytes = UINT64_MAX;
	m.exe = big_path;
	m.exe_len = PROTO_MAX_PATH;
	m.cmdline = big_cmdline;
	m.cmdline_len = PROTO_MAX_CMDLINE;
	m.started = big_path;
	m.started_len = PROTO_MAX_PATH;
	size_t full = hello_round_trip(&m);
	ck_assert_uint_le(full - PROTO_HDR_SIZE, PROTO_MAX_PAYLOAD);
	/* Exactly enough room is enough. */
	ck_assert_int_eq(proto_hello_encode(work, full, &m), full);
	ck_assert_int_eq(proto_hello_encode(work, full - 1, &m), -ENOSPC);

	/* The largest hello, truncated right before and inside each string. */
	const uint8_t *p = buf + PROTO_HDR_SIZE;
	size_t n = full - PROTO_HDR_SIZE;
	const size_t exe_end = PROTO_HELLO_FIXED + 4 + PROTO_MAX_PATH;
	const size_t cuts[] = {PROTO_HELLO_FIXED - 1, PROTO_HELLO_FIXED, PROTO_HELLO_FIXED + 3,
	                       PROTO_HELLO_FIXED + 4, exe_end - 1,       exe_end,
	                       exe_end + 4,           exe_end + 5};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
		ck_assert_int_eq(decode_exact(dec_hello, p, cuts[i]), -EBADMSG);
	ck_assert_int_eq(decode_exact(dec_hello, p, n - 1), -EBADMSG);
	ck_assert_int_eq(decode_exact(dec_hello, p, n), 0);
}
END_TEST

START_TEST(test_hello_encode_einval)
{
	struct proto_hello m;

	m = hello_typical;
	m.exe = big_path;
	m.exe_len = PROTO_MAX_PATH + 1;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);

	m = hello_typical;
	m.cmdline = big_cmdline;
	m.cmdline_len = PROTO_MAX_CMDLINE + 1;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);

	m = hello_typical;
	m.exe_len = UINT32_MAX;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);

	/* The bits past the known ones (PROTO_HELLO_FLAGS_ALL). */
	for (int bit = __builtin_popcount(PROTO_HELLO_FLAGS_ALL); bit < 32; bit++) {
		m = hello_typical;
		m.flags = 1u << bit;
		ck_assert_msg(proto_hello_encode(buf, sizeof(buf), &m) == -EINVAL,
		              "flag bit %d encoded", bit);
	}

	/* A depth the daemon would refuse must not be sent at all. */
	m = hello_typical;
	m.nframes = 0;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);
	m.nframes = PROTO_MAX_FRAMES + 1;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);
	m.nframes = UINT32_MAX;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);
	assert_untouched(buf, 64);
}
END_TEST

START_TEST(test_hello_encode_enospc)
{
	ssize_t size = proto_hello_encode(work, sizeof(work), &hello_typical);

	ck_assert_int_gt(size, 0);
	for (size_t cap = 0; cap < (size_t)size; cap++) {
		ck_assert_msg(proto_hello_encode(buf, cap, &hello_typical) == -ENOSPC,
		              "cap %zu accepted", cap);
		assert_untouched(buf, (size_t)size + 16);
	}
	ck_assert_int_eq(proto_hello_encode(buf, (size_t)size, &hello_typical), size);
	ck_assert_mem_eq(buf, work, (size_t)size);
}
END_TEST

START_TEST(test_hello_truncated)
{
	ssize_t size = proto_hello_encode(buf, sizeof(buf), &hello_typical);

	assert_prefixes_rejected(dec_hello, buf + PROTO_HDR_SIZE, (size_t)size - PROTO_HDR_SIZE);
}
END_TEST

START_TEST(test_hello_trailing)
{
	ssize_t size = proto_hello_encode(buf, sizeof(buf), &hello_typical);

	assert_trailing_rejected(dec_hello, buf + PROTO_HDR_SIZE, (size_t)size - PROTO_HDR_SIZE);
}
END_TEST

/* Encodes the typical hello into work and returns its payload length, for
 * tests that then corrupt one field. */
static size_t hello_payload(void)
{
	ssize_t size = proto_hello_encode(work, sizeof(work), &hello_typical);

	ck_assert_int_gt(size, 0);
	memmove(work, work + PROTO_HDR_SIZE, (size_t)size - PROTO_HDR_SIZE);
	return (size_t)size - PROTO_HDR_SIZE;
}

/* A fork child names its parent and the parent's FORK record together, or
 * neither; the reserved word between them is zero. */
START_TEST(test_hello_fork_fields)
{
	struct proto_hello m = hello_typical, got;
	size_t n;

	m.parent_pid = 77;
	m.fork_seq = 12345;
	hello_round_trip(&m);
	ck_assert_int_eq(
	    proto_hello_decode(buf + PROTO_HDR_SIZE,
	                       (size_t)proto_hello_encode(buf, sizeof(buf), &m) - PROTO_HDR_SIZE,
	                       &got),
	    0);
	ck_assert_uint_eq(got.parent_pid, 77);
	ck_assert_uint_eq(got.fork_seq, 12345);

	n = hello_payload();
	proto_put_u32(work + 24, 77); /* a parent, no FORK record */
	ck_assert_int_eq(decode_exact(dec_hello, work, n), -EBADMSG);
	n = hello_payload();
	proto_put_u64(work + 32, 5); /* a FORK record, no parent */
	ck_assert_int_eq(decode_exact(dec_hello, work, n), -EBADMSG);
	n = hello_payload();
	proto_put_u32(work + 28, 1); /* the reserved word */
	ck_assert_int_eq(decode_exact(dec_hello, work, n), -EBADMSG);
	m.fork_seq = PROTO_SEQ_MAX + 1;
	ck_assert_int_eq(proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);
}
END_TEST

START_TEST(test_hello_bad_version)
{
	static const uint32_t bad[] = {0, 1, PROTO_VERSION + 1, 0x100, UINT32_MAX};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = hello_payload();
		proto_put_u32(work, bad[i]);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG, "version %u accepted",
		              (unsigned)bad[i]);
	}
}
END_TEST

START_TEST(test_hello_unknown_flags)
{
	/* The bits past the known ones (PROTO_HELLO_FLAGS_ALL). */
	for (int bit = __builtin_popcount(PROTO_HELLO_FLAGS_ALL); bit < 32; bit++) {
		size_t n = hello_payload();
		proto_put_u32(work + 4, PROTO_HELLO_FLAGS_ALL | 1u << bit);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG, "flag bit %d accepted",
		              bit);
	}
}
END_TEST

START_TEST(test_hello_bad_nframes)
{
	static const uint32_t bad[] = {0, PROTO_MAX_FRAMES + 1, 0x10000, UINT32_MAX};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = hello_payload();
		proto_put_u32(work + 8, bad[i]);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG, "nframes %u accepted",
		              (unsigned)bad[i]);
	}
	size_t n = hello_payload();
	proto_put_u32(work + 8, PROTO_MAX_FRAMES);
	ck_assert_int_eq(decode_exact(dec_hello, work, n), 0);
}
END_TEST

START_TEST(test_hello_bad_lengths)
{
	/* Lengths one past the data, far past it, and large enough that an
	 * offset computed in 32 bits would wrap around to something small. */
	const uint32_t exe_len = hello_typical.exe_len;
	const uint32_t cmd_len = hello_typical.cmdline_len;
	const size_t exe_at = PROTO_HELLO_FIXED;
	const size_t cmd_at = PROTO_HELLO_FIXED + 4 + exe_len;
	size_t n;

	const uint32_t bad_exe[] = {exe_len + 1,        exe_len + 4 + cmd_len + 1,
	                            PROTO_MAX_PATH + 1, 0xfffffffcu,
	                            0xffffffe0u,        UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_exe) / sizeof(bad_exe[0]); i++) {
		n = hello_payload();
		proto_put_u32(work + exe_at, bad_exe[i]);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG, "exe_len %u accepted",
		              (unsigned)bad_exe[i]);
	}

	/* Shorter than the data: the rest no longer parses as a cmdline, or
	 * parses and leaves trailing bytes. Either way, malformed. */
	for (uint32_t l = 0; l < exe_len; l++) {
		n = hello_payload();
		proto_put_u32(work + exe_at, l);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG, "exe_len %u accepted",
		              (unsigned)l);
	}

	const uint32_t bad_cmd[] = {cmd_len + 1, PROTO_MAX_CMDLINE + 1, 0xfffffffcu, UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_cmd) / sizeof(bad_cmd[0]); i++) {
		n = hello_payload();
		proto_put_u32(work + cmd_at, bad_cmd[i]);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG,
		              "cmdline_len %u accepted", (unsigned)bad_cmd[i]);
	}
	for (uint32_t l = 0; l < cmd_len; l++) {
		n = hello_payload();
		proto_put_u32(work + cmd_at, l);
		ck_assert_msg(decode_exact(dec_hello, work, n) == -EBADMSG,
		              "cmdline_len %u accepted", (unsigned)l);
	}
}
END_TEST

START_TEST(test_hello_strings_over_limit)
{
	/* The bytes are all there and the lengths agree with them; only the
	 * protocol limit is exceeded. Built by hand since the encoder refuses. */
	size_t n;

	memset(work, 0, PROTO_HELLO_FIXED);
	proto_put_u32(work, PROTO_VERSION);
	proto_put_u32(work + 8, 32);
	n = PROTO_HELLO_FIXED;
	proto_put_u32(work + n, PROTO_MAX_PATH + 1);
	memcpy(work + n + 4, big_path, PROTO_MAX_PATH + 1);
	n += 4 + PROTO_MAX_PATH + 1;
	proto_put_u32(work + n, 0);     /* cmdline_len */
	proto_put_u32(work + n + 4, 0); /* started_len */
	n += 8;
	ck_assert_int_eq(decode_exact(dec_hello, work, n), -EBADMSG);
	/* The same frame one byte shorter is exactly at the limit, and fine. */
	proto_put_u32(work + PROTO_HELLO_FIXED, PROTO_MAX_PATH);
	proto_put_u32(work + PROTO_HELLO_FIXED + 4 + PROTO_MAX_PATH, 0);
	proto_put_u32(work + PROTO_HELLO_FIXED + 8 + PROTO_MAX_PATH, 0);
	ck_assert_int_eq(decode_exact(dec_hello, work, n - 1), 0);

	n = PROTO_HELLO_FIXED;
	proto_put_u32(work + n, 0);
	n += 4;
	proto_put_u32(work + n, PROTO_MAX_CMDLINE + 1);
	memcpy(work + n + 4, big_cmdline, PROTO_MAX_CMDLINE + 1);
	n += 4 + PROTO_MAX_CMDLINE + 1;
	proto_put_u32(work + n, 0); /* started_len */
	n += 4;
	ck_assert_int_eq(decode_exact(dec_hello, work, n), -EBADMSG);
	proto_put_u32(work + PROTO_HELLO_FIXED + 4, PROTO_MAX_CMDLINE);
	proto_put_u32(work + PROTO_HELLO_FIXED + 8 + PROTO_MAX_CMDLINE, 0);
	ck_assert_int_eq(decode_exact(dec_hello, work, n - 1), 0);

	/* The path as started: PROTO_MAX_PATH too. */
	n = PROTO_HELLO_FIXED;
	proto_put_u32(work + n, 0);
	proto_put_u32(work + n + 4, 0);
	n += 8;
	proto_put_u32(work + n, PROTO_MAX_PATH + 1);
	memcpy(work + n + 4, big_path, PROTO_MAX_PATH + 1);
	n += 4 + PROTO_MAX_PATH + 1;
	ck_assert_int_eq(decode_exact(dec_hello, work, n), -EBADMSG);
	proto_put_u32(work + PROTO_HELLO_FIXED + 8, PROTO_MAX_PATH);
	ck_assert_int_eq(decode_exact(dec_hello, work, n - 1), 0);
}
END_TEST

/* ---- MODULE ---- */

static const uint8_t build_id20[20] = {0xde, 0xad, 0xbe, 0xef, 1,  2,  3,  4,  5,  6,
                                       7,    8,    9,    10,   11, 12, 13, 14, 15, 16};

static const struct proto_module module_typical = {
    .bias = 0x7f0000000000u,
    .lo = 0x7f0000001000u,
    .hi = 0x7f0000042000u,
    .build_id = build_id20,
    .build_id_len = sizeof(build_id20),
    .path = "/usr/lib/x86_64-linux-gnu/libc.so.6",
    .path_len = 35,
};

static size_t module_round_trip(const struct proto_module *m)
{
	struct proto_module got;
	ssize_t size = proto_module_encode(buf, sizeof(buf) - 16, m);

	ck_assert_int_eq(size, PROTO_HDR_SIZE + 24 + 4 + m->build_id_len + 4 + m->path_len);
	size_t len = frame_check(buf, size, PROTO_MODULE);
	assert_sentinel_after(buf, (size_t)size);
	ck_assert_int_eq(proto_module_decode(buf + PROTO_HDR_SIZE, len, &got), 0);
	ck_assert_uint_eq(got.bias, m->bias);
	ck_assert_uint_eq(got.lo, m->lo);
	ck_assert_uint_eq(got.hi, m->hi);
	ck_assert_uint_eq(got.build_id_len, m->build_id_len);
	ck_assert_uint_eq(got.path_len, m->path_len);
	if (m->build_id_len > 0)
		ck_assert_mem_eq(got.build_id, m->build_id, m->build_id_len);
	if (m->path_len > 0)
		ck_assert_mem_eq(got.path, m->path, m->path_len);
	return (size_t)size;
}

START_TEST(test_module_layout)
{
	static const uint8_t want[] = {
	    0x24, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, /* header: 36 bytes, MODULE */
	    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* bias */
	    0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, /* lo */
	    0x00, 0x10, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, /* hi */
	    0x02, 0x00, 0x00, 0x00, 0xde, 0xad,             /* build-id */
	    0x02, 0x00, 0x00, 0x00, '/',  'x',              /* path */
	};
	static const uint8_t id[] = {0xde, 0xad};
	const struct proto_module m = {
	    .bias = 0x1000,
	    .lo = 0x400000,
	    .hi = 0x401000,
	    .build_id = id,
	    .build_id_len = 2,
	    .path = "/x",
	    .path_len = 2,
	};

	ck_assert_int_eq(proto_module_encode(buf, sizeof(buf), &m), sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

START_TEST(test_module_round_trip)
{
	module_round_trip(&module_typical);
}
END_TEST

START_TEST(test_module_boundaries)
{
	static uint8_t id64[PROTO_MAX_BUILD_ID];
	struct proto_module m = module_typical;

	for (size_t i = 0; i < sizeof(id64); i++)
		id64[i] = (uint8_t)(0xff - i);

	/* The main program may come with an empty path and no build-id. */
	m.build_id = NULL;
	m.build_id_len = 0;
	m.path = NULL;
	m.path_len = 0;
	module_round_trip(&m);

	/* An empty range and the whole address space are both valid ranges. */
	m.lo = m.hi = 0x400000;
	module_round_trip(&m);
	m.lo = 0;
	m.hi = UINT64_MAX;
	m.bias = UINT64_MAX;
	module_round_trip(&m);

	m.build_id = id64;
	m.build_id_len = PROTO_MAX_BUILD_ID;
	m.path = big_path;
	m.path_len = PROTO_MAX_PATH;
	size_t full = module_round_trip(&m);
	ck_assert_int_eq(proto_module_encode(work, full, &m), full);
	ck_assert_int_eq(proto_module_encode(work, full - 1, &m), -ENOSPC);
	assert_prefixes_rejected(dec_module, buf + PROTO_HDR_SIZE, full - PROTO_HDR_SIZE);
}
END_TEST

START_TEST(test_module_encode_einval)
{
	static uint8_t id65[PROTO_MAX_BUILD_ID + 1];
	struct proto_module m;

	m = module_typical;
	m.build_id = id65;
	m.build_id_len = PROTO_MAX_BUILD_ID + 1;
	ck_assert_int_eq(proto_module_encode(buf, sizeof(buf), &m), -EINVAL);

	m = module_typical;
	m.path = big_path;
	m.path_len = PROTO_MAX_PATH + 1;
	ck_assert_int_eq(proto_module_encode(buf, sizeof(buf), &m), -EINVAL);

	m = module_typical;
	m.path_len = UINT32_MAX;
	ck_assert_int_eq(proto_module_encode(buf, sizeof(buf), &m), -EINVAL);

	m = module_typical;
	m.lo = m.hi + 1;
	ck_assert_int_eq(proto_module_encode(buf, sizeof(buf), &m), -EINVAL);
	m.lo = UINT64_MAX;
	m.hi = 0;
	ck_assert_int_eq(proto_module_encode(buf, sizeof(buf), &m), -EINVAL);
	assert_untouched(buf, 64);
}
END_TEST

START_TEST(test_module_encode_enospc)
{
	ssize_t size = proto_module_encode(work, sizeof(work), &module_typical);

	ck_assert_int_gt(size, 0);
	for (size_t cap = 0; cap < (size_t)size; cap++) {
		ck_assert_msg(proto_module_encode(buf, cap, &module_typical) == -ENOSPC,
		              "cap %zu accepted", cap);
		assert_untouched(buf, (size_t)size + 16);
	}
	ck_assert_int_eq(proto_module_encode(buf, (size_t)size, &module_typical), size);
	ck_assert_mem_eq(buf, work, (size_t)size);
}
END_TEST

static size_t module_payload(void)
{
	ssize_t size = proto_module_encode(work, sizeof(work), &module_typical);

	ck_assert_int_gt(size, 0);
	memmove(work, work + PROTO_HDR_SIZE, (size_t)size - PROTO_HDR_SIZE);
	return (size_t)size - PROTO_HDR_SIZE;
}

START_TEST(test_module_truncated_trailing)
{
	size_t n = module_payload();

	memcpy(buf, work, n);
	assert_prefixes_rejected(dec_module, buf, n);
	assert_trailing_rejected(dec_module, buf, n);
}
END_TEST

START_TEST(test_module_lo_above_hi)
{
	size_t n = module_payload();

	proto_put_u64(work + 8, module_typical.hi + 1);
	ck_assert_int_eq(decode_exact(dec_module, work, n), -EBADMSG);
	proto_put_u64(work + 8, UINT64_MAX);
	proto_put_u64(work + 16, 0);
	ck_assert_int_eq(decode_exact(dec_module, work, n), -EBADMSG);
}
END_TEST

START_TEST(test_module_bad_lengths)
{
	const uint32_t id_len = module_typical.build_id_len;
	const uint32_t path_len = module_typical.path_len;
	const size_t path_at = 28 + id_len;
	size_t n;

	const uint32_t bad_id[] = {id_len + 1, PROTO_MAX_BUILD_ID + 1, 0xfffffffcu, UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_id) / sizeof(bad_id[0]); i++) {
		n = module_payload();
		proto_put_u32(work + 24, bad_id[i]);
		ck_assert_msg(decode_exact(dec_module, work, n) == -EBADMSG,
		              "build_id_len %u accepted", (unsigned)bad_id[i]);
	}
	for (uint32_t l = 0; l < id_len; l++) {
		n = module_payload();
		proto_put_u32(work + 24, l);
		ck_assert_msg(decode_exact(dec_module, work, n) == -EBADMSG,
		              "build_id_len %u accepted", (unsigned)l);
	}

	const uint32_t bad_path[] = {path_len + 1, PROTO_MAX_PATH + 1, 0xfffffffcu, UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_path) / sizeof(bad_path[0]); i++) {
		n = module_payload();
		proto_put_u32(work + path_at, bad_path[i]);
		ck_assert_msg(decode_exact(dec_module, work, n) == -EBADMSG, "path_len %u accepted",
		              (unsigned)bad_path[i]);
	}
	for (uint32_t l = 0; l < path_len; l++) {
		n = module_payload();
		proto_put_u32(work + path_at, l);
		ck_assert_msg(decode_exact(dec_module, work, n) == -EBADMSG, "path_len %u accepted",
		              (unsigned)l);
	}
}
END_TEST

START_TEST(test_module_fields_over_limit)
{
	/* Lengths that agree with the bytes present but exceed the limits. */
	size_t n;

	memset(work, 0, 24);
	proto_put_u32(work + 24, PROTO_MAX_BUILD_ID + 1);
	memset(work + 28, 0x11, PROTO_MAX_BUILD_ID + 1);
	n = 28 + PROTO_MAX_BUILD_ID + 1;
	proto_put_u32(work + n, 0);
	n += 4;
	ck_assert_int_eq(decode_exact(dec_module, work, n), -EBADMSG);
	proto_put_u32(work + 24, PROTO_MAX_BUILD_ID);
	proto_put_u32(work + 28 + PROTO_MAX_BUILD_ID, 0);
	ck_assert_int_eq(decode_exact(dec_module, work, n - 1), 0);

	proto_put_u32(work + 24, 0);
	proto_put_u32(work + 28, PROTO_MAX_PATH + 1);
	memcpy(work + 32, big_path, PROTO_MAX_PATH + 1);
	n = 32 + PROTO_MAX_PATH + 1;
	ck_assert_int_eq(decode_exact(dec_module, work, n), -EBADMSG);
	proto_put_u32(work + 28, PROTO_MAX_PATH);
	ck_assert_int_eq(decode_exact(dec_module, work, n - 1), 0);
}
END_TEST

/* ---- MODULES_RESET, WAKE and DETACH ---- */

START_TEST(test_empty_round_trip)
{
	static const uint16_t types[] = {PROTO_MODULES_RESET, PROTO_WAKE, PROTO_DETACH};

	for (size_t i = 0; i < 3; i++) {
		const uint8_t want[] = {0, 0, 0, 0, (uint8_t)types[i], 0, 0, 0};
		memset(buf, SENTINEL, sizeof(buf));
		ssize_t size = proto_empty_encode(buf, sizeof(buf), types[i]);
		ck_assert_int_eq(size, PROTO_HDR_SIZE);
		ck_assert_mem_eq(buf, want, sizeof(want));
		assert_sentinel_after(buf, PROTO_HDR_SIZE);
		ck_assert_uint_eq(frame_check(buf, size, types[i]), 0);
		ck_assert_int_eq(decode_exact(proto_empty_decode, buf + PROTO_HDR_SIZE, 0), 0);

		for (size_t cap = 0; cap < PROTO_HDR_SIZE; cap++) {
			memset(buf, SENTINEL, sizeof(buf));
			ck_assert_int_eq(proto_empty_encode(buf, cap, types[i]), -ENOSPC);
			assert_untouched(buf, 32);
		}
	}
}
END_TEST

START_TEST(test_empty_encode_einval)
{
	static const uint16_t bad[] = {0, PROTO_HELLO, PROTO_MODULE, PROTO_TYPE_MAX + 1, 0xffff};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(proto_empty_encode(buf, sizeof(buf), bad[i]) == -EINVAL,
		              "type %u encoded as an empty frame", (unsigned)bad[i]);
	assert_untouched(buf, 32);
}
END_TEST

START_TEST(test_empty_trailing)
{
	/* Any payload at all on an empty message is malformed. */
	memset(work, 0, 64);
	for (size_t n = 1; n <= 64; n++)
		ck_assert_msg(decode_exact(proto_empty_decode, work, n) == -EBADMSG,
		              "%zu payload bytes accepted", n);
}
END_TEST

/* ---- records in the shared region ---- */

struct rec_case {
	uint8_t kind;
	uint64_t seq;
	uint64_t addr;
	uint64_t size;
	uint32_t stack;
};

/* Boundary values of every field; stack 0 ("unknown") and size 0 are both
 * valid in an allocation; a free's size is its temporary flag (0 or 1) and
 * its stack is ignored. */
static const struct rec_case rec_cases[] = {
    {PROTO_EV_ALLOC, 0, 1, 0, 0},
    {PROTO_EV_FREE, 1, 1, 0, 0},
    {PROTO_EV_ALLOC, 2, 0x7f0012345670u, 24, 1},
    {PROTO_EV_FREE, 3, 0x7f0012345670u, PROTO_FREE_TEMPORARY, 7},
    {PROTO_EV_ALLOC, 1000, UINT64_MAX, UINT64_MAX, UINT32_MAX},
    {PROTO_EV_FREE, PROTO_SEQ_MAX - 1, UINT64_MAX, 0, 0},
    {PROTO_EV_ALLOC, PROTO_SEQ_MAX, 0x10, 1, 2},
};

START_TEST(test_record_round_trip)
{
	for (size_t i = 0; i < sizeof(rec_cases) / sizeof(rec_cases[0]); i++) {
		const struct rec_case *c = &rec_cases[i];
		struct shm_ev r = {c->seq << PROTO_EV_KIND_BITS | c->kind, c->addr, c->size,
		                   c->stack, 0};
		struct proto_event ev;
		ck_assert_int_eq(proto_record_decode(&r, &ev), 0);
		ck_assert_uint_eq(ev.kind, c->kind);
		ck_assert_uint_eq(ev.seq, c->seq);
		ck_assert_uint_eq(ev.addr, c->addr);
		ck_assert_uint_eq(ev.size, c->kind == PROTO_EV_ALLOC ? c->size : 0);
		ck_assert_uint_eq(ev.stack_id, c->kind == PROTO_EV_ALLOC ? c->stack : 0);
		ck_assert_uint_eq(ev.temporary, c->kind == PROTO_EV_FREE ? c->size : 0);
	}
}
END_TEST

START_TEST(test_record_free_flag)
{
	/* A free's size field is 0 or PROTO_FREE_TEMPORARY; anything else is
	 * not a record this protocol writes. */
	static const uint64_t bad[] = {2, 99, UINT64_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shm_ev r = {9u << PROTO_EV_KIND_BITS | PROTO_EV_FREE, 0x1000, bad[i], 0, 0};
		struct proto_event ev;
		ck_assert_int_eq(proto_record_decode(&r, &ev), -EBADMSG);
	}
}
END_TEST

START_TEST(test_record_bad_kind)
{
	/* Kind 0 does not exist, whatever else the record holds. */
	static const uint64_t kinds[] = {0};
	for (size_t i = 0; i < 1; i++) {
		struct shm_ev r = {5u << PROTO_EV_KIND_BITS | kinds[i], 0x1000, 8, 1, 0};
		struct proto_event ev;
		ck_assert_int_eq(proto_record_decode(&r, &ev), -EBADMSG);
	}
}
END_TEST

START_TEST(test_record_fork)
{
	/* A FORK record carries only its sequence number: whatever else the
	 * record holds reads as zero. */
	struct shm_ev r = {77u << PROTO_EV_KIND_BITS | PROTO_EV_FORK, 0xdead, 5, 9, 0};
	struct proto_event ev;

	ck_assert_int_eq(proto_record_decode(&r, &ev), 0);
	ck_assert_uint_eq(ev.kind, PROTO_EV_FORK);
	ck_assert_uint_eq(ev.seq, 77);
	ck_assert_uint_eq(ev.addr, 0);
	ck_assert_uint_eq(ev.size, 0);
	ck_assert_uint_eq(ev.stack_id, 0);
}
END_TEST

START_TEST(test_record_zero_address)
{
	struct shm_ev a = {1u << PROTO_EV_KIND_BITS | PROTO_EV_ALLOC, 0, 8, 1, 0};
	struct shm_ev f = {2u << PROTO_EV_KIND_BITS | PROTO_EV_FREE, 0, 0, 0, 0};
	struct proto_event ev;

	ck_assert_int_eq(proto_record_decode(&a, &ev), -EBADMSG);
	ck_assert_int_eq(proto_record_decode(&f, &ev), -EBADMSG);
}
END_TEST

/* The layout both ends compile: a record is 32 bytes, a ring's records
 * start on a cache line after its three control lines, and the regions of
 * the file do not overlap. */
START_TEST(test_region_layout)
{
	ck_assert_uint_eq(sizeof(struct shm_ev), 32);
	ck_assert_uint_eq(offsetof(struct shm_ev, addr), 8);
	ck_assert_uint_eq(offsetof(struct shm_ev, size), 16);
	ck_assert_uint_eq(offsetof(struct shm_ev, stack), 24);
	ck_assert_uint_eq(offsetof(struct shm_header, version), 8);
	ck_assert_uint_eq(offsetof(struct shm_header, seq), 64);
	ck_assert_uint_eq(offsetof(struct shm_header, lost), 128);
	ck_assert_uint_eq(offsetof(struct shm_header, nostack), 136);
	ck_assert_uint_eq(offsetof(struct shm_header, nrings), 144);
	ck_assert_uint_eq(offsetof(struct shm_header, exiting), 148);
	ck_assert_uint_eq(offsetof(struct shm_header, lost_allocs), 152);
	ck_assert_uint_eq(offsetof(struct shm_header, lost_bytes), 160);
	ck_assert_uint_eq(offsetof(struct shm_header, lost_frees), 168);
	ck_assert_uint_eq(offsetof(struct shm_header, gave_up), 176);
	ck_assert_uint_eq(offsetof(struct shm_ring, wake_sent), 8);
	ck_assert_uint_eq(offsetof(struct shm_ring, tail_futex), 72);
	ck_assert_uint_eq(offsetof(struct shm_ring, waiters), 76);
	ck_assert_uint_eq(offsetof(struct shm_ring, state), 136);
	ck_assert_uint_eq(offsetof(struct shm_ring, tid), 140);
	ck_assert_uint_eq(sizeof(struct shm_stack), 16);
	ck_assert_uint_eq(SHM_OFF_OFFSETS, 4096);
	ck_assert_uint_eq(SHM_MAGIC, 0x314d48534543544dull);
	ck_assert_uint_eq(offsetof(struct shm_ring, tail), 64);
	ck_assert_uint_eq(offsetof(struct shm_ring, pending), 128);
	ck_assert_uint_eq(offsetof(struct shm_ring, ev), 192);
	ck_assert_uint_eq(sizeof(struct shm_ring), 192 + 32 * (size_t)SHM_RING_CAP);
	ck_assert_uint_le(sizeof(struct shm_header), SHM_OFF_OFFSETS);
	ck_assert_uint_le(SHM_OFF_OFFSETS + 8 * ((uint64_t)SHM_STACK_CAP + 1), SHM_OFF_STATES);
	ck_assert_uint_le(SHM_OFF_STATES + SHM_STACK_CAP + 1, SHM_OFF_ARENA);
	ck_assert_uint_eq(SHM_OFF_ARENA + SHM_ARENA, SHM_OFF_RINGS);
	ck_assert_uint_eq(SHM_OFF_RING(SHM_NRINGS), SHM_SIZE);
	ck_assert_uint_eq(SHM_OFF_RINGS % 64, 0);
}
END_TEST

START_TEST(test_stream)
{
	/* A connection as the agent writes it, walked the way the daemon walks
	 * it: header, then the decoder its type names, frame after frame. */
	static const uint16_t want_types[] = {PROTO_HELLO,         PROTO_MODULE, PROTO_WAKE,
	                                      PROTO_MODULES_RESET, PROTO_MODULE, PROTO_WAKE};
	size_t off = 0;

	off += (size_t)proto_hello_encode(buf + off, sizeof(buf) - off, &hello_typical);
	off += (size_t)proto_module_encode(buf + off, sizeof(buf) - off, &module_typical);
	off += (size_t)proto_empty_encode(buf + off, sizeof(buf) - off, PROTO_WAKE);
	off += (size_t)proto_empty_encode(buf + off, sizeof(buf) - off, PROTO_MODULES_RESET);
	off += (size_t)proto_module_encode(buf + off, sizeof(buf) - off, &module_typical);
	off += (size_t)proto_empty_encode(buf + off, sizeof(buf) - off, PROTO_WAKE);

	size_t pos = 0;
	size_t nframes = 0;
	while (pos < off) {
		struct proto_hdr h;
		ck_assert_int_eq(proto_hdr_decode(buf + pos, off - pos, &h), 0);
		ck_assert_uint_lt(nframes, sizeof(want_types) / sizeof(want_types[0]));
		ck_assert_uint_eq(h.type, want_types[nframes]);
		ck_assert_uint_le(h.len, off - pos - PROTO_HDR_SIZE);
		const uint8_t *p = buf + pos + PROTO_HDR_SIZE;
		int rc;
		switch (h.type) {
		case PROTO_HELLO:
			rc = decode_exact(dec_hello, p, h.len);
			break;
		case PROTO_MODULE:
			rc = decode_exact(dec_module, p, h.len);
			break;
		default:
			rc = decode_exact(proto_empty_decode, p, h.len);
			break;
		}
		ck_assert_int_eq(rc, 0);
		pos += PROTO_HDR_SIZE + h.len;
		nframes++;
	}
	ck_assert_uint_eq(pos, off);
	ck_assert_uint_eq(nframes, sizeof(want_types) / sizeof(want_types[0]));
}
END_TEST

Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("header");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_hdr_layout);
	tcase_add_test(tc, test_hdr_round_trip);
	tcase_add_test(tc, test_hdr_more_bytes_than_header);
	tcase_add_test(tc, test_hdr_truncated);
	tcase_add_test(tc, test_hdr_unknown_type);
	tcase_add_test(tc, test_hdr_reserved_nonzero);
	tcase_add_test(tc, test_hdr_payload_too_big);
	suite_add_tcase(s, tc);

	tc = tcase_create("hello");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_hello_layout);
	tcase_add_test(tc, test_hello_round_trip);
	tcase_add_test(tc, test_hello_boundaries);
	tcase_add_test(tc, test_hello_encode_einval);
	tcase_add_test(tc, test_hello_encode_enospc);
	tcase_add_test(tc, test_hello_truncated);
	tcase_add_test(tc, test_hello_trailing);
	tcase_add_test(tc, test_hello_bad_version);
	tcase_add_test(tc, test_hello_fork_fields);
	tcase_add_test(tc, test_hello_unknown_flags);
	tcase_add_test(tc, test_hello_bad_nframes);
	tcase_add_test(tc, test_hello_bad_lengths);
	tcase_add_test(tc, test_hello_strings_over_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("module");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_module_layout);
	tcase_add_test(tc, test_module_round_trip);
	tcase_add_test(tc, test_module_boundaries);
	tcase_add_test(tc, test_module_encode_einval);
	tcase_add_test(tc, test_module_encode_enospc);
	tcase_add_test(tc, test_module_truncated_trailing);
	tcase_add_test(tc, test_module_lo_above_hi);
	tcase_add_test(tc, test_module_bad_lengths);
	tcase_add_test(tc, test_module_fields_over_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("empty");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_empty_round_trip);
	tcase_add_test(tc, test_empty_encode_einval);
	tcase_add_test(tc, test_empty_trailing);
	suite_add_tcase(s, tc);

	tc = tcase_create("records");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_record_round_trip);
	tcase_add_test(tc, test_record_free_flag);
	tcase_add_test(tc, test_record_bad_kind);
	tcase_add_test(tc, test_record_zero_address);
	tcase_add_test(tc, test_record_fork);
	tcase_add_test(tc, test_region_layout);
	suite_add_tcase(s, tc);

	tc = tcase_create("stream");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_stream);
	suite_add_tcase(s, tc);

	return s;
}
