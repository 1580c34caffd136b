/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A client's sequence page: one memfd page of 64-bit slots, odd while an
 * invalidation of the slot's subscription is in flight.  Loop thread only.
 */
#ifndef MMN_DAEMON_SEQPAGE_SLOTS_H
#define MMN_DAEMON_SEQPAGE_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

struct client;

/*
 * @waiter_flag: also a waiter page (c->waiters, c->wait_memfd); slot ends then
 * wake only flagged slots.  @gen_base (Hello.gen_base, 1..2^32; 0 = 1): the
 * first gen alloc gives; gens never wrap.  0 or -EINVAL (base above 2^32),
 * -errno of memfd_create/ftruncate/mmap/fcntl.
 */
int mmn__seqpage_create(struct client *c, uint32_t nslots, bool waiter_flag, uint64_t gen_base);
void mmn__seqpage_destroy(struct client *c);
/* 0, -ENOSPC (no free slot), -ENOMEM, -ERANGE (the client used gen 2^32 - 1). */
int mmn__seqpage_alloc(struct client *c, uint32_t *slot, uint32_t *gen);
void mmn__seqpage_free(struct client *c, uint32_t slot);
/* Returns the slot's new 64-bit value. */
uint64_t mmn__seqpage_begin(struct client *c, uint32_t slot);
uint64_t mmn__seqpage_end(struct client *c, uint32_t slot);
uint64_t mmn__seqpage_value(struct client *c, uint32_t slot);
/* FUTEX_WAKEs issued by this process's slot ends and frees (loop thread; for tests). */
extern unsigned long mmn__seqpage_wakes;

#endif
