/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn-ucx: UCX's registration caches (ucs_rcache) invalidated by mmnd.
 *
 * How UCX learns of unmaps.  Every ucs_rcache registers a UCM handler for
 * UCM_EVENT_VM_UNMAPPED.  Declared external (ucm_set_external_event(), which
 * must come before the handler is added, i.e. before ucp_init() creates the
 * caches), the event installs none of UCM's libc hooks and reaches the
 * handlers only through ucm_vm_munmap(addr, len).  That call takes UCM's
 * event rwlock for reading (its writers hold it only to edit the handler
 * list) and runs each handler synchronously; the rcache's handler
 * try-locks the cache's page-table lock: when it gets it, the regions of the
 * range leave the page table at once (their deregistration is deferred to
 * the next cache operation); when a UCX thread holds it (registering), the
 * range is queued and the cache empties that queue before its next lookup,
 * so no stale region is handed out after ucm_vm_munmap() returned.  It never
 * waits for a UCX thread.  So the invalidate callback calls ucm_vm_munmap()
 * and returns: the library acks after it returned.  MMN_ACK_LATER is used
 * only when the callback acks itself before unsubscribing.  The handler may
 * still allocate (UCX's memory pools grow rarely, with mmap): with a
 * blocking subscription that waits for the munmap holding the mmap lock,
 * i.e. at worst until the ack deadline, after which mmnd evicts the
 * subscription and release() invalidates its range.
 *
 * What is subscribed.  UCX has no "subscribe on miss" hook, so the library
 * interposes on libucs's ucs_rcache_create/destroy/get (exported functions
 * that libucp and libuct call through the PLT; the library must come before
 * libucs in the lookup order: preloaded, or linked before UCX).  Only caches
 * created after enabling with UCM_EVENT_VM_UNMAPPED in their events are
 * watched.  For them, ucs_rcache_get() first makes sure the page-aligned
 * buffer is subscribed (the missing parts, in one mmn_subscribe_many()),
 * then registers; a region the cache grew beyond the subscribed range
 * (alignment, merging) gets the rest subscribed and is invalidated once,
 * since it was registered before that part was watched.  Subscribing only
 * what UCX registers keeps the uffd source's work to those ranges and never
 * subscribes unmapped memory.  The subscriptions form a disjoint cover
 * (cover.h).  Bounded: an invalidation of a whole subscription removes it
 * (nothing UCX cached there survives it), and past $MMN_UCX_MAX_SUBS (4096)
 * the oldest is evicted after invalidating its range in UCX.  Whatever
 * cannot be subscribed is invalidated right after registering, so UCX never
 * keeps a region that mmn does not watch.
 *
 * The event is external for the whole process: a UCM user outside UCX's
 * caches that registers for UCM_EVENT_VM_UNMAPPED gets no hooks either, and
 * hears only of the ranges the caches registered.
 *
 * Blocking subscriptions where acks hold the kernel (mmn.ko), non-blocking
 * otherwise.  Every event type invalidates (unmap, migration, protection
 * changes and the rest all make a pinned registration stale or wrong).
 *
 * Locks: enable_lock serialises mmn_ucx_enable().  sub_lock serialises
 * subscribing and evicting (held across mmn_subscribe_many() and
 * mmn_unsubscribe(); callbacks never take it).  tab_lock protects the cover
 * and each entry's in_table; it is held only around cover.c calls, never
 * across a call into libmmn or UCX.  Order: sub_lock, tab_lock.  A lookup
 * that hits takes tab_lock once (the pre-check); the post-check is a load
 * of the removal count when the region lies inside the checked range.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ucm/api/ucm.h>
#include <ucp/api/ucp_version.h>
#include <ucs/memory/rcache.h>

#include "mmn/mmn.h"
#include "mmn/ucx.h"
#include "cover.h"

#define EXPORT __attribute__((visibility("default")))

#define GAPS_MAX	 16 /* gaps subscribed per round */
#define ROUNDS_MAX	 8  /* rounds before giving up on a range */
#define RCACHES_MAX	 64 /* watched caches */
#define MAX_SUBS_DEFAULT 4096

typedef ucs_status_t (*rcache_create_fn)(const ucs_rcache_params_t *, const char *, ucs_stats_node_t *,
					 ucs_rcache_t **);
typedef void (*rcache_destroy_fn)(ucs_rcache_t *);
typedef ucs_status_t (*rcache_get_fn)(ucs_rcache_t *, void *, size_t, int, void *, ucs_rcache_region_t **);
typedef void (*vm_munmap_fn)(void *, size_t);
typedef void (*set_external_fn)(int);
typedef void (*ucp_version_fn)(unsigned *, unsigned *, unsigned *);

/* Hidden aliases: this library's own definitions, to tell whether calls reach them. */
extern __typeof__(ucs_rcache_get) self_rcache_get
	__attribute__((alias("ucs_rcache_get"), visibility("hidden")));
extern __typeof__(ucs_rcache_create) self_rcache_create
	__attribute__((alias("ucs_rcache_create"), visibility("hidden")));

/*
 * The adapter's state; one per process.  client, sub_flags, max_subs, page
 * and vm_munmap are set once, before active; active is set (release) and
 * never cleared; forked is set in a fork child.
 */
static struct {
	pthread_mutex_t enable_lock;
	pthread_mutex_t sub_lock;
	pthread_mutex_t tab_lock;
	struct cover cover; /* tab_lock */
	uint64_t removals;  /* entries removed from the cover; written under tab_lock, read atomically */
	struct mmn_client *client;
	uint32_t sub_flags; /* MMN_SUB_BLOCKING or MMN_SUB_NONBLOCKING */
	size_t max_subs;
	uint64_t page;
	bool active;	 /* atomic */
	bool forked;	 /* atomic: this is a fork child of the enabled process */
	bool preloaded;	 /* the constructor acts; set before main() */
	bool auto_tried; /* atomic: the preload's one attempt was made */
	vm_munmap_fn vm_munmap;
	ucs_rcache_t *watched[RCACHES_MAX]; /* atomic slots; NULL = free */
	size_t nwatched;		    /* atomic: slots ever used (only grows) */
} ad = {
	.enable_lock = PTHREAD_MUTEX_INITIALIZER,
	.sub_lock = PTHREAD_MUTEX_INITIALIZER,
	.tab_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* One line on stderr per call site, the first time only; never aborts. */
#define REPORT_ONCE(...)                                                                                     \
	do {                                                                                                 \
		static bool reported_;                                                                       \
		if (!__atomic_exchange_n(&reported_, true, __ATOMIC_RELAXED))                                \
			report(__VA_ARGS__);                                                                 \
	} while (0)

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, "libmmn-ucx: ", 12) < 0 || write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static bool is_active(void)
{
	return __atomic_load_n(&ad.active, __ATOMIC_ACQUIRE);
}

/* libucs's definition of @name (the next one after this library's), looked up once. */
static void *next_fn(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_RELAXED);

	if (!f) {
		f = dlsym(RTLD_NEXT, name);
		__atomic_store_n(slot, f, __ATOMIC_RELAXED);
	}
	return f;
}

static rcache_get_fn real_get(void)
{
	static void *f;

	return (rcache_get_fn)next_fn(&f, "ucs_rcache_get");
}

static rcache_create_fn real_create(void)
{
	static void *f;

	return (rcache_create_fn)next_fn(&f, "ucs_rcache_create");
}

static rcache_destroy_fn real_destroy(void)
{
	static void *f;

	return (rcache_destroy_fn)next_fn(&f, "ucs_rcache_destroy");
}

static void ucx_invalidate(uint64_t start, uint64_t end)
{
	ad.vm_munmap((void *)(uintptr_t)start, end - start);
}

/* Removes @e from the cover; under tab_lock.  A covered range seen before is in doubt from here. */
static void uncover(struct cover_ent *e)
{
	cover_remove(&ad.cover, e);
	__atomic_store_n(&ad.removals, ad.removals + 1, __ATOMIC_RELEASE);
}

/* Takes @e out of the cover if it is still in; true when the caller now owns it. */
static bool take(struct cover_ent *e)
{
	bool mine;

	pthread_mutex_lock(&ad.tab_lock);
	mine = e->in_table;
	if (mine)
		uncover(e);
	pthread_mutex_unlock(&ad.tab_lock);
	return mine;
}

/*
 * An invalidation: UCX drops the range before the ack.  One covering the
 * whole subscription also ends it (taken out of the cover first, so that a
 * registration racing with it subscribes again instead of trusting it).
 */
static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct cover_ent *e = ud;
	bool whole = r->start <= e->start && r->end >= e->end;
	bool mine = whole && take(e);

	ucx_invalidate(r->start, r->end);
	if (!mine)
		return 0;
	if (r->needs_ack)
		mmn_ack(s, r->event_id);
	mmn_unsubscribe(s);
	free(e);
	return MMN_ACK_LATER;
}

/*
 * Revoked (ack deadline, admin, lost events, mmnd stopping): UCX forgets the
 * range.  Marked released, so that subscribe_gaps() does not insert an
 * entry released before it was inserted.
 */
static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct cover_ent *e = ud;
	bool mine;

	pthread_mutex_lock(&ad.tab_lock);
	e->released = true;
	mine = e->in_table;
	if (mine)
		uncover(e);
	pthread_mutex_unlock(&ad.tab_lock);

	ucx_invalidate(e->start, e->end);
	REPORT_ONCE("a subscription was released (reason %d); its registrations were dropped", reason);
	if (mine) {
		mmn_unsubscribe(s);
		free(e);
	}
}

/* Evicts old subscriptions (not overlapping [start, end)) until @n more fit.  Under sub_lock. */
static int make_room(size_t n, uint64_t start, uint64_t end)
{
	for (;;) {
		struct cover_ent *e = NULL;
		bool full;

		pthread_mutex_lock(&ad.tab_lock);
		full = ad.cover.n + n > ad.max_subs;
		if (full) {
			e = cover_oldest_outside(&ad.cover, start, end);
			if (e)
				uncover(e);
		}
		pthread_mutex_unlock(&ad.tab_lock);
		if (!full)
			return 0;
		if (!e)
			return -ENOSPC;
		ucx_invalidate(e->start, e->end);
		mmn_unsubscribe(e->sub);
		free(e);
	}
}

/* Subscribes @n gaps and inserts them into the cover.  Under sub_lock.  0 or the first error. */
static int subscribe_gaps(const struct cover_gap *gaps, size_t n)
{
	struct mmn_sub_opts opts[GAPS_MAX];
	struct mmn_sub_request req[GAPS_MAX];
	struct cover_ent *ents[GAPS_MAX];
	int r = 0, sent;

	for (size_t i = 0; i < n; i++) {
		ents[i] = calloc(1, sizeof(*ents[i]));
		if (!ents[i]) {
			while (i--)
				free(ents[i]);
			return -ENOMEM;
		}
		ents[i]->start = gaps[i].start;
		ents[i]->end = gaps[i].end;
		opts[i] = (struct mmn_sub_opts){
			.size = sizeof(opts[i]),
			.flags = ad.sub_flags,
			.invalidate = on_invalidate,
			.release = on_release,
			.userdata = ents[i],
		};
		req[i] = (struct mmn_sub_request){
			.start = gaps[i].start, .length = gaps[i].end - gaps[i].start, .opts = &opts[i]};
	}
	sent = mmn_subscribe_many(ad.client, req, n);
	for (size_t i = 0; i < n; i++) {
		int err = req[i].sub ? 0 : req[i].error ? req[i].error : sent < 0 ? sent : -EIO;

		if (!err) {
			ents[i]->sub = req[i].sub;
			pthread_mutex_lock(&ad.tab_lock);
			err = ents[i]->released ? -ECONNRESET : cover_insert(&ad.cover, ents[i]);
			pthread_mutex_unlock(&ad.tab_lock);
			if (err)
				mmn_unsubscribe(req[i].sub);
		}
		if (err) {
			free(ents[i]);
			r = r ? r : err;
		}
	}
	return r;
}

/*
 * Makes [start, end) covered.  0, with *@removals the removal count when
 * it was found covered; or a negative errno (part of it is not watched).
 */
static int cover_range(uint64_t start, uint64_t end, uint64_t *removals)
{
	struct cover_gap gaps[GAPS_MAX];
	int r = -EAGAIN;

	pthread_mutex_lock(&ad.sub_lock);
	for (int round = 0; round < ROUNDS_MAX; round++) {
		size_t n;

		pthread_mutex_lock(&ad.tab_lock);
		n = cover_gaps(&ad.cover, start, end, gaps, GAPS_MAX);
		*removals = ad.removals;
		pthread_mutex_unlock(&ad.tab_lock);
		if (n == 0) {
			r = 0;
			break;
		}
		if (n > GAPS_MAX)
			n = GAPS_MAX;
		r = make_room(n, start, end);
		if (r == 0)
			r = subscribe_gaps(gaps, n);
		if (r < 0)
			break;
		r = -EAGAIN;
	}
	pthread_mutex_unlock(&ad.sub_lock);
	return r;
}

static bool covered(uint64_t start, uint64_t end)
{
	size_t n;

	pthread_mutex_lock(&ad.tab_lock);
	n = cover_gaps(&ad.cover, start, end, NULL, 0);
	pthread_mutex_unlock(&ad.tab_lock);
	return n == 0;
}

static bool watched(ucs_rcache_t *rc)
{
	size_t n = __atomic_load_n(&ad.nwatched, __ATOMIC_ACQUIRE);

	for (size_t i = 0; i < n; i++)
		if (__atomic_load_n(&ad.watched[i], __ATOMIC_ACQUIRE) == rc)
			return true;
	return false;
}

static void watch(ucs_rcache_t *rc)
{
	for (size_t i = 0; i < RCACHES_MAX; i++) {
		ucs_rcache_t *none = NULL;

		if (__atomic_compare_exchange_n(&ad.watched[i], &none, rc, false, __ATOMIC_RELEASE,
						__ATOMIC_RELAXED)) {
			size_t n = __atomic_load_n(&ad.nwatched, __ATOMIC_RELAXED);

			while (n < i + 1 && !__atomic_compare_exchange_n(&ad.nwatched, &n, i + 1, false,
									 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
				;
			return;
		}
	}
	REPORT_ONCE("more than %d registration caches: the others keep UCX's hooks", RCACHES_MAX);
}

static void unwatch(ucs_rcache_t *rc)
{
	for (size_t i = 0; i < RCACHES_MAX; i++) {
		ucs_rcache_t *want = rc;

		__atomic_compare_exchange_n(&ad.watched[i], &want, NULL, false, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED);
	}
}

/* The registration path: subscribe the buffer, register, check the region the cache made. */
static ucs_status_t get_watched(ucs_rcache_t *rc, void *address, size_t length, int prot, void *arg,
				ucs_rcache_region_t **region_p)
{
	uint64_t ps = ad.page;
	uint64_t start = (uintptr_t)address & ~(ps - 1);
	uint64_t end = ((uintptr_t)address + length + ps - 1) & ~(ps - 1);
	bool forked = __atomic_load_n(&ad.forked, __ATOMIC_RELAXED);
	uint64_t seen = 0, rs, re, unused;
	int r = forked ? -ECHILD : end > start ? cover_range(start, end, &seen) : -EINVAL;
	ucs_status_t st = real_get()(rc, address, length, prot, arg, region_p);

	if (st != UCS_OK)
		return st;
	rs = (*region_p)->super.start;
	re = (*region_p)->super.end;
	/* Inside what was covered, with nothing removed since: still covered (no lock). */
	if (r == 0 && rs >= start && re <= end && __atomic_load_n(&ad.removals, __ATOMIC_ACQUIRE) == seen)
		return st;
	if (r == 0 && covered(rs, re))
		return st;
	/*
	 * Registered before all of it was watched: watch it for next time, do
	 * not cache this one.  In a fork child nothing is watched (the
	 * connection and the cover are the parent's): no region is kept, the
	 * ones cached before fork() included.
	 */
	if (r == 0)
		r = cover_range(rs & ~(ps - 1), (re + ps - 1) & ~(ps - 1), &unused);
	if (r < 0)
		REPORT_ONCE("cannot watch a registered range (%s): such registrations are not cached",
			    mmn_strerror(r));
	ucx_invalidate(rs, re);
	return st;
}

EXPORT ucs_status_t ucs_rcache_get(ucs_rcache_t *rcache, void *address, size_t length, int prot, void *arg,
				   ucs_rcache_region_t **region_p)
{
	rcache_get_fn get = real_get();

	if (!get)
		return UCS_ERR_UNSUPPORTED;
	if (is_active() && watched(rcache))
		return get_watched(rcache, address, length, prot, arg, region_p);
	return get(rcache, address, length, prot, arg, region_p);
}

static void enable_auto(void);

EXPORT ucs_status_t ucs_rcache_create(const ucs_rcache_params_t *params, const char *name,
				      ucs_stats_node_t *stats_parent, ucs_rcache_t **rcache_p)
{
	rcache_create_fn create = real_create();
	ucs_status_t st;

	if (ad.preloaded)
		enable_auto();
	if (!create)
		return UCS_ERR_UNSUPPORTED;
	st = create(params, name, stats_parent, rcache_p);
	if (st == UCS_OK && is_active() && (params->ucm_events & UCM_EVENT_VM_UNMAPPED))
		watch(*rcache_p);
	return st;
}

EXPORT void ucs_rcache_destroy(ucs_rcache_t *rcache)
{
	rcache_destroy_fn destroy = real_destroy();

	unwatch(rcache);
	if (destroy)
		destroy(rcache);
}

/* UCX's functions, and whether this library's interpositions are the ones called. */
static int resolve(set_external_fn *set_external)
{
	ucp_version_fn version = (ucp_version_fn)dlsym(RTLD_DEFAULT, "ucp_get_version");
	unsigned major, minor, release;

	ad.vm_munmap = (vm_munmap_fn)dlsym(RTLD_DEFAULT, "ucm_vm_munmap");
	*set_external = (set_external_fn)dlsym(RTLD_DEFAULT, "ucm_set_external_event");
	if (!real_create() || !real_destroy() || !real_get() || !ad.vm_munmap || !*set_external)
		return -ENOTSUP;
	/* ucs_rcache_get() changed its arguments in 1.17: only the version built for. */
	if (version) {
		version(&major, &minor, &release);
		if (major != UCP_API_MAJOR || minor != UCP_API_MINOR)
			return -ENOTSUP;
	}
	if (dlsym(RTLD_DEFAULT, "ucs_rcache_get") != (void *)self_rcache_get ||
	    dlsym(RTLD_DEFAULT, "ucs_rcache_create") != (void *)self_rcache_create)
		return -ENOTSUP;
	return 0;
}

static size_t max_subs_from_env(void)
{
	const char *s = getenv("MMN_UCX_MAX_SUBS");
	char *endp;
	unsigned long v;

	if (!s || !*s)
		return MAX_SUBS_DEFAULT;
	v = strtoul(s, &endp, 10);
	return *endp || v < GAPS_MAX ? MAX_SUBS_DEFAULT : v;
}

static bool disabled_by_env(void)
{
	const char *s = getenv("MMN_UCX_DISABLE");

	return s && *s && strcmp(s, "0") != 0;
}

static void in_fork_child(void)
{
	__atomic_store_n(&ad.forked, true, __ATOMIC_RELAXED);
}

static int enable_locked(const char *socket_path)
{
	set_external_fn set_external;
	struct mmn_client *c;
	int r;

	if (disabled_by_env())
		return -ECANCELED;
	r = resolve(&set_external);
	if (r < 0)
		return r;
	r = mmn_connect(socket_path, &c);
	if (r < 0)
		return r;
	r = mmn_start_thread(c);
	if (r < 0) {
		mmn_disconnect(c);
		return r;
	}
	ad.client = c;
	ad.sub_flags =
		mmn_capabilities(c) & MMN_CAP_ACKS_HOLD_KERNEL ? MMN_SUB_BLOCKING : MMN_SUB_NONBLOCKING;
	ad.max_subs = max_subs_from_env();
	ad.page = (uint64_t)sysconf(_SC_PAGESIZE);
	if (pthread_atfork(NULL, NULL, in_fork_child) != 0)
		REPORT_ONCE("pthread_atfork failed: registrations in fork children are kept");
	/*
	 * Active first: a cache created meanwhile on another thread is watched
	 * and may keep hooks too (harmless), never the reverse (no hooks, not
	 * watched).  From here caches install no libc hooks for unmaps.
	 */
	__atomic_store_n(&ad.active, true, __ATOMIC_RELEASE);
	set_external(UCM_EVENT_VM_UNMAPPED);
	return 0;
}

EXPORT int mmn_ucx_enable(const char *socket_path)
{
	int r = 0;

	pthread_mutex_lock(&ad.enable_lock);
	if (!is_active())
		r = enable_locked(socket_path);
	pthread_mutex_unlock(&ad.enable_lock);
	return r;
}

EXPORT bool mmn_ucx_enabled(void)
{
	return is_active();
}

/* The preload's one attempt, at load time or at the first cache creation. */
static void enable_auto(void)
{
	int r;

	if (__atomic_exchange_n(&ad.auto_tried, true, __ATOMIC_ACQ_REL))
		return;
	r = mmn_ucx_enable(NULL);
	if (r < 0 && r != -ECANCELED)
		report("not enabled (%s): UCX keeps its own hooks", mmn_strerror(r));
}

/*
 * Preloaded (LD_PRELOAD names this library): enable now when UCX is loaded,
 * else at its first ucs_rcache_create().  A runtime linking the library
 * calls mmn_ucx_enable() itself.
 */
__attribute__((constructor)) static void preload(void)
{
	const char *p = getenv("LD_PRELOAD");

	if (!p || !strstr(p, "libmmn-ucx"))
		return;
	ad.preloaded = true;
	if (dlsym(RTLD_DEFAULT, "ucm_vm_munmap"))
		enable_auto();
}
