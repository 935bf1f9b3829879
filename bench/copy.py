#!/usr/bin/env python3
"""Benchmark `rumoci copy` against `skopeo copy`, side by side in one run.

    bench/copy.py LAYOUT:TAG [--runs N] [--work DIR]

Scenarios, each run interleaved (rumoci, skopeo, rumoci, …) into a fresh
destination every time, wall time and peak RSS per process (wait4):

* layout -> layout: `rumoci copy SRC DST` vs `skopeo copy oci:SRC oci:DST`;
* layout -> registry: `rumoci copy --to-driver registry.wasm,url=…` vs
  `skopeo copy oci:SRC docker://…` to a private Debian `docker-registry`
  on 127.0.0.1, a new empty registry (own port and storage) for every run
  (skopeo remembers blobs per registry and would mount them from an
  earlier run's repository instead of uploading).

Work happens in --work (default /dev/shm: CPU-bound figures). Needs
target/release/rumoci and the registry plugin built:
`cargo build --release && cargo build --release --target wasm32-wasip2 -p registry`.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    REGISTRY_WASM, RUMOCI, image_bench_setup, numbered_dirs, print_ratios, run, start_registry)


def main():
    args, layout, tag, work, env = image_bench_setup(5, "rumoci-copy-bench-")
    results = {}
    reg = None
    try:
        fresh = numbered_dirs(work, "dst")

        scenarios = {
            "layout -> layout": (
                lambda d: [RUMOCI, "copy", f"{layout}:{tag}", f"{d}:{tag}"],
                lambda d: ["skopeo", "copy", "-q", f"oci:{layout}:{tag}", f"oci:{d}:{tag}"],
            ),
            "layout -> registry": (
                lambda d, port: [RUMOCI, "copy", "--to-driver",
                                 f"{REGISTRY_WASM},url=http://127.0.0.1:{port},dir={d}-spool",
                                 f"{layout}:{tag}", f"bench/app:{tag}"],
                lambda d, port: ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                                 f"docker://127.0.0.1:{port}/bench/app:{tag}"],
            ),
        }
        for name, (r_argv, s_argv) in scenarios.items():
            times = {"rumoci": [], "skopeo": []}
            rss = {"rumoci": [], "skopeo": []}
            remote = "registry" in name
            for _ in range(args.runs):
                for tool, argv in (("rumoci", r_argv), ("skopeo", s_argv)):
                    d = fresh()
                    if remote:
                        os.makedirs(d)
                        reg, port = start_registry(d, "registry")
                        cmd = argv(d, port)
                    else:
                        cmd = argv(d)
                    t, m = run(cmd, env=env)
                    if remote:
                        reg.kill()
                        reg.wait()
                        reg = None
                    times[tool].append(t)
                    rss[tool].append(m)
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.rmtree(d + "-spool", ignore_errors=True)
            results[name] = (times, rss)
    finally:
        if reg is not None:
            reg.kill()
            reg.wait()
        shutil.rmtree(work, ignore_errors=True)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(layout) for f in fs)
    print(f"image {args.image} ({size / 1e6:.0f} MB layout), {args.runs} runs each, work in {args.work}")
    print_ratios(results, "skopeo", "skopeo")

if __name__ == "__main__":
    main()
