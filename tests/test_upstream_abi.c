/* SPDX-License-Identifier: MIT */
/* A client compiled against upstream's own headers runs with this library. */
/*
 * This file is built with the installed upstream libatomic_ops headers
 * (<atomic_ops_stack.h>, <atomic_ops_malloc.h> from libatomic-ops-dev), not
 * ours, and linked with our library: the situation of a binary built
 * against upstream that switches by re-linking.  With 7.6 headers and
 * default flags on x86_64 it uses upstream's almost-lock-free macros,
 * which call AO_stack_push_explicit_aux_release/_pop_explicit_aux_acquire;
 * with -mcx16 (second build) the double-width layout and functions.
 * Checks: layout as seen by the client, no lost or duplicated node under
 * threads, traversal with upstream's macros, AO_malloc/AO_free.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

/* Full paths from configure: our own headers must not shadow these. */
#ifndef UPSTREAM_STACK_H
# define UPSTREAM_STACK_H <atomic_ops_stack.h>
# define UPSTREAM_MALLOC_H <atomic_ops_malloc.h>
#endif
#include UPSTREAM_STACK_H
#include UPSTREAM_MALLOC_H

#ifndef AO_STACK_H
# error "not upstream's atomic_ops_stack.h"
#endif

#define NODES 256
#define THREADS 4
#define ROUNDS 200000

struct node {
  AO_t link;                     /* upstream: the link field comes first */
  int id;
};

static AO_stack_t stack = AO_STACK_INITIALIZER;
static struct node nodes[NODES];

static void fail(const char *what)
{
  fprintf(stderr, "test_upstream_abi: FAIL: %s\n", what);
  exit(1);
}

static void *churn(void *arg)
{
  int i;

  (void)arg;
  for (i = 0; i < ROUNDS; i++) {
    AO_t *a = AO_stack_pop(&stack);
    AO_t *b = AO_stack_pop(&stack);
    if (a != NULL)
      AO_stack_push(&stack, a);
    if (b != NULL)
      AO_stack_push(&stack, b);
  }
  return NULL;
}

int main(void)
{
  pthread_t t[THREADS];
  int seen[NODES];
  AO_t *p;
  int i, n = 0;
  char *m;

#ifdef AO_USE_ALMOST_LOCK_FREE
  printf("client built with upstream's almost-lock-free macros\n");
#else
  printf("client built with upstream's double-width layout\n");
#endif
  printf("sizeof(AO_stack_t) = %u, alignment %u\n",
         (unsigned)sizeof(AO_stack_t), (unsigned)_Alignof(AO_stack_t));
  for (i = 0; i < NODES; i++) {
    nodes[i].id = i;
    AO_stack_push(&stack, &nodes[i].link);
  }
  for (i = 0; i < THREADS; i++)
    if (pthread_create(&t[i], NULL, churn, NULL) != 0)
      fail("pthread_create");
  for (i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);

  memset(seen, 0, sizeof(seen));
  for (p = AO_REAL_HEAD_PTR(stack); p != NULL; p = AO_REAL_NEXT_PTR(*p)) {
    int id = ((struct node *)p)->id;
    if (id < 0 || id >= NODES || seen[id]++)
      fail("a node is foreign or appears twice");
    n++;
  }
  if (n != NODES)
    fail("a node was lost");
  while ((p = AO_stack_pop(&stack)) != NULL)
    n--;
  if (n != 0)
    fail("pop count differs from the traversal");

  m = AO_malloc(1000);
  if (m == NULL || ((AO_t)m & 15) != 0)
    fail("AO_malloc");
  memset(m, 0x5a, 1000);
  AO_free(m);
  printf("ok: %d nodes kept through %d x %d pop/push pairs\n", NODES,
         THREADS, ROUNDS);
  return 0;
}
