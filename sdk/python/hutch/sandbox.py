"""Sandboxes: SandboxClient (the connection), Sandbox (one sandbox: exec,
files, stop)."""
from __future__ import annotations

import os
import threading
from typing import (TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from . import _files, _units
from ._exec import ExecProcess, ExecResult
from ._files import FileInfo, PathLike
from ._proto import daemon_pb2, sandbox_pb2 as pb
from ._rpc import Connection
from .errors import (FailedPreconditionError, InvalidArgumentError,
                     NotFoundError, UnknownError)

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image
    from .network import NetworkPolicy
    from .secret import Secret
    from ._unsupported import Volume
    from .tunnel import Tunnel

Duration = Union[str, int, float]
EnvLike = Optional[Mapping[str, str]]

_STATES = {
    pb.SANDBOX_STATE_UNSPECIFIED: "unspecified",
    pb.SANDBOX_STATE_CREATING: "creating",
    pb.SANDBOX_STATE_RUNNING: "running",
    pb.SANDBOX_STATE_STOPPING: "stopping",
    pb.SANDBOX_STATE_STOPPED: "stopped",
    pb.SANDBOX_STATE_EXPIRED: "expired",
    pb.SANDBOX_STATE_FAILED: "failed",
}
_LIVE = ("creating", "running", "stopping")


def _kvs(m: EnvLike, what: str) -> List[Any]:
    if not m:
        return []
    if not isinstance(m, Mapping):
        raise InvalidArgumentError("%s: give a dict of str to str" % what)
    return [pb.KeyValue(key=str(k), value=str(v)) for k, v in m.items()]


def _argv(argv: Sequence[Any]) -> List[str]:
    if len(argv) == 1 and isinstance(argv[0], (list, tuple)):
        argv = tuple(argv[0])
    if not argv:
        raise InvalidArgumentError("exec: give the command and its arguments")
    out = []
    for a in argv:
        if isinstance(a, os.PathLike):
            a = os.fspath(a)
        if not isinstance(a, str):
            raise InvalidArgumentError("exec: argument %r is not a string" % (a,))
        out.append(a)
    return out


class _SandboxOps:
    """exec and files, for anything that has a running sandbox (Sandbox,
    Container)."""

    def _target(self) -> Tuple[Connection, str]:  # pragma: no cover - overridden
        raise NotImplementedError

    # ---- exec ----

    def _exec_start(self, argv: Sequence[Any], env: EnvLike, cwd: Optional[str],
                    user: Optional[str], timeout: Optional[Duration], stdin: bool,
                    tty: bool = False, rows: int = 0, cols: int = 0) -> Any:
        conn, sid = self._target()
        return pb.ExecStart(sandbox_id=sid, argv=_argv(argv), env=_kvs(env, "env"),
                            cwd=cwd or "", user=str(user) if user is not None else "",
                            timeout_ms=_units.millis(timeout, "timeout"), stdin=stdin, tty=tty,
                            rows=rows, cols=cols)

    def exec(self, *argv: str, stdin: Union[bytes, str, None] = None, env: EnvLike = None,
             cwd: Optional[str] = None, user: Optional[str] = None,
             timeout: Optional[Duration] = None, max_output: Optional[int] = None) -> ExecResult:
        """Runs argv to completion and returns its :class:`ExecResult`
        (``stdout_text``, ``stderr_text``, ``exit_code``). A non-zero exit
        is not an exception (see ``ExecResult.check()``); a command that
        cannot start exits 127 (not found) or 126 like a shell's.

        stdin: data for the command's stdin (then EOF). timeout ("30s", 10):
        kill the command after that long (``timed_out`` is set).
        max_output: bytes of output kept, stdout and stderr together
        (default 16 MiB)."""
        conn, _ = self._target()
        start = self._exec_start(argv, env, cwd, user, timeout, stdin is not None)
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        deadline = None if not timeout else _units.seconds(timeout, "timeout") + 60
        rs = conn.collect_stream("Sandboxes/Run", pb.RunRequest(start=start, stdin=data,
                                                                max_output_bytes=max_output or 0),
                                 pb.RunResponse, timeout=deadline)
        if not rs:
            raise UnknownError("hutchd ended Run without an exit status")
        return ExecResult._from_pb(rs, tuple(start.argv))

    def exec_stream(self, *argv: str, stdin: bool = False, tty: bool = False,
                    rows: int = 24, cols: int = 80, env: EnvLike = None,
                    cwd: Optional[str] = None, user: Optional[str] = None,
                    timeout: Optional[Duration] = None) -> ExecProcess:
        """Starts argv and returns an :class:`ExecProcess` streaming its
        output as produced. stdin=True keeps the process's stdin open for
        ``write()`` until ``close_stdin()``; tty=True gives it a terminal of
        rows x cols (stdout and stderr then arrive together on stdout)."""
        conn, _ = self._target()
        start = self._exec_start(argv, env, cwd, user, timeout, stdin, tty,
                                 rows if tty else 0, cols if tty else 0)
        return ExecProcess(conn, start)

    # ---- files ----

    def write_file(self, path: str, data: Union[bytes, str], mode: int = 0o644) -> int:
        """Writes data to the file at path (replacing it); returns bytes
        written."""
        conn, sid = self._target()
        return _files.write_bytes(conn, sid, path, data, mode)

    def read_file(self, path: str) -> bytes:
        """The contents of the file at path."""
        conn, sid = self._target()
        return _files.read_bytes(conn, sid, path)

    def put_file(self, local_path: PathLike, remote_path: str, mode: Optional[int] = None) -> int:
        """Copies a local file to remote_path (the file's own mode unless
        mode is given); returns bytes written."""
        conn, sid = self._target()
        return _files.put_file(conn, sid, local_path, remote_path, mode)

    def get_file(self, remote_path: str, local_path: PathLike) -> FileInfo:
        """Copies the sandbox's file to local_path (a file name, or an
        existing directory), with its mode; returns its FileInfo."""
        conn, sid = self._target()
        return _files.get_file(conn, sid, remote_path, local_path)

    def put_dir(self, local_dir: PathLike, remote_dir: str) -> int:
        """Copies a local tree into remote_dir (created as needed): local_dir/a
        lands at remote_dir/a. Modes and symlinks are kept. Returns the
        bytes of file data written."""
        conn, sid = self._target()
        return _files.put_dir(conn, sid, local_dir, remote_dir)

    def get_dir(self, remote_dir: str, local_dir: PathLike) -> List[str]:
        """Copies the sandbox's tree remote_dir into local_dir (created as
        needed); returns the paths written, relative to local_dir."""
        conn, sid = self._target()
        return _files.get_dir(conn, sid, remote_dir, local_dir)

    def list_files(self, path: str) -> List[FileInfo]:
        """The entries of a directory (names relative to it)."""
        conn, sid = self._target()
        r = conn.unary("Sandboxes/ListFiles", pb.ListFilesRequest(sandbox_id=sid, path=path),
                       pb.ListFilesResponse)
        return [FileInfo._from_pb(f) for f in r.files]

    def stat_file(self, path: str) -> FileInfo:
        conn, sid = self._target()
        return FileInfo._from_pb(conn.unary("Sandboxes/StatFile", pb.StatFileRequest(
            sandbox_id=sid, path=path), pb.FileInfo))

    def remove_file(self, path: str, recursive: bool = False) -> None:
        conn, sid = self._target()
        conn.unary("Sandboxes/RemoveFile", pb.RemoveFileRequest(
            sandbox_id=sid, path=path, recursive=recursive), pb.RemoveFileResponse)


class Sandbox(_SandboxOps):
    """One sandbox. Made by :meth:`SandboxClient.create` (or ``get`` /
    ``list``). As a context manager it stops the sandbox on leaving."""

    def __init__(self, client: "SandboxClient", info: Any) -> None:
        self._client = client
        self._info = info

    def _target(self) -> Tuple[Connection, str]:
        return self._client._conn, self._info.id

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def state(self) -> str:
        """"creating", "running", "stopping", "stopped", "expired" or
        "failed", as of the last call (see ``refresh()``)."""
        return _STATES.get(self._info.state, "unspecified")

    @property
    def reason(self) -> str:
        """Why it stopped or failed ("lifetime expired", "out of memory", ...)."""
        return self._info.reason

    @property
    def tenant(self) -> str:
        return self._info.tenant

    @property
    def info(self) -> Any:
        """The full hutch.v1.Sandbox message as of the last call."""
        return self._info

    @property
    def ports(self) -> Dict[int, str]:
        """Sandbox port -> "host:port" where hutchd forwards it."""
        return {p.sandbox_port: p.host_address for p in self._info.ports}

    @property
    def client(self) -> "SandboxClient":
        return self._client

    @property
    def addresses(self) -> List[str]:
        """The sandbox's addresses (CIDR), its tunnels' among them."""
        return list(self._info.addresses)

    def tunnel_address(self, tunnel: Union[str, "Tunnel"]) -> str:
        """This sandbox's address in a tunnel it is in ("10.250.0.2")."""
        from .tunnel import Tunnel
        name = tunnel.name if isinstance(tunnel, Tunnel) else str(tunnel)
        return Tunnel(name, client=self._client).address_of(self.id)

    def refresh(self) -> "Sandbox":
        """Re-reads the sandbox's record."""
        self._info = self._client._conn.unary("Sandboxes/Get", pb.GetSandboxRequest(id=self.id),
                                              pb.Sandbox)
        return self

    def stop(self, grace: Optional[Duration] = None) -> "Sandbox":
        """Stops the sandbox (its processes get `grace` to exit after
        SIGTERM). Stopping a sandbox that already ended is not an error."""
        if self.state not in _LIVE:
            return self
        try:
            self._info = self._client._conn.unary(
                "Sandboxes/Stop", pb.StopSandboxRequest(id=self.id, grace_ms=_units.millis(grace, "grace")),
                pb.Sandbox, timeout=None if grace is None else _units.seconds(grace, "grace") + 120)
        except (NotFoundError, FailedPreconditionError):
            try:
                self.refresh()
            except NotFoundError:
                pass
            if self.state in _LIVE:
                raise
        self._client._forget(self)
        return self

    def delete(self) -> None:
        """Removes the sandbox's record (stopping it first if needed)."""
        if self.state in _LIVE:
            self.stop()
        self._client._conn.unary("Sandboxes/Delete", pb.DeleteSandboxRequest(id=self.id),
                                 pb.DeleteSandboxResponse)

    def update_network_policies(self, policies: Iterable[Union[str, "NetworkPolicy"]] = (),
                                default: bool = False) -> "Sandbox":
        """Replaces the network policies bound to the running sandbox (new
        connections follow within 100 ms). default=True with no policies:
        back to the daemon's default egress."""
        names = self._client._policy_names(policies)
        self._info = self._client._conn.unary(
            "Sandboxes/UpdatePolicies", pb.UpdateSandboxPoliciesRequest(
                id=self.id, network_policies=names, default_policy=default), pb.Sandbox)
        return self

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<Sandbox %s%s %s>" % (self.id, " (%s)" % self.name if self.name else "", self.state)


class DaemonStatus:
    """hutchd's Status answer."""

    def __init__(self, m: Any) -> None:
        self.version: str = m.version
        self.state_dir: str = m.state_dir
        self.tenant: str = m.tenant
        self.started_unix: int = m.started_unix
        self.sandboxes_running: int = m.sandboxes_running
        self.abi = (m.abi_major, m.abi_minor)
        self.plugins: List[Dict[str, Any]] = [
            {"name": p.name, "kind": p.kind, "version": p.version, "path": p.path,
             "description": p.description,
             "capabilities": {c.key: c.value for c in p.capabilities}} for p in m.plugins]
        self.raw = m

    def plugin(self, kind: str) -> Optional[Dict[str, Any]]:
        """The first plugin of that kind ("runtime", "network", ...), or None."""
        for p in self.plugins:
            if p["kind"] == kind:
                return p
        return None

    def __repr__(self) -> str:
        return "<hutchd %s tenant=%s plugins=%s>" % (
            self.version, self.tenant, ",".join(p["name"] for p in self.plugins))


class SandboxClient:
    """A connection to hutchd, and the way to make sandboxes.

    ``SandboxClient()`` connects to ``$HUTCH_ADDRESS`` (TCP+TLS, with
    ``$HUTCH_API_KEY`` and ``$HUTCH_CA_FILE``) or ``$HUTCH_SOCKET`` or
    /run/hutch/hutchd.sock; the arguments say so explicitly (see
    :class:`hutch._rpc.Connection`). Thread-safe.

    As a context manager it stops the sandboxes created through it that are
    still running, then closes the connection."""

    def __init__(self, socket: Optional[str] = None, *, address: Optional[str] = None,
                 api_key: Optional[str] = None, ca_file: Optional[str] = None,
                 plaintext: bool = False, tls_server_name: Optional[str] = None,
                 timeout: float = 60.0) -> None:
        self._conn = Connection(socket, address=address, api_key=api_key, ca_file=ca_file,
                                plaintext=plaintext, tls_server_name=tls_server_name,
                                timeout=timeout)
        self._lock = threading.Lock()
        self._created: Dict[str, Sandbox] = {}

    @property
    def address(self) -> str:
        return self._conn.display

    def status(self) -> DaemonStatus:
        """hutchd's version, plugins and the caller's tenant."""
        return DaemonStatus(self._conn.unary("Daemon/Status", daemon_pb2.StatusRequest(),
                                             daemon_pb2.StatusResponse))

    # ---- create ----

    def create(self, image: Union[str, "Image", None] = None,
               cpu: Union[str, float, None] = None,
               memory: Union[str, int, None] = None,
               network_policies: Iterable[Union[str, "NetworkPolicy"]] = (),
               tunnels: Iterable[Union[str, "Tunnel"]] = (),
               secrets: Iterable["Secret"] = (),
               lifetime: Optional[Duration] = None,
               *, name: Optional[str] = None, gpu: Union[str, int, None] = None,
               env: EnvLike = None, workdir: Optional[str] = None,
               labels: Optional[Mapping[str, str]] = None,
               ports: Iterable[int] = (), idle_timeout: Optional[Duration] = None,
               pids: Optional[int] = None, disk: Union[str, int, None] = None,
               volumes: Optional[Mapping[str, Union[str, "Volume"]]] = None,
               command: Sequence[str] = ()) -> Sandbox:
        """Creates a sandbox and returns it once it runs.

        image: "busybox" (the default, built in), an image name hutchd
        knows, or an :class:`Image`. cpu: cores ("1", "0.5", "250m", 2).
        memory: "512Mi", "2Gi" (a bare number is MiB). lifetime: "1h", "30m",
        seconds. network_policies: NetworkPolicy objects (applied first) or
        names. secrets: :class:`Secret` objects. ports: TCP ports hutchd
        forwards from host loopback (see ``Sandbox.ports``). volumes: mount
        path -> volume name. command: the sandbox's main process (default:
        none; the sandbox idles)."""
        spec = self._spec(image=image, cpu=cpu, memory=memory,
                          network_policies=network_policies, tunnels=tunnels, secrets=secrets,
                          lifetime=lifetime, name=name, gpu=gpu, env=env, workdir=workdir,
                          labels=labels, ports=ports, idle_timeout=idle_timeout, pids=pids,
                          disk=disk, volumes=volumes, command=command)
        info = self._conn.unary("Sandboxes/Create", pb.CreateSandboxRequest(spec=spec), pb.Sandbox,
                                timeout=max(self._conn.timeout, 600.0))
        sb = Sandbox(self, info)
        with self._lock:
            self._created[sb.id] = sb
        return sb

    def _spec(self, *, image: Any, cpu: Any, memory: Any, network_policies: Any, tunnels: Any,
              secrets: Any, lifetime: Any, name: Any, gpu: Any, env: Any, workdir: Any,
              labels: Any, ports: Any, idle_timeout: Any, pids: Any, disk: Any, volumes: Any,
              command: Any) -> Any:
        from .secret import Secret
        from ._unsupported import Volume
        from .tunnel import Tunnel

        if isinstance(ports, int):
            ports = [ports]
        spec = pb.SandboxSpec(
            name=name or "",
            cpu_millis=_units.cpu_millis(cpu),
            memory_bytes=_units.memory_bytes(memory),
            lifetime_seconds=_units.whole_seconds(lifetime, "lifetime"),
            idle_timeout_seconds=_units.whole_seconds(idle_timeout, "idle_timeout"),
            env=_kvs(env, "env"), workdir=workdir or "", labels=_kvs(labels, "labels"),
            ports=[int(p) for p in ports], pids_max=int(pids or 0),
            disk_bytes=_units.memory_bytes(disk, "disk"),
            gpu="" if gpu is None else str(gpu),
            command=list(command))
        for s in secrets or ():
            if not isinstance(s, Secret):
                raise InvalidArgumentError(
                    "secrets: give Secret objects (Secret.from_env(%r), ...)" % (s,))
            spec.secrets.append(s._to_pb())
        for t in tunnels or ():
            spec.tunnels.append(t.name if isinstance(t, Tunnel) else str(t))
        for path, v in (volumes or {}).items():
            spec.volumes.append(pb.VolumeMount(name=v.name if isinstance(v, Volume) else str(v),
                                               path=path))
        if spec.volumes:
            from ._unsupported import _missing
            raise _missing("volumes", "mounting volume `%s` at %s" % (
                spec.volumes[0].name, spec.volumes[0].path))
        spec.network_policies.extend(self._policy_names(network_policies))
        spec.image = self._image_ref(image)
        return spec

    def _image_ref(self, image: Any) -> str:
        from .image import Image
        if image is None:
            return ""
        if isinstance(image, str):
            return image
        if isinstance(image, Image):
            return image._resolve(self)
        raise InvalidArgumentError("image: give an image name or an Image, not %r" % (image,))

    def _policy_names(self, policies: Iterable[Any]) -> List[str]:
        from .network import NetworkPolicy
        if isinstance(policies, (str, NetworkPolicy)):
            policies = [policies]
        names = []
        for p in policies or ():
            if isinstance(p, NetworkPolicy):
                p._ensure(self)
                names.append(p.name)
            elif isinstance(p, str):
                names.append(p)
            else:
                raise InvalidArgumentError("network_policies: give NetworkPolicy objects or names")
        return names

    # ---- find ----

    def get(self, id_or_name: str) -> Sandbox:
        """A sandbox by id or name (NotFoundError if the caller's tenant has
        none)."""
        return Sandbox(self, self._conn.unary("Sandboxes/Get", pb.GetSandboxRequest(id=id_or_name),
                                              pb.Sandbox))

    def list(self, all: bool = False, labels: Optional[Mapping[str, str]] = None) -> List[Sandbox]:
        """Running sandboxes (all=True: stopped ones too), optionally only
        those with all the given labels."""
        r = self._conn.unary("Sandboxes/List", pb.ListSandboxesRequest(
            all=all, label_selector=_kvs(labels, "labels")), pb.ListSandboxesResponse)
        return [Sandbox(self, s) for s in r.sandboxes]

    # ---- lifetime ----

    def _forget(self, sb: Sandbox) -> None:
        with self._lock:
            self._created.pop(sb.id, None)

    def stop_all(self) -> None:
        """Stops every sandbox created through this client that still runs."""
        with self._lock:
            sbs = list(self._created.values())
        errors = []
        for sb in sbs:
            try:
                sb.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Closes the connection (sandboxes keep running)."""
        self._conn.close()

    def __enter__(self) -> "SandboxClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop_all()
        finally:
            self.close()

    def __repr__(self) -> str:
        return "<SandboxClient %s>" % self._conn.display


_default_lock = threading.Lock()
_default: Optional[SandboxClient] = None


def default_client() -> SandboxClient:
    """The process-wide client that Container, NetworkPolicy & co. use when
    given none: ``SandboxClient()`` with the environment's settings."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SandboxClient()
        return _default


def set_default_client(client: Optional[SandboxClient]) -> None:
    """Replaces the process-wide client (None: make a new one on next use)."""
    global _default
    with _default_lock:
        _default = client
