/* SPDX-License-Identifier: MIT */
/* AO_stack under contention, from threads and from signal handlers interrupting them: every node pushed is popped exactly once. */
/*
 * Workers push and pop one shared stack at random (each holds up to MAXH
 * nodes); a signal thread interrupts them with SIGUSR1 all the time, and
 * the handler pops up to 3 nodes and pushes them back on the same stack, so
 * a handler often runs while its thread is inside a push or a pop (or
 * backing off after a lost race).  A pop claims its
 * node with a CAS on the node's owner word: a node handed out twice, or a
 * pointer that is not a node, fails at once.  At the end the stack and the
 * holders together must hold every node exactly once.
 *
 * With --enable-almost-lock-free (AO_stack_is_lock_free() == 0) only the
 * threads run: that stack documents that a handler may wait for the
 * operation it interrupted.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_stack.h"

#define NODES 256
#define MAXW 8
#define MAXH 8
#define HANDLER_TAKE 3

struct node {
  AO_uintptr_t link;
  _Atomic unsigned owner; /* 0 on the stack, else the holder's id */
  unsigned id;
};

static struct node nodes[NODES];
static AO_stack_t shared;
static atomic_int stop;
static atomic_ulong ops, handler_ops, handler_runs;
static pthread_t workers[MAXW];
static int nworkers;

static struct node *node_of(AO_uintptr_t *link)
{
  struct node *n = (struct node *)(void *)link;
  if (n < nodes || n >= nodes + NODES
      || (size_t)((char *)link - (char *)nodes) % sizeof(struct node) != 0)
    tu_sfail("pop returned a pointer that is not a pushed node");
  return n;
}

static void claim(struct node *n, unsigned me)
{
  unsigned expected = 0;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, me))
    tu_sfail("a node was popped while another holder has it (lost "
             "exclusivity: duplicate, ABA or an offer taken twice)");
}

static void give_back(struct node *n, unsigned me)
{
  unsigned expected = me;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, 0))
    tu_sfail("a held node changed owner");
  AO_stack_push(&shared, &n->link);
}

/* Handler ids: 1000 + worker; a nested handler cannot run (SIGUSR1 is
 * blocked while it runs). */
static void on_usr1(int sig)
{
  struct node *held[HANDLER_TAKE];
  unsigned me = 1000;
  int i, got = 0, saved = errno;
  pthread_t self = pthread_self();

  (void)sig;
  for (i = 0; i < nworkers; i++)
    if (pthread_equal(workers[i], self))
      me = 1000 + (unsigned)i;
  for (i = 0; i < HANDLER_TAKE; i++) {
    AO_uintptr_t *p = AO_stack_pop(&shared);
    if (p == NULL)
      break;
    held[got] = node_of(p);
    claim(held[got], me);
    got++;
  }
  while (got > 0)
    give_back(held[--got], me);
  atomic_fetch_add_explicit(&handler_runs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&handler_ops, (unsigned long)i,
                            memory_order_relaxed);
  errno = saved;
}

static double deadline;
static unsigned long iters;

static void *worker(void *arg)
{
  unsigned me = (unsigned)(uintptr_t)arg + 1;
  uint64_t rng = tu_seed() ^ ((uint64_t)me << 40);
  struct node *held[MAXH];
  int nheld = 0;
  unsigned long it, local = 0;

  for (it = 0; it < iters && !atomic_load(&stop); it++) {
    if (nheld == MAXH || (nheld > 0 && tu_below(&rng, 2) == 0)) {
      give_back(held[--nheld], me);
    } else {
      AO_uintptr_t *p = AO_stack_pop(&shared);
      if (p != NULL) {
        held[nheld] = node_of(p);
        claim(held[nheld], me);
        nheld++;
      }
    }
    local++;
    if ((it & 1023) == 0 && tu_now() > deadline)
      break;
  }
  while (nheld > 0)
    give_back(held[--nheld], me);
  atomic_fetch_add(&ops, local);
  return NULL;
}

static void *signaller(void *arg)
{
  uint64_t rng = tu_seed() ^ 0x5151;
  unsigned long sent = 0;
  (void)arg;
  while (!atomic_load(&stop)) {
    pthread_kill(workers[tu_below(&rng, (uint64_t)nworkers)], SIGUSR1);
    if ((++sent & 15) == 0)
      sched_yield();
  }
  return NULL;
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  pthread_t sig_thread;
  static unsigned char seen[NODES];
  AO_uintptr_t *p;
  unsigned i;
  int w, lock_free = AO_stack_is_lock_free();

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "push/pop with signal handlers on one stack");
  nworkers = tu_threads(4);
  if (nworkers > MAXW)
    nworkers = MAXW;
  iters = tu_iters(4000000);
  deadline = tu_now() + tu_seconds(2.0);

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);

  AO_stack_init(&shared);
  for (i = 0; i < NODES; i++) {
    nodes[i].id = i;
    AO_stack_push(&shared, &nodes[i].link);
  }
  for (w = 0; w < nworkers; w++)
    tu_thread(&workers[w], worker, (void *)(uintptr_t)w);
  if (lock_free)
    tu_thread_nosig(&sig_thread, signaller, NULL);
  for (w = 0; w < nworkers; w++)
    pthread_join(workers[w], NULL);
  atomic_store(&stop, 1);
  if (lock_free)
    pthread_join(sig_thread, NULL);

  while ((p = AO_stack_pop(&shared)) != NULL) {
    struct node *n = node_of(p);
    TU_CHECK(atomic_load(&n->owner) == 0, "node %u on the stack has owner %u",
             n->id, atomic_load(&n->owner));
    TU_CHECK(!seen[n->id], "node %u is on the stack twice", n->id);
    seen[n->id] = 1;
  }
  for (i = 0; i < NODES; i++)
    TU_CHECK(seen[i], "node %u was lost", i);
  TU_CHECK(!lock_free || atomic_load(&handler_runs) > 0, "no handler ran");
  tu_info("%d threads, %lu ops, %lu handler runs (%lu handler pops)%s; "
          "all %d nodes once", nworkers, atomic_load(&ops),
          atomic_load(&handler_runs), atomic_load(&handler_ops),
          lock_free ? "" : " (almost-lock-free build: no handlers)", NODES);
  return 0;
}
