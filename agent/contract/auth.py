"""The names of the ways an agent logs in to Vault: one vocabulary for every side.

A binding's ``spec.vault.auth.method`` (checked by the binding model and the CRD schema),
the operator's own ``vault.auth.method``, ``captchakey agent --auth-method`` and the
login code of :mod:`agent.vault` all use these words, so a method one side accepts is
one the others know. Narrower sets are subsets of the wider ones by construction.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "AUTH_METHODS",
    "WORKLOAD_AUTH_METHODS",
    "AuthMethod",
    "BuiltinAuth",
    "WorkloadAuth",
]

# A pod proves itself with its projected service-account token: all a binding may ask for.
WorkloadAuth = Literal["kubernetes", "jwt"]
# What agent.vault logs in with on its own; aws signs with the AWS SDK (agent.aws.vaultauth).
BuiltinAuth = Literal[WorkloadAuth, "approle", "token"]
# Every method a standalone agent (outside a binding) may be told to use.
AuthMethod = Literal[BuiltinAuth, "aws"]

WORKLOAD_AUTH_METHODS: Final[tuple[WorkloadAuth, ...]] = get_args(WorkloadAuth)
AUTH_METHODS: Final[tuple[AuthMethod, ...]] = get_args(AuthMethod)
