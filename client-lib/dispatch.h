/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Delivery (dispatch.c): mmn_dispatch() with a chosen budget, for the
 * library's own thread (thread.c).
 */
#ifndef MMN_CLIENT_DISPATCH_H
#define MMN_CLIENT_DISPATCH_H

struct mmn_client;

/*
 * mmn_dispatch() with at most @budget steps (an event delivered or a packet
 * read).  mmn_dispatch() takes MMN_DISPATCH_BUDGET, so an application's loop
 * gets control back soon; the library thread, which has nothing else to do,
 * takes MMN_THREAD_BUDGET and pays its poll and wake-up once per burst.
 */
int mmn__dispatch(struct mmn_client *c, int budget);

#define MMN_DISPATCH_BUDGET 64
#define MMN_THREAD_BUDGET 4096

#endif
