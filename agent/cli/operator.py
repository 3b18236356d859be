"""``captchakey operator``: the webhooks and the status keeper, in one process."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from agent.cli.shared import host_port, needs_extra, service_account_namespace
from agent.runtime.startup import collection_paused, freeze_once_ready

__all__ = ["operator_command"]


@click.command("operator")
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
    callback=host_port,
    default="0.0.0.0:8080",
    help="HOST:PORT for /healthz (liveness) and /readyz (the webhook server listens).",
)
@click.option(
    "--metrics-addr",
    envvar="CAPTCHAKEY_METRICS_ADDR",
    show_envvar=True,
    callback=host_port,
    default="0.0.0.0:9090",
    help="HOST:PORT for /metrics (Prometheus); empty to disable.",
)
def operator_command(
    config_path: Path,
    namespace: str | None,
    health_addr: tuple[str, int] | None,
    metrics_addr: tuple[str, int] | None,
) -> None:
    """Serve the webhooks and keep every CaptchaKeyBinding's status."""
    with needs_extra("operator", "operator"), collection_paused():
        from agent.operator.app import run_operator
        from agent.operator.config import ConfigError, OperatorConfig
        from agent.runtime import logs

    try:
        config = OperatorConfig.load(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(config.log_level, config.log_format)
    serve = functools.partial(
        run_operator,
        config,
        namespace or service_account_namespace(),
        probes=health_addr,
        metrics_addr=metrics_addr,
    )
    asyncio.run(_frozen_once_ready(serve))


async def _frozen_once_ready(serve: Callable[..., Awaitable[None]]) -> None:
    """``serve(ready_flag=...)``, with what its start-up made frozen once it is ready."""
    ready = asyncio.Event()
    freezer = asyncio.create_task(freeze_once_ready(ready))
    try:
        await serve(ready_flag=ready)
    finally:
        freezer.cancel()
