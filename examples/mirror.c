/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mirror: a stand-in accelerator runtime.  It keeps a "device page table"
 * (dev[i] = physical frame of page i of the watched range, from
 * /proc/PID/pagemap), fills it inside mmn_read_begin()/mmn_read_retry() like
 * a driver using mmu_interval_read_begin/retry, and drops entries in its
 * invalidate callback before acking.
 *
 * --check keeps verifying, while quiescent, that no mirrored entry is stale:
 * it snapshots the page table inside read_begin/read_retry and compares; a
 * mismatch while mmn_read_retry() reports no collision is a stale entry (a
 * window in which the device could use a page the process no longer has).
 * Each one is counted once and dropped.  With mmn.ko the figure must be 0;
 * with the userfaultfd source it measures that source's blind spots
 * (events after the fact, no mprotect/COW/migration, new mappings unwatched).
 * An entry whose address has no VMA at the moment of a check is judged at a
 * later check (see check_once()); "holes" counts them and "holes_dropped"
 * those their invalidation dropped afterwards.
 *
 *   mirror [--check] [--duration S] [--strict] [--migrate] [--socket PATH]
 *          [--pid PID [--range ADDR:LEN]] [--workload-only] [--pages N] [--seed N]
 *          [--ops mmap,munmap,madvise,mremap,mprotect,write] [--verbose] [--announce]
 *
 * --migrate moves random runs of the arena's pages to the other NUMA node
 * with move_pages() every 50 ms (with --pid, the target's pages, from a
 * thread of mirror); with a single node it writes compact_memory once a
 * second instead (root only).
 *
 * Without --pid it mirrors its own workload thread (random mmap, munmap,
 * madvise, mremap, mprotect and writes over an arena).  --pid mirrors
 * another process (module only); without --range the largest private
 * writable mapping of PID is used.  --workload-only just runs the workload
 * and prints "arena ADDR:LEN" (a target for another mirror --pid).
 *
 * --announce prints "mirror: running" once everything is set up and the
 * threads are started, so that a script can change the conditions of a
 * running mirror (a memory cgroup's limit, say) without guessing when its
 * setup is over: the setup must not run under those conditions.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/mempolicy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#define PFN_MASK ((UINT64_C(1) << 55) - 1)
#define PRESENT	 (UINT64_C(1) << 63)
#define HOLE	 (UINT64_C(1) << 62) /* our marker: no VMA at this address (raw entry 0) */
#define NEVENTS	 16
#define NSTALE	 8 /* stale entries described with --verbose */

static struct {
	bool check, strict, migrate, workload_only, verbose, announce;
	int duration;
	pid_t pid;
	uint64_t start, len;
	unsigned pages;
	unsigned seed;
	unsigned ops;	     /* bit per workload op */
	unsigned extra_subs; /* page-sized subscriptions held besides the mirror's own */
	const char *socket;
} opt = {.duration = 10, .pages = 1024, .seed = 1, .ops = ~0u};

static const char *const op_names[] = {"mmap", "munmap", "madvise", "mremap", "mprotect", "write"};

static const char *const event_names[NEVENTS] = {
	"unmap",   "clear",	"protection_vma", "protection_page", "soft_dirty", "release",
	"migrate", "exclusive", "remove",	  "remap",	     "resync",
};

struct stats {
	unsigned long ops, mirrored, retries, invalidations, dropped, resyncs, releases, checks, stale;
	unsigned long holes;	     /* entries found with no VMA at their address: judged later */
	unsigned long holes_dropped; /* of those, dropped by their invalidation afterwards */
	unsigned long migrated;	     /* pages move_pages() put on the other node */
	unsigned long compactions;
	unsigned long events[NEVENTS];
};

struct stale_note {
	unsigned page;
	uint64_t was, now, seq_commit, seq_check;
};

/*
 * Everything the invalidate callback touches, and everything the driver
 * touches while holding the driver lock (the driver thread's stack too),
 * lives in locked, pre-faulted memory with its own memory policy, so that
 * NUMA balancing never turns its PTEs into hinting faults (task_numa_work()
 * skips a VMA whose policy lacks MPOL_F_MOF; mlock alone does not stop it).
 * A fault there would need the mmap lock that the workload may hold while
 * the kernel waits for our ack (the self-subscription rule of <mmn/mmn.h>).
 * The callback reaches it through userdata, never through a global in .bss.
 */
struct shared {
	pthread_mutex_t lock; /* the driver lock: callback vs commit and check */
	size_t ps;
	uint64_t base; /* watched range */
	unsigned npages;
	volatile int stop;
	struct mmn_sub *sub;
	struct stats st;
	unsigned nnotes;
	unsigned nextra; /* --extra-subs held */
	struct stale_note notes[NSTALE];
	uint64_t *dev;	/* device page table: pagemap entry (PRESENT | pfn) or 0 */
	uint64_t *cseq; /* read_begin value each dev entry was committed under */
	uint64_t *tmp;	/* the driver's pagemap buffer */
	uint8_t *hole;	/* the entry was seen over a hole and is not judged yet */
};

static struct shared *sh;
static size_t sh_len;
static int pagemap_fd;
static pid_t pagemap_pid;
static bool two_nodes;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Locked, pre-faulted anonymous memory outside NUMA balancing. */
static void *pinned_alloc(size_t len)
{
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	/* MPOL_LOCAL has no MPOL_F_MOF: task_numa_work() skips the VMA.  ENOSYS without NUMA. */
	if ((syscall(SYS_mbind, m, len, MPOL_LOCAL, NULL, 0UL, 0U) < 0 && errno != ENOSYS) ||
	    (mlock(m, len) < 0 && errno != EPERM && errno != ENOMEM)) {
		munmap(m, len);
		return NULL;
	}
	memset(m, 0, len);
	return m;
}

/* A thread whose stack is pinned memory: it may hold the driver lock. */
static int start_pinned_thread(pthread_t *t, void *(*fn)(void *))
{
	const size_t len = 256 * 1024;
	pthread_attr_t a;
	void *stack = pinned_alloc(len);
	int r;

	if (!stack)
		return -errno;
	pthread_attr_init(&a);
	r = pthread_attr_setstack(&a, stack, len);
	if (!r)
		r = pthread_create(t, &a, fn, NULL);
	pthread_attr_destroy(&a);
	return -r;
}

/* The shared block and its arrays: one pinned mapping. */
static int shared_create(uint64_t base, unsigned npages, size_t ps)
{
	size_t head = (sizeof(struct shared) + 63) & ~(size_t)63;
	size_t arr = (size_t)npages * sizeof(uint64_t);
	char *m;

	sh_len = (head + 3 * arr + npages + ps - 1) & ~(ps - 1);
	m = pinned_alloc(sh_len);
	if (!m)
		return -errno;
	sh = (struct shared *)m;
	pthread_mutex_init(&sh->lock, NULL);
	sh->ps = ps;
	sh->base = base;
	sh->npages = npages;
	sh->dev = (uint64_t *)(m + head);
	sh->cseq = (uint64_t *)(m + head + arr);
	sh->tmp = (uint64_t *)(m + head + 2 * arr);
	sh->hole = (uint8_t *)(m + head + 3 * arr);
	return 0;
}

/*
 * Pagemap entries of pages [i, i + n): PRESENT | pfn; 0 for a page not
 * present inside a VMA; HOLE where there is no VMA at all.  pagemap tells
 * the two apart: every entry inside a VMA carries PM_SOFT_DIRTY (bit 55)
 * while the VMA has VM_SOFTDIRTY, which every new mapping gets and nothing
 * here clears; a hole reads as 0.
 */
static int read_pagemap(unsigned i, unsigned n, uint64_t *out)
{
	ssize_t want = (ssize_t)(n * sizeof(uint64_t));
	ssize_t got =
		pread(pagemap_fd, out, (size_t)want, (off_t)((sh->base / sh->ps + i) * sizeof(uint64_t)));

	if (got != want)
		return -1;
	for (unsigned k = 0; k < n; k++)
		out[k] = out[k] & PRESENT ? PRESENT | (out[k] & PFN_MASK) : out[k] ? 0 : HOLE;
	return 0;
}

/*
 * The invalidate callback runs on the library's fault-free thread and
 * touches only the shared block (through @ud) and its own stack.
 */
static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	struct shared *m = ud;
	uint64_t a = r->start < m->base ? 0 : (r->start - m->base) / m->ps;
	uint64_t b = r->end <= m->base ? 0 : (r->end - m->base + m->ps - 1) / m->ps;

	if (b > m->npages)
		b = m->npages;
	pthread_mutex_lock(&m->lock);
	for (uint64_t i = a; i < b; i++) {
		if (m->dev[i])
			m->st.dropped++;
		if (m->hole[i])
			m->st.holes_dropped++;
		m->dev[i] = 0;
		m->hole[i] = 0;
	}
	m->st.invalidations++;
	m->st.events[(unsigned)r->event < NEVENTS ? (unsigned)r->event : NEVENTS - 1]++;
	if (r->event == MMN_EVENT_RESYNC)
		m->st.resyncs++;
	pthread_mutex_unlock(&m->lock);
	return 0; /* dropped before the ack: the library acks now */
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	struct shared *m = ud;

	pthread_mutex_lock(&m->lock);
	memset(m->dev, 0, m->npages * sizeof(*m->dev));
	m->st.releases++;
	pthread_mutex_unlock(&m->lock);
	m->stop = 1;
}

/* Mirror pages [i, i + n) the way a driver does: build, then commit unless collided. */
static void mirror_pages(struct shared *m, unsigned i, unsigned n)
{
	for (int attempt = 0; attempt < 100 && !m->stop; attempt++) {
		uint64_t seq = mmn_read_begin(m->sub);

		if (read_pagemap(i, n, m->tmp) < 0)
			return;
		pthread_mutex_lock(&m->lock);
		if (mmn_read_retry(m->sub, seq)) {
			pthread_mutex_unlock(&m->lock);
			m->st.retries++;
			continue;
		}
		for (unsigned k = 0; k < n; k++)
			if ((m->tmp[k] & PRESENT) && !m->dev[i + k]) {
				m->dev[i + k] = m->tmp[k];
				m->cseq[i + k] = seq;
				m->st.mirrored++;
			}
		pthread_mutex_unlock(&m->lock);
		return;
	}
}

/*
 * One check of the whole table; stale entries are counted once and dropped.
 *
 * A mirrored page whose address has no VMA any more is not judged yet:
 * munmap() detaches the VMAs and downgrades the mmap lock before it zaps
 * the page tables and calls the notifiers (6.1 mm/mmap.c
 * do_mas_align_munmap), so pagemap shows a hole while the page is still
 * mapped and its invalidation has not started.  Such an entry stays in the
 * table: the invalidation drops it, or a later check (once the address is
 * mapped again, which the workload does at once) finds it stale.
 */
static void check_once(struct shared *m)
{
	uint64_t seq = mmn_read_begin(m->sub);
	uint64_t *snap = m->tmp;

	if (read_pagemap(0, m->npages, snap) < 0)
		return;
	pthread_mutex_lock(&m->lock);
	if (!mmn_read_retry(m->sub, seq)) {
		for (unsigned i = 0; i < m->npages; i++) {
			if (!m->dev[i] || m->dev[i] == snap[i])
				continue;
			if (snap[i] == HOLE) {
				if (!m->hole[i])
					m->st.holes++;
				m->hole[i] = 1;
				continue;
			}
			m->hole[i] = 0;
			if (m->nnotes < NSTALE)
				m->notes[m->nnotes++] = (struct stale_note){
					.page = i,
					.was = m->dev[i],
					.now = snap[i],
					.seq_commit = m->cseq[i],
					.seq_check = seq,
				};
			m->dev[i] = 0;
			m->st.stale++;
		}
	}
	m->st.checks++;
	pthread_mutex_unlock(&m->lock);
}

static void *driver_main(void *arg)
{
	struct shared *m = sh; /* never the global under the lock: .bss is not pinned */
	unsigned r = opt.seed * 7919u;

	/*
	 * This thread holds the lock the invalidate callback takes.  NUMA
	 * balancing has a thread of the process sample its mappings on the
	 * way back from a timer interrupt, at any instruction, and that
	 * protection change waits for our own blocking ack: under the lock,
	 * this thread would wait for a callback that waits for it, until the
	 * deadline.  A thread whose policy lacks MPOL_F_MOF skips, when it
	 * samples, every mapping without a policy of its own (<mmn/mmn.h>).
	 */
	if (syscall(SYS_set_mempolicy, MPOL_LOCAL, NULL, 0UL) < 0 && errno != ENOSYS) {
		perror("set_mempolicy");
		m->stop = 1;
		return NULL;
	}

	while (!m->stop) {
		unsigned n = 1 + rand_r(&r) % 16, i = rand_r(&r) % m->npages;

		if (i + n > m->npages)
			n = m->npages - i;
		mirror_pages(m, i, n);
		if (opt.check && rand_r(&r) % 8 == 0)
			check_once(m);
	}
	return NULL;
}

/*
 * Page migration: with two NUMA nodes, move_pages() a random run of up to 16
 * pages of the arena of @pid (0: ourselves) to the other node; otherwise ask
 * for compaction (root only), which migrates whatever it likes.
 */
static void migrate_some(pid_t pid, unsigned *r)
{
	static int node;
	void *pages[16];
	int nodes[16], status[16];
	unsigned n = 1 + rand_r(r) % 16, i = rand_r(r) % sh->npages;

	if (!two_nodes) {
		int fd = open("/proc/sys/vm/compact_memory", O_WRONLY | O_CLOEXEC);

		if (fd >= 0) {
			if (write(fd, "1", 1) == 1)
				sh->st.compactions++;
			close(fd);
		}
		return;
	}
	if (i + n > sh->npages)
		n = sh->npages - i;
	node ^= 1;
	for (unsigned k = 0; k < n; k++) {
		pages[k] = (void *)(uintptr_t)(sh->base + (uint64_t)(i + k) * sh->ps);
		nodes[k] = node;
		status[k] = -1;
	}
	if (syscall(SYS_move_pages, (int)pid, (unsigned long)n, pages, nodes, status, MPOL_MF_MOVE) < 0)
		return;
	for (unsigned k = 0; k < n; k++)
		if (status[k] == node)
			sh->st.migrated++;
}

/* Random page-table changes over [base, base + npages pages). */
static void workload_op(unsigned *r, char *dst)
{
	size_t ps = sh->ps;
	unsigned n = 1 + rand_r(r) % 16, i = rand_r(r) % sh->npages;
	char *p = (char *)(uintptr_t)sh->base;

	if (i + n > sh->npages)
		n = sh->npages - i;
	p += (size_t)i * ps;
	unsigned op;

	do
		op = rand_r(r) % 8;
	while (!(opt.ops & (1u << (op > 5 ? 5 : op))));
	switch (op) {
	case 0: /* replace with a fresh mapping (the old pages are unmapped) */
		mmap(p, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		break;
	case 1: /* punch a hole, then refill it */
		munmap(p, n * ps);
		mmap(p, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		break;
	case 2:
		madvise(p, n * ps, MADV_DONTNEED);
		break;
	case 3: /* move pages out and back (two remaps: both ends change) */
		if (mremap(p, n * ps, n * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED)
			mremap(dst, n * ps, n * ps, MREMAP_MAYMOVE | MREMAP_FIXED, p);
		else
			mmap(p, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			     0);
		break;
	case 4:
		mprotect(p, n * ps, PROT_READ);
		mprotect(p, n * ps, PROT_READ | PROT_WRITE);
		break;
	default: /* write: fault pages in (new frames, COW of the zero page) */
		mprotect(p, n * ps, PROT_READ | PROT_WRITE);
		for (unsigned k = 0; k < n; k++)
			p[k * ps] = (char)rand_r(r);
		break;
	}
	sh->st.ops++;
}

static void *workload_main(void *arg)
{
	char *dst = mmap(NULL, 16 * sh->ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct timespec pace = {.tv_nsec = 50 * 1000};
	unsigned r = opt.seed;
	int64_t last_migrate = now_ms();

	while (!sh->stop) {
		workload_op(&r, dst);
		if (opt.migrate && now_ms() - last_migrate >= (two_nodes ? 50 : 1000)) {
			migrate_some(0, &r);
			last_migrate = now_ms();
		}
		nanosleep(&pace, NULL);
	}
	return NULL;
}

/* mirror --pid --migrate: move the target's pages between the nodes from here. */
static void *migrator_main(void *arg)
{
	struct timespec pace = {.tv_nsec = 50 * 1000 * 1000};
	unsigned r = opt.seed * 31u;

	while (!sh->stop) {
		migrate_some(opt.pid, &r);
		nanosleep(&pace, NULL);
	}
	return NULL;
}

static int pick_range(pid_t pid)
{
	char path[64], line[512];
	uint64_t best = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &a, &b, perms) == 3 && perms[0] == 'r' && perms[1] == 'w' &&
		    perms[3] == 'p' && !strchr(line, '[') && b - a > best) {
			best = b - a;
			opt.start = a;
			opt.len = b - a;
		}
	}
	fclose(f);
	return best ? 0 : -ENOENT;
}

static void usage(FILE *f, const char *argv0)
{
	fprintf(f,
		"usage: %s [--check] [--duration S] [--strict] [--migrate] [--socket PATH]\n"
		"          [--pid PID [--range ADDR:LEN]] [--workload-only] [--pages N] [--seed N]\n"
		"          [--ops mmap,munmap,madvise,mremap,mprotect,write] [--extra-subs N] [--verbose]\n"
		"          [--announce]\n"
		"\n"
		"  --announce  print \"mirror: running\" once set up with the threads started\n"
		"  --extra-subs N  also hold N page-sized non-blocking subscriptions of a\n"
		"              mapping of our own (not --pid's), as a registration cache would:\n"
		"              the check runs with them in mmnd's index of this process\n"
		"  --migrate   move pages between NUMA nodes (move_pages), or compact memory\n"
		"              with a single node; with --pid the target's pages are moved\n"
		"  --strict    exit 1 if a stale entry was seen\n"
		"  --verbose   describe the first stale entries and the events by type\n",
		argv0);
}

static int parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"check", no_argument, NULL, 'c'},	  {"duration", required_argument, NULL, 'd'},
		{"strict", no_argument, NULL, 'S'},	  {"migrate", no_argument, NULL, 'm'},
		{"socket", required_argument, NULL, 's'}, {"pid", required_argument, NULL, 'p'},
		{"range", required_argument, NULL, 'r'},  {"workload-only", no_argument, NULL, 'w'},
		{"pages", required_argument, NULL, 'n'},  {"seed", required_argument, NULL, 'e'},
		{"ops", required_argument, NULL, 'o'},	  {"verbose", no_argument, NULL, 'v'},
		{"extra-subs", required_argument, NULL, 'x'},
		{"announce", no_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},	  {0},
	};
	int o;

	while ((o = getopt_long(argc, argv, "cd:Sms:p:r:wn:e:o:x:vah", longopts, NULL)) != -1) {
		switch (o) {
		case 'c':
			opt.check = true;
			break;
		case 'd':
			opt.duration = atoi(optarg);
			break;
		case 'S':
			opt.strict = true;
			break;
		case 'm':
			opt.migrate = true;
			break;
		case 's':
			opt.socket = optarg;
			break;
		case 'p':
			opt.pid = atoi(optarg);
			break;
		case 'w':
			opt.workload_only = true;
			break;
		case 'v':
			opt.verbose = true;
			break;
		case 'a':
			opt.announce = true;
			break;
		case 'n':
			opt.pages = (unsigned)atoi(optarg);
			break;
		case 'x':
			opt.extra_subs = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'e':
			opt.seed = (unsigned)atoi(optarg);
			break;
		case 'o':
			opt.ops = 0;
			for (char *t = strtok(optarg, ","); t; t = strtok(NULL, ","))
				for (unsigned k = 0; k < sizeof(op_names) / sizeof(op_names[0]); k++)
					if (!strcmp(t, op_names[k]))
						opt.ops |= 1u << k;
			if (!opt.ops) {
				usage(stderr, argv[0]);
				return -1;
			}
			break;
		case 'r':
			if (sscanf(optarg, "%" SCNx64 ":%" SCNx64, &opt.start, &opt.len) != 2) {
				usage(stderr, argv[0]);
				return -1;
			}
			break;
		case 'h':
			usage(stdout, argv[0]);
			exit(0);
		default:
			usage(stderr, argv[0]);
			return -1;
		}
	}
	if (opt.duration <= 0 || opt.pages == 0 || opt.pid < 0 || (opt.pid && opt.extra_subs)) {
		usage(stderr, argv[0]);
		return -1;
	}
	return 0;
}

static void print_report(uint64_t caps, int64_t elapsed_ms)
{
	const struct stats *t = &sh->st;

	printf("mirror: source=%s target=%s duration=%ds pages=%u ops=%lu mirrored=%lu retries=%lu "
	       "invalidations=%lu dropped=%lu resyncs=%lu releases=%lu checks=%lu stale=%lu "
	       "holes=%lu holes_dropped=%lu migrated=%lu compactions=%lu extra_subs=%u elapsed_ms=%" PRId64 "\n",
	       caps & MMN_CAP_SELF_ONLY		 ? "uffd"
	       : caps & MMN_CAP_ACKS_HOLD_KERNEL ? "kmod"
						 : "other",
	       opt.pid ? "pid" : "self", opt.duration, sh->npages, t->ops, t->mirrored, t->retries,
	       t->invalidations, t->dropped, t->resyncs, t->releases, t->checks, t->stale, t->holes,
	       t->holes_dropped, t->migrated, t->compactions, sh->nextra, elapsed_ms);
	if (!opt.verbose)
		return;
	printf("mirror: events");
	for (unsigned k = 0; k < NEVENTS; k++)
		if (t->events[k])
			printf(" %s=%lu", event_names[k] ? event_names[k] : "other", t->events[k]);
	printf("\n");
	for (unsigned k = 0; k < sh->nnotes; k++) {
		const struct stale_note *n = &sh->notes[k];

		printf("mirror: stale page %u (0x%" PRIx64 "): mirrored pfn 0x%" PRIx64
		       " under seq 0x%" PRIx64 ", pagemap %s0x%" PRIx64 " at check seq 0x%" PRIx64 "\n",
		       n->page, sh->base + (uint64_t)n->page * sh->ps, n->was & PFN_MASK, n->seq_commit,
		       n->now ? "pfn " : "not present ", n->now & PFN_MASK, n->seq_check);
	}
}

/* The range to mirror: our own new mapping, or one of --pid's; sets *@base, *@npages. */
static int setup_arena(size_t ps, uint64_t *base, unsigned *npages)
{
	int r;

	if (!opt.pid) {
		void *a = mmap(NULL, opt.pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		if (a == MAP_FAILED) {
			perror("mmap");
			return -1;
		}
		memset(a, 1, opt.pages * ps);
		opt.start = (uintptr_t)a;
		opt.len = opt.pages * ps;
	} else if (!opt.len && pick_range(opt.pid) < 0) {
		fprintf(stderr, "No private writable mapping found in pid %d\n", (int)opt.pid);
		return -1;
	}
	*base = opt.start & ~(uint64_t)(ps - 1);
	*npages = (unsigned)((opt.start + opt.len - *base + ps - 1) / ps);
	r = shared_create(*base, *npages, ps);
	if (r < 0) {
		fprintf(stderr, "Failed to set up the device table: %s\n", strerror(-r));
		return -1;
	}
	return 0;
}

/* --workload-only: print the arena, run the workload for --duration, report. */
static int workload_only(uint64_t base, unsigned npages, size_t ps)
{
	pthread_t w;

	printf("arena %" PRIx64 ":%" PRIx64 "\n", base, (uint64_t)npages * ps);
	fflush(stdout);
	pthread_create(&w, NULL, workload_main, NULL);
	for (int64_t end = now_ms() + opt.duration * 1000LL; now_ms() < end;)
		sleep(1);
	sh->stop = 1;
	pthread_join(w, NULL);
	printf("workload: ops=%lu migrated=%lu compactions=%lu\n", sh->st.ops, sh->st.migrated,
	       sh->st.compactions);
	return 0;
}

/* The watched process's /proc/PID/pagemap, for --check; 0 or -1. */
static int open_pagemap(void)
{
	char path[64];

	pagemap_pid = opt.pid ? opt.pid : getpid();
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pagemap_pid);
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0) {
		fprintf(stderr, "Failed to open %s: %m\n", path);
		return -1;
	}
	if (geteuid() != 0)
		fprintf(stderr,
			"warning: not root, pagemap hides frame numbers: --check sees presence only\n");
	return 0;
}

static int on_extra(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	(void)s, (void)r, (void)ud;
	return 0;
}

/*
 * --extra-subs: page-sized non-blocking subscriptions of a mapping of our
 * own next to the arena (never touched by the workload), as a registration
 * cache holds them: mmnd looks every invalidation of the arena up among
 * them, in the same target's index.  0 or -errno.
 */
static int subscribe_extra(struct mmn_client *c, size_t ps)
{
	static const struct mmn_sub_opts o = {
		.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_extra};
	struct mmn_sub_request *req;
	char *m;
	int r;

	if (!opt.extra_subs)
		return 0;
	m = mmap(NULL, (size_t)opt.extra_subs * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	req = calloc(opt.extra_subs, sizeof(*req));
	if (m == MAP_FAILED || !req) {
		free(req);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < opt.extra_subs; i++)
		req[i] = (struct mmn_sub_request){.start = (uintptr_t)m + (uint64_t)i * ps, .length = ps, .opts = &o};
	r = mmn_subscribe_many(c, req, opt.extra_subs);
	for (unsigned i = 0; r >= 0 && i < opt.extra_subs; i++)
		if (req[i].error)
			r = req[i].error;
	free(req);
	if (r >= 0)
		sh->nextra = opt.extra_subs;
	return r < 0 ? r : 0;
}

int main(int argc, char **argv)
{
	struct mmn_sub_opts so = {.size = sizeof(so), .flags = MMN_SUB_BLOCKING};
	pthread_t driver, workload, migrator;
	struct mmn_client *c;
	uint64_t base, caps;
	int64_t started, elapsed;
	unsigned npages;
	size_t ps;
	int r;

	if (parse(argc, argv) < 0)
		return 1;
	ps = (size_t)sysconf(_SC_PAGESIZE);
	two_nodes = access("/sys/devices/system/node/node1", F_OK) == 0;
	if (setup_arena(ps, &base, &npages) < 0)
		return 1;
	if (opt.workload_only)
		return workload_only(base, npages, ps);
	if (open_pagemap() < 0)
		return 1;

	r = mmn_connect(opt.socket, &c);
	if (r < 0) {
		fprintf(stderr, "Failed to connect to mmnd: %s\n", mmn_strerror(r));
		return 1;
	}
	caps = mmn_capabilities(c);
	r = mmn_start_thread(c);
	if (r < 0) {
		fprintf(stderr, "Failed to start the dispatch thread: %s\n", mmn_strerror(r));
		return 1;
	}
	so.invalidate = on_invalidate;
	so.release = on_release;
	so.userdata = sh;
	r = mmn_subscribe(c, opt.pid, base, (uint64_t)npages * ps, &so, &sh->sub);
	if (r < 0) {
		fprintf(stderr, "Failed to subscribe to pid %d [0x%" PRIx64 ", +0x%" PRIx64 "): %s\n",
			(int)opt.pid, base, (uint64_t)npages * ps, mmn_strerror(r));
		return 1;
	}
	r = subscribe_extra(c, ps);
	if (r < 0) {
		fprintf(stderr, "Failed to hold %u extra subscriptions: %s\n", opt.extra_subs, mmn_strerror(r));
		return 1;
	}
	started = now_ms();
	r = start_pinned_thread(&driver, driver_main);
	if (r < 0) {
		fprintf(stderr, "Failed to start the driver thread: %s\n", strerror(-r));
		return 1;
	}
	if (!opt.pid)
		pthread_create(&workload, NULL, workload_main, NULL);
	else if (opt.migrate)
		pthread_create(&migrator, NULL, migrator_main, NULL);
	if (opt.announce) {
		/* flushed now: stdout is a pipe, and the reader acts on this line */
		printf("mirror: running\n");
		fflush(stdout);
	}
	for (int64_t end = now_ms() + opt.duration * 1000LL; now_ms() < end && !sh->stop;) {
		struct timespec t = {.tv_nsec = 100 * 1000 * 1000};

		nanosleep(&t, NULL);
	}
	elapsed = now_ms() - started;
	sh->stop = 1;
	pthread_join(driver, NULL);
	if (!opt.pid)
		pthread_join(workload, NULL);
	else if (opt.migrate)
		pthread_join(migrator, NULL);
	mmn_unsubscribe(sh->sub);
	mmn_disconnect(c); /* the extra subscriptions go with the client */
	print_report(caps, elapsed);
	return opt.strict && sh->st.stale ? 1 : 0;
}
