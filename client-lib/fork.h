/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork() handling (fork.c): the process-wide list of clients, whose sockets
 * a child closes, and the test every entry point makes to answer -ECHILD in
 * a child.
 */
#ifndef MMN_CLIENT_FORK_H
#define MMN_CLIENT_FORK_H

#include <stdbool.h>

struct mmn_client;

/* True in a child forked after @c was connected. */
bool mmn__forked(const struct mmn_client *c);
void mmn__global_add(struct mmn_client *c);
void mmn__global_del(struct mmn_client *c);
/* Store c->sock: the child handler reads it without c->lock. */
void mmn__global_set_fd(int *where, int fd);

#endif
