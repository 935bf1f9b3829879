#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 30 s each).
#   scripts/fuzz.sh [SECONDS]
#   scripts/fuzz.sh --ci        every target for 20 s with a fixed seed (for
#                               CI: the same inputs, in the same order, on
#                               every run, so a run is reproducible)
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the
# pinned stable toolchain (no other toolchain can be installed here).
# Exits non-zero on the first target that finds a crash (the reproducer is
# left in fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
case "${1:-}" in
  --ci) secs=20; seed=(-seed=1) ;;
  -*) echo "usage: $0 [SECONDS | --ci]" >&2; exit 2 ;;
  *) secs=${1:-30}; seed=() ;;
esac
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# New inputs go to a scratch corpus (listed first); the committed seeds in
# corpus/<target> are only read.
scratch=$(mktemp -d /tmp/rumoci-fuzz-corpus.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t" "$scratch/$t"
  # gunzip drives ISA-L, a C library built with autotools whose static
  # link cannot take AddressSanitizer: it runs without (panics, crashes
  # and disagreements with zlib-rs are still caught)
  san=()
  [ "$t" = gunzip ] && san=(--sanitizer none --features isal)
  cargo fuzz run "${san[@]}" "$t" "$scratch/$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 "${seed[@]}"
done
