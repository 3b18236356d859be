"""``captchakey demo``: the key path end to end on one machine (see :mod:`agent.demo`)."""

from __future__ import annotations

import sys

import click

from agent.cli.shared import needs_extra

__all__ = ["demo_command"]


@click.command("demo")
@click.option("--rotations", type=click.IntRange(1, 50), default=5, help="How many rotations.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.2,
    help="The agent's version-check interval during the demo, seconds.",
)
def demo_command(rotations: int, interval: float) -> None:
    """Run the key path end to end against an embedded OpenBao dev server."""
    with needs_extra("demo", "demo"):
        from agent.demo import run_demo

    sys.exit(run_demo(rotations=rotations, interval=interval))
