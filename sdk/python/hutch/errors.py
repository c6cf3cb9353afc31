"""Exceptions. Every failure of a call to hutchd is a :class:`HutchError`
subclass chosen by the gRPC status code, carrying the server's one-line
message; client-side refusals (bad arguments, capabilities this hutch does
not have yet) use the same hierarchy."""
from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "HutchError", "CancelledError", "UnknownError", "InvalidArgumentError",
    "DeadlineExceededError", "NotFoundError", "AlreadyExistsError",
    "PermissionDeniedError", "ResourceExhaustedError", "FailedPreconditionError",
    "AbortedError", "OutOfRangeError", "UnimplementedError", "InternalError",
    "UnavailableError", "DataLossError", "UnauthenticatedError",
    "CapabilityMissingError", "ExecError", "ConnectionFailedError",
]


class HutchError(Exception):
    """Base class. ``code`` is the gRPC status code (``grpc.StatusCode``)
    and ``message`` the server's message (or the client's, for errors
    raised before any call)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class CancelledError(HutchError):
    code = grpc.StatusCode.CANCELLED


class UnknownError(HutchError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(HutchError, ValueError):
    """A bad spec or argument, found by hutchd or already by the client
    (e.g. memory="lots")."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(HutchError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(HutchError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(HutchError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(HutchError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(HutchError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(HutchError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(HutchError):
    code = grpc.StatusCode.ABORTED


class OutOfRangeError(HutchError):
    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(HutchError, NotImplementedError):
    """hutchd does not do this: the feature's plugin is not configured, or
    the feature does not exist in this hutch yet."""
    code = grpc.StatusCode.UNIMPLEMENTED


class CapabilityMissingError(UnimplementedError):
    """Raised by the SDK itself for a capability whose backend does not
    exist in hutch yet (volumes, tunnels, scaling groups, functions, image
    builds). ``capability`` names it."""

    def __init__(self, capability: str, message: str) -> None:
        super().__init__(message)
        self.capability = capability


class InternalError(HutchError):
    code = grpc.StatusCode.INTERNAL


class UnavailableError(HutchError):
    """hutchd cannot be reached, or the sandbox stopped or died under the
    call (the message says why, e.g. "out of memory")."""
    code = grpc.StatusCode.UNAVAILABLE


class ConnectionFailedError(UnavailableError, ConnectionError):
    """No connection to hutchd at all (wrong socket, daemon not running)."""


class DataLossError(HutchError):
    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(HutchError):
    """TCP without a valid API key."""
    code = grpc.StatusCode.UNAUTHENTICATED


class ExecError(HutchError):
    """Raised by :meth:`ExecResult.check` for a command that failed.
    ``result`` is the :class:`ExecResult`."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


_BY_CODE: Dict[grpc.StatusCode, Type[HutchError]] = {
    cls.code: cls for cls in (
        CancelledError, UnknownError, InvalidArgumentError, DeadlineExceededError,
        NotFoundError, AlreadyExistsError, PermissionDeniedError, ResourceExhaustedError,
        FailedPreconditionError, AbortedError, OutOfRangeError, UnimplementedError,
        InternalError, UnavailableError, DataLossError, UnauthenticatedError)
}


def error_class(code: grpc.StatusCode) -> Type[HutchError]:
    """The exception class for a gRPC status code."""
    return _BY_CODE.get(code, HutchError)


def from_rpc_error(e: grpc.RpcError, target: str = "") -> HutchError:
    """Turns a grpcio error into the matching HutchError. Connection
    failures (UNAVAILABLE before any answer) name the address tried."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else None) or ""
    if code == grpc.StatusCode.UNAVAILABLE and target and _is_connect_failure(details):
        return ConnectionFailedError("connect to hutchd at %s: %s" % (target, _short(details)),
                                     code)
    if not details:
        details = code.name.lower().replace("_", " ") if code else "error"
    if code == grpc.StatusCode.UNIMPLEMENTED and details.startswith("unknown method /hutch.v1."):
        # A service this hutchd does not have at all (older daemon, or a
        # capability still being built).
        service = details[len("unknown method /hutch.v1."):].split("/", 1)[0]
        details = "this hutchd has no %s service (%s)" % (service, details)
    cls = error_class(code)
    err = cls(details)
    err.code = code
    return err


def _is_connect_failure(details: str) -> bool:
    d = details.lower()
    return ("failed to connect" in d or "connection refused" in d or "no such file" in d
            or "connect failed" in d or "ssl_error" in d or "handshake" in d
            or "dns resolution failed" in d)


def _short(details: str) -> str:
    # grpc core's messages are long ("failed to connect to all addresses;
    # last error: UNKNOWN: unix:/x: No such file or directory"): keep the end.
    last = details.rsplit("last error:", 1)[-1].strip()
    return last or details
