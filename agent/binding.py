"""The ``CaptchaKeyBinding`` custom resource, as the agent and the operator read it.

The CRD's OpenAPI schema rejects most bad input at the API server (patterns, bounds,
enums). This module is the second line: it turns a binding's spec into the typed
settings the agent uses, resolves ``{environment}`` in the path, and raises
:class:`InvalidBindingError` with an actionable message for what a schema cannot
express (or for clusters where the schema was not installed).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent import keyfile, keyrules
from agent.vault import SecretRef

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "BindingSpec",
    "InvalidBindingError",
    "VaultAuthSpec",
    "WorkloadAuth",
]

GROUP = "captchakeys.io"
VERSION = "v1alpha1"
PLURAL = "captchakeybindings"
KIND = "CaptchaKeyBinding"

WorkloadAuth = Literal["kubernetes", "jwt"]  # a pod proves itself with its service account.
AUTH_METHODS: tuple[WorkloadAuth, ...] = ("kubernetes", "jwt")
DEFAULT_PATH = "captchaai/{environment}"


class InvalidBindingError(ValueError):
    """A binding that cannot be acted on; ``str()`` says what to fix in which field."""

    reason = "InvalidBinding"


@dataclass(frozen=True)
class VaultAuthSpec:
    """Where and how the agent logs in: ``address`` empty means the injected default."""

    address: str | None
    namespace: str | None
    method: WorkloadAuth
    mount: str
    role: str
    audience: str


@dataclass(frozen=True)
class BindingSpec:
    """A binding's spec, validated and with defaults applied."""

    environment: str
    vault: VaultAuthSpec
    ref: SecretRef
    refresh_seconds: int | None  # None: the agent's default (sidecar.refreshIntervalSeconds)
    file_name: str
    file_mode: int
    rotation_request: str | None
    key_rules: keyrules.KeyRules = field(default_factory=keyrules.KeyRules)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> BindingSpec:
        name = body.get("metadata", {}).get("name", "?")
        spec = body.get("spec") or {}
        try:
            return cls._parse(spec)
        except InvalidBindingError as exc:
            raise InvalidBindingError(f"CaptchaKeyBinding {name!r}: {exc}") from None

    @classmethod
    def _parse(cls, spec: Mapping[str, Any]) -> BindingSpec:
        environment = _required_str(spec, "environment")
        vault = spec.get("vault") or {}
        auth = vault.get("auth") or {}
        kv = spec.get("kv") or {}
        file = spec.get("file") or {}
        method = _auth_method(auth.get("method") or "kubernetes")
        version = kv.get("version")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise InvalidBindingError(
                f"spec.kv.version must be a positive integer (a Vault version), not {version!r}"
            )
        file_name = str(file.get("name") or keyfile.DEFAULT_FILE_NAME)
        try:
            keyfile.validate_file_name(file_name)
        except keyfile.InvalidFileNameError as exc:
            raise InvalidBindingError(f"spec.file.name: {exc}") from None
        mode = file.get("mode", keyfile.DEFAULT_MODE)
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise InvalidBindingError(f"spec.file.mode must be 0-511 (0000-0777), not {mode!r}")
        refresh = spec.get("refreshIntervalSeconds")
        if refresh is not None and (not isinstance(refresh, int) or refresh < 10):
            raise InvalidBindingError(
                f"spec.refreshIntervalSeconds must be an integer >= 10, not {refresh!r}"
            )
        return cls(
            environment=environment,
            vault=VaultAuthSpec(
                address=vault.get("address") or None,
                namespace=vault.get("namespace") or None,
                method=method,
                mount=str(auth.get("mount") or method),
                role=_required_str(auth, "role", "spec.vault.auth.role"),
                audience=str(auth.get("audience") or "vault"),
            ),
            ref=SecretRef(
                path=resolve_path(str(kv.get("path") or DEFAULT_PATH), environment),
                mount=str(kv.get("mount") or "secret"),
                field=str(kv.get("field") or "api_key"),
                version=version,
            ),
            refresh_seconds=refresh,
            file_name=file_name,
            file_mode=mode,
            rotation_request=(spec.get("rotation") or {}).get("requestedAt") or None,
            key_rules=_key_rules(spec.get("key") or {}),
        )


def _key_rules(key: Mapping[str, Any]) -> keyrules.KeyRules:
    """``spec.key``: the binding's limits on what a key may look like (see agent.keyrules)."""
    max_length = key.get("maxLength", keyrules.DEFAULT_MAX_LENGTH)
    if (
        not isinstance(max_length, int)
        or isinstance(max_length, bool)
        or not 1 <= max_length <= keyrules.HARD_MAX_LENGTH
    ):
        raise InvalidBindingError(
            f"spec.key.maxLength must be an integer from 1 to {keyrules.HARD_MAX_LENGTH} "
            f"(the pod's key volume is 1 MiB), not {max_length!r}"
        )
    key_format = key.get("format", "any")
    for known in keyrules.FORMATS:
        if key_format == known:
            return keyrules.KeyRules(max_length=max_length, format=known)
    raise InvalidBindingError(
        f"spec.key.format {key_format!r} is not one of {', '.join(keyrules.FORMATS)} "
        "(captchaai: 32 lowercase hexadecimal characters)"
    )


def _auth_method(value: object) -> WorkloadAuth:
    for method in AUTH_METHODS:
        if value == method:
            return method
    raise InvalidBindingError(
        f"spec.vault.auth.method {value!r} is not one of {', '.join(AUTH_METHODS)}"
    )


def resolve_path(template: str, environment: str) -> str:
    """Substitute ``{environment}`` and refuse paths that could wander off their prefix."""
    path = template.replace("{environment}", environment)
    normal = posixpath.normpath(path)
    if path.startswith("/") or normal != path.rstrip("/") or ".." in path.split("/") or not path:
        raise InvalidBindingError(
            f"spec.kv.path {template!r} resolves to {path!r}: use a relative path without "
            "'..', '.' or '//' segments, e.g. captchaai/{environment}"
        )
    return path


def _required_str(spec: Mapping[str, Any], key: str, where: str | None = None) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidBindingError(f"{where or 'spec.' + key} is required (a non-empty string)")
    return value
