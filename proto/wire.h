/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mmn v1 wire: framing of proto/mmn.proto Envelopes on a SOCK_SEQPACKET
 * Unix socket, shared by mmnd and libmmn.  One packet is one Envelope; file
 * descriptors ride along as SCM_RIGHTS.  Nothing here logs or allocates
 * beyond protobuf-c's own unpack.
 */
#ifndef MMN_PROTO_WIRE_H
#define MMN_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mmn.pb-c.h"

/*
 * Protocol versions this build speaks: Hello offers [MIN, MAX] and
 * HelloReply picks the highest both sides speak.  Version 2 adds EventBatch
 * and AckMany (proto/mmn.proto).
 */
#define MMN_PROTO_VERSION_MIN 1
#define MMN_PROTO_VERSION 2

/* Largest packet either side sends or accepts. */
#define MMN_WIRE_MAX_MSG 4096

/*
 * Most items mmnd takes in one SubscribeMany or UnsubscribeMany
 * (HelloReply.max_batch).  Its reply must fit in one packet: a
 * SubscribeResult is at most 33 bytes on the wire (an error: 13), an
 * UnsubscribeManyReply item at most 10, so 112 results stay under
 * MMN_WIRE_MAX_MSG with room for the envelope.  A request must fit too,
 * which may hold fewer items: the client splits by size as well.
 */
#define MMN_MAX_BATCH 112

/*
 * Most Acks in one AckMany (v2).  A pair takes at most 20 bytes on the wire
 * (two 10-byte varints in packed lists), the lists' tags and lengths and the
 * envelope at most 30, so 200 pairs fit in MMN_WIRE_MAX_MSG.
 */
#define MMN_MAX_ACKS 200

/*
 * Most entries in one AckMany that has runs (HelloReply.ack_runs): an entry
 * takes at most 25 bytes then (a 5-byte varint more), so 160 fit.
 */
#define MMN_MAX_ACK_RUNS 160

/* Most file descriptors one packet may carry (HelloReply: seqpage, waiters, ack ring, doorbell). */
#define MMN_WIRE_MAX_FDS 4

#define MMN_DEFAULT_SOCKET "/run/mmn/mmnd.sock"
#define MMN_SOCKET_ENV "MMN_SOCKET"

typedef Mmn__V1__Envelope MmnEnvelope;

/*
 * Serialise @env into @buf (@cap bytes).  Returns the length, -EMSGSIZE if it
 * does not fit in min(@cap, MMN_WIRE_MAX_MSG), -EINVAL if no body is set.
 */
int mmn__wire_encode(const MmnEnvelope *env, uint8_t *buf, size_t cap);

/*
 * Parse one packet.  Returns 0 and a message in *@out to be released with
 * mmn__wire_free(), or: -EMSGSIZE (longer than MMN_WIRE_MAX_MSG), -EBADMSG
 * (not a valid Envelope: truncated or corrupt), -EPROTO (valid protobuf but
 * no body this version knows).
 */
int mmn__wire_decode(const uint8_t *buf, size_t len, MmnEnvelope **out);
void mmn__wire_free(MmnEnvelope *env);

/* A short name for the body case, for logs and errors. */
const char *mmn__wire_body_name(const MmnEnvelope *env);

/*
 * Send one Envelope with up to MMN_WIRE_MAX_FDS descriptors, MSG_NOSIGNAL
 * and, with @nonblock, MSG_DONTWAIT.  Returns 0 or a negative errno
 * (-EAGAIN when the peer's queue is full and @nonblock).
 */
int mmn__wire_send(int sock, const MmnEnvelope *env, const int *fds, size_t nfds, int nonblock);

/*
 * Receive one packet into @buf (at least MMN_WIRE_MAX_MSG bytes); never
 * blocks (MSG_DONTWAIT: poll first, -EAGAIN when nothing is queued).  Returns
 * its length, 0 on orderly EOF, or a negative errno; -EMSGSIZE when the
 * packet was truncated (MSG_TRUNC) or carried more descriptors than
 * @maxfds (MSG_CTRUNC).  Received descriptors are O_CLOEXEC and stored in
 * @fds, their count in *@nfds; on any error none are left open.
 */
ssize_t mmn__wire_recv(int sock, uint8_t *buf, size_t cap, int *fds, size_t maxfds, size_t *nfds);

/* One packet of mmn__wire_recv_many(). */
struct mmn_wire_packet {
	ssize_t len;	/* as mmn__wire_recv() returns it: > 0, 0 (EOF) or -EMSGSIZE */
	size_t nfds;	/* descriptors received with it, O_CLOEXEC, now the caller's */
	int fds[MMN_WIRE_MAX_FDS];
	uint8_t buf[MMN_WIRE_MAX_MSG];
};

/* Most packets one mmn__wire_recv_many() call reads. */
#define MMN_WIRE_RECV_MANY 8

/*
 * The packets queued on @sock, up to min(@n, MMN_WIRE_RECV_MANY), with one
 * recvmmsg() that never blocks: a reader of many peers pays one system call
 * per peer and wake-up, not a second one that finds the queue empty.
 * Returns how many entries of @pkts it filled (each checked as
 * mmn__wire_recv() checks one: a packet after an EOF or -EMSGSIZE entry is
 * still filled, the caller stops there), or a negative errno (-EAGAIN when
 * nothing is queued).
 */
ssize_t mmn__wire_recv_many(int sock, struct mmn_wire_packet *pkts, size_t n);

#endif
