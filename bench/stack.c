/* SPDX-License-Identifier: MIT */
/* AO_stack throughput: push+pop pairs per second on one shared stack, 1-8 threads. */
/*
 * Built twice by "make bench": bench_stack_ours (this library) and
 * bench_stack_upstream (Debian's GPL libatomic_ops_gpl.a with its own
 * header).  One run prints, for each thread count given (default 1 2 4 8),
 *   stack_<mode>_<T>t  <pairs per second>  pairs/s
 * where a figure is the median of ROUNDS timed rounds (default 5) of
 * BENCH_STACK_MS milliseconds each (default 200).  bench/stack.sh runs the
 * two builds interleaved and prints the ratios.
 *
 * Modes (argv[1], default "alt"):
 *   alt    each thread pushes one of its nodes, then pops one (any thread's);
 *   burst  each thread pushes its 8 nodes, then pops 8.
 * Each thread owns 8 nodes at the start; a pop never finds the stack empty
 * (every node not held by a thread is on the stack, see the count below),
 * so every pop is a real pop; empty pops are counted and reported anyway.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef BENCH_STACK_UPSTREAM
# include BENCH_UPSTREAM_STACK_HEADER
# define IMPL "upstream"
#else
# include "atomic_ops_stack.h"
# define IMPL "ours"
#endif

#define MAXT 64
#define PER_THREAD 8

struct node {
  AO_t link;
  char pad[64 - sizeof(AO_t)]; /* one node per cache line, as in real use */
};

static AO_stack_t shared;
static struct node nodes[MAXT * PER_THREAD];
static atomic_int go, stop;
static atomic_int ready;
static int burst;

struct worker {
  pthread_t tid;
  int id;
  unsigned long pairs, empty;
  char pad[64];
};
static struct worker w[MAXT];

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *run(void *arg)
{
  struct worker *me = arg;
  AO_t *held[PER_THREAD];
  int nheld = PER_THREAD, i;
  unsigned long pairs = 0, empty = 0;

  for (i = 0; i < PER_THREAD; i++)
    held[i] = &nodes[me->id * PER_THREAD + i].link;
  atomic_fetch_add(&ready, 1);
  while (!atomic_load_explicit(&go, memory_order_acquire))
    ;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    int k = burst ? PER_THREAD : 1;
    for (i = 0; i < k; i++)
      AO_stack_push(&shared, held[--nheld]);
    for (i = 0; i < k; i++) {
      AO_t *p;
      while ((p = AO_stack_pop(&shared)) == NULL)
        empty++;
      held[nheld++] = p;
    }
    pairs += (unsigned long)k;
  }
  /* Give the nodes back so the next round starts with a full set. */
  while (nheld > 0)
    AO_stack_push(&shared, held[--nheld]);
  me->pairs = pairs;
  me->empty = empty;
  return NULL;
}

/* One timed round with t threads; pairs per second. */
static double round_once(int t, double seconds, unsigned long *empty)
{
  double t0, t1;
  unsigned long sum = 0;
  int i;

  /* Threads start owning their nodes: take them all off the stack. */
  while (AO_stack_pop(&shared) != NULL)
    ;
  atomic_store(&go, 0);
  atomic_store(&stop, 0);
  atomic_store(&ready, 0);
  for (i = 0; i < t; i++) {
    w[i].id = i;
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) {
      perror("pthread_create");
      exit(1);
    }
  }
  while (atomic_load(&ready) < t)
    ;
  t0 = now();
  atomic_store_explicit(&go, 1, memory_order_release);
  {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
  }
  atomic_store(&stop, 1);
  for (i = 0; i < t; i++) {
    pthread_join(w[i].tid, NULL);
    sum += w[i].pairs;
    *empty += w[i].empty;
  }
  t1 = now();
  return (double)sum / (t1 - t0);
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
  static const int def_threads[] = { 1, 2, 4, 8 };
  const char *mode = argc > 1 ? argv[1] : "alt";
  const char *s;
  int rounds = 5, ms = 200, a, r;
  double v[64];

  if (strcmp(mode, "alt") == 0)
    burst = 0;
  else if (strcmp(mode, "burst") == 0)
    burst = 1;
  else {
    fprintf(stderr, "usage: %s [alt|burst] [threads...]\n", argv[0]);
    return 2;
  }
  if ((s = getenv("ROUNDS")) != NULL && atoi(s) > 0)
    rounds = atoi(s) < 64 ? atoi(s) : 63;
  if ((s = getenv("BENCH_STACK_MS")) != NULL && atoi(s) > 0)
    ms = atoi(s);
  AO_stack_init(&shared);
  printf("# %s AO_stack, mode %s, median of %d rounds of %d ms\n",
         IMPL, mode, rounds, ms);
  for (a = 0; a < (argc > 2 ? argc - 2 : 4); a++) {
    int t = argc > 2 ? atoi(argv[a + 2]) : def_threads[a];
    unsigned long empty = 0;
    if (t < 1 || t > MAXT) {
      fprintf(stderr, "threads: 1..%d\n", MAXT);
      return 2;
    }
    round_once(t, 0.02, &empty); /* warm-up */
    empty = 0;
    for (r = 0; r < rounds; r++)
      v[r] = round_once(t, ms / 1000.0, &empty);
    qsort(v, (size_t)rounds, sizeof(v[0]), cmp_double);
    printf("stack_%s_%dt %.0f pairs/s\n", mode, t, v[rounds / 2]);
    if (empty != 0)
      printf("# %lu empty pops at %d threads\n", empty, t);
    fflush(stdout);
  }
  return 0;
}
