"""Services by name from inside sandboxes: net-egress's resolver answers
<group>.<tenant>.<domain> with the gateway, hutchd's router listens there
for sandboxes ([router] sandbox_listen), and a sandbox reaches its own
tenant's groups only, whatever Host or path it sends. Runs in the same
namespaces as test_egress.py (World: hutchd in H, a DNS server in I)."""
import hashlib
import json
import socket
import time

from hutchtest import HUTCH
from test_egress import GATEWAY, POOL, EgressDaemon, World, create, run, tcp  # noqa: F401

DOMAIN = "svc.test"
KEY = "tenant-b-key-0123456789abcdef"


def serve(body):
    return ["sh", "-c", "mkdir -p /www && echo ok > /www/health && echo %s > /www/who && "
            "exec httpd -f -p 8080 -h /www" % body]


def test_group_names_resolve_in_sandboxes_to_their_own_tenant_only():
    w = World()
    d = None
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            api_port = s.getsockname()[1]
        cfg = ('[plugins]\nnetwork = ["net-egress"]\n'
               '[plugin.net-egress]\npool = "%s"\nupstream_dns = ["198.18.0.1"]\n'
               'router_domain = "%s"\n'
               '[router]\ndomain = "%s"\nsandbox_listen = "%s:80"\n'
               '[api]\ntcp_listen = "127.0.0.1:%d"\nallow_plaintext_tcp = true\n'
               '[[api.key]]\ntenant = "b"\nsha256 = "%s"\n') % (
                   POOL, DOMAIN, DOMAIN, GATEWAY, api_port, hashlib.sha256(KEY.encode()).hexdigest())
        d = EgressDaemon(w, cfg)

        def cli_b(*args, check=True):
            return w.run_in(w.h, HUTCH, "--address", "127.0.0.1:%d" % api_port, "--api-key", KEY,
                            "--plaintext", *args, check=check).stdout.decode()

        # A group named "web" in each tenant, saying which it is.
        d.cli("group", "deploy", "--image", "busybox", "--port", "8080", "web", "--",
              *serve("tenant-default"))
        cli_b("group", "deploy", "--image", "busybox", "--port", "8080", "web", "--",
              *serve("tenant-b"))
        deadline = time.time() + 60
        while ("1 of 1 replicas ready" not in d.cli("group", "inspect", "web").stdout.decode() or
               "1 of 1 replicas ready" not in cli_b("group", "inspect", "web")):
            assert time.time() < deadline, d.log()[-3000:]
            time.sleep(0.2)
        a = create(d)
        b = w.run_in(w.h, HUTCH, "--address", "127.0.0.1:%d" % api_port, "--api-key", KEY,
                     "--plaintext", "sandbox", "create").stdout.decode().strip()

        # The name resolves to the gateway, where the router is.
        rc, out, _ = run(d, a, "nslookup web.default.%s" % DOMAIN)
        assert GATEWAY in out, out

        def get(sid, url, host=None):
            hdr = "--header 'Host: %s' " % host if host else ""
            script = "wget -q -O - %s%s 2>&1; echo rc=$?" % (hdr, url)
            if sid == b:  # tenant b's sandbox, through tenant b's API
                return cli_b("exec", sid, "--", "sh", "-c", script, check=False)
            return run(d, sid, script)[1]

        # Its own tenant's group: by name, by bare name, by path.
        assert "tenant-default" in get(a, "http://web.default.%s/who" % DOMAIN)
        assert "tenant-default" in get(a, "http://%s/who" % GATEWAY, host="web")
        assert "tenant-default" in get(a, "http://%s/default/web/who" % GATEWAY)
        # The other tenant's group of the same name: not by name, Host,
        # path or header tricks (404, as a group that does not exist).
        for url, host in (("http://web.b.%s/who" % DOMAIN, None),
                          ("http://%s/who" % GATEWAY, "web.b.%s" % DOMAIN),
                          ("http://%s/b/web/who" % GATEWAY, None)):
            out = get(a, url, host)
            assert "tenant-b" not in out and "404" in out, (url, host, out)
        rc, out, _ = run(d, a, "wget -q -O - --header 'X-Forwarded-Host: web.b.%s' "
                               "http://web.default.%s/who" % (DOMAIN, DOMAIN))
        assert "tenant-default" in out
        # And the other way round.
        assert "tenant-b" in get(b, "http://web.b.%s/who" % DOMAIN)
        out = get(b, "http://web.default.%s/who" % DOMAIN)
        assert "tenant-default" not in out and "404" in out, out
        # Nothing else of the host opened up: its web server on :8080.
        assert tcp(d, a, GATEWAY, 8080) == "timeout"
    finally:
        if d is not None:
            # Tenant b's group and sandbox: the harness stops only what the
            # socket's tenant sees.
            if "cli_b" in locals() and d.proc.poll() is None:
                cli_b("group", "rm", "web", check=False)
                try:
                    listed = json.loads(cli_b("--json", "sandbox", "ls", check=False) or "{}")
                except ValueError:
                    listed = {}
                for sb in listed.get("sandboxes", []):
                    cli_b("sandbox", "stop", sb["id"], check=False)
            d.cleanup()
        w.close()
