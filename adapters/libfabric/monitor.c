/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"
#include "spans.h"

#define MLF_EVENTS 512		     /* invalidations waiting for notify; beyond: flush all */
#define MLF_STACK (256 * 1024)	     /* each thread's stack: populated and locked */
#define MLF_TICK_NS (10 * 1000 * 1000) /* keeper's period while an ack is due */

enum node_state {
	NODE_FREE,
	NODE_NEW,     /* mmn_subscribe() in flight; not in m->live */
	NODE_LIVE,    /* in m->live */
	NODE_DOOMED,  /* invalidated, evicted, released or stopped: to unsubscribe */
	NODE_RETIRED, /* replaced by a merged subscription: to unsubscribe */
	NODE_REAPING, /* mmn_unsubscribe() in flight */
};

/* One subscription; guarded by m->lk. */
struct node {
	struct span span; /* [start, end) page-aligned; m->live holds &span */
	struct mlf_monitor *m;
	struct mmn_sub *sub; /* NULL until mmn_subscribe() returned it and install_locked() ran */
	uint64_t seq;	     /* sub's mmn_read_begin() value, when armed */
	uint64_t used;	     /* m->clock at the last subscribe or valid hit (LRU) */
	unsigned npending;   /* events naming it, not yet notified: it is not reaped before */
	enum node_state state;
	bool armed;
};

enum ev_state { EV_FREE, EV_QUEUED, EV_NOTIFYING };

/* A range to notify, and the invalidation to ack once it is (when !acked). */
struct event {
	uint64_t start, end;
	struct node *node; /* whose npending counts it */
	struct mmn_sub *sub;
	uint64_t event_id;
	uint64_t since_ms; /* when recorded (keeper's deadline) */
	enum ev_state state;
	bool acked;
};

struct mlf_monitor {
	struct mmn_client *c;
	mlf_notify_fn notify;
	void *ctx;
	uint32_t sub_flags;
	/*
	 * The source holds the kernel (mmn.ko): its subscriptions are mmu
	 * interval notifiers on address ranges, which outlive the mappings, so
	 * an invalidation only disarms a node until its range is notified.  The
	 * userfaultfd source watches the mappings themselves: an invalidated
	 * node is dropped.
	 */
	bool keep;
	unsigned max_subs;
	/* Serialises mlf_subscribe(); taken before lk. */
	pthread_mutex_t sub_lock;
	/*
	 * Guards everything below.  libmmn's thread takes it in callbacks, so
	 * a holder waits for nothing else: no allocation, no libfabric call,
	 * no libmmn call but mmn_ack() (a send), and only this struct, the
	 * node array and the set, allocated up front, faulted in and locked.
	 */
	pthread_mutex_t lk;
	pthread_cond_t work; /* notifier: an event, a flush, a node to reap, stopping */
	pthread_cond_t tick; /* keeper: an ack became due, stopping */
	pthread_cond_t idle; /* mlf_drain(): the notifier found nothing to do */
	struct spans live;
	struct node *nodes; /* nnodes = 2 * max_subs: the live ones and those being reaped */
	size_t nnodes;
	unsigned npend;	    /* events not EV_FREE */
	unsigned ninflight; /* invalidations whose end has not come (mlf_drain() waits for them) */
	unsigned nunacked;  /* events with !acked */
	bool flush_req;	    /* a notify of everything is due (the event array overflowed) */
	bool flushing;	    /* ... and runs */
	bool subscribing;   /* mlf_subscribe() holds the cache lock (or destroy runs): ack at once */
	bool reap;	    /* a node may wait for its unsubscribe */
	bool rearm;	    /* an invalidation ended: the notifier re-arms what it can */
	bool stopping;
	uint64_t clock;
	struct mmn_libfabric_stats st;
	pthread_t notifier, keeper;
	void *stacks;	    /* both threads' stacks (2 * MLF_STACK), mapped populated */
	struct event ev[MLF_EVENTS];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* mlock the loaded segments of the object whose base is @data (best effort). */
static int lock_object(struct dl_phdr_info *info, size_t size, void *data)
{
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	bool ours = false;

	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_LOAD &&
		    info->dlpi_addr + info->dlpi_phdr[i].p_vaddr - info->dlpi_phdr[i].p_offset == (uintptr_t)data)
			ours = true;
	for (int i = 0; ours && i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = (info->dlpi_addr + ph->p_vaddr) & ~(ps - 1);
		uintptr_t b = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + ps - 1) & ~(ps - 1);

		if (ph->p_type == PT_LOAD)
			(void)mlock((void *)a, b - a);
	}
	return 0;
}

/*
 * The keeper must not fault while the kernel holds the mmap lock for our
 * ack (a first execution of a text page is a file fault): lock this
 * code.  libmmn locks its own, and libprotobuf-c, for its thread.
 */
static void lock_code(void)
{
	Dl_info di;

	if (dladdr((void *)mlf_create, &di) && di.dli_fbase)
		dl_iterate_phdr(lock_object, di.dli_fbase);
}

/* Resident and locked (best effort: RLIMIT_MEMLOCK may refuse the lock). */
static void pin(void *p, size_t len)
{
	memset(p, 0, len);
	(void)mlock(p, len);
}

/*
 * mmn_read_begin() without its waits, which subscribe cannot afford under
 * the cache lock (an invalidation whose ack needs that lock, a
 * reconnection): the quiescent case of mmn.h's inline reader.  A node not
 * armed is invalid until a later subscribe of its range arms it.
 */
static void arm(struct node *n)
{
	n->armed = n->sub && mmn__seq_begin((const struct mmn_sub_seq *)(void *)n->sub, &n->seq);
}

static void doom_locked(struct mlf_monitor *m, struct node *n)
{
	if (n->state == NODE_LIVE)
		spans_remove(&m->live, &n->span);
	if (n->state == NODE_LIVE || n->state == NODE_NEW) {
		n->state = NODE_DOOMED;
		m->reap = true;
		pthread_cond_signal(&m->work);
	}
	m->st.subs = m->live.n;
}

/* Record [start, end) for notify; NULL when full (then everything is flushed). */
static struct event *queue_locked(struct mlf_monitor *m, uint64_t start, uint64_t end, struct node *n)
{
	pthread_cond_signal(&m->work);
	for (size_t i = 0; i < MLF_EVENTS; i++) {
		struct event *e = &m->ev[i];

		if (e->state != EV_FREE)
			continue;
		*e = (struct event){.start = start, .end = end, .node = n, .state = EV_QUEUED, .acked = true,
				    .since_ms = now_ms()};
		if (n)
			n->npending++;
		m->npend++;
		return e;
	}
	m->flush_req = true;
	return NULL;
}

static void ack_locked(struct mlf_monitor *m, struct event *e)
{
	if (e->acked)
		return;
	/* A node being removed: mmn_unsubscribe() ends its invalidations. */
	if (!e->node || e->node->state != NODE_REAPING)
		(void)mmn_ack(e->sub, e->event_id);
	e->acked = true;
	if (!--m->nunacked && m->reap)
		pthread_cond_signal(&m->work);
}

static void ack_all_locked(struct mlf_monitor *m, uint64_t older_than_ms)
{
	for (size_t i = 0; m->nunacked && i < MLF_EVENTS; i++) {
		struct event *e = &m->ev[i];

		if (e->state != EV_FREE && !e->acked && e->since_ms <= older_than_ms) {
			ack_locked(m, e);
			m->st.late_acks++;
		}
	}
}

static bool pending_overlap_locked(struct mlf_monitor *m, uint64_t start, uint64_t end)
{
	if (m->flush_req || m->flushing)
		return true;
	for (size_t i = 0, seen = 0; seen < m->npend && i < MLF_EVENTS; i++) {
		const struct event *e = &m->ev[i];

		if (e->state == EV_FREE)
			continue;
		seen++;
		if (e->start < end && start < e->end)
			return true;
	}
	return false;
}

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct node *n = ud;
	struct mlf_monitor *m = n->m;
	struct event *e;
	int ret = 0;

	pthread_mutex_lock(&m->lk);
	m->st.invalidations++;
	m->st.resyncs += r->event == MMN_EVENT_RESYNC;
	m->ninflight++;
	if (m->keep && r->event != MMN_EVENT_RELEASE)
		n->armed = false; /* re-armed once the range is notified */
	else
		doom_locked(m, n);
	e = queue_locked(m, r->start, r->end, n);
	/* While a subscribe holds the cache lock, valid() refusing the range is enough: ack now. */
	if (e && r->needs_ack && !m->subscribing && n->state != NODE_REAPING) {
		e->sub = s;
		e->event_id = r->event_id;
		e->acked = false;
		m->nunacked++;
		pthread_cond_signal(&m->tick);
		ret = MMN_ACK_LATER;
	}
	pthread_mutex_unlock(&m->lk);
	return ret;
}

/*
 * The invalidation is over (its sequence even again): the notifier re-arms
 * the nodes notified meanwhile.  Not here: reading the sequence page may
 * fault, and libmmn's thread must not.
 */
static void on_invalidate_end(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct node *n = ud;
	struct mlf_monitor *m = n->m;

	pthread_mutex_lock(&m->lk);
	if (n->state == NODE_LIVE && !n->armed) {
		m->rearm = true;
		pthread_cond_signal(&m->work);
	}
	if (m->ninflight && !--m->ninflight)
		pthread_cond_broadcast(&m->idle);
	pthread_mutex_unlock(&m->lk);
}

/* Arm the live nodes whose events are all notified. */
static void rearm_locked(struct mlf_monitor *m)
{
	m->rearm = false;
	for (size_t i = 0; i < m->live.n; i++) {
		struct node *n = (struct node *)m->live.v[i];

		if (!n->armed && !n->npending)
			arm(n);
	}
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct node *n = ud;
	struct mlf_monitor *m = n->m;

	pthread_mutex_lock(&m->lk);
	if (n->state == NODE_NEW)
		m->flush_req = true;
	else
		(void)queue_locked(m, n->span.start, n->span.end, n);
	doom_locked(m, n);
	pthread_mutex_unlock(&m->lk);
}

/*
 * Unsubscribe one dropped node: true if there was one.  The notifier takes
 * only nodes whose events are all notified (and acked); subscribe, which
 * acked everything, takes any (@any) when it needs the slot.
 */
static bool reap_one_locked(struct mlf_monitor *m, bool any)
{
	struct node *n = NULL;
	struct mmn_sub *sub;

	for (size_t i = 0; i < m->nnodes && !n; i++)
		if ((m->nodes[i].state == NODE_DOOMED || m->nodes[i].state == NODE_RETIRED) &&
		    (any || !m->nodes[i].npending) && m->nodes[i].sub)
			n = &m->nodes[i];
	if (!n) {
		if (!any)
			m->reap = false;
		return false;
	}
	n->state = NODE_REAPING;
	sub = n->sub;
	pthread_mutex_unlock(&m->lk);
	(void)mmn_unsubscribe(sub);
	pthread_mutex_lock(&m->lk);
	m->st.unsubscribes++;
	/* Events that came meanwhile name a freed handle: nothing to ack any more. */
	for (size_t i = 0; i < MLF_EVENTS; i++) {
		struct event *e = &m->ev[i];

		if (e->state != EV_FREE && e->node == n) {
			ack_locked(m, e);
			e->node = NULL;
		}
	}
	*n = (struct node){.state = NODE_FREE};
	return true;
}

static struct node *node_alloc_locked(struct mlf_monitor *m)
{
	for (size_t i = 0; i < m->nnodes; i++) {
		struct node *n = &m->nodes[i];

		if (n->state == NODE_FREE) {
			*n = (struct node){.m = m, .state = NODE_NEW};
			return n;
		}
	}
	return NULL;
}

/* Drop the least recently used live node; its entries are notified. */
static void evict_locked(struct mlf_monitor *m)
{
	struct node *lru = NULL;

	for (size_t i = 0; i < m->live.n; i++) {
		struct node *n = (struct node *)m->live.v[i];

		if (!lru || n->used < lru->used)
			lru = n;
	}
	if (!lru)
		return;
	(void)queue_locked(m, lru->span.start, lru->span.end, lru);
	doom_locked(m, lru);
	m->st.evictions++;
}

/*
 * @n (subscribed to [start, end)) replaces the live nodes it overlaps:
 * those inside it retire (it watches their entries), any other is
 * doomed (its entries outside would go unwatched).
 */
static void replace_locked(struct mlf_monitor *m, uint64_t start, uint64_t end)
{
	size_t first;

	while (spans_touching(&m->live, start, end, &first)) {
		struct node *o = NULL;

		for (size_t i = first; i < m->live.n && m->live.v[i]->start < end; i++)
			if (m->live.v[i]->end > start) {
				o = (struct node *)m->live.v[i];
				break;
			}
		if (!o)
			return;
		if (start <= o->span.start && o->span.end <= end) {
			spans_remove(&m->live, &o->span);
			o->state = NODE_RETIRED;
			m->reap = true;
			m->st.merges++;
		} else {
			(void)queue_locked(m, o->span.start, o->span.end, o);
			doom_locked(m, o);
		}
	}
}

/* Subscribe @n to [*start, *end), or to [s, e) when that fails; 0 or a negative errno. */
static int subscribe_node(struct mlf_monitor *m, struct node *n, uint64_t s, uint64_t e, uint64_t *start,
			  uint64_t *end, struct mmn_sub **sub)
{
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = m->sub_flags,
		.invalidate = on_invalidate,
		.invalidate_end = on_invalidate_end,
		.release = on_release,
		.userdata = n,
	};
	int ret = mmn_subscribe(m->c, 0, *start, *end - *start, &o, sub);

	if (ret && (*start != s || *end != e)) {
		*start = s;
		*end = e;
		ret = mmn_subscribe(m->c, 0, s, e - s, &o, sub);
	}
	return ret;
}

/* After mmn_subscribe() of @n returned @ret: make it live.  0 or a negative errno. */
static int install_locked(struct mlf_monitor *m, struct node *n, int ret, struct mmn_sub *sub, uint64_t start,
			  uint64_t end)
{
	if (ret) {
		n->state = NODE_FREE;
		m->st.errors++;
		return ret;
	}
	n->sub = sub;
	m->st.subscribes++;
	n->span = (struct span){start, end};
	if (n->state == NODE_DOOMED) {
		/* Invalidated already: the entry stays uncached. */
		m->reap = true;
		pthread_cond_signal(&m->work);
		return -EAGAIN;
	}
	replace_locked(m, start, end);
	while (m->live.n >= m->max_subs)
		evict_locked(m);
	ret = spans_insert(&m->live, &n->span);
	if (ret) {
		(void)queue_locked(m, start, end, n);
		doom_locked(m, n);
		return ret;
	}
	n->state = NODE_LIVE;
	n->used = ++m->clock;
	arm(n);
	m->st.subs = m->live.n;
	return 0;
}

/* [*s, *e) grown to the live spans it overlaps or touches. */
static void merged_locked(struct mlf_monitor *m, uint64_t *s, uint64_t *e)
{
	size_t first, k = spans_touching(&m->live, *s, *e, &first);

	if (!k)
		return;
	if (m->live.v[first]->start < *s)
		*s = m->live.v[first]->start;
	if (m->live.v[first + k - 1]->end > *e)
		*e = m->live.v[first + k - 1]->end;
}

int mlf_subscribe(struct mlf_monitor *m, uint64_t addr, uint64_t len)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE), s, e, start, end;
	struct mmn_sub *sub = NULL;
	struct node *n;
	int ret;

	if (!m || !len || addr + len < addr)
		return -EINVAL;
	if (addr + len > UINT64_MAX - ps)
		return -EOVERFLOW;
	s = addr & ~(ps - 1);
	e = (addr + len + ps - 1) & ~(ps - 1);
	pthread_mutex_lock(&m->sub_lock);
	pthread_mutex_lock(&m->lk);
	m->subscribing = true;
	ack_all_locked(m, UINT64_MAX);
	n = (struct node *)spans_covering(&m->live, s, e);
	if (n) {
		n->used = ++m->clock;
		if (!n->armed)
			arm(n);
		ret = 0;
		goto out;
	}
	start = s;
	end = e;
	merged_locked(m, &start, &end);
	n = node_alloc_locked(m);
	/* Every slot held by dropped subscriptions the notifier has not removed yet. */
	if (!n && reap_one_locked(m, true))
		n = node_alloc_locked(m);
	ret = -ENOSPC;
	if (!n)
		goto out;
	pthread_mutex_unlock(&m->lk);
	ret = subscribe_node(m, n, s, e, &start, &end, &sub);
	/* Fault the sequence slot in here, not later under lk (arm() reads it). */
	if (!ret)
		(void)mmn_read_retry(sub, 0);
	pthread_mutex_lock(&m->lk);
	ret = install_locked(m, n, ret, sub, start, end);
out:
	m->subscribing = false;
	pthread_mutex_unlock(&m->lk);
	pthread_mutex_unlock(&m->sub_lock);
	return ret;
}

bool mlf_valid(struct mlf_monitor *m, uint64_t addr, uint64_t len)
{
	struct node *n;
	bool ok;

	if (!m || addr + len < addr)
		return false;
	pthread_mutex_lock(&m->lk);
	n = (struct node *)spans_covering(&m->live, addr, addr + len);
	ok = n && n->armed && !mmn_read_retry(n->sub, n->seq) && !pending_overlap_locked(m, addr, addr + len);
	if (ok) {
		n->used = ++m->clock;
		m->st.valid_hits++;
	} else {
		m->st.valid_misses++;
	}
	pthread_mutex_unlock(&m->lk);
	return ok;
}

/* Notify @e's range, then ack it; returns with m->lk held again. */
static void notify_event_locked(struct mlf_monitor *m, struct event *e)
{
	uint64_t start = e->start, end = e->end;

	e->state = EV_NOTIFYING;
	pthread_mutex_unlock(&m->lk);
	m->notify(m->ctx, start, end - start);
	pthread_mutex_lock(&m->lk);
	ack_locked(m, e);
	if (e->node && --e->node->npending == 0) {
		m->reap = true;
		/* Every entry older than the invalidations is gone: newer ones are good
		 * (arm() fails while one is still in flight; its end arms then). */
		if (e->node->state == NODE_LIVE && !e->node->armed)
			arm(e->node);
	}
	e->state = EV_FREE;
	m->npend--;
	m->st.notifies++;
}

/* Everything (the event array overflowed); then every event's range is notified too. */
static void flush_locked(struct mlf_monitor *m)
{
	m->flush_req = false;
	m->flushing = true;
	pthread_mutex_unlock(&m->lk);
	m->notify(m->ctx, 0, UINT64_MAX);
	pthread_mutex_lock(&m->lk);
	m->flushing = false;
	m->st.notifies++;
}

static struct event *next_queued_locked(struct mlf_monitor *m)
{
	for (size_t i = 0; m->npend && i < MLF_EVENTS; i++)
		if (m->ev[i].state == EV_QUEUED)
			return &m->ev[i];
	return NULL;
}

/*
 * Notifies, acks after notify, unsubscribes what is gone.  Not while an ack
 * is due: mmn_unsubscribe() frees under libmmn's client lock, and a free
 * that returns memory to the kernel waits for the mmap lock the kernel may
 * hold until that ack, which needs the client lock.
 */
static void *notifier_main(void *arg)
{
	struct mlf_monitor *m = arg;
	struct event *e;

	pthread_setname_np(pthread_self(), "mmn-lf-notify");
	pthread_mutex_lock(&m->lk);
	while (!m->stopping) {
		if (m->flush_req)
			flush_locked(m);
		else if (m->rearm)
			rearm_locked(m);
		else if ((e = next_queued_locked(m)))
			notify_event_locked(m, e);
		else if (!m->reap || m->nunacked || !reap_one_locked(m, false)) {
			pthread_cond_broadcast(&m->idle);
			pthread_cond_wait(&m->work, &m->lk);
		}
	}
	pthread_mutex_unlock(&m->lk);
	return NULL;
}

/* Acks what notify holds up beyond MLF_ACK_LATE_MS (valid() refuses the range already). */
static void *keeper_main(void *arg)
{
	struct mlf_monitor *m = arg;

	pthread_setname_np(pthread_self(), "mmn-lf-keeper");
	pthread_mutex_lock(&m->lk);
	/* Run the timed wait once now: a first call of it must not fault later. */
	(void)pthread_cond_timedwait(&m->tick, &m->lk, &(struct timespec){0, 0});
	(void)now_ms();
	while (!m->stopping) {
		struct timespec ts;

		if (!m->nunacked) {
			pthread_cond_wait(&m->tick, &m->lk);
			continue;
		}
		ack_all_locked(m, now_ms() - MLF_ACK_LATE_MS);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += MLF_TICK_NS;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&m->tick, &m->lk, &ts);
	}
	pthread_mutex_unlock(&m->lk);
	return NULL;
}

static int init_locks(struct mlf_monitor *m)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&m->sub_lock, NULL);
	pthread_mutex_init(&m->lk, NULL);
	pthread_cond_init(&m->work, NULL);
	pthread_cond_init(&m->idle, NULL);
	if (pthread_condattr_init(&ca))
		return -ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->tick, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

static int spawn(struct mlf_monitor *m, pthread_t *t, void *(*fn)(void *), char *stack)
{
	pthread_attr_t attr;
	int ret;

	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, stack, MLF_STACK);
	ret = pthread_create(t, &attr, fn, m);
	pthread_attr_destroy(&attr);
	return ret;
}

/*
 * Both threads, with every signal blocked (the application's handlers stay
 * on its threads), on stacks mapped populated and locked: a thread that
 * acks must not fault while the kernel holds the mmap lock for that ack.
 */
static int start_threads(struct mlf_monitor *m)
{
	sigset_t all, old;
	int ret;

	m->stacks = mmap(NULL, 2 * MLF_STACK, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_POPULATE, -1, 0);
	if (m->stacks == MAP_FAILED) {
		m->stacks = NULL;
		return -ENOMEM;
	}
	(void)mlock(m->stacks, 2 * MLF_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = spawn(m, &m->notifier, notifier_main, m->stacks);
	if (!ret) {
		ret = spawn(m, &m->keeper, keeper_main, (char *)m->stacks + MLF_STACK);
		if (ret) {
			pthread_mutex_lock(&m->lk);
			m->stopping = true;
			pthread_cond_broadcast(&m->work);
			pthread_mutex_unlock(&m->lk);
			pthread_join(m->notifier, NULL);
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -ret;
}

static void free_monitor(struct mlf_monitor *m)
{
	if (m->stacks)
		munmap(m->stacks, 2 * MLF_STACK);
	spans_fini(&m->live);
	free(m->nodes);
	pthread_mutex_destroy(&m->sub_lock);
	pthread_mutex_destroy(&m->lk);
	pthread_cond_destroy(&m->work);
	pthread_cond_destroy(&m->tick);
	pthread_cond_destroy(&m->idle);
	free(m);
}

int mlf_create(struct mmn_client *c, unsigned max_subs, mlf_notify_fn notify, void *ctx,
	       struct mlf_monitor **out)
{
	struct mlf_monitor *m;
	int ret;

	if (!c || !notify || !out)
		return -EINVAL;
	max_subs = max_subs ? max_subs : 1024;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pin(m, sizeof(*m));
	m->c = c;
	m->notify = notify;
	m->ctx = ctx;
	m->max_subs = max_subs;
	m->nnodes = 2 * (size_t)max_subs;
	m->keep = mmn_capabilities(c) & MMN_CAP_ACKS_HOLD_KERNEL;
	m->sub_flags = m->keep ? MMN_SUB_BLOCKING : MMN_SUB_NONBLOCKING;
	m->nodes = calloc(m->nnodes, sizeof(*m->nodes));
	ret = init_locks(m);
	if (!ret && (!m->nodes || spans_init(&m->live, max_subs)))
		ret = -ENOMEM;
	if (!ret) {
		pin(m->nodes, m->nnodes * sizeof(*m->nodes));
		pin(m->live.v, max_subs * sizeof(*m->live.v));
		lock_code();
		ret = mmn_start_thread(c);
		if (ret == -EALREADY)
			ret = 0;
	}
	if (!ret)
		ret = start_threads(m);
	if (ret) {
		free_monitor(m);
		return ret;
	}
	*out = m;
	return 0;
}

void mlf_destroy(struct mlf_monitor *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lk);
	m->stopping = true;
	pthread_cond_broadcast(&m->work);
	pthread_cond_broadcast(&m->tick);
	pthread_mutex_unlock(&m->lk);
	pthread_join(m->notifier, NULL);
	pthread_join(m->keeper, NULL);
	/* No thread of ours runs; callbacks may, until each unsubscribe returns: they ack at once. */
	pthread_mutex_lock(&m->lk);
	m->subscribing = true;
	ack_all_locked(m, UINT64_MAX);
	pthread_mutex_unlock(&m->lk);
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mmn_sub *sub;

		pthread_mutex_lock(&m->lk);
		sub = m->nodes[i].sub;
		m->nodes[i].sub = NULL;
		m->nodes[i].state = NODE_REAPING;
		pthread_mutex_unlock(&m->lk);
		if (sub)
			(void)mmn_unsubscribe(sub);
	}
	free_monitor(m);
}

void mlf_start(struct mlf_monitor *m)
{
	if (!m)
		return;
	/* Notify an empty range once: libfabric's notify path gets faulted in now. */
	pthread_mutex_lock(&m->lk);
	(void)queue_locked(m, 0, 1, NULL);
	pthread_mutex_unlock(&m->lk);
}

void mlf_stop(struct mlf_monitor *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lk);
	while (m->live.n)
		doom_locked(m, (struct node *)m->live.v[0]);
	pthread_mutex_unlock(&m->lk);
}

void mlf_drain(struct mlf_monitor *m)
{
	pthread_mutex_lock(&m->lk);
	while (m->npend || m->flush_req || m->flushing || m->reap || m->rearm || m->ninflight) {
		pthread_cond_signal(&m->work);
		pthread_cond_wait(&m->idle, &m->lk);
	}
	pthread_mutex_unlock(&m->lk);
}

void mlf_stats(struct mlf_monitor *m, struct mmn_libfabric_stats *out)
{
	pthread_mutex_lock(&m->lk);
	*out = m->st;
	pthread_mutex_unlock(&m->lk);
}
