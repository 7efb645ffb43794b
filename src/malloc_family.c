/* SPDX-License-Identifier: MIT */
/* Public API shim, continued: AO_calloc, AO_realloc, aligned allocation, usable size. */
#include "internal.h"
#include "size_class.h"
#include "thread_cache.h"
#include "track.h"
#include "atomic_ops_malloc.h"

#include <errno.h>
#include <string.h>

/* memcheck marks a MALLOCLIKE block undefined whatever its contents: in
 * the valgrind build calloc always writes its zeros. */
#ifdef AO_GPL_VALGRIND
# define TRUST_ZERO 0
#else
# define TRUST_ZERO 1
#endif

/* What AO_malloc does with a block it got: the same checks, errno and
 * tracking, for blocks the functions below take from the layers. */
static void *handed_out(void *p, size_t n)
{
  if (AO_GPL_UNLIKELY(p == NULL)) {
    errno = ENOMEM;
    return NULL;
  }
#ifdef AO_GPL_CHECKS
  checks_allocated(p);
#endif
  track_alloc(p, n);
  return p;
}

/* A live block as AO_free sees it: exactly one of c < NUM_SIZE_CLASSES
 * (a small block), run (a page run) or large (a direct mapping). */
struct block {
  unsigned c;
  struct span *run;
  struct large_header *large;
  size_t usable;
};

/* Classify p as AO_free does; a pointer AO_free would reject is reported
 * (fn != NULL: misuse_report aborts) or gives 0.  Nothing past p's
 * segment header is read before p is known to be ours, and a large
 * mapping's header only through large_lookup(). */
static int block_find(const void *p, const char *fn, struct block *b)
{
  const char *what = NULL;
  struct span *d;

  b->c = page_class_of(p);
  b->run = NULL;
  b->large = NULL;
  if (AO_GPL_LIKELY(b->c < NUM_SIZE_CLASSES)) {
    b->usable = class_size(b->c);
#ifdef AO_GPL_CHECKS
    /* As AO_free: only the checking build pays for the span lookup that
     * tells a block start from a pointer inside a small block. */
    d = span_of(p);
    if (d == NULL || d->kind != SPAN_SMALL
        || ((size_t)((const char *)p - d->run.page_base)) % d->block_size) {
      if (fn != NULL)
        misuse_report(fn, p, "not the start of a block returned by "
                             "AO_malloc (inside a small block)");
      return 0;
    }
#endif
    return 1;
  }
  if (b->c == PAGE_CLASS_LARGE) {
    enum large_where w = large_lookup(p, &b->large);

    if (w == LARGE_START) {
      b->usable = b->large->map_size - b->large->offset;
      return 1;
    }
    b->large = NULL;
    what = w == LARGE_INSIDE
        ? "not the start of a block returned by AO_malloc "
          "(inside a large object)"
        : "pointer outside the allocator's memory: not returned by AO_malloc";
  } else if (b->c == PAGE_CLASS_FOREIGN) {
    what = ((uintptr_t)p & (ALIGNMENT - 1))
        ? "misaligned pointer: not a block returned by AO_malloc"
        : "pointer outside the allocator's memory: not returned by AO_malloc";
  } else if ((d = span_of(p)) == NULL) {
    what = "not a block returned by AO_malloc (its page is not in use)";
  } else if (d->kind == SPAN_RUN && (const char *)p == d->run.page_base) {
    b->run = d;
    b->usable = (size_t)d->run.npages << PAGE_SHIFT;
    return 1;
  } else {
    what = "not the start of a block returned by AO_malloc "
           "(inside a large object)";
  }
  if (fn != NULL)
    misuse_report(fn, p, what);
  return 0;
}

/* Foreign pointers give 0 (no report: a probe, not a use).  Writing up to
 * the result is valid: the tracking builds widen the block to it. */
size_t AO_malloc_usable_size(const void *p)
{
  struct block b;

  if (p == NULL || !block_find(p, NULL, &b))
    return 0;
  track_resize((void *)p, b.usable, b.usable);
  return b.usable;
}

/*
 * Small blocks are zeroed by memset: they come from thread caches and
 * spans that were used before.  Page runs read as zeros when the chunk
 * provider saw every page clean when claiming them (never handed out
 * since mapped, or dropped by a trim), mappings when fresh from mmap.
 */
void *AO_calloc(size_t n, size_t size)
{
  size_t total;
  unsigned zero = 0;
  void *p;

  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  if (AO_GPL_LIKELY(total <= SMALL_MAX)) {
    /* AO_malloc's small path, inline: one call less per calloc. */
    p = handed_out(cache_alloc(size_to_class(total)), total);
    if (p != NULL)
      memset(p, 0, total);
    return p;
  }
  p = handed_out(malloc_large(total, PAGE_SIZE, &zero), total);
  if (p != NULL && !(TRUST_ZERO && zero))
    memset(p, 0, total);
  return p;
}

/* Copy to a new block: only on growth beyond the block, or a shrink that
 * the rule of AO_realloc says should move. */
static AO_GPL_NOINLINE void *realloc_move(void *p, const struct block *b,
                                          size_t size)
{
  void *q = AO_malloc(size);

  if (q == NULL)
    return NULL;
  /* In the tracking builds the bytes past the old request are no-access:
   * open the whole block for the copy (and for AO_free's record). */
  track_resize(p, b->usable, b->usable);
  memcpy(q, p, b->usable < size ? b->usable : size);
  AO_free(p);
  return q;
}

/*
 * In place while the new size fits the block, unless it would fit in half
 * of it: a block shrunk to half or less moves to a smaller class (or from
 * a run or a mapping to a smaller one), so a shrunk buffer does not pin
 * memory; for a small block the test is on the class the new size gets,
 * so a block stays where it is unless a class of at most half its size
 * can hold the data.  Direct mappings that stay mappings are shrunk and
 * grown without a copy (large_resize).
 */
static void *realloc_block(void *p, size_t size, const struct block *bp)
{
  struct block b = *bp;
  void *q;

  if (AO_GPL_LIKELY(size <= b.usable)) {
    if (AO_GPL_LIKELY(size > b.usable / 2)
        || (b.c < NUM_SIZE_CLASSES && size != 0
            && class_size(size_to_class(size)) > b.usable / 2)) {
      track_resize(p, b.usable, size);
      return p;
    }
    if (size == 0) {
      /* A fresh minimal block first: on failure p must be untouched. */
      q = AO_malloc(0);
      if (q != NULL)
        AO_free(p);
      return q;
    }
  }
  if (b.large != NULL && size > (size_t)MAX_RUN_PAGES * PAGE_SIZE) {
    q = large_resize(b.large, size);
    if (q != NULL) {
      track_resize(q, size, size);
      return q;
    }
  }
  return realloc_move(p, &b, size);
}

void *AO_realloc(void *p, size_t size)
{
  struct block b;

  if (p == NULL)
    return AO_malloc(size);
  block_find(p, "AO_realloc", &b);
  return realloc_block(p, size, &b);
}

#ifdef AO_GPL_MALLOC_REPLACEMENT
/* realloc() of the replacement for p != NULL, size != 0: AO_realloc, but
 * a pointer that was never ours fails with ENOMEM, left alone.  One
 * lookup for our own blocks: replace_is_foreign is asked only about what
 * block_find does not know, and a pointer into our memory that is no
 * block start is reported as AO_realloc would. */
void *replace_realloc(void *p, size_t size)
{
  struct block b;

  if (AO_GPL_UNLIKELY(!block_find(p, NULL, &b))) {
    if (replace_is_foreign(p)) {
      errno = ENOMEM;
      return NULL;
    }
    block_find(p, "AO_realloc", &b);
  }
  return realloc_block(p, size, &b);
}
#endif

/*
 * Alignments up to PAGE_SIZE come from the size classes when one fits:
 * spans start on a page, so the blocks of a class whose size is a multiple
 * of the alignment are all aligned (the smallest such class at least the
 * size is taken).  Otherwise a page run starting at an aligned page (up to
 * MAX_RUN_PAGES pages, alignment included), else a direct mapping with the
 * user pointer at offset alignment from its SEGMENT_SIZE-aligned header:
 * alignments up to SEGMENT_SIZE / 2, since AO_free finds the header by
 * masking.  Without mmap (static heap only), alignments the heap's free
 * pages cannot give fail with ENOMEM.
 */
void *AO_aligned_alloc(size_t alignment, size_t size)
{
  unsigned c;

  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment <= ALIGNMENT)
    return AO_malloc(size);
  if (alignment >= SEGMENT_SIZE) {
    errno = ENOMEM;
    return NULL;
  }
  if (alignment <= PAGE_SIZE && size <= SMALL_MAX) {
    for (c = size_to_class(size); c < NUM_SIZE_CLASSES; c++)
      if ((class_size(c) & (alignment - 1)) == 0)
        return handed_out(cache_alloc(c), size);
  }
  return handed_out(malloc_large(size, alignment, NULL), size);
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
