/* SPDX-License-Identifier: MIT */
/* Public API shim: AO_malloc, AO_free, AO_malloc_enable_mmap, AO_malloc_trim. */
#include "internal.h"
#include "thread_cache.h"
#include "track.h"
#include "atomic_ops_malloc.h"

#include <errno.h>

/* Page runs this thread freed first; then pages at hand; then wholly free
 * spans of any class may hold what we need; only then new mappings.  A
 * run from the thread cache has been used: not known zero. */
AO_GPL_NOINLINE void *malloc_large(size_t sz, size_t align, unsigned *zero)
{
  int run = sz <= (size_t)MAX_RUN_PAGES * PAGE_SIZE
            && align <= (size_t)MAX_RUN_PAGES * PAGE_SIZE;
  void *p = run ? cache_alloc_run(sz, align) : NULL;

  if (p != NULL) {
    if (zero != NULL)
      *zero = 0;
    return p;
  }
  p = large_alloc(sz, align, 0, zero);
  if (p == NULL && run && central_reclaim() > 0)
    p = large_alloc(sz, align, 0, zero);
  if (p == NULL)
    p = large_alloc(sz, align, 1, zero);
  if (p == NULL && run) {
    /* Exhausted: this thread's cache, and those of threads that are
     * gone, may hold what is needed. */
    cache_flush_self();
    cache_reclaim_dead();
    central_reclaim();
    p = large_alloc(sz, align, 0, zero);
  }
  return p;
}

#ifndef AO_GPL_CHECKS
/* AO_malloc above SMALL_MAX, out of line: the small path stays a leaf. */
static AO_GPL_NOINLINE void *malloc_big(size_t sz)
{
  void *p = malloc_large(sz, PAGE_SIZE, NULL);

  if (p == NULL)
    errno = ENOMEM;
  track_alloc(p, sz);
  return p;
}

/* The heap is exhausted: out of line, so that nothing is live across
 * AO_malloc's slow call and its hit path saves no register. */
static AO_GPL_NOINLINE void *malloc_failed(void)
{
  errno = ENOMEM;
  return NULL;
}
#endif

/* Every NULL sets errno to ENOMEM, as malloc does (a plain store: fine in
 * a handler, which saves errno if it cares); a success leaves it alone,
 * which is why os_memory.c restores errno around its system calls. */
void *AO_malloc(size_t sz)
{
#ifdef AO_GPL_CHECKS
  void *p = sz <= SMALL_MAX ? cache_alloc(size_to_class(sz))
                            : malloc_large(sz, PAGE_SIZE, NULL);

  if (p != NULL)
    checks_allocated(p);
  else
    errno = ENOMEM;
  track_alloc(p, sz);
  return p;
#else
  void *p;

  /* Sizes up to 1 KiB first: size_to_class starts with that test too,
   * so the common case pays one compare, not two. */
  if (AO_GPL_UNLIKELY(sz > 1024) && sz > SMALL_MAX)
    return malloc_big(sz);
  p = cache_alloc(size_to_class(sz));
  if (AO_GPL_LIKELY(p != NULL)) {
    track_alloc(p, sz);
    return p;
  }
  return malloc_failed();
#endif
}

/* A direct mapping (c == PAGE_CLASS_LARGE): its header is read only once
 * large_lookup() has found p to be its user pointer, i.e. the caller its
 * owner; 0 when p lies in no mapping of ours. */
static int free_mapping(void *p, unsigned c)
{
  struct large_header *large;

  switch (large_lookup(p, &large)) {
  case LARGE_NONE:
    return 0;
  case LARGE_INSIDE:
    misuse_report("AO_free", p, "not the start of a block returned by "
                                "AO_malloc (inside a large object)");
  case LARGE_START:
    break;
  }
#ifdef AO_GPL_CHECKS
  checks_free(p, c);
#else
  (void)c;
#endif
  track_free(p, large->map_size - large->offset);
  large_free_mapping(large);
  return 1;
}

/* Everything but a small block going into this thread's cache.  What is
 * checked here costs nothing on the fast path: c is FOREIGN for pointers
 * that are misaligned or outside our memory, and page runs and mappings
 * are freed only by their first byte. */
static AO_GPL_NOINLINE void free_slow(void *p, unsigned c)
{
  struct span *d;

  if (c == PAGE_CLASS_LARGE && free_mapping(p, c))
    return;
#ifdef AO_GPL_MALLOC_REPLACEMENT
  /* As a process's malloc, free() also gets what it never handed out:
   * blocks of the dynamic loader's early allocator, of an allocator that
   * ran before us...  Those are ignored (and counted), as mature
   * replacements do; a pointer into our own memory that is no block start
   * is still a misuse, reported below. */
  if (c == PAGE_CLASS_LARGE       /* in no mapping of ours */
      || (c == PAGE_CLASS_FOREIGN && replace_is_foreign(p))) {
    stats_foreign_free();
    return;
  }
#endif
  /* A large block is in the side table only while live: a second free of
   * one (its mapping cached or gone) reads as a pointer not ours. */
  if (c == PAGE_CLASS_FOREIGN || c == PAGE_CLASS_LARGE)
    misuse_report("AO_free", p, ((uintptr_t)p & (ALIGNMENT - 1))
        ? "misaligned pointer: not a block returned by AO_malloc"
        : c == PAGE_CLASS_LARGE
        ? "pointer outside the allocator's memory (or a double free of a "
          "large block): not returned by AO_malloc"
        : "pointer outside the allocator's memory: not returned by AO_malloc");
  d = span_of(p);
  if (d == NULL)
    misuse_report("AO_free", p, "not a block returned by AO_malloc "
                                "(its page is not in use)");
  if (d->kind == SPAN_SMALL) {     /* tracked by AO_free */
    if (!cache_free_slow(d->size_class, p))
      central_free(d, p);
  } else {
    if ((char *)p != d->run.page_base)
      misuse_report("AO_free", p, "not the start of a block returned by "
                                  "AO_malloc (inside a large object)");
    track_free(p, (size_t)d->run.npages << PAGE_SHIFT);
    if (!cache_free_run(d))
      large_free_run(d);
  }
}

void AO_free(void *p)
{
  unsigned c;

  if (p == NULL)
    return;
  c = page_class_of(p);
#ifdef AO_GPL_CHECKS
  /* Small blocks and page runs; a mapping once known to be one. */
  if (c != PAGE_CLASS_FOREIGN && c != PAGE_CLASS_LARGE)
    checks_free(p, c);
#endif
  if (AO_GPL_LIKELY(c < NUM_SIZE_CLASSES)) {
    track_free(p, class_size(c));
    if (cache_free(c, p))
      return;
  }
  free_slow(p, c);
}

#ifdef AO_GPL_MALLOC_REPLACEMENT
/* libaomalloc: malloc and free are AO_malloc and AO_free themselves (one
 * symbol, two names), so they cost no extra call.  glibc's semantics
 * already hold: malloc(0) is a unique block, a failure sets ENOMEM, free
 * keeps errno and ignores NULL.  The rest is in malloc_replace.c. */
#define REPLACE_ALIAS(target) \
  __attribute__((__alias__(#target), __visibility__("default")))
extern __typeof(AO_malloc) malloc REPLACE_ALIAS(AO_malloc)
    AO_ATTR_MALLOC AO_ATTR_ALLOC_SIZE(1);
extern __typeof(AO_free) free REPLACE_ALIAS(AO_free);
/* C++ operator delete (plain, array, sized: the size is ignored) is free
 * itself, as for malloc: libstdc++'s own goes through two calls and a PLT
 * jump to get here.  Operator new is in malloc_replace.c.  The mangled
 * size_t is 'm' (unsigned long) on LP64, 'j' (unsigned int) on ILP32. */
#if __SIZEOF_POINTER__ == 8
# define CXX_SIZED(name) name##m
#else
# define CXX_SIZED(name) name##j
#endif
extern __typeof(AO_free) _ZdlPv REPLACE_ALIAS(AO_free);
extern __typeof(AO_free) _ZdaPv REPLACE_ALIAS(AO_free);
/* The sized ones take (void *, size_t): declared with free's type, since
 * the caller passes and cleans up its arguments (every C ABI we build
 * for), so an ignored second argument is harmless. */
extern __typeof(AO_free) CXX_SIZED(_ZdlPv) REPLACE_ALIAS(AO_free);
extern __typeof(AO_free) CXX_SIZED(_ZdaPv) REPLACE_ALIAS(AO_free);
#endif

void AO_malloc_enable_mmap(void)
{
  os_enable_mmap();
}

int AO_malloc_trim(void)
{
  cache_flush_self();
  cache_reclaim_dead();
  central_reclaim();
  return large_trim() | chunk_trim();
}
