#!/usr/bin/python3
"""Proxy engine benchmark: wrk on loopback against one nginx backend serving
a small static body, in the same run:

  direct         wrk -> backend                       (the baseline)
  hutch          wrk -> proxy_test_server -> backend  (hutch_proxy)
  nginx          wrk -> nginx reverse proxy -> backend
  haproxy        wrk -> haproxy -> backend

Every proxy runs one worker/thread (hutch_proxy is one libuv loop) and
keeps connections to the backend alive. Reports requests/s, p50 and p99
latency, each proxy's requests/s relative to nginx and haproxy, and the
p50 it adds over direct. Rounds alternate the order; the best round per
setup is kept (the machine is shared: noise only ever slows a run down).

  bench/bench_proxy.py [--seconds N] [--rounds N] [--connections N]
                       [--json FILE]

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


def wrk(port, seconds, conns):
    out = subprocess.run(["wrk", "-t%d" % min(2, conns), "-c%d" % conns, "-d%ds" % seconds,
                          "--latency", "http://127.0.0.1:%d/index.html" % port],
                         capture_output=True, text=True, timeout=seconds + 30).stdout

    def lat(pct):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    return {"rps": rps, "p50_ms": lat(50), "p99_ms": lat(99),
            "errors": errors.group(0) if errors else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
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
        ports = {k: free_port() for k in ("direct", "hutch", "nginx", "haproxy")}
        procs.append(start(nginx_conf(tmp, "backend", """server {
    listen 127.0.0.1:%d; root %s; }""" % (ports["direct"], www)), ports["direct"]))
        procs.append(start(nginx_conf(tmp, "proxy", """upstream backend {
    server 127.0.0.1:%d; keepalive 64; }
  server { listen 127.0.0.1:%d;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } }""" % (ports["direct"], ports["nginx"])),
            ports["nginx"]))
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
        procs.append(start([server, "--listen", "127.0.0.1:%d" % ports["hutch"],
                            "--upstream", "127.0.0.1:%d" % ports["direct"],
                            "--quiet"], ports["hutch"]))
        order = ["direct", "hutch", "nginx", "haproxy"]
        best = {}
        for r in range(a.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                wrk(ports[name], 1, a.connections)  # warm up
                res = wrk(ports[name], a.seconds, a.connections)
                print("round %d %-8s %9.0f req/s  p50 %.3f ms  p99 %.3f ms %s" % (
                    r + 1, name, res["rps"], res["p50_ms"], res["p99_ms"],
                    res["errors"] or ""), flush=True)
                if name not in best or res["rps"] > best[name]["rps"]:
                    best[name] = res
        d = best["direct"]
        print("\n| setup | requests/s | p50 | p99 | p50 added vs direct |")
        print("| --- | --- | --- | --- | --- |")
        for name in order:
            b = best[name]
            added = "" if name == "direct" else "%.3f ms" % (b["p50_ms"] - d["p50_ms"])
            print("| %s | %.0f | %.3f ms | %.3f ms | %s |" % (
                name, b["rps"], b["p50_ms"], b["p99_ms"], added))
        h = best["hutch"]
        print("\nhutch vs nginx: %.2fx requests/s; vs haproxy: %.2fx; p50 added %.3f ms" % (
            h["rps"] / best["nginx"]["rps"], h["rps"] / best["haproxy"]["rps"],
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
