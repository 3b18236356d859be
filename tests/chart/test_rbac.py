"""RBAC: least privilege, split between the operator and the sidecars.

Covers:
- no wildcard verb, resource or API group anywhere, in any values file;
- the sidecar ClusterRole ``<fullname>-sidecar`` is get/list/watch on captchakeybindings
  and nothing else; RoleBindings from ``sidecar.rbac.bindings`` bind it per namespace;
- the operator has exactly the contract's rules; webhook configurations, the kopf
  peering object and the TLS Secret are limited by resourceNames wherever Kubernetes
  allows it; no Lease access (peering is kopf's, not a coordination.k8s.io Lease);
- kopf peering (cluster-scoped ClusterKopfPeering, the operator is cluster-wide): list/
  watch, and get/patch on ``<fullname>`` only; none of it when peering is off;
- in cert-manager mode the operator has no access to Secrets nor webhook configurations
  (and no Role at all);
- namespaced permissions (the TLS Secret) are a Role in the release namespace only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.conftest import CHART, CI_VALUES, NAMESPACE, Doc, Render, find, one, values_id

RBAC_KINDS = {"ClusterRole", "Role"}


def rules_of(doc: Doc) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(apiGroup, resource, verbs, resourceNames) per group/resource pair."""
    out = []
    for rule in doc["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.append(
                    (
                        group,
                        resource,
                        tuple(sorted(rule["verbs"])),
                        tuple(rule.get("resourceNames", ())),
                    )
                )
    return sorted(out)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_no_wildcards(render: Render, values: Path | None) -> None:
    roles = [d for d in render(values) if d["kind"] in RBAC_KINDS]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule


def test_sidecar_role_is_read_only_on_bindings(render: Render) -> None:
    role = one(render(), "ClusterRole", "captcha-key-agent-sidecar")
    assert rules_of(role) == [
        ("captchakeys.io", "captchakeybindings", ("get", "list", "watch"), ()),
    ]
    assert not find(render(), "RoleBinding", "captcha-key-agent-sidecar")


def test_sidecar_role_bindings_from_values(render: Render) -> None:
    docs = render(CHART / "ci" / "networkpolicy-servicemonitor-values.yaml")
    bindings = [
        d for d in docs if d["kind"] == "RoleBinding" and "sidecar" in d["metadata"]["name"]
    ]
    assert {(b["metadata"]["namespace"], b["subjects"][0]["name"]) for b in bindings} == {
        ("solver-dev", "solver"),
        ("solver-prod", "solver"),
    }
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "captcha-key-agent-sidecar",
        }
        assert binding["subjects"][0]["namespace"] == binding["metadata"]["namespace"]


def test_operator_cluster_role_self_signed(render: Render) -> None:
    role = one(render(), "ClusterRole", "captcha-key-agent-operator")
    webhook_names = ("captcha-key-agent",)
    assert rules_of(role) == sorted(
        [
            ("captchakeys.io", "captchakeybindings", ("get", "list", "patch", "watch"), ()),
            ("captchakeys.io", "captchakeybindings/status", ("get", "patch", "update"), ()),
            ("", "pods", ("get", "list", "watch"), ()),
            ("", "events", ("create", "patch"), ()),
            ("events.k8s.io", "events", ("create", "patch"), ()),
            ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), ()),
            ("", "namespaces", ("list", "watch"), ()),
            ("kopf.dev", "clusterkopfpeerings", ("list", "watch"), ()),
            ("kopf.dev", "clusterkopfpeerings", ("get", "patch"), ("captcha-key-agent",)),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                ("get", "patch"),
                webhook_names,
            ),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                ("get", "patch"),
                webhook_names,
            ),
        ]
    )


def test_operator_namespaced_role_self_signed(render: Render) -> None:
    docs = render()
    role = one(docs, "Role", "captcha-key-agent-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules_of(role) == sorted(
        [
            ("", "secrets", ("create",), ()),
            ("", "secrets", ("get", "update"), ("captcha-key-agent-webhook-tls",)),
        ]
    )
    binding = one(docs, "RoleBinding", "captcha-key-agent-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "captcha-key-agent-operator", "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize(
    "values", ["cert-manager-values.yaml", "cert-manager-clusterissuer-values.yaml"]
)
def test_cert_manager_mode_has_no_secret_or_webhook_access(render: Render, values: str) -> None:
    docs = render(CHART / "ci" / values)
    operator_rules = rules_of(one(docs, "ClusterRole", "captcha-key-agent-operator"))
    assert not find(docs, "Role", "captcha-key-agent-operator")
    assert not find(docs, "RoleBinding", "captcha-key-agent-operator")
    resources = {resource for _, resource, _, _ in operator_rules}
    assert "secrets" not in resources
    assert not {r for r in resources if "webhookconfigurations" in r}
    assert ("kopf.dev", "clusterkopfpeerings", ("list", "watch"), ()) in operator_rules


def test_no_role_grants_secrets_beyond_the_operator(render: Render) -> None:
    for values in [None, *CI_VALUES]:
        for role in (d for d in render(values) if d["kind"] in RBAC_KINDS):
            if role["metadata"]["name"].endswith("-operator"):
                continue
            for _, resource, _, _ in rules_of(role):
                assert resource.startswith("captchakeybindings"), role["metadata"]["name"]


def test_aggregated_roles(render: Render) -> None:
    view = one(render(), "ClusterRole", "captcha-key-agent-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {verbs for _, _, verbs, _ in rules_of(view)} == {("get", "list", "watch")}
    assert not find(render(), "ClusterRole", "captcha-key-agent-edit")
    docs = render(CHART / "ci" / "networkpolicy-servicemonitor-values.yaml")
    edit = one(docs, "ClusterRole", "captcha-key-agent-edit")
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_no_lease_access_and_peering_rules_only_with_peering(
    render: Render, values: Path | None
) -> None:
    docs = render(values)
    rules = [r for d in docs if d["kind"] in RBAC_KINDS for r in rules_of(d)]
    assert not [r for r in rules if r[0] == "coordination.k8s.io"]
    peering = [r for r in rules if r[0] == "kopf.dev"]
    peerings = [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    if peerings:
        (name,) = [p["metadata"]["name"] for p in peerings]
        assert sorted(peering) == [
            ("kopf.dev", "clusterkopfpeerings", ("get", "patch"), (name,)),
            ("kopf.dev", "clusterkopfpeerings", ("list", "watch"), ()),
        ]
    else:
        assert not peering
