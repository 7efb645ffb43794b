/* SPDX-License-Identifier: MIT */
/* Decay: memory left free for about a second goes back to the OS, with no thread and no call. */
#include "internal.h"
#include "thread_cache.h"

/*
 * No background thread (a library cannot own one safely, and a handler
 * could not wait for it): the threads that use the allocator run the
 * steps.  Slow paths (cache refills, page-run and large-mapping frees)
 * call decay_tick() directly; the inline free fast path counts down
 * DECAY_FAST_OPS frees first (one decrement and branch), so a program
 * that only hits its caches still reaches a step.  The tick also shrinks
 * the caller's grown bin limits a step (cache_decay_self).
 *
 * A step runs at most once per DECAY_STEP_MS for the whole process: the
 * caller that moves last_step by CAS runs it, everybody else (other
 * threads, a handler interrupting a step on its own thread: last_step
 * was moved before the step began) returns at once.  Nothing waits for a
 * step, so a stepper stopped for good delays only the return of memory,
 * until the next period lets another caller step.  Every part of a step
 * is lock-free and async-signal-safe on its own (the chunk provider's
 * trim windows block signals, as for AO_malloc_trim).
 *
 * Ages: wholly free spans go back to the chunk provider at every step;
 * free pages are released once free at two consecutive steps, and cached
 * large mappings once cached for LARGE_DECAY_MS (large.c): memory free
 * for about 0.5-1 s is returned, memory reused sooner is not.
 */
#define DECAY_STEP_MS 500
#define DECAY_FAST_OPS 4096
#define DECAY_STALE_MS 60000u

/* The ms clock (truncated to an AO_t) when the last step began. */
static volatile AO_t last_step;

void decay_tick(void)
{
  decay_tick_at(os_now_ms());
}

void decay_tick_at(uint64_t now_ms)
{
  AO_t now = (AO_t)now_ms, last = AO_load(&last_step);

  /* A clock read from before the last step (a large free reads it before
   * its munmap; any caller may be preempted between the read and the
   * load) is not a step due: it would run a second step at once and move
   * last_step back.  "Before" within DECAY_STALE_MS, so that a clock that
   * wrapped a 32-bit AO_t after a long idle period still steps. */
  if (now - last < DECAY_STEP_MS || last - now < DECAY_STALE_MS
      || !AO_compare_and_swap_full(&last_step, last, now))
    return;
  /* Spans first: their pages then age in the chunk provider. */
  central_reclaim();
  large_decay((uint64_t)now);
  chunk_decay();
}

/* The countdown of the caller's own cache ran out in cache_free (busy
 * clear again); it restarts inside a cache operation of its own
 * (cache_decay_self). */
void decay_tick_cache(void)
{
  cache_decay_self(DECAY_FAST_OPS);
  decay_tick();
}
