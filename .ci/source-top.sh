# SPDX-License-Identifier: MIT
# Sourced by the .ci scripts: find a source tree that a VPATH build can use.
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
