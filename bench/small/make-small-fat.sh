set -e
rm -rf layout bundle
umoci init --layout layout
umoci new --image layout:fat
umoci unpack --image layout:fat bundle >/dev/null
cp -a /usr/share bundle/rootfs/usr-share
mkdir -p bundle/rootfs/etc && cp -a /etc/. bundle/rootfs/etc/ 2>/dev/null || true
echo bench > bundle/rootfs/etc/hostname
umoci repack --refresh-bundle --image layout:fat bundle
cp -a /usr/lib/python3 bundle/rootfs/python3 2>/dev/null || cp -a /usr/lib/x86_64-linux-gnu/perl-base bundle/rootfs/perl
umoci repack --image layout:fat bundle
rm -rf bundle
echo done
