"""The command line's options, derived from the settings' declarations: `add_options` adds one option
per field of a component (its flag, metavar, choices, help from the doc with the declared default, a
type that parses the text and runs the field's check), `from_args` makes the component from the
parsed options."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from spanqa.errors import ConfigError
from spanqa.settings.components import QASettings
from spanqa.settings.declaring import SettingInfo, Settings

S = TypeVar("S", Settings, QASettings)

_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def argument_type(flag: str, parse: Callable[[str], Any], check: Callable[[str, Any], Any] | None) -> Callable[[str], Any]:
    """An argparse `type`: the option's text parsed, then checked; a failure is the check's message
    (a text that does not parse is given to the check as it is, which names what the option takes)."""

    def value_of(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            if check is None:
                raise argparse.ArgumentTypeError(f"{flag}={text!r} is not a {getattr(parse, '__name__', 'value')}") from None
            value = text
        if check is None:
            return value
        try:
            return check(flag, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    value_of.__name__ = flag.lstrip("-")
    return value_of


def value_parser(info: SettingInfo) -> Callable[[str], Any]:
    """How the option's text becomes a value: the declared `parse`, else the field's type."""
    if info.parse is not None:
        return info.parse
    written = info.annotation.split("|")[0].strip()
    if written in _TYPES:
        return _TYPES[written]
    return type(info.default)


def shown_default(value: Any) -> str:
    """A default as the help and the reference page show it."""
    return "None" if value is None else str(value)


def with_default(help: str, info: SettingInfo) -> str:
    """`help` (argparse's: % doubled) and the declared default, as `--help` shows them; a switch that is
    off unless given says none."""
    help = help.replace("%", "%%")
    if info.annotation == "bool":
        return f"{help} (default: %(default)s)" if info.default else help
    return f"{help} (default: {shown_default(info.default).replace('%', '%%')})"


def option_spec(info: SettingInfo) -> dict[str, Any]:
    """add_argument's keywords for the setting (its flags under "flags")."""
    spec: dict[str, Any] = {"flags": [info.flag], "dest": info.name, "default": info.default,
                            "help": with_default(info.doc, info)}
    if info.annotation == "bool":  # a switch: --flag, or --flag / --no-flag where it is on by default
        spec["action"] = argparse.BooleanOptionalAction if info.default else "store_true"
        return spec
    spec["type"] = argument_type(info.flag, value_parser(info), info.check)
    if info.metavar is not None:
        spec["metavar"] = info.metavar
    elif info.choices is not None:
        spec["metavar"] = "|".join(str(choice) for choice in info.choices)
    return spec


def add_options(parser: argparse.ArgumentParser, component: type[Settings], names: Iterable[str] | None = None,
                **overrides: dict[str, Any]) -> None:
    """One option per setting of `component` (those in `names`, in declaration order; default: all).
    `overrides` maps a setting's name to add_argument keywords that replace the derived ones for this
    command: `help` (the declared default is still shown), `flags`, `metavar`, `required`."""
    infos = {info.name: info for info in component.infos()}
    wanted = list(infos) if names is None else list(names)
    unknown = sorted((set(wanted) | set(overrides)) - set(infos))
    if unknown:
        raise TypeError(f"{component.__name__} declares no setting {', '.join(unknown)}")
    for name in (n for n in infos if n in wanted):
        spec = option_spec(infos[name])
        change = dict(overrides.get(name, {}))
        if "help" in change:
            change["help"] = with_default(change["help"], infos[name])
        spec.update(change)
        flags = spec.pop("flags")
        parser.add_argument(*flags, **spec)


def from_args(component: type[S], namespace: argparse.Namespace) -> S:
    """The component's settings from parsed options: a setting without an option in `namespace` keeps
    its default. `QASettings` is built component by component. Checks between fields run here."""
    if component is QASettings:
        parts = {part: from_args(klass, namespace) for part, klass in QASettings.COMPONENTS.items()}
        return QASettings(**parts)  # type: ignore[return-value]
    values = {info.name: getattr(namespace, info.name) for info in component.infos() if hasattr(namespace, info.name)}
    return component(**values)  # type: ignore[call-arg]
