"""One set of rules for CaptchaKeyBindings: the CRD schema, the running webhook and the agent.

A table of bad and good bindings (at least 60 and 20) goes through three layers:

- **schema**: the CRD's ``openAPIV3Schema`` as installed (``manifests/crds/``), checked by
  the ``jsonschema`` package with the API server's semantics where they differ from
  JSON Schema's: patterns are Go (RE2) regular expressions, whose ``$`` matches only at
  the very end of the text. The CRD has no CEL rules (every rule is structural), so
  nothing is left unevaluated.
- **webhook**: an ``admission.k8s.io/v1`` AdmissionReview posted over HTTPS to the real
  operator, configured with allow-lists (Vault addresses, audiences) and a
  namespace-to-environment map.
- **agent**: :meth:`BindingSpec.from_body` with the policy the operator injects into each
  agent (``VaultPolicy``), which is what the key agent runs on every binding it sees.

Every binding gets the same verdict from the schema and the webhook, except those that
only the operator's policy can judge (the table says which, and the schema must accept
those); the agent refuses everything the schema refuses plus the address and audience
policy. Every refusal names the field the schema also blamed, shows the value, and says
what is allowed. The counts per field and layer are printed (``pytest -s``) for the
issue's closing note.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from agent.binding.model import BindingSpec, InvalidBindingError
from agent.operator.config import AwsConfig, OperatorConfig, TLSConfig, VaultConfig
from tests.rig.helpers import free_port
from tests.rig.kube import RealisticKubernetes
from tests.rig.operator import SERVING_SECRET, RunningOperator, operator_on_loopback

CRD_FILE = (
    Path(__file__).resolve().parents[2] / "manifests/crds/captchakeys.io_captchakeybindings.yaml"
)
ALLOWED_ADDRESS = "https://vault.example.internal:8200"
ROLE_ARN = "arn:aws:iam::123456789012:role/captchakey-dev"
DELETE = object()

# Which layers refuse: "schema" = the CRD schema, the webhook and the agent all refuse;
# "policy" = the schema accepts, the webhook and the agent refuse (where the pods' tokens
# go); "operator" = the schema and the agent accept, only the webhook refuses (what only the
# operator knows: environments, namespaces, KV prefix; Vault's roles are the second wall).
SCHEMA, POLICY, OPERATOR = "schema", "policy", "operator"


@dataclass
class Case:
    field: str  # spec.x.y: the field the refusal must name ("" for good bindings)
    value: Any
    layer: str | None = None  # None: good
    namespace: str = "solver-dev"
    also: dict[str, Any] = field(default_factory=dict)  # further fields to set


def bad(where: str, value: Any, layer: str = SCHEMA, **kwargs: Any) -> Case:
    return Case(where, value, layer, **kwargs)


def good(where: str, value: Any, **kwargs: Any) -> Case:
    return Case(where, value, None, **kwargs)


AWS_SOURCE = {"spec.source": "aws", "spec.vault": DELETE}

BAD = [
    # the spec itself
    bad("spec", "abc"),
    bad("spec", 42),
    bad("spec", ["environment", "dev"]),
    # environment
    bad("spec.environment", DELETE),
    bad("spec.environment", ""),
    bad("spec.environment", "Prod"),
    bad("spec.environment", "prod_1"),
    bad("spec.environment", "-dev"),
    bad("spec.environment", "dev\n"),
    bad("spec.environment", "d" * 64),
    bad("spec.environment", 7),
    bad("spec.environment", "qa", OPERATOR),
    bad("spec.environment", "prod", OPERATOR),  # from solver-dev: prod is for solver-prod only
    # vault
    bad("spec.vault", DELETE),
    bad("spec.vault", "https://vault"),
    bad("spec.vault.auth", DELETE),
    # vault.address: where every consumer pod sends its token
    bad("spec.vault.address", "file:///etc/passwd"),
    bad("spec.vault.address", "ftp://vault.example.internal"),
    bad("spec.vault.address", "https://vault.example.internal:8200@evil.example"),
    bad("spec.vault.address", "https://user@vault.example.internal:8200"),
    bad("spec.vault.address", "https://evil.example/collect?x=1"),
    bad("spec.vault.address", "https://"),
    bad("spec.vault.address", ALLOWED_ADDRESS + "\n"),
    bad("spec.vault.address", ALLOWED_ADDRESS + " "),
    bad("spec.vault.address", "https://" + "a" * 2050),
    bad("spec.vault.address", 8200),
    bad("spec.vault.address", "http://vault.example.internal:8200", POLICY),
    bad("spec.vault.address", "https://evil.example:8200", POLICY),
    bad("spec.vault.address", "https://vault.example.internal:8201", POLICY),
    bad("spec.vault.address", "https://127.0.0.1:8200", POLICY),
    # vault.namespace
    bad("spec.vault.namespace", "../root"),
    bad("spec.vault.namespace", "team//a"),
    bad("spec.vault.namespace", "%2e%2e"),
    bad("spec.vault.namespace", 5),
    # vault.auth.method
    bad("spec.vault.auth.method", "approle"),
    bad("spec.vault.auth.method", "token"),
    bad("spec.vault.auth.method", "Kubernetes"),
    bad("spec.vault.auth.method", 1),
    # vault.auth.mount
    bad("spec.vault.auth.mount", ".."),
    bad("spec.vault.auth.mount", "kubernetes/../jwt"),
    bad("spec.vault.auth.mount", "/kubernetes"),
    bad("spec.vault.auth.mount", "kubernetes/"),
    bad("spec.vault.auth.mount", "a//b"),
    bad("spec.vault.auth.mount", "%2e%2e/approle"),
    bad("spec.vault.auth.mount", "k8s%2f..%2fapprole"),
    bad("spec.vault.auth.mount", "kube rnetes"),
    # vault.auth.role
    bad("spec.vault.auth.role", DELETE),
    bad("spec.vault.auth.role", ""),
    bad("spec.vault.auth.role", "worker\n"),
    bad("spec.vault.auth.role", "r" * 257),
    bad("spec.vault.auth.role", 5),
    # vault.auth.audience: what the token is good for
    bad("spec.vault.auth.audience", ""),
    bad("spec.vault.auth.audience", "va ult"),
    bad("spec.vault.auth.audience", 5),
    bad("spec.vault.auth.audience", "https://kubernetes.default.svc"),
    bad("spec.vault.auth.audience", "https://kubernetes.default.svc.cluster.local"),
    bad("spec.vault.auth.audience", "kubernetes"),
    bad("spec.vault.auth.audience", "someone-else", POLICY),
    # kv
    bad("spec.kv", "secret/captchaai/dev"),
    bad("spec.kv.mount", ""),
    bad("spec.kv.mount", ".."),
    bad("spec.kv.mount", "kv/../secret"),
    bad("spec.kv.mount", "/secret"),
    bad("spec.kv.mount", "secret/"),
    bad("spec.kv.mount", "%73ecret"),
    bad("spec.kv.mount", "other", OPERATOR),
    bad("spec.kv.path", "%2e%2e/prod"),
    bad("spec.kv.path", "captchaai/..%2fprod"),
    bad("spec.kv.path", "captchaai/%2E%2E/prod"),
    bad("spec.kv.path", "captchaai/dev/../prod"),
    bad("spec.kv.path", "captchaai/{environment}/../../prod"),
    bad("spec.kv.path", "/captchaai/dev"),
    bad("spec.kv.path", "captchaai//dev"),
    bad("spec.kv.path", "captchaai/./dev"),
    bad("spec.kv.path", "captchaai/dev/"),
    bad("spec.kv.path", ""),
    bad("spec.kv.path", "captchaai/dev\n"),
    bad("spec.kv.path", "captchaai/prod", OPERATOR),
    bad("spec.kv.path", "other/dev", OPERATOR),
    bad("spec.kv.path", "captchaai/{environment}x", OPERATOR),
    bad("spec.kv.field", ""),
    bad("spec.kv.field", "a/b"),
    bad("spec.kv.field", 5),
    bad("spec.kv.version", 0),
    bad("spec.kv.version", -1),
    bad("spec.kv.version", True),
    bad("spec.kv.version", "3"),
    bad("spec.kv.version", 2**40),
    bad("spec.kv.version", 1.5),
    # key
    bad("spec.key.maxLength", 0),
    bad("spec.key.maxLength", 65537),
    bad("spec.key.maxLength", "32"),
    bad("spec.key.format", "hex"),
    bad("spec.key.format", ""),
    # refreshIntervalSeconds
    bad("spec.refreshIntervalSeconds", 10**12),
    bad("spec.refreshIntervalSeconds", 9),
    bad("spec.refreshIntervalSeconds", 0),
    bad("spec.refreshIntervalSeconds", -5),
    bad("spec.refreshIntervalSeconds", "60"),
    bad("spec.refreshIntervalSeconds", True),
    bad("spec.refreshIntervalSeconds", 1.5),
    # file
    bad("spec.file", "api_key"),
    bad("spec.file.name", "../x"),
    bad("spec.file.name", "a/b"),
    bad("spec.file.name", ".hidden"),
    bad("spec.file.name", "api_key.meta.json"),
    bad("spec.file.name", "-x"),
    bad("spec.file.name", ""),
    bad("spec.file.name", "k" * 129),
    bad("spec.file.name", "key\n"),
    bad("spec.file.mode", 0o777),
    bad("spec.file.mode", 0o400),  # the application reads through the group: locked out
    bad("spec.file.mode", 0o600),
    bad("spec.file.mode", 0o441),
    bad("spec.file.mode", 0o666),
    bad("spec.file.mode", 0o444),
    bad("spec.file.mode", 0o644),
    bad("spec.file.mode", 0o604),
    bad("spec.file.mode", 0o660),
    bad("spec.file.mode", 0o700),
    bad("spec.file.mode", 0o540),
    bad("spec.file.mode", 0o1440),
    bad("spec.file.mode", 0o200),
    bad("spec.file.mode", 0),
    bad("spec.file.mode", -1),
    bad("spec.file.mode", "0440"),
    bad("spec.file.mode", True),
    # source and aws: exactly one key source
    bad("spec.source", "gcp"),
    bad("spec.source", 5),
    bad("spec.source", "aws"),  # without spec.aws
    bad("spec.aws", {"secretId": "captchaai/dev", "region": "eu-west-1", "roleArn": ROLE_ARN}),
    bad("spec.vault", DELETE, also={"spec.source": "vault"}),
    bad("spec.aws", "captchaai/dev", also={"spec.source": "aws", "spec.vault": DELETE}),
    bad("spec.aws.region", "Europe", also={**{"spec.source": "aws", "spec.vault": DELETE}}),
    bad("spec.aws.region", "eu-west-1\n", also={"spec.source": "aws", "spec.vault": DELETE}),
    bad(
        "spec.aws.roleArn",
        "arn:aws:iam::123:user/x",
        also={"spec.source": "aws", "spec.vault": DELETE},
    ),
    bad(
        "spec.aws.secretId",
        "captchaai/dev with spaces",
        also={"spec.source": "aws", "spec.vault": DELETE},
    ),
    bad("spec.aws.secretId", "", also={"spec.source": "aws", "spec.vault": DELETE}),
    bad("spec.aws.secretId", DELETE, also={"spec.source": "aws", "spec.vault": DELETE}),
    bad("spec.aws.versionId", "short", also={"spec.source": "aws", "spec.vault": DELETE}),
    bad("spec.aws.versionStage", "AWS CURRENT", also={"spec.source": "aws", "spec.vault": DELETE}),
    bad(
        "spec.aws.versionId",
        "a" * 32,
        also={"spec.source": "aws", "spec.vault": DELETE, "spec.aws.versionStage": "AWSCURRENT"},
    ),
    bad("spec.aws.field", "", also={"spec.source": "aws", "spec.vault": DELETE}),
    bad("spec.aws.audience", "https://kubernetes.default.svc", also=AWS_SOURCE),
    bad(
        "spec.aws.secretId",
        "captchaai/prod",
        OPERATOR,
        also={"spec.source": "aws", "spec.vault": DELETE},
    ),
    bad(
        "spec.aws.roleArn",
        "arn:aws:iam::999999999999:role/x",
        OPERATOR,
        also={"spec.source": "aws", "spec.vault": DELETE},
    ),
    # rotation
    bad("spec.rotation", "now"),
    bad("spec.rotation.requestedAt", "r" * 257),
    bad("spec.rotation.requestedAt", "r" * (1024 * 1024)),  # a 1 MiB review: an answer, not a 413
    bad("spec.rotation.requestedAt", 5),
]

AWS = {"spec.source": "aws", "spec.vault": DELETE}

GOOD = [
    good("", None),
    good("spec.aws.region", "eu-west-1", also=AWS),
    good("spec.aws.versionId", "a" * 32, also=AWS),
    good("spec.aws.secretId", "captchaai/{environment}/solver", also=AWS),
    good("spec.vault.address", ALLOWED_ADDRESS),
    good("spec.vault.address", ALLOWED_ADDRESS + "/"),
    good("spec.vault.address", "https://VAULT.example.internal:8200"),
    good("spec.vault.address", ""),
    good("spec.vault.namespace", "team-a/solvers"),
    good("spec.vault.auth.method", "jwt", also={"spec.vault.auth.mount": "jwt-k8s"}),
    good("spec.vault.auth.mount", "kubernetes-prod/v2"),
    good("spec.vault.auth.audience", "vault"),
    good("spec.vault.auth.audience", "openbao"),
    good("spec.environment", "prod", namespace="solver-prod"),
    good("spec.environment", "staging", namespace="anything"),
    good("spec.kv.path", "captchaai/{environment}/solver"),
    good("spec.kv.path", "captchaai/dev/..backup"),
    good("spec.kv.field", "api_key.v2"),
    good("spec.kv.version", 1),
    good("spec.kv.version", 2147483647),
    good("spec.key.format", "captchaai", also={"spec.key.maxLength": 32}),
    good("spec.key.maxLength", 65536),
    good("spec.refreshIntervalSeconds", 10),
    good("spec.refreshIntervalSeconds", 86400),
    good("spec.file.name", "captcha.key"),
    good("spec.file.name", "k" * 128),
    good("spec.file.mode", 0o440),
    good("spec.file.mode", 0o640),
    good("spec.rotation.requestedAt", "2026-12-01T21:00:00Z"),
    good("spec.vault.auth.role", "captcha-worker.dev@team"),
    good("spec.kv.mount", "secret"),
]


def binding(case: Case) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "captchakeys.io/v1alpha1",
        "kind": "CaptchaKeyBinding",
        "metadata": {"name": f"b-{uuid.uuid4().hex[:8]}", "namespace": case.namespace},
        "spec": {"environment": "dev", "vault": {"auth": {"role": "captcha-worker-dev"}}},
    }
    if case.also.get("spec.source") == "aws":  # a complete AWS source, then the case's changes
        body["spec"]["aws"] = {
            "secretId": "captchaai/{environment}",
            "region": "eu-west-1",
            "roleArn": ROLE_ARN,
        }
    for where, value in [*case.also.items(), (case.field, case.value)]:
        if where:
            put(body, where, value)
    return body


def put(body: dict[str, Any], where: str, value: Any) -> None:
    *parents, last = where.split(".")
    node = body
    for name in parents:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value


# --- the schema layer: the CRD as installed, with the API server's regex semantics ------


def _go_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """Go's RE2: ``$`` is the end of the text (Python's also matches before a final newline)."""
    if isinstance(instance, str):
        go = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(go, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


KubernetesSchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"pattern": _go_pattern}
)


@pytest.fixture(scope="module")
def schema() -> Any:
    crd = yaml.safe_load(CRD_FILE.read_text())
    openapi = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "x-kubernetes-validations" not in CRD_FILE.read_text()  # nothing left unevaluated
    KubernetesSchemaValidator.check_schema(openapi)
    return KubernetesSchemaValidator(openapi)


def schema_errors(schema: Any, body: dict[str, Any]) -> list[str]:
    """The dotted paths the schema blames (``spec.x`` for a missing required ``x``)."""
    blamed = []
    for error in schema.iter_errors(body):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = re.search(r"'([^']+)' is a required property", error.message)
            path = (
                f"{path}.{missing.group(1)}"
                if missing and path
                else (missing.group(1) if missing else path)
            )
        blamed.append(path)
    return blamed


# --- the webhook layer: the real operator over HTTPS ------------------------------------


@pytest.fixture
def webhook(kube: RealisticKubernetes, tmp_path: Path) -> Iterator[RunningOperator]:
    config = OperatorConfig(
        vault=VaultConfig(
            address="https://vault.vault.svc:8200",
            allowed_addresses=(ALLOWED_ADDRESS,),
            allowed_audiences=("vault", "openbao"),
        ),
        environments=("dev", "staging", "prod"),
        environment_namespaces={"prod": ("solver-prod",), "dev": ("solver-dev", "*-dev")},
        aws=AwsConfig(accounts=("123456789012",)),
        peering_name=None,
        webhook_port=free_port(),
        tls=TLSConfig(secret_name=SERVING_SECRET),
    )
    with operator_on_loopback(kube, config, tmp_path) as running:
        yield running


def admission(op: RunningOperator, body: dict[str, Any]) -> dict[str, Any]:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "captchakeys.io", "version": "v1alpha1", "kind": "CaptchaKeyBinding"},
            "resource": {
                "group": "captchakeys.io",
                "version": "v1alpha1",
                "resource": "captchakeybindings",
            },
            "operation": "CREATE",
            "namespace": body["metadata"]["namespace"],
            "name": body["metadata"]["name"],
            "userInfo": {"username": "jane@example.com"},
            "object": body,
        },
    }
    response = requests.post(
        f"{op.url}/validate-captchakeybindings", json=review, verify=str(op.ca_file), timeout=30
    )
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:200]}"
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == review["request"]["uid"]
    return answer


def agent_verdict(op: RunningOperator, body: dict[str, Any]) -> str | None:
    """What the key agent says: ``None`` when it would act on the binding."""
    try:
        BindingSpec.from_body(body, op.config.vault.policy)
    except InvalidBindingError as exc:
        return str(exc)
    return None


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60]


def test_schema_webhook_and_agent_agree_on_every_binding(
    schema: Any, webhook: RunningOperator
) -> None:
    assert len(BAD) >= 60
    assert len(GOOD) >= 20
    problems: list[str] = []
    tally: Counter[tuple[str, str]] = Counter()
    for case in [*BAD, *GOOD]:
        body = binding(case)
        label = f"{case.field or 'minimal'}={shown(case.value)} ({case.layer or 'good'})"
        blamed = schema_errors(schema, body)
        answer = admission(webhook, body)
        message = (answer.get("status") or {}).get("message", "")
        agent = agent_verdict(webhook, body)
        expect_schema = case.layer == SCHEMA
        expect_webhook = case.layer is not None
        expect_agent = case.layer in (SCHEMA, POLICY)
        if bool(blamed) != expect_schema:
            problems.append(f"{label}: schema {'refused ' + str(blamed) if blamed else 'accepted'}")
        if answer["allowed"] == expect_webhook:
            problems.append(f"{label}: webhook {'allowed' if answer['allowed'] else message}")
        if (agent is not None) != expect_agent:
            problems.append(f"{label}: agent {agent or 'accepted'}")
        if (
            expect_schema
            and blamed
            and not any(b.startswith(case.field) or case.field.startswith(b) for b in blamed)
        ):
            problems.append(f"{label}: the schema blamed {blamed}, not {case.field}")
        for text, who in ((message, "webhook"), (agent or "", "agent")):
            if text and not actionable(text, case):
                problems.append(f"{label}: {who}'s message is not actionable: {text[:300]}")
        if case.layer is not None:
            tally[(case.field, case.layer)] += 1
    report(tally)
    assert not problems, "\n".join(problems)


def actionable(message: str, case: Case) -> bool:
    """Names the field (or the object holding it, for a rule over several of its fields),
    shows the value, and says what is allowed."""
    if "Traceback" in message or "object has no attribute" in message:
        return False
    parents = [case.field.rsplit(".", n)[0] for n in range(case.field.count("."))]
    names_field = any(p in message for p in [case.field, *parents])
    names_field = names_field or (case.field == "spec" and "spec:" in message)
    value_shown = (
        isinstance(case.value, dict)  # a rule over several fields: they are named instead
        or case.value is DELETE
        or "not both" in message  # a rule over two fields names both
        or shown(case.value)[:40] in message.replace("\\n", "\n")
        or repr(case.value)[:40] in message
    )
    says_what = any(
        w in message for w in ("allowed", "use ", "one of", "required", "only", "set ", "keep ")
    )
    return names_field and value_shown and says_what


def report(tally: Counter[tuple[str, str]]) -> None:
    print("\nbad inputs per field and the layers that refuse them:")
    for (where, layer), count in sorted(tally.items()):
        layers = {SCHEMA: "schema+webhook+agent", POLICY: "webhook+agent", OPERATOR: "webhook"}
        print(f"  {where:34} {count:3}  {layers[layer]}")
    print(f"  total {sum(tally.values())}")


def test_a_non_object_spec_gets_an_answer_from_the_webhook(webhook: RunningOperator) -> None:
    body = binding(Case("spec", "abc"))
    answer = admission(webhook, body)
    assert not answer["allowed"]
    assert answer["status"]["message"].endswith(
        "spec: 'abc' is not allowed: must be an object (a mapping of fields)"
    )


def test_a_one_mib_binding_gets_a_verdict_not_a_bare_413(webhook: RunningOperator) -> None:
    body = binding(Case("spec.rotation.requestedAt", "r" * (1024 * 1024)))
    answer = admission(webhook, body)
    assert not answer["allowed"]
    message = answer["status"]["message"]
    assert "spec.rotation.requestedAt" in message
    assert "(1048576 characters)" in message
    assert "at most 256 characters" in message
    assert len(message) < 1000  # the value is cut, not echoed


def test_every_refusal_lists_all_the_fields_at_fault(webhook: RunningOperator) -> None:
    body = binding(Case("spec.file.mode", 0o777, also={"spec.kv.path": "%2e%2e/prod"}))
    message = admission(webhook, body)["status"]["message"]
    assert "spec.kv.path: '%2e%2e/prod' is not allowed" in message
    assert "spec.file.mode: 511 (octal 0o777) is not allowed: one of 288 (0440" in message
