/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory shared with one client: a sealed memfd mmnd maps read-write and
 * passes with HelloReply (the sequence page, the waiter page, the ack ring).
 */
#ifndef MMN_DAEMON_MEMFD_H
#define MMN_DAEMON_MEMFD_H

#include <stddef.h>

/*
 * A memfd named @name of @size zeroed bytes, mapped read-write shared at
 * *@addr, with @seals added (F_SEAL_*): the descriptor, or a negative errno.
 */
int mmn__memfd_map(const char *name, size_t size, unsigned seals, void **addr);

#endif
