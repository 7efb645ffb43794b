/* SPDX-License-Identifier: MIT */
/* A span whose list token a frozen thread holds is still retired by AO_malloc_trim once all its blocks are free. */
/*
 * White-box and deterministic: built from the library's sources with a
 * 64 KiB static heap (tests/Makefile.am), so that the test can take a
 * span's list token exactly as an allocator does between popping a span
 * and pushing it back (span_new_small hands the new span's token to its
 * caller; span_take_batch with blocks left keeps it), and then never give
 * it back: the state of a thread frozen forever inside central_alloc_batch.
 * The library has no test hook; only its internal functions are called.
 *
 *  1. Measure the longest page run the empty heap gives (mmap disabled).
 *  2. "Frozen popper": carve a span, take a few blocks with the token held,
 *     never list it.  A helper thread frees every taken block (AO_free:
 *     through its cache and the shared path) and exits.  Every block of
 *     the span is now free, and the span is on no list.
 *  3. AO_malloc_trim() must retire it: the longest run of step 1 must be
 *     had again.  (Before page-map reclaim, the span's pages stayed in use
 *     for good.)
 *  4. The popper "resumes": span_take_batch must report TAKE_RETIRED, and
 *     the descriptor goes back (span_recycle), as central.c does.
 *  5. The same through the exhaustion path instead of a trim: a run that
 *     needs the frozen span's pages is served by AO_malloc directly.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"
#include "internal.h"
#include "size_class.h"
#include "track.h"

#define MAX_PAGES 16

/* Pages of the longest run AO_malloc gives now (each probe is freed and
 * the run cache flushed, so nothing stays behind). */
static unsigned longest_run(void)
{
  unsigned n;

  for (n = MAX_PAGES; n > 0; n--) {
    void *p = AO_malloc((size_t)n * 4096);

    if (p != NULL) {
      AO_free(p);
      AO_malloc_trim();
      return n;
    }
  }
  return 0;
}

struct handoff {
  void *blocks[64];
  unsigned n;
};

static void *freer(void *arg)
{
  struct handoff *h = arg;
  unsigned i;

  for (i = 0; i < h->n; i++)
    AO_free(h->blocks[i]);
  AO_malloc_trim();                 /* flush this thread's cache */
  return NULL;
}

/* Carve a span of class c and leave it as a frozen popper would: token
 * held, never listed; every taken block freed by another thread. */
static struct span *freeze_span(unsigned c)
{
  struct handoff h;
  struct span *d;
  void *b0, *chain = NULL;
  enum take_result r;
  pthread_t t;
  unsigned k;

  d = span_new_small(c, 0, &b0);
  TU_CHECK(d != NULL, "span_new_small(class %u) failed on an empty heap", c);
  TU_CHECK(d->capacity >= 4, "class %u: span of %u blocks, want >= 4", c,
           (unsigned)d->capacity);
  h.n = 0;
  h.blocks[h.n++] = b0;
  /* Take fewer than are free: TAKE_OK_MORE keeps the token with us. */
  k = span_take_batch(d, 2, 2, &chain, &r);
  TU_CHECK(r == TAKE_OK_MORE && k == 2, "span_take_batch: %d, %u blocks",
           (int)r, k);
  while (chain != NULL) {
    h.blocks[h.n++] = chain;
    chain = free_link_get(chain);
  }
  /* What AO_malloc does with a block it hands out (sanitizer and
   * --enable-checks bookkeeping), so that AO_free accepts them. */
  for (k = 0; k < h.n; k++) {
    track_alloc(h.blocks[k], d->block_size);
#ifdef AO_GPL_CHECKS
    checks_allocated(h.blocks[k]);
#endif
  }
  tu_thread(&t, freer, &h);
  pthread_join(t, NULL);
  return d;
}

static void resume(struct span *d, const char *phase)
{
  void *chain = NULL;
  enum take_result r;
  unsigned k = span_take_batch(d, 1, 1, &chain, &r);

  TU_CHECK(k == 0 && r == TAKE_RETIRED, "%s: the resumed popper found the "
           "span not retired (result %d, %u blocks)", phase, (int)r, k);
  span_recycle(d);
}

int main(int argc, char **argv)
{
  unsigned c = size_to_class(512), before, after;
  struct span *d;
  void *p;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the frozen span token checks");
  p = AO_malloc(16);                /* this thread's cache */
  AO_free(p);
  before = longest_run();
  TU_CHECK(before >= 2, "the empty heap gives only %u-page runs", before);

  /* Trim. */
  d = freeze_span(c);
  AO_malloc_trim();
  after = longest_run();
  tu_info("trim: longest run %u pages before the frozen span, %u after "
          "the trim", before, after);
  TU_CHECK(after == before, "AO_malloc_trim left the wholly free span of a "
           "frozen token holder in place: longest run %u pages, was %u",
           after, before);
  resume(d, "trim");

  /* Exhaustion path. */
  d = freeze_span(c);
  p = AO_malloc((size_t)before * 4096);
  tu_info("exhaustion: AO_malloc(%u pages) with the frozen span: %s", before,
          p != NULL ? "served" : "NULL");
  TU_CHECK(p != NULL, "AO_malloc of a %u-page run failed although the "
           "frozen span's blocks are all free", before);
  AO_free(p);
  resume(d, "exhaustion");
  AO_malloc_trim();
  TU_CHECK(longest_run() == before, "pages lost after the second round");
  return 0;
}
