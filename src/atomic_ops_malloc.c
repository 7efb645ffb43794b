/* SPDX-License-Identifier: MIT */
/* Public API shim: AO_malloc, AO_free, AO_malloc_enable_mmap, AO_malloc_trim. */
#include "internal.h"
#include "thread_cache.h"
#include "atomic_ops_malloc.h"

/* Page runs this thread freed first; then pages at hand; then wholly free
 * spans of any class may hold what we need; only then new mappings. */
static AO_GPL_NOINLINE void *malloc_large(size_t sz)
{
  int run = sz <= (size_t)MAX_RUN_PAGES * PAGE_SIZE;
  void *p = run ? cache_alloc_run(sz) : NULL;

  if (p == NULL)
    p = large_alloc(sz, 0);
  if (p == NULL && run && central_reclaim() > 0)
    p = large_alloc(sz, 0);
  if (p == NULL)
    p = large_alloc(sz, 1);
  if (p == NULL && run) {
    /* Exhausted: this thread's cache may hold what is needed. */
    cache_flush_self();
    central_reclaim();
    p = large_alloc(sz, 0);
  }
  return p;
}

void *AO_malloc(size_t sz)
{
  if (AO_GPL_LIKELY(sz <= SMALL_MAX))
    return cache_alloc(size_to_class(sz));
  return malloc_large(sz);
}

/* Everything but a small block going into this thread's cache. */
static AO_GPL_NOINLINE void free_slow(void *p)
{
  struct large_header *large = NULL;
  struct span *d = span_of(p, &large);

  if (d == NULL)
    large_free_mapping(large);
  else if (d->kind == SPAN_SMALL) {
    if (!cache_free_slow(d->size_class, p))
      central_free(d, p);
  }
  else if (!cache_free_run(d))
    large_free_run(d);
}

void AO_free(void *p)
{
  unsigned c;

  if (p == NULL)
    return;
  c = page_class_of(p);
  if (AO_GPL_LIKELY(c < NUM_SIZE_CLASSES) && cache_free(c, p))
    return;
  free_slow(p);
}

void AO_malloc_enable_mmap(void)
{
  os_enable_mmap();
}

int AO_malloc_trim(void)
{
  cache_flush_self();
  central_reclaim();
  return large_trim() | chunk_trim();
}
