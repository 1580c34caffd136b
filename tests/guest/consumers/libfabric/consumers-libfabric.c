/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A program that uses only libfabric (verbs provider through ofi_rxm, the
 * MR cache on) and knows nothing of mmn: run it as is, or with
 * LD_PRELOAD=libmmn-libfabric.so to put libfabric's MR cache on mmn.
 *
 *   consumers-libfabric reuse|reuse-syscall|mprotect|move|loop|restart [N]
 *
 * reuse:    register a buffer, munmap and mmap the same address with new
 *           contents, register it again and RMA-read it through the
 *           endpoint's loopback connection.
 * reuse-syscall: the same with munmap and mmap as raw system calls, which
 *           libfabric's own memhooks monitor does not intercept.
 * mprotect: the same with mprotect(PROT_READ) and back instead.
 * move:     the same with move_pages() of every page to another NUMA node.
 * loop N:   register and release N distinct buffers, freeing each.
 * restart:  register a buffer and keep its MR open, print "registered"
 *           and wait for a line on stdin (meanwhile mmnd is restarted and
 *           the process reconnects); then register it again (the cache
 *           must miss: everything cached before is suspect, resync_miss=1),
 *           and do reuse-syscall on it (miss=1 stale=0 only if invalidations
 *           came through the new mmnd).
 *
 * Prints key=value lines: miss=1 when the second registration was a cache
 * miss (a new memory key), stale=1 when the RMA read returned the old
 * pages' contents; loop prints regs_per_sec.  Exit 0 when the run worked
 * (whatever it found), 1 on a libfabric or system error, 2 on usage.
 * Environment: MMN_RXE_DEV (verbs device, e.g. rxe0) selects the domain
 * (rdma_cm takes the device's address: on rxe over a veth, its IPv6
 * link-local one); FI_UNIVERSE_SIZE defaults to 16 here (rxm sizes its
 * verbs CQs by it, and 256 peers overflow rxe's CQs).
 * CONSUMERS_LIBFABRIC_PROV replaces "verbs;ofi_rxm" (e.g. "tcp;ofi_rxm"
 * to try the program where there is no RDMA device: no MR cache there).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define NPAGES 4
#define CQ_WAIT_MS 10000

/* Everything libfabric gave us; one per process. */
static struct {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
	fi_addr_t self;
} f;

#define FI_CHECK(call)                                                                             \
	do {                                                                                       \
		int _r = (int)(call);                                                              \
		if (_r) {                                                                          \
			fprintf(stderr, "consumers-libfabric: %s: %s\n", #call, fi_strerror(-_r));   \
			exit(1);                                                           \
		}                                                                                  \
	} while (0)

static void die(const char *what)
{
	fprintf(stderr, "consumers-libfabric: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct fi_info *hints(void)
{
	struct fi_info *h = fi_allocinfo();
	const char *dev = getenv("MMN_RXE_DEV"), *prov = getenv("CONSUMERS_LIBFABRIC_PROV");

	if (!h)
		die("fi_allocinfo");
	h->caps = FI_MSG | FI_RMA;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	h->fabric_attr->prov_name = strdup(prov && *prov ? prov : "verbs;ofi_rxm");
	if (dev && *dev)
		h->domain_attr->name = strdup(dev);
	return h;
}

/* Fabric, domain, CQ, AV and an endpoint with its own address in the AV. */
static void open_all(void)
{
	struct fi_info *h = hints();
	struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_CONTEXT};
	struct fi_av_attr ava = {.type = FI_AV_TABLE};
	char name[256], str[256];
	size_t len = sizeof(name), slen = sizeof(str);

	/* rxm sizes its verbs CQs by the universe: 256 peers overflow rxe's 32767 CQEs. */
	setenv("FI_UNIVERSE_SIZE", "16", 0);
	FI_CHECK(fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, h, &f.info));
	fi_freeinfo(h);
	FI_CHECK(fi_fabric(f.info->fabric_attr, &f.fabric, NULL));
	FI_CHECK(fi_domain(f.fabric, f.info, &f.domain, NULL));
	FI_CHECK(fi_cq_open(f.domain, &cqa, &f.cq, NULL));
	FI_CHECK(fi_av_open(f.domain, &ava, &f.av, NULL));
	FI_CHECK(fi_endpoint(f.domain, f.info, &f.ep, NULL));
	FI_CHECK(fi_ep_bind(f.ep, &f.cq->fid, FI_TRANSMIT | FI_RECV));
	FI_CHECK(fi_ep_bind(f.ep, &f.av->fid, 0));
	FI_CHECK(fi_enable(f.ep));
	FI_CHECK(fi_getname(&f.ep->fid, name, &len));
	if (fi_av_insert(f.av, name, 1, &f.self, 0, NULL) != 1) {
		fprintf(stderr, "consumers-libfabric: fi_av_insert of our own address failed\n");
		exit(1);
	}
	printf("provider=%s domain=%s mr_mode=0x%x addr=%s\n", f.info->fabric_attr->prov_name,
	       f.info->domain_attr->name, (unsigned)f.info->domain_attr->mr_mode,
	       fi_av_straddr(f.av, name, str, &slen));
}

static void close_all(void)
{
	fi_close(&f.ep->fid);
	fi_close(&f.av->fid);
	fi_close(&f.cq->fid);
	fi_close(&f.domain->fid);
	fi_close(&f.fabric->fid);
	fi_freeinfo(f.info);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One completion (CQ_WAIT_MS at most; reading the CQ drives rxm's progress). */
static void wait_cq(void)
{
	uint64_t deadline = now_ns() + CQ_WAIT_MS * 1000000ull;
	struct fi_cq_entry e;
	ssize_t r;

	while ((r = fi_cq_read(f.cq, &e, 1)) == -FI_EAGAIN)
		if (now_ns() > deadline) {
			fprintf(stderr, "consumers-libfabric: no completion in %d ms\n", CQ_WAIT_MS);
			exit(1);
		}
	if (r == -FI_EAVAIL) {
		struct fi_cq_err_entry err = {0};

		fi_cq_readerr(f.cq, &err, 0);
		fprintf(stderr, "consumers-libfabric: completion error: %s\n", fi_strerror(err.err));
		exit(1);
	}
	if (r != 1) {
		fprintf(stderr, "consumers-libfabric: fi_cq_read: %s\n", fi_strerror((int)-r));
		exit(1);
	}
}

/* A requested key of its own each (ignored by providers that choose keys, FI_MR_PROV_KEY). */
static struct fid_mr *reg(void *buf, size_t len, uint64_t access)
{
	static uint64_t key;
	struct fid_mr *mr;

	FI_CHECK(fi_mr_reg(f.domain, buf, len, access, 0, ++key, 0, &mr, NULL));
	return mr;
}

/* RMA-read @len bytes at @addr (key @key) through the loopback into @dst. */
static void rma_read(void *dst, struct fid_mr *dst_mr, const void *addr, size_t len, uint64_t key)
{
	ssize_t r;

	/* Without FI_MR_VIRT_ADDR the remote address is an offset into the region. */
	uint64_t raddr = f.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uint64_t)(uintptr_t)addr : 0;

	while ((r = fi_read(f.ep, dst, len, fi_mr_desc(dst_mr), f.self, raddr, key, NULL)) == -FI_EAGAIN)
		(void)fi_cq_read(f.cq, NULL, 0);
	FI_CHECK(r);
	wait_cq();
}

static size_t ps;

static char *map_at(void *at, size_t len, char fill)
{
	char *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	memset(p, fill, len);
	return p;
}

enum change { CH_REUSE, CH_REUSE_SYSCALL, CH_MPROTECT, CH_MOVE };

#define MPOL_MF_MOVE_ (1 << 1)

/* Move every page of @buf to a node other than the first page's; prints moved=. */
static void move_all(char *buf, size_t len)
{
	size_t n = len / ps;
	void *pages[NPAGES];
	int nodes[NPAGES], status[NPAGES], moved = 0;

	for (size_t i = 0; i < n; i++)
		pages[i] = buf + i * ps;
	if (syscall(SYS_move_pages, 0, n, pages, NULL, status, 0) < 0)
		die("move_pages (query)");
	for (size_t i = 0; i < n; i++)
		nodes[i] = status[0] == 0 ? 1 : 0;
	if (syscall(SYS_move_pages, 0, n, pages, nodes, status, MPOL_MF_MOVE_) < 0)
		printf("move_errno=%d\n", errno);
	for (size_t i = 0; i < n; i++)
		moved += status[i] == nodes[i];
	printf("moved=%d\n", moved);
}

/* Change @buf's mapping as @ch says; afterwards it reads 'B'. */
static void change(char *buf, size_t len, enum change ch)
{
	switch (ch) {
	case CH_REUSE:
		if (munmap(buf, len))
			die("munmap");
		(void)map_at(buf, len, 'B');
		break;
	case CH_REUSE_SYSCALL: /* past libc: libfabric's memhooks monitor does not see it */
		if (syscall(SYS_munmap, buf, len))
			die("munmap");
		if ((void *)syscall(SYS_mmap, buf, len, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != buf)
			die("mmap");
		memset(buf, 'B', len);
		break;
	case CH_MPROTECT:
		if (mprotect(buf, len, PROT_READ) || mprotect(buf, len, PROT_READ | PROT_WRITE))
			die("mprotect");
		memset(buf, 'B', len);
		break;
	case CH_MOVE:
		move_all(buf, len);
		memset(buf, 'B', len);
		break;
	}
}

/*
 * The first MR stays open across the change, so a cache hit returns it
 * (same key) and a miss is a new registration (a key no live MR has).
 */
static void one(enum change ch)
{
	size_t len = NPAGES * ps;
	char *buf = map_at(NULL, len, 'A'), *dst = map_at(NULL, len, 0);
	struct fid_mr *dmr = reg(dst, len, FI_READ), *mr1, *mr2;
	size_t stale = 0;

	mr1 = reg(buf, len, FI_REMOTE_READ);
	rma_read(dst, dmr, buf, len, fi_mr_key(mr1));
	if (dst[0] != 'A' || dst[len - 1] != 'A') {
		fprintf(stderr, "consumers-libfabric: the first RMA read did not return the buffer\n");
		exit(1);
	}
	change(buf, len, ch);
	mr2 = reg(buf, len, FI_REMOTE_READ);
	memset(dst, 0, len);
	rma_read(dst, dmr, buf, len, fi_mr_key(mr2));
	for (size_t i = 0; i < len; i++)
		stale += dst[i] != 'B';
	printf("miss=%d stale=%d stale_bytes=%zu\n", fi_mr_key(mr2) != fi_mr_key(mr1), stale != 0, stale);
	fi_close(&mr2->fid);
	fi_close(&mr1->fid);
	fi_close(&dmr->fid);
	munmap(buf, len);
	munmap(dst, len);
}

/* The restart mode (see the top of the file). */
static void restart(void)
{
	size_t len = NPAGES * ps, stale = 0;
	char *buf = map_at(NULL, len, 'A'), *dst = map_at(NULL, len, 0), line[16];
	struct fid_mr *dmr = reg(dst, len, FI_READ), *mr1, *mr2, *mr3;

	mr1 = reg(buf, len, FI_REMOTE_READ);
	printf("registered\n");
	if (!fgets(line, sizeof(line), stdin))
		die("stdin");
	mr2 = reg(buf, len, FI_REMOTE_READ);
	change(buf, len, CH_REUSE_SYSCALL);
	mr3 = reg(buf, len, FI_REMOTE_READ);
	rma_read(dst, dmr, buf, len, fi_mr_key(mr3));
	for (size_t i = 0; i < len; i++)
		stale += dst[i] != 'B';
	printf("resync_miss=%d miss=%d stale=%d\n", fi_mr_key(mr2) != fi_mr_key(mr1),
	       fi_mr_key(mr3) != fi_mr_key(mr2), stale != 0);
	fi_close(&mr3->fid);
	fi_close(&mr2->fid);
	fi_close(&mr1->fid);
	fi_close(&dmr->fid);
	munmap(buf, len);
	munmap(dst, len);
}

/* @n registrations of distinct 64 KiB buffers, each unmapped after its MR is closed. */
static void loop(unsigned long n)
{
	size_t len = 16 * ps;
	uint64_t t0 = now_ns(), dt, t_reg = 0, t_unmap = 0, max_reg = 0, max_unmap = 0;

	for (unsigned long i = 0; i < n; i++) {
		char *p = map_at(NULL, len, (char)i);
		uint64_t a = now_ns(), b, c;
		struct fid_mr *mr = reg(p, len, FI_REMOTE_READ);

		fi_close(&mr->fid);
		b = now_ns();
		if (munmap(p, len))
			die("munmap");
		c = now_ns();
		t_reg += b - a;
		t_unmap += c - b;
		max_reg = b - a > max_reg ? b - a : max_reg;
		max_unmap = c - b > max_unmap ? c - b : max_unmap;
	}
	dt = now_ns() - t0;
	printf("registrations=%lu ns=%llu regs_per_sec=%.0f\n", n, (unsigned long long)dt,
	       dt ? (double)n * 1e9 / (double)dt : 0.0);
	printf("reg_ns_avg=%llu reg_ns_max=%llu munmap_ns_avg=%llu munmap_ns_max=%llu\n",
	       (unsigned long long)(t_reg / (n ? n : 1)), (unsigned long long)max_reg,
	       (unsigned long long)(t_unmap / (n ? n : 1)), (unsigned long long)max_unmap);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "reuse") && strcmp(mode, "reuse-syscall") && strcmp(mode, "mprotect") &&
	    strcmp(mode, "move") && strcmp(mode, "loop") && strcmp(mode, "restart")) {
		fprintf(stderr,
			"usage: consumers-libfabric reuse|reuse-syscall|mprotect|move|loop|restart [N]\n");
		return 2;
	}
	open_all();
	if (!strcmp(mode, "reuse"))
		one(CH_REUSE);
	else if (!strcmp(mode, "reuse-syscall"))
		one(CH_REUSE_SYSCALL);
	else if (!strcmp(mode, "mprotect"))
		one(CH_MPROTECT);
	else if (!strcmp(mode, "move"))
		one(CH_MOVE);
	else if (!strcmp(mode, "restart"))
		restart();
	else
		loop(n);
	close_all();
	return 0;
}
