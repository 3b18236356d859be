"""NOTES.txt (rendered by ``helm install --dry-run=client``, offline).

Covers: the next steps (binding, label/annotation, RoleBinding, ``kubectl get ckb``) are
always there; the failurePolicy Ignore, single-replica and plain-http-Vault warnings appear
exactly when those values are set.
"""

from __future__ import annotations

from pathlib import Path

from tests.chart.conftest import CHART, NAMESPACE, RELEASE, run_helm


def notes(helm: Path, values: Path | None = None) -> str:
    args = ["install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client"]
    if values is not None:
        args += ["-f", str(values)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stderr
    assert "NOTES:" in result.stdout
    return result.stdout.split("NOTES:", 1)[1]


def test_default_notes_give_next_steps_without_warnings(helm: Path) -> None:
    text = notes(helm)
    for step in (
        "kind: CaptchaKeyBinding",
        'captchakeys.io/inject: "true"',
        "captchakeys.io/binding: captchaai-dev",
        "--clusterrole=captcha-key-agent-sidecar",
        "kubectl get ckb",
        "helm test captcha-key-agent",
    ):
        assert step in text, step
    assert "WARNING" not in text


def test_notes_warn_about_ignore_and_a_single_replica(helm: Path) -> None:
    text = notes(helm, CHART / "ci" / "single-replica-ignore-values.yaml")
    assert "WARNING: webhook.failurePolicy is Ignore" in text
    assert "WARNING: operator.replicas is 1" in text


def test_notes_warn_when_plain_http_vault_addresses_are_allowed(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "http.yaml"
    values.write_text("vault:\n  allowInsecureHttp: true\n")
    assert "WARNING: vault.allowInsecureHttp is true" in notes(helm, values)
    assert "allowInsecureHttp" not in notes(helm)
