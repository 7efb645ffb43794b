/* SPDX-License-Identifier: MIT */
/* Per-thread caches: the inline fast paths of AO_malloc and AO_free. */
#ifndef AO_GPL_THREAD_CACHE_H
#define AO_GPL_THREAD_CACHE_H

#include "internal.h"
#include "size_class.h"
#include "track.h"

/*
 * Each thread caches free blocks per size class in plain singly linked
 * lists: the fast paths take no atomic read-modify-write.  What makes them
 * async-signal-safe is `busy`: the owner sets it around every cache
 * operation, and a handler that finds it set (it interrupted a cache
 * operation on its own thread) uses the shared lock-free path instead.  A
 * handler that lands before busy is set finishes its own cache operation
 * completely before the interrupted code goes on, so the cache is always
 * consistent when looked at.  Compiler barriers suffice: a handler runs on
 * the same thread, in program order.
 *
 * Each operation ends with track_cache_release (track.h: a TSan annotation
 * for the drain of a dead thread's cache, nothing in other builds).
 *
 * The TLS pointer uses the initial-exec model: no __tls_get_addr, which
 * may allocate with malloc on first use of a dlopen'ed library's TLS.
 */
#define RUN_CACHE_SLOTS 4
#define RUN_CACHE_BYTES ((size_t)1 << 20)

struct cache_bin {
  void *head;                    /* free blocks, linked by their 1st word */
  unsigned count;                /* blocks in the list */
  unsigned limit;                /* above it, grow it or flush to limit / 2 */
};

/* A thread without a cache points at this one: always busy, so the fast
 * paths need no NULL test and fall to the slow path, which creates one. */
extern struct thread_cache ao_gpl_no_cache;

struct thread_cache {
  volatile int busy;             /* the owner is inside a cache operation */
  unsigned shard;                /* preferred central shard */
  int decay_countdown;           /* frees until the next decay tick (decay.c) */
  size_t run_bytes;              /* bytes held in runs[] */
  struct span *runs[RUN_CACHE_SLOTS];   /* freed page runs, for reuse */
  /* Adaptive bin limits (thread_cache.c): bytes the limits were raised
   * by, over all bins; bins refilled since their last flush (a bit per
   * class); where the next bin to shrink is looked for. */
  size_t grown_bytes;
  AO_t refilled[(NUM_SIZE_CLASSES + 8 * sizeof(AO_t) - 1)
                / (8 * sizeof(AO_t))];
  unsigned victim;
  struct cache_bin bins[NUM_SIZE_CLASSES];
  /* The registry (thread_cache.c): never freed, so always readable. */
  struct thread_cache *next;     /* insert-only list of every cache */
  /* val1: owner tid << 2 | enum cache_state; val2: version, +1 per CAS. */
  AO_double_t owner __attribute__((__aligned__(2 * sizeof(AO_t))));
};

extern __thread struct thread_cache *ao_gpl_tcache
    __attribute__((__tls_model__("initial-exec")));

void *cache_alloc_slow(unsigned size_class);
/* 1 if p went into this thread's cache, creating the cache if need be. */
int cache_free_slow(unsigned size_class, void *p);
void cache_flush_bin(struct thread_cache *tc, struct cache_bin *b);
/* A cached page run of size bytes starting at a multiple of align. */
void *cache_alloc_run(size_t size, size_t align);
int cache_free_run(struct span *d);
/* cache_bin.c: the bins' limits.  All but bin_base with tc->busy set,
 * on the calling thread's own cache. */
#define WORD_BITS (8 * sizeof(AO_t))  /* of the refilled[] bitmap */
/* A bin's normal limit, and the limit it starts with (slow start). */
unsigned bin_base(unsigned c);
unsigned bin_start(unsigned c);
/* Blocks a refill of bin b (class c) takes. */
unsigned bin_refill(const struct cache_bin *b, unsigned c);
/* Give back all but the newest keep blocks of b. */
void bin_flush_to(struct cache_bin *b, unsigned keep);
/* On overflow of bin c: 1 if its limit grew (a thread that allocates and
 * frees the class in bulk), 0 if the caller must flush. */
int bin_grow(struct thread_cache *tc, unsigned c);
/* The calling thread's decay tick (decay.c): restart its countdown at
 * countdown and shrink its grown bin limits a step. */
void cache_decay_self(int countdown);
/* Flush the calling thread's cache to the central lists. */
void cache_flush_self(void);
/* Give back the caches of threads that are gone; how many were drained. */
int cache_reclaim_dead(void);

/*
 * The hit paths below are leaves: no call, so the compiler saves no
 * register and sets up no frame for them; a miss leaves by a tail call
 * (cache_alloc_slow) or through a cold out-of-line helper
 * (cache_free_overflow).  cache_alloc gives NULL only when the heap is
 * exhausted; the caller sets errno.
 */
AO_GPL_INLINE void *cache_alloc(unsigned size_class)
{
  struct thread_cache *tc = ao_gpl_tcache;

  if (AO_GPL_LIKELY(!tc->busy)) {
    struct cache_bin *b = &tc->bins[size_class];
    void *p;

    tc->busy = 1;
    AO_compiler_barrier();
    p = b->head;
    if (AO_GPL_LIKELY(p != NULL)) {
      b->head = free_link_get(p);
      b->count--;
      AO_compiler_barrier();
      tc->busy = 0;
      track_cache_release(tc);
      return p;
    }
    AO_compiler_barrier();
    tc->busy = 0;
    track_cache_release(tc);
  }
  return cache_alloc_slow(size_class);
}

/* cache_free's overflow: flush the bin, then end the cache operation.
 * Out of line so that the hit path of cache_free calls nothing. */
static AO_GPL_NOINLINE __attribute__((__cold__, __unused__))
void cache_free_overflow(struct thread_cache *tc, struct cache_bin *b)
{
  cache_flush_bin(tc, b);
  AO_compiler_barrier();
  tc->busy = 0;
  track_cache_release(tc);
}

/* 1 if the block went into this thread's cache. */
AO_GPL_INLINE int cache_free(unsigned size_class, void *p)
{
  struct thread_cache *tc = ao_gpl_tcache;

  if (AO_GPL_LIKELY(!tc->busy)) {
    struct cache_bin *b = &tc->bins[size_class];
    int tick;

    tc->busy = 1;
    AO_compiler_barrier();
    free_link_set(p, b->head);
    b->head = p;
    if (AO_GPL_UNLIKELY(++b->count > b->limit)) {
      cache_free_overflow(tc, b);
      return 1;
    }
    /* decay.c: memory returns even when only fast paths run.  Counted
     * inside the cache operation, like every other field of the cache. */
    tick = --tc->decay_countdown < 0;
    AO_compiler_barrier();
    tc->busy = 0;
    track_cache_release(tc);
    if (AO_GPL_UNLIKELY(tick))
      decay_tick_cache();
    return 1;
  }
  return 0;
}

#endif /* AO_GPL_THREAD_CACHE_H */
