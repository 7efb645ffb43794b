#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Workloads of installed programs for .ci/real_programs.sh: one case, run in the current directory, deterministic output.
#
# Usage: bash cases.sh CASE INPUTS
#   CASE    python | sqlite | git | perl | sort | xz | tar | bash | gccmake
#           (gccreport: the report part of gccmake, in a build tree)
#   INPUTS  directory prepared once by the caller (never under the
#           preload): sort.txt (the sort and xz input), src/ (a copy of the
#           project's tracked files, configure included), repo.git (a bare
#           snapshot of the repository; absent if not in git)
# The caller runs each case twice in fresh directories, with and without
# LD_PRELOAD, and compares stdout byte for byte: everything printed must
# be a function of the inputs only (no times, paths or process ids).
# Exit status non-zero on any error (set -e, pipefail).
set -euo pipefail
export LC_ALL=C TZ=UTC
here=$(cd "$(dirname "$0")" && pwd)
case_name=$1
in=$2

case $case_name in
python)
  /usr/bin/python3 "$here/workload.py"
  ;;
sqlite)
  sqlite3 -batch -bail work.db < "$here/workload.sql"
  ;;
git)
  # clone (pack transfer through upload-pack/index-pack), log, gc
  # (repack with threads), fsck; object ids are the same whatever the
  # allocator, so the listings must be identical.
  git -c init.defaultBranch=main clone -q --no-local --no-hardlinks \
    "$in/repo.git" repo
  cd repo
  git log --all --format='%H %T %an %ad %s' --date=iso-strict-local --stat \
    | sha256sum
  git log --all --oneline | wc -l
  git -c gc.auto=0 -c pack.threads=2 gc -q --aggressive --prune=now
  git fsck --full --strict --no-progress 2>&1
  git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
  git cat-file --batch-all-objects --batch-check | sort | sha256sum
  git archive --format=tar HEAD | sha256sum
  git diff --stat "$(git rev-list --max-parents=0 HEAD | tail -n 1)" HEAD \
    | tail -n 1
  ;;
perl)
  perl "$here/workload.pl" < "$in/sort.txt"
  ;;
sort)
  # Several keys, a small buffer (temporary files, merges) and 2 threads.
  sort --parallel=2 -S 8M -T . -t ' ' -k3,3n -k2,2r -k1,1 "$in/sort.txt" \
    | sha256sum
  sort --parallel=2 -S 64M -u -k2,2 "$in/sort.txt" | sha256sum
  ;;
xz)
  # The compressed stream of the threaded encoder is a function of the
  # input, preset, block size and thread count only.
  xz -T2 -6 --block-size=1MiB -c "$in/sort.txt" > sort.txt.xz
  sha256sum < sort.txt.xz
  xz -T2 -d -c sort.txt.xz | sha256sum
  xz -T2 -2e --block-size=512KiB -c "$in/sort.txt" | xz -T2 -d -c | cmp - "$in/sort.txt"
  xz -l sort.txt.xz | tail -n 1 | tr -s ' '
  ;;
tar)
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$in" -cf src.tar src
  sha256sum < src.tar
  mkdir out
  tar -C out -xf src.tar
  tar -tvf src.tar | sha256sum
  (cd out && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
  tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$in" -cJf src.tar.xz src
  tar -xJOf src.tar.xz | sha256sum
  ;;
bash)
  bash "$here/workload.sh"
  ;;
gccmake)
  # This project, configured and built by programs all running on the
  # preload (make, sh, gcc, cc1, as, ld, libtool, sed, awk ...), then the
  # report below.  The caller compares it with the report of its own
  # plain build of the same sources (case gccreport).
  "$in/src/configure" -q >configure.out 2>&1 || { cat configure.out; exit 1; }
  make -j2 >make.out 2>&1 || { tail -n 40 make.out; exit 1; }
  bash "$here/cases.sh" gccreport "$in"
  ;;
gccreport)
  # Run in a build tree: what the build produced, the libraries' dynamic
  # symbols and the verdicts of a test and of the demonstration built there.
  for lib in .libs/*.so; do
    echo "== $lib"
    nm -D --defined-only "$lib" | awk '{ print $2, $3 }' | sort
  done
  make -C tests test_stack_threads >>make.out 2>&1 || { tail -n 40 make.out; exit 1; }
  tests/test_stack_threads >/dev/null 2>&1 \
    && echo "test_stack_threads: pass" || echo "test_stack_threads: FAIL"
  examples/signal_demo | tail -n 1
  ;;
*)
  echo "cases.sh: unknown case $case_name" >&2
  exit 2
  ;;
esac
