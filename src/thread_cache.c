/* SPDX-License-Identifier: MIT */
/* Per-thread caches: creation, refill, flush, page-run reuse, thread exit. */
#include "thread_cache.h"

#include <pthread.h>

struct thread_cache ao_gpl_no_cache = { .busy = 1 };

__thread struct thread_cache *ao_gpl_tcache
    __attribute__((__tls_model__("initial-exec"))) = &ao_gpl_no_cache;

/* Set while this thread creates its cache (a handler interrupting the
 * creation must not create a second one), and for good once the thread's
 * cache was flushed at exit: a handler or a later destructor allocating on
 * an exiting thread then uses the shared lists, and leaves nothing behind. */
static __thread int creating __attribute__((__tls_model__("initial-exec")));

/*
 * Thread exit.  The key is created by a constructor, outside every signal
 * path.  pthread_setspecific is called only on a thread's first cache
 * creation, which may run in a handler; it is used only when the key is
 * below 32, where glibc stores the value in the thread descriptor without
 * allocating (and musl always does).  Otherwise, or when the constructor
 * has not run yet, the cache of an exiting thread is not flushed: a leak
 * bounded by the cache limits (about 700 KiB per thread at most).
 */
static pthread_key_t exit_key;
static volatile AO_t exit_key_ok;
static volatile AO_t next_shard;

static void cache_thread_exit(void *arg);
static void cache_flush_all(struct thread_cache *tc);

__attribute__((__constructor__)) static void cache_key_init(void)
{
  if (pthread_key_create(&exit_key, cache_thread_exit) == 0
      && (unsigned long)exit_key < 32)
    AO_store_release(&exit_key_ok, 1);
}

/* Blocks moved per refill: a few KiB, at least one block. */
static unsigned class_batch(unsigned size_class)
{
  size_t n = 8192 / class_size(size_class);

  return n < 1 ? 1 : n > 128 ? 128 : (unsigned)n;
}

static AO_GPL_NOINLINE struct thread_cache *cache_create(void)
{
  struct thread_cache *tc;
  unsigned c;

  if (creating)
    return NULL;
  creating = 1;
  AO_compiler_barrier();
  tc = central_alloc(size_to_class(sizeof(*tc)));
  if (tc != NULL) {
    track_internal(tc, sizeof(*tc));
    tc->busy = 0;
    tc->shard = (unsigned)(AO_fetch_and_add1(&next_shard) % CENTRAL_SHARDS);
    tc->run_bytes = 0;
    for (c = 0; c < RUN_CACHE_SLOTS; c++)
      tc->runs[c] = NULL;
    for (c = 0; c < NUM_SIZE_CLASSES; c++) {
      tc->bins[c].head = NULL;
      tc->bins[c].count = 0;
      tc->bins[c].limit = 2 * class_batch(c);
    }
    if (AO_load_acquire(&exit_key_ok))
      pthread_setspecific(exit_key, tc);
    AO_compiler_barrier();
    ao_gpl_tcache = tc;
  }
  AO_compiler_barrier();
  creating = 0;
  return tc;
}

void *cache_alloc_slow(unsigned size_class)
{
  struct thread_cache *tc = ao_gpl_tcache;
  struct cache_bin *b;
  void *chain = NULL, *p;
  unsigned n;

  if (tc == &ao_gpl_no_cache)
    tc = cache_create();
  if (tc == NULL || tc->busy)
    return central_alloc(size_class);       /* nested, or no cache */
  tc->busy = 1;
  AO_compiler_barrier();
  b = &tc->bins[size_class];
  p = b->head;
  if (p != NULL) {
    /* A handler refilled the bin since the fast path looked. */
    b->head = free_link_get(p);
    b->count--;
  } else {
    /* The bin is empty: it may take up to its limit. */
    n = central_alloc_batch(size_class, tc->shard, class_batch(size_class),
                            b->limit, &chain);
    if (n == 0) {
      /* Exhausted: what this cache holds may be all that is left. */
      cache_flush_all(tc);
      n = central_alloc_batch(size_class, tc->shard, 1, 1, &chain);
    }
    if (n > 0) {
      p = chain;
      b->head = free_link_get(chain);
      b->count = n - 1;
    }
  }
  AO_compiler_barrier();
  tc->busy = 0;
  return p;
}

int cache_free_slow(unsigned size_class, void *p)
{
  /* A thread that only frees (a consumer) gets a cache too. */
  if (ao_gpl_tcache == &ao_gpl_no_cache && cache_create() == NULL)
    return 0;
  return cache_free(size_class, p);
}

/* Called with tc->busy set: keep the newest limit / 2 blocks. */
void cache_flush_bin(struct thread_cache *tc, struct cache_bin *b)
{
  unsigned keep = b->limit / 2, i;
  void *last = b->head, *rest;

  (void)tc;
  if (keep == 0) {
    rest = b->head;
    b->head = NULL;
  } else {
    for (i = 1; i < keep; i++)
      last = free_link_get(last);
    rest = free_link_get(last);
    free_link_set(last, NULL);
  }
  b->count = keep;
  central_free_chain(rest);
}

void *cache_alloc_run(size_t size)
{
  struct thread_cache *tc = ao_gpl_tcache;
  unsigned npages = (unsigned)((size + PAGE_SIZE - 1) >> PAGE_SHIFT), i;
  void *p = NULL;

  if (tc->busy)
    return NULL;
  tc->busy = 1;
  AO_compiler_barrier();
  for (i = 0; i < RUN_CACHE_SLOTS; i++) {
    struct span *d = tc->runs[i];

    if (d != NULL && d->run.npages == npages) {
      tc->runs[i] = NULL;
      tc->run_bytes -= (size_t)npages << PAGE_SHIFT;
      p = d->run.page_base;
      break;
    }
  }
  AO_compiler_barrier();
  tc->busy = 0;
  return p;
}

int cache_free_run(struct span *d)
{
  struct thread_cache *tc = ao_gpl_tcache;
  size_t bytes = (size_t)d->run.npages << PAGE_SHIFT;
  struct span *evicted = NULL;
  unsigned i, slot = 0;

  if (tc->busy || bytes > RUN_CACHE_BYTES)
    return 0;
  tc->busy = 1;
  AO_compiler_barrier();
  /* An empty slot, else the first one; then evict until within bounds. */
  for (i = 0; i < RUN_CACHE_SLOTS; i++)
    if (tc->runs[i] == NULL) {
      slot = i;
      break;
    }
  evicted = tc->runs[slot];
  if (evicted != NULL)
    tc->run_bytes -= (size_t)evicted->run.npages << PAGE_SHIFT;
  tc->runs[slot] = d;
  tc->run_bytes += bytes;
  AO_compiler_barrier();
  tc->busy = 0;
  if (evicted != NULL)
    large_free_run(evicted);
  for (i = 0; tc->run_bytes > RUN_CACHE_BYTES && i < RUN_CACHE_SLOTS; i++) {
    tc->busy = 1;
    AO_compiler_barrier();
    evicted = i != slot ? tc->runs[i] : NULL;
    if (evicted != NULL) {
      tc->runs[i] = NULL;
      tc->run_bytes -= (size_t)evicted->run.npages << PAGE_SHIFT;
    }
    AO_compiler_barrier();
    tc->busy = 0;
    if (evicted != NULL)
      large_free_run(evicted);
  }
  return 1;
}

/* Called with tc->busy set: everything back to the shared layers. */
static void cache_flush_all(struct thread_cache *tc)
{
  unsigned c;

  for (c = 0; c < NUM_SIZE_CLASSES; c++) {
    void *chain = tc->bins[c].head;

    tc->bins[c].head = NULL;
    tc->bins[c].count = 0;
    central_free_chain(chain);
  }
  for (c = 0; c < RUN_CACHE_SLOTS; c++) {
    struct span *d = tc->runs[c];

    tc->runs[c] = NULL;
    if (d != NULL)
      large_free_run(d);
  }
  tc->run_bytes = 0;
}

void cache_flush_self(void)
{
  struct thread_cache *tc = ao_gpl_tcache;

  if (tc->busy)
    return;
  tc->busy = 1;
  AO_compiler_barrier();
  cache_flush_all(tc);
  AO_compiler_barrier();
  tc->busy = 0;
}

/* Thread exit: a handler running during it sees busy, or no cache. */
static void cache_thread_exit(void *arg)
{
  struct thread_cache *tc = arg;
  struct large_header *large;

  if (tc == NULL || tc == &ao_gpl_no_cache)
    return;
  creating = 1;                      /* no new cache on this thread */
  tc->busy = 1;
  AO_compiler_barrier();
  cache_flush_all(tc);
  if (ao_gpl_tcache == tc)
    ao_gpl_tcache = &ao_gpl_no_cache;
  AO_compiler_barrier();
  track_internal_end(tc, sizeof(*tc));
  central_free(span_of(tc, &large), tc);
}
