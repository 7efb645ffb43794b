/* SPDX-License-Identifier: MIT */
/* OS memory (static heap, mmap/munmap) and thread ids: the only system calls made. */
#ifndef _DEFAULT_SOURCE
# define _DEFAULT_SOURCE 1   /* MAP_ANONYMOUS */
#endif
#include "internal.h"

#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
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

static void mapped_unit_set(const void *p, int on)
{
  uintptr_t u = (uintptr_t)p >> SEGMENT_SHIFT;
  volatile AO_t *w = &ao_gpl_mapped_units[u / BITMAP_BITS];
  AO_t bit = (AO_t)1 << (u % BITMAP_BITS), old;

  do
    old = AO_load(w);
  while (!AO_compare_and_swap_full(w, old, on ? old | bit : old & ~bit));
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
  if (((uintptr_t)start >> SEGMENT_SHIFT) >= MAPPED_UNITS) {
    munmap(start, size);               /* beyond the bitmap: unusable */
    start = NULL;
  } else if (align >= SEGMENT_SIZE) {
    mapped_unit_set(start, 1);
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
  errno = saved_errno;
}

/* getauxval only reads the auxiliary vector saved at start-up: no lock,
 * no allocation, so it is fine on a signal path. */
int os_release(void *p, size_t size)
{
  int saved_errno = errno;
  uintptr_t page = (uintptr_t)getauxval(AT_PAGESZ);
  uintptr_t start, end;
  int done = 0;

  if (page == 0 || (page & (page - 1)) != 0)
    page = 4096;
  start = ((uintptr_t)p + page - 1) & ~(page - 1);
  end = ((uintptr_t)p + size) & ~(page - 1);
  if (end > start)
    done = madvise((void *)start, end - start, MADV_DONTNEED) == 0;
  errno = saved_errno;
  return done;
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
