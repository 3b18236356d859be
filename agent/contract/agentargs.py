"""The command line of ``captchakey agent``: every flag and the variable that also sets it.

The operator's webhook starts the injected agent as ``captchakey agent --binding NAME``
and configures the rest through the container's environment; the CLI declares its
options with these same names. Both sides read them from :class:`AgentOption`, and the
webhook renders values with :func:`env` (lists comma-separated, booleans ``true`` or
``false``), which is what the CLI parses back, so a rename or a new option cannot leave
the two sides speaking differently.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

__all__ = ["AGENT_COMMAND", "AgentOption", "EnvValue", "binding_args", "env", "env_from_field"]

AGENT_COMMAND = "agent"
_OWN_PREFIX = "CAPTCHAKEY_"

EnvValue = str | int | float | bool | PurePath | Sequence[str]


class AgentOption(enum.Enum):
    """One option of ``captchakey agent``: its flag, its variable, and any fallback variable."""

    # Where Vault is and whom to trust there; the OpenBao CLI's names count too.
    VAULT_ADDR = ("--vault-addr", "VAULT_ADDR", "BAO_ADDR")
    VAULT_CACERT = ("--vault-cacert", "VAULT_CACERT", "BAO_CACERT")
    VAULT_NAMESPACE = ("--vault-namespace", "VAULT_NAMESPACE", "BAO_NAMESPACE")
    # How a standalone agent logs in.
    AUTH_METHOD = ("--auth-method", "CAPTCHAKEY_AUTH_METHOD")
    AUTH_MOUNT = ("--auth-mount", "CAPTCHAKEY_AUTH_MOUNT")
    ROLE = ("--role", "CAPTCHAKEY_ROLE")
    TOKEN_FILE = ("--token-file", "CAPTCHAKEY_TOKEN_FILE")
    SECRET_ID_FILE = ("--secret-id-file", "VAULT_SECRET_ID_FILE")
    AWS_REGION = ("--aws-region", "CAPTCHAKEY_AWS_REGION", "AWS_REGION")
    AWS_HEADER_VALUE = ("--aws-header-value", "CAPTCHAKEY_AWS_HEADER_VALUE")
    AWS_STS_ENDPOINT = ("--aws-sts-endpoint", "CAPTCHAKEY_AWS_STS_ENDPOINT")
    # The secret: in Vault's KV v2, or in AWS Secrets Manager.
    KV_MOUNT = ("--kv-mount", "CAPTCHAKEY_KV_MOUNT")
    PATH = ("--path", "CAPTCHAKEY_PATH")
    FIELD = ("--field", "CAPTCHAKEY_FIELD")
    KV_VERSION = ("--kv-version", "CAPTCHAKEY_KV_VERSION")
    AWS_SECRET_ID = ("--aws-secret-id", "CAPTCHAKEY_AWS_SECRET_ID")
    AWS_FIELD = ("--aws-field", "CAPTCHAKEY_AWS_FIELD")
    AWS_VERSION_STAGE = ("--aws-version-stage", "CAPTCHAKEY_AWS_VERSION_STAGE")
    AWS_VERSION_ID = ("--aws-version-id", "CAPTCHAKEY_AWS_VERSION_ID")
    AWS_ROLE_ARN = ("--aws-role-arn", "CAPTCHAKEY_AWS_ROLE_ARN")
    AWS_TOKEN_FILE = ("--aws-token-file", "CAPTCHAKEY_AWS_TOKEN_FILE")
    AWS_ENDPOINT_URL = ("--aws-endpoint-url", "CAPTCHAKEY_AWS_ENDPOINT_URL")
    # The key file and the rules a key must pass.
    OUT_DIR = ("--out-dir", "CAPTCHAKEY_OUT_DIR")
    FILE_NAME = ("--file-name", "CAPTCHAKEY_FILE_NAME")
    MODE = ("--mode", "CAPTCHAKEY_FILE_MODE")
    KEY_MAX_LENGTH = ("--key-max-length", "CAPTCHAKEY_KEY_MAX_LENGTH")
    KEY_FORMAT = ("--key-format", "CAPTCHAKEY_KEY_FORMAT")
    # When to look again.
    REFRESH_INTERVAL = ("--refresh-interval", "CAPTCHAKEY_REFRESH_INTERVAL")
    BACKOFF_CAP = ("--backoff-cap", "CAPTCHAKEY_BACKOFF_CAP")
    ONCE = ("--once", "CAPTCHAKEY_ONCE")
    # Following a CaptchaKeyBinding, within the platform's Vault policy.
    BINDING = ("--binding", "CAPTCHAKEY_BINDING")
    NAMESPACE = ("--namespace", "POD_NAMESPACE")
    ROTATION_SPREAD = ("--rotation-spread", "CAPTCHAKEY_ROTATION_SPREAD")
    ALLOWED_VAULT_ADDRS = ("--allowed-vault-addrs", "CAPTCHAKEY_ALLOWED_VAULT_ADDRS")
    ALLOWED_AUDIENCES = ("--allowed-audiences", "CAPTCHAKEY_ALLOWED_AUDIENCES")
    ALLOW_INSECURE_HTTP = ("--allow-insecure-http", "CAPTCHAKEY_ALLOW_INSECURE_HTTP")
    # The process itself.
    HEALTH_ADDR = ("--health-addr", "CAPTCHAKEY_HEALTH_ADDR")
    LOG_LEVEL = ("--log-level", "CAPTCHAKEY_LOG_LEVEL")
    LOG_FORMAT = ("--log-format", "CAPTCHAKEY_LOG_FORMAT")

    def __init__(self, flag: str, env: str, *fallbacks: str) -> None:
        self.flag = flag
        self.env = env
        self.envvars = (env, *fallbacks)

    @property
    def dest(self) -> str:
        """The Python name of the option's value (``--vault-addr``: ``vault_addr``)."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env_is_shared(self) -> bool:
        """Whether its variable belongs to other programs too (the vault CLI, the downward API).

        Such a variable may be set around the agent for reasons of its own, so its presence
        says nothing about what the agent was asked to do; a ``CAPTCHAKEY_`` one does.
        """
        return not self.env.startswith(_OWN_PREFIX)


def binding_args(binding: str) -> list[str]:
    """The injected container's ``args``; everything else reaches the agent through :func:`env`."""
    return [AGENT_COMMAND, AgentOption.BINDING.flag, binding]


def env(option: AgentOption, value: EnvValue) -> dict[str, str]:
    """A container ``env`` entry that sets ``option`` to ``value`` as the CLI parses it."""
    return {"name": option.env, "value": _encoded(value)}


def env_from_field(option: AgentOption, field_path: str) -> dict[str, Any]:
    """A container ``env`` entry that sets ``option`` from the pod's own fields (downward API)."""
    return {"name": option.env, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _encoded(value: EnvValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | PurePath):
        return str(value)
    return ",".join(value)
