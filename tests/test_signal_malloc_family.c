/* SPDX-License-Identifier: MIT */
/* AO_calloc, AO_realloc, AO_aligned_alloc and AO_malloc_usable_size from nested signal handlers while threads use them. */
/*
 * Worker threads loop over the malloc family (calloc, a realloc chain
 * through classes and runs, aligned blocks, usable sizes), checking
 * contents.  A helper thread sends SIGUSR1 to them at random instants; the
 * handler (SA_NODEFER) does the same operations and raises SIGUSR1 again
 * up to depth 3, so handlers interrupt the functions and each other.  No
 * handler result may be NULL (memory is plentiful: mmap is enabled), and
 * no block may be overwritten by another level.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define WORKERS 2
#define DEPTH 3

static atomic_int stop;
static atomic_ulong handler_runs, arrivals;
static pthread_t workers[WORKERS];
static __thread int depth;
static __thread uint64_t rng;

/* One round of every function; all async-signal-safe. */
static void family_round(uint64_t *r, int in_handler)
{
  size_t n = tu_logsize(r, 70000), align = (size_t)1 << tu_below(r, 17);
  unsigned char *a, *b, *c;
  uint64_t tag = tu_rand(r);
  size_t i;

  a = AO_calloc(1, n);
  if (a == NULL)
    tu_sfail("AO_calloc returned NULL");
  for (i = 0; i < n; i++)
    if (a[i] != 0)
      tu_sfail("AO_calloc block not zero");
  tu_fill(a, n, tag);
  b = AO_aligned_alloc(align, n / 2 + 1);
  if (b == NULL || ((uintptr_t)b & (align - 1)) != 0)
    tu_sfail("AO_aligned_alloc failed or misaligned");
  if (AO_malloc_usable_size(b) < n / 2 + 1)
    tu_sfail("usable size too small");
  tu_fill(b, n / 2 + 1, tag + 1);
  if (in_handler && depth < DEPTH)
    raise(SIGUSR1);
  c = AO_realloc(a, n * 2 + 1);
  if (c == NULL || tu_check(c, n, tag) != (size_t)-1)
    tu_sfail("AO_realloc lost data");
  a = AO_realloc(c, n / 3);
  if (a == NULL || tu_check(a, n / 3, tag) != (size_t)-1)
    tu_sfail("AO_realloc (shrink) lost data");
  if (tu_check(b, n / 2 + 1, tag + 1) != (size_t)-1)
    tu_sfail("an aligned block was overwritten");
  AO_free(a);
  AO_free(b);
}

static void handler(int sig)
{
  int saved = errno;
  uint64_t r = rng ^ (uint64_t)depth * 0x9E3779B97F4A7C15ull;

  (void)sig;
  atomic_fetch_add(&arrivals, 1);
  depth++;
  if (depth <= DEPTH) {
    family_round(&r, 1);
    atomic_fetch_add(&handler_runs, 1);
  }
  rng = tu_rand(&r);
  depth--;
  errno = saved;
}

static void *worker(void *arg)
{
  unsigned long it, iters = tu_iters(200000);
  double end = tu_now() + tu_seconds(1.0);
  uint64_t r;

  rng = tu_seed() ^ (uintptr_t)arg;
  r = rng * 3;
  for (it = 0; it < iters && !atomic_load(&stop); it++) {
    family_round(&r, 0);
    if ((it & 63) == 0 && tu_now() > end)
      break;
  }
  return NULL;
}

static void *spammer(void *arg)
{
  uint64_t r = tu_seed() ^ 77;

  (void)arg;
  while (!atomic_load(&stop)) {
    unsigned long before = atomic_load(&arrivals);
    double t0 = tu_now();
    int rc = pthread_kill(workers[tu_below(&r, WORKERS)], SIGUSR1);

    if (rc != 0)
      break;                    /* the worker is gone */
    while (atomic_load(&arrivals) == before && !atomic_load(&stop)
           && tu_now() - t0 < 0.01)
      ;
    t0 = tu_now();
    while (tu_now() - t0 < 1e-6 * (double)tu_below(&r, 50))
      ;
  }
  return NULL;
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  pthread_t t;
  long i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the signal phase");
  AO_malloc_enable_mmap();
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_NODEFER | SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  for (i = 0; i < WORKERS; i++)
    tu_thread(&workers[i], worker, (void *)(i + 1));
  tu_thread_nosig(&t, spammer, NULL);
  for (i = 0; i < WORKERS; i++)
    pthread_join(workers[i], NULL);
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  tu_info("%lu handler rounds of calloc/realloc/aligned_alloc/usable_size, "
          "%lu signals", atomic_load(&handler_runs), atomic_load(&arrivals));
  return 0;
}
