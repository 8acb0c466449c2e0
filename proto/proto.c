/*
 * proto.c - encoders and bounds-checked decoders for the agent wire format.
 * See proto.h for the contract and PROTOCOL.md for the layout.
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

void proto_hdr_encode(uint8_t out[PROTO_HDR_SIZE], uint16_t type, uint32_t len)
{
	proto_put_u32(out, len);
	proto_put_u16(out + 4, type);
	proto_put_u16(out + 6, 0);
}

int proto_hdr_decode(const uint8_t *buf, size_t n, struct proto_hdr *h)
{
	if (n < PROTO_HDR_SIZE)
		return -EBADMSG;
	h->len = proto_get_u32(buf);
	h->type = proto_get_u16(buf + 4);
	if (proto_get_u16(buf + 6) != 0)
		return -EBADMSG;
	if (h->type < PROTO_HELLO || h->type > PROTO_TYPE_MAX)
		return -EBADMSG;
	if (h->len > PROTO_MAX_PAYLOAD)
		return -EBADMSG;
	return 0;
}

/* Starts a frame of `len` payload bytes; returns the payload pointer or NULL. */
static uint8_t *frame_begin(uint8_t *buf, size_t cap, uint16_t type, size_t len)
{
	if (len > PROTO_MAX_PAYLOAD || cap < PROTO_HDR_SIZE + len)
		return NULL;
	proto_hdr_encode(buf, type, (uint32_t)len);
	return buf + PROTO_HDR_SIZE;
}

ssize_t proto_hello_encode(uint8_t *buf, size_t cap, const struct proto_hello *m)
{
	/* nframes is checked here as the decoder checks it: a HELLO the daemon
	 * would refuse must fail in the agent, where the cause is known. */
	if (m->exe_len > PROTO_MAX_PATH || m->cmdline_len > PROTO_MAX_CMDLINE ||
	    m->started_len > PROTO_MAX_PATH || (m->flags & ~PROTO_HELLO_FLAGS_ALL) != 0 ||
	    m->nframes == 0 || m->nframes > PROTO_MAX_FRAMES)
		return -EINVAL;
	if (m->fork_seq > PROTO_SEQ_MAX)
		return -EINVAL;
	size_t len = PROTO_HELLO_FIXED + 4 + (size_t)m->exe_len + 4 + (size_t)m->cmdline_len + 4 +
	             (size_t)m->started_len;
	uint8_t *p = frame_begin(buf, cap, PROTO_HELLO, len);
	if (p == NULL)
		return -ENOSPC;
	proto_put_u32(p, m->version);
	proto_put_u32(p + 4, m->flags);
	proto_put_u32(p + 8, m->nframes);
	proto_put_u32(p + 12, m->pid);
	proto_put_u64(p + 16, m->sample_bytes);
	proto_put_u32(p + 24, m->parent_pid);
	proto_put_u32(p + 28, 0);
	proto_put_u64(p + 32, m->fork_seq);
	p += PROTO_HELLO_FIXED;
	proto_put_u32(p, m->exe_len);
	if (m->exe_len > 0)
		memcpy(p + 4, m->exe, m->exe_len);
	p += 4 + m->exe_len;
	proto_put_u32(p, m->cmdline_len);
	if (m->cmdline_len > 0)
		memcpy(p + 4, m->cmdline, m->cmdline_len);
	p += 4 + m->cmdline_len;
	proto_put_u32(p, m->started_len);
	if (m->started_len > 0)
		memcpy(p + 4, m->started, m->started_len);
	return (ssize_t)(PROTO_HDR_SIZE + len);
}

/* Reads a u32-length-prefixed byte string at *off, advancing it. */
static int get_bytes(const uint8_t *p, size_t n, size_t *off, uint32_t max, const uint8_t **out,
                     uint32_t *out_len)
{
	if (n - *off < 4)
		return -EBADMSG;
	uint32_t len = proto_get_u32(p + *off);
	*off += 4;
	if (len > max || n - *off < len)
		return -EBADMSG;
	*out = p + *off;
	*out_len = len;
	*off += len;
	return 0;
}

int proto_hello_decode(const uint8_t *p, size_t n, struct proto_hello *m)
{
	const uint8_t *s;
	size_t off = PROTO_HELLO_FIXED;

	if (n < PROTO_HELLO_FIXED)
		return -EBADMSG;
	m->version = proto_get_u32(p);
	m->flags = proto_get_u32(p + 4);
	m->nframes = proto_get_u32(p + 8);
	m->pid = proto_get_u32(p + 12);
	m->sample_bytes = proto_get_u64(p + 16);
	m->parent_pid = proto_get_u32(p + 24);
	m->fork_seq = proto_get_u64(p + 32);
	if (m->version != PROTO_VERSION || (m->flags & ~PROTO_HELLO_FLAGS_ALL) != 0 ||
	    m->nframes == 0 || m->nframes > PROTO_MAX_FRAMES || proto_get_u32(p + 28) != 0 ||
	    m->fork_seq > PROTO_SEQ_MAX || (m->parent_pid == 0) != (m->fork_seq == 0))
		return -EBADMSG;
	if (get_bytes(p, n, &off, PROTO_MAX_PATH, &s, &m->exe_len) < 0)
		return -EBADMSG;
	m->exe = (const char *)s;
	if (get_bytes(p, n, &off, PROTO_MAX_CMDLINE, &s, &m->cmdline_len) < 0)
		return -EBADMSG;
	m->cmdline = (const char *)s;
	if (get_bytes(p, n, &off, PROTO_MAX_PATH, &s, &m->started_len) < 0)
		return -EBADMSG;
	m->started = (const char *)s;
	return off == n ? 0 : -EBADMSG;
}

ssize_t proto_module_encode(uint8_t *buf, size_t cap, const struct proto_module *m)
{
	if (m->build_id_len > PROTO_MAX_BUILD_ID || m->path_len > PROTO_MAX_PATH || m->lo > m->hi)
		return -EINVAL;
	size_t len = 24 + 4 + (size_t)m->build_id_len + 4 + (size_t)m->path_len;
	uint8_t *p = frame_begin(buf, cap, PROTO_MODULE, len);
	if (p == NULL)
		return -ENOSPC;
	proto_put_u64(p, m->bias);
	proto_put_u64(p + 8, m->lo);
	proto_put_u64(p + 16, m->hi);
	p += 24;
	proto_put_u32(p, m->build_id_len);
	if (m->build_id_len > 0)
		memcpy(p + 4, m->build_id, m->build_id_len);
	p += 4 + m->build_id_len;
	proto_put_u32(p, m->path_len);
	if (m->path_len > 0)
		memcpy(p + 4, m->path, m->path_len);
	return (ssize_t)(PROTO_HDR_SIZE + len);
}

int proto_module_decode(const uint8_t *p, size_t n, struct proto_module *m)
{
	const uint8_t *s;
	size_t off = 24;

	if (n < 24)
		return -EBADMSG;
	m->bias = proto_get_u64(p);
	m->lo = proto_get_u64(p + 8);
	m->hi = proto_get_u64(p + 16);
	if (m->lo > m->hi)
		return -EBADMSG;
	if (get_bytes(p, n, &off, PROTO_MAX_BUILD_ID, &m->build_id, &m->build_id_len) < 0)
		return -EBADMSG;
	if (get_bytes(p, n, &off, PROTO_MAX_PATH, &s, &m->path_len) < 0)
		return -EBADMSG;
	m->path = (const char *)s;
	return off == n ? 0 : -EBADMSG;
}

ssize_t proto_empty_encode(uint8_t *buf, size_t cap, uint16_t type)
{
	if (type != PROTO_MODULES_RESET && type != PROTO_WAKE && type != PROTO_DETACH)
		return -EINVAL;
	if (frame_begin(buf, cap, type, 0) == NULL)
		return -ENOSPC;
	return PROTO_HDR_SIZE;
}

int proto_empty_decode(const uint8_t *p, size_t n)
{
	(void)p;
	return n == 0 ? 0 : -EBADMSG;
}
