/* SPDX-License-Identifier: MIT */
/* mmap failing at every call site (the test interposes mmap): NULL, no crash, nothing leaked, errno ENOMEM on NULL and kept on success, recovery. */
/*
 * The program defines mmap and munmap itself.  The library's calls reach
 * them (through the PLT of the shared library, or resolved at link time in
 * a static build) and they forward to the system call, unless the current
 * call is to fail: then MAP_FAILED with errno ENOMEM.  The interposer also
 * keeps the set of live mappings (munmap removes, splitting ranges), so
 * leaks are measured exactly.  If the library's mmap calls never reach it,
 * the test fails: it would otherwise prove nothing.
 *
 * The parent never uses the allocator: every scenario runs in a forked
 * child, which starts from a pristine allocator and reports through a pipe.
 * The workload (one thread): blocks of 16 B..1 KiB, 1..32 KiB, page runs up
 * to the largest run, direct large objects (one bigger than a segment), a
 * freed large object allocated again (the reuse cache), half of everything
 * freed and more small blocks; every block is written (whole blocks up to
 * 64 KiB, every page of larger ones) and verified at the end.  Then memory
 * "returns" (no more failures) and blocks of every kind, a new large
 * mapping and 34 MiB of 32 KiB blocks must all be had; then everything is
 * verified and freed and AO_malloc_trim() called.  Checked in every run:
 *  - AO_malloc returns a usable block or NULL, never crashes, sets errno
 *    to ENOMEM with every NULL and leaves it alone otherwise, and AO_free
 *    and AO_malloc_trim leave it alone (libatomic-malloc(3));
 *  - after the trim only whole segments stay mapped (32 MiB, 4 MiB on 32-bit; aligned: the
 *    library never unmaps segments, by design); any other byte still
 *    mapped is a leak (a partial mapping left by a failed attempt, a lost
 *    large object);
 *  - the segments are no more than in the failure-free run plus one (a
 *    failed request changes which blocks are live, hence how pages pack);
 *  - blocks allocated before a failure are intact (checked at the first
 *    NULL and at the end).
 * Scenarios:
 *  1. failure-free run: counts the mmap calls, N;
 *  2. the n-th call fails, for n = 1, 2, ... until a run sees no failure;
 *  3. every call from the n-th on fails until the workload ends, then
 *     memory returns, for every n;
 *  4. three threads allocate and free mixed sizes while every other mmap
 *     call fails; then memory returns and each must get blocks of every
 *     kind;
 *  5. every other call fails and the interposer raise()s SIGUSR1 when it
 *     fails: the handler allocates (small, page run, large) exactly while
 *     the main thread is inside the failing path;
 *  6. RLIMIT_AS below what a segment needs: NULL, then the limit is raised
 *     and allocation works again.  Skipped (reported, not failed) where the
 *     limit has no effect, e.g. under qemu user emulation.
 */
#include "test_util.h"

#include <stdarg.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "atomic_ops_malloc.h"

/* the library's segments: 32 MiB, 4 MiB on 32-bit targets (src/internal.h) */
#define SEG (UINTPTR_MAX > 0xffffffffu ? (size_t)32 << 20 : (size_t)4 << 20)
#define RUN_MAX ((size_t)8 * sizeof(void *) * 4096) /* largest page run */
#define FULL_MAX ((size_t)64 << 10)          /* written whole up to this */
#define ERRNO_MAGIC 4242
#define CHILD_TIMEOUT 240
#define MAXCALLS 256

/* ---- the interposer ----------------------------------------------------- */

struct range {
  uintptr_t start, len;
};
#define MAXRANGES 2048
static struct range ranges[MAXRANGES];
static unsigned nranges;
static int track_overflow;
static volatile int track_lock;

static volatile unsigned long mmap_calls, mmap_failed, munmap_calls;
/* Calls are numbered from 1; call n fails when fail_first <= n < fail_end
 * and (n - fail_first) is a multiple of fail_stride. */
static volatile unsigned long fail_first, fail_end, fail_stride = 1;
static volatile int raise_sig;           /* raised by a failing call */
static volatile sig_atomic_t in_handler;
/* What the workload was asking for at each call (for the coverage line). */
static volatile int cur_kind;
static unsigned char call_kind[MAXCALLS];

static void *sys_mmap(void *a, size_t len, int prot, int flags, int fd,
                      long long off)
{
#ifdef SYS_mmap2
  /* 32-bit targets: the offset counts 4096-byte units */
  return (void *)syscall(SYS_mmap2, (long)a, (long)len, (long)prot,
                         (long)flags, (long)fd, (long)(off / 4096));
#else
  return (void *)syscall(SYS_mmap, (long)a, (long)len, (long)prot,
                         (long)flags, (long)fd, (long)off);
#endif
}

static int sys_munmap(void *a, size_t len)
{
  return (int)syscall(SYS_munmap, (long)a, (long)len);
}

static uintptr_t page_up(uintptr_t n)
{
  return (n + 4095) & ~(uintptr_t)4095;
}

static void track_add(uintptr_t a, uintptr_t len)
{
  if (nranges == MAXRANGES) {
    track_overflow = 1;
    return;
  }
  ranges[nranges].start = a;
  ranges[nranges].len = page_up(len);
  nranges++;
}

/* Remove [a, a + len) from every tracked range, splitting where needed. */
static void track_remove(uintptr_t a, uintptr_t len)
{
  uintptr_t end = a + page_up(len);
  unsigned i = 0;

  while (i < nranges) {
    uintptr_t s = ranges[i].start, e = s + ranges[i].len;
    if (e <= a || s >= end) {
      i++;
      continue;
    }
    if (s < a && e > end) {             /* hole in the middle: split */
      ranges[i].len = a - s;
      track_add(end, e - end);
      i++;
    } else if (s < a) {
      ranges[i].len = a - s;
      i++;
    } else if (e > end) {
      ranges[i].start = end;
      ranges[i].len = e - end;
      i++;
    } else {
      ranges[i] = ranges[--nranges];    /* wholly gone; recheck slot i */
    }
  }
}

/* Signals are blocked while the lock is held, so a handler that reaches
 * the interposer on the same thread cannot find it taken. */
static void track_enter(sigset_t *old)
{
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, old);
  while (__atomic_exchange_n(&track_lock, 1, __ATOMIC_ACQUIRE))
    ;
}

static void track_leave(const sigset_t *old)
{
  __atomic_store_n(&track_lock, 0, __ATOMIC_RELEASE);
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

static int should_fail(unsigned long n)
{
  unsigned long first = fail_first, end = fail_end, stride = fail_stride;
  return n >= first && n < end && (stride <= 1 || (n - first) % stride == 0);
}

static void *interposed_mmap(void *addr, size_t len, int prot, int flags,
                             int fd, long long off)
{
  sigset_t old;
  unsigned long n;
  void *p = MAP_FAILED;
  int fail, err = 0;

  /* Every mapping the library asks for is over-sized by one segment's
   * alignment; smaller requests come from others in the process (the
   * ASan runtime, for one): neither failed nor counted. */
  if (len < SEG)
    return sys_mmap(addr, len, prot, flags, fd, off);
  track_enter(&old);
  n = ++mmap_calls;
  if (n <= MAXCALLS)
    call_kind[n - 1] = (unsigned char)cur_kind;
  fail = should_fail(n);
  if (fail) {
    mmap_failed++;
  } else {
    p = sys_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
      track_add((uintptr_t)p, len);
    else
      err = errno;
  }
  track_leave(&old);
  if (fail) {
    /* A handler now runs inside the library's failing mmap call. */
    if (raise_sig != 0 && !in_handler)
      raise(raise_sig);
    err = ENOMEM;
  }
  if (p == MAP_FAILED)
    errno = err;
  return p;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  return interposed_mmap(addr, len, prot, flags, fd, (long long)off);
}

#if defined(__USE_LARGEFILE64) && !defined(__USE_FILE_OFFSET64)
/* A library built with 64-bit file offsets on a 32-bit target calls this. */
void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
             off64_t off)
{
  return interposed_mmap(addr, len, prot, flags, fd, (long long)off);
}
#endif

int munmap(void *addr, size_t len)
{
  sigset_t old;
  int rc, err;

  track_enter(&old);
  munmap_calls++;
  rc = sys_munmap(addr, len);
  err = errno;
  if (rc == 0)
    track_remove((uintptr_t)addr, len);
  track_leave(&old);
  if (rc != 0)
    errno = err;
  return rc;
}

/* The reuse of cached large mappings resizes and moves them (mremap):
 * never failed, only followed, so that the set stays exact. */
void *mremap(void *addr, size_t old_len, size_t new_len, int flags, ...)
{
  sigset_t old;
  void *to = NULL, *p;
  int err;

  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    to = va_arg(ap, void *);
    va_end(ap);
  }
  track_enter(&old);
  p = (void *)syscall(SYS_mremap, (long)addr, (long)old_len, (long)new_len,
                      (long)flags, (long)to);
  err = errno;
  if (p != MAP_FAILED) {
    track_remove((uintptr_t)addr, old_len);
    track_remove((uintptr_t)p, new_len);
    track_add((uintptr_t)p, new_len);
  }
  track_leave(&old);
  if (p == MAP_FAILED)
    errno = err;
  return p;
}

/* Whole segments (the library keeps them for good) and the other bytes. */
static void mapped_now(unsigned long *segments, unsigned long *other)
{
  sigset_t old;
  unsigned i;

  *segments = *other = 0;
  track_enter(&old);
  for (i = 0; i < nranges; i++) {
    if (ranges[i].len == SEG && ranges[i].start % SEG == 0)
      (*segments)++;
    else
      *other += (unsigned long)ranges[i].len;
  }
  track_leave(&old);
}

/* ---- results, reported by each child through a pipe --------------------- */

struct result {
  unsigned long calls, failed, munmaps;
  unsigned long calls_before;     /* calls while failures were injected */
  unsigned long nulls;            /* AO_malloc NULLs while memory failed */
  unsigned long calls_after;      /* mmap calls once memory had returned */
  unsigned long segments, other;  /* mapped after free-all and trim */
  unsigned long handler_allocs, handler_nulls;
  unsigned long rlimit_effective;
  unsigned long peak_live;        /* threads: peak bytes in segments */
  unsigned char kind[MAXCALLS];
};

static struct result res;

/* ---- the workload ------------------------------------------------------- */

enum { K_SMALL, K_MEDIUM, K_RUN, K_LARGE, K_HUGE, K_META, NKINDS };
static const char *const kind_name[NKINDS] = {
  "small", "medium", "page run", "large", "larger than a segment", "other"
};

struct blk {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

#define MAXB 16384
static struct blk blks[MAXB];
static size_t nb;
static uint64_t rng;
static int null_seen;

static void blk_fill(const struct blk *b)
{
  if (b->size <= FULL_MAX)
    tu_fill(b->p, b->size, b->tag);
  else
    tu_fill_sparse(b->p, b->size, b->tag);
}

static size_t blk_check(const struct blk *b)
{
  return b->size <= FULL_MAX ? tu_check(b->p, b->size, b->tag)
                             : tu_check_sparse(b->p, b->size, b->tag);
}

static void verify_all(const char *when)
{
  size_t i, bad;
  for (i = 0; i < nb; i++)
    if ((bad = blk_check(&blks[i])) != (size_t)-1)
      tu_fail("%s: block %p of %zu bytes corrupted at byte %zu (mmap call "
              "%lu of the run, %lu failed)", when, (void *)blks[i].p,
              blks[i].size, bad, mmap_calls, mmap_failed);
}

/* must: memory is available, so NULL is a failure. */
static void *take(size_t s, int kind, int must)
{
  unsigned char *p;
  cur_kind = kind;
  errno = ERRNO_MAGIC;
  p = AO_malloc(s);
  if (errno != (p == NULL ? ENOMEM : ERRNO_MAGIC))
    tu_fail("AO_malloc(%zu) %s errno %d (was %d; mmap call %lu, %lu failed "
            "so far)", s, p == NULL ? "returned NULL with" : "succeeded with",
            errno, ERRNO_MAGIC, mmap_calls, mmap_failed);
  cur_kind = K_META;
  if (p == NULL) {
    if (must)
      tu_fail("AO_malloc(%zu) (%s) returned NULL after memory returned "
              "(mmap calls %lu, %lu failed before; %zu blocks live)", s,
              kind_name[kind], mmap_calls, mmap_failed, nb);
    res.nulls++;
    if (!null_seen) {
      null_seen = 1;
      verify_all("at the first NULL");
    }
    return NULL;
  }
  TU_CHECK((uintptr_t)p % TU_ALIGN == 0, "AO_malloc(%zu) = %p misaligned", s,
           (void *)p);
  TU_CHECK(nb < MAXB, "internal: too many blocks");
  blks[nb].p = p;
  blks[nb].size = s;
  blks[nb].tag = tu_rand(&rng);
  blk_fill(&blks[nb]);
  nb++;
  return p;
}

static void give(size_t i)
{
  size_t bad = blk_check(&blks[i]);
  if (bad != (size_t)-1)
    tu_fail("block %p of %zu bytes corrupted at byte %zu before AO_free",
            (void *)blks[i].p, blks[i].size, bad);
  errno = ERRNO_MAGIC;
  AO_free(blks[i].p);
  if (errno != ERRNO_MAGIC)
    tu_fail("AO_free changed errno from %d to %d", ERRNO_MAGIC, errno);
  blks[i] = blks[--nb];
}

static void take_bytes(int kind, size_t lo, size_t hi, size_t total, int must)
{
  size_t got = 0;
  while (got < total) {
    size_t s = lo + (size_t)tu_below(&rng, hi - lo + 1);
    take(s, kind, must);
    got += s;                    /* requested, so NULLs do not prolong it */
  }
}

static void give_size(size_t s)
{
  size_t i;
  for (i = 0; i < nb; i++)
    if (blks[i].size == s) {
      give(i);
      return;
    }
}

/* What may meet failures. */
static void phase_fail(void)
{
  static const size_t large[] = {
    RUN_MAX + 1, 300000, (size_t)1 << 20, ((size_t)3 << 20) + 5,
    ((size_t)33 << 20) + 4095
  };
  unsigned i;
  size_t k;

  take_bytes(K_SMALL, 16, 1024, (size_t)3 << 20, 0);
  take_bytes(K_MEDIUM, 1025, 32768, (size_t)16 << 20, 0);
  take_bytes(K_RUN, 32769, RUN_MAX, (size_t)12 << 20, 0);
  for (i = 0; i < sizeof(large) / sizeof(large[0]); i++)
    take(large[i], large[i] > SEG ? K_HUGE : K_LARGE, 0);
  /* freed large objects come back from the reuse cache */
  give_size((size_t)1 << 20);
  give_size(((size_t)3 << 20) + 5);
  take((size_t)1 << 20, K_LARGE, 0);
  take(((size_t)3 << 20) + 5, K_LARGE, 0);
  for (k = nb / 2; k > 0; k--)
    give((size_t)tu_below(&rng, nb));
  take_bytes(K_SMALL, 16, 1024, (size_t)2 << 20, 0);
  take_bytes(K_MEDIUM, 1025, 32768, (size_t)6 << 20, 0);
}

static void not_interposed(void)
{
  tu_fail("the test's mmap() was never called: the library's mmap calls do "
          "not reach the interposer in this build (static link order, "
          "-Bsymbolic, an internal alias?), so this test would prove "
          "nothing");
}

/* Memory is back: everything must succeed, including new mappings. */
static void phase_recovered(void)
{
  static const size_t sizes[] = {
    0, 16, 100, 1000, 4000, 16000, 32768, 40000, RUN_MAX, RUN_MAX + 1,
    (size_t)2 << 20, (size_t)40 << 20
  };
  unsigned long before = mmap_calls;
  unsigned i;

  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    take(sizes[i], sizes[i] <= 1024 ? K_SMALL : sizes[i] <= 32768 ? K_MEDIUM
                   : sizes[i] <= RUN_MAX ? K_RUN
                   : sizes[i] > SEG ? K_HUGE : K_LARGE, 1);
  take_bytes(K_MEDIUM, 32768, 32768, (size_t)34 << 20, 1);
  res.calls_after = mmap_calls - before;
  if (mmap_calls == 0)
    not_interposed();
  if (res.calls_after == 0)
    tu_fail("no mmap call after memory returned: the 40 MiB object should "
            "have needed one");
}

static void finish(void)
{
  verify_all("at the end");
  while (nb > 0)
    give((size_t)tu_below(&rng, nb));
  errno = ERRNO_MAGIC;
  AO_malloc_trim();
  if (errno != ERRNO_MAGIC)
    tu_fail("AO_malloc_trim changed errno");
  mapped_now(&res.segments, &res.other);
}

/* ---- scenario 5: a handler allocates inside the failing path ------------ */

static void sig_handler(int sig)
{
  static const size_t sizes[] = { 48, 5000, 100000, RUN_MAX * 2 };
  int saved = errno;
  unsigned i;
  (void)sig;
  in_handler = 1;
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    unsigned char *p;
    errno = ERRNO_MAGIC;
    p = AO_malloc(sizes[i]);
    if (errno != (p == NULL ? ENOMEM : ERRNO_MAGIC))
      tu_sfail("AO_malloc in a handler: errno not ENOMEM on NULL, or "
               "changed on success");
    errno = ERRNO_MAGIC;
    res.handler_allocs++;
    if (p == NULL) {
      /* the large one may meet a failing call itself */
      res.handler_nulls++;
      continue;
    }
    tu_fill_sparse(p, sizes[i], 0x5157 + i);
    if (tu_check_sparse(p, sizes[i], 0x5157 + i) != (size_t)-1)
      tu_sfail("a handler's block was overwritten");
    AO_free(p);
    if (errno != ERRNO_MAGIC)
      tu_sfail("AO_free in a handler changed errno");
  }
  in_handler = 0;
  errno = saved;
}

/* ---- scenario 4: threads ------------------------------------------------ */

#define NT 3
#define TSLOTS 64
#define TITERS 3000

static struct blk tblk[NT][TSLOTS];
static volatile int phase1_done, go_recover;
static volatile unsigned long t_nulls, live_small, peak_small;

static size_t thread_size(uint64_t *r)
{
  unsigned k = (unsigned)tu_below(r, 100);
  if (k < 70)
    return tu_logsize(r, 1024);
  if (k < 90)
    return 1025 + (size_t)tu_below(r, 32768 - 1024);
  if (k < 97)
    return 32769 + (size_t)tu_below(r, RUN_MAX - 32768);
  return RUN_MAX + 1 + (size_t)tu_below(r, (size_t)4 << 20);
}

static int thread_take(struct blk *b, size_t s, uint64_t *r)
{
  errno = ERRNO_MAGIC;
  b->p = AO_malloc(s);
  if (errno != (b->p == NULL ? ENOMEM : ERRNO_MAGIC))
    tu_fail("thread: AO_malloc(%zu) %s errno %d", s,
            b->p == NULL ? "returned NULL with" : "succeeded with", errno);
  errno = ERRNO_MAGIC;
  if (b->p == NULL)
    return 0;
  TU_CHECK((uintptr_t)b->p % TU_ALIGN == 0, "thread: misaligned block");
  b->size = s;
  b->tag = tu_rand(r);
  blk_fill(b);
  if (s <= RUN_MAX) {
    unsigned long v = __atomic_add_fetch(&live_small, s, __ATOMIC_RELAXED);
    unsigned long m = __atomic_load_n(&peak_small, __ATOMIC_RELAXED);
    while (v > m && !__atomic_compare_exchange_n(&peak_small, &m, v, 0,
                                                 __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED))
      ;
  }
  return 1;
}

static void thread_give(struct blk *b)
{
  size_t bad = blk_check(b);
  if (bad != (size_t)-1)
    tu_fail("thread: block of %zu bytes corrupted at byte %zu", b->size, bad);
  errno = ERRNO_MAGIC;
  AO_free(b->p);
  if (errno != ERRNO_MAGIC)
    tu_fail("thread: AO_free changed errno to %d", errno);
  if (b->size <= RUN_MAX)
    __atomic_sub_fetch(&live_small, b->size, __ATOMIC_RELAXED);
  b->p = NULL;
}

static void *thread_main(void *arg)
{
  static const size_t kinds[] = {
    16, 700, 9000, 32768, 100000, RUN_MAX, RUN_MAX + 1, (size_t)3 << 20
  };
  int id = (int)(intptr_t)arg, i;
  struct blk *slot = tblk[id];
  struct blk fresh[sizeof(kinds) / sizeof(kinds[0])];
  uint64_t r = tu_seed() ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(id + 1));
  unsigned long nulls = 0;
  unsigned k;

  for (i = 0; i < TITERS; i++) {
    struct blk *b = &slot[tu_below(&r, TSLOTS)];
    if (b->p != NULL)
      thread_give(b);
    else if (!thread_take(b, thread_size(&r), &r))
      nulls++;
  }
  __atomic_add_fetch(&t_nulls, nulls, __ATOMIC_RELAXED);
  __atomic_add_fetch(&phase1_done, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&go_recover, __ATOMIC_SEQ_CST))
    tu_sleep(0.001);
  for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
    if (!thread_take(&fresh[k], kinds[k], &r))
      tu_fail("thread %d: AO_malloc(%zu) returned NULL after memory "
              "returned", id, kinds[k]);
  for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
    thread_give(&fresh[k]);
  for (i = 0; i < TSLOTS; i++)
    if (slot[i].p != NULL)
      thread_give(&slot[i]);
  return NULL;
}

static void scenario_threads(void)
{
  pthread_t t[NT];
  int i;

  fail_first = 1;
  fail_end = ~0UL;
  fail_stride = 2;
  for (i = 0; i < NT; i++)
    tu_thread(&t[i], thread_main, (void *)(intptr_t)i);
  while (__atomic_load_n(&phase1_done, __ATOMIC_SEQ_CST) < NT)
    tu_sleep(0.001);
  fail_end = 0;                              /* memory returns */
  res.calls_before = mmap_calls;
  __atomic_store_n(&go_recover, 1, __ATOMIC_SEQ_CST);
  for (i = 0; i < NT; i++)
    pthread_join(t[i], NULL);
  res.nulls = t_nulls;
  res.peak_live = peak_small;
  AO_malloc_trim();
  mapped_now(&res.segments, &res.other);
}

/* ---- scenario 6: RLIMIT_AS ---------------------------------------------- */

static void scenario_rlimit(void)
{
  struct rlimit old, lim;
  long vm = tu_vmsize_kb();
  void *probe;
  size_t i;

  if (vm < 0 || getrlimit(RLIMIT_AS, &old) != 0)
    return;
  lim = old;
  lim.rlim_cur = (rlim_t)vm * 1024 + ((rlim_t)16 << 20);
  if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < lim.rlim_cur)
    return;
  if (setrlimit(RLIMIT_AS, &lim) != 0)
    return;
  /* qemu user emulation accepts the call but does not apply it */
  probe = sys_mmap(NULL, (size_t)48 << 20, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe != MAP_FAILED) {
    sys_munmap(probe, (size_t)48 << 20);
    setrlimit(RLIMIT_AS, &old);
    return;
  }
  res.rlimit_effective = 1;
  /* the static heap, then no segment can be mapped */
  for (i = 0; i < (TU_STATIC_HEAP + ((size_t)64 << 20)) / 1024; i++)
    if (take(1024, K_MEDIUM, 0) == NULL)
      break;
  if (res.nulls == 0)
    tu_fail("RLIMIT_AS: %zu KiB allocated with %ld KiB of headroom, never "
            "NULL", i, 16L << 10);
  if (take((size_t)1 << 20, K_LARGE, 0) != NULL)
    tu_fail("RLIMIT_AS: a 1 MiB object was mapped beyond the limit");
  if (setrlimit(RLIMIT_AS, &old) != 0)
    tu_fail("RLIMIT_AS: cannot restore the limit: %s", strerror(errno));
  take(1024, K_MEDIUM, 1);
  take(20000, K_MEDIUM, 1);
  take(100000, K_RUN, 1);
  take((size_t)1 << 20, K_LARGE, 1);
  take((size_t)40 << 20, K_HUGE, 1);
  verify_all("RLIMIT_AS, after the limit was raised");
  while (nb > 0)
    give(nb - 1);
}

/* ---- the parent --------------------------------------------------------- */

enum scenario { S_PLAIN, S_THREADS, S_SIGNAL, S_RLIMIT };

static void child_main(enum scenario sc)
{
  rng = tu_seed();
  AO_malloc_enable_mmap();
  switch (sc) {
  case S_PLAIN:
  case S_SIGNAL:
    phase_fail();
    fail_end = 0;                            /* memory returns */
    res.calls_before = mmap_calls;
    phase_recovered();
    finish();
    break;
  case S_THREADS:
    scenario_threads();
    break;
  case S_RLIMIT:
    scenario_rlimit();
    break;
  }
  if (track_overflow)
    tu_fail("internal: too many mappings to track");
  res.calls = mmap_calls;
  res.failed = mmap_failed;
  res.munmaps = munmap_calls;
  memcpy(res.kind, call_kind, sizeof(res.kind));
}

/* Run a scenario in a fresh child; failures inside it end the test. */
static void run(enum scenario sc, unsigned long first, unsigned long end,
                unsigned long stride, int sig, const char *what,
                struct result *out)
{
  int fd[2], status;
  pid_t pid;
  ssize_t got = 0, n;

  TU_CHECK(pipe(fd) == 0, "pipe: %s", strerror(errno));
  fail_first = first;
  fail_end = end;
  fail_stride = stride;
  raise_sig = sig;
  pid = fork();
  TU_CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    struct sigaction sa;
    close(fd[0]);
    alarm(CHILD_TIMEOUT);
    if (sig != 0) {
      memset(&sa, 0, sizeof(sa));
      sa.sa_handler = sig_handler;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, NULL);
    }
    child_main(sc);
    if (write(fd[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
      _exit(3);
    _exit(0);
  }
  close(fd[1]);
  while (got < (ssize_t)sizeof(*out)
         && (n = read(fd[0], (char *)out + got, sizeof(*out) - (size_t)got))
                != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    TU_CHECK(n > 0, "read: %s", strerror(errno));
    got += n;
  }
  close(fd[0]);
  while (waitpid(pid, &status, 0) < 0)
    TU_CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
  if (WIFSIGNALED(status))
    tu_fail("%s: the child died of signal %d%s", what, WTERMSIG(status),
            WTERMSIG(status) == SIGALRM ? " (hung)" : "");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    tu_fail("%s: the child failed (exit %d, see above)", what,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  TU_CHECK(got == (ssize_t)sizeof(*out), "%s: short report", what);
}

static void check_leaks(const struct result *r, const struct result *base,
                        const char *what)
{
  if (r->other != 0)
    tu_fail("%s: %lu bytes still mapped after freeing everything and "
            "AO_malloc_trim() besides whole segments (leaked mappings; "
            "%lu mmap calls, %lu failed)", what, r->other, r->calls,
            r->failed);
  if (base != NULL && r->segments > base->segments + 1)
    tu_fail("%s: %lu segments mapped, the failure-free run needed %lu",
            what, r->segments, base->segments);
}

/* Skip where fork itself does not work (seen under qemu-i386 when the
 * guest's loader picks a libc of another build): then no scenario can run
 * in a fresh child.  The allocator is not used yet. */
static void probe_fork(void)
{
  double until = tu_now() + 10;
  int status;
  pid_t pid = fork();

  TU_CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0)
    _exit(0);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (tu_now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      /* One scenario still runs, in this process: every call from the
       * 3rd on fails, then memory returns. */
      alarm(CHILD_TIMEOUT);
      fail_first = 3;
      fail_end = ~0UL;
      child_main(S_PLAIN);
      if (res.calls == 0)
        not_interposed();
      check_leaks(&res, NULL, "every mmap call from the 3rd fails");
      tu_skip("a child that only calls _exit(0) did not end within 10 s: "
              "fork does not work here (an emulator, a loader and libc that "
              "do not match?); only one scenario ran, in-process, and passed "
              "(%lu mmap calls, %lu failed, %lu NULLs)", res.calls, res.failed,
              res.nulls);
    }
    tu_sleep(0.01);
  }
}

int main(int argc, char **argv)
{
  static struct result base, r;
  char what[160];
  unsigned long n, max_seg = 0, absorbed = 0, counts[NKINDS] = { 0 };
  unsigned long single_runs = 0, storm_runs = 0, reach;
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  /* No watchdog thread: the parent stays single-threaded, since qemu user
   * emulation breaks when a child of a threaded process creates threads.
   * Every child has an alarm, and the parent only waits for children. */
  probe_fork();

  run(S_PLAIN, 0, 0, 1, 0, "failure-free run", &base);
  if (base.calls == 0)
    not_interposed();
  if (base.munmaps == 0)
    tu_fail("the test's munmap() was never called (the library trims every "
            "mapping it makes): the interposer is bypassed");
  check_leaks(&base, NULL, "failure-free run");
  for (i = 0; i < base.calls_before && i < MAXCALLS; i++)
    counts[base.kind[i] < NKINDS ? base.kind[i] : K_META]++;
  tu_info("failure-free run: %lu mmap calls, %lu of them before memory "
          "\"returns\" (%lu small, %lu medium, %lu page "
          "run, %lu large, %lu larger than a segment), %lu munmap calls, %lu "
          "segments left after trim", base.calls, base.calls_before,
          counts[K_SMALL],
          counts[K_MEDIUM], counts[K_RUN], counts[K_LARGE], counts[K_HUGE],
          base.munmaps, base.segments);

  /* The n-th call fails, for every n that some run reached. */
  reach = base.calls_before;
  for (n = 1; n <= reach || r.failed != 0; n++) {
    TU_CHECK(n <= base.calls + 64, "more than %lu runs: the number of mmap "
             "calls keeps growing with failures", base.calls + 64);
    snprintf(what, sizeof(what), "mmap call %lu fails", n);
    run(S_PLAIN, n, n + 1, 1, 0, what, &r);
    check_leaks(&r, &base, what);
    tu_info("%s (%s): %lu calls, %lu NULLs, then %lu calls once memory "
            "returned, %lu segments left", what,
            n <= MAXCALLS && r.failed != 0 ? kind_name[r.kind[n - 1] < NKINDS
                                                         ? r.kind[n - 1]
                                                         : K_META]
                                           : "beyond the last call",
            r.calls_before, r.nulls, r.calls_after, r.segments);
    if (r.calls_before > reach)
      reach = r.calls_before;
    if (r.segments > max_seg)
      max_seg = r.segments;
    if (r.failed == 0)
      continue;
    single_runs++;
    if (r.nulls == 0)
      absorbed++;
  }
  tu_info("single failures: %lu runs (%lu absorbed by a retry, the others "
          "gave NULL); at most %lu segments left", single_runs, absorbed,
          max_seg);

  /* Every call from the n-th on fails, then memory returns. */
  for (n = 1; n <= reach; n++) {
    snprintf(what, sizeof(what), "every mmap call from the %lu-th fails", n);
    run(S_PLAIN, n, ~0UL, 1, 0, what, &r);
    check_leaks(&r, &base, what);
    if (r.failed > 0 && r.nulls == 0)
      tu_fail("%s: %lu calls failed but no AO_malloc returned NULL", what,
              r.failed);
    storm_runs++;
  }
  tu_info("failure storms: %lu runs, each recovered", storm_runs);

  run(S_THREADS, 0, 0, 1, 0, "threads, every other call fails", &r);
  if (r.failed == 0)
    tu_fail("threads: no mmap call failed, nothing was tested");
  /* what the blocks need, plus one segment per racing thread (segment_add
   * races cost address space by design) and one for partly used spans */
  if (r.other != 0)
    check_leaks(&r, NULL, "threads, every other call fails");
  if (r.segments > (r.peak_live + SEG - 1) / SEG + 1 + NT + 1)
    tu_fail("threads: %lu segments for at most %lu live bytes", r.segments,
            r.peak_live);
  tu_info("threads: %lu mmap calls, %lu failed, %lu NULLs, %lu segments left",
          r.calls, r.failed, r.nulls, r.segments);

  run(S_SIGNAL, 1, ~0UL, 2, SIGUSR1, "handlers in the failing path", &r);
  check_leaks(&r, &base, "handlers in the failing path");
  if (r.handler_allocs == 0)
    tu_fail("signal: no handler ran inside a failing mmap call");
  tu_info("signal: %lu mmap calls, %lu failed, %lu handler allocations (%lu "
          "NULL)", r.calls, r.failed, r.handler_allocs, r.handler_nulls);

  run(S_RLIMIT, 0, 0, 1, 0, "RLIMIT_AS", &r);
  if (r.rlimit_effective)
    tu_info("RLIMIT_AS: NULL under the limit, allocation works once raised");
  else
    tu_info("RLIMIT_AS: the limit has no effect here (qemu?): not tested");
  return 0;
}
