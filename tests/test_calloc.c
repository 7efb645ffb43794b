/* SPDX-License-Identifier: MIT */
/* AO_calloc: zeroed blocks (reused ones included), overflow, runs and fresh or reused mappings. */
/*
 * Blocks of many sizes are filled with 0xa5 and freed, then AO_calloc asks
 * for the same sizes: the reused memory must read as zeros, every usable
 * byte of the request.  The same after AO_malloc_trim (pages dropped by
 * madvise), for page runs, and for direct mappings both fresh from mmap
 * and reused from the large-object cache.  n * size overflowing gives
 * NULL with ENOMEM.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

/* The last two are runs in the static heap too: one not page-aligned, one
 * of the largest run (200000 and 262144 on 64-bit targets). */
static const size_t sizes[] = { 0, 1, 15, 16, 100, 1000, 4000, 32768,
                                32769, 40000, TU_BIG_RUN, TU_MAX_RUN };
/* The compiler must not see it (it warns about impossible sizes). */
static volatile size_t size_max = (size_t)-1;
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define ROUNDS 2

static void check_zero(const unsigned char *p, size_t n, const char *what)
{
  size_t i;

  for (i = 0; i < n; i++)
    TU_CHECK(p[i] == 0, "%s: byte %zu of %zu is %#x", what, i, n, p[i]);
}

/* Dirty blocks of each size, freed, then calloc'ed again. */
static void reuse(const char *what)
{
  unsigned char *p[NSIZES * ROUNDS];
  size_t i;

  for (i = 0; i < NSIZES * ROUNDS; i++) {
    p[i] = AO_malloc(sizes[i % NSIZES]);
    TU_CHECK(p[i] != NULL, "AO_malloc(%zu)", sizes[i % NSIZES]);
    memset(p[i], 0xa5, sizes[i % NSIZES]);
  }
  for (i = 0; i < NSIZES * ROUNDS; i++)
    AO_free(p[i]);
  for (i = 0; i < NSIZES * ROUNDS; i++) {
    p[i] = AO_calloc(1, sizes[i % NSIZES]);
    TU_CHECK(p[i] != NULL, "AO_calloc(1, %zu)", sizes[i % NSIZES]);
    check_zero(p[i], sizes[i % NSIZES], what);
    memset(p[i], 0x5a, sizes[i % NSIZES]);
  }
  for (i = 0; i < NSIZES * ROUNDS; i++)
    AO_free(p[i]);
}

static void overflow(void)
{
  static const size_t n[][2] = {
    { (size_t)-1, 2 }, { 2, (size_t)-1 }, { (size_t)1 << (4 * sizeof(size_t)),
                                            (size_t)1 << (4 * sizeof(size_t)) },
    { (size_t)-1 / 3 + 1, 3 }
  };
  size_t i;

  for (i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
    errno = 0;
    TU_CHECK(AO_calloc(n[i][0], n[i][1]) == NULL && errno == ENOMEM,
             "AO_calloc(%zu, %zu) did not fail with ENOMEM", n[i][0], n[i][1]);
  }
  {
    void *p = AO_calloc(0, size_max);

    TU_CHECK(p != NULL, "AO_calloc(0, SIZE_MAX) failed");
    AO_free(p);
  }
}

static void mappings(void)
{
  size_t sz = (size_t)3 << 20, k;
  unsigned char *p;

  for (k = 0; k < 3; k++) {   /* fresh, then reused from the cache */
    p = AO_calloc(sz / 16, 16);
    TU_CHECK(p != NULL, "AO_calloc of %zu bytes", sz);
    check_zero(p, sz, "mapping");
    memset(p, 0xa5, sz);
    AO_free(p);
  }
}

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "the calloc phases");
  overflow();
  reuse("static heap, reused blocks");
  AO_malloc_trim();
  reuse("static heap, after a trim");
  AO_malloc_enable_mmap();
  reuse("with mmap, reused blocks");
  mappings();
  AO_malloc_trim();
  reuse("with mmap, after a trim");
  mappings();
  tu_info("calloc zeroed every block (reused, trimmed, fresh and cached "
          "mappings); overflow gave ENOMEM");
  return 0;
}
