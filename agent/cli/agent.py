"""``captchakey agent``: keep one key file current, in one of three modes.

- ``--binding NAME``: follow a CaptchaKeyBinding. This is how the webhook starts every
  injected agent; the binding's spec says where the key is, how to log in and how to
  write it, and the operator announces rotations through its status.
- ``--path PATH``: read a Vault KV v2 secret, for services outside a cluster.
- ``--aws-secret-id ID``: read an AWS Secrets Manager secret (EC2, Lambda).

Each mode is a function whose keyword parameters are the options it uses, so the
signature is the one list of what a mode reads. An option the chosen mode does not use
is refused with a usage error that names it, the mode and what to do, instead of being
ignored: a flag that seems to work but does nothing is worse than none. A value counts as
given when it is on the command line or in the agent's own ``CAPTCHAKEY_*`` variable;
variables other programs share (``VAULT_ADDR``, ``AWS_REGION``, ``POD_NAMESPACE``) may
be set around the agent for reasons of their own and are never held against a mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from agent import keyfile, keyrules
from agent.cli.agentoptions import agent_options
from agent.cli.shared import needs_extra, service_account_namespace
from agent.contract.agentargs import AGENT_COMMAND, AgentOption
from agent.contract.auth import AuthMethod
from agent.runtime.startup import collection_paused, no_charset_detection

if TYPE_CHECKING:
    from agent.keysource import KeySource, SourceRef
    from agent.vault import Auth

__all__ = ["agent_command"]

HealthAddress = tuple[str, int] | None


@dataclass(frozen=True)
class _KeepCurrent:
    """The key file and the pace of checks: what ``--path`` and ``--aws-secret-id`` share."""

    out_dir: Path
    file_name: str
    mode: int
    key_max_length: int
    key_format: keyrules.KeyFormat
    refresh_interval: float
    backoff_cap: float
    once: bool
    health_addr: HealthAddress

    def run(self, client: KeySource, ref: SourceRef) -> None:
        """Write the key from ``client`` now, then keep it current until signalled (or exit)."""
        with needs_extra(AGENT_COMMAND, "agent"):
            from agent.runtime.backoff import Backoff
            from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
            from agent.sidecar.metrics import AgentMetrics
            from agent.sidecar.standalone import run_until_signalled

        with _one_line_errors():
            target = KeyTarget(self.out_dir, keyfile.validate_file_name(self.file_name), self.mode)
            rules = keyrules.KeyRules(self.key_max_length, self.key_format)
            metrics = AgentMetrics()
            agent = KeyAgent(
                KeyRefresher(client, ref, target, rules=rules, metrics=metrics),
                refresh_interval=self.refresh_interval,
                backoff=Backoff(cap=self.backoff_cap),
                metrics=metrics,
            )
            if self.once:
                asyncio.run(agent.refresh_once())
                return
        asyncio.run(run_until_signalled(agent, self.health_addr))


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """What the user must fix (Vault refused, a bad file name, a rejected key): one line, exit 1."""
    with needs_extra(AGENT_COMMAND, "agent"):
        from agent.vault import VaultError
    try:
        yield
    except (
        VaultError,
        keyfile.InvalidFileNameError,
        keyfile.KeyFileUnwritableError,
        keyrules.KeyRejectedError,
    ) as exc:
        raise click.ClickException(str(exc)) from None


def _follow_binding(
    *,
    binding: str,
    namespace: str | None,
    vault_addr: str,
    vault_cacert: str | None,
    vault_namespace: str | None,
    token_file: Path | None,
    out_dir: Path,
    refresh_interval: float,
    backoff_cap: float,
    rotation_spread: float,
    aws_token_file: Path | None,
    aws_endpoint_url: str | None,
    allowed_vault_addrs: str,
    allowed_audiences: str,
    allow_insecure_http: bool,
    health_addr: HealthAddress,
) -> None:
    """Follow a CaptchaKeyBinding, within the webhook's defaults and the platform's policy."""
    # The official `kubernetes` client is importable in the image (the rotate command
    # uses it), and kopf imports it when it can: 10+ MiB of RSS in every pod for nothing.
    # Making it unimportable before kopf loads keeps the sidecar lean.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from agent.binding.policy import VaultPolicy

    with needs_extra(AGENT_COMMAND, "agent"), collection_paused(), no_charset_detection():
        from agent.runtime.backoff import Backoff
        from agent.sidecar.bindingagent import AgentDefaults, BindingAgent
        from agent.sidecar.firstkey import run_injected_agent

    where = namespace or service_account_namespace()
    policy = VaultPolicy.from_lists(
        allowed_vault_addrs or vault_addr, allowed_audiences, allow_insecure_http
    )
    defaults = AgentDefaults(
        vault_addr=vault_addr,
        out_dir=out_dir,
        token_file=token_file,
        vault_cacert=vault_cacert,
        vault_namespace=vault_namespace,
        backoff=Backoff(cap=backoff_cap),
        rotation_spread=rotation_spread,
        refresh_seconds=refresh_interval,
        aws_token_file=aws_token_file,
        aws_endpoint_url=aws_endpoint_url,
        policy=policy,
    )
    run_injected_agent(BindingAgent(binding, defaults), where, health=health_addr)


def _read_vault(
    *,
    path: str,
    kv_mount: str,
    field: str,
    kv_version: int | None,
    vault_addr: str,
    vault_cacert: str | None,
    vault_namespace: str | None,
    auth_method: AuthMethod,
    auth_mount: str | None,
    role: str | None,
    token_file: Path | None,
    secret_id_file: Path | None,
    aws_region: str,
    aws_header_value: str | None,
    aws_sts_endpoint: str | None,
    keep: _KeepCurrent,
) -> None:
    """Read a Vault KV v2 secret, logged in by the method and credentials given."""
    with needs_extra(AGENT_COMMAND, "agent"):
        from agent.vault import SecretRef, VaultClient, auth_from_settings

    with _one_line_errors():
        auth: Auth
        if auth_method == "aws":
            auth = _aws_iam_auth(role, auth_mount, aws_region, aws_header_value, aws_sts_endpoint)
        else:
            auth = auth_from_settings(
                auth_method,
                role=role,
                mount=auth_mount,
                token_file=token_file,
                secret_id_file=secret_id_file,
            )
        client = VaultClient(vault_addr, auth, ca_cert=vault_cacert, namespace=vault_namespace)
    keep.run(client, SecretRef(path=path, mount=kv_mount, field=field, version=kv_version))


def _aws_iam_auth(
    role: str | None,
    mount: str | None,
    region: str,
    header_value: str | None,
    sts_endpoint: str | None,
) -> Auth:
    """Vault's aws (IAM) login; the AWS SDK is loaded only when this method is chosen."""
    with needs_extra(f"{AGENT_COMMAND} --auth-method aws", "aws"):
        from agent.aws.vaultauth import AwsIamAuth
    if not role:
        raise click.UsageError("--auth-method aws needs --role: the Vault role of the aws method")
    return AwsIamAuth(
        role=role,
        mount=mount or "aws",
        region=region,
        header_value=header_value,
        sts_endpoint=sts_endpoint,
    )


def _read_aws_secret(
    *,
    aws_secret_id: str,
    aws_region: str,
    aws_field: str | None,
    aws_version_stage: str,
    aws_version_id: str | None,
    aws_role_arn: str | None,
    aws_token_file: Path | None,
    aws_endpoint_url: str | None,
    keep: _KeepCurrent,
) -> None:
    """Read an AWS Secrets Manager secret with the machine's identity, or a role's."""
    with needs_extra(f"{AGENT_COMMAND} --aws-secret-id", "aws"):
        from agent.aws import DEFAULT_TOKEN_FILE, AwsSecretRef, WebIdentity
        from agent.aws.refs import REGION_PATTERN
        from agent.aws.secrets import SecretsManagerSource, session_name
    if not REGION_PATTERN.fullmatch(aws_region):
        raise click.BadParameter(
            f"{aws_region!r} is not an AWS region", param_hint=AgentOption.AWS_REGION.flag
        )
    identity = None
    if aws_role_arn:
        identity = WebIdentity(
            role_arn=aws_role_arn,
            token_file=aws_token_file or DEFAULT_TOKEN_FILE,
            session_name=session_name(),
        )
    ref = AwsSecretRef(
        secret_id=aws_secret_id,
        region=aws_region,
        field=aws_field or None,
        stage=aws_version_stage,
        version=aws_version_id or None,
    )
    keep.run(SecretsManagerSource(aws_region, identity, endpoint_url=aws_endpoint_url), ref)


@dataclass(frozen=True)
class _Mode:
    """One way to run the agent: the option that selects it and the function that runs it.

    The function's keyword parameters are named after options; one annotated with a
    dataclass (:class:`_KeepCurrent`) stands for a group of options, one per field.
    """

    selector: AgentOption
    source: str  # what the selector names, for messages.
    run: Callable[..., None]

    @functools.cached_property
    def _parameters(self) -> dict[str, type[Any] | None]:
        """Each parameter of ``run``, with its group's class if it stands for one."""
        parameters = inspect.signature(self.run, eval_str=True).parameters.values()
        return {p.name: _group(p.annotation) for p in parameters}

    @functools.cached_property
    def uses(self) -> frozenset[AgentOption]:
        """The options this mode reads (and the ones every mode does)."""
        names = set()
        for name, group in self._parameters.items():
            names |= {f.name for f in dataclasses.fields(group)} if group else {name}
        return _COMMON | {_BY_DEST[name] for name in names}

    def arguments(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``run``'s keyword arguments, from the parsed options."""
        return {
            name: group(**{f.name: params[f.name] for f in dataclasses.fields(group)})
            if group
            else params[name]
            for name, group in self._parameters.items()
        }


def _group(annotation: object) -> type[Any] | None:
    """The class of a group of options (a dataclass), or ``None`` for a single option."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return None


# Read by the command itself before any mode runs.
_COMMON = frozenset({AgentOption.LOG_LEVEL, AgentOption.LOG_FORMAT})
_BY_DEST = {option.dest: option for option in AgentOption}

# The first whose selector is set runs; reading Vault is what is left.
_MODES = (
    _Mode(AgentOption.BINDING, "a CaptchaKeyBinding", _follow_binding),
    _Mode(AgentOption.AWS_SECRET_ID, "an AWS Secrets Manager secret", _read_aws_secret),
    _Mode(AgentOption.PATH, "a Vault secret", _read_vault),
)

# With --binding, where the binding itself says what these options would.
_BINDING_SAYS = {
    AgentOption.AUTH_METHOD: "spec.vault.auth.method",
    AgentOption.AUTH_MOUNT: "spec.vault.auth.mount",
    AgentOption.ROLE: "spec.vault.auth.role",
    AgentOption.KV_MOUNT: "spec.kv.mount",
    AgentOption.PATH: "spec.kv.path",
    AgentOption.FIELD: "spec.kv.field",
    AgentOption.KV_VERSION: "spec.kv.version",
    AgentOption.FILE_NAME: "spec.file.name",
    AgentOption.MODE: "spec.file.mode",
    AgentOption.KEY_MAX_LENGTH: "spec.key.maxLength",
    AgentOption.KEY_FORMAT: "spec.key.format",
    AgentOption.AWS_SECRET_ID: "spec.aws.secretId",
    AgentOption.AWS_REGION: "spec.aws.region",
    AgentOption.AWS_FIELD: "spec.aws.field",
    AgentOption.AWS_VERSION_STAGE: "spec.aws.versionStage",
    AgentOption.AWS_VERSION_ID: "spec.aws.versionId",
    AgentOption.AWS_ROLE_ARN: "spec.aws.roleArn",
}


def _mode_of(params: Mapping[str, Any]) -> _Mode:
    return next((mode for mode in _MODES if params[mode.selector.dest]), _MODES[-1])


class _AgentCommand(click.Command):
    """``captchakey agent``: parses every option, refuses the mode's unused ones, runs the mode."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if ctx.resilient_parsing:  # shell completion: nothing runs, nothing to refuse.
            return rest
        mode = _mode_of(ctx.params)
        if not ctx.params[mode.selector.dest]:  # none chosen: Vault, and no --path.
            raise click.UsageError(
                "--path (CAPTCHAKEY_PATH) is required, e.g. --path captchaai/prod (or, for AWS "
                "Secrets Manager, --aws-secret-id; in a pod, --binding)",
                ctx,
            )
        for option in AgentOption:
            given = _given(ctx, option)
            if given and option not in mode.uses:
                raise click.UsageError(_refusal(given, option, mode), ctx)
        return rest

    def invoke(self, ctx: click.Context) -> None:
        with needs_extra(AGENT_COMMAND, "agent"):
            from agent.runtime import logs

        logs.configure(ctx.params["log_level"], ctx.params["log_format"])
        mode = _mode_of(ctx.params)
        mode.run(**mode.arguments(ctx.params))


def _given(ctx: click.Context, option: AgentOption) -> str | None:
    """How the user set ``option`` (its flag, or its variable), or ``None``: left to its default."""
    source = ctx.get_parameter_source(option.dest)
    if source is ParameterSource.COMMANDLINE:
        return option.flag
    own = source is ParameterSource.ENVIRONMENT and not option.env_is_shared
    if own and os.environ.get(option.env):
        return f"{option.env} ({option.flag})"
    return None


def _refusal(given: str, option: AgentOption, mode: _Mode) -> str:
    """Why ``option`` does nothing in ``mode``, and what to do about it."""
    where = f"{given} has no effect with {mode.selector.flag}"
    if mode.selector is AgentOption.BINDING and option in _BINDING_SAYS:
        return f"{where}: the binding's {_BINDING_SAYS[option]} sets it; remove it"
    rival = next((other for other in _MODES if other.selector is option), None)
    if rival is not None:
        return (
            f"{where}: {option.flag} names {rival.source} and {mode.selector.flag} "
            f"{mode.source}, and an agent follows one; keep one of them"
        )
    users = " or ".join(other.selector.flag for other in _MODES if option in other.uses)
    return f"{where}: it only applies with {users}; remove it"


agent_command = _AgentCommand(
    AGENT_COMMAND,
    params=agent_options(),
    help=inspect.cleandoc(
        """Keep the CaptchaAI key file current from Vault (or AWS Secrets Manager).

    Fetches at start, then checks the version every --refresh-interval and rewrites the
    file only when it changed. While Vault fails, the last good key stays in place.

    One of: --binding NAME (in a pod, as the webhook injects it: the binding says the
    rest), --path (a Vault secret), --aws-secret-id (an AWS Secrets Manager secret).
    Options the chosen one does not use are refused.
    """
    ),
)
