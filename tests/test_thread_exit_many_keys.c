/* SPDX-License-Identifier: MIT */
/* 5000 short-lived threads, library key >= 32 (no exit hook): nothing leaks. */
/*
 * The library flushes an exiting thread's cache through a pthread key
 * destructor, but it calls pthread_setspecific only when its key is below
 * 32 (glibc allocates the storage of higher keys with calloc, which is not
 * async-signal-safe).  Here 40 keys are created before the library is
 * loaded with dlopen, so that its constructor gets a key >= 32 and no
 * thread ever has an exit hook.  Then 5000 threads, a few at a time, each
 * allocate and free one 100-byte block on the static heap (mmap never
 * enabled) and exit.  A cache left behind by every thread (a few KiB each)
 * would exhaust the 2 MiB heap after a couple of hundred threads: every
 * allocation must succeed.  At the end, after AO_malloc_trim(), blocks of
 * 64 KiB must again take at least half of the static heap: what the dead
 * threads' caches held came back.
 */
#include "test_util.h"
#include "test_dlopen.h"

#define KEYS 40
#define THREADS 5000
#define BATCH 4
#define BIG ((size_t)64 << 10)
#define MAX_BIG (TU_STATIC_HEAP / BIG + 1)

static struct tu_ao_lib lib;
static volatile int failed_at = -1;

static void *worker(void *arg)
{
  int i = (int)(intptr_t)arg;
  unsigned char *p = lib.malloc_fn(100);

  if (p == NULL) {
    failed_at = i;
    return NULL;
  }
  memset(p, (int)(i & 0xff), 100);
  lib.free_fn(p);
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_key_t keys[KEYS];
  pthread_t t[BATCH];
  static void *big[MAX_BIG];
  size_t nbig = 0, i;
  unsigned threads = (unsigned)tu_iters(THREADS);
  unsigned done = 0, k;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(120, "5000 short-lived threads");
  for (k = 0; k < KEYS; k++)
    TU_CHECK(pthread_key_create(&keys[k], NULL) == 0, "pthread_key_create");
  tu_ao_lib_open(&lib);
  while (done < threads && failed_at < 0) {
    unsigned n = threads - done < BATCH ? threads - done : BATCH;

    for (k = 0; k < n; k++)
      tu_thread(&t[k], worker, (void *)(intptr_t)(done + k));
    for (k = 0; k < n; k++)
      pthread_join(t[k], NULL);
    done += n;
  }
  TU_CHECK(failed_at < 0, "AO_malloc(100) returned NULL in thread %d of %u: "
           "exited threads' caches were not given back", failed_at, threads);
  lib.trim_fn();
  while (nbig < MAX_BIG && (big[nbig] = lib.malloc_fn(BIG)) != NULL)
    nbig++;
  TU_CHECK(nbig * BIG >= TU_STATIC_HEAP / 2, "after %u threads and a trim "
           "only %zu blocks of 64 KiB fit in the %zu-byte static heap",
           threads, nbig, TU_STATIC_HEAP);
  for (i = 0; i < nbig; i++)
    lib.free_fn(big[i]);
  tu_info("ok: %u threads, then %zu blocks of 64 KiB", threads, nbig);
  return 0;
}
