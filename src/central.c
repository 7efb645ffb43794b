/* SPDX-License-Identifier: MIT */
/* Central size-class lists: lock-free stacks of spans with free blocks. */
#include "internal.h"
#include "size_class.h"
#include "lf_stack.h"

/*
 * Each class has a stack of spans holding at least one free block (lf_stack.h:
 * version-counted, ABA-safe, lock-free in every build).  An allocation pops
 * a span, which hands it the span's list token (see struct span), takes one
 * block with a CAS on the span's anchor and pushes the span back if blocks
 * remain.  While popped, the span is invisible to other allocators, never
 * to frees, which only touch its anchor.
 *
 * Signals: a handler interrupting an allocation between its pop and its
 * push simply does not see that span and uses another one, or carves a new
 * span: it never waits for the interrupted thread.  A thread frozen there
 * forever keeps one span unlisted: its free blocks stay unused until a free
 * relists it (the freed blocks are not lost).
 */

/* One list per class, each on its own cache line. */
struct class_list {
  AO_stack_t partial;
} __attribute__((__aligned__(64)));

static struct class_list lists[NUM_SIZE_CLASSES];

static inline void list_push(struct span *d)
{
  lf_stack_push(&lists[d->size_class].partial, &d->link);
}

/* No listed span had room: carve a new span from pages at hand, else
 * retire wholly free spans of every class and retry, and only then map a
 * new segment (when mmap is enabled). */
static AO_GPL_NOINLINE void *central_grow(unsigned size_class)
{
  void *block;
  struct span *d = span_new_small(size_class, 0, &block);

  if (d == NULL && central_reclaim() > 0)
    d = span_new_small(size_class, 0, &block);
  if (d == NULL)
    d = span_new_small(size_class, 1, &block);
  if (d == NULL)
    return NULL;
  if (d->capacity > 1)
    list_push(d);
  return block;
}

void *central_alloc(unsigned size_class)
{
  for (;;) {
    struct span *d = (struct span *)lf_stack_pop(&lists[size_class].partial);
    void *block;

    if (AO_GPL_UNLIKELY(d == NULL))
      return central_grow(size_class);
    switch (span_take_block(d, &block)) {
    case TAKE_OK_MORE:
      list_push(d);
      return block;
    case TAKE_OK:
      return block;
    case TAKE_FULL:      /* token dropped: a later free relists it */
      break;
    case TAKE_RETIRED:   /* its pages are gone: only the descriptor is left */
      span_recycle(d);
      break;
    }
  }
}

void central_free(struct span *d, void *block)
{
  if (span_put_block(d, block))
    list_push(d);
}

/*
 * Called when the pages at hand do not suffice.  Walks every class list
 * without popping anything, so no span is hidden from concurrent
 * allocators or from a handler that interrupts the walk, and retires the
 * spans whose blocks are all free (span_try_retire decides by a CAS).  The
 * walk reads links of descriptors that may be popped and relinked
 * elsewhere meanwhile: descriptors are never unmapped, so that is safe,
 * and the step bound ends any detour.  Returns the number of spans retired.
 */
#define RECLAIM_STEPS 4096

int central_reclaim(void)
{
  int retired = 0;
  unsigned c, steps;

  for (c = 0; c < NUM_SIZE_CLASSES; c++) {
    struct span *d = (struct span *)lf_stack_top(&lists[c].partial);

    for (steps = 0; d != NULL && steps < RECLAIM_STEPS; steps++) {
      retired += span_try_retire(d);
      d = (struct span *)AO_load(&d->link);
    }
  }
  return retired;
}
