/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One random change to one page, for stress tests that make the kernel
 * invalidate: unmap and map again, write-protect and unprotect, drop the
 * page, or touch it.  Header only.
 */
#ifndef MMN_TESTS_CHURN_H
#define MMN_TESTS_CHURN_H

#include <stddef.h>
#include <sys/mman.h>

/* @p is page aligned, @page the page size, @r a random number. */
static inline void churn_page(char *p, size_t page, unsigned r)
{
	switch (r % 4) {
	case 0:
		munmap(p, page);
		mmap(p, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		break;
	case 1:
		mprotect(p, page, PROT_READ);
		mprotect(p, page, PROT_READ | PROT_WRITE);
		break;
	case 2:
		madvise(p, page, MADV_DONTNEED);
		break;
	default:
		*(volatile char *)p = 1;
	}
}

#endif
