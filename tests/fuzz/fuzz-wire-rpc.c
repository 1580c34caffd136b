/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: mmnd's receive path for client packets (proto/wire.c
 * framing and decoding, daemon/client.c, the request handling of rpc.c,
 * sub.c, fanout.c) on a real broker with the test source, driven in
 * process like the unit tests' harness.
 *
 * Input: byte 0 is a set of flags, then up to 16 packets, each a 2-byte
 * big-endian length and that many bytes (a truncated last one is sent as
 * it is).  Every input gets a fresh connection that sends the packets as
 * they are, then closes; the flags can also make the test source emit
 * events for this process around the packets.  Afterwards a well-behaved client must still get
 * its HelloReply and a SubscribeReply, and the connection count must be
 * back where it was; abort() otherwise.
 */
#include <sys/eventfd.h>

#include "fuzz-input.h"
#include "harness.h"
#include "lib/scm.h"
#include "log.h"

enum {
	F_HELLO = 1 << 0,	/* a valid Hello first, so the packets meet a greeted client */
	F_FD = 1 << 1,		/* an eventfd rides along with every packet */
	F_NO_PUMP = 1 << 2,	/* send everything before mmnd runs */
	F_HALF_CLOSE = 1 << 3,	/* shutdown(SHUT_WR) instead of waiting for replies */
	F_EVENT = 1 << 4,	/* the source invalidates REGION..REGION_END after every packet */
	F_BLOCKABLE = 1 << 5,	/* ... blockable (blocking subscribers must ack) */
	F_END = 1 << 6,		/* ... and ends it at once (else after the last packet) */
	F_RELEASE = 1 << 7,	/* the target "exits" before the connection closes */
};

#define MAX_PACKETS 16
#define MAX_PACKET  (MMN_WIRE_MAX_MSG + 64) /* a little over: the truncation path */
#define REGION	    0x200000ull
#define REGION_END  0x400000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct harness h;

/* libFuzzer ends with exit(): leave no socket behind. */
static void remove_socket(void)
{
	unlink(h.path);
	rmdir(h.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct broker_options o;

	mmn__log_set_level(LOG_EMERG); /* clients' mistakes are logged; not here */
	mmn__broker_options_default(&o);
	o.max_subs = 64;
	h_init(&h, &o);
	atexit(remove_socket);
	return 0;
}

static void send_packet(int fd, const uint8_t *p, size_t n, bool with_fd)
{
	int efd = with_fd ? eventfd(0, EFD_CLOEXEC) : -1;

	/* Refused (queue full, peer gone) is fine: mmnd decides what it reads. */
	(void)scm_send_bytes(fd, p, n, efd);
	if (efd >= 0)
		close(efd);
}

static void send_hello(int fd)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	hello.version_min = 1;
	hello.version_max = 2; /* v2: AckMany is accepted, events come as EventBatch */
	hello.client_name = (char *)"fuzz";
	hello.ack_runs = true; /* AckMany.runs are accepted */
	env.request_id = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	(void)mmn__wire_send(fd, &env, NULL, 0, 1);
}

/* The well-behaved client: greeted, and its Subscribe answered. */
/*
 * Runs the loop until mmnd counts @want clients again: a closed connection is
 * reaped once the loop has read it to EOF, which takes as many iterations as
 * it had packets queued.  Bounded; returns the count it stopped at.
 */
static uint64_t clients_settle(uint64_t want)
{
	struct admin_stats st;

	for (int i = 0; i < 1000; i++) {
		mmn__admin_stats(h.b, &st);
		if (st.clients == want)
			break;
		h_pump(&h, 1);
	}
	return st.clients;
}

static void check_healthy(void)
{
	struct admin_stats st;
	struct tclient c;
	uint64_t id;

	mmn__admin_stats(h.b, &st);
	if (tc_hello(&h, &c) != 0)
		abort();
	id = tc_subscribe(&h, &c, REGION, 4096, false, 0, NULL);
	if (!id)
		abort();
	tc_close(&c);
	if (clients_settle(st.clients) != st.clients)
		abort(); /* the health check's own connection was not reaped */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_stats before;
	uint64_t open_ev[MAX_PACKETS];
	size_t nopen = 0;
	uint8_t flags;
	int fd;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	mmn__admin_stats(h.b, &before);
	fd = tc_connect_raw(&h);
	if (flags & F_HELLO) {
		send_hello(fd);
		h_pump(&h, 2);
	}
	for (int i = 0; i < MAX_PACKETS && size > 0; i++) {
		const uint8_t *pkt;
		size_t n = fuzz_next_packet(&data, &size, MAX_PACKET, &pkt);

		send_packet(fd, pkt, n, flags & F_FD);
		if (!(flags & F_NO_PUMP))
			h_pump(&h, 2);
		if (flags & F_EVENT) {
			uint64_t ev = mmn__source_test_invalidate(h.src, getpid(), REGION - 0x1000, REGION_END, 0,
								  flags & F_BLOCKABLE);

			h_pump(&h, 2);
			if (ev && (flags & F_END))
				mmn__source_test_end(h.src, ev);
			else if (ev)
				open_ev[nopen++] = ev;
		}
	}
	/* As the kernel does: every invalidation ends (a pending one defers Subscribes). */
	for (size_t i = 0; i < nopen; i++)
		mmn__source_test_end(h.src, open_ev[i]);
	if (flags & F_RELEASE)
		mmn__source_test_release(h.src, getpid());
	if (flags & F_HALF_CLOSE)
		shutdown(fd, SHUT_WR);
	h_pump(&h, 4);
	close(fd);
	if (clients_settle(before.clients) != before.clients)
		abort(); /* the closed connection was not reaped */
	check_healthy();
	return 0;
}
