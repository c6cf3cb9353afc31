"""ScalingGroup: a replicated HTTP service behind hutchd's router::

    sg = ScalingGroup(image=image, name="hello-api", port=8080,
                      min_replicas=1, max_replicas=3).deploy().wait_ready()
    resp = sg.call("/health", method="GET")
    print(resp.status_code, resp.text)
    sg.delete()

Replicas are sandboxes of the caller's tenant; the router (hutchd's
[router] listener) reaches the group at ``sg.url`` (path form,
``http://router/<tenant>/<name>/``) or ``sg.host_url``
(``http://<name>.<tenant>.<domain>``, for wildcard DNS). See
docs/services.md.
"""
from __future__ import annotations

import http.client
import json as _json
import time
import urllib.parse
from typing import (TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Union)

from . import _units
from ._proto import scaling_group_pb2 as gpb
from .errors import DeadlineExceededError, FailedPreconditionError, InvalidArgumentError
from .sandbox import Duration, EnvLike, SandboxClient, default_client

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image
    from .secret import Secret
    from ._unsupported import Volume


def _ms(d: Optional[Duration], what: str) -> int:
    if d is None:
        return 0
    return int(round(_units.seconds(d, what) * 1000))


class Response:
    """An HTTP response through the router: ``status_code``, ``headers``
    (a dict, names lower-cased), ``content`` (bytes), ``text``, ``json()``."""

    def __init__(self, status_code: int, headers: Dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 400

    def __repr__(self) -> str:
        return "<Response %d, %d bytes>" % (self.status_code, len(self.content))


def router_request(base_url: str, path: str, method: str = "GET", *, json: Any = None,
                   data: Union[bytes, str, None] = None,
                   headers: Optional[Mapping[str, str]] = None,
                   timeout: float = 60.0) -> Response:
    """One HTTP/1.1 request to base_url + path (a fresh connection)."""
    u = urllib.parse.urlsplit(base_url)
    hdrs = {k: v for k, v in (headers or {}).items()}
    body: Optional[bytes] = None
    if json is not None and data is not None:
        raise InvalidArgumentError("call: give json or data, not both")
    if json is not None:
        body = _json.dumps(json).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif data is not None:
        body = data.encode() if isinstance(data, str) else bytes(data)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        prefix = u.path.rstrip("/")
        conn.request(method, prefix + (path if path.startswith("/") else "/" + path),
                     body=body, headers=hdrs)
        r = conn.getresponse()
        content = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, content)
    finally:
        conn.close()


class ScalingGroup:
    """A replicated HTTP service. ``deploy()`` creates it (or rolls a changed
    spec out), ``wait_ready()`` waits for min_replicas ready replicas (at
    least one), ``call()`` sends a request through the router.

    image, command, cpu, memory, gpu, env, secrets (stored ones: Secret.from_env),
    workdir: as for Container; the replicas serve HTTP on ``port``.
    min_replicas 0 scales to zero after ``scaledown_window`` without a
    request; ``target_concurrency`` is the requests in flight per replica
    the autoscaler aims at; ``readiness_path`` (e.g. "/health") must answer
    2xx/3xx before a replica takes requests (default: the port accepting).
    ``replica_lifetime`` bounds how long one replica lives (default: the
    daemon's longest sandbox lifetime, not its default one); a replica near
    its end is replaced first and then drained, so no request fails."""

    def __init__(self, image: Union[str, "Image", None] = None, name: Optional[str] = None,
                 port: int = 8080, *, min_replicas: int = 1, max_replicas: Optional[int] = None,
                 command: Sequence[str] = (), cpu: Union[str, float, None] = None,
                 memory: Union[str, int, None] = None, gpu: Union[str, int, None] = None,
                 env: EnvLike = None, secrets: Iterable["Secret"] = (),
                 volumes: Optional[Mapping[str, Union[str, "Volume"]]] = None,
                 workdir: Optional[str] = None, target_concurrency: Optional[int] = None,
                 max_concurrency: Optional[int] = None,
                 scaledown_window: Optional[Duration] = None,
                 readiness_path: Optional[str] = None,
                 replica_lifetime: Optional[Duration] = None,
                 client: Optional[SandboxClient] = None) -> None:
        if not name:
            raise InvalidArgumentError("ScalingGroup: name= is required (it becomes a DNS label)")
        self.image = image
        self.name = name
        self.port = int(port)
        self.min_replicas = int(min_replicas)
        self.max_replicas = int(max_replicas) if max_replicas is not None else max(1, self.min_replicas)
        self.command = list(command)
        self.cpu = cpu
        self.memory = memory
        self.gpu = gpu
        self.env = dict(env or {})
        self.secrets = list(secrets or ())
        self.volumes = dict(volumes or {})
        self.workdir = workdir
        self.target_concurrency = target_concurrency
        self.max_concurrency = max_concurrency
        self.scaledown_window = scaledown_window
        self.readiness_path = readiness_path
        self.replica_lifetime = replica_lifetime
        self._client = client
        self._info: Any = None

    # ---- the client and the spec ----

    @property
    def client(self) -> SandboxClient:
        if self._client is None:
            self._client = default_client()
        return self._client

    def _spec(self) -> Any:
        tmpl = self.client._spec(image=self.image, cpu=self.cpu, memory=self.memory,
                                 network_policies=(), tunnels=(), secrets=self.secrets,
                                 lifetime=self.replica_lifetime, name=None, gpu=self.gpu,
                                 env=self.env,
                                 workdir=self.workdir, labels=None, ports=(),
                                 idle_timeout=None, pids=None, disk=None, volumes=self.volumes,
                                 command=self.command)
        return gpb.ScalingGroupSpec(
            name=self.name, template=tmpl, port=self.port, min_replicas=self.min_replicas,
            max_replicas=self.max_replicas, target_concurrency=int(self.target_concurrency or 0),
            max_concurrency=int(self.max_concurrency or 0),
            scaledown_window_ms=_ms(self.scaledown_window, "scaledown_window"),
            readiness_path=self.readiness_path or "")

    @classmethod
    def from_name(cls, name: str, *, client: Optional[SandboxClient] = None) -> "ScalingGroup":
        """The deployed group `name` of the caller's tenant (NotFoundError if none)."""
        c = client or default_client()
        info = c._conn.unary("ScalingGroups/Get", gpb.GetScalingGroupRequest(name=name),
                             gpb.ScalingGroup)
        sg = cls(name=name, port=info.spec.port, min_replicas=info.spec.min_replicas,
                 max_replicas=info.spec.max_replicas, client=c)
        sg._info = info
        return sg

    @classmethod
    def list(cls, *, client: Optional[SandboxClient] = None) -> List["ScalingGroup"]:
        c = client or default_client()
        resp = c._conn.unary("ScalingGroups/List", gpb.ListScalingGroupsRequest(),
                             gpb.ListScalingGroupsResponse)
        out = []
        for info in resp.groups:
            sg = cls(name=info.spec.name, port=info.spec.port, client=c,
                     min_replicas=info.spec.min_replicas, max_replicas=info.spec.max_replicas)
            sg._info = info
            out.append(sg)
        return out

    # ---- life ----

    def deploy(self) -> "ScalingGroup":
        """Creates the group, or rolls the changed spec out (new replicas
        first, old ones drained once the new ones are ready)."""
        self._info = self.client._conn.unary(
            "ScalingGroups/Deploy", gpb.DeployScalingGroupRequest(spec=self._spec()),
            gpb.ScalingGroup, timeout=max(self.client._conn.timeout, 600.0))
        return self

    def refresh(self) -> "ScalingGroup":
        self._info = self.client._conn.unary("ScalingGroups/Get",
                                             gpb.GetScalingGroupRequest(name=self.name),
                                             gpb.ScalingGroup)
        return self

    def wait_ready(self, timeout: Optional[Duration] = 120.0, *,
                   replicas: Optional[int] = None) -> "ScalingGroup":
        """Waits until `replicas` (default: min_replicas, at least 1) replicas
        of the current revision are ready. A group at zero is woken up by
        the first request instead; with min_replicas 0 this returns at
        once."""
        want = self.min_replicas if replicas is None else replicas
        secs = 120.0 if timeout is None else _units.seconds(timeout, "timeout")
        deadline = time.monotonic() + secs
        delay = 0.01
        while True:
            info = self.refresh()._info
            ready = sum(1 for r in info.replicas
                        if r.state == gpb.REPLICA_STATE_READY and r.revision == info.revision)
            if ready >= want:
                return self
            if time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    "scaling group %s: %d of %d replicas ready after %.0f s"
                    % (self.name, ready, want, secs))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def scale(self, min_replicas: int, max_replicas: Optional[int] = None) -> "ScalingGroup":
        """New bounds (max_replicas None: keep, raised to min_replicas if below)."""
        self._info = self.client._conn.unary(
            "ScalingGroups/Scale", gpb.ScaleScalingGroupRequest(
                name=self.name, min_replicas=int(min_replicas),
                max_replicas=int(max_replicas or 0)), gpb.ScalingGroup)
        self.min_replicas = self._info.spec.min_replicas
        self.max_replicas = self._info.spec.max_replicas
        return self

    def delete(self) -> None:
        """Stops every replica and forgets the group."""
        self.client._conn.unary("ScalingGroups/Delete",
                                gpb.DeleteScalingGroupRequest(name=self.name),
                                gpb.DeleteScalingGroupResponse)
        self._info = None

    def events(self, timeout: Optional[float] = None) -> Iterator[str]:
        """The group's events from now on ("replica sb-... ready", ...)."""
        for ev in self.client._conn.unary_stream(
                "ScalingGroups/Watch", gpb.WatchScalingGroupRequest(name=self.name),
                gpb.ScalingGroupEvent, timeout=timeout):
            yield ev.message

    # ---- what it looks like ----

    @property
    def info(self) -> Any:
        if self._info is None:
            raise FailedPreconditionError("scaling group %s is not deployed: call deploy()"
                                          % self.name)
        return self._info

    @property
    def url(self) -> str:
        """Through the router, path form: works without DNS."""
        return self.info.url

    @property
    def host_url(self) -> str:
        """Through the router by name: http://<name>.<tenant>.<domain>[:port]."""
        return self.info.host_url

    @property
    def replicas(self) -> List[Dict[str, Any]]:
        names = {gpb.REPLICA_STATE_STARTING: "starting", gpb.REPLICA_STATE_READY: "ready",
                 gpb.REPLICA_STATE_DRAINING: "draining"}
        return [{"sandbox_id": r.sandbox_id, "state": names.get(r.state, "unknown"),
                 "revision": r.revision, "in_flight": r.in_flight}
                for r in self.refresh().info.replicas]

    def call(self, path: str = "/", method: str = "GET", *, json: Any = None,
             data: Union[bytes, str, None] = None, headers: Optional[Mapping[str, str]] = None,
             timeout: float = 60.0) -> Response:
        """Sends one request to the group through the router."""
        return router_request(self.url, path, method, json=json, data=data, headers=headers,
                              timeout=timeout)

    def __repr__(self) -> str:
        return "<ScalingGroup %s%s>" % (self.name, "" if self._info is None
                                        else " rev %d" % self._info.revision)
