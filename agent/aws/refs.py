"""Where a key lives in AWS Secrets Manager, and which identity reads it: plain data, no SDK.

Versions: Secrets Manager names versions with opaque ids and moves *staging labels*
between them. A binding follows a label (``AWSCURRENT`` by default; ``AWSPENDING``
lets a canary fleet try a key before it is promoted) or pins one version id. Either
way the version the agent holds is the version id, a string (see :mod:`agent.versions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.contract import pod

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_STAGE",
    "DEFAULT_TOKEN_FILE",
    "REGION_PATTERN",
    "ROLE_ARN_PATTERN",
    "SECRET_ID_PATTERN",
    "STAGE_PATTERN",
    "VERSION_ID_PATTERN",
    "AwsSecretRef",
    "WebIdentity",
]

DEFAULT_STAGE = "AWSCURRENT"
# The projected, audience-bound token the webhook mounts into the agent for AWS only.
DEFAULT_AUDIENCE = pod.DEFAULT_AWS_AUDIENCE
DEFAULT_TOKEN_FILE = pod.AWS_TOKEN_FILE

# Patterns shared by the binding's validation and the CRD (keep them equal).
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# A name (letters, digits, /_+=.@-) or a full secret ARN.
SECRET_ID_PATTERN = re.compile(
    r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]{1,512}"
    r"|[\w/+=.@-]{1,512})$"
)
STAGE_PATTERN = re.compile(r"^[\w+=,.@-]{1,256}$")
VERSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{32,64}$")


@dataclass(frozen=True)
class AwsSecretRef:
    """A secret (name or ARN) in a region; the JSON field, or ``None`` for a plain string.

    ``stage`` is the staging label followed; ``version`` pins a version id instead.
    """

    secret_id: str
    region: str
    field: str | None = None
    stage: str = DEFAULT_STAGE
    version: str | None = None

    @property
    def metadata_path(self) -> str:
        """What the metadata read is, for messages (the refresher's fallback warning)."""
        return f"secretsmanager:DescribeSecret on {self.secret_id}"

    @property
    def source(self) -> str:
        """Where the key comes from, without the pin: the key file's ``source``."""
        return f"aws-secretsmanager:{self.region}:{self.secret_id}#{self.field or '(string)'}"

    def __str__(self) -> str:
        return f"{self.source}@{self.version or self.stage}"


@dataclass(frozen=True)
class WebIdentity:
    """The pod's own AWS identity: its projected token exchanged for a role (IRSA)."""

    role_arn: str
    token_file: Path = DEFAULT_TOKEN_FILE
    session_name: str = "captchakey"
