#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# CI step: library and whole suite built with ASan + UBSan; AO_malloc blocks are poisoned while free (src/track.h).
#
# Run from the repository top: bash .ci/asan.sh.  Builds in _build-asan
# (VPATH) with -fsanitize=address,undefined -fno-sanitize-recover=all, runs
# make check, and requires test_track_use_after_free to pass (it proves
# that a use after free of an AO_malloc block is reported).  Tests that
# measure VmRSS run every phase but skip their bounds (exit 77) under ASan.
# Last line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export AM_COLOR_TESTS=no
unset VERBOSE
build=_build-asan
me=asan

finish() {
  echo "$1 passed, $2 failed"
  [ "$2" -eq 0 ]
  exit
}

# ---- packages (gcc's libasan and libubsan come with gcc on Debian 12) ----
deps=(gcc libc6-dev make autoconf automake libtool pkg-config libatomic-ops-dev)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  { apt-get update -q || true; } && apt-get install -y -q --no-install-recommends \
    "${missing[@]}" || echo "$me: could not install ${missing[*]}" >&2
fi

SAN='-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer'
rm -rf "$build" && mkdir "$build" || finish 0 1
probe=$build/probe
printf 'int main(void) { return 0; }\n' > "$probe.c"
if ! gcc $SAN "$probe.c" -o "$probe" 2>/dev/null || ! "$probe"; then
  apt-get install -y -q --no-install-recommends libasan8 libubsan1 >/dev/null 2>&1
  if ! gcc $SAN "$probe.c" -o "$probe" || ! "$probe"; then
    echo "$me: gcc cannot build or run sanitized programs"
    finish 0 1
  fi
fi

# LeakSanitizer stops the process with ptrace-like machinery, which some
# containers forbid; without it ASan still checks every access.
leaks=1
if ! ASAN_OPTIONS=detect_leaks=1 "$probe" 2>/dev/null; then
  leaks=0
  echo "$me: LeakSanitizer does not work here (ptrace restricted?); detect_leaks=0"
fi
export ASAN_OPTIONS="detect_leaks=$leaks:halt_on_error=1:abort_on_error=0:allow_user_segv_handler=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# ---- sources (see .ci/lib.sh)
. .ci/lib.sh
ci_source_top "$build" || finish 0 1
top=$CI_TOP

cd "$build" || finish 0 1
if ! "$top/configure" CFLAGS="-g -O2 $SAN" LDFLAGS="$SAN" >configure.log 2>&1 \
   || ! make -j2 >make.log 2>&1; then
  tail -n 40 configure.log make.log
  finish 0 1
fi
if grep -E 'warning:' make.log; then
  echo "$me: the sanitized build has warnings (above)"
  warn=1
else
  warn=0
fi

# .ci/run shortens the stress phases (AO_CI_TEST_SECONDS, AO_CI_TEST_SCALE):
# its plain make check has just run them at full strength.  Alone, this
# script runs them at the tests' defaults.
[ -z "${AO_CI_TEST_SECONDS:-}" ] || export AO_TEST_SECONDS=$AO_CI_TEST_SECONDS
[ -z "${AO_CI_TEST_SCALE:-}" ] || export AO_TEST_SCALE=$AO_CI_TEST_SCALE
rc=0
make -j2 check >check.log 2>&1 || rc=$?
passed=$(ci_sum PASS check.log)
failed=$(( $(ci_sum FAIL check.log) + $(ci_sum XPASS check.log) + $(ci_sum ERROR check.log) + warn ))
grep -E '^(FAIL|ERROR|SKIP|XPASS):' check.log
# The poisoning must be proven, not skipped (a FAIL is counted above).
if ! grep -q -E '^(PASS|FAIL|ERROR): test_track_use_after_free$' check.log; then
  echo "$me: test_track_use_after_free was skipped or not run: ASan poisoning unproven"
  failed=$((failed + 1))
fi
if [ "$rc" -ne 0 ]; then
  ci_print_failed_suites
  [ "$failed" -gt 0 ] || failed=1
fi
finish "$passed" "$failed"
