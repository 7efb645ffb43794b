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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* !AO_MALLOC_H */
