"""hutchd on its built-in defaults, with no config file: every sandbox has a
network with unrestricted egress (net-egress) and an identity token
(identity-oidc); where the host cannot give it one of them, hutchd refuses
to start and names the key to change.

hutchd runs with private state and run dirs, inside a world of network
namespaces the test makes, so net-egress's table, veths and resolver and
identity-oidc's listener on 127.0.0.1:7480 are the test's own, and no
packet leaves them:

  H  hutchd's namespace: up0 198.18.0.2/24, default route to I; a web
     server on :8080 (a service of the host, which no sandbox may reach).
  I  "the internet": wan0 198.18.0.1/24, a web server on :80.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from hutchtest import Daemon


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, timeout=30, **kw)


class World:
    def __init__(self):
        tag = "%d" % os.getpid()
        self.h, self.i = "hutch-df-%s-h" % tag, "hutch-df-%s-i" % tag
        self.dir = tempfile.mkdtemp(prefix="hutch-df-")
        self.procs = []
        for ns in (self.h, self.i):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            sh("ip", "netns", "add", ns)
        h, i = ["ip", "-n", self.h], ["ip", "-n", self.i]
        sh(*h, "link", "set", "lo", "up")
        sh(*i, "link", "set", "lo", "up")
        sh(*h, "link", "add", "up0", "type", "veth", "peer", "name", "wan0", "netns", self.i)
        sh(*h, "addr", "add", "198.18.0.2/24", "dev", "up0")
        sh(*h, "link", "set", "up0", "up")
        sh(*h, "route", "add", "default", "via", "198.18.0.1")
        sh(*i, "addr", "add", "198.18.0.1/24", "dev", "wan0")
        sh(*i, "link", "set", "wan0", "up")
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("hello from outside\n")
        self.spawn(self.i, "busybox", "httpd", "-f", "-p", "198.18.0.1:80", "-h", www)
        self.spawn(self.h, "busybox", "httpd", "-f", "-p", "198.18.0.2:8080", "-h", www)

    def spawn(self, ns, *argv, stdout=subprocess.DEVNULL):
        # nsenter rather than `ip netns exec` (which remounts /sys)
        p = subprocess.Popen(["nsenter", "--net=/run/netns/" + ns] + list(argv),
                             stdout=stdout, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def hold(self, script):
        """Runs a Python script in H that takes something hutchd wants and
        prints "held" once it has it; returns when it does."""
        p = self.spawn(self.h, "/usr/bin/python3", "-c", script, stdout=subprocess.PIPE)
        line = p.stdout.readline()
        assert line.strip() == b"held", line
        return p

    def table(self):
        r = sh("nsenter", "--net=/run/netns/" + self.h, "nft", "list", "table", "inet",
               "hutch_egress", check=False)
        return r.stdout.decode() if r.returncode == 0 else ""

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in (self.h, self.i):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class DefaultsDaemon(Daemon):
    """hutchd in H with no config file at all: only private dirs."""

    def __init__(self, world, **kw):
        self.world = world
        super().__init__("", defaults=True, env={"HUTCH_CONFIG": ""}, **kw)

    def command(self):
        cmd = super().command()
        i = cmd.index("-c")
        del cmd[i:i + 2]
        return ["nsenter", "--net=/run/netns/" + self.world.h] + cmd


@pytest.fixture
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_defaults_give_every_sandbox_egress_and_an_identity(world):
    d = DefaultsDaemon(world)
    try:
        assert "-c" not in d.command()
        st = json.loads(d.cli("status", "--json").stdout)
        assert {p["name"]: p["kind"] for p in st["plugins"]} == {
            "runtime-gvisor": "runtime", "net-egress": "network", "identity-oidc": "identity"}
        assert "HTTP on http://127.0.0.1:7480" in d.log()
        sid = d.cli("sandbox", "create").stdout.decode().strip()

        # Its identity: a token whose subject is this sandbox.
        r = d.cli("exec", sid, "--", "cat", "/run/hutch/identity/token")
        c = claims(r.stdout.decode().strip())
        assert c["sub"] == "sandbox:default/" + sid
        assert c["iss"] == "http://127.0.0.1:7480"
        assert c["exp"] > time.time()

        # Egress is open: a server beyond the host's uplink answers.
        r = d.cli("exec", sid, "--", "wget", "-q", "-O", "-",
                  "http://198.18.0.1/", check=False)
        assert r.returncode == 0 and r.stdout == b"hello from outside\n", r
        # ... but not the host's own services (dropped: a timeout).
        r = d.cli("exec", sid, "--", "sh", "-c",
                  "nc -w 2 198.18.0.2 8080 </dev/null; echo rc=$?", check=False)
        assert b"rc=0" not in r.stdout, r
        assert world.table(), "net-egress's table is in hutchd's namespace"
        d.cli("sandbox", "stop", sid)
        assert d.stop() == 0
        assert world.table() == "", "a stop with no sandbox left removes the table"
    finally:
        d.cleanup()


def refused(world, why):
    """Starts hutchd on its defaults and expects it to exit 1; its log."""
    d = DefaultsDaemon(world, start=False)
    try:
        d.start(wait=False)
        assert d.proc.wait(60) == 1, d.log()
        log = d.log()
        assert why in log, log
        assert not os.path.exists(d.sock)
        assert world.table() == "", "nothing of net-egress is left"
        return log
    finally:
        d.cleanup()


def test_defaults_refuse_to_start_without_the_identity_listener(world):
    world.hold("import socket, time\n"
               "s = socket.socket(); s.bind(('127.0.0.1', 7480)); s.listen()\n"
               "print('held', flush=True); time.sleep(300)\n")
    log = refused(world, "[http] listen on 127.0.0.1:7480")
    assert 'set [http] listen to a free "host:port"' in log
    assert '[plugins] identity = ""' in log


# nfnetlink_log's BIND for group 6567, net-egress's default nflog_group.
HOLD_NFLOG = """
import socket, struct, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
attr = struct.pack("=HHB3x", 5, 1, 1)                   # NFULA_CFG_CMD: BIND
body = struct.pack("=BBH", 0, 0, socket.htons(6567)) + attr
hdr = struct.pack("=IHHII", 16 + len(body), (4 << 8) | 1, 1 | 4, 1, 0)
s.send(hdr + body)
err = struct.unpack("=i", s.recv(4096)[16:20])[0]
assert err == 0, err
print("held", flush=True)
time.sleep(300)
"""


def test_defaults_refuse_to_start_without_the_network(world):
    world.hold(HOLD_NFLOG)
    log = refused(world, "nflog group 6567 is taken by another program")
    assert "set nflog_group to a free one" in log
    assert "net-egress is hutchd's default network plugin" in log
    assert "[plugins] network = []" in log
