/* SPDX-License-Identifier: MIT */
/* Public API shim, continued: AO_calloc, AO_realloc, aligned allocation, usable size. */
/* PLACEHOLDER (skeleton): naive versions, replaced by the real layer. */
#include "internal.h"
#include "size_class.h"
#include "atomic_ops_malloc.h"

#include <errno.h>
#include <string.h>

size_t AO_malloc_usable_size(const void *p)
{
  struct large_header *large = NULL;
  struct span *d;
  unsigned c;

  if (p == NULL)
    return 0;
  c = page_class_of(p);
  if (c < NUM_SIZE_CLASSES)
    return class_size(c);
  if (c == PAGE_CLASS_FOREIGN)
    return 0;
  d = span_of(p, &large);
  if (d == NULL)
    return large != NULL ? large->map_size - LARGE_HEADER_SIZE : 0;
  return (size_t)d->run.npages << PAGE_SHIFT;
}

void *AO_calloc(size_t n, size_t size)
{
  size_t total;
  void *p;

  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  p = AO_malloc(total);
  if (p != NULL)
    memset(p, 0, total);
  return p;
}

void *AO_realloc(void *p, size_t size)
{
  size_t old;
  void *q;

  if (p == NULL)
    return AO_malloc(size);
  old = AO_malloc_usable_size(p);
  if (size <= old && size > old / 2)
    return p;
  q = AO_malloc(size);
  if (q == NULL)
    return NULL;
  memcpy(q, p, old < size ? old : size);
  AO_free(p);
  return q;
}

void *AO_aligned_alloc(size_t alignment, size_t size)
{
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment <= ALIGNMENT)
    return AO_malloc(size);
  errno = ENOMEM;                /* placeholder */
  return NULL;
}

int AO_posix_memalign(void **res, size_t alignment, size_t size)
{
  int saved = errno;
  void *p;

  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0)
    return EINVAL;
  p = AO_aligned_alloc(alignment, size);
  if (p == NULL) {
    errno = saved;
    return ENOMEM;
  }
  *res = p;
  return 0;
}
