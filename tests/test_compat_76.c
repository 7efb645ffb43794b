/* SPDX-License-Identifier: MIT */
/* A client written against the libatomic_ops 7.6 API: AO_t links, stack macros, AO_REAL_* walks. */
/*
 * This is the shape of a typical 7.6-era program: a free list of AO_malloc'd
 * records whose first member is an AO_t link, a statically initialised
 * AO_stack_t, the AO_stack_push/AO_stack_pop macros, traversal with
 * AO_REAL_HEAD_PTR/AO_REAL_NEXT_PTR, an #ifdef on AO_USE_ALMOST_LOCK_FREE,
 * AO_fetch_and_add1 from atomic_ops.h and AO_malloc_enable_mmap.  It must
 * compile cleanly and behave.  (It uses nothing from 7.8; the only 7.8 call,
 * AO_stack_is_lock_free, is the test's own cross-check.)
 */
#include "test_util.h"

#include "atomic_ops.h"
#include "atomic_ops_malloc.h"
#include "atomic_ops_stack.h" /* 7.6 programs often included both */

#define THREADS 4
#define ROUNDS 20000

typedef struct record {
  AO_t next; /* link field for AO_stack */
  AO_t serial;
  char text[40];
} record_t;

static AO_stack_t free_records = AO_STACK_INITIALIZER;
static volatile AO_t records_made = 0;
static volatile AO_t records_used = 0;

static record_t *get_record(void)
{
  AO_t *link = AO_stack_pop(&free_records);
  record_t *r;
  if (link != NULL)
    return (record_t *)link; /* the link is the first member */
  r = (record_t *)AO_malloc(sizeof(*r));
  if (r == NULL)
    return NULL;
  r->serial = AO_fetch_and_add1(&records_made);
  return r;
}

static void put_record(record_t *r)
{
  AO_stack_push(&free_records, &r->next);
}

static void *user(void *arg)
{
  int i, j;
  (void)arg;
  for (i = 0; i < ROUNDS; i++) {
    record_t *r[3];
    for (j = 0; j < 3; j++) {
      r[j] = get_record();
      if (r[j] == NULL)
        tu_fail("AO_malloc of a record failed");
      snprintf(r[j]->text, sizeof(r[j]->text), "record %lu",
               (unsigned long)r[j]->serial);
      (void)AO_fetch_and_add1(&records_used);
    }
    for (j = 0; j < 3; j++) {
      char expect[40];
      snprintf(expect, sizeof(expect), "record %lu",
               (unsigned long)r[j]->serial);
      if (strcmp(expect, r[j]->text) != 0)
        tu_fail("record text clobbered: \"%s\"", r[j]->text);
      put_record(r[j]);
    }
  }
  return NULL;
}

int main(int argc, char **argv)
{
  pthread_t t[THREADS];
  AO_t *p;
  AO_t listed = 0;
  int i;
  int lock_free_macro;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(30, "the 7.6-style client");

#ifdef AO_USE_ALMOST_LOCK_FREE
  lock_free_macro = 0;
#else
  lock_free_macro = 1;
#endif
  TU_CHECK(lock_free_macro == AO_stack_is_lock_free(),
           "AO_USE_ALMOST_LOCK_FREE is %sdefined but the library says "
           "AO_stack_is_lock_free() = %d", lock_free_macro ? "not " : "",
           AO_stack_is_lock_free());

  AO_malloc_enable_mmap();
  for (i = 0; i < THREADS; i++)
    tu_thread(&t[i], user, NULL);
  for (i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);

  /* 7.6-style walk of the quiescent free list */
  for (p = AO_REAL_HEAD_PTR(free_records); p != NULL; p = AO_REAL_NEXT_PTR(*p)) {
    record_t *r = (record_t *)p;
    TU_CHECK(r->serial < records_made, "bad record on the free list");
    listed++;
  }
  TU_CHECK(listed == records_made, "free list holds %lu records, %lu were "
           "made", (unsigned long)listed, (unsigned long)records_made);
  TU_CHECK(records_used == (AO_t)THREADS * ROUNDS * 3,
           "AO_fetch_and_add1 counted %lu uses", (unsigned long)records_used);

  while ((p = AO_stack_pop(&free_records)) != NULL)
    AO_free(p);
  tu_info("ok: %lu records, lock-free stack: %d", (unsigned long)listed,
          lock_free_macro);
  return 0;
}
