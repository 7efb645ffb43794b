/* SPDX-License-Identifier: MIT */
/* A profiler-like program: 4 threads call malloc/free/realloc/strdup while a 10 kHz SIGPROF handler on each does too. */
/*
 * Usage: sigprof_malloc [SECONDS]   (default 30)
 *
 * Built against plain malloc: run it with LD_PRELOAD=libaomalloc.so (or
 * any allocator) to test that allocator.  Each worker thread has its own
 * timer (timer_create(CLOCK_MONOTONIC), 100 us, SIGEV_THREAD_ID: SIGPROF
 * to that thread; CPU-time clocks would fire only at the kernel tick):
 * the handler interrupts the worker anywhere,
 * inside malloc included, and calls malloc, strdup, snprintf, realloc and
 * free, keeping one block across calls.  Every block carries a pattern
 * that is checked before it is freed or resized.
 *
 * A monitor thread (SIGPROF blocked, no allocation) watches the workers'
 * progress counters: if one has not moved for 3 s it reports a deadlock
 * and exits 3.  Exit 0: finished with every check passed (last line
 * "sigprof_malloc: PASS ..."); 1: corruption or a failed allocation; 3:
 * deadlock.  A crash ends the process with its signal.  With glibc's
 * malloc the handler re-enters a malloc that holds its arena lock, so the
 * expected outcome there is a deadlock or a crash.
 */
#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
# define sigev_notify_thread_id _sigev_un._tid
#endif

#define NTHREADS 4
#define SLOTS 128
#define STALL_SECONDS 3

struct worker {
  pthread_t thread;
  uint64_t rng, hrng;             /* main path and handler PRNGs */
  atomic_ulong progress;          /* main-path operations */
  atomic_ulong handler_runs, handler_allocs;
  char *held;                     /* the handler's long-lived block */
  size_t held_len;
  unsigned char *slot[SLOTS];
  size_t len[SLOTS];
} __attribute__((__aligned__(64)));

static struct worker workers[NTHREADS];
static _Thread_local struct worker *self;  /* initial-exec in a program: no lazy TLS */
static atomic_int stopping;
static double started;

/* ---- async-signal-safe reports ------------------------------------------- */

static void say(const char *s)
{
  ssize_t r = write(2, s, strlen(s));
  (void)r;
}

static void die(const char *what)
{
  say("sigprof_malloc: FAIL: ");
  say(what);
  say("\n");
  _exit(1);
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
  uint64_t x = *s += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Byte i of a block of length n: depends on the address' low bits too,
 * so a block handed to two owners shows up. */
static unsigned char pat(const void *p, size_t i, size_t n)
{
  return (unsigned char)(((uintptr_t)p >> 4) * 31 + i * 7 + n);
}

static void fill(unsigned char *p, size_t from, size_t n)
{
  size_t i;
  for (i = from; i < n; i++)
    p[i] = pat(p, i, n);
}

/* Large blocks: the ends and a stride of bytes, to keep the checks cheap. */
static int check(const unsigned char *p, size_t upto, size_t n)
{
  size_t i, step = upto > 4096 ? 61 : 1;
  for (i = 0; i < upto; i += step)
    if (p[i] != pat(p, i, n))
      return 0;
  return upto == 0 || p[upto - 1] == pat(p, upto - 1, n);
}

static size_t pick_size(uint64_t *r)
{
  unsigned k = (unsigned)(rnd(r) % 100);
  if (k < 85)
    return 1 + rnd(r) % 256;
  if (k < 98)
    return 1 + rnd(r) % 8192;
  return 1 + rnd(r) % (512 * 1024);
}

/* ---- the handler ------------------------------------------------------------ */

static void on_prof(int sig)
{
  int saved = errno;
  struct worker *w = self;
  char buf[96], *s, *t;
  unsigned char *p;
  size_t n, m, keep, i;
  uintptr_t old;
  (void)sig;
  if (w == NULL) {
    errno = saved;
    return;
  }
  atomic_fetch_add_explicit(&w->handler_runs, 1, memory_order_relaxed);
  n = 1 + rnd(&w->hrng) % 600;
  p = malloc(n);
  if (p == NULL)
    die("malloc returned NULL in the handler");
  fill(p, 0, n);
  snprintf(buf, sizeof(buf), "sample %lu at %p size %zu",
           (unsigned long)atomic_load_explicit(&w->handler_runs,
                                               memory_order_relaxed),
           (void *)p, n);
  s = strdup(buf);
  if (s == NULL || strcmp(s, buf) != 0)
    die("strdup in the handler");
  /* One block kept across handler calls; it grows, shrinks, is freed. */
  if (w->held != NULL && !check((unsigned char *)w->held, w->held_len,
                                w->held_len))
    die("the handler's held block was overwritten");
  if (w->held != NULL && rnd(&w->hrng) % 4 == 0) {
    free(w->held);
    w->held = NULL;
    w->held_len = 0;
  } else {
    m = 1 + rnd(&w->hrng) % 2000;
    keep = w->held_len < m ? w->held_len : m;
    old = (uintptr_t)w->held;
    t = realloc(w->held, m);
    if (t == NULL)
      die("realloc returned NULL in the handler");
    for (i = 0; i < keep; i++)
      if ((unsigned char)t[i] != pat((void *)old, i, w->held_len))
        die("realloc in the handler lost the contents");
    w->held = t;
    w->held_len = m;
    fill((unsigned char *)t, 0, m);
  }
  if (!check(p, n, n) || strcmp(s, buf) != 0)
    die("a handler block was overwritten");
  free(s);
  free(p);
  atomic_fetch_add_explicit(&w->handler_allocs, 1, memory_order_relaxed);
  errno = saved;
}

/* ---- workers ------------------------------------------------------------------ */

static void *work(void *arg)
{
  struct worker *w = arg;
  struct sigevent sev;
  struct itimerspec it;
  timer_t timer;
  unsigned long ops = 0;
  char name[64];

  self = w;
  memset(&sev, 0, sizeof(sev));
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGPROF;
  sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
  if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0)
    die("timer_create");
  it.it_interval.tv_sec = 0;
  it.it_interval.tv_nsec = 100000;             /* 10 kHz */
  it.it_value = it.it_interval;
  if (timer_settime(timer, 0, &it, NULL) != 0)
    die("timer_settime");

  while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
    unsigned k = (unsigned)(rnd(&w->rng) % SLOTS);
    unsigned char *p = w->slot[k];
    size_t n = w->len[k];
    unsigned op = (unsigned)(rnd(&w->rng) % 8);

    if (p != NULL && !check(p, n, n))
      die("a worker block was overwritten");
    if (p == NULL) {
      n = pick_size(&w->rng);
      if (op == 0) {
        snprintf(name, sizeof(name), "block-%u-%lu", k, ops);
        p = (unsigned char *)strdup(name);
        n = strlen(name) + 1;
      } else if (op == 1) {
        size_t i;
        p = calloc(1, n);
        for (i = 0; p != NULL && i < n; i += 97)
          if (p[i] != 0)
            die("calloc gave a block that is not zeroed");
      } else {
        p = malloc(n);
      }
      if (p == NULL)
        die("allocation returned NULL");
      fill(p, 0, n);
    } else if (op < 3) {
      size_t m = pick_size(&w->rng), keep = m < n ? m : n, i;
      uintptr_t old = (uintptr_t)p;
      unsigned char *q = realloc(p, m);
      if (q == NULL)
        die("realloc returned NULL");
      for (i = 0; i < keep; i += keep > 4096 ? 61 : 1)
        if (q[i] != pat((void *)old, i, n))
          die("realloc lost the contents");
      p = q;
      n = m;
      fill(p, 0, n);
    } else {
      free(p);
      p = NULL;
      n = 0;
    }
    w->slot[k] = p;
    w->len[k] = n;
    atomic_fetch_add_explicit(&w->progress, 1, memory_order_relaxed);
    ops++;
  }
  {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    timer_delete(timer);
  }
  for (int k = 0; k < SLOTS; k++) {
    if (w->slot[k] != NULL && !check(w->slot[k], w->len[k], w->len[k]))
      die("a worker block was overwritten (at exit)");
    free(w->slot[k]);
  }
  if (w->held != NULL && !check((unsigned char *)w->held, w->held_len,
                                w->held_len))
    die("the handler's held block was overwritten (at exit)");
  free(w->held);
  return NULL;
}

/* The monitor: SIGPROF is blocked in this thread (inherited from main);
 * write(2) and _exit only, so it reports even when malloc is stuck. */
static void fmt_num(char *b, unsigned long v)
{
  char t[24];
  int i = 0, j = 0;
  do
    t[i++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  while (i > 0)
    b[j++] = t[--i];
  b[j] = '\0';
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 30, last_move[NTHREADS];
  unsigned long seen[NTHREADS], runs = 0, allocs = 0, ops = 0;
  struct sigaction sa;
  sigset_t block;
  int i;

  if (seconds <= 0) {
    fprintf(stderr, "usage: sigprof_malloc [SECONDS]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_prof;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPROF, &sa, NULL);
  /* main (the monitor) never takes SIGPROF; workers unblock it */
  sigemptyset(&block);
  sigaddset(&block, SIGPROF);
  printf("sigprof_malloc: %.0f s, %d threads, SIGPROF at 10 kHz "
         "per thread, the handler calls malloc/strdup/snprintf/realloc/free\n",
         seconds, NTHREADS);
  started = now();
  for (i = 0; i < NTHREADS; i++) {
    workers[i].rng = 0x1234567ULL * (uint64_t)(i + 1);
    workers[i].hrng = workers[i].rng ^ 0xABCDEFULL;
    last_move[i] = started;
    seen[i] = 0;
    pthread_sigmask(SIG_UNBLOCK, &block, NULL);
    if (pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0)
      die("pthread_create");
    pthread_sigmask(SIG_BLOCK, &block, NULL);
  }
  while (now() < started + seconds) {
    struct timespec tenth = { 0, 100000000 };
    nanosleep(&tenth, NULL);
    for (i = 0; i < NTHREADS; i++) {
      unsigned long p = atomic_load_explicit(&workers[i].progress,
                                             memory_order_relaxed);
      if (p != seen[i]) {
        seen[i] = p;
        last_move[i] = now();
      } else if (now() - last_move[i] > STALL_SECONDS) {
        char b[160], n[24];
        b[0] = '\0';
        fmt_num(n, (unsigned long)(last_move[i] - started));
        strcat(b, "sigprof_malloc: DEADLOCK: a worker made no progress for 3 s (stuck since ");
        strcat(b, n);
        strcat(b, " s)\n");
        say(b);
        _exit(3);
      }
    }
  }
  atomic_store(&stopping, 1);
  for (i = 0; i < NTHREADS; i++) {
    pthread_join(workers[i].thread, NULL);
    ops += atomic_load(&workers[i].progress);
    runs += atomic_load(&workers[i].handler_runs);
    allocs += atomic_load(&workers[i].handler_allocs);
  }
  if (runs == 0 || allocs != runs)
    die("the handler did not run, or some runs did not finish");
  printf("sigprof_malloc: PASS: %lu worker operations, %lu handler calls, "
         "all allocated and freed, no corruption (%.1f s)\n",
         ops, runs, now() - started);
  return 0;
}
