// SPDX-License-Identifier: MIT
// libaomalloc: C++ new/delete (plain, array, sized, aligned, nothrow) and thread_local destructors go through it.
#include <atomic>
#include <dlfcn.h>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "atomic_ops_malloc.h"

static void fail(const char *what)
{
  std::fprintf(stderr, "test_replace_cxx: FAIL: %s\n", what);
  std::exit(1);
}

#define CHECK(c, what) do { if (!(c)) fail(what); } while (0)

struct alignas(64) Line { char c[64]; };
struct alignas(4096) Page { char c[4096]; };

// A thread_local object whose destructor frees, after the allocator's
// own exit hook may have flushed the thread's cache.
struct Holder {
  std::vector<std::string> v;
  ~Holder() { v.clear(); v.shrink_to_fit(); std::string s(1000, 'y'); (void)s; }
};
static thread_local Holder holder;
static std::atomic<int> done{0};

static void work(int id)
{
  std::map<int, std::string> m;
  for (int i = 0; i < 2000; i++)
    m[i] = std::string(static_cast<size_t>(i % 300), static_cast<char>('a' + id));
  for (int i = 0; i < 100; i++)
    holder.v.push_back(std::string(200, 'h'));
  Line *l = new Line;
  CHECK((reinterpret_cast<uintptr_t>(l) & 63) == 0, "new Line: not 64-aligned");
  delete l;
  done++;
}

int main()
{
  // A sanitizer's interceptors take malloc first: nothing of ours to test.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  std::puts("test_replace_cxx: SKIP: a sanitizer build: its interceptors take malloc");
  return 77;
#endif
  // libaomalloc's malloc is AO_malloc itself; the ASan runtime, loaded by
  // an instrumented libaomalloc, would put its interceptor first.
  if (dlsym(RTLD_DEFAULT, "malloc") != dlsym(RTLD_DEFAULT, "AO_malloc")) {
    std::puts("test_replace_cxx: SKIP: another malloc comes first (a sanitizer runtime)");
    return 77;
  }
  if (const char *pre = std::getenv("LD_PRELOAD"))
    if (std::strstr(pre, "vgpreload") != nullptr) {
      std::puts("test_replace_cxx: SKIP: under valgrind: its malloc replaces ours");
      return 77;
    }
  // Plain new is malloc: AO_malloc_usable_size knows the block.
  int *p = new int[1000];
  CHECK(AO_malloc_usable_size(p) >= 1000 * sizeof(int), "new[] is not from AO_malloc's heap");
  delete[] p;
  std::string *s = new std::string(5000, 'x');
  delete s;
  int *q = new (std::nothrow) int(5);
  CHECK(q != nullptr && *q == 5, "new (nothrow)");
  delete q;

  // Aligned new (C++17): operator new(size_t, align_val_t).
  Line *l = new Line[10];
  CHECK((reinterpret_cast<uintptr_t>(l) & 63) == 0, "new Line[10]: not 64-aligned");
  delete[] l;
  Page *pg = new Page;
  CHECK((reinterpret_cast<uintptr_t>(pg) & 4095) == 0, "new Page: not 4096-aligned");
  CHECK(AO_malloc_usable_size(pg) >= sizeof(Page), "aligned new is not from AO_malloc's heap");
  delete pg;

  bool threw = false;
  try {
    std::vector<char> huge(SIZE_MAX / 2);
    (void)huge;
  } catch (const std::bad_alloc &) {
    threw = true;
  } catch (const std::length_error &) {
    threw = true;
  }
  CHECK(threw, "a huge allocation did not throw");

  std::vector<std::thread> ts;
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < 8; i++)
      ts.emplace_back(work, i);
    for (auto &t : ts)
      t.join();
    ts.clear();
  }
  CHECK(done == 32, "not every thread finished");
  std::fprintf(stderr, "test_replace_cxx: new/delete, new[], nothrow, aligned new (64, 4096), bad_alloc, "
                       "32 threads with thread_local destructors: ok\n");
  return 0;
}
