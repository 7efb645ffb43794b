#!/bin/sh
# SPDX-License-Identifier: MIT
# AO_stack throughput, ours against upstream: interleaved runs, medians and ratios.
#
# Usage: bench/stack.sh [REPS] (default 5), from the build tree after
# "make bench".  Each repetition runs bench_stack_ours then
# bench_stack_upstream (each already a median of ROUNDS rounds), for both
# modes (alt, burst) at 1, 2, 4 and 8 threads.  Prints, per figure, the
# median over the repetitions of each build and of the per-repetition
# ratio ours/upstream.  OURS=/path/to/another/bench_stack_ours compares
# two builds of ours instead (e.g. main's).
set -eu
reps=${1:-5}
dir=$(dirname "$0")
. "$dir/lib.sh"
ours=${OURS:-$dir/bench_stack_ours}
up=${UPSTREAM:-$dir/bench_stack_upstream}
for p in "$ours" "$up"; do
  [ -x "$p" ] || { echo "stack.sh: $p not built (make bench)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
while [ "$i" -lt "$reps" ]; do
  for mode in alt burst; do
    "$ours" "$mode" | awk -v r="$i" '!/^#/ { print "ours", $1, r, $2 }' >> "$tmp/raw"
    "$up" "$mode" | awk -v r="$i" '!/^#/ { print "up", $1, r, $2 }' >> "$tmp/raw"
  done
  i=$((i + 1))
done
echo "# $(uname -m), $(nproc) CPUs; pairs/s, medians of $reps interleaved repetitions"
printf '%-18s %14s %14s %8s\n' figure ours upstream ratio
awk "$BENCH_AWK"'
  function median(list,   a) { return median_of(a, split(list, a, " ")) }
  { v[$1, $2, $3] = $4; if (!($2 in seen)) { seen[$2] = 1; order[++nf] = $2 } }
  END {
    for (f = 1; f <= nf; f++) {
      name = order[f]; lo = ""; lu = ""; lr = ""
      for (r = 0; (("ours", name, r) in v); r++) {
        lo = lo " " v["ours", name, r]; lu = lu " " v["up", name, r]
        lr = lr " " v["ours", name, r] / v["up", name, r]
      }
      printf "%-18s %14.0f %14.0f %7.2fx\n", name, median(lo), median(lu), median(lr)
    }
  }' "$tmp/raw"
