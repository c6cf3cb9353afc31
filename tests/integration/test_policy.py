"""Network policy objects: create, check, list, replace, delete, tenants.
(Enforcement is tested with the net-egress plugin in tests/net and
tests/integration/test_egress.py.)"""
import json

import grpc
import pytest

from hutchtest import daemon, protos, unary


def test_policy_crud_and_checks():
    with daemon() as d:
        r = d.cli("policy", "create", "web", "--allow-host", "API.Example.com.",
                  "--allow-host", "*.pypi.org", "--deny-cidr", "10.0.0.0/8",
                  "--allow-cidr", "2001:db8::/32", "--description", "web access")
        assert r.stdout == b"web\n"
        p = json.loads(d.cli("--json", "policy", "inspect", "web").stdout)
        # Hostnames are normalised: lower case, no trailing dot.
        assert p["allowed_hostnames"] == ["api.example.com", "*.pypi.org"]
        assert p["denied_cidrs"] == ["10.0.0.0/8"]
        assert p["tenant"] == "default" and p["created_unix_ms"] > 0
        for args, msg in [
            (["--allow-host", "*"], "would match everything"),
            (["--allow-host", "a.*.com"], "wildcards only as `*.` at the start"),
            (["--allow-host", "*.com"], "too broad"),
            (["--deny-host", "bad host"], "is not allowed"),
            (["--allow-cidr", "10.0.0.0/33"], "prefix length must be 0-32"),
            (["--deny-cidr", "example.com"], "is not a CIDR"),
        ]:
            r = d.cli("policy", "create", "bad", *args, check=False)
            assert r.returncode == 1 and msg in r.stderr.decode(), (args, r.stderr)
        r = d.cli("policy", "create", "web", "--allow-all", check=False)
        assert b"already exists" in r.stderr
        d.cli("policy", "create", "web", "--allow-all", "--replace")
        p = json.loads(d.cli("--json", "policy", "inspect", "web").stdout)
        assert p.get("allow_all") is True and "allowed_hostnames" not in p
        ls = json.loads(d.cli("--json", "policy", "ls").stdout)
        assert [x["name"] for x in ls["policies"]] == ["web"]
        d.cli("policy", "rm", "web")
        r = d.cli("policy", "inspect", "web", check=False)
        assert r.returncode == 1 and b"network policy `web` not found" in r.stderr
        # Without a network plugin a policy cannot be bound, and says why.
        d.cli("policy", "create", "p1", "--allow-all")
        r = d.cli("sandbox", "create", "--network-policy", "p1", check=False)
        assert r.returncode == 1 and b"need a network plugin" in r.stderr
        r = d.cli("sandbox", "create", "--network-policy", "nope", check=False)
        assert r.returncode == 1


def test_policies_are_per_tenant(tmp_path):
    import hashlib
    import socket as so
    pb = protos()
    with so.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "tenant-b-key-0123456789"
    cfg = ('[api]\ntcp_listen = "127.0.0.1:%d"\nallow_plaintext_tcp = true\n'
           '[[api.key]]\ntenant = "b"\nsha256 = "%s"\n') % (port, hashlib.sha256(key.encode()).hexdigest())
    with daemon(cfg) as d:
        d.cli("policy", "create", "shared-name", "--allow-host", "a.example.com")
        with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
            md = [("authorization", "Bearer " + key)]
            pol = pb["policy"]
            ls = unary(ch, "/hutch.v1.NetworkPolicies/List", pol.ListNetworkPoliciesRequest(),
                       pol.ListNetworkPoliciesResponse, metadata=md)
            assert not ls.policies
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.NetworkPolicies/Get",
                      pol.GetNetworkPolicyRequest(name="shared-name"), pol.NetworkPolicy,
                      metadata=md)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            # The same name is free in another tenant.
            p = unary(ch, "/hutch.v1.NetworkPolicies/Create", pol.CreateNetworkPolicyRequest(
                policy=pol.NetworkPolicy(name="shared-name", allow_all=True)), pol.NetworkPolicy,
                metadata=md)
            assert p.tenant == "b" and p.allow_all
        mine = json.loads(d.cli("--json", "policy", "inspect", "shared-name").stdout)
        assert mine["tenant"] == "default" and not mine.get("allow_all")
