/* SPDX-License-Identifier: MIT */
/* AO_malloc_trim: RSS back near its start after freeing 256 MiB, live blocks kept, callable from signal handlers. */
/*
 * With mmap enabled:
 *  1. Return to the OS: VmRSS is recorded before any allocation; 256 MiB in
 *     mixed small (16 B..32 KiB) and large (100 KB..8 MiB) objects are
 *     allocated and written completely, verified and freed in random order
 *     by the same thread; after AO_malloc_trim() (which must report that it
 *     released memory) VmRSS must be back within 10% or 4 MiB, whichever is
 *     larger, of the start.  Twice: the second round runs on memory that the
 *     first trim released.
 *  2. Live blocks survive a trim: blocks of every size class up to 32 KiB
 *     and large ones, every other one freed (so spans are partly free), a
 *     trim, then every survivor is verified; new blocks allocated after the
 *     trim are written and verified next to them.
 *  3. Concurrently (first thing in the process): worker threads allocate,
 *     write, verify and free blocks of 0..32 KiB in loops while the main
 *     thread calls AO_malloc_trim() in a tight loop.
 *  4. From a signal handler: raise() runs a handler that calls
 *     AO_malloc_trim() and then allocates, while the main thread holds live
 *     blocks and has just filled its cache; then the workers of 3 run again
 *     while a helper thread sends them (and the main thread) a signal whose
 *     handler calls AO_malloc_trim(), so trims interrupt allocator calls,
 *     and the main thread also calls it directly meanwhile.
 *     After the workers exit (their caches are flushed at exit) one more
 *     trim brings VmRSS back within the same bound.
 * Skipped where /proc/self/status has no VmRSS.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

/* Under AddressSanitizer every phase runs, but VmRSS bounds are not
 * judged (its shadow memory, 1/8 of all memory ever poisoned, and its
 * quarantine count in VmRSS) and the test ends in a skip. */
#ifdef __SANITIZE_ADDRESS__
# define RSS_JUDGED 0
#else
# define RSS_JUDGED 1
#endif

#ifndef AO_HAVE_malloc_trim

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_fail("atomic_ops_malloc.h does not define AO_HAVE_malloc_trim");
}

#else /* AO_HAVE_malloc_trim */

#define MAXBLOCKS (1 << 17)
#define SMALL_TARGET ((size_t)96 << 20)
#define LARGE_TARGET ((size_t)160 << 20)
#define SLACK_KB (4L * 1024)
#define MAXW 8
#define WLIVE 48

static struct tu_block blocks[MAXBLOCKS];
static size_t nblocks;
static uint64_t rng;
static uint64_t tag_next;

static long rss_kb(void)
{
  return tu_status_kb("VmRSS");
}

static long allowed_kb(long start)
{
  return start / 10 > SLACK_KB ? start / 10 : SLACK_KB;
}

static void take(size_t s, const char *phase)
{
  unsigned char *p = AO_malloc(s);
  if (p == NULL)
    tu_fail("%s: AO_malloc(%zu) returned NULL with mmap enabled (%zu blocks "
            "live)", phase, s, nblocks);
  TU_CHECK((uintptr_t)p % TU_ALIGN == 0, "%s: AO_malloc(%zu) = %p misaligned",
           phase, s, (void *)p);
  TU_CHECK(nblocks < MAXBLOCKS, "internal: too many blocks");
  blocks[nblocks].p = p;
  blocks[nblocks].size = s;
  blocks[nblocks].tag = ++tag_next * 0x9E3779B97F4A7C15ULL;
  tu_fill(p, s, blocks[nblocks].tag);
  nblocks++;
}

static void verify_all(const char *phase)
{
  tu_blocks_intact(blocks, nblocks, phase);
}

static void free_random(size_t keep)
{
  while (nblocks > keep) {
    size_t j = (size_t)tu_below(&rng, nblocks);
    AO_free(blocks[j].p);
    blocks[j] = blocks[--nblocks];
  }
}

/* ---- 1. memory goes back to the OS ------------------------------------- */

static void return_round(int round, long rss0)
{
  size_t small = 0, large = 0;
  long peak, after;
  int r;

  while (small < SMALL_TARGET || large < LARGE_TARGET) {
    /* the kind that is further behind its target goes next */
    if (large >= LARGE_TARGET
        || (small < SMALL_TARGET
            && (double)small / (double)SMALL_TARGET
               <= (double)large / (double)LARGE_TARGET)) {
      size_t s = 16 + tu_logsize(&rng, 32768 - 16);
      take(s, "mixed small blocks");
      small += s;
    } else {
      size_t s = 100000 + tu_logsize(&rng, ((size_t)8 << 20) - 100000);
      take(s, "large blocks");
      large += s;
    }
  }
  verify_all("256 MiB before freeing");
  peak = rss_kb();
  free_random(0);
  r = AO_malloc_trim();
  after = rss_kb();
  tu_info("round %d: VmRSS %ld KiB at start, %ld KiB with 256 MiB live, "
          "%ld KiB after freeing it all and AO_malloc_trim() = %d", round,
          rss0, peak, after, r);
  TU_CHECK(peak - rss0 > 200L * 1024,
           "VmRSS rose by only %ld KiB with 256 MiB written: cannot measure",
           peak - rss0);
  TU_CHECK(r == 1, "AO_malloc_trim() returned %d after 256 MiB were freed; "
           "expected 1 (memory released)", r);
  TU_CHECK(!RSS_JUDGED || after - rss0 <= allowed_kb(rss0),
           "round %d: VmRSS is %ld KiB after freeing everything and "
           "AO_malloc_trim(), %ld KiB above the %ld KiB at start (allowed: "
           "%ld KiB)", round, after, after - rss0, rss0, allowed_kb(rss0));
}

/* ---- 2. live blocks survive a trim ------------------------------------- */

static void survivors(void)
{
  size_t prev = 0, s = 16, i, n;
  int k, r;

  /* 64 blocks of every size step up to 32 KiB (16 B steps up to 128, then
   * eight per octave: at least as fine as the size classes), sizes anywhere
   * in the step */
  while (s <= 32768) {
    for (k = 0; k < 64; k++)
      take(prev + 1 + (size_t)tu_below(&rng, s - prev), "every class");
    prev = s;
    s += s < 128 ? 16 : ((size_t)1 << (63 - __builtin_clzll(s))) / 8;
  }
  for (k = 0; k < 24; k++)
    take(40000 + tu_logsize(&rng, (size_t)2 << 20), "large");
  /* free every other block: each span keeps live blocks next to free ones */
  for (i = n = 0; i < nblocks; i++) {
    if (i % 2 == 0)
      AO_free(blocks[i].p);
    else
      blocks[n++] = blocks[i];
  }
  nblocks = n;
  /* and some whole runs of one class, so that some spans are wholly free */
  for (k = 0; k < 2000; k++)
    take(16 + tu_below(&rng, 1000), "spans to free");
  for (k = 0; k < 2000; k++)
    AO_free(blocks[--nblocks].p);
  r = AO_malloc_trim();
  TU_CHECK(r == 0 || r == 1, "AO_malloc_trim() returned %d", r);
  verify_all("live blocks after AO_malloc_trim()");
  /* normal service after the trim, next to the survivors */
  n = nblocks;
  for (i = 0; i < n; i++)
    take(blocks[i].size, "allocating after AO_malloc_trim()");
  verify_all("old and new blocks after AO_malloc_trim()");
  r = AO_malloc_trim();
  TU_CHECK(r == 0 || r == 1, "AO_malloc_trim() returned %d", r);
  verify_all("old and new blocks after a second AO_malloc_trim()");
  free_random(0);
  tu_info("survivors: live blocks of every class kept their contents "
          "across AO_malloc_trim()");
}

/* ---- 3. from signal handlers ------------------------------------------- */

static atomic_ulong trims_in_handlers, trims_released, trims_inside;
static _Thread_local volatile sig_atomic_t in_alloc;
static _Thread_local int worker_index = -1;
static _Thread_local uint64_t hrng;
static atomic_ulong handler_runs[MAXW];
static atomic_ulong worker_ops[MAXW];
static atomic_int stop_workers, stop_signaller;
static pthread_t workers[MAXW], main_thread;
static int nworkers;
/* workers: sizes uniform in 0..32 KiB (spans of the big classes come and
 * go all the time), else mostly small, some large */
static int uniform_sizes;

static void trim_handler(int sig)
{
  int saved = errno, r, i;
  unsigned char *p[3];
  size_t sz[3];
  uint64_t tag = tu_rand(&hrng) | 1;

  (void)sig;
  if (in_alloc)
    atomic_fetch_add(&trims_inside, 1);
  r = AO_malloc_trim();
  if (r != 0 && r != 1)
    tu_sfail("AO_malloc_trim() in a handler returned neither 0 nor 1");
  if (r == 1)
    atomic_fetch_add(&trims_released, 1);
  atomic_fetch_add(&trims_in_handlers, 1);
  /* allocation right after a trim, in the same handler */
  for (i = 0; i < 3; i++) {
    sz[i] = tu_logsize(&hrng, i == 2 ? (size_t)300000 : 2048);
    p[i] = AO_malloc(sz[i]);
    if (p[i] == NULL)
      tu_sfail("AO_malloc returned NULL in a handler after AO_malloc_trim()");
    tu_fill(p[i], sz[i], tag + (uint64_t)i);
  }
  for (i = 0; i < 3; i++) {
    if (tu_check(p[i], sz[i], tag + (uint64_t)i) != (size_t)-1)
      tu_sfail("a block allocated in a handler after AO_malloc_trim() was "
               "overwritten");
    AO_free(p[i]);
  }
  if (worker_index >= 0)
    atomic_fetch_add(&handler_runs[worker_index], 1);
  errno = saved;
}

/* raise() with the main thread outside the allocator. */
static void raise_phase(void)
{
  int k, i;
  unsigned long before = atomic_load(&trims_in_handlers);

  hrng = tu_seed() ^ 0xABCDEF;
  for (k = 0; k < 50; k++) {
    /* live blocks of the main thread, and a cache just filled by frees */
    for (i = 0; i < 40; i++)
      take(tu_logsize(&rng, i % 10 == 0 ? (size_t)400000 : 1024), "raise");
    for (i = 0; i < 20; i++)
      AO_free(blocks[--nblocks].p);
    if (raise(SIGUSR1) != 0)
      tu_fail("raise: %s", strerror(errno));
    verify_all("main thread's blocks after a trim in a handler");
  }
  free_random(0);
  TU_CHECK(atomic_load(&trims_in_handlers) - before == 50,
           "the raise()d handler ran %lu times, expected 50",
           atomic_load(&trims_in_handlers) - before);
}

struct live {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

static void *worker_main(void *arg)
{
  int me = (int)(uintptr_t)arg;
  uint64_t wrng = tu_seed() + 0x1234567 * (uint64_t)(me + 1);
  struct live live[WLIVE];
  sigset_t set;
  int k;

  memset(live, 0, sizeof(live));
  hrng = wrng ^ 0x77;
  worker_index = me;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
    struct live *l = &live[tu_below(&wrng, WLIVE)];
    if (l->p != NULL) {
      size_t bad = tu_check_sparse(l->p, l->size, l->tag);
      if (bad != (size_t)-1)
        tu_fail("worker %d: block %p (size %zu) byte %zu changed while live "
                "(released by a concurrent AO_malloc_trim?)", me,
                (void *)l->p, l->size, bad);
      in_alloc = 1;
      AO_free(l->p);
      in_alloc = 0;
      l->p = NULL;
    } else {
      if (uniform_sizes)
        l->size = (size_t)tu_below(&wrng, 32769);
      else
        l->size = tu_below(&wrng, 32) == 0
                  ? 100000 + tu_logsize(&wrng, (size_t)1 << 20)
                  : tu_logsize(&wrng, tu_below(&wrng, 4) ? 1024 : 32768);
      in_alloc = 1;
      l->p = AO_malloc(l->size);
      in_alloc = 0;
      if (l->p == NULL)
        tu_fail("worker %d: AO_malloc(%zu) returned NULL", me, l->size);
      l->tag = tu_rand(&wrng) | 1;
      tu_fill_sparse(l->p, l->size, l->tag);
    }
    atomic_fetch_add_explicit(&worker_ops[me], 1, memory_order_relaxed);
  }
  /* signals stay unblocked through the exit: the cache flush at exit may
   * be interrupted by a trim too */
  for (k = 0; k < WLIVE; k++)
    if (live[k].p != NULL) {
      if (tu_check_sparse(live[k].p, live[k].size, live[k].tag)
          != (size_t)-1)
        tu_fail("worker %d: block changed while live, at the end", me);
      AO_free(live[k].p);
    }
  return NULL;
}

static void *signaller_main(void *arg)
{
  uint64_t srng = tu_seed() ^ 99;
  (void)arg;
  while (!atomic_load(&stop_signaller)) {
    int i = (int)tu_below(&srng, (uint64_t)nworkers + 1);
    int rc = pthread_kill(i < nworkers ? workers[i] : main_thread, SIGUSR1);
    if (rc != 0 && rc != ESRCH)
      tu_fail("pthread_kill: %s", strerror(rc));
    tu_sleep(1e-6 * (double)(20 + tu_below(&srng, 400)));
  }
  return NULL;
}

/* Workers allocate and free; the main thread trims in a loop, and with
 * `signals` a helper thread also makes handlers trim on every thread.
 * Without signals, the workers use uniform sizes and the main thread does
 * little but trim. */
static void storm_phase(const char *name, double secs, int signals)
{
  pthread_t sig_thread;
  sigset_t set;
  double end = tu_now() + secs;
  unsigned long direct = 0, direct_released = 0, min_runs = (unsigned long)-1;
  int i;

  nworkers = tu_threads(3);
  if (nworkers > MAXW)
    nworkers = MAXW;
  main_thread = pthread_self();
  uniform_sizes = !signals;
  atomic_store(&stop_workers, 0);
  atomic_store(&stop_signaller, 0);
  atomic_store(&trims_in_handlers, 0);
  atomic_store(&trims_inside, 0);
  atomic_store(&trims_released, 0);
  for (i = 0; i < nworkers; i++) {
    atomic_store(&handler_runs[i], 0);
    atomic_store(&worker_ops[i], 0);
    tu_thread(&workers[i], worker_main, (void *)(uintptr_t)i);
  }
  if (signals)
    tu_thread_nosig(&sig_thread, signaller_main, NULL);

  /* the main thread: its own blocks, direct trims, and the signal too */
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  if (signals)
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  while (tu_now() < end) {
    int k, r;
    /* with signals: short-lived blocks up to 600 KB, so that spans, page
     * runs and mappings come and go between the trims */
    for (k = 0; k < (signals ? 50 : 0); k++) {
      size_t sz = (size_t)tu_below(&rng, 600000);
      unsigned char *p = AO_malloc(sz);
      TU_CHECK(p != NULL, "%s: AO_malloc(%zu) returned NULL", name, sz);
      tu_fill(p, sz < 64 ? sz : 64, (uint64_t)k + 1);
      TU_CHECK(tu_check(p, sz < 64 ? sz : 64, (uint64_t)k + 1) == (size_t)-1,
               "%s: a block changed while live", name);
      AO_free(p);
    }
    if ((direct & 15) == 0) {
      /* live blocks of the main thread across many trims */
      take(tu_logsize(&rng, tu_below(&rng, 4) ? 4096 : (size_t)600000),
           name);
      free_random(10);
      verify_all("main thread's blocks while trims run");
    }
    in_alloc = 1;
    r = AO_malloc_trim();
    in_alloc = 0;
    TU_CHECK(r == 0 || r == 1, "AO_malloc_trim() returned %d", r);
    direct++;
    direct_released += (unsigned long)r;
  }
  verify_all("main thread's blocks while trims run");
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  free_random(0);

  atomic_store(&stop_workers, 1);
  /* the signaller stops before the joins: it never meets a joined thread,
   * but it still hits threads that are exiting */
  tu_sleep(0.002);
  atomic_store(&stop_signaller, 1);
  if (signals)
    pthread_join(sig_thread, NULL);
  for (i = 0; i < nworkers; i++) {
    unsigned long n = atomic_load(&handler_runs[i]);
    pthread_join(workers[i], NULL);
    if (n < min_runs)
      min_runs = n;
    TU_CHECK(atomic_load(&worker_ops[i]) > 0, "worker %d made no progress", i);
  }
  tu_info("%s: %lu trims in handlers (%lu inside an allocator call, %lu "
          "released memory), %lu direct trims (%lu released); fewest handler"
          " runs on one worker: %lu", name, atomic_load(&trims_in_handlers),
          atomic_load(&trims_inside), atomic_load(&trims_released), direct,
          direct_released, min_runs);
  TU_CHECK(!signals || min_runs > 0,
           "some worker never ran the trimming handler");
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  sigset_t set;
  long rss0, after;
  int r;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(tu_seconds(3.0) + tu_seconds(1.5) + 60, "the trim test");
  rng = tu_seed();
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = trim_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  /* blocked except where a phase wants it; workers inherit the mask */
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  /* the test's own bookkeeping counts in the start figure */
  memset(blocks, 0x5A, sizeof(blocks));
  if (getenv("AO_TEST_UNDER_QEMU") != NULL) /* set by .ci/cross.sh */
    tu_skip("under qemu-user, /proc/self/status measures the emulator (its code cache, per-thread state), not this program");
  rss0 = rss_kb();
  if (rss0 < 0)
    tu_skip("no VmRSS in /proc/self/status");
  AO_malloc_enable_mmap();

  /* first, while the allocator's metadata is still fresh */
  storm_phase("concurrent trims", tu_seconds(3.0), 0);
  return_round(1, rss0);
  return_round(2, rss0);
  survivors();

  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  raise_phase();
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  storm_phase("trims in handlers", tu_seconds(1.5), 1);

  r = AO_malloc_trim();
  TU_CHECK(r == 0 || r == 1, "AO_malloc_trim() returned %d", r);
  after = rss_kb();
  tu_info("end: VmRSS %ld KiB after the threads exited and a last "
          "AO_malloc_trim() (start: %ld KiB)", after, rss0);
  if (!RSS_JUDGED)
    tu_skip("every phase passed; VmRSS not judged under AddressSanitizer");
  TU_CHECK(after - rss0 <= allowed_kb(rss0),
           "VmRSS is %ld KiB after all threads exited and AO_malloc_trim(), "
           "%ld KiB above the start (allowed: %ld KiB): memory cached by the "
           "exited threads was not returned", after, after - rss0,
           allowed_kb(rss0));
  return 0;
}

#endif /* AO_HAVE_malloc_trim */
