/* SPDX-License-Identifier: MIT */
/* libaomalloc: free of pointers the allocator never handed out is ignored and counted; misuse inside our memory still aborts. */
#include "test_util.h"
#include "atomic_ops_malloc.h"

#include <malloc.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define SEG ((uintptr_t)32 << 20)   /* SEGMENT_SIZE of 64-bit targets */

/* Not declared by glibc 2.26 and later; libaomalloc defines it. */
void cfree(void *p);

/* Called through pointers the compiler cannot see through: these frees
 * are deliberate (it warns about freeing non-heap or offset pointers). */
static void (*volatile free_fn)(void *) = free;
static void (*volatile cfree_fn)(void *) = cfree;
static void *(*volatile realloc_fn)(void *, size_t) = realloc;

static char arena[4096] __attribute__((__aligned__(64)));

/* free of a foreign p: no crash, nothing written; realloc fails with
 * ENOMEM leaving it alone; malloc_usable_size says 0. */
static unsigned check_foreign(char *p, const char *what)
{
  void *r;

  p[0] = 'x';
  free_fn(p);
  cfree_fn(p);
  TU_CHECK(p[0] == 'x', "%s: free(%p) wrote to it", what, (void *)p);
  errno = 0;
  r = realloc_fn(p, 10);
  TU_CHECK(r == NULL && errno == ENOMEM, "%s: realloc(%p) = %p errno %d",
           what, (void *)p, r, errno);
  TU_CHECK(malloc_usable_size(p) == 0, "%s: malloc_usable_size(%p) = %zu",
           what, (void *)p, malloc_usable_size(p));
  return 2;
}

/* Misuse inside our own memory still aborts with the report. */
static void expect_abort(void (*fn)(void), const char *what)
{
  int st;
  pid_t pid = fork();

  TU_CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);           /* the report is expected */
    signal(SIGABRT, SIG_DFL);
    fn();
    _exit(0);
  }
  TU_CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  TU_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
           "%s: not aborted (status %#x)", what, st);
}

static void misaligned_inside(void)
{
  char *p = malloc(100);
  free_fn(p + 8);
}

static void inside_large(void)
{
  char *p = malloc((size_t)1 << 20);
  free_fn(p + 4096);
}

int main(int argc, char **argv)
{
  char stack_buf[256] __attribute__((__aligned__(16)));
  struct AO_malloc_stats st;
  unsigned expected = 0;
  char *m, *big, *tail;
  uintptr_t unit;

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(60, "foreign frees");

  expected += check_foreign(arena, "static array");
  expected += check_foreign(arena + 16, "static array + 16");
  expected += check_foreign(arena + 3, "static array + 3 (misaligned)");
  expected += check_foreign(stack_buf, "stack buffer");
  m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TU_CHECK(m != MAP_FAILED, "mmap");
  expected += check_foreign(m, "mmap'd page");
  expected += check_foreign(m + 4096 + 48, "inside an mmap'd page");

  /* Someone else's memory in the same 32 MiB unit as one of our large
   * mappings (past its end): found as foreign, not as a large block. */
  big = malloc((size_t)1 << 20);
  TU_CHECK(big != NULL, "malloc(1 MiB)");
  unit = (uintptr_t)big & ~(SEG - 1);
  tail = mmap((void *)(unit + SEG / 2), 4096, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (tail != MAP_FAILED && (uintptr_t)tail == unit + SEG / 2) {
    expected += check_foreign(tail, "past a large mapping, same unit");
    expected += check_foreign(tail + 17, "past a large mapping, misaligned");
    munmap(tail, 4096);
  } else {
    tu_info("no room past the large mapping at %p: that case not run", (void *)big);
  }
  free(big);
  munmap(m, 8192);

  AO_malloc_stats(&st);
  TU_CHECK(st.foreign_frees >= expected, "foreign_frees = %lu, expected >= %u",
           st.foreign_frees, expected);

  expect_abort(misaligned_inside, "free(malloc(100) + 8)");
  expect_abort(inside_large, "free(malloc(1 MiB) + 4096)");

  tu_info("%u foreign frees ignored and counted (%lu), realloc ENOMEM, usable size 0; misuse inside our memory aborts: ok",
          expected, st.foreign_frees);
  return 0;
}
