"""Read one CaptchaAI key from Vault KV v2, with a token that is reused, not re-obtained.

Token lifecycle: log in once, then reuse the token for every read. Before a request,
a token near the end of its TTL is renewed while Vault allows it; a fresh login
happens only when it must: no token yet, renewal refused or past the max TTL, or a
403 that turns out to come from an invalid token rather than from the policy. That
distinction matters: Vault answers 403 both for "this token is dead" and for "this
policy does not cover the path", and only the first one is cured by logging in
again. A ``lookup-self`` after a 403 tells them apart; a login per read would
otherwise hammer Vault, and a rotation with hundreds of consumers would become a
login storm.

hvac is synchronous (requests); async callers run these methods in a worker thread.
A lock serialises token handling so one client can be shared by threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from agent.vault.auth import Auth
from agent.vault.errors import (
    AuthenticationError,
    EmptyKeyError,
    FieldMissingError,
    PermissionDeniedError,
    SecretNotFoundError,
    VaultError,
    VaultTLSError,
    VaultUnavailableError,
    VersionUnavailableError,
)

__all__ = ["KeyVersion", "SecretMetadata", "SecretRef", "VaultClient"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Renew when less than this fraction of the token's TTL is left (and at least 10 s).
_RENEW_FRACTION = 1 / 3


@dataclass(frozen=True)
class SecretRef:
    """Where a key lives: KV v2 mount, path, field, and an optional pinned version."""

    path: str
    mount: str = "secret"
    field: str = "api_key"
    version: int | None = None

    @property
    def data_path(self) -> str:
        return f"{self.mount}/data/{self.path}"

    @property
    def metadata_path(self) -> str:
        return f"{self.mount}/metadata/{self.path}"

    @property
    def source(self) -> str:
        """Where the key comes from, without the pin (the key file's ``source``)."""
        return f"{self.mount}/{self.path}#{self.field}"

    def __str__(self) -> str:
        pin = f"@{self.version}" if self.version else ""
        return f"{self.mount}/{self.path}#{self.field}{pin}"


@dataclass(frozen=True)
class KeyVersion:
    """A key and its Vault version. The value never shows in ``repr``."""

    value: str = field(repr=False)
    version: int
    ref: SecretRef


@dataclass(frozen=True)
class SecretMetadata:
    """The cheap answer: which version is current, and which versions still hold data."""

    current_version: int
    live_versions: frozenset[int]
    version_states: Mapping[int, str]


class VaultClient:
    """A Vault client for one identity, reading keys from KV v2."""

    def __init__(
        self,
        addr: str,
        auth: Auth,
        *,
        ca_cert: str | None = None,
        namespace: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.addr = addr
        self.auth = auth
        self._hvac = hvac.Client(
            url=addr, verify=ca_cert or True, namespace=namespace or None, timeout=timeout
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._has_token = False
        self._expires_at: float | None = None  # None: no expiry (or not logged in).
        self._ttl = 0.0
        self._renewable = False
        self.logins = 0  # how many times this client logged in: cheap to check, useful to test.

    def __repr__(self) -> str:
        return f"VaultClient(addr={self.addr!r}, auth={self.auth.describe()!r})"

    def read_key(self, ref: SecretRef) -> KeyVersion:
        """The key at ``ref`` (its pinned version, else the latest) and its version."""

        def read() -> Mapping[str, Any]:
            response: Mapping[str, Any] = self._hvac.secrets.kv.v2.read_secret_version(
                path=ref.path,
                version=ref.version,
                mount_point=ref.mount,
                raise_on_deleted_version=True,
            )
            return response

        try:
            response = self._call(read, ref.data_path, "read")
        except SecretNotFoundError:
            if ref.version is None:
                raise
            self._raise_version_unavailable(ref)
        data = response["data"]
        fields: Mapping[str, Any] = data.get("data") or {}
        version = int(data["metadata"]["version"])
        if ref.field not in fields:
            raise FieldMissingError(ref.data_path, ref.field, list(fields))
        value = fields[ref.field]
        if not isinstance(value, str) or not value.strip():
            raise EmptyKeyError(ref.data_path, ref.field)
        return KeyVersion(value=value.strip(), version=version, ref=ref)

    def metadata(self, ref: SecretRef) -> SecretMetadata:
        """Version information only: needs ``read`` on the metadata path, no data access."""

        def read() -> Mapping[str, Any]:
            response: Mapping[str, Any] = self._hvac.secrets.kv.v2.read_secret_metadata(
                path=ref.path, mount_point=ref.mount
            )
            return response

        data = self._call(read, ref.metadata_path, "read")["data"]
        states = {
            int(number): _version_state(info)
            for number, info in (data.get("versions") or {}).items()
        }
        return SecretMetadata(
            current_version=int(data["current_version"]),
            live_versions=frozenset(n for n, state in states.items() if state == "live"),
            version_states=states,
        )

    def write_key(self, ref: SecretRef, value: str) -> int:
        """Store a new key as the next version (``vault kv put``); return that version."""
        if not value.strip():
            raise EmptyKeyError(ref.data_path, ref.field)

        def write() -> Mapping[str, Any]:
            response: Mapping[str, Any] = self._hvac.secrets.kv.v2.create_or_update_secret(
                path=ref.path, secret={ref.field: value.strip()}, mount_point=ref.mount
            )
            return response

        return int(self._call(write, ref.data_path, "create")["data"]["version"])

    def _raise_version_unavailable(self, ref: SecretRef) -> None:
        assert ref.version is not None
        try:
            meta = self.metadata(ref)
        except VaultError:
            meta = None
        state = (meta.version_states.get(ref.version) if meta else None) or "not present"
        current = meta.current_version if meta else None
        raise VersionUnavailableError(ref.data_path, ref.version, state, current) from None

    def _call(self, request: Callable[[], _T], path: str, capability: str) -> _T:
        """Run ``request`` with a valid token, mapping failures to actionable errors."""
        with self._lock:
            self._ensure_token()
            try:
                return self._translate(request, path, capability)
            except PermissionDeniedError:
                if self._token_is_valid():
                    raise
                _log.info("Vault token no longer valid; logging in again")
                self._login()
                return self._translate(request, path, capability)

    def _translate(self, request: Callable[[], _T], path: str, capability: str) -> _T:
        try:
            return request()
        except hvac.exceptions.Forbidden:
            raise PermissionDeniedError(path, capability) from None
        except hvac.exceptions.InvalidPath:
            mount, _, rest = path.partition("/")
            raise SecretNotFoundError(path, mount, rest.partition("/")[2]) from None
        except (
            hvac.exceptions.VaultDown,
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
            hvac.exceptions.VaultNotInitialized,
        ) as exc:
            raise VaultUnavailableError(self.addr, type(exc).__name__) from None
        except requests.exceptions.SSLError as exc:
            raise VaultTLSError(self.addr, _first_line(exc)) from None
        except requests.exceptions.RequestException as exc:
            raise VaultUnavailableError(self.addr, type(exc).__name__) from None

    def _ensure_token(self) -> None:
        if not self._has_token:
            self._login()
            return
        if self._expires_at is None:
            return
        remaining = self._expires_at - self._clock()
        if remaining > max(10.0, self._ttl * _RENEW_FRACTION):
            return
        if self._renewable and self._renew():
            return
        if self.auth.renewable_by_login:
            self._login()
        elif remaining <= 0:
            raise AuthenticationError(
                "the Vault token has expired and cannot be renewed (its TTL was exceeded): "
                "use AppRole or Kubernetes auth, whose tokens the agent re-obtains by itself"
            )

    def _renew(self) -> bool:
        def renew_self() -> Mapping[str, Any] | None:
            try:
                response: Mapping[str, Any] = self._hvac.auth.token.renew_self()
            except hvac.exceptions.InternalServerError as exc:
                # Near its max TTL Vault refuses a renewal with a 500 ("past the max TTL,
                # cannot renew"): not an outage, and a fresh login is the cure.
                if "max TTL" in str(exc):
                    return None
                raise
            return response

        try:
            response = self._translate(renew_self, "auth/token/renew-self", "update")
        except VaultUnavailableError:
            raise
        except VaultError:
            return False
        if response is None:
            return False
        auth = response["auth"]
        new_ttl = float(auth.get("lease_duration") or 0)
        # Vault caps renewals at the token's max TTL: a renewal that gains nothing left
        # means the end is near, so report failure and let the caller log in afresh.
        if new_ttl and self._expires_at is not None:
            gained = self._clock() + new_ttl - self._expires_at
            if gained <= 0:
                return False
        self._remember(auth)
        return True

    def _login(self) -> None:
        try:
            auth = self._translate(lambda: self.auth.login(self._hvac), "auth (login)", "update")
        except PermissionDeniedError:
            raise AuthenticationError(
                f"Vault refused the {self.auth.describe()} (403): check that the role exists "
                "and is bound to this service account, namespace and token audience, and "
                "that the token has not expired. For a static VAULT_TOKEN: it expired or "
                "was revoked; use AppRole or Kubernetes auth for renewable tokens."
            ) from None
        except hvac.exceptions.InvalidRequest as exc:
            raise AuthenticationError(
                f"Vault rejected the {self.auth.describe()}: {_first_line(exc)}"
            ) from None
        self.logins += 1
        self._remember(auth)
        _log.info("logged in to Vault", extra={"auth": self.auth.describe(), "ttl": self._ttl})

    def _remember(self, auth: Mapping[str, Any]) -> None:
        self._has_token = True
        self._ttl = float(auth.get("lease_duration") or 0)
        self._renewable = bool(auth.get("renewable"))
        self._expires_at = self._clock() + self._ttl if self._ttl else None

    def _token_is_valid(self) -> bool:
        try:
            self._hvac.auth.token.lookup_self()
        except hvac.exceptions.Forbidden:
            return False
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
            return True  # cannot tell: report the original 403 rather than guess.
        return True


def _version_state(info: Mapping[str, Any]) -> str:
    if info.get("destroyed"):
        return "destroyed"
    if info.get("deletion_time"):
        return "deleted"
    return "live"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
