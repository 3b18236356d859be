"""The README's install commands work together, taken literally, against real parts.

The README's ``## Install`` block is parsed and run: ``scripts/vault-setup.sh`` with the
README's arguments against a real OpenBao (only the cluster's address and CA replaced by
the rig's, plus the reviewer token a Vault outside the cluster needs), ``helm install``
rendered by the real helm with the README's flags, and the README's example binding
applied to the rig's API. Then, through OpenBao's Kubernetes auth and the rig's
TokenReview:

- the operator, run with the configuration the chart renders and the identity the chart
  gives it (its namespace, service account and token audience), logs in and publishes
  the binding's current version; that identity is refused the key itself;
- a pod of ``docs/examples/solver-deployment.yaml`` goes through the operator's mutating
  webhook; its key agent, run as injected (binding, Vault address, token audience) with
  the pod's own service account, logs in with the example binding's role and writes the
  dev key; the same identity is refused prod's key;
- the chart's sidecar RoleBinding from the README's flags names that service account;
- with OpenBao's file audit device on, every read of a key is attributed to the
  consuming pod's own service account and namespace (a dev and a prod consumer), and
  the operator's identity only ever reads metadata;
- ``scripts/e2e-kind.sh`` (the real-cluster test's one command) installs with the
  README's setup arguments and helm flags, only the cluster's CA and Vault differing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import itertools
import json
import shlex
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import jsonpatch
import kopf
import pytest
import requests
import yaml

from agent.operator.config import OperatorConfig
from agent.runtime.backoff import Backoff
from agent.sidecar.bindingagent import AgentDefaults, BindingAgent
from agent.sidecar.watch import run_binding_agent
from tests.chart.conftest import ROOT, Doc, find, one, run_helm
from tests.chart.test_vault_setup import SCRIPT, run_script
from tests.rig.helpers import free_port
from tests.rig.kube import API_AUDIENCE, RealisticKubernetes
from tests.rig.openbao import OpenBaoServer
from tests.rig.operator import OPERATOR_NS, RunningOperator, operator_on_loopback
from tests.rig.scenario import BINDINGS_PATH, eventually, kopf_in_thread

README = ROOT / "README.md"
EXAMPLE_BINDING = ROOT / "manifests" / "examples" / "binding-dev.yaml"
EXAMPLE_WORKLOAD = ROOT / "docs" / "examples" / "solver-deployment.yaml"
KEYS = {"dev": "dev-key-0123456789abcdef01234567", "prod": "prod-key-0123456789abcdef0123456"}


def install_commands() -> list[list[str]]:
    """The README's install block as argument lists, continuation lines joined."""
    section = README.read_text().split("\n## Install\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def command(program: str) -> list[str]:
    (found,) = [c for c in install_commands() if c[0] == program]
    return found


def with_value(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value after ``flag`` replaced: the README's placeholder for the
    cluster's own address or CA becomes the rig's."""
    assert flag in args, f"the README's command has no {flag}"
    index = args.index(flag) + 1
    return [*args[:index], value, *args[index + 1 :]]


@dataclasses.dataclass
class Installed:
    """What the README's commands produced: a configured OpenBao and the rendered chart."""

    kube: RealisticKubernetes
    bao: OpenBaoServer
    chart: list[Doc]
    tmp: Path
    reviewer_token: str  # what OpenBao presents to the API when it reviews a login.

    @property
    def operator_config(self) -> OperatorConfig:
        config_map = one(self.chart, "ConfigMap")
        return OperatorConfig.from_mapping(yaml.safe_load(config_map["data"]["config.yaml"]))

    @property
    def operator_identity(self) -> tuple[str, str, str]:
        """(namespace, service account, Vault token audience) the chart gives the operator."""
        deployment = one(self.chart, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        token_dir = str(self.operator_config.vault.token_file.parent)
        (mounted,) = [
            mount["name"]
            for container in pod["containers"]
            for mount in container.get("volumeMounts", [])
            if mount["mountPath"] == token_dir
        ]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mounted]
        (audience,) = [
            source["serviceAccountToken"].get("audience", API_AUDIENCE)
            for source in volume["projected"]["sources"]
            if "serviceAccountToken" in source
        ]
        return deployment["metadata"]["namespace"], pod["serviceAccountName"], audience

    def token_file(self, name: str, namespace: str, account: str, audience: str) -> Path:
        path = self.tmp / f"{name}.token"
        path.write_text(self.kube.issue_token(namespace, account, audience=audience))
        return path


@pytest.fixture
def installed(kube: RealisticKubernetes, helm: Path, tmp_path: Path) -> Iterator[Installed]:
    ca = tmp_path / "cluster-ca.pem"
    ca.write_text(kube.ca_pem)
    reviewer = tmp_path / "reviewer.jwt"
    reviewer.write_text(
        kube.issue_token("kube-system", "vault-token-reviewer", audience=API_AUDIENCE)
    )
    setup = command("scripts/vault-setup.sh")
    setup = with_value(setup, "--kubernetes-host", kube.api_url)
    setup = with_value(setup, "--kubernetes-ca-file", str(ca))
    # Vault here runs outside the "cluster": it reviews tokens with a reviewer JWT.
    setup += ["--token-reviewer-jwt-file", str(reviewer)]

    helm_install = command("helm")
    assert helm_install[1] == "install"
    rendered = run_helm(helm, "template", *helm_install[2:])
    assert rendered.returncode == 0, rendered.stderr
    chart = [d for d in yaml.safe_load_all(rendered.stdout) if d]

    with OpenBaoServer(audit_log=tmp_path / "audit.log") as bao:
        result = run_script(bao, *setup[1:])
        assert result.returncode == 0, result.stderr
        assert SCRIPT.name in " ".join(setup)
        for env, key in KEYS.items():
            bao.put_key(f"captchaai/{env}", key)
        yield Installed(kube, bao, chart, tmp_path, reviewer.read_text())


def example_binding(env: str = "dev") -> dict[str, Any]:
    """The README's ``kubectl apply -f manifests/examples/binding-dev.yaml``, or its prod twin."""
    assert command("kubectl")[-1] == str(EXAMPLE_BINDING.relative_to(ROOT))
    binding: dict[str, Any] = yaml.safe_load(EXAMPLE_BINDING.read_text())
    if env != "dev":
        binding = json.loads(json.dumps(binding).replace("dev", env))
    return binding


def example_pod_identity() -> tuple[str, str]:
    """(namespace, service account) of the pods of docs/examples/solver-deployment.yaml."""
    docs = list(yaml.safe_load_all(EXAMPLE_WORKLOAD.read_text()))
    deployment = one([d for d in docs if d], "Deployment")
    return deployment["metadata"]["namespace"], deployment["spec"]["template"]["spec"][
        "serviceAccountName"
    ]


async def apply(kube: RealisticKubernetes, binding: dict[str, Any]) -> None:
    namespace = binding["metadata"]["namespace"]
    await kube.call("POST", BINDINGS_PATH.format(ns=namespace), binding)


async def status_of(kube: RealisticKubernetes, binding: dict[str, Any]) -> dict[str, Any]:
    meta = binding["metadata"]
    body = await kube.call("GET", f"{BINDINGS_PATH.format(ns=meta['namespace'])}/{meta['name']}")
    status: dict[str, Any] = body.get("status") or {}
    return status


async def published(
    kube: RealisticKubernetes, binding: dict[str, Any], version: int = 1
) -> dict[str, Any]:
    """Wait until the operator has published ``version`` in the binding's status."""
    async with asyncio.timeout(20):
        while (status := await status_of(kube, binding)).get("currentVersion") != version:  # noqa: ASYNC110 - the operator's thread writes it.
            await asyncio.sleep(0.05)
    return status


@contextlib.contextmanager
def chart_operator(installed: Installed) -> Iterator[RunningOperator]:
    """The operator as the chart configures it, with the chart's identity for Vault."""
    config = installed.operator_config
    namespace, account, audience = installed.operator_identity
    assert namespace == OPERATOR_NS
    token = installed.token_file("operator", namespace, account, audience)
    config = dataclasses.replace(
        config,
        vault=dataclasses.replace(config.vault, address=installed.bao.addr, token_file=token),
        peering_name=None,  # one replica here; peering is the chart's business.
        webhook_port=free_port(),
    )
    with operator_on_loopback(installed.kube, config, installed.tmp) as running:
        yield running


def example_pod(env: str = "dev") -> dict[str, Any]:
    """A pod of docs/examples/solver-deployment.yaml as the API server sends it to the
    webhook (named, in its namespace; ``env`` moves it to that environment's namespace)."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE_WORKLOAD.read_text()) if d]
    deployment = one(docs, "Deployment")
    template = copy.deepcopy(deployment["spec"]["template"])
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            "name": f"captcha-solver-{uuid.uuid4().hex[:5]}",
            "namespace": deployment["metadata"]["namespace"],
        },
        "spec": template["spec"],
    }
    return json.loads(json.dumps(pod).replace("-dev", f"-{env}")) if env != "dev" else pod


async def inject(operator: RunningOperator, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod after the operator's mutating webhook, over HTTPS as the API server calls it."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": pod["metadata"]["namespace"],
            "name": pod["metadata"]["name"],
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
        },
    }

    def post() -> dict[str, Any]:
        response = requests.post(
            f"{operator.url}/mutate-pods", json=review, verify=str(operator.ca_file), timeout=10
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()["response"]
        return answer

    answer = await asyncio.to_thread(post)
    assert answer["allowed"], answer
    patch = json.loads(base64.b64decode(answer["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
    return patched


@dataclasses.dataclass(frozen=True)
class InjectedAgent:
    """What the webhook told a pod's key agent: its binding, Vault and token audience."""

    namespace: str
    service_account: str
    binding: str
    vault_addr: str
    audience: str

    @classmethod
    def of(cls, pod: dict[str, Any]) -> InjectedAgent:
        (agent,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "captcha-key-agent"]
        env = {e["name"]: e.get("value") for e in agent["env"]}
        token_dir = str(Path(env["CAPTCHAKEY_TOKEN_FILE"]).parent)
        (mounted,) = [m["name"] for m in agent["volumeMounts"] if m["mountPath"] == token_dir]
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mounted]
        (audience,) = [
            source["serviceAccountToken"]["audience"]
            for source in volume["projected"]["sources"]
            if "serviceAccountToken" in source
        ]
        return cls(
            namespace=pod["metadata"]["namespace"],
            service_account=pod["spec"]["serviceAccountName"],
            binding=agent["args"][agent["args"].index("--binding") + 1],
            vault_addr=env["VAULT_ADDR"],
            audience=audience,
        )


@contextlib.asynccontextmanager
async def pod_agent(
    installed: Installed, pod: dict[str, Any], out: Path
) -> AsyncIterator[BindingAgent]:
    """The key agent of an injected pod, run as the webhook configured it, with the token
    the kubelet would project for that pod's service account and the injected audience."""
    injected = InjectedAgent.of(pod)
    namespace, account = injected.namespace, injected.service_account
    token = installed.token_file(f"pod-{namespace}", namespace, account, injected.audience)
    out.mkdir(parents=True, exist_ok=True)
    defaults = AgentDefaults(
        vault_addr=injected.vault_addr,
        out_dir=out,
        token_file=token,
        backoff=Backoff(base=0.05, cap=0.5),
        rotation_spread=0.0,
    )
    agent = BindingAgent(injected.binding, defaults)
    api_token = installed.kube.issue_token(namespace, account, audience=API_AUDIENCE)
    connection = kopf.ConnectionInfo(server=installed.kube.api_url, token=api_token)

    async def main(stop: asyncio.Event, ready: asyncio.Event) -> None:
        await run_binding_agent(
            agent, namespace, connection=connection, stop_flag=stop, ready_flag=ready
        )

    threaded = kopf_in_thread(main)
    await asyncio.to_thread(threaded.__enter__)
    try:
        yield agent
    finally:
        await asyncio.to_thread(threaded.__exit__, None, None, None)


def vault_login(installed: Installed, role: str, jwt_file: Path) -> hvac.Client:
    client = hvac.Client(url=installed.bao.addr)
    client.auth.kubernetes.login(role, jwt_file.read_text())
    return client


def read_key(client: hvac.Client, env: str) -> str:
    secret = client.secrets.kv.v2.read_secret_version(
        path=f"captchaai/{env}", mount_point="secret", raise_on_deleted_version=True
    )
    value: str = secret["data"]["data"]["api_key"]
    return value


def test_readme_install_commands_work_together(installed: Installed) -> None:
    binding = example_binding("dev")
    pod_namespace, pod_account = example_pod_identity()
    assert binding["metadata"]["namespace"] == pod_namespace
    # The chart lets the pod's service account read its binding (README's --set flags).
    rolebinding = one(
        [
            d
            for d in find(installed.chart, "RoleBinding")
            if d["metadata"]["namespace"] == pod_namespace
        ],
        "RoleBinding",
    )
    assert rolebinding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod_account, "namespace": pod_namespace}
    ]

    with chart_operator(installed) as operator:
        asyncio.run(apply(installed.kube, binding))

        async def consume() -> None:
            pod = await inject(operator, example_pod("dev"))
            assert InjectedAgent.of(pod).binding == binding["metadata"]["name"]
            async with pod_agent(installed, pod, installed.tmp / "keys"):
                await eventually(lambda: (installed.tmp / "keys" / "api_key").exists(), seconds=20)
            status = await published(installed.kube, binding)
            ready = {c["type"]: c["status"] for c in status["conditions"]}
            assert ready["Ready"] == "True", status["conditions"]

        asyncio.run(consume())
    assert (installed.tmp / "keys" / "api_key").read_text() == KEYS["dev"]

    # The same identities, logged in directly: the operator gets metadata, never a key;
    # the pod gets its own environment's key only.
    namespace, account, audience = installed.operator_identity
    operator = vault_login(
        installed,
        installed.operator_config.vault.auth_role,
        installed.token_file("operator-direct", namespace, account, audience),
    )
    for env in KEYS:
        meta = operator.secrets.kv.v2.read_secret_metadata(f"captchaai/{env}", mount_point="secret")
        assert meta["data"]["current_version"] == 1
        with pytest.raises(hvac.exceptions.Forbidden):
            read_key(operator, env)
    pod = vault_login(
        installed,
        binding["spec"]["vault"]["auth"]["role"],
        installed.token_file(
            "pod-direct", pod_namespace, pod_account, binding["spec"]["vault"]["auth"]["audience"]
        ),
    )
    assert read_key(pod, "dev") == KEYS["dev"]
    with pytest.raises(hvac.exceptions.Forbidden):
        read_key(pod, "prod")
    # Every one of those logins went through the API server's TokenReview, as configured.
    reviews = [r for r in installed.kube.api_requests() if r.path.endswith("/tokenreviews")]
    assert len(reviews) >= 4  # operator and agent, each through the product and directly.
    assert {r.token for r in reviews} == {installed.reviewer_token}


def audit_entries(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_audit_log_names_the_pod_for_every_key_read(installed: Installed) -> None:
    bindings = [example_binding("dev"), example_binding("prod")]
    with chart_operator(installed) as operator:
        for binding in bindings:
            asyncio.run(apply(installed.kube, binding))

        async def consume() -> None:
            async with contextlib.AsyncExitStack() as stack:
                for binding in bindings:
                    pod = await inject(operator, example_pod(binding["spec"]["environment"]))
                    out = installed.tmp / binding["metadata"]["namespace"]
                    await stack.enter_async_context(pod_agent(installed, pod, out))
                for binding in bindings:
                    key = installed.tmp / binding["metadata"]["namespace"] / "api_key"
                    await eventually(key.exists, seconds=20)
            for binding in bindings:
                await published(installed.kube, binding)

        asyncio.run(consume())

    entries = [e for e in audit_entries(installed.tmp / "audit.log") if e["type"] == "request"]
    _, pod_account = example_pod_identity()
    namespace, account, _ = installed.operator_identity
    key_reads = [
        e
        for e in entries
        if e["request"]["path"].startswith("secret/data/") and e["request"]["operation"] == "read"
    ]
    assert {e["request"]["path"] for e in key_reads} == {
        "secret/data/captchaai/dev",
        "secret/data/captchaai/prod",
    }
    for entry in key_reads:
        env = entry["request"]["path"].rsplit("/", 1)[1]
        metadata = entry["auth"]["metadata"]
        assert (metadata["service_account_namespace"], metadata["service_account_name"]) == (
            f"solver-{env}",
            pod_account,
        ), entry["auth"]
        assert metadata["role"] == f"captcha-worker-{env}"

    by_operator = [
        e
        for e in entries
        if (e.get("auth") or {}).get("metadata", {}).get("service_account_name") == account
        and e["auth"]["metadata"].get("service_account_namespace") == namespace
    ]
    operator_paths = {e["request"]["path"] for e in by_operator}
    assert operator_paths >= {"secret/metadata/captchaai/dev", "secret/metadata/captchaai/prod"}
    assert all(not p.startswith("secret/data/") for p in operator_paths), operator_paths
    kv_operations = {
        e["request"]["operation"] for e in by_operator if e["request"]["path"].startswith("secret/")
    }
    assert kv_operations == {"read"}


def script_command(script: Path, start: str) -> list[str]:
    """The command of ``script`` that begins with ``start``, continuation lines joined."""
    lines = script.read_text().replace("\\\n", " ").splitlines()
    (line,) = [line for line in lines if line.strip().startswith(start)]
    return shlex.split(line, comments=True)


def settings(args: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` and ``--flag VALUE`` pairs of a command line."""
    pairs: dict[str, str] = {}
    for flag, value in itertools.pairwise(args):
        if flag == "--set":
            key, _, setting = value.partition("=")
            pairs[key] = setting
        elif flag.startswith("-") and not value.startswith("-"):
            pairs[flag] = value
    return pairs


def test_the_e2e_script_runs_the_readme_install() -> None:
    """scripts/e2e-kind.sh (docs/e2e.md) installs as the README says, not its own way."""
    script = ROOT / "scripts" / "e2e-kind.sh"
    setup = settings(script_command(script, "scripts/vault-setup.sh"))
    readme_setup = settings(command("scripts/vault-setup.sh"))
    del readme_setup["--kubernetes-ca-file"]  # the cluster's own CA, fetched by the script.
    assert readme_setup.items() <= setup.items()
    install = script_command(script, "helm upgrade --install captcha-key-agent")
    readme_install = command("helm")
    assert install[3:5] == readme_install[2:4]  # release name and chart
    readme_settings = settings(readme_install)
    del readme_settings["vault.address"]  # the cluster's own Vault: OpenBao in the cluster.
    assert readme_settings.items() <= settings(install).items()
    assert "--create-namespace" in install
