"""The service's sub-commands of `spanqa`: `serve` (its options derived from the settings'
declarations: the query engine's, the service's, the parsers' and the connections') and `token`
(make, list and revoke access tokens). `serve` runs spanqa.service.serve_cli, imported only then."""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket

from spanqa.errors import ConfigError
from spanqa.service.tokens import TokenFile
from spanqa.settings import (
    EMBEDDER_MODEL,
    ConnectionSettings,
    DeviceSettings,
    EmbedderSettings,
    ParseSettings,
    ReaderSettings,
    RerankSettings,
    RetrievalSettings,
    ServiceSettings,
    StoreSettings,
    add_options,
)

LOOPBACK_NAMES = ("localhost",)
# A request says how many answers or passages it wants, and its threshold: the server has no default for them.
PER_REQUEST = {"answer_top_k", "score_threshold", "search_top_k"}
LOG_LEVELS = ["debug", "info", "warning", "error"]


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds `serve` and `token` to the `spanqa` command's sub-commands."""
    add_serve(commands)
    add_token(commands)


def _names(component, leave_out=PER_REQUEST) -> list[str]:
    return [info.name for info in component.infos() if info.name not in leave_out]


def add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the index over HTTP: an API and a web page, models loaded once")
    serve.set_defaults(handler="spanqa.service.serve_cli:run_serve")
    serve.add_argument("--index", required=True, metavar="DIR",
                       help="the index directory (an empty index is made there if it holds none)")
    add_options(serve, ReaderSettings, _names(ReaderSettings))
    add_options(serve, EmbedderSettings, embedder={
        "help": f"embedder of a new, empty index (None: an existing index's own; {EMBEDDER_MODEL} for a new one)"})
    add_options(serve, StoreSettings)
    add_options(serve, RetrievalSettings, _names(RetrievalSettings),
                retriever_top_k={"help": "retrieved passages the reader reads unless a request says"})
    add_options(serve, RerankSettings)
    add_options(serve, DeviceSettings)
    serve.add_argument("--tokens", metavar="FILE",
                       help="the tokens file (spanqa token add); without it nobody needs a token, which is "
                       "allowed on a loopback address only")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="serve a non-loopback --host without tokens (everyone may read, upload and delete)")
    serve.add_argument("--uploads", metavar="DIR", help="where uploaded files are kept (default: DIR/uploads of the index)")
    add_options(serve, ServiceSettings)
    # Uploads are limited by --max-file-mb (the service's upload_max_file_mb), not the parsers' max_file_mb.
    add_options(serve, ParseSettings, ["workers", "timeout_s", "memory_mb"],
                workers={"help": "parser processes for uploads; None: the number of CPUs, at most 4"})
    serve.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="serve as a Ray Serve application (needs pip install 'spanqa[ray]'): alone, on the local "
                       "Ray instance; with ADDRESS (HOST:6379), on that cluster. The API and page are the same; "
                       "the readers run as --replicas")
    add_options(serve, ConnectionSettings, ["header_timeout_s", "body_timeout_s", "max_connections",
                                            "max_connections_per_client"])
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="server log level (default: %(default)s)")


def add_token(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser("token", help="make, list and revoke the service's access tokens")
    token.set_defaults(handler="spanqa.service.cli:run_token")
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


def listening_socket(host: str, port: int, backlog: int = ConnectionSettings.backlog) -> socket.socket:
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
