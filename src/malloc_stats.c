/* SPDX-License-Identifier: MIT */
/* Public API shim, continued: AO_malloc_stats (sums each layer's figures) and AO_malloc_stats_print. */
#include "internal.h"
#include "atomic_ops_malloc.h"
#include "text.h"

#include <errno.h>
#include <unistd.h>

/*
 * The snapshot.  Each layer adds what it owns (internal.h, "statistics"):
 * the OS layer its counters, the chunk provider a walk of the bitmaps and
 * page maps (handing each live run to the span layer), the large layer
 * three counters, the thread caches a walk of the registry.  Loads only:
 * no lock, no allocation, no write to shared state, no system call, so a
 * handler may take one at any point, even inside AO_malloc.
 *
 * When no thread is inside the allocator the figures add up exactly:
 *   mapped == in_use + thread_cached + span_free + free_pages
 *             + large_cached + metadata + slack
 * where slack is the tail of each small-block span too short for another
 * block.  metadata counts only what lies in mapped memory (segment
 * headers and page maps, descriptor pages, large headers, thread caches);
 * the library's fixed tables in .bss (the static heap's bitmap and page
 * map, the first descriptors) are in neither side.  Under concurrency the
 * layers are read at slightly different moments: a block in flight
 * between a cache and a span may be missed or counted twice.
 */
static volatile AO_t foreign_frees;

void stats_foreign_free(void)
{
  AO_fetch_and_add1(&foreign_frees);
}

void AO_malloc_stats(struct AO_malloc_stats *st)
{
  struct AO_malloc_stats s = { 0 };

  os_stats(&s);
  chunk_stats(&s);
  large_stats(&s);
  cache_stats(&s);
  s.foreign_frees = (unsigned long)AO_load(&foreign_frees);
  /* Caches read after the spans they emptied: in_use may dip below 0. */
  if (s.in_use > s.mapped)
    s.in_use = 0;
  *st = s;
}

/* ---- text output: write(2) only, our own number formatting ---- */

/* Labels are padded to one column, so the figures line up. */
static void put_label(struct text *t, const char *label)
{
  size_t n = 0;

  text_put(t, "  ");
  text_put(t, label);
  while (label[n] != '\0')
    n++;
  for (; n < 16; n++)
    text_put(t, " ");
}

/* "12.3 MiB (12894208 B)", or "512 B" below 1 KiB; tenths truncated. */
static void put_bytes(struct text *t, const char *label, size_t v)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                       "PiB", "EiB" };
  unsigned u = 0;

  put_label(t, label);
  /* The shift stays below the width of size_t (32 bits on i386). */
  while (u + 1 < sizeof(units) / sizeof(units[0])
         && 10 * (u + 1) < 8 * sizeof(size_t) && (v >> (10 * (u + 1))) != 0)
    u++;
  if (u == 0) {
    text_put_uint(t, v, 10);
    text_put(t, " B\n");
    return;
  }
  text_put_uint(t, v >> (10 * u), 10);
  text_put(t, ".");
  text_put_uint(t, ((v >> (10 * (u - 1))) & 1023) * 10 / 1024, 10);
  text_put(t, " ");
  text_put(t, units[u]);
  text_put(t, " (");
  text_put_uint(t, v, 10);
  text_put(t, " B)\n");
}

static void put_count(struct text *t, const char *label, unsigned long v)
{
  put_label(t, label);
  text_put_uint(t, v, 10);
  text_put(t, "\n");
}

/* errno is kept on success: a handler may print between a failing call
 * and its caller's look at errno. */
static int write_all(int fd, const char *p, size_t n)
{
  int saved_errno = errno;

  while (n > 0) {
    ssize_t w = write(fd, p, n);

    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (w == 0) {             /* not for a regular fd; no endless loop */
      errno = EIO;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  errno = saved_errno;
  return 0;
}

int AO_malloc_stats_print(int fd)
{
  struct AO_malloc_stats st;
  char buf[1536];
  struct text t = { buf, sizeof(buf), 0 };

  AO_malloc_stats(&st);
  text_put(&t, "atomic_ops_gpl heap:\n");
  put_bytes(&t, "mapped", st.mapped);
  put_bytes(&t, "in use", st.in_use);
  put_bytes(&t, "thread cached", st.thread_cached);
  put_bytes(&t, "span free", st.span_free);
  put_bytes(&t, "free pages", st.free_pages);
  put_bytes(&t, "free released", st.free_released);
  put_bytes(&t, "large cached", st.large_cached);
  put_bytes(&t, "metadata", st.metadata);
  put_bytes(&t, "slack", st.slack);
  put_bytes(&t, "released total", st.released_total);
  put_count(&t, "mmap calls", st.mmap_calls);
  put_count(&t, "munmap calls", st.munmap_calls);
  put_count(&t, "madvise calls", st.madvise_calls);
  put_count(&t, "mremap calls", st.mremap_calls);
  put_count(&t, "thread caches", st.thread_caches);
  put_count(&t, "foreign frees", st.foreign_frees);
  return write_all(fd, t.buf, t.len);
}
