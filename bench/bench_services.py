#!/usr/bin/python3
"""Services benchmark: one scaling-group replica (busybox httpd serving a
small static body in a real sandbox) behind hutchd's router, in the same
run as:

  direct    wrk -> the replica's port forward on host loopback (what the
            router itself connects to: the baseline)
  router    wrk -> hutchd's router (path form) -> the replica
  nginx     wrk -> nginx reverse proxy (one worker) -> the replica
  haproxy   wrk -> haproxy (one thread) -> the replica

All on loopback, keep-alive both sides, the router's access log off (as
nginx's is); short autoscaler windows, so that the group goes back to zero
between cold samples in seconds. Rounds alternate the order; the best round per setup is kept
(the machine is shared: noise only slows a run down). Also measured:
deploy().wait_ready() of a one-replica group (busybox, cached), and the
first byte of a request to a group scaled to zero (the router holds it
while a replica starts).

  bench/bench_services.py [--seconds N] [--rounds N] [--connections N]
                          [--cold N] [--json FILE]

The replica is busybox httpd (what the built-in image has): it closes
every connection and forks per request inside gVisor, so it, not the
proxies, bounds requests/s here; the p50 each proxy adds over direct is
the figure to read. Needs wrk, nginx, haproxy and runsc, root, and a build in ./build (or
$HUTCH_BUILD_DIR).
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

import bench_proxy as bp  # noqa: E402
import hutchtest  # noqa: E402

CONFIG = """
[router]
access_log = false
tick = "100ms"
stable_window = "2s"
panic_window = "400ms"
"""
BODY_CMD = ("mkdir -p /www && for i in 1 2 3 4; do "
            "echo 'hello from the backend, a small static body.'; done > /www/index.html && "
            "exec httpd -f -p 8080 -h /www")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--cold", type=int, default=5, help="scale-from-zero samples")
    ap.add_argument("--json")
    a = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy"):
        if not shutil.which(tool):
            sys.exit("bench_services: %s is not installed (scripts/install-deps.sh --test)" % tool)
    d = hutchtest.Daemon(CONFIG)
    os.environ["HUTCH_SOCKET"] = d.sock
    os.environ.pop("HUTCH_ADDRESS", None)
    import hutch
    from hutch import ScalingGroup
    tmp = tempfile.mkdtemp(prefix="hutch-bench-services-")
    os.chmod(tmp, 0o755)
    procs = []
    out = {}
    try:
        # deploy().wait_ready(), image cached (the built-in busybox).
        ready = []
        for i in range(3):
            t0 = time.monotonic()
            sg = ScalingGroup(image="busybox", name="warm%d" % i, port=8080, min_replicas=1,
                              command=["sh", "-c", BODY_CMD]).deploy().wait_ready()
            ready.append((time.monotonic() - t0) * 1000)
            sg.delete()
        out["deploy_wait_ready_ms"] = ready
        print("deploy().wait_ready(): %s ms" % ", ".join("%.0f" % x for x in ready), flush=True)

        # First byte after scale from zero.
        cold = []
        sg = ScalingGroup(image="busybox", name="cold", port=8080, min_replicas=0,
                          max_replicas=1, scaledown_window="1s",
                          command=["sh", "-c", BODY_CMD]).deploy()
        for i in range(a.cold):
            deadline = time.time() + 60
            while sg.refresh().info.ready_replicas or [
                    r for r in sg.replicas if r["state"] != "ready"]:
                assert time.time() < deadline, "did not scale to zero"
                time.sleep(0.1)
            time.sleep(0.3)  # the last replica's sandbox is gone
            t0 = time.monotonic()
            r = sg.call("/index.html")
            cold.append((time.monotonic() - t0) * 1000)
            assert r.status_code == 200, r.text
        sg.delete()
        out["scale_from_zero_first_byte_ms"] = cold
        print("first byte after scale from zero: %s ms" % ", ".join("%.0f" % x for x in cold),
              flush=True)

        # Throughput and latency against one replica.
        sg = ScalingGroup(image="busybox", name="bench", port=8080, min_replicas=1,
                          max_replicas=1, target_concurrency=1000, max_concurrency=4000,
                          command=["sh", "-c", BODY_CMD]).deploy().wait_ready()
        upstream = sg.refresh().info.replicas[0].upstream
        up_host, up_port = upstream.rsplit(":", 1)
        router = sg.url.split("://", 1)[1].split("/", 1)[0]
        ports = {"direct": int(up_port), "router": int(router.rsplit(":", 1)[1]),
                 "nginx": bp.free_port(), "haproxy": bp.free_port()}
        paths = {"router": "/default/bench/index.html"}
        procs.append(bp.start(bp.nginx_conf(tmp, "proxy", """upstream backend {
    server %s; keepalive 64; }
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } }""" % (upstream, ports["nginx"])),
            ports["nginx"]))
        hcfg = os.path.join(tmp, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write("global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n"
                    "  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
                    "frontend f\n  bind 127.0.0.1:%d\n  default_backend b\n"
                    "backend b\n  http-reuse always\n  server s1 %s\n" % (ports["haproxy"], upstream))
        procs.append(bp.start(["haproxy", "-f", hcfg, "-db"], ports["haproxy"]))
        order = ["direct", "router", "nginx", "haproxy"]
        best = {}
        for rnd in range(a.rounds):
            for name in (order if rnd % 2 == 0 else order[::-1]):
                path = paths.get(name, "/index.html")
                wrk(ports[name], path, 1, a.connections)
                res = wrk(ports[name], path, a.seconds, a.connections)
                print("round %d %-8s %9.0f req/s  p50 %.3f ms  p99 %.3f ms %s" % (
                    rnd + 1, name, res["rps"], res["p50_ms"], res["p99_ms"],
                    res["errors"] or ""), flush=True)
                if name not in best or res["rps"] > best[name]["rps"]:
                    best[name] = res
        dd = best["direct"]
        print("\n| setup | requests/s | p50 | p99 | p50 added vs direct |")
        print("| --- | --- | --- | --- | --- |")
        for name in order:
            b = best[name]
            added = "" if name == "direct" else "%.3f ms" % (b["p50_ms"] - dd["p50_ms"])
            print("| %s | %.0f | %.3f ms | %.3f ms | %s |" % (
                name, b["rps"], b["p50_ms"], b["p99_ms"], added))
        h = best["router"]
        print("\nrouter vs nginx: %.2fx requests/s; vs haproxy: %.2fx; p50 added %.3f ms" % (
            h["rps"] / best["nginx"]["rps"], h["rps"] / best["haproxy"]["rps"],
            h["p50_ms"] - dd["p50_ms"]))
        out.update({"connections": a.connections, "seconds": a.seconds, "results": best})
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)
        sg.delete()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        c = hutch.sandbox._default
        if c is not None:
            c.close()
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def wrk(port, path, seconds, conns):
    """bench_proxy's wrk, for a path of our own."""
    import re
    import subprocess
    res = subprocess.run(["wrk", "-t%d" % min(2, conns), "-c%d" % conns, "-d%ds" % seconds,
                          "--latency", "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=seconds + 30).stdout

    def lat(pct):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, res, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", res)
    if not re.search(r"^\s+50%", res, re.M):
        raise RuntimeError("wrk said:\n" + res)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", res).group(1)),
            "p50_ms": lat(50), "p99_ms": lat(99), "errors": errors.group(0) if errors else None}


if __name__ == "__main__":
    main()
