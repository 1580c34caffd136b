/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The import's settings that are not public API (preload.c sets them). */
#ifndef MMN_LIBFABRIC_IMPORT_H
#define MMN_LIBFABRIC_IMPORT_H

#include <stdbool.h>

/* Print the first failed subscription on stderr (the library is silent otherwise). */
void mlf_import_report_errors(bool on);

#endif
