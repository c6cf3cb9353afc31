#!/usr/bin/python3
"""Image benchmarks, each beside a baseline measured in the same run.

  bench/bench_images.py [--runs N] [--skip-cold] [--json FILE]

  1. cold debian_slim build (empty store), vs debootstrap of the same
     suite and packages run by hand on the host;
  2. warm rebuild of an unchanged spec (debian_slim, a 40 MiB tree of
     2000 files, a command, env), vs `tar -c TREE | sha256sum` of the same
     tree (the client hashes the files it adds: the least a rebuild can do);
  3. rebuild after changing the last step (a command), vs the same command
     in a fresh sandbox of the same layers (`hutch run`): what the build
     adds is the commit, the layer and the record;
  4. sandbox start (create -> first output of a command) on a 10-layer
     image, beside a 1-layer image (busybox) and the 1-layer debian_slim.

Needs root, runsc, debootstrap, the Debian mirror, and a build in ./build
(or $HUTCH_BUILD_DIR). --skip-cold reuses the session's debian base tar
($HUTCH_TEST_CACHE, as the tests leave it) instead of building one.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import grpc  # noqa: E402

from hutchtest import Daemon, protos, unary  # noqa: E402
from imagetest import DEBIAN_BASE_TAR, build, write_image  # noqa: E402

MIRROR = "http://deb.debian.org/debian"
PACKAGES = "ca-certificates,python3,python3-pip,python-is-python3"


def pct(values, p):
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def stats(values):
    return {"p50_s": round(pct(values, 50), 4), "p99_s": round(pct(values, 99), 4), "n": len(values)}


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def make_tree(root, files=2000, total=40 << 20):
    """A source tree: files in 40 directories, random content."""
    size = total // files
    for i in range(files):
        d = os.path.join(root, "pkg%02d" % (i % 40))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%04d.bin" % i), "wb") as f:
            f.write(os.urandom(size))


def cold(d, work):
    """hutch's debian_slim from an empty store (d's), vs debootstrap by hand."""
    spec = write_image(work, 'name = "cold"\n[base]\ndebian_slim = { python = "3.11" }\n', "cold.toml")
    t = time.perf_counter()
    b = build(d, spec, timeout=3000)
    hutch_s = time.perf_counter() - t
    phases = [l.strip(" |") for l in b.out.splitlines() if "done in" in l or "made in" in l or "merged in" in l]
    target = tempfile.mkdtemp(prefix="hutch-bench-debootstrap-")
    try:
        t = time.perf_counter()
        subprocess.run(["debootstrap", "--variant=minbase", "--include=" + PACKAGES, "bookworm", target,
                        MIRROR], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        raw_s = time.perf_counter() - t
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return {"hutch_s": round(hutch_s, 1), "debootstrap_s": round(raw_s, 1), "ratio": round(hutch_s / raw_s, 2),
            "hutch_phases": phases}


class Starts:
    """create -> first output of `echo x`, then stop and delete."""

    def __init__(self, d):
        self.pb = protos()
        self.ch = grpc.insecure_channel("unix:" + d.sock)
        s = self.pb["sandbox"]
        self.exec_fn = self.ch.stream_stream(
            "/hutch.v1.Sandboxes/Exec", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=s.ExecResponse.FromString)

    def once(self, image):
        s = self.pb["sandbox"]
        t0 = time.perf_counter()
        sb = unary(self.ch, "/hutch.v1.Sandboxes/Create",
                   s.CreateSandboxRequest(spec=s.SandboxSpec(image=image)), s.Sandbox)
        start = s.ExecRequest(start=s.ExecStart(sandbox_id=sb.id, argv=["echo", "x"]))
        for msg in self.exec_fn(iter([start]), timeout=120):
            if msg.WhichOneof("msg") in ("stdout", "stderr"):
                break
        t = time.perf_counter() - t0
        unary(self.ch, "/hutch.v1.Sandboxes/Stop", s.StopSandboxRequest(id=sb.id), s.Sandbox)
        unary(self.ch, "/hutch.v1.Sandboxes/Delete", s.DeleteSandboxRequest(id=sb.id),
              s.DeleteSandboxResponse)
        return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hutch-bench-images-")
    out = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "runsc": subprocess.run(["runsc", "--version"], capture_output=True,
                                               text=True).stdout.splitlines()[0]},
           "date": time.strftime("%Y-%m-%d")}
    try:
        d = Daemon()
        try:
            if not a.skip_cold:
                print("cold debian_slim build (minutes)...", flush=True)
                out["cold_debian_slim"] = cold(d, work)
                print(" ", out["cold_debian_slim"], flush=True)
            elif os.path.exists(DEBIAN_BASE_TAR):
                d.cli("image", "import", DEBIAN_BASE_TAR, "--name", "debian-base", timeout=600)
            tree = os.path.join(work, "tree")
            make_tree(tree)
            spec = ('name = "app"\n[base]\ndebian_slim = { python = "3.11" }\n'
                    '[[steps]]\nadd_local_dir = { src = "tree", dest = "/app" }\n'
                    '[[steps]]\nrun_commands = "python3 -c \'print(1)\' > /one"\n'
                    '[[steps]]\nenv = { MODE = "bench" }\n'
                    '[[steps]]\nrun_commands = "echo %s > /version"\n')
            path = write_image(work, spec % "first")
            build(d, path, timeout=3000)
            # 2. warm rebuilds, and the baseline: tar + sha256 of the tree.
            warm, tar = [], []
            for _ in range(a.runs):
                b = build(d, path)
                assert b.ran() == [], b
                warm.append(b.seconds)
                tar.append(timed(lambda: subprocess.run(
                    "tar -C %s -cf - . | sha256sum >/dev/null" % tree, shell=True, check=True)))
            out["warm_rebuild"] = {"hutch": stats(warm), "tar_sha256": stats(tar),
                                   "ratio_p50": round(pct(warm, 50) / pct(tar, 50), 2)}
            print("warm rebuild", out["warm_rebuild"], flush=True)
            # 3. the last step changed, and the same command in a sandbox.
            last, plain = [], []
            for i in range(a.runs):
                write_image(work, spec % ("v%d" % i))
                b = build(d, path)
                assert b.ran() == [5], b
                last.append(b.seconds)
                plain.append(timed(lambda: d.cli("run", "--image", "app", "--", "sh", "-c",
                                                 "echo v > /version")))
            out["rebuild_last_step"] = {"hutch": stats(last), "run_same_command": stats(plain),
                                        "ratio_p50": round(pct(last, 50) / pct(plain, 50), 2)}
            print("rebuild after the last step changed", out["rebuild_last_step"], flush=True)
            # 4. starts: 10 layers, 1 layer (busybox), debian_slim (1 big layer).
            ten = ('name = "ten"\n[base]\nbusybox = true\n' +
                   "".join('[[steps]]\nrun_commands = "echo %d > /layer%d"\n' % (i, i) for i in range(9)))
            build(d, write_image(work, ten, "ten.toml"))
            deb = write_image(work, 'name = "deb"\n[base]\ndebian_slim = { python = "3.11" }\n', "deb.toml")
            build(d, deb)
            layers = {n: len(json.loads(d.cli("image", "inspect", n).stdout)["layers"])
                      for n in ("ten", "busybox", "deb")}
            assert layers["ten"] == 10 and layers["busybox"] == 1, layers
            st = Starts(d)
            times = {"ten": [], "busybox": [], "deb": []}
            st.once("busybox")  # warm up
            for _ in range(a.runs * 2):
                for n in times:
                    times[n].append(st.once(n))
            out["start"] = {"10_layers": stats(times["ten"]), "1_layer_busybox": stats(times["busybox"]),
                            "1_layer_debian_slim": stats(times["deb"]),
                            "ratio_10_vs_1_p50": round(pct(times["ten"], 50) / pct(times["busybox"], 50), 2)}
            print("sandbox start", out["start"], flush=True)
        finally:
            d.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
