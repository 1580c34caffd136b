/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A UCX-only program that shows a stale registration: two ucp workers of one
 * context exchange a 1 MiB tagged message over RDMA (rendezvous, the
 * receiver RDMA-READs the sender's buffer through the sender's cached
 * registration).  The sender's buffer is then unmapped by a raw munmap
 * system call (which UCX's libc hooks never see), a new mapping with new
 * contents takes its address, and the message is sent again.  A cache that
 * was not told hands out the old registration, whose pinned pages still
 * hold the old contents: stale=1.  Preloaded with libmmn-ucx and mmnd
 * running, the rcache drops it and the receiver reads the new pages: stale=0.
 *   ucx-rcache-stale EXPECTED_STALE(0|1)
 * TAP on stdout; "stale=N" as a diagnostic.  Meant for soft-RoCE (rxe,
 * which has no on-demand paging): $MMN_RXE_DEV and $MMN_RXE_GID_INDEX select
 * the device; without them UCX picks its transports itself (then no
 * registration may pin anything and stale stays 0).
 */
#include <dlfcn.h>
#include <errno.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ucm/api/ucm.h>
#include <ucp/api/ucp.h>

#define LEN    (1u << 20)
#define TAG    0x6d6d6eu
#define WAIT_S 10

static int n_tap, failed;

static void ok(bool cond, const char *what)
{
	n_tap++;
	failed |= !cond;
	printf("%sok %d - %s\n", cond ? "" : "not ", n_tap, what);
	fflush(stdout);
}

static void bail(const char *what, ucs_status_t st)
{
	printf("Bail out! %s: %s\n", what, ucs_status_string(st));
	exit(1);
}

/* UCX's environment: the rxe device, RDMA READ rendezvous for anything above 1 KiB. */
static void configure(void)
{
	const char *dev = getenv("MMN_RXE_DEV"), *gid = getenv("MMN_RXE_GID_INDEX");
	char v[64];

	if (dev && *dev) {
		snprintf(v, sizeof(v), "%s:1", dev);
		setenv("UCX_NET_DEVICES", v, 1);
		setenv("UCX_TLS", "rc_verbs,ud_verbs", 1);
	}
	if (gid && *gid)
		setenv("UCX_IB_GID_INDEX", gid, 1);
	setenv("UCX_RNDV_THRESH", "1024", 1);
	setenv("UCX_RNDV_SCHEME", "get_zcopy", 1);
}

/* Invalidations of the sender's buffer that reached UCX (posted from any thread). */
static uintptr_t watch_start, watch_end;
static sem_t seen;

static void on_unmapped(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	uintptr_t a = (uintptr_t)ev->vm_unmapped.address, b = a + ev->vm_unmapped.size;

	if (a <= watch_start && b >= watch_end)
		sem_post(&seen);
}

/* With the adapter on the uffd source the invalidation follows the unmap: wait for it (bounded). */
static void wait_unmapped(void)
{
	bool (*enabled)(void) = (bool (*)(void))dlsym(RTLD_DEFAULT, "mmn_ucx_enabled");
	struct timespec ts;

	if (!enabled || !enabled())
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += WAIT_S;
	while (sem_clockwait(&seen, CLOCK_MONOTONIC, &ts) < 0 && errno == EINTR)
		;
}

struct pair {
	ucp_context_h ctx;
	ucp_worker_h tx, rx;
	ucp_ep_h ep;
};

static void setup(struct pair *p)
{
	ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG};
	ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
				  .thread_mode = UCS_THREAD_MODE_SINGLE};
	ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS};
	ucp_address_t *addr;
	size_t alen;
	ucs_status_t st;

	if ((st = ucp_init(&params, NULL, &p->ctx)) != UCS_OK)
		bail("ucp_init", st);
	if ((st = ucp_worker_create(p->ctx, &wp, &p->tx)) != UCS_OK ||
	    (st = ucp_worker_create(p->ctx, &wp, &p->rx)) != UCS_OK)
		bail("ucp_worker_create", st);
	if ((st = ucp_worker_get_address(p->rx, &addr, &alen)) != UCS_OK)
		bail("ucp_worker_get_address", st);
	ep.address = addr;
	if ((st = ucp_ep_create(p->tx, &ep, &p->ep)) != UCS_OK)
		bail("ucp_ep_create", st);
	ucp_worker_release_address(p->rx, addr);
}

/* Progresses both workers until @req is done (NULL or a status pointer: done already). */
static ucs_status_t wait_req(struct pair *p, void *req)
{
	ucs_status_t st;

	if (UCS_PTR_IS_ERR(req))
		return UCS_PTR_STATUS(req);
	if (!req)
		return UCS_OK;
	do {
		ucp_worker_progress(p->tx);
		ucp_worker_progress(p->rx);
		st = ucp_request_check_status(req);
	} while (st == UCS_INPROGRESS);
	ucp_request_free(req);
	return st;
}

/* One message from @src into @dst. */
static void transfer(struct pair *p, const void *src, void *dst)
{
	ucp_request_param_t prm = {.op_attr_mask = 0};
	void *rreq, *sreq;
	ucs_status_t st;

	rreq = ucp_tag_recv_nbx(p->rx, dst, LEN, TAG, (ucp_tag_t)-1, &prm);
	sreq = ucp_tag_send_nbx(p->ep, src, LEN, TAG, &prm);
	if ((st = wait_req(p, sreq)) != UCS_OK)
		bail("send", st);
	if ((st = wait_req(p, rreq)) != UCS_OK)
		bail("recv", st);
}

static bool all(const unsigned char *b, unsigned char v)
{
	for (size_t i = 0; i < LEN; i++)
		if (b[i] != v)
			return false;
	return true;
}

int main(int argc, char **argv)
{
	int expected = argc > 1 ? atoi(argv[1]) : 0;
	unsigned char *src, *dst = malloc(LEN);
	struct pair p;
	int stale;

	configure();
	setup(&p);
	sem_init(&seen, 0, 0);
	if (ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, 2000, on_unmapped, NULL) != UCS_OK)
		bail("ucm_set_event_handler", UCS_ERR_UNSUPPORTED);
	src = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || !dst)
		bail("memory", UCS_ERR_NO_MEMORY);
	watch_start = (uintptr_t)src;
	watch_end = watch_start + LEN;
	memset(src, 0x11, LEN);
	transfer(&p, src, dst);
	ok(all(dst, 0x11), "first message delivered");

	if (syscall(SYS_munmap, src, LEN) != 0 ||
	    mmap(src, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
		 0) != src)
		bail("remap", UCS_ERR_IO_ERROR);
	memset(src, 0x22, LEN);
	wait_unmapped();
	memset(dst, 0, LEN);
	transfer(&p, src, dst);
	stale = all(dst, 0x11);
	printf("# stale=%d\n", stale);
	ok(stale || all(dst, 0x22), "second message holds the old or the new contents, nothing else");
	ok(stale == expected, expected ? "stale=1 without mmn" : "stale=0 with mmn");

	ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_unmapped, NULL);
	wait_req(&p, ucp_ep_close_nbx(p.ep, &(ucp_request_param_t){.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
								   .flags = UCP_EP_CLOSE_FLAG_FORCE}));
	ucp_worker_destroy(p.tx);
	ucp_worker_destroy(p.rx);
	ucp_cleanup(p.ctx);
	printf("1..%d\n", n_tap);
	return failed;
}
