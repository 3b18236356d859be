"""AWS as a key source (Secrets Manager) and as an identity for Vault (IAM auth).

Importing this package costs nothing: the AWS SDK is loaded only by
:mod:`agent.aws.secrets` and :mod:`agent.aws.vaultauth`, which the agent imports only
when a binding or a flag asks for AWS. Vault users never load botocore (a test
proves it on the real agent process), and need not install the ``aws`` extra.

Public surface here: :class:`AwsSecretRef` / :class:`WebIdentity` (what a binding
says), and the error family (:mod:`agent.aws.errors`).
"""

from agent.aws.errors import (
    AwsAccessDeniedError,
    AwsError,
    AwsLoginError,
    AwsSecretNotFoundError,
    AwsUnavailableError,
    AwsVersionUnavailableError,
)
from agent.aws.refs import (
    DEFAULT_AUDIENCE,
    DEFAULT_STAGE,
    DEFAULT_TOKEN_FILE,
    AwsSecretRef,
    WebIdentity,
)

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_STAGE",
    "DEFAULT_TOKEN_FILE",
    "AwsAccessDeniedError",
    "AwsError",
    "AwsLoginError",
    "AwsSecretNotFoundError",
    "AwsSecretRef",
    "AwsUnavailableError",
    "AwsVersionUnavailableError",
    "WebIdentity",
]
