#!/usr/bin/env python3
"""A million files: rumoci against the Go umoci, side by side in the same
run, on a disk directory with the page cache dropped before every measured
command.

    bench/million.py [--runs N] [--tools rumoci,umoci] [--cache DIR]
                     [--work DIR] [--no-floor] [--no-build]
                     [--rumoci BINARY]

The image (one layer of 1,000,000 small files in 1,000 directories) is
made once by bench/million_image.py under --cache. Each run, for each tool
in turn, on a copy of the layout under --work: `unpack`, `repack` of the
unchanged bundle ("repack nothing"), `repack` after appending to one file
("repack one change"), then `stat`; then the bundle is removed (untimed).
The floor `igzip -dc LAYER | bsdtar -xf -` is timed once per run. Wall time
and peak RSS (wait4 ru_maxrss) per command; the table gives medians, the
largest RSS, and rumoci's ratio to the Go umoci (and to the floor).
Needs root (drop_caches); installs isal and libarchive-tools if missing.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = {"rumoci": os.path.join(ROOT, "target", "release", "rumoci"), "umoci": "/usr/bin/umoci"}
TAG = "million"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import run  # noqa: E402


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def cold(argv):
    drop_caches()
    return run(argv)


def layer_blob(layout):
    idx = json.load(open(os.path.join(layout, "index.json")))
    d = idx["manifests"][0]["digest"]
    man = json.load(open(os.path.join(layout, "blobs", *d.split(":"))))
    return os.path.join(layout, "blobs", *man["layers"][0]["digest"].split(":"))


def remove(path):
    if os.path.exists(path):
        subprocess.run(["rm", "-rf", path], check=True)


def one_tool(name, src, work, res):
    tool = TOOLS[name]
    layout = os.path.join(work, f"layout-{name}")
    bundle = os.path.join(work, f"bundle-{name}")
    remove(layout)
    remove(bundle)
    shutil.copytree(src, layout)
    image = f"{layout}:{TAG}"
    res["unpack"][name].append(cold([tool, "unpack", "--image", image, bundle]))
    res["repack nothing"][name].append(cold([tool, "repack", "--image", image, bundle]))
    with open(os.path.join(bundle, "rootfs", "d500", "f500"), "a") as f:
        f.write("changed\n")
    res["repack one change"][name].append(cold([tool, "repack", "--image", image, bundle]))
    res["stat"][name].append(cold([tool, "stat", "--image", image]))
    print(f"{name}: " + ", ".join(f"{n} {v[name][-1][0]:.2f}s/{v[name][-1][1] // 1024}MB"
                                  for n, v in res.items()), flush=True)
    # removing a million files takes minutes on a slow disk (untimed)
    remove(bundle)
    remove(layout)


def floor(src, work):
    root = os.path.join(work, "floor-root")
    remove(root)
    os.makedirs(root)
    r = cold(["sh", "-c", f"igzip -dc {layer_blob(src)} | bsdtar -xf - -C {root}"])
    remove(root)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tools", default="rumoci,umoci")
    ap.add_argument("--cache", default="/var/tmp/rumoci-bench-million")
    ap.add_argument("--work", default="/var/tmp")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--rumoci", help="the rumoci binary to measure (implies --no-build)")
    args = ap.parse_args()
    if args.rumoci:
        TOOLS["rumoci"] = os.path.abspath(args.rumoci)
        args.no_build = True
    if os.geteuid() != 0:
        raise SystemExit("needs root (drop_caches)")
    tools = [t for t in args.tools.split(",") if t]
    missing = [p for t, p in (("igzip", "isal"), ("bsdtar", "libarchive-tools"), ("pigz", "pigz"))
               if shutil.which(t) is None]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if "rumoci" in tools and not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "rumoci"], cwd=ROOT, check=True)
    src = os.path.join(args.cache, "layout")
    if not os.path.exists(os.path.join(src, "index.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "million_image.py"), args.cache],
                       check=True)
    if subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", args.work], capture_output=True,
                      text=True).stdout.strip() == "tmpfs":
        raise SystemExit(f"{args.work} is a tmpfs: this benchmark is for a disk")
    names = ["unpack", "repack nothing", "repack one change", "stat"]
    res = {n: {t: [] for t in tools} for n in names}
    floors = []
    work = tempfile.mkdtemp(prefix="rumoci-million-", dir=args.work)
    try:
        for i in range(args.runs):
            for t in tools:
                print(f"run {i + 1}", end=" ", flush=True)
                one_tool(t, src, work, res)
            if not args.no_floor:
                floors.append(floor(src, work))
                print(f"run {i + 1} floor: {floors[-1][0]:.2f}s/{floors[-1][1] // 1024}MB", flush=True)
    finally:
        remove(work)

    def med(xs):
        return statistics.median(t for t, _ in xs), max(r for _, r in xs) // 1024

    head = "| command | " + " | ".join(f"{t} s | {t} RSS MB" for t in tools)
    if tools[:2] == ["rumoci", "umoci"]:
        head += " | rumoci / umoci time | rumoci / umoci RSS"
    print(f"\n{args.runs} run(s), medians; caches dropped before each command; work dir {args.work}\n")
    print(head + " |")
    print("|" + "---|" * (head.count("|")))
    for n in names:
        cells = []
        for t in tools:
            s, m = med(res[n][t])
            cells += [f"{s:.2f}", f"{m}"]
        if tools[:2] == ["rumoci", "umoci"]:
            (rs, rm), (us, um) = med(res[n]["rumoci"]), med(res[n]["umoci"])
            cells += [f"{rs / us:.3f}", f"{rm / max(um, 1):.2f}"]
        print(f"| {n} | " + " | ".join(cells) + " |")
    if floors:
        fs, fm = med(floors)
        line = f"\nfloor `igzip -dc | bsdtar -xf -`: {fs:.2f} s, {fm} MB"
        if "rumoci" in tools:
            line += f"; rumoci unpack / floor {med(res['unpack']['rumoci'])[0] / fs:.2f}"
        print(line)


if __name__ == "__main__":
    main()
