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
packages=(umoci skopeo runc jq attr golang-go busybox-static docker-registry man-db
          libarchive-tools git buildah
          apache2-utils openssl python3
          golang-github-opencontainers-image-spec-dev
          golang-github-vbatts-go-mtree-dev)
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
