#!/usr/bin/env python3
"""Pull+unpack from a registry over a slow link, against its two floors,
side by side in one run (issue 25, part 3: "pulls that overlap").

    bench/pull.py LAYOUT:TAG [--runs N] [--work DIR] [--profiles A,B]

The image (and `base`, when the layout has it) is pushed once with
`rumoci copy --to-driver registry.wasm,url=…` to a private Debian
`docker-registry` on 127.0.0.1. In front of it runs a throttling TCP proxy
(this file, `--serve-proxy`; the kernel here has no `netem`): per
direction, one link shared by all connections, with a bandwidth (a byte
takes 1/rate seconds on the link, in the order the chunks arrive) and a
one-way latency added to every chunk; a new connection costs one round
trip before the registry sees it (the TCP handshake); a reader that does
not read stops its sender after a bounded window (4 MiB), as TCP does.
Profiles: A = 50 MB/s + 20 ms, B = 10 MB/s + 50 ms (MB = 10^6 bytes).

Then, interleaved, into a fresh directory each time (median of --runs):

* pull: `rumoci --driver registry.wasm,url=http://PROXY,dir=SPOOL unpack
  --image bench/app:TAG BUNDLE` (through the proxy);
* curl seq: `curl -o /dev/null` of the same documents and blobs (manifest
  by tag, config, layers) through the proxy, one after the other on one
  kept-alive connection;
* curl par: the same with `curl --parallel` (one connection per blob);
* local: `rumoci unpack --image LAYOUT:TAG BUNDLE` (no network).

The floor is max(min(curl seq, curl par), local): a pull cannot beat
fetching the bytes, nor unpacking them once they are here. The goal of the
issue is pull <= 1.1 x floor; pull / min(curl seq, curl par) is printed
too (on a loaded machine the local unpack can exceed the fetch and hide
the network's share). Work happens in --work (default /dev/shm:
CPU-bound figures). Needs target/release/rumoci and the registry plugin
(`cargo build --release && cargo build --release --target wasm32-wasip2
-p registry`), docker-registry and curl.
"""
import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    REGISTRY_WASM, RUMOCI, free_port, image_bench_setup, run, start_registry, stop_servers)

PROFILES = {"A": (50e6, 0.020), "B": (10e6, 0.050)}
CHUNK = 64 << 10
WINDOW = 4 << 20
MANIFEST_ACCEPT = ("application/vnd.oci.image.manifest.v1+json,"
                   "application/vnd.docker.distribution.manifest.v2+json")


# ---------------------------------------------------------------------------
# The throttling proxy (run as a separate process: `--serve-proxy`)

class Link:
    """One direction of the line, shared by every connection: a byte leaves
    1/rate seconds after the one before it, and arrives `latency` later."""

    def __init__(self, rate, latency):
        self.rate, self.latency, self.free_at = rate, latency, 0.0

    def schedule(self, n):
        """When a chunk of n bytes read now is delivered at the far end."""
        now = time.monotonic()
        done = max(now, self.free_at) + n / self.rate
        self.free_at = done
        return done + self.latency


async def pump(reader, writer, link):
    """Carry one direction of one connection over `link`."""
    queue = asyncio.Queue(maxsize=max(1, WINDOW // CHUNK))

    async def deliver():
        while True:
            at, data = await queue.get()
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if data is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                await queue.put((time.monotonic() + link.latency, None))
                break
            await queue.put((link.schedule(len(data)), data))
        await task
    finally:
        task.cancel()


async def proxy_main(listen, upstream, rate, latency):
    up_link, down_link = Link(rate, latency), Link(rate, latency)

    async def handle(creader, cwriter):
        uwriter = None
        try:
            # the TCP handshake: one round trip before the server hears of it
            await asyncio.sleep(2 * latency)
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", upstream)
            await asyncio.gather(pump(creader, uwriter, up_link),
                                 pump(ureader, cwriter, down_link))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (cwriter, uwriter):
                if w is not None:
                    w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def start_proxy(upstream, profile):
    """A throttling proxy in front of 127.0.0.1:upstream; (process, port)."""
    rate, latency = PROFILES[profile]
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-proxy",
                             str(port), str(upstream), str(rate), str(latency)],
                            stdout=subprocess.PIPE)
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("the proxy did not start")
    return proc, port


# ---------------------------------------------------------------------------
# The benchmark

def image_documents(layout, tag):
    """(manifest digest, config digest, [layer digests], total bytes)."""
    idx = json.load(open(os.path.join(layout, "index.json")))
    d = next(m["digest"] for m in idx["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    man = json.load(open(os.path.join(layout, "blobs", *d.split(":"))))
    size = sum(l["size"] for l in man["layers"]) + man["config"]["size"]
    return d, man["config"]["digest"], [l["digest"] for l in man["layers"]], size


def curl_argv(port, tag, config, layers, parallel):
    base = f"http://127.0.0.1:{port}/v2/bench/app"
    argv = ["curl", "-sS", "--fail"]
    if parallel:
        argv += ["--parallel", "--parallel-immediate", "--parallel-max", "16"]
    argv += ["-H", f"Accept: {MANIFEST_ACCEPT}", "-o", "/dev/null", f"{base}/manifests/{tag}"]
    for d in [config, *layers]:
        argv += ["-o", "/dev/null", f"{base}/blobs/{d}"]
    return argv


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-proxy":
        listen, upstream, rate, latency = sys.argv[2:6]
        try:
            asyncio.run(proxy_main(int(listen), int(upstream), float(rate), float(latency)))
        except KeyboardInterrupt:
            pass
        return
    # the profiles are an extra option of this benchmark
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--profiles", default="A,B")
    extra, rest = ap.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    profiles = [p for p in extra.profiles.split(",") if p]
    args, layout, tag, work, env = image_bench_setup(3, "rumoci-pull-bench-")
    procs = []
    rows = []
    try:
        registry, rport = start_registry(work, "plain")
        procs.append(registry)
        reg = f"{REGISTRY_WASM},url=http://127.0.0.1:{rport},dir={work}/push-spool"
        tags = [tag] + (["base"] if tag != "base" else [])
        for t in tags:
            subprocess.run([RUMOCI, "copy", "--to-driver", reg, f"{layout}:{t}",
                            f"bench/app:{t}"], check=True, env=env)
        _, config, layers, size = image_documents(layout, tag)
        proxies = {}
        for p in profiles:
            proc, port = start_proxy(rport, p)
            procs.append(proc)
            proxies[p] = port
        times = {(p, k): [] for p in profiles for k in ("pull", "curl seq", "curl par")}
        times["local"] = []
        n = 0

        def fresh():
            nonlocal n
            n += 1
            d = os.path.join(work, f"run{n}")
            os.makedirs(d)
            return d

        for _ in range(args.runs):
            for p in profiles:
                port = proxies[p]
                d = fresh()
                times[(p, "pull")].append(run(
                    [RUMOCI, "--driver", f"{REGISTRY_WASM},url=http://127.0.0.1:{port},dir={d}/spool",
                     "unpack", "--image", f"bench/app:{tag}", f"{d}/bundle"], env=env)[0])
                shutil.rmtree(d, ignore_errors=True)
                times[(p, "curl seq")].append(
                    run(curl_argv(port, tag, config, layers, False), env=env)[0])
                times[(p, "curl par")].append(
                    run(curl_argv(port, tag, config, layers, True), env=env)[0])
            d = fresh()
            times["local"].append(run([RUMOCI, "unpack", "--image", f"{layout}:{tag}",
                                       f"{d}/bundle"], env=env)[0])
            shutil.rmtree(d, ignore_errors=True)
        local = statistics.median(times["local"])
        for p in profiles:
            pull, seq, par = (statistics.median(times[(p, k)])
                              for k in ("pull", "curl seq", "curl par"))
            floor = max(min(seq, par), local)
            rows.append((p, pull, seq, par, local, pull / floor, pull / min(seq, par)))
    finally:
        stop_servers(procs, work)
    print(f"image {args.image} ({size / 1e6:.1f} MB of config and layers, {len(layers)} layers), "
          f"{args.runs} runs each, work in {args.work}")
    print(f"{'profile':<22}{'pull':>9}{'curl seq':>10}{'curl par':>10}{'local':>9}"
          f"{'pull/floor':>12}{'pull/curl':>11}")
    for p, pull, seq, par, local, ratio, to_curl in rows:
        rate, lat = PROFILES[p]
        name = f"{p} ({rate / 1e6:.0f} MB/s, {lat * 1000:.0f} ms)"
        print(f"{name:<22}{pull:>8.3f}s{seq:>9.3f}s{par:>9.3f}s{local:>8.3f}s{ratio:>11.2f}x"
              f"{to_curl:>10.2f}x")
    print("floor = max(min(curl seq, curl par), local); goal pull/floor <= 1.10")


if __name__ == "__main__":
    main()
