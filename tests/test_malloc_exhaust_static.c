/* SPDX-License-Identifier: MIT */
/* Static heap only (mmap never enabled): exhaustion, no mmap, reuse across size classes. */
/*
 * Without AO_malloc_enable_mmap() the allocator lives in its static heap
 * (2 MiB by default).  This test checks that
 *  - on a fresh heap every request up to 65535-8 bytes succeeds;
 *  - filling the heap with fixed-size and mixed-size blocks yields a
 *    plausible total (at least half the heap) before AO_malloc returns NULL, and
 *    the blocks are intact, aligned and disjoint;
 *  - the process never maps memory for it: VmSize grows by at most 64 KiB;
 *  - memory freed in one size class serves another: after filling with
 *    48-byte blocks and freeing them, 32 KiB blocks again get half the heap, and
 *    the other way round.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"

#define MAXBLOCKS (TU_STATIC_HEAP / 16 + 1024)
#define FRESH_MAX ((size_t)65535 - 8)
#define MIN_TOTAL (TU_STATIC_HEAP / 2)
#define CAP_TOTAL (4 * TU_STATIC_HEAP + ((size_t)256 << 20))
#define VM_SLACK_KB 64

static struct tu_block blocks[MAXBLOCKS]; /* static: no allocation while measuring */
static size_t nblocks;
static uint64_t rng;
static long vm0;

static void check_vm(const char *phase)
{
  long vm = tu_vmsize_kb();
  if (vm0 < 0 || vm < 0)
    return;
  if (vm - vm0 > VM_SLACK_KB)
    tu_fail("%s: VmSize grew by %ld KiB without AO_malloc_enable_mmap() "
            "(memory was mapped; the static heap must be used alone)", phase,
            vm - vm0);
}

static void verify_all(const char *phase)
{
  tu_blocks_disjoint(blocks, nblocks, phase);
}

static void free_all(void)
{
  while (nblocks > 0) {
    size_t j = (size_t)tu_below(&rng, nblocks);
    AO_free(blocks[j].p);
    blocks[j] = blocks[--nblocks];
  }
}

static int take(size_t s, const char *phase)
{
  unsigned char *p = AO_malloc(s);
  if (p == NULL)
    return 0;
  TU_CHECK((uintptr_t)p % TU_ALIGN == 0, "%s: AO_malloc(%zu) = %p misaligned",
           phase, s, (void *)p);
  TU_CHECK(nblocks < MAXBLOCKS, "%s: more than %zu blocks without NULL",
           phase, (size_t)MAXBLOCKS);
  blocks[nblocks].p = p;
  blocks[nblocks].size = s;
  blocks[nblocks].tag = tu_rand(&rng);
  tu_fill(p, s, blocks[nblocks].tag);
  nblocks++;
  return 1;
}

/* Allocate blocks of size s until NULL; returns the bytes obtained. */
static size_t fill_fixed(size_t s, const char *phase)
{
  size_t total = 0;
  while (take(s, phase)) {
    total += s;
    TU_CHECK(total <= CAP_TOTAL, "%s: %zu bytes allocated and AO_malloc "
             "still succeeds without mmap", phase, total);
  }
  return total;
}

/* Random sizes until 200 NULLs in a row; returns the bytes obtained. */
static size_t fill_mixed(const char *phase)
{
  size_t total = 0;
  int misses = 0;
  while (misses < 200) {
    size_t s = 1 + tu_logsize(&rng, FRESH_MAX - 1);
    if (take(s, phase)) {
      total += s;
      misses = 0;
      TU_CHECK(total <= CAP_TOTAL, "%s: %zu bytes allocated and AO_malloc "
               "still succeeds without mmap", phase, total);
    } else {
      misses++;
    }
  }
  return total;
}

static void fresh_sizes(const char *phase)
{
  size_t s;
  for (s = 1; s <= FRESH_MAX; s = s < 64 ? s + 1 : s + s / 7 + 1) {
    TU_CHECK(take(s, phase), "%s: AO_malloc(%zu) returned NULL on an empty "
             "heap", phase, s);
    verify_all(phase);
    free_all();
  }
  TU_CHECK(take(FRESH_MAX, phase), "%s: AO_malloc(%zu) returned NULL on an "
           "empty heap", phase, FRESH_MAX);
  verify_all(phase);
  free_all();
}

static void expect_total(size_t total, const char *phase)
{
  tu_info("%s: %zu KiB before NULL", phase, total >> 10);
  if (total < MIN_TOTAL)
    tu_fail("%s: only %zu bytes could be allocated from the static heap "
            "(expected at least %zu; memory freed earlier in other size "
            "classes not reused?)", phase, total, MIN_TOTAL);
}

int main(int argc, char **argv)
{
  size_t total;

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(30, "the static heap exhaustion");
  rng = tu_seed();
  /* under qemu-user (.ci/cross.sh) VmSize is the emulator's: no VmSize checks */
  vm0 = getenv("AO_TEST_UNDER_QEMU") != NULL ? -1 : tu_vmsize_kb();

  /* the very first request is the biggest the static heap must serve */
  TU_CHECK(take(FRESH_MAX, "first call"), "AO_malloc(%zu) as the first call "
           "returned NULL", FRESH_MAX);
  verify_all("first call");
  free_all();
  fresh_sizes("fresh heap");
  check_vm("fresh heap");

  total = fill_fixed(48, "48-byte blocks");
  verify_all("48-byte blocks");
  check_vm("48-byte blocks");
  expect_total(total, "48-byte blocks");
  free_all();

  total = fill_fixed((size_t)32 << 10, "32 KiB blocks after freeing 48-byte ones");
  verify_all("32 KiB blocks");
  check_vm("32 KiB blocks");
  expect_total(total, "32 KiB blocks after freeing 48-byte ones");
  free_all();

  total = fill_mixed("mixed sizes");
  verify_all("mixed sizes");
  check_vm("mixed sizes");
  expect_total(total, "mixed sizes");
  free_all();

  total = fill_fixed(48, "48-byte blocks after freeing mixed ones");
  verify_all("48-byte blocks again");
  expect_total(total, "48-byte blocks after freeing mixed ones");
  free_all();

  total = fill_fixed(4000, "4000-byte blocks");
  verify_all("4000-byte blocks");
  expect_total(total, "4000-byte blocks");
  free_all();

  fresh_sizes("emptied heap");

  /* Bigger than the guaranteed size, still without mmap: NULL or a good
   * block from the static heap, never a mapping. */
  {
    static const size_t big[] = { 65536, 100000, (size_t)1 << 20,
                                  (size_t)4 << 20, (size_t)64 << 20 };
    unsigned i;
    for (i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
      if (take(big[i], "big without mmap")) {
        verify_all("big without mmap");
        free_all();
      }
      check_vm("requests above 64 KiB without mmap");
    }
  }
  check_vm("end");
  tu_info("ok");
  return 0;
}
