/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "ack-ring.h"
#include "ackring.h"
#include "client.h"
#include "error.h"
#include "memory.h"

#define RING_SIZE MMN_ACK_RING_SIZE(MMN_ACK_RING_ENTRIES)

int mmn__ackring_map(struct mmn_client *c, int memfd, int doorbell)
{
	struct mmn_ack_ring *r;

	r = mmap(NULL, RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
	close(memfd);
	if (r == MAP_FAILED) {
		close(doorbell);
		return -errno;
	}
	if (r->magic != MMN_ACK_RING_MAGIC || r->version != MMN_ACK_RING_VERSION ||
	    r->nentries != MMN_ACK_RING_ENTRIES) {
		munmap(r, RING_SIZE);
		close(doorbell);
		return -EPROTO;
	}
	mmn__memory_exempt(r, RING_SIZE);
	if (mlock(r, RING_SIZE) < 0)
		mmn__log(LOG_DEBUG, "mmn: cannot lock the ack ring: %m");
	c->ackring = r;
	c->ackring_head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
	c->ackring_doorbell = doorbell;
	return 0;
}

int mmn__ackring_put(struct mmn_client *c, const uint64_t *sub_ids, const uint64_t *event_ids,
		     const uint32_t *runs, unsigned n)
{
	struct mmn_ack_ring *r = c->ackring;
	uint32_t head = c->ackring_head;
	const uint64_t one = 1;

	if (!r)
		return -ENOTCONN;
	if (n > MMN_ACK_RING_ENTRIES - (head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE)))
		return -ENOSPC;
	for (unsigned i = 0; i < n; i++, head++)
		r->e[head % MMN_ACK_RING_ENTRIES] = (struct mmn_ack_entry){
			.sub_id = sub_ids[i],
			.event_id = event_ids[i],
			.run = runs ? runs[i] : 1,
		};
	__atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
	c->ackring_head = head;
	/* EAGAIN: the count is at its maximum, so mmnd has a ring to answer already. */
	if (write(c->ackring_doorbell, &one, sizeof(one)) < 0 && errno != EAGAIN)
		mmn__log(LOG_DEBUG, "mmn: ringing the ack ring failed: %m");
	return 0;
}

void mmn__ackring_unmap(struct mmn_client *c)
{
	if (!c->ackring)
		return;
	munmap(c->ackring, RING_SIZE);
	close(c->ackring_doorbell);
	c->ackring = NULL;
	c->ackring_doorbell = -1;
}
