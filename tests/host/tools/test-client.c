/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A real libmmn client for the mmnctl tests, driven over stdin/stdout:
 *
 *   test-client SOCKET blocking|nonblocking PAGES
 *
 * Maps PAGES anonymous pages, subscribes to them (its own memory, pid 0),
 * dispatches with mmn_dispatch() from its poll loop and prints
 * "READY PID START END".  Then
 * "unmap FIRST COUNT" unmaps pages (prints "unmapped"); EOF or "quit"
 * disconnects.  Events print "INVALIDATE START END" and "RELEASED REASON".
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mmn/mmn.h>

static int on_invalidate(struct mmn_sub *s, const struct mmn_range *r, void *ud)
{
	printf("INVALIDATE %" PRIx64 " %" PRIx64 "\n", r->start, r->end);
	fflush(stdout);
	return 0;
}

static void on_release(struct mmn_sub *s, int reason, void *ud)
{
	printf("RELEASED %d\n", reason);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct mmn_sub_opts opts = {.size = sizeof(opts), .invalidate = on_invalidate, .release = on_release};
	struct mmn_client *c = NULL;
	struct mmn_sub *s = NULL;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages, first, count;
	char line[128];
	char *mem;
	int r;

	if (argc != 4) {
		fprintf(stderr, "usage: test-client SOCKET blocking|nonblocking PAGES\n");
		return 2;
	}
	opts.flags = strcmp(argv[2], "blocking") == 0 ? MMN_SUB_BLOCKING : MMN_SUB_NONBLOCKING;
	pages = strtoul(argv[3], NULL, 10);
	mem = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	memset(mem, 1, pages * page);
	r = mmn_connect(argv[1], &c);
	if (r < 0) {
		fprintf(stderr, "test-client: mmn_connect: %s\n", mmn_strerror(r));
		return 1;
	}
	r = mmn_subscribe(c, 0, (uint64_t)(uintptr_t)mem, pages * page, &opts, &s);
	if (r < 0) {
		fprintf(stderr, "test-client: subscribe: %s\n", mmn_strerror(r));
		return 1;
	}
	printf("READY %d %" PRIx64 " %" PRIx64 "\n", (int)getpid(), (uint64_t)(uintptr_t)mem,
	       (uint64_t)(uintptr_t)mem + pages * page);
	fflush(stdout);

	for (;;) {
		struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
				      {.fd = mmn_get_fd(c), .events = POLLIN}};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			(void)mmn_dispatch(c);
		if (!p[0].revents)
			continue;
		if (!fgets(line, sizeof(line), stdin) || strncmp(line, "quit", 4) == 0)
			break;
		if (sscanf(line, "unmap %zu %zu", &first, &count) == 2 && first + count <= pages) {
			munmap(mem + first * page, count * page);
			printf("unmapped\n");
			fflush(stdout);
		}
	}
	mmn_disconnect(c);
	return 0;
}
