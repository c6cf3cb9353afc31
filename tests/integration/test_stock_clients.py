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
