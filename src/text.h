/* SPDX-License-Identifier: MIT */
/* Text without stdio or malloc, for the reports a signal handler may make: a bounded buffer, strings, numbers. */
#ifndef AO_GPL_TEXT_H
#define AO_GPL_TEXT_H

#include <stddef.h>

/* Filled by the misuse report, AO_malloc_stats_print and malloc_info.
 * What does not fit in cap bytes is dropped: a report cut short, never
 * a write past the caller's (stack) buffer. */
struct text {
  char *buf;
  size_t cap;
  size_t len;
};

static inline void text_put(struct text *t, const char *s)
{
  while (*s != '\0' && t->len < t->cap)
    t->buf[t->len++] = *s++;
}

/* v in base 10 or 16 (lower case, no prefix). */
static inline void text_put_uint(struct text *t, unsigned long long v,
                                 unsigned base)
{
  char digits[3 * sizeof(v) + 1];   /* 20 decimal digits for 64 bits */
  size_t n = sizeof(digits);

  digits[--n] = '\0';
  do
    digits[--n] = "0123456789abcdef"[v % base];
  while ((v /= base) != 0);
  text_put(t, digits + n);
}

#endif /* AO_GPL_TEXT_H */
