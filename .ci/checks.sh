#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# CI step: the --enable-checks build (double free and wild-pointer checks
# on every AO_free) runs the whole suite, so the checks raise no false
# report, and test_misuse runs its double-free cases.  Run from the
# repository top: bash .ci/checks.sh.  Last line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export AM_COLOR_TESTS=no

build=_build-checks
rm -rf "$build" && mkdir "$build" || exit 1
# A VPATH build needs a top not configured in place (.ci/lib.sh).
. .ci/lib.sh
ci_source_top "$build" || { echo "0 passed, 1 failed"; exit 1; }
top=$CI_TOP
cd "$build" || exit 1
log=check.log
# .ci/run shortens the stress phases (AO_CI_TEST_SECONDS, AO_CI_TEST_SCALE):
# its plain make check has just run them at full strength.  Alone, this
# script runs them at the tests' defaults.
[ -z "${AO_CI_TEST_SECONDS:-}" ] || export AO_TEST_SECONDS=$AO_CI_TEST_SECONDS
[ -z "${AO_CI_TEST_SCALE:-}" ] || export AO_TEST_SCALE=$AO_CI_TEST_SCALE
if "$top/configure" --enable-checks >configure.log 2>&1 && make -j2 >make.log 2>&1; then
  make -j2 check >"$log" 2>&1
  rc=$?
else
  tail -n 40 configure.log make.log 2>/dev/null
  echo "0 passed, 1 failed"
  exit 1
fi
passed=$(ci_sum PASS "$log")
failed=$(( $(ci_sum FAIL "$log") + $(ci_sum XPASS "$log") + $(ci_sum ERROR "$log") ))
if [ "$rc" != 0 ]; then
  ci_print_failed_suites
  [ "$failed" -gt 0 ] || failed=1
fi
grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS)' "$log" | grep -v '^PASS' || true
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
