/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The library's log sink (error.c): silent unless the host set one with mmn_set_log_fn(). */
#ifndef MMN_CLIENT_ERROR_H
#define MMN_CLIENT_ERROR_H

void mmn__log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
