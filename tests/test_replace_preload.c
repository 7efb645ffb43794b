/* SPDX-License-Identifier: MIT */
/* libaomalloc by LD_PRELOAD: a program not linked with it re-executes itself and a shell with the built .so preloaded. */
#include "test_util.h"

#include <dlfcn.h>
#include <sys/wait.h>

#ifndef AOMALLOC_SO
# error "AOMALLOC_SO: path of the built libaomalloc.so"
#endif

/* In the preloaded run: malloc, the C library's internal callers (strdup,
 * getline, qsort's buffer...) and AO_* must be one heap, libaomalloc's. */
static int preloaded_child(void)
{
  size_t (*usable)(const void *);
  void (*ao_free)(void *);
  void *p, *q;
  char *line = NULL;
  size_t cap = 0;
  FILE *f;
  int i;

  *(void **)&usable = dlsym(RTLD_DEFAULT, "AO_malloc_usable_size");
  *(void **)&ao_free = dlsym(RTLD_DEFAULT, "AO_free");
  TU_CHECK(usable != NULL && ao_free != NULL,
           "preloaded: AO_malloc_usable_size/AO_free not found: not preloaded?");
  p = malloc(1000);
  TU_CHECK(usable(p) >= 1000, "preloaded: malloc(1000) is not from libaomalloc (%zu)", usable(p));
  free(p);
  q = strdup("from the C library");
  TU_CHECK(usable(q) > 0, "preloaded: strdup's block is not from libaomalloc");
  ao_free(q);
  f = fopen("/proc/self/maps", "r");         /* stdio buffers: malloc */
  TU_CHECK(f != NULL, "fopen");
  for (i = 0; getline(&line, &cap, f) > 0; i++)
    ;
  TU_CHECK(usable(line) >= cap, "preloaded: getline's buffer is not from libaomalloc");
  free(line);
  fclose(f);
  /* A shell under the same preload (inherited environment). */
  TU_CHECK(system("x=$(printf '%s\\n' 3 1 2 | sort | tr -d '\\n'); test \"$x\" = 123") == 0,
           "preloaded: sh -c pipeline failed");
  return 0;
}

int main(int argc, char **argv)
{
  char env[4096], path[4096];
  char *envp[3];
  pid_t pid;
  int st;

  tu_init(argv[0]);
  /* Not linked with libaomalloc (tu_require_aomalloc_malloc would skip):
   * only a sanitizer runtime of our own keeps the preload from working. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  tu_skip("a sanitizer build: its runtime must come first, before a preload");
#endif
  if (argc > 1 && strcmp(argv[1], "--preloaded") == 0)
    return preloaded_child();
  tu_watchdog(60, "preload");
  if (access(AOMALLOC_SO, R_OK) != 0)
    tu_skip("%s not built (--disable-shared?)", AOMALLOC_SO);
  /* Set by .ci/cross.sh: the re-exec'ed program would be a foreign binary
   * that the kernel cannot run without qemu. */
  if (getenv("AO_TEST_UNDER_QEMU") != NULL)
    tu_skip("under qemu-user the preloaded re-exec cannot run");
  TU_CHECK(dlsym(RTLD_DEFAULT, "AO_malloc_usable_size") == NULL,
           "this program must not be linked with the library");
  snprintf(env, sizeof(env), "LD_PRELOAD=%s", AOMALLOC_SO);
  snprintf(path, sizeof(path), "PATH=%s",
           getenv("PATH") != NULL ? getenv("PATH") : "/usr/bin:/bin");
  envp[0] = env;
  envp[1] = path;
  envp[2] = NULL;
  pid = fork();
  TU_CHECK(pid >= 0, "fork");
  if (pid == 0) {
    char *args[] = { argv[0], "--preloaded", NULL };
    execve("/proc/self/exe", args, envp);
    _exit(126);
  }
  TU_CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  TU_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "preloaded run: status %#x", st);
  tu_info("LD_PRELOAD=%s: malloc, strdup, getline, AO_free one heap; sh -c pipeline: ok",
          AOMALLOC_SO);
  return 0;
}
