/*
 * ctorlib.c - a shared library whose constructor allocates, linked into
 * ctoruser as an ordinary dependency (DT_NEEDED). The loader runs its
 * constructor before the preloaded agent's, so these blocks are made before
 * the agent's constructor: tracing must start at the first allocator call.
 *
 * The constructor holds CTORLIB_BLOCKS blocks (CTORLIB_BYTES in all) made at
 * three lines it remembers, for the program to book (ctorlib_site). Between
 * them, with CTORLIB_CHURN=N in the environment, it allocates and frees N
 * small blocks: enough events to fill a thread's ring before the agent's
 * constructor has started anything that drains it.
 *
 * With CTORLIB_DLOPEN=PATH it also dlopens that library (libplugin) from the
 * constructor and leaves it loaded: whatever that library's own constructor
 * allocates is made inside dlopen, with the loader's lock held, still before
 * the agent's constructor ran. ctorlib_churned() adds what it reports.
 *
 * No stdio and nothing else that allocates besides dlopen: the blocks here
 * are all the library makes.
 */
#pragma GCC optimize("O0")
#include <dlfcn.h>
#include <stdlib.h>

#include "ctorlib.h"

static void *blocks[CTORLIB_BLOCKS];
static int lines[CTORLIB_BLOCKS];
static long churned;

static void churn(void)
{
	const char *v = getenv("CTORLIB_CHURN");
	long n = v != NULL ? atol(v) : 0;

	for (long i = 0; i < n; i++) {
		void *volatile p = malloc(16);
		free(p);
	}
	churned = n;
}

/* Loads CTORLIB_DLOPEN, if set, and adds what its constructor churned. */
static void load(void)
{
	const char *path = getenv("CTORLIB_DLOPEN");
	void *h;
	long (*fn)(void);

	if (path == NULL || (h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL)
		return;
	*(void **)&fn = dlsym(h, "plugin_churned");
	if (fn != NULL)
		churned += fn();
}

/* Each malloc call and __LINE__ share a line: that is the site. */
/* clang-format off */
__attribute__((constructor, noinline)) static void ctorlib_init(void)
{
	blocks[0] = malloc(CTORLIB_SIZE0); lines[0] = __LINE__;
	churn();
	blocks[1] = malloc(CTORLIB_SIZE1); lines[1] = __LINE__;
	blocks[2] = malloc(CTORLIB_SIZE2); lines[2] = __LINE__;
	load();
}
/* clang-format on */

__attribute__((visibility("default"))) int ctorlib_site(int i, const char **file, const char **func,
                                                        long *bytes)
{
	static const long sizes[CTORLIB_BLOCKS] = {CTORLIB_SIZE0, CTORLIB_SIZE1, CTORLIB_SIZE2};

	if (i < 0 || i >= CTORLIB_BLOCKS || blocks[i] == NULL)
		return -1;
	*file = __FILE__;
	*func = "ctorlib_init";
	*bytes = sizes[i];
	return lines[i];
}

__attribute__((visibility("default"))) long ctorlib_churned(void)
{
	return churned;
}
