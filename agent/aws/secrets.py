"""Read one CaptchaAI key from AWS Secrets Manager with the pod's own identity (IRSA).

Identity: the pod's projected service-account token (audience ``sts.amazonaws.com``)
is exchanged through STS ``AssumeRoleWithWebIdentity`` for the binding's role, so
CloudTrail attributes every read to the workload (the session is named after the
pod), as Vault's audit log does. The token is re-read at every exchange (the kubelet
rotates it), and the temporary credentials are reused until shortly before they
expire: one STS call per pod per credential lifetime, not per read, so a rotation
across a fleet is a wave of ``GetSecretValue`` calls and no login storm. Without a
:class:`WebIdentity` (the operator), the SDK's default chain is used (IRSA env vars,
EKS Pod Identity, an instance role).

Versions: :meth:`SecretsManagerSource.metadata` asks ``DescribeSecret`` which version
id carries each staging label: no key crosses the wire, and it needs no
``GetSecretValue`` permission (the operator has none). :meth:`read_key` then reads
the data of the label (or pinned id) once it differs from what is on disk.

Throttling and outages: botocore's "standard" retry mode retries a throttled or
failed call a few times with exponential backoff and jitter; past that the call
raises :class:`AwsUnavailableError`, and the agent's loop backs off with full jitter
while the last good key stays in place.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from botocore import UNSIGNED

from agent.aws.errors import (
    AwsAccessDeniedError,
    AwsError,
    AwsLoginError,
    AwsNoCredentialsError,
    AwsSecretNotFoundError,
    AwsUnavailableError,
    AwsVersionUnavailableError,
)
from agent.aws.refs import AwsSecretRef, WebIdentity
from agent.vault.errors import EmptyKeyError, FieldMissingError

__all__ = ["AwsKeyVersion", "AwsSecretMetadata", "SecretsManagerSource", "session_name"]

_log = logging.getLogger(__name__)

# botocore logs whole response bodies at DEBUG, and a GetSecretValue answer holds the key:
# its records never pass, whatever level the agent runs at (--log-level debug included).
for _sdk_logger in ("botocore", "boto3"):
    logging.getLogger(_sdk_logger).setLevel(logging.WARNING)

# Renew temporary credentials this long before they expire.
_CREDENTIAL_MARGIN = 300.0
_THROTTLING = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_SERVER_FAULTS = frozenset(
    {"InternalServiceError", "InternalFailure", "ServiceUnavailable", "IDPCommunicationError"}
)
_LOGIN_REFUSED = frozenset(
    {"AccessDenied", "InvalidIdentityToken", "ExpiredTokenException", "IDPRejectedClaim"}
)
_ACTIONS = {
    "GetSecretValue": "secretsmanager:GetSecretValue",
    "DescribeSecret": "secretsmanager:DescribeSecret",
}


@dataclass(frozen=True)
class AwsKeyVersion:
    """A key and its Secrets Manager version id. The value never shows in ``repr``."""

    value: str = field(repr=False)
    version: str
    ref: AwsSecretRef


@dataclass(frozen=True)
class AwsSecretMetadata:
    """Which version id the followed label is on, and which versions still carry a label.

    A version without any staging label is deprecated: Secrets Manager deletes it in
    time, and no binding can follow it, so it is not "live".
    """

    current_version: str
    live_versions: frozenset[str]
    version_states: Mapping[str, str]
    stages: Mapping[str, tuple[str, ...]]


def session_name(prefix: str = "captchakey") -> str:
    """``captchakey-<pod name>`` (the hostname in a pod), as STS allows: CloudTrail shows it."""
    host = "".join(c if c.isalnum() or c in "=,.@-" else "-" for c in socket.gethostname())
    return f"{prefix}-{host}"[:64]


class SecretsManagerSource:
    """A Secrets Manager reader for one region and one identity (thread-safe)."""

    def __init__(
        self,
        region: str,
        identity: WebIdentity | None = None,
        *,
        endpoint_url: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        clock: Callable[[], float] = time.time,
    ):
        self.region = region
        self.identity = identity
        self.endpoint_url = endpoint_url
        self._config = botocore.config.Config(
            region_name=region,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._client: Any = None
        self._expires_at: float | None = None
        self.logins = 0  # AssumeRoleWithWebIdentity calls: cheap to check, useful to test.

    def __repr__(self) -> str:
        who = self.identity.role_arn if self.identity else "default credentials"
        return f"SecretsManagerSource(region={self.region!r}, identity={who!r})"

    @property
    def who(self) -> str:
        return f"role {self.identity.role_arn}" if self.identity else "the default AWS identity"

    def read_key(self, ref: AwsSecretRef) -> AwsKeyVersion:
        """The key at ``ref`` (its pinned version id, else its staging label)."""
        wanted = {"VersionId": ref.version} if ref.version else {"VersionStage": ref.stage}
        response = self._call("GetSecretValue", ref, SecretId=ref.secret_id, **wanted)
        value = _key_from(response, ref)
        return AwsKeyVersion(value=value, version=str(response["VersionId"]), ref=ref)

    def metadata(self, ref: AwsSecretRef) -> AwsSecretMetadata:
        """Labels and versions only (``DescribeSecret``): never the secret's value."""
        response = self._call("DescribeSecret", ref, SecretId=ref.secret_id)
        stages: dict[str, tuple[str, ...]] = {
            str(version): tuple(labels)
            for version, labels in (response.get("VersionIdsToStages") or {}).items()
        }
        current = next((v for v, labels in stages.items() if ref.stage in labels), None)
        if current is None:
            raise AwsVersionUnavailableError(
                secret_id=ref.secret_id, wanted=f"with label {ref.stage}"
            )
        live = frozenset(v for v, labels in stages.items() if labels)
        return AwsSecretMetadata(
            current_version=current,
            live_versions=live,
            version_states=dict.fromkeys(live, "live"),
            stages=stages,
        )

    def _call(self, operation: str, ref: AwsSecretRef, **params: Any) -> Mapping[str, Any]:
        with self._lock:
            client = self._secrets_client()
        method = getattr(client, _snake(operation))
        try:
            response: Mapping[str, Any] = method(**params)
        except botocore.exceptions.ClientError as exc:
            raise self._translate(exc, operation, ref) from None
        except botocore.exceptions.NoCredentialsError:
            raise AwsNoCredentialsError(who=self.who) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsUnavailableError("Secrets Manager", self.region, type(exc).__name__) from None
        return response

    def _translate(
        self, exc: botocore.exceptions.ClientError, operation: str, ref: AwsSecretRef
    ) -> AwsError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("AccessDeniedException", "AccessDenied") or status == 403:
            return AwsAccessDeniedError(
                secret_id=ref.secret_id, action=_ACTIONS[operation], identity=self.who
            )
        if code == "ResourceNotFoundException" and ref.version and operation == "GetSecretValue":
            return AwsVersionUnavailableError(
                secret_id=ref.secret_id, wanted=f"with id {ref.version}"
            )
        if code == "ResourceNotFoundException":
            return AwsSecretNotFoundError(secret_id=ref.secret_id, region=self.region, detail=code)
        if code in _THROTTLING or code in _SERVER_FAULTS:
            throttled = code in _THROTTLING
            return AwsUnavailableError("Secrets Manager", self.region, code, throttled=throttled)
        if code in ("ExpiredTokenException", "UnrecognizedClientException"):
            with self._lock:
                self._expires_at = 0.0  # the credentials are dead: exchange the token again.
            return AwsUnavailableError("Secrets Manager", self.region, code)
        if code == "DecryptionFailure":
            return AwsError(
                f'AWS could not decrypt secret "{ref.secret_id}" for {self.who} '
                "(DecryptionFailure): allow kms:Decrypt on the secret's KMS key for this role."
            )
        return AwsError(f'AWS {operation} on secret "{ref.secret_id}" failed: {code}')

    def _secrets_client(self) -> Any:
        """A client with valid credentials; exchanges the pod's token again only when due."""
        if self._client is not None and (
            self._expires_at is None or self._expires_at - self._clock() > _CREDENTIAL_MARGIN
        ):
            return self._client
        if self.identity is None:
            session = boto3.session.Session(region_name=self.region)
            self._expires_at = None
        else:
            credentials = self._assume_role(self.identity)
            session = boto3.session.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=self.region,
            )
            self._expires_at = credentials["Expiration"].timestamp()
        self._client = session.client(
            "secretsmanager", endpoint_url=self.endpoint_url, config=self._config
        )
        return self._client

    def _assume_role(self, identity: WebIdentity) -> Mapping[str, Any]:
        token = _read_token(identity)
        sts = boto3.session.Session().client(
            "sts",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=self._config.merge(botocore.config.Config(signature_version=UNSIGNED)),
        )
        try:
            response = sts.assume_role_with_web_identity(
                RoleArn=identity.role_arn,
                RoleSessionName=identity.session_name,
                WebIdentityToken=token,
            )
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _THROTTLING or code in _SERVER_FAULTS:
                raise AwsUnavailableError(
                    "STS", self.region, code, throttled=code in _THROTTLING
                ) from None
            raise AwsLoginError(role_arn=identity.role_arn, detail=code or "refused") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsUnavailableError("STS", self.region, type(exc).__name__) from None
        self.logins += 1
        _log.info(
            "assumed AWS role with the pod's token",
            extra={"role": identity.role_arn, "session": identity.session_name},
        )
        credentials: Mapping[str, Any] = response["Credentials"]
        return credentials


def _read_token(identity: WebIdentity) -> str:
    try:
        token = identity.token_file.read_text().strip()
    except OSError as exc:
        raise AwsLoginError(
            role_arn=identity.role_arn,
            detail=f"cannot read the service-account token at {identity.token_file}: "
            f"{exc.strerror}; in a pod, check that the binding has spec.source: aws so the "
            "webhook mounts it",
        ) from None
    if not token:
        raise AwsLoginError(
            role_arn=identity.role_arn, detail=f"the token at {identity.token_file} is empty"
        )
    return token


def _key_from(response: Mapping[str, Any], ref: AwsSecretRef) -> str:
    where = f"secretsmanager:{ref.secret_id}"
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise AwsError(
            f'secret "{ref.secret_id}" holds binary data, not a string: store the key as '
            "SecretString (plain, or JSON with spec.aws.field)"
        )
    if ref.field is None:
        value: object = text
    else:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise AwsError(
                f'secret "{ref.secret_id}" is a plain string, not a JSON object, so it has no '
                f"field {ref.field!r}: remove spec.aws.field to use the whole string"
            ) from None
        if ref.field not in document:
            raise FieldMissingError(where, ref.field, [str(k) for k in document])
        value = document[ref.field]
    if not isinstance(value, str) or not value.strip():
        raise EmptyKeyError(where, ref.field or "(string)")
    return value.strip()


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
