"""The plugin SDK as a third party meets it: install hutch, build the
example plugin out of tree against the installed header only, load it."""
import os
import re
import shutil
import subprocess

import grpc

from hutchtest import BUILD_DIR, HUTCHD, SOURCE_DIR, daemon, protos, unary


def test_example_plugin_builds_out_of_tree_and_loads(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", str(prefix)], check=True,
                   capture_output=True)
    assert (prefix / "include" / "hutch" / "plugin.h").exists()
    # A copy of the example, away from the source tree, so that nothing but
    # the installed header can be found.
    src = tmp_path / "storage-localdir"
    shutil.copytree(os.path.join(SOURCE_DIR, "sdk", "examples", "storage-localdir"), src)
    build = tmp_path / "build"
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(build),
                        "-DCMAKE_PREFIX_PATH=" + str(prefix)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cache = (build / "CMakeCache.txt").read_text()
    assert "HUTCH_INCLUDE_DIR:PATH=%s/include" % prefix in cache
    r = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    so = build / "storage-localdir.so"
    assert so.exists()
    # Exactly one exported symbol.
    syms = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                          text=True).stdout
    exported = [l.split()[-1] for l in syms.splitlines() if " T " in l]
    assert exported == ["hutch_plugin_v1"], exported
    r = subprocess.run([HUTCHD, "--describe", str(so)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"storage-localdir 1\.0\.0 \(storage plugin, ABI 1\.[0-9]+\)", r.stdout)
    assert "max_volumes" in r.stdout
    # And hutchd runs with it as its storage plugin.
    with daemon('[plugins]\nstorage = "%s"\n[plugin.storage-localdir]\nroot = "%s"\n' % (
            so, tmp_path / "vols")) as d:
        out = d.cli("status").stdout.decode()
        assert "storage      storage-localdir" in out
        assert "versions: no" in out
        # A storage plugin alone does not mount volumes yet: a spec that
        # asks for one is refused, not started without it.
        s = protos()["sandbox"]
        spec = s.SandboxSpec(volumes=[s.VolumeMount(name="data", path="/data")])
        with grpc.insecure_channel("unix:" + d.sock) as ch:
            try:
                unary(ch, "/hutch.v1.Sandboxes/Create", s.CreateSandboxRequest(spec=spec), s.Sandbox)
                assert False, "a volume mount was accepted"
            except grpc.RpcError as e:
                assert "volume mounts are not implemented" in e.details()
                assert "storage-localdir" in e.details()
        assert d.cli("sandbox", "ls", "-a").stdout.decode().count("\n") <= 1
