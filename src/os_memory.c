/* SPDX-License-Identifier: MIT */
/* OS memory (static heap, mmap/munmap) and thread ids: the only system calls made. */
#ifndef _DEFAULT_SOURCE
# define _DEFAULT_SOURCE 1   /* MAP_ANONYMOUS */
#endif
#ifndef _GNU_SOURCE
# define _GNU_SOURCE 1       /* mremap, MREMAP_FIXED */
#endif
#include "internal.h"
#include "atomic_ops_malloc.h"   /* struct AO_malloc_stats */

#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The static heap lives in .bss: no page of it is touched, and so none is
 * resident, until a span is carved from it.  Page alignment lets the chunk
 * provider treat it like a segment. */
char ao_gpl_static_heap[AO_GPL_STATIC_HEAP_SIZE]
    __attribute__((__aligned__(PAGE_SIZE)));

/* One bit per SEGMENT_SIZE unit of the address space, set while one of our
 * mappings starts there.  AO_free tests it before it reads anything at a
 * pointer's segment header, so a pointer that never came from here is
 * reported instead of followed. */
volatile AO_t ao_gpl_mapped_units[MAPPED_UNITS / BITMAP_BITS];
/* The units of those mappings that are segments: set once the segment's
 * header is written, never cleared (segments stay mapped for good).  This
 * is the bit AO_free's fast path tests: a direct large mapping is unmapped
 * or moved by its owner at any time, so its unit bit does not make its
 * header safe to read for anyone else. */
volatile AO_t ao_gpl_segment_units[MAPPED_UNITS / BITMAP_BITS];

static void unit_set(volatile AO_t *bitmap, const void *p, int on)
{
  uintptr_t u = (uintptr_t)p >> SEGMENT_SHIFT;
  volatile AO_t *w = &bitmap[u / BITMAP_BITS];
  AO_t bit = (AO_t)1 << (u % BITMAP_BITS), old;

  do
    old = AO_load(w);
  while (!AO_compare_and_swap_full(w, old, on ? old | bit : old & ~bit));
}

static void mapped_unit_set(const void *p, int on)
{
  unit_set(ao_gpl_mapped_units, p, on);
}

/* The full CAS orders the header's stores before the bit: whoever gets a
 * pointer into the segment through later synchronisation reads them. */
void os_mark_segment(void *p)
{
  unit_set(ao_gpl_segment_units, p, 1);
}

/* Set once by AO_malloc_enable_mmap(); until then no mmap call is made.
 * The malloc replacement (libaomalloc) starts with it set, by a static
 * initializer: a process's heap outgrows any static heap, and its first
 * calls (inside the dynamic loader, before any constructor) must not
 * depend on an initialisation step. */
#ifdef AO_GPL_MALLOC_REPLACEMENT
static volatile AO_t mmap_enabled = 1;
#else
static volatile AO_t mmap_enabled;
#endif

void os_enable_mmap(void)
{
  AO_store_release(&mmap_enabled, 1);
}

int os_mmap_enabled(void)
{
  return AO_load_acquire(&mmap_enabled) != 0;
}

/* Statistics (os_stats): one atomic add next to each system call, which
 * costs far more.  mapped_bytes is the live total of our mappings; the
 * head and tail trimmed off an over-map were never ours to use, so they
 * count as munmap calls but not as released bytes. */
static volatile AO_t mmap_calls, munmap_calls, madvise_calls, mremap_calls;
static volatile AO_t mapped_bytes, released_bytes;

static void count(volatile AO_t *counter, size_t n)
{
  AO_fetch_and_add(counter, (AO_t)n);
}

/* Over-map by align bytes, then trim both ends: two extra munmap calls,
 * paid only when a segment or a large object is created.  errno is kept,
 * since these calls may run inside a signal handler. */
void *os_map_aligned(size_t size, size_t align)
{
  int saved_errno = errno;
  char *raw, *start;
  size_t head, tail;

  if (!os_mmap_enabled() || size > SIZE_MAX - align)
    return NULL;
  raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  count(&mmap_calls, 1);
  if (raw == MAP_FAILED) {
    errno = saved_errno;
    return NULL;
  }
  start = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
  head = (size_t)(start - raw);
  tail = align - head;
  if (head != 0)
    munmap(raw, head);
  if (tail != 0)
    munmap(start + size, tail);
  count(&munmap_calls, (head != 0) + (tail != 0));
  if (((uintptr_t)start >> SEGMENT_SHIFT) >= MAPPED_UNITS) {
    munmap(start, size);               /* beyond the bitmap: unusable */
    count(&munmap_calls, 1);
    start = NULL;
  } else {
    if (align >= SEGMENT_SIZE)
      mapped_unit_set(start, 1);
    count(&mapped_bytes, size);
  }
  errno = saved_errno;
  return start;
}

/* The bit goes first: once the range is unmapped, another thread's new
 * mapping may land there and set it again. */
void os_unmap(void *p, size_t size)
{
  int saved_errno = errno;

  if (((uintptr_t)p & (SEGMENT_SIZE - 1)) == 0)
    mapped_unit_set(p, 0);
  munmap(p, size);
  count(&munmap_calls, 1);
  count(&mapped_bytes, -size);
  count(&released_bytes, size);
  errno = saved_errno;
}

/* Part of a mapping (never its start, so no unit bit is concerned). */
void os_unmap_tail(void *p, size_t size)
{
  int saved_errno = errno;

  munmap(p, size);
  count(&munmap_calls, 1);
  count(&mapped_bytes, -size);
  count(&released_bytes, size);
  errno = saved_errno;
}

/* No MREMAP_MAYMOVE: the kernel extends the mapping only where the
 * address space after it is free, so p and its unit bit stay valid. */
int os_grow_in_place(void *p, size_t old_size, size_t new_size)
{
  int saved_errno = errno;
  int done = mremap(p, old_size, new_size, 0) != MAP_FAILED;

  count(&mremap_calls, 1);
  if (done)
    count(&mapped_bytes, new_size - old_size);
  errno = saved_errno;
  return done;
}

/* The kernel moves p's pages onto the start of q, a fresh aligned
 * mapping of ours (os_map_aligned, its unit bit set), without a copy; the
 * rest of q stays fresh zero pages.  p's bit is cleared before the move,
 * as in os_unmap: once p's range is free, another thread's mapping may
 * land there and set the bit again.  Only the owner of p looks at it
 * meanwhile.  On failure p is as it was and q still the caller's. */
int os_move_onto(void *p, size_t old_size, void *q)
{
  int saved_errno = errno, done;

  mapped_unit_set(p, 0);
  count(&mremap_calls, 1);
  done = mremap(p, old_size, old_size, MREMAP_MAYMOVE | MREMAP_FIXED, q)
         != MAP_FAILED;
  if (done)
    count(&mapped_bytes, -old_size);   /* q's bytes were counted whole */
  else
    mapped_unit_set(p, 1);
  errno = saved_errno;
  return done;
}

/* Transparent huge pages for a large block's mapping past its first
 * 2 MiB: each 2 MiB of it is then one page fault instead of 512.  Under
 * a hypervisor a 4 KiB fault costs microseconds, so a program cycling big
 * blocks spends more in faults than in its own work (mimalloc-bench
 * malloc-large: 3x the time).  The first 2 MiB (the header's) stay small
 * pages, so a block never touched costs one small page, not a huge one.
 * Only where base pages are 4 KiB: with 64 KiB pages a huge page is 512
 * MiB.  A hint: where THP is off or unsupported nothing changes, and a
 * failure is ignored. */
void os_advise_huge(void *p, size_t size)
{
#ifdef MADV_HUGEPAGE
  int saved_errno = errno;

  if (size >= HUGE_ADVICE_MIN && getauxval(AT_PAGESZ) == 4096) {
    madvise((char *)p + HUGE_PAGE_SIZE, size - HUGE_PAGE_SIZE,
            MADV_HUGEPAGE);
    count(&madvise_calls, 1);
  }
  errno = saved_errno;
#else
  (void)p;
  (void)size;
#endif
}

/* Plain zeroed pages for the allocator's own tables: no alignment, no
 * unit bit (nothing of a table is ever looked up by address). */
void *os_map_table(size_t size)
{
  int saved_errno = errno;
  void *p;

  if (!os_mmap_enabled())
    return NULL;
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
           -1, 0);
  count(&mmap_calls, 1);
  if (p == MAP_FAILED)
    p = NULL;
  else
    count(&mapped_bytes, size);
  errno = saved_errno;
  return p;
}

void os_unmap_table(void *p, size_t size)
{
  os_unmap_tail(p, size);   /* the same accounting, and no unit bit */
}

/* getauxval only reads the auxiliary vector saved at start-up: no lock,
 * no allocation, so it is fine on a signal path.  Only whole OS pages are
 * dropped (an OS page may be 16 or 64 KiB), and madvise may fail (EINVAL
 * on mlock'ed pages, a seccomp filter): *dropped tells the caller exactly
 * which bytes now read as zeros, so that nothing else is believed zero. */
int os_release(void *p, size_t size, struct os_range *dropped)
{
  int saved_errno = errno;
  uintptr_t page = (uintptr_t)getauxval(AT_PAGESZ);
  uintptr_t start, end;
  int done = 0;

  if (page == 0 || (page & (page - 1)) != 0)
    page = 4096;
  start = ((uintptr_t)p + page - 1) & ~(page - 1);
  end = ((uintptr_t)p + size) & ~(page - 1);
  if (end > start) {
    done = madvise((void *)start, end - start, MADV_DONTNEED) == 0;
    count(&madvise_calls, 1);
    if (done)
      count(&released_bytes, end - start);
  }
  if (dropped != NULL) {
    dropped->start = done ? start : 0;
    dropped->end = done ? end : 0;
  }
  errno = saved_errno;
  return done;
}

void os_stats(struct AO_malloc_stats *st)
{
  st->mapped += AO_GPL_STATIC_HEAP_SIZE + (size_t)AO_load(&mapped_bytes);
  st->released_total += (size_t)AO_load(&released_bytes);
  st->mmap_calls += (unsigned long)AO_load(&mmap_calls);
  st->munmap_calls += (unsigned long)AO_load(&munmap_calls);
  st->madvise_calls += (unsigned long)AO_load(&madvise_calls);
  st->mremap_calls += (unsigned long)AO_load(&mremap_calls);
}

/* The monotonic clock in milliseconds, for the decay of free memory.
 * clock_gettime is async-signal-safe (POSIX) and, through the vDSO, no
 * system call at all on the usual targets.  The coarse clock (a few ms of
 * resolution, plenty for steps of 500 ms) costs a quarter of the precise
 * one on a VM whose clock source is not the TSC. */
uint64_t os_now_ms(void)
{
  int saved_errno = errno;
  struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
#endif
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    ts.tv_sec = 0, ts.tv_nsec = 0;
  errno = saved_errno;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Raw system calls: gettid() needs glibc 2.30, and neither may be cached
 * in user space across a fork whose handlers did not run. */
long os_getpid(void)
{
  return (long)syscall(SYS_getpid);
}

long os_gettid(void)
{
  return (long)syscall(SYS_gettid);
}

/* Signal 0 checks existence only.  ESRCH is the one proof of death:
 * EPERM or anything else means "maybe alive".  tkill, not tgkill: ESRCH
 * then says that no task has this tid at all, whatever process the
 * caller believes it is in (a fork inside a handler may have changed that
 * under a scan), and a task sharing our memory outside our thread group
 * (clone without CLONE_THREAD) reads as alive.  A reused tid reads as
 * alive too: that only delays a reclaim. */
int os_thread_gone(long tid)
{
  int saved = errno, gone;

  gone = syscall(SYS_tkill, tid, 0) != 0 && errno == ESRCH;
  errno = saved;
  return gone;
}

/* sigprocmask is the calling thread's mask on Linux (as pthread_sigmask,
 * but without libpthread) and async-signal-safe.  Every signal the kernel
 * lets us block is blocked while fn runs, so no handler runs on this thread
 * in between. */
int os_without_signals(int (*fn)(void *), void *arg)
{
  int saved_errno = errno, r;
  sigset_t all, old;

  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  r = fn(arg);
  sigprocmask(SIG_SETMASK, &old, NULL);
  errno = saved_errno;
  return r;
}

/* Let another thread run: a yield at first, then short sleeps, so that a
 * waiter on a descheduled thread does not burn its time slice.  The sleep
 * is the raw system call: libc's nanosleep is a cancellation point, and
 * AO_malloc must not be one (a pthread_cancel would end the thread inside
 * the allocator, even inside a handler). */
void os_pause(unsigned round)
{
  int saved_errno = errno;
  struct timespec ts = { 0, 50000 };

  if (round < 64)
    sched_yield();
  else
    syscall(SYS_nanosleep, &ts, NULL);
  errno = saved_errno;
}
