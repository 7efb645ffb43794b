#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# CI step: installed programs, a SIGPROF profiler-like program, soak and fuzz replay, all on the malloc replacement (LD_PRELOAD).
#
# Run from the repository top: bash .ci/real_programs.sh.  Builds the
# project in _build-real (VPATH, see .ci/lib.sh) and preloads
# AOMALLOC_LIB (default _build-real/.libs/libaomalloc.so; any preloadable
# malloc works, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2).
#
# Each program of tests/real/cases.sh runs twice in fresh directories,
# plain and with LD_PRELOAD, under LD_DEBUG=libs (one log per process):
# stdouts must be identical and every process of the preloaded run must
# have initialised AOMALLOC_LIB (a preload that did not load fails).  A
# program that is not installed is skipped ("SKIP: ..."), not counted.
# Then tests/real/sigprof_malloc (SIGPROF handlers that allocate) must
# pass under the preload, and is run once with glibc's malloc for the
# record; soak.c and fuzz_malloc.c built with -DSOAK_USE_MALLOC /
# -DFUZZ_USE_MALLOC run under the preload.  Times are informational.
# Knobs: AOMALLOC_LIB, AO_REAL_SIGPROF_SECONDS (30), AO_REAL_SOAK_SECONDS
# (20), AO_REAL_FUZZ_SECONDS (10), AO_REAL_CASES (space-separated subset of
# the cases); .ci/run shortens the three durations.
# Last line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
me=real_programs
build=_build-real
passed=0
failed=0

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}
pass() { echo "$me: PASS: $*"; passed=$((passed + 1)); }
fail() { echo "$me: FAIL: $*"; failed=$((failed + 1)); }

# ---- packages ------------------------------------------------------------
deps=(gcc libc6-dev make autoconf automake libtool pkg-config libatomic-ops-dev
      python3 sqlite3 git perl coreutils xz-utils tar bash binutils)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo -E); fi
  { "${as_root[@]}" apt-get update -q || true; } && "${as_root[@]}" apt-get install -y -q \
    --no-install-recommends "${missing[@]}" \
    || echo "$me: could not install ${missing[*]}; skipping what is missing" >&2
fi

# ---- build ---------------------------------------------------------------
. .ci/lib.sh
rm -rf "$build" && mkdir "$build" || { fail "cannot create $build"; finish; }
ci_source_top "$build" || { fail "autoreconf"; finish; }
top=$CI_TOP
here=$PWD
build=$here/$build
t0=$(date +%s.%N)
# Under LD_DEBUG=libs as the preloaded build of case gccmake is, so that
# their times compare; this build is also that case's plain run.
mkdir -p "$build/ld-build"
if ! (cd "$build" && export LD_DEBUG=libs LD_DEBUG_OUTPUT="$build/ld-build/ld" \
      && "$top/configure" -q >configure.log 2>&1 && make -j2 >make.log 2>&1); then
  tail -n 40 "$build/configure.log" "$build/make.log"
  fail "the build failed"
  finish
fi
plain_build=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
lib=${AOMALLOC_LIB:-$build/.libs/libaomalloc.so}
case $lib in /*) ;; *) lib=$here/$lib ;; esac
if [ ! -f "$lib" ]; then
  fail "the preload library $lib does not exist (set AOMALLOC_LIB)"
  finish
fi
echo "$me: preloading $lib (plain build: $plain_build s)"

# ---- shared inputs (made once, never under the preload) ------------------
in=$build/inputs
work=$build/work
mkdir -p "$in" "$work"
# 300k lines "word word number" from a fixed LCG: sort, xz and perl input.
awk 'BEGIN { s = 12345
  for (i = 0; i < 300000; i++) {
    s = (s * 1103515245 + 12345) % 2147483648; a = ""; b = ""; x = s
    for (j = 0; j < 5; j++) { a = a sprintf("%c", 97 + x % 26); x = int(x / 26) }
    y = int(s / 7) % 2000
    for (j = 0; j < 3; j++) { b = b sprintf("%c", 97 + y % 26); y = int(y / 26) }
    print a, b, s % 100000 } }' > "$in/sort.txt"
# The sources (configure included) for case gccmake; $top may hold $build.
mkdir -p "$in/src"
tar -C "$top" --exclude='./_build-*' --exclude=./.git -cf - . | tar -xf - -C "$in/src"
# A snapshot of the current branch: sibling branches may move meanwhile.
if git rev-parse --git-dir >/dev/null 2>&1; then
  git clone -q --bare --no-local --single-branch . "$in/repo.git" 2>/dev/null \
    || rm -rf "$in/repo.git"
fi

secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# check_preload LOGPREFIX: every process logged by LD_DEBUG=libs ran the
# preload's initialiser.  Prints the number of processes.
check_preload() {
  local logs n bad
  logs=$(ls "$1".* 2>/dev/null | wc -l)
  [ "$logs" -gt 0 ] || { echo "no process logged (LD_DEBUG ignored?)"; return 1; }
  bad=$(grep -L -F "calling init: $lib" "$1".* | wc -l)
  if [ "$bad" -ne 0 ]; then
    echo "$bad of $logs processes did not load $lib, e.g.:"
    grep -L -F "calling init: $lib" "$1".* | head -n 1 | xargs head -n 5
    return 1
  fi
  echo "$logs"
}

# ---- installed programs --------------------------------------------------
need() {   # case -> the programs it runs
  case $1 in
    python) echo /usr/bin/python3 ;; sqlite) echo sqlite3 ;; git) echo git ;;
    perl) echo perl ;; sort) echo sort ;; xz) echo xz ;; tar) echo "tar xz" ;;
    bash) echo bash ;; gccmake) echo "gcc make nm" ;;
  esac
}
cases=${AO_REAL_CASES:-python sqlite git perl sort xz tar bash gccmake}
for c in $cases; do
  miss=
  for p in $(need "$c"); do command -v "$p" >/dev/null 2>&1 || miss="$miss $p"; done
  if [ -n "$miss" ]; then echo "SKIP: $c:$miss not installed"; continue; fi
  if [ "$c" = git ] && [ ! -d "$in/repo.git" ]; then
    echo "SKIP: git: the source tree is not a git repository"; continue
  fi
  d=$work/$c
  mkdir -p "$d/plain" "$d/preload" "$d/ld-plain" "$d/ld-preload"
  t=$(date +%s.%N)
  if [ "$c" = gccmake ]; then
    # The plain build is the one above (same sources and configure line).
    (cd "$build" && bash "$top/tests/real/cases.sh" gccreport "$in") \
      >"$d/plain.out" 2>"$d/plain.err"
    rc1=$?
    tp=$plain_build
  else
    (cd "$d/plain" && LD_DEBUG=libs LD_DEBUG_OUTPUT="$d/ld-plain/ld" \
       bash "$top/tests/real/cases.sh" "$c" "$in") >"$d/plain.out" 2>"$d/plain.err"
    rc1=$?
    tp=$(secs "$t")
  fi
  t=$(date +%s.%N)
  (cd "$d/preload" && LD_PRELOAD=$lib LD_DEBUG=libs LD_DEBUG_OUTPUT="$d/ld-preload/ld" \
     bash "$top/tests/real/cases.sh" "$c" "$in") >"$d/preload.out" 2>"$d/preload.err"
  rc2=$?
  tl=$(secs "$t")
  if [ "$rc1" -ne 0 ]; then
    fail "$c: the plain run failed (exit $rc1): not a test of the preload"
    tail -n 20 "$d/plain.err" "$d/plain.out"
  elif [ "$rc2" -ne 0 ]; then
    fail "$c: exit status $rc2 with the preload (plain: 0)"
    tail -n 30 "$d/preload.err" "$d/preload.out"
  elif ! procs=$(check_preload "$d/ld-preload/ld"); then
    fail "$c: the preload was not in effect: $procs"
  elif ! cmp -s "$d/plain.out" "$d/preload.out"; then
    fail "$c: the output differs"
    diff "$d/plain.out" "$d/preload.out" | head -n 20
  else
    pass "$c: output matches ($(wc -l < "$d/plain.out") lines, $procs processes preloaded; plain $tp s, ${lib##*/} $tl s)"
  fi
done

# ---- SIGPROF handlers that allocate ---------------------------------------
sp_secs=${AO_REAL_SIGPROF_SECONDS:-30}
sp=$build/sigprof_malloc
if gcc -std=c11 -O2 -g -Wall -Wextra -Werror -pthread "$top/tests/real/sigprof_malloc.c" \
     -o "$sp" 2>"$build/sigprof.log"; then
  t=$(date +%s.%N)
  # glibc's run is for the record only: at most 10 s.
  sp_glibc=10
  [ "${sp_secs%.*}" -ge 10 ] || sp_glibc=${sp_secs%.*}
  timeout -k 5 $((sp_glibc + 30)) "$sp" "$sp_glibc" >"$build/sigprof-glibc.log" 2>&1
  rc=$?
  el=$(secs "$t")
  case $rc in
    0) echo "$me: glibc: finished (no deadlock or crash in $sp_glibc s)" ;;
    3) echo "$me: glibc: deadlocked after $(sed -n 's/.*stuck since \([0-9]*\) s.*/\1/p' "$build/sigprof-glibc.log") s (reported by the monitor at $el s)" ;;
    124|137) echo "$me: glibc: hung, killed by timeout after $el s" ;;
    *) if [ "$rc" -gt 128 ]; then
         echo "$me: glibc: crashed with SIG$(kill -l $((rc - 128))) after $el s"
       else
         echo "$me: glibc: failed with exit $rc after $el s: $(tail -n 1 "$build/sigprof-glibc.log")"
       fi ;;
  esac
  t=$(date +%s.%N)
  LD_PRELOAD=$lib timeout -k 5 $((${sp_secs%.*} + 60)) "$sp" "$sp_secs" \
    >"$build/sigprof.log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ] && grep -q '^sigprof_malloc: PASS' "$build/sigprof.log"; then
    pass "sigprof_malloc: $(grep '^sigprof_malloc: PASS' "$build/sigprof.log" | sed 's/^sigprof_malloc: PASS: //')"
  else
    fail "sigprof_malloc under the preload: exit $rc after $(secs "$t") s"
    tail -n 10 "$build/sigprof.log"
  fi
else
  fail "sigprof_malloc.c does not build cleanly"
  cat "$build/sigprof.log"
fi

# ---- soak and fuzz replay through the malloc names -------------------------
cc_test() {   # output source flags...
  local out=$1 src=$2
  shift 2
  gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread "$@" -I"$build/include" \
    -I"$top/include" -I"$top/tests" $(pkg-config --cflags atomic_ops 2>/dev/null) \
    "$src" "$build/.libs/libatomic_ops_gpl.a" -o "$out"
}
soak_secs=${AO_REAL_SOAK_SECONDS:-20}
if cc_test "$build/soak_malloc" "$top/tests/soak.c" -DSOAK_USE_MALLOC \
     2>"$build/soak.log"; then
  LD_PRELOAD=$lib timeout -k 5 $((soak_secs + 60)) "$build/soak_malloc" \
    "$soak_secs" 4 5 >"$build/soak.log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    pass "soak (malloc names): $(grep '^soak: .* ops' "$build/soak.log" | sed 's/^soak: //')"
  else
    fail "soak (malloc names) under the preload: exit $rc"
    tail -n 15 "$build/soak.log"
  fi
else
  fail "soak.c -DSOAK_USE_MALLOC does not build"; cat "$build/soak.log"
fi
if cc_test "$build/fuzz_replay_malloc" "$top/tests/fuzz_malloc.c" \
     -DFUZZ_USE_MALLOC -DAO_FUZZ_STANDALONE 2>"$build/fuzz.log"; then
  LD_PRELOAD=$lib AO_TEST_SECONDS=${AO_REAL_FUZZ_SECONDS:-10} AO_FUZZ_CORPUS=$top/tests/fuzz_corpus \
    timeout -k 5 120 "$build/fuzz_replay_malloc" >"$build/fuzz.log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    pass "fuzz replay (malloc names): $(head -n 1 "$build/fuzz.log" | sed 's/^test_fuzz_replay: //')"
  else
    fail "fuzz replay (malloc names) under the preload: exit $rc"
    tail -n 15 "$build/fuzz.log"
  fi
else
  fail "fuzz_malloc.c -DFUZZ_USE_MALLOC does not build"; cat "$build/fuzz.log"
fi

finish
