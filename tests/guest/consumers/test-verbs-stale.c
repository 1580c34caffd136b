/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A registration cache over verbs, on soft-RoCE in the guest: the stale
 * memory region mmn exists to prevent, and mmn preventing it.
 *
 *   usage: test-verbs-stale MMND
 *   run:   run-guest --module mmn.ko -- tests/guest/lib/rxe-up test-verbs-stale MMND
 *
 * A runtime's registration cache (libfabric's MR cache, UCX's rcache) keeps
 * the MR of a buffer and hands it out again when the same address range is
 * registered again.  rdma_rxe has no on-demand paging: an MR pins the pages
 * the range had when it was registered.  When the application munmaps the
 * buffer and maps the same address again, a cache that is not told keeps
 * the MR, and an RDMA READ through it returns the old pages.
 *
 * Both cases register a buffer holding "old" bytes through the cache, read
 * it through a loopback RC QP (the QP connected to itself over rxe0's
 * link-local GID), munmap it, map the same address again (MAP_FIXED) with
 * "new" bytes, look the range up again and read through what the cache gave:
 *
 *   without mmn  the lookup hits the old MR and the READ returns the old
 *                bytes (stale=1): the bug, shown;
 *   with mmn     the cache watches each entry's range with a blocking
 *                subscription (mmnd --source=kmod, mmn.ko): its invalidate
 *                callback deregisters the MR and drops the entry before
 *                munmap returns, so the lookup misses, registers the new
 *                pages and the READ returns the new bytes (stale=0).
 *                No subscription may be released: a callback that missed
 *                its ack deadline (one that mmaps while munmap holds the
 *                mmap lock) would be evicted, and munmap would have waited
 *                for the deadline instead of the callback.
 *
 * The device and GID index come from rxe-up (MMN_RXE_DEV, MMN_RXE_GID_INDEX).
 * Skips (TAP) when not root, without rxe-up's variables, without mmn.ko or
 * without a verbs provider for the device.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "child.h"
#include "mmnd-run.h"
#include "tap.h"
#include "verbs-loop.h"

#define BUF_PAGES	4
#define OLD_BYTE	'O'
#define NEW_BYTE	'N'
#define CACHE_SLOTS	4
#define READ_TIMEOUT_MS 20000

/* One registration: [addr, addr + len) registered as mr, watched by sub. */
struct entry {
	uintptr_t addr;
	size_t len;
	struct ibv_mr *mr;   /* NULL: a free slot, or dropped by an invalidation */
	struct mmn_sub *sub; /* with mmn: watches the range; NULL otherwise or once reaped */
};

/*
 * The cache.  lock guards e[] and the counters; it is taken by the test's
 * thread (lookup, reap) and by libmmn's dispatch thread (the invalidate
 * callback) and is never held across an mmn call, which could wait for
 * that thread.  A dropped entry keeps its sub until the test's thread
 * unsubscribes it (cache_reap()); the slot is reused only after that.
 */
struct counts {
	unsigned hits, misses, drops;
	unsigned releases; /* subscriptions revoked (a missed ack deadline evicts) */
};

struct cache {
	pthread_mutex_t lock;
	struct ibv_pd *pd;
	struct mmn_client *mmn; /* NULL: nothing tells the cache (the bug) */
	struct entry e[CACHE_SLOTS];
	struct counts n;
};

/* libmmn's thread: deregister the MR of @s's entry before the kernel goes on. */
static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct cache *c = ud;
	int i;

	(void)r;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < CACHE_SLOTS; i++) {
		if (c->e[i].sub != s || !c->e[i].mr)
			continue;
		ibv_dereg_mr(c->e[i].mr);
		c->e[i].mr = NULL;
		c->n.drops++;
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* libmmn's thread: @s was revoked; a cache would drop its entries too. */
static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct cache *c = ud;

	(void)s;
	pthread_mutex_lock(&c->lock);
	c->n.releases++;
	pthread_mutex_unlock(&c->lock);
	tap_diag("subscription released: reason %d", reason);
}

/* Unsubscribe the dropped entries' subscriptions and free their slots. */
static void cache_reap(struct cache *c)
{
	struct mmn_sub *subs[CACHE_SLOTS];
	int i, n = 0;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < CACHE_SLOTS; i++) {
		if (c->e[i].mr || !c->e[i].sub)
			continue;
		subs[n++] = c->e[i].sub;
		c->e[i].sub = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < n; i++)
		mmn_unsubscribe(subs[i]);
}

static struct mmn_sub *watch(struct cache *c, uintptr_t addr, size_t len)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = MMN_SUB_BLOCKING,
		.invalidate = on_invalidate,
		.release = on_release,
		.userdata = c,
	};
	struct mmn_sub *s = NULL;
	int r = mmn_subscribe(c->mmn, 0, addr, len, &o, &s);

	if (r)
		tap_diag("mmn_subscribe: %s", mmn_strerror(r));
	return s;
}

/*
 * Register [addr, addr + len): subscribe first, then register inside a
 * read section, so that an invalidation between the two is seen (retry).
 */
static int cache_insert(struct cache *c, uintptr_t addr, size_t len, struct ibv_mr **out)
{
	struct mmn_sub *s = NULL;
	struct ibv_mr *mr;
	uint64_t seq = 0;
	int i, try;

	for (try = 0; try < 3; try++) {
		if (c->mmn && !(s = watch(c, addr, len)))
			return -EIO;
		if (s)
			seq = mmn_read_begin(s);
		mr = ibv_reg_mr(c->pd, (void *)addr, len, VERBS_LOOP_MR_ACCESS);
		if (!mr) {
			mmn_unsubscribe(s);
			return -errno;
		}
		if (!s || !mmn_read_retry(s, seq))
			break;
		ibv_dereg_mr(mr);
		mmn_unsubscribe(s);
		mr = NULL;
	}
	if (!mr)
		return -EAGAIN;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < CACHE_SLOTS && (c->e[i].mr || c->e[i].sub); i++)
		;
	if (i < CACHE_SLOTS)
		c->e[i] = (struct entry){.addr = addr, .len = len, .mr = mr, .sub = s};
	c->n.misses++;
	pthread_mutex_unlock(&c->lock);
	if (i == CACHE_SLOTS) {
		ibv_dereg_mr(mr);
		mmn_unsubscribe(s);
		return -ENOSPC;
	}
	*out = mr;
	return 0;
}

/* The MR covering [addr, addr + len): a cached one (hit) or a new one (miss). */
static int cache_lookup(struct cache *c, void *p, size_t len, struct ibv_mr **out)
{
	uintptr_t addr = (uintptr_t)p;
	int i;

	cache_reap(c);
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < CACHE_SLOTS; i++) {
		struct entry *e = &c->e[i];

		if (e->mr && e->addr <= addr && addr + len <= e->addr + e->len) {
			c->n.hits++;
			*out = e->mr;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return cache_insert(c, addr, len, out);
}

/* The counters, read under the lock. */
static struct counts cache_counts(struct cache *c)
{
	struct counts n;

	pthread_mutex_lock(&c->lock);
	n = c->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* Unsubscribe every entry, then deregister what is left. */
static void cache_fini(struct cache *c)
{
	int i;

	for (i = 0; i < CACHE_SLOTS; i++) {
		mmn_unsubscribe(c->e[i].sub); /* no callback of it runs after this */
		c->e[i].sub = NULL;
		if (c->e[i].mr)
			ibv_dereg_mr(c->e[i].mr);
		c->e[i].mr = NULL;
	}
	pthread_mutex_destroy(&c->lock);
}

/* How many of @len bytes at @p are @b. */
static size_t count_bytes(const unsigned char *p, size_t len, unsigned char b)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		n += p[i] == b;
	return n;
}

/* RDMA READ of @len bytes through @mr into the sink; 0 or -errno. */
static int read_through(struct verbs_loop *l, struct ibv_mr *sink, struct ibv_mr *mr, void *addr, size_t len)
{
	memset(sink->addr, 0, len);
	return verbs_loop_read(l, sink->addr, sink->lkey, (uintptr_t)addr, mr->rkey, (uint32_t)len,
			       READ_TIMEOUT_MS);
}

/*
 * One case: register, read, munmap, map again, look up, read.  Returns the
 * number of bytes the last READ gave that are old ones (the stale bytes).
 */
static size_t run_case(struct verbs_loop *l, struct ibv_mr *sink, struct cache *c, const char *name)
{
	size_t len = BUF_PAGES * (size_t)sysconf(_SC_PAGESIZE), stale;
	struct ibv_mr *mr = NULL, *mr2 = NULL;
	struct counts n;
	uint64_t t0, t1;
	void *p, *q;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	tap_require(p != MAP_FAILED);
	memset(p, OLD_BYTE, len);
	tap_is_int(cache_lookup(c, p, len, &mr), 0, "first lookup registers the buffer");
	tap_require(mr != NULL);
	tap_is_int(read_through(l, sink, mr, p, len), 0, "RDMA READ through the new MR completes");
	tap_is_int(count_bytes(sink->addr, len, OLD_BYTE), len, "it returns the buffer's bytes");

	t0 = mono_ns();
	tap_require(munmap(p, len) == 0);
	t1 = mono_ns();
	n = cache_counts(c);
	tap_is_int(n.drops, c->mmn ? 1 : 0,
		   c->mmn ? "the entry was dropped before munmap returned" : "nothing dropped the entry");
	q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	tap_require(q == p);
	memset(q, NEW_BYTE, len);

	tap_is_int(cache_lookup(c, q, len, &mr2), 0, "second lookup of the same range");
	tap_require(mr2 != NULL);
	n = cache_counts(c);
	if (c->mmn)
		tap_ok(n.misses == 2 && n.hits == 0,
		       "it misses and registers the new pages (hits=%u misses=%u)", n.hits, n.misses);
	else
		tap_ok(n.hits == 1 && mr2 == mr, "it hits the old MR (hits=%u misses=%u)", n.hits, n.misses);
	tap_is_int(read_through(l, sink, mr2, q, len), 0, "RDMA READ through the looked-up MR completes");
	stale = count_bytes(sink->addr, len, OLD_BYTE);
	if (c->mmn) /* the callback acked in time: no eviction at the ack deadline */
		tap_is_int(cache_counts(c).releases, 0, "no subscription was released");
	tap_diag("%s: stale=%d (%zu of %zu bytes old, %zu new), munmap took %.3f ms", name, stale == len,
		 stale, len, count_bytes(sink->addr, len, NEW_BYTE), (double)(t1 - t0) / 1e6);
	cache_fini(c);
	munmap(q, len);
	return stale;
}

/*
 * The invalidate callback runs on libmmn's thread while munmap waits for
 * its ack with the mmap lock held, and must not mmap, munmap or brk then.
 * ibv_dereg_mr() frees: libmmn gives its thread a malloc arena before the
 * first event (a first free() in a callback would create one with mmap()
 * and wait for the mmap lock until the ack deadline evicted the client);
 * what is left to the program is that heaps grow with room to spare and
 * never shrink while it caches.
 */
static void malloc_for_callbacks(void)
{
	mallopt(M_TOP_PAD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
}

/* Root, rxe-up's variables and mmn.ko, or a skip; the GID index. */
static int check_env(void)
{
	const char *g = getenv("MMN_RXE_GID_INDEX");

	if (geteuid() != 0)
		tap_skip_all("needs root (run in the guest: tests/guest/run-guest)");
	if (!getenv("MMN_RXE_DEV") || !g)
		tap_skip_all("no MMN_RXE_DEV/MMN_RXE_GID_INDEX (run under tests/guest/lib/rxe-up)");
	if (access("/sys/module/mmn", F_OK))
		tap_skip_all("mmn.ko is not loaded (run-guest --module)");
	return atoi(g);
}

int main(int argc, char **argv)
{
	struct cache c = {.lock = PTHREAD_MUTEX_INITIALIZER};
	const char *args[] = {"--source=kmod", NULL};
	size_t len = BUF_PAGES * (size_t)sysconf(_SC_PAGESIZE);
	struct mmn_client *cl = NULL;
	struct ibv_mr *sink;
	struct verbs_loop l;
	struct mmnd_run m;
	void *sink_buf;
	int gid, r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s MMND\n", argv[0]);
		return 2;
	}
	gid = check_env();
	malloc_for_callbacks();
	r = verbs_loop_open(&l, getenv("MMN_RXE_DEV"), gid);
	if (r == -ENODEV)
		tap_skip_all("no verbs device named by MMN_RXE_DEV (ibverbs-providers missing?)");
	tap_is_int(r, 0, "loopback RC QP on the rxe device is ready");
	tap_require(r == 0);
	sink_buf = aligned_alloc((size_t)sysconf(_SC_PAGESIZE), len);
	tap_require(sink_buf != NULL);
	sink = ibv_reg_mr(l.pd, sink_buf, len, VERBS_LOOP_MR_ACCESS);
	tap_require(sink != NULL);

	c.pd = l.pd;
	tap_ok(run_case(&l, sink, &c, "without mmn") == len,
	       "without mmn the READ returns the old pages (stale=1)");

	tap_require(mmnd_run_init(&m, argv[1]) == 0);
	tap_require(mmnd_run_start(&m, args, 20000) == 0);
	tap_require(mmn_connect(m.sock, &cl) == 0);
	tap_ok(!!(mmn_capabilities(cl) & MMN_CAP_ACKS_HOLD_KERNEL), "mmnd runs the kmod source");
	tap_require(mmn_start_thread(cl) == 0);
	c = (struct cache){.lock = PTHREAD_MUTEX_INITIALIZER, .pd = l.pd, .mmn = cl};
	tap_is_int(run_case(&l, sink, &c, "with mmn"), 0,
		   "with mmn the READ returns the new pages (stale=0)");

	mmn_disconnect(cl);
	tap_ok(mmnd_run_kill(&m, SIGTERM, 10000) == 0, "mmnd exits cleanly on SIGTERM");
	mmnd_run_fini(&m);
	ibv_dereg_mr(sink);
	free(sink_buf);
	verbs_loop_close(&l);
	return tap_done();
}
