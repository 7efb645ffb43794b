# SPDX-License-Identifier: MIT
# lib.sh: what the bench/ drivers share (sourced, POSIX sh): finding the preloaded libraries, the machine's description, medians.

# A shared library by soname: ldconfig's cache, then the usual directories.
find_lib() {
  local name d p
  for name in "$@"; do
    p=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n { print $NF; exit }')
    if [ -n "$p" ] && [ -f "$p" ]; then echo "$p"; return 0; fi
    for d in "/usr/lib/$(gcc -print-multiarch 2>/dev/null)" /usr/lib64 /usr/lib \
             /usr/local/lib; do
      if [ -f "$d/$name" ]; then echo "$d/$name"; return 0; fi
    done
  done
  return 1
}

# A Debian package's version; nothing where dpkg does not know it.
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

# The CPU's model name, else the architecture.
cpu_model() {
  local m
  m=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
  [ -n "$m" ] || m=$(uname -m)
  echo "$m"
}

# The load average (1, 5 and 15 minutes): recorded with every run, since
# other work on the machine spoils the figures.
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null; }

# awk functions, put in front of a program ("$BENCH_AWK"'...'):
#   median_of(x, c): the median of x[1..c] (sorts them in place), c > 0;
#   wide_spread(x, c, m): 1 if x[1..c] spread by more than 25% of m, the
#     mark the reports put on a figure whose repetitions disagree.
# Insertion sort: a figure has a handful of repetitions.
BENCH_AWK='
function median_of(x, c,   i, j, t) {
  for (i = 2; i <= c; i++) {
    t = x[i]
    for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]
    x[j + 1] = t
  }
  return c % 2 ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2
}
function wide_spread(x, c, m,   i, lo, hi) {
  lo = hi = x[1]
  for (i = 2; i <= c; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i] }
  return m > 0 && (hi - lo) / m > 0.25
}
'
