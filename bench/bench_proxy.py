#!/usr/bin/python3
"""Proxy engine benchmark: wrk on loopback against one nginx backend serving
a small static body, in the same run:

  direct         wrk -> backend                       (the baseline)
  hutch          wrk -> proxy_test_server -> backend  (hutch_proxy)
  nginx          wrk -> nginx reverse proxy -> backend
  haproxy        wrk -> haproxy -> backend

Every proxy runs one worker/thread (hutch_proxy is one libuv loop) and
keeps connections to the backend alive. Reports requests/s, p50 and p99
latency, each proxy's requests/s relative to nginx and haproxy, the p50 it
adds over direct, and the CPU time the proxy process spent per request
(user + system, from /proc: on a shared machine this moves less than
requests/s, which also depends on what else gets the cores). Rounds
alternate the order; the best round per setup is kept (the machine is
shared: noise only ever slows a run down).

  bench/bench_proxy.py [--seconds N] [--rounds N] [--connections N]
                       [--baseline-server PATH] [--json FILE]

--baseline-server adds a setup "hutch-base": another proxy_test_server
binary (say, one built from the main branch) measured in the same run, for
before/after comparisons of the engine.

Needs wrk, nginx and haproxy (scripts/install-deps.sh --test) and a build
in ./build (or $HUTCH_BUILD_DIR).
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BUILD = os.environ.get("HUTCH_BUILD_DIR", os.path.join(ROOT, "build"))
BODY = b"hello from the backend, a small static body.\n" * 4  # 184 bytes


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def nginx_conf(tmp, name, server_block):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  keepalive_requests 1000000;
  %(server)s
}
""" % {"d": d, "server": server_block})
    return ["nginx", "-p", d, "-c", conf, "-g", "daemon off;"]


def start(cmd, port):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def cpu_ticks(pid):
    """utime + stime of pid, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def worker_pid(proc, name):
    """The process that does the work: nginx's single worker (a child of
    the master), the process itself for the others."""
    if name != "nginx":
        return proc.pid
    end = time.time() + 5
    while time.time() < end:
        try:
            with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.05)
    return proc.pid


def wrk(port, seconds, conns, pid=None):
    before = cpu_ticks(pid) if pid else 0
    out = subprocess.run(["wrk", "-t%d" % min(2, conns), "-c%d" % conns, "-d%ds" % seconds,
                          "--latency", "http://127.0.0.1:%d/index.html" % port],
                         capture_output=True, text=True, timeout=seconds + 30).stdout

    def lat(pct):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    cpu = cpu_ticks(pid) - before if pid else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    cpu_us = cpu * 1e6 / os.sysconf("SC_CLK_TCK") / total if pid and total else None
    return {"rps": rps, "p50_ms": lat(50), "p99_ms": lat(99), "cpu_us_per_req": cpu_us,
            "errors": errors.group(0) if errors else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--baseline-server")
    ap.add_argument("--json")
    a = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy"):
        if not shutil.which(tool):
            sys.exit("bench_proxy: %s is not installed (scripts/install-deps.sh --test)" % tool)
    server = os.path.join(BUILD, "bin", "proxy_test_server")
    tmp = tempfile.mkdtemp(prefix="hutch-bench-proxy-")
    os.chmod(tmp, 0o755)  # nginx's workers (nobody) read the body there
    procs = []
    try:
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(BODY)
        order = ["direct", "hutch"] + (["hutch-base"] if a.baseline_server else []) + [
            "nginx", "haproxy"]
        ports = {k: free_port() for k in order}
        pids = {}
        procs.append(start(nginx_conf(tmp, "backend", """server {
    listen 127.0.0.1:%d; root %s; }""" % (ports["direct"], www)), ports["direct"]))
        procs.append(start(nginx_conf(tmp, "proxy", """upstream backend {
    server 127.0.0.1:%d; keepalive 64; }
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } }""" % (ports["direct"], ports["nginx"])),
            ports["nginx"]))
        pids["nginx"] = worker_pid(procs[-1], "nginx")
        hcfg = os.path.join(tmp, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write("""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:%d
""" % (ports["haproxy"], ports["direct"]))
        procs.append(start(["haproxy", "-f", hcfg, "-db"], ports["haproxy"]))
        pids["haproxy"] = procs[-1].pid
        for name, binary in (("hutch", server), ("hutch-base", a.baseline_server)):
            if name not in ports:
                continue
            procs.append(start([binary, "--listen", "127.0.0.1:%d" % ports[name],
                                "--upstream", "127.0.0.1:%d" % ports["direct"],
                                "--quiet"], ports[name]))
            pids[name] = procs[-1].pid
        best = {}
        for r in range(a.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                wrk(ports[name], 1, a.connections)  # warm up
                res = wrk(ports[name], a.seconds, a.connections, pids.get(name))
                cpu = res["cpu_us_per_req"]
                print("round %d %-10s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  %s %s" % (
                    r + 1, name, res["rps"], res["p50_ms"], res["p99_ms"],
                    "cpu %.1f us/req" % cpu if cpu else "", res["errors"] or ""), flush=True)
                if name not in best or res["rps"] > best[name]["rps"]:
                    best[name] = res
        d = best["direct"]
        print("\n| setup | requests/s | p50 | p99 | p50 added vs direct | proxy CPU per request |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in order:
            b = best[name]
            added = "" if name == "direct" else "%.3f ms" % (b["p50_ms"] - d["p50_ms"])
            cpu = "%.1f us" % b["cpu_us_per_req"] if b["cpu_us_per_req"] else ""
            print("| %s | %.0f | %.3f ms | %.3f ms | %s | %s |" % (
                name, b["rps"], b["p50_ms"], b["p99_ms"], added, cpu))
        for name in order[1:]:
            if not name.startswith("hutch"):
                continue
            h = best[name]
            print("\n%s vs nginx: %.2fx requests/s; vs haproxy: %.2fx; p50 added %.3f ms" % (
                name, h["rps"] / best["nginx"]["rps"], h["rps"] / best["haproxy"]["rps"],
                h["p50_ms"] - d["p50_ms"]))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"connections": a.connections, "seconds": a.seconds,
                           "results": best}, f, indent=1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
