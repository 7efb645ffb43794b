/* SPDX-License-Identifier: MIT */
/* Public API shim, continued: AO_malloc_stats and AO_malloc_stats_print. */
/* PLACEHOLDER (skeleton): zeros, replaced by the real snapshot. */
#include "internal.h"
#include "atomic_ops_malloc.h"

#include <string.h>

void AO_malloc_stats(struct AO_malloc_stats *st)
{
  memset(st, 0, sizeof(*st));
  st->foreign_frees = (unsigned long)AO_load(&ao_gpl_foreign_frees);
}

int AO_malloc_stats_print(int fd)
{
  (void)fd;
  return 0;
}
