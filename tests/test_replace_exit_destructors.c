/* SPDX-License-Identifier: MIT */
/* libaomalloc: atexit handlers, pthread key and C11 tss destructors that allocate and free after the thread's cache was flushed. */
#include "test_util.h"

#include <threads.h>

/* Created after libaomalloc's own key (its constructor ran first), so
 * glibc runs these destructors after the allocator's exit hook flushed the
 * thread's cache: allocation then goes through the shared lists. */
static pthread_key_t key;
static tss_t tss;
static volatile unsigned long destructor_runs;

static void churn(unsigned tag)
{
  void *p[32];
  unsigned i;

  for (i = 0; i < 32; i++) {
    p[i] = malloc(16u << (i % 12));
    TU_CHECK(p[i] != NULL, "malloc in a destructor");
    tu_fill(p[i], 16, tag + i);
  }
  for (i = 0; i < 32; i++) {
    TU_CHECK(tu_check(p[i], 16, tag + i) == (size_t)-1, "a destructor's block was overwritten");
    free(p[i]);
  }
}

static void key_destructor(void *v)
{
  unsigned *n = v;

  churn(*n);
  free(v);
  __atomic_fetch_add(&destructor_runs, 1, __ATOMIC_RELAXED);
}

static void tss_destructor(void *v)
{
  churn(7);
  free(v);
  __atomic_fetch_add(&destructor_runs, 1, __ATOMIC_RELAXED);
}

static void *worker(void *arg)
{
  unsigned *n = malloc(sizeof(*n));

  *n = (unsigned)(uintptr_t)arg;
  pthread_setspecific(key, n);
  tss_set(tss, malloc(1000));
  churn(*n);
  return NULL;
}

static void *atexit_block[8];

static void at_exit(void)
{
  unsigned i;

  churn(99);
  for (i = 0; i < 8; i++)
    free(atexit_block[i]);
  /* This stays: exit status 0 says the handler got here. */
}

int main(int argc, char **argv)
{
  pthread_t t[16];
  unsigned i, round;

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(60, "exit destructors");
  TU_CHECK(pthread_key_create(&key, key_destructor) == 0, "pthread_key_create");
  TU_CHECK(tss_create(&tss, tss_destructor) == thrd_success, "tss_create");
  for (round = 0; round < 8; round++) {
    for (i = 0; i < 16; i++)
      TU_CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(round * 16 + i)) == 0,
               "pthread_create");
    for (i = 0; i < 16; i++)
      pthread_join(t[i], NULL);
  }
  TU_CHECK(destructor_runs == 2 * 8 * 16, "%lu destructor runs, expected %d",
           destructor_runs, 2 * 8 * 16);
  for (i = 0; i < 8; i++)
    atexit_block[i] = malloc(1000u << i);
  TU_CHECK(atexit(at_exit) == 0, "atexit");
  /* The main thread's own key destructors do not run at exit(); the
   * atexit handler allocates and frees after main returned. */
  tu_info("%lu key/tss destructors allocated and freed after the cache flush; atexit handler next: ok",
          destructor_runs);
  return 0;
}
