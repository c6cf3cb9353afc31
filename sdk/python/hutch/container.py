"""Container: a sandbox described up front, then run::

    c = Container(image=Image.debian_slim(), cpu="2", memory="4Gi").run()
    print(c.exec("python3", "-c", "print(1)").stdout_text)
    c.stop()
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._rpc import Connection
from .errors import FailedPreconditionError, InvalidArgumentError
from .sandbox import Duration, EnvLike, Sandbox, SandboxClient, _SandboxOps, default_client

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image
    from .network import NetworkPolicy
    from .secret import Secret
    from ._unsupported import Volume
    from .tunnel import Tunnel


class Container(_SandboxOps):
    """A sandbox's description; ``run()`` starts it. Then the sandbox's calls
    (``exec``, ``exec_stream``, files, ``stop``) work on the container.

    port: one TCP port (or a list) that hutchd forwards from host loopback
    (``addresses`` says where). As a context manager, ``with Container(...)
    as c:`` runs the container if it is not running yet and stops it on
    leaving. client: the SandboxClient to use (default: one from the
    environment, shared by the process)."""

    def __init__(self, image: Union[str, "Image", None] = None, name: Optional[str] = None,
                 cpu: Union[str, float, None] = None, memory: Union[str, int, None] = None,
                 gpu: Union[str, int, None] = None, lifetime: Optional[Duration] = None,
                 port: Union[int, Sequence[int], None] = None,
                 secrets: Iterable["Secret"] = (), *,
                 network_policies: Iterable[Union[str, "NetworkPolicy"]] = (),
                 tunnels: Iterable[Union[str, "Tunnel"]] = (), env: EnvLike = None,
                 workdir: Optional[str] = None, labels: Optional[Mapping[str, str]] = None,
                 idle_timeout: Optional[Duration] = None, pids: Optional[int] = None,
                 disk: Union[str, int, None] = None, command: Sequence[str] = (),
                 client: Optional[SandboxClient] = None) -> None:
        self.image = image
        self.name = name
        self.cpu = cpu
        self.memory = memory
        self.gpu = gpu
        self.lifetime = lifetime
        if port is None:
            self.ports: List[int] = []
        elif isinstance(port, int):
            self.ports = [port]
        else:
            self.ports = [int(p) for p in port]
        self.secrets = list(secrets or ())
        self.network_policies = list(network_policies or ())
        self.tunnels = list(tunnels or ())
        self.env = dict(env or {})
        self.workdir = workdir
        self.labels = dict(labels or {})
        self.idle_timeout = idle_timeout
        self.pids = pids
        self.disk = disk
        self.command = list(command)
        self.volumes: Dict[str, Union[str, "Volume"]] = {}
        self._client = client
        self._sandbox: Optional[Sandbox] = None
        self._started_by_enter = False

    def mount_volume(self, name: Union[str, "Volume"], path: str) -> "Container":
        """Mounts the volume `name` at `path` once the container runs.
        Chainable, before ``run()``. (Volumes are not available in this
        hutch yet: ``run()`` then raises CapabilityMissingError("volumes").)"""
        if self._sandbox is not None:
            raise FailedPreconditionError("mount_volume: the container is already running; "
                                          "mount volumes before run()")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidArgumentError("mount_volume: the path %r must be absolute" % (path,))
        if path in self.volumes:
            raise InvalidArgumentError("mount_volume: %s is mounted twice" % path)
        self.volumes[path] = name
        return self

    @property
    def client(self) -> SandboxClient:
        if self._client is None:
            self._client = default_client()
        return self._client

    def run(self) -> "Container":
        """Creates the sandbox and returns the container, running."""
        if self._sandbox is not None and self._sandbox.state in ("creating", "running"):
            raise FailedPreconditionError("the container is already running (%s)" % self._sandbox.id)
        self._sandbox = self.client.create(
            image=self.image, cpu=self.cpu, memory=self.memory,
            network_policies=self.network_policies, tunnels=self.tunnels, secrets=self.secrets,
            lifetime=self.lifetime, name=self.name, gpu=self.gpu, env=self.env,
            workdir=self.workdir, labels=self.labels, ports=self.ports,
            idle_timeout=self.idle_timeout, pids=self.pids, disk=self.disk,
            volumes=self.volumes, command=self.command)
        return self

    @property
    def sandbox(self) -> Sandbox:
        """The running sandbox (FailedPreconditionError before ``run()``)."""
        if self._sandbox is None:
            raise FailedPreconditionError("the container is not running: call run() first")
        return self._sandbox

    def _target(self) -> Tuple[Connection, str]:
        return self.sandbox._target()

    @property
    def id(self) -> str:
        return self.sandbox.id

    @property
    def state(self) -> str:
        return self._sandbox.state if self._sandbox else "not started"

    @property
    def addresses(self) -> Dict[int, str]:
        """Container port -> "host:port" where hutchd forwards it."""
        return self.sandbox.ports

    @property
    def url(self) -> str:
        """The container's first port through hutchd's router:
        ``http://<router>/<tenant>/<sandbox id>/`` (a stable URL while it
        runs; ``<id>.<tenant>.<domain>`` by Host works too)."""
        if not self.ports:
            raise FailedPreconditionError("the container has no port: give port= to Container")
        from ._proto import scaling_group_pb2 as gpb
        info = self.client._conn.unary("ScalingGroups/Router", gpb.RouterInfoRequest(),
                                       gpb.RouterInfo)
        return "%s/%s/%s/" % (info.base_url, info.tenant, self.sandbox.id)

    def stop(self, grace: Optional[Duration] = None) -> "Container":
        """Stops the container (nothing to do if it never ran or already
        stopped)."""
        if self._sandbox is not None:
            self._sandbox.stop(grace)
        return self

    def __enter__(self) -> "Container":
        if self._sandbox is None or self._sandbox.state not in ("creating", "running"):
            self.run()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        sb = self._sandbox
        return "<Container %s%s>" % (self.name or "", " %s %s" % (sb.id, sb.state) if sb
                                     else " not started")
