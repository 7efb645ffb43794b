/* SPDX-License-Identifier: MIT */
/* Lock-freedom: threads parked forever inside AO_malloc/AO_free/AO_stack_* never block the others. */
/*
 * Worker threads run AO_malloc/AO_free loops (two of them) and push/pop
 * loops on a shared AO_stack (two more).  At random instants the main
 * thread parks every worker: a SIGUSR1 handler blocks in sigsuspend() until
 * released, so a worker may be frozen at any point inside an allocator or
 * stack operation - holding whatever a lock-based design would hold.  While
 * they are parked, the main thread performs many malloc/free operations of
 * many sizes (with content checks) and push/pop operations on the same
 * stack.  A lock or an "almost lock-free" wait on a parked thread makes the
 * main thread stall, which the watchdog reports after 10 s.  Then the
 * workers are released and carry on.  Rounds repeat so the park points
 * vary, until enough parks landed inside an operation.  Finally all blocks
 * and stack nodes are checked.  When AO_stack_is_lock_free() is 0 (the
 * almost-lock-free fallback, which may wait for a parked thread by design)
 * only the allocator is exercised.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define MAXW 32
#define NODES 256
#define MAIN_SLOTS 32
#define STALL_SECONDS 10

struct node {
  AO_uintptr_t link;
  _Atomic unsigned owner;
  unsigned id;
};

static struct node nodes[NODES];
static AO_stack_t shared_stack;

static int nworkers;
static int stack_lock_free;
static pthread_t workers[MAXW];
static atomic_int stop;
static atomic_int parked_count;
static atomic_uint release_gen;
static atomic_ulong parks_inside, parks_total;
static atomic_ulong parks_in_kind[3]; /* 0 malloc/free, 1 pop, 2 push */
static atomic_ulong worker_ops;

static _Thread_local volatile sig_atomic_t in_op;
static sigset_t wait_mask; /* everything blocked but SIGUSR2 */

static sigset_t test_signals(void)
{
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  sigaddset(&s, SIGUSR2);
  return s;
}

/* SIGUSR1: park until the release generation moves past ours.  SIGUSR2 is
 * blocked in here (sa_mask) except inside sigsuspend, so a release signal
 * sent before we suspend stays pending and is not lost. */
static void park_handler(int sig)
{
  int saved = errno;
  unsigned gen = atomic_load(&release_gen);
  (void)sig;
  if (in_op) {
    atomic_fetch_add(&parks_inside, 1);
    atomic_fetch_add(&parks_in_kind[in_op - 1], 1);
  }
  atomic_fetch_add(&parks_total, 1);
  atomic_fetch_add(&parked_count, 1);
  while (atomic_load(&release_gen) == gen)
    sigsuspend(&wait_mask);
  atomic_fetch_sub(&parked_count, 1);
  errno = saved;
}

static void wake_handler(int sig)
{
  (void)sig;
}

static struct node *node_of(AO_uintptr_t *p)
{
  struct node *n = (struct node *)(void *)p;
  if (n < nodes || n >= nodes + NODES || p != &n->link)
    tu_fail("stack pop returned %p, not a node", (void *)p);
  return n;
}

static void claim(struct node *n, unsigned me)
{
  unsigned expected = 0;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, me))
    tu_fail("stack node %u handed to owner %u while owner %u holds it",
            n->id, me, expected);
}

static void unclaim(struct node *n, unsigned me)
{
  unsigned expected = me;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, 0))
    tu_fail("stack node %u owner changed while held", n->id);
}

static void *malloc_worker(void *arg)
{
  uint64_t rng = tu_seed() * 7 + (uintptr_t)arg;
  unsigned char *live[16] = { NULL };
  size_t sz[16] = { 0 };
  uint64_t tag[16] = { 0 };
  sigset_t sigs = test_signals();
  unsigned long ops = 0;
  int k;

  pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
  while (!atomic_load(&stop)) {
    unsigned r = (unsigned)tu_below(&rng, 16);
    if (live[r] != NULL) {
      if (tu_check_sparse(live[r], sz[r], tag[r]) != (size_t)-1)
        tu_fail("malloc worker: block overwritten");
      in_op = 1;
      AO_free(live[r]);
      in_op = 0;
      live[r] = NULL;
    } else {
      size_t s = tu_below(&rng, 64) == 0 ? tu_logsize(&rng, (size_t)256 << 10)
                                         : tu_logsize(&rng, 2048);
      in_op = 1;
      live[r] = AO_malloc(s);
      in_op = 0;
      if (live[r] == NULL)
        tu_fail("malloc worker: AO_malloc(%zu) returned NULL", s);
      sz[r] = s;
      tag[r] = tu_rand(&rng);
      tu_fill_sparse(live[r], s, tag[r]);
    }
    ops++;
  }
  for (k = 0; k < 16; k++)
    if (live[k] != NULL) {
      if (tu_check_sparse(live[k], sz[k], tag[k]) != (size_t)-1)
        tu_fail("malloc worker: block overwritten at the end");
      AO_free(live[k]);
    }
  atomic_fetch_add(&worker_ops, ops);
  return NULL;
}

static void *stack_worker(void *arg)
{
  unsigned me = 100 + (unsigned)(uintptr_t)arg;
  uint64_t rng = tu_seed() * 13 + me;
  struct node *held[4];
  sigset_t sigs = test_signals();
  unsigned long ops = 0;

  pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
  while (!atomic_load(&stop)) {
    unsigned want = 1 + (unsigned)tu_below(&rng, 4), got = 0;
    while (got < want) {
      AO_uintptr_t *p;
      in_op = 2;
      p = AO_stack_pop_acquire(&shared_stack);
      in_op = 0;
      if (p == NULL)
        break;
      held[got] = node_of(p);
      claim(held[got], me);
      got++;
    }
    while (got > 0) {
      struct node *n = held[--got];
      unclaim(n, me);
      in_op = 3;
      AO_stack_push_release(&shared_stack, &n->link);
      in_op = 0;
    }
    ops++;
  }
  atomic_fetch_add(&worker_ops, ops);
  return NULL;
}

/* The main thread's work while everybody else is parked. */
static unsigned char *mslot[MAIN_SLOTS];
static size_t msz[MAIN_SLOTS];
static uint64_t mtag[MAIN_SLOTS];

static void main_ops(uint64_t *rng, unsigned long n)
{
  unsigned long i;
  for (i = 0; i < n; i++) {
    unsigned r = (unsigned)tu_below(rng, MAIN_SLOTS);
    if (mslot[r] != NULL) {
      if (tu_check_sparse(mslot[r], msz[r], mtag[r]) != (size_t)-1)
        tu_fail("main thread: block (size %zu) overwritten while workers "
                "were parked", msz[r]);
      AO_free(mslot[r]);
      mslot[r] = NULL;
    } else {
      size_t s = tu_below(rng, 128) == 0 ? tu_logsize(rng, (size_t)1 << 20)
                                         : tu_logsize(rng, (size_t)16 << 10);
      mslot[r] = AO_malloc(s);
      if (mslot[r] == NULL)
        tu_fail("main thread: AO_malloc(%zu) returned NULL while workers "
                "were parked", s);
      msz[r] = s;
      mtag[r] = tu_rand(rng);
      tu_fill_sparse(mslot[r], s, mtag[r]);
    }
    if ((i & 3) == 0 && stack_lock_free) {
      AO_uintptr_t *p = AO_stack_pop_acquire(&shared_stack);
      if (p != NULL) {
        struct node *nd = node_of(p);
        claim(nd, 1);
        unclaim(nd, 1);
        AO_stack_push_release(&shared_stack, &nd->link);
      }
    }
  }
}

static void park_all(void)
{
  double t0 = tu_now();
  int i;
  for (i = 0; i < nworkers; i++) {
    int rc = pthread_kill(workers[i], SIGUSR1);
    if (rc != 0)
      tu_fail("pthread_kill: %s", strerror(rc));
  }
  while (atomic_load(&parked_count) < nworkers) {
    if (tu_now() - t0 > 5)
      tu_fail("only %d of %d workers parked within 5 s",
              atomic_load(&parked_count), nworkers);
    tu_sleep(0.0002);
  }
}

static void release_all(void)
{
  double t0 = tu_now();
  int i;
  atomic_fetch_add(&release_gen, 1);
  for (i = 0; i < nworkers; i++)
    pthread_kill(workers[i], SIGUSR2);
  while (atomic_load(&parked_count) > 0) {
    if (tu_now() - t0 > 5)
      tu_fail("parked workers did not resume within 5 s");
    tu_sleep(0.0002);
  }
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  sigset_t sigs;
  uint64_t rng;
  unsigned long per_round = tu_iters(150000), main_total = 0;
  int rounds, i, min_rounds = 6, max_rounds = 150;
  unsigned seen[NODES] = { 0 };
  AO_uintptr_t *p;
  unsigned count = 0;

  (void)argc;
  tu_init(argv[0]);
  rng = tu_seed();
  nworkers = tu_threads(4);
  if (nworkers > MAXW)
    nworkers = MAXW;
  if (nworkers < 2)
    nworkers = 2;

  sigfillset(&wait_mask);
  sigdelset(&wait_mask, SIGUSR2);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = park_handler;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR2);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_handler = wake_handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
  sigs = test_signals();
  pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* main and watchdog */

  tu_watchdog(30, "setup");
  AO_malloc_enable_mmap();
  for (i = 0; i < NODES; i++) {
    nodes[i].id = (unsigned)i;
    AO_stack_push_release(&shared_stack, &nodes[i].link);
  }
  /* The almost-lock-free stack (--enable-almost-lock-free, or no
   * double-width CAS) may legitimately wait for a parked thread: park only
   * allocator users then.  AO_malloc is lock-free in every configuration. */
  stack_lock_free = AO_stack_is_lock_free();
  if (!stack_lock_free)
    tu_info("AO_stack_is_lock_free() = 0: parking threads inside "
            "AO_malloc/AO_free only");
  for (i = 0; i < nworkers; i++)
    tu_thread(&workers[i], i % 2 && stack_lock_free ? stack_worker
                                                    : malloc_worker,
              (void *)(uintptr_t)i);

  for (rounds = 0; rounds < max_rounds; rounds++) {
    if (rounds >= min_rounds && atomic_load(&parks_in_kind[0]) >= 40
        && (!stack_lock_free || (atomic_load(&parks_in_kind[1]) >= 40
                                 && atomic_load(&parks_in_kind[2]) >= 10)))
      break;
    tu_watchdog(30, "letting the workers run");
    tu_sleep(0.0005 + 1e-6 * (double)tu_below(&rng, 5000));
    park_all();
    tu_watchdog(STALL_SECONDS, "the main thread's malloc/free and push/pop "
                "work while the other threads were parked inside the "
                "allocator or the stack (a lock, or waiting on a parked "
                "thread)");
    main_ops(&rng, rounds < min_rounds ? per_round : per_round / 8);
    main_total += rounds < min_rounds ? per_round : per_round / 8;
    tu_watchdog(30, "releasing the workers");
    release_all();
  }

  tu_watchdog(30, "the final checks");
  tu_sleep(0.05);
  atomic_store(&stop, 1);
  for (i = 0; i < nworkers; i++)
    pthread_join(workers[i], NULL);
  for (i = 0; i < MAIN_SLOTS; i++)
    if (mslot[i] != NULL) {
      TU_CHECK(tu_check_sparse(mslot[i], msz[i], mtag[i]) == (size_t)-1,
               "main thread: block overwritten at the end");
      AO_free(mslot[i]);
    }
  while ((p = AO_stack_pop_acquire(&shared_stack)) != NULL) {
    struct node *n = node_of(p);
    TU_CHECK(!seen[n->id], "stack node %u present twice at the end", n->id);
    seen[n->id] = 1;
    count++;
  }
  TU_CHECK(count == NODES, "%u of %d stack nodes left at the end", count,
           NODES);
  tu_info("%d rounds, %lu parks (inside AO_malloc/AO_free: %lu, inside "
          "pop: %lu, inside push: %lu), main thread did %lu operations while "
          "others were parked, workers %lu",
          rounds, (unsigned long)atomic_load(&parks_total),
          (unsigned long)atomic_load(&parks_in_kind[0]),
          (unsigned long)atomic_load(&parks_in_kind[1]),
          (unsigned long)atomic_load(&parks_in_kind[2]), main_total,
          (unsigned long)atomic_load(&worker_ops));
  TU_CHECK(atomic_load(&parks_inside) > 0, "no worker was ever parked inside "
           "an allocator or stack call: the test exercised nothing");
  tu_info("ok");
  return 0;
}
