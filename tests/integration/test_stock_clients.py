"""hutchd as clients nobody here wrote see it: stock grpcio with its default
options (4 MiB receive limit), health probes, server reflection."""
import hashlib
import os
import subprocess

import grpc

from hutchtest import BUILD_DIR, SOURCE_DIR, daemon, protos, unary

STOCK_LIMIT = 4 * 1024 * 1024  # grpcio's, grpc-js's and grpc-go's default receive limit


def _create(d):
    return d.cli("sandbox", "create").stdout.decode().strip()


def _run_stream(ch, pb, sid, argv, sizes=None):
    """Run through a stock server-streaming stub; sizes gets each message's
    size on the wire."""
    def parse(data):
        if sizes is not None:
            sizes.append(len(data))
        return pb["sandbox"].RunResponse.FromString(data)
    fn = ch.unary_stream("/hutch.v1.Sandboxes/Run",
                         request_serializer=lambda m: m.SerializeToString(),
                         response_deserializer=parse)
    req = pb["sandbox"].RunRequest(start=pb["sandbox"].ExecStart(sandbox_id=sid, argv=argv))
    return list(fn(req, timeout=240))


def test_run_text_keeps_nuls_and_replaces_invalid_utf8():
    pb = protos()
    with daemon() as d:
        sid = _create(d)
        raw = b"a\x00b\xff\xfec\xe2\x82 \xf0\x9f\x98\x80 end\x00"
        script = "printf '%s'" % "".join("\\%03o" % c for c in raw)
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            # A unary stub still works: short output is one message.
            r = unary(ch, "/hutch.v1.Sandboxes/Run", pb["sandbox"].RunRequest(
                start=pb["sandbox"].ExecStart(
                    sandbox_id=sid, argv=["sh", "-c", script + "; " + script + " >&2"])),
                pb["sandbox"].RunResponse)
        assert r.stdout == raw and r.stderr == raw
        want = raw.decode("utf-8", "replace")
        assert want.count("\ufffd") == 3 and "\x00" in want
        assert r.stdout_text == want, "nothing cut at the NUL, U+FFFD for what is not UTF-8"
        assert r.stderr_text == want
        # The SDK's ExecResult says the same.
        env = dict(os.environ, HUTCH_SOCKET=d.sock, PYTHONPATH=os.path.join(
            SOURCE_DIR, "sdk", "python"))
        env.pop("HUTCH_ADDRESS", None)
        code = ("import hutch, sys\n"
                "sb = hutch.SandboxClient().get(sys.argv[1])\n"
                "r = sb.exec('sh', '-c', sys.argv[2])\n"
                "assert r.stdout == bytes.fromhex(sys.argv[3]), r.stdout\n"
                "assert r.stdout_text == bytes.fromhex(sys.argv[3]).decode('utf-8', 'replace')\n")
        p = subprocess.run(["/usr/bin/python3", "-c", code, sid, script, raw.hex()],
                           capture_output=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr.decode()


def test_stock_grpcio_gets_10_mb_of_run_output():
    pb = protos()
    with daemon() as d:
        sid = _create(d)
        # Random bytes: the worst case for the _text copies (most bytes are
        # not UTF-8, and a U+FFFD takes three).
        prog = ("head -c 10000000 /dev/urandom > /tmp/r && head -c 3000000 /dev/urandom > /tmp/e"
                " && cat /tmp/r && cat /tmp/e >&2 && sha256sum /tmp/r /tmp/e > /tmp/sums")
        sizes = []
        with grpc.insecure_channel("unix:" + d.sock) as ch:  # default options
            rs = _run_stream(ch, pb, sid, ["sh", "-c", prog], sizes)
            sums = _run_stream(ch, pb, sid, ["cat", "/tmp/sums"])[-1].stdout_text.split()
        out = b"".join(r.stdout for r in rs)
        err = b"".join(r.stderr for r in rs)
        assert rs[-1].exit_code == 0 and not rs[-1].truncated
        assert len(out) == 10000000 and hashlib.sha256(out).hexdigest() == sums[0]
        assert len(err) == 3000000 and hashlib.sha256(err).hexdigest() == sums[2]
        assert "".join(r.stdout_text for r in rs) == out.decode("utf-8", "replace")
        assert "".join(r.stderr_text for r in rs) == err.decode("utf-8", "replace")
        assert len(rs) > 1 and max(sizes) < STOCK_LIMIT, sizes

        # The SDK and the C client get all of it too.
        env = dict(os.environ, HUTCH_SOCKET=d.sock, PYTHONPATH=os.path.join(
            SOURCE_DIR, "sdk", "python"))
        env.pop("HUTCH_ADDRESS", None)
        code = ("import hashlib, hutch, sys\n"
                "r = hutch.SandboxClient().get(sys.argv[1]).exec('cat', '/tmp/r').check()\n"
                "print(hashlib.sha256(r.stdout).hexdigest(), len(r.stdout_text))\n")
        p = subprocess.run(["/usr/bin/python3", "-c", code, sid], capture_output=True, env=env,
                           timeout=240)
        assert p.returncode == 0, p.stderr.decode()
        digest, n_text = p.stdout.decode().split()
        assert digest == sums[0]
        assert int(n_text) == len(out.decode("utf-8", "replace"))
        hello = os.path.join(BUILD_DIR, "sdk", "c", "examples", "hutch-example-hello")
        p = subprocess.run([hello, "sh", "-c", "yes 0123456789abcdef | head -c 10000000"],
                           capture_output=True, env=env, timeout=240)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        first, body = p.stdout.split(b"\n", 1)
        assert first.startswith(b"sandbox ")  # the example names its sandbox first
        assert body == b"0123456789abcdef\n" * 588235 + b"01234" + b"exit code 0\n"


_meta = None


def meta_protos():
    """health_pb2 and reflection_pb2 (v1alpha, v1), generated with protoc from
    hutch's copies of the public protocol definitions, loaded under private
    module names (a top-level `grpc` package would shadow grpcio)."""
    global _meta
    if _meta:
        return _meta
    import importlib.util
    import tempfile
    root = os.path.join(SOURCE_DIR, "core", "grpc", "proto")
    out = tempfile.mkdtemp(prefix="hutch-meta-pb-")
    names = {"health": "grpc/health/v1/health.proto",
             "v1alpha": "grpc/reflection/v1alpha/reflection.proto",
             "v1": "grpc/reflection/v1/reflection.proto"}
    subprocess.run(["protoc", "--proto_path=" + root, "--python_out=" + out] +
                   [os.path.join(root, p) for p in names.values()], check=True)
    mods = {}
    for key, p in names.items():
        path = os.path.join(out, p[:-len(".proto")] + "_pb2.py")
        spec = importlib.util.spec_from_file_location("hutch_meta_%s_pb2" % key, path)
        mods[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[key])
    _meta = mods
    return mods


def test_grpc_health_check_and_watch():
    h = meta_protos()["health"]
    status = h.HealthCheckResponse
    with daemon() as d:
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            for service in ("", "hutch.v1.Sandboxes", "hutch.v1.Daemon", "grpc.health.v1.Health"):
                r = unary(ch, "/grpc.health.v1.Health/Check",
                          h.HealthCheckRequest(service=service), status)
                assert r.status == status.SERVING, service
            try:
                unary(ch, "/grpc.health.v1.Health/Check",
                      h.HealthCheckRequest(service="no.such.Service"), status)
                raise AssertionError("an unknown service is NOT_FOUND")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
            watch = ch.unary_stream("/grpc.health.v1.Health/Watch",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=status.FromString)
            for service, want in (("", status.SERVING), ("no.such.Service", status.SERVICE_UNKNOWN)):
                call = watch(h.HealthCheckRequest(service=service), timeout=30)
                assert next(call).status == want
                # The stream stays open for later changes until the client goes.
                call.cancel()
        # A watcher does not hold up the daemon's shutdown.
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            call = ch.unary_stream("/grpc.health.v1.Health/Watch",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=status.FromString)(
                h.HealthCheckRequest(), timeout=60)
            assert next(call).status == status.SERVING
            assert d.stop(timeout=20) == 0
            try:
                next(call)
                raise AssertionError("the stream ends with the daemon")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE


def _reflect(ch, mod, version, requests):
    fn = ch.stream_stream("/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
                          request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=mod.ServerReflectionResponse.FromString)
    return list(fn(iter(requests), timeout=30))


def test_server_reflection_lists_services_and_serves_usable_schemas():
    from google.protobuf import descriptor_pb2, descriptor_pool
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4
        from google.protobuf.message_factory import MessageFactory

        def GetMessageClass(desc):
            return MessageFactory(desc.file.pool).GetPrototype(desc)
    mods = meta_protos()
    with daemon() as d:
        sid = _create(d)
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            for version in ("v1alpha", "v1"):
                m = mods[version]
                Req = m.ServerReflectionRequest
                rs = _reflect(ch, m, version, [
                    Req(host="h", list_services=""),
                    Req(file_containing_symbol="hutch.v1.Sandboxes"),
                    Req(file_by_filename="hutch/v1/image.proto"),
                    Req(file_containing_symbol="hutch.v1.Sandboxes.Run"),
                    Req(file_containing_symbol="grpc.health.v1.HealthCheckResponse.ServingStatus"),
                    Req(file_containing_symbol="hutch.v1.NoSuchThing"),
                    Req(all_extension_numbers_of_type="hutch.v1.Sandbox"),
                ])
                assert len(rs) == 7
                assert rs[0].valid_host == "h" and rs[0].original_request.host == "h"
                names = {s.name for s in rs[0].list_services_response.service}
                assert {"hutch.v1.Sandboxes", "hutch.v1.Daemon", "hutch.v1.Images",
                        "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                        "grpc.reflection.v1.ServerReflection"} <= names, names

                def files(r):
                    out = []
                    for raw in r.file_descriptor_response.file_descriptor_proto:
                        f = descriptor_pb2.FileDescriptorProto()
                        f.ParseFromString(raw)
                        out.append(f)
                    return out
                sandbox = files(rs[1])
                assert sandbox[0].name == "hutch/v1/sandbox.proto"
                run = [mm for s in sandbox[0].service if s.name == "Sandboxes"
                       for mm in s.method if mm.name == "Run"][0]
                assert run.server_streaming and not run.client_streaming
                image = files(rs[2])
                assert [f.name for f in image][:1] == ["hutch/v1/image.proto"]
                assert "hutch/v1/sandbox.proto" in [f.name for f in image], "imports come along"
                assert files(rs[3])[0].name == "hutch/v1/sandbox.proto"
                assert files(rs[4])[0].name == "grpc/health/v1/health.proto"
                assert rs[5].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
                assert rs[6].all_extension_numbers_response.base_type_name == "hutch.v1.Sandbox"

                # What grpcurl does: build the schema from the answers alone
                # and call a method with it.
                pool = descriptor_pool.DescriptorPool()
                for f in reversed(image):
                    pool.Add(f)
                for f in reversed(sandbox):
                    if f.name != "hutch/v1/sandbox.proto":
                        pool.Add(f)
                RunRequest = GetMessageClass(pool.FindMessageTypeByName("hutch.v1.RunRequest"))
                RunResponse = GetMessageClass(pool.FindMessageTypeByName("hutch.v1.RunResponse"))
                req = RunRequest()
                req.start.sandbox_id = sid
                req.start.argv.extend(["echo", "reflected"])
                out = list(ch.unary_stream("/hutch.v1.Sandboxes/Run",
                                           request_serializer=lambda x: x.SerializeToString(),
                                           response_deserializer=RunResponse.FromString)(
                    req, timeout=60))
                assert out[-1].stdout_text == "reflected\n"
