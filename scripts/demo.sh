#!/usr/bin/env bash
# The main job, self-contained: build rumoci, make an image, unpack it,
# change it, repack it — with the built-in driver and with the dir-cas
# WebAssembly plugin — and check the result with the Go umoci and skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -q
cargo build --release -q --target wasm32-wasip2 -p dir-cas -p layer-cache
R=$PWD/target/release/rumoci
PLUGIN=$PWD/target/wasm32-wasip2/release/dir_cas.wasm
CACHE=$PWD/target/wasm32-wasip2/release/layer_cache.wasm
work=$(mktemp -d /tmp/rumoci-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "# 1. make an image"
say "$R" init --layout "$work/layout"
say "$R" new --image "$work/layout:base"
mkdir -p "$work/app/bin"
printf '#!/bin/sh\necho hello from rumoci\n' > "$work/app/bin/hello"
chmod 755 "$work/app/bin/hello"
say "$R" insert --image "$work/layout:base" --tag v1 "$work/app" /opt/app
say "$R" config --image "$work/layout:v1" --config.cmd /opt/app/bin/hello --author "demo <demo@example.org>"

echo; echo "# 2. unpack, change, repack (built-in driver)"
say "$R" unpack --image "$work/layout:v1" "$work/bundle"
say ls "$work/bundle"
echo 'echo changed by the demo' >> "$work/bundle/rootfs/opt/app/bin/hello"
mkdir -p "$work/bundle/rootfs/etc" && echo demo > "$work/bundle/rootfs/etc/motd"
say "$R" repack --image "$work/layout:v2" "$work/bundle"
say "$R" stat --image "$work/layout:v2"
say "$R" verify --layout "$work/layout"

echo; echo "# 3. the same through the dir-cas WebAssembly plugin"
say "$R" driver info "$PLUGIN"
say "$R" --driver "$PLUGIN" unpack --image "$work/layout:v2" "$work/bundle-wasm"
rm "$work/bundle-wasm/rootfs/etc/motd"
say "$R" --driver "$PLUGIN" repack --image "$work/layout:v3" "$work/bundle-wasm"
say "$R" --driver "$PLUGIN" ls --layout "$work/layout"

echo; echo "# 4. a layer cache: the second unpack reads no layer at all"
say "$R" --driver "$CACHE,dir=$work/cache" unpack --image "$work/layout:v3" "$work/cold"
say "$R" --log info --driver "$CACHE,dir=$work/cache" unpack --image "$work/layout:v3" "$work/warm"
say diff -r "$work/cold/rootfs" "$work/warm/rootfs" && echo "cold and warm unpacks are identical"

echo; echo "# 5. the Go umoci and skopeo read what rumoci wrote"
say umoci unpack --image "$work/layout:v3" "$work/go-bundle"
say cat "$work/go-bundle/rootfs/opt/app/bin/hello"
test ! -e "$work/go-bundle/rootfs/etc/motd" && echo "etc/motd is gone, as repacked"
say skopeo copy --quiet "oci:$work/layout:v3" "oci-archive:$work/v3.tar"
say "$R" rm --image "$work/layout:base"
say "$R" gc --layout "$work/layout"
say "$R" ls --layout "$work/layout"
echo; echo "demo finished"
