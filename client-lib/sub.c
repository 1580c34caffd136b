/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Subscription handles: the list of live and dead subs (c->subs) and its
 * hash (by sub id, or by the request id of a pending re-Subscribe), the
 * tombstones of removed ones (c->tombs, to answer a second unsubscribe with
 * -EALREADY), the pins that keep a handle's memory while an event or a
 * callback uses it, and the messages mmnd gets about one subscription.
 * All under c->lock.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "client.h"
#include "conn.h"
#include "memory.h"
#include "seq.h"
#include "sub.h"
#include "util.h"

/*
 * The hash of c->subs.  Every sub on c->subs is in exactly one chain, under
 * its key: resub_req (salted) while a re-Subscribe is pending, else sub_id.
 * A lookup walks one chain and applies the same test a walk of c->subs
 * would, so stale ids (dead subs, subs of a lost connection) only lengthen a
 * chain.  The buckets are allocated only by mmn__sub_reserve(), on a thread
 * that may allocate; linking never allocates, it just lengthens chains when
 * a growth failed.
 */
#define HASH_MUL 0x9e3779b97f4a7c15ull /* 2^64 / golden ratio: Fibonacci hashing */
#define REQ_SALT 0xc2b2ae3d27d4eb4full /* request ids and sub ids are both small counters */
#define HASH_MAX_BITS 40

static struct mmn_sub **bucket(struct mmn_client *c, uint64_t key)
{
	return &c->htab[(key * HASH_MUL) >> (64 - c->hbits)];
}

static uint64_t sub_key(const struct mmn_sub *s)
{
	return s->resub_req ? s->resub_req ^ REQ_SALT : s->sub_id;
}

static void hash_add(struct mmn_client *c, struct mmn_sub *s)
{
	struct mmn_sub **b = bucket(c, sub_key(s));

	s->hnext = *b;
	*b = s;
}

static void hash_del(struct mmn_client *c, struct mmn_sub *s)
{
	for (struct mmn_sub **p = bucket(c, sub_key(s)); *p; p = &(*p)->hnext) {
		if (*p == s) {
			*p = s->hnext;
			break;
		}
	}
	s->hnext = NULL;
}

/* Handles live in memory the dispatch thread may touch without faulting (memory.h). */
static struct mmn_memory_pool sub_pool = MMN_MEMORY_POOL_INIT(sizeof(struct mmn_sub));

struct mmn_sub *mmn__sub_alloc(void)
{
	return mmn__memory_pool_alloc(&sub_pool);
}

void mmn__sub_free(struct mmn_sub *s)
{
	mmn__memory_pool_free(&sub_pool, s);
}

static void hash_free(struct mmn_client *c)
{
	if (c->htab != c->hinit)
		munmap(c->htab, sizeof(*c->htab) << c->hbits);
}

void mmn__sub_hash_init(struct mmn_client *c)
{
	c->htab = c->hinit;
	c->hbits = MMN_HASH_INIT_BITS;
}

void mmn__sub_reserve(struct mmn_client *c, size_t more)
{
	unsigned bits = c->hbits;
	struct mmn_sub **t;
	size_t want;

	want = more > SIZE_MAX / 2 - c->nsubs ? SIZE_MAX / 2 : c->nsubs + more;
	while (bits < HASH_MAX_BITS && ((size_t)1 << bits) < want)
		bits++;
	if (bits == c->hbits)
		return;
	/* Pre-faulted and exempt (memory.h): the dispatch thread must never fault on a bucket. */
	t = mmn__memory_map(sizeof(*t) << bits);
	if (!t)
		return; /* longer chains: slower, still correct */
	hash_free(c);
	c->htab = t;
	c->hbits = bits;
	for (struct mmn_sub *s = c->subs; s; s = s->next)
		hash_add(c, s);
}

struct mmn_sub *mmn__sub_by_id(struct mmn_client *c, uint64_t sub_id)
{
	for (struct mmn_sub *s = *bucket(c, sub_id); s; s = s->hnext)
		if (s->state == HANDLE_ACTIVE && !s->resub_req && s->sub_id == sub_id)
			return s;
	return NULL;
}

struct mmn_sub *mmn__sub_by_resub_req(struct mmn_client *c, uint64_t req)
{
	for (struct mmn_sub *s = *bucket(c, req ^ REQ_SALT); s; s = s->hnext)
		if (s->resub_req == req)
			return s;
	return NULL;
}

void mmn__sub_set_resub(struct mmn_client *c, struct mmn_sub *s, uint64_t req)
{
	hash_del(c, s);
	s->resub_req = req;
	hash_add(c, s);
}

void mmn__sub_attach(struct mmn_sub *s, uint64_t sub_id, uint32_t slot, uint32_t gen, bool publish)
{
	if (s->sub_id != sub_id) {
		hash_del(s->c, s);
		s->sub_id = sub_id;
		hash_add(s->c, s);
	}
	__atomic_store_n(&s->slot, mmn__seqpage_slot(s->c, slot), __ATOMIC_RELAXED);
	__atomic_store_n(&s->gen, gen, __ATOMIC_RELAXED);
	if (publish)
		mmn__seq_publish(s);
}

static void link_sub(struct mmn_sub **head, struct mmn_sub *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

static void unlink_sub(struct mmn_sub **head, struct mmn_sub *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

/*
 * The SubscribeReply @sr to the request that created @s arrived (c->lock
 * held, on whichever thread read it).  Link and attach @s now, before the
 * next packet is handled: it may be an Invalidate for it already, and an
 * Invalidate for an unknown sub is dropped unacked.  @s is pinned until
 * mmn_subscribe() (or mmn_subscribe_many()) hands it out.  Returns 0 or
 * what mmn_subscribe() reports.
 */
int mmn__sub_link(struct mmn_client *c, struct mmn_sub *s, const Mmn__V1__SubscribeReply *sr)
{
	if (!mmn__seqpage_slot(c, sr->seq_slot)) {
		mmn__sub_send_unsubscribe(c, sr->sub_id);
		return -EPROTO;
	}
	s->state = HANDLE_ACTIVE;
	s->refs++;
	s->sub_id = sr->sub_id;
	link_sub(&c->subs, s);
	hash_add(c, s);
	c->nsubs++;
	mmn__sub_attach(s, sr->sub_id, sr->seq_slot, sr->seq_gen, true);
	return 0;
}

void mmn__sub_unlink(struct mmn_client *c, struct mmn_sub *s)
{
	hash_del(c, s);
	if (c->resub_next == s)
		c->resub_next = s->next;
	c->nsubs--;
	unlink_sub(&c->subs, s);
}

/* Keep at most MMN_TOMBSTONES removed handles (newest at c->tombs); free the oldest unpinned. */
static void tomb_trim(struct mmn_client *c)
{
	struct mmn_sub *s = c->tombs_tail;

	while (s && c->ntombs > MMN_TOMBSTONES) {
		struct mmn_sub *prev = s->prev;

		if (!s->refs) {
			if (s->prev)
				s->prev->next = s->next;
			else
				c->tombs = s->next;
			if (s->next)
				s->next->prev = s->prev;
			else
				c->tombs_tail = s->prev;
			c->ntombs--;
			mmn__sub_free(s);
		}
		s = prev;
	}
}

void mmn__sub_put(struct mmn_sub *s)
{
	s->refs--;
	if (s->state == HANDLE_GONE && !s->refs)
		tomb_trim(s->c);
}

void mmn__sub_bury(struct mmn_client *c, struct mmn_sub *s)
{
	/* Oldest tombstones at the tail. */
	link_sub(&c->tombs, s);
	if (!c->tombs_tail)
		c->tombs_tail = s;
	c->ntombs++;
	mmn__sub_put(s);
}

void mmn__free_subs(struct mmn_client *c)
{
	struct mmn_sub *lists[] = {c->subs, c->tombs};

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		struct mmn_sub *s = lists[i];

		while (s) {
			struct mmn_sub *next = s->next;

			mmn__sub_free(s);
			s = next;
		}
	}
	c->subs = c->tombs = c->tombs_tail = NULL;
	c->nsubs = 0;
	hash_free(c);
	memset(c->hinit, 0, sizeof(c->hinit));
	mmn__sub_hash_init(c);
}

static void fill_subscribe(Mmn__V1__Subscribe *m, const struct mmn_sub *s, bool resubscribe)
{
	mmn__v1__subscribe__init(m);
	m->pid = s->pid;
	m->start = s->start;
	m->length = s->end - s->start;
	m->flags = s->opts.flags;
	m->event_mask = s->opts.event_mask;
	m->ack_timeout_ms = s->opts.ack_timeout_ms;
	m->resubscribe = resubscribe;
	/* No invalidate_end callback: the ends would be read and dropped (the slot ends without them). */
	m->no_end = !s->opts.invalidate_end;
}

int mmn__sub_send_subscribe(struct mmn_client *c, const struct mmn_sub *s, uint64_t req_id, bool resubscribe)
{
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	Mmn__V1__Subscribe m;

	fill_subscribe(&m, s, resubscribe);
	env.request_id = req_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &m;
	return mmn__conn_send(c, &env, NULL, 0);
}

void mmn__sub_send_unsubscribe(struct mmn_client *c, uint64_t sub_id)
{
	Mmn__V1__Unsubscribe u = MMN__V1__UNSUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	u.sub_id = sub_id;
	env.request_id = ++c->next_req; /* its Status is ignored */
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE;
	env.unsubscribe = &u;
	mmn__conn_send(c, &env, NULL, 0);
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

bool mmn__batch_fits(size_t body)
{
	/* request_id (tag, at most 10 bytes), the body's 2-byte tag and its length */
	return 1 + 10 + 2 + varint_len(body) + body <= MMN_WIRE_MAX_MSG;
}

size_t mmn__sub_item_bytes(const struct mmn_sub *s, bool resubscribe)
{
	Mmn__V1__Subscribe m;
	size_t n;

	fill_subscribe(&m, s, resubscribe);
	n = mmn__v1__subscribe__get_packed_size(&m);
	return 1 + varint_len(n) + n;
}

size_t mmn__sub_ids_bytes(const uint64_t *ids, size_t n)
{
	size_t p = 0;

	for (size_t i = 0; i < n; i++)
		p += varint_len(ids[i]);
	return n ? 1 + varint_len(p) + p : 0;
}

int mmn__sub_send_subscribe_many(struct mmn_client *c, struct mmn_sub *const *subs, size_t n, uint64_t req_id,
				 bool resubscribe)
{
	Mmn__V1__SubscribeMany many = MMN__V1__SUBSCRIBE_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;
	Mmn__V1__Subscribe items[MMN_BATCH_MAX], *ptrs[MMN_BATCH_MAX];

	if (n > MMN_BATCH_MAX)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		fill_subscribe(&items[i], subs[i], resubscribe);
		ptrs[i] = &items[i];
	}
	many.n_items = n;
	many.items = ptrs;
	env.request_id = req_id;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY;
	env.subscribe_many = &many;
	return mmn__conn_send(c, &env, NULL, 0);
}

void mmn__sub_send_unsubscribe_many(struct mmn_client *c, uint64_t *ids, size_t n)
{
	Mmn__V1__UnsubscribeMany u = MMN__V1__UNSUBSCRIBE_MANY__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	u.n_sub_ids = n;
	u.sub_ids = ids;
	env.request_id = ++c->next_req; /* its reply is ignored, as an Unsubscribe's Status */
	env.body_case = MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY;
	env.unsubscribe_many = &u;
	mmn__conn_send(c, &env, NULL, 0);
}

bool mmn__sub_acks_go(const struct mmn_client *c, const struct mmn_sub *s)
{
	/* Otherwise that daemon is gone: nothing waits for the ack. */
	return c->state != CONN_DOWN && c->state != CONN_HELLO && !s->resub_req;
}

int mmn__sub_send_ack(struct mmn_client *c, struct mmn_sub *s, uint64_t event_id, bool batch)
{
	return mmn__sub_acks_go(c, s) ? mmn__conn_ack(c, s->sub_id, event_id, batch) : 0;
}
