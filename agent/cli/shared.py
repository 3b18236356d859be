"""What several commands share: option types, the Vault options, and two ways to fail well.

Only the standard library, click and the contracts: every command module imports this,
and a plain install (no extras) must still run ``captchakey --help``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from agent.contract.agentargs import AgentOption

__all__ = [
    "LOG_LEVELS",
    "contract_option",
    "host_port",
    "needs_extra",
    "service_account_namespace",
    "vault_addr_option",
    "vault_cacert_option",
]

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def host_port(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, int] | None:
    """An option's ``HOST:PORT`` to listen on, or ``None`` (empty: serve nothing)."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT (or empty to disable)")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the kubelet probes the pod IP.


def contract_option(option: AgentOption, *, negatable: bool = False, **attrs: Any) -> click.Option:
    """One option under the flag and variables the agent's contract names for it."""
    flag = f"{option.flag}/--no-{option.flag.removeprefix('--')}" if negatable else option.flag
    return click.Option([flag, option.dest], envvar=list(option.envvars), show_envvar=True, **attrs)


def vault_addr_option() -> click.Option:
    """Where Vault is: the agent reads the key there, ``rotate`` stores a new one there."""
    return contract_option(
        AgentOption.VAULT_ADDR, default="https://127.0.0.1:8200", help="Vault (or OpenBao) address."
    )


def vault_cacert_option() -> click.Option:
    """Whom to trust for Vault's TLS, for the agent and for ``rotate`` alike."""
    return contract_option(
        AgentOption.VAULT_CACERT,
        type=click.Path(dir_okay=False),
        help="PEM CA bundle that signed Vault's certificate.",
    )


@contextlib.contextmanager
def needs_extra(command: str, extra: str) -> Iterator[None]:
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


def service_account_namespace() -> str:
    """The pod's own namespace, as Kubernetes mounts it beside the service-account token."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        raise click.UsageError(
            "--namespace (POD_NAMESPACE) is required outside a pod: the binding's namespace"
        ) from None
