/* SPDX-License-Identifier: MIT */
/* A thread's first allocation after the library's key destructor ran: its cache is not lost. */
/*
 * glibc runs pthread key destructors in rounds (at most
 * PTHREAD_DESTRUCTOR_ITERATIONS = 4) while some value is non-NULL, then
 * forgets the remaining values.  Here the test's own key (created after the
 * library's, so it runs after the library's destructor within a round) has
 * a destructor that sets its value again in rounds 1-3 and in round 4 does
 * the thread's very first AO_malloc/AO_free: directly on even threads, from
 * a SIGUSR1 handler (raise) on odd ones, like a handler landing after the
 * destructors.  The cache created then can never be flushed by the
 * library's own destructor.  2000 such threads, a few at a time, on the
 * static heap (mmap never enabled): every allocation must succeed, and
 * after AO_malloc_trim() blocks of 64 KiB must again take at least half of
 * the heap.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define THREADS 2000
#define BATCH 4
#define ROUNDS 4                  /* PTHREAD_DESTRUCTOR_ITERATIONS */
#define BIG ((size_t)64 << 10)
#define MAX_BIG (TU_STATIC_HEAP / BIG + 1)

static pthread_key_t key;
static volatile int failed_at = -1;
static volatile int late_calls;
static __thread int my_index;

static void alloc_once(void)
{
  unsigned char *p = AO_malloc(100);

  if (p == NULL) {
    failed_at = my_index;
    return;
  }
  memset(p, 0x3c, 100);
  AO_free(p);
  __atomic_add_fetch(&late_calls, 1, __ATOMIC_RELAXED);
}

static void on_usr1(int sig)
{
  (void)sig;
  alloc_once();
}

static void destructor(void *value)
{
  uintptr_t round = (uintptr_t)value;

  if (round < ROUNDS) {
    pthread_setspecific(key, (void *)(round + 1));
    return;
  }
  if (my_index & 1)
    raise(SIGUSR1);
  else
    alloc_once();
}

static void *worker(void *arg)
{
  my_index = (int)(intptr_t)arg;
  pthread_setspecific(key, (void *)(uintptr_t)1);
  return NULL;
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  pthread_t t[BATCH];
  static void *big[MAX_BIG];
  size_t nbig = 0, i;
  unsigned threads = (unsigned)tu_iters(THREADS);
  unsigned done = 0, k;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "threads allocating in their last key destructor round");
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  /* The library's constructor has created its key: this one comes after. */
  TU_CHECK(pthread_key_create(&key, destructor) == 0, "pthread_key_create");
  while (done < threads && failed_at < 0) {
    unsigned n = threads - done < BATCH ? threads - done : BATCH;

    for (k = 0; k < n; k++)
      tu_thread(&t[k], worker, (void *)(intptr_t)(done + k));
    for (k = 0; k < n; k++)
      pthread_join(t[k], NULL);
    done += n;
  }
  TU_CHECK(failed_at < 0, "AO_malloc(100) returned NULL in the last "
           "destructor round of thread %d of %u: caches created that late "
           "were not given back", failed_at, threads);
  TU_CHECK(late_calls == (int)threads, "%d of %u threads allocated in their "
           "last destructor round", late_calls, threads);
  AO_malloc_trim();
  while (nbig < MAX_BIG && (big[nbig] = AO_malloc(BIG)) != NULL)
    nbig++;
  TU_CHECK(nbig * BIG >= TU_STATIC_HEAP / 2, "after %u threads and a trim "
           "only %zu blocks of 64 KiB fit in the %zu-byte static heap",
           threads, nbig, TU_STATIC_HEAP);
  for (i = 0; i < nbig; i++)
    AO_free(big[i]);
  tu_info("ok: %u threads allocated in their last destructor round, then "
          "%zu blocks of 64 KiB", threads, nbig);
  return 0;
}
