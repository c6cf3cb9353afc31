"""Where the SDK connects: unix sockets (argument, $HUTCH_SOCKET, unix:
addresses), TCP+TLS with API keys mapping to tenants (arguments and
$HUTCH_ADDRESS / $HUTCH_API_KEY / $HUTCH_CA_FILE), loopback plaintext."""
import hashlib
import socket
import subprocess

import pytest

import hutch
import hutchtest
from hutch import (ConnectionFailedError, Container, NotFoundError, SandboxClient,
                   UnauthenticatedError)

ACME = "acme-key-0123456789abcdef"
OTHER = "other-key-0123456789abcdef"


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _tls_daemon(tmp_path):
    cert, key = _self_signed(tmp_path)
    port = _port()
    cfg = ('[api]\ntcp_listen = "127.0.0.1:%d"\ntls_cert = "%s"\ntls_key = "%s"\n'
           '[[api.key]]\ntenant = "acme"\nsha256 = "%s"\n'
           '[[api.key]]\ntenant = "other"\nsha256 = "%s"\n') % (
        port, cert, key, hashlib.sha256(ACME.encode()).hexdigest(),
        hashlib.sha256(OTHER.encode()).hexdigest())
    return hutchtest.Daemon(cfg), port, cert


def test_tcp_tls_with_api_keys_maps_to_tenants(tmp_path, monkeypatch):
    d, port, cert = _tls_daemon(tmp_path)
    try:
        addr = "127.0.0.1:%d" % port
        with SandboxClient(address=addr, api_key=ACME, ca_file=str(cert)) as acme:
            assert acme.status().tenant == "acme"
            sb = acme.create(name="acme-box")
            assert sb.tenant == "acme"
            assert sb.exec("echo", "over tls").stdout_text == "over tls\n"
            sb.write_file("/tmp/f", b"tls file")
            assert sb.read_file("/tmp/f") == b"tls file"
            with sb.exec_stream("cat", stdin=True) as p:
                out, _ = p.communicate(b"streamed over tls")
            assert out == b"streamed over tls"
            # The other tenant sees none of it.
            with SandboxClient(address=addr, api_key=OTHER, ca_file=str(cert)) as other:
                assert other.status().tenant == "other"
                for ref in (sb.id, "acme-box"):
                    with pytest.raises(NotFoundError):
                        other.get(ref)
                assert other.list(all=True) == []
            # Nor does the unix socket's tenant.
            with SandboxClient(d.sock) as local:
                assert local.list(all=True) == []
            # From the environment, like the CLI: $HUTCH_ADDRESS wins over
            # $HUTCH_SOCKET.
            monkeypatch.setenv("HUTCH_ADDRESS", addr)
            monkeypatch.setenv("HUTCH_SOCKET", d.sock)
            monkeypatch.setenv("HUTCH_API_KEY", ACME)
            monkeypatch.setenv("HUTCH_CA_FILE", str(cert))
            with SandboxClient() as env_client:
                assert env_client.status().tenant == "acme"
                assert env_client.get("acme-box").id == sb.id
                with Container(client=env_client) as c:
                    assert c.sandbox.tenant == "acme"
            # No key, or a wrong one: UNAUTHENTICATED.
            monkeypatch.delenv("HUTCH_API_KEY")
            for key in (None, "wrong-key-0000000000"):
                with SandboxClient(address=addr, api_key=key, ca_file=str(cert)) as bad:
                    with pytest.raises(UnauthenticatedError):
                        bad.status()
            # A certificate the client does not trust: the connection fails
            # and says where it tried.
            monkeypatch.delenv("HUTCH_CA_FILE")
            with SandboxClient(address=addr, api_key=ACME) as untrusted:
                with pytest.raises(ConnectionFailedError) as e:
                    untrusted.status()
                assert addr in str(e.value)
            # The name checked in the certificate can be given.
            with SandboxClient(address="localhost:%d" % port, api_key=ACME, ca_file=str(cert),
                               tls_server_name="localhost") as by_name:
                assert by_name.status().tenant == "acme"
            with pytest.raises(hutch.InvalidArgumentError):
                SandboxClient(address=addr, ca_file=str(tmp_path / "missing.pem"))
    finally:
        d.cleanup()


def test_plaintext_loopback_tcp(tmp_path):
    port = _port()
    d = hutchtest.Daemon('[api]\ntcp_listen = "127.0.0.1:%d"\nallow_plaintext_tcp = true\n'
                         '[[api.key]]\ntenant = "b"\nsha256 = "%s"\n' % (
                             port, hashlib.sha256(OTHER.encode()).hexdigest()))
    try:
        with SandboxClient(address="127.0.0.1:%d" % port, api_key=OTHER, plaintext=True) as c:
            assert c.status().tenant == "b"
            assert c.create().exec("true").ok
    finally:
        d.cleanup()


def test_unix_socket_forms_and_defaults(daemon, monkeypatch, tmp_path):
    monkeypatch.delenv("HUTCH_ADDRESS", raising=False)
    for kw in ({"socket": daemon.sock}, {"address": daemon.sock},
               {"address": "unix:" + daemon.sock}):
        with SandboxClient(**kw) as c:
            assert c.status().tenant == "default"
            assert c.address == daemon.sock
    monkeypatch.setenv("HUTCH_SOCKET", daemon.sock)
    with SandboxClient() as c:
        assert c.address == daemon.sock and c.status().version
    # Without anything set: the default socket.
    monkeypatch.delenv("HUTCH_SOCKET")
    c = SandboxClient()
    assert c.address == "/run/hutch/hutchd.sock"
    c.close()
    with pytest.raises(hutch.InvalidArgumentError):
        SandboxClient(socket=daemon.sock, address="x:1")
    with pytest.raises(hutch.InvalidArgumentError):
        SandboxClient(address="no-port")
    # A daemon that is not there: one clear error naming the socket.
    gone = str(tmp_path / "gone.sock")
    with SandboxClient(gone) as c:
        with pytest.raises(ConnectionFailedError) as e:
            c.create()
        assert gone in str(e.value)
