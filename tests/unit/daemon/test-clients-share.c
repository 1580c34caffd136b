/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Share: a token is handed out only when the source can watch other
 * processes; a source that watches each client's own memory only (uffd)
 * answers Error{-EOPNOTSUPP} instead of a token nobody could ever use.
 */
#include "harness.h"

#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static MmnEnvelope *share(struct harness *h, struct tclient *c)
{
	Mmn__V1__Share s = MMN__V1__SHARE__INIT;
	MmnEnvelope env = MMN__V1__ENVELOPE__INIT;

	s.start = 0x200000;
	s.length = 0x1000;
	s.peer_uid = 65534;
	env.request_id = ++c->next_rid;
	env.body_case = MMN__V1__ENVELOPE__BODY_SHARE;
	env.share = &s;
	h_require(tc_send(c, &env) == 0);
	return tc_recv(h, c);
}

int main(void)
{
	struct harness h;
	struct tclient c;
	MmnEnvelope *m;

	h_init(&h, NULL);
	h_require(tc_hello(&h, &c) == 0);

	m = share(&h, &c);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_SHARE_REPLY && m->share_reply->token.len == 16,
	       "a source that watches other processes: ShareReply with a 16-byte token");
	mmn__wire_free(m);

	/* The test source, told it watches only its clients (as the uffd source does). */
	h.src->caps.other_processes = false;
	m = share(&h, &c);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR && m->error->error == -EOPNOTSUPP,
	       "a self-only source: Error -EOPNOTSUPP (got body %d error %d)", BODY(m),
	       BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR ? m->error->error : 0);
	tap_ok(BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR && m->error->message &&
		       strstr(m->error->message, "own memory"),
	       "a self-only source: the message says why (%s)",
	       BODY(m) == MMN__V1__ENVELOPE__BODY_ERROR ? m->error->message : "-");
	mmn__wire_free(m);
	tap_ok(tc_subscribe(&h, &c, 0x200000, 0x1000, false, 0, NULL) != 0,
	       "a self-only source: the client stays connected and can subscribe to itself");
	tc_close(&c);
	tap_ok(h_fini(&h) == 0, "loop closes clean");
	return tap_done();
}
