"""The one set of rules for a ``CaptchaKeyBinding``'s spec: the CRD schema and its checker.

Why one source: the API server checks a binding against the CRD's ``openAPIV3Schema``;
the validating webhook exists for clusters where that is not enough (a CRD installed
from an old release, edited, or missing), and the key agent must not act on a binding
that slipped past both. When the three checked different rules, the webhook admitted
bindings the schema refused. So :data:`SPEC_SCHEMA` below *is* the CRD's spec schema
(``scripts/render_manifests.py`` writes it into ``manifests/crds/``, and a drift test
compares them), and :func:`violations` interprets it here, with the semantics the API
server gives it:

- only the keywords Kubernetes structural schemas allow and this schema uses: ``type``,
  ``properties``, ``required``, ``enum``, ``minimum``/``maximum``,
  ``minLength``/``maxLength``, ``pattern`` and ``not`` (a pattern the value must not
  match); unknown fields are ignored, as the API server prunes them before anyone sees
  them;
- patterns are RE2 (Go) expressions anchored with ``^...$``; Go's ``$`` matches only at
  the very end, so it is read as ``\\Z`` here (Python's ``$`` would accept a trailing
  newline);
- ``integer`` is a JSON integer: ``true`` and ``1.5`` are not.

No CEL (``x-kubernetes-validations``): every rule is structural, so any JSON-schema
validator can check the CRD, and this module needs nothing beyond the standard library
(the key agent imports it in every pod).

Each refusal names the field, shows the value (shortened when long) and says what is
allowed: keys starting with ``_`` (``_allowed``) carry that sentence; they are stripped
from the CRD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from agent.contract.auth import WORKLOAD_AUTH_METHODS

__all__ = [
    "ALLOWED_FILE_MODES",
    "API_SERVER_AUDIENCES",
    "SPEC_SCHEMA",
    "InvalidBindingError",
    "Violation",
    "crd_schema",
    "violations",
]

Schema = dict[str, Any]


class InvalidBindingError(ValueError):
    """A binding that cannot be acted on; ``str()`` says what to fix in which field."""

    reason = "InvalidBinding"


# The agent runs as its own user and the pod's containers read the key through its group
# (or the pod's fsGroup): the owner and the group read, only the owner may write, the
# world gets nothing and nobody executes. (0400/0600 would lock the application out.)
ALLOWED_FILE_MODES = (0o440, 0o640)
# Audiences a Kubernetes API server accepts by default (its issuer and the legacy names):
# a projected token with one of them works against the API as the workload, so no
# binding may have one minted for Vault or STS.
API_SERVER_AUDIENCES = (
    "kubernetes",
    "api",
    "https://kubernetes.default.svc",
    "https://kubernetes.default.svc.cluster.local",
)

# One path segment: not empty, not "." or "..", no "%" (no percent-encoded traversal).
_SEGMENT = r"(\.?[A-Za-z0-9_-][A-Za-z0-9_.-]*|\.\.[A-Za-z0-9_.-]+)"
_TEMPLATE_SEGMENT = r"(\.?[A-Za-z0-9_{}-][A-Za-z0-9_.{}-]*|\.\.[A-Za-z0-9_.{}-]+)"
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)"
_MOUNT_ALLOWED = (
    "a relative mount path such as {example}: segments of [A-Za-z0-9_.-] separated by single "
    "'/', none of them '.' or '..', no leading or trailing '/', no '%'"
)

_AWS_SOURCE = {"required": ["aws", "source"], "properties": {"source": {"enum": ["aws"]}}}
_VAULT_SOURCE = {"required": ["vault"], "properties": {"source": {"enum": ["vault"]}}}

SPEC_SCHEMA: Schema = {
    "type": "object",
    "description": "Desired delivery of one environment's key.",
    "required": ["environment"],
    # Exactly one key source, the one spec.source names (vault by default). Structural
    # (anyOf/not of required), not CEL, so every validator evaluates it.
    "not": {"required": ["vault", "aws"]},
    "_not": "name one key source, spec.vault or spec.aws, not both",
    "anyOf": [_VAULT_SOURCE, _AWS_SOURCE],
    "_anyOf": (
        "spec.source aws needs spec.aws; spec.source vault (the default) needs spec.vault "
        "with spec.vault.auth.role"
    ),
    "properties": {
        "source": {
            "type": "string",
            "description": (
                "Where the key is stored: vault (spec.vault and spec.kv) or aws (AWS Secrets "
                "Manager, spec.aws). Exactly one of spec.vault and spec.aws is set."
            ),
            "enum": ["vault", "aws"],
            "default": "vault",
        },
        "aws": {
            "type": "object",
            "description": (
                "The key in AWS Secrets Manager, read by each consumer pod's agent with the "
                "pod's own identity: its projected service-account token exchanged through "
                "STS AssumeRoleWithWebIdentity for roleArn (IRSA), so CloudTrail attributes "
                "every read to the workload. The operator reads metadata only."
            ),
            "required": ["secretId", "region", "roleArn"],
            "not": {"required": ["versionStage", "versionId"]},
            "_not": (
                "versionStage and versionId are both set: use one (follow a staging label, or "
                "pin one version id), not both"
            ),
            "properties": {
                "secretId": {
                    "type": "string",
                    "description": (
                        "Secret name or full ARN; may contain {environment}. It must be named "
                        "under the operator's secret prefix and environment (captchaai/dev...)."
                    ),
                    "minLength": 1,
                    "maxLength": 2048,
                    "pattern": (
                        "^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"
                        "[A-Za-z0-9_/+=.@{}-]{1,512}|[A-Za-z0-9_/+=.@{}-]{1,512})$"
                    ),
                    "_allowed": "a secret name such as captchaai/{environment}, or its full ARN",
                },
                "region": {
                    "type": "string",
                    "description": "AWS region of the secret, e.g. eu-west-1.",
                    "pattern": "^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]{1,2}$",
                    "_allowed": "an AWS region such as eu-west-1",
                },
                "field": {
                    "type": "string",
                    "description": (
                        "JSON field of the secret string that holds the key. Unset: the whole "
                        "secret string is the key (a plain-string secret)."
                    ),
                    "minLength": 1,
                    "maxLength": 256,
                },
                "roleArn": {
                    "type": "string",
                    "description": (
                        "IAM role the consumer pods assume with their service-account token; "
                        "its trust policy names this cluster's OIDC provider and service "
                        "account."
                    ),
                    "pattern": "^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$",
                    "_allowed": (
                        "an IAM role ARN such as arn:aws:iam::123456789012:role/captchakey-dev"
                    ),
                },
                "audience": {
                    "type": "string",
                    "description": (
                        "Audience of the projected token presented to STS; never the "
                        "Kubernetes API server's own audience."
                    ),
                    "minLength": 1,
                    "maxLength": 256,
                    "not": {"enum": list(API_SERVER_AUDIENCES)},
                    "_allowed": (
                        "an audience STS accepts, e.g. sts.amazonaws.com, never the Kubernetes "
                        "API server's own (a token for it works against the API as the workload)"
                    ),
                    "default": "sts.amazonaws.com",
                },
                "versionStage": {
                    "type": "string",
                    "description": (
                        "Staging label to follow (default AWSCURRENT; AWSPENDING lets a canary "
                        "fleet use a key before it is promoted)."
                    ),
                    "pattern": "^[A-Za-z0-9_+=,.@-]{1,256}$",
                    "_allowed": "a staging label such as AWSCURRENT",
                },
                "versionId": {
                    "type": "string",
                    "description": "Pin one version id instead of following a label.",
                    "pattern": "^[A-Za-z0-9-]{32,64}$",
                    "_allowed": "a Secrets Manager version id (32-64 characters of [A-Za-z0-9-])",
                },
            },
        },
        "environment": {
            "type": "string",
            "description": (
                "Environment whose key is delivered (e.g. dev, staging, prod). Must be one of "
                "the operator's allowed environments (and, where the chart maps namespaces to "
                "environments, one this namespace may bind); it also fills the {environment} "
                "placeholder of kv.path."
            ),
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "_allowed": "a DNS label: lowercase letters, digits and '-', e.g. prod",
        },
        "vault": {
            "type": "object",
            "description": "Where Vault is and how the consumer pods' agents log in to it.",
            "required": ["auth"],
            "properties": {
                "address": {
                    "type": "string",
                    "description": (
                        "Vault or OpenBao address, e.g. https://vault.vault.svc:8200 (scheme, "
                        "host and optional port; no user, path or query). Empty means the "
                        "operator's configured address. Any other value must be on the "
                        "chart's vault.allowedAddresses list, and use https unless the chart "
                        "sets vault.allowInsecureHttp: every consumer pod sends its "
                        "service-account token there."
                    ),
                    "maxLength": 2048,
                    "pattern": f"^(https?://{_HOST}(:[0-9]{{1,5}})?/?)?$",
                    "_allowed": (
                        "empty, or scheme://host[:port] with scheme http or https, "
                        "e.g. https://vault.vault.svc:8200"
                    ),
                },
                "namespace": {
                    "type": "string",
                    "description": (
                        "Vault Enterprise / OpenBao namespace. Empty means none (the root "
                        "namespace)."
                    ),
                    "maxLength": 256,
                    "pattern": f"^({_SEGMENT}(/{_SEGMENT})*/?)?$",
                    "_allowed": _MOUNT_ALLOWED.format(example="team-a/solvers"),
                },
                "auth": {
                    "type": "object",
                    "description": (
                        "How each consumer pod's agent authenticates: with the pod's own "
                        "service-account token, so every read is audited with the "
                        "workload's identity."
                    ),
                    "required": ["role"],
                    "properties": {
                        "method": {
                            "type": "string",
                            "description": (
                                "Vault auth method used with the pod's projected "
                                "service-account token."
                            ),
                            "enum": list(WORKLOAD_AUTH_METHODS),
                            "default": "kubernetes",
                        },
                        "mount": {
                            "type": "string",
                            "description": (
                                "Path the auth method is mounted at. Empty means the "
                                "method's name (kubernetes or jwt)."
                            ),
                            "maxLength": 256,
                            "pattern": f"^({_SEGMENT}(/{_SEGMENT})*)?$",
                            "_allowed": _MOUNT_ALLOWED.format(example="kubernetes-prod"),
                        },
                        "role": {
                            "type": "string",
                            "description": (
                                "Vault role to log in with; it must be bound to the consumer "
                                "pods' service accounts and namespaces and grant read on "
                                "this environment's path."
                            ),
                            "minLength": 1,
                            "maxLength": 256,
                            "pattern": "^[A-Za-z0-9_.@-]+$",
                            "_allowed": "a Vault role name of [A-Za-z0-9_.@-]",
                        },
                        "audience": {
                            "type": "string",
                            "description": (
                                "Audience of the projected service-account token presented "
                                "to Vault. Must be one of the chart's vault.allowedAudiences "
                                "(default: vault); never the API server's own audience."
                            ),
                            "minLength": 1,
                            "maxLength": 256,
                            "pattern": "^[!-~]+$",
                            "not": {"enum": list(API_SERVER_AUDIENCES)},
                            "_allowed": (
                                "printable ASCII without spaces, e.g. vault, and never the "
                                "Kubernetes API server's own audience (a token for it works "
                                "against the API as the workload)"
                            ),
                            "default": "vault",
                        },
                    },
                },
            },
        },
        "kv": {
            "type": "object",
            "description": "Where the key is stored in a KV version 2 secrets engine.",
            "default": {},
            "properties": {
                "mount": {
                    "type": "string",
                    "description": "Mount path of the KV v2 secrets engine.",
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": f"^{_SEGMENT}(/{_SEGMENT})*$",
                    "_allowed": _MOUNT_ALLOWED.format(example="secret"),
                    "default": "secret",
                },
                "path": {
                    "type": "string",
                    "description": (
                        "Secret path inside the mount, without the data/ or metadata/ "
                        "prefix. May contain the literal placeholder {environment}, replaced "
                        "by spec.environment. No leading '/', no empty, '.' or '..' "
                        "segments, no '%'; it must resolve under the operator's configured "
                        "path prefix."
                    ),
                    "minLength": 1,
                    "maxLength": 512,
                    "pattern": f"^{_TEMPLATE_SEGMENT}(/{_TEMPLATE_SEGMENT})*$",
                    "_allowed": (
                        "a relative path such as captchaai/{environment}: segments of "
                        "[A-Za-z0-9_.{}-] separated by single '/', none of them '.' or '..', "
                        "no leading or trailing '/', no '%'"
                    ),
                    "default": "captchaai/{environment}",
                },
                "field": {
                    "type": "string",
                    "description": "Field of the secret's data that holds the API key.",
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": "^[A-Za-z0-9_.-]+$",
                    "_allowed": "a field name of [A-Za-z0-9_.-], e.g. api_key",
                    "default": "api_key",
                },
                "version": {
                    "type": "integer",
                    "description": (
                        "Pin a KV version. Unset (the usual case) follows the latest version, "
                        "so a rotation in Vault reaches the pods without any change here."
                    ),
                    "minimum": 1,
                    "maximum": 2147483647,
                },
            },
        },
        "key": {
            "type": "object",
            "description": (
                "What a key must look like before an agent writes it. A key read from Vault "
                "that breaks these rules (or is empty, or contains whitespace or control "
                "characters) is refused: the last good key stays in place and the agent "
                "reports KeyRejected. `captchakey rotate --new-key-stdin` applies the same "
                "rules before it stores a key."
            ),
            "default": {},
            "properties": {
                "maxLength": {
                    "type": "integer",
                    "description": (
                        "Longest key accepted, in characters. CaptchaAI keys are 32; the cap "
                        "of 65536 keeps the key, its temporary copy and its metadata well "
                        "inside the pod's 1 MiB key volume."
                    ),
                    "minimum": 1,
                    "maximum": 65536,
                    "default": 256,
                },
                "format": {
                    "type": "string",
                    "description": (
                        "any: no format check beyond the rules above. captchaai: exactly 32 "
                        "lowercase hexadecimal characters, so that a mistyped key is refused "
                        "before any consumer sees it."
                    ),
                    "enum": ["any", "captchaai"],
                    "default": "any",
                },
            },
        },
        "refreshIntervalSeconds": {
            "type": "integer",
            "description": (
                "Slow resync: how often each agent re-checks Vault when it hears of no change "
                "through the binding. Rotations published by the operator are picked up at "
                "once regardless. Unset: the operator's default, the chart's "
                "sidecar.refreshIntervalSeconds (3600)."
            ),
            "minimum": 10,
            "maximum": 86400,
        },
        "file": {
            "type": "object",
            "description": "The key file written on the pod's in-memory volume.",
            "default": {},
            "properties": {
                "name": {
                    "type": "string",
                    "description": (
                        "File name inside the mount path (default /var/run/captchaai). A "
                        "<name>.meta.json file beside it carries version and fetch time, "
                        "never the key, so the name itself must not end in .meta.json."
                    ),
                    "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$",
                    "not": {"pattern": "[.]meta[.]json$"},
                    "_allowed": (
                        "1-128 characters of [A-Za-z0-9._-], not starting with '.' or '-', "
                        "not ending in .meta.json (reserved for the metadata file)"
                    ),
                    "default": "api_key",
                },
                "mode": {
                    "type": "integer",
                    "description": (
                        "File permission bits as a decimal integer: 288 (0440, the default) or "
                        "416 (0640). Group-readable (the pod's containers read through the "
                        "agent's group), nothing for others, no execute bits."
                    ),
                    "enum": list(ALLOWED_FILE_MODES),
                    "_allowed": (
                        "one of 288 (0440, the default) or 416 (0640): group-readable (the "
                        "application reads the key through the agent's group), nothing for "
                        "others (a world-readable key is readable by any process on the "
                        "node), no execute bits"
                    ),
                    "default": 0o440,
                },
            },
        },
        "rotation": {
            "type": "object",
            "description": "Requests for an immediate rotation check.",
            "properties": {
                "requestedAt": {
                    "type": "string",
                    "description": (
                        "Set to any new value (a timestamp is customary) to make the operator "
                        "re-read the key's version in Vault at once and publish it; agents "
                        "then fetch it without waiting for their refresh interval."
                    ),
                    "maxLength": 256,
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Violation:
    """One refusal: which field, the value found, and what would be allowed there."""

    field: str
    value: object
    allowed: str

    def __str__(self) -> str:
        if self.value is _MISSING:
            return f"{self.field} is required: {self.allowed}"
        if self.value is _UNSHOWN:
            return f"{self.field}: {self.allowed}"
        shown, value = _shown(self.value), self.value
        if self.field.endswith(".mode") and type(value) is int and value >= 0:
            shown += f" (octal {value:#o})"
        return f"{self.field}: {shown} is not allowed: {self.allowed}"


_MISSING = object()
_UNSHOWN = object()  # a rule over several fields: the message names them.
_TYPES: dict[str, tuple[str, str]] = {
    "object": ("an object", "a mapping of fields"),
    "string": ("a string", "text in quotes"),
    "integer": ("an integer", "a whole number without quotes"),
}


def crd_schema(schema: Schema = SPEC_SCHEMA) -> Schema:
    """``schema`` as the CRD carries it: without the ``_``-prefixed keys of this module."""
    out: Schema = {}
    for key, value in schema.items():
        if key.startswith("_"):
            continue
        if key == "anyOf":
            out[key] = [crd_schema(branch) for branch in value]
        elif key == "properties":
            out[key] = {name: crd_schema(sub) for name, sub in value.items()}
        elif isinstance(value, dict):
            out[key] = crd_schema(value)
        else:
            out[key] = value
    return out


def violations(value: object, schema: Schema = SPEC_SCHEMA, where: str = "spec") -> list[Violation]:
    """Every rule of ``schema`` that ``value`` breaks, outermost first; ``[]`` when none."""
    kind = schema.get("type")
    if kind is not None and not _has_type(value, kind):
        article, hint = _TYPES[kind]
        return [Violation(where, value, f"must be {article} ({hint})")]
    if isinstance(value, Mapping):
        return _object_violations(value, schema, where)
    found = _value_violation(value, schema)
    return [Violation(where, value, found)] if found else []


def _object_violations(value: Mapping[str, Any], schema: Schema, where: str) -> list[Violation]:
    found = _junctor_violations(value, schema, where)
    properties: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if value.get(name) is None:
            found.append(Violation(f"{where}.{name}", _MISSING, _what(properties.get(name, {}))))
    for name, sub in properties.items():
        if value.get(name) is not None:
            found.extend(violations(value[name], sub, f"{where}.{name}"))
    return found


def _junctor_violations(value: object, schema: Schema, where: str) -> list[Violation]:
    """``not`` and ``anyOf`` over an object (value-only subschemas, as Kubernetes allows)."""
    found: list[Violation] = []
    if "not" in schema and not violations(value, schema["not"], where):
        found.append(Violation(where, _UNSHOWN, schema["_not"]))
    branches = schema.get("anyOf", ())
    if branches and all(violations(value, branch, where) for branch in branches):
        found.append(Violation(where, _UNSHOWN, schema["_anyOf"]))
    return found


def _value_violation(value: object, schema: Schema) -> str | None:
    """What is allowed instead, if ``value`` (a scalar of the right type) breaks a rule."""
    if any(breaks(value, schema) for breaks in _SCALAR_RULES):
        return _what(schema)
    return None


def _breaks_enum(value: object, schema: Schema) -> bool:
    return "enum" in schema and value not in schema["enum"]


def _breaks_range(value: object, schema: Schema) -> bool:
    return isinstance(value, int) and not _in_range(value, schema)


def _breaks_length(value: object, schema: Schema) -> bool:
    if not isinstance(value, str):
        return False
    return not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value))


def _breaks_pattern(value: object, schema: Schema) -> bool:
    if not isinstance(value, str) or "pattern" not in schema:
        return False
    return not _go_regex(schema["pattern"]).search(value)


def _breaks_not(value: object, schema: Schema) -> bool:
    """``not``: the value matches the subschema it must not match."""
    return "not" in schema and _value_violation(value, schema["not"]) is None


_SCALAR_RULES = (_breaks_enum, _breaks_range, _breaks_length, _breaks_pattern, _breaks_not)


def _what(schema: Schema) -> str:
    """The sentence that says what a field allows, built from its rules when none is given."""
    parts: list[str] = []
    if "_allowed" in schema:
        parts.append(schema["_allowed"])
    elif "enum" in schema:
        parts.append("one of " + ", ".join(str(v) for v in schema["enum"]))
    elif schema.get("type") == "integer":
        low, high = schema.get("minimum", "..."), schema.get("maximum", "...")
        parts.append(f"an integer from {low} to {high}")
    elif schema.get("type") == "object":
        parts.append("an object with the fields " + ", ".join(schema.get("properties", {})))
    else:
        parts.append(f"{_TYPES[schema.get('type', 'string')][0]}")
    if schema.get("type") == "string" and "maxLength" in schema:
        low = schema.get("minLength", 0)
        high = schema["maxLength"]
        parts.append(f"{low}-{high} characters" if low else f"at most {high} characters")
    return "; ".join(parts)


def _has_type(value: object, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _in_range(value: int, schema: Schema) -> bool:
    low: int = schema.get("minimum", value)
    high: int = schema.get("maximum", value)
    return low <= value <= high


@cache
def _go_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` with Go's meaning of a final ``$``: the end of the text, not of a line."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _shown(value: object) -> str:
    """The value for a message: short ones whole, long ones cut (with their length)."""
    text = repr(value)
    if len(text) <= 80:
        return text
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else f"{len(text)} long"
    return f"{text[:60]}... ({size})"
