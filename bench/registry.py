#!/usr/bin/env python3
"""Pull-and-unpack from a registry: rumoci against skopeo + the Go umoci,
side by side in one run, over plain HTTP and over TLS.

    bench/registry.py LAYOUT:TAG [--runs N] [--work DIR]

The image is pushed once (skopeo) to a private Debian `docker-registry` on
127.0.0.1 (one plain, one with a certificate from a CA made here with
openssl). Then, interleaved, into a fresh directory every time:

* rumoci: `rumoci --driver registry.wasm,url=URL[,ca=CA] unpack --image
  bench/app:TAG BUNDLE` (straight from the registry);
* Go: `skopeo copy docker://… oci:L:TAG && umoci unpack --image L:TAG
  BUNDLE` (skopeo with the CA's directory for TLS).

Wall time (median) and peak RSS per tool. Work happens in --work (default
/dev/shm: CPU-bound figures). Needs target/release/rumoci and the registry
plugin built: `cargo build --release && cargo build --release --target
wasm32-wasip2 -p registry`.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    REGISTRY_WASM, RUMOCI, image_bench_setup, print_ratios, record, run, start_registry,
    stop_servers)


def make_pki(d):
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=bench CA", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey",
         f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext.cnf",
         "-out", f"{d}/server.crt")
    certs = os.path.join(d, "certs.d")
    os.makedirs(certs)
    shutil.copy(f"{d}/ca.crt", certs)
    return f"{d}/ca.crt", certs


def main():
    args, layout, tag, work, env = image_bench_setup(3, "rumoci-registry-bench-")
    procs = []
    results = {}
    try:
        ca, certs = make_pki(work)
        plain, pport = start_registry(work, "plain")
        secure, sport = start_registry(work, "tls", tls=work)
        procs += [plain, secure]
        src = f"oci:{layout}:{tag}"
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", src,
                        f"docker://127.0.0.1:{pport}/bench/app:{tag}"], check=True)
        subprocess.run(["skopeo", "copy", "-q", "--dest-cert-dir", certs, src,
                        f"docker://127.0.0.1:{sport}/bench/app:{tag}"], check=True)
        cases = {
            "http pull+unpack": (f"url=http://127.0.0.1:{pport}",
                                 ["--src-tls-verify=false"], pport),
            "https pull+unpack": (f"url=https://127.0.0.1:{sport},ca={ca}",
                                  ["--src-cert-dir", certs], sport),
        }
        n = 0
        for name, (grant, skopeo_tls, port) in cases.items():
            times = {"rumoci": [], "go": []}
            rss = {"rumoci": [], "go": []}
            for _ in range(args.runs):
                for tool in ("rumoci", "go"):
                    n += 1
                    d = os.path.join(work, f"run{n}")
                    os.makedirs(d)
                    if tool == "rumoci":
                        record(times, rss, tool, run(
                            [RUMOCI, "--driver", f"{REGISTRY_WASM},{grant},dir={d}/spool",
                             "unpack", "--image", f"bench/app:{tag}", f"{d}/bundle"], env=env))
                    else:
                        t1, m1 = run(["skopeo", "copy", "-q", *skopeo_tls,
                                      f"docker://127.0.0.1:{port}/bench/app:{tag}",
                                      f"oci:{d}/L:{tag}"], env=env)
                        t2, m2 = run(["umoci", "unpack", "--image", f"{d}/L:{tag}",
                                      f"{d}/bundle"], env=env)
                        record(times, rss, tool, (t1 + t2, max(m1, m2)))
                    shutil.rmtree(d, ignore_errors=True)
            results[name] = (times, rss)
    finally:
        stop_servers(procs, work)
    print(f"image {args.image}, {args.runs} runs each, work in {args.work}")
    print_ratios(results, "go", "skopeo+umoci")

if __name__ == "__main__":
    main()
