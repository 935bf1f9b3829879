#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 30 s each).
#   scripts/fuzz.sh [SECONDS]
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the
# pinned stable toolchain (no other toolchain can be installed here).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs"
done
