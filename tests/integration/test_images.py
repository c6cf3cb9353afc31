"""Images on busybox bases, against a real hutchd and runsc: content-
addressed caching, concurrent builds, whiteouts, failing steps, corrupted
layers, export/import with skopeo, garbage collection, the CLI's
progress, bad input, restarts. (debian_slim: test_images_debian.py;
registries: test_images_registry.py.)"""
import json
import os
import pty
import select
import signal
import subprocess
import tarfile
import threading
import time

import grpc
import pytest

import hutchtest
from hutchtest import daemon, protos
from imagetest import (blob_path, build, cache_entries, images_dir, layer_root, run_in,
                       write_image)


def spec_text(last="date +%s%N > /c", file_dest="/f"):
    return ('name = "cached"\n[base]\nbusybox = true\n'
            '[[steps]]\nrun_commands = "date +%%s%%N > /a"\n'
            '[[steps]]\nadd_local_file = { src = "f.txt", dest = "%s" }\n'
            '[[steps]]\nrun_commands = "%s"\n' % (file_dest, last))


def test_cache_hits_and_misses(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), spec_text(), files={"f.txt": "one\n"})
        b1 = build(d, path)
        assert b1.final() == {1: "cached", 2: "built", 3: "built", 4: "built"}, b1
        img1 = json.loads(d.cli("image", "inspect", "cached").stdout)
        first = run_in(d, "cached", "cat /a /f /c")
        # Unchanged: nothing runs (and so it is quick: seconds, not a build),
        # the same image.
        b2 = build(d, path)
        assert b2.final() == {1: "cached", 2: "cached", 3: "cached", 4: "cached"}, b2
        assert b2.ran() == [] and b2.seconds < 10.0, b2
        assert json.loads(d.cli("image", "inspect", "cached").stdout)["digest"] == img1["digest"]
        assert run_in(d, "cached", "cat /a /f /c") == first
        # The last step changed: only it runs.
        path = write_image(str(tmp_path), spec_text(last="echo changed > /c"))
        b3 = build(d, path)
        assert b3.ran() == [4], b3
        assert run_in(d, "cached", "cat /a /f /c").startswith(first.split("\n")[0] + "\none\nchanged")
        # The added file's content changed: its step and the ones after.
        write_image(str(tmp_path), spec_text(last="echo changed > /c"), files={"f.txt": "two\n"})
        b4 = build(d, path)
        assert b4.ran() == [3, 4], b4
        out = run_in(d, "cached", "cat /a /f /c")
        assert out.split("\n")[0] == first.split("\n")[0] and "two\nchanged" in out
        # Back to the first file: its layers are still cached.
        write_image(str(tmp_path), spec_text(last="echo changed > /c"), files={"f.txt": "one\n"})
        assert build(d, path).ran() == []
        # --no-cache: every step runs again (the base stays cached).
        b5 = build(d, path, "--no-cache")
        assert b5.final()[1] == "cached" and b5.ran() == [2, 3, 4], b5
        assert run_in(d, "cached", "cat /a").strip() != first.split("\n")[0]
        # Identical specs under two names share the build.
        b6 = build(d, path, "--name", "twin")
        assert b6.ran() == []
        twin = json.loads(d.cli("image", "inspect", "twin").stdout)
        assert twin["digest"] == json.loads(d.cli("image", "inspect", "cached").stdout)["digest"]


def test_concurrent_identical_builds_build_once(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), 'name = "a"\n[base]\nbusybox = true\n[[steps]]\n'
                           'run_commands = "sleep 2; head -c 16 /dev/urandom | od -An -tx1 > /rand"\n')
        results = {}

        def go(name):
            results[name] = build(d, path, "--name", name)

        threads = [threading.Thread(target=go, args=(n,)) for n in ("a", "b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ran = [n for n, b in results.items() if b.ran()]
        assert len(ran) == 1, results
        others = [b for n, b in results.items() if n not in ran]
        assert all(b.final()[2] == "cached" for b in others), results
        # The two that waited say so.
        assert all("waiting" in b.states[2] for b in others), results
        rands = {run_in(d, n, "cat /rand") for n in ("a", "b", "c")}
        assert len(rands) == 1, rands


def test_whiteouts_and_opaque_directories(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), (
            'name = "wh"\n[base]\nbusybox = true\n'
            '[[steps]]\nrun_commands = ["mkdir -p /data/keep /data/drop /opq", '
            '"touch /data/keep/k /data/drop/d /data/file /opq/old1 /opq/old2"]\n'
            '[[steps]]\nrun_commands = ["rm -rf /data/drop /data/file /bin/vi", '
            '"rm -rf /opq && mkdir /opq && touch /opq/new"]\n'
            '[[steps]]\nrun_commands = "touch /later"\n'))
        build(d, path)
        out = run_in(d, "wh", "ls -a /data /opq; ls /data/drop /data/file /bin/vi 2>&1; "
                     "test -e /bin/sh && echo has-sh")
        assert "keep" in out and "new" in out and "has-sh" in out
        assert "old1" not in out and "old2" not in out
        assert out.count("No such file or directory") == 3, out
        # In OCI form: .wh. files and an opaque marker, in the second layer.
        tar = str(tmp_path / "wh.tar")
        d.cli("image", "export", "wh", "--output", tar)
        img = json.loads(d.cli("image", "inspect", "wh").stdout)
        second = img["layers"][2]["digest"].split(":")[1]
        with tarfile.open(tar) as t:
            layer = t.extractfile("blobs/sha256/" + second)
            with tarfile.open(fileobj=layer) as lt:
                names = lt.getnames()
        assert "data/.wh.drop" in names and "data/.wh.file" in names and "bin/.wh.vi" in names
        assert "opq/.wh..wh..opq" in names and "opq/new" in names, names
        # A sandbox's own deletions of image files work too (the writable layer).
        assert "gone" in run_in(d, "wh", "rm /data/keep/k && ls /data/keep/k 2>/dev/null || echo gone")


def test_failing_step_reports_and_caches_nothing(tmp_path):
    with daemon() as d:
        text = ('name = "fails"\n[base]\nbusybox = true\n'
                '[[steps]]\nrun_commands = "echo good > /good"\n'
                '[[steps]]\nrun_commands = ["echo about to fail", "echo oops >&2; exit 3"]\n')
        path = write_image(str(tmp_path), text)
        b = build(d, path, check=False)
        assert b.returncode == 1 and b.final() == {1: "cached", 2: "built", 3: "FAILED"}, b
        assert "exited with code 3" in b.err and "exit code 3" in b.err, b
        assert "  | oops" in b.out and "  | about to fail" in b.out
        before = len(cache_entries(d))
        # Nothing of the failed step was kept: it runs again; the good one
        # before it stays cached; no image was made.
        b2 = build(d, path, check=False)
        assert b2.ran() == [3] and b2.final()[3] == "FAILED", b2
        assert len(cache_entries(d)) == before
        assert b"fails" not in d.cli("image", "ls").stdout
        # --quiet: the output tail comes with the error instead.
        b3 = build(d, path, "--quiet", check=False)
        assert "  |" not in b3.out and "its last output:" in b3.err and "oops" in b3.err
        # Over gRPC (the Python SDK): a FAILED step event (exit code,
        # output tail), status ABORTED.
        import sys
        sys.path.insert(0, os.path.join(hutchtest.SOURCE_DIR, "sdk", "python"))
        import hutch
        with hutch.SandboxClient(d.sock) as c:
            with pytest.raises(hutch.ImageBuildError) as e:
                hutch.Image.builtin().run_commands("echo nope; exit 7").build(c, name="x")
            assert e.value.exit_code == 7 and "nope" in e.value.output_tail
            assert e.value.code == grpc.StatusCode.ABORTED


def test_corrupted_layer_is_repaired_or_refused(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), 'name = "c"\n[base]\nbusybox = true\n'
                           '[[steps]]\nrun_commands = "echo original > /data"\n')
        build(d, path)
        img = json.loads(d.cli("image", "inspect", "c").stdout)
        layer = img["layers"][1]["digest"]
        data = os.path.join(layer_root(d, layer), "data")
        # The unpacked directory changed under the store: made again from
        # the blob, and the sandbox sees the original.
        with open(data, "w") as f:
            f.write("tampered\n")
        assert run_in(d, "c", "cat /data") == "original\n"
        assert "its directory changed" in d.log()
        # The blob changed: hutch's own layers are deterministic tars of
        # their directory, so it is written again.
        with open(blob_path(d, layer), "r+b") as f:
            f.seek(600)
            f.write(b"X")
        assert run_in(d, "c", "cat /data") == "original\n"
        r = d.cli("image", "inspect", "--verify", "c")
        assert json.loads(r.stdout)["digest"] == img["digest"]
        # Both changed: refused, never used; the sandbox is not made.
        with open(blob_path(d, layer), "r+b") as f:
            f.seek(600)
            f.write(b"X")
        with open(data, "w") as f:
            f.write("tampered\n")
        r = d.cli("run", "--image", "c", "--", "cat", "/data", check=False)
        assert r.returncode == 1 and b"is corrupted" in r.stderr, r.stderr
        assert d.cli("--json", "sandbox", "ls").stdout.strip() in (b"{}", b'{"sandboxes": []}') or \
            not json.loads(d.cli("--json", "sandbox", "ls").stdout).get("sandboxes")
        r = d.cli("image", "inspect", "--verify", "c", check=False)
        assert r.returncode == 1
        # A build finds the step's layer gone and makes it again.
        b = build(d, path)
        assert b.ran() == [2], b
        assert run_in(d, "c", "cat /data") == "original\n"


def test_export_import_and_skopeo(tmp_path):
    text = ('name = "app"\n[base]\nbusybox = true\n'
            '[[steps]]\nadd_local_dir = { src = "src", dest = "/app" }\n'
            '[[steps]]\nenv = { GREETING = "hello" }\n'
            '[[steps]]\nrun_commands = "echo built > /app/built"\n')
    path = write_image(str(tmp_path), text, files={"src/main.sh": "echo main\n"})
    layout = str(tmp_path / "layout")
    tar = str(tmp_path / "app.tar")
    with daemon() as d1:
        build(d1, path)
        d1.cli("image", "export", "app", "--layout", layout)
        d1.cli("image", "export", "app", "--output", tar)
        digests = [l["digest"] for l in json.loads(d1.cli("image", "inspect", "app").stdout)["layers"]]
    # A real tool reads hutch's layout, and writes a docker-archive of it.
    r = subprocess.run(["skopeo", "inspect", "oci:%s:app" % layout], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Layers"] == digests
    archive = str(tmp_path / "docker.tar")
    r = subprocess.run(["skopeo", "copy", "oci:%s:app" % layout, "docker-archive:%s:test/app:1" % archive],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with daemon() as d2:
        # The OCI layout, imported elsewhere: same layers, and the build cache
        # came with it (the same file builds without running anything).
        r = d2.cli("image", "import", tar, "--name", "app")
        assert b"app: sha256:" in r.stdout
        assert [l["digest"] for l in json.loads(d2.cli("image", "inspect", "app").stdout)["layers"]] == digests
        b = build(d2, path)
        assert b.ran() == [], b
        assert run_in(d2, "app", "cat /app/built; sh /app/main.sh; echo $GREETING") == "built\nmain\nhello\n"
        # The docker-archive too (a directory layout also imports).
        d2.cli("image", "import", archive, "--name", "from-docker")
        assert run_in(d2, "from-docker", "cat /app/built; echo $GREETING") == "built\nhello\n"
        d2.cli("image", "import", layout, "--name", "from-dir", "--ref", "app")
        assert run_in(d2, "from-dir", "cat /app/built") == "built\n"
        # An image built on an imported one; and on a local layout, which
        # the CLI imports first (as NAME-base).
        base = write_image(str(tmp_path), 'name = "on-top"\n[base]\nimage = "from-docker"\n'
                           '[[steps]]\nrun_commands = "echo top > /top"\n', name="top.toml")
        build(d2, base)
        assert run_in(d2, "on-top", "cat /top /app/built") == "top\nbuilt\n"
        local = write_image(str(tmp_path), 'name = "local"\n[base]\noci_layout = "app.tar"\n'
                            '[[steps]]\nrun_commands = "echo local > /l"\n', name="local.toml")
        b = build(d2, local)
        assert "importing" in b.out and b.final()[2] == "built", b
        assert b"local-base" in d2.cli("image", "ls").stdout
        assert run_in(d2, "local", "cat /l /app/built") == "local\nbuilt\n"


def test_a_cancelled_build_leaves_nothing(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), 'name = "slow"\n[base]\nbusybox = true\n'
                           '[[steps]]\nrun_commands = "echo started; touch /partial; sleep 60"\n')
        env = dict(os.environ, HUTCH_SOCKET=d.sock)
        p = subprocess.Popen([hutchtest.HUTCH, "image", "build", "--progress", "plain", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = b""
        deadline = time.time() + 30
        while line != b"  | started\n" and time.time() < deadline:  # its output: it runs
            line = p.stdout.readline()
        assert line == b"  | started\n"
        sandboxes = os.path.join(d.run, "plugins", "runtime-gvisor", "sandboxes")
        assert any(n.startswith("bld-") for n in os.listdir(sandboxes))
        p.kill()  # the client goes away mid-step
        p.wait()
        # The step is killed, its sandbox and scratch removed, nothing cached.
        deadline = time.time() + 20
        while time.time() < deadline and (any(n.startswith("bld-") for n in os.listdir(sandboxes)) or
                                          os.listdir(os.path.join(images_dir(d), "tmp"))):
            time.sleep(0.2)
        assert not [n for n in os.listdir(sandboxes) if n.startswith("bld-")]
        assert os.listdir(os.path.join(images_dir(d), "tmp")) == []
        assert os.listdir(os.path.join(d.run, "builds")) == []
        assert cache_entries(d) == [] or all("global" in c for c in cache_entries(d))
        assert b"slow" not in d.cli("image", "ls").stdout
        assert "cancelled" in d.log() or "canceled" in d.log().lower()


def test_garbage_collection(tmp_path):
    with daemon() as d:
        shared = '[base]\nbusybox = true\n[[steps]]\nrun_commands = "echo shared > /s"\n'
        a = write_image(str(tmp_path), 'name = "a"\n' + shared, name="a.toml")
        b = write_image(str(tmp_path), 'name = "b"\n' + shared +
                        '[[steps]]\nrun_commands = "head -c 300000 /dev/urandom > /big"\n', name="b.toml")
        build(d, a)
        build(d, b)
        big = json.loads(d.cli("image", "inspect", "b").stdout)["layers"][2]["digest"]
        assert os.path.isdir(layer_root(d, big))
        # A sandbox holds b's layers even after b is removed.
        sb = json.loads(d.cli("--json", "sandbox", "create", "--image", "b").stdout)
        r = d.cli("image", "rm", "b")
        assert b"b removed" in r.stdout
        assert os.path.isdir(layer_root(d, big))
        d.cli("sandbox", "stop", sb["id"])
        r = json.loads(d.cli("--json", "image", "gc").stdout)
        assert r["layers_removed"] == 1 and r["freed_bytes"] > 300000, r
        assert not os.path.exists(layer_root(d, big))
        assert not os.path.exists(blob_path(d, big))
        # a (sharing the base and the first step) is whole.
        assert run_in(d, "a", "cat /s") == "shared\n"
        r = json.loads(d.cli("--json", "image", "gc").stdout)
        assert r.get("layers_removed", 0) == 0
        r = d.cli("image", "rm", "nope", check=False)
        assert r.returncode == 1 and b"image `nope` not found" in r.stderr


def test_cli_progress_bar_on_a_terminal(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), 'name = "tty"\n[base]\nbusybox = true\n'
                           '[[steps]]\nrun_commands = "echo line one; sleep 1; echo line two"\n')
        env = dict(os.environ, HUTCH_SOCKET=d.sock, COLUMNS="100")
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(hutchtest.HUTCH, [hutchtest.HUTCH, "image", "build", path], env)
        out = b""
        deadline = time.time() + 60
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, out
        text = out.decode(errors="replace")
        assert "\r\x1b[K[" in text and "#" in text and "] 1/2 running run_commands" in text, text
        assert "  | line one" in text and "  | line two" in text
        assert "2/2 built" in text and "image tty: sha256:" in text
        # Not a terminal: plain lines, no escapes.
        b = build(d, path)
        assert "\x1b" not in b.out and b.out.startswith("step 1/2 cached")


def test_bad_input_is_refused_cleanly(tmp_path):
    pb = protos()
    with daemon() as d:
        cases = [
            ('[base]\nbusybox = true\n[[steps]]\nrun = 3\n', "image.toml:4:7: run_commands must be an array"),
            ('name = "x"\n[base]\nbusybox = true\n[[steps]]\nbogus = 1\n', "image.toml:5:1: unknown step `bogus`"),
            ('[base]\nbusybox = true\n', "names no image"),
            ('name = "x"\n[base]\nbusybox = true\n[[steps]]\nworkdir = "rel"\n', "step 2 (workdir)"),
            ('name = "x"\n[base]\nimage = "nope"\n', "base: image `nope` not found"),
            ('name = "x"\n[base]\ndebian_slim = { python = "2.7" }\n',
             "Python 2.7 cannot be provided; the configured Debian mirror offers Python 3.11 (bookworm), 3.13 (trixie)"),
            ('name = "x"\n[base]\nbusybox = true\n[[steps]]\napt_install = ["curl"]\n',
             "needs network access, and no network plugin is configured"),
        ]
        for text, want in cases:
            path = write_image(str(tmp_path), text)
            b = build(d, path, check=False)
            assert b.returncode != 0 and want in b.out + b.err, (want, b)
        assert b"x " not in d.cli("image", "ls").stdout
        # Over gRPC: a first message that is not `start`; a file that is not
        # what its digest says; a name that is not a name.
        ch = grpc.insecure_channel("unix:" + d.sock)
        call = ch.stream_stream("/hutch.v1.Images/Build",
                                request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=pb["image"].BuildImageEvent.FromString)
        with pytest.raises(grpc.RpcError) as e:
            list(call(iter([pb["image"].BuildImageRequest(files_done=True)]), timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        import hashlib
        fake = "sha256:" + hashlib.sha256(b"promised").hexdigest()
        spec = pb["image"].ImageSpec(source=pb["image"].ImageBase(busybox=pb["image"].BusyboxBase()))
        spec.steps.add().add_local_file.CopyFrom(pb["image"].AddLocalFile(
            dest="/f", file=pb["image"].LocalFile(digest=fake, size=8)))
        reqs = [pb["image"].BuildImageRequest(start=pb["image"].BuildStart(spec=spec, name="lie")),
                pb["image"].BuildImageRequest(file=pb["image"].FileChunk(digest=fake, data=b"not that", last=True)),
                pb["image"].BuildImageRequest(files_done=True)]
        with pytest.raises(grpc.RpcError) as e:
            list(call(iter(reqs), timeout=30))
        assert "hashes to" in e.value.details(), e.value.details()
        for bad in ("", "-x", "sha256:" + "0" * 64, "a b"):
            with pytest.raises(grpc.RpcError) as e:
                list(call(iter([pb["image"].BuildImageRequest(start=pb["image"].BuildStart(spec=spec, name=bad))]),
                          timeout=30))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A broken import leaves nothing: no record, no scratch.
        junk = tmp_path / "junk.tar"
        junk.write_bytes(b"not a tar at all" * 100)
        r = d.cli("image", "import", str(junk), "--name", "junk", check=False)
        assert r.returncode == 1 and b"import" in r.stderr, r.stderr
        assert b"junk" not in d.cli("image", "ls").stdout
        assert os.listdir(os.path.join(images_dir(d), "tmp")) == []
        ch.close()


def test_images_and_their_sandboxes_survive_a_restart(tmp_path):
    with daemon() as d:
        path = write_image(str(tmp_path), 'name = "keep"\n[base]\nbusybox = true\n'
                           '[[steps]]\nrun_commands = "echo kept > /k"\n')
        build(d, path)
        sb = json.loads(d.cli("--json", "sandbox", "create", "--image", "keep").stdout)
        layer = json.loads(d.cli("image", "inspect", "keep").stdout)["layers"][1]["digest"]
        d.cli("image", "rm", "keep")
        # A crash (as the sandbox tests restart): the running sandbox's
        # image stays, though no record names it any more.
        d.kill()
        d.start()
        json.loads(d.cli("--json", "image", "gc").stdout)
        assert os.path.isdir(layer_root(d, layer))
        r = d.cli("exec", sb["id"], "--", "cat", "/k")
        assert r.stdout == b"kept\n"
        # Once it stops, nothing holds the layer.
        d.cli("sandbox", "stop", sb["id"])
        json.loads(d.cli("--json", "image", "gc").stdout)
        assert not os.path.exists(layer_root(d, layer))
        # An image recorded before a restart is there after it.
        b = build(d, path)
        assert b.ran() == [2], b
        d.signal(signal.SIGTERM)
        d.proc.wait(60)
        d.start()
        assert b"keep" in d.cli("image", "ls").stdout
        assert run_in(d, "keep", "cat /k") == "kept\n"
        json.loads(d.cli("--json", "image", "gc").stdout)
        assert run_in(d, "keep", "cat /k") == "kept\n"
        assert build(d, path).ran() == []


def test_identity_token_names_the_image(tmp_path):
    import base64
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ('[plugins]\nidentity = "identity-oidc"\n[http]\nlisten = "127.0.0.1:%d"\n'
           '[plugin.identity-oidc]\nissuer = "http://127.0.0.1:%d"\n' % (port, port))
    with daemon(cfg) as d:
        path = write_image(str(tmp_path), 'name = "named"\n[base]\nbusybox = true\n'
                           '[[steps]]\nrun_commands = "true"\n')
        build(d, path)
        digest = json.loads(d.cli("image", "inspect", "named").stdout)["digest"]
        busybox = json.loads(d.cli("image", "inspect", "busybox").stdout)["digest"]
        for image, want in (("named", digest), ("busybox", busybox), (digest, digest)):
            sid = d.cli("sandbox", "create", "--image", image).stdout.decode().strip()
            token = d.cli("exec", sid, "--", "cat", "/run/hutch/identity/token").stdout.decode().strip()
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            assert claims["image_digest"] == want, (image, claims)
            sb = json.loads(d.cli("--json", "sandbox", "inspect", sid).stdout)
            assert sb["image_digest"] == want
            d.cli("sandbox", "stop", sid)
