// SPDX-License-Identifier: GPL-2.0-or-later
/* The OOM killer and reaper in tests (see oom.h). */
#include "oom.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "knob.h"
#include "target.h"

#define BIG (256UL << 20)

int oom_cgroup(const char *cg)
{
	char path[256];

	if (system("mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup") ||
	    knob_write("/sys/fs/cgroup/cgroup.subtree_control", "+memory") ||
	    (mkdir(cg, 0755) && errno != EEXIST))
		return -ENODEV;
	snprintf(path, sizeof(path), "%s/memory.max", cg);
	if (knob_write(path, "48M"))
		return -EIO;
	snprintf(path, sizeof(path), "%s/memory.swap.max", cg);
	knob_write(path, "0");
	return 0;
}

/* The victim's shared page; its blocker thread invalidates it. */
static char *victim_r2;

static void *victim_blocker(void *arg)
{
	(void)arg;
	madvise(victim_r2, (size_t)sysconf(_SC_PAGESIZE), MADV_DONTNEED);
	return NULL;
}

/* In the victim: join @cg, map r1 and r2 (reported on @rep) and the big region. */
static char *victim_map(const char *cg, int rep)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char path[256], pid[32], *res, *big;
	uint64_t a[2];
	int mfd;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	snprintf(pid, sizeof(pid), "%d", getpid());
	if (knob_write(path, pid))
		_exit(10);
	a[0] = (uint64_t)(uintptr_t)mmap(NULL, OOM_R1, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	/*
	 * r2 alone in the middle of a 2 MiB-aligned granule of shared
	 * PROT_NONE memory: mmnd watches whole granules, and the reaper skips
	 * shared mappings, so r2's kernel subscription covers nothing the
	 * reaper zaps (it must stay BLOCKING while r1's is cleared).  The
	 * shared neighbours also keep r2's VMA from merging.
	 */
	res = mmap(NULL, 2 * OOM_GRANULE, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	mfd = memfd_create("mmn-oom", 0);
	if (res == MAP_FAILED || mfd < 0 || ftruncate(mfd, (off_t)page))
		_exit(11);
	res = (char *)(((uintptr_t)res + OOM_GRANULE - 1) & ~(uintptr_t)(OOM_GRANULE - 1));
	victim_r2 = mmap(res + OOM_GRANULE / 2, page, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | MAP_POPULATE, mfd, 0);
	a[1] = (uint64_t)(uintptr_t)victim_r2;
	if (a[0] == (uint64_t)(uintptr_t)MAP_FAILED || victim_r2 == MAP_FAILED)
		_exit(12);
	memset((void *)(uintptr_t)a[0], 1, OOM_R1);
	victim_r2[0] = 1;
	/* mapped now: later, mmap() would need the mmap_lock the blocker holds */
	big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (big == MAP_FAILED)
		_exit(15);
	if (write(rep, a, sizeof(a)) != sizeof(a))
		_exit(13);
	return big;
}

/* The cgroup the victim joins (set before the fork). */
static const char *victim_cg;

/* The victim, a target (target.h) without a mapping of target_spawn()'s. */
static void victim(int cmd, int rep, char *p, size_t len)
{
	char *big = victim_map(victim_cg, rep), c;
	pthread_t th;

	(void)p;
	(void)len;
	if (read(cmd, &c, 1) != 1)
		_exit(13);
	pthread_create(&th, NULL, victim_blocker, NULL);
	if (read(cmd, &c, 1) != 1)
		_exit(14);
	/* page faults take mmap_lock for reading only: the OOM kill comes here */
	memset(big, 2, BIG);
	_exit(16);
}

int oom_victim_spawn(struct oom_victim *v, const char *cg)
{
	uint64_t a[2];
	int r;

	victim_cg = cg;
	r = target_spawn(&v->t, 0, TARGET_NO_MAP | TARGET_CLOSE_FDS, victim);
	if (r)
		return r;
	if (!fd_wait_readable(v->t.rep, 5000) || fd_read_full(v->t.rep, a, sizeof(a)) < 0)
		return -EIO;
	v->r1 = a[0];
	v->r2 = a[1];
	return 0;
}
