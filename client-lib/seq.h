/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sequence page (seq.c): mapped from the memfd of HelloReply, replaced
 * by a placeholder on connection loss, and each sub's epoch on top of it.
 * All under c->lock, except the readers (mmn_read_begin/retry).
 */
#ifndef MMN_CLIENT_SEQ_H
#define MMN_CLIENT_SEQ_H

#include <stdint.h>

#include "seqpage.h"

struct mmn_client;
struct mmn_sub;

int mmn__seqpage_map(struct mmn_client *c, int memfd, uint32_t nslots);
/* Map the waiter page of HelloReply (takes @memfd). */
int mmn__waitpage_map(struct mmn_client *c, int memfd, uint32_t nslots);
/* Connection lost: every sub detached, readers woken, the page replaced by a placeholder. */
void mmn__seqpage_detach(struct mmn_client *c);
/* mmn_disconnect(): unmap the page and every retired one. */
void mmn__seqpage_unmap_all(struct mmn_client *c);
/* Slot @idx of the mapped page, NULL when out of range. */
const struct mmn_seqpage_slot *mmn__seqpage_slot(struct mmn_client *c, uint32_t idx);
/* A new @s: parked, epoch odd (detached until mmnd gives a slot). */
void mmn__seq_init(struct mmn_sub *s);
/* Readers may use @s's slot (its epoch becomes even), unless it is dead. */
void mmn__seq_publish(struct mmn_sub *s);
/* @s is dead for good: readers see a collision forever. */
void mmn__seq_kill(struct mmn_sub *s);

#endif
