# SPDX-License-Identifier: MIT
# exports_common.sh: what check_exports.sh and check_exports_aomalloc.sh share (sourced; $me names the caller).

for tool in nm readelf; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$me: SKIP: $tool not found" >&2
    exit 77
  fi
done

status=0
fail() {
  echo "$me: FAIL: $*" >&2
  status=1
}

# $1's dynamic symbols, defined ($2 = --defined-only) or imported
# ($2 = --undefined-only), without version suffixes, sorted; type A
# entries are version-node names, not symbols.  Every library here both
# defines and imports some, so an empty list means nm failed: the caller
# stops (the exit status of nm is lost in the pipe).
dynamic_symbols() {
  nm -D "$2" "$1" | awk '$2 != "A" { print $NF }' | sed 's/@.*//' \
    | LC_ALL=C sort -u
}
need_symbols() {
  # $1: the list, $2: what was asked of nm
  if [ -z "$1" ]; then
    fail "nm $2 listed nothing"
    exit 1
  fi
}

# $defined must be $expected, else a failure naming the difference ($1:
# what the exports should be).
compare_exports() {
  if [ "$defined" != "$expected" ]; then
    missing=$(printf '%s\n' "$expected" | while read -r s; do
                printf '%s\n' "$defined" | grep -qx "$s" || printf ' %s' "$s"
              done)
    extra=$(printf '%s\n' "$defined" | while read -r s; do
              printf '%s\n' "$expected" | grep -qx "$s" || printf ' %s' "$s"
            done)
    fail "exported symbols differ$1; missing:${missing:- none}; extra:${extra:- none}"
  fi
}

# An import of $undefined matching the extended regex $1 fails ($2: why).
check_forbidden() {
  bad=$(printf '%s\n' "$undefined" | grep -E "$1" | tr '\n' ' ')
  if [ -n "$bad" ]; then
    fail "imports $bad- $2"
  fi
}

# The imports both libraries must avoid on every signal path (the malloc
# family and stdio differ: each script checks them itself).
check_forbidden_common() {
  check_forbidden '^__(atomic|sync)_' \
    'out-of-line atomics (libatomic) may take locks'
  # Thread-specific data: only pthread_key_create (called by a constructor,
  # outside every signal path) and pthread_setspecific (a thread's first
  # cache creation, key < 32: glibc stores it without allocating) are
  # allowed, for flushing a thread's cache when the thread exits.
  check_forbidden '^pthread_(mutex|spin|rwlock|cond|once|barrier|key_delete|getspecific)|^sem_|^mtx_|^cnd_|^call_once$|^tss_' \
    'locks or thread-specific data are neither lock-free nor async-signal-safe'
  check_forbidden '^__tls_get_addr$' \
    'general-dynamic TLS: glibc may malloc on a thread'"'"'s first access (use the initial-exec TLS model)'
}
