"""Secrets: environment variables a sandbox gets without them being part of
its recorded spec.

* ``Secret.from_env(name)``: a secret kept in hutchd's store, by name;
* ``Secret.from_integration(name)``: a named integration's credentials;
* ``Secret.from_local_env(name, env_var_name=...)``, ``from_local_env_file(path)``,
  ``from_dict(name, {...})``: values the client sends along ("inline"),
  never echoed back by hutchd.

Secrets in the store are managed with ``Secret.set()``, ``Secret.info()``,
``Secret.list()`` and ``Secret.delete()`` (values go in, never out);
``Secret.list_integrations()`` shows the integrations hutchd.toml defines.
A hutchd without secret support answers UNIMPLEMENTED: creating a sandbox
with a secret then raises UnimplementedError with the server's message."""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Union

from ._proto import sandbox_pb2 as pb
from ._proto import secret_pb2 as spb
from .errors import InvalidArgumentError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import SandboxClient


class SecretInfo(NamedTuple):
    """A secret in hutchd's store: its variable names, never the values."""
    name: str
    keys: List[str]
    tenant: str
    created_unix_ms: int
    updated_unix_ms: int

    @classmethod
    def _from_pb(cls, m: Any) -> "SecretInfo":
        return cls(m.name, list(m.keys), m.tenant, m.created_unix_ms, m.updated_unix_ms)


class IntegrationInfo(NamedTuple):
    """An integration from hutchd.toml: its type and the variables it gives."""
    name: str
    type: str
    keys: List[str]


def _client(client: Optional["SandboxClient"]) -> "SandboxClient":
    if client is not None:
        return client
    from .sandbox import default_client
    return default_client()

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Secret:
    """A reference to a secret (``source`` "store" or "integration") or a
    set of values from the client (``source`` "inline")."""

    __slots__ = ("name", "source", "_values")

    def __init__(self, name: str, source: str, values: Optional[Mapping[str, str]] = None) -> None:
        if source not in ("store", "integration", "inline"):
            raise InvalidArgumentError("secret source %r: store, integration or inline" % source)
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("a secret needs a name")
        self.name = name
        self.source = source
        self._values: Dict[str, str] = dict(values or {})
        for k in self._values:
            if not _KEY.fullmatch(k):
                raise InvalidArgumentError("secret %s: %r is not an environment variable name" % (
                    name, k))

    @classmethod
    def from_env(cls, name: str) -> "Secret":
        """The secret `name` from hutchd's secret store."""
        return cls(name, "store")

    @classmethod
    def from_integration(cls, name: str) -> "Secret":
        """The credentials of hutchd's integration `name`."""
        return cls(name, "integration")

    @classmethod
    def from_local_env(cls, name: str, env_var_name: Optional[str] = None) -> "Secret":
        """The sandbox gets $name set to the value of this process's
        environment variable env_var_name (default: name)."""
        var = env_var_name or name
        if var not in os.environ:
            raise NotFoundError("Secret.from_local_env: the environment variable %s is not set" % var)
        return cls(name, "inline", {name: os.environ[var]})

    @classmethod
    def from_local_env_file(cls, path: Union[str, "os.PathLike[str]"],
                            name: Optional[str] = None) -> "Secret":
        """Every KEY=VALUE of a dotenv file (comments, blank lines, "export",
        single and double quotes as in shells' .env files). The secret's
        name defaults to the file's name."""
        p = os.fspath(path)
        try:
            with open(p, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise NotFoundError("Secret.from_local_env_file: %s: %s" % (p, e.strerror)) from None
        return cls(name or os.path.basename(p), "inline", parse_env_file(text, p))

    @classmethod
    def from_dict(cls, name: str, values: Mapping[str, str]) -> "Secret":
        """These values, sent by the client."""
        return cls(name, "inline", {str(k): str(v) for k, v in values.items()})

    # ---- the store ----

    @staticmethod
    def set(name: str, values: Mapping[str, str], *, replace: bool = False,
            client: Optional["SandboxClient"] = None) -> SecretInfo:
        """Stores a secret in hutchd (AlreadyExistsError if the name is
        taken, unless replace=True). Sandboxes then use it with
        ``Secret.from_env(name)``."""
        c = _client(client)
        kvs = [pb.KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
        return SecretInfo._from_pb(c._conn.unary("Secrets/Set", spb.SetSecretRequest(
            name=name, values=kvs, replace=replace), spb.SecretInfo))

    @staticmethod
    def info(name: str, client: Optional["SandboxClient"] = None) -> SecretInfo:
        """The stored secret's variable names (NotFoundError if none)."""
        c = _client(client)
        return SecretInfo._from_pb(c._conn.unary("Secrets/Get", spb.GetSecretRequest(name=name),
                                                 spb.SecretInfo))

    @staticmethod
    def list(client: Optional["SandboxClient"] = None) -> List[SecretInfo]:
        """The caller's tenant's stored secrets."""
        c = _client(client)
        r = c._conn.unary("Secrets/List", spb.ListSecretsRequest(), spb.ListSecretsResponse)
        return [SecretInfo._from_pb(m) for m in r.secrets]

    @staticmethod
    def delete(name: str, client: Optional["SandboxClient"] = None) -> None:
        """Removes a stored secret (running sandboxes keep their values)."""
        c = _client(client)
        c._conn.unary("Secrets/Delete", spb.DeleteSecretRequest(name=name),
                      spb.DeleteSecretResponse)

    @staticmethod
    def list_integrations(client: Optional["SandboxClient"] = None) -> List[IntegrationInfo]:
        """The integrations the caller's tenant may use."""
        c = _client(client)
        r = c._conn.unary("Secrets/ListIntegrations", spb.ListIntegrationsRequest(),
                          spb.ListIntegrationsResponse)
        return [IntegrationInfo(m.name, m.type, list(m.keys)) for m in r.integrations]

    # ---- inspection ----

    @property
    def keys(self) -> list:
        """The variable names an inline secret sets (values stay hidden)."""
        return sorted(self._values)

    def _to_pb(self) -> Any:
        return pb.SecretRef(name=self.name, source=self.source,
                            values=[pb.KeyValue(key=k, value=v) for k, v in self._values.items()])

    def __repr__(self) -> str:
        extra = " keys=%s" % ",".join(self.keys) if self._values else ""
        return "<Secret %s (%s)%s>" % (self.name, self.source, extra)


def parse_env_file(text: str, where: str = "env file") -> Dict[str, str]:
    out: Dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise InvalidArgumentError("%s:%d: expected KEY=VALUE" % (where, n))
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\(["\\nrt$])', lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(
                m.group(1), m.group(1)), value[1:-1])
        else:
            # An unquoted value ends at an inline comment.
            value = re.split(r"\s+#", value, 1)[0].rstrip()
        out[key] = value
    return out
