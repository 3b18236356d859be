"""Chart values for where bindings may send tokens, who may bind what, and the agents' port.

Covers, through ``helm template`` with the real binary:
- vault.allowedAddresses / allowedAudiences / allowInsecureHttp and environmentNamespaces
  reach the operator's config file, which loads into the policy the webhook enforces and
  injects into every agent (defaults: only vault.address, only ``vault``, no http, no map);
- the chart refuses, with the value to change, a plain-http allowed address without
  allowInsecureHttp and a sidecar.tokenAudience outside allowedAudiences;
- docs/contract.md names the environment variables that carry the policy, as declared;
- networkPolicy.agents renders one NetworkPolicy per listed consumer namespace: opted-in
  pods' port 8099 admits only the operator's pods (release namespace, operator labels)
  and the kubeletPeers; every other TCP port and all UDP/SCTP stay open; nothing is
  rendered by default.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.operator.config import OperatorConfig
from tests.chart.conftest import NAMESPACE, Render, find, one, run_helm, template_args


def operator_config(render: Render, *sets: str) -> OperatorConfig:
    configmap = one(render(None, *sets), "ConfigMap")
    return OperatorConfig.from_mapping(yaml.safe_load(configmap["data"]["config.yaml"]))


def test_default_policy_allows_only_the_operators_vault(render: Render) -> None:
    config = operator_config(render)
    assert config.vault.policy.addresses == ("https://vault.vault.svc:8200",)
    assert config.vault.policy.audiences == ("vault",)
    assert config.vault.policy.allow_http is False
    assert config.environment_namespaces == {}


def test_policy_values_reach_the_operator(render: Render) -> None:
    config = operator_config(
        render,
        "vault.allowedAddresses={https://vault-eu.example:8200,http://openbao.dev:8200}",
        "vault.allowedAudiences={vault,openbao}",
        "vault.allowInsecureHttp=true",
        "environmentNamespaces.prod={solver-prod,payments-*}",
    )
    assert config.vault.policy.addresses == (
        "https://vault.vault.svc:8200",
        "https://vault-eu.example:8200",
        "http://openbao.dev:8200",
    )
    assert config.vault.policy.audiences == ("vault", "openbao")
    assert config.vault.policy.allow_http is True
    assert config.namespace_may_bind("payments-eu", "prod")
    assert not config.namespace_may_bind("solver-dev", "prod")


def test_the_chart_refuses_inconsistent_policy_values(helm: Path) -> None:
    result = run_helm(helm, *template_args(None, ("vault.allowedAddresses={http://v:8200}",)))
    assert result.returncode != 0
    assert "http://v:8200 is plain http" in result.stderr
    assert "vault.allowInsecureHttp=true" in result.stderr
    result = run_helm(helm, *template_args(None, ("vault.allowedAudiences={openbao}",)))
    assert result.returncode != 0
    assert 'sidecar.tokenAudience "vault" must be one of vault.allowedAudiences' in result.stderr


def test_no_agent_network_policy_by_default(render: Render) -> None:
    names = [d["metadata"]["name"] for d in find(render(), "NetworkPolicy")]
    assert not [n for n in names if n.endswith("-agents")]


def test_agent_network_policy_per_consumer_namespace(render: Render) -> None:
    docs = render(
        None,
        "networkPolicy.agents.enabled=true",
        "networkPolicy.agents.namespaces={solver-dev,solver-prod}",
        "networkPolicy.agents.kubeletPeers[0].ipBlock.cidr=10.0.0.0/16",
    )
    policies = [d for d in find(docs, "NetworkPolicy") if d["metadata"]["name"].endswith("-agents")]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["solver-dev", "solver-prod"]
    spec = policies[0]["spec"]
    assert spec["podSelector"] == {"matchLabels": {"captchakeys.io/inject": "true"}}
    assert spec["policyTypes"] == ["Ingress"]
    agent_rule, other_rule = spec["ingress"]
    assert agent_rule["ports"] == [{"port": 8099, "protocol": "TCP"}]
    operator_peer, kubelet_peer = agent_rule["from"]
    assert operator_peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    operator_pods = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert operator_peer["podSelector"]["matchLabels"] == operator_pods
    assert kubelet_peer == {"ipBlock": {"cidr": "10.0.0.0/16"}}
    assert "from" not in other_rule  # every other port: from anywhere
    tcp = sorted((p["port"], p["endPort"]) for p in other_rule["ports"] if p["protocol"] == "TCP")
    assert tcp == [(1, 8098), (8100, 65535)]
    others = {(p["protocol"], p["port"], p["endPort"]) for p in other_rule["ports"]}
    assert {("UDP", 1, 65535), ("SCTP", 1, 65535)} <= others


def test_the_contract_documents_the_policy_environment_as_declared() -> None:
    from agent.binding.policy import VaultPolicy
    from tests.chart.conftest import ROOT

    contract = (ROOT / "docs" / "contract.md").read_text()
    for variable in VaultPolicy().as_env():
        assert f"`{variable['name']}`" in contract


def test_the_chart_refuses_the_same_api_server_audiences_as_the_binding_rules() -> None:
    import json

    from agent.binding.schema import API_SERVER_AUDIENCES
    from tests.chart.conftest import CHART

    schema = json.loads((CHART / "values.schema.json").read_text())
    audiences = schema["properties"]["vault"]["properties"]["allowedAudiences"]["items"]
    assert audiences["not"]["enum"] == list(API_SERVER_AUDIENCES)
