/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * max_queued at the top of the uint32_t range: a slow non-blocking client
 * is queued for (and, past the limit, coalesced), never dropped because
 * four times the limit wrapped.  The option itself is range-checked.
 */
#include "harness.h"
#include "broker-internal.h"
#include "clients/client.h"
#include "engine/list.h"

#define BODY(e) ((e) ? (int)(e)->body_case : -1)

static const uint64_t A = 0x200000;

static struct client *only_client(struct harness *h)
{
	return list_empty(&h->b->clients) ? NULL : list_entry(h->b->clients.next, struct client, link);
}

/*
 * Invalidate @n times without the client reading, then read everything:
 * how many Invalidates arrived, each paired with its InvalidateEnd.
 */
static void slow_reader(uint32_t max_queued, const char *what)
{
	struct broker_options o;
	struct harness h;
	struct tclient c;
	struct client *bc;
	uint64_t n_inv = 0, n_end = 0, open_id = 0;
	uint32_t queued = 0;
	bool paired = true;
	MmnEnvelope *m;

	mmn__broker_options_default(&o);
	h_init(&h, &o);
	/* White box: what a command line or SetDefaults could set before the range check. */
	h.b->opt.max_queued = max_queued;
	h_require(tc_hello(&h, &c) == 0);
	h_require(tc_subscribe(&h, &c, A, 0x1000, false, 0, NULL) != 0);
	for (int i = 0; i < 2000; i++) {
		uint64_t ev = mmn__source_test_invalidate(h.src, getpid(), A, A + 0x1000, 0, true);

		mmn__source_test_end(h.src, ev);
		h_pump(&h, 1);
		bc = only_client(&h);
		if (bc && bc->nqueued > queued)
			queued = bc->nqueued;
	}
	tap_ok(mmn__broker_nclients(h.b) == 1, "%s: the slow client is still connected", what);
	tap_ok(queued > 0, "%s: its socket filled and mmnd queued (up to %u)", what, queued);
	while ((m = tc_recv(&h, &c))) {
		if (BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE) {
			paired = paired && !open_id;
			open_id = m->invalidate->event_id;
			n_inv++;
		} else if (BODY(m) == MMN__V1__ENVELOPE__BODY_INVALIDATE_END) {
			paired = paired && open_id == m->invalidate_end->event_id;
			open_id = 0;
			n_end++;
		}
		mmn__wire_free(m);
		if (!open_id && tc_quiet(&h, &c))
			break;
	}
	tap_ok(paired && n_inv == n_end && n_inv > 0, "%s: %llu Invalidates read, each paired", what,
	       (unsigned long long)n_inv);
	if (max_queued >= 4096)
		tap_ok(n_inv == 2000, "%s: below the limit nothing is coalesced: %llu of 2000 delivered",
		       what, (unsigned long long)n_inv);
	else
		tap_ok(n_inv < 2000, "%s: past the limit events were coalesced (%llu of 2000 sent)", what,
		       (unsigned long long)n_inv);
	tc_close(&c);
	tap_ok(h_fini(&h) == 0, "%s: loop closes clean", what);
}

static void test_option_range(void)
{
	struct broker_options o;

	mmn__broker_options_default(&o);
	o.max_queued = UINT32_C(1) << 30;
	tap_is_int(mmn__broker_options_check(&o), -EINVAL, "max_queued 2^30: refused by the option check");
	o.max_queued = UINT32_MAX;
	tap_is_int(mmn__broker_options_check(&o), -EINVAL, "max_queued 2^32-1: refused");
	o.max_queued = 0;
	tap_is_int(mmn__broker_options_check(&o), -EINVAL, "max_queued 0: refused");
	o.max_queued = MMN_BROKER_DEFAULT_MAX_QUEUED;
	o.max_clients = UINT32_MAX;
	tap_is_int(mmn__broker_options_check(&o), -EINVAL, "max_clients 2^32-1: refused");
	o.max_clients = MMN_BROKER_DEFAULT_MAX_CLIENTS;
	tap_is_int(mmn__broker_options_check(&o), 0, "the defaults pass");
}

int main(void)
{
	slow_reader(UINT32_C(1) << 30, "max_queued 2^30");
	slow_reader(UINT32_MAX, "max_queued 2^32-1");
	slow_reader(8, "max_queued 8");
	test_option_range();
	return tap_done();
}
