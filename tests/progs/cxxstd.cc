/*
 * cxxstd.cc - blocks the C++ standard library allocates for the program.
 *
 * A std::vector's buffer, a std::string's and a std::map's nodes are
 * allocated in libstdc++'s headers (new_allocator.h, instantiated in this
 * binary) through operator new (libstdc++.so). memtrace must name, by
 * default, the program's line that used the container (the first frame
 * outside the C and C++ runtime); with --raw-frames, the header's.
 *
 * Sites: site_vector reserves 100 ints (400 B); site_string makes a string
 * of 200 characters (its buffer: 201 B); site_map inserts 10 keys (10 nodes
 * of sizeof(_Rb_tree_node<pair<const int, int>>)). "ready" after them; any
 * command then destroys them and the program exits 0.
 *
 * No iostream: output goes through truth.h's write(2). libstdc++ allocates
 * its exception emergency pool before main: libstdc++'s site, not ours.
 */

/* The program is the test's ground truth: every site must stay its own frame
 * whatever CFLAGS the build uses (automake puts the user's -O2 last). */
#pragma GCC optimize("O0")
/* Not clang-formatted: an allocation and its TRUTH_ALLOC share one source line on
 * purpose (the book's line must be the call's line); clang-format would
 * split them. */
/* clang-format off */
#include <map>
#include <string>
#include <vector>

#include "truth.h"

static std::vector<int> *vec;
static std::string *str;
static std::map<int, int> *dict;

typedef std::_Rb_tree_node<std::pair<const int, int>> map_node;

static void site_vector(void)
{
	vec->reserve(100); TRUTH_ALLOC(100 * sizeof(int));
}

static void site_string(void)
{
	str = new std::string(200, 'x'); TRUTH_ALLOC(sizeof(std::string)); TRUTH_ALLOC(201);
}

static void site_map(void)
{
	for (int i = 0; i < 10; i++) {
		(*dict)[i] = i; TRUTH_ALLOC(sizeof(map_node));
	}
}

int main(void)
{
	char cmd[64];
	int rec;

	vec = new std::vector<int>(); rec = TRUTH_ALLOC(sizeof(std::vector<int>));
	dict = new std::map<int, int>(); rec = TRUTH_ALLOC(sizeof(std::map<int, int>));
	(void)rec;
	TRUTH_CALL(site_vector());
	TRUTH_CALL(site_string());
	TRUTH_CALL(site_map());
	truth_ready();
	truth_wait(cmd, sizeof cmd);
	delete vec;
	delete str;
	delete dict;
	return 0;
}
