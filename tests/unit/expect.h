/*
 * expect.h - assertions for the unit suites that call into Check only when
 * they fail.
 *
 * Check logs every passing ck_assert, which at the millions of comparisons
 * the model-based suites make (check_heap, check_session, check_stacktab)
 * would be most of their run time. These macros test the condition first
 * and reach ck_abort_msg only on a failure, with the same kind of message.
 * Each operand is evaluated once.
 */
#ifndef MEMTRACE_TEST_EXPECT_H
#define MEMTRACE_TEST_EXPECT_H

#include <stdint.h>

#include <check.h>

#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg(__VA_ARGS__);                                                 \
	} while (0)
#define EXPECT_TRUE(cond) EXPECT(cond, "'%s' is false", #cond)
#define EXPECT_CMP(a, op, b)                                                                       \
	do {                                                                                       \
		uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                                \
		if (!(a_ op b_))                                                                   \
			ck_abort_msg("'%s %s %s' is false: %ju, %ju", #a, #op, #b, a_, b_);        \
	} while (0)
#define EXPECT_EQ(a, b) EXPECT_CMP(a, ==, b)
#define EXPECT_GE(a, b) EXPECT_CMP(a, >=, b)
#define EXPECT_GT(a, b) EXPECT_CMP(a, >, b)
#define EXPECT_LE(a, b) EXPECT_CMP(a, <=, b)
#define EXPECT_INT_EQ(a, b)                                                                        \
	do {                                                                                       \
		intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                   \
		if (a_ != b_)                                                                      \
			ck_abort_msg("'%s == %s' is false: %jd, %jd", #a, #b, a_, b_);             \
	} while (0)
/* EXPECT_EQ with a description of where the comparison is made. */
#define EXPECT_EQ_AT(where, a, b)                                                                  \
	do {                                                                                       \
		uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);                                \
		if (a_ != b_)                                                                      \
			ck_abort_msg("%s: '%s == %s' is false: %ju, %ju", where, #a, #b, a_, b_);  \
	} while (0)

#endif
