"""``captchakey``: the command line of every process this distribution runs.

One module per command. Each imports its machinery lazily, so ``captchakey agent``
never loads what only the operator needs, and a plain install (no extras) still runs
``--help`` and says which extra a command needs. Every option of the long-running
processes can also be set from the environment (shown in ``--help``), which is how the
webhook and the chart configure containers.
"""

from __future__ import annotations

import click

from agent import __version__
from agent.cli.agent import agent_command
from agent.cli.check_webhook import check_webhook_command
from agent.cli.demo import demo_command
from agent.cli.operator import operator_command
from agent.cli.rotate import rotate_command

__all__ = ["main"]


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


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    commands=[agent_command, check_webhook_command, demo_command, operator_command, rotate_command],
)
@click.version_option(__version__, prog_name="captchakey")
def main() -> None:
    """Deliver CaptchaAI API keys from Vault to workloads, and rotate them."""
