#!/usr/bin/env bash
# Build the distribution binary and install it with its man pages and shell
# completions:
#   scripts/install.sh [PREFIX]        (default PREFIX: /usr/local)
# installs
#   PREFIX/bin/rumoci
#   PREFIX/share/man/man1/rumoci.1, rumoci-unpack.1, rumoci-raw-add-layer.1, …
#   PREFIX/share/bash-completion/completions/rumoci
#   PREFIX/share/zsh/site-functions/_rumoci
#   PREFIX/share/fish/vendor_completions.d/rumoci.fish
# DESTDIR is honoured (staged installs for packagers). RUMOCI_PROFILE picks
# the cargo profile (default dist: stripped, LTO; release keeps line tables).
set -euo pipefail

prefix=${1:-/usr/local}
profile=${RUMOCI_PROFILE:-dist}
root="${DESTDIR:-}$prefix"
here=$(cd "$(dirname "$0")/.." && pwd)

cd "$here"
cargo build --locked -p rumoci --profile "$profile"
bin="$here/target/$profile/rumoci"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" generate man "$tmp/man"
"$bin" generate completions "$tmp/completions"

install -d "$root/bin" "$root/share/man/man1" \
  "$root/share/bash-completion/completions" \
  "$root/share/zsh/site-functions" \
  "$root/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$root/bin/rumoci"
install -m 0644 "$tmp"/man/*.1 "$root/share/man/man1/"
install -m 0644 "$tmp/completions/rumoci.bash" "$root/share/bash-completion/completions/rumoci"
install -m 0644 "$tmp/completions/_rumoci" "$root/share/zsh/site-functions/_rumoci"
install -m 0644 "$tmp/completions/rumoci.fish" "$root/share/fish/vendor_completions.d/rumoci.fish"
echo "installed rumoci into $root (man rumoci-unpack; completions for bash, zsh, fish)"
