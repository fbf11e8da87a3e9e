"""The reference pages name every option of the `spanqa` command, every setting and every route of
the service.

docs/hooks/reference.py writes the option tables, settings tables and endpoint sections into
docs/reference/cli.md, settings.md and http.md when the site is built, from the argparse parser,
the settings' declarations and the FastAPI app. These tests render the pages as the build does and
check them against the parser, the declarations and the app, walked here on their own: an option,
a setting or a route that does not reach the reference fails a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="MkDocs is not installed (pip install -e '.[docs]'): the reference pages are built by it")

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOK_LOGGER = "mkdocs.plugins.spanqa_reference"
COMMAND_HEADING = re.compile(r"^#{2,3} spanqa ([a-z -]+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_source(name: str) -> str:
    return (DOCS / "reference" / name).read_text(encoding="utf-8")


def sections(page: str) -> dict[str, str]:
    """Each `spanqa COMMAND` section of the CLI page, by its command words, up to the next one."""
    headings = list(COMMAND_HEADING.finditer(page))
    ends = [match.start() for match in headings[1:]] + [len(page)]
    return {match.group(1): page[match.end() : end] for match, end in zip(headings, ends)}


def arguments(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(command words, option string or positional name) for every argument of every sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from arguments(sub, (*words, name))
        elif words and not isinstance(action, argparse._HelpAction):
            for name in action.option_strings or [action.metavar or action.dest]:
                yield " ".join(words), name


def test_every_cli_option_is_in_its_commands_section(hook):
    from spanqa.cli import build_parser

    rendered = sections(hook.cli_page(page_source("cli.md"), "reference/cli.md"))
    found = list(arguments(build_parser()))
    assert len(found) > 100  # every option of every command, not a parser that lost its sub-commands
    missing = [f"spanqa {words} {name}" for words, name in found  # an optional positional shows as [NAME ...]
               if words not in rendered or not any(f"| `{shown}" in rendered[words] for shown in (name, f"[{name}"))]
    assert missing == []


def test_a_command_without_a_marker_fails_the_build(hook, caplog):
    page = page_source("cli.md").replace("<!-- cli: compact -->", "")
    with caplog.at_level(logging.WARNING, logger=HOOK_LOGGER):
        rendered = hook.cli_page(page, "reference/cli.md")
    assert "`spanqa compact` has no <!-- cli: compact --> marker" in caplog.text
    assert "| `--json`" not in sections(rendered)["compact"]


def test_every_setting_is_in_the_settings_reference_with_its_option_and_default(hook):
    from spanqa.settings import ALL_COMPONENTS

    rendered = hook.settings_page(page_source("settings.md"), "reference/settings.md")
    assert "<!-- settings:" not in rendered
    rows = {line.split("|")[1].strip(): line for line in rendered.splitlines() if line.startswith("| `")}
    for component in ALL_COMPONENTS:
        for info in component.infos():
            assert f"`{info.name}`" in rows, info.name
            assert f"`{info.default!r}`" in rows[f"`{info.name}`"]
    assert "`--top-k` (ask)" in rows["`answer_top_k`"] and "`--top-k` (search)" in rows["`search_top_k`"]
    assert "`--device` (index, ask, search, eval, calibrate, train, serve)" in rows["`device`"]


def test_a_settings_component_without_a_marker_fails_the_build(hook, caplog):
    page = page_source("settings.md").replace("<!-- settings: connections -->", "")
    with caplog.at_level(logging.WARNING, logger=HOOK_LOGGER):
        rendered = hook.settings_page(page, "reference/settings.md")
    assert "the settings of `connections` (ConnectionSettings) have no <!-- settings: connections --> marker" in caplog.text
    assert "`header_timeout_s`" not in rendered


def app_routes(routes, prefix: str = "") -> Iterator[tuple[str, object]]:
    # FastAPI >= 0.165 keeps an included router as one entry that holds the router's own routes.
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is None:
            yield prefix, route
        else:
            yield from app_routes(included.routes, prefix + route.include_context.prefix)


@pytest.fixture(scope="module")
def service_routes() -> list[str]:
    """`METHOD /path` of every route of the service's app (a mount as `GET /prefix/`)."""
    from spanqa.service.app import create_app
    from spanqa.service.state import ServerConfig

    # Routes are declared by create_app whatever the state; a stand-in keeps any index from opening.
    app = create_app(ServerConfig(index_dir=Path("unused-index")), state=object())
    names = []
    for prefix, route in app_routes(app.routes):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)  # `{page:int}` reads `{page}`
        methods = sorted(set(getattr(route, "methods", None) or []) - {"HEAD"})
        names += [f"{method} {path}" for method in methods] or [f"GET {path}/"]
    return names


def test_every_route_of_the_service_is_in_the_http_reference(hook, service_routes):
    rendered = hook.http_page(page_source("http.md"), "reference/http.md")
    assert {"POST /v1/ask", "GET /v1/files/{file_id}/pages/{page}.png", "GET /"} <= set(service_routes)
    assert [name for name in service_routes if f"`{name}" not in rendered] == []


def test_a_route_outside_the_schema_and_the_page_fails_the_build(hook, caplog):
    page = page_source("http.md").replace("`GET /openapi.json`", "the schema")
    with caplog.at_level(logging.WARNING, logger=HOOK_LOGGER):
        hook.http_page(page, "reference/http.md")
    assert "route `GET /openapi.json` is not described" in caplog.text
