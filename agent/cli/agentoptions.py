"""The options of ``captchakey agent``, each declared once, under the contract's names.

Which of them a run uses depends on its mode (see :mod:`agent.cli.agent`); the help
texts say so ("with --binding", "with --aws-secret-id"), and the command refuses the
rest. Every option takes its flag and variables from :class:`AgentOption`, so what the
webhook renders and what this command parses cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import click

from agent import keyfile, keyrules
from agent.cli.shared import (
    LOG_LEVELS,
    contract_option,
    host_port,
    vault_addr_option,
    vault_cacert_option,
)
from agent.contract.agentargs import AgentOption
from agent.contract.auth import AUTH_METHODS

__all__ = ["agent_options"]


def _octal_mode(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """A file mode written in octal (``0440``), as ``chmod`` takes it."""
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal file mode such as 0440") from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"{value!r} is outside 0000-0777")
    return mode


def _seconds(option: AgentOption, default: float, *, minimum: float, help: str) -> click.Option:
    """A duration in seconds, at least ``minimum``."""
    return contract_option(option, type=click.FloatRange(min=minimum), default=default, help=help)


def _file(option: AgentOption, *, help: str) -> click.Option:
    """A file the agent reads (a token, a secret id), named by its path."""
    return contract_option(option, type=click.Path(dir_okay=False, path_type=Path), help=help)


def agent_options() -> list[click.Parameter]:
    """Every option of the agent, in the order ``--help`` lists them."""
    return [
        vault_addr_option(),
        vault_cacert_option(),
        contract_option(AgentOption.VAULT_NAMESPACE, help="Vault Enterprise / OpenBao namespace."),
        contract_option(
            AgentOption.AUTH_METHOD,
            type=click.Choice(AUTH_METHODS),
            default="kubernetes",
            help="How to log in: the pod's service account (kubernetes, jwt), AppRole (role id and "
            "secret id), a Vault token (token: read from VAULT_TOKEN, or from --token-file), or "
            "the machine's AWS identity (aws: a signed sts:GetCallerIdentity, for EC2 and Lambda; "
            "needs the aws extra).",
        ),
        contract_option(
            AgentOption.AWS_REGION,
            default="us-east-1",
            help="aws auth: the STS region the login request is signed for (Vault's sts_region); "
            "with --aws-secret-id: the secret's region.",
        ),
        contract_option(
            AgentOption.AWS_HEADER_VALUE,
            help="aws auth: the signed X-Vault-AWS-IAM-Server-ID header (Vault's "
            "iam_server_id_header_value), so the request cannot be replayed elsewhere.",
        ),
        contract_option(
            AgentOption.AWS_STS_ENDPOINT,
            help="aws auth: the STS URL to sign for [default: https://sts.REGION.amazonaws.com/].",
        ),
        contract_option(
            AgentOption.AWS_SECRET_ID,
            help="Without --binding: read the key from this AWS Secrets Manager secret (name or "
            "ARN) instead of Vault, with the machine's AWS identity (or --aws-role-arn). Needs the "
            "aws extra and --aws-region.",
        ),
        contract_option(
            AgentOption.AWS_FIELD,
            help="With --aws-secret-id: the JSON field holding the key [default: the whole "
            "string].",
        ),
        contract_option(
            AgentOption.AWS_VERSION_STAGE,
            default="AWSCURRENT",
            help="With --aws-secret-id: the staging label to follow.",
        ),
        contract_option(
            AgentOption.AWS_VERSION_ID,
            help="With --aws-secret-id: pin this version id instead of following the label.",
        ),
        contract_option(
            AgentOption.AWS_ROLE_ARN,
            help="With --aws-secret-id: assume this role with the token in --aws-token-file "
            "(AssumeRoleWithWebIdentity) [default: the SDK's default credentials].",
        ),
        _file(
            AgentOption.AWS_TOKEN_FILE,
            help="For spec.source aws bindings and --aws-role-arn: the projected token exchanged "
            "with STS AssumeRoleWithWebIdentity [default: /var/run/secrets/captchakeys/aws/token].",
        ),
        contract_option(
            AgentOption.AWS_ENDPOINT_URL,
            help="For spec.source aws bindings and --aws-secret-id: one endpoint for STS and "
            "Secrets Manager (a private endpoint) [default: AWS's regional endpoints, or "
            "AWS_ENDPOINT_URL_*].",
        ),
        contract_option(
            AgentOption.AUTH_MOUNT,
            help="Mount path of the auth method [default: the method's name].",
        ),
        contract_option(
            AgentOption.ROLE,
            help="Vault role (kubernetes, jwt), or the AppRole role id; approle without it reads "
            "the role id from [env: VAULT_ROLE_ID].",
        ),
        _file(
            AgentOption.TOKEN_FILE,
            help="Service-account token (kubernetes, jwt; read afresh at every login) or Vault "
            "token file (token). [default for kubernetes/jwt: "
            "/var/run/secrets/captchakeys/vault/token]",
        ),
        _file(
            AgentOption.SECRET_ID_FILE,
            help="File holding the AppRole secret id; without it, the secret id is read from [env: "
            "VAULT_SECRET_ID].",
        ),
        contract_option(AgentOption.KV_MOUNT, default="secret", help="KV v2 mount."),
        contract_option(
            AgentOption.PATH,
            help="Secret path inside the mount, e.g. captchaai/prod (required without --binding).",
        ),
        contract_option(
            AgentOption.FIELD, default="api_key", help="Field of the secret that holds the key."
        ),
        contract_option(
            AgentOption.KV_VERSION,
            type=click.IntRange(min=1),
            help="Pin this version instead of following the latest.",
        ),
        contract_option(
            AgentOption.OUT_DIR,
            default=str(keyfile.DEFAULT_DIR),
            type=click.Path(file_okay=False, path_type=Path),
            help="Directory (tmpfs) for the key file.",
        ),
        contract_option(
            AgentOption.FILE_NAME,
            default=keyfile.DEFAULT_FILE_NAME,
            help="Key file name inside --out-dir.",
        ),
        contract_option(
            AgentOption.MODE, callback=_octal_mode, default="0440", help="Key file mode, octal."
        ),
        _seconds(
            AgentOption.REFRESH_INTERVAL,
            3600.0,
            minimum=1,
            help="Seconds between version checks (jittered ±10%); with --binding, the default for "
            "a binding that sets no spec.refreshIntervalSeconds.",
        ),
        _seconds(
            AgentOption.BACKOFF_CAP,
            20.0,
            minimum=1,
            help="Longest wait between retries while Vault is unreachable or sealed or the key "
            "file cannot be written, seconds (jittered; problems that need a fix: up to 120 s).",
        ),
        contract_option(
            AgentOption.KEY_MAX_LENGTH,
            type=click.IntRange(1, keyrules.HARD_MAX_LENGTH),
            default=keyrules.DEFAULT_MAX_LENGTH,
            help="Without --binding: refuse longer keys (with --binding: spec.key.maxLength).",
        ),
        contract_option(
            AgentOption.KEY_FORMAT,
            type=click.Choice(keyrules.FORMATS),
            default="any",
            help="Without --binding: captchaai refuses keys that are not 32 lowercase hex "
            "characters (with --binding: spec.key.format).",
        ),
        contract_option(
            AgentOption.BINDING,
            help="Follow this CaptchaKeyBinding (in a pod): Vault path, auth and file come from "
            "it.",
        ),
        contract_option(
            AgentOption.NAMESPACE,
            help="Namespace of the binding [default: the service account's namespace].",
        ),
        _seconds(
            AgentOption.ROTATION_SPREAD,
            0.5,
            minimum=0,
            help="With --binding: spread a rotation's Vault reads over up to this many seconds.",
        ),
        contract_option(
            AgentOption.ALLOWED_VAULT_ADDRS,
            default="",
            help="With --binding: comma-separated Vault addresses the binding may name [default: "
            "--vault-addr only].",
        ),
        contract_option(
            AgentOption.ALLOWED_AUDIENCES,
            default="vault",
            help="With --binding: comma-separated token audiences the binding may name.",
        ),
        contract_option(
            AgentOption.ALLOW_INSECURE_HTTP,
            negatable=True,
            default=False,
            help="With --binding: let the binding name a plain-http Vault address (development).",
        ),
        contract_option(
            AgentOption.ONCE, is_flag=True, help="Fetch, write and exit (non-zero on failure)."
        ),
        contract_option(
            AgentOption.HEALTH_ADDR,
            callback=host_port,
            default="0.0.0.0:8099",
            help="HOST:PORT for /healthz, /readyz and /status; empty to disable.",
        ),
        contract_option(
            AgentOption.LOG_LEVEL,
            type=LOG_LEVELS,
            default="info",
            help="Least severe log level written to stderr.",
        ),
        contract_option(
            AgentOption.LOG_FORMAT,
            type=click.Choice(["json", "text"]),
            default="json",
            help="json: one object per line with the fields of docs/logging.md; text: for people.",
        ),
    ]
