/*
 * check_modmap.c - a process's module map against a naive model.
 *
 * The model is a plain array kept sorted by address, changed the obvious
 * way (scan for an identical entry, drop every overlapped one, insert in
 * order), sharing no code with modmap.c. Pinned here:
 *  - after every add the map's entries in address order are the model's,
 *    and modmap_find answers for addresses in, between and at the edges of
 *    the ranges agree with a scan of the model;
 *  - an identical entry changes nothing (0), a new one is added (1);
 *  - the bounds: past `max` entries or `max_path_bytes` of paths an add is
 *    refused with -ENOSPC and counted in `dropped`, while what it overlapped
 *    is gone all the same; memory is counted and given back;
 *  - the work does not depend on the order an agent sends: 65,536 modules
 *    in ascending, descending and interleaved order keep the tree's depth
 *    logarithmic (a sorted array or an unbalanced tree would take time
 *    quadratic in them, many seconds);
 *  - modmap_copy and modmap_array copy everything, paths included.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "modmap.h"
#include "splitmix.h"
#include "suites.h"

#define MODEL_MAX 512

struct mentry {
	uint64_t bias, lo, hi;
	char path[64];
	uint8_t bid[4];
};

struct model {
	struct mentry v[MODEL_MAX];
	size_t n;
};

/* The old rule, the slow way: 0 identical, 1 added. */
static int model_add(struct model *m, const struct mentry *e)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].lo == e->lo && m->v[i].hi == e->hi && m->v[i].bias == e->bias &&
		    strcmp(m->v[i].path, e->path) == 0)
			return 0;
	size_t k = 0;
	for (size_t i = 0; i < m->n; i++)
		if (!(m->v[i].lo < e->hi && e->lo < m->v[i].hi))
			m->v[k++] = m->v[i];
	m->n = k;
	size_t at = 0;
	while (at < m->n && m->v[at].lo < e->lo)
		at++;
	memmove(&m->v[at + 1], &m->v[at], (m->n - at) * sizeof(m->v[0]));
	m->v[at] = *e;
	m->n++;
	return 1;
}

static const struct mentry *model_find(const struct model *m, uint64_t addr)
{
	for (size_t i = 0; i < m->n; i++)
		if (addr >= m->v[i].lo && addr < m->v[i].hi)
			return &m->v[i];
	return NULL;
}

static int map_add(struct modmap *map, const struct mentry *e)
{
	return modmap_add(map, e->bias, e->lo, e->hi, e->path, strlen(e->path), e->bid,
	                  sizeof(e->bid));
}

static void check_same(const struct modmap *map, const struct model *m)
{
	EXPECT_EQ(map->n, m->n);
	struct modmap_entry *v = modmap_array(map);
	size_t bytes = 0;
	for (size_t i = 0; i < m->n && i < map->n; i++) {
		EXPECT(v[i].lo == m->v[i].lo && v[i].hi == m->v[i].hi &&
		           v[i].bias == m->v[i].bias && strcmp(v[i].path, m->v[i].path) == 0 &&
		           v[i].build_id_len == 4 && memcmp(v[i].build_id, m->v[i].bid, 4) == 0,
		       "entry %zu: %s [%#" PRIx64 ", %#" PRIx64 "), expected %s [%#" PRIx64
		       ", %#" PRIx64 ")",
		       i, v[i].path, v[i].lo, v[i].hi, m->v[i].path, m->v[i].lo, m->v[i].hi);
		bytes += strlen(m->v[i].path) + 1;
	}
	EXPECT_EQ(map->path_bytes, bytes);
	/* Lookups at every edge and in between. */
	for (size_t i = 0; i < m->n; i++) {
		const uint64_t probe[] = {m->v[i].lo - 1, m->v[i].lo, (m->v[i].lo + m->v[i].hi) / 2,
		                          m->v[i].hi - 1, m->v[i].hi};
		for (size_t k = 0; k < 5; k++) {
			const struct modmap_entry *got = modmap_find(map, probe[k]);
			const struct mentry *want = model_find(m, probe[k]);
			EXPECT((got == NULL) == (want == NULL) &&
			           (got == NULL || (got->lo == want->lo && got->hi == want->hi)),
			       "find %#" PRIx64 ": %s, expected %s", probe[k],
			       got ? got->path : "nothing", want ? want->path : "nothing");
			const struct modmap_entry *ga = modmap_array_find(v, map->n, probe[k]);
			EXPECT((ga == NULL) == (want == NULL) && (ga == NULL || ga->lo == want->lo),
			       "array find %#" PRIx64, probe[k]);
		}
	}
	modmap_array_free(v, map->n);
}

static void random_entry(struct rng *g, struct mentry *e, unsigned serial)
{
	/* Ranges in a small space so they overlap often. */
	e->lo = 0x1000 * (1 + rng_below(g, 200));
	e->hi = e->lo + 0x1000 * (1 + rng_below(g, 6));
	e->bias = rng_below(g, 2) ? e->lo : 0;
	snprintf(e->path, sizeof(e->path), "/lib/m%u.so", rng_below(g, 4) ? serial : 7u);
	memcpy(e->bid, &serial, 4);
}

START_TEST(test_modmap_model)
{
	struct rng g = {0x6d6f64};
	struct modmap map;
	struct model m = {.n = 0};

	modmap_init(&map, 0, 0);
	EXPECT_EQ(map.max, MODMAP_DEFAULT_MAX);
	for (unsigned step = 0; step < 4000; step++) {
		struct mentry e;
		if (step > 0 && rng_below(&g, 8) == 0 && m.n > 0) {
			e = m.v[rng_below(&g, m.n)]; /* again: identical */
		} else {
			memset(&e, 0, sizeof(e));
			random_entry(&g, &e, step);
		}
		int want = model_add(&m, &e);
		EXPECT_INT_EQ(map_add(&map, &e), want);
		if (step % 16 == 0 || want == 0)
			check_same(&map, &m);
	}
	check_same(&map, &m);
	EXPECT_EQ(map.dropped, 0);
	EXPECT_GT(modmap_memory(&map), map.path_bytes);
	modmap_close(&map);
	EXPECT_EQ(map.n, 0);
	EXPECT_EQ(map.path_bytes, 0);
	EXPECT_TRUE(map.root == NULL);
}
END_TEST

START_TEST(test_modmap_bounds)
{
	struct modmap map;
	struct mentry e = {.bias = 0, .lo = 0, .hi = 0, .path = "/lib/x.so", .bid = {1}};

	modmap_init(&map, 4, 0);
	for (unsigned i = 0; i < 4; i++) {
		e.lo = 0x10000 * (i + 1);
		e.hi = e.lo + 0x1000;
		EXPECT_INT_EQ(map_add(&map, &e), 1);
	}
	/* A fifth: refused and counted; the four stay. */
	e.lo = 0x100000;
	e.hi = 0x101000;
	EXPECT_INT_EQ(map_add(&map, &e), -ENOSPC);
	EXPECT_EQ(map.dropped, 1);
	EXPECT_EQ(map.n, 4);
	EXPECT_TRUE(modmap_find(&map, 0x100800) == NULL);
	/* Identical to one held: still nothing to do, not a drop. */
	e.lo = 0x10000;
	e.hi = 0x11000;
	EXPECT_INT_EQ(map_add(&map, &e), 0);
	EXPECT_EQ(map.dropped, 1);
	/* Over two held ones at the bound: both go (they were unloaded), the
	 * new one takes a freed place. */
	e.lo = 0x10800;
	e.hi = 0x20800;
	EXPECT_INT_EQ(map_add(&map, &e), 1);
	EXPECT_EQ(map.n, 3);
	EXPECT_TRUE(modmap_find(&map, 0x10000) == NULL);
	EXPECT_TRUE(modmap_find(&map, 0x20000) != NULL);
	modmap_close(&map);

	/* The bytes of the paths: 3 paths of 10 bytes fit 32, a fourth not. */
	modmap_init(&map, 100, 32);
	for (unsigned i = 0; i < 4; i++) {
		e.lo = 0x10000 * (i + 1);
		e.hi = e.lo + 0x1000;
		EXPECT_INT_EQ(map_add(&map, &e), i < 3 ? 1 : -ENOSPC);
	}
	EXPECT_EQ(map.path_bytes, 30);
	EXPECT_EQ(map.dropped, 1);
	modmap_close(&map);
}
END_TEST

/* At most this many levels for n entries: a treap's expected depth is
 * about 3 log2 n; an unbalanced tree on sorted input would be n deep. */
static size_t depth_bound(size_t n)
{
	size_t l = 0;
	while (((size_t)1 << l) < n)
		l++;
	return 4 * l + 8;
}

START_TEST(test_modmap_many_in_any_order)
{
	const size_t n = 65536;
	char path[64];
	uint8_t bid[1] = {0};

	for (int order = 0; order < 3; order++) {
		struct modmap map;
		modmap_init(&map, n, (size_t)64 << 20);
		for (size_t i = 0; i < n; i++) {
			size_t k = order == 0   ? i
			           : order == 1 ? n - 1 - i
			                        : (i % 2 ? i / 2 : n - 1 - i / 2);
			uint64_t lo = 0x10000000 + 0x2000 * (uint64_t)k;
			snprintf(path, sizeof(path), "/usr/lib/libmany%zu.so", k);
			EXPECT_INT_EQ(
			    modmap_add(&map, lo, lo, lo + 0x1000, path, strlen(path), bid, 1), 1);
		}
		EXPECT_EQ(map.n, n);
		EXPECT(modmap_depth(&map) <= depth_bound(n), "order %d: depth %zu for %zu entries",
		       order, modmap_depth(&map), n);
		for (size_t k = 0; k < n; k += 97) {
			const struct modmap_entry *e =
			    modmap_find(&map, 0x10000000 + 0x2000 * k + 5);
			snprintf(path, sizeof(path), "/usr/lib/libmany%zu.so", k);
			EXPECT(e != NULL && strcmp(e->path, path) == 0, "module %zu not found", k);
			EXPECT_TRUE(modmap_find(&map, 0x10000000 + 0x2000 * k + 0x1800) == NULL);
		}
		/* One object over all of them: each goes once. */
		EXPECT_INT_EQ(modmap_add(&map, 0, 0x10000000, 0x10000000 + 0x2000 * (uint64_t)n,
		                         "/big", 4, bid, 1),
		              1);
		EXPECT_EQ(map.n, 1);
		modmap_close(&map);
	}
}
END_TEST

/* modmap_share: one snapshot while the map does not change (a capture
 * copies nothing), a new one after a change, and an old one stays whole
 * for whoever holds it. */
START_TEST(test_modmap_share)
{
	struct modmap map;
	static const uint8_t bid[4] = {1, 2, 3, 4};

	modmap_init(&map, 0, 0);
	ck_assert_int_eq(modmap_add(&map, 0, 0x1000, 0x2000, "/a", 2, bid, 4), 1);
	ck_assert_int_eq(modmap_add(&map, 0, 0x3000, 0x4000, "/bb", 3, bid, 4), 1);
	ck_assert_int_eq(modmap_add(&map, 0, 0x5000, 0x6000, "/ccc", 4, bid, 4), 1);
	struct modmap_snap *s1 = modmap_share(&map), *s2 = modmap_share(&map);
	ck_assert_ptr_eq(s1, s2);
	ck_assert_uint_eq(s1->n, 3);
	ck_assert_str_eq(s1->v[0].path, "/a");
	ck_assert_str_eq(s1->v[2].path, "/ccc");
	ck_assert_uint_eq(s1->v[1].lo, 0x3000);
	/* an identical entry changes nothing */
	ck_assert_int_eq(modmap_add(&map, 0, 0x3000, 0x4000, "/bb", 3, bid, 4), 0);
	s2 = modmap_share(&map);
	ck_assert_ptr_eq(s1, s2);
	modmap_snap_unref(s2);
	/* a new one replaces what it overlaps: a new snapshot; the old one
	 * is as it was */
	ck_assert_int_eq(modmap_add(&map, 0, 0x3800, 0x5800, "/new", 4, bid, 4), 1);
	struct modmap_snap *s3 = modmap_share(&map);
	ck_assert_ptr_ne(s1, s3);
	ck_assert_uint_eq(s3->n, 2);
	ck_assert_str_eq(s3->v[0].path, "/a");
	ck_assert_str_eq(s3->v[1].path, "/new");
	ck_assert_uint_eq(s1->n, 3);
	ck_assert_str_eq(s1->v[1].path, "/bb");
	ck_assert_str_eq(s1->v[2].path, "/ccc");
	ck_assert_ptr_eq(modmap_array_find(s3->v, s3->n, 0x4000), &s3->v[1]);
	modmap_close(&map);
	/* the snapshots outlive the map */
	ck_assert_str_eq(s3->v[1].path, "/new");
	modmap_snap_unref(s1);
	modmap_snap_unref(s1);
	modmap_snap_unref(s3);
}
END_TEST

START_TEST(test_modmap_copy)
{
	struct modmap a, b;
	uint8_t bid[3] = {1, 2, 3};

	modmap_init(&a, 10, 1000);
	modmap_init(&b, 0, 0);
	EXPECT_INT_EQ(modmap_add(&a, 5, 0x3000, 0x4000, "/c", 2, bid, 3), 1);
	EXPECT_INT_EQ(modmap_add(&a, 0, 0x1000, 0x2000, "/a", 2, bid, 3), 1);
	modmap_copy(&b, &a);
	EXPECT_EQ(b.n, 2);
	EXPECT_EQ(b.max, 10);
	EXPECT_EQ(b.max_path_bytes, 1000);
	modmap_close(&a);
	const struct modmap_entry *e = modmap_find(&b, 0x3fff);
	EXPECT_TRUE(e != NULL && strcmp(e->path, "/c") == 0 && e->bias == 5 &&
	            e->build_id_len == 3 && e->build_id[2] == 3);
	modmap_close(&b);
}
END_TEST

Suite *modmap_suite(void)
{
	Suite *s = suite_create("modmap");
	TCase *tc = tcase_create("map");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_modmap_model);
	tcase_add_test(tc, test_modmap_bounds);
	tcase_add_test(tc, test_modmap_many_in_any_order);
	tcase_add_test(tc, test_modmap_copy);
	tcase_add_test(tc, test_modmap_share);
	suite_add_tcase(s, tc);
	return s;
}
