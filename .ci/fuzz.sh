#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fuzz AO_malloc/AO_free/AO_stack with libFuzzer (tests/fuzz_malloc.c) for a bounded time.
#
# Builds the library with clang -fsanitize=fuzzer-no-link,address,undefined
# in a private copy of the tree (_build-fuzz/tree: an in-tree configured
# checkout would refuse a VPATH build), links tests/fuzz_malloc.c with
# -fsanitize=fuzzer, replays the seed corpus tests/fuzz_corpus, then fuzzes
# a copy of it for AO_FUZZ_SECONDS (default 75) seconds.  Any crash, leak,
# timeout, out-of-memory or sanitizer report fails; the inputs libFuzzer
# saved are left in _build-fuzz/artifacts and printed in hex and as the
# decimal byte list of the corpus script in fuzz_malloc.c.  Exit status
# non-zero on any failure; the last line is always "N passed, M failed".
set -uo pipefail

cd "$(dirname "$0")/.."
top=$(pwd)

export DEBIAN_FRONTEND=noninteractive
seconds=${AO_FUZZ_SECONDS:-75}
build=$top/_build-fuzz
tree=$build/tree
art=$build/artifacts
work=$build/corpus

passed=0
failed=0
summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# ---- dependencies ----------------------------------------------------------
deps=(clang libclang-rt-14-dev gcc libc6-dev make autoconf automake libtool
      pkg-config libatomic-ops-dev)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
    || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo -E); fi
  echo "fuzz: installing ${missing[*]}"
  { "${as_root[@]}" apt-get update -q || true; } \
    && "${as_root[@]}" apt-get install -y -q --no-install-recommends \
         "${missing[@]}" \
    || echo "fuzz: could not install ${missing[*]}; trying with what is there" >&2
fi
CC=${CLANG:-clang}

# ---- build -------------------------------------------------------------------
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
cflags="-g -O1 -fno-omit-frame-pointer $san"
build_lib() {
  rm -rf "$build"
  mkdir -p "$tree" "$art" "$work" || return 1
  # Tracked and untracked-but-not-ignored files: no build products.
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
      | grep -zv '^_build' \
      | tar --null -T - -cf - | tar -xf - -C "$tree" || return 1
  else
    tar --exclude='./_build*' -cf - . | tar -xf - -C "$tree" || return 1
  fi
  (cd "$tree" \
    && autoreconf -fi >/dev/null 2>&1 \
    && ./configure -q --disable-shared CC="$CC" \
         CFLAGS="$cflags -fsanitize=fuzzer-no-link" \
    && make -j2 libatomic_ops_gpl.la >/dev/null) || return 1
  # shellcheck disable=SC2046
  for v in fuzz_malloc:'' fuzz_static:-DAO_FUZZ_STATIC_ONLY; do
    "$CC" $cflags -fsanitize=fuzzer -Wall -Wextra ${v#*:} \
      -I"$tree/include" $(pkg-config --cflags atomic_ops) \
      "$tree/tests/fuzz_malloc.c" "$tree/.libs/libatomic_ops_gpl.a" \
      -o "$build/${v%%:*}" || return 1
  done
}
echo "fuzz: building the harness with $CC ($("$CC" --version | head -n1))"
if ! build_lib; then
  echo "fuzz: FAIL: the build failed"
  failed=$((failed + 1))
  summary
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Print what libFuzzer saved, so that it can become a corpus file.
show_artifacts() {   # dir
  local f
  for f in "$1"/*; do
    [ -f "$f" ] || continue
    case "$(basename "$f")" in slow-unit-*) continue ;; esac
    echo "==================== $f ($(stat -c %s "$f") bytes)"
    od -An -tx1 -v "$f"
    echo "as decimal bytes: $(od -An -tu1 -v "$f" | tr -s ' \n' ' ')"
  done
}

# ---- replay of the seed corpus -----------------------------------------------
replay_ok=yes
for name in fuzz_malloc fuzz_static; do
  mkdir -p "$art/replay-$name"
  if "$build/$name" -runs=0 -handle_usr1=0 -handle_usr2=0 \
       -artifact_prefix="$art/replay-$name/" tests/fuzz_corpus \
       >"$build/replay-$name.log" 2>&1; then
    echo "fuzz: PASS: $name: replay of $(ls tests/fuzz_corpus | wc -l) seed inputs"
    passed=$((passed + 1))
  else
    echo "fuzz: FAIL: $name: replay of the seed corpus"
    tail -n 60 "$build/replay-$name.log"
    show_artifacts "$art/replay-$name"
    failed=$((failed + 1))
    replay_ok=no
  fi
done
[ "$replay_ok" = yes ] || summary

# ---- bounded fuzzing -----------------------------------------------------------
# Two fuzzers side by side, one per core: fuzz_malloc (mmap may be turned
# on, and stays on for the rest of the process once an input does so) and
# fuzz_static (MMAP ignored: the static heap, full most of the time).  One
# process each: the allocator's state persists across inputs, which the
# harness is written for.  libFuzzer's own SIGUSR1/SIGUSR2 handling is off,
# the harness raises them.  timeout(1) is a safety net.
fuzz() {   # name
  mkdir -p "$work/$1" "$art/$1"
  cp tests/fuzz_corpus/* "$work/$1"/
  timeout -k 10 $((seconds + 120)) \
    "$build/$1" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=1024 -len_control=10 -handle_usr1=0 -handle_usr2=0 \
      -print_final_stats=1 -artifact_prefix="$art/$1/" "$work/$1" \
      >"$build/$1.log" 2>&1
  echo $? >"$build/$1.rc"
}
echo "fuzz: fuzzing for $seconds s (fuzz_malloc and fuzz_static in parallel)"
fuzz fuzz_malloc &
fuzz fuzz_static &
wait
for name in fuzz_malloc fuzz_static; do
  log=$build/$name.log
  rc=$(cat "$build/$name.rc" 2>/dev/null || echo 1)
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|INITED)' "$log" | tail -n 2 \
    | sed "s/^/$name: /"
  findings=$(grep -cE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: |fuzz_malloc: FAIL' "$log")
  if [ "$rc" -eq 0 ] && [ "$findings" -eq 0 ] \
     && ! ls "$art/$name" | grep -qv '^slow-unit-'; then
    echo "fuzz: PASS: $name: $(awk '/^stat::number_of_executed_units/ {print $2}' "$log") inputs in $seconds s, no finding"
    passed=$((passed + 1))
  else
    echo "fuzz: FAIL: $name: libFuzzer exited with $rc (last 80 lines of its log follow)"
    tail -n 80 "$log"
    show_artifacts "$art/$name"
    echo "fuzz: reproduce with: $build/$name <file>  (or tests/test_fuzz_replay <file>, built by make check)"
    failed=$((failed + 1))
  fi
done

summary
