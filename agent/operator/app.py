"""The operator process: kopf handlers for admission and status, and their settings.

Everything is registered into a registry of its own (kopf's default registry is
global to the process) and configured explicitly at startup: the webhook server and
its TLS, peering (every replica serves admission; only the active one keeps status),
and the login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf

from agent.binding.model import GROUP, PLURAL, VERSION, InvalidBindingError
from agent.contract.pod import ANNOTATION_BINDING, INJECT_LABEL
from agent.kube import KubeApi
from agent.operator import tls
from agent.operator.admission import InjectionError, parse_pod
from agent.operator.config import OperatorConfig
from agent.operator.injection import plan_injection
from agent.operator.observability import Metrics, serve_metrics, serve_probes
from agent.operator.rollout import Consumer, consumer_of
from agent.operator.status import StatusKeeper
from agent.operator.validation import WebhookServer, validate_binding

__all__ = ["API_REQUEST_SECONDS", "MIN_KUBERNETES", "build_registry", "run_operator"]

# Native sidecars (init containers with restartPolicy: Always) arrived in 1.29.
MIN_KUBERNETES = (1, 29)
# Each of the operator's own API requests (kopf's have their own settings): an API server
# that accepts a request and never answers it must not stall the status keeper or the
# certificate renewer for good.
API_REQUEST_SECONDS = 30.0
BindingIndex = kopf.Index[tuple[str, str], dict[str, Any]]

_log = logging.getLogger(__name__)


def build_registry(
    config: OperatorConfig,
    kube: KubeApi,
    namespace: str,
    *,
    connection: kopf.ConnectionInfo | None = None,
    webhook_host: str = "0.0.0.0",  # noqa: S104 - the API server reaches the pod IP.
    extra_names: tuple[str, ...] = (),
    metrics: Metrics | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    metrics = metrics or Metrics()
    keeper = StatusKeeper(config, kube, metrics)
    workdir = Path(tempfile.mkdtemp(prefix="captchakeys-tls-"))
    mutator = _PodMutator(config, kube)
    background: set[asyncio.Task[None]] = set()  # referenced here, so never collected.

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's own log lines become Events from WARNING up; the binding's Normal Events
        # (VersionChanged, RolloutComplete, ...) are posted explicitly with kopf.event.
        settings.posting.level = logging.WARNING
        settings.scanning.disabled = True
        settings.admission.managed = None  # the chart owns the webhook configurations.
        certfile, keyfile = await _serving_files(
            config, kube, namespace, extra_names, workdir, background
        )
        settings.admission.server = WebhookServer(
            addr=webhook_host, port=config.webhook_port, certfile=certfile, pkeyfile=keyfile
        )
        await mutator.learn_cluster_version()

    @kopf.on.cleanup(registry=registry)
    async def stop_background(**_: Any) -> None:
        # kopf gives tasks it does not stop itself 5 s to end before it cancels them: a
        # certificate renewer or a late status loop left running would hold SIGTERM back.
        keeper.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        background.clear()
        shutil.rmtree(workdir, ignore_errors=True)  # the serving key, on the pod's tmpfs.

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if connection is not None:
            return connection
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index(GROUP, VERSION, PLURAL, id="bindings", registry=registry)
    def bindings(name: str, namespace: str | None, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): {"spec": dict(spec)}}

    @kopf.on.mutate("pods", id="mutate-pods", operations={"CREATE"}, registry=registry)
    async def inject(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        known: BindingIndex = kwargs["bindings"]
        with (
            metrics.admission_seconds.labels("mutate-pods").time(),
            _counted(metrics, "mutate-pods"),
        ):
            planned = await mutator.plan(body, known)
        if planned is not None:
            patch.spec.update(planned)

    @kopf.on.validate(GROUP, VERSION, PLURAL, id="validate-captchakeybindings", registry=registry)
    def validate(body: kopf.Body, **_: Any) -> None:
        webhook = "validate-captchakeybindings"
        with metrics.admission_seconds.labels(webhook).time(), _counted(metrics, webhook):
            _admit_binding(body, config)

    @kopf.index("pods", id="consumers", labels={INJECT_LABEL: "true"}, registry=registry)
    def consumers(body: kopf.Body, **_: Any) -> dict[tuple[str, str], Consumer] | None:
        found = consumer_of(body)
        return dict([found]) if found else None

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=5)
    async def keep_status(
        name: str,
        namespace: str | None,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        **kwargs: Any,
    ) -> None:
        # kopf passes every index as a keyword named after the index handler's id.
        consumers: kopf.Index[tuple[str, str], Consumer] = kwargs["consumers"]
        key = (namespace or "", name)
        await keeper.keep(key[0], name, body, stopped, lambda: list(consumers.get(key, [])))

    # Event handlers are async: kopf runs sync handlers in threads; the keeper's wake-up
    # events belong to the loop.
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_change(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
        keeper.wake_if_asked(namespace or "", name, body)

    @kopf.on.event("pods", labels={INJECT_LABEL: "true"}, registry=registry)
    async def on_pod(body: kopf.Body, **_: Any) -> None:
        # A consumer came, went or changed: recount now rather than at the next poll.
        binding = (body.metadata.annotations or {}).get(ANNOTATION_BINDING)
        if binding:
            keeper.wake(body.metadata.namespace or "", binding)

    return registry


def _admit_binding(body: kopf.Body, config: OperatorConfig) -> None:
    """The validating webhook: a binding outside policy is refused with what to fix."""
    try:
        validate_binding(body, config)
    except InvalidBindingError as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None


async def _serving_files(
    config: OperatorConfig,
    kube: KubeApi,
    namespace: str,
    extra_names: tuple[str, ...],
    workdir: Path,
    background: set[asyncio.Task[None]],
) -> tuple[Path, Path]:
    """The webhook's certificate and key files; self-signed ones are kept fresh meanwhile."""
    if config.tls.mode == "cert-manager":  # cert-manager renews; kopf reloads the files.
        return config.tls.cert_dir / "tls.crt", config.tls.cert_dir / "tls.key"
    names = [*tls.service_names(config.webhook_service, namespace), *extra_names]
    serving = tls.ServingCertificate(kube, namespace, config.tls.secret_name, names, workdir)
    configurations = (config.mutating_configuration, config.validating_configuration)
    await serving.refresh(*configurations)
    background.add(asyncio.create_task(serving.keep_fresh(*configurations)))
    return serving.certfile, serving.keyfile


class _PodMutator:
    """The pod-mutating webhook: the binding looked up, the injection planned or refused.

    Called on CREATE and again on reinvocation (``reinvocationPolicy: IfNeeded``), when a
    later webhook changed the pod: :func:`plan_injection` then adds only what is missing.
    The pod is read once (:func:`parse_pod`): its annotations are checked before the
    binding is looked up, and the plan is made from what was read.

    A binding the watch has not seen is read from the API within half the API server's
    webhook timeout: the rest is for the connection and the answer. An API server that
    does not answer in time gets a refusal that says so, rather than a webhook that
    times out with no word from us.
    """

    def __init__(self, config: OperatorConfig, kube: KubeApi):
        self.config = config
        self.kube = kube
        self.cluster = MIN_KUBERNETES  # until the API server said which it is.
        self.lookup_seconds = config.webhook_timeout_seconds / 2

    async def learn_cluster_version(self) -> None:
        self.cluster = await self.kube.server_version()
        if self.cluster < MIN_KUBERNETES:
            _log.error(
                "Kubernetes %s.%s has no native sidecars (needs >= %s.%s): opted-in pods will "
                "be refused until the cluster is upgraded",
                *self.cluster,
                *MIN_KUBERNETES,
            )

    async def plan(self, body: kopf.Body, known: BindingIndex) -> dict[str, Any] | None:
        cluster = self.cluster
        if cluster < MIN_KUBERNETES:
            raise kopf.AdmissionError(
                f"this cluster runs Kubernetes {cluster[0]}.{cluster[1]}; the key agent is a "
                "native sidecar and needs >= 1.29: upgrade the cluster or remove the "
                f"{INJECT_LABEL} label"
            )
        try:
            request = parse_pod(body, self.config.injection)
            if request is None:  # not opted in: the objectSelector should have kept it away.
                return None
            binding = await self._lookup(known, request.namespace, request.binding_name)
            return plan_injection(
                request,
                binding,
                self.config.injection,
                vault_addr=self.config.vault.address,
                aws_endpoint_url=self.config.aws.endpoint_url,
                policy=self.config.vault.policy,
            )
        except InjectionError as exc:
            raise kopf.AdmissionError(str(exc), code=400) from None

    async def _lookup(
        self, known: BindingIndex, namespace: str, name: str
    ) -> dict[str, Any] | None:
        # From memory when the watch has seen it; from the API when it has not (created an
        # instant ago, or this replica's watches are paused as a peering standby).
        for binding in known.get((namespace, name), []):
            return binding
        seconds = self.lookup_seconds
        try:
            # The answer is due in time even while the client retries a silent request;
            # its own timeout frees the worker thread soon after.
            async with asyncio.timeout(seconds):
                return await self.kube.get_binding(namespace, name, request_timeout=seconds)
        except TimeoutError:
            raise kopf.AdmissionError(
                f"cannot look up CaptchaKeyBinding {name!r} (annotation {ANNOTATION_BINDING}) "
                f"in namespace {namespace!r}: the Kubernetes API server did not answer in "
                f"{seconds:g} s; create the pod again (its controller retries on its own)",
                code=504,
            ) from None


@contextlib.contextmanager
def _counted(metrics: Metrics, webhook: str) -> Iterator[None]:
    try:
        yield
    except kopf.AdmissionError:
        metrics.admissions.labels(webhook, "false").inc()
        raise
    metrics.admissions.labels(webhook, "true").inc()


async def run_operator(
    config: OperatorConfig,
    namespace: str,
    *,
    kube: KubeApi | None = None,
    connection: kopf.ConnectionInfo | None = None,
    webhook_host: str = "0.0.0.0",  # noqa: S104
    extra_names: tuple[str, ...] = (),
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    probes: tuple[str, int] | None = None,
    metrics_addr: tuple[str, int] | None = None,
) -> None:
    """Run the operator until stopped (SIGTERM, or ``stop_flag``)."""
    kube = kube or KubeApi.connect(request_timeout=API_REQUEST_SECONDS)
    metrics = Metrics()
    registry = build_registry(
        config,
        kube,
        namespace,
        connection=connection,
        webhook_host=webhook_host,
        extra_names=extra_names,
        metrics=metrics,
    )
    runners = []
    if probes is not None:
        runners.append(await serve_probes(*probes, webhook_port=config.webhook_port))
    if metrics_addr is not None:
        runners.append(await serve_metrics(metrics, *metrics_addr))
    try:
        await _run_kopf(config, registry, stop_flag, ready_flag)
    finally:
        for runner in runners:
            await runner.cleanup()


async def _run_kopf(
    config: OperatorConfig,
    registry: kopf.OperatorRegistry,
    stop_flag: asyncio.Event | None,
    ready_flag: asyncio.Event | None,
) -> None:
    await kopf.operator(
        registry=registry,
        clusterwide=True,
        standalone=config.peering_name is None,
        peering_name=config.peering_name,
        # Peers of equal priority all pause; a random one per replica elects exactly one
        # active keeper, and another takes over when its peering record expires.
        priority=random.randint(1, 2**31 - 1),  # noqa: S311 - not security-relevant.
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
