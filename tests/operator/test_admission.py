"""parse_pod: an AdmissionReview's pod, read once into the typed InjectionRequest.

Aspects covered:
- opt-in: a pod without the ``captchakeys.io/inject: "true"`` label gives no request, and
  none of its annotations is read (broken ones included);
- what is read: namespace, binding name (trimmed), target containers (the annotation's,
  or all), mount path (normalised; the config's by default), the new agent's resources
  (the config's, the annotation's over them, a Guaranteed pod's kept Guaranteed), the
  pod's init containers, volumes, security context and pod-level resources;
- read once: the request is frozen, and the plan made from it follows what was read even
  when the pod changes afterwards;
- reinvocation: a pod whose init containers hold the agent is a reinvocation (and its
  agent resources annotation is not read: the agent has its resources already); a pod
  without it, or with an application container of that name, is not;
- each bad annotation is refused with an AnnotationError that names it, shows the value
  and says how to fix it; the binding annotation naming no binding is its error too; a
  Windows pod is refused as a pod (no annotation is at fault).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agent.contract.pod import (
    AGENT_CONTAINER,
    ANNOTATION_AGENT_RESOURCES,
    ANNOTATION_BINDING,
    ANNOTATION_CONTAINERS,
    ANNOTATION_MOUNT_PATH,
    INJECT_LABEL,
)
from agent.operator.admission import (
    AnnotationError,
    InjectionError,
    InjectionRequest,
    parse_pod,
)
from agent.operator.config import InjectionConfig
from agent.operator.injection import plan_injection

CONFIG = InjectionConfig(
    resources={
        "requests": {"cpu": "7m", "memory": "33Mi"},
        "limits": {"cpu": "70m", "memory": "77Mi"},
    },
)
BINDING = {"metadata": {"name": "captcha-dev"}, "spec": {"environment": "dev"}}


def make_pod(
    *containers: str, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "solver-0",
            "namespace": "solver-dev",
            "labels": {INJECT_LABEL: "true"},
            "annotations": {ANNOTATION_BINDING: "captcha-dev", **(annotations or {})},
        },
        "spec": {
            "containers": [{"name": name, "image": "example/app:1"} for name in containers],
            **spec,
        },
    }


def parsed(pod: dict[str, Any], config: InjectionConfig = CONFIG) -> InjectionRequest:
    request = parse_pod(pod, config)
    assert request is not None
    return request


def agent_pod(*containers: str, **annotations: str) -> dict[str, Any]:
    """A pod that already has the agent, as a reinvocation brings it back."""
    agent = {"name": AGENT_CONTAINER, "image": "example/agent:1", "restartPolicy": "Always"}
    return make_pod(*containers, annotations=annotations, initContainers=[agent])


# --- opt-in ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", [None, "false", "True"])
def test_a_pod_that_did_not_opt_in_gives_no_request_and_no_annotation_is_read(
    label: str | None,
) -> None:
    pod = make_pod("app", annotations={ANNOTATION_MOUNT_PATH: "/etc", ANNOTATION_BINDING: ""})
    labels = pod["metadata"]["labels"]
    if label is None:
        del labels[INJECT_LABEL]
    else:
        labels[INJECT_LABEL] = label
    assert parse_pod(pod, CONFIG) is None


# --- what is read ---------------------------------------------------------------------


def test_the_request_holds_what_the_annotations_and_the_spec_say() -> None:
    volume = {"name": "data", "emptyDir": {}}
    migrate = {"name": "migrate", "image": "example/migrate:1"}
    pod = make_pod(
        "app",
        "worker",
        "proxy",
        annotations={
            ANNOTATION_BINDING: "  captcha-dev ",
            ANNOTATION_CONTAINERS: " app , worker,",
            ANNOTATION_MOUNT_PATH: "/srv/keys/",
            ANNOTATION_AGENT_RESOURCES: '{"limits": {"cpu": "1", "memory": "128Mi"}}',
        },
        initContainers=[migrate],
        volumes=[volume],
        securityContext={"fsGroup": 2000},
        resources={"requests": {"cpu": "1"}},
    )
    request = parsed(pod)
    assert request.namespace == "solver-dev"
    assert request.binding_name == "captcha-dev"
    assert request.targets == {"app", "worker"}
    assert [c["name"] for c in request.containers] == ["app", "worker", "proxy"]
    assert request.mount_path == "/srv/keys"
    assert request.agent_resources == {
        "requests": {"cpu": "7m", "memory": "33Mi"},
        "limits": {"cpu": "1", "memory": "128Mi"},
    }
    assert request.init_containers == (migrate,)
    assert request.volumes == (volume,)
    assert request.security_context == {"fsGroup": 2000}
    assert request.pod_resources == {"requests": {"cpu": "1"}}
    assert not request.reinvocation


def test_without_annotations_the_config_and_every_container_apply() -> None:
    config = dataclasses.replace(CONFIG, mount_path="/run/captchaai-keys")
    request = parsed(make_pod("app", "worker"), config)
    assert request.targets == {"app", "worker"}
    assert request.mount_path == "/run/captchaai-keys"
    assert request.agent_resources == CONFIG.resources
    assert request.pod_resources == {}
    assert request.security_context == {}


def test_a_guaranteed_pods_agent_requests_its_limits() -> None:
    pod = make_pod("app")
    both = {"cpu": "500m", "memory": "256Mi"}
    pod["spec"]["containers"][0]["resources"] = {"requests": both, "limits": both}
    limits = CONFIG.resources["limits"]
    assert parsed(pod).agent_resources == {"requests": limits, "limits": limits}


# --- read once ------------------------------------------------------------------------


def test_the_request_is_frozen() -> None:
    request = parsed(make_pod("app"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.mount_path = "/etc"  # type: ignore[misc]


def test_the_plan_follows_what_was_read_not_the_pod_afterwards() -> None:
    pod = make_pod("app", "worker", annotations={ANNOTATION_CONTAINERS: "app"})
    request = parsed(pod)
    pod["metadata"]["annotations"].update(
        {ANNOTATION_CONTAINERS: "worker", ANNOTATION_MOUNT_PATH: "/etc", ANNOTATION_BINDING: ""}
    )
    pod["spec"]["containers"].append({"name": "late", "image": "example/late:1"})
    plan = plan_injection(request, BINDING, CONFIG, vault_addr="https://vault:8200")
    assert plan is not None
    keyed = {
        c["name"]: [m["mountPath"] for m in c.get("volumeMounts", [])] for c in plan["containers"]
    }
    assert keyed == {"app": ["/var/run/captchaai"], "worker": []}
    assert plan["initContainers"][0]["args"][-2:] == ["--binding", "captcha-dev"]


# --- reinvocation ---------------------------------------------------------------------


def test_a_pod_with_the_agent_is_a_reinvocation() -> None:
    request = parsed(agent_pod("app"))
    assert request.reinvocation
    assert request.agent_resources is None


def test_a_reinvocation_does_not_read_the_agent_resources_annotation() -> None:
    # The agent is there with its resources: the annotation has nothing left to decide.
    assert parsed(agent_pod("app", **{ANNOTATION_AGENT_RESOURCES: "lots"})).reinvocation


def test_an_application_container_named_like_the_agent_is_no_reinvocation() -> None:
    assert not parsed(make_pod(AGENT_CONTAINER)).reinvocation


# --- bad annotations ------------------------------------------------------------------


def refusal(pod: dict[str, Any]) -> AnnotationError:
    with pytest.raises(AnnotationError) as info:
        parse_pod(pod, CONFIG)
    return info.value


SUCH_AS = "such as /var/run/captchaai"


@pytest.mark.parametrize(
    ("annotation", "value", "problem", "fix"),
    [
        (ANNOTATION_BINDING, "", "no captchakeys.io/binding annotation", "name the"),
        (ANNOTATION_BINDING, "  ", "no captchakeys.io/binding annotation", "name the"),
        (ANNOTATION_CONTAINERS, " , ", "' , ' names no container", "remove the annotation"),
        (ANNOTATION_CONTAINERS, "app,wrker", "names wrker, which the pod", "fix the annotation"),
        (ANNOTATION_MOUNT_PATH, "keys", "'keys' must be an absolute, normalised", SUCH_AS),
        (ANNOTATION_MOUNT_PATH, "/a//b", "'/a//b' must be an absolute, normalised", SUCH_AS),
        (ANNOTATION_MOUNT_PATH, "//etc", "'//etc' must be an absolute, normalised", SUCH_AS),
        (ANNOTATION_MOUNT_PATH, "/etc/keys", "'/etc/keys' is on the system path /etc", "use e.g."),
        (ANNOTATION_MOUNT_PATH, "/run/secrets/k", "on the system path /run/secrets", "use e.g."),
        (ANNOTATION_MOUNT_PATH, "/", "'/' is on the system path /", "use e.g. /var/run/captchaai"),
        (ANNOTATION_MOUNT_PATH, "/k\n", "'/k\\n' contains the control character", "use a plain"),
        (ANNOTATION_AGENT_RESOURCES, "64Mi", "must be a JSON object", '"limits": {"cpu": "500m"'),
        (ANNOTATION_AGENT_RESOURCES, '{"limits": {"memory": "9Mi"}}', "'9Mi' is below", "64Mi"),
        (ANNOTATION_AGENT_RESOURCES, '{"limits": {"gpu": "1"}}', "resource(s) gpu", "use cpu"),
    ],
)
def test_each_bad_annotation_is_refused_naming_it_the_problem_and_the_fix(
    annotation: str, value: str, problem: str, fix: str
) -> None:
    error = refusal(make_pod("app", "worker", annotations={annotation: value}))
    assert error.annotation == annotation
    message = str(error)
    assert annotation in message
    assert problem in message
    assert fix in message.partition(problem)[2], "the fix comes after the problem"


def test_a_missing_binding_annotation_is_the_binding_annotations_error() -> None:
    pod = make_pod("app")
    del pod["metadata"]["annotations"][ANNOTATION_BINDING]
    assert refusal(pod).annotation == ANNOTATION_BINDING


def test_a_binding_annotation_naming_no_binding_is_its_error() -> None:
    with pytest.raises(AnnotationError) as info:
        plan_injection(parsed(make_pod("app")), None, CONFIG, vault_addr="https://vault:8200")
    assert info.value.annotation == ANNOTATION_BINDING
    assert "'captcha-dev'" in str(info.value)
    assert "does not exist in this namespace: create it first" in str(info.value)


def test_a_windows_pod_is_refused_as_a_pod() -> None:
    with pytest.raises(InjectionError) as info:
        parse_pod(make_pod("app", os={"name": "windows"}), CONFIG)
    assert not isinstance(info.value, AnnotationError)
    assert "spec.os.name: windows" in str(info.value)
    assert f"remove the {INJECT_LABEL} label" in str(info.value)
