"""The admission webhook configurations and their TLS wiring.

Covers:
- the pod-mutating webhook only sees opted-in pods (objectSelector on
  ``captchakeys.io/inject: "true"``), never the release namespace, only pod CREATE,
  sideEffects None, admissionReviewVersions [v1], reinvocation, timeout;
- failurePolicy: Fail by default, as set by values otherwise;
- the validating webhook covers captchakeybindings CREATE/UPDATE;
- both call the webhook Service on the contract's paths; the Service maps 443 to the
  operator's ``webhook`` port (8443);
- self-signed TLS leaves caBundle empty; cert-manager mode adds the Issuer, the
  Certificate for the Service's DNS names, the inject-ca-from annotations and the Secret
  mounted at certDir;
- the helm test pod calls ``captchakey check-webhook`` with the Service URL and the CA.
"""

from __future__ import annotations

from tests.chart.conftest import CHART, NAMESPACE, Doc, Render, one

CERT_MANAGER = CHART / "ci" / "cert-manager-values.yaml"
IGNORE = CHART / "ci" / "single-replica-ignore-values.yaml"


def mutating(docs: list[Doc]) -> Doc:
    config = one(docs, "MutatingWebhookConfiguration", "captcha-key-agent")
    assert len(config["webhooks"]) == 1
    return config["webhooks"][0]


def validating(docs: list[Doc]) -> Doc:
    config = one(docs, "ValidatingWebhookConfiguration", "captcha-key-agent")
    assert len(config["webhooks"]) == 1
    return config["webhooks"][0]


def test_mutating_webhook_only_sees_opted_in_pods(render: Render) -> None:
    hook = mutating(render())
    assert hook["objectSelector"] == {"matchLabels": {"captchakeys.io/inject": "true"}}
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]


def test_mutating_webhook_excludes_the_release_namespace(render: Render) -> None:
    cases = [
        (render(), [NAMESPACE, "kube-system"]),
        (render(IGNORE), [NAMESPACE]),  # excludedNamespaces: []
        (render(None, f"webhook.excludedNamespaces={{other,{NAMESPACE}}}"), [NAMESPACE, "other"]),
    ]
    for docs, expected in cases:
        (expr,) = mutating(docs)["namespaceSelector"]["matchExpressions"]
        assert expr["key"] == "kubernetes.io/metadata.name"
        assert expr["operator"] == "NotIn"
        assert expr["values"] == expected


def test_mutating_webhook_settings(render: Render) -> None:
    hook = mutating(render())
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["timeoutSeconds"] == 10
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"] == {
        "name": "captcha-key-agent-webhook",
        "namespace": NAMESPACE,
        "path": "/mutate-pods",
        "port": 443,
    }
    assert "caBundle" not in hook["clientConfig"]


def test_failure_policy_follows_values(render: Render) -> None:
    docs = render(IGNORE)
    assert mutating(docs)["failurePolicy"] == "Ignore"
    assert mutating(docs)["timeoutSeconds"] == 5
    assert validating(docs)["failurePolicy"] == "Ignore"
    docs = render(None, "webhook.failurePolicy=Ignore")
    assert mutating(docs)["failurePolicy"] == "Ignore"
    assert validating(docs)["failurePolicy"] == "Fail"


def test_validating_webhook_covers_bindings(render: Render) -> None:
    hook = validating(render())
    assert hook["rules"] == [
        {
            "apiGroups": ["captchakeys.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["captchakeybindings"],
            "scope": "Namespaced",
        }
    ]
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["clientConfig"]["service"]["path"] == "/validate-captchakeybindings"
    assert hook["clientConfig"]["service"]["name"] == "captcha-key-agent-webhook"


def test_webhook_service_targets_the_operator_port(render: Render) -> None:
    docs = render()
    service = one(docs, "Service", "captcha-key-agent-webhook")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    deployment = one(docs, "Deployment", "captcha-key-agent-operator")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    ports = {
        p["name"]: p["containerPort"]
        for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports == {"webhook": 8443, "health": 8080, "metrics": 9090}
    metrics = one(docs, "Service", "captcha-key-agent-metrics")
    assert metrics["spec"]["ports"][0]["port"] == 9090


def test_self_signed_mode_has_no_cert_manager_objects(render: Render) -> None:
    docs = render()
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Issuer", "Certificate"}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = one(docs, kind)["metadata"].get("annotations") or {}
        assert "cert-manager.io/inject-ca-from" not in annotations


def test_cert_manager_mode(render: Render) -> None:
    docs = render(CERT_MANAGER)
    issuer = one(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    cert = one(docs, "Certificate", "captcha-key-agent-webhook")
    assert cert["spec"]["secretName"] == "captcha-key-agent-webhook-tls"
    assert cert["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert f"captcha-key-agent-webhook.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = one(docs, kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == (
            f"{NAMESPACE}/captcha-key-agent-webhook"
        )
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "captcha-key-agent-webhook-tls"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["webhook-tls"] == "/etc/captchakeys/tls"


def test_cert_manager_with_an_existing_issuer(render: Render) -> None:
    docs = render(CHART / "ci" / "cert-manager-clusterissuer-values.yaml")
    assert not [d for d in docs if d["kind"] == "Issuer"]
    cert = one(docs, "Certificate")
    assert cert["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
    assert cert["spec"]["secretName"] == "my-webhook-tls"


def test_helm_test_pod_checks_the_webhook(render: Render) -> None:
    docs = render()
    pod = one(docs, "Pod", "captcha-key-agent-test-webhook")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["args"] == [
        "check-webhook",
        "--url",
        f"https://captcha-key-agent-webhook.{NAMESPACE}.svc:443/mutate-pods",
        "--ca-file",
        "/etc/captchakeys/tls/ca.crt",
    ]
    volume = pod["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == "captcha-key-agent-webhook-tls"
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not [d for d in render(None, "tests.enabled=false") if d["kind"] == "Pod"]
