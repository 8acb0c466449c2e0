/*
 * hash.h - the one family of hash functions of the daemon, the client and the
 * analysis library.
 *
 * Content is hashed with 64-bit FNV-1a, which is short, has no alignment
 * needs and chains: the result of one call is the seed of the next, so a
 * record of several fields is hashed field by field. Strings are hashed with
 * their terminating NUL so that ("ab", "c") and ("a", "bc") hash apart when
 * chained. Integers and pointers are folded in with splitmix64's finalizer,
 * whose every input bit reaches every output bit: the low bits that an
 * open-addressing table (oaindex.h) indexes with are well spread even for
 * aligned pointers and small counters.
 *
 * The values are for in-memory tables only; nothing stores them, so they may
 * change between versions. The agent has hash tables of its own, tuned for
 * its hot path, and does not use these.
 */
#ifndef MEMTRACE_COMMON_HASH_H
#define MEMTRACE_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The FNV-1a offset basis: the seed of a chain. */
#define HASH_SEED UINT64_C(0xcbf29ce484222325)

/* Chains n bytes at p onto h. */
static inline uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* Chains the string s, its NUL included, onto h. */
static inline uint64_t hash_str(uint64_t h, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	do {
		h ^= *p;
		h *= UINT64_C(0x100000001b3);
	} while (*p++ != '\0');
	return h;
}

/* splitmix64's finalizer, a bijection of the 64-bit integers. */
static inline uint64_t hash_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

#endif
