/* lineage.c - which process MEMTRACE_FOLLOW_FORK=0 traces (see lineage.h). */
#include "lineage.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "sysdep.h"

#define PRELOAD_ENV  "LD_PRELOAD"
#define DEFAULT_NAME "libmemtrace.so"

/* "MEMTRACE_ROOT=" PID ":" START: two 20-digit numbers at most. */
static char root_entry[sizeof(LINEAGE_ENV) + 48];
/* The agent's file name as LD_PRELOAD names it ("libmemtrace.so"). */
static char self_name[256];
/* "LD_PRELOAD=" without the agent, when that fits (else it is mmap'ed). */
static char preload_entry[4096];

struct identity {
	uint64_t pid, start;
};

int lineage_parse_start(const char *stat, size_t n, uint64_t *out)
{
	const char *p = NULL, *end = stat + n;
	int field = 2;
	uint64_t v = 0;

	/* The command name (field 2) may hold blanks and parentheses: the
	 * fields that follow it start after its last ')'. */
	for (const char *q = stat; q < end; q++)
		if (*q == ')')
			p = q + 1;
	if (p == NULL)
		return -EINVAL;
	while (field < 22) {
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			return -EINVAL;
		field++;
		if (field == 22)
			break;
		while (p < end && *p != ' ')
			p++;
	}
	if (p == end || *p < '0' || *p > '9')
		return -EINVAL;
	for (; p < end && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	*out = v;
	return 0;
}

static struct identity self_identity(void)
{
	struct identity id = {(uint64_t)getpid(), 0};
	char buf[1024];
	ssize_t n = -1;
	int saved = errno;
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf));
		close(fd);
	}
	if (n <= 0 || lineage_parse_start(buf, (size_t)n, &id.start) < 0)
		id.start = 0;
	errno = saved;
	return id;
}

/* "PID:START" into id; -EINVAL when s is not that. */
static int parse_identity(const char *s, struct identity *id)
{
	uint64_t *field = &id->pid;

	id->pid = id->start = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s == ':' && field == &id->pid && s[1] >= '0' && s[1] <= '9')
			field = &id->start;
		else if (*s >= '0' && *s <= '9' && *field < UINT64_MAX / 10)
			*field = *field * 10 + (uint64_t)(*s - '0');
		else
			return -EINVAL;
	}
	return field == &id->start ? 0 : -EINVAL;
}

static char *put_u64(char *p, uint64_t v)
{
	char buf[24];
	const char *d = sysdep_u64_str(buf, v);

	while (*d != '\0')
		*p++ = *d++;
	return p;
}

/* The environment entry NAME=..., found without getenv so that a fork child
 * may look (getenv is not async-signal-safe by the letter). */
static char **env_slot(const char *name)
{
	size_t len = strlen(name);

	for (char **e = environ; e != NULL && *e != NULL; e++)
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
			return e;
	return NULL;
}

/*
 * Puts root_entry into the environment without allocating: setenv and putenv
 * would grow the environment array with malloc, that is through the agent, and
 * a block the program never asked for would later be freed by a setenv of its
 * own. An existing entry is replaced in its slot; otherwise the array is copied
 * into a mapping with one more slot. glibc never frees an array it did not
 * allocate, so the mapping stays for the life of the image.
 */
static void env_put_root(void)
{
	char **slot = env_slot(LINEAGE_ENV), **arr;
	size_t n = 0;

	if (slot != NULL) {
		*slot = root_entry;
		return;
	}
	while (environ != NULL && environ[n] != NULL)
		n++;
	arr = sysdep_map((n + 2) * sizeof(*arr), 0);
	if (arr == NULL)
		return; /* descendants then take themselves for the traced process */
	if (n > 0)
		memcpy(arr, environ, n * sizeof(*arr));
	arr[n] = root_entry;
	arr[n + 1] = NULL;
	environ = arr;
}

static void find_self_name(void)
{
	Dl_info info;
	const char *base = DEFAULT_NAME;

	if (dladdr((void *)&find_self_name, &info) != 0 && info.dli_fname != NULL &&
	    info.dli_fname[0] != '\0') {
		const char *slash = strrchr(info.dli_fname, '/');
		base = slash != NULL ? slash + 1 : info.dli_fname;
	}
	if (strlen(base) >= sizeof(self_name))
		base = DEFAULT_NAME;
	strcpy(self_name, base);
}

int lineage_is_descendant(void)
{
	struct identity me = self_identity(), root;
	char **slot = env_slot(LINEAGE_ENV);
	char *p;

	find_self_name();
	if (slot != NULL && parse_identity(*slot + sizeof(LINEAGE_ENV), &root) == 0) {
		if (root.pid == me.pid && root.start == me.start)
			return 0; /* an image the traced process exec'd */
		lineage_drop_preload();
		return 1;
	}
	/* No (readable) MEMTRACE_ROOT: this is the process that was started. */
	memcpy(root_entry, LINEAGE_ENV "=", sizeof(LINEAGE_ENV));
	p = put_u64(root_entry + sizeof(LINEAGE_ENV), me.pid);
	*p++ = ':';
	p = put_u64(p, me.start);
	*p = '\0';
	env_put_root();
	return 0;
}

/* Whether the `len` bytes at entry name a file called `name`. */
static int names_file(const char *entry, size_t len, const char *name)
{
	size_t base = len, nlen = strlen(name);

	while (base > 0 && entry[base - 1] != '/')
		base--;
	return len - base == nlen && memcmp(entry + base, name, nlen) == 0;
}

void lineage_strip_preload(char *list, const char *name)
{
	char *out = list, *p = list;

	for (;;) {
		while (*p == ':' || *p == ' ')
			p++;
		if (*p == '\0')
			break;
		char *entry = p;
		while (*p != '\0' && *p != ':' && *p != ' ')
			p++;
		size_t len = (size_t)(p - entry);
		if (names_file(entry, len, name))
			continue;
		if (out != list)
			*out++ = ':';
		memmove(out, entry, len); /* out never passes entry */
		out += len;
	}
	*out = '\0';
}

/*
 * The entry is copied before it is edited: the program's own string may be
 * read-only (putenv of a literal) or still used by whoever set it. The copy
 * takes the entry's slot in the environment array, which is always writable.
 */
void lineage_drop_preload(void)
{
	char **slot = env_slot(PRELOAD_ENV), *copy;
	size_t len;

	if (slot == NULL || *slot == preload_entry)
		return;
	len = strlen(*slot) + 1;
	copy = len <= sizeof(preload_entry) ? preload_entry : sysdep_map(len, 0);
	if (copy == NULL)
		return; /* the descendants' own agents still stay off */
	memcpy(copy, *slot, len);
	lineage_strip_preload(copy + sizeof(PRELOAD_ENV),
	                      self_name[0] != '\0' ? self_name : DEFAULT_NAME);
	if (copy[sizeof(PRELOAD_ENV)] != '\0') {
		*slot = copy;
		return;
	}
	/* Nothing else was preloaded: the entry goes, as unsetenv would take it
	 * out (without unsetenv's lock, which a fork child may find held). */
	do
		slot[0] = slot[1];
	while (*slot++ != NULL);
}
