/* SPDX-License-Identifier: MIT */
/* Upstream's client-visible stack identifiers (AO_stack_aux, AO_BL_SIZE, AO_N_BITS...) compile and mean what they meant. */
/*
 * A 7.6 client compiled without a double-width CAS saw the almost-lock-free
 * view of atomic_ops_stack.h: AO_stack_aux, AO_BL_SIZE, AO_N_BITS and
 * AO_BIT_MASK, AO_STACK_ATTR_ALLIGNED, the explicit-aux entry points and
 * the members AO_ptr/AO_aux (AO_pa in 7.8).  Here: each identifier the
 * header provides is used the way such a client uses it, and checked at
 * run time against the library's behaviour.  Members exist only in the
 * build whose layout gives them their upstream meaning (see the header and
 * README "Upstream identifiers"); built with the library's double-width
 * CAS flags so that the lock-free build's AO_vp is visible too.
 */
#include "test_util.h"

#include <stdalign.h>

#include "atomic_ops_stack.h"

#define N 16

_Static_assert(AO_BL_SIZE == 2, "the library's black list has two slots");
_Static_assert(sizeof(AO_stack_aux) == AO_BL_SIZE * sizeof(AO_t),
               "AO_stack_aux is the black list: AO_BL_SIZE words");
_Static_assert(AO_BIT_MASK == (1 << AO_N_BITS) - 1, "AO_BIT_MASK");
_Static_assert((AO_t)AO_BIT_MASK == sizeof(AO_t) - 1,
               "the version bits are the bits an AO_t-aligned link leaves free");
#if AO_BL_SIZE > (1 << AO_N_BITS)
# error "upstream's own sanity check on these two must hold"
#endif
_Static_assert(sizeof(AO_stack_t) == 4 * sizeof(AO_t), "AO_stack_t size kept");
_Static_assert(alignof(AO_stack_t) == 4 * sizeof(AO_t),
               "AO_stack_t alignment kept");

/* A 7.6 client's own stack sharing the library's explicit-aux protocol:
 * a head word aligned with AO_STACK_ATTR_ALLIGNED, then its black list. */
struct client_stack {
  AO_STACK_ATTR_ALLIGNED volatile AO_t head;
  AO_stack_aux aux;
};
_Static_assert(alignof(struct client_stack) == 4 * sizeof(AO_t),
               "AO_STACK_ATTR_ALLIGNED keeps head and aux in one line");

static struct client_stack cs;
static AO_stack_t initialised = AO_STACK_INITIALIZER;

struct node {
  AO_t link;
  int id;
};
static struct node nodes[N];

/* 7.6's AO_REAL_HEAD_PTR/AO_REAL_NEXT_PTR in the almost-lock-free view:
 * mask the version bits off a head word or link. */
static AO_t *real_ptr(AO_t w)
{
  return (AO_t *)(w & ~(AO_t)AO_BIT_MASK);
}

static void check_client_stack(void)
{
  AO_t *p;
  int i, n;

  for (i = 0; i < N; i++) {
    nodes[i].id = i;
    AO_stack_push_explicit_aux_release(&cs.head, &nodes[i].link, &cs.aux);
    TU_CHECK(real_ptr(cs.head) == &nodes[i].link,
             "head word after push %d: %p", i, (void *)real_ptr(cs.head));
    /* The AO_N_BITS low bits are the version: one step per head change. */
    TU_CHECK((cs.head & AO_BIT_MASK) == ((AO_t)i + 1) % (AO_BIT_MASK + 1),
             "version bits after push %d: %lu", i,
             (unsigned long)(cs.head & AO_BIT_MASK));
  }
  /* Walk it the 7.6 way. */
  for (n = 0, p = real_ptr(cs.head); p != NULL; p = real_ptr(*p), n++)
    TU_CHECK(p == &nodes[N - 1 - n].link, "walk: element %d", n);
  TU_CHECK(n == N, "walk saw %d of %d elements", n, N);
  for (i = N - 1; i >= 0; i--) {
    p = AO_stack_pop_explicit_aux_acquire(&cs.head, &cs.aux);
    TU_CHECK(p == &nodes[i].link, "pop %d: got %p", i, (void *)p);
  }
  TU_CHECK(AO_stack_pop_explicit_aux_acquire(&cs.head, &cs.aux) == NULL,
           "client stack not empty");
  TU_CHECK(cs.aux.AO_stack_bl[0] == 0 && cs.aux.AO_stack_bl[1] == 0,
           "black list not released: %lx %lx",
           (unsigned long)cs.aux.AO_stack_bl[0],
           (unsigned long)cs.aux.AO_stack_bl[1]);
}

/* The members, where the build gives them their upstream meaning. */
static int check_members(void)
{
  AO_stack_t *s = &initialised;
  int checked = 0;

  AO_stack_push(s, &nodes[0].link);
  AO_stack_push(s, &nodes[1].link);
#ifdef AO_STACK_IS_LOCK_FREE
# ifdef AO_HAVE_double_t
  /* 7.8's lock-free view: AO_val2 is the top, AO_val1 the version. */
  TU_CHECK((AO_t *)s->AO_vp.AO_val2 == &nodes[1].link,
           "AO_vp.AO_val2 is not the top link");
  TU_CHECK((AO_t *)s->AO_vp.AO_val2 == AO_stack_head_ptr(s),
           "AO_vp.AO_val2 disagrees with AO_stack_head_ptr");
  checked++;
# endif
#else
  /* 7.6 and 7.8 almost-lock-free views: AO_ptr is the head word (version in
   * the low bits), AO_aux the black list; both spellings alias. */
  TU_CHECK(real_ptr(s->AO_ptr) == &nodes[1].link, "AO_ptr is not the head");
  TU_CHECK(&s->AO_pa.AO_ptr == &s->AO_ptr && &s->AO_pa.AO_aux == &s->AO_aux,
           "AO_pa does not alias AO_ptr/AO_aux");
  TU_CHECK(AO_REAL_HEAD_PTR(*s) == real_ptr(s->AO_ptr),
           "AO_REAL_HEAD_PTR disagrees with AO_ptr");
  /* What 7.6's AO_stack_push_release macro expanded to: the same stack. */
  AO_stack_push_explicit_aux_release(&s->AO_ptr, &nodes[2].link, &s->AO_aux);
  TU_CHECK(AO_stack_pop(s) == &nodes[2].link, "explicit-aux push via members");
  checked++;
#endif
  TU_CHECK(AO_stack_pop(s) == &nodes[1].link, "pop 1");
  TU_CHECK(AO_stack_pop(s) == &nodes[0].link, "pop 0");
  TU_CHECK(AO_stack_pop(s) == NULL, "stack not empty");
  return checked;
}

int main(int argc, char **argv)
{
  int members;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(30, "the 7.6 identifiers test");
  check_client_stack();
  members = check_members();
  tu_info("AO_stack_aux (%u words), AO_N_BITS %d, AO_BIT_MASK %#x, "
          "AO_STACK_ATTR_ALLIGNED, explicit-aux push/pop: ok; members: %s",
          (unsigned)(sizeof(AO_stack_aux) / sizeof(AO_t)), AO_N_BITS,
          (unsigned)AO_BIT_MASK,
          members == 0 ? "none in this view"
#ifdef AO_STACK_IS_LOCK_FREE
                       : "AO_vp ok"
#else
                       : "AO_ptr, AO_aux, AO_pa ok"
#endif
          );
  return 0;
}
