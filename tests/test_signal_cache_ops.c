/* SPDX-License-Identifier: MIT */
/* Per-thread high-frequency timers and pthread_kill land inside small-block cache operations; the handlers allocate and free too. */
/*
 * Every worker thread runs tight loops over the sizes that per-thread caches
 * serve (0..1024 B): single malloc/free pairs (a pop from and a push to the
 * cache), a rotating set of live blocks, and bursts of a few hundred blocks
 * of one size allocated then freed (cache refills and flushes).  Two signal
 * sources interrupt each worker at random instants:
 *  - a per-thread POSIX timer (timer_create, SIGEV_THREAD_ID, CLOCK_MONOTONIC,
 *    a few tens of microseconds) raising SIGALRM on that very thread, where
 *    the system has them;
 *  - a helper thread sending SIGUSR1 to each worker with pthread_kill every
 *    few microseconds.
 * The two handlers do not block each other, so they also nest.  Each handler
 * allocates small blocks, fills them with a pattern unique to that
 * allocation, verifies and frees them, sometimes in a burst of one size; it
 * also swaps blocks through mailboxes of its own thread: blocks allocated in
 * a handler are verified and freed by the interrupted thread's loop, and
 * blocks allocated by the loop are verified and freed in a handler; a third
 * set of mailboxes is shared by all threads and contexts.  A block handed out
 * twice, or written by the allocator while live, fails a pattern check.
 * Handler runs must have happened on every worker, from both sources.
 * No memory may be lost either (an interrupted refill or flush that drops a
 * list loses blocks without corrupting any): where the library has
 * AO_malloc_trim(), VmRSS after a trim must not grow by more than 1 MiB
 * from after a warm-up run of the same phase to after the main run (the
 * workers of these two runs block the signals before they exit).
 * A last phase runs rounds of short-lived workers that exit while SIGUSR1
 * keeps arriving, so signals also land in the cache flush at thread exit.
 * A deadlock shows up as a watchdog failure.
 */
#include "test_util.h"

#include <stdatomic.h>
#include <sys/syscall.h>

#include "atomic_ops_malloc.h"

/* Per-thread timers: Linux.  glibc before 2.34 keeps timer_create in librt,
 * which the test does not link: a weak reference finds out at run time. */
#if defined(SIGEV_THREAD_ID) && defined(SYS_gettid)
# if defined(sigev_notify_thread_id)
#   define SIGEV_TID(sev) ((sev).sigev_notify_thread_id)
# elif defined(__GLIBC__)
#   define SIGEV_TID(sev) ((sev)._sigev_un._tid)
# endif
#endif
#ifdef SIGEV_TID
# pragma weak timer_create
# pragma weak timer_settime
# pragma weak timer_delete
#endif

#define MAXW 16
#define LIVE 64
#define BURST 256
#define MBOX 4
#define GSLOTS 16
#define SMALL_MAX_TEST 1024
#define LOST_BOUND_KB (1L * 1024)

/* Blocks that change hands carry their size and tag in front. */
struct hdr {
  size_t size; /* total, header included */
  uint64_t tag;
};

struct worker {
  pthread_t thread;
  int index;
  atomic_int active;   /* the signaller may pthread_kill it */
  atomic_int done;     /* the loop has finished */
  int has_timer;
#ifdef SIGEV_TID
  timer_t timer;
#endif
  volatile sig_atomic_t in_alloc; /* the loop is inside AO_malloc/AO_free */
  atomic_ulong runs_alrm, runs_usr1, inside_hits, loop_ops;
  /* allocated in a handler, freed by this thread's loop */
  _Atomic(struct hdr *) to_loop[MBOX];
  /* allocated by the loop, freed in a handler on this thread */
  _Atomic(struct hdr *) to_handler[MBOX];
};

static struct worker workers[MAXW];
static int nworkers;
static _Atomic(struct hdr *) gslots[GSLOTS]; /* any thread, any context */
static atomic_ulong tag_counter;
static atomic_int stop_workers, stop_signaller;
static atomic_ulong signaller_rounds;
static atomic_int timers_unavailable;
static double deadline;
static unsigned long iters;
static int timer_us;
static int block_at_exit; /* workers block the signals before exiting */

static _Thread_local struct worker *me;
static _Thread_local uint64_t hrng; /* handlers' PRNG (nesting may reuse a value) */

/* Unique per allocation, also across nested handlers. */
static uint64_t new_tag(void)
{
  uint64_t t = atomic_fetch_add(&tag_counter, 1) + 1;
  return t * 0x9E3779B97F4A7C15ULL;
}

static size_t small_size(uint64_t *rng)
{
  /* log-uniform over 0..1024: every small class gets traffic */
  return tu_logsize(rng, SMALL_MAX_TEST);
}

/* ---- hand-off blocks ---------------------------------------------------- */

static struct hdr *hdr_make(uint64_t *rng)
{
  size_t sz = sizeof(struct hdr) + tu_logsize(rng, SMALL_MAX_TEST
                                                   - sizeof(struct hdr));
  struct hdr *h = AO_malloc(sz);
  if (h == NULL)
    tu_sfail("AO_malloc returned NULL for a hand-off block (mmap enabled)");
  if ((uintptr_t)h % TU_ALIGN != 0)
    tu_sfail("AO_malloc returned a misaligned hand-off block");
  h->size = sz;
  h->tag = new_tag();
  tu_fill(h + 1, sz - sizeof(*h), h->tag);
  return h;
}

static void hdr_check_free(struct hdr *h, const char *what)
{
  char msg[200];
  size_t len = 0;
  if (h == NULL)
    return;
  if (h->size < sizeof(*h) || h->size > SMALL_MAX_TEST
      || tu_check(h + 1, h->size - sizeof(*h), h->tag) != (size_t)-1) {
    tu_sappend(msg, sizeof(msg), &len, what);
    tu_sappend(msg, sizeof(msg), &len, ": a handed-over block was "
               "overwritten while live (handed out twice?)");
    tu_sfail(msg);
  }
  AO_free(h);
}

/* ---- handlers ------------------------------------------------------------ */

static void handler_body(struct worker *w)
{
  unsigned char *p[4];
  size_t sz[4];
  uint64_t tag[4];
  int i, n = 1 + (int)tu_below(&hrng, 4);
  unsigned slot;

  for (i = 0; i < n; i++) {
    sz[i] = small_size(&hrng);
    p[i] = AO_malloc(sz[i]);
    if (p[i] == NULL)
      tu_sfail("AO_malloc returned NULL inside a signal handler");
    if ((uintptr_t)p[i] % TU_ALIGN != 0)
      tu_sfail("AO_malloc in a handler returned a misaligned block");
    tag[i] = new_tag();
    tu_fill(p[i], sz[i], tag[i]);
  }
  /* sometimes a burst of one size: the handler's own refill and flush */
  if (tu_below(&hrng, 16) == 0) {
    unsigned char *b[24];
    size_t bs = small_size(&hrng);
    uint64_t bt = new_tag();
    int k;
    for (k = 0; k < 24; k++) {
      b[k] = AO_malloc(bs);
      if (b[k] == NULL)
        tu_sfail("AO_malloc returned NULL in a handler burst");
      tu_fill(b[k], bs, bt + (uint64_t)k);
    }
    for (k = 0; k < 24; k++)
      if (tu_check(b[k], bs, bt + (uint64_t)k) != (size_t)-1)
        tu_sfail("a block of a handler burst was overwritten (handed out "
                 "twice by an interrupted cache operation?)");
    for (k = 23; k >= 0; k--)
      AO_free(b[k]);
  }
  for (i = 0; i < n; i++)
    if (tu_check(p[i], sz[i], tag[i]) != (size_t)-1)
      tu_sfail("a block allocated in a signal handler was overwritten "
               "(the interrupted cache operation handed it out twice?)");
  for (i = n - 1; i >= 0; i--)
    AO_free(p[(i + 1) % n]);

  /* handler -> loop, loop -> handler, and the shared slots */
  slot = (unsigned)tu_below(&hrng, MBOX);
  hdr_check_free(atomic_exchange(&w->to_loop[slot], hdr_make(&hrng)),
                 "handler, to_loop mailbox not yet taken");
  slot = (unsigned)tu_below(&hrng, MBOX);
  hdr_check_free(atomic_exchange(&w->to_handler[slot], NULL),
                 "handler, freeing a block allocated by the thread's loop");
  hdr_check_free(atomic_exchange(&gslots[tu_below(&hrng, GSLOTS)],
                                 hdr_make(&hrng)),
                 "handler, shared slot");
}

static void handler(int sig)
{
  int saved = errno;
  struct worker *w = me;
  if (w != NULL) {
    if (w->in_alloc)
      atomic_fetch_add(&w->inside_hits, 1);
    handler_body(w);
    atomic_fetch_add(sig == SIGALRM ? &w->runs_alrm : &w->runs_usr1, 1);
  }
  errno = saved;
}

/* ---- worker loop ---------------------------------------------------------- */

struct live {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

static void *alloc_loop(struct worker *w, size_t s)
{
  void *p;
  w->in_alloc = 1;
  p = AO_malloc(s);
  w->in_alloc = 0;
  if (p == NULL)
    tu_fail("worker %d: AO_malloc(%zu) returned NULL (mmap enabled)",
            w->index, s);
  if ((uintptr_t)p % TU_ALIGN != 0)
    tu_fail("worker %d: AO_malloc(%zu) = %p misaligned", w->index, s, p);
  return p;
}

static void free_loop(struct worker *w, void *p)
{
  w->in_alloc = 1;
  AO_free(p);
  w->in_alloc = 0;
}

static void check_live(struct worker *w, const struct live *l, const char *what)
{
  size_t bad = tu_check(l->p, l->size, l->tag);
  if (bad != (size_t)-1)
    tu_fail("worker %d: %s: block %p (size %zu) byte %zu overwritten while "
            "live (handed out twice, or written by an interrupted cache "
            "operation)", w->index, what, (void *)l->p, l->size, bad);
}

static void start_timer(struct worker *w, uint64_t *rng)
{
#ifdef SIGEV_TID
  struct sigevent sev;
  struct itimerspec its;
  long ns;
  if (timer_create == NULL || timer_settime == NULL || timer_delete == NULL) {
    atomic_store(&timers_unavailable, 1);
    return;
  }
  memset(&sev, 0, sizeof(sev));
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGALRM;
  SIGEV_TID(sev) = (pid_t)syscall(SYS_gettid);
  if (timer_create(CLOCK_MONOTONIC, &sev, &w->timer) != 0) {
    atomic_store(&timers_unavailable, 1);
    return;
  }
  /* a few tens of microseconds, different per thread */
  ns = (long)timer_us * 1000 + (long)tu_below(rng, 7000);
  its.it_interval.tv_sec = 0;
  its.it_interval.tv_nsec = ns;
  its.it_value = its.it_interval;
  if (timer_settime(w->timer, 0, &its, NULL) != 0)
    tu_fail("worker %d: timer_settime: %s", w->index, strerror(errno));
  w->has_timer = 1;
#else
  (void)w;
  (void)rng;
  atomic_store(&timers_unavailable, 1);
#endif
}

static void stop_timer(struct worker *w)
{
#ifdef SIGEV_TID
  if (w->has_timer) {
    timer_delete(w->timer);
    w->has_timer = 0;
  }
#else
  (void)w;
#endif
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  uint64_t rng = tu_seed() + 0x1000 * (uint64_t)(w->index + 1)
                 + atomic_load(&tag_counter);
  struct live live[LIVE];
  static _Thread_local struct live burst[BURST];
  sigset_t set;
  unsigned long it;
  int k, use_timer = timer_us > 0;

  memset(live, 0, sizeof(live));
  hrng = rng ^ 0x5555AAAA5555AAAAULL;
  me = w;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGALRM);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  if (use_timer)
    start_timer(w, &rng);

  for (it = 0; it < iters && !atomic_load_explicit(&stop_workers,
                                                   memory_order_relaxed);
       it++) {
    unsigned op = (unsigned)tu_below(&rng, 100);
    if (op < 55) {
      /* a pair: pop from the cache, push back */
      struct live l;
      l.size = small_size(&rng);
      l.p = alloc_loop(w, l.size);
      l.tag = new_tag();
      tu_fill(l.p, l.size, l.tag);
      check_live(w, &l, "malloc/free pair");
      free_loop(w, l.p);
    } else if (op < 85) {
      /* rotate a long-lived block */
      struct live *l = &live[tu_below(&rng, LIVE)];
      if (l->p != NULL) {
        check_live(w, l, "long-lived block");
        free_loop(w, l->p);
        l->p = NULL;
      } else {
        l->size = small_size(&rng);
        l->p = alloc_loop(w, l->size);
        l->tag = new_tag();
        tu_fill(l->p, l->size, l->tag);
      }
    } else if (op < 97) {
      /* mailboxes: take the handlers' blocks, leave blocks for them */
      unsigned s = (unsigned)tu_below(&rng, MBOX);
      struct hdr *h = atomic_exchange(&w->to_loop[s], NULL);
      hdr_check_free(h, "loop, freeing a block allocated in a handler");
      h = atomic_exchange(&w->to_handler[tu_below(&rng, MBOX)],
                          hdr_make(&rng));
      hdr_check_free(h, "loop, to_handler mailbox not yet taken");
      h = atomic_exchange(&gslots[tu_below(&rng, GSLOTS)], hdr_make(&rng));
      hdr_check_free(h, "loop, shared slot");
    } else {
      /* a burst of one size: refill, then flush */
      size_t s = small_size(&rng);
      int n = 32 + (int)tu_below(&rng, BURST - 32);
      for (k = 0; k < n; k++) {
        burst[k].size = s;
        burst[k].p = alloc_loop(w, s);
        burst[k].tag = new_tag();
        tu_fill(burst[k].p, s, burst[k].tag);
      }
      for (k = 0; k < n; k++)
        check_live(w, &burst[k], "burst of one size");
      if (tu_below(&rng, 2))
        for (k = 0; k < n; k++)
          free_loop(w, burst[k].p);
      else
        for (k = n - 1; k >= 0; k--)
          free_loop(w, burst[k].p);
    }
    atomic_fetch_add_explicit(&w->loop_ops, 1, memory_order_relaxed);
  }

  for (k = 0; k < LIVE; k++)
    if (live[k].p != NULL) {
      check_live(w, &live[k], "long-lived block at the end");
      free_loop(w, live[k].p);
    }
  if (use_timer)
    stop_timer(w);
  /* unless blocked here, SIGUSR1 may land in the cache flush at exit */
  if (block_at_exit)
    pthread_sigmask(SIG_BLOCK, &set, NULL);
  atomic_store(&w->done, 1);
  return NULL;
}

static void *signaller_main(void *arg)
{
  uint64_t rng = tu_seed() ^ 77;
  (void)arg;
  while (!atomic_load(&stop_signaller)) {
    int i;
    for (i = 0; i < nworkers; i++)
      if (atomic_load(&workers[i].active)) {
        int rc = pthread_kill(workers[i].thread, SIGUSR1);
        if (rc != 0 && rc != ESRCH)
          tu_fail("pthread_kill: %s", strerror(rc));
      }
    atomic_fetch_add(&signaller_rounds, 1);
    tu_sleep(1e-6 * (double)(2 + tu_below(&rng, 40)));
  }
  return NULL;
}

/* Stop signalling the workers, then join them: pthread_kill never meets a
 * joined thread. */
static void retire_workers(void)
{
  unsigned long r0;
  int i;
  for (i = 0; i < nworkers; i++)
    atomic_store(&workers[i].active, 0);
  r0 = atomic_load(&signaller_rounds);
  while (atomic_load(&signaller_rounds) < r0 + 2)
    tu_sleep(1e-5);
  for (i = 0; i < nworkers; i++)
    pthread_join(workers[i].thread, NULL);
}

static void drain_mailboxes(void)
{
  int i, s;
  for (i = 0; i < nworkers; i++)
    for (s = 0; s < MBOX; s++) {
      hdr_check_free(atomic_exchange(&workers[i].to_loop[s], NULL),
                     "main, leftover handler block");
      hdr_check_free(atomic_exchange(&workers[i].to_handler[s], NULL),
                     "main, leftover loop block");
    }
}

static void launch_workers(void)
{
  int i;
  for (i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    atomic_store(&w->done, 0);
    w->has_timer = 0;
    w->index = i;
    /* workers are the only threads with the test signals unblocked */
    tu_thread(&w->thread, worker_main, w);
    atomic_store(&w->active, 1);
  }
}

static void reset_counts(void)
{
  int i;
  for (i = 0; i < nworkers; i++) {
    atomic_store(&workers[i].runs_alrm, 0);
    atomic_store(&workers[i].runs_usr1, 0);
    atomic_store(&workers[i].inside_hits, 0);
    atomic_store(&workers[i].loop_ops, 0);
  }
}

/* Phase 1: long-running workers, both signal sources. */
static void steady_phase(const char *name, double secs)
{
  unsigned long alrm = 0, usr1 = 0, inside = 0, ops = 0;
  int i;

  reset_counts();
  atomic_store(&stop_workers, 0);
  deadline = tu_now() + secs;
  launch_workers();
  while (tu_now() < deadline)
    tu_sleep(0.01);
  atomic_store(&stop_workers, 1);
  for (i = 0; i < nworkers; i++)
    while (!atomic_load(&workers[i].done))
      tu_sleep(1e-3);
  retire_workers();
  drain_mailboxes();

  for (i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    unsigned long a = atomic_load(&w->runs_alrm), u = atomic_load(&w->runs_usr1);
    alrm += a;
    usr1 += u;
    inside += atomic_load(&w->inside_hits);
    ops += atomic_load(&w->loop_ops);
    TU_CHECK(u > 0, "%s: worker %d never ran the SIGUSR1 (pthread_kill) "
             "handler", name, i);
    TU_CHECK(timer_us == 0 || atomic_load(&timers_unavailable) || a > 0,
             "%s: worker %d never ran the handler of its own SIGALRM timer",
             name, i);
    TU_CHECK(atomic_load(&w->loop_ops) > 0, "%s: worker %d made no progress",
             name, i);
  }
  /* tens of thousands of signals, a good share of them inside the loop's
   * allocator calls: zero would mean the signals never met the caches */
  TU_CHECK(inside > 0, "%s: no handler interrupted the loop inside AO_malloc "
           "or AO_free (%lu handler runs)", name, alrm + usr1);
  tu_info("%s: %lu loop operations; %lu timer and %lu pthread_kill "
          "handler runs, %lu of them inside the loop's AO_malloc/AO_free",
          name, ops, alrm, usr1, inside);
}

/* Phase 2: rounds of short-lived workers that exit under SIGUSR1. */
static void exit_phase(double secs, unsigned long rounds)
{
  unsigned long r, usr1 = 0, alrm = 0, threads = 0;
  unsigned long saved_iters = iters;
  int i;

  iters = 2000;
  deadline = tu_now() + secs;
  atomic_store(&stop_workers, 0);
  for (r = 0; r < rounds && tu_now() < deadline; r++) {
    reset_counts();
    launch_workers();
    for (i = 0; i < nworkers; i++)
      while (!atomic_load(&workers[i].done))
        tu_sleep(2e-5);
    /* a little longer: the exiting threads flush their caches meanwhile */
    tu_sleep(2e-4);
    retire_workers();
    drain_mailboxes();
    for (i = 0; i < nworkers; i++) {
      usr1 += atomic_load(&workers[i].runs_usr1);
      alrm += atomic_load(&workers[i].runs_alrm);
    }
    threads += (unsigned long)nworkers;
  }
  iters = saved_iters;
  TU_CHECK(usr1 > 0, "exit phase: no handler ran");
  tu_info("exit: %lu short-lived threads, %lu pthread_kill and %lu timer "
          "handler runs", threads, usr1, alrm);
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  sigset_t set;
  pthread_t sig_thread;
  double secs = tu_seconds(1.5);
  long rss0 = -1, rss1 = -1;
  int i;

  (void)argc;
  tu_init(argv[0]);
  nworkers = tu_threads(4);
  if (nworkers > MAXW)
    nworkers = MAXW;
  iters = tu_iters(100000000);
  timer_us = 25;

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  /* neither handler blocks the other one: they nest */
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);

  /* The main thread, the watchdog and the signaller keep the signals
   * blocked; workers unblock them once their thread-local state is set. */
  tu_watchdog(3 * secs + 20, "the per-thread signal storm");
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  /* The cached sizes come from the static heap first; with several
   * threads, bursts and caches that might not be enough. */
  AO_malloc_enable_mmap();
  tu_thread_nosig(&sig_thread, signaller_main, NULL);

  block_at_exit = 1;
  steady_phase("warm-up", secs / 4);
#ifdef AO_HAVE_malloc_trim
  AO_malloc_trim();
  /* under qemu-user (.ci/cross.sh) VmRSS is the emulator's: no RSS check */
  /* No RSS bound under qemu (it describes the emulator) or ASan (its
   * shadow memory and quarantine move VmRSS), as in the other RSS tests. */
#if defined(__SANITIZE_ADDRESS__)
  rss0 = -1;
#else
  rss0 = getenv("AO_TEST_UNDER_QEMU") != NULL ? -1 : tu_status_kb("VmRSS");
#endif
#endif
  steady_phase("steady", secs);
#ifdef AO_HAVE_malloc_trim
  AO_malloc_trim();
  rss1 = tu_status_kb("VmRSS");
  if (rss0 >= 0 && rss1 >= 0) {
    tu_info("VmRSS after AO_malloc_trim(): %ld KiB after the warm-up, %ld KiB"
            " after the steady phase", rss0, rss1);
    TU_CHECK(rss1 - rss0 < LOST_BOUND_KB,
             "after AO_malloc_trim(), VmRSS grew by %ld KiB over the steady "
             "phase, all blocks freed: signals in cache operations lose "
             "memory", rss1 - rss0);
  }
#endif
  block_at_exit = 0;
  if (atomic_load(&timers_unavailable))
    tu_info("per-thread timers unavailable: pthread_kill only");
  exit_phase(secs, tu_iters(400));

  atomic_store(&stop_signaller, 1);
  pthread_join(sig_thread, NULL);
  for (i = 0; i < GSLOTS; i++)
    hdr_check_free(atomic_exchange(&gslots[i], NULL), "main, shared slot");
  tu_info("ok");
  return 0;
}
