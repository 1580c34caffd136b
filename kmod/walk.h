/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmn: the invalidate callback of every subscription's notifier.
 */
#ifndef MMN_WALK_H
#define MMN_WALK_H

#include <linux/mmu_notifier.h>

extern const struct mmu_interval_notifier_ops mmn_walk_ops;

#endif /* MMN_WALK_H */
