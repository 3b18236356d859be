"""``captchakey rotate``: rotate a binding's key now, from an engineer's machine or CI."""

from __future__ import annotations

import asyncio
import inspect
import sys
from typing import TYPE_CHECKING, Any

import click

from agent import keyrules
from agent.cli.shared import contract_option, needs_extra, vault_addr_option, vault_cacert_option
from agent.contract.agentargs import AgentOption

if TYPE_CHECKING:
    from agent.vault import VaultClient

__all__ = ["rotate_command"]


def _rotate(
    *,
    binding: str | None,
    environment: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    new_key_stdin: bool,
    vault_addr: str,
    vault_cacert: str | None,
    vault_namespace: str | None,
    timeout: float,
    request_timeout: float,
) -> None:
    """Rotate a binding's key now and wait until the old version is safe to revoke.

    With --new-key-stdin the key is stored in Vault with your own identity, found as the
    vault and bao CLIs find it: VAULT_TOKEN (or BAO_TOKEN), else the token `vault login`
    or `bao login` saved in ~/.vault-token. For example
    `pass show captchaai/prod | captchakey rotate --environment prod --new-key-stdin`.
    """
    if bool(binding) == bool(environment):
        raise click.UsageError("name exactly one of --binding or --environment")
    with needs_extra("rotate", "operator"):
        from agent.binding.model import InvalidBindingError
        from agent.rotation import RotateError, api_errors, connect, find_binding, rotate
        from agent.vault import VaultError

    # Unstripped: the key rules drop one trailing newline and refuse anything else.
    new_key = sys.stdin.read() if new_key_stdin else None
    if new_key_stdin and not (new_key or "").strip():
        raise click.UsageError("--new-key-stdin: stdin was empty; pipe the new key in")

    async def run() -> bool:
        cluster = connect(kubeconfig, context, request_timeout=request_timeout)
        with api_errors(cluster):
            where = namespace or cluster.namespace
            body = await find_binding(cluster.api, where, binding, environment)
            vault = _key_vault(body, vault_addr, vault_cacert, vault_namespace) if new_key else None
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


def _key_vault(
    body: dict[str, Any], addr: str, ca_cert: str | None, namespace: str | None
) -> VaultClient:
    """The Vault that stores the new key, reached with the engineer's own token.

    Its namespace is the one given, else the binding's ``spec.vault.namespace``.
    """
    from agent.binding.model import BindingSpec
    from agent.rotation import vault_token
    from agent.vault import TokenAuth, VaultClient

    spec = BindingSpec.from_body(body)
    key_namespace = spec.vault.namespace if spec.vault else None
    auth = TokenAuth(token=vault_token())
    return VaultClient(addr, auth, ca_cert=ca_cert, namespace=namespace or key_namespace)


rotate_command = click.Command(
    "rotate",
    callback=_rotate,
    help=inspect.getdoc(_rotate),
    params=[
        click.Option(["--binding"], help="The CaptchaKeyBinding to rotate."),
        click.Option(
            ["--environment"], help="Or: the only binding of this environment in the namespace."
        ),
        click.Option(
            ["-n", "--namespace"],
            help="The binding's namespace [default: the kubeconfig context's namespace, else "
            "default].",
        ),
        click.Option(
            ["--kubeconfig"],
            type=click.Path(dir_okay=False),
            help="Kubeconfig file, as for kubectl [default: $KUBECONFIG, else ~/.kube/config; "
            "in a pod without either, the pod's service account].",
        ),
        click.Option(["--context"], help="Kubeconfig context [default: its current-context]."),
        click.Option(
            ["--new-key-stdin"],
            is_flag=True,
            help="Read a new key from stdin and store it in Vault first (never pass it in argv).",
        ),
        vault_addr_option(),
        vault_cacert_option(),
        contract_option(
            AgentOption.VAULT_NAMESPACE,
            help="Vault Enterprise / OpenBao namespace of the key [default: the binding's "
            "spec.vault.namespace, else the root namespace].",
        ),
        click.Option(
            ["--timeout"],
            type=click.FloatRange(min=1),
            default=300.0,
            help="Give up (exit 1, stragglers named) after this many seconds.",
        ),
        click.Option(
            ["--request-timeout"],
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            help="Give up on the Kubernetes API (exit 1) when a request has no answer after "
            "this many seconds, as kubectl's --request-timeout.",
        ),
    ],
)
