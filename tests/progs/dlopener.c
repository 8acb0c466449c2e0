/*
 * dlopener.c - allocations from a library loaded with dlopen (module maps
 * are sent again after dlopen and dlclose).
 *
 * Usage: dlopener PLUGIN.so. Phase 1 allocates at one site of its own,
 * dlopens the plugin, has it allocate PLUGIN_BLOCKS blocks (booked at the
 * plugin's file and line, which the plugin reports) and prints "ready".
 * "next" dlcloses the plugin (its blocks stay live) and prints "ready".
 * "exit" ends the program.
 */
#pragma GCC optimize("O0")
/* clang-format off */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "truth.h"

#define PLUGIN_BLOCKS 5
#define PLUGIN_SIZE 300

typedef void *(*plugin_alloc_fn)(size_t, const char **, int *, const char **);
static void *own[3], *from_plugin[PLUGIN_BLOCKS];
/* The book keeps pointers to file and function names: copies, because the
 * plugin's own strings go away with dlclose. */
static char plugin_file[512], plugin_func[128];

static void own_site(void)
{
	for (int i = 0; i < 3; i++) {
		own[i] = malloc(200); TRUTH_ALLOC(200);
	}
}

int main(int argc, char **argv)
{
	char cmd[64];

	if (argc != 2)
		truth_die("usage: dlopener PLUGIN.so");
	own_site();
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		truth_die("dlopen");
	plugin_alloc_fn fn = (plugin_alloc_fn)dlsym(h, "plugin_alloc");
	if (fn == NULL)
		truth_die("dlsym");
	for (int i = 0; i < PLUGIN_BLOCKS; i++) {
		const char *file, *func;
		int line;
		from_plugin[i] = fn(PLUGIN_SIZE, &file, &line, &func);
		/* The plugin's frame is the caller of malloc: book it there. */
		snprintf(plugin_file, sizeof(plugin_file), "%s", file);
		snprintf(plugin_func, sizeof(plugin_func), "%s", func);
		truth_note(plugin_file, line, plugin_func, PLUGIN_SIZE, 1);
	}
	truth_ready();
	truth_wait(cmd, sizeof(cmd));
	if (strcmp(cmd, "next") == 0) {
		dlclose(h);
		truth_ready();
		truth_wait(cmd, sizeof(cmd));
	}
	return 0;
}
