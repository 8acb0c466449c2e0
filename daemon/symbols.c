/*
 * symbols.c - the libdw symbol cache of symbols.h.
 *
 * Objects. Every loaded object the agents report is an `object`, found by its
 * build-id when it has one (so the same libc seen by a thousand processes is
 * opened once) and by its path otherwise. The first time an address in an
 * object is resolved, the file is opened as an offline Dwfl session of its
 * own and its build-id is compared with the one the agent reported; a missing
 * file, a different build-id, or a build-id where the agent saw none marks
 * the object failed for the life of the cache, and all its frames come out as
 * "MODULE+0xOFFSET". Objects without a build-id on either side cannot be
 * checked and are trusted.
 *
 * Addresses. The agent reports the load bias (runtime address minus ELF
 * virtual address, dl_iterate_phdr's dlpi_addr) and absolute addresses, so
 * `address - bias` is the ELF virtual address, the same in every process; it
 * is the OFFSET users see and the frame cache key. libdwfl places an offline
 * module at an address of its own choosing and reports the difference between
 * that and the file's virtual addresses as the module's bias
 * (dwfl_module_getelf), so the Dwfl address is `address - bias + dwbias`.
 * That one formula covers every layout: an ET_EXEC is reported by libdwfl at
 * its link-time addresses (dwbias 0) and the agent's bias is 0 as well; a PIE
 * or shared library whose first PT_LOAD is at 0 gets an arbitrary dwbias; and
 * an ET_DYN whose first PT_LOAD has a non-zero vaddr (prelinked libraries)
 * gets dwbias = start - vaddr, which the formula absorbs. It equals the
 * "module_low_addr + (vaddr - first PT_LOAD vaddr)" form without reading the
 * program headers ourselves.
 *
 * Debug information is looked for only on this machine unless debuginfod was
 * asked for. libdwfl's dwfl_standard_find_debuginfo ends, in elfutils 0.188,
 * with a debuginfod query whenever local files fail, and the debuginfod client
 * reads DEBUGINFOD_URLS from the environment at query time; there is no switch
 * to turn that off. So without debuginfod the Dwfl sessions use callbacks of
 * our own: dwfl_build_id_find_debuginfo (a purely local .build-id lookup under
 * /usr/lib/debug) and then the .gnu_debuglink name search beside the file, in
 * its .debug directory and under /usr/lib/debug, each candidate checked by
 * build-id (or CRC when the object has none). The main file is never looked
 * up through find_elf (offline modules are opened from their path), and our
 * find_elf returns nothing so libdwfl's debuginfod_find_executable is never
 * reached either.
 *
 * Frames. A frame is resolved once per (object, offset) and kept until
 * symbols_free, so pointers handed out stay valid. Its strings (file names,
 * function names, module paths) are interned. The line is the line table's
 * row for the address, which in inlined code is a line of the innermost
 * inlined function, so the frame names that function. Its `caller` chain
 * comes from the physical nesting of DWARF scopes around the address: each
 * enclosing DW_TAG_inlined_subroutine was inlined into the next enclosing
 * inlined subroutine or, last, the DW_TAG_subprogram, and records where that
 * call was (DW_AT_call_file, an index into the unit's file table, and
 * DW_AT_call_line). Caller frames depend only on content, not on the address,
 * so they are interned in a table of their own by (module, function, file,
 * line, caller): every address inlined through one call site shares them.
 *
 * Names come from DWARF, so that a function reads the same whether the
 * address is in an inlined copy or in its own body, and as addr2line -i
 * prints it (die_name: a C++ linkage name, else DW_AT_name, through
 * DW_AT_abstract_origin and DW_AT_specification). The ELF symbol names the
 * real function only when DWARF has no name for it (no debug information,
 * assembly). The price is that C++ functions DWARF gives only a DW_AT_name
 * (GCC's for internal linkage, clang's -gline-tables-only for all) read as
 * their short name, where their symbol would have the class and parameters.
 * C++ names are demangled with libstdc++'s __cxa_demangle when that library
 * can be loaded, else left mangled, and GCC's clone suffixes are cut.
 * Relative source paths are joined with the compilation unit's directory.
 *
 * Memory. Frames are never evicted (the contract keeps their pointers alive),
 * so they grow with the number of distinct return addresses, which the daemon
 * bounds through its per-session stack limits; a frame costs its struct, a
 * table slot and its unshared strings, roughly 100 to 200 bytes, and an
 * address in inlined code adds the caller frames no other address shared
 * with it, at most one per level of inlining. What libdw
 * holds per file (mapped ELF, parsed DWARF, line tables) is bounded instead:
 * at most SYMBOLS_MAX_OPEN files are open at once and the least recently used
 * one is closed beyond that (it is reopened, and re-verified, on demand).
 *
 * Locking. Two mutexes, taken in this order: `dw_lock` serializes all libdw
 * work and the open/closed state of objects and is held across file I/O;
 * `lock` guards the hash tables and statistics and is only held for table
 * operations. symbols_lookup and symbols_unknown take `lock` alone, so the
 * loop thread never waits behind a pool thread reading DWARF.
 */
/* RTLD_DEFAULT, dl_iterate_phdr and friends are GNU extensions; config.h
 * (AC_USE_SYSTEM_EXTENSIONS) usually defines this already. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "symbols.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "oaindex.h"
#include "xalloc.h"

/* Dwfl sessions kept open at once. A session for a large C++ library with
 * its separate debug file can hold hundreds of megabytes of mappings and
 * parsed DWARF; the traced processes of one host rarely have more hot
 * objects than this. Overridable at build time to test eviction. */
#ifndef SYMBOLS_MAX_OPEN
#define SYMBOLS_MAX_OPEN 32
#endif

/* Where distribution debug files live (the local half of libdwfl's
 * ":.debug:/usr/lib/debug" default path). */
#define SYMBOLS_DEBUG_DIR "/usr/lib/debug"

#define UNKNOWN_MODULE "[unknown]"

/* ---- the tables: oaindex.h indexes whose values are entry pointers ---- */

static void *table_find(const struct oaindex *t, uint64_t hash, oaindex_eq_fn eq, const void *key)
{
	uintptr_t v = oaindex_find(t, hash, eq, NULL, key);

	return v != OAINDEX_NONE ? (void *)v : NULL;
}

/* The caller has checked that no equal entry is present. */
static void table_add(struct oaindex *t, uint64_t hash, void *entry)
{
	oaindex_insert(t, hash, (uintptr_t)entry);
}

static void table_close(struct oaindex *t, void (*destroy)(void *entry))
{
	size_t pos = 0;
	uintptr_t v;

	while ((v = oaindex_next(t, &pos)) != OAINDEX_NONE)
		destroy((void *)v);
	oaindex_close(t);
}

/* ---- the cache ---- */

enum object_state {
	OBJECT_NEW,    /* never opened */
	OBJECT_OPEN,   /* dwfl and mod valid */
	OBJECT_CLOSED, /* opened before, closed to stay under SYMBOLS_MAX_OPEN */
	OBJECT_FAILED, /* missing, unreadable or not the reported build */
};

struct object {
	/* Identity, immutable after creation (read under `lock`). */
	uint8_t *build_id;
	size_t build_id_len;
	char *path;         /* what to open; "" when the agent had none */
	const char *module; /* interned: path, or UNKNOWN_MODULE */

	/* Everything below is guarded by dw_lock. */
	enum object_state state;
	bool counted; /* already in the objects or failures statistic */
	Dwfl *dwfl;
	Dwfl_Module *mod;
	Dwarf_Addr dwbias;
	struct object *lru_prev, *lru_next; /* open objects, most recent first */
	/* Units by address, built only if libdw's own lookup fails once. */
	struct cu_range *cus;
	size_t ncus;
	bool cus_built;
};

struct cu_range {
	Dwarf_Addr lo, hi; /* DWARF addresses, [lo, hi) */
	Dwarf_Addr bias;   /* Dwfl address - DWARF address */
	Dwarf_Die die;
};

struct frame {
	const struct object *obj; /* NULL for symbols_unknown frames */
	uint64_t offset;          /* ELF vaddr, or the absolute address */
	struct frame_info info;
};

struct frame_key {
	const struct object *obj;
	uint64_t offset;
};

struct object_key {
	const uint8_t *bytes; /* the build-id, or the path */
	size_t len;
	bool by_id;
};

typedef char *(*demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);

struct symbols {
	pthread_mutex_t dw_lock; /* taken first; libdw and object state, held across I/O */
	pthread_mutex_t lock;    /* the four tables and the statistics */

	const Dwfl_Callbacks *callbacks;

	struct oaindex objects; /* struct object *, by build-id or path */
	struct oaindex frames;  /* struct frame *, by (object, offset) */
	struct oaindex callers; /* struct frame_info *, inlined call sites by content */
	struct oaindex strings; /* char *, interned */
	struct symbols_stats stats;

	/* dw_lock */
	struct object *lru_head, *lru_tail;
	size_t nopen;
	bool demangle_tried;
	void *cxxlib;
	demangle_fn demangle;
};

/* ---- debug information search (no network) ---- */

/* The CRC-32 (IEEE, reflected) that .gnu_debuglink records. Only used for
 * objects without a build-id, which is rare. */
static int crc32_file(int fd, uint32_t *out)
{
	uint32_t tab[256];
	unsigned char buf[65536];
	uint32_t crc = 0xffffffffu;
	ssize_t n;

	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		tab[i] = c;
	}
	if (lseek(fd, 0, SEEK_SET) < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (ssize_t i = 0; i < n; i++)
			crc = tab[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
	}
	*out = crc ^ 0xffffffffu;
	return 0;
}

/* A debug file found by name is only trusted when it provably belongs to
 * the module: same build-id, or (without one) the CRC the link records. */
static bool debugfile_matches(int fd, const unsigned char *id, int id_len, GElf_Word crc)
{
	bool ok = false;

	if (id_len > 0) {
		Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
		const void *fid;
		ssize_t n = e != NULL ? dwelf_elf_gnu_build_id(e, &fid) : -1;
		ok = n == id_len && memcmp(fid, id, (size_t)n) == 0;
		elf_end(e);
	} else if (crc != 0) {
		uint32_t c;
		ok = crc32_file(fd, &c) == 0 && c == crc;
	}
	return ok;
}

/* The .gnu_debuglink search of libdwfl's default path, done locally. When
 * the file has no link, "<basename>.debug" is tried, as libdwfl does. Links
 * with a directory in them are dwz alternate files; those are only found by
 * build-id (libdwfl's own lookup, then libdw's). */
static int find_debuglink(Dwfl_Module *mod, const char *file_name, const char *link, GElf_Word crc,
                          char **found)
{
	const unsigned char *id = NULL;
	GElf_Addr id_vaddr;
	int id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
	const char *slash = strrchr(file_name, '/');
	struct stat main_st;
	char *invented = NULL, *dir = NULL;
	int fd = -1;

	if (slash == NULL || (id_len <= 0 && (link == NULL || crc == 0)))
		goto out;
	if (link == NULL)
		link = invented = xasprintf("%s.debug", slash + 1);
	if (strchr(link, '/') != NULL)
		goto out_invented;
	dir = xstrndup(file_name, (size_t)(slash - file_name));
	if (stat(file_name, &main_st) != 0)
		memset(&main_st, 0, sizeof(main_st));

	/* Mirroring under the debug root only makes sense for an absolute dir. */
	for (int i = 0; i < (dir[0] == '/' ? 3 : 2) && fd < 0; i++) {
		char *path = i == 0   ? xasprintf("%s/%s", dir, link)
		             : i == 1 ? xasprintf("%s/.debug/%s", dir, link)
		                      : xasprintf(SYMBOLS_DEBUG_DIR "%s/%s", dir, link);
		struct stat st;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && (fstat(fd, &st) != 0 ||
		                (st.st_dev == main_st.st_dev && st.st_ino == main_st.st_ino) ||
		                !debugfile_matches(fd, id, id_len, crc))) {
			/* the main file by another name, or someone else's */
			close(fd);
			fd = -1;
		}
		if (fd >= 0)
			*found = path;
		else
			free(path);
	}

	free(dir);
out_invented:
	free(invented);
out:
	return fd;
}

static int find_debuginfo_local(Dwfl_Module *mod, void **userdata, const char *modname,
                                Dwarf_Addr base, const char *file_name, const char *link,
                                GElf_Word crc, char **found)
{
	int fd =
	    dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, link, crc, found);
	if (fd < 0 && file_name != NULL)
		fd = find_debuglink(mod, file_name, link, crc, found);
	return fd;
}

/* Offline modules are opened from their path by dwfl_report_offline, so
 * this is never needed; it exists so that libdwfl cannot fall back on
 * dwfl_build_id_find_elf, which asks debuginfod for missing executables. */
static int find_elf_none(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                         char **file_name, Elf **elfp)
{
	(void)mod;
	(void)userdata;
	(void)modname;
	(void)base;
	(void)file_name;
	(void)elfp;
	errno = ENOENT;
	return -1;
}

static const Dwfl_Callbacks callbacks_local = {
    .find_elf = find_elf_none,
    .find_debuginfo = find_debuginfo_local,
    .section_address = dwfl_offline_section_address,
};

/* The user opted in: libdwfl's standard search, debuginfod last. */
static const Dwfl_Callbacks callbacks_debuginfod = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
};

/* ---- interned strings (lock held) ---- */

static bool string_eq(const void *ctx, uintptr_t entry, const void *key)
{
	(void)ctx;
	return strcmp((const char *)entry, key) == 0;
}

static const char *intern(struct symbols *s, const char *str)
{
	uint64_t h = hash_str(HASH_SEED, str);
	char *found = table_find(&s->strings, h, string_eq, str);

	if (found == NULL) {
		found = xstrdup(str);
		table_add(&s->strings, h, found);
	}
	return found;
}

/* ---- objects ---- */

static void object_key_of(const struct sym_module *m, struct object_key *k)
{
	k->by_id = m->build_id_len > 0;
	if (k->by_id) {
		k->bytes = m->build_id;
		k->len = m->build_id_len;
	} else {
		k->bytes = (const uint8_t *)(m->path != NULL ? m->path : "");
		k->len = strlen((const char *)k->bytes);
	}
}

static uint64_t object_hash(const struct object_key *k)
{
	return hash_bytes(HASH_SEED ^ (k->by_id ? 1 : 0), k->bytes, k->len);
}

static bool object_eq(const void *ctx, uintptr_t entry, const void *key)
{
	const struct object *o = (const struct object *)entry;
	const struct object_key *k = key;

	(void)ctx;
	if (k->by_id)
		return o->build_id_len == k->len && memcmp(o->build_id, k->bytes, k->len) == 0;
	return o->build_id_len == 0 && strlen(o->path) == k->len &&
	       memcmp(o->path, k->bytes, k->len) == 0;
}

static struct object *object_find(struct symbols *s, const struct object_key *k)
{
	return table_find(&s->objects, object_hash(k), object_eq, k);
}

/* Both locks held. */
static struct object *object_get(struct symbols *s, const struct sym_module *m)
{
	struct object_key k;
	struct object *o;
	const char *path = m->path != NULL ? m->path : "";

	object_key_of(m, &k);
	o = object_find(s, &k);
	if (o != NULL)
		return o;
	o = xcalloc(1, sizeof(*o));
	if (m->build_id_len > 0) {
		o->build_id = xmalloc(m->build_id_len);
		memcpy(o->build_id, m->build_id, m->build_id_len);
		o->build_id_len = m->build_id_len;
	}
	o->path = xstrdup(path);
	o->module = intern(s, path[0] != '\0' ? path : UNKNOWN_MODULE);
	o->state = OBJECT_NEW;
	table_add(&s->objects, object_hash(&k), o);
	return o;
}

static void lru_unlink(struct symbols *s, struct object *o)
{
	if (o->lru_prev != NULL)
		o->lru_prev->lru_next = o->lru_next;
	else
		s->lru_head = o->lru_next;
	if (o->lru_next != NULL)
		o->lru_next->lru_prev = o->lru_prev;
	else
		s->lru_tail = o->lru_prev;
	o->lru_prev = o->lru_next = NULL;
}

static void lru_push(struct symbols *s, struct object *o)
{
	o->lru_prev = NULL;
	o->lru_next = s->lru_head;
	if (s->lru_head != NULL)
		s->lru_head->lru_prev = o;
	else
		s->lru_tail = o;
	s->lru_head = o;
}

static void object_close(struct symbols *s, struct object *o)
{
	lru_unlink(s, o);
	dwfl_end(o->dwfl);
	o->dwfl = NULL;
	o->mod = NULL;
	free(o->cus); /* its DIEs pointed into the session */
	o->cus = NULL;
	o->ncus = 0;
	o->cus_built = false;
	o->state = OBJECT_CLOSED;
	s->nopen--;
}

/* libdwfl reports errors through its own codes; what we keep is whether the
 * cause was the file (errno) or its content. */
static int dwfl_error(void)
{
	return errno != 0 ? -errno : -EINVAL;
}

/* Opens o->path as a one-module offline session and checks it is the build
 * the agent saw. dw_lock held. */
static int object_load(struct symbols *s, struct object *o)
{
	const unsigned char *id = NULL;
	GElf_Addr id_vaddr;
	Dwfl *dwfl;
	Dwfl_Module *mod;
	int fd, id_len, err;

	/* A relative path (a library dlopen'ed as "./libx.so") is relative to
	 * the traced process's directory, not ours. */
	if (o->path[0] != '/')
		return -ENOENT;
	fd = open(o->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dwfl = dwfl_begin(s->callbacks);
	if (dwfl == NULL) {
		err = -ENOMEM;
		goto err_after_open;
	}
	dwfl_report_begin(dwfl);
	errno = 0;
	/* On success the session owns fd and closes it in dwfl_end. */
	mod = dwfl_report_offline(dwfl, o->module, o->path, fd);
	if (mod == NULL) {
		err = dwfl_error();
		goto err_after_begin;
	}
	fd = -1;
	if (dwfl_report_end(dwfl, NULL, NULL) != 0 || dwfl_module_getelf(mod, &o->dwbias) == NULL) {
		err = dwfl_error();
		goto err_after_begin;
	}
	id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
	if (id_len < 0)
		id_len = 0;
	if ((size_t)id_len != o->build_id_len ||
	    (id_len > 0 && memcmp(id, o->build_id, (size_t)id_len) != 0)) {
		/* Replaced since the process loaded it: its lines would lie. */
		err = -ESTALE;
		goto err_after_begin;
	}
	o->dwfl = dwfl;
	o->mod = mod;
	return 0;

err_after_begin:
	dwfl_end(dwfl);
err_after_open:
	if (fd >= 0)
		close(fd);
	return err;
}

/* Makes o usable; dw_lock held. */
static int object_open(struct symbols *s, struct object *o)
{
	int err = 0;
	bool first = !o->counted;

	switch (o->state) {
	case OBJECT_OPEN:
		lru_unlink(s, o);
		lru_push(s, o);
		return 0;
	case OBJECT_FAILED:
		return -ENOENT;
	case OBJECT_NEW:
	case OBJECT_CLOSED:
		break;
	}

	err = object_load(s, o);
	o->counted = true;
	if (err != 0) {
		o->state = OBJECT_FAILED;
		if (first) {
			pthread_mutex_lock(&s->lock);
			s->stats.failures++;
			pthread_mutex_unlock(&s->lock);
		}
		return err;
	}
	o->state = OBJECT_OPEN;
	lru_push(s, o);
	s->nopen++;
	if (first) {
		/* Counted once: a reopen after eviction is the same object. */
		bool no_symbols = dwfl_module_getsymtab(o->mod) <= 0;
		pthread_mutex_lock(&s->lock);
		s->stats.objects++;
		if (no_symbols)
			s->stats.failures++;
		pthread_mutex_unlock(&s->lock);
	}
	while (s->nopen > SYMBOLS_MAX_OPEN && s->lru_tail != o)
		object_close(s, s->lru_tail);
	return 0;
}

static void object_destroy(void *entry)
{
	struct object *o = entry;

	if (o->dwfl != NULL)
		dwfl_end(o->dwfl);
	free(o->cus);
	free(o->build_id);
	free(o->path);
	free(o);
}

/* ---- resolution (dw_lock held) ---- */

/* One logical frame of an address, before interning. */
struct location {
	char *function; /* NULL when unknown */
	char *file;     /* NULL when unknown */
	uint32_t lineno;
};

/* The logical frames of an address, innermost first; the last one is the
 * real function, the ones before it were inlined into it. */
struct resolved {
	struct location *loc;
	size_t n; /* 0 when nothing is known */
};

static struct location *resolved_push(struct resolved *r)
{
	struct location *l;

	r->loc = xreallocarray(r->loc, r->n + 1, sizeof(*r->loc));
	l = &r->loc[r->n++];
	memset(l, 0, sizeof(*l));
	return l;
}

static void resolved_free(struct resolved *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->loc[i].function);
		free(r->loc[i].file);
	}
	free(r->loc);
	r->loc = NULL;
	r->n = 0;
}

/* C++ names are demangled by the C++ runtime itself; loading it is cheap,
 * it is on any machine that runs the C++ programs that produce such names,
 * and __cxa_demangle only reads its input and returns malloc'd memory. When
 * it cannot be loaded names stay mangled, which is still correct. */
static char *demangle(struct symbols *s, const char *name)
{
	if (name[0] == '_' && name[1] == 'Z') {
		if (!s->demangle_tried) {
			void *fn = dlsym(RTLD_DEFAULT, "__cxa_demangle");
			s->demangle_tried = true;
			if (fn == NULL) {
				s->cxxlib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
				if (s->cxxlib != NULL)
					fn = dlsym(s->cxxlib, "__cxa_demangle");
			}
			memcpy(&s->demangle, &fn, sizeof(fn));
		}
		if (s->demangle != NULL) {
			int status = -1;
			char *d = s->demangle(name, NULL, NULL, &status);
			if (d != NULL && status == 0) {
				char *r = xstrdup(d);
				free(d);
				return r;
			}
			free(d);
		}
	}
	return xstrdup(name);
}

/* GCC names the copies it specializes foo.constprop.0, foo.isra.0, foo.part.0,
 * foo.cold (and the demangler renders them "foo() [clone .isra.0]"). Users
 * wrote foo: cut the suffix so every copy reads and groups as foo. */
static char *strip_clone_suffix(char *name)
{
	static const char *const kinds[] = {"constprop", "isra",       "part", "cold",
	                                    "lto_priv",  "localalias", "clone"};
	char *c = strstr(name, " [clone .");
	if (c != NULL) {
		*c = '\0';
		return name;
	}
	for (char *dot = strchr(name, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
		for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			size_t l = strlen(kinds[i]);
			if (strncmp(dot + 1, kinds[i], l) == 0 &&
			    (dot[1 + l] == '\0' || dot[1 + l] == '.')) {
				*dot = '\0';
				return name;
			}
		}
	}
	return name;
}

/* The name of a function's DIE, through DW_AT_abstract_origin and
 * DW_AT_specification: the linkage name when it is a C++ mangled one (it
 * demangles to the qualified name with its parameters), else DW_AT_name, the
 * name the source gave it. Other linkage names are not what users wrote: in C
 * they come from asm labels (glibc's malloc has "__GI___libc_malloc"). */
static const char *die_name(Dwarf_Die *die)
{
	static const int linkage[] = {DW_AT_linkage_name, DW_AT_MIPS_linkage_name};
	Dwarf_Attribute mem;
	const char *n;

	for (size_t i = 0; i < sizeof(linkage) / sizeof(linkage[0]); i++) {
		n = dwarf_formstring(dwarf_attr_integrate(die, linkage[i], &mem));
		if (n != NULL && strncmp(n, "_Z", 2) == 0)
			return n;
	}
	n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &mem));
	return n != NULL && n[0] != '\0' ? n : NULL;
}

/* A name as users read it: demangled, without GCC's clone suffix. */
static char *function_name(struct symbols *s, const char *raw)
{
	return strip_clone_suffix(demangle(s, raw));
}

static int cu_range_cmp(const void *a, const void *b)
{
	const struct cu_range *x = a, *y = b;
	Dwarf_Addr xa = x->lo + x->bias, ya = y->lo + y->bias;
	return xa < ya ? -1 : xa > ya;
}

/* libdwfl finds a unit by address through .debug_aranges, and libdw 0.188
 * does not fall back on the units' own ranges when that section is absent,
 * as it is in everything clang builds (unless -gdwarf-aranges). So when the
 * lookup fails, the units' DW_AT_ranges/low_pc/high_pc are read once into a
 * sorted table and searched instead. */
static void cu_index_build(struct object *o)
{
	Dwarf_Die *cu = NULL;
	Dwarf_Addr bias;
	size_t cap = 0;

	o->cus_built = true;
	while ((cu = dwfl_module_nextcu(o->mod, cu, &bias)) != NULL) {
		Dwarf_Addr base, lo, hi;
		ptrdiff_t off = 0;
		while ((off = dwarf_ranges(cu, off, &base, &lo, &hi)) > 0) {
			if (hi <= lo)
				continue;
			if (o->ncus == cap) {
				cap = cap != 0 ? cap * 2 : 64;
				o->cus = xreallocarray(o->cus, cap, sizeof(*o->cus));
			}
			o->cus[o->ncus++] = (struct cu_range){lo, hi, bias, *cu};
		}
	}
	if (o->ncus > 0)
		qsort(o->cus, o->ncus, sizeof(*o->cus), cu_range_cmp);
}

/* The compilation unit that covers Dwfl address pc, and its bias. */
static bool object_cu(struct object *o, Dwarf_Addr pc, Dwarf_Die *cu, Dwarf_Addr *bias)
{
	Dwarf_Die *found = dwfl_module_addrdie(o->mod, pc, bias);
	size_t lo = 0, hi;

	if (found != NULL) {
		*cu = *found;
		return true;
	}
	if (!o->cus_built)
		cu_index_build(o);
	/* The last range starting at or before pc. */
	hi = o->ncus;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (o->cus[mid].lo + o->cus[mid].bias <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	const struct cu_range *r = &o->cus[lo - 1];
	if (pc >= r->hi + r->bias)
		return false;
	*cu = r->die;
	*bias = r->bias;
	return true;
}

/* Users filter and group by file name, so give them absolute paths when
 * DWARF has a relative one and the unit recorded where it was compiled.
 * libdw has already prefixed each name with its line-table directory, and
 * directory 0 is the compilation directory, so a name that is still relative
 * came either from a relative include directory (which is relative to the
 * compilation directory: join) or from a relative compilation directory
 * (distributions map build paths to "." with -fdebug-prefix-map: joining
 * would only repeat it, and cannot make it absolute). */
static char *source_path(const char *file, const char *comp_dir)
{
	size_t n;

	if (file[0] == '/' || comp_dir == NULL || comp_dir[0] != '/')
		return xstrdup(file);
	while (file[0] == '.' && file[1] == '/')
		file += 2;
	n = strlen(comp_dir);
	return xasprintf("%s%s%s", comp_dir, comp_dir[n - 1] == '/' ? "" : "/", file);
}

static const char *unit_comp_dir(Dwarf_Die *cu)
{
	Dwarf_Attribute attr;
	return dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &attr));
}

/* Where an inlined subroutine was called from: its DW_AT_call_file (an index
 * into its unit's file table) and DW_AT_call_line, stored as the location of
 * the caller's frame l. Left unknown when either is missing. */
static void call_site(Dwarf_Die *inlined, struct location *l)
{
	Dwarf_Attribute attr;
	Dwarf_Word file, line;
	Dwarf_Die cu;
	Dwarf_Files *files;
	Dwarf_Half version;
	size_t nfiles;
	const char *src;

	if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_file, &attr), &file) != 0 ||
	    dwarf_formudata(dwarf_attr(inlined, DW_AT_call_line, &attr), &line) != 0 || line == 0 ||
	    line > UINT32_MAX)
		return;
	if (dwarf_diecu(inlined, &cu, NULL, NULL) == NULL ||
	    dwarf_cu_info(inlined->cu, &version, NULL, NULL, NULL, NULL, NULL, NULL) != 0 ||
	    dwarf_getsrcfiles(&cu, &files, &nfiles) != 0)
		return;
	/* Before DWARF 5 file numbers start at 1; libdw fills slot 0 with a
	 * placeholder name. */
	if (file >= nfiles || (file == 0 && version < 5))
		return;
	src = dwarf_filesrc(files, file, NULL, NULL);
	if (src == NULL || src[0] == '\0')
		return;
	l->file = source_path(src, unit_comp_dir(&cu));
	l->lineno = (uint32_t)line;
}

/* Appends to r the functions whose code is at pc (a DWARF address in unit
 * cu), innermost first: one location per inlined subroutine around pc, with
 * its function named, then one for the real function, whose name is
 * returned raw (NULL when DWARF has none) so that the caller can fall back
 * on the ELF symbol. Every location but the first gets the call site of the
 * one before it. Nothing is appended when no function covers pc.
 *
 * dwarf_getscopes finds the innermost scope around pc, but past an inlined
 * subroutine it continues with the scopes around the subroutine's abstract
 * definition, which is what variable lookup wants and not the callers. The
 * physical nesting of the concrete DIEs (dwarf_getscopes_die) is: each
 * concrete inlined subroutine sits inside the scope it was inlined into. */
static const char *inline_chain(struct symbols *s, Dwarf_Die *cu, Dwarf_Addr pc, struct resolved *r)
{
	Dwarf_Die *scopes = NULL, *nest = NULL;
	Dwarf_Die *callee = NULL; /* the last inlined subroutine passed */
	const char *outer = NULL;
	int n, m;

	n = dwarf_getscopes(cu, pc, &scopes);
	if (n <= 0)
		goto out;
	m = dwarf_getscopes_die(&scopes[0], &nest);
	for (int i = 0; i < m; i++) {
		int tag = dwarf_tag(&nest[i]);
		struct location *l;
		const char *name;

		if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram &&
		    tag != DW_TAG_entry_point)
			continue; /* lexical blocks and the unit */
		l = resolved_push(r);
		if (callee != NULL)
			call_site(callee, l);
		name = die_name(&nest[i]);
		if (tag != DW_TAG_inlined_subroutine) {
			outer = name;
			callee = NULL;
			break;
		}
		if (name != NULL)
			l->function = function_name(s, name);
		callee = &nest[i];
	}
	/* Inlined subroutines with no subprogram around them (broken or
	 * partial DWARF): the real function they are in gets a location too,
	 * named from the symbol table. */
	if (callee != NULL)
		call_site(callee, resolved_push(r));
out:
	free(nest);
	free(scopes);
	return outer;
}

static void resolve_in_object(struct symbols *s, struct object *o, uint64_t offset,
                              struct resolved *r)
{
	Dwarf_Addr low, high, pc, cubias = 0;
	Dwarf_Die cu;
	bool have_cu;
	const char *outer = NULL;

	if (object_open(s, o) != 0)
		return;
	pc = offset + o->dwbias;
	if (dwfl_module_info(o->mod, NULL, &low, &high, NULL, NULL, NULL, NULL) == NULL ||
	    pc < low || pc >= high)
		return; /* not in this file: better unresolved than a neighbour's name */
	have_cu = object_cu(o, pc, &cu, &cubias);

	if (have_cu)
		outer = inline_chain(s, &cu, pc - cubias, r);
	if (r->n == 0)
		resolved_push(r);
	if (outer == NULL) {
		GElf_Off off;
		GElf_Sym sym;
		outer = dwfl_module_addrinfo(o->mod, pc, &off, &sym, NULL, NULL, NULL);
	}
	if (outer != NULL && outer[0] != '\0')
		r->loc[r->n - 1].function = function_name(s, outer);

	if (have_cu) {
		Dwarf_Line *line = dwarf_getsrc_die(&cu, pc - cubias);
		const char *src = line != NULL ? dwarf_linesrc(line, NULL, NULL) : NULL;
		int lineno = 0;
		if (src != NULL && src[0] != '\0' && dwarf_lineno(line, &lineno) == 0 &&
		    lineno > 0) {
			r->loc[0].file = source_path(src, unit_comp_dir(&cu));
			r->loc[0].lineno = (uint32_t)lineno;
		}
	}
}

/* ---- frames (lock held) ---- */

static uint64_t frame_hash(const struct frame_key *k)
{
	return hash_mix((uint64_t)(uintptr_t)k->obj * 0x9e3779b97f4a7c15ULL ^ k->offset);
}

static bool frame_eq(const void *ctx, uintptr_t entry, const void *key)
{
	const struct frame *f = (const struct frame *)entry;
	const struct frame_key *k = key;

	(void)ctx;
	return f->obj == k->obj && f->offset == k->offset;
}

static struct frame *frame_find(struct symbols *s, const struct object *obj, uint64_t offset)
{
	struct frame_key k = {obj, offset};
	return table_find(&s->frames, frame_hash(&k), frame_eq, &k);
}

/* Location l as frame content: interned strings, "MODULE+0xOFFSET" for what
 * is unknown. */
static void location_info(struct symbols *s, const struct location *l, const char *module,
                          uint64_t offset, struct frame_info *out)
{
	static const struct location none = {NULL, NULL, 0};
	char *where = NULL;

	if (l == NULL)
		l = &none;
	if (l->function == NULL || l->file == NULL)
		where = xasprintf("%s+0x%" PRIx64, module, offset);
	out->module = module;
	out->function = intern(s, l->function != NULL ? l->function : where);
	out->filename = intern(s, l->file != NULL ? l->file : where);
	out->lineno = l->file != NULL ? l->lineno : 0;
	out->caller = NULL;
	free(where);
}

/* Caller frames are equal when their content is: the strings are interned,
 * so comparing pointers compares text. */
static uint64_t caller_hash(const struct frame_info *f)
{
	uint64_t h = hash_mix((uint64_t)(uintptr_t)f->module ^ (uint64_t)(uintptr_t)f->caller);
	h = hash_mix(h ^ (uint64_t)(uintptr_t)f->function);
	h = hash_mix(h ^ (uint64_t)(uintptr_t)f->filename);
	return hash_mix(h ^ f->lineno);
}

static bool caller_eq(const void *ctx, uintptr_t entry, const void *key)
{
	const struct frame_info *a = (const struct frame_info *)entry, *b = key;

	(void)ctx;
	return a->module == b->module && a->function == b->function && a->filename == b->filename &&
	       a->lineno == b->lineno && a->caller == b->caller;
}

static const struct frame_info *caller_get(struct symbols *s, const struct frame_info *want)
{
	uint64_t h = caller_hash(want);
	struct frame_info *f = table_find(&s->callers, h, caller_eq, want);

	if (f == NULL) {
		f = xmalloc(sizeof(*f));
		*f = *want;
		table_add(&s->callers, h, f);
	}
	return f;
}

static struct frame *frame_add(struct symbols *s, const struct object *obj, uint64_t offset,
                               const struct resolved *r)
{
	struct frame_key k = {obj, offset};
	struct frame *f = xcalloc(1, sizeof(*f));
	const char *module = obj != NULL ? obj->module : UNKNOWN_MODULE;
	const struct frame_info *caller = NULL;

	/* Outermost first, so each level can point at the interned one. */
	for (size_t i = r->n; i-- > 1;) {
		struct frame_info want;
		location_info(s, &r->loc[i], module, offset, &want);
		want.caller = caller;
		caller = caller_get(s, &want);
	}
	f->obj = obj;
	f->offset = offset;
	location_info(s, r->n > 0 ? &r->loc[0] : NULL, module, offset, &f->info);
	f->info.caller = caller;
	table_add(&s->frames, frame_hash(&k), f);
	s->stats.frames++;
	return f;
}

/* ---- the interface ---- */

struct symbols *symbols_new(bool debuginfod)
{
	struct symbols *s = xcalloc(1, sizeof(*s));

	/* Default mutexes cannot fail to initialise on Linux. */
	pthread_mutex_init(&s->dw_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	s->callbacks = debuginfod ? &callbacks_debuginfod : &callbacks_local;
	elf_version(EV_CURRENT);
	return s;
}

void symbols_free(struct symbols *s)
{
	if (s == NULL)
		return;
	table_close(&s->frames, free);
	table_close(&s->callers, free);
	table_close(&s->objects, object_destroy);
	table_close(&s->strings, free);
	if (s->cxxlib != NULL)
		dlclose(s->cxxlib);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->dw_lock);
	free(s);
}

const struct frame_info *symbols_lookup(struct symbols *s, const struct sym_module *m,
                                        uint64_t address)
{
	struct object_key k;
	const struct object *o;
	const struct frame *f = NULL;

	if (m == NULL)
		return NULL;
	object_key_of(m, &k);
	pthread_mutex_lock(&s->lock);
	o = object_find(s, &k);
	if (o != NULL)
		f = frame_find(s, o, address - m->bias);
	pthread_mutex_unlock(&s->lock);
	return f != NULL ? &f->info : NULL;
}

const struct frame_info *symbols_resolve(struct symbols *s, const struct sym_module *m,
                                         uint64_t address)
{
	uint64_t offset;
	const struct frame_info *fi;
	struct object *o;
	struct frame *f;
	struct resolved r = {NULL, 0};

	if (m == NULL)
		return symbols_unknown(s, address);
	fi = symbols_lookup(s, m, address);
	if (fi != NULL)
		return fi;

	/* Not cached: resolve under dw_lock, then look again under it, since
	 * another thread may have resolved the same frame meanwhile. */
	offset = address - m->bias;
	pthread_mutex_lock(&s->dw_lock);
	pthread_mutex_lock(&s->lock);
	o = object_get(s, m);
	f = frame_find(s, o, offset);
	pthread_mutex_unlock(&s->lock);
	if (f == NULL) {
		resolve_in_object(s, o, offset, &r);
		pthread_mutex_lock(&s->lock);
		f = frame_add(s, o, offset, &r);
		pthread_mutex_unlock(&s->lock);
		resolved_free(&r);
	}
	pthread_mutex_unlock(&s->dw_lock);
	return &f->info;
}

const struct frame_info *symbols_unknown(struct symbols *s, uint64_t address)
{
	static const struct resolved none = {NULL, 0};
	struct frame *f;

	pthread_mutex_lock(&s->lock);
	f = frame_find(s, NULL, address);
	if (f == NULL)
		f = frame_add(s, NULL, address, &none);
	pthread_mutex_unlock(&s->lock);
	return &f->info;
}

void symbols_get_stats(struct symbols *s, struct symbols_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->lock);
}
