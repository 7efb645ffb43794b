/* SPDX-License-Identifier: MIT */
/* ABA torture for the allocator: all threads recycle a few blocks of one size at a high rate. */
/*
 * More threads than cores take and return two or three blocks of the same
 * size in tight loops, so the few spans of that size class see the pattern
 * "read the free list, get preempted, others take and return blocks, resume
 * with a stale view" over and over.  Each thread writes its own tag over
 * every block it gets and checks it before freeing: a block handed to two
 * threads at once shows up as an overwritten tag.  Sizes are chosen with
 * very few blocks per span (large classes) as well as tiny blocks.
 *
 * A second phase makes the stale view likely instead of lucky: a signal
 * handler interrupts the main thread's AO_malloc at random points and, on
 * the same size class, takes two blocks, frees an older block of its own,
 * frees the first new one and keeps the second - exactly the sequence that
 * puts the same block back on top of a free list with a different
 * successor.  An allocator whose CAS can be fooled by that hands the kept
 * block out twice.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

static size_t size;
static double deadline;
static unsigned long iters;
static atomic_ulong total;

static void *worker(void *arg)
{
  uint64_t me = (uint64_t)(uintptr_t)arg + 1;
  uint64_t rng = tu_seed() * me;
  unsigned char *p[3];
  uint64_t tag[3];
  unsigned long it;
  /* small blocks carry the tag throughout, big ones at head and tail */
  size_t check = size <= 128 ? size : 64;
  size_t tail = size - check;

  for (it = 0; it < iters; it++) {
    unsigned n = 2 + (unsigned)tu_below(&rng, 2), i;
    for (i = 0; i < n; i++) {
      p[i] = AO_malloc(size);
      if (p[i] == NULL)
        tu_fail("AO_malloc(%zu) returned NULL", size);
      tag[i] = (me << 48) ^ tu_rand(&rng);
      tu_fill(p[i], check, tag[i]);
      if (tail > 0)
        tu_fill(p[i] + tail, check, ~tag[i]);
    }
    for (i = n; i-- > 0;) {
      unsigned j = (unsigned)tu_below(&rng, i + 1);
      unsigned char *q = p[j];
      uint64_t t = tag[j];
      if (tu_check(q, check, t) != (size_t)-1
          || (tail > 0 && tu_check(q + tail, check, ~t) != (size_t)-1))
        tu_fail("block %p of size %zu was handed to another thread while "
                "thread %llu owned it (ABA in the allocator's lists?)",
                (void *)q, size, (unsigned long long)me - 1);
      p[j] = p[i];
      tag[j] = tag[i];
      AO_free(q);
    }
    if ((it & 255) == 0 && tu_now() > deadline)
      break;
  }
  atomic_fetch_add(&total, it);
  return NULL;
}

/* ---- phase 2: a handler replays the ABA sequence inside AO_malloc ---- */

#define HPOOL 8
static pthread_t main_thread;
static atomic_int spam_stop;
static unsigned char *hpool[HPOOL];
static uint64_t htag[HPOOL];
static unsigned hnext;
static uint64_t hrng;
static atomic_ulong hruns;

static void aba_handler(int sig)
{
  int saved = errno;
  unsigned char *x1, *x2;
  unsigned k = hnext++ % HPOOL;
  size_t check = size <= 128 ? size : 64;
  (void)sig;
  x1 = AO_malloc(size);
  x2 = AO_malloc(size);
  if (x1 == NULL || x2 == NULL)
    tu_sfail("AO_malloc returned NULL in the ABA handler");
  if (hpool[k] != NULL) {
    if (tu_check(hpool[k], check, htag[k]) != (size_t)-1)
      tu_sfail("a block kept by the signal handler was handed out again "
               "by an interrupted AO_malloc (ABA in the allocator)");
    AO_free(hpool[k]);
  }
  AO_free(x1);
  htag[k] = tu_rand(&hrng);
  tu_fill(x2, check, htag[k]);
  hpool[k] = x2;
  atomic_fetch_add(&hruns, 1);
  errno = saved;
}

static void *spammer(void *arg)
{
  uint64_t rng = tu_seed() ^ 0xABA;
  (void)arg;
  while (!atomic_load(&spam_stop)) {
    volatile unsigned i, n = (unsigned)tu_below(&rng, 1500);
    pthread_kill(main_thread, SIGUSR1);
    for (i = 0; i < n; i++)
      ;
  }
  return NULL;
}

static void signal_phase(size_t sz, double secs)
{
  uint64_t rng = tu_seed() ^ sz;
  size_t check = sz <= 128 ? sz : 64;
  unsigned char *ring[4] = { NULL, NULL, NULL, NULL };
  uint64_t rtag[4] = { 0, 0, 0, 0 };
  sigset_t set;
  pthread_t sp;
  double end;
  unsigned long it;
  unsigned k;

  /* the handler only runs while this phase has the signal unblocked */
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  size = sz;
  atomic_store(&spam_stop, 0);
  tu_thread_nosig(&sp, spammer, NULL);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  end = tu_now() + secs;
  for (it = 0; it < iters; it++) {
    unsigned r = (unsigned)(it % 4);
    if (ring[r] != NULL) {
      if (tu_check(ring[r], check, rtag[r]) != (size_t)-1)
        tu_fail("size %zu: a block owned by the main loop was handed to the "
                "signal handler too (ABA in the allocator)", sz);
      AO_free(ring[r]);
    }
    ring[r] = AO_malloc(sz);
    if (ring[r] == NULL)
      tu_fail("AO_malloc(%zu) returned NULL", sz);
    rtag[r] = tu_rand(&rng);
    tu_fill(ring[r], check, rtag[r]);
    if ((it & 255) == 0 && tu_now() > end)
      break;
  }
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  atomic_store(&spam_stop, 1);
  pthread_join(sp, NULL);
  for (k = 0; k < 4; k++)
    if (ring[k] != NULL) {
      TU_CHECK(tu_check(ring[k], check, rtag[k]) == (size_t)-1,
               "size %zu: main-loop block overwritten", sz);
      AO_free(ring[k]);
    }
  for (k = 0; k < HPOOL; k++)
    if (hpool[k] != NULL) {
      TU_CHECK(tu_check(hpool[k], check, htag[k]) == (size_t)-1,
               "size %zu: handler block overwritten", sz);
      AO_free(hpool[k]);
      hpool[k] = NULL;
    }
}

int main(int argc, char **argv)
{
  /* tiny, small, and classes with only a handful of blocks per span */
  static const size_t sizes[] = { 16, 100, 24000, 32768, 200000 };
  int nthreads = tu_threads(8), i;
  unsigned s;
  double secs = tu_seconds(0.4);
  pthread_t t[256];

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(secs * 7 + 20, "the allocator ABA torture");
  iters = tu_iters(3000000);
  for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    if (s == 3)
      AO_malloc_enable_mmap(); /* the last sizes also in mmap'd segments */
    size = sizes[s];
    deadline = tu_now() + secs;
    for (i = 0; i < nthreads; i++)
      tu_thread(&t[i], worker, (void *)(uintptr_t)i);
    for (i = 0; i < nthreads; i++)
      pthread_join(t[i], NULL);
  }

  {
    struct sigaction sa;
    sigset_t set;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = aba_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    main_thread = pthread_self();
    hrng = tu_seed() ^ 0x4242;
    signal_phase(16, secs);
    signal_phase(24000, secs);
  }
  tu_info("ok: %d threads, %lu rounds; %lu handler replays", nthreads,
          (unsigned long)atomic_load(&total), (unsigned long)atomic_load(&hruns));
  return 0;
}
