/* SPDX-License-Identifier: MIT */
/* fork() while other threads are inside the allocator: the child's allocator must still work. */
/*
 * Hammer threads run AO_malloc/AO_free loops (small and, with mmap enabled,
 * large blocks) while the main thread forks repeatedly at random instants.
 * A fork can snapshot another thread in the middle of an allocator
 * operation; that thread does not exist in the child.  Each child must
 * still allocate, verify and free thousands of blocks, free blocks the main
 * thread allocated before the fork (checking their contents first) and
 * _exit(0) - all within a deadline enforced by alarm() in the child and by
 * the parent, which kills and fails a hung child.  The first half of the
 * forks happen on the static heap alone, the rest with mmap enabled.
 */
#include "test_util.h"

#include <stdatomic.h>
#include <sys/wait.h>

#include "atomic_ops_malloc.h"

#define HELD 64
#define CHILD_OPS 4000
#define CHILD_TIMEOUT 5.0

static atomic_int stop;
static _Atomic size_t hammer_max = 2048;  /* read by the hammer threads */
static unsigned char *held[HELD];
static size_t held_size[HELD];
static uint64_t held_tag[HELD];

static void *hammer(void *arg)
{
  uint64_t rng = tu_seed() + 1234567 * (uintptr_t)arg;
  unsigned char *live[16] = { NULL };
  size_t sz[16] = { 0 };
  uint64_t tag[16] = { 0 };
  int k;

  while (!atomic_load(&stop)) {
    unsigned r = (unsigned)tu_below(&rng, 16);
    if (live[r] != NULL) {
      if (tu_check_sparse(live[r], sz[r], tag[r]) != (size_t)-1)
        tu_fail("hammer thread: block overwritten");
      AO_free(live[r]);
      live[r] = NULL;
    } else {
      size_t s = tu_below(&rng, 64) == 0 ? tu_logsize(&rng, hammer_max)
                                         : tu_logsize(&rng, 512);
      live[r] = AO_malloc(s);
      if (live[r] == NULL)
        tu_fail("hammer thread: AO_malloc(%zu) returned NULL", s);
      sz[r] = s;
      tag[r] = tu_rand(&rng);
      tu_fill_sparse(live[r], s, tag[r]);
    }
  }
  for (k = 0; k < 16; k++)
    AO_free(live[k]);
  return NULL;
}

static void child(uint64_t seed, size_t maxsz)
{
  uint64_t rng = seed;
  unsigned char *live[32] = { NULL };
  size_t sz[32] = { 0 };
  uint64_t tag[32] = { 0 };
  int i;

  alarm((unsigned)CHILD_TIMEOUT); /* default action kills a hung child */
  /* blocks from before the fork are intact and freeable here */
  for (i = 0; i < HELD; i++) {
    if (tu_check(held[i], held_size[i], held_tag[i]) != (size_t)-1)
      tu_sfail("child: a block allocated before fork() lost its contents");
    AO_free(held[i]);
  }
  for (i = 0; i < CHILD_OPS; i++) {
    unsigned r = (unsigned)tu_below(&rng, 32);
    if (live[r] != NULL) {
      if (tu_check_sparse(live[r], sz[r], tag[r]) != (size_t)-1)
        tu_sfail("child: block overwritten");
      AO_free(live[r]);
      live[r] = NULL;
    } else {
      sz[r] = tu_below(&rng, 32) == 0 ? tu_logsize(&rng, maxsz)
                                      : tu_logsize(&rng, 1024);
      live[r] = AO_malloc(sz[r]);
      if (live[r] == NULL)
        tu_sfail("child: AO_malloc returned NULL after fork()");
      tag[r] = tu_rand(&rng);
      tu_fill_sparse(live[r], sz[r], tag[r]);
    }
  }
  for (i = 0; i < 32; i++)
    AO_free(live[i]);
  _exit(0);
}

static void refill_held(uint64_t *rng)
{
  int i;
  for (i = 0; i < HELD; i++) {
    held_size[i] = tu_logsize(rng, 1024);
    held[i] = AO_malloc(held_size[i]);
    TU_CHECK(held[i] != NULL, "AO_malloc(%zu) returned NULL", held_size[i]);
    held_tag[i] = tu_rand(rng);
    tu_fill(held[i], held_size[i], held_tag[i]);
  }
}

static void free_held(void)
{
  int i;
  for (i = 0; i < HELD; i++) {
    TU_CHECK(tu_check(held[i], held_size[i], held_tag[i]) == (size_t)-1,
             "parent: held block overwritten");
    AO_free(held[i]);
  }
}

static void wait_child(pid_t pid, int n)
{
  double start = tu_now();
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0)
      tu_fail("waitpid: %s", strerror(errno));
    if (tu_now() - start > CHILD_TIMEOUT + 2) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      tu_fail("fork #%d: child hung (killed after %.0f s): the allocator "
              "state copied at fork() was unusable", n, CHILD_TIMEOUT + 2);
    }
    tu_sleep(0.001);
  }
  if (WIFSIGNALED(status))
    tu_fail("fork #%d: child died of signal %d%s", n, WTERMSIG(status),
            WTERMSIG(status) == SIGALRM ? " (its alarm: it hung inside the "
            "allocator after fork)" : "");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    tu_fail("fork #%d: child failed with status %d", n, WEXITSTATUS(status));
}

int main(int argc, char **argv)
{
  int nthreads = tu_threads(3), i, n, forks = (int)tu_iters(60);
  double secs = tu_seconds(1.5), end;
  uint64_t rng;
  pthread_t t[256];

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  tu_watchdog(secs + CHILD_TIMEOUT + 25, "the fork test");
  rng = tu_seed();
  for (i = 0; i < nthreads; i++)
    tu_thread(&t[i], hammer, (void *)(uintptr_t)i);

  end = tu_now() + secs;
  for (n = 0; n < forks && tu_now() < end; n++) {
    pid_t pid;
    if (n == forks / 2) {
      AO_malloc_enable_mmap();
      hammer_max = (size_t)256 << 10;
    }
    refill_held(&rng);
    tu_sleep(1e-6 * (double)tu_below(&rng, 3000));
    pid = fork();
    if (pid < 0)
      tu_fail("fork: %s", strerror(errno));
    if (pid == 0)
      child(tu_rand(&rng), n >= forks / 2 ? (size_t)256 << 10 : 2048);
    wait_child(pid, n);
    free_held();
  }
  atomic_store(&stop, 1);
  for (i = 0; i < nthreads; i++)
    pthread_join(t[i], NULL);
  tu_info("ok: %d forks with %d threads inside the allocator", n, nthreads);
  return 0;
}
