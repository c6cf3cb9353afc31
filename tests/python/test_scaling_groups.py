"""Scaling groups and containers with a port, through hutchd's router:
the published example, readiness, replacement of a killed replica, rolling
redeploy under load, scale from zero, autoscaling, tenant isolation, and
malformed requests. Replicas run busybox httpd from the built-in image (the
test machine has no PyPI for the example's flask image)."""
import http.client
import socket
import threading
import time

import pytest

import hutch
from hutch import Container, ScalingGroup

# Fast windows so that autoscaling is seen in seconds.
CONFIG = """
[router]
tick = "100ms"
stable_window = "2s"
panic_window = "400ms"
hold_timeout = "20s"
"""

# An httpd that serves /health and /rev (which says which revision).
def serve(rev="1"):
    return ["sh", "-c",
            "mkdir -p /www && echo ok > /www/health && echo %s > /www/rev && "
            "exec httpd -f -p 8080 -h /www" % rev]


def _daemon_env(monkeypatch, config=CONFIG, args=()):
    import hutchtest
    d = hutchtest.Daemon(config, args=args)
    monkeypatch.setenv("HUTCH_SOCKET", d.sock)
    monkeypatch.delenv("HUTCH_ADDRESS", raising=False)
    hutch.set_default_client(None)
    try:
        yield d
    finally:
        c = hutch.sandbox._default
        hutch.set_default_client(None)
        if c is not None:
            try:
                for g in ScalingGroup.list(client=c):
                    g.delete()
            except Exception:
                pass
            c.close()
        d.cleanup()


@pytest.fixture
def env(monkeypatch):
    yield from _daemon_env(monkeypatch)


@pytest.fixture
def env_json(monkeypatch):
    """hutchd logging JSON, with its [http] listener (for /metrics)."""
    yield from _daemon_env(monkeypatch, CONFIG + '\n[http]\nlisten = "127.0.0.1:0"\n',
                           args=["--log-format", "json"])


def test_published_example(env):
    sg = ScalingGroup(
        image="busybox",
        name="hello-api",
        port=8080,
        min_replicas=1,
        max_replicas=3,
        command=serve(),
    ).deploy().wait_ready()

    resp = sg.call("/health", method="GET")
    print(resp.status_code, resp.text)
    assert resp.status_code == 200 and resp.text == "ok\n"
    # Readiness came from the sandbox's agent, not from hutchd polling.
    assert "ready after" in env.log() and "its agent saw the port accept" in env.log()
    assert sg.url.endswith("/default/hello-api") or "/hello-api" in sg.url
    # The same group by Host, as a wildcard DNS record would send it.
    host = sg.host_url.split("://", 1)[1]
    base = sg.url.split("://", 1)[1].split("/", 1)[0]
    c = http.client.HTTPConnection(base, timeout=10)
    c.request("GET", "/health", headers={"Host": host})
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"ok\n"
    assert ScalingGroup.from_name("hello-api").info.ready_replicas == 1
    sg.delete()
    with pytest.raises(hutch.NotFoundError):
        ScalingGroup.from_name("hello-api")
    # Its replicas are gone, not only forgotten.
    deadline = time.time() + 30
    while time.time() < deadline and hutch.default_client().list(labels={"hutch.group": "hello-api"}):
        time.sleep(0.1)
    assert not hutch.default_client().list(labels={"hutch.group": "hello-api"})


def _router(sg_or_url):
    url = sg_or_url if isinstance(sg_or_url, str) else sg_or_url.url
    return url.split("://", 1)[1].split("/", 1)[0]


def _raw(addr, data, timeout=10):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def test_container_port_url(env):
    c = Container(image="busybox", port=8080, command=serve("c")).run()
    try:
        deadline = time.time() + 30
        while True:
            r = hutch.scaling_group.router_request(c.url, "/rev")
            if r.status_code == 200 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200 and r.text == "c\n"
        assert c.url.endswith("/default/%s/" % c.id)
    finally:
        c.stop()
    r = hutch.scaling_group.router_request(c.url, "/rev")
    assert r.status_code == 404


def test_killed_replica_is_replaced(env):
    sg = ScalingGroup(image="busybox", name="phoenix", port=8080, min_replicas=1,
                      command=serve()).deploy().wait_ready()
    first = sg.replicas[0]["sandbox_id"]
    # The server inside dies: the sandbox's main process ends.
    try:
        hutch.default_client().get(first).exec("killall", "-9", "httpd")
    except hutch.UnavailableError:
        pass  # the sandbox may end before the exec reports back
    deadline = time.time() + 60
    while time.time() < deadline:
        reps = [r for r in sg.replicas if r["state"] == "ready"]
        if reps and reps[0]["sandbox_id"] != first:
            break
        time.sleep(0.1)
    assert reps and reps[0]["sandbox_id"] != first
    assert sg.call("/health").status_code == 200


def test_rolling_redeploy_under_load_fails_nothing(env):
    sg = ScalingGroup(image="busybox", name="roll", port=8080, min_replicas=2, max_replicas=2,
                      command=serve("1"), readiness_path="/health").deploy().wait_ready()
    assert "the readiness path answers" in env.log()
    addr = _router(sg)
    stop = threading.Event()
    results = []

    def load():
        conn = http.client.HTTPConnection(addr, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/default/roll/rev")
                r = conn.getresponse()
                results.append((r.status, r.read()))
            except Exception as e:  # a failure is what this test counts
                results.append((0, repr(e).encode()))
                conn = http.client.HTTPConnection(addr, timeout=10)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        sg.command = serve("2")
        sg.deploy()
        deadline = time.time() + 60
        while time.time() < deadline:
            reps = sg.replicas
            if len(reps) == 2 and all(r["revision"] == 2 and r["state"] == "ready" for r in reps):
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    bad = [r for r in results if r[0] != 200]
    assert not bad, "%d of %d failed, e.g. %r" % (len(bad), len(results), bad[:3])
    bodies = [b for _, b in results]
    assert b"1\n" in bodies and b"2\n" in bodies and bodies[-1] == b"2\n"


@pytest.fixture
def env_short_lives(monkeypatch):
    """Sandboxes live 3 s by default and 6 s at most."""
    yield from _daemon_env(monkeypatch, CONFIG + '\n[sandbox]\nlifetime = "3s"\n'
                           'max_lifetime = "6s"\n')


def test_replicas_outlive_default_lifetime_and_rotate_without_failure(env_short_lives):
    """A replica gets the longest sandbox lifetime, not the default one, and
    one near its end is replaced first and drained: under load across two
    ends of lifetime, no request fails and no replica expires."""
    sg = ScalingGroup(image="busybox", name="longlived", port=8080, min_replicas=1,
                      max_replicas=1, command=serve()).deploy().wait_ready()
    first = sg.replicas[0]["sandbox_id"]
    addr = _router(sg)
    stop = threading.Event()
    results = []

    def load():
        conn = http.client.HTTPConnection(addr, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/default/longlived/health")
                r = conn.getresponse()
                results.append((r.status, r.read()))
            except Exception as e:  # a failure is what this test counts
                results.append((0, repr(e).encode()))
                conn = http.client.HTTPConnection(addr, timeout=10)
            time.sleep(0.005)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(4)  # past the 3 s default lifetime
        assert first in [r["sandbox_id"] for r in sg.replicas], "expired at the default lifetime"
        deadline = time.time() + 20
        while time.time() < deadline and env_short_lives.log().count("retiring before") < 2:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    log = env_short_lives.log()
    assert log.count("retiring before its lifetime ends") >= 2, log[-3000:]
    assert "its sandbox is expired" not in log, log[-3000:]
    bad = [r for r in results if r[0] != 200]
    assert not bad, "%d of %d failed, e.g. %r" % (len(bad), len(results), bad[:3])
    assert first not in [r["sandbox_id"] for r in sg.replicas]


def test_scale_from_zero_1000_requests_no_failure(env):
    sg = ScalingGroup(image="busybox", name="sleepy", port=8080, min_replicas=0, max_replicas=2,
                      scaledown_window="1s", command=serve()).deploy()
    assert sg.refresh().info.ready_replicas == 0
    t0 = time.monotonic()
    r = sg.call("/health")
    first = time.monotonic() - t0
    assert r.status_code == 200, r.text
    print("first byte after scale from zero: %.0f ms" % (first * 1000))
    # Then 1,000 requests, with scale-downs to zero between batches.
    failures = 0
    addr = _router(sg)
    for batch in range(4):
        if batch:
            deadline = time.time() + 30
            while sg.refresh().info.ready_replicas and time.time() < deadline:
                time.sleep(0.1)
            assert sg.info.ready_replicas == 0, "did not scale to zero after the window"
        conns = []
        def worker(n):
            nonlocal failures
            conn = http.client.HTTPConnection(addr, timeout=30)
            for _ in range(n):
                try:
                    conn.request("GET", "/default/sleepy/health")
                    resp = conn.getresponse()
                    if resp.status != 200 or resp.read() != b"ok\n":
                        failures += 1
                except Exception:
                    failures += 1
                    conn = http.client.HTTPConnection(addr, timeout=30)
        ts = [threading.Thread(target=worker, args=(25,)) for _ in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert failures == 0, "%d of 1000 failed" % failures


def test_burst_scales_up_then_down(env):
    sg = ScalingGroup(image="busybox", name="bursty", port=8080, min_replicas=1, max_replicas=3,
                      target_concurrency=1, scaledown_window="1s",
                      command=["sh", "-c", "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\nsleep 0.3\\n"
                               "printf \"Content-Type: text/plain\\\\r\\\\n\\\\r\\\\nok\"\\n' "
                               "> /www/cgi-bin/slow && chmod +x /www/cgi-bin/slow && "
                               "echo ok > /www/health && exec httpd -f -p 8080 -h /www"]
                      ).deploy().wait_ready()
    assert sg.call("/cgi-bin/slow").status_code == 200
    addr = _router(sg)
    stop = threading.Event()
    codes = []

    def load():
        conn = http.client.HTTPConnection(addr, timeout=30)
        while not stop.is_set():
            conn.request("GET", "/default/bursty/cgi-bin/slow")
            r = conn.getresponse()
            r.read()
            codes.append(r.status)

    ts = [threading.Thread(target=load) for _ in range(10)]
    for t in ts:
        t.start()
    try:
        deadline = time.time() + 20
        ready = 1
        while time.time() < deadline:
            ready = sg.refresh().info.ready_replicas
            if ready >= 3:
                break
            time.sleep(0.1)
        assert ready >= 3, "10x the target did not bring replicas up"
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert set(codes) == {200}
    deadline = time.time() + 30
    while time.time() < deadline and sg.refresh().info.ready_replicas > 1:
        time.sleep(0.2)
    assert sg.info.ready_replicas == 1


def test_tenant_isolation_and_malformed_requests(env):
    sg = ScalingGroup(image="busybox", name="mine", port=8080, min_replicas=1,
                      command=serve("mine")).deploy().wait_ready()
    addr = _router(sg)
    domain = sg.host_url.split("://", 1)[1].split(":")[0].split(".", 2)[2]

    def get(path, **headers):
        c = http.client.HTTPConnection(addr, timeout=10)
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, r.read()

    assert get("/default/mine/rev") == (200, b"mine\n")
    # Another tenant's name for the same group finds nothing.
    assert get("/other/mine/rev")[0] == 404
    assert get("/rev", Host="mine.other.%s" % domain)[0] == 404
    # Headers other than Host do not route.
    assert get("/other/mine/rev", **{"X-Forwarded-Host": "mine.default.%s" % domain})[0] == 404
    # Host decides over the path; the path then goes upstream as is.
    assert get("/default/mine/rev", Host="mine.other.%s" % domain)[0] == 404
    # Dot segments, encodings and extra labels name nothing.
    for p in ("/default/../default/mine/rev", "/default/mi%6ee/rev", "//default/mine/rev",
              "/DEFAULT/mine/rev"):
        assert get(p)[0] == 404, p
    for h in ("x.mine.default.%s" % domain, "mine..%s" % domain, "-x.default.%s" % domain):
        assert get("/rev", Host=h)[0] == 400, h
    # Absolute-form targets: the authority in the target decides, like Host.
    raw = _raw(addr, b"GET http://mine.other.%s/rev HTTP/1.1\r\nHost: mine.default.%s\r\n"
                     b"Connection: close\r\n\r\n" % (domain.encode(), domain.encode()))
    assert raw.startswith(b"HTTP/1.1 404") or raw.startswith(b"HTTP/1.1 400"), raw[:40]
    # Malformed HTTP and huge headers: clear 4xx, and the router stays up.
    assert _raw(addr, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n").startswith(b"HTTP/1.1 400")
    big = b"GET /default/mine/rev HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    assert _raw(addr, big).startswith(b"HTTP/1.1 431")
    assert get("/default/mine/rev") == (200, b"mine\n")


def test_cli_group_commands(env):
    def cli(*args, **kw):
        p = env.cli(*args, **kw)
        p.stdout = p.stdout.decode() if isinstance(p.stdout, bytes) else p.stdout
        return p

    out = cli("group", "deploy", "--image", "busybox", "--port", "8080",
                  "--readiness-path", "/health", "clig", "--",
                  *serve("cli")).stdout
    assert "clig (revision 1)" in out
    deadline = time.time() + 30
    while "1 of 1 replicas ready" not in cli("group", "inspect", "clig").stdout:
        assert time.time() < deadline
        time.sleep(0.1)
    ls = cli("group", "ls").stdout
    assert "clig" in ls and "/default/clig" in ls
    r = hutch.scaling_group.router_request(ScalingGroup.from_name("clig").url, "/rev")
    assert r.text == "cli\n"
    assert "0..2" in cli("group", "scale", "clig", "0", "2").stdout
    assert cli("group", "rm", "clig").stdout.strip() == "clig"
    assert "clig" not in cli("group", "ls").stdout
    assert cli("group", "inspect", "clig", check=False).returncode != 0


def test_access_log_and_metrics(env_json):
    """A line per request in hutchd's JSON log (without the query string),
    and per-group numbers on /metrics: requests by status class, held
    requests, replicas ready and wanted, scale events."""
    import json
    import re
    import urllib.request
    d = env_json
    sg = ScalingGroup(image="busybox", name="logged", port=8080, min_replicas=0,
                      max_replicas=1, command=serve()).deploy()
    # From zero: held until the replica is ready.
    assert sg.call("/health?token=hunter2secret").status_code == 200
    for _ in range(3):
        assert sg.call("/health").status_code == 200
    assert sg.call("/missing").status_code == 404
    m = re.search(r"HTTP on http://([0-9.]+:[0-9]+)", d.log())
    assert m, d.log()[-2000:]
    metrics = urllib.request.urlopen("http://%s/metrics" % m.group(1), timeout=10).read().decode()
    lbl = 'tenant="default",group="logged"'

    def value(name, extra=""):
        mm = re.search(r"^hutch_%s\{%s%s\} (\S+)$" % (name, re.escape(lbl), re.escape(extra)),
                       metrics, re.M)
        assert mm, "%s%s not in\n%s" % (name, extra, metrics)
        return float(mm.group(1))

    assert value("group_requests_total", ',code="2xx"') == 4
    assert value("group_requests_total", ',code="4xx"') == 1
    assert value("group_requests_held_total") >= 1
    assert value("group_replicas_ready") == 1
    assert value("group_replicas_wanted") == 1
    assert value("group_scale_events_total", ',direction="up"') >= 1
    assert value("group_request_duration_seconds_count") == 5
    assert value("group_request_duration_seconds_bucket", ',le="+Inf"') == 5
    assert value("group_requests_in_flight") == 0
    assert "# TYPE hutch_group_request_duration_seconds histogram" in metrics
    assert re.search(r'^hutch_router_requests_total\{code="2xx"\} 4$', metrics, re.M)

    lines = []
    for raw in d.log().splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if rec.get("source") == "router" and "status" in rec:
            lines.append(rec)
    assert len(lines) == 5, lines
    first = lines[0]
    assert first["tenant"] == "default" and first["service"] == "logged"
    assert first["kind"] == "group" and first["method"] == "GET"
    assert first["path"] == "/default/logged/health" and first["status"] == 200
    assert first["replica"] == sg.replicas[0]["sandbox_id"]
    assert first["bytes_out"] == 3 and first["duration_ms"] > 0
    assert "hunter2secret" not in d.log()
    assert lines[-1]["status"] == 404 and lines[-1]["path"] == "/default/logged/missing"
    sg.delete()


def test_dead_replica_get_retried_post_not(env_json):
    """One of two replicas' server dies while its sandbox stays up (its port
    refuses): every GET still succeeds, retried on the other replica, and a
    POST that went to the dead one gets 502, never sent twice."""
    import json
    d = env_json
    cmd = ["sh", "-c", "mkdir -p /www && echo ok > /www/health && "
           "httpd -p 8080 -h /www && exec sleep 100000"]
    sg = ScalingGroup(image="busybox", name="retry", port=8080, min_replicas=2, max_replicas=2,
                      command=cmd).deploy().wait_ready()
    deadline = time.time() + 60
    while time.time() < deadline and \
            len([r for r in sg.replicas if r["state"] == "ready"]) < 2:
        time.sleep(0.1)
    reps = [r for r in sg.replicas if r["state"] == "ready"]
    assert len(reps) == 2, reps
    dead = reps[0]["sandbox_id"]
    hutch.default_client().get(dead).exec("killall", "-9", "httpd")
    addr = _router(sg)
    c = http.client.HTTPConnection(addr, timeout=10)
    for i in range(20):
        c.request("GET", "/default/retry/health")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"ok\n", (i, r.status)
    posts = []
    for i in range(12):
        c.request("POST", "/default/retry/health", body=b"x")
        r = c.getresponse()
        r.read()
        posts.append(r.status)
    c.close()
    # Picked at random between the two: some reached the dead one.
    assert 502 in posts, posts
    lines = []
    for raw in d.log().splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if rec.get("source") == "router" and rec.get("service") == "retry":
            lines.append(rec)
    gets = [x for x in lines if x["method"] == "GET"]
    assert len(gets) == 20 and all(x["status"] == 200 for x in gets), gets
    assert any(x["retried"] >= 1 for x in gets), gets
    assert all(x["replica"] != dead for x in gets), gets
    failed = [x for x in lines if x["method"] == "POST" and x["status"] == 502]
    assert failed and all(x["retried"] == 0 and x["replica"] == dead for x in failed), failed
    # The sandbox itself is still up: nothing replaced it meanwhile.
    assert dead in [r["sandbox_id"] for r in sg.replicas]
    sg.delete()


# A replica that speaks WebSocket and SSE: busybox has no such server, so
# nc runs this script once per connection (one exchange each).
STREAM_SERVER = r"""#!/bin/sh
read -r method path rest
key=
while read -r line; do
  line=${line%$(printf '\r')}
  [ -z "$line" ] && break
  case "$line" in
    [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=${line#*: };;
  esac
done
case "$path" in
/ws)
  hex=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | sha1sum | cut -d' ' -f1)
  acc=$(printf "$(echo "$hex" | sed 's/../\\x&/g')" | base64)
  printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$acc"
  exec cat;;
/sse)
  printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n'
  printf 'data: one\n\n'
  sleep 2
  printf 'data: two\n\n';;
*)
  printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n';;
esac
"""


def test_websocket_sse_and_h2c_through_a_replica(env):
    """A group's replica behind the router: a WebSocket upgrade is tunnelled
    both ways, an SSE stream's first event arrives before the stream ends,
    and an HTTP/2 (h2c, prior knowledge) client is answered."""
    import base64
    import hashlib
    import os
    import shutil
    import subprocess
    cmd = ["sh", "-c", "cat > /srv.sh <<'EOF'\n" + STREAM_SERVER + "EOF\n"
           "chmod +x /srv.sh && exec nc -ll -p 8080 -e /srv.sh"]
    sg = ScalingGroup(image="busybox", name="streams", port=8080, min_replicas=1,
                      command=cmd).deploy().wait_ready()
    addr = _router(sg)
    host, port = addr.rsplit(":", 1)

    # WebSocket: the handshake reaches the replica and its answer comes back
    # (the accept key is the replica's own), then bytes flow both ways.
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(("GET /default/streams/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (addr, key)).encode())
        f = s.makefile("rb")
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 101"), status
        headers = {}
        while True:
            line = f.readline().rstrip(b"\r\n")
            if not line:
                break
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == want, headers
        mask = os.urandom(4)
        payload = b"hello through the router"
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + \
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(frame)
        echoed = f.read(len(frame))  # the replica echoes every byte
        assert echoed == frame, echoed
    finally:
        s.close()

    # SSE: streamed, not buffered until the end (the replica waits 2 s
    # between its two events).
    c = http.client.HTTPConnection(addr, timeout=10)
    t0 = time.time()
    c.request("GET", "/default/streams/sse", headers={"Accept": "text/event-stream"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    # The router sends a close-delimited body on chunked: read through r.
    assert r.readline() == b"data: one\n"
    t_first = time.time() - t0
    r.readline()
    assert r.readline() == b"data: two\n"
    t_second = time.time() - t0
    c.close()
    assert t_first < 1.5 and t_second >= 1.5, (t_first, t_second)

    # HTTP/2 with prior knowledge, to the router; the replica gets HTTP/1.1.
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}",
                          "http://%s/default/streams/health" % addr],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n\n2", out.stdout
    sg.delete()


@pytest.fixture
def env_tls(monkeypatch, tmp_path):
    """The router on TLS, with a self-signed certificate for 127.0.0.1."""
    import subprocess
    cert, key = tmp_path / "router.crt", tmp_path / "router.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    env = _daemon_env(monkeypatch, CONFIG + 'tls_cert = "%s"\ntls_key = "%s"\n' % (cert, key))
    d = next(env)
    d.router_ca = str(cert)
    yield d
    next(env, None)


def test_router_serves_tls_with_http1_and_h2(env_tls):
    """With tls_cert/tls_key the router speaks only TLS: HTTP/1.1 and HTTP/2
    (ALPN) reach the replica; a certificate the client does not trust, or
    plain HTTP, gets nothing."""
    import subprocess
    sg = ScalingGroup(image="busybox", name="secure", port=8080, min_replicas=1,
                      max_replicas=1, command=serve()).deploy().wait_ready()
    port = _router(sg).rsplit(":", 1)[1]
    url = "https://127.0.0.1:%s/default/secure/health" % port

    def curl(*args):
        return subprocess.run(["curl", "-sS", "--max-time", "20", *args, url],
                              capture_output=True, text=True)
    r = curl("--cacert", env_tls.router_ca, "--http1.1", "-w", " %{http_version}")
    assert r.returncode == 0 and r.stdout == "ok\n 1.1", (r.stdout, r.stderr)
    r = curl("--cacert", env_tls.router_ca, "--http2", "-w", " %{http_version}")
    assert r.returncode == 0 and r.stdout == "ok\n 2", (r.stdout, r.stderr)
    r = curl()  # the system's trust store does not know the certificate
    assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr
    plain = subprocess.run(["curl", "-sS", "--max-time", "20",
                            "http://127.0.0.1:%s/default/secure/health" % port],
                           capture_output=True, text=True)
    assert "ok" not in plain.stdout, plain.stdout
    sg.delete()
