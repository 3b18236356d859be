"""What a key *version* is, for every key source: one definition the agent and operator share.

Vault KV v2 numbers its versions (1, 2, 3...): a higher number is newer, so "holds at
least the wanted version" and "older than current" are comparisons. AWS Secrets Manager
names its versions with opaque ids (UUIDs) and moves staging labels (``AWSCURRENT``,
``AWSPREVIOUS``) between them: there is no order to compare, only identity. Both meet
in one type, :data:`Version`, and in the two questions rotation tracking asks, which
this module answers for either kind:

- :func:`is_current`: does a consumer's held version satisfy the wanted one?
- :func:`is_older`: is a version an older one (a candidate for "safe to revoke")?

An ``int`` is a Vault version and a ``str`` an AWS version id; a binding uses one
backend, so the two never meet in one comparison. If they do (a binding switched
backends), nothing is current and nothing is older: the safe answer.

The type and how a version is read from JSON (:func:`parse`) are the key file format's,
defined once in :mod:`captchakeys.keyfile`, where the readers find them too.
"""

from __future__ import annotations

from captchakeys.keyfile import Version
from captchakeys.keyfile import parse_version as parse

__all__ = ["Version", "is_current", "is_older", "parse"]


def is_current(held: Version | None, wanted: Version) -> bool:
    """Whether ``held`` satisfies ``wanted``: at least it (numbers), or the same id."""
    if isinstance(held, bool) or held is None:
        return False
    if isinstance(held, int) and isinstance(wanted, int):
        return held >= wanted
    return type(held) is type(wanted) and held == wanted


def is_older(version: Version, current: Version) -> bool:
    """Whether ``version`` is superseded by ``current``: lower (numbers) or another id."""
    if isinstance(version, int) and isinstance(current, int):
        return version < current
    return isinstance(version, str) and isinstance(current, str) and version != current
