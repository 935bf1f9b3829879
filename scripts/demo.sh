#!/usr/bin/env bash
# The main job, self-contained: build rumoci, make an image, unpack it,
# change it, repack it — with the built-in driver and with the dir-cas
# WebAssembly plugin — then the layer-cache, overlay (as root) and registry
# plugins, and check the results with the Go umoci and skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -q
cargo build --release -q --target wasm32-wasip2 -p dir-cas -p layer-cache -p overlay -p registry
R=$PWD/target/release/rumoci
PLUGIN=$PWD/target/wasm32-wasip2/release/dir_cas.wasm
CACHE=$PWD/target/wasm32-wasip2/release/layer_cache.wasm
OVERLAY=$PWD/target/wasm32-wasip2/release/overlay.wasm
REGISTRY=$PWD/target/wasm32-wasip2/release/registry.wasm
work=$(mktemp -d /tmp/rumoci-demo.XXXXXX)
reg_pid=""
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null
  [ -d "$work/ovl" ] && "$R" umount "$work/ovl" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
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

echo; echo "# 5. an overlay layer store: the rootfs is an overlay mount, repack reads only the upper dir"
if [ "$(id -u)" = 0 ]; then
  say "$R" --driver "$OVERLAY,dir=$work/layers" unpack --image "$work/layout:v3" "$work/ovl"
  say findmnt -n -o FSTYPE,SOURCE "$work/ovl/rootfs"
  echo 'overlay change' > "$work/ovl/rootfs/etc/motd"
  say "$R" repack --image "$work/layout:v4" "$work/ovl"
  say find "$work/ovl/overlay/upper"
  say "$R" umount "$work/ovl"
else
  echo "(skipped: overlay mounts need root, or run the demo inside unshare -Urm)"
fi

echo; echo "# 6. an OCI registry as the content store (Debian's docker-registry on loopback)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/reg"
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/reg/data" "$port" > "$work/reg/config.yml"
docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
reg_pid=$!
python3 - "$port" <<'END'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
END
say skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:v3" "docker://127.0.0.1:$port/demo:v3"
REG="$REGISTRY,url=http://127.0.0.1:$port,dir=$work/reg-spool"
say "$R" --driver "$REG" unpack --image demo:v3 "$work/from-registry"
echo 'pushed by rumoci' > "$work/from-registry/rootfs/etc/motd"
say "$R" --driver "$REG" repack --image demo:v5 "$work/from-registry"
say "$R" --driver "$REG" ls --layout demo
say skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/demo:v5" "oci:$work/pulled:v5"
say umoci unpack --image "$work/pulled:v5" "$work/pulled-bundle"
say cat "$work/pulled-bundle/rootfs/etc/motd"

echo; echo "# 7. the Go umoci and skopeo read what rumoci wrote"
say umoci unpack --image "$work/layout:v3" "$work/go-bundle"
say cat "$work/go-bundle/rootfs/opt/app/bin/hello"
test ! -e "$work/go-bundle/rootfs/etc/motd" && echo "etc/motd is gone, as repacked"
say skopeo copy --quiet "oci:$work/layout:v3" "oci-archive:$work/v3.tar"
say "$R" rm --image "$work/layout:base"
say "$R" gc --layout "$work/layout"
say "$R" ls --layout "$work/layout"
echo; echo "demo finished"
