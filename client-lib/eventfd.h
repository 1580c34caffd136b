/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The library's eventfds (c->wakefd, c->replyfd, c->stopfd) are used as
 * level-triggered flags: signalled when something is due, cleared by the
 * thread that handles it.  Both ignore a closed fd (-1).
 */
#ifndef MMN_CLIENT_EVENTFD_H
#define MMN_CLIENT_EVENTFD_H

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

/* Make @efd readable. */
static inline void mmn__eventfd_signal(int efd)
{
	uint64_t one = 1;

	if (efd >= 0 && write(efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, the fd is readable anyway. */
	}
}

/* Make @efd unreadable again (it is non-blocking). */
static inline void mmn__eventfd_clear(int efd)
{
	uint64_t n;

	if (efd >= 0 && read(efd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing pending. */
	}
}

/*
 * The same with a flag kept under the caller's lock, so neither side makes a
 * system call that changes nothing: raise @efd unless *@set says it is up,
 * lower it only when it is.
 */
static inline void mmn__eventfd_raise(int efd, bool *set)
{
	if (!*set) {
		mmn__eventfd_signal(efd);
		*set = true;
	}
}

static inline void mmn__eventfd_lower(int efd, bool *set)
{
	if (*set) {
		mmn__eventfd_clear(efd);
		*set = false;
	}
}

#endif
