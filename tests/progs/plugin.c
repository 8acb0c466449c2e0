/*
 * plugin.c - a shared library that dlopener.c loads at run time, so the
 * end-to-end test can check that allocations made by code loaded with
 * dlopen are attributed to the library's own file and line (the agent sends
 * the module map again after dlopen), also after dlclose.
 *
 * With PLUGIN_CTOR_CHURN=N in the environment its constructor allocates and
 * frees N small blocks: run inside dlopen, with the loader's lock held (see
 * ctorlib.c, which loads it before the agent's constructor ran).
 */
#pragma GCC optimize("O0")
#include <stdlib.h>

static long churned;

__attribute__((constructor)) static void plugin_init(void)
{
	const char *v = getenv("PLUGIN_CTOR_CHURN");
	long n = v != NULL ? atol(v) : 0;

	for (long i = 0; i < n; i++) {
		void *volatile p = malloc(16);
		free(p);
	}
	churned = n;
}

/* How many blocks the constructor allocated and freed. */
__attribute__((visibility("default"))) long plugin_churned(void)
{
	return churned;
}

/* Allocates n bytes and says where: the malloc call is on the line that
 * *line is set to. */
__attribute__((visibility("default"), noinline)) void *plugin_alloc(size_t n, const char **file,
                                                                    int *line, const char **func)
{
	/* The malloc call and __LINE__ must share a line. */
	/* clang-format off */
	void *p = malloc(n); *line = __LINE__;
	/* clang-format on */
	*file = __FILE__;
	*func = __func__;
	return p;
}
