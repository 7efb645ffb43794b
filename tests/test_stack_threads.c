/* SPDX-License-Identifier: MIT */
/* Concurrent AO_stack push/pop: no node is ever lost, duplicated or handed out twice. */
/*
 * Phase 1: every thread repeatedly pops up to k nodes from one shared stack,
 * claims each with a CAS on an owner word (which fails if some other thread
 * holds the node too), scribbles on the payload, restores it and pushes the
 * nodes back.  Phase 2: threads move nodes between two stacks.  Afterwards
 * the union of the stacks must be exactly the node set.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_stack.h"

#define NODES 512
#define MAXK 16

struct node {
  AO_uintptr_t link;
  _Atomic unsigned owner; /* 0 = on a stack, else thread id + 1 */
  uint64_t payload;
  unsigned id;
};

static struct node nodes[NODES];
static AO_stack_t stacks[2];
static atomic_int stop;
static double deadline;
static unsigned long iters;
static atomic_ulong total_ops;

static struct node *node_of(AO_uintptr_t *link)
{
  struct node *n = (struct node *)(void *)link;
  if (n < nodes || n >= nodes + NODES || (char *)link - (char *)nodes
      != (ptrdiff_t)((size_t)(n - nodes) * sizeof(struct node)))
    tu_fail("pop returned %p, which is not a pushed node", (void *)link);
  return n;
}

static void claim(struct node *n, unsigned me)
{
  unsigned expected = 0;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, me))
    tu_fail("node %u popped by thread %u while thread %u holds it "
            "(duplicated node / ABA)", n->id, me - 1, expected - 1);
  if (n->payload != (uint64_t)n->id * 0x100000001ULL)
    tu_fail("node %u payload corrupted: %#llx", n->id,
            (unsigned long long)n->payload);
  n->payload = ~(uint64_t)me;
}

static void release(struct node *n, unsigned me)
{
  unsigned expected = me;
  if (n->payload != ~(uint64_t)me)
    tu_fail("node %u payload changed while owned by thread %u", n->id, me - 1);
  n->payload = (uint64_t)n->id * 0x100000001ULL;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, 0))
    tu_fail("node %u owner changed to %u while held by thread %u",
            n->id, expected - 1, me - 1);
}

static void *phase1(void *arg)
{
  unsigned me = (unsigned)(uintptr_t)arg + 1;
  uint64_t rng = tu_seed() ^ ((uint64_t)me << 32);
  struct node *held[MAXK];
  unsigned long it;

  for (it = 0; it < iters && !atomic_load(&stop); it++) {
    unsigned k = 1 + (unsigned)tu_below(&rng, MAXK), got = 0, i;
    while (got < k) {
      AO_uintptr_t *p = AO_stack_pop_acquire(&stacks[0]);
      if (p == NULL)
        break;
      held[got] = node_of(p);
      claim(held[got], me);
      got++;
    }
    for (i = 0; i < got; i++) {
      release(held[i], me);
      AO_stack_push_release(&stacks[0], &held[i]->link);
    }
    if ((it & 1023) == 0 && tu_now() > deadline)
      atomic_store(&stop, 1);
  }
  atomic_fetch_add(&total_ops, it);
  return NULL;
}

static void *phase2(void *arg)
{
  unsigned me = (unsigned)(uintptr_t)arg + 1;
  uint64_t rng = tu_seed() ^ ((uint64_t)me << 40);
  unsigned long it;

  for (it = 0; it < iters && !atomic_load(&stop); it++) {
    int from = (int)tu_below(&rng, 2);
    AO_uintptr_t *p = AO_stack_pop_acquire(&stacks[from]);
    if (p != NULL) {
      struct node *n = node_of(p);
      claim(n, me);
      release(n, me);
      AO_stack_push_release(&stacks[1 - from], &n->link);
    }
    if ((it & 1023) == 0 && tu_now() > deadline)
      atomic_store(&stop, 1);
  }
  atomic_fetch_add(&total_ops, it);
  return NULL;
}

static void check_sets(const char *phase)
{
  static unsigned char seen[NODES];
  unsigned count = 0;
  int s;

  memset(seen, 0, sizeof(seen));
  for (s = 0; s < 2; s++) {
    AO_uintptr_t *p;
    unsigned walked = 0;
    /* traversal first (quiescent), then draining must agree with it */
    for (p = AO_stack_head_ptr(&stacks[s]); p != NULL;
         p = AO_stack_next_ptr_d(p)) {
      TU_CHECK(++walked <= NODES, "%s: stack %d traversal does not end "
               "(cycle)", phase, s);
      (void)node_of(p);
    }
    while ((p = AO_stack_pop_acquire(&stacks[s])) != NULL) {
      struct node *n = node_of(p);
      TU_CHECK(!seen[n->id], "%s: node %u found twice", phase, n->id);
      seen[n->id] = 1;
      TU_CHECK(atomic_load(&n->owner) == 0, "%s: node %u on a stack still "
               "owned by thread %u", phase, n->id, atomic_load(&n->owner) - 1);
      TU_CHECK(n->payload == (uint64_t)n->id * 0x100000001ULL,
               "%s: node %u payload corrupted", phase, n->id);
      count++;
      walked--;
    }
    TU_CHECK(walked == 0, "%s: traversal and pops of stack %d disagree",
             phase, s);
  }
  TU_CHECK(count == NODES, "%s: %u of %u nodes left after the run (lost "
           "nodes)", phase, count, NODES);
}

static void run(void *(*fn)(void *), int nthreads, double secs)
{
  pthread_t t[256];
  int i;
  atomic_store(&stop, 0);
  deadline = tu_now() + secs;
  for (i = 0; i < nthreads; i++)
    tu_thread(&t[i], fn, (void *)(uintptr_t)i);
  for (i = 0; i < nthreads; i++)
    pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
  int nthreads = tu_threads(6);
  double secs = tu_seconds(1.0);
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(2 * secs + 20, "the stack threads");
  iters = tu_iters(400000);

  for (i = 0; i < NODES; i++) {
    nodes[i].id = i;
    nodes[i].payload = (uint64_t)i * 0x100000001ULL;
    AO_stack_push_release(&stacks[0], &nodes[i].link);
  }

  run(phase1, nthreads, secs);
  check_sets("phase 1 (pop k / push back)");

  for (i = 0; i < NODES; i++)
    AO_stack_push_release(&stacks[i % 2], &nodes[i].link);
  run(phase2, nthreads, secs);
  check_sets("phase 2 (move between stacks)");

  tu_info("ok: %d threads, %lu loop iterations", nthreads,
          (unsigned long)atomic_load(&total_ops));
  return 0;
}
