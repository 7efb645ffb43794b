#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# mimalloc-bench.sh: the public mimalloc-bench suite under LD_PRELOAD of each allocator; medians, ratios to the best, plot.
#
# Usage: bench/run.sh mimalloc-bench [build]   (or MODE=mimalloc-bench
#        bench/run.sh, or this script directly), from the build tree after
#        "make"; "build" only compiles the benchmarks.
# Environment:
#   MIMALLOC_BENCH_DIR    a checkout of https://github.com/daanx/mimalloc-bench
#                         (else one is cloned into MIMALLOC_BENCH_CACHE)
#   MIMALLOC_BENCH_CACHE  clone and build directory
#                         (default ${XDG_CACHE_HOME:-~/.cache}/aomalloc-mimalloc-bench)
#   MIMALLOC_BENCH_BUILD  where the benchmarks are compiled (default CACHE/build)
#   R=N                   repetitions (default 3, QUICK 1)
#   QUICK=1               one repetition of the short benchmarks only
#   BENCHES=".."          subset/order of the benchmarks listed in bench_cmd
#   ALLOCATORS=".."       subset/order of: glibc mimalloc tcmalloc jemalloc ours
#   TIMEOUT_S             seconds before one benchmark run is killed (default 180)
#   AOMALLOC_SO           ours (default: .libs/libaomalloc.so of the build tree)
#   MIMALLOC_SO, JEMALLOC_SO, TCMALLOC_SO   library to LD_PRELOAD for each
#   BENCH_OUT             output directory (default: results/ next to this script)
#
# The suite is never copied into this repository: its sources are compiled
# directly with gcc/g++ (its CMake build wants sources downloaded apart).
# Each run is one process timed by /usr/bin/time (wall time, max RSS).
# Allocators are interleaved: every repetition runs every benchmark with
# every allocator in turn, the order rotated each repetition.
set -u
LC_ALL=C
export LC_ALL

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
out=${BENCH_OUT:-$here/results}
QUICK=${QUICK:-0}
cache=${MIMALLOC_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aomalloc-mimalloc-bench}
build=${MIMALLOC_BENCH_BUILD:-$cache/build}
timeout_s=${TIMEOUT_S:-180}
if [ "$QUICK" != 0 ]; then
  R=${R:-1}
  BENCHES=${BENCHES:-larson2 glibc-thread2 xmalloc-test8 mstress2 cache-scratch2 cache-thrash2}
else
  R=${R:-3}
  BENCHES=${BENCHES:-larson2 larson8 rptest1 rptest2 alloc-test2 glibc-simple glibc-thread2 malloc-large cfrac espresso xmalloc-test8 mstress2 cache-scratch2 cache-thrash2 barnes}
fi
ALLOCATORS=${ALLOCATORS:-glibc mimalloc tcmalloc jemalloc ours}

die() { echo "mimalloc-bench: $*" >&2; exit 1; }
case ${1:-} in
  ''|build) ;;
  *) echo "usage: $0 [build]   (options are environment variables: see the top of $0)" >&2; exit 2 ;;
esac

# ---- The suite's sources -------------------------------------------------
if [ -n "${MIMALLOC_BENCH_DIR:-}" ]; then
  src=$MIMALLOC_BENCH_DIR
elif [ -f "$cache/mimalloc-bench/bench/larson/larson.cpp" ]; then
  src=$cache/mimalloc-bench
else
  mkdir -p "$cache" || die "cannot create $cache"
  echo "mimalloc-bench: cloning https://github.com/daanx/mimalloc-bench into $cache" >&2
  rm -rf "$cache/mimalloc-bench"
  if ! GIT_TERMINAL_PROMPT=0 timeout 300 git clone -q --depth 1 \
         https://github.com/daanx/mimalloc-bench "$cache/mimalloc-bench"; then
    rm -rf "$cache/mimalloc-bench"
    die "cannot clone https://github.com/daanx/mimalloc-bench (no network?).
  Set MIMALLOC_BENCH_DIR to a checkout of it, for example:
    git clone --depth 1 https://github.com/daanx/mimalloc-bench /some/dir
    MIMALLOC_BENCH_DIR=/some/dir bench/run.sh mimalloc-bench"
  fi
  src=$cache/mimalloc-bench
fi
src=$(cd "$src" 2>/dev/null && pwd) || die "MIMALLOC_BENCH_DIR=$MIMALLOC_BENCH_DIR: no such directory"
S=$src/bench
[ -f "$S/larson/larson.cpp" ] || die "$src is not a mimalloc-bench checkout (no bench/larson/larson.cpp); set MIMALLOC_BENCH_DIR"
srcrev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)

# ---- Benchmarks: name -> program and arguments (bench.sh's, with thread
# counts), how its figure is read, and its stdin ---------------------------
# Figure kinds: "time" = wall time; the fixed-duration benchmarks report a
# throughput instead, turned into bench.sh's relative time (k / throughput).
bench_cmd() {
  case $1 in
    larson2) echo "larson 5 8 1000 5000 100 4141 2" ;;
    larson8) echo "larson 5 8 1000 5000 100 4141 8" ;;
    rptest1) echo "rptest 1 0 1 2 500 1000 100 8 16000" ;;
    rptest2) echo "rptest 2 0 1 2 500 1000 100 8 16000" ;;
    alloc-test2) echo "alloc-test 2" ;;
    glibc-simple) echo "glibc-simple" ;;
    glibc-thread2) echo "glibc-thread 2" ;;
    malloc-large) echo "malloc-large" ;;
    cfrac) echo "cfrac 17545186520507317056371138836327483792789528" ;;
    espresso) echo "espresso $S/espresso/largest.espresso" ;;
    xmalloc-test8) echo "xmalloc-test -w 8 -t 5 -s 64" ;;
    mstress2) echo "mstress 2 50 25" ;;
    cache-scratch2) echo "cache-scratch 2 1000 1 2000000 2" ;;
    cache-thrash2) echo "cache-thrash 2 1000 1 2000000 2" ;;
    barnes) echo "barnes" ;;
    *) return 1 ;;
  esac
}
bench_kind() {
  case $1 in
    larson*|rptest*|xmalloc-test*|glibc-thread*) echo rtime ;;
    *) echo time ;;
  esac
}
bench_stdin() {
  case $1 in
    barnes) echo "$S/barnes/input" ;;
    *) echo /dev/null ;;
  esac
}
# The relative time of a fixed-duration benchmark, from its output (as
# mimalloc-bench's bench.sh computes it), or nothing.
rtime_of() {
  case $1 in
    larson*) sed -n 's/.*relative time: *\([0-9.]*\)s.*/\1/p' "$2" | tail -n 1 ;;
    xmalloc-test*) sed -n 's/^rtime: *\([0-9.]*\).*/\1/p' "$2" | tail -n 1 ;;
    rptest*) sed -n 's/.*[^0-9]\([0-9][0-9]*\) memory ops\/CPU second.*/\1/p' "$2" | tail -n 1 \
               | awk '$1 > 0 { printf "%.4f\n", 2000000 / $1 }' ;;
    glibc-thread*) sed -n 's/^\([0-9][0-9]*\) iterations.*/\1/p' "$2" | tail -n 1 \
               | awk '$1 > 0 { printf "%.4f\n", 1000000000 / $1 }' ;;
  esac
}

# ---- Build once ----------------------------------------------------------
# Program -> compiler and sources (relative to $S); flags as bench/README.md says.
build_one() {
  local p=$1 cc=gcc F="-O2 -w" f files=() extra=()
  case $p in
    cfrac)
      for f in cfrac pops pconst pio pabs pneg pcmp podd phalf padd psub pmul pdivmod psqrt \
               ppowmod atop ptoa itop utop ptou errorp pfloat pidiv pimod picmp primes pcfrac pgcd; do
        files+=("$S/cfrac/$f.c"); done
      extra=(-std=gnu89 -DNOMEMOPT=1 -lm) ;;
    espresso)
      for f in cofactor cols compl contain cubestr cvrin cvrm cvrmisc cvrout dominate equiv espresso \
               essen exact expand gasp getopt gimpel globals hack indep irred main map matrix mincov \
               opo pair part primes reduce rows set setc sharp sminterf solution sparse unate utility verify; do
        files+=("$S/espresso/$f.c"); done
      extra=(-std=gnu89 -lm) ;;
    barnes)
      for f in code code_io load grav getparam util; do files+=("$S/barnes/$f.c"); done
      extra=(-std=gnu89 -lm) ;;
    larson) cc=g++; files=("$S/larson/larson.cpp"); extra=(-DCPP=1 -lpthread) ;;
    alloc-test) cc=g++; files=("$S/alloc-test/test_common.cpp" "$S/alloc-test/allocator_tester.cpp")
      extra=(-DBENCH=4 -lpthread) ;;
    cache-scratch|cache-thrash) cc=g++; files=("$S/$p/$p.cpp"); extra=(-lpthread) ;;
    malloc-large) cc=g++; files=("$S/malloc-large/malloc-large.cpp"); extra=(-lpthread) ;;
    xmalloc-test|mstress) files=("$S/$p/$p.c"); extra=(-lpthread) ;;
    rptest) cc=g++; files=("$S/rptest/rptest.c" "$S/rptest/thread.c" "$S/rptest/timer.c")
      extra=(-fpermissive "-I$S/rptest" -lpthread -lm) ;;
    glibc-simple) files=("$S/glibc-bench/bench-malloc-simple.c"); extra=(-lpthread) ;;
    glibc-thread) files=("$S/glibc-bench/bench-malloc-thread.c"); extra=(-lpthread) ;;
    *) return 1 ;;
  esac
  # shellcheck disable=SC2086
  $cc $F -o "$build/$p" "${files[@]}" "${extra[@]}"
}

mkdir -p "$build" "$out" || die "cannot create $build or $out"
# Programs built from other sources (or by another compiler) are rebuilt;
# a directory without a stamp is trusted (programs built by hand).
programs="larson rptest alloc-test glibc-simple glibc-thread malloc-large cfrac espresso xmalloc-test mstress cache-scratch cache-thrash barnes"
stamp="$src $srcrev $(gcc -dumpfullversion 2>/dev/null)"
if [ ! -f "$build/.source" ] || [ "$(cat "$build/.source")" != "$stamp" ]; then
  if [ -f "$build/.source" ]; then
    for p in $programs; do rm -f "$build/$p" "$build/$p.log"; done
  fi
  printf '%s\n' "$stamp" > "$build/.source"
fi
benches=()
for b in $BENCHES; do
  cmd=$(bench_cmd "$b") || die "unknown benchmark $b (known: see bench_cmd in $0)"
  p=${cmd%% *}
  if [ ! -x "$build/$p" ]; then
    echo "mimalloc-bench: compiling $p into $build" >&2
    if ! build_one "$p" > "$build/$p.log" 2>&1; then
      echo "mimalloc-bench: cannot compile $p (see $build/$p.log); $b skipped" >&2
      rm -f "$build/$p"
      continue
    fi
  fi
  benches+=("$b")
done
[ "${#benches[@]}" -gt 0 ] || die "no benchmark to run"
if [ "${1:-}" = build ]; then
  echo "mimalloc-bench: built in $build: ${benches[*]}" >&2
  exit 0
fi

# ---- Allocators ----------------------------------------------------------
declare -A PRELOAD
names=()
for a in $ALLOCATORS; do
  case $a in
    glibc) lib= ;;
    ours)
      if [ -n "${AOMALLOC_SO:-}" ]; then lib=$AOMALLOC_SO
      elif [ -f ./.libs/libaomalloc.so ]; then lib=$(pwd)/.libs/libaomalloc.so
      else lib=$here/../.libs/libaomalloc.so; fi
      [ -f "$lib" ] || die "no $lib: run make first, or set AOMALLOC_SO" ;;
    mimalloc) lib=${MIMALLOC_SO:-$(find_lib libmimalloc.so.2 libmimalloc.so)} ;;
    jemalloc) lib=${JEMALLOC_SO:-$(find_lib libjemalloc.so.2 libjemalloc.so)} ;;
    tcmalloc) lib=${TCMALLOC_SO:-$(find_lib libtcmalloc_minimal.so.4 libtcmalloc.so.4)} ;;
    *) die "unknown allocator $a (glibc mimalloc tcmalloc jemalloc ours)" ;;
  esac
  if [ "$a" != glibc ] && { [ -z "$lib" ] || [ ! -f "$lib" ]; }; then
    echo "mimalloc-bench: $a not installed, skipped" >&2
    continue
  fi
  PRELOAD[$a]=$lib
  names+=("$a")
done
n=${#names[@]}
[ "$n" -gt 0 ] || die "no allocator to run"
command -v /usr/bin/time > /dev/null || die "needs /usr/bin/time (Debian package time)"

# ---- Runs ----------------------------------------------------------------
raw=$out/mimalloc-bench-raw.txt   # bench alloc rep figure wall_s maxrss_KiB status
log=$out/mimalloc-bench.log       # output of failed runs
work=$(mktemp -d "${TMPDIR:-/tmp}/mimalloc-bench.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$work"' EXIT
{
  echo "# mimalloc-bench $srcrev ($src); R=$R; timeout ${timeout_s} s"
  echo "# bench alloc rep figure wall_s maxrss_KiB status (figure: wall time, or bench.sh's relative time for larson, rptest, xmalloc-test, glibc-thread)"
} > "$raw"
: > "$log"
declare -A FAILED=()
load_before=$(loadavg)
start=$(date +%s)
echo "mimalloc-bench: ${names[*]}; $R repetitions; ${benches[*]}" >&2
for ((rep = 1; rep <= R; rep++)); do
  for b in "${benches[@]}"; do
    cmd=$(bench_cmd "$b")
    for ((k = 0; k < n; k++)); do
      a=${names[$(((k + rep - 1) % n))]}
      [ -z "${FAILED[$b $a]:-}" ] || continue
      printf 'mimalloc-bench: [rep %d/%d, %4d s] %-14s %s\n' "$rep" "$R" \
        $(($(date +%s) - start)) "$b" "$a" >&2
      rm -f "$work/time" "$work/out"
      wall=''; rss=''
      # Run in the scratch directory: rptest writes a file into the current one.
      # shellcheck disable=SC2086
      (cd "$work" && timeout -k 5 "$timeout_s" /usr/bin/time -o "$work/time" -f "%e %M" \
         env LD_PRELOAD="${PRELOAD[$a]}" "$build/"$cmd < "$(bench_stdin "$b")" > "$work/out" 2>&1)
      rc=$?
      read -r wall rss < <(tail -n 1 "$work/time" 2>/dev/null)
      fig=
      st=ok
      if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then st="timeout(${timeout_s}s)"
      elif [ "$rc" -gt 128 ]; then st="signal$((rc - 128))"
      elif [ "$rc" != 0 ]; then st="exit$rc"
      elif [ "$(bench_kind "$b")" = rtime ]; then
        fig=$(rtime_of "$b" "$work/out")
        [ -n "$fig" ] || st=no-throughput-in-output
      else
        fig=$wall
      fi
      [[ ${wall:-} =~ ^[0-9.]+$ ]] || wall=-
      [[ ${rss:-} =~ ^[0-9]+$ ]] || rss=-
      if [ "$st" != ok ]; then
        FAILED[$b $a]=$st
        { echo "== $b $a rep $rep: $st"; tail -n 20 "$work/out"; } >> "$log"
        echo "mimalloc-bench: $b with $a: $st; not run again" >&2
        fig=-
      fi
      echo "$b $a $rep ${fig:--} $wall $rss $st" >> "$raw"
    done
  done
done
elapsed=$(($(date +%s) - start))
load_after=$(loadavg)

# ---- Report --------------------------------------------------------------
cpu=$(cpu_model)
gitrev=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null)
md=$out/mimalloc-bench.md
dat=$out/mimalloc-bench.dat
awk -v names="${names[*]}" -v benches="${benches[*]}" -v dat="$dat" "$BENCH_AWK"'
  BEGIN { na = split(names, A, " "); nb = split(benches, B, " ") }
  /^#/ { next }
  {
    b = $1; a = $2
    if ($7 != "ok") { F[b, a] = $7; next }
    c = ++cnt[b, a]; T[b, a, c] = $4 + 0
    if ($6 != "-") { d = ++rcnt[b, a]; M[b, a, d] = $6 + 0 }
  }
  # The c repetitions arr[b, a, 1..c], into x[1..c].
  function reps(arr, b, a, c, x,   i) {
    for (i = 1; i <= c; i++) x[i] = arr[b, a, i]
    return c
  }
  function med(arr, b, a, c,   x) {
    if (!c) return ""
    return median_of(x, reps(arr, b, a, c, x))
  }
  function spread(arr, b, a, c, m,   x) {
    return wide_spread(x, reps(arr, b, a, c, x), m)
  }
  function fmt(x) { return x >= 100 ? sprintf("%.1f", x) : x >= 10 ? sprintf("%.2f", x) : sprintf("%.3f", x) }
  END {
    for (i = 1; i <= nb; i++) {
      b = B[i]; bt[b] = br[b] = ""
      for (j = 1; j <= na; j++) {
        a = A[j]
        mt[b, a] = med(T, b, a, cnt[b, a]); mr[b, a] = med(M, b, a, rcnt[b, a])
        if (mt[b, a] != "" && (bt[b] == "" || mt[b, a] < bt[b])) bt[b] = mt[b, a]
        if (mr[b, a] != "" && (br[b] == "" || mr[b, a] < br[b])) br[b] = mr[b, a]
      }
    }
    h = "| benchmark | figure |"; s = "|---|---|"
    for (j = 1; j <= na; j++) { h = h " " A[j] " |"; s = s "---:|" }
    print "### Time: median figure (ratio to the best; 1.00 = best)"
    print ""
    print h; print s
    for (i = 1; i <= nb; i++) {
      b = B[i]
      line = "| " b " | " (b ~ /^(larson|rptest|xmalloc-test|glibc-thread)/ ? "rel. time" : "s") " |"
      for (j = 1; j <= na; j++) {
        a = A[j]
        if (mt[b, a] == "") { line = line " " ((b, a) in F ? "fails: " F[b, a] : "-") " |"; continue }
        r = bt[b] > 0 ? mt[b, a] / bt[b] : 1
        lr[a] += log(r); nr[a]++
        mark = spread(T, b, a, cnt[b, a], mt[b, a]) ? " †" : ""
        if (mark != "") anyspread = 1
        line = line " " fmt(mt[b, a]) " (" (r < 1.005 ? "**1.00**" : sprintf("%.2f", r)) ")" mark " |"
      }
      print line
    }
    line = "| geometric mean of the ratios | |"
    for (j = 1; j <= na; j++) line = line " " (nr[A[j]] ? sprintf("%.2f", exp(lr[A[j]] / nr[A[j]])) : "-") " |"
    print line
    print ""
    print "### Max RSS: median MiB (ratio to the best; 1.00 = best)"
    print ""
    h = "| benchmark |"; s = "|---|"
    for (j = 1; j <= na; j++) { h = h " " A[j] " |"; s = s "---:|" }
    print h; print s
    for (i = 1; i <= nb; i++) {
      b = B[i]; line = "| " b " |"
      for (j = 1; j <= na; j++) {
        a = A[j]
        if (mr[b, a] == "") { line = line " " ((b, a) in F ? "fails" : "-") " |"; continue }
        r = br[b] > 0 ? mr[b, a] / br[b] : 1
        lm[a] += log(r); nm[a]++
        line = line " " fmt(mr[b, a] / 1024) " (" (r < 1.005 ? "**1.00**" : sprintf("%.2f", r)) ") |"
      }
      print line
    }
    line = "| geometric mean of the ratios |"
    for (j = 1; j <= na; j++) line = line " " (nm[A[j]] ? sprintf("%.2f", exp(lm[A[j]] / nm[A[j]])) : "-") " |"
    print line
    if (anyspread) { print ""; print "† the repetitions spread by more than 25% of the median (every value is in mimalloc-bench-raw.txt)." }
    # Ratios for the plot: benchmark, then time ratio and RSS ratio per allocator.
    printf "benchmark" > dat
    for (j = 1; j <= na; j++) printf " %s", A[j] > dat
    for (j = 1; j <= na; j++) printf " %s", A[j] > dat
    printf "\n" > dat
    for (i = 1; i <= nb; i++) {
      b = B[i]; printf "%s", b > dat
      for (j = 1; j <= na; j++) printf " %s", (mt[b, A[j]] == "" || bt[b] <= 0 ? "?" : sprintf("%.3f", mt[b, A[j]] / bt[b])) > dat
      for (j = 1; j <= na; j++) printf " %s", (mr[b, A[j]] == "" || br[b] <= 0 ? "?" : sprintf("%.3f", mr[b, A[j]] / br[b])) > dat
      printf "\n" > dat
    }
  }' "$raw" > "$work/tables.md"

png=
if command -v gnuplot > /dev/null 2>&1; then
  term=pngcairo
  gnuplot -e 'set terminal pngcairo' > /dev/null 2>&1 || term=png
  # Bars taller than the cap are clipped (their value is in the tables).
  cap=3
  gnuplot > /dev/null 2>>"$log" <<EOF
set terminal $term size $(( (w = 300 + 16 * ${#benches[@]} * (n + 1)) > 900 ? w : 900 )),900
set output '$out/mimalloc-bench.png'
set multiplot layout 2,1 title "mimalloc-bench: ratio to the best (1 = best, lower is better; bars clipped at $cap)\n$(nproc) CPUs, ${cpu//\"/}; median of $R"
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30 nomirror
set yrange [0:$cap]
set grid ytics
set key outside right top
set title 'time (wall, or relative time for the fixed-duration benchmarks)'
plot for [i=2:$((n + 1))] '$dat' using (column(i) > $cap ? $cap : column(i)):xtic(1) title columnheader(i)
set title 'max RSS'
plot for [i=$((n + 2)):$((2 * n + 1))] '$dat' using (column(i) > $cap ? $cap : column(i)):xtic(1) title columnheader(i)
unset multiplot
EOF
  [ -s "$out/mimalloc-bench.png" ] && png=$out/mimalloc-bench.png
fi

{
  echo "<!-- SPDX-License-Identifier: MIT -->"
  echo "# mimalloc-bench: latest results"
  echo
  echo "Written by \`bench/run.sh mimalloc-bench\` (see \`bench/README.md\`)."
  echo
  echo "- machine: $cpu; $(nproc) CPUs ($(nproc --all) online); Linux $(uname -r) $(uname -m)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(ldd --version 2>/dev/null | head -n 1); $(gcc --version 2>/dev/null | head -n 1)"
  echo "- suite: daanx/mimalloc-bench $srcrev, compiled with gcc/g++ -O2"
  echo "- allocators (LD_PRELOAD): $(for a in "${names[@]}"; do printf '%s=%s ' "$a" "${PRELOAD[$a]:-(none)}"; done)"
  echo "- versions: mimalloc $(pkgver libmimalloc2.0), jemalloc $(pkgver libjemalloc2), tcmalloc $(pkgver libtcmalloc-minimal4); ours: ${gitrev:-unknown revision}"
  echo "- run: $R repetition(s), median; allocators interleaved (order rotated each repetition); timeout ${timeout_s} s per run$([ "$QUICK" != 0 ] && echo ', QUICK mode'); $elapsed s in total; load average (1/5/15 min) before: ${load_before:-?}, after: ${load_after:-?}"
  echo
  echo "Time is the wall time of the process, except for larson, rptest,"
  echo "xmalloc-test and glibc-thread: they run for a fixed duration and report a"
  echo "throughput, turned into mimalloc-bench's relative time (larson's own"
  echo "'relative time', 2e6 / rptest's memory ops per CPU second, xmalloc-test's"
  echo "'rtime' = 100 / M frees per second, 1e9 / glibc-thread's iterations), so"
  echo "their ratio to the best is the best throughput / this throughput. Max RSS"
  echo "is /usr/bin/time's %M."
  echo
  cat "$work/tables.md"
  echo
  [ -n "$png" ] && { echo "![ratio to the best per benchmark](mimalloc-bench.png)"; echo; }
  if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "### Failures"
    echo
    for k in "${!FAILED[@]}"; do echo "- $k: ${FAILED[$k]} (output in mimalloc-bench.log)"; done
    echo
  fi
} > "$md"

cat "$md"
echo >&2
echo "mimalloc-bench: wrote $md${png:+, $png}, $raw (took $elapsed s)" >&2
