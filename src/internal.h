/* SPDX-License-Identifier: MIT */
/* Cross-file declarations of the allocator layers, grouped by owning file. */
#ifndef AO_GPL_INTERNAL_H
#define AO_GPL_INTERNAL_H

#include "symbols.h"     /* the ao_gpl_ link names of internal globals */

#ifdef HAVE_CONFIG_H
# include "config.h"
#endif

#include <stddef.h>
#include <stdint.h>

#include "atomic_ops_stack.h"

/* Every internal symbol is hidden, declarations included, so that internal
 * data is reached PC-relative, not through the GOT. */
#pragma GCC visibility push(hidden)

/* White-box tests compile the sources with their own heap size. */
#ifdef AO_GPL_TEST_STATIC_HEAP_SIZE
# undef AO_GPL_STATIC_HEAP_SIZE
# define AO_GPL_STATIC_HEAP_SIZE AO_GPL_TEST_STATIC_HEAP_SIZE
#endif
#ifndef AO_GPL_STATIC_HEAP_SIZE
# define AO_GPL_STATIC_HEAP_SIZE (2u << 20)
#endif
#ifndef AO_GPL_LOCK_FREE
# define AO_GPL_LOCK_FREE 1
#endif

#if !defined(AO_HAVE_compare_double_and_swap_double_full)
# error "the allocator needs a double-width CAS (x86_64 with -mcx16, aarch64, i386...)"
#endif

#define AO_GPL_INLINE static inline __attribute__((__always_inline__))
#define AO_GPL_NOINLINE __attribute__((__noinline__))
#define AO_GPL_NORETURN __attribute__((__noreturn__, __cold__, __noinline__))
#define AO_GPL_LIKELY(x) __builtin_expect(!!(x), 1)
#define AO_GPL_UNLIKELY(x) __builtin_expect(!!(x), 0)

#ifdef AO_GPL_DEBUG
# include <assert.h>
# define AO_GPL_ASSERT(x) assert(x)
#else
# define AO_GPL_ASSERT(x) ((void)0)
#endif

/* Geometry.  A page is the unit of the chunk provider, not the OS page. */
#define PAGE_SHIFT 12
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)
/* mmap'd segments, and the alignment of every direct large mapping (so
 * that AO_free finds a header by masking): 32 MiB; 4 MiB on 32-bit
 * targets, whose address space would hold only 128 units of 32 MiB and
 * so only that many large objects. */
#if UINTPTR_MAX > 0xffffffffu
# define SEGMENT_SHIFT 25
#else
# define SEGMENT_SHIFT 22
#endif
#define SEGMENT_SIZE ((size_t)1 << SEGMENT_SHIFT)
#define SEGMENT_PAGES (SEGMENT_SIZE / PAGE_SIZE)
#define BITMAP_BITS (8 * sizeof(AO_t))   /* pages claimable by one CAS */
#define MAX_RUN_PAGES BITMAP_BITS        /* so a page run fits one word */
#define STATIC_PAGES (AO_GPL_STATIC_HEAP_SIZE / PAGE_SIZE)
#define ALIGNMENT 16

/* ---- os_memory.c: the only file that makes system calls. ---- */
extern char ao_gpl_static_heap[];      /* AO_GPL_STATIC_HEAP_SIZE bytes */
/* SEGMENT_SIZE units of the address space covered by the mapping bitmap:
 * 48-bit user addresses (x86_64, aarch64) on 64-bit targets; mappings
 * beyond it are not used. */
#if UINTPTR_MAX > 0xffffffffu
# define MAPPED_UNITS ((uintptr_t)1 << (48 - SEGMENT_SHIFT))
#else
# define MAPPED_UNITS ((uintptr_t)1 << (32 - SEGMENT_SHIFT))
#endif
extern volatile AO_t ao_gpl_mapped_units[];
extern volatile AO_t ao_gpl_segment_units[];
AO_GPL_INLINE int os_unit_bit(volatile AO_t *bitmap, const void *p)
{
  uintptr_t u = (uintptr_t)p >> SEGMENT_SHIFT;

  return u < MAPPED_UNITS
         && ((AO_load(&bitmap[u / BITMAP_BITS]) >> (u % BITMAP_BITS)) & 1);
}
/* 1 if one of our SEGMENT_SIZE-aligned mappings starts in p's unit.  The
 * word is shared with units that other threads may be mapping right now:
 * an atomic load; relaxed, since the caller got p from AO_malloc through
 * its own synchronisation, after the bit was set.  For a pointer that is
 * not ours the bit may be cleared, and the mapping gone, right after the
 * test: nothing at the unit's start may be read on its word alone. */
AO_GPL_INLINE int os_unit_is_mapped(const void *p)
{
  return os_unit_bit(ao_gpl_mapped_units, p);
}
/* 1 if p's unit holds one of our segments.  Segments are never unmapped
 * and the bit is never cleared, so the segment header is safe to read
 * whatever p is (relaxed load: see os_unit_is_mapped). */
AO_GPL_INLINE int os_unit_is_segment(const void *p)
{
  return os_unit_bit(ao_gpl_segment_units, p);
}
/* Record the segment mapped at p (header initialised) for good. */
void os_mark_segment(void *p);
void os_enable_mmap(void);
int os_mmap_enabled(void);
/* A fresh zeroed mapping of size bytes aligned to align (a power of two,
 * >= the OS page size), or NULL; always NULL before os_enable_mmap().
 * With align >= SEGMENT_SIZE the mapping is recorded for
 * os_unit_is_mapped() until os_unmap() of its start. */
void *os_map_aligned(size_t size, size_t align);
void os_unmap(void *p, size_t size);
/* Unmap [p, p + size), the tail of one of our mappings. */
void os_unmap_tail(void *p, size_t size);
/* Grow the mapping p (old_size bytes) to new_size where it is, or 0. */
int os_grow_in_place(void *p, size_t old_size, size_t new_size);
/* A hint that p (size bytes, SEGMENT_SIZE-aligned) past its first
 * HUGE_PAGE_SIZE is best backed by huge pages; nothing for mappings under
 * HUGE_ADVICE_MIN. */
#define HUGE_PAGE_SIZE ((size_t)2 << 20)
#define HUGE_ADVICE_MIN (2 * HUGE_PAGE_SIZE)
void os_advise_huge(void *p, size_t size);
/* Move the SEGMENT_SIZE-aligned mapping p (old_size bytes) onto the start
 * of q, a fresh os_map_aligned(, SEGMENT_SIZE) mapping: 1, or 0 with p
 * untouched (mapped-units bits kept right either way). */
int os_move_onto(void *p, size_t old_size, void *q);
/* Zeroed pages for a table of ours, mapped for good (or NULL), and the
 * unmap of one that turned out not to be needed. */
void *os_map_table(size_t size);
void os_unmap_table(void *p, size_t size);
/* A range of addresses [start, end); empty when start == end. */
struct os_range {
  uintptr_t start, end;
};
/* Drop the physical memory of [p, p + size) (whole OS pages inside it);
 * the range stays mapped.  1 if anything went; *dropped (unless NULL) is
 * then the range that now reads back as zeros, else empty. */
int os_release(void *p, size_t size, struct os_range *dropped);
/* Thread identities for the cache registry (thread_cache.c); errno kept. */
long os_getpid(void);
long os_gettid(void);
/* 1 only if no task with this tid exists any more (ESRCH). */
int os_thread_gone(long tid);
/* fn(arg) with every signal blocked on the calling thread; its result. */
int os_without_signals(int (*fn)(void *), void *arg);
/* Give the CPU away briefly; round counts the calls of one wait. */
void os_pause(unsigned round);
/* CLOCK_MONOTONIC in ms (async-signal-safe; errno kept). */
uint64_t os_now_ms(void);

/* ---- chunk_provider.c: page runs from the static heap and segments. ---- */
struct span;

/* Kinds of memory a pointer can belong to, stored first in every header
 * found by masking an address (segment or direct large mapping). */
enum region_kind { REGION_STATIC = 1, REGION_SEGMENT = 2, REGION_LARGE = 3 };

/* The page-class byte of pages that hold no small blocks. */
#define PAGE_CLASS_NONE 0xff
/* Not page-class bytes: page_class_of()'s verdicts on a foreign pointer,
 * and on a pointer in a unit where a direct large mapping starts (or did
 * a moment ago: large_lookup() tells). */
#define PAGE_CLASS_FOREIGN 0xfe
#define PAGE_CLASS_LARGE 0xfd

/* Header at the start of a directly mapped large object.  Only its owner
 * (the holder of the user pointer) reads it directly: anyone else goes
 * through large_lookup(), which reads the side table instead (large.c),
 * since the owner may unmap or move it any time. */
struct large_header {
  unsigned kind;                 /* REGION_LARGE; first, as in a region */
  unsigned unused;
  char *base;                    /* the header itself */
  size_t map_size;               /* bytes mapped, header included */
  size_t offset;                 /* of the user pointer, >= the header's */
  size_t slack;                  /* bytes counted in large.c's slack_bytes */
};
#define LARGE_HEADER_SIZE 64     /* keeps the user pointer 16-aligned */

/* A claimed run of pages; the region is found again from page_base. */
struct page_run {
  char *page_base;               /* first byte of the run */
  unsigned first;                /* page index in its region */
  unsigned npages;
  unsigned zero;                 /* 1: every page read as zeros when claimed */
};

/* Claim npages contiguous pages (1..MAX_RUN_PAGES) from the static heap,
 * then from segments, starting at a multiple of align (a power of two;
 * <= PAGE_SIZE: any page); with grow != 0 map a new segment when all are
 * full (only once mmap is enabled).  0 when no pages could be had. */
int chunk_alloc_pages(unsigned npages, size_t align, int grow,
                      struct page_run *out);
void chunk_free_pages(const struct page_run *run);
/* Record d as the owner of every page of run (the page map). */
void chunk_set_owner(const struct page_run *run, struct span *d);
/* fn(d) for the owner of each in-use run start (maybe stale: fn checks);
 * the sum of the results. */
int chunk_visit_runs(int (*fn)(struct span *));

/*
 * A region is a page-aligned range managed by a bitmap (1 = page in use)
 * and a page map (the span owning each page): the static heap, and after
 * AO_malloc_enable_mmap() any number of SEGMENT_SIZE-aligned segments whose
 * first pages hold their own region header.  Regions are never unmapped, so
 * metadata and pages can always be read, even through a stale pointer:
 * that is what makes the lock-free layers above safe.  Declared here so
 * that the page-map lookup of AO_free is inline.
 */
struct region {
  unsigned kind;                 /* enum region_kind; must be first */
  unsigned npages;               /* pages covered, metadata included */
  char *base;                    /* address of page 0 */
  /* Size class of the small blocks on each page, else PAGE_CLASS_NONE:
   * AO_free's fast path needs nothing else. */
  unsigned char *page_class;
  struct region *next;           /* segment list: insert-only */
  volatile AO_t *bitmap;         /* npages bits; 1 = in use */
  volatile AO_t *dirty;          /* 1 = released since the last trim */
  struct span *volatile *owner;  /* page map: owning span per page */
};

extern struct region ao_gpl_static_region;

AO_GPL_INLINE struct region *region_of(const void *p)
{
  uintptr_t a = (uintptr_t)p;

  if (a - (uintptr_t)ao_gpl_static_heap < AO_GPL_STATIC_HEAP_SIZE)
    return &ao_gpl_static_region;
  return (struct region *)(a & ~(uintptr_t)(SEGMENT_SIZE - 1));
}

/* The size class of the small block p; PAGE_CLASS_NONE for other pages
 * of the static heap and segments; PAGE_CLASS_LARGE in a unit where one of
 * our direct mappings starts; PAGE_CLASS_FOREIGN when p cannot have come
 * from AO_malloc: misaligned, or outside the static heap and every
 * mapping.  Only a region header is ever read (regions are never
 * unmapped): a large mapping's unit may hold foreign memory too, and the
 * mapping may go away under a foreign pointer at any moment. */
AO_GPL_INLINE unsigned page_class_of(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  uintptr_t off = a - (uintptr_t)ao_gpl_static_heap;

  if (AO_GPL_UNLIKELY(a & (ALIGNMENT - 1)))
    return PAGE_CLASS_FOREIGN;
  /* Each region's own return, so that the hot one needs no region
   * pointer: the static heap's base is a link-time constant, and a
   * segment's base is the segment itself (its header is at page 0). */
  if (off < AO_GPL_STATIC_HEAP_SIZE)
    return ao_gpl_static_region.page_class[off >> PAGE_SHIFT];
  if (AO_GPL_LIKELY(os_unit_is_segment(p)))
    return ((struct region *)(a & ~(uintptr_t)(SEGMENT_SIZE - 1)))
        ->page_class[(a & (SEGMENT_SIZE - 1)) >> PAGE_SHIFT];
  return os_unit_is_mapped(p) ? PAGE_CLASS_LARGE : PAGE_CLASS_FOREIGN;
}

/* The owner of the page holding p, which lies in the static heap or a
 * segment (page_class_of(p) < PAGE_CLASS_LARGE); NULL if none. */
AO_GPL_INLINE struct span *chunk_owner(const void *p)
{
  struct region *r = region_of(p);

  return r->owner[((uintptr_t)p - (uintptr_t)r->base) >> PAGE_SHIFT];
}
/* Release the physical memory of free pages that were used since the last
 * trim; 1 if any was released. */
int chunk_trim(void);
/* A decay step: release the free dirty pages that were already free and
 * dirty at the previous step (so free for one step period at least). */
void chunk_decay(void);

/* ---- span.c: span descriptors, anchors and carving. ---- */
enum span_kind { SPAN_SMALL = 1, SPAN_RUN = 2 };

/*
 * A span descriptor.  Descriptors are never freed (they come from static
 * memory or from pages that stay metadata for good, and are recycled
 * through a pool), so a stale pointer to one is always safe to read: every
 * decision is validated by a CAS on the anchor, whose tag grows on every
 * change, across reuses.
 *
 * The anchor is a double word updated only by CAS:
 *   val1: bits 0-15 avail (first free block index, ANCHOR_NONE if none;
 *         the chain goes on through pointers in the blocks' first word),
 *         bits 16-29 count (free blocks), bits 30-31 the flags below;
 *   val2: tag, incremented by every successful CAS.
 * Invariants:
 *   - count == blocks on the avail chain + (capacity - carved): blocks
 *     past the carved frontier are free but untouched (lazy carving: a
 *     span's pages are written only as its blocks are handed out);
 *   - LISTED is set iff exactly one party holds the span's list token: the
 *     span is on its class list, or was popped by an allocator that will
 *     either push it back or clear LISTED.  Only the holder pushes it;
 *   - a span with count == 0 is never LISTED except transiently by a popper;
 *     so every span with a free block is LISTED;
 *   - RETIRED is set by a CAS that sees count == capacity (every block free),
 *     by anyone; no block can be taken after it, so the pages are released
 *     at once.  The descriptor stays with the list token: the popper that
 *     finds it RETIRED recycles it, so a descriptor is never on two lists.
 */
struct span {
  AO_t link;                     /* AO_stack link field; must be first */
  unsigned char kind;            /* enum span_kind */
  unsigned char size_class;      /* SPAN_SMALL only */
  unsigned char shard;           /* the central list shard it returns to */
  unsigned short capacity;       /* blocks in the span */
  /* SPAN_SMALL: blocks [carved, capacity) were never handed out nor
   * linked; they are free, counted in the anchor, and only the list-token
   * holder takes them (and alone writes carved; span_new_small, its
   * first writer, acts before any token exists). */
  unsigned short carved;
  unsigned block_size;           /* bytes per block (SPAN_SMALL) */
  uint32_t inv_size;             /* ceil(2^32 / block_size): index by mul */
  struct page_run run;           /* pages owned; blocks start at page_base */
  AO_double_t anchor __attribute__((__aligned__(2 * sizeof(AO_t))));
} __attribute__((__aligned__(64)));

#define ANCHOR_NONE 0xffffu
#define ANCHOR_LISTED ((AO_t)1 << 30)
#define ANCHOR_RETIRED ((AO_t)1 << 31)

/* Results of span_take_batch. */
enum take_result { TAKE_OK, TAKE_OK_MORE, TAKE_FULL, TAKE_RETIRED };

/* A new span of the class with block 0 taken for the caller.  With grow
 * == 0 only memory at hand is used (no new segment is mapped). */
struct span *span_new_small(unsigned size_class, int grow, void **first_block);
/* Token holder: take the whole free chain if it holds at most max blocks
 * (and uncarved ones up to want in all), else want (1 <= want <= max);
 * returned as a NULL-terminated chain linked through their first word;
 * 0 when full or retired. */
unsigned span_take_batch(struct span *d, unsigned want, unsigned max,
                         void **chain, enum take_result *result);
/* Returns 1 when the caller now holds the list token and must list d. */
int span_put_block(struct span *d, void *block);
/* Put back k blocks of d, linked first to last through their first word
 * (the link of last is overwritten); returns like span_put_block. */
int span_put_chain(struct span *d, void *first, void *last, unsigned k);
/* Retire d, wherever it is, if every block is free; 1 if it did. */
int span_try_retire(struct span *d);
/* The token holder of a RETIRED span gives its descriptor back. */
void span_recycle(struct span *d);
/* 1 when new memory can be mapped (AO_malloc_enable_mmap was called). */
int span_memory_can_grow(void);
/* Spare descriptors, e.g. as nodes of the large-object cache. */
struct span *span_descriptor_get(void);
void span_descriptor_put(struct span *d);
/* A page run of size bytes starting at a multiple of align (see
 * chunk_alloc_pages); d->run.zero tells whether its pages read as zeros. */
struct span *span_new_run(size_t size, size_t align, int grow, void **mem);
void span_free_run(struct span *d);
AO_GPL_INLINE struct span *span_of(const void *p)
{
  return chunk_owner(p);
}

/* ---- central.c: per-class lists of spans with free blocks. ---- */
#define CENTRAL_SHARDS 4
void *central_alloc(unsigned size_class);
/* Blocks as a NULL-terminated chain linked through their first word,
 * preferring the given shard: want of them, or up to max when that saves
 * reading blocks (1 <= want <= max); returns how many (0: exhausted). */
unsigned central_alloc_batch(unsigned size_class, unsigned shard,
                             unsigned want, unsigned max, void **chain);
void central_free(struct span *d, void *block);
/* Give back a NULL-terminated chain of small blocks (any spans). */
void central_free_chain(void *chain);
/* Retire every wholly free small span, listed or not (found through the
 * page map): its pages go back to the chunk provider for any class or
 * large object.  Returns the number retired. */
int central_reclaim(void);

/* ---- large.c: objects above the largest size class. ---- */
/* size bytes aligned to align (a power of two; a run when it fits, else
 * a direct mapping); with grow == 0 only pages at hand are used (no mmap
 * call).  *zero (if zero != NULL) is set to 1 when the memory is known to
 * read as zeros. */
void *large_alloc(size_t size, size_t align, int grow, unsigned *zero);
/* Resize the direct mapping h to hold size user bytes without copying:
 * shrink, grow in place, or move the pages to a new mapping; the new user
 * pointer, or NULL (h untouched) when that cannot be done. */
void *large_resize(struct large_header *h, size_t size);
void large_free_run(struct span *d);
/* Where p (of PAGE_CLASS_LARGE) lies, from the side table of live
 * mappings (no system call, nothing of the mapping read): LARGE_START, p is the user pointer of the live mapping
 * *h (the caller, its owner, may then read *h directly); LARGE_INSIDE,
 * elsewhere in that mapping; LARGE_NONE, in no mapping of ours. */
enum large_where { LARGE_NONE, LARGE_START, LARGE_INSIDE };
enum large_where large_lookup(const void *p, struct large_header **h);
void large_free_mapping(struct large_header *h);
/* Unmap the cached large mappings; 1 if any. */
int large_trim(void);
/* A decay step at now_ms: unmap the mappings cached for about a second,
 * let the cache budget follow the recent peak down. */
void large_decay(uint64_t now_ms);

/* ---- decay.c: free memory goes back to the OS by itself. ---- */
/* Called on slow paths, and every few thousand fast-path frees: reads the
 * clock and, at most once per step period for the whole process, runs a
 * decay step (one caller at a time; the others return at once). */
void decay_tick(void);
/* The same, for a caller that has just read the clock. */
void decay_tick_at(uint64_t now_ms);
/* The fast path's countdown ran out: rearm it, then decay_tick(). */
void decay_tick_cache(void);

/* ---- atomic_ops_malloc.c ---- */
/* AO_malloc's path for sizes above SMALL_MAX, and for alignments above
 * ALIGNMENT that no size class gives: every source in turn.  *zero as in
 * large_alloc. */
void *malloc_large(size_t sz, size_t align, unsigned *zero);

/* ---- malloc_replace.c: pointers not from us. ---- */
#ifdef AO_GPL_MALLOC_REPLACEMENT
/* 1 if p lies outside every byte the allocator manages (another
 * allocator's block, the loader's early heap...); malloc_replace.c. */
int replace_is_foreign(const void *p);
/* realloc(p, size), p != NULL, size != 0: a foreign p fails (ENOMEM);
 * malloc_family.c. */
void *replace_realloc(void *p, size_t size);
#endif

/* ---- checks.c: misuse of AO_free. ---- */
/* Write "atomic_ops_gpl: fn(p): what" to fd 2 with write(2), then abort. */
AO_GPL_NORETURN void misuse_report(const char *fn, const void *p,
                                   const char *what);
#ifdef AO_GPL_CHECKS
/* --enable-checks: p was just handed out by AO_malloc. */
void checks_allocated(void *p);
/* --enable-checks: p (of page class c) is being freed; reports a block
 * that is free already or that AO_malloc never returned. */
void checks_free(void *p, unsigned c);
#endif

/* ---- stack_almost_lock_free.c: the single-word CAS fallback. ---- */
/* head: the top link with a version in its low bits; slots: two words. */
void ao_stack_alf_push(volatile AO_t *head, volatile AO_t *slots,
                       AO_t *element);
AO_t *ao_stack_alf_pop(volatile AO_t *head, volatile AO_t *slots);

/* ---- statistics (malloc_stats.c sums them up for AO_malloc_stats). ----
 * Each layer adds its own figures to the public struct: read-only walks
 * and loads, no write to shared state, so any thread or handler may take
 * a snapshot at any time (approximate while others run). */
struct AO_malloc_stats;
/* os_memory.c: mapped (static heap + live mappings), system call counts,
 * released_total. */
void os_stats(struct AO_malloc_stats *st);
/* chunk_provider.c: free_pages, free_released, segment headers and every
 * in-use page that belongs to no live span (descriptor pages) in metadata;
 * each in-use run is handed to span_stats. */
void chunk_stats(struct AO_malloc_stats *st);
/* span.c: if d is live and its run starts at page, add the run's figures
 * (in_use, span_free, slack) and return its page count, else 0. */
unsigned span_stats(struct span *d, const char *page,
                    struct AO_malloc_stats *st);
/* large.c: large_cached; in-use mappings to in_use, their headers to
 * metadata. */
void large_stats(struct AO_malloc_stats *st);
/* thread_cache.c: cached blocks and runs move from in_use to
 * thread_cached, the caches themselves to metadata; thread_caches. */
void cache_stats(struct AO_malloc_stats *st);
/* malloc_stats.c: count a free of a pointer that is not ours, ignored
 * (the malloc replacement); foreign_frees. */
void stats_foreign_free(void);

#pragma GCC visibility pop

#endif /* AO_GPL_INTERNAL_H */
