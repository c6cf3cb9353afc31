"""Test fixture for hutch_proxy: a real upstream HTTP/1.1 server on a
loopback ephemeral port (threads, raw sockets through http.server's request
parsing, no name lookups) and proxy_test_server in front of it.

The upstream's paths:
  /echo           JSON of what it received (method, path, headers, body
                  length and sha256, connection number)
  /chunked        a chunked response in three pieces
  /sse            text/event-stream: three events 300 ms apart
  /slow           answers after 3 s
  /big?n=N        N bytes (Content-Length), written as fast as it can
  /sink           reads the body as it comes, answers its length and sha256;
                  ?stall=S first waits S seconds (a slow upstream)
  /stall          a 100000-byte response that stops after 1000 bytes (and
                  stays silent for 5 s)
  /close          answers with keep-alive, then closes the connection
  /ws             WebSocket handshake, then echoes frames
  /secret         sets X-Upstream-Secret

Upstream(tls=(cert, key)) speaks TLS and records the SNI names it was sent
(sni_seen).
"""
import base64
import hashlib
import json
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs


class Upstream:
    def __init__(self, tls=None):
        self.connections = 0
        self.sni_seen = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with outer.lock:
                    outer.connections += 1
                    self.conn_no = outer.connections

            def log_message(self, *a):
                pass

            def read_body(self, sink=None):
                h = hashlib.sha256()
                n = 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        left = size
                        while left:
                            d = self.rfile.read(min(left, 65536))
                            h.update(d)
                            n += len(d)
                            left -= len(d)
                        self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length", "0"))
                    while left:
                        d = self.rfile.read(min(left, 65536))
                        if not d:
                            break
                        h.update(d)
                        n += len(d)
                        left -= len(d)
                return n, h.hexdigest()

            def reply(self, status, body, ctype="application/json", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_any(self):
                u = urlparse(self.path)
                p = u.path
                if p == "/ws":
                    return self.websocket()
                stall = float(parse_qs(u.query).get("stall", ["0"])[0])
                if stall:
                    time.sleep(stall)
                n, digest = self.read_body()
                if p == "/stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"s" * 1000)
                    self.wfile.flush()
                    time.sleep(5)
                    self.close_connection = True
                    return
                if p == "/chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (b"one,", b"two,", b"three"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if p == "/sse":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(3):
                        ev = b"data: event %d\n\n" % i
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                        self.wfile.flush()
                        time.sleep(0.3)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if p == "/slow":
                    time.sleep(3)
                    return self.reply(200, b"slow\n", "text/plain")
                if p == "/big":
                    total = int(parse_qs(u.query)["n"][0])
                    self.send_response(200)
                    self.send_header("Content-Length", str(total))
                    self.end_headers()
                    block = b"x" * 65536
                    left = total
                    while left:
                        k = min(left, len(block))
                        self.wfile.write(block[:k])
                        left -= k
                    return
                if p == "/close":
                    self.reply(200, b"closing\n", "text/plain")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                extra = [("X-Upstream-Secret", "s3cr3t")] if p == "/secret" else []
                body = json.dumps({
                    "method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "header_list": [[k, v] for k, v in self.headers.items()],
                    "body_len": n, "body_sha256": digest, "conn": self.conn_no,
                }).encode()
                self.reply(200, body, extra=extra)

            def websocket(self):
                key = self.headers.get("Sec-WebSocket-Key", "")
                acc = base64.b64encode(hashlib.sha1(
                    (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", acc)
                self.end_headers()
                self.wfile.flush()
                while True:
                    frame = ws_read(self.rfile)
                    if frame is None or frame[0] == 8:
                        break
                    self.wfile.write(ws_frame(frame[0], frame[1], mask=False))
                    self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256  # bursts of h2 streams open many

        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])

            def on_sni(sock, name, c):
                with outer.lock:
                    outer.sni_seen.append(name)
            ctx.sni_callback = on_sni

            class TLSServer(Server):
                def get_request(self):
                    s, addr = super().get_request()
                    # The handshake happens in the handler's thread (a
                    # failing one must not stop the accept loop).
                    return ctx.wrap_socket(s, server_side=True,
                                           do_handshake_on_connect=False), addr

                def finish_request(self, request, client_address):
                    try:
                        request.do_handshake()
                    except (ssl.SSLError, OSError):
                        return
                    super().finish_request(request, client_address)
            Server = TLSServer  # noqa: N806
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def ws_frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def ws_read(f):
    h = f.read(2)
    if len(h) < 2:
        return None
    opcode = h[0] & 0x0F
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(f.read(2), "big")
    elif n == 127:
        n = int.from_bytes(f.read(8), "big")
    key = f.read(4) if h[1] & 0x80 else None
    data = f.read(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return opcode, data


class Proxy:
    def __init__(self, server, upstream, *args, log=None):
        cmd = [server, "--upstream", upstream] + list(args)
        if log:
            cmd += ["--log", log]
        # Under AddressSanitizer, freed memory waits in a quarantine (256 MiB
        # by default) instead of being reused, so the memory cases would
        # measure the quarantine, not the proxy: reuse it at once. Ignored
        # by a build without ASan.
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = dict(os.environ, ASAN_OPTIONS=(asan + ":" if asan else "") + "quarantine_size_mb=0")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError("proxy did not start: %r" % line)
        self.port = int(line.split()[1])

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        """SIGTERM: the listener closes everything; a clean exit (and, under
        LSan, no leak) is part of every test."""
        self.proc.terminate()
        rc = self.proc.wait(timeout=20)
        if rc != 0:
            raise AssertionError("proxy exited with %d" % rc)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def raw(port, data, timeout=5.0, read_until_close=True):
    """Sends data on a fresh connection; returns what comes back until the
    proxy closes the connection (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
            if not read_until_close:
                break
    except socket.timeout:
        pass
    s.close()
    return out
