"""Tunnels end to end: hutchd with net-egress and net-wireguard, real runsc
sandboxes joining WireGuard meshes through the CLI, in the namespaces of
test_egress's World (hutchd runs in H; nothing reaches the machine's own
network). Skipped without wireguard-go."""
import base64
import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from test_egress import EgressDaemon, World

WG_POOL = "10.77.0.0/16"

pytestmark = pytest.mark.skipif(not shutil.which("wireguard-go"),
                                reason="no wireguard-go (scripts/install-deps.sh installs it)")


def config(prefix):
    return ('[plugins]\nnetwork = ["net-egress", "net-wireguard"]\n'
            '[plugin.net-egress]\npool = "10.251.0.0/24"\nupstream_dns = ["198.18.0.1"]\n'
            '[plugin.net-wireguard]\npool = "%s"\nhost_prefix = "%s"\n' % (WG_POOL, prefix))


@pytest.fixture
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def hutchd(world):
    prefix = "i%04x" % (os.getpid() & 0xffff)
    d = EgressDaemon(world, config(prefix))
    d.prefix = prefix
    try:
        yield d
    finally:
        for sid in json.loads(d.cli("--json", "sandbox", "ls", check=False).stdout or b"{}") \
                .get("sandboxes", []):
            d.cli("sandbox", "stop", sid["id"], check=False)
        d.cleanup()
        for pid in wg_pids(prefix):
            os.kill(pid, 9)
        for s in glob.glob("/var/run/wireguard/%s*.sock" % prefix):
            os.unlink(s)


def wg_pids(prefix):
    out = []
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            argv = open(p, "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"wireguard-go") and \
           any(a.startswith(prefix.encode()) for a in argv[1:]):
            out.append(int(p.split("/")[2]))
    return out


def create(d, *args):
    return d.cli("sandbox", "create", *args).stdout.decode().strip()


def sh(d, sid, script, timeout=60):
    r = d.cli("exec", sid, "--", "sh", "-c", script, check=False, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def tunnel(d, name):
    return json.loads(d.cli("--json", "tunnel", "inspect", name).stdout)


def address_of(d, name, sid):
    for m in tunnel(d, name).get("members", []):
        if m["sandbox_id"] == sid:
            return m["address"].split("/")[0]
    raise AssertionError("%s is not in tunnel %s" % (sid, name))


def serve(d, sid, port):
    """A busybox nc server in the sandbox answering "hi-<sid>" (background)."""
    d.cli("exec", sid, "--", "sh", "-c",
          "(while true; do echo hi-%s | nc -l -p %d -w 2; done) >/dev/null 2>&1 &"
          % (sid, port))
    time.sleep(0.3)


def connect(d, sid, addr, port):
    rc, out = sh(d, sid, "echo ping | nc -w 2 %s %d" % (addr, port))
    return out


def private_keys(prefix):
    """Every member's private key, hex and base64, as wireguard-go tells
    root on the host."""
    import socket
    keys = []
    for path in glob.glob("/var/run/wireguard/%s*.sock" % prefix):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"get=1\n\n")
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        for line in data.decode().splitlines():
            if line.startswith("private_key="):
                raw = bytes.fromhex(line.split("=", 1)[1])
                keys.append((raw.hex(), base64.b64encode(raw).decode()))
    return keys


def test_mesh_between_two_sandboxes(hutchd, world):
    d = hutchd
    a = create(d, "--tunnel", "mesh")
    b = create(d, "--tunnel", "mesh")
    other = create(d, "--tunnel", "elsewhere")
    none = create(d)
    info = tunnel(d, "mesh")
    assert sorted(m["sandbox_id"] for m in info["members"]) == sorted([a, b]), info
    assert info["subnet"].startswith("10.77."), info
    addr_a, addr_b = address_of(d, "mesh", a), address_of(d, "mesh", b)
    # The interface is in the sandbox, with its address.
    rc, out = sh(d, a, "ip addr show wg0 2>/dev/null || cat /proc/net/dev")
    assert "wg0" in out, out
    # TCP both ways over the tunnel addresses (busybox has no UDP client:
    # tests/net's mesh case sends UDP through the same devices).
    serve(d, b, 7000)
    assert "hi-%s" % b in connect(d, a, addr_b, 7000)
    serve(d, a, 7001)
    assert "hi-%s" % a in connect(d, b, addr_a, 7001)
    # Handshakes are reported.
    assert any(m["last_handshake_unix"] for m in tunnel(d, "mesh")["members"])
    # Another tunnel's member and a sandbox in none cannot reach it.
    assert "hi-" not in connect(d, other, addr_b, 7000)
    assert "hi-" not in connect(d, none, addr_b, 7000)
    # The CLI shows the address.
    info = json.loads(d.cli("--json", "sandbox", "inspect", a).stdout)
    assert addr_a + "/24" in info["addresses"] and info["spec"]["tunnels"] == ["mesh"], info
    out = d.cli("tunnel", "ls").stdout.decode()
    assert re.search(r"^mesh\s+10\.77\.\S+\s+2\s+no", out, re.M), out
    # Canary: no private key inside any sandbox (files, environment).
    keys = private_keys(d.prefix)
    assert len(keys) == 3, keys
    pats = " ".join("-e '%s' -e '%s'" % k for k in keys)
    # The search can fail: a key planted in a sandbox is found.
    sh(d, none, "echo %s > /tmp/planted" % keys[0][1])
    rc, out = sh(d, none, "grep -lF %s /tmp/planted" % pats)
    assert "/tmp/planted" in out, out
    sh(d, none, "rm /tmp/planted")
    for sid in (a, b, other, none):
        rc, out = sh(d, sid, "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune "
                     "-o -type f -print 2>/dev/null | xargs grep -lF %s 2>/dev/null; "
                     "cat /proc/[0-9]*/environ 2>/dev/null | grep -cF %s" % (pats, pats),
                     timeout=120)
        assert out.strip() == "0", (sid, out)
    # Stop tears it down: its process, socket and interface; B alone stays.
    pids = wg_pids(d.prefix)
    d.cli("sandbox", "stop", a)
    assert len(wg_pids(d.prefix)) == len(pids) - 1
    assert [m["sandbox_id"] for m in tunnel(d, "mesh")["members"]] == [b]
    for sid in (b, other, none):
        d.cli("sandbox", "stop", sid)
    assert wg_pids(d.prefix) == []
    assert glob.glob("/var/run/wireguard/%s*.sock" % d.prefix) == []
    r = d.cli("tunnel", "inspect", "mesh", check=False)
    assert r.returncode != 0 and b"no tunnel" in r.stderr, r


def test_tunnel_api_and_bad_input(hutchd):
    d = hutchd
    d.cli("tunnel", "create", "fixed", "--subnet", "10.77.9.0/24")
    info = tunnel(d, "fixed")
    assert info["subnet"] == "10.77.9.0/24" and info.get("persistent"), info
    r = d.cli("tunnel", "create", "fixed", check=False)
    assert r.returncode != 0 and b"exists" in r.stderr
    sid = create(d, "--tunnel", "fixed")
    assert address_of(d, "fixed", sid).startswith("10.77.9.")
    r = d.cli("tunnel", "rm", "fixed", check=False)
    assert r.returncode != 0 and b"members" in r.stderr, r.stderr
    d.cli("sandbox", "stop", sid)
    d.cli("tunnel", "rm", "fixed")
    for bad, why in (("Mesh", b"tunnel name"), ("-x", b"tunnel name"), ("a.b", b"tunnel name"),
                     ("x" * 64, b"tunnel name")):
        r = d.cli("sandbox", "create", "--tunnel", bad, check=False)
        assert r.returncode != 0 and why in r.stderr, (bad, r.stderr)
    r = d.cli("sandbox", "create", "--tunnel", "a", "--tunnel", "a", check=False)
    assert r.returncode != 0 and b"twice" in r.stderr
    for subnet in ("10.77.9.0/25", "10.78.0.0/24", "nonsense", "10.77.9.1/24"):
        r = d.cli("tunnel", "create", "t2", "--subnet", subnet, check=False)
        assert r.returncode != 0 and b"subnet" in r.stderr, (subnet, r.stderr)
    assert d.cli("tunnel", "ls").stdout.decode().count("\n") == 1  # the header only


def test_external_peer_api(hutchd):
    """External peers through the CLI: add, inspect, the wg-quick file, bad
    input, remove (tests/net's external_peer sends traffic through one)."""
    d = hutchd
    key = subprocess.run(["wg", "genkey"], capture_output=True, check=True).stdout
    pub = subprocess.run(["wg", "pubkey"], input=key, capture_output=True,
                         check=True).stdout.decode().strip()
    d.cli("tunnel", "peer", "add", "mesh", "office", "--public-key", pub,
          "--allowed-ips", "192.168.77.0/24,192.168.78.0/24")
    info = tunnel(d, "mesh")
    assert info.get("persistent") and info["gateway_public_key"], info
    peer = info["peers"][0]
    assert peer["name"] == "office" and peer["public_key"] == pub, peer
    assert peer["allowed_ips"] == ["192.168.77.0/24", "192.168.78.0/24"], peer
    conf = d.cli("tunnel", "peer", "config", "mesh", "office").stdout.decode()
    assert "PublicKey = %s" % info["gateway_public_key"] in conf, conf
    assert "Address = %s" % peer["address"] in conf and "AllowedIPs = %s" % info["subnet"] in conf
    assert key.decode().strip() not in conf
    # A member gets the route to the peer's networks.
    sid = create(d, "--tunnel", "mesh")
    rc, out = sh(d, sid, "cat /proc/net/route")
    assert "004DA8C0" in out.upper(), out  # 192.168.77.0, little-endian hex
    for args, why in ((["--public-key", "nope", "--allowed-ips", "10.9.0.0/24"], b"public key"),
                      (["--public-key", pub, "--allowed-ips", "10.9.0.0/24"], b"has that key"),
                      (["--public-key", pub[:-2] + "A=", "--allowed-ips", "0.0.0.0/0"],
                       b"wider than /8"),
                      (["--public-key", pub[:-2] + "A=", "--allowed-ips", "10.9.0.0/24",
                        "--endpoint", "example.com:1"], b"endpoint")):
        r = d.cli("tunnel", "peer", "add", "mesh", "p2", *args, check=False)
        assert r.returncode != 0 and why in r.stderr, (args, r.stderr)
    r = d.cli("tunnel", "rm", "mesh", check=False)
    assert r.returncode != 0
    d.cli("sandbox", "stop", sid)
    d.cli("tunnel", "peer", "rm", "mesh", "office")
    assert not tunnel(d, "mesh").get("peers")
    d.cli("tunnel", "rm", "mesh")
    assert wg_pids(d.prefix) == []


def test_hutchd_restart_keeps_the_mesh(hutchd):
    d = hutchd
    a = create(d, "--tunnel", "mesh", "--name", "alpha")
    b = create(d, "--tunnel", "mesh")
    addr_a = address_of(d, "mesh", a)
    keys = sorted(m["public_key"] for m in tunnel(d, "mesh")["members"])
    pids = sorted(wg_pids(d.prefix))
    assert d.stop() == 0
    # The members' wireguard-go processes outlive hutchd...
    assert sorted(wg_pids(d.prefix)) == pids
    d.start()
    # ... and the next one takes them back: same keys, same processes, traffic.
    assert sorted(m["public_key"] for m in tunnel(d, "mesh")["members"]) == keys
    assert sorted(wg_pids(d.prefix)) == pids
    serve(d, a, 7000)
    assert "hi-%s" % a in connect(d, b, addr_a, 7000)
    # A member that joins now reaches the old ones.
    c = create(d, "--tunnel", "mesh")
    assert "hi-%s" % a in connect(d, c, addr_a, 7000)
    for sid in (a, b, c):
        d.cli("sandbox", "stop", sid)
    assert wg_pids(d.prefix) == []
    assert glob.glob("/var/run/wireguard/%s*.sock" % d.prefix) == []
