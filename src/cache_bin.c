/* SPDX-License-Identifier: MIT */
/* Thread-cache bins: how many blocks each class's bin holds, grown and shrunk with the thread's pattern. */
#include "thread_cache.h"

/* Blocks moved per refill: a few KiB, at least one block. */
static unsigned class_batch(unsigned size_class)
{
  size_t n = 8192 / class_size(size_class);

  return n < 1 ? 1 : n > 128 ? 128 : (unsigned)n;
}

/*
 * Adaptive bin limits.  A bin starts slow (bin_start) and soon reaches
 * twice its batch, its base.  A bin that
 * overflows after it was refilled since its last flush serves a thread
 * that both allocates and frees the class in bulk: its limit grows by a
 * batch instead of flushing, up to a cap per bin, so that an
 * allocate-all-then-free-all cycle stays in the cache.  A thread that
 * only frees a class (a consumer) never refills it and keeps the base
 * limit.  The growth of all bins of a thread is bounded by GROW_BUDGET
 * bytes: past it, grown bins of other classes shrink by a batch first
 * (round robin), their excess flushed.  Only where memory can grow: with the
 * static heap alone, blocks held in a cache are out of reach of every
 * other thread and handler.  cache_flush_all (trim, thread exit, drains,
 * memory exhaustion) puts every limit back to its start.
 */
#define GROW_BUDGET ((size_t)1 << 20)
#define BIN_CAP_BYTES ((size_t)128 << 10)
#define BIN_CAP_BLOCKS 1024u

unsigned bin_base(unsigned c)
{
  return 2 * class_batch(c);
}

/* Slow start: a bin begins at an eighth of its base (at least 2 blocks)
 * and doubles at each overflow until it reaches the base, with no
 * condition and no budget.  A class a thread uses for a few blocks then
 * holds a few blocks, not a base's worth (a small program touches a
 * dozen classes or more), while a class in real use reaches its base
 * after three overflows. */
unsigned bin_start(unsigned c)
{
  unsigned n = bin_base(c) / 8;

  return n < 2 ? 2 : n;
}

/* Blocks per refill: a batch, or half the bin while it starts slow (the
 * chain taken then fits below the limit, as a batch does at the base). */
unsigned bin_refill(const struct cache_bin *b, unsigned c)
{
  unsigned n = class_batch(c);

  return b->limit / 2 < n ? b->limit / 2 : n;
}

static unsigned bin_cap(unsigned c)
{
  size_t n = BIN_CAP_BYTES / class_size(c);
  unsigned base = bin_base(c);

  if (n > BIN_CAP_BLOCKS)
    n = BIN_CAP_BLOCKS;
  return n > base ? (unsigned)n : base;
}

/* Called with tc->busy set: give back all but the newest keep blocks. */
void bin_flush_to(struct cache_bin *b, unsigned keep)
{
  void *last = b->head, *rest;
  unsigned i;

  if (b->count <= keep)
    return;
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

/* Called with tc->busy set: a grown bin c shrinks by a batch, the blocks
 * above its new limit flushed; never below its base. */
static void bin_shrink(struct thread_cache *tc, unsigned c)
{
  struct cache_bin *b = &tc->bins[c];
  unsigned step = class_batch(c);

  if (b->limit < bin_base(c) + step)
    return;
  tc->grown_bytes -= (size_t)step * class_size(c);
  b->limit -= step;
  bin_flush_to(b, b->limit);
}

/* Shrink grown bins other than c's by a batch each, round robin, until
 * `bytes` more fit in the budget; 1 if they do.  A batch at a time, and
 * only the blocks above the new limit flushed: a pattern that keeps more
 * classes busy than the budget holds would otherwise flush whole bins
 * back and forth.  Each bin visited at most once per call. */
static int bin_steal(struct thread_cache *tc, unsigned c, size_t bytes)
{
  unsigned n, v = tc->victim;

  for (n = 0; n < NUM_SIZE_CLASSES && tc->grown_bytes + bytes > GROW_BUDGET;
       n++, v = (v + 1) % NUM_SIZE_CLASSES) {
    if (v != c)
      bin_shrink(tc, v);
  }
  tc->victim = v;
  return tc->grown_bytes + bytes <= GROW_BUDGET;
}

/* Called with tc->busy set, on overflow of bin c: 1 if its limit grew. */
int bin_grow(struct thread_cache *tc, unsigned c)
{
  struct cache_bin *b = &tc->bins[c];
  unsigned step = class_batch(c);
  size_t bytes = (size_t)step * class_size(c);

  if (!(tc->refilled[c / WORD_BITS] >> (c % WORD_BITS) & 1)
      || b->limit + step > bin_cap(c) || !span_memory_can_grow()
      || (tc->grown_bytes + bytes > GROW_BUDGET
          && !bin_steal(tc, c, bytes)))
    return 0;
  b->limit += step;
  tc->grown_bytes += bytes;
  return 1;
}

/* The decay tick of the calling thread (decay.c, every DECAY_FAST_OPS
 * fast-path frees): every grown bin shrinks by a batch, its excess
 * flushed.  A bin still used in bulk grows back at its next overflow (its
 * refill bit stays); one that is not returns its growth within a few
 * ticks, so memory held by grown limits decays like the rest.  Threads
 * that make no call are not reached: their caches keep at most their
 * limits (documented). */
void cache_decay_self(int countdown)
{
  struct thread_cache *tc = ao_gpl_tcache;
  unsigned c;

  if (tc->busy)
    return;          /* a handler inside a cache operation: next time */
  tc->busy = 1;
  AO_compiler_barrier();
  tc->decay_countdown = countdown;
  for (c = 0; c < NUM_SIZE_CLASSES && tc->grown_bytes > 0; c++)
    bin_shrink(tc, c);
  AO_compiler_barrier();
  tc->busy = 0;
  track_cache_release(tc);
}
