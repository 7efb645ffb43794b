/* SPDX-License-Identifier: MIT */
/* Static heap shared by threads: concurrent exhaustion, reuse across classes, churn, enabling mmap. */
/*
 * Phase 1: four threads, each with its own block size, fill the static heap
 * concurrently until NULL, verify, and free everything; the next round
 * mixes the sizes differently, so every thread must get memory that other
 * threads freed in other size classes.  Each round must yield at least half
 * the heap in total.
 * Phase 2: many short-lived threads allocate, free most blocks and leave
 * the rest to the main thread; after they exited and the main thread freed
 * their leftovers, the heap must again give half its size (nothing may stay
 * stranded with dead threads).
 * Phase 3: threads allocate until the static heap is exhausted and keep
 * trying while the main thread calls AO_malloc_enable_mmap(); a request
 * that starts after AO_malloc_enable_mmap() returned must not fail.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define NT 4
#define MAXB (TU_STATIC_HEAP / 16 + 1024)
#define MIN_TOTAL (TU_STATIC_HEAP / 2)
#define CHURN_THREADS 64
#define CHURN_KEEP 8

struct blk {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

/* Per round, the size each thread uses: every round mixes classes
 * differently, so memory must move between size classes and threads. */
#define ROUNDS 5
static const size_t round_sizes[ROUNDS][NT] = {
  { 24, 24, 400, 400 },
  { 60000, 60000, 5000, 5000 },
  { 24, 400, 5000, 60000 },
  { 3000, 3000, 3000, 3000 },
  { 100, 20000, 100, 20000 },
};
static struct blk blocks[NT][MAXB];
static size_t nblk[NT];
static size_t got_bytes[NT];
static pthread_barrier_t barrier;
static int rounds;

static void fill_until_null(int t, size_t size, uint64_t *rng)
{
  int misses = 0;
  nblk[t] = 0;
  got_bytes[t] = 0;
  while (misses < 100 && nblk[t] < MAXB) {
    unsigned char *p = AO_malloc(size);
    if (p == NULL) {
      misses++;
      continue;
    }
    misses = 0;
    blocks[t][nblk[t]].p = p;
    blocks[t][nblk[t]].size = size;
    blocks[t][nblk[t]].tag = tu_rand(rng);
    tu_fill(p, size, blocks[t][nblk[t]].tag);
    nblk[t]++;
    got_bytes[t] += size;
    if (got_bytes[t] > 4 * TU_STATIC_HEAP + ((size_t)64 << 20))
      tu_fail("thread %d got %zu bytes without AO_malloc_enable_mmap(): the "
              "static heap never runs out (mmap used before it was enabled?)",
              t, got_bytes[t]);
  }
}

static void verify_free(int t, const char *phase)
{
  size_t i;
  for (i = 0; i < nblk[t]; i++) {
    size_t bad = tu_check(blocks[t][i].p, blocks[t][i].size, blocks[t][i].tag);
    if (bad != (size_t)-1)
      tu_fail("%s: thread %d: block %p (size %zu) byte %zu overwritten "
              "(blocks of two threads overlap?)", phase, t,
              (void *)blocks[t][i].p, blocks[t][i].size, bad);
  }
  for (i = 0; i < nblk[t]; i++)
    AO_free(blocks[t][i].p);
  nblk[t] = 0;
}

static void *exhaust_worker(void *arg)
{
  int t = (int)(uintptr_t)arg, r;
  uint64_t rng = tu_seed() + (uint64_t)t * 1000003;
  for (r = 0; r < rounds; r++) {
    fill_until_null(t, round_sizes[r][t], &rng);
    pthread_barrier_wait(&barrier); /* everyone filled: now verify */
    verify_free(t, "concurrent exhaustion");
    pthread_barrier_wait(&barrier); /* everyone freed */
    pthread_barrier_wait(&barrier); /* main checked the totals */
  }
  return NULL;
}

static void phase_exhaust(void)
{
  pthread_t th[NT];
  int r, t;
  rounds = ROUNDS;
  pthread_barrier_init(&barrier, NULL, NT + 1);
  for (t = 0; t < NT; t++)
    tu_thread(&th[t], exhaust_worker, (void *)(uintptr_t)t);
  for (r = 0; r < rounds; r++) {
    size_t total = 0;
    pthread_barrier_wait(&barrier);
    for (t = 0; t < NT; t++)
      total += got_bytes[t];
    pthread_barrier_wait(&barrier);
    if (total < MIN_TOTAL)
      tu_fail("concurrent exhaustion round %d: the threads got only %zu "
              "bytes together (sizes %zu/%zu/%zu/%zu: %zu/%zu/%zu/%zu); memory"
              " freed by other threads in other classes not reused?", r,
              total, round_sizes[r][0], round_sizes[r][1],
              round_sizes[r][2], round_sizes[r][3],
              got_bytes[0], got_bytes[1], got_bytes[2], got_bytes[3]);
    pthread_barrier_wait(&barrier);
  }
  for (t = 0; t < NT; t++)
    pthread_join(th[t], NULL);
  pthread_barrier_destroy(&barrier);
  tu_info("concurrent exhaustion: %d rounds ok", rounds);
}

/* ---- phase 2: thread churn ---- */

static struct blk leftovers[CHURN_THREADS][CHURN_KEEP];

static void *churn_worker(void *arg)
{
  int t = (int)(uintptr_t)arg, i;
  uint64_t rng = tu_seed() ^ ((uint64_t)t << 20);
  struct blk mine[64];
  for (i = 0; i < 64; i++) {
    mine[i].size = tu_logsize(&rng, 8192);
    mine[i].p = AO_malloc(mine[i].size);
    if (mine[i].p == NULL)
      tu_fail("thread churn: AO_malloc(%zu) returned NULL on a nearly empty "
              "static heap (memory stranded with exited threads, or not "
              "reused across size classes?)",
              mine[i].size);
    mine[i].tag = tu_rand(&rng);
    tu_fill(mine[i].p, mine[i].size, mine[i].tag);
  }
  for (i = 0; i < 64; i++) {
    if (tu_check(mine[i].p, mine[i].size, mine[i].tag) != (size_t)-1)
      tu_fail("thread churn: block overwritten");
    if (i < CHURN_KEEP)
      leftovers[t][i] = mine[i];
    else
      AO_free(mine[i].p);
  }
  return NULL;
}

static void phase_churn(void)
{
  int t, i;
  size_t total;
  uint64_t rng = tu_seed();
  for (t = 0; t < CHURN_THREADS; t += 4) {
    pthread_t th[4];
    for (i = 0; i < 4; i++)
      tu_thread(&th[i], churn_worker, (void *)(uintptr_t)(t + i));
    for (i = 0; i < 4; i++)
      pthread_join(th[i], NULL);
  }
  for (t = 0; t < CHURN_THREADS; t++)
    for (i = 0; i < CHURN_KEEP; i++) {
      struct blk *b = &leftovers[t][i];
      TU_CHECK(tu_check(b->p, b->size, b->tag) == (size_t)-1,
               "thread churn: a block left by an exited thread was "
               "overwritten");
      AO_free(b->p);
    }
  fill_until_null(0, 48, &rng);
  total = got_bytes[0];
  verify_free(0, "after thread churn");
  TU_CHECK(total >= MIN_TOTAL, "after %d threads came and went, only %zu "
           "bytes of 48-byte blocks could be allocated (memory stranded "
           "with exited threads?)", CHURN_THREADS, total);
  tu_info("thread churn: %zu KiB available afterwards", total >> 10);
}

/* ---- phase 3: enabling mmap while threads see NULL ---- */

static atomic_int mmap_on;
static atomic_ulong nulls_before;

static void *enable_worker(void *arg)
{
  int t = (int)(uintptr_t)arg;
  uint64_t rng = tu_seed() + 77 * (uint64_t)t;
  size_t after = 0;
  double end = tu_now() + 10;
  nblk[t] = 0;
  while (after < ((size_t)8 << 20) && nblk[t] < MAXB) {
    int was_on = atomic_load(&mmap_on);
    size_t s = 16384 + (size_t)tu_below(&rng, 4096);
    unsigned char *p = AO_malloc(s);
    if (p == NULL) {
      if (was_on)
        tu_fail("AO_malloc(%zu) returned NULL although it started after "
                "AO_malloc_enable_mmap() had returned", s);
      atomic_fetch_add(&nulls_before, 1);
      if (tu_now() > end)
        tu_fail("AO_malloc_enable_mmap() never took effect");
      continue;
    }
    blocks[t][nblk[t]].p = p;
    blocks[t][nblk[t]].size = s;
    blocks[t][nblk[t]].tag = tu_rand(&rng);
    tu_fill_sparse(p, s, blocks[t][nblk[t]].tag);
    nblk[t]++;
    if (was_on)
      after += s;
  }
  return NULL;
}

static void phase_enable(void)
{
  pthread_t th[3];
  double t0;
  size_t i;
  int t;
  for (t = 0; t < 3; t++)
    tu_thread(&th[t], enable_worker, (void *)(uintptr_t)t);
  /* wait until the static heap ran dry (or a second has passed) */
  t0 = tu_now();
  while (atomic_load(&nulls_before) < 1000 && tu_now() - t0 < 1)
    tu_sleep(0.0005);
  AO_malloc_enable_mmap();
  atomic_store(&mmap_on, 1);
  for (t = 0; t < 3; t++)
    pthread_join(th[t], NULL);
  for (t = 0; t < 3; t++) {
    for (i = 0; i < nblk[t]; i++)
      TU_CHECK(tu_check_sparse(blocks[t][i].p, blocks[t][i].size,
                               blocks[t][i].tag) == (size_t)-1,
               "enable race: block overwritten");
    for (i = 0; i < nblk[t]; i++)
      AO_free(blocks[t][i].p);
  }
  tu_info("enabling mmap mid-flight: %lu NULLs before, none after",
          (unsigned long)atomic_load(&nulls_before));
}

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(40, "the static-heap threads test");
  phase_exhaust();
  phase_churn();
  phase_enable();
  tu_info("ok");
  return 0;
}
