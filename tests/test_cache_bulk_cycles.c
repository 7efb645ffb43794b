/* SPDX-License-Identifier: MIT */
/* Bulk alloc-then-free cycles stay in the thread cache, within a bound per thread, and a trim empties it. */
/*
 * With mmap enabled, on one thread (AO_malloc_stats' thread_cached then
 * counts this thread's cache alone):
 *  1. Bulk cycles of one class: 200 blocks of 512 bytes, written, freed in
 *     random order, 40 rounds, first thing in the process.  After the last
 *     round's frees at least 90% of the bytes just freed must be in the
 *     cache: the bin grew to hold the cycle (its base limit is 32 blocks,
 *     so a bin that does not grow flushes most of them back to the spans
 *     every round).  Then the same with 1000 blocks of 8..512 bytes
 *     (seeded), as in issue 10's bulk pattern.
 *  2. Bound: the same cycles over every power-of-two size up to 32 KiB,
 *     1 MiB of blocks each.  The cache may hold the bins' base limits plus
 *     the growth budget (about 2.5 MiB), never the 11 MiB just freed:
 *     thread_cached must stay under 3 MiB.
 *  3. AO_malloc_trim() flushes the cache: thread_cached is 0 after it.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define BLOCKS 1000
#define ROUNDS 40
#define CLASS_BYTES ((size_t)1 << 20)
#define CACHE_BOUND ((size_t)3 << 20)

static uint64_t rng;

static uint64_t next(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static size_t cached(void)
{
  struct AO_malloc_stats st;

  AO_malloc_stats(&st);
  return st.thread_cached;
}

/* Fill p[0..n) with blocks of size (random 8..512 when size is 0), then
 * free them in random order; the usable bytes freed. */
static size_t cycle(void **p, unsigned n, size_t size)
{
  static unsigned order[CLASS_BYTES / 16];
  size_t freed = 0;
  unsigned i;

  for (i = 0; i < n; i++) {
    size_t sz = size ? size : 8 + (size_t)(next() % 505);

    p[i] = AO_malloc(sz);
    if (p[i] == NULL)
      tu_fail("AO_malloc(%zu) returned NULL", sz);
    memset(p[i], (int)i, sz);
    order[i] = i;
  }
  for (i = n; i > 1; i--) {
    unsigned j = (unsigned)(next() % i), t = order[i - 1];

    order[i - 1] = order[j];
    order[j] = t;
  }
  for (i = 0; i < n; i++) {
    freed += AO_malloc_usable_size(p[order[i]]);
    AO_free(p[order[i]]);
  }
  return freed;
}

/* Phase 1: ROUNDS cycles of n blocks (as in cycle); after the last
 * round's frees at least 90% of its bytes must be in the cache. */
static void rounds_stay_cached(const char *what, void **p, unsigned n,
                               size_t size)
{
  size_t freed = 0, held;
  unsigned r;

  for (r = 0; r < ROUNDS; r++)
    freed = cycle(p, n, size);
  held = cached();
  tu_info("%s: %zu bytes freed in the last round, %zu cached (%zu%%)", what,
          freed, held, held * 100 / freed);
  TU_CHECK(held * 10 >= freed * 9,
           "%s: only %zu of the %zu bytes just freed stayed in the cache",
           what, held, freed);
}

int main(int argc, char **argv)
{
  static void *p[CLASS_BYTES / 16];
  size_t held, most = 0, size;
  unsigned r;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "the bulk cycles");
  rng = tu_seed() | 1;
  AO_malloc_enable_mmap();

  rounds_stay_cached("one class", p, 200, 512);
  rounds_stay_cached("bulk cycles", p, BLOCKS, 0);

  for (size = 16; size <= 32768; size *= 2)
    for (r = 0; r < 4; r++) {
      cycle(p, (unsigned)(CLASS_BYTES / size), size);
      held = cached();
      if (held > most)
        most = held;
    }
  tu_info("1 MiB cycles of each size 16..32768: at most %zu KiB cached "
          "(bound %zu KiB)", most >> 10, CACHE_BOUND >> 10);
  TU_CHECK(most <= CACHE_BOUND, "the cache held %zu bytes, above %zu", most,
           CACHE_BOUND);

  AO_malloc_trim();
  held = cached();
  tu_info("after AO_malloc_trim: %zu bytes cached", held);
  TU_CHECK(held == 0, "%zu bytes still cached after a trim", held);
  return 0;
}
