/* SPDX-License-Identifier: MIT */
/* libaomalloc: malloc works before any library constructor ran (.preinit_array), with mmap on and from a signal handler. */
#include "test_util.h"
#include "atomic_ops_malloc.h"

/* Results of the early run, checked in main (no stdio before it). */
static volatile int early_ok, handler_ok;
static void *early_big;

static void early_handler(int sig)
{
  void *p = malloc(200);

  (void)sig;
  if (p != NULL) {
    memset(p, 1, 200);
    handler_ok = AO_malloc_usable_size(p) >= 200;
  }
  free(p);
}

/* The executable's .preinit_array runs before the constructors of every
 * shared library, libaomalloc's included: no initialisation step of the
 * allocator may be needed.  The big block is above the 2 MiB static heap:
 * mmap must be on already. */
static void early(int argc, char **argv, char **envp)
{
  struct sigaction sa;
  void *p[100];
  int i, ok = 1;

  (void)argc;
  (void)argv;
  (void)envp;
  for (i = 0; i < 100; i++)
    ok &= (p[i] = malloc((size_t)i * 100)) != NULL;
  for (i = 0; i < 100; i++)
    free(p[i]);
  early_big = malloc((size_t)8 << 20);
  ok &= early_big != NULL;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = early_handler;
  ok &= sigaction(SIGUSR1, &sa, NULL) == 0 && raise(SIGUSR1) == 0;
  early_ok = ok;
}

__attribute__((__section__(".preinit_array"), __used__))
static void (*const early_entry)(int, char **, char **) = early;

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  TU_CHECK(early_ok, "malloc/free failed in .preinit_array (before constructors)");
  TU_CHECK(handler_ok, "malloc in a signal handler before constructors failed");
  TU_CHECK(AO_malloc_usable_size(early_big) >= ((size_t)8 << 20),
           "the early 8 MiB block is not ours");
  free(early_big);
  tu_info("malloc/free, an 8 MiB block (mmap) and a handler's malloc in .preinit_array, before any constructor: ok");
  return 0;
}
