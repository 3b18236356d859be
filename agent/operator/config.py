"""The operator's configuration file (a ConfigMap rendered by the chart).

Its shape is fixed in ``docs/contract.md``. Unknown keys are refused rather than
ignored: a typo in a values file should fail the rollout, not silently do nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agent.binding.model import VaultPolicy, normalized_address
from agent.binding.schema import API_SERVER_AUDIENCES
from agent.contract.auth import WORKLOAD_AUTH_METHODS, WorkloadAuth
from agent.contract.pod import KEY_MOUNT_PATH
from agent.operator.resources import ResourcesError, validate_resources

__all__ = ["ConfigError", "InjectionConfig", "OperatorConfig", "TLSConfig", "VaultConfig"]


class ConfigError(ValueError):
    """The configuration file is missing, malformed, or has a bad value (named in the text)."""


@dataclass(frozen=True)
class VaultConfig:
    address: str = "https://vault.vault.svc:8200"
    ca_cert_file: str | None = None
    namespace: str | None = None
    auth_method: WorkloadAuth = "kubernetes"
    auth_mount: str = "kubernetes"
    auth_role: str = "captcha-key-operator"
    token_file: Path = Path("/var/run/secrets/captchakeys/vault/token")
    audience: str = "vault"
    # Where bindings may send their consumers' tokens besides ``address``, and the token
    # audiences they may ask for: see :class:`agent.binding.model.VaultPolicy`.
    allowed_addresses: tuple[str, ...] = ()
    allowed_audiences: tuple[str, ...] = ("vault",)
    allow_insecure_http: bool = False

    @property
    def policy(self) -> VaultPolicy:
        """The policy the webhook enforces and every injected agent receives."""
        return VaultPolicy(
            addresses=(self.address, *self.allowed_addresses),
            audiences=self.allowed_audiences,
            allow_http=self.allow_insecure_http,
        )


@dataclass(frozen=True)
class TLSConfig:
    mode: str = "self-signed"
    secret_name: str = "captcha-key-agent-webhook-tls"
    cert_dir: Path = Path("/etc/captchakeys/tls")


@dataclass(frozen=True)
class InjectionConfig:
    """What the webhook gives every agent it injects.

    ``resources`` are checked (and normalised) as the config is made, raising
    :class:`~agent.operator.resources.ResourcesError`: not again at each admission.
    """

    image: str = "ghcr.io/captcha-key-agent/captcha-key-agent-sidecar:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    resources: Mapping[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "10m", "memory": "48Mi"},
            "limits": {"cpu": "200m", "memory": "96Mi"},
        }
    )
    refresh_interval_seconds: int = 3600
    mount_path: str = KEY_MOUNT_PATH
    token_audience: str = "vault"
    token_expiration_seconds: int = 3600
    log_level: str = "info"
    log_format: str = "json"
    # A ConfigMap (key ``ca.crt``) in each workload namespace that the agent trusts for
    # Vault's TLS; ``None``: the image's public CAs only.
    vault_ca_config_map: str | None = None

    def __post_init__(self) -> None:
        checked = validate_resources(self.resources, "injection.resources")
        object.__setattr__(self, "resources", checked)  # frozen: set once, here.


@dataclass(frozen=True)
class AwsConfig:
    """Which AWS Secrets Manager bindings this operator serves (``spec.source: aws``).

    ``accounts`` is the allow-list of AWS account ids a binding's role and secret may
    be in: empty (the default) refuses every AWS binding, so a namespace cannot point
    its pods at an account the platform team never chose. Secret names (or the name
    part of an ARN) must sit under ``<secret_prefix>/<environment>``, as Vault paths do.
    ``endpoint_url`` overrides AWS's regional endpoints (a VPC endpoint) for the
    operator and every injected agent. ``audiences`` are the projected-token audiences
    a binding may have minted for STS.
    """

    accounts: tuple[str, ...] = ()
    secret_prefix: str = "captchaai"
    endpoint_url: str | None = None
    # Token audiences an AWS binding may ask for (spec.aws.audience): only what STS expects.
    audiences: tuple[str, ...] = ("sts.amazonaws.com",)


@dataclass(frozen=True)
class OperatorConfig:
    vault: VaultConfig = field(default_factory=VaultConfig)
    kv_mount: str = "secret"
    kv_path_prefix: str = "captchaai"
    environments: tuple[str, ...] = ("dev", "staging", "prod")
    # environment -> namespace patterns (fnmatch) that may bind it; an environment that is
    # not listed may be bound from any namespace. Vault's roles remain the second wall.
    environment_namespaces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    status_poll_seconds: float = 30.0
    # The Vault KV reads per second a rotation may cause: the spread published with a new
    # version is the fleet's size over this rate, so one consumer reads at once.
    vault_reads_per_second: float = 200.0
    peering_name: str | None = "captcha-key-agent"
    webhook_port: int = 8443
    # How long the API server waits for the pod-mutating webhook (its timeoutSeconds):
    # the admission's own API calls must answer well within it.
    webhook_timeout_seconds: int = 10
    webhook_service: str = "captcha-key-agent-webhook"
    mutating_configuration: str = "captcha-key-agent"
    validating_configuration: str = "captcha-key-agent"
    tls: TLSConfig = field(default_factory=TLSConfig)
    injection: InjectionConfig = field(default_factory=InjectionConfig)
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"
    aws: AwsConfig = field(default_factory=AwsConfig)

    def namespace_may_bind(self, namespace: str, environment: str) -> bool:
        """Whether a binding in ``namespace`` may name ``environment``."""
        patterns = self.environment_namespaces.get(environment)
        return patterns is None or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)

    @classmethod
    def load(cls, path: Path) -> OperatorConfig:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read the operator config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"the operator config {path} is not valid YAML: {exc}") from None
        try:
            return cls.from_mapping(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> OperatorConfig:
        top = _Section(raw, "")
        vault = top.section("vault")
        auth = vault.section("auth")
        kv, webhook = top.section("kv"), top.section("webhook")
        tls, inj, log = webhook.section("tls"), top.section("injection"), top.section("log")
        peering = top.section("peering")
        config = cls(
            vault=VaultConfig(
                address=vault.get("address", str, VaultConfig.address),
                ca_cert_file=vault.get("caCertFile", str, "") or None,
                namespace=vault.get("namespace", str, "") or None,
                auth_method=auth.get("method", str, "kubernetes", choices=WORKLOAD_AUTH_METHODS),
                auth_mount=auth.get("mount", str, "") or auth.get("method", str, "kubernetes"),
                auth_role=auth.get("role", str, VaultConfig.auth_role),
                token_file=Path(auth.get("tokenFile", str, str(VaultConfig.token_file))),
                audience=auth.get("audience", str, "vault"),
                allowed_addresses=_addresses(vault),
                allowed_audiences=_audiences(vault),
                allow_insecure_http=vault.get("allowInsecureHttp", bool, False),
            ),
            aws=_aws_config(top.section("aws")),
            kv_mount=kv.get("mount", str, "secret"),
            kv_path_prefix=kv.get("pathPrefix", str, "captchaai").strip("/"),
            environments=tuple(top.get("environments", list, ["dev", "staging", "prod"])),
            environment_namespaces=_environment_namespaces(top),
            status_poll_seconds=float(top.get("statusPollSeconds", int, 30, minimum=1)),
            vault_reads_per_second=float(top.get("vaultReadsPerSecond", int, 200, minimum=1)),
            peering_name=peering.get("name", str, cls.peering_name) or None,
            webhook_port=webhook.get("port", int, 8443, minimum=1),
            webhook_timeout_seconds=webhook.get("timeoutSeconds", int, 10, minimum=1),
            webhook_service=webhook.get("serviceName", str, cls.webhook_service),
            mutating_configuration=webhook.get(
                "mutatingWebhookConfiguration", str, cls.mutating_configuration
            ),
            validating_configuration=webhook.get(
                "validatingWebhookConfiguration", str, cls.validating_configuration
            ),
            tls=TLSConfig(
                mode=tls.get("mode", str, "self-signed", choices=("self-signed", "cert-manager")),
                secret_name=tls.get("secretName", str, TLSConfig.secret_name),
                cert_dir=Path(tls.get("certDir", str, str(TLSConfig.cert_dir))),
            ),
            injection=_injection_config(inj),
            log_level=log.get("level", str, "info", choices=("debug", "info", "warning", "error")),
            log_format=log.get("format", str, "json", choices=("json", "text")),
        )
        for section in (top, vault, auth, kv, webhook, tls, inj, log, peering):
            section.refuse_unknown()
        if config.injection.token_audience not in config.vault.allowed_audiences:
            raise ConfigError(
                f"injection.tokenAudience {config.injection.token_audience!r} must be one of "
                f"vault.allowedAudiences ({', '.join(config.vault.allowed_audiences)})"
            )
        return config


def _injection_config(inj: _Section) -> InjectionConfig:
    try:
        return InjectionConfig(
            image=inj.get("image", str, InjectionConfig.image),
            image_pull_policy=inj.get("imagePullPolicy", str, "IfNotPresent"),
            resources=inj.get("resources", dict, InjectionConfig().resources),
            refresh_interval_seconds=inj.get("refreshIntervalSeconds", int, 3600, minimum=10),
            mount_path=inj.get("mountPath", str, InjectionConfig.mount_path),
            token_audience=inj.get("tokenAudience", str, "vault"),
            token_expiration_seconds=inj.get("tokenExpirationSeconds", int, 3600, minimum=600),
            log_level=inj.get("logLevel", str, "info"),
            log_format=inj.get("logFormat", str, "json", choices=("json", "text")),
            vault_ca_config_map=_object_name(
                inj.get("vaultCaConfigMap", str, ""), "injection.vaultCaConfigMap"
            ),
        )
    except ResourcesError as exc:  # InjectionConfig checks its resources as it is made.
        raise ConfigError(str(exc)) from None


_ADDRESS = re.compile(r"https?://[^/?#@\s]+/?")


def _addresses(vault: _Section) -> tuple[str, ...]:
    """``vault.allowedAddresses``: scheme://host[:port], https unless http is allowed."""
    addresses = vault.get("allowedAddresses", list, [])
    allow_http = vault.raw.get("allowInsecureHttp") is True
    for address in addresses:
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise ConfigError(
                f"vault.allowedAddresses: {address!r} is not scheme://host[:port], "
                "e.g. https://vault.vault.svc:8200"
            )
        if address.startswith("http:") and not allow_http:
            raise ConfigError(
                f"vault.allowedAddresses: {address!r} is plain http, which sends tokens in "
                "the clear: use https, or set vault.allowInsecureHttp: true (development only)"
            )
        normalized_address(address)
    return tuple(addresses)


def _audiences(vault: _Section) -> tuple[str, ...]:
    """``vault.allowedAudiences``: never empty, never an audience the API server accepts."""
    audiences = vault.get("allowedAudiences", list, ["vault"])
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise ConfigError(
            f"vault.allowedAudiences must be a non-empty list of strings, not {audiences!r}"
        )
    for audience in audiences:
        if audience.rstrip("/") in API_SERVER_AUDIENCES:
            raise ConfigError(
                f"vault.allowedAudiences: {audience!r} is the Kubernetes API server's own "
                "audience: a token for it works against the API as the workload; use an "
                "audience only Vault accepts, e.g. vault"
            )
    return tuple(audiences)


def _environment_namespaces(top: _Section) -> dict[str, tuple[str, ...]]:
    """``environmentNamespaces``: environment -> list of namespace names or globs."""
    raw = top.get("environmentNamespaces", dict, {})
    environments = top.raw.get("environments") or ["dev", "staging", "prod"]
    mapping: dict[str, tuple[str, ...]] = {}
    for environment, patterns in raw.items():
        if environment not in environments:
            raise ConfigError(
                f"environmentNamespaces: {environment!r} is not one of environments "
                f"({', '.join(map(str, environments))})"
            )
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise ConfigError(
                f"environmentNamespaces.{environment} must be a list of namespace names or "
                f"patterns such as solver-{environment} or '*-{environment}', not {patterns!r}"
            )
        mapping[environment] = tuple(patterns)
    return mapping


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _object_name(value: str, where: str) -> str | None:
    """A Kubernetes object name (DNS subdomain), or ``None`` for ""."""
    if not value:
        return None
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ConfigError(f"{where} must be a Kubernetes object name, not {value!r}")
    return value


def _aws_config(aws: _Section) -> AwsConfig:
    accounts = tuple(str(a) for a in aws.get("accounts", list, []))
    bad = [a for a in accounts if not (len(a) == 12 and a.isdigit())]
    if bad:
        raise ConfigError(f"aws.accounts: {', '.join(bad)} are not 12-digit AWS account ids")
    return AwsConfig(
        accounts=accounts,
        secret_prefix=aws.get("secretPrefix", str, "captchaai").strip("/"),
        endpoint_url=aws.get("endpointUrl", str, "") or None,
        audiences=tuple(str(a) for a in aws.get("audiences", list, ["sts.amazonaws.com"])),
    )


class _Section:
    """One mapping of the file; remembers which keys were read to refuse the others."""

    def __init__(self, raw: object, where: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where.rstrip('.') or 'the top level'} must be a mapping")
        self.raw, self.where, self.read = raw, where, set[str]()

    def section(self, key: str) -> _Section:
        self.read.add(key)
        return _Section(self.raw.get(key), f"{self.where}{key}.")

    def get(
        self,
        key: str,
        kind: type,
        default: Any,
        *,
        choices: tuple[str, ...] = (),
        minimum: int | None = None,
    ) -> Any:
        self.read.add(key)
        value = self.raw.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self.where}{key} must be a {kind.__name__}, not {value!r}")
        if choices and value not in choices:
            raise ConfigError(
                f"{self.where}{key} must be one of {', '.join(choices)}, not {value!r}"
            )
        if minimum is not None and isinstance(value, int) and value < minimum:
            raise ConfigError(f"{self.where}{key} must be at least {minimum}, not {value!r}")
        return value

    def refuse_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self.read)
        if unknown:
            where = self.where.rstrip(".") or "the top level"
            raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}")
