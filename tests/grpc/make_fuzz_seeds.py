#!/usr/bin/python3
"""Writes the seed corpus of tests/fuzz/fuzz_grpc_frames.c.

Each seed is one mode byte (see the harness) followed by what a client
sends after the connection preface: valid gRPC sessions for every method
shape, plus the malformed cases of test_malformed.c, so that the fuzzer
starts from inputs that reach deep into the code.

usage: make_fuzz_seeds.py OUTDIR
"""
import os
import struct
import sys

DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED = 1, 1, 4, 8


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7fffffff) + payload


def hpack_int(v):
    if v < 127:
        return bytes([v])
    out = [127]
    v -= 127
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def block(headers):
    out = b""
    for n, v in headers:
        n, v = n.encode(), v.encode()
        out += b"\x00" + hpack_int(len(n)) + n + hpack_int(len(v)) + v
    return out


def request(sid, path, extra=(), end=False):
    h = [(":method", "POST"), (":scheme", "http"), (":path", path),
         (":authority", "localhost"), ("content-type", "application/grpc"),
         ("te", "trailers")] + list(extra)
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid, block(h))


def varint(v):
    out = b""
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_string(field, s):
    s = s.encode() if isinstance(s, str) else s
    return varint(field << 3 | 2) + varint(len(s)) + s


def pb_int(field, v):
    return varint(field << 3) + varint(v & 0xffffffffffffffff)


def echo_request(message="hi", count=0, status=0, payload=b""):
    out = pb_string(1, message)
    if payload:
        out += pb_string(2, payload)
    if count:
        out += pb_int(3, count)
    if status:
        out += pb_int(5, status)
    return out


def msg(pb, flag=0):
    return bytes([flag]) + struct.pack(">I", len(pb)) + pb


def data(sid, payload, end=False):
    return frame(DATA, END_STREAM if end else 0, sid, payload)


SETTINGS_EMPTY = frame(SETTINGS, 0, 0)
SVC = "/hutch.test.Echo/"


def seeds():
    s = {}
    s["unary"] = SETTINGS_EMPTY + request(1, SVC + "Unary") + \
        data(1, msg(echo_request("hello")), True)
    s["unary_status"] = SETTINGS_EMPTY + request(1, SVC + "Unary") + \
        data(1, msg(echo_request("nope ✗", status=5)), True)
    s["server_stream"] = SETTINGS_EMPTY + request(1, SVC + "ServerStream",
                                                  [("grpc-timeout", "5S")]) + \
        data(1, msg(echo_request("s", count=5)), True) + frame(SETTINGS, ACK, 0)
    nums = b"".join(msg(pb_int(1, v) + pb_string(2, b"p" * v)) for v in range(1, 9))
    s["client_stream_split"] = SETTINGS_EMPTY + request(1, SVC + "ClientStream") + \
        b"".join(data(1, nums[i:i + 7]) for i in range(0, len(nums), 7)) + data(1, b"", True)
    bidi = b"".join(msg(echo_request(f"m{i}", payload=b"x" * 40)) for i in range(6))
    s["bidi"] = SETTINGS_EMPTY + request(1, SVC + "Bidi") + data(1, bidi) + \
        frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1000)) + \
        frame(PING, 0, 0, b"12345678") + data(1, msg(echo_request("abort", status=99)), True)
    s["two_streams_rst"] = SETTINGS_EMPTY + request(1, SVC + "Bidi") + request(3, SVC + "Unary") + \
        data(1, msg(echo_request("a"))) + frame(RST, 0, 1, struct.pack(">I", 8)) + \
        data(3, msg(echo_request("b")), True) + frame(GOAWAY, 0, 0, struct.pack(">II", 3, 0))
    s["deadline_0"] = SETTINGS_EMPTY + request(1, SVC + "Bidi", [("grpc-timeout", "0m")]) + \
        data(1, msg(echo_request("late")))
    s["paused_sum"] = SETTINGS_EMPTY + request(1, SVC + "ClientStream") + \
        data(1, msg(pb_int(1, 7)) + msg(pb_int(1, 8)), True)
    padded = bytes([4]) + msg(echo_request("pad")) + b"\0" * 4
    s["padded_priority"] = SETTINGS_EMPTY + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16)) + \
        request(1, SVC + "Unary") + frame(DATA, PADDED | END_STREAM, 1, padded)
    hb = block([(":method", "POST"), (":scheme", "http"), (":path", SVC + "Unary"),
                (":authority", "x"), ("content-type", "application/grpc"),
                ("x-long", "v" * 300)])
    s["continuation"] = SETTINGS_EMPTY + frame(HEADERS, 0, 1, hb[:50]) + \
        frame(CONTINUATION, 0, 1, hb[50:200]) + frame(CONTINUATION, END_HEADERS, 1, hb[200:]) + \
        data(1, msg(echo_request("c")), True)
    s["denied"] = SETTINGS_EMPTY + request(1, SVC + "Unary", [("authorization", "deny")]) + \
        data(1, msg(echo_request()), True)
    s["compressed"] = SETTINGS_EMPTY + request(1, SVC + "Unary", [("grpc-encoding", "gzip")]) + \
        data(1, msg(echo_request(), flag=1), True) + request(3, SVC + "Unary") + \
        data(3, msg(echo_request(), flag=1), True)
    s["bad_messages"] = SETTINGS_EMPTY + request(1, SVC + "Unary") + \
        data(1, b"\0\0\0", True) + request(3, SVC + "Unary") + \
        data(3, msg(b"\xff\xff\xff"), True) + request(5, SVC + "Unary") + \
        data(5, b"\0\x7f\xff\xff\xff" + b"x" * 10) + request(7, SVC + "Unary", end=True)
    s["not_grpc"] = SETTINGS_EMPTY + \
        frame(HEADERS, END_HEADERS | END_STREAM, 1,
              block([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                     (":authority", "x")])) + \
        frame(HEADERS, END_HEADERS | END_STREAM, 3,
              block([(":method", "POST"), (":scheme", "http"), (":path", SVC + "Unary"),
                     (":authority", "x"), ("content-type", "text/plain")])) + \
        request(5, "/no.Such/Method", end=True) + \
        request(7, SVC + "Unary", [("grpc-timeout", "soon")], end=True)
    return s


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, body in sorted(seeds().items()):
        # Mode 1: preface added by the harness, everything fed at once;
        # mode 23: in 5-byte chunks, ending with a server-side terminate.
        for mode in (1, 1 | 2 | 5 << 2):
            with open(os.path.join(out, f"{name}-{mode}"), "wb") as f:
                f.write(bytes([mode]) + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
