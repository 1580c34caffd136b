/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Driving a libmmn client without its library thread in tests: poll its fd
 * and call mmn_dispatch() until a condition holds, 5 s at most (500 polls of
 * 10 ms; the poll returns as soon as something is due, so this is a bounded
 * wait, not a sleep).  Header only: the tests that use it link libmmn.
 */
#ifndef MMN_TESTS_DISPATCH_H
#define MMN_TESTS_DISPATCH_H

#include <poll.h>
#include <stdbool.h>

#include "mmn/mmn.h"
#include "tap.h"

#define DISPATCH_POLLS	 500
#define DISPATCH_POLL_MS 10

/* Until *@counter >= @n.  Returns the first mmn_dispatch() error seen, or 0. */
static inline int dispatch_until(struct mmn_client *c, const unsigned *counter, unsigned n)
{
	int err = 0;

	for (int i = 0; i < DISPATCH_POLLS && *(volatile const unsigned *)counter < n; i++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};
		int r;

		poll(&p, 1, DISPATCH_POLL_MS);
		r = mmn_dispatch(c);
		if (r < 0 && !err)
			err = r;
	}
	if (*(volatile const unsigned *)counter < n)
		tap_diag("waited 5 s for %u events, got %u", n, *counter);
	return err;
}

/* As dispatch_until(); tells whether *@counter reached @n. */
static inline bool dispatch_reached(struct mmn_client *c, const unsigned *counter, unsigned n)
{
	dispatch_until(c, counter, n);
	return *(volatile const unsigned *)counter >= n;
}

/* Until mmn_dispatch() reports an error; returns it, or 0 after 5 s. */
static inline int dispatch_until_err(struct mmn_client *c)
{
	for (int i = 0; i < DISPATCH_POLLS; i++) {
		struct pollfd p = {.fd = mmn_get_fd(c), .events = POLLIN};
		int r;

		poll(&p, 1, DISPATCH_POLL_MS);
		r = mmn_dispatch(c);
		if (r < 0)
			return r;
	}
	return 0;
}

#endif
