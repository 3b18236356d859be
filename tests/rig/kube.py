"""A Kubernetes API server for tests: kmock made realistic enough for real kopf and OpenBao.

kmock's ``KubernetesEmulator`` gives discovery, an HTTP server and a request log, but its
object semantics are too loose for kopf (see ``/work/shared/notes/kopf-kmock-helm-facts.md``).
:class:`RealisticKubernetes` keeps kmock's routing, discovery, reactions and request log,
and replaces the object store's semantics with the API server's own rules:

- every object gets ``uid``, ``creationTimestamp``, ``generation`` and a cluster-wide,
  monotonic ``resourceVersion``; ``generation`` moves only when something other than
  metadata (and status, for resources with a status subresource) changes; a write that
  changes nothing changes no resourceVersion and sends no watch event;
- merge-patch and JSON-patch; a failed JSON-patch ``test`` is a 422, a stale
  ``resourceVersion`` a 409, as kopf expects;
- the ``status`` subresource: writes to ``.../status`` change only status, writes to the
  object itself leave status alone;
- watches resume from ``?resourceVersion=`` (every change is kept, so nothing is lost,
  nothing repeated), and honour label and field selectors on lists and watches, with the
  ADDED/DELETED transitions the real API sends when an object enters or leaves a selector;
- ``generateName``, finalizers and ``deletionTimestamp``, DELETED events;
- bearer-token authentication: the rig issues service-account JWTs (RS256), answers
  ``TokenReview`` for OpenBao's Kubernetes auth, and refuses unknown, expired, revoked or
  wrong-audience tokens with 401, as a real API server does;
- a request log whose cost per request stays constant however long a test runs: kmock
  matches each request against its reactions by scanning every request it has kept, so
  the rig hands kmock only the requests in flight and keeps its own flat log
  (:meth:`RealisticKubernetes.api_requests`) of everything served.

The rig serves from a thread of its own with its own event loop. A real API server is
another process: a test that calls OpenBao synchronously (hvac) while OpenBao asks the rig
to review a token must not deadlock because both share one event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import json
import re
import secrets
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import hvac
import jsonpatch
import jsonpointer
import kmock
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.rig.openbao import OpenBaoServer

__all__ = [
    "API_AUDIENCE",
    "BINDINGS",
    "ISSUER",
    "ApiRequest",
    "BaoAuth",
    "BaoRole",
    "RealisticKubernetes",
    "configure_jwt_auth",
    "configure_kubernetes_auth",
]

#: The audience and issuer of a default kube-apiserver: a token must carry this audience
#: to talk to the API, and a TokenReview without ``spec.audiences`` checks against it.
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = API_AUDIENCE

BINDINGS = kmock.resource("captchakeys.io", "v1alpha1", "captchakeybindings")
BINDING_INFO = kmock.ResourceInfo(
    kind="CaptchaKeyBinding",
    singular="captchakeybinding",
    namespaced=True,
    shortnames={"ckb"},
    verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    subresources={"status"},
)

# Fields the API server owns: clients cannot set or change them through writes.
_SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_NAMESPACES_URL = re.compile(r"/api/v1/namespaces(/[^/]+)?/?")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName
_VERBS = {
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.CREATE: "create",
    kmock.action.UPDATE: "patch",
    kmock.action.DELETE: "delete",
}

_Key = tuple[kmock.resource, str | None, str]  # how kmock's ObjectsArray files objects

# (key, operator, value): operator is "=", "!=", "exists" or "!exists".
_Requirement = tuple[str, str, str | None]


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status, reason, message, {})


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bearer(request: kmock.Request) -> str | None:
    header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
    return header.removeprefix("Bearer ") if header.startswith("Bearer ") else None


def _group_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _parse_selector(text: str, *, fields: bool) -> list[_Requirement]:
    """Equality-based selectors (``a=b,c!=d``, and ``k``/``!k`` for labels).

    Set-based label selectors (``in``, ``notin``) and field selectors other than
    metadata.name/namespace answer 400 rather than being silently ignored.
    """
    requirements: list[_Requirement] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        match = re.fullmatch(r"([^=!\s()]+)\s*(==|=|!=)\s*([^=!\s()]*)", term)
        if match:
            key, op, value = match.groups()
            requirements.append((key, "!=" if op == "!=" else "=", value))
        elif not fields and re.fullmatch(r"!?[^=!\s(),]+", term):
            requirements.append((term.lstrip("!"), "!exists" if term[0] == "!" else "exists", None))
        else:
            raise _error(400, "BadRequest", f"unsupported selector term: {term!r}")
        if fields and requirements[-1][0] not in ("metadata.name", "metadata.namespace"):
            raise _error(400, "BadRequest", f"field label not supported: {requirements[-1][0]}")
    return requirements


def _satisfies(values: Mapping[str, str], requirements: Iterable[_Requirement]) -> bool:
    for key, op, value in requirements:
        if (
            (op == "=" and values.get(key) != value)
            or (op == "!=" and values.get(key) == value)
            or (op == "exists" and key not in values)
            or (op == "!exists" and key in values)
        ):
            return False
    return True


@dataclass(frozen=True)
class ApiRequest:
    """One request as the API server saw it, with the bearer token that identified it."""

    method: str
    path: str
    query: dict[str, str]
    watch: bool
    token: str | None
    content_type: str = ""
    body: bytes = b""


@dataclass(frozen=True)
class _Change:
    """One write, as watchers see it: ``old`` is None for creations."""

    resource_version: int
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(frozen=True)
class _Scope:
    """What one list or watch request asks for: namespace, name and selectors."""

    namespace: str | None
    name: str | None
    labels: list[_Requirement]
    fields: list[_Requirement]

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        field_values = {
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
        }
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and _satisfies(meta.get("labels") or {}, self.labels)
            and _satisfies({k: v for k, v in field_values.items() if v is not None}, self.fields)
        )


@attrs.define(kw_only=True)
class RealisticKubernetes(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's semantics for objects, watches and tokens.

    Start it with :meth:`start` (or the ``kube`` fixture) and stop it with :meth:`stop`.
    Talk to it with :meth:`call` or any HTTP client: kmock's own client methods
    (``kube.get(...)``) belong to the rig's event loop, not to the test's.
    kmock reactions still take precedence over the emulation, e.g.
    ``kube[kmock.action.UPDATE, BINDINGS] << 503`` to inject a failure;
    ``kube.objects[BINDINGS, "dev", "name"].history`` shows every stored version.
    Every request served is in :meth:`api_requests`; kmock's own request views
    (``list(kube)``, ``kube[...]`` filters) see only the requests being served, so that
    reactions must not count requests (no ``[:1]``-style slices).
    """

    _rv: int = attrs.field(default=0, init=False)
    _changes: dict[kmock.resource, list[_Change]] = attrs.field(factory=dict, init=False)
    _tick: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _claims: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _revoked: set[str] = attrs.field(factory=set, init=False)
    _account_uids: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    _key: rsa.RSAPrivateKey = attrs.field(
        factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        init=False,
    )
    _log: list[ApiRequest] = attrs.field(factory=list, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _stopping: asyncio.Event | None = attrs.field(default=None, init=False)
    #: Exceptions other than deliberate API errors raised while serving: rig bugs.
    crashes: list[BaseException] = attrs.field(factory=list, init=False)
    #: A cluster-admin-like identity for the test itself (the rig enforces no RBAC).
    admin_token: str = attrs.field(default="", init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock 0.8 reads its bundle with a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        self.resources[BINDINGS] = BINDING_INFO
        self.fallback[kmock.method.PUT] << self._serve_replace
        # Sub-priorities within the fallbacks: above the emulator's own CREATE (which would
        # answer 200, and store TokenReviews), below any reaction a test adds.
        (self**1).fallback[kmock.action.CREATE] << 201 << self._serve_create
        tokenreviews = "post /apis/authentication.k8s.io/v1/tokenreviews"
        (self**2).fallback[tokenreviews] << 201 << self._serve_token_review
        self.admin_token = self.issue_token("kube-system", "test-admin", audience=API_AUDIENCE)

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Serve on 127.0.0.1 at a free port from a thread of the rig's own."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete,
            args=(self._serve(ready),),
            name="kube-rig",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout) or not self.servers:
            raise RuntimeError(f"the Kubernetes rig did not start: {self.crashes!r}")

    def stop(self, timeout: float = 10.0) -> None:
        """End every watch stream (clients see EOF), then stop serving."""
        if self._loop is None or self._thread is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the Kubernetes rig did not stop in time")
        self._loop.close()
        self._loop = self._thread = self._stopping = None

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        try:
            async with self, kmock.Server(self):
                ready.set()
                await self._stopping.wait()
                self.crashes.extend(e for e in self.errors if not self._deliberate(e))
                self._closed = True
                self._notify()
        except Exception as e:  # reported by start() or by the fixture's teardown
            self.crashes.append(e)
        finally:
            ready.set()

    @staticmethod
    def _deliberate(error: BaseException) -> bool:
        return isinstance(error, kmock.KubernetesError) and error.status < 500

    @property
    def api_url(self) -> str:
        """The server URL for kubeconfigs, ``kopf.ConnectionInfo`` and OpenBao."""
        return str(self.url).rstrip("/")

    # -- identity --------------------------------------------------------------------

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audience: str | Sequence[str] = "vault",
        uid: str | None = None,
        expires_in: float = 3600,
        pod: str | None = None,
    ) -> str:
        """A service-account JWT as the kubelet projects it, signed RS256 by the rig.

        ``uid`` defaults to one stable uid per service account, as a real account has.
        Talking to the rig's API needs :data:`API_AUDIENCE` among the audiences.
        """
        now = int(time.time())
        account_uid = uid or self._account_uids.setdefault(
            (namespace, service_account), str(uuid.uuid4())
        )
        kubernetes: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": account_uid},
        }
        if pod is not None:
            kubernetes["pod"] = {"name": pod, "uid": str(uuid.uuid4())}
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": [audience] if isinstance(audience, str) else list(audience),
            "exp": int(now + expires_in),
            "iat": now,
            "nbf": now,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": kubernetes,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": service_account,
            "kubernetes.io/serviceaccount/service-account.uid": account_uid,
        }
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = self._key.sign(
            f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        token = f"{header}.{payload}.{_b64url(signature)}"
        self._claims[token] = claims
        return token

    def revoke_token(self, token: str) -> None:
        """Make a token invalid, as deleting its pod or service account does."""
        self._revoked.add(token)

    @property
    def public_key_pem(self) -> str:
        """The key that verifies the rig's tokens offline (OpenBao's JWT auth)."""
        public = self._key.public_key()
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def ca_pem(self) -> str:
        """A CA certificate for configs that require one; the rig itself serves plain HTTP."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-rig-ca")])
        now = datetime.datetime.now(tz=datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    def review_token(self, token: str, audiences: Sequence[str] | None = None) -> dict[str, Any]:
        """The ``status`` of a TokenReview: what the API server knows of this token.

        Without audiences, the API server's own audience applies, as in a real cluster:
        a token minted for "vault" is then refused.
        """
        claims = self._claims.get(token)
        wanted = list(audiences or [API_AUDIENCE])
        if claims is None:
            return {"authenticated": False, "error": "invalid bearer token"}
        if token in self._revoked:
            return {"authenticated": False, "error": "service account token has been invalidated"}
        if claims["exp"] <= time.time():
            return {"authenticated": False, "error": "service account token has expired"}
        matched = [audience for audience in wanted if audience in claims["aud"]]
        if not matched:
            return {
                "authenticated": False,
                "error": f"token audiences {claims['aud']} is invalid for the target audiences"
                f" {wanted}",
            }
        kubernetes = claims["kubernetes.io"]
        namespace = kubernetes["namespace"]
        user: dict[str, Any] = {
            "username": claims["sub"],
            "uid": kubernetes["serviceaccount"]["uid"],
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
        }
        if "pod" in kubernetes:
            user["extra"] = {
                "authentication.kubernetes.io/pod-name": [kubernetes["pod"]["name"]],
                "authentication.kubernetes.io/pod-uid": [kubernetes["pod"]["uid"]],
            }
        return {"authenticated": True, "user": user, "audiences": matched}

    def kubeconfig(
        self, path: Path, *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig for the rig (JSON, which is YAML); the admin token by default."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rig", "cluster": {"server": self.api_url}}],
            "users": [{"name": "rig", "user": {"token": token or self.admin_token}}],
            "contexts": [
                {
                    "name": "rig",
                    "context": {"cluster": "rig", "user": "rig", "namespace": namespace},
                }
            ],
            "current-context": "rig",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # -- the request log -------------------------------------------------------------

    def api_requests(self) -> list[ApiRequest]:
        """Every request any client sent so far, in arrival order."""
        return list(self._log)

    def requests_by(self, token: str) -> list[ApiRequest]:
        """What one identity asked of the API, e.g. to prove an agent only reads."""
        return [request for request in self.api_requests() if request.token == token]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call over HTTP from the caller's loop; raises on an error status."""
        headers = {
            "Authorization": f"Bearer {token or self.admin_token}",
            "Content-Type": content_type,
        }
        data = None if body is None else json.dumps(body)
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.api_url + path, data=data, headers=headers) as response,
        ):
            text = await response.text()
            if response.status >= 400:
                with contextlib.suppress(ValueError, AttributeError):
                    text = json.loads(text).get("message", text)
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=text
                )
            return json.loads(text)

    # -- serving ---------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        header = raw_request.headers.get("Authorization", "")
        self._log.append(
            ApiRequest(
                method=raw_request.method,
                path=raw_request.path,
                query=dict(raw_request.query),
                watch=raw_request.query.get("watch") in ("true", "1"),
                token=header.removeprefix("Bearer ") if header.startswith("Bearer ") else None,
                content_type=raw_request.headers.get("Content-Type", ""),
                body=await raw_request.read(),  # buffered: kmock reads the same bytes again.
            )
        )
        if not _NAMESPACES_URL.fullmatch(raw_request.path):
            return await super().__call__(raw_request)
        # kmock's URL parser fails on the namespaces resource itself (a 500). Answer as the
        # API answers an identity without rights on namespaces: kopf then falls back to the
        # namespaces it was given, as the least-privileged agent does in a real cluster.
        return await self._render_error(_error(403, "Forbidden", "the rig grants no namespaces"))

    async def _handle(self, request: kmock.Request) -> Any:
        try:
            if not self.review_token(_bearer(request) or "")["authenticated"]:
                raise _error(401, "Unauthorized", "Unauthorized")
            # Skip KubernetesEmulator._handle: it stores objects before any reaction runs,
            # with none of the rules above. The fallbacks below do the storing instead.
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        finally:
            self._served(request)

    def _served(self, request: kmock.Request) -> None:
        """Drop a finished request from kmock's list, which it scans for every new one.

        kmock matches a request to a reaction by looking for it among the requests it
        keeps; only requests in flight can still be matched, so only they are kept.
        """
        for index, kept in enumerate(self._requests):
            if kept is request:
                del self._requests[index]
                return

    def _info(self, request: kmock.Request, verb: str) -> kmock.ResourceInfo:
        resource = request.resource
        if resource is None or resource not in self.resources:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        info = self.resources[resource]
        if verb not in info.verbs:
            raise _error(405, "MethodNotAllowed", f"{verb} is not supported on {resource.plural}")
        if request.subresource not in (None, "status"):
            raise _error(404, "NotFound", f"the rig serves no {request.subresource} subresource")
        if request.subresource == "status" and "status" not in info.subresources:
            raise _error(404, "NotFound", f"{resource.plural} has no status subresource")
        if request.namespace is not None and not info.namespaced:
            raise _error(404, "NotFound", f"{resource.plural} is not namespaced")
        return info

    def _existing(self, request: kmock.Request, verb: str) -> tuple[_Key, dict[str, Any]]:
        self._info(request, verb)
        assert request.resource is not None  # _info() answered 404 otherwise
        key = (request.resource, request.namespace, request.name or "")
        if key not in self.objects or self.objects[key].deleted:
            raise _error(404, "NotFound", f"{request.name!r} not found")
        return key, self.objects[key].raw

    def _scope(self, request: kmock.Request) -> _Scope:
        return _Scope(
            namespace=request.namespace,
            name=request.name,
            labels=_parse_selector(request.params.get("labelSelector", ""), fields=False),
            fields=_parse_selector(request.params.get("fieldSelector", ""), fields=True),
        )

    def _record(self, request: kmock.Request, type_: str, obj: dict[str, Any], old: Any) -> None:
        assert request.resource is not None
        self._changes.setdefault(request.resource, []).append(
            _Change(self._rv, type_, copy.deepcopy(obj), copy.deepcopy(old))
        )
        self._notify()

    def _notify(self) -> None:
        """Wake every watch; they find what is new by their position in the change list."""
        self._tick.set()
        self._tick = asyncio.Event()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        try:
            return json.loads(request.body)
        except ValueError:
            raise _error(400, "BadRequest", "the request body is not JSON") from None

    async def _serve_fetch(self, request: kmock.Request) -> dict[str, Any]:
        return self._existing(request, "get")[1]

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        info = self._info(request, "list")
        scope = self._scope(request)
        items = [
            obj.raw
            for (resource, _, _), obj in sorted(
                self.objects.items(), key=lambda item: (item[0][1] or "", item[0][2])
            )
            if resource == request.resource and not obj.deleted and scope.matches(obj.raw)
        ]
        assert request.resource is not None
        return {
            "apiVersion": _group_version(request.resource),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        self._info(request, "watch")
        assert request.resource is not None  # _info() answered 404 otherwise
        scope = self._scope(request)
        changes = self._changes.setdefault(request.resource, [])
        since = request.params.get("resourceVersion", "")
        # The snapshot and the position in the change list are taken with no await between
        # them: every change lands either in the snapshot or after the position, never both.
        if since in ("", "0"):
            position = len(changes)
            initial = [
                {"type": "ADDED", "object": obj.raw}
                for (resource, _, _), obj in self.objects.items()
                if resource == request.resource and not obj.deleted and scope.matches(obj.raw)
            ]
        else:
            if not since.isdigit():
                raise _error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
            position = sum(1 for change in changes if change.resource_version <= int(since))
            initial = []
        yield b""  # send the headers now: a quiet watch must not look like a hung request
        for event in initial:
            yield event
        while True:
            while position < len(changes):
                change = changes[position]
                position += 1
                now = change.type != "DELETED" and scope.matches(change.obj)
                was = change.old is not None and scope.matches(change.old)
                if now or was:
                    kind = "MODIFIED" if now and was else "ADDED" if now else "DELETED"
                    yield {"type": kind, "object": change.obj}
            if self._closed:
                return
            await self._tick.wait()

    async def _serve_create(self, request: kmock.Request) -> dict[str, Any]:
        info = self._info(request, "create")
        assert request.resource is not None
        body = self._body(request)
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "the object must be a JSON object")
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _SYSTEM_METADATA}
        namespace = request.namespace if info.namespaced else None
        if info.namespaced and namespace is None:
            raise _error(404, "NotFound", "a namespaced object is created in a namespace URL")
        given = (body.get("metadata") or {}).get("namespace")
        if namespace is not None and given not in (None, namespace):
            raise _error(400, "BadRequest", "the object's namespace does not match the URL's")
        name = (body.get("metadata") or {}).get("name")
        if not name and meta.get("generateName"):
            suffix = "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
            name = f"{meta['generateName']}{suffix}"
        if not name or not _NAME.match(name):
            raise _error(422, "Invalid", f"metadata.name: invalid or missing: {name!r}")
        key = (request.resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            raise _error(409, "AlreadyExists", f"{request.resource.plural} {name!r} already exists")
        obj = {**body, "apiVersion": _group_version(request.resource), "kind": info.kind}
        if "status" in info.subresources:
            obj.pop("status", None)
        identity = {"name": name, "namespace": namespace} if namespace else {"name": name}
        obj["metadata"] = {
            **meta,
            **identity,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": _now(),
            "generation": 1,
            "resourceVersion": self._next_rv(),
        }
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self._record(request, "ADDED", obj, None)
        return obj

    async def _serve_update(self, request: kmock.Request) -> dict[str, Any]:
        key, old = self._existing(request, "patch")
        patch = self._body(request)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == "application/merge-patch+json":
            candidate = merge_patch(copy.deepcopy(old), patch)
        elif content_type == "application/json-patch+json":
            try:
                candidate = jsonpatch.apply_patch(copy.deepcopy(old), patch)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise _error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from None
        else:
            raise _error(415, "UnsupportedMediaType", f"the rig cannot apply {content_type!r}")
        return self._write(request, key, old, candidate)

    async def _serve_replace(self, request: kmock.Request) -> dict[str, Any]:
        key, old = self._existing(request, "update")
        return self._write(request, key, old, self._body(request))

    def _write(
        self, request: kmock.Request, key: _Key, old: dict[str, Any], candidate: Any
    ) -> dict[str, Any]:
        """Store a PATCH/PUT result by the API server's rules; return what it answers."""
        info = self.resources[key[0]]
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata", {}), dict):
            raise _error(400, "BadRequest", "the object must be a JSON object")
        old_meta = old["metadata"]
        if candidate.get("metadata", {}).get("resourceVersion") not in (
            None,
            old_meta["resourceVersion"],
        ):
            raise _error(409, "Conflict", "the object has been modified; please apply your changes")
        with_status = "status" in info.subresources
        if request.subresource == "status":
            new = {k: v for k, v in old.items() if k != "status"}
            if "status" in candidate:
                new["status"] = candidate["status"]
        else:
            new = {k: v for k, v in candidate.items() if not (with_status and k == "status")}
            if with_status and "status" in old:
                new["status"] = old["status"]
            meta = candidate.get("metadata", {})
            new["metadata"] = {k: v for k, v in meta.items() if k not in _SYSTEM_METADATA} | {
                k: old_meta[k] for k in _SYSTEM_METADATA if k in old_meta
            }
            new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if new == old:
            return old  # nothing changed: no new resourceVersion, no event

        ignored = {"metadata", "status"} if with_status else {"metadata"}
        if {k: v for k, v in new.items() if k not in ignored} != {
            k: v for k, v in old.items() if k not in ignored
        }:
            new["metadata"]["generation"] = old_meta["generation"] + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.objects[key].delete()  # the last finalizer is gone: the deletion completes
            self._record(request, "DELETED", new, old)
        else:
            self.objects[key].history.append(new)
            self._record(request, "MODIFIED", new, old)
        return new

    async def _serve_delete(self, request: kmock.Request) -> dict[str, Any]:
        key, old = self._existing(request, "delete")
        meta = old["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            new["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[key].history.append(new)
            self._record(request, "MODIFIED", new, old)
            return new
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key].delete()
        self._record(request, "DELETED", gone, old)
        return gone

    async def _serve_token_review(self, request: kmock.Request) -> dict[str, Any]:
        spec = (self._body(request) or {}).get("spec") or {}
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": self.review_token(spec.get("token", ""), spec.get("audiences")),
        }


# -- OpenBao wired to the rig ----------------------------------------------------------


@dataclass(frozen=True)
class BaoRole:
    """A Vault role for workloads: which service accounts in which namespaces get what.

    ``audience`` is what the role demands of the login token; None leaves it to the API
    server's default audience, as OpenBao does (and then "vault" tokens are refused).
    ``"*"`` in namespaces or service accounts means any.
    """

    name: str
    namespaces: Sequence[str]
    service_accounts: Sequence[str]
    policies: Sequence[str] = ()
    ttl: str = "1h"
    audience: str | None = "vault"


@dataclass(frozen=True)
class BaoAuth:
    """An auth method on the real OpenBao that trusts the rig's service-account tokens."""

    openbao: OpenBaoServer
    method: str  # "kubernetes" (TokenReview through the rig) or "jwt" (offline keys)
    mount: str

    def add_role(self, role: BaoRole) -> None:
        """Create or replace a role; it binds the same claims in both methods."""
        client = self.openbao.client()
        if self.method == "kubernetes":
            client.auth.kubernetes.create_role(
                name=role.name,
                bound_service_account_names=list(role.service_accounts),
                bound_service_account_namespaces=list(role.namespaces),
                policies=list(role.policies),
                ttl=role.ttl,
                audience=role.audience,
                mount_point=self.mount,
            )
            return
        bound_claims = {
            pointer: list(values)
            for pointer, values in (
                ("/kubernetes.io/namespace", role.namespaces),
                ("/kubernetes.io/serviceaccount/name", role.service_accounts),
            )
            if "*" not in values
        }
        client.auth.jwt.create_role(
            name=role.name,
            role_type="jwt",
            user_claim="sub",
            allowed_redirect_uris=[],
            bound_audiences=[role.audience or API_AUDIENCE],
            bound_claims=bound_claims or None,
            token_policies=list(role.policies),
            token_ttl=role.ttl,
            path=self.mount,
        )

    def login(self, role: str, jwt: str) -> hvac.Client:
        """Log in as a workload would; a refusal raises ``hvac.exceptions.Forbidden``.

        Blocking is fine even inside a test's event loop: the rig answers OpenBao's
        TokenReview from its own thread.
        """
        client = hvac.Client(url=self.openbao.addr)
        if self.method == "kubernetes":
            client.auth.kubernetes.login(role, jwt, mount_point=self.mount)
        else:
            client.auth.jwt.jwt_login(role, jwt, path=self.mount)
        return client

    def disable(self) -> None:
        self.openbao.client().sys.disable_auth_method(path=self.mount)


def configure_kubernetes_auth(
    openbao: OpenBaoServer,
    rig: RealisticKubernetes,
    *,
    mount: str = "kubernetes",
    roles: Iterable[BaoRole] = (),
) -> BaoAuth:
    """Enable OpenBao's Kubernetes auth at ``mount``, reviewing tokens through the rig.

    OpenBao POSTs every login's JWT to the rig's TokenReview endpoint, authenticated by
    a reviewer token the rig issued (``kube-system/openbao-token-reviewer``).
    """
    client = openbao.client()
    client.sys.enable_auth_method("kubernetes", path=mount)
    reviewer = rig.issue_token(
        "kube-system", "openbao-token-reviewer", audience=API_AUDIENCE, expires_in=86400
    )
    client.auth.kubernetes.configure(
        kubernetes_host=rig.api_url,
        kubernetes_ca_cert=rig.ca_pem,
        token_reviewer_jwt=reviewer,
        disable_local_ca_jwt=True,
        mount_point=mount,
    )
    auth = BaoAuth(openbao, "kubernetes", mount)
    for role in roles:
        auth.add_role(role)
    return auth


def configure_jwt_auth(
    openbao: OpenBaoServer,
    rig: RealisticKubernetes,
    *,
    mount: str = "jwt",
    roles: Iterable[BaoRole] = (),
) -> BaoAuth:
    """Enable OpenBao's JWT auth at ``mount``, verifying the rig's tokens offline.

    OpenBao checks the signature with the rig's public key and the issuer, and never
    calls the API server: the guide's path for workloads outside the cluster.
    """
    client = openbao.client()
    client.sys.enable_auth_method("jwt", path=mount)
    client.auth.jwt.configure(
        jwt_validation_pubkeys=[rig.public_key_pem], bound_issuer=ISSUER, path=mount
    )
    auth = BaoAuth(openbao, "jwt", mount)
    for role in roles:
        auth.add_role(role)
    return auth
