/* SPDX-License-Identifier: MIT */
/* Soak program (not run by make check): threads, timer signals that allocate, thread turnover and fork, RSS over time. */
/*
 * Usage: soak [SECONDS [THREADS [REPORT_SECONDS]]]   (defaults 300, 4, 5)
 * Normally run through tests/soak.sh.
 *
 * T worker threads allocate and free mixed sizes (mostly up to 1 KiB, some
 * up to 32 KiB, page runs, a few direct mappings up to 2 MiB) with random
 * lifetimes (a quarter of the slots hold blocks much longer), hand blocks
 * to each other through an AO_stack and free what they pop.  Every thread,
 * the main one included, gets SIGPROF from its own timer at 2-4 kHz; the
 * handler allocates, checks and frees blocks, keeps one across calls and
 * frees blocks popped from the stack.  Workers exit after 0.5-3 s (their
 * blocks freed or pushed to the stack) and are replaced.  About once a
 * second the main thread forks; the child allocates, checks and frees
 * blocks, frees blocks popped from the stack, and exits.  Every block is
 * checked against its pattern before it is freed.
 *
 * Every REPORT_SECONDS a line: elapsed seconds, operations (total and per
 * second), handler allocations, forks, threads started, live bytes and RSS
 * (from /proc/self/statm).  At the end the RSS overhead (RSS minus the
 * bytes the program holds) is sampled every second; its high-water mark
 * over the second half must not exceed that of the first half by more than
 * 10% + 8 MiB, or the run fails: memory that keeps growing at equal live
 * bytes is a leak.  Exit 0 pass, 1 fail (message on stderr).
 */
#include "test_util.h"

#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "atomic_ops_malloc.h"
#include "atomic_ops_stack.h"

/* -DSOAK_USE_MALLOC: the same run through malloc/calloc/realloc/free, for
 * an allocator preloaded with LD_PRELOAD (.ci/real_programs.sh).  The
 * handlers then call malloc: only an async-signal-safe malloc survives. */
#ifdef SOAK_USE_MALLOC
# define AO_malloc(n) ((n) % 4 == 0 ? soak_calloc(n) : malloc(n))
# define AO_free(p) free(p)
# define AO_malloc_enable_mmap() ((void)0)
static void *soak_calloc(size_t n)
{
  unsigned char *p = calloc(1, n);
  size_t i;
  for (i = 0; p != NULL && i < n && i < 256; i++)
    if (p[i] != 0)
      tu_sfail("calloc gave a block that is not zeroed");
  return p;
}
#endif

#ifndef sigev_notify_thread_id
# define sigev_notify_thread_id _sigev_un._tid
#endif

#define MAXT 64
#define SLOTS 256
#define LONG_SLOTS 64                  /* slots whose blocks live long */
#define TICK_SIG SIGPROF
#define FULL_CHECK 4096                /* whole pattern up to this size */
#define MAX_SAMPLES 100000

/* Every block starts with this header; the pattern covers the rest. */
struct hdr {
  AO_t link;                           /* AO_stack link while on the stack */
  size_t size;
  uint64_t tag;
};

/* Per thread slot (a replaced thread inherits its counters). */
struct tstate {
  int idx;
  volatile int done;                   /* the worker has finished */
  pthread_t thread;
  uint64_t rng, hrng;
  struct hdr *held;                    /* the handler's long-lived block */
  atomic_ulong ops, handler_allocs;
  atomic_long live;                    /* bytes: + by allocs, - by frees */
  struct hdr *slot[SLOTS];
} __attribute__((__aligned__(64)));

static struct tstate states[MAXT + 1];      /* [nthreads] is main */
static __thread struct tstate *me;
static AO_stack_t handoff = AO_STACK_INITIALIZER;
static atomic_long handoff_count;
static atomic_int stopping;
static double run_seconds = 300, report_every = 5;
static int nthreads = 4;

static size_t payload(const struct hdr *h)
{
  return h->size - sizeof(*h);
}

static void pattern_fill(struct hdr *h)
{
  unsigned char *p = (unsigned char *)(h + 1);
  if (payload(h) <= FULL_CHECK)
    tu_fill(p, payload(h), h->tag);
  else
    tu_fill_sparse(p, payload(h), h->tag);
}

static int pattern_ok(const struct hdr *h)
{
  const unsigned char *p = (const unsigned char *)(h + 1);
  return (payload(h) <= FULL_CHECK ? tu_check(p, payload(h), h->tag)
                                   : tu_check_sparse(p, payload(h), h->tag))
         == (size_t)-1;
}

/* Async-signal-safe: used by handlers and forked children too. */
static struct hdr *blk_new(struct tstate *ts, uint64_t *rng, size_t size)
{
  struct hdr *h;
  if (size < sizeof(*h))
    size = sizeof(*h);
  h = AO_malloc(size);
  if (h == NULL)
    tu_sfail("AO_malloc returned NULL with mmap enabled");
  if ((uintptr_t)h % TU_ALIGN != 0)
    tu_sfail("AO_malloc returned a misaligned block");
  h->size = size;
  h->tag = tu_rand(rng);
  pattern_fill(h);
  if (ts != NULL)
    atomic_fetch_add_explicit(&ts->live, (long)size, memory_order_relaxed);
  return h;
}

static void blk_free(struct tstate *ts, struct hdr *h)
{
  if (!pattern_ok(h))
    tu_sfail("a block was overwritten while it was live");
  if (ts != NULL)
    atomic_fetch_sub_explicit(&ts->live, (long)h->size, memory_order_relaxed);
  AO_free(h);
}

#ifdef SOAK_USE_MALLOC
/* realloc keeps the header and the pattern's prefix; a new pattern follows. */
static struct hdr *blk_resize(struct tstate *ts, struct hdr *h, size_t size)
{
  size_t old = h->size;
  uint64_t tag = h->tag;
  if (!pattern_ok(h))
    tu_sfail("a block was overwritten while it was live");
  if (size < sizeof(*h))
    size = sizeof(*h);
  h = realloc(h, size);
  if (h == NULL)
    tu_sfail("realloc returned NULL");
  if ((uintptr_t)h % TU_ALIGN != 0)
    tu_sfail("realloc returned a misaligned block");
  if (h->size != old || h->tag != tag)
    tu_sfail("realloc lost the start of the block");
  h->size = size;
  h->tag = tu_rand(&ts->rng);
  pattern_fill(h);
  atomic_fetch_add_explicit(&ts->live, (long)size - (long)old,
                            memory_order_relaxed);
  return h;
}
#endif

static void handoff_push(struct hdr *h)
{
  atomic_fetch_add_explicit(&handoff_count, 1, memory_order_relaxed);
  AO_stack_push(&handoff, &h->link);
}

static struct hdr *handoff_pop(void)
{
  struct hdr *h = (struct hdr *)AO_stack_pop(&handoff);
  if (h != NULL)
    atomic_fetch_sub_explicit(&handoff_count, 1, memory_order_relaxed);
  return h;
}

static size_t mixed_size(uint64_t *rng)
{
  unsigned k = (unsigned)tu_below(rng, 1000);
  if (k < 800)
    return tu_logsize(rng, 1024);
  if (k < 950)
    return tu_logsize(rng, 32768);
  if (k < 995)
    return 32768 + (size_t)tu_below(rng, (size_t)224 << 10);
  return ((size_t)256 << 10) + (size_t)tu_below(rng, (size_t)1792 << 10);
}

/* ---- timer signals ------------------------------------------------------ */

static void on_tick(int sig)
{
  int saved = errno, i, n;
  struct tstate *ts = me;
  struct hdr *h;
  (void)sig;
  if (ts == NULL)
    return;
  n = 1 + (int)tu_below(&ts->hrng, 2);
  for (i = 0; i < n; i++) {
    size_t s = tu_below(&ts->hrng, 16) == 0 ? tu_logsize(&ts->hrng, 65536)
                                            : tu_logsize(&ts->hrng, 2048);
    h = blk_new(ts, &ts->hrng, s);
    atomic_fetch_add_explicit(&ts->handler_allocs, 1, memory_order_relaxed);
    if (i == 0 && tu_below(&ts->hrng, 4) == 0) {
      struct hdr *old = ts->held;      /* keep one across calls */
      ts->held = h;
      h = old;
    }
    if (h != NULL)
      blk_free(ts, h);
  }
  if (tu_below(&ts->hrng, 8) == 0 && (h = handoff_pop()) != NULL)
    blk_free(ts, h);
  errno = saved;
}

static timer_t start_ticks(struct tstate *ts)
{
  struct sigevent sev;
  struct itimerspec it;
  timer_t t;
  long ns = 250000 + (long)tu_below(&ts->rng, 250001);   /* 2-4 kHz */

  memset(&sev, 0, sizeof(sev));
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = TICK_SIG;
  sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
  if (timer_create(CLOCK_MONOTONIC, &sev, &t) != 0)
    tu_fail("timer_create: %s", strerror(errno));
  it.it_interval.tv_sec = 0;
  it.it_interval.tv_nsec = ns;
  it.it_value = it.it_interval;
  if (timer_settime(t, 0, &it, NULL) != 0)
    tu_fail("timer_settime: %s", strerror(errno));
  return t;
}

/* Block the signal first, so that no tick targets a thread whose timer
 * is gone or that has exited. */
static void stop_ticks(timer_t t)
{
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, TICK_SIG);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  timer_delete(t);
}

/* ---- workers ------------------------------------------------------------ */

static void *worker(void *arg)
{
  struct tstate *ts = arg;
  double end = tu_now() + 0.5 + (double)tu_below(&ts->rng, 2500) / 1000.0;
  unsigned long ops = 0, loops = 0;
  timer_t timer;
  struct hdr *h;
  int i;

  me = ts;
  timer = start_ticks(ts);
  while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
    unsigned r = (unsigned)tu_below(&ts->rng, 64);
    if (r < 8) {
      if ((h = handoff_pop()) != NULL) {
        blk_free(ts, h);
        ops++;
      }
    } else {
      unsigned k = (unsigned)tu_below(&ts->rng, SLOTS);
      h = ts->slot[k];
      if (h == NULL) {
        ts->slot[k] = blk_new(ts, &ts->rng, mixed_size(&ts->rng));
        ops++;
#ifdef SOAK_USE_MALLOC
      } else if (r >= 60) {
        ts->slot[k] = blk_resize(ts, h, mixed_size(&ts->rng));
        ops++;
#endif
      } else if (k >= LONG_SLOTS || tu_below(&ts->rng, 64) == 0) {
        ts->slot[k] = NULL;
        if (r < 24)
          handoff_push(h);               /* another thread frees it */
        else
          blk_free(ts, h);
        ops++;
      }
    }
    if ((++loops & 1023) == 0) {
      atomic_fetch_add_explicit(&ts->ops, ops, memory_order_relaxed);
      ops = 0;
      if (tu_now() > end)
        break;
    }
  }
  atomic_fetch_add_explicit(&ts->ops, ops, memory_order_relaxed);
  stop_ticks(timer);
  me = NULL;
  /* half freed here, half left to the others */
  for (i = 0; i < SLOTS; i++) {
    if ((h = ts->slot[i]) == NULL)
      continue;
    ts->slot[i] = NULL;
    if (i % 2 == 0)
      blk_free(ts, h);
    else
      handoff_push(h);
  }
  if (ts->held != NULL) {
    blk_free(ts, ts->held);
    ts->held = NULL;
  }
  ts->done = 1;
  return NULL;
}

static void start_worker(struct tstate *ts)
{
  ts->done = 0;
  tu_thread(&ts->thread, worker, ts);
}

/* ---- fork --------------------------------------------------------------- */

static void child(uint64_t seed)
{
  struct hdr *live[64] = { NULL }, *h;
  uint64_t rng = seed;
  int i;

  alarm(20);                           /* a hung child is killed */
  me = NULL;
  for (i = 0; i < 4000; i++) {
    unsigned k = (unsigned)tu_below(&rng, 64);
    if (live[k] != NULL) {
      blk_free(NULL, live[k]);
      live[k] = NULL;
    } else {
      live[k] = blk_new(NULL, &rng, mixed_size(&rng));
    }
  }
  for (i = 0; i < 64; i++)
    if (live[i] != NULL)
      blk_free(NULL, live[i]);
  for (i = 0; i < 100 && (h = (struct hdr *)AO_stack_pop(&handoff)) != NULL;
       i++)
    blk_free(NULL, h);
  _exit(0);
}

static unsigned long do_fork(uint64_t seed)
{
  int status;
  pid_t pid = fork();
  if (pid < 0)
    tu_fail("fork: %s", strerror(errno));
  if (pid == 0)
    child(seed);
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      tu_fail("waitpid: %s", strerror(errno));
  if (WIFSIGNALED(status))
    tu_fail("a forked child died of signal %d%s", WTERMSIG(status),
            WTERMSIG(status) == SIGALRM ? " (hung)" : "");
  if (WEXITSTATUS(status) != 0)
    tu_fail("a forked child failed (exit %d)", WEXITSTATUS(status));
  return 1;
}

/* ---- measurements ------------------------------------------------------- */

static long rss_bytes(void)
{
  char buf[256];
  ssize_t n;
  long size, resident;
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  if (sscanf(buf, "%ld %ld", &size, &resident) != 2)
    return -1;
  return resident * sysconf(_SC_PAGESIZE);
}

struct sample {
  double t;
  long rss, live;
};
static struct sample samples[MAX_SAMPLES];
static size_t nsamples;

static long live_total(void)
{
  long v = 0;
  int i;
  for (i = 0; i <= nthreads; i++)
    v += atomic_load_explicit(&states[i].live, memory_order_relaxed);
  return v;
}

static void sum(unsigned long *ops, unsigned long *hallocs)
{
  int i;
  *ops = *hallocs = 0;
  for (i = 0; i <= nthreads; i++) {
    *ops += atomic_load_explicit(&states[i].ops, memory_order_relaxed);
    *hallocs += atomic_load_explicit(&states[i].handler_allocs,
                                     memory_order_relaxed);
  }
}

int main(int argc, char **argv)
{
  struct tstate *main_ts;
  struct sigaction sa;
  double start, next_report, next_sample, next_fork, now;
  unsigned long forks = 0, started = 0, ops, hallocs, last_ops = 0;
  double last_t = 0;
  long hw1 = 0, hw2 = 0, live1 = 0, live2 = 0, limit;
  timer_t main_timer;
  struct hdr *h;
  uint64_t seed = tu_seed();
  size_t i;
  int k;

  tu_init(argv[0]);
  if (argc > 1)
    run_seconds = atof(argv[1]);
  if (argc > 2)
    nthreads = atoi(argv[2]);
  if (argc > 3)
    report_every = atof(argv[3]);
  if (run_seconds <= 0 || nthreads < 1 || nthreads > MAXT || report_every <= 0)
    tu_fail("usage: soak [SECONDS [THREADS (1..%d) [REPORT_SECONDS]]]", MAXT);
  if (rss_bytes() < 0)
    tu_skip("/proc/self/statm is not readable: RSS cannot be followed");
  setvbuf(stdout, NULL, _IOLBF, 0);

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_tick;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(TICK_SIG, &sa, NULL);

  AO_malloc_enable_mmap();
  for (k = 0; k <= nthreads; k++) {
    states[k].idx = k;
    states[k].rng = seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(k + 1));
    states[k].hrng = states[k].rng ^ 0xABCDEF;
  }
  main_ts = &states[nthreads];
  me = main_ts;
  main_timer = start_ticks(main_ts);

  printf("soak: %.0f s, %d threads, timer signals 2-4 kHz on every thread, "
         "a fork about every second\n", run_seconds, nthreads);
  printf("%8s %12s %10s %12s %6s %8s %10s %10s\n", "elapsed", "ops", "ops/s",
         "handler", "forks", "threads", "live_KiB", "rss_KiB");
  start = tu_now();
  next_report = start + report_every;
  next_sample = start + 1;
  next_fork = start + 1;
  for (k = 0; k < nthreads; k++, started++)
    start_worker(&states[k]);

  while ((now = tu_now()) < start + run_seconds) {
    for (k = 0; k < nthreads; k++)
      if (states[k].done) {
        pthread_join(states[k].thread, NULL);
        start_worker(&states[k]);
        started++;
      }
    if (now >= next_fork) {
      forks += do_fork(tu_rand(&main_ts->rng));
      next_fork = now + 0.5 + (double)tu_below(&main_ts->rng, 1000) / 1000.0;
    }
    if (now >= next_sample && nsamples < MAX_SAMPLES) {
      samples[nsamples].t = now - start;
      samples[nsamples].rss = rss_bytes();
      samples[nsamples].live = live_total();
      nsamples++;
      next_sample += 1;
    }
    if (now >= next_report) {
      sum(&ops, &hallocs);
      printf("%8.0f %12lu %10.0f %12lu %6lu %8lu %10ld %10ld\n", now - start,
             ops, (double)(ops - last_ops) / (now - start - last_t), hallocs,
             forks, started, live_total() >> 10, rss_bytes() >> 10);
      last_ops = ops;
      last_t = now - start;
      next_report += report_every;
    }
    tu_sleep(0.02);
  }

  atomic_store(&stopping, 1);
  for (k = 0; k < nthreads; k++)
    pthread_join(states[k].thread, NULL);
  stop_ticks(main_timer);
  me = NULL;
  while ((h = handoff_pop()) != NULL)
    blk_free(main_ts, h);
  if (main_ts->held != NULL)
    blk_free(main_ts, main_ts->held);
  if (live_total() != 0)
    tu_fail("internal: %ld live bytes after everything was freed",
            live_total());
  sum(&ops, &hallocs);

  /* RSS overhead at equal live bytes: RSS minus what the program holds. */
  for (i = 0; i < nsamples; i++) {
    long over = samples[i].rss - samples[i].live;
    if (samples[i].t * 2 < run_seconds) {
      if (over > hw1) {
        hw1 = over;
        live1 = samples[i].live;
      }
    } else if (over > hw2) {
      hw2 = over;
      live2 = samples[i].live;
    }
  }
  limit = hw1 + hw1 / 10 + (8L << 20);
  printf("soak: %lu ops, %lu handler allocations, %lu forks, %lu threads "
         "started in %.0f s\n", ops, hallocs, forks, started, run_seconds);
  printf("soak: RSS minus live bytes, high-water: first half %ld KiB (live "
         "%ld KiB), second half %ld KiB (live %ld KiB), limit %ld KiB "
         "(first half + 10%% + 8 MiB)\n", hw1 >> 10, live1 >> 10, hw2 >> 10,
         live2 >> 10, limit >> 10);
  if (nsamples < 4)
    tu_fail("too few RSS samples (%zu): run for longer", nsamples);
  if (hw2 > limit)
    tu_fail("RSS keeps growing: the overhead high-water went from %ld KiB "
            "in the first half to %ld KiB in the second (limit %ld KiB)",
            hw1 >> 10, hw2 >> 10, limit >> 10);
  printf("soak: PASS\n");
  return 0;
}
