/* region.c - the agent's shared-memory region (see region.h). */
#include "region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fdguard.h"
#include "proto.h"
#include "ring.h"
#include "stacktab.h"

int g_region_fd = -1;

static int region_new(int *fdp, char **basep)
{
	int saved = errno, rc;
	int fd = memfd_create("memtrace", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (ftruncate(fd, (off_t)SHM_SIZE) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		rc = -errno;
		close(fd);
		goto out;
	}
	void *p = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		close(fd);
		goto out;
	}
	fd = fdguard_high(fd, 1);
	fdguard_own(fd);
	*fdp = fd;
	*basep = p;
	rc = 0;
out:
	errno = saved;
	return rc;
}

static void header_init(struct shm_header *h, uint64_t first_seq)
{
	h->magic = SHM_MAGIC;
	h->version = PROTO_VERSION;
	atomic_store(&h->seq, first_seq);
}

int region_create(uint64_t first_seq)
{
	int fd, rc;
	char *base;

	if ((rc = region_new(&fd, &base)) < 0)
		return rc;
	header_init((struct shm_header *)base, first_seq);
	g_region = base;
	g_region_fd = fd;
	g_shm = (struct shm_header *)base;
	return 0;
}

/* The previous session's addresses, now private zero pages. */
static char *retired;

void region_retire(void)
{
	if (g_region == NULL || g_region == retired)
		return;
	/* Under the strict overcommit policy the private pages would be
	 * charged in full, and a refused MAP_FIXED may leave the range
	 * unmapped under a recording thread: the shared pages stay instead. */
	char mode = '0';
	int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &mode, 1) != 1)
			mode = '0';
		close(fd);
	}
	if (mode != '2') {
		if (retired != NULL)
			munmap(retired, SHM_SIZE);
		void *p = mmap(g_region, SHM_SIZE, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		retired = p == MAP_FAILED ? NULL : g_region;
	}
	if (g_region_fd >= 0)
		fdguard_close(g_region_fd);
	g_region_fd = -1;
}

void region_drop(void)
{
	if (g_region != NULL)
		munmap(g_region, SHM_SIZE);
	if (g_region_fd >= 0)
		fdguard_close(g_region_fd);
	g_shm = NULL;
	g_region = NULL;
	g_region_fd = -1;
}

int region_fork_child(void)
{
	char *old = g_region, *base;
	int oldfd = g_region_fd, fd, rc;
	uint64_t seq = atomic_load(&g_shm->seq);

	rc = region_new(&fd, &base);
	if (rc == 0) {
		header_init((struct shm_header *)base, seq);
		stacktab_move(base);
	}
	/* Whatever happens, the child stops writing into its parent's memory. */
	g_shm = rc == 0 ? (struct shm_header *)base : NULL;
	g_region = rc == 0 ? base : NULL;
	g_region_fd = rc == 0 ? fd : -1;
	ring_reset_after_fork();
	if (old != NULL)
		munmap(old, SHM_SIZE);
	if (oldfd >= 0)
		fdguard_close(oldfd);
	return rc;
}
