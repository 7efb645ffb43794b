/* SPDX-License-Identifier: MIT */
/* A 64 KiB static heap (the smallest configure accepts) serves every size up to its capacity. */
/*
 * Built from the library's sources with AO_GPL_TEST_STATIC_HEAP_SIZE=65536
 * (tests/Makefile.am), whatever --with-static-heap-size says; mmap is never
 * enabled.  The heap has 16 pages of 4 KiB; the first call of a thread takes
 * one page for the thread's cache (about 1.2 KiB), so 15 pages, 61440
 * bytes, are the capacity left to one object.
 *  1. For each size of a list (mid-size classes 8192..32768, page runs up
 *     to 61440), a forked child whose very first AO_malloc is that size:
 *     it must get a block and write all of it.
 *  2. A sweep in one child: every class size and its successor, then page
 *     multiples up to the capacity, each allocated, written whole and freed
 *     in turn: freed memory of any size serves any other size.
 *  3. The same sweep from a signal handler's first call (a handler's
 *     blocks take the shared path).
 */
#include "test_util.h"

#include <sys/wait.h>

#include "atomic_ops_malloc.h"

#define HEAP 65536
#define CAPACITY (HEAP - 4096)

/* 0 when AO_malloc(sz) gave a block whose bytes are all writable. */
static int try_size(size_t sz)
{
  unsigned char *p = AO_malloc(sz);

  if (p == NULL)
    return 1;
  memset(p, 0xa5, sz);
  AO_free(p);
  return 0;
}

static size_t sweep_failed;

static int sweep(void)
{
  size_t c, sz, i;

  /* Class sizes (src/size_class.h): 16..128 by 16, then eight per power
   * of two up to 32768; each and the next byte. */
  for (i = 0; i < 72; i++) {
    c = i < 8 ? (i + 1) * 16 : (9 + (i - 8) % 8) << (4 + (i - 8) / 8);
    if (try_size(c) != 0) {
      sweep_failed = c;
      return 1;
    }
    if (c < 32768 && try_size(c + 1) != 0) {
      sweep_failed = c + 1;
      return 1;
    }
  }
  for (sz = 32768 + 4096; sz <= CAPACITY; sz += 4096) {
    if (try_size(sz - 100) != 0) {
      sweep_failed = sz - 100;
      return 1;
    }
    if (try_size(sz) != 0) {
      sweep_failed = sz;
      return 1;
    }
  }
  /* and back down: large runs freed, small classes again */
  for (c = 16; c <= 32768; c *= 2)
    if (try_size(c) != 0) {
      sweep_failed = c;
      return 1;
    }
  return 0;
}

static volatile int handler_result = -1;

static void handler(int sig)
{
  (void)sig;
  handler_result = sweep();
}

/* Run fn in a fresh process; its exit status (0 = ok). */
static int in_child(int (*fn)(size_t), size_t arg)
{
  int status;
  pid_t pid = fork();

  TU_CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0)
    _exit(fn(arg));
  while (waitpid(pid, &status, 0) < 0)
    TU_CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
  if (WIFSIGNALED(status))
    tu_fail("child (size %zu) died with signal %d", arg, WTERMSIG(status));
  return WEXITSTATUS(status);
}

static int child_sweep(size_t in_signal)
{
  if (in_signal) {
    signal(SIGUSR1, handler);
    raise(SIGUSR1);
    if (handler_result != 0) {
      tu_info("sweep in a handler: AO_malloc(%zu) returned NULL",
              sweep_failed);
      return 1;
    }
    return 0;
  }
  if (sweep() != 0) {
    tu_info("sweep: AO_malloc(%zu) returned NULL", sweep_failed);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv)
{
  static const size_t first[] = {
    8192, 12288, 16384, 20480, 24576, 28672, 32768, 40000, 48000, 56000,
    CAPACITY - 1000, CAPACITY
  };
  unsigned i, bad = 0;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "the small static heap checks");
  for (i = 0; i < sizeof(first) / sizeof(first[0]); i++)
    if (in_child(try_size, first[i]) != 0) {
      tu_info("first AO_malloc(%zu) of a process returned NULL on an "
              "empty %d-byte heap", first[i], HEAP);
      bad++;
    }
  if (bad != 0)
    tu_fail("%u of %zu first-call sizes up to %d were refused", bad,
            sizeof(first) / sizeof(first[0]), CAPACITY);
  if (in_child(child_sweep, 0) != 0)
    tu_fail("a size sweep on an otherwise empty small heap met a NULL");
  if (in_child(child_sweep, 1) != 0)
    tu_fail("a size sweep in a signal handler met a NULL");
  tu_info("ok: every size up to %d served on a %d-byte static heap",
          CAPACITY, HEAP);
  return 0;
}
