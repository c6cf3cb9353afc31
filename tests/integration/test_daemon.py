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
    cfg.write_text('[plugin.net-egress]\npool = "10.0.0.0/8"\n')
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
