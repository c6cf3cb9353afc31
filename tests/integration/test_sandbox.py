"""Sandboxes against real runsc: isolation, limits, exec, files, ports,
lifetimes, recovery and leaks. Each test runs its own hutchd."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

from hutchtest import TEST_PLUGIN_DIR, Daemon, daemon, mountinfo_under, mounts_under, protos, unary


def create(d, *args):
    return d.cli("sandbox", "create", *args).stdout.decode().strip()


def run(d, sid, *cmd, check=True, input=None, timeout=120):
    return d.cli("exec", sid, "--", *cmd, check=check, input=input, timeout=timeout)


def out(d, sid, *cmd):
    return run(d, sid, *cmd).stdout.decode()


def inspect(d, sid):
    return json.loads(d.cli("sandbox", "inspect", sid).stdout)


def test_kernel_processes_and_files_are_the_sandboxs_own(tmp_path):
    canary = tmp_path / "host-canary.txt"
    canary.write_text("the host's secret")
    with daemon() as d:
        a = create(d)
        b = create(d)
        host_kernel = os.uname().release
        inner = out(d, a, "uname", "-r").strip()
        assert inner and inner != host_kernel, "uname -r must show gVisor's kernel"
        # Only the sandbox's own processes: the agent (pid 1) and ps.
        ps = out(d, a, "ps", "-o", "pid,args")
        lines = [l for l in ps.splitlines()[1:] if l.strip()]
        assert len(lines) <= 3, ps
        assert "hutchd" not in ps and "runsc" not in ps
        # Host files are not visible; other sandboxes' files are not either.
        r = run(d, a, "cat", str(canary), check=False)
        assert r.returncode != 0
        run(d, a, "sh", "-c", "echo mine > /tmp/a-only")
        assert run(d, b, "cat", "/tmp/a-only", check=False).returncode != 0
        assert out(d, a, "cat", "/tmp/a-only") == "mine\n"
        # The host's network is not there: only loopback.
        ifs = out(d, a, "sh", "-c", "ls /sys/class/net 2>/dev/null || ip link")
        assert "eth" not in ifs or "lo" in ifs


def test_exit_codes_signals_and_stdin_eof():
    with daemon() as d:
        sid = create(d)
        assert run(d, sid, "sh", "-c", "exit 42", check=False).returncode == 42
        assert run(d, sid, "sh", "-c", "kill -TERM $$", check=False).returncode == 128 + 15
        assert run(d, sid, "sh", "-c", "kill -KILL $$", check=False).returncode == 128 + 9
        r = run(d, sid, "no-such-program", check=False)
        assert r.returncode == 127 and b"No such file or directory" in r.stderr
        # stdin reaches the process and its EOF too: wc ends only at EOF.
        r = d.cli("exec", "-i", sid, "--", "wc", "-l", input=b"a\nb\nc\n")
        assert r.stdout.decode().strip() == "3"
        # stdout and stderr stay apart.
        r = run(d, sid, "sh", "-c", "echo out; echo err >&2")
        assert r.stdout == b"out\n" and r.stderr == b"err\n"


def test_hutch_run_exits_with_the_command_and_cleans_up():
    with daemon() as d:
        r = d.cli("run", "--", "sh", "-c", "echo hello from a sandbox; exit 7", check=False)
        assert r.returncode == 7
        assert r.stdout == b"hello from a sandbox\n"
        ls = json.loads(d.cli("--json", "sandbox", "ls", "-a").stdout or b"{}")
        assert not ls.get("sandboxes"), "run removes its sandbox"
        r = d.cli("run", "-e", "GREETING=hi there", "--", "sh", "-c", 'echo "$GREETING"')
        assert r.stdout == b"hi there\n"


def test_memory_bomb_is_oom_killed_and_others_carry_on():
    with daemon() as d:
        bystander = create(d)
        # A shell that grows a string by small steps: the process is killed
        # (the sandbox may live on), and the exec says why.
        grower = create(d, "--memory", "128Mi")
        r = run(d, grower, "sh", "-c",
                "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x$x$x; done", check=False, timeout=180)
        info = inspect(d, grower)
        assert r.returncode != 0, (r.returncode, r.stderr, info)
        assert b"out of memory" in r.stderr and b"unavailable" not in r.stderr, r.stderr
        assert info.get("oom_killed"), info
        if info["state"] != "SANDBOX_STATE_RUNNING":
            assert "out of memory" in info.get("reason", ""), info
        # One allocation far past the limit: the limit takes the whole
        # sandbox under the running exec. The memory limit is the reason
        # everywhere: the exec's end (killed, 128+9), the CLI's message, the
        # sandbox's record. Never a stop on request, never an unreachable
        # hutchd.
        bomb = create(d, "--memory", "128Mi")
        r = run(d, bomb, "dd", "if=/dev/zero", "of=/dev/null", "bs=512M", "count=1",
                check=False, timeout=180)
        info = inspect(d, bomb)
        assert r.returncode == 137, (r.returncode, r.stderr, info)
        assert b"out of memory" in r.stderr and b"unavailable" not in r.stderr, r.stderr
        assert info.get("oom_killed"), info
        assert info["state"] == "SANDBOX_STATE_FAILED", info
        assert info["reason"] == "out of memory: killed at its 128 MiB limit", info
        # hutchd and the other sandbox carry on.
        assert out(d, bystander, "echo", "alive") == "alive\n"
        d.cli("status")


def test_spec_limits_are_checked_before_anything_is_made():
    """Durations and sizes beyond what a sandbox may have are refused as bad
    arguments with a message saying the limit, never a sandbox that expires
    at once (2^62 s once overflowed into an expiry a second away) or an
    internal error naming hutchd's files."""
    pb = protos()
    huge = 2 ** 62
    with daemon() as d:
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            def refused(**spec):
                with pytest.raises(grpc.RpcError) as e:
                    unary(ch, "/hutch.v1.Sandboxes/Create", pb["sandbox"].CreateSandboxRequest(
                        spec=pb["sandbox"].SandboxSpec(**spec)), pb["sandbox"].Sandbox)
                return e.value
            for field, words in [("lifetime_seconds", "lifetime"),
                                 ("idle_timeout_seconds", "idle timeout"),
                                 ("disk_bytes", "disk"), ("pids_max", "pids")]:
                e = refused(**{field: huge})
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, e.code(), e.details())
                assert words in e.details() and "allowed" in e.details() or \
                    "may live" in e.details(), (field, e.details())
                assert d.state not in e.details() and d.run not in e.details(), e.details()
            # Just past the configured maximum (24 h) is refused too; at it, fine.
            e = refused(lifetime_seconds=24 * 3600 + 1)
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
            sb = unary(ch, "/hutch.v1.Sandboxes/Create", pb["sandbox"].CreateSandboxRequest(
                spec=pb["sandbox"].SandboxSpec(lifetime_seconds=24 * 3600,
                                               idle_timeout_seconds=24 * 3600)),
                pb["sandbox"].Sandbox)
            assert sb.expires_unix_ms - sb.started_unix_ms == 24 * 3600 * 1000
            # An exec's timeout and a stop's grace are bounded as well.
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/Run", pb["sandbox"].RunRequest(
                    start=pb["sandbox"].ExecStart(sandbox_id=sb.id, argv=["true"],
                                                  timeout_ms=huge)), pb["sandbox"].RunResponse)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
            assert "timeout_ms" in e.value.details()
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/Stop", pb["sandbox"].StopSandboxRequest(
                    id=sb.id, grace_ms=huge), pb["sandbox"].Sandbox)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
            assert "grace_ms" in e.value.details()
        time.sleep(2)
        assert inspect(d, sb.id)["state"] == "SANDBOX_STATE_RUNNING"
        assert out(d, sb.id, "echo", "alive") == "alive\n"
        ls = json.loads(d.cli("--json", "sandbox", "ls").stdout)
        assert [s["id"] for s in ls["sandboxes"]] == [sb.id], "nothing of the refused ones"
        # A create that fails late, on the host (here the runtime cannot make
        # the writable layer's file): the client hears what failed, not the
        # host's paths; hutchd's log keeps them.
        disks = os.path.join(d.state, "plugins", "runtime-gvisor", "disks")
        shutil.rmtree(disks)
        open(disks, "w").close()
        r = d.cli("sandbox", "create", check=False)
        err = r.stderr.decode()
        assert r.returncode != 0 and "Not a directory" in err, err
        assert "<host path>" in err and d.dir not in err and "/plugins/" not in err, err
        assert os.path.join(disks, "sb-") in d.log()


def test_gpu_is_refused_while_no_accelerator_is_wired():
    """A gpu request fails at validation, also with an accelerator plugin
    loaded: a sandbox must not silently run without the device it asked for."""
    pb = protos()
    accel = os.path.join(TEST_PLUGIN_DIR, "fake-accelerator.so")
    for config in ["", '[plugins]\naccelerators = ["%s"]\n' % accel]:
        with daemon(config) as d:
            if config:
                assert "fake-accelerator" in d.cli("status").stdout.decode()
            with grpc.insecure_channel("unix:" + d.sock) as ch:
                with pytest.raises(grpc.RpcError) as e:
                    unary(ch, "/hutch.v1.Sandboxes/Create", pb["sandbox"].CreateSandboxRequest(
                        spec=pb["sandbox"].SandboxSpec(gpu="h100:1")), pb["sandbox"].Sandbox)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, e.value.details()
            assert "gpu `h100:1`: no accelerator is wired into sandboxes" in e.value.details()
            assert ("fake-accelerator" in e.value.details()) == bool(config), e.value.details()
            ls = json.loads(d.cli("--json", "sandbox", "ls", "-a").stdout or b"{}")
            assert not ls.get("sandboxes")


def test_identity_audience_without_an_identity_plugin_is_refused():
    """An audience for a token nobody will issue is refused, not ignored."""
    pb = protos()
    with daemon() as d:
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/Create", pb["sandbox"].CreateSandboxRequest(
                    spec=pb["sandbox"].SandboxSpec(identity_audience="https://db.example")),
                    pb["sandbox"].Sandbox)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, e.value.details()
        assert "without an identity plugin" in e.value.details()
        ls = json.loads(d.cli("--json", "sandbox", "ls", "-a").stdout or b"{}")
        assert not ls.get("sandboxes")


def test_fork_bomb_is_contained_by_the_pids_limit():
    with daemon() as d:
        bystander = create(d)
        sid = create(d, "--pids", "64")
        t0 = time.time()
        r = run(d, sid, "sh", "-c",
                "i=0; while [ $i -lt 300 ]; do sleep 6 & i=$((i+1)); done; echo all-forked",
                check=False, timeout=120)
        err = r.stderr.decode().lower()
        assert "fork" in err or "resource" in err, (r.returncode, err[-500:])
        assert b"all-forked" not in r.stdout
        assert time.time() - t0 < 5, "the exec ended when its shell did"
        # hutchd and the other sandbox carry on meanwhile.
        assert out(d, bystander, "echo", "alive") == "alive\n"
        d.cli("status")
        # The sandbox is usable (again, once a slot is free) and never holds
        # more processes than its limit.
        for _ in range(60):
            r = run(d, sid, "sh", "-c", "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n",
                    check=False)
            if r.returncode == 0:
                break
            time.sleep(0.5)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.decode().strip()) <= 64 + 2


def test_output_streams_as_produced_and_execs_run_concurrently():
    pb = protos()
    with daemon() as d:
        sid = create(d)
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            call = ch.stream_stream("/hutch.v1.Sandboxes/Exec",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb["sandbox"].ExecResponse.FromString)
            start = pb["sandbox"].ExecRequest(start=pb["sandbox"].ExecStart(
                sandbox_id=sid, argv=["sh", "-c", "echo one; sleep 2; echo two"]))
            t0 = time.time()
            seen = []
            for msg in call(iter([start]), timeout=60):
                kind = msg.WhichOneof("msg")
                if kind == "stdout":
                    seen.append((msg.stdout, time.time() - t0))
                if kind == "exit":
                    assert msg.exit.exit_code == 0
            assert [s for s, _ in seen] == [b"one\n", b"two\n"]
            assert seen[0][1] < 1.5, "the first line arrives before the command ends"
            # Many execs at once in one sandbox.
            results = [None] * 8

            def one(i):
                results[i] = d.cli("exec", sid, "--", "sh", "-c", "sleep 1; echo %d" % i)

            ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
            t0 = time.time()
            [t.start() for t in ts]
            [t.join() for t in ts]
            assert [r.stdout.decode().strip() for r in results] == [str(i) for i in range(8)]
            assert time.time() - t0 < 8, "they ran side by side"


def test_run_call_returns_text_and_exit_code():
    pb = protos()
    with daemon() as d:
        sid = create(d)
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            r = unary(ch, "/hutch.v1.Sandboxes/Run", pb["sandbox"].RunRequest(
                start=pb["sandbox"].ExecStart(sandbox_id=sid,
                                              argv=["sh", "-c", "cat; echo e >&2; exit 3"]),
                stdin=b"piped in"), pb["sandbox"].RunResponse)
            assert r.stdout_text == "piped in"
            assert r.stderr_text == "e\n"
            assert r.exit_code == 3


def test_slow_reader_does_not_make_hutchd_buffer():
    pb = protos()
    with daemon() as d:
        sid = create(d)
        pid = d.proc.pid

        def rss_kb():
            with open("/proc/%d/status" % pid) as f:
                return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

        before = rss_kb()
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            call = ch.stream_stream("/hutch.v1.Sandboxes/Exec",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb["sandbox"].ExecResponse.FromString)
            start = pb["sandbox"].ExecRequest(start=pb["sandbox"].ExecStart(
                sandbox_id=sid, argv=["sh", "-c", "yes hutch-output-line"]))
            it = call(iter([start]), timeout=60)
            next(it)  # started
            time.sleep(5)  # read nothing while the process writes flat out
            grown = rss_kb() - before
            assert grown < 64 * 1024, "hutchd grew %d KiB for an unread stream" % grown
            got = 0
            for msg in it:
                if msg.WhichOneof("msg") == "stdout":
                    got += len(msg.stdout)
                    if got > 4 * 1024 * 1024:
                        break
            it.cancel()
        # The process was killed with the stream: nothing left running.
        time.sleep(1)
        assert "yes" not in out(d, sid, "ps", "-o", "args")


def test_files_in_and_out(tmp_path):
    with daemon() as d:
        sid = create(d)
        big = tmp_path / "big.bin"
        data = os.urandom(24 * 1024 * 1024)
        big.write_bytes(data)
        os.chmod(big, 0o751)
        d.cli("cp", str(big), sid + ":/tmp/big.bin")
        sha = out(d, sid, "sha256sum", "/tmp/big.bin").split()[0]
        assert sha == hashlib.sha256(data).hexdigest()
        assert out(d, sid, "stat", "-c", "%a", "/tmp/big.bin").strip() == "751"
        back = tmp_path / "back.bin"
        d.cli("cp", sid + ":/tmp/big.bin", str(back))
        assert back.read_bytes() == data
        assert oct(os.stat(back).st_mode & 0o777) == oct(0o751)
        # A tree, with a symlink and an empty dir, both ways.
        tree = tmp_path / "tree"
        (tree / "sub" / "empty").mkdir(parents=True)
        (tree / "sub" / "f.txt").write_text("deep")
        (tree / "top.sh").write_text("#!/bin/sh\necho hi\n")
        os.chmod(tree / "top.sh", 0o755)
        os.symlink("sub/f.txt", tree / "link")
        d.cli("cp", str(tree), sid + ":/work")
        assert out(d, sid, "cat", "/work/link") == "deep"
        assert out(d, sid, "/work/top.sh") == "hi\n"
        assert run(d, sid, "test", "-d", "/work/sub/empty", check=False).returncode == 0
        dl = tmp_path / "dl"
        d.cli("cp", sid + ":/work", str(dl))
        assert (dl / "sub" / "f.txt").read_text() == "deep"
        assert os.readlink(dl / "link") == "sub/f.txt"
        assert os.stat(dl / "top.sh").st_mode & 0o777 == 0o755
        # list / stat / remove through the API.
        pb = protos()
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            ls = unary(ch, "/hutch.v1.Sandboxes/ListFiles",
                       pb["sandbox"].ListFilesRequest(sandbox_id=sid, path="/work"),
                       pb["sandbox"].ListFilesResponse)
            assert sorted(f.path for f in ls.files) == ["link", "sub", "top.sh"]
            st = unary(ch, "/hutch.v1.Sandboxes/StatFile",
                       pb["sandbox"].StatFileRequest(sandbox_id=sid, path="/work/top.sh"),
                       pb["sandbox"].FileInfo)
            assert st.type == "file" and st.mode == 0o755 and st.size == 18
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/RemoveFile",
                      pb["sandbox"].RemoveFileRequest(sandbox_id=sid, path="/work"),
                      pb["sandbox"].RemoveFileResponse)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            unary(ch, "/hutch.v1.Sandboxes/RemoveFile",
                  pb["sandbox"].RemoveFileRequest(sandbox_id=sid, path="/work", recursive=True),
                  pb["sandbox"].RemoveFileResponse)
            with pytest.raises(grpc.RpcError) as e:
                unary(ch, "/hutch.v1.Sandboxes/StatFile",
                      pb["sandbox"].StatFileRequest(sandbox_id=sid, path="/work"),
                      pb["sandbox"].FileInfo)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_writable_layer_has_a_size_limit():
    with daemon() as d:
        sid = create(d, "--disk", "64Mi")
        r = run(d, sid, "sh", "-c",
                "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; echo rc=$?", check=False)
        text = r.stdout.decode() + r.stderr.decode()
        assert "No space left" in text or "rc=1" in text, text
        size = int(out(d, sid, "sh", "-c", "stat -c %s /tmp/fill").strip())
        assert size <= 64 * 1024 * 1024


def test_port_reaches_a_server_in_the_sandbox():
    with daemon() as d:
        sid = create(d, "--port", "8080")
        run(d, sid, "sh", "-c", "mkdir -p /www && echo served-from-sandbox > /www/index.html")
        # A server started by a main process would be usual; here an exec in
        # the background keeps it running while the test talks to it.
        server = subprocess.Popen(
            ["sh", "-c", "exec %s exec %s -- httpd -f -p 8080 -h /www" % (
                os.path.join(os.path.dirname(d.command()[0]), "hutch"), sid)],
            env=dict(os.environ, HUTCH_SOCKET=d.sock))
        try:
            binding = inspect(d, sid)["ports"][0]
            host, port = binding["host_address"].rsplit(":", 1)
            assert host == "127.0.0.1"
            body = b""
            for _ in range(50):
                try:
                    with socket.create_connection((host, int(port)), timeout=5) as s:
                        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                        while True:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            body += chunk
                    if b"served-from-sandbox" in body:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            assert b"served-from-sandbox" in body
        finally:
            server.terminate()
            server.wait()


def test_lifetime_expiry_and_stop_end_running_execs():
    with daemon() as d:
        sid = create(d, "--lifetime", "3s")
        r = run(d, sid, "sleep", "60", check=False, timeout=60)
        assert r.returncode != 0
        assert b"expired" in r.stderr and b"lifetime" in r.stderr, r.stderr
        info = inspect(d, sid)
        assert info["state"] == "SANDBOX_STATE_EXPIRED"
        assert "lifetime" in info["reason"]
        other = create(d)
        t = threading.Timer(1.5, lambda: d.cli("sandbox", "stop", other))
        t.start()
        r = run(d, other, "sleep", "60", check=False, timeout=60)
        t.join()
        assert r.returncode != 0 and b"stopped" in r.stderr, r.stderr
        assert inspect(d, other)["state"] == "SANDBOX_STATE_STOPPED"


def test_twenty_sandboxes_at_once():
    with daemon() as d:
        ids = [None] * 20

        def mk(i):
            ids[i] = create(d, "--memory", "96Mi", "--cpu", "0.1")

        ts = [threading.Thread(target=mk, args=(i,)) for i in range(20)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert all(ids) and len(set(ids)) == 20
        for i, sid in enumerate(ids):
            assert out(d, sid, "echo", str(i)) == "%d\n" % i
        st = json.loads(d.cli("status", "--json").stdout)
        assert st["sandboxes_running"] == 20


def own_netns(d):
    """The network namespaces this test's hutchd could have made: pinned (an
    nsfs mount) under its own dirs, or held by a process whose command line
    names its run dir. Never a census of the host's: other work on the
    machine makes and removes namespaces meanwhile."""
    pinned = [mp for mp, fstype in mounts_under(d.dir) if fstype == "nsfs"]
    held = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == d.proc.pid:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if d.run.encode() not in f.read():
                    continue
            held.add(os.stat("/proc/%s/ns/net" % pid).st_ino)
        except OSError:
            pass  # gone meanwhile
    return {"pinned": sorted(pinned), "held": sorted(held)}


def cgroups_of(ids):
    """Cgroup dirs left for these sandboxes (runtime-gvisor's default
    cgroup_parent "hutch"), in any mounted hierarchy."""
    left = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                left += [p for p in (os.path.join(fields[4], "hutch", i) for i in ids)
                         if os.path.isdir(p)]
    return left


def leak_snapshot(d):
    """What this daemon's sandboxes could leave behind on the host: only
    what names its own dirs or its process, so that other work on the
    machine cannot disturb the count."""
    procs = subprocess.run(["pgrep", "-f", "runsc.*" + re.escape(d.run)],
                           capture_output=True).stdout
    fds = len(os.listdir("/proc/%d/fd" % d.proc.pid))
    return {
        "mounts": mountinfo_under(d.dir),
        "runsc_procs": procs.split(),
        "hutchd_fds": fds,
        "netns": own_netns(d),
    }


def test_create_exec_stop_cycles_leave_nothing_behind():
    with daemon() as d:
        base = leak_snapshot(d)
        cycles = int(os.environ.get("HUTCH_CYCLES", "200"))
        ids = []
        for i in range(cycles):
            sid = create(d)
            ids.append(sid)
            assert out(d, sid, "echo", str(i)) == "%d\n" % i
            if i == 0:
                # The census sees what a running sandbox holds.
                running = leak_snapshot(d)
                assert running["netns"]["pinned"] or running["netns"]["held"], running
                assert cgroups_of([sid]), "no cgroup for a running sandbox?"
            d.cli("sandbox", "stop", sid)
            d.cli("sandbox", "rm", sid)
        after = leak_snapshot(d)
        assert after["mounts"] == base["mounts"]
        assert after["runsc_procs"] == base["runsc_procs"]
        assert after["netns"] == base["netns"]
        assert not cgroups_of(ids)
        assert after["hutchd_fds"] <= base["hutchd_fds"] + 2, (base, after)
        sandboxes_dir = os.path.join(d.run, "sandboxes")
        assert not os.listdir(sandboxes_dir), os.listdir(sandboxes_dir)


def test_sigkill_restart_recovers_running_sandboxes():
    d = Daemon()
    try:
        sid = create(d)
        run(d, sid, "sh", "-c", "echo kept > /tmp/state")
        gone = create(d)
        d.cli("sandbox", "stop", gone)
        d.kill()
        d.start()
        # Found again, usable, with its files.
        assert out(d, sid, "cat", "/tmp/state") == "kept\n"
        info = inspect(d, sid)
        assert info["state"] == "SANDBOX_STATE_RUNNING"
        assert inspect(d, gone)["state"] == "SANDBOX_STATE_STOPPED"
        d.cli("sandbox", "stop", sid)
        assert not mountinfo_under(os.path.join(d.run, "sandboxes"))
    finally:
        d.cleanup()


def test_bad_requests_get_clear_errors_and_leave_nothing():
    with daemon() as d:
        for args, msg in [(["--memory", "1Mi"], "too little"),
                          (["--cpu", "999"], "more than"),
                          (["--image", "nope"], "image `nope` not found"),
                          (["--workdir", "relative"], "absolute"),
                          (["--lifetime", "999d"], "longer than")]:
            r = d.cli("sandbox", "create", *args, check=False)
            assert r.returncode != 0 and msg in r.stderr.decode(), (args, r.stderr)
        assert not json.loads(d.cli("--json", "sandbox", "ls", "-a").stdout or b"{}").get(
            "sandboxes")
        r = d.cli("exec", "sb-000000000000", "--", "true", check=False)
        assert r.returncode != 0 and b"not found" in r.stderr


def test_tty_window_size_resize_and_ctrl_c():
    pb = protos()
    s = None
    with daemon() as d:
        sid = create(d)
        s = pb["sandbox"]
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            call = ch.stream_stream("/hutch.v1.Sandboxes/Exec",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=s.ExecResponse.FromString)
            script = ('stty size; trap "echo got-int; exit 3" INT; '
                      'while :; do read -t 1 line && stty size; done')
            import queue
            q = queue.Queue()

            def requests():
                yield s.ExecRequest(start=s.ExecStart(sandbox_id=sid, argv=["sh", "-c", script],
                                                      tty=True, rows=33, cols=101, stdin=True))
                while True:
                    m = q.get()
                    if m is None:
                        return
                    yield m

            out = b""
            exit_code = None
            it = call(requests(), timeout=60)
            step = 0
            for msg in it:
                kind = msg.WhichOneof("msg")
                if kind == "stdout":
                    out += msg.stdout
                    if step == 0 and b"33 101" in out:
                        step = 1
                        q.put(s.ExecRequest(resize=s.WindowSize(rows=40, cols=120)))
                        q.put(s.ExecRequest(stdin=b"x\n"))
                    elif step == 1 and b"40 120" in out:
                        step = 2
                        q.put(s.ExecRequest(stdin=b"\x03"))  # ^C through the terminal
                elif kind == "exit":
                    exit_code = msg.exit.exit_code
            q.put(None)
            assert b"33 101" in out and b"40 120" in out, out
            assert b"got-int" in out, out
            assert exit_code == 3


def test_exec_user_env_cwd_and_timeout():
    with daemon() as d:
        sid = create(d, "-e", "FROM_SPEC=spec", "--workdir", "/tmp")
        r = d.cli("exec", "-e", "FROM_EXEC=exec", sid, "--", "sh", "-c",
                  'echo "$FROM_SPEC $FROM_EXEC"; pwd; id -u')
        assert r.stdout.decode().split("\n")[:3] == ["spec exec", "/tmp", "0"]
        r = d.cli("exec", "-u", "nobody", "-w", "/", sid, "--", "sh", "-c", "id -u; pwd")
        assert r.stdout.decode().split() == ["65534", "/"]
        r = d.cli("exec", "--timeout", "1s", sid, "--", "sleep", "30", check=False)
        assert r.returncode == 137 and b"timeout" in r.stderr


def test_restart_with_on_restart_cleanup_stops_what_ran():
    d = Daemon('[sandbox]\non_restart = "cleanup"\n')
    try:
        sid = create(d)
        d.kill()
        d.start()
        info = inspect(d, sid)
        assert info["state"] == "SANDBOX_STATE_STOPPED"
        assert "on_restart = cleanup" in info["reason"]
        assert not mountinfo_under(os.path.join(d.run, "sandboxes"))
        assert not mountinfo_under(os.path.join(d.run, "plugins"))
    finally:
        d.cleanup()
