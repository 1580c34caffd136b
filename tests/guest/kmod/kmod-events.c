// SPDX-License-Identifier: GPL-2.0
/*
 * Events: each kind of page-table change of a subscribed target produces
 * one INVALIDATE with the kernel's event, the unclipped range and the
 * subscription's clipped range; every INVALIDATE is followed by one
 * INVALIDATE_END with the same seq; exit and exec give RELEASE.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt.h"
#include "lib/knob.h"
#include "tap.h"

#define P KT_PAGE

static struct drv *d;

/* One op on a fresh 16-page mapping with a subscription on pages [4, 8). */
struct setup {
	struct target t;
	uint64_t base;
	uint32_t id;
};

static void setup(struct setup *s, uint32_t flags)
{
	int r;

	struct target_res res;

	tap_require(kt_settle(d));
	tap_require(target_op_start(&s->t) == 0);
	tap_require(target_op_do(&s->t, T_MMAP, 0, 16 * P, 0, &res) == 0);
	s->base = res.val;
	r = drv_subscribe(d, s->t.pid, s->base + 4 * P, 4 * P, flags, 0, &s->id);
	if (r)
		tap_diag("SUBSCRIBE: %s (%s)", strerror(-r), drv_extack(d));
	tap_require(r == 0);
}

static void teardown(struct setup *s)
{
	drv_unsubscribe(d, s->id);
	target_op_stop(&s->t);
}

/* Checks the single INVALIDATE of evs and its END; returns it. */
static const struct drv_ev *one(struct kt_evs *evs, const char *what, uint32_t event,
				uint64_t rs, uint64_t re, uint32_t id, uint64_t cs,
				uint64_t ce)
{
	const struct drv_ev *ev = NULL;
	int n = kt_count(evs, MMN_CMD_INVALIDATE, &ev);
	char name[160];

	snprintf(name, sizeof(name), "%s: exactly one INVALIDATE", what);
	if (!tap_is_int(n, 1, name))
		return NULL;
	snprintf(name, sizeof(name), "%s: event", what);
	tap_is_int(ev->event, event, name);
	if (rs != UINT64_MAX) {
		snprintf(name, sizeof(name), "%s: unclipped range start", what);
		tap_is_u64(ev->range_start, rs, name);
		snprintf(name, sizeof(name), "%s: unclipped range end", what);
		tap_is_u64(ev->range_end, re, name);
	}
	snprintf(name, sizeof(name), "%s: one subscription listed", what);
	tap_is_int(ev->nsubs, 1, name);
	snprintf(name, sizeof(name), "%s: subscription id", what);
	tap_is_int(ev->subs[0].id, id, name);
	snprintf(name, sizeof(name), "%s: clipped start", what);
	tap_is_u64(ev->subs[0].start, cs, name);
	snprintf(name, sizeof(name), "%s: clipped end", what);
	tap_is_u64(ev->subs[0].end, ce, name);
	snprintf(name, sizeof(name), "%s: blockable, no ack needed", what);
	tap_is_int(ev->flags, MMN_EV_F_BLOCKABLE, name);
	snprintf(name, sizeof(name), "%s: INVALIDATE_END with the same seq", what);
	tap_ok(kt_wait_end(d, ev->seq, evs, 5000), "%s", name);
	return ev;
}

static void t_munmap(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };

	setup(&s, 0);
	tap_is_int(kt_op(d, &s.t, T_MUNMAP, s.base + 2 * P, 8 * P, 0, true, &evs, NULL), 0,
		   "munmap across the subscription");
	one(&evs, "munmap", MMN_EVENT_UNMAP, s.base + 2 * P, s.base + 10 * P, s.id,
	    s.base + 4 * P, s.base + 8 * P);
	evs.n = 0;
	tap_is_int(kt_op(d, &s.t, T_MUNMAP, s.base + 12 * P, 2 * P, 0, true, &evs, NULL), 0,
		   "munmap outside the subscription");
	tap_is_int(kt_count(&evs, MMN_CMD_INVALIDATE, NULL), 0, "munmap outside: no event");
	teardown(&s);
}

static void t_mprotect(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };

	setup(&s, 0);
	tap_is_int(kt_op(d, &s.t, T_MPROTECT, s.base + 5 * P, 1 * P, PROT_READ, true, &evs,
			 NULL), 0, "mprotect inside");
	one(&evs, "mprotect", MMN_EVENT_PROTECTION_VMA, s.base + 5 * P, s.base + 6 * P,
	    s.id, s.base + 5 * P, s.base + 6 * P);
	teardown(&s);
}

static void t_madvise(int advice, const char *what)
{
	struct setup s;
	struct kt_evs evs = { 0 };

	setup(&s, 0);
	tap_is_int(kt_op(d, &s.t, T_MADVISE, s.base, 16 * P, advice, true, &evs, NULL), 0,
		   what);
	one(&evs, what, MMN_EVENT_CLEAR, s.base, s.base + 16 * P, s.id, s.base + 4 * P,
	    s.base + 8 * P);
	teardown(&s);
}

static void t_mremap(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };
	struct target_res r;
	const struct drv_ev *ev;

	setup(&s, 0);
	target_op_do(&s.t, T_MMAP, 0, 4 * P, 0, &r);
	tap_is_int(kt_op(d, &s.t, T_MREMAP, s.base + 4 * P, 4 * P, r.val, true, &evs, NULL),
		   0, "mremap the subscribed pages elsewhere");
	tap_ok(kt_count(&evs, MMN_CMD_INVALIDATE, &ev) >= 1, "mremap: INVALIDATE");
	if (ev) {
		tap_is_int(ev->event, MMN_EVENT_UNMAP, "mremap: UNMAP");
		tap_is_u64(ev->subs[0].start, s.base + 4 * P, "mremap: on the old range");
		tap_is_u64(ev->subs[0].end, s.base + 8 * P, "mremap: old range end");
		tap_ok(kt_wait_end(d, ev->seq, &evs, 5000), "mremap: END");
	}
	teardown(&s);
}

static void t_fork(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };
	const struct drv_ev *ev = NULL;
	int i, n = 0;

	setup(&s, 0);
	tap_is_int(kt_op(d, &s.t, T_FORK, 0, 0, 0, true, &evs, NULL), 0, "fork of the target");
	for (i = 0; i < evs.n; i++) {
		if (evs.ev[i].cmd == MMN_CMD_INVALIDATE &&
		    evs.ev[i].event == MMN_EVENT_PROTECTION_PAGE) {
			ev = &evs.ev[i];
			n++;
		}
	}
	tap_ok(n >= 1, "fork: PROTECTION_PAGE on the parent");
	if (ev) {
		tap_is_int(ev->pid, s.t.pid, "fork: reported for the target pid");
		tap_is_u64(ev->subs[0].start, s.base + 4 * P, "fork: clipped start");
		tap_is_u64(ev->subs[0].end, s.base + 8 * P, "fork: clipped end");
	}
	teardown(&s);
}

static void t_multi(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };
	const struct drv_ev *ev = NULL;
	uint32_t id2, id3;

	setup(&s, 0);
	tap_is_int(drv_subscribe(d, s.t.pid, s.base + 9 * P, 2 * P, 0, 0, &id2), 0,
		   "second subscription on the same mm");
	tap_is_int(drv_subscribe(d, s.t.pid, s.base + 14 * P, 1 * P, 0, 0, &id3), 0,
		   "third subscription, outside the range");
	tap_is_int(kt_op(d, &s.t, T_MUNMAP, s.base, 12 * P, 0, true, &evs, NULL), 0,
		   "munmap across two subscriptions");
	tap_is_int(kt_count(&evs, MMN_CMD_INVALIDATE, &ev), 1, "multi: one INVALIDATE for both");
	if (ev) {
		tap_is_int(ev->nsubs, 2, "multi: both subscriptions listed");
		bool has1 = false, has2 = false;

		for (unsigned int i = 0; i < ev->nsubs; i++) {
			if (ev->subs[i].id == s.id)
				has1 = ev->subs[i].start == s.base + 4 * P &&
				       ev->subs[i].end == s.base + 8 * P;
			if (ev->subs[i].id == id2)
				has2 = ev->subs[i].start == s.base + 9 * P &&
				       ev->subs[i].end == s.base + 11 * P;
		}
		tap_ok(has1 && has2, "multi: each clipped to its own range");
		tap_ok(kt_wait_end(d, ev->seq, &evs, 5000), "multi: one END");
		const struct drv_ev *end = NULL;

		for (int i = 0; i < evs.n; i++)
			if (evs.ev[i].cmd == MMN_CMD_INVALIDATE_END)
				end = &evs.ev[i];
		tap_ok(end && end->nsubs == 2, "multi: END lists both");
	}
	drv_unsubscribe(d, id2);
	drv_unsubscribe(d, id3);
	teardown(&s);
}

static void t_clear_refs(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };
	const struct drv_ev *ev = NULL;
	char path[64];

	setup(&s, 0);
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", s.t.pid);
	tap_is_int(knob_write(path, "4"), 0, "clear_refs 4 (soft-dirty)");
	/* the write returned: its INVALIDATE is already queued on our socket */
	struct drv_ev e;

	while (drv_next(d, &e, 0) == 1)
		if (evs.n < KT_MAXEV)
			evs.ev[evs.n++] = e;
	tap_is_int(kt_count(&evs, MMN_CMD_INVALIDATE, &ev), 1, "clear_refs: one INVALIDATE");
	if (ev) {
		tap_is_int(ev->event, MMN_EVENT_SOFT_DIRTY, "clear_refs: SOFT_DIRTY");
		tap_is_u64(ev->subs[0].start, s.base + 4 * P, "clear_refs: clipped start");
		tap_is_u64(ev->subs[0].end, s.base + 8 * P, "clear_refs: clipped end");
		tap_ok(ev->range_end - ev->range_start > 16 * P, "clear_refs: kernel range is wider");
	}
	teardown(&s);
}

static void t_exit(void)
{
	struct setup s;
	struct drv_ev ev;
	struct drv_sub subs[8];
	int st, n, r;

	setup(&s, 0);
	target_op_send(&s.t, T_EXIT, 0, 0, 0);
	tap_is_int(waitpid(s.t.pid, &st, 0), s.t.pid, "target exits");
	s.t.pid = 0;
	r = drv_next(d, &ev, 5000);
	tap_ok(r == 1 && ev.cmd == MMN_CMD_RELEASE, "exit: RELEASE is the first message (cmd %u)",
	       ev.cmd);
	tap_is_int(ev.sub_id, s.id, "exit: RELEASE names the subscription");
	tap_is_int(drv_next(d, &ev, 0), 0, "exit: nothing after RELEASE (exit's UNMAP is not reported)");
	n = drv_subs(d, subs, 8);
	tap_ok(n >= 1, "GET_SUBS lists it");
	for (int i = 0; i < n; i++)
		if (subs[i].id == s.id)
			tap_is_int(subs[i].state, MMN_SUB_ST_RELEASED, "exit: state RELEASED");
	tap_is_int(drv_unsubscribe(d, s.id), 0, "unsubscribe after RELEASE");
	close(s.t.cmd);
	close(s.t.rep);
}

static void t_exec(void)
{
	struct setup s;
	struct drv_ev ev;
	int st, r;

	setup(&s, 0);
	target_op_send(&s.t, T_EXEC, 0, 0, 0);
	r = drv_next_cmd(d, MMN_CMD_RELEASE, &ev, 10000);
	tap_ok(r == 1 && ev.sub_id == s.id, "exec: RELEASE of the old mm");
	tap_is_int(waitpid(s.t.pid, &st, 0), s.t.pid, "exec'd target exits");
	s.t.pid = 0;
	tap_is_int(drv_next(d, &ev, 0), 0, "exec: the new image is not reported");
	tap_is_int(drv_unsubscribe(d, s.id), 0, "unsubscribe after exec");
	close(s.t.cmd);
	close(s.t.rep);
}

/* Each listed id once across the INVALIDATEs of evs: how often id appears. */
static int times_listed(const struct kt_evs *evs, uint32_t id)
{
	int n = 0;

	for (int i = 0; i < evs->n; i++)
		for (unsigned int j = 0; evs->ev[i].cmd == MMN_CMD_INVALIDATE && j < evs->ev[i].nsubs; j++)
			n += evs->ev[i].subs[j].id == id;
	return n;
}

/*
 * A subscription inserted while an invalidation of its mm runs is deferred
 * by the core (not in the interval tree until that invalidation ends): it
 * must be neither lost nor reported twice by the next invalidation.
 */
static void t_deferred(void)
{
	struct setup s;
	struct kt_evs evs = { 0 };
	struct drv_ev ev;
	struct target_res r;
	uint32_t b;

	setup(&s, MMN_SUB_F_BLOCKING);
	target_op_send(&s.t, T_MUNMAP, s.base + 4 * P, P, 0);
	tap_is_int(drv_next_cmd(d, MMN_CMD_INVALIDATE, &ev, 5000), 1, "deferred: a munmap waits");
	tap_is_int(drv_subscribe(d, s.t.pid, s.base + 10 * P, 2 * P, 0, 0, &b), 0,
		   "deferred: SUBSCRIBE while the mm is invalidating");
	tap_is_int(drv_ack(d, ev.seq), 0, "deferred: ACK");
	tap_is_int(target_op_recv(&s.t, &r, 5000), 1, "deferred: munmap returned");
	tap_is_int(kt_op(d, &s.t, T_MUNMAP, s.base, 16 * P, 0, true, &evs, NULL), 0,
		   "deferred: munmap over both");
	tap_is_int(times_listed(&evs, s.id), 1, "deferred: first subscription reported once");
	tap_is_int(times_listed(&evs, b), 1, "deferred: deferred subscription reported once");
	evs.n = 0;
	drv_unsubscribe(d, b);
	teardown(&s);
}

int main(void)
{
	uint64_t ev0, end0;

	d = kt_bind(2000);
	tap_require(d);
	ev0 = kt_stat(d, MMN_STATS_A_EVENTS);
	end0 = kt_stat(d, MMN_STATS_A_ENDS);
	t_munmap();
	t_mprotect();
	t_madvise(MADV_DONTNEED, "madvise(DONTNEED)");
	t_madvise(MADV_FREE, "madvise(FREE)");
	t_mremap();
	t_fork();
	t_multi();
	t_clear_refs();
	t_deferred();
	t_exit();
	t_exec();

	/* pairing: every INVALIDATE sent so far got its END */
	struct kt_evs rest = { 0 };
	uint64_t ev1 = kt_stat(d, MMN_STATS_A_EVENTS), end1 = kt_stat(d, MMN_STATS_A_ENDS);

	for (int i = 0; i < 50 && end1 - end0 < ev1 - ev0; i++) {
		struct drv_ev e;

		drv_next(d, &e, 100);
		end1 = kt_stat(d, MMN_STATS_A_ENDS);
	}
	(void)rest;
	tap_ok(ev1 > ev0, "stats: INVALIDATEs counted");
	tap_is_int(end1 - end0, ev1 - ev0, "stats: one END per INVALIDATE");
	tap_is_int(kt_stat(d, MMN_STATS_A_SEND_FAILS), 0, "stats: no send failure");
	tap_is_int(drv_unbind(d), 0, "UNBIND");
	drv_close(d);
	return tap_done();
}
