"""The Kubernetes rig does what real kopf and real OpenBao need from an API server.

Aspects covered, each against a real kopf operator or a real OpenBao where one applies:

- kopf's create handler runs once; its merge-patches (labels, status) and its JSON-patch
  guarded by a ``test`` of resourceVersion (the finalizer) land; status and metadata
  writes leave ``generation`` alone; deleting runs the delete handler, waits for the
  finalizer, then the object is gone;
- a spec change bumps ``generation`` and kopf's update handler sees it; a write that
  changes nothing is a no-op (no new resourceVersion);
- a field-selector watch (``metadata.name=X``) sees only that object; the identity of
  a read-only, namespaced kopf logged in through a kubeconfig sent only reads;
- a label-selector watch on pods sees labelled pods, sees a pod appear when labelled and
  disappear (DELETED) when unlabelled or deleted;
- watches resume from ``?resourceVersion=`` with nothing lost or repeated; lists carry
  kind, apiVersion and resourceVersion; conflicts are 409/422, unknown tokens 401;
- the stored history keeps each version as it was written, whatever came after;
- OpenBao's Kubernetes auth logs in with a rig token through TokenReview, and refuses
  revoked, expired, foreign-namespace and wrong-audience tokens with 403;
- OpenBao's JWT auth logs in with a rig token verified offline by the rig's public key;
- the request log keeps every request (method, path, token, content type, body) while
  kmock holds only requests in flight, so a request costs the same late in a long test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import hvac.exceptions
import kmock
import kopf
import pytest

from tests.rig.kube import API_AUDIENCE, BINDINGS, BaoAuth, BaoRole, RealisticKubernetes

GROUP, VERSION, PLURAL = "captchakeys.io", "v1alpha1", "captchakeybindings"
DEV_BINDINGS = f"/apis/{GROUP}/{VERSION}/namespaces/dev/{PLURAL}"
PODS = "/api/v1/namespaces/dev/pods"
MERGE = "application/merge-patch+json"
TIMEOUT = 5.0


def binding(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CaptchaKeyBinding",
        "metadata": {"name": name},
        "spec": {"environment": "dev", **spec},
    }


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }


async def eventually(
    fetch: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], what: str
) -> Any:
    """Poll until ``check(await fetch())`` holds; fail with the last value seen."""
    value: Any = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TIMEOUT):
            while not check(value := await fetch()):  # noqa: ASYNC110 - a remote state
                await asyncio.sleep(0.01)
            return value
    pytest.fail(f"timed out waiting for {what}; last seen: {value!r}")


async def status_of(kube: RealisticKubernetes, path: str) -> int:
    try:
        await kube.call("GET", path)
    except aiohttp.ClientResponseError as e:
        return e.status
    return 200


class Seen:
    """The (name, type) of every event a kopf ``on.event`` handler got, awaitable."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None]] = []
        self._changed = asyncio.Condition()

    async def add(self, name: str, type: str | None) -> None:
        async with self._changed:
            self.events.append((name, type))
            self._changed.notify_all()

    async def wait_for(self, name: str, *types: str | None) -> None:
        """Until an event of one of these types came for ``name`` (None: kopf's listing)."""
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: any((name, t) in self.events for t in types))


def fast_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    return settings


@contextlib.asynccontextmanager
async def operator(
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    *,
    namespaces: list[str] | None = None,
) -> AsyncIterator[None]:
    """A real kopf operator in this event loop: started, ready, then stopped on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces or [],
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done() or not ready.is_set():
        task.cancel()
        pytest.fail(f"kopf did not start: {task.exception() if task.done() else 'timeout'}")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


def token_login(registry: kopf.OperatorRegistry, kube: RealisticKubernetes, token: str) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=kube.api_url, token=token)


async def test_kopf_create_patches_finalizer_and_delete(kube: RealisticKubernetes) -> None:
    token = kube.issue_token("captchakey-system", "operator", audience=API_AUDIENCE)
    registry = kopf.OperatorRegistry()
    token_login(registry, kube, token)
    creations: list[str] = []
    deleted = asyncio.Event()

    @kopf.on.create(GROUP, PLURAL, registry=registry)
    async def created(name: str, patch: kopf.Patch, **_: Any) -> None:
        creations.append(name)
        patch.metadata.labels["captchakeys.io/handled"] = "yes"
        patch.status["phase"] = "Seen"

    @kopf.on.delete(GROUP, PLURAL, registry=registry)
    async def removed(**_: Any) -> None:
        deleted.set()

    async with operator(registry, fast_settings()):
        first = await kube.call("POST", DEV_BINDINGS, binding("b1"))
        handled = await eventually(
            lambda: kube.call("GET", f"{DEV_BINDINGS}/b1"),
            lambda b: (
                b.get("status", {}).get("phase") == "Seen" and b["metadata"].get("finalizers")
            ),
            "the create handler's patches and kopf's finalizer",
        )
        meta = handled["metadata"]
        assert meta["labels"]["captchakeys.io/handled"] == "yes"
        assert meta["generation"] == 1, "labels, finalizers and status are not the spec"
        assert int(meta["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
        assert (meta["uid"], meta["creationTimestamp"]) == (
            first["metadata"]["uid"],
            first["metadata"]["creationTimestamp"],
        )

        deleting = await kube.call("DELETE", f"{DEV_BINDINGS}/b1")
        assert deleting["metadata"]["deletionTimestamp"], "a finalizer holds the object"
        async with asyncio.timeout(TIMEOUT):
            await deleted.wait()
        await eventually(lambda: status_of(kube, f"{DEV_BINDINGS}/b1"), lambda s: s == 404, "gone")

    assert creations == ["b1"], "one ADDED, never replayed"
    json_patches = [
        json.loads(r.body)
        for r in kube.api_requests()
        if r.content_type == "application/json-patch+json"
    ]
    assert json_patches, "kopf's finalizer goes through a JSON-patch"
    assert all(
        p[0]["op"] == "test" and p[0]["path"] == "/metadata/resourceVersion" for p in json_patches
    )


async def test_kopf_sees_spec_changes_by_generation(kube: RealisticKubernetes) -> None:
    registry = kopf.OperatorRegistry()
    token_login(registry, kube, kube.admin_token)

    @kopf.on.create(GROUP, PLURAL, registry=registry)
    @kopf.on.update(GROUP, PLURAL, field="spec", registry=registry)
    async def observe(meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
        patch.status["observedGeneration"] = meta["generation"]

    async with operator(registry, fast_settings()):
        await kube.call("POST", DEV_BINDINGS, binding("b1", path="captchaai/dev"))

        def observed(generation: int) -> Callable[[dict[str, Any]], bool]:
            return lambda b: b.get("status", {}).get("observedGeneration") == generation

        await eventually(lambda: kube.call("GET", f"{DEV_BINDINGS}/b1"), observed(1), "gen 1")

        changed = await kube.call(
            "PATCH", f"{DEV_BINDINGS}/b1", {"spec": {"path": "captchaai/prod"}}, content_type=MERGE
        )
        assert changed["metadata"]["generation"] == 2
        final = await eventually(
            lambda: kube.call("GET", f"{DEV_BINDINGS}/b1"), observed(2), "gen 2"
        )
        assert final["metadata"]["generation"] == 2, "kopf's status patch did not bump it"

        again = await kube.call(
            "PATCH", f"{DEV_BINDINGS}/b1", {"spec": {"path": "captchaai/prod"}}, content_type=MERGE
        )
        assert again["metadata"]["resourceVersion"] == final["metadata"]["resourceVersion"]


async def test_field_selector_watch_by_a_read_only_namespaced_kopf(
    kube: RealisticKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = kube.issue_token("dev", "app", audience=[API_AUDIENCE, "vault"], pod="app-1")
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "config", token=token)))
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_with_kubeconfig)
    settings = fast_settings()
    # Without this, kopf lists namespaces, gets 403 (as a least-privileged agent does in a
    # cluster) and retries it for ~54 s before falling back to the namespaces it was given.
    settings.scanning.disabled = True
    settings.watching.field_selectors[GROUP, PLURAL] = "metadata.name=mine"
    seen = Seen()

    @kopf.on.event(GROUP, PLURAL, registry=registry)
    async def event(name: str, type: str | None, **_: Any) -> None:
        await seen.add(name, type)

    await kube.call("POST", DEV_BINDINGS, binding("other"))
    async with operator(registry, settings, namespaces=["dev"]):
        await kube.call("POST", DEV_BINDINGS, binding("mine"))
        await seen.wait_for("mine", None, "ADDED")  # listed or watched: kopf's race, not ours
        await kube.call("PATCH", f"{DEV_BINDINGS}/other", {"spec": {"x": 1}}, content_type=MERGE)
        await kube.call("PATCH", f"{DEV_BINDINGS}/mine", {"spec": {"x": 1}}, content_type=MERGE)
        await seen.wait_for("mine", "MODIFIED")

    assert {name for name, _ in seen.events} == {"mine"}
    ours = [r for r in kube.requests_by(token) if f"/{PLURAL}" in r.path]
    assert ours, "kopf logged in with the kubeconfig's token"
    assert {r.method for r in ours} == {"GET"}, "a read-only identity sent only get/list/watch"
    assert all(r.query.get("fieldSelector") == "metadata.name=mine" for r in ours)
    assert any(r.watch and r.query.get("resourceVersion") for r in ours)


async def test_label_selector_watch_on_pods(kube: RealisticKubernetes) -> None:
    registry = kopf.OperatorRegistry()
    token_login(registry, kube, kube.admin_token)
    settings = fast_settings()
    settings.watching.label_selectors["v1", "pods"] = "captchakeys.io/inject=true"
    seen = Seen()

    @kopf.on.event("v1", "pods", registry=registry)
    async def event(name: str, type: str | None, **_: Any) -> None:
        await seen.add(name, type)

    inject = {"captchakeys.io/inject": "true"}
    await kube.call("POST", PODS, pod("before", inject))
    await kube.call("POST", PODS, pod("plain", {"app": "x"}))
    async with operator(registry, settings):
        await seen.wait_for("before", None)  # kopf's initial listing
        await kube.call("POST", PODS, pod("after", inject))
        await seen.wait_for("after", "ADDED")
        await kube.call(
            "PATCH", f"{PODS}/plain", {"metadata": {"labels": inject}}, content_type=MERGE
        )
        await seen.wait_for("plain", "ADDED")  # entered the selector
        await kube.call(
            "PATCH", f"{PODS}/before", {"metadata": {"labels": None}}, content_type=MERGE
        )
        await seen.wait_for("before", "DELETED")  # left the selector
        await kube.call("DELETE", f"{PODS}/after")
        await seen.wait_for("after", "DELETED")

    entered = seen.events.index(("plain", "ADDED"))
    assert "plain" not in {name for name, _ in seen.events[:entered]}, "unlabelled: unseen"


@contextlib.asynccontextmanager
async def watching(kube: RealisticKubernetes, query: str) -> AsyncIterator[asyncio.Queue[Any]]:
    """A raw watch on the dev bindings; its events arrive in the queue.

    The rig answers a watch's headers only after it took its snapshot and its position,
    so anything written after this is entered is an event of this watch.
    """
    events: asyncio.Queue[Any] = asyncio.Queue()
    headers = {"Authorization": f"Bearer {kube.admin_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{kube.api_url}{DEV_BINDINGS}?watch=true&{query}", headers=headers
        ) as response,
    ):

        async def pump() -> None:
            async for line in response.content:
                await events.put(json.loads(line))

        task = asyncio.create_task(pump())
        try:
            yield events
        finally:
            task.cancel()


async def take(events: asyncio.Queue[Any], count: int) -> list[tuple[str, str]]:
    async with asyncio.timeout(TIMEOUT):
        got = [await events.get() for _ in range(count)]
    return [(e["type"], e["object"]["metadata"]["name"]) for e in got]


async def test_watch_resumes_from_resource_version(kube: RealisticKubernetes) -> None:
    one = await kube.call("POST", DEV_BINDINGS, binding("one"))
    await kube.call("POST", DEV_BINDINGS, binding("two"))
    await kube.call("PATCH", f"{DEV_BINDINGS}/one", {"spec": {"x": 1}}, content_type=MERGE)
    listing = await kube.call("GET", DEV_BINDINGS)
    assert (listing["kind"], listing["apiVersion"]) == (
        "CaptchaKeyBindingList",
        f"{GROUP}/{VERSION}",
    )
    assert listing["metadata"]["resourceVersion"] == "3"

    async with watching(kube, f"resourceVersion={one['metadata']['resourceVersion']}") as events:
        assert await take(events, 2) == [("ADDED", "two"), ("MODIFIED", "one")]
        await kube.call("POST", DEV_BINDINGS, binding("three"))
        assert await take(events, 1) == [("ADDED", "three")], "nothing repeated"

    async with watching(kube, "fieldSelector=metadata.name%3Dthree") as events:
        await kube.call("PATCH", f"{DEV_BINDINGS}/one", {"spec": {"x": 2}}, content_type=MERGE)
        await kube.call("PATCH", f"{DEV_BINDINGS}/three", {"spec": {"x": 1}}, content_type=MERGE)
        await kube.call("DELETE", f"{DEV_BINDINGS}/three")
        assert await take(events, 3) == [
            ("ADDED", "three"),  # the snapshot: no resourceVersion given
            ("MODIFIED", "three"),
            ("DELETED", "three"),
        ]


async def test_history_keeps_each_version_as_it_was_written(kube: RealisticKubernetes) -> None:
    created = await kube.call("POST", DEV_BINDINGS, binding("b1"))
    status = {"status": {"phase": "Seen"}}
    seen = await kube.call("PATCH", f"{DEV_BINDINGS}/b1/status", status, content_type=MERGE)
    spec = {"spec": {"x": 1}}
    changed = await kube.call("PATCH", f"{DEV_BINDINGS}/b1", spec, content_type=MERGE)
    history = [v.raw["metadata"] for v in kube.objects[BINDINGS, "dev", "b1"].history if v]
    assert [(meta["resourceVersion"], meta["generation"]) for meta in history] == [
        (created["metadata"]["resourceVersion"], 1),
        (seen["metadata"]["resourceVersion"], 1),
        (changed["metadata"]["resourceVersion"], 2),
    ]


async def test_reactions_inject_faults_over_the_emulation(kube: RealisticKubernetes) -> None:
    """kmock's reactions still win over the rig's fallbacks: failures can be injected."""
    await kube.call("POST", DEV_BINDINGS, binding("b1"))
    kube[kmock.action.UPDATE, BINDINGS] << 503
    with pytest.raises(aiohttp.ClientResponseError) as error:
        await kube.call("PATCH", f"{DEV_BINDINGS}/b1", {"spec": {"x": 1}}, content_type=MERGE)
    assert error.value.status == 503
    assert "x" not in (await kube.call("GET", f"{DEV_BINDINGS}/b1"))["spec"]


async def test_request_log_keeps_everything_and_kmock_only_what_is_in_flight(
    kube: RealisticKubernetes,
) -> None:
    """The cost of a request does not grow with the test: kmock scans only live requests.

    kmock matches each request to a reaction by scanning the requests it keeps; the rig
    keeps every request in its own log instead, so reactions and the log both still work.
    """
    await kube.call("POST", DEV_BINDINGS, binding("b1"))
    for _ in range(50):
        await kube.call("GET", f"{DEV_BINDINGS}/b1")
    kube[kmock.action.FETCH, BINDINGS] << 503  # a reaction added late still matches.
    with pytest.raises(aiohttp.ClientResponseError) as error:
        await kube.call("GET", f"{DEV_BINDINGS}/b1")
    assert error.value.status == 503
    logged = kube.api_requests()
    assert [(r.method, r.path) for r in logged] == [("POST", DEV_BINDINGS)] + [
        ("GET", f"{DEV_BINDINGS}/b1")
    ] * 51
    assert json.loads(logged[0].body)["metadata"]["name"] == "b1"
    assert logged[0].content_type == "application/json"
    assert logged[0].token == kube.admin_token
    assert list(kube) == [], "no request is in flight: kmock holds none"


async def test_api_answers_are_the_real_ones(kube: RealisticKubernetes) -> None:
    headers = {"Authorization": f"Bearer {kube.admin_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(kube.api_url + DEV_BINDINGS, json=binding("b0"), headers=headers) as response,
    ):
        assert response.status == 201
    created = await kube.call(
        "POST", DEV_BINDINGS, {"metadata": {"generateName": "b-"}, "spec": {}}
    )
    path = f"{DEV_BINDINGS}/{created['metadata']['name']}"
    stale = {"metadata": {"resourceVersion": "0"}, "spec": {"x": 1}}
    failed_test = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}]
    cases = [
        (kube.call("POST", DEV_BINDINGS, binding(created["metadata"]["name"])), 409),
        (kube.call("PATCH", path, stale, content_type=MERGE), 409),
        (kube.call("PATCH", path, failed_test, content_type="application/json-patch+json"), 422),
        (kube.call("GET", f"{DEV_BINDINGS}?labelSelector=env+in+(a,b)"), 400),
        (kube.call("GET", "/api", token="not-a-token"), 401),
        (kube.call("GET", "/api", token=kube.issue_token("dev", "app")), 401),  # aud "vault"
    ]
    for call, expected in cases:
        with pytest.raises(aiohttp.ClientResponseError) as error:
            await call
        assert error.value.status == expected, error.value.message


WORKER = BaoRole("worker", namespaces=["dev"], service_accounts=["app"], policies=["default"])


def test_openbao_kubernetes_login_through_token_review(
    kube: RealisticKubernetes, kube_openbao: BaoAuth
) -> None:
    kube_openbao.add_role(WORKER)
    client = kube_openbao.login("worker", kube.issue_token("dev", "app", pod="app-1"))
    assert client.is_authenticated()
    reviews = [r for r in kube.api_requests() if r.path.endswith("/tokenreviews")]
    assert [r.method for r in reviews] == ["POST"]
    assert reviews[0].token not in (None, kube.admin_token), "OpenBao used its reviewer token"


@pytest.mark.parametrize(
    "case", ["revoked", "expired", "other namespace", "API audience", "unknown signer"]
)
def test_openbao_kubernetes_login_refuses_bad_tokens(
    kube: RealisticKubernetes, kube_openbao: BaoAuth, case: str
) -> None:
    kube_openbao.add_role(WORKER)
    if case == "unknown signer":
        token = RealisticKubernetes().issue_token("dev", "app")
    else:
        token = kube.issue_token(
            "prod" if case == "other namespace" else "dev",
            "app",
            audience=API_AUDIENCE if case == "API audience" else "vault",
            expires_in=-1 if case == "expired" else 3600,
        )
    if case == "revoked":
        kube.revoke_token(token)
    with pytest.raises(hvac.exceptions.Forbidden):
        kube_openbao.login("worker", token)


def test_openbao_jwt_login_verifies_offline(
    kube: RealisticKubernetes, kube_jwt_openbao: BaoAuth
) -> None:
    kube_jwt_openbao.add_role(WORKER)
    assert kube_jwt_openbao.login("worker", kube.issue_token("dev", "app")).is_authenticated()
    with pytest.raises(hvac.exceptions.InvalidRequest, match="bound claim"):
        kube_jwt_openbao.login("worker", kube.issue_token("prod", "app"))
    assert not any(r.path.endswith("/tokenreviews") for r in kube.api_requests())
