/* SPDX-License-Identifier: MIT */
/* libaomalloc: fork from a threaded program (the child allocates and frees), vfork, posix_spawn. */
#include "test_util.h"

#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static volatile int stop;

/* Keep the heap busy while the main thread forks: a fork may land in the
 * middle of a cache or central-list operation of these threads. */
static void *churn(void *arg)
{
  uint64_t s = tu_seed() + (uintptr_t)arg;
  void *keep[64] = { 0 };

  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    unsigned i = (unsigned)tu_below(&s, 64);
    free(keep[i]);
    keep[i] = malloc(tu_logsize(&s, 300000));
  }
  for (unsigned i = 0; i < 64; i++)
    free(keep[i]);
  return NULL;
}

static int child_work(void)
{
  uint64_t s = 77;
  void *keep[256] = { 0 };
  unsigned r;

  for (r = 0; r < 20000; r++) {
    unsigned i = (unsigned)tu_below(&s, 256);
    size_t n = tu_logsize(&s, 200000);
    free(keep[i]);
    keep[i] = malloc(n);
    if (keep[i] == NULL)
      return 2;
    tu_fill(keep[i], n < 64 ? n : 64, r);
  }
  for (r = 0; r < 256; r++)
    free(keep[r]);
  return 0;
}

/* vfork: the child only calls async-signal-safe functions and exits (a
 * function of its own: nothing of main's frame can be clobbered). */
static void run_vfork(void)
{
  int st = 0;
  pid_t pid = vfork();

  if (pid == 0)
    _exit(5);
  TU_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)
           && WEXITSTATUS(st) == 5, "vfork child: status %#x", st);
}

int main(int argc, char **argv)
{
  pthread_t t[3];
  unsigned k, forks = 0;
  int st;
  pid_t pid;
  double end;
  char *const args[] = { "/bin/sh", "-c", "exit 7", NULL };

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(120, "fork");
  for (k = 0; k < 3; k++)
    tu_thread(&t[k], churn, (void *)(uintptr_t)k);
  end = tu_now() + tu_seconds(3);
  while (forks < tu_iters(30) && tu_now() < end) {
    pid = fork();
    TU_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
      _exit(child_work());
    TU_CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    TU_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "fork child %u failed (status %#x)", forks, st);
    forks++;
  }

  run_vfork();

  /* posix_spawn (clone(CLONE_VM|CLONE_VFORK) in glibc) while threads run. */
  TU_CHECK(posix_spawn(&pid, "/bin/sh", NULL, NULL, args, environ) == 0,
           "posix_spawn");
  TU_CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7,
           "posix_spawn child: status %#x", st);

  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  for (k = 0; k < 3; k++)
    pthread_join(t[k], NULL);
  tu_info("%u fork children of a 4-thread process allocated and freed 20000 blocks each; vfork, posix_spawn: ok",
          forks);
  return 0;
}
