/*
 * symbols.c - the libdw symbol cache of symbols.h.
 *
 * Objects. An agent names a module by path and build-id; its file is opened
 * as the agent's user could open it (useraccess.h), never blocking and never
 * anything but a regular file, and the object is the file that was opened:
 * its device, inode, size and modification time, so that a file replaced on
 * disk is another object, and the same libc mapped by a thousand processes
 * is one, opened once, whatever path each named it by. Every request opens
 * the file again as its own user (one open per module per capture, through
 * symbols_bind): a user who may not read a file never gets the frames
 * another user had resolved in it. The first time an object is used, its
 * file is opened as an offline Dwfl session of its own (on the descriptor
 * the bind opened) and its build-id is compared with the one the agent
 * reported; a file libdw cannot read, a different build-id, or a build-id
 * where the agent saw none makes the module a name (every frame
 * "MODULE+0xOFFSET") for that request. Objects without a build-id on either
 * side cannot be checked and are trusted.
 *
 * Who reads what. Separate debug files and dwz alternate files are found
 * with the same user's rights as the main file, through our own search (the
 * build-id tree under /usr/lib/debug, then the .gnu_debuglink names), each
 * opened through useraccess and checked by build-id or CRC. An object is
 * keyed by its file and by the uid whose rights found its separate files;
 * when every file it uses may be read by anyone (the usual case: debug
 * information in the file itself or in /usr/lib/debug), it is shared with
 * every uid that can open the main file, and reloaded later (after
 * eviction) with anyone's rights only. libdw opens a few files by itself, with
 * a blocking open and no rights check: a dwz file it was not given, and the
 * .dwo files of split DWARF. So a module whose DWARF names an alternate
 * file we could not open safely is resolved from its symbol table only, and
 * skeleton units (split DWARF) are never descended into.
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
 * to turn that off. It also opens the candidates beside the module's file by
 * name, blocking, with the daemon's rights. So the Dwfl sessions use a
 * callback of our own: the .build-id tree under /usr/lib/debug, then the
 * .gnu_debuglink name search beside the file, in its .debug directory and
 * under /usr/lib/debug, each candidate opened through useraccess and checked
 * by build-id (or CRC when the object has none); with debuginfod, last,
 * libdwfl's search given no file name (the build-id tree and the servers).
 * The main file is never looked up through find_elf (offline modules are
 * opened from a descriptor), and our find_elf returns nothing so libdwfl's
 * debuginfod_find_executable is never reached either.
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
 * Memory. The cache is bounded in all and per user. Everything it keeps
 * (objects, frames, inlined call sites, strings) belongs to a generation;
 * an object pins its generation while it is bound, so a frame handed out
 * stays valid until the object it was resolved in is released. Each byte a
 * generation holds is charged to the uid whose process asked for it (an
 * estimate: struct, string and index slot sizes plus malloc's overhead).
 * A uid past its share (symbols_set_bounds' per_uid) still reads what is
 * cached, but its new frames are resolved into its scratch
 * (struct sym_scratch), valid until its next resolve, instead of the
 * cache: one user who brings millions of distinct return addresses slows
 * down only their own captures. When the current generation passes the
 * total, it is retired: the next binds start a new, empty one, and the old
 * one is freed when its last object is released (captures in flight keep
 * theirs). Nobody's results change; they are only resolved again. What
 * libdw holds per file (mapped ELF, parsed DWARF, line tables) is bounded
 * apart: at most SYMBOLS_MAX_OPEN files are open at once and the least
 * recently used one is closed beyond that (it is reopened, and re-verified,
 * on demand).
 *
 * Locking. `lock` guards the tables, the statistics, each object's pins and
 * the list of open objects, and is held only for table operations, never
 * across a file operation. Each object has a mutex `mu` of its own that
 * guards its libdw state and is held while its files are read. Files are
 * opened (useraccess_open) with no lock held at all. A thread holding an
 * object's `mu` may take `lock`; the other way round only trylock is used
 * (eviction), so there is no lock-order cycle, and a file that blocks holds
 * up only the requests for that one object.
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
#include <sys/xattr.h>
#include <unistd.h>

#include "hash.h"
#include "oaindex.h"
#include "useraccess.h"
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
	OBJECT_FAILED, /* libdw could not read it, or it changed under us */
};

/* The uid of an object shared by all its readers, and of objects bound
 * with the daemon's own rights (sym_module.user NULL). */
#define VIEW_SHARED ((uid_t)-1)
#define VIEW_DAEMON ((uid_t)-2)

/* What a file is: a file replaced on disk is another object. `view` is the
 * uid whose rights found its separate debug files, or VIEW_SHARED. */
struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_sec;
	long mtime_nsec;
	uid_t view;
};

struct sym_object {
	/* Identity, immutable after creation. */
	bool is_file;       /* else a name: every frame is "MODULE+0xOFFSET" */
	struct file_id id;  /* is_file */
	char *path;         /* the path it was first opened by, or the name */
	const char *module; /* interned: path, or UNKNOWN_MODULE */
	struct symgen *gen; /* whose tables it is in */
	struct sym_object *all_next;

	/* Guarded by the cache's `lock`. */
	int pins;      /* binds not released: never evicted, nor its generation freed */
	bool private_; /* made for one bind of a uid past its share: in no table,
	                * its frames never cached, freed at its release */
	struct sym_scratch scratch;             /* a private object's frames without a caller's */
	bool shared;                            /* also in the table under VIEW_SHARED */
	bool open;                              /* in the list of open objects */
	struct sym_object *lru_prev, *lru_next; /* open objects, most recent first */

	/* Everything below is guarded by `mu`. */
	pthread_mutex_t mu;
	enum object_state state;
	bool counted;  /* already in the objects or failures statistic */
	bool have_id;  /* build_id is the file's (after the first load) */
	bool dwarf_ok; /* its DWARF may be read (no alternate file missing) */
	/* The module's Elf, and the separate debug file the load found, as
	 * libdwfl names it (NULL: none); both live as long as dwfl. */
	Elf *main_elf;
	const char *debug_name;
	bool dwarf_separate; /* its DWARF is the debug file's */
	bool debug_symtab;   /* the debug file has a symbol table (libdwfl's first choice) */
	uint8_t build_id[64];
	size_t build_id_len;
	Dwfl *dwfl;
	Dwfl_Module *mod;
	Dwarf_Addr dwbias;
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
	const struct sym_object *obj; /* NULL for symbols_unknown frames */
	uint64_t offset;              /* ELF vaddr, or the absolute address */
	struct frame_info info;
};

struct frame_key {
	const struct sym_object *obj;
	uint64_t offset;
};

typedef char *(*demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);

/* What one uid's requests added to a generation. */
struct uid_charge {
	uid_t uid;
	size_t bytes;
	bool full; /* reached per_uid: counted once in stats.uids_full */
};

/* Everything the cache keeps, until it is retired (see "Memory"). */
struct symgen {
	struct oaindex files;       /* struct sym_object *, by struct file_id */
	struct oaindex names;       /* struct sym_object *, unreadable modules by path */
	struct oaindex frames;      /* struct frame *, by (object, offset) */
	struct oaindex callers;     /* struct frame_info *, inlined call sites by content */
	struct oaindex strings;     /* char *, interned */
	struct sym_object *all;     /* every object, for gen_free */
	struct sym_object *unknown; /* frames outside every module, made on demand */
	size_t frames_n;
	size_t bytes;
	size_t refs; /* pins of its objects */
	bool retired;
	struct uid_charge *charges; /* the uids that added something, few */
	size_t ncharges;
	struct symgen *next; /* in the retired list */
};

struct symbols {
	pthread_mutex_t lock; /* the generations, statistics, pins, the open list */
	bool debuginfod;

	struct symgen *cur;        /* where new binds go */
	struct symgen *retired;    /* retired but still pinned */
	size_t max_bytes, per_uid; /* 0: no bound */
	struct symbols_stats stats;
	struct sym_object *lru_head, *lru_tail;
	size_t nopen;

	/* Set at creation, read-only after. */
	void *cxxlib;
	demangle_fn demangle;
};

/* ---- debug information search: local, as the module's user ---- */

/* What a load's search needs (the Dwfl module's userdata while the object
 * loads; NULL after, so a late search finds nothing). */
struct load_ctx {
	const struct useraccess_user *user; /* whose rights */
	struct useraccess_user anyone;
	const struct file_id *main; /* the main file, never its own debug file */
	uid_t main_uid;             /* its owner */
	bool debuginfod;
	bool all_public;   /* every separate file found may be read by anyone */
	bool alt_failed;   /* the DWARF names an alternate file we did not open */
	bool debug_symtab; /* the debug file found has a symbol table */
};

/* A debug file found by a CRC only (a module without a build-id) is read
 * whole to check it: not one larger than this. */
#define CRC_FILE_MAX ((off_t)256 << 20)

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
static bool debugfile_matches(int fd, const struct stat *st, const unsigned char *id, int id_len,
                              GElf_Word crc)
{
	bool ok = false;

	if (id_len > 0) {
		Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
		const void *fid;
		ssize_t n = e != NULL ? dwelf_elf_gnu_build_id(e, &fid) : -1;
		ok = n == id_len && memcmp(fid, id, (size_t)n) == 0;
		elf_end(e);
	} else if (crc != 0 && st->st_size <= CRC_FILE_MAX) {
		uint32_t c;
		ok = crc32_file(fd, &c) == 0 && c == crc;
	}
	return ok;
}

/* Whether the ELF file open as fd has a symbol table (.symtab). */
static bool has_symtab(int fd)
{
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	Elf_Scn *scn = NULL;
	bool found = false;

	while (e != NULL && !found && (scn = elf_nextscn(e, scn)) != NULL) {
		GElf_Shdr sh;
		found = gelf_getshdr(scn, &sh) != NULL && sh.sh_type == SHT_SYMTAB;
	}
	elf_end(e);
	return found;
}

/* Whether every user may read the file open as fd: read for its owner,
 * its group and others, and no ACL that could deny a named user or group
 * (a file "anyone" may open can still be closed to a group). */
static bool readable_by_all(int fd, const struct stat *st)
{
	if ((st->st_mode & 0444) != 0444)
		return false;
	if (fgetxattr(fd, "system.posix_acl_access", NULL, 0) >= 0)
		return false;
	return errno == ENODATA || errno == ENOTSUP;
}

/* Whether anyone could have opened what path named when `st` was opened. */
static void note_public(struct load_ctx *ctx, const char *path, const struct stat *st)
{
	struct stat pst;
	int fd;

	if (!ctx->all_public || (ctx->user != NULL && ctx->user->anyone))
		return;
	fd = useraccess_open(&ctx->anyone, path, &pst);
	if (fd < 0 || pst.st_dev != st->st_dev || pst.st_ino != st->st_ino ||
	    !readable_by_all(fd, &pst))
		ctx->all_public = false;
	if (fd >= 0)
		close(fd);
}

/* Who may vouch for a debug file: root, the owner of the module's file
 * (whose program it is), or the user whose process it is, for their own
 * view only (the object is then never shared). Anyone else's file in a
 * directory they can write (a /tmp beside the module, a directory of links
 * to others' libraries) would let them choose the names and lines other
 * users' frames show. */
static bool vouched(struct load_ctx *ctx, const struct stat *st)
{
	if (ctx->user == NULL || st->st_uid == 0 || st->st_uid == ctx->main_uid)
		return true;
	if (!ctx->user->anyone && st->st_uid == ctx->user->uid) {
		ctx->all_public = false;
		return true;
	}
	return false;
}

/* A candidate debug file, opened as the module's user and kept only when it
 * provably belongs to the module; -1 otherwise. */
static int open_candidate(struct load_ctx *ctx, const char *path, const unsigned char *id,
                          int id_len, GElf_Word crc)
{
	struct stat st;
	int fd = useraccess_open(ctx->user, path, &st);

	if (fd < 0) {
		/* There, but not for this user: what the search found depends
		 * on who asked, so the object is theirs alone (another user
		 * may read it and must not get this user's empty result). */
		if (fd == -EACCES || fd == -EPERM)
			ctx->all_public = false;
		return -1;
	}
	/* the main file by another name, or someone else's */
	if ((ctx->main != NULL && st.st_dev == ctx->main->dev && st.st_ino == ctx->main->ino) ||
	    !vouched(ctx, &st) || !debugfile_matches(fd, &st, id, id_len, crc)) {
		close(fd);
		return -1;
	}
	note_public(ctx, path, &st);
	return fd;
}

/* <debug dir>/.build-id/xx/yyyy.debug, the distributions' layout. */
static char *build_id_path(const unsigned char *id, size_t len)
{
	char *p = xmalloc(sizeof(SYMBOLS_DEBUG_DIR "/.build-id/") + 2 * len + 8);
	size_t n = (size_t)sprintf(p, SYMBOLS_DEBUG_DIR "/.build-id/");

	for (size_t i = 0; i < len; i++)
		n += (size_t)sprintf(p + n, i == 1 ? "/%02x" : "%02x", id[i]);
	strcpy(p + n, ".debug");
	return p;
}

static int find_by_build_id(struct load_ctx *ctx, const unsigned char *id, int id_len, char **found)
{
	char *path;
	int fd;

	if (id_len < 2)
		return -1;
	path = build_id_path(id, (size_t)id_len);
	fd = open_candidate(ctx, path, id, id_len, 0);
	if (fd >= 0)
		*found = path;
	else
		free(path);
	return fd;
}

/* The .gnu_debuglink search of libdwfl's default path: beside the file, in
 * its .debug directory, under /usr/lib/debug. When the file has no link,
 * "<basename>.debug" is tried, as libdwfl does. Links with a directory in
 * them are not followed. */
static int find_debuglink(struct load_ctx *ctx, Dwfl_Module *mod, const char *file_name,
                          const char *link, GElf_Word crc, char **found)
{
	const unsigned char *id = NULL;
	GElf_Addr id_vaddr;
	int id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
	const char *slash = strrchr(file_name, '/');
	char *invented = NULL, *dir = NULL;
	int fd = -1;

	if (slash == NULL || (id_len <= 0 && (link == NULL || crc == 0)))
		goto out;
	if (link == NULL)
		link = invented = xasprintf("%s.debug", slash + 1);
	if (strchr(link, '/') != NULL)
		goto out_invented;
	dir = xstrndup(file_name, (size_t)(slash - file_name));
	for (int i = 0; i < 3 && fd < 0; i++) {
		char *path = i == 0   ? xasprintf("%s/%s", dir, link)
		             : i == 1 ? xasprintf("%s/.debug/%s", dir, link)
		                      : xasprintf(SYMBOLS_DEBUG_DIR "%s/%s", dir, link);
		fd = open_candidate(ctx, path, id, id_len, crc);
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

/* The dwz alternate file a Dwarf names: by its build-id under
 * /usr/lib/debug, else by its name (relative to the file that names it).
 * When it cannot be opened so, the load marks the object's DWARF unusable:
 * libdw would otherwise look for it itself, with a blocking open of a path
 * the file chose. */
static int find_alt(struct load_ctx *ctx, Dwarf *dw, const char *file_name, char **found)
{
	const char *altname;
	const void *id;
	ssize_t n = dwelf_dwarf_gnu_debugaltlink(dw, &altname, &id);
	int fd;

	if (n <= 0 || n > 64)
		return -1;
	fd = find_by_build_id(ctx, id, (int)n, found);
	if (fd < 0 && altname[0] != '\0') {
		const char *slash = file_name != NULL ? strrchr(file_name, '/') : NULL;
		char *path = altname[0] == '/' ? xstrdup(altname)
		             : slash != NULL   ? xasprintf("%.*s/%s", (int)(slash - file_name),
		                                           file_name, altname)
		                               : NULL;
		if (path != NULL)
			fd = open_candidate(ctx, path, id, (int)n, 0);
		if (fd >= 0)
			*found = path;
		else
			free(path);
	}
	if (fd < 0)
		ctx->alt_failed = true;
	return fd;
}

/* libdwfl asks here for a module's separate debug file, and, once it has the
 * module's Dwarf, for its alternate file (then dwfl_module_getdwarf, which
 * returns at once while a search is under way, already has it). */
static int find_debuginfo_safe(Dwfl_Module *mod, void **userdata, const char *modname,
                               Dwarf_Addr base, const char *file_name, const char *link,
                               GElf_Word crc, char **found)
{
	struct load_ctx *ctx = userdata != NULL ? *userdata : NULL;
	const unsigned char *id = NULL;
	GElf_Addr id_vaddr;
	Dwarf_Addr dwbias;
	Dwarf *dw;
	int fd, id_len;

	errno = ENOENT;
	if (ctx == NULL)
		return -1;
	dw = dwfl_module_getdwarf(mod, &dwbias);
	if (dw != NULL)
		return find_alt(ctx, dw, file_name, found);
	id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
	fd = find_by_build_id(ctx, id, id_len, found);
	if (fd < 0 && file_name != NULL)
		fd = find_debuglink(ctx, mod, file_name, link, crc, found);
	if (fd < 0 && ctx->debuginfod) {
		/* The user opted in: libdwfl's own search with no file name,
		 * so only the build-id tree and the debuginfod servers. What it
		 * finds is private unless anyone could read it. */
		fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, NULL, NULL, 0,
		                                  found);
		if (fd >= 0) {
			struct stat st;
			if (*found == NULL || fstat(fd, &st) != 0)
				ctx->all_public = false;
			else
				note_public(ctx, *found, &st);
		}
	}
	if (fd >= 0)
		ctx->debug_symtab = has_symtab(fd);
	return fd;
}

/* Offline modules are opened from the descriptor the bind opened, so this
 * is never needed; it exists so that libdwfl cannot fall back on
 * dwfl_build_id_find_elf, which opens files by name and asks debuginfod. */
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

static const Dwfl_Callbacks callbacks = {
    .find_elf = find_elf_none,
    .find_debuginfo = find_debuginfo_safe,
    .section_address = dwfl_offline_section_address,
};

/* ---- charges and interned strings (lock held) ---- */

/* What an entry costs: its size, malloc's header and an index slot. */
#define COST(n) ((n) + 32)

static struct uid_charge *charge_of(struct symgen *g, uid_t uid, bool add)
{
	for (size_t i = 0; i < g->ncharges; i++)
		if (g->charges[i].uid == uid)
			return &g->charges[i];
	if (!add)
		return NULL;
	g->charges = xreallocarray(g->charges, g->ncharges + 1, sizeof(*g->charges));
	g->charges[g->ncharges] = (struct uid_charge){uid, 0, false};
	return &g->charges[g->ncharges++];
}

static void gen_charge(struct symgen *g, uid_t uid, size_t n)
{
	g->bytes += n;
	charge_of(g, uid, true)->bytes += n;
}

static bool string_eq(const void *ctx, uintptr_t entry, const void *key)
{
	(void)ctx;
	return strcmp((const char *)entry, key) == 0;
}

static const char *intern(struct symgen *g, uid_t uid, const char *str)
{
	uint64_t h = hash_str(HASH_SEED, str);
	char *found = table_find(&g->strings, h, string_eq, str);

	if (found == NULL) {
		found = xstrdup(str);
		table_add(&g->strings, h, found);
		gen_charge(g, uid, COST(strlen(str) + 1));
	}
	return found;
}
/* ---- objects ---- */

static uint64_t file_hash(const struct file_id *k)
{
	uint64_t h = hash_mix((uint64_t)k->dev * 0x9e3779b97f4a7c15ULL ^ (uint64_t)k->ino);
	h = hash_mix(h ^ (uint64_t)k->size);
	h = hash_mix(h ^ (uint64_t)k->mtime_sec ^ (uint64_t)k->mtime_nsec << 34);
	return hash_mix(h ^ (uint64_t)k->view);
}

static bool file_eq(const void *ctx, uintptr_t entry, const void *key)
{
	const struct sym_object *o = (const struct sym_object *)entry;
	const struct file_id *k = key;

	(void)ctx;
	return o->id.dev == k->dev && o->id.ino == k->ino && o->id.size == k->size &&
	       o->id.mtime_sec == k->mtime_sec && o->id.mtime_nsec == k->mtime_nsec &&
	       (o->id.view == k->view || (k->view == VIEW_SHARED && o->shared));
}

static bool name_eq(const void *ctx, uintptr_t entry, const void *key)
{
	(void)ctx;
	return strcmp(((const struct sym_object *)entry)->path, key) == 0;
}

/* lock held. */
/* An object of g for path, in no table yet; its module string is the path
 * (or UNKNOWN_MODULE), which the caller may replace by an interned one. */
static struct sym_object *object_alloc(struct symgen *g, bool is_file, const char *path)
{
	struct sym_object *o = xcalloc(1, sizeof(*o));

	o->is_file = is_file;
	o->path = xstrdup(path);
	o->module = o->path[0] != '\0' ? o->path : UNKNOWN_MODULE;
	o->gen = g;
	o->state = OBJECT_NEW;
	pthread_mutex_init(&o->mu, NULL);
	return o;
}

static struct sym_object *object_new(struct symgen *g, uid_t uid, bool is_file, const char *path)
{
	struct sym_object *o = object_alloc(g, is_file, path);

	o->module = intern(g, uid, o->module);
	o->all_next = g->all;
	g->all = o;
	gen_charge(g, uid, COST(sizeof(*o) + strlen(path) + 1));
	return o;
}

/* lock held. */
static void object_pin(struct sym_object *o)
{
	o->pins++;
	o->gen->refs++;
}

static uid_t user_uid(const struct useraccess_user *user)
{
	return user == NULL ? VIEW_DAEMON : user->uid;
}

static void maybe_retire(struct symbols *s, struct symgen *g);

/* Whether uid holds its share of g: its new frames and objects stay out of
 * the cache. lock held. */
static bool uid_past_share(struct symbols *s, struct symgen *g, uid_t uid)
{
	struct uid_charge *c;

	if (uid == VIEW_DAEMON || s->per_uid == 0)
		return false;
	c = charge_of(g, uid, false);
	if (c == NULL || c->bytes < s->per_uid)
		return false;
	if (!c->full) {
		c->full = true;
		s->stats.uids_full++;
	}
	s->stats.uncached++;
	return true;
}

static bool past_share(struct symbols *s, struct symgen *g, const struct sym_scratch *sc)
{
	return sc != NULL && uid_past_share(s, g, sc->uid);
}

/* An object for one bind of a uid past its share, pinned: like object_new,
 * but in no table and charged to nobody; symbols_release frees it. lock
 * held. */
static struct sym_object *object_private(struct symgen *g, bool is_file, const char *path)
{
	struct sym_object *o = object_alloc(g, is_file, path);

	/* Its module string stays the path itself, freed with the object. */
	o->private_ = true;
	object_pin(o);
	return o;
}

/* The object for a module whose file cannot be used, pinned: its frames
 * name the module by the path the agent gave. */
static struct sym_object *name_object(struct symbols *s, const char *path, uid_t uid)
{
	uint64_t h = hash_str(HASH_SEED, path);
	struct symgen *g;
	struct sym_object *o;

	pthread_mutex_lock(&s->lock);
	g = s->cur;
	o = table_find(&g->names, h, name_eq, path);
	if (o == NULL && uid_past_share(s, g, uid)) {
		o = object_private(g, false, path);
		pthread_mutex_unlock(&s->lock);
		return o;
	}
	if (o == NULL) {
		o = object_new(g, uid, false, path);
		table_add(&g->names, h, o);
		s->stats.failures++;
	}
	object_pin(o);
	maybe_retire(s, g);
	pthread_mutex_unlock(&s->lock);
	return o;
}

/* lock held. */
static void lru_unlink(struct symbols *s, struct sym_object *o)
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

/* lock held. */
static void lru_push(struct symbols *s, struct sym_object *o)
{
	o->lru_prev = NULL;
	o->lru_next = s->lru_head;
	if (s->lru_head != NULL)
		s->lru_head->lru_prev = o;
	else
		s->lru_tail = o;
	s->lru_head = o;
}

/* mu held; already off the open list. */
static void object_close(struct sym_object *o)
{
	dwfl_end(o->dwfl);
	o->dwfl = NULL;
	o->mod = NULL;
	free(o->cus); /* its DIEs pointed into the session */
	o->cus = NULL;
	o->ncus = 0;
	o->cus_built = false;
	o->state = OBJECT_CLOSED;
}

/* Closes the least recently used open objects that nobody has bound until
 * at most SYMBOLS_MAX_OPEN are open. A busy object (its mu held: being read)
 * is skipped rather than waited for. */
static void evict(struct symbols *s)
{
	for (;;) {
		struct sym_object *victim = NULL;

		pthread_mutex_lock(&s->lock);
		if (s->nopen > SYMBOLS_MAX_OPEN) {
			for (struct sym_object *o = s->lru_tail; o != NULL; o = o->lru_prev) {
				if (o->pins == 0 && pthread_mutex_trylock(&o->mu) == 0) {
					victim = o;
					break;
				}
			}
		}
		if (victim != NULL) {
			lru_unlink(s, victim);
			victim->open = false;
			s->nopen--;
		}
		pthread_mutex_unlock(&s->lock);
		if (victim == NULL)
			return;
		object_close(victim);
		pthread_mutex_unlock(&victim->mu);
	}
}

/* libdwfl reports errors through its own codes; what we keep is whether the
 * cause was the file (errno) or its content. */
static int dwfl_error(void)
{
	return errno != 0 ? -errno : -EINVAL;
}

/* The separate debug file a loaded module found, if any (*name NULL
 * otherwise), and the module's own Elf: DWARF read from an Elf that is not
 * the module's came from that file, and so did a symbol when that file has
 * a symbol table (else it came from the module's .gnu_debugdata). */
static void separate_debug_file(Dwfl_Module *mod, Elf **main_elf, const char **name)
{
	const char *main_name = NULL, *debug_name = NULL;
	Dwarf_Addr bias;

	*main_elf = dwfl_module_getelf(mod, &bias);
	dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &main_name, &debug_name);
	*name = debug_name != NULL && debug_name[0] != '\0' &&
	                (main_name == NULL || strcmp(main_name, debug_name) != 0)
	            ? debug_name
	            : NULL;
}

/* Reads the file open as fd (which this takes) as a one-module offline
 * session, finding its debug information with `user`'s rights now, while
 * the search has its context. mu held. *public: whether every separate
 * file it found may be read by anyone. */
static int object_load(struct symbols *s, struct sym_object *o, int fd,
                       const struct useraccess_user *user, bool *public)
{
	struct load_ctx ctx;
	struct stat mst;
	const unsigned char *id = NULL;
	GElf_Addr id_vaddr;
	Dwarf_Addr dwbias;
	void **userdata = NULL;
	Dwfl *dwfl;
	Dwfl_Module *mod;
	Dwarf *dw;
	int id_len, err;

	memset(&ctx, 0, sizeof(ctx));
	ctx.user = user;
	ctx.main = &o->id;
	if (fstat(fd, &mst) == 0)
		ctx.main_uid = mst.st_uid;
	ctx.debuginfod = s->debuginfod;
	ctx.all_public = true;
	useraccess_user_anyone(&ctx.anyone);
	dwfl = dwfl_begin(&callbacks);
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
	dwfl_module_info(mod, &userdata, NULL, NULL, NULL, NULL, NULL, NULL);
	if (userdata == NULL || dwfl_report_end(dwfl, NULL, NULL) != 0 ||
	    dwfl_module_getelf(mod, &o->dwbias) == NULL) {
		err = dwfl_error();
		goto err_after_begin;
	}
	id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
	if (id_len < 0 || (size_t)id_len > sizeof(o->build_id))
		id_len = 0;
	/* No build-id: id may be NULL, which memcpy and memcmp must not see
	 * even for 0 bytes. */
	if (!o->have_id) {
		if (id_len > 0)
			memcpy(o->build_id, id, (size_t)id_len);
		o->build_id_len = (size_t)id_len;
		o->have_id = true;
	} else if ((size_t)id_len != o->build_id_len ||
	           (id_len > 0 && memcmp(id, o->build_id, (size_t)id_len) != 0)) {
		err = -ESTALE;
		goto err_after_begin;
	}
	/* Every search happens here, with ctx: DWARF (which may look for a
	 * separate debug file and an alternate file), then the symbol table
	 * (which may look for the debug file when the main file has none). */
	*userdata = &ctx;
	dw = dwfl_module_getdwarf(mod, &dwbias);
	dwfl_module_getsymtab(mod);
	*userdata = NULL;
	o->dwarf_ok = dw != NULL && !ctx.alt_failed;
	separate_debug_file(mod, &o->main_elf, &o->debug_name);
	o->dwarf_separate = dw != NULL && o->debug_name != NULL && dwarf_getelf(dw) != o->main_elf;
	o->debug_symtab = o->debug_name != NULL && ctx.debug_symtab;
	o->dwfl = dwfl;
	o->mod = mod;
	*public = ctx.all_public;
	useraccess_user_close(&ctx.anyone);
	return 0;

err_after_begin:
	dwfl_end(dwfl);
err_after_open:
	if (fd >= 0)
		close(fd);
	useraccess_user_close(&ctx.anyone);
	return err;
}

/* Makes a bound object usable, reading its file from fd (taken) when it is
 * not open. mu held. */
static void object_open(struct symbols *s, struct sym_object *o, int fd,
                        const struct useraccess_user *user)
{
	struct useraccess_user anyone;
	bool first = !o->counted, shared, public = false, no_symbols = false;
	int err;

	if (o->state == OBJECT_OPEN || o->state == OBJECT_FAILED) {
		close(fd);
		pthread_mutex_lock(&s->lock);
		if (o->open) {
			lru_unlink(s, o);
			lru_push(s, o);
		}
		pthread_mutex_unlock(&s->lock);
		return;
	}
	pthread_mutex_lock(&s->lock);
	shared = o->shared;
	pthread_mutex_unlock(&s->lock);
	/* A shared object is reloaded with anyone's rights: whoever reloads
	 * it, it must not pick up a file only they may read. */
	useraccess_user_anyone(&anyone);
	err = object_load(s, o, fd, shared ? &anyone : user, &public);
	useraccess_user_close(&anyone);
	o->counted = true;
	if (err == 0 && first)
		no_symbols = dwfl_module_getsymtab(o->mod) <= 0;
	o->state = err == 0 ? OBJECT_OPEN : OBJECT_FAILED;

	pthread_mutex_lock(&s->lock);
	if (err == 0) {
		lru_push(s, o);
		o->open = true;
		s->nopen++;
		/* Counted once: a reopen after eviction is the same object. */
		if (first)
			s->stats.objects++;
		if (first && public && !o->shared && !o->private_ && o->id.view != VIEW_SHARED) {
			struct file_id k = o->id;
			k.view = VIEW_SHARED;
			if (table_find(&o->gen->files, file_hash(&k), file_eq, &k) == NULL) {
				o->shared = true;
				table_add(&o->gen->files, file_hash(&k), o);
			}
		}
	}
	if (first && (err != 0 || no_symbols))
		s->stats.failures++;
	pthread_mutex_unlock(&s->lock);
}

static void object_destroy(struct sym_object *o)
{
	if (o->dwfl != NULL)
		dwfl_end(o->dwfl);
	pthread_mutex_destroy(&o->mu);
	free(o->cus);
	free(o->path);
	free(o);
}

/* ---- resolution (the object's mu held) ---- */

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
	/* The separate debug file that named it (frame.h's `symbols`), or
	 * NULL; owned by the object's libdwfl session. */
	const char *symbols;
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

/* C++ names are demangled by the C++ runtime itself (symbols_new finds
 * __cxa_demangle, loading libstdc++ if need be); __cxa_demangle only reads its
 * input and returns malloc'd memory, so any thread may call it. Without it
 * names stay mangled, which is still correct. */
static char *demangle(struct symbols *s, const char *name)
{
	if (name[0] == '_' && name[1] == 'Z' && s->demangle != NULL) {
		int status = -1;
		char *d = s->demangle(name, NULL, NULL, &status);
		if (d != NULL && status == 0) {
			char *r = xstrdup(d);
			free(d);
			return r;
		}
		free(d);
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
static void cu_index_build(struct sym_object *o)
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
static bool object_cu(struct sym_object *o, Dwarf_Addr pc, Dwarf_Die *cu, Dwarf_Addr *bias)
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

/* Split DWARF: a skeleton unit's DWARF is in a .dwo file that libdw would
 * open by itself, at a path the file chose, with a blocking open. Such units
 * are left alone (the symbol table names the function). */
static bool unit_usable(Dwarf_Die *cu)
{
	Dwarf_Half version;
	uint8_t unit_type;

	if (dwarf_cu_info(cu->cu, &version, &unit_type, NULL, NULL, NULL, NULL, NULL) != 0)
		return false;
	if (unit_type == DW_UT_skeleton || unit_type == DW_UT_split_compile ||
	    unit_type == DW_UT_split_type)
		return false;
	return !dwarf_hasattr(cu, DW_AT_GNU_dwo_name) && !dwarf_hasattr(cu, DW_AT_dwo_name);
}

static void resolve_in_object(struct symbols *s, struct sym_object *o, uint64_t offset,
                              struct resolved *r)
{
	Dwarf_Addr low, high, pc, cubias = 0;
	Dwarf_Die cu;
	bool have_cu;
	const char *outer = NULL;

	if (o->state != OBJECT_OPEN)
		return;
	pc = offset + o->dwbias;
	if (dwfl_module_info(o->mod, NULL, &low, &high, NULL, NULL, NULL, NULL) == NULL ||
	    pc < low || pc >= high)
		return; /* not in this file: better unresolved than a neighbour's name */
	have_cu = o->dwarf_ok && object_cu(o, pc, &cu, &cubias) && unit_usable(&cu);

	if (have_cu) {
		outer = inline_chain(s, &cu, pc - cubias, r);
		/* DWARF: the file it came from, when that is not the module. */
		if (o->dwarf_separate)
			r->symbols = o->debug_name;
	}
	if (r->n == 0)
		resolved_push(r);
	if (outer == NULL) {
		GElf_Off off;
		GElf_Sym sym;
		Elf *from = NULL;
		outer = dwfl_module_addrinfo(o->mod, pc, &off, &sym, NULL, &from, NULL);
		/* A symbol table of the debug file (the module is stripped):
		 * libdwfl takes it before the module's own .gnu_debugdata,
		 * which names the module's frames when the debug file has no
		 * symbol table. */
		if (outer != NULL && from != NULL && from != o->main_elf && o->debug_symtab)
			r->symbols = o->debug_name;
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

static struct frame *frame_find(const struct sym_object *obj, uint64_t offset)
{
	struct frame_key k = {obj, offset};
	return table_find(&obj->gen->frames, frame_hash(&k), frame_eq, &k);
}

/* Location l's text: "MODULE+0xOFFSET" for what is unknown (*where, which
 * the caller frees). */
static void location_text(const struct location *l, const char *module, uint64_t offset,
                          struct frame_info *out, char **where)
{
	static const struct location none = {NULL, NULL, 0};

	if (l == NULL)
		l = &none;
	*where = NULL;
	if (l->function == NULL || l->file == NULL)
		*where = xasprintf("%s+0x%" PRIx64, module, offset);
	out->module = module;
	out->function = l->function != NULL ? l->function : *where;
	out->filename = l->file != NULL ? l->file : *where;
	out->lineno = l->file != NULL ? l->lineno : 0;
	out->caller = NULL;
	out->symbols = NULL;
}

/* Location l as cached frame content: interned strings. */
static void location_info(struct symgen *g, uid_t uid, const struct location *l, const char *module,
                          uint64_t offset, struct frame_info *out)
{
	char *where;

	location_text(l, module, offset, out, &where);
	out->function = intern(g, uid, out->function);
	out->filename = intern(g, uid, out->filename);
	free(where);
}

/* Caller frames are equal when their content is: the strings are interned,
 * so comparing pointers compares text. */
static uint64_t caller_hash(const struct frame_info *f)
{
	uint64_t h = hash_mix((uint64_t)(uintptr_t)f->module ^ (uint64_t)(uintptr_t)f->caller);
	h = hash_mix(h ^ (uint64_t)(uintptr_t)f->symbols);
	h = hash_mix(h ^ (uint64_t)(uintptr_t)f->function);
	h = hash_mix(h ^ (uint64_t)(uintptr_t)f->filename);
	return hash_mix(h ^ f->lineno);
}

static bool caller_eq(const void *ctx, uintptr_t entry, const void *key)
{
	const struct frame_info *a = (const struct frame_info *)entry, *b = key;

	(void)ctx;
	return a->module == b->module && a->function == b->function && a->filename == b->filename &&
	       a->lineno == b->lineno && a->caller == b->caller && a->symbols == b->symbols;
}

static const struct frame_info *caller_get(struct symgen *g, uid_t uid,
                                           const struct frame_info *want)
{
	uint64_t h = caller_hash(want);
	struct frame_info *f = table_find(&g->callers, h, caller_eq, want);

	if (f == NULL) {
		f = xmalloc(sizeof(*f));
		*f = *want;
		table_add(&g->callers, h, f);
		gen_charge(g, uid, COST(sizeof(*f)));
	}
	return f;
}

static struct frame *frame_add(struct symgen *g, uid_t uid, const struct sym_object *obj,
                               uint64_t offset, const struct resolved *r)
{
	struct frame_key k = {obj, offset};
	struct frame *f = xcalloc(1, sizeof(*f));
	const struct frame_info *caller = NULL;
	const char *symbols = r->symbols != NULL ? intern(g, uid, r->symbols) : NULL;

	/* Outermost first, so each level can point at the interned one. */
	for (size_t i = r->n; i-- > 1;) {
		struct frame_info want;
		location_info(g, uid, &r->loc[i], obj->module, offset, &want);
		want.caller = caller;
		want.symbols = symbols;
		caller = caller_get(g, uid, &want);
	}
	f->obj = obj;
	f->offset = offset;
	location_info(g, uid, r->n > 0 ? &r->loc[0] : NULL, obj->module, offset, &f->info);
	f->info.caller = caller;
	f->info.symbols = symbols;
	table_add(&g->frames, frame_hash(&k), f);
	g->frames_n++;
	gen_charge(g, uid, COST(sizeof(*f)));
	return f;
}

/* ---- scratch: frames of a user past their share ---- */

void symbols_scratch_init(struct sym_scratch *sc, uid_t uid)
{
	memset(sc, 0, sizeof(*sc));
	sc->uid = uid;
}

static void scratch_clear(struct sym_scratch *sc)
{
	for (size_t i = 0; i < sc->nstrs; i++)
		free(sc->strs[i]);
	free(sc->strs);
	free(sc->chain);
	sc->strs = NULL;
	sc->chain = NULL;
	sc->nstrs = 0;
}

void symbols_scratch_close(struct sym_scratch *sc)
{
	scratch_clear(sc);
}

static const char *scratch_str(struct sym_scratch *sc, const char *str)
{
	sc->strs[sc->nstrs] = xstrdup(str);
	return sc->strs[sc->nstrs++];
}

/* The frames of r, as frame_add makes them, in sc instead of the cache. */
static const struct frame_info *scratch_fill(struct sym_scratch *sc, const struct sym_object *obj,
                                             uint64_t offset, const struct resolved *r)
{
	size_t n = r->n > 0 ? r->n : 1;

	scratch_clear(sc);
	sc->chain = xcalloc(n, sizeof(*sc->chain));
	sc->strs = xcalloc(2 * n + 1, sizeof(*sc->strs));
	for (size_t i = 0; i < n; i++) {
		struct frame_info *f = &sc->chain[i];
		char *where;
		location_text(r->n > 0 ? &r->loc[i] : NULL, obj->module, offset, f, &where);
		f->function = scratch_str(sc, f->function);
		f->filename = scratch_str(sc, f->filename);
		f->caller = i + 1 < n ? &sc->chain[i + 1] : NULL;
		free(where);
	}
	if (r->symbols != NULL) {
		const char *symbols = scratch_str(sc, r->symbols);
		for (size_t i = 0; i < n; i++)
			sc->chain[i].symbols = symbols;
	}
	return &sc->chain[0];
}

/* ---- generations (see "Memory") ---- */

static struct symgen *gen_new(void)
{
	return xcalloc(1, sizeof(struct symgen));
}

static void nothing(void *entry)
{
	(void)entry;
}

/* g is unreachable: retired and unpinned, its objects off the open list. */
static void gen_free(struct symgen *g)
{
	table_close(&g->frames, free);
	table_close(&g->callers, free);
	table_close(&g->files, nothing);
	table_close(&g->names, nothing);
	table_close(&g->strings, free);
	while (g->all != NULL) {
		struct sym_object *o = g->all;
		g->all = o->all_next;
		/* An eviction may still be closing it: wait for it. */
		pthread_mutex_lock(&o->mu);
		pthread_mutex_unlock(&o->mu);
		object_destroy(o);
	}
	free(g->charges);
	free(g);
}

/* Retires the current generation when it is past the total. lock held; a
 * pin on g is held by the caller, so g is not freed here. */
static void maybe_retire(struct symbols *s, struct symgen *g)
{
	if (s->max_bytes == 0 || g != s->cur || g->bytes <= s->max_bytes)
		return;
	g->retired = true;
	g->next = s->retired;
	s->retired = g;
	s->cur = gen_new();
	s->stats.retired++;
}

/* ---- the interface ---- */

struct symbols *symbols_new(bool debuginfod)
{
	struct symbols *s = xcalloc(1, sizeof(*s));
	void *fn;

	/* Default mutexes cannot fail to initialise on Linux. */
	pthread_mutex_init(&s->lock, NULL);
	s->debuginfod = debuginfod;
	s->cur = gen_new();
	elf_version(EV_CURRENT);
	/* Found once here, so that no worker ever loads a library. */
	fn = dlsym(RTLD_DEFAULT, "__cxa_demangle");
	if (fn == NULL) {
		s->cxxlib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
		if (s->cxxlib != NULL)
			fn = dlsym(s->cxxlib, "__cxa_demangle");
	}
	memcpy(&s->demangle, &fn, sizeof(fn));
	return s;
}

void symbols_set_bounds(struct symbols *s, size_t max_bytes, size_t per_uid)
{
	pthread_mutex_lock(&s->lock);
	s->max_bytes = max_bytes;
	s->per_uid = per_uid;
	pthread_mutex_unlock(&s->lock);
}

void symbols_free(struct symbols *s)
{
	if (s == NULL)
		return;
	while (s->retired != NULL) {
		struct symgen *g = s->retired;
		s->retired = g->next;
		gen_free(g);
	}
	gen_free(s->cur);
	if (s->cxxlib != NULL)
		dlclose(s->cxxlib);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static struct file_id file_id_of(const struct stat *st, const struct useraccess_user *user)
{
	struct file_id k;

	memset(&k, 0, sizeof(k));
	k.dev = st->st_dev;
	k.ino = st->st_ino;
	k.size = st->st_size;
	k.mtime_sec = (int64_t)st->st_mtim.tv_sec;
	k.mtime_nsec = st->st_mtim.tv_nsec;
	k.view = user == NULL ? VIEW_DAEMON : user->anyone ? VIEW_SHARED : user->uid;
	return k;
}

struct sym_object *symbols_bind(struct symbols *s, const struct sym_module *m)
{
	const char *path = m->path != NULL ? m->path : "";
	uid_t uid = user_uid(m->user);
	struct sym_object *o;
	struct symgen *g;
	struct file_id k, shared_k;
	struct stat st;
	bool usable;
	int fd;

	/* No lock while the file is opened: it is another user's path. */
	fd = useraccess_open(m->user, path, &st);
	if (fd < 0)
		return name_object(s, path, uid);
	k = file_id_of(&st, m->user);
	shared_k = k;
	shared_k.view = VIEW_SHARED;

	pthread_mutex_lock(&s->lock);
	g = s->cur;
	o = table_find(&g->files, file_hash(&shared_k), file_eq, &shared_k);
	if (o == NULL)
		o = table_find(&g->files, file_hash(&k), file_eq, &k);
	if (o == NULL && uid_past_share(s, g, uid)) {
		o = object_private(g, true, path);
		o->id = k;
	} else {
		if (o == NULL) {
			o = object_new(g, uid, true, path);
			o->id = k;
			table_add(&g->files, file_hash(&k), o);
		}
		object_pin(o);
		maybe_retire(s, g);
	}
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&o->mu);
	object_open(s, o, fd, m->user);
	/* The build the process runs, or a file replaced since it loaded it
	 * (whose lines would lie); none on both sides cannot be checked. */
	usable = o->state == OBJECT_OPEN && o->build_id_len == m->build_id_len &&
	         (m->build_id_len == 0 || memcmp(o->build_id, m->build_id, m->build_id_len) == 0);
	pthread_mutex_unlock(&o->mu);
	evict(s);
	if (!usable) {
		symbols_release(s, o);
		return name_object(s, path, uid);
	}
	return o;
}

struct sym_object *symbols_bind_unknown(struct symbols *s)
{
	struct symgen *g;
	struct sym_object *o;

	pthread_mutex_lock(&s->lock);
	g = s->cur;
	if (g->unknown == NULL)
		g->unknown = object_new(g, VIEW_DAEMON, false, "");
	o = g->unknown;
	object_pin(o);
	pthread_mutex_unlock(&s->lock);
	return o;
}

void symbols_release(struct symbols *s, struct sym_object *o)
{
	struct symgen *g, *dead = NULL;
	struct sym_object *mine = NULL;

	if (o == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	g = o->gen;
	o->pins--;
	if (o->private_ && o->pins == 0) {
		if (o->open) {
			lru_unlink(s, o);
			o->open = false;
			s->nopen--;
		}
		mine = o;
	}
	if (--g->refs == 0 && g->retired) {
		struct symgen **p = &s->retired;
		while (*p != g)
			p = &(*p)->next;
		*p = g->next;
		for (struct sym_object *x = g->all; x != NULL; x = x->all_next) {
			if (x->open) {
				lru_unlink(s, x);
				x->open = false;
				s->nopen--;
			}
		}
		dead = g;
	}
	pthread_mutex_unlock(&s->lock);
	if (mine != NULL) {
		/* An eviction may still be closing it: wait for it. */
		pthread_mutex_lock(&mine->mu);
		pthread_mutex_unlock(&mine->mu);
		symbols_scratch_close(&mine->scratch);
		object_destroy(mine);
	}
	if (dead != NULL)
		gen_free(dead);
	evict(s);
}

const struct frame_info *symbols_lookup(struct symbols *s, struct sym_object *o, uint64_t offset)
{
	const struct frame *f;

	pthread_mutex_lock(&s->lock);
	f = frame_find(o, offset);
	pthread_mutex_unlock(&s->lock);
	return f != NULL ? &f->info : NULL;
}

const struct frame_info *symbols_resolve_in(struct symbols *s, struct sym_object *o,
                                            uint64_t offset, struct sym_scratch *sc)
{
	const struct frame_info *fi = symbols_lookup(s, o, offset);
	struct resolved r = {NULL, 0, NULL};
	struct frame *f;

	if (fi != NULL)
		return fi;
	if (o->is_file)
		pthread_mutex_lock(&o->mu);
	/* Another thread may have resolved it while this one waited. */
	pthread_mutex_lock(&s->lock);
	f = frame_find(o, offset);
	pthread_mutex_unlock(&s->lock);
	if (f != NULL) {
		fi = &f->info;
	} else {
		if (o->is_file)
			resolve_in_object(s, o, offset, &r);
		pthread_mutex_lock(&s->lock);
		if (o->private_) {
			/* Never cached: its frames are keyed by an object that
			 * goes at its release. */
			if (sc == NULL)
				sc = &o->scratch;
			s->stats.uncached++;
			fi = NULL;
		} else if (past_share(s, o->gen, sc)) {
			fi = NULL;
		} else {
			fi = &frame_add(o->gen, sc != NULL ? sc->uid : VIEW_DAEMON, o, offset, &r)
			          ->info;
			maybe_retire(s, o->gen);
		}
		pthread_mutex_unlock(&s->lock);
		if (fi == NULL)
			fi = scratch_fill(sc, o, offset, &r);
		resolved_free(&r);
	}
	if (o->is_file)
		pthread_mutex_unlock(&o->mu);
	return fi;
}

const struct frame_info *symbols_resolve(struct symbols *s, const struct sym_module *m,
                                         uint64_t address)
{
	struct sym_object *o;
	const struct frame_info *fi;

	if (m == NULL) {
		o = symbols_bind_unknown(s);
		fi = symbols_resolve_in(s, o, address, NULL);
	} else {
		o = symbols_bind(s, m);
		fi = symbols_resolve_in(s, o, address - m->bias, NULL);
	}
	symbols_release(s, o);
	return fi;
}

size_t symbols_uids(struct symbols *s, struct symbols_uid *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->cur->ncharges; i++) {
		const struct uid_charge *c = &s->cur->charges[i];
		struct symbols_uid u = {c->uid, c->bytes, c->full};
		if (c->uid == VIEW_DAEMON || c->uid == VIEW_SHARED)
			continue; /* the daemon's own: no user's */
		size_t at = n < max ? n++ : max;
		/* Insertion, the largest first; past max the smallest drops. */
		while (at > 0 && out[at - 1].bytes < u.bytes) {
			if (at < max)
				out[at] = out[at - 1];
			at--;
		}
		if (at < max)
			out[at] = u;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t symbols_uid_bytes(struct symbols *s, uid_t uid)
{
	struct uid_charge *c;
	size_t n;

	pthread_mutex_lock(&s->lock);
	c = charge_of(s->cur, uid, false);
	n = c != NULL ? c->bytes : 0;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void symbols_get_stats(struct symbols *s, struct symbols_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->stats;
	out->frames = s->cur->frames_n;
	out->bytes = s->cur->bytes;
	for (const struct symgen *g = s->retired; g != NULL; g = g->next)
		out->bytes += g->bytes;
	out->max_bytes = s->max_bytes;
	out->per_uid = s->per_uid;
	pthread_mutex_unlock(&s->lock);
}
