#!/usr/bin/python3
"""hutch_proxy end to end: proxy_test_server in front of a real upstream on
loopback, driven by real clients (http.client, curl, nghttp, raw sockets).

  test_proxy.py --server PATH CASE

One CTest test per CASE (see CMakeLists.txt). Every case ends by stopping
the proxy with SIGTERM and requiring a clean exit (LSan checks leaks there
in the sanitizer build).
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import Upstream, Proxy, free_port, raw, ws_frame, ws_read  # noqa: E402

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def conn(p):
    return http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)


def get_json(c, method, path, body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    check(r.status == 200, "%s %s: status %d %r" % (method, path, r.status, data[:200]))
    return r, json.loads(data)


@case
def get_post(env):
    p = env.proxy()
    c = conn(p)
    r, j = get_json(c, "GET", "/echo?x=1", headers={"X-Remove-Me": "no", "X-Keep": "yes"})
    check(j["method"] == "GET" and j["path"] == "/echo?x=1", j)
    check(j["headers"].get("x-proxy-test") == "1", "request header set by the policy")
    check("x-remove-me" not in j["headers"], "request header removed by the policy")
    check(j["headers"].get("x-keep") == "yes", "other headers pass")
    check(r.getheader("X-Proxied") == "hutch", "response header set by the policy")
    body = os.urandom(200000)
    r, j = get_json(c, "POST", "/echo", body=body)
    check(j["body_len"] == len(body) and j["body_sha256"] == hashlib.sha256(body).hexdigest(),
          "POST body arrives whole")
    c.request("GET", "/secret")
    r = c.getresponse()
    r.read()
    check(r.getheader("X-Upstream-Secret") is None, "response header removed by the policy")
    c.request("HEAD", "/echo")
    r = c.getresponse()
    check(r.status == 200 and r.read() == b"", "HEAD has no body")
    check(int(r.getheader("Content-Length")) > 0, "HEAD keeps the upstream's Content-Length")
    # curl, the other everyday client
    out = subprocess.run(["curl", "-sS", "-H", "X-Remove-Me: x",
                          "http://127.0.0.1:%d/echo" % p.port],
                         capture_output=True, text=True, timeout=10)
    check(out.returncode == 0 and json.loads(out.stdout)["method"] == "GET", out)
    c.close()


@case
def forwarded(env):
    p = env.proxy("--forwarded")
    c = conn(p)
    _, j = get_json(c, "GET", "/echo", headers={"X-Forwarded-Proto": "https",
                                                 "X-Forwarded-For": "10.9.9.9",
                                                 "Connection": "X-Hop", "X-Hop": "a"})
    h = j["headers"]
    xff = [v for k, v in j["header_list"] if k.lower() == "x-forwarded-for"]
    check(xff == ["10.9.9.9", "127.0.0.1"], "X-Forwarded-For appended: %r" % xff)
    check(h.get("x-forwarded-proto") == "http", "X-Forwarded-Proto is the proxy's: %r" % h)
    check("1.1 hutch" in h.get("via", ""), "Via added")
    check(h.get("forwarded", "").startswith("for=127.0.0.1;proto=http"), h.get("forwarded"))
    check("x-hop" not in h, "a header named in Connection is hop-by-hop")
    c.close()


@case
def chunked(env):
    p = env.proxy()
    c = conn(p)

    def gen():
        for i in range(50):
            yield os.urandom(1000 + i)
    parts = list(gen())
    c.request("POST", "/echo", body=iter(parts), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    j = json.loads(r.read())
    whole = b"".join(parts)
    check(j["body_len"] == len(whole) and j["body_sha256"] == hashlib.sha256(whole).hexdigest(),
          "chunked request body arrives whole")
    check(j["headers"].get("transfer-encoding") == "chunked", "re-chunked toward the upstream")
    c.request("GET", "/chunked")
    r = c.getresponse()
    check(r.read() == b"one,two,three", "chunked response")
    check(r.getheader("Transfer-Encoding") == "chunked", "chunked toward the client")
    # HTTP/1.0 client: the chunked response becomes close-delimited
    out = raw(p.port, b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n")
    check(out.startswith(b"HTTP/1.0 200") and out.endswith(b"one,two,three"), out)
    c.close()


@case
def keepalive(env):
    p = env.proxy()
    c = conn(p)
    conns = set()
    for i in range(20):
        _, j = get_json(c, "GET", "/echo?i=%d" % i)
        conns.add(j["conn"])
    c.close()
    # separate clients, one after the other, share the pooled connection
    for i in range(5):
        c = conn(p)
        _, j = get_json(c, "GET", "/echo")
        conns.add(j["conn"])
        c.close()
    check(env.up.connections == 1, "upstream saw %d connections for 25 requests"
          % env.up.connections)


@case
def pipelining(env):
    p = env.proxy()
    reqs = b"".join(b"GET /echo?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
    reqs += b"GET /local/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(p.port, reqs)
    check(out.count(b"HTTP/1.1 200") == 4, out)
    i0, i1, i2 = (out.index(b'"/echo?n=%d"' % i) for i in range(3))
    check(i0 < i1 < i2 < out.index(b"local /local/last"), "responses in request order")


@case
def retry(env):
    p = env.proxy()
    c = conn(p)
    c.request("GET", "/close")
    r = c.getresponse()
    check(r.read() == b"closing\n", "first")
    # The pooled connection is dead now (the upstream closed it after
    # answering with keep-alive): a GET is retried on a fresh one.
    time.sleep(0.01)
    for _ in range(3):
        _, j = get_json(c, "GET", "/echo")
    c.close()


@case
def big_stream(env):
    """100 MB each way through the proxy with a slow reader: memory stays
    bounded (nothing buffered whole)."""
    p = env.proxy()
    total = 100 << 20
    base = p.rss_kib()
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], p.rss_kib())
            time.sleep(0.05)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    # upload
    c = conn(p)
    block = os.urandom(1 << 20)
    h = hashlib.sha256()

    def body():
        for _ in range(total // len(block)):
            h.update(block)
            yield block
    c.request("POST", "/sink", body=body(), headers={"Content-Length": str(total)})
    r = c.getresponse()
    j = json.loads(r.read())
    check(j["body_len"] == total and j["body_sha256"] == h.hexdigest(), "upload intact")
    # download, read slowly for the first second
    s = socket.create_connection(("127.0.0.1", p.port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % total)
    got = 0
    t0 = time.time()
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    got = len(buf) - buf.index(b"\r\n\r\n") - 4
    while got < total:
        d = s.recv(1 << 20 if time.time() - t0 > 1.0 else 4096)
        if not d:
            break
        got += len(d)
        if time.time() - t0 < 1.0:
            time.sleep(0.01)
    s.close()
    stop.set()
    t.join()
    check(got == total, "download intact: %d of %d" % (got, total))
    grew = (peak[0] - base) / 1024
    print("proxy RSS: %d KiB before, %d KiB peak (+%.1f MiB)" % (base, peak[0], grew))
    check(grew < 40, "proxy memory grew by %.1f MiB moving 200 MB" % grew)


@case
def upstream_down(env):
    p = env.proxy(upstream="127.0.0.1:%d" % free_port())
    c = conn(p)
    c.request("GET", "/echo")
    r = c.getresponse()
    check(r.status == 502, "status %d" % r.status)
    r.read()
    c.request("GET", "/local/x")  # the connection is still good
    r = c.getresponse()
    check(r.status == 200, "keeps serving")
    r.read()
    c.close()
    log = env.log_entries()
    check(log[0]["status"] == 502 and "refused" in log[0]["error"], log[0])


@case
def retry_elsewhere(env):
    """The policy's upstream_failed sends an idempotent request without a
    body to another upstream when its own refuses the connection or closes
    it before answering; a POST is not sent twice."""
    closer = socket.socket()
    closer.bind(("127.0.0.1", 0))
    closer.listen(16)
    stop = threading.Event()

    def close_all():
        while not stop.is_set():
            try:
                s, _ = closer.accept()
            except OSError:
                return
            s.close()
    threading.Thread(target=close_all, daemon=True).start()
    fallback = "127.0.0.1:%d" % env.up.port
    try:
        for dead in ("127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % closer.getsockname()[1]):
            open(env.log, "w").close()
            p = env.proxy("--fallback", fallback, upstream=dead)
            c = conn(p)
            for method in ("GET", "HEAD", "DELETE"):
                c.request(method, "/echo")
                r = c.getresponse()
                r.read()
                check(r.status == 200, "%s via %s: status %d" % (method, dead, r.status))
            c.request("POST", "/echo", body=b"once")
            r = c.getresponse()
            r.read()
            check(r.status == 502, "POST via %s not retried: status %d" % (dead, r.status))
            c.close()
            log = env.log_entries(at_least=4)
            check([e["retries"] for e in log] == [1, 1, 1, 0], log)
            check(all(e["upstream"] == fallback for e in log[:3]), log)
            check(log[3]["upstream"] == dead, log[3])
    finally:
        stop.set()
        closer.close()


@case
def upstream_slow(env):
    p = env.proxy("--response-timeout-ms", "500")
    c = conn(p)
    t0 = time.time()
    c.request("GET", "/slow")
    r = c.getresponse()
    r.read()
    check(r.status == 504, "status %d" % r.status)
    check(time.time() - t0 < 2.5, "504 after the response timeout")
    _, j = get_json(c, "GET", "/echo")
    c.close()


@case
def connect_timeout(env):
    # A listener that never accepts: its backlog fills, connects hang.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(8):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(("127.0.0.1", srv.getsockname()[1]))
        except BlockingIOError:
            pass
        fillers.append(f)
    p = env.proxy("--connect-timeout-ms", "300",
                  upstream="127.0.0.1:%d" % srv.getsockname()[1])
    out = raw(p.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 504") or out.startswith(b"HTTP/1.1 502"), out)
    srv.close()


@case
def slowloris(env):
    p = env.proxy("--header-timeout-ms", "500")
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    t0 = time.time()
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    out = b""
    try:
        for _ in range(10):
            time.sleep(0.1)
            s.sendall(b"X-A: b\r\n")
    except OSError:
        pass
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            out += d
    except OSError:
        pass
    check(out.startswith(b"HTTP/1.1 408"), out)
    check(time.time() - t0 < 3, "closed after the header timeout")
    _, j = get_json(conn(p), "GET", "/echo")


@case
def huge_headers(env):
    p = env.proxy("--max-header-bytes", "4096", "--max-request-line", "2048")
    out = raw(p.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 431"), out[:100])
    out = raw(p.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"X-M: 1\r\n" * 200 + b"\r\n")
    check(out.startswith(b"HTTP/1.1 431"), out[:100])
    out = raw(p.port, b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 414"), out[:100])
    _, j = get_json(conn(p), "GET", "/echo")


@case
def malformed(env):
    p = env.proxy()
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
           b"\x00\x01\x02garbage\r\n\r\n",
           b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
           b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
           b"GET / HTTP/9.9\r\n\r\n"]
    for b in bad:
        out = raw(p.port, b)
        check(out.startswith(b"HTTP/1.1 400"), (b, out[:80]))
    _, j = get_json(conn(p), "GET", "/echo")
    check(p.alive(), "still up")


@case
def max_body(env):
    p = env.proxy("--max-body", "1000")
    c = conn(p)
    c.request("POST", "/echo", body=b"x" * 2000)
    r = c.getresponse()
    check(r.status == 413, "status %d" % r.status)
    r.read()


@case
def local(env):
    p = env.proxy()
    c = conn(p)
    c.request("GET", "/local/hello")
    r = c.getresponse()
    check(r.status == 200 and r.read() == b"local /local/hello\n", "local answer")
    check(r.getheader("X-Local") == "yes" and r.getheader("X-Proxied") is None, "its headers")
    c.request("POST", "/status/403", body=b"ignored body")
    r = c.getresponse()
    check(r.status == 403, "local status")
    r.read()
    c.request("GET", "/defer/x")
    r = c.getresponse()
    check(r.status == 200 and json.loads(r.read())["path"] == "/defer/x", "deferred route")
    c.close()
    check(env.up.connections == 1, "one upstream connection")


@case
def access_log(env):
    p = env.proxy()
    c = conn(p)
    get_json(c, "POST", "/echo?q", body=b"12345", headers={"Host": "svc.example"})
    c.request("GET", "/local/x")
    c.getresponse().read()
    c.close()
    raw(p.port, b"BAD\r\n\r\n")
    time.sleep(0.2)
    log = env.log_entries()
    e = log[0]
    check(e["method"] == "POST" and e["path"] == "/echo?q" and e["authority"] == "svc.example", e)
    check(e["status"] == 200 and e["bytes_in"] == 5 and e["bytes_out"] > 0, e)
    check(e["upstream"] == "127.0.0.1:%d" % env.up.port and e["error"] is None, e)
    check(e["total_us"] > 0 and e["upstream_us"] > 0 and e["peer"] == "127.0.0.1", e)
    check(log[1]["upstream"] == "" and log[1]["status"] == 200, log[1])
    check(log[2]["status"] == 400 and log[2]["error"], log[2])


@case
def sse(env):
    p = env.proxy()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    t0 = time.time()
    s.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"event 0" not in buf:
        buf += s.recv(4096)
    first = time.time() - t0
    while b"0\r\n\r\n" not in buf:
        buf += s.recv(4096)
    total = time.time() - t0
    s.close()
    check(first < 0.25 and total > 0.5, "first event after %.3f s of %.3f s" % (first, total))


@case
def websocket(env):
    p = env.proxy()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    f = s.makefile("rb")
    status = f.readline()
    check(status.startswith(b"HTTP/1.1 101"), status)
    while f.readline() not in (b"\r\n", b""):
        pass
    for msg in (b"hello", os.urandom(70000)):
        s.sendall(ws_frame(1 if msg == b"hello" else 2, msg))
        op, data = ws_read(f)
        check(data == msg, "echo of %d bytes" % len(msg))
    s.sendall(ws_frame(8, b""))
    s.close()


@case
def h2c(env):
    if not shutil.which("nghttp"):
        print("nghttp not installed")
        sys.exit(77)
    p = env.proxy()
    urls = ["http://127.0.0.1:%d/echo?i=%d" % (p.port, i) for i in range(50)]
    out = subprocess.run(["nghttp", "-n", "-s", "-m", "1"] + urls[:1], capture_output=True,
                         text=True, timeout=20)
    check(out.returncode == 0, out.stderr)
    # 50 streams at once on one connection, twice: the second burst finds
    # the upstream connections of the first in the pool.
    for burst in range(2):
        out = subprocess.run(["nghttp", "-s"] + urls, capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, out.stderr)
        check(out.stdout.count(" 200 ") == 50, out.stdout[-2000:])
        if burst == 0:
            after_first = env.up.connections
    body = subprocess.run(["nghttp", "-d", "-", urls[0]], input="x" * 100000,
                          capture_output=True, text=True, timeout=20)
    j = json.loads(body.stdout)
    check(j["body_len"] == 100000 and j["headers"]["host"] == "127.0.0.1:%d" % p.port, j)
    # 20 MB down one stream: pulled through the stream's buffer and windows
    big = subprocess.run(["nghttp", "http://127.0.0.1:%d/big?n=%d" % (p.port, 20 << 20)],
                         capture_output=True, timeout=60)
    check(big.returncode == 0 and len(big.stdout) == 20 << 20,
          "h2 download: %d bytes" % len(big.stdout))
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge",
                          "http://127.0.0.1:%d/local/h2" % p.port],
                         capture_output=True, text=True, timeout=10)
    check(out.stdout == "local /local/h2\n", out)
    check(env.up.connections <= after_first + 2,
          "pooled: %d upstream connections after the second burst, %d after the first"
          % (env.up.connections, after_first))


@case
def tls(env):
    if not shutil.which("openssl"):
        sys.exit(77)
    d = env.tmp
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", d + "/key.pem", "-out", d + "/cert.pem"],
                   check=True, capture_output=True)
    p = env.proxy("--tls", d + "/cert.pem", d + "/key.pem")
    base = ["curl", "-sS", "--cacert", d + "/cert.pem", "--resolve",
            "localhost:%d:127.0.0.1" % p.port]
    url = "https://localhost:%d/echo" % p.port
    out = subprocess.run(base + ["--http1.1", url], capture_output=True, text=True, timeout=10)
    check(out.returncode == 0 and json.loads(out.stdout)["method"] == "GET", out)
    out = subprocess.run(base + ["--http2", "-w", "%{http_version}", "-o", "/dev/null", url],
                         capture_output=True, text=True, timeout=10)
    check(out.stdout == "2", "h2 by ALPN: %r" % out)


@case
def upstream_stall(env):
    """An upstream that stops sending mid-response: after the read timeout
    the client's connection (h2: stream) is cut, so the truncated response
    never looks complete, and the log says why. A slow client is not an
    upstream stall: a response it does not read for longer than the timeout
    still arrives whole."""
    p = env.proxy("--upstream-read-timeout-ms", "500")
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    t0 = time.time()
    s.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    took = time.time() - t0
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200") and b"Content-Length: 100000" in head, head)
    check(len(body) == 1000, "the bytes before the stall arrive: %d" % len(body))
    check(0.4 < took < 3, "cut %.2f s after the request (read timeout 0.5 s, stall 5 s)" % took)
    time.sleep(0.1)
    e = [x for x in env.log_entries() if x["path"] == "/stall"][0]
    check(e["status"] == 200 and "stalled mid-response" in (e["error"] or ""), e)
    # A client that reads nothing for 1.5 s: the proxy stops reading the
    # upstream meanwhile, which is no stall.
    total = 16 << 20
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % total)
    time.sleep(1.5)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    got = len(buf) - buf.index(b"\r\n\r\n") - 4
    while got < total:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
    s.close()
    check(got == total, "slow client: %d of %d bytes" % (got, total))
    # HTTP/2: the stream is reset.
    if shutil.which("curl"):
        t0 = time.time()
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                              "http://127.0.0.1:%d/stall" % p.port],
                             capture_output=True, text=True, timeout=10)
        took = time.time() - t0
        check(out.returncode != 0 and took < 3,
              "h2: rc %d after %.2f s: %s" % (out.returncode, took, out.stderr))


def make_ca(d):
    """A CA, a leaf for upstream.test signed by it, and a self-signed leaf
    for the same name that nothing trusts."""
    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
        "-keyout", d + "/ca.key", "-out", d + "/ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=upstream.test",
        "-keyout", d + "/up.key", "-out", d + "/up.csr")
    with open(d + "/ext", "w") as f:
        f.write("subjectAltName=DNS:upstream.test\n")
    run("x509", "-req", "-in", d + "/up.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", d + "/ext", "-out", d + "/up.pem")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        "/CN=upstream.test", "-addext", "subjectAltName=DNS:upstream.test",
        "-keyout", d + "/rogue.key", "-out", d + "/rogue.pem")


@case
def upstream_tls(env):
    """TLS toward the upstream: SNI sent, the certificate verified against
    the given CA and the name; a certificate that fails either is a 502
    that says why (and the log too)."""
    if not shutil.which("openssl"):
        sys.exit(77)
    d = env.tmp
    make_ca(d)
    up = env.extra_upstream(tls=(d + "/up.pem", d + "/up.key"))
    addr = "127.0.0.1:%d" % up.port
    p = env.proxy("--upstream-tls", "upstream.test", "--upstream-ca", d + "/ca.pem",
                  upstream=addr)
    c = conn(p)
    for i in range(5):
        _, j = get_json(c, "GET", "/echo?i=%d" % i)
    c.close()
    check(up.sni_seen and set(up.sni_seen) == {"upstream.test"}, "SNI: %r" % up.sni_seen)
    check(up.connections == 1, "pooled TLS connection: %d connections" % up.connections)

    def bad(proxy, what):
        c = conn(proxy)
        c.request("GET", "/echo")
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        check(r.status == 502 and what in body, "status %d, body %r" % (r.status, body))
        return body
    # a certificate for another name
    p2 = env.proxy("--upstream-tls", "other.test", "--upstream-ca", d + "/ca.pem",
                   upstream=addr)
    bad(p2, "hostname mismatch")
    # a certificate from no trusted CA
    rogue = env.extra_upstream(tls=(d + "/rogue.pem", d + "/rogue.key"))
    p3 = env.proxy("--upstream-tls", "upstream.test", "--upstream-ca", d + "/ca.pem",
                   upstream="127.0.0.1:%d" % rogue.port)
    bad(p3, "self-signed certificate")
    time.sleep(0.1)
    errors = [e["error"] for e in env.log_entries() if e["status"] == 502]
    check(len(errors) == 2 and "hostname mismatch" in errors[0] and
          "self-signed" in errors[1], errors)


@case
def h2_upload(env):
    """A large upload over HTTP/2 to an upstream that does not read for
    2 s: the stream's window stays shut while the upstream is full, so the
    proxy holds a bounded amount, and the body arrives whole."""
    if not shutil.which("curl"):
        sys.exit(77)
    p = env.proxy()
    total = 64 << 20
    path = os.path.join(env.tmp, "upload")
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(total // len(block)):
            f.write(block)
            h.update(block)
    base = p.rss_kib()
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], p.rss_kib())
            time.sleep(0.02)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--data-binary",
                          "@" + path, "http://127.0.0.1:%d/sink?stall=2" % p.port],
                         capture_output=True, text=True, timeout=60)
    stop.set()
    t.join()
    check(out.returncode == 0, out.stderr)
    j = json.loads(out.stdout)
    check(j["body_len"] == total and j["body_sha256"] == h.hexdigest(), "upload intact")
    grew = (peak[0] - base) / 1024
    print("proxy RSS: %d KiB before, %d KiB peak (+%.1f MiB)" % (base, peak[0], grew))
    check(grew < 16, "proxy memory grew by %.1f MiB for a 64 MiB upload" % grew)


class Env:
    def __init__(self, server):
        self.server = server
        self.up = Upstream()
        self.tmp = tempfile.mkdtemp(prefix="hutch-proxy-")
        self.log = os.path.join(self.tmp, "access.log")
        self.proxies = []
        self.upstreams = []

    def extra_upstream(self, tls=None):
        u = Upstream(tls=tls)
        self.upstreams.append(u)
        return u

    def proxy(self, *args, upstream=None):
        p = Proxy(self.server, upstream or "127.0.0.1:%d" % self.up.port, *args, log=self.log)
        self.proxies.append(p)
        return p

    def log_entries(self, at_least=1):
        """The access log's entries; waits (up to 5 s) for at_least of them,
        since a request's line is written after its response went out."""
        deadline = time.time() + 5
        while True:
            with open(self.log) as f:
                entries = [json.loads(line) for line in f if line.strip()]
            if len(entries) >= at_least or time.time() > deadline:
                return entries
            time.sleep(0.02)

    def close(self):
        try:
            for p in self.proxies:
                p.close()
        finally:
            self.up.close()
            for u in self.upstreams:
                u.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    a = ap.parse_args()
    env = Env(a.server)
    try:
        CASES[a.case](env)
    finally:
        env.close()
    print("ok", a.case)


if __name__ == "__main__":
    main()
