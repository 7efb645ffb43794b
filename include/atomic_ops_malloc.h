/* SPDX-License-Identifier: MIT */
/* Lock-free, async-signal-safe malloc: the AO_malloc API of libatomic_ops_gpl. */
/*
 * AO_malloc and AO_free may be called from any thread and from signal
 * handlers, nested or not, without any lock or condition.  Memory comes from
 * a static heap (2 MiB unless configured otherwise); after
 * AO_malloc_enable_mmap() also from mmap.  Every result is 16-byte aligned.
 * See libatomic-malloc(3).
 */
#ifndef AO_MALLOC_H
#define AO_MALLOC_H

#include "atomic_ops_stack.h"
#include <stddef.h>

/* Not from our atomic_ops_stack.h alone: upstream's stack header (7.6 has
 * no AO_API) may have taken the shared include guard AO_STACK_H first. */
#ifndef AO_API
# define AO_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Always: the allocator is built only where a double-width CAS exists, and
 * uses it even when AO_stack is configured to use its fallback. */
#define AO_MALLOC_IS_LOCK_FREE

#ifndef AO_ATTR_MALLOC
# if defined(__GNUC__) || defined(__clang__)
#   define AO_ATTR_MALLOC __attribute__((__malloc__))
# else
#   define AO_ATTR_MALLOC
# endif
#endif
#ifndef AO_ATTR_ALLOC_SIZE
# if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5)
#   define AO_ATTR_ALLOC_SIZE(n) __attribute__((__alloc_size__(n)))
# else
#   define AO_ATTR_ALLOC_SIZE(n)
# endif
#endif

#ifndef AO_ATTR_ALLOC_SIZE2
# if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5)
#   define AO_ATTR_ALLOC_SIZE2(n, m) __attribute__((__alloc_size__(n, m)))
# else
#   define AO_ATTR_ALLOC_SIZE2(n, m)
# endif
#endif

/* Release a block from AO_malloc; NULL is ignored. */
AO_API void AO_free(void *p);

/* A 16-byte aligned block of at least sz bytes (AO_malloc(0) gives a unique
 * block), or NULL when memory is exhausted or sz is too large. */
AO_API AO_ATTR_MALLOC AO_ATTR_ALLOC_SIZE(1) void *AO_malloc(size_t sz);

/* From now on, grow with mmap when the static heap is exhausted. */
AO_API void AO_malloc_enable_mmap(void);

/* Extension (not in upstream): give memory back to the OS.  Flushes the
 * calling thread's cache, returns wholly free spans to the page pool,
 * releases the physical memory of every free page (madvise) and unmaps
 * cached large objects.  Other threads' caches are flushed when those
 * threads exit.  Async-signal-safe and lock-free like the rest.  Returns 1
 * if any memory was released to the OS, else 0. */
AO_API int AO_malloc_trim(void);
#define AO_HAVE_malloc_trim

/*
 * Extensions (not in upstream): the rest of the malloc family.  Each is
 * async-signal-safe and lock-free like AO_malloc, and takes and gives
 * blocks of the same heap (a block from AO_calloc goes to AO_free, one
 * from AO_malloc to AO_realloc...).  A NULL result comes with errno set
 * to ENOMEM, or EINVAL for a bad alignment; nothing ever aborts.
 */

/* n * size bytes, zeroed; NULL (ENOMEM) when n * size overflows. */
AO_API AO_ATTR_MALLOC AO_ATTR_ALLOC_SIZE2(1, 2) void *AO_calloc(size_t n,
                                                                size_t size);
#define AO_HAVE_calloc

/* Resize the block p to size bytes, in place when it fits, keeping the
 * contents up to the smaller size.  AO_realloc(NULL, size) is
 * AO_malloc(size).  AO_realloc(p, 0) frees p and returns a new minimal
 * block, as AO_malloc(0) (so NULL always means failure).  On failure p is
 * untouched and NULL is returned with errno ENOMEM. */
AO_API AO_ATTR_ALLOC_SIZE(2) void *AO_realloc(void *p, size_t size);
#define AO_HAVE_realloc

/* A block of size bytes aligned to alignment, a power of two below 16 MiB
 * (2 MiB on 32-bit targets; larger ones fail with ENOMEM, as may those
 * above 4096 before AO_malloc_enable_mmap); NULL with EINVAL when
 * alignment is not a power of two, ENOMEM when out of memory.  Freed with
 * AO_free. */
AO_API AO_ATTR_MALLOC AO_ATTR_ALLOC_SIZE(2)
void *AO_aligned_alloc(size_t alignment, size_t size);
#define AO_HAVE_aligned_alloc

/* As posix_memalign: 0 and *res set, or EINVAL (alignment not a power of
 * two multiple of sizeof(void *)) or ENOMEM, *res untouched; errno is
 * not changed. */
AO_API int AO_posix_memalign(void **res, size_t alignment, size_t size);
#define AO_HAVE_posix_memalign

/* Bytes usable in the block p (at least what was asked); 0 for NULL. */
AO_API size_t AO_malloc_usable_size(const void *p);
#define AO_HAVE_malloc_usable_size

/*
 * A snapshot of the heap, taken without stopping anyone: each figure is
 * read at a slightly different moment while other threads go on, so the
 * parts add up only approximately under concurrency.  Bytes unless said.
 */
struct AO_malloc_stats {
  size_t mapped;           /* address space taken from the OS: the static
                              heap, segments and large mappings */
  size_t in_use;           /* in blocks handed out and not freed (their
                              usable sizes) */
  size_t thread_cached;    /* free blocks and page runs in thread caches */
  size_t span_free;        /* free blocks in partly used spans */
  size_t free_pages;       /* free pages of the static heap and segments */
  size_t free_released;    /* of free_pages: memory given back (madvise)
                              or never touched, not resident */
  size_t large_cached;     /* freed large mappings kept for reuse */
  size_t metadata;         /* headers, bitmaps, page maps, descriptors,
                              thread caches */
  size_t released_total;   /* given back to the OS so far: madvise'd and
                              unmapped bytes (cumulative) */
  unsigned long mmap_calls;
  unsigned long munmap_calls;
  unsigned long madvise_calls;
  unsigned long mremap_calls;
  unsigned long thread_caches; /* caches ever created (reused by threads) */
  unsigned long foreign_frees; /* frees of pointers not from this heap,
                                  ignored (the malloc replacement only) */
  size_t slack;            /* in small-block spans, the page tail too
                              short for one more block; with the figures
                              above from mapped to slack, mapped is their
                              sum when no thread is inside the allocator */
  size_t reserved[7];      /* zero; room for later fields */
};

/* Fill *st with a snapshot.  Async-signal-safe and lock-free. */
AO_API void AO_malloc_stats(struct AO_malloc_stats *st);
#define AO_HAVE_malloc_stats

/* Write a snapshot as text to fd with write(2) (no stdio, no allocation:
 * usable from a signal handler).  0, or -1 with errno from write. */
AO_API int AO_malloc_stats_print(int fd);
#define AO_HAVE_malloc_stats_print

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* !AO_MALLOC_H */
