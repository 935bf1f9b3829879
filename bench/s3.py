#!/usr/bin/env python3
"""The S3 content store against the tools users have today, side by side in
one run, on a local SeaweedFS (`weed mini`, with credentials: every request
rumoci sends is signed by its host, AWS Signature V4):

* copy: `rumoci copy --to-driver s3.wasm,… L:TAG IMG:TAG` (a layout holding
  only that image, to a fresh prefix) against `rclone copy` of the same
  layout directory (its blobs, index.json, oci-layout) to another prefix;
* unpack: `rumoci --driver s3.wasm,… unpack` of the image from the bucket
  against `rumoci --driver registry.wasm,url=… unpack` of it from a local
  Debian `docker-registry` (filesystem storage), both into a fresh bundle.

    bench/s3.py LAYOUT:TAG [--runs N] [--work DIR]

Wall time (median) and peak RSS per tool. Work happens in --work (default
/dev/shm). Needs target/release/rumoci, the plugins built for release
(`cargo build --release --target wasm32-wasip2 -p s3 -p registry`), `weed`
(scripts/deps.sh puts it in ~/.cache/rumoci/s3-venv), rclone and skopeo.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    REGISTRY_WASM, RUMOCI, free_port, image_bench_setup, plugin, print_ratios, record, run,
    start_registry, stop_servers)

KEY, SECRET = "benchkey", "bench-secret-key"


def weed_binary():
    venv = os.path.expanduser("~/.cache/rumoci/s3-venv/bin/weed")
    return venv if os.path.exists(venv) else shutil.which("weed")


def start_weed(work):
    """`weed mini` on free loopback ports with one identity; (process, url)."""
    conf = os.path.join(work, "s3.json")
    with open(conf, "w") as f:
        json.dump({"identities": [{"name": "bench", "credentials": [
            {"accessKey": KEY, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    data = os.path.join(work, "weed")
    os.makedirs(data)
    p = [free_port() for _ in range(10)]
    names = ["s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
             "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port",
             "admin.port.grpc"]
    args = [weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *[f"-{n}={v}" for n, v in zip(names, p)], "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={conf}"]
    log = open(os.path.join(work, "weed.log"), "w")
    proc = subprocess.Popen(args, cwd=work, stdout=log, stderr=log)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", p[0]), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{p[0]}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("weed mini did not start")


def rclone_env(url):
    """An rclone remote `W:` for the SeaweedFS at url, from the environment."""
    # rclone's S3 client cannot take a custom CA bundle: none is needed here
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return dict(env, RCLONE_CONFIG_W_TYPE="s3", RCLONE_CONFIG_W_PROVIDER="SeaweedFS",
                RCLONE_CONFIG_W_ENDPOINT=url, RCLONE_CONFIG_W_ACCESS_KEY_ID=KEY,
                RCLONE_CONFIG_W_SECRET_ACCESS_KEY=SECRET, RCLONE_CONFIG_W_REGION="us-east-1")


MAKE_BUCKETS = """
import sys, time, boto3
url, key, secret, *buckets = sys.argv[1:]
c = boto3.client("s3", endpoint_url=url, aws_access_key_id=key,
                 aws_secret_access_key=secret, region_name="us-east-1")
for b in buckets:
    for attempt in range(100):
        try:
            c.create_bucket(Bucket=b)
            break
        except Exception:
            if attempt == 99:
                raise
            time.sleep(0.3)
"""


def make_buckets(url, buckets):
    """Create the buckets with boto3 (moto[server] brings it; retried: the
    S3 gateway answers before its filer is up). In a child python, away
    from this directory, whose copy.py would shadow the standard module."""
    subprocess.run([sys.executable, "-c", MAKE_BUCKETS, url, KEY, SECRET, *buckets],
                   check=True, cwd="/", env={k: v for k, v in os.environ.items()
                                             if k != "AWS_CA_BUNDLE"})


def main():
    args, layout, tag, work, env = image_bench_setup(3, "rumoci-s3-bench-")
    env = dict(env, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET)
    s3_wasm = plugin("s3")
    procs = []
    results = {}
    try:
        weed, url = start_weed(work)
        procs.append(weed)
        renv = rclone_env(url)
        make_buckets(url, ["rumoci", "rclone"])
        # a layout holding only the image, so both copy the same blobs
        only = os.path.join(work, "only")
        subprocess.run([RUMOCI, "copy", "--no-referrers", f"{layout}:{tag}", f"{only}:{tag}"],
                       check=True, env=env)
        s3 = f"{s3_wasm},url={url},bucket=rumoci"
        times = {"rumoci": [], "rclone": []}
        rss = {"rumoci": [], "rclone": []}
        for i in range(args.runs):
            record(times, rss, "rumoci", run([RUMOCI, "copy", "--to-driver", f"{s3},prefix=c{i}",
                                              f"{only}:{tag}", f"img:{tag}"], env=env))
            record(times, rss, "rclone", run(["rclone", "copy", "--s3-no-check-bucket", only,
                                              f"W:rclone/c{i}/img"], env=renv))
        results["copy layout -> s3"] = (times, rss)

        # unpack from the bucket against unpack from a local registry
        reg, port = start_registry(work, "reg")
        procs.append(reg)
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{only}:{tag}",
                        f"docker://127.0.0.1:{port}/bench/app:{tag}"], check=True)
        times = {"rumoci": [], "registry": []}
        rss = {"rumoci": [], "registry": []}
        for i in range(args.runs):
            for tool in ("rumoci", "registry"):
                d = os.path.join(work, f"u{tool}{i}")
                if tool == "rumoci":
                    argv = [RUMOCI, "--driver", f"{s3},prefix=c0", "unpack", "--image",
                            f"img:{tag}", f"{d}/bundle"]
                else:
                    argv = [RUMOCI, "--driver",
                            f"{REGISTRY_WASM},url=http://127.0.0.1:{port},dir={d}/spool",
                            "unpack", "--image", f"bench/app:{tag}", f"{d}/bundle"]
                record(times, rss, tool, run(argv, env=env))
                shutil.rmtree(d, ignore_errors=True)
        results["unpack from s3 vs registry"] = (times, rss)
    finally:
        stop_servers(procs, work)
    print(f"image {args.image}, {args.runs} runs each, work in {args.work}")
    for name, (times, rss) in results.items():
        other = [k for k in times if k != "rumoci"][0]
        print_ratios({name: (times, rss)}, other, other)


if __name__ == "__main__":
    main()
