"""`spanqa serve --ray`: the service as a Ray Serve application.

Two deployments:

- `SpanQAService`, the ingress: the same FastAPI app as `spanqa serve` (routes, tokens and scopes,
  limits, uploads, the web page), one replica, on the node the command runs on (the index, the
  upload folder and the service database are files there). It retrieves on its own CPUs, as the
  local server does, and sends each question with its passages to the readers.
- `SpanQAReader`, the readers: `--replicas N` copies of the reader, one GPU each where the cluster
  has GPUs (else CPU replicas), each gathering the questions that reach it together into one
  `run_batch` call with `@serve.batch`, as the local server's micro-batcher does.

This module imports Ray at the top: it is imported only when `--ray` is given.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haystack.dataclasses import ExtractedAnswer
from ray import serve

from spanqa import defaults
from spanqa.errors import ClusterError, ConfigError, check_positive_int
from spanqa.pipelines.engine import QueryEngine, Question
from spanqa.ray_cluster import ray_connection, short_error, uses_gpus
from spanqa.service.app import create_app
from spanqa.service.engine import QAEngine
from spanqa.service.state import ServerConfig, ServiceState
from spanqa.settings import QASettings, ServiceSettings

APP_NAME = "spanqa"
INGRESS_CPUS = 1


@dataclass(frozen=True)
class RayServeSettings:
    """Where the service runs on Ray and what each reader replica gets (how many replicas there are
    is the `replicas` setting of `spanqa.settings.ServiceSettings`). `address` None: the local Ray
    instance (started for the server when none runs); else a cluster address ('HOST:6379')."""

    address: str | None = None
    replica_cpus: int | None = None  # None: sized to the cluster (at most RAY_READER_CPUS each)

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(f"ray address {self.address!r} must be a non-empty string such as 'HOST:6379'")
        if self.replica_cpus is not None:
            check_positive_int("replica_cpus", self.replica_cpus)


@dataclass(frozen=True)
class ReaderPlacement:
    """What each reader replica asks Ray for."""

    replicas: int
    gpu: bool
    cpus: int

    @classmethod
    def sized(
        cls, replicas: int, settings: RayServeSettings, device: str, resources: Mapping[str, float]
    ) -> ReaderPlacement:
        """`replicas` readers: one GPU each where the cluster's GPUs read; else CPU replicas sharing
        what the ingress leaves, at most RAY_READER_CPUS each. Replicas the cluster cannot hold are
        an error now: Ray Serve would wait for them for ever."""
        if uses_gpus(device, resources):
            gpus = int(resources.get("GPU", 0))
            if replicas > gpus:
                raise ConfigError(f"--replicas {replicas} asks for a GPU each and the Ray cluster has "
                                  f"{gpus}: use --replicas {gpus} or fewer (or --device cpu)")
            return cls(replicas=replicas, gpu=True, cpus=1)
        free = int(resources.get("CPU", 0)) - INGRESS_CPUS
        cpus = settings.replica_cpus
        if cpus is None:
            cpus = max(1, min(defaults.RAY_READER_CPUS, free // replicas))
        if cpus * replicas > free:
            raise ConfigError(
                f"{replicas} reader replica(s) of {cpus} CPU(s) do not fit on the Ray cluster: it has "
                f"{int(resources.get('CPU', 0))} CPUs and the service itself takes {INGRESS_CPUS}: use fewer "
                "--replicas, or add nodes"
            )
        return cls(replicas=replicas, gpu=False, cpus=cpus)

    def actor_options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "num_gpus": 1 if self.gpu else 0}


@dataclass(frozen=True)
class ReplicaAnswers:
    """One question's answers from a reader replica. `batch_size` is set on the first question of
    each batch only, so the ingress counts every batch once in its batch-size metric."""

    answers: list[ExtractedAnswer]
    batch_size: int | None


class ReaderReplica:
    """A reader on Ray: the query engine's reader, reading the questions that reach it together in
    one batch (the index's answer calibration read where the replica runs)."""

    def __init__(self, index_dir: Path, qa: QASettings, service: ServiceSettings, placement: ReaderPlacement):
        if not placement.gpu:
            import torch

            # As many threads as the CPUs Ray gave this replica.
            torch.set_num_threads(placement.cpus)
        self._engine = QueryEngine(index_dir, qa)
        self._engine.reader  # noqa: B018 - loads it (a ModelLoadError stops the deployment with its reason)
        self.read.set_max_batch_size(service.max_batch)
        self.read.set_batch_wait_timeout_s(service.batch_wait_ms / 1000)

    @serve.batch(max_batch_size=ServiceSettings.max_batch, batch_wait_timeout_s=ServiceSettings.batch_wait_ms / 1000)
    async def read(self, questions: list[Question]) -> list[ReplicaAnswers]:
        # Off the replica's event loop, which keeps gathering the next batch meanwhile.
        answers = await asyncio.get_running_loop().run_in_executor(None, self._engine.read_batch, questions)
        return [ReplicaAnswers(found, len(questions) if number == 0 else None) for number, found in enumerate(answers)]


class RayQAEngine(QAEngine):
    """The engine of the ingress: retrieval here, reading on the reader replicas."""

    can_switch_reader = False  # the replicas hold the reader: training cannot swap it here

    def __init__(
        self, index_dir: Path, qa: QASettings, service: ServiceSettings, readers: Any,
        on_batch: Callable[[int], None] | None = None,
    ):
        super().__init__(index_dir, qa, service, on_batch=on_batch)
        self._readers = readers
        self._sent = 0

    def _load(self) -> None:
        # The replicas load the reader; the threshold 'auto' check needs only the calibration.
        self.query.load(reading=False)
        self.query.calibration  # noqa: B018 - read now: a calibration that is needed and missing fails the load

    @property
    def waiting_to_read(self) -> int:
        return self._sent

    async def _read(self, question: Question) -> list[ExtractedAnswer]:
        self._sent += 1  # the event loop's thread only: no lock
        try:
            result: ReplicaAnswers = await self._readers.read.remote(question)
        finally:
            self._sent -= 1
        if result.batch_size is not None and self._on_batch is not None:
            self._on_batch(result.batch_size)
        return result.answers


class ServiceIngress:
    """The FastAPI app of `spanqa serve`, built on the replica (its state holds threads and files)."""

    def __init__(self, config: ServerConfig, readers: Any):
        self._config = config
        self._readers = readers
        self._state = None

    def __serve_build_asgi_app__(self):
        def make_engine(
            index_dir: Path, qa: QASettings, service: ServiceSettings, on_batch: Callable[[int], None]
        ) -> RayQAEngine:
            return RayQAEngine(index_dir, qa, service, self._readers, on_batch=on_batch)

        self._state = ServiceState(self._config, make_engine=make_engine)
        # Loading in the lifespan, not on a thread after it: the replica is healthy once it is ready.
        return create_app(self._config, state=self._state, load_in_background=False)

    def load_error(self) -> str | None:
        """Why the index or the question embedder did not load (None: the service is ready)."""
        return self._state.load_error


def service_application(config: ServerConfig, placement: ReaderPlacement, ingress_node: str) -> Any:
    """The Ray Serve application: the ingress on `ingress_node` (an IP), and the reader replicas."""
    readers = serve.deployment(
        ReaderReplica,
        name="SpanQAReader",
        num_replicas=placement.replicas,
        ray_actor_options=placement.actor_options(),
        # A full batch can wait while one is read.
        max_ongoing_requests=2 * config.service.max_batch,
    ).bind(config.index_dir, config.qa, config.service, placement)
    ingress = serve.deployment(
        serve.ingress()(ServiceIngress),
        name="SpanQAService",
        num_replicas=1,
        ray_actor_options={"num_cpus": INGRESS_CPUS, "resources": {f"node:{ingress_node}": 0.001}},
        # The service answers 503 itself past its queue; Ray Serve must not queue in front of it.
        max_ongoing_requests=defaults.RAY_INGRESS_MAX_ONGOING,
    )
    return ingress.bind(config, readers)


def serve_on_ray(
    config: ServerConfig, ray_settings: RayServeSettings, host: str, port: int,
    on_started: Callable[[str | None], None], stop: threading.Event | None = None, log_level: str = "info",
) -> str | None:
    """Runs the service on Ray until `stop` is set (or SIGINT/SIGTERM); `on_started(error)` once
    it is ready (error None) or could not load. Returns that error. Requests are logged at
    'debug', as locally; the reader replicas are `config.service.replicas`."""
    with ray_connection(ray_settings.address, "serving") as ray:
        placement = ReaderPlacement.sized(
            config.service.replicas, ray_settings, config.qa.device.device, ray.cluster_resources()
        )
        node = ray.util.get_node_ip_address()
        try:
            logging_config = {"log_level": log_level.upper(), "enable_access_log": log_level == "debug"}
            serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly",
                        logging_config=logging_config)
            handle = serve.run(service_application(config, placement, node), name=APP_NAME, route_prefix="/",
                               logging_config=logging_config)
        except Exception as exc:  # noqa: BLE001 - a deployment that cannot start ends the command
            raise ClusterError(f"the service could not start on Ray: {_deployment_errors() or short_error(exc)}") from exc
        try:
            error = handle.load_error.remote().result()
            on_started(error)
            if error is None:
                _wait_for_stop(stop)
        finally:
            serve.delete(APP_NAME)
    return error


def _deployment_errors() -> str | None:
    """What the failed deployments' replicas raised (the last line of each traceback), if Serve says."""
    try:
        deployments = serve.status().applications[APP_NAME].deployments
    except Exception:  # noqa: BLE001 - no status: the caller's own error stands
        return None
    errors = []
    for name, status in deployments.items():
        lines = [line.strip() for line in (status.message or "").splitlines() if "Error" in line]
        if lines:
            errors.append(f"{name}: {lines[-1][:300]}")
    return "; ".join(errors) or None


def _wait_for_stop(stop: threading.Event | None) -> None:
    stop = threading.Event() if stop is None else stop
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    stop.wait()
