/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Protocol v1 round trips: every Envelope body encodes and decodes to the
 * same values; truncated, oversized, corrupt and unknown input is rejected
 * with a distinct errno; the socket framing carries descriptors and refuses
 * packets that do not fit.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/scm.h"
#include "tap.h"
#include "seqpage.h"
#include "event-record.h"
#include "wire.h"

#define E(x) MMN__V1__ENVELOPE__BODY_##x

static uint8_t buf[MMN_WIRE_MAX_MSG * 2];

/* Encode, decode, re-encode: the bytes must be identical. */
static MmnEnvelope *roundtrip(const MmnEnvelope *in, const char *what)
{
	uint8_t again[MMN_WIRE_MAX_MSG];
	MmnEnvelope *out = NULL;
	int len, len2, r;

	len = mmn__wire_encode(in, buf, sizeof(buf));
	if (!tap_ok(len > 0, "%s: encodes (%d bytes)", what, len))
		return NULL;
	r = mmn__wire_decode(buf, (size_t)len, &out);
	if (!tap_ok(r == 0 && out, "%s: decodes (%d)", what, r))
		return NULL;
	tap_is_int(out->body_case, in->body_case, "body case survives");
	tap_is_u64(out->request_id, in->request_id, "request_id survives");
	len2 = mmn__wire_encode(out, again, sizeof(again));
	tap_ok(len2 == len && memcmp(buf, again, (size_t)len) == 0, "%s: re-encodes to the same bytes", what);
	return out;
}

static void test_hello(void)
{
	Mmn__V1__Hello h = MMN__V1__HELLO__INIT;
	Mmn__V1__HelloReply hr = MMN__V1__HELLO_REPLY__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o;

	h.version_min = 1;
	h.version_max = 3;
	h.client_name = "runtime-α";
	e.request_id = 7;
	e.body_case = E(HELLO);
	e.hello = &h;
	if ((o = roundtrip(&e, "Hello"))) {
		tap_is_int(o->hello->version_max, 3, "Hello.version_max");
		tap_is_str(o->hello->client_name, "runtime-α", "Hello.client_name (UTF-8)");
		mmn__wire_free(o);
	}

	hr.version = 1;
	hr.source = "uffd";
	hr.event_mask = (1u << 0) | (1u << 8) | (1u << 9);
	hr.acks_hold_kernel = 0;
	hr.needs_uffd = 1;
	hr.max_message_size = MMN_WIRE_MAX_MSG;
	hr.seqpage_slots = 1024;
	hr.client_id = UINT64_MAX;
	e.body_case = E(HELLO_REPLY);
	e.hello_reply = &hr;
	if ((o = roundtrip(&e, "HelloReply"))) {
		tap_is_str(o->hello_reply->source, "uffd", "HelloReply.source");
		tap_is_u64(o->hello_reply->event_mask, hr.event_mask, "HelloReply.event_mask");
		tap_is_int(o->hello_reply->needs_uffd, 1, "HelloReply.needs_uffd");
		tap_is_u64(o->hello_reply->client_id, UINT64_MAX, "HelloReply.client_id (u64 max)");
		mmn__wire_free(o);
	}
}

static void test_subscribe(void)
{
	static uint8_t token[16] = { 1, 2, 3, 0, 5 };
	Mmn__V1__Subscribe s = MMN__V1__SUBSCRIBE__INIT;
	Mmn__V1__SubscribeReply sr = MMN__V1__SUBSCRIBE_REPLY__INIT;
	Mmn__V1__Unsubscribe u = MMN__V1__UNSUBSCRIBE__INIT;
	Mmn__V1__AttachUffd a = MMN__V1__ATTACH_UFFD__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o;

	s.pid = -1;
	s.start = 0x7fff00000000ull;
	s.length = 1ull << 40;
	s.flags = MMN__V1__SUB_FLAG__SUB_BLOCKING;
	s.event_mask = 0x7ff;
	s.ack_timeout_ms = 250;
	s.share_token.data = token;
	s.share_token.len = sizeof(token);
	e.body_case = E(SUBSCRIBE);
	e.subscribe = &s;
	if ((o = roundtrip(&e, "Subscribe"))) {
		tap_is_int(o->subscribe->pid, -1, "Subscribe.pid (negative survives)");
		tap_is_u64(o->subscribe->start, s.start, "Subscribe.start");
		tap_is_u64(o->subscribe->length, s.length, "Subscribe.length");
		tap_is_int(o->subscribe->flags, MMN__V1__SUB_FLAG__SUB_BLOCKING, "Subscribe.flags");
		tap_ok(o->subscribe->share_token.len == 16 &&
			       memcmp(o->subscribe->share_token.data, token, 16) == 0,
		       "Subscribe.share_token with an embedded NUL");
		mmn__wire_free(o);
	}

	sr.sub_id = 42;
	sr.seq_slot = 1023;
	sr.seq_gen = 9;
	sr.ack_timeout_ms = 1000;
	e.body_case = E(SUBSCRIBE_REPLY);
	e.subscribe_reply = &sr;
	if ((o = roundtrip(&e, "SubscribeReply"))) {
		tap_is_int(o->subscribe_reply->seq_slot, 1023, "SubscribeReply.seq_slot");
		tap_is_int(o->subscribe_reply->seq_gen, 9, "SubscribeReply.seq_gen");
		mmn__wire_free(o);
	}

	u.sub_id = 42;
	e.body_case = E(UNSUBSCRIBE);
	e.unsubscribe = &u;
	if ((o = roundtrip(&e, "Unsubscribe"))) {
		tap_is_u64(o->unsubscribe->sub_id, 42, "Unsubscribe.sub_id");
		mmn__wire_free(o);
	}

	a.features = 0x1234;
	e.body_case = E(ATTACH_UFFD);
	e.attach_uffd = &a;
	if ((o = roundtrip(&e, "AttachUffd"))) {
		tap_is_u64(o->attach_uffd->features, 0x1234, "AttachUffd.features");
		mmn__wire_free(o);
	}
}

static void test_events(void)
{
	Mmn__V1__Invalidate iv = MMN__V1__INVALIDATE__INIT;
	Mmn__V1__InvalidateEnd ie = MMN__V1__INVALIDATE_END__INIT;
	Mmn__V1__Ack ack = MMN__V1__ACK__INIT;
	Mmn__V1__Release rel = MMN__V1__RELEASE__INIT;
	Mmn__V1__Revoked rv = MMN__V1__REVOKED__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o;

	iv.sub_id = 3;
	iv.event_id = 1ull << 63;
	iv.start = 0x1000;
	iv.end = UINT64_MAX;
	iv.event = MMN__V1__EVENT_TYPE__EVENT_RESYNC;
	iv.blockable = 1;
	iv.needs_ack = 1;
	iv.seq = 0xffffffff00000001ull;
	iv.deadline_ms = 999;
	e.body_case = E(INVALIDATE);
	e.invalidate = &iv;
	if ((o = roundtrip(&e, "Invalidate"))) {
		tap_is_u64(o->invalidate->event_id, 1ull << 63, "Invalidate.event_id");
		tap_is_u64(o->invalidate->end, UINT64_MAX, "Invalidate.end (ULONG_MAX, as RELEASE sends)");
		tap_is_int(o->invalidate->event, MMN__V1__EVENT_TYPE__EVENT_RESYNC, "Invalidate.event");
		tap_ok(o->invalidate->blockable && o->invalidate->needs_ack, "Invalidate flags");
		tap_is_u64(o->invalidate->seq, iv.seq, "Invalidate.seq");
		mmn__wire_free(o);
	}

	ie.sub_id = 3;
	ie.event_id = 5;
	ie.seq = 2;
	e.body_case = E(INVALIDATE_END);
	e.invalidate_end = &ie;
	if ((o = roundtrip(&e, "InvalidateEnd"))) {
		tap_is_u64(o->invalidate_end->seq, 2, "InvalidateEnd.seq");
		mmn__wire_free(o);
	}

	ack.sub_id = 3;
	ack.event_id = 5;
	e.body_case = E(ACK);
	e.ack = &ack;
	if ((o = roundtrip(&e, "Ack"))) {
		tap_is_u64(o->ack->event_id, 5, "Ack.event_id");
		mmn__wire_free(o);
	}

	rel.sub_id = 8;
	e.body_case = E(RELEASE);
	e.release = &rel;
	if ((o = roundtrip(&e, "Release"))) {
		tap_is_u64(o->release->sub_id, 8, "Release.sub_id");
		mmn__wire_free(o);
	}

	rv.sub_id = 8;
	rv.reason = MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT;
	rv.event_id = 11;
	e.body_case = E(REVOKED);
	e.revoked = &rv;
	if ((o = roundtrip(&e, "Revoked"))) {
		tap_is_int(o->revoked->reason, MMN__V1__REVOKE_REASON__REVOKE_TIMEOUT, "Revoked.reason");
		mmn__wire_free(o);
	}
}

static void test_misc(void)
{
	Mmn__V1__Share sh = MMN__V1__SHARE__INIT;
	Mmn__V1__ShareReply shr = MMN__V1__SHARE_REPLY__INIT;
	Mmn__V1__Status st = MMN__V1__STATUS__INIT;
	Mmn__V1__Error er = MMN__V1__ERROR__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o;
	uint8_t tok[32];

	sh.start = 0x10000;
	sh.length = 0x2000;
	sh.peer_uid = 1000;
	e.body_case = E(SHARE);
	e.share = &sh;
	if ((o = roundtrip(&e, "Share"))) {
		tap_is_int(o->share->peer_uid, 1000, "Share.peer_uid");
		mmn__wire_free(o);
	}

	memset(tok, 0xa5, sizeof(tok));
	shr.token.data = tok;
	shr.token.len = sizeof(tok);
	e.body_case = E(SHARE_REPLY);
	e.share_reply = &shr;
	if ((o = roundtrip(&e, "ShareReply"))) {
		tap_is_int(o->share_reply->token.len, 32, "ShareReply.token length");
		mmn__wire_free(o);
	}

	st.error = -ENOENT;
	e.body_case = E(STATUS);
	e.status = &st;
	if ((o = roundtrip(&e, "Status"))) {
		tap_is_int(o->status->error, -ENOENT, "Status.error (negative errno)");
		mmn__wire_free(o);
	}

	er.error = -EPROTO;
	er.message = "unknown message";
	e.body_case = E(ERROR);
	e.error = &er;
	if ((o = roundtrip(&e, "Error"))) {
		tap_is_int(o->error->error, -EPROTO, "Error.error");
		tap_is_str(o->error->message, "unknown message", "Error.message");
		mmn__wire_free(o);
	}
}

static void test_rejects(void)
{
	Mmn__V1__Error er = MMN__V1__ERROR__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o = NULL;
	static char big[MMN_WIRE_MAX_MSG + 1];
	uint8_t small[4];
	int len, r;

	tap_is_int(mmn__wire_encode(&e, buf, sizeof(buf)), -EINVAL, "encode without a body: -EINVAL");

	memset(big, 'x', sizeof(big) - 1);
	er.message = big;
	e.body_case = E(ERROR);
	e.error = &er;
	tap_is_int(mmn__wire_encode(&e, buf, sizeof(buf)), -EMSGSIZE, "encode over MMN_WIRE_MAX_MSG: -EMSGSIZE");

	er.message = "abc";
	tap_is_int(mmn__wire_encode(&e, small, sizeof(small)), -EMSGSIZE, "encode into a short buffer: -EMSGSIZE");

	len = mmn__wire_encode(&e, buf, sizeof(buf));
	tap_require(len > 2);
	for (int cut = 1; cut < len; cut++) {
		r = mmn__wire_decode(buf, (size_t)cut, &o);
		if (r == 0) {
			/* A prefix can be a valid shorter message only if it ends on a field boundary. */
			tap_ok(o != NULL, "prefix of %d bytes decodes to a complete message", cut);
			mmn__wire_free(o);
			continue;
		}
		tap_ok(r == -EBADMSG || r == -EPROTO, "truncated to %d/%d bytes: %d (-EBADMSG or -EPROTO)", cut, len, r);
		tap_ok(o == NULL, "nothing returned on error");
	}

	memset(buf, 0xff, 64);
	tap_is_int(mmn__wire_decode(buf, 64, &o), -EBADMSG, "garbage: -EBADMSG");

	/* field 99, varint 1: valid protobuf, no body this version knows */
	buf[0] = (99 << 3) & 0xff;
	buf[0] = 0x98;
	buf[1] = 0x06;
	buf[2] = 0x01;
	tap_is_int(mmn__wire_decode(buf, 3, &o), -EPROTO, "unknown field only: -EPROTO");
	tap_is_int(mmn__wire_decode(buf, 0, &o), -EPROTO, "empty packet: -EPROTO (no body)");
	memset(buf, 0, MMN_WIRE_MAX_MSG + 1);
	tap_is_int(mmn__wire_decode(buf, MMN_WIRE_MAX_MSG + 1, &o), -EMSGSIZE, "oversized packet: -EMSGSIZE");
}

static void test_socket(void)
{
	Mmn__V1__Status st = MMN__V1__STATUS__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o = NULL;
	uint8_t rbuf[MMN_WIRE_MAX_MSG];
	int sv[2], fds[MMN_WIRE_MAX_FDS], pipefd[2];
	size_t nfds = 9;
	ssize_t n;
	char c = 0;

	tap_require(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	tap_require(pipe2(pipefd, O_CLOEXEC) == 0);

	tap_is_int(mmn__wire_recv(sv[1], rbuf, sizeof(rbuf), fds, 2, &nfds), -EAGAIN, "recv on an empty socket: -EAGAIN");

	st.error = -EBUSY;
	e.request_id = 99;
	e.body_case = E(STATUS);
	e.status = &st;
	tap_is_int(mmn__wire_send(sv[0], &e, &pipefd[1], 1, 0), 0, "send with one descriptor");
	n = mmn__wire_recv(sv[1], rbuf, sizeof(rbuf), fds, 2, &nfds);
	tap_ok(n > 0, "recv returns the packet length (%zd)", n);
	tap_is_int(nfds, 1, "one descriptor received");
	if (nfds == 1) {
		tap_is_int(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "received descriptor is O_CLOEXEC");
		tap_is_int(write(fds[0], "z", 1), 1, "received descriptor is the pipe's write end");
		tap_is_int(read(pipefd[0], &c, 1), 1, "and the byte arrives");
		tap_is_int(c, 'z', "byte value");
		close(fds[0]);
	}
	tap_is_int(mmn__wire_decode(rbuf, (size_t)n, &o), 0, "packet decodes");
	if (o) {
		tap_is_u64(o->request_id, 99, "request_id over the socket");
		tap_is_int(o->status->error, -EBUSY, "Status.error over the socket");
		mmn__wire_free(o);
	}

	/* Too many descriptors for the receiver: refused, none leak. */
	{
		int three[2] = { pipefd[0], pipefd[1] };

		tap_is_int(mmn__wire_send(sv[0], &e, three, 2, 0), 0, "send with two descriptors");
		nfds = 5;
		tap_is_int(mmn__wire_recv(sv[1], rbuf, sizeof(rbuf), fds, 1, &nfds), -EMSGSIZE,
			   "receiver that takes one descriptor: -EMSGSIZE");
		tap_is_int(nfds, 0, "no descriptor handed out");
		int many[MMN_WIRE_MAX_FDS + 1];

		for (size_t i = 0; i < MMN_WIRE_MAX_FDS + 1; i++)
			many[i] = pipefd[i % 2];
		tap_is_int(mmn__wire_send(sv[0], &e, many, MMN_WIRE_MAX_FDS + 1, 0), -EINVAL,
			   "send with more than MMN_WIRE_MAX_FDS: -EINVAL");
	}

	/* A packet longer than the receive buffer is refused, not cut. */
	memset(rbuf, 1, sizeof(rbuf));
	tap_is_int(send(sv[0], rbuf, 200, 0), 200, "raw 200-byte packet");
	tap_is_int(mmn__wire_recv(sv[1], rbuf, 100, fds, 2, &nfds), -EMSGSIZE, "recv into 100 bytes: -EMSGSIZE");

	/*
	 * An empty packet with a descriptor reads as 0 (like EOF) and leaves
	 * nothing open: the descriptor is a pipe's read end, so once the
	 * receiver closed its copy (and we ours) the pipe has no reader.
	 */
	{
		int p[2];

		signal(SIGPIPE, SIG_IGN);
		tap_require(pipe2(p, O_CLOEXEC) == 0);
		tap_is_int((int)scm_send_bytes(sv[0], "", 0, p[0]), 0, "raw empty packet with a descriptor");
		close(p[0]);
		nfds = 5;
		tap_is_int(mmn__wire_recv(sv[1], rbuf, sizeof(rbuf), fds, 2, &nfds), 0, "empty packet: 0");
		tap_is_int(nfds, 0, "no descriptor handed out");
		tap_ok(write(p[1], "x", 1) < 0 && errno == EPIPE, "the empty packet's descriptor was closed");
		close(p[1]);
	}

	close(sv[0]);
	tap_is_int(mmn__wire_recv(sv[1], rbuf, sizeof(rbuf), fds, 2, &nfds), 0, "EOF after the peer closes: 0");
	close(sv[1]);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void test_seqpage(void)
{
	union {
		struct mmn_seqpage h;
		uint8_t bytes[MMN_SEQPAGE_SIZE(2)];
	} p = { .h = { MMN_SEQPAGE_MAGIC, MMN_SEQPAGE_VERSION, 2, 0 } };
	uint64_t v;

	p.h.slots[0] = (struct mmn_seqpage_slot){ .seq = 3, .gen = 7 };
	v = mmn_seqpage_load(&p.h.slots[0]);
	tap_is_int(MMN_SEQ_WORD(v), 3, "seq is the low half of the slot word");
	tap_is_int(MMN_SEQ_GEN(v), 7, "gen is the high half");
	tap_is_int(MMN_SEQPAGE_SIZE(2), 32, "MMN_SEQPAGE_SIZE(2)");
}

/* SubscribeMany, UnsubscribeMany and their replies; the largest reply fits one packet. */
static void test_batches(void)
{
	static Mmn__V1__SubscribeResult res[MMN_MAX_BATCH], *rp[MMN_MAX_BATCH];
	static Mmn__V1__SubscribeReply ok[MMN_MAX_BATCH];
	static Mmn__V1__Subscribe items[2], *ip[2] = {&items[0], &items[1]};
	Mmn__V1__SubscribeMany sm = MMN__V1__SUBSCRIBE_MANY__INIT;
	Mmn__V1__SubscribeManyReply smr = MMN__V1__SUBSCRIBE_MANY_REPLY__INIT;
	Mmn__V1__UnsubscribeMany um = MMN__V1__UNSUBSCRIBE_MANY__INIT;
	Mmn__V1__UnsubscribeManyReply umr = MMN__V1__UNSUBSCRIBE_MANY_REPLY__INIT;
	uint64_t ids[3] = {1, UINT64_MAX, 7};
	int32_t errs[MMN_MAX_BATCH];
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o;

	for (int i = 0; i < 2; i++) {
		mmn__v1__subscribe__init(&items[i]);
		items[i].start = 0x1000 * (uint64_t)(i + 1);
		items[i].length = 0x1000;
	}
	sm.items = ip;
	sm.n_items = 2;
	e.body_case = E(SUBSCRIBE_MANY);
	e.subscribe_many = &sm;
	if ((o = roundtrip(&e, "SubscribeMany"))) {
		tap_ok(o->subscribe_many->n_items == 2 && o->subscribe_many->items[1]->start == 0x2000,
		       "SubscribeMany.items in order");
		mmn__wire_free(o);
	}
	um.sub_ids = ids;
	um.n_sub_ids = 3;
	e.body_case = E(UNSUBSCRIBE_MANY);
	e.unsubscribe_many = &um;
	if ((o = roundtrip(&e, "UnsubscribeMany"))) {
		tap_ok(o->unsubscribe_many->n_sub_ids == 3 && o->unsubscribe_many->sub_ids[1] == UINT64_MAX,
		       "UnsubscribeMany.sub_ids");
		mmn__wire_free(o);
	}
	/* The worst case mmnd may send: MMN_MAX_BATCH results with every field at its widest. */
	for (int i = 0; i < MMN_MAX_BATCH; i++) {
		mmn__v1__subscribe_result__init(&res[i]);
		mmn__v1__subscribe_reply__init(&ok[i]);
		ok[i] = (Mmn__V1__SubscribeReply){.base = ok[i].base, .sub_id = UINT64_MAX, .seq_slot = UINT32_MAX,
						  .seq_gen = UINT32_MAX, .ack_timeout_ms = UINT32_MAX};
		res[i].reply = &ok[i];
		rp[i] = &res[i];
		errs[i] = INT32_MIN;
	}
	smr.results = rp;
	smr.n_results = MMN_MAX_BATCH;
	e.request_id = UINT64_MAX;
	e.body_case = E(SUBSCRIBE_MANY_REPLY);
	e.subscribe_many_reply = &smr;
	if ((o = roundtrip(&e, "SubscribeManyReply of MMN_MAX_BATCH widest results (fits one packet)"))) {
		tap_ok(o->subscribe_many_reply->n_results == MMN_MAX_BATCH &&
			       o->subscribe_many_reply->results[MMN_MAX_BATCH - 1]->reply->sub_id == UINT64_MAX,
		       "SubscribeManyReply.results");
		mmn__wire_free(o);
	}
	umr.errors = errs;
	umr.n_errors = MMN_MAX_BATCH;
	e.body_case = E(UNSUBSCRIBE_MANY_REPLY);
	e.unsubscribe_many_reply = &umr;
	if ((o = roundtrip(&e, "UnsubscribeManyReply of MMN_MAX_BATCH widest errors (fits one packet)"))) {
		tap_ok(o->unsubscribe_many_reply->errors[0] == INT32_MIN, "UnsubscribeManyReply.errors");
		mmn__wire_free(o);
	}
}

/* v2: the widest AckMany and the fullest EventBatch either side may send fit one packet. */
static void test_v2(void)
{
	static uint64_t ids[MMN_MAX_ACKS];
	static struct mmn_event_record recs[MMN_EVENT_BATCH_MAX];
	Mmn__V1__AckMany am = MMN__V1__ACK_MANY__INIT;
	Mmn__V1__EventBatch eb = MMN__V1__EVENT_BATCH__INIT;
	MmnEnvelope e = MMN__V1__ENVELOPE__INIT, *o;

	for (int i = 0; i < MMN_MAX_ACKS; i++)
		ids[i] = UINT64_MAX;
	am.n_sub_ids = am.n_event_ids = MMN_MAX_ACKS;
	am.sub_ids = am.event_ids = ids;
	e.request_id = UINT64_MAX;
	e.body_case = E(ACK_MANY);
	e.ack_many = &am;
	if ((o = roundtrip(&e, "AckMany of MMN_MAX_ACKS widest pairs (fits one packet)"))) {
		tap_ok(o->ack_many->n_sub_ids == MMN_MAX_ACKS && o->ack_many->event_ids[MMN_MAX_ACKS - 1] == UINT64_MAX,
		       "AckMany lists survive");
		mmn__wire_free(o);
	}
	memset(recs, 0xff, sizeof(recs));
	eb.records.data = (uint8_t *)recs;
	eb.records.len = sizeof(recs);
	e.body_case = E(EVENT_BATCH);
	e.event_batch = &eb;
	if ((o = roundtrip(&e, "EventBatch of MMN_EVENT_BATCH_MAX records (fits one packet)"))) {
		tap_ok(o->event_batch->records.len == sizeof(recs) &&
			       memcmp(o->event_batch->records.data, recs, sizeof(recs)) == 0,
		       "EventBatch records survive byte for byte");
		mmn__wire_free(o);
	}
}

int main(void)
{
	test_hello();
	test_subscribe();
	test_events();
	test_misc();
	test_batches();
	test_v2();
	test_rejects();
	test_socket();
	test_seqpage();
	return tap_done();
}
