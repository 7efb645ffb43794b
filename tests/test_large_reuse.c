/* SPDX-License-Identifier: MIT */
/* Freed direct mappings are reused whole (slack) without system calls or page faults, within bounds; big ones are advised huge pages. */
/*
 * Phase 0: the first large mapping of the process is not advised huge
 * pages (no madvise call): a block allocated once may be used sparsely.
 * Four blocks of 12 MiB are written, three freed (cached: all on 64-bit
 * targets, one on 32-bit ones, whose cache holds 16 MiB).
 * Phase 1: a 5 MiB request must take a cached 12 MiB mapping whole: no
 * mmap, munmap or mremap call, a usable size of about 12 MiB, and its
 * pages still resident (writing all of them faults in under a quarter).
 * A reused mapping is advised huge pages past its first 2 MiB: one
 * madvise call, and on x86_64 (where the tests run natively, not under
 * qemu-user) with transparent huge pages, "hg" in its smaps VmFlags.
 * Phase 2: a 1 MiB request may not hold a 12 MiB mapping (over 5 times
 * its size): the mapping it gets is cut down to about 1 MiB.
 * Phases 1-2 are skipped in the ASan and valgrind builds (mappings are
 * reused only near their size there, so that block records stay exact).
 */
#include "test_util.h"

#include <sys/mman.h>
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

/* Huge pages are advised only where base pages are 4 KiB. */
static unsigned long huge_advice_expected(void)
{
#ifdef MADV_HUGEPAGE
  return sysconf(_SC_PAGESIZE) == 4096;
#else
  return 0;
#endif
}

/* The usable size is the caller's to write, but the compiler sizes the
 * object by the request (alloc_size): it must not see where p came from. */
static void *beyond_request(void *p)
{
  void *volatile hidden = p;

  return hidden;
}

#if defined(__SANITIZE_ADDRESS__)
# define TRACKING_BUILD 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define TRACKING_BUILD 1
# endif
#endif
#if defined(AO_GPL_VALGRIND)
# define TRACKING_BUILD 1
#endif

static int tracking_build(void)
{
  const char *pre = getenv("LD_PRELOAD");

#if defined(TRACKING_BUILD)
  return 1;
#endif
  return pre != NULL && strstr(pre, "vgpreload") != NULL;
}

int main(int argc, char **argv)
{
  void *big[NBIG], *p, *q;
  unsigned long calls, advised;
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the large reuse test");
  AO_malloc_enable_mmap();
  for (i = 0; i < NBIG; i++) {
    unsigned long before = madvise_calls();

    big[i] = AO_malloc(12 * MIB);
    if (i == 0) {
      advised = madvise_calls() - before;
      tu_info("first 12 MiB mapping: %lu madvise call(s)", advised);
      TU_CHECK(advised == 0, "the process's first large mapping was "
               "advised huge pages");
    }
    TU_CHECK(big[i] != NULL, "AO_malloc(12 MiB) failed");
    memset(big[i], 0x5a, 12 * MIB);
  }
  /* One stays in use: slack is bounded by the bytes in use. */
  for (i = 0; i < NBIG - 1; i++)
    AO_free(big[i]);

  calls = os_calls();
  advised = madvise_calls();
  p = AO_malloc(5 * MIB);
  TU_CHECK(p != NULL, "AO_malloc(5 MiB) failed");
  calls = os_calls() - calls;
  advised = madvise_calls() - advised;
  if (!tracking_build()) {
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
    TU_CHECK(calls == 0, "reusing a cached mapping whole made %lu "
             "mmap/munmap/mremap calls", calls);
    tu_info("reused mapping: %lu madvise call(s)", advised);
    TU_CHECK(advised == huge_advice_expected(), "a reused mapping: %lu "
             "madvise calls, not %lu (huge-page advice)", advised,
             huge_advice_expected());
#if defined(__x86_64__)
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) == 0) {
      int hg = vma_has_flag((char *)p + 4 * MIB, "hg");

      tu_info("its smaps VmFlags past 2 MiB: huge-page advice %s",
              hg < 0 ? "unknown (no smaps)" : hg ? "yes" : "no");
      TU_CHECK(hg != 0, "a reused mapping has no MADV_HUGEPAGE advice");
    }
#endif

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
  AO_free(big[NBIG - 1]);
  tu_info("passed");
  return 0;
}
