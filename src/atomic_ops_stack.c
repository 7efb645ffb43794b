/* SPDX-License-Identifier: MIT */
/* AO_stack public API: the lock-free stack, or the configured fallback. */
#include "internal.h"
#include "lf_stack.h"

/* The algorithms and their arguments (ABA, signals, progress) are next to
 * their code: lf_stack.h, and stack_almost_lock_free.c for the fallback
 * that is used only without double-width CAS or when configured with
 * --enable-almost-lock-free. */

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
  lf_stack_push_bo(list, element, LF_BACKOFF_MIN);
#else
  ao_stack_alf_push(&list->AO_opaque[0], &list->AO_opaque[1], element);
#endif
}

AO_uintptr_t *AO_stack_pop_acquire(AO_stack_t *list)
{
#if AO_GPL_LOCK_FREE
  return lf_stack_pop_bo(list, LF_BACKOFF_MIN);
#else
  return ao_stack_alf_pop(&list->AO_opaque[0], &list->AO_opaque[1]);
#endif
}

int AO_stack_is_lock_free(void)
{
  return AO_GPL_LOCK_FREE;
}

AO_uintptr_t *AO_stack_head_ptr(const AO_stack_t *list)
{
#if AO_GPL_LOCK_FREE
  return lf_stack_top(list);
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

/* Binaries built against upstream headers in their almost-lock-free mode
 * (e.g. Debian's x86_64 libatomic_ops 7.6 without -mcx16) call these two
 * through their AO_stack_push_release/AO_stack_pop_acquire macros, passing
 * the head word and the black list ("aux") of their AO_stack_t. */
void AO_stack_push_explicit_aux_release(volatile AO_t *list,
                                        AO_uintptr_t *element, void *aux)
{
  ao_stack_alf_push(list, (volatile AO_t *)aux, element);
}

AO_uintptr_t *AO_stack_pop_explicit_aux_acquire(volatile AO_t *list,
                                                void *aux)
{
  return ao_stack_alf_pop(list, (volatile AO_t *)aux);
}
