"""validate_binding: the operator's policy on CaptchaKeyBindings beyond the CRD schema.

Aspects covered:
- a good binding is accepted: defaults applied (mount, field, auth mount, audience,
  refresh, file name and mode) and ``{environment}`` resolved in the path; a deeper path
  under ``<prefix>/<env>`` is accepted too.
- refused, each with a message naming the field and saying what to fix:
  environment not allowed; kv.mount not the allowed one; kv.path outside
  ``<prefix>/<env>`` (another environment, a sibling prefix, ``..`` segments, an absolute
  path); missing role; pinned version 0 or negative; bad file name; bad auth method;
- the namespace -> environment map: a mapped environment only from its namespaces (names
  and globs), unmapped ones from any namespace;
- the Vault policy: an address not on the allow-list, plain http (unless allowed), an
  audience not allowed, each refused with the chart value to change; the operator's own
  address (an empty vault.address) always allowed.
(The whole table of bad and good bindings, through the CRD schema, the running webhook
and the agent, is tests/operator/test_binding_rules.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.binding.model import InvalidBindingError
from agent.operator.config import OperatorConfig, VaultConfig
from agent.operator.validation import validate_binding

CONFIG = OperatorConfig(environments=("dev", "staging", "prod"))


def binding(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "environment": "dev",
        "vault": {"auth": {"role": "captcha-worker-dev"}},
    }
    body.update(spec)
    return {
        "apiVersion": "captchakeys.io/v1alpha1",
        "kind": "CaptchaKeyBinding",
        "metadata": {"name": "captcha-dev", "namespace": "solver-dev", "generation": 1},
        "spec": body,
    }


def refused(body: dict[str, Any], config: OperatorConfig = CONFIG) -> str:
    with pytest.raises(InvalidBindingError) as info:
        validate_binding(body, config)
    message = str(info.value)
    assert "'captcha-dev'" in message  # names the binding
    return message


def test_minimal_binding_gets_defaults_and_a_resolved_path() -> None:
    spec = validate_binding(binding(), CONFIG)
    assert spec.environment == "dev"
    assert spec.ref.mount == "secret"
    assert spec.ref.path == "captchaai/dev"
    assert spec.ref.field == "api_key"
    assert spec.ref.version is None
    assert spec.vault.method == "kubernetes"
    assert spec.vault.mount == "kubernetes"
    assert spec.vault.role == "captcha-worker-dev"
    assert spec.vault.audience == "vault"
    assert spec.vault.address is None
    assert spec.refresh_seconds is None  # the agent's injected default applies.
    assert spec.file_name == "api_key"
    assert spec.file_mode == 0o440
    assert spec.rotation_request is None


def test_full_binding_is_accepted_as_written() -> None:
    spec = validate_binding(
        binding(
            environment="prod",
            vault={
                "address": "https://vault.example:8200",
                "auth": {"method": "jwt", "mount": "jwt-k8s", "role": "r", "audience": "aud"},
            },
            kv={"mount": "secret", "path": "captchaai/{environment}/solver", "version": 4},
            file={"name": "captcha.key", "mode": 0o640},
            refreshIntervalSeconds=60,
            rotation={"requestedAt": "2026-11-23T00:00:00Z"},
        ),
        OperatorConfig(
            vault=VaultConfig(
                allowed_addresses=("https://vault.example:8200",),
                allowed_audiences=("vault", "aud"),
            )
        ),
    )
    assert spec.ref.path == "captchaai/prod/solver"
    assert spec.ref.version == 4
    assert (spec.vault.method, spec.vault.mount, spec.vault.audience) == ("jwt", "jwt-k8s", "aud")
    assert spec.vault.address == "https://vault.example:8200"
    assert (spec.file_name, spec.file_mode, spec.refresh_seconds) == ("captcha.key", 0o640, 60)
    assert spec.rotation_request == "2026-11-23T00:00:00Z"


def test_environment_not_allowed() -> None:
    message = refused(binding(environment="qa"))
    assert "spec.environment" in message
    assert "'qa'" in message
    assert "dev, staging, prod" in message
    assert "add it to the chart's environments value" in message


def test_environment_allowed_by_a_different_config() -> None:
    config = OperatorConfig(environments=("qa",))
    assert validate_binding(binding(environment="qa"), config).ref.path == "captchaai/qa"
    assert "spec.environment" in refused(binding(), config)


def test_kv_mount_not_the_allowed_one() -> None:
    message = refused(binding(kv={"mount": "kv-other"}))
    assert "spec.kv.mount" in message
    assert "'kv-other'" in message
    assert "use 'secret'" in message  # the mount to use instead


@pytest.mark.parametrize(
    "path",
    [
        "captchaai/prod",  # another environment
        "captchaai/{environment}x",  # a sibling: captchaai/devx
        "captchaai",  # the prefix itself, above every environment
        "other/dev",
        "captchaai/staging/{environment}",
    ],
)
def test_kv_path_outside_the_environment_prefix(path: str) -> None:
    message = refused(binding(kv={"path": path}))
    assert "spec.kv.path" in message
    assert "captchaai/dev" in message  # where the binding may read
    assert "may only read under secret/captchaai/dev" in message


@pytest.mark.parametrize(
    "path",
    [
        "captchaai/dev/../prod",
        "captchaai/{environment}/../../prod",
        "/captchaai/dev",
        "captchaai//dev",
        "captchaai/./dev",
    ],
)
def test_kv_path_that_could_wander_off(path: str) -> None:
    message = refused(binding(kv={"path": path}))
    assert "spec.kv.path" in message
    assert "none of them '.' or '..'" in message


@pytest.mark.parametrize("auth", [{}, {"method": "jwt"}])
def test_missing_role(auth: dict[str, Any]) -> None:
    message = refused(binding(vault={"auth": auth}))
    assert "spec.vault.auth.role is required" in message


def test_empty_role() -> None:
    message = refused(binding(vault={"auth": {"role": ""}}))
    assert "spec.vault.auth.role: '' is not allowed: a Vault role name" in message


@pytest.mark.parametrize("version", [0, -1, "3"])
def test_pinned_version_must_be_positive(version: object) -> None:
    message = refused(binding(kv={"version": version}))
    assert "spec.kv.version" in message
    assert "an integer" in message
    assert repr(version) in message


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "api_key.meta.json", "-x"])
def test_bad_file_name(name: str) -> None:
    message = refused(binding(file={"name": name}))
    assert "spec.file.name" in message
    assert repr(name) in message
    assert "is not allowed: 1-128 characters of [A-Za-z0-9._-]" in message


@pytest.mark.parametrize("method", ["approle", "token", "Kubernetes"])
def test_bad_auth_method(method: str) -> None:
    message = refused(binding(vault={"auth": {"method": method, "role": "r"}}))
    assert "spec.vault.auth.method" in message
    assert repr(method) in message
    assert "kubernetes, jwt" in message


def test_missing_environment() -> None:
    message = refused(binding(environment=None))
    assert "spec.environment is required" in message


@pytest.mark.parametrize("mode", [0o400, 0o444, 0o644, 0o441, 0o000])
def test_key_file_mode_must_be_group_readable_and_not_world_readable(mode: int) -> None:
    message = refused(binding(file={"name": "api_key", "mode": mode}))
    assert f"spec.file.mode: {mode} (octal {mode:#o}) is not allowed" in message
    assert "one of 288 (0440, the default) or 416 (0640): group-readable" in message


MAPPED = OperatorConfig(environment_namespaces={"prod": ("solver-prod", "payments-*")})


@pytest.mark.parametrize("namespace", ["solver-prod", "payments-eu"])
def test_a_mapped_environment_from_its_namespaces(namespace: str) -> None:
    body = binding(environment="prod")
    body["metadata"]["namespace"] = namespace
    assert validate_binding(body, MAPPED).environment == "prod"


def test_a_mapped_environment_from_another_namespace() -> None:
    message = refused(binding(environment="prod"), MAPPED)
    assert "spec.environment 'prod' may not be bound from namespace 'solver-dev'" in message
    assert "only from solver-prod, payments-*" in message
    assert "environmentNamespaces" in message


def test_an_unmapped_environment_from_any_namespace() -> None:
    assert validate_binding(binding(environment="staging"), MAPPED).environment == "staging"


POLICY = OperatorConfig(
    vault=VaultConfig(
        address="https://vault.vault.svc:8200",
        allowed_addresses=("https://vault-eu.example:8200",),
        allowed_audiences=("vault", "openbao"),
    )
)


@pytest.mark.parametrize(
    "address", ["https://vault.vault.svc:8200", "https://VAULT-EU.example:8200/", ""]
)
def test_allowed_vault_addresses(address: str) -> None:
    spec = validate_binding(binding(vault={"address": address, "auth": {"role": "r"}}), POLICY)
    assert spec.vault.address == (address or None)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("https://evil.example:8200", "allows https://vault.vault.svc:8200, https://vault-eu"),
        ("https://vault.vault.svc:8201", "the chart's vault.allowedAddresses"),
        ("http://vault.vault.svc:8200", "use https"),
    ],
)
def test_vault_addresses_not_allowed(address: str, expected: str) -> None:
    message = refused(binding(vault={"address": address, "auth": {"role": "r"}}), POLICY)
    assert f"spec.vault.address {address!r} is not allowed" in message
    assert expected in message


def test_plain_http_only_when_the_chart_allows_it() -> None:
    config = OperatorConfig(
        vault=VaultConfig(address="http://openbao.dev.svc:8200", allow_insecure_http=True)
    )
    body = binding(vault={"address": "http://openbao.dev.svc:8200", "auth": {"role": "r"}})
    assert validate_binding(body, config).vault.address == "http://openbao.dev.svc:8200"


@pytest.mark.parametrize("audience", ["other", "vault-staging"])
def test_audiences_not_allowed(audience: str) -> None:
    message = refused(binding(vault={"auth": {"role": "r", "audience": audience}}), POLICY)
    assert (
        f"spec.vault.auth.audience {audience!r} is not allowed: use one of vault, openbao"
        in message
    )


@pytest.mark.parametrize("audience", ["https://kubernetes.default.svc", "kubernetes"])
def test_the_api_servers_audience_is_refused_by_the_rules_themselves(audience: str) -> None:
    config = OperatorConfig(vault=VaultConfig(allowed_audiences=("vault", "other")))
    message = refused(binding(vault={"auth": {"role": "r", "audience": audience}}), config)
    assert f"spec.vault.auth.audience: {audience!r} is not allowed" in message
    assert "never the Kubernetes API server's own audience" in message
