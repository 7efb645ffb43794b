/* SPDX-License-Identifier: MIT */
/*
 * signal_demo: AO_malloc and AO_free inside signal handlers.
 *
 * Three threads (main and two workers) allocate, fill, check and free blocks
 * of mixed sizes for about two seconds.  Meanwhile two interval timers fire
 * SIGALRM (wall clock) and SIGPROF (CPU time), asked for every 100
 * microseconds.  Every 8th SIGALRM run also raises SIGUSR1 while it holds
 * blocks, so that handler runs nested inside it.  Each handler run, on
 * whichever thread it lands, and possibly nested inside another one:
 *   - pops a block that a thread handed over through an AO_stack, checks its
 *     contents and AO_free's it (a cross-thread free inside a handler);
 *     threads only push and handlers only pop, so the demo stays within
 *     what even the almost-lock-free AO_stack variant allows in handlers;
 *   - AO_malloc's a few blocks of its own, fills, checks and frees them.
 * Every block is filled with a byte derived from its address and size, so
 * two live blocks that overlapped would be caught.  At the end the program
 * prints what it did and exits 0 if no block was corrupted, misaligned or
 * refused.  A watchdog thread, which receives no signals, turns a hang (a
 * handler waiting for the code it interrupted) into a failure.
 */
#define _XOPEN_SOURCE 700

#include <atomic_ops_malloc.h> /* also declares the AO_stack API */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Counters are updated inside handlers, so they must be lock-free. */
#if ATOMIC_LONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
# error "this demo needs lock-free atomic long and int"
#endif

#define RUN_SECONDS 2
#define WORKERS 2            /* threads besides main */
#define TIMER_USEC 100       /* period of both timers */
#define SLOTS 64             /* blocks each thread keeps live */
#define NODES 64             /* hand-over records per thread */
#define HANDLER_BLOCKS 4     /* blocks each handler run allocates */
#define WATCHDOG_SECONDS 60  /* fail if the run takes this long */
#define STR_(x) #x
#define STR(x) STR_(x)

/* A hand-over record.  Each thread owns NODES of them and reuses one once a
 * handler has cleared its busy flag.  Records live in a static array and are
 * never freed, so they stay readable while a concurrent pop (which may have
 * read a stale top) still looks at them. */
struct node {
  AO_uintptr_t link; /* first: the stack links records through it */
  unsigned char *block;
  size_t size;
  atomic_int busy;   /* set by the owner, cleared by the freeing handler */
};

static struct node nodes[WORKERS + 1][NODES];
static AO_stack_t full_nodes; /* records carrying a block to be freed */

static atomic_ulong thread_allocs, thread_frees, thread_nulls;
static atomic_ulong handed_over, freed_by_handlers, drained_at_exit;
static atomic_ulong runs_alrm, runs_prof, runs_usr1, nested_runs;
static atomic_ulong handler_allocs, handler_frees, handler_nulls;
static atomic_ulong corrupted, misaligned;
static atomic_ulong handler_seq;
static atomic_int max_depth;
static _Thread_local int depth; /* handler nesting on this thread */

static unsigned char tag(const void *p, size_t n)
{
  uintptr_t a = (uintptr_t)p;

  return (unsigned char)((a >> 4) ^ (a >> 12) ^ n ^ 0x5a);
}

static void fill(unsigned char *p, size_t n)
{
  if (((uintptr_t)p & 15) != 0)
    atomic_fetch_add(&misaligned, 1);
  memset(p, tag(p, n), n);
}

static void check(const unsigned char *p, size_t n)
{
  unsigned char t = tag(p, n);
  size_t i;

  for (i = 0; i < n; i++) {
    if (p[i] != t) {
      atomic_fetch_add(&corrupted, 1);
      return;
    }
  }
}

static uint64_t next_random(uint64_t *s)
{
  /* xorshift64 */
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Mostly small, sometimes medium, rarely large (mmap'd) blocks. */
static size_t pick_size(uint64_t *s)
{
  uint64_t r = next_random(s);

  if ((r & 255) == 0)
    return 64 * 1024 + (size_t)(r >> 8) % (192 * 1024);
  if ((r & 15) == 0)
    return 1 + (size_t)(r >> 8) % 8192;
  return 1 + (size_t)(r >> 8) % 512;
}

/* ---- signal handlers ---------------------------------------------------- */

static void on_signal(int sig)
{
  int saved_errno = errno;
  int d = ++depth;
  int m = atomic_load(&max_depth);
  AO_uintptr_t *link;
  unsigned char *held[HANDLER_BLOCKS];
  size_t sizes[HANDLER_BLOCKS];
  unsigned long seq;
  uint64_t s;
  int i;

  while (d > m && !atomic_compare_exchange_weak(&max_depth, &m, d))
    ;
  if (d > 1)
    atomic_fetch_add(&nested_runs, 1);
  atomic_fetch_add(sig == SIGALRM ? &runs_alrm
                   : sig == SIGPROF ? &runs_prof : &runs_usr1, 1);

  /* Free a block that some thread allocated and handed over. */
  link = AO_stack_pop_acquire(&full_nodes);
  if (link != NULL) {
    struct node *nd = (struct node *)(void *)link;

    check(nd->block, nd->size);
    AO_free(nd->block);
    nd->block = NULL;
    atomic_fetch_add(&freed_by_handlers, 1);
    atomic_store(&nd->busy, 0); /* the owner may reuse the record */
  }

  /* Allocate a few blocks (AO_malloc(0) included), then free them. */
  seq = atomic_fetch_add(&handler_seq, 1);
  s = 0x9e3779b97f4a7c15u * (seq + 1);
  for (i = 0; i < HANDLER_BLOCKS; i++) {
    sizes[i] = (size_t)(next_random(&s) % 1025); /* 0 .. 1024 */
    held[i] = AO_malloc(sizes[i]);
    if (held[i] == NULL) {
      atomic_fetch_add(&handler_nulls, 1);
      continue;
    }
    atomic_fetch_add(&handler_allocs, 1);
    fill(held[i], sizes[i]);
  }
  if (sig == SIGALRM && seq % 8 == 0)
    raise(SIGUSR1); /* runs on_signal nested, right here */
  for (i = 0; i < HANDLER_BLOCKS; i++) {
    if (held[i] == NULL)
      continue;
    check(held[i], sizes[i]);
    AO_free(held[i]);
    atomic_fetch_add(&handler_frees, 1);
  }

  --depth;
  errno = saved_errno;
}

/* ---- allocating threads -------------------------------------------------- */

static double now(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double deadline;

static void *allocate_loop(void *arg)
{
  struct { unsigned char *p; size_t n; } slot[SLOTS];
  struct node *mine = nodes[(uintptr_t)arg];
  uint64_t s = 0x243f6a8885a308d3u ^ (uint64_t)(uintptr_t)arg;
  unsigned long iter;
  unsigned next_node = 0;
  int i;

  memset(slot, 0, sizeof slot);
  for (iter = 0; (iter & 255) != 0 || now() < deadline; iter++) {
    i = (int)(next_random(&s) % SLOTS);
    if (slot[i].p != NULL) {
      check(slot[i].p, slot[i].n);
      AO_free(slot[i].p);
      atomic_fetch_add(&thread_frees, 1);
    }
    slot[i].n = pick_size(&s);
    slot[i].p = AO_malloc(slot[i].n);
    if (slot[i].p == NULL) {
      atomic_fetch_add(&thread_nulls, 1);
    } else {
      atomic_fetch_add(&thread_allocs, 1);
      fill(slot[i].p, slot[i].n);
    }

    /* Now and then, hand a fresh block over to the signal handlers. */
    if ((next_random(&s) & 7) == 0) {
      struct node *nd = &mine[next_node];

      if (!atomic_load(&nd->busy)) {
        next_node = (next_node + 1) % NODES;
        nd->size = 1 + (size_t)(next_random(&s) % 2048);
        nd->block = AO_malloc(nd->size);
        if (nd->block == NULL) {
          atomic_fetch_add(&thread_nulls, 1);
        } else {
          atomic_fetch_add(&thread_allocs, 1);
          fill(nd->block, nd->size);
          atomic_fetch_add(&handed_over, 1);
          atomic_store(&nd->busy, 1);
          AO_stack_push_release(&full_nodes, &nd->link);
        }
      }
    }
  }
  for (i = 0; i < SLOTS; i++) {
    if (slot[i].p != NULL) {
      check(slot[i].p, slot[i].n);
      AO_free(slot[i].p);
      atomic_fetch_add(&thread_frees, 1);
    }
  }
  return NULL;
}

static atomic_int finished;

/* Runs with every signal blocked, so it keeps running if handlers hang. */
static void *watchdog(void *arg)
{
  static const char msg[] = "signal_demo: FAILED: not finished after "
                            STR(WATCHDOG_SECONDS) " s (deadlock?)\n";
  struct timespec tick = { 0, 100 * 1000 * 1000 };
  int i;

  (void)arg;
  for (i = 0; i < WATCHDOG_SECONDS * 10; i++) {
    if (atomic_load(&finished))
      return NULL;
    nanosleep(&tick, NULL);
  }
  if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
    /* nothing more to do */
  }
  _exit(1);
}

static int set_timers(long usec)
{
  struct itimerval it;

  it.it_interval.tv_sec = 0;
  it.it_interval.tv_usec = usec;
  it.it_value = it.it_interval;
  return setitimer(ITIMER_REAL, &it, NULL) != 0
         || setitimer(ITIMER_PROF, &it, NULL) != 0;
}

int main(void)
{
  pthread_t worker[WORKERS], dog;
  sigset_t all, old;
  struct sigaction sa;
  AO_uintptr_t *link;
  double start, elapsed;
  unsigned long handler_runs;
  int i, ok;

  AO_stack_init(&full_nodes);

  /* The watchdog inherits a mask that blocks every signal. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (pthread_create(&dog, NULL, watchdog, NULL) != 0) {
    fputs("signal_demo: cannot create the watchdog thread\n", stderr);
    return 2;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);

  /* The static heap serves until it runs out; then mmap. */
  AO_malloc_enable_mmap();

  /* An empty mask and no SA_NODEFER: a handler run can interrupt a run for
   * another signal, but not one for its own. */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGALRM, &sa, NULL) != 0 || sigaction(SIGPROF, &sa, NULL) != 0
      || sigaction(SIGUSR1, &sa, NULL) != 0) {
    perror("sigaction");
    return 2;
  }

  start = now();
  deadline = start + RUN_SECONDS;
  if (set_timers(TIMER_USEC) != 0) {
    perror("setitimer");
    return 2;
  }
  for (i = 0; i < WORKERS; i++) {
    int err = pthread_create(&worker[i], NULL, allocate_loop,
                             (void *)(uintptr_t)(i + 1));
    if (err != 0) {
      fprintf(stderr, "pthread_create: %s\n", strerror(err));
      return 2;
    }
  }
  allocate_loop((void *)(uintptr_t)0);
  for (i = 0; i < WORKERS; i++)
    pthread_join(worker[i], NULL);
  set_timers(0);
  elapsed = now() - start;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGALRM);
  sigaddset(&sa.sa_mask, SIGPROF);
  pthread_sigmask(SIG_BLOCK, &sa.sa_mask, NULL); /* drop late ticks */

  /* Free whatever the handlers did not get to. */
  while ((link = AO_stack_pop_acquire(&full_nodes)) != NULL) {
    struct node *nd = (struct node *)(void *)link;

    check(nd->block, nd->size);
    AO_free(nd->block);
    atomic_fetch_add(&drained_at_exit, 1);
  }

  handler_runs = atomic_load(&runs_alrm) + atomic_load(&runs_prof)
                 + atomic_load(&runs_usr1);
  printf("signal_demo: %.2f s, %d allocating threads, SIGALRM and SIGPROF "
         "timers at %d us\n", elapsed, WORKERS + 1, TIMER_USEC);
  printf("  AO_stack lock-free:  %s\n", AO_stack_is_lock_free() ? "yes" : "no");
  printf("  threads:   %lu AO_malloc, %lu AO_free, %lu NULL\n",
         atomic_load(&thread_allocs), atomic_load(&thread_frees),
         atomic_load(&thread_nulls));
  printf("  handlers:  %lu runs (%lu SIGALRM, %lu SIGPROF, %lu SIGUSR1), "
         "%lu nested, max depth %d\n", handler_runs, atomic_load(&runs_alrm),
         atomic_load(&runs_prof), atomic_load(&runs_usr1),
         atomic_load(&nested_runs), atomic_load(&max_depth));
  printf("             %lu AO_malloc, %lu AO_free of their own, %lu NULL\n",
         atomic_load(&handler_allocs), atomic_load(&handler_frees),
         atomic_load(&handler_nulls));
  printf("  hand-over: %lu blocks passed through an AO_stack, %lu freed in "
         "handlers, %lu freed at exit\n", atomic_load(&handed_over),
         atomic_load(&freed_by_handlers), atomic_load(&drained_at_exit));
  printf("  errors:    %lu corrupted, %lu misaligned\n",
         atomic_load(&corrupted), atomic_load(&misaligned));

  ok = atomic_load(&corrupted) == 0 && atomic_load(&misaligned) == 0
       && atomic_load(&thread_nulls) == 0 && atomic_load(&handler_nulls) == 0
       && handler_runs > 0 && atomic_load(&thread_allocs) > 0
       && atomic_load(&handed_over)
          == atomic_load(&freed_by_handlers) + atomic_load(&drained_at_exit);
  atomic_store(&finished, 1);
  pthread_join(dog, NULL);
  printf("signal_demo: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
