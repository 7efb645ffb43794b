/* SPDX-License-Identifier: MIT */
/* Signal handlers that allocate while their thread exits leave no memory behind. */
/*
 * Short-lived threads, four at a time, allocate and free small blocks and
 * exit; a helper thread sends SIGUSR1 to them without pause, before, during
 * and after their exit (until just before they are joined).  The handler
 * allocates one block of every size class up to 32 KiB, writes and verifies
 * them, and frees them.  So handlers run while the exiting thread gives its
 * cache back, and after that, when the thread's cache is gone: a cache that
 * such a handler sets up anew must not outlive the thread.
 * With mmap enabled, VmRSS (/proc/self/status) is taken after
 * AO_malloc_trim() once the first 100 threads have exited and again at the
 * end: trimming gives free memory back, so what remains is leaked, and it
 * may not grow by more than 1 MiB over a few thousand threads.  Skipped
 * where /proc/self/status has no VmRSS.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define BATCH 4
#define MAXCLASSES 96
#define FIRST_CHECK 25 /* rounds */
#define TRIMMED_BOUND_KB (1L * 1024)

struct worker {
  pthread_t thread;
  atomic_int active; /* the signaller may pthread_kill it */
  atomic_int done;   /* its start routine is returning */
};

static struct worker workers[BATCH];
static size_t class_max[MAXCLASSES];
static int nclasses;
static atomic_ulong signaller_rounds, handler_runs, exit_runs;
static atomic_int stop_signaller;
static _Thread_local struct worker *me;
static _Thread_local uint64_t hrng;

static void handler(int sig)
{
  int saved = errno, c;
  unsigned char *p[MAXCLASSES];
  uint64_t tag = tu_rand(&hrng) | 1;

  (void)sig;
  if (me == NULL) {
    errno = saved;
    return;
  }
  if (atomic_load(&me->done))
    atomic_fetch_add(&exit_runs, 1);
  for (c = 0; c < nclasses; c++) {
    p[c] = AO_malloc(class_max[c]);
    if (p[c] == NULL)
      tu_sfail("AO_malloc returned NULL in a handler (mmap enabled)");
    /* the first and last 16 bytes (all of them, from 32 bytes up): enough
     * to see a block handed out twice */
    tu_fill(p[c], 16, tag + (uint64_t)c);
    tu_fill(p[c] + class_max[c] - 16, 16, (tag + (uint64_t)c) ^ class_max[c]);
  }
  for (c = 0; c < nclasses; c++) {
    if (tu_check(p[c] + class_max[c] - 16, 16,
                 (tag + (uint64_t)c) ^ class_max[c]) != (size_t)-1
        || (class_max[c] > 16
            && tu_check(p[c], 16, tag + (uint64_t)c) != (size_t)-1))
      tu_sfail("a block allocated in a handler on an exiting thread was "
               "overwritten while live");
  }
  for (c = nclasses - 1; c >= 0; c--)
    AO_free(p[c]);
  atomic_fetch_add(&handler_runs, 1);
  errno = saved;
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  uint64_t rng = tu_seed() + (uint64_t)(uintptr_t)arg;
  sigset_t set;
  int i;

  hrng = rng ^ 0xC0FFEE;
  me = w;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  for (i = 0; i < 300; i++) {
    size_t s = tu_logsize(&rng, 4096);
    unsigned char *p = AO_malloc(s);
    if (p == NULL)
      tu_fail("AO_malloc(%zu) returned NULL (mmap enabled)", s);
    tu_fill(p, s, (uint64_t)i + 1);
    if (tu_check(p, s, (uint64_t)i + 1) != (size_t)-1)
      tu_fail("block of %zu bytes overwritten while live", s);
    AO_free(p);
  }
  /* SIGUSR1 stays unblocked through the thread's exit */
  atomic_store(&w->done, 1);
  return NULL;
}

static void *signaller_main(void *arg)
{
  (void)arg;
  while (!atomic_load(&stop_signaller)) {
    int i;
    for (i = 0; i < BATCH; i++)
      if (atomic_load(&workers[i].active)) {
        int rc = pthread_kill(workers[i].thread, SIGUSR1);
        if (rc != 0 && rc != ESRCH)
          tu_fail("pthread_kill: %s", strerror(rc));
      }
    atomic_fetch_add(&signaller_rounds, 1);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  sigset_t set;
  pthread_t sig_thread;
  unsigned long rounds = tu_iters(1000), r;
  long first = -1, end;
  double deadline;
  size_t s = 16;
  int i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(tu_seconds(4) + 30, "the thread-exit signal storm");
  deadline = tu_now() + tu_seconds(4);
  if (getenv("AO_TEST_UNDER_QEMU") != NULL) /* set by .ci/cross.sh */
    tu_skip("under qemu-user, /proc/self/status measures the emulator (its code cache, per-thread state), not this program");
  if (tu_status_kb("VmRSS") < 0)
    tu_skip("no VmRSS in /proc/self/status");
#ifndef AO_HAVE_malloc_trim
  tu_skip("no AO_malloc_trim: cannot tell free memory from leaked memory");
#endif
  /* 16 B steps up to 128, then eight per octave up to 32 KiB: at least as
   * fine as the size classes, so every class is hit */
  while (s <= 32768 && nclasses < MAXCLASSES) {
    class_max[nclasses++] = s;
    s += s < 128 ? 16 : ((size_t)1 << (63 - __builtin_clzll(s))) / 8;
  }

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  /* only the workers take SIGUSR1; they inherit this mask */
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  AO_malloc_enable_mmap();
  tu_thread_nosig(&sig_thread, signaller_main, NULL);

  for (r = 0; r < rounds && (r <= FIRST_CHECK || tu_now() < deadline); r++) {
    unsigned long r0;
    for (i = 0; i < BATCH; i++) {
      atomic_store(&workers[i].done, 0);
      tu_thread(&workers[i].thread, worker_main, &workers[i]);
      atomic_store(&workers[i].active, 1);
    }
    for (i = 0; i < BATCH; i++)
      while (!atomic_load(&workers[i].done))
        tu_sleep(2e-5);
    /* signals keep coming while the threads run their exit */
    tu_sleep(2e-4);
    for (i = 0; i < BATCH; i++)
      atomic_store(&workers[i].active, 0);
    /* no pthread_kill may meet a joined thread */
    r0 = atomic_load(&signaller_rounds);
    while (atomic_load(&signaller_rounds) < r0 + 2)
      tu_sleep(1e-5);
    for (i = 0; i < BATCH; i++)
      pthread_join(workers[i].thread, NULL);
#ifdef AO_HAVE_malloc_trim
    if (r == FIRST_CHECK) {
      AO_malloc_trim();
      first = tu_status_kb("VmRSS");
    }
#endif
  }
  atomic_store(&stop_signaller, 1);
  pthread_join(sig_thread, NULL);

#ifdef AO_HAVE_malloc_trim
  AO_malloc_trim();
#endif
  end = tu_status_kb("VmRSS");
  tu_info("%lu threads; %lu handler runs, %lu of them after the thread's "
          "start routine returned; VmRSS after AO_malloc_trim(): %ld KiB "
          "after %d threads, %ld KiB at the end", r * BATCH,
          atomic_load(&handler_runs), atomic_load(&exit_runs), first,
          (FIRST_CHECK + 1) * BATCH, end);
  TU_CHECK(atomic_load(&exit_runs) > 0,
           "no handler ran on an exiting thread");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  /* ASan's quarantine and per-thread records, TSan's records of finished
   * threads (kept for its reports): they count in VmRSS */
  tu_skip("every thread ran; VmRSS not judged under a sanitizer");
#endif
  TU_CHECK(end - first < TRIMMED_BOUND_KB,
           "after AO_malloc_trim(), VmRSS grew by %ld KiB over %lu threads "
           "that exited while handlers allocated on them: memory left behind "
           "by exiting threads (a cache set up by a handler after the "
           "thread's cache was flushed?)", end - first,
           (r - FIRST_CHECK - 1) * BATCH);
  return 0;
}
