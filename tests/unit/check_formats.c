/*
 * check_formats.c - analysis/export.c: folded stacks and pprof from a
 * snapshot built by hand, so every expected line and value is known.
 *
 * The pprof output is read back with a protobuf reader of the test's own
 * (varints and length-delimited fields, the two wire types the encoder
 * writes), which checks the encoding as well as the values. go tool pprof
 * reads the real thing in e2e_live's exports test.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "snapshot.h"
#include "suites.h"

static const struct frame_info F_MAIN = {"/src/main.c", 10, "main", "/bin/app", NULL, NULL};
static const struct frame_info F_PUT = {"/src/cache.c", 20, "cache_put", "/bin/app", NULL, NULL};
static const struct frame_info F_ODD = {"/src/x.c", 30, "op;er\nator", "/lib/libx.so", NULL, NULL};

/* main -> cache_put: 300 B in 3 blocks, 10 calls, 1000 B, 7 temporary;
 * main -> "op;er\nator": all freed, 5 calls of 50 B, 5 temporary;
 * a stack without frames: 8 B in 1 block. */
static struct snapshot *sample(void)
{
	struct snapshot *s = snapshot_new();
	uint32_t m = snapshot_intern_frame(s, &F_MAIN), p = snapshot_intern_frame(s, &F_PUT),
	         o = snapshot_intern_frame(s, &F_ODD);
	struct {
		uint64_t size, count, allocs, allocated, temp;
		uint32_t n, f[2];
	} t[] = {{300, 3, 10, 1000, 7, 2, {p, m}},
	         {0, 0, 5, 250, 5, 2, {o, m}},
	         {8, 1, 1, 8, 0, 0, {0}}};

	s->taken_at = 1700000000.5;
	s->exe = strdup("/bin/app");
	s->ntraces = 3;
	s->traces = calloc(3, sizeof(*s->traces));
	for (int i = 0; i < 3; i++) {
		struct snapshot_trace *x = &s->traces[i];
		x->size = t[i].size;
		x->count = t[i].count;
		x->allocations = t[i].allocs;
		x->allocated = t[i].allocated;
		x->temporary = t[i].temp;
		x->nframes = t[i].n;
		x->frames = calloc(2, sizeof(*x->frames));
		x->addrs = calloc(2, sizeof(*x->addrs));
		for (uint32_t j = 0; j < t[i].n; j++) {
			x->frames[j] = t[i].f[j];
			x->addrs[j] = 0x401000 + 16 * (uint64_t)t[i].f[j];
		}
	}
	return s;
}

START_TEST(test_folded)
{
	struct snapshot *s = sample();
	static const struct {
		enum query_sort v;
		const char *want;
	} cases[] = {
	    {QUERY_SORT_SIZE, "main;cache_put 300\n[unknown] 8\n"},
	    {QUERY_SORT_COUNT, "main;cache_put 3\n[unknown] 1\n"},
	    {QUERY_SORT_ALLOCATIONS, "main;cache_put 10\nmain;op_er_ator 5\n[unknown] 1\n"},
	    {QUERY_SORT_ALLOCATED, "main;cache_put 1000\nmain;op_er_ator 250\n[unknown] 8\n"},
	    {QUERY_SORT_TEMPORARY, "main;cache_put 7\nmain;op_er_ator 5\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n;
		char *out = export_folded(s, cases[i].v, &n);
		ck_assert_str_eq(out, cases[i].want);
		ck_assert_uint_eq(n, strlen(cases[i].want));
		free(out);
	}
	snapshot_free(s);
}
END_TEST

/* ---- a protobuf reader for the test ---- */

struct pb {
	const uint8_t *p, *end;
};

static bool pb_varint(struct pb *b, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && b->p < b->end; shift += 7) {
		uint8_t c = *b->p++;
		*v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return true;
	}
	return false;
}

/* The next field: its number, and a varint value or a sub-buffer. */
static bool pb_next(struct pb *b, uint32_t *field, uint64_t *v, struct pb *sub)
{
	uint64_t key, len;

	if (b->p >= b->end || !pb_varint(b, &key))
		return false;
	*field = (uint32_t)(key >> 3);
	switch (key & 7) {
	case 0:
		return pb_varint(b, v);
	case 2:
		if (!pb_varint(b, &len) || len > (uint64_t)(b->end - b->p))
			return false;
		sub->p = b->p;
		sub->end = b->p + len;
		b->p += len;
		return true;
	default:
		ck_abort_msg("wire type %u", (unsigned)(key & 7));
		return false;
	}
}

START_TEST(test_pprof)
{
	struct snapshot *s = sample();
	size_t n;
	uint8_t *out = export_pprof(s, &n);
	struct pb b = {out, out + n}, sub, sub2;
	uint32_t field;
	uint64_t v;
	char *strs[32];
	int nstr = 0, nsample_type = 0, nsample = 0, nloc = 0, nfn = 0;
	uint64_t values[3][4], sample_types[4][2], default_type = 0, time_nanos = 0;
	uint64_t loc_fn[8] = {0}, loc_line[8] = {0}, fn_name[8] = {0};
	uint64_t loc_map[8] = {0}, loc_addr[8] = {0};
	uint64_t map_lo[8] = {0}, map_hi[8] = {0}, map_file[8] = {0};
	int nmap = 0;
	int sample_nloc[3] = {0};

	while (pb_next(&b, &field, &v, &sub)) {
		switch (field) {
		case 1: /* sample_type */
			ck_assert_int_lt(nsample_type, 4);
			while (pb_next(&sub, &field, &v, &sub2))
				sample_types[nsample_type][field - 1] = v;
			nsample_type++;
			break;
		case 2: /* sample */
			ck_assert_int_lt(nsample, 3);
			while (pb_next(&sub, &field, &v, &sub2)) {
				if (field == 1) {
					while (pb_varint(&sub2, &v))
						sample_nloc[nsample]++;
				} else {
					ck_assert_uint_eq(field, 2);
					for (int k = 0; k < 4; k++)
						ck_assert(pb_varint(&sub2, &values[nsample][k]));
					ck_assert(sub2.p == sub2.end);
				}
			}
			nsample++;
			break;
		case 3: { /* mapping */
			uint64_t id = 0, lo = 0, hi = 0, file = 0;
			while (pb_next(&sub, &field, &v, &sub2)) {
				if (field == 1)
					id = v;
				else if (field == 2)
					lo = v;
				else if (field == 3)
					hi = v;
				else if (field == 5)
					file = v;
			}
			ck_assert(id >= 1 && id < 8);
			map_lo[id] = lo, map_hi[id] = hi, map_file[id] = file;
			nmap++;
			break;
		}
		case 4: { /* location */
			uint64_t id = 0, fn = 0, line = 0, map = 0, at = 0;
			while (pb_next(&sub, &field, &v, &sub2)) {
				if (field == 1)
					id = v;
				if (field == 2)
					map = v;
				if (field == 3)
					at = v;
				if (field == 4) {
					struct pb sub3;
					while (pb_next(&sub2, &field, &v, &sub3)) {
						if (field == 1)
							fn = v;
						else
							line = v;
					}
				}
			}
			ck_assert(id >= 1 && id < 8);
			loc_fn[id] = fn;
			loc_line[id] = line;
			loc_map[id] = map;
			loc_addr[id] = at;
			nloc++;
			break;
		}
		case 5: { /* function */
			uint64_t id = 0, name = 0;
			while (pb_next(&sub, &field, &v, &sub2)) {
				if (field == 1)
					id = v;
				if (field == 2)
					name = v;
			}
			ck_assert(id >= 1 && id < 8);
			fn_name[id] = name;
			nfn++;
			break;
		}
		case 6: /* string_table */
			ck_assert_int_lt(nstr, 32);
			strs[nstr++] = strndup((const char *)sub.p, (size_t)(sub.end - sub.p));
			break;
		case 9:
			time_nanos = v;
			break;
		case 14:
			default_type = v;
			break;
		default:
			ck_abort_msg("unexpected field %u", field);
		}
	}
	ck_assert(b.p == b.end);
	ck_assert_int_ge(nstr, 1);
	ck_assert_str_eq(strs[0], "");
	ck_assert_int_eq(nsample_type, 4);
	static const char *const types[][2] = {{"inuse_space", "bytes"},
	                                       {"inuse_objects", "count"},
	                                       {"alloc_space", "bytes"},
	                                       {"alloc_objects", "count"}};
	for (int i = 0; i < 4; i++) {
		ck_assert_str_eq(strs[sample_types[i][0]], types[i][0]);
		ck_assert_str_eq(strs[sample_types[i][1]], types[i][1]);
	}
	ck_assert_str_eq(strs[default_type], "inuse_space");
	ck_assert_uint_eq(time_nanos, UINT64_C(1700000000500000000));
	ck_assert_int_eq(nsample, 3);
	static const uint64_t want[3][4] = {{300, 3, 1000, 10}, {0, 0, 250, 5}, {8, 1, 8, 1}};
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 4; k++)
			ck_assert_uint_eq(values[i][k], want[i][k]);
	ck_assert_int_eq(sample_nloc[0], 2);
	ck_assert_int_eq(sample_nloc[2], 0);
	/* Three frames, three locations, three functions; the names and lines
	 * as in the snapshot (the odd name is kept as it is: pprof's strings
	 * are any bytes). */
	ck_assert_int_eq(nloc, 3);
	ck_assert_int_eq(nfn, 3);
	static const struct frame_info *const fr[] = {&F_MAIN, &F_PUT, &F_ODD};
	for (int id = 1; id <= 3; id++) {
		ck_assert_str_eq(strs[fn_name[loc_fn[id]]], fr[id - 1]->function);
		ck_assert_uint_eq(loc_line[id], fr[id - 1]->lineno);
	}
	/* Two objects: the executable first (pprof's main binary), each
	 * location in its frame's, within its span. */
	ck_assert_int_eq(nmap, 2);
	ck_assert_str_eq(strs[map_file[1]], "/bin/app");
	for (int id = 1; id <= 3; id++) {
		uint64_t m = loc_map[id];
		ck_assert(m >= 1 && m <= 2);
		ck_assert_str_eq(strs[map_file[m]], fr[id - 1]->module);
		ck_assert(loc_addr[id] >= map_lo[m] && loc_addr[id] < map_hi[m]);
	}
	for (int i = 0; i < nstr; i++)
		free(strs[i]);
	free(out);
	snapshot_free(s);
}
END_TEST

Suite *formats_suite(void)
{
	Suite *s = suite_create("formats");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_folded);
	tcase_add_test(tc, test_pprof);
	suite_add_tcase(s, tc);
	return s;
}
