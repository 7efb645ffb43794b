#!/bin/sh
# SPDX-License-Identifier: MIT
# libaomalloc exports exactly the malloc names and the AO_* malloc API, and imports nothing that breaks async-signal safety.
#
# Checks on $(top_builddir)/.libs/libaomalloc.so (exit 77 when it was not
# built, e.g. --disable-shared):
#  - nm -D --defined-only lists exactly $expected below (no AO_stack_*:
#    AO_stack stays in libatomic_ops_gpl);
#  - imports: no out-of-line atomics, no locks or thread-specific data but
#    pthread_key_create/pthread_setspecific (see check_exports.sh), no
#    __tls_get_addr, no stdio but fwrite (malloc_info writes to the caller's
#    stream, outside every signal path); the malloc family cannot be
#    imported since the library defines it (checked all the same);
#  - SONAME libaomalloc.so.1, no NEEDED libatomic_ops_gpl, BIND_NOW (no
#    lazy resolver on a first call from a handler) and NODELETE.
set -u

me=check_exports_aomalloc
top=${top_builddir:-..}
lib=$top/.libs/libaomalloc.so

if [ ! -f "$lib" ]; then
  echo "$me: SKIP: $lib not built" >&2
  exit 77
fi
. "$(dirname "$0")/exports_common.sh"

# C++ operators: size_t mangles as m (unsigned long) on LP64, j on ILP32.
z=m
readelf -h "$lib" | grep -q 'Class:.*ELF32' && z=j
expected=$(LC_ALL=C sort <<EOF_LIST
AO_aligned_alloc
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
_ZdaPv
_ZdaPv$z
_ZdlPv
_ZdlPv$z
_Zna$z
_Zna${z}RKSt9nothrow_t
_Znw$z
_Znw${z}RKSt9nothrow_t
__libc_calloc
__libc_free
__libc_malloc
__libc_memalign
__libc_pvalloc
__libc_realloc
__libc_valloc
aligned_alloc
calloc
cfree
free
free_aligned_sized
free_sized
mallinfo
mallinfo2
malloc
malloc_info
malloc_stats
malloc_trim
malloc_usable_size
mallopt
memalign
posix_memalign
pvalloc
realloc
reallocarray
valloc
EOF_LIST
)

defined=$(dynamic_symbols "$lib" --defined-only)
need_symbols "$defined" "-D --defined-only $lib"
compare_exports ""

undefined=$(dynamic_symbols "$lib" --undefined-only)
need_symbols "$undefined" "-D --undefined-only $lib"
check_forbidden_common
check_forbidden '^(__libc_)?(malloc|calloc|realloc|reallocarray|free|posix_memalign|aligned_alloc|memalign|valloc|pvalloc)$' \
  'the malloc family must be our own'
check_forbidden '^(.*printf(_chk)?|puts|fputs|fputc|putc|putchar|fread|fflush|fopen|fopen64|fdopen|fclose|perror|setvbuf|stdin|stdout|stderr|_IO_.*)$' \
  'stdio is not async-signal-safe (only malloc_info may fwrite)'

dyn=$(readelf -d "$lib")
soname=$(printf '%s\n' "$dyn" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = libaomalloc.so.1 ] || fail "SONAME is '$soname', expected libaomalloc.so.1"
if printf '%s\n' "$dyn" | grep -q 'NEEDED.*libatomic_ops_gpl'; then
  fail "depends on libatomic_ops_gpl (it must carry its own heap)"
fi
printf '%s\n' "$dyn" | grep -q 'FLAGS.*NOW' || fail "not linked with -z now"
printf '%s\n' "$dyn" | grep -q 'FLAGS_1.*NODELETE' || fail "not linked with -z nodelete"

if [ "$status" -eq 0 ]; then
  echo "$me: ok: exports the malloc names and AO_* malloc API ($(printf '%s\n' "$defined" | wc -l) symbols); imports:" $undefined >&2
fi
exit $status
