/* SPDX-License-Identifier: MIT */
/* A thread's bins start small: a class used for one block keeps few blocks in the cache, a class in real use still fills its bin. */
/*
 * With mmap enabled, on one thread (AO_malloc_stats' thread_cached then
 * counts this thread's cache alone), first thing in the process:
 *  1. One block of each of about sixty sizes from 16 B to 32 KiB (most
 *     classes), allocated and kept: each refill brought in a few blocks
 *     at most, so the cache holds under 96 KiB.  (With every bin at its
 *     base from the start, each refill took up to 8 KiB of its class:
 *     about 260 KiB in all.)
 *  2. Then 300 blocks of 64 B allocated and freed: the bin doubles up to
 *     its base and beyond, so the cache holds at least 128 of them: the
 *     slow start does not keep a class in real use small.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define ONE_EACH_BOUND ((size_t)96 << 10)
#define MANY 300

static size_t cached(void)
{
  struct AO_malloc_stats st;

  AO_malloc_stats(&st);
  return st.thread_cached;
}

int main(int argc, char **argv)
{
  static void *kept[128], *many[MANY];
  size_t size, held, before;
  unsigned n = 0, i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the slow start checks");
  AO_malloc_enable_mmap();

  /* 1: sizes up to 12% apart. */
  for (size = 16; size <= 32768 && n < 128;
       size += size / 8 > 16 ? (size / 8) & ~(size_t)15 : 16) {
    kept[n] = AO_malloc(size);
    TU_CHECK(kept[n] != NULL, "AO_malloc(%zu) returned NULL", size);
    memset(kept[n], 1, size);
    n++;
  }
  held = cached();
  tu_info("one block of each of %u sizes 16 B..32 KiB: %zu bytes cached",
          n, held);
  TU_CHECK(held < ONE_EACH_BOUND, "one block of each class left %zu bytes "
           "in the thread cache, want < %zu", held, ONE_EACH_BOUND);

  /* 2 */
  before = cached();
  for (i = 0; i < MANY; i++) {
    many[i] = AO_malloc(64);
    TU_CHECK(many[i] != NULL, "AO_malloc(64) returned NULL");
    memset(many[i], 2, 64);
  }
  for (i = 0; i < MANY; i++)
    AO_free(many[i]);
  held = cached();
  tu_info("%u blocks of 64 B freed: cache %zu -> %zu bytes", MANY, before,
          held);
  TU_CHECK(held >= before + 128 * 64, "after %u frees of 64 B blocks the "
           "cache holds %zu bytes (was %zu): the bin did not grow to its "
           "base", MANY, held, before);
  for (i = 0; i < n; i++)
    AO_free(kept[i]);
  return 0;
}
