/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmmn-ucx: UCX's registration caches (ucs_rcache: ucp's and the
 * transports') invalidated through mmnd instead of UCX's libc hooks.
 * Link with `pkg-config --libs mmn-ucx`, before UCX's libraries, or preload
 * it (LD_PRELOAD=libmmn-ucx.so.1), which needs no call at all.
 */
#ifndef MMN_UCX_H
#define MMN_UCX_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * mmn_ucx_enable() - connect to mmnd and make every UCX registration cache
 * created from now on learn of unmaps (and every other invalidation mmnd
 * reports) from it.  Call it before ucp_init() (or uct_md_open()): caches
 * created earlier keep UCX's own hooks.  Idempotent.
 * @socket_path: NULL for $MMN_SOCKET, or mmnd's default socket.
 * Return: 0 (also when already enabled); -ECANCELED ($MMN_UCX_DISABLE set);
 * -ENOTSUP (UCX is not loaded, is not the version the library was built
 * for, or libucs was loaded before this library so that its calls do not
 * come here); an error of mmn_connect() (mmnd unreachable: UCX is left
 * as it was).
 */
int mmn_ucx_enable(const char *socket_path);

/** mmn_ucx_enabled() - whether mmn_ucx_enable() (or the preload) succeeded. */
bool mmn_ucx_enabled(void);

#ifdef __cplusplus
}
#endif

#endif
