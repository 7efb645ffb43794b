/* SPDX-License-Identifier: MIT */
/* fork while other threads' caches hold blocks: the child gets that memory back. */
/*
 * Three threads fill their caches on the static heap (mmap never enabled):
 * for sizes across every size class they allocate a bin's worth of blocks
 * and free them, so that each cache keeps hundreds of KiB, then they wait.
 * The main thread forks.  In the child only the forking thread exists: the
 * other threads' caches are orphans.  After AO_malloc_trim() the child must
 * get blocks of 64 KiB for at least three quarters of the static heap, and
 * allocating and freeing small blocks must still work.  The parent then
 * releases its threads and checks the same once they have exited.
 */
#include "test_util.h"

#include <sys/wait.h>

#include "atomic_ops_malloc.h"

#define THREADS 3
#define BIG ((size_t)64 << 10)
#define MAX_BIG (TU_STATIC_HEAP / BIG + 1)
#define MAX_HELD 512

static pthread_barrier_t filled, release;

/* One thread at a time (serialised by main), so that no thread starves. */
static void *filler(void *arg)
{
  static __thread void *held[MAX_HELD];
  size_t sz;
  unsigned n, i, want;

  (void)arg;
  for (sz = 16; sz <= 32768; sz += sz < 128 ? 16 : sz / 8) {
    want = (unsigned)(16384 / sz) + 2;
    if (want > MAX_HELD)
      want = MAX_HELD;
    for (n = 0; n < want; n++) {
      held[n] = AO_malloc(sz);
      if (held[n] == NULL)
        break;
      memset(held[n], 0x11, sz < 64 ? sz : 64);
    }
    for (i = 0; i < n; i++)
      AO_free(held[i]);
  }
  pthread_barrier_wait(&filled);
  pthread_barrier_wait(&release);
  return NULL;
}

/* Blocks of 64 KiB after a trim, all freed again; 0 on a broken block. */
static size_t big_blocks(void)
{
  static void *big[MAX_BIG];
  size_t n = 0, i;

  AO_malloc_trim();
  while (n < MAX_BIG && (big[n] = AO_malloc(BIG)) != NULL) {
    memset(big[n], 0x22, BIG);
    n++;
  }
  for (i = 0; i < n; i++)
    AO_free(big[i]);
  return n;
}

static void child(void)
{
  size_t n = big_blocks();
  void *p;
  int i;

  if (n * BIG < TU_STATIC_HEAP / 4 * 3) {
    char msg[200];
    size_t len = 0;
    char num[24];
    int k = (int)sizeof(num) - 1;

    num[k] = '\0';
    do
      num[--k] = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    tu_sappend(msg, sizeof(msg), &len, "child: after AO_malloc_trim only ");
    tu_sappend(msg, sizeof(msg), &len, num + k);
    tu_sappend(msg, sizeof(msg), &len, " blocks of 64 KiB fit: the "
               "parent's other threads' caches were not given back");
    tu_sfail(msg);
  }
  for (i = 0; i < 10000; i++) {
    p = AO_malloc((size_t)(i % 300) + 1);
    if (p == NULL)
      tu_sfail("child: AO_malloc of a small block failed");
    AO_free(p);
  }
  _exit(0);
}

int main(int argc, char **argv)
{
  pthread_t t[THREADS];
  size_t n;
  pid_t pid;
  int i, status;

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(60, "fork with filled caches");
  pthread_barrier_init(&filled, NULL, 2);
  pthread_barrier_init(&release, NULL, THREADS + 1);
  for (i = 0; i < THREADS; i++) {
    tu_thread(&t[i], filler, NULL);
    pthread_barrier_wait(&filled);
  }
  pid = fork();
  TU_CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0)
    child();
  TU_CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
  TU_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child failed (status 0x%x)", status);
  pthread_barrier_wait(&release);
  for (i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  n = big_blocks();
  TU_CHECK(n * BIG >= TU_STATIC_HEAP / 4 * 3, "parent: after the threads "
           "exited and a trim only %zu blocks of 64 KiB fit", n);
  tu_info("ok: the child and the parent got %zu blocks of 64 KiB back", n);
  return 0;
}
