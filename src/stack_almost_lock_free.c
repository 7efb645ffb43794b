/* SPDX-License-Identifier: MIT */
/* Almost-non-blocking AO_stack: single-word CAS plus a black list of pops. */
/*
 * Used when the build has no double-width CAS or was configured with
 * --enable-almost-lock-free (config.h: AO_GPL_LOCK_FREE 0).  The idea is
 * Boehm's "An almost non-blocking stack" (PODC 2004); this code and its
 * reasoning are written from scratch for this library.
 *
 * Layout of AO_stack_t (all-zero is an empty stack):
 *   AO_opaque[0]  head: address of the top element's link field, with a
 *                 version number in its low bits (AO_ALF_LOW); every
 *                 successful change of the head increments the version.
 *   AO_opaque[1], AO_opaque[2]
 *                 the black list (AO_ALF_BL_SIZE slots).  A slot is 0 when
 *                 free, else the address of an element that one or more
 *                 poppers have announced, with the number of those poppers
 *                 (1 to AO_ALF_LOW) in the low bits.
 *   AO_opaque[3]  unused, always 0.
 * Links hold plain element addresses (no low bits), so AO_stack_next_ptr_d
 * works unchanged; the head's pointer is opaque[0] & ~AO_ALF_LOW.
 *
 * Elements are AO_t link fields, so they are aligned to sizeof(AO_t): the low
 * log2(sizeof(AO_t)) bits of an element address are free (3 bits on LP64 and
 * LLP64, 2 on ILP32); a debug assertion checks it.
 *
 * POP (a "window" is the stretch between announcing and releasing a slot)
 *   1. h = head; if its pointer part p is NULL, return NULL.
 *   2. Announce p: join a slot that already holds p (count not saturated),
 *      else claim a free slot (0 -> p|1).  If every slot is busy with other
 *      elements, pause and go to 1.
 *   3. Re-read head; if it is not h any more, release the slot and go to 1.
 *   4. next = p's link; CAS head from h to (next | version(h)+1).
 *   5. Release the slot (count - 1; the last one leaves 0); return p if the
 *      CAS succeeded, else go to 1.
 * PUSH of element e
 *   1. Full barrier, then wait (bounded busy-pauses) until no slot holds e.
 *   2. Loop: h = head; e->link = pointer part of h; CAS head from h to
 *      (e | version(h)+1).
 *
 * WHY IT IS ABA-SAFE.  The danger of a Treiber stack with single-word CAS is
 * a pop that reads p->link = n, is delayed while p is popped, n is popped and
 * p is pushed back, and then wins its CAS and installs the stale n.  Here the
 * popper P reads the link only after step 3 showed p on top while P's
 * announcement of p was already in the black list.  From then until P
 * releases its slot, p cannot re-enter the stack: p can leave only by a pop
 * that comes after P's step 3, and whoever pushes p again acts after that
 * pop.  P's announcement is a full-barrier CAS followed by the step-3 read,
 * which read a head value older than that pop's CAS (also a full barrier);
 * the pusher's scan follows a full barrier.  This store-buffering pattern
 * with full fences on all three sides forces the scan to see P's slot, so the
 * pusher waits.  Hence if P's CAS in step 4 finds the head pointing at p, p
 * never left the stack after step 3: p's link (written by PUSH only before p
 * is linked) is unchanged and n is still the element under p.  The CAS is
 * therefore correct by the black list alone.  The versions are a second line
 * of defence: step 3 and step 4 fail after any completed push or pop, unless
 * a multiple of (AO_ALF_LOW + 1) changes happened, a case the argument above
 * already covers.  A stale announcement (P read head before p was popped and
 * announced it later) is harmless: step 3 fails unless p really is on top
 * again, and a pusher that finished its scan before that announcement has not
 * linked p yet and writes p's link before its CAS publishes p.
 *   A client owns an element after popping it and may write its link word;
 * a popper that lost the race may then read that garbage in step 4, but its
 * CAS fails, since p could only be on top again after a push, which the black
 * list blocks.  The read uses AO_load; it is a data race only if the client's
 * own write is a plain store (the element must stay readable, as the public
 * header requires).
 *
 * PROGRESS GUARANTEE ("almost" non-blocking).  No lock is taken anywhere.
 *   - A window is a bounded number of the popper's own steps (its only loop
 *     is the slot-release CAS, which fails only when another popper changed
 *     the same slot, i.e. made progress).
 *   - A pop attempt fails only if (a) the head changed, so another push or
 *     pop completed, or (b) every slot is held, for elements other than the
 *     current top (or at a saturated count), by poppers inside windows.  So
 *     pop is lock-free as long as fewer than AO_ALF_BL_SIZE poppers stop
 *     indefinitely (suspended, dead, or under a signal handler that does not
 *     return) inside a window; if AO_ALF_BL_SIZE poppers stop there holding
 *     elements that are no longer on top, pops spin until one resumes.
 *   - Push is a lock-free CAS loop after step 1, which waits only while some
 *     popper is inside a window holding this very element.  No new holder can
 *     appear while the element is off the stack (only poppers that read the
 *     head before it was popped may still announce it, once each, and they
 *     then fail step 3), so the wait ends after those poppers take a bounded
 *     number of steps; it is unbounded only if one of them stops inside its
 *     window.
 *   In short: lock-free unless a thread stops inside a pop window, and then
 *   only pushes of the element it announced, and pops once AO_ALF_BL_SIZE
 *   such threads are stopped, wait for it.
 *
 * ASYNC SIGNALS (a handler running push/pop on the same stack, on the thread
 * it interrupted).  Nothing but the slots is held between steps, so an
 * interruption between any two steps is safe:
 *   - outside a POP window (before step 2, after step 5, anywhere in PUSH):
 *     the interrupted frame holds nothing; the handler's operations run
 *     normally and the frame's next CAS fails and retries if the head moved;
 *   - inside a POP window: the frame holds one slot for its element p; the
 *     handler's pops join that slot while p is on top, or use another slot;
 *     the frame's step 3 or step 4 then fails if the handler moved the head.
 * Exactly two situations never terminate, because the handler waits for the
 * frame it interrupted, which cannot run until the handler returns:
 *   (1) a handler (at any nesting depth, even 1) pushes element p while an
 *       interrupted frame of the same thread is inside a POP window holding
 *       p.  Example: the thread's pop has announced the top p, the handler
 *       pops p (which succeeds) and pushes it back: the push spins forever.
 *       Do not push, from a handler, an element that was popped from the same
 *       stack after the interrupted pop began;
 *   (2) a handler pops while all AO_ALF_BL_SIZE slots are held by interrupted
 *       frames of its thread (or by stopped threads) for elements other than
 *       the current top, or at a saturated count.  Each frame holds at most
 *       one slot, so this needs AO_ALF_BL_SIZE interrupted pop windows (nested
 *       handlers AO_ALF_BL_SIZE deep) holding different elements, the top
 *       having been changed by other threads in between, or more than
 *       AO_ALF_BL_SIZE * AO_ALF_LOW nested windows for one element.
 */
#ifdef HAVE_CONFIG_H
# include "config.h"
#endif

#include <atomic_ops.h>

#include "internal.h"  /* our prototypes */

/* Built in every configuration: it serves AO_stack when configured with
 * --enable-almost-lock-free, and always the entry points that binaries
 * built against upstream's almost-lock-free headers call (the head word
 * and the two black-list words are then wherever such a binary put them,
 * by default in its AO_stack_t at the same offsets as ours). */

#if !defined(AO_HAVE_compare_and_swap_full) || !defined(AO_HAVE_nop_full) \
    || !defined(AO_HAVE_load_acquire) || !defined(AO_HAVE_load) \
    || !defined(AO_HAVE_store)
# error "almost-lock-free stack: AO CAS_full, nop_full, loads, store needed"
#endif

/* Low bits of an element address: version in the head, count in a slot. */
#define AO_ALF_LOW ((AO_t)(sizeof(AO_t) - 1))
#define AO_ALF_PTR(w) ((w) & ~AO_ALF_LOW)

#define AO_ALF_BL_SIZE 2
#define AO_ALF_SLOT(slots, i) (&(slots)[i])

/* Busy-pause bounds: the i-th consecutive wait spins min(2^i, 2^MAX) times. */
#define AO_ALF_PAUSE_MAX_SHIFT 10

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
# define AO_ALF_CPU_RELAX() __asm__ __volatile__("pause" : : : "memory")
#elif defined(__GNUC__) && (defined(__aarch64__) || defined(__arm__))
# define AO_ALF_CPU_RELAX() __asm__ __volatile__("yield" : : : "memory")
#else
# define AO_ALF_CPU_RELAX() AO_compiler_barrier()
#endif

/* Spin for a bounded time that grows with *count; async-signal-safe (no
 * system call). */
static void ao_alf_pause(unsigned *count)
{
  unsigned shift = *count < AO_ALF_PAUSE_MAX_SHIFT ? *count
                                                   : AO_ALF_PAUSE_MAX_SHIFT;
  unsigned long i, n = 1UL << shift;

  for (i = 0; i < n; i++)
    AO_ALF_CPU_RELAX();
  if (*count < AO_ALF_PAUSE_MAX_SHIFT)
    (*count)++;
}

/* POP step 2: announce element address p (low bits clear).  Returns the slot
 * index, or -1 if every slot holds another element or is saturated. */
static int ao_alf_announce(volatile AO_t *slots, AO_t p)
{
  int i;

  /* First join an existing announcement of p: keeps slots free for others. */
  for (i = 0; i < AO_ALF_BL_SIZE; i++) {
    volatile AO_t *slot = AO_ALF_SLOT(slots, i);
    AO_t v = AO_load(slot);

    while (AO_ALF_PTR(v) == p && (v & AO_ALF_LOW) < AO_ALF_LOW) {
      if (AO_compare_and_swap_full(slot, v, v + 1))
        return i;
      v = AO_load(slot);
    }
  }
  for (i = 0; i < AO_ALF_BL_SIZE; i++) {
    volatile AO_t *slot = AO_ALF_SLOT(slots, i);

    if (AO_load(slot) == 0 && AO_compare_and_swap_full(slot, 0, p | 1))
      return i;
  }
  return -1;
}

/* POP step 5: withdraw one announcement from slot i. */
static void ao_alf_release(volatile AO_t *slots, int i)
{
  volatile AO_t *slot = AO_ALF_SLOT(slots, i);
  AO_t v, nv;

  do {
    v = AO_load(slot);
    AO_GPL_ASSERT(v != 0 && (v & AO_ALF_LOW) != 0);
    nv = (v & AO_ALF_LOW) == 1 ? 0 : v - 1;
  } while (!AO_compare_and_swap_full(slot, v, nv));
}

/* True if some popper currently announces element address p. */
static int ao_alf_blacklisted(volatile AO_t *slots, AO_t p)
{
  int i;

  for (i = 0; i < AO_ALF_BL_SIZE; i++) {
    if (AO_ALF_PTR(AO_load(AO_ALF_SLOT(slots, i))) == p)
      return 1;
  }
  return 0;
}

void ao_stack_alf_push(volatile AO_t *head, volatile AO_t *slots,
                       AO_t *element)
{
  AO_t p = (AO_t)element;
  unsigned waits = 0;

  AO_GPL_ASSERT(element != NULL);
  AO_GPL_ASSERT((p & AO_ALF_LOW) == 0); /* AO_t-aligned link fields only */

  /* Order the scan after whatever pop handed us the element, and after any
   * announcement that pop's competitors made before seeing it on top. */
  AO_nop_full();
  while (ao_alf_blacklisted(slots, p))
    ao_alf_pause(&waits);

  for (;;) {
    AO_t h = AO_load(head);

    AO_store(element, AO_ALF_PTR(h));
    /* Full barrier: publishes the link and the element's contents. */
    if (AO_compare_and_swap_full(head, h, p | ((h + 1) & AO_ALF_LOW)))
      return;
  }
}

AO_t *ao_stack_alf_pop(volatile AO_t *head, volatile AO_t *slots)
{
  unsigned waits = 0;

  for (;;) {
    AO_t h = AO_load_acquire(head);
    AO_t p = AO_ALF_PTR(h);
    AO_t next;
    int slot, done;

    if (p == 0)
      return NULL;
    slot = ao_alf_announce(slots, p);
    if (slot < 0) {
      ao_alf_pause(&waits); /* all slots held by poppers in their windows */
      continue;
    }
    /* The announcing CAS is a full barrier, so this read comes after it. */
    if (AO_load_acquire(head) != h) {
      ao_alf_release(slots, slot);
      continue;
    }
    /* p was on top while announced: its link is stable until we release. */
    next = AO_load((volatile AO_t *)p);
    done = AO_compare_and_swap_full(head, h,
                                    AO_ALF_PTR(next) | ((h + 1) & AO_ALF_LOW));
    ao_alf_release(slots, slot);
    if (done)
      return (AO_t *)p;
  }
}

