/* SPDX-License-Identifier: MIT */
/* AO_malloc_usable_size: exact class, run and mapping sizes; writable to the end; 0 for NULL and foreign pointers. */
#include "test_util.h"

#include "atomic_ops_malloc.h"

static void expect(size_t request, size_t lo, size_t hi)
{
  unsigned char *p = AO_malloc(request);
  size_t u;

  TU_CHECK(p != NULL, "AO_malloc(%zu) failed", request);
  u = AO_malloc_usable_size(p);
  TU_CHECK(u >= lo && u <= hi, "AO_malloc_usable_size(AO_malloc(%zu)) = %zu,"
           " expected %zu..%zu", request, u, lo, hi);
  TU_CHECK(AO_malloc_usable_size(p) == u, "usable size changed");
  tu_fill(p, u, request);
  TU_CHECK(tu_check(p, u, request) == (size_t)-1, "usable bytes of %zu",
           request);
  AO_free(p);
}

int main(int argc, char **argv)
{
  size_t s;
  int local;

  (void)argc;
  tu_init(argv[0]);
  TU_CHECK(AO_malloc_usable_size(NULL) == 0, "usable size of NULL");
  TU_CHECK(AO_malloc_usable_size(&local) == 0, "usable size of a stack address");
  /* The size classes: 16-byte steps to 128, then eight per octave. */
  expect(0, 16, 16);
  expect(1, 16, 16);
  expect(16, 16, 16);
  expect(17, 32, 32);
  expect(100, 112, 112);
  expect(129, 144, 144);
  expect(1000, 1024, 1024);
  expect(1025, 1152, 1152);
  expect(32768, 32768, 32768);
  /* Page runs: whole pages. */
  expect(32769, 36864, 36864);
  expect(40000, 40960, 40960);
  expect(TU_BIG_RUN, (TU_BIG_RUN + 4095) & ~(size_t)4095,
         (TU_BIG_RUN + 4095) & ~(size_t)4095);      /* 200704 on 64-bit */
  expect(TU_MAX_RUN, TU_MAX_RUN, TU_MAX_RUN);
  for (s = 1; s <= 32768; s += s / 8 + 1)
    expect(s, s, s + s / 7 + 16);
  AO_malloc_enable_mmap();
  /* Direct mappings: the mapping, less the header, in 64 KiB units. */
  expect((size_t)1 << 20, (size_t)1 << 20, ((size_t)1 << 20) + (64 << 10));
  expect((size_t)5 << 20, (size_t)5 << 20, ((size_t)5 << 20) + (64 << 10));
  tu_info("classes, runs and mappings report their exact usable sizes");
  return 0;
}
