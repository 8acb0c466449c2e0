/*
 * jsonout.h - JSON text every reader reads right: exact 64-bit integers and
 * valid UTF-8.
 *
 * cJSON keeps a number as a double and prints it with 15 or 17 significant
 * digits, so an integer of 10^15 or more comes out as 3.2985353333265e+17,
 * and one of 2^53 or more comes out rounded (a hostile agent's sizes reach
 * 2^64). It copies the bytes of a string as they are, so an executable or
 * an argument with a byte like 0xff makes the whole answer invalid UTF-8,
 * which strict JSON readers refuse. So:
 *
 * - jsonout_u64 and jsonout_signed make a number that carries its exact
 *   decimal text along (in valuestring, which cJSON leaves unused for
 *   numbers: readers of valuedouble see the number as before);
 * - jsonout_parse parses like cJSON_ParseWithOpts and keeps the exact text
 *   of every integer in the text the same way, so that a client printing
 *   an answer again prints its integers as the daemon sent them;
 * - jsonout_print prints with every such number as its text, every other
 *   integral number as digits (never an exponent), and every string and
 *   key made valid UTF-8: each byte that does not start a well-formed
 *   sequence (RFC 3629: no overlong forms, no surrogates, nothing past
 *   U+10FFFF) becomes U+FFFD. Valid strings are printed unchanged.
 *
 * A number's text must describe it: a number changed after it was made
 * (cJSON_SetNumberValue) has its text ignored when the two disagree.
 * Nothing here keeps state; all allocation goes through cJSON's hooks.
 */
#ifndef MEMTRACE_JSONOUT_H
#define MEMTRACE_JSONOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

cJSON *jsonout_u64(uint64_t v);
/* -magnitude when negative, else magnitude (a difference of two u64s). */
cJSON *jsonout_signed(bool negative, uint64_t magnitude);
/* new - old, exactly. */
cJSON *jsonout_diff(uint64_t new_, uint64_t old);
void jsonout_add_u64(cJSON *obj, const char *name, uint64_t v);

/* The exact integer a number carries: 0, or -ERANGE (not an integer in
 * [0, 2^64), or only known as a double past 2^53). */
int jsonout_get_u64(const cJSON *n, uint64_t *out);

/* cJSON_ParseWithOpts(text, NULL, true), keeping integers' texts. */
cJSON *jsonout_parse(const char *text);
/* The same for a tree cJSON parsed from text (NUL-terminated) already. */
void jsonout_keep_integers(cJSON *j, const char *text);
/* The text of j (formatted or not), as described above; NULL only when
 * cJSON's printer fails. Free with cJSON_free. j is repaired in place
 * (invalid strings), otherwise left as it was. */
char *jsonout_print(cJSON *j, bool formatted);

/* Whether s (n bytes) is well-formed UTF-8. */
bool jsonout_utf8_valid(const char *s, size_t n);

#endif
