/* SPDX-License-Identifier: MIT */
/* Handlers that allocate, on every thread, while each thread is itself inside AO_malloc/AO_free. */
/*
 * Several worker threads run tight AO_malloc/fill/verify/AO_free loops.  A
 * signaller thread sends SIGUSR1 to every worker in turn (pthread_kill) and
 * an interval timer raises process-directed SIGALRM (delivered to whichever
 * worker is running).  Both handlers allocate several blocks of varied
 * sizes, fill, verify and free them, using only async-signal-safe calls.
 * Handler runs are counted per thread and must have happened on every
 * worker.  Phase 1 uses the static heap (small sizes), phase 2 enables mmap
 * and adds larger blocks.  A deadlock shows up as a watchdog failure.
 */
#include "test_util.h"

#include <stdatomic.h>
#include <sys/time.h>

#include "atomic_ops_malloc.h"

#define MAXW 64
#define LIVE 8
#define SLOTS 16
#define NODES 64

/* Blocks that change hands carry their size and tag in front. */
struct hdr {
  size_t size;
  uint64_t tag;
};

/* Exchanged by workers and handlers on all threads: a block allocated in
 * one context (thread, handler or not) is verified and freed in another. */
static _Atomic(struct hdr *) slots[SLOTS];

/* A shared stack popped and pushed by handlers too (when lock-free). */
struct node {
  AO_uintptr_t link;
  _Atomic unsigned owner;
};
static struct node nodes[NODES];
static AO_stack_t stack;
static int stack_lock_free;

static int nworkers;
static pthread_t workers[MAXW];
static atomic_ulong handler_runs[MAXW];
static atomic_ulong inside_alloc_hits;
static atomic_int stop_workers, stop_signaller;
static volatile size_t max_size; /* per phase */
static double deadline;
static unsigned long iters;

static _Thread_local int my_index = -1;
static _Thread_local volatile sig_atomic_t in_alloc;
static _Thread_local uint64_t handler_rng;
static _Thread_local volatile sig_atomic_t handler_depth;

static struct hdr *hdr_make(uint64_t *rng)
{
  size_t sz = sizeof(struct hdr) + tu_logsize(rng, tu_below(rng, 8) ? 256
                                                                 : max_size);
  struct hdr *h = AO_malloc(sz);
  if (h == NULL)
    tu_sfail("AO_malloc returned NULL for a hand-off block");
  h->size = sz;
  h->tag = tu_rand(rng);
  tu_fill(h + 1, sz - sizeof(*h), h->tag);
  return h;
}

static void hdr_check_free(struct hdr *h)
{
  if (h == NULL)
    return;
  if (h->size < sizeof(*h) || h->size > sizeof(*h) + max_size
      || tu_check(h + 1, h->size - sizeof(*h), h->tag) != (size_t)-1)
    tu_sfail("a block handed over between threads/handlers was overwritten");
  AO_free(h);
}

static void exchange(uint64_t *rng)
{
  struct hdr *h = hdr_make(rng);
  hdr_check_free(atomic_exchange(&slots[tu_below(rng, SLOTS)], h));
}

static void stack_round(unsigned me)
{
  AO_uintptr_t *p;
  struct node *n;
  unsigned expected = 0;
  if (!stack_lock_free)
    return;
  p = AO_stack_pop_acquire(&stack);
  if (p == NULL)
    return;
  n = (struct node *)(void *)p;
  if (n < nodes || n >= nodes + NODES)
    tu_sfail("AO_stack_pop_acquire returned a foreign pointer");
  if (!atomic_compare_exchange_strong(&n->owner, &expected, me))
    tu_sfail("a stack node was popped twice (interrupted push/pop)");
  expected = me;
  if (!atomic_compare_exchange_strong(&n->owner, &expected, 0))
    tu_sfail("a stack node changed owner while held");
  AO_stack_push_release(&stack, p);
}

static void handler(int sig)
{
  int saved = errno;
  unsigned char *p[4];
  size_t sz[4];
  uint64_t tag[4];
  int i;

  (void)sig;
  if (my_index < 0) {
    errno = saved;
    return; /* not a worker (cannot happen: others block the signals) */
  }
  if (in_alloc)
    atomic_fetch_add(&inside_alloc_hits, 1);
  for (i = 0; i < 4; i++) {
    sz[i] = tu_below(&handler_rng, 16) == 0 ? tu_logsize(&handler_rng, max_size)
                                            : tu_logsize(&handler_rng, 512);
    p[i] = AO_malloc(sz[i]);
    if (p[i] == NULL)
      tu_sfail("AO_malloc returned NULL inside a signal handler");
    if ((uintptr_t)p[i] % TU_ALIGN != 0)
      tu_sfail("AO_malloc in a handler returned a misaligned block");
    tag[i] = tu_rand(&handler_rng);
    tu_fill(p[i], sz[i], tag[i]);
  }
  for (i = 0; i < 4; i++)
    if (tu_check(p[i], sz[i], tag[i]) != (size_t)-1)
      tu_sfail("a block allocated in a signal handler was overwritten "
               "(the interrupted AO_malloc/AO_free handed it out twice?)");
  AO_free(p[2]);
  AO_free(p[0]);
  AO_free(p[3]);
  AO_free(p[1]);
  exchange(&handler_rng);
  stack_round(1000u + (unsigned)my_index * 16u + (unsigned)++handler_depth);
  handler_depth--;
  atomic_fetch_add(&handler_runs[my_index], 1);
  errno = saved;
}

static void *worker(void *arg)
{
  uint64_t rng = tu_seed() + 0x1000 * (uintptr_t)arg;
  unsigned char *live[LIVE] = { NULL };
  size_t live_sz[LIVE] = { 0 };
  uint64_t live_tag[LIVE] = { 0 };
  unsigned long it;
  int k;

  sigset_t set;

  handler_rng = rng ^ 0x5555;
  my_index = (int)(uintptr_t)arg;
  /* threads start with the main thread's mask (test signals blocked) */
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGALRM);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  for (it = 0; it < iters && !atomic_load(&stop_workers); it++) {
    unsigned r = (unsigned)tu_below(&rng, LIVE);
    if ((it & 7) == 0) {
      in_alloc = 1; /* counts as inside: hand-off allocs and frees */
      exchange(&rng);
      in_alloc = 0;
      stack_round(1u + (unsigned)my_index);
    }
    if (live[r] != NULL) {
      if (tu_check(live[r], live_sz[r], live_tag[r]) != (size_t)-1)
        tu_fail("worker %d: block %p (size %zu) overwritten while live",
                my_index, (void *)live[r], live_sz[r]);
      in_alloc = 1;
      AO_free(live[r]);
      in_alloc = 0;
      live[r] = NULL;
    } else {
      size_t s = tu_below(&rng, 32) == 0 ? tu_logsize(&rng, max_size)
                                         : tu_logsize(&rng, 256);
      in_alloc = 1;
      live[r] = AO_malloc(s);
      in_alloc = 0;
      if (live[r] == NULL)
        tu_fail("worker %d: AO_malloc(%zu) returned NULL", my_index, s);
      live_sz[r] = s;
      live_tag[r] = tu_rand(&rng);
      tu_fill(live[r], s, live_tag[r]);
    }
  }
  for (k = 0; k < LIVE; k++)
    if (live[k] != NULL) {
      if (tu_check(live[k], live_sz[k], live_tag[k]) != (size_t)-1)
        tu_fail("worker %d: block overwritten at the end", my_index);
      AO_free(live[k]);
    }
  return NULL;
}

static void *signaller(void *arg)
{
  uint64_t rng = tu_seed() ^ 77;
  (void)arg;
  while (!atomic_load(&stop_signaller)) {
    int i;
    for (i = 0; i < nworkers; i++) {
      int rc = pthread_kill(workers[i], SIGUSR1);
      if (rc != 0)
        tu_fail("pthread_kill: %s", strerror(rc));
    }
    tu_sleep(1e-6 * (double)(5 + tu_below(&rng, 100)));
    if (tu_now() > deadline)
      break;
  }
  return NULL;
}

static void run_phase(const char *name, size_t maxsz, double secs)
{
  struct itimerval itv;
  pthread_t sig_thread;
  unsigned long total = 0, min_runs = (unsigned long)-1;
  int i;

  max_size = maxsz;
  atomic_store(&stop_workers, 0);
  atomic_store(&stop_signaller, 0);
  for (i = 0; i < nworkers; i++)
    atomic_store(&handler_runs[i], 0);
  deadline = tu_now() + secs;

  /* workers are the only threads with the test signals unblocked */
  for (i = 0; i < nworkers; i++)
    tu_thread(&workers[i], worker, (void *)(uintptr_t)i);
  tu_thread_nosig(&sig_thread, signaller, NULL);

  memset(&itv, 0, sizeof(itv));
  itv.it_interval.tv_usec = 300;
  itv.it_value.tv_usec = 300;
  setitimer(ITIMER_REAL, &itv, NULL);

  while (tu_now() < deadline)
    tu_sleep(0.01);
  atomic_store(&stop_signaller, 1);
  pthread_join(sig_thread, NULL);
  memset(&itv, 0, sizeof(itv));
  setitimer(ITIMER_REAL, &itv, NULL);
  atomic_store(&stop_workers, 1);
  for (i = 0; i < nworkers; i++)
    pthread_join(workers[i], NULL);

  for (i = 0; i < nworkers; i++) {
    unsigned long r = atomic_load(&handler_runs[i]);
    total += r;
    if (r < min_runs)
      min_runs = r;
  }
  tu_info("%s: %lu handler runs (fewest on one thread: %lu)", name, total,
          min_runs);
  TU_CHECK(min_runs > 0, "%s: some worker thread never ran the handler",
           name);
}

int main(int argc, char **argv)
{
  struct sigaction sa;
  sigset_t set;
  double secs = tu_seconds(1.0);
  int i;

  (void)argc;
  tu_init(argv[0]);
  tu_require_default_heap();
  nworkers = tu_threads(4);
  if (nworkers > MAXW)
    nworkers = MAXW;
  iters = tu_iters(100000000);

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);

  /* The main thread (and the watchdog) keep the signals blocked; workers
   * unblock them once their thread-local state is set. */
  tu_watchdog(2 * secs + 20, "the signal storm");
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  stack_lock_free = AO_stack_is_lock_free();
  for (i = 0; i < NODES; i++)
    AO_stack_push_release(&stack, &nodes[i].link);

  run_phase("static heap", 2048, secs);
  AO_malloc_enable_mmap();
  run_phase("mmap enabled", (size_t)512 << 10, secs);

  for (i = 0; i < SLOTS; i++)
    hdr_check_free(atomic_load(&slots[i]));
  {
    AO_uintptr_t *p;
    int count = 0;
    while ((p = AO_stack_pop_acquire(&stack)) != NULL) {
      struct node *n = (struct node *)(void *)p;
      TU_CHECK(atomic_load(&n->owner) == 0, "stack node still owned, or listed twice");
      atomic_store(&n->owner, 99); /* a second appearance fails below */
      count++;
    }
    TU_CHECK(count == NODES, "%d of %d stack nodes left", count, NODES);
  }
  tu_info("ok: %lu handlers interrupted an AO_malloc/AO_free call",
          (unsigned long)atomic_load(&inside_alloc_hits));
  return 0;
}
