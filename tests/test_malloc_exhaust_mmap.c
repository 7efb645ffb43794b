/* SPDX-License-Identifier: MIT */
/* With mmap enabled: hundreds of MiB in mixed sizes and 100 KB..64 MiB objects, verified and reused. */
/*
 * After AO_malloc_enable_mmap() the allocator must go far beyond its static
 * heap: each cycle allocates 256 MiB in mixed sizes (up to 1 MiB), fills
 * every block completely, verifies them all, checks alignment and
 * disjointness, and frees them in random order.  Then objects of 100 KB up
 * to 64 MiB (odd sizes included) get the same treatment.  Cycles repeat, and
 * the address space after the last cycle must not exceed that after the
 * first by a whole cycle's worth: freed memory is reused or returned.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define MAXBLOCKS (1 << 17)

static struct tu_block blocks[MAXBLOCKS];
static size_t nblocks;
static uint64_t rng;

static void take(size_t s, const char *phase)
{
  unsigned char *p = AO_malloc(s);
  if (p == NULL)
    tu_fail("%s: AO_malloc(%zu) returned NULL with mmap enabled (%zu blocks "
            "live)", phase, s, nblocks);
  TU_CHECK((uintptr_t)p % TU_ALIGN == 0, "%s: AO_malloc(%zu) = %p misaligned",
           phase, s, (void *)p);
  TU_CHECK(nblocks < MAXBLOCKS, "internal: too many blocks");
  blocks[nblocks].p = p;
  blocks[nblocks].size = s;
  blocks[nblocks].tag = tu_rand(&rng);
  tu_fill(p, s, blocks[nblocks].tag);
  nblocks++;
}

static void verify_free_all(const char *phase)
{
  tu_blocks_disjoint(blocks, nblocks, phase);
  while (nblocks > 0) {
    size_t j = (size_t)tu_below(&rng, nblocks);
    AO_free(blocks[j].p);
    blocks[j] = blocks[--nblocks];
  }
}

static void mixed_cycle(size_t target, const char *phase)
{
  size_t total = 0;
  while (total < target) {
    size_t s = tu_below(&rng, 16) == 0 ? tu_logsize(&rng, (size_t)1 << 20)
                                        : tu_logsize(&rng, (size_t)256 << 10);
    take(s, phase);
    total += s;
  }
  verify_free_all(phase);
}

static void large_cycle(const char *phase)
{
  static const size_t sizes[] = {
    100000, 100001, 131072, 131073, 250000, 1048575, 1048576, 1048577,
    (size_t)3 << 20 | 5, (size_t)8 << 20, (size_t)16 << 20 | 4095,
    ((size_t)32 << 20) - 1, (size_t)64 << 20
  };
  unsigned i;
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    take(sizes[i], phase);
  verify_free_all(phase);
  /* one at a time, each freed before the next: reuse of a single slot */
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    take(sizes[sizeof(sizes) / sizeof(sizes[0]) - 1 - i], phase);
    verify_free_all(phase);
  }
}

int main(int argc, char **argv)
{
  size_t target = (size_t)tu_iters(256) << 20;
  int cycles = 3, c;
  long vm_first = -1, vm_last = -1, vm_large_first = -1, vm_large_last = -1;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the mmap exhaustion");
  rng = tu_seed();
  AO_malloc_enable_mmap();

  /* beyond the static heap right away */
  take((size_t)4 << 20, "first request above the static heap");
  verify_free_all("first request above the static heap");

  for (c = 0; c < cycles; c++) {
    mixed_cycle(target, "mixed sizes");
    if (c == 0)
      vm_first = tu_vmsize_kb();
    vm_last = tu_vmsize_kb();
  }
  for (c = 0; c < cycles; c++) {
    large_cycle("large objects");
    if (c == 0)
      vm_large_first = tu_vmsize_kb();
    vm_large_last = tu_vmsize_kb();
  }
  if (vm_first >= 0 && vm_last - vm_first > (long)(target >> 10))
    tu_fail("address space grew by %ld KiB over %d cycles of allocating and "
            "freeing %zu MiB: freed memory is not reused", vm_last - vm_first,
            cycles - 1, target >> 20);
  if (vm_large_first >= 0 && vm_large_last - vm_large_first > 128L * 1024)
    tu_fail("address space grew by %ld KiB over repeated large-object cycles:"
            " freed large objects are not reused or unmapped",
            vm_large_last - vm_large_first);
  tu_info("ok: VmSize %ld KiB after first cycle, %ld KiB after the last",
          vm_first, vm_large_last);
  return 0;
}
