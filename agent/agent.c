/*
 * agent.c - start-up, configuration, fork and exit handling, and the
 * recording path from a hook into the thread's ring.
 *
 * Start-up order matters because malloc is called before and during it. The
 * real allocator is resolved lazily by the first hook (dlsym allocates, which
 * is served from a static bootstrap arena). Tracing starts at the first
 * allocator call, whichever comes first: a hook (another library's
 * constructor, libstdc++'s static initialisation) or the agent's constructor.
 * That first call reads the configuration (environ is valid before any
 * constructor runs, and getenv does not allocate), maps the stack table and
 * sets g_state to AGENT_ACTIVE last; from then on events are recorded into
 * the rings. The daemon connection and the sender thread start later, in the
 * constructor (pthread_create allocates, and a thread started from inside a
 * hook could find the caller holding a lock it needs), or from a hook whose
 * ring fills up before the constructor ran; until then the early events wait
 * in the rings, so none is lost.
 */
#include "agent.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gotpatch.h"
#include "lineage.h"
#include "modules.h"
#include "paths.h"
#include "proto.h"
#include "region.h"
#include "ring.h"
#include "sender.h"
#include "sampleset.h"
#include "stacktab.h"
#include "sysdep.h"
#include "unwind.h"
#include "cfi.h"

/* ---- the real allocator and the bootstrap arena ---- */

_Alignas(64) char agent_boot_arena[AGENT_BOOT_SIZE];
#define boot_arena agent_boot_arena
#define BOOT_SIZE  AGENT_BOOT_SIZE
static _Atomic size_t boot_used;

void *agent_boot_alloc(size_t size, size_t align)
{
	if (align < 16)
		align = 16;
	size_t cur = atomic_load(&boot_used), start;
	do {
		start = (cur + align - 1) & ~(align - 1);
		if (start + size > BOOT_SIZE || start + size < start)
			return NULL;
	} while (!atomic_compare_exchange_weak(&boot_used, &cur, start + size));
	return boot_arena + start; /* zeroed: static storage, never reused */
}

size_t agent_boot_avail(const void *p)
{
	return (size_t)(boot_arena + atomic_load(&boot_used) - (const char *)p);
}

/*
 * Loaded late (RTLD_LOCAL, outside the global scope): the definition of
 * `name` that the program's calls reach, the first one in the global scope.
 * dlsym(RTLD_DEFAULT) answers that, except in a non-PIE program that takes
 * the function's address (Debian's python3 takes malloc's): the
 * executable's undefined symbol then has its PLT entry as value, dlsym
 * returns that entry, and the entry jumps through the GOT the agent
 * rewrites: the "real" malloc would be the hook again, for ever. Then the
 * objects are searched in load order for the first that defines the name
 * itself. Their handles are not closed (the objects of the initial link
 * map are never unloaded, and a dlclose from here would be the agent's).
 */
static void *late_symbol(const char *name)
{
	void *a = dlsym(RTLD_DEFAULT, name);
	const ElfW(Sym) *sym = NULL;
	struct link_map *lm = NULL;
	Dl_info info;

	if (a == NULL || dladdr1(a, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || sym == NULL ||
	    sym->st_shndx != SHN_UNDEF)
		return a;
	void *prog = dlopen(NULL, RTLD_NOW);
	if (prog == NULL || dlinfo(prog, RTLD_DI_LINKMAP, &lm) != 0 || lm == NULL)
		return a;
	for (lm = lm->l_next; lm != NULL; lm = lm->l_next) {
		void *h = lm->l_name != NULL && lm->l_name[0] != '\0'
		              ? dlopen(lm->l_name, RTLD_NOW | RTLD_NOLOAD)
		              : NULL;
		void *d = h != NULL ? dlsym(h, name) : NULL;
		/* Its own definition, not one of its dependencies'. */
		if (d != NULL && (uintptr_t)d != (uintptr_t)a &&
		    dladdr1(d, &info, (void **)&sym, RTLD_DL_SYMENT) != 0 && sym != NULL &&
		    sym->st_shndx != SHN_UNDEF && info.dli_fname != NULL &&
		    strcmp(info.dli_fname, lm->l_name) == 0)
			return d;
	}
	return a;
}

void agent_resolve_real(void)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&g_real_ready, &expect, 1)) {
		/* Another thread resolves; its dlsym allocations use the arena. */
		while (atomic_load(&g_real_ready) != 2)
			;
		return;
	}
	/* Preloaded, the next definition after the agent's is the allocator's;
	 * loaded late (RTLD_LOCAL, outside the global scope), the first
	 * definition of the global scope is the one the program calls. */
#define REAL_OF(name) (g_late ? late_symbol(name) : dlsym(RTLD_NEXT, name))
	g_real.malloc = (void *(*)(size_t))REAL_OF("malloc");
	g_real.free = (void (*)(void *))REAL_OF("free");
	g_real.calloc = (void *(*)(size_t, size_t))REAL_OF("calloc");
	g_real.realloc = (void *(*)(void *, size_t))REAL_OF("realloc");
	g_real.posix_memalign = (int (*)(void **, size_t, size_t))REAL_OF("posix_memalign");
	g_real.aligned_alloc = (void *(*)(size_t, size_t))REAL_OF("aligned_alloc");
	g_real.memalign = (void *(*)(size_t, size_t))REAL_OF("memalign");
	g_real.valloc = (void *(*)(size_t))REAL_OF("valloc");
	g_real.pvalloc = (void *(*)(size_t))REAL_OF("pvalloc");
#undef REAL_OF
	if (g_real.malloc == NULL || g_real.free == NULL || g_real.calloc == NULL ||
	    g_real.realloc == NULL) {
		sysdep_say("cannot find the real malloc; aborting", NULL, NULL);
		abort();
	}
	atomic_store(&g_real_ready, 2);
}

/* ---- configuration ---- */

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (s == NULL || *s == '\0' || *s == '-')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "1") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 ||
	    strcmp(s, "on") == 0)
		*out = true;
	else if (strcmp(s, "0") == 0 || strcmp(s, "no") == 0 || strcmp(s, "false") == 0 ||
	         strcmp(s, "off") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static void config_socket(void);
static int agent_detach(void);

static void read_config(void)
{
	const char *v;
	uint64_t n;

	g_cfg.nframes = 32;
	g_cfg.follow_fork = true;
	g_cfg.block_ns = AGENT_BLOCK_TIMEOUT_S * UINT64_C(1000000000);
	if ((v = getenv("MEMTRACE_NFRAMES")) != NULL) {
		if (parse_u64(v, &n) == 0 && n >= 1 && n <= AGENT_MAX_FRAMES)
			g_cfg.nframes = (uint32_t)n;
		else
			sysdep_say("MEMTRACE_NFRAMES must be 1..256, got '", v, "'; using 32");
	}
	if ((v = getenv("MEMTRACE_UNWIND")) != NULL) {
		if (strcmp(v, "fp") == 0)
			g_cfg.fp = true;
		else if (strcmp(v, "libunwind") == 0)
			g_cfg.libunwind = true;
		else if (strcmp(v, "cfi") != 0)
			sysdep_say("MEMTRACE_UNWIND must be cfi, libunwind or fp, got '", v,
			           "'; using cfi");
	}
	if ((v = getenv("MEMTRACE_UNWIND_CHECK")) != NULL) {
		/* A path: the counts go there (a program may close stderr). */
		if (v[0] == '/' && strlen(v) < sizeof(g_cfg.unwind_report))
			memcpy(g_cfg.unwind_report, v, strlen(v) + 1);
		if (v[0] == '/' || parse_bool(v, &g_cfg.unwind_check) == 0)
			g_cfg.unwind_check = g_cfg.unwind_check || v[0] == '/';
		else
			sysdep_say(
			    "MEMTRACE_UNWIND_CHECK must be 0, 1 or a file's absolute path, got '",
			    v, "'; not checking");
	}
	if ((v = getenv("MEMTRACE_SAMPLE")) != NULL) {
		if (parse_u64(v, &n) == 0)
			g_cfg.sample_bytes = n;
		else
			sysdep_say("MEMTRACE_SAMPLE must be a byte count, got '", v,
			           "'; tracing every allocation");
	}
	if ((v = getenv("MEMTRACE_FOLLOW_FORK")) != NULL && parse_bool(v, &g_cfg.follow_fork) < 0)
		sysdep_say(
		    "MEMTRACE_FOLLOW_FORK must be 0, 1, yes, no, true, false, on or off, got '", v,
		    "'; following forks");
	if ((v = getenv("MEMTRACE_ON_FULL")) != NULL) {
		if (strcmp(v, "drop") == 0)
			g_cfg.drop = true;
		else if (strcmp(v, "block") != 0)
			sysdep_say("MEMTRACE_ON_FULL must be block or drop, got '", v,
			           "'; blocking");
	}
	if ((v = getenv("MEMTRACE_BLOCK_TIMEOUT")) != NULL) {
		if (parse_u64(v, &n) == 0 && n <= 86400)
			g_cfg.block_ns = n * UINT64_C(1000000000);
		else
			sysdep_say("MEMTRACE_BLOCK_TIMEOUT must be 0..86400 seconds, got '", v,
			           "'; using 5");
	}
	config_socket();
}

/* Where the daemon is: read again by memtrace_attach, which memtracectl
 * calls after pointing MEMTRACE_RUNTIME_DIR at its own daemon. */
static void config_socket(void)
{
	const char *v;
	char dir[256];

	if ((v = getenv("MEMTRACE_SOCKET")) != NULL && v[0] != '\0' &&
	    strlen(v) < sizeof(g_cfg.socket)) {
		strcpy(g_cfg.socket, v);
	} else if (paths_runtime_dir(dir, sizeof(dir)) == 0) {
		paths_join(g_cfg.socket, sizeof(g_cfg.socket), dir, PATHS_AGENT_SOCK);
	}
	paths_join(g_cfg.fallback, sizeof(g_cfg.fallback), PATHS_SYSTEM_RUNTIME_DIR,
	           PATHS_AGENT_SOCK);
	if (strcmp(g_cfg.fallback, g_cfg.socket) == 0)
		g_cfg.fallback[0] = '\0';
}

/* The daemon must never trace itself: its loop would wait on its own socket. */
static int is_daemon(void)
{
	char exe[256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = '\0';
	const char *base = strrchr(exe, '/');
	base = base ? base + 1 : exe;
	return strcmp(base, "memtraced") == 0 || strcmp(base, "lt-memtraced") == 0;
}

/* ---- threads ---- */

static pthread_key_t thread_key;
static int thread_key_ok;

static void thread_exit(void *arg)
{
	struct shm_ring *r = arg;
	if (r != NULL && agent_tls.ring == r) {
		agent_tls.ring = NULL;
		agent_tls.dead = 1;
		unwind_thread_exit(&agent_tls);
		ring_retire(r);
		sender_wake();
	}
}

/* The thread's first event (or its first in a new session): its ring. */
static __attribute__((noinline)) struct shm_ring *thread_ring_first(struct agent_tls *t)
{
	if (t->stack_hi == 0)
		unwind_thread_init(t);
	t->ring = ring_acquire(sysdep_gettid());
	/* After the key destructor ran, a late allocation still gets a ring;
	 * the sender reclaims it when it sees the thread is gone. */
	if (t->ring != NULL && !t->dead && thread_key_ok)
		pthread_setspecific(thread_key, t->ring);
	return t->ring;
}

static inline struct shm_ring *thread_ring(struct agent_tls *t)
{
	if (__builtin_expect(t->ring != NULL, 1))
		return t->ring;
	return thread_ring_first(t);
}

/* The thread's first event since memtrace_attach started a new session:
 * what it kept of the last one (its ring, the stacks it interned there)
 * belongs to a region that is gone. */
static void new_epoch(struct agent_tls *t)
{
	t->ring = NULL;
	t->last_n = 0;
	t->last_id = 0;
	t->last_seq = 0;
	t->last_alloc = 0;
	t->epoch = atomic_load(&g_epoch);
}

/* ---- fork and exit ---- */

static inline struct shm_ring *thread_ring(struct agent_tls *t);
static inline int reserve(struct shm_ring *r, uint64_t k);
static void count_lost(uint64_t allocs, uint64_t bytes, uint64_t frees, uint64_t other);
static inline uint64_t seq_take(struct agent_tls *t, struct shm_ring *r);
static inline void seq_done(struct shm_ring *r);
static inline void put(struct shm_ring *r, uint64_t seq, enum proto_ev_kind kind, const void *p,
                       uint64_t size, uint32_t stack);

static void child_start(void)
{
	int expect = AGENT_CHILD;
	if (!atomic_compare_exchange_strong(&g_state, &expect, AGENT_STARTING))
		return;
	g_pid = getpid();
	/* The child's own constructor may still be to come (a library's
	 * constructor forked): it must not start a second sender. */
	atomic_store(&g_connecting, 1);
	if (sender_start() == 0)
		atomic_store(&g_state, AGENT_ACTIVE);
	else
		atomic_store(&g_state, AGENT_DISABLED);
}

/*
 * Before fork: a FORK record marks the point in the process's sequence where
 * the child starts. The daemon keeps the heap as it is at that record for the
 * child, which names it in its HELLO (fork_seq): the child's statistics then
 * start with every block its parent held, attributed to the parent's stacks.
 * A block another thread allocates while this one forks may land on either
 * side of the mark (its free in the child then counts as unknown): fork
 * from a multi-threaded process is racy in the same way for the program.
 */
static void atfork_prepare(void)
{
	struct agent_tls *t = &agent_tls;

	g_fork_seq = 0;
	/* A fork child that has not allocated yet (AGENT_CHILD: its region and
	 * connection are its own, its sender not started) marks its forks too:
	 * its own children must not take its region. */
	int st = atomic_load(&g_state);
	if (g_cfg.follow_fork && t->guard == 0 && (st == AGENT_ACTIVE || st == AGENT_CHILD)) {
		t->guard++;
		if (t->epoch != atomic_load(&g_epoch))
			new_epoch(t);
		struct shm_ring *r = thread_ring(t);
		if (r != NULL && reserve(r, 1) == 0) {
			uint64_t s = seq_take(t, r);
			put(r, s, PROTO_EV_FORK, NULL, 0, 0);
			seq_done(r);
			g_fork_seq = s;
		} else {
			count_lost(0, 0, 0, 1);
		}
		t->guard--;
	}
	sender_fork_prepare();
}

static void atfork_parent(void)
{
	sender_fork_parent();
}

static void atfork_child(void)
{
	int st = atomic_load(&g_state);
	sender_fork_parent(); /* release the lock prepare took */
	/* Not followed: nor is anything this child execs (lineage.h). */
	if (!g_cfg.follow_fork)
		lineage_drop_preload();
	if (st != AGENT_ACTIVE && st != AGENT_STARTING && st != AGENT_CHILD)
		return;
	/* Nothing of the parent may reach the child's session: the child
	 * forgets the parent's connection and records into a region of its
	 * own; the parent's memory is unmapped (it is shared: the child must
	 * not be able to write into it, whatever it runs later). */
	sender_after_fork_child();
	agent_tls.ring = NULL;
	if (!g_cfg.follow_fork) {
		atomic_store(&g_state, AGENT_DISABLED);
		region_drop();
		return;
	}
	if (region_fork_child() < 0) {
		atomic_store(&g_state, AGENT_DISABLED);
		sysdep_say("cannot map memory for the forked child; it runs untraced", NULL, NULL);
		return;
	}
	/* The daemon gives the child its parent's heap as it was at the FORK
	 * record (HELLO names it). */
	g_parent_pid = g_pid;
	g_pid = getpid();
	/* The child draws its own samples, not a replay of the parent's; it
	 * frees its parent's sampled blocks. */
	sampleset_after_fork_child();
	agent_tls.rng = 0;
	agent_tls.sample_left = 0;
	/* Listed from its start: HELLO now, the sender thread at its first
	 * allocator call (pthread_create is no fork handler's business). A
	 * child that only execs records nothing, and its session leaves
	 * nothing behind. */
	if (sender_hello() < 0) {
		atomic_store(&g_state, AGENT_DISABLED);
		return;
	}
	atomic_store(&g_state, AGENT_CHILD);
}

/* ---- start-up ---- */

/*
 * Whether the program's allocator calls reach the hooks. The program calls
 * the first definition of malloc in the global lookup order; when that is
 * not the agent's (another allocator preloaded before it, or one linked into
 * the program), nothing the program allocates is seen. Then the agent says so
 * once, sets g_bypassed (HELLO carries it, `stats` shows it) and goes on: the
 * process is still listed, with what little does reach it.
 */
static void check_interposed(void)
{
	static const char *const names[] = {"malloc", "free", "calloc", "realloc"};
	char line[512];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uintptr_t a = (uintptr_t)dlsym(RTLD_DEFAULT, names[i]);
		const ElfW(Sym) *sym = NULL;
		Dl_info info;
		if (a == 0 || (a >= g_self_lo && a < g_self_hi))
			continue;
		/* A non-PIE program that takes malloc's address has an
		 * undefined symbol whose value is a PLT entry, which dlsym
		 * returns; that entry calls the agent's malloc. Only a real
		 * definition bypasses the hooks. */
		if (dladdr1((void *)a, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || sym == NULL ||
		    sym->st_shndx == SHN_UNDEF)
			continue;
		const char *who = "the program itself";
		if (info.dli_fname != NULL && info.dli_fname[0] != '\0')
			who = info.dli_fname;
		g_bypassed = true;
		snprintf(line, sizeof(line), "%s in %s comes before libmemtrace.so", names[i], who);
		sysdep_say("hooks bypassed: ", line, "; the program's allocations are not traced");
		return;
	}
}

/* Everything recording needs, set up by the first allocator call that reaches
 * the agent (a hook or the constructor, with the recursion guard held). It
 * makes no connection and starts no thread: see start_session. */
static void trace_init(void)
{
	int expect = AGENT_UNINIT;
	if (!atomic_compare_exchange_strong(&g_state, &expect, AGENT_STARTING))
		return;
	if (is_daemon()) {
		atomic_store(&g_state, AGENT_DISABLED);
		return;
	}
	read_config();
	/* Under MEMTRACE_FOLLOW_FORK=0 a descendant of the traced process stays
	 * untraced, however it was started (lineage.h). */
	if (!g_cfg.follow_fork && lineage_is_descendant()) {
		atomic_store(&g_state, AGENT_DISABLED);
		return;
	}
	modules_find_self();
	int rc = region_create(1);
	if (rc < 0) {
		sysdep_say("cannot create the memory shared with memtraced (", strerror(-rc),
		           "); running untraced");
		atomic_store(&g_state, AGENT_DISABLED);
		return;
	}
	if (stacktab_init(g_region) < 0) {
		sysdep_say("cannot map the stack table; running untraced", NULL, NULL);
		atomic_store(&g_state, AGENT_DISABLED);
		return;
	}
	/* Sampled: the frees of unsampled blocks are not sent (sampleset.h);
	 * without the set every free is, as the daemon expects of none. */
	if (g_cfg.sample_bytes != 0 && sampleset_init() < 0)
		sysdep_say("cannot map the set of sampled blocks; every free is sent", NULL, NULL);
	unwind_init();
	sender_on_detach(agent_detach);
	thread_key_ok = pthread_key_create(&thread_key, thread_exit) == 0;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (!g_late)
		check_interposed();
	g_pid = getpid();
	atomic_store(&g_state, AGENT_ACTIVE);
}

/*
 * Connects to the daemon and starts the sender, once: from the constructor,
 * or from a hook whose ring filled before the constructor ran (nobody would
 * drain it otherwise). Not from the first hook: pthread_create allocates and
 * takes the loader's TLS lock, and that first call can come from anywhere.
 * When the daemon cannot be reached the early events stay in the rings and
 * the program runs untraced.
 */
static void start_session(void)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&g_connecting, &expect, 1))
		return;
	if (atomic_load(&g_state) != AGENT_ACTIVE)
		return;
	if (sender_start() < 0) {
		int active = AGENT_ACTIVE;
		atomic_compare_exchange_strong(&g_state, &active, AGENT_DISABLED);
	}
}

/* ---- loaded into a running process (memtracectl attach) ---- */

/* A symbol only the agent defines: the program's scope (its handle,
 * dlopen(NULL)) has it when the agent was preloaded, not when it was
 * dlopen'ed (RTLD_LOCAL) into the running process. RTLD_DEFAULT would not
 * tell: from the agent, it searches the agent's own scope too. */
AGENT_EXPORT const char memtrace_agent_preloaded[] = "memtrace";

static bool loaded_late(void)
{
	/* The program's handle is never unloaded: no dlclose (which would
	 * also be the agent's own, hooks.c). */
	void *prog = dlopen(NULL, RTLD_NOW);
	return prog != NULL && dlsym(prog, "memtrace_agent_preloaded") == NULL;
}

static pthread_mutex_t late_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gotpatch_hook late_hooks[24];
static size_t late_nhooks;
static uintptr_t late_base;
static void *(*late_real_dlopen)(const char *, int);

/* The GOT entries attach_hooks rewrote hold what they held before again
 * (none rewritten: nothing to do). */
static void late_unpatch(void)
{
	pthread_mutex_lock(&late_lock);
	gotpatch_restore();
	pthread_mutex_unlock(&late_lock);
}

/* The program's dlopen once the agent is attached: the object it loads
 * (and its dependencies) call the hooks too. */
static void *late_dlopen(const char *file, int mode)
{
	void *h = late_real_dlopen(file, mode);
	if (h != NULL) {
		pthread_mutex_lock(&late_lock);
		/* Not after a detach, which put the entries back under the lock. */
		if (atomic_load(&g_state) == AGENT_ACTIVE)
			gotpatch_all(late_hooks, late_nhooks, late_base, late_base + 1);
		pthread_mutex_unlock(&late_lock);
	}
	return h;
}

/* Points every loaded object's GOT entries of the allocator (and of the
 * descriptor functions fdguard.c guards, and dlclose and dlopen) at the
 * agent's definitions: the program's calls reach the hooks from now on. */
static void attach_hooks(void)
{
	static const char *const names[] = {
	    "malloc",        "free",      "calloc", "realloc", "reallocarray", "posix_memalign",
	    "aligned_alloc", "memalign",  "valloc", "pvalloc", "dlclose",      "close",
	    "close_range",   "closefrom", "dup2",   "dup3",    "pipe2"};
	Dl_info self;

	if (dladdr((void *)attach_hooks, &self) == 0)
		return;
	/* Our own definitions: through a handle of the agent, not the global
	 * scope, which names the program's. */
	void *h = dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD);
	late_real_dlopen = (void *(*)(const char *, int))late_symbol("dlopen");
	if (h == NULL || late_real_dlopen == NULL) {
		sysdep_say("attach: cannot find the agent's own functions; nothing is traced", NULL,
		           NULL);
		return;
	}
	pthread_mutex_lock(&late_lock);
	late_base = (uintptr_t)self.dli_fbase;
	/* Attached again after a detach: the same hooks, found once. */
	if (late_nhooks == 0) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			void *fn = dlsym(h, names[i]);
			if (fn != NULL)
				late_hooks[late_nhooks++] = (struct gotpatch_hook){names[i], fn};
		}
		late_hooks[late_nhooks++] = (struct gotpatch_hook){"dlopen", (void *)late_dlopen};
	}
	int n = gotpatch_all(late_hooks, late_nhooks, late_base, late_base + 1);
	pthread_mutex_unlock(&late_lock);
	if (n < 0)
		sysdep_say("attach: some calls could not be redirected: ", strerror(-n), NULL);
}

/* ---- detach, and attach again ---- */

/*
 * memtraced asked to stop tracing (memtracectl detach); the sender thread
 * calls this (sender.h). From here on every hook passes its call straight
 * through, and the GOT entries an attach rewrote hold the allocator's
 * functions again: the program calls it directly. The sender then lets the
 * threads that were recording finish, tells the daemon and hangs up; the
 * daemon reads the region to its end and keeps the exit-style snapshot.
 * 0, or -EALREADY when tracing had stopped already.
 */
static int agent_detach(void)
{
	int expect = AGENT_ACTIVE;
	if (!atomic_compare_exchange_strong(&g_state, &expect, AGENT_DETACHED))
		return -EALREADY;
	late_unpatch();
	return 0;
}

/*
 * A new session in a process the agent is in already, whose tracing stopped:
 * detached, or its daemon went away. memtracectl attach calls it in the
 * process (after dlopen, which finds the agent loaded and runs no
 * constructor). A fresh region and stack table, every thread's ring and
 * cached stack ids forgotten (g_epoch), a new connection and sender thread,
 * and, for an agent loaded late, the GOT entries pointed at the hooks again.
 * Returns 0 when tracing, 1 when it was tracing already (for some daemon),
 * -EBUSY while a detach is still ending, -EPERM when this process is not
 * to be traced (memtraced itself, MEMTRACE_FOLLOW_FORK=0's descendants),
 * else -errno (the daemon could not be reached: the process's stderr says
 * why).
 */
AGENT_EXPORT int memtrace_attach(void)
{
	struct agent_tls *t = &agent_tls;
	int rc, st = atomic_load(&g_state);

	t->guard++;
	if (st == AGENT_ACTIVE)
		rc = 1;
	else if ((st != AGENT_DETACHED && st != AGENT_DISABLED) || g_region == NULL)
		rc = st == AGENT_STARTING ? -EBUSY : -EPERM;
	else if (sender_detaching() ||
	         !atomic_compare_exchange_strong(&g_state, &st, AGENT_STARTING))
		rc = -EBUSY;
	else if ((rc = (region_retire(), region_create(1))) < 0) {
		sysdep_say("attach: cannot create the memory shared with memtraced (",
		           strerror(-rc), "); running untraced");
		atomic_store(&g_state, AGENT_DISABLED);
	} else {
		ring_reset_after_fork();
		stacktab_reset(g_region);
		cfi_forget();
		config_socket();
		g_pid = getpid();
		g_parent_pid = 0;
		g_fork_seq = 0;
		g_attached = true;
		atomic_fetch_add(&g_epoch, 1);
		atomic_store(&g_connecting, 0);
		atomic_store(&g_state, AGENT_ACTIVE);
		start_session();
		if (g_late && atomic_load(&g_state) == AGENT_ACTIVE)
			attach_hooks();
		rc = atomic_load(&g_state) == AGENT_ACTIVE ? 0 : -ECONNREFUSED;
	}
	t->guard--;
	return rc;
}

/* Runs after the constructors of the libraries loaded after the agent (the
 * program's own dependencies), whose allocations the first hook call has
 * already started recording. Loaded late, it runs inside the dlopen that
 * memtracectl attach makes the process call. */
__attribute__((constructor)) static void agent_init(void)
{
	agent_tls.guard++;
	g_late = loaded_late();
	g_attached = g_late;
	if (atomic_load(&g_real_ready) != 2)
		agent_resolve_real();
	/* Loaded late: the calls reach the hooks before tracing starts, so
	 * that what trace_init makes (libunwind's validation pipe) goes
	 * through them too (fdguard.h keeps it high). The hooks pass every
	 * call through until the state is AGENT_ACTIVE. */
	if (g_late)
		attach_hooks();
	trace_init();
	/* A thread some library's constructor started may be inside
	 * trace_init: the session needs it finished. */
	while (atomic_load(&g_state) == AGENT_STARTING)
		sched_yield();
	/* A library's constructor forked before this one ran: this is the
	 * child, which starts its own session now, as on its first event. */
	if (atomic_load(&g_state) == AGENT_CHILD)
		child_start();
	else
		start_session();
	/* Not traced after all (no daemon, refused): the calls go straight
	 * to the allocator again. */
	if (g_late && atomic_load(&g_state) != AGENT_ACTIVE)
		late_unpatch();
	agent_tls.guard--;
}

__attribute__((destructor)) static void agent_fini(void)
{
	/* A clean exit: say so in the region. Tracing goes on through the
	 * exit handlers and destructors that run after this one; the daemon
	 * reads the rings once more when the process is gone. */
	if (g_pid != getpid() || g_shm == NULL || atomic_load(&g_state) != AGENT_ACTIVE)
		return;
	sender_exit_check();
	if (atomic_load(&g_state) == AGENT_ACTIVE)
		atomic_store(&g_shm->exiting, 1);
}

/* ---- the recording path ---- */

struct agent_tls *agent_enter_slow(void)
{
	struct agent_tls *t = &agent_tls;
	if (t->guard)
		return NULL;
	int st = atomic_load_explicit(&g_state, memory_order_acquire);
	if (__builtin_expect(st != AGENT_ACTIVE, 0)) {
		if (st != AGENT_CHILD && st != AGENT_UNINIT)
			return NULL;
		/* The process's first allocator call (tracing starts here, before
		 * any constructor of the agent ran), or a fork child's. */
		t->guard++;
		if (st == AGENT_UNINIT)
			trace_init();
		else
			child_start();
		t->guard--;
		if (atomic_load(&g_state) != AGENT_ACTIVE)
			return NULL;
	}
	t->guard++;
	if (__builtin_expect(t->epoch != atomic_load_explicit(&g_epoch, memory_order_relaxed), 0))
		new_epoch(t);
	return t;
}

/* A stack the walk memo did not know: walked, interned and remembered. Out
 * of line, so that its arrays (4 KiB of frames) do not make the frame of
 * every allocation's agent_stack that big: the memo's hits, most calls,
 * stay on a small stack frame next to the caller's. */
static __attribute__((noinline)) uint32_t stack_walk(struct agent_tls *t, struct unwind_walk *w)
{
	uint64_t frames[AGENT_MAX_FRAMES];
	uint32_t id, n = unwind_capture(t, w, frames, g_cfg.nframes);

	if (n == 0) {
		atomic_fetch_add_explicit(&g_shm->nostack, 1, memory_order_relaxed);
		return 0;
	}
	/* Loops allocate from the same stack again and again: a compare with
	 * the thread's previous stack is cheaper than hashing into the table. */
	if (n == t->last_n && t->last_id != 0 &&
	    memcmp(frames, t->last_frames, n * sizeof(*frames)) == 0) {
		unwind_learn(t, w, t->last_id);
		return t->last_id;
	}
	id = stacktab_intern(frames, n);
	if (id == 0) {
		atomic_fetch_add_explicit(&g_shm->nostack, 1, memory_order_relaxed);
		return 0;
	}
	unwind_learn(t, w, id);
	if (n <= AGENT_LAST_FRAMES) {
		memcpy(t->last_frames, frames, n * sizeof(*frames));
		t->last_n = n;
		t->last_id = id;
	}
	return id;
}

uint32_t agent_stack(struct agent_tls *t, const void *from)
{
	struct unwind_walk w;

	/* The thread's first event: learn its stack bounds before walking it. */
	if (__builtin_expect(t->ring == NULL, 0) && thread_ring(t) == NULL)
		return 0;
	uint32_t id = unwind_known(t, &w, g_cfg.nframes, from);
	return id != 0 ? id : stack_walk(t, &w);
}

static uint64_t xorshift(struct agent_tls *t)
{
	if (t->rng == 0)
		t->rng = ((uint64_t)(uintptr_t)t ^ sysdep_now_ns() ^ 0x9e3779b97f4a7c15ull) +
		         (uint64_t)sysdep_gettid() * 0xbf58476d1ce4e5b9ull;
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

/* Bytes up to and including the next sampled byte: 1 + an exponential with
 * mean sample_bytes, so each byte is sampled independently with probability
 * 1/sample_bytes (a Poisson process over the bytes the thread allocates). */
static int64_t next_sample(struct agent_tls *t)
{
	double u = ((double)(xorshift(t) >> 11) + 1.0) / 9007199254740993.0;
	double d = -log(u) * (double)g_cfg.sample_bytes;
	return d > 9e18 ? INT64_MAX : (int64_t)d + 1;
}

/*
 * A block is recorded when one of its bytes is sampled: with probability
 * p = 1 - exp(-size/rate), since the bytes left to the next sampled byte are
 * exponential and, the process being memoryless, independent of every block
 * before. It is recorded at its true size; the daemon weighs it by 1/p
 * (daemon/sampling.h), because it keeps the size to undo the same weight at
 * the free, and so an unsampled allocation costs a compare and a subtraction
 * here, no exp(). The sampled bytes after the first one inside the block
 * would sample it again; they are skipped, and by the same memorylessness
 * the gap to the next sampled byte starts afresh at the block's end.
 */
uint64_t agent_sample_slow(struct agent_tls *t, uint64_t size)
{
	if (t->sample_left <= 0) {
		t->sample_left = next_sample(t); /* the thread's first allocation */
		if ((uint64_t)t->sample_left > size) {
			t->sample_left -= (int64_t)size;
			return 0;
		}
	}
	t->sample_left = next_sample(t);
	return size;
}

/*
 * Counts records the agent could not write, in the region's header where the
 * daemon reads them: `allocs` allocations of `bytes` bytes in all, `frees`
 * frees, `other` FORK marks. Every record a traced call would have written
 * and did not is counted here, exactly once, so the daemon's allocations
 * plus lost_allocs are the program's allocations.
 */
static void count_lost(uint64_t allocs, uint64_t bytes, uint64_t frees, uint64_t other)
{
	if (g_shm == NULL)
		return;
	if (allocs != 0) {
		atomic_fetch_add(&g_shm->lost_allocs, allocs);
		atomic_fetch_add(&g_shm->lost_bytes, bytes);
	}
	if (frees != 0)
		atomic_fetch_add(&g_shm->lost_frees, frees);
	/* Last: the daemon takes a change of `lost` as news. */
	atomic_fetch_add(&g_shm->lost, allocs + frees + other);
}

/* Every ring slot of the region is taken (SHM_NRINGS threads record at
 * once): the thread's events are counted lost (by the caller), and said
 * once. */
static void no_ring(void)
{
	static _Atomic int said;
	if (g_shm != NULL && !atomic_exchange(&said, 1))
		sysdep_say("more threads record at once than the shared memory has rings for; "
		           "their events are counted lost",
		           NULL, NULL);
}

/*
 * Lossless mode waited MEMTRACE_BLOCK_TIMEOUT seconds on a ring the daemon
 * did not read at all: the daemon is stopped, hung or far behind. The agent
 * stops waiting for good, says so once, and goes on as drop mode does: what
 * fits in the rings is recorded, the rest counted lost, so the session is
 * marked truncated with the exact count.
 */
static void give_up(void)
{
	char num[24];

	if (atomic_exchange(&g_shm->gave_up, 1))
		return;
	sysdep_say("memtraced read nothing for ", sysdep_u64_str(num, g_cfg.block_ns / 1000000000u),
	           " s (MEMTRACE_BLOCK_TIMEOUT): the program goes on without waiting, and the "
	           "events that do not fit are dropped and counted from now on");
}

/* The ring is full: waits for room for `k` records in lossless mode, until
 * the daemon has not moved the ring's tail for MEMTRACE_BLOCK_TIMEOUT.
 * Returns 0, or -1 when they must be dropped (the caller counts them). */
static __attribute__((noinline, cold)) int reserve_full(struct shm_ring *r, uint64_t k)
{
	/* Full before the constructor ran: nobody drains it yet. */
	if (!atomic_load_explicit(&g_connecting, memory_order_relaxed)) {
		start_session();
		if (atomic_load(&g_state) != AGENT_ACTIVE)
			return -1;
	}
	if (g_cfg.drop || atomic_load_explicit(&g_shm->gave_up, memory_order_relaxed)) {
		sender_wake();
		return -1;
	}
	/* Progress is the consumer's position, not the time waited: a slow
	 * daemon that reads at all never trips the timeout. */
	uint64_t tail = atomic_load(&r->tail), since = sysdep_now_ns();
	while (RING_CAP - ring_used(r) < k) {
		atomic_fetch_add(&r->waiters, 1);
		uint32_t tf = atomic_load(&r->tail_futex);
		sender_wake();
		if (RING_CAP - ring_used(r) < k)
			sysdep_futex_wait_shared(&r->tail_futex, tf, 20 * 1000 * 1000);
		atomic_fetch_sub(&r->waiters, 1);
		int st = atomic_load(&g_state);
		if (st != AGENT_ACTIVE && st != AGENT_SHUTDOWN)
			return -1;
		uint64_t now = sysdep_now_ns(), t = atomic_load(&r->tail);
		if (t != tail) {
			tail = t;
			since = now;
		} else if (g_cfg.block_ns != 0 && now - since >= g_cfg.block_ns) {
			give_up();
		}
		/* This thread or another one gave up: nobody waits any more. */
		if (RING_CAP - ring_used(r) < k &&
		    atomic_load_explicit(&g_shm->gave_up, memory_order_relaxed))
			return -1;
	}
	return 0;
}

/* Room for `k` records: 0, or -1 when they must be dropped. */
static inline int reserve(struct shm_ring *r, uint64_t k)
{
	uint64_t used = ring_used(r);
	if (__builtin_expect(RING_CAP - used < k, 0))
		return reserve_full(r, k);
	if (used >= RING_CAP / 4 && !atomic_load_explicit(&r->wake_sent, memory_order_relaxed)) {
		atomic_store_explicit(&r->wake_sent, 1, memory_order_relaxed);
		sender_wake();
	}
	return 0;
}

/* Publishes a lower bound of the seq this thread is about to take, then takes
 * it. The sender must not be able to read `pending` as clear while this
 * thread holds a seq it has not published (ring.h): the store has to be
 * visible before the fetch_add reads g_seq. On x86 the locked add is a full
 * barrier that drains the store buffer, so a plain store is enough and we
 * avoid a second barrier on every event (it showed as 15 ns per event in
 * bench/); elsewhere the store is sequentially consistent. */
static inline uint64_t seq_take(struct agent_tls *t, struct shm_ring *r)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_store_explicit(&r->pending, t->last_seq + 1, memory_order_relaxed);
	__asm__ __volatile__("" ::: "memory");
#else
	atomic_store_explicit(&r->pending, t->last_seq + 1, memory_order_seq_cst);
#endif
	uint64_t s = atomic_fetch_add_explicit(&g_shm->seq, 1, memory_order_seq_cst);
	t->last_seq = s;
	return s;
}

static inline void seq_done(struct shm_ring *r)
{
	atomic_store_explicit(&r->pending, UINT64_MAX, memory_order_release);
}

static inline void put(struct shm_ring *r, uint64_t seq, enum proto_ev_kind kind, const void *p,
                       uint64_t size, uint32_t stack)
{
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	struct shm_ev *e = &r->ev[h & (RING_CAP - 1)];
	e->seq_kind = seq << PROTO_EV_KIND_BITS | (uint64_t)kind;
	e->addr = (uint64_t)(uintptr_t)p;
	e->size = size;
	e->stack = stack;
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

/* A FREE record's size field: PROTO_FREE_TEMPORARY when p is this thread's
 * last allocation, freed before the thread allocated again (heaptrack's
 * temporary allocation), else 0. */
static inline uint64_t temporary(struct agent_tls *t, const void *p)
{
	if ((uintptr_t)p != t->last_alloc)
		return 0;
	t->last_alloc = 0;
	return PROTO_FREE_TEMPORARY;
}

void agent_record_alloc(struct agent_tls *t, void *p, uint64_t size, uint32_t stack)
{
	struct shm_ring *r = thread_ring(t);
	if (r == NULL)
		no_ring();
	if (r == NULL || reserve(r, 1) < 0) {
		count_lost(1, size, 0, 0);
		return;
	}
	uint64_t s = seq_take(t, r);
	put(r, s, PROTO_EV_ALLOC, p, size, stack);
	seq_done(r);
}

void agent_record_free(struct agent_tls *t, void *p)
{
	struct shm_ring *r = thread_ring(t);
	if (r == NULL)
		no_ring();
	if (r == NULL || reserve(r, 1) < 0) {
		count_lost(0, 0, 1, 0);
		return;
	}
	uint64_t s = seq_take(t, r);
	put(r, s, PROTO_EV_FREE, p, temporary(t, p), 0);
	seq_done(r);
}

void agent_realloc_begin(struct agent_tls *t, struct agent_realloc_tx *tx)
{
	tx->ring = thread_ring(t);
	if (tx->ring == NULL)
		no_ring();
	tx->ok = tx->ring != NULL && reserve(tx->ring, 2) == 0;
	if (tx->ok)
		tx->free_seq = seq_take(t, tx->ring);
}

void agent_realloc_end(struct agent_tls *t, struct agent_realloc_tx *tx, void *old, void *newp,
                       uint64_t size, uint32_t stack, int freed)
{
	/* Dropped: what the call turned out to be is what was lost. */
	if (!tx->ok) {
		int alloc = newp != NULL && size != 0;
		count_lost(alloc, alloc ? size : 0, freed && old != NULL, 0);
		if (newp != NULL)
			t->last_alloc = (uintptr_t)newp;
		return;
	}
	struct shm_ring *r = tx->ring;
	if (freed && old != NULL)
		put(r, tx->free_seq, PROTO_EV_FREE, old, temporary(t, old), 0);
	if (newp != NULL)
		t->last_alloc = (uintptr_t)newp;
	if (newp != NULL && size != 0) {
		uint64_t s = atomic_fetch_add_explicit(&g_shm->seq, 1, memory_order_seq_cst);
		t->last_seq = s;
		put(r, s, PROTO_EV_ALLOC, newp, size, stack);
	}
	seq_done(r);
}
