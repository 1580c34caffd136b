/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A thread blocked in mmn_read_begin() until the test changes the state (an
 * invalidation ends, a reconnection completes).  read_waiter_start() returns
 * once the thread is about to call mmn_read_begin() and has marked the
 * change as due: a value it returns after that saw the change.  Header only:
 * the tests that use it link libmmn.
 */
#ifndef MMN_TESTS_READ_WAITER_H
#define MMN_TESTS_READ_WAITER_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mmn/mmn.h"

struct read_waiter {
	struct mmn_sub *s;
	int efd;
	int changed;	 /* set by the test just before it makes the change */
	bool saw_change; /* read_begin returned after that */
	uint64_t seq;	 /* what read_begin returned */
	pthread_t t;
};

static inline void *read_waiter_main(void *arg)
{
	struct read_waiter *w = arg;
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0)
		abort();
	w->seq = mmn_read_begin(w->s);
	w->saw_change = __atomic_load_n(&w->changed, __ATOMIC_SEQ_CST);
	return NULL;
}

static inline void read_waiter_start(struct read_waiter *w, struct mmn_sub *s)
{
	struct pollfd p;

	*w = (struct read_waiter){.s = s, .efd = eventfd(0, EFD_CLOEXEC)};
	p = (struct pollfd){.fd = w->efd, .events = POLLIN};
	pthread_create(&w->t, NULL, read_waiter_main, w);
	poll(&p, 1, 5000); /* the waiter is about to call read_begin */
	__atomic_store_n(&w->changed, 1, __ATOMIC_SEQ_CST);
}

static inline void read_waiter_join(struct read_waiter *w)
{
	pthread_join(w->t, NULL);
	close(w->efd);
}

#endif
