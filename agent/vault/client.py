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

Keeping the token alive is also a job of its own (:meth:`VaultClient.maintain_token`),
called on the token's schedule rather than the refresh interval's: with a refresh
interval as long as the token's TTL, a token renewed only when reading would expire
between two reads.

hvac is synchronous (requests); async callers run these methods in a worker thread.
A lock serialises token handling so one client can be shared by threads. Every
request is reported to a :class:`VaultObserver` (the agent's metrics), never its content.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import hvac
import hvac.exceptions
import requests

from agent import keyrules
from agent.vault.auth import Auth
from agent.vault.errors import (
    AuthenticationError,
    FieldMissingError,
    KvVersionOneError,
    PermissionDeniedError,
    SecretNotFoundError,
    VaultError,
    VaultSealedError,
    VaultTLSError,
    VaultUnavailableError,
    VersionUnavailableError,
)

__all__ = ["KeyVersion", "SecretMetadata", "SecretRef", "VaultClient", "VaultObserver"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Renew when less than this fraction of the token's TTL is left (at least 10 s, or half).
_RENEW_FRACTION = 1 / 3
_MIN_RENEW_MARGIN = 10.0


class VaultObserver(Protocol):
    """What a client reports about its conversation with Vault (metrics); never content."""

    def vault_request(self, operation: str, seconds: float, outcome: str) -> None:
        """One HTTP exchange: ``operation`` (read, metadata, login, ...), its outcome."""

    def vault_login(self, ok: bool) -> None:
        """A login attempt and whether Vault issued a token."""

    def vault_renewal(self, ok: bool) -> None:
        """A token renewal attempt and whether it extended the token."""


class _Unobserved:
    def vault_request(self, operation: str, seconds: float, outcome: str) -> None:
        pass

    def vault_login(self, ok: bool) -> None:
        pass

    def vault_renewal(self, ok: bool) -> None:
        pass


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
    created_time: str | None = None  # tells a re-created secret's version N from the old N.


@dataclass(frozen=True)
class SecretMetadata:
    """The cheap answer: which version is current, and which versions still hold data."""

    current_version: int
    live_versions: frozenset[int]
    version_states: Mapping[int, str]
    created_times: Mapping[int, str] = field(default_factory=dict)

    @property
    def current_created_time(self) -> str | None:
        return self.created_times.get(self.current_version)


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
        observer: VaultObserver | None = None,
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
        self.observer: VaultObserver = observer or _Unobserved()

    def __repr__(self) -> str:
        return f"VaultClient(addr={self.addr!r}, auth={self.auth.describe()!r})"

    def read_key(self, ref: SecretRef, rules: keyrules.KeyRules | None = None) -> KeyVersion:
        """The key at ``ref`` (its pinned version, else the latest) and its version.

        Raises :class:`~agent.keyrules.KeyRejectedError` for a value that breaks ``rules``.
        """

        def read() -> Mapping[str, Any]:
            response: Mapping[str, Any] = self._hvac.secrets.kv.v2.read_secret_version(
                path=ref.path,
                version=ref.version,
                mount_point=ref.mount,
                raise_on_deleted_version=True,
            )
            return response

        try:
            response = self._call(read, ref.data_path, "read", "read")
        except SecretNotFoundError:
            if ref.version is None:
                raise
            self._raise_version_unavailable(ref)
        data = response["data"]
        fields: Mapping[str, Any] = data.get("data") or {}
        metadata: Mapping[str, Any] = data["metadata"]
        if ref.field not in fields:
            raise FieldMissingError(ref.data_path, ref.field, list(fields))
        value = keyrules.check_key(fields[ref.field], _where(ref), rules or keyrules.KeyRules())
        created = metadata.get("created_time")
        return KeyVersion(
            value=value,
            version=int(metadata["version"]),
            ref=ref,
            created_time=created if isinstance(created, str) and created else None,
        )

    def metadata(self, ref: SecretRef) -> SecretMetadata:
        """Version information only: needs ``read`` on the metadata path, no data access."""

        def read() -> Mapping[str, Any]:
            response: Mapping[str, Any] = self._hvac.secrets.kv.v2.read_secret_metadata(
                path=ref.path, mount_point=ref.mount
            )
            return response

        data = self._call(read, ref.metadata_path, "read", "metadata")["data"]
        versions: Mapping[str, Mapping[str, Any]] = data.get("versions") or {}
        states = {int(number): _version_state(info) for number, info in versions.items()}
        return SecretMetadata(
            current_version=int(data["current_version"]),
            live_versions=frozenset(n for n, state in states.items() if state == "live"),
            version_states=states,
            created_times={
                int(number): str(info["created_time"])
                for number, info in versions.items()
                if info.get("created_time")
            },
        )

    def write_key(self, ref: SecretRef, value: str, rules: keyrules.KeyRules | None = None) -> int:
        """Store a new key as the next version (``vault kv put``); return that version.

        The same rules as the agent's apply first (:func:`agent.keyrules.check_key`): a
        key the agents would refuse is never stored.
        """
        where = f'the new key for field {ref.field!r} of "{ref.data_path}"'
        key = keyrules.check_key(value, where, rules or keyrules.KeyRules())

        def write() -> Mapping[str, Any]:
            response: Mapping[str, Any] = self._hvac.secrets.kv.v2.create_or_update_secret(
                path=ref.path, secret={ref.field: key}, mount_point=ref.mount
            )
            return response

        return int(self._call(write, ref.data_path, "create", "write")["data"]["version"])

    def maintain_token(self) -> float | None:
        """Renew (or replace) the token if it is due; return seconds until it is due again.

        ``None``: the token never expires (or there is none yet and login failed is
        raised instead). Meant to be called on its own schedule by a long-running agent.
        """
        with self._lock:
            self._ensure_token()
            if self._expires_at is None:
                return None
            return max(0.0, self._expires_at - self._clock() - self._renew_margin())

    def _raise_version_unavailable(self, ref: SecretRef) -> None:
        assert ref.version is not None
        try:
            meta = self.metadata(ref)
        except VaultError:
            meta = None
        state = (meta.version_states.get(ref.version) if meta else None) or "not present"
        current = meta.current_version if meta else None
        raise VersionUnavailableError(ref.data_path, ref.version, state, current) from None

    def _call(self, request: Callable[[], _T], path: str, capability: str, operation: str) -> _T:
        """Run ``request`` with a valid token, mapping failures to actionable errors."""
        with self._lock:
            self._ensure_token()
            try:
                return self._translate(request, path, capability, operation)
            except PermissionDeniedError as denied:
                token = self._lookup_self()
                if token is not None:
                    raise self._explain(denied, token) from None
                _log.info("Vault token no longer valid; logging in again")
                self._login()
                return self._translate(request, path, capability, operation)

    def _explain(
        self, denied: PermissionDeniedError, token: Mapping[str, Any]
    ) -> PermissionDeniedError:
        """The 403 again, naming the token's policies and who holds them (lookup-self)."""
        if not token:
            return denied
        policies = [str(p) for p in (token.get("policies") or [])]
        policies += [str(p) for p in (token.get("identity_policies") or []) if p not in policies]
        meta = token.get("meta")
        return PermissionDeniedError(
            denied.path,
            denied.capability,
            policies=policies,
            policy_holder=self.auth.policy_holder(meta if isinstance(meta, Mapping) else {}),
        )

    def _is_kv_v1(self, path: str) -> bool:
        """Whether ``path`` lies in a KV version 1 mount (asked only after a 404).

        ``sys/internal/ui/mounts/<path>`` answers any token with a capability on the path,
        so the pod's own identity can ask; on any doubt, it is not v1 (the usual message).
        """
        try:
            answer = self._hvac.adapter.get(f"/v1/sys/internal/ui/mounts/{path}")
            data = answer.get("data") or {}
            return bool(
                data.get("type") == "kv" and (data.get("options") or {}).get("version") == "1"
            )
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException, ValueError):
            return False  # a hint only: never a new failure.

    def _translate(
        self, request: Callable[[], _T], path: str, capability: str, operation: str
    ) -> _T:
        started = time.monotonic()
        outcome = "error"
        try:
            result = self._send(request, path, capability)
            outcome = "ok"
            return result
        except VaultError as exc:
            outcome = exc.reason
            raise
        finally:
            self.observer.vault_request(operation, time.monotonic() - started, outcome)

    def _send(self, request: Callable[[], _T], path: str, capability: str) -> _T:
        try:
            return request()
        except hvac.exceptions.Forbidden:
            raise PermissionDeniedError(path, capability) from None
        except hvac.exceptions.InvalidPath:
            mount, _, rest = path.partition("/")
            if self._is_kv_v1(path):
                raise KvVersionOneError(path, mount) from None
            raise SecretNotFoundError(path, mount, rest.partition("/")[2]) from None
        except hvac.exceptions.VaultDown as exc:
            if "sealed" in str(exc).lower():
                raise VaultSealedError(self.addr) from None
            raise VaultUnavailableError(self.addr, type(exc).__name__) from None
        except (
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
        if remaining > self._renew_margin():
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

    def _renew_margin(self) -> float:
        """Renew when this little of the token's life is left: a third, or 10 s (half of a
        short TTL) if that is more, so a request never goes out on a dying token."""
        return max(self._ttl * _RENEW_FRACTION, min(_MIN_RENEW_MARGIN, self._ttl / 2))

    def _renew(self) -> bool:
        renewed = self._try_renew()
        self.observer.vault_renewal(renewed)
        if renewed:
            _log.debug("renewed the Vault token", extra={"ttl": self._ttl})
        return renewed

    def _try_renew(self) -> bool:
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
            response = self._translate(renew_self, "auth/token/renew-self", "update", "renew")
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
            auth = self._try_login()
        except VaultError:
            self.observer.vault_login(False)
            raise
        self.observer.vault_login(True)
        self.logins += 1
        self._remember(auth)
        _log.info("logged in to Vault", extra={"auth": self.auth.describe(), "ttl": self._ttl})

    def _try_login(self) -> Mapping[str, Any]:
        login = lambda: self.auth.login(self._hvac)  # noqa: E731 - a one-line request.
        try:
            return self._translate(login, "auth (login)", "update", "login")
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

    def _remember(self, auth: Mapping[str, Any]) -> None:
        self._has_token = True
        self._ttl = float(auth.get("lease_duration") or 0)
        self._renewable = bool(auth.get("renewable"))
        self._expires_at = self._clock() + self._ttl if self._ttl else None

    def _lookup_self(self) -> Mapping[str, Any] | None:
        """The token's own data after a 403: ``None`` if the token itself is invalid.

        ``{}`` when Vault cannot say (then the original 403 stands, unexplained).
        """
        started, outcome = time.monotonic(), "ok"
        try:
            data: Mapping[str, Any] = self._hvac.auth.token.lookup_self()["data"]
        except hvac.exceptions.Forbidden:
            outcome = "invalid"
            return None
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException, KeyError):
            outcome = "error"
            return {}  # cannot tell: report the original 403 rather than guess.
        finally:
            self.observer.vault_request("lookup", time.monotonic() - started, outcome)
        return data


def _version_state(info: Mapping[str, Any]) -> str:
    if info.get("destroyed"):
        return "destroyed"
    if info.get("deletion_time"):
        return "deleted"
    return "live"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _where(ref: SecretRef) -> str:
    """How key-content messages name a key's source: the field and its Vault path."""
    return f'the key in field {ref.field!r} of "{ref.data_path}"'
