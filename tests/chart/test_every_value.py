"""Every chart value changes what the chart renders: no value is parsed and then ignored.

Covers: for each leaf of values.yaml (a scalar, a list, or an empty map), the chart is
rendered by the real helm with that one value changed (``--set-json``) and compared with
the rendering without the change; the two must differ. Values that only matter when a
feature is on (cert-manager, the ServiceMonitor, the NetworkPolicy, a PodDisruptionBudget
by minAvailable...) are changed with that feature on in both renderings. A value whose
change cannot be rendered at all (the schema refuses every candidate) fails too: the test
would otherwise prove nothing for it. Where a value reaches code rather than manifests
(the operator's config file), its effect in the code is shown by the tests of that code,
e.g. ``tests/operator/test_injected_agent.py`` for ``sidecar.refreshIntervalSeconds``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, run_helm, template_args

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

# Values whose change needs a feature on to be seen; the longest matching prefix wins.
CONTEXT: dict[str, tuple[str, ...]] = {
    "webhook.tls.certManager": ('webhook.tls.mode="cert-manager"',),
    "metrics.serviceMonitor": ("metrics.serviceMonitor.enabled=true",),
    "metrics.serviceMonitor.enabled": (),
    "networkPolicy": ("networkPolicy.enabled=true",),
    "networkPolicy.enabled": (),
    "vault.caCert.key": ('vault.caCert.secretName="vault-ca"',),
    "operator.podAntiAffinity": (),
    "operator.peering.enabled": ("operator.replicas=1",),
    "operator.serviceAccount.create": ('operator.serviceAccount.name="existing"',),
    "operator.serviceAccount.name": (),
    "sidecar.tokenAudience": ('vault.allowedAudiences=["vault", "openbao"]',),
    "networkPolicy.agents": (
        "networkPolicy.agents.enabled=true",
        'networkPolicy.agents.namespaces=["solver-dev"]',
    ),
    "networkPolicy.agents.enabled": ('networkPolicy.agents.namespaces=["solver-dev"]',),
    "networkPolicy.agents.namespaces": ("networkPolicy.agents.enabled=true",),
}
# Changed values for leaves whose type alone does not give a valid one.
_SYSTEM_NODES = {"key": "pool", "operator": "In", "values": ["system"]}
_POOL = {"nodeSelectorTerms": [{"matchExpressions": [_SYSTEM_NODES]}]}
CHANGED: dict[str, list[Any]] = {
    "global.commonLabels": [{"team": "platform"}],
    "global.commonAnnotations": [{"team": "platform"}],
    "image.digest": ["sha256:" + "a" * 64],
    "image.pullPolicy": ["Always"],
    "sidecar.image.pullPolicy": ["Always"],
    "vault.auth.method": ["jwt"],
    "webhook.tls.mode": ["cert-manager"],
    "image.pullSecrets": [[{"name": "regcred"}], ["regcred"]],
    "vault.address": ["https://vault.example:8200"],
    "vault.caCert.secretName": ["vault-ca"],
    "vault.caCert.configMapName": ["vault-ca"],
    "environments": [["dev", "qa"]],
    "aws.accounts": [["123456789012"]],
    "aws.endpointUrl": ["https://vpce.example"],
    "aws.audiences": [["sts.custom"]],
    "operator.podAntiAffinity": ["hard", "none"],
    "operator.affinity": [
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": _POOL}}
    ],
    "operator.nodeSelector": [{"pool": "system"}],
    "operator.tolerations": [[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]],
    "operator.topologySpreadConstraints": [
        [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
            }
        ]
    ],
    "operator.priorityClassName": ["system-cluster-critical"],
    "operator.podAnnotations": [{"team": "platform"}],
    "operator.podLabels": [{"team": "platform"}],
    "operator.extraEnv": [[{"name": "EXTRA", "value": "1"}]],
    "operator.podDisruptionBudget.minAvailable": [1],
    "operator.serviceAccount.annotations": [{"team": "platform"}],
    "webhook.excludedNamespaces": [["kube-system", "monitoring"]],
    "webhook.service.annotations": [{"team": "platform"}],
    "webhook.tls.certManager.issuerRef": [
        {"kind": "ClusterIssuer", "name": "my-ca", "group": "cert-manager.io"}
    ],
    "webhook.tls.certManager.duration": ["720h"],
    "webhook.tls.certManager.renewBefore": ["240h"],
    "sidecar.vaultCaConfigMap": ["vault-ca"],
    "sidecar.mountPath": ["/srv/captchaai"],
    "sidecar.rbac.bindings": [[{"namespace": "solver-dev", "serviceAccount": "solver"}]],
    "metrics.service.annotations": [{"team": "platform"}],
    "metrics.serviceMonitor.interval": ["60s"],
    "metrics.serviceMonitor.scrapeTimeout": ["20s"],
    "metrics.serviceMonitor.labels": [{"release": "prometheus"}],
    "networkPolicy.metricsNamespaceSelector": [{"matchLabels": {"name": "monitoring"}}],
    "networkPolicy.apiServerPorts": [[6443]],
    "networkPolicy.apiServerPeers": [[{"ipBlock": {"cidr": "10.0.0.1/32"}}]],
    "networkPolicy.vaultPeers": [[{"namespaceSelector": {"matchLabels": {"name": "vault"}}}]],
    "networkPolicy.dnsPeers": [[{"namespaceSelector": {}}]],
    "networkPolicy.extraIngress": [[{"from": [{"podSelector": {}}]}]],
    "networkPolicy.extraEgress": [[{"to": [{"podSelector": {}}]}]],
    "vault.allowedAddresses": [["https://vault-eu.example:8200"]],
    "vault.allowedAudiences": [["vault", "openbao"]],
    "sidecar.tokenAudience": ["openbao"],
    "environmentNamespaces": [{"prod": ["solver-prod"]}],
    "networkPolicy.agents.namespaces": [["solver-dev"]],
    "networkPolicy.agents.kubeletPeers": [[{"ipBlock": {"cidr": "10.0.0.0/16"}}]],
}
_SUBTREES = ("resources", "podSecurityContext", "securityContext")  # changed as a whole below


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in _SUBTREES:
            yield from leaves(value, f"{path}.")
        else:
            yield path, value


def candidates(path: str, value: Any) -> list[Any]:
    if path in CHANGED:
        return CHANGED[path]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if path.endswith("resources"):
        return [{**value, "requests": {"cpu": "11m", "memory": "65Mi"}}]
    if path.endswith("ecurityContext"):
        return [{**value, "runAsUser": 65533}]
    if isinstance(value, str):
        return ["other", f"{value}x", "Ignore", "text", "debug"]
    raise AssertionError(f"{path}: add a changed value to CHANGED")


def context_of(path: str) -> tuple[str, ...]:
    matches = [prefix for prefix in CONTEXT if path == prefix or path.startswith(prefix + ".")]
    return CONTEXT[max(matches, key=len)] if matches else ()


_BASELINES: dict[tuple[str, ...], str | None] = {}  # one rendering per context, not per value


def baseline(helm: Path, context: tuple[str, ...]) -> str | None:
    if context not in _BASELINES:
        _BASELINES[context] = rendered(helm, json_sets=context)
    return _BASELINES[context]


def rendered(helm: Path, json_sets: tuple[str, ...] = ()) -> str | None:
    args = template_args()
    for pair in json_sets:
        args += ["--set-json", pair]
    result = run_helm(helm, *args)
    return result.stdout if result.returncode == 0 else None


@pytest.mark.parametrize(("path", "value"), list(leaves(VALUES)), ids=lambda p: str(p))
def test_changing_the_value_changes_the_rendering(helm: Path, path: str, value: Any) -> None:
    base = baseline(helm, context_of(path))
    assert base is not None, f"the chart does not render with {context_of(path)}"
    tried = []
    for changed in candidates(path, value):
        pair = f"{path}={json.dumps(changed)}"
        output = rendered(helm, json_sets=(*context_of(path), pair))
        tried.append(pair)
        if output is not None:
            assert output != base, f"{pair} renders exactly what {value!r} renders: no effect"
            return
    pytest.fail(f"no changed value of {path} renders (tried {tried}): add one to CHANGED")
