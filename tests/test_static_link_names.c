/* SPDX-License-Identifier: MIT */
/* A program whose own globals carry the library's short internal names links statically and keeps them. */
/*
 * Linked with libtool's -static, i.e. against libatomic_ops_gpl.a: every
 * archive member that AO_malloc, AO_free, AO_malloc_trim and AO_stack pull
 * in must define only public AO_* names or ao_gpl_* ones, else the link
 * fails with "multiple definition of `central_free'".  The definitions
 * below take one name from each layer; the library must never call them.
 */
#include "test_util.h"

#include "atomic_ops_malloc.h"
#include "atomic_ops_stack.h"

static volatile int client_calls;

/* Deliberately not the library's signatures: they are the client's own. */
int cache_alloc_slow(int x);
int central_free(int x);
int central_alloc(int x);
int span_new_small(int x);
int chunk_trim(int x);
int chunk_alloc_pages(int x);
int large_alloc(int x);
int os_unmap(int x);
int os_map_aligned(int x);
int misuse_report(int x);
int ao_stack_alf_push(int x);
int ao_stack_alf_pop(int x);

int cache_alloc_slow(int x) { client_calls++; return x + 1; }
int central_free(int x) { client_calls++; return x + 2; }
int central_alloc(int x) { client_calls++; return x + 3; }
int span_new_small(int x) { client_calls++; return x + 4; }
int chunk_trim(int x) { client_calls++; return x + 5; }
int chunk_alloc_pages(int x) { client_calls++; return x + 6; }
int large_alloc(int x) { client_calls++; return x + 7; }
int os_unmap(int x) { client_calls++; return x + 8; }
int os_map_aligned(int x) { client_calls++; return x + 9; }
int misuse_report(int x) { client_calls++; return x + 10; }
int ao_stack_alf_push(int x) { client_calls++; return x + 11; }
int ao_stack_alf_pop(int x) { client_calls++; return x + 12; }

/* A client variable too: the library's tables must not be confused with it. */
int span_memory_can_grow = 42;

int main(int argc, char **argv)
{
  static AO_stack_t stack = AO_STACK_INITIALIZER;
  void *small[64];
  void *large;
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(30, "the static-link names test");

  /* Every layer of the library runs: caches, central lists, spans, page
   * runs, a direct large mapping, trim, the stack. */
  AO_malloc_enable_mmap();
  for (i = 0; i < 64; i++) {
    small[i] = AO_malloc(16 + 48 * i);
    TU_CHECK(small[i] != NULL, "AO_malloc(%u) failed", 16 + 48 * i);
  }
  large = AO_malloc((size_t)1 << 20);
  TU_CHECK(large != NULL, "AO_malloc(1 MiB) failed");
  AO_stack_push(&stack, (AO_uintptr_t *)small[0]);
  TU_CHECK(AO_stack_pop(&stack) == (AO_uintptr_t *)small[0], "stack pop");
  for (i = 0; i < 64; i++)
    AO_free(small[i]);
  AO_free(large);
  (void)AO_malloc_trim();

  TU_CHECK(client_calls == 0, "the library called %d client functions",
           client_calls);
  TU_CHECK(span_memory_can_grow == 42, "client variable changed");
  /* The client's own definitions are the ones its calls reach. */
  TU_CHECK(central_free(0) == 2 && chunk_trim(0) == 5 && os_unmap(0) == 8
           && misuse_report(0) == 10 && ao_stack_alf_pop(0) == 12,
           "a client call reached another definition");
  tu_info("the client's central_free, span_new_small, chunk_trim, os_unmap, "
          "misuse_report... coexist with the static library");
  return 0;
}
