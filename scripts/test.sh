#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite.
#
# Only the native crates (host, sdk: the workspace's default members) are
# built for the host; the plugins are wasm32-wasip2 components, which the
# driver tests build themselves (a cdylib plugin does not link natively).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --all-targets
cargo test "$@"
# the library examples (build step, copy), on an image made there
scripts/examples.sh
# the plugins' own unit tests (they build for the host target in test mode)
cargo test -p layer-cache -p overlay -p registry -p s3
# the library's and the SDK's docs build without a warning (broken links, missing docs)
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p rumoci-core -p rumoci-engine -p rumoci-wasm -p rumoci-conform -p rumoci-sign -p rumoci -p rumoci-driver-sdk
# the SDK is publishable: its package (with the WIT inside) builds on its own
cargo package -q -p rumoci-driver-sdk --allow-dirty
# every fuzz target for a short bounded time (20 s each)
scripts/fuzz.sh --ci
