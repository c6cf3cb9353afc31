"""Images: a base plus build steps, described in the client and built by
hutchd's images service (hutch.v1.Images, Build).

Image objects are immutable: every method returns a new Image, so a base
can be shared and extended::

    base = Image.debian_slim("3.11")
    ml = base.pip_install("numpy", "pandas").apt_install("git")

``Image.builtin("busybox")`` (the same as the string "busybox") and
``Image.from_name(name)`` without steps need no build. Anything else is
built when a sandbox is created with it (or with ``image.build()``): the
spec goes to hutchd, local files are uploaded when hutchd lacks them
(content-addressed), and every step is cached by hutchd. A hutchd without
the images service answers UNIMPLEMENTED; the SDK raises
CapabilityMissingError("images") with the server's message."""
from __future__ import annotations

import fnmatch
import hashlib
import os
import queue
import stat as _stat
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping,
                    NamedTuple, Optional, Sequence, Tuple, Union)

import grpc

from ._proto import sandbox_pb2 as spb

try:  # generated from core/api/hutch/v1/image.proto
    from ._proto import image_pb2 as ipb
except ImportError:  # pragma: no cover - an SDK generated before image.proto
    ipb = None
from .errors import (AbortedError, CapabilityMissingError, HutchError, InvalidArgumentError,
                     UnimplementedError, UnknownError)

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import SandboxClient

BUILTIN_IMAGES = ("busybox",)
DEFAULT_PYTHON = "3.11"
_CHUNK = 1 << 20
PathLike = Union[str, "os.PathLike[str]"]


def _flatten(items: Sequence[Any], what: str) -> List[str]:
    out: List[str] = []
    for it in items:
        if isinstance(it, (list, tuple)):
            out.extend(_flatten(it, what))
        elif isinstance(it, str):
            if it.strip():
                out.append(it)
        else:
            raise InvalidArgumentError("%s: %r is not a string" % (what, it))
    return out


def _abs_dest(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError("%s: %r must be an absolute path in the image" % (what, path))
    return path


class ImageBuildError(AbortedError):
    """A build step failed: ``step`` (its description), ``exit_code`` and
    ``output_tail`` (the last lines of its output) say how."""

    def __init__(self, message: str, step: str = "", exit_code: int = 0,
                 output_tail: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.exit_code = exit_code
        self.output_tail = output_tail


class BuiltImage(NamedTuple):
    """An image in hutchd's store."""
    name: str
    digest: str
    id: str
    size_bytes: int
    layers: int

    @classmethod
    def _from_pb(cls, m: Any) -> "BuiltImage":
        return cls(m.name, m.digest, m.id, m.size_bytes, len(m.layers))


class BuildEvent(NamedTuple):
    """Progress of a build, for ``build(log=...)``: kind "step" (index,
    total, description, state) or "log" (index, data)."""
    kind: str
    index: int
    total: int = 0
    description: str = ""
    state: str = ""
    data: bytes = b""


_STEP_STATES = {1: "waiting", 2: "running", 3: "cached", 4: "built", 5: "failed"}


class Image:
    """An image: where it starts (a built-in image, Debian slim with a
    Python, a registry reference, or an image already in hutchd's store)
    and the steps on top."""

    __slots__ = ("_base", "_steps")

    def __init__(self, _base: Tuple[str, Any], _steps: Tuple[Tuple[str, Any], ...] = ()) -> None:
        # Use the constructors below (Image.debian_slim() & co.).
        self._base = _base
        self._steps = _steps

    # ---- bases ----

    @classmethod
    def builtin(cls, name: str = "busybox") -> "Image":
        """One of hutchd's built-in images (today: "busybox")."""
        if name not in BUILTIN_IMAGES:
            raise InvalidArgumentError("no built-in image %r (built in: %s)" % (
                name, ", ".join(BUILTIN_IMAGES)))
        return cls(("builtin", name))

    @classmethod
    def debian_slim(cls, python_version: Optional[str] = None) -> "Image":
        """Debian (slim) with CPython `python_version` (default 3.11) as
        ``python3``, and pip."""
        v = python_version or DEFAULT_PYTHON
        if not isinstance(v, str) or not all(p.isdigit() for p in v.split(".")) or \
                not 1 <= len(v.split(".")) <= 3:
            raise InvalidArgumentError("python_version %r: give it like \"3.11\"" % (v,))
        return cls(("debian_slim", v))

    @classmethod
    def from_registry(cls, ref: str, *, username: Optional[str] = None,
                      password: Optional[str] = None, insecure: bool = False) -> "Image":
        """An OCI image from a registry ("python:3.12-slim",
        "ghcr.io/org/img@sha256:..."). The credentials are used for the
        pull only and never stored; insecure: plain HTTP."""
        if not isinstance(ref, str) or not ref.strip() or any(c.isspace() for c in ref):
            raise InvalidArgumentError("image reference %r is not valid" % (ref,))
        return cls(("registry", (ref, username or "", password or "", bool(insecure))))

    @classmethod
    def from_name(cls, name: str) -> "Image":
        """An image already in hutchd's store, by name or "sha256:..."
        digest (built before, or imported)."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("an image name is needed")
        return cls(("image", name))

    # ---- steps ----

    def _with(self, step: Tuple[str, Any]) -> "Image":
        return Image(self._base, self._steps + (step,))

    def pip_install(self, *packages: Union[str, Sequence[str]], index_url: Optional[str] = None,
                    extra_index_url: Union[str, Sequence[str], None] = None,
                    find_links: Union[str, Sequence[str], None] = None) -> "Image":
        """pip install these requirements ("numpy", "torch==2.3", or lists).
        find_links without index_url installs offline (--no-index)."""
        pkgs = _flatten(packages, "pip_install")
        if not pkgs:
            return self
        extra = [extra_index_url] if isinstance(extra_index_url, str) else list(extra_index_url or ())
        links = [find_links] if isinstance(find_links, str) else list(find_links or ())
        return self._with(("pip_install", (tuple(pkgs), index_url or "", tuple(extra), tuple(links))))

    def apt_install(self, *packages: Union[str, Sequence[str]]) -> "Image":
        """apt-get install these Debian packages."""
        pkgs = _flatten(packages, "apt_install")
        if not pkgs:
            return self
        return self._with(("apt_install", tuple(pkgs)))

    def run_commands(self, *commands: Union[str, Sequence[str]]) -> "Image":
        """Shell commands (each by /bin/sh -c), run in order at build time."""
        cmds = _flatten(commands, "run_commands")
        if not cmds:
            return self
        return self._with(("run_commands", tuple(cmds)))

    def add_local_file(self, local_path: PathLike, remote_path: str,
                       mode: Optional[int] = None) -> "Image":
        """Copies a local file into the image at remote_path (its content is
        read when the image is built); mode: default the file's own."""
        lp = os.path.abspath(os.fspath(local_path))
        if not os.path.isfile(lp):
            raise InvalidArgumentError("add_local_file: %s is not a file" % lp)
        return self._with(("add_local_file", (lp, _abs_dest(remote_path, "add_local_file"), mode)))

    def add_local_dir(self, local_path: PathLike, remote_path: str,
                      ignore: Iterable[str] = ()) -> "Image":
        """Copies a local directory's tree into the image at remote_path
        (modes and symlinks kept); ignore: glob patterns of relative paths
        (or names) left out, e.g. ["*.pyc", ".git"]."""
        lp = os.path.abspath(os.fspath(local_path))
        if not os.path.isdir(lp):
            raise InvalidArgumentError("add_local_dir: %s is not a directory" % lp)
        return self._with(("add_local_dir", (lp, _abs_dest(remote_path, "add_local_dir"),
                                             tuple(ignore))))

    def env(self, vars: Mapping[str, str]) -> "Image":
        """Environment variables set in the image."""
        if not vars:
            return self
        return self._with(("env", tuple((str(k), str(v)) for k, v in vars.items())))

    def workdir(self, path: str) -> "Image":
        """The working directory of processes in the image."""
        return self._with(("workdir", _abs_dest(path, "workdir")))

    def entrypoint(self, argv: Sequence[str]) -> "Image":
        """The image's entrypoint."""
        if not argv:
            raise InvalidArgumentError("an entrypoint needs a program")
        return self._with(("entrypoint", tuple(argv)))

    # ---- inspection ----

    @property
    def is_builtin(self) -> bool:
        return self._base[0] == "builtin" and not self._steps

    def _direct_ref(self) -> Optional[str]:
        """The name a sandbox can use without a build, if any."""
        if not self._steps and self._base[0] in ("builtin", "image"):
            return self._base[1]
        return None

    def to_proto(self) -> Tuple[Any, Dict[str, str]]:
        """The hutch.v1.ImageSpec, and the local files it names (digest ->
        path). Reads and hashes local files."""
        if ipb is None:
            raise CapabilityMissingError("images", "%s: this copy of the SDK has no image API "
                                         "(hutch/v1/image.proto); regenerate it with "
                                         "scripts/gen_python_proto.sh" % self._describe())
        kind, arg = self._base
        base = ipb.ImageBase()
        if kind == "builtin":
            base.busybox.SetInParent()
        elif kind == "debian_slim":
            base.debian_slim.python_version = arg
        elif kind == "registry":
            ref, user, pw, insecure = arg
            base.registry.ref = ref
            base.registry.username = user
            base.registry.password = pw
            base.registry.insecure = insecure
        else:
            base.image = arg
        spec = ipb.ImageSpec(source=base)
        files: Dict[str, str] = {}
        for op, a in self._steps:
            st = spec.steps.add()
            if op == "pip_install":
                pkgs, index, extra, links = a
                st.pip_install.packages.extend(pkgs)
                st.pip_install.index_url = index
                st.pip_install.extra_index_urls.extend(extra)
                st.pip_install.find_links.extend(links)
            elif op == "apt_install":
                st.apt_install.packages.extend(a)
            elif op == "run_commands":
                st.run_commands.commands.extend(a)
            elif op == "add_local_file":
                lp, dest, mode = a
                st.add_local_file.dest = dest
                st.add_local_file.file.CopyFrom(_local_file(lp, None, files))
                if mode is not None:
                    st.add_local_file.file.mode = mode
            elif op == "add_local_dir":
                lp, dest, ignore = a
                st.add_local_dir.dest = dest
                st.add_local_dir.entries.extend(_walk(lp, ignore, files))
            elif op == "env":
                st.env.vars.extend(spb.KeyValue(key=k, value=v) for k, v in a)
            elif op == "workdir":
                st.workdir = a
            elif op == "entrypoint":
                st.entrypoint.argv.extend(a)
        return spec, files

    def default_name(self) -> str:
        """The name the SDK gives the built image: derived from the spec
        (local files by content), so the same spec gets the same name."""
        spec, _ = self.to_proto()
        if spec.source.HasField("registry"):  # credentials never name anything
            spec.source.registry.username = ""
            spec.source.registry.password = ""
        h = hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()
        return "sdk-" + h[:24]

    # ---- build ----

    def build(self, client: Optional["SandboxClient"] = None, *, name: Optional[str] = None,
              no_cache: bool = False,
              log: Optional[Callable[[BuildEvent], None]] = None) -> BuiltImage:
        """Builds the image in hutchd (cached step by step) and returns it.
        name: the image's name in the tenant (default: derived from the
        spec). log: called with each BuildEvent (steps, output)."""
        if client is None:
            from .sandbox import default_client
            client = default_client()
        ref = self._direct_ref()
        if ref is not None and name is None:
            raise InvalidArgumentError("%s needs no build" % self._describe())
        spec, files = self.to_proto()
        return _build(client, self, spec, files, name or self.default_name(), no_cache, log)

    def _resolve(self, client: "SandboxClient") -> str:
        """The image name a sandbox should use: built-in and stored images
        go by name; anything else is built first."""
        ref = self._direct_ref()
        if ref is not None:
            return ref
        return self.build(client).name

    def _describe(self) -> str:
        kind, arg = self._base
        shown = arg[0] if kind == "registry" else arg
        s = {"builtin": "Image.builtin(%r)", "debian_slim": "Image.debian_slim(%r)",
             "registry": "Image.from_registry(%r)", "image": "Image.from_name(%r)"}[kind] % shown
        for op, _ in self._steps:
            s += ".%s(...)" % op
        return s

    def _key(self) -> Tuple[Any, ...]:
        return (self._base, self._steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "<Image %s>" % self._describe()


# ---- local files ----

def _sha256_file(path: str) -> Tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
            n += len(b)
    return "sha256:" + h.hexdigest(), n


def _local_file(path: str, rel: Optional[str], files: Dict[str, str]) -> Any:
    st = os.stat(path)
    digest, size = _sha256_file(path)
    files.setdefault(digest, path)
    f = ipb.LocalFile(digest=digest, size=size, mode=_stat.S_IMODE(st.st_mode), type="file")
    if rel is not None:
        f.path = rel
    return f


def _ignored(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _walk(root: str, ignore: Sequence[str], files: Dict[str, str]) -> List[Any]:
    """The tree as LocalFile entries, sorted (so the spec is stable)."""
    out: List[Any] = []

    def walk(d: str, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            r = rel + "/" + name if rel else name
            if _ignored(r, ignore):
                continue
            st = os.lstat(path)
            if _stat.S_ISREG(st.st_mode):
                out.append(_local_file(path, r, files))
            elif _stat.S_ISDIR(st.st_mode):
                out.append(ipb.LocalFile(path=r, type="dir", mode=_stat.S_IMODE(st.st_mode)))
                walk(path, r)
            elif _stat.S_ISLNK(st.st_mode):
                out.append(ipb.LocalFile(path=r, type="symlink", link_target=os.readlink(path),
                                         mode=0o777))
            else:
                raise InvalidArgumentError("add_local_dir: %s is not a file, directory or symlink"
                                           % path)

    walk(root, "")
    return out


# ---- the Build call ----

_END = object()


def _build(client: "SandboxClient", image: Image, spec: Any, files: Dict[str, str], name: str,
           no_cache: bool, log: Optional[Callable[[BuildEvent], None]]) -> BuiltImage:
    conn = client._conn
    requests: "queue.Queue[Any]" = queue.Queue(maxsize=16)
    requests.put(ipb.BuildImageRequest(start=ipb.BuildStart(spec=spec, name=name,
                                                            no_cache=no_cache)))

    def request_iter() -> Iterator[Any]:
        while True:
            m = requests.get()
            if m is _END:
                return
            yield m

    call = conn.stream_stream("Images/Build", request_iter(), ipb.BuildImageEvent)
    failed: Optional[Any] = None
    done: Optional[Any] = None
    try:
        try:
            for ev in call:
                kind = ev.WhichOneof("event")
                if kind == "need_files":
                    for digest in ev.need_files.digests:
                        _send_file(call, requests, digest, files)
                    _put(call, requests, ipb.BuildImageRequest(files_done=True))
                elif kind == "step":
                    s = ev.step
                    if _STEP_STATES.get(s.state) == "failed":
                        failed = s
                    if log:
                        log(BuildEvent("step", s.index, s.total, s.description,
                                       _STEP_STATES.get(s.state, "")))
                elif kind == "log":
                    if log:
                        log(BuildEvent("log", ev.log.index, data=bytes(ev.log.data)))
                elif kind == "done":
                    done = ev.done
        except grpc.RpcError as e:
            err = conn._error(e)
            if failed is not None:
                raise ImageBuildError(
                    "building %s: step %d/%d (%s) failed: %s" % (
                        image._describe(), failed.index, failed.total, failed.description,
                        failed.error or err.message),
                    failed.description, failed.exit_code, failed.output_tail) from None
            if isinstance(err, UnimplementedError):
                raise CapabilityMissingError(
                    "images", "%s needs an image build, and this hutchd cannot build images: %s"
                    % (image._describe(), err.message)) from None
            raise err from None
    finally:
        if done is None:
            call.cancel()
        try:
            requests.put_nowait(_END)
        except queue.Full:
            pass
    if done is None:
        raise UnknownError("building %s: the build ended without an image" % image._describe())
    return BuiltImage._from_pb(done)


def _put(call: Any, requests: "queue.Queue[Any]", msg: Any) -> None:
    """Queues a request; gives up when the call has ended (its error then
    comes from the response stream)."""
    while True:
        try:
            requests.put(msg, timeout=0.2)
            return
        except queue.Full:
            if not call.is_active():
                return


def _send_file(call: Any, requests: "queue.Queue[Any]", digest: str,
               files: Dict[str, str]) -> None:
    path = files.get(digest)
    if path is None:
        raise InvalidArgumentError("hutchd asked for %s, which this build does not have" % digest)
    with open(path, "rb") as f:
        h = hashlib.sha256()
        data = f.read(_CHUNK)
        while True:
            nxt = f.read(_CHUNK)
            h.update(data)
            _put(call, requests, ipb.BuildImageRequest(file=ipb.FileChunk(
                digest=digest, data=data, last=not nxt)))
            if not nxt:
                break
            data = nxt
    if "sha256:" + h.hexdigest() != digest:
        raise HutchError("%s changed while the image was being built" % path)
