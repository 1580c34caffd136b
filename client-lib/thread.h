/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The library's dispatch thread (thread.c), started by mmn_start_thread(). */
#ifndef MMN_CLIENT_THREAD_H
#define MMN_CLIENT_THREAD_H

struct mmn_client;

/* Stop and join the thread (never from the thread itself), free its stack. */
void mmn__thread_stop(struct mmn_client *c);

#endif
