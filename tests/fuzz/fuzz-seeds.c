/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writes the seed corpora of the fuzz targets from the real encoders
 * (protobuf-c through mmn__wire_encode(), libnl for the module's
 * messages, the targets' own D-Bus argument format):
 *
 *   build-fuzz/tests/fuzz/fuzz-seeds tests/fuzz/corpus
 *
 * The output is committed; rerun it when the protocol changes.  Each
 * file is named after what it holds.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/genetlink.h>
#include <linux/mmn.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include "event-record.h"
#include "wire.h"

static const char *root;

/* A seed being assembled: a flags byte, then length-prefixed packets. */
struct seed {
	uint8_t buf[16384];
	size_t len;
};

static void seed_begin(struct seed *s, uint8_t flags)
{
	s->buf[0] = flags;
	s->len = 1;
}

static void seed_raw(struct seed *s, const void *p, size_t n)
{
	if (s->len + 2 + n > sizeof(s->buf))
		exit(1);
	s->buf[s->len++] = (uint8_t)(n >> 8);
	s->buf[s->len++] = (uint8_t)n;
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void seed_env(struct seed *s, uint64_t rid, MmnEnvelope *env)
{
	uint8_t pkt[MMN_WIRE_MAX_MSG];
	int n;

	env->request_id = rid;
	n = mmn__wire_encode(env, pkt, sizeof(pkt));
	if (n < 0)
		exit(1);
	seed_raw(s, pkt, (size_t)n);
}

static void write_file(const char *target, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void seed_write(struct seed *s, const char *target, const char *name)
{
	write_file(target, name, s->buf, s->len);
}

/* Envelopes, one body each. */
#define ENV(field, CASE, val)                                                                                \
	({                                                                                                   \
		MmnEnvelope e_ = MMN__V1__ENVELOPE__INIT;                                                    \
		e_.body_case = MMN__V1__ENVELOPE__BODY_##CASE;                                               \
		e_.field = (val);                                                                            \
		e_;                                                                                          \
	})

/* wire-rpc: the messages, shared by both halves of the seeds. */
static Mmn__V1__Hello hello = MMN__V1__HELLO__INIT, bad = MMN__V1__HELLO__INIT;
static Mmn__V1__Subscribe sub = MMN__V1__SUBSCRIBE__INIT, blk = MMN__V1__SUBSCRIBE__INIT;
static Mmn__V1__Unsubscribe uns = MMN__V1__UNSUBSCRIBE__INIT;
static Mmn__V1__Share share = MMN__V1__SHARE__INIT;
static Mmn__V1__Ack ack = MMN__V1__ACK__INIT;
static Mmn__V1__AttachUffd au = MMN__V1__ATTACH_UFFD__INIT;
static Mmn__V1__Invalidate inv = MMN__V1__INVALIDATE__INIT;
static uint8_t token[16] = {1, 2, 3};

/* The messages the wire-rpc seeds are made of. */
static void wire_rpc_messages(void)
{
	hello.version_min = 1;
	hello.version_max = 2;
	hello.client_name = (char *)"seed";
	bad.version_min = 3;
	bad.version_max = 9;
	sub.start = 0x200000;
	sub.length = 0x1000;
	sub.flags = MMN__V1__SUB_FLAG__SUB_NONBLOCKING;
	blk = sub;
	blk.flags = MMN__V1__SUB_FLAG__SUB_BLOCKING;
	blk.ack_timeout_ms = 100;
	blk.event_mask = 0x3;
	uns.sub_id = 1;
	share.start = 0x200000;
	share.length = 0x2000;
	share.peer_uid = 0;
	ack.sub_id = 1;
	ack.event_id = 1;
	inv.sub_id = 1;
	inv.start = 0;
	inv.end = 4096;
}

static void wire_rpc_seeds(void)
{
	MmnEnvelope e;
	struct seed s;

	wire_rpc_messages();
	seed_begin(&s, 0);
	e = ENV(hello, HELLO, &hello);
	seed_env(&s, 1, &e);
	seed_write(&s, "wire-rpc", "hello");

	seed_begin(&s, 0);
	e = ENV(hello, HELLO, &bad);
	seed_env(&s, 1, &e);
	seed_write(&s, "wire-rpc", "hello-bad-version");

	seed_begin(&s, 1);
	e = ENV(hello, HELLO, &hello);
	seed_env(&s, 2, &e);
	seed_write(&s, "wire-rpc", "hello-twice");

	seed_begin(&s, 0);
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 1, &e);
	seed_write(&s, "wire-rpc", "subscribe-before-hello");

	seed_begin(&s, 1);
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 2, &e);
	e = ENV(unsubscribe, UNSUBSCRIBE, &uns);
	seed_env(&s, 3, &e);
	e = ENV(unsubscribe, UNSUBSCRIBE, &uns);
	seed_env(&s, 4, &e);
	seed_write(&s, "wire-rpc", "subscribe-unsubscribe-twice");

	seed_begin(&s, 1);
	e = ENV(subscribe, SUBSCRIBE, &blk);
	seed_env(&s, 2, &e);
	e = ENV(ack, ACK, &ack);
	seed_env(&s, 0, &e);
	seed_write(&s, "wire-rpc", "subscribe-blocking-ack");

	/* With the source's events (fuzz-wire-rpc.c's flags 16..128). */
	seed_begin(&s, 1 | 16 | 32);
	e = ENV(subscribe, SUBSCRIBE, &blk);
	seed_env(&s, 2, &e);
	for (uint64_t id = 1; id <= 3; id++) {
		ack.event_id = id;
		e = ENV(ack, ACK, &ack);
		seed_env(&s, 0, &e);
	}
	seed_write(&s, "wire-rpc", "events-blocking-acks");
	ack.event_id = 1;

	seed_begin(&s, 1 | 16 | 64 | 128);
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 2, &e);
	e = ENV(subscribe, SUBSCRIBE, &blk);
	seed_env(&s, 3, &e);
	seed_write(&s, "wire-rpc", "events-ended-release");
}

static void wire_rpc_seeds_more(void)
{
	MmnEnvelope e;
	struct seed s;

	sub.pid = 1;
	sub.share_token.data = token;
	sub.share_token.len = sizeof(token);
	seed_begin(&s, 1);
	e = ENV(share, SHARE, &share);
	seed_env(&s, 2, &e);
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 3, &e);
	seed_write(&s, "wire-rpc", "share-subscribe-token");
	sub.pid = 0;
	sub.share_token.len = 0;

	sub.length = 0;
	seed_begin(&s, 1 | 4);
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 2, &e);
	sub.length = UINT64_MAX;
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 3, &e);
	sub.flags = 3;
	sub.length = 4096;
	e = ENV(subscribe, SUBSCRIBE, &sub);
	seed_env(&s, 4, &e);
	seed_write(&s, "wire-rpc", "subscribe-bad-arguments");
	sub.flags = MMN__V1__SUB_FLAG__SUB_NONBLOCKING;

	seed_begin(&s, 1 | 2);
	e = ENV(attach_uffd, ATTACH_UFFD, &au);
	seed_env(&s, 2, &e);
	seed_write(&s, "wire-rpc", "attach-uffd-with-fd");

	seed_begin(&s, 1);
	e = ENV(invalidate, INVALIDATE, &inv);
	seed_env(&s, 2, &e);
	seed_write(&s, "wire-rpc", "server-only-body");

	seed_begin(&s, 1 | 8);
	for (int i = 0; i < 8; i++) {
		sub.start = 0x200000 + (uint64_t)i * 0x1000;
		e = ENV(subscribe, SUBSCRIBE, &sub);
		seed_env(&s, 2 + (uint64_t)i, &e);
	}
	seed_write(&s, "wire-rpc", "many-subscribes-half-close");

	seed_begin(&s, 1);
	seed_raw(&s, "", 0);
	seed_raw(&s, "\x08\x01\xfa\x01\x00", 5);
	seed_raw(&s, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
	seed_write(&s, "wire-rpc", "empty-and-garbage");
}

/* client-recv: packets "from mmnd" to a client with sub 7 live (fuzz-client-recv.c); shared by both halves. */
static Mmn__V1__Invalidate cinv = MMN__V1__INVALIDATE__INIT;
static Mmn__V1__InvalidateEnd end = MMN__V1__INVALIDATE_END__INIT;
static Mmn__V1__Release rel = MMN__V1__RELEASE__INIT;
static Mmn__V1__Revoked rev = MMN__V1__REVOKED__INIT;
static Mmn__V1__Status st = MMN__V1__STATUS__INIT;
static Mmn__V1__Error err = MMN__V1__ERROR__INIT;
static Mmn__V1__SubscribeReply sr = MMN__V1__SUBSCRIBE_REPLY__INIT;
static Mmn__V1__HelloReply hr = MMN__V1__HELLO_REPLY__INIT;

static void client_recv_seeds(void)
{
	MmnEnvelope e;
	struct seed s;


	cinv.sub_id = 7;
	cinv.event_id = 1;
	cinv.start = 0;
	cinv.end = UINT64_MAX;
	cinv.blockable = true;
	cinv.needs_ack = true;
	cinv.seq = 3;
	end.sub_id = 7;
	end.event_id = 1;
	end.seq = 4;
	rel.sub_id = 7;
	rev.sub_id = 7;
	rev.reason = MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT;
	rev.event_id = 1;
	err.error = -EPERM;
	err.message = (char *)"refused";
	sr.sub_id = 8;
	sr.seq_slot = 1;
	sr.seq_gen = 2;
	hr.version = 2;
	hr.seqpage_slots = 8;

	seed_begin(&s, 0);
	e = ENV(invalidate, INVALIDATE, &cinv);
	seed_env(&s, 0, &e);
	e = ENV(invalidate_end, INVALIDATE_END, &end);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "invalidate-end");

	seed_begin(&s, 2);
	for (int i = 0; i < 12; i++) {
		cinv.event_id = 10 + (uint64_t)i;
		e = ENV(invalidate, INVALIDATE, &cinv);
		seed_env(&s, 0, &e);
	}
	seed_write(&s, "client-recv", "invalidates-ack-later");
	cinv.event_id = 1;

	cinv.start = 8192;
	cinv.end = 4096;
	seed_begin(&s, 8);
	e = ENV(invalidate, INVALIDATE, &cinv);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "invalidate-empty-range");
	cinv.start = 0;
	cinv.end = UINT64_MAX;

	cinv.event = 99;
	seed_begin(&s, 0);
	e = ENV(invalidate, INVALIDATE, &cinv);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "invalidate-unknown-event");
	cinv.event = 0;

	seed_begin(&s, 0);
	e = ENV(invalidate_end, INVALIDATE_END, &end);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "end-without-invalidate");

	seed_begin(&s, 4);
	e = ENV(invalidate, INVALIDATE, &cinv);
	seed_env(&s, 0, &e);
	e = ENV(release, RELEASE, &rel);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "release-unsubscribe");

	/*
	 * The same twice, each packet dispatched at once: the tombstone is then held
	 * only by the client state, an anonymous mapping LeakSanitizer reads
	 * only when client.c declares it a root (found by fuzz-client-recv).
	 */
	seed_begin(&s, 4 | 8);
	for (int i = 0; i < 2; i++) {
		e = ENV(invalidate, INVALIDATE, &cinv);
		seed_env(&s, 0, &e);
		e = ENV(release, RELEASE, &rel);
		seed_env(&s, 0, &e);
	}
	seed_write(&s, "client-recv", "release-unsubscribe-each");

}

static void client_recv_seeds_more(void)
{
	MmnEnvelope e;
	struct seed s;

	seed_begin(&s, 0);
	e = ENV(revoked, REVOKED, &rev);
	seed_env(&s, 0, &e);
	e = ENV(revoked, REVOKED, &rev);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "revoked-twice");

	seed_begin(&s, 0);
	e = ENV(status, STATUS, &st);
	seed_env(&s, 99, &e);
	e = ENV(subscribe_reply, SUBSCRIBE_REPLY, &sr);
	seed_env(&s, 100, &e);
	seed_write(&s, "client-recv", "unsolicited-replies");

	seed_begin(&s, 0);
	e = ENV(error, ERROR, &err);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "error-no-request");

	st.error = 5;
	seed_begin(&s, 0);
	e = ENV(status, STATUS, &st);
	seed_env(&s, 3, &e);
	seed_write(&s, "client-recv", "status-positive-error");

	seed_begin(&s, 1);
	e = ENV(hello_reply, HELLO_REPLY, &hr);
	seed_env(&s, 1, &e);
	seed_write(&s, "client-recv", "hello-reply-when-connected");

	seed_begin(&s, 0);
	seed_raw(&s, "", 0);
	seed_raw(&s, "\x08\x01\x92\x01\x02\x08\x07", 7);
	seed_write(&s, "client-recv", "empty-and-garbage");

	/* Answers to a new client's Hello (flag 16; 1: a sequence page rides along). */
	hr.source = (char *)"test";
	hr.event_mask = 0x3f;
	hr.max_message_size = MMN_WIRE_MAX_MSG;
	hr.default_ack_timeout_ms = 1000;
	hr.client_id = 3;
	seed_begin(&s, 16 | 1);
	e = ENV(hello_reply, HELLO_REPLY, &hr);
	seed_env(&s, 1, &e);
	seed_write(&s, "client-recv", "handshake-hello-reply");
	seed_begin(&s, 16);
	e = ENV(hello_reply, HELLO_REPLY, &hr);
	seed_env(&s, 1, &e);
	seed_write(&s, "client-recv", "handshake-hello-reply-no-page");
	hr.seqpage_slots = 1u << 21;
	seed_begin(&s, 16 | 1);
	e = ENV(hello_reply, HELLO_REPLY, &hr);
	seed_env(&s, 1, &e);
	seed_write(&s, "client-recv", "handshake-too-many-slots");
	hr.seqpage_slots = 8;
	hr.needs_uffd = true;
	seed_begin(&s, 16 | 1);
	e = ENV(hello_reply, HELLO_REPLY, &hr);
	seed_env(&s, 1, &e);
	seed_write(&s, "client-recv", "handshake-needs-uffd");
	hr.needs_uffd = false;
	seed_begin(&s, 16);
	e = ENV(error, ERROR, &err);
	seed_env(&s, 1, &e);
	seed_write(&s, "client-recv", "handshake-refused");
}

/* kmod-event: a subscription-room byte, then the genl payload. */
static void kmod_seed(struct nl_msg *m, uint8_t cap, const char *name)
{
	struct nlmsghdr *h = nlmsg_hdr(m);
	uint8_t buf[4096];
	size_t n = (size_t)nlmsg_datalen(h);

	buf[0] = cap;
	memcpy(buf + 1, nlmsg_data(h), n);
	write_file("kmod-event", name, buf, n + 1);
	nlmsg_free(m);
}

static struct nl_msg *kmod_msg(uint8_t cmd)
{
	struct nl_msg *m = nlmsg_alloc();

	if (!m || !genlmsg_put(m, 0, 0, 0x20, 0, 0, cmd, MMN_GENL_VERSION))
		exit(1);
	return m;
}

static void kmod_subs(struct nl_msg *m, int n, bool ranges)
{
	struct nlattr *nest = nla_nest_start(m, MMN_A_SUBS);

	for (int i = 0; i < n; i++) {
		struct nlattr *one = nla_nest_start(m, MMN_A_SUB);

		nla_put_u32(m, MMN_A_SUB_ID, 1 + (uint32_t)i);
		if (ranges) {
			nla_put_u64(m, MMN_A_START, 0x10000 + (uint64_t)i * 0x1000);
			nla_put_u64(m, MMN_A_END, 0x11000 + (uint64_t)i * 0x1000);
		}
		nla_nest_end(m, one);
	}
	nla_nest_end(m, nest);
}

static void kmod_event_seeds(void)
{
	struct nl_msg *m;

	for (int n = 1; n <= 3; n += 2) {
		m = kmod_msg(MMN_CMD_INVALIDATE);
		nla_put_u64(m, MMN_A_SEQ, 5);
		nla_put_u32(m, MMN_A_EVENT, 0);
		nla_put_u32(m, MMN_A_EVENT_FLAGS, MMN_EV_F_NEEDS_ACK | 1);
		nla_put_u64(m, MMN_A_RANGE_START, 0x10000);
		nla_put_u64(m, MMN_A_RANGE_END, 0x90000);
		nla_put_u32(m, MMN_A_PID, 4242);
		kmod_subs(m, n, true);
		kmod_seed(m, 4, n == 1 ? "invalidate-1" : "invalidate-3");
	}
	m = kmod_msg(MMN_CMD_INVALIDATE);
	nla_put_u64(m, MMN_A_SEQ, 6);
	nla_put_u32(m, MMN_A_EVENT, 2);
	nla_put_u32(m, MMN_A_EVENT_FLAGS, 0);
	nla_put_u64(m, MMN_A_RANGE_START, 0x10000);
	nla_put_u64(m, MMN_A_RANGE_END, 0x90000);
	kmod_subs(m, 3, true);
	kmod_seed(m, 1, "invalidate-no-room");

	m = kmod_msg(MMN_CMD_INVALIDATE_END);
	nla_put_u64(m, MMN_A_SEQ, 5);
	kmod_subs(m, 2, false);
	kmod_seed(m, 4, "invalidate-end");

	m = kmod_msg(MMN_CMD_RELEASE);
	nla_put_u32(m, MMN_A_SUB_ID, 3);
	kmod_seed(m, 1, "release");

	m = kmod_msg(MMN_CMD_REVOKED);
	nla_put_u32(m, MMN_A_SUB_ID, 3);
	nla_put_u32(m, MMN_A_REASON, 1);
	kmod_seed(m, 1, "revoked");

	m = kmod_msg(MMN_CMD_REVOKED);
	nla_put_u32(m, MMN_A_SUB_ID, 3);
	kmod_seed(m, 1, "revoked-no-reason");

	m = kmod_msg(MMN_CMD_ACK);
	nla_put_u64(m, MMN_A_SEQ, 5);
	kmod_seed(m, 1, "not-an-event");
}

/*
 * dbus: member index, path + 4 * interface index (fuzz-dbus.c's tables),
 * a NUL-terminated signature, then the values.
 */
struct dseed {
	uint8_t b[1024];
	size_t n;
};

static void d_put(struct dseed *d, const void *p, size_t n)
{
	memcpy(d->b + d->n, p, n);
	d->n += n;
}

static void d_begin(struct dseed *d, uint8_t member, uint8_t path, uint8_t iface, const char *sig)
{
	d->n = 0;
	d->b[d->n++] = member;
	d->b[d->n++] = (uint8_t)(path + 4 * iface);
	d_put(d, sig, strlen(sig) + 1);
}

static void d_str(struct dseed *d, const char *s)
{
	d->b[d->n++] = (uint8_t)strlen(s);
	d_put(d, s, strlen(s));
}

static void d_u32(struct dseed *d, uint32_t v)
{
	d_put(d, &v, 4);
}

static void d_u64(struct dseed *d, uint64_t v)
{
	d_put(d, &v, 8);
}

enum { LIST_CLIENTS, LIST_SUBS, GET_STATS, EVICT, SET_DEFAULTS, RELOAD, GET, SET, GET_ALL, INTROSPECT };
enum { API, NO_IFACE, PROPS, INTRO };

/* The API's methods. */
static void dbus_seeds(void)
{
	struct dseed d;

	d_begin(&d, LIST_CLIENTS, 0, API, "");
	write_file("dbus", "list-clients", d.b, d.n);
	d_begin(&d, LIST_SUBS, 0, API, "tu");
	d_u64(&d, 0);
	d_u32(&d, 0);
	write_file("dbus", "list-subscriptions", d.b, d.n);
	d_begin(&d, LIST_SUBS, 0, API, "ts");
	d_u64(&d, 1);
	d_str(&d, "x");
	write_file("dbus", "list-subscriptions-wrong-type", d.b, d.n);
	d_begin(&d, GET_STATS, 0, API, "");
	write_file("dbus", "get-stats", d.b, d.n);
	d_begin(&d, EVICT, 0, API, "t");
	d_u64(&d, UINT64_MAX);
	write_file("dbus", "evict-unknown", d.b, d.n);
	d_begin(&d, EVICT, 0, API, "");
	write_file("dbus", "evict-no-argument", d.b, d.n);
	d_begin(&d, EVICT, 0, API, "t");
	d_u64(&d, 1);
	write_file("dbus", "evict-first-client", d.b, d.n);
	d_begin(&d, LIST_SUBS, 0, API, "tu");
	d_u64(&d, 2);
	d_u32(&d, 0);
	write_file("dbus", "list-subscriptions-of-client", d.b, d.n);
	d_begin(&d, SET_DEFAULTS, 0, API, "a{sv}");
	d.b[d.n++] = 2;
	d_str(&d, "MaxClients");
	d_str(&d, "u");
	d_u32(&d, 64);
	d_str(&d, "DefaultAckTimeoutMSec");
	d_str(&d, "u");
	d_u32(&d, 500);
	write_file("dbus", "set-defaults", d.b, d.n);
	d_begin(&d, SET_DEFAULTS, 0, API, "a{sv}");
	d.b[d.n++] = 3;
	d_str(&d, "AckCapMSec");
	d_str(&d, "u");
	d_u32(&d, UINT32_MAX);
	d_str(&d, "MaxQueuedEvents");
	d_str(&d, "s");
	d_str(&d, "many");
	d_str(&d, "Bogus");
	d_str(&d, "t");
	d_u64(&d, 1);
	write_file("dbus", "set-defaults-bad-values", d.b, d.n);
	d_begin(&d, SET_DEFAULTS, 0, API, "a{sv}");
	d.b[d.n++] = 2;
	d_str(&d, "MaxClients");
	d_str(&d, "u");
	d_u32(&d, 1);
	d_str(&d, "MaxClients");
	d_str(&d, "u");
	d_u32(&d, 0);
	write_file("dbus", "set-defaults-duplicate-key", d.b, d.n);
	/* One client allowed: the harness's replacements after an eviction must still connect. */
	d_begin(&d, SET_DEFAULTS, 0, API, "a{sv}");
	d.b[d.n++] = 2;
	d_str(&d, "MaxClients");
	d_str(&d, "u");
	d_u32(&d, 1);
	d_str(&d, "HelloTimeoutMSec");
	d_str(&d, "u");
	d_u32(&d, 1);
	write_file("dbus", "set-defaults-one-client", d.b, d.n);
	d_begin(&d, SET_DEFAULTS, 0, API, "a{ss}");
	d.b[d.n++] = 1;
	d_str(&d, "MaxClients");
	d_str(&d, "10");
	write_file("dbus", "set-defaults-wrong-signature", d.b, d.n);
	d_begin(&d, RELOAD, 0, API, "");
	write_file("dbus", "reload", d.b, d.n);
}

/* Properties, introspection and calls that miss the API. */
static void dbus_seeds_more(void)
{
	struct dseed d;

	d_begin(&d, GET, 0, PROPS, "ss");
	d_str(&d, "org.mmn.Broker1.Manager");
	d_str(&d, "Version");
	write_file("dbus", "get-version", d.b, d.n);
	d_begin(&d, GET, 0, PROPS, "ss");
	d_str(&d, "org.mmn.Broker1.Manager");
	d_str(&d, "MaxClients");
	write_file("dbus", "get-max-clients", d.b, d.n);
	d_begin(&d, SET, 0, PROPS, "ssv");
	d_str(&d, "org.mmn.Broker1.Manager");
	d_str(&d, "MaxClients");
	d_str(&d, "u");
	d_u32(&d, 5);
	write_file("dbus", "set-read-only-property", d.b, d.n);
	d_begin(&d, GET_ALL, 0, PROPS, "s");
	d_str(&d, "org.mmn.Broker1.Manager");
	write_file("dbus", "get-all", d.b, d.n);
	d_begin(&d, INTROSPECT, 0, INTRO, "");
	write_file("dbus", "introspect", d.b, d.n);
	d_begin(&d, 11, 0, API, "s");
	d_str(&d, "hello");
	write_file("dbus", "unknown-method", d.b, d.n);
	d_begin(&d, GET_STATS, 3, API, "");
	write_file("dbus", "unknown-path", d.b, d.n);
	d_begin(&d, EVICT, 0, NO_IFACE, "t");
	d_u64(&d, 1);
	write_file("dbus", "no-interface", d.b, d.n);
}

/* Batches: SubscribeMany (good, bad, over max_batch) and UnsubscribeMany into mmnd; a stray reply into libmmn. */
static void batch_seeds(void)
{
	static Mmn__V1__Subscribe items[MMN_MAX_BATCH + 1], *ip[MMN_MAX_BATCH + 1];
	Mmn__V1__SubscribeMany many = MMN__V1__SUBSCRIBE_MANY__INIT;
	Mmn__V1__UnsubscribeMany um = MMN__V1__UNSUBSCRIBE_MANY__INIT;
	Mmn__V1__SubscribeResult res[2] = {MMN__V1__SUBSCRIBE_RESULT__INIT, MMN__V1__SUBSCRIBE_RESULT__INIT};
	Mmn__V1__SubscribeResult *rp[2] = {&res[0], &res[1]};
	Mmn__V1__SubscribeManyReply rep = MMN__V1__SUBSCRIBE_MANY_REPLY__INIT;
	Mmn__V1__SubscribeReply ok = MMN__V1__SUBSCRIBE_REPLY__INIT;
	uint64_t ids[3] = {1, 99, 1};
	MmnEnvelope e;
	struct seed s;

	for (size_t i = 0; i <= MMN_MAX_BATCH; i++) {
		items[i] = sub;
		items[i].start = 0x200000 + i * 0x1000;
		ip[i] = &items[i];
	}
	items[1].length = 0;
	many.items = ip;
	many.n_items = 3;
	um.sub_ids = ids;
	um.n_sub_ids = 3;
	seed_begin(&s, 1 | 16);
	e = ENV(subscribe_many, SUBSCRIBE_MANY, &many);
	seed_env(&s, 2, &e);
	e = ENV(unsubscribe_many, UNSUBSCRIBE_MANY, &um);
	seed_env(&s, 3, &e);
	seed_write(&s, "wire-rpc", "subscribe-many-unsubscribe-many");

	many.n_items = MMN_MAX_BATCH + 1;
	seed_begin(&s, 1);
	e = ENV(subscribe_many, SUBSCRIBE_MANY, &many);
	seed_env(&s, 2, &e);
	seed_write(&s, "wire-rpc", "subscribe-many-over-max-batch");

	ok.sub_id = 9;
	res[0].reply = &ok;
	res[1].error = -EINVAL;
	rep.results = rp;
	rep.n_results = 2;
	seed_begin(&s, 0);
	e = ENV(subscribe_many_reply, SUBSCRIBE_MANY_REPLY, &rep);
	seed_env(&s, 5, &e);
	seed_write(&s, "client-recv", "subscribe-many-reply-unsolicited");
}

/* Protocol v2: EventBatch records to the client, AckMany to mmnd. */
static void v2_seeds(void)
{
	struct mmn_event_record recs[3] = {
		{.sub_id = 7, .event_id = 1, .start = 0, .end = 4096, .seq = 3, .end_seq = 4,
		 .kind = MMN_RECORD_INVALIDATE_END, .flags = MMN_RECORD_BLOCKABLE},
		{.sub_id = 7, .event_id = 2, .start = 0, .end = UINT64_MAX, .seq = 5, .deadline_ms = 100,
		 .kind = MMN_RECORD_INVALIDATE, .flags = MMN_RECORD_BLOCKABLE | MMN_RECORD_NEEDS_ACK},
		{.sub_id = 7, .event_id = 2, .seq = 6, .kind = MMN_RECORD_END},
	};
	Mmn__V1__EventBatch eb = MMN__V1__EVENT_BATCH__INIT;
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	uint64_t subs[2] = {1, 1}, evs[2] = {1, 2};
	uint32_t run = 2;
	MmnEnvelope e;
	struct seed s;

	eb.records.data = (uint8_t *)recs;
	eb.records.len = sizeof(recs);
	seed_begin(&s, 0);
	e = ENV(event_batch, EVENT_BATCH, &eb);
	seed_env(&s, 0, &e);
	seed_write(&s, "client-recv", "event-batch");

	am.n_sub_ids = am.n_event_ids = 2;
	am.sub_ids = subs;
	am.event_ids = evs;
	wire_rpc_messages();
	seed_begin(&s, 1 | 16 | 32);
	e = ENV(subscribe, SUBSCRIBE, &blk);
	seed_env(&s, 2, &e);
	e = ENV(ack_many, ACK_MANY, &am);
	seed_env(&s, 0, &e);
	seed_write(&s, "wire-rpc", "events-ack-many");

	/* The same acks as runs (Hello.ack_runs): one run of 2 from sub 1 of event 2. */
	am.n_sub_ids = am.n_event_ids = am.n_runs = 1;
	am.event_ids = &evs[1];
	am.runs = &run;
	seed_begin(&s, 1 | 16 | 32);
	e = ENV(subscribe, SUBSCRIBE, &blk);
	seed_env(&s, 2, &e);
	e = ENV(ack_many, ACK_MANY, &am);
	seed_env(&s, 0, &e);
	seed_write(&s, "wire-rpc", "events-ack-runs");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	root = argv[1];
	wire_rpc_seeds();
	wire_rpc_seeds_more();
	client_recv_seeds();
	client_recv_seeds_more();
	batch_seeds();
	v2_seeds();
	kmod_event_seeds();
	dbus_seeds();
	dbus_seeds_more();
	return 0;
}
