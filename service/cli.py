"""`spanqa serve` and `spanqa token`: the command-line side of the service."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from spanqa import defaults
from spanqa.errors import ConfigError
from spanqa.service import connections
from spanqa.service.log_repeats import CollapsedLogs

LOOPBACK_NAMES = ("localhost",)


def add_commands(commands, reader_options: Callable, retrieval: Callable, positive_int: Callable) -> None:
    """Adds `serve` and `token` to the `spanqa` command's sub-commands."""
    serve = commands.add_parser("serve", help="serve the index over HTTP: an API and a web page, models loaded once")
    serve.add_argument("--index", required=True, metavar="DIR",
                       help="the index directory (an empty index is made there if it holds none)")
    reader_options(serve)
    serve.add_argument("--embedder", metavar="MODEL",
                       help="embedder of a new, empty index (default: an existing index's own; "
                       f"{defaults.EMBEDDER_MODEL} for a new one)")
    serve.add_argument("--passages", type=positive_int, default=defaults.RETRIEVER_TOP_K, metavar="N",
                       help="retrieved passages the reader reads unless a request says (default: %(default)s)")
    retrieval(serve)
    serve.add_argument("--device", default=defaults.DEVICE, choices=["auto", "cpu", "cuda"],
                       help="where models run (default: %(default)s)")
    serve.add_argument("--host", default=defaults.SERVICE_HOST,
                       help="address to listen on (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=defaults.SERVICE_PORT,
                       help="port to listen on; 0 picks a free one (default: %(default)s)")
    serve.add_argument("--tokens", metavar="FILE",
                       help="the tokens file (spanqa token add); without it nobody needs a token, which is "
                       "allowed on a loopback address only")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="serve a non-loopback --host without tokens (everyone may read, upload and delete)")
    serve.add_argument("--max-file-mb", type=float, default=defaults.SERVICE_MAX_FILE_MB, metavar="MB",
                       help="largest uploaded file (default: %(default)s)")
    serve.add_argument("--uploads", metavar="DIR", help="where uploaded files are kept (default: DIR/uploads of the index)")
    serve.add_argument("--rate-limit", type=float, default=defaults.SERVICE_RATE_LIMIT_PER_MINUTE,
                       metavar="PER_MINUTE", help="requests per token per minute, 0 for no limit (default: %(default)s)")
    serve.add_argument("--queue-size", type=positive_int, default=defaults.SERVICE_QUEUE_SIZE, metavar="N",
                       help="questions in flight before new ones get 503 (default: %(default)s)")
    serve.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="parser processes for uploads (default: the number of CPUs, at most 4)")
    serve.add_argument("--page-timeout", type=float, default=defaults.SERVICE_PAGE_TIMEOUT_S, metavar="SECONDS",
                       help="time one page call (highlight boxes, page image, re-OCR of a scanned page) may take "
                       "before its worker is stopped; the page then answers an error (default: %(default)s)")
    serve.add_argument("--page-memory-mb", type=positive_int, default=defaults.SERVICE_PAGE_MEMORY_MB, metavar="MB",
                       help="address space of each page-worker process (default: %(default)s)")
    serve.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="serve as a Ray Serve application (needs pip install 'spanqa[ray]'): alone, on the local "
                       "Ray instance; with ADDRESS (HOST:6379), on that cluster. The API and page are the same; "
                       "the readers run as --replicas")
    serve.add_argument("--replicas", type=positive_int, default=defaults.RAY_READER_REPLICAS, metavar="N",
                       help="reader replicas with --ray, one GPU each where the cluster has GPUs (default: %(default)s)")
    connections.add_options(serve)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="server log level (default: %(default)s)")

    token = commands.add_parser("token", help="make, list and revoke the service's access tokens")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="make a token; it is printed once (the last line of output)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=["read", "admin"],
                     help="read: ask and search; admin: also upload, delete and export feedback")
    add.add_argument("--scope", action="append", default=[], metavar="PATH",
                     help="the token sees only files under PATH (repeat for several; default: every file)")
    listing = actions.add_parser("list", help="list tokens (names, roles, scopes; never the tokens)")
    revoke = actions.add_parser("revoke", help="revoke a token (a running server stops accepting it at once)")
    revoke.add_argument("name", metavar="NAME")
    for sub in (add, listing, revoke):
        sub.add_argument("--tokens", required=True, metavar="FILE", help="the tokens file")
        sub.add_argument("--json", action="store_true", help="print JSON")


def run_token(args: argparse.Namespace) -> int:
    from spanqa.service.tokens import TokenFile

    tokens = TokenFile(args.tokens)
    if args.token_command == "add":
        record, token = tokens.add(args.name, args.role, args.scope)
        if args.json:
            print(json.dumps({"name": record.name, "token": token, "role": record.role, "scope": list(record.scope)}))
        else:
            scope = ", ".join(record.scope) if record.scope else "every file"
            print(f"token {record.name!r} ({record.role}; sees {scope}) added to {tokens.path}")
            print("it is shown only now; send it as 'Authorization: Bearer <token>':")
            print(token)
        return 0
    if args.token_command == "revoke":
        record = tokens.revoke(args.name)
        print(json.dumps({"revoked": record.name}) if args.json else f"revoked token {record.name!r}")
        return 0
    records = tokens.records()
    if args.json:
        entries = [{key: value for key, value in r.to_json().items() if key != "sha256"} for r in records]
        print(json.dumps({"tokens": entries}, indent=2))
    else:
        for record in records:
            scope = ", ".join(record.scope) if record.scope else "every file"
            print(f"{record.name}  {record.role}  {scope}  created {record.created_at}")
        print(f"{len(records)} token(s)")
    return 0


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int, backlog: int = defaults.SERVICE_LISTEN_BACKLOG) -> socket.socket:
    """The server's socket, bound before the models load (so a busy port fails at once).

    Made with proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections accepted from such a
    socket, and without it a response written as headers then body waits for the client's delayed
    ACK (up to 40 ms on a keep-alive connection; uvloop sets it either way)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}: pick another --port") from exc
    sock.listen(backlog)
    return sock


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from spanqa.pipelines.api import DocumentQA
    from spanqa.service.app import create_app
    from spanqa.service.engine import EngineSettings
    from spanqa.service.state import ServiceSettings, ServiceState
    from spanqa.service.tokens import TokenFile

    if args.tokens is None and not is_loopback(args.host) and not args.insecure_no_auth:
        raise ConfigError(
            f"--host {args.host} lets other machines in, and without --tokens anyone could read, upload and "
            "delete: make tokens (spanqa token add NAME --tokens FILE --role admin) and pass --tokens FILE, "
            "or pass --insecure-no-auth if that is really meant"
        )
    if args.tokens is not None:
        tokens = TokenFile(args.tokens)
        if not tokens.path.is_file() or not tokens.records():
            raise ConfigError(f"no tokens in '{tokens.path}': make one first with "
                              f"`spanqa token add NAME --tokens {args.tokens} --role admin`")
    index_dir = Path(args.index).expanduser().resolve()
    engine = EngineSettings(
        index_dir=index_dir, reader=args.reader, fast=args.fast, device=args.device, embedder=args.embedder,
        passages=args.passages, max_answer_length=args.max_answer_length, max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride, retrieval=args.retrieval, dense_weight=args.dense_weight,
        rank_weight=args.rank_weight, adaptive=args.adaptive,
        queue_size=args.queue_size,
    )
    settings = ServiceSettings(
        engine=engine, tokens_file=None if args.tokens is None else Path(args.tokens),
        uploads_dir=None if args.uploads is None else Path(args.uploads), max_file_mb=args.max_file_mb,
        rate_limit_per_minute=args.rate_limit, parse_workers=args.workers, page_timeout_s=args.page_timeout,
        page_memory_mb=args.page_memory_mb,
    )
    if args.ray is None and args.replicas != defaults.RAY_READER_REPLICAS:
        raise ConfigError("--replicas sizes the readers of a service on Ray: give --ray too")
    guard = connections.settings_from(args)
    fd_limit = connections.raise_fd_limit()
    limits = connections.ConnectionLimits(guard.total_cap(fd_limit), guard.max_connections_per_client)
    sock = listening_socket(args.host, args.port, guard.backlog)
    from spanqa.indexing.store.shards import index_exists

    if not index_exists(index_dir):
        print(f"spanqa: no index at {index_dir}: making an empty one (upload files to fill it)", file=sys.stderr)
        DocumentQA(index_dir, embedder=args.embedder, reader=args.reader, device=args.device).index([])
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    auth = f"tokens from {settings.tokens_file}" if settings.tokens_file else "no tokens (open to this machine)"
    where = "" if args.ray is None else f" on Ray ({args.ray}, {args.replicas} reader replica(s))"
    print(f"spanqa: serving {index_dir}{where} on http://{shown}:{port}/ ({auth}); models loading", file=sys.stderr,
          flush=True)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    def started(error: str | None) -> None:
        # A line for people and scripts: the server answers questions from here on (or never will).
        message = "ready: models loaded" if error is None else f"error: the models could not be loaded: {error}"
        print(f"spanqa: {message}", file=sys.stderr, flush=True)

    if args.ray is not None:
        return _serve_on_ray(args, settings, sock, started)
    app = create_app(settings, state=ServiceState(settings, on_started=started))
    # No WebSocket routes: an upgrade would hand the connection to a protocol outside the limits.
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level == "debug",
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

    Server(config).run(sockets=[sock])
    return 0


def _serve_on_ray(args: argparse.Namespace, settings, sock: socket.socket, started: Callable) -> int:
    """`spanqa serve --ray`: Ray Serve's proxy listens on the address the socket checked free."""
    try:
        from spanqa.service.ray_serve import RayServeSettings, serve_on_ray
    except ImportError as exc:
        raise ConfigError("serving on Ray needs Ray Serve: pip install 'spanqa[ray]'") from exc

    ray_settings = RayServeSettings(address=None if args.ray == "local" else args.ray, replicas=args.replicas)
    host, port = sock.getsockname()[:2]
    sock.close()  # Ray Serve's proxy binds the port itself
    error = serve_on_ray(settings, ray_settings, host, port, started, log_level=args.log_level)
    return 0 if error is None else 1
