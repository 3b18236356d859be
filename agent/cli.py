"""``captchakey``: the command line of every process this distribution runs.

Subcommands import their machinery lazily, so ``captchakey agent`` never loads what only
the operator needs. Every option can also be set from the environment (shown in
``--help``), which is how the webhook and the chart configure containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from agent import __version__, keyfile, keyrules
from agent.contract.agentargs import AgentOption
from agent.contract.auth import AUTH_METHODS

_F = TypeVar("_F", bound=Callable[..., Any])
_LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])


def _octal(value: str | int) -> int:
    try:
        mode = value if isinstance(value, int) else int(str(value), 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal file mode such as 0440") from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"{value!r} is outside 0000-0777")
    return mode


def _health_address(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT (or empty to disable)")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the kubelet probes the pod IP.


@contextlib.contextmanager
def _needs_extra(command: str, extra: str) -> Iterator[None]:
    """Turn a missing optional dependency into the install command that provides it.

    A plain ``pip install captcha-key-agent`` (the reader's footprint) installs this
    script too; its commands then say what to install rather than print a traceback.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "agent":
            raise
        raise click.ClickException(
            f"`captchakey {command}` needs the {exc.name!r} package, which this installation "
            f"lacks: pip install 'captcha-key-agent[{extra}]'"
        ) from None


class _Group(click.Group):
    """A command list that shows each command's whole summary, never a cut-short one."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, command.get_short_help_str(limit=200))
            for name, command in sorted(self.commands.items())
            if not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _agent_option(
    option: AgentOption, *, negatable: bool = False, **kwargs: Any
) -> Callable[[_F], _F]:
    """Declare one of the agent's options under the contract's flag and variable names."""
    flag = f"{option.flag}/--no-{option.flag[2:]}" if negatable else option.flag
    return click.option(flag, option.dest, envvar=list(option.envvars), show_envvar=True, **kwargs)


# Where Vault is and whom to trust there: the agent and `rotate` both talk to it.
_vault_addr = _agent_option(
    AgentOption.VAULT_ADDR,
    default="https://127.0.0.1:8200",
    help="Vault (or OpenBao) address.",
)
_vault_cacert = _agent_option(
    AgentOption.VAULT_CACERT,
    type=click.Path(dir_okay=False),
    help="PEM CA bundle that signed Vault's certificate.",
)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(__version__, prog_name="captchakey")
def main() -> None:
    """Deliver CaptchaAI API keys from Vault to workloads, and rotate them."""


@main.command("agent")
@_vault_addr
@_vault_cacert
@_agent_option(
    AgentOption.VAULT_NAMESPACE,
    help="Vault Enterprise / OpenBao namespace.",
)
@_agent_option(
    AgentOption.AUTH_METHOD,
    type=click.Choice(AUTH_METHODS),
    default="kubernetes",
    help="How to log in: the pod's service account (kubernetes, jwt), AppRole (role id and "
    "secret id), a Vault token (token: read from VAULT_TOKEN, or from --token-file), or the "
    "machine's AWS identity (aws: a signed sts:GetCallerIdentity, for EC2 and Lambda; needs "
    "the aws extra).",
)
@_agent_option(
    AgentOption.AWS_REGION,
    default="us-east-1",
    help="aws auth: the STS region the login request is signed for (Vault's sts_region); "
    "with --aws-secret-id: the secret's region.",
)
@_agent_option(
    AgentOption.AWS_HEADER_VALUE,
    help="aws auth: the signed X-Vault-AWS-IAM-Server-ID header (Vault's "
    "iam_server_id_header_value), so the request cannot be replayed elsewhere.",
)
@_agent_option(
    AgentOption.AWS_STS_ENDPOINT,
    help="aws auth: the STS URL to sign for [default: https://sts.REGION.amazonaws.com/].",
)
@_agent_option(
    AgentOption.AWS_SECRET_ID,
    help="Without --binding: read the key from this AWS Secrets Manager secret (name or ARN) "
    "instead of Vault, with the machine's AWS identity (or --aws-role-arn). Needs the aws "
    "extra and --aws-region.",
)
@_agent_option(
    AgentOption.AWS_FIELD,
    help="With --aws-secret-id: the JSON field holding the key [default: the whole string].",
)
@_agent_option(
    AgentOption.AWS_VERSION_STAGE,
    default="AWSCURRENT",
    help="With --aws-secret-id: the staging label to follow.",
)
@_agent_option(
    AgentOption.AWS_VERSION_ID,
    help="With --aws-secret-id: pin this version id instead of following the label.",
)
@_agent_option(
    AgentOption.AWS_ROLE_ARN,
    help="With --aws-secret-id: assume this role with the token in --aws-token-file "
    "(AssumeRoleWithWebIdentity) [default: the SDK's default credentials].",
)
@_agent_option(
    AgentOption.AWS_TOKEN_FILE,
    type=click.Path(dir_okay=False, path_type=Path),
    help="For spec.source aws bindings and --aws-role-arn: the projected token exchanged with "
    "STS AssumeRoleWithWebIdentity [default: /var/run/secrets/captchakeys/aws/token].",
)
@_agent_option(
    AgentOption.AWS_ENDPOINT_URL,
    help="For spec.source aws bindings and --aws-secret-id: one endpoint for STS and Secrets "
    "Manager (a private endpoint) [default: AWS's regional endpoints, or AWS_ENDPOINT_URL_*].",
)
@_agent_option(
    AgentOption.AUTH_MOUNT,
    help="Mount path of the auth method [default: the method's name].",
)
@_agent_option(
    AgentOption.ROLE,
    help="Vault role (kubernetes, jwt), or the AppRole role id; approle without it reads "
    "the role id from [env: VAULT_ROLE_ID].",
)
@_agent_option(
    AgentOption.TOKEN_FILE,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Service-account token (kubernetes, jwt; read afresh at every login) or Vault "
    "token file (token). [default for kubernetes/jwt: /var/run/secrets/captchakeys/vault/token]",
)
@_agent_option(
    AgentOption.SECRET_ID_FILE,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the AppRole secret id; without it, the secret id is read from "
    "[env: VAULT_SECRET_ID].",
)
@_agent_option(
    AgentOption.KV_MOUNT,
    default="secret",
    help="KV v2 mount.",
)
@_agent_option(
    AgentOption.PATH,
    help="Secret path inside the mount, e.g. captchaai/prod (required without --binding).",
)
@_agent_option(
    AgentOption.FIELD,
    default="api_key",
    help="Field of the secret that holds the key.",
)
@_agent_option(
    AgentOption.KV_VERSION,
    type=click.IntRange(min=1),
    help="Pin this version instead of following the latest.",
)
@_agent_option(
    AgentOption.OUT_DIR,
    default=str(keyfile.DEFAULT_DIR),
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory (tmpfs) for the key file.",
)
@_agent_option(
    AgentOption.FILE_NAME,
    default=keyfile.DEFAULT_FILE_NAME,
    help="Key file name inside --out-dir.",
)
@_agent_option(
    AgentOption.MODE,
    default="0440",
    help="Key file mode, octal.",
)
@_agent_option(
    AgentOption.REFRESH_INTERVAL,
    type=click.FloatRange(min=1),
    default=3600.0,
    help="Seconds between version checks (jittered ±10%); with --binding, the default "
    "for a binding that sets no spec.refreshIntervalSeconds.",
)
@_agent_option(
    AgentOption.BACKOFF_CAP,
    type=click.FloatRange(min=1),
    default=20.0,
    help="Longest wait between retries while Vault is unreachable or sealed or the key file "
    "cannot be written, seconds (jittered; problems that need a fix: up to 120 s).",
)
@_agent_option(
    AgentOption.KEY_MAX_LENGTH,
    type=click.IntRange(1, keyrules.HARD_MAX_LENGTH),
    default=keyrules.DEFAULT_MAX_LENGTH,
    help="Without --binding: refuse longer keys (with --binding: spec.key.maxLength).",
)
@_agent_option(
    AgentOption.KEY_FORMAT,
    type=click.Choice(keyrules.FORMATS),
    default="any",
    help="Without --binding: captchaai refuses keys that are not 32 lowercase hex "
    "characters (with --binding: spec.key.format).",
)
@_agent_option(
    AgentOption.BINDING,
    help="Follow this CaptchaKeyBinding (in a pod): Vault path, auth and file come from it.",
)
@_agent_option(
    AgentOption.NAMESPACE,
    help="Namespace of the binding [default: the service account's namespace].",
)
@_agent_option(
    AgentOption.ROTATION_SPREAD,
    type=click.FloatRange(min=0),
    default=0.5,
    help="With --binding: spread a rotation's Vault reads over up to this many seconds.",
)
@_agent_option(
    AgentOption.ALLOWED_VAULT_ADDRS,
    default="",
    help="With --binding: comma-separated Vault addresses the binding may name "
    "[default: --vault-addr only].",
)
@_agent_option(
    AgentOption.ALLOWED_AUDIENCES,
    default="vault",
    help="With --binding: comma-separated token audiences the binding may name.",
)
@_agent_option(
    AgentOption.ALLOW_INSECURE_HTTP,
    negatable=True,
    default=False,
    help="With --binding: let the binding name a plain-http Vault address (development).",
)
@_agent_option(
    AgentOption.ONCE,
    is_flag=True,
    help="Fetch, write and exit (non-zero on failure).",
)
@_agent_option(
    AgentOption.HEALTH_ADDR,
    default="0.0.0.0:8099",
    help="HOST:PORT for /healthz, /readyz and /status; empty to disable.",
)
@_agent_option(
    AgentOption.LOG_LEVEL,
    type=_LOG_LEVELS,
    default="info",
    help="Least severe log level written to stderr.",
)
@_agent_option(
    AgentOption.LOG_FORMAT,
    type=click.Choice(["json", "text"]),
    default="json",
    help="json: one object per line with the fields of docs/logging.md; text: for people.",
)
def agent_command(**options: Any) -> None:
    """Keep the CaptchaAI key file current from Vault (or AWS Secrets Manager).

    Fetches at start, then checks the version every --refresh-interval and rewrites the
    file only when it changed. While Vault fails, the last good key stays in place.
    """
    with _needs_extra("agent", "agent"):
        from agent.keysource import KeySource, SourceRef
        from agent.runtime import logs
        from agent.runtime.backoff import Backoff
        from agent.sidecar import KeyAgent, KeyRefresher, KeyTarget
        from agent.sidecar.metrics import AgentMetrics
        from agent.sidecar.standalone import run_until_signalled
        from agent.vault import SecretRef, VaultClient, VaultError, auth_from_settings

    logs.configure(options["log_level"], options["log_format"])
    if options["binding"]:
        _run_binding_agent(options)
        return
    if not options["path"] and not options["aws_secret_id"]:
        raise click.UsageError(
            "--path (CAPTCHAKEY_PATH) is required, e.g. --path captchaai/prod (or, for AWS "
            "Secrets Manager, --aws-secret-id)"
        )
    try:
        target = KeyTarget(
            options["out_dir"],
            keyfile.validate_file_name(options["file_name"]),
            _octal(options["mode"]),
        )
        client: KeySource
        ref: SourceRef
        if options["aws_secret_id"]:
            client, ref = _aws_secret_source(options)
        else:
            client = VaultClient(
                options["vault_addr"],
                _aws_iam_auth(options)
                if options["auth_method"] == "aws"
                else auth_from_settings(
                    options["auth_method"],
                    role=options["role"],
                    mount=options["auth_mount"],
                    token_file=options["token_file"],
                    secret_id_file=options["secret_id_file"],
                ),
                ca_cert=options["vault_cacert"],
                namespace=options["vault_namespace"],
            )
            ref = SecretRef(
                path=options["path"],
                mount=options["kv_mount"],
                field=options["field"],
                version=options["kv_version"],
            )
        rules = keyrules.KeyRules(options["key_max_length"], options["key_format"])
        metrics = AgentMetrics()
        key_agent = KeyAgent(
            KeyRefresher(client, ref, target, rules=rules, metrics=metrics),
            refresh_interval=options["refresh_interval"],
            backoff=Backoff(cap=options["backoff_cap"]),
            metrics=metrics,
        )
        if options["once"]:
            asyncio.run(key_agent.refresh_once())
            return
    except (
        VaultError,
        keyfile.InvalidFileNameError,
        keyfile.KeyFileUnwritableError,
        keyrules.KeyRejectedError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(run_until_signalled(key_agent, _health_address(options["health_addr"])))


def _aws_secret_source(options: dict[str, Any]) -> tuple[Any, Any]:
    """A standalone agent reading AWS Secrets Manager (EC2, Lambda): client and secret."""
    with _needs_extra("agent --aws-secret-id", "aws"):
        from agent.aws import DEFAULT_TOKEN_FILE, AwsSecretRef, WebIdentity
        from agent.aws.refs import REGION_PATTERN
        from agent.aws.secrets import SecretsManagerSource, session_name
    region = options["aws_region"]
    if not REGION_PATTERN.fullmatch(region):
        raise click.BadParameter(f"{region!r} is not an AWS region", param_hint="--aws-region")
    identity = None
    if options["aws_role_arn"]:
        identity = WebIdentity(
            role_arn=options["aws_role_arn"],
            token_file=options["aws_token_file"] or DEFAULT_TOKEN_FILE,
            session_name=session_name(),
        )
    ref = AwsSecretRef(
        secret_id=options["aws_secret_id"],
        region=region,
        field=options["aws_field"] or None,
        stage=options["aws_version_stage"],
        version=options["aws_version_id"] or None,
    )
    client = SecretsManagerSource(region, identity, endpoint_url=options["aws_endpoint_url"])
    return client, ref


def _aws_iam_auth(options: dict[str, Any]) -> Any:
    """Vault's aws (IAM) login; the AWS SDK is loaded only when this method is chosen."""
    with _needs_extra("agent --auth-method aws", "aws"):
        from agent.aws.vaultauth import AwsIamAuth
    if not options["role"]:
        raise click.UsageError("--auth-method aws needs --role: the Vault role of the aws method")
    return AwsIamAuth(
        role=options["role"],
        mount=options["auth_mount"] or "aws",
        region=options["aws_region"],
        header_value=options["aws_header_value"],
        sts_endpoint=options["aws_sts_endpoint"],
    )


def _run_binding_agent(options: dict[str, Any]) -> None:
    # The official `kubernetes` client is importable in the image (the rotate command
    # uses it), and kopf imports it when it can: 10+ MiB of RSS in every pod for nothing.
    # Making it unimportable before kopf loads keeps the sidecar lean.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from agent.binding.policy import VaultPolicy

    with _needs_extra("agent", "agent"), _no_collection_while_importing():
        from agent.runtime.backoff import Backoff
        from agent.sidecar.watcher import AgentDefaults, BindingAgent, run_binding_agent

    namespace = options["namespace"] or _service_account_namespace()
    policy = VaultPolicy.from_lists(
        options["allowed_vault_addrs"] or options["vault_addr"],
        options["allowed_audiences"],
        options["allow_insecure_http"],
    )
    defaults = AgentDefaults(
        vault_addr=options["vault_addr"],
        out_dir=options["out_dir"],
        token_file=options["token_file"],
        vault_cacert=options["vault_cacert"],
        vault_namespace=options["vault_namespace"],
        backoff=Backoff(cap=options["backoff_cap"]),
        rotation_spread=options["rotation_spread"],
        refresh_seconds=options["refresh_interval"],
        aws_token_file=options["aws_token_file"],
        aws_endpoint_url=options["aws_endpoint_url"],
        policy=policy,
    )
    health = _health_address(options["health_addr"])
    binding = BindingAgent(options["binding"], defaults)
    asyncio.run(run_binding_agent(binding, namespace, health=health))


@contextlib.contextmanager
def _no_collection_while_importing() -> Iterator[None]:
    """Import kopf, aiohttp and hvac without the cyclic GC running over and over.

    The agent's start-up is every pod's start-up, and a few thousand module objects
    created at once trigger dozens of full collections that find nothing to free
    (about 40 ms of a 350 ms start here). What the imports created is then frozen:
    later collections skip it.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _service_account_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip()
    except OSError:
        raise click.UsageError(
            "--namespace (POD_NAMESPACE) is required outside a pod: the binding's namespace"
        ) from None


@main.command("operator")
@click.option(
    "--config",
    "config_path",
    envvar="CAPTCHAKEY_CONFIG",
    show_envvar=True,
    default="/etc/captchakeys/config.yaml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Operator configuration file.",
)
@click.option(
    "--namespace",
    envvar="POD_NAMESPACE",
    show_envvar=True,
    help="The operator's own namespace [default: the service account's].",
)
@click.option(
    "--health-addr",
    envvar="CAPTCHAKEY_HEALTH_ADDR",
    show_envvar=True,
    default="0.0.0.0:8080",
    help="HOST:PORT for /healthz (liveness) and /readyz (the webhook server listens).",
)
@click.option(
    "--metrics-addr",
    envvar="CAPTCHAKEY_METRICS_ADDR",
    show_envvar=True,
    default="0.0.0.0:9090",
    help="HOST:PORT for /metrics (Prometheus); empty to disable.",
)
def operator_command(
    config_path: Path, namespace: str | None, health_addr: str, metrics_addr: str
) -> None:
    """Serve the webhooks and keep every CaptchaKeyBinding's status."""
    with _needs_extra("operator", "operator"):
        from agent.operator.app import run_operator
        from agent.operator.config import ConfigError, OperatorConfig
        from agent.runtime import logs

    try:
        config = OperatorConfig.load(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(config.log_level, config.log_format)
    asyncio.run(
        run_operator(
            config,
            namespace or _service_account_namespace(),
            probes=_health_address(health_addr),
            metrics_addr=_health_address(metrics_addr),
        )
    )


@main.command("rotate")
@click.option("--binding", help="The CaptchaKeyBinding to rotate.")
@click.option("--environment", help="Or: the only binding of this environment in the namespace.")
@click.option(
    "-n",
    "--namespace",
    help="The binding's namespace [default: the kubeconfig context's namespace, else default].",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Kubeconfig file, as for kubectl [default: $KUBECONFIG, else ~/.kube/config; in a "
    "pod without either, the pod's service account].",
)
@click.option("--context", help="Kubeconfig context [default: its current-context].")
@click.option(
    "--new-key-stdin",
    is_flag=True,
    help="Read a new key from stdin and store it in Vault first (never pass it in argv).",
)
@_vault_addr
@_vault_cacert
@click.option(
    "--vault-namespace",
    envvar="VAULT_NAMESPACE",
    show_envvar=True,
    help="Vault Enterprise / OpenBao namespace of the key [default: the binding's "
    "spec.vault.namespace, else the root namespace].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    help="Give up (exit 1, stragglers named) after this many seconds.",
)
def rotate_command(binding: str | None, environment: str | None, namespace: str | None,
                   kubeconfig: str | None, context: str | None, new_key_stdin: bool,
                   vault_addr: str, vault_cacert: str | None, vault_namespace: str | None,
                   timeout: float) -> None:  # fmt: skip
    """Rotate a binding's key now and wait until the old version is safe to revoke.

    With --new-key-stdin the key is stored in Vault with your own identity, found as the
    vault and bao CLIs find it: VAULT_TOKEN (or BAO_TOKEN), else the token `vault login`
    or `bao login` saved in ~/.vault-token. For example
    `pass show captchaai/prod | captchakey rotate --environment prod --new-key-stdin`.
    """
    if bool(binding) == bool(environment):
        raise click.UsageError("name exactly one of --binding or --environment")
    with _needs_extra("rotate", "operator"):
        from agent.binding.model import BindingSpec, InvalidBindingError
        from agent.rotation import (
            RotateError,
            api_errors,
            connect,
            find_binding,
            rotate,
            vault_token,
        )
        from agent.vault import TokenAuth, VaultClient, VaultError

    # Unstripped: the key rules drop one trailing newline and refuse anything else.
    new_key = sys.stdin.read() if new_key_stdin else None
    if new_key_stdin and not (new_key or "").strip():
        raise click.UsageError("--new-key-stdin: stdin was empty; pipe the new key in")

    async def run() -> bool:
        cluster = connect(kubeconfig, context)
        where = namespace or cluster.namespace
        with api_errors(cluster):
            body = await find_binding(cluster.api, where, binding, environment)
            vault = None
            if new_key:
                spec = BindingSpec.from_body(body)
                key_namespace = spec.vault.namespace if spec.vault else None
                vault = VaultClient(vault_addr, TokenAuth(token=vault_token()),
                                    ca_cert=vault_cacert,
                                    namespace=vault_namespace or key_namespace)  # fmt: skip
            result = await rotate(
                cluster.api, body, new_key=new_key, vault=vault, wait_seconds=timeout
            )
        return result.ok

    try:
        ok = asyncio.run(run())
    except (
        RotateError,
        LookupError,
        VaultError,
        InvalidBindingError,
        keyrules.KeyRejectedError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("captchakey rotate: interrupted; the rotation request stays in place", err=True)
        sys.exit(130)
    sys.exit(0 if ok else 1)


@main.command("check-webhook")
@click.option(
    "--url", required=True, help="The mutating webhook's URL, e.g. https://svc.ns.svc/mutate-pods."
)
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA that signed it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    help="Seconds to wait for the webhook's answer.",
)
def check_webhook_command(url: str, ca_file: str | None, timeout: float) -> None:
    """Post a harmless AdmissionReview (a pod that did not opt in); exit 0 if it is allowed.

    Used by the chart's `helm test` hook: proves the Service, TLS and the server work.
    """
    import uuid

    uid = str(uuid.uuid4())
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "default",
            "userInfo": {"username": "captchakey-check-webhook"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "check", "namespace": "default"},
                       "spec": {"containers": [{"name": "app", "image": "busybox"}]}},
        },
    }  # fmt: skip
    with _needs_extra("check-webhook", "agent"):
        answer = _post_review(url, review, ca_file, timeout)
    if answer.get("uid") != uid or not answer.get("allowed"):
        raise click.ClickException(f"the webhook at {url} answered unexpectedly: {answer}")
    click.echo(f"webhook at {url} answered and allowed a pod that did not opt in")


def _post_review(
    url: str, review: dict[str, Any], ca_file: str | None, timeout: float
) -> dict[str, Any]:
    """POST the review; every way it can fail becomes one line saying what to check."""
    import requests

    trusted = ca_file or "the system's trusted CAs"
    try:
        response = requests.post(url, json=review, verify=ca_file or True, timeout=timeout)
    except requests.exceptions.SSLError as exc:
        raise click.ClickException(
            f"TLS with the webhook at {url} failed: its certificate is not signed by "
            f"{trusted} or does not name that host ({_root_cause(exc)}); check that --ca-file "
            "is the ca.crt of the webhook's TLS Secret and that the certificate is current"
        ) from None
    except requests.Timeout:
        raise click.ClickException(
            f"the webhook at {url} did not answer within {timeout:g}s: is the operator "
            "overloaded, or a NetworkPolicy dropping the traffic?"
        ) from None
    except requests.ConnectionError as exc:
        raise click.ClickException(
            f"cannot connect to the webhook at {url} ({_root_cause(exc)}): is the operator "
            "running and ready, and does the webhook Service select its pods?"
        ) from None
    if response.status_code != 200:
        raise click.ClickException(
            f"the webhook at {url} answered HTTP {response.status_code}: {response.text[:200]!r}"
        )
    try:
        answer = response.json()["response"]
    except (ValueError, KeyError, TypeError):
        raise click.ClickException(
            f"the webhook at {url} did not answer with an AdmissionReview: {response.text[:200]!r}"
        ) from None
    if not isinstance(answer, dict):
        raise click.ClickException(f"the webhook at {url} answered unexpectedly: {answer!r}")
    return answer


def _root_cause(exc: BaseException) -> str:
    """The innermost reason (e.g. 'certificate verify failed'), not urllib3's whole chain."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.split("] ", 1)[-1] if text.startswith("[") else text


@main.command("demo")
@click.option("--rotations", type=click.IntRange(1, 50), default=5, help="How many rotations.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.2,
    help="The agent's version-check interval during the demo, seconds.",
)
def demo_command(rotations: int, interval: float) -> None:
    """Run the key path end to end against an embedded OpenBao dev server."""
    with _needs_extra("demo", "demo"):
        from agent.demo import run_demo

    sys.exit(run_demo(rotations=rotations, interval=interval))
