/* SPDX-License-Identifier: MIT */
/* Freed memory goes back to the OS by itself (decay), with only fast-path use and no trim; decay steps under signal storms are safe. */
/*
 * Phase 1: about 96 MiB in small blocks, medium blocks and a few direct
 * mappings is allocated, written and freed (one block in 1000 stays),
 * then the thread only runs cache hits (malloc/free pairs of 64 B, a few
 * hundred every 10 ms) and never calls AO_malloc_trim.  Within 3 s, the
 * VmRSS growth over the start must fall below 40% of the peak growth
 * (the decay releases memory free for about 0.5-1 s; before it, 100%
 * stayed).
 * Phase 2: the same memory cycle again while a second thread runs pairs
 * too and sends the main thread SIGUSR1 every few hundred microseconds:
 * the handler allocates and frees small blocks, a page run and a direct
 * mapping (each large call is a decay tick), so handlers land inside the
 * decay steps of their own thread and race with the other thread's.
 * Every handler block is written and checked; memory must again fall
 * below the bound.  Skipped under sanitizers and valgrind (their shadow
 * memory and quarantines move VmRSS), and without VmRSS.
 */
#include "test_util.h"

#include <signal.h>

#include "atomic_ops_malloc.h"

#define BOUND_PCT 40.0
#define WAIT_S 3.0
#define LIVE 64

static void **blocks;
static size_t nblocks;
static volatile sig_atomic_t handler_runs, handler_bad;
static volatile int stop_storm;

static void fill(unsigned char *p, size_t n, unsigned char v)
{
  memset(p, v, n);
}

static int check(const unsigned char *p, size_t n, unsigned char v)
{
  size_t i;

  for (i = 0; i < n; i += 4093)
    if (p[i] != v)
      return 0;
  return p[n - 1] == v;
}

static void handler(int sig)
{
  static const size_t sizes[] = { 48, 700, 5000, 100000, 3u << 20 };
  void *p[5];
  unsigned i;

  (void)sig;
  for (i = 0; i < 5; i++) {
    p[i] = AO_malloc(sizes[i]);
    if (p[i] != NULL)
      fill(p[i], sizes[i], (unsigned char)(0x40 + i));
  }
  for (i = 0; i < 5; i++)
    if (p[i] != NULL) {
      if (!check(p[i], sizes[i], (unsigned char)(0x40 + i)))
        handler_bad = 1;
      AO_free(p[i]);
    }
  handler_runs++;
}

/* Allocate and write about 96 MiB; the peak VmRSS. */
static long fill_heap(uint64_t *r)
{
  size_t bytes = 0, cap = (size_t)1 << 20;

  nblocks = 0;
  if (blocks == NULL)
    blocks = AO_malloc(cap * sizeof *blocks);
  TU_CHECK(blocks != NULL, "AO_malloc of the block table");
  while (bytes < ((size_t)96 << 20) && nblocks < cap) {
    unsigned k = (unsigned)tu_rand(r) % 100;
    size_t s = k < 2 ? (2u << 20) + (size_t)(tu_rand(r) % (4u << 20))
             : k < 10 ? 4096 + (size_t)(tu_rand(r) % 61440)
             : 16 + (size_t)(tu_rand(r) % 1008);
    void *p = AO_malloc(s);

    TU_CHECK(p != NULL, "AO_malloc(%zu)", s);
    fill(p, s, 0x5a);
    blocks[nblocks++] = p;
    bytes += s;
  }
  return tu_status_kb("VmRSS");
}

/* Free all but one block in 1000, in a scattered order. */
static void free_heap(void)
{
  size_t i;

  for (i = 0; i < nblocks; i++) {
    size_t j = (i * 7919u) % nblocks;

    if (j % 1000 != 999) {
      AO_free(blocks[j]);
      blocks[j] = NULL;
    }
  }
}

/* Cache hits only, until the growth share is below the bound or WAIT_S
 * passed; the share at the end, in percent. */
static double light_use(long rss0, long peak, double *took)
{
  void *live[LIVE] = { NULL };
  double t0 = tu_now(), share = 100.0;
  unsigned round, k;

  for (round = 0; tu_now() - t0 < WAIT_S; round++) {
    for (k = 0; k < 300; k++) {
      unsigned slot = (round * 300 + k) % LIVE;

      AO_free(live[slot]);
      live[slot] = AO_malloc(64);
      TU_CHECK(live[slot] != NULL, "AO_malloc(64)");
      *(volatile char *)live[slot] = (char)k;
    }
    share = 100.0 * (double)(tu_status_kb("VmRSS") - rss0)
            / (double)(peak - rss0);
    if (share < BOUND_PCT)
      break;
    tu_sleep(0.010);
  }
  *took = tu_now() - t0;
  for (k = 0; k < LIVE; k++)
    AO_free(live[k]);
  return share;
}

static void *storm(void *arg)
{
  pthread_t target = *(pthread_t *)arg;
  void *p;
  unsigned n = 0;

  while (!__atomic_load_n(&stop_storm, __ATOMIC_ACQUIRE)) {
    p = AO_malloc(32 + n % 200);
    TU_CHECK(p != NULL, "AO_malloc in the storm thread");
    AO_free(p);
    if (++n % 64 == 0) {
      pthread_kill(target, SIGUSR1);
      tu_sleep(0.0003);
    }
  }
  return NULL;
}

int main(int argc, char **argv)
{
  uint64_t r = tu_seed();
  long rss0, peak;
  double share, took;
  pthread_t self, t;
  struct sigaction sa;

  (void)argc;
  tu_init(argv[0]);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  tu_skip("VmRSS not judged under a sanitizer");
#endif
  if (getenv("LD_PRELOAD") != NULL && strstr(getenv("LD_PRELOAD"), "vgpreload"))
    tu_skip("VmRSS not judged under valgrind");
  if (tu_status_kb("VmRSS") < 0)
    tu_skip("no VmRSS in /proc/self/status");
  tu_watchdog(60, "the decay test");
  AO_malloc_enable_mmap();
  AO_free(AO_malloc(64));

  /* Phase 1: fast paths only. */
  rss0 = tu_status_kb("VmRSS");
  peak = fill_heap(&r);
  free_heap();
  share = light_use(rss0, peak, &took);
  tu_info("fast paths only: growth %ld KiB, %.1f%% of it resident after "
          "%.2f s", peak - rss0, share, took);
  TU_CHECK(share < BOUND_PCT, "%.1f%% of the growth still resident after "
           "%.1f s of fast-path use (bound %.0f%%)", share, took, BOUND_PCT);

  /* Phase 2: decay steps under a signal storm and a second thread. */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  TU_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
  self = pthread_self();
  tu_thread(&t, storm, &self);
  rss0 = tu_status_kb("VmRSS");
  peak = fill_heap(&r);
  free_heap();
  share = light_use(rss0, peak, &took);
  __atomic_store_n(&stop_storm, 1, __ATOMIC_RELEASE);
  pthread_join(t, NULL);
  tu_info("with a signal storm: %d handler runs, growth %ld KiB, %.1f%% of "
          "it resident after %.2f s", (int)handler_runs, peak - rss0, share,
          took);
  TU_CHECK(!handler_bad, "a handler's block was overwritten");
  TU_CHECK(handler_runs > 0, "no handler ran");
  TU_CHECK(share < BOUND_PCT, "%.1f%% of the growth still resident after "
           "%.1f s under the storm (bound %.0f%%)", share, took, BOUND_PCT);
  return 0;
}
