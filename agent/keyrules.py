"""What a CaptchaAI key may look like before anyone writes it anywhere: the one set of rules.

Why refuse at all: whatever the agent writes replaces a working key in every consumer
at once. A key with a stray newline, a NUL, a space or a pasted paragraph "works" as a
file but fails every CaptchaAI request as a wrong key, which looks exactly like a
revoked one; a megabyte of text fills the pod's 1 MiB key volume and gets it evicted.
So a key is refused, and the last good key stays, when it is

- empty,
- contains whitespace or any non-printable character (control, format, separators),
- longer than the binding's ``spec.key.maxLength`` (default :data:`DEFAULT_MAX_LENGTH`,
  never above :data:`HARD_MAX_LENGTH`, which leaves room on the 1 MiB volume for the
  key, its temporary copy during an atomic replace, and the metadata file),
- not in the binding's ``spec.key.format`` (``captchaai``: 32 lowercase hex characters).

One trailing newline (``echo``, ``pass show``, an editor) is not part of a key and is
dropped first; a second line is refused. The agent (reading Vault) and
``captchakey rotate --new-key-stdin`` (writing Vault) use this same module.

Messages name where the key came from (Vault path and field, or stdin) and what is
wrong with it (its length, the kind and position of a bad character), never the key.
Only the standard library is used: the rotate CLI and the binding parser import it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "FORMATS",
    "HARD_MAX_LENGTH",
    "KeyFormat",
    "KeyRejectedError",
    "KeyRules",
    "check_key",
]

KeyFormat = Literal["any", "captchaai"]
FORMATS: tuple[KeyFormat, ...] = ("any", "captchaai")

# CaptchaAI keys are 32 characters; other providers' keys rarely exceed a hundred.
DEFAULT_MAX_LENGTH = 256
# 64 KiB: key + its temporary copy + metadata stay far inside the 1 MiB emptyDir.
HARD_MAX_LENGTH = 65536

_FORMAT_PATTERNS: dict[KeyFormat, re.Pattern[str]] = {
    "captchaai": re.compile(r"[0-9a-f]{32}"),
}
_FORMAT_HINTS: dict[KeyFormat, str] = {
    "captchaai": "32 lowercase hexadecimal characters (0-9, a-f), as CaptchaAI shows it",
}
_NAMED_CHARACTERS = {
    "\n": "a newline",
    "\r": "a carriage return",
    "\t": "a tab",
    " ": "a space",
    "\x00": "a NUL byte",
}


class KeyRejectedError(ValueError):
    """A key that must not replace the one in place; ``str()`` says what and where, not the key."""

    reason = "KeyRejected"


@dataclass(frozen=True)
class KeyRules:
    """The per-binding limits: ``spec.key.maxLength`` and ``spec.key.format``."""

    max_length: int = DEFAULT_MAX_LENGTH
    format: KeyFormat = "any"

    def __post_init__(self) -> None:
        if not 1 <= self.max_length <= HARD_MAX_LENGTH:
            raise ValueError(
                f"the key's maximum length must be 1-{HARD_MAX_LENGTH}, not {self.max_length}"
            )
        if self.format not in FORMATS:
            raise ValueError(f"key format {self.format!r} is not one of {', '.join(FORMATS)}")


def check_key(value: object, where: str, rules: KeyRules = KeyRules()) -> str:
    """Return the key (one trailing newline dropped) if it passes ``rules``, else raise.

    ``where`` names the source for the message, e.g. ``field 'api_key' of
    "secret/data/captchaai/prod"``.
    """
    if not isinstance(value, str):
        raise KeyRejectedError(f"{where} is not a string: store the key as text")
    key = _drop_one_trailing_newline(value)
    problem = _problem(key, rules)
    if problem:
        raise KeyRejectedError(
            f"{where} is refused: {problem}. Store the key alone (no quotes, spaces or "
            "extra lines); the last good key stays in place"
        )
    return key


def _drop_one_trailing_newline(value: str) -> str:
    if value.endswith("\r\n"):
        return value[:-2]
    return value[:-1] if value.endswith("\n") else value


def _problem(key: str, rules: KeyRules) -> str | None:
    if not key:
        return "it is empty"
    if len(key) > rules.max_length:
        return (
            f"it is {len(key)} characters long, more than the maximum of {rules.max_length} "
            "(raise spec.key.maxLength if the key really is that long)"
        )
    for position, character in enumerate(key, start=1):
        if character.isspace() or not character.isprintable():
            return f"it contains {_describe(character)} at position {position} of {len(key)}"
    pattern = _FORMAT_PATTERNS.get(rules.format)
    if pattern is not None and not pattern.fullmatch(key):
        return (
            f"it is not in the {rules.format!r} format ({_FORMAT_HINTS[rules.format]}; "
            f"it has {len(key)} characters)"
        )
    return None


def _describe(character: str) -> str:
    named = _NAMED_CHARACTERS.get(character)
    if named:
        return named
    category = unicodedata.category(character)
    kind = "a control character" if category == "Cc" else "an invisible character"
    return f"{kind} (U+{ord(character):04X})"
