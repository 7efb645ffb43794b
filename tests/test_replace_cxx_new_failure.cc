// SPDX-License-Identifier: MIT
// libaomalloc's own operator new/delete: they are ours, and a failing new still calls the new_handler and throws std::bad_alloc (or gives nullptr when nothrow).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <new>

#include "atomic_ops_malloc.h"

static void fail(const char *what)
{
  std::fprintf(stderr, "test_replace_cxx_new_failure: FAIL: %s\n", what);
  std::exit(1);
}

#define CHECK(c, what) do { if (!(c)) fail(what); } while (0)

// Far beyond any address space: every attempt fails, ours and the runtime's.
static volatile size_t huge = SIZE_MAX / 2;
static int handler_calls;

// Called by the runtime's operator new on each failure: twice, then gone,
// so the third failure throws std::bad_alloc.
static void handler_twice()
{
  if (++handler_calls == 2)
    std::set_new_handler(nullptr);
}

struct Marker {
  int n;
};

// Throws its own exception through our (C) operator new's frames.
static void handler_throws()
{
  handler_calls++;
  throw Marker{42};
}

static bool from_aomalloc(const char *name)
{
  Dl_info info;
  void *sym = dlsym(RTLD_DEFAULT, name);

  return sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr
         && std::strstr(info.dli_fname, "libaomalloc") != nullptr;
}

int main()
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  std::puts("test_replace_cxx_new_failure: SKIP: a sanitizer build: its interceptors take malloc and new");
  return 77;
#endif
  if (dlsym(RTLD_DEFAULT, "malloc") != dlsym(RTLD_DEFAULT, "AO_malloc")) {
    std::puts("test_replace_cxx_new_failure: SKIP: another malloc comes first (a sanitizer runtime)");
    return 77;
  }
  if (const char *pre = std::getenv("LD_PRELOAD"))
    if (std::strstr(pre, "vgpreload") != nullptr) {
      std::puts("test_replace_cxx_new_failure: SKIP: under valgrind: its new replaces ours");
      return 77;
    }
  const bool lp64 = sizeof(size_t) == 8;
  CHECK(from_aomalloc(lp64 ? "_Znwm" : "_Znwj"), "operator new is not libaomalloc's");
  CHECK(from_aomalloc(lp64 ? "_Znam" : "_Znaj"), "operator new[] is not libaomalloc's");
  CHECK(dlsym(RTLD_DEFAULT, "_ZdlPv") == dlsym(RTLD_DEFAULT, "AO_free"),
        "operator delete is not free itself");
  CHECK(dlsym(RTLD_DEFAULT, lp64 ? "_ZdaPvm" : "_ZdaPvj") == dlsym(RTLD_DEFAULT, "AO_free"),
        "sized operator delete[] is not free itself");

  // The ordinary calls: blocks of our heap, of at least the size asked.
  for (size_t n = 0; n < 5000; n += 37) {
    char *a = new char[n];
    std::memset(a, 0x5a, n);
    CHECK(AO_malloc_usable_size(a) >= n, "new[]: not a block of AO_malloc's heap");
    delete[] a;
    int *q = new (std::nothrow) int[n + 1];
    CHECK(q != nullptr && AO_malloc_usable_size(q) >= (n + 1) * sizeof(int), "new[] (nothrow)");
    ::operator delete[](q, std::nothrow);
  }
  long *l = new long(7);
  CHECK(*l == 7 && AO_malloc_usable_size(l) >= sizeof(long), "new long");
  ::operator delete(l, sizeof(long));         // sized delete

  // No handler: bad_alloc at once.
  bool threw = false;
  try {
    void *p = ::operator new(huge);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw, "a failing operator new did not throw std::bad_alloc");
  threw = false;
  try {
    void *p = ::operator new[](huge);
    ::operator delete[](p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw, "a failing operator new[] did not throw std::bad_alloc");

  // The new_handler loop: called on each failure while installed.
  std::set_new_handler(handler_twice);
  threw = false;
  try {
    void *p = ::operator new(huge);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw && handler_calls == 2, "operator new: the new_handler was not called twice, then bad_alloc");

  // A handler's own exception crosses libaomalloc's frames.
  handler_calls = 0;
  std::set_new_handler(handler_throws);
  int caught = 0;
  try {
    void *p = ::operator new[](huge);
    ::operator delete[](p);
  } catch (const Marker &m) {
    caught = m.n;
  }
  CHECK(caught == 42 && handler_calls == 1, "the new_handler's exception did not reach the caller");
  std::set_new_handler(nullptr);

  // nothrow: nullptr, after the handler (nothrow new runs it too).
  CHECK(::operator new(huge, std::nothrow) == nullptr, "nothrow new of a huge size is not nullptr");
  CHECK(::operator new[](huge, std::nothrow) == nullptr, "nothrow new[] of a huge size is not nullptr");
  handler_calls = 0;
  std::set_new_handler(handler_twice);
  CHECK(::operator new(huge, std::nothrow) == nullptr && handler_calls == 2,
        "nothrow new: the new_handler was not called twice, then nullptr");

  // And the heap still works.
  char *s = new char[100];
  std::memset(s, 1, 100);
  delete[] s;
  std::fprintf(stderr, "test_replace_cxx_new_failure: new/new[]/nothrow/sized delete are libaomalloc's; "
                       "failure: bad_alloc, new_handler loop (2 calls), handler exception, nothrow nullptr: ok\n");
  return 0;
}
