/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "verbs-loop.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "child.h"

static struct ibv_context *open_device(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	int i;

	if (!list)
		return NULL;
	for (i = 0; list[i]; i++)
		if (strcmp(ibv_get_device_name(list[i]), name) == 0)
			break;
	if (list[i])
		ctx = ibv_open_device(list[i]);
	else
		errno = ENODEV;
	ibv_free_device_list(list);
	return ctx;
}

/* RESET -> INIT -> RTR (destination: this QP, through l->gid) -> RTS.  0 or -errno. */
static int qp_connect(struct verbs_loop *l, int gid_index, enum ibv_mtu mtu)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT,
		.pkey_index = 0,
		.port_num = l->port,
		.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ,
	};
	int r;

	r = ibv_modify_qp(l->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	if (r)
		return -r;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = mtu;
	a.dest_qp_num = l->qp->qp_num;
	a.rq_psn = 0;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = l->gid;
	a.ah_attr.grh.sgid_index = (uint8_t)gid_index;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = l->port;
	r = ibv_modify_qp(l->qp, &a,
			  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
				  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (r)
		return -r;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.sq_psn = 0;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	r = ibv_modify_qp(l->qp, &a,
			  IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
				  IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC);
	return -r;
}

int verbs_loop_open(struct verbs_loop *l, const char *name, int gid_index)
{
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.cap = {.max_send_wr = 4, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
		.sq_sig_all = 1,
	};
	struct ibv_port_attr pa;
	int r;

	memset(l, 0, sizeof(*l));
	l->port = 1;
	if (!name || gid_index < 0 || gid_index > 255)
		return -EINVAL;
	l->ctx = open_device(name);
	if (!l->ctx)
		return errno == ENODEV ? -ENODEV : -(errno ? errno : EIO);
	r = ibv_query_port(l->ctx, l->port, &pa);
	if (!r)
		r = ibv_query_gid(l->ctx, l->port, gid_index, &l->gid);
	if (r)
		goto fail_errno;
	l->pd = ibv_alloc_pd(l->ctx);
	l->ch = l->pd ? ibv_create_comp_channel(l->ctx) : NULL;
	l->cq = l->ch ? ibv_create_cq(l->ctx, 4, NULL, l->ch, 0) : NULL;
	if (!l->cq)
		goto fail_errno;
	qa.send_cq = qa.recv_cq = l->cq;
	l->qp = ibv_create_qp(l->pd, &qa);
	if (!l->qp)
		goto fail_errno;
	r = qp_connect(l, gid_index, pa.active_mtu);
	if (r) {
		verbs_loop_close(l);
		return r;
	}
	return 0;
fail_errno:
	r = -(errno ? errno : EIO);
	verbs_loop_close(l);
	return r;
}

/* Wait for one completion, at most @timeout_ms: 0, -ETIMEDOUT, -EIO, -errno. */
static int wait_completion(struct verbs_loop *l, int timeout_ms)
{
	uint64_t now, end = mono_ns() + (uint64_t)timeout_ms * 1000000u;
	struct pollfd p = {.fd = l->ch->fd, .events = POLLIN};
	struct ibv_wc wc;
	struct ibv_cq *cq;
	void *cq_ctx;
	int n;

	for (;;) {
		n = ibv_poll_cq(l->cq, 1, &wc);
		if (n == 0 && ibv_req_notify_cq(l->cq, 0))
			return -EIO;
		if (n == 0) /* a completion that came before the request is not notified */
			n = ibv_poll_cq(l->cq, 1, &wc);
		if (n < 0)
			return -EIO;
		if (n > 0)
			return wc.status == IBV_WC_SUCCESS ? 0 : -EIO;
		now = mono_ns();
		if (now >= end)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)((end - now) / 1000000u) + 1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0) {
			if (ibv_get_cq_event(l->ch, &cq, &cq_ctx))
				return -EIO;
			ibv_ack_cq_events(cq, 1);
		}
	}
}

int verbs_loop_read(struct verbs_loop *l, void *dst, uint32_t lkey, uint64_t raddr, uint32_t rkey,
		    uint32_t len, int timeout_ms)
{
	struct ibv_sge sge = {.addr = (uintptr_t)dst, .length = len, .lkey = lkey};
	struct ibv_send_wr wr = {
		.wr_id = 1,
		.sg_list = &sge,
		.num_sge = 1,
		.opcode = IBV_WR_RDMA_READ,
		.send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = {.remote_addr = raddr, .rkey = rkey},
	};
	struct ibv_send_wr *bad;
	int r;

	if (!l || !l->qp || !dst)
		return -EINVAL;
	r = ibv_post_send(l->qp, &wr, &bad);
	if (r)
		return -r;
	return wait_completion(l, timeout_ms);
}

void verbs_loop_close(struct verbs_loop *l)
{
	if (l->qp)
		ibv_destroy_qp(l->qp);
	if (l->cq)
		ibv_destroy_cq(l->cq);
	if (l->ch)
		ibv_destroy_comp_channel(l->ch);
	if (l->pd)
		ibv_dealloc_pd(l->pd);
	if (l->ctx)
		ibv_close_device(l->ctx);
	memset(l, 0, sizeof(*l));
}
