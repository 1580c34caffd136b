/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hello: the smallest libmmn client (README, "Install").  Watches four pages
 * of its own, unmaps two of them and prints the invalidation mmnd delivers.
 * Built against an installed libmmn with nothing but pkg-config:
 *
 *   cc -o hello hello.c $(pkg-config --cflags --libs mmn)
 *   ./hello [SOCKET]     (default: $MMN_SOCKET, else /run/mmn/mmnd.sock)
 *
 * Exits 0 once the invalidation arrived, 1 on an error or after 5 s without.
 * The subscription is non-blocking, so nothing waits for the callback, which
 * may therefore print (a blocking one's must not fault: see mmn.h).
 */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mmn/mmn.h>

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *userdata)
{
	int *seen = userdata;

	(void)s;
	printf("invalidate [%#llx, %#llx) event %d\n", (unsigned long long)r->start,
	       (unsigned long long)r->end, (int)r->event);
	*seen = 1;
	return 0;
}

int main(int argc, char **argv)
{
	size_t len = 4 * (size_t)sysconf(_SC_PAGESIZE);
	int seen = 0, r;
	struct mmn_sub_opts o = {
		.size = sizeof(o),
		.flags = MMN_SUB_NONBLOCKING,
		.invalidate = on_invalidate,
		.userdata = &seen,
	};
	struct mmn_client *c;
	struct mmn_sub *s;
	struct pollfd p;
	char *buf;

	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	r = mmn_connect(argc > 1 ? argv[1] : NULL, &c);
	if (r < 0) {
		fprintf(stderr, "mmn_connect: %s\n", mmn_strerror(r));
		return 1;
	}
	r = mmn_subscribe(c, 0, (uintptr_t)buf, len, &o, &s);
	if (r < 0) {
		fprintf(stderr, "mmn_subscribe: %s\n", mmn_strerror(r));
		mmn_disconnect(c);
		return 1;
	}
	munmap(buf + len / 2, len / 2);

	/* Callbacks run here, in mmn_dispatch(), on this thread. */
	p = (struct pollfd){.fd = mmn_get_fd(c), .events = POLLIN};
	while (!seen && poll(&p, 1, 5000) > 0)
		mmn_dispatch(c);
	mmn_disconnect(c);
	return seen ? 0 : 1;
}
