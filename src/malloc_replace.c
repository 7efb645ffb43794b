/* SPDX-License-Identifier: MIT */
/* libaomalloc: the C library's malloc API (calloc, realloc, memalign, mallinfo...) on top of AO_malloc. */
/*
 * Built only into libaomalloc (-DAO_GPL_MALLOC_REPLACEMENT), which links
 * the allocator's own sources, not libatomic_ops_gpl: one heap for malloc,
 * AO_malloc and their families.  malloc and free are aliases of AO_malloc
 * and AO_free (atomic_ops_malloc.c); everything else is here, as thin
 * wrappers.  The library is linked with -Bsymbolic-functions, so the calls
 * below into AO_* are direct calls, not PLT calls.
 *
 * Which names: glibc's manual ("Replacing malloc") requires malloc, free,
 * calloc and realloc together, and a general-purpose replacement adds
 * aligned_alloc, malloc_usable_size, memalign, posix_memalign, pvalloc,
 * valloc and the obsolete cfree.  reallocarray must be replaced too: the
 * C library's own calls its internal realloc, which would get our blocks.
 * The __libc_* names are glibc's exported aliases, which some programs and
 * tools call directly.  mallopt, mallinfo, mallinfo2, malloc_stats,
 * malloc_info and malloc_trim would otherwise report glibc's unused heap.
 * free_sized and free_aligned_sized (C23) just free.  C++ operator new
 * (plain and array, throwing and nothrow) is here and operator delete
 * (plain, array, sized) aliases free: see "C++ operator new" below.
 *
 * glibc semantics kept where programs rely on them, where AO_* differs:
 *  - realloc(p, 0) with p != NULL frees p and returns NULL (AO_realloc
 *    returns a minimal block instead: NULL always means failure there);
 *  - memalign and aligned_alloc round an alignment that is not a power of
 *    two up to the next one (AO_aligned_alloc says EINVAL), and take
 *    alignments up to 16 as plain malloc;
 *  - valloc and pvalloc use the OS page size from the auxiliary vector.
 *
 * Pointers that never came from us (outside the static heap and all our
 * mappings: the dynamic loader's early heap, another allocator's blocks):
 * free ignores and counts them (AO_malloc_stats foreign_frees);
 * realloc fails with ENOMEM leaving them alone (their size is unknown, so
 * nothing can be copied safely); malloc_usable_size says 0.  None of them
 * faults, even when the pointer shares a SEGMENT_SIZE unit with a large
 * mapping of ours that another thread unmaps or moves meanwhile
 * (large_lookup reads a side table, never the mapping).
 */
#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1          /* RTLD_NEXT */
#endif
#include "internal.h"
#include "atomic_ops_malloc.h"
#include "text.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#define REPLACE_API __attribute__((__visibility__("default")))

/* Not declared by every C library version; defined here all the same. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);
void cfree(void *p);
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

/*
 * A pointer is ours when it lies in the static heap, in a segment (wholly
 * ours), or inside a direct large mapping; the rest of a large mapping's
 * SEGMENT_SIZE unit may hold anybody's memory, and the mapping may be
 * unmapped or moved by another thread at this very moment: its header is
 * never read to tell: large_lookup() answers from the side table of live
 * mappings (large.c).
 */
int replace_is_foreign(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  struct large_header *h;

  if (a - (uintptr_t)ao_gpl_static_heap < AO_GPL_STATIC_HEAP_SIZE
      || os_unit_is_segment(p))
    return 0;
  if (!os_unit_is_mapped(p))
    return 1;
  return large_lookup(p, &h) == LARGE_NONE;
}

static size_t os_page_size(void)
{
  size_t page = (size_t)getauxval(AT_PAGESZ);

  return page != 0 && (page & (page - 1)) == 0 ? page : 4096;
}

REPLACE_API void *calloc(size_t n, size_t size)
{
  return AO_calloc(n, size);
}

REPLACE_API void *realloc(void *p, size_t size)
{
  if (p == NULL)
    return AO_malloc(size);
  if (size == 0) {
    AO_free(p);
    return NULL;
  }
  return replace_realloc(p, size);
}

REPLACE_API void *reallocarray(void *p, size_t n, size_t size)
{
  size_t total;

  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, total);
}

/* glibc's memalign: up to 16 is malloc's own alignment; above half the
 * address space, EINVAL; otherwise rounded up to a power of two. */
static void *align_alloc(size_t alignment, size_t size)
{
  if (alignment <= ALIGNMENT)
    return AO_malloc(size);
  if (alignment > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment & (alignment - 1))
    alignment = (size_t)1 << (8 * sizeof(unsigned long)
                              - (unsigned)__builtin_clzl((unsigned long)alignment));
  return AO_aligned_alloc(alignment, size);
}

REPLACE_API void *memalign(size_t alignment, size_t size)
{
  return align_alloc(alignment, size);
}

REPLACE_API void *aligned_alloc(size_t alignment, size_t size)
{
  return align_alloc(alignment, size);
}

REPLACE_API int posix_memalign(void **res, size_t alignment, size_t size)
{
  return AO_posix_memalign(res, alignment, size);
}

REPLACE_API void *valloc(size_t size)
{
  return align_alloc(os_page_size(), size);
}

/* The size rounded up to whole pages; 0 gives one page. */
REPLACE_API void *pvalloc(size_t size)
{
  size_t page = os_page_size();

  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  size = size == 0 ? page : (size + page - 1) & ~(page - 1);
  return align_alloc(page, size);
}

/* AO_malloc_usable_size says 0 for a foreign pointer already. */
REPLACE_API size_t malloc_usable_size(void *p)
{
  return AO_malloc_usable_size(p);
}

REPLACE_API int malloc_trim(size_t pad)
{
  (void)pad;
  return AO_malloc_trim();
}

/* Every tunable is accepted and ignored: the allocator has none, and a
 * 0 (failure) makes some programs complain or give up. */
REPLACE_API int mallopt(int param, int value)
{
  (void)param;
  (void)value;
  return 1;
}

REPLACE_API struct mallinfo2 mallinfo2(void)
{
  struct AO_malloc_stats st;
  struct mallinfo2 mi;

  AO_malloc_stats(&st);
  memset(&mi, 0, sizeof(mi));
  /* glibc's "in use" is uordblks + hblkhd: in_use already holds the
   * large mappings in use, so hblkhd stays 0; cached mappings are free. */
  mi.arena = st.mapped;
  mi.uordblks = st.in_use;
  mi.fordblks = st.thread_cached + st.span_free + st.free_pages
                + st.large_cached;
  mi.fsmblks = st.thread_cached + st.span_free;
  mi.keepcost = st.free_pages - st.free_released;
  return mi;
}

/* The int fields wrap as glibc's do beyond 2 GiB (why mallinfo2 exists). */
REPLACE_API struct mallinfo mallinfo(void)
{
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;

  memset(&mi, 0, sizeof(mi));
  mi.arena = (int)m2.arena;
  mi.hblkhd = (int)m2.hblkhd;
  mi.uordblks = (int)m2.uordblks;
  mi.fordblks = (int)m2.fordblks;
  mi.fsmblks = (int)m2.fsmblks;
  mi.keepcost = (int)m2.keepcost;
  return mi;
}

/* glibc prints to stderr; so do we, with write(2). */
REPLACE_API void malloc_stats(void)
{
  (void)AO_malloc_stats_print(2);
}

static void put_field(struct text *t, const char *tag, const char *type,
                      size_t v)
{
  text_put(t, "<");
  text_put(t, tag);
  text_put(t, " type=\"");
  text_put(t, type);
  text_put(t, "\" size=\"");
  text_put_uint(t, v, 10);
  text_put(t, "\"/>\n");
}

/* glibc's XML shape, reduced to the figures this heap has.  The stream
 * is the caller's: written with fwrite, outside every signal path. */
REPLACE_API int malloc_info(int options, FILE *fp)
{
  struct AO_malloc_stats st;
  char buf[512];
  struct text t = { buf, sizeof(buf), 0 };

  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  AO_malloc_stats(&st);
  text_put(&t, "<malloc version=\"aomalloc-1\">\n");
  put_field(&t, "total", "in_use", st.in_use);
  put_field(&t, "total", "free",
            st.thread_cached + st.span_free + st.free_pages);
  put_field(&t, "total", "mmap", st.large_cached);
  put_field(&t, "system", "current", st.mapped);
  put_field(&t, "aspace", "total", st.mapped);
  text_put(&t, "</malloc>\n");
  return fwrite(buf, 1, t.len, fp) == t.len ? 0 : -1;
}

REPLACE_API void free_sized(void *p, size_t size)
{
  (void)size;
  AO_free(p);
}

REPLACE_API void free_aligned_sized(void *p, size_t alignment, size_t size)
{
  (void)alignment;
  (void)size;
  AO_free(p);
}

REPLACE_API void cfree(void *p)
{
  AO_free(p);
}

/*
 * C++ operator new.  The C++ runtime's own calls malloc through a PLT
 * jump (and array new calls plain new through another): a program that
 * news and deletes small objects pays for them on every call.  Ours is
 * AO_malloc while it succeeds.  On failure C can neither throw
 * std::bad_alloc nor know the runtime's new_handler, so the next
 * definition of the same operator (libstdc++'s or libc++'s, which is what
 * the program got before us) takes over: it retries through malloc, i.e.
 * us, calls the new_handler while one is set, and throws or returns NULL
 * as its kind requires.  The exception unwinds through the C frames
 * below: libaomalloc is built with -fexceptions for their unwind tables.
 * Aligned new (align_val_t) is left to the runtime: it calls
 * aligned_alloc, ours, and is not a hot path.
 */
#if __SIZEOF_POINTER__ == 8
# define CXX_NEW(kind, tail) _Zn##kind##m##tail
# define CXX_NAME(kind, tail) "_Zn" #kind "m" #tail
#else
# define CXX_NEW(kind, tail) _Zn##kind##j##tail
# define CXX_NAME(kind, tail) "_Zn" #kind "j" #tail
#endif
void *CXX_NEW(w, )(size_t size);
void *CXX_NEW(a, )(size_t size);
void *CXX_NEW(w, RKSt9nothrow_t)(size_t size, const void *tag);
void *CXX_NEW(a, RKSt9nothrow_t)(size_t size, const void *tag);

/* Weak: before glibc 2.34 these are in libdl, which a program need not
 * load; libaomalloc must load without them (a failing new then aborts). */
#pragma weak dlsym
#pragma weak dladdr
#pragma weak dlopen
#pragma weak dlclose

/* The operator called name that comes after ours: the next one in the
 * global lookup order, else the one the caller's module sees (a C++
 * module dlopen'ed with RTLD_LOCAL, as Python loads extensions: its
 * libstdc++ is not in the global scope RTLD_NEXT searches).  NULL if
 * there is none but ours. */
static AO_GPL_NOINLINE void *cxx_next(const char *name, const void *self,
                                      const void *caller)
{
  void *next = dlsym != NULL ? dlsym(RTLD_NEXT, name) : NULL;
  Dl_info info;

  if ((next == NULL || next == self) && dladdr != NULL && dlopen != NULL
      && dladdr(caller, &info) != 0 && info.dli_fname != NULL
      && info.dli_fname[0] != '\0') {
    void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);

    if (h != NULL) {
      next = dlsym(h, name);
      dlclose(h);
    }
  }
  return next == self ? NULL : next;
}

/* No runtime's operator to hand a failure to: throwing new cannot throw. */
static AO_GPL_NORETURN void cxx_no_runtime(const char *name)
{
  misuse_report(name, NULL, "no C++ runtime's operator new found "
                            "to report an allocation failure");
}

/* The failure path of all four operators: hand the request to the
 * runtime's operator name (self is ours).  caller is our caller's return
 * address, taken in the operator itself: this frame is not the caller's.
 * nothrow: the operator takes (size, tag) and NULL is an answer. */
static AO_GPL_NOINLINE void *cxx_new_failed(const char *name, void *self,
                                            const void *caller, size_t size,
                                            const void *tag, int nothrow)
{
  void *next = cxx_next(name, self, caller);

  if (nothrow) {
    void *(*next_nothrow)(size_t, const void *);

    if (next == NULL)
      return NULL;
    *(void **)&next_nothrow = next;
    return next_nothrow(size, tag);
  } else {
    void *(*next_throwing)(size_t);

    if (next == NULL)
      cxx_no_runtime(name);
    *(void **)&next_throwing = next;
    return next_throwing(size);
  }
}

#define CXX_CALLER __builtin_extract_return_addr(__builtin_return_address(0))

/* AO_malloc while it succeeds, else the failure path above. */
#define CXX_NEW_BODY(kind, tail, tag, nothrow)                              \
  void *p = AO_malloc(size);                                                \
                                                                            \
  if (AO_GPL_LIKELY(p != NULL))                                             \
    return p;                                                               \
  return cxx_new_failed(CXX_NAME(kind, tail), (void *)CXX_NEW(kind, tail),  \
                        CXX_CALLER, size, tag, nothrow)

REPLACE_API void *CXX_NEW(w, )(size_t size)
{
  CXX_NEW_BODY(w, , NULL, 0);
}

REPLACE_API void *CXX_NEW(a, )(size_t size)
{
  CXX_NEW_BODY(a, , NULL, 0);
}

/* nothrow: with no runtime to call a new_handler, NULL is the answer. */
REPLACE_API void *CXX_NEW(w, RKSt9nothrow_t)(size_t size, const void *tag)
{
  CXX_NEW_BODY(w, RKSt9nothrow_t, tag, 1);
}

REPLACE_API void *CXX_NEW(a, RKSt9nothrow_t)(size_t size, const void *tag)
{
  CXX_NEW_BODY(a, RKSt9nothrow_t, tag, 1);
}

REPLACE_API void *__libc_malloc(size_t size)
{
  return AO_malloc(size);
}

REPLACE_API void __libc_free(void *p)
{
  AO_free(p);
}

REPLACE_API void *__libc_calloc(size_t n, size_t size)
{
  return AO_calloc(n, size);
}

REPLACE_API void *__libc_realloc(void *p, size_t size)
{
  return realloc(p, size);
}

REPLACE_API void *__libc_memalign(size_t alignment, size_t size)
{
  return align_alloc(alignment, size);
}

REPLACE_API void *__libc_valloc(size_t size)
{
  return valloc(size);
}

REPLACE_API void *__libc_pvalloc(size_t size)
{
  return pvalloc(size);
}
