/* SPDX-License-Identifier: MIT */
/* Misuse of AO_free: the report every build makes, and the --enable-checks tests. */
#include "internal.h"
#include "size_class.h"
#include "text.h"

#include <stdlib.h>
#include <unistd.h>

/*
 * Reports go to file descriptor 2 with write(2) and end in abort(): both
 * are async-signal-safe, and a misuse found inside a handler must not
 * call stdio or malloc.
 */
AO_GPL_NORETURN void misuse_report(const char *fn, const void *p, const char *what)
{
  char buf[256];
  struct text t = { buf, sizeof(buf) - 1, 0 };   /* room for the '\n' */
  ssize_t w;

  text_put(&t, "atomic_ops_gpl: ");
  text_put(&t, fn);
  text_put(&t, "(0x");
  text_put_uint(&t, (uintptr_t)p, 16);
  text_put(&t, "): ");
  text_put(&t, what);
  buf[t.len++] = '\n';
  w = write(2, buf, t.len);
  (void)w;                              /* nothing better to do: abort */
  abort();
}

#ifdef AO_GPL_CHECKS
/*
 * A freed block carries a mark in its second word (every block has at
 * least two): the block's address mixed with a constant, which a live
 * block holds only if the program stores exactly that value there.
 * AO_malloc clears it.  A second AO_free of a block that is still free
 * finds the mark; a block freed, handed out again and then freed by its
 * old owner is indistinguishable from a correct free, and is not caught.
 * The second word is not the free-list link (the first), so the mark stays
 * while the block sits in a cache or a span.
 */
#define FREE_MARK_KEY ((uintptr_t)0x5a17c0de9e3779b9ull)

static inline uintptr_t free_mark(const void *p)
{
  return (uintptr_t)p ^ FREE_MARK_KEY;
}

/* Tools such as ASan poison free blocks: reading the mark of a block that
 * is free is exactly what this file is for. */
#if defined(__SANITIZE_ADDRESS__)
# define NO_ASAN __attribute__((__no_sanitize_address__, __noinline__))
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define NO_ASAN __attribute__((__no_sanitize_address__, __noinline__))
# endif
#endif
#ifndef NO_ASAN
# define NO_ASAN
#endif
/* Under valgrind the mark lives in memory that memcheck sees as freed (or
 * past a request under 16 bytes): the accesses are ours, not the
 * program's. */
#ifdef AO_GPL_VALGRIND
# include <valgrind/memcheck.h>
# define QUIET_BEGIN VALGRIND_DISABLE_ERROR_REPORTING
# define QUIET_END VALGRIND_ENABLE_ERROR_REPORTING
# define DEFINED(x) ((void)VALGRIND_MAKE_MEM_DEFINED(&(x), sizeof(x)))
#else
# define QUIET_BEGIN ((void)0)
# define QUIET_END ((void)0)
# define DEFINED(x) ((void)0)
#endif

NO_ASAN void checks_allocated(void *p)
{
  QUIET_BEGIN;
  ((volatile uintptr_t *)p)[1] = 0;
  QUIET_END;
}

/* The block is free now: anything but a block start of a span in use, or
 * a second free, is reported.  The span's fields may change under us only
 * if the program frees memory it does not own, which is what is looked
 * for; a false report needs such a race. */
static void check_small(void *p, unsigned c)
{
  struct span *d = span_of(p);
  size_t off;

  if (d == NULL || d->kind != SPAN_SMALL || d->size_class != c
      || (AO_load(&d->anchor.AO_val1) & ANCHOR_RETIRED))
    misuse_report("AO_free", p, "not a block returned by AO_malloc "
                                "(its page holds no allocated blocks)");
  off = (size_t)((char *)p - d->run.page_base);
  if (off >= (size_t)d->capacity * d->block_size || off % d->block_size)
    misuse_report("AO_free", p, "not the start of a block returned by "
                                "AO_malloc");
}

NO_ASAN void checks_free(void *p, unsigned c)
{
  volatile uintptr_t *w = (volatile uintptr_t *)p;
  int again;

  if (c < NUM_SIZE_CLASSES)
    check_small(p, c);
  QUIET_BEGIN;
  again = w[1] == free_mark(p);
  w[1] = free_mark(p);
  QUIET_END;
  DEFINED(again);   /* the word may be past a request under 16 bytes */
  if (again)
    misuse_report("AO_free", p, "double free (the block is already free)");
}
#endif /* AO_GPL_CHECKS */
