"""Python SDK tests: every test runs its own hutchd (tests/integration's
hutchtest.Daemon) and drives it through the `hutch` package."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HUTCH_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "sdk", "python"))

import pytest  # noqa: E402

import hutchtest  # noqa: E402


@pytest.fixture
def daemon():
    """A private hutchd."""
    d = hutchtest.Daemon()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def client(daemon):
    """A SandboxClient on the private hutchd's socket; stops what it made."""
    import hutch
    with hutch.SandboxClient(daemon.sock) as c:
        yield c


@pytest.fixture
def default_env(daemon, monkeypatch):
    """The environment points at the private hutchd, and the process-wide
    client is made from it (for Container & co. without client=)."""
    import hutch
    monkeypatch.setenv("HUTCH_SOCKET", daemon.sock)
    monkeypatch.delenv("HUTCH_ADDRESS", raising=False)
    hutch.set_default_client(None)
    yield daemon
    c = hutch.sandbox._default
    hutch.set_default_client(None)
    if c is not None:
        c.close()
