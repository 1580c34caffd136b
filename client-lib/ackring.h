/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The connection's ack ring (proto/ack-ring.h): batched acks go to memory
 * shared with mmnd and an eventfd rings it, instead of an AckMany on the
 * socket.  A sendmsg() allocates a socket buffer charged to the memory
 * cgroup of the thread that sends; above memory.high that thread reclaims
 * and sleeps on its way back to user space, for up to two seconds, while
 * the kernel waits for the ack it sent.  The ring is mapped pre-faulted,
 * locked and out of NUMA balancing (memory.h), and an eventfd write
 * allocates nothing: the dispatch thread acks without being charged.
 *
 * Under c->lock.  Mapped at HelloReply, unmapped when the connection is
 * lost and at disconnect.
 */
#ifndef MMN_CLIENT_ACKRING_H
#define MMN_CLIENT_ACKRING_H

#include <stdint.h>

struct mmn_client;

/* Map the ring @memfd with its @doorbell (both taken, also on failure): 0 or -errno. */
int mmn__ackring_map(struct mmn_client *c, int memfd, int doorbell);

/*
 * Publish @n acks (AckMany items) and ring the doorbell: 0, or -ENOSPC
 * when they do not all fit (nothing was published: send AckMany then, which
 * mmnd handles after the ring's entries), or -ENOTCONN without a ring.
 */
int mmn__ackring_put(struct mmn_client *c, const uint64_t *sub_ids, const uint64_t *event_ids,
		     const uint32_t *runs, unsigned n);

/* Unmap the ring and close the doorbell, if there is one. */
void mmn__ackring_unmap(struct mmn_client *c);

#endif
