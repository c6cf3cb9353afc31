#!/usr/bin/python3
"""grpc_python_interop: stock grpcio against grpc-echo-server (hutch_grpc).

Every call shape and the failure modes a user of the hutch API would notice,
over the unix socket and over TCP with TLS (a self-signed certificate made
here with the openssl CLI). Message classes come from `protoc --python_out`
run into a temporary directory; calls go through channel.unary_unary & co.,
so no grpc python plugin is needed.

usage: test_interop.py --server BIN --proto echo.proto [--protoc protoc]
"""
import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

API_KEY = "s3cret-key"
MD = [("authorization", "Bearer " + API_KEY)]
SVC = "/hutch.test.Echo/"
BIG = 64 << 20  # client-side message limits: don't let grpcio's 4 MiB default interfere


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def expect_error(fn, code, what):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, f"{what}: expected {code}, got {e.code()} ({e.details()!r})")
        return e
    raise Failure(f"{what}: expected {code}, call succeeded")


class Echo:
    def __init__(self, channel, pb):
        self.pb = pb
        ser = lambda m: m.SerializeToString()
        self.unary = channel.unary_unary(SVC + "Unary", ser, pb.EchoReply.FromString)
        self.server_stream = channel.unary_stream(SVC + "ServerStream", ser, pb.EchoReply.FromString)
        self.client_stream = channel.stream_unary(SVC + "ClientStream", ser, pb.Sum.FromString)
        self.bidi = channel.stream_stream(SVC + "Bidi", ser, pb.EchoReply.FromString)
        self.slow = channel.unary_unary(SVC + "Slow", ser, pb.EchoReply.FromString)
        self.fail = channel.unary_unary(SVC + "Fail", ser, pb.EchoReply.FromString)
        self.stats = channel.unary_unary(SVC + "GetStats", ser, pb.Stats.FromString)
        self.nope = channel.unary_unary(SVC + "NoSuchMethod", ser, pb.EchoReply.FromString)
        self.nope_svc = channel.unary_unary("/hutch.test.Nope/Unary", ser, pb.EchoReply.FromString)

    def get_stats(self):
        return self.stats(self.pb.StatsRequest(), timeout=5, metadata=MD)

    def wait_stats(self, pred, what, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            s = self.get_stats()
            if pred(s):
                return s
            if time.monotonic() > end:
                raise Failure(f"{what}: server stats never got there: {s}")
            time.sleep(0.05)


def test_unary(e, pb):
    r = e.unary(pb.EchoRequest(message="hello", payload=b"\x00\x01\xff"), timeout=5, metadata=MD)
    check(r.message == "hello" and r.payload == b"\x00\x01\xff", f"unary echo: {r}")
    # An empty request is a valid (all-default) message.
    r = e.unary(pb.EchoRequest(), timeout=5, metadata=MD)
    check(r.message == "" and r.payload == b"", f"empty unary: {r}")


def test_auth(e, pb):
    ex = expect_error(lambda: e.unary(pb.EchoRequest(message="x"), timeout=5),
                      grpc.StatusCode.UNAUTHENTICATED, "no API key")
    check("API key" in ex.details(), f"auth message: {ex.details()!r}")
    expect_error(lambda: e.unary(pb.EchoRequest(), timeout=5,
                                 metadata=[("authorization", "Bearer wrong")]),
                 grpc.StatusCode.UNAUTHENTICATED, "wrong API key")


def test_server_stream(e, pb):
    replies = list(e.server_stream(pb.EchoRequest(message="s", count=50, size=1000),
                                   timeout=10, metadata=MD))
    check(len(replies) == 50, f"server stream: {len(replies)} replies, want 50")
    for i, r in enumerate(replies):
        check(r.index == i and r.message == "s" and len(r.payload) == 1000,
              f"server stream reply {i}: index {r.index}, {len(r.payload)} bytes")
    # Zero replies: just the OK status.
    check(list(e.server_stream(pb.EchoRequest(count=0), timeout=5, metadata=MD)) == [],
          "empty server stream")


def test_client_stream(e, pb):
    r = e.client_stream(iter([pb.Num(value=v) for v in range(1, 101)]), timeout=10, metadata=MD)
    check(r.total == 5050 and r.count == 100, f"client stream sum: {r}")
    r = e.client_stream(iter([]), timeout=5, metadata=MD)
    check(r.total == 0 and r.count == 0, f"empty client stream: {r}")


def test_bidi(e, pb):
    # Strictly interleaved: the next request is only produced after the
    # previous reply arrived, which proves replies flow before half-close.
    q = queue.Queue()

    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    call = e.bidi(requests(), timeout=10, metadata=MD)
    for i in range(20):
        q.put(pb.EchoRequest(message=f"m{i}", payload=bytes([i]) * i))
        r = next(call)
        check(r.message == f"m{i}" and r.index == i and r.payload == bytes([i]) * i,
              f"bidi reply {i}: {r}")
    q.put(None)
    check(list(call) == [], "bidi: replies after half-close")
    check(call.code() == grpc.StatusCode.OK, f"bidi status {call.code()}")


def test_error_status(e, pb):
    for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                 grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL):
        for msg in ("plain", "ünïcødé ✓ 100% sure\nsecond line\ttab", "%41 is not A", ""):
            ex = expect_error(lambda: e.fail(pb.EchoRequest(status=code.value[0], message=msg),
                                             timeout=5, metadata=MD), code, f"Fail({code})")
            check(ex.details() == msg, f"status message: sent {msg!r}, got {ex.details()!r}")
    # Long messages are cut at a character boundary, not mid UTF-8 sequence.
    long_msg = "é" * 5000
    ex = expect_error(lambda: e.fail(pb.EchoRequest(status=3, message=long_msg), timeout=5,
                                     metadata=MD), grpc.StatusCode.INVALID_ARGUMENT, "long message")
    d = ex.details()
    check(0 < len(d) < len(long_msg) and set(d) == {"é"}, f"long status message: {len(d)} chars")


def test_deadline(e, pb):
    before = e.get_stats()
    t0 = time.monotonic()
    expect_error(lambda: e.slow(pb.EchoRequest(message="late", delay_ms=5000), timeout=0.3,
                                metadata=MD), grpc.StatusCode.DEADLINE_EXCEEDED, "Slow")
    check(time.monotonic() - t0 < 3, "deadline took too long")
    # The server must have stopped the work (on_cancel), not kept the call.
    e.wait_stats(lambda s: s.cancelled > before.cancelled and s.live_calls == 0,
                 "deadline cancel")


def test_cancel(e, pb):
    before = e.get_stats()
    call = e.server_stream(pb.EchoRequest(message="inf", count=-1, delay_ms=10), timeout=30,
                           metadata=MD)
    got = [next(call).index for _ in range(3)]
    check(got == [0, 1, 2], f"cancel: first replies {got}")
    call.cancel()
    check(call.code() == grpc.StatusCode.CANCELLED, f"cancelled call code {call.code()}")
    e.wait_stats(lambda s: s.cancelled > before.cancelled and s.live_calls == 0,
                 "mid-stream cancel")


def test_unimplemented(e, pb):
    ex = expect_error(lambda: e.nope(pb.EchoRequest(), timeout=5, metadata=MD),
                      grpc.StatusCode.UNIMPLEMENTED, "unknown method")
    check("NoSuchMethod" in ex.details(), f"unimplemented message {ex.details()!r}")
    expect_error(lambda: e.nope_svc(pb.EchoRequest(), timeout=5, metadata=MD),
                 grpc.StatusCode.UNIMPLEMENTED, "unknown service")


def test_big_message(e, pb):
    payload = os.urandom(10 << 20)
    r = e.unary(pb.EchoRequest(message="big", payload=payload), timeout=30, metadata=MD)
    check(r.payload == payload, "10 MiB echo differs")
    # Over the server's 16 MiB limit: refused, and the server stays fine.
    ex = expect_error(lambda: e.unary(pb.EchoRequest(payload=b"y" * (17 << 20)), timeout=30,
                                      metadata=MD),
                      grpc.StatusCode.RESOURCE_EXHAUSTED, "17 MiB request")
    check("larger than max" in ex.details(), f"limit message {ex.details()!r}")
    r = e.unary(pb.EchoRequest(message="after"), timeout=5, metadata=MD)
    check(r.message == "after", "unary after oversized request")


def test_concurrent(e, pb):
    t0 = time.monotonic()
    futs = [e.slow.future(pb.EchoRequest(message=f"c{i}", delay_ms=300), timeout=20, metadata=MD)
            for i in range(100)]
    got = sorted(int(f.result().message[1:]) for f in futs)
    check(got == list(range(100)), "100 concurrent calls: wrong replies")
    # Serially this would take 30 s.
    check(time.monotonic() - t0 < 10, f"100 concurrent calls took {time.monotonic() - t0:.1f}s")


TESTS = [test_unary, test_auth, test_server_stream, test_client_stream, test_bidi,
         test_error_status, test_deadline, test_cancel, test_unimplemented,
         test_big_message, test_concurrent]


def make_cert(d):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def start_server(binary, args):
    p = subprocess.Popen([binary] + args, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("grpc-echo-server:"):
        p.kill()
        raise Failure(f"server did not start: {line!r}")
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    return p, int(fields["tcp"])


def stop_server(p):
    check(p.poll() is None, f"server died during the test (exit {p.returncode})")
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Failure("server did not shut down on SIGTERM")
    check(rc == 0, f"server exit status {rc} after SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--protoc", default="protoc")
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="grpc-interop-")
    server = None
    failed = 0
    try:
        subprocess.run([a.protoc, "--python_out=" + d, "-I", os.path.dirname(a.proto),
                        a.proto], check=True)
        sys.path.insert(0, d)
        import echo_pb2 as pb

        cert, key = make_cert(d)
        sock = os.path.join(d, "echo.sock")
        server, port = start_server(a.server, ["--unix", sock, "--tcp", "0", "--cert", cert,
                                               "--key", key, "--api-key", API_KEY])
        opts = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]
        with open(cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channels = {
            "unix": grpc.insecure_channel("unix:" + sock, options=opts),
            "tls": grpc.secure_channel(f"localhost:{port}", creds, options=opts),
        }
        for name, ch in channels.items():
            e = Echo(ch, pb)
            for t in TESTS:
                try:
                    t(e, pb)
                    print(f"ok   {name} {t.__name__}", flush=True)
                except (Failure, grpc.RpcError) as ex:
                    failed += 1
                    print(f"FAIL {name} {t.__name__}: {ex}", flush=True)
            ch.close()
        stop_server(server)
        server = None
        print("ok   server exited cleanly")
    except Failure as ex:
        failed += 1
        print(f"FAIL {ex}")
    finally:
        if server:
            server.kill()
        shutil.rmtree(d, ignore_errors=True)
    print(f"{failed} failed" if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
