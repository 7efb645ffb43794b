/* SPDX-License-Identifier: MIT */
/* The version-counted lock-free stack on double-width CAS, inline. */
#ifndef AO_GPL_LF_STACK_H
#define AO_GPL_LF_STACK_H

#include "internal.h"
#include "track.h"

/*
 * Used by AO_stack in the lock-free build and, in every build, by the
 * allocator's own lists (so that AO_malloc stays lock-free even when the
 * public AO_stack is configured to use the almost-lock-free fallback).
 *
 * Layout over AO_stack_t: word 0 is a version, word 1 the top element's
 * link field (NULL when empty); words 2-3 are unused.  Both words change
 * together by one double-width CAS.
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
 * Progress: lock-free.  Element memory must stay readable while other
 * threads may be popping it (the link is read before the CAS validates it).
 */

static inline volatile AO_double_t *lf_stack_head(const AO_stack_t *list)
{
  return (volatile AO_double_t *)(uintptr_t)list;
}

static inline void lf_stack_push(AO_stack_t *list, AO_t *element)
{
  volatile AO_double_t *head = lf_stack_head(list);
  AO_t version, top;

  do {
    version = AO_load_acquire(&head->AO_val1);
    top = AO_load(&head->AO_val2);
    AO_store(element, top);       /* atomic: stale pops may read it */
  } while (!AO_compare_double_and_swap_double_full(head, version, top,
                                                   version, (AO_t)element));
}

static inline AO_t *lf_stack_pop(AO_stack_t *list)
{
  volatile AO_double_t *head = lf_stack_head(list);
  AO_t version, top, next;

  do {
    version = AO_load_acquire(&head->AO_val1);
    top = AO_load_acquire(&head->AO_val2);
    if (top == 0)
      return NULL;
    next = racy_word_load((volatile AO_t *)top);  /* may be stale: CAS decides */
  } while (!AO_compare_double_and_swap_double_full(head, version, top,
                                                   version + 1, next));
  return (AO_t *)top;
}

static inline AO_t *lf_stack_top(const AO_stack_t *list)
{
  return (AO_t *)AO_load(&lf_stack_head(list)->AO_val2);
}

#endif /* AO_GPL_LF_STACK_H */
