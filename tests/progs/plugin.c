/*
 * plugin.c - a shared library that dlopener.c loads at run time, so the
 * end-to-end test can check that allocations made by code loaded with
 * dlopen are attributed to the library's own file and line (the agent sends
 * the module map again after dlopen), also after dlclose.
 */
#pragma GCC optimize("O0")
#include <stdlib.h>

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
