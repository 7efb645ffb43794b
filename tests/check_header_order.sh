#!/bin/sh
# SPDX-License-Identifier: MIT
# Each public header compiles alone and in either order with the other and with upstream's headers.
#
# A client may get upstream's atomic_ops_stack.h or atomic_ops_malloc.h from
# another include path (they share our include guards AO_STACK_H and
# AO_MALLOC_H), so whichever header comes second may find the first one's
# guard already defined and must still compile on its own definitions.
# Compiled (syntax only) as C11 and, when a native C++ compiler is found,
# as C++: each of our headers alone, and every ordered pair of {our stack,
# our malloc, upstream stack, upstream malloc}; upstream's only when
# configure found them (AO_UPSTREAM_INCLUDEDIR).  The translation unit then
# uses what a client of the pair uses: AO_stack_t, AO_malloc, AO_free.
#
# Environment (from tests/Makefile.am): CC, CFLAGS_HDR (C only),
# CPPFLAGS_HDR (the atomic_ops -I flags and CPPFLAGS), top_builddir,
# top_srcdir, AO_UPSTREAM_INCLUDEDIR,
# host_triplet, build_triplet.  AO_TEST_CXX overrides the C++ compiler.
set -u

me=check_header_order
top=${top_builddir:-..}
srctop=${top_srcdir:-$top}
cc=${CC:-cc}
cppflags=${CPPFLAGS_HDR:-}
cflags=${CFLAGS_HDR:-}
updir=${AO_UPSTREAM_INCLUDEDIR:-}
tmp=${TMPDIR:-/tmp}/$me.$$
mkdir -p "$tmp" || exit 99
trap 'rm -rf "$tmp"' EXIT

# Our headers by absolute file name, found the way an installed client finds
# them: atomic_ops_stack.h is generated in the build tree.
ours_stack=$(cd "$top/include" && pwd)/atomic_ops_stack.h
ours_malloc=$(cd "$srctop/include" && pwd)/atomic_ops_malloc.h
incs="-I$top/include -I$srctop/include"

headers="OS OM"
if [ -n "$updir" ] && [ -f "$updir/atomic_ops_stack.h" ] \
   && [ -f "$updir/atomic_ops_malloc.h" ]; then
  headers="OS OM US UM"
else
  echo "$me: upstream headers not found: checking our own headers only" >&2
fi
path_of() {
  case $1 in
    OS) echo "$ours_stack" ;;
    OM) echo "$ours_malloc" ;;
    US) echo "$updir/atomic_ops_stack.h" ;;
    UM) echo "$updir/atomic_ops_malloc.h" ;;
  esac
}
name_of() {
  case $1 in
    OS) echo "our atomic_ops_stack.h" ;;
    OM) echo "our atomic_ops_malloc.h" ;;
    US) echo "upstream's atomic_ops_stack.h" ;;
    UM) echo "upstream's atomic_ops_malloc.h" ;;
  esac
}

cxx=${AO_TEST_CXX:-}
if [ -z "$cxx" ] && [ "${host_triplet:-x}" = "${build_triplet:-x}" ]; then
  for c in g++ clang++ c++; do
    if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
  done
fi

status=0
checked=0
# $1..: header ids in include order.
check() {
  src=$tmp/tu.c
  label=
  : > "$src"
  for h in "$@"; do
    printf '#include "%s"\n' "$(path_of "$h")" >> "$src"
    label="$label${label:+, then }$(name_of "$h")"
  done
  cat >> "$src" <<'TU'
#ifdef AO_MALLOC_H
void *client_use_malloc(void);
void *client_use_malloc(void)
{
  void *p = AO_malloc(16);
  AO_free(p);
  return p;
}
#endif
AO_stack_t client_stack = AO_STACK_INITIALIZER;
TU
  if ! $cc $cflags $cppflags $incs -std=c11 -Wall -Wextra -Werror -fsyntax-only \
       -x c "$src" > "$tmp/out" 2>&1; then
    echo "$me: FAIL (C): $label:" >&2
    sed 's/^/  /' "$tmp/out" | head -n 8 >&2
    status=1
  fi
  if [ -n "$cxx" ] && ! $cxx $cppflags $incs -Wall -Wextra -Werror \
       -fsyntax-only -x c++ "$src" > "$tmp/out" 2>&1; then
    echo "$me: FAIL (C++): $label:" >&2
    sed 's/^/  /' "$tmp/out" | head -n 8 >&2
    status=1
  fi
  checked=$((checked + 1))
}

check OS
check OM
for a in $headers; do
  for b in $headers; do
    [ "$a" = "$b" ] || check "$a" "$b"
  done
done

if [ "$status" -eq 0 ]; then
  echo "$me: ok: $checked header sets compile as C${cxx:+ and C++ ($cxx)}" >&2
fi
exit $status
