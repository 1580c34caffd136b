/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn-ucx against mmnd (userfaultfd source) and a real UCX registration
 * cache (ucs_rcache, the one ucp and the transports use), with registration
 * counters in its ops.  A buffer is registered (a miss), looked up again (a
 * hit), then unmapped by a raw munmap system call, which UCX's libc hooks
 * never see; a new mapping takes its address (a guard above the buffer
 * keeps other mappings out of the hole in between, see map_buffer()).
 *   with the adapter: the unmap reaches UCX as UCM_EVENT_VM_UNMAPPED for the
 *     buffer (through mmnd and ucm_vm_munmap), the next lookup is a miss that
 *     registers the new pages, and the old region is deregistered; the same
 *     for MADV_DONTNEED (raw, too);
 *     in a fork child (which watches nothing) no registration is kept;
 *   without it: the next lookup is a hit on the stale region (the bug).
 *   unreachable: preloaded, but mmnd's socket is wrong: the adapter stays
 *     off and UCX's own hooks still catch a libc munmap;
 *   bound: mmnd allows a client 40 subscriptions, the adapter keeps at most
 *     32 ($MMN_UCX_MAX_SUBS): 200 distinct buffers are all cached (so each
 *     was subscribed), the oldest were evicted (their next lookup registers
 *     again) and the newest still sees its unmap.
 *   test-ucx-rcache MMND ADAPTER preload|without|unreachable|bound   (not linked with it)
 *   restart (linked, one process): mmnd is killed under a registered
 *     buffer; while it is gone the application goes on and new
 *     registrations are not cached; after it restarts, RESYNC drops what
 *     was cached and new registrations are cached again.
 *   test-ucx-rcache-api MMND ADAPTER api|restart   (linked; calls mmn_ucx_enable())
 * The parent starts mmnd and runs the checks in a child with MMN_SOCKET
 * (and LD_PRELOAD=ADAPTER for preload) set, so the preload's constructor
 * finds mmnd running.
 */
#include <dlfcn.h>
#include <errno.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ucm/api/ucm.h>
#include <ucs/memory/rcache.h>

#ifdef TEST_API
#include "mmn/ucx.h"
#endif
#include "lib/child.h"
#include "lib/mmnd-run.h"
#include "tap.h"

#define NPAGES	4
#define WAIT_MS 10000

static unsigned nreg, ndereg; /* the cache's ops, on the calling thread */

static ucs_status_t mem_reg(void *ctx, ucs_rcache_t *rc, void *arg, ucs_rcache_region_t *r, uint16_t flags)
{
	__atomic_add_fetch(&nreg, 1, __ATOMIC_RELAXED);
	return UCS_OK;
}

static void mem_dereg(void *ctx, ucs_rcache_t *rc, ucs_rcache_region_t *r)
{
	__atomic_add_fetch(&ndereg, 1, __ATOMIC_RELAXED);
}

static void dump_region(void *ctx, ucs_rcache_t *rc, ucs_rcache_region_t *r, char *buf, size_t max)
{
	if (max)
		buf[0] = '\0';
}

static const ucs_rcache_ops_t ops = {.mem_reg = mem_reg, .mem_dereg = mem_dereg, .dump_region = dump_region};

/* The range a VM_UNMAPPED handler must see; it posts @seen once one covers it (any thread). */
static uintptr_t want_start, want_end;
static sem_t seen;

static void on_unmapped(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	uintptr_t a = (uintptr_t)ev->vm_unmapped.address;
	uintptr_t b = a + ev->vm_unmapped.size;
	uintptr_t ws = __atomic_load_n(&want_start, __ATOMIC_ACQUIRE);

	if (ws && a <= ws && b >= __atomic_load_n(&want_end, __ATOMIC_RELAXED))
		sem_post(&seen);
}

static bool wait_seen(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	while (sem_clockwait(&seen, CLOCK_MONOTONIC, &ts) < 0)
		if (errno != EINTR)
			return false;
	return true;
}

static void expect_unmapped(void *p, size_t len)
{
	while (sem_trywait(&seen) == 0)
		;
	__atomic_store_n(&want_end, (uintptr_t)p + len, __ATOMIC_RELAXED);
	__atomic_store_n(&want_start, (uintptr_t)p, __ATOMIC_RELEASE);
}

static ucs_rcache_t *make_cache(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	ucs_rcache_params_t p = {
		.region_struct_size = sizeof(ucs_rcache_region_t),
		.alignment = ps,
		.max_alignment = ps,
		.ucm_events = UCM_EVENT_VM_UNMAPPED,
		.ucm_event_priority = 1000,
		.ops = &ops,
		.flags = UCS_RCACHE_FLAG_NO_PFN_CHECK,
		.max_regions = (unsigned long)-1,
		.max_size = (size_t)-1,
		.max_unreleased = (size_t)-1,
	};
	ucs_rcache_t *rc = NULL;

	return ucs_rcache_create(&p, "mmn-test", NULL, &rc) == UCS_OK ? rc : NULL;
}

/* One lookup of [p, p + len), released at once; the registration count after it. */
static unsigned lookup(ucs_rcache_t *rc, void *p, size_t len)
{
	ucs_rcache_region_t *r;

	if (ucs_rcache_get(rc, p, len, PROT_READ | PROT_WRITE, NULL, &r) != UCS_OK)
		return 0;
	ucs_rcache_region_put(rc, r);
	return __atomic_load_n(&nreg, __ATOMIC_RELAXED);
}

static bool adapter_enabled(const char *mode)
{
#ifdef TEST_API
	int r = mmn_ucx_enable(NULL);

	if (r < 0)
		tap_diag("mmn_ucx_enable: %s", strerror(-r));
	return r == 0 && mmn_ucx_enabled();
#else
	bool (*enabled)(void) = (bool (*)(void))dlsym(RTLD_DEFAULT, "mmn_ucx_enabled");

	if (strcmp(mode, "unreachable") == 0)
		return enabled && !enabled();
	return strcmp(mode, "preload") == 0 ? enabled && enabled() : !enabled;
#endif
}

/*
 * The buffer, @len bytes, and a guard page above it (unmapped with it).
 * check_unmap() munmaps the buffer and maps new pages at its address: the
 * munmap must stay a munmap, it is the event under test.  In between, any
 * thread of the process (UCX's, the adapter's, the sanitizer runtime's
 * allocator) may map memory, and the kernel would place it in the hole,
 * the highest gap that fits.  It places nothing (mmap without MAP_FIXED,
 * with a hint or not) within stack_guard_gap, 256 pages by default, below a
 * MAP_GROWSDOWN mapping, so with the guard one the hole stays free for
 * MAP_FIXED_NOREPLACE.  (A reservation around the buffer would not do: the
 * hole is free all the same, and MAP_FIXED over it would replace another
 * thread's mapping.)  The guard is PROT_NONE and never touched, so it never
 * grows.
 */
static char *map_buffer(size_t len)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char *buf = mmap(NULL, len + ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (buf == MAP_FAILED)
		return NULL;
	if (mmap(buf + len, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0) !=
	    buf + len) {
		munmap(buf, len + ps);
		return NULL;
	}
	return buf;
}

/*
 * The remapped buffer (from map_buffer()): the unmap (a system call, or
 * libc's munmap when @raw is false) is seen, the next lookup registers the
 * new pages.
 */
static void check_unmap(ucs_rcache_t *rc, char *buf, size_t len, bool with, bool raw)
{
	bool seen_it;

	expect_unmapped(buf, len);
	tap_require((raw ? syscall(SYS_munmap, buf, len) : munmap(buf, len)) == 0);
	seen_it = with ? wait_seen() : sem_trywait(&seen) == 0;
	tap_ok(seen_it == with, "%s munmap %s UCX as VM_UNMAPPED", raw ? "raw" : "libc",
	       with ? "reaches" : "does not reach");
	tap_require(mmap(buf, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			 -1, 0) == buf);
	memset(buf, 2, len);
	if (with) {
		tap_is_int(lookup(rc, buf, len), 2,
			   "lookup after munmap + mmap is a miss (new pages registered)");
		tap_ok(__atomic_load_n(&ndereg, __ATOMIC_RELAXED) >= 1, "the stale region was deregistered");
	} else {
		tap_is_int(lookup(rc, buf, len), 1, "without the adapter the stale region is handed out");
	}
}

/* MADV_DONTNEED (raw) drops the pages: a pinned registration of them is stale too. */
static void check_dontneed(ucs_rcache_t *rc, char *buf, size_t len)
{
	tap_is_int(lookup(rc, buf, len), 2, "hit on the new region");
	expect_unmapped(buf, len);
	tap_require(syscall(SYS_madvise, buf, len, MADV_DONTNEED) == 0);
	tap_ok(wait_seen(), "raw MADV_DONTNEED reaches UCX as VM_UNMAPPED");
	tap_is_int(lookup(rc, buf, len), 3, "lookup after MADV_DONTNEED is a miss");
}

#define BOUND_BUFS 200

/* Many distinct registrations through a small subscription budget. */
static int run_bound(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char *base, *last;
	ucs_rcache_t *rc;
	unsigned n = 0;

	tap_ok(adapter_enabled("preload"), "adapter enabled");
	tap_require(sem_init(&seen, 0, 0) == 0);
	rc = make_cache();
	tap_require(rc);
	tap_require(ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, 2000, on_unmapped, NULL) == UCS_OK);
	base = mmap(NULL, BOUND_BUFS * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(base != MAP_FAILED);
	memset(base, 1, BOUND_BUFS * ps);
	for (unsigned i = 0; i < BOUND_BUFS; i++)
		n = lookup(rc, base + i * ps, ps);
	tap_is_int(n, BOUND_BUFS, "every distinct buffer registered once");
	last = base + (BOUND_BUFS - 1) * ps;
	tap_is_int(lookup(rc, last, ps), BOUND_BUFS, "the newest is cached (it was subscribed)");
	tap_is_int(lookup(rc, base, ps), BOUND_BUFS + 1, "the oldest was evicted and dropped from UCX");
	expect_unmapped(last, ps);
	tap_require(syscall(SYS_munmap, last, ps) == 0);
	tap_ok(wait_seen(), "raw munmap of the newest reaches UCX as VM_UNMAPPED");
	ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_unmapped, NULL);
	ucs_rcache_destroy(rc);
	munmap(base, (BOUND_BUFS - 1) * ps);
	return tap_done();
}

/*
 * A fork child's connection is the parent's: it watches nothing, so a
 * lookup there may hit (the parent's region) but no region is kept.
 */
static void check_fork(ucs_rcache_t *rc, char *buf, size_t len)
{
	unsigned before = __atomic_load_n(&nreg, __ATOMIC_RELAXED);
	struct child c = {.pidfd = -1};
	int st;

	fflush(stdout);
	c.pid = fork();
	if (c.pid == 0) {
		unsigned a = lookup(rc, buf, len), b = lookup(rc, buf, len), d = lookup(rc, buf, len);

		_exit(a == before && b == before + 1 && d == before + 2 ? 0 : 1);
	}
	tap_require(c.pid > 0);
	st = child_wait(&c, WAIT_MS);
	tap_ok(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "in a fork child a hit is dropped after use and nothing new is kept");
}

static int run(const char *mode)
{
	bool with = strcmp(mode, "without") != 0;
	bool raw = strcmp(mode, "unreachable") != 0; /* UCX's hooks see libc's calls only */
	size_t len = NPAGES * (size_t)sysconf(_SC_PAGESIZE);
	ucs_rcache_t *rc;
	char *buf;

	tap_ok(adapter_enabled(mode), "adapter state as %s expects", mode);
	tap_require(sem_init(&seen, 0, 0) == 0);
	rc = make_cache();
	tap_require(rc);
	tap_require(ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, 2000, on_unmapped, NULL) == UCS_OK);
	buf = map_buffer(len);
	tap_require(buf);
	memset(buf, 1, len);
	tap_is_int(lookup(rc, buf, len), 1, "first lookup registers");
	tap_is_int(lookup(rc, buf, len), 1, "second lookup is a hit");
	check_unmap(rc, buf, len, with, raw);
	if (with && raw) {
		check_dontneed(rc, buf, len);
		check_fork(rc, buf, len);
	}
	ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_unmapped, NULL);
	ucs_rcache_destroy(rc);
	munmap(buf, len + (size_t)sysconf(_SC_PAGESIZE)); /* and the guard */
	return tap_done();
}

/*
 * LD_PRELOAD for @adapter: a sanitized build's runtime must come first in
 * the initial library list, so it is named in front of the adapter.
 */
static void set_preload(const char *adapter)
{
	void *asan = dlsym(RTLD_DEFAULT, "__asan_init");
	char v[4096];
	Dl_info di;

	if (asan && dladdr(asan, &di) && di.dli_fname && strstr(di.dli_fname, "asan"))
		snprintf(v, sizeof(v), "%s:%s", di.dli_fname, adapter);
	else
		snprintf(v, sizeof(v), "%s", adapter);
	setenv("LD_PRELOAD", v, 1);
}

#ifdef TEST_API
/* Lookups while mmnd is gone and after it came back (see the top). */
static void check_restart(struct mmnd_run *m, ucs_rcache_t *rc, char *buf, char *buf2, size_t len)
{
	tap_is_int(lookup(rc, buf, len), 1, "first lookup registers");
	tap_is_int(lookup(rc, buf, len), 1, "second lookup is a hit");
	tap_ok(WIFSIGNALED(mmnd_run_kill(m, SIGKILL, 5000)), "mmnd killed");
	tap_is_int(lookup(rc, buf2, len), 2, "mmnd gone: a new buffer registers");
	tap_is_int(lookup(rc, buf2, len), 3, "mmnd gone: and is not cached");
	expect_unmapped(buf, len);
	tap_require(mmnd_run_start(m, NULL, 20000) == 0);
	tap_ok(wait_seen(), "after the restart RESYNC reaches UCX for the cached buffer");
	tap_is_int(lookup(rc, buf, len), 4, "the buffer cached before is registered again");
	tap_is_int(lookup(rc, buf2, len), 5, "a buffer registers");
	tap_is_int(lookup(rc, buf2, len), 5, "and is cached again");
}

static int run_restart(const char *mmnd)
{
	size_t len = NPAGES * (size_t)sysconf(_SC_PAGESIZE);
	struct mmnd_run m;
	ucs_rcache_t *rc;
	char *buf, *buf2;

	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd unavailable");
	tap_require(mmnd_run_init(&m, mmnd) == 0 && mmnd_run_start(&m, NULL, 20000) == 0);
	setenv("MMN_SOCKET", m.sock, 1);
	tap_is_int(mmn_ucx_enable(NULL), 0, "mmn_ucx_enable");
	tap_require(sem_init(&seen, 0, 0) == 0);
	rc = make_cache();
	tap_require(rc);
	tap_require(ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, 2000, on_unmapped, NULL) == UCS_OK);
	buf = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(buf != MAP_FAILED);
	buf2 = buf + len;
	memset(buf, 1, 2 * len);
	check_restart(&m, rc, buf, buf2, len);
	ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_unmapped, NULL);
	ucs_rcache_destroy(rc);
	munmap(buf, 2 * len);
	mmnd_run_fini(&m);
	return tap_done();
}
#endif

/* Runs this program as "run MODE" with mmnd's socket (and the preload) in its environment. */
static int spawn(const char *self, const char *adapter, const char *mode, const char *sock)
{
	struct child c = {.pidfd = -1};
	int st;

	fflush(stdout);
	c.pid = fork();
	if (c.pid < 0)
		return -1;
	if (c.pid == 0) {
		setenv("MMN_SOCKET", sock, 1);
		if (strcmp(mode, "unreachable") == 0)
			setenv("MMN_SOCKET", "/nonexistent/mmnd.sock", 1);
		if (strcmp(mode, "without") != 0 && strcmp(mode, "api") != 0)
			set_preload(adapter);
		if (strcmp(mode, "bound") == 0)
			setenv("MMN_UCX_MAX_SUBS", "32", 1);
		execl(self, self, "run", mode, (char *)NULL);
		_exit(127);
	}
	st = child_wait(&c, 60000);
	if (st < 0) {
		kill(c.pid, SIGKILL);
		waitpid(c.pid, NULL, 0);
		printf("Bail out! the checks did not end in 60 s\n");
		return 1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
	static const char *const bound_args[] = {"--max-subs=40", NULL};
	struct mmnd_run m;
	int r;

	if (argc == 3 && strcmp(argv[1], "run") == 0)
		return strcmp(argv[2], "bound") == 0 ? run_bound() : run(argv[2]);
#ifdef TEST_API
	if (argc == 4 && strcmp(argv[3], "restart") == 0)
		return run_restart(argv[1]);
#endif
	if (argc != 4) {
		fprintf(stderr, "usage: %s MMND ADAPTER preload|without|unreachable|bound|api|restart\n", argv[0]);
		return 2;
	}
	if (!mmnd_run_uffd_available())
		tap_skip_all("userfaultfd unavailable");
	if (mmnd_run_init(&m, argv[1]) < 0 ||
	    mmnd_run_start(&m, strcmp(argv[3], "bound") == 0 ? bound_args : NULL, 20000) < 0) {
		printf("Bail out! mmnd did not start\n");
		return 1;
	}
	r = spawn("/proc/self/exe", argv[2], argv[3], m.sock);
	mmnd_run_fini(&m);
	return r;
}
