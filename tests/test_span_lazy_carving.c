/* SPDX-License-Identifier: MIT */
/* A new span's blocks are written only as they are taken: untouched blocks stay untouched, yet count as free (retire, reuse). */
/*
 * White-box and deterministic (built from the library's sources with a
 * 64 KiB static heap, like test_frozen_span_token; mmap stays disabled).
 * The test plays the list-token holder of one span, as central.c does:
 *  1. span_new_small hands out block 0; every other block of the span is
 *     then overwritten with a pattern (they are free and nobody's).
 *  2. span_take_batch(want 2) must return blocks 1 and 2, in that order,
 *     keep the token (TAKE_OK_MORE) and leave blocks 3.. untouched.
 *  3. Block 1 goes back; span_take_batch(want 3) must return the two next
 *     uncarved blocks followed by the freed one (the chain is taken whole,
 *     the uncarved blocks make up the difference), and touch nothing else.
 *  4. Everything given back while blocks past the frontier were never
 *     carved: the span counts as wholly free and span_try_retire retires
 *     it; the token holder then finds it RETIRED and recycles it.
 *  5. A second span taken to the last block: every block exactly once,
 *     all inside the span, then TAKE_FULL (the token dropped).
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"
#include "internal.h"
#include "size_class.h"
#include "track.h"

#define PATTERN 0xa5

static void *block(const struct span *d, unsigned i)
{
  return d->run.page_base + (size_t)i * d->block_size;
}

/* Blocks from..capacity-1 still hold the pattern in every byte. */
static void check_untouched(const struct span *d, unsigned from,
                            const char *phase)
{
  unsigned i;
  size_t j;

  for (i = from; i < d->capacity; i++)
    for (j = 0; j < d->block_size; j++)
      TU_CHECK(((unsigned char *)block(d, i))[j] == PATTERN,
               "%s: block %u of %u was written (byte %zu) before it was "
               "taken", phase, i, (unsigned)d->capacity, j);
}

static unsigned take(struct span *d, unsigned want, unsigned max,
                     void **got, enum take_result *r)
{
  void *chain = NULL;
  unsigned k = span_take_batch(d, want, max, &chain, r), n = 0;

  while (chain != NULL) {
    TU_CHECK(n < k, "span_take_batch: chain longer than the %u blocks "
             "reported", k);
    got[n++] = chain;
    chain = free_link_get(chain);
  }
  TU_CHECK(n == k, "span_take_batch reported %u blocks, chained %u", k, n);
  return k;
}

int main(int argc, char **argv)
{
  unsigned c = size_to_class(256), k, i, j, total;
  struct span *d;
  enum take_result r;
  void *b0, *got[512];

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the lazy carving checks");

  d = span_new_small(c, 0, &b0);
  TU_CHECK(d != NULL, "span_new_small(class %u) failed on an empty heap", c);
  TU_CHECK(d->capacity >= 8 && d->capacity <= 512,
           "class %u: span of %u blocks, want 8..512", c,
           (unsigned)d->capacity);
  TU_CHECK(b0 == block(d, 0), "block 0 is not the span's first block");
  track_internal(block(d, 1), (size_t)(d->capacity - 1) * d->block_size);
  memset(block(d, 1), PATTERN, (size_t)(d->capacity - 1) * d->block_size);

  /* 2 */
  k = take(d, 2, 2, got, &r);
  TU_CHECK(k == 2 && r == TAKE_OK_MORE, "take 2: %u blocks, result %d",
           k, (int)r);
  TU_CHECK(got[0] == block(d, 1) && got[1] == block(d, 2),
           "take 2: not blocks 1 and 2 in order");
  check_untouched(d, 3, "take 2");

  /* 3 */
  TU_CHECK(span_put_block(d, got[0]) == 0,
           "a put asked us to list a span whose token we hold");
  k = take(d, 3, 3, got, &r);
  TU_CHECK(k == 3 && r == TAKE_OK_MORE, "take 3: %u blocks, result %d",
           k, (int)r);
  TU_CHECK(got[0] == block(d, 3) && got[1] == block(d, 4)
           && got[2] == block(d, 1),
           "take 3: want blocks 3, 4 then the freed block 1");
  check_untouched(d, 5, "take 3");
  tu_info("class %u (%u B): %u blocks in the span, 5 carved, %u never "
          "written", c, (unsigned)d->block_size, (unsigned)d->capacity,
          (unsigned)d->capacity - 5);

  /* 4: blocks 0..4 back; 5.. were never carved. */
  got[3] = block(d, 2);
  got[4] = b0;
  for (i = 0; i < 5; i++)
    TU_CHECK(span_put_block(d, got[i]) == 0,
             "a put asked us to list a span whose token we hold");
  TU_CHECK(span_try_retire(d) == 1,
           "a span whose blocks are all free (most never carved) was not "
           "retired");
  k = take(d, 1, 1, got, &r);
  TU_CHECK(k == 0 && r == TAKE_RETIRED, "after retire: %u blocks, "
           "result %d", k, (int)r);
  span_recycle(d);

  /* 5 */
  d = span_new_small(c, 0, &b0);
  TU_CHECK(d != NULL, "span_new_small(class %u) failed again", c);
  total = 1;
  got[0] = b0;
  do {
    k = take(d, 3, 3, got + total, &r);
    total += k;
    TU_CHECK(total <= d->capacity, "took %u blocks of %u", total,
             (unsigned)d->capacity);
  } while (r == TAKE_OK_MORE);
  TU_CHECK(r == TAKE_OK && total == d->capacity,
           "took %u of %u blocks, last result %d", total,
           (unsigned)d->capacity, (int)r);
  k = take(d, 1, 1, got + total, &r);
  TU_CHECK(k == 0 && r == TAKE_FULL, "a full span gave %u blocks, "
           "result %d", k, (int)r);
  for (i = 0; i < total; i++) {
    size_t off = (size_t)((char *)got[i] - d->run.page_base);

    TU_CHECK(off < (size_t)d->capacity * d->block_size
             && off % d->block_size == 0, "block %u not in the span", i);
    for (j = 0; j < i; j++)
      TU_CHECK(got[j] != got[i], "block %p taken twice", got[i]);
  }
  /* The first put relists (token dropped); keep it, retire, recycle. */
  for (i = 0; i < total; i++)
    span_put_block(d, got[i]);
  TU_CHECK(span_try_retire(d) == 1, "the wholly free span was not retired");
  span_recycle(d);
  tu_info("second span: %u blocks taken 3 at a time, each once", total);
  return 0;
}
