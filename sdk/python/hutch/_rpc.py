"""The connection to hutchd: a grpcio channel plus hand-written method
stubs (channel.unary_unary & co. with the generated messages; no gRPC
plugin output needed), and the mapping of grpcio errors to HutchError."""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Type, TypeVar

import grpc

from .errors import HutchError, InvalidArgumentError, from_rpc_error

try:
    from . import _proto  # noqa: F401
    from ._proto import daemon_pb2, policy_pb2, sandbox_pb2  # noqa: F401  (fail early)
except ImportError as e:  # pragma: no cover - depends on the host
    raise ImportError("hutch needs protobuf >= 3.20 for Python (Debian: python3-protobuf): %s" % e) from e

DEFAULT_SOCKET = "/run/hutch/hutchd.sock"
# hutchd keeps every message it sends under the 4 MiB grpcio accepts by
# default (Run streams large output in 512 KiB pieces; files travel in
# chunks). Requests can be larger (Run's stdin, up to the server's [api]
# max_message, 16 MiB by default): allow that much both ways.
_MAX_MESSAGE = 64 * 1024 * 1024

M = TypeVar("M")


def _serialize(m: Any) -> bytes:
    return m.SerializeToString()


class Connection:
    """A channel to one hutchd. Thread-safe; share it.

    Where to connect, first match wins:
      * ``socket``: a unix socket path;
      * ``address``: "unix:/path", "/path" or "host:port" (TCP, TLS unless
        ``plaintext``, which hutchd allows on loopback only);
      * ``$HUTCH_ADDRESS`` (host:port, TLS), then ``$HUTCH_SOCKET``, then
        /run/hutch/hutchd.sock.
    Over TCP the API key (``api_key`` or ``$HUTCH_API_KEY``) is sent as
    "authorization: Bearer KEY"; the server certificate is checked against
    ``ca_file`` (or ``$HUTCH_CA_FILE``; else the system's roots).
    ``tls_server_name`` overrides the name checked in the certificate.
    """

    def __init__(self, socket: Optional[str] = None, *, address: Optional[str] = None,
                 api_key: Optional[str] = None, ca_file: Optional[str] = None,
                 plaintext: bool = False, tls_server_name: Optional[str] = None,
                 timeout: float = 60.0) -> None:
        if socket and address:
            raise InvalidArgumentError("give socket or address, not both")
        target = socket or address
        if not target:
            target = os.environ.get("HUTCH_ADDRESS") or os.environ.get("HUTCH_SOCKET") or DEFAULT_SOCKET
        if socket or target.startswith(("/", ".", "unix:")):
            path = target[5:] if target.startswith("unix:") else target
            if path.startswith("//"):  # unix:///abs/path
                path = path[2:]
            self.unix_path: Optional[str] = os.path.abspath(path)
            self.target = "unix:" + self.unix_path
            self.display = self.unix_path
            self.tls = False
        else:
            if ":" not in target:
                raise InvalidArgumentError("address %r: give host:port" % target)
            self.unix_path = None
            self.target = target
            self.display = target
            self.tls = not plaintext
        self.timeout = timeout
        key = api_key if api_key is not None else os.environ.get("HUTCH_API_KEY")
        self._metadata: Optional[List[Tuple[str, str]]] = None
        if key and self.unix_path is None:
            self._metadata = [("authorization", "Bearer " + key)]
        options: List[Tuple[str, Any]] = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            # hutchd is one machine: fail calls at once when it is not there.
            ("grpc.enable_retries", 0),
        ]
        if self.tls:
            ca = ca_file or os.environ.get("HUTCH_CA_FILE") or None
            roots = None
            if ca:
                try:
                    with open(ca, "rb") as f:
                        roots = f.read()
                except OSError as e:
                    raise InvalidArgumentError("CA file %s: %s" % (ca, e.strerror)) from None
            creds = grpc.ssl_channel_credentials(root_certificates=roots)
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(self.target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(self.target, options=options)
        self._lock = threading.Lock()
        self._closed = False

    # ---- calls ----

    def _error(self, e: grpc.RpcError) -> HutchError:
        return from_rpc_error(e, self.display)

    def unary(self, method: str, request: Any, response_class: Type[M],
              timeout: Optional[float] = -1.0) -> M:
        """Calls /hutch.v1.<method> (e.g. "Sandboxes/Get"). timeout -1: the
        connection's default; None: no deadline."""
        fn = self.channel.unary_unary("/hutch.v1." + method, request_serializer=_serialize,
                                      response_deserializer=response_class.FromString)  # type: ignore[attr-defined]
        try:
            return fn(request, timeout=self.timeout if timeout == -1.0 else timeout,
                      metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def unary_stream(self, method: str, request: Any, response_class: Type[M],
                     timeout: Optional[float] = None) -> Any:
        fn = self.channel.unary_stream("/hutch.v1." + method, request_serializer=_serialize,
                                       response_deserializer=response_class.FromString)  # type: ignore[attr-defined]
        return fn(request, timeout=timeout, metadata=self._metadata)

    def collect_stream(self, method: str, request: Any, response_class: Type[M],
                       timeout: Optional[float] = None) -> List[M]:
        """Every message of a server-streaming call, errors as HutchError."""
        try:
            return list(self.unary_stream(method, request, response_class, timeout))
        except grpc.RpcError as e:
            raise self._error(e) from None

    def stream_unary(self, method: str, requests: Iterable[Any], response_class: Type[M],
                     timeout: Optional[float] = None) -> M:
        fn = self.channel.stream_unary("/hutch.v1." + method, request_serializer=_serialize,
                                       response_deserializer=response_class.FromString)  # type: ignore[attr-defined]
        try:
            return fn(iter(requests), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def stream_stream(self, method: str, requests: Iterator[Any], response_class: Type[M]) -> Any:
        fn = self.channel.stream_stream("/hutch.v1." + method, request_serializer=_serialize,
                                        response_deserializer=response_class.FromString)  # type: ignore[attr-defined]
        return fn(requests, metadata=self._metadata)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.channel.close()

    def __repr__(self) -> str:
        return "<hutch connection %s>" % self.display
