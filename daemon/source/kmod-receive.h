/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kmod source's receive path (kmod-receive.c). */
#ifndef MMN_DAEMON_SOURCE_KMOD_RECEIVE_H
#define MMN_DAEMON_SOURCE_KMOD_RECEIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/netlink.h>

#include <uv.h>

struct kmod_source;

/* The idle callback: dispatch the backlog synchronous requests kept. */
void mmn__kmod_on_idle(uv_idle_t *h);
/* The socket's poll callback: read and dispatch a bounded batch. */
void mmn__kmod_on_poll(uv_poll_t *h, int status, int events);

#endif
