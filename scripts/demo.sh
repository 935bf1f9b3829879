#!/usr/bin/env bash
# The main job, self-contained: build rumoci, make an image, inspect, tag,
# interoperate with the Go umoci and skopeo, and collect garbage.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -q
R=$PWD/target/release/rumoci
work=$(mktemp -d /tmp/rumoci-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

say "$R" init --layout "$work/layout"
say "$R" new --image "$work/layout:base"
mkdir -p "$work/app/bin"
printf '#!/bin/sh\necho hello from rumoci\n' > "$work/app/bin/hello"
chmod 755 "$work/app/bin/hello"
say "$R" insert --image "$work/layout:base" --tag v1 "$work/app" /opt/app
say "$R" config --image "$work/layout:v1" --config.cmd /opt/app/bin/hello --author "demo <demo@example.org>"
say "$R" verify --layout "$work/layout"
say "$R" ls --layout "$work/layout"
say "$R" stat --image "$work/layout:v1"
echo; echo "# the Go umoci reads what rumoci wrote"
say umoci unpack --image "$work/layout:v1" "$work/bundle"
say ls "$work/bundle"
say cat "$work/bundle/rootfs/opt/app/bin/hello"
echo; echo "# skopeo copies it"
say skopeo copy "oci:$work/layout:v1" "oci-archive:$work/v1.tar"
say "$R" rm --image "$work/layout:base"
say "$R" gc --layout "$work/layout"
say "$R" ls --layout "$work/layout"
echo; echo "demo finished"
