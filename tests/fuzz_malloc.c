/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: AO_malloc/AO_free/AO_stack operations checked against a shadow model. */
/*
 * The input is a program: one opcode byte (taken modulo 16) followed by a
 * fixed number of argument bytes per opcode; bytes past the end of the
 * input read as 0, so every input is valid.  Ops (arguments in brackets):
 *
 *   0-3  ALLOC    [slot, hi, lo]      slot = AO_malloc(size(hi, lo)); an
 *                                     occupied slot is checked and freed first
 *   4-5  FREE     [slot]              check and free the slot (any order;
 *                                     an empty slot: AO_free(NULL))
 *   6    REPLACE  [slot, hi, lo]      realloc-like: new block, copy, free old
 *   7    MANY     [slot, n, hi, lo]   n % 64 + 1 ALLOCs of one size into
 *                                     consecutive slots
 *   8    FREEMANY [slot, step, n]     free n + 1 slots slot, slot + (step|1), ...
 *   9    MMAP     []                  AO_malloc_enable_mmap() (one-way, for
 *                                     the rest of the process)
 *   10   SIGNAL   [slot, flags, hi, lo]  raise(SIGUSR1): its handler frees the
 *                                     block of the slot (flags & 8) after
 *                                     checking it, allocates flags % 8 + 1
 *                                     blocks, raises SIGUSR2 in the middle
 *                                     (flags & 16, the nested handler also
 *                                     allocates and frees), frees them in
 *                                     order (flags & 32: reverse), except one
 *                                     it hands back into the slot (flags & 64)
 *   11   TRIM     []                  AO_malloc_trim(), then check every block
 *   12   PUSH     [n]                 AO_stack_push of a new node of 16 + 4n bytes
 *   13   POP      []                  AO_stack_pop: must be the shadow's top
 *   14   CHECK    []                  check every live block now
 *   15   ABSURD   [n]                 AO_malloc of a size that cannot be
 *                                     mapped: must be NULL
 *
 * size(hi, lo) is log-like: e = hi % 32 (22..31 fold to 12..21), and by
 * mode = hi / 32: 0-3 anywhere in [2^e, 2^(e+1)), 4 at 2^e + (signed)lo,
 * 5 exactly lo (0..255), 6 at 2^e - lo % 16, 7 at 32 KiB or 256 KiB (e odd)
 * + 16 * (signed)lo: every size class, page runs, the 32 KiB and 256 KiB
 * boundaries and direct mappings up to 4 MiB are all reachable.
 *
 * The shadow model keeps (pointer, size, seed) of every live block: each
 * block is filled with a pattern of its seed and offset when allocated and
 * checked whole before it is freed, after a trim and at the end of every
 * input; each new block must be 16-byte aligned and overlap no live block.
 * At the end of an input everything still live is freed (the allocator's
 * own state carries over to the next input, which is wanted).  NULL is
 * accepted only while mmap is off (static heap full), except for a size up
 * to 4 KiB when the harness holds nothing at all, and always for ABSURD.
 *
 * Built with -DAO_FUZZ_STATIC_ONLY, MMAP does nothing: the whole run then
 * lives in the static heap, full most of the time.
 *
 * Any violation prints a message and calls abort(): libFuzzer saves the
 * input.  Built with -DAO_FUZZ_STANDALONE (make check: test_fuzz_replay),
 * main() replays the files named on the command line (directories: every
 * file in them, sorted by name), or else the seed corpus tests/fuzz_corpus
 * ($AO_FUZZ_CORPUS or the path compiled in), then a few thousand
 * pseudo-random inputs (AO_TEST_SEED, AO_TEST_SCALE, AO_TEST_SECONDS).
 *
 * The seed corpus tests/fuzz_corpus was written by this bash script, run
 * from the top of the tree (bytes in decimal, one op per group; the names
 * sort the static-heap inputs before any input that turns mmap on):
 *   c=tests/fuzz_corpus; mkdir -p $c
 *   w() { f=$c/$1; shift; : > $f; for b; do printf "\\$(printf %o $b)" >> $f; done; }
 *   w 00-static-small     0 1 4 0  0 2 3 128  1 3 160 48  2 4 6 255  3 5 7 0  4 2  5 4  14  0 2 10 0  4 1
 *   w 01-static-classes   7 0 63 5 0  7 64 63 8 128  7 128 63 12 0  7 192 15 14 64  14  8 0 1 255
 *   w 02-static-exhaust   7 0 63 15 0  7 64 63 16 0  8 0 3 255  0 1 4 0  7 0 63 4 0  14
 *   w 03-static-runs      0 1 15 0  0 2 16 0  0 3 17 0  0 4 18 0  0 5 16 200  4 2  4 4  11  14  0 2 17 128
 *   w 04-static-boundary  0 1 224 0  0 2 224 1  0 3 224 255  0 4 225 255  0 5 225 0  0 6 225 1  0 7 207 9  14  8 0 1 10
 *   w 05-static-signal    0 1 10 0  10 1 91 9 0  10 2 39 160 200  10 3 64 4 0  4 3  14
 *   w 06-static-stack     12 0  12 5  12 255  13  12 16  13  13  13  13  12 1
 *   w 07-static-absurd    15 0  15 1  15 2  15 3  15 4  15 5  15 6  15 7  15 255  0 1 4 0
 *   w 08-static-replace   0 1 5 0  6 1 7 0  6 1 12 0  6 1 3 0  6 1 16 0  6 1 0 0  6 2 4 0  14
 *   w 09-static-trim      7 0 63 7 0  8 0 3 63  11  7 0 63 10 0  11  14  8 0 1 255  11
 *   w 10-mmap-large       9  0 1 18 0  0 2 18 1  0 3 19 0  0 4 20 128  0 5 21 255  14  4 2  11  0 2 19 50  14
 *   w 11-mmap-boundary    9  0 1 224 0  0 2 224 1  0 3 224 255  0 4 225 0  0 5 225 1  0 6 225 255  0 7 207 0  0 8 210 15  0 9 146 1  0 10 146 255  14  11
 *   w 12-mmap-many        9  7 0 63 15 0  7 64 63 16 0  7 128 63 17 128  7 192 31 20 0  8 0 5 255  11  14
 *   w 13-mmap-signal      9  0 1 20 0  10 1 91 18 0  10 2 55 15 0  10 3 64 146 1  14
 *   w 14-mmap-replace     9  0 1 5 0  6 1 20 0  6 1 10 0  6 1 21 0  6 1 0 0  14
 *   w 15-mmap-stack       9  12 8  12 16  12 32  13  12 255  11  13  13  12 0
 *   w 16-mmap-absurd      9  15 0  15 1  15 2  15 3  15 4  15 5  15 6  15 7  15 8  15 255
 *   w 17-mmap-trim-cycle  9  0 1 21 0  11  4 1  11  0 2 16 0  11  7 10 31 12 0  11  8 10 1 31  11  14
 *   w 18-mmap-mixed       9  0 0 1 0  1 2 17 0  2 146 255 3  3 21 0 10  10 3 89 5 32  12 32  6 2 0 7  13  11  7 40 20 9 9  8 40 7 20  14
 *   w 19-mmap-nested      9  0 1 20 0  10 1 127 20 0  10 1 87 18 0  10 2 95 160 0  10 1 120 14 77  14
 */
#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1
#endif

#include "atomic_ops_malloc.h"
#include "atomic_ops_stack.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* -DFUZZ_USE_MALLOC: the same programs through malloc/calloc/realloc/free,
 * for an allocator preloaded with LD_PRELOAD (.ci/real_programs.sh): odd
 * sizes come from calloc (checked zeroed), REPLACE is a realloc, TRIM is
 * malloc_trim(0), MMAP does nothing and NULL is an error from the start
 * (except for ABSURD sizes). */
#ifdef FUZZ_USE_MALLOC
# include <malloc.h>
# define AO_malloc(n) ((n) % 2 == 1 ? fz_calloc(n) : malloc(n))
# define AO_free(p) free(p)
# define AO_malloc_enable_mmap() ((void)0)
# define AO_malloc_trim() ((void)malloc_trim(0))
static void fz_sfail(const char *msg);
static void *fz_calloc(size_t n)
{
  unsigned char *p = calloc(1, n);
  size_t i;
  for (i = 0; p != NULL && i < n; i++)
    if (p[i] != 0)
      fz_sfail("calloc gave a block that is not zeroed");
  return p;
}
# define FZ_MMAP_INITIAL 1
/* malloc(n) need not be more aligned than an object of n bytes needs. */
# define FZ_ALIGN_FOR(n) ((n) >= 16 ? 16 : 8)
#else
# define FZ_MMAP_INITIAL 0
# define FZ_ALIGN_FOR(n) FZ_ALIGN
#endif

#define FZ_SLOTS 256
#define FZ_NODES 64
#define FZ_HANDLER_BLOCKS 8
#define FZ_ALIGN 16
/* Live bytes the harness holds at most (keeps RSS and checking time low). */
#define FZ_LIVE_CAP ((size_t)32 << 20)
/* With nothing held, the static heap must still give a block this small. */
#ifndef FZ_MUST_FIT_STATIC
# define FZ_MUST_FIT_STATIC ((size_t)4096)
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_block {
  unsigned char *p;   /* NULL: free slot */
  size_t size;
  uint64_t seed;
};

static struct fz_block slots[FZ_SLOTS];
static struct fz_block nodes[FZ_NODES];   /* AO_stack shadow, bottom first */
static unsigned depth;
static size_t live_bytes;
static AO_stack_t stack = AO_STACK_INITIALIZER;
static int mmap_on = FZ_MMAP_INITIAL; /* process-wide: AO_malloc_enable_mmap is one-way */
static uint64_t seed_counter;

/* ---- reports ------------------------------------------------------------- */

__attribute__((format(printf, 1, 2), noreturn))
static void fz_fail(const char *fmt, ...)
{
  va_list ap;
  fputs("fuzz_malloc: FAIL: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}

/* From a signal handler: write(2) and abort(), both async-signal-safe. */
__attribute__((noreturn))
static void fz_sfail(const char *msg)
{
  static const char head[] = "fuzz_malloc: FAIL (in a signal handler): ";
  ssize_t r = write(2, head, sizeof(head) - 1);
  r += write(2, msg, strlen(msg));
  r += write(2, "\n", 1);
  (void)r;
  abort();
}

/* ---- patterns ------------------------------------------------------------ */

static uint64_t fz_new_seed(void)
{
  uint64_t z = (seed_counter += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) | 1;
}

static inline uint64_t fz_word(uint64_t seed, size_t i)
{
  return seed ^ ((uint64_t)i * 0xD6E8FEB86659FD93ULL);
}

/* The pattern loops are most of the time spent per input: coverage and
 * comparison tracing there would only slow the fuzzer down. */
#if defined(__clang__) && __clang_major__ >= 13
# define FZ_NO_COVERAGE __attribute__((__no_sanitize__("coverage")))
#else
# define FZ_NO_COVERAGE
#endif

/* Whole words through this type: blocks are 16-byte aligned, and the
 * pattern may be read through any type. */
typedef uint64_t __attribute__((__may_alias__)) fz_u64;

/* Byte j of the pattern is byte j % 8 of word j / 8 whatever the length,
 * so a copied prefix can be checked against the old block's seed.  p is
 * 8-byte aligned. */
FZ_NO_COVERAGE
static void fz_fill(unsigned char *p, size_t n, uint64_t seed)
{
  size_t i, w = n / 8;
  fz_u64 *q = (fz_u64 *)(void *)p;
  uint64_t v;

  for (i = 0; i < w; i++)
    q[i] = fz_word(seed, i);
  if (n % 8 != 0) {
    v = fz_word(seed, w);
    memcpy(p + 8 * w, &v, n % 8);
  }
}

/* Offset of the first wrong byte, or n. */
FZ_NO_COVERAGE
static size_t fz_mismatch(const unsigned char *p, size_t n, uint64_t seed)
{
  size_t i, j, w = n / 8;
  const fz_u64 *q = (const fz_u64 *)(const void *)p;
  uint64_t v;

  for (i = 0; i < w; i++)
    if (q[i] != fz_word(seed, i))
      break;
  v = fz_word(seed, i);
  for (j = 8 * i; j < n && j < 8 * i + 8; j++)
    if (p[j] != ((const unsigned char *)&v)[j % 8])
      return j;
  return n;
}

static void fz_check(const struct fz_block *b, size_t from, const char *what)
{
  size_t off = fz_mismatch(b->p + from, b->size - from, b->seed);

  if (off != b->size - from)
    fz_fail("%s: block %p of %zu bytes was overwritten at offset %zu "
            "(byte 0x%02x)", what, (void *)b->p, b->size, from + off,
            b->p[from + off]);
}

/* ---- the shadow model ---------------------------------------------------- */

static inline size_t fz_extent(size_t n)
{
  return n == 0 ? 1 : n;   /* AO_malloc(0) gives a unique block */
}

static inline int fz_overlaps(const unsigned char *p, size_t n,
                              const struct fz_block *b)
{
  uintptr_t a0 = (uintptr_t)p, a1 = a0 + fz_extent(n);
  uintptr_t b0 = (uintptr_t)b->p, b1 = b0 + fz_extent(b->size);

  return b->p != NULL && a0 < b1 && b0 < a1;
}

/* The live block that [p, p + n) overlaps, or NULL.  Signal-safe. */
static const struct fz_block *fz_find_overlap(const unsigned char *p, size_t n,
                                              const struct fz_block *extra,
                                              unsigned nextra)
{
  unsigned i;

  for (i = 0; i < FZ_SLOTS; i++)
    if (fz_overlaps(p, n, &slots[i]))
      return &slots[i];
  for (i = 0; i < depth; i++)
    if (fz_overlaps(p, n, &nodes[i]))
      return &nodes[i];
  for (i = 0; i < nextra; i++)
    if (fz_overlaps(p, n, &extra[i]))
      return &extra[i];
  return NULL;
}

static int fz_holds_nothing(void)
{
  unsigned i;

  if (depth != 0)
    return 0;
  for (i = 0; i < FZ_SLOTS; i++)
    if (slots[i].p != NULL)
      return 0;
  return 1;
}

/* Sizes whose NULL is legal: beyond this, nothing can be mapped. */
/* Sizes that may fail even with mmap enabled. */
static int fz_absurd(size_t n)
{
#if SIZE_MAX > 0xffffffffu
  return n >= ((size_t)1 << 47);
#else
  return n >= SIZE_MAX / 2;
#endif
}

/* Checks on a fresh block of n bytes (not NULL); then fills it. */
/* A new block's alignment, and no overlap with any live block. */
static void fz_placed(unsigned char *p, size_t n, const char *what)
{
  const struct fz_block *o;

  if ((uintptr_t)p % FZ_ALIGN_FOR(n) != 0)
    fz_fail("%s: AO_malloc(%zu) = %p is not %d-byte aligned", what, n,
            (void *)p, FZ_ALIGN_FOR(n));
  o = fz_find_overlap(p, n, NULL, 0);
  if (o != NULL)
    fz_fail("%s: AO_malloc(%zu) = %p overlaps the live block %p of %zu bytes",
            what, n, (void *)p, (void *)o->p, o->size);
}

static void fz_accept(unsigned char *p, size_t n, uint64_t seed,
                      const char *what)
{
  fz_placed(p, n, what);
  fz_fill(p, n, seed);
}

/* NULL from AO_malloc(n): a failure unless the size cannot be satisfied. */
static void fz_null(size_t n, const char *what)
{
  if (fz_absurd(n))
    return;
  if (mmap_on)
    fz_fail("%s: AO_malloc(%zu) returned NULL with mmap enabled", what, n);
  if (n <= FZ_MUST_FIT_STATIC && fz_holds_nothing())
    fz_fail("%s: AO_malloc(%zu) returned NULL from the static heap while "
            "the harness holds no block at all", what, n);
}

static void fz_free_slot(unsigned k, const char *what)
{
  struct fz_block *b = &slots[k];

  if (b->p == NULL) {
    AO_free(NULL);
    return;
  }
  fz_check(b, 0, what);
  AO_free(b->p);
  live_bytes -= b->size;
  b->p = NULL;
}

static void fz_alloc_slot(unsigned k, size_t n, const char *what)
{
  unsigned char *p;
  uint64_t seed;

  fz_free_slot(k, what);
  if (live_bytes + n > FZ_LIVE_CAP)
    return;
  p = AO_malloc(n);
  if (p == NULL) {
    fz_null(n, what);
    return;
  }
  seed = fz_new_seed();
  fz_accept(p, n, seed, what);
  slots[k].p = p;
  slots[k].size = n;
  slots[k].seed = seed;
  live_bytes += n;
}

/* b's block moved to p (n bytes), its first keep bytes carried over;
 * the old block is gone (b->p NULL).  Checks what was carried over, then
 * b holds p with a new pattern. */
static void fz_moved(struct fz_block *b, unsigned char *p, size_t n,
                     size_t keep, const char *what)
{
  uint64_t seed;

  live_bytes -= b->size;
  if (fz_mismatch(p, keep, b->seed) != keep)
    fz_fail("%s: the first %zu bytes, moved to %p, changed", what, keep,
            (void *)p);
  seed = fz_new_seed();
  fz_fill(p, n, seed);
  b->p = p;
  b->size = n;
  b->seed = seed;
  live_bytes += n;
}

static void fz_replace_slot(unsigned k, size_t n)
{
  struct fz_block *b = &slots[k];
  unsigned char *p;
  size_t keep;

  if (b->p == NULL) {
    fz_alloc_slot(k, n, "replace");
    return;
  }
  if (live_bytes + n > FZ_LIVE_CAP)
    return;
  fz_check(b, 0, "replace (old block)");
#ifdef FUZZ_USE_MALLOC
  if (n > 0) {   /* realloc(p, 0) may free p and return NULL */
    unsigned char *old = b->p;
    b->p = NULL;   /* the new block may overlap the old one only */
    p = realloc(old, n);
    if (p == NULL) {
      b->p = old;
      fz_null(n, "realloc");
      return;
    }
    fz_placed(p, n, "realloc");
    fz_moved(b, p, n, n < b->size ? n : b->size, "realloc");
    return;
  }
#endif
  p = AO_malloc(n);
  if (p == NULL) {
    fz_null(n, "replace");
    return;
  }
  fz_placed(p, n, "replace");
  keep = n < b->size ? n : b->size;
  memcpy(p, b->p, keep);
  AO_free(b->p);
  b->p = NULL;
  fz_moved(b, p, n, keep, "replace");
}

static void fz_check_all(const char *what)
{
  unsigned i;

  for (i = 0; i < FZ_SLOTS; i++)
    if (slots[i].p != NULL)
      fz_check(&slots[i], 0, what);
  for (i = 0; i < depth; i++)
    fz_check(&nodes[i], sizeof(AO_uintptr_t), what);
}

/* ---- AO_stack ------------------------------------------------------------ */

static void fz_push(size_t n)
{
  unsigned char *p;
  uint64_t seed;

  if (depth == FZ_NODES)
    return;
  p = AO_malloc(n);
  if (p == NULL) {
    fz_null(n, "push");
    return;
  }
  seed = fz_new_seed();
  fz_accept(p, n, seed, "push");
  /* The link field is the node's first word: the pattern starts after it. */
  fz_fill(p + sizeof(AO_uintptr_t), n - sizeof(AO_uintptr_t), seed);
  nodes[depth].p = p;
  nodes[depth].size = n;
  nodes[depth].seed = seed;
  depth++;
  AO_stack_push(&stack, (AO_uintptr_t *)(void *)p);
}

static void fz_pop(void)
{
  AO_uintptr_t *e = AO_stack_pop(&stack);
  struct fz_block *b;

  if (depth == 0) {
    if (e != NULL)
      fz_fail("pop: the stack should be empty, it gave %p", (void *)e);
    return;
  }
  b = &nodes[depth - 1];
  if ((unsigned char *)e != b->p)
    fz_fail("pop: expected the last node pushed, %p (depth %u), got %p",
            (void *)b->p, depth, (void *)e);
  fz_check(b, sizeof(AO_uintptr_t), "pop");
  depth--;
  AO_free(b->p);
  b->p = NULL;
}

/* ---- signal handlers ------------------------------------------------------ */
/*
 * raise() runs the handler before it returns, on this thread, so the
 * handler may read the shadow model (the main path is inside raise(), not
 * halfway through an update).  Handlers use no stdio: fz_sfail.
 */

static struct fz_block sig_in;       /* handed to the handler to free */
static struct fz_block sig_out;      /* handed back by the handler */
static size_t sig_size;
static unsigned sig_flags;
static struct fz_block sig_blocks[FZ_HANDLER_BLOCKS + 2];
static unsigned sig_nblocks;

/* The handlers' own allocations: NULL only when the main path's would be. */
static unsigned char *fz_salloc(size_t n, uint64_t *seed)
{
  unsigned char *p = AO_malloc(n);

  if (p == NULL) {
    if (mmap_on && !fz_absurd(n))
      fz_sfail("AO_malloc returned NULL with mmap enabled");
    return NULL;
  }
  if ((uintptr_t)p % FZ_ALIGN_FOR(n) != 0)
    fz_sfail("AO_malloc gave a block that is not 16-byte aligned");
  if (fz_find_overlap(p, n, sig_blocks, sig_nblocks) != NULL)
    fz_sfail("AO_malloc gave a block overlapping a live block");
  *seed = fz_new_seed();
  fz_fill(p, n, *seed);
  return p;
}

static void fz_scheck_free(struct fz_block *b)
{
  if (fz_mismatch(b->p, b->size, b->seed) != b->size)
    fz_sfail("a block was overwritten before the handler freed it");
  AO_free(b->p);
  b->p = NULL;
}

static void fz_on_usr2(int sig)
{
  struct fz_block *b;
  unsigned i, outer = sig_nblocks;

  (void)sig;
  /* Two blocks, while the outer handler's are live. */
  for (i = 0; i < 2 && sig_nblocks < FZ_HANDLER_BLOCKS + 2; i++) {
    b = &sig_blocks[sig_nblocks];
    b->size = (sig_size >> (i + 1)) + 16 * i;
    b->p = fz_salloc(b->size, &b->seed);
    if (b->p != NULL)
      sig_nblocks++;
  }
  while (sig_nblocks > outer)
    fz_scheck_free(&sig_blocks[--sig_nblocks]);
}

/* Handler runs so far: raise() delivers before it returns on Linux, but
 * under valgrind the delivery may come a little later. */
static volatile sig_atomic_t usr1_runs;

static void fz_on_usr1(int sig)
{
  unsigned i, n = sig_flags % 8 + 1;
  struct fz_block *b;

  (void)sig;
  if (sig_in.p != NULL)
    fz_scheck_free(&sig_in);
  sig_nblocks = 0;
  for (i = 0; i < n; i++) {
    b = &sig_blocks[sig_nblocks];
    b->size = i == 0 ? sig_size : (sig_size >> (i % 4)) + 16 * (i / 4);
    b->p = fz_salloc(b->size, &b->seed);
    if (b->p != NULL)
      sig_nblocks++;
    if (i == n / 2 && (sig_flags & 16))
      raise(SIGUSR2);
  }
  if ((sig_flags & 64) && sig_nblocks > 0) {
    sig_out = sig_blocks[--sig_nblocks];
  }
  if (sig_flags & 32) {
    while (sig_nblocks > 0)
      fz_scheck_free(&sig_blocks[--sig_nblocks]);
  } else {
    for (i = 0; i < sig_nblocks; i++)
      fz_scheck_free(&sig_blocks[i]);
    sig_nblocks = 0;
  }
  usr1_runs++;
}

static void fz_install_handlers(void)
{
  static int done;
  struct sigaction sa;

  if (done)
    return;
  done = 1;
  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = fz_on_usr1;
  if (sigaction(SIGUSR1, &sa, NULL) != 0)
    fz_fail("sigaction(SIGUSR1) failed");
  sa.sa_handler = fz_on_usr2;
  if (sigaction(SIGUSR2, &sa, NULL) != 0)
    fz_fail("sigaction(SIGUSR2) failed");
}

static void fz_signal(unsigned k, unsigned flags, size_t n)
{
  struct fz_block *b = &slots[k];

  if (n > ((size_t)1 << 20))
    n = (size_t)1 << 20;   /* up to 8 such blocks at once */
  sig_in.p = NULL;
  if ((flags & 8) && b->p != NULL) {
    sig_in = *b;
    live_bytes -= b->size;
    b->p = NULL;
  }
  sig_out.p = NULL;
  sig_size = n;
  /* Hand a block back only into an empty slot. */
  sig_flags = b->p == NULL ? flags : flags & ~64u;
  {
    sig_atomic_t before = usr1_runs;
    struct timespec ms = { 0, 1000000 };
    unsigned waited = 0;

    raise(SIGUSR1);
    while (usr1_runs == before) {
      if (++waited > 10000)
        fz_fail("signal: the SIGUSR1 handler did not run within 10 s");
      nanosleep(&ms, NULL);
    }
  }
  if (sig_in.p != NULL)
    fz_fail("signal: the handler did not free the block handed to it");
  if (sig_out.p != NULL) {
    *b = sig_out;
    live_bytes += b->size;
    fz_check(b, 0, "signal (block from the handler)");
  }
}

/* ---- decoding -------------------------------------------------------------- */

struct fz_reader {
  const uint8_t *p;
  size_t n, i;
};

static unsigned fz_byte(struct fz_reader *r)
{
  return r->i < r->n ? r->p[r->i++] : 0;
}

static size_t fz_size(unsigned hi, unsigned lo)
{
  unsigned e = hi % 32, mode = hi / 32;
  size_t base, n;
  long d = (long)(signed char)(unsigned char)lo;

  if (e > 21)
    e -= 10;
  base = (size_t)1 << e;
  switch (mode) {
  case 4:
    n = d < 0 && (size_t)-d > base ? 0 : base + (size_t)d;
    break;
  case 5:
    n = lo;
    break;
  case 6:
    n = base - (lo % 16 < base ? lo % 16 : 0);
    break;
  case 7:
    n = ((e % 2) ? (size_t)262144 : (size_t)32768) + (size_t)(16 * d);
    break;
  default:
    n = base + (((size_t)lo << e) >> 8);
    break;
  }
  return n;
}

/* Sizes no address space can hold: on 32-bit targets, more than 7/8 of
 * it (a contiguous 2 GiB might well be found there). */
static const size_t fz_absurd_sizes[8] = {
  SIZE_MAX, SIZE_MAX - 15, SIZE_MAX - 4096, SIZE_MAX - (SIZE_MAX >> 3),
#if SIZE_MAX > 0xffffffffu
  (size_t)1 << 62, (size_t)1 << 48, (size_t)PTRDIFF_MAX, (size_t)1 << 47
#else
  SIZE_MAX - (SIZE_MAX >> 4), SIZE_MAX - (SIZE_MAX >> 5),
  SIZE_MAX - 65536, SIZE_MAX - (SIZE_MAX >> 6)
#endif
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct fz_reader r;
  unsigned op, k, a, b, c, i;
  volatile size_t absurd;
  void *p;

  fz_install_handlers();
  r.p = data;
  r.n = size;
  r.i = 0;
  while (r.i < r.n) {
    op = fz_byte(&r) % 16;
    switch (op) {
    case 0: case 1: case 2: case 3:
      k = fz_byte(&r);
      a = fz_byte(&r);
      b = fz_byte(&r);
      fz_alloc_slot(k, fz_size(a, b), "alloc");
      break;
    case 4: case 5:
      fz_free_slot(fz_byte(&r), "free");
      break;
    case 6:
      k = fz_byte(&r);
      a = fz_byte(&r);
      b = fz_byte(&r);
      fz_replace_slot(k, fz_size(a, b));
      break;
    case 7:
      k = fz_byte(&r);
      c = fz_byte(&r) % 64 + 1;
      a = fz_byte(&r);
      b = fz_byte(&r);
      for (i = 0; i < c; i++)
        fz_alloc_slot((k + i) % FZ_SLOTS, fz_size(a, b), "many");
      break;
    case 8:
      k = fz_byte(&r);
      a = fz_byte(&r) | 1;
      c = fz_byte(&r) + 1;
      for (i = 0; i < c; i++)
        fz_free_slot((k + i * a) % FZ_SLOTS, "free many");
      break;
    case 9:
#ifndef AO_FUZZ_STATIC_ONLY
      AO_malloc_enable_mmap();
      mmap_on = 1;
#endif
      break;
    case 10:
      k = fz_byte(&r);
      c = fz_byte(&r);
      a = fz_byte(&r);
      b = fz_byte(&r);
      fz_signal(k, c, fz_size(a, b));
      break;
    case 11:
      AO_malloc_trim();
      fz_check_all("trim");
      break;
    case 12:
      fz_push(16 + 4 * (size_t)fz_byte(&r));
      break;
    case 13:
      fz_pop();
      break;
    case 14:
      fz_check_all("check");
      break;
    default:
      a = fz_byte(&r);
      /* volatile: the compiler would warn about a constant absurd size */
      absurd = fz_absurd_sizes[a % 8] - a / 8;
      p = AO_malloc(absurd);
      if (p != NULL)
        fz_fail("AO_malloc(%zu) should fail, it gave %p", (size_t)absurd, p);
      break;
    }
  }
  /* Nothing carries over to the next input but the allocator's state
   * (each block is checked as it is freed). */
  for (i = 0; i < FZ_SLOTS; i++)
    fz_free_slot(i, "end of input");
  while (depth > 0)
    fz_pop();
  fz_pop();   /* the stack must be empty now */
  if (live_bytes != 0)
    fz_fail("the shadow model lost track of %zu bytes", live_bytes);
  return 0;
}

/* ---- replay without libFuzzer (make check) --------------------------------- */
#ifdef AO_FUZZ_STANDALONE

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#ifndef AO_FUZZ_CORPUS_DIR
# define AO_FUZZ_CORPUS_DIR "fuzz_corpus"
#endif

static double rp_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double rp_env(const char *name, double def)
{
  const char *s = getenv(name);
  double v = s != NULL && *s != '\0' ? strtod(s, NULL) : 0;

  return v > 0 ? v : def;
}

static void rp_watchdog(int sig)
{
  static const char msg[] =
      "test_fuzz_replay: FAIL: watchdog: the replay did not finish in time\n";
  ssize_t r = write(2, msg, sizeof(msg) - 1);

  (void)sig;
  (void)r;
  _exit(1);
}

static void rp_file(const char *path, unsigned *count)
{
  FILE *f = fopen(path, "rb");
  static uint8_t buf[1 << 16];
  size_t n;

  if (f == NULL) {
    fprintf(stderr, "test_fuzz_replay: FAIL: %s: %s\n", path, strerror(errno));
    exit(1);
  }
  n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  ++*count;
}

static int rp_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir, sorted by name: the static-heap inputs first. */
static void rp_dir(const char *dir, unsigned *count)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL, path[4096];
  size_t n = 0, cap = 0, i;
  struct stat st;

  if (d == NULL) {
    fprintf(stderr, "test_fuzz_replay: FAIL: %s: %s\n", dir, strerror(errno));
    exit(1);
  }
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      names = realloc(names, cap * sizeof(*names));
      if (names == NULL)
        abort();
    }
    names[n] = strdup(e->d_name);
    if (names[n] == NULL)
      abort();
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof(*names), rp_cmp);
  for (i = 0; i < n; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
      rp_file(path, count);
    free(names[i]);
  }
  free(names);
}

static uint64_t rp_rand(uint64_t *s)
{
  uint64_t x = *s;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int main(int argc, char **argv)
{
  const char *env = getenv("AO_FUZZ_CORPUS");
  const char *sd = getenv("AO_TEST_SEED");
  unsigned files = 0, inputs = 0, i, j, len;
  unsigned long want = (unsigned long)(3000 * rp_env("AO_TEST_SCALE", 1));
  double deadline = rp_now() + rp_env("AO_TEST_SECONDS", 10);
  uint64_t s = sd != NULL && *sd != '\0' ? strtoull(sd, NULL, 0) | 1
                                          : 0x2545F4914F6CDD1DULL;
  uint8_t buf[64];
  struct stat st;
  int a;

  signal(SIGALRM, rp_watchdog);
  alarm((unsigned)rp_env("AO_TEST_SECONDS", 10) * 3 + 60);
  if (argc > 1) {
    for (a = 1; a < argc; a++) {
      if (stat(argv[a], &st) == 0 && S_ISDIR(st.st_mode))
        rp_dir(argv[a], &files);
      else
        rp_file(argv[a], &files);
    }
  } else {
    rp_dir(env != NULL && *env != '\0' ? env : AO_FUZZ_CORPUS_DIR, &files);
    if (files == 0) {
      fprintf(stderr, "test_fuzz_replay: FAIL: the corpus is empty\n");
      return 1;
    }
  }
  /* Random inputs (only without arguments, which name inputs to
   * reproduce).  Short, and three bytes in four with e = byte % 32 above
   * 15 are moved 16 down (byte % 16, the opcode, stays): big blocks stay
   * rare enough for thousands of inputs in a few seconds. */
  for (i = 0; argc == 1 && i < want && rp_now() < deadline; i++) {
    len = 1 + (unsigned)(rp_rand(&s) % sizeof(buf));
    for (j = 0; j < len; j++)
      buf[j] = (uint8_t)(rp_rand(&s) >> 32);
    for (j = 0; j < len; j++)
      if (rp_rand(&s) % 4 != 0 && (buf[j] % 32) > 15)
        buf[j] = (uint8_t)(buf[j] - 16);
    LLVMFuzzerTestOneInput(buf, len);
    inputs++;
  }
  printf("test_fuzz_replay: %u corpus files and %u random inputs replayed "
         "(mmap %s)\n", files, inputs, mmap_on ? "on" : "off");
  return 0;
}

#endif /* AO_FUZZ_STANDALONE */
