/* SPDX-License-Identifier: MIT */
/* dlclose of the library, then a thread that used it exits: no crash. */
/*
 * The library flushes a thread's cache at thread exit through a pthread key
 * destructor.  If dlclose unmapped the library while a thread that used it
 * was still running, glibc would call that destructor in unmapped memory
 * when the thread exits (SIGSEGV).  The library is linked with -z nodelete
 * so that it stays resident: blocks handed out from its static heap (in its
 * .bss) may outlive dlclose anyway.  A few threads allocate and free, wait
 * while main dlcloses, then exit; main joins them.  A block allocated
 * before the dlclose must still be readable and writable after it.
 */
#include "test_util.h"
#include "test_dlopen.h"

#define THREADS 4

static struct tu_ao_lib lib;
static pthread_barrier_t used, closed;

static void *worker(void *arg)
{
  void *p;
  int i;

  (void)arg;
  for (i = 0; i < 100; i++) {
    p = lib.malloc_fn((size_t)16 * (size_t)(i + 1));
    TU_CHECK(p != NULL, "AO_malloc failed before dlclose");
    memset(p, 0x5a, 16);
    lib.free_fn(p);
  }
  pthread_barrier_wait(&used);
  pthread_barrier_wait(&closed);
  return NULL;                   /* the key destructor runs now */
}

int main(int argc, char **argv)
{
  pthread_t t[THREADS];
  unsigned char *kept;
  int i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "dlclose then thread exit");
  tu_ao_lib_open(&lib);
  kept = lib.malloc_fn(1000);
  TU_CHECK(kept != NULL, "AO_malloc(1000) failed");
  memset(kept, 0xa5, 1000);
  pthread_barrier_init(&used, NULL, THREADS + 1);
  pthread_barrier_init(&closed, NULL, THREADS + 1);
  for (i = 0; i < THREADS; i++)
    tu_thread(&t[i], worker, NULL);
  pthread_barrier_wait(&used);
  TU_CHECK(dlclose(lib.handle) == 0, "dlclose: %s", dlerror());
  pthread_barrier_wait(&closed);
  for (i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  /* Still mapped: a block may be handed to code that outlives dlclose. */
  for (i = 0; i < 1000; i++)
    TU_CHECK(kept[i] == 0xa5, "a block allocated before dlclose changed");
  memset(kept, 0, 1000);
  tu_info("ok: %d threads exited after dlclose", THREADS);
  return 0;
}
