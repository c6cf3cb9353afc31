"""Shared pieces of hutch's integration tests: a real hutchd in a private
temp directory, the hutch CLI against it, and stock grpcio stubs generated
from the .proto files at test time.

Every test starts its own daemon (own state dir, run dir and socket), so
tests run in parallel and alone.
"""
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

SOURCE_DIR = os.environ.get("HUTCH_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("HUTCH_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
BIN = os.path.join(BUILD_DIR, "bin")
HUTCHD = os.path.join(BIN, "hutchd")
HUTCH = os.path.join(BIN, "hutch")
PLUGIN_DIR = os.path.join(BUILD_DIR, "lib", "hutch", "plugins")
TEST_PLUGIN_DIR = os.path.join(BUILD_DIR, "tests", "plugins")


_PLUGINS_HEADER = re.compile(r"^[ \t]*\[[ \t]*plugins[ \t]*\][ \t]*(#.*)?$", re.M)


def defaults_off(config):
    """config, with hutchd's default network and identity plugins turned
    off unless its [plugins] names them.

    On its defaults hutchd loads net-egress (its nftables table, veths and
    resolver in hutchd's network namespace, an address pool) and
    identity-oidc (an HTTP listener on 127.0.0.1:7480): tests running side
    by side on one host would fight over those, so a test opts in by naming
    them, with settings of its own (tests/integration/test_egress.py,
    test_identity.py), or tests the defaults in namespaces of its own
    (test_defaults.py)."""
    try:
        plugins = tomllib.loads(config).get("plugins", {})
    except tomllib.TOMLDecodeError:
        return config  # a test of a broken file gets its file as written
    add = "".join(line for key, line in (("network", "network = []\n"),
                                         ("identity", 'identity = ""\n'))
                  if key not in plugins)
    if not add:
        return config
    m = _PLUGINS_HEADER.search(config)
    if m:
        return config[:m.end()] + "\n" + add.rstrip("\n") + config[m.end():]
    # At the end, so that the lines a test wrote keep their numbers.
    sep = "" if not config or config.endswith("\n") else "\n"
    return config + sep + "[plugins]\n" + add


class Daemon:
    """A hutchd of a test's own. config is the text of hutchd.toml; unless
    defaults=True, hutchd's default network and identity plugins are off
    where config does not name them (see defaults_off)."""

    def __init__(self, config="", args=(), start=True, env=None, defaults=False):
        self.dir = tempfile.mkdtemp(prefix="hutch-it-")
        self.state = os.path.join(self.dir, "state")
        self.run = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.run, "hutchd.sock")
        self.config = os.path.join(self.dir, "hutchd.toml")
        self.logpath = os.path.join(self.dir, "hutchd.log")
        with open(self.config, "w") as f:
            f.write(config if defaults else defaults_off(config))
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        if start:
            self.start()

    def command(self):
        return [HUTCHD, "-c", self.config, "--state-dir", self.state,
                "--run-dir", self.run] + self.args

    def start(self, wait=True, timeout=30):
        self.log_file = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hutchd exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hutchd did not come up:\n" + self.log())

    def log(self):
        try:
            with open(self.logpath, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cli(self, *args, input=None, check=True, timeout=120, env=None):
        e = dict(os.environ, HUTCH_SOCKET=self.sock)
        e.pop("HUTCH_ADDRESS", None)
        if env:
            e.update(env)
        r = subprocess.run([HUTCH] + list(args), input=input, capture_output=True,
                           timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise AssertionError("hutch %s failed (%d):\nstdout: %s\nstderr: %s\nlog:\n%s" % (
                " ".join(args), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace"), self.log()[-4000:]))
        return r

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("hutchd did not stop on SIGTERM:\n" + self.log()[-4000:])
        return self.proc.returncode if self.proc else None

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop_sandboxes(self, timeout=30):
        """Stops every sandbox of the socket's tenant and waits until none
        is live (a group being deleted may still be stopping replicas)."""
        deadline = time.time() + timeout
        while True:
            r = self.cli("--json", "sandbox", "ls", check=False)
            if r.returncode != 0:
                return
            live = [sb for sb in json.loads(r.stdout or b"{}").get("sandboxes", [])
                    if sb.get("state") not in ("SANDBOX_STATE_STOPPED", "SANDBOX_STATE_EXPIRED",
                                               "SANDBOX_STATE_FAILED", "STOPPED", "EXPIRED", "FAILED")]
            if not live or time.time() > deadline:
                return
            for sb in live:
                self.cli("sandbox", "stop", sb["id"], check=False)

    def cleanup(self):
        """Stops every sandbox, stops the daemon, removes the directory.
        A sanitizer report in hutchd's log (ASan/UBSan builds) fails the
        test here."""
        report = None
        try:
            if self.proc and self.proc.poll() is None:
                # Scaling groups first: their reconciler would replace the
                # replicas stopped below, and a hutchd that stops leaves its
                # sandboxes running (they are adopted at the next start).
                r = self.cli("--json", "group", "ls", check=False)
                if r.returncode == 0:
                    for g in json.loads(r.stdout or b"{}").get("groups", []):
                        self.cli("group", "rm", g["spec"]["name"], check=False)
                self.stop_sandboxes()
            self.stop()
            log = self.log()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in log:
                    report = log[log.index(marker) - 200 if log.index(marker) > 200 else 0:][:6000]
        finally:
            if getattr(self, "log_file", None):
                self.log_file.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        if report:
            raise AssertionError("sanitizer report from hutchd:\n" + report)


@contextlib.contextmanager
def daemon(config="", args=()):
    d = Daemon(config, args)
    try:
        yield d
    finally:
        d.cleanup()


_pb = None


def protos():
    """hutch.v1 message classes, generated with protoc into a temp dir."""
    global _pb
    if _pb:
        return _pb
    out = tempfile.mkdtemp(prefix="hutch-pb-")
    api = os.path.join(SOURCE_DIR, "core", "api")
    files = []
    for root, _, names in os.walk(os.path.join(api, "hutch")):
        files += [os.path.join(root, n) for n in names if n.endswith(".proto")]
    subprocess.run(["protoc", "--proto_path=" + api, "--python_out=" + out] + files, check=True)
    sys.path.insert(0, out)
    mods = {}
    for f in files:
        name = os.path.relpath(f, api)[:-len(".proto")].replace("/", ".") + "_pb2"
        mods[name.split(".")[-1][:-4]] = importlib.import_module(name)
    _pb = mods
    return mods


def unary(channel, path, request, response_class, timeout=60, metadata=None):
    """Calls one unary method with stock grpcio, no generated stubs needed."""
    fn = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=response_class.FromString)
    return fn(request, timeout=timeout, metadata=metadata)


def mounts_under(path):
    """(mount point, file system type) of the mounts at or below path."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4]
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                out.append((mp, fields[fields.index("-") + 1]))
    return out


def mountinfo_under(path):
    """Mount points at or below path (a leak check)."""
    return [mp for mp, _ in mounts_under(path)]
