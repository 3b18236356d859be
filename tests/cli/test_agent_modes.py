"""``captchakey agent``'s three modes, and how each refuses the options it does not use.

Covers, with the real parser (nothing runs: a refusal comes before any work):
- the modes' options as this file lists them account for every option of the contract,
  each used by at least one mode: a new option fails here until it is placed;
- each mode refuses each option it does not use, given on the command line: a usage
  error naming the option and the mode; the same option set through the agent's own
  ``CAPTCHAKEY_*`` variable is refused naming the variable; each option a mode uses is
  accepted;
- variables other programs share (``VAULT_ADDR``, ``AWS_REGION``, ``POD_NAMESPACE``...) are
  never held against a mode;
- with ``--binding``, an option the binding's spec decides names that spec field (the
  whole message, through ``captchakey``, exit 2); two key sources at once say to keep
  one; no mode at all asks for ``--path``; shell completion is never refused;
- the ``captchakey agent`` commands of the README and the docs parse as written.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.contract.agentargs import AgentOption as O

ROOT = Path(__file__).resolve().parents[2]
AGENT = main.commands["agent"]

LOGS = {O.LOG_LEVEL, O.LOG_FORMAT}
STANDALONE = {
    *LOGS,
    *(O.OUT_DIR, O.FILE_NAME, O.MODE, O.KEY_MAX_LENGTH, O.KEY_FORMAT),
    *(O.REFRESH_INTERVAL, O.BACKOFF_CAP, O.ONCE, O.HEALTH_ADDR),
}
# What each mode reads, by its selecting flag, written out independently of the CLI.
USES = {
    "--binding": {
        *LOGS,
        *(O.BINDING, O.NAMESPACE, O.VAULT_ADDR, O.VAULT_CACERT, O.VAULT_NAMESPACE),
        *(O.TOKEN_FILE, O.OUT_DIR, O.REFRESH_INTERVAL, O.BACKOFF_CAP, O.ROTATION_SPREAD),
        *(O.AWS_TOKEN_FILE, O.AWS_ENDPOINT_URL, O.HEALTH_ADDR),
        *(O.ALLOWED_VAULT_ADDRS, O.ALLOWED_AUDIENCES, O.ALLOW_INSECURE_HTTP),
    },
    "--path": {
        *STANDALONE,
        *(O.PATH, O.KV_MOUNT, O.FIELD, O.KV_VERSION),
        *(O.VAULT_ADDR, O.VAULT_CACERT, O.VAULT_NAMESPACE),
        *(O.AUTH_METHOD, O.AUTH_MOUNT, O.ROLE, O.TOKEN_FILE, O.SECRET_ID_FILE),
        *(O.AWS_REGION, O.AWS_HEADER_VALUE, O.AWS_STS_ENDPOINT),
    },
    "--aws-secret-id": {
        *STANDALONE,
        *(O.AWS_SECRET_ID, O.AWS_REGION, O.AWS_FIELD, O.AWS_VERSION_STAGE, O.AWS_VERSION_ID),
        *(O.AWS_ROLE_ARN, O.AWS_TOKEN_FILE, O.AWS_ENDPOINT_URL),
    },
}
SELECTORS = {O.BINDING, O.PATH, O.AWS_SECRET_ID}
# Another mode's selector chooses that mode instead: see the test of two at once.
CASES = [
    (mode, option)
    for mode in USES
    for option in O
    if option.flag == mode or option not in SELECTORS
]


def given(option: O) -> list[str]:
    """The option on a command line, with a value its type accepts."""
    param = next(p for p in AGENT.params if p.name == option.dest)
    assert isinstance(param, click.Option)
    if param.is_flag:
        return [option.flag]
    samples = {O.MODE: "0600", O.HEALTH_ADDR: "127.0.0.1:1"}
    if isinstance(param.type, click.Choice):
        return [option.flag, str(param.type.choices[-1])]
    if isinstance(param.type, click.IntRange | click.FloatRange):
        return [option.flag, "1"]
    return [option.flag, samples.get(option, "x")]


def parse(args: list[str]) -> click.Context:
    return AGENT.make_context("agent", args)


@pytest.fixture(autouse=True)
def no_agent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in O:
        for name in option.envvars:
            monkeypatch.delenv(name, raising=False)


def test_every_option_of_the_contract_is_placed_and_used() -> None:
    assert set().union(*USES.values()) == set(O)


@pytest.mark.parametrize(("mode", "option"), CASES, ids=[f"{m}:{o.flag}" for m, o in CASES])
def test_each_mode_refuses_each_option_it_does_not_use(mode: str, option: O) -> None:
    selector = [mode, "selected"]
    if option.flag == mode:
        parse(selector)
    elif option in USES[mode]:
        parse([*selector, *given(option)])
    else:
        with pytest.raises(click.UsageError) as refused:
            parse([*selector, *given(option)])
        message = refused.value.message
        assert message.startswith(f"{option.flag} has no effect with {mode}: "), message
        assert message.endswith(("; remove it", "; keep one of them")), message


OWN_UNUSED = [(m, o) for m, o in CASES if o not in USES[m] and not o.env_is_shared]


@pytest.mark.parametrize(
    ("mode", "option"), OWN_UNUSED, ids=[f"{m}:{o.env}" for m, o in OWN_UNUSED]
)
def test_the_agents_own_variable_is_refused_like_its_flag(
    mode: str, option: O, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = given(option)[1:] or ["true"]
    monkeypatch.setenv(option.env, value[0])
    with pytest.raises(click.UsageError) as refused:
        parse([mode, "selected"])
    assert refused.value.message.startswith(
        f"{option.env} ({option.flag}) has no effect with {mode}: "
    )


SHARED_UNUSED = [(m, o) for m, o in CASES if o not in USES[m] and o.env_is_shared]


@pytest.mark.parametrize(
    ("mode", "option"), SHARED_UNUSED, ids=[f"{m}:{o.env}" for m, o in SHARED_UNUSED]
)
def test_variables_other_programs_share_are_not_held_against_a_mode(
    mode: str, option: O, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(option.env, given(option)[-1])
    ctx = parse([mode, "selected"])
    assert ctx.params[option.dest] is not None  # it was read, and let be.


def test_a_shared_fallback_variable_is_not_held_against_a_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert O.AWS_REGION.envvars[1:] == ("AWS_REGION",)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # set for every Lambda and many pods.
    assert parse(["--binding", "captchaai"]).params["aws_region"] == "eu-west-1"


def test_with_a_binding_the_refusal_names_the_spec_field_that_decides() -> None:
    result = CliRunner().invoke(main, ["agent", "--binding", "captchaai", "--path", "p"])
    assert result.exit_code == 2
    assert (
        "Error: --path has no effect with --binding: the binding's spec.kv.path sets it; "
        "remove it" in result.output
    )


def test_two_key_sources_at_once_say_to_keep_one() -> None:
    with pytest.raises(click.UsageError) as refused:
        parse(["--aws-secret-id", "captchaai/prod", "--path", "captchaai/prod"])
    assert refused.value.message == (
        "--path has no effect with --aws-secret-id: --path names a Vault secret and "
        "--aws-secret-id an AWS Secrets Manager secret, and an agent follows one; keep one of them"
    )


@pytest.mark.parametrize(
    ("first", "second", "runs"),
    [
        ("--binding", "--path", "--binding"),
        ("--binding", "--aws-secret-id", "--binding"),
        ("--path", "--aws-secret-id", "--aws-secret-id"),
    ],
)
def test_any_two_modes_at_once_are_refused(first: str, second: str, runs: str) -> None:
    with pytest.raises(click.UsageError) as refused:
        parse([first, "a", second, "b"])
    ignored = second if runs == first else first
    assert refused.value.message.startswith(f"{ignored} has no effect with {runs}: ")


def test_without_any_mode_the_agent_asks_for_a_path() -> None:
    with pytest.raises(click.UsageError) as refused:
        parse(["--auth-method", "token"])
    assert refused.value.message.startswith("--path (CAPTCHAKEY_PATH) is required")


def test_shell_completion_is_never_refused() -> None:
    ctx = AGENT.make_context("agent", ["--binding", "x", "--once"], resilient_parsing=True)
    assert ctx.params["once"] is True


def documented_agent_commands() -> list[str]:
    """Every ``captchakey agent`` command in a fenced block of the README and docs."""
    commands = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fenced = False
        text = page.read_text().replace("\\\n", " ")  # shell line continuations.
        for line in text.splitlines():
            if line.startswith("```"):
                fenced = not fenced
            elif fenced and "captchakey agent" in line:
                commands.append(line[line.index("captchakey agent") :])
    return commands


def test_the_docs_agent_commands_parse_as_written() -> None:
    commands = documented_agent_commands()
    assert len(commands) >= 2  # docs/aws.md's two standalone examples, at least.
    for command in commands:
        parse(shlex.split(command)[2:])
