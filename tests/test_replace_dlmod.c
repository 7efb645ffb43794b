/* SPDX-License-Identifier: MIT */
/* A module for test_replace_dlopen: allocates in its constructor, frees in its destructor. */
#include <stdlib.h>
#include <string.h>

static char *held[16];

__attribute__((__constructor__)) static void mod_init(void)
{
  unsigned i;

  for (i = 0; i < 16; i++) {
    held[i] = malloc(100u << i);
    memset(held[i], (int)i, 100u << i);
  }
}

__attribute__((__destructor__)) static void mod_fini(void)
{
  unsigned i;

  for (i = 0; i < 16; i++)
    free(held[i]);
}

/* A block for the caller to free, and a check of the held ones. */
char *mod_make(unsigned n);
char *mod_make(unsigned n)
{
  unsigned i;

  for (i = 0; i < 16; i++)
    if (held[i][(100u << i) - 1] != (char)i)
      return NULL;
  return calloc(n, 1);
}
