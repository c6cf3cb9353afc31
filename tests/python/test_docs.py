"""docs/python-sdk.md: every ```python block is a whole program; each runs
against a private hutchd. Blocks marked *needs images* may instead stop
with CapabilityMissingError (capability images) while hutchd cannot build
images; blocks marked `docs-test: not run` are only compiled."""
import os
import re
import subprocess
import sys

import hutchtest

SOURCE_DIR = os.environ.get("HUTCH_SOURCE_DIR", os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..")))
DOC = os.path.join(SOURCE_DIR, "docs", "python-sdk.md")


def blocks():
    text = open(DOC).read()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
        line = text[:m.start()].count("\n") + 1
        out.append((line, m.group(1), "*needs images*" in before, "docs-test: not run" in before))
    return out


def test_every_python_block_in_the_doc_runs(tmp_path):
    bs = blocks()
    assert len(bs) >= 12, "the doc has its examples"
    d = hutchtest.Daemon()
    try:
        env = dict(os.environ, HUTCH_SOCKET=d.sock,
                   PYTHONPATH=os.path.join(SOURCE_DIR, "sdk", "python"))
        env.pop("HUTCH_ADDRESS", None)
        env.pop("HUTCH_API_KEY", None)
        for line, code, needs_images, not_run in bs:
            if not_run:
                compile(code, "%s:%d" % (DOC, line), "exec")
                continue
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env, cwd=str(tmp_path), timeout=240)
            if r.returncode != 0 and needs_images and "CapabilityMissingError" in r.stderr \
                    and "images" in r.stderr:
                continue
            assert r.returncode == 0, "docs/python-sdk.md:%d failed:\n%s\n%s" % (
                line, r.stdout, r.stderr)
            assert "Traceback" not in r.stderr, r.stderr
    finally:
        d.cleanup()
