"""Images: the spec the SDK builds from Image.debian_slim()... chains, the
Build call's protocol (against a stand-in Images service written with
grpcio's server, since it checks what the client sends), and what a real
hutchd answers."""
import hashlib
import os
from concurrent import futures

import grpc
import pytest

import hutch
from hutch import (CapabilityMissingError, Container, Image, ImageBuildError,
                   InvalidArgumentError, SandboxClient)
from hutch._proto import image_pb2 as ipb
from hutch._proto import sandbox_pb2 as spb


def _tree(tmp_path):
    src = tmp_path / "app"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("X = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o755)
    (src / "junk.pyc").write_bytes(b"\0")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    os.symlink("pkg/mod.py", src / "link")
    return src


def test_spec_from_the_chain(tmp_path):
    src = _tree(tmp_path)
    f = tmp_path / "config.toml"
    f.write_text("a = 1\n")
    os.chmod(f, 0o640)
    base = Image.debian_slim("3.12")
    img = (base.pip_install("numpy", ["pandas==2.2"], extra_index_url="https://x.example/simple")
           .apt_install(["git"], "curl")
           .run_commands("echo one", "echo two")
           .add_local_file(f, "/etc/app/config.toml")
           .add_local_dir(src, "/app", ignore=["*.pyc", ".git"])
           .env({"MODE": "prod"}).workdir("/app").entrypoint(["python3", "-m", "app"]))
    # Immutable: the base did not change.
    assert base == Image.debian_slim("3.12") and base != img
    assert repr(base) == "<Image Image.debian_slim('3.12')>"
    spec, files = img.to_proto()
    assert spec.source.debian_slim.python_version == "3.12"
    ops = [s.WhichOneof("op") for s in spec.steps]
    assert ops == ["pip_install", "apt_install", "run_commands", "add_local_file",
                   "add_local_dir", "env", "workdir", "entrypoint"]
    pip = spec.steps[0].pip_install
    assert list(pip.packages) == ["numpy", "pandas==2.2"]
    assert list(pip.extra_index_urls) == ["https://x.example/simple"]
    assert list(spec.steps[1].apt_install.packages) == ["git", "curl"]
    assert list(spec.steps[2].run_commands.commands) == ["echo one", "echo two"]
    alf = spec.steps[3].add_local_file
    digest = "sha256:" + hashlib.sha256(b"a = 1\n").hexdigest()
    assert alf.dest == "/etc/app/config.toml" and alf.file.digest == digest
    assert alf.file.mode == 0o640 and alf.file.size == 6
    entries = {e.path: e for e in spec.steps[4].add_local_dir.entries}
    assert sorted(entries) == ["link", "pkg", "pkg/mod.py", "run.sh"]
    assert entries["pkg"].type == "dir" and entries["link"].type == "symlink"
    assert entries["link"].link_target == "pkg/mod.py"
    assert entries["run.sh"].mode == 0o755
    assert files[digest] == str(f) and files[entries["run.sh"].digest] == str(src / "run.sh")
    assert [(kv.key, kv.value) for kv in spec.steps[5].env.vars] == [("MODE", "prod")]
    assert spec.steps[6].workdir == "/app"
    assert list(spec.steps[7].entrypoint.argv) == ["python3", "-m", "app"]
    # Names follow content: same spec, same name; a changed file, another.
    name = img.default_name()
    assert name == img.default_name() and name.startswith("sdk-")
    (src / "pkg" / "mod.py").write_text("X = 2\n")
    assert img.default_name() != name
    # Registry credentials are sent, but never name the image.
    a = Image.from_registry("reg.example/app:1", username="u", password="p1")
    b = Image.from_registry("reg.example/app:1", username="u", password="p2")
    assert a.default_name() == b.default_name()
    assert a.to_proto()[0].source.registry.password == "p1"
    assert Image.builtin().to_proto()[0].source.HasField("busybox")
    assert Image.from_name("mine").to_proto()[0].source.image == "mine"
    for bad in (lambda: Image.debian_slim("three"), lambda: Image.builtin("alpine"),
                lambda: Image.from_registry("has space"),
                lambda: base.add_local_file(tmp_path / "nope", "/x"),
                lambda: base.add_local_file(f, "relative"),
                lambda: base.add_local_dir(f, "/x"), lambda: base.workdir("rel"),
                lambda: base.pip_install(3)):
        with pytest.raises(InvalidArgumentError):
            bad()


class FakeImages:
    """A stand-in hutch.v1.Images (Build) and Sandboxes (Create) on a unix
    socket: checks the client's side of the Build protocol."""

    def __init__(self, sock, have=(), fail_step=None):
        self.have = set(have)        # digests the "daemon" already has
        self.fail_step = fail_step
        self.starts = []
        self.received = {}
        self.created = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ser = lambda m: m.SerializeToString()  # noqa: E731
        self.server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("hutch.v1.Images", {
                "Build": grpc.stream_stream_rpc_method_handler(
                    self.build, request_deserializer=ipb.BuildImageRequest.FromString,
                    response_serializer=ser)}),
            grpc.method_handlers_generic_handler("hutch.v1.Sandboxes", {
                "Create": grpc.unary_unary_rpc_method_handler(
                    self.create, request_deserializer=spb.CreateSandboxRequest.FromString,
                    response_serializer=ser)}),
        ))
        self.server.add_insecure_port("unix:" + sock)
        self.server.start()

    def build(self, requests, context):
        first = next(requests)
        start = first.start
        self.starts.append(start)
        want = []
        for st in start.spec.steps:
            for f in ([st.add_local_file.file] if st.HasField("add_local_file") else
                      list(st.add_local_dir.entries) if st.HasField("add_local_dir") else []):
                if f.digest and f.digest not in self.have and f.digest not in want:
                    want.append(f.digest)
        yield ipb.BuildImageEvent(need_files=ipb.NeedFiles(digests=want))
        bufs = {}
        for r in requests:
            kind = r.WhichOneof("msg")
            if kind == "file":
                assert len(r.file.data) <= 1 << 20
                bufs.setdefault(r.file.digest, bytearray()).extend(r.file.data)
                if r.file.last:
                    data = bytes(bufs[r.file.digest])
                    assert "sha256:" + hashlib.sha256(data).hexdigest() == r.file.digest
                    self.received[r.file.digest] = data
            elif kind == "files_done":
                break
        total = len(start.spec.steps) + 1
        for i in range(1, total + 1):
            yield ipb.BuildImageEvent(step=ipb.BuildStepEvent(
                index=i, total=total, description="step %d" % i,
                state=ipb.BUILD_STEP_STATE_RUNNING))
            if i == self.fail_step:
                yield ipb.BuildImageEvent(step=ipb.BuildStepEvent(
                    index=i, total=total, description="run_commands: false",
                    state=ipb.BUILD_STEP_STATE_FAILED, exit_code=1,
                    output_tail="it broke\n", error="exited with 1"))
                context.abort(grpc.StatusCode.ABORTED, "step %d failed" % i)
            yield ipb.BuildImageEvent(log=ipb.BuildLog(index=i, data=b"log %d\n" % i))
            yield ipb.BuildImageEvent(step=ipb.BuildStepEvent(
                index=i, total=total, description="step %d" % i,
                state=ipb.BUILD_STEP_STATE_BUILT))
        yield ipb.BuildImageEvent(done=ipb.Image(name=start.name, digest="sha256:" + "ab" * 32,
                                                 id="img-1", size_bytes=10))

    def create(self, req, context):
        self.created.append(req.spec)
        return spb.Sandbox(id="sb-fake", state=spb.SANDBOX_STATE_RUNNING, spec=req.spec)

    def stop(self):
        self.server.stop(0)


def test_build_protocol_uploads_what_the_daemon_lacks(tmp_path):
    src = _tree(tmp_path)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 5))
    sock = str(tmp_path / "fake.sock")
    have = "sha256:" + hashlib.sha256(b"X = 1\n").hexdigest()
    fake = FakeImages(sock, have=[have])
    try:
        c = SandboxClient(sock)
        img = (Image.debian_slim().add_local_file(big, "/data/big.bin")
               .add_local_dir(src, "/app").run_commands("make"))
        events = []
        built = img.build(c, log=events.append)
        assert built.name == img.default_name() and built.digest.startswith("sha256:")
        start = fake.starts[0]
        assert start.name == built.name and not start.no_cache
        # Only what the daemon asked for was sent, complete and intact.
        assert have not in fake.received
        assert fake.received["sha256:" + hashlib.sha256(big.read_bytes()).hexdigest()] == \
            big.read_bytes()
        assert b"#!/bin/sh\n" in fake.received.values()
        assert ("step", 1, 4, "step 1", "running") == events[0][:5]
        assert any(e.kind == "log" and e.data == b"log 2\n" for e in events)
        # A sandbox from an image that needs a build gets the built name.
        sb = c.create(image=img.env({"A": "b"}))
        assert fake.created[-1].image.startswith("sdk-") and sb.id == "sb-fake"
        assert fake.starts[-1].spec.steps[-1].env.vars[0].key == "A"
        # Built-in and stored images need no build.
        Container(image=Image.from_name("mine"), client=c).run()
        assert fake.created[-1].image == "mine" and len(fake.starts) == 2
        Container(image="busybox", client=c).run()
        assert fake.created[-1].image == "busybox"
        with pytest.raises(InvalidArgumentError):
            Image.builtin().build(c)
        Image.builtin().build(c, name="my-busybox", no_cache=True)
        assert fake.starts[-1].name == "my-busybox" and fake.starts[-1].no_cache
        c.close()
    finally:
        fake.stop()


def test_a_failed_step_is_an_image_build_error(tmp_path):
    sock = str(tmp_path / "fake.sock")
    fake = FakeImages(sock, fail_step=2)
    try:
        c = SandboxClient(sock)
        with pytest.raises(ImageBuildError) as e:
            Image.debian_slim().run_commands("false").build(c)
        err = e.value
        assert err.code == grpc.StatusCode.ABORTED and isinstance(err, hutch.HutchError)
        assert "step 2/2 (run_commands: false) failed: exited with 1" in str(err)
        assert err.exit_code == 1 and err.output_tail == "it broke\n"
        with pytest.raises(ImageBuildError):
            c.create(image=Image.debian_slim().run_commands("false"))
        assert fake.created == []
        c.close()
    finally:
        fake.stop()


def test_real_hutchd_images(client):
    # The built-in image works by name and as an Image.
    assert client.create(image="busybox").info.spec.image == "busybox"
    assert client.create(image=Image.builtin("busybox")).info.spec.image == "busybox"
    img = Image.builtin("busybox").run_commands("echo built > /built.txt")
    try:
        built = img.build(client)
    except CapabilityMissingError as e:
        # A hutchd without the images service: a clear error naming the
        # capability and carrying the server's message.
        assert e.capability == "images"
        assert "Images" in str(e) and "run_commands" in str(e)
        with pytest.raises(CapabilityMissingError) as e2:
            client.create(image=Image.debian_slim())
        assert "Image.debian_slim('3.11') needs an image build" in str(e2.value)
        assert len(client.list()) == 2, "no sandbox was made for it"
        return
    # A hutchd that builds images: the built image runs.
    assert built.name == img.default_name()
    sb = client.create(image=img)
    assert sb.exec("cat", "/built.txt").stdout_text == "built\n"
