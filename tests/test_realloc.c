/* SPDX-License-Identifier: MIT */
/* AO_realloc: contents kept across classes, runs and mappings; in place when it fits; mremap growth; NULL, 0, failure. */
#include "test_util.h"

#include "atomic_ops_malloc.h"

/* Grow then shrink through every kind of block; the common prefix must
 * survive each step. */
static void chain(const size_t *steps, size_t n, uint64_t tag)
{
  unsigned char *p = NULL;
  size_t i, have = 0;

  for (i = 0; i < n; i++) {
    size_t keep = have < steps[i] ? have : steps[i];
    unsigned char *q = AO_realloc(p, steps[i]);

    TU_CHECK(q != NULL, "AO_realloc(%zu -> %zu) failed", have, steps[i]);
    TU_CHECK((uintptr_t)q % TU_ALIGN == 0, "misaligned realloc result");
    TU_CHECK(tu_check(q, keep, tag) == (size_t)-1,
             "contents lost going from %zu to %zu bytes", have, steps[i]);
    TU_CHECK(AO_malloc_usable_size(q) >= steps[i], "usable size too small");
    tu_fill(q, steps[i], tag);
    p = q;
    have = steps[i];
  }
  AO_free(p);
}

static void in_place(void)
{
  unsigned char *p = AO_malloc(100), *q;       /* class 112 */

  tu_fill(p, 100, 7);
  q = AO_realloc(p, 112);
  TU_CHECK(q == p, "growth within the class moved the block");
  q = AO_realloc(p, 60);
  TU_CHECK(q == p, "a shrink to more than half moved the block");
  TU_CHECK(tu_check(q, 60, 7) == (size_t)-1, "in-place shrink lost data");
  q = AO_realloc(p, 10);
  TU_CHECK(q != p && AO_malloc_usable_size(q) == 16,
           "a shrink to a class of at most half did not move (usable %zu)",
           AO_malloc_usable_size(q));
  TU_CHECK(tu_check(q, 10, 7) == (size_t)-1, "moving shrink lost data");
  AO_free(q);
  p = AO_malloc(40000);                        /* a run of 10 pages */
  tu_fill(p, 40000, 8);
  q = AO_realloc(p, 40960);
  TU_CHECK(q == p, "growth within the run moved it");
  q = AO_realloc(p, 4000);
  TU_CHECK(q != p && AO_malloc_usable_size(q) == 4096,
           "a run shrunk to a small block stayed a run");
  TU_CHECK(tu_check(q, 4000, 8) == (size_t)-1, "run to class lost data");
  AO_free(q);
}

/* The compiler must not see it (it warns about impossible sizes). */
static volatile size_t size_max = (size_t)-1;

static void null_zero_fail(void)
{
  unsigned char *p = AO_realloc(NULL, 50), *q;

  TU_CHECK(p != NULL && AO_malloc_usable_size(p) >= 50, "AO_realloc(NULL, 50)");
  tu_fill(p, 50, 9);
  errno = 0;
  q = AO_realloc(p, size_max - 100);
  TU_CHECK(q == NULL && errno == ENOMEM, "a huge realloc did not fail");
  TU_CHECK(tu_check(p, 50, 9) == (size_t)-1, "failed realloc changed p");
  q = AO_realloc(p, 0);
  TU_CHECK(q != NULL, "AO_realloc(p, 0) returned NULL");
  AO_free(q);
}

/* Grow a direct mapping many times: with mremap the data stays, the
 * result is a valid block (AO_free finds its header by masking). */
static void mapping_growth(void)
{
  size_t sz = (size_t)1 << 20, moved = 0;
  unsigned char *p = AO_malloc(sz), *q;
  int i;

  tu_fill_sparse(p, sz, 11);
  for (i = 0; i < 12; i++) {
    size_t nsz = sz + ((size_t)3 << 20) + (size_t)i * 4096;

    q = AO_realloc(p, nsz);
    TU_CHECK(q != NULL, "growing a mapping to %zu failed", nsz);
    TU_CHECK(tu_check_sparse(q, sz, 11) == (size_t)-1,
             "growing a mapping from %zu to %zu lost data", sz, nsz);
    moved += q != p;
    tu_fill_sparse(q, nsz, 11);
    /* A neighbour, so that the next growth often cannot stay in place. */
    AO_free(AO_malloc(sz));
    p = q;
    sz = nsz;
  }
  q = AO_realloc(p, (size_t)2 << 20);
  TU_CHECK(q != NULL && tu_check(q, TU_SPARSE_EDGE, 11) == (size_t)-1,
           "shrinking a mapping lost data");
  AO_free(q);
  tu_info("a mapping grew 12 times to %zu MiB (%zu moves)", sz >> 20, moved);
}

int main(int argc, char **argv)
{
  /* Classes and runs: the static heap, before AO_malloc_enable_mmap()
   * (the runs are 200000, 100000 and 262144 bytes on 64-bit targets). */
  static const size_t small_steps[] = { 1, 16, 17, 100, 1000, 5000, 32768,
                                        40000, TU_BIG_RUN, TU_BIG_RUN / 2,
                                        TU_MAX_RUN, 3000, 10, 0, 33 };
  static const size_t big_steps[] = { 1, 200000, (size_t)1 << 20,
                                      (size_t)9 << 20, (size_t)40 << 20,
                                      (size_t)41 << 20, (size_t)8 << 20,
                                      300000, 5000, 16 };
  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "the realloc phases");
  chain(small_steps, sizeof(small_steps) / sizeof(small_steps[0]), 1);
  in_place();
  null_zero_fail();
  AO_malloc_enable_mmap();
  chain(small_steps, sizeof(small_steps) / sizeof(small_steps[0]), 2);
  chain(big_steps, sizeof(big_steps) / sizeof(big_steps[0]), 3);
  in_place();
  null_zero_fail();
  mapping_growth();
  tu_info("contents kept across classes, runs and mappings; in place when "
          "it fits");
  return 0;
}
