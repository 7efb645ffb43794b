/* SPDX-License-Identifier: MIT */
/* Public API shim: AO_malloc, AO_free, AO_malloc_enable_mmap. */
#include "internal.h"
#include "size_class.h"
#include "atomic_ops_malloc.h"

/* Pages at hand first; then wholly free spans of any class may hold what we
 * need; only then new mappings. */
static AO_GPL_NOINLINE void *malloc_large(size_t sz)
{
  void *p = large_alloc(sz, 0);

  if (p == NULL && sz <= (size_t)MAX_RUN_PAGES * PAGE_SIZE
      && central_reclaim() > 0)
    p = large_alloc(sz, 0);
  return p != NULL ? p : large_alloc(sz, 1);
}

void *AO_malloc(size_t sz)
{
  if (AO_GPL_LIKELY(sz <= SMALL_MAX))
    return central_alloc(size_to_class(sz));
  return malloc_large(sz);
}

void AO_free(void *p)
{
  struct large_header *large;
  struct span *d;

  if (p == NULL)
    return;
  d = span_of(p, &large);
  if (AO_GPL_LIKELY(d != NULL && d->kind == SPAN_SMALL))
    central_free(d, p);
  else if (d != NULL)
    large_free_run(d);
  else
    large_free_mapping(large);
}

void AO_malloc_enable_mmap(void)
{
  os_enable_mmap();
}
