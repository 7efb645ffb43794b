/* SPDX-License-Identifier: MIT */
/* A client written against upstream's newer stack API; also built without a double-width CAS. */
/*
 * Newer-style use: AO_uintptr_t link fields and AO_stack_next_ptr_d
 * traversal (both from upstream's development line after 7.8.2, not in a
 * 7.8 release), AO_stack_init, AO_stack_head_ptr, AO_stack_is_lock_free, the
 * AO_HAVE_stack_* feature macros, AO_STACK_IS_LOCK_FREE and
 * AO_MALLOC_IS_LOCK_FREE.
 *
 * Built a second time with AO_TEST_NO_CX16 (test_compat_78_nocx16): the
 * client then compiles as if its compiler had no 16-byte CAS (no -mcx16 on
 * x86_64), which with upstream headers silently switched the stack to the
 * almost-lock-free variant.  Here the lock-freedom macros describe the
 * installed library and must still agree with AO_stack_is_lock_free().
 */
#ifdef AO_TEST_NO_CX16
# if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#  pragma GCC target("no-cx16")
# endif
# undef __GCC_HAVE_SYNC_COMPARE_AND_SWAP_16
#endif

#include "test_util.h"

#include "atomic_ops_malloc.h"

#if !defined(AO_HAVE_stack_push) || !defined(AO_HAVE_stack_pop) \
    || !defined(AO_HAVE_stack_push_release) \
    || !defined(AO_HAVE_stack_pop_acquire)
# error "AO_HAVE_stack_* feature macros are missing"
#endif

#if defined(AO_TEST_NO_CX16) && defined(__x86_64__) \
    && defined(AO_HAVE_compare_double_and_swap_double)
# error "AO_TEST_NO_CX16 build still sees a double-width CAS"
#endif

#ifdef AO_STACK_IS_LOCK_FREE
# define MACRO_LOCK_FREE 1
#else
# define MACRO_LOCK_FREE 0
#endif

#define NELEM 1000

struct elem {
  AO_uintptr_t link;
  unsigned index;
  unsigned check;
};

static AO_stack_t stacks[2];
static struct elem *elems[NELEM];

static void *mover(void *arg)
{
  uint64_t rng = tu_seed() + (uintptr_t)arg;
  int i;
  for (i = 0; i < 100000; i++) {
    int from = (int)tu_below(&rng, 2);
    AO_uintptr_t *p = AO_stack_pop(&stacks[from]);
    if (p != NULL) {
      struct elem *e = (struct elem *)(void *)p;
      if (e->check != e->index * 3u + 1)
        tu_fail("element %u corrupted", e->index);
      AO_stack_push(&stacks[1 - from], p);
    }
  }
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t[3];
  unsigned seen[NELEM] = { 0 };
  unsigned total = 0;
  int rt, i, s;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(30, "the 7.8-style client");

  rt = AO_stack_is_lock_free();
  TU_CHECK(rt == 0 || rt == 1, "AO_stack_is_lock_free() = %d", rt);
  TU_CHECK(rt == MACRO_LOCK_FREE, "%s: AO_STACK_IS_LOCK_FREE is %sdefined "
           "but AO_stack_is_lock_free() = %d",
#ifdef AO_TEST_NO_CX16
           "client built without a double-width CAS",
#else
           "client built with default flags",
#endif
           MACRO_LOCK_FREE ? "" : "not ", rt);
#ifndef AO_MALLOC_IS_LOCK_FREE
  TU_CHECK(rt == 0, "AO_stack is lock-free but AO_MALLOC_IS_LOCK_FREE is "
           "not defined");
#endif
#if defined(AO_STACK_IS_LOCK_FREE) && defined(AO_USE_ALMOST_LOCK_FREE)
# error "both AO_STACK_IS_LOCK_FREE and AO_USE_ALMOST_LOCK_FREE"
#endif
  TU_CHECK(sizeof(AO_stack_t) == 4 * sizeof(AO_t),
           "sizeof(AO_stack_t) = %zu", sizeof(AO_stack_t));

  AO_stack_init(&stacks[0]);
  AO_stack_init(&stacks[1]);
  for (i = 0; i < NELEM; i++) {
    elems[i] = AO_malloc(sizeof(struct elem));
    TU_CHECK(elems[i] != NULL, "AO_malloc failed");
    elems[i]->index = (unsigned)i;
    elems[i]->check = (unsigned)i * 3u + 1;
    AO_stack_push_release(&stacks[i % 2], &elems[i]->link);
  }
  for (i = 0; i < 3; i++)
    tu_thread(&t[i], mover, (void *)(uintptr_t)i);
  for (i = 0; i < 3; i++)
    pthread_join(t[i], NULL);

  for (s = 0; s < 2; s++) {
    AO_uintptr_t *p;
    for (p = AO_stack_head_ptr(&stacks[s]); p != NULL;
         p = AO_stack_next_ptr_d(p)) {
      struct elem *e = (struct elem *)(void *)p;
      TU_CHECK(e->index < NELEM && !seen[e->index], "element listed twice "
               "or bogus");
      seen[e->index] = 1;
      total++;
    }
  }
  TU_CHECK(total == NELEM, "%u of %d elements found", total, NELEM);
  for (s = 0; s < 2; s++) {
    AO_uintptr_t *p;
    while ((p = AO_stack_pop_acquire(&stacks[s])) != NULL)
      AO_free(p);
  }
  tu_info("ok: lock-free stack %d (macro %d)%s", rt, MACRO_LOCK_FREE,
#ifdef AO_TEST_NO_CX16
          ", client built without a double-width CAS"
#else
          ""
#endif
          );
  return 0;
}
