"""What `spanqa serve` does (its options are declared in spanqa.service.cli): checks who may connect,
binds the port before the models load, makes an empty index where there is none, and serves the app
with uvicorn under the connection limits, or on Ray Serve with --ray.

Imported by spanqa.cli only when `spanqa serve` runs: the app loads FastAPI, torch and Haystack.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn

from spanqa.errors import ConfigError
from spanqa.indexing.store.shards import index_exists
from spanqa.pipelines.api import DocumentQA
from spanqa.service import connections
from spanqa.service.app import create_app
from spanqa.service.cli import is_loopback, listening_socket
from spanqa.service.log_repeats import CollapsedLogs
from spanqa.service.state import ServerConfig, ServiceState
from spanqa.service.tokens import TokenFile
from spanqa.settings import ConnectionSettings, ParseSettings, QASettings, ServiceSettings, from_args


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The server's configuration from the command's options, once anyone it lets in is sure to need a token."""
    service = from_args(ServiceSettings, args)
    if args.tokens is None and not is_loopback(service.host) and not args.insecure_no_auth:
        raise ConfigError(
            f"--host {service.host} lets other machines in, and without --tokens anyone could read, upload and "
            "delete: make tokens (spanqa token add NAME --tokens FILE --role admin) and pass --tokens FILE, "
            "or pass --insecure-no-auth if that is really meant"
        )
    if args.tokens is not None:
        tokens = TokenFile(args.tokens)
        if not tokens.path.is_file() or not tokens.records():
            raise ConfigError(f"no tokens in '{tokens.path}': make one first with "
                              f"`spanqa token add NAME --tokens {args.tokens} --role admin`")
    config = ServerConfig(
        index_dir=Path(args.index), qa=from_args(QASettings, args), service=service,
        parse=from_args(ParseSettings, args), tokens_file=None if args.tokens is None else Path(args.tokens),
        uploads_dir=None if args.uploads is None else Path(args.uploads),
    )  # its paths made absolute by ServerConfig (spanqa.paths.user_path)
    if args.ray is None and service.replicas != ServiceSettings.replicas:
        raise ConfigError("--replicas sizes the readers of a service on Ray: give --ray too")
    return config


def run_serve(args: argparse.Namespace) -> int:
    config = server_config(args)
    guard = from_args(ConnectionSettings, args)
    fd_limit = connections.raise_fd_limit()
    limits = connections.ConnectionLimits(connections.total_cap(guard, fd_limit), guard.max_connections_per_client)
    sock = listening_socket(config.service.host, config.service.port, guard.backlog)
    if not index_exists(config.index_dir):
        print(f"spanqa: no index at {config.index_dir}: making an empty one (upload files to fill it)",
              file=sys.stderr)
        DocumentQA(config.index_dir, settings=config.qa).index([])
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    auth = f"tokens from {config.tokens_file}" if config.tokens_file else "no tokens (open to this machine)"
    where = "" if args.ray is None else f" on Ray ({args.ray}, {config.service.replicas} reader replica(s))"
    print(f"spanqa: serving {config.index_dir}{where} on http://{shown}:{port}/ ({auth}); models loading",
          file=sys.stderr, flush=True)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def started(error: str | None) -> None:
        # A line for people and scripts: the server answers questions from here on (or never will).
        message = "ready: models loaded" if error is None else f"error: the models could not be loaded: {error}"
        print(f"spanqa: {message}", file=sys.stderr, flush=True)

    if args.ray is not None:
        return _serve_on_ray(args, config, sock, started)
    return _serve_with_uvicorn(args, config, sock, started, guard, limits, fd_limit)


def _serve_with_uvicorn(args: argparse.Namespace, config: ServerConfig, sock: socket.socket, started: Callable,
                        guard: ConnectionSettings, limits: connections.ConnectionLimits, fd_limit: int) -> int:
    app = create_app(config, state=ServiceState(config, on_started=started))
    # No WebSocket routes: an upgrade would hand the connection to a protocol outside the limits.
    server_settings = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level == "debug",
                                     timeout_graceful_shutdown=10, backlog=guard.backlog, ws="none",
                                     http=connections.guarded_protocol(guard, limits))
    logs = CollapsedLogs(guard.log_repeat_window_s)  # on uvicorn's handlers too, configured by now
    logging.getLogger(connections.__name__).info(
        "at most %d connections (%s per client), %d open files allowed", limits.max_total,
        limits.max_per_client or "no cap", fd_limit)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets=sockets)
            logs.close()  # here: after a signal, uvicorn re-raises it and run() never returns

    Server(server_settings).run(sockets=[sock])
    return 0


def _serve_on_ray(args: argparse.Namespace, config: ServerConfig, sock: socket.socket, started: Callable) -> int:
    """`spanqa serve --ray`: Ray Serve's proxy listens on the address the socket checked free."""
    try:
        # Ray is an optional extra (spanqa[ray]): imported only to serve on it.
        from spanqa.service.ray_serve import RayServeSettings, serve_on_ray
    except ImportError as exc:
        raise ConfigError("serving on Ray needs Ray Serve: pip install 'spanqa[ray]'") from exc

    ray_settings = RayServeSettings(address=None if args.ray == "local" else args.ray)  # replicas: config.service's
    host, port = sock.getsockname()[:2]
    sock.close()  # Ray Serve's proxy binds the port itself
    error = serve_on_ray(config, ray_settings, host, port, started, log_level=args.log_level)
    return 0 if error is None else 1
