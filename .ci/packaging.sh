#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# CI step: packaging checks, one per behaviour (issue items 11-15): a CMake
# project written for upstream finds and links this library; docs are
# installed and the tarball holds every file the READMEs link to; the
# private layout installs beside Debian's libatomic-ops-dev and clients
# still get this library; the README quick start works as root and as a
# sudo user; man pages, static linking, library version, bug address and
# the options table.  Run from the repository top as root (or with
# passwordless sudo): bash .ci/packaging.sh.  Last line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
unset VERBOSE

if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo -n); fi
"${as_root[@]}" apt-get update >/dev/null 2>&1 \
  || echo "packaging: apt-get update reported errors; installing anyway"
"${as_root[@]}" apt-get install -y --no-install-recommends gcc libc6-dev \
  make autoconf automake libtool pkg-config libatomic-ops-dev cmake sudo \
  man-db binutils >/dev/null 2>&1 \
  || echo "packaging: apt-get install failed; trying with what is there"

rm -rf _build-packaging && mkdir _build-packaging || exit 1
. .ci/lib.sh
ci_source_top _build-packaging || { echo "0 passed, 1 failed"; exit 1; }
top=$CI_TOP
B=$repo/_build-packaging
ma=$(gcc -print-multiarch 2>/dev/null)
libsub=lib${ma:+/$ma}

# The quick-start copies live outside the repository: the unprivileged user
# must own its copy and reach it.
qs=$(mktemp -d /tmp/ao-packaging.XXXXXX) || exit 1
chmod 755 "$qs"
qs_user=aoquickstart
cleanup() {
  "${as_root[@]}" rm -f /etc/sudoers.d/ao-packaging-quickstart
  if [ -f "$qs/created-user" ]; then
    "${as_root[@]}" userdel -r "$qs_user" >/dev/null 2>&1
  fi
  "${as_root[@]}" rm -rf "$qs"
}
trap cleanup EXIT

passed=0
failed=0
# run_check NAME COMMAND...: one check; its output goes to $B/NAME.log and
# is shown when it fails.  Each runs in a subshell (some change directory).
run_check() {
  local name=$1 t0=$SECONDS
  shift
  if ("$@") >"$B/$name.log" 2>&1; then
    passed=$((passed + 1))
    echo "PASS: $name ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1))
    echo "FAIL: $name ($((SECONDS - t0)) s)"
    tail -n 25 "$B/$name.log" | sed 's/^/    /'
  fi
}

# A tiny client that only this library satisfies: AO_malloc_trim is not in
# upstream's header nor in its library.
cat >"$B/client.c" <<'EOF'
#include <stdio.h>
#include <atomic_ops_malloc.h>
#include <atomic_ops_stack.h>
#ifndef AO_HAVE_malloc_trim
# error "this is not atomic_ops_gpl's atomic_ops_malloc.h"
#endif
int main(void)
{
  static AO_stack_t stack = AO_STACK_INITIALIZER;
  void *p;

  AO_malloc_enable_mmap();
  p = AO_malloc(48);
  if (p == NULL)
    return 1;
  AO_stack_push(&stack, p);
  if ((void *)AO_stack_pop(&stack) != p)
    return 2;
  AO_free(p);
  AO_malloc_trim();
  puts("client: AO_malloc, AO_stack and AO_malloc_trim work");
  return 0;
}
EOF

# ---- Builds shared by the checks -------------------------------------------
# A: the default layout, installed into a scratch prefix, plus "make dist".
build_default() {
  mkdir -p "$B/a" && cd "$B/a" \
    && "$top/configure" --prefix="$B/a-inst" \
    && make -j2 && make install && make dist
}
# B: the private layout as a distribution would build it (--prefix=/usr,
# multiarch libdir), staged with DESTDIR.
build_private() {
  mkdir -p "$B/b" && cd "$B/b" \
    && "$top/configure" --prefix=/usr --libdir="/usr/$libsub" \
         --enable-private-layout \
    && make -j2 && make install DESTDIR="$B/b-stage"
}
(build_default) >"$B/build-default.log" 2>&1 \
  || { echo "packaging: the default-layout build failed:"; tail -n 20 "$B/build-default.log"; }
(build_private) >"$B/build-private.log" 2>&1 \
  || { echo "packaging: the private-layout build failed:"; tail -n 20 "$B/build-private.log"; }
prefix=$B/a-inst

# ---- 11. CMake ---------------------------------------------------------------
# cmake_run DIR PREFIX_PATH: configure, build and run a CMake project written
# for upstream; print ldd's view of the client.
cmake_run() {
  rm -rf "$1" && mkdir -p "$1/src" || return 1
  cp "$B/client.c" "$1/src/client.c"
  cat >"$1/src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.5)
project(upstream_client C)
find_package(Atomic_ops 7.6 CONFIG REQUIRED)
add_executable(client client.c)
target_link_libraries(client PRIVATE Atomic_ops::atomic_ops_gpl Atomic_ops::atomic_ops)
EOF
  cmake -S "$1/src" -B "$1/build" -DCMAKE_PREFIX_PATH="$2" \
    && cmake --build "$1/build" -- VERBOSE=1 \
    && "$1/build/client" && ldd "$1/build/client"
}
cmake_upstream_project_links_ours() {
  cmake_run "$B/cmake-default" "$prefix" >"$B/cmake-default.out" 2>&1
  local rc=$?
  cat "$B/cmake-default.out"
  [ "$rc" -eq 0 ] || return 1
  grep -q "libatomic_ops_gpl.so.1 => $prefix/lib/libatomic_ops_gpl.so.1" \
    "$B/cmake-default.out" \
    || { echo "the client does not load $prefix/lib/libatomic_ops_gpl.so.1"; return 1; }
}
run_check cmake_upstream_project_links_ours cmake_upstream_project_links_ours

# ---- 12. Docs and tarball ----------------------------------------------------
docs_installed_in_docdir() {
  local f
  for f in README.md COPYING; do
    cmp "$top/$f" "$prefix/share/doc/atomic_ops_gpl/$f" || return 1
  done
  echo "README.md and COPYING are in $prefix/share/doc/atomic_ops_gpl"
}
run_check docs_installed_in_docdir docs_installed_in_docdir

# Every relative link target of README.md and bench/README.md, as found in
# the tarball itself, must be in the tarball.
tarball_has_every_linked_file() {
  local tarball x=$B/dist-x md target missing=0 n=0
  tarball=$(ls "$B"/a/atomic_ops_gpl-*.tar.gz 2>/dev/null | head -n 1)
  [ -n "$tarball" ] || { echo "make dist made no tarball"; return 1; }
  rm -rf "$x" && mkdir "$x" && tar -xzf "$tarball" -C "$x" || return 1
  x=$(echo "$x"/atomic_ops_gpl-*)
  for md in README.md bench/README.md; do
    [ -f "$x/$md" ] || { echo "missing from the tarball: $md"; missing=1; continue; }
    # Inline links and images "](target)", and reference definitions.
    for target in $( { grep -o '](\([^)]*\))' "$x/$md" | sed 's/^](\(.*\))$/\1/'
                       sed -n 's/^ *\[[^]]*\]: *\([^ ]*\).*/\1/p' "$x/$md"; } \
                     | sed 's/ .*//; s/#.*//' | grep -v -E '^$|^[a-zA-Z][a-zA-Z+.-]*:' ); do
      n=$((n + 1))
      if [ -e "$x/$(dirname "$md")/$target" ]; then
        echo "ok: $md -> $target"
      else
        echo "missing from the tarball: $md -> $target"
        missing=1
      fi
    done
  done
  [ "$n" -gt 0 ] || { echo "no link found"; return 1; }
  [ "$missing" -eq 0 ]
}
run_check tarball_has_every_linked_file tarball_has_every_linked_file

# ---- 13. Private layout --------------------------------------------------------
stage=$B/b-stage
private_layout_no_file_of_libatomic_ops_dev() {
  # Man pages are compared without .gz: a package build compresses ours too.
  [ -d "$stage/usr" ] || { echo "nothing staged in $stage"; return 1; }
  (cd "$stage" && find . ! -type d | sed 's|^\.||') | sed 's/\.gz$//' | sort -u \
    >"$B/private-ours.list"
  dpkg -L libatomic-ops-dev | while read -r p; do [ -d "$p" ] || echo "$p"; done \
    | sed 's/\.gz$//' | sort -u >"$B/private-debian.list"
  [ -s "$B/private-debian.list" ] || { echo "dpkg -L libatomic-ops-dev listed nothing"; return 1; }
  cat "$B/private-ours.list"
  if comm -12 "$B/private-ours.list" "$B/private-debian.list" | grep .; then
    echo "^ installed by both this package and libatomic-ops-dev"
    return 1
  fi
  echo "no path in common with libatomic-ops-dev ($(wc -l <"$B/private-debian.list") files)"
}
run_check private_layout_no_file_of_libatomic_ops_dev \
  private_layout_no_file_of_libatomic_ops_dev

# A client built with pkg-config against the staged tree, and a CMake
# project with CMAKE_PREFIX_PATH at it, both get this library (not
# upstream's /usr/include headers nor its libatomic_ops_gpl.a).
private_layout_clients_get_ours() {
  local flags libdir=$stage/usr/$libsub/atomic_ops_gpl
  flags=$(PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_PATH=$stage/usr/$libsub/pkgconfig \
          pkg-config --cflags --libs atomic_ops_gpl) || return 1
  echo "pkg-config: $flags"
  gcc "$B/client.c" $flags -o "$B/private-client" || return 1
  LD_LIBRARY_PATH=$libdir "$B/private-client" || return 1
  LD_LIBRARY_PATH=$libdir ldd "$B/private-client" \
    | grep "libatomic_ops_gpl.so.1 => $libdir/" || return 1
  cmake_run "$B/cmake-private" "$stage/usr" || return 1
  ldd "$B/cmake-private/build/client" | grep "libatomic_ops_gpl.so.1 => $libdir/"
}
run_check private_layout_clients_get_ours private_layout_clients_get_ours

# ---- 14. Quick start -------------------------------------------------------------
# The first sh block of README.md's "## Quick start", verbatim.
awk '/^## Quick start/ { q = 1; next }
     q && /^```sh/ { c = 1; next }
     c && /^```/ { exit }
     c { print }' "$top/README.md" >"$qs/quick-start.sh"
echo "quick start under test:"; sed 's/^/    /' "$qs/quick-start.sh"
fresh_copy() {
  mkdir -p "$1" && (cd "$top" && git -C "$repo" ls-files -z \
    | tar --null -T - -cf - | tar -xf - -C "$1")
}
# As root in an image without sudo (most containers): this script installs
# sudo for the next check, so a stand-in that fails like a missing command
# comes first in PATH.  (MAKEFLAGS=-j2, here and below, only saves time:
# the commands run are the README's.)
quick_start_as_root() {
  [ "$(id -u)" -eq 0 ] || { echo "not root"; return 1; }
  [ -s "$qs/quick-start.sh" ] || { echo "no quick start found"; return 1; }
  mkdir -p "$qs/no-sudo" && printf '%s\n' '#!/bin/sh' \
    'echo "sh: 1: sudo: not found (stand-in: no sudo in this image)" >&2' 'exit 127' \
    >"$qs/no-sudo/sudo" && chmod 755 "$qs/no-sudo/sudo" || return 1
  fresh_copy "$qs/root" && cd "$qs/root" \
    && PATH=$qs/no-sudo:$PATH MAKEFLAGS=-j2 sh "$qs/quick-start.sh"
}
run_check quick_start_as_root quick_start_as_root

quick_start_as_sudo_user() {
  [ -s "$qs/quick-start.sh" ] || { echo "no quick start found"; return 1; }
  if ! id "$qs_user" >/dev/null 2>&1; then
    "${as_root[@]}" useradd -m -s /bin/sh "$qs_user" || return 1
    touch "$qs/created-user"
  fi
  echo "$qs_user ALL=(ALL) NOPASSWD: ALL" \
    | "${as_root[@]}" tee /etc/sudoers.d/ao-packaging-quickstart >/dev/null \
    && "${as_root[@]}" chmod 440 /etc/sudoers.d/ao-packaging-quickstart || return 1
  fresh_copy "$qs/user" && "${as_root[@]}" chown -R "$qs_user" "$qs/user" || return 1
  "${as_root[@]}" su - "$qs_user" -c "cd '$qs/user' && id -u && MAKEFLAGS=-j2 sh '$qs/quick-start.sh'"
}
run_check quick_start_as_sudo_user quick_start_as_sudo_user

# ---- 15. Smaller ones ------------------------------------------------------------
# Every function or macro of a page's SYNOPSIS has a whatis entry.
man_pages_name_every_synopsis_entry() {
  local page names want bad=0
  set -- "$prefix"/share/man/man3/*.3
  [ -f "$1" ] || { echo "no man page installed"; return 1; }
  for page; do
    names=$(lexgrog "$page" | sed 's/^[^"]*"//; s/ - .*//; s/,/ /g' | tr '\n' ' ')
    echo "$page: $names"
    want=$(sed -n '/^\.SH SYNOPSIS/,/^\.SH /p' "$page" \
           | grep -o 'AO_[A-Za-z0-9_]*(' | tr -d '(' | sort -u)
    for w in $want; do
      case " $names " in
        *" $w "*) ;;
        *) echo "  no whatis entry for $w"; bad=1 ;;
      esac
    done
  done
  [ "$bad" -eq 0 ]
}
run_check man_pages_name_every_synopsis_entry man_pages_name_every_synopsis_entry

# The README's static-link command line, run as written (prog.c replaced).
static_link_as_documented() {
  local cmd
  cmd=$(grep -E '^ *cc .*-Wl,-Bstatic' "$top/README.md" | head -n 1)
  [ -n "$cmd" ] || { echo "README.md has no static-link command (cc ... -Wl,-Bstatic ...)"; return 1; }
  echo "README: $cmd"
  cmd=${cmd//prog.c/$B/client.c}
  (cd "$B" && export PKG_CONFIG_PATH=$prefix/lib/pkgconfig && eval "$cmd -o $B/static-client") \
    || return 1
  if readelf -d "$B/static-client" | grep NEEDED | grep atomic_ops; then
    echo "^ still a dynamic dependency"
    return 1
  fi
  "$B/static-client"
}
run_check static_link_as_documented static_link_as_documented

# A package manager compares file versions under one soname: ours must sort
# at or above upstream 7.8.2's libatomic_ops_gpl.so.1.2.1.
library_version_not_below_upstream() {
  local real soname
  real=$(basename "$(readlink -f "$prefix/lib/libatomic_ops_gpl.so.1")")
  soname=$(readelf -d "$prefix/lib/libatomic_ops_gpl.so.1" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
  echo "file $real, soname $soname"
  [ "$soname" = libatomic_ops_gpl.so.1 ] || return 1
  printf 'libatomic_ops_gpl.so.1.2.1\n%s\n' "$real" | sort -V -C
}
run_check library_version_not_below_upstream library_version_not_below_upstream

configure_names_bug_report_address() {
  "$top/configure" --help | grep -E '^Report bugs to <.+>\.?$'
}
run_check configure_names_bug_report_address configure_names_bug_report_address

# Each AC_ARG_ENABLE/AC_ARG_WITH of configure.ac has a row in README.md.
readme_lists_every_configure_option() {
  local opt bad=0 n=0
  for opt in $(grep -o -E 'AC_ARG_(ENABLE|WITH)\(\[[^]]*\]' "$top/configure.ac" \
               | sed -E 's/AC_ARG_ENABLE\(\[/enable-/; s/AC_ARG_WITH\(\[/with-/; s/\]$//'); do
    n=$((n + 1))
    case $opt in
      enable-*) pat="^\| *\`--(enable|disable)-${opt#enable-}[\`=]" ;;
      *) pat="^\| *\`--${opt}[\`=]" ;;
    esac
    if grep -q -E "$pat" "$top/README.md"; then
      echo "ok: --$opt"
    else
      echo "README.md's options table has no row for --$opt"
      bad=1
    fi
  done
  [ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
}
run_check readme_lists_every_configure_option readme_lists_every_configure_option

echo "packaging: $SECONDS s in all"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
