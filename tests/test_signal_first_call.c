/* SPDX-License-Identifier: MIT */
/* A signal whose handler allocates arrives during the very first AO_malloc of a fresh process. */
/*
 * The parent never touches the allocator; it forks ~200 children, each of
 * which starts with the library in its pristine state and arranges for
 * signals to land while its first AO_malloc call runs (lazy initialisation
 * is the classic place for a hidden lock or a half-built structure):
 *   variant 0: a one-shot timer fires a few microseconds after arming;
 *   variant 1: a sibling thread sends SIGUSR1 continuously while the main
 *              thread makes its first call; the handler allocates only once
 *              that call has started;
 *   variant 2: like 0, but the handler is SA_NODEFER and re-raises itself
 *              (depth 4) so the first call may itself be nested;
 *   variant 3: AO_malloc_enable_mmap() first, and the first request is 1 MiB.
 * Every handler allocates, fills, verifies and frees blocks.  A child must
 * exit 0 within 5 s; a hung child is killed and fails the test.  Children
 * report whether a signal really interrupted the first call; the test fails
 * only if that never happened at all (then it exercised nothing).
 */
#include "test_util.h"

#include <sys/time.h>
#include <sys/wait.h>

#include "atomic_ops_malloc.h"

#define CHILDREN 200
#define PARALLEL 4
#define CHILD_TIMEOUT 5.0
#define EXIT_HIT 0
#define EXIT_MISS 3

static volatile sig_atomic_t first_started, first_done, hit, handled, depth;
static volatile sig_atomic_t arrivals;
static volatile sig_atomic_t variant;
static volatile sig_atomic_t spam_stop;
static uint64_t hrng;

static void handler_work(void)
{
  unsigned char *p[3];
  size_t sz[3];
  uint64_t tag[3];
  int i;
  for (i = 0; i < 3; i++) {
    sz[i] = variant == 3 && i == 0 ? ((size_t)200 << 10) + tu_below(&hrng, 4096)
                                   : tu_logsize(&hrng, 4096);
    p[i] = AO_malloc(sz[i]);
    if (p[i] == NULL)
      tu_sfail("AO_malloc in a handler during the first call returned NULL");
    tag[i] = tu_rand(&hrng);
    tu_fill(p[i], sz[i], tag[i]);
  }
  for (i = 0; i < 3; i++) {
    if (tu_check(p[i], sz[i], tag[i]) != (size_t)-1)
      tu_sfail("handler block overwritten during the first AO_malloc");
    AO_free(p[i]);
  }
}

static void handler(int sig)
{
  int saved = errno;
  (void)sig;
  arrivals++;
  if (first_started && !first_done)
    hit = 1;
  if (variant == 1 && !first_started) {
    errno = saved;
    return; /* let the main thread's call be the first one */
  }
  depth++;
  handler_work();
  if (variant == 2 && depth < 4)
    raise(SIGALRM);
  handled++;
  depth--;
  errno = saved;
}

static void *spam(void *arg)
{
  pthread_t target = *(pthread_t *)arg;
  uint64_t rng = hrng ^ 99;
  while (!spam_stop) {
    volatile unsigned i, n = (unsigned)tu_below(&rng, 3000);
    if (pthread_kill(target, SIGUSR1) != 0)
      tu_sfail("pthread_kill failed in child");
    for (i = 0; i < n; i++)
      ;
  }
  return NULL;
}

static void child(int index)
{
  struct sigaction sa;
  struct itimerval itv;
  pthread_t self = pthread_self(), t;
  unsigned char *p;
  size_t first_size;
  uint64_t tag;
  volatile unsigned spin, i;
  int v = index % 4;

  variant = (sig_atomic_t)v;
  hrng = tu_seed() ^ (uint64_t)index * 0x9E3779B97F4A7C15ULL;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | (v == 2 ? SA_NODEFER : 0);
  sigaction(SIGALRM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  first_size = v == 3 ? (size_t)1 << 20 : 1 + (size_t)tu_below(&hrng, 2048);
  if (v == 3)
    AO_malloc_enable_mmap();

  if (v == 1) {
    if (pthread_create(&t, NULL, spam, &self) != 0)
      tu_sfail("pthread_create failed in child");
    while (arrivals == 0) /* signals are flowing before the first call */
      ;
  } else {
    memset(&itv, 0, sizeof(itv));
    itv.it_value.tv_usec = 1 + (long)tu_below(&hrng, 40);
    setitimer(ITIMER_REAL, &itv, NULL);
    spin = (unsigned)tu_below(&hrng, 3000);
    for (i = 0; i < spin; i++)
      ;
  }

  first_started = 1;
  p = AO_malloc(first_size); /* the process's first allocator call */
  first_done = 1;
  if (p == NULL)
    tu_sfail("the first AO_malloc returned NULL");
  tag = tu_rand(&hrng);
  tu_fill(p, first_size, tag);

  if (v == 1) {
    /* let a few more handlers run on the now-initialised heap */
    while (handled < 3)
      ;
    spam_stop = 1;
    pthread_join(t, NULL);
  } else {
    /* the timer may have fired before the call; wait for it regardless */
    while (handled == 0)
      ;
  }
  if (tu_check(p, first_size, tag) != (size_t)-1)
    tu_sfail("the block from the first AO_malloc was overwritten by a handler");
  AO_free(p);
  handler_work();
  _exit(hit ? EXIT_HIT : EXIT_MISS);
}

struct slot {
  pid_t pid;
  int index;
  double start;
};

static struct slot run[PARALLEL];

/* Never leave children behind: a failing parent kills the others first. */
static void kill_children(void)
{
  int i, status;
  for (i = 0; i < PARALLEL; i++)
    if (run[i].pid > 0) {
      kill(run[i].pid, SIGKILL);
      waitpid(run[i].pid, &status, 0);
      run[i].pid = 0;
    }
}

#define CHILD_FAIL(...) do { kill_children(); tu_fail(__VA_ARGS__); } while (0)

int main(int argc, char **argv)
{
  int next = 0, active = 0, done = 0, hits = 0, misses = 0, i;
  int vhits[4] = { 0, 0, 0, 0 };
  int children = (int)tu_iters(CHILDREN);

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  /* No watchdog thread: the parent stays single-threaded so that its
   * children are ordinary processes; it enforces deadlines itself. */
  for (i = 0; i < PARALLEL; i++)
    run[i].pid = 0;
  while (done < children) {
    for (i = 0; i < PARALLEL && next < children; i++) {
      if (run[i].pid == 0) {
        pid_t pid = fork();
        if (pid < 0)
          CHILD_FAIL("fork: %s", strerror(errno));
        if (pid == 0)
          child(next);
        run[i].pid = pid;
        run[i].index = next++;
        run[i].start = tu_now();
        active++;
      }
    }
    for (i = 0; i < PARALLEL; i++) {
      int status;
      pid_t r;
      if (run[i].pid == 0)
        continue;
      r = waitpid(run[i].pid, &status, WNOHANG);
      if (r == 0) {
        if (tu_now() - run[i].start > CHILD_TIMEOUT) {
          CHILD_FAIL("child %d (variant %d) hung for %.0f s: a signal during "
                     "the first AO_malloc deadlocked it", run[i].index,
                     run[i].index % 4, CHILD_TIMEOUT);
        }
        continue;
      }
      if (r < 0)
        CHILD_FAIL("waitpid: %s", strerror(errno));
      run[i].pid = 0;
      if (WIFSIGNALED(status))
        CHILD_FAIL("child %d (variant %d) died of signal %d", run[i].index,
                   run[i].index % 4, WTERMSIG(status));
      if (!WIFEXITED(status) || (WEXITSTATUS(status) != EXIT_HIT
                                 && WEXITSTATUS(status) != EXIT_MISS))
        CHILD_FAIL("child %d (variant %d) failed with exit status %d",
                   run[i].index, run[i].index % 4, WEXITSTATUS(status));
      if (WEXITSTATUS(status) == EXIT_HIT) {
        hits++;
        vhits[run[i].index % 4]++;
      } else {
        misses++;
      }
      active--;
      done++;
    }
    if (active > 0)
      tu_sleep(0.0005);
  }
  tu_info("%d children: in %d a signal interrupted the first AO_malloc "
          "(by variant: %d/%d/%d/%d), in %d it came before or after",
          children, hits, vhits[0], vhits[1], vhits[2], vhits[3], misses);
  TU_CHECK(hits > 0, "no child ever took a signal inside its first AO_malloc:"
           " the test exercised nothing");
  tu_info("ok");
  return 0;
}
