/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The recipients of an event: the pre-sized array (broker->recip_reserve),
 * its sub_id index for the ack path, settling a recipient's ack and
 * closing the recipients of a subscription that goes away.  Nothing here
 * allocates once the reserve covers every subscription.  Loop thread only.
 */
#include "engine/recips.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "broker-internal.h"
#include "clients/client.h"
#include "engine/fanout.h"
#include "engine/list.h"
#include "engine/sub.h"

uint32_t mmn__recips_fault;

static uint32_t rhash_slot(const struct event *e, uint64_t sub_id)
{
	return (uint32_t)((sub_id * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & (e->hcap - 1);
}

/* Fewer recipients than this are scanned: cheaper than hashing them. */
#define RHASH_MIN 8

void mmn__recips_index(struct event *e)
{
	mmn__recips_unindex(e);
	e->hashed = e->hcap && e->nrecips > RHASH_MIN && e->nrecips <= e->hcap / 2;
	if (!e->hashed)
		return;
	for (uint32_t i = 0; i < e->nrecips; i++) {
		uint32_t h = rhash_slot(e, e->recips[i].sub_id);

		while (e->rhash[h] && e->recips[e->rhash[h] - 1].sub_id != e->recips[i].sub_id)
			h = (h + 1) & (e->hcap - 1);
		if (!e->rhash[h])
			e->rhash[h] = i + 1;
	}
}

/*
 * Clear the entries mmn__recips_index() made, last first: every entry
 * inserted before the one being cleared is still in place, so its probe
 * sequence from its home slot is unbroken and finds it.
 */
void mmn__recips_unindex(struct event *e)
{
	if (!e->hashed)
		return;
	for (uint32_t i = e->nrecips; i-- > 0;) {
		uint64_t id = e->recips[i].sub_id;
		uint32_t h = rhash_slot(e, id);

		while (e->rhash[h] && e->recips[e->rhash[h] - 1].sub_id != id)
			h = (h + 1) & (e->hcap - 1);
		if (e->rhash[h] == i + 1)
			e->rhash[h] = 0; /* else a duplicate id: the first one owns the entry */
	}
	e->hashed = false;
}

struct recip *mmn__recips_find(struct event *e, uint64_t sub_id)
{
	if (!e->hashed) {
		for (uint32_t i = 0; i < e->nrecips; i++)
			if (e->recips[i].sub_id == sub_id)
				return &e->recips[i];
		return NULL;
	}
	for (uint32_t h = rhash_slot(e, sub_id); e->rhash[h]; h = (h + 1) & (e->hcap - 1))
		if (e->recips[e->rhash[h] - 1].sub_id == sub_id)
			return &e->recips[e->rhash[h] - 1];
	return NULL;
}

/*
 * The recipient array and its index are anonymous mappings of their own:
 * every event reserves room for every subscription there is (up to a
 * million or more), and only what an event fills becomes resident.  A
 * mapping is zero until touched, grows in place or moves without copying
 * (mremap), and goes back to the kernel when freed, whatever malloc's
 * thresholds are.
 */
static size_t map_bytes(size_t n, size_t size)
{
	size_t page = MMN_PAGE_SIZE, bytes = n * size;

	return (bytes + page - 1) & ~(page - 1);
}

/* @old (@old_n elements of @size, or NULL) grown to @n: the contents kept, the rest zero.  NULL on failure. */
static void *map_grow(void *old, size_t old_n, size_t n, size_t size)
{
	void *p;

	if (n > SIZE_MAX / size)
		return NULL;
	if (!old)
		p = mmap(NULL, map_bytes(n, size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else
		p = mremap(old, map_bytes(old_n, size), map_bytes(n, size), MREMAP_MAYMOVE);
	return p == MAP_FAILED ? NULL : p;
}

static void map_free(void *p, size_t n, size_t size)
{
	if (p)
		munmap(p, map_bytes(n, size));
}

void mmn__recips_free(struct event *e)
{
	map_free(e->recips, e->cap, sizeof(*e->recips));
	map_free(e->rhash, e->hcap, sizeof(*e->rhash));
	e->recips = NULL;
	e->rhash = NULL;
	e->cap = e->hcap = 0;
}

/* Grow @e's recipient array to at least @n, and its index to match. */
int mmn__recips_grow(struct event *e, uint32_t n)
{
	struct recip *v;
	uint32_t hcap = 16, *hv;

	if (e->cap < n) {
		v = map_grow(e->recips, e->cap, n, sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->recips = v;
		e->cap = n;
	}
	while (hcap / 2 < e->cap && hcap < UINT32_MAX / 2 + 1)
		hcap *= 2;
	if (e->hcap >= hcap)
		return 0;
	/* A fresh (zero) index, filled again below: the old one's entries need no clearing. */
	hv = map_grow(NULL, 0, hcap, sizeof(*hv));
	if (!hv)
		return -ENOMEM;
	map_free(e->rhash, e->hcap, sizeof(*e->rhash));
	e->rhash = hv;
	e->hcap = hcap;
	/* An event in flight keeps answering acks from the new index. */
	e->hashed = false;
	mmn__recips_index(e);
	return 0;
}

int mmn__recips_reserve(struct broker *b, uint32_t n)
{
	uint32_t cap;
	int err;

	if (n <= b->recip_reserve)
		return 0;
	/* Doubling: linking n subs one by one reallocates O(log n) times. */
	cap = b->recip_reserve > UINT32_MAX / 2 ? UINT32_MAX : b->recip_reserve * 2;
	if (cap < n)
		cap = n;
	if (cap < 16)
		cap = 16;
	/* Pooled and in-flight alike: nobody holds a recipient pointer between callbacks. */
	list_for_each(pos, &b->event_pool)
	{
		err = mmn__recips_grow(list_entry(pos, struct event, link), cap);
		if (err < 0)
			return err;
	}
	list_for_each(pos, &b->events)
	{
		err = mmn__recips_grow(list_entry(pos, struct event, link), cap);
		if (err < 0)
			return err;
	}
	b->recip_reserve = cap;
	return 0;
}

/* Normally within the reserve; grows only if a reservation was missed. */
struct recip *mmn__recips_add(struct event *e)
{
	if (mmn__recips_fault && e->nrecips >= mmn__recips_fault)
		return NULL;
	if (e->nrecips == e->cap && mmn__recips_grow(e, e->cap ? e->cap * 2 : 16) < 0)
		return NULL;
	return &e->recips[e->nrecips++];
}

/*
 * Ack the source once, later, from broker_settle (never from inside an
 * iteration).  Events that need no ack pass through the queue too, for the
 * observer.
 */
void mmn__recips_queue_ack(struct event *e)
{
	if (e->acked)
		return;
	e->acked = true;
	list_add_tail(&e->b->ack_queue, &e->alink);
	/* From now on the timer waits for the source's END (see fanout.c timer_cb). */
	uv_timer_start(&e->timer, e->timer_cb, e->b->opt.end_timeout_ms, 0);
}

void mmn__recips_settle(struct event *e, struct recip *r)
{
	if (r->state != RECIP_PENDING)
		return;
	r->state = RECIP_NOTIFIED;
	e->npending--;
	if (r->c)
		r->c->pending_acks--;
	if (!e->npending) {
		uv_timer_stop(&e->timer);
		mmn__recips_queue_ack(e);
	}
}

void mmn__recips_close_sub(struct broker *b, struct sub *s, bool keep_pairing)
{
	/* A sub is a recipient of at most one entry per event, and only while in flight. */
	if (!s->inflight)
		return;
	list_for_each(pos, &b->events)
	{
		struct event *e = list_entry(pos, struct event, link);
		struct recip *r;

		if (e->t != s->t)
			continue;
		r = mmn__recips_find(e, s->id);
		if (!r || r->sub != s)
			continue;
		mmn__recips_settle(e, r);
		if (!keep_pairing) {
			r->state = RECIP_CLOSED;
			r->sub = NULL;
			r->c = NULL; /* the client may be freed next (struct recip) */
			if (s->inflight)
				s->inflight--;
		}
	}
}
