/* SPDX-License-Identifier: MIT */
/* Cross-thread frees between per-thread caches, through per-pair SPSC rings, for every size class up to 32 KiB. */
/*
 * N threads (4 by default) each allocate blocks, fill them with a pattern
 * unique to the block, and publish them through lock-free single-producer
 * single-consumer rings, one per ordered pair of threads; every thread
 * drains the rings addressed to it, verifies each block and frees it.  So
 * each thread's cache keeps taking in blocks that other threads' caches
 * handed out, and gives blocks of its own away.  Threads also run
 * malloc/free pairs of their own and keep a long-lived block out of every
 * sixty-four.  One phase per size step, 16 B to 32 KiB (steps of 16 B up to
 * 128, then eight per octave, at least as fine as the size classes, so every
 * class gets phases of its own; sizes anywhere in the step), then a phase of
 * all sizes mixed.  At the end each thread verifies and frees the long-lived blocks of
 * its neighbour, and the threads exit.  Then, after AO_malloc_trim() where
 * the library has it, the main thread allocates 64 MiB of small and large
 * blocks, writes and verifies them all and checks that no two overlap.
 */
#include "test_util.h"

#include <sched.h>
#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define MAXT 8
#define RING 256 /* a power of two */
#define MAXCLASSES 96
#define LONG_LIVED_MAX 16384
#define FINAL_BYTES ((size_t)64 << 20)
#define FINAL_MAX (1 << 16)

struct item {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

/* ring[from][to]: written only by `from`, read only by `to` */
struct ring {
  _Alignas(64) atomic_size_t tail; /* next slot to write */
  _Alignas(64) atomic_size_t head; /* next slot to read */
  struct item slot[RING];
};

static struct ring rings[MAXT][MAXT];
static int nthreads;
static size_t class_max[MAXCLASSES];
static int nclasses;
static pthread_barrier_t barrier;
static double phase_seconds;
static unsigned long phase_scale;

struct tstate {
  int me;
  uint64_t rng;
  uint64_t seq;
  unsigned long produced, consumed, local;
  struct item *long_lived;
  size_t nlong;
};

static struct tstate states[MAXT];

static int ring_push(struct ring *r, const struct item *it)
{
  size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
  if (t - h == RING)
    return 0;
  r->slot[t % RING] = *it;
  atomic_store_explicit(&r->tail, t + 1, memory_order_release);
  return 1;
}

static int ring_pop(struct ring *r, struct item *it)
{
  size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  if (h == t)
    return 0;
  *it = r->slot[h % RING];
  atomic_store_explicit(&r->head, h + 1, memory_order_release);
  return 1;
}

static void item_new(struct tstate *s, struct item *it, size_t size)
{
  it->p = AO_malloc(size);
  if (it->p == NULL)
    tu_fail("thread %d: AO_malloc(%zu) returned NULL (mmap enabled)", s->me,
            size);
  if ((uintptr_t)it->p % TU_ALIGN != 0)
    tu_fail("thread %d: AO_malloc(%zu) = %p misaligned", s->me, size,
            (void *)it->p);
  it->size = size;
  it->tag = ((uint64_t)(s->me + 1) << 56) ^ (++s->seq * 0x9E3779B97F4A7C15ULL);
  tu_fill(it->p, size, it->tag);
}

static void item_free(struct tstate *s, const struct item *it, const char *what)
{
  size_t bad = tu_check(it->p, it->size, it->tag);
  if (bad != (size_t)-1)
    tu_fail("thread %d: %s: block %p (size %zu, from thread %d) byte %zu "
            "overwritten while live (handed out twice, or a cross-thread "
            "free went wrong)", s->me, what, (void *)it->p, it->size,
            (int)(it->tag >> 56) - 1, bad);
  AO_free(it->p);
}

/* Verify and free what the other threads sent; returns the count. */
static unsigned long drain(struct tstate *s, unsigned long max)
{
  unsigned long n = 0;
  int j;
  for (j = 0; j < nthreads; j++) {
    struct item it;
    if (j == s->me)
      continue;
    while (n < max && ring_pop(&rings[j][s->me], &it)) {
      item_free(s, &it, "freeing a block received from another thread");
      n++;
    }
  }
  s->consumed += n;
  return n;
}

static size_t pick_size(struct tstate *s, int c)
{
  size_t lo, hi;
  if (c < 0) /* mixed: any class */
    c = (int)tu_below(&s->rng, (uint64_t)nclasses);
  lo = c == 0 ? 0 : class_max[c - 1] + 1;
  hi = class_max[c];
  return lo + (size_t)tu_below(&s->rng, hi - lo + 1);
}

/* One phase for class c (c < 0: all sizes mixed). */
static void run_phase(struct tstate *s, int c)
{
  size_t typical = c < 0 ? 4096 : class_max[c];
  unsigned long target = (unsigned long)((size_t)(16 << 20) / typical);
  unsigned long made = 0;
  double end = tu_now() + phase_seconds;
  int next = s->me;

  if (target < 1000)
    target = 1000;
  if (target > 16000)
    target = 16000;
  target *= phase_scale;

  while (made < target && tu_now() < end) {
    unsigned burst = 1 + (unsigned)tu_below(&s->rng, 32), b;
    /* a burst to one peer: its cache receives runs of one class */
    do
      next = (next + 1) % nthreads;
    while (next == s->me && nthreads > 1);
    for (b = 0; b < burst && made < target; b++, made++) {
      struct item it;
      int tries, sent;
      item_new(s, &it, pick_size(s, c));
      if (tu_below(&s->rng, 64) == 0 && s->nlong < LONG_LIVED_MAX) {
        s->long_lived[s->nlong++] = it;
        continue;
      }
      if (nthreads == 1 || tu_below(&s->rng, 8) == 0) {
        /* a pair on this thread's own cache */
        item_free(s, &it, "freeing a block of its own");
        s->local++;
        continue;
      }
      for (tries = 0, sent = 0; tries <= 100; tries++) {
        if ((sent = ring_push(&rings[s->me][next], &it)) != 0)
          break;
        drain(s, 64);
        sched_yield();
      }
      if (!sent) {
        /* the peer is descheduled: keep going without it */
        item_free(s, &it, "freeing a block the peer could not take");
        s->local++;
      } else {
        s->produced++;
      }
    }
    drain(s, 128);
  }
  /* everyone stops producing, then everything in flight is freed */
  pthread_barrier_wait(&barrier);
  while (drain(s, (unsigned long)-1) > 0)
    ;
  pthread_barrier_wait(&barrier);
}

static void *thread_main(void *arg)
{
  struct tstate *s = arg;
  int c, peer;
  size_t i;

  for (c = 0; c < nclasses; c++)
    run_phase(s, c);
  run_phase(s, -1);
  /* long-lived blocks of the neighbour: verified and freed here */
  pthread_barrier_wait(&barrier);
  peer = (s->me + 1) % nthreads;
  for (i = 0; i < states[peer].nlong; i++)
    item_free(s, &states[peer].long_lived[i],
              "freeing a long-lived block of the neighbour");
  pthread_barrier_wait(&barrier);
  return NULL;
}

static struct tu_block final_blocks[FINAL_MAX];

static void final_round(void)
{
  uint64_t rng = tu_seed() ^ 0xF1A1;
  size_t total = 0, n = 0, i;
  while (total < FINAL_BYTES && n < FINAL_MAX) {
    size_t s = tu_below(&rng, 64) == 0
               ? 100000 + tu_logsize(&rng, (size_t)4 << 20)
               : tu_logsize(&rng, 32768);
    unsigned char *p = AO_malloc(s);
    if (p == NULL)
      tu_fail("final round: AO_malloc(%zu) returned NULL (%zu MiB live)", s,
              total >> 20);
    TU_CHECK((uintptr_t)p % TU_ALIGN == 0, "final round: %p misaligned",
             (void *)p);
    final_blocks[n].p = p;
    final_blocks[n].size = s;
    final_blocks[n].tag = tu_rand(&rng) | 1;
    tu_fill(p, s, final_blocks[n].tag);
    total += s;
    n++;
  }
  tu_blocks_disjoint(final_blocks, n, "final round");
  for (i = 0; i < n; i++)
    AO_free(final_blocks[i].p);
  tu_info("final round: %zu blocks, %zu MiB, written, verified, disjoint", n,
          total >> 20);
}

int main(int argc, char **argv)
{
  pthread_t t[MAXT];
  unsigned long produced = 0, consumed = 0, local = 0;
  size_t s = 16, longs = 0;
  int i, rc;

  (void)argc;
  tu_init(argv[0]);
  nthreads = tu_threads(4);
  if (nthreads > MAXT)
    nthreads = MAXT;
  /* steps of 16 B up to 128, then eight per octave up to 32 KiB */
  while (s <= 32768 && nclasses < MAXCLASSES) {
    class_max[nclasses++] = s;
    s += s < 128 ? 16 : ((size_t)1 << (63 - __builtin_clzll(s))) / 8;
  }
  phase_seconds = tu_seconds(6.0) / (double)(nclasses + 1);
  phase_scale = tu_iters(1);
  tu_watchdog(tu_seconds(6.0) + 40, "the cross-thread cache test");
  AO_malloc_enable_mmap();

  rc = pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
  TU_CHECK(rc == 0, "pthread_barrier_init: %s", strerror(rc));
  for (i = 0; i < nthreads; i++) {
    states[i].me = i;
    states[i].rng = tu_seed() + 0x9999 * (uint64_t)(i + 1);
    /* the test's bookkeeping does not come from the allocator under test */
    states[i].long_lived = calloc(LONG_LIVED_MAX, sizeof(struct item));
    TU_CHECK(states[i].long_lived != NULL, "calloc failed");
  }
  for (i = 0; i < nthreads; i++)
    tu_thread(&t[i], thread_main, &states[i]);
  for (i = 0; i < nthreads; i++)
    pthread_join(t[i], NULL);
  for (i = 0; i < nthreads; i++) {
    produced += states[i].produced;
    consumed += states[i].consumed;
    local += states[i].local;
    longs += states[i].nlong;
    free(states[i].long_lived);
  }
  TU_CHECK(produced == consumed, "%lu blocks sent to other threads, %lu "
           "received", produced, consumed);
  TU_CHECK(nthreads == 1 || produced > 0, "no block crossed threads");
  tu_info("%d threads, %d size steps + mixed: %lu blocks freed by another "
          "thread, %lu by their own, %zu long-lived", nthreads, nclasses,
          consumed, local, longs);

#ifdef AO_HAVE_malloc_trim
  rc = AO_malloc_trim();
  TU_CHECK(rc == 0 || rc == 1, "AO_malloc_trim() returned %d", rc);
#endif
  final_round();
  return 0;
}
