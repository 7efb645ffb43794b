/* SPDX-License-Identifier: MIT */
/* libaomalloc: malloc, calloc, realloc, reallocarray, posix_memalign... keep glibc's semantics, one heap with AO_malloc. */
#include "test_util.h"
#include "atomic_ops_malloc.h"

#include <malloc.h>

/* Sizes the compiler must not see (it warns about impossible requests).
 * wide * wide overflows: 2^40 on 64-bit targets, 2^20 on 32-bit ones. */
static volatile size_t wide = (size_t)1 << (5 * sizeof(size_t)),
                       half = SIZE_MAX / 2, huge = SIZE_MAX - 4096;

int main(int argc, char **argv)
{
  void *p, *q, *r;
  unsigned char *z;
  size_t i;
  int rc;
  FILE *f;
  char buf[256];
  struct mallinfo2 mi;

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(60, "glibc semantics");

  /* malloc(0): a unique, freeable pointer. */
  p = malloc(0);
  q = malloc(0);
  TU_CHECK(p != NULL && q != NULL && p != q, "malloc(0): %p %p", p, q);
  free(q);

  /* realloc(p, 0) frees and returns NULL (glibc), without touching errno;
   * realloc(NULL, 0) is malloc(0). */
  errno = 1234;
  q = realloc(p, 0);
  TU_CHECK(q == NULL && errno == 1234, "realloc(p, 0) = %p, errno %d", q, errno);
  q = realloc(NULL, 0);
  TU_CHECK(q != NULL, "realloc(NULL, 0) = NULL");
  free(q);

  /* realloc keeps the contents. */
  p = malloc(100);
  memset(p, 0xab, 100);
  p = realloc(p, 100000);
  TU_CHECK(p != NULL, "realloc grow failed");
  for (i = 0; i < 100; i++)
    TU_CHECK(((unsigned char *)p)[i] == 0xab, "realloc lost byte %zu", i);
  free(p);

  /* Overflows and impossible sizes: NULL with ENOMEM. */
  errno = 0;
  p = calloc(wide, wide);
  TU_CHECK(p == NULL && errno == ENOMEM, "calloc overflow: %p errno %d", p, errno);
  errno = 0;
  p = reallocarray(NULL, half, 3);
  TU_CHECK(p == NULL && errno == ENOMEM, "reallocarray overflow: %p errno %d", p, errno);
  errno = 0;
  p = malloc(huge);
  TU_CHECK(p == NULL && errno == ENOMEM, "malloc(huge): %p errno %d", p, errno);
  errno = 0;
  q = malloc(16);
  p = realloc(q, huge);
  TU_CHECK(p == NULL && errno == ENOMEM, "realloc(huge): %p errno %d", p, errno);
  free(q);                               /* untouched by the failure */

  /* reallocarray resizes like realloc. */
  p = reallocarray(NULL, 10, 8);
  TU_CHECK(p != NULL && malloc_usable_size(p) >= 80, "reallocarray(NULL, 10, 8)");
  p = reallocarray(p, 1000, 8);
  TU_CHECK(p != NULL && malloc_usable_size(p) >= 8000, "reallocarray grow");
  free(p);

  /* calloc zeroes, also recycled memory. */
  p = malloc(4096);
  memset(p, 0xff, 4096);
  free(p);
  z = calloc(64, 64);
  TU_CHECK(z != NULL, "calloc(64, 64)");
  for (i = 0; i < 4096; i++)
    TU_CHECK(z[i] == 0, "calloc: byte %zu is %u", i, z[i]);
  free(z);

  /* posix_memalign's EINVAL rules; *res untouched on failure. */
  r = &r;
  rc = posix_memalign(&r, 0, 8);
  TU_CHECK(rc == EINVAL && r == &r, "posix_memalign(0) = %d", rc);
  rc = posix_memalign(&r, sizeof(void *) / 2, 8);
  TU_CHECK(rc == EINVAL && r == &r, "posix_memalign(sizeof(void *) / 2) = %d", rc);
  rc = posix_memalign(&r, 24, 8);
  TU_CHECK(rc == EINVAL && r == &r, "posix_memalign(24) = %d", rc);
  rc = posix_memalign(&r, 16, 100);
  TU_CHECK(rc == 0 && r != &r && ((uintptr_t)r & 15) == 0, "posix_memalign(16) = %d", rc);
  free(r);

  /* free keeps errno and ignores NULL. */
  p = malloc(1 << 20);
  errno = 4321;
  free(p);
  free(NULL);
  TU_CHECK(errno == 4321, "free changed errno to %d", errno);

  /* One heap: AO_* and the C names take each other's blocks. */
  p = malloc(100);
  TU_CHECK(AO_malloc_usable_size(p) >= 100, "AO_malloc_usable_size(malloc(100)) = %zu",
           AO_malloc_usable_size(p));
  AO_free(p);
  p = AO_malloc(3000);
  TU_CHECK(malloc_usable_size(p) >= 3000, "malloc_usable_size(AO_malloc(3000))");
  p = realloc(p, 6000);
  free(p);
  p = strdup("a string from the C library's own malloc call");
  AO_free(p);
  free(AO_calloc(3, 5));
  TU_CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");

  /* The introspection names answer (figures are AO_malloc_stats'). */
  TU_CHECK(mallopt(M_ARENA_MAX, 1) == 1, "mallopt refused");
  mi = mallinfo2();
  (void)mi;
  rc = malloc_trim(0);
  TU_CHECK(rc == 0 || rc == 1, "malloc_trim = %d", rc);
  f = tmpfile();
  TU_CHECK(f != NULL, "tmpfile");
  TU_CHECK(malloc_info(0, f) == 0, "malloc_info failed");
  rewind(f);
  TU_CHECK(fgets(buf, sizeof(buf), f) != NULL && strncmp(buf, "<malloc ", 8) == 0,
           "malloc_info wrote no <malloc> element");
  fclose(f);
  errno = 0;
  TU_CHECK(malloc_info(1, stdout) == -1 && errno == EINVAL, "malloc_info(1) accepted");

  tu_info("malloc(0) unique, realloc(p, 0) = NULL, ENOMEM/EINVAL rules, one heap with AO_*: ok");
  return 0;
}
