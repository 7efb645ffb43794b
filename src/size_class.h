/* SPDX-License-Identifier: MIT */
/* The size-class table and the inline size -> class mapping. */
#ifndef AO_GPL_SIZE_CLASS_H
#define AO_GPL_SIZE_CLASS_H

#include "internal.h"

/*
 * Classes: 16, 32, ..., 128 in steps of 16, then eight per power of two
 * (144, 160, ..., 256, 288, ..., 28672, 30720, 32768).  Neighbours are at
 * most 14% apart from 112 B up (12.5% from 128 B); below, the 16-byte
 * alignment of every block forces steps of 16 B.  Every class size is a
 * multiple of 16, so blocks carved from a page-aligned span stay 16-byte
 * aligned without any per-object header.
 */
#define NUM_SIZE_CLASSES 72
#define SMALL_MAX ((size_t)32768)

/* The class of sizes up to 1 KiB by (size + 15) / 16: every class size is
 * a multiple of 16, so the class is constant on each 16-byte step. */
static const unsigned char small_class_of[65] = {
  0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
  12, 13, 14, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20,
  20, 21, 21, 22, 22, 23, 23, 24, 24, 24, 24, 25, 25,
  25, 25, 26, 26, 26, 26, 27, 27, 27, 27, 28, 28, 28,
  28, 29, 29, 29, 29, 30, 30, 30, 30, 31, 31, 31, 31
};

AO_GPL_INLINE unsigned size_to_class(size_t sz)
{
  unsigned k;

  if (AO_GPL_LIKELY(sz <= 1024))
    return small_class_of[(sz + 15) >> 4];
  if (sz <= 128)
    return sz == 0 ? 0 : (unsigned)((sz - 1) >> 4);
  /* 2^k < sz <= 2^(k+1): the class is the eighth of that octave. */
  k = (unsigned)(8 * sizeof(unsigned long) - 1)
      - (unsigned)__builtin_clzl((unsigned long)(sz - 1));
  return (k - 7) * 8 + (unsigned)((sz - 1) >> (k - 3));
}

static inline size_t class_size(unsigned c)
{
  if (c < 8)
    return (size_t)(c + 1) * 16;
  c -= 8;
  return (size_t)(9 + c % 8) << (7 + c / 8 - 3);
}

/* The fewest pages that hold one block of class c. */
static inline unsigned class_min_pages(unsigned c)
{
  return (unsigned)((class_size(c) + PAGE_SIZE - 1) / PAGE_SIZE);
}

/* Pages per span: room for at least 8 blocks, at most 128 KiB (so a span
 * of a big class does not hog a 2 MiB static heap), and at least 16 KiB,
 * growing to 32 and 64 KiB once memory can grow by mmap and the class has
 * had a few spans (made: spans of the class carved so far).  Carving is
 * lazy (span.c: blocks are written as they are taken), so an unused tail
 * costs address space and static-heap pages, not resident memory; small
 * first spans keep a short-lived process that touches many classes once
 * (a compiler, a shell) from reserving 64 KiB per class for a few blocks,
 * and a class in heavy use soon gets the bigger spans (fewer
 * descriptors).  With the static heap alone, also at most a sixteenth of
 * it (but one block): a 64 KiB heap would otherwise
 * be gone in two or three spans, or could not hold the first span of a
 * mid-size class beside the thread cache's own.  span_new_small falls
 * back to fewer pages when these are not to be had. */
static inline unsigned class_span_pages(unsigned c, int plentiful,
                                        unsigned long made)
{
  size_t pages = (class_size(c) * 8 + PAGE_SIZE - 1) / PAGE_SIZE;
  size_t least = !plentiful || made < 2 ? 4 : made < 6 ? 8 : 16;

  if (pages < least)
    pages = least;
  if (pages > 32)
    pages = 32;
  if (!plentiful && pages > STATIC_PAGES / 16) {
    pages = STATIC_PAGES / 16;
    if (pages < class_min_pages(c))
      pages = class_min_pages(c);
  }
  return (unsigned)pages;
}

#endif /* AO_GPL_SIZE_CLASS_H */
