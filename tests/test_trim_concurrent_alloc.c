/* SPDX-License-Identifier: MIT */
/* AO_malloc_trim never makes a concurrent AO_malloc (another thread's, or a handler's on its own thread) return NULL. */
/*
 * Static heap only (mmap never enabled).  The heap is filled with
 * 64-page runs (one bitmap word each) and one of them is freed again: that
 * word is the only place where a 63- or 64-page run fits, and it is free
 * whenever no test code holds a block in it.
 *  1. Thread A cycles AO_malloc of 63- and 64-page runs (writing one byte
 *     per page) and frees them; thread B loops AO_malloc_trim(), which
 *     drops the memory of free pages.  A must never see NULL.
 *  2. Thread B loops AO_malloc_trim(); a third thread sends it SIGUSR1 over
 *     and over; the handler, on B, allocates a 64-page run, writes it and
 *     frees it.  B itself never allocates (so it has no thread cache and
 *     the handler's runs go straight back to the pages): the run is free
 *     whenever the handler asks, and must never be refused.
 *  3. Phase 1 again after AO_malloc_enable_mmap(): no NULL, and no new
 *     segment either (VmSize, read by the cycling thread, must not grow
 *     by a segment: a run that is free must not cost a mapping).
 * Each phase is bounded by an iteration count and a few seconds.
 */
#include "test_util.h"

#include <sched.h>

#include "atomic_ops_malloc.h"

#define RUN_PAGES (8 * sizeof(void *))        /* MAX_RUN_PAGES */
#define RUN ((size_t)RUN_PAGES * 4096)
#define MAX_FILL 4096
/* the library's segments: 32 MiB, 4 MiB on 32-bit targets */
#define SEG (UINTPTR_MAX > 0xffffffffu ? (size_t)32 << 20 : (size_t)4 << 20)

static void *fill[MAX_FILL];
/* Shared while threads run: atomics (lock-free, so the handler may bump
 * h_calls).  The others are read only after pthread_join. */
static _Atomic int stop;
static _Atomic unsigned long trims, h_calls;
static volatile unsigned long a_cycles, a_nulls, h_nulls;
static unsigned long p1_nulls;

static void touch(unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i += 4096)
    p[i] = (unsigned char)i;
}

static void *trimmer(void *arg)
{
  (void)arg;
  while (!stop) {
    AO_malloc_trim();
    trims++;
  }
  return NULL;
}

static long vm_before, vm_after;

static void *cycler(void *arg)
{
  unsigned long i, n = *(unsigned long *)arg;
  double end = tu_now() + tu_seconds(3);

  vm_before = tu_vmsize_kb();

  for (i = 0; i < n && !stop && (i % 256 != 0 || tu_now() < end); i++) {
    size_t sz = i % 2 ? RUN : RUN - 4096;
    unsigned char *p = AO_malloc(sz);

    if (p == NULL) {
      a_nulls++;
    } else {
      touch(p, sz);
      AO_free(p);
    }
    a_cycles++;
  }
  vm_after = tu_vmsize_kb();
  stop = 1;
  return NULL;
}

static void handler(int sig)
{
  int saved = errno;
  unsigned char *p;

  (void)sig;
  p = AO_malloc(RUN);
  h_calls++;
  if (p == NULL) {
    h_nulls++;
  } else {
    touch(p, RUN);
    AO_free(p);
  }
  errno = saved;
}

static void *kicker(void *arg)
{
  pthread_t target = *(pthread_t *)arg;
  unsigned long i, n = tu_iters(20000);
  double end = tu_now() + tu_seconds(3);
  struct timespec pause = { 0, 10000 };

  for (i = 0; i < n && (i % 64 != 0 || tu_now() < end); i++) {
    unsigned long before = h_calls;

    pthread_kill(target, SIGUSR1);
    /* one signal at a time: wait until it was handled (bounded) */
    while (h_calls == before && tu_now() < end + 5)
      nanosleep(&pause, NULL);
  }
  stop = 1;
  return NULL;
}

int main(int argc, char **argv)
{
  unsigned long n = tu_iters(300000);
  unsigned nfill = 0;
  pthread_t a, b, k;
  struct sigaction sa;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the trim/allocation race");

  /* Fill the static heap with whole-word runs, then free one. */
  while (nfill < MAX_FILL && (fill[nfill] = AO_malloc(RUN)) != NULL)
    nfill++;
  if (nfill < 2)
    tu_skip("the static heap (%zu bytes) holds fewer than two %zu-byte runs",
            TU_STATIC_HEAP, RUN);
  AO_free(fill[--nfill]);
  AO_malloc_trim();                 /* flushes this thread's run cache */

  /* Phase 1: another thread trims. */
  tu_thread(&a, cycler, &n);
  tu_thread(&b, trimmer, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  tu_info("phase 1: %lu run allocations, %lu NULL, %lu concurrent trims",
          a_cycles, a_nulls, trims);
  if (a_nulls != 0)      /* reported after phase 2 */
    tu_info("FAIL: AO_malloc of a 63/64-page run returned NULL %lu times "
            "in %lu while another thread trimmed; the run was free each "
            "time", a_nulls, a_cycles);

  /* Phase 2: a handler allocates on the trimming thread. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  stop = 0;
  trims = 0;
  tu_thread(&b, trimmer, NULL);
  tu_thread(&k, kicker, &b);
  pthread_join(k, NULL);
  pthread_join(b, NULL);
  tu_info("phase 2: %lu run allocations in handlers on the trimming thread, "
          "%lu NULL, %lu trims", h_calls, h_nulls, trims);
  if (h_nulls != 0)      /* reported after phase 3 */
    tu_info("FAIL: a handler on the trimming thread got NULL %lu times in "
            "%lu for a free 64-page run", h_nulls, h_calls);

  /* Phase 3: phase 1 with mmap enabled.  The trimmer starts first, so that
   * its thread stack is mapped before the cycler's first VmSize reading. */
  AO_malloc_enable_mmap();
  stop = 0;
  trims = 0;
  p1_nulls = a_nulls;
  a_nulls = a_cycles = 0;
  tu_thread(&b, trimmer, NULL);
  while (trims == 0)
    sched_yield();
  tu_thread(&a, cycler, &n);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  tu_info("phase 3 (mmap enabled): %lu run allocations, %lu NULL, %lu "
          "trims, VmSize %ld -> %ld KiB", a_cycles, a_nulls, trims,
          vm_before, vm_after);
  if (p1_nulls != 0 || h_nulls != 0)
    tu_fail("phase %s (see above)", p1_nulls == 0 ? "2" : h_nulls == 0
                                                     ? "1" : "1 and 2");
  TU_CHECK(a_nulls == 0, "phase 3: AO_malloc of a free run returned NULL "
           "%lu times", a_nulls);
  if (vm_before > 0 && vm_after - vm_before >= (long)(SEG >> 10))
    tu_fail("phase 3: the address space grew by %ld KiB (a new segment) "
            "although the run was free each time", vm_after - vm_before);
  while (nfill > 0)
    AO_free(fill[--nfill]);
  return 0;
}
