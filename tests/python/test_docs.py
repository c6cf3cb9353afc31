"""docs/python-sdk.md: every ```python block is a whole program; each runs
against a private hutchd, into which the session's debian_slim base is
imported first (it_images_debian_base). Blocks marked `docs-test: not run`
are only compiled."""
import os
import re
import subprocess
import sys

import hutchtest
from imagetest import import_debian_base

SOURCE_DIR = os.environ.get("HUTCH_SOURCE_DIR", os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..")))
DOC = os.path.join(SOURCE_DIR, "docs", "python-sdk.md")


def blocks():
    text = open(DOC).read()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
        line = text[:m.start()].count("\n") + 1
        out.append((line, m.group(1), "docs-test: not run" in before))
    return out


def test_every_python_block_in_the_doc_runs(tmp_path):
    bs = blocks()
    assert len(bs) >= 12, "the doc has its examples"
    d = hutchtest.Daemon()
    try:
        import_debian_base(d)
        env = dict(os.environ, HUTCH_SOCKET=d.sock,
                   PYTHONPATH=os.path.join(SOURCE_DIR, "sdk", "python"))
        env.pop("HUTCH_ADDRESS", None)
        env.pop("HUTCH_API_KEY", None)
        for line, code, not_run in bs:
            if not_run:
                compile(code, "%s:%d" % (DOC, line), "exec")
                continue
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env, cwd=str(tmp_path), timeout=240)
            assert r.returncode == 0, "docs/python-sdk.md:%d failed:\n%s\n%s" % (
                line, r.stdout, r.stderr)
            assert "Traceback" not in r.stderr, r.stderr
    finally:
        d.cleanup()
