#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: run the allocator benchmark round-robin; print medians and ratios; write bench/results/.
#
# Usage (after "make bench"):  bench/run.sh        about 7 minutes on 2 cores
#                              QUICK=1 bench/run.sh about 1 minute
#        bench/run.sh mimalloc-bench (or MODE=mimalloc-bench): the public
#        suite instead, run by bench/mimalloc-bench.sh (its own options there)
# Environment:
#   R=N             repetitions (default 5, QUICK 3; at least 3 for a median)
#   QUICK=1         shorter timed phases (BENCH_SCALE=0.2) and a 5 s timeout
#   ALLOCATORS=".." subset/order of: ours aomalloc upstream glibc mimalloc
#                   jemalloc tcmalloc (aomalloc: bench_malloc under LD_PRELOAD
#                   of this project's malloc replacement, libaomalloc.so)
#   WORKLOADS=".."  subset of: pairs batch threads bulk prodcons rss signal return
#   BENCH_BIN_DIR   directory holding bench_ours, bench_malloc, bench_upstream
#                   (default: ./bench of the current directory if built there,
#                   else this script's directory)
#   BENCH_OUT       output directory (default: results/ next to this script)
#   MIMALLOC_SO, JEMALLOC_SO, TCMALLOC_SO   library to LD_PRELOAD for each
#   AOMALLOC_SO     default: .libs/libaomalloc.so of the build tree
#
# Every repetition runs every workload for every allocator, each in its own
# process, allocators interleaved (round-robin, order rotated each
# repetition).  A figure is the median over the repetitions.  An allocator
# that crashes or hangs in the signal or return workload is reported as
# failing there and not run there again.
set -u
LC_ALL=C
export LC_ALL

here=$(cd "$(dirname "$0")" && pwd)
# The public suite has its own driver (see bench/mimalloc-bench.sh).
if [ "${1:-}" = mimalloc-bench ] || [ "${MODE:-}" = mimalloc-bench ]; then
  [ "${1:-}" = mimalloc-bench ] && shift
  exec bash "$here/mimalloc-bench.sh" "$@"
fi
. "$here/lib.sh"
if [ $# -gt 0 ]; then
  echo "usage: $0 [mimalloc-bench [build]]" >&2
  exit 2
fi
if [ -n "${BENCH_BIN_DIR:-}" ]; then
  bindir=$BENCH_BIN_DIR
elif [ -x ./bench/bench_ours ]; then
  bindir=$(pwd)/bench
else
  bindir=$here
fi
out=${BENCH_OUT:-$here/results}
QUICK=${QUICK:-0}
if [ "$QUICK" != 0 ]; then
  R=${R:-3}
  scale=${BENCH_SCALE:-0.2}
  timeout_s=${BENCH_TIMEOUT:-5}
else
  R=${R:-5}
  scale=${BENCH_SCALE:-1}
  timeout_s=${BENCH_TIMEOUT:-20}
fi
WORKLOADS=${WORKLOADS:-pairs batch threads bulk prodcons rss signal return}
ALLOCATORS=${ALLOCATORS:-ours aomalloc upstream glibc mimalloc jemalloc tcmalloc}

if [ ! -x "$bindir/bench_ours" ] || [ ! -x "$bindir/bench_malloc" ]; then
  echo "run.sh: no bench_ours/bench_malloc in $bindir; run 'make bench' first" >&2
  exit 1
fi
mkdir -p "$out" || exit 1

# name -> binary and LD_PRELOAD value.
declare -A BIN PRELOAD
names=()
for a in $ALLOCATORS; do
  case $a in
    ours) BIN[$a]=$bindir/bench_ours; PRELOAD[$a]= ;;
    upstream)
      if [ ! -x "$bindir/bench_upstream" ]; then
        echo "run.sh: bench_upstream not built (Debian's libatomic_ops_gpl.a absent?), skipped" >&2
        continue
      fi
      BIN[$a]=$bindir/bench_upstream; PRELOAD[$a]= ;;
    glibc) BIN[$a]=$bindir/bench_malloc; PRELOAD[$a]= ;;
    aomalloc|mimalloc|jemalloc|tcmalloc)
      case $a in
        aomalloc) lib=${AOMALLOC_SO:-$bindir/../.libs/libaomalloc.so} ;;
        mimalloc) lib=${MIMALLOC_SO:-$(find_lib libmimalloc.so.2 libmimalloc.so)} ;;
        jemalloc) lib=${JEMALLOC_SO:-$(find_lib libjemalloc.so.2 libjemalloc.so)} ;;
        tcmalloc) lib=${TCMALLOC_SO:-$(find_lib libtcmalloc_minimal.so.4 libtcmalloc.so.4)} ;;
      esac
      if [ -z "$lib" ] || [ ! -f "$lib" ]; then
        echo "run.sh: $a not installed, skipped" >&2
        continue
      fi
      BIN[$a]=$bindir/bench_malloc; PRELOAD[$a]=$lib ;;
    *) echo "run.sh: unknown allocator $a" >&2; exit 1 ;;
  esac
  names+=("$a")
done
n=${#names[@]}
[ "$n" -gt 0 ] || { echo "run.sh: no allocator to run" >&2; exit 1; }

raw=$out/raw.txt      # alloc rep figure value unit
notes=$out/notes.txt  # alloc: '#' lines of the programs, failures
log=$out/run.log      # stderr of the programs
: > "$raw"; : > "$notes"; : > "$log"
declare -A FAILED     # "alloc workload" -> status, for workloads run in a child

# Other work on the machine spoils the figures (multi-threaded ones first).
load_before=$(loadavg)
if awk -v l="${load_before%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }'; then
  echo "run.sh: warning: load average $load_before on $(nproc) CPUs: the machine is busy" >&2
fi
start=$(date +%s)
echo "run.sh: ${names[*]}; $R repetitions; workloads: $WORKLOADS; scale $scale" >&2
for ((rep = 1; rep <= R; rep++)); do
  [ -t 2 ] || echo "run.sh: repetition $rep of $R ($(($(date +%s) - start)) s)" >&2
  for wl in $WORKLOADS; do
    for ((k = 0; k < n; k++)); do
      a=${names[$(((k + rep - 1) % n))]}
      if [ -n "${FAILED[$a $wl]:-}" ]; then
        continue
      fi
      if [ -t 2 ]; then
        printf '\r[rep %d/%d] %-9s %-9s %4ds ' "$rep" "$R" "$wl" "$a" \
          $(($(date +%s) - start)) >&2
      fi
      tmp=$(env LD_PRELOAD="${PRELOAD[$a]}" BENCH_SCALE="$scale" \
              BENCH_TIMEOUT="$timeout_s" \
              timeout -k 5 $((timeout_s * 2 + 300)) "${BIN[$a]}" "$wl" \
              2>>"$log")
      rc=$?
      printf '%s\n' "$tmp" | awk -v a="$a" -v r="$rep" '
        /^#/ { next }
        NF == 3 { print a, r, $1, $2, $3 }' >> "$raw"
      if [ "$rep" = 1 ]; then
        printf '%s\n' "$tmp" | awk -v a="$a" '/^# / && !/^# api / { sub(/^# /, ""); print a ": " $0 }' >> "$notes"
      fi
      if [ "$rc" != 0 ]; then
        echo "$a: workload $wl: process failed (exit status $rc) in repetition $rep" >> "$notes"
      fi
      st=$(printf '%s\n' "$tmp" | awk '$1 ~ /_status$/ && $2 ~ /^fails/ { print $2; exit }')
      if [ -n "$st" ]; then
        FAILED[$a $wl]=$st
        if [ "$rep" -lt "$R" ]; then
          echo "$a: $wl fails in repetition $rep; not run again" >> "$notes"
        fi
      fi
    done
  done
done
elapsed=$(($(date +%s) - start))
load_after=$(loadavg)
[ -t 2 ] && printf '\r%60s\r' '' >&2
# Each program repeats its malloc_impl line: keep the first of each note.
awk '!seen[$0]++' "$notes" > "$notes.tmp" && mv "$notes.tmp" "$notes"

# Machine description.
cpu=$(cpu_model)
gitrev=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null)
if [ -n "$gitrev" ] && [ -n "$(git -C "$here/.." status --porcelain -- src include 2>/dev/null)" ]; then
  gitrev="$gitrev (with uncommitted changes in src/ or include/)"
fi
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) CPUs ($(nproc --all) online), $cpu; Linux $(uname -r) $(uname -m); transparent huge pages: ${thp:-?}"
  echo "- $(ldd --version 2>/dev/null | head -n 1); $(${CC:-cc} --version 2>/dev/null | head -n 1)"
  echo "- this library: ${gitrev:-unknown revision}; upstream: libatomic-ops-dev $(pkgver libatomic-ops-dev)"
  echo "- preloaded: mimalloc $(pkgver libmimalloc2.0), jemalloc $(pkgver libjemalloc2), tcmalloc $(pkgver libtcmalloc-minimal4)"
  echo "- run: $R repetitions (median), allocators interleaved, each workload in its own process; BENCH_SCALE=$scale, child timeout ${timeout_s} s$([ "$QUICK" != 0 ] && echo ', QUICK mode'); $elapsed s in total; load average (1/5/15 min) before: ${load_before:-?}, after: ${load_after:-?}"
} > "$out/machine.txt"

# Tables.  Figures: name, label, direction (lower/higher/-).
figs=$(cat <<'EOF'
pair_16B	malloc+free 16 B, ns	lower
pair_64B	malloc+free 64 B, ns	lower
pair_256B	malloc+free 256 B, ns	lower
pair_1KiB	malloc+free 1 KiB, ns	lower
pair_4KiB	malloc+free 4 KiB, ns	lower
pair_16KiB	malloc+free 16 KiB, ns	lower
pair_64KiB	malloc+free 64 KiB, ns	lower
pair_100KB	malloc+free 100 KB, ns	lower
pair_256KiB	malloc+free 256 KiB, ns	lower
pair_1MiB	malloc+free 1 MiB, ns	lower
batch_1t	batch (1000 live, 8-512 B), ns per malloc+free	lower
threads_1	batch, 1 thread, M pairs/s	higher
threads_2	batch, 2 threads, M pairs/s	higher
threads_4	batch, 4 threads, M pairs/s	higher
threads_8	batch, 8 threads, M pairs/s	higher
bulk_1	bulk (1000 of 8-512 B, then all freed), 1 thread, M pairs/s	higher
bulk_2	bulk, 2 threads, M pairs/s	higher
bulk_4	bulk, 4 threads, M pairs/s	higher
bulk_8	bulk, 8 threads, M pairs/s	higher
prodcons	producer/consumer (64-256 B), M objects/s	higher
rss_ratio	live-set RSS / requested (200k of 8-1024 B)	lower
signal_slowdown	batch under 20 kHz allocating handler, slowdown x	lower
signal_noop_slowdown	batch under 20 kHz no-op handler, slowdown x	lower
signal_rate	signals handled, Hz	-
return_start_MiB	return: RSS at start, MiB	-
return_peak_MiB	return: RSS with 256 MiB live, MiB	-
return_after_MiB	return: RSS after freeing all, MiB	lower
return_rss_ratio	return: RSS after free / at start	lower
return_retained_pct	return: % of the growth still resident	lower
return_rss_ratio_0.5s	return: RSS / start after 0.5 s of light use	lower
return_rss_ratio_trim	return: RSS / start, then AO_malloc_trim (ours)	lower
return_retained_pct_trim	return: % still resident after the trim	lower
EOF
)

printf '%s\n' "$figs" > "$out/figures.tsv"
awk -v names="${names[*]}" -v anchors="upstream glibc mimalloc tcmalloc jemalloc" "$BENCH_AWK"'
  BEGIN { FS = "\t"; na = split(names, A, " ") }
  FILENAME ~ /figures.tsv$/ { nf++; F[nf] = $1; L[$1] = $2; D[$1] = $3; next }
  {
    split($0, w, " ")
    a = w[1]; f = w[3]; v = w[4]
    if (f ~ /_status$/) { if (!((a, f) in S) || v ~ /^fails/) S[a, f] = v; next }
    c = ++cnt[a, f]; V[a, f, c] = v + 0
  }
  # The repetitions of figure f for a, into x[1..]; how many.
  function reps(a, f, x,   i) {
    for (i = 1; i <= cnt[a, f]; i++) x[i] = V[a, f, i]
    return cnt[a, f]
  }
  function med(a, f,   x) {
    if (!cnt[a, f]) return ""
    return median_of(x, reps(a, f, x))
  }
  function fmt(x) {
    if (x == "") return "-"
    if (x >= 1000) return sprintf("%.0f", x)
    if (x >= 100) return sprintf("%.1f", x)
    if (x >= 10) return sprintf("%.2f", x)
    return sprintf("%.3f", x)
  }
  # The status that explains a missing figure.
  function why(a, f,   s, t) {
    s = (f ~ /^signal_/) ? "signal_status" : (f ~ /^return_/) ? "return_status" : ""
    if (s != "" && ((a, s) in S) && S[a, s] ~ /^fails/) { t = S[a, s]; sub(/^fails:/, "fails: ", t); return t }
    return "-"
  }
  # The median, marked when the repetitions spread by more than 25% of it.
  function cell(a, f,   m, x) {
    m = med(a, f)
    if (m == "") return why(a, f)
    if (wide_spread(x, reps(a, f, x), m)) { spread = 1; return fmt(m) " †" }
    return fmt(m)
  }
  function present(f,   i) { for (i = 1; i <= na; i++) if (cnt[A[i], f]) return 1; return 0 }
  END {
    print "### Medians (absolute)"
    print ""
    h = "| figure |"; s = "|---|"
    for (i = 1; i <= na; i++) { h = h " " A[i] " |"; s = s "---:|" }
    print h; print s
    for (k = 1; k <= nf; k++) {
      f = F[k]
      if (!present(f)) continue
      line = "| " L[f] " |"
      for (i = 1; i <= na; i++) line = line " " cell(A[i], f) " |"
      print line
    }
    if (spread) { print ""; print "† the repetitions of this figure spread by more than 25% of the median (every value is in raw.txt)." }
    # Ratios of ours to each anchor.
    nan = 0
    m = split(anchors, B, " ")
    for (i = 1; i <= m; i++) for (j = 1; j <= na; j++) if (A[j] == B[i]) AN[++nan] = B[i]
    have_ours = 0; for (j = 1; j <= na; j++) if (A[j] == "ours") have_ours = 1
    if (!have_ours || !nan) exit
    print ""
    print "### Ratios: ours / anchor"
    print ""
    print "Below 1 is better for ours where lower is better, above 1 where higher is better."
    print ""
    h = "| figure | better |"; s = "|---|---|"
    for (i = 1; i <= nan; i++) { h = h " ours / " AN[i] " |"; s = s "---:|" }
    print h; print s
    for (k = 1; k <= nf; k++) {
      f = F[k]
      if (D[f] == "-" || !present(f)) continue
      line = "| " L[f] " | " D[f] " |"
      for (i = 1; i <= nan; i++) {
        o = med("ours", f); b = med(AN[i], f)
        if (o == "") c = (why("ours", f) == "-" ? "-" : "ours " why("ours", f))
        else if (b == "") c = (why(AN[i], f) == "-" ? "-" : AN[i] " " why(AN[i], f))
        else if (b + 0 == 0) c = "-"
        else c = sprintf("%.2f", o / b)
        line = line " " c " |"
      }
      print line
    }
  }' "$out/figures.tsv" "$raw" > "$out/tables.md"
rm -f "$out/figures.tsv"

# Throughput against threads, one line per allocator: one file per family
# of figures (batch: threads_N, bulk: bulk_N).
for fam in threads bulk; do
  {
    printf 'threads'
    for a in "${names[@]}"; do printf ' %s' "$a"; done
    printf '\n'
    for t in 1 2 4 8; do
      printf '%s' "$t"
      for a in "${names[@]}"; do
        v=$(awk -v a="$a" -v f="${fam}_$t" '$1 == a && $3 == f { print $4 }' "$raw" \
            | awk "$BENCH_AWK"'{ x[NR] = $1 } END { print NR ? median_of(x, NR) : "NaN" }')
        printf ' %s' "$v"
      done
      printf '\n'
    done
  } > "$out/$fam.dat"
done

png=
if command -v gnuplot > /dev/null 2>&1 && grep -q -E ' (threads|bulk)_' "$raw"; then
  term=pngcairo
  gnuplot -e 'set terminal pngcairo' > /dev/null 2>&1 || term=png
  # One panel per family that has figures: the batch and the bulk pattern.
  panels=()
  grep -q ' threads_' "$raw" && panels+=("threads|Batch (1000 live objects of 8-512 B per thread, one replaced at a time)")
  grep -q ' bulk_' "$raw" && panels+=("bulk|Bulk (per thread: 1000 blocks of 8-512 B allocated, then all freed in random order)")
  {
    echo "set terminal $term size 900,$((360 * ${#panels[@]} + 40))"
    echo "set output '$out/throughput.png'"
    echo "set multiplot layout ${#panels[@]},1 title \"Throughput against threads: $(nproc) CPUs, ${cpu//\"/}; median of $R\""
    echo "set xlabel 'threads'"
    echo "set ylabel 'M malloc+free pairs/s (all threads)'"
    echo "set logscale x 2"
    echo "set xtics (1, 2, 4, 8)"
    echo "set xrange [0.9:9]"
    echo "set yrange [0:*]"
    echo "set key outside right top"
    echo "set grid"
    for p in "${panels[@]}"; do
      echo "set title '${p#*|}'"
      echo "plot for [i=2:$((n + 1))] '$out/${p%%|*}.dat' using 1:i with linespoints lw 2 pt 7 title columnheader(i)"
    done
    echo "unset multiplot"
  } | gnuplot > /dev/null 2>>"$log"
  [ -s "$out/throughput.png" ] && png=$out/throughput.png
fi

{
  echo "<!-- SPDX-License-Identifier: MIT -->"
  echo "# Allocator benchmark: latest results"
  echo
  echo "Written by \`bench/run.sh\` (see \`bench/README.md\`)."
  echo
  cat "$out/machine.txt"
  echo
  cat "$out/tables.md"
  echo
  if [ -n "$png" ]; then
    echo "![throughput against threads](throughput.png)"
    echo
  fi
  echo "### Notes from the runs"
  echo
  sed 's/^/- /' "$notes"
} > "$out/latest.md"
rm -f "$out/machine.txt" "$out/tables.md" "$out/notes.txt"

cat "$out/latest.md"
echo >&2
echo "run.sh: wrote $out/latest.md${png:+, $png}, $raw (took ${elapsed} s)" >&2
