/* SPDX-License-Identifier: MIT */
/* ASan and valgrind builds: misuse of an AO_malloc block in a child process is reported by the tool. */
/*
 * Proves that src/track.h describes the blocks to the tool: each case runs
 * in a forked child whose stderr (where the tool reports) goes to a pipe;
 * the parent checks that the report names the expected error.  Cases: read
 * and write after free, a write just past the requested size (inside the
 * block's size class), a read of a never-allocated neighbour block, a read
 * of a freed page run and of a freed direct mapping; under valgrind also a
 * double free and a leak (VALGRIND_DO_LEAK_CHECK in the child).  A control
 * child using its blocks correctly must get no report at all.
 *
 * ASan: built with -fsanitize=address (library and test); a child dies at
 * its first error.  Poisoned memory is reported as "use-after-poison".  A
 * double free is not a poisoning matter and is left out.  In-process, the
 * shadow is also checked directly after AO_malloc/AO_free of every size.
 * valgrind: built with --enable-valgrind and run under memcheck (see
 * .ci/valgrind.sh).  memcheck keeps its own copy of stderr, so its report
 * goes to the test's log; the child sends back memcheck's own counts
 * (VALGRIND_COUNT_ERRORS, and VALGRIND_COUNT_LEAKS after a leak check):
 * at least one error for each misuse, definitely lost bytes for the leak,
 * nothing for the control.
 * Any other build, or a valgrind build not under valgrind: skipped.
 */
#ifdef HAVE_CONFIG_H
# include "config.h"
#endif
#include "test_util.h"

#include <sys/wait.h>

#include "atomic_ops_malloc.h"

#if defined(__SANITIZE_ADDRESS__)
# define TRACK_ASAN 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define TRACK_ASAN 1
# endif
#endif

#if defined(TRACK_ASAN)
# include <sanitizer/asan_interface.h>
#elif defined(AO_GPL_VALGRIND)
# include <valgrind/memcheck.h>
# define TRACK_VALGRIND 1
#endif

#if defined(TRACK_ASAN) || defined(TRACK_VALGRIND)

#define CHILD_TIMEOUT 60.0         /* memcheck on a loaded machine is slow */
#define REPORT_MAX 65536

enum misuse {
  CONTROL, READ_FREED, WRITE_FREED, PAST_END, NEIGHBOUR, RUN_FREED,
  MAPPING_FREED, DOUBLE_FREE, LEAK
};

struct misuse_case {
  enum misuse what;
  const char *name;
  const char *asan;                /* expected in ASan's report, or NULL */
  const char *valgrind;            /* what memcheck must find, or NULL */
};

static const struct misuse_case cases[] = {
  { CONTROL, "correct use", "", "" },
  { READ_FREED, "read after free", "use-after-poison", "Invalid read" },
  { WRITE_FREED, "write after free", "use-after-poison", "Invalid write" },
  { PAST_END, "write one byte past the requested size", "use-after-poison",
    "Invalid write" },
  { NEIGHBOUR, "read of a never-allocated neighbour", "use-after-poison",
    "Invalid read" },
  { RUN_FREED, "read of a freed page run", "use-after-poison",
    "Invalid read" },
  { MAPPING_FREED, "read of a freed direct mapping", "use-after-poison",
    "Invalid read" },
  { DOUBLE_FREE, "double free", NULL, "Invalid free" },
  { LEAK, "leak", NULL, "definitely lost blocks" },
};

static volatile unsigned char sink;

/* Hides the block's size from the compiler, which would warn about the
 * deliberate out-of-bounds accesses. */
static volatile unsigned char *opaque(void *p)
{
  __asm__ volatile("" : "+r"(p));
  return p;
}
static void *volatile kept;

/* Blocks whose last pointer is dropped when this returns (its frame is
 * below the stack pointer then, where memcheck's leak search never looks). */
__attribute__((noinline)) static void leak_some(void)
{
  int i;

  for (i = 0; i < 8; i++) {
    unsigned char *p = AO_malloc(40);
    if (p == NULL)
      tu_sfail("AO_malloc(40) returned NULL in the leak case");
    memset(p, 0xA5, 40);
  }
}

/* The misuse itself: the tool reports it (ASan ends the process). */
__attribute__((noinline)) static void misuse(enum misuse what)
{
  volatile unsigned char *p;

  switch (what) {
  case CONTROL:
    p = opaque(AO_malloc(24));
    p[0] = 1;
    p[23] = 2;
    sink = p[0];
    AO_free((void *)p);
    p = opaque(AO_malloc(200000));
    p[199999] = 3;
    AO_free((void *)p);
    break;
  case READ_FREED:
    p = opaque(AO_malloc(24));
    p[0] = 1;
    AO_free((void *)p);
    sink = p[8];
    break;
  case WRITE_FREED:
    p = opaque(AO_malloc(100));
    AO_free((void *)p);
    p[40] = 7;
    break;
  case PAST_END:
    /* class 32: byte 20 is inside the block, outside the request */
    p = opaque(AO_malloc(20));
    p[20] = 7;
    break;
  case NEIGHBOUR:
    /* The first block of a class no one used yet: a fresh span, whose
     * other blocks were never handed out. */
    p = opaque(AO_malloc(3000));
    kept = (void *)p;
    sink = p[3072];               /* class 3072: the next block's start */
    break;
  case RUN_FREED:
    p = opaque(AO_malloc(100000));
    AO_free((void *)p);
    sink = p[50000];
    break;
  case MAPPING_FREED:
    /* kept mapped in the allocator's cache of big mappings, but freed */
    p = opaque(AO_malloc((size_t)2 << 20));
    AO_free((void *)p);
    sink = p[4096];
    break;
  case DOUBLE_FREE:
    p = opaque(AO_malloc(48));
    AO_free((void *)p);
    AO_free((void *)p);
    break;
  case LEAK:
    kept = AO_malloc(40);         /* block 0 of the span stays referenced */
    leak_some();
    break;
  }
}

/* Run one case in a child; its stderr comes back in report. */
static int run_child(enum misuse what, char *report, size_t cap, int *status)
{
  int fd[2];
  size_t len = 0;
  double deadline = tu_now() + CHILD_TIMEOUT;
  pid_t pid;

  if (pipe(fd) != 0)
    tu_fail("pipe: %s", strerror(errno));
  pid = fork();
  if (pid < 0)
    tu_fail("fork: %s", strerror(errno));
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 2);
    alarm((unsigned)CHILD_TIMEOUT);
    misuse(what);
#ifdef TRACK_VALGRIND
    {
      char line[128];
      unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
      unsigned errors = VALGRIND_COUNT_ERRORS;
      int n;

      if (what == LEAK) {
        VALGRIND_DO_LEAK_CHECK;
        VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
        (void)dubious;
        (void)reachable;
        (void)suppressed;
      }
      n = snprintf(line, sizeof(line), "\nmemcheck: errors=%u leaked=%lu\n",
                   errors, leaked);
      if (write(fd[1], line, (size_t)n) != n)
        _exit(3);
    }
#endif
    _exit(0);
  }
  close(fd[1]);
  fcntl(fd[0], F_SETFL, O_NONBLOCK);
  for (;;) {
    ssize_t n = read(fd[0], report + len, cap - 1 - len);
    if (n > 0) {
      len += (size_t)n;
      if (len == cap - 1)
        len = cap / 2;           /* keep the start; drop the middle */
      continue;
    }
    if (n == 0)
      break;
    if (errno != EAGAIN && errno != EINTR)
      tu_fail("read from the child's pipe: %s", strerror(errno));
    if (tu_now() > deadline) {
      kill(pid, SIGKILL);
      break;
    }
    tu_sleep(0.01);
  }
  report[len] = '\0';
  close(fd[0]);
  if (waitpid(pid, status, 0) != pid)
    tu_fail("waitpid: %s", strerror(errno));
  return tu_now() <= deadline;
}

#ifdef TRACK_ASAN
/* The shadow itself, for sizes across small classes, runs and mappings. */
static void check_shadow(void)
{
  static const size_t sizes[] = { 0, 1, 15, 16, 17, 100, 1000, 4095, 32768,
                                  32769, 100000, (size_t)1 << 20,
                                  ((size_t)3 << 20) + 5 };
  size_t i;

  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    size_t n = sizes[i];
    unsigned char *p = AO_malloc(n);

    TU_CHECK(p != NULL, "AO_malloc(%zu) returned NULL", n);
    TU_CHECK(__asan_region_is_poisoned(p, n) == NULL,
             "AO_malloc(%zu): part of the block is poisoned", n);
    TU_CHECK(__asan_address_is_poisoned(p + n),
             "AO_malloc(%zu): the byte past the request is usable", n);
    tu_fill(p, n, n);
    AO_free(p);
    TU_CHECK(n == 0 || __asan_address_is_poisoned(p),
             "AO_free: a block of %zu bytes is still usable", n);
    TU_CHECK(n == 0 || __asan_address_is_poisoned(p + n - 1),
             "AO_free: the end of a block of %zu bytes is still usable", n);
  }
}
#endif

int main(int argc, char **argv)
{
  static char report[REPORT_MAX];
  size_t i;
  int failed = 0;

  (void)argc;
  tu_init(argv[0]);
#ifdef TRACK_VALGRIND
  if (!RUNNING_ON_VALGRIND)
    tu_skip("built with --enable-valgrind but not running under valgrind");
#endif
  /* after the children's deadline, not before */
  tu_watchdog(CHILD_TIMEOUT * (double)(sizeof(cases) / sizeof(cases[0]) + 1),
              "the misuse children");
  AO_malloc_enable_mmap();
#ifdef TRACK_ASAN
  check_shadow();
#endif

  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const struct misuse_case *c = &cases[i];
#ifdef TRACK_ASAN
    const char *want = c->asan;
    const char *tool = "ASan";
#else
    const char *want = c->valgrind;
    const char *tool = "memcheck";
#endif
    int status;

    if (want == NULL)
      continue;
    if (!run_child(c->what, report, sizeof(report), &status)) {
      tu_info("FAIL: %s: the child did not finish within %.0f s",
              c->name, CHILD_TIMEOUT);
      failed = 1;
      continue;
    }
#ifdef TRACK_VALGRIND
    {
      const char *line = strstr(report, "memcheck: errors=");
      unsigned errors;
      unsigned long leaked;
      int found;

      if (line == NULL
          || sscanf(line, "memcheck: errors=%u leaked=%lu", &errors,
                    &leaked) != 2) {
        tu_info("FAIL: %s: no counts from the child (status 0x%x); its "
                "output:\n%s", c->name, (unsigned)status, report);
        failed = 1;
        continue;
      }
      /* a pointer left in a register may keep a block or two reachable */
      found = c->what == LEAK ? leaked >= 40 : errors > 0;
      if (c->what == CONTROL ? errors != 0 || leaked != 0 : !found) {
        tu_info("FAIL: %s: memcheck counted %u errors and %lu bytes "
                "definitely lost; expected %s", c->name, errors, leaked,
                c->what == CONTROL ? "none" : want);
        failed = 1;
        continue;
      }
      tu_info("%s: memcheck counted %u errors, %lu bytes definitely lost "
              "(its report is above)", c->name, errors, leaked);
      continue;
    }
#endif
    if (c->what == CONTROL) {
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0
          || strstr(report, "AddressSanitizer") != NULL) {
        tu_info("FAIL: %s: the child failed (status 0x%x) or got a report:"
                "\n%s", c->name, (unsigned)status, report);
        failed = 1;
      }
      continue;
    }
    if (strstr(report, want) == NULL) {
      tu_info("FAIL: %s: %s did not report \"%s\" (child status 0x%x); "
              "its output:\n%s", c->name, tool, want, (unsigned)status,
              report);
      failed = 1;
      continue;
    }
#ifdef TRACK_ASAN
    TU_CHECK(!WIFEXITED(status) || WEXITSTATUS(status) != 0,
             "%s: ASan reported it but the child exited with 0", c->name);
#endif
    tu_info("%s: reported by %s (\"%s\")", c->name, tool, want);
  }
  TU_CHECK(!failed, "some misuse went unreported (see above)");
  return 0;
}

#else /* neither ASan nor valgrind support */

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_skip("a normal build: the tools' hooks are compiled out");
}

#endif
