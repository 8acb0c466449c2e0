/*
 * fuzz_proto.c - libFuzzer target for the agent wire format.
 *
 * The input is treated as the byte stream the daemon reads from agent.sock:
 * it is cut into frames with proto_hdr_decode and each payload goes to the
 * decoder its type names, as the daemon does, until a header is refused or
 * the bytes run out. Unlike the daemon it goes on past a refused payload
 * (the daemon would close the connection there), so that one input reaches
 * several decoders. Beyond "no crash, no out-of-bounds read",
 * every message that decodes is encoded again and must give back the very
 * same bytes: a decoder that accepts something the encoder cannot produce, or
 * reads a field from the wrong place, shows up as a mismatch and an abort().
 *
 * Linked with fuzz/standalone.c instead of libFuzzer, plain gcc can replay a
 * corpus or a crash (see README.md).
 */
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

static void check_stack(const uint8_t *frame, const uint8_t *p, uint32_t len)
{
	static uint64_t frames[PROTO_MAX_FRAMES];
	struct proto_stack m;

	if (proto_stack_decode(p, len, &m) < 0)
		return;
	if (m.nframes == 0 || m.nframes > PROTO_MAX_FRAMES)
		abort();
	for (uint32_t i = 0; i < m.nframes; i++)
		frames[i] = proto_stack_frame(&m, i);
	same_or_abort(frame, PROTO_HDR_SIZE + len,
	              proto_stack_encode(out, sizeof(out), m.id, frames, m.nframes));
}

static void check_events(const uint8_t *p, uint32_t len)
{
	struct proto_events_iter it;
	struct proto_event ev;
	size_t off = 0;
	int rc;

	proto_events_begin(&it, p, len);
	while ((rc = proto_events_next(&it, &ev)) == 1) {
		ssize_t n;
		if (ev.kind == PROTO_EV_ALLOC)
			n = proto_ev_alloc_encode(out, sizeof(out), ev.seq, ev.addr, ev.size,
			                          ev.stack_id);
		else if (ev.kind == PROTO_EV_FREE)
			n = proto_ev_free_encode(out, sizeof(out), ev.seq, ev.addr);
		else
			abort();
		if (n < 0 || (size_t)n > len - off || memcmp(out, p + off, (size_t)n) != 0)
			abort();
		off += (size_t)n;
	}
	/* The iterator ends exactly at the end of the payload or reports why not. */
	if (rc == 0 && off != len)
		abort();
}

static void check_lost(const uint8_t *frame, const uint8_t *p, uint32_t len)
{
	uint64_t lost;

	if (proto_lost_decode(p, len, &lost) < 0)
		return;
	same_or_abort(frame, PROTO_HDR_SIZE + len, proto_lost_encode(out, sizeof(out), lost));
}

static void check_empty(const uint8_t *frame, uint16_t type, const uint8_t *p, uint32_t len)
{
	if (proto_empty_decode(p, len) < 0)
		return;
	same_or_abort(frame, PROTO_HDR_SIZE + len, proto_empty_encode(out, sizeof(out), type));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_hdr h;

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
		case PROTO_BYE:
			check_empty(data, h.type, p, h.len);
			break;
		case PROTO_STACK:
			check_stack(data, p, h.len);
			break;
		case PROTO_EVENTS:
			check_events(p, h.len);
			break;
		case PROTO_LOST:
			check_lost(data, p, h.len);
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
