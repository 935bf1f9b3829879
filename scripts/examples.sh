#!/usr/bin/env bash
# Run the library examples (host/examples, shown in the README's
# "Library" section) on an image made here: `build` plain and through the
# layer-cache plugin (cold, then warm), and `copy` to a second layout and
# to a dir-cas plugin store. Each example exits non-zero if anything is
# wrong. Then the SDK's quick start, built from the text of sdk/README.md
# as a fresh crate outside the workspace and checked by `rumoci driver
# test`; and a builder crate (tests/builder) on the library, resolved with
# the newest compatible dependencies, built without a warning in rumoci's
# code. scripts/test.sh runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build -q -p rumoci --bin rumoci
R=target/debug/rumoci
# a small "fat"-like image: a base plus one layer of a few hundred KiB
$R init --layout "$work/img"
$R new --image "$work/img:base"
mkdir -p "$work/tree/etc" "$work/tree/usr/share/doc"
echo base >"$work/tree/etc/motd"
for i in $(seq 1 40); do head -c $((i * 1000)) /dev/urandom >"$work/tree/usr/share/doc/f$i"; done
$R insert --image "$work/img:base" "$work/tree" /

cargo run -q -p rumoci --example build -- "$work/img" base built
# the plugins, built as the driver tests build them (so cached from there)
plugins=target/tmp/plugins
CARGO_TARGET_DIR=$plugins cargo build -q --release --target wasm32-wasip2 \
  --config profile.release.debug=false --config profile.release.strip=true \
  -p layer-cache -p dir-cas
P=$plugins/wasm32-wasip2/release
cache="$P/layer_cache.wasm,dir=$work/cache"
cargo run -q -p rumoci --example build -- "$work/img" base cold "$cache"
cargo run -q -p rumoci --example build -- "$work/img" base warm "$cache"

cargo run -q -p rumoci --example copy -- "$work/img" built "$work/other"
cargo run -q -p rumoci --example copy -- "$work/img" built "$work/plugin-store" "$P/dir_cas.wasm"

# --- the SDK's quick start, exactly as sdk/README.md writes it ---
# Every code block of its "## Quick start" section whose first line names a
# file (`# Cargo.toml`, `// src/lib.rs`) becomes that file of a fresh crate;
# the path dependency points at this checkout's sdk/.
qs="$work/quickstart"
mkdir -p "$qs/src" "$qs/.cargo"
awk -v dir="$qs" '
  /^## / { inqs = ($0 == "## Quick start") }
  !inqs { next }
  /^```/ { if (fence) { fence = 0; file = "" } else { fence = 1; first = 1 }; next }
  fence && first {
    first = 0
    if (($1 == "#" || $1 == "//") && NF == 2 && $2 ~ /^[.A-Za-z][.A-Za-z0-9_\/-]*\.(toml|rs)$/) file = dir "/" $2
  }
  fence && file != "" { print > file }
' sdk/README.md
for f in Cargo.toml .cargo/config.toml src/lib.rs; do
  [ -s "$qs/$f" ] || { echo "sdk/README.md's quick start has no $f block" >&2; exit 1; }
done
grep -q '{ path = "/path/to/rumoci/sdk" }' "$qs/Cargo.toml" ||
  { echo "sdk/README.md's quick start does not depend on /path/to/rumoci/sdk" >&2; exit 1; }
sed -i "s|\"/path/to/rumoci/sdk\"|\"$PWD/sdk\"|" "$qs/Cargo.toml"
# as the README says: a plain `cargo build --release` in the crate (the
# target directory is kept here between runs, for speed)
QT="$PWD/target/tmp/quickstart"
(cd "$qs" && env -u CARGO_BUILD_TARGET CARGO_TARGET_DIR="$QT" cargo build -q --release)
$R driver test "$QT/wasm32-wasip2/release/mine.wasm" >"$work/quickstart.out" ||
  { cat "$work/quickstart.out"; exit 1; }
tail -n 1 "$work/quickstart.out"

# --- a builder on the library, with the newest compatible dependencies ---
# tests/builder is its own workspace; its Cargo.lock is made here (not the
# repository's), so a new release of a dependency that breaks the build or
# warns in rumoci's code shows up here first.
B="$PWD/target/outside"
(cd tests/builder && cargo update -q)
for features in --no-default-features ""; do
  out=$(cd tests/builder && CARGO_TARGET_DIR="$B" cargo build $features --color never 2>&1) ||
    { echo "$out"; exit 1; }
  # warnings in dependencies are theirs; one in rumoci's crates fails
  if echo "$out" | grep -qE '^warning: `rumoci[a-z-]*` \(' ||
    echo "$out" | grep -A3 '^warning' | grep -qE -- '--> .*/(core|engine|wasm|host|conform|tests/builder)/'; then
    echo "tests/builder $features: warnings in rumoci's code:"; echo "$out"; exit 1
  fi
done
# (the last build, with `wasm`), plain and through the layer cache
mkdir -p "$work/builder" "$work/builder-cached"
"$B/debug/rumoci-builder-check" "$work/img" base built-outside "$work/builder"
"$B/debug/rumoci-builder-check" "$work/img" base built-outside-cached "$work/builder-cached" \
  "$P/layer_cache.wasm,dir=$work/cache"
