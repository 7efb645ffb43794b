/* SPDX-License-Identifier: MIT */
/* dlopen of the built shared library, for tests about load order and unloading. */
/*
 * These tests do not link the library: they load
 * $top_builddir/.libs/libatomic_ops_gpl.so themselves (top_builddir is
 * exported by tests/Makefile.am), so that they choose when its constructor
 * runs and can dlclose it.  No shared library (--disable-shared) = skip.
 * Include after test_util.h.
 */
#ifndef TEST_DLOPEN_H
#define TEST_DLOPEN_H

#include <dlfcn.h>

struct tu_ao_lib {
  void *handle;
  void *(*malloc_fn)(size_t);
  void (*free_fn)(void *);
  int (*trim_fn)(void);
};

static void *tu_dlsym(void *h, const char *name)
{
  void *f = dlsym(h, name);

  if (f == NULL)
    tu_fail("dlsym(%s): %s", name, dlerror());
  return f;
}

static void tu_ao_lib_open(struct tu_ao_lib *lib)
{
  const char *top = getenv("top_builddir");
  char path[4096];

  snprintf(path, sizeof(path), "%s/.libs/libatomic_ops_gpl.so",
           top != NULL && *top != '\0' ? top : "..");
  if (access(path, R_OK) != 0)
    tu_skip("no shared library at %s (built with --disable-shared?)", path);
  lib->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib->handle == NULL)
    tu_fail("dlopen(%s): %s", path, dlerror());
  *(void **)&lib->malloc_fn = tu_dlsym(lib->handle, "AO_malloc");
  *(void **)&lib->free_fn = tu_dlsym(lib->handle, "AO_free");
  *(void **)&lib->trim_fn = tu_dlsym(lib->handle, "AO_malloc_trim");
}

#endif /* TEST_DLOPEN_H */
