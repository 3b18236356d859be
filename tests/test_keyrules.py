"""agent.keyrules and the binding's ``spec.key``: which keys are refused, and what is said.

Covers:
- accepted keys: a CaptchaAI-shaped key, one trailing newline (``echo``/``pass``) or CRLF
  dropped, any printable non-space text under ``format: any``;
- refused keys: empty, a second line, NUL / tab / other control characters, a space or a
  non-breaking space inside or around it, longer than the maximum (default and per
  binding), not 32 lowercase hex under ``format: captchaai``, not a string; every
  message names the source and the problem and never contains the key;
- ``KeyRules`` refuses limits outside 1..HARD_MAX_LENGTH and unknown formats;
- ``BindingSpec.from_body`` parses ``spec.key`` (defaults, values, bad values refused with
  the field named), and the CRD's defaults and bounds equal the module's constants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import keyrules
from agent.binding.model import BindingSpec, InvalidBindingError
from agent.keyrules import KeyRejectedError, KeyRules, check_key

WHERE = "field 'api_key' of \"secret/data/captchaai/prod\""
GOOD = "0123456789abcdef0123456789abcdef"
CRD = (
    Path(__file__).resolve().parent.parent / "manifests/crds/captchakeys.io_captchakeybindings.yaml"
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GOOD, GOOD),
        (GOOD + "\n", GOOD),
        (GOOD + "\r\n", GOOD),
        ("Some-Other_Key.123~!", "Some-Other_Key.123~!"),
    ],
)
def test_accepted_keys(raw: str, expected: str) -> None:
    assert check_key(raw, WHERE) == expected


@pytest.mark.parametrize(
    ("raw", "rules", "said"),
    [
        ("", KeyRules(), "it is empty"),
        ("\n", KeyRules(), "it is empty"),
        (GOOD + "\n\n", KeyRules(), "a newline at position 33"),
        (GOOD + "\n" + GOOD, KeyRules(), "a newline at position 33"),
        ("abc\x00def", KeyRules(), "a NUL byte at position 4"),
        ("abc\tdef", KeyRules(), "a tab"),
        ("abc\x1bdef", KeyRules(), "a control character (U+001B)"),
        (" " + GOOD, KeyRules(), "a space at position 1"),
        (GOOD + " ", KeyRules(), "a space at position 33"),
        ("abc\u00a0def", KeyRules(), "an invisible character (U+00A0)"),
        ("abc\u200bdef", KeyRules(), "an invisible character (U+200B)"),
        ("k" * 257, KeyRules(), "257 characters long, more than the maximum of 256"),
        ("k" * 1024 * 1024, KeyRules(), "1048576 characters long"),
        ("k" * 33, KeyRules(max_length=32), "more than the maximum of 32"),
        (GOOD.upper(), KeyRules(format="captchaai"), "not in the 'captchaai' format"),
        (GOOD[:-1], KeyRules(format="captchaai"), "it has 31 characters"),
        ("g" * 32, KeyRules(format="captchaai"), "32 lowercase hexadecimal"),
    ],
)
def test_refused_keys_say_what_and_where_never_the_key(
    raw: str, rules: KeyRules, said: str
) -> None:
    with pytest.raises(KeyRejectedError) as caught:
        check_key(raw, WHERE, rules)
    message = str(caught.value)
    assert said in message
    assert message.startswith(WHERE + " is refused")
    assert "last good key stays in place" in message
    stripped = raw.strip()
    if len(stripped) >= 3:
        assert stripped not in message
    assert caught.value.reason == "KeyRejected"


def test_a_key_that_is_not_text_is_refused() -> None:
    with pytest.raises(KeyRejectedError, match="is not a string"):
        check_key(12345, WHERE)


def test_the_default_accepts_a_captchaai_key_and_any_format_passes_other_text() -> None:
    assert check_key(GOOD, WHERE, KeyRules(format="captchaai")) == GOOD
    assert check_key("x" * 256, WHERE) == "x" * 256


@pytest.mark.parametrize("max_length", [0, -1, keyrules.HARD_MAX_LENGTH + 1])
def test_rules_outside_the_hard_cap_are_refused(max_length: int) -> None:
    with pytest.raises(ValueError, match="maximum length must be 1-65536"):
        KeyRules(max_length=max_length)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of any, captchaai"):
        KeyRules(format="base64")  # type: ignore[arg-type]


def body(**key: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"environment": "prod", "vault": {"auth": {"role": "r"}}}
    if key:
        spec["key"] = key
    return {"metadata": {"name": "b"}, "spec": spec}


def test_binding_key_rules_default_and_explicit() -> None:
    assert BindingSpec.from_body(body()).key_rules == KeyRules()
    parsed = BindingSpec.from_body(body(maxLength=32, format="captchaai"))
    assert parsed.key_rules == KeyRules(max_length=32, format="captchaai")


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ({"maxLength": 0}, "1 to 65536"),
        ({"maxLength": 65537}, "1 to 65536"),
        ({"maxLength": "32"}, "must be an integer"),
        ({"maxLength": True}, "must be an integer"),
        ({"format": "hex"}, "any, captchaai"),
    ],
)
def test_bad_binding_key_rules_name_the_field(key: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidBindingError, match="CaptchaKeyBinding 'b'") as caught:
        BindingSpec.from_body(body(**key))
    message = str(caught.value)
    assert f"spec.key.{next(iter(key))}" in message  # the field, and what it accepts:
    assert said in message


def test_the_crd_agrees_with_the_rules_module() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    key = spec["properties"]["key"]["properties"]
    assert key["maxLength"]["default"] == keyrules.DEFAULT_MAX_LENGTH
    assert key["maxLength"]["maximum"] == keyrules.HARD_MAX_LENGTH
    assert key["maxLength"]["minimum"] == 1
    assert key["format"]["enum"] == list(keyrules.FORMATS)
    assert key["format"]["default"] == "any"
