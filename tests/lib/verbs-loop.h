/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A loopback RC queue pair on a verbs device (soft-RoCE in the guest): one
 * QP connected to itself through a GID of its own port, so that an RDMA READ
 * posted on it reads through any MR of its protection domain.
 *
 *   struct verbs_loop l;
 *   verbs_loop_open(&l, "rxe0", gid_index);     device, PD, CQ, QP in RTS
 *   mr = ibv_reg_mr(l.pd, buf, len, VERBS_LOOP_MR_ACCESS);
 *   verbs_loop_read(&l, dst, dst_mr->lkey, (uintptr_t)buf, mr->rkey, len, 10000);
 *   verbs_loop_close(&l);
 *
 * rxe0 and the GID index come from tests/guest/lib/rxe-up (MMN_RXE_DEV,
 * MMN_RXE_GID_INDEX).  Single-threaded use: one struct per caller.  MRs
 * registered on l.pd must be deregistered before verbs_loop_close().
 */
#ifndef MMN_TESTS_VERBS_LOOP_H
#define MMN_TESTS_VERBS_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>

/* What an MR needs to be read through the loop (as the target) and written (as the sink). */
#define VERBS_LOOP_MR_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ)

struct verbs_loop {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch; /* completions are waited for with poll() */
	struct ibv_cq *cq;
	struct ibv_qp *qp; /* in RTS, its destination is itself */
	uint8_t port;
	union ibv_gid gid; /* the GID the QP sends from and to */
};

/*
 * Opens device @name and brings a loopback RC QP up to RTS over GID
 * @gid_index of port 1.  0, or -ENODEV (no such device) or another -errno
 * (everything opened is closed again).
 */
int verbs_loop_open(struct verbs_loop *l, const char *name, int gid_index);

/*
 * RDMA READ of @len bytes at @raddr (rkey @rkey) into @dst (lkey @lkey) and
 * wait at most @timeout_ms for its completion.  0, -ETIMEDOUT, -EIO (the
 * work completion's status was not success) or another -errno.
 */
int verbs_loop_read(struct verbs_loop *l, void *dst, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		    uint32_t len, int timeout_ms);

/* Closes everything verbs_loop_open() opened; a zeroed struct is fine. */
void verbs_loop_close(struct verbs_loop *l);

#endif
