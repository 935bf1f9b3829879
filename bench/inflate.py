#!/usr/bin/env python3
"""Unpack against the decompression limit (issue 25, part 1), side by side
in one run, on tmpfs:

* `rumoci unpack` (ISA-L inflater, the default build);
* `RUMOCI_INFLATE=zlib-rs rumoci unpack` (the fallback inflater, same binary);
* the Go umoci's `unpack`;
* the floors, each over the image's layer blobs to /dev/null: `igzip -dc`
  (ISA-L), `libdeflate-gunzip -c`, `pigz -dc`.

    bench/inflate.py LAYOUT [--tags fat,base,big,many] [--runs N] [--work DIR] [--rumoci PATH]

Every tool runs once per round, interleaved, for --runs rounds; the table
gives medians, rumoci's ratio to `igzip -dc` (the goal: at most 1.5x) and
to the Go umoci. Peak RSS per process (wait4).
"""
import argparse
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import RUMOCI, UMOCI, run  # noqa: E402
from surgery import layer_blobs  # noqa: E402


def floor(tool_argv, blobs):
    """A shell command decompressing every blob to /dev/null."""
    parts = [" ".join(tool_argv + [b]) + " >/dev/null" for b in blobs]
    return ["sh", "-c", " && ".join(parts)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layout")
    ap.add_argument("--tags", default="fat,base,big,many")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/dev/shm")
    ap.add_argument("--rumoci", default=RUMOCI)
    a = ap.parse_args()
    work = os.path.join(a.work, f"rumoci-inflate-{os.getpid()}")
    os.makedirs(work)
    layout = os.path.join(work, "layout")
    shutil.copytree(a.layout, layout)
    zlib_env = dict(os.environ, RUMOCI_INFLATE="zlib-rs")
    tools = {
        "rumoci": lambda b: run([a.rumoci, "unpack", "--image", f"{layout}:{tag}", b]),
        "rumoci zlib-rs": lambda b: run([a.rumoci, "unpack", "--image", f"{layout}:{tag}", b],
                                        env=zlib_env),
        "umoci": lambda b: run([UMOCI, "unpack", "--image", f"{layout}:{tag}", b]),
        "igzip -dc": lambda b: run(floor(["igzip", "-dc"], blobs)),
        "libdeflate-gunzip": lambda b: run(floor(["libdeflate-gunzip", "-c"], blobs)),
        "pigz -dc": lambda b: run(floor(["pigz", "-dc"], blobs)),
    }
    try:
        rows = []
        for tag in a.tags.split(","):
            blobs = layer_blobs(layout, tag)
            times = {t: [] for t in tools}
            rss = {t: [] for t in tools}
            for _ in range(a.runs):
                for name, f in tools.items():
                    bundle = os.path.join(work, "bundle")
                    t, m = f(bundle)
                    times[name].append(t)
                    rss[name].append(m)
                    shutil.rmtree(bundle, ignore_errors=True)
            med = {t: statistics.median(v) for t, v in times.items()}
            rows.append((tag, med, {t: max(v) for t, v in rss.items()}))
        names = list(tools)
        print(f"{a.runs} rounds each, work in {a.work}; medians in seconds, peak RSS in MB")
        print("image " + "".join(f"{n:>19}" for n in names) + "  vs igzip  vs umoci  zlib-rs/isal")
        for tag, med, peak in rows:
            cells = "".join(f"{med[n]:>11.3f}s {peak[n] // 1024:>4}MB" for n in names)
            print(f"{tag:<6}{cells}  {med['rumoci'] / med['igzip -dc']:>6.2f}x"
                  f"  {med['rumoci'] / med['umoci']:>6.2f}x"
                  f"  {med['rumoci zlib-rs'] / med['rumoci']:>6.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
