#!/bin/sh
# SPDX-License-Identifier: MIT
# Soak run of the allocator: threads, timer signals, thread turnover, fork; fails if RSS keeps growing.
#
# Not part of "make check".  From the top of a configured build tree
# (in-tree or VPATH):
#
#   tests/soak.sh [MINUTES]          e.g.  tests/soak.sh 2
#   SOAK_MINUTES=30 SOAK_THREADS=8 path/to/srcdir/tests/soak.sh
#
#   MINUTES / SOAK_MINUTES   run time in minutes (default 5; decimals allowed)
#   SOAK_THREADS             worker threads (default 4)
#   SOAK_REPORT              seconds between progress lines (default 5)
#   SOAK_BIN                 the soak program (default: tests/soak of the
#                            build tree in the current directory, built with
#                            "make -C tests soak" if missing)
#   AO_TEST_SEED             PRNG seed
#
# Prints a line every SOAK_REPORT seconds (elapsed s, operations total and
# per second, handler allocations, forks, threads started, live KiB, RSS
# KiB), then a verdict on the RSS overhead (RSS minus live bytes): its
# high-water over the second half may exceed the first half's by at most
# 10% + 8 MiB.  Exit status 0 pass, non-zero fail.
set -eu

minutes=${1:-${SOAK_MINUTES:-5}}
threads=${SOAK_THREADS:-4}
report=${SOAK_REPORT:-5}

case $minutes in
  ''|*[!0-9.]*|*.*.*|.) echo "soak.sh: MINUTES must be a number: $minutes" >&2; exit 2 ;;
esac
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
if [ "$seconds" -lt 8 ]; then
  echo "soak.sh: run for at least 8 seconds (0.14 minutes)" >&2
  exit 2
fi

bin=${SOAK_BIN:-}
if [ -z "$bin" ]; then
  if [ -f tests/Makefile ]; then
    make -s -C tests soak >&2
    bin=tests/soak
  elif [ -x "$(dirname "$0")/soak" ]; then
    bin=$(dirname "$0")/soak
  else
    echo "soak.sh: run from the top of a configured build tree, or set SOAK_BIN" >&2
    exit 2
  fi
fi

exec "$bin" "$seconds" "$threads" "$report"
