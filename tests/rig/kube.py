"""A Kubernetes API server for tests: kmock made realistic enough for real kopf and OpenBao.

kmock's ``KubernetesEmulator`` gives discovery, an HTTP server, reactions and a request
log, but its object semantics are too loose for kopf. :class:`RealisticKubernetes` keeps
kmock's routing, discovery and reactions, and serves everything else by the API server's
own rules, one module of the rig per job:

- :mod:`tests.rig.store`: objects, resourceVersions, generations, patches, the status
  subresource, finalizers;
- :mod:`tests.rig.watch` and :mod:`tests.rig.selectors`: watches that resume from a
  resourceVersion, label and field selectors with their ADDED/DELETED transitions;
- :mod:`tests.rig.identity`: bearer tokens (ServiceAccount JWTs the rig issues) and
  TokenReview; unknown, expired, revoked or wrong-audience tokens get 401;
- :mod:`tests.rig.request_log`: every request served, at a cost per request that stays
  constant however long a test runs;
- :mod:`tests.rig.openbao_auth`: OpenBao's Kubernetes and JWT auth trusting the rig
  (re-exported here, with the names tests import from this module).

The rig serves from a thread of its own with its own event loop. A real API server is
another process: a test that calls OpenBao synchronously (hvac) while OpenBao asks the rig
to review a token must not deadlock because both share one event loop.
"""

from __future__ import annotations

import asyncio
import re
import threading
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import kmock

from tests.rig.client import ApiCalls
from tests.rig.errors import api_error, json_body
from tests.rig.identity import API_AUDIENCE, ISSUER, TokenAuthority
from tests.rig.openbao_auth import BaoAuth, BaoRole, configure_jwt_auth, configure_kubernetes_auth
from tests.rig.request_log import ApiRequest, RequestLog, bearer_token
from tests.rig.selectors import Scope
from tests.rig.store import ObjectStore, merge_patch
from tests.rig.watch import starts_fresh

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
    "merge_patch",
]

BINDINGS = kmock.resource("captchakeys.io", "v1alpha1", "captchakeybindings")
BINDING_INFO = kmock.ResourceInfo(
    kind="CaptchaKeyBinding",
    singular="captchakeybinding",
    namespaced=True,
    shortnames={"ckb"},
    verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    subresources={"status"},
)

_NAMESPACES_URL = re.compile(r"/api/v1/namespaces(/[^/]+)?/?")


def _bearer(request: kmock.Request) -> str | None:
    header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
    return bearer_token(header)


@attrs.define(kw_only=True)
class RealisticKubernetes(ApiCalls, kmock.KubernetesEmulator):
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

    _store: ObjectStore = attrs.field(init=False)
    _tokens: TokenAuthority = attrs.field(factory=TokenAuthority, init=False)
    _log: RequestLog = attrs.field(factory=RequestLog, init=False)
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
        self._store = ObjectStore(self.objects, self.resources)
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
                self._store.changes.close()
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
        return self._tokens.issue(
            namespace, service_account, audience=audience, uid=uid, expires_in=expires_in, pod=pod
        )

    def revoke_token(self, token: str) -> None:
        """Make a token invalid, as deleting its pod or service account does."""
        self._tokens.revoke(token)

    def review_token(self, token: str, audiences: Sequence[str] | None = None) -> dict[str, Any]:
        """The ``status`` of a TokenReview: what the API server knows of this token.

        Without audiences, the API server's own audience applies, as in a real cluster:
        a token minted for "vault" is then refused.
        """
        return self._tokens.review(token, audiences)

    @property
    def public_key_pem(self) -> str:
        """The key that verifies the rig's tokens offline (OpenBao's JWT auth)."""
        return self._tokens.public_key_pem

    @property
    def ca_pem(self) -> str:
        """A CA certificate for configs that require one; the rig itself serves plain HTTP."""
        return self._tokens.ca_pem

    # -- the request log -------------------------------------------------------------

    def api_requests(self) -> list[ApiRequest]:
        """Every request any client sent so far, in arrival order."""
        return self._log.all()

    def requests_by(self, token: str) -> list[ApiRequest]:
        """What one identity asked of the API, e.g. to prove an agent only reads."""
        return self._log.by(token)

    # -- serving ---------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        await self._log.record(raw_request)
        if not _NAMESPACES_URL.fullmatch(raw_request.path):
            return await super().__call__(raw_request)
        # kmock's URL parser fails on the namespaces resource itself (a 500). Answer as the
        # API answers an identity without rights on namespaces: kopf then falls back to the
        # namespaces it was given, as the least-privileged agent does in a real cluster.
        return await self._render_error(api_error(403, "Forbidden", "the rig grants no namespaces"))

    async def _handle(self, request: kmock.Request) -> Any:
        try:
            if not self.review_token(_bearer(request) or "")["authenticated"]:
                raise api_error(401, "Unauthorized", "Unauthorized")
            # Skip KubernetesEmulator._handle: it stores objects before any reaction runs,
            # with none of the API server's rules. The fallbacks below do the storing instead.
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

    # The fallbacks kmock routes each verb to (by these names), served by the store.

    async def _serve_fetch(self, request: kmock.Request) -> dict[str, Any]:
        return self._store.fetch(request)

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        return self._store.list(request)

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        self._store.info(request, "watch")
        assert request.resource is not None  # info() answered 404 otherwise
        scope = Scope.of(request)
        since = request.params.get("resourceVersion", "")
        # No await between the cursor and the snapshot: see ChangeLog.cursor.
        cursor = self._store.changes.cursor(request.resource, since)
        current = self._store.selected(request.resource, scope) if starts_fresh(since) else ()
        initial = [{"type": "ADDED", "object": obj} for _, obj in current]
        yield b""  # send the headers now: a quiet watch must not look like a hung request
        for event in initial:
            yield event
        async for event in self._store.changes.follow(request.resource, scope, cursor):
            yield event

    async def _serve_create(self, request: kmock.Request) -> dict[str, Any]:
        return self._store.create(request)

    async def _serve_update(self, request: kmock.Request) -> dict[str, Any]:
        return self._store.patch(request)

    async def _serve_replace(self, request: kmock.Request) -> dict[str, Any]:
        return self._store.replace(request)

    async def _serve_delete(self, request: kmock.Request) -> dict[str, Any]:
        return self._store.delete(request)

    async def _serve_token_review(self, request: kmock.Request) -> dict[str, Any]:
        return self._tokens.token_review(json_body(request))
