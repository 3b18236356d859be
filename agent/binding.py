"""The ``CaptchaKeyBinding`` custom resource, as the agent and the operator read it.

The CRD's OpenAPI schema rejects most bad input at the API server (patterns, bounds,
enums). This module is the second line: it turns a binding's spec into the typed
settings the agent uses, resolves ``{environment}`` in the path, and raises
:class:`InvalidBindingError` with an actionable message for what a schema cannot
express (or for clusters where the schema was not installed).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent import keyfile, keyrules
from agent.aws import refs as awsrefs
from agent.aws.refs import AwsSecretRef
from agent.vault import SecretRef

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "AwsSourceSpec",
    "BindingSpec",
    "InvalidBindingError",
    "KeySource",
    "VaultAuthSpec",
    "WorkloadAuth",
]

GROUP = "captchakeys.io"
VERSION = "v1alpha1"
PLURAL = "captchakeybindings"
KIND = "CaptchaKeyBinding"

WorkloadAuth = Literal["kubernetes", "jwt"]  # a pod proves itself with its service account.
AUTH_METHODS: tuple[WorkloadAuth, ...] = ("kubernetes", "jwt")
KeySource = Literal["vault", "aws"]  # spec.source: where the key is stored.
SOURCES: tuple[KeySource, ...] = ("vault", "aws")
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
class AwsSourceSpec:
    """The identity of an AWS binding's pods: the role they assume with their own token."""

    role_arn: str
    audience: str


@dataclass(frozen=True)
class BindingSpec:
    """A binding's spec, validated and with defaults applied."""

    environment: str
    vault: VaultAuthSpec | None  # None: the key is not in Vault (spec.source: aws).
    ref: SecretRef | AwsSecretRef
    refresh_seconds: int | None  # None: the agent's default (sidecar.refreshIntervalSeconds)
    file_name: str
    file_mode: int
    rotation_request: str | None
    key_rules: keyrules.KeyRules = field(default_factory=keyrules.KeyRules)
    aws: AwsSourceSpec | None = None  # set for spec.source: aws.

    @property
    def source(self) -> KeySource:
        return "aws" if self.aws is not None else "vault"

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
        file = spec.get("file") or {}
        vault: VaultAuthSpec | None = None
        aws: AwsSourceSpec | None = None
        ref: SecretRef | AwsSecretRef
        if _source(spec) == "aws":
            aws, ref = _aws_source(spec.get("aws") or {}, environment)
        else:
            vault, ref = _vault_source(spec, environment)
        file_name = str(file.get("name") or keyfile.DEFAULT_FILE_NAME)
        try:
            keyfile.validate_file_name(file_name)
        except keyfile.InvalidFileNameError as exc:
            raise InvalidBindingError(f"spec.file.name: {exc}") from None
        mode = file.get("mode", keyfile.DEFAULT_MODE)
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise InvalidBindingError(f"spec.file.mode must be 0-511 (0000-0777), not {mode!r}")
        if mode & 0o007 or not mode & 0o040:
            # The agent runs as its own user; the pod's containers read the key through its
            # group (or the pod's fsGroup), and nobody else may read it at all.
            raise InvalidBindingError(
                f"spec.file.mode {mode:04o} must be group-readable and give others nothing "
                "(e.g. 0440, the default): the application reads the key through the agent's "
                "group, and a world-readable key is readable by any process on the node"
            )
        refresh = spec.get("refreshIntervalSeconds")
        if refresh is not None and (not isinstance(refresh, int) or refresh < 10):
            raise InvalidBindingError(
                f"spec.refreshIntervalSeconds must be an integer >= 10, not {refresh!r}"
            )
        return cls(
            environment=environment,
            vault=vault,
            ref=ref,
            aws=aws,
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


def _source(spec: Mapping[str, Any]) -> KeySource:
    """``spec.source``: exactly one backend, named and configured (no guessing)."""
    source = spec.get("source") or "vault"
    if source not in SOURCES:
        raise InvalidBindingError(f"spec.source {source!r} is not one of {', '.join(SOURCES)}")
    has_vault, has_aws = bool(spec.get("vault")), bool(spec.get("aws"))
    if has_vault and has_aws:
        raise InvalidBindingError(
            "spec names both key sources (spec.vault and spec.aws): keep the one spec.source "
            f"({source}) names and remove the other"
        )
    if source == "aws" and not has_aws:
        raise InvalidBindingError(
            "spec.source is aws but spec.aws is missing: set spec.aws.secretId, region and roleArn"
        )
    if source == "vault" and not has_vault:
        hint = "set spec.source: aws to use spec.aws" if has_aws else "name a key source"
        raise InvalidBindingError(
            f"spec.vault is required for spec.source vault (the default): {hint}, or add "
            "spec.vault.auth.role for Vault"
        )
    return "aws" if source == "aws" else "vault"


def _vault_source(spec: Mapping[str, Any], environment: str) -> tuple[VaultAuthSpec, SecretRef]:
    vault = spec.get("vault") or {}
    auth = vault.get("auth") or {}
    kv = spec.get("kv") or {}
    method = _auth_method(auth.get("method") or "kubernetes")
    version = kv.get("version")
    if version is not None and (not isinstance(version, int) or version < 1):
        raise InvalidBindingError(
            f"spec.kv.version must be a positive integer (a Vault version), not {version!r}"
        )
    return (
        VaultAuthSpec(
            address=vault.get("address") or None,
            namespace=vault.get("namespace") or None,
            method=method,
            mount=str(auth.get("mount") or method),
            role=_required_str(auth, "role", "spec.vault.auth.role"),
            audience=str(auth.get("audience") or "vault"),
        ),
        SecretRef(
            path=resolve_path(str(kv.get("path") or DEFAULT_PATH), environment),
            mount=str(kv.get("mount") or "secret"),
            field=str(kv.get("field") or "api_key"),
            version=version,
        ),
    )


def _aws_source(aws: Mapping[str, Any], environment: str) -> tuple[AwsSourceSpec, AwsSecretRef]:
    """``spec.aws``: the secret, its region, the role the pods assume, and the version."""
    secret_id = _required_str(aws, "secretId", "spec.aws.secretId").replace(
        "{environment}", environment
    )
    _matches(secret_id, awsrefs.SECRET_ID_PATTERN, "spec.aws.secretId",
             "a secret name such as captchaai/{environment}, or its full ARN")  # fmt: skip
    region = _required_str(aws, "region", "spec.aws.region")
    _matches(region, awsrefs.REGION_PATTERN, "spec.aws.region", "an AWS region such as eu-west-1")
    role_arn = _required_str(aws, "roleArn", "spec.aws.roleArn")
    _matches(role_arn, awsrefs.ROLE_ARN_PATTERN, "spec.aws.roleArn",
             "an IAM role ARN such as arn:aws:iam::123456789012:role/captchakey-dev")  # fmt: skip
    field_name = aws.get("field")
    if field_name is not None and (not isinstance(field_name, str) or not field_name):
        raise InvalidBindingError(
            "spec.aws.field must be a non-empty string (the JSON field holding the key), or "
            "absent for a plain-string secret"
        )
    stage, version_id = aws.get("versionStage"), aws.get("versionId")
    if stage and version_id:
        raise InvalidBindingError(
            "spec.aws names both versionStage and versionId: follow a staging label or pin "
            "one version id, not both"
        )
    stage = str(stage or awsrefs.DEFAULT_STAGE)
    _matches(stage, awsrefs.STAGE_PATTERN, "spec.aws.versionStage", "a label such as AWSCURRENT")
    if version_id is not None:
        _matches(str(version_id), awsrefs.VERSION_ID_PATTERN, "spec.aws.versionId",
                 "a Secrets Manager version id (32-64 characters)")  # fmt: skip
    audience = str(aws.get("audience") or awsrefs.DEFAULT_AUDIENCE)
    ref = AwsSecretRef(
        secret_id=secret_id,
        region=region,
        field=field_name,
        stage=stage,
        version=str(version_id) if version_id else None,
    )
    return AwsSourceSpec(role_arn=role_arn, audience=audience), ref


def _matches(value: str, pattern: re.Pattern[str], where: str, example: str) -> None:
    if not pattern.fullmatch(value):
        raise InvalidBindingError(f"{where} {value!r} is not valid: use {example}")


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
