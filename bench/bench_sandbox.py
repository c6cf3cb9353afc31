#!/usr/bin/python3
"""Sandbox benchmarks: hutch beside raw runsc on the same rootfs, same run.

  bench/bench_sandbox.py [--runs N] [--json FILE]

Measures, each next to its raw-runsc baseline taken in the same run:
  1. cold start: create -> first byte of a command's output
  2. exec round trip on a running sandbox
  3. host memory per idle sandbox (PSS, so shared pages are not counted twice)
  4. 20 sandboxes created at once, until each has answered a command

The raw baseline runs `runsc run` / `runsc exec` with the flags and rootfs
the runtime plugin uses (busybox layer, --network=none, --overlay2=none, the
same platform, a memory limit), so the difference is hutch's own overhead:
the API, the agent, namespaces and plumbing. Needs root, runsc, and a build
in ./build (or $HUTCH_BUILD_DIR).
"""
import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import grpc  # noqa: E402

from hutchtest import Daemon, protos, unary  # noqa: E402

RUNSC = shutil.which("runsc") or "/usr/bin/runsc"


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values):
    return {"p50_ms": round(pct(values, 50) * 1000, 2), "p99_ms": round(pct(values, 99) * 1000, 2),
            "n": len(values)}


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_matching(needle):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append(int(p))
    return out


class RawRunsc:
    """runsc driven by hand, with the plugin's flags, as the baseline."""

    def __init__(self, base, layer, platform_name):
        self.base = base
        self.root = os.path.join(base, "runsc-root")
        os.makedirs(self.root)
        self.rootfs = os.path.join(base, "rootfs")
        subprocess.run(["cp", "-a", layer, self.rootfs], check=True)
        self.flags = ["--root=" + self.root, "--network=none", "--overlay2=none",
                      "--platform=" + platform_name]
        self.n = 0
        self.lock = threading.Lock()
        self.live = set()

    def bundle(self, args, memory=512 << 20):
        with self.lock:
            self.n += 1
            n = self.n
        b = os.path.join(self.base, "b%d" % n)
        os.makedirs(b)
        spec = {
            "ociVersion": "1.0.0",
            "process": {"args": args, "cwd": "/", "env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
                        "user": {"uid": 0, "gid": 0}},
            "root": {"path": self.rootfs, "readonly": False},
            "hostname": "raw",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                "resources": {"memory": {"limit": memory},
                              "cpu": {"quota": 100000, "period": 100000}},
                "cgroupsPath": "/hutch-bench/raw-%d-%d" % (os.getpid(), n),
            },
        }
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(spec, f)
        # runsc matches ids by prefix: "raw-1" would also name "raw-10".
        return b, "raw-%d-%d.b" % (os.getpid(), n)

    def run_first_output(self, args):
        b, cid = self.bundle(args)
        t0 = time.perf_counter()
        p = subprocess.Popen([RUNSC] + self.flags + ["run", "--bundle", b, cid],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = p.stdout.read(1)
        t = time.perf_counter() - t0
        p.communicate()
        assert first, "runsc produced no output"
        return t

    def start_idle(self):
        b, cid = self.bundle(["sleep", "100000"])
        self.live.add(cid)
        subprocess.run([RUNSC] + self.flags + ["run", "--detach", "--bundle", b, cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return cid

    def exec_time(self, cid, args):
        t0 = time.perf_counter()
        subprocess.run([RUNSC] + self.flags + ["exec", cid] + args, check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def delete(self, cid):
        self.live.discard(cid)
        subprocess.run([RUNSC] + self.flags + ["delete", "--force", cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def delete_all(self):
        for cid in list(self.live):
            self.delete(cid)


class Hutch:
    def __init__(self, d):
        self.d = d
        self.pb = protos()
        self.ch = grpc.insecure_channel("unix:" + d.sock)
        s = self.pb["sandbox"]
        self.exec_fn = self.ch.stream_stream(
            "/hutch.v1.Sandboxes/Exec", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=s.ExecResponse.FromString)

    def create(self, **kw):
        s = self.pb["sandbox"]
        sb = unary(self.ch, "/hutch.v1.Sandboxes/Create",
                   s.CreateSandboxRequest(spec=s.SandboxSpec(**kw)), s.Sandbox)
        return sb.id

    def first_output(self, sid, argv):
        s = self.pb["sandbox"]
        start = s.ExecRequest(start=s.ExecStart(sandbox_id=sid, argv=argv))
        for msg in self.exec_fn(iter([start]), timeout=120):
            if msg.WhichOneof("msg") in ("stdout", "stderr"):
                return True
        return False

    def run(self, sid, argv):
        s = self.pb["sandbox"]
        return unary(self.ch, "/hutch.v1.Sandboxes/Run",
                     s.RunRequest(start=s.ExecStart(sandbox_id=sid, argv=argv)), s.RunResponse)

    def stop(self, sid):
        s = self.pb["sandbox"]
        unary(self.ch, "/hutch.v1.Sandboxes/Stop", s.StopSandboxRequest(id=sid), s.Sandbox)
        unary(self.ch, "/hutch.v1.Sandboxes/Delete", s.DeleteSandboxRequest(id=sid),
              s.DeleteSandboxResponse)


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    v = subprocess.run([RUNSC, "--version"], capture_output=True, text=True).stdout.splitlines()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "kernel": platform.release(), "runsc": v[0] if v else "?"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--execs", type=int, default=100)
    ap.add_argument("--idle", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--platform", help="runtime-gvisor platform (default: its probe's choice)")
    ap.add_argument("--json")
    a = ap.parse_args()

    results = {"machine": machine()}
    d = Daemon('[plugin.runtime-gvisor]\nplatform = "%s"\n' % a.platform if a.platform else "")
    base = tempfile.mkdtemp(prefix="hutch-bench-")
    raw = None
    try:
        h = Hutch(d)
        caps = {}
        st = unary(h.ch, "/hutch.v1.Daemon/Status", h.pb["daemon"].StatusRequest(),
                   h.pb["daemon"].StatusResponse)
        for p in st.plugins:
            if p.kind == "runtime":
                caps = {c.key: c.value for c in p.capabilities}
        plat = caps.get("platform", "systrap")
        results["machine"]["platform"] = plat
        # The builtin image exists after the first create.
        warm = h.create()
        h.run(warm, ["true"])
        layer = os.path.join(d.state, "images", "builtin", "busybox")
        raw = RawRunsc(base, layer, plat)

        # 1. cold start
        hr, rr = [], []
        for i in range(a.runs):
            t0 = time.perf_counter()
            sid = h.create()
            assert h.first_output(sid, ["echo", "hi"])
            hr.append(time.perf_counter() - t0)
            h.stop(sid)
            rr.append(raw.run_first_output(["echo", "hi"]))
        results["cold_start"] = {"hutch": summary(hr), "raw_runsc_run": summary(rr),
                                 "overhead_p50_pct": round((pct(hr, 50) / pct(rr, 50) - 1) * 100, 1)}

        # 2. exec round trip
        he, re_ = [], []
        cid = raw.start_idle()
        for i in range(a.execs):
            t0 = time.perf_counter()
            r = h.run(warm, ["true"])
            he.append(time.perf_counter() - t0)
            assert r.exit_code == 0
            if i < max(20, a.execs // 3):
                re_.append(raw.exec_time(cid, ["true"]))
        raw.delete(cid)
        results["exec_round_trip"] = {"hutch": summary(he), "raw_runsc_exec": summary(re_),
                                      "speedup_p50": round(pct(re_, 50) / pct(he, 50), 1)}

        # 3. memory per idle sandbox
        ids = [h.create() for _ in range(a.idle)]
        for sid in ids:
            h.run(sid, ["true"])
        time.sleep(2)
        per = [sum(pss_kb(p) for p in pids_matching(sid)) for sid in ids]
        raws = [raw.start_idle() for _ in range(a.idle)]
        time.sleep(2)
        per_raw = [sum(pss_kb(p) for p in pids_matching(c + " ") + pids_matching(c + "\n"))
                   for c in raws]
        for c in raws:
            raw.delete(c)
        for sid in ids:
            h.stop(sid)
        results["idle_memory"] = {
            "hutch_pss_mib": round(statistics.mean(per) / 1024, 1),
            "raw_runsc_pss_mib": round(statistics.mean(per_raw) / 1024, 1),
            "hutchd_rss_mib": round(int(open("/proc/%d/status" % d.proc.pid).read()
                                        .split("VmRSS:")[1].split()[0]) / 1024, 1),
        }

        # 4. concurrent create
        def one_hutch(_):
            sid = h.create()
            assert h.run(sid, ["echo", "up"]).stdout_text == "up\n"
            return sid

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(a.concurrent) as ex:
            ids = list(ex.map(one_hutch, range(a.concurrent)))
        th = time.perf_counter() - t0
        for sid in ids:
            h.stop(sid)

        def one_raw(_):
            c = raw.start_idle()
            raw.exec_time(c, ["echo", "up"])
            return c

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(a.concurrent) as ex:
            cids = list(ex.map(one_raw, range(a.concurrent)))
        tr = time.perf_counter() - t0
        for c in cids:
            raw.delete(c)
        results["concurrent_create"] = {"n": a.concurrent, "hutch_s": round(th, 2),
                                        "raw_runsc_s": round(tr, 2),
                                        "ratio": round(th / tr, 2)}
        h.stop(warm)
    finally:
        if raw:
            raw.delete_all()
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)

    print(json.dumps(results, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
