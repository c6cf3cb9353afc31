#!/usr/bin/python3
"""The debian_slim base a test session shares (CTest fixture
`debian_base`, test it_images_debian_base).

A debian_slim build is a debootstrap from the Debian mirror: minutes. The
session builds it once, in a hutchd of its own, and exports it as an OCI
layout tar (DEBIAN_BASE_TAR); every debian test imports that tar into its
own hutchd, where the layer annotations make the base a cache hit. A tar
left by an earlier session is reused when it still is one: imported into a
fresh hutchd, `debian_slim = { python = "3.11" }` must build without
running anything (the cache key covers the mirror, suite and hutch's own
key scheme). $HUTCH_TEST_CACHE says where the tar lives (default
<build>/test-cache); scripts/test.sh points both of its passes at one.
"""
import fcntl
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hutchtest  # noqa: E402
from imagetest import CACHE_DIR, DEBIAN_BASE_TAR, build, write_image  # noqa: E402

SPEC = 'name = "debian-base"\n[base]\ndebian_slim = { python = "3.11" }\n'


def ensure(work):
    """Builds the base on what the tar holds (if anything); when that was
    not a cache hit, exports what was built as the new tar."""
    d = hutchtest.Daemon()
    try:
        if os.path.exists(DEBIAN_BASE_TAR):
            r = d.cli("image", "import", DEBIAN_BASE_TAR, "--name", "debian-base", check=False,
                      timeout=300)
            if r.returncode != 0:
                print("debian base: the cached tar is not usable: %s" % r.stderr.decode())
        t = time.monotonic()
        b = build(d, write_image(work, SPEC), timeout=1500)
        if b.final() == {1: "cached"}:
            print("debian base: reusing %s" % DEBIAN_BASE_TAR)
            return
        print("debian base built in %.0f s" % (time.monotonic() - t))
        print("\n".join(l for l in b.out.splitlines() if "URL:" not in l)[-3000:])
        tmp = DEBIAN_BASE_TAR + ".part"
        d.cli("image", "export", "debian-base", "--output", tmp, timeout=300)
        os.rename(tmp, DEBIAN_BASE_TAR)
    finally:
        d.cleanup()


def main():
    os.makedirs(CACHE_DIR, exist_ok=True)
    work = os.path.join(CACHE_DIR, "work-%d" % os.getpid())
    os.makedirs(work, exist_ok=True)
    # One session at a time builds it; others wait and then reuse it.
    with open(os.path.join(CACHE_DIR, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ensure(work)
            return 0
        finally:
            for n in os.listdir(work):
                os.unlink(os.path.join(work, n))
            os.rmdir(work)


if __name__ == "__main__":
    sys.exit(main())
