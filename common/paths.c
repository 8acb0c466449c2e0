/* paths.c - the runtime and state directory rules of paths.h. */
#include "paths.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int fmt(char *buf, size_t cap, const char *a, const char *b)
{
	int n = snprintf(buf, cap, "%s%s", a, b);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static const char *nonempty(const char *s)
{
	return s != NULL && s[0] == '/' ? s : NULL;
}

int paths_runtime_dir(char *buf, size_t cap)
{
	const char *v;

	if ((v = nonempty(getenv("MEMTRACE_RUNTIME_DIR"))) != NULL)
		return fmt(buf, cap, v, "");
	if (geteuid() == 0)
		return fmt(buf, cap, PATHS_SYSTEM_RUNTIME_DIR, "");
	if ((v = nonempty(getenv("XDG_RUNTIME_DIR"))) != NULL)
		return fmt(buf, cap, v, "/memtrace");
	int n = snprintf(buf, cap, "/tmp/memtrace-%u", (unsigned)geteuid());
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int paths_state_dir(char *buf, size_t cap)
{
	const char *v;

	if ((v = nonempty(getenv("MEMTRACE_STATE_DIR"))) != NULL)
		return fmt(buf, cap, v, "");
	if (geteuid() == 0)
		return fmt(buf, cap, PATHS_SYSTEM_STATE_DIR, "");
	if ((v = nonempty(getenv("XDG_STATE_HOME"))) != NULL)
		return fmt(buf, cap, v, "/memtrace");
	if ((v = nonempty(getenv("HOME"))) != NULL)
		return fmt(buf, cap, v, "/.local/state/memtrace");
	int n = snprintf(buf, cap, "/tmp/memtrace-%u/state", (unsigned)geteuid());
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int paths_join(char *buf, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(buf, cap, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
