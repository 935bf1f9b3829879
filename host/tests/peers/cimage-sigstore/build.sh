#!/bin/sh
# Build the containers/image sigstore peer (see README.md) as $1, from
# Debian's containers/image source with its sigstore stubs restored.
set -eu
out=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=/usr/share/gocode/src/github.com/containers/image
[ -d "$src" ] || { echo "missing $src: apt-get install golang-github-containers-image-dev" >&2; exit 3; }
mkdir -p "$work/gopath/src/github.com/containers" "$work/gopath/src/cimagepeer"
cp -r "$src" "$work/gopath/src/github.com/containers/image"
img="$work/gopath/src/github.com/containers/image"
stub='errors.New(`Debian-local change: sigstore disabled`)'
# each stub's return line calls the restored function instead (the
# unreachable return keeps the file's imports used)
sed -i "s|return nil, $stub|if true { return verifySigstorePayloadRestored(publicKey, unverifiedPayload, unverifiedBase64Signature, rules) }; return nil, $stub|" "$img/signature/internal/sigstore_payload.go"
sed -i "s|return sarRejected, $stub|if true { return pr.isSignatureAcceptedRestored(ctx, image, sig) }; return sarRejected, $stub|" "$img/signature/policy_eval_sigstore.go"
sed -i "s|return signature.Sigstore{}, $stub|if true { return signRestored(m, dockerReference, privateKeyFile, passphrase) }; return signature.Sigstore{}, $stub|" "$img/signature/sigstore/sign.go"
for f in signature/internal/sigstore_payload.go signature/policy_eval_sigstore.go signature/sigstore/sign.go; do
    grep -q Restored "$img/$f" || { echo "build.sh: the stub in $f was not found" >&2; exit 1; }
done
cp "$here/restore/internal.go" "$img/signature/internal/restored.go"
cp "$here/restore/policy.go" "$img/signature/restored_sigstore.go"
cp "$here/restore/sign.go" "$img/signature/sigstore/restored.go"
cp "$here/main.go" "$work/gopath/src/cimagepeer/main.go"
# "new" code (a go.mod beside it): GOPATH mode then reads .../v5/... imports
# as the Debian tree's paths (minimal module compatibility)
printf 'module cimagepeer\n\ngo 1.19\n' > "$work/gopath/src/cimagepeer/go.mod"
cd "$work/gopath/src/cimagepeer"
GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOFLAGS= GOPROXY=off \
    GOCACHE="${GOCACHE:-$work/cache}" CGO_ENABLED=0 \
    go build -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" -o "$out" .
