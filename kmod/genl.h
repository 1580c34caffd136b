/* SPDX-License-Identifier: GPL-2.0 */
/* mmn: the "mmn" generic-netlink family and daemon binding. */
#ifndef MMN_GENL_H
#define MMN_GENL_H

#include <net/genetlink.h>

extern struct genl_family mmn_genl_family;

int mmn_genl_init(void);
void mmn_genl_exit(void);

#endif /* MMN_GENL_H */
