"""OperatorConfig.load: the operator's configuration file (format of docs/contract.md).

Aspects covered:
- a full file in the contract's format gives exactly the values written there;
- the YAML block in docs/contract.md itself loads (the page and the code agree);
- an empty file gives the defaults; a partial file keeps defaults for the rest;
- an unknown key is refused naming the key and its section (top level and nested);
- a wrong type, a bad enum value, a value below its minimum, and a section that is not
  a mapping are refused naming the key path;
- a missing file and invalid YAML give a clear ConfigError naming the file;
- the Vault policy: allowedAddresses must be scheme://host[:port] and https unless
  allowInsecureHttp; allowedAudiences non-empty and never the API server's audience;
  injection.tokenAudience one of them; defaults: only the operator's own address, only
  the ``vault`` audience, no http;
- environmentNamespaces: only known environments, lists of names or globs; a mapped
  environment may be bound only from matching namespaces, an unmapped one from any;
- InjectionConfig checks (and normalises) the agent's resources as it is made.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent.operator.config import ConfigError, InjectionConfig, OperatorConfig
from agent.operator.resources import ResourcesError

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"

FULL = """\
vault:
  address: https://vault.example.internal:8200
  caCertFile: /etc/captchakeys/vault-ca/ca.crt
  namespace: team-a
  auth:
    method: jwt
    mount: jwt-cluster
    role: operator-role
    tokenFile: /var/run/secrets/other/token
    audience: openbao
  allowedAddresses: [https://vault-eu.example.internal:8200]
  allowedAudiences: [vault, openbao]
  allowInsecureHttp: true
kv:
  mount: kv
  pathPrefix: /keys/captchaai/
environments: [dev, prod]
environmentNamespaces:
  prod: [solver-prod, "payments-*"]
statusPollSeconds: 45
vaultReadsPerSecond: 50
peering:
  name: my-peering
webhook:
  port: 9443
  timeoutSeconds: 4
  serviceName: ckb-webhook
  mutatingWebhookConfiguration: ckb-mutate
  validatingWebhookConfiguration: ckb-validate
  tls:
    mode: cert-manager
    secretName: ckb-tls
    certDir: /certs
injection:
  image: registry.example/captcha-key-agent:1.2.3
  imagePullPolicy: Always
  resources: {requests: {cpu: 20m, memory: 64Mi}, limits: {cpu: 250m, memory: 128Mi}}
  refreshIntervalSeconds: 600
  mountPath: /srv/captchaai
  tokenAudience: openbao
  tokenExpirationSeconds: 7200
  logLevel: debug
  logFormat: text
log:
  level: warning
  format: text
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        OperatorConfig.load(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_full_file_gives_the_values_written() -> None:
    config = OperatorConfig.from_mapping(yaml.safe_load(FULL))
    assert config.vault.address == "https://vault.example.internal:8200"
    assert config.vault.ca_cert_file == "/etc/captchakeys/vault-ca/ca.crt"
    assert config.vault.namespace == "team-a"
    assert config.vault.auth_method == "jwt"
    assert config.vault.auth_mount == "jwt-cluster"
    assert config.vault.auth_role == "operator-role"
    assert config.vault.token_file == Path("/var/run/secrets/other/token")
    assert config.vault.audience == "openbao"
    assert config.vault.allowed_addresses == ("https://vault-eu.example.internal:8200",)
    assert config.vault.allowed_audiences == ("vault", "openbao")
    assert config.vault.allow_insecure_http is True
    assert config.vault.policy.addresses == (
        "https://vault.example.internal:8200",  # the operator's own, always allowed
        "https://vault-eu.example.internal:8200",
    )
    assert config.environment_namespaces == {"prod": ("solver-prod", "payments-*")}
    assert config.kv_mount == "kv"
    assert config.kv_path_prefix == "keys/captchaai"
    assert config.environments == ("dev", "prod")
    assert config.status_poll_seconds == 45.0
    assert config.vault_reads_per_second == 50.0
    assert config.peering_name == "my-peering"
    assert config.webhook_port == 9443
    assert config.webhook_timeout_seconds == 4
    assert config.webhook_service == "ckb-webhook"
    assert config.mutating_configuration == "ckb-mutate"
    assert config.validating_configuration == "ckb-validate"
    assert config.tls.mode == "cert-manager"
    assert config.tls.secret_name == "ckb-tls"
    assert config.tls.cert_dir == Path("/certs")
    inj = config.injection
    assert inj.image == "registry.example/captcha-key-agent:1.2.3"
    assert inj.image_pull_policy == "Always"
    assert inj.resources == {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"cpu": "250m", "memory": "128Mi"},
    }
    assert inj.refresh_interval_seconds == 600
    assert inj.mount_path == "/srv/captchaai"
    assert inj.token_audience == "openbao"
    assert inj.token_expiration_seconds == 7200
    assert (inj.log_level, inj.log_format) == ("debug", "text")
    assert (config.log_level, config.log_format) == ("warning", "text")


def test_full_file_loads_from_disk(tmp_path: Path) -> None:
    assert OperatorConfig.load(write(tmp_path, FULL)) == OperatorConfig.from_mapping(
        yaml.safe_load(FULL)
    )


def test_the_example_in_the_contract_loads_and_matches_the_defaults(tmp_path: Path) -> None:
    match = re.search(
        r"## Operator configuration file.*?```yaml\n(.*?)```", CONTRACT.read_text(), re.S
    )
    assert match, "docs/contract.md lost its configuration example"
    config = OperatorConfig.load(write(tmp_path, match.group(1)))
    assert config == OperatorConfig()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = OperatorConfig.load(write(tmp_path, ""))
    assert config == OperatorConfig()
    assert config.webhook_port == 8443
    assert config.environments == ("dev", "staging", "prod")
    assert config.vault.ca_cert_file is None
    assert config.vault.namespace is None
    assert config.injection.mount_path == "/var/run/captchaai"


def test_partial_file_keeps_defaults(tmp_path: Path) -> None:
    config = OperatorConfig.load(write(tmp_path, "vault:\n  auth:\n    method: jwt\n"))
    assert config.vault.auth_method == "jwt"
    assert config.vault.auth_mount == "jwt"  # the mount defaults to the method
    assert config.vault.auth_role == "captcha-key-operator"
    assert config.tls.mode == "self-signed"


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        ("statusPolSeconds: 30\n", "statusPolSeconds", "the top level"),
        ("vault:\n  adress: https://x\n", "adress", "vault"),
        ("vault:\n  auth:\n    rolee: x\n", "rolee", "vault.auth"),
        ("webhook:\n  tls:\n    secret: x\n", "secret", "webhook.tls"),
        ("injection:\n  mountpath: /x\n", "mountpath", "injection"),
        ("log:\n  lvl: info\n", "lvl", "log"),
    ],
)
def test_unknown_key_is_refused_naming_it_and_its_section(
    tmp_path: Path, text: str, key: str, where: str
) -> None:
    message = refused(tmp_path, text)
    assert f"unknown key(s) in {where}: {key}" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("webhook:\n  port: '8443'\n", "webhook.port must be a int, not '8443'"),
        ("webhook:\n  port: true\n", "webhook.port must be a int, not True"),
        ("statusPollSeconds: 0.5\n", "statusPollSeconds must be a int"),
        ("environments: dev\n", "environments must be a list"),
        ("injection:\n  resources: 10m\n", "injection.resources must be a dict"),
        ("vault:\n  auth:\n    role: 7\n", "vault.auth.role must be a str, not 7"),
    ],
)
def test_wrong_type_is_refused_with_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "vault:\n  auth:\n    method: approle\n",
            "vault.auth.method must be one of kubernetes, jwt",
        ),
        ("webhook:\n  tls:\n    mode: manual\n", "webhook.tls.mode must be one of self-signed"),
        ("log:\n  level: trace\n", "log.level must be one of debug, info, warning, error"),
        ("log:\n  format: xml\n", "log.format must be one of json, text"),
        ("injection:\n  logFormat: yaml\n", "injection.logFormat must be one of json, text"),
        (
            "injection:\n  resources: {limits: {memory: 96Mi}}\n",
            "injection.resources.limits must set cpu",
        ),
        (
            "injection:\n  resources: {limits: {cpu: 1, memory: 16Mi}}\n",
            "injection.resources.limits.memory '16Mi' is below 64Mi",
        ),
    ],
)
def test_bad_enum_value_is_refused_with_the_key_path(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in refused(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("statusPollSeconds: 0\n", "statusPollSeconds must be at least 1, not 0"),
        ("webhook:\n  timeoutSeconds: 0\n", "webhook.timeoutSeconds must be at least 1, not 0"),
        ("webhook:\n  port: 0\n", "webhook.port must be at least 1"),
        ("injection:\n  refreshIntervalSeconds: 5\n", "injection.refreshIntervalSeconds"),
        ("injection:\n  tokenExpirationSeconds: 60\n", "injection.tokenExpirationSeconds"),
    ],
)
def test_below_minimum_is_refused_with_the_key_path(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = refused(tmp_path, text)
    assert expected in message
    assert "must be at least" in message


@pytest.mark.parametrize(
    ("text", "section"),
    [("vault: 5\n", "vault"), ("webhook:\n  tls: [a]\n", "webhook.tls"), ("- a\n", None)],
)
def test_section_that_is_not_a_mapping(tmp_path: Path, text: str, section: str | None) -> None:
    message = refused(tmp_path, text)
    if section is None:
        assert "the top level must be a mapping" in message
    else:
        assert f": {section} must be a mapping" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        OperatorConfig.load(path)
    assert str(info.value) == (f"cannot read the operator config {path}: No such file or directory")


def test_invalid_yaml(tmp_path: Path) -> None:
    message = refused(tmp_path, "vault:\n  address: [unclosed\n")
    assert "is not valid YAML" in message


# --- injection.vaultCaConfigMap (the agent's trust in a private Vault CA) -----------------


@pytest.mark.parametrize("text", ["", "injection: {}\n", 'injection:\n  vaultCaConfigMap: ""\n'])
def test_vault_ca_config_map_defaults_to_none(tmp_path: Path, text: str) -> None:
    assert OperatorConfig.load(write(tmp_path, text)).injection.vault_ca_config_map is None


@pytest.mark.parametrize("name", ["vault-ca", "vault-ca.example.io", "ca1"])
def test_vault_ca_config_map_is_read(tmp_path: Path, name: str) -> None:
    config = OperatorConfig.load(write(tmp_path, f"injection:\n  vaultCaConfigMap: {name}\n"))
    assert config.injection.vault_ca_config_map == name


@pytest.mark.parametrize("value", ["Vault-CA", "vault_ca", "-vault", "a/b", "x" * 254])
def test_vault_ca_config_map_must_be_an_object_name(tmp_path: Path, value: str) -> None:
    message = refused(tmp_path, f"injection:\n  vaultCaConfigMap: {value!r}\n")
    assert "injection.vaultCaConfigMap must be a Kubernetes object name" in message


def test_vault_ca_config_map_must_be_a_string(tmp_path: Path) -> None:
    message = refused(tmp_path, "injection:\n  vaultCaConfigMap: [vault-ca]\n")
    assert "injection.vaultCaConfigMap must be a str" in message


# --- peering --------------------------------------------------------------------------


def test_empty_peering_name_means_standalone(tmp_path: Path) -> None:
    assert OperatorConfig.load(write(tmp_path, 'peering:\n  name: ""\n')).peering_name is None
    assert OperatorConfig.load(write(tmp_path, "")).peering_name == "captcha-key-agent"


# --- the Vault policy and the namespace -> environment map ------------------------------


def test_policy_defaults_allow_only_the_operators_own_vault_and_audience() -> None:
    policy = OperatorConfig().vault.policy
    assert policy.addresses == ("https://vault.vault.svc:8200",)
    assert policy.audiences == ("vault",)
    assert policy.allow_http is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "vault:\n  allowedAddresses: [http://vault.example:8200]\n",
            "is plain http, which sends tokens in the clear: use https, or set "
            "vault.allowInsecureHttp: true",
        ),
        (
            "vault:\n  allowedAddresses: [vault.example:8200]\n",
            "vault.allowedAddresses: 'vault.example:8200' is not scheme://host[:port]",
        ),
        (
            "vault:\n  allowedAddresses: ['https://u@evil.example']\n",
            "is not scheme://host[:port]",
        ),
        (
            "vault:\n  allowedAudiences: [vault, 'https://kubernetes.default.svc']\n",
            "is the Kubernetes API server's own audience",
        ),
        ("vault:\n  allowedAudiences: [kubernetes]\n", "API server's own audience"),
        ("vault:\n  allowedAudiences: []\n", "must be a non-empty list of strings"),
        (
            "injection:\n  tokenAudience: openbao\n",
            "injection.tokenAudience 'openbao' must be one of vault.allowedAudiences (vault)",
        ),
        ("environmentNamespaces:\n  qa: [solver-qa]\n", "'qa' is not one of environments"),
        ("environmentNamespaces:\n  prod: solver-prod\n", "must be a list of namespace names"),
        ("environmentNamespaces: [prod]\n", "environmentNamespaces must be a dict"),
    ],
)
def test_bad_policy_values_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_http_addresses_when_explicitly_allowed(tmp_path: Path) -> None:
    text = "vault:\n  allowInsecureHttp: true\n  allowedAddresses: [http://openbao.dev:8200]\n"
    config = OperatorConfig.load(write(tmp_path, text))
    assert config.vault.policy.allow_http is True
    assert "http://openbao.dev:8200" in config.vault.policy.addresses


@pytest.mark.parametrize(
    ("namespace", "environment", "allowed"),
    [
        ("solver-prod", "prod", True),
        ("payments-eu", "prod", True),
        ("solver-dev", "prod", False),
        ("payments", "prod", False),
        ("anything", "dev", True),  # dev is not mapped: any namespace
    ],
)
def test_namespace_may_bind(
    tmp_path: Path, namespace: str, environment: str, allowed: bool
) -> None:
    text = 'environmentNamespaces:\n  prod: [solver-prod, "payments-*"]\n'
    config = OperatorConfig.load(write(tmp_path, text))
    assert config.namespace_may_bind(namespace, environment) is allowed


def test_injection_resources_are_checked_as_the_config_is_made() -> None:
    # Checked once here, so admission does not check them again for every pod.
    with pytest.raises(ResourcesError, match=r"injection\.resources\.limits must set cpu"):
        InjectionConfig(resources={"limits": {"memory": "96Mi"}})
    made = InjectionConfig(resources={"limits": {"cpu": 1, "memory": "96Mi"}})
    assert made.resources == {"requests": {}, "limits": {"cpu": "1", "memory": "96Mi"}}
