/* SPDX-License-Identifier: MIT */
/* AO_calloc after a trim that could not drop every page: big OS pages, madvise refused (mlockall). */
/*
 * A trim marks free pages clean, and AO_calloc skips the memset of a page
 * run whose pages are all clean.  Only pages the OS really dropped may be
 * marked so.  Two ways a trim drops less than it asked:
 *  1. the OS page is larger than the allocator's 4 KiB page (aarch64 and
 *     ppc64 kernels with 16 or 64 KiB pages): simulated here by answering
 *     getauxval(AT_PAGESZ) with 65536 (the library asks getauxval);
 *  2. madvise(MADV_DONTNEED) fails: it refuses locked pages (mlockall),
 *     as real-time programs have; skipped where mlockall is not allowed.
 * In both, a dirty run freed and trimmed must come back zeroed.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#include <sys/auxv.h>
#include <sys/mman.h>

static int big_pages;

/* Interposes the C library's: the library calls getauxval(AT_PAGESZ). */
unsigned long getauxval(unsigned long type)
{
  if (type == AT_PAGESZ)
    return big_pages ? 65536 : 4096;
  return 0;
}

static size_t nonzero(const unsigned char *p, size_t n)
{
  size_t i, bad = 0;

  for (i = 0; i < n; i++)
    bad += p[i] != 0;
  return bad;
}

/* Dirty runs freed and trimmed, then calloc'ed: every byte must be 0. */
static size_t dirty_trim_calloc(size_t n)
{
  unsigned char *a = AO_malloc(n), *b = AO_malloc(n), *c = AO_malloc(n), *q;
  size_t bad;

  TU_CHECK(a != NULL && b != NULL && c != NULL, "AO_malloc(%zu) failed", n);
  memset(b, 0xa5, n);
  AO_free(b);
  AO_malloc_trim();
  q = AO_calloc(1, n);
  TU_CHECK(q != NULL, "AO_calloc(1, %zu) failed", n);
  bad = nonzero(q, n);
  AO_free(q);
  AO_free(a);
  AO_free(c);
  return bad;
}

int main(int argc, char **argv)
{
  size_t bad;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "calloc after partial trims");

  big_pages = 1;
  bad = dirty_trim_calloc(33000);
  TU_CHECK(bad == 0, "64 KiB OS pages: %zu of 33000 calloc'ed bytes not zero "
           "after a trim", bad);
  tu_info("64 KiB OS pages: calloc after a trim zeroed all 33000 bytes");
  big_pages = 0;

  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    tu_info("mlockall refused (%s): the locked-pages case is not run",
            strerror(errno));
  } else {
    bad = dirty_trim_calloc(100000);
    munlockall();
    TU_CHECK(bad == 0, "mlockall: %zu of 100000 calloc'ed bytes not zero "
             "after a trim", bad);
    tu_info("mlockall: calloc after a refused madvise zeroed all 100000 bytes");
  }
  tu_info("ok");
  return 0;
}
