/* SPDX-License-Identifier: MIT */
/* Nested signal handlers (SA_NODEFER, and two signals interrupting each other) that all allocate. */
/*
 * The main thread runs an AO_malloc/AO_free loop.  The SIGUSR1 handler is
 * installed with SA_NODEFER: each invocation allocates blocks, then raises
 * SIGUSR1 again until the nesting depth is 8, then verifies and frees its
 * blocks on the way back out, so eight handler levels hold live blocks at
 * once.  A helper thread keeps sending SIGUSR1 and SIGUSR2 to the main
 * thread at random instants, so handlers of either signal also interrupt
 * handlers (and the main loop) in the middle of AO_malloc or AO_free.
 * SIGUSR2's handler does not block SIGUSR1 and vice versa.  The handlers use
 * only async-signal-safe calls.  Interrupted allocator calls are counted.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define CHAIN_DEPTH 8
#define MAX_DEPTH 14 /* async signals on top of a chain: bounded stack use */

static pthread_t main_thread;
static atomic_int stop;
static atomic_ulong runs, chains, hits_main, hits_handler, max_seen;
static volatile sig_atomic_t depth;
/* Handler entries so far: the helper thread sends its next signal only
 * once the previous one was taken, so they never pile up in the kernel.
 * Pending signals can still be delivered several at once, each frame
 * stopped at its handler's first instruction, and a stopped handler later
 * starts a chain of its own: the nesting is bounded by stack use instead
 * (handlers return at once beyond STACK_BUDGET). */
static atomic_ulong arrivals;
static volatile sig_atomic_t in_alloc[MAX_DEPTH + 2]; /* per nesting level */
static uint64_t level_rng[MAX_DEPTH + 2];
static size_t max_size;
static uintptr_t stack_base; /* an address in main's frame */
#define STACK_BUDGET ((uintptr_t)1 << 20)

static int stack_too_deep(void)
{
  char here;
  uintptr_t a = (uintptr_t)&here;
  return (a < stack_base ? stack_base - a : a - stack_base) > STACK_BUDGET;
}

static void note_interruption(int level)
{
  /* level is the depth of the code that was interrupted */
  if (in_alloc[level]) {
    if (level == 0)
      atomic_fetch_add(&hits_main, 1);
    else
      atomic_fetch_add(&hits_handler, 1);
  }
}

static void alloc_verify_free(int level, int nblocks)
{
  unsigned char *p[4];
  size_t sz[4];
  uint64_t tag[4];
  uint64_t *rng = &level_rng[level];
  int i;

  for (i = 0; i < nblocks; i++) {
    sz[i] = tu_below(rng, 8) == 0 ? tu_logsize(rng, max_size)
                                  : tu_logsize(rng, 256);
    in_alloc[level] = 1;
    p[i] = AO_malloc(sz[i]);
    in_alloc[level] = 0;
    if (p[i] == NULL)
      tu_sfail("AO_malloc returned NULL in a nested handler");
    tag[i] = tu_rand(rng);
    tu_fill(p[i], sz[i], tag[i]);
  }
  /* deeper levels (from the chain or async signals) run in here too */
  if (level < CHAIN_DEPTH && !stack_too_deep())
    raise(SIGUSR1);
  for (i = nblocks - 1; i >= 0; i--) {
    if (tu_check(p[i], sz[i], tag[i]) != (size_t)-1)
      tu_sfail("a block held by an interrupted handler level was "
               "overwritten by a nested level (handed out twice?)");
    in_alloc[level] = 1;
    AO_free(p[i]);
    in_alloc[level] = 0;
  }
}

static void handler(int sig)
{
  int saved;
  int level;

  atomic_fetch_add(&arrivals, 1);
  if (stack_too_deep())
    return;
  saved = errno;
  level = depth + 1;
  note_interruption(depth);
  if (level > MAX_DEPTH) {
    errno = saved;
    return;
  }
  depth = level;
  if ((unsigned long)level > atomic_load(&max_seen))
    atomic_store(&max_seen, (unsigned long)level);
  if (level == 1 && sig == SIGUSR1)
    atomic_fetch_add(&chains, 1);
  alloc_verify_free(level, sig == SIGUSR1 ? 3 : 2);
  atomic_fetch_add(&runs, 1);
  depth = level - 1;
  errno = saved;
}

static void *spammer(void *arg)
{
  uint64_t rng = tu_seed() ^ 0xABCDEF;
  (void)arg;
  while (!atomic_load(&stop)) {
    unsigned long before = atomic_load(&arrivals);
    double t0 = tu_now();
    double gap = 1e-6 * (double)tu_below(&rng, tu_below(&rng, 2) ? 40 : 3);
    int rc = pthread_kill(main_thread, tu_below(&rng, 3) ? SIGUSR1 : SIGUSR2);
    if (rc != 0)
      tu_fail("pthread_kill: %s", strerror(rc));
    /* wait until it was taken (SIGUSR2 waits while its handler runs),
     * then 0-3 us (to land inside that handler) or 0-40 us (so that the
     * main loop makes progress too) */
    while (atomic_load(&arrivals) == before && !atomic_load(&stop)
           && tu_now() - t0 < 0.01)
      ;
    t0 = tu_now();
    while (tu_now() - t0 < gap && !atomic_load(&stop))
      ;
  }
  return NULL;
}

static void run_phase(const char *name, size_t maxsz, double secs,
                      unsigned long iters)
{
  uint64_t rng = tu_seed();
  pthread_t t;
  double end;
  unsigned long it;
  unsigned long r0 = atomic_load(&runs);

  max_size = maxsz;
  atomic_store(&stop, 0);
  tu_thread_nosig(&t, spammer, NULL);
  end = tu_now() + secs;
  for (it = 0; it < iters; it++) {
    size_t s = tu_below(&rng, 16) == 0 ? tu_logsize(&rng, maxsz)
                                       : tu_logsize(&rng, 512);
    uint64_t tag = tu_rand(&rng);
    unsigned char *p;
    in_alloc[0] = 1;
    p = AO_malloc(s);
    in_alloc[0] = 0;
    TU_CHECK(p != NULL, "%s: AO_malloc(%zu) returned NULL", name, s);
    tu_fill(p, s, tag);
    if ((it & 1023) == 0)
      raise(SIGUSR1); /* a full chain of depth 8 from the main loop */
    TU_CHECK(tu_check(p, s, tag) == (size_t)-1, "%s: main-loop block "
             "overwritten while handlers ran", name);
    in_alloc[0] = 1;
    AO_free(p);
    in_alloc[0] = 0;
    if ((it & 255) == 0 && tu_now() > end)
      break;
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  tu_info("%s: %lu loop iterations, %lu handler runs", name, it + 1,
          atomic_load(&runs) - r0);
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  double secs = tu_seconds(1.0);
  int i;

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  main_thread = pthread_self();
  stack_base = (uintptr_t)&sa;
  for (i = 0; i < MAX_DEPTH + 2; i++)
    level_rng[i] = tu_seed() * (uint64_t)(i + 3);

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_NODEFER | SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_flags = SA_RESTART; /* SIGUSR2 blocks only itself while it runs */
  sigaction(SIGUSR2, &sa, NULL);

  tu_watchdog(2 * secs + 20, "the nested-signal test");
  run_phase("static heap", 1024, secs, tu_iters(50000000));
  AO_malloc_enable_mmap();
  run_phase("mmap enabled", (size_t)64 << 10, secs, tu_iters(50000000));

  TU_CHECK(atomic_load(&max_seen) >= CHAIN_DEPTH,
           "handlers never nested %d deep (max %lu)", CHAIN_DEPTH,
           (unsigned long)atomic_load(&max_seen));
  TU_CHECK(atomic_load(&hits_main) > 0,
           "no signal ever arrived while the main loop was inside "
           "AO_malloc/AO_free: the test exercised nothing");
  tu_info("ok: %lu chains, max depth %lu, %lu interruptions of the main "
          "loop's allocator calls, %lu of handlers' allocator calls",
          (unsigned long)atomic_load(&chains),
          (unsigned long)atomic_load(&max_seen),
          (unsigned long)atomic_load(&hits_main),
          (unsigned long)atomic_load(&hits_handler));
  return 0;
}
