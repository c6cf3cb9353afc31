"""Files in and out of sandboxes: single files as byte streams, trees as
tar streams (PutFiles / GetFiles), built and read with Python's tarfile."""
from __future__ import annotations

import os
import stat as _stat
import tarfile
import tempfile
from typing import IO, Any, Iterator, List, NamedTuple, Optional, Union

from ._proto import sandbox_pb2 as pb
from .errors import InvalidArgumentError, UnknownError

CHUNK = 1 << 20
PathLike = Union[str, "os.PathLike[str]"]


class FileInfo(NamedTuple):
    """One file in a sandbox. ``type`` is "file", "dir", "symlink" or
    "other"; ``mode`` holds the permission bits."""
    path: str
    type: str
    size: int
    mode: int
    mtime: int
    link_target: str = ""

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def is_symlink(self) -> bool:
        return self.type == "symlink"

    @classmethod
    def _from_pb(cls, f: Any) -> "FileInfo":
        return cls(f.path, f.type, f.size, f.mode, f.mtime_unix, f.link_target)


def _remote(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError("sandbox path %r must be absolute" % (path,))
    return path


def put_stream(conn: Any, sandbox_id: str, remote_path: str, src: IO[bytes], tar: bool,
               mode: int) -> int:
    """Sends src's bytes as one PutFiles call; returns the bytes written."""
    def requests() -> Iterator[Any]:
        yield pb.PutFilesRequest(header=pb.PutFilesHeader(
            sandbox_id=sandbox_id, path=_remote(remote_path), tar=tar, mode=mode))
        while True:
            data = src.read(CHUNK)
            if not data:
                return
            yield pb.PutFilesRequest(data=data)

    r = conn.stream_unary("Sandboxes/PutFiles", requests(), pb.PutFilesResponse)
    return int(r.bytes)


def write_bytes(conn: Any, sandbox_id: str, remote_path: str, data: Union[bytes, str],
                mode: int) -> int:
    import io
    if isinstance(data, str):
        data = data.encode()
    return put_stream(conn, sandbox_id, remote_path, io.BytesIO(data), False, mode)


def put_file(conn: Any, sandbox_id: str, local: PathLike, remote_path: str,
             mode: Optional[int]) -> int:
    with open(local, "rb") as f:
        if mode is None:
            mode = _stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        return put_stream(conn, sandbox_id, remote_path, f, False, mode)


def _tar_tree(local_dir: str, out: IO[bytes]) -> None:
    """A tar of local_dir's contents, names relative to it. Hard links
    become plain files (hutch does not copy links between entries);
    sockets, fifos and devices are left out."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(local_dir):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                arc = os.path.relpath(full, local_dir)
                st = os.lstat(full)
                if not (_stat.S_ISREG(st.st_mode) or _stat.S_ISDIR(st.st_mode)
                        or _stat.S_ISLNK(st.st_mode)):
                    continue
                ti = t.gettarinfo(full, arcname=arc)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if ti.islnk():
                    ti.type = tarfile.REGTYPE
                    ti.linkname = ""
                    ti.size = st.st_size
                if ti.isreg():
                    with open(full, "rb") as f:
                        t.addfile(ti, f)
                else:
                    t.addfile(ti)
            # os.walk does not descend into symlinked dirs: they are entries.


def put_dir(conn: Any, sandbox_id: str, local_dir: PathLike, remote_dir: str) -> int:
    local = os.fspath(local_dir)
    if not os.path.isdir(local):
        raise InvalidArgumentError("%s is not a directory" % local)
    with tempfile.TemporaryFile(prefix="hutch-put-") as tmp:
        _tar_tree(local, tmp)
        tmp.seek(0)
        return put_stream(conn, sandbox_id, remote_dir, tmp, True, 0)


def get_stream(conn: Any, sandbox_id: str, remote_path: str, tar: bool, out: IO[bytes]
               ) -> FileInfo:
    """Copies one GetFiles call's data into out; returns the first info."""
    call = conn.unary_stream("Sandboxes/GetFiles", pb.GetFilesRequest(
        sandbox_id=sandbox_id, path=_remote(remote_path), tar=tar), pb.GetFilesResponse)
    import grpc
    info: Optional[FileInfo] = None
    try:
        for m in call:
            if m.WhichOneof("msg") == "info":
                if info is None:
                    info = FileInfo._from_pb(m.info)
            else:
                out.write(m.data)
    except grpc.RpcError as e:
        raise conn._error(e) from None
    if info is None:
        raise UnknownError("GetFiles %s: no file information came back" % remote_path)
    return info


def read_bytes(conn: Any, sandbox_id: str, remote_path: str) -> bytes:
    import io
    buf = io.BytesIO()
    get_stream(conn, sandbox_id, remote_path, False, buf)
    return buf.getvalue()


def get_file(conn: Any, sandbox_id: str, remote_path: str, local: PathLike) -> FileInfo:
    """Writes the sandbox's file to local (a file path, or an existing
    directory to put it in under its own name), with its mode."""
    dest = os.fspath(local)
    if os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(remote_path.rstrip("/")))
    d = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=".hutch-get-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            info = get_stream(conn, sandbox_id, remote_path, False, f)
        os.chmod(tmp, (info.mode & 0o7777) or 0o644)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return info


def get_dir(conn: Any, sandbox_id: str, remote_dir: str, local_dir: PathLike) -> List[str]:
    """Copies the sandbox's tree remote_dir into local_dir (created if
    missing): remote_dir/a/b lands at local_dir/a/b. Returns the paths
    written, relative to local_dir."""
    dest = os.path.abspath(os.fspath(local_dir))
    with tempfile.TemporaryFile(prefix="hutch-get-") as tmp:
        info = get_stream(conn, sandbox_id, remote_dir, True, tmp)
        if not info.is_dir:
            raise InvalidArgumentError("%s is not a directory in the sandbox (%s): use get_file" % (
                remote_dir, info.type))
        tmp.seek(0)
        os.makedirs(dest, exist_ok=True)
        return _extract(tmp, os.path.basename(remote_dir.rstrip("/")), dest)


def _extract(src: IO[bytes], top: str, dest: str) -> List[str]:
    """Extracts the tree under `top/` into dest. Refuses names that would
    leave dest, never writes through a symlink, and applies modes and
    mtimes."""
    written: List[str] = []
    dirs: List[tuple] = []
    with tarfile.open(fileobj=src, mode="r|") as t:
        for m in t:
            name = m.name.lstrip("/")
            while name.startswith("./"):
                name = name[2:]
            if top:
                if name == top:
                    rel = ""
                elif name.startswith(top + "/"):
                    rel = name[len(top) + 1:]
                else:
                    continue
            else:
                rel = name
            parts = [p for p in rel.split("/") if p not in ("", ".")]
            if any(p == ".." for p in parts):
                raise InvalidArgumentError("tar entry %r leaves the destination" % m.name)
            target = os.path.join(dest, *parts) if parts else dest
            # No writing through symlinks: every parent below dest must be
            # a real directory.
            cur = dest
            for p in parts[:-1]:
                cur = os.path.join(cur, p)
                if os.path.islink(cur):
                    raise InvalidArgumentError("tar entry %r goes through the symlink %s" % (
                        m.name, cur))
                if not os.path.isdir(cur):
                    os.makedirs(cur, exist_ok=True)
            if m.isdir():
                if parts:
                    if os.path.islink(target):
                        os.unlink(target)
                    os.makedirs(target, exist_ok=True)
                dirs.append((target, m.mode, m.mtime))
            elif m.issym():
                if not parts:
                    continue
                if os.path.lexists(target):
                    if os.path.isdir(target) and not os.path.islink(target):
                        continue
                    os.unlink(target)
                os.symlink(m.linkname, target)
            elif m.isreg():
                if not parts:
                    continue
                if os.path.islink(target):
                    os.unlink(target)
                f = t.extractfile(m)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while f is not None:
                        b = f.read(CHUNK)
                        if not b:
                            break
                        out.write(b)
                os.chmod(target, m.mode & 0o7777)
                os.utime(target, (m.mtime, m.mtime))
            else:
                continue
            written.append("/".join(parts))
    # Directories last (deepest first), so that writing into them came first.
    for target, mode, mtime in reversed(dirs):
        try:
            os.chmod(target, mode & 0o7777)
            os.utime(target, (mtime, mtime))
        except OSError:
            pass
    return written
