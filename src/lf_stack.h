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

/*
 * Backoff (AO_stack's public operations only): a thread whose CAS on the
 * head failed waits a little before it tries again, twice as long after
 * each further failure.  Under contention every CAS attempt pulls the
 * head's cache line over to its CPU; a loser that retries at once only
 * steals the line from the winner's next operation, so most attempts fail.
 * Backing off lets one thread run several operations on a line it holds
 * (bench/stack.sh measures it).  An operation whose first CAS succeeds
 * never waits.  Progress is unchanged (lock-free): the wait is a bounded
 * number of pause instructions, never a wait for another thread, and a CAS
 * fails only because another operation succeeded.  A handler interrupting
 * the wait runs its own operations normally.  The allocator's lists call
 * without backoff: their operations are spread over shards and rarely
 * collide, and a wait there would only add latency.
 */
#define LF_BACKOFF_MIN 8         /* pause instructions after a 1st failure */
#define LF_BACKOFF_MAX 1024      /* ... doubling up to this */

static inline void lf_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("isb" ::: "memory");
#else
  AO_compiler_barrier();
#endif
}

/* *spins: 0 = no backoff, else the next wait. */
static inline void lf_backoff(unsigned *spins)
{
  unsigned i, n = *spins;

  for (i = 0; i < n; i++)
    lf_cpu_relax();
  if (n != 0 && n < LF_BACKOFF_MAX)
    *spins = 2 * n;
}

static inline void lf_stack_push_bo(AO_stack_t *list, AO_t *element,
                                    unsigned spins)
{
  volatile AO_double_t *head = lf_stack_head(list);
  AO_t version, top;

  for (;;) {
    version = AO_load_acquire(&head->AO_val1);
    top = AO_load(&head->AO_val2);
    AO_store(element, top);       /* atomic: stale pops may read it */
    if (AO_compare_double_and_swap_double_full(head, version, top, version,
                                               (AO_t)element))
      return;
    lf_backoff(&spins);
  }
}

static inline AO_t *lf_stack_pop_bo(AO_stack_t *list, unsigned spins)
{
  volatile AO_double_t *head = lf_stack_head(list);
  AO_t version, top, next;

  for (;;) {
    version = AO_load_acquire(&head->AO_val1);
    top = AO_load_acquire(&head->AO_val2);
    if (top == 0)
      return NULL;
    next = racy_word_load((volatile AO_t *)top);  /* may be stale: CAS decides */
    if (AO_compare_double_and_swap_double_full(head, version, top,
                                               version + 1, next))
      return (AO_t *)top;
    lf_backoff(&spins);
  }
}

static inline void lf_stack_push(AO_stack_t *list, AO_t *element)
{
  lf_stack_push_bo(list, element, 0);
}

static inline AO_t *lf_stack_pop(AO_stack_t *list)
{
  return lf_stack_pop_bo(list, 0);
}

static inline AO_t *lf_stack_top(const AO_stack_t *list)
{
  return (AO_t *)AO_load(&lf_stack_head(list)->AO_val2);
}

#endif /* AO_GPL_LF_STACK_H */
