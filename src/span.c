/* SPDX-License-Identifier: MIT */
/* Spans: descriptors, their anchors, carving blocks, retiring empty spans. */
#include "internal.h"
#include "size_class.h"

/*
 * Every block operation is one double-width CAS on the span's anchor
 * (free-chain head, free count, flags | tag).  Why this is ABA-safe: the
 * tag grows with every successful CAS, over the whole life of the
 * descriptor slot, so a CAS built from a stale read always fails; the
 * chain link read between the load and the CAS may be stale (the block
 * may have been taken and even written by its new owner), but then the
 * anchor has changed and the CAS discards it.  Memory is never unmapped,
 * so the stale read itself is harmless.
 *
 * Signals: a handler may run between any two steps and use the same span;
 * no step leaves the span in a state that another operation must wait
 * for, so the handler's operations complete and the interrupted one just
 * retries its CAS.  Progress: lock-free (a CAS fails only when another
 * operation succeeded).
 */

#define AVAIL(v1) ((unsigned)((v1) & 0xffff))
#define COUNT(v1) ((unsigned)(((v1) >> 16) & 0x3fff))
#define ANCHOR(avail, count) ((AO_t)(avail) | ((AO_t)(count) << 16))

/* The link of a free block: the index of the next free block. */
static inline unsigned block_link(const struct span *d, unsigned idx)
{
  const volatile uint32_t *p =
      (const volatile uint32_t *)(d->run.page_base + (size_t)idx * d->block_size);
  return *p;
}

static inline void set_block_link(void *block, unsigned next)
{
  *(volatile uint32_t *)block = (uint32_t)next;
}

static inline unsigned block_index(const struct span *d, const void *block)
{
  uint64_t off = (uint64_t)((const char *)block - d->run.page_base);

  /* Exact for every block start: off < 2^17 and block_size < 2^16. */
  return (unsigned)((off * d->inv_size) >> 32);
}

static inline int anchor_cas(struct span *d, AO_t v1, AO_t tag, AO_t n1)
{
  return AO_compare_double_and_swap_double_full(&d->anchor, v1, tag,
                                                n1, tag + 1);
}

/* Install a fresh anchor value on a slot nobody else can reach; going
 * through a CAS keeps the tag growing across the slot's reuses. */
static void anchor_reset(struct span *d, AO_t n1)
{
  AO_t v1, tag;

  do {
    tag = AO_load_acquire(&d->anchor.AO_val2);
    v1 = AO_load(&d->anchor.AO_val1);
  } while (!anchor_cas(d, v1, tag, n1));
}

static struct span *span_claim(unsigned npages)
{
  struct page_run run;
  struct span *d;

  if (!chunk_alloc_pages(npages, &run))
    return NULL;
  d = chunk_descriptor(&run);
  d->run = run;
  return d;
}

struct span *span_new_small(unsigned size_class, void **first_block)
{
  unsigned size = (unsigned)class_size(size_class);
  unsigned cap, i;
  struct span *d = span_claim(class_span_pages(size_class));
  char *blocks;

  if (d == NULL)
    return NULL;
  blocks = d->run.page_base;
  cap = (unsigned)(((size_t)d->run.npages << PAGE_SHIFT) / size);
  AO_GPL_ASSERT(cap >= 1 && cap < ANCHOR_NONE);
  d->kind = SPAN_SMALL;
  d->size_class = (unsigned char)size_class;
  d->capacity = (unsigned short)cap;
  d->block_size = size;
  d->inv_size = (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
  /* Block 0 goes to the caller; 1..cap-1 form the free chain. */
  for (i = 1; i < cap; i++)
    set_block_link(blocks + (size_t)i * size, i + 1 < cap ? i + 1 : ANCHOR_NONE);
  chunk_set_owner(&d->run, d);
  /* With blocks left, the caller holds the list token and must list d. */
  anchor_reset(d, cap > 1 ? ANCHOR(1, cap - 1) | ANCHOR_LISTED
                          : ANCHOR(ANCHOR_NONE, 0));
  *first_block = blocks;
  return d;
}

enum take_result span_take_block(struct span *d, void **block)
{
  for (;;) {
    AO_t tag = AO_load_acquire(&d->anchor.AO_val2);
    AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);
    unsigned count = COUNT(v1), avail, next;

    AO_GPL_ASSERT(v1 & ANCHOR_LISTED);
    if (v1 & ANCHOR_RETIRED)
      return TAKE_RETIRED;
    if (count == 0) {
      /* Full: give up the list token; the next free will list d again. */
      if (anchor_cas(d, v1, tag, v1 & ~ANCHOR_LISTED))
        return TAKE_FULL;
      continue;
    }
    avail = AVAIL(v1);
    next = block_link(d, avail);        /* may be stale: the CAS decides */
    if (anchor_cas(d, v1, tag,
                   ANCHOR(next, count - 1)
                       | (count > 1 ? ANCHOR_LISTED : 0))) {
      *block = d->run.page_base + (size_t)avail * d->block_size;
      return count > 1 ? TAKE_OK_MORE : TAKE_OK;
    }
  }
}

int span_put_block(struct span *d, void *block)
{
  unsigned idx = block_index(d, block);

  for (;;) {
    AO_t tag = AO_load_acquire(&d->anchor.AO_val2);
    AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);

    AO_GPL_ASSERT(!(v1 & ANCHOR_RETIRED) && COUNT(v1) < d->capacity);
    set_block_link(block, AVAIL(v1));
    if (anchor_cas(d, v1, tag,
                   ANCHOR(idx, COUNT(v1) + 1) | ANCHOR_LISTED))
      return !(v1 & ANCHOR_LISTED);
  }
}

int span_try_retire(struct span *d)
{
  for (;;) {
    AO_t tag = AO_load_acquire(&d->anchor.AO_val2);
    AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);

    if (COUNT(v1) != d->capacity)
      return 0;
    /* Every block is free and we hold the token: nobody else can touch
     * the span now, but a free that just finished may have raced our
     * load, hence the CAS. */
    if (anchor_cas(d, v1, tag, ANCHOR(ANCHOR_NONE, 0) | ANCHOR_RETIRED)) {
      chunk_free_pages(&d->run);
      return 1;
    }
  }
}

struct span *span_new_run(size_t size, void **mem)
{
  size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
  struct span *d;

  if (npages > MAX_RUN_PAGES || (d = span_claim((unsigned)npages)) == NULL)
    return NULL;
  d->kind = SPAN_RUN;
  d->capacity = 1;
  chunk_set_owner(&d->run, d);
  anchor_reset(d, ANCHOR(ANCHOR_NONE, 0));
  *mem = d->run.page_base;
  return d;
}

void span_free_run(struct span *d)
{
  anchor_reset(d, ANCHOR(ANCHOR_NONE, 0) | ANCHOR_RETIRED);
  chunk_free_pages(&d->run);
}

struct span *span_of(const void *p, struct large_header **large)
{
  return chunk_owner(p, large);
}
