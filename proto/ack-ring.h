/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Layout of the ack ring (Hello.ack_ring, answered by HelloReply.ack_ring):
 * a memfd mmnd creates per client and the client maps read-write, plus an
 * eventfd, the doorbell; both follow the sequence page (and the waiter page)
 * in HelloReply.  The client puts the entries it would send as AckMany here
 * instead and writes the doorbell.
 *
 * Why: a client's blocking ack must not depend on the memory it acks for.
 * An AF_UNIX sendmsg() allocates its socket buffer charged to the sender's
 * memory cgroup; above memory.high the sender is made to reclaim and then
 * sleep on its way back to user space, for up to two seconds, while the
 * kernel waits for that very ack.  Writing this mapped, pre-faulted memory
 * and an eventfd allocates nothing, so nothing is charged.
 *
 * The client is the only producer, mmnd the only consumer:
 *
 *   client:  e[head % nentries] = entry ...; store_release(head, head + n); eventfd_write(doorbell, 1)
 *   mmnd:    h = load_acquire(head); entries [tail, h) ...; store_release(tail, h)
 *
 * head and tail run free (they wrap at 2^32; h - tail counts the entries).
 * The client never writes past load_acquire(tail) + nentries; when the ring is
 * full it sends AckMany as before.  mmnd takes the ring's entries before each
 * packet it reads from the client and whenever the doorbell rings, so an
 * entry published before a message is handled before that message, and the
 * acks keep the order they would have had as AckMany.  Each entry means one
 * AckMany item: sub_id, event_id and run (with HelloReply.ack_runs, else it
 * must be 1).  The ring is the client's own: h - tail > nentries, a run of
 * 0 or a nonzero reserved field is that client's protocol error; mmnd keeps
 * its own copy of tail and copies an entry before it checks it.
 */
#ifndef MMN_PROTO_ACK_RING_H
#define MMN_PROTO_ACK_RING_H

#include <stdint.h>

#define MMN_ACK_RING_MAGIC   0x414e4d4du /* "MMNA" */
#define MMN_ACK_RING_VERSION 1
#define MMN_ACK_RING_ENTRIES 1024u /* a power of two */

struct mmn_ack_entry {
	uint64_t sub_id;
	uint64_t event_id;
	uint32_t run;
	uint32_t reserved; /* 0 */
};

struct mmn_ack_ring {
	uint32_t magic;
	uint32_t version;
	uint32_t nentries;
	uint32_t reserved;
	uint8_t pad0[48];
	uint32_t head; /* the client's: entries published */
	uint8_t pad1[60];
	uint32_t tail; /* mmnd's: entries taken */
	uint8_t pad2[60];
	struct mmn_ack_entry e[];
};

_Static_assert(sizeof(struct mmn_ack_entry) == 24, "entry layout is ABI");
_Static_assert(sizeof(struct mmn_ack_ring) == 192,
	       "header layout is ABI: head and tail on lines of their own");

/* Bytes of an ack ring of @n entries. */
#define MMN_ACK_RING_SIZE(n) (sizeof(struct mmn_ack_ring) + (size_t)(n) * sizeof(struct mmn_ack_entry))

#endif
