/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The record of a v2 EventBatch (proto/mmn.proto): one Invalidate, one
 * InvalidateEnd, or an Invalidate folded with its InvalidateEnd, in 56
 * little-endian bytes.  mmnd packs a client's events into one packet while
 * it has more than one to send; the client reads them in place.  Both ends
 * run on the same host, so the layout is the host's (asserted little endian).
 */
#ifndef MMN_PROTO_EVENT_RECORD_H
#define MMN_PROTO_EVENT_RECORD_H

#include <stdint.h>

enum mmn_record_kind {
	MMN_RECORD_INVALIDATE = 1,     /* an Invalidate */
	MMN_RECORD_END = 2,	       /* an InvalidateEnd: sub_id, event_id, seq */
	MMN_RECORD_INVALIDATE_END = 3, /* an Invalidate, then its InvalidateEnd (seq end_seq) */
};

/* mmn_event_record.flags */
#define MMN_RECORD_BLOCKABLE 0x1u
#define MMN_RECORD_NEEDS_ACK 0x2u
#define MMN_RECORD_FLAGS 0x3u

struct mmn_event_record {
	uint64_t sub_id;
	uint64_t event_id;
	uint64_t start;	      /* Invalidate.start; 0 in an END */
	uint64_t end;	      /* Invalidate.end; 0 in an END */
	uint64_t seq;	      /* Invalidate.seq, or InvalidateEnd.seq in an END */
	uint64_t end_seq;     /* INVALIDATE_END: the InvalidateEnd's seq; else 0 */
	uint32_t deadline_ms; /* Invalidate.deadline_ms */
	uint8_t kind;	      /* enum mmn_record_kind */
	uint8_t event;	      /* Invalidate.event (EventType) */
	uint8_t flags;	      /* MMN_RECORD_BLOCKABLE | MMN_RECORD_NEEDS_ACK */
	uint8_t reserved;     /* 0 */
};

_Static_assert(sizeof(struct mmn_event_record) == 56, "a record is 56 bytes on the wire");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "records are little endian");

/*
 * Most records in one EventBatch.  A folded record becomes two events at the
 * client, so one packet queues at most 2 * 56 = MMN_MAX_BATCH events there
 * (the room libmmn keeps before it reads a packet); 56 records are 3,136
 * bytes, inside MMN_WIRE_MAX_MSG with the envelope.
 */
#define MMN_EVENT_BATCH_MAX 56

#endif
