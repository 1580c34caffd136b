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

#include "harness.h"
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
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	int efd = -1;

	if (with_fd && (efd = eventfd(0, EFD_CLOEXEC)) >= 0) {
		struct cmsghdr *cm;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &efd, sizeof(int));
	}
	/* Refused (queue full, peer gone) is fine: mmnd decides what it reads. */
	(void)sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (efd >= 0)
		close(efd);
}

static void send_hello(int fd)
{
	Mmn__V1__Hello hello = MMN__V1__HELLO__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	hello.version_min = 1;
	hello.version_max = 1;
	hello.client_name = (char *)"fuzz";
	env.request_id = 1;
	env.body_case = MMN__V1__ENVELOPE__BODY_HELLO;
	env.hello = &hello;
	(void)mmn__wire_send(fd, &env, NULL, 0, 1);
}

/* The well-behaved client: greeted, and its Subscribe answered. */
static void check_healthy(void)
{
	struct tclient c;
	uint64_t id;

	if (tc_hello(&h, &c) != 0)
		abort();
	id = tc_subscribe(&h, &c, REGION, 4096, false, 0, NULL);
	if (!id)
		abort();
	tc_close(&c);
	h_pump(&h, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_stats before, after;
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
		size_t n = size >= 2 ? (size_t)data[0] << 8 | data[1] : 0;

		data += size >= 2 ? 2 : size;
		size -= size >= 2 ? 2 : size;
		if (n > size)
			n = size;
		if (n > MAX_PACKET)
			n = MAX_PACKET;
		send_packet(fd, data, n, flags & F_FD);
		data += n;
		size -= n;
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
	h_pump(&h, 6);
	mmn__admin_stats(h.b, &after);
	if (after.clients != before.clients)
		abort(); /* the closed connection was not reaped */
	check_healthy();
	return 0;
}
