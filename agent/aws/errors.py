"""AWS failures as actionable errors, in the agent's one error family.

Each class also derives from the matching :mod:`agent.vault.errors` class, because
that family is what the refresh loop, the refresher and the operator's status keeper
already know how to treat: :class:`AwsUnavailableError` is transient (retried with
exponential backoff and full jitter, the last good key kept), a denied metadata read
makes the refresher fall back to data reads, and everything else is a configuration
problem reported with what to fix. Messages name the secret, the region, the IAM
action and the role, never a credential or the key.
"""

from __future__ import annotations

from typing import ClassVar

from agent.contract import agentstatus
from agent.vault.errors import (
    AuthenticationError,
    PermissionDeniedError,
    SecretNotFoundError,
    VaultError,
    VaultUnavailableError,
    VersionUnavailableError,
)

__all__ = [
    "AwsAccessDeniedError",
    "AwsError",
    "AwsLoginError",
    "AwsNoCredentialsError",
    "AwsSecretNotFoundError",
    "AwsUnavailableError",
    "AwsVersionUnavailableError",
]

_DOC = "docs/aws.md"


class AwsError(VaultError):
    """Base of every AWS error: ``str()`` is the whole actionable message."""

    reason = agentstatus.AWS_ERROR

    def __init__(self, message: str):
        # Not the Vault classes' constructors (an address, a path): the message is whole.
        Exception.__init__(self, message)


class _Described(AwsError):
    """An AWS error said by its class's ``template``, filled in from the fields raised with."""

    template: ClassVar[str]

    def __init__(self, **fields: str):
        super().__init__(self.template.format(**fields))


class AwsUnavailableError(AwsError, VaultUnavailableError):
    """AWS cannot answer now (network, 5xx) or throttles us: retried with backoff."""

    reason = agentstatus.AWS_UNREACHABLE

    def __init__(self, service: str, region: str, detail: str, *, throttled: bool = False):
        if throttled:
            self.reason = agentstatus.AWS_THROTTLED
            what = f"AWS {service} in {region} is throttling requests ({detail})"
        else:
            what = f"AWS {service} in {region} is unavailable ({detail})"
        super().__init__(
            f"{what}; retrying with exponential backoff and jitter, the last good key stays "
            "in place. Check the network path to the regional endpoint (or its VPC endpoint).",
        )


class AwsLoginError(_Described, AuthenticationError):
    """STS refused to exchange the pod's token for the role (trust policy, audience)."""

    reason = agentstatus.LOGIN_REFUSED
    template = (
        "STS refused AssumeRoleWithWebIdentity for role {role_arn} ({detail}): check the "
        "role's trust policy (the cluster's OIDC provider as Federated principal, the "
        "audience in :aud, system:serviceaccount:NAMESPACE:NAME in :sub) and that the "
        f"token's audience matches spec.aws.audience (see {_DOC})."
    )


class AwsNoCredentialsError(_Described, AuthenticationError):
    """No AWS identity at all where the SDK looks (the operator without IRSA, say)."""

    reason = agentstatus.LOGIN_REFUSED
    template = (
        "no AWS credentials found for {who}: on EKS, annotate its service account with "
        "eks.amazonaws.com/role-arn (IRSA) or use EKS Pod Identity; elsewhere, an instance "
        f"role or AWS_* environment variables (see {_DOC})."
    )


class AwsAccessDeniedError(_Described, PermissionDeniedError):
    """The identity is known, but its IAM policy does not allow this action on the secret."""

    reason = agentstatus.AWS_FORBIDDEN
    template = (
        "AccessDeniedException from AWS: {identity} may not {action} on secret "
        '"{secret_id}". Allow it in the role\'s policy: {{"Effect": "Allow", '
        '"Action": "{action}", "Resource": "<the secret ARN>"}} (and kms:Decrypt on '
        f"its key if it uses a customer-managed KMS key; see {_DOC})."
    )

    def __init__(self, *, secret_id: str, action: str, identity: str):
        self.path = secret_id  # where the refresher looks for the denied path.
        super().__init__(secret_id=secret_id, action=action, identity=identity)


class AwsSecretNotFoundError(_Described, SecretNotFoundError):
    """No such secret in that region (a typo, the wrong region, or it was deleted)."""

    reason = agentstatus.SECRET_NOT_FOUND
    template = (
        'no secret "{secret_id}" in AWS Secrets Manager in {region} ({detail}): check '
        "spec.aws.secretId and spec.aws.region, or create it: aws secretsmanager "
        "create-secret --region {region} --name {secret_id} --secret-string ..."
    )


class AwsVersionUnavailableError(_Described, VersionUnavailableError):
    """The pinned version id or the followed staging label is not on any version."""

    reason = agentstatus.VERSION_UNAVAILABLE
    template = (
        'secret "{secret_id}" has no version {wanted}: pin an existing version id, or '
        "follow a staging label that is attached (AWSCURRENT). Consumers keep the key "
        "they hold."
    )
