"""parse_pod then plan_injection: what the mutating webhook does to a pod, on plain pod dicts.

Aspects covered:
- opt-in: a pod without the ``captchakeys.io/inject: "true"`` label is untouched (None);
  a pod that already has the agent (re-admission) is untouched (None).
- targets: one container; several containers; a ``captchakeys.io/containers`` subset
  (the other containers are not changed at all).
- existing initContainers and volumes are kept (agent first, the pod's own after).
- a Job-style pod (restartPolicy Never / OnFailure) gets a native sidecar
  (``restartPolicy: Always`` on the agent's init container).
- the agent container: restricted security context, always its own user and group 65532
  whatever the pod's security context says (root, another user, a group), the pod gets
  group 65532 as a supplemental group once; startup probe on /readyz:8099; its
  interpreter runs with ``PYTHONOPTIMIZE=2`` (the bytecode the sidecar image carries).
- reinvocation: a container added by a later webhook gets the key (not one the
  containers annotation leaves out), a dropped agent group is restored, a second pass
  plans nothing.
- resources: a Guaranteed pod's agent requests its limits (the pod stays Guaranteed, also
  with quantities spelled differently, also by pod-level resources, which grow by the
  agent's); other pods get the configured resources, always with limits; the
  ``captchakeys.io/agent-resources`` annotation overrides them, and each bad value is
  refused naming the annotation and the problem.
- app containers: CAPTCHAAI_KEY_FILE = mount path + the binding's spec.file.name, the key
  volume mounted read-only; the key volume is an in-memory emptyDir.
- the Vault token projection uses the binding's audience (or the config default) and is
  mounted into the agent only.
- each bad annotation raises InjectionError naming the problem and the fix: missing
  binding annotation, absent binding, unknown container (lists the pod's containers),
  mount path relative / over a system path / not normalised (also a leading "//"),
  volume name clash, a target container already mounting something at the mount path,
  a Windows pod (the agent is a Linux container).
- the injected pod validates as a Pod against the Kubernetes 1.29 and 1.37 schemas (strict).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import kubernetes_validate
import pytest

from agent.contract.pod import (
    AGENT_CONTAINER,
    AGENT_GID,
    AGENT_PORT,
    AGENT_UID,
    ANNOTATION_AGENT_RESOURCES,
    ANNOTATION_BINDING,
    ANNOTATION_CONTAINERS,
    ANNOTATION_MOUNT_PATH,
    INJECT_LABEL,
)
from agent.operator.admission import InjectionError, parse_pod
from agent.operator.config import InjectionConfig
from agent.operator.injection import plan_injection
from agent.operator.resources import qos_class

VAULT_ADDR = "https://vault.vault.svc:8200"
SUPPORTED_KUBERNETES = ("1.29.0", "1.37.0")  # the oldest and the newest supported.
CONFIG = InjectionConfig(
    image="registry.example/captcha-key-agent:9.9.9",
    resources={
        "requests": {"cpu": "7m", "memory": "33Mi"},
        "limits": {"cpu": "70m", "memory": "77Mi"},
    },
    token_audience="config-audience",
)


def make_pod(
    *containers: str,
    annotations: dict[str, str] | None = None,
    label: str | None = "true",
    **spec: Any,
) -> dict[str, Any]:
    labels = {"app": "solver"}
    if label is not None:
        labels[INJECT_LABEL] = label
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "solver-0",
            "namespace": "solver-dev",
            "labels": labels,
            "annotations": {ANNOTATION_BINDING: "captcha-dev", **(annotations or {})},
        },
        "spec": {
            "containers": [
                {"name": name, "image": f"example/{name}:1"} for name in containers or ("app",)
            ],
            **spec,
        },
    }


def make_binding(*, file_name: str | None = None, audience: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "environment": "dev",
        "vault": {"auth": {"method": "kubernetes", "role": "captcha-worker-dev"}},
        "kv": {"mount": "secret", "path": "captchaai/{environment}"},
    }
    if file_name is not None:
        spec["file"] = {"name": file_name}
    if audience is not None:
        spec["vault"]["auth"]["audience"] = audience
    return {
        "apiVersion": "captchakeys.io/v1alpha1",
        "kind": "CaptchaKeyBinding",
        "metadata": {"name": "captcha-dev", "namespace": "solver-dev"},
        "spec": spec,
    }


def plan(
    pod: dict[str, Any], binding: dict[str, Any] | None, config: InjectionConfig = CONFIG
) -> dict[str, Any] | None:
    """The webhook's plan for ``pod``: read once, then planned from what was read."""
    request = parse_pod(pod, config)
    if request is None:
        return None
    return plan_injection(request, binding, config, vault_addr=VAULT_ADDR)


def inject(pod: dict[str, Any], binding: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pod after applying the planned spec fields (asserting there was a plan)."""
    original = copy.deepcopy(pod)
    planned = plan(pod, binding or make_binding())
    assert planned is not None
    assert pod == original, "reading and planning must not mutate the pod"
    result = copy.deepcopy(pod)
    result["spec"].update(planned)
    return result


def agent_of(pod: dict[str, Any]) -> dict[str, Any]:
    first = pod["spec"]["initContainers"][0]
    assert first["name"] == AGENT_CONTAINER
    return first


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod["spec"]["volumes"] if v["name"] == name)


def vault_token_volume(pod: dict[str, Any]) -> dict[str, Any]:
    for v in pod["spec"]["volumes"]:
        for source in (v.get("projected") or {}).get("sources", []):
            if (source.get("serviceAccountToken") or {}).get("audience"):
                return v
    raise AssertionError("no audience-bound service account token volume")


def key_mounts(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in c.get("volumeMounts", []) if m["name"] == "captchaai-key"]


def assert_valid_pod(pod: dict[str, Any]) -> None:
    for version in SUPPORTED_KUBERNETES:
        kubernetes_validate.validate(pod, version, strict=True)


# --- what gets injected --------------------------------------------------------------


def test_one_container_gets_the_key_and_the_pod_gets_the_agent() -> None:
    pod = inject(make_pod("app"))
    app = container(pod, "app")
    assert env_of(app)["CAPTCHAAI_KEY_FILE"] == "/var/run/captchaai/api_key"
    assert key_mounts(app) == [
        {"name": "captchaai-key", "mountPath": "/var/run/captchaai", "readOnly": True}
    ]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [AGENT_CONTAINER]
    assert agent_of(pod)["image"] == CONFIG.image
    assert volume(pod, "captchaai-key")["emptyDir"]["medium"] == "Memory"
    assert_valid_pod(pod)


def test_several_containers_all_get_the_key() -> None:
    pod = inject(make_pod("app", "worker", "metrics"))
    for name in ("app", "worker", "metrics"):
        c = container(pod, name)
        assert env_of(c)["CAPTCHAAI_KEY_FILE"] == "/var/run/captchaai/api_key"
        assert [m["readOnly"] for m in key_mounts(c)] == [True]
    assert_valid_pod(pod)


def test_containers_annotation_selects_a_subset_and_leaves_the_others_untouched() -> None:
    original = make_pod(
        "app", "worker", "proxy", annotations={ANNOTATION_CONTAINERS: "app, worker"}
    )
    original["spec"]["containers"][2]["env"] = [{"name": "X", "value": "1"}]
    pod = inject(original)
    for name in ("app", "worker"):
        assert env_of(container(pod, name))["CAPTCHAAI_KEY_FILE"] == "/var/run/captchaai/api_key"
        assert key_mounts(container(pod, name))
    assert container(pod, "proxy") == original["spec"]["containers"][2]
    assert_valid_pod(pod)


def test_existing_init_containers_and_volumes_are_kept_after_ours() -> None:
    theirs_init = {"name": "migrate", "image": "example/migrate:1"}
    theirs_volume = {"name": "data", "emptyDir": {}}
    original = make_pod("app", initContainers=[theirs_init], volumes=[theirs_volume])
    original["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    original["spec"]["containers"][0]["env"] = [{"name": "LOG", "value": "debug"}]
    pod = inject(original)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [AGENT_CONTAINER, "migrate"]
    assert pod["spec"]["initContainers"][1] == theirs_init
    assert pod["spec"]["volumes"][0] == theirs_volume
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"data", "captchaai-key"}
    app = container(pod, "app")
    assert app["volumeMounts"][0] == {"name": "data", "mountPath": "/data"}
    assert env_of(app) == {"LOG": "debug", "CAPTCHAAI_KEY_FILE": "/var/run/captchaai/api_key"}
    assert_valid_pod(pod)


def test_readmission_of_an_injected_pod_changes_nothing() -> None:
    pod = inject(make_pod("app", "worker"))
    assert plan(pod, make_binding()) is None


@pytest.mark.parametrize("policy", ["Never", "OnFailure"])
def test_job_pod_gets_a_native_sidecar(policy: str) -> None:
    pod = inject(make_pod("job", restartPolicy=policy))
    assert pod["spec"]["restartPolicy"] == policy
    assert agent_of(pod)["restartPolicy"] == "Always"
    assert "initContainers" in pod["spec"]
    assert "containers" in pod["spec"]
    assert all(c["name"] != AGENT_CONTAINER for c in pod["spec"]["containers"])
    assert_valid_pod(pod)


@pytest.mark.parametrize("label", [None, "false", "True", "yes"])
def test_pod_without_the_opt_in_label_is_untouched(label: str | None) -> None:
    pod = make_pod("app", label=label)
    assert plan(pod, make_binding()) is None
    # Not even a broken annotation is looked at when the pod did not opt in.
    del pod["metadata"]["annotations"][ANNOTATION_BINDING]
    assert plan(pod, None) is None


def test_key_file_uses_mount_path_annotation_and_binding_file_name() -> None:
    pod = inject(
        make_pod("app", annotations={ANNOTATION_MOUNT_PATH: "/srv/keys"}),
        make_binding(file_name="captcha.key"),
    )
    app = container(pod, "app")
    assert env_of(app)["CAPTCHAAI_KEY_FILE"] == "/srv/keys/captcha.key"
    assert key_mounts(app) == [
        {"name": "captchaai-key", "mountPath": "/srv/keys", "readOnly": True}
    ]
    assert_valid_pod(pod)


def test_existing_captchaai_key_file_env_is_replaced_not_duplicated() -> None:
    original = make_pod("app")
    original["spec"]["containers"][0]["env"] = [{"name": "CAPTCHAAI_KEY_FILE", "value": "/old"}]
    app = container(inject(original), "app")
    assert [e for e in app["env"] if e["name"] == "CAPTCHAAI_KEY_FILE"] == [
        {"name": "CAPTCHAAI_KEY_FILE", "value": "/var/run/captchaai/api_key"}
    ]


# --- the agent container -----------------------------------------------------------


def test_agent_security_context_is_restricted_with_its_own_user_by_default() -> None:
    security = agent_of(inject(make_pod("app")))["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsUser"] == 65532


def test_agent_interpreter_runs_without_docstrings_and_asserts() -> None:
    env = agent_of(inject(make_pod("app")))["env"]
    assert {"name": "PYTHONOPTIMIZE", "value": "2"} in env


@pytest.mark.parametrize(
    "pod_security",
    [{"runAsUser": 0}, {"runAsUser": 1000, "runAsGroup": 1000}, {"runAsGroup": 0}, {}],
)
def test_agent_runs_as_its_own_user_whatever_the_pod_says(pod_security: dict[str, int]) -> None:
    pod = inject(make_pod("app", securityContext=dict(pod_security)))
    security = agent_of(pod)["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (AGENT_UID, AGENT_GID)
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"] == {**pod_security, "supplementalGroups": [AGENT_GID]}
    assert_valid_pod(pod)


def test_agent_probes_resources_and_binding() -> None:
    agent = agent_of(inject(make_pod("app")))
    assert agent["startupProbe"]["httpGet"] == {"path": "/readyz", "port": AGENT_PORT}
    assert AGENT_PORT == 8099
    assert agent["resources"] == dict(CONFIG.resources)
    assert agent["args"][-2:] == ["--binding", "captcha-dev"]
    assert env_of(agent)["VAULT_ADDR"] == VAULT_ADDR
    assert agent["restartPolicy"] == "Always"


@pytest.mark.parametrize(
    ("binding_audience", "expected"), [("vault-dev", "vault-dev"), (None, "config-audience")]
)
def test_vault_token_audience_and_mounted_only_into_the_agent(
    binding_audience: str | None, expected: str
) -> None:
    pod = inject(make_pod("app", "worker"), make_binding(audience=binding_audience))
    token_volume = vault_token_volume(pod)
    (source,) = token_volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == expected
    assert source["serviceAccountToken"]["expirationSeconds"] == CONFIG.token_expiration_seconds
    agent_mounts = {m["name"] for m in agent_of(pod)["volumeMounts"]}
    assert token_volume["name"] in agent_mounts
    for c in pod["spec"]["containers"]:
        mounted = {m["name"] for m in c.get("volumeMounts", [])}
        assert mounted == {"captchaai-key"}, c["name"]


# --- bad annotations ---------------------------------------------------------------


def refused(
    pod: dict[str, Any], binding: dict[str, Any] | None = None, *, absent: bool = False
) -> str:
    with pytest.raises(InjectionError) as info:
        plan(pod, None if absent else (binding or make_binding()))
    return str(info.value)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_binding_annotation(value: str | None) -> None:
    pod = make_pod("app")
    if value is None:
        del pod["metadata"]["annotations"][ANNOTATION_BINDING]
    else:
        pod["metadata"]["annotations"][ANNOTATION_BINDING] = value
    message = refused(pod)
    assert ANNOTATION_BINDING in message
    assert "name the CaptchaKeyBinding" in message


def test_binding_absent_in_the_namespace() -> None:
    message = refused(make_pod("app"), absent=True)
    assert "'captcha-dev'" in message
    assert "does not exist" in message
    assert "create it" in message
    assert "fix the annotation" in message


def test_unknown_container_lists_the_pods_containers() -> None:
    message = refused(make_pod("app", "worker", annotations={ANNOTATION_CONTAINERS: "app,wrker"}))
    assert ANNOTATION_CONTAINERS in message
    assert "wrker" in message
    assert "app, worker" in message
    assert "fix the annotation" in message


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("var/run/captchaai", "absolute, normalised"),
        ("./keys", "absolute, normalised"),
        ("", "absolute, normalised"),
        ("/var/run/../captchaai", "absolute, normalised"),
        ("/var//run/captchaai", "absolute, normalised"),
        ("/var/run/./captchaai", "absolute, normalised"),
        ("/", "system path"),
        ("/etc", "system path"),
        ("/etc/captchaai", "system path"),
        ("/proc/keys", "system path"),
        ("/usr/local/keys", "system path"),
        ("/var/run/secrets", "system path"),
        ("/var/run/secrets/kubernetes.io/serviceaccount", "system path"),
        ("/run/secrets/keys", "system path"),
    ],
)
def test_bad_mount_path(path: str, problem: str) -> None:
    message = refused(make_pod("app", annotations={ANNOTATION_MOUNT_PATH: path}))
    assert ANNOTATION_MOUNT_PATH in message
    assert problem in message
    assert "/var/run/captchaai" in message  # the suggested fix


@pytest.mark.parametrize("path", ["//etc", "//proc/keys", "//var/run/secrets/x"])
def test_mount_path_with_a_double_leading_slash_is_refused(path: str) -> None:
    # POSIX normpath keeps a leading "//", but the kubelet mounts it over /etc etc.
    message = refused(make_pod("app", annotations={ANNOTATION_MOUNT_PATH: path}))
    assert ANNOTATION_MOUNT_PATH in message


def test_trailing_slash_mount_path_is_accepted_and_normalised() -> None:
    pod = inject(make_pod("app", annotations={ANNOTATION_MOUNT_PATH: "/srv/keys/"}))
    assert env_of(container(pod, "app"))["CAPTCHAAI_KEY_FILE"] == "/srv/keys/api_key"


@pytest.mark.parametrize("name", ["captchaai-key", "captchaai-vault-token", "captchaai-kube-api"])
def test_volume_name_clash(name: str) -> None:
    message = refused(make_pod("app", volumes=[{"name": name, "emptyDir": {}}]))
    assert name in message
    assert "rename" in message


def test_windows_pod_is_refused_with_the_reason() -> None:
    message = refused(make_pod("app", os={"name": "windows"}))
    assert "spec.os.name: windows" in message
    assert INJECT_LABEL in message


def test_target_container_already_mounts_at_the_mount_path() -> None:
    pod = make_pod("app", volumes=[{"name": "old-keys", "emptyDir": {}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "old-keys", "mountPath": "/var/run/captchaai/"}
    ]
    message = refused(pod)
    assert "'app'" in message
    assert "'old-keys'" in message
    assert "/var/run/captchaai" in message
    assert f"choose another {ANNOTATION_MOUNT_PATH}" in message


def test_non_target_container_may_use_the_mount_path() -> None:
    pod = make_pod(
        "app",
        "sidecar",
        annotations={ANNOTATION_CONTAINERS: "app"},
        volumes=[{"name": "other", "emptyDir": {}}],
    )
    pod["spec"]["containers"][1]["volumeMounts"] = [
        {"name": "other", "mountPath": "/var/run/captchaai"}
    ]
    assert_valid_pod(inject(pod))


# --- a private Vault CA (injection.vaultCaConfigMap) -----------------------------------

CA_CONFIG = dataclasses.replace(CONFIG, vault_ca_config_map="vault-ca")


def inject_with(config: InjectionConfig, pod: dict[str, Any]) -> dict[str, Any]:
    planned = plan(pod, make_binding(), config)
    assert planned is not None
    result = copy.deepcopy(pod)
    result["spec"].update(planned)
    return result


def test_vault_ca_config_map_is_mounted_into_the_agent_only() -> None:
    pod = inject_with(CA_CONFIG, make_pod("app", "worker"))
    assert volume(pod, "captchaai-vault-ca") == {
        "name": "captchaai-vault-ca",
        "configMap": {"name": "vault-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }
    agent = agent_of(pod)
    (mount,) = [m for m in agent["volumeMounts"] if m["name"] == "captchaai-vault-ca"]
    assert mount == {
        "name": "captchaai-vault-ca",
        "mountPath": "/etc/captchakeys/vault-ca",
        "readOnly": True,
    }
    assert env_of(agent)["VAULT_CACERT"] == "/etc/captchakeys/vault-ca/ca.crt"
    for c in pod["spec"]["containers"]:
        assert {m["name"] for m in c.get("volumeMounts", [])} == {"captchaai-key"}, c["name"]
        assert "VAULT_CACERT" not in env_of(c), c["name"]
    assert_valid_pod(pod)


def test_without_a_vault_ca_config_map_nothing_ca_related_is_injected() -> None:
    pod = inject(make_pod("app"))
    assert "captchaai-vault-ca" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert "captchaai-vault-ca" not in {m["name"] for m in agent_of(pod)["volumeMounts"]}
    assert "VAULT_CACERT" not in env_of(agent_of(pod))


@pytest.mark.parametrize("config", [CONFIG, CA_CONFIG], ids=["without-ca", "with-ca"])
def test_vault_ca_volume_name_clash(config: InjectionConfig) -> None:
    pod = make_pod("app", volumes=[{"name": "captchaai-vault-ca", "emptyDir": {}}])
    with pytest.raises(InjectionError) as info:
        plan(pod, make_binding(), config)
    assert "captchaai-vault-ca" in str(info.value)
    assert "rename" in str(info.value)


def test_pod_without_a_user_gets_the_agents_group_so_any_user_can_read_the_key() -> None:
    injected = inject(make_pod(securityContext={"supplementalGroups": [4000], "fsGroup": 2000}))
    security = injected["spec"]["securityContext"]
    assert security["supplementalGroups"] == [4000, 65532]
    assert security["fsGroup"] == 2000  # the rest of the pod's security context is kept
    assert agent_of(injected)["securityContext"]["runAsGroup"] == 65532
    assert_valid_pod(injected)


def test_the_agents_group_is_added_once() -> None:
    injected = inject(make_pod(securityContext={"supplementalGroups": [AGENT_GID, 7]}))
    assert injected["spec"]["securityContext"] == {"supplementalGroups": [AGENT_GID, 7]}


# --- reinvocation (reinvocationPolicy: IfNeeded) ----------------------------------------


def test_reinvocation_gives_the_key_to_a_container_a_later_webhook_added() -> None:
    pod = inject(make_pod("app"))
    pod["spec"]["containers"].append({"name": "envoy", "image": "example/envoy:1"})
    again = inject(pod)
    envoy = container(again, "envoy")
    assert env_of(envoy)["CAPTCHAAI_KEY_FILE"] == "/var/run/captchaai/api_key"
    assert key_mounts(envoy) == [
        {"name": "captchaai-key", "mountPath": "/var/run/captchaai", "readOnly": True}
    ]
    assert container(again, "app") == container(pod, "app")
    assert [c["name"] for c in again["spec"]["initContainers"]] == [AGENT_CONTAINER]
    assert again["spec"]["volumes"] == pod["spec"]["volumes"]
    assert plan(again, make_binding()) is None
    assert_valid_pod(again)


def test_reinvocation_respects_the_containers_annotation() -> None:
    pod = inject(make_pod("app", annotations={ANNOTATION_CONTAINERS: "app"}))
    pod["spec"]["containers"].append({"name": "envoy", "image": "example/envoy:1"})
    assert plan(pod, make_binding()) is None


def test_reinvocation_restores_the_agents_group_a_later_webhook_dropped() -> None:
    pod = inject(make_pod("app"))
    pod["spec"]["securityContext"] = {"runAsUser": 1000}
    assert plan(pod, make_binding()) == {
        "securityContext": {"runAsUser": 1000, "supplementalGroups": [AGENT_GID]}
    }


# --- resources and the QoS class --------------------------------------------------------


def guaranteed(cpu: str = "500m", memory: str = "256Mi") -> dict[str, Any]:
    both = {"cpu": cpu, "memory": memory}
    return {"requests": dict(both), "limits": dict(both)}


def test_guaranteed_pod_stays_guaranteed() -> None:
    original = make_pod("app", "worker")
    for c in original["spec"]["containers"]:
        c["resources"] = guaranteed()
    assert qos_class(original["spec"]["containers"]) == "Guaranteed"
    pod = inject(original)
    assert agent_of(pod)["resources"] == {
        "requests": {"cpu": "70m", "memory": "77Mi"},
        "limits": {"cpu": "70m", "memory": "77Mi"},
    }
    assert qos_class([*pod["spec"]["initContainers"], *pod["spec"]["containers"]]) == "Guaranteed"
    assert_valid_pod(pod)


@pytest.mark.parametrize(
    "resources",
    [
        {},
        {"requests": {"cpu": "100m", "memory": "64Mi"}},
        {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
    ],
    ids=["best-effort", "requests-only", "no-cpu-limit"],
)
def test_other_pods_get_the_configured_resources_with_limits(resources: dict[str, Any]) -> None:
    original = make_pod("app")
    original["spec"]["containers"][0]["resources"] = resources
    pod = inject(original)
    assert agent_of(pod)["resources"] == dict(CONFIG.resources)
    assert qos_class([*pod["spec"]["initContainers"], *pod["spec"]["containers"]]) == "Burstable"


def test_quantities_in_other_spellings_still_count_as_guaranteed() -> None:
    original = make_pod("app")
    original["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "0.5", "memory": "268435456"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    agent = agent_of(inject(original))
    assert agent["resources"]["requests"] == agent["resources"]["limits"]


@pytest.mark.parametrize(
    ("pod_level", "agent_requests", "grown"),
    [
        (
            {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            {"cpu": "70m", "memory": "77Mi"},
            {
                "requests": {"cpu": "1070m", "memory": str(2**30 + 77 * 2**20)},
                "limits": {"cpu": "1070m", "memory": str(2**30 + 77 * 2**20)},
            },
        ),
        (
            {"requests": {"cpu": "500m"}},
            {"cpu": "7m", "memory": "33Mi"},
            {"requests": {"cpu": "507m"}},
        ),
    ],
    ids=["guaranteed", "burstable"],
)
def test_pod_level_resources_grow_by_the_agents_and_keep_the_class(
    pod_level: dict[str, Any], agent_requests: dict[str, str], grown: dict[str, Any]
) -> None:
    original = make_pod("app", resources=pod_level)
    pod = inject(original)
    assert agent_of(pod)["resources"]["requests"] == agent_requests
    assert pod["spec"]["resources"] == grown
    assert qos_class([{"resources": pod["spec"]["resources"]}]) == qos_class(
        [{"resources": pod_level}]
    )
    kubernetes_validate.validate(pod, "1.37.0", strict=True)  # pod-level resources: >= 1.32


def test_agent_resources_annotation_overrides_the_defaults() -> None:
    annotation = '{"requests": {"memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}'
    pod = inject(make_pod("app", annotations={ANNOTATION_AGENT_RESOURCES: annotation}))
    assert agent_of(pod)["resources"] == {
        "requests": {"cpu": "7m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "128Mi"},
    }
    assert_valid_pod(pod)


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        ("64Mi", "must be a JSON object"),
        ('{"limits": {"memory": "lots"}}', "limits.memory: 'lots' is not a non-negative"),
        ('{"limits": {"memory": "32Mi"}}', "below 64Mi"),
        ('{"requests": {"cpu": "2"}}', "requests.cpu '2' exceeds limits.cpu '70m'"),
        ('{"limits": {"gpu": "1"}}', "unknown resource(s) gpu"),
        ('{"limit": {"cpu": "1"}}', "unknown key(s) limit"),
        ('{"limits": {"cpu": "-1"}}', "not a non-negative"),
    ],
)
def test_bad_agent_resources_annotation_is_refused(annotation: str, problem: str) -> None:
    message = refused(make_pod("app", annotations={ANNOTATION_AGENT_RESOURCES: annotation}))
    assert ANNOTATION_AGENT_RESOURCES in message
    assert problem in message
