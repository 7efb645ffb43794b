/* SPDX-License-Identifier: MIT */
/* AO_malloc_stats: the figures move as expected on malloc, free and trim, and add up to mapped when quiescent. */
/*
 * Single-threaded, so every snapshot is taken with nobody inside the
 * allocator and must satisfy the identity
 *   mapped == in_use + thread_cached + span_free + free_pages
 *             + large_cached + metadata + slack
 * exactly.  Phases:
 *  0. before any allocation: mapped is the static heap, no system call;
 *  1. N blocks of 100 B: in_use grows by at least N * 112 (their class);
 *     freed, in_use is back where it was and the blocks sit in the
 *     thread cache or in spans; after a trim the cache is empty;
 *  2. page runs (40000 B: 10 pages): in_use grows by their pages; freed,
 *     some stay in the thread cache; a trim empties it, calls madvise and
 *     leaves every free page released;
 *  3. with mmap: large mappings (1 MiB) raise mapped, in_use and
 *     mmap_calls; freed they go to large_cached; a trim unmaps them
 *     (munmap_calls, released_total) and mapped comes back down;
 *  4. with mmap: small blocks beyond the static heap (a segment is mapped);
 *     freed and trimmed, in_use is back to its start.
 * With a static heap below the default 2 MiB, mmap is enabled from phase 1
 * on (the runs of phase 2 would not fit).
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define N_SMALL 1000
#define SMALL_CLASS 112
#define N_RUNS 8
#define RUN_BYTES 40000
#define RUN_PAGES_BYTES 40960
#define N_LARGE 4
#define LARGE_BYTES ((size_t)1 << 20)
#define N_SEG 40000

static void *ptrs[N_SEG];

static size_t parts(const struct AO_malloc_stats *s)
{
  return s->in_use + s->thread_cached + s->span_free + s->free_pages
         + s->large_cached + s->metadata + s->slack;
}

static void show(const char *where, const struct AO_malloc_stats *s)
{
  tu_info("%s: mapped %zu in_use %zu thread_cached %zu span_free %zu "
          "free_pages %zu (released %zu) large_cached %zu metadata %zu "
          "slack %zu; released_total %zu mmap %lu munmap %lu madvise %lu "
          "caches %lu", where, s->mapped, s->in_use, s->thread_cached,
          s->span_free, s->free_pages, s->free_released, s->large_cached,
          s->metadata, s->slack, s->released_total, s->mmap_calls,
          s->munmap_calls, s->madvise_calls, s->thread_caches);
}

/* A snapshot that must add up exactly. */
static void snap(const char *where, struct AO_malloc_stats *s)
{
  unsigned i;

  AO_malloc_stats(s);
  if (parts(s) != s->mapped) {
    show(where, s);
    tu_fail("%s: the parts add up to %zu, mapped is %zu", where, parts(s),
            s->mapped);
  }
  TU_CHECK(s->free_released <= s->free_pages,
           "%s: free_released %zu > free_pages %zu", where, s->free_released,
           s->free_pages);
  TU_CHECK(s->foreign_frees == 0 && s->mremap_calls == 0,
           "%s: foreign_frees %lu, mremap_calls %lu", where, s->foreign_frees,
           s->mremap_calls);
  for (i = 0; i < sizeof(s->reserved) / sizeof(s->reserved[0]); i++)
    TU_CHECK(s->reserved[i] == 0, "%s: reserved[%u] is %zu", where, i,
             s->reserved[i]);
}

static void phase_small(void)
{
  struct AO_malloc_stats a, b, c, d;
  unsigned i;

  AO_free(AO_malloc(100));          /* the thread's cache exists from here */
  AO_malloc_trim();
  snap("small: start", &a);
  TU_CHECK(a.thread_caches == 1, "small: %lu thread caches, expected 1",
           a.thread_caches);
  for (i = 0; i < N_SMALL; i++) {
    ptrs[i] = AO_malloc(100);
    TU_CHECK(ptrs[i] != NULL, "small: AO_malloc(100) #%u failed", i);
    memset(ptrs[i], 0x5a, 100);
  }
  snap("small: allocated", &b);
  TU_CHECK(b.in_use >= a.in_use + (size_t)N_SMALL * SMALL_CLASS,
           "small: in_use %zu -> %zu after %d blocks of 100 B (expected "
           "+%zu at least)", a.in_use, b.in_use, N_SMALL,
           (size_t)N_SMALL * SMALL_CLASS);
  for (i = 0; i < N_SMALL; i++)
    AO_free(ptrs[i]);
  snap("small: freed", &c);
  TU_CHECK(c.in_use == a.in_use, "small: in_use %zu after freeing, %zu "
           "before allocating", c.in_use, a.in_use);
  TU_CHECK(c.thread_cached > 0, "small: nothing in the thread cache after "
           "freeing %d blocks", N_SMALL);
  TU_CHECK(c.thread_cached + c.span_free >= (size_t)N_SMALL * SMALL_CLASS,
           "small: thread_cached %zu + span_free %zu < the %zu bytes freed",
           c.thread_cached, c.span_free, (size_t)N_SMALL * SMALL_CLASS);
  AO_malloc_trim();
  snap("small: trimmed", &d);
  TU_CHECK(d.thread_cached == 0, "small: thread_cached %zu after a trim",
           d.thread_cached);
  TU_CHECK(d.in_use == a.in_use, "small: in_use %zu after the trim, %zu at "
           "the start", d.in_use, a.in_use);
  tu_info("small: in_use %zu -> %zu -> %zu, thread_cached after free %zu, "
          "after trim %zu", a.in_use, b.in_use, c.in_use, c.thread_cached,
          d.thread_cached);
}

static void phase_runs(void)
{
  struct AO_malloc_stats a, b, c, d;
  unsigned i;

  snap("runs: start", &a);
  for (i = 0; i < N_RUNS; i++) {
    ptrs[i] = AO_malloc(RUN_BYTES);
    TU_CHECK(ptrs[i] != NULL, "runs: AO_malloc(%d) #%u failed", RUN_BYTES, i);
    memset(ptrs[i], 0x5a, RUN_BYTES);
  }
  snap("runs: allocated", &b);
  TU_CHECK(b.in_use >= a.in_use + (size_t)N_RUNS * RUN_PAGES_BYTES,
           "runs: in_use %zu -> %zu after %d runs of %d B", a.in_use,
           b.in_use, N_RUNS, RUN_BYTES);
  for (i = 0; i < N_RUNS; i++)
    AO_free(ptrs[i]);
  snap("runs: freed", &c);
  TU_CHECK(c.in_use == a.in_use, "runs: in_use %zu after freeing, %zu "
           "before", c.in_use, a.in_use);
  TU_CHECK(c.thread_cached >= RUN_PAGES_BYTES, "runs: thread_cached %zu: "
           "no freed run kept by the thread cache", c.thread_cached);
  AO_malloc_trim();
  snap("runs: trimmed", &d);
  TU_CHECK(d.thread_cached == 0, "runs: thread_cached %zu after a trim",
           d.thread_cached);
  TU_CHECK(d.madvise_calls > c.madvise_calls, "runs: madvise_calls %lu -> "
           "%lu over a trim of dirty pages", c.madvise_calls, d.madvise_calls);
  TU_CHECK(d.released_total > c.released_total, "runs: released_total %zu "
           "-> %zu over a trim", c.released_total, d.released_total);
  TU_CHECK(d.free_released == d.free_pages, "runs: after a trim %zu of %zu "
           "free bytes are released", d.free_released, d.free_pages);
  tu_info("runs: in_use %zu -> %zu -> %zu, thread_cached %zu -> %zu, "
          "madvise calls %lu -> %lu", a.in_use, b.in_use, c.in_use,
          c.thread_cached, d.thread_cached, c.madvise_calls, d.madvise_calls);
}

static void phase_large(void)
{
  struct AO_malloc_stats a, b, c, d;
  size_t total = N_LARGE * LARGE_BYTES;
  unsigned i;

  snap("large: start", &a);
  for (i = 0; i < N_LARGE; i++) {
    ptrs[i] = AO_malloc(LARGE_BYTES);
    TU_CHECK(ptrs[i] != NULL, "large: AO_malloc(1 MiB) #%u failed", i);
    memset(ptrs[i], 0x5a, LARGE_BYTES);
  }
  snap("large: allocated", &b);
  TU_CHECK(b.mapped >= a.mapped + total && b.in_use >= a.in_use + total,
           "large: mapped %zu -> %zu, in_use %zu -> %zu after %d MiB",
           a.mapped, b.mapped, a.in_use, b.in_use, N_LARGE);
  TU_CHECK(b.mmap_calls >= a.mmap_calls + N_LARGE, "large: mmap_calls %lu "
           "-> %lu after %d mappings", a.mmap_calls, b.mmap_calls, N_LARGE);
  for (i = 0; i < N_LARGE; i++)
    AO_free(ptrs[i]);
  snap("large: freed", &c);
  TU_CHECK(c.in_use == a.in_use && c.mapped == b.mapped,
           "large: freed: in_use %zu (%zu at the start), mapped %zu (%zu)",
           c.in_use, a.in_use, c.mapped, b.mapped);
  TU_CHECK(c.large_cached >= a.large_cached + total, "large: large_cached "
           "%zu -> %zu after freeing %d MiB", a.large_cached, c.large_cached,
           N_LARGE);
  AO_malloc_trim();
  snap("large: trimmed", &d);
  TU_CHECK(d.large_cached == 0, "large: large_cached %zu after a trim",
           d.large_cached);
  TU_CHECK(d.munmap_calls >= c.munmap_calls + N_LARGE, "large: munmap_calls "
           "%lu -> %lu over a trim", c.munmap_calls, d.munmap_calls);
  TU_CHECK(d.released_total >= c.released_total + total, "large: "
           "released_total %zu -> %zu", c.released_total, d.released_total);
  /* The side table's leaves (metadata) stay mapped for good. */
  TU_CHECK(d.mapped + total <= c.mapped
           && d.mapped - d.metadata == a.mapped - a.metadata,
           "large: mapped %zu -> %zu over a trim (%zu at the start), "
           "metadata %zu -> %zu", c.mapped, d.mapped, a.mapped, a.metadata,
           d.metadata);
  tu_info("large: mapped %zu -> %zu -> %zu, large_cached %zu -> %zu, "
          "munmap calls %lu -> %lu", a.mapped, b.mapped, d.mapped,
          c.large_cached, d.large_cached, c.munmap_calls, d.munmap_calls);
}

static void phase_segment(void)
{
  struct AO_malloc_stats a, b, c;
  unsigned i;

  snap("segment: start", &a);
  for (i = 0; i < N_SEG; i++) {
    ptrs[i] = AO_malloc(100);
    TU_CHECK(ptrs[i] != NULL, "segment: AO_malloc(100) #%u failed", i);
    *(volatile char *)ptrs[i] = 1;
  }
  snap("segment: allocated", &b);
  TU_CHECK(b.in_use >= a.in_use + (size_t)N_SEG * SMALL_CLASS,
           "segment: in_use %zu -> %zu after %d blocks", a.in_use, b.in_use,
           N_SEG);
  for (i = 0; i < N_SEG; i++)
    AO_free(ptrs[i]);
  AO_malloc_trim();
  snap("segment: trimmed", &c);
  TU_CHECK(c.in_use == a.in_use && c.thread_cached == 0,
           "segment: in_use %zu (%zu at the start), thread_cached %zu",
           c.in_use, a.in_use, c.thread_cached);
  TU_CHECK(c.free_released == c.free_pages, "segment: %zu of %zu free bytes "
           "released after a trim", c.free_released, c.free_pages);
  tu_info("segment: mapped %zu -> %zu, in_use %zu -> %zu -> %zu",
          a.mapped, b.mapped, a.in_use, b.in_use, c.in_use);
}

int main(int argc, char **argv)
{
  struct AO_malloc_stats s;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "test_malloc_stats");
  snap("start", &s);
  TU_CHECK(s.mapped == TU_STATIC_HEAP && s.mmap_calls == 0
           && s.munmap_calls == 0 && s.madvise_calls == 0
           && s.thread_caches == 0 && s.in_use == 0,
           "start: mapped %zu (static heap %zu), mmap %lu, munmap %lu, "
           "madvise %lu, caches %lu, in_use %zu", s.mapped, TU_STATIC_HEAP,
           s.mmap_calls, s.munmap_calls, s.madvise_calls, s.thread_caches,
           s.in_use);
  tu_info("start: mapped %zu, free_pages %zu, metadata %zu", s.mapped,
          s.free_pages, s.metadata);
  if (TU_STATIC_HEAP < TU_DEFAULT_HEAP)
    AO_malloc_enable_mmap();
  phase_small();
  phase_runs();
  AO_malloc_enable_mmap();
  phase_large();
  phase_segment();
  snap("end", &s);
  show("end", &s);
  return 0;
}
