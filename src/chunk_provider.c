/* SPDX-License-Identifier: MIT */
/* Chunk provider: page runs from the static heap and mmap'd segments. */
#include "internal.h"
#include "track.h"
#include "atomic_ops_malloc.h"   /* struct AO_malloc_stats */

#include <pthread.h>

/*
 * Regions (struct region, internal.h): the static heap and the segments.
 *
 * Page runs are claimed with one CAS on one bitmap word, so a run never
 * crosses a word (MAX_RUN_PAGES).  Claiming and releasing are lock-free: a
 * CAS fails only because another thread changed the same word.
 */
#define WORDS(pages) (((pages) + BITMAP_BITS - 1) / BITMAP_BITS)
#define STATIC_WORDS WORDS(STATIC_PAGES)
/* Bits past the end of the static heap start (and stay) in use. */
#define STATIC_TAIL_BITS (STATIC_PAGES % BITMAP_BITS)
#define STATIC_TAIL_MASK \
  (STATIC_TAIL_BITS == 0 ? (AO_t)0 : ~(((AO_t)1 << STATIC_TAIL_BITS) - 1))

static volatile AO_t static_bitmap[STATIC_WORDS] = {
  [STATIC_WORDS - 1] = STATIC_TAIL_MASK
};
static volatile AO_t static_dirty[STATIC_WORDS];
/* Decay (chunk_decay): the free dirty pages seen at the last step. */
static volatile AO_t static_seen[STATIC_WORDS];
static unsigned char static_page_class[STATIC_PAGES];
static struct span *volatile static_owner[STATIC_PAGES];

/* Everything is a constant initializer: no lazy setup, so the very first
 * AO_malloc may be interrupted anywhere by a handler that allocates. */
struct region ao_gpl_static_region = {
  REGION_STATIC, STATIC_PAGES, ao_gpl_static_heap, static_page_class, NULL,
  static_bitmap, static_dirty, static_owner
};

/* struct large_header starts with its kind, as struct region does. */
typedef char large_header_layout_check[
    (offsetof(struct large_header, kind) == offsetof(struct region, kind)
     && sizeof(struct large_header) <= LARGE_HEADER_SIZE) ? 1 : -1];

/* Insert-only list of segments, newest first (a struct region *). */
static volatile AO_t segments;

/* Layout of a segment: header, bitmap, page map, then pages. */
struct segment_layout {
  struct region header;
  volatile AO_t bitmap[WORDS(SEGMENT_PAGES)];
  volatile AO_t dirty[WORDS(SEGMENT_PAGES)];
  volatile AO_t seen[WORDS(SEGMENT_PAGES)];  /* as static_seen */
  unsigned char page_class[SEGMENT_PAGES];
  /* On its own pages, so a trim can drop it while the segment is empty. */
  struct span *volatile owner[SEGMENT_PAGES]
      __attribute__((__aligned__(PAGE_SIZE)));
};
#define SEGMENT_META_PAGES \
  ((sizeof(struct segment_layout) + PAGE_SIZE - 1) / PAGE_SIZE)

static AO_t run_mask(unsigned npages)
{
  return npages >= BITMAP_BITS ? ~(AO_t)0 : ((AO_t)1 << npages) - 1;
}

/* Lowest bit position of npages consecutive zero bits in v, or -1. */
static int find_free_run(AO_t v, unsigned npages)
{
  AO_t mask = run_mask(npages);
  unsigned pos = 0;

  while (pos + npages <= BITMAP_BITS) {
    AO_t busy = v & (mask << pos);

    if (busy == 0)
      return (int)pos;
    /* Skip past the highest busy page inside the window. */
    pos = (unsigned)(8 * sizeof(unsigned long) - __builtin_clzl(busy));
  }
  return -1;
}

/* As find_free_run, for a run whose address must be a multiple of align
 * (a power of two > PAGE_SIZE); word_addr: the address of bit 0's page.
 * Regions are only page-aligned (the static heap), so the first aligned
 * bit is computed from the address, not assumed to be bit 0. */
static int find_free_run_aligned(AO_t v, unsigned npages, uintptr_t word_addr,
                                 size_t align)
{
  AO_t mask = run_mask(npages);
  unsigned step = (unsigned)(align >> PAGE_SHIFT);
  unsigned pos = (unsigned)(((align - (word_addr & (align - 1)))
                             & (align - 1)) >> PAGE_SHIFT);

  for (; pos + npages <= BITMAP_BITS; pos += step)
    if ((v & (mask << pos)) == 0)
      return (int)pos;
  return -1;
}

/* 1 when no page of the run was written since it was last known zero.  A
 * page is freed only by chunk_free_pages, which sets its dirty bit before
 * its bitmap bit goes; a trim clears the dirty bit only after madvise
 * dropped the page, before it gives the page back.  So a page we just
 * claimed whose dirty bit is clear was never handed out since the region
 * was mapped (or the static heap, in .bss, loaded), or was dropped since:
 * it reads as zeros.  Nobody else changes the run's dirty bits now. */
static unsigned run_is_zero(const struct region *r, const struct page_run *run)
{
  AO_t bits = run_mask(run->npages) << (run->first % BITMAP_BITS);

  return (AO_load_acquire(&r->dirty[run->first / BITMAP_BITS]) & bits) == 0;
}

static int region_claim(struct region *r, unsigned npages, size_t align,
                        struct page_run *out)
{
  unsigned w, words = WORDS(r->npages);

  for (w = 0; w < words; w++) {
    for (;;) {
      AO_t v = AO_load(&r->bitmap[w]);
      int pos = align <= PAGE_SIZE
          ? find_free_run(v, npages)
          : find_free_run_aligned(v, npages, (uintptr_t)r->base
                                  + ((size_t)w * BITMAP_BITS << PAGE_SHIFT),
                                  align);

      if (pos < 0)
        break;
      if (AO_compare_and_swap_full(&r->bitmap[w], v,
                                   v | (run_mask(npages) << pos))) {
        out->first = w * (unsigned)BITMAP_BITS + (unsigned)pos;
        out->npages = npages;
        out->page_base = r->base + ((size_t)out->first << PAGE_SHIFT);
        out->zero = run_is_zero(r, out);
        return 1;
      }
    }
  }
  return 0;
}

/* Map and publish one more segment.  Racing threads may each add one;
 * that costs address space, never correctness. */
static AO_GPL_NOINLINE int segment_add(void)
{
  struct segment_layout *s = os_map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
  struct region *head;
  unsigned meta = (unsigned)SEGMENT_META_PAGES, i;

  if (s == NULL)
    return 0;
  s->header.kind = REGION_SEGMENT;
  s->header.npages = (unsigned)SEGMENT_PAGES;
  s->header.base = (char *)s;
  s->header.bitmap = s->bitmap;
  s->header.dirty = s->dirty;
  s->header.page_class = s->page_class;
  s->header.owner = s->owner;
  for (i = 0; i < meta; i++)     /* the metadata pages are never handed out */
    s->bitmap[i / BITMAP_BITS] |= (AO_t)1 << (i % BITMAP_BITS);
  os_mark_segment(s);            /* before any page of it is handed out */
  do {
    head = (struct region *)AO_load(&segments);
    s->header.next = head;
  } while (!AO_compare_and_swap_full(&segments, (AO_t)head,
                                     (AO_t)&s->header));
  return 1;
}

/*
 * Trim windows.  A trim claims free pages in the bitmap, drops their memory
 * and releases them (word_trim): in between, those free pages look in use.
 * An allocator that found nothing must not fail (nor map a segment) on
 * their account, so it looks whether a window overlapped its scan: one was
 * open at the end (trim_open), or one closed since the scan began
 * (trim_closed moved).  Each window raises trim_open before its claim CAS,
 * and after its release CAS bumps trim_closed, then lowers trim_open (all
 * full barriers), so no window overlapping a scan escapes both tests.
 * Then the allocator waits and scans again.
 *
 * Windows are short (one bitmap word, one madvise call) and run with every
 * signal blocked (os_without_signals): a handler never interrupts its own
 * thread's window, so it never waits for it.  The wait is bounded
 * (TRIM_WAITS pauses, about 50 ms): only a trimmer stopped for
 * good inside a window (it cannot be parked there by a signal) can turn an
 * allocation that needs exactly those pages into a NULL or a new segment,
 * after that delay, each time.  A fork child forgets the windows of the
 * threads it does not have (trim_atfork_child); their pages stay reserved.
 * A child made without the fork handlers (_Fork) keeps counting them open:
 * there every allocation that finds no pages waits that bound first.
 */
static volatile AO_t trim_open, trim_closed;
#define TRIM_WAITS 1024

static void trim_window_open(void)
{
  AO_fetch_and_add1_full(&trim_open);
}

static void trim_window_close(void)
{
  AO_fetch_and_add1_full(&trim_closed);
  AO_fetch_and_sub1_full(&trim_open);
}

/* A fork child has only the forking thread, which was in no window (a
 * window blocks signals, so no handler forked from inside one): windows
 * still counted open belong to threads the child does not have, and would
 * make every exhausted allocation of the child wait in vain.  Their pages
 * stay claimed in the child (up to one bitmap word, or for a page-map
 * window WORDS_PER_OWNER_PAGE words, per window). */
static void trim_atfork_child(void)
{
  AO_store_release(&trim_open, 0);
}

__attribute__((__constructor__)) static void trim_init(void)
{
  pthread_atfork(NULL, NULL, trim_atfork_child);
}

/* 1 when a trim window overlapped the scan that began at closed. */
static int trim_overlapped(AO_t closed)
{
  /* trim_open first, with acquire: if it reads a window's decrement, the
   * trim_closed load after it sees that window's increment, which came
   * before (a plain load pair may be reordered on aarch64). */
  AO_nop_full();
  return AO_load_acquire(&trim_open) != 0
         || AO_load(&trim_closed) != closed;
}

int chunk_alloc_pages(unsigned npages, size_t align, int grow,
                      struct page_run *out)
{
  unsigned waits = 0;

  AO_GPL_ASSERT(npages >= 1 && npages <= MAX_RUN_PAGES);
  for (;;) {
    AO_t closed = AO_load_acquire(&trim_closed);
    struct region *r;

    if (region_claim(&ao_gpl_static_region, npages, align, out))
      return 1;
    for (r = (struct region *)AO_load_acquire(&segments); r != NULL;
         r = r->next)
      if (region_claim(r, npages, align, out))
        return 1;
    /* Pages hidden by a trim come back within one madvise call.  Only
     * the last resort (grow) waits: an allocation makes few such calls,
     * so a trimmer stopped inside its window delays it a bounded time. */
    if (grow && waits < TRIM_WAITS && trim_overlapped(closed)) {
      os_pause(waits++);
      continue;
    }
    /* Every region is full: grow, or report exhaustion.  Retrying after a
     * successful segment_add is lock-free: if others took the new pages,
     * they made progress. */
    if (!grow || !segment_add())
      return 0;
  }
}

void chunk_free_pages(const struct page_run *run)
{
  struct region *r = region_of(run->page_base);
  volatile AO_t *word = &r->bitmap[run->first / BITMAP_BITS];
  AO_t bits = run_mask(run->npages) << (run->first % BITMAP_BITS);
  AO_t v;

  volatile AO_t *dirty = &r->dirty[run->first / BITMAP_BITS];

  /* Dirty first: a trim must never miss a page that is free. */
  do
    v = AO_load(dirty);
  while ((v & bits) != bits && !AO_compare_and_swap_full(dirty, v, v | bits));
  do {
    v = AO_load(word);
    AO_GPL_ASSERT((v & bits) == bits);
  } while (!AO_compare_and_swap_full(word, v, v & ~bits));
}

struct trim_job {
  struct region *r;
  unsigned w;                    /* bitmap word, or owner-map page group */
  AO_t mask;                     /* word_trim: only these free dirty pages */
};

/* Claim the free dirty pages of one bitmap word, release their memory,
 * hand them back.  Claiming first means no allocator can get a page while
 * its memory is being dropped.  A trim window (see above): runs with
 * signals blocked. */
static int word_trim_window(void *arg)
{
  const struct trim_job *job = arg;
  struct region *r = job->r;
  unsigned w = job->w;
  volatile AO_t *word = &r->bitmap[w], *dirty = &r->dirty[w];
  AO_t v, claim, d, cleaned = 0;
  unsigned pos = 0;
  int released = 0;

  trim_window_open();
  do {
    v = AO_load(word);
    claim = AO_load(dirty) & ~v & job->mask;
    if (claim == 0) {
      trim_window_close();
      return 0;
    }
  } while (!AO_compare_and_swap_full(word, v, v | claim));
  /* Only pages wholly inside what the OS really dropped become clean:
   * run_is_zero trusts a clear dirty bit. */
  while (pos < BITMAP_BITS) {
    struct os_range z;
    unsigned end, k;

    if (!((claim >> pos) & 1)) {
      pos++;
      continue;
    }
    for (end = pos; end < BITMAP_BITS && ((claim >> end) & 1); end++)
      ;
    released |= os_release(r->base + ((size_t)(w * BITMAP_BITS + pos)
                                      << PAGE_SHIFT),
                           (size_t)(end - pos) << PAGE_SHIFT, &z);
    for (k = pos; k < end; k++) {
      uintptr_t a = (uintptr_t)r->base
                    + ((uintptr_t)(w * BITMAP_BITS + k) << PAGE_SHIFT);

      if (a >= z.start && a + PAGE_SIZE <= z.end)
        cleaned |= (AO_t)1 << k;
    }
    pos = end;
  }
  do
    d = AO_load(dirty);
  while (!AO_compare_and_swap_full(dirty, d, d & ~cleaned));
  do
    v = AO_load(word);
  while (!AO_compare_and_swap_full(word, v, v & ~claim));
  trim_window_close();
  return released;
}

static int word_trim(struct region *r, unsigned w, AO_t mask)
{
  struct trim_job job;

  /* Blocking signals costs two system calls: only for dirty free pages. */
  if ((AO_load(&r->dirty[w]) & ~AO_load(&r->bitmap[w]) & mask) == 0)
    return 0;
  job.r = r;
  job.w = w;
  job.mask = mask;
  return os_without_signals(word_trim_window, &job);
}

/* The bits of word w that are metadata pages of a segment (always set). */
static AO_t meta_bits(unsigned w)
{
  unsigned meta = (unsigned)SEGMENT_META_PAGES, lo = w * (unsigned)BITMAP_BITS;

  if (meta <= lo)
    return 0;
  return meta - lo >= BITMAP_BITS ? ~(AO_t)0 : ((AO_t)1 << (meta - lo)) - 1;
}

/* For each page of the page map whose pages are all free: claim those
 * pages (so nobody can write that part of the page map meanwhile), drop
 * the page map page's memory, release the claim. */
#define OWNERS_PER_PAGE (PAGE_SIZE / sizeof(struct span *))
#define WORDS_PER_OWNER_PAGE (OWNERS_PER_PAGE / BITMAP_BITS)

/* One page group; a trim window (see above). */
static int owner_page_trim_window(void *arg)
{
  const struct trim_job *job = arg;
  struct segment_layout *s = (struct segment_layout *)job->r;
  unsigned w, claimed, first = job->w * (unsigned)WORDS_PER_OWNER_PAGE;
  int released = 0;

  trim_window_open();
  for (claimed = 0; claimed < WORDS_PER_OWNER_PAGE; claimed++) {
    w = first + claimed;
    if (!AO_compare_and_swap_full(&s->bitmap[w], meta_bits(w), ~(AO_t)0))
      break;
  }
  if (claimed == WORDS_PER_OWNER_PAGE)
    released = os_release((void *)&s->owner[job->w * OWNERS_PER_PAGE],
                          PAGE_SIZE, NULL);
  for (w = first; w < first + claimed; w++)
    AO_store_release(&s->bitmap[w], meta_bits(w));
  AO_nop_full();
  trim_window_close();
  return released;
}

static int segment_trim_owner_map(struct segment_layout *s)
{
  unsigned g, w, groups = (unsigned)(SEGMENT_PAGES / OWNERS_PER_PAGE);
  int released = 0;
  struct trim_job job;

  job.r = &s->header;
  job.mask = 0;
  for (g = 0; g < groups; g++) {
    unsigned first = g * (unsigned)WORDS_PER_OWNER_PAGE;

    /* A window only for a group that looks wholly free. */
    for (w = first; w < first + WORDS_PER_OWNER_PAGE; w++)
      if (AO_load(&s->bitmap[w]) != meta_bits(w))
        break;
    if (w < first + WORDS_PER_OWNER_PAGE)
      continue;
    job.w = g;
    released |= os_without_signals(owner_page_trim_window, &job);
  }
  return released;
}

int chunk_trim(void)
{
  struct region *r = &ao_gpl_static_region;
  int released = 0;

  while (r != NULL) {
    unsigned w, words = WORDS(r->npages);

    for (w = 0; w < words; w++)
      released |= word_trim(r, w, ~(AO_t)0);
    if (r->kind == REGION_SEGMENT)
      released |= segment_trim_owner_map((struct segment_layout *)r);
    r = r == &ao_gpl_static_region ? (struct region *)AO_load_acquire(&segments)
                            : r->next;
  }
  return released;
}

/*
 * A decay step (decay.c): release the pages that are free and dirty now
 * and were so at the previous step too, i.e. free for a step period at
 * least (or reused and freed again meanwhile: an approximation that only
 * releases a little early).  Each release is a trim window, as in
 * chunk_trim.  seen[] is a hint: steps do not overlap in the usual case,
 * and when they do (a stepper stalled past a period), a lost store only
 * delays or hastens one release.
 */
void chunk_decay(void)
{
  struct region *r = &ao_gpl_static_region;

  while (r != NULL) {
    unsigned w, words = WORDS(r->npages);
    volatile AO_t *seen = r == &ao_gpl_static_region
        ? static_seen : ((struct segment_layout *)r)->seen;

    for (w = 0; w < words; w++) {
      AO_t idle = AO_load(&r->dirty[w]) & ~AO_load(&r->bitmap[w]);
      AO_t old = AO_load(&seen[w]);

      if ((idle | old) == 0)
        continue;
      /* Those released now need no memory; the others start to age. */
      AO_store(&seen[w], idle & ~old);
      if ((idle & old) != 0)
        word_trim(r, w, idle & old);
    }
    /* The page maps (0.2% of a segment) are left to AO_malloc_trim. */
    r = r == &ao_gpl_static_region ? (struct region *)AO_load_acquire(&segments)
                                   : r->next;
  }
}

/*
 * The page map walk of central_reclaim: fn(d) for the owner d of every
 * in-use page where d's run starts; the sum of the results.  Free words
 * cost one load.  The owner read may be stale (a page map entry outlives
 * its span, and the descriptor may serve another span since): fn gets a
 * descriptor, which is always safe to read, and must validate by itself
 * (span_try_retire decides by a CAS on the anchor).  Lock-free: a plain
 * walk, bounded by the pages of the regions.
 */
int chunk_visit_runs(int (*fn)(struct span *))
{
  struct region *r = &ao_gpl_static_region;
  int sum = 0;

  while (r != NULL) {
    unsigned w, words = WORDS(r->npages);

    for (w = 0; w < words; w++) {
      AO_t v = AO_load(&r->bitmap[w]);

      while (v != 0) {
        unsigned p = w * (unsigned)BITMAP_BITS
                     + (unsigned)__builtin_ctzl((unsigned long)v);
        struct span *d;

        v &= v - 1;
        if (p >= r->npages)
          break;
        /* Both reads race with the pages' next owner (chunk_set_owner, and
         * region_claim filling a recycled descriptor's run): relaxed loads
         * hidden from TSan (track.h), fn's CAS validates them. */
        d = (struct span *)racy_word_load((const volatile AO_t *)&r->owner[p]);
        if (d != NULL
            && (char *)racy_word_load((const volatile AO_t *)&d->run.page_base)
                   == r->base + ((size_t)p << PAGE_SHIFT))
          sum += fn(d);
      }
    }
    r = r == &ao_gpl_static_region ? (struct region *)AO_load_acquire(&segments)
                                   : r->next;
  }
  return sum;
}

void chunk_set_owner(const struct page_run *run, struct span *d)
{
  struct region *r = region_of(run->page_base);
  unsigned i;

  unsigned char c = d->kind == SPAN_SMALL ? d->size_class : PAGE_CLASS_NONE;

  for (i = 0; i < run->npages; i++) {
    r->owner[run->first + i] = d;
    r->page_class[run->first + i] = c;
  }
}


/*
 * The page side of AO_malloc_stats: every page of every region is free
 * (free_pages; not dirty = released or never touched: free_released), in
 * a live run (span_stats accounts for the whole run), or other metadata:
 * the segment headers, bitmaps and page maps, and pages carved into span
 * descriptors, which have no live owner.  Quiescent, that sums to the
 * regions' size exactly.  Concurrently a run may be counted while it is
 * being claimed or given back (as metadata, or as a span whose anchor is
 * not set yet): approximate, as documented.  Loads only, like
 * chunk_visit_runs: nothing is claimed, so nobody waits for a snapshot.
 */
void chunk_stats(struct AO_malloc_stats *st)
{
  struct region *r = &ao_gpl_static_region;

  while (r != NULL) {
    unsigned w, words = WORDS(r->npages);

    for (w = 0; w < words; w++) {
      unsigned first = w * (unsigned)BITMAP_BITS;
      AO_t pages = run_mask(r->npages - first);   /* static tail: not ours */
      AO_t v = AO_load(&r->bitmap[w]) & pages;
      AO_t idle = ~v & pages;

      st->free_pages += (size_t)__builtin_popcountl((unsigned long)idle)
                        << PAGE_SHIFT;
      idle &= ~AO_load(&r->dirty[w]);
      st->free_released += (size_t)__builtin_popcountl((unsigned long)idle)
                           << PAGE_SHIFT;
      while (v != 0) {
        unsigned b = (unsigned)__builtin_ctzl((unsigned long)v), n = 0;
        struct span *d = (struct span *)racy_word_load(
            (const volatile AO_t *)&r->owner[first + b]);

        if (d != NULL)
          n = span_stats(d, r->base + ((size_t)(first + b) << PAGE_SHIFT), st);
        if (n == 0) {
          st->metadata += PAGE_SIZE;
          v &= v - 1;
        } else {
          v &= ~(run_mask(n) << b);    /* a run never crosses a word */
        }
      }
    }
    r = r == &ao_gpl_static_region ? (struct region *)AO_load_acquire(&segments)
                                   : r->next;
  }
}
