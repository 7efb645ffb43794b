/* SPDX-License-Identifier: MIT */
/* AO_malloc edge cases: size 0, AO_free(NULL), and huge sizes that must fail cleanly. */
/*
 * AO_malloc(0) gives a unique, freeable, non-NULL block each time.
 * AO_free(NULL) does nothing.  Sizes whose rounding would overflow
 * (SIZE_MAX - k) and sizes beyond any address space return NULL, both before
 * and after AO_malloc_enable_mmap(); a size that might be satisfiable
 * (e.g. 1 TiB with overcommit) may succeed, but then the whole block must
 * be usable, never a short one.  After every refusal the allocator still
 * works.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define NZERO 2000

static void *zeros[NZERO];

static int cmp_ptr(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
  return x < y ? -1 : x > y;
}

static void still_works(const char *after)
{
  static const size_t sz[] = { 1, 16, 100, 1000, 4000, 20000 };
  void *p[sizeof(sz) / sizeof(sz[0])];
  unsigned i;
  for (i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
    p[i] = AO_malloc(sz[i]);
    TU_CHECK(p[i] != NULL, "AO_malloc(%zu) failed after %s", sz[i], after);
    TU_CHECK((uintptr_t)p[i] % TU_ALIGN == 0, "AO_malloc(%zu) misaligned after %s",
             sz[i], after);
    tu_fill(p[i], sz[i], i + 1);
  }
  for (i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
    TU_CHECK(tu_check(p[i], sz[i], i + 1) == (size_t)-1,
             "block of %zu corrupted after %s", sz[i], after);
    AO_free(p[i]);
  }
}

static void zero_sized(const char *phase)
{
  int i;
  for (i = 0; i < NZERO; i++) {
    zeros[i] = AO_malloc(0);
    TU_CHECK(zeros[i] != NULL, "%s: AO_malloc(0) #%d returned NULL", phase, i);
    TU_CHECK((uintptr_t)zeros[i] % TU_ALIGN == 0, "%s: AO_malloc(0) = %p is not "
             "16-byte aligned", phase, zeros[i]);
  }
  tu_sort(zeros, NZERO, sizeof(zeros[0]), cmp_ptr);
  for (i = 0; i + 1 < NZERO; i++)
    TU_CHECK(zeros[i] != zeros[i + 1], "%s: AO_malloc(0) returned %p twice "
             "while both were live", phase, zeros[i]);
  /* a zero-sized block does not share storage with a real block */
  {
    unsigned char *q = AO_malloc(64);
    TU_CHECK(q != NULL, "%s: AO_malloc(64) failed", phase);
    for (i = 0; i < NZERO; i++)
      TU_CHECK((unsigned char *)zeros[i] < q
               || (unsigned char *)zeros[i] >= q + 64,
               "%s: AO_malloc(0) block %p lies inside the live 64-byte block "
               "%p", phase, zeros[i], (void *)q);
    AO_free(q);
  }
  for (i = 0; i < NZERO; i++)
    AO_free(zeros[i]);
  /* and again, to see that freed zero-sized blocks are reusable */
  for (i = 0; i < NZERO; i++) {
    zeros[i] = AO_malloc(0);
    TU_CHECK(zeros[i] != NULL, "%s: AO_malloc(0) after free #%d returned "
             "NULL", phase, i);
  }
  for (i = 0; i < NZERO; i++)
    AO_free(zeros[i]);
}

/* Must fail: rounding overflows or no address space can hold it. */
static int must_fail(size_t s)
{
  if (s >= SIZE_MAX - ((size_t)1 << 20))
    return 1;
#if SIZE_MAX > 0xFFFFFFFFu
  if (s >= (size_t)1 << 57) /* beyond 5-level paging user space */
    return 1;
#else
  if (s >= ((size_t)3 << 30) + ((size_t)1 << 29)) /* > 3.5 GiB on 32-bit */
    return 1;
#endif
  return 0;
}

static unsigned long refused, granted;

/* Called through a volatile pointer: the compiler must neither warn about
 * nor fold these deliberately absurd requests. */
static void *(*volatile malloc_fn)(size_t) = AO_malloc;

static void huge(size_t s, const char *phase)
{
  unsigned char *p = malloc_fn(s);
  if (p == NULL) {
    refused++;
    return;
  }
  if (must_fail(s))
    tu_fail("%s: AO_malloc(%zu = %#zx) returned %p instead of NULL "
            "(size overflow gives a short block)", phase, s, s, (void *)p);
  /* satisfiable in principle: then all of it must be there */
  TU_CHECK((uintptr_t)p % TU_ALIGN == 0, "%s: AO_malloc(%zu) misaligned", phase, s);
  p[0] = 1;
  p[s / 2] = 2;
  p[s - 1] = 3;
  TU_CHECK(p[0] == 1 && p[s / 2] == 2 && p[s - 1] == 3,
           "%s: huge block of %zu not writable", phase, s);
  AO_free(p);
  granted++;
}

static void huge_sizes(const char *phase)
{
  size_t k;
  int b;
  /* overflow of header/rounding arithmetic */
  for (k = 0; k <= 4200; k++)
    huge(SIZE_MAX - k, phase);
  for (k = 4096; k <= ((size_t)1 << 20); k += 4096) {
    huge(SIZE_MAX - k + 1, phase);
    huge(SIZE_MAX - k - 1, phase);
  }
  for (k = 0; k <= 64; k++) {
    huge(SIZE_MAX / 2 - 32 + k, phase);
    huge(SIZE_MAX / 4 - 32 + k, phase);
  }
  for (b = 30; b < (int)(sizeof(size_t) * 8); b++) {
    size_t s = (size_t)1 << b;
    if (b < 40 && sizeof(size_t) > 4)
      continue; /* 1..512 GiB: leave those to the mmap test */
    huge(s - 16, phase);
    huge(s - 1, phase);
    huge(s, phase);
    huge(s + 1, phase);
    huge(s + 4095, phase);
  }
  still_works(phase);
}

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(30, "the edge cases");

  AO_free(NULL);
  AO_free(NULL);
  still_works("AO_free(NULL) on a fresh heap");

  zero_sized("static heap");
  huge_sizes("before AO_malloc_enable_mmap");
  AO_free(NULL);

  AO_malloc_enable_mmap();
  AO_malloc_enable_mmap(); /* idempotent */
  still_works("a second AO_malloc_enable_mmap");
  zero_sized("mmap enabled");
  huge_sizes("after AO_malloc_enable_mmap");
  AO_free(NULL);
  still_works("the last AO_free(NULL)");

  tu_info("ok: %lu huge requests refused, %lu satisfiable ones granted",
          refused, granted);
  return 0;
}
