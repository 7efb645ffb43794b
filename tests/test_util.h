/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: failure reports, time budgets, PRNG, block patterns. */
/*
 * Include this first (it defines _GNU_SOURCE).  Exit codes: 0 pass, 77 skip,
 * 1 fail; a failure message always reaches stderr before the exit.
 *
 * Environment knobs (defaults are right for `make check`):
 *   AO_TEST_SECONDS  wall-clock budget of each stress phase (default per test)
 *   AO_TEST_SCALE    multiplier for iteration counts (default 1)
 *   AO_TEST_THREADS  thread count for tests that take one
 *   AO_TEST_SEED     PRNG seed (default fixed, so runs are repeatable)
 * Stress loops stop at whichever comes first: the iteration count or the
 * deadline.  Nothing here measures speed; deadlines only bound run time and
 * the watchdog only turns a hang into a failure.
 *
 * Functions named tu_s* are async-signal-safe and may be used in handlers.
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TU_SKIP 77

/* Size of the static heap (configure --with-static-heap-size). */
#ifndef AO_TEST_STATIC_HEAP
# define AO_TEST_STATIC_HEAP 2097152
#endif
#define TU_STATIC_HEAP ((size_t)(AO_TEST_STATIC_HEAP))
#define TU_DEFAULT_HEAP ((size_t)2 << 20)

/* The largest page run, in bytes: MAX_RUN_PAGES pages of 4 KiB, one per bit
 * of an AO_t, so 256 KiB on 64-bit targets and 128 KiB on 32-bit ones.
 * Larger requests are direct mappings, which need AO_malloc_enable_mmap().
 * TU_BIG_RUN is a run well inside that limit, not a whole number of pages. */
#define TU_MAX_RUN ((size_t)8 * sizeof(size_t) * 4096)
#define TU_BIG_RUN (sizeof(size_t) == 8 ? (size_t)200000 : (size_t)100000)

/* Alignment that atomic_ops_malloc.h promises for every block. */
#ifndef TU_ALIGN
# define TU_ALIGN 16
#endif

static const char *tu_name = "test";

/* ---- reports ------------------------------------------------------------ */

static volatile sig_atomic_t tu_failing;
static volatile long tu_failing_tid;

/* The first thread to fail reports; later ones wait for the exit so that
 * messages are never interleaved.  A handler failing on the reporting
 * thread itself exits at once (waiting would wait for itself), and no
 * wait lasts more than 10 s, so a failure never turns into a hang. */
static void tu_claim_failure(void)
{
  long me = (long)syscall(SYS_gettid);
  struct timespec tenth = { 0, 100000000 };
  int i;

  if (!__atomic_exchange_n(&tu_failing, 1, __ATOMIC_SEQ_CST)) {
    tu_failing_tid = me;
    return;
  }
  if (tu_failing_tid == me)
    _exit(1);
  for (i = 0; i < 100; i++)
    nanosleep(&tenth, NULL);
  _exit(1);
}

static void tu_vreport(const char *kind, const char *fmt, va_list ap)
{
  char buf[1024];
  int n = snprintf(buf, sizeof(buf), "%s: %s", tu_name, kind);
  if (n < 0 || n >= (int)sizeof(buf))
    n = 0;
  vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
  n = (int)strlen(buf);
  buf[n++] = '\n';
  if (write(2, buf, (size_t)n) < 0)
    return;
}

__attribute__((format(printf, 1, 2), noreturn, unused))
static void tu_fail(const char *fmt, ...)
{
  va_list ap;
  tu_claim_failure();
  va_start(ap, fmt);
  tu_vreport("FAIL: ", fmt, ap);
  va_end(ap);
  _exit(1);
}

__attribute__((format(printf, 1, 2), noreturn, unused))
static void tu_skip(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  tu_vreport("SKIP: ", fmt, ap);
  va_end(ap);
  _exit(TU_SKIP);
}

__attribute__((format(printf, 1, 2), unused))
static void tu_info(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  tu_vreport("", fmt, ap);
  va_end(ap);
}

#define TU_CHECK(cond, ...) \
  do { if (!(cond)) tu_fail(__VA_ARGS__); } while (0)

/* ---- async-signal-safe output ------------------------------------------ */

static void tu_swrite(const char *s)
{
  size_t n = 0;
  while (s[n] != '\0')
    n++;
  while (n > 0) {
    ssize_t w = write(2, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR)
        continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

static void tu_swrite_num(unsigned long long v)
{
  char buf[24];
  int i = (int)sizeof(buf) - 1;
  buf[i] = '\0';
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  tu_swrite(buf + i);
}

/* Append s to buf (of size cap, holding *len bytes), truncating. */
static void tu_sappend(char *buf, size_t cap, size_t *len, const char *s)
{
  while (*s != '\0' && *len + 1 < cap)
    buf[(*len)++] = *s++;
  buf[*len] = '\0';
}

/* Fail from a handler, a forked child or the watchdog: one write(2), so
 * messages of processes failing together do not interleave. */
__attribute__((noreturn, unused))
static void tu_sfail(const char *msg)
{
  char buf[512];
  size_t len = 0;
  tu_claim_failure();
  tu_sappend(buf, sizeof(buf), &len, tu_name);
  tu_sappend(buf, sizeof(buf), &len, ": FAIL: ");
  tu_sappend(buf, sizeof(buf), &len, msg);
  tu_sappend(buf, sizeof(buf), &len, "\n");
  tu_swrite(buf);
  _exit(1);
}

static void tu_crash_handler(int sig)
{
  tu_claim_failure();
  tu_swrite(tu_name);
  tu_swrite(": FAIL: crashed with signal ");
  tu_swrite_num((unsigned long long)sig);
  tu_swrite(" (");
  tu_swrite(sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
            : sig == SIGABRT ? "SIGABRT" : sig == SIGILL ? "SIGILL"
            : sig == SIGFPE ? "SIGFPE" : "?");
  tu_swrite("): memory corruption or a wild pointer from the library?\n");
  signal(sig, SIG_DFL);
  raise(sig);
  _exit(1);
}

/* Call first in main: names the test and reports crashes on stderr. */
static void tu_init(const char *argv0)
{
  static const int crash[] = { SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE };
  static char altstack[65536];
  stack_t ss;
  struct sigaction sa;
  const char *s = strrchr(argv0, '/');
  unsigned i;

  tu_name = s ? s + 1 : argv0;
  /* libtool wrappers run the real binary as lt-NAME */
  if (strncmp(tu_name, "lt-", 3) == 0)
    tu_name += 3;

  ss.ss_sp = altstack;
  ss.ss_size = sizeof(altstack);
  ss.ss_flags = 0;
  sigaltstack(&ss, NULL);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = tu_crash_handler;
  sa.sa_flags = SA_ONSTACK | SA_NODEFER;
  /* no test signal may run on top of the report (and overflow the
   * alternate stack); the crash signals stay deliverable for the re-raise */
  sigfillset(&sa.sa_mask);
  for (i = 0; i < sizeof(crash) / sizeof(crash[0]); i++)
    sigdelset(&sa.sa_mask, crash[i]);
  for (i = 0; i < sizeof(crash) / sizeof(crash[0]); i++)
    sigaction(crash[i], &sa, NULL);
}

/* The test_replace_* programs test libaomalloc's malloc.  A sanitizer's
 * interceptors (ASan, TSan) or valgrind's replacement take malloc first:
 * the program then tests theirs, so it is skipped there. */
static inline void tu_require_aomalloc_malloc(void)
{
  const char *pre = getenv("LD_PRELOAD");
  int sanitizer = 0;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  sanitizer = 1;
#elif defined(__has_feature)
# if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  sanitizer = 1;
# endif
#endif
  /* libaomalloc's malloc is AO_malloc under another name: any other
   * address means someone else's malloc comes first (the ASan runtime is
   * loaded by an instrumented libaomalloc even into a plain program). */
  if (!sanitizer && dlsym(RTLD_DEFAULT, "malloc") != dlsym(RTLD_DEFAULT, "AO_malloc"))
    sanitizer = 1;
  if (sanitizer)
    tu_skip("a sanitizer build: its interceptors take malloc, not libaomalloc");
  if (pre != NULL && strstr(pre, "vgpreload") != NULL)
    tu_skip("under valgrind: its malloc replaces libaomalloc's");
}

/* For tests whose static-heap phases assume at least the default 2 MiB. */
__attribute__((unused))
static void tu_require_default_heap(void)
{
  if (TU_STATIC_HEAP < TU_DEFAULT_HEAP)
    tu_skip("the static heap is configured to %zu bytes; this test assumes "
            "at least the default %zu", TU_STATIC_HEAP, TU_DEFAULT_HEAP);
}

/* ---- time and budgets --------------------------------------------------- */

static double tu_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

__attribute__((unused))
static void tu_sleep(double sec)
{
  struct timespec ts;
  ts.tv_sec = (time_t)sec;
  ts.tv_nsec = (long)((sec - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static double tu_env_double(const char *name, double def)
{
  const char *s = getenv(name);
  char *end;
  double v;
  if (s == NULL || *s == '\0')
    return def;
  v = strtod(s, &end);
  if (end == s || v <= 0)
    return def;
  return v;
}

/* Wall-clock budget of a stress phase. */
__attribute__((unused))
static double tu_seconds(double def)
{
  return tu_env_double("AO_TEST_SECONDS", def);
}

/* Iteration count scaled by AO_TEST_SCALE (at least 1). */
__attribute__((unused))
static unsigned long tu_iters(unsigned long def)
{
  double v = (double)def * tu_env_double("AO_TEST_SCALE", 1.0);
  return v < 1 ? 1 : (unsigned long)v;
}

__attribute__((unused))
static int tu_threads(int def)
{
  double v = tu_env_double("AO_TEST_THREADS", (double)def);
  if (v > 256)
    v = 256;
  return v < 1 ? 1 : (int)v;
}

__attribute__((unused))
static uint64_t tu_seed(void)
{
  const char *s = getenv("AO_TEST_SEED");
  if (s != NULL && *s != '\0')
    return strtoull(s, NULL, 0) | 1;
  return 0x2545F4914F6CDD1DULL;
}

/* ---- watchdog: a hang becomes a failure --------------------------------- */

static volatile double tu_watchdog_deadline;
static volatile double tu_watchdog_seconds;
static const char *volatile tu_watchdog_what = "the test";

static void *tu_watchdog_main(void *arg)
{
  (void)arg;
  for (;;) {
    double left = tu_watchdog_deadline - tu_now();
    if (left <= 0)
      break;
    tu_sleep(left > 0.2 ? 0.2 : left);
  }
  tu_claim_failure();
  tu_swrite(tu_name);
  tu_swrite(": FAIL: watchdog: ");
  tu_swrite(tu_watchdog_what);
  tu_swrite(" did not finish within ");
  tu_swrite_num((unsigned long long)tu_watchdog_seconds);
  tu_swrite(" s (hang or deadlock)\n");
  _exit(1);
}

/* Create a thread that runs with every signal blocked. */
__attribute__((unused))
static void tu_thread_nosig(pthread_t *t, void *(*fn)(void *), void *arg)
{
  sigset_t all, old;
  int rc;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    tu_fail("pthread_create: %s", strerror(rc));
}

/* Fail the whole process if it is still running `seconds` from now.  May be
 * called again to move the deadline (e.g. between phases). */
__attribute__((unused))
static void tu_watchdog(double seconds, const char *what)
{
  static int started;
  pthread_t t;
  tu_watchdog_what = what;
  tu_watchdog_seconds = seconds;
  tu_watchdog_deadline = tu_now() + seconds;
  if (!started) {
    started = 1;
    tu_thread_nosig(&t, tu_watchdog_main, NULL);
    pthread_detach(t);
  }
}

__attribute__((unused))
static void tu_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
  int rc = pthread_create(t, NULL, fn, arg);
  if (rc != 0)
    tu_fail("pthread_create: %s", strerror(rc));
}

/* ---- PRNG (xorshift64*, state per user, signal-safe) -------------------- */

static inline uint64_t tu_rand(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform-ish in [0, n) for n > 0. */
static inline uint64_t tu_below(uint64_t *s, uint64_t n)
{
  return (tu_rand(s) >> 11) % n;
}

/* A size in [0, max], roughly log-uniform: small sizes are common. */
__attribute__((unused))
static inline size_t tu_logsize(uint64_t *s, size_t max)
{
  unsigned bits = 0, b;
  size_t lim;
  if (max == 0)
    return 0;
  while ((max >> bits) > 1)
    bits++;
  b = (unsigned)tu_below(s, bits + 2);
  lim = b > bits ? max : ((size_t)1 << b);
  return (size_t)tu_below(s, (uint64_t)lim + 1);
}

/* ---- block patterns ----------------------------------------------------- */
/*
 * The pattern of a block depends on a tag chosen by the test (unique per
 * live block) and on the offset, so overlapping live blocks, stale writes
 * and blocks handed to two owners all show up as mismatches.
 */

static inline uint64_t tu_pat_word(uint64_t tag, size_t i)
{
  uint64_t x = tag ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
  x ^= x >> 29;
  return x | 1; /* never zero: a zeroed block never matches */
}

static inline void tu_fill_range(unsigned char *p, size_t from, size_t to,
                                 uint64_t tag)
{
  size_t i;
  for (i = from; i < to; i++)
    p[i] = (unsigned char)(tu_pat_word(tag, i / 8) >> (8 * (i % 8)));
}

/* Fill [0,n): whole words when p is 8-aligned, bytes otherwise and at the
 * tail.  tu_check makes the same choice, so any byte order works. */
static inline void tu_fill(void *vp, size_t n, uint64_t tag)
{
  unsigned char *p = vp;
  size_t i = 0;
  if (((uintptr_t)p & 7) == 0) {
    for (; i + 8 <= n; i += 8)
      *(uint64_t *)(void *)(p + i) = tu_pat_word(tag, i / 8);
  }
  tu_fill_range(p, i, n, tag);
}

/* Offset of the first byte that differs from the pattern, or (size_t)-1. */
static inline size_t tu_check(const void *vp, size_t n, uint64_t tag)
{
  const unsigned char *p = vp;
  size_t i = 0;
  if (((uintptr_t)p & 7) == 0) {
    for (; i + 8 <= n; i += 8)
      if (*(const uint64_t *)(const void *)(p + i) != tu_pat_word(tag, i / 8))
        break;
  }
  for (; i < n; i++)
    if (p[i] != (unsigned char)(tu_pat_word(tag, i / 8) >> (8 * (i % 8))))
      return i;
  return (size_t)-1;
}

/*
 * Cheap variants for big blocks in stress loops: the first and last 256
 * bytes and one 8-byte word per 4 KiB page.
 */
#define TU_SPARSE_EDGE 256

static inline void tu_fill_sparse(void *vp, size_t n, uint64_t tag)
{
  unsigned char *p = vp;
  size_t i;
  if (n <= 3 * TU_SPARSE_EDGE) {
    tu_fill(p, n, tag);
    return;
  }
  tu_fill_range(p, 0, TU_SPARSE_EDGE, tag);
  for (i = 4096; i + 8 < n - TU_SPARSE_EDGE; i += 4096)
    tu_fill_range(p, i, i + 8, tag);
  tu_fill_range(p, n - TU_SPARSE_EDGE, n, tag);
}

static inline size_t tu_check_sparse(const void *vp, size_t n, uint64_t tag)
{
  const unsigned char *p = vp;
  size_t i, r;
  if (n <= 3 * TU_SPARSE_EDGE)
    return tu_check(p, n, tag);
  for (i = 0; i < TU_SPARSE_EDGE; i++)
    if (p[i] != (unsigned char)(tu_pat_word(tag, i / 8) >> (8 * (i % 8))))
      return i;
  for (i = 4096; i + 8 < n - TU_SPARSE_EDGE; i += 4096)
    for (r = i; r < i + 8; r++)
      if (p[r] != (unsigned char)(tu_pat_word(tag, r / 8) >> (8 * (r % 8))))
        return r;
  for (i = n - TU_SPARSE_EDGE; i < n; i++)
    if (p[i] != (unsigned char)(tu_pat_word(tag, i / 8) >> (8 * (i % 8))))
      return i;
  return (size_t)-1;
}

/* ---- sorting without malloc ------------------------------------------------ */

/* In-place heapsort with qsort's interface.  glibc's qsort may call malloc
 * (and so brk/mmap), which would disturb the address-space measurements. */
static void tu_swap_bytes(unsigned char *a, unsigned char *b, size_t size)
{
  while (size-- > 0) {
    unsigned char t = *a;
    *a++ = *b;
    *b++ = t;
  }
}

static void tu_sift(unsigned char *a, size_t root, size_t n, size_t size,
                    int (*cmp)(const void *, const void *))
{
  size_t child;
  for (; (child = 2 * root + 1) < n; root = child) {
    if (child + 1 < n && cmp(a + child * size, a + (child + 1) * size) < 0)
      child++;
    if (cmp(a + root * size, a + child * size) >= 0)
      break;
    tu_swap_bytes(a + root * size, a + child * size, size);
  }
}

__attribute__((unused))
static void tu_sort(void *base, size_t n, size_t size,
                    int (*cmp)(const void *, const void *))
{
  unsigned char *a = base;
  size_t i;
  for (i = n / 2; i-- > 0;)
    tu_sift(a, i, n, size, cmp);
  for (i = n; i-- > 1;) {
    tu_swap_bytes(a, a + i * size, size);
    tu_sift(a, 0, i, size, cmp);
  }
}

/* ---- live blocks, each filled with its own tu_fill pattern --------------- */

struct tu_block {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

/* Every block of b[0..n) still holds its pattern. */
__attribute__((unused))
static void tu_blocks_intact(const struct tu_block *b, size_t n,
                             const char *phase)
{
  size_t i, bad;

  for (i = 0; i < n; i++) {
    bad = tu_check(b[i].p, b[i].size, b[i].tag);
    if (bad != (size_t)-1)
      tu_fail("%s: block %p (size %zu) byte %zu overwritten", phase,
              (void *)b[i].p, b[i].size, bad);
  }
}

__attribute__((unused))
static int tu_block_cmp(const void *x, const void *y)
{
  const struct tu_block *a = x, *b = y;

  return a->p < b->p ? -1 : a->p > b->p;
}

/* Intact, and no two overlap (a 0-byte block takes 1 byte).  Sorts b by
 * address. */
__attribute__((unused))
static void tu_blocks_disjoint(struct tu_block *b, size_t n, const char *phase)
{
  size_t i;

  tu_blocks_intact(b, n, phase);
  tu_sort(b, n, sizeof(*b), tu_block_cmp);
  for (i = 0; i + 1 < n; i++)
    if (b[i].p + (b[i].size ? b[i].size : 1) > b[i + 1].p)
      tu_fail("%s: live blocks overlap: %p (size %zu) and %p (size %zu)",
              phase, (void *)b[i].p, b[i].size, (void *)b[i + 1].p,
              b[i + 1].size);
}

/* ---- /proc/self/status without malloc ------------------------------------ */

/* A field of /proc/self/status ("VmRSS", "VmSize"...) in KiB, or -1 when
 * unavailable (not Linux).  No malloc, async-signal-safe; one static
 * buffer, so one caller at a time. */
__attribute__((unused))
static long tu_status_kb(const char *field)
{
  static char buf[8192];
  char key[32];
  size_t klen = 0;
  ssize_t n, tot = 0;
  char *s;
  int fd = open("/proc/self/status", O_RDONLY);
  if (fd < 0)
    return -1;
  while (tot < (ssize_t)sizeof(buf) - 1
         && (n = read(fd, buf + tot, sizeof(buf) - 1 - (size_t)tot)) > 0)
    tot += n;
  close(fd);
  buf[tot] = '\0';
  tu_sappend(key, sizeof(key), &klen, "\n");
  tu_sappend(key, sizeof(key), &klen, field);
  tu_sappend(key, sizeof(key), &klen, ":");
  s = strstr(buf, key);
  if (s == NULL)
    return -1;
  return strtol(s + klen, NULL, 10);
}

/* VmSize in KiB, or -1 when unavailable. */
__attribute__((unused))
static long tu_vmsize_kb(void)
{
  return tu_status_kb("VmSize");
}

#endif /* !TEST_UTIL_H */
