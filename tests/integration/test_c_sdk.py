"""The C client library's examples (sdk/c/examples), run against a real
hutchd: what docs/c-sdk.md shows them doing is what they do."""
import os
import subprocess

from hutchtest import BUILD_DIR, daemon

EX = os.path.join(BUILD_DIR, "sdk", "c", "examples")


def run(d, name, *args, input=None, check=True):
    env = dict(os.environ, HUTCH_SOCKET=d.sock)
    env.pop("HUTCH_ADDRESS", None)
    r = subprocess.run([os.path.join(EX, "hutch-example-" + name), *args], input=input,
                       capture_output=True, env=env, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def test_hello_creates_runs_and_removes():
    with daemon() as d:
        r = run(d, "hello", "sh", "-c", "echo from C; echo oops >&2; exit 3", check=False)
        assert r.returncode == 3, r.stderr
        out = r.stdout.decode()
        assert "from C\n" in out and "exit code 3" in out and out.startswith("sandbox sb-")
        assert r.stderr == b"oops\n"
        # It removed what it made.
        assert d.cli("sandbox", "ls", "-a").stdout.decode().count("c-sdk-hello") == 0
        # Errors come back as the server's message.
        d.cli("sandbox", "create", "--name", "c-sdk-hello")
        r = run(d, "hello", check=False)
        assert r.returncode == 1
        assert "create:" in r.stderr.decode() and "already running" in r.stderr.decode()


def test_stream_feeds_stdin_and_tags_output():
    with daemon() as d:
        sid = d.cli("sandbox", "create").stdout.decode().strip()
        r = run(d, "stream", sid, "sh", "-c", "while read l; do echo got $l; done; echo end >&2; exit 5",
                input=b"one\ntwo\n", check=False)
        assert r.returncode == 5, r.stderr
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "[started]" and lines[-1] == "[exit] 5"
        assert "[out] got one" in lines and "[out] got two" in lines and "[err] end" in lines
        # A signal ends it with 128+N; an unknown sandbox is the server's message.
        r = run(d, "stream", sid, "sh", "-c", "kill -TERM $$", input=b"", check=False)
        assert r.returncode == 128 + 15 and "[exit] killed by signal 15" in r.stdout.decode()
        r = run(d, "stream", "sb-nope", "true", input=b"", check=False)
        assert r.returncode == 1 and "not found" in r.stderr.decode()
