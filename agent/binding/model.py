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
from typing import Any, Literal, cast

from agent import keyfile, keyrules
from agent.aws import refs as awsrefs
from agent.aws.refs import AwsSecretRef
from agent.binding import schema
from agent.binding.policy import VaultPolicy, normalized_address
from agent.binding.schema import InvalidBindingError
from agent.contract.auth import WORKLOAD_AUTH_METHODS, WorkloadAuth
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
    "VaultPolicy",
    "normalized_address",
]

GROUP = "captchakeys.io"
VERSION = "v1alpha1"
PLURAL = "captchakeybindings"
KIND = "CaptchaKeyBinding"

KeySource = Literal["vault", "aws"]  # spec.source: where the key is stored.
SOURCES: tuple[KeySource, ...] = ("vault", "aws")
DEFAULT_PATH = "captchaai/{environment}"


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
    def from_body(cls, body: Mapping[str, Any], policy: VaultPolicy | None = None) -> BindingSpec:
        """The binding's spec, checked against the CRD's rules (and ``policy`` when given)."""
        metadata = body.get("metadata")
        name = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
        try:
            spec = cls._parse(body.get("spec"))
            if policy is not None and spec.vault is not None:
                policy.check(spec.vault.address, spec.vault.audience)
        except InvalidBindingError as exc:
            raise InvalidBindingError(f"CaptchaKeyBinding {name!r}: {exc}") from None
        return spec

    @classmethod
    def _parse(cls, spec: object) -> BindingSpec:
        checked = _checked(spec)
        environment: str = checked["environment"]
        file = checked.get("file") or {}
        vault, aws, ref = _key_source(checked, environment)
        return cls(
            environment=environment,
            vault=vault,
            ref=ref,
            aws=aws,
            refresh_seconds=checked.get("refreshIntervalSeconds"),
            file_name=str(file.get("name") or keyfile.DEFAULT_FILE_NAME),
            file_mode=file.get("mode", keyfile.DEFAULT_MODE),
            rotation_request=(checked.get("rotation") or {}).get("requestedAt") or None,
            key_rules=_key_rules(checked.get("key") or {}),
        )


def _checked(spec: object) -> Mapping[str, Any]:
    """``spec``, once it keeps the schema's every rule; else all it breaks, in one error."""
    if spec is None:
        raise InvalidBindingError("spec is required: an object with environment and vault")
    if isinstance(spec, Mapping):
        _source(spec)  # the schema's rule on key sources, said for the case at hand.
    problems = schema.violations(spec)
    if problems:
        raise InvalidBindingError("; ".join(str(p) for p in problems))
    return cast(Mapping[str, Any], spec)  # the schema said it is an object.


def _key_source(
    spec: Mapping[str, Any], environment: str
) -> tuple[VaultAuthSpec | None, AwsSourceSpec | None, SecretRef | AwsSecretRef]:
    """Where the key is read (Vault, or AWS Secrets Manager), and as whom."""
    if spec.get("source") == "aws":  # the schema made sure spec.aws is there, alone.
        aws, aws_ref = _aws_source(spec["aws"], environment)
        return None, aws, aws_ref
    vault, vault_ref = _vault_source(spec, environment)
    return vault, None, vault_ref


def _key_rules(key: Mapping[str, Any]) -> keyrules.KeyRules:
    """``spec.key`` (already checked by the schema): what a key may look like."""
    max_length: int = key.get("maxLength", keyrules.DEFAULT_MAX_LENGTH)
    wanted = key.get("format", "any")
    key_format = next(f for f in keyrules.FORMATS if f == wanted)
    return keyrules.KeyRules(max_length=max_length, format=key_format)


def _source(spec: Mapping[str, Any]) -> None:
    """``spec.source``: exactly one backend, named and configured (no guessing).

    The same rule as the schema's ``not``/``anyOf`` on the spec, with a message that says
    which of its cases this binding is in.
    """
    source = spec.get("source") or "vault"
    if source not in SOURCES:
        raise InvalidBindingError(f"spec.source {source!r} is not one of {', '.join(SOURCES)}")
    has_vault, has_aws = spec.get("vault") is not None, spec.get("aws") is not None
    if has_vault and has_aws:
        raise InvalidBindingError(
            "spec names both key sources (spec.vault and spec.aws): keep the one spec.source "
            f"({source}) names and remove the other"
        )
    if source == "aws" and not has_aws:
        raise InvalidBindingError(
            "spec.source 'aws' needs spec.aws, which is missing: set spec.aws.secretId, region "
            "and roleArn"
        )
    if source == "vault" and not has_vault:
        hint = "set spec.source: aws to use spec.aws" if has_aws else "name a key source"
        raise InvalidBindingError(
            f"spec.vault is required for spec.source vault (the default): {hint}, or add "
            "spec.vault.auth.role for Vault"
        )


def _vault_source(spec: Mapping[str, Any], environment: str) -> tuple[VaultAuthSpec, SecretRef]:
    vault = spec["vault"]
    auth = vault["auth"]
    kv = spec.get("kv") or {}
    method = _auth_method(auth.get("method") or "kubernetes")
    return (
        VaultAuthSpec(
            address=vault.get("address") or None,
            namespace=vault.get("namespace") or None,
            method=method,
            mount=str(auth.get("mount") or method),
            role=auth["role"],
            audience=str(auth.get("audience") or "vault"),
        ),
        SecretRef(
            path=resolve_path(str(kv.get("path") or DEFAULT_PATH), environment),
            mount=str(kv.get("mount") or "secret"),
            field=str(kv.get("field") or "api_key"),
            version=kv.get("version"),
        ),
    )


def _aws_source(aws: Mapping[str, Any], environment: str) -> tuple[AwsSourceSpec, AwsSecretRef]:
    """``spec.aws`` (checked by the schema): the secret, region, role and version."""
    secret_id = str(aws["secretId"]).replace("{environment}", environment)
    if not awsrefs.SECRET_ID_PATTERN.fullmatch(secret_id):  # braces left after substitution.
        raise InvalidBindingError(
            f"spec.aws.secretId {aws['secretId']!r} resolves to {secret_id!r}, which is not "
            "a secret name: use e.g. captchaai/{environment}, or the secret's full ARN"
        )
    version_id = aws.get("versionId")
    ref = AwsSecretRef(
        secret_id=secret_id,
        region=aws["region"],
        field=aws.get("field"),
        stage=str(aws.get("versionStage") or awsrefs.DEFAULT_STAGE),
        version=str(version_id) if version_id else None,
    )
    audience = str(aws.get("audience") or awsrefs.DEFAULT_AUDIENCE)
    return AwsSourceSpec(role_arn=aws["roleArn"], audience=audience), ref


def _auth_method(value: object) -> WorkloadAuth:
    for method in WORKLOAD_AUTH_METHODS:
        if value == method:
            return method
    raise InvalidBindingError(
        f"spec.vault.auth.method {value!r} is not one of {', '.join(WORKLOAD_AUTH_METHODS)}"
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
