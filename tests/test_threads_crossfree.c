/* SPDX-License-Identifier: MIT */
/* Cross-thread frees: blocks allocated on producer threads are verified and freed on consumers. */
/*
 * Producers allocate blocks, fill them with a pattern and pass them through
 * a bounded queue (a mutex queue: the test may lock, the library may not) to
 * consumers, which verify and free them; consumers also allocate and free
 * blocks of their own.
 * Phase 1 runs on the static heap alone with at most ~0.5 MiB in flight:
 * memory freed on consumer threads must become available to producers again,
 * so a producer that sees NULL for a whole second fails the test.
 * Phase 2 enables mmap and uses larger blocks; any NULL is a failure.
 */
#include "test_util.h"

#include <sched.h>
#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define QCAP 256

struct item {
  unsigned char *p;
  size_t size;
  uint64_t tag;
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  struct item buf[QCAP];
  unsigned head, count;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
        PTHREAD_COND_INITIALIZER, { { NULL, 0, 0 } }, 0, 0 };

static void q_put(struct item it)
{
  pthread_mutex_lock(&q.mu);
  while (q.count == QCAP)
    pthread_cond_wait(&q.not_full, &q.mu);
  q.buf[(q.head + q.count++) % QCAP] = it;
  pthread_cond_signal(&q.not_empty);
  pthread_mutex_unlock(&q.mu);
}

static struct item q_get(void)
{
  struct item it;
  pthread_mutex_lock(&q.mu);
  while (q.count == 0)
    pthread_cond_wait(&q.not_empty, &q.mu);
  it = q.buf[q.head];
  q.head = (q.head + 1) % QCAP;
  q.count--;
  pthread_cond_signal(&q.not_full);
  pthread_mutex_unlock(&q.mu);
  return it;
}

struct phase {
  const char *name;
  size_t max_size;       /* common sizes */
  size_t max_rare;       /* one in 64 */
  int null_ok_seconds;   /* 0: NULL fails at once */
};

static const struct phase *ph;
static double deadline;
static unsigned long per_producer;
static atomic_ulong produced, consumed, nulls;

static unsigned char *alloc_retry(size_t s)
{
  unsigned char *p = AO_malloc(s);
  double since;
  if (p != NULL)
    return p;
  if (ph->null_ok_seconds == 0)
    tu_fail("%s: AO_malloc(%zu) returned NULL", ph->name, s);
  since = tu_now();
  while ((p = AO_malloc(s)) == NULL) {
    atomic_fetch_add(&nulls, 1);
    if (tu_now() - since > ph->null_ok_seconds)
      tu_fail("%s: AO_malloc(%zu) kept returning NULL for %d s although at "
              "most %d blocks are in flight: memory freed by other threads "
              "is not reusable", ph->name, s, ph->null_ok_seconds, QCAP);
    sched_yield();
  }
  return p;
}

static void *producer(void *arg)
{
  uint64_t rng = tu_seed() + 977 * (uintptr_t)arg;
  unsigned long i;
  for (i = 0; i < per_producer; i++) {
    struct item it;
    it.size = tu_below(&rng, 64) == 0 ? tu_logsize(&rng, ph->max_rare)
                                      : tu_logsize(&rng, ph->max_size);
    it.p = alloc_retry(it.size);
    if ((uintptr_t)it.p % TU_ALIGN != 0)
      tu_fail("%s: AO_malloc(%zu) = %p misaligned", ph->name, it.size,
              (void *)it.p);
    it.tag = tu_rand(&rng);
    tu_fill(it.p, it.size, it.tag);
    q_put(it);
    atomic_fetch_add(&produced, 1);
    if ((i & 63) == 0 && tu_now() > deadline)
      break;
  }
  return NULL;
}

static void *consumer(void *arg)
{
  uint64_t rng = tu_seed() + 31337 * (uintptr_t)arg;
  for (;;) {
    struct item it = q_get();
    size_t bad;
    if (it.p == NULL)
      return NULL;
    bad = tu_check(it.p, it.size, it.tag);
    if (bad != (size_t)-1)
      tu_fail("%s: block %p (size %zu) from another thread has byte %zu "
              "overwritten", ph->name, (void *)it.p, it.size, bad);
    AO_free(it.p);
    atomic_fetch_add(&consumed, 1);
    if (tu_below(&rng, 4) == 0) { /* some local traffic too */
      size_t s = tu_logsize(&rng, 1024);
      unsigned char *p = alloc_retry(s);
      tu_fill(p, s, it.tag);
      if (tu_check(p, s, it.tag) != (size_t)-1)
        tu_fail("%s: local block corrupted", ph->name);
      AO_free(p);
    }
  }
}

static void run(const struct phase *p, int np, int nc, double secs)
{
  pthread_t pt[128], ct[128];
  struct item stop = { NULL, 0, 0 };
  int i;
  ph = p;
  atomic_store(&produced, 0);
  atomic_store(&consumed, 0);
  deadline = tu_now() + secs;
  for (i = 0; i < nc; i++)
    tu_thread(&ct[i], consumer, (void *)(uintptr_t)i);
  for (i = 0; i < np; i++)
    tu_thread(&pt[i], producer, (void *)(uintptr_t)i);
  for (i = 0; i < np; i++)
    pthread_join(pt[i], NULL);
  for (i = 0; i < nc; i++)
    q_put(stop);
  for (i = 0; i < nc; i++)
    pthread_join(ct[i], NULL);
  TU_CHECK(atomic_load(&produced) == atomic_load(&consumed),
           "%s: %lu blocks produced but %lu consumed", p->name,
           (unsigned long)atomic_load(&produced),
           (unsigned long)atomic_load(&consumed));
  tu_info("%s: %lu blocks crossed threads", p->name,
          (unsigned long)atomic_load(&consumed));
}

int main(int argc, char **argv)
{
  static const struct phase static_heap = { "static heap", 2048, 2048, 1 };
  static const struct phase with_mmap = { "mmap enabled", 16384,
                                          (size_t)256 << 10, 0 };
  int n = tu_threads(4);
  int np = n / 2 > 0 ? n / 2 : 1, nc = n - np > 0 ? n - np : 1;
  double secs = tu_seconds(1.0);

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(2 * secs + 20, "the cross-thread free test");
  per_producer = tu_iters(200000);

  run(&static_heap, np, nc, secs);
  AO_malloc_enable_mmap();
  run(&with_mmap, np, nc, secs);
  tu_info("ok (%lu transient NULLs on the static heap)",
          (unsigned long)atomic_load(&nulls));
  return 0;
}
