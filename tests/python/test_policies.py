"""NetworkPolicy through the SDK: create, get, list, replace (apply),
delete, the server's checks as exceptions, and binding to sandboxes."""
import pytest

from hutch import (AlreadyExistsError, InvalidArgumentError, NetworkPolicy, NotFoundError,
                   UnimplementedError)


def test_policy_crud(client):
    p = NetworkPolicy(name="web", allow_all=False,
                      allowed_hostnames=["API.Example.com.", "*.pypi.org"],
                      description="web access", allowed_cidrs=["2001:db8::/32"],
                      denied_hostnames=["bad.example.com"], denied_cidrs=["10.0.0.0/8"])
    assert p.create(client) is p
    # hutchd's answer: normalised hostnames, tenant, times.
    assert p.allowed_hostnames == ["api.example.com", "*.pypi.org"]
    assert p.denied_cidrs == ["10.0.0.0/8"] and p.allowed_cidrs == ["2001:db8::/32"]
    assert p.denied_hostnames == ["bad.example.com"]
    assert p.tenant == "default" and p.created_unix_ms > 0 and p.description == "web access"
    got = NetworkPolicy.get("web", client)
    assert got == p and got.allowed_hostnames == p.allowed_hostnames
    assert [x.name for x in NetworkPolicy.list(client)] == ["web"]
    with pytest.raises(AlreadyExistsError) as e:
        NetworkPolicy(name="web", allow_all=True).create(client)
    assert "already exists" in str(e.value)
    # apply() replaces.
    q = NetworkPolicy(name="web", allow_all=True).apply(client)
    assert q.allow_all and q.allowed_hostnames == []
    assert NetworkPolicy.get("web", client).allow_all
    assert p.refresh().allow_all
    NetworkPolicy(name="second", allowed_hostnames=["example.org"]).create(client)
    assert sorted(x.name for x in NetworkPolicy.list(client)) == ["second", "web"]
    q.delete()
    with pytest.raises(NotFoundError) as e:
        NetworkPolicy.get("web", client)
    assert "network policy `web` not found" in str(e.value)
    with pytest.raises(NotFoundError):
        q.delete()


def test_servers_checks_become_exceptions_with_its_message(client):
    for kw, msg in [
        ({"allowed_hostnames": ["*"]}, "would match everything"),
        ({"allowed_hostnames": ["a.*.com"]}, "wildcards only as `*.` at the start"),
        ({"allowed_hostnames": ["*.com"]}, "too broad"),
        ({"denied_hostnames": ["bad host"]}, "is not allowed"),
        ({"allowed_cidrs": ["10.0.0.0/33"]}, "prefix length must be 0-32"),
        ({"denied_cidrs": ["example.com"]}, "is not a CIDR"),
    ]:
        with pytest.raises(InvalidArgumentError) as e:
            NetworkPolicy(name="bad", **kw).create(client)
        assert msg in str(e.value), (kw, str(e.value))
    with pytest.raises(InvalidArgumentError):
        NetworkPolicy(name="bad name!").create(client)
    with pytest.raises(InvalidArgumentError):
        NetworkPolicy(name="")


def test_binding_policies_to_sandboxes(client, default_env):
    # Policy objects given to create() are applied first; without a network
    # plugin hutchd then refuses to bind them, and says why.
    p = NetworkPolicy(name="egress", allowed_hostnames=["example.com"])
    with pytest.raises(UnimplementedError) as e:
        client.create(network_policies=[p])
    assert "need a network plugin" in str(e.value)
    assert NetworkPolicy.get("egress", client).allowed_hostnames == ["example.com"]
    with pytest.raises(UnimplementedError):
        client.create(network_policies=["egress"])
    # A policy that does not exist is named in the error.
    with pytest.raises(Exception) as e:
        client.create(network_policies=["nope"])
    assert "nope" in str(e.value) or "network plugin" in str(e.value)
    sb = client.create()
    with pytest.raises(UnimplementedError) as e:
        sb.update_network_policies([p])
    assert "network plugin" in str(e.value)
    # Through the default client too (NetworkPolicy without client=).
    NetworkPolicy(name="via-default", allow_all=True).create()
    assert [x.name for x in NetworkPolicy.list()] == ["egress", "via-default"]
