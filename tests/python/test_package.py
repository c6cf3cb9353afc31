"""The package itself: generated modules match the .proto files, it
installs offline with Debian's pip, the resource-string parsing, and the
issue's example program (examples/hello.py) against a real hutchd."""
import os
import shutil
import subprocess
import sys

import pytest

import hutch
from hutch import InvalidArgumentError
from hutch import _units

SOURCE_DIR = os.environ.get("HUTCH_SOURCE_DIR", os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..")))
SDK = os.path.join(SOURCE_DIR, "sdk", "python")


def test_generated_modules_match_the_proto_files():
    r = subprocess.run([os.path.join(SOURCE_DIR, "scripts", "gen_python_proto.sh"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, "stale: run scripts/gen_python_proto.sh\n" + r.stderr
    # Every service of the .proto files is reachable through the package.
    import hutch._proto as p
    names = sorted(n[:-7] for n in os.listdir(os.path.dirname(p.__file__)) if n.endswith("_pb2.py"))
    protos = sorted(n[:-6] for n in os.listdir(os.path.join(SOURCE_DIR, "core", "api", "hutch", "v1"))
                    if n.endswith(".proto"))
    assert names == protos
    for n in names:
        __import__("hutch._proto.%s_pb2" % n)


def test_installs_offline_and_works_outside_the_tree(tmp_path, daemon):
    venv = tmp_path / "venv"
    # Debian's pip (python3-pip) through the venv's python: no ensurepip needed.
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, capture_output=True)
    # From a copy: setuptools builds in the source directory.
    src = tmp_path / "src"
    shutil.copytree(SDK, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index",
                        "--no-build-isolation",
                        "-q", str(src)], capture_output=True, text=True,
                       env=dict(os.environ, PIP_NO_CACHE_DIR="1", PYTHONPATH=""))
    assert r.returncode == 0, r.stdout + r.stderr
    prog = ("import hutch, os; assert 'site-packages' in hutch.__file__, hutch.__file__; "
            "import hutch._proto.sandbox_pb2; "
            "sb = hutch.SandboxClient().create(); "
            "print(sb.exec('echo', 'installed').stdout_text, end=''); sb.stop()")
    env = dict(os.environ, HUTCH_SOCKET=daemon.sock)
    env.pop("PYTHONPATH", None)
    env.pop("HUTCH_ADDRESS", None)
    r = subprocess.run([str(venv / "bin" / "python"), "-c", prog], capture_output=True, text=True,
                       cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "installed\n"
    assert os.path.exists(os.path.join(
        subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import hutch, os; print(os.path.dirname(hutch.__file__))"],
                       capture_output=True, text=True, cwd=str(tmp_path), env=env).stdout.strip(),
        "py.typed"))


def test_resource_strings():
    assert _units.cpu_millis("1") == 1000 and _units.cpu_millis("0.5") == 500
    assert _units.cpu_millis("250m") == 250 and _units.cpu_millis(2) == 2000
    assert _units.cpu_millis(0.25) == 250 and _units.cpu_millis(None) == 0
    assert _units.memory_bytes("512Mi") == 512 << 20 and _units.memory_bytes("2Gi") == 2 << 30
    assert _units.memory_bytes("1G") == 10 ** 9 and _units.memory_bytes("100M") == 10 ** 8
    assert _units.memory_bytes(1024) == 1 << 30, "a bare number is MiB"
    assert _units.memory_bytes("1.5Gi") == 3 << 29 and _units.memory_bytes("64KiB") == 64 << 10
    assert _units.seconds("1h") == 3600 and _units.seconds("30m") == 1800
    assert _units.seconds("1h30m") == 5400 and _units.seconds("45s") == 45
    assert _units.seconds("500ms") == 0.5 and _units.seconds(90) == 90
    assert _units.seconds("90") == 90 and _units.seconds("2d") == 172800
    assert _units.whole_seconds("1.5s") == 2 and _units.millis("1.5s") == 1500
    for fn, bad in [(_units.cpu_millis, "one"), (_units.cpu_millis, "-1"), (_units.cpu_millis, 0),
                    (_units.cpu_millis, True), (_units.memory_bytes, "2Gb!"),
                    (_units.memory_bytes, "lots"), (_units.memory_bytes, -5),
                    (_units.seconds, "soon"), (_units.seconds, "1h junk"), (_units.seconds, 0),
                    (_units.seconds, "-5s")]:
        with pytest.raises(InvalidArgumentError):
            fn(bad)
