/*
 * cxxstart.cc - a C++ program that allocates nothing itself: what memtrace
 * sees of it is libstdc++'s start-up, made in libstdc++'s constructor before
 * the agent's constructor runs. The largest part is the emergency pool that
 * libstdc++ keeps for throwing exceptions when malloc fails.
 *
 * Meta "eh_pool_bytes" is that pool's size as libstdc++ documents it, or 0
 * when this build cannot know it: libstdc++ up to GCC 12 allocates
 * EMERGENCY_OBJ_COUNT (64) objects of EMERGENCY_OBJ_SIZE (1024) bytes plus
 * one __cxa_dependent_exception header per object (eh_alloc.cc, on LP64). The
 * header's layout is the Itanium C++ ABI's, mirrored below as libstdc++'s
 * unwind-cxx.h declares it. Later releases size the pool from
 * GLIBCXX_TUNABLES, so there the test only asks for a block of libstdc++'s.
 *
 * One exception is thrown and caught first, so libstdc++ is a real
 * dependency; its storage is freed at the catch. Then "ready"; "exit" ends.
 */
#pragma GCC optimize("O0")
#include <unwind.h>

#include <cstddef>
#include <exception>

#include "truth.h"

#if defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE <= 12 && defined(__LP64__)
/* The ABI's dependent exception header (libstdc++'s unwind-cxx.h). */
struct abi_dependent_exception {
	void *primary_exception;
	void (*padding)(void *);
	std::terminate_handler unexpected_handler;
	std::terminate_handler terminate_handler;
	void *next_exception;
	int handler_count;
	int handler_switch_value;
	const unsigned char *action_record;
	const unsigned char *language_specific_data;
	_Unwind_Ptr catch_temp;
	void *adjusted_ptr;
	_Unwind_Exception unwind_header;
};
static const long long eh_pool_bytes = 64 * 1024 + 64 * (long long)sizeof(abi_dependent_exception);
#else
static const long long eh_pool_bytes = 0;
#endif

int main()
{
	char cmd[64];

	try {
		throw 42;
	} catch (int) {
	}
	truth_meta("eh_pool_bytes", eh_pool_bytes);
	truth_ready();
	truth_wait(cmd, sizeof(cmd));
	return 0;
}
