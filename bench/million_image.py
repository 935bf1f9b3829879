#!/usr/bin/env python3
"""The million-file benchmark image: one layer of 1,000,000 small files in
1,000 directories (`d000/f000` … `d999/f999`, contents as bench/image.py's
`many`), tagged `million` in OUT_DIR/layout.

    bench/million_image.py OUT_DIR [DIRS FILES]

(DIRS and FILES, 1000 and 1000 by default, make a smaller image to try
things on.)

Made without creating a million files: the tar stream is written directly
with Python's tarfile into `pigz -1` (or `gzip -1`), its diff_id hashed on
the way, then the config, manifest and index are written by hand. Reruns
reuse an existing OUT_DIR/layout/index.json.
"""
import os
import sys

# bench/copy.py would shadow the standard library's copy (tarfile needs it)
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402

DIRS, FILES = 1000, 1000
MTIME = 1700000000


class HashingWriter:
    """A write-only file object: hashes what passes and forwards it."""

    def __init__(self, out):
        self.out = out
        self.sha = hashlib.sha256()

    def write(self, b):
        self.sha.update(b)
        self.out.write(b)
        return len(b)

    def flush(self):
        self.out.flush()


def blob(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return d, len(data)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def make(out, dirs=DIRS, files=FILES):
    layout = os.path.join(out, "layout")
    if os.path.exists(os.path.join(layout, "index.json")):
        return layout
    shutil.rmtree(layout, ignore_errors=True)
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    tmp = os.path.join(blobs, "layer.tmp")
    gz = ["pigz", "-1", "-n"] if shutil.which("pigz") else ["gzip", "-1", "-n"]
    with open(tmp, "wb") as raw:
        proc = subprocess.Popen(gz, stdin=subprocess.PIPE, stdout=raw, bufsize=1 << 20)
        hw = HashingWriter(proc.stdin)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
            for d in range(dirs):
                ti = tarfile.TarInfo(f"d{d:03d}/")
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
                tar.addfile(ti)
                for i in range(files):
                    data = f"file {d}/{i}\n".encode() * (i % 7 + 1)
                    ti = tarfile.TarInfo(f"d{d:03d}/f{i:03d}")
                    ti.mode, ti.mtime, ti.size = 0o644, MTIME, len(data)
                    tar.addfile(ti, _Bytes(data))
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit(f"{gz[0]} failed")
    diff_id = hw.sha.hexdigest()
    ldig = file_sha256(tmp)
    lsize = os.path.getsize(tmp)
    os.rename(tmp, os.path.join(blobs, ldig))
    config = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "bench/million_image.py"}],
    }
    cdig, csize = blob(blobs, json.dumps(config, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{cdig}", "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{ldig}", "size": lsize}],
    }
    mdig, msize = blob(blobs, json.dumps(manifest, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{mdig}", "size": msize,
                       "annotations": {"org.opencontainers.image.ref.name": "million"}}],
    }
    with open(os.path.join(layout, "index.json.tmp"), "w") as f:
        json.dump(index, f, separators=(",", ":"))
    os.rename(os.path.join(layout, "index.json.tmp"), os.path.join(layout, "index.json"))
    return layout


class _Bytes:
    """The smallest file object tarfile.addfile reads from."""

    def __init__(self, data):
        self.data = data

    def read(self, n=-1):
        d, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return d


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4):
        raise SystemExit(__doc__)
    sizes = [int(a) for a in sys.argv[2:]]
    print(make(os.path.abspath(sys.argv[1]), *sizes))
