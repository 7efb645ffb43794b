/* SPDX-License-Identifier: MIT */
/* libaomalloc: threads created and exiting in waves, each using malloc and freeing blocks of other threads. */
#include "test_util.h"

#define WAVES 40
#define PER_WAVE 8
#define BLOCKS 200

/* Blocks handed from one wave to the next, freed by another thread. */
static void *handoff[WAVES + 1][PER_WAVE][BLOCKS];

struct job { unsigned wave, idx; };

static void *worker(void *arg)
{
  struct job *j = arg;
  uint64_t s = tu_seed() + j->wave * 131 + j->idx;
  unsigned i;

  for (i = 0; i < BLOCKS; i++) {
    void *old = handoff[j->wave][j->idx][i];
    size_t n = tu_logsize(&s, 70000);
    char *p = malloc(n);

    if (old != NULL) {
      TU_CHECK(tu_check(old, 24, (uint64_t)(uintptr_t)&handoff[j->wave][j->idx][i]) == (size_t)-1,
               "wave %u: a block of the previous wave was overwritten", j->wave);
      free(old);
    }
    TU_CHECK(p != NULL || n == 0, "malloc(%zu) failed", n);
    if (n < 24) {
      free(p);
      p = calloc(1, 24);
    }
    tu_fill(p, 24, (uint64_t)(uintptr_t)&handoff[j->wave + 1][j->idx][i]);
    handoff[j->wave + 1][j->idx][i] = p;
    free(realloc(strdup("temporary"), 100));
  }
  return NULL;
}

int main(int argc, char **argv)
{
  struct job jobs[PER_WAVE];
  pthread_t t[PER_WAVE];
  unsigned w, k, i;

  (void)argc;
  tu_init(argv[0]);
  tu_require_aomalloc_malloc();
  tu_watchdog(120, "thread churn");
  for (w = 0; w < WAVES; w++) {
    for (k = 0; k < PER_WAVE; k++) {
      jobs[k].wave = w;
      jobs[k].idx = (k + w) % PER_WAVE;   /* another thread gets the slot */
      TU_CHECK(pthread_create(&t[k], NULL, worker, &jobs[k]) == 0, "pthread_create");
    }
    for (k = 0; k < PER_WAVE; k++)
      pthread_join(t[k], NULL);
  }
  for (k = 0; k < PER_WAVE; k++)
    for (i = 0; i < BLOCKS; i++)
      free(handoff[WAVES][k][i]);
  tu_info("%d threads in %d waves, %d blocks each freed by a later thread: ok",
          WAVES * PER_WAVE, WAVES, BLOCKS);
  return 0;
}
