/* SPDX-License-Identifier: MIT */
/* Single-threaded AO_stack semantics: LIFO, empty pops, init forms, traversal, layout. */
#include "test_util.h"

#include <stdalign.h>

#include "atomic_ops_stack.h"

#if !defined(AO_HAVE_stack_push_release) || !defined(AO_HAVE_stack_pop_acquire) \
    || !defined(AO_HAVE_stack_push) || !defined(AO_HAVE_stack_pop)
# error "AO_HAVE_stack_* feature macros missing"
#endif
#if defined(AO_STACK_IS_LOCK_FREE) && defined(AO_USE_ALMOST_LOCK_FREE)
# error "AO_STACK_IS_LOCK_FREE and AO_USE_ALMOST_LOCK_FREE both defined"
#endif

_Static_assert(sizeof(AO_stack_t) == 4 * sizeof(AO_t),
               "AO_stack_t must be four words (upstream 7.8 layout)");
_Static_assert(alignof(AO_stack_t) == 4 * sizeof(AO_t),
               "AO_stack_t must be aligned to four words (upstream 7.8 layout)");

#define N 64

/* The link field is deliberately not the first member. */
struct node {
  uint64_t before;
  AO_uintptr_t link;
  uint64_t after;
  int id;
};

static struct node nodes[N];
static AO_stack_t static_stack = AO_STACK_INITIALIZER;
static AO_stack_t two[2] = { AO_STACK_INITIALIZER, AO_STACK_INITIALIZER };

static int id_of(AO_uintptr_t *link)
{
  struct node *n = (struct node *)(void *)((char *)link
                                           - offsetof(struct node, link));
  TU_CHECK(n >= nodes && n < nodes + N && link == &n->link,
           "pointer %p is not the link field of a pushed node", (void *)link);
  return n->id;
}

static void reset_nodes(void)
{
  int i;
  for (i = 0; i < N; i++) {
    nodes[i].before = 0xB0B0B0B0B0B0B0B0ULL ^ (uint64_t)i;
    nodes[i].after = 0xAFAFAFAFAFAFAFAFULL ^ (uint64_t)i;
    nodes[i].id = i;
  }
}

static void check_payloads(void)
{
  int i;
  for (i = 0; i < N; i++) {
    TU_CHECK(nodes[i].before == (0xB0B0B0B0B0B0B0B0ULL ^ (uint64_t)i)
             && nodes[i].after == (0xAFAFAFAFAFAFAFAFULL ^ (uint64_t)i)
             && nodes[i].id == i,
             "the stack wrote outside the link field of node %d", i);
  }
}

/* Expect the stack to hold exactly ids[0..n) from top to bottom, checked
 * with all three traversal forms. */
static void expect_contents(AO_stack_t *s, const int *ids, int n,
                            const char *what)
{
  AO_uintptr_t *p;
  AO_t *q;
  int k;

  k = 0;
  for (p = AO_stack_head_ptr(s); p != NULL; p = AO_stack_next_ptr_d(p)) {
    TU_CHECK(k < n, "%s: head_ptr/next_ptr_d traversal longer than %d", what, n);
    TU_CHECK(id_of(p) == ids[k], "%s: traversal position %d is node %d, "
             "expected %d", what, k, id_of(p), ids[k]);
    k++;
  }
  TU_CHECK(k == n, "%s: head_ptr/next_ptr_d traversal saw %d nodes, "
           "expected %d", what, k, n);

  /* Upstream 7.6 style: macros on the stack object and the link value. */
  k = 0;
  for (q = AO_REAL_HEAD_PTR(*s); q != NULL; q = AO_REAL_NEXT_PTR(*q)) {
    TU_CHECK(k < n, "%s: AO_REAL_* traversal longer than %d", what, n);
    TU_CHECK(id_of(q) == ids[k], "%s: AO_REAL_* traversal position %d is "
             "node %d, expected %d", what, k, id_of(q), ids[k]);
    k++;
  }
  TU_CHECK(k == n, "%s: AO_REAL_* traversal saw %d nodes, expected %d",
           what, k, n);

  k = 0;
  for (p = AO_stack_head_ptr(s); p != NULL; p = AO_stack_next_ptr(*p))
    k++;
  TU_CHECK(k == n, "%s: AO_stack_next_ptr traversal saw %d nodes, expected %d",
           what, k, n);
}

static void lifo_round(AO_stack_t *s, const char *what)
{
  int ids[N] = { 0 };
  int i;

  TU_CHECK(AO_stack_pop_acquire(s) == NULL, "%s: pop of empty stack not NULL",
           what);
  TU_CHECK(AO_stack_head_ptr(s) == NULL, "%s: head of empty stack not NULL",
           what);
  expect_contents(s, ids, 0, what);

  for (i = 0; i < N; i++) {
    AO_stack_push_release(s, &nodes[i].link);
    ids[N - 1 - i] = i;
    TU_CHECK(id_of(AO_stack_head_ptr(s)) == i,
             "%s: head after pushing node %d is node %d", what, i,
             id_of(AO_stack_head_ptr(s)));
  }
  expect_contents(s, ids, N, what);

  for (i = N - 1; i >= 0; i--) {
    AO_uintptr_t *p = AO_stack_pop_acquire(s);
    TU_CHECK(p != NULL, "%s: pop returned NULL with %d nodes left", what, i + 1);
    TU_CHECK(id_of(p) == i, "%s: pop returned node %d, expected %d (not LIFO)",
             what, id_of(p), i);
  }
  TU_CHECK(AO_stack_pop_acquire(s) == NULL, "%s: pop after draining not NULL",
           what);
  TU_CHECK(AO_stack_pop_acquire(s) == NULL, "%s: second pop after draining "
           "not NULL", what);
  check_payloads();
}

static void interleaved(AO_stack_t *s)
{
  /* push 0 1 2, pop -> 2, push 3, push 2, pop -> 2, pop -> 3, pop -> 1 ... */
  static const int expect_ids[] = { 1, 0 };
  AO_uintptr_t *p;

  AO_stack_push(s, &nodes[0].link);
  AO_stack_push(s, &nodes[1].link);
  AO_stack_push(s, &nodes[2].link);
  p = AO_stack_pop(s);
  TU_CHECK(p && id_of(p) == 2, "interleaved: expected node 2 first");
  AO_stack_push(s, &nodes[3].link);
  AO_stack_push(s, &nodes[2].link); /* re-push a popped node */
  p = AO_stack_pop(s);
  TU_CHECK(p && id_of(p) == 2, "interleaved: re-pushed node 2 not on top");
  p = AO_stack_pop(s);
  TU_CHECK(p && id_of(p) == 3, "interleaved: expected node 3");
  expect_contents(s, expect_ids, 2, "interleaved");
  p = AO_stack_pop(s);
  TU_CHECK(p && id_of(p) == 1, "interleaved: expected node 1");
  p = AO_stack_pop(s);
  TU_CHECK(p && id_of(p) == 0, "interleaved: expected node 0");
  TU_CHECK(AO_stack_pop(s) == NULL, "interleaved: expected empty stack");
  check_payloads();
}

int main(int argc, char **argv)
{
  static AO_stack_t zeroed; /* all-zero memory is an empty stack */
  static AO_stack_t inited;
  AO_stack_t automatic;
  AO_uintptr_t *p;
  int lf;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(30, "the test");
  reset_nodes();

  TU_CHECK(sizeof(AO_stack_t) == 4 * sizeof(AO_t),
           "sizeof(AO_stack_t) = %zu, expected %zu", sizeof(AO_stack_t),
           4 * sizeof(AO_t));
  TU_CHECK(alignof(AO_stack_t) == 4 * sizeof(AO_t),
           "alignof(AO_stack_t) = %zu, expected %zu", alignof(AO_stack_t),
           4 * sizeof(AO_t));
#if defined(__LP64__) || defined(_LP64)
  TU_CHECK(sizeof(AO_stack_t) == 32 && alignof(AO_stack_t) == 32,
           "LP64: AO_stack_t must be 32 bytes, 32-aligned");
#endif
  TU_CHECK(((uintptr_t)&automatic % alignof(AO_stack_t)) == 0,
           "automatic AO_stack_t is misaligned");

  lf = AO_stack_is_lock_free();
#ifdef AO_STACK_IS_LOCK_FREE
  TU_CHECK(lf == 1, "AO_STACK_IS_LOCK_FREE is defined but "
           "AO_stack_is_lock_free() returned %d", lf);
#else
  TU_CHECK(lf == 0, "AO_STACK_IS_LOCK_FREE is not defined but "
           "AO_stack_is_lock_free() returned %d", lf);
# ifndef AO_USE_ALMOST_LOCK_FREE
#  error "neither AO_STACK_IS_LOCK_FREE nor AO_USE_ALMOST_LOCK_FREE defined"
# endif
#endif

  lifo_round(&static_stack, "AO_STACK_INITIALIZER stack");
  lifo_round(&zeroed, "zero-filled stack");
  AO_stack_init(&inited);
  lifo_round(&inited, "AO_stack_init stack");
  memset(&automatic, 0xA5, sizeof(automatic));
  AO_stack_init(&automatic);
  lifo_round(&automatic, "automatic stack after AO_stack_init over garbage");
  lifo_round(&static_stack, "reused stack");
  interleaved(&inited);

  /* Re-initialising a drained stack keeps it empty and usable. */
  AO_stack_init(&static_stack);
  TU_CHECK(AO_stack_pop_acquire(&static_stack) == NULL,
           "re-initialised stack not empty");

  /* Two adjacent stacks do not interfere. */
  AO_stack_push(&two[0], &nodes[0].link);
  AO_stack_push(&two[1], &nodes[1].link);
  AO_stack_push(&two[0], &nodes[2].link);
  {
    static const int a[] = { 2, 0 }, b[] = { 1 };
    expect_contents(&two[0], a, 2, "first of two stacks");
    expect_contents(&two[1], b, 1, "second of two stacks");
  }
  p = AO_stack_pop(&two[1]);
  TU_CHECK(p && id_of(p) == 1, "second stack: expected node 1");
  TU_CHECK(AO_stack_pop(&two[1]) == NULL, "second stack: expected empty");
  p = AO_stack_pop(&two[0]);
  TU_CHECK(p && id_of(p) == 2, "first stack: expected node 2");
  p = AO_stack_pop(&two[0]);
  TU_CHECK(p && id_of(p) == 0, "first stack: expected node 0");
  TU_CHECK(AO_stack_pop(&two[0]) == NULL, "first stack: expected empty");
  check_payloads();

  tu_info("ok (lock-free: %d)", lf);
  return 0;
}
