"""hutch: run untrusted code in gVisor sandboxes, from Python.

    from hutch import Container, Image
    c = Container(image=Image.debian_slim(), cpu="2", memory="4Gi").run()
    result = c.exec("python3", "-c", "print('hello from a sandbox')")
    print(result.stdout_text)
    c.stop()

Connects to hutchd over $HUTCH_SOCKET (default /run/hutch/hutchd.sock) or
$HUTCH_ADDRESS (host:port, TLS) with $HUTCH_API_KEY. See docs/python-sdk.md.
"""
from ._exec import ExecProcess, ExecResult, ExitStatus, Output, OutputStream
from ._files import FileInfo
from ._unsupported import Volume, function
from .container import Container
from .errors import (AlreadyExistsError, CancelledError, CapabilityMissingError,
                     ConnectionFailedError, DeadlineExceededError, ExecError,
                     FailedPreconditionError, HutchError, InternalError, InvalidArgumentError,
                     NotFoundError, PermissionDeniedError, ResourceExhaustedError,
                     UnauthenticatedError, UnavailableError, UnimplementedError)
from .image import BuildEvent, BuiltImage, Image, ImageBuildError
from .network import NetworkPolicy
from .scaling_group import Response, ScalingGroup
from .sandbox import DaemonStatus, Sandbox, SandboxClient, default_client, set_default_client
from .secret import IntegrationInfo, Secret, SecretInfo
from .tunnel import Tunnel, TunnelMember, TunnelPeer

__version__ = "0.1.0"

__all__ = [
    "SandboxClient", "Sandbox", "Container", "Image", "NetworkPolicy", "Secret",
    "SecretInfo", "IntegrationInfo", "BuiltImage", "BuildEvent", "ImageBuildError",
    "Tunnel", "TunnelMember", "TunnelPeer", "Volume", "ScalingGroup", "Response", "function",
    "ExecResult", "ExecProcess", "ExitStatus", "Output", "OutputStream", "FileInfo",
    "DaemonStatus", "default_client", "set_default_client",
    "HutchError", "CancelledError", "InvalidArgumentError", "DeadlineExceededError",
    "NotFoundError", "AlreadyExistsError", "PermissionDeniedError", "ResourceExhaustedError",
    "FailedPreconditionError", "UnimplementedError", "CapabilityMissingError", "InternalError",
    "UnavailableError", "ConnectionFailedError", "UnauthenticatedError", "ExecError",
]
