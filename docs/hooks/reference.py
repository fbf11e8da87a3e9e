"""MkDocs hook: the reference pages that must not go stale are written from the code at build time.

- `<!-- cli: commands -->` in a page becomes the table of `spanqa` sub-commands, and
  `<!-- cli: COMMAND -->` (`index`, `token add`, ...) that sub-command's usage and options, read
  from the real argparse parser (`spanqa.cli.build_parser`).
- `<!-- settings: COMPONENT -->` (`reader`, `service`, ...) becomes the table of that component's
  settings, read from their declarations (`spanqa.settings`): each setting's name (the keyword),
  the `spanqa` option and commands that take it, its default and its doc; `<!-- settings: all -->`
  every component's table.
- `<!-- http: endpoints -->` becomes every endpoint of the service and the bodies they take and
  return, read from the real FastAPI app (`spanqa.service.app.create_app`) and its OpenAPI schema.
- The build warns, so that `mkdocs build --strict` fails, when a sub-command has no marker in the
  CLI page, a settings component (`spanqa.settings.ALL_COMPONENTS`) none in the settings page, a route left out of the OpenAPI schema is not named in the HTTP page, or a public name
  of the Python API (the `__all__` of spanqa, spanqa.indexing, spanqa.reader, spanqa.pipelines) has
  no `:::` entry in the API pages or has no docstring (nor has a public method of a class there).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

log = logging.getLogger("mkdocs.plugins.spanqa_reference")

CLI_MARKER = re.compile(r"<!-- cli: ([a-z][a-z -]*[a-z]) -->")
SETTINGS_MARKER = re.compile(r"<!-- settings: ([a-z]+) -->")
ALL_SETTINGS = "all"
COMMANDS_MARKER = "commands"
HTTP_MARKER = "<!-- http: endpoints -->"
API_PAGES = "reference/api/"
PUBLIC_MODULES = ("spanqa", "spanqa.indexing", "spanqa.reader", "spanqa.pipelines")
DIRECTIVE = re.compile(r"^::: *([\w.]+)", re.MULTILINE)
USAGE_WIDTH = 100
# Characters that would start markup in a table cell of help text.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>|])")


# -- the command line ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def spanqa_parser() -> argparse.ArgumentParser:
    from spanqa.cli import build_parser

    return build_parser()


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Every sub-command by its words (`index`, `token add`), nested ones included, with its help."""
    found: dict[str, tuple[argparse.ArgumentParser, str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                words = (*prefix, name)
                found[" ".join(words)] = (sub, helps.get(name, ""))
                found.update(subcommands(sub, words))
    return found


def _text(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split()))


def _anchor(words: str) -> str:
    return "spanqa-" + words.replace(" ", "-")


def invocation(action: argparse.Action) -> str:
    """How the option is written on the command line: `--top-k N`, `--device auto|cpu|cuda`, `PATH [PATH ...]`."""
    if not action.option_strings:
        name = action.metavar or action.dest
        return {"+": f"{name} [{name} ...]", "*": f"[{name} ...]", "?": f"[{name}]"}.get(action.nargs, name)
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    if action.metavar is not None:
        value = action.metavar
    elif action.choices is not None:
        value = "|".join(str(choice) for choice in action.choices)
    else:
        value = action.dest.upper()
    if action.nargs == "?":
        value = f"[{value}]"
    return ", ".join(f"{option} {value}" for option in action.option_strings)


def help_text(action: argparse.Action, prog: str) -> str:
    """The option's help as `--help` prints it (`%(default)s` and friends filled in)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = {key: value for key, value in vars(action).items() if value is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(choice) for choice in params["choices"])
    for key, value in list(params.items()):
        if callable(value) and hasattr(value, "__name__"):
            params[key] = value.__name__
    return action.help % params


def command_reference(words: str) -> str:
    parser, summary = subcommands(spanqa_parser())[words]
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=USAGE_WIDTH)
    lines = [_text(summary[:1].upper() + summary[1:]) + "." if summary else "", "",
             "```text", parser.format_usage().strip(), "```", "",
             "| argument | what it does |", "| --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            names = ", ".join(f"[`{name}`](#{_anchor(f'{words} {name}')})" for name in action.choices)
            lines.append(f"| `{invocation(action)}` | one of {names} |")
            continue
        described = _text(help_text(action, parser.prog))
        if action.required and action.option_strings:
            described = "required: " + described
        if isinstance(action, argparse._AppendAction):
            described += " (repeatable)" if "repeat" not in described else ""
        lines.append(f"| `{invocation(action)}` | {described} |")
    return "\n".join(lines)


def commands_table() -> str:
    lines = ["| command | what it does |", "| --- | --- |"]
    for words, (_, summary) in subcommands(spanqa_parser()).items():
        lines.append(f"| [`spanqa {words}`](#{_anchor(words)}) | {_text(summary)} |")
    return "\n".join(lines)


def cli_page(markdown: str, page_path: str) -> str:
    known = subcommands(spanqa_parser())
    named = set(CLI_MARKER.findall(markdown)) - {COMMANDS_MARKER}
    for words in sorted(set(known) - named):
        log.warning(f"{page_path}: `spanqa {words}` has no <!-- cli: {words} --> marker: its options are not in the reference")
    for words in sorted(named - set(known)):
        log.warning(f"{page_path}: <!-- cli: {words} --> names no sub-command of spanqa")

    def generated(match: re.Match) -> str:
        words = match.group(1)
        if words == COMMANDS_MARKER:
            return commands_table()
        return command_reference(words) if words in known else match.group(0)

    return CLI_MARKER.sub(generated, markdown)


# -- the settings -------------------------------------------------------------------------------


def settings_components() -> dict[str, type]:
    """Each settings component by its name (`reader`, `service`, ...), in `ALL_COMPONENTS`' order."""
    from spanqa.settings import ALL_COMPONENTS

    return {component.component: component for component in ALL_COMPONENTS}


def setting_options() -> dict[str, dict[str, list[str]]]:
    """Each setting's name to its option strings and the sub-commands that take it with each."""
    found: dict[str, dict[str, list[str]]] = {}
    for words, (parser, _) in subcommands(spanqa_parser()).items():
        for action in parser._actions:
            if action.option_strings:
                flags = ", ".join(f"`{option}`" for option in action.option_strings)
                found.setdefault(action.dest, {}).setdefault(flags, []).append(words)
    return found


def settings_table(component: type) -> str:
    """One row per setting: its name (the keyword), the option and commands taking it, default, doc."""
    options = setting_options()
    lines = [f"{_prose(component.__doc__ or '')}", "",
             "| setting | `spanqa` option | default | what it does |", "| --- | --- | --- | --- |"]
    for info in component.infos():
        taken = options.get(info.name, {})
        flags = "; ".join(f"{flag} ({', '.join(commands)})" for flag, commands in taken.items()) or "—"
        lines.append(f"| `{info.name}` | {flags} | `{info.default!r}` | {_prose(info.doc)} |")
    return "\n".join(lines)


def settings_page(markdown: str, page_path: str) -> str:
    components = settings_components()
    named = set(SETTINGS_MARKER.findall(markdown))
    if ALL_SETTINGS not in named:
        for name in [name for name in components if name not in named]:
            log.warning(f"{page_path}: the settings of `{name}` ({components[name].__name__}) have no "
                        f"<!-- settings: {name} --> marker: they are not in the reference")
    for name in sorted(named - set(components) - {ALL_SETTINGS}):
        log.warning(f"{page_path}: <!-- settings: {name} --> names no settings component")

    def generated(match: re.Match) -> str:
        name = match.group(1)
        if name == ALL_SETTINGS:
            return "\n\n".join(f"## {part}\n\n{settings_table(klass)}" for part, klass in components.items())
        return settings_table(components[name]) if name in components else match.group(0)

    return SETTINGS_MARKER.sub(generated, markdown)


# -- the HTTP API -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def service_app():
    from spanqa.service.app import create_app
    from spanqa.service.state import ServerConfig

    # A stand-in state: the routes and the OpenAPI schema need none, and a live one would open an index.
    return create_app(ServerConfig(index_dir=Path("unused-index")), state=object())


def app_routes(routes, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path prefix, route) for every route, those of included routers too (FastAPI >= 0.165 nests them)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from app_routes(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            yield prefix, route


def _dependency_names(dependant) -> set[str]:
    names = set()
    for dependency in dependant.dependencies:
        names.add(getattr(dependency.call, "__name__", ""))
        names |= _dependency_names(dependency)
    return names


def _body_link(name: str) -> str:
    return f"[`{name}`](#body-{name.lower()})"


def schema_type(schema: dict) -> str:
    if "$ref" in schema:
        return _body_link(schema["$ref"].rsplit("/", 1)[1])
    if "anyOf" in schema:
        return " or ".join(schema_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        return "list of " + schema_type(schema.get("items", {}))
    if kind == "object" and "additionalProperties" in schema:
        return "object"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
            "null": "null", "object": "object"}.get(kind, "any")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range(low, high, unit: str = "") -> str | None:
    if low is not None and high is not None:
        return f"{_number(low)} to {_number(high)}{unit}"
    if low is not None:
        return f"at least {_number(low)}{unit}"
    if high is not None:
        return f"at most {_number(high)}{unit}"
    return None


def _limits(schema: dict) -> list[str]:
    found = []
    for option in [schema, *schema.get("anyOf", [])]:
        found.append(_range(option.get("minimum"), option.get("maximum")))
        low = option.get("minLength")
        found.append(_range(None if low == 0 else low, option.get("maxLength"), " characters"))
    return [limit for limit in found if limit]


def _prose(text: str) -> str:
    """A description written in Markdown (a docstring, a schema description), kept on one line of a table."""
    return " ".join(text.split()).replace("|", "\\|")


def field_notes(schema: dict, required: bool) -> str:
    notes = [_prose(schema["description"])] if schema.get("description") else []
    notes += _limits(schema)
    if not required and "default" in schema:
        notes.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(notes)


def bodies(schema: dict) -> list[str]:
    lines = ["## Bodies", "",
             "The JSON objects the endpoints take and return, as `/openapi.json` defines them.", ""]
    for name, body in sorted(schema.get("components", {}).get("schemas", {}).items()):
        if body.get("type") != "object" or "properties" not in body:
            continue
        lines += [f"### {name} {{#body-{name.lower()}}}", ""]
        if body.get("description"):
            lines += [_prose(body["description"]), ""]
        if body.get("additionalProperties") is False:
            lines += ["Unknown fields are refused (422).", ""]
        lines += ["| field | type | required | notes |", "| --- | --- | --- | --- |"]
        required = set(body.get("required", []))
        for field, spec in body["properties"].items():
            lines.append(f"| `{field}` | {schema_type(spec)} | {'yes' if field in required else 'no'} | "
                         f"{field_notes(spec, field in required)} |")
        lines.append("")
    return lines


def endpoint(route, method: str, operation: dict) -> list[str]:
    lines = [f"### `{method} {route.path_format}`", ""]
    if operation.get("description"):
        lines += [_prose(operation["description"]), ""]
    names = _dependency_names(route.dependant)
    if "admin" in names:
        token = "an admin token"
    elif operation.get("security"):
        token = "a read or admin token"
    else:
        token = "none"
    lines += [f"Token: {token}.", ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | notes |", "| --- | --- | --- | --- | --- |"]
        for parameter in parameters:
            spec = parameter.get("schema", {})
            lines.append(f"| `{parameter['name']}` | {parameter['in']} | {schema_type(spec)} | "
                         f"{'yes' if parameter.get('required') else 'no'} | "
                         f"{field_notes({**spec, **({'description': parameter['description']} if 'description' in parameter else {})}, parameter.get('required', False))} |")
        lines.append("")
    request = operation.get("requestBody", {}).get("content", {})
    for media_type, content in request.items():
        lines += [f"Request body ({media_type}): {schema_type(content.get('schema', {}))}.", ""]
    for status, response in operation.get("responses", {}).items():
        if not status.startswith("2"):
            continue
        contents = response.get("content") or {}
        # FastAPI lists its default JSON response (an empty schema) beside a declared media type.
        declared = {media: content for media, content in contents.items() if content.get("schema")
                    or media != "application/json"}
        if not contents:
            lines.append(f"Returns `{status}`: {_prose(response.get('description', ''))}.")
        for media_type, content in (declared or contents).items():
            kind = schema_type(content["schema"]) if content.get("schema") else _prose(response.get("description", ""))
            lines.append(f"Returns `{status}` ({media_type}): {kind}.")
    lines.append("")
    return lines


def http_reference() -> str:
    from fastapi.routing import APIRoute

    app = service_app()
    schema = app.openapi()
    by_tag: dict[str, list[str]] = {}
    for prefix, route in app_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods - {"HEAD"}):
            operation = schema["paths"][prefix + route.path_format][method.lower()]
            tag = (operation.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).extend(endpoint(route, method, operation))
    lines = ["## Endpoints", ""]
    for tag, entries in by_tag.items():
        lines += [f"### {tag.capitalize()}", "", *[line.replace("### `", "#### `", 1) for line in entries]]
    return "\n".join(lines + bodies(schema))


def http_page(markdown: str, page_path: str) -> str:
    from fastapi.routing import APIRoute

    # Routes outside the OpenAPI schema (the web page, its static files, the schema itself) are
    # described by hand: each must be named on the page.
    for prefix, route in app_routes(service_app().routes):
        if isinstance(route, APIRoute) and route.include_in_schema:
            continue
        methods = sorted(set(getattr(route, "methods", None) or []) - {"HEAD"})
        # A mount (static files) is named by its prefix: `GET /static/{file}`.
        names = [f"`{method} {prefix}{route.path}`" for method in methods] or [f"`GET {prefix}{route.path}/"]
        for name in names:
            if name not in markdown:
                log.warning(f"{page_path}: the service's route {name.rstrip('`')}` is not described")
    return markdown.replace(HTTP_MARKER, http_reference())


# -- the Python API -----------------------------------------------------------------------------


def _resolve(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            value = getattr(value, name)
        return value
    raise ImportError(path)


def package_search_path(config) -> Path:
    """A folder in which `spanqa` is this checkout, for griffe (and so mkdocstrings) to read statically.

    The checkout's root is the package, whatever the clone's folder is called, and setuptools'
    editable install maps the name to it in a way griffe cannot follow; on its own griffe would
    take the `spanqa` console script in the venv's bin/ (first on sys.path under `mkdocs`) for it.
    """
    root = Path(config.config_file_path).resolve().parent
    if not (root / "__init__.py").is_file():
        raise RuntimeError(f"{root} holds mkdocs.yml but is not the spanqa package root")
    folder = Path(tempfile.mkdtemp(prefix="spanqa-docs-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "spanqa").symlink_to(root, target_is_directory=True)
    return folder


_search_path: list[Path] = []


@functools.lru_cache(maxsize=1)
def _griffe_package():
    import griffe

    return griffe.load("spanqa", search_paths=_search_path, allow_inspection=False,
                       resolve_aliases=True, resolve_external=False)


def missing_docstrings(path: str) -> list[str]:
    """`path` and its public methods and properties that have no docstring."""
    found = _griffe_package()[path.removeprefix("spanqa.")]
    found = found.final_target if found.is_alias else found
    missing = [] if found.docstring else [path]
    if found.is_class:
        for name, member in found.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if (member.is_function or "property" in member.labels) and not member.docstring:
                missing.append(f"{path}.{name}")
    return missing


def check_api_pages(files) -> None:
    directives: dict[str, str] = {}
    for file in files.documentation_pages():
        if file.src_uri.startswith(API_PAGES):
            source = Path(file.abs_src_path).read_text(encoding="utf-8")
            directives.update({target: file.src_uri for target in DIRECTIVE.findall(source)})
    documented = {}
    for target in directives:
        try:
            documented[id(_resolve(target))] = target
        except (ImportError, AttributeError):
            log.warning(f"{directives[target]}: `::: {target}` names nothing importable")
            continue
        for name in missing_docstrings(target):
            log.warning(f"{directives[target]}: `{name}` is public and has no docstring")
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if id(getattr(module, name)) not in documented:
                log.warning(f"`{module_name}.{name}` is public (in __all__) and has no `:::` entry under docs/{API_PAGES}")


# -- MkDocs events ------------------------------------------------------------------------------


@event_priority(100)  # before mkdocstrings creates its handler from this setting
def on_config(config, **kwargs):
    folder = package_search_path(config)
    _search_path[:] = [folder]
    _griffe_package.cache_clear()
    config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})["paths"] = [str(folder)]
    return config


def on_files(files, config, **kwargs):
    check_api_pages(files)
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if CLI_MARKER.search(markdown):
        markdown = cli_page(markdown, page.file.src_uri)
    if SETTINGS_MARKER.search(markdown):
        markdown = settings_page(markdown, page.file.src_uri)
    if HTTP_MARKER in markdown:
        markdown = http_page(markdown, page.file.src_uri)
    return markdown
