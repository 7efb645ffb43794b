#!/bin/sh
# SPDX-License-Identifier: MIT
# The libraries export exactly the public API and import nothing that breaks async-signal safety.
#
# Checks on $(top_builddir)/.libs/libatomic_ops_gpl.a (skipped when no
# static library was built):
#  - every defined global symbol (functions, data, read-only data, weak and
#    TLS symbols) is a public AO_* name or carries the library's prefix
#    ao_gpl_ (src/symbols.h renames the internal names), so that a program
#    linked statically may use any other name for its own globals.
# Checks on $(top_builddir)/.libs/libatomic_ops_gpl.so (skipped when no
# shared library was built, e.g. --disable-shared):
#  - nm -D --defined-only lists exactly the public functions (the upstream ones, AO_malloc_trim and
#    the malloc-family extensions), plus
#    (optionally, both or neither) the two upstream 7.6 ABI entry points
#    that binaries built with 7.6's almost-lock-free headers call;
#  - the imports contain no __atomic_*/__sync_* helper (an out-of-line,
#    possibly lock-based, atomic), no pthread lock or thread-specific data,
#    no malloc family, no stdio, and no __tls_get_addr (glibc may call
#    malloc inside it on a thread's first access to a dlopen'ed library's
#    TLS, which is not async-signal-safe);
#  - readelf -d shows SONAME libatomic_ops_gpl.so.1.
# Exit 77 when neither library exists.
set -u

me=check_exports
top=${top_builddir:-..}
lib=$top/.libs/libatomic_ops_gpl.so
archive=$top/.libs/libatomic_ops_gpl.a

if [ ! -f "$lib" ] && [ ! -f "$archive" ]; then
  echo "$me: SKIP: neither $lib nor $archive exists" >&2
  exit 77
fi
. "$(dirname "$0")/exports_common.sh"

expected='AO_aligned_alloc
AO_calloc
AO_free
AO_malloc
AO_malloc_enable_mmap
AO_malloc_stats
AO_malloc_stats_print
AO_malloc_trim
AO_malloc_usable_size
AO_posix_memalign
AO_realloc
AO_stack_head_ptr
AO_stack_init
AO_stack_is_lock_free
AO_stack_next_ptr
AO_stack_next_ptr_d
AO_stack_pop_acquire
AO_stack_push_release'

compat='AO_stack_pop_explicit_aux_acquire
AO_stack_push_explicit_aux_release'

if [ -f "$archive" ]; then
  # "nm -g --defined-only" prints "addr type name" per symbol, plus member
  # headers ("x.o:") and blank lines, which have fewer fields.
  globals=$(nm -g --defined-only "$archive" | awk 'NF >= 3 { print $3 }' \
            | LC_ALL=C sort -u) || {
    fail "nm -g --defined-only $archive failed"
    exit 1
  }
  allowed=$(printf '%s\n%s\n' "$expected" "$compat")
  # The compiler's own globals are not ours: the sanitizers' (ASan's
  # __odr_asan.<name> ODR indicators) and i386's PIC thunks
  # (__x86.get_pc_thunk.<reg>, hidden, merged across objects).
  unprefixed=$(printf '%s\n' "$globals" | grep -v '^ao_gpl_' \
               | grep -v -E '^__(odr_asan[._]|asan_|tsan_|ubsan_|sancov_|x86\.get_pc_thunk\.)' \
               | while read -r s; do
                   [ -n "$s" ] || continue
                   printf '%s\n' "$allowed" | grep -qx "$s" || printf ' %s' "$s"
                 done)
  if [ -n "$unprefixed" ]; then
    fail "$archive defines global symbols that are neither public API nor prefixed ao_gpl_ (add them to src/symbols.h):$unprefixed"
  else
    echo "$me: ok: $archive defines only public AO_* and ao_gpl_* globals" >&2
  fi
fi

if [ ! -f "$lib" ]; then
  echo "$me: no shared library at $lib (built with --disable-shared?): its checks skipped" >&2
  exit $status
fi

defined=$(dynamic_symbols "$lib" --defined-only)
need_symbols "$defined" "-D --defined-only $lib"
with_compat=$(printf '%s\n%s\n' "$expected" "$compat" | LC_ALL=C sort)
if [ "$defined" = "$with_compat" ]; then
  expected=$with_compat
fi
compare_exports " from the public API"

undefined=$(dynamic_symbols "$lib" --undefined-only)
need_symbols "$undefined" "-D --undefined-only $lib"
check_forbidden_common
check_forbidden '^(__libc_)?(malloc|calloc|realloc|reallocarray|free|posix_memalign|aligned_alloc|memalign|valloc|pvalloc)$' \
  'the system allocator is not async-signal-safe'
check_forbidden '^(.*printf(_chk)?|puts|fputs|fputc|putc|putchar|fwrite|fread|fflush|fopen|fopen64|fdopen|fclose|perror|setvbuf|stdin|stdout|stderr|_IO_.*)$' \
  'stdio is not async-signal-safe'

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" != "libatomic_ops_gpl.so.1" ]; then
  fail "SONAME is '${soname}', expected libatomic_ops_gpl.so.1"
fi

if [ "$status" -eq 0 ]; then
  echo "$me: ok: exports exactly the public API; imports:" $undefined >&2
fi
exit $status
