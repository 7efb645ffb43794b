/* SPDX-License-Identifier: MIT */
/* Central size-class lists: sharded lock-free stacks of spans with free blocks. */
#include "internal.h"
#include "size_class.h"
#include "lf_stack.h"
#include "track.h"

/*
 * Each class has CENTRAL_SHARDS stacks of spans holding at least one free
 * block (lf_stack.h: version-counted, ABA-safe, lock-free in every build).
 * A span belongs to one shard for life (d->shard) and is always relisted
 * there; thread caches are spread over the shards, and take from another
 * shard only when theirs is empty, so threads rarely meet on a list head.
 *
 * An allocation pops a span, which hands it the span's list token (see
 * struct span), takes one block or a batch with a CAS on the span's anchor
 * and pushes the span back if blocks remain.  While popped, the span is
 * invisible to other allocators, never to frees, which only touch its
 * anchor.
 *
 * Signals: a handler interrupting an allocation between its pop and its
 * push simply does not see that span and uses another one, or carves a new
 * span: it never waits for the interrupted thread.
 *
 * A thread frozen there forever keeps the span's list token: frees into
 * the span do not relist it (the token is taken), so its free blocks stay
 * unused.  Once every block is free, central_reclaim finds the span through
 * the page map and retires it (retiring needs no token), and its pages
 * serve everyone again; if the popper ever resumes it finds the span
 * RETIRED and recycles the descriptor, else only the 64-byte descriptor is
 * lost.  A span that is only partly free stays unused: at most one span per
 * frozen thread (a documented limit).
 */

/* One list per shard and class, each on its own cache line. */
struct class_list {
  AO_stack_t partial;
} __attribute__((__aligned__(64)));

static struct class_list lists[CENTRAL_SHARDS][NUM_SIZE_CLASSES];

static inline void list_push(struct span *d)
{
  lf_stack_push(&lists[d->shard][d->size_class].partial, &d->link);
}

/* A new span for the shard, with block 0 taken.  Steps, cheapest first:
 * 0 = pages at hand only; 1 = also retire wholly free spans of every class
 * and map a new segment (when mmap is enabled). */
static AO_GPL_NOINLINE struct span *central_grow(unsigned size_class,
                                                  unsigned shard, int step,
                                                  void **block)
{
  struct span *d = span_new_small(size_class, 0, block);

  if (d == NULL && step > 0) {
    if (central_reclaim() > 0)
      d = span_new_small(size_class, 0, block);
    if (d == NULL)
      d = span_new_small(size_class, 1, block);
  }
  if (d != NULL)
    d->shard = (unsigned char)shard;
  return d;
}

/* Take blocks (see span_take_batch) from a span whose token we hold;
 * relist it if blocks remain.  0 if it turned out full or retired (token
 * dropped). */
static unsigned take_from(struct span *d, unsigned want, unsigned max,
                          void **chain)
{
  enum take_result r;
  unsigned n = span_take_batch(d, want, max, chain, &r);

  switch (r) {
  case TAKE_OK_MORE:
    list_push(d);
    break;
  case TAKE_OK:
  case TAKE_FULL:        /* token dropped: a later free relists it */
    break;
  case TAKE_RETIRED:     /* its pages are gone: only the descriptor is left */
    span_recycle(d);
    break;
  }
  return n;
}

/* A freshly carved span: block 0 is taken, take more, then list it. */
static unsigned take_from_new(struct span *d, void *first, unsigned want,
                              unsigned max, void **chain)
{
  unsigned n = 1;

  free_link_set(first, NULL);
  *chain = first;
  if (d->capacity == 1)
    return 1;                          /* LISTED was never set */
  if (want > 1) {
    void *more;

    n += take_from(d, want - 1, max - 1, &more);
    if (n > 1)
      free_link_set(first, more);
  } else {
    list_push(d);
  }
  return n;
}

/*
 * Own shard first.  Where memory can grow (mmap enabled), then a new span
 * from pages at hand, so that threads keep to their own spans and do not
 * write to each other's cache lines; with the static heap alone, other
 * shards' spans come first, since a span per shard and class would not
 * fit.  Only then retire free spans or map more memory.
 */
unsigned central_alloc_batch(unsigned size_class, unsigned shard,
                             unsigned want, unsigned max, void **chain)
{
  int plentiful = span_memory_can_grow();
  unsigned tries, n;
  void *first;
  struct span *d;

  /* With the static heap alone, no more than asked for: blocks in a cache
   * are out of reach of other threads' caches and handlers. */
  if (!plentiful)
    max = want;

  for (tries = 0; tries < CENTRAL_SHARDS; tries++) {
    AO_stack_t *list =
        &lists[(shard + tries) % CENTRAL_SHARDS][size_class].partial;

    while ((d = (struct span *)lf_stack_pop(list)) != NULL)
      if ((n = take_from(d, want, max, chain)) > 0)
        return n;
    if (tries == 0 && plentiful
        && (d = central_grow(size_class, shard, 0, &first)) != NULL)
      return take_from_new(d, first, want, max, chain);
  }
  d = central_grow(size_class, shard, 1, &first);
  return d != NULL ? take_from_new(d, first, want, max, chain) : 0;
}

void *central_alloc(unsigned size_class)
{
  void *block;

  return central_alloc_batch(size_class, 0, 1, 1, &block) ? block : NULL;
}

void central_free(struct span *d, void *block)
{
  if (span_put_block(d, block))
    list_push(d);
}

/* A span's share of a chain being given back: its blocks, linked. */
struct chain_group {
  struct span *d;
  void *first, *last;            /* last is the first block met */
  unsigned k;
};
/* Spans gathered per pass: a cache's chain of one class spans few of
 * them; a longer tail just takes another pass. */
#define CHAIN_GROUPS 16

static void put_groups(struct chain_group *g, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; i++)
    if (span_put_chain(g[i].d, g[i].first, g[i].last, g[i].k))
      list_push(g[i].d);
}

/*
 * Give back a NULL-terminated chain of blocks (any classes and spans).
 * Blocks are regrouped by span, each block pushed onto its group (it was
 * just read, so writing its link costs nothing), and each span gets its
 * share with one CAS: frees in random order would otherwise cost one CAS
 * per block, each on a different anchor.
 */
void central_free_chain(void *chain)
{
  struct chain_group g[CHAIN_GROUPS];
  unsigned n = 0, hit = 0, i;

  while (chain != NULL) {
    void *p = chain;
    struct span *d = span_of(p);

    chain = free_link_get(p);
    if (n == 0 || g[hit].d != d) {
      for (i = 0; i < n && g[i].d != d; i++)
        ;
      if (i == n) {
        if (n == CHAIN_GROUPS) {
          put_groups(g, n);
          i = n = 0;
        }
        g[i].d = d;
        g[i].last = p;
        g[i].first = NULL;
        g[i].k = 0;
        n++;
      }
      hit = i;
    }
    free_link_set(p, g[hit].first);
    g[hit].first = p;
    g[hit].k++;
  }
  put_groups(g, n);
}

/*
 * Called when the pages at hand do not suffice, and by AO_malloc_trim.
 * Looks at every span through the page map (chunk_visit_runs), not through
 * the class lists: a span whose token a frozen popper holds is on no list,
 * yet must go back once its blocks are all free.  Nothing is popped, so no
 * span is hidden from concurrent allocators or from a handler that
 * interrupts the walk; span_try_retire decides by a CAS, whatever the
 * descriptor serves by now.  The cost, one load per in-use page and one
 * per run start, is paid only on these slow paths.  Returns the number of
 * spans retired.
 */
int central_reclaim(void)
{
  return chunk_visit_runs(span_try_retire);
}
