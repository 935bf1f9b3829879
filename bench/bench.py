#!/usr/bin/env python3
"""Benchmark rumoci against the Go umoci, side by side in the same run.

Builds (once, cached) the benchmark image with bench/image.py,
then runs each scenario interleaved — rumoci, umoci, rumoci, umoci, … — at
least --runs times each, on /dev/shm (CPU-bound) and on a disk directory
(real-world). Wall time and peak RSS are taken per process with wait4(2).
Prints a table (median, min, max, ratio, peak RSS) and writes it to
docs/benchmarks.md together with a description of the machine.

    bench/bench.py [--runs N] [--only NAME,...] [--cache DIR] [--no-disk] [--out FILE]

The floor of an unpack (sha256sum of the blobs, zcat, and GNU tar -x of
the plain layers, each timed once) is printed beside it.
"""
import argparse
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUMOCI = os.path.join(ROOT, "target", "release", "rumoci")
REGISTRY_WASM = os.path.join(ROOT, "target", "wasm32-wasip2", "release", "registry.wasm")


def free_port():
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
UMOCI = "/usr/bin/umoci"


def run(argv, cwd=None, env=None):
    """Run argv; return (seconds, peak RSS KiB). Raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{argv} failed ({code}): {err.strip()}")
    return elapsed, usage.ru_maxrss


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


class Scenario:
    """A command measured for both tools. `prepare(tool, work)` runs before
    each measured run (untimed) and returns the argv to time."""

    def __init__(self, name, prepare, floor=None, against=("umoci", None), cleanup=None):
        self.name = name
        self.prepare = prepare
        self.floor = floor
        # run once after the measured runs (e.g. unmount what they mounted)
        self.cleanup = cleanup
        # what rumoci is compared with: ("umoci", None) = the Go umoci, or
        # (label, path) e.g. rumoci's own built-in driver
        self.against = against


def copy_layout(src, work):
    dst = os.path.join(work, "layout")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def scenarios(layout, rootfs_base):
    def layer_blobs(tag):
        idx = json.load(open(os.path.join(layout, "index.json")))
        d = next(m["digest"] for m in idx["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
        man = json.load(open(os.path.join(layout, "blobs", *d.split(":"))))
        return [(os.path.join(layout, "blobs", *l["digest"].split(":")), l["mediaType"])
                for l in man["layers"]]

    def unpack_floor(tag):
        # the hardware floor for an unpack: hash every blob, decompress it,
        # and extract the plain tar with GNU tar (each timed separately)
        def floor(work):
            blobs = layer_blobs(tag)
            plain = []
            for i, (b, mt) in enumerate(blobs):
                p = os.path.join(work, f"layer{i}.tar")
                sh(f"{'zcat' if mt.endswith('gzip') else 'cat'} {b} > {p}")
                plain.append(p)
            t_hash, _ = run(["sha256sum"] + [b for b, _ in blobs])
            t_unzip = sum(run(["sh", "-c", f"zcat {b} > /dev/null"])[0]
                          for b, mt in blobs if mt.endswith("gzip"))
            root = os.path.join(work, "floor-root")
            if os.path.exists(root):
                shutil.rmtree(root)
            os.makedirs(root)
            t_tar = sum(run(["tar", "-xf", p, "-C", root])[0] for p in plain)
            shutil.rmtree(root)
            for p in plain:
                os.remove(p)
            return f"sha256sum {t_hash:.2f} + zcat {t_unzip:.2f} + tar -x {t_tar:.2f}"
        return floor

    def unpack(tag):
        def prep(tool, work):
            b = os.path.join(work, "bundle")
            if os.path.exists(b):
                shutil.rmtree(b)
            return [tool, "unpack", "--image", f"{layout}:{tag}", b]
        return prep

    def config(tool, work):
        l = copy_layout(layout, work)
        return [tool, "config", "--image", f"{l}:fat", "--config.env", "X=1"]

    def gc(tool, work):
        l = copy_layout(layout, work)
        subprocess.run([RUMOCI, "rm", "--image", f"{l}:edit"], check=True)
        return [tool, "gc", "--layout", l]

    def repack_one_file(tool, work):
        # each tool repacks a bundle it unpacked itself (untimed), after a
        # one-file change
        l = copy_layout(layout, work)
        b = os.path.join(work, "bundle")
        if os.path.exists(b):
            shutil.rmtree(b)
        subprocess.run([tool, "unpack", "--image", f"{l}:fat", b], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(b, "rootfs", "etc", "hostname"), "a") as f:
            f.write("changed\n")
        return [tool, "repack", "--image", f"{l}:fat", b]

    def overlay_bundle(work):
        return os.path.join(work, "bundle-overlay")

    def umount_overlay(work):
        b = overlay_bundle(work)
        if os.path.exists(os.path.join(b, "umoci.json")):
            subprocess.run([RUMOCI, "umount", b], check=True)

    def repack_one_file_overlay(tool, work):
        # as repack_one_file, but rumoci's bundle is unpacked through the
        # overlay layer store (store warm after the first run): its repack
        # reads only the overlay upper directory
        l = copy_layout(layout, work)
        if tool != RUMOCI:
            return repack_one_file(tool, work)
        b = overlay_bundle(work)
        umount_overlay(work)
        if os.path.exists(b):
            shutil.rmtree(b)
        store = os.path.join(work, "store-overlay")
        subprocess.run([RUMOCI, "--driver", f"{plugin('overlay')},dir={store}", "unpack",
                        "--image", f"{l}:fat", b], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(b, "rootfs", "etc", "hostname"), "a") as f:
            f.write("changed\n")
        return [RUMOCI, "repack", "--image", f"{l}:fat", b]

    def repack_tree(tool, work):
        # a whole debootstrap tree into one layer on an empty image
        l = copy_layout(layout, work)
        subprocess.run([RUMOCI, "new", "--image", f"{l}:empty"], check=True)
        b = os.path.join(work, "bundle")
        if os.path.exists(b):
            shutil.rmtree(b)
        subprocess.run([tool, "unpack", "--image", f"{l}:empty", b], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sh(f"cp -a {rootfs_base}/. {b}/rootfs/")
        return [tool, "repack", "--image", f"{l}:empty", b]

    def unpack_with_plugin(tag, wasm, warm):
        # rumoci through a plugin; the other side is given by the scenario
        def prep(tool, work):
            b = os.path.join(work, "bundle")
            if os.path.exists(b):
                shutil.rmtree(b)
            if tool != RUMOCI:
                return [tool, "unpack", "--image", f"{layout}:{tag}", b]
            store = os.path.join(work, "store-" + os.path.basename(wasm))
            spec = f"{wasm},dir={store}" if warm else f"{wasm},dir={layout}"
            argv = [RUMOCI, "--driver", spec, "unpack", "--image", f"{layout}:{tag}", b]
            if warm and not os.path.exists(store):
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
                shutil.rmtree(b)
            return argv
        return prep

    out = [Scenario(f"unpack {t}", unpack(t), unpack_floor(t)) for t in ("base", "fat", "many", "big")]
    out += [Scenario("unpack fat via dir-cas plugin (vs built-in)",
                     unpack_with_plugin("fat", plugin("dir_cas"), False),
                     against=("rumoci built-in", RUMOCI + "#builtin")),
            Scenario("unpack fat warm layer-cache",
                     unpack_with_plugin("fat", plugin("layer_cache"), True))]
    out += [Scenario("repack 1-file fat", repack_one_file)]
    if os.geteuid() == 0:
        out += [Scenario("repack 1-file fat via overlay", repack_one_file_overlay,
                         cleanup=umount_overlay)]
    if os.path.isdir(rootfs_base):
        out += [Scenario("repack full tree", repack_tree)]
    out += [Scenario("config", config), Scenario("gc", gc)]
    return out


def tool_supports(tool, sub):
    return subprocess.run([tool, sub, "--help"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def plugin(name):
    return os.path.join(ROOT, "target", "wasm32-wasip2", "release", f"{name}.wasm")


def measure(scn, runs, work):
    res = {"rumoci": [], "umoci": []}
    other = scn.against[1] or UMOCI
    for _ in range(runs):
        for name, tool in (("rumoci", RUMOCI), ("umoci", other)):
            argv = scn.prepare(tool, work)
            if argv[0].endswith("#builtin"):
                argv[0] = RUMOCI
            res[name].append(run(argv))
    if scn.cleanup:
        scn.cleanup(work)
    return res


def fmt(xs):
    ts = [t for t, _ in xs]
    return statistics.median(ts), min(ts), max(ts), max(r for _, r in xs)


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    umoci_v = subprocess.run([UMOCI, "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), "
            f"kernel {platform.release()}, {umoci_v.splitlines()[0] if umoci_v else 'umoci ?'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--cache", default=os.path.join(ROOT, "target", "bench-image"))
    ap.add_argument("--no-disk", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()

    sh(f"cd {ROOT} && cargo build --release -q")
    sh(f"cd {ROOT} && cargo build --release -q --target wasm32-wasip2 -p dir-cas -p layer-cache -p overlay")
    src = os.path.join(args.cache, "layout")
    if not os.path.exists(os.path.join(src, "index.json")):
        sh(f"python3 {ROOT}/bench/image.py {args.cache}")

    rows = []
    places = [("/dev/shm", "tmpfs")] + ([] if args.no_disk else [(os.path.join(ROOT, "target"), "disk")])
    for base, kind in places:
        with tempfile.TemporaryDirectory(dir=base, prefix="rumoci-bench-") as work:
            layout = copy_layout(src, work)
            scratch = os.path.join(work, "scratch")
            os.makedirs(scratch)
            for scn in scenarios(layout, os.path.join(args.cache, "rootfs-base")):
                if args.only and not any(o in scn.name for o in args.only.split(",")):
                    continue
                sub = scn.name.split()[0]
                if not tool_supports(RUMOCI, sub):
                    print(f"skip {scn.name}: rumoci has no '{sub}' yet", file=sys.stderr)
                    continue
                r = measure(scn, args.runs, scratch)
                rm, um = fmt(r["rumoci"]), fmt(r["umoci"])
                floor = scn.floor(scratch) if scn.floor else ""
                name = scn.name if scn.against[1] is None else f"{scn.name} [other = {scn.against[0]}]"
                rows.append((kind, name, rm, um, floor))
                print(f"{kind:5} {scn.name:14} rumoci {rm[0]:7.3f}s  {scn.against[0]} {um[0]:7.3f}s  "
                      f"ratio {rm[0] / um[0]:5.2f}  rss {rm[3] // 1024}/{um[3] // 1024} MiB  {floor}",
                      flush=True)

    lines = ["# Benchmarks", "", f"Machine: {machine()}.", "",
             f"Each figure: median of {args.runs} interleaved runs (min–max in brackets); "
             "peak RSS per process from wait4(2). Produced by `bench/bench.py`.", "",
             "| where | scenario | rumoci s | umoci s | ratio | rumoci RSS MiB | umoci RSS MiB | floor s |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, name, rm, um, floor in rows:
        lines.append(f"| {kind} | {name} | {rm[0]:.3f} ({rm[1]:.3f}–{rm[2]:.3f}) | "
                     f"{um[0]:.3f} ({um[1]:.3f}–{um[2]:.3f}) | {rm[0] / um[0]:.2f} | "
                     f"{rm[3] // 1024} | {um[3] // 1024} | {floor} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()


def image_bench_setup(default_runs, prefix):
    """Parse the command line of a side-by-side benchmark of one image,
    `LAYOUT:TAG [--runs N] [--work DIR]`, and make its work directory.
    Returns the arguments, the layout, the tag, the work directory and the
    environment to run the tools in (their data beneath the work directory)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("image", help="LAYOUT:TAG")
    ap.add_argument("--runs", type=int, default=default_runs)
    ap.add_argument("--work", default="/dev/shm")
    args = ap.parse_args()
    layout, tag = args.image.rsplit(":", 1)
    work = tempfile.mkdtemp(prefix=prefix, dir=args.work)
    env = dict(os.environ, XDG_DATA_HOME=os.path.join(work, "data"))
    return args, layout, tag, work, env


def print_ratios(results, other, label):
    """One line per scenario of `results` ({name: (times, rss)}, each a
    {tool: [values]}): rumoci's median time against tool `other`'s (shown
    as `label`), the ratio, and each one's peak RSS."""
    w = max([len(n) for n in results] + [8]) + 2
    print(f"{'scenario':<{w}}{'rumoci':>10}{label:>14}{'ratio':>8}{'rumoci RSS':>12}{label + ' RSS':>14}")
    for name, (times, rss) in results.items():
        r, o = statistics.median(times["rumoci"]), statistics.median(times[other])
        print(f"{name:<{w}}{r:>9.3f}s{o:>13.3f}s{r / o:>7.2f}x"
              f"{max(rss['rumoci']) // 1024:>9} MB{max(rss[other]) // 1024:>11} MB")


def numbered_dirs(work, prefix):
    """A function giving a new path under `work` at each call: PREFIX1,
    PREFIX2, …"""
    count = itertools.count(1)
    return lambda: os.path.join(work, f"{prefix}{next(count)}")


def record(times, rss, tool, measured):
    """Add one measurement of `tool`, (seconds, peak RSS) as `run` gives it."""
    t, m = measured
    times[tool].append(t)
    rss[tool].append(m)


def stop_servers(procs, work):
    """Kill and reap the server processes `procs`; remove `work`."""
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(work, ignore_errors=True)


def start_registry(work, name, tls=None):
    """A private Debian `docker-registry` on 127.0.0.1 with its config and
    storage under work/NAME*; with tls, a directory holding server.crt and
    server.key. Returns (process, port)."""
    port = free_port()
    cfg = os.path.join(work, f"{name}.yml")
    http = f"http:\n  addr: 127.0.0.1:{port}\n"
    if tls:
        http += f"  tls:\n    certificate: {tls}/server.crt\n    key: {tls}/server.key\n"
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {work}/{name}-data\n{http}")
    proc = subprocess.Popen(["docker-registry", "serve", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("docker-registry did not start")
