"""validate_binding: the operator's policy on CaptchaKeyBindings beyond the CRD schema.

Aspects covered:
- a good binding is accepted: defaults applied (mount, field, auth mount, audience,
  refresh, file name and mode) and ``{environment}`` resolved in the path; a deeper path
  under ``<prefix>/<env>`` is accepted too.
- refused, each with a message naming the field and saying what to fix:
  environment not allowed; kv.mount not the allowed one; kv.path outside
  ``<prefix>/<env>`` (another environment, a sibling prefix, ``..`` segments, an absolute
  path); missing role; pinned version 0 or negative; bad file name; bad auth method.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.binding import InvalidBindingError
from agent.operator.config import OperatorConfig
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
        CONFIG,
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
    assert "'secret'" in message  # the mount to use instead


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
    assert "use a relative path without '..'" in message


@pytest.mark.parametrize("auth", [{}, {"role": ""}, {"method": "jwt"}])
def test_missing_role(auth: dict[str, Any]) -> None:
    message = refused(binding(vault={"auth": auth}))
    assert "spec.vault.auth.role is required" in message


@pytest.mark.parametrize("version", [0, -1, "3"])
def test_pinned_version_must_be_positive(version: object) -> None:
    message = refused(binding(kv={"version": version}))
    assert "spec.kv.version" in message
    assert "positive integer" in message
    assert repr(version) in message


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "api_key.meta.json", "-x"])
def test_bad_file_name(name: str) -> None:
    message = refused(binding(file={"name": name}))
    assert "spec.file.name" in message
    assert repr(name) in message
    assert "use 1-128 characters" in message


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
    assert f"spec.file.mode {mode:04o}" in message
    assert "e.g. 0440" in message
