/* SPDX-License-Identifier: MIT */
/* AO_malloc_stats_print: its text matches the snapshot; it and AO_malloc_stats work from handlers interrupting AO_malloc/AO_free. */
/*
 *  1. Quiescent: the text written to a pipe has the header line and one
 *     line per figure; each line's exact byte count (the last number on
 *     it) equals the AO_malloc_stats figure taken just before, the
 *     rounded unit value agrees with it, and the byte lines add up to
 *     mapped.  A bad fd gives -1 with errno EBADF; errno is kept on
 *     success.
 *  2. Handlers: worker threads allocate and free blocks of 0..64 KiB (and
 *     some 300 KiB mappings) in a loop; a helper thread sends them SIGUSR1,
 *     whose handler takes a snapshot (sanity-checked) and prints it to a
 *     pipe that a reader thread drains and parses: every block of text
 *     must be whole (one write below PIPE_BUF), and as many as the
 *     handlers printed.  Bounded by AO_TEST_SECONDS (default 2 s) and a
 *     watchdog.  Afterwards, with every worker gone, the identity holds.
 */
#include "test_util.h"

#include <stdatomic.h>

#include "atomic_ops_malloc.h"

#define NFIELDS 16
#define NBYTEFIELDS 10

/* In print order; the first NBYTEFIELDS are byte figures. */
static const char *const labels[NFIELDS] = {
  "mapped", "in use", "thread cached", "span free", "free pages",
  "free released", "large cached", "metadata", "slack", "released total",
  "mmap calls", "munmap calls", "madvise calls", "mremap calls",
  "thread caches", "foreign frees"
};

static unsigned long long field(const struct AO_malloc_stats *s, int i)
{
  switch (i) {
  case 0: return s->mapped;
  case 1: return s->in_use;
  case 2: return s->thread_cached;
  case 3: return s->span_free;
  case 4: return s->free_pages;
  case 5: return s->free_released;
  case 6: return s->large_cached;
  case 7: return s->metadata;
  case 8: return s->slack;
  case 9: return s->released_total;
  case 10: return s->mmap_calls;
  case 11: return s->munmap_calls;
  case 12: return s->madvise_calls;
  case 13: return s->mremap_calls;
  case 14: return s->thread_caches;
  default: return s->foreign_frees;
  }
}

/* Parse one block of text into vals; 0 on success, else a line number
 * (1-based) that is malformed.  Async-signal-safe (used by the reader
 * thread only, but kept simple). */
static int parse_block(const char *text, size_t len,
                       unsigned long long vals[NFIELDS], size_t *used)
{
  static const char header[] = "atomic_ops_gpl heap:\n";
  size_t pos = sizeof(header) - 1;
  int i;

  if (len < pos || memcmp(text, header, pos) != 0)
    return 1;
  for (i = 0; i < NFIELDS; i++) {
    size_t end = pos, k, l = strlen(labels[i]);
    unsigned long long v = 0;
    int have = 0;

    while (end < len && text[end] != '\n')
      end++;
    if (end == len || end - pos < 2 + l || memcmp(text + pos, "  ", 2) != 0
        || memcmp(text + pos + 2, labels[i], l) != 0
        || text[pos + 2 + l] != ' ')
      return i + 2;
    /* The last number on the line is the exact figure. */
    for (k = pos + 2 + l; k < end; k++) {
      if (text[k] >= '0' && text[k] <= '9') {
        if (!have || (k > 0 && !(text[k - 1] >= '0' && text[k - 1] <= '9')))
          v = 0;
        v = v * 10 + (unsigned long long)(text[k] - '0');
        have = 1;
      }
    }
    if (!have)
      return i + 2;
    vals[i] = v;
    pos = end + 1;
  }
  *used = pos;
  return 0;
}

/* "X.Y UNIT (N B)": X.Y must be N in UNIT, tenths truncated. */
static void check_units(const char *text, size_t len)
{
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
  const char *line = text, *end = text + len;

  while (line < end) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *open = memchr(line, '(', (size_t)(nl - line));

    if (open != NULL) {
      unsigned long long whole, tenth, exact;
      char unit[8];
      const char *p = open - 1;
      unsigned u;

      while (p > line && p[-1] != ' ')
        p--;                               /* p: the unit */
      while (p > line && p[-1] == ' ')
        p--;
      while (p > line && p[-1] != ' ')
        p--;                               /* p: the X.Y value */
      TU_CHECK(sscanf(p, "%llu.%llu %7s (%llu B)", &whole, &tenth, unit,
                      &exact) == 4, "unparsable line: %.*s",
               (int)(nl - line), line);
      for (u = 0; u < 4 && strcmp(unit, units[u]) != 0; u++)
        ;
      TU_CHECK(u < 4 && tenth < 10, "bad unit: %.*s", (int)(nl - line), line);
      TU_CHECK(exact >> (10 * (u + 1)) == whole
               && ((exact >> (10 * u)) & 1023) * 10 / 1024 == tenth,
               "rounded value disagrees with the bytes: %.*s",
               (int)(nl - line), line);
    }
    line = nl + 1;
  }
}

static char text[1 << 16];

static size_t read_all(int fd, char *buf, size_t cap)
{
  size_t len = 0;
  ssize_t n;

  while (len < cap && (n = read(fd, buf + len, cap - len)) != 0) {
    if (n < 0) {
      TU_CHECK(errno == EINTR, "read: %s", strerror(errno));
      continue;
    }
    len += (size_t)n;
  }
  return len;
}

static void phase_quiescent(void)
{
  struct AO_malloc_stats s;
  unsigned long long vals[NFIELDS], sum = 0;
  int fds[2], bad, i;
  size_t len, used;
  void *keep[64];

  for (i = 0; i < 64; i++)
    keep[i] = AO_malloc((size_t)i * 1000);
  TU_CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
  AO_malloc_stats(&s);
  errno = 12345;
  TU_CHECK(AO_malloc_stats_print(fds[1]) == 0, "AO_malloc_stats_print to a "
           "pipe: %s", strerror(errno));
  TU_CHECK(errno == 12345, "errno changed by a successful print: %d", errno);
  close(fds[1]);
  len = read_all(fds[0], text, sizeof(text));
  close(fds[0]);
  bad = parse_block(text, len, vals, &used);
  TU_CHECK(bad == 0, "line %d is malformed:\n%.*s", bad, (int)len, text);
  TU_CHECK(used == len, "%zu bytes after the last line", len - used);
  check_units(text, len);
  for (i = 0; i < NFIELDS; i++)
    TU_CHECK(vals[i] == field(&s, i), "%s: printed %llu, snapshot %llu",
             labels[i], vals[i], field(&s, i));
  for (i = 1; i < 9; i++)
    if (i != 5)                            /* free_released is a part */
      sum += vals[i];
  TU_CHECK(sum == vals[0], "the printed parts add up to %llu, mapped %llu",
           sum, vals[0]);
  errno = 0;
  TU_CHECK(AO_malloc_stats_print(-1) == -1 && errno == EBADF,
           "AO_malloc_stats_print(-1): expected -1 with EBADF, errno %d",
           errno);
  for (i = 0; i < 64; i++)
    AO_free(keep[i]);
  tu_info("printed %zu bytes:\n%.*s", len, (int)len, text);
}

/* ---- from handlers ---- */

#define MAXW 4
#define LIVE 32

static int pipe_w, pipe_r;
static atomic_int stop;
static atomic_long printed, snapshots, workers_ready;
static pid_t worker_tid[MAXW];

static void on_usr1(int sig)
{
  struct AO_malloc_stats s;
  int saved = errno;

  (void)sig;
  AO_malloc_stats(&s);
  if (s.mapped < TU_STATIC_HEAP || s.in_use > s.mapped
      || s.thread_caches == 0 || s.foreign_frees != 0)
    tu_sfail("handler: a snapshot out of bounds");
  atomic_fetch_add(&snapshots, 1);
  if (AO_malloc_stats_print(pipe_w) == 0)
    atomic_fetch_add(&printed, 1);
  else
    tu_sfail("handler: AO_malloc_stats_print failed");
  errno = saved;
}

static void *worker(void *arg)
{
  long w = (long)arg;
  uint64_t rng = tu_seed() + (uint64_t)w * 7919;
  void *live[LIVE] = { 0 };
  unsigned long i, iters = tu_iters(2000000);
  double deadline = tu_now() + tu_seconds(2);

  worker_tid[w] = (pid_t)syscall(SYS_gettid);
  atomic_fetch_add(&workers_ready, 1);
  for (i = 0; i < iters && !atomic_load(&stop); i++) {
    unsigned slot = (unsigned)tu_below(&rng, LIVE);
    size_t size = tu_below(&rng, 64) == 0 ? 300000
                                          : tu_logsize(&rng, 65536) + 1;

    AO_free(live[slot]);
    live[slot] = AO_malloc(size);
    if (live[slot] == NULL)
      tu_sfail("worker: AO_malloc failed");
    ((volatile char *)live[slot])[0] = 1;
    if ((i & 1023) == 0 && tu_now() > deadline)
      break;
  }
  for (i = 0; i < LIVE; i++)
    AO_free(live[i]);
  return NULL;
}

static void *signaller(void *arg)
{
  struct timespec gap = { 0, 200000 };
  int n = *(int *)arg, i;
  pid_t pid = getpid();

  while (!atomic_load(&stop)) {
    for (i = 0; i < n; i++)
      syscall(SYS_tgkill, pid, worker_tid[i], SIGUSR1);
    nanosleep(&gap, NULL);
  }
  return NULL;
}

static long blocks_read;

static void *reader(void *arg)
{
  static char buf[1 << 16];
  size_t len = 0, used;
  ssize_t n;
  unsigned long long vals[NFIELDS];
  int bad;

  (void)arg;
  for (;;) {
    n = read(pipe_r, buf + len, sizeof(buf) - len);
    if (n < 0 && errno == EINTR)
      continue;
    TU_CHECK(n >= 0, "reader: read: %s", strerror(errno));
    if (n == 0)
      break;
    len += (size_t)n;
    /* Whole blocks only: each is one write, below PIPE_BUF. */
    for (;;) {
      const char *end = NULL;
      size_t k, lines = 0;

      for (k = 0; k < len && lines < NFIELDS + 1; k++)
        if (buf[k] == '\n' && ++lines == NFIELDS + 1)
          end = buf + k + 1;
      if (end == NULL)
        break;
      bad = parse_block(buf, (size_t)(end - buf), vals, &used);
      TU_CHECK(bad == 0, "reader: block %ld, line %d is malformed:\n%.*s",
               blocks_read, bad, (int)(end - buf), buf);
      blocks_read++;
      memmove(buf, end, len - used);
      len -= used;
    }
  }
  TU_CHECK(len == 0, "reader: %zu bytes of a torn block at the end", len);
  return NULL;
}

static void phase_handlers(void)
{
  pthread_t w[MAXW], sig, rd;
  int n = tu_threads(MAXW), fds[2], i;
  struct sigaction sa;
  struct AO_malloc_stats s;

  if (n > MAXW)
    n = MAXW;
  TU_CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
  pipe_r = fds[0];
  pipe_w = fds[1];
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  tu_thread_nosig(&rd, reader, NULL);
  for (i = 0; i < n; i++)
    tu_thread(&w[i], worker, (void *)(long)i);
  while (atomic_load(&workers_ready) < n)
    sched_yield();
  tu_thread_nosig(&sig, signaller, &n);
  for (i = 0; i < n; i++)
    pthread_join(w[i], NULL);
  atomic_store(&stop, 1);
  pthread_join(sig, NULL);
  close(pipe_w);
  pthread_join(rd, NULL);
  close(pipe_r);
  TU_CHECK(atomic_load(&snapshots) > 0, "no handler ran");
  TU_CHECK(blocks_read == atomic_load(&printed), "the reader parsed %ld "
           "blocks, the handlers printed %ld", blocks_read,
           atomic_load(&printed));
  AO_malloc_stats(&s);
  TU_CHECK(s.in_use + s.thread_cached + s.span_free + s.free_pages
           + s.large_cached + s.metadata + s.slack == s.mapped,
           "after the workers exited the parts do not add up to mapped %zu",
           s.mapped);
  tu_info("handlers: %ld snapshots, %ld blocks printed and parsed, %lu "
          "thread caches", atomic_load(&snapshots), blocks_read,
          s.thread_caches);
}

int main(int argc, char **argv)
{
  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "test_malloc_stats_print");
  AO_malloc_enable_mmap();
  phase_quiescent();
  phase_handlers();
  return 0;
}
