"""Network policies: what a sandbox may reach (the NetworkPolicies service).

Several policies may be bound to one sandbox: allows add up, any deny
wins; a sandbox with none gets the daemon's default egress."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, List, Optional

from ._proto import policy_pb2 as pb
from .errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import SandboxClient


def _client(client: Optional["SandboxClient"]) -> "SandboxClient":
    if client is not None:
        return client
    from .sandbox import default_client
    return default_client()


def _strs(v: Iterable[str], what: str) -> List[str]:
    if isinstance(v, str):
        v = [v]
    out = []
    for s in v or ():
        if not isinstance(s, str):
            raise InvalidArgumentError("%s: %r is not a string" % (what, s))
        out.append(s)
    return out


class NetworkPolicy:
    """A named policy. Define it in code, then ``create()`` or ``apply()``
    it, or pass it to ``SandboxClient.create(network_policies=[...])`` /
    ``Container(network_policies=[...])``, which apply it first.

    allowed_hostnames: "api.example.com", "*.example.com" (subdomains only).
    allowed_cidrs / denied_cidrs: "10.1.0.0/16", "2001:db8::/32"."""

    def __init__(self, name: str, allow_all: bool = False,
                 allowed_hostnames: Iterable[str] = (), description: str = "", *,
                 allowed_cidrs: Iterable[str] = (), denied_hostnames: Iterable[str] = (),
                 denied_cidrs: Iterable[str] = (), client: Optional["SandboxClient"] = None) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("a network policy needs a name")
        self.name = name
        self.allow_all = bool(allow_all)
        self.allowed_hostnames = _strs(allowed_hostnames, "allowed_hostnames")
        self.allowed_cidrs = _strs(allowed_cidrs, "allowed_cidrs")
        self.denied_hostnames = _strs(denied_hostnames, "denied_hostnames")
        self.denied_cidrs = _strs(denied_cidrs, "denied_cidrs")
        self.description = description or ""
        self._client = client
        # Set from hutchd's answers.
        self.tenant = ""
        self.created_unix_ms = 0
        self.updated_unix_ms = 0
        self.bound_sandboxes: List[str] = []
        self._synced: Optional[bytes] = None  # the definition hutchd has, as far as we know

    def _to_pb(self) -> Any:
        return pb.NetworkPolicy(name=self.name, allow_all=self.allow_all,
                                allowed_hostnames=self.allowed_hostnames,
                                allowed_cidrs=self.allowed_cidrs,
                                denied_hostnames=self.denied_hostnames,
                                denied_cidrs=self.denied_cidrs, description=self.description)

    def _definition(self) -> bytes:
        return self._to_pb().SerializeToString(deterministic=True)

    def _load(self, m: Any) -> "NetworkPolicy":
        self.name = m.name
        self.allow_all = m.allow_all
        self.allowed_hostnames = list(m.allowed_hostnames)
        self.allowed_cidrs = list(m.allowed_cidrs)
        self.denied_hostnames = list(m.denied_hostnames)
        self.denied_cidrs = list(m.denied_cidrs)
        self.description = m.description
        self.tenant = m.tenant
        self.created_unix_ms = m.created_unix_ms
        self.updated_unix_ms = m.updated_unix_ms
        self.bound_sandboxes = list(m.bound_sandboxes)
        self._synced = self._definition()
        return self

    @classmethod
    def _from_pb(cls, m: Any, client: Optional["SandboxClient"]) -> "NetworkPolicy":
        p = cls(m.name or "_", client=client)
        return p._load(m)

    # ---- calls ----

    def create(self, client: Optional["SandboxClient"] = None, replace: bool = False) -> "NetworkPolicy":
        """Creates the policy in hutchd (AlreadyExistsError if the name is
        taken, unless replace=True: then running sandboxes bound to it
        follow the new definition at once). Returns self, updated."""
        c = _client(client or self._client)
        self._client = c
        m = c._conn.unary("NetworkPolicies/Create", pb.CreateNetworkPolicyRequest(
            policy=self._to_pb(), replace=replace), pb.NetworkPolicy)
        return self._load(m)

    def apply(self, client: Optional["SandboxClient"] = None) -> "NetworkPolicy":
        """Creates or replaces the policy: hutchd's copy becomes this one."""
        return self.create(client, replace=True)

    def refresh(self) -> "NetworkPolicy":
        """Re-reads the policy from hutchd."""
        c = _client(self._client)
        return self._load(c._conn.unary("NetworkPolicies/Get",
                                        pb.GetNetworkPolicyRequest(name=self.name),
                                        pb.NetworkPolicy))

    def delete(self, client: Optional["SandboxClient"] = None) -> None:
        """Deletes the policy from hutchd."""
        c = _client(client or self._client)
        c._conn.unary("NetworkPolicies/Delete", pb.DeleteNetworkPolicyRequest(name=self.name),
                      pb.DeleteNetworkPolicyResponse)
        self._synced = None

    def _ensure(self, client: "SandboxClient") -> None:
        """Makes sure hutchd has this definition (used when a sandbox names
        the policy)."""
        if self._synced != self._definition() or self._client is not client:
            self.apply(client)

    @classmethod
    def get(cls, name: str, client: Optional["SandboxClient"] = None) -> "NetworkPolicy":
        """The policy of that name (NotFoundError if there is none)."""
        c = _client(client)
        return cls._from_pb(c._conn.unary("NetworkPolicies/Get",
                                          pb.GetNetworkPolicyRequest(name=name), pb.NetworkPolicy), c)

    @classmethod
    def list(cls, client: Optional["SandboxClient"] = None) -> List["NetworkPolicy"]:
        """All policies of the caller's tenant."""
        c = _client(client)
        r = c._conn.unary("NetworkPolicies/List", pb.ListNetworkPoliciesRequest(),
                          pb.ListNetworkPoliciesResponse)
        return [cls._from_pb(m, c) for m in r.policies]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NetworkPolicy) and other._definition() == self._definition()

    def __hash__(self) -> int:
        return hash(self._definition())

    def __repr__(self) -> str:
        parts = ["name=%r" % self.name]
        if self.allow_all:
            parts.append("allow_all=True")
        for f in ("allowed_hostnames", "allowed_cidrs", "denied_hostnames", "denied_cidrs"):
            v = getattr(self, f)
            if v:
                parts.append("%s=%r" % (f, v))
        return "NetworkPolicy(%s)" % ", ".join(parts)
