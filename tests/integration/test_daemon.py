"""hutchd itself: config checking, plugin refusal, the API over stock
grpcio, the CLI, signals, locking, logs."""
import json
import os
import signal
import subprocess
import time

import grpc
import pytest

from hutchtest import (HUTCHD, TEST_PLUGIN_DIR, Daemon, daemon, protos, unary)


def test_cli_status_lists_plugins():
    with daemon() as d:
        r = d.cli("status")
        out = r.stdout.decode()
        assert "hutchd 0.1.0" in out
        assert "runtime      runtime-gvisor" in out
        assert "state dir:  " + d.state in out
        j = json.loads(d.cli("status", "--json").stdout)
        names = [p["name"] for p in j["plugins"]]
        assert names == ["runtime-gvisor"]
        caps = {c["key"]: c["value"] for c in j["plugins"][0].get("capabilities", [])}
        assert caps, "runtime capabilities (probe results) are shown"


def test_grpcio_status_and_errors():
    pb = protos()
    with daemon() as d:
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            st = unary(ch, "/hutch.v1.Daemon/Status", pb["daemon"].StatusRequest(),
                       pb["daemon"].StatusResponse)
            assert st.version == "0.1.0"
            assert st.tenant == "default"
            assert [p.kind for p in st.plugins] == ["runtime"]
            assert st.plugins[0].abi_major == 1
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/Get", pb["sandbox"].GetSandboxRequest(id="nope"),
                      pb["sandbox"].Sandbox)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            assert "sandbox `nope` not found" in e.value.details()
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Nothing/Here", pb["daemon"].StatusRequest(),
                      pb["daemon"].StatusResponse)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_config_key_is_refused_with_position(tmp_path):
    cfg = tmp_path / "hutchd.toml"
    cfg.write_text('[daemon]\nlog_level = "info"\n\n[sandbox]\n  memroy = "1Gi"\n')
    r = subprocess.run([HUTCHD, "--check-config", str(cfg)], capture_output=True)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "%s:5:3: [sandbox] unknown key `memroy`" % cfg in err
    cfg.write_text('[plugin.runtime-gvisor]\nplatform = 3\n')
    r = subprocess.run([HUTCHD, "--check-config", str(cfg)], capture_output=True)
    assert r.returncode == 1
    assert "%s:2:12: [plugin.runtime-gvisor] `platform`: expected a string, got integer" % cfg \
        in r.stderr.decode()
    cfg.write_text('[plugins]\nnetwork = []\n[plugin.net-egress]\npool = "10.0.0.0/8"\n')
    r = subprocess.run([HUTCHD, "--check-config", str(cfg)], capture_output=True)
    assert r.returncode == 1
    assert "[plugin.net-egress] configures a plugin that is not loaded" in r.stderr.decode()
    cfg.write_text('[daemon]\nlog_level = "debug"\n')
    r = subprocess.run([HUTCHD, "--check-config", str(cfg)], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert "runtime      runtime-gvisor" in r.stdout.decode()


def test_wrong_abi_plugin_is_refused():
    bad = os.path.join(TEST_PLUGIN_DIR, "bad-abi.so")
    d = Daemon('[plugins]\nruntime = "%s"\n' % bad, start=False)
    try:
        d.start(wait=False)
        assert d.proc.wait(30) == 1
        log = d.log()
        assert ("plugin %s refused: built for plugin ABI 2.0, this hutchd speaks ABI 1.x" % bad) \
            in log
        assert not os.path.exists(d.sock)
    finally:
        d.cleanup()
    for name, why in [("missing-op", "required runtime op `exec_command` is missing"),
                      ("no-symbol", "no symbol `hutch_plugin_v1`")]:
        path = os.path.join(TEST_PLUGIN_DIR, name + ".so")
        d = Daemon('[plugins]\nruntime = "%s"\n' % path, start=False)
        try:
            d.start(wait=False)
            assert d.proc.wait(30) == 1
            assert why in d.log() and path in d.log()
        finally:
            d.cleanup()


def test_describe_prints_plugin_options():
    r = subprocess.run([HUTCHD, "--describe", "runtime-gvisor"], capture_output=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "runtime-gvisor" in out and "[plugin.runtime-gvisor]" in out
    assert "platform" in out
    r = subprocess.run([HUTCHD, "--describe", "daemon"], capture_output=True)
    assert "state_dir" in r.stdout.decode() and "[sandbox]" in r.stdout.decode()


def test_second_daemon_on_same_state_dir_is_refused():
    with daemon() as d:
        r = subprocess.run(d.command(), capture_output=True, timeout=30)
        assert r.returncode == 1
        assert "another hutchd (pid %d) is using state dir %s" % (d.proc.pid, d.state) in \
            r.stderr.decode()
        d.cli("status")  # the first one is unaffected


def test_sigterm_is_graceful_and_sighup_reloads():
    d = Daemon('[daemon]\nlog_level = "info"\n')
    try:
        with open(d.config, "w") as f:
            f.write('[daemon]\nlog_level = "debug"\n')
        d.signal(signal.SIGHUP)
        for _ in range(100):
            if "SIGHUP: log level now debug" in d.log():
                break
            time.sleep(0.05)
        assert "SIGHUP: log level now debug" in d.log()
        # No plugin has a reload op yet: each says its changes wait for a
        # restart rather than being dropped in silence.
        assert "SIGHUP: runtime-gvisor cannot reload its config" in d.log()
        assert d.stop() == 0
        assert "shutting down (SIGTERM)" in d.log()
        assert not os.path.exists(d.sock), "the socket is removed at shutdown"
    finally:
        d.cleanup()


def test_json_logs():
    d = Daemon("", args=["--log-format", "json"])
    try:
        d.cli("status")
        d.stop()
        lines = [l for l in d.log().splitlines() if l.strip()]
        assert lines
        for l in lines:
            rec = json.loads(l)
            assert {"ts", "level", "source", "msg"} <= set(rec)
    finally:
        d.cleanup()


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    sock = str(tmp_path / "none.sock")
    r = subprocess.run([os.path.join(os.path.dirname(HUTCHD), "hutch"), "--socket", sock,
                        "status"], capture_output=True)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("hutch: ")
    assert sock in err


def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tcp_tls_api_keys_map_to_tenants(tmp_path):
    import hashlib
    import socket as so
    pb = protos()
    cert, key = _self_signed(tmp_path)
    with so.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    acme_key = "acme-key-0123456789abcdef"
    other_key = "other-key-0123456789abcdef"
    cfg = ('[api]\ntcp_listen = "127.0.0.1:%d"\ntls_cert = "%s"\ntls_key = "%s"\n'
           '[[api.key]]\ntenant = "acme"\nsha256 = "%s"\n'
           '[[api.key]]\ntenant = "other"\nsha256 = "%s"\n') % (
        port, cert, key, hashlib.sha256(acme_key.encode()).hexdigest(),
        hashlib.sha256(other_key.encode()).hexdigest())
    with daemon(cfg) as d:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel("127.0.0.1:%d" % port, creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            for md in (None, [("authorization", "Bearer wrong-key-0000000000")]):
                with pytest.raises(grpc.RpcError) as e:
                    unary(ch, "/hutch.v1.Daemon/Status", pb["daemon"].StatusRequest(),
                          pb["daemon"].StatusResponse, metadata=md)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # Health probes need no key (orchestrators' probes send none);
            # reflection does.
            from test_stock_clients import meta_protos
            h = meta_protos()["health"]
            r = unary(ch, "/grpc.health.v1.Health/Check", h.HealthCheckRequest(service=""),
                      h.HealthCheckResponse)
            assert r.status == h.HealthCheckResponse.SERVING
            v1 = meta_protos()["v1"]
            with pytest.raises(grpc.RpcError) as e:
                list(ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                      request_serializer=v1.ServerReflectionRequest.SerializeToString,
                                      response_deserializer=v1.ServerReflectionResponse.FromString)(
                    iter([v1.ServerReflectionRequest(list_services="")])))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            acme = [("authorization", "Bearer " + acme_key)]
            other = [("authorization", "Bearer " + other_key)]
            st = unary(ch, "/hutch.v1.Daemon/Status", pb["daemon"].StatusRequest(),
                       pb["daemon"].StatusResponse, metadata=acme)
            assert st.tenant == "acme"
            s = pb["sandbox"]
            sb = unary(ch, "/hutch.v1.Sandboxes/Create",
                       s.CreateSandboxRequest(spec=s.SandboxSpec(name="acme-box")), s.Sandbox,
                       metadata=acme)
            assert sb.tenant == "acme"
            # The other tenant sees nothing of it, by id or by name.
            for ref in (sb.id, "acme-box"):
                with pytest.raises(grpc.RpcError) as e:
                    unary(ch, "/hutch.v1.Sandboxes/Get", s.GetSandboxRequest(id=ref), s.Sandbox,
                          metadata=other)
                assert e.value.code() == grpc.StatusCode.NOT_FOUND
            ls = unary(ch, "/hutch.v1.Sandboxes/List", s.ListSandboxesRequest(all=True),
                       s.ListSandboxesResponse, metadata=other)
            assert not ls.sandboxes
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/Run", s.RunRequest(start=s.ExecStart(
                    sandbox_id=sb.id, argv=["true"])), s.RunResponse, metadata=other)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            # Nor does the unix socket's tenant.
            assert b"acme-box" not in d.cli("sandbox", "ls", "-a").stdout
            # The CLI over TCP with the key.
            r = d.cli("--address", "127.0.0.1:%d" % port, "--ca-file", str(cert), "status",
                      env={"HUTCH_API_KEY": acme_key})
            assert "tenant:     acme" in r.stdout.decode()
            # The CA from the environment, as the SDKs take it; without it
            # the self-signed certificate is refused.
            r = d.cli("--address", "127.0.0.1:%d" % port, "status",
                      env={"HUTCH_API_KEY": acme_key, "HUTCH_CA_FILE": str(cert)})
            assert "tenant:     acme" in r.stdout.decode()
            r = d.cli("--address", "127.0.0.1:%d" % port, "status", check=False,
                      env={"HUTCH_API_KEY": acme_key})
            assert r.returncode != 0 and b"certificate" in r.stderr.lower()
            unary(ch, "/hutch.v1.Sandboxes/Stop", s.StopSandboxRequest(id=sb.id), s.Sandbox,
                  metadata=acme)


def test_plaintext_tcp_is_refused_off_loopback(tmp_path):
    d = Daemon('[api]\ntcp_listen = "0.0.0.0:0"\nallow_plaintext_tcp = true\n', start=False)
    try:
        d.start(wait=False)
        assert d.proc.wait(30) == 1
        assert "needs tls_cert and tls_key" in d.log()
    finally:
        d.cleanup()


def test_second_daemon_on_same_run_dir_is_refused(tmp_path):
    with daemon() as d:
        sb = d.cli("sandbox", "create").stdout.decode().strip()
        other_state = str(tmp_path / "other-state")
        r = subprocess.run([HUTCHD, "-c", d.config, "--state-dir", other_state,
                            "--run-dir", d.run], capture_output=True, timeout=30)
        assert r.returncode == 1
        err = r.stderr.decode()
        assert "another hutchd (pid %d) is using run dir %s" % (d.proc.pid, d.run) in err
        assert "[daemon] run_dir" in err, "the message names the key to change"
        # The first daemon's socket, sandbox and its run dir are untouched.
        assert os.path.exists(d.sock)
        assert os.path.isdir(os.path.join(d.run, "sandboxes", sb))
        assert d.cli("exec", sb, "--", "echo", "still here").stdout == b"still here\n"


# Every command and subcommand: --help (or -h) prints its usage on stdout and
# exits 0, without needing a daemon.
CLI_HELP = ["status", "run", "exec", "cp", "sandbox", "sandbox create", "sandbox ls",
            "sandbox inspect", "sandbox stop", "sandbox rm", "sandbox update-policy", "policy",
            "policy create", "policy ls", "policy inspect", "policy rm", "secret", "secret set",
            "secret ls", "secret inspect", "secret rm", "secret integrations", "identity",
            "identity verify", "identity rotate", "image", "image build", "image ls",
            "image inspect", "image rm", "image gc", "image export", "image import"]


def test_every_cli_command_has_help(tmp_path):
    hutch = os.path.join(os.path.dirname(HUTCHD), "hutch")
    env = dict(os.environ, HUTCH_SOCKET=str(tmp_path / "nobody.sock"))
    for words in CLI_HELP:
        for flag in ("--help", "-h"):
            r = subprocess.run([hutch] + words.split() + [flag], capture_output=True, env=env,
                               timeout=30)
            out = r.stdout.decode()
            assert r.returncode == 0, (words, flag, r.stderr)
            assert out.startswith("usage: hutch " + words), (words, out)
            assert r.stderr == b""
    # What follows `--` belongs to the command, --help included.
    r = subprocess.run([hutch, "exec", "sb-x", "--", "ls", "--help"], capture_output=True,
                       env=env, timeout=30)
    assert r.returncode != 0 and b"nobody.sock" in r.stderr


def _http_exchange(port, raw):
    import socket as so
    with so.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def _http_parse(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def test_http_listener_answers_head_and_says_allow_on_405():
    import re
    with daemon('[http]\nlisten = "127.0.0.1:0"\nmetrics = true\n') as d:
        port = int(re.search(r"HTTP on http://127\.0\.0\.1:(\d+)", d.log()).group(1))
        for path in ("/healthz", "/metrics"):
            st, h, body = _http_parse(_http_exchange(
                port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()))
            assert st == 200 and len(body) == int(h["content-length"]) > 0
            st, h, body = _http_parse(_http_exchange(
                port, b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()))
            assert st == 200, path
            assert body == b"", "HEAD has no body"
            assert int(h["content-length"]) > 0, "HEAD tells the GET's length"
        for method, path, allow in (("POST", "/healthz", "GET, HEAD"),
                                    ("PUT", "/metrics", "GET, HEAD"),
                                    ("DELETE", "/.well-known/openid-configuration", "GET, HEAD"),
                                    ("GET", "/v1/token", "POST"),
                                    ("HEAD", "/v1/token", "POST")):
            st, h, body = _http_parse(_http_exchange(
                port, b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                % (method.encode(), path.encode())))
            assert st == 405, (method, path)
            assert h.get("allow") == allow, (method, path, h)
