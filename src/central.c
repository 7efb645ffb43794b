/* SPDX-License-Identifier: MIT */
/* Central size-class lists: lock-free stacks of spans with free blocks. */
#include "internal.h"
#include "size_class.h"

/*
 * Each class has a stack of spans holding at least one free block (the
 * AO_stack of this library: version-counted, ABA-safe).  An allocation pops
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
  AO_stack_push(&lists[d->size_class].partial, &d->link);
}

/* No listed span had room: carve a new one, after recovering wholly free
 * spans of every class if the chunk provider is exhausted. */
static AO_GPL_NOINLINE void *central_grow(unsigned size_class)
{
  void *block;
  struct span *d = span_new_small(size_class, &block);

  if (d == NULL && central_reclaim())
    d = span_new_small(size_class, &block);
  if (d == NULL)
    return NULL;
  if (d->capacity > 1)
    list_push(d);
  return block;
}

void *central_alloc(unsigned size_class)
{
  for (;;) {
    struct span *d = (struct span *)AO_stack_pop(&lists[size_class].partial);
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
    case TAKE_RETIRED:
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
 * Called when the chunk provider is out of pages.  Pops every listed span of
 * every class, retires those whose blocks are all free (their pages go back
 * to the chunk provider, usable by any class or large object), and pushes
 * the others back.  Concurrent allocators of a class being swept may carve
 * a new span meanwhile or, at the edge of exhaustion, fail once: a bounded,
 * transient effect.  Returns the number of spans retired.
 */
int central_reclaim(void)
{
  int retired = 0;
  unsigned c;

  for (c = 0; c < NUM_SIZE_CLASSES; c++) {
    struct span *keep = NULL, *d;

    /* We hold the token of each popped span, so its link is ours. */
    while ((d = (struct span *)AO_stack_pop(&lists[c].partial)) != NULL) {
      if (span_try_retire(d)) {
        retired++;
      } else {
        d->link = (AO_t)keep;
        keep = d;
      }
    }
    while (keep != NULL) {
      d = keep;
      keep = (struct span *)d->link;
      list_push(d);
    }
  }
  return retired;
}
