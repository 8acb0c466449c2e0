/*
 * fuzz_proto.c - libFuzzer target for the agent wire format.
 *
 * The input is treated as the byte stream the daemon reads from agent.sock:
 * it is cut into frames with proto_hdr_decode and each payload goes to the
 * decoder its type names (HELLO, MODULE, MODULES_RESET and WAKE), as the
 * daemon does, until a header is refused or the bytes run out. Unlike the
 * daemon it goes on past a refused payload (the daemon would close the
 * connection there), so that one input reaches several decoders. Beyond "no
 * crash, no out-of-bounds read", every message that decodes is encoded again
 * and must give back the very same bytes: a decoder that accepts something
 * the encoder cannot produce, or reads a field from the wrong place, shows
 * up as a mismatch and an abort().
 *
 * The same bytes, read as the 32-byte event records of the shared region
 * (every aligned window of them), go through proto_record_decode: it must
 * refuse exactly the records of an unknown kind, at address 0 or a free
 * whose size is neither 0 nor PROTO_FREE_TEMPORARY, and a record it accepts
 * must decode to its own fields (a free's size is its temporary flag; it has
 * no stack).
 *
 * Linked with fuzz/standalone.c instead of libFuzzer, plain gcc can replay a
 * corpus or a crash (see README.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-encoding target: one frame at most (header plus the largest payload). */
static uint8_t out[PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD];

static void same_or_abort(const uint8_t *frame, size_t n, ssize_t got)
{
	if (got < 0 || (size_t)got != n || memcmp(out, frame, n) != 0)
		abort();
}

/* Touches every byte a decoded message points at, so a pointer or length
 * that escapes the payload is an ASan report even when the re-encoding
 * would not notice. */
static unsigned sum(const void *p, size_t n)
{
	const uint8_t *b = p;
	unsigned s = 0;

	for (size_t i = 0; i < n; i++)
		s += b[i];
	return s;
}

static volatile unsigned sink;

static void check_hello(const uint8_t *frame, const uint8_t *p, uint32_t len)
{
	struct proto_hello m;

	if (proto_hello_decode(p, len, &m) < 0)
		return;
	if (m.version != PROTO_VERSION)
		abort();
	sink += sum(m.exe, m.exe_len) + sum(m.cmdline, m.cmdline_len);
	same_or_abort(frame, PROTO_HDR_SIZE + len, proto_hello_encode(out, sizeof(out), &m));
}

static void check_module(const uint8_t *frame, const uint8_t *p, uint32_t len)
{
	struct proto_module m;

	if (proto_module_decode(p, len, &m) < 0)
		return;
	sink += sum(m.build_id, m.build_id_len) + sum(m.path, m.path_len);
	same_or_abort(frame, PROTO_HDR_SIZE + len, proto_module_encode(out, sizeof(out), &m));
}

static void check_empty(const uint8_t *frame, uint16_t type, const uint8_t *p, uint32_t len)
{
	if (proto_empty_decode(p, len) < 0) {
		if (len == 0)
			abort();
		return;
	}
	if (len != 0)
		abort();
	same_or_abort(frame, PROTO_HDR_SIZE + len, proto_empty_encode(out, sizeof(out), type));
}

/* One region record, copied out as the daemon copies it. */
static void check_record(const uint8_t *p)
{
	struct shm_ev rec;
	struct proto_event ev;

	memcpy(&rec, p, sizeof(rec));
	uint64_t kind = rec.seq_kind & PROTO_EV_KIND_MASK;
	bool valid = (kind == PROTO_EV_ALLOC && rec.addr != 0) ||
	             (kind == PROTO_EV_FREE && rec.addr != 0 && rec.size <= PROTO_FREE_TEMPORARY) ||
	             kind == PROTO_EV_FORK;
	int rc = proto_record_decode(&rec, &ev);
	if (rc != (valid ? 0 : -EBADMSG))
		abort();
	if (rc < 0)
		return;
	if (ev.kind != kind || ev.seq != rec.seq_kind >> PROTO_EV_KIND_BITS ||
	    ev.seq > PROTO_SEQ_MAX || ev.addr != (kind == PROTO_EV_FORK ? 0 : rec.addr))
		abort();
	if (kind != PROTO_EV_FREE && ev.temporary != 0)
		abort();
	if (kind == PROTO_EV_FORK && (ev.size != 0 || ev.stack_id != 0))
		abort();
	if (kind == PROTO_EV_ALLOC && (ev.size != rec.size || ev.stack_id != rec.stack))
		abort();
	if (kind == PROTO_EV_FREE && (ev.size != 0 || ev.stack_id != 0 || ev.temporary != rec.size))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_hdr h;

	for (size_t off = 0; size - off >= sizeof(struct shm_ev); off += sizeof(struct shm_ev))
		check_record(data + off);
	while (size >= PROTO_HDR_SIZE) {
		if (proto_hdr_decode(data, size, &h) < 0)
			break;
		if (h.len > PROTO_MAX_PAYLOAD)
			abort();
		/* An incomplete last frame: the daemon would wait for more. */
		if (size - PROTO_HDR_SIZE < h.len)
			break;
		const uint8_t *p = data + PROTO_HDR_SIZE;
		switch (h.type) {
		case PROTO_HELLO:
			check_hello(data, p, h.len);
			break;
		case PROTO_MODULE:
			check_module(data, p, h.len);
			break;
		case PROTO_MODULES_RESET:
		case PROTO_WAKE:
		case PROTO_DETACH:
			check_empty(data, h.type, p, h.len);
			break;
		default:
			/* proto_hdr_decode promised a known type. */
			abort();
		}
		data += PROTO_HDR_SIZE + h.len;
		size -= PROTO_HDR_SIZE + h.len;
	}
	return 0;
}
