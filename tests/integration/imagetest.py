"""Shared pieces of the image tests: writing image files, building them
with `hutch image build` (plain progress lines), reading the store, and
the debian_slim base that a test session builds once (see
debian_base.py) and every debian test imports into its own hutchd."""
import os
import re
import time

import hutchtest

# The debian_slim base the session shares: an OCI layout tar exported by
# hutch (layer annotations carry the build cache key, so an import makes
# `debian_slim = { python = "3.11" }` a cache hit).
CACHE_DIR = os.environ.get("HUTCH_TEST_CACHE", os.path.join(hutchtest.BUILD_DIR, "test-cache"))
DEBIAN_BASE_TAR = os.path.join(CACHE_DIR, "debian-bookworm-py3.11.tar")

STEP_RE = re.compile(r"^step (\d+)/(\d+) (waiting|running|cached|built|FAILED)")


def write_image(dir, text, name="image.toml", files=None):
    """Writes an image file (and files beside it) into dir; its path."""
    for rel, content in (files or {}).items():
        p = os.path.join(dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
    path = os.path.join(dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Build:
    """The result of one `hutch image build --progress plain`."""

    def __init__(self, r, seconds):
        self.returncode = r.returncode
        self.out = r.stdout.decode(errors="replace")
        self.err = r.stderr.decode(errors="replace")
        self.seconds = seconds
        self.states = {}
        for line in self.out.splitlines():
            m = STEP_RE.match(line)
            if m:
                self.states.setdefault(int(m.group(1)), []).append(m.group(3))

    def final(self):
        """{step: last state}"""
        return {i: s[-1] for i, s in self.states.items()}

    def ran(self):
        """Steps that ran (were built or failed), in order."""
        return sorted(i for i, s in self.states.items() if "running" in s)

    def __repr__(self):
        return "Build(rc=%d, %.2fs)\n%s\n%s" % (self.returncode, self.seconds, self.out, self.err)


def build(d, path, *args, check=True, timeout=600):
    t = time.monotonic()
    r = d.cli("image", "build", "--progress", "plain", path, *args, check=False, timeout=timeout)
    b = Build(r, time.monotonic() - t)
    if check and b.returncode != 0:
        raise AssertionError("build failed: %r\nlog:\n%s" % (b, d.log()[-4000:]))
    return b


def run_in(d, image, script, check=True):
    """Runs `sh -c script` in a new sandbox of image; its stdout."""
    r = d.cli("run", "--image", image, "--", "sh", "-c", script, check=check)
    return r.stdout.decode(errors="replace")


def images_dir(d):
    return os.path.join(d.state, "images")


def layer_root(d, digest):
    return os.path.join(images_dir(d), "layers", digest.split(":", 1)[1], "root")


def blob_path(d, digest):
    return os.path.join(images_dir(d), "blobs", "sha256", digest.split(":", 1)[1])


def cache_entries(d):
    """Every build cache entry of every scope, as paths."""
    out = []
    root = os.path.join(images_dir(d), "cache")
    for scope in os.listdir(root):
        for n in os.listdir(os.path.join(root, scope)):
            out.append(os.path.join(root, scope, n))
    return out


def import_debian_base(d):
    """Imports the session's debian_slim base into d (built by the
    it_images_debian_base fixture)."""
    if not os.path.exists(DEBIAN_BASE_TAR):
        raise AssertionError("%s is missing: run the it_images_debian_base test first "
                             "(ctest runs it as a fixture)" % DEBIAN_BASE_TAR)
    d.cli("image", "import", DEBIAN_BASE_TAR, "--name", "debian-base", timeout=300)
