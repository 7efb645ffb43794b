/* SPDX-License-Identifier: MIT */
/* Large blocks keep working when a seccomp filter refuses process_vm_readv (the fault-proof header read): the plain read is used. */
#include "test_util.h"
#include "atomic_ops_malloc.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/uio.h>

/* EPERM for process_vm_readv, everything else allowed (any architecture:
 * only the number is compared, and it is this build's own). */
static int refuse_vm_readv(void)
{
#ifdef SYS_process_vm_readv
  struct sock_filter code[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
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
  char local[16], remote[16] = "x";
  struct iovec l = { local, sizeof(local) }, r = { remote, sizeof(remote) };
  char *p, *q;
  unsigned i;

  (void)argc;
  tu_init(argv[0]);
  tu_watchdog(60, "large blocks without process_vm_readv");
  if (!refuse_vm_readv())
    tu_skip("cannot install a seccomp filter here");
  TU_CHECK(syscall(SYS_process_vm_readv, (long)getpid(), &l, 1UL, &r, 1UL, 0UL)
           == -1 && errno == EPERM, "the filter does not refuse process_vm_readv");
  AO_malloc_enable_mmap();
  for (i = 0; i < 64; i++) {
    size_t n = ((size_t)1 << 20) + i * 4096;

    p = AO_malloc(n);
    TU_CHECK(p != NULL, "AO_malloc(%zu)", n);
    memset(p, (int)i, n);
    TU_CHECK(AO_malloc_usable_size(p) >= n, "usable size of %zu bytes", n);
    TU_CHECK(AO_malloc_usable_size(p + 4096) == 0, "usable size inside");
    q = AO_realloc(p, 2 * n);
    TU_CHECK(q != NULL && q[0] == (char)i && q[n - 1] == (char)i,
             "AO_realloc(%zu) kept the bytes", 2 * n);
    AO_free(q);
  }
  AO_malloc_trim();
  tu_info("process_vm_readv refused (EPERM): 64 large blocks allocated, sized, "
          "grown and freed through the direct header read: ok");
  return 0;
}
