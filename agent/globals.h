/*
 * globals.h - every piece of the agent's mutable global state, in one place.
 *
 * The agent runs inside somebody else's process, inside their malloc, on all
 * of their threads. Its state is therefore either _Atomic (shared between the
 * program's threads and the sender thread) or _Thread_local with the
 * initial-exec TLS model (so reaching it never calls into the dynamic loader
 * or allocates). The configuration (and g_bypassed) is written once, by the
 * first allocator call that reaches the agent or by its constructor,
 * whichever comes first, before g_state becomes AGENT_ACTIVE, and only read
 * afterwards.
 */
#ifndef MEMTRACE_AGENT_GLOBALS_H
#define MEMTRACE_AGENT_GLOBALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum agent_state {
	AGENT_UNINIT = 0, /* nothing set up: the next allocator call does it */
	AGENT_STARTING,   /* (re)initialising on some thread: pass through */
	AGENT_ACTIVE,     /* tracing (the sender may not run yet: events wait) */
	AGENT_CHILD,      /* forked child that will start its own session */
	AGENT_DISABLED,   /* no daemon, or tracing refused: pass through */
	AGENT_SHUTDOWN,   /* process exiting: pass through */
	AGENT_DETACHED,   /* memtracectl detach ended the session: pass through
	                   * until memtrace_attach starts another */
};

#define AGENT_MAX_FRAMES      256
#define AGENT_LAST_FRAMES     64 /* stacks up to this depth are remembered per thread */
#define AGENT_BLOCK_TIMEOUT_S 5  /* MEMTRACE_BLOCK_TIMEOUT's default */

struct agent_config {
	uint32_t nframes;        /* MEMTRACE_NFRAMES, default 32 */
	bool fp;                 /* MEMTRACE_UNWIND=fp */
	bool libunwind;          /* MEMTRACE_UNWIND=libunwind: not our own walker first */
	bool unwind_check;       /* MEMTRACE_UNWIND_CHECK=1: walk both ways, compare */
	char unwind_report[256]; /* MEMTRACE_UNWIND_CHECK=/path: its counts there, else stderr */
	bool drop;               /* MEMTRACE_ON_FULL=drop */
	bool follow_fork;        /* MEMTRACE_FOLLOW_FORK, default on */
	uint64_t block_ns;       /* MEMTRACE_BLOCK_TIMEOUT in ns, 0 = wait for ever */
	uint64_t sample_bytes;   /* MEMTRACE_SAMPLE, 0 = every allocation */
	char socket[108];        /* sockaddr_un path of agent.sock */
	char fallback[108];      /* system daemon's socket, tried second */
};

struct shm_ring;
struct cfi_cache;

/* Per thread. Zero-initialised TLS is the valid "nothing yet" state. */
struct agent_tls {
	int guard;             /* > 0 while inside the agent: nested calls pass through */
	int dead;              /* the thread's key destructor ran */
	struct shm_ring *ring; /* this thread's event ring, NULL until first event */
	uint64_t last_seq;     /* last sequence number this thread took */
	int64_t sample_left;   /* bytes until the next sampled allocation */
	uint64_t rng;          /* xorshift state for sampling */
	uintptr_t stack_lo;    /* this thread's stack, for the frame-pointer walk */
	uintptr_t stack_hi;
	struct cfi_cache *cfi; /* this thread's compiled unwind rules (cfi.h) */
	uint32_t last_n;       /* the previous stack this thread interned */
	uint32_t last_id;
	uintptr_t last_alloc; /* this thread's last allocation, until it is freed */
	uint32_t epoch;       /* g_epoch when this thread last recorded */
	uint64_t last_frames[AGENT_LAST_FRAMES];
};

extern _Thread_local struct agent_tls agent_tls __attribute__((tls_model("initial-exec")));

extern _Atomic int g_state; /* enum agent_state */
/* The sequence counter and the lost and nostack counts are in the shared
 * region's header (region.h: g_shm), where the daemon reads them. */
extern struct agent_config g_cfg;
extern pid_t g_pid;              /* pid the current session belongs to */
extern pid_t g_parent_pid;       /* a fork child: the parent's pid (HELLO) */
extern uint64_t g_fork_seq;      /* the FORK record of the last fork, 0 = none */
extern _Atomic int g_connecting; /* the daemon connection was started (once) */
extern bool g_bypassed;          /* the program's malloc is not the agent's */
/* Loaded into a running process (memtracectl attach), not preloaded: the
 * hooks are reached through the GOTs the agent rewrote (gotpatch.h). */
extern bool g_late;
/* Which session the process is in: memtrace_attach after a detach starts
 * another, with a region of its own. A thread whose epoch differs forgets
 * what it kept of the last one (its ring, its cached stack ids) at its next
 * event (agent_enter). */
extern _Atomic uint32_t g_epoch;
/* The session started in a process that had run untraced: loaded late, or
 * attached again after a detach. Earlier blocks are unknown (HELLO says). */
extern bool g_attached;
extern uintptr_t g_self_lo, g_self_hi; /* the agent's own text: frames to skip */

/* The real allocator, found with dlsym(RTLD_NEXT). */
struct agent_real {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
};
extern struct agent_real g_real;
extern _Atomic int g_real_ready; /* 0 unresolved, 1 resolving, 2 ready */

#endif
