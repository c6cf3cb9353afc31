"""Files in and out of sandboxes through the SDK: single files with modes,
trees (tar) with symlinks, empty dirs and modes, list/stat/remove."""
import hashlib
import os
import stat

import pytest

from hutch import InvalidArgumentError, NotFoundError


def test_single_files_both_ways_with_modes(client, tmp_path):
    sb = client.create()
    assert sb.write_file("/tmp/hello.txt", "hello\n") == 6
    assert sb.read_file("/tmp/hello.txt") == b"hello\n"
    assert sb.exec("stat", "-c", "%a", "/tmp/hello.txt").stdout_text.strip() == "644"
    sb.write_file("/tmp/run.sh", b"#!/bin/sh\necho ran\n", mode=0o750)
    assert sb.exec("/tmp/run.sh").stdout_text == "ran\n"
    # A big local file, with its own mode, and back.
    data = os.urandom(9 * 1024 * 1024 + 17)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    os.chmod(src, 0o751)
    assert sb.put_file(src, "/tmp/big.bin") == len(data)
    assert sb.exec("sha256sum", "/tmp/big.bin").stdout_text.split()[0] == \
        hashlib.sha256(data).hexdigest()
    assert sb.stat_file("/tmp/big.bin").mode & 0o7777 == 0o751
    sb.put_file(src, "/tmp/other.bin", mode=0o600)
    assert sb.stat_file("/tmp/other.bin").mode & 0o7777 == 0o600
    back = tmp_path / "back.bin"
    info = sb.get_file("/tmp/big.bin", back)
    assert back.read_bytes() == data and info.size == len(data) and info.is_file
    assert stat.S_IMODE(os.stat(back).st_mode) == 0o751
    # Into an existing directory: under the file's own name.
    d = tmp_path / "dl"
    d.mkdir()
    sb.get_file("/tmp/run.sh", d)
    assert (d / "run.sh").read_bytes() == b"#!/bin/sh\necho ran\n"
    assert stat.S_IMODE(os.stat(d / "run.sh").st_mode) == 0o750
    # Errors carry the server's message; a failed get leaves nothing behind.
    with pytest.raises(NotFoundError) as e:
        sb.read_file("/no/such/file")
    assert "/no/such/file" in str(e.value)
    with pytest.raises(NotFoundError):
        sb.get_file("/no/such/file", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".hutch-get-")]
    with pytest.raises(InvalidArgumentError):
        sb.read_file("relative/path")


def test_trees_both_ways(client, tmp_path):
    sb = client.create()
    tree = tmp_path / "tree"
    (tree / "sub" / "empty").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_text("deep")
    (tree / "top.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(tree / "top.sh", 0o755)
    (tree / "secret").write_text("s")
    os.chmod(tree / "secret", 0o600)
    os.symlink("sub/f.txt", tree / "link")
    os.link(tree / "sub" / "f.txt", tree / "hard")  # a hard link arrives as a file
    long = "d" * 120 + "/" + "f" * 120  # beyond ustar's name field
    (tree / ("d" * 120)).mkdir()
    (tree / long).write_text("long name")
    sb.put_dir(tree, "/work")
    assert sb.exec("cat", "/work/link").stdout_text == "deep"
    assert sb.exec("cat", "/work/hard").stdout_text == "deep"
    assert sb.exec("/work/top.sh").stdout_text == "hi\n"
    assert sb.exec("test", "-d", "/work/sub/empty").exit_code == 0
    assert sb.exec("cat", "/work/" + long).stdout_text == "long name"
    assert sb.stat_file("/work/secret").mode & 0o777 == 0o600
    link = sb.stat_file("/work/link")
    assert link.is_symlink and link.link_target == "sub/f.txt"
    names = sorted(f.path for f in sb.list_files("/work"))
    assert names == sorted(["d" * 120, "hard", "link", "secret", "sub", "top.sh"])
    assert {f.path: f.type for f in sb.list_files("/work/sub")} == {"empty": "dir", "f.txt": "file"}
    # Back out, into a new directory.
    sb.exec("sh", "-c", "mkdir -p /work/made/in && echo x > /work/made/in/side && chmod 700 /work/made")
    dl = tmp_path / "dl"
    written = sb.get_dir("/work", dl)
    assert "sub/f.txt" in written and "link" in written
    assert (dl / "sub" / "f.txt").read_text() == "deep"
    assert os.readlink(dl / "link") == "sub/f.txt"
    assert os.stat(dl / "top.sh").st_mode & 0o777 == 0o755
    assert os.stat(dl / "secret").st_mode & 0o777 == 0o600
    assert (dl / "sub" / "empty").is_dir()
    assert (dl / "made" / "in" / "side").read_text() == "x\n"
    assert os.stat(dl / "made").st_mode & 0o777 == 0o700
    assert (dl / long).read_text() == "long name"
    # get_dir of a file says to use get_file.
    with pytest.raises(InvalidArgumentError) as e:
        sb.get_dir("/work/top.sh", tmp_path / "x")
    assert "get_file" in str(e.value)
    # remove
    sb.remove_file("/work/top.sh")
    with pytest.raises(NotFoundError):
        sb.stat_file("/work/top.sh")
    with pytest.raises(Exception) as e:
        sb.remove_file("/work/sub")
    assert "sub" in str(e.value)
    sb.remove_file("/work/sub", recursive=True)
    assert "sub" not in [f.path for f in sb.list_files("/work")]
    with pytest.raises(InvalidArgumentError):
        sb.put_dir(tmp_path / "nope", "/x")


def test_get_dir_refuses_to_write_through_symlinks(client, tmp_path):
    sb = client.create()
    # A sandbox could name an entry so that it goes through a symlink it
    # made: the SDK must not follow it out of the destination.
    sb.exec("sh", "-c", "mkdir -p /evil/sub && echo payload > /evil/sub/f && ln -s / /evil/root")
    outside = tmp_path / "outside"
    outside.mkdir()
    dl = tmp_path / "dl"
    sb.get_dir("/evil", dl)
    assert os.readlink(dl / "root") == "/"
    assert (dl / "sub" / "f").read_text() == "payload\n"
    # Extracting a tree whose entries go through a symlink is refused.
    import io
    import tarfile
    from hutch import _files
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("top/esc")
        ti.type = tarfile.SYMTYPE
        ti.linkname = str(outside)
        t.addfile(ti)
        ti = tarfile.TarInfo("top/esc/pwned")
        data = b"x"
        ti.size = 1
        t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidArgumentError):
        _files._extract(buf, "top", str(dest))
    assert not (outside / "pwned").exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("top/../../escape")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    buf.seek(0)
    with pytest.raises(InvalidArgumentError):
        _files._extract(buf, "top", str(dest))
