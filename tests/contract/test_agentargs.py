"""The agent's command line, as the webhook renders it and the real CLI parses it back.

Covers:
- ``captchakey agent`` declares every option of the contract under the contract's flag
  and variables, and nothing outside it;
- the container the webhook plans for a Vault binding (with the platform's CA and
  policy) and for an AWS binding (with the operator's STS endpoint) parses, with the
  real parser and the real options, into the values the webhook meant: every variable
  it sets is read by the option the contract names for it, none is left over, and the
  args select the binding;
- values are rendered as the parser reads them: lists comma-separated, booleans
  ``true``/``false``, numbers and paths as their text.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
from click.core import ParameterSource

from agent.binding.policy import VaultPolicy
from agent.cli import main
from agent.contract import agentargs
from agent.contract.agentargs import AgentOption
from agent.contract.pod import AGENT_CONTAINER, AGENT_PYTHON_ENV, ANNOTATION_BINDING, INJECT_LABEL
from agent.operator.admission import parse_pod
from agent.operator.config import InjectionConfig
from agent.operator.injection import plan_injection

AGENT = main.commands[agentargs.AGENT_COMMAND]
POD = {
    "metadata": {
        "name": "solver-0",
        "namespace": "solver-dev",
        "labels": {INJECT_LABEL: "true"},
        "annotations": {ANNOTATION_BINDING: "captcha-dev"},
    },
    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
}
CONFIG = InjectionConfig(
    image="registry.example/captcha-key-agent:9.9.9",
    refresh_interval_seconds=900,
    mount_path="/var/run/keys",
    log_level="warning",
    log_format="text",
    vault_ca_config_map="vault-ca",
)
POLICY = VaultPolicy(
    addresses=("https://vault.vault.svc:8200", "https://vault.example:8200"),
    audiences=("vault", "vault-prod"),
    allow_http=True,
)


def binding(**spec: Any) -> dict[str, Any]:
    vault = {"auth": {"role": "solver"}}
    return {"metadata": {"name": "captcha-dev"}, "spec": {"vault": vault, **spec}}


AWS_BINDING = binding(
    source="aws",
    aws={
        "region": "eu-west-1",
        "roleArn": "arn:aws:iam::123456789012:role/solver",
        "secretId": "captchaai/dev",
    },
)


def injected(binding: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    request = parse_pod(POD, CONFIG)
    assert request is not None
    plan = plan_injection(
        request, binding, CONFIG, vault_addr="https://vault.vault.svc:8200", **kwargs
    )
    assert plan is not None
    agent: dict[str, Any] = next(c for c in plan["initContainers"] if c["name"] == AGENT_CONTAINER)
    return agent


def parse(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> click.Context:
    """Parse the container's args and env as its pod would start the agent."""
    for option in AgentOption:
        for name in option.envvars:
            monkeypatch.delenv(name, raising=False)
    for entry in container["env"]:
        if "valueFrom" in entry:  # the kubelet resolves the downward API.
            assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
            monkeypatch.setenv(entry["name"], POD["metadata"]["namespace"])
        else:
            monkeypatch.setenv(entry["name"], entry["value"])
    command, *args = container["args"]
    assert command == agentargs.AGENT_COMMAND
    return AGENT.make_context(command, args)


def read_from_env(container: dict[str, Any], ctx: click.Context) -> set[str]:
    """The variables the container sets, each checked to be read by its contract option.

    The interpreter's own (``AGENT_PYTHON_ENV``) are set as the contract says, and left out.
    """
    by_env = {option.env: option for option in AgentOption}
    python = {e["name"]: e["value"] for e in container["env"] if e["name"] in AGENT_PYTHON_ENV}
    assert python == AGENT_PYTHON_ENV
    names = {entry["name"] for entry in container["env"]} - set(python)
    for name in names:
        assert name in by_env, f"the webhook sets {name}, which no agent option reads"
        assert ctx.get_parameter_source(by_env[name].dest) is ParameterSource.ENVIRONMENT, name
    return names


def test_the_agent_declares_exactly_the_contracts_options() -> None:
    declared = {
        param.name: (param.opts[0], tuple(param.envvar or ()))
        for param in AGENT.params
        if isinstance(param, click.Option) and param.name != "help"
    }
    assert declared == {o.dest: (o.flag, o.envvars) for o in AgentOption}


def test_a_vault_bindings_agent_parses_into_what_the_webhook_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = injected(binding(), policy=POLICY)
    ctx = parse(container, monkeypatch)
    assert read_from_env(container, ctx) == {
        o.env
        for o in (
            AgentOption.NAMESPACE,
            AgentOption.VAULT_ADDR,
            AgentOption.VAULT_CACERT,
            AgentOption.OUT_DIR,
            AgentOption.TOKEN_FILE,
            AgentOption.HEALTH_ADDR,
            AgentOption.REFRESH_INTERVAL,
            AgentOption.LOG_LEVEL,
            AgentOption.LOG_FORMAT,
            AgentOption.ALLOWED_VAULT_ADDRS,
            AgentOption.ALLOWED_AUDIENCES,
            AgentOption.ALLOW_INSECURE_HTTP,
        )
    }
    params = ctx.params
    assert params["binding"] == "captcha-dev"
    assert params["namespace"] == "solver-dev"
    assert params["vault_addr"] == "https://vault.vault.svc:8200"
    assert params["vault_cacert"] == "/etc/captchakeys/vault-ca/ca.crt"
    assert params["out_dir"] == Path("/var/run/keys")
    assert params["token_file"] == Path("/var/run/secrets/captchakeys/vault/token")
    assert params["health_addr"] == ("0.0.0.0", 8099)
    assert params["refresh_interval"] == 900.0
    assert (params["log_level"], params["log_format"]) == ("warning", "text")
    policy = VaultPolicy.from_lists(
        params["allowed_vault_addrs"], params["allowed_audiences"], params["allow_insecure_http"]
    )
    assert policy == POLICY


def test_an_aws_bindings_agent_parses_into_what_the_webhook_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = injected(AWS_BINDING, aws_endpoint_url="https://vpce.example")
    ctx = parse(container, monkeypatch)
    names = read_from_env(container, ctx)
    assert AgentOption.VAULT_ADDR.env not in names
    assert AgentOption.TOKEN_FILE.env not in names
    assert ctx.params["aws_token_file"] == Path("/var/run/secrets/captchakeys/aws/token")
    assert ctx.params["aws_endpoint_url"] == "https://vpce.example"
    assert ctx.params["binding"] == "captcha-dev"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (("https://a:8200", "https://b:8200"), "https://a:8200,https://b:8200"),
        ((), ""),
        (3600, "3600"),
        (0.5, "0.5"),
        (PurePosixPath("/var/run/x/token"), "/var/run/x/token"),
        ("plain", "plain"),
    ],
)
def test_values_are_rendered_as_the_parser_reads_them(value: agentargs.EnvValue, text: str) -> None:
    assert agentargs.env(AgentOption.ROLE, value) == {"name": "CAPTCHAKEY_ROLE", "value": text}
