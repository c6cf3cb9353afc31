"""Tunnels: WireGuard meshes between your sandboxes (the Tunnels service,
served by hutchd's net-wireguard plugin).

    tunnel = Tunnel(name="worker-mesh")
    a = client.create(tunnels=[tunnel])
    b = client.create(tunnels=[tunnel])
    a.exec("ping", b.tunnel_address(tunnel))

Each member gets an interface inside its sandbox with one address of the
tunnel's subnet and every other member as a peer; its keys are made for
the session by hutchd and never enter the sandbox. A tunnel named by a
sandbox that does not exist yet is made then, and goes with its last
member; ``create()`` makes one that stays (optionally on a chosen subnet).
Names are per tenant."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Union

from ._proto import tunnel_pb2 as pb
from .errors import InvalidArgumentError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox, SandboxClient


def _client(client: Optional["SandboxClient"]) -> "SandboxClient":
    if client is not None:
        return client
    from .sandbox import default_client
    return default_client()


class TunnelMember:
    """One sandbox in a tunnel, as hutchd reported it."""

    def __init__(self, m: Any) -> None:
        self.sandbox_id: str = m.sandbox_id
        self.address: str = m.address.split("/")[0]  # "10.250.0.2"
        self.cidr: str = m.address                   # "10.250.0.2/24"
        self.interface: str = m.interface            # "wg0", inside the sandbox
        self.public_key: str = m.public_key          # base64; new every session
        self.joined_unix: int = m.joined_unix
        self.last_handshake_unix: int = m.last_handshake_unix  # 0: none yet

    def __repr__(self) -> str:
        return "TunnelMember(%r, %r)" % (self.sandbox_id, self.cidr)


class TunnelPeer:
    """An external peer of a tunnel, as hutchd reported it."""

    def __init__(self, p: Any) -> None:
        self.name: str = p.name
        self.public_key: str = p.public_key
        self.endpoint: str = p.endpoint                 # "" when it calls in
        self.allowed_ips: List[str] = list(p.allowed_ips)
        self.address: str = p.address.split("/")[0]     # its address in the tunnel
        self.last_handshake_unix: int = p.last_handshake_unix

    def __repr__(self) -> str:
        return "TunnelPeer(%r, %r)" % (self.name, self.allowed_ips)


class Tunnel:
    """A tunnel, by name. Constructing one asks hutchd nothing: pass it to
    ``SandboxClient.create(tunnels=[...])`` (or ``Container``), or call
    ``create()``, ``refresh()``, ``members``."""

    def __init__(self, name: str, *, subnet: Optional[str] = None,
                 client: Optional["SandboxClient"] = None) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("a tunnel needs a name")
        self.name = name
        self.subnet = subnet or ""
        self.persistent = False
        self.gateway_public_key = ""
        self.gateway_endpoint = ""
        self._members: List[TunnelMember] = []
        self._peers: List[TunnelPeer] = []
        self._client = client

    def __repr__(self) -> str:
        return "Tunnel(%r)" % (self.name,)

    def _load(self, m: Any) -> "Tunnel":
        self.name = m.name
        self.subnet = m.subnet
        self.persistent = m.persistent
        self._members = [TunnelMember(x) for x in m.members]
        self._peers = [TunnelPeer(x) for x in m.peers]
        self.gateway_public_key = m.gateway_public_key
        self.gateway_endpoint = m.gateway_endpoint
        return self

    def _conn(self) -> Any:
        return _client(self._client)._conn

    @classmethod
    def from_name(cls, name: str, *, client: Optional["SandboxClient"] = None) -> "Tunnel":
        """The tunnel as hutchd has it now; NotFoundError when there is none."""
        t = cls(name, client=client)
        return t.refresh()

    @classmethod
    def list(cls, *, client: Optional["SandboxClient"] = None) -> List["Tunnel"]:
        resp = _client(client)._conn.unary("Tunnels/List", pb.ListTunnelsRequest(),
                                           pb.ListTunnelsResponse)
        return [cls(m.name, client=client)._load(m) for m in resp.tunnels]

    def create(self) -> "Tunnel":
        """Makes the tunnel so that it stays without members (on ``subnet``,
        if given); AlreadyExistsError when it exists."""
        m = self._conn().unary("Tunnels/Create",
                               pb.CreateTunnelRequest(name=self.name, subnet=self.subnet),
                               pb.Tunnel)
        return self._load(m)

    def refresh(self) -> "Tunnel":
        return self._load(self._conn().unary("Tunnels/Get", pb.GetTunnelRequest(name=self.name),
                                             pb.Tunnel))

    def delete(self) -> None:
        """Deletes an empty tunnel (refused while sandboxes are in it)."""
        self._conn().unary("Tunnels/Delete", pb.DeleteTunnelRequest(name=self.name),
                           pb.DeleteTunnelResponse)

    @property
    def members(self) -> List[TunnelMember]:
        """The members as of now (asks hutchd)."""
        return list(self.refresh()._members)

    @property
    def peers(self) -> List[TunnelPeer]:
        """The external peers as of now (asks hutchd)."""
        return list(self.refresh()._peers)

    def add_peer(self, name: str, public_key: str, allowed_ips: Union[str, List[str]],
                 endpoint: Optional[str] = None) -> "Tunnel":
        """Adds an external WireGuard peer (the tunnel then stays): members
        reach it, and the networks in allowed_ips behind it, through the
        tunnel's gateway; ``peer_config(name)`` is the file for its side."""
        if isinstance(allowed_ips, str):
            allowed_ips = [allowed_ips]
        peer = pb.TunnelPeer(name=name, public_key=public_key, endpoint=endpoint or "",
                             allowed_ips=list(allowed_ips))
        return self._load(self._conn().unary(
            "Tunnels/AddPeer", pb.AddTunnelPeerRequest(tunnel=self.name, peer=peer), pb.Tunnel))

    def remove_peer(self, name: str) -> "Tunnel":
        return self._load(self._conn().unary(
            "Tunnels/RemovePeer", pb.RemoveTunnelPeerRequest(tunnel=self.name, name=name),
            pb.Tunnel))

    def peer_config(self, name: str) -> str:
        """A wg-quick file for the peer's side (its private key left out)."""
        return self._conn().unary("Tunnels/PeerConfig",
                                  pb.TunnelPeerConfigRequest(tunnel=self.name, name=name),
                                  pb.TunnelPeerConfig).text

    def address_of(self, sandbox: Union[str, "Sandbox"]) -> str:
        """The tunnel address of a member sandbox (id or Sandbox)."""
        sid = sandbox if isinstance(sandbox, str) else sandbox.id
        for m in self.members:
            if m.sandbox_id == sid:
                return m.address
        raise NotFoundError("sandbox %s is not in tunnel %s" % (sid, self.name))
