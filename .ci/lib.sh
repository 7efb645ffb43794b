# SPDX-License-Identifier: MIT
# Sourced by the .ci scripts: the source tree of a VPATH build, and the
# counts of automake test-suite logs.
#
# ci_source_top BUILD_DIR sets CI_TOP to the repository top, or, when the
# top is configured in place (.ci/run does that first, and automake then
# refuses VPATH builds), to BUILD_DIR/src holding a copy of the tracked
# files; it runs autoreconf there if configure is missing or stale.  The
# caller runs from the repository top; BUILD_DIR exists.  Returns non-zero
# on failure, after printing the autoreconf log.
ci_source_top() {
  CI_TOP=$PWD
  if [ -f config.status ]; then
    mkdir -p "$1/src" \
      && git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$1/src" \
      || return 1
    CI_TOP=$PWD/$1/src
    echo "the top is configured in place; building from a copy of the tracked files"
  fi
  if [ ! -x "$CI_TOP/configure" ] || [ "$CI_TOP/configure.ac" -nt "$CI_TOP/configure" ]; then
    (cd "$CI_TOP" && autoreconf -fi) >"$1/autoreconf.log" 2>&1 || {
      tail -n 40 "$1/autoreconf.log"
      return 1
    }
  fi
}

# ci_sum KEY LOG: the sum of the "# KEY: N" lines of automake's summaries.
ci_sum() {
  awk -v key="# $1:" 'index($0, key) == 1 { n += $NF } END { print n + 0 }' "$2"
}

# Print every test-suite.log under the current directory that records a
# failure.
ci_print_failed_suites() {
  find . -name test-suite.log -exec grep -l -E '^# (FAIL|ERROR|XPASS): *[1-9]' {} + \
    | while read -r log; do echo "==================== $log"; cat "$log"; done
}
