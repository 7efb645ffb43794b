/* SPDX-License-Identifier: MIT */
/* libaomalloc: dlopen/dlclose of a module that allocates in its constructor and frees in its destructor, from threads too. */
#include "test_util.h"

#include <dlfcn.h>

#ifndef DLMOD_PATH
# error "DLMOD_PATH: the test module's .so"
#endif

static void cycle(void)
{
  void *h = dlopen(DLMOD_PATH, RTLD_NOW | RTLD_LOCAL);
  char *(*make)(unsigned);
  char *p;

  TU_CHECK(h != NULL, "dlopen(%s): %s", DLMOD_PATH, dlerror());
  *(void **)&make = dlsym(h, "mod_make");
  TU_CHECK(make != NULL, "dlsym(mod_make): %s", dlerror());
  p = make(1000);
  TU_CHECK(p != NULL && p[999] == 0, "mod_make: the constructor's blocks were overwritten");
  TU_CHECK(dlclose(h) == 0, "dlclose: %s", dlerror());
  free(p);                                   /* outlives the module */
}

static void *thread_cycles(void *arg)
{
  unsigned i;

  (void)arg;
  for (i = 0; i < 10; i++)
    cycle();
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t[2];
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(120, "dlopen");
  for (i = 0; i < 20; i++)
    cycle();
  for (i = 0; i < 2; i++)
    tu_thread(&t[i], thread_cycles, NULL);
  for (i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  tu_info("40 dlopen/dlclose cycles (2 threads), constructor/destructor allocations: ok");
  return 0;
}
