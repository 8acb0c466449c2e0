/*
 * check_jsonout.c - common/jsonout.c: integers printed as the exact digits
 * they are, and JSON text that is valid UTF-8 whatever bytes the strings
 * held.
 *
 * Expected texts are written out here: the decimal expansions of the
 * values, the bytes of U+FFFD (EF BF BD), the code point ranges of RFC 3629
 * table 3-7; the printed text is checked with a validator written here
 * independently of the one under test, and read back with plain cJSON.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonout.h"
#include "suites.h"

/* Well-formed UTF-8 by the table of RFC 3629, section 4. */
static bool utf8_ok(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned char c = *s;
		int n;
		unsigned char lo = 0x80, hi = 0xbf;

		if (c <= 0x7f) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c == 0xe0)
			n = 2, lo = 0xa0;
		else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
			n = 2;
		else if (c == 0xed)
			n = 2, hi = 0x9f;
		else if (c == 0xf0)
			n = 3, lo = 0x90;
		else if (c >= 0xf1 && c <= 0xf3)
			n = 3;
		else if (c == 0xf4)
			n = 3, hi = 0x8f;
		else
			return false;
		if (s[1] < lo || s[1] > hi)
			return false;
		for (int i = 2; i <= n; i++)
			if (s[i] < 0x80 || s[i] > 0xbf)
				return false;
		s += n + 1;
	}
	return true;
}

static char *print(cJSON *j)
{
	char *t = jsonout_print(j, false);

	ck_assert_ptr_nonnull(t);
	return t;
}

START_TEST(test_u64_exact)
{
	static const struct {
		uint64_t v;
		const char *text;
	} cases[] = {
	    {0, "0"},
	    {1, "1"},
	    {999999999999999, "999999999999999"},
	    {1000000000000000, "1000000000000000"},
	    {9007199254740993ULL, "9007199254740993"}, /* 2^53 + 1: no double */
	    {329853533332650001ULL, "329853533332650001"},
	    {18446744073709551615ULL, "18446744073709551615"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cJSON *o = cJSON_CreateObject();
		jsonout_add_u64(o, "v", cases[i].v);
		char *t = print(o);
		char want[64];
		snprintf(want, sizeof want, "{\"v\":%s}", cases[i].text);
		ck_assert_str_eq(t, want);
		/* The tree is as it was: a number. */
		ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(o, "v")));
		/* Read back, the integer is exact again. */
		cJSON *r = jsonout_parse(t);
		uint64_t u = 0;
		ck_assert_int_eq(jsonout_get_u64(cJSON_GetObjectItem(r, "v"), &u), 0);
		ck_assert(u == cases[i].v);
		char *t2 = jsonout_print(r, true);
		ck_assert_ptr_nonnull(strstr(t2, cases[i].text));
		cJSON_free(t2);
		cJSON_Delete(r);
		cJSON_free(t);
		cJSON_Delete(o);
	}
}
END_TEST

START_TEST(test_signed_and_diff)
{
	cJSON *a = cJSON_CreateArray();
	cJSON_AddItemToArray(a, jsonout_diff(5, 10));
	cJSON_AddItemToArray(a, jsonout_diff(10, 5));
	cJSON_AddItemToArray(a, jsonout_diff(0, 18446744073709551615ULL));
	cJSON_AddItemToArray(a, jsonout_signed(true, 0));
	char *t = print(a);
	ck_assert_str_eq(t, "[-5,5,-18446744073709551615,0]");
	cJSON_free(t);
	cJSON_Delete(a);
}
END_TEST

START_TEST(test_integral_doubles_as_digits)
{
	/* cJSON itself would print 1e+18 and 3.2985353333265e+17. A double
	 * past 2^53 prints as the integer it holds (329853533332650000 is
	 * not one: the nearest is ...649984). */
	cJSON *a = cJSON_CreateArray();
	cJSON_AddItemToArray(a, cJSON_CreateNumber(1e18));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(329853533332650000.0));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(-4e15));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(42));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(0.5));
	char *t = print(a);
	ck_assert_str_eq(t, "[1000000000000000000,329853533332649984,-4000000000000000,42,0.5]");
	cJSON_free(t);
	/* A number set after it was made prints its new value. */
	cJSON *o = cJSON_CreateObject();
	jsonout_add_u64(o, "v", 7);
	cJSON_SetNumberValue(cJSON_GetObjectItem(o, "v"), 8);
	t = print(o);
	ck_assert_str_eq(t, "{\"v\":8}");
	cJSON_free(t);
	cJSON_Delete(o);
	cJSON_Delete(a);
}
END_TEST

START_TEST(test_parse_keeps_integer_texts)
{
	/* Numbers inside strings, escaped quotes, fractions and exponents must
	 * not shift which text goes with which number. */
	const char *text = "{\"s\":\"12 \\\" -3, 4\",\"a\":[1,2.5,-7,1e3,18446744073709551615],"
	                   "\"k\\\"9\":{\"n\":9007199254740993}}";
	cJSON *j = jsonout_parse(text);
	uint64_t u;

	ck_assert_ptr_nonnull(j);
	cJSON *a = cJSON_GetObjectItem(j, "a");
	ck_assert_int_eq(jsonout_get_u64(cJSON_GetArrayItem(a, 0), &u), 0);
	ck_assert(u == 1);
	ck_assert_int_eq(jsonout_get_u64(cJSON_GetArrayItem(a, 1), &u), -ERANGE);
	ck_assert_int_eq(jsonout_get_u64(cJSON_GetArrayItem(a, 2), &u), -ERANGE);
	ck_assert_int_eq(jsonout_get_u64(cJSON_GetArrayItem(a, 4), &u), 0);
	ck_assert(u == 18446744073709551615ULL);
	ck_assert_int_eq(
	    jsonout_get_u64(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "k\"9"), "n"), &u), 0);
	ck_assert(u == 9007199254740993ULL);
	char *t = print(j);
	ck_assert_str_eq(t, "{\"s\":\"12 \\\" -3, 4\",\"a\":[1,2.5,-7,1000,18446744073709551615],"
	                    "\"k\\\"9\":{\"n\":9007199254740993}}");
	cJSON_free(t);
	cJSON_Delete(j);
	ck_assert_ptr_null(jsonout_parse("{\"a\":1} trailing"));
}
END_TEST

START_TEST(test_utf8_repaired)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"plain", "plain"},
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"},
	    {"a\xff"
	     "b",
	     "a\xef\xbf\xbd"
	     "b"},
	    {"\xfe\xff", "\xef\xbf\xbd\xef\xbf\xbd"},
	    {"cut \xc3", "cut \xef\xbf\xbd"},                         /* truncated sequence */
	    {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
	    {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong */
	    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
	    {"\xf4\x90\x80\x80",
	     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
	    {"\x80x", "\xef\xbf\xbdx"},                           /* a lone continuation byte */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "s", cases[i].in);
		/* keys too */
		cJSON_AddNumberToObject(o, cases[i].in, 1);
		char *t = print(o);
		ck_assert_msg(utf8_ok((const unsigned char *)t), "case %zu: invalid output", i);
		cJSON *r = cJSON_Parse(t);
		ck_assert_ptr_nonnull(r);
		ck_assert_str_eq(cJSON_GetObjectItem(r, "s")->valuestring, cases[i].out);
		ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(r, cases[i].out));
		ck_assert_int_eq(jsonout_utf8_valid(cases[i].in, strlen(cases[i].in)),
		                 strcmp(cases[i].in, cases[i].out) == 0);
		cJSON_Delete(r);
		cJSON_free(t);
		cJSON_Delete(o);
	}
}
END_TEST

START_TEST(test_references_and_subtrees)
{
	/* A reference shares its original's text: printed, never freed twice
	 * (ASan watches). Printing a member prints it alone. */
	cJSON *o = cJSON_CreateObject();
	cJSON *n = jsonout_u64(12345678901234567ULL);
	cJSON_AddItemToObject(o, "n", n);
	cJSON_AddItemReferenceToObject(o, "alias", n);
	cJSON_AddStringToObject(o, "bad", "\xff");
	char *t = print(o);
	ck_assert_str_eq(t, "{\"n\":12345678901234567,\"alias\":12345678901234567,"
	                    "\"bad\":\"\xef\xbf\xbd\"}");
	cJSON_free(t);
	t = print(n);
	ck_assert_str_eq(t, "12345678901234567");
	cJSON_free(t);
	cJSON_Delete(o);
}
END_TEST

Suite *jsonout_suite(void)
{
	Suite *s = suite_create("jsonout");
	TCase *tc = tcase_create("jsonout");

	tcase_add_test(tc, test_u64_exact);
	tcase_add_test(tc, test_signed_and_diff);
	tcase_add_test(tc, test_integral_doubles_as_digits);
	tcase_add_test(tc, test_parse_keeps_integer_texts);
	tcase_add_test(tc, test_utf8_repaired);
	tcase_add_test(tc, test_references_and_subtrees);
	suite_add_tcase(s, tc);
	return s;
}
