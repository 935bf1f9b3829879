#!/usr/bin/env python3
"""The benchmark image, made by Debian's tools only (debootstrap and the Go
umoci as the producer, so rumoci is measured on images it did not write).

    bench/image.py OUT_DIR

OUT_DIR/layout is an OCI layout with the tags
  base  one layer: `debootstrap --variant=minbase bookworm` (~7k entries)
  fat   base + python3 installed with apt (a second, ~4k-entry layer)
  edit  fat + a layer of deletions (whole trees, an opaque directory),
        an appended file, hardlinks, symlinks (relative, dangling), a fifo,
        a 200-character name, a setuid file with a user xattr
  many  100,000 small files in 1,000 directories, one layer
  big   one 1 GiB file of random data, one layer
and OUT_DIR/rootfs-base the debootstrap tree (kept: reruns reuse it).
Needs root and a Debian mirror; installs debootstrap, umoci and attr.
"""
import os
import shutil
import subprocess
import sys


def run(*argv, **kw):
    subprocess.run(argv, check=True, **kw)


def umoci(*args):
    run("umoci", *args, stdout=subprocess.DEVNULL)


def mirror():
    """The first Debian mirror apt is configured with."""
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            for line in f:
                if line.startswith("URIs:"):
                    return line.split()[1]
    except OSError:
        pass
    with open("/etc/apt/sources.list") as f:
        for line in f:
            if line.startswith("deb "):
                return line.split()[1]
    raise SystemExit("no Debian mirror configured in apt")


def layer(layout, tag, bundle, change, source=None):
    """Unpack `source` (a tag, or a new empty image), let `change(rootfs)`
    edit it, repack the result as `tag`."""
    if source is None:
        umoci("new", "--image", f"{layout}:{tag}")
        source = tag
    umoci("unpack", "--image", f"{layout}:{source}", bundle)
    change(os.path.join(bundle, "rootfs"))
    umoci("repack", "--image", f"{layout}:{tag}", bundle)
    shutil.rmtree(bundle)


def install_python(rootfs):
    shutil.copy("/etc/resolv.conf", os.path.join(rootfs, "etc/resolv.conf"))
    run("chroot", rootfs, "/bin/sh", "-c",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends python3 >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*")


def edit(r):
    for d in ("usr/share/doc", "usr/share/man", "usr/lib/python3.11/email", "usr/share/zoneinfo"):
        shutil.rmtree(os.path.join(r, d), ignore_errors=True)
    # recreated after its removal: an opaque directory in the layer
    os.makedirs(os.path.join(r, "usr/share/zoneinfo"))
    with open(os.path.join(r, "usr/share/zoneinfo/README"), "w") as f:
        f.write("UTC\n")
    with open(os.path.join(r, "etc/os-release"), "a") as f:
        f.write("edited\n")
    app = os.path.join(r, "opt/app")
    os.makedirs(os.path.join(app, "data"))
    blob = os.path.join(app, "blob.bin")
    with open(blob, "wb") as f:
        f.write(os.urandom(5_000_000))
    os.link(blob, os.path.join(app, "blob-hardlink.bin"))
    os.symlink("../../etc/hostname", os.path.join(app, "hostname-link"))
    os.symlink("/nonexistent/absolute", os.path.join(app, "dangling"))
    os.mkfifo(os.path.join(app, "fifo"))
    with open(os.path.join(app, "long-" + "n" * 200), "w") as f:
        f.write("x" * 300)
    run("setfattr", "-n", "user.bench", "-v", "value", blob)
    os.chmod(blob, 0o4755)


def many(r):
    for d in range(1000):
        p = os.path.join(r, f"d{d:03d}")
        os.makedirs(p)
        for i in range(100):
            with open(os.path.join(p, f"f{i:03d}"), "w") as f:
                f.write(f"file {d}/{i}\n" * (i % 7 + 1))


def big(r):
    with open(os.path.join(r, "big.bin"), "wb") as f:
        for _ in range(1024):
            f.write(os.urandom(1 << 20))


def make(out):
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    missing = [p for t, p in (("debootstrap", "debootstrap"), ("umoci", "umoci"), ("setfattr", "attr"))
               if shutil.which(t) is None]
    if missing:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *missing,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
    base = os.path.join(out, "rootfs-base")
    if not os.access(os.path.join(base, "bin/sh"), os.X_OK):
        shutil.rmtree(base, ignore_errors=True)
        with open(os.path.join(out, "debootstrap.log"), "w") as log:
            run("debootstrap", "--variant=minbase", "bookworm", base, mirror(), stdout=log, stderr=log)
    layout, bundle = os.path.join(out, "layout"), os.path.join(out, "bundle")
    shutil.rmtree(layout, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    umoci("init", "--layout", layout)
    layer(layout, "base", bundle, lambda r: run("cp", "-a", base + "/.", r + "/"))
    umoci("config", "--image", f"{layout}:base", "--config.cmd", "/bin/sh",
          "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    layer(layout, "fat", bundle, install_python, source="base")
    layer(layout, "edit", bundle, edit, source="fat")
    layer(layout, "many", bundle, many)
    layer(layout, "big", bundle, big)
    umoci("gc", "--layout", layout)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    make(sys.argv[1])
