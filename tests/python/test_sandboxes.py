"""SandboxClient / Sandbox / Container against a real hutchd: create, exec,
stop, get/list, context managers, resources, ports, error mapping."""
import socket
import time

import grpc
import pytest

import hutch
from hutch import (AlreadyExistsError, Container, FailedPreconditionError, HutchError, Image,
                   InvalidArgumentError, NotFoundError, SandboxClient, UnavailableError)


def test_create_exec_stop(client):
    sb = client.create(cpu="0.5", memory="256Mi", lifetime="10m", name="first")
    assert sb.state == "running" and sb.id.startswith("sb-") and sb.name == "first"
    assert sb.tenant == "default"
    spec = sb.info.spec
    assert spec.cpu_millis == 500 and spec.memory_bytes == 256 << 20
    assert spec.lifetime_seconds == 600 and spec.image == "busybox"
    r = sb.exec("sh", "-c", "echo hello from a sandbox; echo oops >&2; exit 3")
    assert r.stdout_text == "hello from a sandbox\n"
    assert r.stderr_text == "oops\n"
    assert r.exit_code == 3 and r.returncode == 3 and not r.ok
    assert r.stdout == b"hello from a sandbox\n"
    with pytest.raises(hutch.ExecError) as e:
        r.check()
    assert "exited with 3" in str(e.value) and e.value.result is r
    assert sb.exec("true").check().ok
    # The sandbox's own kernel (gVisor), not the host's.
    import os
    assert sb.exec("uname", "-r").stdout_text.strip() != os.uname().release
    sb.stop()
    assert sb.state == "stopped"
    assert sb.refresh().state == "stopped"
    sb.stop()  # again: nothing to do
    with pytest.raises(UnavailableError) as e:
        sb.exec("true")
    assert "stopped" in str(e.value)


def test_run_style_exec_stdin_env_cwd_user_timeout(client):
    sb = client.create()
    assert sb.exec("cat", stdin="piped in").stdout_text == "piped in"
    assert sb.exec("cat", stdin=b"\x00\xffraw").stdout == b"\x00\xffraw"
    assert sb.exec("sh", "-c", 'echo "$A-$B"', env={"A": "x", "B": "y z"}).stdout_text == "x-y z\n"
    assert sb.exec("pwd", cwd="/tmp").stdout_text == "/tmp\n"
    assert sb.exec("id", "-u", user="1234").stdout_text == "1234\n"
    # A list works like separate arguments.
    assert sb.exec(["echo", "a", "b"]).stdout_text == "a b\n"
    t0 = time.time()
    r = sb.exec("sleep", "30", timeout="1s")
    assert r.timed_out and time.time() - t0 < 15
    assert not r.ok
    r = sb.exec("no-such-program")
    assert r.exit_code == 127 and "No such file" in r.stderr_text
    r = sb.exec("sh", "-c", "kill -TERM $$")
    assert r.signal == 15 and r.exit_code == -1 and r.returncode == -15
    with pytest.raises(hutch.ExecError) as e:
        r.check()
    assert "SIGTERM" in str(e.value)
    # Output beyond max_output is cut and says so.
    r = sb.exec("sh", "-c", "yes | head -c 100000", max_output=1000)
    assert r.truncated and len(r.stdout) <= 1000
    with pytest.raises(InvalidArgumentError):
        sb.exec()


def test_context_managers_stop_what_they_started(daemon):
    with SandboxClient(daemon.sock) as c:
        with c.create() as sb:
            assert sb.exec("echo", "in").stdout_text == "in\n"
        assert sb.state == "stopped"
        kept = c.create(name="left-running")
        other = c.create()
        other.stop()
        assert {s.id for s in c.list()} == {kept.id}
    # Leaving the client's block stopped what it created.
    with SandboxClient(daemon.sock) as c2:
        assert c2.list() == []
        assert c2.get(kept.id).state == "stopped"
        # A container is run on entering and stopped on leaving.
        with Container(cpu="1", memory="512Mi", client=c2) as ctr:
            assert ctr.state == "running"
            assert ctr.exec("echo", "ctr").stdout_text == "ctr\n"
            sid = ctr.id
        assert c2.get(sid).state == "stopped"


def test_container_run_exec_stop_and_default_client(default_env):
    c = Container(image="busybox", name="web", cpu="1", memory="512Mi", lifetime="1h").run()
    try:
        assert c.state == "running"
        assert c.sandbox.name == "web"
        r = c.exec("sh", "-c", "echo hello from a container")
        assert r.stdout_text == "hello from a container\n"
        with pytest.raises(FailedPreconditionError):
            c.run()
        with pytest.raises(FailedPreconditionError):
            c.mount_volume("data", "/data")
        info = c.sandbox.refresh().info
        assert info.spec.lifetime_seconds == 3600 and info.spec.cpu_millis == 1000
        # The default client came from $HUTCH_SOCKET.
        assert hutch.default_client().address == default_env.sock
    finally:
        c.stop()
    assert c.state == "stopped"
    assert Container().state == "not started"
    with pytest.raises(FailedPreconditionError):
        Container().exec("true")
    # Image.builtin("busybox") is the built-in image, and works like the name.
    with Container(image=Image.builtin("busybox")) as c2:
        assert c2.sandbox.info.spec.image == "busybox"


def test_ports_are_forwarded(client):
    sb = client.create(ports=[8080])
    # busybox's nc serves one connection.
    p = sb.exec_stream("sh", "-c", "echo served | nc -l -p 8080")
    addr = sb.ports[8080]
    host, port = addr.rsplit(":", 1)
    got = b""
    deadline = time.time() + 20
    while time.time() < deadline and not got:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                got = s.recv(100)
        except OSError:
            time.sleep(0.2)
    assert got == b"served\n"
    p.close()
    ctr = Container(port=9000, client=client).run()
    assert list(ctr.addresses) == [9000]
    ctr.stop()


def test_get_list_labels_and_errors_carry_the_servers_message(client):
    a = client.create(name="alpha", labels={"team": "a"})
    b = client.create(labels={"team": "b"})
    assert client.get("alpha").id == a.id
    assert client.get(b.id).info.spec.labels[0].value == "b"
    assert {s.id for s in client.list()} == {a.id, b.id}
    assert [s.id for s in client.list(labels={"team": "a"})] == [a.id]
    with pytest.raises(NotFoundError) as e:
        client.get("nope")
    assert str(e.value) == "sandbox `nope` not found"
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert isinstance(e.value, HutchError) and isinstance(e.value, LookupError)
    with pytest.raises(AlreadyExistsError) as e:
        client.create(name="alpha")
    assert "a sandbox named `alpha` is already running" in str(e.value)
    with pytest.raises(InvalidArgumentError) as e:
        client.create(memory="1Mi")
    assert "too little" in str(e.value) and e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidArgumentError) as e:
        client.create(cpu="100")
    assert "more than" in str(e.value)
    with pytest.raises(NotFoundError) as e:
        client.create(image="no-such-image")
    assert "image `no-such-image` not found" in str(e.value)
    # Bad resource strings are refused before any call.
    for kw in ({"memory": "lots"}, {"cpu": "-1"}, {"lifetime": "soon"}, {"cpu": "1x"}):
        with pytest.raises(InvalidArgumentError):
            client.create(**kw)
    a.stop()
    b.delete()
    with pytest.raises(NotFoundError):
        client.get(b.id)
    assert [s.id for s in client.list(all=True)] == [a.id]
    st = client.status()
    assert st.version and st.tenant == "default" and st.plugin("runtime")["name"] == "runtime-gvisor"


def test_lifetime_expiry_is_reported(client):
    sb = client.create(lifetime=2)
    deadline = time.time() + 30
    while time.time() < deadline and sb.refresh().state in ("running", "stopping"):
        time.sleep(0.5)
    assert sb.state == "expired", (sb.state, sb.reason)
    assert "lifetime" in sb.reason
    with pytest.raises(UnavailableError):
        sb.exec("true")
    sb.stop()  # already ended: not an error


def test_connection_failure_names_the_socket(tmp_path):
    c = SandboxClient(str(tmp_path / "no.sock"))
    with pytest.raises(hutch.ConnectionFailedError) as e:
        c.status()
    assert str(tmp_path / "no.sock") in str(e.value)
    assert isinstance(e.value, UnavailableError) and isinstance(e.value, ConnectionError)
    c.close()
