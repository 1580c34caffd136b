/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/scale: mmnd and libmmn at a registration cache's load.
 *
 *   scale MMND [--source=uffd|kmod] [--sizes=1000,10000,100000,1000000|none] [--rounds=N]
 *
 * For each size n, a fresh mmnd and one client that subscribes n adjacent
 * page-sized ranges of its own memory (mmn_subscribe_many), then:
 *   subscribe     subscriptions per second, and the cost of one as a ratio
 *                 to the first size's;
 *   rss           mmnd's resident memory per subscription (bytes);
 *   delivery      madvise(MADV_DONTNEED) of a probe page with its own
 *                 subscription -> its invalidate callback, with the n others
 *                 on the same target: median, p99, max, as ratios to the
 *                 first size's median and to the floor below;
 *   unsubscribe   per second (mmn_unsubscribe_many).
 * Then munmap of 1,000 pages covered by 1,000 page subscriptions against
 * the same munmap covered by one subscription, blocking and non-blocking,
 * the two taken in turns.
 *
 * MMN_BENCH_PERF_CTL: see perf_ctl() below.
 *
 * Floors, measured in the same run: with the uffd source a raw userfaultfd
 * reader thread (madvise -> its read() returns the REMOVE event); with the
 * kmod source a munmap with no subscription.  This machine is shared and
 * noisy: read the ratios, not the absolute figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mmn/mmn.h>

#include "mmnd-run.h"
#include "samples.h"
#include "procstat.h"

#define PAGE	   4096UL
#define MAX_SIZES  8
#define MUNMAP_SUBS 1000
/*
 * Munmaps per side of the munmap phase, at least: a median of a few dozen
 * moved by a tenth between runs of the guest (TCG on a shared machine).
 */
#define MUNMAP_ROUNDS_MIN 200


/* A delivery: the time a callback (or the raw reader) saw it, and a count to wait on. */
struct mark {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t count, at_ns;
};

static struct mark probe = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void mark_hit(struct mark *m)
{
	uint64_t t = samples_now_ns();

	pthread_mutex_lock(&m->lock);
	m->at_ns = t;
	m->count++;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* Wait (at most 10 s) for the delivery after @seen; its time, or 0 on timeout. */
static uint64_t mark_wait(struct mark *m, uint64_t seen)
{
	struct timespec dl;
	uint64_t at = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&m->lock);
	while (m->count == seen && pthread_cond_timedwait(&m->cond, &m->lock, &dl) == 0)
		;
	if (m->count != seen)
		at = m->at_ns;
	pthread_mutex_unlock(&m->lock);
	return at;
}

static uint64_t mark_count(struct mark *m)
{
	uint64_t c;

	pthread_mutex_lock(&m->lock);
	c = m->count;
	pthread_mutex_unlock(&m->lock);
	return c;
}

static int on_probe(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	(void)s;
	if (r->event != MMN_EVENT_RESYNC)
		mark_hit(ud);
	return 0;
}

static int on_quiet(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	(void)s, (void)r, (void)ud;
	return 0;
}

/*
 * Time @rounds MADV_DONTNEEDs of @page until @m records the delivery;
 * samples in @v.  The page is not touched in between: the raw reader's
 * registration would turn that into a fault nobody resolves, and an
 * madvise is reported whether or not the page is present.  0, or -ETIMEDOUT.
 */
static int time_deliveries(char *page, struct mark *m, uint64_t *v, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		uint64_t seen = mark_count(m), t0, at;

		t0 = samples_now_ns();
		madvise((void *)page, PAGE, MADV_DONTNEED);
		at = mark_wait(m, seen);
		if (!at)
			return -ETIMEDOUT;
		v[i] = at - t0;
	}
	return 0;
}

/* The raw userfaultfd reader: one thread reading REMOVE events of one page. */
struct raw_reader {
	int uffd, stop_fd[2];
	pthread_t thread;
	struct mark m;
};

static void *raw_reader_main(void *arg)
{
	struct raw_reader *rr = arg;
	struct pollfd p[2] = {{.fd = rr->uffd, .events = POLLIN}, {.fd = rr->stop_fd[0], .events = POLLIN}};
	struct uffd_msg msg;

	while (poll(p, 2, -1) >= 0 && !(p[1].revents & POLLIN))
		if ((p[0].revents & POLLIN) && read(rr->uffd, &msg, sizeof(msg)) == sizeof(msg) &&
		    msg.event == UFFD_EVENT_REMOVE)
			mark_hit(&rr->m);
	return NULL;
}

/* The floor of the uffd source: madvise -> a raw reader has the event.  0 or -errno. */
static int floor_uffd(int rounds, struct samples *out)
{
	struct raw_reader rr = {.m = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}};
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = {.range = {(uintptr_t)page, PAGE}, .mode = UFFDIO_REGISTER_MODE_MISSING};
	uint64_t *v = calloc((size_t)rounds, sizeof(*v));
	int r = -EIO;

	rr.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (rr.uffd < 0 || page == MAP_FAILED || !v || ioctl(rr.uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(rr.uffd, UFFDIO_REGISTER, &reg) < 0 || pipe2(rr.stop_fd, O_CLOEXEC) < 0)
		goto out;
	pthread_create(&rr.thread, NULL, raw_reader_main, &rr);
	r = time_deliveries(page, &rr.m, v, rounds);
	if (!r)
		*out = samples_of_ns(v, (size_t)rounds);
	(void)!write(rr.stop_fd[1], "x", 1);
	pthread_join(rr.thread, NULL);
	close(rr.stop_fd[0]);
	close(rr.stop_fd[1]);
out:
	if (rr.uffd >= 0)
		close(rr.uffd);
	free(v);
	if (page != MAP_FAILED)
		munmap(page, PAGE);
	return r;
}

/* The floor of the kmod source: munmap of 1,000 pages nobody watches. */
static int floor_munmap(int rounds, struct samples *out)
{
	uint64_t *v = calloc((size_t)rounds, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (int i = 0; i < rounds; i++) {
		char *p = mmap(NULL, MUNMAP_SUBS * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t t0;

		if (p == MAP_FAILED)
			return free(v), -errno;
		memset(p, 1, MUNMAP_SUBS * PAGE);
		t0 = samples_now_ns();
		munmap(p, MUNMAP_SUBS * PAGE);
		v[i] = samples_now_ns() - t0;
	}
	*out = samples_of_ns(v, (size_t)rounds);
	free(v);
	return 0;
}

struct bench {
	const char *mmnd, *source;
	size_t sizes[MAX_SIZES];
	int nsizes, rounds;
	struct samples floor;
};

/* One mmnd and one connected client with its library thread.  0 or -errno. */
static int daemon_up(const struct bench *b, struct mmnd_run *m, struct mmn_client **c)
{
	char src[32];
	/* The default limits must fit the load: none is raised here. */
	const char *args[] = {src, "--log-level=warning", NULL};
	int r;

	snprintf(src, sizeof(src), "--source=%s", b->source);
	r = mmnd_run_init(m, b->mmnd);
	if (r < 0)
		return r;
	r = mmnd_run_start(m, args, 20000);
	if (r < 0)
		return r;
	r = mmn_connect(m->sock, c);
	if (r < 0)
		return r;
	return mmn_start_thread(*c);
}

/* Subscribe @n page-sized ranges from @base with @opts, in batches; the handles in @subs.  0 or -errno. */
static int subscribe_pages(struct mmn_client *c, char *base, size_t n, const struct mmn_sub_opts *opts,
			   struct mmn_sub **subs)
{
	struct mmn_sub_request *req = calloc(n, sizeof(*req));
	int r;

	if (!req)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		req[i] = (struct mmn_sub_request){
			.start = (uintptr_t)base + i * PAGE, .length = PAGE, .opts = opts};
	r = mmn_subscribe_many(c, req, n);
	for (size_t i = 0; i < n; i++) {
		subs[i] = req[i].sub;
		if (req[i].error && r >= 0)
			r = req[i].error;
	}
	free(req);
	return r < 0 ? r : 0;
}

/* What one size measured. */
struct size_run {
	double sub_us, unsub_us; /* per subscription */
	double rss_bytes;	  /* mmnd's, per subscription */
	struct samples delivery;
};

static const struct mmn_sub_opts quiet_opts = {
	.size = sizeof(struct mmn_sub_opts), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_quiet};

/* The probe page's own subscription, then @rounds deliveries to it.  0 or -errno. */
static int measure_delivery(struct mmn_client *c, int rounds, struct samples *out)
{
	struct mmn_sub_opts o = {.size = sizeof(o), .flags = MMN_SUB_NONBLOCKING, .invalidate = on_probe,
				 .userdata = &probe};
	char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *v = calloc((size_t)rounds, sizeof(*v));
	struct mmn_sub *s = NULL;
	int r = -ENOMEM;

	if (page == MAP_FAILED || !v)
		goto out;
	page[0] = 1;
	r = mmn_subscribe(c, 0, (uintptr_t)page, PAGE, &o, &s);
	if (!r)
		r = time_deliveries(page, &probe, v, rounds);
	if (!r)
		*out = samples_of_ns(v, (size_t)rounds);
	if (s)
		mmn_unsubscribe(s);
out:
	free(v);
	if (page != MAP_FAILED)
		munmap(page, PAGE);
	return r;
}

/* n subscriptions on a fresh mmnd: rates, RSS, delivery.  0 or -errno. */
static int run_size(const struct bench *b, size_t n, struct size_run *out)
{
	struct mmnd_run m = {0};
	struct mmn_client *c = NULL;
	struct mmn_sub **subs = calloc(n, sizeof(*subs));
	char *base = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	long rss0, rss1;
	uint64_t t0;
	int r = -ENOMEM;

	if (!subs || base == MAP_FAILED)
		goto out;
	r = daemon_up(b, &m, &c);
	if (r < 0)
		goto out;
	rss0 = procstat_rss_kb(m.pid);
	t0 = samples_now_ns();
	r = subscribe_pages(c, base, n, &quiet_opts, subs);
	out->sub_us = (samples_now_ns() - t0) / 1e3 / (double)n;
	rss1 = procstat_rss_kb(m.pid);
	out->rss_bytes = (double)(rss1 - rss0) * 1024.0 / (double)n;
	if (!r)
		r = measure_delivery(c, b->rounds, &out->delivery);
	t0 = samples_now_ns();
	if (!r && mmn_unsubscribe_many(subs, n, NULL) != (int)n)
		r = -EIO;
	out->unsub_us = (samples_now_ns() - t0) / 1e3 / (double)n;
out:
	if (c)
		mmn_disconnect(c);
	mmnd_run_fini(&m);
	if (base != MAP_FAILED)
		munmap(base, n * PAGE);
	free(subs);
	return r;
}

/*
 * MMN_BENCH_PERF_CTL=CTL,ACK: the control and ack FIFOs of `perf record
 * --control=fifo:CTL,ACK -D -1`; the blocking munmaps across 1,000
 * subscriptions are then the only thing recorded.  @cmd "enable" or
 * "disable"; nothing when the variable is unset.
 */
static void perf_ctl(const char *cmd)
{
	const char *env = getenv("MMN_BENCH_PERF_CTL"), *comma = env ? strchr(env, ',') : NULL;
	char ctl[256], ack[8];
	int fd;

	if (!comma || (size_t)(comma - env) >= sizeof(ctl))
		return;
	memcpy(ctl, env, (size_t)(comma - env));
	ctl[comma - env] = 0;
	fd = open(ctl, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, cmd, strlen(cmd)) < 0)
			perror("MMN_BENCH_PERF_CTL");
		close(fd);
	}
	fd = open(comma + 1, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, ack, sizeof(ack)) < 0)
			perror("MMN_BENCH_PERF_CTL");
		close(fd);
	}
}

/*
 * One munmap of 1,000 fresh pages covered by @nsubs subscriptions (1,000 of a
 * page, or one of all), @blocking or not: its time in *@ns.  0 or -errno.
 */
static int time_munmap(struct mmn_client *c, int nsubs, bool blocking, struct mmn_sub **subs, uint64_t *ns)
{
	struct mmn_sub_opts o = quiet_opts;
	char *p = mmap(NULL, MUNMAP_SUBS * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t t0;
	int r;

	if (p == MAP_FAILED)
		return -errno;
	o.flags = blocking ? MMN_SUB_BLOCKING : MMN_SUB_NONBLOCKING;
	memset(p, 1, MUNMAP_SUBS * PAGE);
	if (nsubs == 1)
		r = mmn_subscribe(c, 0, (uintptr_t)p, MUNMAP_SUBS * PAGE, &o, &subs[0]);
	else
		r = subscribe_pages(c, p, MUNMAP_SUBS, &o, subs);
	if (blocking && nsubs > 1)
		perf_ctl("enable");
	t0 = samples_now_ns();
	munmap(p, MUNMAP_SUBS * PAGE);
	*ns = samples_now_ns() - t0;
	if (blocking && nsubs > 1)
		perf_ctl("disable");
	if (!r)
		mmn_unsubscribe_many(subs, (size_t)nsubs, NULL);
	return r;
}

/*
 * @rounds munmaps across one subscription (*@one) and across 1,000
 * (*@many), @blocking or not.  The two alternate, in turns of the order,
 * so that a shared machine's drift weighs on both alike.  0 or -errno.
 */
static int time_munmaps(struct mmn_client *c, bool blocking, int rounds, struct samples *one,
			struct samples *many)
{
	struct mmn_sub **subs = calloc(MUNMAP_SUBS, sizeof(*subs));
	uint64_t *v1 = calloc((size_t)rounds, sizeof(*v1)), *vn = calloc((size_t)rounds, sizeof(*vn));
	int r = subs && v1 && vn ? 0 : -ENOMEM;

	for (int i = 0; i < rounds && !r; i++) {
		bool one_first = i % 2 == 0;

		r = time_munmap(c, one_first ? 1 : MUNMAP_SUBS, blocking, subs, one_first ? &v1[i] : &vn[i]);
		if (!r)
			r = time_munmap(c, one_first ? MUNMAP_SUBS : 1, blocking, subs,
					one_first ? &vn[i] : &v1[i]);
	}
	if (!r) {
		*one = samples_of_ns(v1, (size_t)rounds);
		*many = samples_of_ns(vn, (size_t)rounds);
	}
	free(subs);
	free(v1);
	free(vn);
	return r;
}

static void print_size(size_t n, const struct size_run *r, const struct size_run *first, const struct samples *floor)
{
	printf("n=%-8zu subscribe %7.2f us (%9.0f/s) x%.2f | unsubscribe %7.2f us (%9.0f/s) | rss %6.1f B/sub\n", n,
	       r->sub_us, 1e6 / r->sub_us, r->sub_us / first->sub_us, r->unsub_us, 1e6 / r->unsub_us,
	       r->rss_bytes);
	printf("           delivery median %7.1f p99 %7.1f max %8.1f us: x%.2f of n=first, x%.2f of the floor\n",
	       r->delivery.median, r->delivery.p99, r->delivery.max, r->delivery.median / first->delivery.median,
	       floor->median > 0 ? r->delivery.median / floor->median : 0.0);
}

/* munmap of 1,000 pages: 1,000 subscriptions against one, blocking and not. */
static int munmap_phase(const struct bench *b)
{
	struct mmnd_run m = {0};
	struct mmn_client *c = NULL;
	struct samples one, many;
	int rounds = b->rounds / 10 > MUNMAP_ROUNDS_MIN ? b->rounds / 10 : MUNMAP_ROUNDS_MIN, r;

	r = daemon_up(b, &m, &c);
	for (int blocking = 0; blocking < 2 && !r; blocking++) {
		r = time_munmaps(c, blocking, rounds, &one, &many);
		if (!r)
			printf("munmap 1000 pages, %s: 1 sub median %.1f p99 %.1f max %.1f us; 1000 subs median %.1f "
			       "p99 %.1f max %.1f us: x%.2f\n",
			       blocking ? "blocking" : "non-blocking", one.median, one.p99, one.max, many.median,
			       many.p99, many.max, many.median / one.median);
	}
	if (c)
		mmn_disconnect(c);
	mmnd_run_fini(&m);
	return r;
}

static int parse(int argc, char **argv, struct bench *b)
{
	const char *sizes = "1000,10000,100000,1000000";

	if (argc < 2)
		return -EINVAL;
	b->mmnd = argv[1];
	b->source = "uffd";
	b->rounds = getenv("MMN_BENCH_ROUNDS") ? atoi(getenv("MMN_BENCH_ROUNDS")) : 500;
	for (int i = 2; i < argc; i++) {
		if (!strncmp(argv[i], "--source=", 9))
			b->source = argv[i] + 9;
		else if (!strncmp(argv[i], "--sizes=", 8))
			sizes = argv[i] + 8;
		else if (!strncmp(argv[i], "--rounds=", 9))
			b->rounds = atoi(argv[i] + 9);
		else
			return -EINVAL;
	}
	if (!strcmp(sizes, "none")) /* the munmap phase only */
		return b->rounds > 0 ? 0 : -EINVAL;
	for (const char *p = sizes; *p && b->nsizes < MAX_SIZES; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
		b->sizes[b->nsizes++] = strtoul(p, NULL, 10);
	return b->nsizes && b->rounds > 0 && b->sizes[0] ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	struct size_run runs[MAX_SIZES];
	struct bench b = {0};
	char load[64];
	int r;

	samples_load(load, sizeof(load));
	if (parse(argc, argv, &b) < 0) {
		fprintf(stderr, "usage: %s MMND [--source=uffd|kmod] [--sizes=N,N,...|none] [--rounds=N]\n",
			argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	r = !strcmp(b.source, "uffd") ? floor_uffd(b.rounds, &b.floor) : floor_munmap(b.rounds, &b.floor);
	if (r < 0) {
		fprintf(stderr, "scale: floor: %s\n", strerror(-r));
		return 1;
	}
	printf("scale: source %s, %d rounds, load %s\nfloor (%s): median %.1f p99 %.1f max %.1f us\n", b.source,
	       b.rounds, load, !strcmp(b.source, "uffd") ? "raw userfaultfd reader" : "munmap, no subscription",
	       b.floor.median, b.floor.p99, b.floor.max);
	/* A warm-up round of the first size, not reported: the first daemon start and faults. */
	r = b.nsizes ? run_size(&b, b.sizes[0], &runs[0]) : 0;
	for (int i = 0; i < b.nsizes && r >= 0; i++) {
		r = run_size(&b, b.sizes[i], &runs[i]);
		if (r >= 0)
			print_size(b.sizes[i], &runs[i], &runs[0], &b.floor);
		fflush(stdout);
	}
	if (r < 0) {
		fprintf(stderr, "scale: %s\n", strerror(-r));
		return 1;
	}
	r = munmap_phase(&b);
	if (r < 0)
		fprintf(stderr, "scale: munmap: %s\n", strerror(-r));
	return r < 0;
}
