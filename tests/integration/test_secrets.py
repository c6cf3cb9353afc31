"""Secrets: the four ways to attach them, sealed at rest, and never seen
where they must not be: logs, inspect, listings, the store file, another
sandbox, after a restart."""
import glob
import json
import os
import stat

import grpc
import pytest

from hutchtest import Daemon, daemon, protos, unary

CANARY_STORE = "canary-store-7f3a9c1e"
CANARY_LOCAL = "canary-local-b81d02aa"
CANARY_FILE = "canary-file-5e6c7d8f"
CANARY_PG = "canary-pg-93ab11cd"

INTEGRATIONS = '''
[[integration]]
name = "pg"
type = "postgres"
host = "db.internal"
port = 5433
user = "app user"
password = "%s"
database = "orders"
sslmode = "require"

[[integration]]
name = "other-tenant-only"
type = "env"
tenants = ["someone-else"]
env = ["X=1"]
''' % CANARY_PG


def _everywhere(d, sid_a, sid_b, canaries):
    """Everything that must not show a secret value."""
    seen = []
    out = d.cli("--json", "sandbox", "inspect", sid_a).stdout.decode()
    seen.append(("inspect", out))
    seen.append(("list", d.cli("--json", "sandbox", "ls", "-a").stdout.decode()))
    seen.append(("secret ls", d.cli("--json", "secret", "ls").stdout.decode()))
    seen.append(("log", d.log()))
    for f in glob.glob(os.path.join(d.state, "hutch.db*")):
        with open(f, "rb") as fh:
            seen.append((f, fh.read().decode("latin-1")))
    other = d.cli("exec", sid_b, "--", "sh", "-c",
                  "cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'").stdout.decode()
    seen.append(("other sandbox /proc", other))
    for where, text in seen:
        for c in canaries:
            assert c not in text, "%s shows %s" % (where, c)


def test_four_ways_and_no_leaks(tmp_path):
    envf = tmp_path / "app.env"
    envf.write_text("# a .env file\nFROM_FILE=%s\nexport QUOTED=\"two words\"\n" % CANARY_FILE)
    with daemon(INTEGRATIONS) as d:
        r = d.cli("secret", "set", "db", "PASSWORD", input=(CANARY_STORE + "\n").encode())
        assert r.stdout == b"db (1 variable)\n"
        a = d.cli("sandbox", "create", "--secret", "db", "--integration", "pg",
                  "--secret-env", "TOKEN:MY_LOCAL_TOKEN", "--secret-env-file", str(envf),
                  "-e", "PASSWORD=plain-env-loses", env={"MY_LOCAL_TOKEN": CANARY_LOCAL}
                  ).stdout.decode().strip()
        b = d.cli("sandbox", "create").stdout.decode().strip()
        env = d.cli("exec", a, "--", "env").stdout.decode().splitlines()
        env = dict(l.split("=", 1) for l in env if "=" in l)
        assert env["PASSWORD"] == CANARY_STORE            # from_env (the store); secrets win
        assert env["TOKEN"] == CANARY_LOCAL                # from_local_env
        assert env["FROM_FILE"] == CANARY_FILE             # from_local_env_file
        assert env["QUOTED"] == "two words"
        assert env["PGHOST"] == "db.internal" and env["PGPORT"] == "5433"   # from_integration
        assert env["PGUSER"] == "app user" and env["PGPASSWORD"] == CANARY_PG
        assert env["PGDATABASE"] == "orders"
        assert env["DATABASE_URL"] == (
            "postgresql://app%%20user:%s@db.internal:5433/orders?sslmode=require" % CANARY_PG)
        # Each secret value shows up in the sandbox's own processes only.
        _everywhere(d, a, b, [CANARY_STORE, CANARY_LOCAL, CANARY_FILE, CANARY_PG])
        # An integration limited to another tenant is not found; neither is
        # an unknown secret. Nothing is half-created.
        for args, msg in [(["--integration", "other-tenant-only"], "integration `other-tenant-only` not found"),
                          (["--secret", "nope"], "secret `nope` not found")]:
            r = d.cli("sandbox", "create", *args, check=False)
            assert r.returncode == 1 and msg in r.stderr.decode()
        # The key file is apart from the store and owner-only.
        key = os.path.join(d.state, "keys", "secrets.key")
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert os.path.getsize(key) == 32


def test_secret_values_are_never_sent_back():
    pb = protos()
    with daemon() as d:
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            s = pb["secret"]
            kv = pb["sandbox"].KeyValue
            info = unary(ch, "/hutch.v1.Secrets/Set", s.SetSecretRequest(
                name="api", values=[kv(key="API_KEY", value=CANARY_STORE)]), s.SecretInfo)
            assert list(info.keys) == ["API_KEY"] and CANARY_STORE not in str(info)
            got = unary(ch, "/hutch.v1.Secrets/Get", s.GetSecretRequest(name="api"), s.SecretInfo)
            assert CANARY_STORE not in got.SerializeToString().decode("latin-1")
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Secrets/Set", s.SetSecretRequest(
                    name="api", values=[kv(key="API_KEY", value="x")]), s.SecretInfo)
            assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Secrets/Set", s.SetSecretRequest(
                    name="bad", values=[kv(key="1BAD", value=CANARY_STORE)]), s.SecretInfo)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert CANARY_STORE not in e.value.details()
            # Replace works; delete works.
            unary(ch, "/hutch.v1.Secrets/Set", s.SetSecretRequest(
                name="api", values=[kv(key="API_KEY", value="new")], replace=True), s.SecretInfo)
            unary(ch, "/hutch.v1.Secrets/Delete", s.DeleteSecretRequest(name="api"),
                  s.DeleteSecretResponse)
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Secrets/Get", s.GetSecretRequest(name="api"), s.SecretInfo)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
        # The CLI refuses values on its command line.
        r = d.cli("secret", "set", "x", "KEY=" + CANARY_STORE, check=False)
        assert r.returncode == 2 and CANARY_STORE not in r.stderr.decode()


def test_secrets_survive_restart_and_a_wrong_key_is_refused(tmp_path):
    d = Daemon()
    try:
        d.cli("secret", "set", "db", "PASSWORD", input=(CANARY_STORE + "\n").encode())
        sid = d.cli("sandbox", "create", "--secret", "db").stdout.decode().strip()
        d.kill()
        d.start()
        # The recovered sandbox's processes get the same environment.
        assert d.cli("exec", sid, "--", "sh", "-c", "echo $PASSWORD").stdout.decode() == \
            CANARY_STORE + "\n"
        d.cli("sandbox", "stop", sid)
        d.stop()
        # With another key the sealed secrets do not open, and say so
        # without showing anything.
        key = os.path.join(d.state, "keys", "secrets.key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        d.start()
        r = d.cli("sandbox", "create", "--secret", "db", check=False)
        assert r.returncode == 1 and b"does not open" in r.stderr
        assert CANARY_STORE.encode() not in r.stderr
        d.stop()
        os.chmod(key, 0o644)
        d.start(wait=False)
        assert d.proc.wait(30) == 1
        assert "readable by its owner only" in d.log()
    finally:
        d.cleanup()
