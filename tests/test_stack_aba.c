/* SPDX-License-Identifier: MIT */
/* ABA torture: a handful of nodes recycled by every thread at a high rate. */
/*
 * With only a few nodes, a pop that is preempted between reading the head
 * and its compare-and-swap very often finds the same head node back on top
 * with a different successor (the ABA pattern).  A stack without ABA
 * protection then installs a stale successor, which hands one node to two
 * threads or loses nodes.  Each popped node is claimed with a CAS on an
 * owner word that must succeed; while it holds a node, the thread also
 * scribbles garbage over the link field (the element belongs to the caller
 * between pop and push), so a stale successor read is a wild value.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_stack.h"

#define MAXNODES 8

struct node {
  AO_uintptr_t link;
  _Atomic unsigned owner;
  unsigned id;
  uint64_t check;
} __attribute__((aligned(32)));

static struct node nodes[MAXNODES];
static unsigned nnodes;
static AO_stack_t stack;
static atomic_int stop;
static atomic_ulong pops, empties;
static double deadline;
static unsigned long iters;

static struct node *node_of(AO_uintptr_t *p)
{
  unsigned i;
  for (i = 0; i < nnodes; i++)
    if (p == &nodes[i].link)
      return &nodes[i];
  tu_fail("pop returned %p, not the link field of any node (a stale or "
          "garbage successor was installed: ABA)", (void *)p);
}

static void *worker(void *arg)
{
  unsigned me = (unsigned)(uintptr_t)arg + 1;
  uint64_t rng = tu_seed() * me + me;
  struct node *held[MAXNODES];
  unsigned long it, npop = 0, nempty = 0;

  for (it = 0; it < iters; it++) {
    unsigned want = 1 + (unsigned)tu_below(&rng, 3), got = 0;
    while (got < want) {
      AO_uintptr_t *p = AO_stack_pop_acquire(&stack);
      struct node *n;
      unsigned expected = 0;
      if (p == NULL) {
        nempty++;
        break;
      }
      n = node_of(p);
      if (!atomic_compare_exchange_strong(&n->owner, &expected, me))
        tu_fail("node %u popped by thread %u while thread %u owns it "
                "(ABA: one node handed out twice)", n->id, me - 1,
                expected - 1);
      if (n->check != (uint64_t)n->id * 0x0101010101010101ULL)
        tu_fail("node %u contents changed while on the stack", n->id);
      n->check = ~(uint64_t)me;
      /* the caller owns the link field now: make any stale read wild */
      n->link = (AO_uintptr_t)tu_rand(&rng) | 1;
      held[got++] = n;
      npop++;
    }
    /* push back in a random order so the head keeps changing identity */
    while (got > 0) {
      unsigned j = (unsigned)tu_below(&rng, got);
      struct node *n = held[j];
      unsigned expected = me;
      held[j] = held[--got];
      if (n->check != ~(uint64_t)me)
        tu_fail("node %u changed while owned by thread %u", n->id, me - 1);
      n->check = (uint64_t)n->id * 0x0101010101010101ULL;
      if (!atomic_compare_exchange_strong(&n->owner, &expected, 0))
        tu_fail("node %u owner became %u while held by thread %u",
                n->id, expected - 1, me - 1);
      AO_stack_push_release(&stack, &n->link);
    }
    if ((it & 255) == 0 && (atomic_load(&stop) || tu_now() > deadline))
      break;
  }
  atomic_fetch_add(&pops, npop);
  atomic_fetch_add(&empties, nempty);
  return NULL;
}

static void final_check(void)
{
  unsigned seen = 0, count = 0;
  AO_uintptr_t *p;
  while ((p = AO_stack_pop_acquire(&stack)) != NULL) {
    struct node *n = node_of(p);
    TU_CHECK(!(seen & (1u << n->id)), "node %u on the stack twice", n->id);
    TU_CHECK(atomic_load(&n->owner) == 0, "node %u on the stack while owned",
             n->id);
    seen |= 1u << n->id;
    count++;
  }
  TU_CHECK(count == nnodes, "%u of %u nodes left on the stack (lost nodes)",
           count, nnodes);
}

int main(int argc, char **argv)
{
  static const unsigned sizes[] = { 2, 3, 5 };
  int nthreads = tu_threads(8);
  double secs = tu_seconds(0.6);
  pthread_t t[256];
  unsigned r, i;
  int k;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(3 * secs * 3 + 20, "the ABA torture");
  iters = tu_iters(2000000);

  for (r = 0; r < sizeof(sizes) / sizeof(sizes[0]); r++) {
    nnodes = sizes[r];
    AO_stack_init(&stack);
    for (i = 0; i < nnodes; i++) {
      nodes[i].id = i;
      nodes[i].check = (uint64_t)i * 0x0101010101010101ULL;
      atomic_store(&nodes[i].owner, 0);
      AO_stack_push_release(&stack, &nodes[i].link);
    }
    deadline = tu_now() + secs;
    for (k = 0; k < nthreads; k++)
      tu_thread(&t[k], worker, (void *)(uintptr_t)k);
    for (k = 0; k < nthreads; k++)
      pthread_join(t[k], NULL);
    final_check();
  }
  tu_info("ok: %d threads, %lu pops, %lu empty pops", nthreads,
          (unsigned long)atomic_load(&pops), (unsigned long)atomic_load(&empties));
  return 0;
}
