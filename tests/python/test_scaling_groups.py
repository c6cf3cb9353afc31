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


@pytest.fixture
def env(monkeypatch):
    import hutchtest
    d = hutchtest.Daemon(CONFIG)
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
