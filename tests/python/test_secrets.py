"""Secrets through the SDK: the store (set/info/list/delete), the four ways
to attach them to a sandbox, and their errors."""
import pytest

import hutchtest
from hutch import (AlreadyExistsError, Container, InvalidArgumentError, NotFoundError, Secret,
                   SandboxClient)

STORE = "canary-store-0d9e8f7a"
LOCAL = "canary-local-1c2b3a4d"
PG = "canary-pg-5e6f7a8b"

CONFIG = '''
[[integration]]
name = "pg"
type = "postgres"
host = "db.internal"
port = 5433
user = "app"
password = "%s"
database = "orders"
''' % PG


def _env(sb):
    out = sb.exec("env").stdout_text.splitlines()
    return dict(l.split("=", 1) for l in out if "=" in l)


def test_four_ways_into_a_sandbox(tmp_path, monkeypatch):
    d = hutchtest.Daemon(CONFIG)
    try:
        with SandboxClient(d.sock) as c:
            info = Secret.set("db", {"PASSWORD": STORE}, client=c)
            assert info.name == "db" and info.keys == ["PASSWORD"] and info.tenant == "default"
            assert STORE not in repr(info)
            envf = tmp_path / "app.env"
            envf.write_text('# comment\nFROM_FILE=file-value\nexport QUOTED="two words"\n'
                            "SINGLE='a # b'\nPLAIN=x # trailing comment\n\n")
            monkeypatch.setenv("MY_LOCAL_TOKEN", LOCAL)
            secrets = [Secret.from_env("db"), Secret.from_integration("pg"),
                       Secret.from_local_env("TOKEN", env_var_name="MY_LOCAL_TOKEN"),
                       Secret.from_local_env_file(envf)]
            assert LOCAL not in repr(secrets[2])
            sb = c.create(secrets=secrets, env={"PASSWORD": "plain-env-loses"})
            env = _env(sb)
            assert env["PASSWORD"] == STORE
            assert env["TOKEN"] == LOCAL
            assert env["FROM_FILE"] == "file-value" and env["QUOTED"] == "two words"
            assert env["SINGLE"] == "a # b" and env["PLAIN"] == "x"
            assert env["PGHOST"] == "db.internal" and env["PGPASSWORD"] == PG
            # Nothing of the values comes back in the sandbox's record.
            assert STORE not in str(sb.refresh().info) and LOCAL not in str(sb.info)
            # Containers take secrets too.
            with Container(secrets=[Secret.from_dict("inline", {"A_KEY": "a-value"})],
                           client=c) as ctr:
                assert _env(ctr)["A_KEY"] == "a-value"
            assert [i.name for i in Secret.list_integrations(c)] == ["pg"]
            assert "PGPASSWORD" in Secret.list_integrations(c)[0].keys
    finally:
        d.cleanup()


def test_store_calls_and_errors(client, monkeypatch, tmp_path):
    Secret.set("api", {"API_KEY": "v1"}, client=client)
    with pytest.raises(AlreadyExistsError):
        Secret.set("api", {"API_KEY": "v2"}, client=client)
    info = Secret.set("api", {"API_KEY": "v2", "OTHER": "o"}, replace=True, client=client)
    assert sorted(info.keys) == ["API_KEY", "OTHER"]
    assert Secret.info("api", client).keys == info.keys
    assert [s.name for s in Secret.list(client)] == ["api"]
    with pytest.raises(InvalidArgumentError) as e:
        Secret.set("bad", {"1BAD": STORE}, client=client)
    assert STORE not in str(e.value)
    sb = client.create(secrets=[Secret.from_env("api")])
    assert sb.exec("sh", "-c", "echo $API_KEY").stdout_text == "v2\n"
    Secret.delete("api", client)
    with pytest.raises(NotFoundError) as e:
        Secret.info("api", client)
    # Unknown secrets and integrations: NOT_FOUND with the server's message.
    with pytest.raises(NotFoundError) as e:
        client.create(secrets=[Secret.from_env("nope")])
    assert "secret `nope` not found" in str(e.value)
    with pytest.raises(NotFoundError) as e:
        client.create(secrets=[Secret.from_integration("nope")])
    assert "integration `nope` not found" in str(e.value)
    # Client-side refusals.
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    with pytest.raises(NotFoundError) as e:
        Secret.from_local_env("X", env_var_name="NOT_SET_HERE")
    assert "NOT_SET_HERE" in str(e.value)
    with pytest.raises(NotFoundError):
        Secret.from_local_env_file(tmp_path / "missing.env")
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nthis is not a pair\n")
    with pytest.raises(InvalidArgumentError) as e:
        Secret.from_local_env_file(bad)
    assert "bad.env:2" in str(e.value)
    with pytest.raises(InvalidArgumentError):
        client.create(secrets=["a-string"])
