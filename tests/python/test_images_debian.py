"""The issue-7 program against a local hutchd: a debian_slim Container.
The base is the session's (it_images_debian_base builds it once), imported
first, so Image.debian_slim() builds as a cache hit."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from imagetest import import_debian_base  # noqa: E402

SOURCE_DIR = os.environ.get("HUTCH_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
SDK = os.path.join(SOURCE_DIR, "sdk", "python")


def test_issue7_program_runs_on_debian_slim(default_env):
    import_debian_base(default_env)
    from hutch import Container, Image
    sb = Container(image=Image.debian_slim(), cpu="2", memory="4Gi").run()
    try:
        p = sb.exec("python3", "-c", "print('hello from a sandbox')")
        assert p.stdout_text == "hello from a sandbox\n"
        assert sb.exec("python", "-c", "import sys; print(sys.version_info[:2])").stdout_text == "(3, 11)\n"
    finally:
        sb.stop()


def test_hello_example_runs_unchanged(daemon):
    """examples/hello.py is the issue's program, byte for byte."""
    path = os.path.join(SDK, "examples", "hello.py")
    with open(path) as f:
        assert f.read() == (
            "from hutch import Container, Image\n"
            "c = Container(image=Image.debian_slim(), cpu=\"2\", memory=\"4Gi\").run()\n"
            "result = c.exec(\"python3\", \"-c\", \"print('hello from a sandbox')\")\n"
            "print(result.stdout_text)\n"
            "c.stop()\n")
    import_debian_base(daemon)
    env = dict(os.environ, HUTCH_SOCKET=daemon.sock, PYTHONPATH=SDK)
    env.pop("HUTCH_ADDRESS", None)
    r = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from a sandbox\n\n"
