/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/fanout: what mmnd's fan-out costs, measured against the floor.
 *
 *   floor      a raw SOCK_SEQPACKET ping-pong between two processes: one
 *              message out, one back.  No user-space ack can beat it.
 *   fan-out floor  one process writes to 1, 8 or 64 sockets and reads as
 *              many replies, each peer a process: the scheduler's floor for
 *              a blocking fan-out on this machine.
 *   blocking   the broker on the test source: inject one blocking
 *              invalidation, every client process receives Invalidate
 *              {needs_ack} and sends Ack, the broker acks the source (the
 *              source's ack hook fires).  1, 8 and 64 client processes, all
 *              subscribed to the same range of one target (this process),
 *              so one kernel subscription fans out to all of them.
 *   nonblocking  the same with non-blocking clients: events per second
 *              through the broker to every client, with v1 clients (one
 *              packet per message) and v2 clients (EventBatch).
 *
 * Clients speak the raw wire (proto/wire.h) from forked processes, protocol v2
 * (EventBatch records, AckMany) unless a figure says v1; they are
 * forked before each scenario's loop exists, so they inherit no handle but
 * the listening socket (closed at once) and the report pipe.  Synchronisation
 * is by pipes and sockets only.  Rounds: $MMN_BENCH_ROUNDS (default 2000);
 * $MMN_BENCH_ONLY=blocking or =nonblocking runs one half; $MMN_BENCH_PROTO=N
 * makes the blocking half's clients speak version N and the non-blocking
 * half start at N.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "admin.h"
#include "broker.h"
#include "event-record.h"
#include "log.h"
#include "source.h"
#include "wire.h"

#define RANGE_START UINT64_C(0x7f0000000000)
#define RANGE_LEN UINT64_C(0x100000)
#define NB_BATCH 256
#define MAX_CLIENTS 64

static char sock_path[108];
/* The protocol version the client processes offer (2: EventBatch, AckMany). */
static uint32_t client_version = MMN_PROTO_VERSION;

static void die(const char *what, int err)
{
	fprintf(stderr, "fanout: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct stats {
	double median_us, mean_us, p99_us, min_us, max_us;
};

static struct stats summarise(uint64_t *ns, size_t n)
{
	struct stats s = { 0 };
	double sum = 0;

	qsort(ns, n, sizeof(*ns), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += (double)ns[i];
	s.median_us = (double)ns[n / 2] / 1e3;
	s.p99_us = (double)ns[(n * 99) / 100] / 1e3;
	s.min_us = (double)ns[0] / 1e3;
	s.max_us = (double)ns[n - 1] / 1e3;
	s.mean_us = sum / (double)n / 1e3;
	return s;
}

/* ---- the floor ----------------------------------------------------------- */

static struct stats floor_pingpong(int rounds)
{
	int sv[2];
	char buf[64] = { 0 };
	uint64_t *ns = calloc((size_t)rounds, sizeof(*ns));
	pid_t pid;

	if (!ns || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair", errno);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		close(sv[0]);
		while (recv(sv[1], buf, sizeof(buf), 0) > 0)
			if (send(sv[1], buf, 48, MSG_NOSIGNAL) < 0)
				break;
		_exit(0);
	}
	close(sv[1]);
	for (int i = -rounds / 10; i < rounds; i++) { /* negative: warm-up */
		uint64_t t0 = uv_hrtime();

		if (send(sv[0], buf, 48, MSG_NOSIGNAL) != 48 || recv(sv[0], buf, sizeof(buf), 0) != 48)
			die("ping-pong", errno);
		if (i >= 0)
			ns[i] = uv_hrtime() - t0;
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
	struct stats s = summarise(ns, (size_t)rounds);

	free(ns);
	return s;
}

static void reap_pids(pid_t *pids, int n)
{
	for (int i = 0; i < n; i++) {
		int st;

		if (waitpid(pids[i], &st, 0) == pids[i] && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			fprintf(stderr, "fanout: client %d ended with status 0x%x\n", (int)pids[i], st);
	}
}

/*
 * The floor of a fan-out to @n processes: one process writes a 48-byte
 * message to each of @n sockets and reads @n replies, each peer a process
 * that answers at once.  What the scheduler allows on this machine.
 */
static struct stats floor_fanout(int n, int rounds)
{
	uint64_t *ns = calloc((size_t)rounds, sizeof(*ns));
	int sv[MAX_CLIENTS][2];
	pid_t pids[MAX_CLIENTS];
	char buf[64] = { 0 };

	if (!ns || n > MAX_CLIENTS)
		die("floor_fanout", ENOMEM);
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv[i]) < 0)
			die("socketpair", errno);
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork", errno);
		if (pids[i] == 0) {
			for (int k = 0; k <= i; k++)
				close(sv[k][0]);
			while (recv(sv[i][1], buf, sizeof(buf), 0) > 0)
				if (send(sv[i][1], buf, 48, MSG_NOSIGNAL) < 0)
					break;
			_exit(0);
		}
		close(sv[i][1]);
	}
	for (int r = -rounds / 10; r < rounds; r++) { /* negative: warm-up */
		uint64_t t0 = uv_hrtime();

		for (int i = 0; i < n; i++)
			if (send(sv[i][0], buf, 48, MSG_NOSIGNAL) != 48)
				die("fan-out floor send", errno);
		for (int i = 0; i < n; i++)
			if (recv(sv[i][0], buf, sizeof(buf), 0) != 48)
				die("fan-out floor recv", errno);
		if (r >= 0)
			ns[r] = uv_hrtime() - t0;
	}
	for (int i = 0; i < n; i++)
		close(sv[i][0]);
	reap_pids(pids, n);
	struct stats st = summarise(ns, (size_t)rounds);

	free(ns);
	return st;
}

/* ---- client processes ---------------------------------------------------- */

static void report(int fd, char c)
{
	while (write(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static int wire_recv_wait(int fd, uint8_t *buf, MmnEnvelope **env)
{
	int fds[MMN_WIRE_MAX_FDS];
	size_t nfds = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, -1) < 0)
		return -errno;
	n = mmn__wire_recv(fd, buf, MMN_WIRE_MAX_MSG, fds, MMN_WIRE_MAX_FDS, &nfds);
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	return mmn__wire_decode(buf, (size_t)n, env);
}

/* v2: the records of one EventBatch; the acks they ask for go back as one AckMany. */
static int client_records(int fd, const MmnEnvelope *in, bool blocking, int report_fd)
{
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	MmnEnvelope a = MMN__V1__ENVELOPE__INIT;
	uint64_t subs[MMN_EVENT_BATCH_MAX], evs[MMN_EVENT_BATCH_MAX];
	size_t n = in->event_batch->records.len / sizeof(struct mmn_event_record), k = 0;

	for (size_t i = 0; i < n && i < MMN_EVENT_BATCH_MAX; i++) {
		struct mmn_event_record rec;

		memcpy(&rec, in->event_batch->records.data + i * sizeof(rec), sizeof(rec));
		if (rec.kind == MMN_RECORD_END)
			continue;
		if (rec.flags & MMN_RECORD_NEEDS_ACK) {
			subs[k] = rec.sub_id;
			evs[k++] = rec.event_id;
		}
		/* non-blocking: a window of NB_BATCH events, so no queue is coalesced */
		if (!blocking && rec.event_id % NB_BATCH == 0)
			report(report_fd, 'b');
	}
	if (!k)
		return 0;
	am.n_sub_ids = am.n_event_ids = k;
	am.sub_ids = subs;
	am.event_ids = evs;
	a.body_case = MMN__V1__ENVELOPE__BODY_ACK_MANY;
	a.ack_many = &am;
	return mmn__wire_send(fd, &a, NULL, 0, 0);
}

/* Connect, subscribe, then ack (blocking) or count (non-blocking) until EOF. */
static void client_main(pid_t target, bool blocking, int report_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	Mmn__V1__Subscribe sub = MMN__V1__SUBSCRIBE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT, *in = NULL;
	uint8_t buf[MMN_WIRE_MAX_MSG];
	int fd, r;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		_exit(2);
	hello.version_min = 1;
	hello.version_max = client_version;
	hello.client_name = "fanout";
	hello.waiter_flag = true; /* as libmmn: woken only when it flags a wait (never here) */
	env.request_id = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	if (mmn__wire_send(fd, &env, NULL, 0, 0) < 0 || wire_recv_wait(fd, buf, &in) < 0 ||
	    in->body_case != MMN__V1__ENVELOPE__BODY_HELLO_REPLY)
		_exit(3);
	mmn__wire_free(in);

	sub.pid = target;
	sub.start = RANGE_START;
	sub.length = RANGE_LEN;
	sub.flags = blocking ? MMN__V1__SUB_FLAG__SUB_BLOCKING : MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	sub.ack_timeout_ms = 5000;
	/* Blocking: as libmmn subscribes for a callback that wants no ends (no invalidate_end). */
	sub.no_end = blocking;
	env.request_id = 2;
	env.body_case = MMN__V1__ENVELOPE__BODY_SUBSCRIBE;
	env.subscribe = &sub;
	if (mmn__wire_send(fd, &env, NULL, 0, 0) < 0)
		_exit(4);
	for (;;) {
		if (wire_recv_wait(fd, buf, &in) < 0)
			_exit(5);
		if (in->request_id == 2)
			break;
		mmn__wire_free(in);
	}
	if (in->body_case != MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY) {
		fprintf(stderr, "fanout client: subscribe failed: %s\n",
			in->body_case == MMN__V1__ENVELOPE__BODY_ERROR ? in->error->message : mmn__wire_body_name(in));
		_exit(6);
	}
	mmn__wire_free(in);
	report(report_fd, 'r');

	/* The hot loop: blocking recv, one syscall per packet like the floor's. */
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			break;
		r = mmn__wire_decode(buf, (size_t)n, &in);
		if (r < 0)
			_exit(7);
		if (in->body_case == MMN__V1__ENVELOPE__BODY_EVENT_BATCH && client_records(fd, in, blocking, report_fd) < 0)
			_exit(8);
		if (in->body_case == MMN__V1__ENVELOPE__BODY_INVALIDATE) {
			const Mmn__V1__Invalidate *iv = in->invalidate;

			if (iv->needs_ack) {
				Mmn__V1__Ack ack = MMN__V1__ACK__INIT;
				MmnEnvelope a = MMN__V1__ENVELOPE__INIT;

				ack.sub_id = iv->sub_id;
				ack.event_id = iv->event_id;
				a.body_case = MMN__V1__ENVELOPE__BODY_ACK;
				a.ack = &ack;
				if (mmn__wire_send(fd, &a, NULL, 0, 0) < 0)
					_exit(8);
			}
			/* non-blocking: a window of NB_BATCH events, so no queue is coalesced */
			if (!blocking && iv->event_id % NB_BATCH == 0)
				report(report_fd, 'b');
		}
		mmn__wire_free(in);
	}
	_exit(0);
}

/* ---- the broker side ----------------------------------------------------- */

enum phase { WAIT_READY, BLOCKING, NONBLOCKING, DONE };

struct bench {
	uv_loop_t loop;
	struct broker *b;
	struct source *src;
	uv_poll_t report_poll;
	uv_idle_t idle;
	uv_timer_t watchdog;
	int report_fd;
	int nclients, ready;
	uint64_t batches, batch_reports; /* non-blocking: batches injected, 'b' reports */
	enum phase phase, next_phase;
	uint32_t ksubs[MAX_CLIENTS];
	size_t nksubs;
	/* blocking */
	int rounds, round;
	bool end_due;
	uint64_t event_id, t0, *ns;
	/* non-blocking */
	uint64_t injected, total, nb_t0, nb_t1;
	uint64_t nb_cpu0, nb_cpu1; /* the broker thread's CPU time at nb_t0 and nb_t1 */
	pid_t pid;		   /* the target: this process */
	bool failed;
};

/* CPU time of this thread (the broker's loop): what one mmnd core spends. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void collect_ksub(const struct admin_sub *s, void *ud)
{
	struct bench *bn = ud;

	for (size_t i = 0; i < bn->nksubs; i++)
		if (bn->ksubs[i] == s->ksub_id)
			return;
	if (bn->nksubs < MAX_CLIENTS)
		bn->ksubs[bn->nksubs++] = s->ksub_id;
}

static void inject(struct bench *bn, enum source_event_kind kind, uint64_t id, bool needs_ack)
{
	struct source_event_sub subs[MAX_CLIENTS];
	struct source_event ev = {
		.kind = kind,
		.event_id = id,
		.event = 0, /* UNMAP */
		.blockable = true,
		.needs_ack = needs_ack,
		.range_start = RANGE_START,
		.range_end = RANGE_START + RANGE_LEN,
		.pid = bn->pid, /* getpid() is a syscall: not the broker's cost */
		.nsubs = bn->nksubs,
		.subs = subs,
	};

	for (size_t i = 0; i < bn->nksubs; i++)
		subs[i] = (struct source_event_sub){ bn->ksubs[i], RANGE_START, RANGE_START + RANGE_LEN };
	mmn__source_test_inject(bn->src, &ev);
}

static void finish(struct bench *bn)
{
	bn->phase = DONE;
	uv_idle_stop(&bn->idle);
	uv_timer_stop(&bn->watchdog);
	uv_stop(&bn->loop);
}

/* Blocking: END of the previous round in one tick, the next INVALIDATE in the next. */
static void on_idle(uv_idle_t *h)
{
	struct bench *bn = h->data;

	if (bn->phase == BLOCKING) {
		if (bn->end_due) {
			inject(bn, SOURCE_INVALIDATE_END, bn->event_id, false);
			bn->end_due = false;
			if (bn->round == bn->rounds) {
				finish(bn);
				return;
			}
			return; /* idle stays on: the next tick starts the next round */
		}
		uv_idle_stop(h);
		bn->event_id++;
		bn->t0 = uv_hrtime();
		inject(bn, SOURCE_INVALIDATE, bn->event_id, true);
		return;
	}
	if (bn->phase == NONBLOCKING) { /* one batch, then wait for every client */
		uv_idle_stop(h);
		for (int i = 0; i < NB_BATCH; i++) {
			bn->injected++;
			inject(bn, SOURCE_INVALIDATE, bn->injected, false);
			inject(bn, SOURCE_INVALIDATE_END, bn->injected, false);
		}
		bn->batches++;
	}
}

static void on_ack(uint64_t event_id, void *ud)
{
	struct bench *bn = ud;
	uint64_t t = uv_hrtime();

	if (bn->phase != BLOCKING || event_id != bn->event_id)
		return;
	if (bn->round >= 0 && bn->round < bn->rounds)
		bn->ns[bn->round] = t - bn->t0;
	bn->round++;
	bn->end_due = true;
	uv_idle_start(&bn->idle, on_idle);
}

static void start_phase(struct bench *bn)
{
	mmn__admin_foreach_sub(bn->b, 0, 0, collect_ksub, bn);
	if (bn->nksubs == 0) {
		fprintf(stderr, "fanout: no kernel subscription after %d clients subscribed\n", bn->nclients);
		bn->failed = true;
		finish(bn);
		return;
	}
	bn->phase = bn->next_phase;
	if (bn->phase == NONBLOCKING) {
		bn->nb_t0 = uv_hrtime();
		bn->nb_cpu0 = thread_cpu_ns();
	}
	uv_idle_start(&bn->idle, on_idle);
}

static void on_report(uv_poll_t *h, int status, int events)
{
	struct bench *bn = h->data;
	char c[128];
	ssize_t n = read(bn->report_fd, c, sizeof(c));

	for (ssize_t i = 0; i < n; i++) {
		if (c[i] == 'r' && ++bn->ready == bn->nclients)
			start_phase(bn);
		if (c[i] == 'b' && ++bn->batch_reports == bn->batches * (uint64_t)bn->nclients) {
			if (bn->injected >= bn->total) {
				bn->nb_t1 = uv_hrtime();
				bn->nb_cpu1 = thread_cpu_ns();
				finish(bn);
			} else {
				uv_idle_start(&bn->idle, on_idle);
			}
		}
	}
	if (n == 0) { /* every client died */
		bn->failed = true;
		finish(bn);
	}
}

static void on_watchdog(uv_timer_t *h)
{
	struct bench *bn = h->data;

	fprintf(stderr, "fanout: scenario stuck (phase %d, ready %d, round %d, batches %" PRIu64 ", reports %" PRIu64 ")\n",
		bn->phase, bn->ready, bn->round, bn->batches, bn->batch_reports);
	bn->failed = true;
	finish(bn);
}


/* Forks @n client processes; each closes the listening socket and reports on @rep_w. */
static void spawn_clients(pid_t *pids, int n, bool blocking, int lfd, int rep_r, int rep_w)
{
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork", errno);
		if (pids[i] == 0) {
			close(lfd);
			close(rep_r);
			client_main(getppid(), blocking, rep_w);
		}
	}
}

/*
 * One scenario: @n client processes, blocking (@rounds round trips, the
 * samples in @ns) or non-blocking (@total events; the time in *@elapsed_ns).
 */
static int scenario(int n, bool blocking, int rounds, uint64_t *ns, uint64_t total, uint64_t *elapsed_ns,
		    uint64_t *cpu_ns)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct broker_options o;
	struct bench bn = { 0 };
	pid_t pids[MAX_CLIENTS];
	int lfd, rep[2], r;

	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, sock_path);
	unlink(sock_path);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0)
		die("listen", errno);
	if (pipe2(rep, O_CLOEXEC) < 0)
		die("pipe", errno);
	spawn_clients(pids, n, blocking, lfd, rep[0], rep[1]);
	close(rep[1]);

	bn.nclients = n;
	bn.pid = getpid();
	bn.report_fd = rep[0];
	bn.rounds = rounds;
	bn.round = -(rounds / 10); /* warm-up rounds first */
	bn.ns = ns;
	bn.total = total;
	bn.next_phase = blocking ? BLOCKING : NONBLOCKING;
	uv_loop_init(&bn.loop);
	r = mmn__source_test_new(&bn.loop, NULL, NULL, &bn.src);
	if (r < 0)
		die("test source", r);
	mmn__source_test_set_ack_hook(bn.src, on_ack, &bn);
	mmn__broker_options_default(&o);
	o.ack_timeout_ms = 5000;
	o.max_queued = 65536;
	if (mmn__broker_options_check(&o) < 0)
		mmn__broker_options_default(&o);
	r = mmn__broker_new(&bn.loop, bn.src, &o, &bn.b);
	if (r < 0)
		die("broker", r);
	r = mmn__broker_listen_fd(bn.b, lfd);
	if (r < 0)
		die("listen_fd", r);

	uv_poll_init(&bn.loop, &bn.report_poll, rep[0]);
	bn.report_poll.data = &bn;
	uv_poll_start(&bn.report_poll, UV_READABLE, on_report);
	uv_idle_init(&bn.loop, &bn.idle);
	bn.idle.data = &bn;
	uv_timer_init(&bn.loop, &bn.watchdog);
	bn.watchdog.data = &bn;
	uv_timer_start(&bn.watchdog, on_watchdog, 60000, 0);

	uv_run(&bn.loop, UV_RUN_DEFAULT);

	if (!blocking && !bn.failed) {
		struct admin_stats st;

		mmn__admin_stats(bn.b, &st);
		if (st.queue_overflows)
			printf("#   (%" PRIu64 " client queues coalesced: some events were merged)\n",
			       st.queue_overflows);
	}
	*elapsed_ns = bn.nb_t1 - bn.nb_t0;
	if (cpu_ns)
		*cpu_ns = bn.nb_cpu1 - bn.nb_cpu0;
	mmn__source_test_set_ack_hook(bn.src, NULL, NULL);
	mmn__broker_drain(bn.b);
	mmn__broker_free(bn.b);
	uv_close((uv_handle_t *)&bn.report_poll, NULL);
	uv_close((uv_handle_t *)&bn.idle, NULL);
	uv_close((uv_handle_t *)&bn.watchdog, NULL);
	uv_run(&bn.loop, UV_RUN_DEFAULT);
	uv_loop_close(&bn.loop);
	close(rep[0]);
	reap_pids(pids, n);
	unlink(sock_path);
	return bn.failed ? -EIO : 0;
}

static void print_stats(const char *what, struct stats s)
{
	printf("%-46s: %8.2f / %8.2f / %8.2f", what, s.median_us, s.p99_us, s.max_us);
}

/* Blocking round trips through the broker, against the ping-pong and fan-out floors. */
static int run_blocking(int rounds, uint64_t *ns, struct stats fl)
{
	const int counts[] = { 1, 8, 64 };
	char what[64];
	int failed = 0;

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct stats s, ff = floor_fanout(counts[i], rounds);
		uint64_t el;

		snprintf(what, sizeof(what), "floor   raw fan-out to %2d processes", counts[i]);
		print_stats(what, ff);
		printf("\n");
		if (scenario(counts[i], true, rounds, ns, 0, &el, NULL) < 0) {
			failed = 1;
			printf("blocking %2d clients: FAILED\n", counts[i]);
			continue;
		}
		s = summarise(ns, (size_t)rounds);
		snprintf(what, sizeof(what), "blocking round trip, %2d client processes", counts[i]);
		print_stats(what, s);
		printf("   = %5.1fx ping-pong, %4.2fx raw fan-out (medians)\n", s.median_us / fl.median_us,
		       s.median_us / ff.median_us);
	}
	return failed;
}

/* Non-blocking events per second, with v1 clients (a packet per message) and v2 (EventBatch). */
static int run_nonblocking(int rounds, struct stats fl)
{
	const int nb_counts[] = { 1, 8 };
	uint64_t total = ((uint64_t)rounds * 25 + NB_BATCH - 1) / NB_BATCH * NB_BATCH, el, cpu;
	int failed = 0;

	/* MMN_BENCH_PROTO=2: only v2 clients (for profiling). */
	const char *pv = getenv("MMN_BENCH_PROTO");

	for (uint32_t v = pv ? (uint32_t)atoi(pv) : 1; v <= MMN_PROTO_VERSION; v++) {
		client_version = v;
		for (size_t i = 0; i < sizeof(nb_counts) / sizeof(nb_counts[0]); i++) {
			if (scenario(nb_counts[i], false, 0, NULL, total, &el, &cpu) < 0 || el == 0 || cpu == 0) {
				failed = 1;
				printf("non-blocking %d clients v%u: FAILED\n", nb_counts[i], v);
				continue;
			}
			double secs = (double)el / 1e9, deliveries = (double)total * nb_counts[i];
			printf("non-blocking, %d client processes, protocol v%u: %" PRIu64
			       " events in %.3f s = %.0f events/s, "
			       "%.0f deliveries/s (%.2f us/event = %.2fx ping-pong); "
			       "mmnd core: %.3f s busy = %.0f deliveries per core-second\n",
			       nb_counts[i], v, total, secs, (double)total / secs, deliveries / secs,
			       secs * 1e6 / (double)total, secs * 1e6 / (double)total / fl.median_us, (double)cpu / 1e9,
			       deliveries / ((double)cpu / 1e9));
		}
	}
	client_version = MMN_PROTO_VERSION;
	return failed;
}

int main(int argc, char **argv)
{
	const char *e = getenv("MMN_BENCH_ROUNDS"), *only;
	int rounds = e ? atoi(e) : 2000;
	char dir[] = "/tmp/mmn-fanout-XXXXXX";
	uint64_t *ns;
	struct stats fl;
	int failed;

	if (rounds < 10)
		rounds = 10;
	signal(SIGPIPE, SIG_IGN);
	mmn__log_set_level(LOG_WARNING); /* no per-client attach/detach lines */
	if (!mkdtemp(dir))
		die("mkdtemp", errno);
	snprintf(sock_path, sizeof(sock_path), "%s/mmnd.sock", dir);
	ns = calloc((size_t)rounds, sizeof(*ns));
	if (!ns)
		die("calloc", ENOMEM);

	printf("# mmn bench/fanout: %d rounds per figure, times in microseconds (median / p99 / max)\n", rounds);
	fl = floor_pingpong(rounds);
	print_stats("floor   SOCK_SEQPACKET ping-pong, 2 processes", fl);
	printf("\n");
	/* MMN_BENCH_PROTO=1: v1 clients in the blocking half too (a comparison). */
	if (getenv("MMN_BENCH_PROTO"))
		client_version = (uint32_t)atoi(getenv("MMN_BENCH_PROTO"));
	/* MMN_BENCH_ONLY=blocking or =nonblocking: one half (for profiling). */
	only = getenv("MMN_BENCH_ONLY");
	failed = only && strcmp(only, "blocking") ? 0 : run_blocking(rounds, ns, fl);
	failed |= only && strcmp(only, "nonblocking") ? 0 : run_nonblocking(rounds, fl);
	free(ns);
	rmdir(dir);
	return failed;
}
