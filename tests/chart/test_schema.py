"""values.schema.json rejects bad values with a useful message.

Covers: wrong types, unknown enum values (failurePolicy, TLS mode, log level/format, auth
method, pull policy), out-of-range numbers (replicas < 1, webhook timeout, refresh
interval), bad patterns (environments, Vault address, image digest), unknown keys
(typos), both Vault CA sources at once, the Vault policy (addresses that are not
scheme://host[:port], the API server's audiences), the namespace->environment map and
the agents' NetworkPolicy values; and that the schema is draft-07 and every
top-level value in values.yaml is described by it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, run_helm, template_args

BAD_VALUES = [
    ("operator.replicas=0", "replicas"),
    ("operator.replicas=two", "replicas"),
    ("webhook.failurePolicy=Maybe", "failurePolicy"),
    ("webhook.failurePolicy=fail", "failurePolicy"),
    ("webhook.validating.failurePolicy=Never", "failurePolicy"),
    ("webhook.timeoutSeconds=31", "timeoutSeconds"),
    ("webhook.timeoutSeconds=0", "timeoutSeconds"),
    ("webhook.tls.mode=letsencrypt", "mode"),
    ("operator.log.level=verbose", "level"),
    ("sidecar.log.format=xml", "format"),
    ("vault.auth.method=token", "method"),
    ("vault.address=vault:8200", "address"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("image.digest=latest", "digest"),
    ("environments={Prod_Env}", "environments"),
    ("sidecar.refreshIntervalSeconds=5", "refreshIntervalSeconds"),
    ("operator.podAntiAffinity=medium", "podAntiAffinity"),
    ("operator.replicaCount=3", "replicaCount"),
    ("webhook.failurPolicy=Fail", "failurPolicy"),
    ("crds.install=yes", "install"),
    ("vault.caCert.secretName=a,vault.caCert.configMapName=b", "caCert"),
    ("sidecar.rbac.bindings[0].namespace=ns", "serviceAccount"),
    ("sidecar.vaultCaConfigMap=Vault_CA", "vaultCaConfigMap"),
    ("operator.leaderElection.enabled=true", "leaderElection"),
    ("vault.allowedAddresses={vault-eu:8200}", "allowedAddresses"),
    ("vault.allowedAddresses={https://u@evil.example}", "allowedAddresses"),
    ("vault.allowedAudiences={https://kubernetes.default.svc}", "allowedAudiences"),
    ("vault.allowedAudiences={kubernetes}", "allowedAudiences"),
    ("vault.allowInsecureHttp=maybe", "allowInsecureHttp"),
    ("environmentNamespaces.Prod={solver-prod}", "invalid propertyName 'Prod'"),
    ("environmentNamespaces.prod=solver-prod", "environmentNamespaces"),
    ("networkPolicy.agents.namespaces={Solver_Dev}", "namespaces"),
    ("networkPolicy.agents.enable=true", "enable"),
]


@pytest.mark.parametrize(("bad", "mentions"), BAD_VALUES)
def test_bad_values_are_rejected(helm: Path, bad: str, mentions: str) -> None:
    result = run_helm(helm, *template_args(None, (bad,)))
    assert result.returncode != 0, f"{bad} was accepted"
    assert "schema" in result.stderr, result.stderr
    assert mentions in result.stderr, result.stderr


def test_good_overrides_are_accepted(helm: Path) -> None:
    sets = (
        "operator.replicas=1,operator.peering.enabled=false",
        "sidecar.vaultCaConfigMap=vault-ca.example.io",
        "webhook.failurePolicy=Ignore",
        "operator.podDisruptionBudget.maxUnavailable=50%",
        "sidecar.rbac.bindings[0].namespace=ns,sidecar.rbac.bindings[0].serviceAccount=sa",
    )
    result = run_helm(helm, *template_args(None, sets))
    assert result.returncode == 0, result.stderr


def test_schema_is_draft_07_and_covers_values_yaml() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])


def test_every_value_is_documented() -> None:
    """Every value has a `# --` comment above it, or above the map it belongs to."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    checked = 0
    ancestors: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while ancestors and ancestors[-1][0] >= indent:
            ancestors.pop()
        documented = _documented(lines, index) or any(doc for _, doc in ancestors)
        key, _, rest = stripped.partition(":")
        next_line = lines[index + 1].strip() if index + 1 < len(lines) else ""
        is_value = bool(rest.strip()) or next_line.startswith("- ")
        checked += is_value
        if is_value and not documented:
            undocumented.append(f"values.yaml:{index + 1}: {key}")
        ancestors.append((indent, documented))
    assert checked >= 60
    assert not undocumented, undocumented


def _documented(lines: list[str], index: int) -> bool:
    back = index - 1
    while back >= 0 and lines[back].strip().startswith("#"):
        if lines[back].strip().startswith("# --"):
            return True
        back -= 1
    return False
