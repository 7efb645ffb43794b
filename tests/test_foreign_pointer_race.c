/* SPDX-License-Identifier: MIT */
/* A foreign pointer in the 32 MiB unit of a large mapping that another thread moves or unmaps: probed (and, in libaomalloc, freed) without a fault. */
/*
 * AO_free and AO_malloc_usable_size find a header by masking a pointer to
 * its SEGMENT_SIZE unit.  A foreign page (someone else's mmap) may share a
 * unit with one of our direct large mappings, and another thread may move
 * that mapping away (AO_realloc beyond the room after it) or unmap it
 * while a probe of the foreign page runs: the probe must then read nothing
 * that can vanish.  A prober thread probes the foreign page in a loop,
 * slowed inside its window by signals whose handler spins, while main
 * moves and frees the mapping next to it.
 *
 * Built twice: against libatomic_ops_gpl (AO_malloc_usable_size must say
 * 0), and as test_replace_foreign_race against libaomalloc
 * (-DTEST_REPLACE), whose free() must ignore the foreign pointer, and
 * whose malloc_usable_size must say 0.  Bounded by rounds and by
 * AO_TEST_SECONDS; a round that cannot place the foreign page (older
 * kernels ignore MAP_FIXED_NOREPLACE) is skipped.
 */
#include "test_util.h"
#include "atomic_ops_malloc.h"

#include <malloc.h>
#include <sched.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
# define MAP_FIXED_NOREPLACE 0x100000
#endif

#if UINTPTR_MAX > 0xffffffffu
# define UNIT ((uintptr_t)32 << 20)   /* SEGMENT_SIZE of 64-bit targets */
#else
# define UNIT ((uintptr_t)4 << 20)
#endif
#define FOREIGN_SIZE ((size_t)65536)
#define KEPT 16

/* The foreign pointer of the round, and the one the prober is using: main
 * unmaps the page only once the prober holds no pointer into it (a later
 * round's mapping of ours may take the address, and a free of a pointer
 * inside our own memory is a misuse that aborts). */
static char *foreign, *held;
static _Atomic int stop;
static _Atomic long prober_tid;
static _Atomic unsigned long probes;

#ifdef TEST_REPLACE
/* Called through a pointer: the compiler must not see a free of an
 * mmap'd page (it warns), nor drop it. */
static void (*volatile free_fn)(void *) = free;
#endif

static void spin(int sig)
{
  volatile int i;

  (void)sig;
  for (i = 0; i < 20000; i++)
    continue;
}

static void *prober(void *arg)
{
  (void)arg;
  prober_tid = (long)syscall(SYS_gettid);
  while (!stop) {
    char *g = __atomic_load_n(&foreign, __ATOMIC_SEQ_CST);

    if (g == NULL)
      continue;
    __atomic_store_n(&held, g, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&foreign, __ATOMIC_SEQ_CST) != g) {
      __atomic_store_n(&held, NULL, __ATOMIC_SEQ_CST);
      continue;
    }
#ifdef TEST_REPLACE
    free_fn(g);
    TU_CHECK(malloc_usable_size(g) == 0, "malloc_usable_size(foreign %p) != 0",
             (void *)g);
#else
    TU_CHECK(AO_malloc_usable_size(g) == 0,
             "AO_malloc_usable_size(foreign %p) != 0", (void *)g);
#endif
    probes++;
    __atomic_store_n(&held, NULL, __ATOMIC_SEQ_CST);
  }
  return NULL;
}

/* Signals land at random points of the probe, and stretch it there. */
static void *kicker(void *arg)
{
  struct timespec ts = { 0, 20000 };

  (void)arg;
  while (!stop) {
    if (prober_tid != 0)
      syscall(SYS_tgkill, (long)getpid(), prober_tid, SIGUSR1);
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  static const uintptr_t spots[] = { UNIT / 2, UNIT / 8, UNIT - UNIT / 8 };
  unsigned long rounds = tu_iters(20000), i, placed = 0, moves = 0;
  char *kept[KEPT];
  unsigned nkept = 0;
  double deadline;
  pthread_t b, k;
  struct sigaction sa;

  (void)argc;
  tu_init(argv[0]);
#ifdef TEST_REPLACE
  tu_require_aomalloc_malloc();
#endif
  tu_watchdog(120, "foreign pointer race");
  deadline = tu_now() + tu_seconds(4);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = spin;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  AO_malloc_enable_mmap();
  tu_thread(&b, prober, NULL);
  tu_thread(&k, kicker, NULL);

  for (i = 0; i < rounds && tu_now() < deadline; i++) {
    char *p = AO_malloc((size_t)1 << 20), *q, *f = MAP_FAILED;
    uintptr_t u = (uintptr_t)p & ~(UNIT - 1);
    unsigned j;

    TU_CHECK(p != NULL, "AO_malloc(1 MiB)");
    /* Anywhere past the mapping in its unit blocks growth to 20 MiB. */
    for (j = 0; j < sizeof(spots) / sizeof(spots[0]) && f == MAP_FAILED; j++) {
      f = mmap((void *)(u + spots[j]), FOREIGN_SIZE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (f != MAP_FAILED && f != (char *)(u + spots[j])) {
        munmap(f, FOREIGN_SIZE);   /* the flag was taken as a hint */
        f = MAP_FAILED;
      }
    }
    if (f == MAP_FAILED) {
      /* Kept, so that the next round gets another mapping, not this one
       * back from the large cache. */
      if (nkept < KEPT)
        kept[nkept++] = p;
      else
        AO_free(p);
      continue;
    }
    placed++;
    __atomic_store_n(&foreign, f + 4096, __ATOMIC_SEQ_CST);
    /* The foreign page blocks growth in place: the mapping moves away
     * (unit bit cleared, old range unmapped) while the prober runs. */
    q = AO_realloc(p, (size_t)20 << 20);
    TU_CHECK(q != NULL, "AO_realloc(20 MiB)");
    moves += q != p;
    /* Every other round the moved mapping is unmapped too, not cached. */
    AO_free(q);
    if (i & 1)
      AO_malloc_trim();
    __atomic_store_n(&foreign, NULL, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&held, __ATOMIC_SEQ_CST) != NULL)
      sched_yield();
    munmap(f, FOREIGN_SIZE);
  }
  while (nkept > 0)
    AO_free(kept[--nkept]);
  stop = 1;
  pthread_join(b, NULL);
  pthread_join(k, NULL);
  if (placed == 0)
    tu_skip("no foreign page could be placed next to a large mapping "
            "(MAP_FIXED_NOREPLACE unsupported?)");
  tu_info("%lu rounds, %lu with a foreign page, %lu moves, %lu probes: no fault, "
          "usable size 0%s", i, placed, moves, probes,
#ifdef TEST_REPLACE
          ", free ignored"
#else
          ""
#endif
          );
  return 0;
}
