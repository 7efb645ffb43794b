/* SPDX-License-Identifier: MIT */
/* AO_free of pointers it never returned, and (with --enable-checks) double frees, abort with a clear message. */
/*
 * Each case runs in a child process whose stderr goes to a pipe; the child
 * must die of SIGABRT after writing "atomic_ops_gpl: AO_free(0x...): "
 * and the expected words.  Every build catches, at no cost on the fast
 * path: a pointer outside the allocator's memory (a stack variable, a
 * glibc malloc block, a spot past the first 32 MiB of a huge object), a
 * misaligned pointer, and a pointer inside a page run or a directly mapped
 * large object.  An --enable-checks build (AO_TEST_CHECKS) also catches
 * double frees of every kind of block, a pointer inside a small block,
 * and a double free made by a signal handler.  Last, a child that uses
 * the allocator correctly in every way the checks look at must exit
 * normally (no false report).
 */
#include "test_util.h"
#include "atomic_ops_malloc.h"

#include <sys/wait.h>

#ifndef AO_TEST_CHECKS
# define AO_TEST_CHECKS 0
#endif

static void *sig_block;

static void double_free_handler(int sig)
{
  (void)sig;
  AO_free(sig_block);
}

static void case_stack(void)
{
  _Alignas(16) long local[4] = { 0 };   /* aligned: "outside" is the verdict */
  AO_free(&local[0]);
}

static void case_glibc(void)
{
  void *p = malloc(64);
  AO_free(p);
}

static void case_misaligned(void)
{
  char *p = AO_malloc(64);
  AO_free(p + 8);
}

static void case_run_inside(void)
{
  char *p = AO_malloc(64 << 10);
  AO_free(p + 4096);
}

static void case_mapping_inside(void)
{
  char *p;
  AO_malloc_enable_mmap();
  p = AO_malloc(1 << 20);
  AO_free(p + 16);
}

static void case_huge_far(void)
{
  char *p;
  AO_malloc_enable_mmap();
  p = AO_malloc((size_t)48 << 20);
  AO_free(p + ((size_t)40 << 20));
}

static void case_small_inside(void)
{
  char *p = AO_malloc(64);
  AO_free(p + 16);
}

static void double_free(size_t size, int mmap)
{
  void *p, *q;
  if (mmap)
    AO_malloc_enable_mmap();
  p = AO_malloc(size);
  q = AO_malloc(size);       /* a neighbour, still live */
  AO_free(p);
  AO_free(p);
  AO_free(q);
}

static void case_double_small(void) { double_free(48, 0); }
static void case_double_run(void) { double_free(64 << 10, 0); }
static void case_double_mapping(void) { double_free(1 << 20, 1); }

static void case_double_in_handler(void)
{
  sig_block = AO_malloc(200);
  AO_free(sig_block);
  signal(SIGUSR1, double_free_handler);
  raise(SIGUSR1);
}

/* Every kind of block, freed correctly, also after its memory was reused:
 * nothing may be reported. */
static void case_correct_use(void)
{
  static const size_t sizes[] = { 0, 1, 16, 17, 100, 1024, 4000, 32768,
                                  40000, 200000, 300000, 1 << 20 };
  void *p[64];
  unsigned i, round;

  for (round = 0; round < 2; round++) {
    if (round == 1)
      AO_malloc_enable_mmap();
    for (i = 0; i < 64; i++) {
      p[i] = AO_malloc(sizes[i % 12]);
      if (p[i] == NULL && sizes[i % 12] < 40000) {
        fputs("correct use: AO_malloc returned NULL\n", stderr);
        _exit(3);
      }
      if (p[i] != NULL)
        memset(p[i], 0x5a, sizes[i % 12]);
    }
    for (i = 0; i < 64; i += 2)
      AO_free(p[i]);
    for (i = 0; i < 64; i += 2)         /* reuse what was just freed */
      p[i] = AO_malloc(sizes[i % 12]);
    for (i = 0; i < 64; i++)
      AO_free(p[i]);
  }
  _exit(0);
}

struct misuse_case {
  const char *name;
  void (*run)(void);
  int checks_only;
  const char *expect;       /* words the report must contain; NULL: none */
};

static const struct misuse_case cases[] = {
  { "stack pointer", case_stack, 0, "outside the allocator's memory" },
  { "glibc malloc block", case_glibc, 0, "outside the allocator's memory" },
  { "misaligned pointer", case_misaligned, 0, "misaligned pointer" },
  { "inside a page run", case_run_inside, 0, "not the start of a block" },
  { "inside a large mapping", case_mapping_inside, 0,
    "not the start of a block" },
  { "40 MiB into a huge object", case_huge_far, 0,
    "outside the allocator's memory" },
  { "inside a small block", case_small_inside, 1, "not the start of a block" },
  { "double free, small block", case_double_small, 1, "double free" },
  { "double free, page run", case_double_run, 1, "double free" },
  { "double free, large mapping", case_double_mapping, 1, "double free" },
  { "double free in a signal handler", case_double_in_handler, 1,
    "double free" },
  { "correct use", case_correct_use, 0, NULL },
};

static void run_case(const struct misuse_case *c)
{
  int fds[2], status;
  char out[4096];
  size_t got = 0;
  ssize_t n;
  pid_t pid;

  TU_CHECK(pipe(fds) == 0, "pipe failed");
  pid = fork();
  TU_CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    signal(SIGABRT, SIG_DFL);      /* the crash reporter of tu_init */
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    c->run();
    _exit(c->expect == NULL ? 0 : 2);   /* 2: the misuse went unnoticed */
  }
  close(fds[1]);
  while (got < sizeof(out) - 1
         && (n = read(fds[0], out + got, sizeof(out) - 1 - got)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    TU_CHECK(n > 0, "%s: read failed", c->name);
    got += (size_t)n;
  }
  out[got] = '\0';
  close(fds[0]);
  TU_CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed");
  if (c->expect == NULL) {
    TU_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "%s: the child did not exit normally (status 0x%x); stderr: %s",
             c->name, status, out);
    return;
  }
  TU_CHECK(!WIFEXITED(status) || WEXITSTATUS(status) != 2,
           "%s: not detected (AO_free returned)", c->name);
  TU_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "%s: expected death by SIGABRT, got status 0x%x; stderr: %s",
           c->name, status, out);
  TU_CHECK(strstr(out, "atomic_ops_gpl: AO_free(0x") != NULL
               && strstr(out, c->expect) != NULL,
           "%s: the report lacks \"%s\": %s", c->name, c->expect, out);
}

int main(int argc, char **argv)
{
  unsigned i, ran = 0;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "the misuse test");
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (cases[i].checks_only && !AO_TEST_CHECKS)
      continue;
    run_case(&cases[i]);
    ran++;
  }
  tu_info("%u cases (%s build)", ran,
          AO_TEST_CHECKS ? "--enable-checks" : "release");
  return 0;
}
