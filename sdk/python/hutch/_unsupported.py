"""Objects of the API whose backends hutch does not have yet: Volume
and the function decorator. They exist with their
final signatures so that code can be written against them, and every entry
point raises CapabilityMissingError naming what is missing: nothing here
ever silently does nothing."""
from __future__ import annotations

from typing import (TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, TypeVar,
                    Union, overload)

from .errors import CapabilityMissingError

if TYPE_CHECKING:  # pragma: no cover
    from .image import Image
    from .sandbox import SandboxClient
    from .secret import Secret

F = TypeVar("F", bound=Callable[..., Any])
Duration = Union[str, int, float]

_WHY = {
    "volumes": "volumes are not available in this hutch yet: hutchd has no volumes service "
               "(hutch.v1.Volumes) and does not mount volumes into sandboxes "
               "(capability `volumes` missing)",
    "functions": "functions are not available in this hutch yet: hutchd has no functions "
                 "service (hutch.v1.Functions; capability `functions` missing)",
}


def _missing(capability: str, what: str) -> CapabilityMissingError:
    return CapabilityMissingError(capability, "%s: %s" % (what, _WHY[capability]))


class Volume:
    """A named, persistent file system that sandboxes mount
    (``Container.mount_volume(name, path)``). Not available yet: every
    constructor raises CapabilityMissingError("volumes")."""

    name: str

    def __init__(self, name: str, *, version: Optional[str] = None,
                 client: Optional["SandboxClient"] = None) -> None:
        raise _missing("volumes", "Volume(%r)" % (name,))

    @classmethod
    def from_name(cls, name: str, *, create_if_missing: bool = False,
                  version: Optional[str] = None,
                  client: Optional["SandboxClient"] = None) -> "Volume":
        raise _missing("volumes", "Volume.from_name(%r)" % (name,))

    @classmethod
    def ephemeral(cls, *, client: Optional["SandboxClient"] = None) -> "Volume":
        raise _missing("volumes", "Volume.ephemeral()")

    @classmethod
    def list(cls, *, client: Optional["SandboxClient"] = None) -> List["Volume"]:
        raise _missing("volumes", "Volume.list()")

    @classmethod
    def delete(cls, name: str, *, client: Optional["SandboxClient"] = None) -> None:
        raise _missing("volumes", "Volume.delete(%r)" % (name,))

    # Methods of a volume (unreachable until volumes exist).
    def listdir(self, path: str = "/", recursive: bool = False) -> List[Any]:
        raise _missing("volumes", "Volume.listdir()")

    def read_file(self, path: str) -> bytes:
        raise _missing("volumes", "Volume.read_file()")

    def write_file(self, path: str, data: Union[bytes, str]) -> int:
        raise _missing("volumes", "Volume.write_file()")

    def remove_file(self, path: str, recursive: bool = False) -> None:
        raise _missing("volumes", "Volume.remove_file()")

    def commit(self) -> None:
        raise _missing("volumes", "Volume.commit()")

    def reload(self) -> None:
        raise _missing("volumes", "Volume.reload()")




@overload
def function(_fn: F) -> F: ...


@overload
def function(*, image: Union[str, "Image", None] = None, cpu: Union[str, float, None] = None,
             memory: Union[str, int, None] = None, gpu: Union[str, int, None] = None,
             secrets: Iterable["Secret"] = (), volumes: Optional[Mapping[str, Any]] = None,
             timeout: Optional[Duration] = None, retries: int = 0, name: Optional[str] = None,
             client: Optional["SandboxClient"] = None) -> Callable[[F], F]: ...


def function(_fn: Optional[F] = None, *, image: Union[str, "Image", None] = None,
             cpu: Union[str, float, None] = None, memory: Union[str, int, None] = None,
             gpu: Union[str, int, None] = None, secrets: Iterable["Secret"] = (),
             volumes: Optional[Mapping[str, Any]] = None, timeout: Optional[Duration] = None,
             retries: int = 0, name: Optional[str] = None,
             client: Optional["SandboxClient"] = None) -> Any:
    """Makes a Python function run remotely in a sandbox (``f.remote(...)``,
    ``f.map(...)``, ``f.spawn(...)``). Usable as ``@function`` or
    ``@function(cpu="2", ...)``. Not available yet: both forms raise
    CapabilityMissingError("functions") where they are applied, so that a
    program never runs with its remote functions silently local."""
    what = "@function" if _fn is None or not callable(_fn) else \
        "@function on %s" % getattr(_fn, "__qualname__", repr(_fn))
    raise _missing("functions", what)
