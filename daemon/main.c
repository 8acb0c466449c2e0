/*
 * main.c - memtraced: options, directories, sockets, the loop, clean stop.
 *
 * memtraced runs in the foreground and logs to stderr (systemd style). It
 * binds agent.sock and control.sock in the runtime directory, refusing to
 * start if another daemon already answers there, and removing stale socket
 * files otherwise. SIGTERM and SIGINT stop it cleanly: listeners close,
 * every session ends, the loop drains, then the process exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agentsrv.h"
#include "control.h"
#include "daemon.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "webtoken.h"
#include "paths.h"
#include "rundir.h"
#include "safedir.h"
#include "scheduler.h"
#include "sdnotify.h"
#include "session.h"
#include "symbols.h"
#include "xalloc.h"
#include "xalloc_cjson.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: memtraced [OPTIONS]\n"
	        "Keep the live heap of every process traced with libmemtrace.so and answer\n"
	        "memtracectl. Runs in the foreground and logs to stderr.\n"
	        "\n"
	        "  --runtime-dir DIR    sockets directory (default: $MEMTRACE_RUNTIME_DIR, else\n"
	        "                       /run/memtrace as root, else $XDG_RUNTIME_DIR/memtrace\n"
	        "                       or /tmp/memtrace-$UID)\n"
	        "  --state-dir DIR      state directory (default: $MEMTRACE_STATE_DIR, else\n"
	        "                       /var/lib/memtrace as root, else\n"
	        "                       $XDG_STATE_HOME/memtrace or ~/.local/state/memtrace)\n"
	        "  --max-sessions N     live traced processes at once (default 1024)\n"
	        "  --max-sessions-per-uid N  ... of one uid (default a quarter of --max-sessions)\n"
	        "  --max-exited N       exited processes kept in memory (default 256)\n"
	        "  --max-blocks N       live blocks tracked per process (default 67108864)\n"
	        "  --max-stacks N       distinct stacks per process (default 1048576)\n"
	        "  --max-blocks-per-uid N  live blocks tracked for one uid's processes\n"
	        "                       (default 67108864; ended processes count until\n"
	        "                       forgotten, and make room for live ones)\n"
	        "  --max-blocks-total N ... for everybody's (default 268435456)\n"
	        "  --max-stacks-per-uid N  stacks of one uid's processes (default 2097152)\n"
	        "  --max-stacks-total N ... of everybody's (default 8388608)\n"
	        "  --max-modules N      mapped objects kept per process (default 8192)\n"
	        "  --max-control-connections N  control connections in all (default 256)\n"
	        "  --max-control-connections-per-uid N  ... of one uid (default 16)\n"
	        "  --control-timeout S  close a control client that reads none of its answers,\n"
	        "                       or sends half a request, for S seconds (default 30)\n"
	        "  The *-bytes options take a number of bytes, optionally with K, M, G\n"
	        "  (or KiB, MiB, GiB: all powers of 1024): 512M, 2GiB.\n"
	        "  --max-fork-image-bytes N  parents' heaps kept for their fork children\n"
	        "                       (default 1 GiB; a uid a quarter)\n"
	        "  --max-symbol-cache-bytes N  symbol cache, started afresh past it\n"
	        "                       (default 256 MiB; a uid's processes add a quarter,\n"
	        "                       then their new frames are not cached)\n"
	        "  --max-queued-snapshots N  snapshots waiting to be written (default 256)\n"
	        "  --max-queued-snapshots-per-uid N  ... of one uid's processes (default 64)\n"
	        "  --max-queued-snapshot-bytes N  their memory (default 1 GiB; a uid a quarter)\n"
	        "  --snapshot-interval S  snapshot every live process every S seconds\n"
	        "                       (default 60, 0 = only on demand and at exit)\n"
	        "  --retain-snapshots N keep at most N snapshots per process (default 100,\n"
	        "                       0 = no limit)\n"
	        "  --retain-days D      delete snapshots older than D days (default 30,\n"
	        "                       0 = no limit)\n"
	        "  --max-store-bytes N  bytes of stored snapshots in all; past it the uid\n"
	        "                       holding the most loses its oldest (default 2 GiB,\n"
	        "                       0 = no bound)\n"
	        "  --max-store-bytes-per-uid N  ... of one uid's; past it the uid loses its\n"
	        "                       oldest (default 256 MiB, 0 = no bound)\n"
	        "  --metrics-listen ADDR:PORT  serve Prometheus metrics at\n"
	        "                       http://ADDR:PORT/metrics (default " METRICS_DEFAULT_LISTEN
	        ";\n"
	        "                       [ADDR]:PORT for IPv6; off = no metrics)\n"
	        "  --metrics-top-sites N  allocation sites per process in the metrics\n"
	        "                       (default 10, at most 1000, 0 = only \"other\")\n"
	        "  --metrics-max-connections N  HTTP connections in all (default 64)\n"
	        "  --metrics-max-connections-per-origin N  ... from one origin: a local uid,\n"
	        "                       or a remote address (default 8)\n"
	        "  --debuginfod         let libdw fetch debug info from DEBUGINFOD_URLS\n"
	        "  --no-drain-yield     read the rings at the daemon's priority always, not\n"
	        "                       at idle priority (SCHED_IDLE) while no ring is 3/4\n"
	        "                       full and no thread waits for room (20 ms at most a\n"
	        "                       pass; see memtraced(8))\n"
	        "  --verbose            log debug messages\n"
	        "  --help, --version\n");
}

static int parse_size(const char *opt, const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || s[0] == '-' || s[0] == '\0' || v == 0) {
		fprintf(stderr, "memtraced: %s wants a positive integer, got '%s'\n", opt, s);
		return -EINVAL;
	}
	*out = (size_t)v;
	return 0;
}

/* A number of bytes: digits, then optionally K, M or G (powers of 1024,
 * also written KiB, MiB, GiB). zero_ok: 0 means no bound. */
static int parse_bytes(const char *opt, const char *s, bool zero_ok, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {{"", 0},     {"K", 10},   {"M", 20},  {"G", 30},
	             {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].suffix) == 0)
			break;
	if (errno != 0 || end == s || s[0] < '0' || s[0] > '9' ||
	    i == sizeof(units) / sizeof(units[0]) || (v == 0 && !zero_ok) ||
	    v > (UINT64_MAX >> units[i].shift) || (v << units[i].shift) > SIZE_MAX) {
		fprintf(stderr,
		        "memtraced: %s wants a number of bytes%s, optionally with K, M or G "
		        "(KiB, MiB, GiB: powers of 1024), got '%s'\n",
		        opt, zero_ok ? " (0 = no bound)" : " above 0", s);
		return -EINVAL;
	}
	*out = (uint64_t)v << units[i].shift;
	return 0;
}

static int parse_bytes_size(const char *opt, const char *s, size_t *out)
{
	uint64_t v;
	int rc = parse_bytes(opt, s, false, &v);
	if (rc == 0)
		*out = (size_t)v;
	return rc;
}

/* A non-negative number of seconds (or days), fractions allowed. */
static int parse_seconds(const char *opt, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || s[0] == '\0' || !(v >= 0) || v > 1e9) {
		fprintf(stderr, "memtraced: %s wants a non-negative number, got '%s'\n", opt, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_args(struct daemon *d, int argc, char **argv)
{
	enum {
		O_RUNTIME = 256,
		O_STATE,
		O_SESS,
		O_EXITED,
		O_BLOCKS,
		O_STACKS,
		O_MODULES,
		O_DEBUGINFOD,
		O_NO_YIELD,
		O_VERBOSE,
		O_HELP,
		O_VERSION,
		O_INTERVAL,
		O_RETAIN_N,
		O_RETAIN_DAYS,
		O_METRICS_LISTEN,
		O_METRICS_TOP,
		O_CTL_CONNS,
		O_CTL_CONNS_UID,
		O_SNAPQ,
		O_SNAPQ_UID,
		O_SNAPQ_BYTES,
		O_HTTP_CONNS,
		O_HTTP_CONNS_ORIGIN,
		O_CTL_TIMEOUT,
		O_SESS_UID,
		O_FORK_BYTES,
		O_SYMBOL_BYTES,
		O_STORE_BYTES,
		O_STORE_BYTES_UID,
		O_BLOCKS_UID,
		O_BLOCKS_TOTAL,
		O_STACKS_UID,
		O_STACKS_TOTAL
	};
	static const struct option opts[] = {
	    {"runtime-dir", required_argument, NULL, O_RUNTIME},
	    {"state-dir", required_argument, NULL, O_STATE},
	    {"max-sessions", required_argument, NULL, O_SESS},
	    {"max-exited", required_argument, NULL, O_EXITED},
	    {"max-sessions-per-uid", required_argument, NULL, O_SESS_UID},
	    {"max-fork-image-bytes", required_argument, NULL, O_FORK_BYTES},
	    {"max-symbol-cache-bytes", required_argument, NULL, O_SYMBOL_BYTES},
	    {"max-blocks", required_argument, NULL, O_BLOCKS},
	    {"max-stacks", required_argument, NULL, O_STACKS},
	    {"max-blocks-per-uid", required_argument, NULL, O_BLOCKS_UID},
	    {"max-blocks-total", required_argument, NULL, O_BLOCKS_TOTAL},
	    {"max-stacks-per-uid", required_argument, NULL, O_STACKS_UID},
	    {"max-stacks-total", required_argument, NULL, O_STACKS_TOTAL},
	    {"max-modules", required_argument, NULL, O_MODULES},
	    {"debuginfod", no_argument, NULL, O_DEBUGINFOD},
	    {"no-drain-yield", no_argument, NULL, O_NO_YIELD},
	    {"snapshot-interval", required_argument, NULL, O_INTERVAL},
	    {"retain-snapshots", required_argument, NULL, O_RETAIN_N},
	    {"retain-days", required_argument, NULL, O_RETAIN_DAYS},
	    {"max-store-bytes", required_argument, NULL, O_STORE_BYTES},
	    {"max-store-bytes-per-uid", required_argument, NULL, O_STORE_BYTES_UID},
	    {"metrics-listen", required_argument, NULL, O_METRICS_LISTEN},
	    {"metrics-top-sites", required_argument, NULL, O_METRICS_TOP},
	    {"max-control-connections", required_argument, NULL, O_CTL_CONNS},
	    {"max-control-connections-per-uid", required_argument, NULL, O_CTL_CONNS_UID},
	    {"control-timeout", required_argument, NULL, O_CTL_TIMEOUT},
	    {"max-queued-snapshots", required_argument, NULL, O_SNAPQ},
	    {"max-queued-snapshots-per-uid", required_argument, NULL, O_SNAPQ_UID},
	    {"max-queued-snapshot-bytes", required_argument, NULL, O_SNAPQ_BYTES},
	    {"metrics-max-connections", required_argument, NULL, O_HTTP_CONNS},
	    {"metrics-max-connections-per-origin", required_argument, NULL, O_HTTP_CONNS_ORIGIN},
	    {"verbose", no_argument, NULL, O_VERBOSE},
	    {"help", no_argument, NULL, O_HELP},
	    {"version", no_argument, NULL, O_VERSION},
	    {NULL, 0, NULL, 0},
	};
	char dir[PATH_MAX];
	int c;

	d->cfg.max_sessions = 1024;
	d->cfg.max_exited = 256;
	d->cfg.max_fork_image_bytes = (size_t)1 << 30;
	d->cfg.max_symbol_cache_bytes = (size_t)256 << 20;
	d->cfg.max_blocks = (size_t)64 << 20;
	d->cfg.max_stacks = (size_t)1 << 20;
	d->cfg.max_blocks_per_uid = (size_t)64 << 20;
	d->cfg.max_blocks_total = (size_t)256 << 20;
	d->cfg.max_stacks_per_uid = (size_t)2 << 20;
	d->cfg.max_stacks_total = (size_t)8 << 20;
	d->cfg.max_modules = MODMAP_DEFAULT_MAX;
	d->cfg.snapshot_interval = 60;
	d->cfg.retain_snapshots = 100;
	d->cfg.retain_days = 30;
	d->cfg.max_store_bytes = (uint64_t)2 << 30;
	d->cfg.max_store_bytes_per_uid = (uint64_t)256 << 20;
	d->cfg.metrics_listen = xstrdup(METRICS_DEFAULT_LISTEN);
	d->cfg.metrics_top_sites = METRICS_DEFAULT_TOP_SITES;
	d->cfg.max_control_conns = CONTROL_DEFAULT_MAX_CONNS;
	d->cfg.max_control_conns_per_uid = CONTROL_DEFAULT_MAX_CONNS_PER_UID;
	d->cfg.control_timeout_ms = CONTROL_DEFAULT_STALL_MS;
	d->cfg.max_queued_snapshots = 256;
	d->cfg.max_queued_snapshots_per_uid = 64;
	d->cfg.max_queued_snapshot_bytes = (size_t)1 << 30;
	d->cfg.metrics_max_conns = METRICS_DEFAULT_MAX_CONNS;
	d->cfg.metrics_max_conns_per_origin = METRICS_DEFAULT_MAX_CONNS_PER_ORIGIN;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_RUNTIME:
			free(d->cfg.runtime_dir);
			d->cfg.runtime_dir = xstrdup(optarg);
			break;
		case O_STATE:
			free(d->cfg.state_dir);
			d->cfg.state_dir = xstrdup(optarg);
			break;
		case O_SESS:
			if (parse_size("--max-sessions", optarg, &d->cfg.max_sessions) < 0)
				return -EINVAL;
			break;
		case O_SESS_UID:
			if (parse_size("--max-sessions-per-uid", optarg,
			               &d->cfg.max_sessions_per_uid) < 0)
				return -EINVAL;
			break;
		case O_FORK_BYTES:
			if (parse_bytes_size("--max-fork-image-bytes", optarg,
			                     &d->cfg.max_fork_image_bytes) < 0)
				return -EINVAL;
			break;
		case O_SYMBOL_BYTES:
			if (parse_bytes_size("--max-symbol-cache-bytes", optarg,
			                     &d->cfg.max_symbol_cache_bytes) < 0)
				return -EINVAL;
			break;
		case O_EXITED:
			if (parse_size("--max-exited", optarg, &d->cfg.max_exited) < 0)
				return -EINVAL;
			break;
		case O_BLOCKS:
			if (parse_size("--max-blocks", optarg, &d->cfg.max_blocks) < 0)
				return -EINVAL;
			break;
		case O_BLOCKS_UID:
			if (parse_size("--max-blocks-per-uid", optarg, &d->cfg.max_blocks_per_uid) <
			    0)
				return -EINVAL;
			break;
		case O_BLOCKS_TOTAL:
			if (parse_size("--max-blocks-total", optarg, &d->cfg.max_blocks_total) < 0)
				return -EINVAL;
			break;
		case O_STACKS_UID:
			if (parse_size("--max-stacks-per-uid", optarg, &d->cfg.max_stacks_per_uid) <
			    0)
				return -EINVAL;
			break;
		case O_STACKS_TOTAL:
			if (parse_size("--max-stacks-total", optarg, &d->cfg.max_stacks_total) < 0)
				return -EINVAL;
			break;
		case O_STACKS:
			if (parse_size("--max-stacks", optarg, &d->cfg.max_stacks) < 0)
				return -EINVAL;
			if (d->cfg.max_stacks > HEAP_MAX_STACK_ID) {
				fprintf(stderr, "memtraced: --max-stacks is at most %u\n",
				        HEAP_MAX_STACK_ID);
				return -EINVAL;
			}
			break;
		case O_MODULES:
			if (parse_size("--max-modules", optarg, &d->cfg.max_modules) < 0)
				return -EINVAL;
			break;
		case O_INTERVAL:
			if (parse_seconds("--snapshot-interval", optarg,
			                  &d->cfg.snapshot_interval) < 0)
				return -EINVAL;
			break;
		case O_RETAIN_DAYS:
			if (parse_seconds("--retain-days", optarg, &d->cfg.retain_days) < 0)
				return -EINVAL;
			break;
		case O_RETAIN_N: {
			size_t n = 0;
			if (strcmp(optarg, "0") != 0 &&
			    (parse_size("--retain-snapshots", optarg, &n) < 0 || n > UINT_MAX))
				return -EINVAL;
			d->cfg.retain_snapshots = (unsigned)n;
			break;
		}
		case O_STORE_BYTES:
		case O_STORE_BYTES_UID: {
			const char *name =
			    c == O_STORE_BYTES ? "--max-store-bytes" : "--max-store-bytes-per-uid";
			uint64_t n = 0;
			if (parse_bytes(name, optarg, true, &n) < 0)
				return -EINVAL;
			if (c == O_STORE_BYTES)
				d->cfg.max_store_bytes = n;
			else
				d->cfg.max_store_bytes_per_uid = n;
			break;
		}
		case O_METRICS_LISTEN:
			free(d->cfg.metrics_listen);
			d->cfg.metrics_listen = xstrdup(optarg);
			d->cfg.metrics_explicit = true;
			break;
		case O_METRICS_TOP: {
			size_t n = 0;
			if (strcmp(optarg, "0") != 0 &&
			    (parse_size("--metrics-top-sites", optarg, &n) < 0 ||
			     n > METRICS_MAX_TOP_SITES)) {
				fprintf(stderr, "memtraced: --metrics-top-sites is 0..%d\n",
				        METRICS_MAX_TOP_SITES);
				return -EINVAL;
			}
			d->cfg.metrics_top_sites = n;
			break;
		}
		case O_CTL_CONNS:
			if (parse_size("--max-control-connections", optarg,
			               &d->cfg.max_control_conns) < 0)
				return -EINVAL;
			break;
		case O_CTL_CONNS_UID:
			if (parse_size("--max-control-connections-per-uid", optarg,
			               &d->cfg.max_control_conns_per_uid) < 0)
				return -EINVAL;
			break;
		case O_CTL_TIMEOUT: {
			double sec = 0;
			if (parse_seconds("--control-timeout", optarg, &sec) < 0)
				return -EINVAL;
			if (sec < 0.001) {
				fprintf(stderr, "memtraced: --control-timeout must be positive\n");
				return -EINVAL;
			}
			d->cfg.control_timeout_ms = (uint64_t)(sec * 1000);
			break;
		}
		case O_SNAPQ:
			if (parse_size("--max-queued-snapshots", optarg,
			               &d->cfg.max_queued_snapshots) < 0)
				return -EINVAL;
			break;
		case O_SNAPQ_UID:
			if (parse_size("--max-queued-snapshots-per-uid", optarg,
			               &d->cfg.max_queued_snapshots_per_uid) < 0)
				return -EINVAL;
			break;
		case O_SNAPQ_BYTES:
			if (parse_bytes_size("--max-queued-snapshot-bytes", optarg,
			                     &d->cfg.max_queued_snapshot_bytes) < 0)
				return -EINVAL;
			break;
		case O_HTTP_CONNS:
			if (parse_size("--metrics-max-connections", optarg,
			               &d->cfg.metrics_max_conns) < 0)
				return -EINVAL;
			break;
		case O_HTTP_CONNS_ORIGIN:
			if (parse_size("--metrics-max-connections-per-origin", optarg,
			               &d->cfg.metrics_max_conns_per_origin) < 0)
				return -EINVAL;
			break;
		case O_DEBUGINFOD:
			d->cfg.debuginfod = true;
			break;
		case O_NO_YIELD:
			d->cfg.no_drain_yield = true;
			break;
		case O_VERBOSE:
			log_set_level(LOG_DEBUG);
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		case O_VERSION:
			printf("memtraced %s\n", PACKAGE_VERSION);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "memtraced: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	/* A per-uid share larger than the whole would let one uid take all. */
	if (d->cfg.max_control_conns_per_uid > d->cfg.max_control_conns)
		d->cfg.max_control_conns_per_uid = d->cfg.max_control_conns;
	if (d->cfg.max_queued_snapshots_per_uid > d->cfg.max_queued_snapshots)
		d->cfg.max_queued_snapshots_per_uid = d->cfg.max_queued_snapshots;
	if (d->cfg.max_store_bytes > 0 && d->cfg.max_store_bytes_per_uid > d->cfg.max_store_bytes)
		log_warn(
		    "--max-store-bytes-per-uid %" PRIu64 " is more than --max-store-bytes %" PRIu64
		    ": a uid may hold %" PRIu64 " bytes",
		    d->cfg.max_store_bytes_per_uid, d->cfg.max_store_bytes, d->cfg.max_store_bytes);
	if (d->cfg.max_store_bytes > 0 && (d->cfg.max_store_bytes_per_uid == 0 ||
	                                   d->cfg.max_store_bytes_per_uid > d->cfg.max_store_bytes))
		d->cfg.max_store_bytes_per_uid = d->cfg.max_store_bytes;
	if (d->cfg.metrics_max_conns_per_origin > d->cfg.metrics_max_conns)
		d->cfg.metrics_max_conns_per_origin = d->cfg.metrics_max_conns;
	if (d->cfg.runtime_dir == NULL) {
		if (paths_runtime_dir(dir, sizeof(dir)) < 0)
			return -ENAMETOOLONG;
		d->cfg.runtime_dir = xstrdup(dir);
	}
	if (d->cfg.state_dir == NULL) {
		if (paths_state_dir(dir, sizeof(dir)) < 0)
			return -ENAMETOOLONG;
		d->cfg.state_dir = xstrdup(dir);
	}
	return 0;
}

/* A socket file that nobody answers is left over from a crash: remove it.
 * One that answers belongs to a running daemon: refuse to start. */
/*
 * The state directory is one daemon's: two would write the same snapshot
 * files and database, each with its own idea of the ids. Its lock file is
 * held (flock) for the daemon's life, released by the kernel however the
 * daemon ends. Returns the descriptor, or -EWOULDBLOCK when another daemon
 * holds it, or another -errno.
 */
static int lock_state_dir(const char *dir)
{
	char *path = xasprintf("%s/%s", dir, "memtraced.lock");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	int rc = fd < 0 ? -errno : 0;

	free(path);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		close(fd);
	}
	return rc < 0 ? rc : fd;
}

static int claim_socket(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	int alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	if (alive)
		return -EADDRINUSE;
	return unlink(path) < 0 ? -errno : 0;
}

/* The limits users share (README "Limits"). */
static void limits_init(struct daemon *d)
{
	limit_init(&d->control_conns, "control_connections", "control connections",
	           "--max-control-connections", "--max-control-connections-per-uid",
	           d->cfg.max_control_conns, d->cfg.max_control_conns_per_uid);
	limit_init(&d->snap_queue, "queued_snapshots", "snapshots waiting to be written",
	           "--max-queued-snapshots", "--max-queued-snapshots-per-uid",
	           d->cfg.max_queued_snapshots, d->cfg.max_queued_snapshots_per_uid);
	size_t bytes = d->cfg.max_queued_snapshot_bytes;
	limit_init(&d->snap_bytes, "queued_snapshot_bytes",
	           "bytes of snapshots waiting to be written", "--max-queued-snapshot-bytes",
	           "a quarter of --max-queued-snapshot-bytes", bytes, bytes / 4 ? bytes / 4 : 1);
	/* A snapshot larger than a uid's share is still taken when nothing
	 * else waits. */
	d->snap_bytes.first_fits = true;
	size_t per = d->cfg.max_sessions_per_uid;
	if (per == 0)
		per = d->cfg.max_sessions / 4 ? d->cfg.max_sessions / 4 : 1;
	limit_init(&d->agent_sessions, "agent_connections", "traced processes", "--max-sessions",
	           "--max-sessions-per-uid", d->cfg.max_sessions, per);
	limit_init(&d->model_blocks, "tracked_blocks", "live blocks tracked", "--max-blocks-total",
	           "--max-blocks-per-uid", d->cfg.max_blocks_total, d->cfg.max_blocks_per_uid);
	limit_init(&d->model_stacks, "tracked_stacks", "stacks tracked", "--max-stacks-total",
	           "--max-stacks-per-uid", d->cfg.max_stacks_total, d->cfg.max_stacks_per_uid);
	bytes = d->cfg.max_fork_image_bytes;
	limit_init(&d->fork_images, "fork_image_bytes",
	           "bytes of parents' heaps kept for their fork children", "--max-fork-image-bytes",
	           "a quarter of --max-fork-image-bytes", bytes, bytes / 4 ? bytes / 4 : 1);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;

	if (d->stopping)
		return;
	log_info("received %s, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	/* Ending the sessions queues their last snapshots; the loop runs
	 * until every one of them is written. */
	sdnotify_send("STOPPING=1\nSTATUS=writing the last snapshots");
	d->stopping = true;
	agentsrv_stop(d);
	control_stop(d);
	metrics_stop(d);
	scheduler_stop(d->sched);
	loopwatch_stop(&d->loopwatch);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
}

int main(int argc, char **argv)
{
	struct daemon d;
	struct rundir *rd = NULL;
	int rc, status = 1;

	xalloc_cjson_hooks();
	/* What memtraced creates (the database, its journal) is its own; the
	 * sockets and the runtime directory get their modes explicitly. */
	umask(077);
	memset(&d, 0, sizeof(d));
	d.agent_fd = d.control_fd = -1;
	signal(SIGPIPE, SIG_IGN);
	if (parse_args(&d, argc, argv) < 0)
		return 2;
	/* Socket activation: systemd bound the sockets and owns their files. */
	if ((rc = sdnotify_listen_fds(&d.agent_fd, &d.control_fd)) < 0) {
		log_error("cannot use the sockets systemd passed (LISTEN_FDS): %s", strerror(-rc));
		goto out;
	}
	if (rc > 0)
		log_info("socket activation: %d socket(s) passed; agent %s, control %s", rc,
		         d.agent_fd >= 0 ? "passed" : "bound here",
		         d.control_fd >= 0 ? "passed" : "bound here");
	/* Root's runtime directory is every user's way in (its sockets are
	 * 0666); anybody else's is theirs alone. Either way nobody else may
	 * swap it or what is in it (safedir.h). */
	mode_t mode = geteuid() == 0 ? 0755 : 0700;
	char reason[512];
	if ((rc = safedir_make(d.cfg.runtime_dir, mode, reason, sizeof(reason), NULL, NULL)) < 0) {
		log_error("cannot use runtime directory %s: %s", d.cfg.runtime_dir, reason);
		goto out;
	}
	if ((rc = safedir_make(d.cfg.state_dir, 0700, reason, sizeof(reason), NULL, NULL)) < 0) {
		log_error("cannot use state directory %s: %s", d.cfg.state_dir, reason);
		goto out;
	}
	/* Kept open until the process ends: the lock is the daemon's life. */
	if ((rc = lock_state_dir(d.cfg.state_dir)) < 0) {
		log_error("cannot use state directory %s: %s", d.cfg.state_dir,
		          rc == -EWOULDBLOCK ? "another memtraced uses it" : strerror(-rc));
		goto out;
	}
	d.agent_path = xasprintf("%s/%s", d.cfg.runtime_dir, PATHS_AGENT_SOCK);
	d.control_path = xasprintf("%s/%s", d.cfg.runtime_dir, PATHS_CONTROL_SOCK);
	if ((d.agent_fd < 0 && (rc = claim_socket(d.agent_path)) < 0) ||
	    (d.control_fd < 0 && (rc = claim_socket(d.control_path)) < 0)) {
		log_error("cannot use %s: %s", d.cfg.runtime_dir,
		          rc == -EADDRINUSE ? "another memtraced is running there" : strerror(-rc));
		goto out;
	}
	d.loop = uv_default_loop();
	d.started_ms = uv_now(d.loop);
	if ((rc = loopwatch_start(&d.loopwatch, d.loop)) < 0)
		log_warn("cannot measure the loop's stalls: %s", uv_strerror(rc));
	limits_init(&d);
	d.syms = symbols_new(d.cfg.debuginfod);
	symbols_set_bounds(d.syms, d.cfg.max_symbol_cache_bytes, d.cfg.max_symbol_cache_bytes / 4);
	if (d.cfg.max_symbol_cache_bytes > 0)
		log_info("symbol cache: at most %zu bytes, what one uid's processes add %zu "
		         "(--max-symbol-cache-bytes)",
		         d.cfg.max_symbol_cache_bytes, d.cfg.max_symbol_cache_bytes / 4);
	else
		log_info("symbol cache: not bounded (--max-symbol-cache-bytes 0)");
	d.jobs = jobs_new();
	jobs_start_pool(d.jobs, d.loop); /* before a pass yields */
	yield_start(&d.yield, !d.cfg.no_drain_yield);
	if (d.yield.on)
		log_info(
		    "drain passes yield (SCHED_IDLE) while no ring is three quarters full and no "
		    "thread waits for room, 20 ms at most a pass");
	else
		log_info("drain passes do not yield: %s", d.yield.why_off);
	if (scheduler_new(&d, &d.sched) < 0)
		log_warn("running without snapshots: queries of the live heap still work");
	if ((rc = agentsrv_start(&d)) < 0) {
		log_error("cannot listen on %s: %s", d.agent_path, uv_strerror(rc));
		goto out_loop;
	}
	if ((rc = control_start(&d)) < 0) {
		log_error("cannot listen on %s: %s", d.control_path, uv_strerror(rc));
		goto out_loop;
	}
	if ((rc = metrics_start(&d, d.cfg.metrics_listen)) < 0) {
		const char *why = rc == -EINVAL ? "not ADDR:PORT or [ADDR]:PORT" : strerror(-rc);
		/* The default port may be taken (say, by the system daemon while
		 * a user runs their own): tracing matters more than metrics. An
		 * address the user asked for must work, though. */
		if (d.cfg.metrics_explicit) {
			log_error(
			    "cannot serve metrics on %s: %s (--metrics-listen off disables them)",
			    d.cfg.metrics_listen, why);
			goto out_loop;
		}
		log_warn("no metrics: cannot listen on the default %s: %s (use --metrics-listen)",
		         d.cfg.metrics_listen, why);
	}
	rd = rundir_watch(&d, mode);
	uv_signal_init(d.loop, &d.sig_term);
	uv_signal_init(d.loop, &d.sig_int);
	d.sig_term.data = &d;
	d.sig_int.data = &d;
	uv_signal_start(&d.sig_term, on_signal, SIGTERM);
	uv_signal_start(&d.sig_int, on_signal, SIGINT);
	log_info("memtraced %s listening on %s (state in %s)", PACKAGE_VERSION, d.cfg.runtime_dir,
	         d.cfg.state_dir);
	sdnotify_sendf("READY=1\nSTATUS=listening on %s", d.cfg.runtime_dir);
	uv_run(d.loop, UV_RUN_DEFAULT);
	status = 0;
	if (d.agent_fd < 0)
		unlink(d.agent_path);
	if (d.control_fd < 0)
		unlink(d.control_path);
	log_info("stopped");

out_loop:
	yield_stop(&d.yield);
	metrics_stop(&d); /* before close_walk: it closes its own handles */
	webtoken_free(&d);
	uv_walk(d.loop, close_walk, NULL);
	uv_run(d.loop, UV_RUN_DEFAULT);
	uv_loop_close(d.loop);
	scheduler_free(d.sched);
	d.sched = NULL;
	jobs_free(d.jobs);
	d.jobs = NULL;
	while (d.sessions != NULL) {
		struct session *s = d.sessions;
		d.sessions = s->next;
		session_unref(s);
	}
	symbols_free(d.syms);
	drain_scratch_free(&d.drain_scratch);
	rundir_free(rd);
	limit_close(&d.control_conns);
	limit_close(&d.snap_queue);
	limit_close(&d.snap_bytes);
	limit_close(&d.agent_sessions);
	limit_close(&d.fork_images);
	limit_close(&d.model_blocks);
	limit_close(&d.model_stacks);
out:
	free(d.agent_path);
	free(d.control_path);
	free(d.cfg.runtime_dir);
	free(d.cfg.state_dir);
	free(d.cfg.metrics_listen);
	return status;
}
