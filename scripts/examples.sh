#!/usr/bin/env bash
# Run the library examples (host/examples, shown in the README's
# "Library" section) on an image made here: `build` plain and through the
# layer-cache plugin (cold, then warm), and `copy` to a second layout and
# to a dir-cas plugin store. Each example exits non-zero if anything is
# wrong. scripts/test.sh runs this.
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
