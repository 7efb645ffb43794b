/* SPDX-License-Identifier: MIT */
/* Freed direct mappings are reused whole (slack) without system calls or page faults, within bounds; big ones are advised huge pages. */
/*
 * Four blocks of 12 MiB are written and freed (cached: all on 64-bit
 * targets, one on 32-bit ones, whose cache holds 16 MiB).
 * Phase 1: a 5 MiB request must take a cached 12 MiB mapping whole: no
 * mmap, munmap or mremap call, a usable size of about 12 MiB, and its
 * pages still resident (writing all of them faults in under a quarter).
 * Phase 2: a 1 MiB request may not hold a 12 MiB mapping (over 5 times
 * its size): the mapping it gets is cut down to about 1 MiB.
 * Phase 3: a fresh mapping of 8 MiB is advised huge pages (a madvise
 * call); on x86_64, where the tests run natively, where the kernel has
 * transparent huge pages, its smaps VmFlags show "hg".
 * Phases 1-2 are skipped under ASan and valgrind (mappings are reused
 * only near their size there, so that block records stay exact).
 */
#include "test_util.h"

#include <sys/resource.h>

#include "atomic_ops_malloc.h"

#define MIB ((size_t)1 << 20)
#define NBIG 4

static long minor_faults(void)
{
  struct rusage ru;

  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static unsigned long os_calls(void)
{
  struct AO_malloc_stats st;

  AO_malloc_stats(&st);
  return st.mmap_calls + st.munmap_calls + st.mremap_calls;
}

static unsigned long madvise_calls(void)
{
  struct AO_malloc_stats st;

  AO_malloc_stats(&st);
  return st.madvise_calls;
}

/* 1 if the smaps entry of the mapping holding p has flag ("hg"), 0 if
 * not, -1 if it cannot be read. */
static int vma_has_flag(const void *p, const char *flag)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int inside = 0, found = -1;

  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;

    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      char pat[8];

      snprintf(pat, sizeof pat, " %s", flag);
      found = strstr(line, pat) != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

/* The usable size is the caller's to write, but the compiler sizes the
 * object by the request (alloc_size): it must not see where p came from. */
static void *beyond_request(void *p)
{
  void *volatile hidden = p;

  return hidden;
}

static int tracking_build(void)
{
  const char *pre = getenv("LD_PRELOAD");

#if defined(__SANITIZE_ADDRESS__)
  return 1;
#endif
  return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

int main(int argc, char **argv)
{
  void *big[NBIG], *p, *q;
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the large reuse test");
  AO_malloc_enable_mmap();
  for (i = 0; i < NBIG; i++) {
    big[i] = AO_malloc(12 * MIB);
    TU_CHECK(big[i] != NULL, "AO_malloc(12 MiB) failed");
    memset(big[i], 0x5a, 12 * MIB);
  }
  for (i = 0; i < NBIG; i++)
    AO_free(big[i]);

  p = AO_malloc(5 * MIB);
  TU_CHECK(p != NULL, "AO_malloc(5 MiB) failed");
  if (!tracking_build()) {
    unsigned long calls = os_calls();
    size_t usable = AO_malloc_usable_size(p);
    long faults, pages;

    TU_CHECK(usable >= 11 * MIB, "5 MiB request: usable size %zu, not the "
             "cached 12 MiB mapping whole", usable);
    faults = minor_faults();
    memset(beyond_request(p), 0xa5, usable);
    faults = minor_faults() - faults;
    pages = (long)(usable / 4096);
    tu_info("5 MiB request: usable %zu KiB, writing it all: %ld faults "
            "(%ld pages)", usable >> 10, faults, pages);
    TU_CHECK(faults < pages / 4, "%ld faults writing %ld pages of a reused "
             "mapping (its pages were resident)", faults, pages);
    TU_CHECK(os_calls() == calls, "reusing a cached mapping whole made %lu "
             "system calls", os_calls() - calls);

    q = AO_malloc(1 * MIB);
    TU_CHECK(q != NULL, "AO_malloc(1 MiB) failed");
    usable = AO_malloc_usable_size(q);
    tu_info("1 MiB request: usable %zu KiB", usable >> 10);
    TU_CHECK(usable >= MIB && usable < 2 * MIB, "1 MiB request: usable "
             "size %zu (a block holds at most 5 times its request)", usable);
    memset(beyond_request(q), 0x33, usable);
    AO_free(q);
  }

  AO_free(p);

  {
    unsigned long advised;

    AO_malloc_trim();                  /* nothing cached: a fresh mapping */
    advised = madvise_calls();
    p = AO_malloc(8 * MIB);
    TU_CHECK(p != NULL, "AO_malloc(8 MiB) failed");
    advised = madvise_calls() - advised;
    tu_info("fresh 8 MiB mapping: %lu madvise call(s)", advised);
    TU_CHECK(advised >= 1, "a fresh 8 MiB mapping was not advised");
  }
#if defined(__x86_64__)
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0) {
    int hg = vma_has_flag(p, "hg");

    tu_info("its smaps VmFlags: huge-page advice %s",
            hg < 0 ? "unknown (no smaps)" : hg ? "yes" : "no");
    TU_CHECK(hg != 0, "a large block's mapping has no MADV_HUGEPAGE advice");
  }
#endif
  AO_free(p);
  tu_info("passed");
  return 0;
}
