/*
 * e2e_hostile.c - end-to-end tests of what another local user can do to
 * memtraced, and of the bad input that once broke its answers.
 *
 * Every attack runs as a second, unprivileged user when the tests run as
 * root (CI): the harness makes the account memtrace-attacker for it (or
 * falls back to uid 65534). The attacker speaks to the real daemon the way
 * any local user can: it forges an agent (a HELLO with a shared region it
 * filled itself, then MODULE frames naming whatever it likes, then a WAKE),
 * runs memtracectl, makes directories where it may. What the test expects
 * comes from what it set up (the modes of the files it made, the bytes of
 * the arguments it passed, the sizes it allocated), never from memtrace.
 *
 * Behaviours pinned, by test:
 *  fifo_module_does_not_hang     a module path that is a FIFO nobody writes
 *                                to: root's top and snapshot of that process
 *                                answer, root's own traced program is still
 *                                answered exactly, SIGTERM stops the daemon
 *  unreadable_binary_not_disclosed  a 0700 root binary named by the
 *                                attacker's agent: no function name or source
 *                                file of it in any answer (live or stored);
 *                                the same forged agent run by root gets them
 *                                (the check is not vacuous)
 *  precreated_dirs_refused       a runtime directory made in advance by the
 *                                attacker (open to all, or a link of theirs),
 *                                one writable by others, a state directory of
 *                                theirs: memtraced refuses to start, says why
 *                                naming it, binds nothing there; a fresh name
 *                                is made private and used
 *  client_refuses_foreign_daemon  root's memtracectl pointed at the attacker's
 *                                own memtraced refuses to talk to it
 *                                (untrusted_daemon); its owner's client talks
 *  client_refuses_squatted_dir  /tmp/memtrace-UID made by the attacker for a
 *                                user without XDG_RUNTIME_DIR, its
 *                                control.sock a link to a socket of root's
 *                                that never answers: that user's client
 *                                refuses the directory, sends nothing
 *  runtime_dir_removed_is_rebound  the runtime directory removed under a
 *                                running daemon: it says so, makes it again
 *                                and listens again (clients and new programs)
 *  store_errors_are_clear        a corrupted database, one memtraced may not
 *                                write: the log and the answers say so, naming
 *                                the file; `snapshots` is a store_error, not []
 *  store_files_are_private       the database, its journal and `snapshot -o`
 *                                files are 0600
 *  utf8_in_exe_and_argv          a program named and run with bytes that are
 *                                not UTF-8: every answer and the snapshot file
 *                                are valid UTF-8, those bytes shown as U+FFFD
 *  exact_64bit_counters          sizes past 2^53 (a forged agent's): stats,
 *                                list, top and a snapshot file print them as
 *                                their exact digits, never as doubles
 *  block_mode_stopped_daemon     lossless mode, daemon SIGSTOPped mid-run: the
 *                                program finishes (MEMTRACE_BLOCK_TIMEOUT=1),
 *                                says so once; allocations + lost_allocations
 *                                and frees + unknown + lost_frees are its own
 *                                counts exactly; the session is truncated
 *  drop_mode_counts_exactly      the same sums in drop mode, for malloc and
 *                                realloc(NULL, n), stopped daemon and running
 *  connect_bounded_when_backlog_full  daemon stopped, agent.sock's backlog
 *                                full: a program starts (untraced, says so)
 *  wake_flood_deferred           a forged agent of the attacker's that claims
 *                                all 1024 rings and sends a WAKE each
 *                                millisecond, two records apart: its WAKEs are
 *                                mostly deferred to the timer (stats counts
 *                                them), which reads every record all the same
 *                                (before, each WAKE had the daemon look at all
 *                                1024 rings with two system calls each: 8 such
 *                                agents slowed another user's traced program
 *                                about 5x)
 *  agent_refuses_foreign_socket  agent.sock served by the attacker's listener:
 *                                root's program runs untraced and says why,
 *                                the listener gets no byte and no descriptor
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "proto.h"
#include "shm.h"

static struct h_daemon D; /* this test's daemon */

/* A daemon whose runtime directory other users may reach (0755), as the
 * system daemon's /run/memtrace is. */
static void setup(void)
{
	h_daemon_dirs(&D, 0755);
	h_daemon_spawn(&D, NULL);
}

static void teardown(void)
{
	h_daemon_cleanup(&D);
}

/* ---------------------------------------------------- the test binary */

/* A function only this binary has, with a name and a source file to look
 * for in answers. */
__attribute__((noinline)) int hostile_secret_function(int x);
__attribute__((noinline)) int hostile_secret_function(int x)
{
	/* Long enough that the addresses the forged stacks use are inside. */
	volatile int acc = x;
	for (int i = 0; i < x; i++)
		acc = acc * 3 + i;
	__asm__ volatile("" ::: "memory");
	return acc;
}

/* Another site, on other lines. */
__attribute__((noinline)) int hostile_other_function(int x);
__attribute__((noinline)) int hostile_other_function(int x)
{
	volatile int acc = x;
	for (int i = 0; i < x; i++)
		acc = acc * 5 + i;
	__asm__ volatile("" ::: "memory");
	return acc;
}

/* This program as the agent would report it. */
struct self_module {
	uint64_t bias, lo, hi;
	uint8_t build_id[64];
	uint32_t build_id_len;
	char path[4096];
};

static int self_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct self_module *m = data;

	(void)size;
	m->bias = info->dlpi_addr;
	m->lo = UINT64_MAX;
	m->hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD) {
			uint64_t lo = info->dlpi_addr + ph->p_vaddr;
			if (lo < m->lo)
				m->lo = lo;
			if (lo + ph->p_memsz > m->hi)
				m->hi = lo + ph->p_memsz;
		}
		if (ph->p_type == PT_NOTE && m->build_id_len == 0) {
			const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
			const char *end = p + ph->p_memsz;
			while (p + sizeof(ElfW(Nhdr)) <= end) {
				const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
				const char *name = p + sizeof(*n);
				const char *desc = name + ((n->n_namesz + 3) & ~3u);
				if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
				    memcmp(name, "GNU", 4) == 0 &&
				    n->n_descsz <= sizeof(m->build_id)) {
					memcpy(m->build_id, desc, n->n_descsz);
					m->build_id_len = n->n_descsz;
					break;
				}
				p = desc + ((n->n_descsz + 3) & ~3u);
			}
		}
	}
	return 1; /* the first object is the program itself */
}

static void self_module(struct self_module *m)
{
	memset(m, 0, sizeof *m);
	dl_iterate_phdr(self_cb, m);
	ssize_t n = readlink("/proc/self/exe", m->path, sizeof m->path - 1);
	ck_assert_int_gt(n, 0);
	m->path[n] = '\0';
}

/* ------------------------------------------------------ a forged agent */

#define FORGE_MAX_FRAMES 4
#define FORGE_MAX_ALLOCS 4

struct forge_alloc {
	uint64_t size;
	uint32_t nframes;
	uint64_t frames[FORGE_MAX_FRAMES];
};

struct forge {
	const char *exe;
	const char *cmdline; /* NUL-separated */
	size_t cmdline_len;
	struct proto_module mod;
	struct forge_alloc allocs[FORGE_MAX_ALLOCS];
	int nallocs;
	bool as_attacker; /* else as ourselves */
	/* filled by forge_start */
	pid_t pid;
	int hold; /* closing it ends the forged process */
};

/* The shared region of a forged process: one ring holding one allocation
 * per entry of f->allocs, each on a stack of its own. */
static int forge_region(const struct forge *f)
{
	int fd = h_region_empty();
	uint64_t arena = 0;

	if (fd < 0)
		return -1;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	struct shm_header *h = (struct shm_header *)map;
	struct shm_ring *r = (struct shm_ring *)(map + SHM_OFF_RING(0));
	for (int i = 0; i < f->nallocs; i++) {
		const struct forge_alloc *a = &f->allocs[i];
		uint32_t id = (uint32_t)i + 1;
		struct shm_stack *e = (struct shm_stack *)(map + SHM_OFF_ARENA + arena);
		e->hash = id;
		e->nframes = a->nframes;
		memcpy(e + 1, a->frames, a->nframes * sizeof(uint64_t));
		*(uint64_t *)(map + SHM_OFF_OFFSETS + 8 * (uint64_t)id) = arena;
		map[SHM_OFF_STATES + id] = SHM_STACK_READY;
		arena += sizeof(*e) + 8 * (uint64_t)a->nframes;
		uint64_t seq = (uint64_t)i + 1;
		r->ev[i] = (struct shm_ev){seq << PROTO_EV_KIND_BITS | PROTO_EV_ALLOC,
		                           0x10000 + 0x100 * (uint64_t)i, a->size, id, 0};
	}
	atomic_store(&r->pending, UINT64_MAX);
	atomic_store(&r->head, (uint64_t)f->nallocs);
	atomic_store(&h->seq, (uint64_t)f->nallocs + 1);
	atomic_store(&h->nrings, 1);
	munmap(map, SHM_SIZE);
	return fd;
}

static int send_with_fd(int sock, const void *buf, size_t n, int fd)
{
	return h_send_fds(sock, buf, n, &fd, 1);
}

/* The forged process, in a forked child: connect, say hello with the
 * region, name the module, wake the daemon, then wait for the test to
 * close `hold`. Exit status 0, or which step failed. */
static int forge_child(const void *arg, int hold, int ready)
{
	static uint8_t buf[PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD];
	const struct forge *f = arg;
	char *sock = h_strf("%s/agent.sock", D.runtime);
	ssize_t n;
	char c;

	if (f->as_attacker && h_become_attacker() < 0)
		return 2;
	int fd = h_connect(sock);
	int region = forge_region(f);
	if (fd < 0 || region < 0)
		return 3;
	size_t len = h_hello_frame(buf, sizeof buf, f->exe, f->cmdline, f->cmdline_len);
	if (len == 0 || send_with_fd(fd, buf, len, region) < 0)
		return 4;
	close(region);
	if (f->mod.path != NULL) {
		n = proto_module_encode(buf, sizeof buf, &f->mod);
		if (n < 0 || h_send_all(fd, buf, (size_t)n) < 0)
			return 5;
	}
	n = proto_empty_encode(buf, sizeof buf, PROTO_WAKE);
	if (n < 0 || h_send_all(fd, buf, (size_t)n) < 0)
		return 6;
	if (write(ready, "r", 1) != 1)
		return 7;
	while (read(hold, &c, 1) > 0)
		;
	return 0;
}

/* Runs body(arg, hold, ready) in a forked child, its exit status the
 * child's, and returns once it wrote to `ready`: its pid, and in *hold the
 * pipe whose closing (forge_end) tells it to end. */
static pid_t forged_spawn(int (*body)(const void *arg, int hold, int ready), const void *arg,
                          int *hold_out)
{
	int hold[2], ready[2];
	char c;

	ck_assert_int_eq(pipe2(hold, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Nothing of the test's: another forged process's pipe kept
		 * open here would keep that one alive. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != hold[0] && fd != ready[1])
				close(fd);
		_exit(body(arg, hold[0], ready[1]));
	}
	close(hold[0]);
	close(ready[1]);
	*hold_out = hold[1];
	ssize_t r = read(ready[0], &c, 1);
	close(ready[0]);
	if (r != 1) {
		int st = 0;
		waitpid(pid, &st, 0);
		ck_abort_msg("the forged agent failed: %s", h_status_str(st));
	}
	return pid;
}

/* Starts the forged process and waits until the daemon lists it. */
static void forge_start(struct forge *f)
{
	f->pid = forged_spawn(forge_child, f, &f->hold);
	/* Listed once HELLO is in; the allocations once the WAKE is read. */
	long long deadline = h_now_ms() + H_POLL_MS;
	const char *args[] = {"list", NULL};
	for (;;) {
		struct h_ctl l;
		h_ctl_ok(&D, H_NOUID, &l, args);
		bool found = h_list_find(l.json, f->pid) != NULL;
		h_ctl_free(&l);
		if (found)
			break;
		ck_assert_msg(h_now_ms() < deadline, "the forged process %ld is not listed",
		              (long)f->pid);
		h_sleep_ms(20);
	}
}

static void forge_end(struct forge *f)
{
	int st;

	if (f->pid <= 0)
		return;
	close(f->hold);
	ck_assert_int_eq(waitpid(f->pid, &st, 0), f->pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forged agent: %s", h_status_str(st));
	f->pid = 0;
}

/* A forged process whose one allocation (of `size`) is on a stack in
 * this program, reported as module `path` (with this program's layout and
 * build-id). */
static void forge_in_self(struct forge *f, const struct self_module *m, const char *path,
                          uint64_t size, bool as_attacker)
{
	static const char cmdline[] = "forged\0--hostile";

	memset(f, 0, sizeof *f);
	f->exe = "/usr/bin/forged";
	f->cmdline = cmdline;
	f->cmdline_len = sizeof cmdline;
	f->mod = (struct proto_module){.bias = m->bias,
	                               .lo = m->lo,
	                               .hi = m->hi,
	                               .build_id = m->build_id,
	                               .build_id_len = m->build_id_len,
	                               .path = path,
	                               .path_len = (uint32_t)strlen(path)};
	f->nallocs = 1;
	f->allocs[0].size = size;
	f->allocs[0].nframes = 1;
	f->allocs[0].frames[0] = (uint64_t)(uintptr_t)&hostile_secret_function + 4;
	f->as_attacker = as_attacker;
}

/* A directory the attacker owns, in this test's directory. */
static char *attacker_dir(void)
{
	char *dir = h_daemon_file(&D, "attacker");
	uid_t uid = h_attacker_uid();

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	if (uid != H_NOUID)
		ck_assert_int_eq(chown(dir, uid, (gid_t)uid), 0);
	return dir;
}

/* Runs `memtracectl ARGS` as uid and asserts it answered JSON in time. */
static void ctl_answers(uid_t uid, struct h_ctl *r, const char *const *args, const char *what)
{
	char *cmd = h_args_str(args);

	h_ctl_run(&D, uid, r, args);
	ck_assert_msg(r->status == 0 && r->json != NULL,
	              "%s: `%s` did not answer (exit %d%s): %.1000s %.500s", what, cmd, r->status,
	              r->status == -1 ? ", killed after 20 s" : "", r->out, r->err);
	free(cmd);
}

/* The answer names the secret function or its source file somewhere. */
static bool mentions_secret(const char *text)
{
	return strstr(text, "hostile_secret_function") != NULL ||
	       strstr(text, "e2e_hostile.c") != NULL;
}

/* ------------------------------------------------------------- symbols */

START_TEST(fifo_module_does_not_hang)
{
	struct self_module self;
	struct forge f;
	struct h_proc p;
	struct h_ctl r;
	char *dir = attacker_dir();
	char *fifo = h_strf("%s/module.so", dir);
	char *pid;

	self_module(&self);
	/* The attacker's own FIFO, which nobody ever opens for writing. */
	{
		pid_t c = fork();
		ck_assert_int_ge(c, 0);
		if (c == 0)
			_exit((h_attacker_uid() == H_NOUID || h_become_attacker() == 0) &&
			              mkfifo(fifo, 0666) == 0
			          ? 0
			          : 1);
		int st;
		ck_assert_int_eq(waitpid(c, &st, 0), c);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mkfifo as the attacker");
	}
	h_prog_start(&p, &D, "sites", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);

	forge_in_self(&f, &self, fifo, 4096, h_attacker_uid() != H_NOUID);
	forge_start(&f);
	pid = h_strf("%ld", (long)f.pid);

	/* Root asks about the attacker's process: the FIFO is never opened. */
	const char *top[] = {"top", "--pid", pid, "--key", "traceback", NULL};
	ctl_answers(H_NOUID, &r, top, "top of the process naming a FIFO");
	ck_assert_msg(strstr(r.out, "module.so+0x") != NULL, "no unresolved frame: %.1000s", r.out);
	h_ctl_free(&r);
	const char *snap[] = {"snapshot", "--pid", pid, NULL};
	ctl_answers(H_NOUID, &r, snap, "snapshot of the process naming a FIFO");
	h_ctl_free(&r);

	/* Everybody else is still answered, exactly. */
	struct h_expect e = {.t = t, .key = H_KEY_LINENO};
	char *tpid = h_strf("%ld", t->pid);
	const char *targs[] = {"top", "--pid", tpid, "--key", "lineno", "--limit", "0", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, targs);
	ck_assert_msg(why == NULL, "root's own program after the FIFO: %s", why);
	h_ctl_free(&r);

	forge_end(&f);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "sites");
	int st = h_daemon_signal(&D, SIGTERM, 15000);
	char *log = h_daemon_log_tail(&D, 2000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "memtraced on SIGTERM after the FIFO: %s; log:\n%s",
	              st == -1 ? "still running after 15 s" : h_status_str(st), log);
	free(log);
	free(tpid);
	free(pid);
	free(fifo);
	free(dir);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* Copies this test binary to dir/name with mode `mode`, owned by us. */
static char *copy_self(const char *dir, const char *name, mode_t mode)
{
	char *path = h_strf("%s/%s", dir, name);
	char buf[65536];
	ssize_t n;
	int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	ck_assert_int_ge(in, 0);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof buf)) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	ck_assert_int_eq(chmod(path, mode), 0);
	return path;
}

START_TEST(unreadable_binary_not_disclosed)
{
	struct self_module self;
	struct forge f, g;
	struct h_ctl r;
	uid_t attacker = h_attacker_uid();
	char *dir = h_daemon_file(&D, "secretdir");
	char *secret, *pid, *gpid;

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	secret = copy_self(dir, "secret", 0700);
	self_module(&self);

	/* The attacker names root's 0700 binary, with its real build-id. */
	forge_in_self(&f, &self, secret, 4096, true);
	forge_start(&f);
	pid = h_strf("%ld", (long)f.pid);
	const char *top[] = {"top", "--pid", pid, "--key", "traceback", NULL};
	const char *tb[] = {"traceback", "--pid", pid, NULL};
	for (int who = 0; who < 2; who++) {
		uid_t uid = who == 0 ? attacker : H_NOUID;
		const char *const *cmds[] = {top, tb};
		for (int k = 0; k < 2; k++) {
			ctl_answers(uid, &r, cmds[k], "the attacker's process");
			ck_assert_msg(!mentions_secret(r.out),
			              "%s sees names from a file uid %ld may not read: %.1500s",
			              who == 0 ? "the attacker" : "root", (long)attacker, r.out);
			ck_assert_msg(strstr(r.out, "secret+0x") != NULL,
			              "the frame in the secret file is not there: %.1000s", r.out);
			h_ctl_free(&r);
		}
	}
	/* Stored, then read back. */
	const char *snap[] = {"snapshot", "--pid", pid, NULL};
	ctl_answers(attacker, &r, snap, "snapshot");
	long long id = 0;
	ck_assert(h_json_int(r.json, "id", &id));
	h_ctl_free(&r);
	char *sid = h_strf("%lld", id);
	const char *stop[] = {"top", "--snapshot", sid, "--key", "traceback", NULL};
	ctl_answers(attacker, &r, stop, "top of the stored snapshot");
	ck_assert_msg(!mentions_secret(r.out), "the stored snapshot names it: %.1500s", r.out);
	h_ctl_free(&r);

	/* The same forged agent run by root, who may read the file, gets the
	 * names: the checks above would see a disclosure. */
	forge_in_self(&g, &self, secret, 4096, false);
	forge_start(&g);
	gpid = h_strf("%ld", (long)g.pid);
	const char *gtop[] = {"top", "--pid", gpid, "--key", "traceback", NULL};
	ctl_answers(H_NOUID, &r, gtop, "root's forged process");
	ck_assert_msg(strstr(r.out, "hostile_secret_function") != NULL,
	              "root's own process does not get the names: %.1500s", r.out);
	h_ctl_free(&r);
	/* And after root had them resolved, the attacker still does not. */
	ctl_answers(attacker, &r, top, "the attacker's process, again");
	ck_assert_msg(!mentions_secret(r.out), "after root resolved it: %.1500s", r.out);
	h_ctl_free(&r);

	forge_end(&f);
	forge_end(&g);
	free(sid);
	free(gpid);
	free(pid);
	free(secret);
	free(dir);
}
END_TEST

/* --------------------------------------------------------- directories */

/* Runs `memtraced ARGS` as uid (or ourselves) with its output in p. */
static void daemon_run(struct h_proc *p, uid_t uid, const char *runtime, const char *state)
{
	const char *argv[] = {h_daemon_bin(), "--runtime-dir",    runtime, "--state-dir",
	                      state,          "--metrics-listen", "off",   NULL};
	struct h_spawn sp = {.argv = argv, .uid = uid};

	h_proc_start(p, &sp);
}

/* Runs f as the attacker in a child; asserts it returned 0. */
static void as_attacker(int (*f)(void *), void *arg, const char *what)
{
	pid_t c = fork();
	int st;

	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(h_become_attacker() == 0 && f(arg) == 0 ? 0 : 1);
	ck_assert_int_eq(waitpid(c, &st, 0), c);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "as the attacker: %s", what);
}

static int make_open_dir(void *path)
{
	return mkdir(path, 0777) == 0 && chmod(path, 0777) == 0 ? 0 : -1;
}

struct link_args {
	const char *target, *path;
};

static int make_dir_and_link(void *arg)
{
	struct link_args *a = arg;
	return make_open_dir((void *)a->target) == 0 && symlink(a->target, a->path) == 0 ? 0 : -1;
}

/* memtraced must refuse to start on runtime (or state) and say why,
 * naming the directory, and bind nothing there. */
static void assert_refused(const char *runtime, const char *state, const char *culprit,
                           const char *what)
{
	struct h_proc p;
	char *sock = h_strf("%s/agent.sock", runtime);
	struct stat st;

	daemon_run(&p, H_NOUID, runtime, state);
	int status = h_proc_finish(&p, 10000);
	const char *err = p.err.data != NULL ? p.err.data : "";
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0,
	              "%s: memtraced started (%s); its log: %.1500s", what, h_status_str(status),
	              err);
	ck_assert_msg(strstr(err, culprit) != NULL && strstr(err, "not") != NULL,
	              "%s: the log does not say what is wrong with %s: %.1500s", what, culprit,
	              err);
	ck_assert_msg(lstat(sock, &st) != 0, "%s: memtraced made %s", what, sock);
	h_proc_cleanup(&p);
	free(sock);
}

START_TEST(precreated_dirs_refused)
{
	/* A sticky, world-writable directory, as /tmp is: the attacker makes
	 * what memtraced will look for before it starts. */
	char *tmp = h_daemon_file(&D, "tmp");
	ck_assert_int_eq(mkdir(tmp, 01777), 0);
	ck_assert_int_eq(chmod(tmp, 01777), 0);
	char *state = h_strf("%s/state-ok", D.dir);

	/* The runtime directory, made by the attacker, open to all. */
	char *rt = h_strf("%s/memtrace-0", tmp);
	as_attacker(make_open_dir, rt, "mkdir");
	assert_refused(rt, state, rt, "a runtime directory another user made");

	/* A link to the attacker's directory where the runtime directory goes. */
	char *target = h_strf("%s/attacker-run", tmp);
	char *link = h_strf("%s/memtrace-1", tmp);
	struct link_args la = {target, link};
	as_attacker(make_dir_and_link, &la, "symlink");
	assert_refused(link, state, link, "a runtime directory that is another user's link");

	/* Root's own directory, but writable by everybody. */
	char *open = h_strf("%s/open-run", D.dir);
	ck_assert_int_eq(mkdir(open, 0777), 0);
	ck_assert_int_eq(chmod(open, 0777), 0);
	assert_refused(open, state, open, "a runtime directory writable by others");

	/* The state directory, made by the attacker. */
	char *st2 = h_strf("%s/state-attacker", tmp);
	char *rt2 = h_strf("%s/run-ok", D.dir);
	as_attacker(make_open_dir, st2, "mkdir");
	assert_refused(rt2, st2, st2, "a state directory another user made");

	/* And a fresh name in the same place is made, private, and used. */
	struct h_proc p;
	char *fresh = h_strf("%s/memtrace-2", tmp);
	char *sock = h_strf("%s/control.sock", fresh);
	struct stat sb;
	daemon_run(&p, H_NOUID, fresh, state);
	long long deadline = h_now_ms() + H_START_MS;
	int fd = -1;
	while (h_now_ms() < deadline && (fd = h_connect(sock)) < 0)
		h_sleep_ms(20);
	ck_assert_msg(fd >= 0, "memtraced did not start on a fresh directory: %.1000s",
	              p.err.data != NULL ? p.err.data : "");
	close(fd);
	ck_assert_int_eq(lstat(fresh, &sb), 0);
	ck_assert_msg(S_ISDIR(sb.st_mode) && sb.st_uid == geteuid() && (sb.st_mode & 022) == 0,
	              "made with mode %o, owner %u", (unsigned)sb.st_mode, (unsigned)sb.st_uid);
	kill(p.pid, SIGTERM);
	ck_assert_int_eq(h_proc_finish(&p, 15000), 0);
	h_proc_cleanup(&p);
	free(sock);
	free(fresh);
	free(rt2);
	free(st2);
	free(open);
	free(link);
	free(target);
	free(rt);
	free(state);
	free(tmp);
}
END_TEST

START_TEST(client_refuses_foreign_daemon)
{
	/* The attacker runs a memtraced of their own where root's client is
	 * pointed; root's client must not talk to it. */
	uid_t attacker = h_attacker_uid();
	char *dir = attacker_dir();
	char *rt = h_strf("%s/run", dir), *state = h_strf("%s/state", dir);
	char *sock = h_strf("%s/control.sock", rt);
	struct h_proc p;
	struct h_daemon fake;
	struct h_ctl r;

	daemon_run(&p, attacker, rt, state);
	long long deadline = h_now_ms() + H_START_MS;
	int fd = -1;
	while (h_now_ms() < deadline && (fd = h_connect(sock)) < 0)
		h_sleep_ms(20);
	ck_assert_msg(fd >= 0, "the attacker's memtraced did not start: %.1000s",
	              p.err.data != NULL ? p.err.data : "");
	close(fd);
	memset(&fake, 0, sizeof fake);
	snprintf(fake.runtime, sizeof fake.runtime, "%s", rt);
	const char *status[] = {"status", NULL};
	h_ctl_run(&fake, H_NOUID, &r, status);
	const char *code = h_ctl_error_code(&r);
	ck_assert_msg(r.status == 1 && code != NULL && strcmp(code, "untrusted_daemon") == 0,
	              "root's client talked to uid %ld's daemon: exit %d: %.800s %.400s",
	              (long)attacker, r.status, r.out, r.err);
	h_ctl_free(&r);
	/* Its owner's client does. */
	h_ctl_run(&fake, attacker, &r, status);
	ck_assert_msg(r.status == 0, "the attacker's own client: %.800s %.400s", r.out, r.err);
	h_ctl_free(&r);
	kill(p.pid, SIGTERM);
	h_proc_finish(&p, 15000);
	h_proc_cleanup(&p);
	free(sock);
	free(state);
	free(rt);
	free(dir);
}
END_TEST

/* A user without XDG_RUNTIME_DIR (cron, su, ssh without pam_systemd) looks
 * for memtraced in /tmp/memtrace-UID. The attacker makes that directory
 * first, with control.sock a link to a socket of root's that reads and never
 * answers (journald's stdout socket on a systemd host): the client must
 * refuse the directory (untrusted_daemon) at once, not hang there or hand
 * its request to root's socket. */
START_TEST(client_refuses_squatted_dir)
{
	const uid_t victim = 54321; /* no account: its own /tmp/memtrace-54321 */
	uid_t attacker = h_attacker_uid();
	char *dir = h_strf("/tmp/memtrace-%u", (unsigned)victim);
	char *root_sock = h_daemon_file(&D, "roots.sock");
	char *link = h_strf("%s/control.sock", dir);
	char *cmd = h_strf("setpriv --reuid=%u --regid=%u --clear-groups env -i PATH=/usr/bin:/bin "
	                   "timeout 20 %s status; echo \"rc=$?\"",
	                   (unsigned)victim, (unsigned)victim, h_client_bin());
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", root_sock);
	ck_assert_msg(ls >= 0 && bind(ls, (struct sockaddr *)&sun, sizeof sun) == 0 &&
	                  listen(ls, 8) == 0 && chmod(root_sock, 0666) == 0,
	              "root's socket: %s", strerror(errno));
	char *rm = h_strf("rm -rf %s", dir);
	ck_assert_int_eq(system(rm), 0);
	ck_assert_int_eq(mkdir(dir, 0777), 0);
	ck_assert_int_eq(chown(dir, attacker, (gid_t)attacker), 0);
	ck_assert_int_eq(chmod(dir, 0777), 0);
	ck_assert_int_eq(symlink(root_sock, link), 0);
	ck_assert_int_eq(lchown(link, attacker, (gid_t)attacker), 0);
	/* The directory D's socket lives under must be reachable by the victim. */
	char *out = h_command_out(cmd, "memtracectl as a user without XDG_RUNTIME_DIR");
	ck_assert_msg(strstr(out, "\"untrusted_daemon\"") != NULL &&
	                  strstr(out, "refusing the runtime directory") != NULL &&
	                  strstr(out, "rc=1") != NULL,
	              "a client in a squatted /tmp/memtrace-UID: %.1000s", out);
	/* Nothing was sent to root's socket. */
	struct pollfd pfd = {.fd = ls, .events = POLLIN};
	ck_assert_msg(poll(&pfd, 1, 0) == 0, "the client connected to root's socket");
	close(ls);
	ck_assert_int_eq(system(rm), 0);
	free(rm);
	free(out);
	free(cmd);
	free(link);
	free(root_sock);
	free(dir);
}
END_TEST

static char *status_ok_cb(const cJSON *json, void *arg)
{
	(void)arg;
	return h_json_str(json, "version") != NULL ? NULL : h_strf("no version");
}

START_TEST(runtime_dir_removed_is_rebound)
{
	struct h_proc p;
	struct h_ctl r;
	char *cmd = h_strf("rm -rf '%s'", D.runtime);

	ck_assert_int_eq(system(cmd), 0);
	/* The daemon notices, makes the directory again and listens again. */
	const char *status[] = {"status", NULL};
	char *why = h_ctl_poll(&D, H_NOUID, &r, status_ok_cb, NULL, status);
	ck_assert_msg(why == NULL, "no daemon answers on %s after it was removed: %s %.500s",
	              D.runtime, why, r.err);
	h_ctl_free(&r);
	/* New programs reach it. */
	h_prog_start(&p, &D, "sites", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	struct h_truth *t = h_truth_must(p.truth);
	struct h_expect e = {.t = t, .key = H_KEY_LINENO};
	char *tpid = h_strf("%ld", t->pid);
	const char *targs[] = {"top", "--pid", tpid, "--key", "lineno", "--limit", "0", NULL};
	why = h_ctl_poll(&D, H_NOUID, &r, h_check_top_fn, &e, targs);
	ck_assert_msg(why == NULL, "a program started after: %s", why);
	h_ctl_free(&r);
	char *log = h_daemon_log_tail(&D, 4000);
	ck_assert_msg(strstr(log, D.runtime) != NULL && strstr(log, "removed") != NULL,
	              "the log does not say so: %s", log);
	free(log);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "sites");
	h_daemon_stop(&D);
	free(tpid);
	free(cmd);
	h_truth_free(t);
	h_proc_cleanup(&p);
}
END_TEST

/* ---------------------------------------------------------------- store */

/* A daemon on a state directory whose database was made bad by `spoil`,
 * run as uid; its snapshot answers must be store errors saying why
 * (`cause`), and its log too, never "Input/output error". */
static void assert_store_error(uid_t uid, void (*spoil)(const char *db), const char *cause,
                               const char *what)
{
	struct h_daemon d2;
	struct h_proc p;
	struct h_ctl r;

	h_daemon_dirs(&d2, 0755);
	if (uid != H_NOUID) {
		ck_assert_int_eq(chown(d2.state, uid, (gid_t)uid), 0);
		ck_assert_int_eq(chown(d2.runtime, uid, (gid_t)uid), 0);
	}
	char *db = h_strf("%s/memtrace.db", d2.state);
	spoil(db);
	daemon_run(&p, uid, d2.runtime, d2.state);
	char *sock = h_strf("%s/control.sock", d2.runtime);
	long long deadline = h_now_ms() + H_START_MS;
	int fd = -1;
	while (h_now_ms() < deadline && (fd = h_connect(sock)) < 0)
		h_sleep_ms(20);
	ck_assert_msg(fd >= 0, "%s: memtraced did not start: %.1000s", what,
	              p.err.data != NULL ? p.err.data : "");
	close(fd);
	/* `snapshots` is an error, not an empty list; so is a snapshot. */
	const char *list[] = {"snapshots", NULL};
	h_ctl_run(&d2, uid, &r, list);
	const char *code = h_ctl_error_code(&r);
	ck_assert_msg(r.status != 0 && code != NULL && strcmp(code, "store_error") == 0 &&
	                  strstr(r.out, cause) != NULL,
	              "%s: `snapshots` answered %.800s", what, r.out);
	h_ctl_free(&r);
	const char *top[] = {"top", "--snapshot", "1", NULL};
	h_ctl_run(&d2, uid, &r, top);
	code = h_ctl_error_code(&r);
	ck_assert_msg(r.status != 0 && code != NULL && strcmp(code, "store_error") == 0,
	              "%s: `top --snapshot 1` answered %.800s", what, r.out);
	h_ctl_free(&r);
	kill(p.pid, SIGTERM);
	h_proc_finish(&p, 15000);
	/* Its log names the file and the cause. */
	const char *log = p.err.data != NULL ? p.err.data : "";
	ck_assert_msg(strstr(log, db) != NULL && strstr(log, cause) != NULL &&
	                  strstr(log, "Input/output error") == NULL,
	              "%s: the log does not say what is wrong: %.1500s", what, log);
	h_proc_cleanup(&p);
	free(sock);
	free(db);
}

static void spoil_garbage(const char *db)
{
	FILE *f = fopen(db, "w");

	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 400; i++)
		fputs("this is not an SQLite database, whatever its name says\n", f);
	fclose(f);
}

/* A good database of root's, 0644: another uid may read it, not write it. */
static void spoil_foreign(const char *db)
{
	sqlite3 *h = NULL;

	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(h, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	ck_assert_int_eq(chmod(db, 0644), 0);
}

START_TEST(store_errors_are_clear)
{
	assert_store_error(H_NOUID, spoil_garbage, "not a database", "a corrupted database");
	if (h_attacker_uid() != H_NOUID)
		assert_store_error(h_attacker_uid(), spoil_foreign, "cannot be written",
		                   "a database memtraced may not write");
}
END_TEST

START_TEST(store_files_are_private)
{
	struct h_proc p;
	struct h_ctl r;
	struct stat st;
	char *db = h_strf("%s/memtrace.db", D.state);
	char *file = h_daemon_file(&D, "snap");

	ck_assert_int_eq(stat(db, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == 0600, "the database is mode %04o",
	              (unsigned)(st.st_mode & 07777));
	h_prog_start(&p, &D, "sites", NULL, H_NOUID, NULL);
	h_proc_expect_ready(&p);
	char *pid = h_strf("%ld", (long)p.pid);
	const char *snap[] = {"snapshot", "--pid", pid, "-o", file, NULL};
	h_await_traced(&D, H_NOUID, (long)p.pid);
	/* the client's own umask would let others read what it writes */
	mode_t old = umask(022);
	ctl_answers(H_NOUID, &r, snap, "snapshot -o");
	umask(old);
	h_ctl_free(&r);
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == 0600, "the snapshot file is mode %04o",
	              (unsigned)(st.st_mode & 07777));
	const char *suffix[] = {"-wal", "-shm"};
	for (int i = 0; i < 2; i++) {
		char *j = h_strf("%s%s", db, suffix[i]);
		if (stat(j, &st) == 0)
			ck_assert_msg((st.st_mode & 077) == 0, "%s is mode %04o", j,
			              (unsigned)(st.st_mode & 07777));
		free(j);
	}
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "sites");
	free(pid);
	free(file);
	free(db);
	h_proc_cleanup(&p);
}
END_TEST

/* ------------------------------------------------------------ bad input */

/* Well-formed UTF-8 by RFC 3629 (written here, not memtrace's). */
static bool utf8_ok(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;

	while (*s != '\0') {
		unsigned char c = *s, lo = 0x80, hi = 0xbf;
		int n;

		if (c <= 0x7f) {
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		else
			return false;
		if (s[1] < lo || s[1] > hi)
			return false;
		for (int i = 2; i <= n; i++)
			if (s[i] < 0x80 || s[i] > 0xbf)
				return false;
		s += n + 1;
	}
	return true;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(getdelim(&buf, &len, '\0', f) > 0, 1);
	fclose(f);
	return buf;
}

START_TEST(utf8_in_exe_and_argv)
{
	/* A program whose file name and arguments are not UTF-8. */
	char *dir = h_daemon_file(&D, "utf8");
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	char *exe = h_strf("%s/sites\xff\xfe", dir);
	char *src = h_prog("sites");
	char *cmd = h_strf("cp '%s' '%s'", src, exe);
	ck_assert_int_eq(system(cmd), 0);
	char *truth = h_daemon_file(&D, "truth");
	const char *argv[] = {exe, "caf\xc3\xa9", "\xff\xfe not text \xc0\xaf", NULL};
	struct h_spawn sp = {
	    .argv = argv, .agent = true, .runtime_dir = D.runtime, .truth = truth, .uid = H_NOUID};
	struct h_proc p;
	struct h_ctl r;

	h_proc_start(&p, &sp);
	h_proc_expect_ready(&p);
	char *pid = h_strf("%ld", (long)p.pid);
	char *file = h_daemon_file(&D, "snap");
	const char *list[] = {"list", NULL};
	const char *stats[] = {"stats", "--pid", pid, NULL};
	const char *top[] = {"top", "--pid", pid, "--key", "traceback", "--limit", "3", NULL};
	const char *snap[] = {"snapshot", "--pid", pid, "-o", file, NULL};
	const char *snaps[] = {"snapshots", "--pid", pid, NULL};
	const char *const *cmds[] = {list, stats, top, snap, snaps};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		char *what = h_args_str(cmds[i]);
		ctl_answers(H_NOUID, &r, cmds[i], what);
		ck_assert_msg(utf8_ok(r.out), "`%s` printed invalid UTF-8: %.1500s", what, r.out);
		if (i < 2) {
			/* The bytes that are no text became U+FFFD; the text
			 * stayed as it was. */
			ck_assert_msg(strstr(r.out, "sites\xef\xbf\xbd\xef\xbf\xbd") != NULL &&
			                  strstr(r.out, "caf\xc3\xa9") != NULL &&
			                  strstr(r.out, "\xef\xbf\xbd\xef\xbf\xbd not text") !=
			                      NULL,
			              "`%s`: %.1500s", what, r.out);
		}
		h_ctl_free(&r);
		free(what);
	}
	char *doc = read_file(file);
	ck_assert_msg(utf8_ok(doc), "the snapshot file is not UTF-8: %.1000s", doc);
	free(doc);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	h_proc_end(&p, "sites");
	free(file);
	free(pid);
	free(truth);
	free(cmd);
	free(src);
	free(exe);
	free(dir);
	h_proc_cleanup(&p);
}
END_TEST

/* A number written with an exponent, outside strings (names and hex
 * addresses may hold "e+" or "0e0"): a digit, then e or E, then a sign or
 * a digit. */
static bool has_exponent(const char *t)
{
	bool in_string = false;

	for (const char *p = t; *p != '\0'; p++) {
		if (in_string) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				in_string = false;
			continue;
		}
		if (*p == '"')
			in_string = true;
		else if ((*p == 'e' || *p == 'E') && p > t && p[-1] >= '0' && p[-1] <= '9' &&
		         (p[1] == '+' || p[1] == '-' || (p[1] >= '0' && p[1] <= '9')))
			return true;
	}
	return false;
}

START_TEST(exact_64bit_counters)
{
	/* Sizes no double holds: the sum of the two is 329853533332650002. */
	static const uint64_t a = 329853533332650001ULL, b = 1;
	static const char *const sum = "329853533332650002";
	struct self_module self;
	struct forge f;
	struct h_ctl r;

	self_module(&self);
	forge_in_self(&f, &self, self.path, a, h_attacker_uid() != H_NOUID);
	f.nallocs = 2;
	f.allocs[1] = f.allocs[0];
	f.allocs[1].size = b;
	f.allocs[1].frames[0] = (uint64_t)(uintptr_t)&hostile_other_function + 4;
	forge_start(&f);
	char *pid = h_strf("%ld", (long)f.pid);
	char *file = h_daemon_file(&D, "snap");
	const char *stats[] = {"stats", "--pid", pid, NULL};
	const char *list[] = {"list", NULL};
	const char *top[] = {"top", "--pid", pid, NULL};
	const char *snap[] = {"snapshot", "--pid", pid, "-o", file, NULL};
	const char *fstats[] = {"stats", "--snapshot", file, NULL};
	const char *ftop[] = {"top", "--snapshot", file, NULL};
	const char *const *cmds[] = {stats, list, top, snap, fstats, ftop};
	/* The numbers arrive once the daemon read the region (on WAKE). */
	long long deadline = h_now_ms() + H_POLL_MS;
	for (;;) {
		ctl_answers(H_NOUID, &r, stats, "stats");
		bool in = strstr(r.out, sum) != NULL;
		if (in || h_now_ms() > deadline)
			break;
		h_ctl_free(&r);
		h_sleep_ms(50);
	}
	h_ctl_free(&r);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		char *what = h_args_str(cmds[i]);
		ctl_answers(H_NOUID, &r, cmds[i], what);
		bool want_sum = cmds[i] != snap;
		ck_assert_msg(!want_sum || strstr(r.out, sum) != NULL,
		              "`%s` does not print %s exactly: %.2000s", what, sum, r.out);
		ck_assert_msg(!has_exponent(r.out), "`%s` prints a number as a double: %.2000s",
		              what, r.out);
		if (cmds[i] == top || cmds[i] == ftop)
			ck_assert_msg(strstr(r.out, "329853533332650001") != NULL,
			              "`%s` lacks the one block's size: %.2000s", what, r.out);
		h_ctl_free(&r);
		free(what);
	}
	forge_end(&f);
	free(file);
	free(pid);
}
END_TEST

/* ------------------------------------------------ wake_flood_deferred */

#define FLOOD_WAKES 400

/* The attacker's agent: a region of SHM_NRINGS rings (all empty but the
 * first), then FLOOD_WAKES times an allocation and its free in the first
 * ring and a WAKE, 1 ms apart. Exit status 0, or which step failed. */
static int wake_flood_child(const void *unused, int hold, int ready)
{
	static uint8_t buf[PROTO_HDR_SIZE + PROTO_MAX_PAYLOAD];
	static const char cmdline[] = "forged\0--wakes";
	char c;

	(void)unused;
	if (h_become_attacker() < 0)
		return 2;
	int fd = h_connect(h_strf("%s/agent.sock", D.runtime));
	int region = h_region_empty();
	if (fd < 0 || region < 0)
		return 3;
	char *map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, region, 0);
	if (map == MAP_FAILED)
		return 4;
	struct shm_header *h = (struct shm_header *)map;
	struct shm_stack *e = (struct shm_stack *)(map + SHM_OFF_ARENA);
	uint64_t frame = 0x401000;
	e->hash = 1;
	e->nframes = 1;
	memcpy(e + 1, &frame, sizeof frame);
	*(uint64_t *)(map + SHM_OFF_OFFSETS + 8) = 0;
	map[SHM_OFF_STATES + 1] = SHM_STACK_READY;
	for (uint32_t i = 0; i < SHM_NRINGS; i++)
		atomic_store(&((struct shm_ring *)(map + SHM_OFF_RING(i)))->pending, UINT64_MAX);
	atomic_store(&h->nrings, SHM_NRINGS);
	atomic_store(&h->seq, 1);
	size_t len = h_hello_frame(buf, sizeof buf, "/forged/wakes", cmdline, sizeof cmdline);
	if (len == 0 || send_with_fd(fd, buf, len, region) < 0)
		return 5;
	close(region);
	ssize_t n;
	struct shm_ring *r = (struct shm_ring *)(map + SHM_OFF_RING(0));
	uint64_t seq = 1;
	for (uint64_t k = 0; k < FLOOD_WAKES; k++, seq += 2) {
		r->ev[2 * k] =
		    (struct shm_ev){seq << PROTO_EV_KIND_BITS | PROTO_EV_ALLOC, 0x10000, 64, 1, 0};
		r->ev[2 * k + 1] = (struct shm_ev){(seq + 1) << PROTO_EV_KIND_BITS | PROTO_EV_FREE,
		                                   0x10000, 0, 0, 0};
		atomic_store(&r->head, 2 * k + 2);
		atomic_store(&h->seq, seq + 2);
		n = proto_empty_encode(buf, sizeof buf, PROTO_WAKE);
		if (n < 0 || h_send_all(fd, buf, (size_t)n) < 0)
			return 6;
		usleep(1000);
	}
	if (write(ready, "r", 1) != 1)
		return 7;
	while (read(hold, &c, 1) > 0)
		;
	return 0;
}

START_TEST(wake_flood_deferred)
{
	struct forge f = {0};
	struct h_ctl r;

	f.pid = forged_spawn(wake_flood_child, NULL, &f.hold);
	/* Every record read in the end, the deferred WAKEs by the timer. */
	char *p = h_strf("%ld", (long)f.pid);
	const char *stats[] = {"stats", "--pid", p, NULL};
	long long allocs = -1, frees = -1, deferred = -1;
	long long deadline = h_now_ms() + H_POLL_MS;
	for (;;) {
		h_ctl_ok(&D, H_NOUID, &r, stats);
		ck_assert(h_json_int(r.json, "allocations", &allocs));
		ck_assert(h_json_int(r.json, "frees", &frees));
		ck_assert(h_json_int(r.json, "wakes_deferred", &deferred));
		h_ctl_free(&r);
		if ((allocs == FLOOD_WAKES && frees == FLOOD_WAKES) || h_now_ms() > deadline)
			break;
		h_sleep_ms(50);
	}
	ck_assert_msg(allocs == FLOOD_WAKES && frees == FLOOD_WAKES,
	              "the daemon read %lld allocations and %lld frees of %d each", allocs, frees,
	              FLOOD_WAKES);
	/* A read each 20 ms at most on WAKEs (1024 rings), one WAKE a ms. */
	ck_assert_msg(deferred >= FLOOD_WAKES / 4,
	              "%lld of %d WAKEs 1 ms apart were deferred: each had the daemon look at "
	              "1024 rings",
	              deferred, FLOOD_WAKES);
	forge_end(&f);
	free(p);
}
END_TEST

/* ------------------------------------------------ a daemon that stops */

/* The counts of a stats answer the tests below add up. */
struct counts {
	long long allocs, frees, unknown, lost, lost_allocs, lost_bytes, lost_frees;
	bool split; /* lost_allocations, lost_bytes and lost_frees are there */
};

static bool counts_get(const cJSON *j, struct counts *c)
{
	memset(c, 0, sizeof *c);
	c->split = h_json_int(j, "lost_allocations", &c->lost_allocs) &&
	           h_json_int(j, "lost_bytes", &c->lost_bytes) &&
	           h_json_int(j, "lost_frees", &c->lost_frees);
	return h_json_int(j, "allocations", &c->allocs) && h_json_int(j, "frees", &c->frees) &&
	       h_json_int(j, "unknown_frees", &c->unknown) &&
	       h_json_int(j, "lost_events", &c->lost);
}

/* What the program did between two answers, from its own count: n
 * allocations of `size` bytes and n frees. */
struct exact {
	struct counts base;
	long long n, size;
};

/* Every allocation the program made is in the model or counted lost, and
 * so is every free (a free whose allocation was lost is an unknown free):
 * exactly, and lost_events is the sum of the two. */
static char *exact_cb(const cJSON *json, void *arg)
{
	const struct exact *e = arg;
	struct counts c;

	if (!counts_get(json, &c))
		return h_strf("stats lack allocations, frees, unknown_frees or lost_events");
	/* The events first: each is kept, an unknown free, or lost. */
	long long events = c.allocs - e->base.allocs + c.frees - e->base.frees + c.unknown -
	                   e->base.unknown + c.lost - e->base.lost;
	if (events != 2 * e->n)
		return h_strf("the program made %lld events; the daemon has %lld allocations, "
		              "%lld frees, %lld unknown frees and %lld lost events: %lld",
		              2 * e->n, c.allocs - e->base.allocs, c.frees - e->base.frees,
		              c.unknown - e->base.unknown, c.lost - e->base.lost, events);
	if (!c.split)
		return h_strf("stats do not say what the lost events were (lost_allocations, "
		              "lost_bytes, lost_frees)");
	long long allocs = c.allocs - e->base.allocs + c.lost_allocs - e->base.lost_allocs;
	long long frees = c.frees - e->base.frees + c.unknown - e->base.unknown + c.lost_frees -
	                  e->base.lost_frees;
	long long lost_allocs = c.lost_allocs - e->base.lost_allocs;
	if (allocs != e->n || frees != e->n || c.lost != c.lost_allocs + c.lost_frees ||
	    c.lost_bytes - e->base.lost_bytes != lost_allocs * e->size)
		return h_strf(
		    "the program made %lld allocations of %lld bytes and %lld frees; "
		    "the daemon has %lld allocations + %lld lost (%lld bytes), %lld frees + "
		    "%lld unknown + %lld lost, lost_events %lld (before: allocations %lld, "
		    "frees %lld, unknown %lld, lost %lld)",
		    e->n, e->size, e->n, c.allocs - e->base.allocs, lost_allocs,
		    c.lost_bytes - e->base.lost_bytes, c.frees - e->base.frees,
		    c.unknown - e->base.unknown, c.lost_frees - e->base.lost_frees, c.lost,
		    e->base.allocs, e->base.frees, e->base.unknown, e->base.lost);
	return NULL;
}

/* Sends `cmd` to tests/progs/churn while the daemon is stopped and waits for
 * its "done" (at most 60 s, so a program that waits for ever fails rather
 * than hangs the test), then resumes the daemon. */
static bool churn_while_stopped(struct h_proc *p, const char *cmd)
{
	char line[128];

	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	ck_assert_int_eq(h_proc_send(p, cmd), 0);
	int rc = h_proc_readline(p, line, sizeof line, 60000);
	ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
	return rc == 1 && strncmp(line, "done", 4) == 0;
}

/* Stats of pid, asserted to parse, into c. */
static void stats_counts(long pid, struct counts *c, struct h_ctl *r)
{
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	h_ctl_ok(&D, H_NOUID, r, args);
	ck_assert_msg(counts_get(r->json, c), "stats lack the counts: %.800s", r->out);
}

/* Polls stats of pid until every event of e is accounted for. */
static void assert_exact(long pid, struct exact *e, const char *what)
{
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};
	struct h_ctl r;

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	char *why = h_ctl_poll(&D, H_NOUID, &r, exact_cb, e, args);
	ck_assert_msg(why == NULL, "%s: %s", what, why);
	h_ctl_free(&r);
}

/* After the program's exit, its session says it was truncated (and, in
 * lossless mode, that the agent stopped waiting). */
static void assert_truncated(long pid, bool stopped_waiting, const char *what)
{
	char pidbuf[24];
	const char *args[] = {"stats", "--pid", pidbuf, NULL};
	struct h_ctl r;
	long long t0 = h_now_ms();

	snprintf(pidbuf, sizeof pidbuf, "%ld", pid);
	for (;;) {
		h_ctl_ok(&D, H_NOUID, &r, args);
		const char *st = h_json_str(r.json, "state");
		if (st != NULL && strcmp(st, "live") != 0)
			break;
		h_ctl_free(&r);
		ck_assert_msg(h_now_ms() - t0 < H_POLL_MS, "%s: the session never ended", what);
		h_sleep_ms(50);
	}
	const cJSON *tr = cJSON_GetObjectItemCaseSensitive(r.json, "truncated");
	const cJSON *sw = cJSON_GetObjectItemCaseSensitive(r.json, "stopped_waiting");
	ck_assert_msg(cJSON_IsTrue(tr), "%s: the exited session is not marked truncated: %.800s",
	              what, r.out);
	ck_assert_msg(cJSON_IsBool(sw) && cJSON_IsTrue(sw) == stopped_waiting,
	              "%s: stopped_waiting should be %s: %.800s", what,
	              stopped_waiting ? "true" : "false", r.out);
	h_ctl_free(&r);
}

static int count_of(const char *text, const char *what)
{
	int n = 0;
	for (const char *p = text; p != NULL && (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/*
 * Lossless mode (the default) with the daemon stopped mid-run: the program
 * must not wait for ever. With MEMTRACE_BLOCK_TIMEOUT=1 it finishes its
 * 200,000 events while the daemon is still stopped, says so once on stderr,
 * and once the daemon runs again every allocation and free the program made
 * is either in the model or counted lost, exactly; the session is
 * truncated and says the agent stopped waiting.
 */
START_TEST(block_mode_stopped_daemon)
{
	const char *const env[] = {"MEMTRACE_BLOCK_TIMEOUT=1", NULL};
	const long n = 100000;
	struct h_proc p;
	struct h_ctl r;
	struct exact e = {.n = n, .size = 32};
	char cmd[64];

	h_prog_start(&p, &D, "churn", NULL, H_NOUID, env);
	h_proc_expect_ready(&p);
	const long pid = (long)p.pid;
	stats_counts(pid, &e.base, &r);
	h_ctl_free(&r);
	snprintf(cmd, sizeof cmd, "churn %ld", n);
	ck_assert_msg(churn_while_stopped(&p, cmd),
	              "lossless mode: the program waited for the stopped daemon (no \"done\" in "
	              "60 s with MEMTRACE_BLOCK_TIMEOUT=1)");
	assert_exact(pid, &e, "lossless mode after the timeout");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	int st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "churn: %s",
	              h_status_str(st));
	int said = count_of(p.err.data, "MEMTRACE_BLOCK_TIMEOUT");
	ck_assert_msg(said == 1,
	              "the agent should say once that it stopped waiting; said %d: %.1000s", said,
	              p.err.data != NULL ? p.err.data : "");
	assert_truncated(pid, true, "lossless mode after the timeout");
	h_proc_cleanup(&p);
}
END_TEST

/*
 * Drop mode with the daemon stopped: allocations + lost_allocations is what
 * the program allocated, frees + unknown_frees + lost_frees what it freed,
 * exactly, for malloc and for realloc(NULL, n) (one allocation, where a
 * dropped realloc used to count two events). _i 0: malloc, 1: realloc.
 */
START_TEST(drop_mode_counts_exactly)
{
	const char *const env[] = {"MEMTRACE_ON_FULL=drop", NULL};
	const long n = 100000;
	const char *verb = _i == 0 ? "churn" : "rchurn";
	struct h_proc p;
	struct h_ctl r;
	struct exact e = {.n = n, .size = 32};
	char cmd[64], what[64];

	snprintf(what, sizeof what, "drop mode, %s", _i == 0 ? "malloc" : "realloc(NULL, 32)");
	h_prog_start(&p, &D, "churn", NULL, H_NOUID, env);
	h_proc_expect_ready(&p);
	const long pid = (long)p.pid;
	stats_counts(pid, &e.base, &r);
	h_ctl_free(&r);
	snprintf(cmd, sizeof cmd, "%s %ld", verb, n);
	ck_assert_msg(churn_while_stopped(&p, cmd), "%s: no \"done\" while the daemon was stopped",
	              what);
	assert_exact(pid, &e, what);
	/* A second round on the running daemon adds up too. */
	stats_counts(pid, &e.base, &r);
	h_ctl_free(&r);
	ck_assert_int_eq(h_proc_send(&p, cmd), 0);
	char line[128];
	ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 60000), 1);
	assert_exact(pid, &e, what);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	ck_assert_msg(WIFEXITED(h_proc_finish(&p, 30000)), "churn did not exit");
	assert_truncated(pid, false, what);
	h_proc_cleanup(&p);
}
END_TEST

/*
 * The daemon is stopped and its agent socket's backlog is full (anybody can
 * fill it): a program starting traced must not wait in connect for ever.
 * With MEMTRACE_BLOCK_TIMEOUT=1 it starts, runs untraced and says so.
 */
START_TEST(connect_bounded_when_backlog_full)
{
	const char *const env[] = {"MEMTRACE_BLOCK_TIMEOUT=1", NULL};
	char *path = h_strf("%s/agent.sock", D.runtime);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fds[4096], n = 0;
	bool full = false;
	struct h_proc p;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
	while (n < (int)(sizeof fds / sizeof fds[0])) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(fd, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
			full = errno == EAGAIN;
			close(fd);
			break;
		}
		fds[n++] = fd;
	}
	if (!full)
		kill(D.pid, SIGCONT);
	ck_assert_msg(full, "the backlog of %s never filled (%d connections)", path, n);
	h_prog_start(&p, &D, "churn", NULL, H_NOUID, env);
	char line[128];
	int rc = h_proc_readline(&p, line, sizeof line, 30000);
	kill(D.pid, SIGCONT);
	ck_assert_msg(rc == 1 && strcmp(line, "ready") == 0,
	              "the program waited on the stopped daemon's full backlog (no \"ready\" in "
	              "30 s with MEMTRACE_BLOCK_TIMEOUT=1)");
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	int st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "churn: %s",
	              h_status_str(st));
	ck_assert_msg(p.err.data != NULL && strstr(p.err.data, "untraced") != NULL,
	              "the program did not say it runs untraced: %.1000s",
	              p.err.data != NULL ? p.err.data : "");
	for (int i = 0; i < n; i++)
		close(fds[i]);
	h_proc_cleanup(&p);
	free(path);
}
END_TEST

/* ------------------------------------------- whose agent.sock it is */

/* What the attacker's listener got. */
struct heard {
	int accepted;
	long long bytes;
	int fds;
};

/* As the attacker: listens on path, says so on `ready` (one byte), takes
 * one connection and reads it to its end (or 20 s of silence), counting
 * bytes and passed descriptors, and writes a struct heard to `report`. */
static void fake_daemon(const char *path, int ready, int report)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct heard h = {0};
	int l, c;

	if (h_become_attacker() < 0)
		_exit(2);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 8) < 0)
		_exit(3);
	if (write(ready, "L", 1) != 1)
		_exit(4);
	struct pollfd pf = {.fd = l, .events = POLLIN};
	if (poll(&pf, 1, 20000) == 1 && (c = accept(l, NULL, NULL)) >= 0) {
		h.accepted = 1;
		for (;;) {
			char buf[4096];
			union {
				struct cmsghdr h;
				char space[CMSG_SPACE(4 * sizeof(int))];
			} ctl;
			struct iovec iov = {buf, sizeof buf};
			struct msghdr msg = {.msg_iov = &iov,
			                     .msg_iovlen = 1,
			                     .msg_control = ctl.space,
			                     .msg_controllen = sizeof ctl.space};
			struct pollfd cf = {.fd = c, .events = POLLIN};
			if (poll(&cf, 1, 20000) != 1)
				break;
			ssize_t got = recvmsg(c, &msg, 0);
			if (got <= 0)
				break;
			h.bytes += got;
			for (struct cmsghdr *m = CMSG_FIRSTHDR(&msg); m != NULL;
			     m = CMSG_NXTHDR(&msg, m))
				if (m->cmsg_level == SOL_SOCKET && m->cmsg_type == SCM_RIGHTS)
					h.fds += (int)((m->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		}
	}
	_exit(write(report, &h, sizeof h) == (ssize_t)sizeof h ? 0 : 5);
}

/*
 * The agent.sock a program is pointed at is served by another, unprivileged
 * user's listener: the program must run (untraced), say why on stderr, and
 * the listener must get nothing, neither HELLO (the exe, the arguments) nor
 * the region's descriptor (every event).
 */
START_TEST(agent_refuses_foreign_socket)
{
	char *dir = attacker_dir();
	char *sock = h_strf("%s/agent.sock", dir);
	char *envsock = h_strf("MEMTRACE_SOCKET=%s", sock);
	const char *const env[] = {envsock, NULL};
	int ready[2], report[2];
	struct heard h;
	struct h_proc p;
	char b;

	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(report), 0);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fake_daemon(sock, ready[1], report[1]);
	}
	close(ready[1]);
	close(report[1]);
	ck_assert_msg(read(ready[0], &b, 1) == 1, "the attacker's listener did not start");
	h_prog_start(&p, &D, "churn", NULL, H_NOUID, env);
	h_proc_expect_ready(&p);
	ck_assert_int_eq(h_proc_send(&p, "churn 1000"), 0);
	char line[128];
	ck_assert_int_eq(h_proc_readline(&p, line, sizeof line, 30000), 1);
	ck_assert_int_eq(h_proc_send(&p, "exit"), 0);
	int st = h_proc_finish(&p, 30000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "churn: %s",
	              h_status_str(st));
	ssize_t got = read(report[0], &h, sizeof h);
	int cst;
	ck_assert_int_eq(waitpid(c, &cst, 0), c);
	ck_assert_msg(got == (ssize_t)sizeof h, "the attacker's listener did not report (%s)",
	              h_status_str(cst));
	ck_assert_msg(h.bytes == 0 && h.fds == 0,
	              "uid %ld's listener on %s received %lld bytes and %d descriptors from "
	              "root's traced program",
	              (long)h_attacker_uid(), sock, h.bytes, h.fds);
	ck_assert_msg(p.err.data != NULL && strstr(p.err.data, sock) != NULL &&
	                  strstr(p.err.data, "untraced") != NULL,
	              "the program did not say why it runs untraced: %.1000s",
	              p.err.data != NULL ? p.err.data : "");
	h_proc_cleanup(&p);
	close(ready[0]);
	close(report[0]);
	free(envsock);
	free(sock);
	free(dir);
}
END_TEST

static Suite *hostile_suite(void)
{
	Suite *s = suite_create("e2e_hostile");
	TCase *tc;

	tc = h_tcase(s, "symbols", 120, setup, teardown);
	tcase_add_test(tc, fifo_module_does_not_hang);
	if (geteuid() == 0)
		tcase_add_test(tc, unreadable_binary_not_disclosed);
	else
		printf("e2e_hostile: not root: there is no second user, so "
		       "unreadable_binary_not_disclosed is NOT registered\n");
	tc = h_tcase(s, "directories", 120, setup, teardown);
	tcase_add_test(tc, runtime_dir_removed_is_rebound);
	if (geteuid() == 0) {
		tcase_add_test(tc, precreated_dirs_refused);
		tcase_add_test(tc, client_refuses_foreign_daemon);
		tcase_add_test(tc, client_refuses_squatted_dir);
	} else {
		printf("e2e_hostile: not root: precreated_dirs_refused, "
		       "client_refuses_foreign_daemon and client_refuses_squatted_dir are NOT "
		       "registered\n");
	}
	tc = h_tcase(s, "input", 120, setup, teardown);
	tcase_add_test(tc, utf8_in_exe_and_argv);
	tcase_add_test(tc, exact_64bit_counters);
	if (geteuid() == 0)
		tcase_add_test(tc, wake_flood_deferred);
	else
		printf("e2e_hostile: not root: there is no second user, so wake_flood_deferred is "
		       "NOT registered\n");
	tc = h_tcase(s, "store", 120, setup, teardown);
	tcase_add_test(tc, store_errors_are_clear);
	tcase_add_test(tc, store_files_are_private);
	tc = h_tcase(s, "stopped daemon", 180, setup, teardown);
	tcase_add_test(tc, block_mode_stopped_daemon);
	tcase_add_loop_test(tc, drop_mode_counts_exactly, 0, 2);
	tcase_add_test(tc, connect_bounded_when_backlog_full);
	if (geteuid() == 0)
		tcase_add_test(tc, agent_refuses_foreign_socket);
	else
		printf("e2e_hostile: not root: there is no second user, so "
		       "agent_refuses_foreign_socket is NOT registered\n");
	return s;
}

int main(void)
{
	static const char *const progs[] = {"sites", "churn", NULL};

	return h_run_suite("e2e_hostile", hostile_suite(), progs);
}
