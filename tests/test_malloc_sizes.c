/* SPDX-License-Identifier: MIT */
/* Every size-class boundary up to 1 MiB: full-block patterns, 16-byte alignment, no overlap. */
/*
 * The class table is internal, so the test covers every size 0..4096, the
 * multiples of 16 up to 64 KiB and of 4 KiB up to 1 MiB (each -1, +0, +1),
 * 1.25^k steps and powers of two up to 1 MiB (each -1, +0, +1).  Blocks are
 * allocated in batches of many live blocks; every block is filled end to end
 * with a pattern unique to it, and only after the whole batch is allocated
 * are all patterns verified, all pointers checked for 16-byte alignment and
 * the sorted address ranges checked for overlap.  The first batch (sizes
 * 0..1024, 0.5 MiB) comes from the static heap; mmap is enabled afterwards.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define MAX_SIZE ((size_t)1 << 20)
#define MAX_SIZES 40000
#define BATCH_BYTES ((size_t)8 << 20)
#define BATCH_COUNT 4096

static size_t sizes[MAX_SIZES];
static size_t nsizes;
static struct tu_block batch[BATCH_COUNT];
static uint64_t next_tag = 1;
static uint64_t rng;
static unsigned long total_blocks;

static void add_size(size_t s)
{
  if (s > MAX_SIZE + 1)
    return;
  if (nsizes == MAX_SIZES)
    tu_fail("internal: size list too long");
  sizes[nsizes++] = s;
}

static void add_around(size_t s)
{
  if (s > 0)
    add_size(s - 1);
  add_size(s);
  add_size(s + 1);
}

static void verify_batch(size_t n, const char *phase)
{
  /* A block overwritten after other allocations: an overlapping or
   * reused live block. */
  tu_blocks_disjoint(batch, n, phase);
}

static void free_batch(size_t n)
{
  /* free in a random order */
  while (n > 0) {
    size_t j = (size_t)tu_below(&rng, n);
    AO_free(batch[j].p);
    batch[j] = batch[--n];
  }
}

/* Allocate sizes[from..to) in batches, verifying each batch. */
static void run_sizes(size_t from, size_t to, const char *phase)
{
  size_t i = from;
  while (i < to) {
    size_t n = 0, bytes = 0;
    while (i < to && n < BATCH_COUNT && bytes < BATCH_BYTES) {
      size_t s = sizes[i++];
      unsigned char *p = AO_malloc(s);
      if (p == NULL)
        tu_fail("%s: AO_malloc(%zu) returned NULL (%zu bytes live in "
                "%zu blocks)", phase, s, bytes, n);
      if ((uintptr_t)p % TU_ALIGN != 0)
        tu_fail("%s: AO_malloc(%zu) = %p is not 16-byte aligned", phase, s,
                (void *)p);
      batch[n].p = p;
      batch[n].size = s;
      batch[n].tag = tu_rand(&rng) ^ next_tag++;
      tu_fill(p, s, batch[n].tag);
      bytes += s;
      n++;
      total_blocks++;
    }
    verify_batch(n, phase);
    free_batch(n);
  }
}

int main(int argc, char **argv)
{
  size_t s, n_static, i;
  double x;
  int k;

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(60, "the size sweep");
  rng = tu_seed();

  /* static heap phase: every size 0..1024 live at once (~0.5 MiB) */
  for (s = 0; s <= 1024; s++)
    add_size(s);
  n_static = nsizes;
  run_sizes(0, n_static, "static heap, sizes 0..1024");

  AO_malloc_enable_mmap();
  nsizes = 0;
  for (s = 0; s <= 4096; s++)
    add_size(s);
  for (s = 4096 + 16; s <= ((size_t)64 << 10); s += 16)
    add_around(s);
  for (s = (size_t)68 << 10; s <= MAX_SIZE; s += 4096)
    add_around(s);
  for (x = 16; x <= (double)MAX_SIZE; x *= 1.25)
    add_around((size_t)x);
  for (k = 0; ((size_t)1 << k) <= MAX_SIZE; k++)
    add_around((size_t)1 << k);
  run_sizes(0, nsizes, "ascending sizes");

  /* again in a random order, so neighbours come from different classes */
  for (i = nsizes; i > 1; i--) {
    size_t j = (size_t)tu_below(&rng, i);
    size_t t = sizes[i - 1];
    sizes[i - 1] = sizes[j];
    sizes[j] = t;
  }
  run_sizes(0, nsizes, "shuffled sizes");

  tu_info("ok: %lu blocks of %zu distinct size requests", total_blocks,
          nsizes);
  return 0;
}
