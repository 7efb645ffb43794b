/* SPDX-License-Identifier: MIT */
/* errno: every NULL from AO_malloc sets ENOMEM (also in a handler); a success leaves errno alone. */
/*
 * Cases, with mmap disabled first (the static heap only), then enabled:
 *  - SIZE_MAX and sizes that cannot be rounded up: NULL, errno ENOMEM;
 *  - a size above the static heap while mmap is disabled: NULL, ENOMEM;
 *  - small, mid-size and page-run sizes that fit: a block, and a preset
 *    errno value survives (also through AO_free and AO_malloc_trim);
 *  - the same from a SIGUSR1 handler raised on the main thread;
 *  - after AO_malloc_enable_mmap(): SIZE_MAX and sizes no mapping can hold
 *    still give NULL with ENOMEM; a large mapping succeeds and keeps errno.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define MAGIC 4242
/* A page run that fits the static heap, even the smallest (64 KiB). */
#define RUN_SIZE (TU_STATIC_HEAP / 2 + 4096 < 100000 \
                  ? TU_STATIC_HEAP / 2 + 4096 : (size_t)100000)

static const char *volatile handler_fail;
/* volatile: the compiler must not see (and warn about) the sizes */
static volatile size_t size_max = SIZE_MAX;

static void expect_null(size_t sz, const char *what)
{
  void *p;

  errno = MAGIC;
  p = AO_malloc(sz);
  if (p != NULL)
    tu_fail("AO_malloc(%zu) (%s) returned a block", sz, what);
  if (errno != ENOMEM)
    tu_fail("AO_malloc(%zu) (%s) returned NULL with errno %d, not ENOMEM "
            "(%d)", sz, what, errno, ENOMEM);
}

static void expect_block(size_t sz, const char *what)
{
  unsigned char *p;

  errno = MAGIC;
  p = AO_malloc(sz);
  if (p == NULL)
    tu_fail("AO_malloc(%zu) (%s) returned NULL", sz, what);
  if (errno != MAGIC)
    tu_fail("AO_malloc(%zu) (%s) succeeded but changed errno to %d", sz,
            what, errno);
  if (sz > 0) {
    p[0] = 1;
    p[sz - 1] = 2;
  }
  AO_free(p);
  if (errno != MAGIC)
    tu_fail("AO_free of a %zu-byte block changed errno to %d", sz, errno);
}

/* Async-signal-safe twin of the two checks above. */
static void handler(int sig)
{
  static const size_t fits[] = { 0, 24, 3000, 32768, RUN_SIZE };
  int saved = errno;
  unsigned i;
  void *p;

  (void)sig;
  errno = MAGIC;
  p = AO_malloc(size_max);
  if (p != NULL || errno != ENOMEM) {
    handler_fail = "AO_malloc(SIZE_MAX) in a handler: no NULL with ENOMEM";
    return;
  }
  errno = MAGIC;
  p = AO_malloc(size_max - 4096);
  if (p != NULL || errno != ENOMEM) {
    handler_fail = "AO_malloc(SIZE_MAX - 4096) in a handler: no NULL with "
                   "ENOMEM";
    return;
  }
  for (i = 0; i < sizeof(fits) / sizeof(fits[0]); i++) {
    errno = MAGIC;
    p = AO_malloc(fits[i]);
    if (p == NULL || errno != MAGIC) {
      handler_fail = "AO_malloc in a handler: NULL, or errno changed on "
                     "success";
      return;
    }
    AO_free(p);
    if (errno != MAGIC) {
      handler_fail = "AO_free in a handler changed errno";
      return;
    }
  }
  errno = saved;
}

static void in_handler(const char *phase)
{
  handler_fail = NULL;
  raise(SIGUSR1);
  if (handler_fail != NULL)
    tu_fail("%s: %s", phase, handler_fail);
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  size_t over_heap = TU_STATIC_HEAP + 4096;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the errno checks");
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);

  /* The static heap only. */
  expect_block(16, "small, first call");
  expect_null(SIZE_MAX, "SIZE_MAX, static heap");
  expect_null(SIZE_MAX - 64, "near SIZE_MAX, static heap");
  expect_null(over_heap, "above the static heap, mmap disabled");
  expect_null(SIZE_MAX / 4, "a quarter of the address space, mmap disabled");
  expect_block(0, "zero bytes");
  expect_block(1000, "small");
  expect_block(20000, "mid-size class");
  expect_block(RUN_SIZE, "page run");
  errno = MAGIC;
  AO_malloc_trim();
  TU_CHECK(errno == MAGIC, "AO_malloc_trim changed errno to %d", errno);
  in_handler("static heap");
  /* A failure does not stick: the next success keeps errno again. */
  expect_null(over_heap, "above the static heap, again");
  expect_block(64, "small after a failure");

  /* With mmap. */
  AO_malloc_enable_mmap();
  expect_block(over_heap, "above the static heap, mmap enabled");
  expect_block((size_t)3 << 20, "direct mapping");
  expect_null(SIZE_MAX, "SIZE_MAX, mmap enabled");
  /* A request mmap itself refuses: three quarters of the address space
   * (half of it can be mapped by a 32-bit program on a 64-bit kernel or
   * under qemu-user, which give it all 4 GiB). */
  expect_null(SIZE_MAX / 4 * 3, "three quarters of the address space, mmap enabled");
  in_handler("mmap enabled");
  expect_block(48, "small at the end");
  tu_info("ok: NULL always came with ENOMEM, successes kept errno");
  return 0;
}
