"""The SDK's Tunnel against a real hutchd with net-egress and net-wireguard
(in test_egress's namespaces): the issue's example, members and addresses,
from_name/list/create/delete. Skipped without wireguard-go."""
import os
import shutil

import pytest

import hutch
from hutch import NotFoundError, SandboxClient, Tunnel

from test_egress import EgressDaemon, World  # tests/integration, on sys.path (conftest)
from test_tunnels import config, wg_pids

pytestmark = pytest.mark.skipif(not shutil.which("wireguard-go"),
                                reason="no wireguard-go (scripts/install-deps.sh installs it)")


@pytest.fixture
def tclient():
    w = World()
    prefix = "p%04x" % (os.getpid() & 0xffff)
    d = EgressDaemon(w, config(prefix))
    try:
        with SandboxClient(d.sock) as c:
            yield c
    finally:
        d.cleanup()
        for pid in wg_pids(prefix):
            os.kill(pid, 9)
        w.close()


def test_two_sandboxes_in_a_tunnel(tclient):
    client = tclient
    tunnel = Tunnel(name="worker-mesh")
    a = client.create(tunnels=[tunnel])
    b = client.create(tunnels=[tunnel])
    addr_a, addr_b = a.tunnel_address(tunnel), b.tunnel_address("worker-mesh")
    assert addr_a != addr_b and addr_a.startswith("10.77.")
    assert any(x.startswith(addr_b + "/") for x in b.refresh().addresses)
    members = Tunnel.from_name("worker-mesh", client=client).members
    assert sorted(m.sandbox_id for m in members) == sorted([a.id, b.id])
    assert all(m.interface == "wg0" and len(m.public_key) == 44 for m in members)
    # They talk over it.
    b.exec("sh", "-c", "(echo hi | nc -l -p 7000 -w 3 >/dev/null 2>&1 &)").check()
    r = a.exec("sh", "-c", "sleep 0.3; echo x | nc -w 2 %s 7000" % addr_b)
    assert "hi" in r.stdout_text, (r.stdout_text, r.stderr_text)
    assert [t.name for t in Tunnel.list(client=client)] == ["worker-mesh"]
    # A sandbox not in it has no address there.
    c = client.create()
    with pytest.raises(NotFoundError):
        c.tunnel_address(tunnel)
    a.stop()
    b.stop()
    c.stop()
    # It went with its last member.
    with pytest.raises(NotFoundError):
        Tunnel.from_name("worker-mesh", client=client)


def test_persistent_tunnel(tclient):
    t = Tunnel("fixed", subnet="10.77.5.0/24", client=tclient).create()
    assert t.persistent and t.subnet == "10.77.5.0/24" and t.members == []
    with pytest.raises(hutch.AlreadyExistsError):
        Tunnel("fixed", client=tclient).create()
    sb = tclient.create(tunnels=["fixed"])
    assert sb.tunnel_address(t).startswith("10.77.5.")
    with pytest.raises(hutch.HutchError):
        t.delete()  # it has a member
    sb.stop()
    t.delete()
    assert Tunnel.list(client=tclient) == []


def test_external_peer(tclient):
    import subprocess
    key = subprocess.run(["wg", "genkey"], capture_output=True, check=True).stdout
    pub = subprocess.run(["wg", "pubkey"], input=key, capture_output=True,
                         check=True).stdout.decode().strip()
    t = Tunnel("office-link", client=tclient)
    t.add_peer("db", pub, "192.168.90.0/24", endpoint="198.51.100.7:51820")
    assert t.persistent and t.gateway_public_key
    [peer] = t.peers
    assert (peer.name, peer.public_key, peer.endpoint, peer.allowed_ips) == \
        ("db", pub, "198.51.100.7:51820", ["192.168.90.0/24"])
    conf = t.peer_config("db")
    assert "PublicKey = " + t.gateway_public_key in conf and "Address = " + peer.address in conf
    with pytest.raises(hutch.InvalidArgumentError):
        t.add_peer("bad", "not-a-key", "10.0.0.0/24")
    with pytest.raises(hutch.NotFoundError):
        t.peer_config("nobody")
    t.remove_peer("db")
    assert t.peers == []
    t.delete()
