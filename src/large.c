/* SPDX-License-Identifier: MIT */
/* Large objects: page runs up to MAX_RUN_PAGES, direct mappings beyond. */
#include "internal.h"
#include "lf_stack.h"
#include "track.h"
#include "atomic_ops_malloc.h"   /* struct AO_malloc_stats */

/* Direct mappings are sized in units of the largest common OS page, so the
 * trimming in os_map_aligned() always works on page boundaries. */
#define MAP_UNIT ((size_t)64 << 10)

/*
 * Freed direct mappings are kept for reuse, so that a program cycling big
 * blocks stops paying a mapping, its page faults and its unmapping each
 * time.  The budget follows the recent peak of the bytes in use in
 * mappings (a quarter of it, at least LARGE_CACHE_BYTES), at most
 * CACHE_MAPS mappings; a decay step (large_decay) unmaps those cached for
 * LARGE_DECAY_MS and lowers the peak toward the current use.
 *
 * One stack, taken whole by a taker, which keeps the best fit and pushes
 * the rest back: a concurrent taker may then find it empty and map anew
 * (a miss, never a wait).  The stack nodes are spare span descriptors,
 * not the mappings themselves: a concurrent pop may read a node's link
 * after the node was taken, and a mapping may be unmapped, a descriptor
 * never.  Node fields: run.page_base = the mapping (its header holds the
 * size), run.first = the ms clock (truncated) when it was cached.
 */
/* Each cached mapping holds a SEGMENT_SIZE unit of address space: on
 * 32-bit targets fewer bytes, and no growth with the peak. */
#if UINTPTR_MAX > 0xffffffffu
# define LARGE_CACHE_BYTES ((size_t)64 << 20)
# define PEAK_SHARE 4                  /* budget: peak / PEAK_SHARE */
#else
# define LARGE_CACHE_BYTES ((size_t)16 << 20)
# define PEAK_SHARE ((size_t)-1)
#endif
#define CACHE_MAPS 16
#define LARGE_DECAY_MS 1000u

static AO_stack_t cache;
static volatile AO_t cache_bytes;
static volatile AO_t recent_peak;      /* bytes in use in mappings */

/* Statistics only (large_stats), changed next to the mmap and munmap
 * calls and the cache's own counter: every direct mapping alive (in use
 * or cached), and how many of them are cached.  A resize of a mapping
 * (mremap) calls live_add(new - old, 0). */
static volatile AO_t live_bytes, live_maps, cached_maps;

static void live_add(size_t bytes, AO_t maps)
{
  AO_fetch_and_add(&live_bytes, (AO_t)bytes);
  AO_fetch_and_add(&live_maps, maps);
}

static unsigned octave(size_t n)
{
  return (unsigned)(8 * sizeof(unsigned long) - 1)
         - (unsigned)__builtin_clzl((unsigned long)n);
}

static struct large_header *node_map(struct span *node)
{
  return (struct large_header *)node->run.page_base;
}

/* Bytes of mappings in use.  The two loads are not one snapshot: a
 * mapping made and cached between them is in cache_bytes but not in the
 * live_bytes read, so the difference may be "negative": then 0. */
static AO_t large_use(void)
{
  AO_t live = AO_load(&live_bytes), cached = AO_load(&cache_bytes);

  return live > cached ? live - cached : 0;
}

/* Raise the recent peak to the bytes now in use (a racy max: a lost
 * raise is redone by the next mapping). */
static void peak_note(void)
{
  AO_t use = large_use(), peak;

  while ((peak = AO_load(&recent_peak)) < use
         && !AO_compare_and_swap(&recent_peak, peak, use))
    ;
}

static size_t cache_budget(void)
{
  size_t b = (size_t)AO_load(&recent_peak) / PEAK_SHARE;

  return b > LARGE_CACHE_BYTES ? b : LARGE_CACHE_BYTES;
}

/* Mappings in tracking builds are only reused whole (large_resize says
 * why): a fit is then one that wastes at most a quarter. */
#if defined(AO_GPL_TRACK_ASAN) || defined(AO_GPL_VALGRIND)
# define CACHE_RESIZE 0
#else
# define CACHE_RESIZE 1
#endif

static int fits_whole(size_t have, size_t want)
{
  return have >= want && have - want <= want / 4;
}

/*
 * Slack: a cached mapping much larger than a request may still serve it
 * whole, its extra pages left mapped (and resident if they were) instead
 * of unmapped, so that a later, larger request of this block's next
 * owner finds them already faulted in.  A program cycling blocks of 5-25
 * MiB otherwise shrinks and regrows mappings at nearly every call and
 * faults in gigabytes.  The extra is part of the block's usable size, so
 * it is in use for the statistics.  Not in tracking builds (no resize
 * there).
 */
static volatile AO_t slack_bytes;

/* Bounds: a block holds at most 5 times its request, and all slack
 * together at most the rest of the bytes in use in mappings (what the
 * blocks were asked for, rounded): a cycling program's large blocks hold
 * at most twice their requests, on top of the cache's budget.  Slack
 * lasts as long as its block: neither decay nor AO_malloc_trim can take
 * it back from a block in use. */
static int slack_take(size_t extra, size_t want)
{
  AO_t s;

  if (!CACHE_RESIZE || extra / 4 > want)
    return 0;
  do {
    s = AO_load(&slack_bytes);
    if (2 * (s + extra) > large_use())
      return 0;
  } while (!AO_compare_and_swap_full(&slack_bytes, s, s + extra));
  return 1;
}

/* By the block's owner, before its mapping is cached, unmapped or
 * resized. */
static void slack_give_back(struct large_header *h)
{
  if (h->slack != 0) {
    AO_fetch_and_add(&slack_bytes, (AO_t)0 - (AO_t)h->slack);
    h->slack = 0;
  }
}

/*
 * Huge pages (os_advise_huge) only for mappings of a program that cycles
 * big blocks: one whose mappings are reused from the cache.  A block
 * allocated once may be used sparsely (a fiber's stack, a reserved
 * arena, a sparse calloc array), where each huge page would make 2 MiB
 * resident for a few bytes touched.  cycling: a cached mapping was
 * reused since the last decay step; a reused mapping is advised in any
 * case.
 */
static volatile AO_t cycling;

/* The cached mapping best for want bytes: the smallest that holds them,
 * else (resizable) the largest, which map_large grows; NULL if none. */
static struct large_header *cache_take(size_t want)
{
  struct span *got[CACHE_MAPS * 2], *node;
  unsigned n = 0, i, best = CACHE_MAPS * 2;
  struct large_header *h;

  while (n < CACHE_MAPS * 2 && (node = (struct span *)lf_stack_pop(&cache)))
    got[n++] = node;
  for (i = 0; i < n; i++) {
    size_t have = node_map(got[i])->map_size;

    if (!CACHE_RESIZE && !fits_whole(have, want))
      continue;
    if (best == CACHE_MAPS * 2) {
      best = i;
    } else {
      size_t b = node_map(got[best])->map_size;

      if (have >= want ? b < want || have < b : b < want && have > b)
        best = i;
    }
  }
  for (i = 0; i < n; i++)
    if (i != best)
      lf_stack_push(&cache, &got[i]->link);
  if (best == CACHE_MAPS * 2)
    return NULL;
  h = node_map(got[best]);
  AO_fetch_and_add_full(&cache_bytes, (AO_t)0 - (AO_t)h->map_size);
  AO_fetch_and_sub1(&cached_maps);
  span_descriptor_put(got[best]);
  return h;
}

static int cache_keep(struct large_header *h, uint64_t now_ms)
{
  struct span *node;
  AO_t bytes;

  do {
    bytes = AO_load(&cache_bytes);
    if (bytes + h->map_size > cache_budget()
        || AO_load(&cached_maps) >= CACHE_MAPS)
      return 0;
  } while (!AO_compare_and_swap_full(&cache_bytes, bytes,
                                     bytes + h->map_size));
  node = span_descriptor_get();
  if (node == NULL) {
    AO_fetch_and_add_full(&cache_bytes, (AO_t)0 - (AO_t)h->map_size);
    return 0;
  }
  node->run.page_base = (char *)h;
  node->run.first = (unsigned)now_ms;
  AO_fetch_and_add1(&cached_maps);
  lf_stack_push(&cache, &node->link);
  return 1;
}

/* The cached mapping goes back to the OS. */
static void cache_drop(struct span *node)
{
  struct large_header *h = node_map(node);

  AO_fetch_and_add_full(&cache_bytes, (AO_t)0 - (AO_t)h->map_size);
  AO_fetch_and_sub1(&cached_maps);
  span_descriptor_put(node);
  live_add(-h->map_size, (AO_t)-1);
  track_release(h, h->map_size);
  os_unmap(h, h->map_size);
}

/*
 * The side table: one word per SEGMENT_SIZE unit of MAPPED_UNITS, saying
 * which live mapping in use starts there, so that a pointer is classified
 * without a system call and without reading memory another thread may
 * unmap right now.  Entry: 0, none; else map_size (a multiple of MAP_UNIT,
 * so its low 16 bits are free) | log2(offset).  Two levels: a top array
 * in .bss of leaves (LEAF_UNITS words each), each mapped on first need and
 * kept for good, so a leaf found once can always be read.  Only a block's
 * owner changes its entry: set (release) before the block is handed out,
 * cleared (full barrier) before its mapping is cached, unmapped or moved.
 */
#if UINTPTR_MAX > 0xffffffffu
# define LEAF_SHIFT 12                 /* 2048 leaves of 32 KiB */
#else
# define LEAF_SHIFT 10                 /* one leaf of 4 KiB: every unit */
#endif
#define LEAF_UNITS ((uintptr_t)1 << LEAF_SHIFT)
#define LEAF_BYTES (LEAF_UNITS * sizeof(AO_t))
#define ENTRY_SHIFT_MASK ((AO_t)0x3f)  /* log2(offset) < SEGMENT_SHIFT */

static volatile AO_t table[MAPPED_UNITS / LEAF_UNITS];  /* leaf or 0 */
static volatile AO_t table_bytes;      /* leaves mapped: metadata */

/* The entry of the unit at h (one of our mappings, so below MAPPED_UNITS),
 * its leaf mapped first if create; NULL when there is no leaf. */
static volatile AO_t *entry_of(const void *h, int create)
{
  uintptr_t u = (uintptr_t)h >> SEGMENT_SHIFT;
  volatile AO_t *slot = &table[u >> LEAF_SHIFT];
  AO_t leaf = AO_load_acquire(slot);

  if (leaf == 0 && create) {
    void *fresh = os_map_table(LEAF_BYTES);

    if (fresh == NULL)
      return NULL;
    if (AO_compare_and_swap_full(slot, 0, (AO_t)fresh)) {
      AO_fetch_and_add(&table_bytes, (AO_t)LEAF_BYTES);
      leaf = (AO_t)fresh;
    } else {                           /* another thread won: use its leaf */
      os_unmap_table(fresh, LEAF_BYTES);
      leaf = AO_load_acquire(slot);
    }
  }
  return leaf == 0 ? NULL : (volatile AO_t *)leaf + (u & (LEAF_UNITS - 1));
}

/* The header's stores (and the block's) come before the entry: whoever
 * finds the entry through later synchronisation reads them.  The leaf
 * exists: entry_of(h, 1) succeeded when h was first mapped. */
static void entry_set(struct large_header *h, size_t map_size, size_t offset)
{
  AO_store_release(entry_of(h, 0), (AO_t)map_size | (AO_t)octave(offset));
}

/* Cleared before the mapping changes hands or goes away: a later lookup,
 * even of a stale pointer, then never reports it as live. */
static void entry_clear(struct large_header *h)
{
  AO_store_full(entry_of(h, 0), 0);
}

/* A fresh segment-aligned mapping for a large block, with its side-table
 * leaf in place (AO_free finds the header by masking the pointer); NULL
 * if either fails. */
static struct large_header *map_fresh(size_t map_size)
{
  struct large_header *q = os_map_aligned(map_size, SEGMENT_SIZE);

  if (q != NULL && entry_of(q, 1) == NULL) {   /* no leaf for its unit */
    os_unmap(q, map_size);
    return NULL;
  }
  return q;
}

static int grow_in_place(struct large_header *h, size_t map_size)
{
  if (!os_grow_in_place(h, h->map_size, map_size))
    return 0;
  live_add(map_size - h->map_size, 0);
  h->map_size = map_size;
  return 1;
}

/*
 * A cached mapping h (no side-table entry, nobody else's) made to hold
 * exactly map_size bytes: the tail unmapped, or the mapping grown in
 * place or moved (pages and all) to a larger fresh one, so that only the
 * difference is faulted in.  NULL if it could not be done (h unmapped).
 */
static struct large_header *cache_fit(struct large_header *h, size_t map_size)
{
  struct large_header *q;

  if (map_size < h->map_size) {
    os_unmap_tail((char *)h + map_size, h->map_size - map_size);
    live_add(map_size - h->map_size, 0);
    h->map_size = map_size;
    return h;
  }
  if (grow_in_place(h, map_size))
    return h;
  q = map_fresh(map_size);
  if (q != NULL && os_move_onto(h, h->map_size, q)) {
    live_add(map_size - q->map_size, 0);   /* the header moved */
    q->base = (char *)q;
    q->map_size = map_size;
    return q;
  }
  if (q != NULL)
    os_unmap(q, map_size);
  live_add(-h->map_size, (AO_t)-1);
  os_unmap(h, h->map_size);
  return NULL;
}

/* The user pointer sits offset bytes into the mapping: LARGE_HEADER_SIZE,
 * or the alignment asked for when larger.  It must stay inside the first
 * SEGMENT_SIZE, where masking finds the header: alignments up to
 * SEGMENT_SIZE / 2, powers of two.  A fresh mapping reads as zeros
 * (*zero = 1). */
static void *map_large(size_t size, size_t align, unsigned *zero)
{
  size_t map_size, offset = align > LARGE_HEADER_SIZE ? align
                                                      : LARGE_HEADER_SIZE;
  struct large_header *h;

  if (offset >= SEGMENT_SIZE)
    return NULL;
  if ((offset & (offset - 1)) != 0)    /* the side table keeps log2(offset) */
    offset = (size_t)2 << octave(offset);
  if (offset >= SEGMENT_SIZE
      || size > SIZE_MAX - offset - MAP_UNIT - SEGMENT_SIZE)
    return NULL;
  /* At least one byte: the user pointer must lie inside the mapping. */
  map_size = (size + (size == 0) + offset + MAP_UNIT - 1) & ~(MAP_UNIT - 1);
  h = cache_take(map_size);
  *zero = 0;
  if (h != NULL) {
    h->slack = 0;
    if (fits_whole(h->map_size, map_size)) {
      /* used as it is */
    } else if (h->map_size > map_size
               && slack_take(h->map_size - map_size, map_size)) {
      h->slack = h->map_size - map_size;   /* used whole */
    } else {
      h = cache_fit(h, map_size);          /* shrunk or grown */
      if (h != NULL)
        peak_note();
    }
    if (h != NULL) {
      AO_store(&cycling, 1);
      os_advise_huge(h, h->map_size);
    }
  }
  if (h == NULL) {
    h = map_fresh(map_size);
    if (h == NULL)
      return NULL;
    if (AO_load(&cycling))
      os_advise_huge(h, map_size);
    h->kind = REGION_LARGE;
    h->base = (char *)h;
    h->map_size = map_size;
    h->slack = 0;
    live_add(map_size, 1);
    track_fresh((char *)h + LARGE_HEADER_SIZE, map_size - LARGE_HEADER_SIZE);
    *zero = 1;
    peak_note();
  }
  h->offset = offset;
  entry_set(h, h->map_size, offset);
  return (char *)h + offset;
}

void *large_alloc(size_t size, size_t align, int grow, unsigned *zero)
{
  void *mem;
  unsigned z;
  struct span *d;

  if (zero == NULL)
    zero = &z;
  if (size <= (size_t)MAX_RUN_PAGES * PAGE_SIZE
      && align <= (size_t)MAX_RUN_PAGES * PAGE_SIZE
      && (d = span_new_run(size, align, grow, &mem)) != NULL) {
    *zero = d->run.zero;
    /* the run's tail past the request must not look usable */
    track_fresh(mem, (size_t)d->run.npages << PAGE_SHIFT);
    return mem;
  }
  return grow ? map_large(size, align, zero) : NULL;
}

/*
 * Resizing a mapping without a copy.  Only the owner of a mapping ever
 * reaches it (AO_free and AO_realloc of its pointer), and the header moves
 * with the pages, so nobody can read a stale header.  Not in the tracking
 * builds: ASan's shadow and memcheck's block records would not follow the
 * pages (the caller copies instead).
 */
void *large_resize(struct large_header *h, size_t size)
{
#if defined(AO_GPL_TRACK_ASAN) || defined(AO_GPL_VALGRIND)
  (void)h;
  (void)size;
  return NULL;
#else
  size_t offset = h->offset, map_size;
  struct large_header *q;

  if (size > SIZE_MAX - offset - MAP_UNIT - SEGMENT_SIZE)
    return NULL;
  /* Sized by its owner from now on: no longer slack. */
  slack_give_back(h);
  map_size = (size + offset + MAP_UNIT - 1) & ~(MAP_UNIT - 1);
  if (map_size <= h->map_size) {
    if (map_size < h->map_size) {
      /* the entry first: no lookup may take the tail for ours once gone */
      entry_set(h, map_size, offset);
      os_unmap_tail((char *)h + map_size, h->map_size - map_size);
      live_add(map_size - h->map_size, 0);
      h->map_size = map_size;
    }
    return (char *)h + offset;
  }
  /* A block grown by realloc is being filled: huge pages, as on reuse. */
  if (grow_in_place(h, map_size)) {
    os_advise_huge(h, map_size);
    entry_set(h, map_size, offset);
    return (char *)h + offset;
  }
  q = map_fresh(map_size);
  if (q == NULL)
    return NULL;
  entry_clear(h);
  if (!os_move_onto(h, h->map_size, q)) {
    entry_set(h, h->map_size, offset);
    os_unmap(q, map_size);
    return NULL;
  }
  live_add(map_size - q->map_size, 0);   /* the header moved with the pages */
  q->base = (char *)q;
  q->map_size = map_size;
  os_advise_huge(q, map_size);
  entry_set(q, map_size, offset);
  return (char *)q + offset;
#endif
}

/* A program that frees only page runs (no small block, no mapping)
 * reaches the decay here; a run free costs far more than the clock. */
void large_free_run(struct span *d)
{
  span_free_run(d);
  decay_tick();
}

/* Only the side table is read: p may be anybody's pointer, and the
 * mapping its unit started with may be unmapped or moved meanwhile.  Only
 * the owner of the user pointer frees or moves a mapping, so a LARGE_START
 * answer stays true for the caller if it is that owner (who may then read
 * *h); else (a probe of a pointer it does not own) it was true at the
 * time of the load. */
enum large_where large_lookup(const void *p, struct large_header **h)
{
  uintptr_t start = (uintptr_t)p & ~(uintptr_t)(SEGMENT_SIZE - 1);
  uintptr_t off = (uintptr_t)p - start;
  volatile AO_t *e;
  AO_t entry;

  if ((start >> SEGMENT_SHIFT) >= MAPPED_UNITS
      || (e = entry_of((const void *)start, 0)) == NULL
      || (entry = AO_load(e)) == 0)
    return LARGE_NONE;
  if (off == (uintptr_t)1 << (entry & ENTRY_SHIFT_MASK)) {
    *h = (struct large_header *)start;
    return LARGE_START;
  }
  return off < (entry & ~(AO_t)(MAP_UNIT - 1)) ? LARGE_INSIDE : LARGE_NONE;
}

/* Only the owner of a large mapping ever reaches it, and it is on no list
 * (the cache links descriptors): unmapping cannot pull memory from under a
 * concurrent reader. */
/* One clock read per free serves the cache's age stamp and the tick. */
void large_free_mapping(struct large_header *h)
{
  uint64_t now = os_now_ms();

  entry_clear(h);
  slack_give_back(h);
  if (!cache_keep(h, now)) {
    live_add(-h->map_size, (AO_t)-1);
    track_release(h, h->map_size);
    os_unmap(h, h->map_size);
  }
  decay_tick_at(now);
}

int large_trim(void)
{
  int released = 0;
  struct span *node;

  while ((node = (struct span *)lf_stack_pop(&cache)) != NULL) {
    cache_drop(node);
    released = 1;
  }
  return released;
}

/* Bounded: the nodes at hand at the start, each looked at once. */
void large_decay(uint64_t now_ms)
{
  struct span *got[CACHE_MAPS * 2], *node;
  unsigned n = 0, i;
  AO_t use = large_use();
  AO_t peak = AO_load(&recent_peak);

  AO_store(&cycling, 0);
  /* The peak falls by a quarter per step, never below the use. */
  if (peak > use)
    AO_compare_and_swap(&recent_peak, peak,
                        use > peak - peak / 4 ? use : peak - peak / 4);
  while (n < CACHE_MAPS * 2 && (node = (struct span *)lf_stack_pop(&cache)))
    got[n++] = node;
  for (i = 0; i < n; i++) {
    /* A mapping cached after the step read its clock (during the step,
     * by a handler, or the step's clock was stale) is young: its stamp is
     * "after" now (within a minute, so that 32-bit wrap still ages). */
    unsigned age = (unsigned)now_ms - got[i]->run.first;

    if (age >= LARGE_DECAY_MS && 0u - age >= 60000u)
      cache_drop(got[i]);
    else
      lf_stack_push(&cache, &got[i]->link);
  }
}

/* The header of each mapping in use is metadata, the rest in use (its
 * usable size); a cached mapping counts whole in large_cached; the side
 * table's leaves are metadata.  The loads are each exact when nobody
 * maps, caches or unmaps meanwhile. */
void large_stats(struct AO_malloc_stats *st)
{
  size_t cached = (size_t)AO_load(&cache_bytes);
  size_t headers = (size_t)(AO_load(&live_maps) - AO_load(&cached_maps))
                   * LARGE_HEADER_SIZE;

  st->large_cached += cached;
  st->metadata += headers + (size_t)AO_load(&table_bytes);
  st->in_use += (size_t)AO_load(&live_bytes) - cached - headers;
}
