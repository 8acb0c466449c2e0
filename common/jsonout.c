/* jsonout.c - exact integers and valid UTF-8 in cJSON's output (see jsonout.h). */
#include "jsonout.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Marks a number shown as raw text while it is printed (cJSON's printer
 * looks at the low 8 bits of type only). */
#define JSONOUT_WAS_NUMBER (1 << 12)
#define KEEP_FLAGS         (cJSON_IsReference | cJSON_StringIsConst)

static char *text_dup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *c = cJSON_malloc(n);

	memcpy(c, s, n);
	return c;
}

static cJSON *number_with_text(double d, const char *text)
{
	cJSON *n = cJSON_CreateNumber(d);

	n->valuestring = text_dup(text);
	return n;
}

cJSON *jsonout_u64(uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof buf, "%" PRIu64, v);
	return number_with_text((double)v, buf);
}

cJSON *jsonout_signed(bool negative, uint64_t magnitude)
{
	char buf[24];

	if (!negative || magnitude == 0)
		return jsonout_u64(magnitude);
	snprintf(buf, sizeof buf, "-%" PRIu64, magnitude);
	return number_with_text(-(double)magnitude, buf);
}

cJSON *jsonout_diff(uint64_t new_, uint64_t old)
{
	return new_ >= old ? jsonout_u64(new_ - old) : jsonout_signed(true, old - new_);
}

void jsonout_add_u64(cJSON *obj, const char *name, uint64_t v)
{
	cJSON_AddItemToObject(obj, name, jsonout_u64(v));
}

/* The text of an integer: an optional '-' and digits, no leading zero but
 * "0" itself. */
static bool integer_text(const char *s, size_t n)
{
	size_t i = s[0] == '-' ? 1 : 0;

	if (i >= n || (s[i] == '0' && n - i > 1))
		return false;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The number's own text when it still describes valuedouble (a number set
 * since has a stale text): as the double nearest to it, it must equal. */
static const char *exact_text(const cJSON *n)
{
	const char *t = n->valuestring;

	if (t == NULL || !integer_text(t, strlen(t)))
		return NULL;
	return strtod(t, NULL) == n->valuedouble ? t : NULL;
}

int jsonout_get_u64(const cJSON *n, uint64_t *out)
{
	const char *t;
	double d;

	if (n == NULL || (!cJSON_IsNumber(n) && !cJSON_IsRaw(n)))
		return -ERANGE;
	t = cJSON_IsRaw(n) ? n->valuestring : exact_text(n);
	if (t != NULL) {
		uint64_t u = 0;
		if (t[0] == '-' || !integer_text(t, strlen(t)))
			return -ERANGE;
		for (; *t != '\0'; t++) {
			unsigned dg = (unsigned)(*t - '0');
			if (u > (UINT64_MAX - dg) / 10)
				return -ERANGE;
			u = u * 10 + dg;
		}
		*out = u;
		return 0;
	}
	if (cJSON_IsRaw(n))
		return -ERANGE;
	d = n->valuedouble;
	/* Only what a double holds exactly: integers up to 2^53. */
	if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
		return -ERANGE;
	*out = (uint64_t)d;
	return 0;
}

/* ---- parsing: the integers' texts ---- */

/* The next number token of a valid JSON text at or after *p, outside
 * strings; its start and length. False at the end. */
static bool next_number(const char **p, const char **start, size_t *len)
{
	const char *s = *p;

	while (*s != '\0') {
		if (*s == '"') {
			for (s++; *s != '\0' && *s != '"'; s++)
				if (*s == '\\' && s[1] != '\0')
					s++;
			if (*s == '"')
				s++;
			continue;
		}
		if (*s == '-' || (*s >= '0' && *s <= '9')) {
			const char *b = s;
			while (*s != '\0' && strchr("0123456789+-.eE", *s) != NULL)
				s++;
			*start = b;
			*len = (size_t)(s - b);
			*p = s;
			return true;
		}
		s++;
	}
	*p = s;
	return false;
}

/* Gives the numbers of the tree, in document order (the order cJSON built
 * them in), the texts of the number tokens, in the same order. */
static void attach_texts(cJSON *n, const char **p)
{
	for (; n != NULL; n = n->next) {
		if (cJSON_IsNumber(n)) {
			const char *start;
			size_t len;
			if (!next_number(p, &start, &len))
				return;
			if (len < 32 && integer_text(start, len) && n->valuestring == NULL) {
				n->valuestring = cJSON_malloc(len + 1);
				memcpy(n->valuestring, start, len);
				n->valuestring[len] = '\0';
			}
		}
		if (n->child != NULL)
			attach_texts(n->child, p);
	}
}

void jsonout_keep_integers(cJSON *j, const char *text)
{
	const char *p = text;

	if (j != NULL && text != NULL)
		attach_texts(j, &p);
}

cJSON *jsonout_parse(const char *text)
{
	cJSON *j = cJSON_ParseWithOpts(text, NULL, 1);

	jsonout_keep_integers(j, text);
	return j;
}

/* ---- UTF-8 ---- */

/* Length of the well-formed sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	/* The second byte's range rules out overlong forms, surrogates and
	 * code points past U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

bool jsonout_utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(u + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* s with each byte that starts no well-formed sequence replaced by U+FFFD,
 * or NULL when s is valid. */
static char *utf8_repaired(const char *s)
{
	static const char fffd[] = "\xef\xbf\xbd";
	size_t n = strlen(s), o = 0;
	const unsigned char *u = (const unsigned char *)s;
	char *r;

	if (jsonout_utf8_valid(s, n))
		return NULL;
	r = cJSON_malloc(3 * n + 1);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(u + i, n - i);
		if (k == 0) {
			memcpy(r + o, fffd, 3);
			o += 3;
			i++;
		} else {
			memcpy(r + o, s + i, k);
			o += k;
			i += k;
		}
	}
	r[o] = '\0';
	return r;
}

/* ---- printing ---- */

/* An integral double that cJSON would not print as digits: past int's
 * range (it prints those with %g). */
static bool needs_digits(const cJSON *n)
{
	double d = n->valuedouble;
	double a = d < 0 ? -d : d;

	return isfinite(d) && a < 18446744073709551616.0 && (double)n->valueint != d &&
	       (a < 9223372036854775808.0 ? (double)(int64_t)d == d : true);
}

/* Before printing: strings and keys repaired, numbers shown as their text
 * (`show`), or back (after printing). References share what they point
 * to, so they are left to their originals. */
static void prepare(cJSON *n, bool show)
{
	for (; n != NULL; n = n->next) {
		bool ref = (n->type & cJSON_IsReference) != 0;

		if (show && n->string != NULL) {
			char *k = utf8_repaired(n->string);
			if (k != NULL) {
				if (!(n->type & cJSON_StringIsConst))
					cJSON_free(n->string);
				n->string = k;
				n->type &= ~cJSON_StringIsConst;
			}
		}
		if (!show && (n->type & JSONOUT_WAS_NUMBER)) {
			n->type = (n->type & KEEP_FLAGS) | cJSON_Number;
		} else if (show && cJSON_IsNumber(n)) {
			if (exact_text(n) == NULL && !ref && n->valuestring == NULL &&
			    needs_digits(n)) {
				char buf[32];
				snprintf(buf, sizeof buf, "%.0f", n->valuedouble);
				n->valuestring = text_dup(buf);
			}
			if (exact_text(n) != NULL)
				n->type = (n->type & KEEP_FLAGS) | cJSON_Raw | JSONOUT_WAS_NUMBER;
		} else if (show && cJSON_IsString(n) && !ref && n->valuestring != NULL) {
			char *v = utf8_repaired(n->valuestring);
			if (v != NULL) {
				cJSON_free(n->valuestring);
				n->valuestring = v;
			}
		}
		if (n->child != NULL && !ref)
			prepare(n->child, show);
	}
}

char *jsonout_print(cJSON *j, bool formatted)
{
	char *text;
	cJSON *next;

	if (j == NULL)
		return NULL;
	/* Only j and what is below it, not its siblings. */
	next = j->next;
	j->next = NULL;
	prepare(j, true);
	text = formatted ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
	prepare(j, false);
	j->next = next;
	return text;
}
