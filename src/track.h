/* SPDX-License-Identifier: MIT */
/* Tracking hooks: ASan poisoning and valgrind client requests; nothing in normal builds. */
#ifndef AO_GPL_TRACK_H
#define AO_GPL_TRACK_H

#include "internal.h"

/*
 * AddressSanitizer and valgrind's memcheck only know about malloc: the
 * blocks this allocator carves from its own pages look to them like one
 * big, always valid array.  These hooks describe the blocks to them:
 *
 *   track_alloc(p, n)          p handed to the user for a request of n
 *                              bytes: exactly [p, p + n) becomes usable;
 *   track_free(p, size)        p given back (size: the whole block): no
 *                              access until it is handed out again; under
 *                              valgrind a second free is reported;
 *   track_fresh(p, size)       never handed out yet (new span): no access;
 *   track_internal(p, size)    memory the allocator itself uses (a thread
 *                              cache, descriptors): usable, never a leak;
 *   track_internal_end(p, size) such memory given back: no access;
 *   track_release(p, size)     about to be unmapped: forget it;
 *   track_resize(p, usable, n) the live block p (usable bytes in all) now
 *                              holds n <= usable: exactly [p, p + n)
 *                              usable, the contents kept (AO_realloc in
 *                              place, AO_malloc_usable_size).
 *
 * The allocator itself still reads and writes the first word of free
 * blocks (the free-list link): every such access goes through
 * free_link_get/free_link_set (free_link_load/free_link_store where it
 * must be a volatile access), which the tools do not check.
 *
 * In a normal build each hook is empty and each accessor is the plain
 * access it always was, so the fast paths compile to the same code.  The
 * hooks only write shadow memory or issue client requests (no lock, no
 * malloc): they keep every path async-signal-safe.
 */

#if defined(__SANITIZE_ADDRESS__)
# define AO_GPL_TRACK_ASAN 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define AO_GPL_TRACK_ASAN 1
# endif
#endif

/* ThreadSanitizer: gcc says so with __SANITIZE_THREAD__, clang through
 * __has_feature. */
#if defined(__SANITIZE_THREAD__)
# define AO_GPL_TRACK_TSAN 1
#elif defined(__has_feature)
# if __has_feature(thread_sanitizer)
#  define AO_GPL_TRACK_TSAN 1
# endif
#endif

/*
 * Racy reads validated by a CAS.  A lock-free pop reads the link of the
 * element it is about to take; by then another thread may have taken the
 * element and be writing it as its own data (user stores into a block or
 * an AO_stack node, plain and unannotated).  The CAS on the list head or
 * span anchor then fails and the value is dropped.  C11 wants such a read
 * to be atomic (a relaxed load); ThreadSanitizer would still report it
 * against the owner's plain store, which is not ours to change, so under
 * TSan the read is hidden from it (these functions are not instrumented,
 * and never inlined into instrumented code).  Every write of a link made
 * by the allocator itself is an atomic store or happens before the CAS
 * that publishes it, so nothing else is hidden.
 */
#ifdef AO_GPL_TRACK_TSAN
# define TRACK_RACY_READER \
  static __attribute__((__no_sanitize_thread__, __noinline__, __unused__))
/* atomic_ops.h's AO_load would be instrumented (it is not inlined here),
 * so the builtin it stands for is used directly: inline, no libcall. */
TRACK_RACY_READER AO_t racy_word_load(const volatile AO_t *p)
{
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
#else
# define TRACK_RACY_READER AO_GPL_INLINE
AO_GPL_INLINE AO_t racy_word_load(const volatile AO_t *p)
{
  return AO_load(p);
}
#endif

/*
 * A thread cache handed over by its owner's death.  The owner works on its
 * cache with plain accesses; another thread drains it only once the owner
 * is proved gone (tkill(tid, 0) fails with ESRCH, thread_cache.c), which
 * orders every access of the owner before the drain through the kernel.
 * TSan cannot see that edge, so under TSan the owner releases its cache at
 * the end of each cache operation (track_cache_release) and the drainer
 * acquires it once the owner is proved gone (track_cache_acquire).  Only an
 * annotation: in other builds both are empty.
 */
#ifdef AO_GPL_TRACK_TSAN
# include <sanitizer/tsan_interface.h>
AO_GPL_INLINE void track_cache_release(void *tc)
{
  __tsan_release(tc);
}

AO_GPL_INLINE void track_cache_acquire(void *tc)
{
  __tsan_acquire(tc);
}
#else
AO_GPL_INLINE void track_cache_release(void *tc)
{
  (void)tc;
}

AO_GPL_INLINE void track_cache_acquire(void *tc)
{
  (void)tc;
}
#endif

#if defined(AO_GPL_TRACK_ASAN) && defined(AO_GPL_VALGRIND)
# error "ASan and valgrind support exclude each other (valgrind cannot run ASan binaries)"
#endif

#if defined(AO_GPL_TRACK_ASAN)
# include <sanitizer/asan_interface.h>

/* ASan poisons whole 8-byte granules and keeps partial ones exact at the
 * end of a range, which is all we need: blocks are 16-byte aligned. */
AO_GPL_INLINE void track_alloc(void *p, size_t n)
{
  if (p != NULL)
    ASAN_UNPOISON_MEMORY_REGION(p, n);
}

AO_GPL_INLINE void track_free(void *p, size_t size)
{
  ASAN_POISON_MEMORY_REGION(p, size);
}

AO_GPL_INLINE void track_fresh(void *p, size_t size)
{
  ASAN_POISON_MEMORY_REGION(p, size);
}

AO_GPL_INLINE void track_internal(void *p, size_t size)
{
  ASAN_UNPOISON_MEMORY_REGION(p, size);
}

AO_GPL_INLINE void track_internal_end(void *p, size_t size)
{
  ASAN_POISON_MEMORY_REGION(p, size);
}

AO_GPL_INLINE void track_resize(void *p, size_t usable, size_t n)
{
  ASAN_POISON_MEMORY_REGION(p, usable);
  ASAN_UNPOISON_MEMORY_REGION(p, n);
}

/* Shadow is not reset by munmap: a later mapping at the same address
 * would inherit the poison. */
AO_GPL_INLINE void track_release(void *p, size_t size)
{
  ASAN_UNPOISON_MEMORY_REGION(p, size);
}

/* Not instrumented, and never inlined: GCC refuses to inline a function
 * with no_sanitize_address into an instrumented one.  span_take_batch may
 * read the link of a block that another thread has just taken and is
 * writing: the anchor CAS discards that value, so it is no error either. */
__attribute__((__no_sanitize_address__, __noinline__, __unused__))
static void *free_link_get(const void *block)
{
  return *(void *const volatile *)block;
}

__attribute__((__no_sanitize_address__, __noinline__, __unused__))
static void free_link_set(void *block, void *next)
{
  *(void *volatile *)block = next;
}

#elif defined(AO_GPL_VALGRIND)
# include <valgrind/memcheck.h>

AO_GPL_INLINE void track_alloc(void *p, size_t n)
{
  if (p != NULL)
    VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, 0);
}

/* memcheck knows the block's size from its MALLOCLIKE record; a pointer
 * it does not know as a live block is reported as an invalid free. */
AO_GPL_INLINE void track_free(void *p, size_t size)
{
  (void)size;
  VALGRIND_FREELIKE_BLOCK(p, 0);
}

AO_GPL_INLINE void track_fresh(void *p, size_t size)
{
  VALGRIND_MAKE_MEM_NOACCESS(p, size);
}

/* Usable, as plain memory is, but not a MALLOCLIKE block: never in a leak
 * report.  Defined: descriptor pages may be read before every field is set. */
AO_GPL_INLINE void track_internal(void *p, size_t size)
{
  VALGRIND_MAKE_MEM_DEFINED(p, size);
}

AO_GPL_INLINE void track_internal_end(void *p, size_t size)
{
  VALGRIND_MAKE_MEM_NOACCESS(p, size);
}

/* memcheck needs the block's current size to resize its record: the end
 * of the addressable part, found with error reporting off (the tail
 * after it is no-access since track_fresh or track_free). */
AO_GPL_INLINE void track_resize(void *p, size_t usable, size_t n)
{
  size_t old = usable;
  uintptr_t bad;

  VALGRIND_DISABLE_ERROR_REPORTING;
  bad = (uintptr_t)VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, usable);
  VALGRIND_ENABLE_ERROR_REPORTING;
  if (bad != 0)
    old = (size_t)(bad - (uintptr_t)p);
  VALGRIND_RESIZEINPLACE_BLOCK(p, old, n, 0);
}

/* munmap itself makes the range inaccessible. */
AO_GPL_INLINE void track_release(void *p, size_t size)
{
  (void)p;
  (void)size;
}

/*
 * Error reporting is switched off around the access (per thread, so other
 * threads are still checked).  A value loaded from a no-access word counts
 * as defined, but one loaded from a block that another thread has just
 * taken (the stale read of span_take_batch) may be undefined, and the
 * caller branches on it: declare it defined, the anchor CAS decides.
 */
__attribute__((__noinline__, __unused__))
static void *free_link_get(const void *block)
{
  void *v;

  VALGRIND_DISABLE_ERROR_REPORTING;
  v = *(void *const volatile *)block;
  VALGRIND_ENABLE_ERROR_REPORTING;
  (void)VALGRIND_MAKE_MEM_DEFINED(&v, sizeof(v));
  return v;
}

__attribute__((__noinline__, __unused__))
static void free_link_set(void *block, void *next)
{
  VALGRIND_DISABLE_ERROR_REPORTING;
  *(void *volatile *)block = next;
  VALGRIND_ENABLE_ERROR_REPORTING;
}

#else /* a normal build */

AO_GPL_INLINE void track_alloc(void *p, size_t n)
{
  (void)p;
  (void)n;
}

AO_GPL_INLINE void track_free(void *p, size_t size)
{
  (void)p;
  (void)size;
}

AO_GPL_INLINE void track_fresh(void *p, size_t size)
{
  (void)p;
  (void)size;
}

AO_GPL_INLINE void track_internal(void *p, size_t size)
{
  (void)p;
  (void)size;
}

AO_GPL_INLINE void track_internal_end(void *p, size_t size)
{
  (void)p;
  (void)size;
}

AO_GPL_INLINE void track_release(void *p, size_t size)
{
  (void)p;
  (void)size;
}

AO_GPL_INLINE void track_resize(void *p, size_t usable, size_t n)
{
  (void)p;
  (void)usable;
  (void)n;
}

AO_GPL_INLINE void *free_link_get(const void *block)
{
  return *(void *const *)block;
}

AO_GPL_INLINE void free_link_set(void *block, void *next)
{
  *(void **)block = next;
}

/* For span.c, whose reads may race with the block's new owner (see
 * span_take_batch): one relaxed atomic load (racy_word_load above). */
AO_GPL_INLINE void *free_link_load(const void *block)
{
  return (void *)racy_word_load((const volatile AO_t *)block);
}

AO_GPL_INLINE void free_link_store(void *block, void *next)
{
  *(void *volatile *)block = next;
}

#endif

/* In tracking builds the accessors above are already opaque calls that
 * access the word once. */
#if defined(AO_GPL_TRACK_ASAN) || defined(AO_GPL_VALGRIND)
# define free_link_load free_link_get
# define free_link_store free_link_set
#endif

#endif /* AO_GPL_TRACK_H */
