/* SPDX-License-Identifier: MIT */
/* Spans: descriptors, their anchors, carving blocks, retiring empty spans. */
#include "internal.h"
#include "size_class.h"
#include "lf_stack.h"
#include "track.h"
#include "atomic_ops_malloc.h"   /* struct AO_malloc_stats */

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

/*
 * Free blocks are linked through their first word by plain pointers (NULL
 * ends the chain), the same format the thread caches use, so chains move
 * between a span and a cache without rewriting a block.  Only the anchor
 * holds an index (16 bits).
 */
static inline void *block_at(const struct span *d, unsigned idx)
{
  return idx == ANCHOR_NONE ? NULL
                            : d->run.page_base + (size_t)idx * d->block_size;
}

/* The link of a free block; may be stale (see above), so callers check it
 * with block_in_span before following it. */
static inline void *block_link(const void *block)
{
  return free_link_load(block);
}

static inline void set_block_link(void *block, void *next)
{
  free_link_store(block, next);
}

/* A block start of d: inside its blocks and 16-byte aligned (every class
 * size is a multiple of 16 and spans start on a page). */
static inline int block_in_span(const struct span *d, const void *p)
{
  return (size_t)((const char *)p - d->run.page_base)
             < (size_t)d->capacity * d->block_size
         && ((uintptr_t)p & 15) == 0;
}

static inline unsigned block_index(const struct span *d, const void *block)
{
  uint64_t off = (uint64_t)((const char *)block - d->run.page_base);

  /* Exact for every block start: off < 2^17 and block_size < 2^16. */
  return block == NULL ? ANCHOR_NONE
                       : (unsigned)((off * d->inv_size) >> 32);
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

/*
 * Descriptors: recycled ones from the pool, else fresh ones from a static
 * array, else a page carved into descriptors that stay descriptors for
 * good.  Decoupled from pages so that a RETIRED descriptor may linger on a
 * class list while its pages already serve another span.
 */
/* Beside those for live spans, room for a retired descriptor lingering on
 * every class list, as after a sweep through all the classes: a descriptor
 * page taken from a small heap stays metadata for good and would split it. */
#define STATIC_DESCRIPTORS \
  (STATIC_PAGES / 4 + 64 + CENTRAL_SHARDS * NUM_SIZE_CLASSES)
#define DESCRIPTORS_PER_PAGE (PAGE_SIZE / sizeof(struct span))

static struct span static_descriptors[STATIC_DESCRIPTORS];
static volatile AO_t static_descriptors_used;
static AO_stack_t descriptor_pool;

static struct span *descriptor_get(int grow)
{
  struct span *d = (struct span *)lf_stack_pop(&descriptor_pool);
  struct page_run run;
  AO_t i;

  if (d != NULL)
    return d;
  if (AO_load(&static_descriptors_used) < STATIC_DESCRIPTORS) {
    i = AO_fetch_and_add1_full(&static_descriptors_used);
    if (i < STATIC_DESCRIPTORS)
      return &static_descriptors[i];
  }
  if (!chunk_alloc_pages(1, PAGE_SIZE, grow, &run))
    return NULL;
  /* The page may hold old data: every descriptor gets a RETIRED anchor
   * before it is linked anywhere, since central_reclaim's walk may reach
   * pooled descriptors through stale page-map entries and must find
   * nothing to retire there. */
  d = (struct span *)run.page_base;
  track_internal(d, PAGE_SIZE);        /* may have held blocks */
  for (i = 0; i < DESCRIPTORS_PER_PAGE; i++) {
    d[i].kind = 0;
    d[i].capacity = 0;
    /* Atomic stores: a walk may be reading this anchor right now. */
    AO_store(&d[i].anchor.AO_val1, ANCHOR(ANCHOR_NONE, 0) | ANCHOR_RETIRED);
    AO_store(&d[i].anchor.AO_val2, 0);
  }
  AO_nop_full();
  for (i = 1; i < DESCRIPTORS_PER_PAGE; i++)
    lf_stack_push(&descriptor_pool, &d[i].link);
  return d;
}

/* A descriptor whose anchor is RETIRED and that nobody will touch again. */
static void descriptor_put(struct span *d)
{
  lf_stack_push(&descriptor_pool, &d->link);
}

static struct span *span_claim(unsigned npages, size_t align, int grow)
{
  struct span *d = descriptor_get(grow);

  if (d == NULL)
    return NULL;
  if (!chunk_alloc_pages(npages, align, grow, &d->run)) {
    descriptor_put(d);
    return NULL;
  }
  return d;
}

/* Spans carved per class, for their size (class_span_pages). */
static volatile AO_t spans_made[NUM_SIZE_CLASSES];

struct span *span_new_small(unsigned size_class, int grow, void **first_block)
{
  unsigned size = (unsigned)class_size(size_class);
  unsigned cap, pages = class_span_pages(size_class, os_mmap_enabled(),
                          (unsigned long)AO_fetch_and_add1(&spans_made[size_class]));
  struct span *d = span_claim(pages, PAGE_SIZE, grow);
  char *blocks;

  /* Last resort (grow: nothing else is left to try): a shorter span, down
   * to one block, from whatever pages are at hand.  A small static heap,
   * or one fragmented by page runs, then still serves every class its
   * pages can hold. */
  while (d == NULL && grow && pages > class_min_pages(size_class)) {
    pages = pages / 2 > class_min_pages(size_class)
                ? pages / 2 : class_min_pages(size_class);
    d = span_claim(pages, PAGE_SIZE, 0);
  }
  if (d == NULL)
    return NULL;
  blocks = d->run.page_base;
  cap = (unsigned)(((size_t)d->run.npages << PAGE_SHIFT) / size);
  AO_GPL_ASSERT(cap >= 1 && cap <= 0x3fff);
  d->kind = SPAN_SMALL;
  d->size_class = (unsigned char)size_class;
  d->capacity = (unsigned short)cap;
  d->block_size = size;
  d->inv_size = (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
  track_fresh(blocks, (size_t)d->run.npages << PAGE_SHIFT);
  /* Block 0 goes to the caller; 1..cap-1 stay uncarved: no block is
   * written before it is taken (span_take_batch), so the pages of blocks
   * never used are never touched, and a block is first written just
   * before its user writes it, not a whole span earlier. */
  d->carved = 1;
  chunk_set_owner(&d->run, d);
  /* With blocks left, the caller holds the list token and must list d. */
  anchor_reset(d, cap > 1 ? ANCHOR(ANCHOR_NONE, cap - 1) | ANCHOR_LISTED
                          : ANCHOR(ANCHOR_NONE, 0));
  *first_block = blocks;
  return d;
}

/*
 * Take the whole chain when it holds at most max blocks, without reading
 * a single block: it is handed over as it is, already NULL-ended; when it
 * holds fewer than want, uncarved blocks make up the difference.
 * Otherwise walk to the want-th block and cut the chain there.  Reading
 * no block matters when another thread just freed them: each block read
 * here would be a cache miss in a dependent chain.  Only the token holder
 * calls this, so d->carved is ours to read and write; the blocks carved
 * are ours once the CAS has taken them from the count.
 */
unsigned span_take_batch(struct span *d, unsigned want, unsigned max,
                         void **chain, enum take_result *result)
{
  AO_GPL_ASSERT(want >= 1 && want <= max);
  for (;;) {
    AO_t tag = AO_load_acquire(&d->anchor.AO_val2);
    AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);
    unsigned count = COUNT(v1), fresh, linked, k, i, left;
    void *first, *last, *rest;

    if (v1 & ANCHOR_RETIRED) {
      *result = TAKE_RETIRED;
      return 0;
    }
    if (count == 0) {
      /* Full: give up the list token; the next free will list d again. */
      if (anchor_cas(d, v1, tag, v1 & ~ANCHOR_LISTED)) {
        *result = TAKE_FULL;
        return 0;
      }
      continue;
    }
    fresh = (unsigned)d->capacity - d->carved;
    AO_GPL_ASSERT(count >= fresh);    /* nobody else takes fresh blocks */
    linked = count - fresh;
    first = block_at(d, AVAIL(v1));
    if (linked <= max) {
      /* The chain, then uncarved blocks up to want in all. */
      k = linked < want ? want - linked : 0;
      if (k > fresh)
        k = fresh;
      left = fresh - k;
      /* The frontier moves before the CAS and back if it fails: a CAS
       * that takes the last free block drops the token, and the next
       * holder (a freer relists d at once) must find carved up to date. */
      d->carved = (unsigned short)(d->capacity - left);
      if (!anchor_cas(d, v1, tag, ANCHOR(ANCHOR_NONE, left)
                                      | (left > 0 ? ANCHOR_LISTED : 0))) {
        d->carved = (unsigned short)(d->capacity - fresh);
        continue;
      }
      if (k > 0) {
        char *b = d->run.page_base
                  + (size_t)(d->capacity - fresh) * d->block_size;

        first = b;
        for (i = 1; i < k; i++, b += d->block_size)
          set_block_link(b, b + d->block_size);
        set_block_link(b, block_at(d, AVAIL(v1)));
      }
      *chain = first;
      *result = left > 0 ? TAKE_OK_MORE : TAKE_OK;
      return linked + k;
    }
    /* The links may be stale (the CAS decides), so every one is checked
     * before it is followed. */
    k = want;
    last = first;
    for (i = 1; i < k && block_in_span(d, last); i++)
      last = block_link(last);
    if (!block_in_span(d, last))
      continue;                       /* stale chain: the anchor moved */
    rest = block_link(last);          /* linked > k: not the end */
    if (!block_in_span(d, rest))
      continue;
    if (!anchor_cas(d, v1, tag,
                    ANCHOR(block_index(d, rest), count - k) | ANCHOR_LISTED))
      continue;
    set_block_link(last, NULL);       /* the k blocks are ours now */
    *chain = first;
    *result = TAKE_OK_MORE;
    return k;
  }
}

int span_put_chain(struct span *d, void *first, void *last, unsigned k)
{
  unsigned first_idx = block_index(d, first);

  for (;;) {
    AO_t tag = AO_load_acquire(&d->anchor.AO_val2);
    AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);

    AO_GPL_ASSERT(!(v1 & ANCHOR_RETIRED) && COUNT(v1) + k <= d->capacity);
    set_block_link(last, block_at(d, AVAIL(v1)));
    if (anchor_cas(d, v1, tag,
                   ANCHOR(first_idx, COUNT(v1) + k) | ANCHOR_LISTED))
      return !(v1 & ANCHOR_LISTED);
  }
}

int span_put_block(struct span *d, void *block)
{
  return span_put_chain(d, block, block, 1);
}

/* The fields span_try_retire decides on.  d may be recycled and set up
 * again by a new owner (plain stores) while they are read; the anchor CAS
 * that follows then fails, so the values are never used.  A seqlock-style
 * read, hidden from ThreadSanitizer like the link reads (track.h).  Limit:
 * volatile, not C11-atomic, reads; C11 would want atomic stores in every
 * writer of these fields and an acquire fence before the CAS (the full
 * CAS is one on every target we build for). */
struct span_view {
  struct page_run run;
  unsigned kind, capacity, block_size;
};

TRACK_RACY_READER void span_view_read(const struct span *d,
                                      struct span_view *v)
{
  const volatile struct span *vd = d;

  v->run.page_base = vd->run.page_base;
  v->run.first = vd->run.first;
  v->run.npages = vd->run.npages;
  v->kind = vd->kind;
  v->capacity = vd->capacity;
  v->block_size = vd->block_size;
}

int span_try_retire(struct span *d)
{
  for (;;) {
    AO_t tag = AO_load_acquire(&d->anchor.AO_val2);
    AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);
    struct span_view v;
    struct page_run run;

    span_view_read(d, &v);
    run = v.run;
    if ((v1 & ANCHOR_RETIRED) || v.kind != SPAN_SMALL
        || COUNT(v1) != v.capacity || v.capacity == 0)
      return 0;
    /* Every block is free.  The fields read above belong to the anchor
     * value we saw: if the descriptor was recycled since, the tag moved and
     * the CAS fails.  After it no block can be taken, so the pages are free
     * to go even though the descriptor may still be listed. */
    if (anchor_cas(d, v1, tag, (v1 & ANCHOR_LISTED) | ANCHOR_RETIRED)) {
      chunk_free_pages(&run);
      return 1;
    }
  }
}

struct span *span_descriptor_get(void)
{
  return descriptor_get(0);
}

void span_descriptor_put(struct span *d)
{
  anchor_reset(d, ANCHOR(ANCHOR_NONE, 0) | ANCHOR_RETIRED);
  descriptor_put(d);
}

void span_recycle(struct span *d)
{
  anchor_reset(d, ANCHOR(ANCHOR_NONE, 0) | ANCHOR_RETIRED);
  descriptor_put(d);
}

struct span *span_new_run(size_t size, size_t align, int grow, void **mem)
{
  size_t npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
  struct span *d;

  if (npages > MAX_RUN_PAGES
      || (d = span_claim(npages ? (unsigned)npages : 1, align, grow)) == NULL)
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
  chunk_free_pages(&d->run);
  span_recycle(d);
}


/* A snapshot's view of one run (chunk_stats): the same racy read as
 * span_try_retire's, judged without a CAS, since nothing is decided on
 * it.  RETIRED descriptors are skipped: their pages may serve as anything
 * since, descriptor pages included, whose page map still names them. */
unsigned span_stats(struct span *d, const char *page,
                    struct AO_malloc_stats *st)
{
  AO_t v1 = AO_load_acquire(&d->anchor.AO_val1);
  struct span_view v;
  size_t bytes, blocks, free_blocks;

  span_view_read(d, &v);
  if ((v1 & ANCHOR_RETIRED) || v.run.page_base != page
      || v.run.npages == 0 || v.run.npages > MAX_RUN_PAGES)
    return 0;
  bytes = (size_t)v.run.npages << PAGE_SHIFT;
  if (v.kind == SPAN_RUN) {
    st->in_use += bytes;               /* the usable size is the run */
    return v.run.npages;
  }
  blocks = (size_t)v.capacity * v.block_size;
  free_blocks = COUNT(v1);
  if (v.kind != SPAN_SMALL || blocks > bytes || free_blocks > v.capacity)
    return 0;                          /* being set up right now */
  st->in_use += (v.capacity - free_blocks) * (size_t)v.block_size;
  st->span_free += free_blocks * v.block_size;
  st->slack += bytes - blocks;
  return v.run.npages;
}

int span_memory_can_grow(void)
{
  return os_mmap_enabled();
}
