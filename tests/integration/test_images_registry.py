"""Pulling bases from a real registry on loopback: Debian's docker-registry,
with an image made by umoci and pushed by skopeo (neither is hutch), with
and without credentials."""
import contextlib
import crypt
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from hutchtest import daemon
from imagetest import build, run_in, write_image


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def registry(tmp, users=None):
    """docker-registry on 127.0.0.1 (htpasswd basic auth when users)."""
    port = free_port()
    cfg = ("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
           "http:\n  addr: 127.0.0.1:%d\n" % (os.path.join(tmp, "storage"), port))
    if users:
        pw = os.path.join(tmp, "htpasswd")
        with open(pw, "w") as f:
            for u, p in users.items():
                f.write("%s:%s\n" % (u, crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH))))
        cfg += "auth:\n  htpasswd:\n    realm: hutch-test\n    path: %s\n" % pw
    path = os.path.join(tmp, "registry.yml")
    with open(path, "w") as f:
        f.write(cfg)
    log = open(os.path.join(tmp, "registry.log"), "wb")
    proc = subprocess.Popen(["docker-registry", "serve", path], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield "127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def umoci_image(tmp, env="GREETING=hello from umoci"):
    """An OCI layout with one image, made by umoci: busybox and a file."""
    layout = os.path.join(tmp, "layout")
    bundle = os.path.join(tmp, "bundle")
    for args in (["init", "--layout", layout], ["new", "--image", layout + ":1"],
                 ["unpack", "--image", layout + ":1", bundle]):
        subprocess.run(["umoci"] + args, check=True, capture_output=True)
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    os.makedirs(os.path.join(rootfs, "srv"))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "cat", "ls", "echo", "env", "pwd"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "srv", "from-registry"), "w") as f:
        f.write("pulled\n")
    subprocess.run(["umoci", "repack", "--image", layout + ":1", bundle], check=True, capture_output=True)
    subprocess.run(["umoci", "config", "--image", layout + ":1", "--config.env", env,
                    "--config.env", "PATH=/bin", "--config.workingdir", "/srv"],
                   check=True, capture_output=True)
    return layout


def push(layout, dest, creds=None, fmt=None):
    args = ["skopeo", "copy", "--dest-tls-verify=false"]
    if creds:
        args += ["--dest-creds", creds]
    if fmt:
        args += ["--format", fmt]
    r = subprocess.run(args + ["oci:%s:1" % layout, "docker://" + dest], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_pull_from_a_loopback_registry(tmp_path):
    layout = umoci_image(str(tmp_path))
    with registry(str(tmp_path)) as reg, daemon() as d:
        push(layout, reg + "/test/app:1")
        path = write_image(str(tmp_path), 'name = "pulled"\n[base]\nregistry = "%s/test/app:1"\n'
                           '[[steps]]\nrun_commands = "echo on top > /srv/top"\n' % reg)
        b = build(d, path)
        assert b.final() == {1: "built", 2: "built"}, b
        assert "pulling %s/test/app:1" % reg in b.out
        # The image's config (env, workdir) comes along.
        assert run_in(d, "pulled", "cat from-registry top; pwd; echo $GREETING") == \
            "pulled\non top\n/srv\nhello from umoci\n"
        # Again: the registry is asked what the tag names now; same manifest,
        # nothing pulled, nothing run.
        b = build(d, path)
        assert b.ran() == [] and "pulling" not in b.out, b
        # Pinned by digest.
        manifest = json.loads(subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "docker://%s/test/app:1" % reg],
            capture_output=True, text=True, check=True).stdout)["Digest"]
        path2 = write_image(str(tmp_path), 'name = "pinned"\n[base]\nregistry = "%s/test/app@%s"\n'
                            % (reg, manifest), name="pinned.toml")
        build(d, path2)
        assert run_in(d, "pinned", "cat from-registry") == "pulled\n"
        # As a Docker v2 schema 2 image (and its gzip'ed layers) too.
        push(layout, reg + "/test/docker:1", fmt="v2s2")
        mt = json.loads(subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", "docker://%s/test/docker:1" % reg],
            capture_output=True, text=True, check=True).stdout)["mediaType"]
        assert mt == "application/vnd.docker.distribution.manifest.v2+json"
        path3 = write_image(str(tmp_path), 'name = "v2s2"\n[base]\nregistry = "%s/test/docker:1"\n' % reg,
                            name="v2s2.toml")
        build(d, path3)
        assert run_in(d, "v2s2", "cat from-registry; echo $GREETING") == "pulled\nhello from umoci\n"
        # A new push under the tag: the next build pulls it.
        layout2 = umoci_image(str(tmp_path / "v2"), env="GREETING=second push")
        push(layout2, reg + "/test/app:1")
        b = build(d, path)
        assert b.ran() == [1, 2], b
        assert run_in(d, "pulled", "echo $GREETING") == "second push\n"
        # What does not exist says so.
        for ref, want in [(reg + "/test/app:nope", "not found"),
                          (reg + "/test/none:1", "not found"),
                          ("127.0.0.1:1/x:1", "pull 127.0.0.1:1/x:1")]:
            p = write_image(str(tmp_path), 'name = "bad"\n[base]\nregistry = "%s"\n' % ref, name="bad.toml")
            b = build(d, p, check=False)
            assert b.returncode == 1 and want in b.err, (ref, b)
        assert b"bad" not in d.cli("image", "ls").stdout


def test_pull_with_credentials(tmp_path):
    layout = umoci_image(str(tmp_path))
    with registry(str(tmp_path), users={"builder": "s3cret-pass"}) as reg, daemon() as d:
        push(layout, reg + "/private/app:1", creds="builder:s3cret-pass")
        text = ('name = "private"\n[base]\nregistry = { ref = "%s/private/app:1", username = "builder", '
                'password_env = "HUTCH_TEST_REGISTRY_PASSWORD" }\n' % reg)
        path = write_image(str(tmp_path), text)
        r = d.cli("image", "build", "--progress", "plain", path, check=False,
                  env={"HUTCH_TEST_REGISTRY_PASSWORD": "wrong"})
        assert r.returncode == 1 and b"denied" in r.stderr, r.stderr
        r = d.cli("image", "build", "--progress", "plain", path,
                  env={"HUTCH_TEST_REGISTRY_PASSWORD": "s3cret-pass"})
        assert run_in(d, "private", "cat from-registry") == "pulled\n"
        # Credentials are used, never kept: not in the record, not in the log.
        assert b"s3cret-pass" not in d.cli("image", "inspect", "private").stdout
        assert "s3cret-pass" not in d.log()
        for root, _, files in os.walk(d.state):
            for n in files:
                p = os.path.join(root, n)
                if os.path.islink(p) or os.path.getsize(p) > 10 << 20:
                    continue
                with open(p, "rb") as f:
                    assert b"s3cret-pass" not in f.read(), p
        # Without credentials: refused, with a hint.
        p = write_image(str(tmp_path), 'name = "anon"\n[base]\nregistry = "%s/private/app:1"\n' % reg,
                        name="anon.toml")
        b = build(d, p, check=False)
        assert b.returncode == 1 and "credentials may be needed" in b.err, b


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("docker-registry", "skopeo", "umoci"):
        if not shutil.which(tool):
            pytest.fail("%s is not installed (scripts/install-deps.sh --test installs it)" % tool)


class LyingRegistry:
    """A registry that lies: a plain socket HTTP server on loopback (no
    name lookups) answering the Docker v2 API with what `routes` says."""

    def __init__(self, routes):
        import threading
        self.routes = routes
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    req += chunk
                path = req.split(b" ")[1].decode() if b" " in req else "/"
                status, ctype, body = self.routes.get(path, (404, "text/plain", b"not here"))
                c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                          b"Connection: close\r\n\r\n" % (status, ctype.encode(), len(body)) + body)

    def close(self):
        self.stop = True
        self.sock.close()


def test_a_lying_registry_is_refused_and_leaves_nothing(tmp_path):
    import hashlib
    sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731
    config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    promised = b"the layer the manifest promises"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(promised),
                    "size": len(promised)}]}).encode()
    mt = "application/vnd.oci.image.manifest.v1+json"
    routes = {
        "/v2/garbage/manifests/1": (200, mt, b"{this is not json"),
        "/v2/schema1/manifests/1": (200, mt, b'{"schemaVersion":1,"fsLayers":[]}'),
        "/v2/swapped/manifests/1": (200, mt, manifest),
        "/v2/swapped/blobs/" + sha(config): (200, "application/octet-stream", config),
        "/v2/swapped/blobs/" + sha(promised): (200, "application/octet-stream", b"something else entirely"),
        "/v2/pinned/manifests/" + sha(b"x"): (200, mt, manifest),
    }
    reg = LyingRegistry(routes)
    try:
        with daemon() as d:
            cases = [("garbage:1", "invalid JSON"),
                     ("schema1:1", "Docker schema 1 is not supported"),
                     ("swapped:1", "the registry sent content whose digest is"),
                     ("pinned@" + sha(b"x"), "the registry sent a manifest whose digest is")]
            for ref, want in cases:
                p = write_image(str(tmp_path), 'name = "lie"\n[base]\nregistry = "%s/%s"\n' % (reg.addr, ref))
                b = build(d, p, check=False)
                assert b.returncode == 1 and want in b.err, (ref, b)
            assert b"lie" not in d.cli("image", "ls").stdout
            assert os.listdir(os.path.join(d.state, "images", "tmp")) == []
            # No layer but busybox's.
            assert len(os.listdir(os.path.join(d.state, "images", "layers"))) == 1
    finally:
        reg.close()
