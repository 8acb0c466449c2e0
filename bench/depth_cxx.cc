/*
 * depth_cxx.cc - a C++ workload with deep template stacks: every allocation
 * comes from std::string and std::vector code reached through DEPTH nested
 * template instantiations (each a real frame, built -O2 without frame
 * pointers), the stacks that heavy template code makes. The allocations
 * repeat from a few sites, as a real program's do.
 *
 * Usage: depth_cxx [-n N]
 * Prints one line: depth, rounds, wall_s, cpu_s (the process's user and
 * system time, the agent's thread included). The allocator calls are counted
 * by the daemon (bench/depth.sh reads them from memtracectl stats).
 */
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#define NOINLINE __attribute__((noinline))
static constexpr int DEPTH = 40;
static volatile size_t sink;

template <int N> struct Deep {
	NOINLINE static size_t go(std::vector<std::string> &v, long i)
	{
		size_t r = Deep<N - 1>::go(v, i + N);
		sink = sink + r; // not a tail call
		return r + 1;
	}
};

template <> struct Deep<0> {
	NOINLINE static size_t go(std::vector<std::string> &v, long i)
	{
		v.emplace_back(std::to_string(i) + " a value long enough for the heap");
		if (v.size() >= 64) {
			std::vector<std::string> keep(v.begin(), v.begin() + 8);
			v.swap(keep);
		}
		return v.size();
	}
};

int main(int argc, char **argv)
{
	long n = 300000;
	int c;
	while ((c = getopt(argc, argv, "n:")) != -1) {
		if (c == 'n')
			n = std::atol(optarg);
		else
			return 2;
	}
	std::vector<std::string> v;
	auto t0 = std::chrono::steady_clock::now();
	for (long i = 0; i < n; i++)
		Deep<DEPTH>::go(v, i);
	auto t1 = std::chrono::steady_clock::now();
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	std::printf("depth=%d rounds=%ld wall_s=%.6f cpu_s=%.6f\n", DEPTH, n,
	            std::chrono::duration<double>(t1 - t0).count(),
	            double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	                double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	return 0;
}
