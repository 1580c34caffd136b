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
 *
 *   mirror [--check] [--duration S] [--strict] [--migrate] [--socket PATH]
 *          [--pid PID [--range ADDR:LEN]] [--workload-only] [--pages N] [--seed N]
 *          [--ops mmap,munmap,madvise,mremap,mprotect,write]
 *
 * Without --pid it mirrors its own workload thread (random mmap, munmap,
 * madvise, mremap, mprotect and writes over an arena).  --pid mirrors
 * another process (module only); without --range the largest private
 * writable mapping of PID is used.  --workload-only just runs the workload
 * and prints "arena ADDR:LEN" (a target for another mirror --pid).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#define PFN_MASK ((1ull << 55) - 1)
#define PRESENT	 (1ull << 63)

static struct {
	bool check, strict, migrate, workload_only;
	int duration;
	pid_t pid;
	uint64_t start, len;
	unsigned pages;
	unsigned seed;
	unsigned ops; /* bit per workload op */
	const char *socket;
} opt = {.duration = 10, .pages = 1024, .seed = 1, .ops = ~0u};

static const char *const op_names[] = {"mmap", "munmap", "madvise", "mremap", "mprotect", "write"};

static size_t ps;
static uint64_t base; /* watched range */
static unsigned npages;
static uint64_t *dev; /* device page table: pagemap entry (PRESENT | pfn) or 0; locked memory */
static pthread_mutex_t dev_lock = PTHREAD_MUTEX_INITIALIZER; /* the driver lock: callback vs commit */
static int pagemap_fd;
static struct mmn_sub *sub;
static volatile int stop;

static struct {
	unsigned long ops, mirrored, retries, invalidations, dropped, resyncs, releases, checks, stale;
} st;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pagemap entries of pages [i, i + n): PRESENT | pfn, or 0. */
static int read_pagemap(unsigned i, unsigned n, uint64_t *out)
{
	ssize_t want = (ssize_t)(n * sizeof(uint64_t));
	ssize_t got = pread(pagemap_fd, out, (size_t)want, (off_t)((base / ps + i) * sizeof(uint64_t)));

	if (got != want)
		return -1;
	for (unsigned k = 0; k < n; k++)
		out[k] = out[k] & PRESENT ? PRESENT | (out[k] & PFN_MASK) : 0;
	return 0;
}

/* The invalidate callback runs on the library's fault-free thread: locked memory only. */
static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	uint64_t a = r->start < base ? 0 : (r->start - base) / ps;
	uint64_t b = (r->end - base + ps - 1) / ps;

	if (b > npages)
		b = npages;
	pthread_mutex_lock(&dev_lock);
	for (uint64_t i = a; i < b; i++) {
		if (dev[i])
			st.dropped++;
		dev[i] = 0;
	}
	st.invalidations++;
	if (r->event == MMN_EVENT_RESYNC)
		st.resyncs++;
	pthread_mutex_unlock(&dev_lock);
	return 0; /* dropped before the ack: the library acks now */
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	pthread_mutex_lock(&dev_lock);
	memset(dev, 0, npages * sizeof(*dev));
	st.releases++;
	pthread_mutex_unlock(&dev_lock);
	stop = 1;
}

/* Mirror pages [i, i + n) the way a driver does: build, then commit unless collided. */
static void mirror_pages(unsigned i, unsigned n, uint64_t *tmp)
{
	for (int attempt = 0; attempt < 100 && !stop; attempt++) {
		uint64_t seq = mmn_read_begin(sub);

		if (read_pagemap(i, n, tmp) < 0)
			return;
		pthread_mutex_lock(&dev_lock);
		if (mmn_read_retry(sub, seq)) {
			pthread_mutex_unlock(&dev_lock);
			st.retries++;
			continue;
		}
		for (unsigned k = 0; k < n; k++)
			if (tmp[k] && !dev[i + k]) {
				dev[i + k] = tmp[k];
				st.mirrored++;
			}
		pthread_mutex_unlock(&dev_lock);
		return;
	}
}

/* One check of the whole table; stale entries are counted once and dropped. */
static void check_once(uint64_t *snap)
{
	uint64_t seq = mmn_read_begin(sub);
	unsigned stale = 0;

	if (read_pagemap(0, npages, snap) < 0)
		return;
	pthread_mutex_lock(&dev_lock);
	if (!mmn_read_retry(sub, seq)) {
		for (unsigned i = 0; i < npages; i++)
			if (dev[i] && dev[i] != snap[i]) {
				dev[i] = 0;
				stale++;
			}
		st.stale += stale;
	}
	st.checks++;
	pthread_mutex_unlock(&dev_lock);
}

static void *driver_main(void *arg)
{
	uint64_t *tmp = calloc(npages, sizeof(uint64_t));
	unsigned r = opt.seed * 7919u;

	while (!stop) {
		unsigned n = 1 + rand_r(&r) % 16, i = rand_r(&r) % npages;

		if (i + n > npages)
			n = npages - i;
		mirror_pages(i, n, tmp);
		if (opt.check && rand_r(&r) % 8 == 0)
			check_once(tmp);
	}
	free(tmp);
	return NULL;
}

/* Random page-table changes over [base, base + npages pages). */
static void workload_op(unsigned *r, char *dst)
{
	unsigned n = 1 + rand_r(r) % 16, i = rand_r(r) % npages;
	char *p = (char *)(uintptr_t)base;

	if (i + n > npages)
		n = npages - i;
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
	st.ops++;
}

static void *workload_main(void *arg)
{
	char *dst = mmap(NULL, 16 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct timespec pace = {.tv_nsec = 50 * 1000};
	unsigned r = opt.seed;
	int64_t last_migrate = now_ms();

	while (!stop) {
		workload_op(&r, dst);
		if (opt.migrate && now_ms() - last_migrate > 1000) {
			int fd = open("/proc/sys/vm/compact_memory", O_WRONLY | O_CLOEXEC);

			if (fd >= 0) {
				if (write(fd, "1", 1) < 0) {
					/* not root: no migration */
				}
				close(fd);
			}
			last_migrate = now_ms();
		}
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

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--check] [--duration S] [--strict] [--migrate] [--socket PATH]\n"
		"          [--pid PID [--range ADDR:LEN]] [--workload-only] [--pages N] [--seed N]\n"
		"          [--ops mmap,munmap,madvise,mremap,mprotect,write]\n",
		argv0);
}

static int parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"check", no_argument, NULL, 'c'},
		{"duration", required_argument, NULL, 'd'},
		{"strict", no_argument, NULL, 'S'},
		{"migrate", no_argument, NULL, 'm'},
		{"socket", required_argument, NULL, 's'},
		{"pid", required_argument, NULL, 'p'},
		{"range", required_argument, NULL, 'r'},
		{"workload-only", no_argument, NULL, 'w'},
		{"pages", required_argument, NULL, 'n'},
		{"seed", required_argument, NULL, 'e'},
		{"ops", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int o;

	while ((o = getopt_long(argc, argv, "cd:Sms:p:r:wn:e:o:h", longopts, NULL)) != -1) {
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
		case 'n':
			opt.pages = (unsigned)atoi(optarg);
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
				usage(argv[0]);
				return -1;
			}
			break;
		case 'r':
			if (sscanf(optarg, "%" SCNx64 ":%" SCNx64, &opt.start, &opt.len) != 2) {
				usage(argv[0]);
				return -1;
			}
			break;
		default:
			usage(argv[0]);
			return -1;
		}
	}
	if (opt.duration <= 0 || opt.pages == 0 || opt.pid < 0) {
		usage(argv[0]);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct mmn_sub_opts so = {.size = sizeof(so), .flags = MMN_SUB_BLOCKING};
	pthread_t driver, workload;
	struct mmn_client *c;
	char path[64];
	uint64_t caps;
	int r;

	if (parse(argc, argv) < 0)
		return 1;
	memset(&st, 0, sizeof(st)); /* resident before the fault-free callback touches it */
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (!opt.pid) {
		void *a = mmap(NULL, opt.pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		if (a == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		memset(a, 1, opt.pages * ps);
		opt.start = (uintptr_t)a;
		opt.len = opt.pages * ps;
	} else if (!opt.len && pick_range(opt.pid) < 0) {
		fprintf(stderr, "No private writable mapping found in pid %d\n", (int)opt.pid);
		return 1;
	}
	base = opt.start & ~(uint64_t)(ps - 1);
	npages = (unsigned)((opt.start + opt.len - base + ps - 1) / ps);
	if (opt.workload_only) {
		pthread_t w;

		printf("arena %" PRIx64 ":%" PRIx64 "\n", base, (uint64_t)npages * ps);
		fflush(stdout);
		pthread_create(&w, NULL, workload_main, NULL);
		for (int64_t end = now_ms() + opt.duration * 1000LL; now_ms() < end;)
			sleep(1);
		stop = 1;
		pthread_join(w, NULL);
		printf("workload: ops=%lu\n", st.ops);
		return 0;
	}

	dev = mmap(NULL, npages * sizeof(*dev), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (dev == MAP_FAILED ||
	    (mlock(dev, npages * sizeof(*dev)) < 0 && errno != EPERM && errno != ENOMEM)) {
		perror("device table");
		return 1;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", opt.pid ? (int)opt.pid : (int)getpid());
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0) {
		fprintf(stderr, "Failed to open %s: %m\n", path);
		return 1;
	}
	if (geteuid() != 0)
		fprintf(stderr,
			"warning: not root, pagemap hides frame numbers: --check sees presence only\n");

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
	r = mmn_subscribe(c, opt.pid, base, (uint64_t)npages * ps, &so, &sub);
	if (r < 0) {
		fprintf(stderr, "Failed to subscribe to pid %d [0x%" PRIx64 ", +0x%" PRIx64 "): %s\n",
			(int)opt.pid, base, (uint64_t)npages * ps, mmn_strerror(r));
		return 1;
	}
	pthread_create(&driver, NULL, driver_main, NULL);
	if (!opt.pid)
		pthread_create(&workload, NULL, workload_main, NULL);
	for (int64_t end = now_ms() + opt.duration * 1000LL; now_ms() < end && !stop;) {
		struct timespec t = {.tv_nsec = 100 * 1000 * 1000};

		nanosleep(&t, NULL);
	}
	stop = 1;
	pthread_join(driver, NULL);
	if (!opt.pid)
		pthread_join(workload, NULL);
	mmn_unsubscribe(sub);
	mmn_disconnect(c);
	printf("mirror: source=%s target=%s duration=%ds pages=%u ops=%lu mirrored=%lu retries=%lu "
	       "invalidations=%lu dropped=%lu resyncs=%lu releases=%lu checks=%lu stale=%lu\n",
	       caps & MMN_CAP_SELF_ONLY		 ? "uffd"
	       : caps & MMN_CAP_ACKS_HOLD_KERNEL ? "kmod"
						 : "other",
	       opt.pid ? "pid" : "self", opt.duration, npages, st.ops, st.mirrored, st.retries,
	       st.invalidations, st.dropped, st.resyncs, st.releases, st.checks, st.stale);
	return opt.strict && st.stale ? 1 : 0;
}
