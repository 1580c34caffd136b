/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The userfaultfd the uffd source needs from the client (uffd.c). */
#ifndef MMN_CLIENT_UFFD_H
#define MMN_CLIENT_UFFD_H

#include <stdint.h>

struct mmn_client;

/* A new uffd with the events enabled (sets c->uffd_features), or a negative errno. */
int mmn__uffd_open(struct mmn_client *c);
/* 0 when [start, end) is mapped as a whole, else -ENOMEM or another errno. */
int mmn__uffd_check_mapped(uint64_t start, uint64_t end);

#endif
