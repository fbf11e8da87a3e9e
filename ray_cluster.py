"""Connecting to Ray, for indexing (`spanqa index --ray`) and serving (`spanqa serve --ray`).

Ray is imported here only when a command asks for it, and only the release spanqa is written
against is accepted: Ray Data's and Ray Serve's APIs move between releases, and every node of a
cluster must run the driver's Ray anyway.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from spanqa.errors import ClusterError, ConfigError

RAY_RELEASE = "2.60"
_CONNECT_TIMEOUT_S = 5.0


def short_error(exc: BaseException) -> str:
    """The exception's type and the first line of its message (Ray's errors run to pages); for a
    Ray error carrying a traceback from the cluster, the error that traceback ends in."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("  File ") for line in lines):
        return f"{type(exc).__name__}: {lines[-1].strip()[:300]}"
    return f"{type(exc).__name__}: {lines[0][:300]}"


def uses_gpus(device: str, resources: Mapping[str, float]) -> bool:
    """Whether the cluster's GPUs run the models: 'auto' when it has any, 'cuda' demands them, 'cpu' never."""
    has_gpus = resources.get("GPU", 0) >= 1
    if device.startswith("cuda") and not has_gpus:
        raise ConfigError(f"device {device!r} asked for, but the Ray cluster has no GPUs: use 'auto' or 'cpu'")
    return device != "cpu" and has_gpus


def _check_reachable(address: str) -> None:
    """A HOST:PORT address (or ray://HOST:PORT) that refuses connections is an error at once: Ray
    itself keeps trying to reach it for minutes."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms: Ray resolves them
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address!r}: {exc}. Start it with `ray start --head` on its head "
            "node and give that node's address (HOST:6379), or give --ray without an address for a local instance"
        ) from exc


@contextmanager
def ray_connection(address: str | None, purpose: str) -> Iterator[Any]:
    """The `ray` module, connected to the cluster at `address` (None: the local Ray instance,
    attached to when one runs, else started here). A connection the process already has is used
    and left open; one made here is closed at the end (a local instance started here stops with
    it). `purpose` ("indexing", "serving") names the work in the errors."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"{purpose} on Ray needs Ray: pip install 'spanqa[ray]'") from exc
    release = ".".join(ray.__version__.split(".")[:2])
    if release != RAY_RELEASE:
        raise ConfigError(
            f"Ray {ray.__version__} is installed, and spanqa runs on Ray {RAY_RELEASE} (Ray's Data and Serve "
            f"APIs change between releases): pip install 'spanqa[ray]' (Ray {RAY_RELEASE} on every node too)"
        )
    if ray.is_initialized():
        yield ray
        return
    where = "a local Ray instance" if address is None else f"the Ray cluster at {address!r}"
    if address is not None:
        _check_reachable(address)
    try:
        if address is None:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except Exception as exc:  # noqa: BLE001 - every way of not connecting means the same to a user
        raise ClusterError(
            f"cannot connect to {where}: {short_error(exc)}. Start a cluster with `ray start --head` on its head "
            "node and give that node's address (HOST:6379), or give --ray without an address for a local instance"
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()
