"""net-egress end to end: hutchd with the net-egress (and identity-oidc)
plugin, real runsc sandboxes, policies through the CLI, a real dnsmasq
and web servers.

Each test builds its own world of network namespaces, so nothing it does
touches the machine's own network and tests run in parallel:

  H  hutchd's namespace (hutchd runs in it through nsenter): up0
     198.18.0.2/24, default route to I; a web server on :8080 (a "host
     service" no sandbox may reach); net-egress's table, veths and
     sandbox namespaces live here.
  I  the "internet": wan0 198.18.0.1/24; every address of 198.18.1.0/24
     is local; dnsmasq on 198.18.0.1 serves the test zone; busybox httpd
     on :80 serves "hello".
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from hutchtest import HUTCHD, Daemon

ZONE = {
    "allowed.test": "198.18.1.10",
    "a.allowed.test": "198.18.1.11",
    "denied.test": "198.18.1.20",
    "other.test": "198.18.1.80",
}
NEVER = "198.18.1.70"  # in no answer
POOL = "10.250.0.0/24"
GATEWAY = "10.250.0.1"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, **kw)


class World:
    """The namespaces H and I, and the servers in them."""

    def __init__(self):
        tag = "%d" % os.getpid()
        self.h, self.i = "hutch-eg-%s-h" % tag, "hutch-eg-%s-i" % tag
        self.dir = tempfile.mkdtemp(prefix="hutch-eg-")
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
        sh(*i, "route", "add", "local", "198.18.1.0/24", "dev", "lo")
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("hello\n")
        hosts = os.path.join(self.dir, "hosts")
        with open(hosts, "w") as f:
            f.writelines("%s %s\n" % (a, n) for n, a in ZONE.items())
        self.spawn(self.i, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                   "--no-resolv", "--no-hosts", "--bind-interfaces",
                   "--listen-address=198.18.0.1", "--addn-hosts=" + hosts, "--local=/test/",
                   "--local-ttl=60", "--user=root", "--pid-file=",
                   "--cname=cname.allowed.test,denied.test")
        self.spawn(self.i, "busybox", "httpd", "-f", "-p", "0.0.0.0:80", "-h", www)
        self.spawn(self.h, "busybox", "httpd", "-f", "-p", "0.0.0.0:8080", "-h", www)
        deadline = time.time() + 10
        while time.time() < deadline:
            r = self.run_in(self.h, "busybox", "nslookup", "allowed.test", "198.18.0.1",
                            check=False)
            if b"198.18.1.10" in r.stdout:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("dnsmasq did not come up")

    def spawn(self, ns, *argv):
        # nsenter rather than `ip netns exec` (which remounts /sys)
        p = subprocess.Popen(["nsenter", "--net=/run/netns/" + ns] + list(argv),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def run_in(self, ns, *argv, check=True):
        return sh("nsenter", "--net=/run/netns/" + ns, *argv, check=check, timeout=30)

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in (self.h, self.i):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    # What is left of net-egress in H.
    def links(self):
        return self.run_in(self.h, "ip", "-o", "link", "show").stdout.decode()

    def table(self):
        r = self.run_in(self.h, "nft", "list", "table", "inet", "hutch_egress", check=False)
        return r.stdout.decode() if r.returncode == 0 else ""


class EgressDaemon(Daemon):
    """hutchd inside the world's H namespace."""

    def __init__(self, world, config, **kw):
        self.world = world
        super().__init__(config, **kw)

    def command(self):
        return ["nsenter", "--net=/run/netns/" + self.world.h] + super().command()

    def audit(self, event=None, sandbox=None):
        path = os.path.join(self.state, "audit.jsonl")
        out = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    e = json.loads(line)
                    if (event is None or e.get("event") == event) and \
                       (sandbox is None or e.get("sandbox") == sandbox):
                        out.append(e)
        return out


def config(extra_egress="", identity=True, extra=""):
    text = ('[plugins]\nnetwork = ["net-egress"]\n'
            '[plugin.net-egress]\npool = "%s"\nupstream_dns = ["198.18.0.1"]\n'
            'counters_interval = "500ms"\n%s\n' % (POOL, extra_egress))
    if identity:
        text = text.replace('[plugins]\n', '[plugins]\nidentity = "identity-oidc"\n')
        text += ('[http]\nlisten = "127.0.0.1:18080"\n'
                 '[plugin.identity-oidc]\nissuer = "http://127.0.0.1:18080"\n')
    return text + extra


@pytest.fixture
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def hutchd(world):
    d = EgressDaemon(world, config())
    try:
        yield d
    finally:
        d.cleanup()


def create(d, *args):
    return d.cli("sandbox", "create", *args).stdout.decode().strip()


def run(d, sid, script, timeout=60):
    r = d.cli("exec", sid, "--", "sh", "-c", script, check=False, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def fetch(d, sid, url):
    """The body, or None when the request failed."""
    rc, out, _ = run(d, sid, "wget -q -O - %s" % url)
    return out if rc == 0 else None


def tcp(d, sid, addr, port=80):
    """'open', 'refused' or 'timeout' (busybox nc, 2 s)."""
    t0 = time.time()
    rc, out, err = run(d, sid, "nc -w 2 %s %d </dev/null; echo rc=$?" % (addr, port))
    text = out + err
    if "rc=0" in text:
        return "open"
    if "refused" in text.lower():
        return "refused"
    assert "timed out" in text or time.time() - t0 >= 1.9, text
    return "timeout"


def host_link_of(world, sid):
    for line in world.links().splitlines():
        if re.search(r"alias %s\b" % re.escape(sid), line):
            return line.split(":")[1].strip().split("@")[0]
    return None


def assert_no_trace(world, d, sid, ifname):
    assert ifname not in world.links(), world.links()
    table = world.table()
    assert '"%s"' % ifname not in table and "c_%s" % ifname not in table, table
    ns_dir = os.path.join(d.run, "plugins", "net-egress", "netns")
    assert not os.path.exists(os.path.join(ns_dir, sid))


def test_policy_enforced_in_a_running_sandbox(hutchd):
    d = hutchd
    d.cli("policy", "create", "web", "--allow-host", "*.allowed.test",
          "--allow-host", "allowed.test", "--deny-host", "denied.test")
    d.cli("policy", "create", "open", "--allow-all")
    sid = create(d, "--network-policy", "web")
    rc, resolv, _ = run(d, sid, "cat /etc/resolv.conf")
    assert "nameserver %s" % GATEWAY in resolv
    # Allowed by name; a subdomain by the wildcard.
    assert fetch(d, sid, "http://allowed.test/") == "hello\n"
    assert fetch(d, sid, "http://a.allowed.test/") == "hello\n"
    # Denied or unlisted: the name resolves, the connection times out.
    rc, out, _ = run(d, sid, "nslookup denied.test")
    assert "198.18.1.20" in out, out
    assert tcp(d, sid, "denied.test") == "timeout"
    assert tcp(d, sid, "other.test") == "timeout"
    assert tcp(d, sid, NEVER) == "timeout"
    # A CNAME of an allowed name to a denied one.
    assert tcp(d, sid, "cname.allowed.test") == "timeout"
    # Opened while it runs (for setup)...
    d.cli("sandbox", "update-policy", sid, "--network-policy", "open")
    assert fetch(d, sid, "http://other.test/") == "hello\n"
    assert tcp(d, sid, NEVER) == "open"
    # ... and locked down again.
    d.cli("sandbox", "update-policy", sid, "--network-policy", "web")
    assert tcp(d, sid, "other.test") == "timeout"
    assert fetch(d, sid, "http://allowed.test/") == "hello\n"
    info = json.loads(d.cli("--json", "sandbox", "inspect", sid).stdout)
    assert info["spec"]["network_policies"] == ["web"], info
    # Replacing a bound policy applies to the sandboxes using it.
    d.cli("policy", "create", "web", "--allow-host", "other.test", "--replace")
    deadline = time.time() + 5
    while tcp(d, sid, "other.test") != "open":
        assert time.time() < deadline, "the replaced policy was not applied"
    assert tcp(d, sid, "allowed.test") == "timeout"
    # The audit names the sandbox, tenant, names, addresses and verdicts.
    dns = d.audit("egress.dns", sid)
    assert any(e["name"] == "allowed.test" and e["verdict"] == "allowed" and
               e["tenant"] == "default" and
               e["addresses"][0] == {"address": "198.18.1.10", "ttl": 60, "verdict": "allowed"}
               for e in dns), dns
    assert any(e["name"] == "denied.test" and e["verdict"] == "denied" for e in dns)
    drops = d.audit("egress.drop", sid)
    assert any(e["address"] == "198.18.1.20" and e["reason"] == "denied" and
               e.get("name") == "denied.test" and e["port"] == 80 for e in drops), drops
    assert any(e["address"] == NEVER and e["reason"] == "not_allowed" for e in drops), drops
    status = d.cli("status").stdout.decode()
    assert "enforcement: host nftables, drop (no reject)" in status, status


def test_isolation_metadata_and_dns(world, hutchd):
    d = hutchd
    a = create(d)  # no policy: unrestricted egress by default
    b = create(d)
    assert fetch(d, a, "http://other.test/") == "hello\n"
    b_addr = json.loads(d.cli("--json", "sandbox", "inspect", b).stdout)["addresses"][0]
    b_addr = b_addr.split("/")[0]
    # b listens; b reaches itself, a does not reach b.
    proc = subprocess.Popen([os.path.join(os.path.dirname(HUTCHD), "hutch"), "exec", b, "--",
                             "nc", "-ll", "-p", "8000", "-e", "echo", "hi"],
                            env=dict(os.environ, HUTCH_SOCKET=d.sock),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while tcp(d, b, "127.0.0.1", 8000) != "open":
            assert time.time() < deadline, "the server in b did not come up"
        assert tcp(d, a, b_addr, 8000) == "timeout"
    finally:
        proc.kill()
        proc.wait()
    # The host's own services: on its address and on the gateway.
    assert world.run_in(world.h, "busybox", "wget", "-q", "-O", "-",
                        "http://198.18.0.2:8080/").stdout == b"hello\n"
    assert tcp(d, a, "198.18.0.2", 8080) == "timeout"
    assert tcp(d, a, GATEWAY, 8080) == "timeout"
    # Link-local: the sandbox's own metadata endpoint works (it is local
    # to its namespace), any other link-local address does not.
    rc, out, err = run(d, a, "wget -q -O - --header 'Metadata-Flavor: hutch' "
                             "http://169.254.169.254/v1/identity/token")
    assert rc == 0 and out.count(".") == 2, (out, err)
    assert tcp(d, a, "169.254.169.253") == "timeout"
    assert tcp(d, a, "169.254.1.1") == "timeout"
    # DNS only through hutchd's resolver.
    rc, out, _ = run(d, a, "nslookup allowed.test")
    assert rc == 0 and "198.18.1.10" in out
    rc, out, _ = run(d, a, "timeout 5 nslookup allowed.test 198.18.0.1")
    assert "198.18.1.10" not in out
    drops = d.audit("egress.drop", a)
    reasons = {e["reason"] for e in drops}
    assert {"blocked", "host", "dns_not_via_resolver"} <= reasons, drops


def test_stop_failure_restart_and_crash_leave_nothing(world, tmp_path):
    d = EgressDaemon(world, config())
    try:
        d.cli("policy", "create", "web", "--allow-host", "allowed.test")
        sid = create(d, "--network-policy", "web")
        ifname = host_link_of(world, sid)
        assert ifname, world.links()
        assert fetch(d, sid, "http://allowed.test/") == "hello\n"
        d.cli("sandbox", "stop", sid)
        assert_no_trace(world, d, sid, ifname)
        # A create that fails after the network was attached (the writable
        # layer cannot be made that small) leaves nothing either.
        before = world.links()
        r = d.cli("sandbox", "create", "--network-policy", "web", "--disk", "1", check=False)
        assert r.returncode != 0 and b"at least" in r.stderr, r.stderr
        failed = re.search(rb"create sandbox (sb-[0-9a-f]+)", r.stderr).group(1).decode()
        actions = [e["action"] for e in d.audit("egress.sandbox", failed)]
        assert actions == ["attach", "detach"], actions
        assert world.links().count("alias") == before.count("alias"), world.links()
        assert not os.listdir(os.path.join(d.run, "plugins", "net-egress", "netns"))
        # A restart keeps a running sandbox confined, and its policy.
        sid = create(d, "--network-policy", "web")
        ifname = host_link_of(world, sid)
        assert fetch(d, sid, "http://allowed.test/") == "hello\n"
        d.stop()
        assert '"%s"' % ifname in world.table()  # still confined meanwhile
        d.start()
        assert fetch(d, sid, "http://allowed.test/") == "hello\n"
        assert tcp(d, sid, "other.test") == "timeout"
        # A crash, then a restart that cleans up what ran.
        d.kill()
        with open(d.config, "a") as f:
            f.write('[sandbox]\non_restart = "cleanup"\n')
        d.start()
        assert_no_trace(world, d, sid, ifname)
        # With no sandbox left, a stop removes the table.
        d.stop()
        assert world.table() == ""
    finally:
        d.cleanup()


def test_bad_config_is_refused_clearly(world):
    d = EgressDaemon(world, config('pool6 = "fd00::/120"', identity=False), start=False)
    try:
        d.start(wait=False)
        assert d.proc.wait(30) != 0
        assert "pool6 `fd00::/120` is too small (at most /112)" in d.log(), d.log()
        assert world.table() == ""
    finally:
        d.cleanup()
