"""The tunnels issue's published program, verbatim but for the import, on
debian_slim sandboxes (the session's base, imported first so that
Image.debian_slim() is a cache hit), in test_egress's namespaces with
net-egress and net-wireguard. Skipped without wireguard-go."""
import os
import shutil
import sys

import pytest

import hutch

from test_egress import EgressDaemon, World  # tests/integration, on sys.path (conftest)
from test_tunnels import config, wg_pids

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from imagetest import import_debian_base  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which("wireguard-go"),
                                reason="no wireguard-go (scripts/install-deps.sh installs it)")

PROGRAM = '''\
from hutch import SandboxClient, Image, Tunnel

client = SandboxClient()
tunnel = Tunnel(name="worker-mesh")
sandbox_a = client.create(image=Image.debian_slim(), tunnels=[tunnel])
sandbox_b = client.create(image=Image.debian_slim(), tunnels=[tunnel])
# sandbox_a and sandbox_b can now communicate over their tunnel addresses
# without traversing the public internet.
'''

SERVER = ("import socket; s = socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen(1); "
          "c, _ = s.accept(); c.sendall(b'hi over the tunnel'); c.close()")
CLIENT = ("import socket, sys, time\n"
          "for _ in range(50):\n"
          "    try:\n"
          "        c = socket.create_connection((sys.argv[1], 7000), timeout=5); break\n"
          "    except OSError:\n"
          "        time.sleep(0.1)\n"
          "print(c.recv(100).decode())\n")


def test_published_program_on_debian_slim(monkeypatch):
    w = World()
    prefix = "q%04x" % (os.getpid() & 0xffff)
    d = EgressDaemon(w, config(prefix))
    scope = {}
    try:
        import_debian_base(d)
        monkeypatch.setenv("HUTCH_SOCKET", d.sock)
        monkeypatch.delenv("HUTCH_ADDRESS", raising=False)
        hutch.set_default_client(None)
        exec(compile(PROGRAM, "published_example.py", "exec"), scope)
        a, b = scope["sandbox_a"], scope["sandbox_b"]
        addr_b = b.tunnel_address("worker-mesh")
        assert addr_b != a.tunnel_address("worker-mesh")
        b.exec("sh", "-c", "python3 -c \"%s\" >/dev/null 2>&1 &" % SERVER).check()
        r = a.exec("python3", "-c", CLIENT, addr_b)
        assert r.stdout_text == "hi over the tunnel\n", (r.stdout_text, r.stderr_text)
        a.stop()
        b.stop()
    finally:
        if "client" in scope:
            scope["client"].close()
        hutch.set_default_client(None)
        d.cleanup()
        for pid in wg_pids(prefix):
            os.kill(pid, 9)
        w.close()
