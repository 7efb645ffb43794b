/* SPDX-License-Identifier: MIT */
/* Allocator benchmark workloads; one binary per API (ours, upstream AO, malloc). */
/*
 * Compiled three times from this one source, with exactly one of:
 *   -DBENCH_API_OURS      AO_malloc/AO_free of this library;
 *   -DBENCH_API_UPSTREAM  AO_malloc/AO_free of Debian's libatomic_ops_gpl.a,
 *                         compiled against its own header (BENCH_UPSTREAM_HEADER,
 *                         default /usr/include/atomic_ops_malloc.h);
 *   -DBENCH_API_MALLOC    malloc/free: glibc as is, or whatever allocator is
 *                         LD_PRELOADed (mimalloc, jemalloc, tcmalloc...).
 * Every workload runs the same code for every API: only the two calls differ.
 *
 * Usage: bench_<api> WORKLOAD...   (WORKLOAD: pairs batch threads bulk
 *        prodcons rss signal return decay, or all)
 * Output: one "figure value unit" line per figure; lines starting with '#'
 * are information.  Environment:
 *   BENCH_SCALE           multiplier of every timed phase (default 1.0);
 *   BENCH_TIMEOUT         seconds before the child process of the signal
 *                         or return workload is declared hung (default 20).
 *
 * Timing: CLOCK_MONOTONIC; a warm-up before every timed phase; each timed
 * figure is the median of a few rounds (the driver, run.sh, then takes the
 * median over whole runs).  Random sizes and slot indices are computed
 * before the clock starts, into arrays mmap'd outside the allocator under
 * test, so neither rand() nor the bookkeeping's memory is measured.
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(BENCH_API_OURS)
# include "atomic_ops_malloc.h"
# define BENCH_API_NAME "ours"
# define BENCH_IS_AO 1
#elif defined(BENCH_API_UPSTREAM)
# ifndef BENCH_UPSTREAM_HEADER
#   define BENCH_UPSTREAM_HEADER "/usr/include/atomic_ops_malloc.h"
# endif
# include BENCH_UPSTREAM_HEADER
# define BENCH_API_NAME "upstream"
# define BENCH_IS_AO 1
#elif defined(BENCH_API_MALLOC)
# define BENCH_API_NAME "malloc"
# define BENCH_IS_AO 0
#else
# error "define one of BENCH_API_OURS, BENCH_API_UPSTREAM, BENCH_API_MALLOC"
#endif

#if BENCH_IS_AO
# define B_MALLOC(n) AO_malloc(n)
# define B_FREE(p) AO_free(p)
#else
# define B_MALLOC(n) malloc(n)
# define B_FREE(p) free(p)
#endif

/* The trim call of this library, if its header announces one (defines
 * AO_HAVE_malloc_trim; today: int AO_malloc_trim(void)).  The dispatch
 * also accepts a size_t pad argument (passed 0) and a void or size_t
 * result (ignored), so a change of signature does not break the build. */
#if defined(BENCH_API_OURS) && defined(AO_HAVE_malloc_trim)
# define BENCH_HAVE_TRIM 1
static inline void trim_v_v(void (*f)(void)) { f(); }
static inline void trim_i_v(int (*f)(void)) { (void)f(); }
static inline void trim_z_v(size_t (*f)(void)) { (void)f(); }
static inline void trim_v_z(void (*f)(size_t)) { f(0); }
static inline void trim_i_z(int (*f)(size_t)) { (void)f(0); }
static inline void trim_z_z(size_t (*f)(size_t)) { (void)f(0); }
static void bench_trim(void)
{
  _Generic(&AO_malloc_trim,
           void (*)(void): trim_v_v, int (*)(void): trim_i_v,
           size_t (*)(void): trim_z_v, void (*)(size_t): trim_v_z,
           int (*)(size_t): trim_i_z,
           size_t (*)(size_t): trim_z_z)(&AO_malloc_trim);
}
#else
# define BENCH_HAVE_TRIM 0
#endif

/* ------------------------------------------------------------------------ */
/* Utilities (none of them uses the allocator under test). */

#define NSLOTS 1000          /* live objects of the batch workload */
#define NOPS (1u << 14)      /* precomputed operations, cycled */
#define SIG_HZ 20000         /* signal workload: timer frequency */

static double g_scale = 1.0;

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static double phase(double seconds)
{
  return seconds * g_scale;
}

static _Noreturn void die(const char *what)
{
  fprintf(stderr, "bench_%s: %s\n", BENCH_API_NAME, what);
  exit(2);
}

static _Noreturn void oom(void)
{
  die("allocation returned NULL");
}

/* xorshift64*: deterministic, only used before timing starts. */
static uint64_t rng_next(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
  return lo + rng_next(s) % (hi - lo + 1);
}

/* Zeroed, touched memory from mmap: the bookkeeping of every workload. */
static void *map_array(size_t bytes)
{
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    die("mmap of bookkeeping array failed");
  memset(p, 0, bytes);
  return p;
}

static void unmap_array(void *p, size_t bytes)
{
  munmap(p, bytes);
}

/* Resident set size in bytes, from /proc/self/statm (no stdio, no malloc). */
static size_t rss_bytes(void)
{
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    die("cannot open /proc/self/statm");
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    die("cannot read /proc/self/statm");
  buf[n] = '\0';
  const char *q = buf;
  while (*q && *q != ' ')
    q++;
  size_t pages = (size_t)strtoull(q, NULL, 10);
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

static double median(double *v, int n)
{
  for (int i = 1; i < n; i++) {
    double x = v[i];
    int j = i - 1;
    while (j >= 0 && v[j] > x) {
      v[j + 1] = v[j];
      j--;
    }
    v[j + 1] = x;
  }
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Keep the compiler from eliding a malloc/free pair. */
static inline void touch(void *p, uint64_t v)
{
  *(volatile uint64_t *)p = v;
}

/* ------------------------------------------------------------------------ */
/* 1. malloc/free pairs of one size. */

static double pairs_time(size_t size, double seconds, unsigned chunk)
{
  uint64_t n = 0, t0 = now_ns(), t;
  do {
    for (unsigned i = 0; i < chunk; i++) {
      void *p = B_MALLOC(size);
      if (!p)
        oom();
      touch(p, i);
      B_FREE(p);
    }
    n += chunk;
    t = now_ns();
  } while ((double)(t - t0) < seconds * 1e9);
  return (double)(t - t0) / (double)n;
}

static void wl_pairs(void)
{
  static const struct { size_t size; const char *name; } sizes[] = {
    {16, "16B"}, {64, "64B"}, {256, "256B"}, {1024, "1KiB"},
    {4096, "4KiB"}, {16384, "16KiB"}, {65536, "64KiB"},
    {100000, "100KB"}, {262144, "256KiB"}, {1048576, "1MiB"},
  };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    unsigned chunk = sizes[k].size >= 65536 ? 16 : 1024;
    double r[3];
    pairs_time(sizes[k].size, phase(0.01), chunk);   /* warm-up */
    for (int i = 0; i < 3; i++)
      r[i] = pairs_time(sizes[k].size, phase(0.04), chunk);
    printf("pair_%s %.2f ns\n", sizes[k].name, median(r, 3));
    fflush(stdout);
  }
}

/* ------------------------------------------------------------------------ */
/* 2. The batch: NSLOTS live objects of 8-512 B, a random one replaced. */

struct op {
  uint16_t idx;
  uint16_t size;
};

struct batch {
  void *slot[NSLOTS];
  struct op *ops;
  uint64_t pos;
};

static void batch_init(struct batch *b, uint64_t seed)
{
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  b->ops = map_array(NOPS * sizeof *b->ops);
  for (unsigned i = 0; i < NOPS; i++) {
    b->ops[i].idx = (uint16_t)rng_range(&s, 0, NSLOTS - 1);
    b->ops[i].size = (uint16_t)rng_range(&s, 8, 512);
  }
  b->pos = 0;
  for (unsigned i = 0; i < NSLOTS; i++) {
    b->slot[i] = B_MALLOC(b->ops[i % NOPS].size);
    if (!b->slot[i])
      oom();
    touch(b->slot[i], i);
  }
}

static void batch_fini(struct batch *b)
{
  for (unsigned i = 0; i < NSLOTS; i++) {
    B_FREE(b->slot[i]);
    b->slot[i] = NULL;
  }
  unmap_array(b->ops, NOPS * sizeof *b->ops);
}

/* n replacements (free then malloc of a random slot). */
static inline void batch_steps(struct batch *b, unsigned n)
{
  uint64_t pos = b->pos;
  for (unsigned i = 0; i < n; i++, pos++) {
    struct op o = b->ops[pos & (NOPS - 1)];
    B_FREE(b->slot[o.idx]);
    void *p = B_MALLOC(o.size);
    if (!p)
      oom();
    touch(p, pos);
    b->slot[o.idx] = p;
  }
  b->pos = pos;
}

/* ns per malloc+free, running for about `seconds`. */
static double batch_time(struct batch *b, double seconds)
{
  uint64_t n = 0, t0 = now_ns(), t;
  do {
    batch_steps(b, 1024);
    n += 1024;
    t = now_ns();
  } while ((double)(t - t0) < seconds * 1e9);
  return (double)(t - t0) / (double)n;
}

static void wl_batch(void)
{
  static struct batch b;
  double r[5];
  batch_init(&b, 1);
  batch_time(&b, phase(0.05));   /* warm-up */
  for (int i = 0; i < 5; i++)
    r[i] = batch_time(&b, phase(0.1));
  batch_fini(&b);
  printf("batch_1t %.2f ns\n", median(r, 5));
  fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* 3. The batch on several threads, each with its own slots: M pairs/s. */

struct th_arg {
  pthread_barrier_t *start;
  atomic_int *stop;
  unsigned id;
  uint64_t ops;
  uint64_t t_end;
};

static void *th_batch(void *arg)
{
  struct th_arg *a = arg;
  struct batch *b = map_array(sizeof *b);
  uint64_t ops = 0;
  batch_init(b, 100 + a->id);
  batch_steps(b, 20000);   /* warm-up: this thread's caches, if any */
  pthread_barrier_wait(a->start);
  while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
    batch_steps(b, 256);
    ops += 256;
  }
  a->t_end = now_ns();
  a->ops = ops;
  batch_fini(b);
  unmap_array(b, sizeof *b);
  return NULL;
}

/* Aggregate M pairs/s of nthreads running fn (a th_arg each) for `seconds`. */
static double threads_round(void *(*fn)(void *), unsigned nthreads,
                            double seconds)
{
  pthread_t tid[64];
  struct th_arg args[64];
  pthread_barrier_t start;
  atomic_int stop = 0;
  pthread_barrier_init(&start, NULL, nthreads + 1);
  for (unsigned i = 0; i < nthreads; i++) {
    args[i] = (struct th_arg){ &start, &stop, i, 0, 0 };
    if (pthread_create(&tid[i], NULL, fn, &args[i]) != 0)
      die("pthread_create failed");
  }
  pthread_barrier_wait(&start);
  uint64_t t0 = now_ns(), t_end = t0, ops = 0;
  sleep_s(seconds);
  atomic_store(&stop, 1);
  for (unsigned i = 0; i < nthreads; i++) {
    pthread_join(tid[i], NULL);
    ops += args[i].ops;
    if (args[i].t_end > t_end)
      t_end = args[i].t_end;
  }
  pthread_barrier_destroy(&start);
  return (double)ops / ((double)(t_end - t0) / 1e9) / 1e6;
}

static void wl_threads(void)
{
  static const unsigned counts[] = {1, 2, 4, 8};
  for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
    double r[3];
    for (int i = 0; i < 3; i++)
      r[i] = threads_round(th_batch, counts[k], phase(0.25));
    printf("threads_%u %.2f Mpairs/s\n", counts[k], median(r, 3));
    fflush(stdout);
  }
}

/* ------------------------------------------------------------------------ */
/* 3b. Bulk: each thread allocates BULK_N blocks of 8-512 B, then frees all
 * of them in a random order, and again; M pairs/s over all threads.  Unlike
 * the batch, every free here meets a full bin and every malloc an empty one
 * after a round of frees, so it measures the slow paths (flushes, refills)
 * that a program building and dropping a data structure hits. */

#define BULK_N 1000
#define BULK_ROUNDS 16       /* distinct precomputed rounds, cycled */

struct bulk {
  uint16_t size[BULK_ROUNDS][BULK_N];
  uint16_t order[BULK_ROUNDS][BULK_N];   /* a permutation of 0..BULK_N-1 */
  void *ptr[BULK_N];
};

static struct bulk *bulk_init(uint64_t seed)
{
  struct bulk *b = map_array(sizeof *b);
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 5;
  for (unsigned r = 0; r < BULK_ROUNDS; r++) {
    for (unsigned i = 0; i < BULK_N; i++) {
      b->size[r][i] = (uint16_t)rng_range(&s, 8, 512);
      b->order[r][i] = (uint16_t)i;
    }
    for (unsigned i = BULK_N - 1; i > 0; i--) {
      unsigned j = (unsigned)rng_range(&s, 0, i);
      uint16_t t = b->order[r][i];
      b->order[r][i] = b->order[r][j];
      b->order[r][j] = t;
    }
  }
  return b;
}

/* One round: BULK_N mallocs, then BULK_N frees in the round's order. */
static inline void bulk_round(struct bulk *b, unsigned r)
{
  const uint16_t *size = b->size[r], *order = b->order[r];
  for (unsigned i = 0; i < BULK_N; i++) {
    void *p = B_MALLOC(size[i]);
    if (!p)
      oom();
    touch(p, i);
    b->ptr[i] = p;
  }
  for (unsigned i = 0; i < BULK_N; i++)
    B_FREE(b->ptr[order[i]]);
}

static void *th_bulk(void *arg)
{
  struct th_arg *a = arg;
  struct bulk *b = bulk_init(200 + a->id);
  uint64_t ops = 0;
  unsigned r = 0;
  for (unsigned i = 0; i < 20; i++)   /* warm-up: this thread's caches */
    bulk_round(b, i % BULK_ROUNDS);
  pthread_barrier_wait(a->start);
  while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
    bulk_round(b, r);
    r = (r + 1) % BULK_ROUNDS;
    ops += BULK_N;
  }
  a->t_end = now_ns();
  a->ops = ops;
  unmap_array(b, sizeof *b);
  return NULL;
}

static void wl_bulk(void)
{
  static const unsigned counts[] = {1, 2, 4, 8};
  for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
    double r[3];
    for (int i = 0; i < 3; i++)
      r[i] = threads_round(th_bulk, counts[k], phase(0.25));
    printf("bulk_%u %.2f Mpairs/s\n", counts[k], median(r, 3));
    fflush(stdout);
  }
}

/* ------------------------------------------------------------------------ */
/* 4. Producer/consumer through a single-producer single-consumer ring. */

#define RING 1024

struct ring {
  _Alignas(64) atomic_size_t head;   /* written by the producer */
  _Alignas(64) atomic_size_t tail;   /* written by the consumer */
  _Alignas(64) void *slot[RING];
  _Alignas(64) atomic_int stop;
  pthread_barrier_t start;
  uint16_t *sizes;
  uint64_t consumed;
  uint64_t t_end;
};

static inline void cpu_relax(unsigned *spins)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
  if (++*spins >= 256) {
    *spins = 0;
    sched_yield();
  }
}

/* Put p in the ring, waiting while it is full. */
static inline void ring_push(struct ring *r, size_t *head, size_t *tail_seen,
                             void *p)
{
  unsigned spins = 0;
  while (*head - *tail_seen == RING) {
    *tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (*head - *tail_seen == RING)
      cpu_relax(&spins);
  }
  r->slot[*head & (RING - 1)] = p;
  atomic_store_explicit(&r->head, ++*head, memory_order_release);
}

/* Put the calling thread on the n-th CPU it may use, if there are two:
 * producer and consumer on one CPU would measure the scheduler's
 * hand-offs, not the allocator's cross-CPU frees. */
static void pin_to_nth_cpu(int n)
{
  cpu_set_t allowed, one;
  int cpu, seen = 0;

  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0
      || CPU_COUNT(&allowed) < 2)
    return;
  for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &allowed) && seen++ == n) {
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      return;
    }
}

static void *pc_producer(void *arg)
{
  struct ring *r = arg;
  size_t head = 0, tail_seen = 0;
  pin_to_nth_cpu(0);
  pthread_barrier_wait(&r->start);
  while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
    for (unsigned i = 0; i < 256; i++) {
      void *p = B_MALLOC(r->sizes[head & (NOPS - 1)]);
      if (!p)
        oom();
      touch(p, head);
      ring_push(r, &head, &tail_seen, p);
    }
  }
  ring_push(r, &head, &tail_seen, NULL);   /* end of stream */
  return NULL;
}

static void *pc_consumer(void *arg)
{
  struct ring *r = arg;
  size_t tail = 0, head_seen = 0;
  uint64_t n = 0, sum = 0;
  pin_to_nth_cpu(1);
  pthread_barrier_wait(&r->start);
  for (;;) {
    unsigned spins = 0;
    while (tail == head_seen) {
      head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
      if (tail == head_seen)
        cpu_relax(&spins);
    }
    void *p = r->slot[tail & (RING - 1)];
    atomic_store_explicit(&r->tail, ++tail, memory_order_release);
    if (!p)
      break;
    sum += *(volatile uint64_t *)p;
    B_FREE(p);
    n++;
  }
  r->t_end = now_ns();
  r->consumed = n;
  if (sum == 1)   /* practically never; keeps the reads */
    fputc(' ', stderr);
  return NULL;
}

static double prodcons_round(uint16_t *sizes, double seconds)
{
  struct ring *r = map_array(sizeof *r);
  pthread_t tp, tc;
  r->sizes = sizes;
  pthread_barrier_init(&r->start, NULL, 3);
  if (pthread_create(&tc, NULL, pc_consumer, r) != 0
      || pthread_create(&tp, NULL, pc_producer, r) != 0)
    die("pthread_create failed");
  pthread_barrier_wait(&r->start);
  uint64_t t0 = now_ns();
  sleep_s(seconds);
  atomic_store(&r->stop, 1);
  pthread_join(tp, NULL);
  pthread_join(tc, NULL);
  double rate = (double)r->consumed / ((double)(r->t_end - t0) / 1e9) / 1e6;
  pthread_barrier_destroy(&r->start);
  unmap_array(r, sizeof *r);
  return rate;
}

static void wl_prodcons(void)
{
  uint16_t *sizes = map_array(NOPS * sizeof *sizes);
  uint64_t s = 7;
  for (unsigned i = 0; i < NOPS; i++)
    sizes[i] = (uint16_t)rng_range(&s, 64, 256);
  double r[3];
  prodcons_round(sizes, phase(0.1));   /* warm-up */
  for (int i = 0; i < 3; i++)
    r[i] = prodcons_round(sizes, phase(0.3));
  printf("prodcons %.2f Mobj/s\n", median(r, 3));
  fflush(stdout);
  unmap_array(sizes, NOPS * sizeof *sizes);
}

/* ------------------------------------------------------------------------ */
/* 5. Live-set RSS: 200k objects of 8-1024 B, every byte written. */

#define RSS_N 200000

static void wl_rss(void)
{
  uint16_t *sizes = map_array(RSS_N * sizeof *sizes);
  void **ptrs = map_array(RSS_N * sizeof *ptrs);
  uint64_t s = 11;
  size_t requested = 0;
  for (unsigned i = 0; i < RSS_N; i++) {
    sizes[i] = (uint16_t)rng_range(&s, 8, 1024);
    requested += sizes[i];
  }
  B_FREE(B_MALLOC(64));   /* the allocator is initialised before the start */
  size_t rss0 = rss_bytes();
  for (unsigned i = 0; i < RSS_N; i++) {
    ptrs[i] = B_MALLOC(sizes[i]);
    if (!ptrs[i])
      oom();
    memset(ptrs[i], 0x5a, sizes[i]);
  }
  size_t rss1 = rss_bytes();
  double delta = (double)rss1 - (double)rss0;
  printf("rss_requested_MiB %.1f MiB\n", (double)requested / 1048576.0);
  printf("rss_delta_MiB %.1f MiB\n", delta / 1048576.0);
  printf("rss_ratio %.3f x\n", delta / (double)requested);
  fflush(stdout);
  for (unsigned i = 0; i < RSS_N; i++)
    B_FREE(ptrs[i]);
  unmap_array(ptrs, RSS_N * sizeof *ptrs);
  unmap_array(sizes, RSS_N * sizeof *sizes);
}

/* ------------------------------------------------------------------------ */
/* Workloads that may crash or hang an allocator run in a forked child; a
 * page shared with it keeps its progress visible after a crash. */

struct child_shared {
  atomic_int phase;        /* what the child is doing: index in a name table */
  atomic_int done;         /* the child finished its work */
  atomic_ulong handled;    /* signal: handler runs */
  atomic_ulong progress;   /* return: allocations done */
  atomic_ulong cur_size;   /* return: size being allocated */
  double t_base, t_noop, t_alloc, rate_alloc;
  uint64_t ops;
};

static struct child_shared *g_sh;

/* The state letter of a process (R running, S sleeping...), '?' if unknown. */
static char proc_state(pid_t pid)
{
  char path[64], buf[512];
  char state = '?';
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = '\0';
      char *q = strrchr(buf, ')');
      if (q && q[1] == ' ')
        state = q[2];
    }
    close(fd);
  }
  return state;
}

/* What a hung child is doing: process state and kernel wait channel. */
static void describe_hang(pid_t pid, char *out, size_t outsz)
{
  char path[64], wchan[64] = "";
  char state = proc_state(pid);
  snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, wchan, sizeof wchan - 1);
    wchan[n > 0 ? n : 0] = '\0';
    close(fd);
  }
  if (state == 'R')
    snprintf(out, outsz, "hang (still running after the timeout: livelock, "
             "endless loop or far too slow)");
  else
    snprintf(out, outsz, "deadlock (state %c, waiting in %s)", state,
             wchan[0] && strcmp(wchan, "0") != 0 ? wchan : "?");
}

/* Run fn in a child, killed after BENCH_TIMEOUT seconds (default 20).
 * Returns 1 when it finished; otherwise 0 with why (a sentence) and kind
 * (one word: segfault, abort, deadlock, hang...) filled in. */
static int run_child(void (*fn)(void), char *why, size_t whysz,
                     char *kind, size_t kindsz)
{
  double timeout = 20;
  const char *e = getenv("BENCH_TIMEOUT");
  if (e && atof(e) > 0)
    timeout = atof(e);
  g_sh = mmap(NULL, sizeof *g_sh, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (g_sh == MAP_FAILED)
    die("mmap of shared page failed");
  memset(g_sh, 0, sizeof *g_sh);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    die("fork failed");
  if (pid == 0) {
    fn();
    atomic_store(&g_sh->done, 1);
    fflush(stdout);
    _exit(0);
  }
  /* The child never blocks for long on its own (it computes, or sleeps
   * 1 ms at a time): asleep in the kernel for 2 s in a row is a deadlock,
   * found without waiting for the timeout. */
  int status = 0, finished = 0, polls = 0;
  uint64_t t0 = now_ns(), awake = t0;
  while ((double)(now_ns() - t0) < timeout * 1e9) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      finished = 1;
      break;
    }
    sleep_s(0.005);
    if (++polls % 20 == 0) {
      char st = proc_state(pid);
      if (st != 'S' && st != 'D')
        awake = now_ns();
      else if (now_ns() - awake > 2000000000u)
        break;
    }
  }
  if (!finished) {
    describe_hang(pid, why, whysz);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  } else if (WIFSIGNALED(status)) {
    int s = WTERMSIG(status);
    snprintf(why, whysz, "%s (killed by %s)",
             s == SIGSEGV ? "segfault" : s == SIGABRT ? "abort"
             : s == SIGBUS ? "buserror" : "crash", strsignal(s));
  } else if (WEXITSTATUS(status) == 3) {
    snprintf(why, whysz, "NULL (the allocator returned NULL)");
  } else if (WEXITSTATUS(status) != 0 || !atomic_load(&g_sh->done)) {
    snprintf(why, whysz, "exit (status %d)", WEXITSTATUS(status));
  } else {
    return 1;
  }
  snprintf(kind, kindsz, "%s", why);
  kind[strcspn(kind, " (")] = '\0';
  return 0;
}

static void child_done(void)
{
  munmap(g_sh, sizeof *g_sh);
  g_sh = NULL;
}

/* ------------------------------------------------------------------------ */
/* 6. Allocation inside a 20 kHz SIGALRM handler while the thread runs the
 * batch: the thread's slowdown, and whether it survives at all. */

static void *g_sig_keep[8];
static unsigned g_sig_next;

static void sig_noop(int sig)
{
  (void)sig;
  atomic_fetch_add_explicit(&g_sh->handled, 1, memory_order_relaxed);
}

/* A few blocks per run: two temporaries, and one of eight blocks kept from
 * earlier runs replaced (so handlers also free older handler blocks). */
static void sig_alloc(int sig)
{
  static const uint16_t sz[8] = {24, 200, 48, 1000, 96, 3000, 16, 400};
  int saved = errno;
  unsigned k = g_sig_next++;
  void *a = B_MALLOC(sz[k & 7]);
  void *b = B_MALLOC(sz[(k + 3) & 7]);
  if (!a || !b)
    _exit(3);
  touch(a, k);
  touch(b, k);
  B_FREE(g_sig_keep[k & 7]);
  g_sig_keep[k & 7] = B_MALLOC(sz[(k + 5) & 7]);
  if (!g_sig_keep[k & 7])
    _exit(3);
  touch(g_sig_keep[k & 7], k);
  B_FREE(b);
  B_FREE(a);
  (void)sig;
  atomic_fetch_add_explicit(&g_sh->handled, 1, memory_order_relaxed);
  errno = saved;
}

static void set_timer(int on)
{
  struct itimerval it;
  memset(&it, 0, sizeof it);
  if (on) {
    it.it_interval.tv_usec = 1000000 / SIG_HZ;
    it.it_value.tv_usec = 1000000 / SIG_HZ;
  }
  setitimer(ITIMER_REAL, &it, NULL);
}

static void set_handler(void (*fn)(int))
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
}

/* Time exactly n batch steps (n a multiple of 1024). */
static double batch_time_n(struct batch *b, uint64_t n)
{
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i += 1024)
    batch_steps(b, 1024);
  return (double)(now_ns() - t0);
}

enum { SIG_START, SIG_BASE, SIG_NOOP, SIG_ALLOC };

static void sig_child(void)
{
  static struct batch b;
  batch_init(&b, 3);
  batch_time(&b, phase(0.1));   /* warm-up */
  /* Calibrate: as many steps as take about 0.5 s without signals. */
  uint64_t n = 0, t0 = now_ns();
  atomic_store(&g_sh->phase, SIG_BASE);
  while ((double)(now_ns() - t0) < phase(0.5) * 1e9) {
    batch_steps(&b, 1024);
    n += 1024;
  }
  double base1 = (double)(now_ns() - t0);
  g_sh->ops = n;

  /* The same steps while a no-op handler runs at 20 kHz (the cost of the
   * signals themselves)... */
  atomic_store(&g_sh->phase, SIG_NOOP);
  set_handler(sig_noop);
  set_timer(1);
  g_sh->t_noop = batch_time_n(&b, n);
  set_timer(0);

  /* ...and while the handler allocates. */
  atomic_store(&g_sh->phase, SIG_ALLOC);
  set_handler(sig_alloc);
  unsigned long h0 = atomic_load(&g_sh->handled);
  set_timer(1);
  g_sh->t_alloc = batch_time_n(&b, n);
  set_timer(0);
  g_sh->rate_alloc = (double)(atomic_load(&g_sh->handled) - h0)
                     / (g_sh->t_alloc / 1e9);
  set_handler(SIG_DFL);

  /* The baseline once more, after: the mean of both is the reference. */
  atomic_store(&g_sh->phase, SIG_BASE);
  double base2 = batch_time_n(&b, n);
  g_sh->t_base = (base1 + base2) / 2;
  batch_fini(&b);
}

static void wl_signal(void)
{
  static const char *const phases[] = {"start", "baseline",
                                       "no-op handler", "allocating handler"};
  char why[200], kind[32];
  if (run_child(sig_child, why, sizeof why, kind, sizeof kind)) {
    printf("# signal: %llu batch steps per phase, baseline %.3f s\n",
           (unsigned long long)g_sh->ops, g_sh->t_base / 1e9);
    printf("signal_status works -\n");
    printf("signal_slowdown %.3f x\n", g_sh->t_alloc / g_sh->t_base);
    printf("signal_noop_slowdown %.3f x\n", g_sh->t_noop / g_sh->t_base);
    printf("signal_rate %.0f Hz\n", g_sh->rate_alloc);
  } else {
    int ph = atomic_load(&g_sh->phase);
    printf("# signal: fails: %s; in the %s phase, after %lu handler runs\n",
           why, phases[ph >= 0 && ph <= 3 ? ph : 0],
           (unsigned long)atomic_load(&g_sh->handled));
    printf("signal_status fails:%s -\n", kind);
  }
  fflush(stdout);
  child_done();
}

/* ------------------------------------------------------------------------ */
/* 7. Memory returned: 256 MiB in mixed objects, all freed, RSS compared. */

#define RET_CAP (1u << 19)
#define RET_HALF ((size_t)128 << 20)

enum { RET_START, RET_ALLOC, RET_FREE, RET_AFTER };

static void ret_child(void)
{
  uint32_t *sizes = map_array(RET_CAP * sizeof *sizes);
  uint32_t *order = map_array(RET_CAP * sizeof *order);
  void **ptrs = map_array(RET_CAP * sizeof *ptrs);
  uint64_t s = 13;
  size_t n = 0, small = 0, large = 0;
  /* Half the bytes in objects of 16-1024 B, half in 4 KiB-1 MiB ones... */
  while (small < RET_HALF && n < RET_CAP) {
    sizes[n] = (uint32_t)rng_range(&s, 16, 1024);
    small += sizes[n++];
  }
  while (large < RET_HALF && n < RET_CAP) {
    sizes[n] = (uint32_t)rng_range(&s, 4096, 1048576);
    large += sizes[n++];
  }
  /* ...allocated interleaved, freed in another random order. */
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)rng_range(&s, 0, i);
    uint32_t t = sizes[i];
    sizes[i] = sizes[j];
    sizes[j] = t;
  }
  for (size_t i = 0; i < n; i++)
    order[i] = (uint32_t)i;
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)rng_range(&s, 0, i);
    uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  B_FREE(B_MALLOC(64));   /* the allocator is initialised before the start */
  size_t rss0 = rss_bytes();
  atomic_store(&g_sh->phase, RET_ALLOC);
  for (size_t i = 0; i < n; i++) {
    atomic_store_explicit(&g_sh->cur_size, sizes[i], memory_order_relaxed);
    ptrs[i] = B_MALLOC(sizes[i]);
    if (!ptrs[i])
      _exit(3);
    memset(ptrs[i], 0x3c, sizes[i]);
    atomic_store_explicit(&g_sh->progress, i + 1, memory_order_relaxed);
  }
  size_t peak = rss_bytes();
  atomic_store(&g_sh->phase, RET_FREE);
  for (size_t i = 0; i < n; i++)
    B_FREE(ptrs[order[i]]);
  size_t after = rss_bytes();
  atomic_store(&g_sh->phase, RET_AFTER);
  const double MiB = 1048576.0;
  printf("# return: %zu objects, %.1f MiB requested\n", n,
         (double)(small + large) / MiB);
  printf("return_status works -\n");
  printf("return_start_MiB %.1f MiB\n", (double)rss0 / MiB);
  printf("return_peak_MiB %.1f MiB\n", (double)peak / MiB);
  printf("return_after_MiB %.1f MiB\n", (double)after / MiB);
  printf("return_rss_ratio %.3f x\n", (double)after / (double)rss0);
  printf("return_retained_pct %.1f %%\n",
         100.0 * ((double)after - (double)rss0) / ((double)peak - (double)rss0));
  /* Half a second of light use (one small pair per millisecond), which lets
   * allocators that return memory lazily on later calls do so. */
  for (int i = 0; i < 500; i++) {
    void *p = B_MALLOC(64);
    if (!p)
      _exit(3);
    touch(p, (uint64_t)i);
    B_FREE(p);
    sleep_s(0.001);
  }
  after = rss_bytes();
  printf("return_rss_ratio_0.5s %.3f x\n", (double)after / (double)rss0);
#if BENCH_HAVE_TRIM
  /* Last, so that the figures above stay automatic for every allocator. */
  bench_trim();
  after = rss_bytes();
  printf("return_after_trim_MiB %.1f MiB\n", (double)after / MiB);
  printf("return_rss_ratio_trim %.3f x\n", (double)after / (double)rss0);
  printf("return_retained_pct_trim %.1f %%\n",
         100.0 * ((double)after - (double)rss0) / ((double)peak - (double)rss0));
#endif
  fflush(stdout);
  unmap_array(ptrs, RET_CAP * sizeof *ptrs);
  unmap_array(order, RET_CAP * sizeof *order);
  unmap_array(sizes, RET_CAP * sizeof *sizes);
}

static void wl_return(void)
{
  static const char *const phases[] = {"start", "allocating", "freeing",
                                       "after-free"};
  char why[200], kind[32];
  if (!run_child(ret_child, why, sizeof why, kind, sizeof kind)) {
    int ph = atomic_load(&g_sh->phase);
    printf("# return: fails: %s; in the %s phase", why,
           phases[ph >= 0 && ph <= 3 ? ph : 0]);
    if (ph == RET_ALLOC)
      printf(", in allocation #%lu (of %lu B)",
             atomic_load(&g_sh->progress) + 1, atomic_load(&g_sh->cur_size));
    printf("\nreturn_status fails:%s -\n", kind);
  }
  fflush(stdout);
  child_done();
}

/* ------------------------------------------------------------------------ */
/* 8. Decay: ~300 MiB in mixed sizes (16 B - 64 KiB, plus a few 1-8 MiB
 * blocks), ~all freed, then light use (a few hundred pairs every 10 ms)
 * for 2 s and no trim call: the resident share of the growth at 0, 1, 2 s.
 * Runs in-process (short, bounded); ours also prints where the rest is. */

#define DECAY_CAP (1u << 20)
#define DECAY_SMALL ((size_t)280 << 20)
#define DECAY_LARGE_N 4

#if defined(BENCH_API_OURS) && defined(AO_HAVE_malloc_stats)
static void decay_where(const char *when)
{
  struct AO_malloc_stats st;
  const double MiB = 1048576.0;
  AO_malloc_stats(&st);
  printf("# decay %s: free_pages %.1f (released %.1f) thread_cached %.1f "
         "span_free %.1f large_cached %.1f in_use %.1f MiB\n", when,
         st.free_pages / MiB, st.free_released / MiB, st.thread_cached / MiB,
         st.span_free / MiB, st.large_cached / MiB, st.in_use / MiB);
}
#else
static void decay_where(const char *when) { (void)when; }
#endif

static void wl_decay(void)
{
  uint32_t *sizes = map_array(DECAY_CAP * sizeof *sizes);
  void **ptrs = map_array(DECAY_CAP * sizeof *ptrs);
  void *live[64] = {0};
  uint64_t s = 29;
  size_t n = 0, bytes = 0, keep = 0;
  while (bytes < DECAY_SMALL && n < DECAY_CAP) {
    /* mostly small, some up to 64 KiB */
    sizes[n] = (uint32_t)(rng_range(&s, 0, 7) ? rng_range(&s, 16, 1024)
                                              : rng_range(&s, 1025, 65536));
    bytes += sizes[n++];
  }
  for (size_t i = 0; i < DECAY_LARGE_N && n < DECAY_CAP; i++) {
    sizes[n] = (uint32_t)rng_range(&s, 1u << 20, 8u << 20);
    bytes += sizes[n++];
  }
  if (n % 7919 == 0)                   /* the free order is a permutation */
    bytes -= sizes[--n];
  B_FREE(B_MALLOC(64));
  size_t rss0 = rss_bytes();
  for (size_t i = 0; i < n; i++) {
    ptrs[i] = B_MALLOC(sizes[i]);
    if (!ptrs[i])
      oom();
    memset(ptrs[i], 0x5a, sizes[i]);
  }
  size_t peak = rss_bytes();
  /* free ~all: one object in 1000 stays */
  for (size_t i = 0; i < n; i++) {
    size_t j = (i * 7919u) % n;        /* a scattered order */
    if (j % 1000 == 999)
      keep += sizes[j];
    else
      B_FREE(ptrs[j]);
  }
  const double growth = (double)peak - (double)rss0;
  printf("# decay: %zu objects, %.1f MiB, %.1f MiB kept\n", n,
         (double)bytes / 1048576.0, (double)keep / 1048576.0);
  printf("decay_resident_0s %.1f %%\n",
         100.0 * ((double)rss_bytes() - (double)rss0) / growth);
  decay_where("0s");
  uint64_t t0 = now_ns();
  int reported = 0;
  for (unsigned round = 0;; round++) {
    double t = (double)(now_ns() - t0) / 1e9;
    if (!reported && t >= 1.0) {
      printf("decay_resident_1s %.1f %%\n",
             100.0 * ((double)rss_bytes() - (double)rss0) / growth);
      decay_where("1s");
      reported = 1;
    }
    if (t >= 2.0)
      break;
    for (unsigned k = 0; k < 300; k++) {     /* light use: cache hits */
      unsigned slot = (round * 300 + k) % 64;
      B_FREE(live[slot]);
      live[slot] = B_MALLOC(16 + (k % 16) * 16);
      if (!live[slot])
        oom();
      touch(live[slot], k);
    }
    sleep_s(0.010);
  }
  printf("decay_resident_2s %.1f %%\n",
         100.0 * ((double)rss_bytes() - (double)rss0) / growth);
  decay_where("2s");
  fflush(stdout);
  for (unsigned k = 0; k < 64; k++)
    B_FREE(live[k]);
  for (size_t i = 0; i < n; i++)
    if (i % 1000 == 999)
      B_FREE(ptrs[i]);
  unmap_array(ptrs, DECAY_CAP * sizeof *ptrs);
  unmap_array(sizes, DECAY_CAP * sizeof *sizes);
}

/* ------------------------------------------------------------------------ */

static void print_info(void)
{
  printf("# api %s\n", BENCH_API_NAME);
#if BENCH_IS_AO
  printf("# malloc_impl AO_malloc (%s)\n", BENCH_API_NAME);
#else
  Dl_info info;
  void *f = dlsym(RTLD_DEFAULT, "malloc");
  if (f && dladdr(f, &info) && info.dli_fname)
    printf("# malloc_impl %s\n", info.dli_fname);
#endif
}

static const struct {
  const char *name;
  void (*fn)(void);
} workloads[] = {
  {"pairs", wl_pairs}, {"batch", wl_batch}, {"threads", wl_threads},
  {"bulk", wl_bulk},
  {"prodcons", wl_prodcons}, {"rss", wl_rss}, {"signal", wl_signal},
  {"return", wl_return}, {"decay", wl_decay},
};

int main(int argc, char **argv)
{
  const char *e = getenv("BENCH_SCALE");
  if (e && atof(e) > 0)
    g_scale = atof(e);
  if (argc < 2) {
    fprintf(stderr, "usage: %s all|pairs|batch|threads|bulk|prodcons|rss|signal"
            "|return|decay...\n", argv[0]);
    return 2;
  }
#if BENCH_IS_AO
  AO_malloc_enable_mmap();
#endif
  print_info();
  fflush(stdout);
  for (int i = 1; i < argc; i++) {
    int found = 0;
    for (size_t k = 0; k < sizeof workloads / sizeof workloads[0]; k++) {
      if (strcmp(argv[i], "all") == 0 || strcmp(argv[i], workloads[k].name) == 0) {
        workloads[k].fn();
        found = 1;
      }
    }
    if (!found) {
      fprintf(stderr, "%s: unknown workload %s\n", argv[0], argv[i]);
      return 2;
    }
  }
  return 0;
}
