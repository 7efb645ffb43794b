#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cross CI: aarch64 and i386 builds tested under qemu-user, and the almost-lock-free AO_stack build.
#
# For aarch64-linux-gnu and i686-linux-gnu: a packager-style VPATH build
# (`../configure --host=TRIPLET` with Debian's build flags), libatomic_ops
# taken from that architecture's libatomic-ops-dev unpacked into a sysroot
# folder, `make check` with every test program run under qemu-user.  Both
# must be lock-free (LL/SC pair on aarch64, cmpxchg8b on i386).  Then a
# native build with --enable-almost-lock-free and the `make check` programs
# that use AO_stack.
# Exit status non-zero on any failure; the last line is "N passed, M failed"
# (tests that passed or failed in the three suites, plus the configure
# lock-freedom checks and the build steps).
set -uo pipefail

cd "$(dirname "$0")/.."
top=$PWD

export DEBIAN_FRONTEND=noninteractive
export AM_COLOR_TESTS=no
unset VERBOSE

passed=0
failed=0
failed_logs=()
step_fail() {
  echo "cross: FAIL: $*" >&2
  failed=$((failed + 1))
}
step_ok() {
  echo "cross: ok: $*"
  passed=$((passed + 1))
}

# ---------------------------------------------------------------------------
# Tools.  gcc-multilib is not used for i386: on Debian 12 it conflicts with
# gcc-aarch64-linux-gnu, so both architectures use a cross compiler.  The
# cross libcs are only Recommends of the compilers: named here, since the
# install leaves recommendations out.
deps=(gcc libc6-dev make autoconf automake libtool pkg-config dpkg-dev
      libatomic-ops-dev gcc-aarch64-linux-gnu gcc-i686-linux-gnu qemu-user
      libc6-dev-arm64-cross libc6-dev-i386-cross)
missing=()
for p in "${deps[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

# libatomic-ops-dev:arm64 (or :i386) cannot be installed next to the native
# package (installing it removes the amd64 one), so its .deb is fetched and
# unpacked into a sysroot folder that only pkg-config is pointed at.
foreign=()
for a in arm64 i386; do
  dpkg --print-foreign-architectures | grep -qx "$a" || foreign+=("$a")
done
for a in "${foreign[@]}"; do
  dpkg --add-architecture "$a"
done
if [ ${#missing[@]} -gt 0 ] || [ ${#foreign[@]} -gt 0 ] \
   || ! apt-cache show libatomic-ops-dev:arm64 libatomic-ops-dev:i386 >/dev/null 2>&1; then
  # A mirror caught mid-sync fails one index of many; what was fetched still
  # serves, and any real lack shows up below.
  apt-get update -q || apt-get update -q || echo "cross: apt-get update reported errors" >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y --no-install-recommends "${missing[@]}" \
    || echo "cross: could not install ${missing[*]}" >&2
fi

for a in arm64 i386; do
  sysroot=$top/_sysroot-$a
  if [ -f "$sysroot/usr/include/atomic_ops.h" ]; then
    continue
  fi
  rm -rf "$sysroot" "$top/_sysroot-debs-$a"
  mkdir -p "$top/_sysroot-debs-$a"
  # apt-get download runs as the _apt user where it can: a world-writable
  # folder avoids its "unsandboxed" warning
  chmod 777 "$top/_sysroot-debs-$a"
  if (cd "$top/_sysroot-debs-$a" && apt-get download -q "libatomic-ops-dev:$a") \
     && dpkg -x "$top/_sysroot-debs-$a"/libatomic-ops-dev_*_"$a".deb "$sysroot"; then
    :
  else
    step_fail "could not fetch and unpack libatomic-ops-dev:$a"
  fi
done

# A VPATH build refuses a source tree configured in place (.ci/run builds
# there first): then the builds use a copy of the tracked files.
src=$top
if [ -f "$top/config.status" ]; then
  src=$top/_src-cross
  rm -rf "$src"
  mkdir -p "$src"
  (cd "$top" && git ls-files -z | tar --null -T - -cf - | tar -C "$src" -xf -) \
    || step_fail "copying the sources to $src"
fi
(cd "$src" && autoreconf -fi) || step_fail "autoreconf"
build=$("$src/build-aux/config.guess" 2>/dev/null || gcc -dumpmachine)

# Sum one "# KEY: N" field over the test-suite summaries in a make log.
sum_field() {
  awk -v key="# $1:" 'index($0, key) == 1 { n += $NF } END { print n + 0 }' "$2"
}

# Count the results of a `make check` log; $1 name, $2 log, $3 make's status.
count_check() {
  local name=$1 log=$2 rc=$3 p f s
  p=$(sum_field PASS "$log")
  f=$(( $(sum_field FAIL "$log") + $(sum_field XPASS "$log")
        + $(sum_field ERROR "$log") ))
  s=$(sum_field SKIP "$log")
  echo "cross: $name: $p passed, $f failed, $s skipped"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1   # make check failed without a failing test (a build error)
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    failed_logs+=("$(dirname "$log")")
  fi
}

# The configure line that says whether AO_stack is lock-free.
check_lock_free() {
  local name=$1 log=$2 want=$3 got
  got=$(sed -n 's/^checking whether AO_stack is lock-free\.\.\. //p' "$log")
  if [ "$got" = "$want" ]; then
    step_ok "$name: configure says AO_stack is lock-free: $got"
  else
    step_fail "$name: configure says AO_stack is lock-free: '${got}', expected '$want'"
  fi
}

# ---------------------------------------------------------------------------
# cross_suite TRIPLET DEBARCH QEMU
cross_suite() {
  local triplet=$1 debarch=$2 qemu=$3
  local dir=$top/_build-${triplet%%-*} sysroot=$top/_sysroot-$debarch
  local multiarch pcdir libc_prefix=/usr/$triplet rc
  local -a flags

  multiarch=$(dpkg-architecture -a"$debarch" -qDEB_HOST_MULTIARCH 2>/dev/null)
  pcdir=$sysroot/usr/lib/${multiarch:-$triplet}/pkgconfig
  rm -rf "$dir"
  mkdir -p "$dir"
  # What a Debian package build passes: its flags for the host architecture.
  flags=()
  if command -v dpkg-buildflags >/dev/null 2>&1; then
    flags=("CFLAGS=$(DEB_HOST_ARCH=$debarch dpkg-buildflags --get CFLAGS)"
           "CPPFLAGS=$(DEB_HOST_ARCH=$debarch dpkg-buildflags --get CPPFLAGS)"
           "LDFLAGS=$(DEB_HOST_ARCH=$debarch dpkg-buildflags --get LDFLAGS)")
  fi

  echo "==================== $triplet: configure"
  # PKG_CONFIG_LIBDIR (not only PKG_CONFIG_PATH) so that the build machine's
  # atomic_ops.pc cannot be found instead; the sysroot prefix turns the .pc's
  # /usr/include into the unpacked headers.  Debian 12 has no
  # $triplet-pkg-config wrapper, hence PKG_CONFIG.
  if ! (cd "$dir" && PKG_CONFIG=pkg-config PKG_CONFIG_SYSROOT_DIR=$sysroot \
          PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir \
          "$src/configure" --build="$build" --host="$triplet" --prefix=/usr \
            --libdir="/usr/lib/${multiarch:-$triplet}" "${flags[@]}" \
          > configure.out 2>&1); then
    tail -n 30 "$dir/configure.out"
    step_fail "$triplet: configure"
    return
  fi
  grep -E '^checking (for a double-width CAS|whether the double-width|whether AO_stack|for upstream)' "$dir/configure.out"
  check_lock_free "$triplet" "$dir/configure.out" yes

  echo "==================== $triplet: make"
  if ! make -C "$dir" -j2 > "$dir/make.out" 2>&1; then
    tail -n 40 "$dir/make.out"
    step_fail "$triplet: make"
    return
  fi
  step_ok "$triplet: make"

  # binfmt_misc may be missing, so LOG_COMPILER runs each test program
  # through qemu itself; scripts (check_exports.sh) run natively.  libtool
  # --mode=execute swaps its wrapper script for the real binary in .libs and
  # puts the uninstalled library on LD_LIBRARY_PATH.
  #
  # The cross libc directory must be on LD_LIBRARY_PATH too.  qemu -L makes
  # the guest's loader ld.so from $libc_prefix, but that loader then reads
  # the build machine's /etc/ld.so.cache, which lists the native multilib
  # /lib32/libc.so.6 (libc6-i386, a dependency of lib32gcc-s1) for i386,
  # and, were libc6:arm64 installed, /lib/aarch64-linux-gnu for aarch64.  A
  # libc from another glibc build than its ld.so disagrees with it on the
  # layout of the loader's private data: on i386 the first pthread_create
  # walked the stack cache list at a wrong offset and spun forever with
  # qemu's host signals blocked (the "hang" that no watchdog or timeout
  # could end).  Not a qemu, rseq or futex problem, and not ours: a
  # directory on LD_LIBRARY_PATH is searched before the cache.
  #
  # i386 programs run natively on an x86_64 kernel (IA32 emulation), with
  # the cross ld.so named explicitly so that loader and libc match: qemu-i386
  # 7.2 (Debian 12) mishandles signal frames of threaded i386 programs (its
  # own assertion "IOPL(dc) == iopl" in the translator, a corrupted thread
  # descriptor reported as "rseq registration failed", blocks overwritten),
  # while the same binaries pass natively.  qemu-i386 stays the fallback.
  local runner="$qemu -L $libc_prefix" under_qemu=1
  if [ "$debarch" = i386 ] && [ "${AO_CROSS_I386_QEMU:-}" != 1 ] \
     && [ -x "$libc_prefix/lib/ld-linux.so.2" ] \
     && "$libc_prefix/lib/ld-linux.so.2" --verify "$libc_prefix/lib/libc.so.6" >/dev/null 2>&1; then
    runner=$libc_prefix/lib/ld-linux.so.2
    under_qemu=
    echo "cross: $triplet: tests run natively (IA32) through $runner"
  fi
  # Where this kernel cannot run i386 programs (IA32 emulation disabled:
  # "Exec format error"), the i386 suite runs under qemu-i386 all the same,
  # less the programs that need what qemu-i386 7.2 gets wrong (see above):
  # signals delivered to threads while they run (their frames corrupt
  # blocks and thread descriptors), and readdir of a directory
  # (test_fuzz_replay reads its corpus; qemu's 32-bit getdents drops
  # entries).  They are reported as skipped, with the reason.
  # test_signal_malloc_family and test_malloc_stats_print (tgkill to
  # workers inside the allocator) crash there now and then (SIGSEGV,
  # SIGABRT, a watchdog) as test_signal_all_threads does, and pass under
  # qemu-aarch64 and natively.
  #
  # Under any qemu-user, test_signal_cache_ops (timers and pthread_kill on
  # every worker, many thousand signals a second) starves its workers on
  # this 2-CPU machine: "worker N made no progress" or its watchdog, with
  # the previous release's code as with this one (measured side by side).
  # It runs natively in every other step.
  local qemu_skip=
  if [ -n "$under_qemu" ]; then
    qemu_skip='test_signal_cache_ops'
  fi
  if [ "$debarch" = i386 ] && [ -n "$under_qemu" ]; then
    qemu_skip="$qemu_skip signal_demo test_signal_all_threads test_signal_nested test_signal_first_call test_signal_heap_edge test_signal_thread_exit test_lockfree_parked test_fork_during_alloc test_trim_concurrent_alloc test_cache_after_key_destructors test_signal_malloc_family test_malloc_stats_print test_fuzz_replay"
    echo "cross: $triplet: this kernel does not run i386 programs; under qemu-i386, skipping: $qemu_skip"
  fi
  cat > "$dir/qemu-run" <<EOF
#!/bin/sh
# Run one test of the $triplet build: programs through $runner, scripts natively.
for t in $qemu_skip; do
  if [ "\$(basename "\$1")" = "\$t" ]; then
    echo "\$t: SKIP under qemu-user (see .ci/cross.sh): signals to threads (qemu-i386 corrupts their frames; a storm starves workers), or readdir on qemu-i386"
    exit 77
  fi
done
if head -c 4 "\$1" | grep -q ELF \\
   || sed -n 1,5p "\$1" | grep -q '^# Generated by libtool'; then
  LD_LIBRARY_PATH=$libc_prefix/lib \\
    exec "$dir/libtool" --mode=execute $runner "\$@"
fi
exec "\$@"
EOF
  chmod +x "$dir/qemu-run"

  echo "==================== $triplet: make check (through ${runner%% *})"
  # Emulated code runs 10-30 times slower: short stress phases and a
  # quarter of the iteration counts (the native make check runs them at
  # full strength; here the point is the architecture's code paths, and
  # the i386 suite took over 5 minutes at full counts).
  # AO_TEST_UNDER_QEMU lets the tests that measure their own memory skip
  # that part (/proc/self/status describes the emulator); it must be
  # unset, not empty, for native runs.
  env ${under_qemu:+AO_TEST_UNDER_QEMU=1} \
    AO_TEST_SECONDS="${AO_CROSS_TEST_SECONDS:-0.3}" \
    AO_TEST_SCALE="${AO_CROSS_TEST_SCALE:-0.25}" \
    make -C "$dir" -j2 -k check LOG_COMPILER="$dir/qemu-run" \
    > "$dir/check.out" 2>&1
  rc=$?
  grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):' "$dir/check.out"
  count_check "$triplet" "$dir/check.out" "$rc"
}

cross_suite aarch64-linux-gnu arm64 qemu-aarch64
cross_suite i686-linux-gnu i386 qemu-i386

# ---------------------------------------------------------------------------
# The almost-lock-free AO_stack, built and tested natively so that it does
# not rot.
alf=$top/_build-alf
alf_tests='test_stack_single test_stack_threads test_stack_aba test_compat_76
  test_compat_76_identifiers test_compat_78 test_compat_78_nocx16
  test_upstream_abi test_static_link_names
  test_lockfree_parked test_signal_all_threads check_exports.sh
  check_header_order.sh'
rm -rf "$alf"
mkdir -p "$alf"
echo "==================== almost-lock-free: configure"
if (cd "$alf" && "$src/configure" --enable-almost-lock-free > configure.out 2>&1); then
  check_lock_free almost-lock-free "$alf/configure.out" "no (--enable-almost-lock-free)"
  echo "==================== almost-lock-free: make check"
  if make -C "$alf" -j2 > "$alf/make.out" 2>&1; then
    step_ok "almost-lock-free: make"
    # Only AO_stack differs in this build (the allocator is the same code,
    # lock-free either way, and ran in every other suite): the programs
    # that use AO_stack.
    make -C "$alf/tests" -j2 check TESTS="$(echo $alf_tests)" > "$alf/check.out" 2>&1
    rc=$?
    grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):' "$alf/check.out"
    count_check almost-lock-free "$alf/check.out" "$rc"
  else
    tail -n 40 "$alf/make.out"
    step_fail "almost-lock-free: make"
  fi
else
  tail -n 30 "$alf/configure.out"
  step_fail "almost-lock-free: configure"
fi

# ---------------------------------------------------------------------------
# Logs of the failing tests, before the summary line.
for d in "${failed_logs[@]}"; do
  for log in $(find "$d" -name test-suite.log); do
    if grep -Eq '^# (FAIL|XPASS|ERROR): *[1-9]' "$log"; then
      echo "==================== $log"
      cat "$log"
    fi
  done
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
