"""The operator Deployment, its configuration and its security posture.

Covers:
- Pod Security Standard "restricted" for every pod the chart renders, in every values
  file (non-root 65532, no privilege escalation, drop ALL, seccomp RuntimeDefault,
  read-only root filesystem, no host namespaces or hostPath);
- API tokens only where needed: the ServiceAccount and every pod turn automount off; the
  operator mounts an explicit projected API token, and a Vault token with audience
  ``vault`` at the contract's tokenFile path;
- replicas, anti-affinity, PodDisruptionBudget, POD_NAMESPACE/POD_NAME, contract ports
  and probe paths;
- the ConfigMap's config.yaml has exactly the contract's keys and names, and the
  operator's own parser (``OperatorConfig.from_mapping``, which refuses unknown keys)
  accepts it for every values file; a config change changes the pod template's checksum
  (pods roll);
- kopf peering: ``peering.name`` is ``<fullname>`` and a ClusterKopfPeering of that name
  is rendered, or ``""`` (standalone) and none without peering; replicas > 1 without
  peering is refused;
- ``sidecar.vaultCaConfigMap`` reaches ``injection.vaultCaConfigMap``;
- ``webhook.timeoutSeconds`` reaches the operator too (``webhook.timeoutSeconds``): its
  binding lookup during admission gets half of it (shown in
  ``tests/operator/test_webhooks.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.operator.config import OperatorConfig
from tests.chart.conftest import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    Doc,
    Render,
    one,
    run_helm,
    template_args,
    values_id,
)

CONTRACT_CONFIG = """
vault:
  address: https://vault.vault.svc:8200
  caCertFile: ""
  namespace: ""
  auth:
    method: kubernetes
    mount: kubernetes
    role: captcha-key-operator
    tokenFile: /var/run/secrets/captchakeys/vault/token
    audience: vault
  allowedAddresses: []
  allowedAudiences: [vault]
  allowInsecureHttp: false
kv:
  mount: secret
  pathPrefix: captchaai
aws:
  accounts: []
  secretPrefix: captchaai
  endpointUrl: ""
  audiences: [sts.amazonaws.com]
environments: [dev, staging, prod]
environmentNamespaces: {}
statusPollSeconds: 30
vaultReadsPerSecond: 200
peering:
  name: captcha-key-agent
webhook:
  port: 8443
  timeoutSeconds: 10
  serviceName: captcha-key-agent-webhook
  mutatingWebhookConfiguration: captcha-key-agent
  validatingWebhookConfiguration: captcha-key-agent
  tls:
    mode: self-signed
    secretName: captcha-key-agent-webhook-tls
    certDir: /etc/captchakeys/tls
injection:
  image: ghcr.io/captcha-key-agent/captcha-key-agent-sidecar:0.1.0
  imagePullPolicy: IfNotPresent
  resources: {requests: {cpu: 10m, memory: 48Mi}, limits: {cpu: 200m, memory: 96Mi}}
  refreshIntervalSeconds: 3600
  mountPath: /var/run/captchaai
  tokenAudience: vault
  tokenExpirationSeconds: 3600
  logLevel: info
  logFormat: json
  vaultCaConfigMap: ""
log:
  level: info
  format: json
"""


def pod_specs(docs: list[Doc]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
        elif doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
    return specs


def config_of(docs: list[Doc]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap", "captcha-key-agent-config")
    config: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return config


def operator_pod(docs: list[Doc]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", "captcha-key-agent-operator")["spec"][
        "template"
    ]["spec"]
    return spec


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_pods_are_restricted(render: Render, values: Path | None) -> None:
    specs = pod_specs(render(values))
    assert len(specs) == 2  # operator, helm test
    for name, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] == 65532, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["runAsNonRoot"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert "privileged" not in sc, name
            assert container["resources"]["requests"], name


def test_api_and_vault_tokens_are_explicit(render: Render) -> None:
    docs = render()
    account = one(docs, "ServiceAccount", "captcha-key-agent-operator")
    assert account["automountServiceAccountToken"] is False
    pod = operator_pod(docs)
    assert pod["serviceAccountName"] == "captcha-key-agent-operator"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["kube-api-access"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    api_sources = volumes["kube-api-access"]["projected"]["sources"]
    assert api_sources[0]["serviceAccountToken"]["path"] == "token"
    assert "audience" not in api_sources[0]["serviceAccountToken"]  # the API server's
    assert api_sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    (vault_source,) = volumes["vault-token"]["projected"]["sources"]
    assert vault_source["serviceAccountToken"]["audience"] == "vault"
    token_file = f"{mounts['vault-token']}/{vault_source['serviceAccountToken']['path']}"
    assert token_file == config_of(docs)["vault"]["auth"]["tokenFile"]


def test_operator_deployment(render: Render) -> None:
    docs = render()
    deployment = one(docs, "Deployment", "captcha-key-agent-operator")
    assert deployment["spec"]["replicas"] == 2
    pod = operator_pod(docs)
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    container = pod["containers"][0]
    assert container["args"] == ["operator", "--config", "/etc/captchakeys/config.yaml"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"][:2]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    pdb = one(docs, "PodDisruptionBudget", "captcha-key-agent-operator")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_hard_anti_affinity_and_custom_image(render: Render) -> None:
    docs = render(CHART / "ci" / "custom-image-resources-values.yaml")
    deployment = one(docs, "Deployment", "ckb-operator")
    pod = deployment["spec"]["template"]["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert pod["containers"][0]["image"].startswith(
        "registry.example.com/mirror/captcha-key-agent@sha256:"
    )
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": deployment["spec"]["selector"],
    }
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert (
        config["injection"]["image"] == "registry.example.com/mirror/captcha-key-agent:0.1.0-slim"
    )
    assert config["injection"]["logFormat"] == "text"
    assert config["webhook"]["serviceName"] == "ckb-webhook"
    assert config["environments"] == ["dev", "qa", "prod"]


def test_config_file_follows_the_contract(render: Render) -> None:
    assert config_of(render()) == yaml.safe_load(CONTRACT_CONFIG)


def test_config_names_match_rendered_objects(render: Render) -> None:
    for values in [None, *CI_VALUES]:
        docs = render(values)
        config = config_of_any(docs)
        webhook = config["webhook"]
        one(docs, "Service", webhook["serviceName"])
        one(docs, "MutatingWebhookConfiguration", webhook["mutatingWebhookConfiguration"])
        one(docs, "ValidatingWebhookConfiguration", webhook["validatingWebhookConfiguration"])
        mutating = one(docs, "MutatingWebhookConfiguration")["webhooks"][0]
        assert mutating["clientConfig"]["service"]["name"] == webhook["serviceName"]


def config_of_any(docs: list[Doc]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap")
    config: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return config


def test_vault_ca_is_mounted_and_configured(render: Render) -> None:
    docs = render(CHART / "ci" / "cert-manager-values.yaml")
    config = config_of(docs)
    assert config["vault"]["caCertFile"] == "/etc/captchakeys/vault-ca/ca.pem"
    assert config["vault"]["namespace"] == "platform"
    assert config["webhook"]["tls"]["mode"] == "cert-manager"
    pod = operator_pod(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["vault-ca"]["secret"]["secretName"] == "vault-ca"
    docs = render(CHART / "ci" / "cert-manager-clusterissuer-values.yaml")
    assert config_of(docs)["vault"]["auth"] == {
        "method": "jwt",
        "mount": "jwt-k8s",
        "role": "captcha-operator-jwt",
        "tokenFile": "/var/run/secrets/captchakeys/vault/token",
        "audience": "vault",
    }
    volumes = {v["name"]: v for v in operator_pod(docs)["volumes"]}
    assert volumes["vault-ca"]["configMap"]["name"] == "vault-ca-bundle"


def test_config_change_rolls_the_pods(render: Render) -> None:
    def checksum(docs: list[Doc]) -> str:
        deployment = one(docs, "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    base = checksum(render())
    assert len(base) == 64
    assert checksum(render(None, "operator.log.level=debug")) != base
    assert checksum(render(None, "operator.replicas=3")) == base


def test_many_replicas_need_peering(helm: Path) -> None:
    result = run_helm(helm, *template_args(None, ("operator.peering.enabled=false",)))
    assert result.returncode != 0
    assert "operator.peering.enabled" in result.stderr


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_operator_accepts_the_rendered_config(render: Render, values: Path | None) -> None:
    """The operator's own parser, which refuses unknown keys: chart and code cannot drift."""
    docs = render(values)
    config = OperatorConfig.from_mapping(config_of_any(docs))
    assert config.webhook_service == config_of_any(docs)["webhook"]["serviceName"]
    peerings = [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    if config.peering_name is None:
        assert not peerings
    else:
        (peering,) = peerings
        assert peering["metadata"]["name"] == config.peering_name
        assert "namespace" not in peering["metadata"]  # cluster-scoped


def test_single_replica_without_peering_runs_standalone(render: Render) -> None:
    docs = render(CHART / "ci" / "single-replica-ignore-values.yaml")
    assert config_of(docs)["peering"] == {"name": ""}
    assert OperatorConfig.from_mapping(config_of(docs)).peering_name is None
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]


def test_peering_is_named_after_the_fullname(render: Render) -> None:
    docs = render(CHART / "ci" / "custom-image-resources-values.yaml")
    assert config_of_any(docs)["peering"] == {"name": "ckb"}
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "ckb"


def test_sidecar_vault_ca_config_map_reaches_the_injection_config(render: Render) -> None:
    docs = render(CHART / "ci" / "cert-manager-values.yaml")
    assert config_of(docs)["injection"]["vaultCaConfigMap"] == "vault-ca"
    injection = OperatorConfig.from_mapping(config_of(docs)).injection
    assert injection.vault_ca_config_map == "vault-ca"
    assert OperatorConfig.from_mapping(config_of(render())).injection.vault_ca_config_map is None


def test_the_webhook_timeout_reaches_the_operator(render: Render) -> None:
    docs = render(None, "webhook.timeoutSeconds=4")
    assert config_of(docs)["webhook"]["timeoutSeconds"] == 4
    assert OperatorConfig.from_mapping(config_of(docs)).webhook_timeout_seconds == 4


def test_network_policy(render: Render) -> None:
    docs = render(CHART / "ci" / "networkpolicy-servicemonitor-values.yaml")
    policy = one(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"] == one(docs, "Deployment")["spec"]["selector"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    ingress_ports = [p["port"] for rule in spec["ingress"] for p in rule["ports"]]
    assert ingress_ports == ["webhook", "health", "metrics"]
    assert "from" not in spec["ingress"][0]  # the API server is not a pod
    assert spec["ingress"][2]["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443, 6443, 8200, 8099}
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert not [d for d in render() if d["kind"] in {"NetworkPolicy", "ServiceMonitor"}]
