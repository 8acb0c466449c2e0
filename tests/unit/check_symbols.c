/*
 * check_symbols.c - symbolization against the test binary's own ground truth.
 *
 * The expected answers come from this file, not from libdw: a few functions
 * below call a non-inlined helper that returns its return address, on a line
 * they record with __LINE__, so the test knows the exact function, file and
 * line of an address. The module (path, load bias, build-id) is found the way
 * the agent finds it, with dl_iterate_phdr and the PT_NOTE segment, so the
 * address arithmetic under test is the one the daemon will see: a PIE test
 * binary exercises a non-zero bias, a -no-pie build a zero one, and libc a
 * shared library.
 *
 * The call sites are built to survive -O2: the helper and the site functions
 * are noipa (no inlining, cloning or identical-code folding that would rename
 * or merge them), the helper has an opaque side effect (clang would otherwise
 * fold two calls into one), and each call is a statement on its own line.
 * The suite passes at -O0 and -O2, PIE and -no-pie, gcc and clang (whose
 * binaries lack .debug_aranges, which exercises the unit-range fallback).
 *
 * Expectations that depend on the machine (libc's debug file, libstdc++,
 * libdebuginfod being installed) are checked in the form that holds either
 * way, or skipped when the library is absent.
 */
/* RTLD_DEFAULT, dl_iterate_phdr and friends are GNU extensions; config.h
 * (AC_USE_SYSTEM_EXTENSIONS) usually defines this already. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "symbols.h"
#include "suites.h"
#include "useraccess.h"

#if defined(__clang__)
#define NOIPA __attribute__((noinline))
#else
#define NOIPA __attribute__((noipa))
#endif

/* ---- ground truth: call sites with known lines ---- */

struct site {
	uint64_t addr; /* inside the call instruction, as the agent reports it */
	uint32_t line;
};

static NOIPA uint64_t return_address(void)
{
	/* An opaque side effect, so no compiler can treat two calls as one. */
	__asm__ volatile("" ::: "memory");
	return (uint64_t)(uintptr_t)__builtin_return_address(0);
}

static NOIPA struct site site_alpha(void)
{
	struct site s;
	s.line = __LINE__ + 1;
	s.addr = return_address();
	s.addr -= 1;
	return s;
}

static NOIPA void site_pair(struct site out[2])
{
	out[0].line = __LINE__ + 1;
	out[0].addr = return_address();
	out[1].line = __LINE__ + 1;
	out[1].addr = return_address();
	out[0].addr -= 1;
	out[1].addr -= 1;
}

static inline __attribute__((always_inline)) struct site site_inlined(void)
{
	struct site s;
	s.line = __LINE__ + 1;
	s.addr = return_address();
	s.addr -= 1;
	return s;
}

static NOIPA struct site site_inline_caller(void)
{
	return site_inlined();
}

/* An inlining chain: chain_leaf inlined into chain_middle inlined into
 * chain_outer inlined into the real function chain_root. Each level records
 * the line of the statement it runs there: the leaf its call of
 * return_address, the others the call of the next level in, which is where
 * DWARF says that level was inlined (DW_AT_call_line). The leaf takes two
 * addresses on two lines of one inlined instance, whose callers are then the
 * same frames. */
struct chain {
	uint64_t addr[2];
	uint32_t leaf_line[2];
	uint32_t line[3]; /* the call sites in chain_middle, chain_outer, chain_root */
};

static inline __attribute__((always_inline)) void chain_leaf(struct chain *c)
{
	c->leaf_line[0] = __LINE__ + 1;
	c->addr[0] = return_address();
	c->leaf_line[1] = __LINE__ + 1;
	c->addr[1] = return_address();
}

static inline __attribute__((always_inline)) void chain_middle(struct chain *c)
{
	c->line[0] = __LINE__ + 1;
	chain_leaf(c);
}

static inline __attribute__((always_inline)) void chain_outer(struct chain *c)
{
	c->line[1] = __LINE__ + 1;
	chain_middle(c);
}

static NOIPA void chain_root(struct chain *c)
{
	c->line[2] = __LINE__ + 1;
	chain_outer(c);
	c->addr[0] -= 1;
	c->addr[1] -= 1;
}

/* ---- ground truth: the module of an address, as the agent sees it ---- */

struct test_module {
	char path[PATH_MAX];
	uint64_t bias;
	uint8_t build_id[64];
	size_t build_id_len;
};

struct find_ctx {
	uintptr_t addr;
	struct test_module *out;
	bool found;
};

static size_t note_build_id(const struct dl_phdr_info *info, const ElfW(Phdr) * ph, uint8_t *out,
                            size_t cap)
{
	const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
	const uint8_t *end = p + ph->p_memsz;

	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
		const uint8_t *name = p + sizeof(*n);
		const uint8_t *desc = name + ((n->n_namesz + 3u) & ~3u);
		const uint8_t *next = desc + ((n->n_descsz + 3u) & ~3u);
		if (next > end)
			break;
		if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
		    memcmp(name, "GNU", 4) == 0 && n->n_descsz <= cap) {
			memcpy(out, desc, n->n_descsz);
			return n->n_descsz;
		}
		p = next;
	}
	return 0;
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct find_ctx *c = data;
	bool inside = false;
	(void)size;

	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && c->addr >= lo && c->addr < lo + ph->p_memsz)
			inside = true;
	}
	if (!inside)
		return 0;
	memset(c->out, 0, sizeof(*c->out));
	c->out->bias = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum && c->out->build_id_len == 0; i++)
		if (info->dlpi_phdr[i].p_type == PT_NOTE)
			c->out->build_id_len = note_build_id(
			    info, &info->dlpi_phdr[i], c->out->build_id, sizeof(c->out->build_id));
	if (info->dlpi_name != NULL && info->dlpi_name[0] != '\0') {
		snprintf(c->out->path, sizeof(c->out->path), "%s", info->dlpi_name);
	} else {
		/* The main program has no name here; the agent uses its real path. */
		ssize_t n = readlink("/proc/self/exe", c->out->path, sizeof(c->out->path) - 1);
		if (n < 0)
			return 0;
		c->out->path[n] = '\0';
	}
	c->found = true;
	return 1;
}

static void module_of(const void *addr, struct test_module *out)
{
	struct find_ctx c = {(uintptr_t)addr, out, false};
	dl_iterate_phdr(find_cb, &c);
	ck_assert_msg(c.found, "no loaded object contains %p", addr);
}

static struct sym_module as_sym(const struct test_module *t)
{
	struct sym_module m = {t->path, t->build_id, t->build_id_len, t->bias, NULL};
	return m;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The cached frame of address in m (symbols_lookup on m bound). */
static const struct frame_info *lookup(struct symbols *s, const struct sym_module *m,
                                       uint64_t address)
{
	struct sym_object *o = symbols_bind(s, m);
	const struct frame_info *fi = symbols_lookup(s, o, address - m->bias);

	symbols_release(s, o);
	return fi;
}

/* The frame the source says this site is. */
static void assert_site(const struct frame_info *fi, const struct test_module *t,
                        const char *function, uint32_t line)
{
	ck_assert_ptr_nonnull(fi);
	ck_assert_str_eq(fi->function, function);
	ck_assert_msg(ends_with(fi->filename, "/check_symbols.c"), "filename %s", fi->filename);
	ck_assert_msg(fi->filename[0] == '/', "filename %s is not absolute", fi->filename);
	ck_assert_uint_eq(fi->lineno, line);
	ck_assert_str_eq(fi->module, t->path);
	/* The module's own file named it. */
	ck_assert_msg(fi->symbols == NULL, "symbols %s", fi->symbols);
}

/* The "MODULE+0xOFFSET" frame of an unresolvable address. */
static void assert_unresolved(const struct frame_info *fi, const char *module, uint64_t offset)
{
	char want[PATH_MAX + 32];

	snprintf(want, sizeof(want), "%s+0x%" PRIx64, module, offset);
	ck_assert_ptr_nonnull(fi);
	ck_assert_str_eq(fi->function, want);
	ck_assert_str_eq(fi->filename, want);
	ck_assert_uint_eq(fi->lineno, 0);
	ck_assert_str_eq(fi->module, module);
}

/* ---- the test binary itself ---- */

START_TEST(test_self_function_and_line)
{
	struct site a = site_alpha();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	assert_site(fi, &t, "site_alpha", a.line);
	ck_assert_ptr_null(fi->caller); /* not inlined: one frame */
	symbols_free(s);
}
END_TEST

START_TEST(test_self_two_lines_one_function)
{
	struct site p[2];
	struct test_module t;
	struct symbols *s = symbols_new(false);

	site_pair(p);
	ck_assert_uint_ne(p[0].addr, p[1].addr);
	module_of((void *)(uintptr_t)p[0].addr, &t);
	struct sym_module m = as_sym(&t);
	assert_site(symbols_resolve(s, &m, p[0].addr), &t, "site_pair", p[0].line);
	assert_site(symbols_resolve(s, &m, p[1].addr), &t, "site_pair", p[1].line);
	symbols_free(s);
}
END_TEST

START_TEST(test_self_inlined)
{
	/* The line is inside the inlined body, so the function must be the
	 * inlined one for the frame to agree with itself. */
	struct site a = site_inline_caller();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	assert_site(fi, &t, "site_inlined", a.line);
	/* One level: the real function it was inlined into. */
	ck_assert_ptr_nonnull(fi->caller);
	ck_assert_str_eq(fi->caller->function, "site_inline_caller");
	ck_assert_str_eq(fi->caller->filename, fi->filename);
	ck_assert_ptr_null(fi->caller->caller);
	symbols_free(s);
}
END_TEST

START_TEST(test_self_inline_chain)
{
	static const char *const callers[] = {"chain_middle", "chain_outer", "chain_root"};
	struct chain c;
	struct test_module t;
	struct symbols *s = symbols_new(false);

	chain_root(&c);
	ck_assert_uint_ne(c.addr[0], c.addr[1]);
	module_of((void *)(uintptr_t)c.addr[0], &t);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi[2];
	for (int k = 0; k < 2; k++) {
		fi[k] = symbols_resolve(s, &m, c.addr[k]);
		assert_site(fi[k], &t, "chain_leaf", c.leaf_line[k]);
		const struct frame_info *f = fi[k]->caller;
		for (size_t i = 0; i < 3; i++) {
			ck_assert_msg(f != NULL, "chain ends after %zu callers", i);
			assert_site(f, &t, callers[i], c.line[i]);
			f = f->caller;
		}
		ck_assert_ptr_null(f); /* chain_root is the real function */
		ck_assert_ptr_eq(lookup(s, &m, c.addr[k]), fi[k]);
	}
	/* One inlined instance, two lines: the callers are the same frames,
	 * and only the two addresses count as resolved frames. */
	ck_assert_ptr_ne(fi[0], fi[1]);
	ck_assert_ptr_eq(fi[0]->caller, fi[1]->caller);
	struct symbols_stats st;
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.frames, 2);
	symbols_free(s);
}
END_TEST

START_TEST(test_self_other_bias_same_frame)
{
	/* Another process mapping the same build elsewhere: same offset, same
	 * frame, and no second open of the file. */
	struct site a = site_alpha();
	struct test_module t;
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	m.bias += 0x10000000;
	ck_assert_ptr_eq(symbols_resolve(s, &m, a.addr + 0x10000000), fi);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.objects, 1);
	ck_assert_uint_eq(st.frames, 1);
	symbols_free(s);
}
END_TEST

/* ---- a shared library ---- */

/* A function's own address in a library. Looked up through the library's
 * handle: in a -no-pie test binary `&function` is the executable's PLT
 * stub, and under a sanitizer plain dlsym finds its interposed malloc. */
static uintptr_t library_function(const char *lib, const char *name)
{
	void *h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
	void *fn;

	ck_assert_msg(h != NULL, "%s is not loaded", lib);
	fn = dlsym(h, name);
	dlclose(h);
	ck_assert_msg(fn != NULL, "%s has no %s", lib, name);
	return (uintptr_t)fn;
}

START_TEST(test_shared_library)
{
	uintptr_t addr = library_function("libc.so.6", "malloc") + 1;
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)addr, &t);
	ck_assert_uint_ne(t.bias, 0);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi = symbols_resolve(s, &m, addr);
	ck_assert_msg(strcmp(fi->function, "malloc") == 0 ||
	                  strcmp(fi->function, "__libc_malloc") == 0 ||
	                  strcmp(fi->function, "__malloc") == 0,
	              "malloc+1 resolved to %s", fi->function);
	ck_assert_str_eq(fi->module, t.path);
	/* With libc's debug file installed lines are known; without, none. */
	if (fi->lineno != 0) {
		ck_assert_msg(ends_with(fi->filename, "/malloc.c"), "filename %s", fi->filename);
	} else {
		char want[PATH_MAX + 32];
		snprintf(want, sizeof(want), "%s+0x%" PRIx64, t.path, (uint64_t)(addr - t.bias));
		ck_assert_str_eq(fi->filename, want);
	}
	symbols_free(s);
}
END_TEST

START_TEST(test_cxx_demangled)
{
	/* std::exception's destructor: a name every libstdc++ exports and whose
	 * demangled form is fixed by the ABI. Without libstdc++ there is
	 * nothing to check. */
	void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL)
		return;
	void *fn = dlsym(h, "_ZNSt9exceptionD2Ev");
	ck_assert_ptr_nonnull(fn);
	uintptr_t addr = (uintptr_t)fn + 1;
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)addr, &t);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi = symbols_resolve(s, &m, addr);
	ck_assert_str_eq(fi->function, "std::exception::~exception()");
	symbols_free(s);
	dlclose(h);
}
END_TEST

/* ---- objects that cannot be trusted ---- */

START_TEST(test_missing_file)
{
	static const uint8_t id[] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
	const char *path = "/nonexistent/memtrace-check/libgone.so.1";
	struct sym_module m = {path, id, sizeof(id), 0x7f0000000000, NULL};
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	assert_unresolved(symbols_resolve(s, &m, 0x7f0000001234), path, 0x1234);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.objects, 0);
	ck_assert_uint_eq(st.failures, 1);
	ck_assert_uint_eq(st.frames, 1);
	symbols_free(s);
}
END_TEST

START_TEST(test_wrong_build_id)
{
	/* The binary on disk is not the one the process runs: no line may be
	 * given, even though the file has perfectly good ones. */
	struct site a = site_alpha();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	if (t.build_id_len == 0) {
		t.build_id[0] = 0x42;
		t.build_id_len = 20;
	} else {
		t.build_id[t.build_id_len - 1] ^= 0xff;
	}
	struct sym_module m = as_sym(&t);
	assert_unresolved(symbols_resolve(s, &m, a.addr), t.path, a.addr - t.bias);
	symbols_free(s);
}
END_TEST

START_TEST(test_build_id_not_reported)
{
	/* The file has a build-id the process did not report: not provably the
	 * same build either. */
	struct site a = site_alpha();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	/* A binary without a build-id is trusted by path: nothing to check. */
	if (t.build_id_len != 0) {
		t.build_id_len = 0;
		struct sym_module m = as_sym(&t);
		assert_unresolved(symbols_resolve(s, &m, a.addr), t.path, a.addr - t.bias);
	}
	symbols_free(s);
}
END_TEST

START_TEST(test_empty_path)
{
	static const uint8_t id[] = {9, 8, 7, 6};
	struct sym_module m = {"", id, sizeof(id), 0x1000, NULL};
	struct symbols *s = symbols_new(false);

	assert_unresolved(symbols_resolve(s, &m, 0x1abc), "[unknown]", 0xabc);
	symbols_free(s);
}
END_TEST

START_TEST(test_relative_path)
{
	/* "./name" means the traced process's directory, which the daemon does
	 * not know: even when the daemon's own directory holds that very file,
	 * it must not be used. */
	struct site a = site_alpha();
	struct test_module t;
	char cwd[PATH_MAX], dir[PATH_MAX], rel[PATH_MAX];
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	snprintf(dir, sizeof(dir), "%s", t.path);
	*strrchr(dir, '/') = '\0';
	snprintf(rel, sizeof(rel), "./%s", strrchr(t.path, '/') + 1);
	ck_assert_int_eq(chdir(dir), 0);
	struct sym_module m = as_sym(&t);
	m.path = rel;
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	ck_assert_int_eq(chdir(cwd), 0);
	assert_unresolved(fi, rel, a.addr - t.bias);
	symbols_free(s);
}
END_TEST

START_TEST(test_address_outside_file)
{
	/* An offset past the end of the file's segments names nothing. */
	struct site a = site_alpha();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	struct sym_module m = as_sym(&t);
	uint64_t far = t.bias + 0x7000000000ULL;
	assert_unresolved(symbols_resolve(s, &m, far), t.path, 0x7000000000ULL);
	symbols_free(s);
}
END_TEST

/* ---- files another user may not read ---- */

/* A copy of the test binary (same build-id, same lines) at dir/name with
 * mode `mode`, in a fresh directory dir (0755) under TMPDIR. */
static void copy_self(const struct test_module *t, char *dir, size_t dcap, char *path, size_t pcap,
                      mode_t mode)
{
	char buf[65536];
	ssize_t n;
	int in, out;

	snprintf(dir, dcap, "%s/memtrace-symbols-XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(chmod(dir, 0755), 0);
	snprintf(path, pcap, "%s/secret", dir);
	in = open(t->path, O_RDONLY | O_CLOEXEC);
	out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_int_ge(in, 0);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof buf)) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	ck_assert_int_eq(chmod(path, mode), 0);
}

static void remove_copy(const char *dir, const char *path)
{
	unlink(path);
	rmdir(dir);
}

/* Runs objcopy with args (NULL-terminated after "objcopy"); asserts success. */
static void objcopy(const char *const *args)
{
	const char *argv[8] = {"objcopy"};
	size_t n = 1;
	int status;
	pid_t pid;

	for (; args[n - 1] != NULL && n < 7; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execvp("objcopy", (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "objcopy %s %s ... failed (status %d; 127: objcopy, of binutils, is missing)",
	              argv[1], argv[2], status);
}

/* A stripped module whose symbols are in a debug file beside it, found by
 * its .gnu_debuglink (what objcopy --only-keep-debug and Debian's -dbgsym
 * packages make): frames name the module that was mapped and, as
 * `symbols`, the file that named them; the ground truth is this file's
 * own lines. */
START_TEST(test_separate_debug_file)
{
	struct site a = site_alpha();
	struct test_module t;
	char dir[PATH_MAX], path[PATH_MAX + 16], dbg[PATH_MAX + 32], bare[PATH_MAX + 32],
	    strip[PATH_MAX + 32], symtab[PATH_MAX + 32], dbg_only[PATH_MAX + 32];
	char link[PATH_MAX + 64];
	struct symbols *s = symbols_new(false);
	const struct frame_info *fi;

	module_of((void *)(uintptr_t)a.addr, &t);
	copy_self(&t, dir, sizeof dir, path, sizeof path, 0755);
	snprintf(dbg, sizeof dbg, "%s/prog.debug", dir);
	snprintf(bare, sizeof bare, "%s/prog", dir);
	snprintf(strip, sizeof strip, "%s/nodebug", dir);
	snprintf(symtab, sizeof symtab, "%s/symtab-only", dir);
	snprintf(dbg_only, sizeof dbg_only, "%s/symtab-only.debug", dir);
	snprintf(link, sizeof link, "--add-gnu-debuglink=%s", dbg);
	const char *keep[] = {"--only-keep-debug", path, dbg, NULL};
	const char *stripped[] = {"--strip-all", link, path, bare, NULL};
	const char *nolink[] = {"--strip-all", path, strip, NULL};
	objcopy(keep);
	objcopy(stripped);
	objcopy(nolink);

	/* The -g file itself: its own symbols, no "symbols". */
	struct sym_module m = as_sym(&t);
	assert_site(symbols_resolve(s, &m, a.addr), &t, "site_alpha", a.line);

	/* The stripped copy: the same lines, named by prog.debug. */
	m.path = bare;
	fi = symbols_resolve(s, &m, a.addr);
	ck_assert_str_eq(fi->function, "site_alpha");
	ck_assert_uint_eq(fi->lineno, a.line);
	ck_assert_msg(ends_with(fi->filename, "/check_symbols.c"), "filename %s", fi->filename);
	ck_assert_str_eq(fi->module, bare);
	ck_assert_msg(fi->symbols != NULL && strcmp(fi->symbols, dbg) == 0, "symbols %s, want %s",
	              fi->symbols != NULL ? fi->symbols : "(none)", dbg);

	/* Stripped with no debug file to find: MODULE+0xOFFSET, no symbols. */
	m.path = strip;
	fi = symbols_resolve(s, &m, a.addr);
	assert_unresolved(fi, strip, a.addr - t.bias);
	ck_assert_ptr_null(fi->symbols);

	/* A debug file with a symbol table and no DWARF: the function's name,
	 * no line, named by that file. */
	snprintf(link, sizeof link, "--add-gnu-debuglink=%s", dbg_only);
	const char *nodwarf[] = {"--only-keep-debug", "--strip-debug", path, dbg_only, NULL};
	const char *stripped2[] = {"--strip-all", link, path, symtab, NULL};
	objcopy(nodwarf);
	objcopy(stripped2);
	m.path = symtab;
	fi = symbols_resolve(s, &m, a.addr);
	ck_assert_str_eq(fi->function, "site_alpha");
	ck_assert_uint_eq(fi->lineno, 0);
	ck_assert_msg(fi->symbols != NULL && strcmp(fi->symbols, dbg_only) == 0,
	              "symbols %s, want %s", fi->symbols != NULL ? fi->symbols : "(none)",
	              dbg_only);

	/* A user who may not read the debug file gets the stripped module's
	 * frames without it, and is not told its name. */
	struct useraccess_user nobody;
	struct symbols *s2 = symbols_new(false);
	ck_assert_int_eq(chmod(dbg, 0600), 0);
	useraccess_user_set(&nobody, 65534, 65534, NULL, 0);
	m.path = bare;
	m.user = &nobody;
	fi = symbols_resolve(s2, &m, a.addr);
	assert_unresolved(fi, bare, a.addr - t.bias);
	ck_assert_ptr_null(fi->symbols);
	useraccess_user_close(&nobody);
	symbols_free(s2);

	unlink(dbg);
	unlink(bare);
	unlink(strip);
	unlink(symtab);
	unlink(dbg_only);
	remove_copy(dir, path);
	symbols_free(s);
}
END_TEST

/* ---- debug files planted by other users (root only: files of several
 * owners) ---- */

#define VICTIM   54321
#define ATTACKER 65534

/* A stripped copy of this binary at dir/prog (root's, 0755) whose
 * .gnu_debuglink names "prog.debug", and that debug file at dbg (made,
 * not yet placed anywhere the search looks unless dbg says so). */
struct stripped {
	char dir[PATH_MAX], self[PATH_MAX + 16], prog[PATH_MAX + 32], dbg[PATH_MAX + 32];
};

static void make_stripped(struct stripped *x, const struct test_module *t, const char *dbg)
{
	char link[PATH_MAX + 64];

	copy_self(t, x->dir, sizeof x->dir, x->self, sizeof x->self, 0755);
	snprintf(x->prog, sizeof x->prog, "%s/prog", x->dir);
	snprintf(x->dbg, sizeof x->dbg, "%s", dbg);
	snprintf(link, sizeof link, "--add-gnu-debuglink=%s", dbg);
	const char *keep[] = {"--only-keep-debug", x->self, dbg, NULL};
	const char *strip[] = {"--strip-all", link, x->self, x->prog, NULL};
	objcopy(keep);
	objcopy(strip);
}

static const struct frame_info *resolve_as(struct symbols *s, const struct test_module *t,
                                           const char *path, uid_t uid, const gid_t *groups,
                                           size_t ngroups, uint64_t addr)
{
	struct useraccess_user u;
	struct sym_module m = as_sym(t);
	const struct frame_info *fi;

	useraccess_user_set(&u, uid, uid, groups, ngroups);
	m.path = path;
	m.user = &u;
	fi = symbols_resolve(s, &m, addr);
	useraccess_user_close(&u);
	return fi;
}

static void assert_named_by(const struct frame_info *fi, const char *module, const char *symbols,
                            uint32_t line, const char *who)
{
	ck_assert_msg(strcmp(fi->function, "site_alpha") == 0 && fi->lineno == line &&
	                  strcmp(fi->module, module) == 0 && fi->symbols != NULL &&
	                  strcmp(fi->symbols, symbols) == 0,
	              "%s: %s:%u in %s of %s, symbols %s; want line %u from %s", who, fi->filename,
	              fi->lineno, fi->function, fi->module, fi->symbols ? fi->symbols : "(none)",
	              line, symbols);
}

static void assert_nameless(const struct frame_info *fi, const char *module, uint64_t offset,
                            const char *who)
{
	char want[PATH_MAX + 32];

	snprintf(want, sizeof want, "%s+0x%" PRIx64, module, offset);
	ck_assert_msg(strcmp(fi->function, want) == 0 && fi->lineno == 0 && fi->symbols == NULL,
	              "%s: %s:%u in %s, symbols %s; want %s and no symbols", who, fi->filename,
	              fi->lineno, fi->function, fi->symbols ? fi->symbols : "(none)", want);
}

static void remove_tree(const char *dir)
{
	char *cmd = NULL;
	ck_assert_int_ge(asprintf(&cmd, "rm -rf '%s'", dir), 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

/* The hostile review's F1: a user links another's stripped library into a
 * directory of theirs and plants a debug file of their making beside the
 * link; bound first through the link, the library's object must not give
 * every other user the planted names. The planted file serves its owner's
 * own view only. */
START_TEST(test_planted_debug_beside_link)
{
	struct site a = site_alpha();
	struct test_module t;
	struct stripped x;
	char adir[PATH_MAX + 16], alink[PATH_MAX + 32], adbg[PATH_MAX + 32];
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	snprintf(adir, sizeof adir, "%s", "/tmp/memtrace-attacker-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(adir));
	ck_assert_int_eq(chown(adir, ATTACKER, ATTACKER), 0);
	ck_assert_int_eq(chmod(adir, 0755), 0);
	snprintf(adbg, sizeof adbg, "%s/prog.debug", adir);
	make_stripped(&x, &t, adbg);
	ck_assert_int_eq(chown(adbg, ATTACKER, ATTACKER), 0);
	snprintf(alink, sizeof alink, "%s/prog", adir);
	ck_assert_int_eq(symlink(x.prog, alink), 0);

	/* The attacker's own process: their own debug file, theirs alone. */
	assert_named_by(resolve_as(s, &t, alink, ATTACKER, NULL, 0, a.addr), alink, adbg, a.line,
	                "the attacker through the link");
	/* The victim's: nothing beside the library names it. */
	assert_nameless(resolve_as(s, &t, x.prog, VICTIM, NULL, 0, a.addr), x.prog, a.addr - t.bias,
	                "the victim after the attacker");

	remove_tree(adir);
	remove_tree(x.dir);
	symbols_free(s);
}
END_TEST

/* F1's variant: the victim's own stripped program in a directory anyone
 * may write, and another user's file named as its debug link beside it. */
START_TEST(test_planted_debug_in_shared_dir)
{
	struct site a = site_alpha();
	struct test_module t;
	struct stripped x;
	char dbg[PATH_MAX + 32], dir[PATH_MAX];
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	snprintf(dir, sizeof dir, "%s", "/tmp/memtrace-dbgtmp-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dbg, sizeof dbg, "%s/prog.debug", dir);
	make_stripped(&x, &t, dbg);
	/* The program is the victim's, the debug file the attacker's, both
	 * in one sticky directory every user may write, as /tmp. */
	char prog[PATH_MAX + 32];
	snprintf(prog, sizeof prog, "%s/prog", dir);
	ck_assert_int_eq(rename(x.prog, prog), 0);
	ck_assert_int_eq(chmod(dir, 01777), 0);
	ck_assert_int_eq(chown(prog, VICTIM, VICTIM), 0);
	ck_assert_int_eq(chown(dbg, ATTACKER, ATTACKER), 0);
	assert_nameless(resolve_as(s, &t, prog, VICTIM, NULL, 0, a.addr), prog, a.addr - t.bias,
	                "the victim's program with the attacker's debug file beside it");
	/* The same file the program's owner made names it. */
	struct symbols *s2 = symbols_new(false);
	ck_assert_int_eq(chown(dbg, VICTIM, VICTIM), 0);
	assert_named_by(resolve_as(s2, &t, prog, VICTIM, NULL, 0, a.addr), prog, dbg, a.line,
	                "the victim's program with their own debug file");
	symbols_free(s2);

	remove_tree(dir);
	remove_tree(x.dir);
	symbols_free(s);
}
END_TEST

/* F4: a user who may not read another's private debug file binds the
 * module first; the owner's frames must still be named by it (the empty
 * result of the first search is not everyone's). F6: a debug file others
 * may read but a group may not is not shared with that group. */
START_TEST(test_private_debug_not_shared)
{
	struct site a = site_alpha();
	struct test_module t;
	struct stripped x;
	char ddir[PATH_MAX + 16], dbg[PATH_MAX + 32];
	gid_t victims = VICTIM, attackers = ATTACKER;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	char tmpdbg[] = "/tmp/memtrace-dbgsrc-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(tmpdbg));
	char src[PATH_MAX];
	snprintf(src, sizeof src, "%s/prog.debug", tmpdbg);
	make_stripped(&x, &t, src);
	/* dir/.debug/prog.debug, in a directory only the victim's group may
	 * search. */
	snprintf(ddir, sizeof ddir, "%s/.debug", x.dir);
	snprintf(dbg, sizeof dbg, "%s/prog.debug", ddir);
	ck_assert_int_eq(mkdir(ddir, 0750), 0);
	ck_assert_int_eq(chown(ddir, 0, VICTIM), 0);
	ck_assert_int_eq(rename(src, dbg), 0);
	ck_assert_int_eq(chmod(dbg, 0644), 0);

	assert_nameless(resolve_as(s, &t, x.prog, ATTACKER, NULL, 0, a.addr), x.prog,
	                a.addr - t.bias, "the attacker, who may not read the debug file");
	assert_named_by(resolve_as(s, &t, x.prog, VICTIM, &victims, 1, a.addr), x.prog, dbg, a.line,
	                "the victim, after the attacker");

	/* F6: readable by others, not by the attacker's group. */
	struct symbols *s2 = symbols_new(false);
	ck_assert_int_eq(chmod(ddir, 0755), 0);
	ck_assert_int_eq(chown(dbg, 0, ATTACKER), 0);
	ck_assert_int_eq(chmod(dbg, 0604), 0);
	assert_named_by(resolve_as(s2, &t, x.prog, VICTIM, &victims, 1, a.addr), x.prog, dbg,
	                a.line, "the victim (others may read it)");
	assert_nameless(resolve_as(s2, &t, x.prog, ATTACKER, &attackers, 1, a.addr), x.prog,
	                a.addr - t.bias, "the attacker, whose group may not read it");
	symbols_free(s2);

	rmdir(tmpdbg);
	remove_tree(x.dir);
	symbols_free(s);
}
END_TEST

/* F2: a module without a build-id (linked --build-id=none) whose debug
 * link names a huge (sparse) file: its CRC is not read to the end (that
 * would hold a worker for many minutes; this test's case times out after
 * 30 s). */
START_TEST(test_huge_crc_candidate)
{
	char dir[] = "/tmp/memtrace-crc-XXXXXX";
	char *src, *so, *dbg, *link, *cc;
	struct symbols *s = symbols_new(false);
	FILE *f;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_ge(asprintf(&src, "%s/m.c", dir), 0);
	ck_assert_int_ge(asprintf(&so, "%s/m.so", dir), 0);
	ck_assert_int_ge(asprintf(&dbg, "%s/m.so.debug", dir), 0);
	ck_assert_int_ge(asprintf(&link, "--add-gnu-debuglink=%s", dbg), 0);
	f = fopen(src, "w");
	ck_assert_ptr_nonnull(f);
	fputs("int f(int x) { return x + 1; }\n", f);
	fclose(f);
	ck_assert_int_ge(
	    asprintf(&cc, "cc -shared -fPIC -g0 -Wl,--build-id=none -o '%s' '%s'", so, src), 0);
	ck_assert_msg(system(cc) == 0, "%s failed", cc);
	/* The link is made to a small file (objcopy reads it for the CRC),
	 * which then grows to 1 TiB of hole. */
	fd = open(dbg, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "not empty", 9), 9); /* a CRC of 0 means none */
	const char *add[] = {link, so, NULL};
	objcopy(add);
	ck_assert_int_eq(ftruncate(fd, (off_t)1 << 40), 0);
	close(fd);
	struct sym_module m = {so, NULL, 0, 0, NULL};
	const struct frame_info *fi = symbols_resolve(s, &m, 0x1000);
	ck_assert_ptr_null(fi->symbols);
	ck_assert_str_eq(fi->module, so);
	remove_tree(dir);
	free(cc);
	free(link);
	free(dbg);
	free(so);
	free(src);
	symbols_free(s);
}
END_TEST

START_TEST(test_unreadable_file_gives_no_names)
{
	/* A 0700 file of ours, named by a process of uid 65534: its frames
	 * must not name a function or a source file, not even after a user
	 * who may read it had the same address resolved. */
	struct site a = site_alpha();
	struct test_module t;
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct useraccess_user nobody, owner;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	copy_self(&t, dir, sizeof dir, path, sizeof path, 0700);
	useraccess_user_set(&nobody, 65534, 65534, NULL, 0);
	useraccess_user_set(&owner, geteuid(), getegid(), NULL, 0);
	struct sym_module m = as_sym(&t);
	m.path = path;
	m.user = &nobody;
	assert_unresolved(symbols_resolve(s, &m, a.addr), path, a.addr - t.bias);
	m.user = &owner;
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	ck_assert_str_eq(fi->function, "site_alpha");
	ck_assert_uint_eq(fi->lineno, a.line);
	m.user = &nobody;
	assert_unresolved(symbols_resolve(s, &m, a.addr), path, a.addr - t.bias);
	useraccess_user_close(&nobody);
	useraccess_user_close(&owner);
	remove_copy(dir, path);
	symbols_free(s);
}
END_TEST

START_TEST(test_readable_file_shared_between_users)
{
	/* Everybody may read it: both users get its names, from one open
	 * object, one frame. */
	struct site a = site_alpha();
	struct test_module t;
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct useraccess_user u1, u2;
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	copy_self(&t, dir, sizeof dir, path, sizeof path, 0755);
	useraccess_user_set(&u1, 65534, 65534, NULL, 0);
	useraccess_user_set(&u2, 54321, 54321, NULL, 0);
	struct sym_module m = as_sym(&t);
	m.path = path;
	m.user = &u1;
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	ck_assert_str_eq(fi->function, "site_alpha");
	m.user = &u2;
	ck_assert_ptr_eq(symbols_resolve(s, &m, a.addr), fi);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.objects, 1);
	ck_assert_uint_eq(st.frames, 1);
	useraccess_user_close(&u1);
	useraccess_user_close(&u2);
	remove_copy(dir, path);
	symbols_free(s);
}
END_TEST

/* Objects count too (the hostile review's symcache_objects): a uid past
 * its share that names thousands of modules nobody can use, or of files
 * that are not ELF, gets objects of its own for the capture, freed at
 * their release, and the cache neither grows nor starts afresh for it;
 * the frames still name each module. A real file past the share is still
 * resolved exactly. */
START_TEST(test_bound_objects_per_uid)
{
	struct site a = site_alpha();
	struct test_module t;
	struct useraccess_user hostile;
	struct sym_scratch sc;
	struct symbols_stats st;
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	copy_self(&t, dir, sizeof dir, path, sizeof path, 0755);
	useraccess_user_set(&hostile, 65534, 65534, NULL, 0);
	symbols_scratch_init(&sc, 65534);
	symbols_set_bounds(s, 256 * 1024, 64 * 1024);
	for (int i = 0; i < 3000; i++) {
		char name[PATH_MAX + 64];
		/* Missing paths, then empty regular files (usable looking, not
		 * ELF), each new. */
		if (i % 2 == 0) {
			snprintf(name, sizeof name, "/nonexistent/memtrace-check/%0200d/lib.so", i);
		} else {
			snprintf(name, sizeof name, "%s/empty%d", dir, i);
			int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			ck_assert_int_ge(fd, 0);
			close(fd);
		}
		struct sym_module m = {name, NULL, 0, 0, &hostile};
		struct sym_object *o = symbols_bind(s, &m);
		const struct frame_info *fi = symbols_resolve_in(s, o, 0x40, &sc);
		char want[PATH_MAX + 96];
		snprintf(want, sizeof want, "%s+0x40", name);
		ck_assert_str_eq(fi->function, want);
		symbols_release(s, o);
		if (i % 2 == 1)
			unlink(name);
	}
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.retired, 0);
	ck_assert_uint_le(symbols_uid_bytes(s, 65534), 64 * 1024 + 4096);
	ck_assert_uint_le(st.bytes, 64 * 1024 + 4096);
	ck_assert_uint_gt(st.uncached, 1000);
	/* Past its share, a file it may read still gives exact frames. */
	struct sym_module m = as_sym(&t);
	m.path = path;
	m.user = &hostile;
	struct sym_object *o = symbols_bind(s, &m);
	const struct frame_info *fi = symbols_resolve_in(s, o, a.addr - t.bias, &sc);
	ck_assert_str_eq(fi->function, "site_alpha");
	ck_assert_uint_eq(fi->lineno, a.line);
	symbols_release(s, o);
	symbols_scratch_close(&sc);
	useraccess_user_close(&hostile);
	remove_copy(dir, path);
	symbols_free(s);
}
END_TEST

START_TEST(test_fifo_module_does_not_block)
{
	/* Nobody ever writes to this FIFO: opening it for reading would wait
	 * forever. The module is refused at once instead. */
	static const uint8_t id[] = {1, 2, 3, 4};
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct symbols *s = symbols_new(false);

	snprintf(dir, sizeof dir, "%s/memtrace-symbols-XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0666), 0);
	struct sym_module m = {path, id, sizeof(id), 0x400000, NULL};
	assert_unresolved(symbols_resolve(s, &m, 0x401234), path, 0x1234);
	struct sym_module dev = {"/dev/zero", id, sizeof(id), 0x400000, NULL};
	assert_unresolved(symbols_resolve(s, &dev, 0x401234), "/dev/zero", 0x1234);
	remove_copy(dir, path);
	symbols_free(s);
}
END_TEST

/* ---- cache behaviour ---- */

START_TEST(test_unknown)
{
	struct symbols *s = symbols_new(false);
	const struct frame_info *fi = symbols_resolve(s, NULL, 0xdeadbeef);

	ck_assert_str_eq(fi->function, "[unknown]+0xdeadbeef");
	ck_assert_str_eq(fi->filename, "[unknown]+0xdeadbeef");
	ck_assert_uint_eq(fi->lineno, 0);
	ck_assert_str_eq(fi->module, "[unknown]");
	ck_assert_ptr_eq(symbols_resolve(s, NULL, 0xdeadbeef), fi);
	ck_assert_ptr_ne(symbols_resolve(s, NULL, 0xdeadbef0), fi);
	symbols_free(s);
}
END_TEST

START_TEST(test_cache_hit_same_pointer)
{
	struct site a = site_alpha();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	struct sym_module m = as_sym(&t);
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	ck_assert_ptr_eq(symbols_resolve(s, &m, a.addr), fi);
	/* Strings are interned: another line of the same file shares its name. */
	struct site p[2];
	site_pair(p);
	ck_assert_ptr_eq(symbols_resolve(s, &m, p[0].addr)->filename, fi->filename);
	ck_assert_ptr_eq(symbols_resolve(s, &m, p[0].addr)->module, fi->module);
	symbols_free(s);
}
END_TEST

START_TEST(test_lookup_before_and_after)
{
	struct site a = site_alpha();
	struct test_module t;
	struct symbols *s = symbols_new(false);

	module_of((void *)(uintptr_t)a.addr, &t);
	struct sym_module m = as_sym(&t);
	ck_assert_ptr_null(lookup(s, &m, a.addr));
	const struct frame_info *fi = symbols_resolve(s, &m, a.addr);
	ck_assert_ptr_eq(lookup(s, &m, a.addr), fi);
	/* A neighbour in the same, now open, object is still not cached. */
	ck_assert_ptr_null(lookup(s, &m, a.addr + 1));
	symbols_free(s);
}
END_TEST

START_TEST(test_stats)
{
	static const uint8_t id[] = {1, 2, 3};
	struct sym_module gone = {"/nonexistent/memtrace-check/a.out", id, sizeof(id), 0, NULL};
	struct site p[2];
	struct test_module t;
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	site_pair(p);
	module_of((void *)(uintptr_t)p[0].addr, &t);
	struct sym_module m = as_sym(&t);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.objects + st.frames + st.failures, 0);
	symbols_resolve(s, &m, p[0].addr);
	symbols_resolve(s, &m, p[1].addr);
	symbols_resolve(s, &m, p[1].addr);
	symbols_resolve(s, &gone, 0x100);
	symbols_resolve(s, &gone, 0x100);
	symbols_resolve(s, NULL, 0x42);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.objects, 1);
	ck_assert_uint_eq(st.failures, 1);
	ck_assert_uint_eq(st.frames, 4);
	symbols_free(s);
}
END_TEST

/* ---- bounds: the cache is retired past its total, and a uid past its
 * share gets its frames in its scratch ---- */

/* The whole inlined chain of fi equals the chain that ground truth says
 * c.addr[k] has (chain_leaf inlined through three levels). */
static void assert_chain(const struct frame_info *fi, const struct test_module *t,
                         const struct chain *c, int k)
{
	static const char *const callers[] = {"chain_middle", "chain_outer", "chain_root"};
	const struct frame_info *f = fi->caller;

	assert_site(fi, t, "chain_leaf", c->leaf_line[k]);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_msg(f != NULL, "chain ends after %zu callers", i);
		assert_site(f, t, callers[i], c->line[i]);
		f = f->caller;
	}
	ck_assert_ptr_null(f);
}

START_TEST(test_bound_total_retires)
{
	struct chain c;
	struct test_module t;
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	chain_root(&c);
	module_of((void *)(uintptr_t)c.addr[0], &t);
	struct sym_module m = as_sym(&t);
	symbols_set_bounds(s, 64 * 1024, 0);
	struct sym_object *o = symbols_bind(s, &m);
	const struct frame_info *first = symbols_resolve_in(s, o, c.addr[0] - m.bias, NULL);
	/* Distinct addresses (unresolved ones past the file's end cost a
	 * frame and two strings each) until the cache passes its total. */
	uint64_t far = 0x7000000000ULL;
	for (uint64_t i = 0; i < 2000; i++)
		symbols_resolve_in(s, o, far + i, NULL);
	symbols_get_stats(s, &st);
	ck_assert_uint_ge(st.retired, 1);
	ck_assert_uint_lt(st.frames, 2000); /* the new generation holds only what came after */
	/* What was handed out from the retired generation is intact while
	 * its object is bound (ASan would see a use after free). */
	assert_chain(first, &t, &c, 0);
	symbols_release(s, o);
	/* Resolved again in the new generation: the same answer. */
	o = symbols_bind(s, &m);
	assert_chain(symbols_resolve_in(s, o, c.addr[0] - m.bias, NULL), &t, &c, 0);
	assert_chain(symbols_resolve_in(s, o, c.addr[1] - m.bias, NULL), &t, &c, 1);
	symbols_release(s, o);
	/* Every retired generation was freed once released: what is held is
	 * the current one, under the total. */
	symbols_get_stats(s, &st);
	ck_assert_uint_le(st.bytes, 64 * 1024);
	symbols_free(s);
}
END_TEST

START_TEST(test_bound_per_uid_share)
{
	struct chain c;
	struct test_module t;
	struct symbols_stats st, before;
	struct sym_scratch hostile, other;
	struct symbols *s = symbols_new(false);
	const uint64_t far = 0x7000000000ULL;

	chain_root(&c);
	module_of((void *)(uintptr_t)c.addr[0], &t);
	struct sym_module m = as_sym(&t);
	symbols_set_bounds(s, 0, 16 * 1024);
	symbols_scratch_init(&hostile, 1234);
	symbols_scratch_init(&other, 5678);
	struct sym_object *o = symbols_bind(s, &m);
	/* uid 1234 brings distinct addresses until past its share. */
	for (uint64_t i = 0; i < 1000; i++) {
		const struct frame_info *fi = symbols_resolve_in(s, o, far + i, &hostile);
		char want[sizeof(t.path) + 32];
		snprintf(want, sizeof(want), "%s+0x%" PRIx64, t.path, far + i);
		ck_assert_str_eq(fi->function, want); /* exact, cached or not */
	}
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.uids_full, 1);
	ck_assert_uint_gt(st.uncached, 0);
	ck_assert_uint_eq(st.frames + st.uncached, 1000);
	ck_assert_uint_le(symbols_uid_bytes(s, 1234), 16 * 1024 + 1024);
	/* Past its share, its real frames are exact too, inlined chain and
	 * all, and stay out of the cache. */
	before = st;
	assert_chain(symbols_resolve_in(s, o, c.addr[0] - m.bias, &hostile), &t, &c, 0);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.frames, before.frames);
	ck_assert_uint_eq(st.uncached, before.uncached + 1);
	/* Another uid still has the cache: its frame is kept. */
	const struct frame_info *fi = symbols_resolve_in(s, o, c.addr[1] - m.bias, &other);
	assert_chain(fi, &t, &c, 1);
	ck_assert_ptr_eq(symbols_lookup(s, o, c.addr[1] - m.bias), fi);
	symbols_get_stats(s, &st);
	ck_assert_uint_eq(st.frames, before.frames + 1);
	/* And what it cached, the hostile uid reads from the cache. */
	ck_assert_ptr_eq(symbols_resolve_in(s, o, c.addr[1] - m.bias, &hostile), fi);
	symbols_release(s, o);
	symbols_scratch_close(&hostile);
	symbols_scratch_close(&other);
	symbols_free(s);
}
END_TEST

START_TEST(test_bound_unknown_and_names)
{
	struct sym_scratch sc;
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	symbols_set_bounds(s, 32 * 1024, 8 * 1024);
	symbols_scratch_init(&sc, 4321);
	/* Addresses in no module and modules no one can read are bounded the
	 * same way. */
	for (int r = 0; r < 50; r++) {
		char path[64];
		snprintf(path, sizeof(path), "/nonexistent/memtrace-check/lib%d.so", r);
		struct sym_module gone = {path, NULL, 0, 0, NULL};
		struct sym_object *o = symbols_bind(s, &gone);
		struct sym_object *u = symbols_bind_unknown(s);
		for (uint64_t i = 0; i < 100; i++) {
			char want[96];
			const struct frame_info *fi =
			    symbols_resolve_in(s, u, 0x10000 + (uint64_t)r * 100 + i, &sc);
			snprintf(want, sizeof(want), "[unknown]+0x%" PRIx64,
			         0x10000 + (uint64_t)r * 100 + i);
			ck_assert_str_eq(fi->function, want);
			fi = symbols_resolve_in(s, o, i, &sc);
			snprintf(want, sizeof(want), "%s+0x%" PRIx64, path, i);
			ck_assert_str_eq(fi->function, want);
		}
		symbols_release(s, u);
		symbols_release(s, o);
	}
	symbols_get_stats(s, &st);
	ck_assert_uint_gt(st.uncached, 0);
	ck_assert_uint_le(st.bytes, 32 * 1024 + 8 * 1024);
	symbols_scratch_close(&sc);
	symbols_free(s);
}
END_TEST

START_TEST(test_free_null)
{
	symbols_free(NULL);
}
END_TEST

/* ---- threads ---- */

#define N_THREADS 4
#define N_ROUNDS  200

struct work {
	struct sym_module mods[4];
	uint64_t addrs[4];
	size_t n;
};

struct worker {
	pthread_t tid;
	size_t index;
	struct symbols *s;
	const struct work *w;
	pthread_barrier_t *start;
	const struct frame_info *got[4];
	bool consistent;
};

static void *worker_main(void *arg)
{
	struct worker *k = arg;

	k->consistent = true;
	pthread_barrier_wait(k->start);
	for (int r = 0; r < N_ROUNDS; r++) {
		/* Each thread starts at a different item so first resolutions
		 * of every item race with each other. */
		for (size_t j = 0; j < k->w->n; j++) {
			size_t i = (j + (size_t)r + k->index) % k->w->n;
			const struct frame_info *fi =
			    symbols_resolve(k->s, &k->w->mods[i], k->w->addrs[i]);
			const struct frame_info *lk = lookup(k->s, &k->w->mods[i], k->w->addrs[i]);
			if (k->got[i] == NULL)
				k->got[i] = fi;
			if (k->got[i] != fi || lk != fi)
				k->consistent = false;
		}
		if (symbols_resolve(k->s, NULL, 0x1000 + (uint64_t)r) == NULL)
			k->consistent = false;
	}
	return NULL;
}

/* Threads binding, resolving and releasing while a tiny total retires the
 * cache over and over: every answer is exact (and ASan sees no frame used
 * after its generation was freed). */
struct retire_worker {
	pthread_t tid;
	struct symbols *s;
	const struct sym_module *m;
	const struct chain *c;
	const struct test_module *t;
	uid_t uid;
	int bad;
};

static void *retire_main(void *arg)
{
	struct retire_worker *w = arg;
	struct sym_scratch sc;

	symbols_scratch_init(&sc, w->uid);
	for (int r = 0; r < 100; r++) {
		struct sym_object *o = symbols_bind(w->s, w->m);
		const struct frame_info *keep =
		    symbols_resolve_in(w->s, o, w->c->addr[0] - w->m->bias, NULL);
		for (uint64_t i = 0; i < 50; i++) {
			const struct frame_info *fi = symbols_resolve_in(
			    w->s, o, UINT64_C(0x7000000000) + (uint64_t)r * 50 + i, &sc);
			char want[sizeof(w->t->path) + 32];
			snprintf(want, sizeof(want), "%s+0x%" PRIx64, w->t->path,
			         UINT64_C(0x7000000000) + (uint64_t)r * 50 + i);
			if (strcmp(fi->function, want) != 0)
				w->bad++;
		}
		/* Still intact after the cache may have been retired. */
		if (strcmp(keep->function, "chain_leaf") != 0 || keep->caller == NULL ||
		    strcmp(keep->caller->function, "chain_middle") != 0)
			w->bad++;
		symbols_release(w->s, o);
	}
	symbols_scratch_close(&sc);
	return NULL;
}

START_TEST(test_bound_threads)
{
	struct chain c;
	struct test_module t;
	struct retire_worker w[N_THREADS];
	struct symbols_stats st;
	struct symbols *s = symbols_new(false);

	chain_root(&c);
	module_of((void *)(uintptr_t)c.addr[0], &t);
	struct sym_module m = as_sym(&t);
	symbols_set_bounds(s, 16 * 1024, 8 * 1024);
	for (int i = 0; i < N_THREADS; i++) {
		w[i] = (struct retire_worker){
		    .s = s, .m = &m, .c = &c, .t = &t, .uid = (uid_t)(1000 + i % 2)};
		ck_assert_int_eq(pthread_create(&w[i].tid, NULL, retire_main, &w[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++) {
		pthread_join(w[i].tid, NULL);
		ck_assert_int_eq(w[i].bad, 0);
	}
	symbols_get_stats(s, &st);
	ck_assert_uint_gt(st.retired, 0);
	ck_assert_uint_le(st.bytes, 16 * 1024 + 8 * 1024);
	symbols_free(s);
}
END_TEST

START_TEST(test_threads)
{
	static const uint8_t id[] = {5, 5, 5, 5};
	struct site a = site_alpha(), p[2];
	uintptr_t lib = library_function("libc.so.6", "malloc") + 1;
	struct test_module self, libc;
	struct work w;
	struct worker k[N_THREADS];
	pthread_barrier_t start;
	struct symbols *s = symbols_new(false);

	site_pair(p);
	module_of((void *)(uintptr_t)a.addr, &self);
	module_of((void *)lib, &libc);
	w.n = 4;
	w.mods[0] = as_sym(&self);
	w.addrs[0] = a.addr;
	w.mods[1] = as_sym(&self);
	w.addrs[1] = p[1].addr;
	w.mods[2] = as_sym(&libc);
	w.addrs[2] = lib;
	w.mods[3] =
	    (struct sym_module){"/nonexistent/memtrace-check/x.so", id, sizeof(id), 0, NULL};
	w.addrs[3] = 0x777;

	ck_assert_int_eq(pthread_barrier_init(&start, NULL, N_THREADS), 0);
	memset(k, 0, sizeof(k));
	for (int i = 0; i < N_THREADS; i++) {
		k[i].index = (size_t)i;
		k[i].s = s;
		k[i].w = &w;
		k[i].start = &start;
		ck_assert_int_eq(pthread_create(&k[i].tid, NULL, worker_main, &k[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		ck_assert_int_eq(pthread_join(k[i].tid, NULL), 0);
	pthread_barrier_destroy(&start);

	for (int i = 0; i < N_THREADS; i++) {
		ck_assert_msg(k[i].consistent, "thread %d saw two answers for one address", i);
		for (size_t j = 0; j < w.n; j++)
			ck_assert_ptr_eq(k[i].got[j], k[0].got[j]);
	}
	assert_site(k[0].got[0], &self, "site_alpha", a.line);
	assert_site(k[0].got[1], &self, "site_pair", p[1].line);
	ck_assert_str_eq(k[0].got[2]->module, libc.path);
	assert_unresolved(k[0].got[3], "/nonexistent/memtrace-check/x.so", 0x777);
	symbols_free(s);
}
END_TEST

/* ---- debuginfod stays off unless asked for ---- */

/* A fake debuginfod server: a loopback listener that accepts and at once
 * closes every connection (so a client fails fast), counting them. */
struct fake_server {
	int fd;
	int port;
	int connections;
	bool stop;
	pthread_t tid;
	pthread_mutex_t mu;
};

static void *fake_server_main(void *arg)
{
	struct fake_server *f = arg;

	for (;;) {
		int c = accept(f->fd, NULL, NULL);
		pthread_mutex_lock(&f->mu);
		bool stop = f->stop;
		if (c >= 0 && !stop)
			f->connections++;
		pthread_mutex_unlock(&f->mu);
		if (c >= 0)
			close(c);
		if (stop || (c < 0 && errno != EINTR && errno != ECONNABORTED))
			return NULL;
	}
}

static void fake_server_start(struct fake_server *f)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(f->fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->fd, 16), 0);
	ck_assert_int_eq(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
	f->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&f->tid, NULL, fake_server_main, f), 0);
}

static int fake_server_stop(struct fake_server *f)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int n, wake;

	pthread_mutex_lock(&f->mu);
	f->stop = true;
	n = f->connections;
	pthread_mutex_unlock(&f->mu);
	/* Wake the blocked accept with one last connection. */
	getsockname(f->fd, (struct sockaddr *)&sa, &len);
	wake = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(wake, (struct sockaddr *)&sa, len), 0);
	pthread_join(f->tid, NULL);
	close(wake);
	close(f->fd);
	pthread_mutex_destroy(&f->mu);
	return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Resolves an address of libelf (always loaded with libdw; Debian ships no
 * debug file for it by default) with DEBUGINFOD_URLS pointing at the fake
 * server, and returns how many connections the server saw. The cache
 * directory is a fresh temporary one, so the client has no negative cache
 * entries to answer from. */
static int debuginfod_connections(bool debuginfod)
{
	char cache[] = "/tmp/memtrace-check-debuginfod-XXXXXX";
	char url[64], function[256];
	struct fake_server f;
	struct test_module t;
	uintptr_t addr = library_function("libelf.so.1", "elf_version") + 1;
	struct symbols *s;
	int n;

	module_of((void *)addr, &t);
	struct sym_module m = as_sym(&t);
	ck_assert_ptr_nonnull(mkdtemp(cache));
	fake_server_start(&f);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
	setenv("DEBUGINFOD_URLS", url, 1);
	setenv("DEBUGINFOD_CACHE_PATH", cache, 1);
	setenv("DEBUGINFOD_TIMEOUT", "2", 1);
	setenv("DEBUGINFOD_RETRY_LIMIT", "0", 1);

	s = symbols_new(debuginfod);
	snprintf(function, sizeof(function), "%s", symbols_resolve(s, &m, addr)->function);
	symbols_free(s);

	unsetenv("DEBUGINFOD_URLS");
	unsetenv("DEBUGINFOD_CACHE_PATH");
	unsetenv("DEBUGINFOD_TIMEOUT");
	unsetenv("DEBUGINFOD_RETRY_LIMIT");
	nftw(cache, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	n = fake_server_stop(&f);
	ck_assert_str_eq(function, "elf_version");
	return n;
}

START_TEST(test_debuginfod_off)
{
	ck_assert_int_eq(debuginfod_connections(false), 0);
}
END_TEST

START_TEST(test_debuginfod_on)
{
	/* The opt-in really asks the server, which also shows the test above
	 * would notice a query. Needs libdw built with debuginfod support. */
	void *h = dlopen("libdebuginfod.so.1", RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL)
		return;
	dlclose(h);
	ck_assert_int_gt(debuginfod_connections(true), 0);
}
END_TEST

Suite *symbols_suite(void)
{
	Suite *s = suite_create("symbols");
	TCase *tc;

	tc = tcase_create("self");
	tcase_add_test(tc, test_self_function_and_line);
	tcase_add_test(tc, test_self_two_lines_one_function);
	tcase_add_test(tc, test_self_inlined);
	tcase_add_test(tc, test_self_inline_chain);
	tcase_add_test(tc, test_self_other_bias_same_frame);
	suite_add_tcase(s, tc);

	tc = tcase_create("libraries");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_shared_library);
	tcase_add_test(tc, test_cxx_demangled);
	tcase_add_test(tc, test_separate_debug_file);
	tcase_add_test(tc, test_huge_crc_candidate);
	suite_add_tcase(s, tc);

	/* Files of several owners: root only, as CI runs. */
	tc = tcase_create("planted");
	tcase_set_timeout(tc, 30);
	if (geteuid() == 0) {
		tcase_add_test(tc, test_planted_debug_beside_link);
		tcase_add_test(tc, test_planted_debug_in_shared_dir);
		tcase_add_test(tc, test_private_debug_not_shared);
	} else {
		printf("check_symbols: not root: the planted debug file tests are NOT registered; "
		       "they neither ran nor passed\n");
	}
	suite_add_tcase(s, tc);

	tc = tcase_create("untrusted");
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_wrong_build_id);
	tcase_add_test(tc, test_build_id_not_reported);
	tcase_add_test(tc, test_empty_path);
	tcase_add_test(tc, test_relative_path);
	tcase_add_test(tc, test_address_outside_file);
	tcase_add_test(tc, test_unreadable_file_gives_no_names);
	tcase_add_test(tc, test_readable_file_shared_between_users);
	tcase_add_test(tc, test_fifo_module_does_not_block);
	tcase_add_test(tc, test_bound_objects_per_uid);
	suite_add_tcase(s, tc);

	tc = tcase_create("cache");
	tcase_add_test(tc, test_unknown);
	tcase_add_test(tc, test_cache_hit_same_pointer);
	tcase_add_test(tc, test_lookup_before_and_after);
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_free_null);
	tcase_add_test(tc, test_bound_total_retires);
	tcase_add_test(tc, test_bound_per_uid_share);
	tcase_add_test(tc, test_bound_unknown_and_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_bound_threads);
	suite_add_tcase(s, tc);

	tc = tcase_create("debuginfod");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_debuginfod_off);
	tcase_add_test(tc, test_debuginfod_on);
	suite_add_tcase(s, tc);

	return s;
}
