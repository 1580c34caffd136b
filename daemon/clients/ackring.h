/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A client's ack ring (proto/ack-ring.h): the AckMany items it writes to
 * shared memory instead of its socket, and the eventfd it rings after.
 * Loop thread only.
 *
 * Owned by its client (client->ackring) from Hello to client_destroy(),
 * which unmaps the ring and closes the poll handle; the struct itself is
 * freed in that handle's close callback, after which nothing refers to it.
 */
#ifndef MMN_DAEMON_ACKRING_H
#define MMN_DAEMON_ACKRING_H

struct client;

/*
 * Create @c's ring and watch its doorbell: 0, or a negative errno.  The
 * ring's memfd and the doorbell for HelloReply are in fds[0] and fds[1];
 * the caller closes fds[0] once sent, the doorbell stays ours.
 */
int mmn__ackring_create(struct client *c, int fds[2]);

/*
 * Handle the entries @c published since the last call, in order, as
 * AckMany items; a malformed ring is @c's protocol error (it is dropped).
 * Called before each packet read from @c and when the doorbell rings.
 */
void mmn__ackring_take(struct client *c);

/* Unmap @c's ring and close its doorbell (the struct goes at close time). */
void mmn__ackring_destroy(struct client *c);

#endif
