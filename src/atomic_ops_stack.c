/* SPDX-License-Identifier: MIT */
/* AO_stack: a version-counted lock-free stack on double-width CAS. */
#include "internal.h"

/*
 * Layout of AO_stack_t in the lock-free build: word 0 is a version, word 1
 * the top element's link field (NULL when empty); words 2-3 are unused.
 * Both words are updated together by one double-width CAS.
 *
 * ABA: a pop reads (version, top), then top's link, then CASes to
 * (version + 1, link).  If top was popped and pushed back meanwhile, the
 * version differs and the CAS fails, so a stale link is never installed.
 * Pushes need not bump the version: a push changes the top, and the top can
 * only come back through a pop, which bumps it.  The version is a full
 * word: on 32-bit targets a stalled pop would need 2^32 pops in between to
 * be fooled.
 *
 * Signals: a handler may push or pop between any two steps on the same
 * thread; the interrupted operation's CAS then fails and it retries.  Its
 * only write before the CAS is the link of its own, still private element.
 * Progress: lock-free.  The element memory must stay readable while other
 * threads may be popping it (the link is read before the CAS validates it).
 */

#if AO_GPL_LOCK_FREE
static inline volatile AO_double_t *stack_head(const AO_stack_t *list)
{
  return (volatile AO_double_t *)(uintptr_t)list;
}
#endif

void AO_stack_init(AO_stack_t *list)
{
  unsigned i;

  for (i = 0; i < 4; i++)
    list->AO_opaque[i] = 0;
  AO_nop_full();
}

void AO_stack_push_release(AO_stack_t *list, AO_uintptr_t *element)
{
#if AO_GPL_LOCK_FREE
  volatile AO_double_t *head = stack_head(list);
  AO_t version, top;

  do {
    version = AO_load_acquire(&head->AO_val1);
    top = AO_load(&head->AO_val2);
    *(volatile AO_t *)element = top;
  } while (!AO_compare_double_and_swap_double_full(head, version, top,
                                                   version, (AO_t)element));
#else
  ao_stack_alf_push(list, element);
#endif
}

AO_uintptr_t *AO_stack_pop_acquire(AO_stack_t *list)
{
#if AO_GPL_LOCK_FREE
  volatile AO_double_t *head = stack_head(list);
  AO_t version, top, next;

  do {
    version = AO_load_acquire(&head->AO_val1);
    top = AO_load_acquire(&head->AO_val2);
    if (top == 0)
      return NULL;
    next = AO_load((volatile AO_t *)top);     /* may be stale: CAS decides */
  } while (!AO_compare_double_and_swap_double_full(head, version, top,
                                                   version + 1, next));
  return (AO_uintptr_t *)top;
#else
  return ao_stack_alf_pop(list);
#endif
}

int AO_stack_is_lock_free(void)
{
  return AO_GPL_LOCK_FREE;
}

AO_uintptr_t *AO_stack_head_ptr(const AO_stack_t *list)
{
#if AO_GPL_LOCK_FREE
  return (AO_uintptr_t *)AO_load(&stack_head(list)->AO_val2);
#else
  /* The fallback keeps a small version in the low bits of word 0. */
  return (AO_uintptr_t *)(AO_load(&list->AO_opaque[0])
                          & ~(AO_t)(sizeof(AO_t) - 1));
#endif
}

AO_uintptr_t *AO_stack_next_ptr_d(const AO_uintptr_t *pnext)
{
  return (AO_uintptr_t *)*(const volatile AO_uintptr_t *)pnext;
}

AO_uintptr_t *AO_stack_next_ptr(AO_uintptr_t next)
{
  return (AO_uintptr_t *)next;
}
