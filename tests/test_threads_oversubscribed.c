/* SPDX-License-Identifier: MIT */
/* Many more threads than cores doing random malloc/free with content checks and block swaps. */
/*
 * 24 threads (AO_TEST_THREADS) on however many cores there are: each keeps
 * 64 slots and repeatedly either frees a slot's block (after verifying it)
 * or allocates a random-size block and fills it.  Now and then a thread
 * swaps one of its blocks with a global exchange array, so blocks are freed
 * by threads that did not allocate them.  Preemption inside the allocator is
 * frequent with this many threads.  Each block records its size and tag in
 * its first 16 bytes, so whoever holds it can verify it.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define SLOTS 64
#define XCHG 64

struct hdr {
  size_t size;
  uint64_t tag;
};

static _Atomic(struct hdr *) exchange_slots[XCHG];
static pthread_barrier_t start;
static double deadline;
static unsigned long iters;
static atomic_ulong ops;

static struct hdr *make(uint64_t *rng)
{
  size_t s = tu_below(rng, 128) == 0 ? tu_logsize(rng, (size_t)256 << 10)
                                     : tu_logsize(rng, 4096);
  struct hdr *h;
  if (s < sizeof(struct hdr))
    s = sizeof(struct hdr);
  h = AO_malloc(s);
  if (h == NULL)
    tu_fail("AO_malloc(%zu) returned NULL with mmap enabled", s);
  if ((uintptr_t)h % TU_ALIGN != 0)
    tu_fail("AO_malloc(%zu) = %p misaligned", s, (void *)h);
  h->size = s;
  h->tag = tu_rand(rng);
  tu_fill(h + 1, s - sizeof(*h), h->tag);
  return h;
}

static void destroy(struct hdr *h, const char *how)
{
  size_t bad;
  if (h->size < sizeof(*h) || h->size > ((size_t)256 << 10))
    tu_fail("block %p header overwritten (size field %zu) before %s",
            (void *)h, h->size, how);
  bad = tu_check(h + 1, h->size - sizeof(*h), h->tag);
  if (bad != (size_t)-1)
    tu_fail("block %p (size %zu) byte %zu overwritten before %s", (void *)h,
            h->size, bad + sizeof(*h), how);
  AO_free(h);
}

static void *worker(void *arg)
{
  uint64_t rng = tu_seed() ^ ((uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL);
  struct hdr *slot[SLOTS] = { NULL };
  unsigned long i;
  int k;

  pthread_barrier_wait(&start);
  for (i = 0; i < iters; i++) {
    unsigned r = (unsigned)tu_below(&rng, SLOTS);
    if (tu_below(&rng, 32) == 0) {
      /* swap with the global array: the block may be freed elsewhere */
      unsigned x = (unsigned)tu_below(&rng, XCHG);
      if (slot[r] == NULL)
        slot[r] = make(&rng);
      slot[r] = atomic_exchange(&exchange_slots[x], slot[r]);
    } else if (slot[r] != NULL) {
      destroy(slot[r], "free");
      slot[r] = NULL;
    } else {
      slot[r] = make(&rng);
    }
    if ((i & 127) == 0 && tu_now() > deadline)
      break;
  }
  for (k = 0; k < SLOTS; k++)
    if (slot[k] != NULL)
      destroy(slot[k], "the final free");
  atomic_fetch_add(&ops, i);
  return NULL;
}

int main(int argc, char **argv)
{
  int n = tu_threads(24), i;
  double secs = tu_seconds(2.0);
  pthread_t t[256];

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(secs + 25, "the oversubscribed run");
  iters = tu_iters(60000);
  AO_malloc_enable_mmap();
  pthread_barrier_init(&start, NULL, (unsigned)n);
  deadline = tu_now() + secs;
  for (i = 0; i < n; i++)
    tu_thread(&t[i], worker, (void *)(uintptr_t)i);
  for (i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  for (i = 0; i < XCHG; i++) {
    struct hdr *h = atomic_load(&exchange_slots[i]);
    if (h != NULL)
      destroy(h, "the final free of the exchange array");
  }
  tu_info("ok: %d threads, %lu operations", n, (unsigned long)atomic_load(&ops));
  return 0;
}
