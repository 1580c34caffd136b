/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Layout of the sequence page: a memfd mmnd creates per client, passes with
 * HelloReply and the client maps read-only.  It is the user-space twin of
 * mmu_interval_notifier.invalidate_seq.
 *
 * Each subscription owns one slot (SubscribeReply.seq_slot).  mmnd is the only
 * writer.  slot.seq is odd while at least one invalidation overlapping the
 * subscription is in flight and even when quiescent; every transition
 * increments it by one.  slot.gen changes whenever the slot is given to a
 * new subscription, so a reader comparing the whole 64-bit word never
 * mistakes a reused slot for its own.  mmnd writes with release semantics
 * and FUTEX_WAKEs slot.seq on every odd->even transition; readers wait with
 * FUTEX_WAIT (shared, not private: the page is shared between processes).
 *
 *   mmn_read_begin():  v = load_acquire(slot);  while (v.seq odd) futex_wait(&slot.seq, v.seq);
 *   mmn_read_retry():  return load_acquire(slot) != v;
 *
 * The waiter page (Hello.waiter_flag, answered by HelloReply.waiter_flag):
 * a second memfd, passed after the sequence page, that the client maps
 * read-write: one byte per slot, non-zero while a reader may sleep on the
 * slot.  Then mmnd FUTEX_WAKEs a slot only when its byte is set, and clears
 * it.  The ordering is Dekker's, both sides with a seq_cst fence:
 *
 *   reader:  store(flag, 1); fence; if (load(slot) == v) futex_wait(&slot.seq, v.seq);
 *   mmnd:    store_release(slot, new); fence; if (load(flag)) { store(flag, 0); futex_wake; }
 *
 * Either the reader's load sees the new slot value (it does not sleep), or
 * mmnd's load sees the flag (it wakes; FUTEX_WAIT compares the value in the
 * kernel, so a wake before the wait makes the wait return).  mmnd's clearing
 * store cannot lose a later flag: a reader whose flag it overwrote stored it
 * after mmnd's fence, so that reader's load sees the new value.  The page is
 * the client's own: garbage there only costs that client wakes or sleeps.
 */
#ifndef MMN_PROTO_SEQPAGE_H
#define MMN_PROTO_SEQPAGE_H

#include <stdint.h>

#define MMN_SEQPAGE_MAGIC 0x514e4d4du /* "MMNQ" */
#define MMN_SEQPAGE_VERSION 1

struct mmn_seqpage_slot {
	uint32_t seq; /* futex word: odd = invalidation in flight */
	uint32_t gen; /* owner generation; 0 = free */
};

struct mmn_seqpage {
	uint32_t magic;
	uint32_t version;
	uint32_t nslots;
	uint32_t reserved;
	struct mmn_seqpage_slot slots[];
};

_Static_assert(sizeof(struct mmn_seqpage_slot) == 8, "slot is one atomic 64-bit word");
_Static_assert(sizeof(struct mmn_seqpage) == 16, "header layout is ABI");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "MMN_SEQ_WORD assumes seq is the low half");

/* Bytes of a sequence page with @n slots. */
#define MMN_SEQPAGE_SIZE(n) (sizeof(struct mmn_seqpage) + (size_t)(n) * sizeof(struct mmn_seqpage_slot))

/* Bytes of a waiter page with @n slots: one flag byte each. */
#define MMN_WAITPAGE_SIZE(n) ((size_t)(n))

/* The slot as one 64-bit value: what mmn_read_begin() returns. */
static inline uint64_t mmn_seqpage_load(const struct mmn_seqpage_slot *s)
{
	return __atomic_load_n((const uint64_t *)(const void *)s, __ATOMIC_ACQUIRE);
}

#define MMN_SEQ_WORD(v) ((uint32_t)(v))        /* low half on little endian = slot.seq */
#define MMN_SEQ_GEN(v) ((uint32_t)((v) >> 32)) /* high half = slot.gen */

#endif
