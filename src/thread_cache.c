/* SPDX-License-Identifier: MIT */
/* Per-thread caches: the registry, creation, refill, flush, page-run reuse, thread exit (bin limits: cache_bin.c). */
#include "thread_cache.h"
#include "atomic_ops_malloc.h"   /* struct AO_malloc_stats */

#include <pthread.h>

struct thread_cache ao_gpl_no_cache = { .busy = 1 };

__thread struct thread_cache *ao_gpl_tcache
    __attribute__((__tls_model__("initial-exec"))) = &ao_gpl_no_cache;

/* Set while this thread creates its cache (a handler interrupting the
 * creation must not create a second one, nor scan the registry while the
 * claimed cache is not yet in ao_gpl_tcache), and for good once the
 * thread's cache was flushed at exit: a handler or a later destructor
 * allocating on an exiting thread then uses the shared lists, and leaves
 * nothing behind. */
static __thread int creating __attribute__((__tls_model__("initial-exec")));

/*
 * The registry.  Every cache ever created is on an insert-only list and is
 * never freed, so a stale pointer to one is always safe to read.  Its owner
 * word (a double word: val1 = tid << 2 | state, val2 = version) changes
 * only by CAS, each bumping the version, so a CAS built on a stale read
 * fails (no ABA: a version would have to wrap around a full word between
 * one thread's read and its CAS).
 *
 *   FREE      flushed, reusable: the first allocation of a thread claims
 *             one (FREE -> OWNED) before it creates a new cache;
 *   OWNED     by thread tid of this process;
 *   DRAINING  another thread is flushing it (the owner is gone);
 *   ORPHANED  owned by a thread of the parent before a fork: in the child
 *             that thread does not exist.
 *
 * The exit hook (a key destructor, when the key is usable) flushes the
 * cache and marks it FREE.  A thread that never gets there (a key >= 32,
 * a cache created after the destructors ran, a fork) leaves its cache
 * OWNED by a thread that is gone: anyone but that thread may then drain it
 * (OWNED -> DRAINING, same tid, flush, -> FREE or -> OWNED by the drainer).
 * "Gone" is proved only by tkill(tid, 0) failing with ESRCH (no task has
 * that tid any more), or by ORPHANED; a reused tid reads as alive, which
 * only delays the reclaim.  A cache whose busy flag is set is never
 * drained: its owner ended inside a cache operation without running the
 * exit hook (with no usable key, pthread_exit or siglongjmp out of a
 * handler), so its lists may be half-updated; that leak is bounded by the
 * cache limits.  Draining runs
 * when a thread finds no FREE cache (a bounded round-robin scan), in
 * AO_malloc_trim (all of them) and when memory runs out.
 *
 * fork: the pthread_atfork child handler (the child has one thread)
 * retags the surviving thread's own cache with its new tid and marks every
 * other OWNED cache ORPHANED, then records the child's pid in image_pid.
 * Scanners drain only while image_pid == getpid(): in a child made without
 * the handlers (_Fork, a raw clone, vfork) the surviving thread's cache
 * still carries the parent's tid, which may be gone by then, so nothing
 * is drained there (only FREE caches are reused): a leak, never a cache
 * drained under its owner.  The constructor retags its own thread's cache
 * too, before it sets image_pid: a fork may have come before it ran.  (A
 * pid alone would not do: the surviving thread's cache and those of the
 * vanished threads carry the same old pid.)
 *
 * Signals.  A scan never drains the caller's own cache (ao_gpl_tcache) nor
 * runs while the caller is `creating`.  A handler that interrupts a scan
 * and scans too can only make the outer CAS fail (the version moved) or
 * find the cache DRAINING and skip it.  A handler that interrupts a claim
 * sees `creating`.  The claimed cache stays busy until ao_gpl_tcache points
 * at it and its tid was checked again: a fork from a handler inside the
 * claim may have tagged it with the parent's tid or ORPHANED it.
 * Progress: a thread stopped forever in a claim or a drain keeps one cache
 * (bounded); nobody waits for it.
 */
enum cache_state { CACHE_FREE = 0, CACHE_OWNED = 1, CACHE_DRAINING = 2,
                   CACHE_ORPHANED = 3 };
#define OWNER(tid, state) ((AO_t)(tid) << 2 | (AO_t)(state))
#define OWNER_STATE(v1) ((enum cache_state)((v1) & 3))
#define OWNER_TID(v1) ((long)((v1) >> 2))
/* Owned caches checked with tkill per cache creation. */
#define SCAN_BUDGET 8

static struct thread_cache *volatile registry;
static volatile AO_t registry_size;
/* Where the next creation's scan starts: any node, or NULL (the head);
 * racy updates only move the starting point (atomic loads and stores: any
 * value stored is a node of the insert-only list). */
static struct thread_cache *volatile scan_cursor;
/* The process whose threads the OWNED tids name (0: none yet). */
static volatile AO_t image_pid;

/*
 * Thread exit.  The key is created by a constructor, outside every signal
 * path.  pthread_setspecific is called only on a thread's first cache
 * creation, which may run in a handler; it is used only when the key is
 * below 32, where glibc stores the value in the thread descriptor without
 * allocating (and musl always does).  Otherwise the exiting thread's cache
 * stays OWNED and is drained by others once the thread is gone.
 */
static pthread_key_t exit_key;
static volatile AO_t exit_key_ok;
static volatile AO_t next_shard;

static void cache_thread_exit(void *arg);
static void cache_flush_all(struct thread_cache *tc);
static void cache_atfork_child(void);
static void owner_set(struct thread_cache *tc, unsigned from, AO_t new1);

__attribute__((__constructor__)) static void cache_key_init(void)
{
  struct thread_cache *own = ao_gpl_tcache;

  if (pthread_key_create(&exit_key, cache_thread_exit) == 0
      && (unsigned long)exit_key < 32)
    AO_store_release(&exit_key_ok, 1);
  /* Allocations may come before this constructor, and a fork too (from an
   * earlier constructor): this thread's cache may then carry the parent's
   * tid.  Nobody drains it before image_pid is set. */
  if (own != &ao_gpl_no_cache)
    owner_set(own, 1u << CACHE_OWNED, OWNER(os_gettid(), CACHE_OWNED));
  if (pthread_atfork(NULL, NULL, cache_atfork_child) == 0)
    AO_store_release(&image_pid, (AO_t)os_getpid());
}

static int owner_cas(struct thread_cache *tc, AO_t v1, AO_t v2, AO_t new1)
{
  return AO_compare_double_and_swap_double_full(&tc->owner, v1, v2, new1,
                                                v2 + 1);
}

/* Move tc from one of the states in `from` (a bit per state) to new1;
 * for the owner (or the single thread of a fork child), whom nobody else
 * moves but by these same transitions. */
static void owner_set(struct thread_cache *tc, unsigned from, AO_t new1)
{
  AO_t v1, v2;

  do {
    v2 = AO_load_acquire(&tc->owner.AO_val2);
    v1 = AO_load_acquire(&tc->owner.AO_val1);
    if (!(from >> OWNER_STATE(v1) & 1))
      return;
  } while (!owner_cas(tc, v1, v2, new1));
}

static struct thread_cache *registry_head(void)
{
  return (struct thread_cache *)AO_load_acquire((volatile AO_t *)&registry);
}

/* The fork child has one thread: only its signal handlers race with this.
 * One may claim or create a cache meanwhile (with the child's tid: spared),
 * or make this thread's cache (ao_gpl_tcache, read again per node). */
static void cache_atfork_child(void)
{
  struct thread_cache *tc;
  long pid = os_getpid(), tid = os_gettid();
  AO_t v1, v2, new1;

  for (tc = registry_head(); tc != NULL; tc = tc->next)
    do {
      v2 = AO_load_acquire(&tc->owner.AO_val2);
      v1 = AO_load_acquire(&tc->owner.AO_val1);
      if (OWNER_STATE(v1) != CACHE_OWNED || OWNER_TID(v1) == tid)
        break;
      new1 = tc == ao_gpl_tcache ? OWNER(tid, CACHE_OWNED)
                                 : (v1 & ~(AO_t)3) | CACHE_ORPHANED;
    } while (!owner_cas(tc, v1, v2, new1));
  AO_store_release(&image_pid, (AO_t)pid);
}

/* If tc's owner is gone and tc is not mid-operation: tc becomes DRAINING,
 * is flushed, and 1 is returned with the version the caller continues
 * from; the caller then moves it on (FREE, or OWNED by itself). */
static int cache_drain(struct thread_cache *tc, AO_t *word,
                       AO_t *version)
{
  AO_t v2 = AO_load_acquire(&tc->owner.AO_val2);
  AO_t v1 = AO_load_acquire(&tc->owner.AO_val1);
  enum cache_state st = OWNER_STATE(v1);
  AO_t drain;

  if (tc == ao_gpl_tcache
      || (st != CACHE_ORPHANED
          && (st != CACHE_OWNED || !os_thread_gone(OWNER_TID(v1)))))
    return 0;
  /* The owner is gone, so busy no longer changes; if the CAS succeeds the
   * owner word did not change since v1 was read, so this was its last
   * value.  Its death orders its accesses before ours, which TSan cannot
   * see: the annotation pairs with the release ending each of its cache
   * operations (track.h).  Only the CAS winner reads busy: racing
   * drainers are ordered by the owner word, not by busy, which the last
   * drainer wrote. */
  track_cache_acquire(tc);
  drain = (v1 & ~(AO_t)3) | CACHE_DRAINING;
  if (!owner_cas(tc, v1, v2, drain))
    return 0;
  if (tc->busy) {
    /* Mid-operation: leave it as it was.  Nobody else moves a DRAINING
     * cache, so this CAS succeeds. */
    owner_cas(tc, drain, v2 + 1, v1);
    return 0;
  }
  cache_flush_all(tc);
  tc->busy = 1;                  /* FREE caches are busy until claimed */
  *word = drain;
  *version = v2 + 1;
  return 1;
}

/* Scanning is allowed only where the OWNED tids name threads of this
 * process and no claim of the caller is in flight. */
static long scan_pid(void)
{
  long pid;

  if (creating)
    return 0;
  pid = os_getpid();
  return (AO_t)pid == AO_load_acquire(&image_pid) ? pid : 0;
}

int cache_reclaim_dead(void)
{
  struct thread_cache *tc;
  long pid = scan_pid();
  AO_t word, version;
  int n = 0;

  if (pid == 0)
    return 0;
  for (tc = registry_head(); tc != NULL; tc = tc->next)
    if (cache_drain(tc, &word, &version)) {
      /* Nobody else moves a DRAINING cache: this CAS succeeds. */
      owner_cas(tc, word, version, OWNER(0, CACHE_FREE));
      n++;
    }
  return n;
}

/* A FREE cache, else the cache of a gone thread found within the scan
 * budget, now OWNED by tid and still busy; NULL if none. */
static struct thread_cache *registry_claim(long tid)
{
  struct thread_cache *tc, *start;
  AO_t v1, v2, n, size = AO_load_acquire(&registry_size);
  long pid;
  unsigned checked = 0;

  for (tc = registry_head(); tc != NULL; tc = tc->next) {
    v2 = AO_load_acquire(&tc->owner.AO_val2);
    v1 = AO_load_acquire(&tc->owner.AO_val1);
    if (OWNER_STATE(v1) == CACHE_FREE
        && owner_cas(tc, v1, v2, OWNER(tid, CACHE_OWNED)))
      return tc;
  }
  pid = os_getpid();
  if ((AO_t)pid != AO_load_acquire(&image_pid))
    return NULL;
  start = (struct thread_cache *)AO_load((volatile AO_t *)&scan_cursor);
  tc = start != NULL ? start : registry_head();
  for (n = 0; tc != NULL && n < size && checked < SCAN_BUDGET; n++) {
    checked += OWNER_STATE(AO_load(&tc->owner.AO_val1)) == CACHE_OWNED;
    if (cache_drain(tc, &v1, &v2)) {
      AO_store((volatile AO_t *)&scan_cursor, (AO_t)tc->next);
      owner_cas(tc, v1, v2, OWNER(tid, CACHE_OWNED));   /* cannot fail */
      return tc;
    }
    tc = tc->next != NULL ? tc->next : registry_head();
  }
  AO_store((volatile AO_t *)&scan_cursor, (AO_t)tc);
  return NULL;
}

/* A new cache, OWNED by tid, busy, on the registry. */
static struct thread_cache *registry_add(long tid)
{
  struct thread_cache *tc = central_alloc(size_to_class(sizeof(*tc)));
  struct thread_cache *head;
  unsigned c;

  if (tc == NULL)
    return NULL;
  track_internal(tc, sizeof(*tc));
  tc->busy = 1;
  tc->shard = (unsigned)(AO_fetch_and_add1(&next_shard) % CENTRAL_SHARDS);
  tc->run_bytes = 0;
  tc->decay_countdown = 0;       /* the block held anything: tick soon */
  tc->grown_bytes = 0;
  tc->victim = 0;
  for (c = 0; c < sizeof(tc->refilled) / sizeof(tc->refilled[0]); c++)
    tc->refilled[c] = 0;
  for (c = 0; c < RUN_CACHE_SLOTS; c++)
    tc->runs[c] = NULL;
  for (c = 0; c < NUM_SIZE_CLASSES; c++) {
    tc->bins[c].head = NULL;
    tc->bins[c].count = 0;
    tc->bins[c].limit = bin_start(c);
  }
  tc->owner.AO_val1 = OWNER(tid, CACHE_OWNED);
  tc->owner.AO_val2 = 0;
  /* Published complete by the full barrier of the CAS. */
  do {
    head = registry_head();
    tc->next = head;
  } while (!AO_compare_and_swap_full((volatile AO_t *)&registry, (AO_t)head,
                                     (AO_t)tc));
  AO_fetch_and_add1(&registry_size);
  return tc;
}

static AO_GPL_NOINLINE struct thread_cache *cache_create(void)
{
  struct thread_cache *tc;
  long tid, now;

  if (creating)
    return NULL;
  creating = 1;
  AO_compiler_barrier();
  tid = os_gettid();
  tc = registry_claim(tid);
  if (tc == NULL)
    tc = registry_add(tid);
  if (tc != NULL) {
    if (AO_load_acquire(&exit_key_ok))
      pthread_setspecific(exit_key, tc);
    AO_compiler_barrier();
    ao_gpl_tcache = tc;
    AO_compiler_barrier();
    /* A handler may have forked since tid was read: the child then runs
     * on here with a cache tagged with the parent's tid, or ORPHANED by
     * the child handler if it ran before the store above.  After the
     * store, the child handler retags it itself. */
    now = os_gettid();
    if (now != tid)
      owner_set(tc, 1u << CACHE_OWNED | 1u << CACHE_ORPHANED,
                OWNER(now, CACHE_OWNED));
    AO_compiler_barrier();
    tc->busy = 0;
    track_cache_release(tc);
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
  if (tc == NULL || tc->busy) {             /* nested, or no cache */
    p = central_alloc(size_class);
    if (p == NULL && cache_reclaim_dead() > 0)
      p = central_alloc(size_class);
    return p;
  }
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
    n = central_alloc_batch(size_class, tc->shard, bin_refill(b, size_class),
                            b->limit, &chain);
    if (n == 0) {
      /* Exhausted: what this cache holds may be all that is left. */
      cache_flush_all(tc);
      n = central_alloc_batch(size_class, tc->shard, 1, 1, &chain);
      /* Then what the caches of gone threads hold. */
      if (n == 0 && cache_reclaim_dead() > 0)
        n = central_alloc_batch(size_class, tc->shard, 1, 1, &chain);
    }
    if (n > 0) {
      p = chain;
      b->head = free_link_get(chain);
      b->count = n - 1;
      tc->refilled[size_class / WORD_BITS] |= (AO_t)1 << (size_class % WORD_BITS);
    }
  }
  AO_compiler_barrier();
  tc->busy = 0;
  track_cache_release(tc);
  /* Refills are slow paths: a program that only allocates after a big
   * free still reaches the decay steps (a coarse clock read). */
  decay_tick();
  return p;
}

int cache_free_slow(unsigned size_class, void *p)
{
  /* A thread that only frees (a consumer) gets a cache too. */
  if (ao_gpl_tcache == &ao_gpl_no_cache && cache_create() == NULL)
    return 0;
  return cache_free(size_class, p);
}

/* Called with tc->busy set, when the bin went over its limit: grow the
 * limit, or keep the newest limit / 2 blocks. */
void cache_flush_bin(struct thread_cache *tc, struct cache_bin *b)
{
  unsigned c = (unsigned)(b - tc->bins);

  if (b->limit < bin_base(c)) {
    b->limit = 2 * b->limit < bin_base(c) ? 2 * b->limit : bin_base(c);
    return;                        /* slow start: count <= the new limit */
  }
  if (bin_grow(tc, c))
    return;
  tc->refilled[c / WORD_BITS] &= ~((AO_t)1 << (c % WORD_BITS));
  bin_flush_to(b, b->limit / 2);
}

void *cache_alloc_run(size_t size, size_t align)
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

    if (d != NULL && d->run.npages == npages
        && ((uintptr_t)d->run.page_base & (align - 1)) == 0) {
      tc->runs[i] = NULL;
      tc->run_bytes -= (size_t)npages << PAGE_SHIFT;
      p = d->run.page_base;
      break;
    }
  }
  AO_compiler_barrier();
  tc->busy = 0;
  track_cache_release(tc);
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
  track_cache_release(tc);
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
    track_cache_release(tc);
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
    struct cache_bin *b = &tc->bins[c];
    void *chain = b->head;

    b->head = NULL;
    b->count = 0;
    b->limit = bin_start(c);
    central_free_chain(chain);
  }
  tc->grown_bytes = 0;
  for (c = 0; c < sizeof(tc->refilled) / sizeof(tc->refilled[0]); c++)
    tc->refilled[c] = 0;
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
  track_cache_release(tc);
}

/* Thread exit: a handler running during it sees busy, or no cache.  The
 * cache is FREE only after ao_gpl_tcache stopped naming it, so a fork in
 * a handler here finds either an OWNED cache of this thread to retag or
 * none. */
static void cache_thread_exit(void *arg)
{
  struct thread_cache *tc = arg;

  if (tc == NULL || tc == &ao_gpl_no_cache)
    return;
  creating = 1;                      /* no new cache on this thread */
  tc->busy = 1;
  AO_compiler_barrier();
  cache_flush_all(tc);
  if (ao_gpl_tcache == tc)
    ao_gpl_tcache = &ao_gpl_no_cache;
  AO_compiler_barrier();
  owner_set(tc, 1u << CACHE_OWNED, OWNER(0, CACHE_FREE));
}

/* What a cache holds, read while its owner may be changing it: plain
 * fields of another thread, so volatile reads hidden from TSan (track.h);
 * a torn count only makes the figure approximate.  Nothing is written,
 * busy is not looked at: a snapshot never waits for a cache's owner. */
TRACK_RACY_READER size_t cache_view_bytes(const struct thread_cache *tc)
{
  const volatile struct thread_cache *v = tc;
  size_t bytes = v->run_bytes;
  unsigned c;

  for (c = 0; c < NUM_SIZE_CLASSES; c++)
    bytes += (size_t)v->bins[c].count * class_size(c);
  return bytes;
}

/* Every cache ever created is on the registry (FREE ones hold nothing).
 * Its cached blocks and runs were counted in use by the span walk: they
 * move to thread_cached; the cache itself is a block of its class, and
 * moves to metadata. */
void cache_stats(struct AO_malloc_stats *st)
{
  size_t self = class_size(size_to_class(sizeof(struct thread_cache)));
  struct thread_cache *tc;

  for (tc = registry_head(); tc != NULL; tc = tc->next) {
    size_t held = cache_view_bytes(tc);

    st->thread_cached += held;
    st->metadata += self;
    st->in_use -= held + self;
    st->thread_caches++;
  }
}
