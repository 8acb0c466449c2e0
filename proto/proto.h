/*
 * proto.h - the wire format between libmemtrace.so (the agent) and memtraced.
 *
 * This header is the single definition of the bytes on agent.sock; PROTOCOL.md
 * describes the same thing for people. Bump PROTO_VERSION if anything here
 * changes shape.
 *
 * The stream is agent to daemon, but for one frame (DETACH, below), and
 * carries no events: those are in
 * the memory the agent shares with the daemon (shm.h), whose descriptor comes
 * with HELLO. The stream is a sequence of frames, each an 8-byte header
 * (payload length, message type, a reserved zero) followed by the payload.
 * All integers are little-endian. The agent sends HELLO first (with the
 * region's memfd as SCM_RIGHTS ancillary data), then MODULE frames, then any
 * mix of MODULES_RESET, MODULE and WAKE. The daemon sends nothing but
 * DETACH (memtracectl detach); the agent answers it with DETACH and hangs up. The connection's end
 * (however the process ended) is the daemon's cue to read the region one last time. The records in
 * the region are decoded here too (proto_record_decode).
 *
 * Encoders write into a caller-provided buffer and never allocate, so the
 * agent can use them from inside malloc. Decoders never trust their input:
 * every length is checked against the bytes actually present and against the
 * protocol limits below, and they return -EBADMSG on anything malformed.
 * Decoded strings and arrays point into the caller's buffer (nothing is kept
 * or copied). Everything returns 0 or a negative errno.
 */
#ifndef MEMTRACE_PROTO_H
#define MEMTRACE_PROTO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm.h"

#define PROTO_VERSION 7

#define PROTO_HDR_SIZE     8
#define PROTO_MAX_PAYLOAD  (1u << 17) /* 128 KiB per frame: a HELLO fits */
#define PROTO_MAX_FRAMES   256        /* frames in one stack */
#define PROTO_MAX_PATH     4096       /* module path, exe */
#define PROTO_MAX_CMDLINE  65536      /* NUL-separated argv */
#define PROTO_MAX_BUILD_ID 64
#define PROTO_HELLO_FIXED  40 /* HELLO's fixed fields, before exe */

enum proto_type {
	PROTO_HELLO = 1,         /* first frame: who the agent is, how it traces */
	PROTO_MODULE = 2,        /* one loaded object: address range, path, build-id */
	PROTO_MODULES_RESET = 3, /* the module list that follows replaces the old */
	PROTO_WAKE = 4,          /* a ring is filling up: read the region now */
	PROTO_DETACH = 5,        /* daemon to agent: stop tracing; agent to daemon: stopped,
	                          * the connection's end that follows is not the process's */
	PROTO_TYPE_MAX = PROTO_DETACH,
};

/* HELLO flags */
#define PROTO_HELLO_DROP      0x1u  /* MEMTRACE_ON_FULL=drop: events may be lost */
#define PROTO_HELLO_FP        0x2u  /* frame-pointer unwinding */
#define PROTO_HELLO_SAMPLED   0x4u  /* sampling: only sampled blocks are sent, at their true size */
#define PROTO_HELLO_BYPASSED  0x8u  /* the program's malloc is not the agent's: little is seen */
#define PROTO_HELLO_LIBUNWIND 0x10u /* libunwind alone (neither this nor FP: our CFI walker) */
#define PROTO_HELLO_ATTACHED  0x20u /* loaded into a running process: earlier blocks unknown */
#define PROTO_HELLO_FLAGS_ALL 0x3fu

/* Event record kinds, in the low PROTO_EV_KIND_BITS bits of a region record's
 * first word; the sequence number is the rest (seq << 2 | kind). */
enum proto_ev_kind {
	PROTO_EV_ALLOC = 1,
	PROTO_EV_FREE = 2,
	PROTO_EV_FORK = 3, /* the process forks: its child starts with the heap as it is here */
};
/* A FREE record's size field: 0, or this for a temporary allocation's free
 * (the block was its thread's last allocation: the thread has not allocated
 * since; heaptrack's definition). Anything else is malformed. */
#define PROTO_FREE_TEMPORARY 1u
#define PROTO_EV_KIND_BITS   2
#define PROTO_EV_KIND_MASK   ((UINT64_C(1) << PROTO_EV_KIND_BITS) - 1)
#define PROTO_SEQ_MAX        (UINT64_MAX >> PROTO_EV_KIND_BITS)

struct proto_hdr {
	uint32_t len; /* payload bytes after the header */
	uint16_t type;
};

struct proto_hello {
	uint32_t version;
	uint32_t flags;
	uint32_t nframes;      /* configured stack depth */
	uint32_t pid;          /* as the agent sees it; the daemon trusts SO_PEERCRED */
	uint64_t sample_bytes; /* mean bytes between sampled bytes, 0 = every allocation */
	uint32_t parent_pid;   /* a fork child: the parent's pid, else 0 */
	uint64_t fork_seq;     /* a fork child: the parent's FORK record, else 0 */
	const char *exe;       /* not NUL-terminated */
	uint32_t exe_len;
	const char *cmdline; /* argv joined by NULs */
	uint32_t cmdline_len;
	/* The path the program was started as (the kernel's AT_EXECFN, made
	 * absolute with the directory it started in; not resolved: a symbolic
	 * link's own name), or empty. Not NUL-terminated. */
	const char *started;
	uint32_t started_len;
};

struct proto_module {
	uint64_t bias; /* load bias: runtime address - ELF virtual address */
	uint64_t lo;   /* lowest mapped address of the object's PT_LOAD segments */
	uint64_t hi;   /* one past the highest */
	const uint8_t *build_id;
	uint32_t build_id_len;
	const char *path; /* not NUL-terminated; empty for the main program is allowed */
	uint32_t path_len;
};

struct proto_event {
	uint64_t seq;
	uint64_t addr;
	uint64_t size;     /* ALLOC only */
	uint32_t stack_id; /* ALLOC only; 0 = unknown stack */
	uint8_t kind;      /* enum proto_ev_kind */
	uint8_t temporary; /* FREE only: the free of a temporary allocation */
};

/* Header */
void proto_hdr_encode(uint8_t out[PROTO_HDR_SIZE], uint16_t type, uint32_t len);
/* n must be >= PROTO_HDR_SIZE. Rejects unknown types, a non-zero reserved
 * field and payloads over PROTO_MAX_PAYLOAD. */
int proto_hdr_decode(const uint8_t *buf, size_t n, struct proto_hdr *h);

/* Whole frames (header included). Return the frame size, or -ENOSPC when cap
 * is too small or -EINVAL when a field exceeds the protocol limits. */
ssize_t proto_hello_encode(uint8_t *buf, size_t cap, const struct proto_hello *m);
ssize_t proto_module_encode(uint8_t *buf, size_t cap, const struct proto_module *m);
ssize_t proto_empty_encode(uint8_t *buf, size_t cap, uint16_t type); /* RESET, WAKE, DETACH */

/* Payload decoders (payload only, without the header). */
int proto_hello_decode(const uint8_t *p, size_t n, struct proto_hello *m);
int proto_module_decode(const uint8_t *p, size_t n, struct proto_module *m);
int proto_empty_decode(const uint8_t *p, size_t n);

/* One record copied out of a ring (shm.h): 0 and *ev filled, or -EBADMSG on
 * an unknown kind, a zero address or a FREE's size other than 0 and
 * PROTO_FREE_TEMPORARY. Sequence order and stack ids are the
 * reader's to check. Inline: the daemon decodes tens of millions a second. */
static inline int proto_record_decode(const struct shm_ev *rec, struct proto_event *ev)
{
	ev->kind = (uint8_t)(rec->seq_kind & PROTO_EV_KIND_MASK);
	ev->seq = rec->seq_kind >> PROTO_EV_KIND_BITS;
	ev->addr = rec->addr;
	ev->temporary = 0;
	switch (ev->kind) {
	case PROTO_EV_ALLOC:
		if (ev->addr == 0)
			return -EBADMSG;
		ev->size = rec->size;
		ev->stack_id = rec->stack;
		return 0;
	case PROTO_EV_FREE:
		if (ev->addr == 0 || rec->size > PROTO_FREE_TEMPORARY)
			return -EBADMSG;
		ev->temporary = (uint8_t)rec->size;
		ev->size = 0;
		ev->stack_id = 0;
		return 0;
	case PROTO_EV_FORK:
		ev->addr = 0;
		ev->size = 0;
		ev->stack_id = 0;
		return 0;
	default:
		return -EBADMSG;
	}
}

/* Little-endian helpers shared by the encoders and decoders. On a
 * little-endian host they are one unaligned load or store (memcpy), which
 * matters: the agent encodes and the daemon decodes every event. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PROTO_LE_NATIVE 1
#endif

static inline void proto_put_u16(uint8_t *p, uint16_t v)
{
#ifdef PROTO_LE_NATIVE
	__builtin_memcpy(p, &v, 2);
#else
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
#endif
}
static inline void proto_put_u32(uint8_t *p, uint32_t v)
{
#ifdef PROTO_LE_NATIVE
	__builtin_memcpy(p, &v, 4);
#else
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
#endif
}
static inline void proto_put_u64(uint8_t *p, uint64_t v)
{
#ifdef PROTO_LE_NATIVE
	__builtin_memcpy(p, &v, 8);
#else
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
#endif
}
static inline uint16_t proto_get_u16(const uint8_t *p)
{
#ifdef PROTO_LE_NATIVE
	uint16_t v;
	__builtin_memcpy(&v, p, 2);
	return v;
#else
	return (uint16_t)(p[0] | (p[1] << 8));
#endif
}
static inline uint32_t proto_get_u32(const uint8_t *p)
{
#ifdef PROTO_LE_NATIVE
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
#else
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#endif
}
static inline uint64_t proto_get_u64(const uint8_t *p)
{
#ifdef PROTO_LE_NATIVE
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
#else
	return (uint64_t)proto_get_u32(p) | (uint64_t)proto_get_u32(p + 4) << 32;
#endif
}

#endif
