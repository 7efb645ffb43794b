/* SPDX-License-Identifier: MIT */
/* A full static heap with free blocks left: a handler must get them, whatever it interrupts. */
/*
 * The static heap (mmap never enabled) is filled with 48-byte blocks and
 * every other block is freed again, so no span is wholly free but half of
 * the 48-byte slots are available.  The main thread then keeps making
 * requests that cannot be met (sizes whose pages are gone), which sends the
 * allocator down its slow paths (recovering free spans, carving new ones),
 * while a helper thread interrupts it with signals at random instants.  The
 * handler allocates a 48-byte block: memory is not exhausted for that size,
 * so NULL is wrong no matter which step of the slow path was interrupted.
 * Other threads doing 48-byte malloc/free at the same time must never see
 * NULL either.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define MAXB (TU_STATIC_HEAP / 32 + 1024)
#define SMALL 48

static unsigned char *blocks[MAXB];
static size_t nblocks;
static pthread_t main_thread;
static atomic_int stop;
static atomic_ulong handler_runs, in_slow_hits, peer_ops;
static volatile sig_atomic_t in_slow;

static void handler(int sig)
{
  int saved = errno;
  unsigned char *p;
  (void)sig;
  if (in_slow)
    atomic_fetch_add(&in_slow_hits, 1);
  p = AO_malloc(SMALL);
  if (p == NULL)
    tu_sfail("AO_malloc(48) returned NULL in a signal handler although "
             "thousands of free 48-byte blocks exist (the interrupted "
             "AO_malloc had hidden them?)");
  tu_fill(p, SMALL, (uintptr_t)p);
  if (tu_check(p, SMALL, (uintptr_t)p) != (size_t)-1)
    tu_sfail("handler block overwritten");
  AO_free(p);
  atomic_fetch_add(&handler_runs, 1);
  errno = saved;
}

static void *spammer(void *arg)
{
  uint64_t rng = tu_seed() ^ 0x5151;
  (void)arg;
  while (!atomic_load(&stop)) {
    volatile unsigned i, n = (unsigned)tu_below(&rng, 4000);
    pthread_kill(main_thread, SIGUSR1);
    for (i = 0; i < n; i++)
      ;
  }
  return NULL;
}

/* Another thread using the free 48-byte slots concurrently. */
static void *peer(void *arg)
{
  unsigned long n = 0;
  (void)arg;
  while (!atomic_load(&stop)) {
    unsigned char *p = AO_malloc(SMALL);
    if (p == NULL)
      tu_fail("a peer thread's AO_malloc(48) returned NULL although "
              "thousands of free 48-byte blocks exist");
    p[0] = 1;
    AO_free(p);
    n++;
  }
  atomic_fetch_add(&peer_ops, n);
  return NULL;
}

static void run(int with_peer, double secs)
{
  static const size_t hopeless[] = { 20000, 100000, 8000, 32768, 250000 };
  pthread_t sp, pe;
  double end = tu_now() + secs;
  unsigned long it = 0;

  atomic_store(&stop, 0);
  tu_thread_nosig(&sp, spammer, NULL);
  if (with_peer)
    tu_thread_nosig(&pe, peer, NULL);
  while (tu_now() < end) {
    size_t s = hopeless[it++ % (sizeof(hopeless) / sizeof(hopeless[0]))];
    void *p;
    in_slow = 1;
    p = AO_malloc(s);
    in_slow = 0;
    AO_free(p); /* normally NULL: the heap is full */
  }
  atomic_store(&stop, 1);
  pthread_join(sp, NULL);
  if (with_peer)
    pthread_join(pe, NULL);
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  size_t i, freed = 0;
  double secs = tu_seconds(1.0);

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(2 * secs + 20, "the heap-edge signal test");
  main_thread = pthread_self();

  while (nblocks < MAXB && (blocks[nblocks] = AO_malloc(SMALL)) != NULL)
    nblocks++;
  TU_CHECK(nblocks < MAXB, "the static heap never ran out");
  TU_CHECK(nblocks * SMALL >= TU_STATIC_HEAP / 2, "only %zu blocks of 48 "
           "bytes fit in the static heap", nblocks);
  for (i = 0; i < nblocks; i += 2) {
    AO_free(blocks[i]);
    blocks[i] = NULL;
    freed++;
  }

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);

  run(0, secs / 2);
  run(1, secs / 2);

  for (i = 0; i < nblocks; i++)
    AO_free(blocks[i]);
  tu_info("ok: %zu free 48-byte blocks, %lu handler runs (%lu during a "
          "failing request), %lu peer operations", freed,
          (unsigned long)atomic_load(&handler_runs),
          (unsigned long)atomic_load(&in_slow_hits),
          (unsigned long)atomic_load(&peer_ops));
  return 0;
}
