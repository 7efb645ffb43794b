/* SPDX-License-Identifier: MIT */
/* Large blocks need no process_vm_readv: a seccomp filter that kills on it (as sandboxes do) leaves malloc/realloc/free/usable_size working. */
#include "test_util.h"
#include "atomic_ops_malloc.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>

#ifndef SECCOMP_RET_KILL_PROCESS
# define SECCOMP_RET_KILL_PROCESS SECCOMP_RET_KILL
#endif

/* Kill the process on process_vm_readv, allow everything else (only the
 * number is compared, and it is this build's own).  A sandbox with an
 * allow list (systemd SystemCallFilter=@system-service, OpenSSH) does the
 * same to every call it does not list. */
static int kill_on_vm_readv(void)
{
#ifdef SYS_process_vm_readv
  struct sock_filter code[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { (unsigned short)(sizeof(code) / sizeof(code[0])),
                             code };

  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
         && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
  return 0;
#endif
}

int main(int argc, char **argv)
{
  char *p, *q, *big[8];
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "large blocks under a seccomp filter");
  if (!kill_on_vm_readv())
    tu_skip("cannot install a seccomp filter here");
  AO_malloc_enable_mmap();
  for (i = 0; i < 64; i++) {
    size_t n = ((size_t)1 << 20) + i * 4096;

    p = AO_malloc(n);
    TU_CHECK(p != NULL, "AO_malloc(%zu)", n);
    memset(p, (int)i, n);
    TU_CHECK(AO_malloc_usable_size(p) >= n, "usable size of %zu bytes", n);
    TU_CHECK(AO_malloc_usable_size(p + 4096) == 0, "usable size inside");
    q = AO_realloc(p, 2 * n);            /* grow: in place or moved */
    TU_CHECK(q != NULL && q[0] == (char)i && q[n - 1] == (char)i,
             "AO_realloc(%zu) kept the bytes", 2 * n);
    p = AO_realloc(q, n / 2);            /* shrink in place */
    TU_CHECK(p != NULL && p[0] == (char)i && p[n / 2 - 1] == (char)i,
             "AO_realloc(%zu) shrank", n / 2);
    TU_CHECK(AO_malloc_usable_size(p) >= n / 2, "usable size after shrink");
    AO_free(p);
  }
  /* Several live at once (and the cache refilled, then trimmed). */
  for (i = 0; i < 8; i++) {
    big[i] = AO_aligned_alloc((size_t)4096 << i, ((size_t)3 << 20) + i);
    TU_CHECK(big[i] != NULL, "AO_aligned_alloc #%u", i);
  }
  for (i = 0; i < 8; i++) {
    TU_CHECK(AO_malloc_usable_size(big[i]) >= ((size_t)3 << 20) + i,
             "usable size of block #%u", i);
    AO_free(big[i]);
  }
  AO_malloc_trim();
  tu_info("process_vm_readv kills the process: 64 large blocks allocated, "
          "sized, grown, shrunk and freed, 8 aligned ones too: ok");
  return 0;
}
