/* SPDX-License-Identifier: MIT */
/* libaomalloc: memalign, aligned_alloc, posix_memalign, valloc, pvalloc as glibc does them (rounding, OS page size). */
#include "test_util.h"

#include <malloc.h>
#include <sys/auxv.h>

static void check_aligned(void *p, size_t align, size_t size, const char *what)
{
  TU_CHECK(p != NULL, "%s(%zu, %zu) = NULL (errno %d)", what, align, size, errno);
  TU_CHECK(((uintptr_t)p & (align - 1)) == 0, "%s: %p not %zu-aligned", what, p, align);
  TU_CHECK(malloc_usable_size(p) >= size, "%s: usable %zu < %zu", what,
           malloc_usable_size(p), size);
  memset(p, 0x5a, size);
  free(p);
}

/* Alignments up to 4 MiB; 2 MiB on 32-bit targets, whose 4 MiB segments
 * bound them (as in test_aligned_alloc). */
#define MAX_ALIGN (sizeof(void *) == 8 ? (size_t)4 << 20 : (size_t)2 << 20)

static volatile size_t huge = SIZE_MAX - 8192, huge_align = SIZE_MAX / 2 + 2;

int main(int argc, char **argv)
{
  size_t page = (size_t)getauxval(AT_PAGESZ), a;
  void *p;

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(60, "aligned allocation");
  TU_CHECK(page != 0, "no AT_PAGESZ");

  for (a = 1; a <= MAX_ALIGN; a <<= 1) {
    check_aligned(memalign(a, 40), a, 40, "memalign");
    check_aligned(aligned_alloc(a, 3 * a), a, 3 * a, "aligned_alloc");
    p = NULL;
    if (a >= sizeof(void *)) {
      TU_CHECK(posix_memalign(&p, a, a + 1) == 0, "posix_memalign(%zu)", a);
      check_aligned(p, a, a + 1, "posix_memalign");
    }
  }
  /* Not a power of two: rounded up, as glibc does. */
  check_aligned(memalign(24, 100), 32, 100, "memalign");
  check_aligned(aligned_alloc(48, 100), 64, 100, "aligned_alloc");
  check_aligned(memalign(3000, 10), 4096, 10, "memalign");
  check_aligned(aligned_alloc(0, 10), 1, 10, "aligned_alloc");
  /* Beyond half the address space: EINVAL. */
  errno = 0;
  p = memalign(huge_align, 10);
  TU_CHECK(p == NULL && errno == EINVAL, "memalign(huge): %p errno %d", p, errno);
  errno = 0;
  p = memalign(4096, huge);
  TU_CHECK(p == NULL && errno == ENOMEM, "memalign(4096, huge): %p errno %d", p, errno);

  /* valloc and pvalloc: the OS page size, pvalloc rounds the size up. */
  check_aligned(valloc(1), page, 1, "valloc");
  p = pvalloc(1);
  check_aligned(p, page, page, "pvalloc");
  check_aligned(pvalloc(0), page, page, "pvalloc");
  check_aligned(pvalloc(page + 1), page, 2 * page, "pvalloc");
  errno = 0;
  p = pvalloc(huge - 10);
  TU_CHECK(p == NULL && errno == ENOMEM, "pvalloc(huge): %p errno %d", p, errno);

  tu_info("memalign/aligned_alloc/posix_memalign up to %zu MiB, rounding, valloc/pvalloc on %zu-byte pages: ok",
          MAX_ALIGN >> 20, page);
  return 0;
}
