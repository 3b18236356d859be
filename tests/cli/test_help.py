"""``captchakey --help`` as people read it, and the script a plain install leaves behind.

Covers:
- the command list shows every command's whole summary (no ``...`` cut);
- every option of every command has a description; ``--role`` and ``--secret-id-file``
  name the environment variables they fall back to as ``[env: ...]``, never as a
  ``[default: ...]``; the agent's help says that token auth reads ``VAULT_TOKEN``;
- a plain ``pip install captcha-key-agent`` (no extras, in a throwaway virtualenv) gives
  a working ``captchakey --help``, a reader that imports, and commands that name the
  extra to install instead of printing a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.cli import main

ROOT = Path(__file__).resolve().parents[2]


def help_of(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_command_list_shows_whole_summaries() -> None:
    listing = help_of().split("Commands:", 1)[1]
    assert "..." not in listing
    flat = " ".join(listing.split())
    for name, command in main.commands.items():
        summary = (command.help or "").split("\n\n", 1)[0]
        assert " ".join(summary.split()) in flat, name


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_has_a_description(name: str) -> None:
    command = main.commands[name]
    undocumented = [
        param.name
        for param in command.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert undocumented == []


def test_environment_fallbacks_read_as_env_not_default() -> None:
    text = " ".join(help_of("agent").split())
    assert "[env: VAULT_ROLE_ID]" in text
    assert "[env: VAULT_SECRET_ID]" in text
    assert "[default: VAULT_" not in text
    assert "VAULT_TOKEN" in text  # token auth: where the token comes from.


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with ``pip install captcha-key-agent`` (and its reader) and nothing else."""
    scratch = tmp_path_factory.mktemp("plain-install")
    source = scratch / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "agent", source / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    reader = scratch / "reader"  # captchakeys-reader, a dependency not on PyPI.
    shutil.copytree(
        ROOT / "readers" / "python", reader, ignore=shutil.ignore_patterns("__pycache__")
    )
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", str(reader), str(source)], check=True, timeout=300)
    return venv / "bin"


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run from / without PYTHONPATH: only what the plain install put there is importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env=env,
    )


def test_plain_install_gives_a_working_captchakey(plain_install: Path) -> None:
    result = run(plain_install / "captchakey", "--help")
    assert result.returncode == 0, result.stderr
    assert "rotate" in result.stdout
    reader = run(plain_install / "python", "-c", "import captchakeys")
    assert reader.returncode == 0, reader.stderr
    kopf = run(plain_install / "python", "-c", "import kopf")
    assert kopf.returncode != 0  # really without extras: the check below is not vacuous.


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["agent", "--path", "captchaai/dev", "--once"], "agent"),
        (["operator", "--namespace", "x"], "operator"),
        (["demo"], "demo"),
        (["check-webhook", "--url", "https://127.0.0.1:1/mutate"], "agent"),
    ],
)
def test_plain_install_commands_name_their_extra(
    plain_install: Path, args: list[str], extra: str
) -> None:
    result = run(plain_install / "captchakey", *args)
    assert result.returncode == 1
    assert f"pip install 'captcha-key-agent[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
