/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The test source: an in-process stand-in for mmn.ko that unit tests,
 * integration tests and bench/fanout drive through the mmn__source_test_*
 * controls in source.h.  It behaves like the module's contract: ksub ids are
 * u32 handles, an invalidation lists every touched ksub clipped, acks of
 * events nobody waits for return -ENOENT.  Events are emitted synchronously
 * from the control call, on the caller's (the loop's) thread.
 */
#include "source/source.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EV_RING 4096

struct test_ksub {
	uint32_t id;
	pid_t pid;
	uint64_t start, end;
	bool blocking;
	bool released; /* RELEASE emitted; waits for ksub_del */
};

struct test_event {
	uint64_t id;
	bool needs_ack;
	unsigned acks;
};

struct test_source {
	struct source s;
	struct test_ksub *k;
	size_t nk, capk;
	uint32_t next_ksub;
	uint64_t next_event;
	struct test_event ring[EV_RING];
	void (*hook)(uint64_t event_id, void *ud);
	void *hook_ud;
};

static struct test_source *ts(struct source *s)
{
	return (struct test_source *)s;
}

static struct test_ksub *find(struct test_source *t, uint32_t id)
{
	for (size_t i = 0; i < t->nk; i++)
		if (t->k[i].id == id)
			return &t->k[i];
	return NULL;
}

static int t_start(struct source *s)
{
	return 0;
}

static int t_ksub_add(struct source *s, const struct source_target *tg, uint64_t start, uint64_t length,
		      bool blocking, uint32_t timeout_ms, uint32_t *ksub_id)
{
	struct test_source *t = ts(s);
	struct test_ksub *k;

	if (!length || start + length < start)
		return -EINVAL;
	if (tg->pid <= 0)
		return -ESRCH;
	if (t->nk == t->capk) {
		size_t cap = t->capk ? t->capk * 2 : 16;
		struct test_ksub *v = realloc(t->k, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->k = v;
		t->capk = cap;
	}
	k = &t->k[t->nk++];
	memset(k, 0, sizeof(*k));
	k->id = ++t->next_ksub;
	k->pid = tg->pid;
	k->start = start;
	k->end = start + length;
	k->blocking = blocking;
	*ksub_id = k->id;
	return 0;
}

static int t_ksub_del(struct source *s, uint32_t id)
{
	struct test_source *t = ts(s);
	struct test_ksub *k = find(t, id);

	if (!k)
		return -ENOENT;
	*k = t->k[--t->nk];
	return 0;
}

static int t_set_blocking(struct source *s, uint32_t id, bool blocking)
{
	struct test_ksub *k = find(ts(s), id);

	if (!k)
		return -ENOENT;
	k->blocking = blocking;
	return 0;
}

static int t_resynced(struct source *s, uint32_t id)
{
	return find(ts(s), id) ? 0 : -ENOENT;
}

static int t_ack(struct source *s, uint64_t event_id)
{
	struct test_source *t = ts(s);
	struct test_event *e = &t->ring[event_id % EV_RING];

	if (e->id != event_id)
		return -ENOENT;
	/* Counted even when wrong (nobody waits, or a duplicate): tests look. */
	if (e->acks++ || !e->needs_ack)
		return -ENOENT;
	if (t->hook)
		t->hook(event_id, t->hook_ud);
	return 0;
}

static void t_destroy(struct source *s)
{
	struct test_source *t = ts(s);

	free(t->k);
	free(t);
}

static const struct source_ops test_ops = {
	.start = t_start,
	.ksub_add = t_ksub_add,
	.ksub_del = t_ksub_del,
	.ksub_set_blocking = t_set_blocking,
	.ksub_resynced = t_resynced,
	.ack = t_ack,
	.destroy = t_destroy,
};

int mmn__source_test_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out)
{
	struct test_source *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->s.ops = &test_ops;
	t->s.caps.name = "test";
	t->s.caps.event_mask = (UINT64_C(1) << 11) - 1;
	t->s.caps.acks_hold_kernel = true;
	t->s.caps.events_before_change = true;
	t->s.caps.needs_uffd = false;
	t->s.caps.other_processes = true;
	t->s.loop = loop;
	t->s.emit = emit;
	t->s.userdata = userdata;
	*out = &t->s;
	return 0;
}

void mmn__source_test_inject(struct source *s, const struct source_event *ev)
{
	struct test_source *t = ts(s);

	if (ev->kind == SOURCE_INVALIDATE) {
		struct test_event *e = &t->ring[ev->event_id % EV_RING];

		e->id = ev->event_id;
		e->needs_ack = ev->needs_ack;
		e->acks = 0;
		if (ev->event_id > t->next_event)
			t->next_event = ev->event_id;
	}
	if (s->emit)
		s->emit(ev, s->userdata);
}

uint64_t mmn__source_test_invalidate(struct source *s, pid_t pid, uint64_t start, uint64_t end,
				     uint32_t event, bool blockable)
{
	struct test_source *t = ts(s);
	struct source_event ev = {.kind = SOURCE_INVALIDATE, .event = event, .blockable = blockable};
	struct source_event_sub stack[16], *subs = stack;
	bool blocking = false;
	size_t n = 0;

	if (t->nk > 16) {
		subs = malloc(t->nk * sizeof(*subs));
		if (!subs)
			return 0;
	}
	for (size_t i = 0; i < t->nk; i++) {
		struct test_ksub *k = &t->k[i];

		if (k->pid != pid || k->released || k->end <= start || k->start >= end)
			continue;
		subs[n].ksub_id = k->id;
		subs[n].start = k->start > start ? k->start : start;
		subs[n].end = k->end < end ? k->end : end;
		blocking |= k->blocking;
		n++;
	}
	if (!n) {
		if (subs != stack)
			free(subs);
		return 0;
	}
	ev.event_id = ++t->next_event;
	ev.needs_ack = blockable && blocking;
	ev.refused = !blockable && blocking;
	ev.range_start = start;
	ev.range_end = end;
	ev.pid = pid;
	ev.nsubs = n;
	ev.subs = subs;
	mmn__source_test_inject(s, &ev);
	if (subs != stack)
		free(subs);
	return ev.event_id;
}

void mmn__source_test_end(struct source *s, uint64_t event_id)
{
	struct source_event ev = {.kind = SOURCE_INVALIDATE_END, .event_id = event_id};

	mmn__source_test_inject(s, &ev);
}

size_t mmn__source_test_release(struct source *s, pid_t pid)
{
	struct test_source *t = ts(s);
	size_t n = 0;

	for (;;) {
		struct source_event_sub sub = {0};
		struct source_event ev = {.kind = SOURCE_RELEASE, .pid = pid, .nsubs = 1, .subs = &sub};
		struct test_ksub *k = NULL;

		for (size_t i = 0; i < t->nk; i++) {
			if (t->k[i].pid == pid && !t->k[i].released) {
				k = &t->k[i];
				break;
			}
		}
		if (!k)
			return n;
		k->released = true;
		sub.ksub_id = k->id;
		sub.start = k->start;
		sub.end = k->end;
		n++;
		mmn__source_test_inject(s, &ev);
	}
}

bool mmn__source_test_acked(struct source *s, uint64_t event_id)
{
	return mmn__source_test_ack_count(s, event_id) > 0;
}

unsigned mmn__source_test_ack_count(struct source *s, uint64_t event_id)
{
	struct test_event *e = &ts(s)->ring[event_id % EV_RING];

	return e->id == event_id ? e->acks : 0;
}

size_t mmn__source_test_nksubs(struct source *s)
{
	return ts(s)->nk;
}

bool mmn__source_test_ksub_blocking(struct source *s, uint32_t ksub_id)
{
	struct test_ksub *k = find(ts(s), ksub_id);

	return k && k->blocking;
}

void mmn__source_test_set_ack_hook(struct source *s, void (*fn)(uint64_t event_id, void *ud), void *ud)
{
	ts(s)->hook = fn;
	ts(s)->hook_ud = ud;
}

size_t mmn__source_test_ksubs(struct source *s, pid_t pid, uint64_t *starts, uint64_t *ends, bool *blocking,
			      size_t max)
{
	struct test_source *t = ts(s);
	size_t n = 0;

	for (size_t i = 0; i < t->nk; i++) {
		if (t->k[i].pid != pid || t->k[i].released)
			continue;
		if (n < max) {
			starts[n] = t->k[i].start;
			ends[n] = t->k[i].end;
			blocking[n] = t->k[i].blocking;
		}
		n++;
	}
	return n;
}
