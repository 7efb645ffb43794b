/* SPDX-License-Identifier: MIT */
/* AO_aligned_alloc and AO_posix_memalign: every power of two up to 4 MiB, static heap and mmap, errors. */
/*
 * Each alignment 1, 2, 4, ... 4 MiB with several sizes: the block is
 * aligned, AO_malloc_usable_size covers the request, every usable byte is
 * written and read back, and AO_free takes it.  First with the static heap
 * alone (alignments up to 4 KiB must succeed; beyond, ENOMEM is allowed,
 * as documented), then with mmap enabled (everything up to 4 MiB, 2 MiB on
 * 32-bit targets, must succeed).  Bad alignments give EINVAL; posix_memalign
 * never changes errno and leaves *res alone on failure.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

static const size_t sizes[] = { 0, 1, 17, 100, 1000, 4096, 5000, 40000,
                                300000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define MAX_ALIGN (sizeof(void *) == 8 ? (size_t)4 << 20 : (size_t)2 << 20)

static unsigned long done, refused;

static void one(size_t align, size_t size, int must)
{
  unsigned char *p;
  size_t u;

  errno = 0;
  p = AO_aligned_alloc(align, size);
  if (p == NULL) {
    TU_CHECK(!must, "AO_aligned_alloc(%zu, %zu) failed (errno %d)", align,
             size, errno);
    TU_CHECK(errno == ENOMEM, "AO_aligned_alloc(%zu, %zu): errno %d", align,
             size, errno);
    refused++;
    return;
  }
  TU_CHECK(((uintptr_t)p & (align - 1)) == 0 && (uintptr_t)p % TU_ALIGN == 0,
           "AO_aligned_alloc(%zu, %zu) = %p: misaligned", align, size,
           (void *)p);
  u = AO_malloc_usable_size(p);
  TU_CHECK(u >= size && u > 0, "usable %zu < %zu (align %zu)", u, size,
           align);
  tu_fill(p, u, align + size);
  TU_CHECK(tu_check(p, u, align + size) == (size_t)-1,
           "usable bytes of an aligned block do not hold (align %zu)", align);
  AO_free(p);
  done++;
}

static void sweep(int mmap_on)
{
  size_t align, i;

  for (align = 1; align <= MAX_ALIGN; align <<= 1)
    for (i = 0; i < NSIZES; i++)
      one(align, sizes[i], mmap_on || (align <= 4096 && sizes[i] <= 40000));
}

static void errors(void)
{
  static const size_t bad[] = { 0, 3, 24, 48, 1000, (size_t)-1 };
  void *res = (void *)&res;
  size_t i;
  int r;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    errno = 0;
    TU_CHECK(AO_aligned_alloc(bad[i], 10) == NULL && errno == EINVAL,
             "AO_aligned_alloc(%zu): not EINVAL", bad[i]);
    errno = 1234;
    r = AO_posix_memalign(&res, bad[i], 10);
    TU_CHECK(r == EINVAL && errno == 1234 && res == (void *)&res,
             "AO_posix_memalign(%zu): %d, errno %d", bad[i], r, errno);
  }
  errno = 1234;
  r = AO_posix_memalign(&res, sizeof(void *) / 2, 10);
  TU_CHECK(r == EINVAL && errno == 1234, "posix_memalign below sizeof(void *)");
  r = AO_posix_memalign(&res, 64, (size_t)-1 - 4096);
  TU_CHECK(r == ENOMEM && errno == 1234 && res == (void *)&res,
           "posix_memalign of a huge size: %d, errno %d", r, errno);
  r = AO_posix_memalign(&res, 4096, 100);
  TU_CHECK(r == 0 && errno == 1234 && ((uintptr_t)res & 4095) == 0,
           "posix_memalign(4096, 100): %d, errno %d", r, errno);
  AO_free(res);
  /* Beyond what masking allows: a clean refusal (documented limit). */
  errno = 0;
  TU_CHECK(AO_aligned_alloc((size_t)1 << (sizeof(void *) * 8 - 1), 1) == NULL
           && errno == ENOMEM, "huge alignment did not fail with ENOMEM");
}

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "the aligned allocations");
  sweep(0);
  tu_info("static heap only: %lu blocks, %lu refused with ENOMEM", done,
          refused);
  errors();
  AO_malloc_enable_mmap();
  done = refused = 0;
  sweep(1);
  sweep(1);
  tu_info("with mmap: %lu blocks, every alignment up to %zu KiB", done,
          MAX_ALIGN >> 10);
  return 0;
}
