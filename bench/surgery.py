#!/usr/bin/env python3
"""Benchmark `rumoci squash` and `rumoci export` against the Go umoci way
of doing the same, side by side in one run, and against the floor (just
decompressing the layers).

    bench/surgery.py LAYOUT:TAG [--runs N] [--work DIR] [--rumoci PATH]

Scenarios, each run interleaved (rumoci, umoci, rumoci, …), wall time and
peak RSS per process (wait4, the largest process of a pipeline):

* export: `rumoci export --image L:T -o OUT.tar` vs
  `umoci unpack --image L:T B && tar -C B/rootfs --numeric-owner --xattrs -cf OUT.tar .`
  (the Go umoci has no export: unpack to disk, then tar);
* squash: `rumoci squash --image L:T --tag sq` on a copy of the layout vs
  the same through the Go umoci (`unpack`, `tar -c`, `new`, `raw add-layer`
  of the tar: its only way to make one layer of many);
* floor: `pigz -dc` (or `gzip -dc` without pigz) of every layer blob to
  /dev/null, timed once: no squash or export can read its input faster.

Work happens in --work (default /dev/shm: CPU-bound figures). Build
rumoci first: `cargo build --release` (or give --rumoci).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import RUMOCI, UMOCI, numbered_dirs, print_ratios, run  # noqa: E402


def layer_blobs(layout, tag):
    """The layer blob paths of LAYOUT:TAG (a plain manifest tag)."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    for d in index["manifests"]:
        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            break
    else:
        raise SystemExit(f"{layout}: no tag {tag}")

    def blob(digest):
        alg, hexd = digest.split(":", 1)
        return os.path.join(layout, "blobs", alg, hexd)

    with open(blob(d["digest"])) as f:
        manifest = json.load(f)
    return [blob(l["digest"]) for l in manifest["layers"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image", help="LAYOUT:TAG")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/dev/shm")
    ap.add_argument("--rumoci", default=RUMOCI)
    args = ap.parse_args()
    layout, tag = args.image.rsplit(":", 1)
    layout = os.path.abspath(layout)
    work = tempfile.mkdtemp(prefix="rumoci-surgery-bench-", dir=args.work)
    results = {}
    try:
        fresh = numbered_dirs(work, "w")

        def rumoci_export(d):
            return [args.rumoci, "export", "--image", f"{layout}:{tag}", "-o", d + ".tar"]

        def umoci_export(d):
            return ["sh", "-ec",
                    f"{UMOCI} unpack --image {layout}:{tag} {d} >/dev/null; "
                    f"tar -C {d}/rootfs --numeric-owner --xattrs -cf {d}.tar ."]

        def rumoci_squash(d):
            shutil.copytree(layout, d, symlinks=True)
            return [args.rumoci, "squash", "--image", f"{d}:{tag}", "--tag", "sq"]

        def umoci_squash(d):
            shutil.copytree(layout, d, symlinks=True)
            return ["sh", "-ec",
                    f"{UMOCI} unpack --image {d}:{tag} {d}.b >/dev/null; "
                    f"tar -C {d}.b/rootfs --numeric-owner --xattrs -cf {d}.tar .; "
                    f"{UMOCI} new --image {d}:sq; "
                    f"{UMOCI} raw add-layer --image {d}:sq {d}.tar"]

        scenarios = {
            "export": (rumoci_export, umoci_export),
            "squash (all layers)": (rumoci_squash, umoci_squash),
        }
        env = dict(os.environ)
        env.pop("SOURCE_DATE_EPOCH", None)
        for name, (r_argv, u_argv) in scenarios.items():
            times = {"rumoci": [], "umoci": []}
            rss = {"rumoci": [], "umoci": []}
            for _ in range(args.runs):
                for tool, argv in (("rumoci", r_argv), ("umoci", u_argv)):
                    d = fresh()
                    t, m = run(argv(d), env=env)
                    times[tool].append(t)
                    rss[tool].append(m)
                    for p in (d, d + ".b"):
                        shutil.rmtree(p, ignore_errors=True)
                    if os.path.exists(d + ".tar"):
                        os.remove(d + ".tar")
            results[name] = (times, rss)
        blobs = layer_blobs(layout, tag)
        dec = "pigz" if shutil.which("pigz") else "gzip"
        t, _ = run(["sh", "-c", f"{dec} -dc {' '.join(blobs)} > /dev/null"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(os.path.getsize(b) for b in blobs)
    print(f"image {args.image}: {len(blobs)} layers, {size / 1e6:.0f} MB compressed; "
          f"{args.runs} runs each, work in {args.work}")
    print_ratios(results, "umoci", "umoci+tar")
    print(f"floor: {dec} -dc of the layer blobs: {t:.3f}s")


if __name__ == "__main__":
    main()
