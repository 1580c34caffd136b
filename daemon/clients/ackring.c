/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "ack-ring.h"
#include "ackring.h"
#include "broker-internal.h"
#include "client.h"
#include "engine/fanout.h"
#include "engine/memfd.h"
#include "send.h"

struct ackring {
	uv_poll_t poll;	  /* on @doorbell; its close callback frees the struct */
	struct client *c; /* NULL once destroyed (the handle is closing) */
	struct broker *b;
	struct mmn_ack_ring *ring; /* shared with the client: every field is untrusted */
	int doorbell;		   /* eventfd; the client holds its own descriptor */
	uint32_t tail;		   /* our copy: the shared one is only published */
};

static void doorbell_cb(uv_poll_t *h, int status, int events)
{
	struct ackring *r = h->data;
	struct broker *b = r->b;
	uint64_t v;

	(void)events;
	/* Reset the count first: a ring after this read is another event. */
	if (read(r->doorbell, &v, sizeof(v)) < 0 && errno != EAGAIN)
		status = -errno;
	if (r->c && status < 0)
		mmn__client_drop(r->c, status);
	else if (r->c && !r->c->dropping)
		mmn__ackring_take(r->c);
	b->settle(b);
}

int mmn__ackring_create(struct client *c, int fds[2])
{
	size_t size = MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES);
	struct ackring *r = calloc(1, sizeof(*r));
	void *p;
	int fd, err;

	if (!r)
		return -ENOMEM;
	/* The client writes its half: only the size is sealed (a shrink would fault us). */
	fd = mmn__memfd_map("mmn-ackring", size, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, &p);
	if (fd < 0) {
		free(r);
		return fd;
	}
	r->doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	err = r->doorbell < 0 ? -errno : uv_poll_init(c->b->loop, &r->poll, r->doorbell);
	if (err < 0) {
		if (r->doorbell >= 0)
			close(r->doorbell);
		munmap(p, size);
		close(fd);
		free(r);
		return err;
	}
	r->c = c;
	r->b = c->b;
	r->ring = p;
	r->ring->magic = MMN_ACK_RING_MAGIC;
	r->ring->version = MMN_ACK_RING_VERSION;
	r->ring->nentries = MMN_ACK_RING_ENTRIES;
	r->poll.data = r;
	c->b->handles++;
	uv_poll_start(&r->poll, UV_READABLE, doorbell_cb);
	c->ackring = r;
	fds[0] = fd;
	fds[1] = r->doorbell;
	return 0;
}

/* Entry @i copied out of shared memory once, so what is checked is what is used. */
static struct mmn_ack_entry entry_copy(const struct mmn_ack_ring *ring, uint32_t i)
{
	const struct mmn_ack_entry *e = &ring->e[i % MMN_ACK_RING_ENTRIES];

	return (struct mmn_ack_entry){
		.sub_id = __atomic_load_n(&e->sub_id, __ATOMIC_RELAXED),
		.event_id = __atomic_load_n(&e->event_id, __ATOMIC_RELAXED),
		.run = __atomic_load_n(&e->run, __ATOMIC_RELAXED),
		.reserved = __atomic_load_n(&e->reserved, __ATOMIC_RELAXED),
	};
}

void mmn__ackring_take(struct client *c)
{
	struct ackring *r = c->ackring;
	uint32_t head;

	if (!r)
		return;
	head = __atomic_load_n(&r->ring->head, __ATOMIC_ACQUIRE);
	if (head - r->tail > MMN_ACK_RING_ENTRIES) {
		mmn__client_protocol_error(c, 0, -EBADMSG, "ack ring: more entries than it holds");
		return;
	}
	for (; r->tail != head && !c->dropping; r->tail++) {
		struct mmn_ack_entry e = entry_copy(r->ring, r->tail);

		if (!e.run || e.reserved || (e.run > 1 && !c->ack_runs)) {
			mmn__client_protocol_error(c, 0, -EBADMSG, "ack ring: a bad entry");
			return;
		}
		mmn__fanout_ack_run(c, e.sub_id, e.event_id, e.run);
	}
	__atomic_store_n(&r->ring->tail, r->tail, __ATOMIC_RELEASE);
}

static void close_cb(uv_handle_t *h)
{
	struct ackring *r = h->data;
	struct broker *b = r->b;

	close(r->doorbell);
	free(r);
	mmn__broker_handle_closed(b);
}

void mmn__ackring_destroy(struct client *c)
{
	struct ackring *r = c->ackring;

	if (!r)
		return;
	c->ackring = NULL;
	r->c = NULL;
	munmap(r->ring, MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES));
	r->ring = NULL;
	uv_close((uv_handle_t *)&r->poll, close_cb);
}
